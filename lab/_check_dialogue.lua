-- _check_dialogue.lua: runs one dialogue of an exercise spec against the
-- server under test, for `netlua -m check` (lab/check.lua): each client is
-- a task with its own connection (TCP) or socket (UDP, datagrams) that
-- runs the steps in order. The first client that fails ends the others.
-- A client's received bytes wait in a buffer of its own, which holds at
-- most what the current step needs (expect: its length; expect_line: one
-- line of MAX_LINE bytes plus one read), whatever the server sends.
local socket = require "socket"
local task = require "task"
local time = require "time"
local specs = require "_check_spec"

local M = {}
local READ = 4096

-- ---- showing bytes -----------------------------------------------------------

local ESCAPES = {["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t", ['"'] = '\\"', ["\\"] = "\\\\"}

-- s quoted, with control bytes and bytes that are not UTF-8 escaped
-- ("\r\n", "\x00"), valid UTF-8 characters as they are; longer than
-- `limit` bytes (200) it is cut, saying how long it was.
function M.show(s, limit)
  limit = limit or 200
  local out, i, n = {}, 1, math.min(#s, limit)
  while i <= n do
    local c = s:sub(i, i)
    local b = c:byte()
    if ESCAPES[c] then
      out[#out + 1], i = ESCAPES[c], i + 1
    elseif b >= 0x20 and b < 0x7f then
      out[#out + 1], i = c, i + 1
    elseif b >= 0x80 and utf8.len(s, i, i) then
      local stop = utf8.offset(s, 2, i) - 1
      out[#out + 1], i = s:sub(i, stop), stop + 1
    else
      out[#out + 1], i = string.format("\\x%02x", b), i + 1
    end
  end
  local text = '"' .. table.concat(out) .. '"'
  if #s > n then text = text .. string.format(" ... (%d bytes in all)", #s) end
  return text
end

-- The column (in shown characters) where a and b first differ, counted in
-- the escaped form, or nil when one is a prefix of the other.
local function first_difference(a, b)
  for i = 1, math.min(#a, #b) do
    if a:byte(i) ~= b:byte(i) then return i end
  end
  return nil
end

-- How a step reads in a report: `expect_line "^%d+"`.
function M.describe(step, c)
  local arg = step.arg
  if type(arg) == "string" then arg = M.show(c and c:fill_in(arg) or arg, 60) end
  if step.action == "expect_close" or step.action == "sync" then return step.action end
  return step.action .. " " .. tostring(arg)
end

-- ---- a client's connection ------------------------------------------------------

local Client = {}
Client.__index = Client

-- Substitutes {i}, {n}, {port}, {host} in text.
function Client:fill_in(text)
  return (text:gsub("{(%a+)}", function(name)
    local v = self.vars[name]
    return v ~= nil and tostring(v) or nil
  end))
end

local function remaining(deadline)
  return math.max(0, deadline - time.monotonic())
end

-- Reads up to `max` more bytes into the buffer before `deadline`: true, or
-- false and "timeout" / "closed" / the socket's error.
function Client:read(max, deadline)
  if self.eof then return false, "closed" end
  self.sock:settimeout(remaining(deadline))
  local data, err = self.sock:recv(max)
  if not data then
    self.eof = err == "closed"
    return false, err
  end
  self.buf = self.buf .. data
  return true
end

-- The next datagram (UDP) before `deadline`, or nil and why.
function Client:datagram(deadline)
  self.sock:settimeout(remaining(deadline))
  return self.sock:receive()
end

-- Takes n bytes off the front of the buffer.
function Client:take(n)
  local head = self.buf:sub(1, n)
  self.buf = self.buf:sub(n + 1)
  return head
end

local function then_note(err, within)
  if err == "timeout" then return string.format("then nothing more within %g s", within) end
  if err == "closed" then return "then the server closed the connection" end
  return "then " .. tostring(err)
end

-- A failed step: what was expected, what came instead (raw bytes), and what
-- happened after that (a timeout, a close).
local function failure(expected, received, note, column)
  return {expected = expected, received = received, note = note, column = column}
end

-- ---- the steps over TCP ------------------------------------------------------------

local tcp = {}

function tcp.send(c, step, deadline)
  local data = c:fill_in(step.arg)
  c.sock:settimeout(remaining(deadline))
  local ok, err = c.sock:send(data)
  if not ok then return failure("to send " .. M.show(data), nil, "the send failed: " .. err) end
end

function tcp.expect(c, step, deadline)
  local want = c:fill_in(step.arg)
  while true do
    local have = c.buf:sub(1, #want)
    if have ~= want:sub(1, #have) then
      c:take(#want)
      return failure(M.show(want), have, nil, first_difference(have, want))
    end
    if #have == #want then
      c:take(#want)
      return nil
    end
    local ok, err = c:read(#want - #c.buf, deadline)
    if not ok then return failure(M.show(want), c:take(#want), then_note(err, step.within)) end
  end
end

-- Reads the next line (its end, "\n" or "\r\n", cut off): the line and
-- its raw bytes, or nil, the bytes read so far and why it stopped. The
-- bytes before the server closes the connection are a last line too (the
-- time server sends the date without a line end), as Python's readline.
local function next_line(c, deadline, within)
  while true do
    local nl = c.buf:find("\n", 1, true)
    if nl then
      local raw = c:take(nl)
      return raw:gsub("\r?\n$", ""), raw
    end
    if #c.buf > specs.MAX_LINE then
      return nil, c:take(#c.buf), string.format("no line end within %d bytes", specs.MAX_LINE)
    end
    local ok, err = c:read(READ, deadline)
    if not ok and err == "closed" and #c.buf > 0 then
      local raw = c:take(#c.buf)
      return raw, raw
    end
    if not ok then return nil, c:take(#c.buf), then_note(err, within) end
  end
end

-- The lines a `skip` step passed over: how many, and the last few (kept
-- for the report; a server flooding lines cannot grow the list).
local KEEP_SKIPPED = 5

local function skip_line(skipped, raw)
  skipped.count = skipped.count + 1
  table.insert(skipped, raw)
  if #skipped > KEEP_SKIPPED then table.remove(skipped, 1) end
end

local function skipped_text(skipped)
  local before = skipped.count - #skipped
  local prefix = before > 0 and string.format("(%d lines skipped before these) ", before) or ""
  return prefix, table.concat(skipped)
end

function tcp.expect_line(c, step, deadline)
  local pattern = c:fill_in(step.arg)
  local expected = "a line matching " .. M.show(pattern)
  local skipped = {count = 0}
  while true do
    local line, raw, why = next_line(c, deadline, step.within)
    if not line then
      if #skipped == 0 then return failure(expected, raw, why) end
      local prefix, text = skipped_text(skipped)
      return failure(expected, text .. raw, prefix .. "none matched; " .. why)
    end
    if line:find(pattern) then return nil end
    if not step.skip then return failure(expected, raw) end
    skip_line(skipped, raw)
  end
end

function tcp.expect_bytes(c, step, deadline)
  while #c.buf < step.arg do
    local ok, err = c:read(step.arg - #c.buf, deadline)
    if not ok then
      return failure(string.format("%d bytes", step.arg), c:take(#c.buf), then_note(err, step.within))
    end
  end
  c:take(step.arg)
end

function tcp.expect_close(c, step, deadline)
  local expected = "the server to close the connection"
  if #c.buf > 0 then return failure(expected, c:take(#c.buf)) end
  local ok, err = c:read(READ, deadline)
  if ok then return failure(expected, c:take(#c.buf)) end
  if err == "closed" or err == "connection reset by peer" then return nil end
  if err == "timeout" then
    return failure(expected, nil, string.format("still open after %g s", step.within))
  end
  return failure(expected, nil, err)
end

function tcp.connect(c, host, port, within)
  local sock = socket.tcp()
  sock:settimeout(within)
  local ok, err = sock:connect(host, port)
  if not ok then
    sock:close()
    return failure("a connection to " .. host .. ":" .. port, nil, err)
  end
  c.sock = sock
end

-- ---- the steps over UDP (each expect reads one datagram) ---------------------

local udp = {send = tcp.send}

-- The next datagram for an expect step, or nil and its failure.
local function next_datagram(c, step, deadline, expected)
  local data, err = c:datagram(deadline)
  if data then return data end
  if err == "timeout" then
    return nil, failure(expected, nil, string.format("no datagram within %g s", step.within))
  end
  return nil, failure(expected, nil, err)
end

function udp.expect(c, step, deadline)
  local want = c:fill_in(step.arg)
  local data, fail = next_datagram(c, step, deadline, "a datagram " .. M.show(want))
  if not data then return fail end
  if data ~= want then
    return failure("a datagram " .. M.show(want), data, nil, first_difference(data, want) or
      math.min(#data, #want) + 1)
  end
end

function udp.expect_line(c, step, deadline)
  local pattern = c:fill_in(step.arg)
  local expected = "a datagram matching " .. M.show(pattern)
  local skipped = {count = 0}
  while true do
    local data, fail = next_datagram(c, step, deadline, expected)
    if not data then
      if #skipped == 0 then return fail end
      local prefix, text = skipped_text(skipped)
      return failure(expected, text, prefix .. "none matched; " .. fail.note)
    end
    if data:gsub("\r?\n$", ""):find(pattern) then return nil end
    if not step.skip then return failure(expected, data) end
    skip_line(skipped, data)
  end
end

function udp.expect_bytes(c, step, deadline)
  local expected = string.format("a datagram of %d bytes", step.arg)
  local data, fail = next_datagram(c, step, deadline, expected)
  if not data then return fail end
  if #data ~= step.arg then return failure(expected, data, string.format("%d bytes", #data)) end
end

function udp.connect(c, host, port)
  local sock = socket.udp()
  local ok, err = sock:setpeername(host, port)
  if not ok then
    sock:close()
    return failure("a UDP socket for " .. host .. ":" .. port, nil, err)
  end
  c.sock = sock
end

-- ---- a dialogue ---------------------------------------------------------------------

-- Waits at sync step k until every client that still runs has come.
local function sync(run, k, step)
  run.arrived[k] = (run.arrived[k] or 0) + 1
  local deadline = time.monotonic() + step.within
  while run.arrived[k] < run.clients do
    if time.monotonic() > deadline then
      return failure(string.format("all %d clients at this step", run.clients), nil,
        string.format("%d came within %g s", run.arrived[k], step.within))
    end
    task.sleep(0.005)
  end
end

-- Runs one step for client c: nil, or its failure.
local function run_step(run, c, k, step)
  if step.only and not step.only[c.vars.i] then return nil end
  if step.action == "sleep" then return task.sleep(step.arg) end
  if step.action == "sync" then return sync(run, k, step) end
  local deadline = time.monotonic() + (step.within or specs.DEFAULT_WITHIN)
  return run.kind[step.action](c, step, deadline)
end

-- Client i of the dialogue: connects, then runs the steps. Returns nil, or
-- its failure (with .client and .step set).
local function run_client(run, i)
  local c = setmetatable({buf = "", vars = {i = i, n = run.clients, port = run.port,
    host = run.host}}, Client)
  local fail = run.kind.connect(c, run.host, run.port, run.dialogue.within)
  if fail then
    fail.client, fail.step = i, 0
    return fail
  end
  local sock <close> = c.sock
  for k, step in ipairs(run.dialogue.steps) do
    fail = run_step(run, c, k, step)
    if fail then
      fail.client, fail.step, fail.what = i, k, M.describe(step, c)
      return fail
    end
  end
end

-- Runs `dialogue` against host:port (udp: datagrams). Returns nil when it
-- passed, else the first client's failure (a table: client, step, what,
-- expected, received, note, column) and how many clients failed.
function M.run(dialogue, host, port, udp_mode)
  local run = {dialogue = dialogue, host = host, port = port, clients = dialogue.clients,
    arrived = {}, kind = udp_mode and udp or tcp}
  local handles, failures = {}, {}
  for i = 1, dialogue.clients do
    handles[i] = task.spawn(function()
      local fail = run_client(run, i)
      if fail then
        failures[#failures + 1] = fail
        if #failures == 1 then -- the first failure ends the other clients
          for j, h in ipairs(handles) do
            if j ~= i then h:cancel() end
          end
        end
      end
    end)
  end
  for _, h in ipairs(handles) do
    local ok, err = h:join()
    if ok == false and err ~= "cancelled" then error(err, 0) end
  end
  return failures[1], #failures
end

return M
