-- test_lab_serve.lua: `netlua -m serve NAME`, the classic fixture servers,
-- against /usr/bin/python3 socket clients over TCP and UDP (the bytes each
-- RFC says), curl for http-echo and imageapi, two chat clients; clients
-- that never read or vanish; SIGTERM. Also the -m mechanism itself: -h
-- lists the tools, a wrong or missing tool name, a plain script not seeing
-- the lab's modules.
package.path = (arg[0]:match("^(.*)/") or ".") .. "/?.lua;" .. package.path
local t = require "testlib"
local json = require "json"
local time = require "time"

local PY = "/usr/bin/python3"
local LISTENING = "listening on 127%.0%.0%.1:(%d+) "

-- A python3 client, given the bytes to send on stdin: `tcp PORT LIMIT`
-- connects, sends them, reads up to LIMIT bytes or to EOF (`tcpshut`: shuts
-- its sending side first); `udp PORT` sends one datagram and waits for one;
-- `udpnone PORT LOG` sends one, waits until LOG (the server's stderr) says
-- it was handled, then looks for a reply without waiting. Prints what it
-- got in hex ("none" for no datagram).
local CLIENT = t.script([[
import socket, sys, time
mode, port, send = sys.argv[1], int(sys.argv[2]), sys.stdin.buffer.read()
if mode == "tcp" or mode == "tcpshut":
    s = socket.create_connection(("127.0.0.1", port), timeout=20)
    s.sendall(send)
    if mode == "tcpshut":
        s.shutdown(socket.SHUT_WR)
    limit, data = int(sys.argv[3]), b""
    while len(data) < limit:
        d = s.recv(limit - len(data))
        if not d:
            break
        data += d
    print(data.hex())
elif mode == "udp":
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(20)
    s.sendto(send, ("127.0.0.1", port))
    print(s.recvfrom(65535)[0].hex())
elif mode == "udpnone":
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.sendto(send, ("127.0.0.1", port))
    for _ in range(400):
        if b"answered nothing" in open(sys.argv[3], "rb").read():
            break
        time.sleep(0.05)
    s.setblocking(False)
    try:
        print(s.recvfrom(65535)[0].hex())
    except BlockingIOError:
        print("none")
]], "client.py")

local function unhex(h)
  return (h:gsub("%x%x", function(x) return string.char(tonumber(x, 16)) end))
end

-- Runs the python client; returns the bytes it received (or "none").
local function client(mode, port, send, extra)
  local out, err, code = t.sh(string.format("%s %s %s %d %s", PY, CLIENT, mode, port, extra or ""),
    {stdin = send})
  t.eq(code, 0, "client.py: " .. tostring(err))
  out = out:gsub("\n$", "")
  if out == "none" then return out end
  return unhex(out)
end

-- Starts `netlua -m serve NAME --port 0 ARGS`; pid, port, dir.
local function serve(name, args)
  return t.start_tool("serve", name .. " --port 0 " .. (args or ""), 120, LISTENING)
end

-- RFC 864's stream, made here from its definition: line k (from 0) is the
-- 72 printable characters starting at the k-th of the 95, then CR LF.
local function chargen_expected(n)
  local out = {}
  for i = 0, n - 1 do
    local line, col = i // 74, i % 74
    out[#out + 1] = col == 72 and "\r" or col == 73 and "\n" or string.char(32 + (line + col) % 95)
  end
  return table.concat(out)
end

-- Waits (at most 20 s) until the server's stderr in dir matches pattern;
-- whether it did.
local function wait_log(dir, pattern)
  for _ = 1, 400 do
    if (t.readfile(dir .. "/err") or ""):find(pattern) then return true end
    time.sleep(0.05)
  end
  return false
end

-- The resident memory of process pid, in KiB.
local function rss_kib(pid)
  local status = t.readfile("/proc/" .. pid .. "/status") or ""
  return tonumber(status:match("VmRSS:%s*(%d+)"))
end

-- ---- the -m mechanism --------------------------------------------------------

t.test("netlua -h lists the lab's tools with their summaries", function()
  local out, _, code = t.netlua("-h")
  t.eq(code, 0)
  t.match(out, "\n  serve%s+classic test servers: echo, chargen, daytime, time, http%-echo, chat %.%.%.\n")
  t.match(out, "\n  http%.server%s+serve a folder over HTTP, as python %-m http%.server does\n")
end)

t.test("netlua -m nosuch exits 2 naming the tools", function()
  local _, err, code = t.netlua("-m nosuch")
  t.eq(code, 2)
  t.match(err, "no tool 'nosuch'")
  t.match(err, "\n  serve ")
  t.match(err, "\n  http%.server ")
end)

t.test("netlua -m alone exits 2 with the usage line", function()
  local _, err, code = t.netlua("-m")
  t.eq(code, 2)
  t.match(err, "usage: netlua .*%-m tool")
end)

t.test("a script run normally does not find require 'cli' of the lab; under -m a tool does", function()
  local path, d = t.script("print(pcall(require, 'cli'))\n")
  local netlua = t.NETLUA
  if netlua:sub(1, 1) ~= "/" then netlua = os.getenv("PWD") .. "/" .. netlua end
  local out, err, code = t.sh(string.format("cd %s && env -u NETLUA_PATH %s %s", d,
    t.shellquote(netlua), t.shellquote(path)))
  t.eq(code, 0, err)
  t.match(out, "^false\tmodule 'cli' not found")
  local _, err2, code2 = t.netlua("-m serve --port x")
  t.eq(code2, 2, "the tool parsed its arguments with cli")
  t.match(err2, "^netlua: %-%-port must be a number from 0 to 65535, not 'x'\n")
end)

t.test("bad use of serve: no name, an unknown one, --udp for a TCP-only server (2)", function()
  local _, err, code = t.netlua("-m serve")
  t.eq(code, 2)
  t.match(err, "which server%? one of echo, discard, daytime, qotd, chargen, time, http%-echo, chat, imageapi")
  local _, err2, code2 = t.netlua("-m serve gopher")
  t.eq(code2, 2)
  t.match(err2, "not 'gopher'")
  local _, err3, code3 = t.netlua("-m serve chat --udp")
  t.eq(code3, 2)
  t.match(err3, "chat has no %-%-udp form")
end)

if not t.have(PY) then
  t.skip("the fixture servers", "needs " .. PY)
  t.done()
end

-- ---- the RFC services over TCP ---------------------------------------------

t.test("echo (RFC 862) over TCP sends back what it got, in order, until the client ends", function()
  local pid, port, dir = serve("echo")
  local data = ("0123456789abcdef"):rep(20000) .. "end\n" -- 320 KiB: more than one piece
  local got = client("tcpshut", port, data, #data + 100)
  local _, err = t.stop_program(pid, dir)
  t.eq(#got, #data)
  t.ok(got == data, "the same bytes")
  t.match(err, "127%.0%.0%.1:%d+ connected")
  t.match(err, "127%.0%.0%.1:%d+ left: closed")
end)

t.test("discard (RFC 863) over TCP reads everything and sends nothing", function()
  local pid, port, dir = serve("discard")
  local got = client("tcpshut", port, ("x"):rep(100000), 10)
  t.stop_program(pid, dir)
  t.eq(got, "")
end)

t.test("chargen (RFC 864) over TCP: the rotating 72-character lines, past a whole cycle", function()
  local pid, port, dir = serve("chargen")
  local n = 95 * 74 * 2 + 500
  local got = client("tcp", port, "", n)
  t.stop_program(pid, dir)
  t.eq(#got, n)
  t.ok(got == chargen_expected(n), "RFC 864's pattern: " .. got:sub(1, 150))
  t.eq(got:sub(1, 74), " !\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefg\r\n")
end)

t.test("daytime (RFC 867) over TCP: one line with today's date, then EOF", function()
  local pid, port, dir = serve("daytime")
  local got = client("tcp", port, "", 1000)
  t.stop_program(pid, dir)
  t.match(got, "^%a+day, %a+ %d%d, %d%d%d%d %d%d:%d%d:%d%d%-UTC\r\n$")
  t.match(got, os.date("!%Y"))
end)

t.test("qotd (RFC 865) over TCP: a quote under 512 characters, then EOF", function()
  local pid, port, dir = serve("qotd")
  local got = client("tcp", port, "", 1000)
  t.stop_program(pid, dir)
  t.ok(#got > 10 and #got < 512, "length " .. #got)
  t.match(got, "^[%g ]+\r\n$")
end)

t.test("time (RFC 868) over TCP: 4 bytes, seconds since 1900 big-endian, near now", function()
  local pid, port, dir = serve("time")
  local before = os.time()
  local got = client("tcp", port, "", 100)
  local after = os.time()
  t.stop_program(pid, dir)
  t.eq(#got, 4)
  local n = string.unpack(">I4", got)
  t.ok(n >= before + 2208988800 and n <= after + 2208988800,
    string.format("%d within [%d, %d]", n, before + 2208988800, after + 2208988800))
end)

-- ---- over UDP -----------------------------------------------------------------

t.test("--udp: echo, daytime, qotd, time and chargen answer each datagram as their RFCs say", function()
  local results = {}
  for _, name in ipairs{"echo", "daytime", "qotd", "time", "chargen"} do
    local pid, port, dir = serve(name, "--udp")
    results[name] = client("udp", port, "hello\0datagram")
    if name == "chargen" then results.chargen2 = client("udp", port, "") end
    local out, err = t.stop_program(pid, dir)
    t.match(out, "^listening on 127%.0%.0%.1:%d+ %(" .. name .. " over udp%)\n")
    t.match(err, "127%.0%.0%.1:%d+ sent %d+ bytes, answered %d+ bytes\n")
  end
  t.eq(results.echo, "hello\0datagram")
  t.match(results.daytime, "^%a+day, %a+ %d%d, %d%d%d%d %d%d:%d%d:%d%d%-UTC\r\n$")
  t.ok(#results.qotd < 512 and results.qotd:find("\r\n$"), "a quote: " .. results.qotd)
  t.eq(#results.time, 4)
  t.ok(math.abs(string.unpack(">I4", results.time) - (os.time() + 2208988800)) < 3600,
    "the time is today's")
  -- chargen: 0 to 512 characters of the pattern, each datagram one line on
  local stream = chargen_expected(74 * 100)
  t.ok(#results.chargen <= 512, "at most 512")
  t.eq(results.chargen, stream:sub(1, #results.chargen))
  t.ok(#results.chargen2 <= 512, "at most 512")
  t.eq(results.chargen2, stream:sub(75, 74 + #results.chargen2))
end)

t.test("--udp discard answers nothing", function()
  local pid, port, dir = serve("discard", "--udp")
  local got = client("udpnone", port, "into the void", dir .. "/err")
  t.stop_program(pid, dir)
  t.eq(got, "none")
end)

-- ---- many clients, clients that do not read or vanish, SIGTERM --------------

t.test("many clients at once on one thread: 20 echo clients interleaved", function()
  local pid, port, dir = serve("echo")
  local out, err, code = t.sh(string.format("%s -c %s %d", PY, t.shellquote([[
import socket, sys
port = int(sys.argv[1])
cs = [socket.create_connection(("127.0.0.1", port), timeout=20) for _ in range(20)]
for round in range(3):
    for i, c in enumerate(cs):
        c.sendall(b"client %d round %d\n" % (i, round))
    for i, c in enumerate(cs):
        want = b"client %d round %d\n" % (i, round)
        got = b""
        while len(got) < len(want):
            d = c.recv(len(want) - len(got))
            if not d:
                break
            got += d
        assert got == want, (got, want)
print("ok")
]]), port))
  local _, serr = t.stop_program(pid, dir)
  t.eq(code, 0, err)
  t.eq(out, "ok\n")
  t.match(serr, "%(20 at once%)")
end)

t.test("chargen to a client that never reads: its send waits, the server's memory stays put", function()
  local pid, port, dir = serve("chargen")
  local c = t.connect(port) -- never reads
  local before
  t.ok(wait_log(dir, "connected"), "the server has the client")
  before = rss_kib(pid)
  time.sleep(2) -- a sender that does not wait would queue many MiB meanwhile
  local after = rss_kib(pid)
  local other = t.connect(port) -- and the server still serves others
  local line = other:receive(74)
  other:close()
  c:close()
  local logged = wait_log(dir, "left: .*left: ") -- both, once they have gone
  t.stop_program(pid, dir)
  t.eq(line, chargen_expected(74))
  t.ok(after - before < 4 * 1024, string.format("grew %d KiB", after - before))
  t.ok(logged, "the clients that went are logged")
end)

t.test("echo to a client that sends but never reads: the server stops reading, its memory stays put", function()
  local pid, port, dir = serve("echo")
  -- the client measures the server's memory before and once its own sends
  -- have stalled for 3 s, still connected
  local out, err, code = t.sh(string.format("%s -c %s %d %d", PY, t.shellquote([[
import socket, sys
def rss():
    for line in open("/proc/%s/status" % sys.argv[2]):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
before = rss()
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=3)
sent, piece = 0, b"x" * 65536
try:
    while sent < 256 * 1024 * 1024:
        sent += s.send(piece)
except socket.timeout:
    pass
print(sent, rss() - before)
]]), port, pid))
  t.eq(code, 0, err)
  local sent, grew = out:match("^(%d+) (%-?%d+)\n$")
  t.ok(wait_log(dir, "left: "), "the client that went is logged")
  t.stop_program(pid, dir)
  t.ok(tonumber(sent) < 256 * 1024 * 1024, "the client's sends stalled after " .. sent .. " bytes")
  t.ok(tonumber(grew) < 16 * 1024, string.format("the server grew %s KiB holding %s bytes unread", grew, sent))
end)

t.test("a client that vanishes is logged; SIGTERM stops the server cleanly", function()
  local pid, port, dir = serve("echo")
  local c = t.connect(port)
  c:send("hi\n")
  t.eq(c:receive("*l"), "hi")
  c:setoption("linger", {on = true, timeout = 0})
  c:close() -- a reset
  t.ok(wait_log(dir, "left: "), "the reset client is logged")
  local idle = t.connect(port) -- still connected when SIGTERM comes
  idle:send("x")
  idle:receive(1)
  local out, err = t.stop_program(pid, dir, "TERM")
  idle:close()
  t.match(out, "^listening on 127%.0%.0%.1:%d+ %(echo over tcp%)\n$")
  t.match(err, "127%.0%.0%.1:%d+ left: [%a ]+\n127%.0%.0%.1:%d+ connected %(1 at once%)\n",
    "the reset client is logged and the next one served")
  t.match(err, "stopped\n$")
end)

-- ---- http-echo, chat, imageapi ----------------------------------------------

t.test("http-echo answers with what curl sent, as JSON: method, target, path, query, headers, body, peer", function()
  if not t.have("curl") then return t.skip(nil, "needs curl") end
  local pid, port, dir = serve("http-echo")
  local out, err = t.sh(string.format("curl -s -S -X PUT -H 'X-Custom: some value' --data-binary 'a body\nline 2' %s",
    t.shellquote("http://127.0.0.1:" .. port .. "/some%20where/x?q=1&r=a+b&q=2")))
  local big = t.sh(string.format("head -c 70000 /dev/zero | curl -s -o /dev/null -w '%%{http_code}' --data-binary @- %s",
    t.shellquote("http://127.0.0.1:" .. port .. "/big")))
  local binary = t.sh(string.format("printf '\\377\\376' | curl -s --data-binary @- %s",
    t.shellquote("http://127.0.0.1:" .. port .. "/bin")))
  local _, serr = t.stop_program(pid, dir)
  local r = json.decode(out or err)
  t.eq(r.method, "PUT")
  t.eq(r.target, "/some%20where/x?q=1&r=a+b&q=2")
  t.eq(r.path, "/some where/x")
  t.eq(r.query, "q=1&r=a+b&q=2")
  t.eq(r.args.q[2], "2")
  t.eq(r.args.r[1], "a b")
  t.eq(r.version, "1.1")
  t.eq(r.headers["x-custom"], "some value")
  t.eq(r.headers["content-length"], "13")
  t.eq(r.headers.host, "127.0.0.1:" .. port)
  t.match(r.headers["user-agent"], "^curl/")
  t.eq(r.body, "a body\nline 2")
  t.eq(r.body_length, 13)
  t.eq(r.peer, "127.0.0.1")
  t.eq(big, "413", "a body over 64 KiB")
  local b = json.decode(binary)
  t.eq(b.body, nil)
  t.eq(b.body_base64, "//4=")
  t.match(serr, "127%.0%.0%.1 PUT /some%%20where/x%?q=1&r=a%+b&q=2 200\n")
end)

t.test("chat: two clients see each other's lines", function()
  local pid, port, dir = serve("chat")
  local a = t.connect(port)
  t.expect_line(a, "^welcome, you are client 1")
  local b = t.connect(port)
  t.expect_line(b, "^welcome, you are client 2")
  t.expect_line(a, "^%* client 2 joined")
  a:send("hello from a\n")
  local seen_b = t.expect_line(b, "hello")
  b:send("hi a\n")
  local seen_a = t.expect_line(a, "hi a")
  b:send("/quit\n")
  t.expect_line(a, "^%* client 2 left")
  a:close()
  b:close()
  t.stop_program(pid, dir)
  t.eq(seen_b, "[1] hello from a")
  t.eq(seen_a, "[2] hi a")
end)

t.test("imageapi returns its JSON list and the PNGs it names", function()
  if not t.have("curl") then return t.skip(nil, "needs curl") end
  local pid, port, dir = t.start_tool("serve", "imageapi --port 0", 120, LISTENING)
  local base = "http://127.0.0.1:" .. port
  local out = t.sh("env -u IMAGEAPI_KEY curl -s -S " .. t.shellquote(base .. "/meinv/?key=netlua-demo-key&num=3"))
  local png = t.sh("curl -s -S " .. t.shellquote(base .. "/images/meinv-002.png"))
  local stdout = t.stop_program(pid, dir)
  local r = json.decode(out)
  t.eq(r.code, 200)
  t.eq(#r.newslist, 3)
  t.eq(r.newslist[2].picUrl, base .. "/images/meinv-002.png")
  t.eq(png:sub(1, 8), "\137PNG\r\n\26\n")
  t.match(stdout, "^listening on 127%.0%.0%.1:" .. port .. " %(imageapi: " .. base:gsub("%p", "%%%0") .. "/meinv/%?key=")
end)

t.done()
