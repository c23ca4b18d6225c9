-- test_ssl_tasks.lua: the ssl module with netlua on both sides, in tasks
-- and threads: SNI choosing between two certificates, mutual TLS, ALPN,
-- certificate objects, many TLS connections at once on one thread, a
-- connection moved to another thread, socket.select with TLS connections,
-- 100 MB each way against Python with a hash check, SSLKEYLOGFILE.
local t = require "testlib"
local tls = require "tlslib"
local ssl = require "ssl"
local socket = require "socket"
local task = require "task"
local thread = require "thread"

local missing = tls.missing()
if missing then
  t.skip("ssl task tests", missing)
  t.done()
end

local C = tls.certs()

local function server_ctx(name, extra)
  local params = {mode = "server", certificate = C[name].cert, key = C[name].key}
  for k, v in pairs(extra or {}) do params[k] = v end
  return assert(ssl.newcontext(params))
end

-- A TLS server for `n` connections in tasks: each accepted connection is
-- wrapped with ctx, shakes hands and goes to handler(conn) in its own task.
-- setup(conn), when given, runs before the handshake. Returns the port and
-- the accepting task, whose join gives each handler task's join results.
local function serve(ctx, n, handler, setup)
  local srv = assert(socket.bind("127.0.0.1", 0))
  local _, port = srv:getsockname()
  local acceptor = task.spawn(function()
    srv:settimeout(20)
    local handlers = {}
    for i = 1, n do
      local s = assert(srv:accept())
      handlers[i] = task.spawn(function()
        local conn = assert(ssl.wrap(s, ctx))
        conn:settimeout(20)
        if setup then setup(conn) end
        local ok, err = conn:dohandshake()
        if not ok then
          conn:close()
          return nil, err
        end
        local r = table.pack(handler(conn))
        conn:close()
        return table.unpack(r, 1, r.n)
      end)
    end
    srv:close()
    local results = {}
    for i, h in ipairs(handlers) do results[i] = table.pack(h:join()) end
    return results
  end)
  return port, acceptor
end

-- Echo one line, upper-cased.
local function echo_line(conn)
  local line = conn:receive()
  if line then conn:send(line:upper() .. "\n") end
  return line
end

t.test("SNI: the server picks the certificate of the name the client sends", function()
  local main, other = server_ctx("server"), server_ctx("btest")
  local port, acceptor = serve(main, 3, function(conn)
    local name = conn:getsniname()
    echo_line(conn)
    return name
  end, function(conn) conn:sni({localhost = main, ["b.test"] = other}, true) end)
  local h = task.spawn(function()
    local got = {}
    for _, name in ipairs{"localhost", "b.test"} do
      local conn = assert(ssl.connect("127.0.0.1", port, {cafile = C.ca.cert,
        servername = name, timeout = 20}))
      conn:send("x\n")
      got[#got + 1] = conn:receive()
      got[#got + 1] = conn:getpeercertificate():subject()[1].value
      conn:close()
    end
    local conn, err = ssl.connect("127.0.0.1", port, {cafile = C.ca.cert,
      servername = "c.test", timeout = 20})
    got[#got + 1] = conn and "accepted" or err
    return got
  end)
  local ok, got = h:join()
  t.ok(ok, got)
  local _, results = acceptor:join()
  t.eq(got[1], "X")
  t.eq(got[2], "localhost")
  t.eq(got[3], "X")
  t.eq(got[4], "b.test", "the b.test certificate was chosen")
  t.eq(results[2][2], "b.test", "getsniname on the server")
  t.match(got[5], "unrecognized name", "strict: an unknown name is refused")
end)

t.test("mutual TLS: the server requires and checks a client certificate", function()
  local ctx = server_ctx("server", {cafile = C.ca.cert, verify = {"peer", "fail_if_no_peer_cert"}})
  local port, acceptor = serve(ctx, 2, function(conn)
    local cert = conn:getpeercertificate()
    echo_line(conn)
    return cert:subject()[1].value, conn:getpeerverification()
  end)
  local h = task.spawn(function()
    local conn = assert(ssl.connect("localhost", port, {cafile = C.ca.cert, timeout = 20,
      certificate = C.client.cert, key = C.client.key}))
    conn:send("mtls\n")
    local line = conn:receive()
    conn:close()
    local c2, err = ssl.connect("localhost", port, {cafile = C.ca.cert, timeout = 20})
    if c2 then -- TLS 1.3: the refusal comes with the first read
      c2:send("x\n")
      local _, e = c2:receive()
      err = e
      c2:close()
    end
    return line, err
  end)
  local _, line, err = h:join()
  local _, results = acceptor:join()
  t.eq(line, "MTLS")
  t.eq(results[1][2], "netlua client")
  t.eq(results[1][3], true)
  t.ok(err ~= nil, "without a certificate the client is refused")
  t.eq(results[2][1], true, "the handler task ended")
  t.eq(results[2][2], nil)
  t.match(results[2][3], "certificate")
end)

t.test("ALPN: the server picks from what the client offers", function()
  local ctx = server_ctx("server", {alpn = {"h2", "http/1.1"}})
  local port, acceptor = serve(ctx, 1, function(conn) return conn:getalpn() end)
  local conn = assert(ssl.connect("localhost", port, {cafile = C.ca.cert, timeout = 20,
    alpn = {"foo", "http/1.1"}}))
  t.eq(conn:getalpn(), "http/1.1")
  conn:close()
  local _, results = acceptor:join()
  t.eq(results[1][2], "http/1.1")
end)

t.test("openssl s_client and Python's ssl client against netlua's ssl server in a thread", function()
  local srv = assert(socket.bind("127.0.0.1", 0))
  local _, port = srv:getsockname()
  local th = thread.spawn(function(server, cert, key)
    local ssl_ = require "ssl"
    local ctx = assert(ssl_.newcontext{mode = "server", certificate = cert, key = key,
      alpn = "echo/1"})
    server:settimeout(20)
    local seen = {}
    for i = 1, 2 do
      local conn = assert(ssl_.wrap(assert(server:accept()), ctx))
      conn:settimeout(20)
      assert(conn:dohandshake())
      seen[i] = conn:getalpn() or "none"
      local line = conn:receive()
      conn:send(line:upper() .. "\n")
      conn:close()
    end
    server:close()
    return table.concat(seen, ",")
  end, srv, C.server.cert, C.server.key)
  local out = t.sh(string.format("openssl s_client -connect 127.0.0.1:%d -servername localhost " ..
    "-CAfile %s -verify_return_error -alpn echo/1 -quiet 2>&1", port, t.shellquote(C.ca.cert)),
    {stdin = "from s_client\n"})
  t.match(out, "FROM S_CLIENT")
  out = t.sh(tls.PYTHON .. " -c " .. t.shellquote([[
import ssl, socket, sys
ctx = ssl.create_default_context(cafile=sys.argv[1])
with socket.create_connection(("127.0.0.1", int(sys.argv[2]))) as raw:
    with ctx.wrap_socket(raw, server_hostname="localhost") as s:
        s.sendall(b"from python\n")
        print(s.recv(100).decode(), end="")
]]) .. " " .. t.shellquote(C.ca.cert) .. " " .. port)
  t.eq(out, "FROM PYTHON\n")
  local ok, seen = th:join()
  t.ok(ok, seen)
  t.eq(seen, "echo/1,none")
end)

t.test("certificate objects: subject, issuer, digest, dates, extensions, pem", function()
  local port, proc = tls.python_server{cert = C.server.cert, key = C.server.key}
  local conn = assert(ssl.connect("localhost", port, {cafile = C.ca.cert, timeout = 20}))
  local cert = conn:getpeercertificate()
  t.eq(cert:subject()[1].name, "commonName")
  t.eq(cert:subject()[1].oid, "2.5.4.3")
  t.eq(cert:issuer()[1].value, "netlua local CA")
  local fp = t.sh("openssl x509 -noout -fingerprint -sha256 -in " .. t.shellquote(C.server.cert))
  t.eq(cert:digest("sha256"), fp:match("=(.-)%s*$"):gsub(":", ""):lower())
  t.eq(#cert:digest(), 40, "sha1 by default, as LuaSec")
  t.match(cert:notafter(), "^%a%a%a +%d+ %d%d:%d%d:%d%d %d%d%d%d GMT$")
  t.ok(cert:validat(os.time()))
  t.ok(not cert:validat(os.time() + 365 * 86400))
  local san = cert:extensions()["2.5.29.17"]
  t.eq(san.dNSName[1], "localhost")
  t.eq(san.iPAddress[1], "127.0.0.1")
  t.eq(cert:pem(), t.readfile(C.server.cert))
  t.eq(ssl.loadcertificate(cert:pem()), cert)
  local pem, kind, bits = cert:pubkey()
  t.match(pem, "^%-%-%-%-%-BEGIN PUBLIC KEY")
  t.eq(kind, "id-ecPublicKey")
  t.eq(bits, 256)
  t.match(cert:serial(), "^%x+$")
  local chain = conn:getpeerchain()
  t.eq(#chain, 1)
  t.eq(chain[1], cert)
  conn:close()
  tls.finish(proc)
end)

t.test("many TLS connections at once on one thread, each in a task", function()
  local N = 40
  local port, acceptor = serve(server_ctx("server"), N, function(conn)
    for _ = 1, 3 do
      if not echo_line(conn) then return "lost" end
    end
    return "served"
  end)
  local clients = {}
  for i = 1, N do
    clients[i] = task.spawn(function()
      local conn = assert(ssl.connect("localhost", port, {cafile = C.ca.cert, timeout = 20}))
      local got = {}
      for k = 1, 3 do
        conn:send("client " .. i .. " line " .. k .. "\n")
        got[k] = conn:receive()
      end
      conn:close()
      return table.concat(got, "|")
    end)
  end
  for i, h in ipairs(clients) do
    local ok, got = h:join()
    t.ok(ok, got)
    t.eq(got, string.format("CLIENT %d LINE 1|CLIENT %d LINE 2|CLIENT %d LINE 3", i, i, i))
  end
  local _, results = acceptor:join()
  for i = 1, N do t.eq(results[i][2], "served") end
end)

t.test("a TLS connection moves to another thread and goes on there", function()
  local port, proc = tls.python_server{cert = C.server.cert, key = C.server.key}
  local conn = assert(ssl.connect("localhost", port, {cafile = C.ca.cert, timeout = 20}))
  conn:send("before\n")
  t.eq(conn:receive(), "BEFORE")
  local th = thread.spawn(function(c)
    c:send("in the thread\n")
    local line = c:receive()
    c:close()
    return line
  end, conn)
  t.eq(select(2, conn:send("x")), "closed", "the sender's object reads as closed")
  local ok, line = th:join()
  t.ok(ok, line)
  t.eq(line, "IN THE THREAD")
  tls.finish(proc)
end)

t.test("socket.select sees TLS connections; dirty() reports buffered plaintext", function()
  local port, proc = tls.python_server{cert = C.server.cert, key = C.server.key}
  local conn = assert(ssl.connect("localhost", port, {cafile = C.ca.cert, timeout = 20}))
  conn:send("a\nb\n")
  local r = socket.select({conn}, nil, 10)
  t.eq(r[1], conn)
  t.eq(conn:receive(), "A")
  if conn:dirty() then t.eq(#socket.select({conn}, nil, 0), 1, "dirty counts as readable") end
  t.eq(conn:receive(), "B")
  conn:close()
  tls.finish(proc)
end)

-- The Python server's pattern block (bytes 0..255, 256 times).
local block = {}
for i = 0, 255 do block[#block + 1] = string.char(i) end
block = string.rep(table.concat(block), 256)

t.test("100 MB each way, checked", function()
  local SIZE = 100 * 1024 * 1024
  -- netlua -> Python: Python's sha256 of what arrived
  local port, proc = tls.python_server{cert = C.server.cert, key = C.server.key, mode = "hash",
    size = SIZE}
  local conn = assert(ssl.connect("localhost", port, {cafile = C.ca.cert, timeout = 60}))
  for _ = 1, SIZE // #block do assert(conn:send(block) == #block) end
  local digest = conn:receive()
  conn:close()
  tls.finish(proc)
  local want = t.sh(tls.PYTHON .. " -c " .. t.shellquote(
    "import hashlib\nb = bytes(range(256)) * 256\nh = hashlib.sha256()\n" ..
    "for _ in range(" .. SIZE // #block .. "): h.update(b)\nprint(h.hexdigest())"))
  t.eq(digest .. "\n", want)
  -- Python -> netlua: every block as sent
  port, proc = tls.python_server{cert = C.server.cert, key = C.server.key, mode = "source",
    size = SIZE}
  conn = assert(ssl.connect("localhost", port, {cafile = C.ca.cert, timeout = 60}))
  local blocks, bad = 0, 0
  while true do
    local data, err = conn:receive(#block)
    if not data then
      t.eq(err, "closed")
      break
    end
    blocks = blocks + 1
    if data ~= block then bad = bad + 1 end
  end
  conn:close()
  tls.finish(proc)
  t.eq(blocks, SIZE // #block)
  t.eq(bad, 0)
end)

t.test("SSLKEYLOGFILE gets the session's secrets", function()
  local port, proc = tls.python_server{cert = C.server.cert, key = C.server.key}
  local log = C.dir .. "/keys.log"
  local script = t.script(string.format([[
    local ssl = require "ssl"
    local conn = assert(ssl.connect("localhost", %d, {cafile = %q, timeout = 20}))
    conn:send("x\n")
    print(conn:receive())
    conn:close()
  ]], port, C.ca.cert))
  local out, err = t.sh("SSLKEYLOGFILE=" .. t.shellquote(log) .. " " .. t.shellquote(t.NETLUA) ..
    " " .. t.shellquote(script))
  t.eq(out, "X\n", err)
  t.match(t.readfile(log) or "", "CLIENT_TRAFFIC_SECRET_0 %x+ %x+\n")
  tls.finish(proc)
end)

t.rmtree(C.dir)
t.done()
