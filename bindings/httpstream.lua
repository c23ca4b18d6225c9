-- httpstream.lua: streamed replies and server-sent events of http.server
-- (layer: bindings, the Lua half's helper; bindings/httpserver.c hands it
-- to httpserver.lua as core.stream). A Stream writes a reply's body in
-- pieces through the connection (conn:stream_begin/stream_write/stream_end
-- in bindings/httpconn.c: chunked for HTTP/1.1, close-delimited for 1.0);
-- Events formats text/event-stream on a Stream and keeps it alive with
-- heartbeat comments from a task of its own.
local core = ... -- http.server's C half: tracing, trace
local json = require "json"
local task = require "task"
local time = require "time"

local type, tostring, error, setmetatable = type, tostring, error, setmetatable
local format, concat = string.format, table.concat

local M = {}

-- ---- streams ---------------------------------------------------------------

local Stream = {}
Stream.__index = Stream
Stream.__name = "http.server.stream"

-- Sends the head (status, header lines) and returns the writer. A client
-- already gone makes a writer whose writes return nil, "closed".
function M.open(conn, status, lines)
  local s = setmetatable({conn = conn, sent_at = time.monotonic()}, Stream)
  s.ended = not conn:stream_begin(status, lines)
  return s
end

-- out:write(data) -> true | nil, "closed": one piece (a chunk), sent before
-- it returns, so the handler goes at the client's pace. "closed": the client
-- is gone, or the reply has no body (HEAD).
function Stream:write(data)
  if type(data) == "number" then data = tostring(data) end
  if type(data) ~= "string" then
    error(format("bad argument #1 to 'write' (string expected, got %s)", type(data)), 2)
  end
  if self.ended then return nil, "closed" end
  self.sent_at = time.monotonic()
  return self.conn:stream_write(data)
end

local function stop_beat(self)
  local beat = self.beat
  self.beat = nil
  if beat ~= nil and beat ~= task.self() then beat:cancel() end
end

-- out:close() -> true: ends the reply (the last chunk). Again: true.
function Stream:close()
  if not self.ended then
    self.ended = true
    stop_beat(self)
    self.kept = self.conn:stream_end()
  end
  return true
end

Stream.__close = Stream.close

-- After the handler: ends the reply if the handler did not. A handler that
-- failed after the head went out gets no last chunk, the connection closes
-- (the client sees a cut reply, not a complete one). Returns whether the
-- connection stays open for another request.
function M.finish(s, handler_ok)
  stop_beat(s)
  if not handler_ok and not s.ended then
    s.ended = true
    s.conn:close()
    return false
  end
  s:close()
  return s.kept == true
end

-- ---- server-sent events ----------------------------------------------------

local Events = {}
Events.__index = Events
Events.__name = "http.server.events"

-- A field value that must stay on one line.
local function one_line(what, v)
  v = tostring(v)
  if v:find("[\r\n%z]") then
    error(format("bad event %s %q (it may not hold CR, LF or NUL)", what, v), 4)
  end
  return v
end

local function data_lines(parts, data)
  if type(data) == "table" then data = json.encode(data) end
  data = tostring(data)
  for line in (data .. "\n"):gmatch("(.-)\r?\n") do
    parts[#parts + 1] = "data: " .. line .. "\n"
  end
end

-- The text of one event: {data=, event=, id=, retry=} or a data string.
local function event_text(ev)
  if type(ev) ~= "table" then
    if ev == nil then error("bad argument #1 to 'send' (event or data expected, got nil)", 3) end
    ev = {data = ev}
  end
  local parts = {}
  if ev.event ~= nil then parts[#parts + 1] = "event: " .. one_line("name", ev.event) .. "\n" end
  if ev.id ~= nil then parts[#parts + 1] = "id: " .. one_line("id", ev.id) .. "\n" end
  if ev.retry ~= nil then
    local ms = math.tointeger(ev.retry)
    if ms == nil or ms < 0 then error("bad event retry (milliseconds, an integer >= 0)", 3) end
    parts[#parts + 1] = format("retry: %d\n", ms)
  end
  if ev.data ~= nil then data_lines(parts, ev.data) end
  parts[#parts + 1] = "\n"
  return concat(parts)
end

-- --trace: an event sent on conn ("sse": its name, its id if it has one,
-- the bytes of its text).
local function trace_event(conn, ev, bytes)
  local name = tostring(type(ev) == "table" and ev.event or "message")
  local id = type(ev) == "table" and ev.id
  if id ~= nil and id ~= false then
    core.trace("sse", conn:fd(), "event", name, "id", tostring(id), "bytes", bytes)
  else
    core.trace("sse", conn:fd(), "event", name, "bytes", bytes)
  end
end

-- events:send{data=, event=, id=, retry=} | events:send(data) -> true |
-- nil, "closed". One event is one write: a heartbeat never lands inside it.
function Events:send(ev)
  local text = event_text(ev)
  local ok, err = self.out:write(text)
  if ok and core.tracing then trace_event(self.out.conn, ev, #text) end
  return ok, err
end

-- events:comment(text) -> as send: ": text" lines, which clients ignore.
function Events:comment(text)
  local parts = {}
  for line in (tostring(text or "") .. "\n"):gmatch("(.-)\r?\n") do
    parts[#parts + 1] = ": " .. line .. "\n"
  end
  parts[#parts + 1] = "\n"
  return self.out:write(concat(parts))
end

function Events:close()
  return self.out:close()
end

Events.__close = Events.close

-- The heartbeat task: a comment whenever `every` seconds passed without a
-- write, until a write fails (the client left) or the stream ends.
local function beat(ev, every)
  local out = ev.out
  while not out.ended do
    local wait = out.sent_at + every - time.monotonic()
    if wait > 0 then
      task.sleep(wait)
    elseif not ev:comment("heartbeat") then
      return
    end
  end
end

local SSE_HEADERS = {["Content-Type"] = "text/event-stream", ["Cache-Control"] = "no-cache",
  ["X-Accel-Buffering"] = "no"}

local function check_opts(opts)
  if opts == nil then return 15, nil end
  if type(opts) ~= "table" then error("bad argument #1 to 'sse' (table expected)", 3) end
  local every, retry = opts.heartbeat, opts.retry
  if every == nil then every = 15 end
  if every ~= false and (type(every) ~= "number" or every <= 0) then
    error("req:sse: option 'heartbeat' must be a number of seconds > 0 or false", 3)
  end
  if retry ~= nil and (math.tointeger(retry) == nil or retry < 0) then
    error("req:sse: option 'retry' must be an integer number of milliseconds >= 0", 3)
  end
  return every, retry
end

-- The text/event-stream reply on a new stream; open(status, headers) makes
-- it (req:stream). Returns the events object.
function M.sse(open, last_event_id, opts)
  local every, retry = check_opts(opts)
  local out = open(200, SSE_HEADERS)
  local ev = setmetatable({out = out, last_event_id = last_event_id}, Events)
  if retry ~= nil then ev:send{retry = retry} end
  if every and not out.ended then
    out.beat = task.spawn{beat, ev, every, quiet = true}
  end
  return ev
end

M.event_text = event_text
return M
