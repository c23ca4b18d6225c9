-- test_lab_bench.lua: `netlua -m bench`, the load generator, against real
-- servers that count what they served (a netlua http.server with a
-- WebSocket echo, scripts/echoserver.lua, /usr/bin/python3 echo and HTTP
-- servers): the counts it reports must match the servers' counts, and its
-- error counts must match the connections a refusing, resetting or silent
-- server saw. Short runs; no timing is checked.
local t = require "testlib"
local json = require "json"
local socket = require "socket"
local time = require "time"

-- Runs the bench with `args` and --json; returns the decoded results, the
-- exit status and the raw output.
local function bench(args)
  local out, err, code = t.netlua("-m bench " .. args .. " --json")
  local ok, r = pcall(json.decode, out or "")
  t.ok(ok and type(r) == "table", "bench printed JSON: " .. tostring(out) .. tostring(err))
  return r, code, out .. err
end

local function count(tbl, key)
  return tbl[key] or 0
end

local function total(tbl)
  local n = 0
  for _, c in pairs(tbl) do n = n + c end
  return n
end

-- A GET over a connection of its own: the body.
local function get(port, path)
  local c = t.connect(port)
  c:send("GET " .. path .. " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
  local reply = c:receive("*a")
  c:close()
  return reply:match("\r\n\r\n(.*)$")
end

local function have_python()
  if not t.have("/usr/bin/python3") then return t.skip(nil, "needs /usr/bin/python3") end
  return true
end

-- ---- a netlua http.server that counts, with a WebSocket echo ------------------------

local NETLUA_SERVER = [[
local http = require "http"
local srv = assert(http.server{port = 0})
local hits, msgs = 0, 0
srv:route("GET", "/", function() hits = hits + 1 return 200, "hello" end)
srv:route("GET", "/count", function() return {hits = hits, msgs = msgs} end)
srv:route("GET", "/stop", function() srv:stop() return "bye" end)
srv:websocket("/echo", function(ws)
  while true do
    local m, kind = ws:receive()
    if not m then return end
    msgs = msgs + 1
    ws:send(m, kind)
  end
end)
print("listening on 127.0.0.1:" .. srv.port) io.stdout:flush()
srv:serve{timeout = 60}
]]

local function with_netlua_server(fn)
  local pid, port, dir = t.start_program(t.script(NETLUA_SERVER), "", 90)
  local ok, err = pcall(fn, port)
  get(port, "/stop")
  t.finish_server(pid, dir)
  if not ok then error(err, 0) end
end

t.test("http: the 200s it counts are the requests http.server served", function()
  with_netlua_server(function(port)
    local r, code, raw = bench(string.format("http://127.0.0.1:%d/ --conns 4 --duration 0.5", port))
    t.eq(code, 0, raw)
    t.ok(r.requests > 0, raw)
    t.eq(total(r.errors), 0, raw)
    t.eq(count(r.statuses, "200"), r.requests, raw)
    t.eq(json.decode(get(port, "/count")).hits, r.requests)
  end)
end)

t.test("http with --threads 2: the counts of both threads add up to the server's", function()
  with_netlua_server(function(port)
    local r, code, raw = bench(string.format("http://127.0.0.1:%d/ --conns 4 --threads 2 --duration 0.5", port))
    t.eq(code, 0, raw)
    t.eq(r.threads, 2)
    t.eq(total(r.errors), 0, raw)
    t.eq(json.decode(get(port, "/count")).hits, r.requests)
  end)
end)

t.test("http: a path that is not there counts 404s as bad status", function()
  with_netlua_server(function(port)
    local r, _, raw = bench(string.format("http://127.0.0.1:%d/nothing --conns 2 --duration 0.3", port))
    t.ok(r.requests > 0, raw)
    t.eq(count(r.statuses, "404"), r.requests, raw)
    t.eq(count(r.errors, "bad status"), r.requests, raw)
  end)
end)

t.test("ws: the echoes it counts are the messages the WebSocket handler answered", function()
  with_netlua_server(function(port)
    local r, code, raw = bench(string.format("ws://127.0.0.1:%d/echo --conns 3 --threads 3 --duration 0.5", port))
    t.eq(code, 0, raw)
    t.ok(r.requests > 0, raw)
    t.eq(total(r.errors), 0, raw)
    t.eq(json.decode(get(port, "/count")).msgs, r.requests)
  end)
end)

-- ---- scripts/echoserver.lua ------------------------------------------------------------

t.test("tcp: scripts/echoserver.lua sees exactly --conns connections, and the text output", function()
  local pid, port, dir = t.start_server("scripts/echoserver.lua", "--count 3", 60)
  local out, err, code = t.netlua(string.format("-m bench tcp://127.0.0.1:%d --conns 3 --duration 0.5 --send abc", port))
  t.eq(code, 0, out .. err)
  t.match(out, "^tcp://127%.0%.0%.1:%d+: 3 connections %(1 thread%), [%d.]+ s\nrequests  %d+ %([%d.]+/s%)\n")
  t.match(out, "\nlatency   p50 [%d.]+ [mu]?s, p90 [%d.]+ [mu]?s, p99 [%d.]+ [mu]?s, max [%d.]+ [mu]?s\n")
  t.match(out, "\n  < [%d.]+ [mu]?s +#+ +%d+\n")
  t.match(out, "\nerrors    none\n$")
  local sout = t.finish_server(pid, dir) -- --count 3: it ends once the three have gone
  local _, connections = sout:gsub("connection from", "")
  local _, closed = sout:gsub("\nclosed ", "")
  t.eq(connections, 3, sout)
  t.eq(closed, 3, sout)
end)

-- ---- /usr/bin/python3 servers -------------------------------------------------------------

-- echo: echoes and, when a connection ends, writes "connections bytes";
-- reset: closes each connection with a reset (SO_LINGER 0) and counts it;
-- silent: keeps each connection and never answers; counts them.
local PY_TCP = [[
import os, socket, struct, sys, threading
mode, report_path = sys.argv[1], sys.argv[2]
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", 0))
srv.listen(128)
print("listening on 127.0.0.1:%d" % srv.getsockname()[1], flush=True)
lock, total, kept = threading.Lock(), {"conns": 0, "bytes": 0}, []
def report(conns, nbytes):
    with lock:
        total["conns"] += conns
        total["bytes"] += nbytes
        with open(report_path + ".tmp", "w") as f:
            f.write("%d %d\n" % (total["conns"], total["bytes"]))
        os.replace(report_path + ".tmp", report_path)
def echo(c):
    n = 0
    while True:
        try:
            data = c.recv(65536)
        except OSError:
            break
        if not data:
            break
        c.sendall(data)
        n += len(data)
    c.close()
    report(1, n)
while True:
    c, _ = srv.accept()
    if mode == "echo":
        threading.Thread(target=echo, args=(c,), daemon=True).start()
    elif mode == "reset":
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()
        report(1, 0)
    else:
        kept.append(c)
        report(1, 0)
]]

-- Starts PY_TCP in `mode`; returns its port, a function reading its
-- report (connections, bytes) and one stopping it.
local function python_tcp(mode)
  local dir = t.tmpdir()
  local py = t.script(PY_TCP, "server.py")
  local pid, port, pdir = t.start_command(string.format("/usr/bin/python3 %s %s %s/report",
    py, mode, dir), 60)
  local function report()
    local text = t.readfile(dir .. "/report") or "0 0"
    local conns, bytes = text:match("(%d+) (%d+)")
    return tonumber(conns), tonumber(bytes)
  end
  local function stop()
    os.execute("kill " .. pid)
    t.rmtree(pdir)
  end
  return port, report, stop
end

-- Waits (bounded) until the server's connection count reaches `want`;
-- returns its report.
local function report_when(report, want)
  for _ = 1, 200 do
    local conns, bytes = report()
    if conns >= want then return conns, bytes end
    time.sleep(0.05)
  end
  return report()
end

t.test("tcp: the round trips it counts are the bytes a Python echo server echoed", function()
  if not have_python() then return end
  local port, report, stop = python_tcp("echo")
  local r, code, raw = bench(string.format("tcp://127.0.0.1:%d --conns 4 --duration 0.5 --send 'ping!\n'", port))
  t.eq(code, 0, raw)
  t.eq(total(r.errors), 0, raw)
  t.ok(r.requests > 0, raw)
  local conns, bytes = report_when(report, 4)
  stop()
  t.eq(conns, 4)
  t.eq(bytes, r.requests * #"ping!\n")
end)

t.test("tcp: a server that resets every connection: one reset error per connection it saw", function()
  if not have_python() then return end
  local port, report, stop = python_tcp("reset")
  local r, code, raw = bench(string.format("tcp://127.0.0.1:%d --conns 2 --duration 0.3", port))
  t.eq(code, 1, raw) -- no round trip succeeded
  t.eq(r.requests, 0, raw)
  t.ok(count(r.errors, "reset") > 0, raw)
  local errors = total(r.errors)
  t.eq(count(r.errors, "reset") + count(r.errors, "closed"), errors, raw)
  local conns = report_when(report, errors)
  stop()
  t.eq(conns, errors, raw)
end)

t.test("tcp: a server that never answers: one timeout per connection it saw", function()
  if not have_python() then return end
  local port, report, stop = python_tcp("silent")
  local r, code, raw = bench(string.format("tcp://127.0.0.1:%d --conns 2 --duration 0.5 --timeout 0.2", port))
  t.eq(code, 1, raw)
  t.eq(r.requests, 0, raw)
  t.ok(count(r.errors, "timeout") > 0, raw)
  t.eq(count(r.errors, "timeout"), total(r.errors), raw)
  local conns = report_when(report, total(r.errors))
  stop()
  t.eq(conns, total(r.errors), raw)
end)

t.test("tcp: a port nothing listens on counts refused", function()
  local r, code, raw = bench(string.format("tcp://127.0.0.1:%d --conns 2 --duration 0.3", t.closed_port()))
  t.eq(code, 1, raw)
  t.eq(r.requests, 0)
  t.ok(count(r.errors, "refused") > 0, raw)
  t.eq(count(r.errors, "refused"), total(r.errors), raw)
end)

-- Keep-alive HTTP/1.1 with Content-Length at /, chunked at /chunked, 404
-- elsewhere; /count tells how many requests it answered before it.
local PY_HTTP = [[
import sys, threading
from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler
lock, served = threading.Lock(), [0]
class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        if self.path == "/count":
            with lock:
                body = str(served[0]).encode()
            status = 200
        else:
            with lock:
                served[0] += 1
            body, status = b"hello from python\n", 200 if self.path in ("/", "/chunked") else 404
        self.send_response(status)
        if self.path == "/chunked":
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.write(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        else:
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
    def log_message(self, *args):
        pass
class Server(ThreadingHTTPServer):
    daemon_threads = True
srv = Server(("127.0.0.1", 0), Handler)
print("listening on 127.0.0.1:%d" % srv.server_address[1], flush=True)
srv.serve_forever()
]]

t.test("http: a Python keep-alive server: requests, chunked replies and 404s match its count", function()
  if not have_python() then return end
  local pid, port, dir = t.start_command("/usr/bin/python3 " .. t.script(PY_HTTP, "pyhttp.py"), 60)
  local ok, err = pcall(function()
    local r, code, raw = bench(string.format("http://127.0.0.1:%d/ --conns 3 --duration 0.5", port))
    t.eq(code, 0, raw)
    t.eq(total(r.errors), 0, raw)
    local chunked = bench(string.format("http://127.0.0.1:%d/chunked --conns 2 --duration 0.3", port))
    t.eq(total(chunked.errors), 0)
    local missing = bench(string.format("http://127.0.0.1:%d/nope --conns 2 --duration 0.3", port))
    t.eq(count(missing.statuses, "404"), missing.requests)
    t.eq(count(missing.errors, "bad status"), missing.requests)
    t.eq(tonumber(get(port, "/count")), r.requests + chunked.requests + missing.requests)
  end)
  os.execute("kill " .. pid)
  t.rmtree(dir)
  if not ok then error(err, 0) end
end)

-- ---- bad use -------------------------------------------------------------------------------

t.test("bad use: status 2 with the usage line", function()
  for _, case in ipairs{
    {"ftp://127.0.0.1:21", "must start with tcp://, http:// or ws://"},
    {"tcp://127.0.0.1", "needs a port"},
    {"tcp://127.0.0.1:1 --conns 2 --threads 3", "--threads 3 is more than --conns 2"},
    {"tcp://127.0.0.1:1 --duration 0", "--duration must be a number of seconds above 0"},
    {"", "URL is missing"},
  } do
    local _, err, code = t.netlua("-m bench " .. case[1])
    t.eq(code, 2, case[1])
    t.ok(err:find(case[2], 1, true), err)
    t.match(err, "usage: netlua %-m bench URL")
  end
end)

t.done()
