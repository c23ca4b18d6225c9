-- test_bench.lua: the parts of the benchmark that netlua runs itself: the
-- HTTP "hello" servers bench/run.sh measures (bench/servers/http_hello.lua
-- and its Node.js peer must answer the same) and bench/report.lua's table
-- (the http rows are divided by Node.js), and the browser rows' pieces:
-- bench/loadgen's ws, wsidle and sse modes against the WebSocket echo
-- servers (netlua, Node's ws, Python's websockets) and the SSE hub, each
-- for a moment with a few clients; the p2p row's loadgen copy and
-- bench/p2p/fanout.lua on a small file. No timing: `make bench` measures, this
-- checks that what it measures is right.
local t = require "testlib"
local wslib = require "wslib"
local http = require "http"
local time = require "time"

-- Starts `CMD PORT ARGS` (port 0) in the background, killed after 30 s
-- whatever happens; waits until it prints "listening on 127.0.0.1:PORT".
-- Returns its pid, the port and the directory holding out and err.
local function start(cmd, args)
  local dir = t.tmpdir()
  local p = io.popen(string.format(
    "%s 0 %s > %s/out 2> %s/err < /dev/null & pid=$!; " ..
    "( sleep 30; kill -KILL $pid ) > /dev/null 2>&1 & echo $pid", cmd, args or "", dir, dir))
  local pid = tonumber(p:read("l"))
  p:close()
  local port
  for _ = 1, 400 do
    port = (t.readfile(dir .. "/out") or ""):match("listening on 127%.0%.0%.1:(%d+)")
    if port then break end
    time.sleep(0.05)
  end
  t.ok(port, "the server printed its port: " .. tostring(t.readfile(dir .. "/err")))
  return pid, tonumber(port), dir
end

-- Stops a server from start() by PID (SIGTERM); returns its stderr, less
-- the reports of that "interrupted" (netlua's end on SIGTERM, as on
-- Ctrl-C; a worker's connection task interrupted mid-write reports it as
-- "netlua http.server: interrupted").
local function stop(pid, dir)
  os.execute("kill " .. pid .. " 2>/dev/null")
  for _ = 1, 100 do
    if not os.execute("kill -0 " .. pid .. " 2>/dev/null") then break end
    time.sleep(0.05)
  end
  os.execute("kill -KILL " .. pid .. " 2>/dev/null")
  local err = t.readfile(dir .. "/err"):gsub("netlua[%w. ]*: interrupted\nstack traceback:\n.*$", "")
  t.rmtree(dir)
  return err
end

local NETLUA_HELLO = t.shellquote(t.NETLUA) .. " bench/servers/http_hello.lua"

-- What the benchmark relies on: 200, "hello\n", text/plain, a length, kept alive.
local function check_hello(port)
  local r = assert(http.get("http://127.0.0.1:" .. port .. "/", {timeout = 10}))
  t.eq(r.status, 200)
  t.eq(r.body, "hello\n")
  t.eq(r.headers["content-type"], "text/plain")
  t.eq(r.headers["content-length"], "6")
  t.eq(r.headers["connection"], "keep-alive")
  return r
end

t.test("http_hello.lua answers GET / with hello as text/plain on a kept-alive connection", function()
  local pid, port, dir = start(NETLUA_HELLO)
  check_hello(port)
  local other = assert(http.get("http://127.0.0.1:" .. port .. "/other", {timeout = 10}))
  t.eq(other.status, 404)
  t.eq(stop(pid, dir), "")
end)

t.test("http_hello.lua passes a workers argument to http.server, or serves without it and says so", function()
  local ok = pcall(http.server, {port = 0, workers = 2})
  local pid, port, dir = start(NETLUA_HELLO, "2")
  check_hello(port)
  local err = stop(pid, dir)
  if ok then
    t.eq(err, "")
  else
    t.match(err, "http%.server has no 'workers' option yet")
  end
end)

t.test("http_hello.lua refuses a port or workers count that is not a number", function()
  local _, err, code = t.netlua("bench/servers/http_hello.lua 0 many")
  t.eq(code, 2)
  t.match(err, "usage: netlua bench/servers/http_hello.lua")
end)

if os.execute("command -v node > /dev/null 2>&1") then
  t.test("the Node.js peer http_hello.js sends the same reply and headers", function()
    local pid, port, dir = start("node bench/servers/http_hello.js")
    check_hello(port)
    stop(pid, dir)
  end)
else
  t.skip("the Node.js peer http_hello.js sends the same reply and headers", "node not installed")
end

t.test("report.lua divides the http rows by Node.js and names the best peer", function()
  local dir = t.tmpdir()
  local rows = {"# netlua bench TEST", "workload\truntime\tmetric\tbetter\trun\tvalue"}
  for _, r in ipairs{{"node", 50000}, {"netlua", 100000}, {"nginx-w1", 80000}} do
    rows[#rows + 1] = table.concat({"http", r[1], "req_per_s", "hi", "1", r[2]}, "\t")
  end
  rows[#rows + 1] = "http\tnetlua\terrors\tlo\t1\t0"
  t.writefile(dir .. "/run.tsv", table.concat(rows, "\n") .. "\n")
  local out, err, code = t.netlua("bench/report.lua " .. dir .. "/run.tsv")
  t.rmtree(dir)
  t.eq(code, 0, err)
  for _, line in ipairs{"| vs ref | vs best peer |",
      "| http | req_per_s (hi) | netlua | 100000 | - | 2.00x | 1.25x nginx-w1 |",
      "| http | req_per_s (hi) | node | 50000 | - | 1.00x | 0.62x nginx-w1 |"} do
    t.ok(out:find(line, 1, true), "the table holds " .. line .. "\n" .. out)
  end
  t.ok(not out:find("errors", 1, true), "an all-zero errors row is left out")
end)

-- bench/loadgen, built into a directory of its own once (nil, why when no cc).
local loadgen_dir
local function loadgen()
  if not loadgen_dir then
    if not t.have("cc") then return nil, "no C compiler (cc)" end
    loadgen_dir = t.tmpdir()
    local _, err, code = t.sh("cc -std=c11 -D_GNU_SOURCE -O2 -o " .. loadgen_dir ..
      "/loadgen bench/loadgen.c")
    t.eq(code, 0, "bench/loadgen.c builds: " .. err)
  end
  return loadgen_dir .. "/loadgen"
end

-- Runs `loadgen ARGS`; returns its RESULT line's fields (a table), stderr
-- and the exit status.
local function run_loadgen(args)
  local out, err, code = t.sh(loadgen() .. " " .. args)
  local r = {}
  for k, v in (out:match("RESULT (.*)") or ""):gmatch("(%S+)=(%S+)") do r[k] = tonumber(v) or v end
  return r, err, code
end

-- The WebSocket echo servers the ws_echo and ws_idle rows run (the start()
-- command line of each), and why a peer cannot run.
local WS_SERVERS = {
  {"netlua", t.shellquote(t.NETLUA) .. " bench/servers/ws_echo.lua"},
  {"Node.js ws", "NODE_PATH=" .. t.shellquote(wslib.NODE_PATH) .. " node bench/servers/ws_echo.js",
    wslib.node_missing},
  {"Python websockets", wslib.PYTHON .. " bench/servers/ws_echo.py", wslib.python_missing},
}

for _, s in ipairs(WS_SERVERS) do
  local name, cmd, missing = s[1], s[2], s[3]
  local why = select(2, loadgen()) or (missing and missing())
  local title = "loadgen ws and wsidle work against the " .. name .. " WebSocket echo server"
  if why then
    t.skip(title, why)
  else
    t.test(title, function()
      local pid, port, dir = start(cmd)
      local r, err, code = run_loadgen("ws " .. port .. " 3 0.3 64")
      t.eq(code, 0, err)
      t.eq(r.mode, "ws")
      t.eq(r.errors, 0, err)
      t.ok(r.ops > 0, "echoes came back: " .. err)
      r, err, code = run_loadgen("ws " .. port .. " 1 0.2 300")   -- a 16-bit length
      t.eq(code, 0, err)
      t.eq(r.errors, 0, err)
      t.ok(r.ops > 0, "echoes of 300 bytes came back: " .. err)
      r, err, code = run_loadgen("wsidle " .. port .. " 20 " .. pid)
      t.eq(code, 0, err)
      t.eq(r.conns, 20)
      t.ok(r.rss_before_kib > 0 and r.rss_after_kib > 0, "the server's RSS was read: " .. err)
      t.ok(r.kib_per_conn, "a size per connection")
      stop(pid, dir)
    end)
  end
end

if select(2, loadgen()) then
  t.skip("loadgen ws refuses a server that does not upgrade", select(2, loadgen()))
  t.skip("loadgen sse fans out through bench/servers/sse_fanout.lua", select(2, loadgen()))
else
  t.test("loadgen ws refuses a server that does not upgrade", function()
    -- the hello server answers GET /echo with a 404: no 101, no Sec-WebSocket-Accept
    local pid, port, dir = start(NETLUA_HELLO)
    local r, err, code = run_loadgen("ws " .. port .. " 1 0.2 64")
    t.eq(code, 1)
    t.eq(r.mode, nil)
    t.match(err, "not a WebSocket handshake reply:\nHTTP/1%.1 404")
    stop(pid, dir)
  end)

  t.test("loadgen sse fans out through bench/servers/sse_fanout.lua", function()
    local pid, port, dir = start(t.shellquote(t.NETLUA) .. " bench/servers/sse_fanout.lua")
    local r, err, code = run_loadgen("sse " .. port .. " 50")
    t.eq(code, 0, err)
    t.eq(r.mode, "sse")
    t.eq(r.ops, 50, "every subscriber has the event")
    t.eq(r.errors, 0, "the publish reply counts 50 subscribers: " .. err)
    t.ok(r.last_ms, "the time until the last")
    -- a second publish reaches nobody: the first one ended every stream
    local pub = assert(http.request{method = "POST", url = "http://127.0.0.1:" .. port .. "/publish",
      timeout = 10})
    t.eq(pub.status, 200)
    t.eq(pub.body, "0")
    t.eq(stop(pid, dir), "")
  end)
end

-- The p2p_fanout row: loadgen copy (the reference) and bench/p2p/fanout.lua
-- (a seed and N peers of scripts/p2p.lua), each on a small file.
if select(2, loadgen()) then
  t.skip("loadgen copy copies a file over loopback TCP, byte for byte", select(2, loadgen()))
else
  t.test("loadgen copy copies a file over loopback TCP, byte for byte", function()
    local dir = t.tmpdir()
    local data = require("crypto").random(300000)
    t.writefile(dir .. "/in", data)
    local r, err, code = run_loadgen("copy " .. dir .. "/in " .. dir .. "/out")
    t.eq(code, 0, err)
    t.eq(r.mode, "copy")
    t.eq(r.bytes, 300000)
    t.ok(r.secs and r.cpu_s, "a time and a CPU time")
    t.eq(t.readfile(dir .. "/out") == data, true, "the copy is the file")
    t.rmtree(dir)
  end)
end

t.test("bench/p2p/fanout.lua: two peers get the seed's file; the time and CPU time; no peer left", function()
  local dir = t.tmpdir()
  t.writefile(dir .. "/f", require("crypto").random(200000))
  local out, err, code = t.netlua("bench/p2p/fanout.lua " .. t.shellquote(t.NETLUA) .. " " .. dir .. "/f 2")
  t.eq(code, 0, err)
  local secs, cpu = out:match("^RESULT secs=([%d.]+) cpu_s=([%d.]+) bytes=200000 peers=2\n$")
  t.ok(secs and cpu, "the RESULT line: " .. out)
  local ps = t.sh("ps -eo args | grep -c '[n]etlua-p2pbench' || true")
  t.eq(ps, "0\n", "no peer is left running")
  t.rmtree(dir)
end)

t.test("report.lua divides the p2p_fanout rows by the C copy", function()
  local dir = t.tmpdir()
  t.writefile(dir .. "/run.tsv", "# netlua bench TEST\nworkload\truntime\tmetric\tbetter\trun\tvalue\n" ..
    "p2p_fanout\tc-copy\tsecs\tlo\t1\t0.5\np2p_fanout\tnetlua\tsecs\tlo\t1\t4\n")
  local out, err, code = t.netlua("bench/report.lua " .. dir .. "/run.tsv")
  t.rmtree(dir)
  t.eq(code, 0, err)
  t.ok(out:find("| p2p_fanout | secs (lo) | netlua | 4.00 | - | 8.00x | - |", 1, true), out)
end)

if loadgen_dir then t.rmtree(loadgen_dir) end
t.done()
