-- greet.lua: the model solution of the tutorial's chapter 4 exercise.
-- The welcome server, personal: reads the client's name (one line) and
-- answers "欢迎, NAME!" and CRLF, then closes.
--   netlua docs/solutions/greet.lua [port]     (default 7000)
local socket = require "socket"
local port = tonumber(arg[1]) or 7000
local server = assert(socket.bind("127.0.0.1", port))
io.stdout:setvbuf("line")
print("listening on 127.0.0.1:" .. port)
while true do
  local client = server:accept()
  if client then
    client:settimeout(10)
    local name = client:receive("*l")
    if name then client:send("欢迎, " .. name .. "!\r\n") end
    client:close()
  end
end
