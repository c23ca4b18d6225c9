-- test_http_stream.lua: streamed replies (req:stream) and server-sent
-- events (req:sse) of http.server, against raw sockets, curl and Python's
-- http.client: chunked for HTTP/1.1, close-delimited for 1.0, HEAD, clients
-- that leave mid-stream, heartbeats, Last-Event-ID.
package.path = (arg[0]:match("^(.*)/") or ".") .. "/?.lua;" .. package.path
local t = require "testlib"
local http = require "http"
local task = require "task"

local function server()
  return assert(http.server{port = 0})
end

-- Reads a reply head from c: the status line and the lines after it.
local function read_head(c)
  local lines = {}
  while true do
    local line = assert(c:receive("*l"))
    if line == "" then break end
    lines[#lines + 1] = line
  end
  return table.concat(lines, "\n")
end

-- Reads one chunk of a chunked body: its data ("" for the last one, whose
-- empty trailer it reads too).
local function read_chunk(c)
  local size = tonumber(assert(c:receive("*l")), 16)
  local data = size > 0 and assert(c:receive(size)) or ""
  t.eq(c:receive("*l"), "", "CRLF after the chunk")
  return data
end

t.test("req:stream sends each piece as it is written (chunked), and the connection stays alive", function()
  local srv = server()
  local go = task.semaphore(1)
  go:acquire()
  srv:route("GET", "/s", function(req)
    local out = req:stream(200, {["Content-Type"] = "text/plain", ["X-Kind"] = "stream"})
    assert(out:write("first\n"))
    assert(go:acquire(30), "the client saw the first piece")
    assert(out:write("second\n"))
    -- returns without out:close(): the server ends the reply
  end)
  srv:route("GET", "/after", function() return "after\n" end)
  t.serve_while(srv, function()
    local c = t.connect(srv.port)
    c:send("GET /s HTTP/1.1\r\nHost: x\r\n\r\n")
    local head = read_head(c)
    t.match(head, "^HTTP/1.1 200 OK")
    t.match(head, "\nTransfer%-Encoding: chunked")
    t.match(head, "\nX%-Kind: stream")
    t.match(head, "\nConnection: keep%-alive")
    t.ok(not head:find("Content%-Length"), head)
    t.eq(read_chunk(c), "first\n") -- before the handler may write the second
    go:release()
    t.eq(read_chunk(c), "second\n")
    t.eq(read_chunk(c), "", "the last chunk")
    c:send("GET /after HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    t.match(c:receive("*a"), "^HTTP/1.1 200 .*\r\n\r\nafter\n$")
    c:close()
  end)
end)

t.test("an HTTP/1.0 client gets a close-delimited stream", function()
  local srv = server()
  srv:route("GET", "/s", function(req)
    local out = req:stream()
    for i = 1, 3 do assert(out:write("piece " .. i .. "\n")) end
    out:close()
    t.eq(out:write("late"), nil, "a write after close")
  end)
  local reply = t.serve_while(srv, function()
    local c = t.connect(srv.port)
    c:send("GET /s HTTP/1.0\r\n\r\n")
    local r = c:receive("*a")
    c:close()
    return r
  end)
  local head, body = reply:match("^(.-)\r\n\r\n(.*)$")
  t.match(head, "^HTTP/1.1 200 OK")
  t.match(head, "Connection: close")
  t.match(head, "Content%-Type: text/plain; charset=utf%-8")
  t.ok(not head:find("Transfer%-Encoding"), head)
  t.eq(body, "piece 1\npiece 2\npiece 3\n")
end)

t.test("HEAD on a streamed route gets the head, writes say \"closed\"; the next request follows", function()
  local srv = server()
  local wrote, why
  srv:route("GET", "/s", function(req)
    local out = req:stream(200)
    wrote, why = out:write("not sent for HEAD\n")
  end)
  srv:route("GET", "/events", function(req)
    local ev = req:sse{heartbeat = 0.01}
    while ev:send("an event loop that ends when send fails") do task.sleep(0.01) end
  end)
  srv:route("GET", "/next", function() return "next\n" end)
  local reply = t.serve_while(srv, function()
    local c = t.connect(srv.port)
    c:send("HEAD /s HTTP/1.1\r\nHost: x\r\n\r\nHEAD /events HTTP/1.1\r\nHost: x\r\n\r\n" ..
      "GET /next HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    local r = c:receive("*a")
    c:close()
    return r
  end)
  t.eq(wrote, nil)
  t.eq(why, "closed", "a loop that stops on a failed write ends")
  t.match(reply, "^HTTP/1.1 200 OK\r\n.-\r\n\r\nHTTP/1.1 200 OK\r\n.-text/event%-stream.-\r\n\r\n" ..
    "HTTP/1.1 200 OK\r\n.-\r\n\r\nnext\n$")
  t.ok(not reply:find("not sent"), reply)
end)

t.test("a client that leaves mid-stream: write returns nil, \"closed\" and the server keeps serving", function()
  local srv = server()
  local outcome = {}
  local left = task.semaphore(1)
  left:acquire()
  srv:route("GET", "/s", function(req)
    local out = req:stream()
    assert(out:write("hello\n"))
    assert(left:acquire(30))
    local piece = string.rep("x", 65536)
    for _ = 1, 1000 do
      local ok, err = out:write(piece)
      if not ok then outcome.err = err break end
    end
    outcome.done = true
  end)
  srv:route("GET", "/ok", function() return "still here\n" end)
  local reply = t.serve_while(srv, function()
    local c = t.connect(srv.port)
    c:send("GET /s HTTP/1.1\r\nHost: x\r\n\r\n")
    read_head(c)
    t.eq(read_chunk(c), "hello\n")
    c:close()
    left:release()
    while not outcome.done do task.sleep(0.01) end
    local c2 = t.connect(srv.port)
    c2:send("GET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    local r = c2:receive("*a")
    c2:close()
    return r
  end)
  t.eq(outcome.err, "closed")
  t.match(reply, "\r\n\r\nstill here\n$")
end)

t.test("a client that stops reading: after send_timeout without progress, write returns nil, \"closed\"", function()
  local srv = assert(http.server{port = 0, send_timeout = 0.2})
  local outcome = {}
  srv:route("GET", "/s", function(req)
    local out = req:stream()
    local piece = string.rep("z", 65536)
    for i = 1, 100000 do -- far more than socket buffers hold
      local ok, err = out:write(piece)
      if not ok then outcome.err, outcome.at = err, i break end
    end
    outcome.done = true
  end)
  t.serve_while(srv, function()
    local c = t.connect(srv.port)
    c:send("GET /s HTTP/1.1\r\nHost: x\r\n\r\n")
    while not outcome.done do task.sleep(0.02) end -- never reads
    c:close()
  end)
  t.eq(outcome.err, "closed")
  t.ok(outcome.at < 100000, "it stopped early")
end)

t.test("req:stream checks its status and headers; a second stream raises", function()
  local srv = server()
  local errs = {}
  srv:route("GET", "/s", function(req)
    errs[1] = select(2, pcall(req.stream, req, 101))
    errs[2] = select(2, pcall(req.stream, req, 200, "x"))
    local out = req:stream(201)
    errs[3] = select(2, pcall(req.stream, req))
    errs[4] = select(2, pcall(out.write, out, {}))
    out:write("ok\n")
  end)
  local reply = t.serve_while(srv, function()
    local c = t.connect(srv.port)
    c:send("GET /s HTTP/1.0\r\n\r\n")
    local r = c:receive("*a")
    c:close()
    return r
  end)
  t.match(errs[1], "bad status 101")
  t.match(errs[2], "table expected")
  t.match(errs[3], "already begun")
  t.match(errs[4], "string expected, got table")
  t.match(reply, "^HTTP/1.1 201 Created\r\n.*\r\n\r\nok\n$")
end)

t.test("Python's http.client reads a chunked stream", function()
  if not t.have("/usr/bin/python3") then return t.skip("python client", "needs /usr/bin/python3") end
  local srv = server()
  srv:route("GET", "/s", function(req)
    local out = req:stream(200, {["Content-Type"] = "application/x-ndjson"})
    for i = 1, 5 do out:write(string.format('{"n":%d}\n', i)) task.yield() end
  end)
  local out, err, code = t.serve_while(srv, function()
    return t.sh_task(string.format([[/usr/bin/python3 -c '
import http.client
c = http.client.HTTPConnection("127.0.0.1", %d, timeout=20)
c.request("GET", "/s")
r = c.getresponse()
print(r.status, r.getheader("Transfer-Encoding"), r.getheader("Content-Type"))
print(r.read().decode(), end="")
']], srv.port))
  end)
  t.eq(code, 0, err)
  t.eq(out, '200 chunked application/x-ndjson\n{"n":1}\n{"n":2}\n{"n":3}\n{"n":4}\n{"n":5}\n')
end)

-- ---- server-sent events ------------------------------------------------------

t.test("req:sse: curl -N reads retry, data lines, JSON data, event names, ids and comments", function()
  if not t.have("curl") then return t.skip("sse with curl", "needs curl") end
  local srv = server()
  srv:route("GET", "/events", function(req)
    local ev = req:sse{retry = 2500, heartbeat = false}
    assert(ev:send("line one\nline two"))
    assert(ev:send{event = "tick", id = 7, data = {n = 1}})
    assert(ev:comment("just a comment"))
    assert(ev:send{data = "", id = "8"})
    ev:close()
  end)
  local out, err, code = t.serve_while(srv, function()
    return t.sh_task(string.format("curl -sN -D %s --max-time 20 %s/events",
      "/dev/stderr", srv.url))
  end)
  t.eq(code, 0, err)
  t.match(err, "Content%-Type: text/event%-stream")
  t.match(err, "Cache%-Control: no%-cache")
  t.match(err, "X%-Accel%-Buffering: no")
  t.eq(out, "retry: 2500\n\n" ..
    "data: line one\ndata: line two\n\n" ..
    'event: tick\nid: 7\ndata: {"n":1}\n\n' ..
    ": just a comment\n\n" ..
    "id: 8\ndata: \n\n")
end)

t.test("req:sse: a reconnecting client's Last-Event-ID is events.last_event_id", function()
  local srv = server()
  srv:route("GET", "/events", function(req)
    local ev = req:sse{heartbeat = false}
    local next_id = (tonumber(ev.last_event_id) or 0) + 1
    ev:send{id = next_id, data = "resumed from " .. tostring(ev.last_event_id)}
  end)
  local first, again = t.serve_while(srv, function()
    local function get(extra)
      local c = t.connect(srv.port)
      c:send("GET /events HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" .. extra .. "\r\n")
      local r = c:receive("*a")
      c:close()
      return r
    end
    return get(""), get("Last-Event-ID: 41\r\n")
  end)
  t.match(first, "id: 1\r?\ndata: resumed from nil\n")
  t.match(again, "id: 42\r?\ndata: resumed from 41\n")
end)

t.test("req:sse: heartbeat comments while the handler waits, never inside an event", function()
  local srv = server()
  local seen = task.semaphore(1)
  seen:acquire()
  srv:route("GET", "/events", function(req)
    local ev = req:sse{heartbeat = 0.01}
    assert(seen:acquire(30), "the client saw a heartbeat")
    local lines = {}
    for i = 1, 40 do lines[i] = string.rep(string.char(96 + i % 26), 2000) end
    local big = table.concat(lines, "\n")
    for i = 1, 50 do
      if not ev:send{id = i, data = big} then break end
      task.yield()
    end
  end)
  local blocks = t.serve_while(srv, function()
    local c = t.connect(srv.port)
    c:send("GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
    read_head(c)
    local body = {}
    local released = false
    while true do
      local chunk = read_chunk(c)
      if chunk == "" then break end
      body[#body + 1] = chunk
      if not released and chunk:find(": heartbeat\n", 1, true) then
        seen:release()
        released = true
      end
    end
    c:close()
    return table.concat(body)
  end)
  local events, beats = 0, 0
  for block in blocks:gmatch("(.-\n)\n") do
    if block == ": heartbeat\n" then
      beats = beats + 1
    else
      events = events + 1
      local id, data = block:match("^id: (%d+)\n(.*)$")
      t.ok(id, "an event block starts with its id: " .. block:sub(1, 40))
      local n = 0
      for line in data:gmatch("[^\n]+") do
        n = n + 1
        t.ok(line:find("^data: " .. string.char(96 + n % 26):rep(2000) .. "$"), "line " .. n .. " of event " .. id)
      end
      t.eq(n, 40, "data lines of event " .. id)
    end
  end
  t.ok(beats >= 1, "a heartbeat came")
  t.eq(events, 50)
end)

t.test("req:sse: a client that leaves ends the stream: send returns nil, \"closed\"", function()
  local srv = server()
  local outcome = {}
  srv:route("GET", "/events", function(req)
    local ev = req:sse{heartbeat = 0.01}
    assert(ev:send("hello"))
    for _ = 1, 100000 do
      local ok, err = ev:send(string.rep("y", 4096))
      if not ok then outcome.err = err break end
      task.yield()
    end
    outcome.done = true
  end)
  srv:route("GET", "/ok", function() return "fine\n" end)
  local reply = t.serve_while(srv, function()
    local c = t.connect(srv.port)
    c:send("GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
    read_head(c)
    t.eq(read_chunk(c), "data: hello\n\n")
    c:close()
    while not outcome.done do task.sleep(0.01) end
    local c2 = t.connect(srv.port)
    c2:send("GET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    local r = c2:receive("*a")
    c2:close()
    return r
  end)
  t.eq(outcome.err, "closed")
  t.match(reply, "\r\n\r\nfine\n$")
end)

t.test("req:sse checks its options and events", function()
  local srv = server()
  local errs = {}
  srv:route("GET", "/events", function(req)
    errs[1] = select(2, pcall(req.sse, req, {heartbeat = -1}))
    errs[2] = select(2, pcall(req.sse, req, {retry = 1.5}))
    local ev = req:sse{heartbeat = false}
    errs[3] = select(2, pcall(ev.send, ev, {event = "a\nb", data = "x"}))
    errs[4] = select(2, pcall(ev.send, ev, {id = "1\r", data = "x"}))
    errs[5] = select(2, pcall(ev.send, ev))
  end)
  t.serve_while(srv, function()
    local c = t.connect(srv.port)
    c:send("GET /events HTTP/1.0\r\n\r\n")
    c:receive("*a")
    c:close()
  end)
  t.match(errs[1], "'heartbeat' must be a number")
  t.match(errs[2], "'retry' must be an integer")
  t.match(errs[3], "bad event name")
  t.match(errs[4], "bad event id")
  t.match(errs[5], "event or data expected")
end)

t.test("srv:close() ends a stream that would never end: its handler is cancelled, serve() returns", function()
  local srv = server()
  local closed = false
  srv:route("GET", "/events", function(req)
    local mark <close> = setmetatable({}, {__close = function() closed = true end})
    local ev = req:sse{heartbeat = false}
    while ev:send("tick") do task.sleep(0.02) end
  end)
  local c
  t.serve_while(srv, function() -- serve_while calls srv:close() when this ends
    c = t.connect(srv.port)
    c:send("GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
    read_head(c)
    t.eq(c:receive("*l"), "c") -- the first chunk: "data: tick\n\n", 12 bytes
  end)
  t.ok(closed, "the handler's to-be-closed variable ran")
  c:settimeout(5)
  local rest, err = c:receive("*a")
  t.eq(err, nil, "the connection closed")
  t.ok(rest ~= nil)
  c:close()
end)

t.test("over HTTPS: curl --cacert -N reads a streamed reply and events", function()
  local tls = require "tlslib"
  local missing = tls.missing()
  if missing then return t.skip("https streams", missing) end
  if not t.have("curl") then return t.skip("https streams", "needs curl") end
  local C = tls.certs()
  local srv = assert(http.server{port = 0,
    tls = {certificate = C.server.cert, key = C.server.enckey, password = "secret"}})
  srv:route("GET", "/s", function(req)
    local out = req:stream()
    for i = 1, 3 do out:write("piece " .. i .. "\n") task.yield() end
  end)
  srv:route("GET", "/events", function(req)
    local ev = req:sse{heartbeat = false}
    ev:send{event = "e", data = "over tls"}
  end)
  local out, err, code = t.serve_while(srv, function()
    return t.sh_task(string.format("curl -sSN --max-time 20 --cacert %s %s/s %s/events",
      t.shellquote(C.ca.cert), srv.url, srv.url))
  end)
  t.rmtree(C.dir)
  t.eq(code, 0, err)
  t.eq(out, "piece 1\npiece 2\npiece 3\nevent: e\ndata: over tls\n\n")
end)

t.done()
