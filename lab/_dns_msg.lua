-- _dns_msg.lua: DNS messages (RFC 1035 section 4) for `netlua -m dns`: a
-- query's bytes, and an answer's header and records read back. Reading is
-- bounded: every read checks the message's length, a name is at most 255
-- bytes and follows at most 64 compression pointers, so a hostile answer
-- (a pointer loop, a cut-off packet) is an error, never a hang.
local M = {}

M.TYPES = {A = 1, NS = 2, CNAME = 5, SOA = 6, PTR = 12, MX = 15, TXT = 16,
  AAAA = 28, SRV = 33, ANY = 255}
M.TYPE_NAMES = {}
for name, code in pairs(M.TYPES) do M.TYPE_NAMES[code] = name end

M.RCODES = {[0] = "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED"}

local MAX_NAME, MAX_POINTERS = 255, 64

-- ---- writing ----------------------------------------------------------------

-- The wire form of a name ("example.com" or "example.com."), or nil and why.
function M.encode_name(name)
  if name == "." then return "\0" end
  name = name:gsub("%.$", "")
  local parts = {}
  for label in (name .. "."):gmatch("([^.]*)%.") do
    if label == "" then return nil, "empty label in '" .. name .. "'" end
    if #label > 63 then return nil, "label longer than 63 bytes in '" .. name .. "'" end
    parts[#parts + 1] = string.char(#label) .. label
  end
  local wire = table.concat(parts) .. "\0"
  if #wire > MAX_NAME then return nil, "name longer than 255 bytes" end
  return wire
end

-- A query for `name` of `qtype` (a number), recursion desired: its bytes,
-- or nil and why.
function M.query(id, name, qtype)
  local wire, err = M.encode_name(name)
  if not wire then return nil, err end
  return string.pack(">I2I2I2I2I2I2", id, 0x0100, 1, 0, 0, 0) .. wire .. string.pack(">I2I2", qtype, 1)
end

-- The name PTR looks up for an address ("1.2.0.192.in-addr.arpa"), or nil
-- when `s` is not one.
function M.reverse_name(s)
  local a, b, c, d = s:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  if a then return string.format("%s.%s.%s.%s.in-addr.arpa", d, c, b, a) end
  if not s:find(":", 1, true) then return nil end
  local head, tail = s:match("^([%x:]*)::([%x:]*)$")
  local groups = {}
  local function add(part)
    for g in part:gmatch("[^:]+") do groups[#groups + 1] = g end
  end
  if head then
    add(head)
    local right = {}
    for g in tail:gmatch("[^:]+") do right[#right + 1] = g end
    for _ = 1, 8 - #groups - #right do groups[#groups + 1] = "0" end
    for _, g in ipairs(right) do groups[#groups + 1] = g end
  else
    add(s)
  end
  if #groups ~= 8 then return nil end
  local nibbles = {}
  for i = 8, 1, -1 do
    local g = groups[i]
    if #g > 4 or not g:match("^%x+$") then return nil end
    g = string.rep("0", 4 - #g) .. g:lower()
    for j = 4, 1, -1 do nibbles[#nibbles + 1] = g:sub(j, j) end
  end
  return table.concat(nibbles, ".") .. ".ip6.arpa"
end

-- ---- reading ----------------------------------------------------------------

-- Raised (as a table, caught by M.parse) when the message is not sound.
local function bad(fmt, ...)
  error({dns_bad = string.format(fmt, ...)}, 0)
end

local function need(msg, pos, n)
  if pos + n - 1 > #msg then bad("truncated message (%d bytes)", #msg) end
end

-- The name at `pos`, following compression pointers; returns it (dotted,
-- ending in ".") and the position after it where it began.
local function read_name(msg, pos)
  local labels, length, after, jumps = {}, 0, nil, 0
  while true do
    need(msg, pos, 1)
    local len = msg:byte(pos)
    if len >= 0xC0 then
      need(msg, pos, 2)
      jumps = jumps + 1
      if jumps > MAX_POINTERS then bad("compression pointers loop") end
      after = after or pos + 2
      pos = ((len & 0x3F) << 8 | msg:byte(pos + 1)) + 1
    elseif len >= 0x40 then
      bad("unknown label type 0x%02x", len)
    elseif len == 0 then
      local name = table.concat(labels, ".") .. "."
      return name, after or pos + 1
    else
      need(msg, pos + 1, len)
      length = length + len + 1
      if length > MAX_NAME then bad("name longer than 255 bytes") end
      labels[#labels + 1] = msg:sub(pos + 1, pos + len):gsub("[^%w%-_*]", function(c)
        return string.format("\\%03d", c:byte())
      end)
      pos = pos + 1 + len
    end
  end
end

-- An IPv6 address as RFC 5952 writes it: the longest run of two or more
-- zero groups (the first of equals) becomes "::".
local function ipv6_text(raw)
  local groups, best_at, best_len, run_at = {}, nil, 1, nil
  for i = 1, 8 do
    groups[i] = string.unpack(">I2", raw, 2 * i - 1)
    if groups[i] == 0 then
      run_at = run_at or i
      if i - run_at + 1 > best_len then best_at, best_len = run_at, i - run_at + 1 end
    else
      run_at = nil
    end
  end
  local function hex(from, to)
    local t = {}
    for i = from, to do t[#t + 1] = string.format("%x", groups[i]) end
    return table.concat(t, ":")
  end
  if not best_at then return hex(1, 8) end
  return hex(1, best_at - 1) .. "::" .. hex(best_at + best_len, 8)
end

local function txt_text(msg, pos, stop)
  local parts = {}
  while pos < stop do
    local len = msg:byte(pos)
    need(msg, pos + 1, len)
    if pos + len > stop - 1 then bad("TXT string runs past its record") end
    parts[#parts + 1] = string.format("%q", msg:sub(pos + 1, pos + len))
    pos = pos + 1 + len
  end
  return table.concat(parts, " ")
end

-- The record data as text (dig's presentation form), by type.
local function rdata_text(msg, rtype, pos, len)
  local stop = pos + len
  if rtype == 1 and len == 4 then
    return string.format("%d.%d.%d.%d", msg:byte(pos, pos + 3))
  elseif rtype == 28 and len == 16 then
    return ipv6_text(msg:sub(pos, pos + 15))
  elseif rtype == 2 or rtype == 5 or rtype == 12 then
    return (read_name(msg, pos))
  elseif rtype == 15 and len >= 3 then
    return string.format("%d %s", string.unpack(">I2", msg, pos), (read_name(msg, pos + 2)))
  elseif rtype == 16 then
    return txt_text(msg, pos, stop)
  elseif rtype == 33 and len >= 7 then
    local prio, weight, port = string.unpack(">I2I2I2", msg, pos)
    return string.format("%d %d %d %s", prio, weight, port, (read_name(msg, pos + 6)))
  elseif rtype == 6 then
    local mname, p = read_name(msg, pos)
    local rname, q = read_name(msg, p)
    need(msg, q, 20)
    return string.format("%s %s %d %d %d %d %d", mname, rname, string.unpack(">I4I4I4I4I4", msg, q))
  end
  return string.format("\\# %d %s", len, (msg:sub(pos, stop - 1):gsub(".", function(c)
    return string.format("%02x", c:byte())
  end)))
end

local function read_record(msg, pos)
  local name, p = read_name(msg, pos)
  need(msg, p, 10)
  local rtype, class, ttl, len = string.unpack(">I2I2I4I2", msg, p)
  p = p + 10
  need(msg, p, len)
  local record = {name = name, type = M.TYPE_NAMES[rtype] or ("TYPE" .. rtype),
    class = class, ttl = ttl, data = rdata_text(msg, rtype, p, len)}
  return record, p + len
end

local function parse(msg)
  need(msg, 1, 12)
  local id, flags, qd, an, ns, ar = string.unpack(">I2I2I2I2I2I2", msg)
  local m = {id = id, qr = flags & 0x8000 ~= 0, tc = flags & 0x0200 ~= 0,
    rcode = flags & 0xF, questions = {}, answers = {}, authority = {}}
  m.rcode_name = M.RCODES[m.rcode] or ("RCODE" .. m.rcode)
  if m.tc then return m end -- the rest may be cut anywhere: ask again over TCP
  local pos = 13
  for _ = 1, qd do
    local name, p = read_name(msg, pos)
    need(msg, p, 4)
    local qtype = string.unpack(">I2", msg, p)
    m.questions[#m.questions + 1] = {name = name, type = qtype}
    pos = p + 4
  end
  for _, section in ipairs{{an, m.answers}, {ns, m.authority}} do
    for _ = 1, section[1] do
      section[2][#section[2] + 1], pos = read_record(msg, pos)
    end
  end
  m.additional = ar
  return m
end

-- The message in `msg` read: {id, qr, tc, rcode, rcode_name, questions,
-- answers, authority} (records are {name, type, class, ttl, data}), or nil
-- and what is wrong with it. A truncated (TC) message carries its header
-- only.
function M.parse(msg)
  local ok, m = pcall(parse, msg)
  if ok then return m end
  if type(m) == "table" and m.dns_bad then return nil, m.dns_bad end
  error(m, 0)
end

return M
