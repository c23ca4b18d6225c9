-- tasktimeserver.lua: the tutorial's date-time server (timeserver.lua) with
-- one task per client: a client that is slow to read no longer holds up the
-- others, and no thread is needed. Same protocol and log lines.
--   netlua scripts/tasktimeserver.lua [host [port]] [--count N]
-- host defaults to 127.0.0.1, port to 6789 (0: any free port); --count N
-- stops after N clients (and exits once they are served).
local socket = require "socket"
local task = require "task"
local time = require "time"

local function parse_args(args, default_port)
  local opts, pos, i = {host = "127.0.0.1", port = default_port}, {}, 1
  while i <= #args do
    if args[i] == "--count" then
      opts.count = tonumber(args[i + 1]) or error("--count needs a number", 0)
      i = i + 1
    else
      pos[#pos + 1] = args[i]
    end
    i = i + 1
  end
  opts.host = pos[1] or opts.host
  opts.port = tonumber(pos[2] or opts.port) or error("port must be a number", 0)
  return opts
end

local function where(host, port)
  if host:find(":", 1, true) then return string.format("[%s]:%s", host, port) end
  return string.format("%s:%s", host, port)
end

local function serve(client)
  client:settimeout(5) -- a client that never reads gives up its task
  local ip, port = client:getpeername()
  print(string.format("connection from %s", where(ip or "?", port or "?")))
  local ok, err = client:send(time.datetime())
  if not ok then print(string.format("send to %s failed: %s", where(ip or "?", port or "?"), err)) end
  client:close()
end

local opts = parse_args({...}, 6789)
io.stdout:setvbuf("line")
local server, err = socket.bind(opts.host, opts.port, 512)
if not server then
  io.stderr:write(string.format("netlua: cannot listen on %s: %s\n", where(opts.host, opts.port), err))
  os.exit(1)
end
local ip, port = server:getsockname()
print(string.format("listening on %s", where(ip, port)))
local served = 0
while not opts.count or served < opts.count do
  local client, aerr = server:accept()
  if client then
    served = served + 1
    task.spawn(serve, client)
  else
    print("accept failed: " .. aerr)
  end
end
server:close()
