-- _bench_load.lua: the connections of `netlua -m bench` (lab/bench.lua).
-- Each connection is a task that repeats one round trip until the run's
-- end (the one in flight then is finished, so the counts match what the
-- server served): tcp (send the text, read as many bytes back), http (GET
-- over a keep-alive connection) or ws (a WebSocket message and its echo).
-- A failure is counted by kind and the connection is made again. `run` is
-- what each thread (or the main one) does; it returns the thread's stats.
local socket = require "socket"
local task = require "task"
local time = require "time"
local stats = require "_bench_stats"

local M = {}
local MAX_HEADER = 64 * 1024 -- bytes of one header line a reply may have
local MAX_HEADERS = 100

-- The kind of an error message: refused, reset, timeout, closed, bad
-- status, bad reply; anything else counts under its own message.
function M.kind(err)
  err = tostring(err)
  if err:find("refused", 1, true) then return "refused" end
  if err:find("reset", 1, true) or err:find("broken pipe", 1, true) then return "reset" end
  if err:find("timeout", 1, true) or err:find("timed out", 1, true) then return "timeout" end
  if err:find("handshake failed", 1, true) then return "bad status" end
  if err == "closed" then return "closed" end
  return err
end

-- ---- tcp: an echo round trip -------------------------------------------------

local tcp = {}

function tcp.connect(target, opts)
  local c = socket.tcp()
  c:settimeout(opts.timeout)
  local ok, err = c:connect(target.host, target.port)
  if not ok then
    c:close()
    return nil, err
  end
  c:setoption("tcp-nodelay", true)
  return c
end

-- After "closed": whether the server reset the connection rather than
-- closed it. The socket module says "closed" for both (luasocket's
-- convention); a reset connection (TCP CLOSE) has no peer any more, one the
-- server closed with a FIN (CLOSE_WAIT) still has.
function tcp.was_reset(c)
  return c:getpeername() == nil
end

function tcp.request(c, target, opts)
  local ok, err = c:send(opts.text)
  if not ok then return nil, err end
  local reply, rerr = c:receive(#opts.text)
  if not reply then return nil, rerr end
  return true
end

-- ---- http: GET over keep-alive ---------------------------------------------------

local http = {was_reset = tcp.was_reset}

-- Reads and drops n bytes of body.
local function drop(c, n)
  while n > 0 do
    local chunk = math.min(n, 65536)
    local data, err = c:receive(chunk)
    if not data then return nil, err end
    n = n - chunk
  end
  return true
end

local function drop_chunked(c)
  while true do
    local line, err = c:receive("*l")
    if not line then return nil, err end
    local size = tonumber(line:match("^%x+"), 16)
    if not size then return nil, "bad reply" end
    if size == 0 then
      repeat
        line, err = c:receive("*l")
        if not line then return nil, err end
      until line == ""
      return true
    end
    local ok, derr = drop(c, size)
    if not ok then return nil, derr end
    line, err = c:receive("*l")
    if not line then return nil, err end
  end
end

-- The reply's status and headers (lowercase names), or nil and why.
local function read_head(c)
  local line, err = c:receive("*l")
  if not line then return nil, err end
  local status = tonumber(line:match("^HTTP/1%.%d (%d%d%d)"))
  if not status then return nil, "bad reply" end
  local headers = {}
  for _ = 1, MAX_HEADERS do
    line, err = c:receive("*l")
    if not line then return nil, err end
    if line == "" then return status, headers end
    local name, value = line:match("^([^:]+):%s*(.-)%s*$")
    if name then headers[name:lower()] = value end
  end
  return nil, "bad reply"
end

function http.connect(target, opts)
  local c, err = tcp.connect(target, opts)
  if c then c:setoption("max-line", MAX_HEADER) end
  return c, err
end

-- One GET: true and the status (the connection stays open unless the
-- server said close: then "again" as a third value), or nil and why.
function http.request(c, target, opts)
  local ok, err = c:send(target.request)
  if not ok then return nil, err end
  local status, headers = read_head(c)
  if not status then return nil, headers end
  local length = tonumber(headers["content-length"])
  if headers["transfer-encoding"] and headers["transfer-encoding"]:lower():find("chunked") then
    ok, err = drop_chunked(c)
  elseif length then
    ok, err = drop(c, length)
  else -- until the server closes: this connection is done
    repeat local data, rerr = c:receive(65536) until not data and rerr
    return true, status, "again"
  end
  if not ok then return nil, err end
  local close = (headers["connection"] or ""):lower() == "close"
  return true, status, close and "again" or nil
end

-- ---- ws: a WebSocket echo ----------------------------------------------------------

local ws = {}

function ws.connect(target, opts)
  return require("http").websocket(target.url, {timeout = opts.timeout})
end

function ws.request(w, target, opts)
  local ok, err = w:send(opts.text)
  if not ok then return nil, err end
  local msg, rerr = w:receive(opts.timeout)
  if not msg then return nil, rerr end
  return true
end

local PROTOCOLS = {tcp = tcp, http = http, ws = ws}

-- ---- a connection, and a thread's share of them ---------------------------------------

local function close(conn)
  if conn then
    if conn.abort then conn:abort() else conn:close() end
  end
end

-- One connection's loop until `deadline` (time.monotonic()).
local function connection(proto, target, opts, st, deadline)
  local conn
  while time.monotonic() < deadline do
    if not conn then
      local err
      conn, err = proto.connect(target, opts)
      if not conn then
        stats.error(st, M.kind(err))
        task.sleep(0.05) -- a refused port answers at once: do not spin
      end
    end
    if conn then
      local started = time.monotonic()
      local ok, status, again = proto.request(conn, target, opts)
      if not ok then
        local kind = M.kind(status)
        if kind == "closed" and proto.was_reset and proto.was_reset(conn) then kind = "reset" end
        stats.error(st, kind)
        close(conn)
        conn = nil
      else
        if status and status ~= true then
          stats.status(st, status)
          if status >= 400 then stats.error(st, "bad status") end
        end
        stats.add(st, time.monotonic() - started)
        if again then
          close(conn)
          conn = nil
        end
      end
    end
  end
  close(conn)
end

-- `conns` connections as tasks of this thread, for opts.duration seconds;
-- returns the stats.
function M.run(target, conns, opts)
  local proto = PROTOCOLS[target.scheme]
  local st = stats.new()
  local deadline = time.monotonic() + opts.duration
  local handles = {}
  for i = 1, conns do
    handles[i] = task.spawn(connection, proto, target, opts, st, deadline)
  end
  for _, h in ipairs(handles) do
    local ok, err = h:join()
    if not ok then error(err, 0) end
  end
  return st
end

return M
