-- timeserver.lua: the tutorial's date-time server, on luasocket's API (the
-- listening socket and its accept loop are cli.listen and cli.accept).
-- Each client gets the current date-time as Python's str(datetime.now())
-- prints it, then the connection closes.
--   netlua scripts/timeserver.lua [host [port]] [--count N]
-- host defaults to 127.0.0.1 (0.0.0.0 or :: accept other machines), port to
-- 6789 (0: any free port); --count N exits after N clients.
local cli = require "cli"
local time = require "time"

local function serve(client)
  client:settimeout(5) -- a client that never reads cannot hold the server
  local ip, port = client:getpeername()
  print(string.format("connection from %s", cli.where(ip or "?", port or "?")))
  local ok, err = client:send(time.datetime())
  if not ok then print(string.format("send to %s failed: %s", cli.where(ip or "?", port or "?"), err)) end
  client:close()
end

local opts = cli.parse({...}, {port = 6789, count = false},
  "netlua scripts/timeserver.lua [host [port]] [--count N]")
io.stdout:setvbuf("line")
local server = cli.listen(opts, 512)
local served = 0
while not opts.count or served < opts.count do
  local client = cli.accept(server)
  serve(client)
  served = served + 1
end
server:close()
