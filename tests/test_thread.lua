-- test_thread.lua: the thread module: spawn/join, daemon threads, waiting
-- at exit, errors of unjoined threads, channels, mutexes, Ctrl-C.
local t = require "testlib"
local thread = require "thread"

-- Runs a script in a child netlua; returns stdout, stderr, status.
local function run_env(env, source)
  local path, dir = t.script(source)
  local out, err, code = t.sh(env .. t.shellquote(t.NETLUA) .. " " .. t.shellquote(path))
  t.rmtree(dir)
  return out, err, code
end

local function run(source) return run_env("", source) end

-- ---- spawn and join --------------------------------------------------------

t.test("join returns true and every result", function()
  local th = thread.spawn(function(a, b) return a + b, "two", nil, 4 end, 1, 2)
  local ok, a, b, c, d = th:join()
  t.eq(ok, true)
  t.eq(a, 3)
  t.eq(b, "two")
  t.eq(c, nil)
  t.eq(d, 4)
end)

t.test("the thread runs in its own state", function()
  SHARED_GLOBAL = "main"
  local ok, seen = thread.spawn(function()
    local before = SHARED_GLOBAL
    SHARED_GLOBAL = "thread"
    return before
  end):join()
  t.ok(ok)
  t.eq(seen, nil)
  t.eq(SHARED_GLOBAL, "main")
  SHARED_GLOBAL = nil
end)

t.test("join returns false and the error with the thread's traceback", function()
  local function inner() error("boom in thread") end
  local ok, err = thread.spawn{function() inner() end, quiet = true}:join()
  t.eq(ok, false)
  t.match(err, "boom in thread")
  t.match(err, "stack traceback:")
  t.match(err, "in upvalue 'inner'")
end)

t.test("a non-string error object is described", function()
  local ok, err = thread.spawn{function() error({code = 1}) end, quiet = true}:join()
  t.eq(ok, false)
  t.match(err, "error object is a table value")
end)

t.test("join twice gives the same outcome", function()
  local th = thread.spawn(function() return 7 end)
  t.eq(select(2, th:join()), 7)
  local ok, v = th:join()
  t.eq(ok, true)
  t.eq(v, 7)
end)

t.test("join with a timeout returns nil, 'timeout' while the thread runs", function()
  local gate = thread.channel()
  local th = thread.spawn(function(g) return g:recv() end, gate)
  local a, b = th:join(0.05)
  t.eq(a, nil)
  t.eq(b, "timeout")
  t.ok(th:alive())
  gate:send("go")
  local ok, v = th:join()
  t.eq(ok, true)
  t.eq(v, "go")
  t.eq(th:alive(), false)
end)

t.test("name, id, daemon and tostring", function()
  local th = thread.spawn{function() return thread.self() end, name = "worker-1"}
  t.eq(th.name, "worker-1")
  t.eq(math.type(th.id), "integer")
  t.eq(th.daemon, false)
  local ok, name, id = th:join()
  t.ok(ok)
  t.eq(name, "worker-1")
  t.eq(id, th.id)
  t.match(tostring(th), "^thread worker%-1 %(finished%)$")
  local anon = thread.spawn(function() end)
  t.match(anon.name, "^Thread%-%d+$")
  anon:join()
end)

t.test("the table form passes arguments and options", function()
  local th = thread.spawn{function(...) return select("#", ...), ... end, "a", "b", daemon = true}
  t.eq(th.daemon, true)
  local ok, n, a, b = th:join()
  t.ok(ok)
  t.eq(n, 2)
  t.eq(a, "a")
  t.eq(b, "b")
end)

t.test("thread.self() in the main thread", function()
  local name, id = thread.self()
  t.eq(name, "MainThread")
  t.eq(id, 0)
end)

t.test("spawn runs a Lua file with the arguments", function()
  local path, dir = t.script("local a, b = ... return a * b, (thread and 'leak' or 'clean')", "job.lua")
  local ok, v, w = thread.spawn(path, 6, 7):join()
  t.eq(ok, true, tostring(v))
  t.eq(v, 42)
  t.eq(w, "clean")
  local ok2, err = thread.spawn{dir .. "/missing.lua", quiet = true}:join()
  t.eq(ok2, false)
  t.match(err, "cannot open")
  t.rmtree(dir)
end)

t.test("spawn rejects what is not a function or a file name", function()
  t.raises("function or file name expected", thread.spawn, 42)
  t.raises("function or file name expected", thread.spawn)
  t.raises("option 'name' must be a string", thread.spawn, {print, name = 1})
end)

t.test("every module is available in a thread", function()
  local ok, v = thread.spawn(function()
    return require("json").encode({a = require("time").monotonic() > 0})
  end):join()
  t.ok(ok, tostring(v))
  t.eq(v, '{"a":true}')
end)

t.test("threads really run at the same time", function()
  -- Two threads that each wait for the other's message: deadlocks if
  -- spawn ran them one after the other.
  local a2b, b2a = thread.channel(), thread.channel()
  local ta = thread.spawn(function() a2b:send("from a") return b2a:recv() end)
  local tb = thread.spawn(function() b2a:send("from b") return a2b:recv() end)
  t.eq(select(2, ta:join()), "from b")
  t.eq(select(2, tb:join()), "from a")
end)

t.test("a thread can spawn and join threads of its own", function()
  local ok, v = thread.spawn(function()
    local inner = thread.spawn(function(x) return x * 2 end, 21)
    local iok, r = inner:join()
    return iok and r
  end):join()
  t.ok(ok, tostring(v))
  t.eq(v, 42)
end)

t.test("thread.cpus() and thread.sleep()", function()
  t.ok(thread.cpus() >= 1)
  t.eq(math.type(thread.cpus()), "integer")
  local time = require "time"
  local start = time.monotonic()
  thread.sleep(0.02)
  t.ok(time.monotonic() - start >= 0.02)
  t.raises("non-negative", thread.sleep, -1)
end)

-- ---- exit, daemons, unjoined errors ----------------------------------------

t.test("at exit the program waits for threads still running", function()
  local out, err, code = run([[
    local thread = require "thread"
    for i = 1, 3 do
      -- one write per line: print's separate writes could interleave
      thread.spawn(function(n) thread.sleep(0.1) io.write("done " .. n .. "\n") end, i)
    end
    print("main ends")
  ]])
  t.eq(code, 0, err)
  t.match(out, "^main ends\n")
  for i = 1, 3 do t.match(out, "done " .. i .. "\n") end
end)

t.test("daemon threads are not waited for", function()
  local out, err, code = run([[
    local thread = require "thread"
    thread.spawn{function() thread.sleep(30) print("daemon finished") end, daemon = true}
    print("main ends")
  ]])
  t.eq(code, 0, err)
  t.eq(out, "main ends\n")
end)

t.test("an error in a thread nobody joins is printed with its name", function()
  local out, err, code = run([[
    local thread = require "thread"
    thread.spawn{function() local x = nil; return x.field end, name = "broken"}
    print("main ends")
  ]])
  t.eq(code, 0, err)
  t.eq(out, "main ends\n")
  t.match(err, "Exception in thread broken:\n")
  t.match(err, "attempt to index a nil value")
  t.match(err, "stack traceback:")
end)

t.test("a thread's error is printed when it fails, even if a join ignores it (issue 13)", function()
  local out, err, code = run([[
    local thread = require "thread"
    local th = thread.spawn(function() return counter + 1 end)
    th:join()
    print("joined")
    th = nil
    collectgarbage() collectgarbage()
  ]])
  t.eq(code, 0, err)
  t.eq(out, "joined\n")
  t.match(err, "^Exception in thread Thread%-%d+:\n[^\n]*attempt to perform arithmetic on a nil value %(global 'counter'%)\nstack traceback:")
  local _, count = err:gsub("Exception in thread", "")
  t.eq(count, 1, err)
end)

t.test("a quiet thread's error is only returned by join", function()
  local out, err, code = run([[
    local thread = require "thread"
    local th = thread.spawn{function() error("handled") end, quiet = true}
    print(th:join())
    thread.spawn{function() error("never joined") end, quiet = true, name = "q"}
  ]])
  t.eq(code, 0, err)
  t.match(out, "^false\t[^\n]*handled\n")
  t.eq(err, "")
end)

t.test("an error in the main script still waits for threads", function()
  local out, err, code = run([[
    local thread = require "thread"
    thread.spawn(function() thread.sleep(0.1) print("thread done") end)
    error("main failed")
  ]])
  t.eq(code, 1)
  t.eq(out, "thread done\n")
  t.match(err, "main failed")
end)

-- ---- channels --------------------------------------------------------------

t.test("channel send/recv keeps order and values", function()
  local ch = thread.channel()
  ch:send(1)
  ch:send("two")
  ch:send({3})
  t.eq(#ch, 3)
  t.eq(ch:recv(), 1)
  t.eq(ch:recv(), "two")
  t.eq(ch:recv()[1], 3)
  t.eq(#ch, 0)
end)

t.test("recv times out on an empty channel", function()
  local ch = thread.channel()
  local v, err = ch:recv(0.02)
  t.eq(v, nil)
  t.eq(err, "timeout")
  v, err = ch:recv(0)
  t.eq(err, "timeout")
end)

t.test("a bounded channel blocks send while full, with a timeout", function()
  local ch = thread.channel(2)
  t.eq(ch:send("a"), true)
  t.eq(ch:send("b"), true)
  local ok, err = ch:send("c", 0.02)
  t.eq(ok, nil)
  t.eq(err, "timeout")
  t.eq(#ch, 2)
  local th = thread.spawn(function(c) return c:send("c") end, ch)
  t.eq(ch:recv(), "a")
  t.eq(select(2, th:join()), true)
  t.eq(ch:recv(), "b")
  t.eq(ch:recv(), "c")
end)

t.test("close wakes receivers, drains, then reports closed", function()
  local ch = thread.channel()
  local th = thread.spawn(function(c) return c:recv() end, ch)
  thread.sleep(0.02)
  ch:close()
  local ok, v, err = th:join()
  t.ok(ok)
  t.eq(v, nil)
  t.eq(err, "closed")
  local ch2 = thread.channel()
  ch2:send("left")
  ch2:close()
  t.eq(ch2:closed(), true)
  t.eq(ch2:recv(), "left")
  local a, b = ch2:recv()
  t.eq(a, nil)
  t.eq(b, "closed")
  local s, e = ch2:send("more")
  t.eq(s, nil)
  t.eq(e, "closed")
end)

t.test("iter() yields until the channel is closed and drained", function()
  local ch = thread.channel(3)
  local th = thread.spawn(function(c)
    for i = 1, 10 do c:send(i) end
    c:close()
  end, ch)
  local got = {}
  for v in ch:iter() do got[#got + 1] = v end
  t.eq(#got, 10)
  t.eq(table.concat(got, ","), "1,2,3,4,5,6,7,8,9,10")
  t.ok(th:join())
end)

t.test("send refuses nil, channel refuses a bad capacity", function()
  local ch = thread.channel()
  t.raises("cannot send nil", ch.send, ch, nil)
  t.raises("capacity must be positive", thread.channel, 0)
end)

t.test("a channel is a to-be-closed variable", function()
  local ch = thread.channel()
  do
    local c <close> = ch
    c:send(1)
  end
  t.eq(ch:closed(), true)
end)

t.test("many producers and consumers: nothing lost or duplicated", function()
  local PRODUCERS, CONSUMERS, EACH = 4, 4, 500
  local work = thread.channel(16)
  local consumers = {}
  for c = 1, CONSUMERS do
    consumers[c] = thread.spawn(function()
      local got = {}
      for v in work:iter() do got[#got + 1] = v end
      return got
    end)
  end
  local producers = {}
  for p = 1, PRODUCERS do
    producers[p] = thread.spawn(function(id)
      for i = 1, EACH do work:send((id - 1) * EACH + i) end
    end, p)
  end
  for _, th in ipairs(producers) do t.ok(th:join()) end
  work:close()
  local N, seen, total = PRODUCERS * EACH, {}, 0
  for _, th in ipairs(consumers) do
    local ok, got = th:join()
    t.ok(ok, tostring(got))
    for _, v in ipairs(got) do
      t.ok(not seen[v], "value " .. v .. " received twice")
      seen[v] = true
      total = total + 1
    end
  end
  t.eq(total, N, "every message received once")
  for v = 1, N do t.ok(seen[v], "value " .. v .. " lost") end
end)

-- ---- mutexes ---------------------------------------------------------------

t.test("a channel that empties after holding many values gives their memory back (RSS stayed at 509 MB)", function()
  local out, err, code = run([[
    local thread = require "thread"
    local function rss()
      for line in io.lines("/proc/self/status") do
        local kb = line:match("^VmRSS:%s*(%d+)")
        if kb then return tonumber(kb) end
      end
    end
    local sanitized = io.open("/proc/self/maps"):read("a"):find("lib[at]san") ~= nil
    local n = 300000
    local ch = thread.channel()
    local before = rss()
    for i = 1, n do ch:send(i) end
    local full = rss()
    for i = 1, n do assert(ch:recv() == i) end
    local drained = rss()
    for i = 1, n do ch:send(i) end
    ch = nil
    collectgarbage()
    print(sanitized, before, full, drained, rss())
  ]])
  t.eq(code, 0, err)
  local sanitized, before, full, drained, dropped = out:match("^(%a+)%s+(%d+)%s+(%d+)%s+(%d+)%s+(%d+)")
  t.ok(sanitized, out)
  if sanitized == "true" then
    return t.skip("channel memory", "a sanitizer's allocator keeps freed memory")
  end
  before, full, drained, dropped = tonumber(before), tonumber(full), tonumber(drained), tonumber(dropped)
  local held = full - before
  t.ok(held > 20 * 1024, "300,000 queued values took " .. held .. " KiB")
  t.ok(drained - before < held / 4, string.format("drained: %d of %d KiB still resident", drained - before, held))
  t.ok(dropped - before < held / 4, string.format("collected full: %d of %d KiB still resident", dropped - before, held))
end)

t.test("mutex lock/unlock/trylock", function()
  local m = thread.mutex()
  t.eq(m:trylock(), true)
  t.eq(m:trylock(), false)
  local ok, err = m:lock(0.02)
  t.eq(ok, nil)
  t.eq(err, "timeout")
  m:unlock()
  t.eq(m:lock(), true)
  m:unlock()
  t.raises("unlock of an unlocked mutex", m.unlock, m)
end)

t.test("a mutex held in another thread blocks lock until released", function()
  local m, ready = thread.mutex(), thread.channel()
  local go = thread.channel()
  local th = thread.spawn(function()
    m:lock()
    ready:send(true)
    go:recv()
    m:unlock()
  end)
  ready:recv()
  t.eq(m:trylock(), false)
  go:send(true)
  t.eq(m:lock(), true)
  m:unlock()
  t.ok(th:join())
end)

t.test("m:with protects a read-modify-write across threads", function()
  -- A counter in a channel of capacity 1, read and written back under the
  -- mutex: without mutual exclusion, increments would be lost or the
  -- trylock check would fail.
  local m, box = thread.mutex(), thread.channel(1)
  box:send(0)
  local workers = {}
  for w = 1, 4 do
    workers[w] = thread.spawn(function()
      for _ = 1, 200 do
        m:with(function()
          local v = box:recv()
          assert(not m:trylock(), "the mutex is held inside with()")
          box:send(v + 1)
        end)
      end
    end)
  end
  for _, th in ipairs(workers) do t.ok(th:join()) end
  t.eq(box:recv(), 800)
end)

t.test("m:with returns results and releases the lock on error", function()
  local m = thread.mutex()
  local a, b = m:with(function(x, y) return x + y, "ok" end, 1, 2)
  t.eq(a, 3)
  t.eq(b, "ok")
  t.raises("inside", m.with, m, function() error("inside") end)
  t.eq(m:trylock(), true, "released after the error")
  m:unlock()
end)

-- ---- Ctrl-C ----------------------------------------------------------------

t.test("Ctrl-C interrupts join in the main thread and stops the program", function()
  local path, dir = t.script([[
    local thread = require "thread"
    local th = thread.spawn(function() thread.sleep(60) end)
    local busy = thread.spawn(function() local x = 0 while true do x = x + 1 end end)
    local ch = thread.channel()
    local waiter = thread.spawn(function() return ch:recv() end)
    print("ready") io.stdout:flush()
    th:join()
  ]])
  local out, err, code = t.interrupt(path)
  t.eq(code, 130, err)
  t.eq(out, "ready\n")
  t.match(err, "^netlua: interrupted\n")
  t.ok(not err:find("Exception in thread"), "threads stopped quietly")
  t.rmtree(dir)
end)

t.test("Ctrl-C while waiting for threads at exit stops them", function()
  local path, dir = t.script([[
    local thread = require "thread"
    local ch = thread.channel()
    thread.spawn(function() ch:recv() end)
    thread.spawn(function() thread.sleep(60) end)
    print("ready") io.stdout:flush()
  ]])
  local out, err, code = t.interrupt(path)
  t.eq(code, 130, err)
  t.eq(out, "ready\n")
  t.match(err, "interrupted")
  t.rmtree(dir)
end)

t.test("Ctrl-C interrupts recv, send, lock and sleep in the main thread", function()
  local path, dir = t.script([[
    local thread = require "thread"
    local ch, full, m = thread.channel(), thread.channel(1), thread.mutex()
    full:send(1)
    m:lock()
    local calls = {
      function() return ch:recv() end,
      function() return full:send(2) end,
      function() return m:lock() end,
      function() return thread.sleep(60) end,
    }
    for i, f in ipairs(calls) do
      local ok, err = pcall(function() -- the marker inside: an early Ctrl-C lands here too
        if i == 1 then print("ready") io.stdout:flush() else io.stderr:write("waiting ", i, "\n") end
        return f()
      end)
      io.stderr:write("call ", i, " ", tostring(ok), " ", tostring(err), "\n")
    end
  ]])
  local out, err, code = t.interrupt(path, {"waiting 2", "waiting 3", "waiting 4"})
  t.eq(code, 0, err)
  for i = 1, 4 do t.match(err, "call " .. i .. " false interrupted\n") end
  t.rmtree(dir)
end)

-- ---- memory ----------------------------------------------------------------

t.test("spawning and joining 10,000 threads does not grow memory", function()
  -- ASan's quarantine would hold freed memory: keep it out of the count.
  -- Its leak checker (at exit of this child) catches leaks on that build.
  local out, err, code = run_env("ASAN_OPTIONS=quarantine_size_mb=0 ", [[
    local thread = require "thread"
    local function rss()
      for line in io.lines("/proc/self/status") do
        local kb = line:match("^VmRSS:%s*(%d+)")
        if kb then return tonumber(kb) end
      end
    end
    local function batch(n)
      for i = 1, n do
        local ok, v = thread.spawn(function(x) return {x, tostring(x)} end, i):join()
        assert(ok and v[1] == i, "thread result")
      end
      collectgarbage()
    end
    batch(1000)
    local before = rss()
    batch(9000)
    local after = rss()
    print(after - before)
  ]])
  t.eq(code, 0, err)
  local growth_kb = tonumber(out)
  t.ok(growth_kb ~= nil, out)
  t.ok(growth_kb < 20 * 1024, "RSS grew by " .. tostring(growth_kb) .. " KiB")
end)

t.test("a thread started while out of descriptors still sends and receives (it died creating its eventfd)", function()
  -- ulimit: opening files until none is left stays quick
  local out, err = run_env("ulimit -n 64; ", [[
    local thread = require "thread"
    local ch = thread.channel()
    ch:send("waiting for you")
    local held = {}
    while true do
      local f = io.open("/dev/null")
      if not f then break end
      held[#held + 1] = f
    end
    local th = thread.spawn(function(c)
      local got = c:recv(0)        -- an item is there
      local none, why = c:recv(0)  -- nothing is: times out at once
      assert(c:send("sent back"))  -- unbounded: there is room
      return got, none, why
    end, ch)
    local ok, got, none, why = th:join()
    for _, f in ipairs(held) do f:close() end
    print(#held > 0, ok, got, none, why, ch:recv(0))
  ]])
  t.eq(out, "true\ttrue\twaiting for you\tnil\ttimeout\tsent back\n", err)
end)

t.test("os.exit with a finished daemon thread never joined leaves cleanly (ThreadSanitizer: no thread leak)", function()
  -- under make SANITIZE=thread, a daemon thread left unreaped made TSan end the run with 66
  local out, err, code = t.netlua("-e " .. t.shellquote([[
local thread = require "thread"
local h = thread.spawn{function() return 1 end, daemon = true}
local d = thread.spawn{function() end, daemon = true}
print(h:join())
require("time").sleep(0.2)
os.exit(0)]]))
  t.eq(out, "true\t1\n", err)
  t.eq(code, 0, err)
end)

t.done()
