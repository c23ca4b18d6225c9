-- test_https_server.lua: http.server{tls = ...} (its own process) against
-- curl --cacert, openssl s_client, Python's ssl client and netlua's own
-- ssl client: same routes and files over HTTPS, ALPN http/1.1, and clients
-- that speak plain HTTP, garbage, or stop mid-handshake lose only their
-- own connection.
local t = require "testlib"
local tls = require "tlslib"
local ssl = require "ssl"
local socket = require "socket"

local missing = tls.missing()
if missing then
  t.skip("https server tests", missing)
  t.done()
end
if not os.execute("command -v curl >/dev/null 2>&1") then
  t.skip("https server tests", "curl is not installed")
  t.done()
end

local C = tls.certs()
local big = {}
for i = 1, 200000 do big[i] = string.format("%015d\n", i) end
big = table.concat(big) -- 3.2 MB
t.writefile(C.dir .. "/big.bin", big)

local SERVER = [[
local http = require "http"
local cert, key, dir = ...
local srv = assert(http.server{port = 0, request_timeout = 1, keepalive_timeout = 30, workers = 2,
  tls = {certificate = cert, key = key, password = "secret"}})
srv:route("GET", "/hello", function() return "hello over tls\n" end)
srv:route("POST", "/echo", function(req) return req.body end)
srv:route("GET", "/stop", function() srv:stop() return "bye\n" end)
srv:static("/files", dir)
print("listening on " .. srv.url)
io.stdout:flush()
srv:serve{timeout = 60}
]]

local script = t.script(SERVER, "https_server.lua")
local url, server = tls.spawn(string.format("%s %s %s %s %s", t.shellquote(t.NETLUA),
  t.shellquote(script), t.shellquote(C.server.cert), t.shellquote(C.server.enckey),
  t.shellquote(C.dir)), "listening on (https://[%d.:]+)")
local port = tonumber(url:match(":(%d+)$"))

local function curl(args)
  return t.sh("curl -sS --max-time 20 --cacert " .. t.shellquote(C.ca.cert) .. " " .. args)
end

t.test("the server's url says https", function()
  t.match(url, "^https://127%.0%.0%.1:%d+$")
end)

t.test("curl --cacert gets a route over HTTPS, verifying the certificate", function()
  local out, err = curl("https://localhost:" .. port .. "/hello")
  t.eq(out, "hello over tls\n", err)
  out = curl("-d 'some body' https://localhost:" .. port .. "/echo")
  t.eq(out, "some body")
end)

t.test("keep-alive: curl sends two requests over one TLS connection", function()
  local out, err = curl("-v https://localhost:" .. port .. "/hello https://localhost:" ..
    port .. "/hello")
  t.eq(out, "hello over tls\nhello over tls\n")
  t.match(err, "Re%-using existing connection")
  t.match(err, "ALPN: server accepted http/1%.1")
end)

t.test("a static file streams over TLS intact", function()
  local out = curl("https://localhost:" .. port .. "/files/big.bin")
  t.eq(#out, #big)
  t.ok(out == big, "the same bytes")
end)

t.test("curl without the CA refuses the server", function()
  local _, err, code = t.sh("curl -sS --max-time 20 https://localhost:" .. port .. "/hello")
  t.ok(code ~= 0)
  t.match(err, "certificate")
end)

t.test("openssl s_client: handshake, ALPN http/1.1, a request", function()
  local out = t.sh(string.format("openssl s_client -connect 127.0.0.1:%d -servername localhost " ..
    "-CAfile %s -alpn http/1.1 -verify_return_error -quiet -ign_eof 2>&1", port,
    t.shellquote(C.ca.cert)),
    {stdin = "GET /hello HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"})
  t.match(out, "HTTP/1%.1 200 OK")
  t.match(out, "hello over tls")
  out = t.sh(string.format("openssl s_client -connect 127.0.0.1:%d -alpn http/1.1 " ..
    "-CAfile %s 2>&1", port, t.shellquote(C.ca.cert)))
  t.match(out, "ALPN protocol: http/1%.1")
  t.match(out, "Verify return code: 0 %(ok%)")
end)

t.test("Python's ssl client verifies and talks to the server", function()
  local out, err = t.sh(tls.PYTHON .. " -c " .. t.shellquote([[
import ssl, socket, sys
ctx = ssl.create_default_context(cafile=sys.argv[1])
ctx.set_alpn_protocols(["http/1.1"])
with socket.create_connection(("localhost", int(sys.argv[2]))) as raw:
    with ctx.wrap_socket(raw, server_hostname="localhost") as s:
        s.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            d = s.recv(4096)
            if not d: break
            data += d
        print(s.selected_alpn_protocol(), data.decode().split("\r\n\r\n")[1], end="")
]]) .. " " .. t.shellquote(C.ca.cert) .. " " .. port)
  t.eq(out, "http/1.1 hello over tls\n", err)
end)

t.test("requests in separate TLS records that arrive together are all answered", function()
  -- the server reads ahead: one recv can take several records, and the
  -- ones after the first must be answered without waiting for more bytes
  local out, err = t.sh(tls.PYTHON .. " -c " .. t.shellquote([[
import ssl, socket, sys
ctx = ssl.create_default_context(cafile=sys.argv[1])
with socket.create_connection(("localhost", int(sys.argv[2]))) as raw:
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    with ctx.wrap_socket(raw, server_hostname="localhost") as s:
        s.settimeout(15)
        for i in range(3):  # one record each, sent back to back
            s.send(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while data.count(b"hello over tls") < 3:
            d = s.recv(4096)
            if not d: break
            data += d
        print(data.count(b"HTTP/1.1 200 OK"), data.count(b"hello over tls"))
]]) .. " " .. t.shellquote(C.ca.cert) .. " " .. port)
  t.eq(out, "3 3\n", err)
end)

t.test("a body past max_body over TLS: the 413 arrives, the client may go on sending", function()
  -- the server answers before reading the body and closes lingering: TLS's
  -- close_notify, then the rest of what the client sends is read and dropped
  local out, err = t.sh(tls.PYTHON .. " -c " .. t.shellquote([[
import ssl, socket, sys
ctx = ssl.create_default_context(cafile=sys.argv[1])
with socket.create_connection(("localhost", int(sys.argv[2]))) as raw:
    with ctx.wrap_socket(raw, server_hostname="localhost") as s:
        s.settimeout(15)
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 50000000\r\n\r\n")
        s.sendall(b"b" * 300000)  # before reading: unread on the server
        data = b""
        while not data.endswith(b"request body too large\n"):
            d = s.recv(4096)
            if not d: break
            data += d
        print(data.split(b"\r\n")[0].decode())
        try:  # in pieces: once reset, the next one fails
            for i in range(10):
                s.sendall(b"b" * 30000)
            print("sent on")
        except OSError as e:
            print("send failed:", e)
]]) .. " " .. t.shellquote(C.ca.cert) .. " " .. port)
  t.eq(out, "HTTP/1.1 413 Payload Too Large\nsent on\n", err)
end)

t.test("netlua's ssl client talks to netlua's server", function()
  local conn = assert(ssl.connect("localhost", port, {cafile = C.ca.cert, alpn = "http/1.1",
    timeout = 10}))
  t.eq(conn:getalpn(), "http/1.1")
  conn:send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
  t.eq(conn:receive(), "HTTP/1.1 200 OK")
  local length
  repeat
    local line = conn:receive()
    length = length or tonumber(line:match("^Content%-Length: (%d+)"))
  until line == ""
  t.eq(conn:receive(length), "hello over tls\n")
  conn:close()
end)

t.test("plain HTTP, garbage and a stalled handshake lose only their own connection", function()
  local plain = assert(socket.connect("127.0.0.1", port))
  plain:settimeout(10)
  plain:send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
  local data, err = plain:receive("*a")
  t.ok(data == "" or data == nil and err == "closed", "closed without an answer")
  plain:close()
  local junk = assert(socket.connect("127.0.0.1", port))
  junk:settimeout(10)
  junk:send(string.rep("\22\3\1\0\255garbage", 100))
  t.eq(select(2, junk:receive("*a")) or "closed", "closed")
  junk:close()
  -- a client that starts a handshake and stops: request_timeout (1 s) ends it
  local stalled = assert(socket.connect("127.0.0.1", port))
  stalled:settimeout(10)
  stalled:send("\22\3\1\2\0\1\0\1\252\3\3") -- the start of a ClientHello
  t.eq(select(2, stalled:receive("*a")) or "closed", "closed")
  stalled:close()
  local out = curl("https://localhost:" .. port .. "/hello")
  t.eq(out, "hello over tls\n")
end)

t.test("ssl.https (LuaSec's) verifies by default, and with cafile talks", function()
  local https = require "ssl.https"
  local body, code = https.request("https://localhost:" .. port .. "/hello")
  t.eq(body, nil)
  t.eq(code, "certificate verify failed: unable to get local issuer certificate")
  local chunks = {}
  local ok, status, headers = https.request{url = "https://localhost:" .. port .. "/hello",
    cafile = C.ca.cert, sink = require("ltn12").sink.table(chunks)}
  t.eq(ok, 1)
  t.eq(status, 200)
  t.eq(headers["content-length"], "15")
  t.eq(table.concat(chunks), "hello over tls\n")
  body, code = https.request{url = "https://127.0.0.1:" .. port .. "/hello", verify = "none",
    sink = require("ltn12").sink.table(chunks)}
  t.eq(code, 200, "verify = 'none' opts out")
end)

t.test("socket.http takes https:// URLs through ssl.https", function()
  local http = require "socket.http"
  local https = require "ssl.https"
  local body, code = http.request("https://localhost:" .. port .. "/hello")
  t.eq(body, nil)
  t.match(code, "^certificate verify failed")
  https.TIMEOUT = 10
  body, code = https.request("https://localhost:" .. port .. "/echo", "posted")
  t.eq(body, nil, "still the system's CA store")
  t.match(code, "^certificate verify failed")
end)

t.test("a bad tls option is a clear error", function()
  local http = require "http"
  t.raises("tls option 'key' is required", http.server, {port = 0, tls = {certificate = "x"}})
  t.raises("unknown tls option 'cert'", http.server, {port = 0, tls = {cert = "x", key = "y"}})
  local srv, err = http.server{port = 0, tls = {certificate = C.server.cert, key = C.server.enckey,
    password = "wrong"}}
  t.eq(srv, nil)
  t.match(err, "^cannot load key ")
end)

t.test("the server stops by itself", function()
  t.eq(curl("https://localhost:" .. port .. "/stop"), "bye\n")
  local out, err = tls.finish(server)
  t.match(out, "listening")
  t.eq(err, "")
end)

t.rmtree(C.dir)
t.done()
