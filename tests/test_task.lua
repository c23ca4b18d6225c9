-- test_task.lua: tasks (coroutines on the thread's event loop): spawn, join,
-- cancel, errors, and every socket wait suspending only its task.
local t = require "testlib"
local task = require "task"
local socket = require "socket"
local time = require "time"

local listener, pair = t.listener, t.tcp_pair
t.test("spawn runs the function with its arguments; join returns true and its results", function()
  local h = task.spawn(function(a, b) return a + b, "two" end, 40, 2)
  local ok, sum, two = h:join()
  t.eq(ok, true)
  t.eq(sum, 42)
  t.eq(two, "two")
  t.eq(h:status(), "done")
  t.eq(select("#", h:join()), 3, "joining again gives the same outcome")
end)

t.test("tasks run interleaved: a sleeping task lets the others go first", function()
  local order = {}
  local a = task.spawn(function() task.sleep(0.05) order[#order + 1] = "slow" end)
  local b = task.spawn(function() task.sleep(0.01) order[#order + 1] = "fast" end)
  local c = task.spawn(function() order[#order + 1] = "at once" end)
  a:join() b:join() c:join()
  t.eq(table.concat(order, ","), "at once,fast,slow")
end)

t.test("task.yield lets the other ready tasks run", function()
  local log = {}
  local function worker(name)
    for i = 1, 3 do log[#log + 1] = name .. i; task.yield() end
  end
  local a, b = task.spawn(worker, "a"), task.spawn(worker, "b")
  a:join() b:join()
  t.eq(table.concat(log, " "), "a1 b1 a2 b2 a3 b3")
end)

t.test("task.self gives the running task's handle, nil outside tasks", function()
  t.eq(task.self(), nil)
  local h
  h = task.spawn(function() return task.self() end)
  local ok, me = h:join()
  t.ok(ok)
  t.eq(me, h)
end)

t.test("an error in a task: join returns false and the message with the task's traceback", function()
  local function inner() error("boom in task") end
  local h = task.spawn{function() inner() end, quiet = true}
  local ok, err = h:join()
  t.eq(ok, false)
  t.match(err, "boom in task")
  t.match(err, "stack traceback:")
  t.match(err, "in %a* ?%a* ?'?inner'?")
  t.eq(h:status(), "failed")
end)

t.test("join with a timeout returns nil, 'timeout' and the task keeps running", function()
  local h = task.spawn(function() task.sleep(0.2) return "late" end)
  local r, err = h:join(0.01)
  t.eq(r, nil)
  t.eq(err, "timeout")
  t.eq(h:status(), "waiting")
  t.eq(select(2, h:join()), "late")
end)

t.test("a task joining another task waits for it without blocking the rest", function()
  local a = task.spawn(function() task.sleep(0.03) return 1 end)
  local ticks = 0
  local ticker = task.spawn(function() for _ = 1, 3 do ticks = ticks + 1; task.sleep(0.001) end end)
  local b = task.spawn(function() local _, v = a:join() return v + 1 end)
  t.eq(select(2, b:join()), 2)
  ticker:join()
  t.eq(ticks, 3)
end)

t.test("task.all collects every outcome in order", function()
  local hs = {}
  for i = 1, 50 do
    hs[i] = task.spawn{function()
      task.sleep((50 - i) * 0.0005)
      if i == 7 then error("seven", 0) end
      return i * i
    end, quiet = true}
  end
  local all = task.all(hs)
  t.eq(#all, 50)
  t.eq(all[3][1], true)
  t.eq(all[3][2], 9)
  t.eq(all[7][1], false)
  t.match(all[7][2], "^seven\nstack traceback:")
  t.eq(all[50][2], 2500)
end)

t.test("a thousand sleeping tasks all finish", function()
  local hs, done = {}, 0
  for i = 1, 1000 do hs[i] = task.spawn(function() task.sleep(0.02) done = done + 1 end) end
  task.all(hs)
  t.eq(done, 1000)
  t.eq(task.count(), 0)
end)

-- ---- cancellation --------------------------------------------------------

t.test("cancel ends a sleeping task; its to-be-closed variables run; join sees 'cancelled'", function()
  local closed = false
  local h = task.spawn(function()
    local guard <close> = setmetatable({}, {__close = function() closed = true end})
    task.sleep(60)
  end)
  task.yield() -- let it start
  t.eq(h:cancel(), true)
  t.eq(closed, true)
  local ok, err = h:join()
  t.eq(ok, false)
  t.eq(err, "cancelled")
  t.eq(h:status(), "cancelled")
  t.eq(h:cancel(), false, "cancelling a finished task")
end)

t.test("cancel a task blocked in receive, recv, accept, send, select, sleep and join", function()
  local p1, p2, p3, p4 = {pair()}, {pair()}, {pair()}, {pair()}
  local server = listener()
  local big = string.rep("x", 8 << 20)
  local other = task.spawn(function() task.sleep(60) end)
  local blocked = {
    receive = task.spawn(function() return p1[2]:receive("*l") end),
    recv = task.spawn(function() return p2[2]:recv(10) end),
    accept = task.spawn(function() return server:accept() end),
    send = task.spawn(function() return p3[1]:send(big) end), -- nobody reads
    select = task.spawn(function() return socket.select({p4[2]}, nil) end),
    join = task.spawn(function() return other:join() end),
    sleep = task.spawn(function() return socket.sleep(60) end),
  }
  task.sleep(0.05)
  for name, h in pairs(blocked) do
    t.eq(h:status(), "waiting", name)
    t.eq(h:cancel(), true, name)
    t.eq(select(2, h:join()), "cancelled", name)
  end
  other:cancel()
  -- the sockets still work after their waiters were cancelled
  p3[2]:settimeout(0)
  t.eq(p3[2]:receive(5), "xxxxx", "what the cancelled send had sent is there")
  p1[1]:send("line\n")
  t.eq(p1[2]:receive("*l"), "line")
  for _, p in ipairs({p1, p2, p3, p4}) do p[1]:close() p[2]:close() end
  server:close()
end)

t.test("a task cancelling itself stops with 'cancelled'", function()
  local after = false
  local h = task.spawn(function() task.self():cancel(); after = true end)
  local ok, err = h:join()
  t.eq(ok, false)
  t.match(err, "cancelled")
  t.eq(after, false)
end)

-- ---- socket waits in tasks -------------------------------------------------

t.test("a receive in one task does not block another task", function()
  local c, s = pair()
  local reader = task.spawn(function() return s:receive("*l") end)
  local writer = task.spawn(function()
    task.sleep(0.01)
    c:send("hello")
    task.sleep(0.01)
    c:send(" world\nrest")
    return true
  end)
  local ok, line = reader:join()
  t.ok(ok)
  t.eq(line, "hello world")
  writer:join()
  t.eq(s:receive(4), "rest", "data after the line is kept")
  c:close() s:close()
end)

t.test("receive patterns keep every byte across waits (count, line, all, prefix)", function()
  local c, s = pair()
  local feeder = task.spawn(function()
    for _, piece in ipairs({"ab", "cde", "fgh\r", "\nij", "klmnop", "qr"}) do
      c:send(piece)
      task.sleep(0.005)
    end
    c:close()
  end)
  local h = task.spawn(function()
    local a = s:receive(4)              -- "abcd" over two sends
    local line = s:receive("*l", "<")   -- "<efgh" (CR dropped)
    local n = s:receive(5, "12")        -- the prefix counts: "12ijk"
    local rest = s:receive("*a")        -- until closed
    return a, line, n, rest
  end)
  local ok, a, line, n, rest = h:join()
  t.ok(ok, a)
  t.eq(a, "abcd")
  t.eq(line, "<efgh")
  t.eq(n, "12ijk")
  t.eq(rest, "lmnopqr")
  feeder:join()
  s:close()
end)

t.test("a long line that arrives in many small pieces in a task is received whole, without recopying it at each wake-up", function()
  local c, s = pair()
  local piece, n = string.rep("y", 1024), 256
  local feeder = task.spawn(function()
    for _ = 1, n do
      c:send(piece)
      task.sleep(0.001) -- the reader wakes up for each piece
    end
    c:send("\n")
  end)
  collectgarbage("collect")
  collectgarbage("stop")
  local before = collectgarbage("count")
  local reader = task.spawn(function() return s:receive("*l") end)
  local ok, line = reader:join()
  local allocated = (collectgarbage("count") - before) * 1024
  collectgarbage("restart")
  feeder:join()
  t.ok(ok, line)
  t.ok(line == string.rep(piece, n), "the line arrived whole")
  -- Each wake-up used to copy the whole line so far: about n/2 times its size.
  t.ok(allocated < 8 * #line, string.format("allocated %d bytes for a %d-byte line", allocated, #line))
  c:close() s:close()
end)

t.test("max-line holds across the wake-ups of a receive in a task", function()
  local c, s = pair()
  s:setoption("max-line", 10)
  local feeder = task.spawn(function()
    for _, part in ipairs({"abc", "def\r", "ghij", "klm\n", "ok\n"}) do
      c:send(part)
      task.sleep(0.005)
    end
  end)
  local reader = task.spawn(function()
    local r = table.pack(s:receive("*l"))
    return r, s:receive("*l"), s:receive("*l")
  end)
  local ok, r, rest, nxt = reader:join()
  feeder:join()
  t.ok(ok, r)
  t.eq(r[1], nil)
  t.eq(r[2], "line too long")
  t.eq(r[3], "abcdefghij")
  t.eq(rest, "klm")
  t.eq(nxt, "ok")
  c:close() s:close()
end)

t.test("receive timeout in a task returns nil, 'timeout' and the partial data ('b' and 't')", function()
  local c, s = pair()
  c:send("part")
  local h = task.spawn(function()
    s:settimeout(0.05)
    local r1 = table.pack(s:receive("*l"))
    s:settimeout(0.05, "t")
    local r2 = table.pack(s:receive(10, "x"))
    return r1, r2
  end)
  local ok, r1, r2 = h:join()
  t.ok(ok, r1)
  t.eq(r1[1], nil) t.eq(r1[2], "timeout") t.eq(r1[3], "part")
  t.eq(r2[1], nil) t.eq(r2[2], "timeout") t.eq(r2[3], "x")
  c:close() s:close()
end)

t.test("'t' timeout spans the whole call across several waits in a task", function()
  local c, s = pair()
  local dripper = task.spawn(function()
    for _ = 1, 100 do
      if not c:send("d") then break end
      task.sleep(0.01)
    end
  end)
  local h = task.spawn(function()
    s:settimeout(0.1, "t")
    local start = time.monotonic()
    local r, err, partial = s:receive("*a")
    return err, #partial, time.monotonic() - start
  end)
  local ok, err, n, took = h:join()
  t.ok(ok, err)
  t.eq(err, "timeout")
  t.ok(n >= 1, "some drops arrived")
  t.ok(took < 0.9, "the total timeout stopped it long before the 100 drops")
  dripper:cancel()
  c:close() s:close()
end)

t.test("accept, recv and select time out in tasks; a zero timeout never suspends", function()
  local server = listener()
  local c, s = pair()
  local h = task.spawn(function()
    server:settimeout(0.02)
    local a1, a2 = server:accept()
    s:settimeout(0.02)
    local r1, r2 = s:recv(10)
    local rr, ww, serr = socket.select({s}, nil, 0.02)
    s:settimeout(0)
    local z1, z2 = s:receive(1)
    return a2, r2, serr, #rr, z2
  end)
  local ok, aerr, rerr, serr, nready, zerr = h:join()
  t.ok(ok, aerr)
  t.eq(aerr, "timeout")
  t.eq(rerr, "timeout")
  t.eq(serr, "timeout")
  t.eq(nready, 0)
  t.eq(zerr, "timeout")
  server:close() c:close() s:close()
end)

t.test("a select in a task woken for data someone else took first waited again with a fresh timeout; its timeout is the call's", function()
  local c, s = pair()
  local selecting, drops = true, 0
  local sel = task.spawn(function()
    local r, _, err = socket.select({s}, nil, 0.2)
    selecting = false
    return #r, err
  end)
  local dripper = task.spawn(function()
    for i = 1, 500 do -- far longer than the select's timeout
      c:send("x")
      drops = i
      if not selecting then break end
      task.sleep(0.01)
    end
  end)
  s:settimeout(0.5)
  while selecting do
    s:recv(100) -- the main script takes each drop before the select's task runs again
  end
  local ok, n, err = sel:join(10)
  t.eq(ok, true)
  t.eq(n, 0)
  t.eq(err, "timeout")
  t.ok(drops < 500, "the select timed out while the drops went on")
  dripper:join(10)
  c:close() s:close()
end)

t.test("each receive that waited in a task allocated a 1 KiB buffer; a socket's waits now allocate nothing", function()
  local c, s = pair()
  local echo = task.spawn(function()
    while true do
      local d = s:receive(1)
      if not d or not s:send(d) then break end
    end
  end)
  local h = task.spawn(function()
    collectgarbage("stop")
    local grown = {}
    for batch = 1, 3 do -- the first one also grows the stacks the waits use
      local before = collectgarbage("count")
      for _ = 1, 100 do -- each receive on both sides waits for the other
        c:send("x")
        assert(c:receive(1) == "x")
      end
      grown[batch] = collectgarbage("count") - before
    end
    collectgarbage("restart")
    return grown
  end)
  local ok, grown = h:join(10)
  t.eq(ok, true, grown)
  t.eq(grown[2], 0)
  t.eq(grown[3], 0)
  c:close()
  echo:join(10)
  s:close()
end)

t.test("send of a large block from a task completes while the peer reads slowly", function()
  local c, s = pair()
  local block = {}
  for i = 1, 40000 do block[i] = string.format("%07d\n", i) end
  block = table.concat(block) -- 320,000 bytes: more than the socket buffers hold
  local sender = task.spawn(function() return c:send(block) end)
  local reader = task.spawn(function()
    local parts = {}
    while true do
      local data = s:recv(65536)
      if not data then break end
      parts[#parts + 1] = data
      if #parts % 4 == 0 then task.sleep(0.001) end
    end
    return table.concat(parts)
  end)
  local ok, last = sender:join()
  t.ok(ok)
  t.eq(last, #block)
  c:close()
  local _, got = reader:join()
  t.eq(#got, #block)
  t.ok(got == block, "same bytes in the same order")
  s:close()
end)

t.test("send timeout in a task reports the index of the last byte sent", function()
  local c, s = pair()
  local h = task.spawn(function()
    c:settimeout(0.05)
    return c:send(string.rep("y", 8 << 20))
  end)
  local ok, r, err, last = h:join()
  t.ok(ok)
  t.eq(r, nil)
  t.eq(err, "timeout")
  t.ok(last > 0 and last < 8 << 20, "partly sent: " .. tostring(last))
  s:settimeout(0)
  local got = 0
  while true do
    local d = s:recv(1 << 16)
    if not d then break end
    got = got + #d
  end
  t.eq(got, last, "the peer got exactly the bytes send said it sent")
  c:close() s:close()
end)

t.test("connect in tasks: success, refused, and many at once", function()
  local server, port = listener()
  local closed_port
  do local tmp, p = listener(); closed_port = p; tmp:close() end
  local hs = {}
  for i = 1, 20 do
    hs[i] = task.spawn(function()
      local c = socket.tcp()
      local ok, err = c:connect("127.0.0.1", port)
      c:close()
      return ok, err
    end)
  end
  local refused = task.spawn(function() return socket.connect("127.0.0.1", closed_port) end)
  for i = 1, 20 do
    local ok, r = hs[i]:join()
    t.ok(ok) t.eq(r, 1)
  end
  local _, c, err = refused:join()
  t.eq(c, nil)
  t.eq(err, "connection refused")
  server:close()
end)

t.test("udp receive and receivefrom wait in tasks", function()
  local a = assert(socket.udp())
  assert(a:setsockname("127.0.0.1", 0))
  local ip, port = a:getsockname()
  local h = task.spawn(function()
    local d1 = a:receive()
    local d2, fip = a:receivefrom()
    return d1, d2, fip
  end)
  local b = assert(socket.udp())
  task.spawn(function()
    task.sleep(0.01)
    b:sendto("one", ip, port)
    task.sleep(0.01)
    b:sendto("two", ip, port)
  end)
  local ok, d1, d2, fip = h:join()
  t.ok(ok, d1)
  t.eq(d1, "one") t.eq(d2, "two") t.eq(fip, "127.0.0.1")
  a:close() b:close()
end)

t.test("a descriptor number reused after close is watched again (fd reuse)", function()
  -- a fresh process, so the descriptor numbers come back predictably
  local path, dir = t.script([[
    local socket, task = require "socket", require "task"
    local function pair()
      local server = assert(socket.bind("127.0.0.1", 0))
      local _, port = server:getsockname()
      local c = assert(socket.connect("127.0.0.1", port))
      local s = assert(server:accept())
      server:close()
      return c, s
    end
    local c0, s0 = pair() -- before the loop exists
    c0:close() s0:close()
    local c1, s1 = pair() -- stays open
    for round = 1, 10 do
      local c, s = pair()
      local h = task.spawn(function() return s:receive("*l") end)
      task.yield() -- h now waits on its descriptor through the loop
      c:send("round " .. round .. "\n")
      local _, line, err = h:join(5)
      print(s:getfd(), line or err)
      c:close() s:close()
    end
  ]])
  local out, err, code = t.sh("timeout 30 " .. t.shellquote(t.NETLUA) .. " " .. t.shellquote(path))
  t.eq(code, 0, err)
  local fds, n = {}, 0
  for fd, line in out:gmatch("(%S+)\t([^\n]*)") do
    n = n + 1
    t.eq(line, "round " .. n, "descriptor " .. fd)
    fds[fd] = true
  end
  t.eq(n, 10)
  t.rmtree(dir)
end)

t.test("time.sleep and socket.sleep suspend only the task", function()
  local log = {}
  local a = task.spawn(function() time.sleep(0.03) log[#log + 1] = "time" end)
  local b = task.spawn(function() socket.sleep(0.01) log[#log + 1] = "socket" end)
  local c = task.spawn(function() log[#log + 1] = "none" end)
  a:join() b:join() c:join()
  t.eq(table.concat(log, ","), "none,socket,time")
end)

t.test("the main script's own waits let the tasks run", function()
  local c, s = pair()
  task.spawn(function() task.sleep(0.01) c:send("from a task\n") end)
  s:settimeout(5)
  t.eq(s:receive("*l"), "from a task", "a blocking receive in main")
  c:close() s:close()
end)

t.test("a coroutine of the user's own inside a task still reads from a socket", function()
  local c, s = pair()
  local h = task.spawn(function()
    local lines = coroutine.wrap(function()
      while true do
        local l = s:receive("*l")
        if not l then return end
        coroutine.yield(l)
      end
    end)
    return lines(), lines()
  end)
  c:send("one\ntwo\n")
  local ok, a, b = h:join()
  t.ok(ok, a)
  t.eq(a, "one") t.eq(b, "two")
  c:close() s:close()
end)

t.test("a wait inside a C callback (sort comparator, __tostring) says how to restructure", function()
  local c, s = pair()
  local h = task.spawn{function()
    local list = {s, s}
    table.sort(list, function() return s:receive("*l") ~= nil end)
  end, quiet = true}
  local ok, err = h:join()
  t.eq(ok, false)
  t.match(err, "a task cannot wait here")
  t.match(err, "table.sort comparator")
  local h2 = task.spawn{function()
    local obj = setmetatable({}, {__tostring = function() return s:receive(1) end})
    return tostring(obj)
  end, quiet = true}
  local ok2, err2 = h2:join()
  t.eq(ok2, false)
  t.match(err2, "a task cannot wait here")
  local h3 = task.spawn(function() -- Lua 5.4 metamethods called from Lua can wait
    local obj = setmetatable({}, {__index = function() return s:receive("*l") end})
    return obj.x
  end)
  c:send("through __index\n")
  t.eq(select(2, h3:join()), "through __index")
  c:close() s:close()
end)

-- ---- the program as a whole ------------------------------------------------

t.test("the script ends only after its tasks; an error in one is printed with its traceback", function()
  local path, dir = t.script([[
    local task = require "task"
    task.spawn(function() task.sleep(0.05) print("late task done") end)
    task.spawn(function() local function deep() error("unjoined failure") end deep() end)
    task.spawn(function() task.sleep(0.02) print("other task done") end)
    print("main done")
  ]])
  local out, err, code = t.netlua(t.shellquote(path))
  t.eq(code, 0, err)
  t.eq(out, "main done\nother task done\nlate task done\n")
  t.match(err, "netlua: error in task 2: .*unjoined failure")
  t.match(err, "stack traceback:.*in %a* ?%a* ?'?deep'?")
  t.rmtree(dir)
end)

t.test("a failure is printed once even when joined; a later join returns it and prints nothing", function()
  local path, dir = t.script([[
    local task = require "task"
    local h = task.spawn(function() error("handled") end)
    local ok, err = h:join()
    print(ok, err:match("handled"))
    h:join()
    h = nil
    collectgarbage() collectgarbage()
  ]])
  local out, err, code = t.netlua(t.shellquote(path))
  t.eq(code, 0)
  t.eq(out, "false\thandled\n")
  local _, count = err:gsub("handled", "")
  t.eq(count, 1, err)
  t.rmtree(dir)
end)

t.test("Ctrl-C stops a loop of thousands of waiting tasks at once (status 130)", function()
  local path, dir = t.script([[
    local task = require "task"
    local socket = require "socket"
    local server = assert(socket.bind("127.0.0.1", 0))
    for i = 1, 3000 do
      if i % 2 == 0 then task.spawn(task.sleep, 3600)
      else task.spawn(function() server:accept() end) end
    end
    task.spawn(function() task.sleep(0.05) print("ready") io.stdout:flush() end)
  ]])
  local out, err, code = t.interrupt(path)
  t.eq(code, 130, err)
  t.match(out, "ready")
  t.match(err, "interrupted")
  t.rmtree(dir)
end)

t.done()
