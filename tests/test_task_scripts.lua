-- test_task_scripts.lua: the task versions of the tutorial's servers
-- (tasktimeserver.lua, taskchatserver.lua), run as separate processes.
local t = require "testlib"
local socket = require "socket"
local task = require "task"

local SCRIPTS = (arg and arg[0] and arg[0]:match("^(.*)/tests/") or ".") .. "/scripts/"

-- Starts a script with port 0; returns its pid, port and output directory.
-- It is killed after `limit` seconds whatever happens.
local function start(script, args, limit)
  local dir = t.tmpdir()
  local cmd = string.format(
    "%s %s 127.0.0.1 0 %s > %s/out 2> %s/err < /dev/null & pid=$!; " ..
    "( sleep %d; kill -KILL $pid ) > /dev/null 2>&1 & echo $pid",
    t.shellquote(t.NETLUA), t.shellquote(SCRIPTS .. script), args, dir, dir, limit)
  local p = io.popen(cmd)
  local pid = tonumber(p:read("l"))
  p:close()
  local port
  for _ = 1, 400 do
    port = (t.readfile(dir .. "/out") or ""):match("listening on 127%.0%.0%.1:(%d+)")
    if port then break end
    task.sleep(0.05)
  end
  t.ok(port, "the server printed its port: " .. tostring(t.readfile(dir .. "/err")))
  return pid, tonumber(port), dir
end

-- Waits (bounded) for the process to end by itself; returns stdout, stderr.
local function finish(pid, dir)
  for _ = 1, 400 do
    if not os.execute("kill -0 " .. pid .. " 2>/dev/null") then break end
    task.sleep(0.05)
  end
  local stopped = not os.execute("kill -0 " .. pid .. " 2>/dev/null")
  if not stopped then os.execute("kill -KILL " .. pid) end
  local out, err = t.readfile(dir .. "/out"), t.readfile(dir .. "/err")
  t.rmtree(dir)
  t.ok(stopped, "the server stopped by itself")
  return out, err
end

local function connect(port)
  local c = assert(socket.connect("127.0.0.1", port))
  c:settimeout(10)
  return c
end

local function expect(c, pattern)
  while true do
    local line, err = c:receive("*l")
    if not line then error("connection: " .. tostring(err) .. " waiting for " .. pattern) end
    if line:find(pattern) then return line end
  end
end

t.test("tasktimeserver serves each client from a task and exits after --count", function()
  local pid, port, dir = start("tasktimeserver.lua", "--count 3", 30)
  local stuck = connect(port) -- connected first, read last
  local replies = {}
  for i = 1, 2 do
    local c = connect(port)
    replies[i] = c:receive("*a")
    c:close()
  end
  for i = 1, 2 do t.match(replies[i], "^%d%d%d%d%-%d%d%-%d%d %d%d:%d%d:%d%d") end
  stuck:close()
  local out, err = finish(pid, dir)
  t.eq(err, "")
  local n = 0
  for _ in out:gmatch("connection from 127%.0%.0%.1:%d+") do n = n + 1 end
  t.eq(n, 3)
end)

t.test("taskchatserver broadcasts each line to the other clients", function()
  local pid, port, dir = start("taskchatserver.lua", "--count 3", 30)
  local a = connect(port)
  expect(a, "^welcome, you are client 1")
  local b = connect(port)
  expect(b, "^welcome, you are client 2")
  expect(a, "^%* client 2 joined")
  local c = connect(port)
  expect(c, "^welcome, you are client 3")
  expect(a, "^%* client 3 joined")
  expect(b, "^%* client 3 joined")
  a:send("hello from a\n")
  t.eq(expect(b, "hello"), "[1] hello from a")
  t.eq(expect(c, "hello"), "[1] hello from a")
  c:send("hi from c\r\n")
  t.eq(expect(a, "hi"), "[3] hi from c")
  t.eq(expect(b, "hi"), "[3] hi from c")
  -- b vanishes without /quit, with unread data: the kernel resets it
  b:setoption("linger", {on = true, timeout = 0})
  b:close()
  t.match(expect(a, "client 2 left"), "^%* client 2 left")
  for _, s in ipairs({a, c}) do s:send("/quit\n") end
  for _, s in ipairs({a, c}) do
    local line, err
    repeat line, err = s:receive("*l") until not line
    t.eq(err, "closed")
    s:close()
  end
  local out, err = finish(pid, dir)
  t.eq(err, "")
  for i = 1, 3 do t.match(out, "client " .. i .. " left") end
  t.match(out, "client 1 left %(quit%)")
end)

t.done()
