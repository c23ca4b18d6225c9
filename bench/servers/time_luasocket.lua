-- time_luasocket.lua: the tutorial's time server on lua5.4 + luasocket
-- (Debian's lua-socket): blocking accept, send the time, close. Listens on
-- 127.0.0.1:PORT (arg[1], 0 = the OS picks) and prints the port.
-- Benchmark peer, bench/ only.
local socket = require "socket"

local function now()
  local t = socket.gettime()
  local s = math.floor(t)
  return os.date("%Y-%m-%d %H:%M:%S", s) .. string.format(".%06d", math.floor((t - s) * 1e6))
end

local server = assert(socket.bind("127.0.0.1", tonumber(arg[1]) or 0, 512))
local _, port = server:getsockname()
print("listening on 127.0.0.1:" .. port)
io.stdout:flush()
while true do
  local client = server:accept()
  if client then
    client:send(now())
    client:close()
  end
end
