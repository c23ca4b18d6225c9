-- test_ssl.lua: the ssl module (LuaSec's API) as a client against real TLS
-- servers (Python's ssl module, openssl s_server), and netlua against
-- itself: secure defaults and every verification failure's message,
-- LuaSec's wrap/dohandshake, receive patterns, timeouts, starttls.
local t = require "testlib"
local tls = require "tlslib"
local ssl = require "ssl"
local socket = require "socket"

local missing = tls.missing()
if missing then
  t.skip("ssl tests", missing)
  t.done()
end

local C = tls.certs()

-- A Python server with the given certificate (a name of C); the echo
-- mode unless said otherwise.
local function pyserver(name, opts)
  opts = opts or {}
  opts.cert, opts.key = C[name].cert, C[name].key
  return tls.python_server(opts)
end

t.test("ssl.connect verifies the chain and the name, then talks", function()
  local port, proc = pyserver("server")
  local conn = assert(ssl.connect("localhost", port, {cafile = C.ca.cert, timeout = 10}))
  t.eq(conn:send("hello\n"), 6)
  t.eq(conn:receive("*l"), "HELLO")
  t.ok(conn:getpeerverification())
  t.match(conn:info().protocol, "^TLSv1%.[23]$")
  t.eq(conn:info("protocol"), conn:info().protocol)
  conn:close()
  local out = tls.finish(proc)
  t.match(out, "handshake ok")
end)

t.test("the system's CA store is the default: a private CA is not trusted", function()
  local port, proc = pyserver("server")
  local conn, err = ssl.connect("localhost", port, {timeout = 10})
  t.eq(conn, nil)
  t.eq(err, "certificate verify failed: unable to get local issuer certificate")
  tls.finish(proc)
end)

t.test("verification failures say why", function()
  local cases = {
    {"self", "certificate verify failed: self%-signed certificate"},
    {"expired", "certificate verify failed: certificate has expired"},
    {"wrong", "certificate verify failed: host name mismatch %(certificate is for " ..
              "a%.test, connected to localhost%)"},
  }
  for _, case in ipairs(cases) do
    local port, proc = pyserver(case[1])
    local conn, err = ssl.connect("localhost", port, {cafile = C.ca.cert, timeout = 10})
    t.eq(conn, nil, case[1])
    t.match(err, "^" .. case[2] .. "$")
    tls.finish(proc)
  end
end)

t.test("an address is checked against the certificate's IP entries", function()
  local port, proc = pyserver("wrong")
  local conn, err = ssl.connect("127.0.0.1", port, {cafile = C.ca.cert, timeout = 10})
  t.eq(conn, nil)
  t.eq(err, "certificate verify failed: host name mismatch (certificate is for a.test, " ..
            "connected to 127.0.0.1)")
  tls.finish(proc)
  port, proc = pyserver("server")
  conn = assert(ssl.connect("127.0.0.1", port, {cafile = C.ca.cert, timeout = 10}))
  conn:close()
  tls.finish(proc)
end)

t.test("servername names the host to check and is sent as SNI", function()
  local port, proc = pyserver("wrong")
  local conn = assert(ssl.connect("127.0.0.1", port,
    {cafile = C.ca.cert, servername = "a.test", timeout = 10}))
  conn:close()
  tls.finish(proc)
end)

t.test("verify = 'none' is an explicit opt-out", function()
  local port, proc = pyserver("self")
  local conn = assert(ssl.connect("localhost", port, {verify = "none", timeout = 10}))
  t.eq(select(2, conn:getpeerverification())[1], "certificate verify failed: self-signed certificate")
  conn:close()
  tls.finish(proc)
end)

t.test("LuaSec's wrap of a socket connected to an address does LuaSec's checks", function()
  local port, proc = pyserver("self")
  local sock = assert(socket.connect("127.0.0.1", port))
  local conn = assert(ssl.wrap(sock, {mode = "client", protocol = "any"}))
  t.eq(sock:getfd(), -1, "wrap takes the descriptor")
  conn:settimeout(10)
  t.ok(conn:dohandshake())
  conn:close()
  tls.finish(proc)
end)

t.test("LuaSec's wrap with verify = 'peer' fails on a self-signed peer", function()
  local port, proc = pyserver("self")
  local sock = assert(socket.connect("127.0.0.1", port))
  local conn = assert(ssl.wrap(sock, {mode = "client", verify = "peer", cafile = C.ca.cert}))
  conn:settimeout(10)
  local ok, err = conn:dohandshake()
  t.eq(ok, nil)
  t.eq(err, "certificate verify failed: self-signed certificate")
  conn:close()
  tls.finish(proc)
end)

-- A LuaSec wrap of a socket to 127.0.0.1 that verifies against the test CA,
-- with `verifyext`; the handshake's outcome and getpeerverification's.
local function wrap_verifyext(server_cert, verifyext)
  local port, proc = pyserver(server_cert)
  local sock = assert(socket.connect("127.0.0.1", port))
  local conn = assert(ssl.wrap(sock, {mode = "client", verify = "peer", cafile = C.ca.cert,
                                      verifyext = verifyext}))
  conn:settimeout(10)
  local ok, err = conn:dohandshake()
  local verified, why
  if ok then verified, why = conn:getpeerverification() end
  conn:close()
  tls.finish(proc)
  return ok, err, verified, why
end

t.test("verifyext lsec_continue: a failed check lets the handshake go on; getpeerverification tells it", function()
  local ok, err, verified, why = wrap_verifyext("self", "lsec_continue")
  t.eq(ok, true, err)
  t.eq(verified, false)
  t.match(why[1], "self%-signed certificate")
  ok, err = wrap_verifyext("self", nil)
  t.eq(ok, nil)
  t.eq(err, "certificate verify failed: self-signed certificate")
end)

t.test("verifyext lsec_ignore_purpose: a certificate made for clients passes as a server's", function()
  local ok, err = wrap_verifyext("client", nil)
  t.eq(ok, nil)
  t.match(err, "^certificate verify failed: unsuitable certificate purpose")
  local verified
  ok, err, verified = wrap_verifyext("client", {"lsec_ignore_purpose"})
  t.eq(ok, true, err)
  t.eq(verified, true)
end)

t.test("verifyext crl_check: a CA without a CRL fails the check", function()
  local ok, err = wrap_verifyext("server", "crl_check")
  t.eq(ok, nil)
  t.match(err, "^certificate verify failed: unable to get certificate CRL")
  ok, err = wrap_verifyext("server", "crl_check_chain")
  t.eq(ok, nil)
  t.match(err, "CRL")
  t.eq((wrap_verifyext("server", nil)), true, "the same peer passes without it")
end)

t.test("conn:sni(name) sends the name and checks it", function()
  local port, proc = pyserver("server")
  local sock = assert(socket.connect("127.0.0.1", port))
  local conn = assert(ssl.wrap(sock, {mode = "client", cafile = C.ca.cert}))
  conn:sni("b.test")
  conn:settimeout(10)
  local ok, err = conn:dohandshake()
  t.eq(ok, nil)
  t.eq(err, "certificate verify failed: host name mismatch (certificate is for localhost, " ..
            "127.0.0.1, connected to b.test)")
  conn:close()
  tls.finish(proc)
end)

t.test("starttls on a socket connected by name verifies that name", function()
  local port, proc = pyserver("server")
  local sock = assert(socket.connect("localhost", port))
  sock:settimeout(10)
  local conn = assert(sock:starttls{cafile = C.ca.cert})
  conn:send("via starttls\n")
  t.eq(conn:receive(), "VIA STARTTLS")
  conn:close()
  tls.finish(proc)
  port, proc = pyserver("wrong")
  sock = assert(socket.connect("localhost", port))
  local c2, err = sock:starttls{cafile = C.ca.cert}
  t.eq(c2, nil)
  t.match(err, "host name mismatch")
  tls.finish(proc)
end)

-- The name a socket was connected by goes with it to another thread: a
-- starttls there checks it as it would have here (it once went unchecked).
t.test("starttls in a thread the socket moved to verifies the name it was connected by", function()
  local thread = require "thread"
  for _, case in ipairs({{"server", "VIA A THREAD"}, {"wrong", "host name mismatch"}}) do
    local port, proc = pyserver(case[1])
    local sock = assert(socket.connect("localhost", port))
    local th = thread.spawn(function(s, cafile)
      s:settimeout(10)
      local conn, err = s:starttls{cafile = cafile}
      if not conn then return err end
      conn:send("via a thread\n")
      local line = conn:receive()
      conn:close()
      return line
    end, sock, C.ca.cert)
    local ok, got = th:join()
    t.ok(ok, got)
    t.match(got, case[2], case[1])
    tls.finish(proc)
  end
end)

t.test("receive patterns and partial results follow luasocket", function()
  local port, proc = pyserver("server")
  local conn = assert(ssl.connect("localhost", port, {cafile = C.ca.cert, timeout = 10}))
  conn:send("one\r\ntwo\nthree\n")
  t.eq(conn:receive(), "ONE")
  t.eq(conn:receive(3), "TWO")
  t.eq(conn:receive("*l"), "")
  t.eq(conn:receive(2, "ab"), "ab", "a count includes the prefix")
  t.eq(conn:receive(7, "pre"), "preTHRE")
  t.eq(conn:receive("*l", ">"), ">E")
  t.eq(conn:send("abcdef\n", 2, 4), 4)
  conn:send("\n")
  t.eq(conn:receive(), "BCD")
  conn:send("tail")
  conn:close()
  tls.finish(proc)
end)

t.test("max-line bounds a line, as on sockets; wrap takes the socket's", function()
  local port, proc = pyserver("server")
  local sock = assert(socket.connect("localhost", port))
  sock:setoption("max-line", 8)
  local conn = assert(ssl.wrap(sock, {mode = "client", cafile = C.ca.cert}))
  conn:settimeout(10)
  assert(conn:dohandshake())
  t.eq(conn:getoption("max-line"), 8)
  conn:send("short\n0123456789abc\nnext\n")
  t.eq(conn:receive(), "SHORT")
  local line, err, partial = conn:receive()
  t.eq(line, nil)
  t.eq(err, "line too long")
  t.eq(partial, "01234567")
  t.eq(conn:receive(), "89ABC", "the rest of the line stays readable")
  conn:setoption("max-line", math.huge)
  t.eq(conn:receive(), "NEXT")
  t.raises("only max-line", conn.setoption, conn, "tcp-nodelay", true)
  conn:close()
  tls.finish(proc)
end)

t.test("receive('*a') returns what came before the peer closed", function()
  local port, proc = pyserver("server", {mode = "source", size = 100000})
  local conn = assert(ssl.connect("localhost", port, {cafile = C.ca.cert, timeout = 10}))
  local data = assert(conn:receive("*a"))
  t.eq(#data, 100000)
  local d, err, partial = conn:receive(10)
  t.eq(d, nil)
  t.eq(err, "closed")
  t.eq(partial, "")
  conn:close()
  tls.finish(proc)
end)

t.test("a handshake nobody answers times out with 'timeout'; settimeout(0) says 'wantread'", function()
  local server = assert(socket.bind("127.0.0.1", 0)) -- listens, never answers
  local _, port = server:getsockname()
  local sock = assert(socket.connect("127.0.0.1", port))
  local conn = assert(ssl.wrap(sock, {mode = "client", verify = "none"}))
  conn:settimeout(0.2)
  local ok, err = conn:dohandshake()
  t.eq(ok, nil)
  t.eq(err, "timeout")
  conn:settimeout(0)
  ok, err = conn:dohandshake()
  t.eq(ok, nil)
  t.eq(err, "wantread")
  t.eq(conn:want(), "read")
  conn:close()
  server:close()
end)

t.test("a peer that closes before the handshake: 'closed'; a closed connection says 'closed'", function()
  local server = assert(socket.bind("127.0.0.1", 0))
  local _, port = server:getsockname()
  local sock = assert(socket.connect("127.0.0.1", port))
  server:accept():close()
  local conn = assert(ssl.wrap(sock, {mode = "client", verify = "none"}))
  conn:settimeout(10)
  local ok, err = conn:dohandshake()
  t.eq(ok, nil)
  t.eq(err, "closed")
  conn:close()
  t.eq(select(2, conn:receive()), "closed")
  t.eq(select(2, conn:send("x")), "closed")
  t.eq(select(2, conn:dohandshake()), "closed")
  server:close()
end)

t.test("Ctrl-C interrupts a handshake that waits", function()
  local server = assert(socket.bind("127.0.0.1", 0))
  local _, port = server:getsockname()
  local script, dir = t.script(string.format([[
    local ssl, socket = require "ssl", require "socket"
    local conn = assert(ssl.wrap(assert(socket.connect("127.0.0.1", %d)),
      {mode = "client", verify = "none"}))
    print("ready")
    io.stdout:flush()
    conn:dohandshake()
    print("not reached")
  ]], port))
  local out, err, code = t.interrupt(script)
  t.eq(out, "ready\n")
  t.match(err, "interrupted")
  t.eq(code, 130)
  t.rmtree(dir)
  server:close()
end)

t.test("a peer that speaks plain text fails the handshake with a message", function()
  local port, proc = tls.python_server{mode = "plain"}
  local conn, err = ssl.connect("localhost", port, {cafile = C.ca.cert, timeout = 10})
  t.eq(conn, nil)
  t.match(err, "^[%l ]+$")
  tls.finish(proc)
end)

t.test("a peer that vanishes mid-record: receive fails, nothing hangs", function()
  local port, proc = pyserver("server", {mode = "half"})
  local conn = assert(ssl.connect("localhost", port, {cafile = C.ca.cert, timeout = 10}))
  local data, err, partial = conn:receive(200000)
  t.eq(data, nil)
  t.eq(err, "closed")
  t.ok(#partial <= 100000)
  conn:close()
  tls.finish(proc)
end)

t.test("openssl s_server: a client against OpenSSL's own server", function()
  local port, proc = tls.s_server(string.format("-cert %s -key %s -rev -naccept 1",
    t.shellquote(C.server.cert), t.shellquote(C.server.key)))
  local conn = assert(ssl.connect("localhost", port, {cafile = C.ca.cert, timeout = 10}))
  conn:send("stressed\n")
  t.eq(conn:receive(), "desserts")
  conn:close()
  tls.finish(proc)
end)

-- ssl.config (LuaSec's table of what the build supports) claims only what
-- works: each protocol and each curve it lists is the one a handshake with
-- openssl s_server, forced to it, agrees on.
t.test("ssl.config: each protocol and curve it lists works against openssl s_server forced to it", function()
  t.eq(require("ssl.config"), ssl.config, "require \"ssl.config\"")
  local versions = {tlsv1_2 = {"-tls1_2", "TLSv1.2"}, tlsv1_3 = {"-tls1_3", "TLSv1.3"}}
  local function talk(server_args, params)
    local port, proc = tls.s_server(string.format("-cert %s -key %s -rev -naccept 1 %s",
      t.shellquote(C.server.cert), t.shellquote(C.server.key), server_args))
    params.cafile, params.timeout = C.ca.cert, 10
    local conn, err = ssl.connect("localhost", port, params)
    local version
    if conn then
      version = conn:info("protocol")
      conn:send("stressed\n")
      t.eq(conn:receive(), "desserts")
      conn:close()
    end
    tls.finish(proc)
    return version, err
  end
  for name in pairs(ssl.config.protocols) do
    local v = assert(versions[name], "a protocol this test knows: " .. name)
    t.eq(talk(v[1], {protocol = name}), v[2], name)
  end
  for curve in pairs(ssl.config.curves) do
    t.eq(talk("-groups " .. curve, {curve = curve}), "TLSv1.3", curve)
  end
  t.ok(ssl.config.capabilities.alpn and ssl.config.algorithms.ec)
end)

t.test("bad parameters are clear errors", function()
  t.raises("'mode' must be \"client\" or \"server\"", ssl.newcontext, {})
  t.raises("'mode' must be", ssl.newcontext, {mode = "both"})
  t.raises("invalid verify option 'bogus'", ssl.newcontext, {mode = "client", verify = "bogus"})
  t.raises("invalid verifyext option 'bogus' (lsec_continue, lsec_ignore_purpose, crl_check, crl_check_chain)",
    ssl.newcontext, {mode = "client", verifyext = {"lsec_continue", "bogus"}})
  local ctx, err = ssl.newcontext{mode = "server", certificate = "/nonexistent.pem"}
  t.eq(ctx, nil)
  t.match(err, "^cannot load certificate /nonexistent%.pem")
  ctx, err = ssl.newcontext{mode = "server", certificate = C.server.cert, key = C.wrong.key}
  t.eq(ctx, nil)
  t.match(err, "key values mismatch$")
  t.ok(ssl.newcontext{mode = "server", certificate = C.server.cert, key = C.server.enckey,
                      password = "secret"})
  t.eq(ssl.newcontext{mode = "server", certificate = C.server.cert, key = C.server.enckey,
                      password = "wrong"}, nil)
end)

t.test("password may be a function returning it, as LuaSec allows", function()
  local calls = 0
  t.ok(ssl.newcontext{mode = "server", certificate = C.server.cert, key = C.server.enckey,
                      password = function() calls = calls + 1 return "secret" end})
  t.eq(calls, 1)
  local ctx, err = ssl.newcontext{mode = "server", certificate = C.server.cert,
    key = C.server.enckey, password = function() return "wrong" end}
  t.eq(ctx, nil)
  t.match(err, "^cannot load key")
  t.raises("the function returned nil, not a string", ssl.newcontext, {mode = "server",
    certificate = C.server.cert, key = C.server.enckey, password = function() end})
end)

t.rmtree(C.dir)
t.done()
