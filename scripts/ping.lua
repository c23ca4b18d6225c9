-- ping.lua: ICMP echo (IPv4) and ICMPv6 echo (IPv6) over a raw socket,
-- printing round-trip times as ping does. Raw sockets need root or
-- CAP_NET_RAW; without them it falls back to an unprivileged ICMP datagram
-- socket when the system allows one (net.ipv4.ping_group_range).
--   netlua scripts/ping.lua [host] [-c count] [-i interval] [-4 | -6]
-- host defaults to 127.0.0.1, count to 4, interval to 1 second; a name is
-- pinged at the first address it resolves to (-4, -6: of that family).
local socket = require "socket"
local cli = require "cli"

local opts = cli.parse({...}, {
  usage = "netlua scripts/ping.lua [host] [-c count] [-i interval] [-4 | -6]",
  help = "Sends ICMP echo requests (ICMPv6 for IPv6) and prints the round-trip times.\n" ..
    "Needs root or CAP_NET_RAW, or ICMP datagram sockets (net.ipv4.ping_group_range).\n\n" ..
    "  host                   the name or address to ping (default 127.0.0.1)\n" ..
    "  -c N, --count N        send N requests (default 4)\n" ..
    "  -i S, --interval S     wait S seconds between requests (default 1)\n" ..
    "  -4, --ipv4, -6, --ipv6 use an address of that family only\n",
  args = {{"host", "host", "127.0.0.1"}},
  options = {count = {"count", 4}, interval = {"seconds", 1},
    ipv4 = {"switch", false}, ipv6 = {"switch", false}},
  short = {c = "count", i = "interval", ["4"] = "ipv4", ["6"] = "ipv6"},
})
if opts.ipv4 and opts.ipv6 then
  cli.usage_error({usage = "netlua scripts/ping.lua [host] [-c count] [-i interval] [-4 | -6]"},
    "-4 and -6 exclude each other")
end

-- What differs between the two families: the socket's names, the echo
-- types, and whether reads carry the IP header (IPv4 raw sockets only).
local FAMILY = {
  inet = {protocol = "icmp", request = 8, reply = 0, header = true},
  inet6 = {protocol = "icmpv6", request = 128, reply = 129, header = false},
}

-- The Internet checksum (RFC 1071) of a string.
local function checksum(data)
  if #data % 2 == 1 then data = data .. "\0" end
  local sum = 0
  for i = 1, #data, 2 do sum = sum + string.unpack(">I2", data, i) end
  while sum > 0xffff do sum = (sum & 0xffff) + (sum >> 16) end
  return ~sum & 0xffff
end

-- An echo request. ICMPv6's checksum covers a pseudo-header with both
-- addresses, so the kernel computes it (it does for raw ICMPv6 sockets).
local function echo_request(fam, id, seq)
  local payload = string.pack(">d", socket.gettime()) .. string.rep("Q", 48)
  local header = string.pack(">BBI2I2I2", fam.request, 0, 0, id, seq)
  local sum = fam == FAMILY.inet and checksum(header .. payload) or 0
  return string.pack(">BBI2I2I2", fam.request, 0, sum, id, seq) .. payload
end

-- Parses a reply: type, id, seq, ttl (IPv4 raw sockets only: the IP header
-- holds it) and the ICMP part's length.
local function parse_reply(packet, fam, raw)
  local ttl
  if raw and fam.header then
    local ihl = (packet:byte(1) & 0x0f) * 4
    ttl = packet:byte(9)
    packet = packet:sub(ihl + 1)
  end
  if #packet < 8 then return nil end
  local kind, _, _, id, seq = string.unpack(">BBI2I2I2", packet)
  return kind, id, seq, ttl, #packet
end

-- A raw socket, else an ICMP datagram one; exits 1 saying why neither.
local function open_socket(family, ip)
  local fam = FAMILY[family]
  local sock, err = socket.raw(family, fam.protocol)
  if sock then return sock, true end
  local dgram, derr = socket.raw(family, fam.protocol, "dgram")
  if dgram then return dgram, false end
  cli.fail("cannot ping %s: %s; and %s", ip, err, derr)
end

-- The address to ping: host itself when it is one, else the first address
-- it resolves to (of the family asked for).
local function resolve(host)
  local infos, err, why = socket.dns.getaddrinfo(host)
  if not infos then cli.fail("cannot resolve %s: %s", host, cli.reason(err, why)) end
  for _, info in ipairs(infos) do
    if (info.family == "inet" and not opts.ipv6) or (info.family == "inet6" and not opts.ipv4) then
      return info.addr, info.family
    end
  end
  cli.fail("%s has no %s address", host, opts.ipv4 and "IPv4" or "IPv6")
end

-- Waits for the reply to `seq` until `deadline`; returns bytes, ttl or nil.
local function await_reply(sock, fam, raw, id, seq, deadline)
  while true do
    local left = deadline - socket.gettime()
    if left <= 0 then return nil end
    sock:settimeout(left)
    local packet = sock:receivefrom()
    if not packet then return nil end
    local kind, rid, rseq, ttl, size = parse_reply(packet, fam, raw)
    if kind == fam.reply and rseq == seq and (rid == id or not raw) then return size, ttl end
  end
end

io.stdout:setvbuf("line")
local ip, family = resolve(opts.host)
local fam = FAMILY[family]
local sock, raw = open_socket(family, ip)
local id = math.random(1, 0xffff)
print(string.format("PING %s (%s): 56 data bytes%s", opts.host, ip,
  raw and "" or " (icmp datagram socket)"))
local sent, received, times = 0, 0, {}
for seq = 1, opts.count do
  local start = socket.gettime()
  local ok, err = sock:sendto(echo_request(fam, id, seq), ip)
  sent = sent + 1
  if not ok then print(string.format("send to %s failed: %s", ip, err)) end
  local size, ttl = await_reply(sock, fam, raw, id, seq, start + 1)
  if size then
    local ms = (socket.gettime() - start) * 1000
    received = received + 1
    times[#times + 1] = ms
    print(string.format("%d bytes from %s: icmp_seq=%d%s time=%.3f ms", size, ip, seq,
      ttl and (" ttl=" .. ttl) or "", ms))
  else
    print(string.format("no reply from %s: icmp_seq=%d", ip, seq))
  end
  if seq < opts.count then socket.sleep(math.max(0, opts.interval - (socket.gettime() - start))) end
end
sock:close()
print(string.format("--- %s ping statistics ---", opts.host))
print(string.format("%d packets transmitted, %d received, %d%% packet loss", sent, received,
  math.floor((sent - received) * 100 / sent)))
if #times > 0 then
  local min, max, sum = math.huge, 0, 0
  for _, t in ipairs(times) do min, max, sum = math.min(min, t), math.max(max, t), sum + t end
  print(string.format("rtt min/avg/max = %.3f/%.3f/%.3f ms", min, sum / #times, max))
end
os.exit(received > 0 and 0 or 1)
