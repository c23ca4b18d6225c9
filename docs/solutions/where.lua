-- where.lua: the model solution of the tutorial's chapter 6 exercise.
-- For each line "HOST PORT" answers the address as a URL writes it:
-- "[HOST]:PORT" when HOST is an IPv6 address (it holds a ':'), else
-- "HOST:PORT"; a line of another form answers "ERR".
--   netlua docs/solutions/where.lua [port]     (default 7000)
local socket = require "socket"
local task = require "task"

local function where(line)
  local host, port = line:match("^(%S+) (%d+)$")
  if not host then return "ERR" end
  if host:find(":", 1, true) then return "[" .. host .. "]:" .. port end
  return host .. ":" .. port
end

local function serve(client)
  client:settimeout(30)
  while true do
    local line = client:receive("*l")
    if not line then break end
    client:send(where(line) .. "\n")
  end
  client:close()
end

local port = tonumber(arg[1]) or 7000
local server = assert(socket.bind("127.0.0.1", port))
io.stdout:setvbuf("line")
print("listening on 127.0.0.1:" .. port)
while true do
  local client = server:accept()
  if client then task.spawn(serve, client) end
end
