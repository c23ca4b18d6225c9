-- test_inspect.lua: `kill -QUIT PID` lists what a running program holds and
-- waits on, and the program goes on. A real echo server (tasks, a client
-- connection in a thread, channels) gets SIGQUIT twice; each listing names
-- its sockets with their real addresses, what each task and thread waits
-- on, the channels and the timers; the server then serves a new client and
-- stops by itself.
local t = require "testlib"
local socket = require "socket"
local time = require "time"

local SERVER = [[
local socket = require "socket"
local task = require "task"
local thread = require "thread"
local srv = assert(socket.bind("127.0.0.1", 0))
local _, port = srv:getsockname()
local done = false
local function echo(c)
  while true do
    local line = c:receive()
    if not line or line == "quit" then done = done or line == "quit" break end
    c:send(line .. "\n")
  end
  c:close()
end
task.spawn(function()
  while not done do
    local c = srv:accept()
    task.spawn(echo, c)
  end
end)
-- two clients of its own, as tasks that wait on their replies
for i = 1, 2 do
  task.spawn(function()
    local c = assert(socket.connect("127.0.0.1", port))
    print("client " .. table.concat({c:getsockname()}, ":", 1, 2))
    io.stdout:flush()
    c:receive() -- waits: nobody sends it anything
  end)
end
-- a thread with a connection of its own, waiting on a channel
local orders = thread.channel(4)
local th = thread.spawn(function(port, orders)
  local socket = require "socket"
  local c = assert(socket.connect("127.0.0.1", port))
  c:send("from thread\n")
  c:receive()
  return orders:recv()
end, port, orders)
task.spawn(function() task.sleep(60) end) -- a timer
task.sleep(0.2)
print("ready " .. port)
io.stdout:flush()
while not done do task.sleep(0.05) end
orders:send("stop")
th:join()
print("served")
os.exit(0)
]]

-- Waits (bounded) until the file holds `n` copies of `marker`.
local function wait_for(path, marker, n)
  local text
  for _ = 1, 400 do
    text = t.readfile(path) or ""
    local count = select(2, text:gsub(marker:gsub("%p", "%%%0"), ""))
    if count >= n then return text end
    time.sleep(0.05)
  end
  return text
end

t.test("SIGQUIT lists sockets, tasks, threads, channels and timers; the server goes on", function()
  local script, sdir = t.script(SERVER)
  local pid, port, dir = t.start_program(script, "", 60, "ready (%d+)")
  local clients = {}
  for p in t.readfile(dir .. "/out"):gmatch("client 127%.0%.0%.1:(%d+)") do clients[#clients + 1] = p end
  t.eq(#clients, 2, "the clients' ports")

  os.execute("kill -QUIT " .. pid)
  wait_for(dir .. "/err", "-- channels\n", 1) -- the threads write their parts in any order
  local err = wait_for(dir .. "/err", "-- thread 1\n", 1)
  t.match(err, "netlua: SIGQUIT: process " .. pid .. ", what each thread holds and waits on %(the program goes on%)")
  local main = err:match("%-%- main thread\n(.-)%-%- channels") or ""
  local P = "127%.0%.0%.1:" .. port
  t.match(main, "tcp{server} fd %d+ " .. P .. " LISTEN in=0 out=0 age=[%d.]+s by main\n", err)
  t.match(main, "task %d+: accept on " .. P .. " %(", err)
  for _, cp in ipairs(clients) do
    local C = "127%.0%.0%.1:" .. cp
    t.match(main, "tcp{client} fd %d+ " .. C .. " %-> " .. P .. " ESTABLISHED in=0 out=0 age=[%d.]+s by main/task %d+\n", err)
    t.match(main, "tcp{client} fd %d+ " .. P .. " %-> " .. C .. " ESTABLISHED in=0 out=0 age=[%d.]+s by main/task 1\n", err)
    t.match(main, "task %d+: receive on tcp " .. P .. " <%- " .. C .. " %(", err)
  end
  t.match(main, "task %d+: sleep %(", err)
  t.match(main, "code: sleep %(", err)
  t.match(main, "timers: %d+ %(the next in [%d.]+ s%)", err)
  t.match(err, "%-%- channels\n  thread%.channel: 0x%x+: 0 queued %(capacity 4%), 1 receiver waiting, 0 senders waiting\n", err)
  local th = err:match("%-%- thread 1\n(.*)$") or ""
  t.match(th, "tcp{client} fd %d+ 127%.0%.0%.1:%d+ %-> " .. P .. " ESTABLISHED in=12 out=12 age=[%d.]+s by thread 1\n", err)
  t.match(th, "code: receive on a channel %(")

  -- it goes on serving, and a second SIGQUIT gives a second listing
  local c = t.connect(port)
  c:send("still there?\n")
  t.eq(c:receive(), "still there?")
  os.execute("kill -QUIT " .. pid)
  wait_for(dir .. "/err", "-- channels\n", 2)
  err = wait_for(dir .. "/err", "-- thread 1\n", 2)
  t.eq(select(2, err:gsub("netlua: SIGQUIT: process", "")), 2, err)
  c:send("quit\n")
  c:close()
  local out, final = t.finish_server(pid, dir)
  t.rmtree(sdir)
  t.match(out, "served\n")
  t.ok(not final:find("Sanitizer"), final)
end)

t.test("SIGQUIT with nothing open: the listing says so and the program goes on", function()
  local script, sdir = t.script([[
    print("ready 1") io.stdout:flush()
    local t0 = require("time").monotonic()
    while not io.open(arg[1]) and require("time").monotonic() - t0 < 30 do require("time").sleep(0.05) end
    print("done")
  ]])
  local flag = sdir .. "/go"
  local pid, _, dir = t.start_program(script, t.shellquote(flag), 60, "ready (%d+)")
  os.execute("kill -QUIT " .. pid)
  local err = wait_for(dir .. "/err", "-- channels\n", 1)
  t.writefile(flag, "")
  local out, final = t.finish_server(pid, dir)
  t.rmtree(sdir)
  t.ok(not final:find("Sanitizer"), final)
  t.match(err, "%-%- main thread\n  no open sockets\n  code: sleep %(", err)
  t.match(err, "%-%- channels\n  none\n", err)
  t.eq(out, "ready 1\ndone\n")
end)

t.done()
