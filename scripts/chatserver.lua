-- chatserver.lua: a multi-client chat server, one thread per client.
-- Each client's thread owns its socket: it reads the client's lines and
-- passes them to the hub thread through a channel; the hub broadcasts each
-- line to the other clients' outboxes (one channel per client), which their
-- threads write to their sockets. Clients connect with `nc HOST PORT` or
-- scripts/chatclient.lua. A client that disconnects abruptly just leaves.
--   netlua scripts/chatserver.lua [host [port]] [--count N]
-- host defaults to 127.0.0.1, port to 6790 (0: any free port); --count N
-- stops after N clients have come and gone.
--
-- A client thread waits on its socket with a short timeout and checks its
-- outbox in between (a thread waits on one thing at a time), so a broadcast
-- reaches a client within POLL seconds.
local socket = require "socket"
local thread = require "thread"

local POLL = 0.05

local function parse_args(args)
  local opts, pos, i = {host = "127.0.0.1", port = 6790}, {}, 1
  while i <= #args do
    if args[i] == "--count" then
      opts.count = math.tointeger(tonumber(args[i + 1]))
      if not opts.count or opts.count < 1 then error("--count needs a positive number", 0) end
      i = i + 1
    else
      pos[#pos + 1] = args[i]
    end
    i = i + 1
  end
  opts.host = pos[1] or opts.host
  opts.port = tonumber(pos[2] or opts.port) or error("port must be a number", 0)
  return opts
end

local function where(host, port)
  if tostring(host):find(":", 1, true) then return string.format("[%s]:%s", host, port) end
  return string.format("%s:%s", host, port)
end

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

-- Writes every queued broadcast to the client; false when the client is gone.
local function flush(client, outbox)
  while true do
    local text = outbox:recv(0)
    if text == nil then return true end
    if not client:send(text .. "\n") then return false end
  end
end

-- One client's thread: owns the socket, reads lines, delivers broadcasts.
local function session(client, id, hub)
  local outbox = thread.channel()
  client:settimeout(POLL)
  -- Join before the welcome: once a client has read its welcome, the hub
  -- knows it, so it hears about everyone who connects after it.
  hub:send({"join", id, outbox})
  client:send(string.format("welcome, you are client %d; /quit leaves\n", id))
  local pending, why = "", "quit"
  while true do
    local line, err, partial = client:receive("*l", pending)
    if line then
      pending = ""
      if line:sub(-1) == "\r" then line = line:sub(1, -2) end -- telnet, nc -C
      if line == "/quit" then break end
      hub:send({"line", id, line})
    elseif err == "timeout" then
      pending = partial or ""
    else
      why = err -- "closed", "connection reset by peer": abrupt disconnects
      break
    end
    if not flush(client, outbox) then why = "send failed" break end
  end
  client:close()
  hub:send({"leave", id, why})
end

local opts = parse_args({...})
io.stdout:setvbuf("line")
local server, err = socket.bind(opts.host, opts.port, 64)
if not server then
  io.stderr:write(string.format("netlua: cannot listen on %s: %s\n", where(opts.host, opts.port), err))
  os.exit(1)
end
local ip, port = server:getsockname()
print(string.format("listening on %s", where(ip, port)))

local hub, done = thread.channel(), thread.channel()
local hub_thread = thread.spawn{run_hub, hub, done, name = "hub"}
local next_id = 0
while not opts.count or next_id < opts.count do
  local client, aerr = server:accept()
  if client then
    next_id = next_id + 1
    thread.spawn{session, client, next_id, hub, name = "client-" .. next_id}
  else
    print("accept failed: " .. aerr)
  end
end
server:close()
-- --count: wait until every client has left, then stop the hub.
repeat local left = done:recv() until left == opts.count
hub:close()
hub_thread:join()
