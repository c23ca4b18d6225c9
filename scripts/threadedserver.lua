-- threadedserver.lua: the tutorial's date-time server with a pool of worker
-- threads. The main thread accepts; each connection's socket moves through a
-- channel to whichever worker is free, which sends the date-time and closes
-- it. Compare with scripts/timeserver.lua, which serves one client at a time.
--   netlua scripts/threadedserver.lua [host [port]] [--workers N] [--count N]
-- host defaults to 127.0.0.1, port to 6789 (0: any free port); --workers
-- defaults to the number of CPUs; --count N exits after N clients.
local cli = require "cli"
local thread = require "thread"

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
      say("%s served %s", name, cli.where(ip or "?", port or "?"))
    else
      say("%s: send to %s failed: %s", name, cli.where(ip or "?", port or "?"), err)
    end
    client:close()
  end
end

local opts = cli.parse({...}, cli.server_spec{name = "threadedserver.lua", port = 6789,
  about = "The date-time server with a pool of worker threads: the main thread accepts\n" ..
    "and hands each connection to a free worker.",
  options = {workers = {"count", thread.cpus()}}, usage = " [--workers N]",
  lines = "  --workers N the number of worker threads (default: the CPUs)\n"})
io.stdout:setvbuf("line")
local server = cli.listen(opts, 512, string.format(" with %d workers", opts.workers))

local jobs = thread.channel(opts.workers * 4) -- backpressure: accept waits when all are busy
for i = 1, opts.workers do thread.spawn{worker, jobs, name = "worker-" .. i} end

local accepted = 0
while not opts.count or accepted < opts.count do
  local client = cli.accept(server)
  jobs:send(client) -- the socket moves: this thread's object now reads as closed
  accepted = accepted + 1
end
server:close()
jobs:close() -- workers finish what is queued, then end; netlua waits for them
