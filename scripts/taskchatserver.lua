-- taskchatserver.lua: the chat server of chatserver.lua with one task per
-- client instead of one thread: every client lives on the main thread's
-- event loop, so the "hub" is a plain table and a broadcast a plain loop.
-- Each client has a reader (its session task) and a writer task that sends
-- what its outbox (a thread.channel, which tasks wait on too) receives, so
-- a slow client never holds up the others: the room of chatroom.lua, which
-- webchat.lua shares. Same protocol as chatserver.lua.
--   netlua scripts/taskchatserver.lua [host [port]] [--count N]
-- host defaults to 127.0.0.1, port to 6790 (0: any free port); --count N
-- stops after N clients have come and gone.
local cli = require "cli"
local task = require "task"
local chatroom = require "chatroom"

local room = chatroom.new() -- lines up to 64 KiB, as chatserver.lua

local opts = cli.parse({...}, cli.server_spec{name = "taskchatserver.lua", port = 6790,
  about = "The chat server of chatserver.lua with one task per client instead of one\n" ..
    "thread. Connect with nc or chatclient.lua.",
  lines = "              (N clients have come and gone)\n"})
io.stdout:setvbuf("line")
local server = cli.listen(opts, 64)
local next_id = 0
while not opts.count or next_id < opts.count do
  local client = cli.accept(server)
  next_id = next_id + 1
  task.spawn(room.tcp_session, room, client)
end
server:close()
-- with --count: netlua runs the sessions to their end before it exits
