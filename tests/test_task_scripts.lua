-- test_task_scripts.lua: the task versions of the tutorial's servers
-- (tasktimeserver.lua, taskchatserver.lua), run as separate processes.
local t = require "testlib"

local SCRIPTS = (arg and arg[0] and arg[0]:match("^(.*)/tests/") or ".") .. "/scripts/"

t.test("tasktimeserver serves each client from a task and exits after --count", function()
  local pid, port, dir = t.start_server(SCRIPTS .. "tasktimeserver.lua", "--count 3", 30)
  local stuck = t.connect(port) -- connected first, read last
  local replies = {}
  for i = 1, 2 do
    local c = t.connect(port)
    replies[i] = c:receive("*a")
    c:close()
  end
  for i = 1, 2 do t.match(replies[i], "^%d%d%d%d%-%d%d%-%d%d %d%d:%d%d:%d%d") end
  stuck:close()
  local out, err = t.finish_server(pid, dir)
  t.eq(err, "")
  local n = 0
  for _ in out:gmatch("connection from 127%.0%.0%.1:%d+") do n = n + 1 end
  t.eq(n, 3)
end)

t.test("taskchatserver broadcasts each line to the other clients", function()
  local pid, port, dir = t.start_server(SCRIPTS .. "taskchatserver.lua", "--count 3", 30)
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
  -- b vanishes without /quit, with unread data: the kernel resets it
  b:setoption("linger", {on = true, timeout = 0})
  b:close()
  t.match(t.expect_line(a, "client 2 left"), "^%* client 2 left")
  for _, s in ipairs({a, c}) do s:send("/quit\n") end
  for _, s in ipairs({a, c}) do
    local line, err
    repeat line, err = s:receive("*l") until not line
    t.eq(err, "closed")
    s:close()
  end
  local out, err = t.finish_server(pid, dir)
  t.eq(err, "")
  for i = 1, 3 do t.match(out, "client " .. i .. " left") end
  t.match(out, "client 1 left %(quit%)")
end)

t.test("taskchatserver disconnects a client whose line never ends (it grew the server's memory)", function()
  local pid, port, dir = t.start_server(SCRIPTS .. "taskchatserver.lua", "--count 2", 30)
  local a = t.connect(port)
  t.expect_line(a, "^welcome, you are client 1")
  local b = t.connect(port)
  t.expect_line(b, "^welcome, you are client 2")
  local chunk = string.rep("x", 64 * 1024)
  for _ = 1, 3 do
    if not a:send(chunk) then break end
  end
  t.expect_line(a, "^%* line too long %(more than 65536 bytes%), bye$")
  t.expect_line(b, "^%* client 1 left$")
  b:send("/quit\n")
  a:close()
  b:close()
  local out = t.finish_server(pid, dir)
  t.match(out, "client 1 left %(line too long%)")
end)

t.done()
