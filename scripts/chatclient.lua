-- chatclient.lua: a client for scripts/chatserver.lua (or any line-based
-- server): lines typed on standard input go to the server, lines from the
-- server are printed. At end of input it sends /quit and prints what the
-- server still sends until it closes the connection.
--   netlua scripts/chatclient.lua [host [port]]
-- host defaults to 127.0.0.1, port to 6790.
--
-- Reading standard input blocks, so a daemon thread does it and passes the
-- lines through a channel; the main thread owns the socket.
local socket = require "socket"
local thread = require "thread"

local host = arg[1] or "127.0.0.1"
local port = tonumber(arg[2] or 6790) or error("port must be a number", 0)
io.stdout:setvbuf("line")

local sock, err = socket.connect(host, port)
if not sock then
  io.stderr:write(string.format("netlua: cannot connect to %s port %s: %s\n", host, port, err))
  os.exit(1)
end

local typed = thread.channel()
thread.spawn{function()
  for line in io.lines() do typed:send(line) end
  typed:close()
end, daemon = true, name = "stdin"}

sock:settimeout(0.05)
local pending, input_open = "", true
while true do
  local line, rerr, partial = sock:receive("*l", pending)
  if line then
    pending = ""
    print(line)
  elseif rerr == "timeout" then
    pending = partial or ""
  else
    break -- the server closed the connection
  end
  while input_open do
    local text, cerr = typed:recv(0)
    if text then
      if not sock:send(text .. "\n") then input_open = false end
    else
      if cerr == "closed" then
        sock:send("/quit\n")
        input_open = false
      end
      break
    end
  end
end
sock:close()
