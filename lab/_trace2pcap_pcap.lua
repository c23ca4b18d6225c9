-- _trace2pcap_pcap.lua: the bytes of a pcap file for trace2pcap: IPv4 and
-- IPv6 packets carrying TCP segments and UDP datagrams, with their
-- checksums, in a file of link type LINKTYPE_RAW (101: each packet starts
-- at its IP header; tcpdump and Wireshark tell v4 from v6 by its first
-- nibble). Plain Lua, no sockets.
local M = {}

M.TCP_FIN, M.TCP_SYN, M.TCP_RST, M.TCP_PSH, M.TCP_ACK = 0x01, 0x02, 0x04, 0x08, 0x10
local PROTO_TCP, PROTO_UDP = 6, 17
local LINKTYPE_RAW = 101

-- ---- addresses ------------------------------------------------------------

-- The 16 bytes of an IPv6 address in text ("::1", "fe80::1:2",
-- "::ffff:127.0.0.1"), or nil.
local function ipv6_bytes(text)
  local head, tail = text:match("^(.-)::(.*)$")
  local groups, v4 = {}, nil
  local function split(s, into)
    if s == "" then return true end
    for g in (s .. ":"):gmatch("([^:]*):") do
      if g:match("^%d+%.%d+%.%d+%.%d+$") then v4 = g
      elseif g:match("^%x%x?%x?%x?$") then into[#into + 1] = tonumber(g, 16)
      else return false end
    end
    return true
  end
  local left, right = {}, {}
  if not split(head or text, left) or (head and not split(tail, right)) then return nil end
  local v4bytes = v4 and M.ipv4_bytes(v4)
  if v4 and not v4bytes then return nil end
  local want = 8 - (v4 and 2 or 0)
  local fill = want - #left - #right
  if (head and fill < 0) or (not head and fill ~= 0) then return nil end
  for _, g in ipairs(left) do groups[#groups + 1] = g end
  for _ = 1, fill do groups[#groups + 1] = 0 end
  for _, g in ipairs(right) do groups[#groups + 1] = g end
  return string.pack(">" .. string.rep("I2", #groups), table.unpack(groups)) .. (v4bytes or "")
end

-- The 4 bytes of a dotted IPv4 address, or nil.
function M.ipv4_bytes(text)
  local a, b, c, d = text:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  if not a then return nil end
  local parts = {tonumber(a), tonumber(b), tonumber(c), tonumber(d)}
  for _, p in ipairs(parts) do if p > 255 then return nil end end
  return string.char(table.unpack(parts))
end

-- "127.0.0.1:6789" or "[::1]:6789" as {ip = bytes, port = n, v6 = bool,
-- text = ...}, or nil when it is no IP endpoint (a Unix path, "?").
function M.endpoint(text)
  local host, port = text:match("^%[(.+)%]:(%d+)$")
  local v6 = host ~= nil
  if not v6 then host, port = text:match("^([%d.]+):(%d+)$") end
  port = tonumber(port)
  if not host or not port or port > 65535 then return nil end
  local ip = v6 and ipv6_bytes(host) or (not v6 and M.ipv4_bytes(host))
  if not ip then return nil end
  return {ip = ip, port = port, v6 = v6, text = text, host = host}
end

-- ---- checksums and headers ------------------------------------------------

-- The Internet checksum (RFC 1071) of the concatenated strings.
local function checksum(...)
  local s = table.concat({...})
  if #s % 2 == 1 then s = s .. "\0" end
  local sum = 0
  for i = 1, #s - 1, 2 do
    local hi, lo = s:byte(i, i + 1)
    sum = sum + hi * 256 + lo
  end
  while sum > 0xffff do sum = (sum & 0xffff) + (sum >> 16) end
  return ~sum & 0xffff
end

local ip_id = 0

-- The IP header (v4 or v6 as src is) for `len` bytes of `proto` payload.
local function ip_header(src, dst, proto, len)
  if src.v6 then
    return string.pack(">I4I2BB", 0x60000000, len, proto, 64) .. src.ip .. dst.ip
  end
  ip_id = (ip_id + 1) & 0xffff
  local h = string.pack(">BBI2I2I2BBI2", 0x45, 0, 20 + len, ip_id, 0x4000, 64, proto, 0)
    .. src.ip .. dst.ip
  return h:sub(1, 10) .. string.pack(">I2", checksum(h)) .. h:sub(13)
end

-- The pseudo-header the TCP and UDP checksums cover.
local function pseudo(src, dst, proto, len)
  if src.v6 then return src.ip .. dst.ip .. string.pack(">I4xxxB", len, proto) end
  return src.ip .. dst.ip .. string.pack(">xBI2", proto, len)
end

-- `header` (its checksum field, at `at`, zero) with the checksum filled in.
local function with_checksum(header, at, payload, src, dst, proto)
  local sum = checksum(pseudo(src, dst, proto, #header + #payload), header, payload)
  if proto == PROTO_UDP and sum == 0 then sum = 0xffff end
  return header:sub(1, at - 1) .. string.pack(">I2", sum) .. header:sub(at + 2)
end

-- An IP packet carrying one TCP segment: seg = {seq, ack, flags, data}.
function M.tcp_packet(src, dst, seg)
  local data = seg.data or ""
  local h = string.pack(">I2I2I4I4BBI2I2I2", src.port, dst.port, seg.seq & 0xffffffff,
    seg.ack & 0xffffffff, 5 << 4, seg.flags, 65535, 0, 0)
  h = with_checksum(h, 17, data, src, dst, PROTO_TCP)
  return ip_header(src, dst, PROTO_TCP, #h + #data) .. h .. data
end

-- An IP packet carrying one UDP datagram.
function M.udp_packet(src, dst, data)
  local h = string.pack(">I2I2I2I2", src.port, dst.port, 8 + #data, 0)
  h = with_checksum(h, 7, data, src, dst, PROTO_UDP)
  return ip_header(src, dst, PROTO_UDP, #h + #data) .. h .. data
end

-- The most payload one packet carries (an IPv4 packet is at most 65,535
-- bytes, headers included).
M.PAYLOAD_MAX = 65000

-- ---- the file -------------------------------------------------------------

-- The file's header: microsecond timestamps, raw IP packets.
function M.file_header()
  return string.pack("<I4I2I2i4I4I4I4", 0xa1b2c3d4, 2, 4, 0, 0, 262144, LINKTYPE_RAW)
end

-- One record: a packet at `t` seconds since 1970 (the trace's own clock:
-- seconds since the traced program started).
function M.record(t, packet)
  local sec = math.floor(t)
  local usec = math.floor((t - sec) * 1e6 + 0.5)
  if usec >= 1000000 then sec, usec = sec + 1, usec - 1000000 end
  return string.pack("<I4I4I4I4", sec, usec, #packet, #packet) .. packet
end

return M
