-- dispatcher_program.lua: the patterns a select-based dispatcher uses
-- (copas, and the programs written in its style), with luasocket's API
-- only: sockets with timeout 0, a call retried until it is neither
-- "timeout" nor "Operation already in progress", socket.select waiting for
-- readiness in between, partial results carried from one try to the next.
-- test_socket_dispatch.lua runs it under netlua and, when installed, under
-- lua5.4 with the real luasocket, and compares the output. Prints nothing
-- that varies between runs. With the argument "offline-names" it also
-- connects to a name that does not resolve (only where looking it up asks
-- no one: the test runs it with an nsswitch.conf that reads /etc/hosts only).
local socket = require("socket")

local offline_names = arg[1] == "offline-names"
local BIG = 8 * 1024 * 1024

local function show(...)
  local t = table.pack(...)
  for i = 1, t.n do
    local v = t[i]
    if type(v) == "userdata" then v = tostring(v):match("^[^:]+") end
    t[i] = tostring(v)
  end
  return table.concat(t, " ", 1, t.n)
end

-- ---- the dispatcher ------------------------------------------------------

-- Each job is a coroutine that yields ("read" | "write", socket) to wait;
-- its lines are printed, job by job, once every job has ended.
local jobs = {}

local function spawn(name, fn, ...)
  local args = table.pack(...)
  local job = {name = name, lines = {}}
  job.co = coroutine.create(function() return fn(job, table.unpack(args, 1, args.n)) end)
  jobs[#jobs + 1] = job
  return job
end

local function note(job, ...)
  job.lines[#job.lines + 1] = show(...)
end

local function wait(kind, s)
  coroutine.yield(kind, s)
end

local function resume(job)
  local ok, kind, s = coroutine.resume(job.co)
  if not ok then error(job.name .. ": " .. tostring(kind)) end
  job.kind, job.sock = kind, s
end

local function live(job)
  return coroutine.status(job.co) ~= "dead"
end

-- Runs every job until all have ended. A select that times out resumes
-- every waiting job (each then retries its call), so a socket that never
-- gets ready makes its job give up (see connect) instead of hanging.
local function loop()
  for _ = 1, 10000 do
    local r, w, waiting = {}, {}, 0
    for _, job in ipairs(jobs) do
      if not job.started then
        job.started = true
        resume(job)
      end
    end
    for _, job in ipairs(jobs) do
      if live(job) then
        waiting = waiting + 1
        local set = job.kind == "read" and r or w
        set[#set + 1] = job.sock
      end
    end
    if waiting == 0 then return end
    local rr, ww, err = socket.select(r, w, 2)
    for _, job in ipairs(jobs) do
      local set = job.kind == "read" and rr or ww
      if live(job) and (err == "timeout" or set[job.sock]) then resume(job) end
    end
  end
  error("the dispatcher made no progress")
end

-- ---- calls in the dispatcher's style ---------------------------------------

local function connect(s, host, port)
  s:settimeout(0)
  for _ = 1, 5 do
    local ok, err = s:connect(host, port)
    if ok or err == "already connected" then return 1 end
    if err ~= "timeout" and err ~= "Operation already in progress" then return nil, err end
    wait("write", s)
  end
  return nil, "gave up"
end

local function accept(server)
  server:settimeout(0)
  while true do
    local c, err = server:accept()
    if c then
      c:settimeout(0)
      return c
    end
    if err ~= "timeout" then return nil, err end
    wait("read", server)
  end
end

-- Returns the data, and how many tries came back with a partial result.
local function receive(s, pattern, prefix)
  local partials = 0
  while true do
    local data, err, partial = s:receive(pattern, prefix)
    if data then return data, partials end
    if err ~= "timeout" then return nil, err, partial end
    if partial ~= "" and partial ~= prefix then partials = partials + 1 end
    prefix = partial
    wait("read", s)
  end
end

-- Returns send's result, and how many tries sent only part.
local function send(s, data)
  local from, partials = 1, 0
  while true do
    local last, err, lastbyte = s:send(data, from)
    if last then return last, partials end
    if err ~= "timeout" then return nil, err, lastbyte end
    if lastbyte >= from then partials = partials + 1 end
    from = lastbyte + 1
    wait("write", s)
  end
end

-- ---- a conversation --------------------------------------------------------

local big = string.rep("0123456789abcdef", BIG // 16)

local function serve(job, server)
  local c = assert(accept(server))
  note(job, "accepted", c)
  note(job, "send", send(c, "hello\nwor"))
  note(job, "line", receive(c, "*l"))
  note(job, "send", send(c, "ld\n"))
  wait("read", c)                      -- "12345" is there, "67890" is not
  note(job, "raw receive(10)", c:receive(10))
  send(c, "ok\n")
  note(job, "receive(10) with prefix", receive(c, 10, "12345"))
  local last, partials = send(c, big)
  note(job, "big send", last, partials > 0)
  note(job, "*a until closed", (receive(c, "*a")))
  c:close()
end

local function talk(job, host, port)
  local c = socket.tcp()
  note(job, "connect", connect(c, host, port))
  note(job, "class", c)
  note(job, "line", receive(c, "*l"))
  note(job, "raw receive", c:receive("*l"))
  send(c, "more?\n")
  note(job, "line with prefix", receive(c, "*l", "wor"))
  send(c, "12345")
  note(job, "line", receive(c, "*l"))
  send(c, "67890")
  local data, partials = receive(c, BIG)
  note(job, "big receive", #data, data == big, partials > 0)
  note(job, "send", send(c, "bye"))
  c:close()
end

local function connect_only(job, host, port)
  local c = socket.tcp()
  note(job, "connect", connect(c, host, port))
  note(job, "class", c)
  c:close()
end

local function free_port()
  local s = assert(socket.bind("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return port
end

local by_name = assert(socket.bind("localhost", 0))
local by_number = assert(socket.bind("127.0.0.1", 0))
local nobody = free_port()
spawn("server localhost", serve, by_name)
spawn("server 127.0.0.1", serve, by_number)
spawn("client localhost", talk, "localhost", select(2, by_name:getsockname()))
spawn("client 127.0.0.1", talk, "127.0.0.1", select(2, by_number:getsockname()))
spawn("nobody listens at localhost", connect_only, "localhost", nobody)
spawn("nobody listens at 127.0.0.1", connect_only, "127.0.0.1", nobody)
if offline_names then
  spawn("a name that does not resolve", connect_only, "nonexistent.invalid", 80)
end
loop()
for _, job in ipairs(jobs) do
  print("-- " .. job.name)
  for _, line in ipairs(job.lines) do print(line) end
end

-- ---- the calls one by one ------------------------------------------------

print("-- a connect with timeout 0, then accept")
local server = assert(socket.bind("localhost", 0))
local _, port = server:getsockname()
local c = socket.tcp()
c:settimeout(0)
print(show("connect", c:connect("localhost", port)))
server:settimeout(1)
local peer = server:accept()
print(show("accept", peer))
print(show("connect again", c:connect("localhost", port)))
print(show("and again", c:connect("localhost", port)))
c:close()
if peer then peer:close() end
server:close()

print("-- a connect that stays in progress (the server's queue is full)")
local full = socket.tcp()
assert(full:bind("127.0.0.1", 0))
assert(full:listen(0))
local _, fport = full:getsockname()
local queued = {}
for i = 1, 3 do
  queued[i] = socket.tcp()
  queued[i]:settimeout(0)
  queued[i]:connect("127.0.0.1", fport)
end
socket.select(nil, {queued[1]}, 2)
print(show("connect again", queued[3]:connect("127.0.0.1", fport)))
for _, q in ipairs(queued) do q:close() end
full:close()

print("-- errno texts")
print(show("bind to an address this host lacks", socket.bind("192.0.2.1", 0)))
local u = socket.udp()
print(show("sendto port 0", u:sendto("x", "127.0.0.1", 0)))
u:close()
