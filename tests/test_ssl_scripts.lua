-- test_ssl_scripts.lua: the TLS scripts learners run: scripts/makecert.sh
-- (a local CA and a server certificate), the welcome server over TLS
-- (scripts/tlsserver.lua) and its verifying client (scripts/tlsclient.lua).
local t = require "testlib"
local tls = require "tlslib"

local missing = tls.missing()
if missing then
  t.skip("ssl scripts", missing)
  t.done()
end

local here = arg[0]:match("^(.*)/[^/]*$") or "."
local SCRIPTS = here .. "/../scripts/"
local q = t.shellquote
local dir = t.tmpdir()

t.test("makecert.sh makes a CA and a server certificate for localhost", function()
  local out, err, code = t.sh("sh " .. q(SCRIPTS .. "makecert.sh") .. " " .. q(dir .. "/certs"))
  t.eq(code, 0, err)
  t.match(out, "ca%.pem")
  local text = t.sh("openssl verify -CAfile " .. q(dir .. "/certs/ca.pem") .. " " ..
    q(dir .. "/certs/server.pem"))
  t.match(text, ": OK")
  text = t.sh("openssl x509 -noout -ext subjectAltName -in " .. q(dir .. "/certs/server.pem"))
  t.match(text, "DNS:localhost, IP Address:127%.0%.0%.1")
end)

t.test("the welcome server over TLS and its client, which verifies it", function()
  local pid, port, sdir = t.start_server(SCRIPTS .. "tlsserver.lua", string.format(
    "--cert %s --key %s --count 2", q(dir .. "/certs/server.pem"), q(dir .. "/certs/server.key")), 30)
  local client = q(SCRIPTS .. "tlsclient.lua") .. " localhost " .. port
  local out, err, code = t.netlua(client .. " --cafile " .. q(dir .. "/certs/ca.pem"))
  t.eq(code, 0, err)
  t.eq(out, "欢迎访问菜鸟教程！\r\n")
  t.match(err, "connected to localhost:%d+ %(TLSv1%.3, [%w_]+, certificate for localhost%)")
  out, err, code = t.netlua(client)
  t.eq(code, 1)
  t.match(err, "certificate verify failed: unable to get local issuer certificate")
  local sout = t.finish_server(pid, sdir)
  t.match(sout, "connection from 127%.0%.0%.1")
  t.match(sout, "handshake with 127%.0%.0%.1:%d+ failed: tlsv1 alert unknown ca")
end)

t.test("the server without a certificate says how to make one", function()
  local _, err, code = t.netlua(q(SCRIPTS .. "tlsserver.lua") .. " 127.0.0.1 0 --cert /nonexistent.pem")
  t.eq(code, 1)
  t.match(err, "cannot load certificate /nonexistent%.pem.*sh scripts/makecert%.sh certs")
end)

t.rmtree(dir)
t.done()
