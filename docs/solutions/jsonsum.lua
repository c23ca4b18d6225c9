-- jsonsum.lua: the model solution of the tutorial's chapter 2 exercise.
-- Reads JSON objects, one per line; answers {"sum": a + b} for each, or
-- {"error": "..."} for a line that is not an object with numbers a and b.
-- One task per client, so many clients can be served at once.
--   netlua docs/solutions/jsonsum.lua [port]     (default 7000)
local socket = require "socket"
local json = require "json"
local task = require "task"

local function answer(line)
  local ok, v = pcall(json.decode, line)
  if not ok or type(v) ~= "table" then return {error = "not a JSON object"} end
  if type(v.a) ~= "number" or type(v.b) ~= "number" then
    return {error = "a and b must be numbers"}
  end
  return {sum = v.a + v.b}
end

local function serve(client)
  client:settimeout(30)
  while true do
    local line = client:receive("*l")
    if not line then break end
    client:send(json.encode(answer(line)) .. "\n")
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
