-- ping.lua: ICMP echo over a raw socket, printing round-trip times as ping
-- does. Raw sockets need root or CAP_NET_RAW; without them it falls back to
-- an unprivileged ICMP datagram socket when the system allows one.
--   netlua scripts/ping.lua [host] [-c count] [-i interval]
-- host defaults to 127.0.0.1 (IPv4 only), count to 4, interval to 1 second.
local socket = require "socket"

local function parse_args(args)
  local opts, i = {host = "127.0.0.1", count = 4, interval = 1}, 1
  while i <= #args do
    local a = args[i]
    if a == "-c" then opts.count = tonumber(args[i + 1]); i = i + 1
    elseif a == "-i" then opts.interval = tonumber(args[i + 1]); i = i + 1
    else opts.host = a end
    i = i + 1
  end
  if not opts.count or not opts.interval then
    io.stderr:write("usage: netlua scripts/ping.lua [host] [-c count] [-i interval]\n")
    os.exit(2)
  end
  return opts
end

-- The Internet checksum (RFC 1071) of a string.
local function checksum(data)
  if #data % 2 == 1 then data = data .. "\0" end
  local sum = 0
  for i = 1, #data, 2 do sum = sum + string.unpack(">I2", data, i) end
  while sum > 0xffff do sum = (sum & 0xffff) + (sum >> 16) end
  return ~sum & 0xffff
end

local function echo_request(id, seq)
  local payload = string.pack(">d", socket.gettime()) .. string.rep("Q", 48)
  local header = string.pack(">BBI2I2I2", 8, 0, 0, id, seq)
  local sum = checksum(header .. payload)
  return string.pack(">BBI2I2I2", 8, 0, sum, id, seq) .. payload
end

-- Parses a reply: type, id, seq, ttl (nil for datagram sockets) and the
-- ICMP part's length. Raw IPv4 sockets deliver the IP header too.
local function parse_reply(packet, raw)
  local ttl
  if raw then
    local ihl = (packet:byte(1) & 0x0f) * 4
    ttl = packet:byte(9)
    packet = packet:sub(ihl + 1)
  end
  if #packet < 8 then return nil end
  local kind, _, _, id, seq = string.unpack(">BBI2I2I2", packet)
  return kind, id, seq, ttl, #packet
end

local function open_socket()
  local sock, err = socket.raw("inet", "icmp")
  if sock then return sock, true end
  local dgram = socket.raw("inet", "icmp", "dgram")
  if dgram then return dgram, false end
  io.stderr:write("netlua: cannot ping: ", err, "\n")
  os.exit(1)
end

local function resolve(host)
  local ip, err = socket.dns.toip(host)
  if not ip then
    io.stderr:write(string.format("netlua: cannot resolve %s: %s\n", host, err))
    os.exit(1)
  end
  return ip
end

-- Waits for the reply to `seq` until `deadline`; returns bytes, ttl or nil.
local function await_reply(sock, raw, id, seq, deadline)
  while true do
    local left = deadline - socket.gettime()
    if left <= 0 then return nil end
    sock:settimeout(left)
    local packet = sock:receivefrom()
    if not packet then return nil end
    local kind, rid, rseq, ttl, size = parse_reply(packet, raw)
    if kind == 0 and rseq == seq and (rid == id or not raw) then return size, ttl end
  end
end

local opts = parse_args({...})
io.stdout:setvbuf("line")
local ip = resolve(opts.host)
local sock, raw = open_socket()
local id = math.random(1, 0xffff)
print(string.format("PING %s (%s): 56 data bytes%s", opts.host, ip, raw and "" or " (icmp datagram socket)"))
local sent, received, times = 0, 0, {}
for seq = 1, opts.count do
  local start = socket.gettime()
  local ok, err = sock:sendto(echo_request(id, seq), ip)
  sent = sent + 1
  if not ok then print(string.format("send failed: %s", err)) end
  local size, ttl = await_reply(sock, raw, id, seq, start + 1)
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
