-- test_socket_scripts.lua: the tutorial's programs in scripts/, each server
-- run as its own netlua process on a free loopback port, talked to by the
-- netlua client and by independent peers (Python's socket module, nc).
local t = require "testlib"
local socket = require "socket"

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "tests"
local SCRIPTS = here .. "/../scripts/"
local q = t.shellquote

-- Starts `netlua scripts/NAME args` in the background and waits for its
-- "listening on" line; returns {pid, port, dir}.
local function start(name, args)
  local dir = t.tmpdir()
  os.execute(string.format("%s %s %s > %s/out 2> %s/err < /dev/null & echo $! > %s/pid",
    q(t.NETLUA), q(SCRIPTS .. name), args, dir, dir, dir))
  local srv = {dir = dir, pid = tonumber(t.readfile(dir .. "/pid"))}
  for _ = 1, 400 do
    local out = t.readfile(dir .. "/out") or ""
    local port = out:match("listening on [^\n]*:(%d+)")
    if port then srv.port = tonumber(port) return srv end
    if out == "" and (t.readfile(dir .. "/err") or "") ~= "" then break end
    socket.sleep(0.05)
  end
  os.execute("kill " .. srv.pid .. " 2>/dev/null")
  error("server did not start: " .. (t.readfile(dir .. "/err") or ""))
end

-- Waits (at most 10 s) for the server to exit, kills it if it does not;
-- returns its stdout and stderr.
local function stop(srv)
  os.execute(string.format(
    "i=0; while kill -0 %d 2>/dev/null && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done; kill %d 2>/dev/null",
    srv.pid, srv.pid))
  local out, err = t.readfile(srv.dir .. "/out"), t.readfile(srv.dir .. "/err")
  t.rmtree(srv.dir)
  return out, err
end

local function python(code)
  return t.sh("python3 -c " .. q(code))
end

local DATETIME = "^%d%d%d%d%-%d%d%-%d%d %d%d:%d%d:%d%d"
local WELCOME = "欢迎访问菜鸟教程！\r\n"

t.test("timeserver: netlua client shows the time, server logs the client", function()
  local srv = start("timeserver.lua", "127.0.0.1 0 --count 1")
  local out, err, code = t.netlua(q(SCRIPTS .. "client.lua") .. " 127.0.0.1 " .. srv.port)
  t.eq(code, 0, err)
  t.match(out, DATETIME .. "%.?%d*\n$")
  t.match(err, "connected to 127.0.0.1:" .. srv.port)
  local log = stop(srv)
  t.match(log, "^listening on 127%.0%.0%.1:" .. srv.port .. "\n")
  t.match(log, "connection from 127%.0%.0%.1:%d+\n")
end)

t.test("timeserver: Python's socket module reads the same format", function()
  local srv = start("timeserver.lua", "127.0.0.1 0 --count 1")
  local out = python(string.format([[
import socket
s = socket.create_connection(("127.0.0.1", %d))
data = b""
while True:
    chunk = s.recv(1024)
    if not chunk: break
    data += chunk
print(data.decode("ascii"))
]], srv.port))
  t.match(out, DATETIME .. "%.?%d*\n$")
  stop(srv)
end)

t.test("welcome server: netlua client prints the UTF-8 greeting, no blank line after it", function()
  local srv = start("server.lua", "127.0.0.1 0 --count 1")
  local out = t.netlua(q(SCRIPTS .. "client.lua") .. " 127.0.0.1 " .. srv.port)
  t.eq(out, WELCOME, "the greeting's own CRLF ends it (print added a second line end)")
  stop(srv)
end)

t.test("welcome server: python and nc get the exact bytes", function()
  local srv = start("server.lua", "127.0.0.1 0 --count 2")
  local out = python(string.format([[
import socket, sys
s = socket.create_connection(("127.0.0.1", %d))
data = s.recv(1024)
sys.stdout.write(data.hex())
]], srv.port))
  t.eq(out, (WELCOME:gsub(".", function(c) return string.format("%02x", c:byte()) end)))
  local nc = t.sh("nc -w 5 127.0.0.1 " .. srv.port)
  t.eq(nc, WELCOME)
  stop(srv)
end)

t.test("servers survive clients that vanish, send garbage or never read", function()
  local srv = start("server.lua", "127.0.0.1 0 --count 4")
  local vanish = socket.connect("127.0.0.1", srv.port)
  vanish:close()
  local garbage = socket.connect("127.0.0.1", srv.port)
  garbage:send("\0\255garbage\r\n" .. string.rep("x", 100000))
  garbage:close()
  local lazy = socket.connect("127.0.0.1", srv.port) -- never reads
  local out = t.netlua(q(SCRIPTS .. "client.lua") .. " 127.0.0.1 " .. srv.port)
  t.eq(out, WELCOME)
  lazy:close()
  local log = stop(srv)
  local n = select(2, log:gsub("connection from", ""))
  t.eq(n, 4)
end)

-- Starts timeserver under the lowest descriptor limit it starts with: its
-- listening socket then holds the last free descriptor, so every accept
-- fails with EMFILE. Returns {pid, port, dir} or nil.
local function start_starved()
  for n = 5, 32 do
    local dir = t.tmpdir()
    os.execute(string.format("sh -c 'ulimit -n %d; exec %s %s 127.0.0.1 0' > %s/out 2> %s/err < /dev/null & echo $! > %s/pid",
      n, t.NETLUA, SCRIPTS .. "timeserver.lua", dir, dir, dir))
    local srv = {dir = dir, pid = tonumber(t.readfile(dir .. "/pid"))}
    for _ = 1, 400 do
      local out = t.readfile(dir .. "/out") or ""
      srv.port = tonumber(out:match("listening on [^\n]*:(%d+)"))
      if srv.port or not os.execute("kill -0 " .. srv.pid .. " 2>/dev/null") then break end
      socket.sleep(0.05)
    end
    if srv.port then return srv end
    os.execute("kill -KILL " .. srv.pid .. " 2>/dev/null")
    t.rmtree(dir)
  end
end

t.test("out of descriptors, a server says so once and waits (accept failing spun the loop)", function()
  local srv = start_starved()
  t.ok(srv, "timeserver starts under some descriptor limit")
  local c = assert(socket.connect("127.0.0.1", srv.port)) -- queued: accept fails
  local out
  for _ = 1, 400 do
    out = t.readfile(srv.dir .. "/out") or ""
    if out:find("accept failed") then break end
    socket.sleep(0.05)
  end
  socket.sleep(0.3) -- the server keeps failing meanwhile
  os.execute("kill " .. srv.pid)
  c:close()
  out = stop(srv)
  local n = select(2, out:gsub("accept failed: Too many open files\n", ""))
  t.eq(n, 1, "lines saying accept failed")
end)

t.test("servers listen on ::1 when asked", function()
  local srv = start("timeserver.lua", "::1 0 --count 1")
  local out = t.netlua(q(SCRIPTS .. "client.lua") .. " ::1 " .. srv.port)
  t.match(out, DATETIME)
  local log = stop(srv)
  t.match(log, "^listening on %[::1%]:%d+")
end)

t.test("a taken port: clear message naming address, port and the process holding it, status 1", function()
  local srv = start("server.lua", "127.0.0.1 0 --count 1")
  local _, err, code = t.netlua(q(SCRIPTS .. "timeserver.lua") .. " 127.0.0.1 " .. srv.port)
  t.eq(code, 1)
  t.eq(err, "netlua: cannot listen on 127.0.0.1:" .. srv.port .. ": address already in use\n" ..
    "  port " .. srv.port .. " is held by process " .. srv.pid .. " (netlua): stop it, or use " ..
    "another port (0 lets the system pick a free one)\n")
  t.netlua(q(SCRIPTS .. "client.lua") .. " 127.0.0.1 " .. srv.port)
  stop(srv)
end)

t.test("bad command-line use: message and usage line, status 2, for every server", function()
  local cases = {
    {"timeserver.lua", "127.0.0.1 x", "port must be a number from 0 to 65535, not 'x'"},
    {"server.lua", "127.0.0.1 70000", "port must be a number from 0 to 65535, not '70000'"},
    {"chatserver.lua", "--count 0", "--count must be a whole number from 1 up, not '0'"},
    {"threadedserver.lua", "--workers many", "--workers must be a whole number from 1 up, not 'many'"},
    {"timeserver.lua", "--bogus 1", "unknown option --bogus"},
    {"echoserver.lua", "127.0.0.1 0 extra", "unexpected argument 'extra'"},
    {"tasktimeserver.lua", "--count", "--count needs a value"},
    {"taskchatserver.lua", "--count=2x", "--count must be a whole number from 1 up, not '2x'"},
  }
  for _, c in ipairs(cases) do
    local _, err, code = t.netlua(q(SCRIPTS .. c[1]) .. " " .. c[2])
    t.eq(code, 2, c[1] .. " " .. c[2])
    t.eq(err, "netlua: " .. c[3] .. "\nusage: netlua scripts/" .. c[1] ..
      err:match("usage: netlua scripts/[%w_]+%.lua(.*)$"), c[1])
    t.match(err, "usage: netlua scripts/" .. c[1]:gsub("%.", "%%.") .. " %[host %[port%]%]")
  end
end)

t.test("client: connection refused names address and port, status 1", function()
  local s = socket.tcp4()
  s:bind("127.0.0.1", 0)
  local _, port = s:getsockname()
  s:close()
  local _, err, code = t.netlua(q(SCRIPTS .. "client.lua") .. " 127.0.0.1 " .. port)
  t.eq(code, 1)
  t.eq(err, "netlua: cannot connect to 127.0.0.1:" .. port .. ": connection refused\n" ..
    "  nothing is listening on 127.0.0.1:" .. port .. "; is the server running, and on this port?\n")
end)

t.test("timeserver on its default port 6789 and the client as in the tutorial", function()
  local probe = socket.bind("127.0.0.1", 6789)
  if not probe then
    t.skip("default port", "6789 is taken on this machine")
    return
  end
  probe:close()
  -- Another program may take the port between the probe and the start.
  local started, srv = pcall(start, "timeserver.lua", "--count 1")
  if not started and tostring(srv):find("address already in use", 1, true) then
    t.skip("default port", "6789 was taken while the test ran")
    return
  end
  assert(started, srv)
  t.eq(srv.port, 6789)
  local out = t.netlua(q(SCRIPTS .. "client.lua") .. " 127.0.0.1 6789")
  t.match(out, DATETIME)
  stop(srv)
end)

t.test("udp_echo: server echoes to the netlua client and to python", function()
  local srv = start("udp_echo.lua", "server 127.0.0.1 0 --count 2")
  local out, err, code = t.netlua(q(SCRIPTS .. "udp_echo.lua") .. " client 127.0.0.1 " .. srv.port .. " 'héllo wörld'")
  t.eq(code, 0, err)
  t.eq(out, "reply from 127.0.0.1:" .. srv.port .. ": héllo wörld\n")
  local py = python(string.format([[
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
s.sendto(b"\x00raw\xff", ("127.0.0.1", %d))
print(s.recvfrom(100)[0].hex())
]], srv.port))
  t.eq(py, "00726177ff\n")
  local log = stop(srv)
  t.match(log, "listening on 127%.0%.0%.1:%d+ %(udp%)")
  t.match(log, "13 bytes from 127%.0%.0%.1:%d+, echoed")
end)

t.test("udp_echo: a datagram larger than 8 KiB comes back whole (it was cut to 8192 bytes)", function()
  local srv = start("udp_echo.lua", "server 127.0.0.1 0 --count 1")
  local u = assert(socket.udp())
  u:settimeout(10)
  assert(u:setpeername("127.0.0.1", srv.port))
  local big = string.rep("0123456789abcdef", 3000) -- 48000 bytes
  assert(u:send(big))
  local reply = u:receive(65535)
  t.eq(reply and #reply, #big)
  t.ok(reply == big, "same bytes")
  u:close()
  t.match(stop(srv), "48000 bytes from")
end)

t.test("udp_echo: client without a server says so", function()
  local u = socket.udp()
  u:setsockname("127.0.0.1", 0)
  local _, port = u:getsockname()
  u:close()
  local _, err, code = t.netlua(q(SCRIPTS .. "udp_echo.lua") .. " client 127.0.0.1 " .. port)
  t.eq(code, 1)
  t.eq(err, "netlua: no reply from 127.0.0.1:" .. port .. " (udp): connection refused\n")
end)

t.test("ping: ICMP echo to 127.0.0.1 prints round-trip times", function()
  local out, err, code = t.netlua(q(SCRIPTS .. "ping.lua") .. " 127.0.0.1 -c 2 -i 0.05")
  if code ~= 0 and err:find("need root") then
    t.skip("ping", "no raw or icmp datagram sockets here")
    return
  end
  t.eq(code, 0, err)
  t.match(out, "^PING 127%.0%.0%.1 %(127%.0%.0%.1%)")
  t.match(out, "from 127%.0%.0%.1: icmp_seq=1 [^\n]*time=%d+%.%d+ ms\n")
  t.match(out, "icmp_seq=2")
  t.match(out, "2 packets transmitted, 2 received, 0%% packet loss")
  t.match(out, "rtt min/avg/max = [%d%.]+/[%d%.]+/[%d%.]+ ms")
end)

-- ---- every script: one way to take arguments, --help, errors naming the address

local ALL = {"timeserver.lua", "server.lua", "client.lua", "udp_echo.lua", "ping.lua",
  "chatserver.lua", "chatclient.lua", "threadedserver.lua", "echoserver.lua",
  "tasktimeserver.lua", "taskchatserver.lua", "imageapi.lua", "downloader.lua", "demo.lua",
  "gallery.lua", "webchat.lua"}

t.test("--help and -h: the usage line and what the script does, on stdout, status 0", function()
  for _, name in ipairs(ALL) do
    for _, flag in ipairs{"--help", "-h"} do
      local out, err, code = t.netlua(q(SCRIPTS .. name) .. " " .. flag)
      t.eq(code, 0, name .. " " .. flag .. ": " .. err)
      t.eq(err, "", name .. " " .. flag)
      t.match(out, "^usage: netlua scripts/" .. name:gsub("%.", "%%.") .. "[^\n]*\n", name)
      t.ok(#out > 80, name .. " explains itself: " .. out)
    end
  end
end)

t.test("bad use of any script: 'netlua: <what>' and its usage line, status 2", function()
  for _, name in ipairs(ALL) do
    local _, err, code = t.netlua(q(SCRIPTS .. name) .. " --no-such-option")
    t.eq(code, 2, name)
    t.match(err, "^netlua: unknown option %-%-no%-such%-option\nusage: netlua scripts/" ..
      name:gsub("%.", "%%."), name)
  end
end)

t.test("udp_echo client: a bad port is a usage error naming it (it sent to port nil)", function()
  local _, err, code = t.netlua(q(SCRIPTS .. "udp_echo.lua") .. " client 127.0.0.1 abc")
  t.eq(code, 2)
  t.match(err, "^netlua: port must be a number from 1 to 65535, not 'abc'\nusage: ")
  _, err, code = t.netlua(q(SCRIPTS .. "udp_echo.lua") .. " client 127.0.0.1 0")
  t.eq(code, 2, "no datagram goes to port 0")
  _, err, code = t.netlua(q(SCRIPTS .. "udp_echo.lua") .. " sever")
  t.eq(code, 2)
  t.match(err, "^netlua: the first argument must be server or client, not 'sever'\n")
end)

t.test("udp_echo server: --count x is a usage error (it was ignored)", function()
  -- bounded: a server that ignores the bad count serves forever
  local _, err, code = t.sh("timeout -s KILL 10 " .. q(t.NETLUA) .. " " .. q(SCRIPTS .. "udp_echo.lua") ..
    " server 127.0.0.1 0 --count x")
  t.eq(code, 2)
  t.match(err, "^netlua: %-%-count must be a whole number from 1 up, not 'x'\n")
  _, err, code = t.netlua(q(SCRIPTS .. "udp_echo.lua") .. " client 127.0.0.1 9 --count 2")
  t.eq(code, 2, "--count is the server's")
  t.match(err, "^netlua: unknown option %-%-count\n")
end)

t.test("chatclient: a bad port is a usage error (it printed a traceback)", function()
  local _, err, code = t.netlua(q(SCRIPTS .. "chatclient.lua") .. " 127.0.0.1 http")
  t.eq(code, 2)
  t.eq(err, "netlua: port must be a number from 1 to 65535, not 'http'\n" ..
    "usage: netlua scripts/chatclient.lua [host [port]]\n")
end)

-- A loopback port nothing listens on.
local function free_port()
  local s = socket.tcp4()
  s:bind("127.0.0.1", 0)
  local _, port = s:getsockname()
  s:close()
  return port
end

t.test("chatclient: a refused connection names the address, status 1", function()
  local port = free_port()
  local _, err, code = t.netlua(q(SCRIPTS .. "chatclient.lua") .. " 127.0.0.1 " .. port)
  t.eq(code, 1)
  t.eq(err, "netlua: cannot connect to 127.0.0.1:" .. port .. ": connection refused\n" ..
    "  nothing is listening on 127.0.0.1:" .. port .. "; is the server running, and on this port?\n")
end)

t.test("imageapi: --port 80000 is a usage error (it was a traceback)", function()
  local out, err, code = t.netlua(q(SCRIPTS .. "imageapi.lua") .. " --port 80000")
  t.eq(code, 2, out)
  t.match(err, "^netlua: %-%-port must be a number from 0 to 65535, not '80000'\nusage: netlua scripts/imageapi%.lua")
  t.ok(not err:find("traceback"), err)
end)

t.test("imageapi: a busy port is reported with its address", function()
  local busy = assert(socket.bind("127.0.0.1", 0))
  local _, port = busy:getsockname()
  local _, err, code = t.netlua(q(SCRIPTS .. "imageapi.lua") .. " --port " .. port)
  busy:close()
  t.eq(code, 1)
  t.eq(err, "netlua: cannot listen on 127.0.0.1:" .. port .. ": address already in use\n")
end)

-- Starts imageapi.lua on a free port (`args` added) and returns its
-- endpoint and a function that stops it.
local function start_imageapi(args, env)
  local dir = t.tmpdir()
  os.execute(string.format("%s%s %s --port 0 --portfile %s/port --lifetime 60 %s > %s/out 2>&1 & echo $! > %s/pid",
    env or "", q(t.NETLUA), q(SCRIPTS .. "imageapi.lua"), dir, args or "", dir, dir))
  local port
  for _ = 1, 400 do
    port = tonumber(t.readfile(dir .. "/port") or "")
    if port then break end
    socket.sleep(0.05)
  end
  assert(port, "imageapi did not start: " .. tostring(t.readfile(dir .. "/out")))
  return "http://127.0.0.1:" .. port .. "/meinv/", function()
    os.execute("kill " .. t.readfile(dir .. "/pid") .. " 2>/dev/null")
    t.rmtree(dir)
  end
end

local function downloader(args, env)
  return t.sh(string.format("%s%s %s %s", env or "", q(t.NETLUA), q(SCRIPTS .. "downloader.lua"), args))
end

t.test("imageapi.lua and downloader.lua --api work together with no key given (the downloader sent an empty one)", function()
  local api, stop_api = start_imageapi()
  local dir = t.tmpdir()
  local out, err, code = downloader("--api " .. api .. " --num 2 --out " .. dir)
  stop_api()
  t.eq(code, 0, err)
  t.match(out, "downloaded 2 of 2 images")
  t.rmtree(dir)
end)

t.test("both take the key from --key, else IMAGEAPI_KEY", function()
  local api, stop_api = start_imageapi(nil, "IMAGEAPI_KEY=s3cret ")
  local dir = t.tmpdir()
  local out, err, code = downloader("--api " .. api .. " --num 1 --out " .. dir, "IMAGEAPI_KEY=s3cret ")
  t.eq(code, 0, err)
  out, err, code = downloader("--api " .. api .. " --key s3cret --num 1 --out " .. dir)
  t.eq(code, 0, err)
  out, err, code = downloader("--api " .. api .. " --num 1 --out " .. dir)
  stop_api()
  t.eq(code, 1, out)
  t.rmtree(dir)
end)

t.test("a wrong key: the API's own message, translated, the address and how to set the key", function()
  local api, stop_api = start_imageapi("--key right")
  local dir = t.tmpdir()
  local _, err, code = downloader("--api " .. api .. " --key wrong --num 1 --out " .. dir)
  stop_api()
  t.eq(code, 1)
  t.eq(err, "netlua: the API " .. api .. " answered error code 230: key错误或为空 (wrong or empty key); " ..
    "the key is --key K, else $IMAGEAPI_KEY, else netlua-demo-key (what imageapi.lua accepts by default)\n")
  t.rmtree(dir)
end)

t.test("downloader: an unreachable API and an HTTP error name the API's address", function()
  local port = free_port()
  local api = "http://127.0.0.1:" .. port .. "/meinv/"
  local _, err, code = downloader("--api " .. api .. " --retries 1 --out /tmp/netlua-never-made")
  t.eq(code, 1)
  t.match(err, "^netlua: cannot reach the API " .. api:gsub("%p", "%%%0") .. ": ")
  local root, stop_api = start_imageapi()
  _, err, code = downloader("--api " .. root .. "nothing-here --retries 1 --out /tmp/netlua-never-made")
  stop_api()
  t.eq(code, 1)
  t.match(err, "^netlua: the API " .. (root .. "nothing-here"):gsub("%p", "%%%0") .. " answered HTTP 404")
end)

-- ---- ping: IPv4 and IPv6

local function ping(args)
  return t.netlua(q(SCRIPTS .. "ping.lua") .. " " .. args)
end

local function ping_skipped(err)
  return err:find("need root", 1, true) or err:find("not permitted", 1, true)
end

t.test("ping ::1: ICMPv6 echo (it said 'host not found')", function()
  local out, err, code = ping("::1 -c 2 -i 0.05")
  if code ~= 0 and ping_skipped(err) then
    return t.skip("ping ::1", "no raw ICMPv6 or ICMPv6 datagram sockets here: " .. err)
  end
  if code ~= 0 and err:lower():find("address family not supported", 1, true) then
    return t.skip("ping ::1", "no IPv6 here")
  end
  t.eq(code, 0, err)
  t.match(out, "^PING ::1 %(::1%): 56 data bytes")
  t.match(out, "64 bytes from ::1: icmp_seq=1 time=%d+%.%d+ ms\n")
  t.match(out, "2 packets transmitted, 2 received, 0%% packet loss")
end)

t.test("ping without the privilege says what it needs, status 1", function()
  if not os.execute("command -v setpriv >/dev/null 2>&1") or
     not os.execute("setpriv --reuid=65534 --regid=65534 --clear-groups true 2>/dev/null") then
    return t.skip("ping unprivileged", "cannot drop privileges here (setpriv as root)")
  end
  local drop = "setpriv --reuid=65534 --regid=65534 --clear-groups "
  for _, host in ipairs{"127.0.0.1", "::1"} do
    local out, err, code = t.sh(drop .. q(t.NETLUA) .. " " .. q(SCRIPTS .. "ping.lua") .. " " .. host .. " -c 1")
    if code == 0 then
      t.match(out, "icmp datagram socket", "unprivileged ICMP sockets are allowed here")
    else
      t.eq(code, 1, err)
      t.match(err, "^netlua: cannot ping " .. host:gsub("%p", "%%%0") ..
        ": raw sockets need root or CAP_NET_RAW")
    end
  end
end)

t.test("ping: -c x, -i 0 and -4 with -6 are usage errors", function()
  for _, args in ipairs{"-c x", "-i 0", "-4 -6", "127.0.0.1 ::1"} do
    local _, err, code = ping(args)
    t.eq(code, 2, args)
    t.match(err, "usage: netlua scripts/ping%.lua", args)
  end
end)

t.done()
