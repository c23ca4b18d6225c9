-- taskchatserver.lua: the chat server of chatserver.lua with one task per
-- client instead of one thread: every client lives on the main thread's
-- event loop, so the "hub" is a plain table and a broadcast a plain loop.
-- Each client has a reader (its session task) and a writer task that sends
-- what its outbox (a thread.channel, which tasks wait on too) receives, so
-- a slow client never holds up the others. Same protocol as chatserver.lua.
--   netlua scripts/taskchatserver.lua [host [port]] [--count N]
-- host defaults to 127.0.0.1, port to 6790 (0: any free port); --count N
-- stops after N clients have come and gone.
local cli = require "cli"
local task = require "task"
local thread = require "thread"

local outboxes, online = {}, 0 -- id -> outbox of each connected client

local function broadcast(from, text)
  for id, outbox in pairs(outboxes) do
    if id ~= from then outbox:send(text) end
  end
end

-- Sends everything queued for one client until its outbox closes.
local function writer(client, outbox)
  for text in outbox:iter() do
    if not client:send(text .. "\n") then break end
  end
end

-- One client: reads its lines and broadcasts them.
local function session(client, id)
  local outbox = thread.channel()
  outbox:send(string.format("welcome, you are client %d; /quit leaves", id))
  local w = task.spawn(writer, client, outbox)
  broadcast(id, string.format("* client %d joined", id))
  outboxes[id] = outbox
  online = online + 1
  print(string.format("client %d joined (%d online)", id, online))
  local why = "quit"
  while true do
    local line, err = client:receive("*l")
    if not line then why = err break end -- "closed", "connection reset by peer"
    if line:sub(-1) == "\r" then line = line:sub(1, -2) end -- telnet, nc -C
    if line == "/quit" then break end
    broadcast(id, string.format("[%d] %s", id, line))
  end
  outboxes[id] = nil
  online = online - 1
  broadcast(id, string.format("* client %d left", id))
  print(string.format("client %d left (%s)", id, why))
  outbox:close() -- the writer sends what is left, then ends
  w:join()
  client:close()
end

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
  task.spawn(session, client, next_id)
end
server:close()
-- with --count: netlua runs the sessions to their end before it exits
