-- test_bench.lua: the parts of the benchmark that netlua runs itself: the
-- HTTP "hello" servers bench/run.sh measures (bench/servers/http_hello.lua
-- and its Node.js peer must answer the same) and bench/report.lua's table
-- (the http rows are divided by Node.js). No load, no timing: `make bench`
-- measures, this checks that what it measures is right.
local t = require "testlib"
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

t.done()
