-- netlua -m trace2pcap: turn a --trace=jsonl --trace-data trace into a pcap file for tcpdump/Wireshark
--
-- Reads the trace's lines in order and writes the packets they imply: per
-- TCP connection a three-way handshake (at its connect or accept), its
-- bytes as segments with sequence and acknowledgement numbers counted from
-- the recorded sends and receives, a FIN in each direction where a side
-- shut down or closed (or the other side saw its end of stream, or its
-- close says the peer ended first), a SYN and
-- RST for a refused connect; each UDP datagram as it was. A connection or
-- datagram whose both ends are in the trace (client and server in one
-- process) is written once: the bytes a send listed are not listed again by
-- the receive that got them.
local cli = require "cli"
local json = require "json"
local pcap = require "_trace2pcap_pcap"

local spec = {
  usage = "netlua -m trace2pcap TRACE.jsonl OUT.pcap",
  help = [[
Turns a trace taken with `netlua --trace=jsonl --trace-data --trace-file
TRACE.jsonl script.lua` into OUT.pcap (raw IP link type), for
`tcpdump -r OUT.pcap -nn -A` or Wireshark. TCP handshakes are synthetic;
packet times are the trace's (seconds since the traced program started,
shown as times on 1970-01-01). HTTP client (libcurl) and TLS lines carry
no socket bytes and are left out.
]],
  args = {{"trace", "text"}, {"out", "text"}},
}

local SEQ_CLIENT, SEQ_SERVER = 1000, 5000 -- initial sequence numbers

-- ---- the packets written so far ----------------------------------------------

local out = {records = {}, packets = 0, tcp = 0, udp = 0, filled = 0}

local function emit(t, packet)
  out.records[#out.records + 1] = pcap.record(t, packet)
  out.packets = out.packets + 1
end

-- ---- where a line came from -----------------------------------------------

local where = {path = "", line = 0}

local function bad(fmt, ...)
  cli.fail("%s:%d: " .. fmt, where.path, where.line, ...)
end

-- The endpoints of an "ep" label, "tcp 127.0.0.1:40512 -> 127.0.0.1:6789":
-- proto, local, peer (nil when it names no IP peer). A wildcard local
-- address (an unconnected UDP socket bound to 0.0.0.0 or ::) is shown as
-- the peer's address when that is a loopback one, as the kernel picks it.
local function endpoints(ep)
  local proto, l, p = (ep or ""):match("^(%a+) (%S+) %-> (%S+)$")
  if not proto then return nil end
  local lo, pe = pcap.endpoint(l), pcap.endpoint(p)
  if not lo or not pe or lo.v6 ~= pe.v6 then return nil end
  if lo.host == "0.0.0.0" or lo.host == "::" then
    local loopback = pe.host:match("^127%.") or pe.host == "::1"
    if loopback then lo = pcap.endpoint((pe.v6 and "[%s]:%d" or "%s:%d"):format(pe.host, lo.port)) end
  end
  return proto, lo, pe
end

-- The bytes an I/O event carries (its hex, then zeros for the bytes the
-- trace cut), or a clear error when the trace has no data.
local function payload(ev)
  local n = math.tointeger(ev.bytes) or 0
  if n <= 0 then return "" end
  if type(ev.hex) ~= "string" then
    bad("'%s' of %d bytes without the bytes: take the trace with --trace-data " ..
      "(netlua --trace=jsonl --trace-data --trace-file F script.lua)", ev.ev, n)
  end
  if #ev.hex % 2 ~= 0 or ev.hex:find("[^%x]") then bad("'hex' is not hexadecimal") end
  local data = ev.hex:gsub("%x%x", function(h) return string.char(tonumber(h, 16)) end)
  if #data < n then
    out.filled = out.filled + (n - #data)
    data = data .. string.rep("\0", n - #data)
  end
  return data:sub(1, n)
end

-- ---- TCP ----------------------------------------------------------------------

-- A connection, under the key "A|B" for each direction. Per direction
-- (dirs[src.text]): next sequence number, bytes written, FIN written, and
-- per side how many bytes its sends and receives listed.
local conns = {}

local function dir_of(c, src) return c.dirs[src.text] end
local function other(c, src) return c.dirs[src.text].peer end

local function segment(t, c, src, flags, data)
  local d, o = dir_of(c, src), dir_of(c, other(c, src))
  emit(t, pcap.tcp_packet(src, other(c, src),
    {seq = d.seq, ack = flags & pcap.TCP_SYN ~= 0 and flags & pcap.TCP_ACK == 0 and 0 or o.seq,
     flags = flags, data = data}))
  d.seq = d.seq + #(data or "") + ((flags & (pcap.TCP_SYN | pcap.TCP_FIN)) ~= 0 and 1 or 0)
end

-- The connection between a and b (made, with its handshake, when new or
-- when the one before on the same addresses ended): `client` opened it.
local function connection(t, client, server)
  local key = client.text .. "|" .. server.text
  local c = conns[key]
  if c and not (c.dirs[client.text].fin and c.dirs[server.text].fin) then return c end
  c = {dirs = {
    [client.text] = {seq = SEQ_CLIENT, sent = 0, received = 0, written = 0, peer = server},
    [server.text] = {seq = SEQ_SERVER, sent = 0, received = 0, written = 0, peer = client},
  }}
  conns[key], conns[server.text .. "|" .. client.text] = c, c
  out.tcp = out.tcp + 1
  segment(t, c, client, pcap.TCP_SYN)
  segment(t, c, server, pcap.TCP_SYN | pcap.TCP_ACK)
  segment(t, c, client, pcap.TCP_ACK)
  return c
end

local function known(l, p)
  return conns[l.text .. "|" .. p.text]
end

-- Bytes from src, `counter` ("sent" by src or "received" from it by the
-- other side) now at its old value + #data: only those beyond what was
-- written already go out.
local function tcp_data(t, c, src, counter, data)
  local d = dir_of(c, src)
  local before = d[counter]
  d[counter] = before + #data
  local skip = d.written - before
  if skip >= #data then return end
  local new = data:sub(math.max(skip, 0) + 1)
  for i = 1, #new, pcap.PAYLOAD_MAX do
    segment(t, c, src, pcap.TCP_PSH | pcap.TCP_ACK, new:sub(i, i + pcap.PAYLOAD_MAX - 1))
  end
  d.written = d.written + #new
end

-- src ended its stream: FIN from it, and the other side's ACK.
local function tcp_fin(t, c, src)
  local d = dir_of(c, src)
  if d.fin then return end
  d.fin = true
  segment(t, c, src, pcap.TCP_FIN | pcap.TCP_ACK)
  segment(t, c, other(c, src), pcap.TCP_ACK)
end

local tcp_events = {
  connect = function(ev, l, p)
    if ev.result == "ok" then return connection(ev.t, l, p) end
    if ev.error == "ECONNREFUSED" then -- SYN, then the peer's RST
      emit(ev.t, pcap.tcp_packet(l, p, {seq = SEQ_CLIENT, ack = 0, flags = pcap.TCP_SYN}))
      emit(ev.t, pcap.tcp_packet(p, l, {seq = 0, ack = SEQ_CLIENT + 1,
        flags = pcap.TCP_RST | pcap.TCP_ACK}))
    end
  end,
  accept = function(ev, l, p) connection(ev.t, p, l) end,
  send = function(ev, l, p)
    tcp_data(ev.t, known(l, p) or connection(ev.t, l, p), l, "sent", payload(ev))
  end,
  recv = function(ev, l, p)
    tcp_data(ev.t, known(l, p) or connection(ev.t, p, l), p, "received", payload(ev))
  end,
  eof = function(ev, l, p)
    local c = known(l, p)
    if c then tcp_fin(ev.t, c, p) end
  end,
  shutdown = function(ev, l, p)
    local c = known(l, p)
    if c and ev.how ~= "receive" then tcp_fin(ev.t, c, l) end
  end,
  close = function(ev, l, p) -- first=peer: the peer's end came first, unseen
    local c = known(l, p)
    if c and ev.first == "peer" then tcp_fin(ev.t, c, p) end
    if c then tcp_fin(ev.t, c, l) end
  end,
}

-- ---- UDP ----------------------------------------------------------------------

-- Datagrams written from a send whose receive is still to come, per
-- direction "src|dst" (a queue of their bytes, at most QUEUE_MAX kept).
local QUEUE_MAX = 1024
local unmatched = {}

local function udp_datagram(t, src, dst, data, from_send)
  local key = src.text .. "|" .. dst.text
  local q = unmatched[key] or {first = 1, last = 0}
  unmatched[key] = q
  if not from_send then -- a receive of a datagram whose send was written?
    for i = q.first, q.last do
      if q[i] == data then
        table.move(q, i + 1, q.last, i)
        q[q.last], q.last = nil, q.last - 1
        return
      end
    end
  else
    q.last = q.last + 1
    q[q.last] = data
    if q.last - q.first + 1 > QUEUE_MAX then q[q.first], q.first = nil, q.first + 1 end
  end
  out.udp = out.udp + 1
  for i = 1, math.max(#data, 1), pcap.PAYLOAD_MAX do
    emit(t, pcap.udp_packet(src, dst, data:sub(i, i + pcap.PAYLOAD_MAX - 1)))
  end
end

local udp_events = {
  sendto = function(ev, l, p) udp_datagram(ev.t, l, p, payload(ev), true) end,
  recvfrom = function(ev, l, p) udp_datagram(ev.t, p, l, payload(ev), false) end,
}

-- ---- reading the trace ------------------------------------------------------------

local function event(ev)
  if type(ev) ~= "table" or type(ev.ev) ~= "string" or type(ev.t) ~= "number" then
    bad("not a trace event (a JSON object with 't' and 'ev')")
  end
  local proto, l, p = endpoints(ev.ep)
  local handler = proto == "tcp" and tcp_events[ev.ev] or proto == "udp" and udp_events[ev.ev]
  if handler and (ev.error == nil or ev.ev == "connect") then handler(ev, l, p) end
end

local function convert(path)
  local f, err = io.open(path, "rb")
  if not f then cli.fail("cannot read %s", err) end
  where.path = path
  for line in f:lines() do
    where.line = where.line + 1
    if line:match("%S") then
      local ok, ev = pcall(json.decode, line)
      if not ok then
        bad("not a JSON line (trace2pcap reads --trace=jsonl traces): %s",
          tostring(ev):gsub("^.-: ", ""))
      end
      event(ev)
    end
  end
  f:close()
end

local function write(path)
  local f, err = io.open(path, "wb")
  if not f then cli.fail("cannot write %s", err) end
  local ok, werr = f:write(pcap.file_header(), table.concat(out.records))
  local closed, cerr = f:close()
  if not ok or not closed then cli.fail("cannot write %s: %s", path, werr or cerr) end
end

local opts = cli.parse({...}, spec)
if not opts.out then cli.usage_error(spec, "needs a trace file and the pcap file to write") end
convert(opts.trace)
write(opts.out)
print(string.format("%s: %d packets (%d TCP connections, %d UDP datagrams)",
  opts.out, out.packets, out.tcp, out.udp))
if out.filled > 0 then
  io.stderr:write(string.format("netlua: %d bytes the trace did not show (more than 4096 " ..
    "in one event) are zeros in %s\n", out.filled, opts.out))
end
