-- test_websocket.lua: WebSocket (RFC 6455) in http.server (srv:websocket)
-- and the client (websocket.connect / http.websocket), in this process:
-- the server's protocol rules checked with frames written by hand on a
-- plain socket (tests/wslib.lua), netlua's client against its server, two
-- tasks on one WebSocket, limits, and peers that vanish.
local t = require "testlib"
local w = require "wslib"
local server = require "http.server"
local websocket = require "websocket"
local task = require "task"
local time = require "time"
local socket = require "socket"

local OP = w.OP

-- Waits (bounded: a guard against a hang, not a timing check) until
-- cond() is true.
local function wait_until(cond, what)
  for _ = 1, 1000 do
    if cond() then return end
    time.sleep(0.01)
  end
  error("gave up waiting for " .. what)
end

-- A server with an echo WebSocket at /echo (opts: its WebSocket options)
-- serving while fn(port, ended) runs; `ended` gets what receive returned
-- at the end of each connection: {err, code, reason}.
local function with_echo(opts, fn)
  local srv = assert(server{port = 0})
  local ended = {}
  srv:websocket("/echo", function(ws)
    while true do
      local m, kind, code, reason = ws:receive()
      if m == nil then
        ended[#ended + 1] = {kind, code, reason}
        return
      end
      ws:send(m, kind)
    end
  end, opts)
  return t.serve_while(srv, function() return fn(srv.port, ended) end)
end

-- The handler's view of the n-th connection's end, once it is there.
local function ended_with(ended, n)
  wait_until(function() return ended[n] ~= nil end, "the handler to see the end")
  return table.unpack(ended[n])
end

-- A raw client sends `frames`; the server must answer with a close frame
-- carrying `code`, and the handler must have ended with code and `reason`.
local function refused(frames, code, reason, opts)
  with_echo(opts, function(port, ended)
    local c = w.handshake(port, "/echo")
    assert(c:send(table.concat(frames)))
    local got = w.read_close(c)
    t.eq(got, code, "the server's close code")
    t.eq(c:receive(1), nil, "then the server closes the connection")
    c:close()
    local err, hcode, hreason = ended_with(ended, 1)
    t.eq(err, "closed")
    t.eq(hcode, code)
    t.eq(hreason, reason)
  end)
end

t.test("handshake: 101 with the RFC's accept key, then text and binary echo", function()
  with_echo(nil, function(port, ended)
    local c, status, fields = w.handshake(port, "/echo")
    t.eq(status, 101)
    t.eq(fields["sec-websocket-accept"], "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    t.eq(fields.upgrade:lower(), "websocket")
    local bytes = {}
    for i = 0, 1000 do bytes[#bytes + 1] = string.char(i * 7 % 256) end
    bytes = table.concat(bytes) -- 1001 bytes: unmasked 8 at a time, and a tail
    assert(c:send(w.frame("text", "héllo") .. w.frame("binary", bytes)))
    local f = w.read_frame(c)
    t.eq(f.op, OP.text)
    t.eq(f.payload, "héllo")
    t.ok(f.fin and not f.masked, "server frames are whole and unmasked")
    f = w.read_frame(c)
    t.eq(f.op, OP.binary)
    t.ok(f.payload == bytes, "a 1001-byte binary message comes back as it was")
    assert(c:send(w.frame("close", w.close_payload(1000, "bye"))))
    t.eq(w.read_close(c), 1000, "the close is echoed")
    c:close()
    t.eq(select(2, ended_with(ended, 1)), 1000)
    t.eq(select(3, ended_with(ended, 1)), "bye")
  end)
end)

t.test("handshake: requests that are not a WebSocket handshake get a normal reply", function()
  with_echo(nil, function(port)
    local cases = {
      {{Upgrade = false}, 400},
      {{Connection = "keep-alive"}, 400},
      {{["Sec-WebSocket-Key"] = "c2hvcnQ="}, 400},
      {{["Sec-WebSocket-Key"] = false}, 400},
      {{["Sec-WebSocket-Version"] = "8"}, 426},
    }
    for _, case in ipairs(cases) do
      local c, status, fields = w.handshake(port, "/echo", case[1])
      t.eq(status, case[2])
      if status == 426 then t.eq(fields["sec-websocket-version"], "13") end
      c:close()
    end
    local c, status = w.handshake(port, nil, nil, (w.request("/echo"):gsub("^GET", "POST")))
    t.eq(status, 405, "a POST to a WebSocket path")
    c:close()
  end)
end)

t.test("subprotocols: the first one the client offers that the server supports", function()
  local srv = assert(server{port = 0})
  srv:websocket("/p", function(ws) ws:send(ws.protocol or "none") end, {protocols = {"chat", "superchat"}})
  t.serve_while(srv, function()
    local ws = assert(websocket.connect("ws://127.0.0.1:" .. srv.port .. "/p", {protocols = {"v2", "superchat", "chat"}}))
    t.eq(ws.protocol, "superchat")
    t.eq(ws:receive(10), "superchat")
    t.eq(select(3, ws:receive(10)), 1000, "the server closes when its handler returns")
    local c, status, fields = w.handshake(srv.port, "/p", {["Sec-WebSocket-Protocol"] = "mqtt, v9"})
    t.eq(status, 101)
    t.eq(fields["sec-websocket-protocol"], nil, "none chosen when none matches")
    t.eq(w.read_frame(c).payload, "none")
    c:close()
  end)
end)

t.test("close codes: invalid ones are refused with 1002", function()
  for _, code in ipairs{0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535} do
    refused({w.frame("close", w.close_payload(code, "x"))}, 1002,
      "protocol error: invalid close code " .. code)
  end
end)

t.test("close codes: valid ones are echoed and reach the handler with the reason", function()
  for _, code in ipairs{1000, 1001, 1003, 1007, 1011, 1014, 3000, 4999} do
    with_echo(nil, function(port, ended)
      local c = w.handshake(port, "/echo")
      assert(c:send(w.frame("close", w.close_payload(code, "fine"))))
      t.eq(w.read_close(c), code)
      c:close()
      local _, hcode, hreason = ended_with(ended, 1)
      t.eq(hcode, code)
      t.eq(hreason, "fine")
    end)
  end
end)

t.test("close: an empty payload is answered empty and reported as 1005", function()
  with_echo(nil, function(port, ended)
    local c = w.handshake(port, "/echo")
    assert(c:send(w.frame("close", "")))
    local f = w.read_frame(c)
    t.eq(f.op, OP.close)
    t.eq(f.payload, "")
    c:close()
    t.eq(select(2, ended_with(ended, 1)), 1005)
  end)
end)

t.test("close: a 1-byte payload is a protocol error", function()
  refused({w.frame("close", "\3")}, 1002, "protocol error: close frame with a 1-byte payload")
end)

t.test("close: a reason that is not UTF-8 gets 1007", function()
  refused({w.frame("close", w.close_payload(1000, "bad \xff"))}, 1007, "invalid UTF-8 in a close reason")
end)

t.test("fragments with pings between them: pongs first, then the whole message", function()
  with_echo(nil, function(port)
    local c = w.handshake(port, "/echo")
    assert(c:send(w.frame("text", "Hel", {fin = false}) .. w.frame("ping", "p1") ..
      w.frame("cont", "lo", {fin = false}) .. w.frame("ping", "p2") .. w.frame("pong", "unasked") ..
      w.frame("cont", " world")))
    local f1, f2, f3 = w.read_frame(c), w.read_frame(c), w.read_frame(c)
    t.eq(f1.op, OP.pong)
    t.eq(f1.payload, "p1")
    t.eq(f2.op, OP.pong)
    t.eq(f2.payload, "p2")
    t.eq(f3.op, OP.text)
    t.eq(f3.payload, "Hello world")
    c:close()
  end)
end)

t.test("control frames: over 125 bytes or fragmented are protocol errors", function()
  refused({w.frame("ping", string.rep("p", 126))}, 1002, "protocol error: control frame of 126 bytes (at most 125)")
  refused({w.frame("pong", string.rep("p", 200))}, 1002, "protocol error: control frame of 200 bytes (at most 125)")
  refused({w.frame("ping", "x", {fin = false})}, 1002, "protocol error: fragmented control frame")
end)

t.test("masking: an unmasked frame from a client is refused", function()
  refused({w.frame("text", "hi", {key = false})}, 1002, "protocol error: unmasked frame from client")
end)

t.test("reserved bits and unknown opcodes are refused", function()
  refused({w.frame("text", "hi", {rsv = 4})}, 1002, "protocol error: reserved bits set (no extension was agreed)")
  refused({w.frame(3, "hi")}, 1002, "protocol error: unknown opcode 3")
  refused({w.frame(0xB, "")}, 1002, "protocol error: unknown opcode 11")
end)

t.test("fragment order: a stray continuation, or a new message inside one, is refused", function()
  refused({w.frame("cont", "x")}, 1002, "protocol error: continuation frame without a message to continue")
  refused({w.frame("text", "a", {fin = false}), w.frame("binary", "b")}, 1002,
    "protocol error: new message before the previous one ended")
end)

t.test("UTF-8: a character split across fragments is whole; broken ones get 1007", function()
  with_echo(nil, function(port)
    local c = w.handshake(port, "/echo")
    assert(c:send(w.frame("text", "\xE2\x82", {fin = false}) .. w.frame("cont", "\xAC!")))
    t.eq(w.read_frame(c).payload, "€!")
    c:close()
  end)
  refused({w.frame("text", "\xE2\x82", {fin = false}), w.frame("cont", "\x28")}, 1007,
    "invalid UTF-8 in a text message")
  refused({w.frame("text", "ok \xE2\x82", {fin = false}), w.frame("cont", "")}, 1007,
    "invalid UTF-8 in a text message")
  refused({w.frame("text", "\xED\xA0\x80")}, 1007, "invalid UTF-8 in a text message") -- a surrogate
  refused({w.frame("text", "\xC0\xAF")}, 1007, "invalid UTF-8 in a text message")     -- overlong
end)

-- Byte strings around every UTF-8 rule (RFC 3629): boundaries of each
-- length, overlong forms, surrogates, beyond U+10FFFF, stray and missing
-- continuation bytes; and random strings from bytes that matter.
local UTF8_CASES = {"", "a", "\xC2\x80", "\xDF\xBF", "\xC1\xBF", "\xC0\x80", "\xE0\xA0\x80",
  "\xE0\x9F\xBF", "\xED\x9F\xBF", "\xED\xA0\x80", "\xED\xBF\xBF", "\xEE\x80\x80", "\xEF\xBF\xBF",
  "\xF0\x90\x80\x80", "\xF0\x8F\xBF\xBF", "\xF4\x8F\xBF\xBF", "\xF4\x90\x80\x80",
  "\xF5\x80\x80\x80", "\xFF", "\x80", "\xBF", "\xE2\x82", "\xE2\x82\xAC\xAC", "abcdefgh\xE2\x82\xAC",
  "abcdefghijklmno\x80", "\xF0\x9F\x98\x80xyz"}
local function utf8_cases()
  local cases = {table.unpack(UTF8_CASES)}
  local bytes = {0x41, 0x7F, 0x80, 0x9F, 0xA0, 0xBF, 0xC2, 0xDF, 0xE0, 0xED, 0xEF, 0xF0, 0xF4, 0xF5}
  math.randomseed(6455)
  for _ = 1, 3000 do
    local b = {}
    for i = 1, math.random(1, 12) do b[i] = string.char(bytes[math.random(#bytes)]) end
    cases[#cases + 1] = table.concat(b)
  end
  return cases
end

t.test("UTF-8: text is checked exactly as Lua's strict utf8.len checks it", function()
  local c, s = t.tcp_pair()
  local ws = websocket.new(s, true, {})
  for _, case in ipairs(utf8_cases()) do
    local valid = utf8.len(case) ~= nil
    t.eq(pcall(ws.send, ws, case), valid, string.format("%q", case))
  end
  ws:abort()
  c:close()
end)

t.test("UTF-8: a text message split anywhere into fragments is judged as a whole", function()
  with_echo(nil, function(port)
    local c = w.handshake(port, "/echo")
    for _, case in ipairs(UTF8_CASES) do
      if utf8.len(case) and #case > 1 then
        for cut = 1, #case - 1 do
          assert(c:send(w.frame("text", case:sub(1, cut), {fin = false}) .. w.frame("cont", case:sub(cut + 1))))
          t.eq(w.read_frame(c).payload, case)
        end
      end
    end
    c:close()
  end)
end)

t.test("max_message: a frame over the limit gets 1009 before its payload arrives", function()
  local limit = websocket.MAX_MESSAGE
  refused({w.frame("binary", "", {length = limit + 1, key = "\0\0\0\0"})}, 1009,
    string.format("message too big (over %d bytes)", limit))
  refused({w.frame("binary", "1234", {fin = false}), w.frame("cont", "56")}, 1009,
    "message too big (over 5 bytes)", {max_message = 5})
end)

t.test("frame lengths: the largest one after a fragment gets 1009, a 64-bit one with its top bit set 1002", function()
  refused({w.frame("binary", "12345", {fin = false}),
    w.frame("cont", "", {length = math.maxinteger, key = "\0\0\0\0"})}, 1009,
    string.format("message too big (over %d bytes)", websocket.MAX_MESSAGE))
  refused({"\x82\xFF\x80\0\0\0\0\0\0\0\0\0\0\0"}, 1002,
    "protocol error: frame length has its most significant bit set")
end)

t.test("frames sent right behind the handshake request are not lost", function()
  with_echo(nil, function(port)
    local c, status = w.handshake(port, nil, nil, w.request("/echo") .. w.frame("text", "early"))
    t.eq(status, 101)
    t.eq(w.read_frame(c).payload, "early")
    c:close()
  end)
end)

t.test("max_message raised: a 16 MiB message goes both ways whole", function()
  local big = string.rep("0123456789abcdef", 1 << 20)
  with_echo({max_message = #big}, function(port)
    local c = w.handshake(port, "/echo")
    assert(c:send(w.frame("binary", big, {key = "\0\0\0\0"})))
    local f = w.read_frame(c)
    t.eq(#f.payload, #big)
    t.ok(f.payload == big, "the echo is the same 16 MiB")
    c:close()
  end)
end)

t.test("a peer that vanishes mid-frame: the handler gets 1006 and the server lives on", function()
  with_echo(nil, function(port, ended)
    local c = w.handshake(port, "/echo")
    local frame = w.frame("text", string.rep("x", 100))
    assert(c:send(frame:sub(1, 40)))
    c:close()
    local err, code, reason = ended_with(ended, 1)
    t.eq(err, "closed")
    t.eq(code, 1006)
    t.eq(reason, "connection lost")
    c = w.handshake(port, "/echo")
    assert(c:send(w.frame("text", "still here")))
    t.eq(w.read_frame(c).payload, "still here")
    c:close()
  end)
end)

t.test("receive(timeout): a timeout mid-frame keeps what arrived", function()
  local c, s = t.tcp_pair()
  local ws = websocket.new(s, false, {})
  local frame = w.frame("text", "patience")
  assert(c:send(frame:sub(1, 5)))
  t.eq(select(2, ws:receive(0.05)), "timeout")
  assert(c:send(frame:sub(6)))
  t.eq(ws:receive(10), "patience")
  c:close()
  t.eq(select(3, ws:receive(10)), 1006)
end)

t.test("netlua client and server: messages, ping, close code and reason both ways", function()
  local srv = assert(server{port = 0})
  local seen = {}
  srv:websocket("/chat", function(ws, req)
    seen.path, seen.query = req.path, req.query.room
    while true do
      local m, kind, code, reason = ws:receive()
      if m == nil then seen.code, seen.reason = code, reason return end
      if m == "quit" then ws:close(4001, "server says bye") return end
      ws:send(kind .. ":" .. m, kind)
    end
  end)
  t.serve_while(srv, function()
    local http = require "http"
    local url = "ws://127.0.0.1:" .. srv.port .. "/chat?room=a"
    local ws = assert(http.websocket(url))
    assert(ws:send("hi"))
    t.eq(select(1, ws:receive(10)), "text:hi")
    local odd = string.rep("\1\2\3\4\5\6\7", 14287) -- 100009 bytes: masking off word boundaries
    assert(ws:send(odd, "binary"))
    local m, kind = ws:receive(10)
    t.eq(kind, "binary")
    t.ok(m == "binary:" .. odd, "binary echo intact")
    assert(ws:ping("are you there"))
    assert(ws:send("after ping"))
    t.eq(ws:receive(10), "text:after ping")
    t.ok(ws:close(3001, "client leaves"))
    t.eq(select(2, ws:receive()), "closed")
    t.eq(ws:send("x"), nil, "send after close")
    wait_until(function() return seen.code end, "the server to see the close")
    t.eq(seen.path, "/chat")
    t.eq(seen.query, "a")
    t.eq(seen.code, 3001)
    t.eq(seen.reason, "client leaves")

    ws = assert(websocket.connect(url))
    assert(ws:send("quit"))
    local _, err, code, reason = ws:receive(10)
    t.eq(err, "closed")
    t.eq(code, 4001)
    t.eq(reason, "server says bye")
  end)
end)

t.test("IPv6: ws://[::1]:port/ reaches a server on ::1", function()
  local srv = assert(server{host = "::1", port = 0})
  srv:websocket("/v6", function(ws) ws:send("from " .. ws:getpeername()) end)
  t.serve_while(srv, function()
    local ws = assert(websocket.connect("ws://[::1]:" .. srv.port .. "/v6"))
    t.eq(ws:receive(10), "from ::1")
  end)
end)

t.test("client: a refused handshake and bad URLs are errors in words", function()
  local srv = assert(server{port = 0})
  srv:route("GET", "/plain", function() return "not a websocket\n" end)
  t.serve_while(srv, function()
    local ws, err = websocket.connect("ws://127.0.0.1:" .. srv.port .. "/plain")
    t.eq(ws, nil)
    t.match(err, "^websocket handshake failed: HTTP/1.1 200")
    ws, err = websocket.connect("ws://127.0.0.1:" .. srv.port .. "/missing")
    t.match(err, "^websocket handshake failed: HTTP/1.1 404")
  end)
  t.match(select(2, websocket.connect("http://127.0.0.1/")), "invalid WebSocket URL")
  t.raises("unknown option 'maxmessage'", websocket.connect, "ws://127.0.0.1/", {maxmessage = 1})
  t.raises("bad header 'X-A'", websocket.connect, "ws://127.0.0.1/", {headers = {["X-A"] = "a\r\nb: c"}})
end)

t.test("client: a masked frame from the server is refused with 1002", function()
  local l, port = t.listener()
  local h = task.spawn(function()
    local s = assert(l:accept())
    local key
    repeat
      local line = assert(s:receive("*l"))
      key = key or line:match("^Sec%-WebSocket%-Key: (%S+)")
    until line == ""
    assert(s:send("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" ..
      "Sec-WebSocket-Accept: " .. websocket.accept_key(key) .. "\r\n\r\n" .. w.frame("text", "masked")))
    local code = w.read_close(s)
    s:close()
    return code
  end)
  local ws = assert(websocket.connect("ws://127.0.0.1:" .. port .. "/"))
  local m, err, code, reason = ws:receive(10)
  t.eq(m, nil)
  t.eq(err, "closed")
  t.eq(code, 1002)
  t.eq(reason, "protocol error: masked frame from server")
  local ok, sent = h:join(10)
  t.ok(ok)
  t.eq(sent, 1002, "the client told the server why")
  l:close()
end)

t.test("tasks: one task receives while another sends, on both sides", function()
  local N, SIZE = 60, 70000
  local function message(who, i) return string.format("%s%04d", who, i) .. string.rep(who, SIZE) end
  local srv = assert(server{port = 0})
  local server_got = {}
  -- Small socket buffers: sends wait, so the calls of the two senders
  -- overlap (with the default ones each send would finish at once).
  local function small_buffers(ws)
    assert(ws.sock:setoption("send-buffer-size", 32768))
    assert(ws.sock:setoption("recv-buffer-size", 32768))
  end
  srv:websocket("/duplex", function(ws)
    small_buffers(ws)
    local sender = task.spawn(function()
      for i = 1, N do assert(ws:send(message("s", i))) end
    end)
    while true do
      local m = ws:receive()
      if m == nil then break end
      server_got[#server_got + 1] = m
    end
    assert(sender:join(10))
  end)
  t.serve_while(srv, function()
    local ws = assert(websocket.connect("ws://127.0.0.1:" .. srv.port .. "/duplex"))
    small_buffers(ws)
    local client_got = {}
    local receiver = task.spawn(function() -- polls: its short timeouts reach the senders' waits too
      while #client_got < N do
        local m, err = ws:receive(0.01)
        assert(m or err == "timeout", err)
        client_got[#client_got + 1] = m
      end
    end)
    local senders = {}
    for k = 1, 2 do -- two tasks send at once: their frames must not interleave
      senders[k] = task.spawn(function()
        for i = k, N, 2 do assert(ws:send(message("c", i))) end
      end)
    end
    t.join_all(senders, 20)
    t.join_all({receiver}, 20)
    for i = 1, N do t.ok(client_got[i] == message("s", i), "server message " .. i .. " intact, in order") end
    wait_until(function() return #server_got == N end, "the server to get every message")
    local seen = {}
    for _, m in ipairs(server_got) do
      local i = tonumber(m:sub(2, 5))
      t.ok(m == message("c", i), "client message intact")
      seen[i] = true
    end
    for i = 1, N do t.ok(seen[i], "client message " .. i .. " arrived") end
    ws:close()
  end)
end)

t.test("tasks: a receiver polling with short timeouts does not cut the senders' frames", function()
  -- The socket's timeout is one setting for both directions: the poller's
  -- receive(0.01) reaches the waits of sends held up by a slow reader, and
  -- none of them may give up or let another frame in half-way through one.
  local N, SIZE = 2, 3000000
  local function message(k, i) return string.format("%d:%d:", k, i) .. string.rep(string.char(64 + k), SIZE) end
  local srv = assert(server{port = 0})
  local results, polls = {}, 0
  srv:websocket("/poll", function(ws)
    assert(ws.sock:setoption("send-buffer-size", 32768))
    local poller = task.spawn(function()
      while true do
        local m, err = ws:receive(0.01)
        if m == nil and err ~= "timeout" then return end
        polls = polls + 1
      end
    end)
    local senders = {}
    for k = 1, 2 do
      senders[k] = task.spawn(function()
        for i = 1, N do
          local r = table.pack(ws:send(message(k, i))) -- (the index after the send: it waits)
          results[#results + 1] = r
        end
      end)
    end
    t.join_all(senders, 60)
    assert(poller:join(20))
  end)
  t.serve_while(srv, function()
    local ws = assert(websocket.connect("ws://127.0.0.1:" .. srv.port .. "/poll", {max_message = SIZE + 10}))
    assert(ws.sock:setoption("recv-buffer-size", 32768))
    for _ = 1, 2 * N do
      time.sleep(0.05) -- a slow reader: the senders wait while the poller times out
      local m, err, code, reason = ws:receive(20)
      local k, i = (m or ""):match("^(%d):(%d):")
      t.ok(k and m == message(tonumber(k), tonumber(i)),
        string.format("a message intact (%s %s %s)", tostring(err), tostring(code), tostring(reason)))
    end
    wait_until(function() return #results == 2 * N end, "every send to return")
    ws:close()
  end)
  for _, r in ipairs(results) do t.eq(r[1], true, "a send: " .. tostring(r[2])) end
  t.ok(polls > 0, "the poller timed out meanwhile")
end)

t.test("send_timeout: a peer that stops reading loses the connection", function()
  local srv = assert(server{port = 0})
  local sent
  srv:websocket("/flood", function(ws)
    assert(ws.sock:setoption("send-buffer-size", 32768))
    local big = string.rep("x", 4000000)
    sent = table.pack(ws:send(big, "binary"))
    sent.after = table.pack(ws:receive())
  end, {send_timeout = 0.2})
  t.serve_while(srv, function()
    local ws = assert(websocket.connect("ws://127.0.0.1:" .. srv.port .. "/flood"))
    assert(ws.sock:setoption("recv-buffer-size", 32768))
    wait_until(function() return sent and sent.after end, "the send to give up")
    ws:abort()
  end)
  t.eq(sent[1], nil)
  t.eq(sent[2], "timeout")
  t.eq(sent.after[2], "closed", "a frame cut short ends the connection")
  t.eq(sent.after[3], 1006)
  t.eq(sent.after[4], "send failed: timeout")
end)

t.test("close from another task while one receives: the receiver sees the end", function()
  with_echo(nil, function(port)
    local ws = assert(websocket.connect("ws://127.0.0.1:" .. port .. "/echo"))
    local result
    local receiver = task.spawn(function() result = table.pack(ws:receive(20)) end)
    t.until_waiting({receiver})
    t.ok(ws:close(1001, "going away"))
    t.join_all({receiver}, 20)
    t.eq(result[2], "closed")
    t.eq(result[3], 1001)
  end)
end)

t.test("a handler that fails: the peer gets 1011, the server logs it and lives on", function()
  local srv = assert(server{port = 0})
  srv:websocket("/boom", function(ws)
    ws:receive()
    error("boom")
  end)
  local log = t.capture_stderr(t.serve_while, srv, function()
    local ws = assert(websocket.connect("ws://127.0.0.1:" .. srv.port .. "/boom"))
    assert(ws:send("go"))
    t.eq(select(3, ws:receive(10)), 1011)
    ws = assert(websocket.connect("ws://127.0.0.1:" .. srv.port .. "/boom"))
    ws:close()
  end)
  t.match(log, "error in handler for GET /boom: .*boom")
end)

t.test("workers: the WebSocket route is copied into each worker thread", function()
  local srv = assert(server{port = 0, workers = 2})
  srv:websocket("/w", function(ws)
    local m = ws:receive()
    ws:send("got " .. tostring(m))
  end, {max_message = 100})
  t.serve_while(srv, function()
    for i = 1, 4 do
      local ws = assert(websocket.connect("ws://127.0.0.1:" .. srv.port .. "/w"))
      assert(ws:send("x" .. i))
      t.eq(ws:receive(10), "got x" .. i)
      ws:close()
    end
  end)
end)

t.test("bad arguments raise", function()
  local c, s = t.tcp_pair()
  local ws = websocket.new(s, false, {})
  t.raises("must be UTF-8", ws.send, ws, "\xff")
  t.raises("\"text\" or \"binary\" expected", ws.send, ws, "x", "utf8")
  t.raises("at most 125 bytes", ws.ping, ws, string.rep("x", 126))
  t.raises("a close code", ws.close, ws, 1005)
  t.raises("at most 123 bytes", ws.close, ws, 1000, string.rep("x", 124))
  local srv = assert(server{port = 0})
  t.raises("function expected", srv.websocket, srv, "/x")
  t.raises("unknown option 'protocol'", srv.websocket, srv, "/x", function() end, {protocol = "a"})
  srv:close()
  ws:abort()
  c:close()
end)

t.done()
