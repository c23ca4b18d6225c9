-- test_http_server_tasks.lua: http.server runs each connection as a task,
-- so a handler may wait (on a channel, a socket, another HTTP request,
-- even to its own server) without holding up the other connections; and
-- `workers = N` serves one port from N threads.
local t = require "testlib"
local task = require "task"
local thread = require "thread"
local socket = require "socket"
local http = require "http"

local serve_while = t.serve_while

t.test("a handler waiting on a channel does not hold up other requests", function()
  local srv = assert(http.server{port = 0})
  local gate = thread.channel()
  srv:route("GET", "/slow", function() return "slow got " .. gate:recv() end)
  srv:route("GET", "/open", function() gate:send("through") return "opened" end)
  local order = {}
  serve_while(srv, function()
    local slow = task.spawn(function()
      local r = assert(http.get(srv.url .. "/slow", {timeout = 10}))
      order[#order + 1] = r.body
    end)
    task.sleep(0.05) -- /slow is waiting in its handler now
    local r = assert(http.get(srv.url .. "/open", {timeout = 10}))
    order[#order + 1] = r.body
    assert(slow:join(15))
  end)
  t.eq(order[1], "opened")
  t.eq(order[2], "slow got through")
end)

t.test("a handler can make HTTP requests to its own server", function()
  local srv = assert(http.server{port = 0})
  srv:route("GET", "/inner/:n", function(req) return "inner " .. req.params.n end)
  srv:route("GET", "/outer/:n", function(req)
    local r = assert(http.get(srv.url .. "/inner/" .. req.params.n, {timeout = 10}))
    return r.body .. " via outer"
  end)
  local bodies = serve_while(srv, function()
    local hs, out = {}, {}
    for i = 1, 5 do
      hs[i] = task.spawn(function()
        out[i] = assert(http.get(srv.url .. "/outer/" .. i, {timeout = 10})).body
      end)
    end
    task.all(hs)
    return out
  end)
  for i = 1, 5 do t.eq(bodies[i], "inner " .. i .. " via outer") end
end)

-- A raw keep-alive client: sends one request, reads one reply.
local function ask(c, path)
  assert(c:send("GET " .. path .. " HTTP/1.1\r\nHost: x\r\n\r\n"))
  local status = c:receive("*l")
  local len
  repeat
    local line = c:receive("*l")
    len = len or tonumber(line and line:match("^Content%-Length: (%d+)"))
  until line == "" or line == nil
  return status, c:receive(len)
end

t.test("a keep-alive connection stays open from one serve() to the next", function()
  local srv = assert(http.server{port = 0})
  local n = 0
  srv:route("GET", "/n", function() n = n + 1 return tostring(n) end)
  local c = assert(socket.connect("127.0.0.1", srv.port))
  c:settimeout(10)
  local replies = {}
  local client = task.spawn(function()
    replies[1] = select(2, ask(c, "/n"))
    replies[2] = select(2, ask(c, "/n"))
  end)
  t.eq(srv:serve{max_requests = 1, timeout = 20}, 1)
  t.eq(srv:connections(), 1, "the connection is kept")
  t.eq(srv:serve{max_requests = 1, timeout = 20}, 1)
  t.ok(client:join(10))
  t.eq(replies[1], "1")
  t.eq(replies[2], "2")
  c:close()
  srv:close()
  t.eq(srv:connections(), 0)
end)

t.test("a script ends as soon as serve() returns, though keep-alive clients stay connected", function()
  local path, dir = t.script([[
    local http = require "http"
    local srv = assert(http.server{port = 0, keepalive_timeout = 120})
    srv:route("GET", "/", function() return "hi" end)
    print("listening on 127.0.0.1:" .. srv.port) io.stdout:flush()
    srv:serve{max_requests = 1, timeout = 60}
    print("served")
  ]])
  local pid, port, sdir = t.start_server(path, "", 20)
  local c = assert(socket.connect("127.0.0.1", port))
  c:settimeout(30)
  local status, body = ask(c, "/")
  t.eq(status, "HTTP/1.1 200 OK")
  t.eq(body, "hi")
  -- The server process exits: our idle connection is closed by it.
  local line, err = c:receive("*l")
  t.eq(line, nil)
  t.eq(err, "closed")
  c:close()
  t.finish_server(pid, sdir)
  t.rmtree(dir)
end)

t.test("serve{max_requests=N} counts the requests of every connection", function()
  local srv = assert(http.server{port = 0})
  srv:route("GET", "/", function() task.sleep(0.01) return "x" end)
  local hs = {}
  for i = 1, 6 do
    hs[i] = task.spawn(function() return assert(http.get(srv.url .. "/", {timeout = 10})).status end)
  end
  t.eq(srv:serve{max_requests = 6, timeout = 20}, 6)
  for i = 1, 6 do t.eq(select(2, hs[i]:join(10)), 200) end
  srv:close()
end)

t.test("srv:stop() from another task ends serve(); the server stays open", function()
  local srv = assert(http.server{port = 0})
  srv:route("GET", "/", function() return "x" end)
  task.spawn(function()
    assert(http.get(srv.url .. "/", {timeout = 10}))
    srv:stop()
  end)
  t.eq(srv:serve{timeout = 20}, 1)
  local h = task.spawn(function() return assert(http.get(srv.url .. "/", {timeout = 10})).body end)
  t.eq(srv:serve{max_requests = 1, timeout = 20}, 1)
  t.eq(select(2, h:join(10)), "x")
  srv:close()
end)

t.test("nonsense statuses and headers that break the reply are a 500; the connection goes on", function()
  local srv = assert(http.server{port = 0})
  srv:route("GET", "/huge", function() return 1e300, "x" end)
  srv:route("GET", "/nan", function() return 0 / 0, "x" end)
  srv:route("GET", "/low", function() return 42, "x" end)
  srv:route("GET", "/headers", function()
    return 200, "x", setmetatable({}, {__pairs = function() error("no pairs for you") end})
  end)
  srv:route("GET", "/ok", function() return "fine" end)
  local c = assert(socket.connect("127.0.0.1", srv.port))
  c:settimeout(10)
  local got = {}
  task.spawn(function()
    for _, path in ipairs{"/huge", "/nan", "/low", "/headers", "/ok"} do
      got[#got + 1] = ask(c, path)
    end
    srv:close()
  end)
  local log = t.capture_stderr(srv.serve, srv, {timeout = 20})
  t.eq(got[1], "HTTP/1.1 500 Internal Server Error")
  t.eq(got[2], "HTTP/1.1 500 Internal Server Error")
  t.eq(got[3], "HTTP/1.1 500 Internal Server Error")
  t.eq(got[4], "HTTP/1.1 500 Internal Server Error")
  t.match(log, "error in handler for GET /huge: the handler returned status 1e%+300 ")
  t.match(log, "error in handler for GET /nan: the handler returned status %-?nan ")
  t.match(log, "error in handler for GET /low: the handler returned status 42 ")
  t.match(log, "error in handler for GET /headers: [^\n]*no pairs for you\n")
  t.ok(not log:find("/ok"), log)
  t.eq(got[5], "HTTP/1.1 200 OK")
  c:close()
end)

t.test("max_connections: a new client closes the connection idle the longest, never a busy one", function()
  local srv = assert(http.server{port = 0, max_connections = 2})
  local gate = thread.channel()
  srv:route("GET", "/", function() return "hi" end)
  srv:route("GET", "/hold", function() return "held " .. gate:recv() end)
  local c1 = assert(socket.connect("127.0.0.1", srv.port))
  local c2 = assert(socket.connect("127.0.0.1", srv.port))
  local c3
  for _, c in ipairs{c1, c2} do c:settimeout(10) end
  local seen = {}
  task.spawn(function()
    seen[1] = ask(c1, "/")
    seen[2] = ask(c2, "/")
    seen.open = srv:connections()
    c3 = assert(socket.connect("127.0.0.1", srv.port))
    c3:settimeout(10)
    seen[3] = ask(c3, "/")                       -- c1, idle longest, makes room
    seen.c1 = table.pack(c1:receive("*l"))
    seen.c2 = ask(c2, "/")                       -- c2 is still served
    -- Both slots busy in handlers: a new client waits until one is free.
    assert(c2:send("GET /hold HTTP/1.1\r\nHost: x\r\n\r\n"))
    assert(c3:send("GET /hold HTTP/1.1\r\nHost: x\r\n\r\n"))
    task.sleep(0.1)
    local c4 = assert(socket.connect("127.0.0.1", srv.port))
    assert(c4:send("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
    c4:settimeout(0.3)
    seen.waiting = select(2, c4:receive("*l"))
    gate:send("a")
    gate:send("b")
    c4:settimeout(10)
    seen[4] = c4:receive("*l")
    seen.held = {c2:receive("*l"), c3:receive("*l")}
    c4:close()
    srv:close()
  end)
  srv:serve{timeout = 30}
  t.eq(seen[1], "HTTP/1.1 200 OK")
  t.eq(seen[2], "HTTP/1.1 200 OK")
  t.eq(seen.open, 2)
  t.eq(seen[3], "HTTP/1.1 200 OK", "the third client is answered")
  t.eq(seen.c1[1], nil)
  t.eq(seen.c1[2], "closed", "the idle first connection made room")
  t.eq(seen.c2, "HTTP/1.1 200 OK", "the other keeps being served")
  t.eq(seen.waiting, "timeout", "no busy connection is closed for a new one")
  t.eq(seen[4], "HTTP/1.1 200 OK", "answered once a handler finished")
  t.eq(seen.held[1], "HTTP/1.1 200 OK")
  t.eq(seen.held[2], "HTTP/1.1 200 OK")
  c1:close()
  c2:close()
  c3:close()
end)

t.test("a client pipelining thousands of requests does not keep another waiting until it is done", function()
  local srv = assert(http.server{port = 0})
  local order = {}
  srv:route("GET", "/", function(req)
    order[#order + 1] = req.headers["x-client"]
    return "x"
  end)
  -- Both clients' requests are in the server's socket buffers before it
  -- serves: 2,000 from A, then one from B.
  local a = assert(socket.connect("127.0.0.1", srv.port))
  local b = assert(socket.connect("127.0.0.1", srv.port))
  local batch = {}
  for i = 1, 2000 do batch[i] = "GET / HTTP/1.1\r\nHost: x\r\nX-Client: A\r\n\r\n" end
  a:settimeout(10)
  b:settimeout(10)
  local sending = task.spawn(function() return a:send(table.concat(batch)) end)
  assert(b:send("GET / HTTP/1.1\r\nHost: x\r\nX-Client: B\r\n\r\n"))
  task.spawn(function()
    t.eq(b:receive("*l"), "HTTP/1.1 200 OK")
    repeat local got = a:receive(65536) until got == nil or #order >= 2001
    srv:close()
  end)
  srv:serve{timeout = 30}
  assert(sending:join(10))
  local where
  for i, who in ipairs(order) do if who == "B" then where = i break end end
  t.ok(where and where <= 64, "B answered as request " .. tostring(where) .. " of " .. #order)
  a:close()
  b:close()
end)

-- ---- workers --------------------------------------------------------------

t.test("workers: bad values raise; 'auto' is one per core", function()
  t.raises("option 'workers' must be a positive integer", http.server, {port = 0, workers = 0})
  t.raises("option 'workers' must be a positive integer", http.server, {port = 0, workers = 1.5})
  t.raises("option 'workers' must be a positive integer", http.server, {port = 0, workers = "many"})
  local srv = assert(http.server{port = 0, workers = "auto"})
  t.eq(srv.workers, thread.cpus())
  srv:close()
  srv = assert(http.server{port = 0})
  t.eq(srv.workers, 1, "one worker unless asked")
  srv:close()
end)

t.test("workers = 2: while one worker's thread is stuck, the other answers", function()
  local dir = t.tmpdir()
  local flag = dir .. "/go"
  local path = t.script([[
    local http = require "http"
    local thread = require "thread"
    local flag = select(3, ...)
    local srv = assert(http.server{port = 0, workers = 2})
    srv:route("GET", "/hold", function()
      -- blocks this worker's whole thread (not a task wait) until the flag file exists
      while not io.open(flag) do os.execute("sleep 0.01") end
      return "held by " .. select(2, thread.self())
    end)
    srv:route("GET", "/who", function() return "answered by " .. select(2, thread.self()) end)
    srv:route("GET", "/stop", function() srv:close() return "bye" end)
    print("listening on 127.0.0.1:" .. srv.port) io.stdout:flush()
    print("served", srv:serve{timeout = 60})
  ]])
  local pid, port, sdir = t.start_server(path, t.shellquote(flag), 60)
  local url = "http://127.0.0.1:" .. port
  local held = task.spawn(function() return assert(http.get(url .. "/hold", {timeout = 30})).body end)
  task.sleep(0.1) -- /hold has the first worker's thread now
  local who = assert(http.get(url .. "/who", {timeout = 30})).body
  t.writefile(flag, "")
  local ok, hold = held:join(30)
  t.ok(ok, hold)
  local a, b = hold:match("held by (%d+)"), who:match("answered by (%d+)")
  t.ok(a and b, hold .. " / " .. who)
  t.ok(a ~= b, "two threads served: " .. hold .. " / " .. who)
  t.eq(assert(http.get(url .. "/stop", {timeout = 30})).body, "bye")
  local rest = t.finish_server(pid, sdir)
  t.match(rest or "", "served\t3")
  t.rmtree(dir)
end)

t.test("workers = 3: max_requests counts every worker's replies; stop from a worker's handler", function()
  local path, dir = t.script([[
    local http = require "http"
    local srv = assert(http.server{port = 0, workers = 3})
    srv:route("GET", "/", function() return "x" end)
    srv:route("GET", "/stop", function() srv:close() return "bye" end)
    print("listening on 127.0.0.1:" .. srv.port) io.stdout:flush()
    print("first", srv:serve{max_requests = 20, timeout = 60})
    print("second", srv:serve{timeout = 60})
    print(tostring(srv.core))
  ]])
  local pid, port, sdir = t.start_server(path, "", 60)
  local url = "http://127.0.0.1:" .. port
  local hs = {}
  for i = 1, 20 do
    hs[i] = task.spawn(function() return assert(http.get(url .. "/", {timeout = 30})).body end)
  end
  for i = 1, 20 do t.eq(select(2, hs[i]:join(30)), "x") end
  -- the second serve: a handler (in whichever worker) closes the server
  local r
  for _ = 1, 100 do
    r = http.get(url .. "/stop", {timeout = 30})
    if r then break end
    task.sleep(0.05) -- between the two serve() calls nobody accepts
  end
  t.eq(r and r.body, "bye")
  local rest = t.finish_server(pid, sdir)
  t.rmtree(dir)
  t.match(rest or "", "first\t20")
  t.match(rest or "", "second\t1")
  t.match(rest or "", "closed")
end)

t.test("workers: a handler that cannot be copied to a worker thread is a clear error", function()
  local srv = assert(http.server{port = 0, workers = 2})
  local co = coroutine.create(function() end)
  srv:route("GET", "/", function() return tostring(co) end)
  t.raises("(a coroutine) cannot be passed to a thread", srv.serve, srv, {timeout = 1})
  srv:close()
end)

t.test("workers: Ctrl-C stops every worker and exits 130", function()
  local path, dir = t.script([[
    local http = require "http"
    local srv = assert(http.server{port = 0, workers = 2})
    srv:route("GET", "/", function() return "x" end)
    print("ready") io.stdout:flush()
    srv:serve()
  ]])
  local _, _, code = t.interrupt(path)
  t.eq(code, 130)
  t.rmtree(dir)
end)

t.done()
