-- test_task_semaphore.lua: task.semaphore(n) (= thread.semaphore): at most
-- n holders, permits handed to waiters in the order they asked, with()
-- giving its permit back however fn ends, cancel and Ctrl-C leaving the
-- queue, and threads sharing one semaphore with tasks.
local t = require "testlib"
local task = require "task"
local thread = require "thread"
local socket = require "socket"

local until_waiting, join_all = t.until_waiting, t.join_all

t.test("with(fn, ...): at most n tasks inside at once, fn's arguments and results pass through", function()
  local sem = task.semaphore(3)
  local inside, most, hs = 0, 0, {}
  for i = 1, 10 do
    hs[i] = task.spawn(function()
      return sem:with(function(a, b)
        inside = inside + 1
        most = math.max(most, inside)
        task.sleep(0.002)
        inside = inside - 1
        return a * b, "done"
      end, i, 10)
    end)
  end
  local out = join_all(hs)
  t.eq(most, 3)
  for i = 1, 10 do
    t.eq(out[i][2], i * 10)
    t.eq(out[i][3], "done")
  end
  t.eq(sem:available(), 3)
end)

t.test("a port scan over real sockets keeps at most 8 connections open", function()
  local servers, open_now, most = {}, 0, 0
  for i = 1, 4 do servers[i] = assert(socket.bind("127.0.0.1", 0)) end
  local ports = {}
  for i, s in ipairs(servers) do ports[i] = select(2, s:getsockname()) end
  local closed = assert(socket.bind("127.0.0.1", 0)) -- then closed: a refused port
  ports[#ports + 1] = select(2, closed:getsockname())
  closed:close()
  local sem, found, hs = task.semaphore(8), {}, {}
  for round = 1, 6 do
    for _, port in ipairs(ports) do
      hs[#hs + 1] = task.spawn(sem.with, sem, function()
        open_now = open_now + 1
        most = math.max(most, open_now)
        local c = socket.connect("127.0.0.1", port)
        task.sleep(0.001)
        if c then found[port] = true c:close() end
        open_now = open_now - 1
      end)
    end
  end
  join_all(hs)
  t.eq(most, 8)
  for i = 1, 4 do t.ok(found[ports[i]], "open port " .. ports[i]) end
  t.eq(found[ports[5]], nil)
  for _, s in ipairs(servers) do s:close() end
end)

t.test("waiters get permits in the order they asked; a release hands the permit over (FIFO)", function()
  local sem = task.semaphore(2)
  t.eq(sem:acquire(), true)
  t.eq(sem:acquire(), true)
  local log, hs = {}, {}
  for i = 1, 5 do
    hs[i] = task.spawn(function() sem:acquire() log[#log + 1] = i end)
  end
  until_waiting(hs)
  sem:release()
  t.eq(sem:tryacquire(), false, "the released permit is the first waiter's")
  t.eq(sem:acquire(0), nil, "acquire(0) does not wait and does not jump the queue")
  for _ = 1, 4 do sem:release() end -- permits are not owned: any code gives one back
  join_all(hs)
  t.eq(table.concat(log, ","), "1,2,3,4,5")
  t.eq(sem:available(), 0)
  sem:release()
  sem:release()
  t.eq(sem:available(), 2)
end)

t.test("with() gives its permit back when fn raises, and the error goes on up", function()
  local sem = task.semaphore(1)
  local ok, err = pcall(sem.with, sem, function() error("fn failed") end)
  t.eq(ok, false)
  t.match(err, "fn failed")
  t.eq(sem:available(), 1)
  local h = task.spawn{sem.with, sem, function() task.sleep(0.001) error("failed after a wait") end, quiet = true}
  local jok, jerr = h:join(10)
  t.eq(jok, false)
  t.match(jerr, "failed after a wait")
  t.eq(sem:available(), 1)
end)

t.test("cancel: a waiting task leaves the queue; one cancelled inside with() gives its permit back; one handed a permit passes it on", function()
  local sem = task.semaphore(1)
  local inside = task.spawn(sem.with, sem, function() task.sleep(math.huge) end)
  local waiting = task.spawn(function() sem:acquire() return "never" end)
  local handed = task.spawn(function() sem:acquire() return "a" end)
  local last = task.spawn(function() sem:acquire() sem:release() return "last" end)
  until_waiting{inside, waiting, handed, last}
  waiting:cancel()
  t.eq(select(2, waiting:join()), "cancelled")
  inside:cancel()              -- its permit goes to `handed`, which has not run yet
  handed:cancel()              -- so `handed` passes it on to `last`
  t.eq(select(2, last:join(10)), "last")
  t.eq(sem:available(), 1)
end)

t.test("acquire(timeout) is nil, 'timeout' and leaves the queue", function()
  local sem = task.semaphore(1)
  sem:acquire()
  local a, b = sem:acquire(0.01)
  t.eq(a, nil)
  t.eq(b, "timeout")
  local h = task.spawn(function() return sem:acquire(0.01) end)
  local r = table.pack(h:join(10))
  t.eq(r[2], nil)
  t.eq(r[3], "timeout")
  sem:release()
  t.eq(sem:available(), 1, "nobody left in the queue took the permit")
end)

t.test("threads and tasks share one semaphore: it crosses as itself, blocking code waits its turn", function()
  local sem, inside = task.semaphore(2), thread.channel()
  t.eq(thread.semaphore, task.semaphore)
  sem:acquire()
  sem:acquire()
  local th = thread.spawn(function(s, ch)
    local got = s:acquire(10)
    ch:send("thread in")
    s:release()
    return got
  end, sem, inside)
  local h = task.spawn(function() return sem:with(function() return "task in" end) end)
  until_waiting{h}
  sem:release()
  sem:release()
  t.eq(select(2, h:join(10)), "task in")
  t.eq(inside:recv(10), "thread in")
  t.eq(select(2, th:join()), true)
  t.eq(sem:available(), 2)
end)

t.test("Ctrl-C interrupts a blocking acquire and a wait inside with(); the permit comes back", function()
  local path, dir = t.script([[
    local task = require "task"
    local sem = task.semaphore(1)
    local h = task.spawn(sem.with, sem, function() task.sleep(math.huge) end)
    task.yield()
    local ok, err = pcall(function() -- "ready" inside: an early Ctrl-C lands here too
      print("ready") io.stdout:flush()
      return sem:acquire()                        -- waits behind the task
    end)
    io.stderr:write("acquire: ", tostring(err), "\n")
    h:cancel()
    io.stderr:write("available after cancel: ", sem:available(), "\n")
    local ok2, err2 = pcall(sem.with, sem, function() require("time").sleep(60) end)
    io.stderr:write("with: ", tostring(err2), ", available: ", sem:available(), "\n")
  ]])
  local _, err, code = t.interrupt(path, {"available after cancel"})
  t.eq(code, 0, err)
  t.match(err, "acquire: interrupted\n")
  t.match(err, "available after cancel: 1\n")
  t.match(err, "with: interrupted, available: 1\n")
  t.rmtree(dir)
end)

t.test("bad use raises: no permits, releasing more than taken, the wrong object", function()
  t.raises("(at least one permit expected)", task.semaphore, 0)
  t.raises("number expected", task.semaphore, "x")
  local sem = task.semaphore(2)
  t.raises("release of a semaphore that was not acquired (every permit is free)", sem.release, sem)
  t.raises("thread.semaphore expected", sem.acquire, thread.mutex())
  t.raises("function expected", sem.with, sem, 42)
  t.eq(sem:available(), 2)
  local m = thread.mutex()
  t.raises("unlock of an unlocked mutex", m.unlock, m)
end)

t.done()
