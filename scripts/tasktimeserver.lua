-- tasktimeserver.lua: the tutorial's date-time server (timeserver.lua) with
-- one task per client: a client that is slow to read no longer holds up the
-- others, and no thread is needed. Same protocol and log lines.
--   netlua scripts/tasktimeserver.lua [host [port]] [--count N]
-- host defaults to 127.0.0.1, port to 6789 (0: any free port); --count N
-- stops after N clients (and exits once they are served).
local cli = require "cli"
local task = require "task"
local time = require "time"

local function serve(client)
  client:settimeout(5) -- a client that never reads gives up its task
  local ip, port = client:getpeername()
  print(string.format("connection from %s", cli.where(ip or "?", port or "?")))
  local ok, err = client:send(time.datetime())
  if not ok then print(string.format("send to %s failed: %s", cli.where(ip or "?", port or "?"), err)) end
  client:close()
end

local opts = cli.parse({...}, {port = 6789, count = false},
  "netlua scripts/tasktimeserver.lua [host [port]] [--count N]")
io.stdout:setvbuf("line")
local server = cli.listen(opts, 512)
local served = 0
while not opts.count or served < opts.count do
  local client = cli.accept(server)
  served = served + 1
  task.spawn(serve, client)
end
server:close()
