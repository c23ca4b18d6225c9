-- echoserver.lua: an echo server with one task per client (see "task" in
-- README.md): every client is served by a coroutine on one OS thread, so
-- thousands of connections cost no threads. Each byte a client sends comes
-- back to it; the connection ends when the client closes it.
--   netlua scripts/echoserver.lua [host [port]] [--count N] [--quiet]
-- host defaults to 127.0.0.1, port to 7000 (0: any free port); --count N
-- stops accepting after N clients and exits once they are gone; --quiet
-- leaves out the line per client (for benchmarks).
local socket = require "socket"
local task = require "task"

local function parse_args(args, default_port)
  local opts, pos, i = {host = "127.0.0.1", port = default_port}, {}, 1
  while i <= #args do
    if args[i] == "--count" then
      opts.count = tonumber(args[i + 1]) or error("--count needs a number", 0)
      i = i + 1
    elseif args[i] == "--quiet" then
      opts.quiet = true
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

local function fail(fmt, ...)
  io.stderr:write("netlua: ", string.format(fmt, ...), "\n")
  os.exit(1)
end

-- One client, in its own task: reads whatever arrived, sends it back.
local function serve(client, quiet)
  local peer
  if not quiet then
    local ip, port = client:getpeername()
    peer = where(ip or "?", port or "?")
    print("connection from " .. peer)
  end
  while true do
    local data = client:recv(8192)
    if not data or not client:send(data) then break end
  end
  client:close()
  if peer then print("closed " .. peer) end
end

local opts = parse_args({...}, 7000)
io.stdout:setvbuf("line")
local server, err = socket.bind(opts.host, opts.port, 4096)
if not server then fail("cannot listen on %s: %s", where(opts.host, opts.port), err) end
local ip, port = server:getsockname()
print(string.format("listening on %s", where(ip, port)))
local accepted = 0
while not opts.count or accepted < opts.count do
  local client, aerr = server:accept()
  if client then
    accepted = accepted + 1
    task.spawn(serve, client, opts.quiet)
  elseif not opts.quiet then
    print("accept failed: " .. aerr)
  end
end
server:close()
-- netlua runs the remaining tasks to their end before it exits
