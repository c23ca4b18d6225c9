-- test_socket_lazyread.lua: a stream socket whose last read came back short
-- (the socket was emptied) waits before its next read instead of reading
-- into EAGAIN first (bindings/socket.c, may_wait_first). These cases pin
-- down that it changes no answer: data that came in meanwhile is read, and
-- the calls that cannot wait (timeout 0, a spent 't' deadline, a task
-- inside a C callback) still read first.
local t = require "testlib"
local task = require "task"
local socket = require "socket"

local pair = t.tcp_pair

-- Sends `data` from c and waits (outside any task) until s has it queued.
local function arrive(c, s, data)
  assert(c:send(data))
  local r = socket.select({s}, nil, 5)
  assert(r[1] == s, "data did not arrive")
end

t.test("in a task, each message after a short read is received, in order", function()
  local c, s = pair()
  local h = task.spawn(function()
    local got = {}
    for _ = 1, 3 do got[#got + 1] = assert(s:recv(100)) end
    return table.concat(got, ",")
  end)
  for _, m in ipairs({"one", "two", "three"}) do
    task.sleep(0.01) -- the task has read the last one and waits again
    c:send(m)
  end
  local ok, got = h:join(5)
  t.ok(ok, got)
  t.eq(got, "one,two,three")
  c:close() s:close()
end)

t.test("in a task, receive('*l') gathers a line sent in pieces after a short read", function()
  local c, s = pair()
  local h = task.spawn(function()
    assert(s:recv(100) == "first")
    return s:receive("*l")
  end)
  c:send("first")
  task.sleep(0.01)
  c:send("hel")
  task.sleep(0.01)
  c:send("lo\n")
  local ok, line = h:join(5)
  t.ok(ok, line)
  t.eq(line, "hello")
  c:close() s:close()
end)

t.test("outside tasks, a blocking recv after a short read returns what a task sends later", function()
  local c, s = pair()
  arrive(c, s, "one")
  t.eq(s:recv(100), "one")
  local h = task.spawn(function() task.sleep(0.02) return c:send("two") end)
  s:settimeout(5)
  t.eq(s:recv(100), "two")
  t.ok(h:join())
  c:close() s:close()
end)

t.test("settimeout(0) after a short read reads data that came in meanwhile, not 'timeout'", function()
  local c, s = pair()
  arrive(c, s, "one")
  t.eq(s:recv(100), "one")
  arrive(c, s, "two")
  s:settimeout(0)
  t.eq(s:recv(100), "two")
  t.eq(select(2, s:recv(100)), "timeout", "and 'timeout' once it is empty")
  local h = task.spawn(function()
    arrive(c, s, "three")
    local a = s:receive(5)
    arrive(c, s, "four")
    return a, s:receive(4)
  end)
  local ok, a, b = h:join(5)
  t.ok(ok, a)
  t.eq(a, "three")
  t.eq(b, "four")
  c:close() s:close()
end)

t.test("a spent 't' deadline after a short read still reads what is there", function()
  local c, s = pair()
  local h = task.spawn(function()
    arrive(c, s, "one")
    assert(s:recv(100) == "one")
    arrive(c, s, "two")
    s:settimeout(0, "t")
    return s:recv(100)
  end)
  local ok, got = h:join(5)
  t.ok(ok, got)
  t.eq(got, "two")
  c:close() s:close()
end)

t.test("in a task, a receive inside a C callback after a short read returns the data there", function()
  local c, s = pair()
  local h = task.spawn(function()
    arrive(c, s, "one\n")
    assert(s:receive("*l") == "one")
    arrive(c, s, "two\n")
    local got
    table.sort({1, 2}, function(a, b) got = got or s:receive("*l") return a < b end)
    return got
  end)
  local ok, got = h:join(5)
  t.ok(ok, got)
  t.eq(got, "two")
  c:close() s:close()
end)

t.test("in a task, a 'b' timeout after a short read still times out and keeps the partial line", function()
  local c, s = pair()
  local h = task.spawn(function()
    assert(s:recv(100) == "one")
    s:settimeout(0.05)
    return s:receive("*l")
  end)
  c:send("one")
  task.sleep(0.01)
  c:send("par")
  t.eq(h:join(0.02), nil, "still waiting for the end of the line")
  local ok, line, err, partial = h:join(5)
  t.ok(ok, line)
  t.eq(line, nil)
  t.eq(err, "timeout")
  t.eq(partial, "par")
  c:close() s:close()
end)

t.done()
