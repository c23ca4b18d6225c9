-- client.lua: the tutorial's client, on luasocket's API: connects, reads up
-- to 1024 bytes (Python's recv) and prints them. Works against both
-- scripts/timeserver.lua and scripts/server.lua.
--   netlua scripts/client.lua [host [port]]     (defaults: 127.0.0.1 9999)
local socket = require "socket"
local cli = require "cli"

local host, port = ...
host = host or "127.0.0.1"
port = tonumber(port or 9999)

if not port then
  io.stderr:write("netlua: port must be a number\n")
  os.exit(2)
end
local sock, err = socket.connect(host, port)
if not sock then
  io.stderr:write(string.format("netlua: cannot connect to %s: %s\n", cli.where(host, port), err))
  os.exit(1)
end
io.stderr:write(string.format("connected to %s\n", cli.where(host, port)))
sock:settimeout(10)
local msg, rerr = sock:recv(1024)
sock:close()
if not msg then
  io.stderr:write(string.format("netlua: no data from %s: %s\n", cli.where(host, port), rerr))
  os.exit(1)
end
print(msg)
