-- test_lab_nc.lua: `netlua -m nc` against real peers on loopback: Python
-- sockets (tests/fixtures/nc_peer.py) and Debian's netcat (nc.openbsd), in
-- both directions, TCP and UDP, line and raw mode, the end of input
-- (half-close) and the peer closing first, and the failures.
local t = require "testlib"
local hh = require "httphelp"

local PYTHON = "/usr/bin/python3"
local NC = t.shellquote(t.NETLUA) .. " -m nc "
local PEER = PYTHON .. " " .. hh.fixtures .. "/nc_peer.py"

-- A Python peer in MODE, listening: its port and a stop function.
local function peer(mode)
  return hh.spawn(string.format("exec %s \"$PORTFILE\" %s 60", PEER, mode))
end

-- Runs nc with `args` and `stdin`, killed after 60 s: stdout, stderr, status.
local function nc(args, stdin)
  return t.sh("timeout -s KILL 60 " .. NC .. args, {stdin = stdin})
end

-- Waits (at most 20 s) until something is bound to 127.0.0.1:port in
-- /proc/net/PROTO ("tcp" listening, "udp"): a listener that is not a
-- child of ours is ready without sending it anything.
local function wait_bound(proto, port)
  local want = string.format("0100007F:%04X", port)
  for _ = 1, 400 do
    for line in io.lines("/proc/net/" .. proto) do
      local addr, state = line:match("^%s*%d+: (%x+:%x+) %x+:%x+ (%x+)")
      if addr == want and (proto == "udp" or state == "0A") then return end
    end
    require("time").sleep(0.05)
  end
  error("nothing bound to 127.0.0.1:" .. port .. " in /proc/net/" .. proto)
end

-- Debian's netcat, if it is the OpenBSD one (its -N and -u -l are used).
local function debian_nc()
  if not t.have("nc") then return nil, "Debian's nc (netcat-openbsd) is not installed" end
  local _, err = t.sh("nc -h")
  if not (err or ""):find("OpenBSD") then return nil, "nc is not netcat-openbsd" end
  return "nc"
end

if not os.execute("test -x " .. PYTHON) then
  t.skip("nc tests", PYTHON .. " is not installed")
  t.done()
end

t.test("tcp, line mode: stdin goes to the peer, a partial last line as it is, then the sending side shuts down and the peer's reply is printed", function()
  local port, stop = peer("reply-at-eof")
  local out, err, code = nc("127.0.0.1 " .. port, "one\ntwo\npartial")
  stop()
  t.eq(code, 0, err)
  t.eq(out, "got:one\ntwo\npartial")
  t.eq(err, "")
end)

t.test("tcp: the peer closes first while stdin stays open: what it sent is printed, exit 0", function()
  local port, stop = peer("send-close")
  local p = t.interactive(NC .. "127.0.0.1 " .. port)
  local out, err, code = p:wait_exit()
  stop()
  t.eq(code, 0, err)
  t.eq(out, "hello from peer\n")
end)

t.test("tcp, interactive: each line goes when its newline comes and the reply prints before the next line is typed", function()
  local port, stop = peer("echo")
  local p = t.interactive(NC .. "-v 127.0.0.1 " .. port)
  p:write("first\n")
  p:wait_for("^first\n$")
  p:write("second\n")
  p:wait_for("^first\nsecond\n$")
  p:close_input() -- the peer sees the end and closes: nc ends
  local out, err, code = p:wait_exit()
  stop()
  t.eq(code, 0, err)
  t.eq(out, "first\nsecond\n")
  t.eq(err, "connected to 127.0.0.1:" .. port .. "\n")
end)

t.test("tcp, --raw: bytes go without waiting for a newline", function()
  local port, stop = peer("echo")
  local p = t.interactive(NC .. "--raw 127.0.0.1 " .. port)
  p:write("abc") -- no newline: line mode would hold it until the end of input
  p:wait_for("^abc$")
  p:write("\0\1\255")
  p:wait_for("^abc%z\1\255$")
  p:close_input()
  local out, err, code = p:wait_exit()
  stop()
  t.eq(code, 0, err)
  t.eq(out, "abc\0\1\255")
end)

-- Both netcats talk both ways, then the input of `first` ends (its
-- sending side shuts down), then `second`'s: both end by themselves, 0.
local function both_ways(ours, theirs, first, second)
  theirs:write("from nc\n")
  ours:wait_for("^from nc\n$")
  ours:write("from netlua\n")
  theirs:wait_for("^from netlua\n$")
  first:close_input()
  second:close_input()
  local out, err, code = ours:wait_exit()
  local nc_out, nc_err, nc_code = theirs:wait_exit()
  t.eq(code, 0, err)
  t.eq(out, "from nc\n")
  t.eq(nc_code, 0, nc_err)
  t.eq(nc_out, "from netlua\n")
  return err
end

t.test("tcp -l: Debian's nc connects; both ways, then each side's end of input", function()
  local have, why = debian_nc()
  if not have then return t.skip("", why) end
  local ours = t.interactive(NC .. "-l 127.0.0.1 0")
  local port = ours:wait_for("listening on 127%.0%.0%.1:(%d+)\n", "err")
  local theirs = t.interactive("nc 127.0.0.1 " .. port)
  local err = both_ways(ours, theirs, ours, theirs)
  t.match(err, "connection from 127%.0%.0%.1:%d+\n")
end)

t.test("tcp client: Debian's nc -l listens; both ways, then each side's end of input", function()
  local have, why = debian_nc()
  if not have then return t.skip("", why) end
  local port = t.closed_port()
  local theirs = t.interactive("nc -l 127.0.0.1 " .. port)
  wait_bound("tcp", port)
  local ours = t.interactive(NC .. "127.0.0.1 " .. port)
  both_ways(ours, theirs, theirs, ours)
end)

t.test("udp client: each line is a datagram, each datagram that comes back is printed", function()
  local port, stop = peer("udp-echo")
  local p = t.interactive(NC .. "-u 127.0.0.1 " .. port)
  p:write("ping\n")
  p:wait_for("^got:ping\n$")
  p:write("pong\n")
  p:wait_for("^got:ping\ngot:pong\n$")
  p:kill()
  stop()
end)

t.test("udp -l: prints who sent the first datagram and answers the sender of the last one", function()
  local p = t.interactive(NC .. "-u -l 127.0.0.1 0")
  local port = p:wait_for("listening on 127%.0%.0%.1:(%d+)\n", "err")
  local client = t.interactive(string.format("%s x udp-two 60 %s", PEER, port))
  p:wait_for("^one\n$")
  p:write("answer one\n")
  client:wait_for("one got answer one\n")
  p:wait_for("^one\ntwo\n$") -- from another socket, another port
  p:write("answer two\n")
  client:wait_for("two got answer two\n")
  local _, _, code = client:wait_exit()
  t.eq(code, 0)
  t.match(t.readfile(p.dir .. "/err"), "connection from 127%.0%.0%.1:%d+\n")
  p:kill()
end)

t.test("udp with Debian's nc both ways: nc -u -l answers netlua's client, netlua's -u -l answers nc's client", function()
  local have, why = debian_nc()
  if not have then return t.skip("", why) end
  local port = t.closed_port()
  local theirs = t.interactive("nc -u -l 127.0.0.1 " .. port)
  wait_bound("udp", port) -- a datagram sent before would be lost
  local ours = t.interactive(NC .. "-u 127.0.0.1 " .. port)
  ours:write("hello nc\n")
  theirs:wait_for("^hello nc\n$")
  theirs:write("hello netlua\n")
  ours:wait_for("^hello netlua\n$")
  ours:kill()
  theirs:kill()

  local listener = t.interactive(NC .. "-u -l 127.0.0.1 0")
  port = listener:wait_for("listening on 127%.0%.0%.1:(%d+)\n", "err")
  local client = t.interactive("nc -u 127.0.0.1 " .. port)
  client:write("from nc\n")
  listener:wait_for("^from nc\n$")
  listener:write("to nc\n")
  client:wait_for("^to nc\n$")
  client:kill()
  listener:kill()
end)

t.test("-w S: a connection quiet for S seconds ends with status 0", function()
  local port, stop = peer("hold")
  local p = t.interactive(NC .. "-w 0.5 127.0.0.1 " .. port)
  local out, err, code = p:wait_exit() -- its stdin stays open: only -w ends it
  stop()
  t.eq(code, 0, err)
  t.eq(out, "")
end)

t.test("-l -w S: nobody connects within S seconds: one line, status 1", function()
  local out, err, code = nc("-l -w 0.3 127.0.0.1 0", "")
  t.eq(code, 1)
  t.eq(out, "")
  t.match(err, "^listening on 127%.0%.0%.1:%d+\nnetlua: no connection on 127%.0%.0%.1:%d+: timeout\n$")
end)

t.test("failures are one line and status 1: connection refused, port in use (tcp and udp)", function()
  local port = t.closed_port()
  local _, err, code = nc("127.0.0.1 " .. port, "x\n")
  t.eq(code, 1)
  t.eq(err, "netlua: cannot connect to 127.0.0.1:" .. port .. ": connection refused\n")

  local server, used = t.listener()
  _, err, code = nc("-l 127.0.0.1 " .. used, "")
  server:close()
  t.eq(code, 1)
  t.eq(err, "netlua: cannot listen on 127.0.0.1:" .. used .. ": address already in use\n")

  local u = assert(require("socket").udp())
  assert(u:setsockname("127.0.0.1", 0))
  local _, uport = u:getsockname()
  _, err, code = nc("-u -l 127.0.0.1 " .. uport, "")
  u:close()
  t.eq(code, 1)
  t.eq(err, "netlua: cannot listen on 127.0.0.1:" .. uport .. ": address already in use\n")
end)

t.test("an unknown host is one line and status 1", function()
  local sh, dir = t.private_etc{["hosts"] = "127.0.0.1 localhost\n", ["nsswitch.conf"] = "hosts: files\n"}
  if not sh then return t.skip("", dir) end
  local _, err, code = sh(NC .. "no-such-host.test 80", {stdin = ""})
  t.rmtree(dir)
  t.eq(code, 1)
  t.match(err, "^netlua: cannot connect to no%-such%-host%.test:80: [^\n]+\n$")
end)

t.test("bad usage: status 2 with the usage line", function()
  for _, args in ipairs{"", "127.0.0.1", "127.0.0.1 0", "-l 127.0.0.1 x", "--bogus 1 2"} do
    local _, err, code = nc(args, "")
    t.eq(code, 2, args)
    t.match(err, "\nusage: netlua %-m nc ", args)
  end
  local out, _, code = nc("--help", "")
  t.eq(code, 0)
  t.match(out, "shut down")
end)

t.done()
