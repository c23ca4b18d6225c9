-- test_socket_tcp.lua: the socket module's TCP objects, luasocket's way:
-- classes, connect/bind/listen/accept, receive patterns, partial results,
-- send indices, timeouts, errors, big and binary payloads, IPv6, closing.
local t = require "testlib"
local socket = require "socket"

-- A connected pair on loopback: client, the server's side of it, server.
local function pair(host)
  local server = assert(socket.bind(host or "127.0.0.1", 0))
  local ip, port = server:getsockname()
  local client = assert(socket.connect(ip, port))
  local peer = assert(server:accept())
  return client, peer, server
end

local function closeall(...)
  for _, s in ipairs({...}) do s:close() end
end

t.test("classes and tostring follow luasocket", function()
  local m = socket.tcp()
  t.eq(m.class, "tcp{master}")
  t.match(tostring(m), "^tcp{master}: 0x%x+$")
  local c, p, s = pair()
  t.eq(s.class, "tcp{server}")
  t.match(tostring(s), "^tcp{server}: ")
  t.eq(c.class, "tcp{client}")
  t.eq(p.class, "tcp{client}")
  t.match(tostring(c), "^tcp{client}: ")
  closeall(m, c, p, s)
end)

t.test("methods check the class as luasocket does", function()
  local c, p, s = pair()
  t.raises("tcp{server} expected", c.accept, c)
  t.raises("tcp{client} expected", s.receive, s)
  t.raises("tcp{master} expected", c.bind, c, "127.0.0.1", 0)
  t.raises("socket expected", socket.tcp().close, {})
  closeall(c, p, s)
end)

t.test("tcp() has no descriptor until bind or connect; tcp4/tcp6 have one", function()
  local m = socket.tcp()
  t.eq(m:getfd(), -1)
  t.eq(m:getfamily(), "inet4")
  local m4, m6 = socket.tcp4(), socket.tcp6()
  t.ok(m4:getfd() >= 0)
  t.eq(m4:getfamily(), "inet4")
  t.eq(m6:getfamily(), "inet6")
  closeall(m, m4, m6)
end)

t.test("bind, listen, accept, connect return luasocket's values", function()
  local s = socket.tcp()
  t.eq(s:bind("127.0.0.1", 0), 1)
  t.eq(s:listen(), 1)
  t.eq(s.class, "tcp{server}")
  local ip, port, fam = s:getsockname()
  t.eq(ip, "127.0.0.1")
  t.eq(type(port), "string", "luasocket gives the port as a string")
  t.ok(tonumber(port) > 0)
  t.eq(fam, "inet")
  local c = socket.tcp()
  t.eq(c:connect("127.0.0.1", port), 1)
  t.eq(c.class, "tcp{client}")
  local p = s:accept()
  local pip, pport = p:getpeername()
  local cip, cport = c:getsockname()
  t.eq(pip, cip)
  t.eq(pport, tonumber(cport), "luasocket 3.1: getpeername's port is a number")
  local rip, rport = c:getpeername()
  t.eq(rip, "127.0.0.1")
  t.eq(rport, tonumber(port))
  closeall(c, p, s)
end)

t.test("receive *l strips CR and LF, l works without the star", function()
  local c, p, s = pair()
  c:send("one\r\ntw\ro\nthree\n")
  t.eq(p:receive("*l"), "one")
  t.eq(p:receive("l"), "two")
  local line, err, partial = p:receive()
  t.eq(line, "three")
  t.eq(err, nil)
  t.eq(partial, nil)
  closeall(c, p, s)
end)

t.test("receive N and the prefix argument", function()
  local c, p, s = pair()
  c:send("abcdefgh")
  t.eq(p:receive(3), "abc")
  t.eq(p:receive(4, "xy"), "xyde")
  t.eq(p:receive(2, "long prefix"), "long prefix")
  t.eq(p:receive(0), "")
  t.eq(p:receive(3), "fgh", "nothing was consumed by the prefix-only calls")
  closeall(c, p, s)
end)

t.test("receive(0) on a closed socket gave \"\"; it is nil, 'closed' as luasocket's", function()
  local c, p, s = pair()
  t.eq(p:receive(0), "", "nothing to read: \"\" at once (luasocket's waits)")
  c:send("x")
  t.eq(p:receive(0), "", "data there: it takes none")
  t.eq(p:receive(0, "pre"), "pre", "a prefix that holds the count: no read")
  t.eq(p:receive(1), "x")
  c:close()
  t.eq(select(2, p:receive(0)), "closed", "the peer closed")
  p:close()
  local data, err, partial = p:receive(0)
  t.eq(data, nil)
  t.eq(err, "closed")
  t.eq(partial, "")
  closeall(c, p, s)
end)

t.test("receive, recv and send that need no wait allocate nothing (in a task and outside)", function()
  local task = require "task"
  local c, p, s = pair()
  local function calls()
    assert(p:receive(1) == "x") -- fills the socket's buffer with what was sent
    local before = collectgarbage("count")
    for _ = 1, 200 do
      assert(p:receive(1) == "x") -- one-byte strings are interned: no allocation
      assert(p:recv(1) == "x")
      assert(p:send("y") == 1)
    end
    return collectgarbage("count") - before
  end
  collectgarbage("stop")
  c:send(string.rep("x", 401))
  t.eq(calls(), 0, "outside tasks")
  c:send(string.rep("x", 401))
  local ok, grown = task.spawn(calls):join()
  t.eq(ok, true, grown)
  t.eq(grown, 0, "in a task")
  collectgarbage("restart")
  closeall(c, p, s)
end)

t.test("receive *a reads until the peer closes", function()
  local c, p, s = pair()
  c:send("all of it\nand more")
  c:close()
  t.eq(p:receive("*a"), "all of it\nand more")
  local d, err, partial = p:receive("*a")
  t.eq(d, nil)
  t.eq(err, "closed")
  t.eq(partial, "")
  closeall(p, s)
end)

t.test("receive on close mid-line gives nil, 'closed', partial", function()
  local c, p, s = pair()
  c:send("no newline")
  c:close()
  local d, err, partial = p:receive()
  t.eq(d, nil)
  t.eq(err, "closed")
  t.eq(partial, "no newline")
  d, err, partial = p:receive(5)
  t.eq(err, "closed")
  t.eq(partial, "")
  closeall(p, s)
end)

t.test("receive timeout gives nil, 'timeout', partial", function()
  local c, p, s = pair()
  c:send("part")
  p:settimeout(0.05)
  local d, err, partial = p:receive(10)
  t.eq(d, nil)
  t.eq(err, "timeout")
  t.eq(partial, "part")
  d, err, partial = p:receive("*l")
  t.eq(err, "timeout")
  t.eq(partial, "")
  closeall(c, p, s)
end)

t.test("settimeout 't' bounds the whole call, 'b' each wait", function()
  local c, p, s = pair()
  t.eq(p:settimeout(0.05, "t"), 1)
  c:send("ab")
  local d, err, partial = p:receive(3)
  t.eq(err, "timeout")
  t.eq(partial, "ab")
  p:settimeout(nil, "t")
  p:settimeout(0)
  d, err = p:receive(1)
  t.eq(err, "timeout", "zero timeout does not block")
  p:settimeout(-1)
  c:send("z")
  t.eq(p:receive(1), "z", "negative timeout blocks until data")
  t.raises("invalid timeout mode", p.settimeout, p, 1, "x")
  closeall(c, p, s)
end)

t.test("max-line: a longer line gives nil, 'line too long', its first n bytes; the rest stays readable", function()
  local c, p, s = pair()
  t.eq(p:getoption("max-line"), math.huge, "no limit by default")
  t.eq(p:setoption("max-line", 5), 1)
  t.eq(p:getoption("max-line"), 5)
  c:send("abcde\r\nabcdefgh\nxy\n")
  t.eq(p:receive("*l"), "abcde", "a line of exactly n bytes (CR not counted)")
  local line, err, partial = p:receive("*l")
  t.eq(line, nil)
  t.eq(err, "line too long")
  t.eq(partial, "abcde")
  t.eq(p:receive("*l"), "fgh", "the rest of the long line was left unread")
  t.eq(p:receive("*l"), "xy")
  c:send("56\n")
  line, err, partial = p:receive("*l", "1234")
  t.eq(err, "line too long", "the prefix counts")
  t.eq(partial, "12345")
  t.eq(p:receive("*l"), "6")
  t.eq(p:receive(3, "too long prefix"), "too long prefix", "counts and *a have no limit")
  t.eq(p:setoption("max-line", math.huge), 1)
  t.eq(p:getoption("max-line"), math.huge)
  c:send(string.rep("z", 100) .. "\n")
  t.eq(p:receive("*l"), string.rep("z", 100))
  for _, bad in ipairs({0, -1, 1.5, 0/0}) do
    t.raises("max-line must be a positive integer or math.huge", p.setoption, p, "max-line", bad)
  end
  t.raises("unsupported option `max-line'", function()
    socket.udp():setoption("max-line", 5)
  end)
  closeall(c, p, s)
end)

t.test("max-line: a line cut by a timeout and completed with its prefix is still bounded", function()
  local c, p, s = pair()
  p:setoption("max-line", 5)
  p:settimeout(0.05)
  c:send("abc")
  local line, err, partial = p:receive("*l")
  t.eq(err, "timeout")
  t.eq(partial, "abc")
  c:send("defg\nok\n")
  line, err, partial = p:receive("*l", partial)
  t.eq(line, nil)
  t.eq(err, "line too long")
  t.eq(partial, "abcde")
  t.eq(p:receive("*l"), "fg")
  t.eq(p:receive("*l"), "ok")
  closeall(c, p, s)
end)

t.test("max-line: a client accepted by a server with a limit has the same limit", function()
  local server = assert(socket.bind("127.0.0.1", 0))
  server:setoption("max-line", 4096)
  local _, port = server:getsockname()
  local c = assert(socket.connect("127.0.0.1", port))
  local p = assert(server:accept())
  t.eq(p:getoption("max-line"), 4096)
  local big = string.rep("x", 1024 * 1024)
  local thread = require "thread"
  local sender = thread.spawn(function(sock, data) return sock:send(data) end, c, big)
  local line, err, partial = p:receive("*l")
  t.eq(err, "line too long")
  t.eq(#partial, 4096, "no more than the limit was gathered")
  p:close()
  sender:join()
  server:close()
end)

t.test("a long line that arrives in many small pieces is received whole, without recopying it at each piece", function()
  local c, p, s = pair()
  local thread = require "thread"
  local piece, n = string.rep("y", 1024), 256
  local feeder = thread.spawn(function(sock, data, count)
    local time = require "time"
    for _ = 1, count do
      sock:send(data)
      time.sleep(0.001) -- the reader takes each piece in a round of its own
    end
    sock:send("\r\n")
    sock:close()
  end, c, piece, n)
  p:settimeout(10)
  collectgarbage("collect")
  collectgarbage("stop")
  local before = collectgarbage("count")
  local line, err = p:receive("*l")
  local allocated = (collectgarbage("count") - before) * 1024
  collectgarbage("restart")
  feeder:join()
  t.eq(err, nil)
  t.ok(line == string.rep(piece, n), "the line arrived whole")
  -- Each round used to copy the whole line so far: about n/2 times its size.
  t.ok(allocated < 8 * #line, string.format("allocated %d bytes for a %d-byte line", allocated, #line))
  closeall(p, s)
end)

t.test("send returns the last index; i and j select a slice", function()
  local c, p, s = pair()
  t.eq(c:send("hello"), 5)
  t.eq(c:send("0123456789", 3, 5), 5)
  t.eq(c:send("0123456789", -3), 10)
  t.eq(c:send(""), 0)
  t.eq(p:receive(5 + 3 + 3), "hello234789")
  closeall(c, p, s)
end)

t.test("send to a closed socket gives nil, 'closed', last index", function()
  local c, p, s = pair()
  c:close()
  local r, err, last = c:send("x")
  t.eq(r, nil)
  t.eq(err, "closed")
  t.eq(last, 0)
  closeall(p, s)
end)

t.test("send to a peer that went away says 'closed', SIGPIPE does not kill", function()
  local c, p, s = pair()
  p:close()
  local err
  for _ = 1, 100 do
    local r, e = c:send(string.rep("x", 65536))
    if not r then err = e break end
  end
  t.eq(err, "closed")
  closeall(c, s)
end)

t.test("binary data and megabytes round-trip intact", function()
  local c, p, s = pair()
  local parts = {}
  for i = 0, 3 * 1024 * 1024 / 256 - 1 do
    parts[#parts + 1] = string.char(i % 256) .. string.rep("\0\255\128", 85)
  end
  local data = table.concat(parts)
  t.eq(#data, 3 * 1024 * 1024)
  c:settimeout(0)
  p:settimeout(0)
  local got, last = {}, 0
  while last < #data do -- pump: partial sends interleaved with receives
    local r, err, idx = c:send(data, last + 1)
    last = r or idx
    if not r then t.eq(err, "timeout") end
    local chunk, _, partial = p:receive(65536)
    got[#got + 1] = chunk or partial
  end
  p:settimeout(1)
  local have = #table.concat(got)
  got[#got + 1] = p:receive(#data - have)
  t.ok(table.concat(got) == data, "payload differs")
  closeall(c, p, s)
end)

t.test("recv(n) returns whatever is there, up to n; nil, 'closed' at the end", function()
  local c, p, s = pair()
  c:send("12345")
  t.eq(p:recv(3), "123")
  t.eq(p:recv(1024), "45")
  p:settimeout(0.02)
  local d, err = p:recv(10)
  t.eq(d, nil)
  t.eq(err, "timeout")
  c:close()
  d, err = p:recv(10)
  t.eq(d, nil)
  t.eq(err, "closed")
  closeall(p, s)
end)

t.test("connection refused", function()
  local s = socket.tcp4()
  s:bind("127.0.0.1", 0)
  local _, port = s:getsockname()
  s:close() -- nobody listens on port now
  local c, err = socket.connect("127.0.0.1", port)
  t.eq(c, nil)
  t.eq(err, "connection refused")
  local m = socket.tcp()
  t.eq(select(2, m:connect("127.0.0.1", port)), "connection refused")
  m:close()
end)

t.test("address already in use", function()
  local s = assert(socket.bind("127.0.0.1", 0))
  local _, port = s:getsockname()
  local s2, err = socket.bind("127.0.0.1", port)
  t.eq(s2, nil)
  t.eq(err, "address already in use")
  local m = socket.tcp()
  t.eq(select(2, m:bind("127.0.0.1", port)), "address already in use")
  closeall(m, s)
end)

t.test("socket.bind sets reuseaddr so a restarted server binds at once", function()
  local c, p, s = pair()
  t.eq(s:getoption("reuseaddr"), true)
  local _, port = s:getsockname()
  p:close() -- server side closes first: TIME_WAIT on the server's port
  c:close()
  s:close()
  local s2, err = socket.bind("127.0.0.1", port)
  t.ok(s2, err)
  s2:close()
end)

t.test("accept honours the timeout", function()
  local s = assert(socket.bind("127.0.0.1", 0))
  s:settimeout(0.02)
  local c, err = s:accept()
  t.eq(c, nil)
  t.eq(err, "timeout")
  s:close()
end)

t.test("connect honours the timeout when the backlog is full", function()
  local s = socket.tcp4()
  s:bind("127.0.0.1", 0)
  s:listen(0)
  local ip, port = s:getsockname()
  local queued, timedout = {}, false
  for _ = 1, 8 do
    local c = socket.tcp4()
    c:settimeout(0.2)
    local ok, err = c:connect(ip, port)
    queued[#queued + 1] = c
    if not ok then
      t.eq(err, "timeout")
      timedout = true
      break
    end
  end
  t.ok(timedout, "a connect to a full backlog times out")
  for _, c in ipairs(queued) do c:close() end
  s:close()
end)

t.test("non-blocking connect: timeout, then writable, then already connected", function()
  local s = assert(socket.bind("127.0.0.1", 0))
  local ip, port = s:getsockname()
  local c = socket.tcp()
  c:settimeout(0)
  -- as luasocket on Linux: "timeout" at once (timeout 0 never polls); once
  -- writable, connecting again completes (1) and a third time answers
  -- "already connected"
  local ok, err = c:connect(ip, port)
  t.eq(ok, nil)
  t.eq(err, "timeout")
  local _, w = socket.select(nil, {c}, 1)
  t.eq(w[1], c)
  t.eq(c:connect(ip, port), 1)
  t.eq(tostring(c):match("^[^:]+"), "tcp{client}")
  ok, err = c:connect(ip, port)
  t.eq(ok, nil)
  t.eq(err, "already connected")
  closeall(c, s)
end)

t.test("shutdown('send') lets the peer see the end", function()
  local c, p, s = pair()
  c:send("bye")
  t.eq(c:shutdown("send"), 1)
  t.eq(p:receive("*a"), "bye")
  t.raises("invalid option", c.shutdown, c, "sideways")
  closeall(c, p, s)
end)

t.test("close is idempotent and a closed socket reads 'closed'", function()
  local c, p, s = pair()
  t.eq(c:close(), 1)
  t.eq(c:close(), 1)
  t.eq(c:getfd(), -1)
  local d, err = c:receive()
  t.eq(d, nil)
  t.eq(err, "closed")
  closeall(p, s)
end)

-- What descriptor `fd` of this process is ("socket:[123]"), or "".
local function fdlink(fd)
  local f = io.open("/proc/self/stat")
  local pid = f:read("n")
  f:close()
  local p = io.popen(string.format("readlink /proc/%d/fd/%d 2>/dev/null", pid, fd))
  local link = p:read("a")
  p:close()
  return link
end

t.test("to-be-closed and garbage-collected sockets close their descriptor", function()
  local outer, fd
  do
    local s <close> = socket.tcp4()
    outer, fd = s, s:getfd()
    t.match(fdlink(fd), "^socket:")
  end
  t.eq(outer:getfd(), -1)
  t.ok(not fdlink(fd):find("^socket:"), "<close> closed the descriptor")
  local g = socket.tcp4()
  fd = g:getfd()
  t.match(fdlink(fd), "^socket:")
  g = nil -- luacheck: ignore
  collectgarbage()
  collectgarbage()
  t.ok(not fdlink(fd):find("^socket:"), "__gc closed the descriptor")
end)

t.test("dirty, getstats, setstats, getfd, setfd", function()
  local c, p, s = pair()
  c:send("line1\nline2\n")
  t.eq(p:dirty(), false)
  t.eq(p:receive(), "line1")
  t.eq(p:dirty(), true)
  local r, snt, age = c:getstats()
  t.eq(r, 0)
  t.eq(snt, 12)
  t.ok(age >= 0)
  t.eq(c:setstats(5, 6, 0), 1)
  r, snt = c:getstats()
  t.eq(r, 5)
  t.eq(snt, 6)
  local fd = c:getfd()
  c:setfd(-1)
  t.eq(c:getfd(), -1)
  c:setfd(fd)
  t.eq(c:send("x"), 1)
  closeall(c, p, s)
end)

t.test("IPv6 on ::1", function()
  local c, p, s = pair("::1")
  local ip, _, fam = s:getsockname()
  t.eq(ip, "::1")
  t.eq(fam, "inet6")
  t.eq(c:getfamily(), "inet6")
  c:send("over six\n")
  t.eq(p:receive(), "over six")
  closeall(c, p, s)
  local m = socket.tcp6()
  t.eq(m:bind("::1", 0), 1)
  m:close()
end)

t.test("socket.connect tries every address a name resolves to", function()
  local hosts = t.tmpdir() .. "/hosts"
  t.writefile(hosts, "::1 dual.test\n127.0.0.1 dual.test\n")
  local probe = select(3, t.sh("unshare -m sh -c 'mount --bind " .. hosts .. " /etc/hosts && getent ahosts dual.test' | grep -q '^::1'"))
  if probe ~= 0 then
    t.skip("connect address loop", "needs unshare -m (root)")
    return
  end
  local script = t.script([[
    local socket = require "socket"
    local s = assert(socket.bind("127.0.0.1", 0))   -- IPv4 only: ::1 refuses
    local _, port = s:getsockname()
    local c, err = socket.connect("dual.test", port)
    print(c and "connected " .. c:getfamily() or err)
    local m = socket.tcp()
    m:settimeout(2)
    print(m:connect("dual.test", port) and "connected " .. m:getfamily() or "failed")
  ]])
  local out = t.sh("unshare -m sh -c 'mount --bind " .. hosts .. " /etc/hosts && exec " ..
    t.shellquote(t.NETLUA) .. " " .. script .. "'")
  t.eq(out, "connected inet4\nconnected inet4\n")
end)

-- The start of a script that plays a name server that never answers: a UDP
-- socket on the first free 127.0.53.N:53, written into the resolv.conf that
-- the test bind-mounts over /etc/resolv.conf (its path in $RESOLV). Each
-- run picks its own address: two suites running at once (a developer's
-- machine) used to collide on one fixed address ("address already in use").
local SILENT_DNS = [[
    local socket = require "socket"
    local dns = socket.udp()
    local addr
    for i = 1, 254 do
      if dns:setsockname("127.0.53." .. i, 53) then addr = "127.0.53." .. i break end
    end
    assert(addr, "no free loopback address for the silent name server")
    local f = assert(io.open(os.getenv("RESOLV"), "w"))
    f:write("nameserver ", addr, "\noptions timeout:5 attempts:2\n")
    f:close()
]]

t.test("name resolution counts against the connect timeout", function()
  local dir = t.tmpdir()
  t.writefile(dir .. "/resolv.conf", "")
  local script = t.script(SILENT_DNS .. [[
    local c = socket.tcp()
    c:settimeout(0.2)
    print(c:connect("slow.example", 80))
    c:settimeout(0.2, "t")
    print(c:connect("slow.example", 80))
  ]])
  local mount = "unshare -m sh -c 'mount --bind " .. dir .. "/resolv.conf /etc/resolv.conf && RESOLV=" ..
    dir .. "/resolv.conf "
  if t.sh(mount .. "echo mounted'") ~= "mounted\n" then
    t.rmtree(dir)
    t.skip("resolution timeout", "needs unshare -m and mount (root)")
    return
  end
  local out, err = t.sh(mount .. "exec " .. t.shellquote(t.NETLUA) .. " " .. script .. "'")
  t.rmtree(dir)
  local why = "the name lookup of 'slow.example' did not finish within the timeout (phase: lookup): " ..
    "the name server (/etc/resolv.conf) did not answer"
  t.eq(out, "nil\ttimeout\t" .. why .. "\nnil\ttimeout\t" .. why .. "\n", err)
end)

t.test("Ctrl-C interrupts a name resolution", function()
  local dir = t.tmpdir()
  t.writefile(dir .. "/resolv.conf", "")
  local mount = "unshare -m sh -c 'mount --bind " .. dir .. "/resolv.conf /etc/resolv.conf && RESOLV=" ..
    dir .. "/resolv.conf "
  if t.sh(mount .. "echo mounted'") ~= "mounted\n" then
    t.rmtree(dir)
    t.skip("interrupted resolution", "needs unshare -m and mount (root)")
    return
  end
  local script = t.script(SILENT_DNS .. [[
    local ok, err = pcall(function() -- "ready" inside: an early Ctrl-C lands here too
      print("ready") io.stdout:flush()
      return socket.dns.toip("slow.example")
    end)
    print("caught: " .. tostring(err))
  ]])
  t.writefile(dir .. "/run.sh", table.concat({
    mount .. "exec " .. t.shellquote(t.NETLUA) .. " " .. script .. "' > " .. dir .. "/out 2>&1 < /dev/null &",
    "pid=$!",
    "i=0; while ! grep -q ready " .. dir .. "/out && [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done",
    "kill -INT $pid",
    "( sleep 20; kill -KILL $pid ) >/dev/null 2>&1 & guard=$!",
    "wait $pid; status=$?; kill $guard 2>/dev/null; exit $status",
  }, "\n") .. "\n")
  local _, _, code = t.sh("sh " .. dir .. "/run.sh")
  local out = t.readfile(dir .. "/out")
  t.rmtree(dir)
  t.eq(code, 0)
  t.eq(out, "ready\ncaught: interrupted\n")
end)

t.test("Ctrl-C interrupts a blocking accept", function()
  local script = t.script([[
    local socket = require "socket"
    local s = assert(socket.bind("127.0.0.1", 0))
    local ok, err = pcall(function() -- "ready" inside: an early Ctrl-C lands here too
      print("ready") io.stdout:flush()
      return s:accept()
    end)
    io.stderr:write("caught: ", tostring(err), "\n")
    s:accept()
  ]])
  local _, err, code = t.interrupt(script, {"caught"})
  t.match(err, "caught: interrupted")
  t.eq(code, 130)
end)

t.done()
