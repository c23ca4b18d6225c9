-- udpupper.lua: the model solution of the tutorial's chapter 5 exercise.
-- A UDP server that sends every datagram back in capital letters.
--   netlua docs/solutions/udpupper.lua [port]     (default 7000)
local socket = require "socket"
local port = tonumber(arg[1]) or 7000
local udp = assert(socket.udp())
assert(udp:setsockname("127.0.0.1", port))
io.stdout:setvbuf("line")
print("listening on 127.0.0.1:" .. port .. " (udp)")
while true do
  local data, ip, from_port = udp:receivefrom(65535)
  if data then udp:sendto(data:upper(), ip, from_port) end
end
