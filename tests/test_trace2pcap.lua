-- test_trace2pcap.lua: netlua -m trace2pcap. Real exchanges (a netlua
-- client and server in one process over TCP both ways and UDP, on 127.0.0.1
-- and ::1; a netlua client against a Python server) are traced with
-- --trace=jsonl --trace-data, converted, and read back with Debian's
-- tcpdump (packets, flags, lengths, checksums, payload bytes) and with a
-- pcap reader of our own in Python; bad input gets clear errors.
local t = require "testlib"

local q = t.shellquote
local TCPDUMP = "/usr/bin/tcpdump"
local PYTHON = "/usr/bin/python3"

local QUESTION = "hello trace2pcap " .. string.rep("q", 100) .. "\n"
local ANSWER = "answer: " .. string.rep("0123456789", 150) .. "\n" -- 1509 bytes
local DATAGRAM = "one datagram \1\2\3"

-- A task serves one connection (reads QUESTION's line, sends ANSWER,
-- closes first); the main script is its client; then one datagram from one
-- UDP socket to another. HOST: the address to use.
local EXCHANGE = [[
local socket, task = require "socket", require "task"
local HOST, QUESTION, ANSWER, DATAGRAM = ...
local srv = assert(socket.bind(HOST, 0))
local _, port = srv:getsockname()
local h = task.spawn(function()
  local c = assert(srv:accept())
  assert(c:receive("*l"))
  assert(c:send(ANSWER))
  c:close()
end)
local c = assert(socket.connect(HOST, port))
assert(c:send(QUESTION))
assert(c:receive(#ANSWER) == ANSWER)
assert(c:receive(1) == nil)
c:close()
assert(h:join())
local u1 = assert(HOST:find(":") and socket.udp6() or socket.udp())
local u2 = assert(HOST:find(":") and socket.udp6() or socket.udp())
assert(u1:setsockname(HOST, 0))
assert(u2:setsockname(HOST, 0))
local ip2, p2 = u2:getsockname()
assert(u1:sendto(DATAGRAM, ip2, p2))
assert(u2:receivefrom() == DATAGRAM)
local _, p1 = u1:getsockname()
print(port, p1, p2)
]]

-- Runs `source` with `args` under --trace=jsonl [--trace-data]; returns
-- the trace file's path, the directory and the script's output.
local function trace_of(source, args, data)
  local path, dir = t.script(source)
  local file = dir .. "/trace.jsonl"
  local out, err, code = t.netlua(string.format("--trace=jsonl %s --trace-file %s %s %s",
    data == false and "" or "--trace-data", q(file), q(path), args or ""))
  t.eq(code, 0, err)
  return file, dir, out
end

local function convert(trace, pcap)
  return t.netlua(string.format("-m trace2pcap %s %s", q(trace), q(pcap)))
end

-- tcpdump's lines for the packets (header lines only: -nn -vv, no dump).
local function tcpdump_lines(pcap)
  local out, err, code = t.sh(string.format("%s -r %s -nn -vv -tt", TCPDUMP, q(pcap)))
  t.eq(code, 0, err)
  local lines = {}
  for line in out:gmatch("[^\n]+") do
    if line:match("^%d") then lines[#lines + 1] = line
    else lines[#lines] = lines[#lines] .. " " .. line:match("^%s*(.-)$") end
  end
  return lines, err
end

-- The payload bytes tcpdump shows (-x: hex of each packet) of the packets
-- whose line matches `pattern`, concatenated: the IP and TCP/UDP headers
-- cut off by the lengths tcpdump prints.
local function tcpdump_payload(pcap, pattern)
  local out, _, code = t.sh(string.format("%s -r %s -nn -x", TCPDUMP, q(pcap)))
  t.eq(code, 0)
  local parts, take = {}, false
  local packets = {}
  for line in out:gmatch("[^\n]+") do
    local hex = line:match("^%s+0x%x+:%s+(.*)$")
    if hex then
      if take then packets[#packets][2] = packets[#packets][2] .. hex:gsub("%s", "") end
    else
      take = line:match(pattern) ~= nil and tonumber(line:match("length (%d+)$") or 0) > 0
      if take then packets[#packets + 1] = {tonumber(line:match("length (%d+)$")), ""} end
    end
  end
  for _, p in ipairs(packets) do
    local bytes = p[2]:gsub("%x%x", function(h) return string.char(tonumber(h, 16)) end)
    parts[#parts + 1] = bytes:sub(-p[1])
  end
  return table.concat(parts)
end

-- The flags column of each TCP packet between a and b ("S", "S.", ".",
-- "P.", "F."), in order, with its direction ("a>b" or "b>a").
local function tcp_flags(lines, a, b)
  local seen = {}
  for _, line in ipairs(lines) do
    local src, dst, flags = line:match(" (%S+) > (%S+): Flags %[(%S+)%]")
    if src == a and dst == b then seen[#seen + 1] = "a>b " .. flags
    elseif src == b and dst == a then seen[#seen + 1] = "b>a " .. flags end
  end
  return table.concat(seen, ", ")
end

-- Python's view of the file (its own pcap and IP/TCP/UDP parsing, checksums
-- recomputed): one line per packet, "proto src sport dst dport flags len hexpayload",
-- or a line starting "BAD" naming what is wrong.
local PCAP_READER = [==[
import struct, sys
def csum(b):
    if len(b) % 2: b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s > 0xffff: s = (s & 0xffff) + (s >> 16)
    return s
data = open(sys.argv[1], "rb").read()
magic, vmaj, vmin, _, _, snap, link = struct.unpack("<IHHiIII", data[:24])
if magic != 0xa1b2c3d4 or link != 101: print("BAD header", hex(magic), link)
off = 24
while off < len(data):
    sec, usec, incl, orig = struct.unpack("<IIII", data[off:off + 16])
    pkt = data[off + 16:off + 16 + incl]; off += 16 + incl
    if incl != orig or len(pkt) != incl: print("BAD record"); continue
    import ipaddress
    if pkt[0] >> 4 == 4:
        ihl = (pkt[0] & 15) * 4; proto = pkt[9]; total = struct.unpack("!H", pkt[2:4])[0]
        if total != len(pkt) or csum(pkt[:ihl]) != 0xffff: print("BAD ipv4"); continue
        src, dst = pkt[12:16], pkt[16:20]; body = pkt[ihl:]
        pseudo = src + dst + struct.pack("!BBH", 0, proto, len(body))
    else:
        plen = struct.unpack("!H", pkt[4:6])[0]; proto = pkt[6]
        src, dst = pkt[8:24], pkt[24:40]; body = pkt[40:]
        if plen != len(body): print("BAD ipv6"); continue
        pseudo = src + dst + struct.pack("!I3xB", len(body), proto)
    if csum(pseudo + body) != 0xffff: print("BAD checksum"); continue
    sp, dp = struct.unpack("!HH", body[:4])
    if proto == 6:
        hl = (body[12] >> 4) * 4; flags = body[13]; payload = body[hl:]
    else:
        flags = 0; payload = body[8:]
        if struct.unpack("!H", body[4:6])[0] != len(body): print("BAD udp length"); continue
    print("tcp" if proto == 6 else "udp", ipaddress.ip_address(src), sp,
          ipaddress.ip_address(dst), dp, flags, len(payload), payload.hex() or "-")
]==]

local function python_packets(pcap)
  local path, dir = t.script(PCAP_READER, "pcap_reader.py")
  local out, err, code = t.sh(string.format("%s %s %s", PYTHON, q(path), q(pcap)))
  t.rmtree(dir)
  t.eq(code, 0, err)
  local packets = {}
  for line in out:gmatch("[^\n]+") do
    t.ok(not line:match("^BAD"), "python reads the packet: " .. line)
    local proto, src, sp, dst, dp, flags, len, hex = line:match(
      "^(%a+) (%S+) (%d+) (%S+) (%d+) (%d+) (%d+) (%S+)$")
    packets[#packets + 1] = {proto = proto, src = src, sport = tonumber(sp), dst = dst,
      dport = tonumber(dp), flags = tonumber(flags), len = tonumber(len),
      data = hex == "-" and "" or hex:gsub("%x%x", function(h) return string.char(tonumber(h, 16)) end)}
  end
  return packets
end

-- The bytes of the packets from sport to dport, concatenated.
local function stream(packets, proto, sport, dport)
  local parts = {}
  for _, p in ipairs(packets) do
    if p.proto == proto and p.sport == sport and p.dport == dport then parts[#parts + 1] = p.data end
  end
  return table.concat(parts)
end

local function exchange_case(name, host, shown)
  t.test("both ends in one process, " .. name .. ": handshake, bytes both ways, FINs, UDP", function()
    if not t.have(TCPDUMP) then return t.skip(nil, "no tcpdump (make deps installs it)") end
    local trace, dir, out = trace_of(EXCHANGE,
      table.concat({q(host), q(QUESTION), q(ANSWER), q(DATAGRAM)}, " "))
    local sport, u1, u2 = out:match("^(%d+)%s+(%d+)%s+(%d+)")
    sport, u1, u2 = tonumber(sport), tonumber(u1), tonumber(u2)
    local pcap = dir .. "/out.pcap"
    local cout, cerr, code = convert(trace, pcap)
    t.eq(code, 0, cerr)
    t.match(cout, "1 TCP connections, 1 UDP datagrams")
    local lines = tcpdump_lines(pcap)
    -- the client's port, from the SYN tcpdump shows
    local cport
    for _, l in ipairs(lines) do
      cport = cport or l:match(" " .. shown:gsub("%p", "%%%0") .. "%.(%d+) > %S+%." .. sport .. ": Flags %[S%]")
    end
    t.ok(cport, "a SYN to the server's port " .. sport .. ": " .. table.concat(lines, "\n"))
    local a, b = shown .. "." .. cport, shown .. "." .. sport
    t.eq(tcp_flags(lines, a, b),
      "a>b S, b>a S., a>b ., a>b P., b>a P., b>a F., a>b ., a>b F., b>a .",
      "the connection's packets: handshake, question, answer, the server's FIN first")
    for _, l in ipairs(lines) do
      t.ok(l:match("cksum 0x%x+ %(correct%)") or l:match("udp sum ok"), "checksums: " .. l)
    end
    t.ok(table.concat(lines, "\n"):find("length " .. #QUESTION, 1, true), "the question's length")
    t.ok(table.concat(lines, "\n"):find("seq 1:" .. #ANSWER + 1 .. ", ack " .. #QUESTION + 1,
      1, true), "the answer's sequence numbers: " .. table.concat(lines, "\n"))
    t.eq(tcpdump_payload(pcap, "%." .. cport .. " > .*%." .. sport .. ": "), QUESTION)
    t.eq(tcpdump_payload(pcap, "%." .. sport .. " > .*%." .. cport .. ": "), ANSWER)
    t.eq(tcpdump_payload(pcap, "%." .. u1 .. " > .*%." .. u2 .. ": "), DATAGRAM)
    local n = 0
    for _, l in ipairs(lines) do n = n + (l:match("UDP, length " .. #DATAGRAM) and 1 or 0) end
    t.eq(n, 1, "the datagram, once (its send and its receive were both traced)")
    -- and Python's reading of the same file
    local packets = python_packets(pcap)
    t.eq(#packets, #lines, "as many packets as tcpdump saw")
    t.eq(stream(packets, "tcp", tonumber(cport), sport), QUESTION)
    t.eq(stream(packets, "tcp", sport, tonumber(cport)), ANSWER)
    t.eq(stream(packets, "udp", u1, u2), DATAGRAM)
    t.rmtree(dir)
  end)
end

exchange_case("IPv4", "127.0.0.1", "127.0.0.1")
exchange_case("IPv6", "::1", "::1")

t.test("one end traced: a netlua client and a Python server", function()
  if not t.have(TCPDUMP) then return t.skip(nil, "no tcpdump (make deps installs it)") end
  local server, sdir = t.script([[
import socket, sys
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(1)
print(s.getsockname()[1], flush=True)
c, _ = s.accept()
got = b""
while not got.endswith(b"\n"): got += c.recv(100)
c.sendall(b"python says " + got)
c.shutdown(socket.SHUT_WR)
c.recv(100)
c.close()
c, _ = s.accept()
c.sendall(b"bye\n")
c.shutdown(socket.SHUT_WR)
c.recv(100)
c.close()
]], "server.py")
  local pipe = io.popen(string.format("timeout 30 %s %s", PYTHON, q(server)), "r")
  local port = pipe:read("l")
  local trace, dir, out = trace_of([[
    local socket = require "socket"
    local c = assert(socket.connect("127.0.0.1", ...))
    assert(c:send("netlua asks\n"))
    local got = assert(c:receive("*a"))
    assert(got == "python says netlua asks\n", got)
    c:close()
    -- the second: closed without reading the end of stream that came
    local d = assert(socket.connect("127.0.0.1", ...))
    assert(d:receive("*l") == "bye")
    assert(#socket.select({d}, nil, 10) == 1)
    print(select(2, d:getsockname()))
    d:close()
  ]], port)
  pipe:close()
  t.rmtree(sdir)
  local pcap = dir .. "/out.pcap"
  local _, cerr, code = convert(trace, pcap)
  t.eq(code, 0, cerr)
  local lines = tcpdump_lines(pcap)
  local cport = table.concat(lines, "\n"):match("127%.0%.0%.1%.(%d+) > 127%.0%.0%.1%." .. port)
  t.eq(tcp_flags(lines, "127.0.0.1." .. cport, "127.0.0.1." .. port),
    "a>b S, b>a S., a>b ., a>b P., b>a P., b>a F., a>b ., a>b F., b>a .",
    "the peer's bytes and FIN come from what the client received")
  t.eq(tcpdump_payload(pcap, "%." .. port .. " > .*%." .. cport .. ": "), "python says netlua asks\n")
  local dport = out:match("(%d+)")
  t.eq(tcp_flags(lines, "127.0.0.1." .. dport, "127.0.0.1." .. port),
    "a>b S, b>a S., a>b ., b>a P., b>a F., a>b ., a>b F., b>a .",
    "the peer's FIN from the client's close (first=peer), before the client's own")
  t.rmtree(dir)
end)

t.test("bad input: no data, a corrupt line, a text trace, a missing file, no arguments", function()
  local trace, dir = trace_of([[
    local socket = require "socket"
    local a = socket.udp(); assert(a:setsockname("127.0.0.1", 0))
    assert(a:sendto("x", a:getsockname()))
    assert(a:receive())
  ]], "", false)
  local out, err, code = convert(trace, dir .. "/o.pcap")
  t.eq(code, 1, out)
  t.match(err, "trace%.jsonl:%d+: 'sendto' of 1 bytes without the bytes: take the trace with %-%-trace%-data")
  t.eq(t.readfile(dir .. "/o.pcap"), nil, "no file written")
  local head = t.readfile(trace):match("^[^\n]*\n[^\n]*\n") -- socket, bind
  t.writefile(trace, head .. '{"t":1.0,"ev":"send"\n')
  _, err, code = convert(trace, dir .. "/o.pcap")
  t.eq(code, 1)
  t.match(err, "trace%.jsonl:3: not a JSON line")
  t.writefile(trace, "    0.001000 main             socket   fd 3 proto=tcp family=inet\n")
  _, err, code = convert(trace, dir .. "/o.pcap")
  t.eq(code, 1)
  t.match(err, "trace%.jsonl:1: not a JSON line %(trace2pcap reads %-%-trace=jsonl traces%)")
  t.writefile(trace, '[1,2]\n')
  _, err, code = convert(trace, dir .. "/o.pcap")
  t.eq(code, 1)
  t.match(err, "trace%.jsonl:1: not a trace event")
  _, err, code = convert(dir .. "/missing.jsonl", dir .. "/o.pcap")
  t.eq(code, 1)
  t.match(err, "^netlua: cannot read .*missing%.jsonl: No such file")
  _, err, code = t.netlua("-m trace2pcap")
  t.eq(code, 2)
  t.match(err, "usage: netlua %-m trace2pcap TRACE%.jsonl OUT%.pcap")
  t.rmtree(dir)
end)

t.done()
