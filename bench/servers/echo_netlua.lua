-- echo_netlua.lua: netlua's echo server for the benchmark: the main thread
-- accepts, each connection moves to its own OS thread (thread.spawn), which
-- echoes with recv(n) (Python's meaning: whatever is there, up to n).
-- Listens on 127.0.0.1:PORT (arg[1], 0 = the OS picks), prints the port.
local socket = require "socket"
local thread = require "thread"

local function handle(client)
  client:setoption("tcp-nodelay", true)
  while true do
    local data = client:recv(65536)
    if not data or #data == 0 then break end
    local ok = client:send(data)
    if not ok then break end
  end
  client:close()
end

local server = assert(socket.bind("127.0.0.1", tonumber(arg[1]) or 0, 512))
local _, port = server:getsockname()
print("listening on 127.0.0.1:" .. port)
io.stdout:flush()
while true do
  local client = server:accept()
  if client then thread.spawn(handle, client) end
end
