-- test_thread_socket.lua: sockets moving between threads, and the scripts
-- built on it (chatserver, chatclient, threadedserver). Skipped while the
-- socket module is not built in.
local t = require "testlib"
local thread = require "thread"
-- Only the built-in module (preloaded), not a luasocket found on disk.
local has_socket = package.preload.socket ~= nil
local socket = has_socket and require "socket"

local NAMES = {
  "a socket moves into a thread: the receiver owns it, the sender's reads as closed",
  "a socket moves through a channel",
  "a closed socket cannot be passed",
  "a failed spawn leaves the sender's socket open; one socket twice arrives once",
  "a send that times out or finds the channel closed leaves the socket with the sender",
  "threadedserver serves every client through its worker pool",
  "chatserver broadcasts each line to the other clients",
  "chatserver survives a client that disconnects abruptly",
  "chatclient sends typed lines and prints the broadcasts",
  "chatserver disconnects a client whose line never ends (it grew the server's memory)",
  "chatserver keeps a client that pauses reading during a burst (it was dropped as send failed)",
}

if not has_socket then
  for _, name in ipairs(NAMES) do t.skip(name, "no socket module in this build") end
  t.done()
end

local SCRIPTS = (debug.getinfo(1, "S").source:match("^@(.*)/tests/[^/]*$") or ".") .. "/scripts/"

-- A listening socket on 127.0.0.1, any port; returns it and the port.
local listener = t.listener
t.test(NAMES[1], function()
  local server, port = listener()
  local client = assert(socket.connect("127.0.0.1", port))
  local conn = assert(server:accept())
  local th = thread.spawn(function(c)
    c:settimeout(5)
    local line = c:receive("*l")
    c:send("echo " .. line .. "\n")
    c:close()
    return line
  end, conn)
  local ok, err = conn:send("x")
  t.eq(ok, nil)
  t.eq(err, "closed")
  client:settimeout(5)
  client:send("hello\n")
  t.eq(client:receive("*l"), "echo hello")
  local jok, line = th:join()
  t.ok(jok, tostring(line))
  t.eq(line, "hello")
  client:close()
  server:close()
end)

t.test(NAMES[2], function()
  local server, port = listener()
  local ch = thread.channel()
  local th = thread.spawn(function()
    local c = ch:recv()
    c:settimeout(5)
    c:send("from thread\n")
    c:close()
  end)
  local client = assert(socket.connect("127.0.0.1", port))
  ch:send(assert(server:accept()))
  client:settimeout(5)
  t.eq(client:receive("*l"), "from thread")
  t.ok(th:join())
  client:close()
  server:close()
end)

t.test(NAMES[3], function()
  local s = socket.tcp()
  s:close()
  t.raises("cannot be passed to a thread", thread.spawn, function() end, s)
end)

t.test(NAMES[4], function()
  local server, port = listener()
  local client = assert(socket.connect("127.0.0.1", port))
  local conn = assert(server:accept())
  t.raises("(a coroutine) cannot be passed", thread.spawn, function() end, conn,
           coroutine.create(print))
  conn:settimeout(5)
  t.eq(conn:send("still mine\n"), 11, "the sender still owns the socket")
  client:settimeout(5)
  t.eq(client:receive("*l"), "still mine")
  local ok, same = thread.spawn(function(a, tab) return rawequal(a, tab.again) end,
                                conn, {again = conn}):join()
  t.ok(ok, tostring(same))
  t.eq(same, true)
  client:close()
  server:close()
end)

t.test(NAMES[5], function()
  local server, port = listener()
  local client = assert(socket.connect("127.0.0.1", port))
  local conn = assert(server:accept())
  local full = thread.channel(1)
  full:send("occupied")
  local ok, err = full:send(conn, 0.01)
  t.eq(ok, nil)
  t.eq(err, "timeout")
  local closed = thread.channel()
  closed:close()
  ok, err = closed:send(conn)
  t.eq(ok, nil)
  t.eq(err, "closed")
  conn:settimeout(5)
  t.eq(conn:send("kept\n"), 5, "the sender still owns the socket")
  client:settimeout(5)
  t.eq(client:receive("*l"), "kept")
  conn:close()
  client:close()
  server:close()
end)

t.test(NAMES[6], function()
  local N = 12
  local pid, port, dir = t.start_server(SCRIPTS .. "threadedserver.lua", "--workers 3 --count " .. N, 30)
  local clients = {}
  for i = 1, N do clients[i] = t.connect(port) end -- all connected at once
  for i = 1, N do
    local reply = clients[i]:receive("*a")
    t.match(reply, "^%d%d%d%d%-%d%d%-%d%d %d%d:%d%d:%d%d")
    clients[i]:close()
  end
  local out, err = t.finish_server(pid, dir)
  t.eq(err, "")
  local served, workers = 0, {}
  for name in out:gmatch("(worker%-%d) served") do
    served = served + 1
    workers[name] = true
  end
  t.eq(served, N)
  t.match(out, "with 3 workers")
end)

t.test(NAMES[7], function()
  local pid, port, dir = t.start_server(SCRIPTS .. "chatserver.lua", "--count 3", 30)
  local a = t.connect(port)
  t.expect_line(a, "^welcome, you are client 1")
  local b = t.connect(port)
  t.expect_line(b, "^welcome, you are client 2")
  t.expect_line(a, "^%* client 2 joined")
  local c = t.connect(port)
  t.expect_line(c, "^welcome, you are client 3")
  t.expect_line(a, "^%* client 3 joined")
  t.expect_line(b, "^%* client 3 joined")
  a:send("hello from a\n")
  t.eq(t.expect_line(b, "hello"), "[1] hello from a")
  t.eq(t.expect_line(c, "hello"), "[1] hello from a")
  c:send("hi from c\r\n")
  t.eq(t.expect_line(a, "hi"), "[3] hi from c")
  t.eq(t.expect_line(b, "hi"), "[3] hi from c")
  for _, s in ipairs({a, b, c}) do s:send("/quit\n") end
  for _, s in ipairs({a, b, c}) do
    local line, err
    repeat line, err = s:receive("*l") until not line
    t.eq(err, "closed")
    s:close()
  end
  local out, err = t.finish_server(pid, dir)
  t.eq(err, "")
  for i = 1, 3 do t.match(out, "client " .. i .. " left") end
end)

t.test(NAMES[8], function()
  local pid, port, dir = t.start_server(SCRIPTS .. "chatserver.lua", "--count 2", 30)
  local a = t.connect(port)
  t.expect_line(a, "^welcome")
  local b = t.connect(port)
  t.expect_line(b, "^welcome")
  t.expect_line(a, "client 2 joined")
  -- b vanishes without /quit, with unread data: the kernel resets it.
  b:setoption("linger", {on = true, timeout = 0})
  b:close()
  t.match(t.expect_line(a, "client 2 left"), "^%* client 2 left")
  a:send("still here\n")
  a:send("/quit\n")
  local line
  repeat line = a:receive("*l") until not line
  a:close()
  local out, err = t.finish_server(pid, dir)
  t.eq(err, "")
  t.match(out, "client 2 left")
  t.match(out, "client 1 left %(quit%)")
end)

t.test(NAMES[9], function()
  local pid, port, dir = t.start_server(SCRIPTS .. "chatserver.lua", "--count 2", 30)
  local a = t.connect(port)
  t.expect_line(a, "^welcome")
  local input = "first line\nsecond line\n"
  -- The client sends its lines, then /quit at end of input.
  local out, err, code = t.netlua(t.shellquote(SCRIPTS .. "chatclient.lua") ..
                                  " 127.0.0.1 " .. port, {stdin = input})
  t.eq(code, 0, err)
  t.match(out, "^welcome, you are client 2")
  t.eq(t.expect_line(a, "first"), "[2] first line")
  t.eq(t.expect_line(a, "second"), "[2] second line")
  a:send("/quit\n")
  a:close()
  t.finish_server(pid, dir)
end)

t.test(NAMES[10], function()
  local pid, port, dir = t.start_server(SCRIPTS .. "chatserver.lua", "--count 2", 30)
  local a = t.connect(port)
  t.expect_line(a, "^welcome")
  local b = t.connect(port)
  t.expect_line(b, "^welcome")
  t.expect_line(a, "client 2 joined")
  -- 1 MiB without a newline; the server stops reading it at 64 KiB.
  local chunk = string.rep("x", 65536)
  for _ = 1, 16 do if not b:send(chunk) then break end end
  t.match(t.expect_line(a, "client 2 left"), "^%* client 2 left")
  b:close()
  a:send("/quit\n")
  local line
  repeat line = a:receive("*l") until not line
  a:close()
  local out, err = t.finish_server(pid, dir)
  t.eq(err, "")
  t.match(out, "client 2 left %(line too long%)")
end)

t.test(NAMES[11], function()
  local pid, port, dir = t.start_server(SCRIPTS .. "chatserver.lua", "--count 2", 30)
  local a = t.connect(port)
  t.expect_line(a, "^welcome")
  local b = socket.tcp()
  b:setoption("recv-buffer-size", 4096) -- so the burst fills the buffers
  assert(b:connect("127.0.0.1", port))
  b:settimeout(10)
  t.expect_line(b, "^welcome")
  t.expect_line(a, "client 2 joined")
  local N, line = 8000, string.rep("z", 999) .. "\n" -- 8 MB, more than the buffers hold
  for _ = 1, N do assert(a:send(line)) end
  a:send("end of burst\n")
  socket.sleep(0.5) -- b pauses; the server's writes to it wait
  local got = 0
  while true do
    local l, err = b:receive("*l")
    if not l then error("b: " .. tostring(err) .. " after " .. got .. " lines") end
    if l:find("end of burst", 1, true) then break end
    got = got + 1
  end
  t.eq(got, N)
  a:send("/quit\n")
  b:send("/quit\n")
  for _, c in ipairs({a, b}) do
    repeat local l = c:receive("*l") until not l
    c:close()
  end
  local out, err = t.finish_server(pid, dir)
  t.eq(err, "")
  t.ok(not out:find("send failed"), out)
end)

t.done()
