-- whoami.lua: the model solution of the tutorial's chapter 1 exercise.
-- Tells each client the address and port it came from, then closes.
--   netlua docs/solutions/whoami.lua [port]     (default 7000)
local socket = require "socket"
local port = tonumber(arg[1]) or 7000
local server = assert(socket.bind("127.0.0.1", port))
io.stdout:setvbuf("line")
print("listening on 127.0.0.1:" .. port)
while true do
  local client = server:accept()
  if client then
    local ip, peer_port = client:getpeername()
    client:send(string.format("you are %s:%s\n", ip, peer_port))
    client:close()
  end
end
