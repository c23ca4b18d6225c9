-- client.lua: the tutorial's client, on luasocket's API: connects, reads up
-- to 1024 bytes (Python's recv) and prints them. Works against both
-- scripts/timeserver.lua and scripts/server.lua.
--   netlua scripts/client.lua [host [port]]     (defaults: 127.0.0.1 9999)
local cli = require "cli"

local opts = cli.parse({...}, {
  usage = "netlua scripts/client.lua [host [port]]",
  help = "The tutorial's client: connects, reads up to 1024 bytes and prints them.\n\n" ..
    "  host   the server's name or address (default 127.0.0.1)\n" ..
    "  port   its port (default 9999; timeserver.lua listens on 6789)\n",
  args = {{"host", "host", "127.0.0.1"}, {"port", "peer_port", 9999}},
})
local peer = cli.where(opts.host, opts.port)
local sock = cli.connect(opts.host, opts.port)
io.stderr:write("connected to " .. peer .. "\n")
sock:settimeout(10)
local msg, err, why = sock:recv(1024)
sock:close()
if not msg then cli.fail("no data from %s: %s", peer, cli.reason(err, why)) end
-- What the server sent, with a line end only if it had none (the welcome
-- server ends its greeting with CRLF; the time server sends no line end).
io.stdout:write(msg, msg:sub(-1) == "\n" and "" or "\n")
