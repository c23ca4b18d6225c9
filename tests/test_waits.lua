-- test_waits.lua: Ctrl-C when the script's main chunk has returned but
-- netlua still waits for tasks or threads that never finish lists each of
-- them, what it waits on and where (runtime/waits.c, runtime/waits.lua).
-- Threads are involved: CI runs this file under ThreadSanitizer too.
package.path = (arg[0]:match("^(.*)/") or ".") .. "/?.lua;" .. package.path
local t = require "testlib"

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

t.done()
