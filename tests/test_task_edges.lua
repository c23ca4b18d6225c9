-- test_task_edges.lua: the task scheduler's edges: Ctrl-C in tasks busy in
-- Lua code, waits inside mutex:with, errors nobody joins, and limits given
-- as math.huge, NaN or negative numbers.
local t = require "testlib"
local task = require "task"
local thread = require "thread"
local socket = require "socket"

-- A to-be-closed value that reports on stderr when it closes.
local CLOSER = [[
local function closer(name)
  return setmetatable({}, {__close = function()
    io.stderr:write(name, " closed\n") io.stderr:flush()
  end})
end
]]

-- ---- Ctrl-C ------------------------------------------------------------------

t.test("Ctrl-C stops a task busy in Lua code: exit 130, every task's to-be-closed variables run", function()
  local path, dir = t.script(CLOSER .. [[
    local task = require "task"
    task.spawn(function()
      local c <close> = closer("sleeper")
      task.sleep(3600)
    end)
    local h = task.spawn(function()
      local c <close> = closer("busy")
      print("ready") io.stdout:flush()
      local n = 0
      while true do n = n + 1 end
    end)
    h:join()
    print("not reached")
  ]])
  local out, err, code = t.interrupt(path)
  t.eq(code, 130, err)
  t.eq(out, "ready\n")
  t.match(err, "netlua: interrupted\n")
  t.match(err, "busy closed\n")
  t.match(err, "sleeper closed\n")
  t.ok(not err:find("error in task"), "an interrupt is not a task error: " .. err)
  t.rmtree(dir)
end)

t.test("Ctrl-C in a busy task is catchable in that task; the program goes on", function()
  local path, dir = t.script([[
    local task = require "task"
    local other = task.spawn(function() task.sleep(0.01) return "other done" end)
    local h = task.spawn(function()
      -- "ready" inside the pcall: a Ctrl-C that comes at once lands in it too
      local ok, err = pcall(function() print("ready") io.stdout:flush() while true do end end)
      return "caught " .. tostring(err)
    end)
    print(h:join())
    print(other:join())
  ]])
  local out, err, code = t.interrupt(path)
  t.eq(code, 0, err)
  t.eq(out, "ready\ntrue\tcaught interrupted\ntrue\tother done\n")
  t.rmtree(dir)
end)

t.test("Ctrl-C in a busy task that no one joins stops the waiting main script", function()
  local path, dir = t.script([[
    local task = require "task"
    task.spawn(function()
      print("ready") io.stdout:flush()
      while true do end
    end)
    local ok, err = pcall(task.sleep, 3600)
    io.stderr:write("main caught ", tostring(err), "\n")
  ]])
  local out, err, code = t.interrupt(path)
  t.eq(code, 0, err)
  t.eq(out, "ready\n")
  t.match(err, "main caught interrupted\n")
  t.rmtree(dir)
end)

t.test("Ctrl-C while tasks that catch every error keep running short steps reaches the main script", function()
  -- The tasks run Lua code nearly all the time, so Ctrl-C lands in one of
  -- them; none is busy (each yields every few hundred instructions), so it
  -- is the waiting main script that gets "interrupted", not a pcall that
  -- would swallow it (a server's per-connection pcall, say).
  local path, dir = t.script([[
    local task = require "task"
    local sum = 0
    for _ = 1, 4 do
      task.spawn(function()
        while true do
          local ok, err = pcall(function()
            for i = 1, 200 do sum = sum + i end
            task.yield()
          end)
          if not ok then io.stderr:write("a task caught ", tostring(err), "\n") end
        end
      end)
    end
    task.yield()
    print("ready") io.stdout:flush()
    task.sleep(3600)
  ]])
  local out, err, code = t.interrupt(path)
  t.eq(code, 130, err)
  t.eq(out, "ready\n")
  t.match(err, "netlua: interrupted\n")
  t.ok(not err:find("a task caught"), "no task saw the interrupt: " .. err)
  t.rmtree(dir)
end)

t.test("Ctrl-C in a busy main script with waiting tasks: exit 130, the tasks' to-be-closed variables run", function()
  local path, dir = t.script(CLOSER .. [[
    local task = require "task"
    local socket = require "socket"
    local server = assert(socket.bind("127.0.0.1", 0))
    task.spawn(function()
      local c <close> = closer("acceptor")
      server:accept()
    end)
    task.yield()
    print("ready") io.stdout:flush()
    while true do end
  ]])
  local out, err, code = t.interrupt(path)
  t.eq(code, 130, err)
  t.eq(out, "ready\n")
  t.match(err, "netlua: interrupted\n")
  t.match(err, "acceptor closed\n")
  t.rmtree(dir)
end)

t.test("a thread whose function fails cancels the tasks it leaves: their to-be-closed variables run", function()
  local ch = thread.channel()
  local th = thread.spawn{function(c)
    local task = require "task"
    task.spawn(function()
      local guard <close> = setmetatable({}, {__close = function() c:send("task closed") end})
      task.sleep(3600)
    end)
    task.yield()
    error("thread fails")
  end, ch, quiet = true}
  local ok, err = th:join()
  t.eq(ok, false)
  t.match(err, "thread fails")
  t.eq(ch:recv(10), "task closed")
end)

-- ---- errors nobody joins -------------------------------------------------------

t.test("an error in a task is printed when the task ends, while the program still runs", function()
  local path, dir = t.script([[
    local task = require "task"
    local h = task.spawn(function() error("early failure") end)
    task.yield()
    io.stderr:write("main still running, task ", h:status(), "\n")
    task.sleep(0.01)
  ]])
  local out, err, code = t.netlua(t.shellquote(path))
  t.eq(code, 0, err)
  t.eq(out, "")
  local printed = err:find("error in task %d+: .*early failure")
  local running = err:find("main still running, task failed")
  t.ok(printed and running and printed < running, "printed before the main script went on:\n" .. err)
  t.match(err, "stack traceback:")
  t.rmtree(dir)
end)

t.test("an error printed when its task ended is not printed again; a later join still returns it", function()
  local path, dir = t.script([[
    local task = require "task"
    local h = task.spawn(function() error("once only") end)
    task.yield()
    local ok, err = h:join()
    print(ok, (err:match("once only")))
    h = nil
    collectgarbage() collectgarbage()
  ]])
  local out, err, code = t.netlua(t.shellquote(path))
  t.eq(code, 0, err)
  t.eq(out, "false\tonce only\n")
  local _, count = err:gsub("once only", "")
  t.eq(count, 1, err)
  t.rmtree(dir)
end)

t.test("an error is printed when its task fails even if a join waits for it (it may ignore it); quiet tasks print nothing", function()
  local path, dir = t.script([[
    local task = require "task"
    local h = task.spawn(function() task.sleep(0.01) error("joined failure") end)
    h:join()                                   -- the outcome ignored
    local q = task.spawn{function(x) task.sleep(0.01) error("quiet failure " .. x) end, 7, quiet = true}
    print(q:join() == false, select(2, q:join()):match("quiet failure 7") ~= nil)
    local hs = {
      task.spawn(function() task.sleep(0.02) return 1 end),
      task.spawn{function() error("all failure") end, quiet = true},
    }
    local r = task.all(hs)
    print(r[1][2], (r[2][2]:match("all failure")))
  ]])
  local out, err, code = t.netlua(t.shellquote(path))
  t.eq(code, 0, err)
  t.eq(out, "true\ttrue\n1\tall failure\n")
  t.match(err, "^netlua: error in task 1: [^\n]*script.lua:2: joined failure\nstack traceback:\n")
  t.ok(not err:find("quiet failure") and not err:find("all failure"), "quiet tasks print nothing:\n" .. err)
  local _, count = err:gsub("joined failure", "")
  t.eq(count, 1, err)
  t.rmtree(dir)
end)

t.test("task.spawn's table form checks its function", function()
  t.raises("(function expected, got no value)", task.spawn, {quiet = true})
  t.raises("(function expected, got number)", task.spawn, 42)
end)

t.test("a task that fails closes its to-be-closed variables when it ends", function()
  local log = {}
  local h = task.spawn{function()
    local c <close> = setmetatable({}, {__close = function() log[#log + 1] = "closed" end})
    error("failure with a resource")
  end, quiet = true}
  local ok = h:join()
  t.eq(ok, false)
  t.eq(table.concat(log, ","), "closed")
end)

-- ---- waits inside mutex:with ----------------------------------------------------

t.test("a task waits (channel, sleep, socket) inside mutex:with; another task wanting the lock suspends until it ends", function()
  local m, ch = thread.mutex(), thread.channel()
  local server = assert(socket.bind("127.0.0.1", 0))
  local _, port = server:getsockname()
  local log = {}
  local a = task.spawn(function()
    return m:with(function(x)
      log[#log + 1] = "a in"
      local v = ch:recv()
      task.sleep(0.001)
      local c = assert(server:accept())
      local line = c:receive("*l")
      c:close()
      log[#log + 1] = "a out"
      return x, v, line
    end, "arg")
  end)
  local b = task.spawn(function()
    return m:with(function() log[#log + 1] = "b in" return ch:recv() end)
  end)
  task.yield()
  t.eq(b:status(), "waiting")
  log[#log + 1] = "main sends"
  ch:send("value")
  local client = assert(socket.connect("127.0.0.1", port))
  client:send("over the socket\n")
  t.eq(table.concat({tostring((a:join())), select(2, a:join())}, "|"), "true|arg|value|over the socket")
  ch:send("b's value")
  t.eq(select(2, b:join()), "b's value")
  t.eq(table.concat(log, ", "), "a in, main sends, a out, b in")
  client:close() server:close()
end)

t.test("mutex:with releases the lock when fn fails after a wait and when the task is cancelled inside fn", function()
  local m = thread.mutex()
  local failing = task.spawn{function()
    m:with(function() task.sleep(0.001) error("failed while holding") end)
  end, quiet = true}
  local ok, err = failing:join()
  t.eq(ok, false)
  t.match(err, "failed while holding")
  t.eq(m:trylock(), true, "released after the error")
  m:unlock()
  local stuck = task.spawn(function() m:with(function() task.sleep(3600) end) end)
  task.yield()
  t.eq(m:trylock(), false, "held while the task waits inside fn")
  t.eq(stuck:cancel(), true)
  t.eq(m:trylock(), true, "released by the cancel")
  m:unlock()
end)

t.test("the main script's mutex:with waits for a task that holds the lock across a wait", function()
  local m = thread.mutex()
  local log = {}
  local h = task.spawn(function()
    m:with(function() task.sleep(0.01) log[#log + 1] = "task done" end)
  end)
  task.yield()
  t.eq(m:with(function(a, b) log[#log + 1] = "main in" return a + b end, 1, 2), 3)
  t.eq(table.concat(log, ", "), "task done, main in")
  t.eq(h:status(), "done")
end)

t.test("a thread's mutex:with still works around plain waits", function()
  local m, ch = thread.mutex(), thread.channel()
  local th = thread.spawn(function(mu, c)
    return mu:with(function() return c:recv() end)
  end, m, ch)
  ch:send("through the thread")
  t.eq(select(2, th:join()), "through the thread")
  t.eq(m:trylock(), true)
  m:unlock()
end)

-- ---- limits given as math.huge, huge, NaN or negative numbers -------------------
-- (a plain C cast of such a double is undefined: make SANITIZE=1 test
-- checks float-cast-overflow; here each one must also behave)

local FOREVER = {math.huge, 1e300, 0/0, -1}

t.test("settimeout(math.huge, 1e300, NaN, -1) means no limit for a receive that waits", function()
  for _, limit in ipairs(FOREVER) do
    local server = assert(socket.bind("127.0.0.1", 0))
    local _, port = server:getsockname()
    local c = assert(socket.connect("127.0.0.1", port))
    local peer = assert(server:accept())
    server:close()
    for _, mode in ipairs({"b", "t"}) do c:settimeout(limit, mode) end
    -- the peer writes from another thread, so the receive really waits
    local th = thread.spawn(function(p)
      require("time").sleep(0.02)
      p:send("late line\n")
      p:close()
    end, peer)
    t.eq(c:receive("*l"), "late line", tostring(limit))
    th:join()
    c:close()
  end
end)

t.test("channel recv/send, thread join, task join and task.sleep take math.huge, 1e300, NaN and -1 as no limit", function()
  for _, limit in ipairs(FOREVER) do
    local ch = thread.channel(1)
    local th = thread.spawn(function(c) require("time").sleep(0.02) c:send("from thread") return "joined" end, ch)
    t.eq(ch:recv(limit), "from thread", tostring(limit))
    t.eq(select(2, th:join(limit)), "joined")
    t.eq(ch:send("fits", limit), true)
    local h = task.spawn(function() task.sleep(0.01) return "task joined" end)
    t.eq(select(2, h:join(limit)), "task joined")
  end
  local sleeper = task.spawn(function() task.sleep(math.huge) end)
  local sleeper2 = task.spawn(function() task.sleep(1e300) end)
  task.yield()
  t.eq(sleeper:status(), "waiting")
  t.eq(sleeper2:status(), "waiting")
  t.eq(sleeper:cancel(), true)
  t.eq(sleeper2:cancel(), true)
  t.raises("non-negative", function() task.sleep(0/0) end)
end)

t.test("socket.select and the main script's waits take math.huge as no limit", function()
  local server = assert(socket.bind("127.0.0.1", 0))
  local _, port = server:getsockname()
  local th = thread.spawn(function(p)
    require("time").sleep(0.02)
    require("socket").connect("127.0.0.1", p):close()
  end, tonumber(port))
  local r = socket.select({server}, nil, math.huge)
  t.eq(r[1], server)
  r = socket.select({server}, nil, 1e300)
  t.eq(r[1], server)
  th:join()
  server:close()
end)

t.test("http.server and http requests take math.huge limits and timeouts", function()
  local http = require "http"
  local srv = assert(http.server{port = 0, max_body = math.huge, max_uri = 1e300,
    max_header = math.huge, max_connections = math.huge, request_timeout = math.huge,
    keepalive_timeout = 1e300, send_timeout = math.huge})
  srv:route("POST", "/echo", function(req) return req.body end)
  local got
  task.spawn(function()
    local r, err = http.post(srv.url .. "/echo", "body text",
      {timeout = math.huge, connect_timeout = 1e300, max_redirects = math.huge})
    got = r and r.body or err
    srv:close()
  end)
  srv:serve({timeout = math.huge})
  t.eq(got, "body text")
  t.raises("max_body", function() http.server{port = 0, max_body = -1} end)
  t.raises("max_connections", function() http.server{port = 0, max_connections = 0/0} end)
end)

t.test("time.datetime rejects a time too far off instead of overflowing time_t", function()
  local time = require "time"
  t.raises("out of range", function() time.datetime(1e300) end)
  t.raises("out of range", function() time.datetime(-1e300) end)
  t.raises("finite", function() time.datetime(math.huge) end)
end)

-- ---- socket options without a descriptor ------------------------------------

t.test("getoption('linger') before the socket has a descriptor: nil, msg, or the kept value; no getsockopt(-1)", function()
  local s = socket.tcp()
  t.eq(select("#", s:getoption("linger")), 2)
  t.eq(select(2, s:getoption("linger")), "getsockopt failed")
  t.eq(s:setoption("linger", {on = true, timeout = 3}), 1)
  local l = s:getoption("linger")
  t.eq(l.on, true)
  t.eq(l.timeout, 3)
  s:close()
  t.eq(s:getoption("linger"), nil, "a closed socket forgets what it kept")
  local server = assert(socket.bind("127.0.0.1", 0))
  local _, port = server:getsockname()
  local c = socket.tcp()
  c:setoption("linger", {on = true, timeout = 2})
  assert(c:connect("127.0.0.1", port))
  l = c:getoption("linger")
  t.eq(l.on, true, "applied when the descriptor was made")
  t.eq(l.timeout, 2)
  c:close() server:close()
  if os.execute("command -v strace >/dev/null 2>&1") then
    local _, err = t.sh(string.format(
      "strace -f -e trace=getsockopt %s -e 'local s = require(\"socket\").tcp() s:getoption(\"linger\") s:getoption(\"keepalive\")'",
      t.shellquote(t.NETLUA)))
    t.ok(not err:find("getsockopt%(%-1"), "no getsockopt on descriptor -1:\n" .. err)
  end
end)

t.done()
