-- threadedserver.lua: the tutorial's date-time server with a pool of worker
-- threads. The main thread accepts; each connection's socket moves through a
-- channel to whichever worker is free, which sends the date-time and closes
-- it. Compare with scripts/timeserver.lua, which serves one client at a time.
--   netlua scripts/threadedserver.lua [host [port]] [--workers N] [--count N]
-- host defaults to 127.0.0.1, port to 6789 (0: any free port); --workers
-- defaults to the number of CPUs; --count N exits after N clients.
local socket = require "socket"
local thread = require "thread"

local function parse_args(args)
  local opts, pos, i = {host = "127.0.0.1", port = 6789, workers = thread.cpus()}, {}, 1
  while i <= #args do
    local flag = args[i]:match("^%-%-(%a+)$")
    if flag == "count" or flag == "workers" then
      opts[flag] = math.tointeger(tonumber(args[i + 1]))
      if not opts[flag] or opts[flag] < 1 then error("--" .. flag .. " needs a positive number", 0) end
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
  if tostring(host):find(":", 1, true) then return string.format("[%s]:%s", host, port) end
  return string.format("%s:%s", host, port)
end

-- One line in one write: lines of several threads never interleave.
local function say(fmt, ...)
  io.stdout:write(string.format(fmt, ...) .. "\n")
end

-- A worker: serves the connections it receives until the channel closes.
local function worker(jobs)
  local time = require "time"
  local name = thread.self()
  for client in jobs:iter() do
    client:settimeout(5) -- a client that never reads cannot hold a worker
    local ip, port = client:getpeername()
    local ok, err = client:send(time.datetime())
    if ok then
      say("%s served %s", name, where(ip or "?", port or "?"))
    else
      say("%s: send to %s failed: %s", name, where(ip or "?", port or "?"), err)
    end
    client:close()
  end
end

local opts = parse_args({...})
io.stdout:setvbuf("line")
local server, err = socket.bind(opts.host, opts.port, 512)
if not server then
  io.stderr:write(string.format("netlua: cannot listen on %s: %s\n", where(opts.host, opts.port), err))
  os.exit(1)
end
local ip, port = server:getsockname()
print(string.format("listening on %s with %d workers", where(ip, port), opts.workers))

local jobs = thread.channel(opts.workers * 4) -- backpressure: accept waits when all are busy
for i = 1, opts.workers do thread.spawn{worker, jobs, name = "worker-" .. i} end

local accepted = 0
local accept_failure -- the last accept error, printed once
while not opts.count or accepted < opts.count do
  local client, aerr = server:accept()
  if client then
    accept_failure = nil
    jobs:send(client) -- the socket moves: this thread's object now reads as closed
    accepted = accepted + 1
  else
    -- Out of descriptors (EMFILE) accept fails at once, again and again: say
    -- it once and wait for clients to leave instead of spinning.
    if aerr ~= accept_failure then print("accept failed: " .. aerr) end
    accept_failure = aerr
    socket.sleep(0.1)
  end
end
server:close()
jobs:close() -- workers finish what is queued, then end; netlua waits for them
