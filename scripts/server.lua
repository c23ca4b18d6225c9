-- server.lua: the tutorial's welcome server, on luasocket's API.
-- Each client gets "欢迎访问菜鸟教程！" and CRLF, UTF-8 encoded, then the
-- connection closes.
--   netlua scripts/server.lua [host [port]] [--count N]
-- host defaults to 127.0.0.1 (0.0.0.0 or :: accept other machines), port to
-- 9999 (0: any free port); --count N exits after N clients.
local cli = require "cli"
local WELCOME = "欢迎访问菜鸟教程！\r\n"

local opts = cli.parse({...}, cli.server_spec{name = "server.lua", port = 9999,
  about = "The tutorial's welcome server: each client gets \"欢迎访问菜鸟教程！\" and CRLF\n" ..
    "(UTF-8), then the connection closes."})
io.stdout:setvbuf("line")
local server = cli.listen(opts, 512)
cli.serve(server, opts.count, function(client) cli.reply(client, WELCOME) end)
