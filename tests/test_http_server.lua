-- test_http_server.lua: http.server (tests/fixtures/server.lua, its own
-- process) driven by our client, by curl's command line and by raw sockets
-- from Python (tests/fixtures/raw.py) for what a polite client never sends.
package.path = (arg[0]:match("^(.*)/") or ".") .. "/?.lua;" .. package.path
local t = require "testlib"
local h = require "httphelp"
local http = require "http"
local json = require "json"

local static = t.tmpdir()
os.execute("mkdir -p " .. static .. "/pub/sub")
t.writefile(static .. "/pub/index.html", "<h1>index</h1>")
t.writefile(static .. "/pub/a.txt", "file a")
t.writefile(static .. "/pub/sub/b.json", "{}")
t.writefile(static .. "/secret.txt", "SECRET")
local bigdata = {}
for i = 1, 200000 do bigdata[i] = string.format("%015d\n", i) end
bigdata = table.concat(bigdata) -- 3.2 MB
t.writefile(static .. "/pub/big.bin", bigdata)
os.execute("ln -s " .. static .. "/secret.txt " .. static .. "/pub/link.txt")
os.execute("ln -s " .. static .. " " .. static .. "/pub/up")

local port, stop, sdir = h.spawn(string.format("exec %s %s/server.lua \"$PORTFILE\" %s/pub",
  t.shellquote(t.NETLUA), h.fixtures, static))
local base = "http://127.0.0.1:" .. port

-- Sends raw bytes, returns what the server answered before closing.
local function raw(request, pause)
  local out = t.sh(string.format("python3 %s/raw.py %d %s", h.fixtures, port, pause or ""),
    {stdin = request})
  return out
end

local function count(s, pattern)
  local n = 0
  for _ in s:gmatch(pattern) do n = n + 1 end
  return n
end

t.test("routes answer with JSON, text, params and query", function()
  local r = assert(http.get(base .. "/hello"))
  t.eq(r.status, 200)
  t.eq(r.body, "hello\n")
  t.eq(r.headers["content-type"], "text/plain; charset=utf-8")
  t.eq(r.headers["content-length"], "6")
  t.match(r.headers.date, "^%a%a%a, %d%d %a%a%a %d%d%d%d %d%d:%d%d:%d%d GMT$")
  r = assert(http.get(base .. "/users/42"))
  t.eq(r:json().id, "42")
  r = assert(http.get(base .. "/echo", {query = {q = "a b", n = "1"}}))
  t.eq(r:json().query.q, "a b")
  t.eq(r.headers["content-type"], "application/json")
  r = assert(http.get(base .. "/files/x/y/z.txt"))
  t.eq(r.body, "x/y/z.txt")
end)

t.test("handlers get method, body and headers; return status and headers", function()
  local r = assert(http.request{url = base .. "/json", json = {a = 1}, headers = {["X-In"] = "v"}})
  t.eq(r.status, 201)
  t.eq(r.reason, "Created")
  t.eq(r:json().got.a, 1)
  t.eq(r.headers["x-reply"], "yes")
  r = assert(http.request{url = base .. "/echo", method = "PUT", body = "xyz",
    headers = {["X-In"] = "v"}})
  local e = r:json()
  t.eq(e.method, "PUT")
  t.eq(e.body, "xyz")
  t.eq(e.headers["x-in"], "v")
  r = assert(http.get(base .. "/teapot"))
  t.eq(r.status, 418)
  t.eq(r.headers["content-type"], "text/x-tea")
  t.eq(r.headers["x-bad"], nil, "header with CR/LF dropped")
  t.eq(r.headers.injected, nil)
  r = assert(http.get(base .. "/nothing"))
  t.eq(r.status, 204)
end)

t.test("unknown routes are 404, wrong methods 405", function()
  t.eq(assert(http.get(base .. "/nope")).status, 404)
  t.eq(assert(http.post(base .. "/hello", "x")).status, 405)
end)

t.test("HEAD gets the headers and Content-Length, no body", function()
  local out = raw("HEAD /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
  t.match(out, "^HTTP/1.1 200 OK\r\n")
  t.match(out, "Content%-Length: 6\r\n")
  t.eq(out:match("\r\n\r\n(.*)$"), "")
end)

t.test("keep-alive: several requests on one connection, pipelined too", function()
  local out = raw("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n" ..
    "GET /users/7 HTTP/1.1\r\nHost: x\r\n\r\n" ..
    "GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
  t.eq(count(out, "HTTP/1.1 200 OK"), 3)
  t.eq(count(out, "Connection: keep%-alive"), 2)
  t.eq(count(out, "Connection: close"), 1)
  t.match(out, '{"id":"7"}')
end)

t.test("HTTP/1.0 without keep-alive closes after the reply", function()
  local out = raw("GET /hello HTTP/1.0\r\n\r\n")
  t.match(out, "^HTTP/1.1 200 OK")
  t.match(out, "Connection: close")
end)

t.test("chunked request bodies are decoded", function()
  local out = raw("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n" ..
    "Connection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
  t.match(out, "^HTTP/1.1 200 OK")
  t.eq(json.decode(out:match("\r\n\r\n(.*)$")).body, "hello world")
end)

t.test("limits: long URI 414, big headers 431, big body 413", function()
  local out = raw("GET /" .. string.rep("a", 2000) .. " HTTP/1.1\r\nHost: x\r\n\r\n")
  t.match(out, "^HTTP/1.1 414 URI Too Long")
  t.match(out, "Connection: close")
  out = raw("GET /hello HTTP/1.1\r\nHost: x\r\nX-Big: " .. string.rep("b", 5000) .. "\r\n\r\n")
  t.match(out, "^HTTP/1.1 431 Request Header Fields Too Large")
  out = raw("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
  t.match(out, "^HTTP/1.1 413 Payload Too Large")
  local chunk = string.format("%x\r\n%s\r\n", 40000, string.rep("c", 40000))
  out = raw("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" ..
    chunk .. chunk .. "0\r\n\r\n")
  t.match(out, "^HTTP/1.1 413 Payload Too Large")
  local r = assert(http.post(base .. "/echo", string.rep("d", 60000)))
  t.eq(#r:json().body, 60000, "a body under the bound passes")
end)

t.test("Expect: 100-continue gets an interim 100 before the reply", function()
  local out = raw("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n" ..
    "Expect: 100-continue\r\nConnection: close\r\n\r\nhello")
  t.match(out, "^HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n")
  t.match(out, '"body":"hello"')
  out = raw("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 999999\r\n" ..
    "Expect: 100-continue\r\n\r\n")
  t.match(out, "^HTTP/1.1 413 ", "too big: no 100, straight 413")
end)

t.test("malformed requests get 400 and the connection closes", function()
  for _, bad in ipairs({"NOT A REQUEST\r\n\r\n", "GET / HTTP/9x\r\n\r\n",
      "GET /hello HTTP/1.1\r\nBad Header Line\r\n\r\n",
      "POST /echo HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
      "GET /hello HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"}) do
    local out = raw(bad)
    t.match(out, "^HTTP/1.1 400 Bad Request", bad)
    t.match(out, "Connection: close", bad)
  end
end)

t.test("static files: content, type, index, HEAD", function()
  local r = assert(http.get(base .. "/static/a.txt"))
  t.eq(r.body, "file a")
  t.eq(r.headers["content-type"], "text/plain; charset=utf-8")
  r = assert(http.get(base .. "/static/sub/b.json"))
  t.eq(r.headers["content-type"], "application/json")
  r = assert(http.get(base .. "/static/"))
  t.eq(r.body, "<h1>index</h1>")
  t.eq(assert(http.get(base .. "/static/missing.txt")).status, 404)
end)

t.test("static files never escape their directory", function()
  for _, path in ipairs({"/static/../secret.txt", "/static/%2e%2e/secret.txt",
      "/static/%2E%2E%2fsecret.txt", "/static/sub/../../secret.txt",
      "/static/..%2f..%2fsecret.txt", "/static/link.txt", "/static/up/secret.txt",
      "/static/%00a.txt"}) do
    local out = raw("GET " .. path .. " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    t.ok(not out:find("SECRET"), path)
    t.match(out, "^HTTP/1.1 4%d%d", path)
  end
end)

t.test("big replies go out whole, to slow and fast readers alike", function()
  local rs = http.request_many({base .. "/static/big.bin", base .. "/static/big.bin",
    base .. "/hello"}, {concurrency = 3})
  t.eq(#rs[1].body, #bigdata)
  t.ok(rs[1].body == bigdata, "same bytes")
  t.ok(rs[2].body == bigdata, "same bytes, second reader")
  t.eq(rs[3].body, "hello\n")
  local out = t.sh(string.format("python3 -c 'import socket,time\ns=socket.create_connection((\"127.0.0.1\",%d))\n" ..
    "s.sendall(b\"GET /static/big.bin HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n\")\ntime.sleep(0.5)\n" ..
    "n=0\nwhile True:\n  c=s.recv(1000)\n  if not c: break\n  n+=len(c)\nprint(n)'", port))
  t.ok(tonumber(out) > #bigdata, "a reader that starts late still gets everything")
end)

t.test("stuck clients mid-request never block the others", function()
  -- a server whose request timeout cannot rescue a blocked loop in time
  local port2, stop2 = h.spawn(string.format("exec %s %s/server.lua \"$PORTFILE\" %s/pub 60",
    t.shellquote(t.NETLUA), h.fixtures, static))
  local dir = t.tmpdir()
  for i = 1, 3 do
    os.execute(string.format("printf 'GET /hello HTTP/1.1\\r\\nHost: x\\r\\nX-Half: ' | " ..
      "python3 %s/raw.py %d gate:%s/gate%d >/dev/null 2>&1 &", h.fixtures, port2, dir, i))
    h.waitfile(dir .. "/gate" .. i .. ".ready")
  end
  for i = 1, 5 do
    local r, err = http.get("http://127.0.0.1:" .. port2 .. "/hello", {timeout = 10})
    t.ok(r, err)
    t.eq(r.body, "hello\n", "request " .. i .. " while three clients are stuck")
  end
  for i = 1, 3 do t.writefile(dir .. "/gate" .. i, "") end
  stop2()
  t.rmtree(dir)
end)

t.test("a slowloris client does not block others and gets 408", function()
  local dir = t.tmpdir()
  -- a client that sends one header line every 0.4 s, never finishing in time
  os.execute(string.format("printf 'GET /hello HTTP/1.1\\r\\nA: 1\\r\\nB: 2\\r\\nC: 3\\r\\nD: 4\\r\\nE: 5\\r\\n' | " ..
    "python3 %s/raw.py %d 0.4 > %s/slow & echo $! > %s/pid", h.fixtures, port, dir, dir))
  for i = 1, 5 do
    local r = assert(http.get(base .. "/hello"))
    t.eq(r.body, "hello\n", "request " .. i .. " while a slow client holds a connection")
  end
  os.execute("while kill -0 $(cat " .. dir .. "/pid) 2>/dev/null; do sleep 0.1; done")
  t.match(t.readfile(dir .. "/slow"), "^HTTP/1.1 408 Request Timeout")
  t.rmtree(dir)
end)

t.test("a handler error gives 500, is logged, and the server keeps serving", function()
  local r = assert(http.get(base .. "/boom"))
  t.eq(r.status, 500)
  t.eq(assert(http.get(base .. "/hello")).status, 200)
  t.match(t.readfile(sdir .. "/log"), "kaboom in handler")
end)

t.test("many concurrent clients are all answered", function()
  local list = {}
  for i = 1, 40 do list[i] = base .. "/users/" .. i end
  local rs = http.request_many(list, {concurrency = 20})
  for i = 1, 40 do t.eq(rs[i]:json().id, tostring(i)) end
end)

t.test("an independent client (curl's command line) gets well-formed replies", function()
  local out, _, code = t.sh(string.format(
    "curl -s -i --http1.1 http://127.0.0.1:%d/hello http://127.0.0.1:%d/users/9", port, port))
  t.eq(code, 0)
  t.eq(count(out, "HTTP/1.1 200 OK"), 2)
  t.match(out, '{"id":"9"}')
end)

t.test("fuzzed requests never crash the server or get a malformed reply", function()
  local out, err, code = t.sh(string.format("python3 %s/fuzz.py %d 400 7", h.fixtures, port))
  t.eq(code, 0, err)
  t.eq(out, "cases 400\n")
  t.eq(assert(http.get(base .. "/hello")).body, "hello\n", "still serving")
end)

stop()
t.rmtree(static)

-- ---- in-process: stopping the loop --------------------------------------

t.test("serve{max_requests=N} returns after N requests; close from a handler", function()
  local path, dir = t.script([[
    local http = require "http"
    local srv = assert(http.server{port = 0})
    srv:route("GET", "/stop", function() srv:close() return "bye" end)
    srv:route("GET", "/x", function() return "x" end)
    io.stdout:write(srv.port, "\n") io.stdout:flush()
    os.execute("curl -s http://127.0.0.1:" .. srv.port .. "/x >/dev/null &")
    os.execute("curl -s http://127.0.0.1:" .. srv.port .. "/x >/dev/null &")
    print("served", srv:serve{max_requests = 2})
    os.execute("curl -s http://127.0.0.1:" .. srv.port .. "/stop >/dev/null &")
    print("served", srv:serve{timeout = 20})
    print(tostring(srv.core))
  ]])
  local out, err, code = t.netlua(t.shellquote(path))
  t.eq(code, 0, err)
  t.match(out, "served\t2\nserved\t1\n")
  t.match(out, "closed")
  t.rmtree(dir)
end)

t.test("a port in use is an error return", function()
  local a = assert(http.server{port = 0})
  local b, msg, code = http.server{port = a.port}
  t.eq(b, nil)
  t.eq(msg, "address already in use")
  t.eq(code, "EADDRINUSE")
  a:close()
end)

t.test("step(timeout) returns when nothing arrives", function()
  local srv = assert(http.server{port = 0})
  t.eq(srv:step(0.05), 0)
  srv:close()
  t.raises("closed server", srv.step, srv, 0)
end)

t.test("bad options and routes raise", function()
  t.raises("unknown option 'bogus'", http.server, {bogus = 1})
  local srv = assert(http.server{port = 0})
  t.raises("function expected", srv.route, srv, "GET", "/", "x")
  t.raises("static directory", srv.static, srv, "/s", "/nonexistent-netlua")
  srv:close()
end)

t.test("Ctrl-C stops serve() cleanly", function()
  local path, dir = t.script([[
    local http = require "http"
    local srv = assert(http.server{port = 0})
    local ok, err = pcall(function() -- "ready" inside: an early Ctrl-C lands here too
      print("ready") io.stdout:flush()
      return srv:serve()
    end)
    io.stderr:write("caught: ", tostring(err), "\n")
    srv:serve()
  ]])
  local _, err, code = t.interrupt(path, {"caught"})
  t.match(err, "caught: interrupted")
  t.eq(code, 130)
  t.rmtree(dir)
end)

t.test("out of descriptors, the server closes new clients instead of spinning (they hung, the loop ran at full CPU)", function()
  local socket = require "socket"
  local script, sdir2 = t.script([[
    local http = require "http"
    local srv = assert(http.server{host = "127.0.0.1", port = 0})
    srv:route("GET", "/hi", function() return "hi\n" end)
    print("listening on " .. srv.port) io.stdout:flush()
    srv:serve{timeout = 30} -- stops by itself
  ]])
  -- The lowest descriptor limit it starts with: no descriptor is left for
  -- a client, so accept fails with EMFILE.
  local pid, port2, dir
  for n = 5, 32 do
    dir = t.tmpdir()
    os.execute(string.format("sh -c 'ulimit -n %d; exec %s %s' > %s/out 2>&1 < /dev/null & echo $! > %s/pid",
      n, t.NETLUA, script, dir, dir))
    pid = tonumber(t.readfile(dir .. "/pid"))
    for _ = 1, 400 do
      port2 = tonumber((t.readfile(dir .. "/out") or ""):match("listening on (%d+)"))
      if port2 or not os.execute("kill -0 " .. pid .. " 2>/dev/null") then break end
      socket.sleep(0.05)
    end
    if port2 then break end
    t.rmtree(dir)
  end
  t.ok(port2, "the server starts under some descriptor limit")
  local c = assert(socket.connect("127.0.0.1", port2))
  c:settimeout(10)
  c:send("GET /hi HTTP/1.1\r\nHost: x\r\n\r\n")
  local data, err = c:receive("*a")
  c:close()
  os.execute("kill " .. pid .. " 2>/dev/null")
  t.rmtree(dir)
  t.rmtree(sdir2)
  t.eq(data, nil)
  t.eq(err, "closed")
end)

t.done()
