-- chatroom.lua: the chat room that taskchatserver.lua and webchat.lua
-- share (chatserver.lua, one thread per client, shares split_lines). Not a
-- program: `require "chatroom"` finds it next to them.
--
--   local chatroom = require "chatroom"
--   local room = chatroom.new{max_line = 4096}
--   task.spawn(room.tcp_session, room, client)      -- a terminal client
--   room:member("browser", deliver, read)           -- any other kind
--
-- Each line a member sends reaches the others as "[id] text"; joins and
-- leaves as "* client id joined/left"; "/quit" leaves. Every member has a
-- reader (the task that calls member) and a writer task that sends what its
-- outbox (a bounded thread.channel) holds, so a slow member never holds up
-- the others; one that stops reading altogether is dropped once `backlog`
-- lines wait for it.
local task = require "task"
local thread = require "thread"
local cli = require "cli"

local M = {}
local Room = {}
Room.__index = Room

-- A room: opts.max_line (longest line in bytes, 64 KiB), opts.backlog
-- (lines queued for one member, 256), opts.max_members (256).
function M.new(opts)
  opts = opts or {}
  return setmetatable({max_line = opts.max_line or 64 * 1024, backlog = opts.backlog or 256,
    max_members = opts.max_members or 256, members = {}, count = 0, last_id = 0}, Room)
end

-- What a member sent, made fit to show anywhere: valid UTF-8 (a WebSocket
-- text frame must be), no control characters (a terminal's escape codes).
function M.clean(text)
  return (cli.valid_utf8(text, "?"):gsub("[%c\127]", " "))
end

-- Queues text for every member but `from`; a member whose outbox is full
-- has stopped reading: its outbox closes, which ends its writer.
function Room:say(from, text)
  for id, outbox in pairs(self.members) do
    if id ~= from and not outbox:send(text, 0) then outbox:close() end
  end
end

-- One member, whatever it talks through: deliver(text) sends it a line
-- (false when it has gone); read(each) calls each(line) for every line it
-- sends until each returns false, and returns why it stopped. `kind`
-- ("tcp", "browser") is for the log. Returns when the member has left.
function Room:member(kind, deliver, read)
  if self.count >= self.max_members then
    deliver("* the room is full, try later")
    return
  end
  self.last_id, self.count = self.last_id + 1, self.count + 1
  local id, outbox = self.last_id, thread.channel(self.backlog)
  outbox:send(string.format("welcome, you are client %d; /quit leaves", id))
  local writer = task.spawn(function()
    for text in outbox:iter() do
      if not deliver(text) then break end
    end
  end)
  self:say(id, string.format("* client %d joined", id))
  self.members[id] = outbox
  print(string.format("client %d joined (%s, %d online)", id, kind, self.count))
  local why = read(function(line)
    if line == "/quit" then return false end
    self:say(id, string.format("[%d] %s", id, M.clean(line)))
  end)
  self.members[id], self.count = nil, self.count - 1
  self:say(id, string.format("* client %d left", id))
  print(string.format("client %d left (%s)", id, why))
  outbox:close() -- the writer sends what is left, then ends
  writer:join()
end

-- ---- terminal clients: lines over TCP ----------------------------------------

-- Calls each(line) for each complete line in buffer (a trailing "\r"
-- dropped: telnet, nc -C); returns the incomplete rest, or nil when each
-- returned false.
function M.split_lines(buffer, each)
  local start = 1
  while true do
    local nl = buffer:find("\n", start, true)
    if not nl then return buffer:sub(start) end
    if each((buffer:sub(start, nl - 1):gsub("\r$", ""))) == false then return nil end
    start = nl + 1
  end
end

-- The reader of a TCP client: its lines, read in pieces of at most 4 KiB
-- so an endless line cannot grow the server's memory; past max_line bytes
-- the client is told and disconnected.
function Room:tcp_lines(client)
  return function(each)
    local pending = ""
    while true do
      local data, err = client:recv(4096)
      if data then
        pending = M.split_lines(pending .. data, each)
        if not pending then return "quit" end
      elseif err ~= "timeout" then
        return err -- "closed", "connection reset by peer"
      end
      if #pending > self.max_line then
        client:send(string.format("* line too long (more than %d bytes), bye\n", self.max_line))
        return "line too long"
      end
    end
  end
end

-- A TCP client as a member, in the calling task, until it leaves; then its
-- socket closes. A send that makes no progress for 10 s fails (the client
-- is gone or stopped reading); a quiet client only makes recv wait again.
function Room:tcp_session(client)
  client:settimeout(10)
  self:member("tcp", function(text) return client:send(text .. "\n") ~= nil end,
    self:tcp_lines(client))
  client:close()
end

return M
