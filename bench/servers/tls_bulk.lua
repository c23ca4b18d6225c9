-- tls_bulk.lua: netlua's side of the benchmark's TLS bulk transfer (bench/
-- only), the counterpart of `openssl s_server -WWW`: on `require "ssl"`,
-- one connection at a time, each a TLS handshake, an HTTP request read up to
-- its blank line, then "HTTP/1.0 200 ok", Content-Type and Content-Length,
-- and FILE's bytes in 64 KiB sends; then the connection closes (close_notify).
-- Whatever path is asked for, FILE is sent.
--   netlua bench/servers/tls_bulk.lua PORT CERT KEY FILE
-- Listens on 127.0.0.1:PORT (0 = the OS picks) and prints the port.
local socket = require "socket"
local ssl = require "ssl"

local port, cert, key, path = tonumber(arg[1]), arg[2], arg[3], arg[4]
if not (port and cert and key and path) then
  io.stderr:write("usage: netlua bench/servers/tls_bulk.lua PORT CERT KEY FILE\n")
  os.exit(2)
end
local CHUNK = 64 * 1024

local ctx = assert(ssl.newcontext{mode = "server", certificate = cert, key = key})
local size = assert(io.open(path, "rb")):seek("end")
local server = assert(socket.bind("127.0.0.1", port, 64))
print("listening on 127.0.0.1:" .. select(2, server:getsockname()))
io.stdout:flush()

-- One client: handshake, request, the file. Returns nil, why on a failure.
local function serve(client)
  local conn <close>, err = ssl.wrap(client, ctx)
  if not conn then return nil, err end
  local ok
  ok, err = conn:dohandshake()
  if not ok then return nil, "handshake: " .. err end
  repeat
    local line
    line, err = conn:receive("*l")
    if not line then return nil, "request: " .. err end
  until line == ""
  ok, err = conn:send(("HTTP/1.0 200 ok\r\nContent-Type: application/octet-stream\r\n" ..
    "Content-Length: %d\r\n\r\n"):format(size))
  if not ok then return nil, "send: " .. err end
  local f <close> = assert(io.open(path, "rb"))
  for chunk in f:lines(CHUNK) do
    ok, err = conn:send(chunk)
    if not ok then return nil, "send: " .. err end
  end
  return true
end

while true do
  local client = server:accept()
  if client then
    local ok, err = serve(client)
    if not ok then io.stderr:write("tls_bulk: ", err, "\n") end
    client:close()
  end
end
