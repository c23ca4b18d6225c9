-- test_socket_unix_raw.lua: what the socket module has beyond luasocket's
-- inet sockets: Unix-domain stream and datagram sockets, raw ICMP sockets.
local t = require "testlib"
local socket = require "socket"

t.test("unix stream: bind, listen, accept, connect, receive", function()
  local dir = t.tmpdir()
  local path = dir .. "/s.sock"
  local s = socket.unix()
  t.eq(s.class, "unixstream{master}")
  t.eq(s:bind(path), 1)
  t.eq(s:listen(), 1)
  t.eq(s.class, "unixstream{server}")
  t.eq(s:getsockname(), path)
  local c = socket.unix.stream()
  t.eq(c:connect(path), 1)
  t.eq(c.class, "unixstream{client}")
  local p = assert(s:accept())
  t.eq(p.class, "unixstream{client}")
  t.eq(c:getfamily(), "unix")
  c:send("over unix\n\0binary")
  c:close()
  t.eq(p:receive(), "over unix")
  t.eq(p:receive("*a"), "\0binary")
  p:close() s:close()
  t.rmtree(dir)
end)

t.test("unix stream: errors are luasocket's", function()
  local dir = t.tmpdir()
  local c = socket.unix()
  local ok, err = c:connect(dir .. "/nobody")
  t.eq(ok, nil)
  t.eq(err, "No such file or directory")
  local s = socket.unix()
  s:bind(dir .. "/taken")
  local s2 = socket.unix()
  t.eq(select(2, s2:bind(dir .. "/taken")), "address already in use")
  c:close() s:close() s2:close()
  t.rmtree(dir)
end)

t.test("unix datagram: sendto, receivefrom, connected send", function()
  local dir = t.tmpdir()
  local a, b = socket.unix.dgram(), socket.unix.dgram()
  t.eq(a.class, "unixdgram{unconnected}")
  t.eq(a:setsockname(dir .. "/a"), 1)
  t.eq(b:setsockname(dir .. "/b"), 1)
  t.eq(a:sendto("hi b", dir .. "/b"), 4)
  b:settimeout(1)
  local d, from = b:receivefrom()
  t.eq(d, "hi b")
  t.eq(from, dir .. "/a")
  t.eq(b:setpeername(dir .. "/a"), 1)
  t.eq(b.class, "unixdgram{connected}")
  t.eq(b:send("hi a"), 4)
  a:settimeout(1)
  t.eq(a:receive(), "hi a")
  a:close() b:close()
  t.rmtree(dir)
end)

-- An ICMP echo request (type 8) with a valid checksum.
local function echo_request(id, seq)
  local body = string.pack(">BBI2I2I2", 8, 0, 0, id, seq) .. "netlua"
  local sum = 0
  local padded = body .. (#body % 2 == 1 and "\0" or "")
  for i = 1, #padded, 2 do sum = sum + string.unpack(">I2", padded, i) end
  while sum > 0xffff do sum = (sum & 0xffff) + (sum >> 16) end
  return string.pack(">BBI2I2I2", 8, 0, ~sum & 0xffff, id, seq) .. "netlua"
end

t.test("raw ICMP socket: echo request to 127.0.0.1 gets a reply", function()
  local r, err = socket.raw("inet", "icmp")
  if not r then
    t.match(err, "raw sockets need root or CAP_NET_RAW")
    return
  end
  t.eq(r.class, "raw{unconnected}")
  t.eq(r:sendto(echo_request(4242, 7), "127.0.0.1"), 14)
  r:settimeout(1)
  local got
  for _ = 1, 10 do
    local packet, from = r:receivefrom()
    if not packet then break end
    local ihl = (packet:byte(1) & 15) * 4
    local kind, _, _, id, seq = string.unpack(">BBI2I2I2", packet, ihl + 1)
    if kind == 0 and id == 4242 and seq == 7 then
      got = from
      t.eq(packet:sub(ihl + 9), "netlua")
      break
    end
  end
  t.eq(got, "127.0.0.1")
  r:close()
end)

t.test("icmp datagram sockets: an echo reply, or a clear refusal", function()
  local d, err, code = socket.raw("inet", "icmp", "dgram")
  if not d then
    t.match(err, "icmp datagram sockets are not permitted")
    t.eq(code, "EPERM")
    return
  end
  t.eq(d:sendto(echo_request(1, 9), "127.0.0.1"), 14)
  d:settimeout(1)
  local packet, from = d:receivefrom()
  t.eq(from, "127.0.0.1")
  local kind, _, _, _, seq = string.unpack(">BBI2I2I2", packet)
  t.eq(kind, 0)
  t.eq(seq, 9)
  d:close()
end)

t.test("raw sockets without privilege say they need root or CAP_NET_RAW", function()
  local out = t.sh("command -v setpriv && setpriv --reuid=65534 --regid=65534 --clear-groups " ..
    "--inh-caps=-all --bounding-set=-all " .. t.shellquote(t.NETLUA) ..
    " -e 'print(select(2, require(\"socket\").raw(\"inet\", \"icmp\")))'")
  if not out or not out:find("\n.") then
    t.skip("unprivileged raw socket", "setpriv not available")
    return
  end
  t.match(out, "raw sockets need root or CAP_NET_RAW")
end)

t.test("raw rejects unknown families and protocols", function()
  t.raises("invalid option 'ipx'", socket.raw, "ipx", "icmp")
  t.raises("unknown protocol", socket.raw, "inet", "nope")
end)

t.done()
