-- tasktimeserver.lua: the tutorial's date-time server (timeserver.lua) with
-- one task per client: a client that is slow to read no longer holds up the
-- others, and no thread is needed. Same protocol and log lines; the only
-- change from timeserver.lua is task.spawn.
--   netlua scripts/tasktimeserver.lua [host [port]] [--count N]
-- host defaults to 127.0.0.1, port to 6789 (0: any free port); --count N
-- stops after N clients (and exits once they are served).
local cli = require "cli"
local task = require "task"
local time = require "time"

local opts = cli.parse({...}, cli.server_spec{name = "tasktimeserver.lua", port = 6789,
  about = "The date-time server of timeserver.lua with one task per client, on one thread."})
io.stdout:setvbuf("line")
local server = cli.listen(opts, 512)
cli.serve(server, opts.count, function(client) -- each client in its own task
  task.spawn(cli.reply, client, time.datetime())
end)
