-- test_task_shared.lua: tasks sharing one socket (README, task: "Tasks
-- sharing one socket"). Each pair of calls on one socket: what each task
-- gets, in which order, and what a close or a move to another thread does
-- to the calls that wait. Orders of events, not timings: sleeps only let
-- the loop deliver what was sent, and joins carry a timeout only so that a
-- case that hangs fails instead.
local t = require "testlib"
local task = require "task"
local socket = require "socket"
local thread = require "thread"

local listener, pair = t.listener, t.tcp_pair
-- Joins h, failing the case (not hanging) when it does not end.
local function join(h)
  local r = table.pack(h:join(10))
  t.ok(r[1] ~= nil, "the task ended")
  t.ok(r[1], r[2])
  return table.unpack(r, 2, r.n)
end

local function pause() task.sleep(0.02) end -- the loop delivers what was sent

t.test("chat: another task's sends restarted a receive's whole-call ('t') timeout; it is the call's own", function()
  local c, s = pair()
  local receiving, sent = true, 0
  local reader = task.spawn(function()
    s:settimeout(0.2, "t")
    local data, err, partial = s:receive("*a")
    receiving = false
    return data, err, partial
  end)
  local writer = task.spawn(function()
    for i = 1, 500 do -- far longer than the reader's timeout
      if not receiving then break end
      assert(s:send("message " .. i .. "\n")) -- the other task's calls...
      c:send("x") -- ...and a byte for the reader, which waits again after it
      sent = i
      pause()
    end
  end)
  local data, err, partial = join(reader)
  join(writer)
  t.eq(data, nil)
  t.eq(err, "timeout")
  t.eq(partial, string.rep("x", #partial))
  t.ok(sent < 500, "the receive timed out while the other task was still sending")
  for i = 1, sent do t.eq(c:receive("*l"), "message " .. i) end
  c:close() s:close()
end)

t.test("another task's settimeout cut short a send already waiting; a call keeps the timeouts it began with", function()
  local c, s = pair()
  s:setoption("send-buffer-size", 4096) -- the send waits for the reader many times
  local payload = string.rep("0123456789abcdef", 256 * 1024) -- 4 MiB
  local sender = task.spawn(function()
    return s:send(payload) -- no timeout: waits as long as it takes
  end)
  local poller = task.spawn(function()
    -- another task on the same socket, polling with a short timeout
    for _ = 1, 40 do
      s:settimeout(0.01)
      s:receive(1)
      s:settimeout(-1)
      pause()
    end
  end)
  local got, chunk = 0, nil
  c:settimeout(5) -- a send that gave up fails the case instead of hanging it
  while got < #payload do -- a slow reader
    chunk = c:receive(math.min(65536, #payload - got))
    if not chunk then break end
    got = got + #chunk
    if got < 1024 * 1024 then pause() end
  end
  local sent, err, partial = join(sender)
  join(poller)
  t.eq(err, nil, "the send failed after " .. tostring(partial) .. " bytes")
  t.eq(sent, #payload)
  t.eq(got, #payload)
  c:close() s:close()
end)

t.test("chat: one task receives lines while another sends, both waiting at once", function()
  local c, s = pair()
  local big = string.rep("z", 1 << 20) -- more than the socket takes at once
  local lines = {}
  local reader = task.spawn(function()
    for _ = 1, 3 do lines[#lines + 1] = assert(s:receive("*l")) end
  end)
  local writer = task.spawn(function() return s:send(big) end)
  local peer = task.spawn(function()
    for i = 1, 3 do c:send("line " .. i .. "\n") pause() end
    return c:receive(#big)
  end)
  t.eq(join(writer), #big)
  join(reader)
  t.eq(table.concat(lines, ","), "line 1,line 2,line 3")
  t.ok(join(peer) == big, "the peer got the whole block")
  c:close() s:close()
end)

t.test("two tasks receiving lines got 'ne1' and 'liline2'; each gets a whole line, in the order they asked", function()
  local c, s = pair()
  local got = {}
  local a = task.spawn(function() got.a = s:receive("*l") end)
  local b = task.spawn(function() got.b = s:receive("*l") end)
  local feeder = task.spawn(function()
    pause()
    c:send("li") pause()
    c:send("ne1\nli") pause()
    c:send("ne2\n")
  end)
  join(a) join(b) join(feeder)
  t.eq(got.a, "line1")
  t.eq(got.b, "line2")
  c:close() s:close()
end)

t.test("two tasks receiving counts and recv took bytes from the middle of each other's calls; they are served in order", function()
  local c, s = pair()
  local got = {}
  local a = task.spawn(function() got[1] = s:receive(6) end)
  local b = task.spawn(function() got[2] = s:recv(100) end)
  local d = task.spawn(function() got[3] = s:receive(4) end)
  local feeder = task.spawn(function()
    for _, piece in ipairs({"ab", "cd", "efgh", "ij", "klmn"}) do c:send(piece) pause() end
  end)
  join(a) join(b) join(d) join(feeder)
  t.eq(got[1], "abcdef")
  t.eq(got[2], "gh")
  t.eq(got[3], "ijkl")
  t.eq(s:receive(2), "mn")
  c:close() s:close()
end)

t.test("two tasks sending on one socket interleaved their bytes; one send's bytes go out together", function()
  local c, s = pair()
  local n = 1 << 22 -- 4 MiB each: the socket takes it in many pieces
  local a = task.spawn(function() return s:send(string.rep("a", n)) end)
  local b = task.spawn(function() return s:send(string.rep("b", n)) end)
  local reader = task.spawn(function() return c:receive(2 * n) end)
  t.eq(join(a), n)
  t.eq(join(b), n)
  local data = join(reader)
  t.eq(#data, 2 * n)
  t.eq(data:find("b", 1, true), n + 1, "every byte of the first send comes first")
  t.eq(data:find("a", n + 1, true), nil, "none of it after the second one started")
  c:close() s:close()
end)

t.test("two tasks accepting: the last to ask got the first connection; each gets one, in the order they asked", function()
  local server, port = listener()
  local got = {}
  local function acceptor(name)
    return task.spawn(function()
      local client = assert(server:accept())
      local _, peerport = client:getpeername()
      got[name] = tonumber(peerport)
      return client
    end)
  end
  local a, b = acceptor("a"), acceptor("b")
  local clients = {}
  local connector = task.spawn(function()
    pause()
    for i = 1, 2 do
      clients[i] = assert(socket.connect("127.0.0.1", port))
      pause()
    end
  end)
  local ca, cb = join(a), join(b)
  join(connector)
  t.eq(got.a, tonumber((select(2, clients[1]:getsockname()))), "the first connection to the first to ask")
  t.eq(got.b, tonumber((select(2, clients[2]:getsockname()))))
  for _, x in ipairs({ca, cb, clients[1], clients[2], server}) do x:close() end
end)

t.test("close by one task: every task waiting on the socket gets nil, 'closed' at once", function()
  local c, s = pair()
  local server = listener()
  c:send("partial line")
  local recv1 = task.spawn(function() return s:receive("*l") end)
  local recv2 = task.spawn(function() return s:receive("*l") end) -- in line behind recv1
  local sender = task.spawn(function() return s:send(string.rep("x", 1 << 24)) end)
  local acc = task.spawn(function() return server:accept() end)
  pause()
  t.eq(recv1:status(), "waiting")
  t.eq(recv2:status(), "waiting")
  t.eq(sender:status(), "waiting")
  local closer = task.spawn(function() s:close() server:close() end)
  join(closer)
  task.yield() -- one round: the woken tasks run; nothing else happened meanwhile
  local data, err, partial = join(recv1)
  t.eq(data, nil) t.eq(err, "closed") t.eq(partial, "partial line")
  data, err, partial = join(recv2)
  t.eq(data, nil) t.eq(err, "closed") t.eq(partial, "")
  local sent, serr = join(sender)
  t.eq(sent, nil) t.eq(serr, "closed")
  local client, aerr = join(acc)
  t.eq(client, nil) t.eq(aerr, "closed")
  c:close()
end)

t.test("a connect closed by another task while it waited made a new descriptor and connected; it ends with 'closed'", function()
  local server, port = listener()
  local m = socket.tcp()
  local conn = task.spawn(function() return m:connect("127.0.0.1", port) end)
  local closer = task.spawn(function() m:close() end)
  join(closer)
  local ok, err = join(conn)
  if ok then -- the connect finished before the close: nothing raced
    t.eq(m:getfd(), -1)
  else
    t.eq(err, "closed")
    t.eq(m:getfd(), -1, "no new descriptor was made for it")
  end
  server:close()
end)

t.test("UDP: the last task to ask got the first datagram; two receivers get whole datagrams in the order they asked", function()
  local u = assert(socket.udp())
  assert(u:setsockname("127.0.0.1", 0))
  local ip, port = u:getsockname()
  local sender = socket.udp()
  local got = {}
  local a = task.spawn(function() got.a = u:receive() end)
  local b = task.spawn(function() got.b = u:receivefrom() end)
  local feeder = task.spawn(function()
    pause()
    sender:sendto("first datagram", ip, port)
    sender:sendto("second datagram", ip, port)
  end)
  join(a) join(b) join(feeder)
  t.eq(got.a, "first datagram")
  t.eq(got.b, "second datagram")
  u:close() sender:close()
end)

t.test("UDP: close by one task ends another's receive with nil, 'closed'", function()
  local u = assert(socket.udp())
  assert(u:setsockname("127.0.0.1", 0))
  local r1 = task.spawn(function() return u:receive() end)
  local r2 = task.spawn(function() return u:receive() end)
  pause()
  join(task.spawn(function() u:close() end))
  t.eq(select(2, join(r1)), "closed")
  t.eq(select(2, join(r2)), "closed")
end)

t.test("the main script's blocking receive took bytes from the middle of a task's line; it waits for its turn", function()
  local c, s = pair()
  local a = task.spawn(function() return s:receive("*l") end)
  local feeder = task.spawn(function()
    c:send("li") pause()
    pause()
    c:send("ne1\nli") pause()
    c:send("ne2\n")
  end)
  task.sleep(0.01) -- the task asks first and holds "li"
  local line = s:receive("*l") -- the main script asks second
  t.eq(join(a), "line1")
  t.eq(line, "line2")
  join(feeder)
  c:close() s:close()
end)

t.test("a task's receive waits for its turn behind the main script's blocking receive", function()
  local c, s = pair()
  local other
  local feeder = task.spawn(function()
    c:send("li") pause()
    other = task.spawn(function() return s:receive("*l") end) -- asks second
    pause()
    c:send("ne1\nli") pause()
    c:send("ne2\n")
  end)
  local line = s:receive("*l") -- asks first
  join(feeder)
  t.eq(line, "line1")
  t.eq(join(other), "line2")
  c:close() s:close()
end)

t.test("a socket moved to another thread left a task waiting on it forever; the task gets nil, 'closed' at once", function()
  local c, s = pair()
  local waiting = task.spawn(function() return s:receive("*l") end)
  local ch = thread.channel()
  pause()
  local th = thread.spawn(function(inbox)
    local sock = inbox:recv()
    sock:settimeout(10)
    return sock:receive("*l")
  end, ch)
  ch:send(s) -- the socket moves; nothing arrives on it meanwhile
  local data, err = join(waiting)
  t.eq(data, nil)
  t.eq(err, "closed")
  c:send("for the thread\n")
  local ok, line = th:join()
  t.eq(ok, true)
  t.eq(line, "for the thread")
  c:close()
end)

t.test("a task cancelled while it holds a socket's turn, or waits for it, hands it on to the next task in line", function()
  local c, s = pair()
  local a = task.spawn(function() return s:receive("*l") end)
  local b = task.spawn(function() return s:receive("*l") end) -- in line behind a
  local d = task.spawn(function() return s:receive("*l") end) -- behind b
  c:send("par") pause()
  t.eq(a:cancel(), true) -- a held the socket's read side, and "par"
  t.eq(b:cancel(), true) -- b waited in line
  c:send("t of a line\n")
  t.eq(join(d), "t of a line", "d reads on from where the cancelled call stopped")
  c:close() s:close()
end)

t.test("a task waiting for its turn times out by its own timeout; settimeout(0) does not wait for it", function()
  local c, s = pair()
  local a = task.spawn(function() return s:receive("*l") end)
  local b = task.spawn(function()
    s:settimeout(0.05)
    local r1 = table.pack(s:receive("*l"))
    s:settimeout(0)
    local r2 = table.pack(s:receive("*l"))
    s:settimeout(-1)
    return r1, r2
  end)
  local r1, r2 = join(b)
  t.eq(r1[1], nil) t.eq(r1[2], "timeout") t.eq(r1[3], "")
  t.eq(r2[1], nil) t.eq(r2[2], "timeout")
  c:send("for a\n")
  t.eq(join(a), "for a")
  c:close() s:close()
end)

t.test("a coroutine of your own inside a task raises instead of hanging when the socket is another task's", function()
  local c, s = pair()
  local a = task.spawn(function() return s:receive("*l") end)
  local b = task.spawn(function()
    local co = coroutine.wrap(function() return s:receive("*l") end)
    return pcall(co)
  end)
  local ok, err = join(b)
  t.eq(ok, false)
  t.match(err, "socket in use by a call that cannot go on")
  c:send("for a\n")
  t.eq(join(a), "for a")
  c:close() s:close()
end)

-- Every wait in a task is a yield from C, which leaves through a longjmp;
-- so is every error a pcall catches. Under ThreadSanitizer these once went
-- unseen (Debian's liblua leaves through __longjmp_chk), and after about
-- 65,000 of them TSan's own check failed and the process hung: `netlua -m
-- bench` for half a second did. runtime/tsanjmp.c. A child process, so that
-- a hang is killed and reported instead of hanging this file.
t.test("100,000 task yields and caught errors finish (they once hung under TSan)", function()
  local script = t.script([[
    local task = require "task"
    local h = task.spawn(function()
      for _ = 1, 100000 do task.yield() end
      for _ = 1, 100000 do pcall(error, "x") end
      return "done"
    end)
    print(h:join())
  ]])
  local out, err, code = t.sh("timeout -s KILL 120 " .. t.shellquote(t.NETLUA) .. " " .. t.shellquote(script))
  t.eq(code, 0, err)
  t.eq(out, "true\tdone\n", err)
end)

t.done()
