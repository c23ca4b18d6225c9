-- chatserver.lua: a multi-client chat server, one thread per client.
-- Each client's thread owns its socket: it reads the client's lines and
-- passes them to the hub thread through a channel; the hub broadcasts each
-- line to the other clients' outboxes (one channel per client), which their
-- threads write to their sockets. Clients connect with `nc HOST PORT` or
-- scripts/chatclient.lua. A client that disconnects abruptly just leaves; one
-- that sends a line longer than MAX_LINE (64 KiB) is disconnected.
--   netlua scripts/chatserver.lua [host [port]] [--count N]
-- host defaults to 127.0.0.1, port to 6790 (0: any free port); --count N
-- stops after N clients have come and gone.
--
-- A client thread waits on its socket with a short timeout and checks its
-- outbox in between (a thread waits on one thing at a time), so a broadcast
-- reaches a client within POLL seconds.
local cli = require "cli"
local thread = require "thread"
local chatroom = require "chatroom" -- its split_lines

local POLL = 0.05
local MAX_LINE = 64 * 1024 -- longest line a client may send
local SEND_TIMEOUT = 10   -- a client that reads nothing for this long is dropped

-- The hub: who is connected, and broadcasting. Messages on `hub`:
-- {"join", id, outbox}, {"line", id, text}, {"leave", id, why}.
local function run_hub(hub, done)
  local outboxes, online, left = {}, 0, 0
  local function broadcast(from, text)
    for id, outbox in pairs(outboxes) do
      if id ~= from then outbox:send(text) end
    end
  end
  for msg in hub:iter() do
    local kind, id = msg[1], msg[2]
    if kind == "join" then
      broadcast(id, string.format("* client %d joined", id))
      outboxes[id] = msg[3]
      online = online + 1
      print(string.format("client %d joined (%d online)", id, online))
    elseif kind == "line" then
      broadcast(id, string.format("[%d] %s", id, msg[3]))
    elseif kind == "leave" then
      outboxes[id] = nil
      online = online - 1
      broadcast(id, string.format("* client %d left", id))
      print(string.format("client %d left (%s)", id, msg[3]))
      left = left + 1
      done:send(left)
    end
  end
end

-- Writes every queued broadcast to the client; false when the client is gone
-- or has not read for SEND_TIMEOUT seconds. (It used to send with the POLL
-- timeout: a client that was reading, just not within 50 ms of a burst,
-- was dropped as "send failed".)
local function flush(client, outbox)
  local ok = true
  client:settimeout(SEND_TIMEOUT)
  while ok do
    local text = outbox:recv(0)
    if text == nil then break end
    ok = client:send(text .. "\n") ~= nil
  end
  client:settimeout(POLL)
  return ok
end

-- One client's thread: owns the socket, reads lines, delivers broadcasts.
-- It reads with recv (at most 4 KiB at a time) rather than receive("*l"),
-- so a client sending an endless line cannot grow the server's memory:
-- past MAX_LINE bytes without a newline it is told and disconnected.
local function session(client, id, hub)
  local outbox = thread.channel()
  client:settimeout(POLL)
  -- Join before the welcome: once a client has read its welcome, the hub
  -- knows it, so it hears about everyone who connects after it.
  hub:send({"join", id, outbox})
  client:send(string.format("welcome, you are client %d; /quit leaves\n", id))
  local pending, why = "", "quit"
  local function each(line)
    if line == "/quit" then return false end
    hub:send({"line", id, line})
  end
  while true do
    local data, err = client:recv(4096)
    if data then
      pending = chatroom.split_lines(pending .. data, each)
      if pending == nil then break end -- /quit
      if #pending > MAX_LINE then
        client:send(string.format("* line too long (more than %d bytes), bye\n", MAX_LINE))
        why = "line too long"
        break
      end
    elseif err ~= "timeout" then
      why = err -- "closed", "connection reset by peer": abrupt disconnects
      break
    end
    if not flush(client, outbox) then why = "send failed" break end
  end
  client:close()
  hub:send({"leave", id, why})
end

local opts = cli.parse({...}, cli.server_spec{name = "chatserver.lua", port = 6790,
  about = "A chat server, one thread per client: each line a client sends goes to the\n" ..
    "others as \"[id] text\"; /quit leaves. Connect with nc or chatclient.lua.",
  lines = "              (N clients have come and gone)\n"})
io.stdout:setvbuf("line")
local server = cli.listen(opts, 64)

local hub, done = thread.channel(), thread.channel()
local hub_thread = thread.spawn{run_hub, hub, done, name = "hub"}
local next_id = 0
while not opts.count or next_id < opts.count do
  local client = cli.accept(server)
  next_id = next_id + 1
  thread.spawn{session, client, next_id, hub, name = "client-" .. next_id}
end
server:close()
-- --count: wait until every client has left, then stop the hub.
repeat local left = done:recv() until left == opts.count
hub:close()
hub_thread:join()
