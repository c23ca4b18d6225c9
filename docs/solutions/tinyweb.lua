-- tinyweb.lua: the model solution of the tutorial's chapter 9 exercise.
-- A web server written on a bare TCP socket: reads the request line and
-- the headers up to the blank line, answers
--   HTTP/1.0 200 OK, Content-Type: text/plain, Content-Length, and the body
--   "hello from PATH\n"
-- and closes. A browser can open it: http://127.0.0.1:7000/anything
--   netlua docs/solutions/tinyweb.lua [port]     (default 7000)
local socket = require "socket"
local task = require "task"

local function serve(client)
  client:settimeout(10)
  local request = client:receive("*l")
  repeat local header = client:receive("*l") until not header or header == ""
  local path = request and request:match("^%u+ (%S+) HTTP/%d%.%d$")
  if path then
    local body = "hello from " .. path .. "\n"
    client:send("HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n" ..
      "Content-Length: " .. #body .. "\r\n\r\n" .. body)
  else
    client:send("HTTP/1.0 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
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
