-- test_http_takeover.lua: req:socket(), a handler taking its connection
-- over from http.server (what WebSocket and streams stand on): over plain
-- HTTP and HTTPS, with the bytes that came right after the request head,
-- while other connections go on being served.
local t = require "testlib"
local httpserver = require "http.server"
local socket = require "socket"
local task = require "task"

-- A route that switches to a line-echo protocol on the taken socket.
local function echo_route(srv, seen)
  srv:route("GET", "/echo", function(req)
    local sock = assert(req:socket())
    seen.class = tostring(sock)
    seen.connections = srv:connections()
    assert(sock:send("HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\n\r\n"))
    while true do
      local line, err = sock:receive("*l")
      if not line then seen.ended = err break end
      sock:send("echo: " .. line .. "\n")
    end
    sock:close()
  end)
  srv:route("GET", "/hello", function() return "hello\n" end)
end

-- The client's half, on a connected socket-like `c`: the head and a first
-- line in one send, then the switch, then more lines.
local function talk(c)
  assert(c:send("GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: echo\r\n\r\nsent early\n"))
  t.eq(c:receive("*l"), "HTTP/1.1 101 Switching Protocols")
  t.eq(c:receive("*l"), "Upgrade: echo")
  t.eq(c:receive("*l"), "")
  t.eq(c:receive("*l"), "echo: sent early")
  assert(c:send("second\n"))
  t.eq(c:receive("*l"), "echo: second")
end

t.test("plain HTTP: the handler gets a tcp socket holding what came after the head", function()
  local srv = assert(httpserver{port = 0})
  local seen = {}
  echo_route(srv, seen)
  t.serve_while(srv, function()
    local c = t.connect(srv.port)
    talk(c)
    -- another connection is served meanwhile, and the taken one is not counted
    local other = t.connect(srv.port)
    other:send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
    t.eq(other:receive("*l"), "HTTP/1.1 200 OK")
    other:close()
    c:close()
    for _ = 1, 200 do
      if seen.ended then break end
      task.sleep(0.01)
    end
  end)
  t.match(seen.class, "^tcp{client}")
  t.eq(seen.connections, 0)
  t.eq(seen.ended, "closed")
end)

t.test("serve() returns without waiting for a taken connection's handler", function()
  local srv = assert(httpserver{port = 0})
  local release = false
  srv:route("GET", "/hold", function(req)
    local sock = assert(req:socket())
    sock:send("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nheld\n")
    while not release do task.sleep(0.01) end
    sock:close()
  end)
  local c
  t.serve_while(srv, function()
    c = t.connect(srv.port)
    c:send("GET /hold HTTP/1.1\r\nHost: x\r\n\r\n")
    t.eq(c:receive("*l"), "HTTP/1.1 200 OK")
  end) -- returns while the handler still holds its socket
  release = true
  t.eq(c:receive("*l"), "Connection: close")
  t.eq(c:receive("*l"), "")
  t.eq(c:receive("*l"), "held")
  t.eq(select(2, c:receive("*l")), "closed")
  c:close()
end)

t.test("a second req:socket() raises; a failing handler after taking over is logged", function()
  local srv = assert(httpserver{port = 0})
  srv:route("GET", "/twice", function(req)
    local sock = assert(req:socket())
    sock:close()
    req:socket()
  end)
  local log = t.capture_stderr(function()
    t.serve_while(srv, function()
      local c = t.connect(srv.port)
      c:send("GET /twice HTTP/1.1\r\nHost: x\r\n\r\n")
      t.eq(select(2, c:receive("*l")), "closed") -- no reply at all
      c:close()
    end)
  end)
  t.match(log, "error in handler for GET /twice: .-already taken over")
end)

local tls = require "tlslib"
local missing = tls.missing()
if missing then
  t.skip("HTTPS take-over", missing)
else
  local ssl = require "ssl"
  local C = tls.certs()
  t.test("HTTPS: the handler gets an ssl connection, past its handshake", function()
    local srv = assert(httpserver{port = 0,
      tls = {certificate = C.server.cert, key = C.server.enckey, password = "secret"}})
    local seen = {}
    echo_route(srv, seen)
    t.serve_while(srv, function()
      local c = assert(ssl.connect("localhost", srv.port, {cafile = C.ca.cert}))
      c:settimeout(10)
      talk(c)
      c:close()
      for _ = 1, 200 do
        if seen.ended then break end
        task.sleep(0.01)
      end
    end)
    t.match(seen.class, "^SSL connection")
    t.eq(seen.ended, "closed")
  end)
end

t.done()
