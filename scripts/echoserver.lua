-- echoserver.lua: an echo server with one task per client (see "task" in
-- README.md): every client is served by a coroutine on one OS thread, so
-- thousands of connections cost no threads. Each byte a client sends comes
-- back to it; the connection ends when the client closes it.
--   netlua scripts/echoserver.lua [host [port]] [--count N] [--quiet]
-- host defaults to 127.0.0.1, port to 7000 (0: any free port); --count N
-- stops accepting after N clients and exits once they are gone; --quiet
-- leaves out the line per client (for benchmarks).
local cli = require "cli"
local task = require "task"

-- One client, in its own task: reads whatever arrived, sends it back.
local function serve(client, quiet)
  local peer
  if not quiet then
    local ip, port = client:getpeername()
    peer = cli.where(ip or "?", port or "?")
    print("connection from " .. peer)
  end
  while true do
    local data = client:recv(8192)
    if not data or not client:send(data) then break end
  end
  client:close()
  if peer then print("closed " .. peer) end
end

local opts = cli.parse({...}, cli.server_spec{name = "echoserver.lua", port = 7000,
  about = "An echo server with one task per client, all on one OS thread: every byte a\n" ..
    "client sends comes back to it.",
  options = {quiet = {"switch", false}}, usage = " [--quiet]",
  lines = "  --quiet     no line per client\n"})
io.stdout:setvbuf("line")
local server = cli.listen(opts, 4096)
local accepted = 0
while not opts.count or accepted < opts.count do
  local client = cli.accept(server, opts.quiet)
  accepted = accepted + 1
  task.spawn(serve, client, opts.quiet)
end
server:close()
-- netlua runs the remaining tasks to their end before it exits
