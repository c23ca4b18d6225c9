-- test_trace.lua: netlua --trace. Real scripts (the tutorial's time server
-- and client, a UDP exchange, a refused connect, a lookup, a thread and a
-- task sending) run as child processes with --trace=jsonl --trace-file F;
-- the lines are parsed as JSON and checked against what really happened:
-- events, their order, fields, endpoint labels and byte counts.
local t = require "testlib"
local json = require "json"

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "tests"
local SCRIPTS = here .. "/../scripts/"
local q = t.shellquote

-- The events of a jsonl trace file, each line parsed (a line that is not
-- one JSON object fails the test).
local function events_of(path)
  local list = {}
  for line in (t.readfile(path) or ""):gmatch("[^\n]+") do
    local ok, ev = pcall(json.decode, line)
    t.ok(ok and type(ev) == "table", "a whole JSON object per line: " .. line)
    list[#list + 1] = ev
  end
  return list
end

-- Runs `source` as a script under `flags` (default: jsonl into a file);
-- returns its events, stdout, stderr and exit status.
local function traced(source, flags, env)
  local path, dir = t.script(source)
  local file = dir .. "/trace.jsonl"
  local out, err, code = t.sh(string.format("%s%s %s --trace-file %s %s",
    env or "", q(t.NETLUA), flags or "--trace=jsonl", q(file), q(path)))
  local evs = events_of(file)
  t.rmtree(dir)
  return evs, out, err, code
end

-- The events named `name` whose fields all equal those in `fields`.
local function select_ev(evs, name, fields)
  local found = {}
  for i, ev in ipairs(evs) do
    local match = ev.ev == name
    for k, v in pairs(fields or {}) do match = match and ev[k] == v end
    if match then found[#found + 1] = ev; ev.index = i end
  end
  return found
end

local function one(evs, name, fields)
  local found = select_ev(evs, name, fields)
  t.eq(#found, 1, "events '" .. name .. "' with " .. json.encode(fields or {}))
  return found[1]
end

local function hex(s)
  return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

-- Each connection's recv lines never run ahead of its peer's send lines:
-- at every recv, the bytes listed as sent to it so far cover those listed
-- as received (a send is listed before the recv that got its bytes).
local function causal(evs)
  local sent, received = {}, {}
  for i, ev in ipairs(evs) do
    if ev.ev == "send" then
      sent[ev.ep] = (sent[ev.ep] or 0) + ev.bytes
    elseif ev.ev == "recv" then
      local l, p = ev.ep:match("^tcp (%S+) %-> (%S+)$")
      local peer = "tcp " .. p .. " -> " .. l
      received[ev.ep] = (received[ev.ep] or 0) + ev.bytes
      t.ok((sent[peer] or 0) >= received[ev.ep],
        string.format("line %d: %s received %d, its peer sent %d so far", i, ev.ep,
          received[ev.ep], sent[peer] or 0))
    end
  end
end

-- Times never go back: the file is one timeline.
local function in_time_order(evs)
  for i = 2, #evs do
    t.ok(evs[i].t >= evs[i - 1].t, "time order at line " .. i)
  end
end

t.test("timeserver and client: both sides' events, labels and byte counts", function()
  local sdir = t.tmpdir()
  local strace, ctrace = sdir .. "/server.jsonl", sdir .. "/client.jsonl"
  local pid, port, dir = t.start_server(SCRIPTS .. "timeserver.lua", "--count 1", 30,
    "--trace=jsonl --trace-file " .. q(strace))
  local out, err, code = t.netlua(string.format("--trace=jsonl --trace-file %s %s 127.0.0.1 %d",
    q(ctrace), q(SCRIPTS .. "client.lua"), port))
  t.eq(code, 0, err)
  t.finish_server(pid, dir)
  local reply = out:gsub("\n$", "")
  local sev, cev = events_of(strace), events_of(ctrace)
  t.rmtree(sdir)
  -- the client: socket, connect, recv of the whole reply, eof or close
  local conn = one(cev, "connect")
  t.eq(conn.result, "ok")
  t.eq(conn.addr, "127.0.0.1:" .. port)
  local cport = conn.ep:match("^tcp 127%.0%.0%.1:(%d+) %-> 127%.0%.0%.1:" .. port .. "$")
  t.ok(cport, "client label: " .. conn.ep)
  local got = 0
  for _, ev in ipairs(select_ev(cev, "recv")) do
    t.eq(ev.ep, conn.ep)
    got = got + ev.bytes
  end
  t.eq(got, #reply, "bytes the client received")
  local cclose = one(cev, "close", {fd = conn.fd})
  t.eq(cclose.received, #reply)
  t.ok(one(cev, "socket", {fd = conn.fd}).index < conn.index, "socket before connect")
  t.ok(conn.index < cclose.index, "connect before close")
  -- the server: bind, listen, accept of that very client, send, close first
  local listen = one(sev, "listen")
  t.match(listen.ep, "^tcp 127%.0%.0%.1:" .. port .. "$")
  t.ok(one(sev, "bind").index < listen.index, "bind before listen")
  local acc = one(sev, "accept")
  t.eq(acc.peer, "127.0.0.1:" .. cport)
  t.eq(acc.ep, "tcp 127.0.0.1:" .. port .. " -> 127.0.0.1:" .. cport)
  t.eq(acc.listen_fd, listen.fd)
  local sent = 0
  for _, ev in ipairs(select_ev(sev, "send", {fd = acc.fd})) do sent = sent + ev.bytes end
  t.eq(sent, #reply, "bytes the server sent")
  local sclose = one(sev, "close", {fd = acc.fd})
  t.eq(sclose.sent, #reply)
  in_time_order(sev)
  in_time_order(cev)
end)

t.test("udp: datagrams with their addresses and sizes", function()
  local evs, out, err, code = traced([[
    local socket = require "socket"
    local a = socket.udp(); assert(a:setsockname("127.0.0.1", 0))
    local b = socket.udp(); assert(b:setsockname("127.0.0.1", 0))
    local _, pa = a:getsockname()
    local _, pb = b:getsockname()
    assert(a:sendto("ping!", "127.0.0.1", pb))
    local data, ip, port = b:receivefrom()
    assert(b:sendto("pong", ip, port))
    assert(a:receivefrom())
    print(pa, pb)
  ]])
  t.eq(code, 0, err)
  local pa, pb = out:match("(%d+)%s+(%d+)")
  local A, B = "127.0.0.1:" .. pa, "127.0.0.1:" .. pb
  local s1 = one(evs, "sendto", {bytes = 5})
  t.eq(s1.ep, "udp " .. A .. " -> " .. B)
  local r1 = one(evs, "recvfrom", {bytes = 5})
  t.eq(r1.ep, "udp " .. B .. " -> " .. A)
  local s2 = one(evs, "sendto", {bytes = 4})
  t.eq(s2.ep, "udp " .. B .. " -> " .. A)
  local r2 = one(evs, "recvfrom", {bytes = 4})
  t.eq(r2.ep, "udp " .. A .. " -> " .. B)
  t.ok(s1.index < r1.index and r1.index < s2.index and s2.index < r2.index, "in order")
  t.eq(one(evs, "close", {fd = s1.fd}).sent, 5)
end)

t.test("a refused connect: the address tried and ECONNREFUSED", function()
  local evs, out, err, code = traced([[
    local socket = require "socket"
    local s = socket.bind("127.0.0.1", 0)
    local _, port = s:getsockname()
    s:close() -- nothing listens there now
    print(port, socket.connect("127.0.0.1", port))
  ]])
  t.eq(code, 0, err)
  local port = out:match("^(%d+)")
  t.match(out, "connection refused")
  local c = one(evs, "connect")
  t.eq(c.result, "failed")
  t.eq(c.error, "ECONNREFUSED")
  t.eq(c.addr, "127.0.0.1:" .. port)
  t.match(c.ep, "%-> 127%.0%.0%.1:" .. port .. "$")
  t.ok(c.dur >= 0, "a duration")
  local closes = select_ev(evs, "close", {fd = c.fd})
  t.ok(closes[#closes].index > c.index, "the socket is closed after")
end)

t.test("a lookup of localhost: the name, its answers and how long", function()
  local evs, out, err, code = traced([[
    local socket = require "socket"
    local s = assert(socket.bind("127.0.0.1", 0))
    local _, port = s:getsockname()
    local c = assert(socket.connect("localhost", port))
    print(c:getpeername())
  ]])
  t.eq(code, 0, err)
  local peer = out:match("^(%S+)")
  local lk = one(evs, "lookup", {host = "localhost"})
  t.eq(type(lk.answers), "table")
  local listed = false
  for _, a in ipairs(lk.answers) do listed = listed or a == peer end
  t.ok(listed, "the address connected to is among the answers: " .. json.encode(lk.answers))
  t.ok(lk.dur >= 0, "a duration")
  local conn = one(evs, "connect", {result = "ok"})
  t.ok(lk.index < conn.index, "the lookup comes before the connect")
end)

t.test("a thread and a task both sending: who sent what, one timeline", function()
  local evs, out, err, code = traced([[
    local socket, thread, task = require "socket", require "thread", require "task"
    local srv = assert(socket.bind("127.0.0.1", 0))
    local _, port = srv:getsockname()
    local th = thread.spawn(function(p)
      local s = require("socket").connect("127.0.0.1", p)
      for i = 1, 20 do s:send("from-thread\n") end
      s:close()
    end, port)
    local tk = task.spawn(function()
      local s = socket.connect("127.0.0.1", port)
      for i = 1, 20 do s:send("from-task\n") end
      s:close()
    end)
    local got = {}
    for _ = 1, 2 do
      local c = srv:accept()
      c:settimeout(10)
      local data = c:receive("*a")
      got[#got + 1] = data:match("^(%S+)")
      c:close()
    end
    assert(tk:join(10))
    assert(th:join())
    print(th.id)
  ]])
  t.eq(code, 0, err)
  local tid = tonumber(out:match("(%d+)"))
  local by_thread = select_ev(evs, "send", {thread = tid, task = 0})
  local by_task = select_ev(evs, "send", {thread = 0})
  t.eq(#by_thread > 0 and #by_task > 0, true, "sends from both")
  local n = 0
  for _, ev in ipairs(by_thread) do n = n + ev.bytes end
  t.eq(n, 20 * #"from-thread\n", "the thread's bytes")
  n = 0
  for _, ev in ipairs(by_task) do
    t.ok(ev.task >= 1, "sent from a task")
    n = n + ev.bytes
  end
  t.eq(n, 20 * #"from-task\n", "the task's bytes")
  t.eq(#select_ev(evs, "connect", {thread = tid, result = "ok"}), 1, "the thread's connect")
  in_time_order(evs)
  causal(evs)
end)

t.test("close: who ended the conversation first", function()
  local evs, out, err, code = traced([[
    local socket = require "socket"
    local s = assert(socket.bind("127.0.0.1", 0))
    local c = assert(socket.connect("127.0.0.1", (select(2, s:getsockname()))))
    local a = s:accept()
    a:send("bye")
    a:close()                     -- the server closes first
    assert(c:receive("*a") == "bye")
    c:close()                     -- the client after its end of stream
    local d = assert(socket.connect("127.0.0.1", (select(2, s:getsockname()))))
    local b = s:accept()
    d:shutdown("send")            -- this client ends first, by shutdown
    assert(select(2, b:receive("*a")) == "closed")
    b:close(); d:close()
    print(a, c, b, d)
  ]])
  t.eq(code, 0, err)
  local closes = select_ev(evs, "close")
  local firsts = {}
  for _, ev in ipairs(closes) do
    if ev.first then firsts[#firsts + 1] = ev.first end
  end
  t.eq(table.concat(firsts, " "), "local peer peer local")
  local eofs = select_ev(evs, "eof")
  t.eq(#eofs, 2, "two ends of stream seen")
  t.eq(one(evs, "shutdown").how, "send")
end)

t.test("tasks and threads: spawned, waiting on a socket, woken, started, ended", function()
  local evs, out, err, code = traced([[
    local socket, task, thread = require "socket", require "task", require "thread"
    local srv = assert(socket.bind("127.0.0.1", 0))
    local port = select(2, srv:getsockname())
    local h = task.spawn(function()
      local c = srv:accept()
      c:close()
    end)
    task.yield() -- the task runs and waits in accept
    local th = thread.spawn{function(p)
      require("socket").connect("127.0.0.1", p):close()
    end, port, name = "dialer"}
    assert(h:join(10))
    assert(th:join())
    print(th.id)
  ]])
  t.eq(code, 0, err)
  local tid = tonumber(out:match("(%d+)"))
  local spawn = one(evs, "spawn", {child = 1})
  t.eq(spawn.task, 0, "spawned by the main script")
  local listen = one(evs, "listen")
  local wait = one(evs, "wait", {task = 1, fd = listen.fd})
  t.eq(wait.waiting, "read")
  t.eq(wait.ep, listen.ep)
  local wakes = select_ev(evs, "wake", {woken = 1})
  t.ok(#wakes >= 1, "the task was woken")
  t.eq(wakes[1].result, "ready")
  local acc = one(evs, "accept", {task = 1})
  t.ok(spawn.index < wait.index and wait.index < wakes[1].index and wakes[1].index < acc.index,
    "spawn, wait, wake, accept in order")
  local started = one(evs, "thread", {state = "started", thread = tid})
  local ended = one(evs, "thread", {state = "ended", thread = tid})
  t.eq(started.name, "dialer")
  local conn = one(evs, "connect", {thread = tid})
  t.ok(started.index < conn.index and conn.index < ended.index, "the thread's events in between")
end)

t.test("the HTTP client: libcurl's request, status line and body, with endpoints", function()
  local evs, out, err, code = traced([[
    local socket, http, task = require "socket", require "http", require "task"
    local srv = assert(socket.bind("127.0.0.1", 0))
    local port = select(2, srv:getsockname())
    task.spawn(function()
      local c = srv:accept()
      c:settimeout(10)
      repeat local l = c:receive() until l == ""
      c:send("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello")
      c:close()
    end)
    local r = assert(http.get("http://127.0.0.1:" .. port .. "/x"))
    print(r.status, r.body)
  ]], "--trace=jsonl --trace-data")
  t.eq(code, 0, err)
  t.match(out, "^200%s+hello")
  local req = one(evs, "http_out")
  t.eq(req.line, "GET /x HTTP/1.1")
  t.match(req.hex, "^" .. hex("GET /x HTTP/1.1\r\n"))
  local acc = one(evs, "accept")
  local lport, sport = req.ep:match("^tcp 127%.0%.0%.1:(%d+) %-> 127%.0%.0%.1:(%d+)$")
  t.eq(acc.peer, "127.0.0.1:" .. tostring(lport), "the server's peer is curl's side")
  local got = 0
  for _, ev in ipairs(select_ev(evs, "recv", {fd = acc.fd})) do got = got + ev.bytes end
  t.eq(got, req.bytes, "the server received the request head curl sent")
  t.eq(one(evs, "http_in").line, "HTTP/1.1 200 OK")
  local body = one(evs, "body_in")
  t.eq(body.bytes, 5)
  t.eq(body.hex, hex("hello"))
  t.ok(req.index < body.index, "request before body")
  t.ok(#select_ev(evs, "curl") > 0, "libcurl's own words")
end)

t.test("http.server: each request and its reply (status, size, time)", function()
  local evs, out, err, code = traced([[
    local http, task = require "http", require "task"
    local srv = assert(http.server{host = "127.0.0.1", port = 0})
    srv:route("GET", "/hi", function(req) return "hello" end)
    local h = task.spawn(function()
      local a = assert(http.get(srv.url .. "/hi?x=1"))
      local b = assert(http.get(srv.url .. "/nope"))
      print(a.status, b.status, #b.body)
      srv:close()
    end)
    srv:serve{timeout = 60}
    assert(h:join(10))
  ]])
  t.eq(code, 0, err)
  local s1, s2, len2 = out:match("^(%d+)%s+(%d+)%s+(%d+)")
  t.eq(s1, "200")
  local reqs, replies = select_ev(evs, "request"), select_ev(evs, "reply")
  t.eq(#reqs, 2, "two requests")
  t.eq(#replies, 2, "two replies")
  t.eq(reqs[1].method, "GET")
  t.eq(reqs[1].target, "/hi?x=1")
  t.eq(reqs[2].target, "/nope")
  t.eq(replies[1].status, 200)
  t.eq(replies[1].bytes, 5)
  t.eq(replies[2].status, tonumber(s2))
  t.eq(replies[2].bytes, tonumber(len2))
  t.ok(replies[1].dur >= 0, "a time")
  t.ok(reqs[1].index < replies[1].index and replies[1].index < reqs[2].index, "in order")
  -- the server's side of the client's connection
  local req_line = one(evs, "http_out", {line = "GET /hi?x=1 HTTP/1.1"})
  local l, p = req_line.ep:match("^tcp (%S+) %-> (%S+)$")
  t.eq(reqs[1].ep, "tcp " .. p .. " -> " .. l, "the request came over curl's connection")
end)

t.test("TLS handshakes: version, cipher, the peer's names, verification", function()
  local tls = require "tlslib"
  local missing = tls.missing()
  if missing then return t.skip(nil, missing) end
  local C = tls.certs()
  local evs, out, err, code = traced(string.format([[
    local ssl, socket, task = require "ssl", require "socket", require "task"
    local CA, CERT, KEY = %q, %q, %q
    local sctx = assert(ssl.newcontext{mode = "server", certificate = CERT, key = KEY})
    local srv = assert(socket.bind("127.0.0.1", 0))
    local port = select(2, srv:getsockname())
    local h = task.spawn(function()
      for _ = 1, 2 do
        local conn = assert(ssl.wrap(assert(srv:accept()), sctx))
        conn:settimeout(10)
        conn:dohandshake()
        conn:close()
      end
    end)
    local good = ssl.wrap(assert(socket.connect("localhost", port)),
      assert(ssl.newcontext{mode = "client", cafile = CA}))
    good:settimeout(10)
    assert(good:dohandshake())
    good:close()
    local other = ssl.wrap(assert(socket.connect("localhost", port)),
      assert(ssl.newcontext{mode = "client"})) -- the system's CAs: not ours
    other:settimeout(10)
    print(other:dohandshake())
    other:close()
    assert(h:join(10))
  ]], C.ca.cert, C.server.cert, C.server.key))
  t.rmtree(C.dir)
  t.eq(code, 0, err)
  t.match(out, "certificate verify failed")
  local client = select_ev(evs, "tls", {task = 0})
  t.eq(#client, 2, "two client handshakes")
  t.match(client[1].version, "^TLSv1%.[23]$")
  t.ok(#client[1].cipher > 0, "a cipher")
  t.match(client[1].peer_cert, "localhost")
  t.eq(client[1].verify, "ok")
  t.eq(client[1].error, nil)
  t.match(client[1].ep, "^tcp 127%.0%.0%.1:%d+ %-> 127%.0%.0%.1:%d+$")
  t.match(client[2].error, "certificate verify failed")
  t.eq(client[2].version, nil)
  local server = select_ev(evs, "tls", {task = 1})
  t.eq(#server, 2, "two server handshakes")
  t.eq(server[1].version, client[1].version)
  t.eq(server[1].cipher, client[1].cipher)
end)

t.test("a timeout: the wait that ran out", function()
  local evs, out, err, code = traced([[
    local socket = require "socket"
    local s = assert(socket.bind("127.0.0.1", 0))
    local c = assert(socket.connect("127.0.0.1", (select(2, s:getsockname()))))
    c:settimeout(0.05)
    print(c:receive())
  ]])
  t.eq(code, 0, err)
  t.match(out, "timeout")
  local to = one(evs, "timeout")
  t.eq(to.waiting, "read")
  t.eq(to.fd, one(evs, "connect").fd)
end)

t.test("--trace-data: the bytes in hex, capped per event and saying so", function()
  local evs, out, err, code = traced([[
    local socket = require "socket"
    local s = assert(socket.bind("127.0.0.1", 0))
    local c = assert(socket.connect("127.0.0.1", (select(2, s:getsockname()))))
    local a = s:accept()
    c:send("GET / HTTP/1.0\r\n\r\n")
    a:receive("*l")
    local big = string.rep("x", 6000)
    c:send(big)
    a:settimeout(10)
    assert(a:receive(6000 + 2))
  ]], "--trace=jsonl --trace-data")
  t.eq(code, 0, err)
  local msg = "GET / HTTP/1.0\r\n\r\n"
  local sent = one(evs, "send", {bytes = #msg})
  t.eq(sent.hex, hex(msg))
  t.eq(sent.cut, nil)
  local big = one(evs, "send", {bytes = 6000})
  t.eq(#big.hex, 2 * 4096, "4096 bytes shown")
  t.eq(big.cut, 6000 - 4096, "the rest counted")
  t.eq(big.hex:sub(1, 2), "78")
  -- without --trace-data: no bytes
  local plain = traced([[
    local socket = require "socket"
    local s = assert(socket.bind("127.0.0.1", 0))
    local c = assert(socket.connect("127.0.0.1", (select(2, s:getsockname()))))
    c:send("secret")
  ]])
  t.eq(one(plain, "send", {bytes = 6}).hex, nil)
end)

local ECHO = [[
  local socket = require "socket"
  local s = assert(socket.bind("127.0.0.1", 0))
  local c = assert(socket.connect("127.0.0.1", (select(2, s:getsockname()))))
  local a = s:accept()
  c:send("hello\n")
  a:receive()
  c:close(); a:close(); s:close()
]]

t.test("text mode: one aligned line per event; --trace-data adds a dump", function()
  local evs = traced(ECHO)
  local path, dir = t.script(ECHO)
  local out, err, code = t.netlua("--trace " .. q(path))
  t.eq(code, 0, err)
  local lines = {}
  for line in err:gmatch("[^\n]+") do lines[#lines + 1] = line end
  t.eq(#lines, #evs, "as many lines as events")
  for i, line in ipairs(lines) do
    t.match(line, "^ +%d+%.%d%d%d%d%d%d main +" .. evs[i].ev .. " ")
  end
  t.ok(not err:find("\27", 1, true), "no colour when not a terminal")
  t.match(err, "send     tcp 127%.0%.0%.1:%d+ %-> 127%.0%.0%.1:%d+ bytes=6\n")
  out, err, code = t.netlua("--trace --trace-data " .. q(path))
  t.eq(code, 0, err)
  t.match(err, "\n +0000: 68 65 6c 6c 6f 0a" .. string.rep("   ", 10) .. "  hello%.\n")
  t.rmtree(dir)
end)

t.test("NETLUA_TRACE and NETLUA_TRACE_FILE in the environment", function()
  local path, dir = t.script(ECHO)
  local file = dir .. "/env.jsonl"
  local out, err, code = t.sh(string.format("NETLUA_TRACE=jsonl NETLUA_TRACE_FILE=%s %s %s",
    q(file), q(t.NETLUA), q(path)))
  t.eq(code, 0, err)
  t.eq(err, "")
  local evs = events_of(file)
  t.eq(one(evs, "send").bytes, 6)
  t.eq(one(evs, "recv").bytes, 6)
  -- to stderr when no file is named
  out, err, code = t.sh(string.format("NETLUA_TRACE=jsonl %s %s", q(t.NETLUA), q(path)))
  t.eq(code, 0, err)
  t.match(err, '^{"t":[%d.]+,"thread":0,"task":0,"ev":"socket"')
  t.rmtree(dir)
end)

t.test("off: nothing is written; bad choices are usage errors", function()
  local path, dir = t.script(ECHO)
  local out, err, code = t.netlua(q(path))
  t.eq(code, 0, err)
  t.eq(err, "")
  out, err, code = t.netlua("--trace=xml " .. q(path))
  t.eq(code, 2)
  t.match(err, "unrecognized option '%-%-trace=xml'")
  out, err, code = t.sh("NETLUA_TRACE=xml " .. q(t.NETLUA) .. " " .. q(path))
  t.eq(code, 2)
  t.match(err, "NETLUA_TRACE must be 'text' or 'jsonl'")
  out, err, code = t.netlua("--trace-file")
  t.eq(code, 2)
  t.match(err, "'%-%-trace%-file' needs an argument")
  out, err, code = t.netlua("--trace --trace-file /nonexistent/dir/f " .. q(path))
  t.eq(code, 2)
  t.match(err, "cannot open trace file /nonexistent/dir/f")
  t.rmtree(dir)
end)

t.test("http.server's own connections: accept, reads, writes, close; its listening socket", function()
  local evs, out, err, code = traced([[
    local http, socket, task = require "http", require "socket", require "task"
    local srv = assert(http.server{host = "127.0.0.1", port = 0})
    srv:route("GET", "/hi", function(req) return "hello" end)
    local h = task.spawn(function()
      local c = assert(socket.connect("127.0.0.1", srv.port))
      c:send("GET /hi HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
      local reply = c:receive("*a")
      print(select(2, c:getsockname()), #reply)
      c:close()
      srv:close()
    end)
    srv:serve{timeout = 60}
    assert(h:join(10))
  ]], "--trace=jsonl --trace-data")
  t.eq(code, 0, err)
  local cport, replylen = out:match("^(%d+)%s+(%d+)")
  local listen = one(evs, "listen")
  local port = listen.ep:match("^tcp 127%.0%.0%.1:(%d+)$")
  t.ok(port, "the server's listening socket: " .. tostring(listen.ep))
  t.ok(one(evs, "bind", {fd = listen.fd}).index < listen.index, "bind, then listen")
  local acc = one(evs, "accept", {listen_fd = listen.fd})
  t.eq(acc.peer, "127.0.0.1:" .. cport)
  t.eq(acc.ep, "tcp 127.0.0.1:" .. port .. " -> 127.0.0.1:" .. cport)
  local request = "GET /hi HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
  local got = select_ev(evs, "recv", {fd = acc.fd, ep = acc.ep})
  t.eq(got[1].hex, hex(request), "the request's bytes, as read")
  local sent = 0
  for _, ev in ipairs(select_ev(evs, "send", {ep = acc.ep})) do sent = sent + ev.bytes end
  t.eq(sent, tonumber(replylen), "the reply's bytes, as written")
  local req, reply = one(evs, "request", {ep = acc.ep}), one(evs, "reply", {ep = acc.ep})
  local close = one(evs, "close", {ep = acc.ep})
  t.eq(close.sent, tonumber(replylen))
  t.eq(close.received, #request)
  t.eq(close.first, "local", "Connection: close: the server ends first")
  t.ok(acc.index < got[1].index and got[1].index < req.index and req.index < reply.index
    and reply.index < close.index, "accept, recv, request, reply, close in order")
  t.ok(#select_ev(evs, "close", {fd = listen.fd, ep = listen.ep}) == 1, "the listening socket's close")
  causal(evs)
end)

t.test("TLS reads and writes: the plaintext on both sides, an https server's handshake", function()
  local tls = require "tlslib"
  local missing = tls.missing()
  if missing then return t.skip(nil, missing) end
  local C = tls.certs()
  local evs, out, err, code = traced(string.format([[
    local http, ssl, task = require "http", require "ssl", require "task"
    local CA, CERT, KEY = %q, %q, %q
    local srv = assert(http.server{host = "127.0.0.1", port = 0,
      tls = {certificate = CERT, key = KEY}})
    srv:route("GET", "/secret", function() return "over tls" end)
    local h = task.spawn(function()
      local conn = assert(ssl.connect("localhost", srv.port, {cafile = CA, timeout = 10}))
      assert(conn:send("GET /secret HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
      local reply = conn:receive("*a")
      print(#reply)
      conn:close()
      srv:close()
    end)
    srv:serve{timeout = 60}
    assert(h:join(10))
  ]], C.ca.cert, C.server.cert, C.server.key), "--trace=jsonl --trace-data")
  t.rmtree(C.dir)
  t.eq(code, 0, err)
  local replylen = tonumber(out:match("^(%d+)"))
  local request = "GET /secret HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
  local acc = one(evs, "accept")
  local shake = one(evs, "tls", {ep = acc.ep})
  t.match(shake.version, "^TLSv1%.[23]$")
  t.eq(shake.verify, "off", "the server does not ask for a client certificate")
  local client_shake = one(evs, "tls", {task = 1})
  t.eq(client_shake.verify, "ok")
  t.eq(client_shake.cipher, shake.cipher)
  local csend = one(evs, "tls_send", {task = 1})
  t.eq(csend.bytes, #request)
  t.eq(csend.hex, hex(request), "the client's plaintext")
  local sread = one(evs, "tls_recv", {ep = acc.ep})
  t.eq(sread.hex, hex(request), "what the server decrypted")
  local n = 0
  for _, ev in ipairs(select_ev(evs, "tls_send", {ep = acc.ep})) do n = n + ev.bytes end
  t.eq(n, replylen, "the server's plaintext reply")
  n = 0
  for _, ev in ipairs(select_ev(evs, "tls_recv", {task = 1})) do n = n + ev.bytes end
  t.eq(n, replylen, "what the client decrypted")
  t.ok(shake.index < sread.index, "the handshake before the data")
  local wire = 0
  for _, ev in ipairs(select_ev(evs, "send", {task = 1})) do wire = wire + ev.bytes end
  t.eq(wire, 0, "the client's socket sends are TLS's, not listed as plain sends")
end)

t.test("channels and threads: send before its recv, the values, a timeout; a thread's start", function()
  local evs, out, err, code = traced([[
    local thread = require "thread"
    local ch = thread.channel()
    local th = thread.spawn{function(c) c:send("from thread"); c:send(42) end, ch, name = "sender"}
    assert(ch:recv() == "from thread")
    assert(ch:recv() == 42)
    print(ch:recv(0.01))
    assert(th:join())
    print(th.id)
  ]])
  t.eq(code, 0, err)
  local tid = tonumber(out:match("(%d+)%s*$"))
  t.match(out, "^nil%s+timeout")
  local started = one(evs, "thread", {state = "started", thread = tid})
  t.eq(started.name, "sender")
  local sends, recvs = select_ev(evs, "chan_send"), select_ev(evs, "chan_recv")
  t.eq(#sends, 2)
  t.eq(#recvs, 3, "two values and a timeout")
  t.eq(sends[1].thread, tid)
  t.eq(sends[1].value, "string")
  t.eq(sends[2].value, "number")
  t.eq(recvs[1].thread, 0)
  t.eq(recvs[1].value, "string")
  t.eq(recvs[2].value, "number")
  t.eq(recvs[3].error, "timeout")
  t.ok(sends[1].channel >= 1 and recvs[1].channel == sends[1].channel, "the same channel")
  t.ok(started.index < sends[1].index, "the thread starts, then sends")
  t.ok(sends[1].index < recvs[1].index and sends[2].index < recvs[2].index,
    "each send is listed before the recv that got it")
end)

t.test("WebSocket frames and server-sent events", function()
  local evs, out, err, code = traced([[
    local http, socket, task, websocket = require "http", require "socket", require "task", require "websocket"
    local srv = assert(http.server{host = "127.0.0.1", port = 0})
    srv:websocket("/echo", function(ws)
      local m, kind = ws:receive()
      ws:send(m, kind)
      ws:receive()
    end)
    srv:route("GET", "/events", function(req)
      local ev = req:sse{heartbeat = false}
      ev:send{event = "tick", id = "7", data = "one"}
      ev:send("two")
    end)
    local h = task.spawn(function()
      local ws = assert(websocket.connect("ws://127.0.0.1:" .. srv.port .. "/echo"))
      ws:send("ws hello")
      assert(ws:receive() == "ws hello")
      ws:close()
      local c = assert(socket.connect("127.0.0.1", srv.port))
      c:send("GET /events HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
      print(#c:receive("*a"))
      c:close()
      srv:close()
    end)
    srv:serve{timeout = 60}
    assert(h:join(10))
  ]])
  t.eq(code, 0, err)
  local client = select_ev(evs, "ws_send", {task = 1})
  t.eq(#client, 2, "the client's message and close frame")
  t.eq(client[1].opcode, "text")
  t.eq(client[1].bytes, #"ws hello")
  t.eq(client[1].fin, 1)
  t.eq(client[2].opcode, "close")
  local server_in = select_ev(evs, "ws_recv", {ep = "tcp " .. client[1].ep:match("%-> (%S+)$") ..
    " -> " .. client[1].ep:match("^tcp (%S+)")})
  t.eq(#server_in, 2, "the server got both: " .. client[1].ep)
  t.eq(server_in[1].opcode, "text")
  t.eq(server_in[1].bytes, #"ws hello")
  t.ok(client[1].index < server_in[1].index, "sent, then received")
  local echo = one(evs, "ws_recv", {task = 1, opcode = "text"})
  t.eq(echo.bytes, #"ws hello")
  local sse = select_ev(evs, "sse")
  t.eq(#sse, 2)
  t.eq(sse[1].event, "tick")
  t.eq(sse[1].id, "7")
  t.eq(sse[1].bytes, #"event: tick\nid: 7\ndata: one\n\n")
  t.eq(sse[2].event, "message")
  t.eq(sse[2].id, nil)
  t.eq(sse[2].bytes, #"data: two\n\n")
  local req = one(evs, "request", {target = "/events"})
  t.eq(sse[1].ep, req.ep, "on the request's connection")
end)

t.done()
