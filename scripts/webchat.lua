-- webchat.lua: one chat room for browsers and terminals: client/server and
-- browser/server side by side in one program.
--
-- usage: netlua scripts/webchat.lua [--host H] [--port P] [--tcp-port T]
--
-- Browsers open http://H:P/ (scripts/web/webchat.html), which talks to the
-- room over a WebSocket (/chat); terminal clients connect to T with `nc` or
-- scripts/chatclient.lua and speak chatserver.lua's line protocol. Everyone
-- is in the same room: each line anyone sends reaches the others as
-- "[id] text", and joins and leaves as "* client id joined/left"; "/quit"
-- leaves. Every member has a reader (its own task) and a writer task that
-- sends what its outbox (a bounded thread.channel) holds, so a slow member
-- never holds up the others; one that stops reading altogether is dropped.
local HERE = (arg and arg[0] and arg[0]:match("^(.*)/[^/]*$")) or "."
package.path = HERE .. "/?.lua;" .. package.path

local http = require "http"
local task = require "task"
local thread = require "thread"
local cli = require "cli"

local MAX_LINE = 4096   -- longest message, in bytes; a longer TCP line disconnects
local BACKLOG = 256     -- messages queued for one member before it is dropped
local MAX_MEMBERS = 256 -- members at once (browsers and terminals)

local SPEC = {
  usage = "netlua scripts/webchat.lua [--host H] [--port P] [--tcp-port T]",
  help = "A chat room for browsers (WebSocket, the page at http://H:P/) and terminal\n" ..
    "clients (nc H T, or chatclient.lua H T) at once.\n\n" ..
    "  --host H       address to listen on (default 127.0.0.1)\n" ..
    "  --port P       the page's port (default 8080; 0 picks a free one)\n" ..
    "  --tcp-port T   the terminal clients' port (default 6790; 0 picks one)\n",
  options = {host = {"host", "127.0.0.1"}, port = {"port", 8080},
    ["tcp-port"] = {"port", 6790}},
}

-- ---- the room ---------------------------------------------------------------

local members, count, last_id = {}, 0, 0 -- id -> outbox

-- Queues text for every member but `from`; a member whose outbox is full
-- has stopped reading: its outbox closes, which ends its writer.
local function say(from, text)
  for id, outbox in pairs(members) do
    if id ~= from and not outbox:send(text, 0) then outbox:close() end
  end
end

-- What a member sent, made fit to show anywhere: valid UTF-8 (a WebSocket
-- text frame must be), no control characters (a terminal's escape codes,
-- a line break that would forge a second line).
local function clean(text)
  return (cli.valid_utf8(text, "?"):gsub("[%c\127]", " "))
end

-- One member, whatever it talks through: `deliver(text)` sends it a line
-- (false when it has gone), `read(each)` calls each(line) per line it sends
-- until each returns false, and returns why it stopped. `kind` is for the
-- log.
local function member(kind, deliver, read)
  if count >= MAX_MEMBERS then
    deliver("* the room is full, try later")
    return
  end
  last_id, count = last_id + 1, count + 1
  local id, outbox = last_id, thread.channel(BACKLOG)
  outbox:send(string.format("welcome, you are client %d; /quit leaves", id))
  local writer = task.spawn(function()
    for text in outbox:iter() do
      if not deliver(text) then break end
    end
  end)
  say(id, string.format("* client %d joined", id))
  members[id] = outbox
  print(string.format("client %d joined (%s, %d online)", id, kind, count))
  local why = read(function(line)
    if line == "/quit" then return false end
    say(id, string.format("[%d] %s", id, clean(line)))
  end)
  members[id], count = nil, count - 1
  say(id, string.format("* client %d left", id))
  print(string.format("client %d left (%s)", id, why))
  outbox:close() -- the writer sends what is left, then ends
  writer:join()
end

-- ---- terminal clients: lines over TCP ----------------------------------------

-- Calls each(line) for each complete line in buffer (a trailing "\r"
-- dropped: telnet, nc -C); returns the incomplete rest, or nil when each
-- returned false.
local function split_lines(buffer, each)
  local start = 1
  while true do
    local nl = buffer:find("\n", start, true)
    if not nl then return buffer:sub(start) end
    if each((buffer:sub(start, nl - 1):gsub("\r$", ""))) == false then return nil end
    start = nl + 1
  end
end

-- Reads a TCP client's lines in pieces of at most 4 KiB, so an endless line
-- cannot grow the server's memory: past MAX_LINE bytes the client is told
-- and disconnected.
local function tcp_lines(client)
  return function(each)
    local pending = ""
    while true do
      local data, err = client:recv(4096)
      if data then
        pending = split_lines(pending .. data, each)
        if not pending then return "quit" end
      elseif err ~= "timeout" then
        return err -- "closed", "connection reset by peer"
      end
      if #pending > MAX_LINE then
        client:send(string.format("* line too long (more than %d bytes), bye\n", MAX_LINE))
        return "line too long"
      end
    end
  end
end

local function tcp_session(client)
  -- A send that makes no progress for 10 s fails (the client is gone or
  -- stopped reading); a quiet client only makes recv come back to wait again.
  client:settimeout(10)
  member("tcp", function(text) return client:send(text .. "\n") ~= nil end, tcp_lines(client))
  client:close()
end

-- ---- browsers: messages over a WebSocket -----------------------------------------

local function ws_lines(ws)
  return function(each)
    while true do
      local msg, kind, code = ws:receive()
      if not msg then return kind .. (code and (" " .. code) or "") end
      if kind ~= "text" then
        ws:send("* only text messages, please")
      elseif #msg > MAX_LINE then
        ws:send(string.format("* message too long (more than %d bytes), not sent", MAX_LINE))
      elseif each(msg) == false then
        return "quit"
      end
    end
  end
end

local function ws_session(ws)
  member("browser", function(text) return ws:send(text) ~= nil end, ws_lines(ws))
  ws:close()
end

-- ---- the program ---------------------------------------------------------------

local function main(...)
  local o = cli.parse({...}, SPEC)
  io.stdout:setvbuf("line")
  local srv, msg = http.server{host = o.host, port = o.port}
  if not srv then cli.fail("cannot listen on %s: %s", cli.where(o.host, o.port), msg) end
  local tcp = cli.listen({host = o.host, port = o["tcp-port"]}, 64,
    " for terminal clients (nc, chatclient.lua)")
  print("chat page at " .. srv.url .. "/")

  srv:route("GET", "/", function()
    local f = assert(io.open(HERE .. "/web/webchat.html", "rb"))
    local html = f:read("a")
    f:close()
    return 200, html, {["Content-Type"] = "text/html; charset=utf-8"}
  end)
  srv:websocket("/chat", ws_session)
  local open = true
  task.spawn(function() -- the terminal clients' door, checked twice a second
    tcp:settimeout(0.5)
    while open do
      local client, err = tcp:accept()
      if client then task.spawn(tcp_session, client)
      elseif err ~= "timeout" then print("accept failed: " .. err) task.sleep(0.1) end
    end
    tcp:close()
  end)
  local ok, err = pcall(srv.serve, srv)
  open = false
  srv:close()
  if not ok and err ~= "interrupted" then error(err, 0) end
  -- Ctrl-C: the members' tasks would wait for their peers forever (netlua
  -- runs tasks to their end before it exits); exiting now closes them all.
  print("stopped")
  os.exit(0)
end

main(...)
