-- tlsclient.lua: the tutorial's client (scripts/client.lua) over TLS: it
-- connects, verifies the server's certificate and host name (against
-- --cafile, else the system's CA store), reads up to 1024 bytes and prints
-- them with what TLS agreed on.
--   netlua scripts/tlsclient.lua [host [port]] [--cafile FILE]
local cli = require "cli"
local ssl = require "ssl"

local opts = cli.parse({...}, {
  usage = "netlua scripts/tlsclient.lua [host [port]] [--cafile FILE]",
  help = "The tutorial's client over TLS: connects, verifies the certificate, reads up\n" ..
    "to 1024 bytes and prints them.\n\n" ..
    "  host           the server's name (default localhost: the name is checked)\n" ..
    "  port           its port (default 9443)\n" ..
    "  --cafile FILE  trust this CA (certs/ca.pem from scripts/makecert.sh)\n" ..
    "                 instead of the system's CA store\n",
  args = {{"host", "host", "localhost"}, {"port", "peer_port", 9443}},
  options = {cafile = {"text", false}},
})
local peer = cli.where(opts.host, opts.port)
local conn, err = ssl.connect(opts.host, opts.port, {cafile = opts.cafile or nil, timeout = 10})
if not conn then cli.fail("cannot connect to %s: %s", peer, err) end
local info = conn:info()
io.stderr:write(string.format("connected to %s (%s, %s, certificate for %s)\n", peer,
  info.protocol, info.cipher, conn:getpeercertificate():subject()[1].value))
-- Python's recv(1024): what came, up to 1024 bytes, until the server closed
local msg, partial
msg, err, partial = conn:receive(1024)
if not msg and err == "closed" and partial ~= "" then msg = partial end
conn:close()
if not msg then cli.fail("no data from %s: %s", peer, err) end
io.stdout:write(msg, msg:sub(-1) == "\n" and "" or "\n")
