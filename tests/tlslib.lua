-- tlslib.lua: what the TLS tests share: certificates made at test time with
-- `openssl` (a test CA; server certificates for localhost/127.0.0.1, an
-- expired one, one for another name, a second name for SNI; a self-signed
-- one; a client certificate) and real TLS peers in the background
-- (/usr/bin/python3's ssl module, openssl s_server/s_client).
local t = require "testlib"
local time = require "time"

local M = {}

M.PYTHON = "/usr/bin/python3"

-- Whether the tools the TLS tests need are there; else why not.
function M.missing()
  if not os.execute("command -v openssl >/dev/null 2>&1") then return "openssl is not installed" end
  if not os.execute("test -x " .. M.PYTHON) then return M.PYTHON .. " is not installed" end
  return nil
end

-- The test CA and certificates, made with scripts/makecert.sh (the script
-- learners use), plus a self-signed one and an encrypted key.
local MAKE_CERTS = [=[
set -e
m() { sh "$MAKECERT" "$@"; }
m ca .
m cert . server localhost DNS:localhost,IP:127.0.0.1 30
m cert . expired localhost DNS:localhost,IP:127.0.0.1 -1
m cert . wrong a.test DNS:a.test 30
m cert . btest b.test DNS:b.test 30
m cert . client "netlua client" DNS:client.test 30 clientAuth
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out self.key
openssl req -x509 -key self.key -out self.pem -days 30 -subj /CN=localhost \
  -addext subjectAltName=DNS:localhost,IP:127.0.0.1
openssl pkey -in server.key -aes256 -passout pass:secret -out server-enc.key
]=]

-- Makes the certificates in a new temporary directory. Returns a table:
-- dir, and for each name (ca, server, expired, wrong, btest, client, self)
-- name.cert and name.key paths; server.enckey (password "secret").
function M.certs()
  local dir = t.tmpdir()
  local tests = arg[0]:match("^(.*)/[^/]*$") or "."
  if tests:sub(1, 1) ~= "/" then tests = os.getenv("PWD") .. "/" .. tests end
  local makecert = tests .. "/../scripts/makecert.sh"
  local _, err, code = t.sh("cd " .. dir .. " && MAKECERT=" .. t.shellquote(makecert) ..
    " sh -c " .. t.shellquote(MAKE_CERTS) .. " 2>&1")
  assert(code == 0, "making certificates failed: " .. tostring(err))
  local c = {dir = dir}
  for _, n in ipairs{"ca", "server", "expired", "wrong", "btest", "client", "self"} do
    c[n] = {cert = dir .. "/" .. n .. ".pem", key = dir .. "/" .. n .. ".key"}
  end
  c.server.enckey = dir .. "/server-enc.key"
  return c
end

-- ---- peers in the background ------------------------------------------------

-- Starts a shell command line in the background (killed after `limit`
-- seconds whatever happens), its stdout and stderr in files; waits (at most
-- 20 s) until its output matches `pattern` and returns the capture, the
-- process and its output directory. Waits with time.sleep: in a task only
-- the task waits.
function M.spawn(cmdline, pattern, limit)
  local dir = t.tmpdir()
  local p = io.popen(string.format(
    "( %s ) > %s/out 2> %s/err < /dev/null & pid=$!; " ..
    "( sleep %d; kill -KILL $pid ) > /dev/null 2>&1 & echo $pid",
    cmdline, dir, dir, limit or 60))
  local proc = {pid = tonumber(p:read("l")), dir = dir}
  p:close()
  for _ = 1, 400 do
    local text = (t.readfile(dir .. "/out") or "") .. (t.readfile(dir .. "/err") or "")
    local found = text:match(pattern)
    if found then return found, proc end
    time.sleep(0.05)
  end
  error("peer did not start: " .. tostring(t.readfile(dir .. "/err")))
end

-- Waits (bounded) for a spawned process to end; returns its stdout, stderr.
function M.finish(proc)
  for _ = 1, 400 do
    if not os.execute("kill -0 " .. proc.pid .. " 2>/dev/null") then break end
    time.sleep(0.05)
  end
  os.execute("kill -KILL " .. proc.pid .. " 2>/dev/null")
  local out, err = t.readfile(proc.dir .. "/out"), t.readfile(proc.dir .. "/err")
  t.rmtree(proc.dir)
  return out or "", err or ""
end

-- A Python TLS server for one connection on 127.0.0.1. opts: cert, key,
-- ca (then client certificates are required), alpn (list), mode: "echo"
-- (lines back, upper-cased), "hash" (sha256 of the opts.size bytes it
-- receives, sent back as a line), "source" (opts.size bytes of a
-- pattern, then close), "half" (a partial record, then exit), "plain"
-- (no TLS: sends text and closes). Returns its port and the process.
local PYSERVER = [=[
import hashlib, socket, ssl, sys
cert, key, ca, alpn, mode, size = sys.argv[1:7]
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(1)
print("port", srv.getsockname()[1], flush=True)
raw, _ = srv.accept()
if mode == "plain":
    raw.sendall(b"HTTP/1.0 200 OK\r\n\r\nthis is not tls\n"); raw.close(); sys.exit()
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
if ca != "-":
    ctx.verify_mode = ssl.CERT_REQUIRED; ctx.load_verify_locations(ca)
if alpn != "-":
    ctx.set_alpn_protocols(alpn.split(","))
try:
    c = ctx.wrap_socket(raw, server_side=True)
except Exception as e:
    print("handshake failed:", e, flush=True); sys.exit()
print("handshake ok", c.selected_alpn_protocol(), flush=True)
if mode == "echo":
    f = c.makefile("rb")
    for line in f:
        c.sendall(line.upper())
elif mode == "hash":
    h = hashlib.sha256(); n = int(size)
    while n > 0:
        d = c.recv(min(n, 65536))
        if not d: break
        h.update(d); n -= len(d)
    c.sendall(h.hexdigest().encode() + b"\n")
elif mode == "source":
    n = int(size); block = bytes(range(256)) * 256
    while n > 0:
        part = block[:min(n, len(block))]; c.sendall(part); n -= len(part)
elif mode == "half":
    c.sendall(b"x" * 100000); raw.shutdown(socket.SHUT_RDWR); sys.exit()
try:
    c.unwrap()
except Exception:
    pass
c.close()
]=]

function M.python_server(opts)
  local args = table.concat({
    t.shellquote(opts.cert or "-"), t.shellquote(opts.key or "-"), t.shellquote(opts.ca or "-"),
    t.shellquote(opts.alpn and table.concat(opts.alpn, ",") or "-"),
    t.shellquote(opts.mode or "echo"), t.shellquote(tostring(opts.size or 0))}, " ")
  local port, proc = M.spawn(M.PYTHON .. " -c " .. t.shellquote(PYSERVER) .. " " .. args,
                             "port (%d+)")
  return tonumber(port), proc
end

-- openssl s_server on 127.0.0.1 (args: extra options, already quoted).
-- Returns its port and the process.
function M.s_server(args)
  local port, proc = M.spawn("openssl s_server -accept 127.0.0.1:0 " .. args,
                             "ACCEPT [^\n]-:(%d+)")
  return tonumber(port), proc
end

return M
