-- test_task_scale.lua: one task-based server (scripts/echoserver.lua) holds
-- 10,000 idle connections while it serves others, and Ctrl-C stops it.
local t = require "testlib"

local IDLE, ACTIVE, ROUNDS = 10000, 100, 20
local NEED = IDLE + ACTIVE + 100

local function hard_limit()
  local p = io.popen("sh -c 'ulimit -Hn'")
  local v = p:read("l")
  p:close()
  if v == "unlimited" then return math.huge end
  return tonumber(v) or 0
end

-- Starts the echo server with the descriptor limit raised; returns its
-- pid, the port and the directory holding its output.
local function start_server(args)
  local dir = t.tmpdir()
  local cmd = string.format("sh -c 'ulimit -n %d; exec %s scripts/echoserver.lua 127.0.0.1 0 %s' > %s/out 2> %s/err < /dev/null & echo $!",
    NEED, t.shellquote(t.NETLUA), args, dir, dir)
  local p = io.popen(cmd)
  local pid = p:read("l")
  p:close()
  local port
  for _ = 1, 400 do
    local out = t.readfile(dir .. "/out") or ""
    port = out:match("listening on 127%.0%.0%.1:(%d+)")
    if port then break end
    os.execute("sleep 0.05")
  end
  return pid, port, dir
end

if hard_limit() < NEED then
  t.skip("10,000 idle connections to one task-based server",
    "the hard descriptor limit is below " .. NEED)
else
  t.test("10,000 idle connections to one task-based server while 100 clients are served", function()
    local pid, port, dir = start_server("--quiet --count " .. (IDLE + ACTIVE))
    t.ok(port, "server started")
    local out, err, code = t.sh(string.format(
      "ulimit -n %d; timeout 120 %s tests/task_clients.lua %s %d %d %d",
      NEED, t.shellquote(t.NETLUA), port, IDLE, ACTIVE, ROUNDS))
    -- the server ends by itself once every client came and went
    local _, _, scode = t.sh(string.format(
      "i=0; while kill -0 %s 2>/dev/null && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done; kill -0 %s 2>/dev/null && kill -9 %s && exit 1; exit 0",
      pid, pid, pid))
    t.eq(code, 0, err)
    t.eq(out, string.format("active ok %d/%d, idle ok %d/%d\n", ACTIVE, ACTIVE, IDLE, IDLE))
    t.eq(scode, 0, "the server exited after its last client")
    t.eq(t.readfile(dir .. "/err"), "", "the server reported no error")
    t.rmtree(dir)
  end)
end

t.test("the echo server logs its clients and Ctrl-C stops it with its tasks", function()
  local pid, port, sdir = start_server("")
  t.ok(port, "server started")
  local out = t.sh(string.format([[%s -e "
    local socket = require 'socket'
    local cs = {}
    for i = 1, 3 do cs[i] = assert(socket.connect('127.0.0.1', %s)) end
    for i = 3, 1, -1 do cs[i]:send('hello ' .. i .. '\n') end
    for i = 1, 3 do io.write(cs[i]:receive('*l'), ';') end
    for i = 1, 3 do cs[i]:close() end"]], t.shellquote(t.NETLUA), port))
  t.eq(out, "hello 1;hello 2;hello 3;")
  os.execute("sleep 0.2; kill -INT " .. pid)
  local _, _, code = t.sh(string.format(
    "i=0; while kill -0 %s 2>/dev/null && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done; kill -0 %s 2>/dev/null && kill -9 %s && exit 1; exit 0",
    pid, pid, pid))
  t.eq(code, 0, "Ctrl-C ended the server")
  local log = t.readfile(sdir .. "/out")
  t.match(log, "connection from 127%.0%.0%.1:%d+")
  t.match(log, "closed 127%.0%.0%.1:%d+")
  t.match(t.readfile(sdir .. "/err"), "interrupted")
  t.rmtree(sdir)
end)

t.done()
