-- test_thread_shared.lua: tasks (and threads) sharing one channel, mutex or
-- thread handle (README: "Tasks sharing one channel, mutex or thread
-- handle"). Waiters queue in order; a wake-up hands over a value, room or the
-- lock to the first waiter; a waiter that goes away passes on what it was
-- handed. Each case is named after what broke.
local t = require "testlib"
local task = require "task"
local thread = require "thread"

local until_waiting, join_all = t.until_waiting, t.join_all

-- Runs a script in its own netlua under timeout(1): a lost wake-up there
-- shows as a hang (status 124), not as a stuck test run.
local function run_guarded(source)
  local path, dir = t.script(source)
  local out, err, code = t.sh("timeout 20 " .. t.shellquote(t.NETLUA) .. " " .. t.shellquote(path))
  t.rmtree(dir)
  return out, err, code
end

-- ---- one channel, tasks of one thread ---------------------------------------

t.test("tasks receiving on one channel get the values in the order they began to wait, each once (the last waiter got the first value)", function()
  local ch = thread.channel()
  local hs = {}
  for i = 1, 3 do
    hs[i] = task.spawn(function()
      local got = {}
      for v in ch:iter() do got[#got + 1] = v end
      return got
    end)
  end
  until_waiting(hs)
  for v = 1, 30 do ch:send(v) end
  ch:close()
  local seen, total, first = {}, 0, {}
  for i, r in ipairs(join_all(hs)) do
    first[i] = i .. "=" .. tostring(r[2][1])
    for _, v in ipairs(r[2]) do
      t.ok(not seen[v], "value " .. v .. " received twice")
      seen[v] = true
      total = total + 1
    end
  end
  t.eq(total, 30)
  t.eq(table.concat(first, " "), "1=1 2=2 3=3")
end)

t.test("a value sent while a task waits goes to that task, not to a recv made after the send (the waiting task starved)", function()
  local ch = thread.channel()
  local h = task.spawn(function() return ch:recv() end)
  until_waiting{h}
  ch:send("first")
  local v, err = ch:recv(0)
  t.eq(v, nil)
  t.eq(err, "timeout")
  t.eq(select(2, h:join()), "first")
end)

t.test("senders blocked on a full channel deliver in the order they began to wait, none lost (the last sender went first)", function()
  local ch = thread.channel(1)
  ch:send(0)
  local hs = {}
  for i = 1, 5 do hs[i] = task.spawn(function() return ch:send(i) end) end
  until_waiting(hs)
  local got = {}
  for i = 1, 6 do got[i] = tostring(ch:recv(10)) end
  t.eq(table.concat(got, ","), "0,1,2,3,4,5")
  for _, r in ipairs(join_all(hs)) do t.eq(r[2], true) end
  t.eq(#ch, 0)
end)

t.test("the main script's recv wakes when a task of its thread sends while other tasks replay their waits (the wake-up was lost: each recv waited out its timeout)", function()
  local out, err, code = run_guarded([[
    local task, thread = require "task", require "thread"
    local ch = thread.channel(1)
    ch:send(0)
    for i = 1, 5 do task.spawn(function() ch:send(i) end) end
    local got = {}
    for i = 1, 6 do got[i] = ch:recv() end
    print(#got)
  ]])
  t.eq(code, 0, err)
  t.eq(out, "6\n")
end)

t.test("close while tasks wait on both ends: each waiter gets nil, 'closed'; a value handed to the first receiver before the close is still its own (a later receiver took it)", function()
  local empty, full = thread.channel(), thread.channel(1)
  full:send("queued")
  local r1 = task.spawn(function() return empty:recv() end)
  local r2 = task.spawn(function() return empty:recv() end)
  local s1 = task.spawn(function() return full:send("late") end)
  local s2 = task.spawn(function() return full:send("later") end)
  until_waiting{r1, r2, s1, s2}
  empty:send("handed")
  empty:close()
  full:close()
  t.eq(select(2, r1:join()), "handed")
  local ok, v, err = r2:join()
  t.eq(ok, true)
  t.eq(v, nil)
  t.eq(err, "closed")
  for _, s in ipairs{s1, s2} do
    ok, v, err = s:join()
    t.eq(v, nil)
    t.eq(err, "closed")
  end
  t.eq(full:recv(), "queued")
  t.eq(select(2, full:recv()), "closed")
end)

t.test("a send given room before the close still delivers: a recv after the close waits for its value (it said 'closed' while the value was on its way)", function()
  local ch = thread.channel(1)
  ch:send("queued")
  local s = task.spawn(function() return ch:send("granted") end)
  until_waiting{s}
  t.eq(ch:recv(), "queued")    -- the room goes to s, which has not run yet
  ch:close()
  local v, why = ch:recv(10)
  t.eq(v, "granted", why)
  t.eq(select(2, ch:recv()), "closed")
  t.eq(select(2, s:join()), true)
end)

t.test("a receiving task cancelled after a value was handed to it passes the value on (the value was lost)", function()
  local ch = thread.channel()
  local a = task.spawn(function() return ch:recv() end)
  local b = task.spawn(function() return ch:recv() end)
  local c = task.spawn(function() return ch:recv() end)
  until_waiting{a, b, c}
  ch:send("v1")                -- handed to a, which has not run yet
  t.eq(a:cancel(), true)
  t.eq(b:cancel(), true)       -- cancelled while still queued
  t.eq(select(2, c:join(10)), "v1")
  local d = task.spawn(function() return ch:recv() end)
  until_waiting{d}
  ch:send("v2")
  d:cancel()                   -- nobody else waits: back into the channel
  t.eq(#ch, 1)
  t.eq(ch:recv(0), "v2")
  ch:send("v3")                -- the queue still works
  t.eq(ch:recv(0), "v3")
end)

t.test("a sending task cancelled after it was given room passes the room on (the next sender waited for ever)", function()
  local ch = thread.channel(1)
  ch:send(0)
  local s1 = task.spawn(function() return ch:send(1) end)
  local s2 = task.spawn(function() return ch:send(2) end)
  until_waiting{s1, s2}
  t.eq(ch:recv(), 0)           -- room for s1, which has not run yet
  s1:cancel()
  t.eq(ch:recv(10), 2)
  t.eq(select(2, s2:join()), true)
  t.eq(#ch, 0)
end)

-- ---- one mutex ------------------------------------------------------------------

t.test("tasks locking one mutex get it in the order they asked (the last one got it first)", function()
  local m = thread.mutex()
  m:lock()
  local log, hs = {}, {}
  for i = 1, 4 do
    hs[i] = task.spawn(function() m:lock() log[#log + 1] = i m:unlock() end)
  end
  until_waiting(hs)
  m:unlock()
  join_all(hs)
  t.eq(table.concat(log, ","), "1,2,3,4")
  t.eq(m:trylock(), true)
  m:unlock()
end)

t.test("unlock hands the lock to the waiting task: the unlocking code cannot take it back first (the waiting task starved)", function()
  local m = thread.mutex()
  m:lock()
  local h = task.spawn(function() m:lock() m:unlock() return "had it" end)
  until_waiting{h}
  m:unlock()
  t.eq(m:trylock(), false)
  t.eq(select(2, h:join()), "had it")
  t.eq(m:trylock(), true)
  m:unlock()
end)

t.test("a task cancelled after the lock was handed to it passes the lock on (the mutex stayed locked)", function()
  local m = thread.mutex()
  m:lock()
  local a = task.spawn(function() m:lock() return "a" end)
  local b = task.spawn(function() m:lock() m:unlock() return "b" end)
  until_waiting{a, b}
  m:unlock()                   -- handed to a, which has not run yet
  a:cancel()
  t.eq(select(2, b:join(10)), "b")
  t.eq(m:trylock(), true, "b gave it back")
  local c = task.spawn(function() m:lock() return "c" end)
  until_waiting{c}
  m:unlock()
  c:cancel()                   -- nobody else waits: unlocked
  t.eq(m:trylock(), true)
  m:unlock()
end)

t.test("m:with in tasks that wait inside: each holds the lock alone, in the order they asked (the last one went first)", function()
  local m, ch = thread.mutex(), thread.channel()
  local inside, most, log, hs = 0, 0, {}, {}
  for i = 1, 4 do
    hs[i] = task.spawn(function()
      return m:with(function()
        inside = inside + 1
        most = math.max(most, inside)
        log[#log + 1] = i
        task.sleep(0.001)
        ch:send(i)
        local v = ch:recv()
        inside = inside - 1
        return v
      end)
    end)
  end
  join_all(hs)
  t.eq(most, 1)
  t.eq(table.concat(log, ","), "1,2,3,4")
  t.eq(m:trylock(), true)
  m:unlock()
end)

-- ---- one thread handle --------------------------------------------------------------

t.test("two tasks joining one thread handle both get its results", function()
  local go = thread.channel()
  local th = thread.spawn(function(c) c:recv() return "r", 2 end, go)
  local a = task.spawn(function() return th:join() end)
  local b = task.spawn(function() return th:join() end)
  until_waiting{a, b}
  go:send(true)
  for _, r in ipairs(join_all({a, b}, 10)) do
    t.eq(r[2], true)
    t.eq(r[3], "r")
    t.eq(r[4], 2)
  end
  t.eq(select(2, th:join()), "r")
end)

t.test("two tasks and the main script joining one task all get its results", function()
  local ch = thread.channel()
  local h = task.spawn(function() return "r", ch:recv() end)
  local a = task.spawn(function() return h:join() end)
  local b = task.spawn(function() return h:join() end)
  until_waiting{h, a, b}
  ch:send(2)
  t.eq(select(3, h:join(10)), 2)
  for _, r in ipairs(join_all{a, b}) do
    t.eq(r[2], true)
    t.eq(r[3], "r")
    t.eq(r[4], 2)
  end
end)

-- ---- across OS threads -------------------------------------------------------------------

t.test("tasks waiting on a channel receive what blocking code in another thread sends, in the order they began to wait (the last waiter got the first value)", function()
  local ch = thread.channel()
  local log, hs = {}, {}
  for i = 1, 4 do
    hs[i] = task.spawn(function() local v = ch:recv() log[#log + 1] = i .. "=" .. v end)
  end
  until_waiting(hs)
  local th = thread.spawn(function(c) for v = 1, 4 do c:send(v) end end, ch)
  join_all(hs)
  t.ok(th:join())
  t.eq(table.concat(log, " "), "1=1 2=2 3=3 4=4")
end)

t.test("values cross one full channel both ways between a task and blocking code in another thread: every one, in order (the task's wake-ups from the thread were lost)", function()
  local N = 2000
  local ch, turn = thread.channel(1), thread.channel()
  local th = thread.spawn(function(c, tn, n)
    for i = 1, n do c:send(-i) end         -- blocks while full: the task receives
    tn:recv()                              -- the task has them all
    local got = {}
    for i = 1, n do got[i] = c:recv() end  -- blocks while empty: the task sends
    return got
  end, ch, turn, N)
  local h = task.spawn(function()
    local got = {}
    for i = 1, N do got[i] = ch:recv() end
    turn:send(true)
    for i = 1, N do ch:send(i) end
    return got
  end)
  local mine = select(2, h:join(30))
  if not mine then ch:close() end          -- let the thread end
  local theirs = select(2, th:join(30))
  t.eq(type(mine), "table", "the task finished")
  t.eq(type(theirs), "table", "the thread finished")
  for i = 1, N do
    t.eq(mine[i], -i)
    t.eq(theirs[i], i)
  end
end)

t.test("a lock that blocking code in another thread unlocks goes to the waiting task: that thread cannot take it back first (the task starved)", function()
  local m, locked, go, took = thread.mutex(), thread.channel(), thread.channel(), thread.channel()
  local th = thread.spawn(function(mu, l, g, tk)
    mu:lock()
    l:send(true)
    g:recv()
    mu:unlock()
    local got = mu:trylock()
    if got then mu:unlock() end
    tk:send(got)
  end, m, locked, go, took)
  locked:recv()
  local h = task.spawn(function()
    m:lock()
    local theirs = took:recv()   -- the lock is ours until the thread has tried
    m:unlock()
    return theirs
  end)
  until_waiting{h}
  go:send(true)
  t.eq(select(2, h:join(10)), false)
  t.ok(th:join())
end)

t.test("a task's wake-up from another thread is not lost while another task's own coroutine blocks the thread (it waited for ever)", function()
  local out, err, code = run_guarded([[
    local task, thread = require "task", require "thread"
    local ch1, ch2 = thread.channel(), thread.channel()
    local a = task.spawn(function() return ch1:recv() end)
    local b = task.spawn(function()
      return coroutine.wrap(function() return ch2:recv() end)()
    end)
    thread.spawn(function(c1, c2)
      local time = require "time"
      time.sleep(0.1) c1:send("for a")
      time.sleep(0.1) c2:send("for b")
    end, ch1, ch2)
    print(select(2, a:join()), select(2, b:join()))
  ]])
  t.eq(code, 0, err)
  t.eq(out, "for a\tfor b\n")
end)

t.test("the main script's wait on a channel is not lost while a task's own coroutine blocks the thread on another (it waited for ever)", function()
  local out, err, code = run_guarded([[
    local task, thread = require "task", require "thread"
    local ch1, ch2 = thread.channel(), thread.channel()
    local b = task.spawn(function()
      return coroutine.wrap(function() return ch2:recv() end)()
    end)
    thread.spawn(function(c1, c2)
      local time = require "time"
      time.sleep(0.1) c1:send("for main")
      time.sleep(0.1) c2:send("for b")
    end, ch1, ch2)
    print(ch1:recv(), select(2, b:join()))
  ]])
  t.eq(code, 0, err)
  t.eq(out, "for main\tfor b\n")
end)

t.done()
