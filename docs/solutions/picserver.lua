-- picserver.lua: the model solution of the tutorial's chapter 3 exercise.
-- A tiny picture server: "GET n" (n from 1 to 50) answers "OK size" and
-- then exactly size bytes (picture n is n * 100 bytes, each of value n);
-- anything else answers "ERR why". "BYE" closes the connection.
--   netlua docs/solutions/picserver.lua [port]     (default 7000)
local socket = require "socket"
local task = require "task"

local function reply(client, line)
  local n = tonumber(line:match("^GET (%d+)$"))
  if n and n >= 1 and n <= 50 then
    local picture = string.rep(string.char(n), n * 100)
    return client:send("OK " .. #picture .. "\n" .. picture)
  end
  return client:send("ERR no such picture: " .. line .. "\n")
end

local function serve(client)
  client:settimeout(30)
  while true do
    local line = client:receive("*l")
    if not line or line == "BYE" then break end
    reply(client, line)
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
