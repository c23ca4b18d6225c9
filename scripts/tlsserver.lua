-- tlsserver.lua: the tutorial's welcome server (scripts/server.lua) over
-- TLS: each client shakes hands, gets "欢迎访问菜鸟教程！" and CRLF, then the
-- connection closes. Make a certificate first with scripts/makecert.sh.
--   sh scripts/makecert.sh certs
--   netlua scripts/tlsserver.lua [host [port]] [--cert FILE] [--key FILE] [--count N]
-- Its client: netlua scripts/tlsclient.lua --cafile certs/ca.pem
local cli = require "cli"
local ssl = require "ssl"
local WELCOME = "欢迎访问菜鸟教程！\r\n"

local opts = cli.parse({...}, cli.server_spec{name = "tlsserver.lua", port = 9443,
  about = "The tutorial's welcome server over TLS: each client gets \"欢迎访问菜鸟教程！\"\n" ..
    "and CRLF (UTF-8), then the connection closes.",
  usage = " [--cert FILE] [--key FILE]",
  options = {cert = {"text", "certs/server.pem"}, key = {"text", "certs/server.key"}},
  lines = "  --cert FILE the server's certificate (default certs/server.pem)\n" ..
          "  --key FILE  its private key (default certs/server.key)\n" ..
          "              (make both with: sh scripts/makecert.sh certs)\n"})
io.stdout:setvbuf("line")
local ctx, err = ssl.newcontext{mode = "server", certificate = opts.cert, key = opts.key}
if not ctx then cli.fail("%s (make one with: sh scripts/makecert.sh certs)", err) end
local server = cli.listen(opts, 512)
cli.serve(server, opts.count, function(client)
  client:settimeout(5)
  local ip, port = client:getpeername()
  local conn = assert(ssl.wrap(client, ctx))
  conn:settimeout(5)
  local ok, why = conn:dohandshake()
  if ok then
    cli.reply(conn, WELCOME, cli.where(ip, port))
  else
    print(string.format("handshake with %s failed: %s", cli.where(ip, port), why))
    conn:close()
  end
end)
