-- test_signals.lua: SIGTERM and SIGHUP are Ctrl-C: the catchable error
-- "interrupted", to-be-closed variables run, and uncaught the program ends
-- with 128 + the signal (143, 129). Ctrl-C itself is in test_cli.lua.
package.path = (arg[0]:match("^(.*)/") or ".") .. "/?.lua;" .. package.path
local t = require "testlib"

-- A SIGHUP ignored by whoever started the tests is ignored by every
-- netlua they start too (as it should): the SIGHUP cases then skip.
local function hup_ignored()
  local out = t.sh("grep '^SigIgn:' /proc/self/status")
  local mask = tonumber((out or ""):match("SigIgn:%s*(%x+)") or "0", 16)
  return mask % 2 == 1
end

-- During a wait, caught, in a busy loop, twice: the cases Ctrl-C passes
-- (test_cli.lua), for SIGTERM and SIGHUP.
t.interrupt_cases("TERM", 143)
t.interrupt_cases("HUP", 129, function() return hup_ignored() and "SIGHUP is ignored here" or nil end)

t.test("SIGTERM interrupts a busy loop in a task: exit 143", function()
  local out, err, code = t.interrupt_script([[
    local task = require "task"
    task.spawn(function()
      print("ready"); io.stdout:flush()
      local n = 0
      while true do n = n + 1 end
    end)
  ]], nil, "TERM")
  t.eq(code, 143)
  t.eq(out, "ready\n")
  t.match(err, "interrupted")
end)

t.test("SIGTERM while waiting for a thread: the thread stops, exit 143", function()
  local out, err, code = t.interrupt_script([[
    local thread = require "thread"
    local th = thread.spawn(function() require("time").sleep(60) end)
    print("ready"); io.stdout:flush()
    th:join()
  ]], nil, "TERM")
  t.eq(code, 143)
  t.eq(out, "ready\n")
  t.match(err, "^netlua: interrupted\n")
  t.ok(not err:find("still waiting"), "the script had not ended: no listing\n" .. err)
end)

-- ---- Ctrl-C after the script returned: what it still waited for ------------

-- The line of `source` holding `marker`.
local function line_of(source, marker)
  local n = 0
  for line in (source .. "\n"):gmatch("([^\n]*)\n") do
    n = n + 1
    if line:find(marker, 1, true) then return n end
  end
  error("no line holds " .. marker)
end

local function escape(s) return (s:gsub("%p", "%%%0")) end

t.test("Ctrl-C after the main chunk returned lists each task, what it waits on and where (issue 13)", function()
  local source = [[
    local socket, task, thread = require "socket", require "task", require "thread"
    local server = assert(socket.bind("127.0.0.1", 0))
    local port = select(2, server:getsockname())
    local client = assert(socket.connect("127.0.0.1", port))
    local conn = server:accept()
    task.spawn(function() server:accept() end)        -- ACCEPT
    task.spawn(function() conn:receive("*l") end)     -- RECEIVE
    local ch = thread.channel()
    task.spawn(function() ch:recv() end)              -- CHANNEL
    task.spawn(function() task.sleep(3600) end)       -- SLEEP
    task.spawn(function()                             -- the others wait now
      print(port, (select(2, client:getsockname())))
      print("ready") io.stdout:flush()
    end)
  ]]
  local out, err, code = t.interrupt_script(source)
  t.eq(code, 130, err)
  local port, cport = out:match("^(%d+)\t(%d+)\nready\n$")
  t.ok(port, out)
  local function at(marker) return " (script.lua:" .. line_of(source, marker) .. ")\n" end
  local want = "netlua: the script had ended and was still waiting for:\n" ..
    "  task 1: accept on 127.0.0.1:" .. port .. at("ACCEPT") ..
    "  task 2: receive on tcp 127.0.0.1:" .. port .. " <- 127.0.0.1:" .. cport .. at("RECEIVE") ..
    "  task 3: receive on a channel" .. at("CHANNEL") ..
    "  task 4: sleep" .. at("SLEEP") ..
    "netlua: interrupted\n"
  t.match(err, "^" .. escape(want):gsub("script%%%.lua", "[^\n]*script%%.lua") .. "$")
end)

t.test("Ctrl-C while the script waits at exit for threads lists each thread and its tasks (issue 13)", function()
  local source = [[
    local socket, thread = require "socket", require "thread"
    local ready, never = thread.channel(), thread.channel()
    local server = assert(socket.bind("127.0.0.1", 0))
    print((select(2, server:getsockname())))
    thread.spawn{function(ready, never)
      ready:send(1)
      never:recv()                                     -- RECV
    end, ready, never, name = "receiver"}
    thread.spawn{function(ready, server)
      local task = require "task"
      task.spawn(function() task.sleep(3600) end)      -- TASK
      task.spawn(function() ready:send(1) end)
      server:accept()                                  -- ACCEPT
    end, ready, server, name = "acceptor"}
    thread.spawn{function() require("time").sleep(3600) end, name = "helper", daemon = true}
    ready:recv() ready:recv()
    print("ready") io.stdout:flush()
  ]]
  local out, err, code = t.interrupt_script(source)
  t.eq(code, 130, err)
  local port = out:match("^(%d+)\nready\n$")
  t.ok(port, out)
  local function at(marker) return " (script.lua:" .. line_of(source, marker) .. ")\n" end
  local want = "netlua: the script had ended and was still waiting for:\n" ..
    "  thread receiver: receive on a channel" .. at("RECV") ..
    "  thread acceptor: accept on 127.0.0.1:" .. port .. at("ACCEPT") ..
    "  thread acceptor, task 1: sleep" .. at("TASK") ..
    "netlua: interrupted\n"
  t.match(err, "^" .. escape(want):gsub("script%%%.lua", "[^\n]*script%%.lua") .. "$")
end)

t.test("SIGHUP ignored from the start (nohup) stays ignored", function()
  local path, dir = t.script([[
    os.execute("kill -HUP $PPID")
    require("time").sleep(0.01)
    print("still here")
  ]])
  local out, err, code = t.sh("trap '' HUP; exec " .. t.shellquote(t.NETLUA) .. " " .. t.shellquote(path))
  t.eq(code, 0, err)
  t.eq(out, "still here\n")
  t.rmtree(dir)
end)

t.test("SIGHUP not ignored: the same script is interrupted, exit 129", function()
  if hup_ignored() then return t.skip(nil, "SIGHUP is ignored here") end
  local path, dir = t.script([[
    os.execute("kill -HUP $PPID")
    require("time").sleep(0.01)
    print("still here")
  ]])
  local out, err, code = t.netlua(t.shellquote(path))
  t.eq(code, 129)
  t.eq(out, "")
  t.match(err, "^netlua: interrupted\n")
  t.rmtree(dir)
end)

t.done()
