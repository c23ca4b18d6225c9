-- peerhello.lua: the model solution of the tutorial's chapter 10 exercise.
-- The first steps of a p2p.lua peer: to a {"type":"hello",...} frame it
-- answers its own hello and its index (the files it offers: none), one
-- JSON object per line as p2p.lua's wire protocol says; a frame that is
-- not JSON, or not first a hello, ends the connection.
--   netlua docs/solutions/peerhello.lua [port]     (default 7000)
local socket = require "socket"
local json = require "json"
local task = require "task"

local function frame(t) return json.encode(t) .. "\n" end

local function serve(client, port)
  client:settimeout(30)
  local line = client:receive("*l")
  local ok, hello = pcall(json.decode, line or "")
  if ok and type(hello) == "table" and hello.type == "hello" then
    client:send(frame{type = "hello", name = "tiny", port = port})
    client:send(frame{type = "index", files = json.empty_array})
    client:receive("*l") -- then listens until the peer goes
  end
  client:close()
end

local port = tonumber(arg[1]) or 7000
local server = assert(socket.bind("127.0.0.1", port))
io.stdout:setvbuf("line")
print("listening on 127.0.0.1:" .. port)
while true do
  local client = server:accept()
  if client then task.spawn(serve, client, port) end
end
