-- test_task_dns.lua: name resolution inside a task suspends only that task.
-- Each case runs a script in a private mount namespace (unshare -m) whose
-- /etc/nsswitch.conf says "hosts: dns" and whose /etc/resolv.conf names a
-- name server the script itself runs, in a thread, on a free 127.0.53.N:53
-- (loopback only). That server answers some names at once, holds others
-- until a task tells it to answer (so "A was still resolving while B ran"
-- is an order of events, not a timing), and never answers "never.test".
local t = require "testlib"

-- The name server and the helpers every case's script starts with.
--   slow.test      A 127.0.0.1, held until "release" (AAAA: none, at once)
--   2.0.0.127.in-addr.arpa   PTR slow.test, held likewise
--   fast.test      A 127.0.0.1 at once
--   dual.test      AAAA ::1 and A 127.0.0.1 at once
--   never.test     held until "answer never" (then NXDOMAIN)
--   anything else  NXDOMAIN at once
-- A query held 3 s is answered anyway: a resolver that blocks the whole
-- thread (so no task can say "release") makes a case fail, not hang.
local PRELUDE = [=[
local socket = require "socket"
local task = require "task"
local thread = require "thread"

local function serve(control, replies, resolv)
  local socket = require "socket"
  local udp = socket.udp()
  local addr
  for i = 1, 254 do
    if udp:setsockname("127.0.53." .. i, 53) then addr = "127.0.53." .. i break end
  end
  assert(addr, "no free loopback address for the name server")
  local f = assert(io.open(resolv, "w"))
  f:write("nameserver ", addr, "\noptions timeout:30 attempts:1\n")
  f:close()
  replies:send(addr)

  local function parse(q)
    if #q < 12 then return nil end
    local id, flags = string.unpack(">I2I2", q)
    local pos, labels = 13, {}
    while true do
      local len = q:byte(pos)
      if len == nil then return nil end
      if len == 0 then pos = pos + 1 break end
      labels[#labels + 1] = q:sub(pos + 1, pos + len)
      pos = pos + 1 + len
    end
    local qtype = string.unpack(">I2", q, pos)
    return {id = id, rd = flags & 0x0100, name = table.concat(labels, "."):lower(),
            qtype = qtype, question = q:sub(13, pos + 3)}
  end
  local function encode(name)
    local out = {}
    for label in name:gmatch("[^.]+") do out[#out + 1] = string.char(#label) .. label end
    return table.concat(out) .. "\0"
  end
  -- rcode, and the answer's type and data (or none)
  local function reply(q, rcode, atype, rdata)
    local n = rdata and 1 or 0
    local msg = string.pack(">I2I2I2I2I2I2", q.id, 0x8480 | q.rd | rcode, 1, n, 0, 0) .. q.question
    if rdata then msg = msg .. string.pack(">I2I2I2I4s2", 0xC00C, atype, 1, 60, rdata) end
    udp:sendto(msg, q.ip, q.port)
  end
  local A, PTR, AAAA = 1, 12, 28
  local function answer(q)
    if q.name == "slow.test" and q.qtype == A then
      return reply(q, 0, A, "\127\0\0\1")
    elseif q.name == "2.0.0.127.in-addr.arpa" and q.qtype == PTR then
      return reply(q, 0, PTR, encode("slow.test"))
    elseif (q.name == "fast.test" or q.name == "dual.test") and q.qtype == A then
      return reply(q, 0, A, "\127\0\0\1")
    elseif q.name == "dual.test" and q.qtype == AAAA then
      return reply(q, 0, AAAA, string.rep("\0", 15) .. "\1")
    elseif q.name == "slow.test" or q.name == "fast.test" then
      return reply(q, 0) -- no record of that type
    end
    return reply(q, 3) -- NXDOMAIN
  end
  local function held_name(q)
    return (q.name == "slow.test" and q.qtype == A) or
           (q.name == "2.0.0.127.in-addr.arpa" and q.qtype == PTR)
  end

  local held, never = {}, {}
  udp:settimeout(0.02)
  while true do
    local data, ip, port = udp:receivefrom()
    local q = data and parse(data)
    if q then
      q.ip, q.port, q.at = ip, port, socket.gettime()
      if q.name == "never.test" then never[#never + 1] = q
      elseif held_name(q) then held[#held + 1] = q
      else answer(q) end
    end
    for i = #held, 1, -1 do
      if socket.gettime() - held[i].at > 3 then answer(table.remove(held, i)) end
    end
    local cmd = control:recv(0)
    if cmd == "held" then
      replies:send({held = #held, never = #never})
    elseif cmd == "release" then
      for _, h in ipairs(held) do answer(h) end
      replies:send(#held)
      held = {}
    elseif cmd == "answer never" then
      for _, h in ipairs(never) do answer(h) end
      replies:send(#never)
      never = {}
    end
  end
end

local control, replies = thread.channel(), thread.channel()
thread.spawn{serve, control, replies, os.getenv("RESOLV"), daemon = true}
assert(replies:recv(10), "the name server started")

-- What the name server holds now: {held = n, never = n}.
local function held()
  control:send("held")
  return replies:recv()
end

-- Answers the held queries; returns how many there were.
local function release()
  control:send("release")
  return replies:recv()
end

-- Polls (bounded) until the name server holds a query of `kind`.
local function until_held(kind)
  for _ = 1, 500 do
    if held()[kind] > 0 then return true end
    task.sleep(0.01)
  end
  return false
end

-- Runs op() in task A while task B waits until the name server holds A's
-- query, notes whether A had finished then, and releases it. Returns
-- whether A was still waiting, and A's results packed.
local function while_held(op)
  local a_done = false
  local a = task.spawn(function()
    local r = table.pack(op())
    a_done = true
    return r
  end)
  local b = task.spawn(function()
    local seen = until_held("held")
    local pending = seen and not a_done
    release()
    return pending
  end)
  local _, pending = b:join()
  local ok, r = a:join()
  assert(ok, r)
  return pending, r
end

local function show(...)
  local out = {}
  for i = 1, select("#", ...) do out[#out + 1] = tostring((select(i, ...))) end
  return table.concat(out, " ")
end

-- How many descriptors the process has open.
local pid = io.open("/proc/self/stat"):read("n")
local function nfds()
  local p = io.popen("ls /proc/" .. pid .. "/fd | wc -l")
  local n = p:read("n")
  p:close()
  return n
end

-- Polls (bounded) until no more than `base` are open (<=: base may count
-- a sanitizer's passing descriptor): helper threads end when answered.
local function fds_back(base)
  for _ = 1, 1000 do
    if nfds() <= base then return true end
    require("time").sleep(0.01)
  end
  return false
end
]=]

local private_sh, dir_or_why = t.private_etc{["resolv.conf"] = "",
                                              ["nsswitch.conf"] = "hosts: dns\n"}

-- Runs PRELUDE .. body in the private namespace; returns its stdout (tabs
-- as spaces) and checks that it ended well (exit 0, nothing on stderr: ASan
-- reports land there).
local function run(body)
  local script = t.script(PRELUDE .. body)
  local out, err, code = private_sh("RESOLV=" .. dir_or_why .. "/resolv.conf exec " ..
                                    t.shellquote(t.NETLUA) .. " " .. script)
  t.eq(err, "", "stderr")
  t.eq(code, 0, "exit status")
  return (out:gsub("\t", " "))
end

local function case(name, fn)
  t.test(name, function()
    if not private_sh then return t.skip(name, dir_or_why) end
    fn()
  end)
end

case("while task A resolves a slow name, task B does echo round trips and sleeps", function()
  local out = run([[
    local server = assert(socket.bind("127.0.0.1", 0))
    local _, port = server:getsockname()
    local echo = task.spawn(function()
      local c = assert(server:accept())
      for line in function() return c:receive() end do c:send(line .. "\n") end
      c:close()
    end)
    local a_done, rounds, pending = false, 0, nil
    local a = task.spawn(function()
      local ip = socket.dns.toip("slow.test")
      a_done = true
      return ip
    end)
    local b = task.spawn(function()
      local c = assert(socket.connect("127.0.0.1", port))
      for i = 1, 50 do
        c:send("ping " .. i .. "\n")
        if c:receive() == "ping " .. i then rounds = rounds + 1 end
        task.sleep(0.001)
      end
      c:close()
      local seen = until_held("held")
      pending = seen and not a_done
      print("released", release())
    end)
    b:join() echo:join()
    print("rounds", rounds)
    print("A pending while B worked", pending)
    print("A", a:join())
  ]])
  t.eq(out, "released 1\nrounds 50\nA pending while B worked true\nA true 127.0.0.1\n")
end)

case("every lookup path suspends only its task and returns what it resolved", function()
  local out = run([[
    local server = assert(socket.bind("127.0.0.1", 0))
    local _, port = server:getsockname()
    local function check(name, op)
      local pending, r = while_held(op)
      print(name, pending, show(table.unpack(r, 1, r.n)))
    end
    check("socket.connect", function()
      local c, err = socket.connect("slow.test", port)
      if not c then return err end
      return c:getpeername()
    end)
    check("tcp:connect", function()
      local c = socket.tcp()
      c:settimeout(5)
      local ok, err = c:connect("slow.test", port)
      return ok, err, c:getpeername()
    end)
    check("socket.connect local name", function()
      local c, err = socket.connect("127.0.0.1", port, "slow.test", 0)
      return c and (c:getsockname()) or err
    end)
    check("tcp:bind", function()
      local m = socket.tcp()
      return m:bind("slow.test", 0), (m:getsockname())
    end)
    check("udp:setsockname", function()
      local u = socket.udp()
      return u:setsockname("slow.test", 0), (u:getsockname())
    end)
    check("udp:setpeername", function()
      local u = socket.udp()
      return u:setpeername("slow.test", 9), u:getpeername()
    end)
    check("dns.toip", function() return socket.dns.toip("slow.test") end)
    check("dns.getaddrinfo", function()
      local r = socket.dns.getaddrinfo("slow.test")
      return #r, r[1].addr, r[1].family
    end)
    check("dns.tohostname", function()
      local name, info = socket.dns.tohostname("127.0.0.2")
      return name, info.ip[1]
    end)
    check("dns.getnameinfo", function()
      local names, serv = socket.dns.getnameinfo("slow.test", "80")
      return #names, names[1], serv
    end)
  ]])
  local want = {
    "socket.connect true 127%.0%.0%.1 %d+ inet",
    "tcp:connect true 1%.0 nil 127%.0%.0%.1 %d+ inet",
    "socket.connect local name true 127%.0%.0%.1",
    "tcp:bind true 1%.0 127%.0%.0%.1",
    "udp:setsockname true 1%.0 127%.0%.0%.1",
    "udp:setpeername true 1%.0 127%.0%.0%.1 9 inet",
    "dns.toip true 127%.0%.0%.1 table: 0x%x+",
    "dns.getaddrinfo true 1 127%.0%.0%.1 inet",
    "dns.tohostname true slow%.test 127%.0%.0%.2",
    "dns.getnameinfo true 1 127%.0%.0%.1 http",
  }
  local i = 0
  for line in out:gmatch("[^\n]+") do
    i = i + 1
    t.match(line, "^" .. (want[i] or "nothing more") .. "$")
  end
  t.eq(i, #want, "lines")
end)

case("a connect in a task goes on to the next address after a wait", function()
  local out = run([[
    local server = assert(socket.bind("127.0.0.1", 0)) -- IPv4 only: ::1 refuses
    local _, port = server:getsockname()
    print("order", show(table.unpack((function()
      local r = {}
      for _, a in ipairs(socket.dns.getaddrinfo("dual.test")) do r[#r + 1] = a.family end
      return r
    end)())))
    local h = task.spawn(function()
      local c, err = socket.connect("dual.test", port)
      local m = socket.tcp()
      m:settimeout(5)
      local ok, err2 = m:connect("dual.test", port)
      return c and c:getfamily() or err, ok and m:getfamily() or err2
    end)
    print(h:join())
  ]])
  t.eq(out, "order inet6 inet\ntrue inet4 inet4\n")
end)

case("a socket's timeout bounds the lookup in a task, and the other tasks run meanwhile", function()
  local out = run([[
    local a_done, ticks = false, 0
    local a = task.spawn(function()
      local c = socket.tcp()
      c:settimeout(0.2)
      local r1 = show(c:connect("never.test", 80))
      local ticks1 = ticks
      c:settimeout(0.2, "t")
      local r2 = show(c:connect("never.test", 80))
      local ticks2 = ticks
      local r3 = show(socket.connect("fast.test", 9)) -- the task goes on
      a_done = true
      return r1, r2, r3, ticks1 > 0, ticks2 > ticks1
    end)
    local b = task.spawn(function()
      while not a_done do ticks = ticks + 1 task.sleep(0.01) end
    end)
    print("A", a:join())
    b:join()
    local c = socket.tcp()           -- outside tasks: as before
    c:settimeout(0.2)
    print("main", c:connect("never.test", 80))
  ]])
  -- B ticked during each of A's two timed-out lookups
  local lookup = "the name lookup of 'never.test' did not finish within the timeout " ..
    "(phase: lookup): the name server (/etc/resolv.conf) did not answer"
  t.eq(out, "A true nil timeout " .. lookup .. " nil timeout " .. lookup ..
    " nil connection refused nothing is listening on 127.0.0.1:9; 'fast.test' is 127.0.0.1; " ..
    "is the server running, and on this port? true true\n" ..
    "main nil timeout " .. lookup .. "\n")
end)

case("cancelling a task in a lookup releases its descriptors and memory", function()
  local out = run([[
    local time = require "time"
    task.spawn(socket.dns.toip, "fast.test"):join() -- the loop and resolver set up
    local base = nfds()
    local a = task.spawn(function() return socket.dns.toip("never.test") end)
    local b = task.spawn(function()
      local c = socket.tcp()
      return c:connect("never.test", 80)
    end)
    for _ = 1, 500 do
      if held().never >= 3 then break end -- A; A and AAAA
      time.sleep(0.01)
    end
    print("held", held().never)
    print("more descriptors while resolving", nfds() > base)
    print("cancel", a:cancel(), b:cancel())
    print("status", a:status(), b:status())
    print("join", a:join())
    control:send("answer never")
    print("answered", replies:recv())
    print("descriptors back to before", fds_back(base))
    print("after", (select(2, task.spawn(socket.dns.toip, "fast.test"):join())))
  ]])
  t.eq(out, "held 3\nmore descriptors while resolving true\ncancel true true\n" ..
    "status cancelled cancelled\njoin false cancelled\nanswered 3\n" ..
    "descriptors back to before true\nafter 127.0.0.1\n")
end)

case("a connect closed by another task while it waited for its name lookup went on to connect; it ends with 'closed' at once", function()
  local out = run([[
    local server = assert(socket.bind("127.0.0.1", 0))
    local _, port = server:getsockname()
    local m = socket.tcp()
    local a = task.spawn(function() return m:connect("slow.test", port) end)
    print("held", until_held("held"))
    m:close()
    print("A", a:join(5))  -- before the name server answers
    print("released", release())
    print("fd", m:getfd())
  ]])
  t.eq(out, "held true\nA true nil closed\nreleased 1\nfd -1.0\n")
end)

case("a name that does not exist fails in a task as outside tasks", function()
  local out = run([[
    local function attempts()
      local c = socket.tcp()
      c:settimeout(5)
      return {
        show(socket.dns.toip("missing.test")),
        show(socket.dns.tohostname("missing.test")),
        show(socket.dns.getaddrinfo("missing.test")),
        show(socket.connect("missing.test", 80)),
        show(c:connect("missing.test", 80)),
      }
    end
    local outside = attempts()
    local _, inside = task.spawn(attempts):join()
    for i = 1, #outside do
      print(outside[i] == inside[i], inside[i])
    end
  ]])
  -- the resolver answers NXDOMAIN: luasocket's message, then what it means
  local why = " no address was found for the name 'missing.test': check its spelling, " ..
    "or use an address such as 127.0.0.1\n"
  t.eq(out, "true nil host not found" .. why .. "true nil host not found" .. why ..
    "true nil host or service not provided, or not known" .. why ..
    "true nil host or service not provided, or not known" .. why ..
    "true nil host or service not provided, or not known" .. why)
end)

case("lookups and channel waits take turns in one task", function()
  local out = run([[
    local ch = thread.channel()
    local h = task.spawn(function()
      local got = {}
      for i = 1, 3 do
        got[#got + 1] = socket.dns.toip("fast.test")
        got[#got + 1] = select(2, ch:recv(0.01))        -- a channel wait
        local c = socket.tcp()
        c:settimeout(0.05)
        got[#got + 1] = select(2, c:connect("never.test", 80))
      end
      return table.concat(got, " ")
    end)
    print(h:join())
  ]])
  t.eq(out, "true " .. string.rep("127.0.0.1 timeout timeout", 3, " ") .. "\n")
end)

-- A dispatcher's connect: settimeout(0), connect until the answer is
-- neither "timeout" nor "Operation already in progress", select for
-- writability in between. Prints every answer that differs from the last.
local DISPATCH = [[
    local function dispatch_connect(c, connect, ...)
      local seen, last = {}, nil
      for _ = 1, 100 do
        local ok, err = connect(c, ...)
        local answer = ok and tostring(ok) or err
        if answer ~= last then seen[#seen + 1] = answer end
        last = answer
        if err ~= "timeout" and err ~= "Operation already in progress" then break end
        socket.select(nil, {c}, 5)
      end
      return table.concat(seen, ", ")
    end
]]

case("a connect with timeout 0 to a name leaves its lookup in progress: select waits for it, connect goes on", function()
  local out = run(DISPATCH .. [[
    local server = assert(socket.bind("127.0.0.1", 0))
    local _, port = server:getsockname()
    local c = socket.tcp()
    c:settimeout(0)
    print("1", c:connect("slow.test", port))
    print("2", c:connect("slow.test", port))
    print("class", tostring(c):match("^[^:]+"))
    print("getfd is the lookup's", c:getfd() >= 0)
    print("not writable yet", #select(2, socket.select(nil, {c}, 0)))
    print("held", until_held("held"))
    print("released", release())
    local _, w = socket.select(nil, {c}, 5)
    print("writable once resolved", w[1] == c)
    print("loop", dispatch_connect(c, c.connect, "slow.test", port))
    server:settimeout(5)
    print("accepted", server:accept() ~= nil)
    print("peer", c:getpeername())
  ]])
  t.match(out, "^1 nil timeout\n2 nil Operation already in progress\nclass tcp{client}\n" ..
    "getfd is the lookup's true\nnot writable yet 0\nheld true\nreleased 1\n" ..
    "writable once resolved true\nloop Operation already in progress, 1%.0\naccepted true\n" ..
    "peer 127%.0%.0%.1 %d+ inet\n$")
end)

case("a dispatcher's connect to a name that does not resolve ends with luasocket's message", function()
  local out = run(DISPATCH .. [[
    local c = socket.tcp()
    c:settimeout(0)
    print("1", c:connect("never.test", 80))
    print("2", c:connect("never.test", 80))
    for _ = 1, 500 do -- A and AAAA
      if held().never >= 2 then break end
      task.sleep(0.01)
    end
    control:send("answer never")
    print("answered", replies:recv())
    print("writable once answered", select(2, socket.select(nil, {c}, 5))[1] == c)
    print("loop", dispatch_connect(c, c.connect, "never.test", 80))
    print("missing", dispatch_connect(socket.tcp(), function(s, ...)
      s:settimeout(0)
      return s:connect(...)
    end, "missing.test", 80))
  ]])
  t.eq(out, "1 nil timeout\n2 nil Operation already in progress\nanswered 2\n" ..
    "writable once answered true\nloop host or service not provided, or not known\n" ..
    "missing timeout, host or service not provided, or not known\n")
end)

case("closing a socket whose connect left its lookup running releases the lookup", function()
  local out = run([[
    task.spawn(socket.dns.toip, "fast.test"):join() -- the loop and resolver set up
    local base = nfds()
    local c = socket.tcp()
    c:settimeout(0)
    print("1", c:connect("slow.test", 80))
    print("held", until_held("held"))
    print("more descriptors while resolving", nfds() > base)
    c:close()
    print("getfd after close", c:getfd())
    print("released", release())
    print("descriptors back to before", fds_back(base))
  ]])
  t.eq(out, "1 nil timeout\nheld true\nmore descriptors while resolving true\n" ..
    "getfd after close -1.0\nreleased 1\ndescriptors back to before true\n")
end)

case("udp:setpeername with timeout 0 to a name goes on as connect does", function()
  local out = run(DISPATCH .. [[
    local u = socket.udp()
    u:settimeout(0)
    local b = task.spawn(function() until_held("held") return release() end)
    print("loop", dispatch_connect(u, u.setpeername, "slow.test", 9))
    print("released", select(2, b:join()))
    print("peer", u:getpeername())
    print("class", tostring(u):match("^[^:]+"))
  ]])
  -- select (outside tasks it runs them) wakes once the lookup is done
  t.eq(out, "loop timeout, 1.0\nreleased 1\n" ..
    "peer 127.0.0.1 9 inet\nclass udp{connected}\n")
end)

case("dispatchers in two tasks: one connects to a slow name while the other's select-based echo goes on", function()
  local out = run(DISPATCH .. [[
    local server = assert(socket.bind("127.0.0.1", 0))
    local _, port = server:getsockname()
    server:settimeout(0)
    local a = task.spawn(function()
      local c = socket.tcp()
      c:settimeout(0)
      return dispatch_connect(c, c.connect, "slow.test", port), c:getpeername()
    end)
    local b = task.spawn(function()
      local accepted = {}
      for _ = 1, 2 do
        local s, err
        repeat
          socket.select({server}, nil, 5)
          s, err = server:accept()
        until s or err ~= "timeout"
        accepted[#accepted + 1] = s
        if #accepted == 1 then
          -- the first is B's own, made while A's name is still held
          print("A resolving while B accepted", until_held("held"))
          release()
        end
      end
      return #accepted
    end)
    local own = socket.tcp()
    own:settimeout(0)
    print("B's own", dispatch_connect(own, own.connect, "127.0.0.1", port))
    print("A", a:join())
    print("B", b:join())
  ]])
  t.match(out, "^B's own timeout, 1%.0\nA resolving while B accepted true\n" ..
    "A true timeout, Operation already in progress, 1%.0 127%.0%.0%.1 %d+ inet\nB true 2\n$")
end)

if private_sh then t.rmtree(dir_or_why) end
t.done()
