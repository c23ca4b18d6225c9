-- meeting.lua: the model solution of the tutorial's chapter 8 exercise.
-- Each client says "join"; nobody gets an answer until three clients have
-- joined; then each of the three gets "go 3". A server that serves one
-- client at a time can never pass: the first waits for the others forever.
--   netlua docs/solutions/meeting.lua [port]     (default 7000)
local socket = require "socket"
local task = require "task"
local thread = require "thread"

local GROUP = 3
local waiting = {} -- the channels of the clients that joined, not yet sent off

local function serve(client)
  client:settimeout(30)
  local line = client:receive("*l")
  if line == "join" then
    local go = thread.channel()
    waiting[#waiting + 1] = go
    if #waiting == GROUP then
      for _, ch in ipairs(waiting) do ch:send("go " .. GROUP) end
      waiting = {}
    end
    client:send(go:recv() .. "\n")
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
