-- timeserver.lua: the tutorial's date-time server, on luasocket's API (the
-- listening socket, its accept loop and the reply are cli.listen, cli.serve
-- and cli.reply). Each client gets the current date-time as Python's
-- str(datetime.now()) prints it, then the connection closes.
--   netlua scripts/timeserver.lua [host [port]] [--count N]
-- host defaults to 127.0.0.1 (0.0.0.0 or :: accept other machines), port to
-- 6789 (0: any free port); --count N exits after N clients.
local cli = require "cli"
local time = require "time"

local opts = cli.parse({...}, cli.server_spec{name = "timeserver.lua", port = 6789,
  about = "The tutorial's date-time server: each client gets the date-time as Python's\n" ..
    "str(datetime.now()) prints it, then the connection closes."})
-- its log lines go out when it waits for the next client (netlua flushes
-- stdout then): one write(2) for many lines while clients queue up
local server = cli.listen(opts, 512)
cli.serve(server, opts.count, function(client) -- one client after the other
  cli.reply(client, time.datetime())
end)
