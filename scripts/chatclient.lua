-- chatclient.lua: a client for scripts/chatserver.lua (or any line-based
-- server): lines typed on standard input go to the server, lines from the
-- server are printed. At end of input it sends /quit and prints what the
-- server still sends until it closes the connection.
--   netlua scripts/chatclient.lua [host [port]]
-- host defaults to 127.0.0.1, port to 6790.
--
-- Reading standard input blocks, so a daemon thread does it and passes the
-- lines through a channel; the main thread owns the socket.
local cli = require "cli"
local thread = require "thread"

local opts = cli.parse({...}, {
  usage = "netlua scripts/chatclient.lua [host [port]]",
  help = "A client for chatserver.lua: sends the lines typed on standard input and\n" ..
    "prints what the server broadcasts; at the end of input it sends /quit.\n\n" ..
    "  host   the server's name or address (default 127.0.0.1)\n" ..
    "  port   its port (default 6790)\n",
  args = {{"host", "host", "127.0.0.1"}, {"port", "peer_port", 6790}},
})
io.stdout:setvbuf("line")
local sock = cli.connect(opts.host, opts.port)

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
