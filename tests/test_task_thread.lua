-- test_task_thread.lua: tasks and threads together: channel, join and mutex
-- waits suspend only the calling task; a thread's own tasks.
local t = require "testlib"
local task = require "task"
local thread = require "thread"

t.test("tasks and a thread exchange values through channels; other tasks keep running", function()
  local ch, back = thread.channel(), thread.channel()
  local th = thread.spawn(function(inbox, outbox)
    for v in inbox:iter() do outbox:send({v, v * 2}) end
  end, ch, back)
  local ticks = 0
  local ticker = task.spawn(function() while true do ticks = ticks + 1; task.sleep(0.001) end end)
  local hs = {}
  for i = 1, 50 do
    hs[i] = task.spawn(function() ch:send(i) return back:recv(10) end)
  end
  local seen, total = {}, 0
  for _, r in ipairs(task.all(hs)) do
    t.eq(r[1], true)
    t.eq(r[2][2], r[2][1] * 2)
    seen[r[2][1]] = true
    total = total + 1
  end
  t.eq(total, 50)
  for i = 1, 50 do t.ok(seen[i], "value " .. i .. " came back once") end
  t.ok(ticks > 0, "the ticker ran while the tasks waited")
  ch:close()
  t.eq(th:join(), true)
  ticker:cancel()
end)

t.test("channel recv and send time out in a task while the others run", function()
  local ch = thread.channel(1)
  ch:send("fills it")
  local ran = false
  local other = task.spawn(function() task.sleep(0.01) ran = true end)
  local h = task.spawn(function()
    local r1, e1 = thread.channel():recv(0.05)
    local r2, e2 = ch:send("no room", 0.05)
    return e1, e2, ran
  end)
  local ok, e1, e2, others_ran = h:join()
  t.ok(ok, e1)
  t.eq(e1, "timeout")
  t.eq(e2, "timeout")
  t.eq(others_ran, true)
  other:join()
end)

t.test("a task waiting on a channel wakes when a thread sends", function()
  local ch = thread.channel()
  local h = task.spawn(function() return ch:recv() end)
  local th = thread.spawn(function(c) require("time").sleep(0.05) c:send("from the thread") end, ch)
  t.eq(select(2, h:join()), "from the thread")
  th:join()
end)

t.test("cancel a task waiting in channel recv, mutex lock and thread join", function()
  local ch, m = thread.channel(), thread.mutex()
  m:lock()
  local th = thread.spawn(function(c) return c:recv() end, ch)
  local hs = {
    recv = task.spawn(function() return ch:recv() end),
    lock = task.spawn(function() return m:lock() end),
    join = task.spawn(function() return th:join() end),
    sleep = task.spawn(function() return thread.sleep(60) end),
  }
  task.sleep(0.03)
  for name, h in pairs(hs) do
    t.eq(h:status(), "waiting", name)
    t.eq(h:cancel(), true, name)
    t.eq(select(2, h:join()), "cancelled", name)
  end
  -- the objects still work: the cancelled waiters left their lists
  ch:send("for the thread")
  t.eq(select(2, th:join()), "for the thread")
  m:unlock()
  t.eq(m:trylock(), true)
  m:unlock()
end)

t.test("a mutex held by one task is taken by another when released", function()
  local m = thread.mutex()
  local log = {}
  local a = task.spawn(function()
    m:lock() log[#log + 1] = "a locked"
    task.sleep(0.02)
    log[#log + 1] = "a unlocks" m:unlock()
  end)
  local b = task.spawn(function()
    task.sleep(0.005)
    m:lock() log[#log + 1] = "b locked" m:unlock()
  end)
  a:join() b:join()
  t.eq(table.concat(log, ", "), "a locked, a unlocks, b locked")
end)

t.test("a thread runs its own tasks and finishes them before it ends", function()
  local th = thread.spawn(function()
    local task = require "task"
    local done = {}
    for i = 1, 20 do task.spawn(function() task.sleep(0.001 * i) done[#done + 1] = i end) end
    local h = task.spawn(function() task.sleep(0.05) return #done end)
    return select(2, h:join())
  end)
  t.eq(select(2, th:join()), 20)
end)

t.done()
