-- test_http_server_hostile.lua: http.server against clients that lie,
-- smuggle, trickle or never read, and handlers that return nonsense. Each
-- case is named after what broke. The server serves in this process (the
-- main coroutine) while the clients run as tasks on raw sockets.
local t = require "testlib"
local task = require "task"
local socket = require "socket"
local thread = require "thread"
local http = require "http"
local json = require "json"

local serve_while = t.serve_while

-- Sends raw bytes on a new connection and returns all the server sent
-- until it closed (or `wait` seconds passed).
local function exchange(srv, bytes, wait)
  local c = assert(socket.connect("127.0.0.1", srv.port))
  c:settimeout(wait or 10)
  assert(c:send(bytes))
  local data, err, partial = c:receive("*a")
  c:close()
  return data or partial, err
end

-- Reads one response from c: status line, header table, body.
local function read_response(c)
  local status = c:receive("*l")
  if not status then return nil end
  local headers = {}
  while true do
    local line = assert(c:receive("*l"))
    if line == "" then break end
    local k, v = line:match("^([^:]+): (.*)$")
    headers[k:lower()] = v
  end
  local body = ""
  if headers["content-length"] then body = c:receive(tonumber(headers["content-length"])) end
  return status, headers, body
end

local function new_server(opts)
  local srv = assert(http.server(opts or {port = 0}))
  srv:route("*", "/headers", function(req)
    return {headers = req.headers, trailers = req.trailers or json.null, body = req.body}
  end)
  return srv
end

-- ---- request parsing -----------------------------------------------------

t.test("a chunked request's trailer is not read past the header buffer nor mixed into headers", function()
  local srv = new_server()
  local first, second = serve_while(srv, function()
    local c = assert(socket.connect("127.0.0.1", srv.port))
    c:settimeout(10)
    assert(c:send("POST /headers HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" ..
      "3\r\nabc\r\n0\r\nX: y\r\nSecret-Trailer: z\r\n\r\n"))
    local _, _, b1 = read_response(c)
    -- The same connection: nothing of the first request leaks into this one.
    assert(c:send("POST /headers HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" ..
      "2\r\nhi\r\n0\r\n\r\n"))
    local _, _, b2 = read_response(c)
    c:close()
    return json.decode(b1), json.decode(b2)
  end)
  t.eq(first.body, "abc")
  t.eq(first.headers.host, "x")
  t.eq(first.headers["transfer-encoding"], "chunked")
  local names = {}
  for k in pairs(first.headers) do names[#names + 1] = k end
  table.sort(names)
  t.eq(table.concat(names, ","), "host,transfer-encoding", "trailers stay out of headers")
  t.eq(first.trailers.x, "y")
  t.eq(first.trailers["secret-trailer"], "z")
  t.eq(second.body, "hi")
  t.eq(second.trailers, json.null, "no trailers: none carried over")
  local n = 0
  for _ in pairs(second.headers) do n = n + 1 end
  t.eq(n, 2)
end)

t.test("request smuggling: ambiguous framing is refused, never guessed", function()
  local srv = new_server()
  local cases = {
    {"space before the colon of Content-Length",
     "POST /headers HTTP/1.1\r\nHost: x\r\nContent-Length : 3\r\n\r\nabc", "400"},
    {"space before the colon of Transfer-Encoding",
     "POST /headers HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", "400"},
    {"obs-folded Transfer-Encoding",
     "POST /headers HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\r\n chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", "400"},
    {"chunk data not followed by CRLF",
     "POST /headers HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXY0\r\n\r\n", "400"},
    {"bare LF line ends", "GET /headers HTTP/1.1\nHost: x\n\n", "400"},
    {"bare LF after a header", "GET /headers HTTP/1.1\r\nHost: x\n\r\n", "400"},
    {"a transfer coding we do not decode",
     "POST /headers HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", "501"},
    {"chunked not last", "POST /headers HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", "400"},
    {"Content-Length and Transfer-Encoding",
     "POST /headers HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", "400"},
    {"two different Content-Lengths",
     "POST /headers HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", "400"},
    {"a Content-Length that is not a number",
     "POST /headers HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\nabc", "400"},
    {"Transfer-Encoding in HTTP/1.0",
     "POST /headers HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", "400"},
    {"HTTP/1.1 without Host", "GET /headers HTTP/1.1\r\n\r\n", "400"},
    {"two Host fields", "GET /headers HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "400"},
    {"a NUL in a header value", "GET /headers HTTP/1.1\r\nHost: x\r\nX-A: a\0b\r\n\r\n", "400"},
    {"a space in a field name", "GET /headers HTTP/1.1\r\nHost: x\r\nX A: b\r\n\r\n", "400"},
    {"a chunk size that is not hex",
     "POST /headers HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "400"},
    {"HTTP/2.0 on an HTTP/1 connection", "GET /headers HTTP/2.0\r\nHost: x\r\n\r\n", "505"},
  }
  local got = serve_while(srv, function()
    local out = {}
    for i, case in ipairs(cases) do out[i] = exchange(srv, case[2]) end
    return out
  end)
  for i, case in ipairs(cases) do
    t.match(got[i] or "", "^HTTP/1.1 " .. case[3] .. " ", case[1])
    t.match(got[i] or "", "Connection: close\r\n", case[1] .. ": the connection closes")
  end
end)

t.test("what RFC 9112 allows is still understood", function()
  local srv = new_server()
  local got = serve_while(srv, function()
    return {
      exchange(srv, "\r\nPOST /headers HTTP/1.1\r\nhost:x\r\ncontent-length:  3 \r\nConnection: close\r\n\r\nabc"),
      exchange(srv, "POST /headers HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\nConnection: close\r\n\r\n" ..
        "3;name=value;q=\"x y\"\r\nabc\r\n1 ; ext\r\nd\r\n0\r\n\r\n"),
      exchange(srv, "GET /headers HTTP/1.0\r\n\r\n"),
      exchange(srv, "GET http://example.test/headers?x=1 HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n"),
    }
  end)
  t.match(got[1], "^HTTP/1.1 200 ", "a leading empty line, no space after colons")
  t.match(got[1], '"body":"abc"')
  t.match(got[2], "^HTTP/1.1 200 ", "chunk extensions")
  t.match(got[2], '"body":"abcd"')
  t.match(got[3], "^HTTP/1.1 200 ", "HTTP/1.0 needs no Host")
  t.match(got[4], "^HTTP/1.1 200 ", "absolute-form target")
end)

t.test("limits on a chunked body and its trailers hold", function()
  local srv = new_server{port = 0, max_body = 10, max_header = 200}
  local got = serve_while(srv, function()
    return {
      exchange(srv, "POST /headers HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" ..
        "6\r\nabcdef\r\n6\r\nabcdef\r\n0\r\n\r\n"),
      exchange(srv, "POST /headers HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" ..
        "0\r\nX: " .. string.rep("y", 300) .. "\r\n\r\n"),
      exchange(srv, "POST /headers HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" ..
        "ffffffffffffffffffffffff\r\n"),
      exchange(srv, "POST /headers HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" ..
        "1;" .. string.rep("e", 5000) .. "\r\n"),
    }
  end)
  t.match(got[1], "^HTTP/1.1 413 ", "de-chunked body over max_body")
  t.match(got[2], "^HTTP/1.1 431 ", "trailers over max_header")
  t.match(got[3], "^HTTP/1.1 413 ", "a chunk size that overflows")
  t.match(got[4], "^HTTP/1.1 400 ", "a chunk-size line without end")
end)

-- ---- responses --------------------------------------------------------------

t.test("a NUL in a header value from a handler does not cut the head", function()
  local srv = new_server()
  srv:route("GET", "/echo", function(req)
    return 200, "echoed", {["X-Echo"] = req.query.x, ["X-After"] = "kept", ["Bad\0Name"] = "v"}
  end)
  local out = serve_while(srv, function()
    -- Two pipelined requests: the second reply must not run into the first's body.
    return exchange(srv, "GET /echo?x=a%00b HTTP/1.1\r\nHost: x\r\n\r\n" ..
      "GET /echo?x=ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
  end)
  local first, second = out:match("^(.-echoed)(HTTP/1.1 .*)$")
  t.ok(first, "two whole replies: " .. out)
  t.match(first, "Content%-Length: 6\r\n")
  t.match(first, "X%-After: kept\r\n")
  t.ok(not first:find("X-Echo", 1, true), "the value with a NUL is dropped")
  t.ok(not first:find("Bad", 1, true), "the name with a NUL is dropped")
  t.ok(not first:find("\0", 1, true))
  t.match(second, "X%-Echo: ok\r\n")
  t.match(second, "\r\n\r\nechoed$")
end)

t.test("a headers table a handler reuses is not changed by a reply (a JSON reply typed the next text reply as JSON)", function()
  local srv = new_server()
  local SHARED = {["Cache-Control"] = "no-store"}
  srv:route("GET", "/json", function() return 200, {a = 1}, SHARED end)
  srv:route("GET", "/text", function() return 200, "plain", SHARED end)
  srv:route("GET", "/many", function()
    return 200, "x", {["Set-Cookie"] = {"a=1", "b=2"}, ["x-num"] = 42, ["X-Yes"] = true,
      ["content-TYPE"] = "text/x-mine", ["Not A Token"] = "v", Date = "then",
      ["X-Split"] = "a\r\nInjected: yes"}
  end)
  local out = serve_while(srv, function()
    return exchange(srv, "GET /json HTTP/1.1\r\nHost: x\r\n\r\nGET /text HTTP/1.1\r\nHost: x\r\n\r\n" ..
      "GET /many HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
  end)
  local json_reply, text_reply, many = out:match("^(HTTP.-)(HTTP.-)(HTTP.*)$")
  t.ok(many, "three replies: " .. out)
  t.match(json_reply, "\r\nContent%-Type: application/json\r\n")
  t.match(text_reply, "\r\nContent%-Type: text/plain; charset=utf%-8\r\n")
  t.ok(not text_reply:find("json", 1, true), "the text reply is not typed as JSON: " .. text_reply)
  t.match(text_reply, "\r\nCache%-Control: no%-store\r\n")
  local n = 0
  for k, v in pairs(SHARED) do n = n + 1 end
  t.eq(n, 1, "the handler's table still has its one field")
  -- every element of a list, numbers and booleans as text, the handler's own
  -- Content-Type (any case) and no second one, sorted; what would break
  -- the head or the framing is dropped
  local fields = many:match("\r\n(.-)\r\n\r\n")
  t.match(fields, "Set%-Cookie: a=1\r\nSet%-Cookie: b=2\r\n")
  t.match(fields, "\r\nX%-Yes: true\r\n")
  t.match(fields, "\r\nx%-num: 42")
  t.match(fields, "content%-TYPE: text/x%-mine\r\n")
  t.eq(select(2, fields:lower():gsub("content%-type", "")), 1, fields)
  t.ok(not fields:find("Token", 1, true) and not fields:find("Injected", 1, true) and
    not fields:find("then", 1, true), fields)
  -- the handler's lines, in byte order, and the default type sorted in
  -- with them when they name none
  local function handlers_lines(reply)
    local mine = {}
    for line in reply:match("\r\n(.-)\r\n\r\n"):gmatch("[^\r\n]+") do
      if not line:find("^Content%-Length") and not line:find("^Date") and not line:find("^Connection") then
        mine[#mine + 1] = line
      end
    end
    return table.concat(mine, "|")
  end
  t.eq(handlers_lines(many), "Set-Cookie: a=1|Set-Cookie: b=2|X-Yes: true|content-TYPE: text/x-mine|x-num: 42")
  t.eq(handlers_lines(text_reply), "Cache-Control: no-store|Content-Type: text/plain; charset=utf-8")
  t.eq(handlers_lines(json_reply), "Cache-Control: no-store|Content-Type: application/json")
end)

t.test("a handler's invalid status or return is a 500, its framing headers are the server's", function()
  local srv = new_server()
  srv:route("GET", "/continue", function() return 100, "interim?" end)
  srv:route("GET", "/switch", function() return 101 end)
  srv:route("GET", "/fail", function() return nil, "body" end)
  srv:route("GET", "/float", function() return 200.5, "x" end)
  srv:route("GET", "/badheaders", function() return 200, "x", "not a table" end)
  srv:route("GET", "/te", function()
    return 200, "plain", {["Transfer-Encoding"] = "chunked", ["content-length"] = "99", Connection = "close"}
  end)
  srv:route("GET", "/float-ok", function() return 201.0, "x" end)
  local log, got = t.capture_stderr(serve_while, srv, function()
    local out = {}
    for _, path in ipairs{"/continue", "/switch", "/fail", "/float", "/badheaders", "/te", "/float-ok"} do
      out[path] = exchange(srv, "GET " .. path .. " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    end
    return out
  end)
  local function logged(path, what)
    t.match(log, "netlua http%.server: error in handler for GET " .. path .. ": the handler returned " .. what)
  end
  logged("/continue", "status 100 ")
  logged("/switch", "status 101 ")
  logged("/fail", "nil, body %(a failure%)")
  logged("/float", "status 200%.5 ")
  logged("/badheaders", "headers of type string")
  local _, lines = log:gsub("\n", "")
  t.eq(lines, 5, log)
  t.match(got["/continue"], "^HTTP/1.1 500 Internal Server Error\r\n", "1xx is not a final status")
  t.match(got["/switch"], "^HTTP/1.1 500 ")
  t.match(got["/fail"], "^HTTP/1.1 500 ", "nil, msg is a failure")
  t.match(got["/float"], "^HTTP/1.1 500 ")
  t.match(got["/badheaders"], "^HTTP/1.1 500 ")
  t.match(got["/te"], "^HTTP/1.1 200 ")
  t.ok(not got["/te"]:lower():find("transfer-encoding", 1, true), "no Transfer-Encoding next to Content-Length")
  t.match(got["/te"], "Content%-Length: 5\r\n")
  t.eq(select(2, got["/te"]:gsub("[Cc]ontent%-[Ll]ength", "")), 1)
  t.match(got["/float-ok"], "^HTTP/1.1 201 ")
  t.match(log, "error in handler for GET /continue: the handler returned status 100 %(a final status is an integer from 200 to 599%)\n")
  t.match(log, "error in handler for GET /switch: the handler returned status 101 ")
  t.match(log, "error in handler for GET /fail: the handler returned nil, body %(a failure%)\n")
  t.match(log, "error in handler for GET /float: the handler returned status 200%.5 ")
  t.match(log, "error in handler for GET /badheaders: the handler returned headers of type string %(a table expected%)\n")
  t.eq(select(2, log:gsub("\n", "")), 5, "one line each, none for the good replies")
end)

-- ---- static files, bounded ----------------------------------------------------

local function rss_kib()
  local f = assert(io.open("/proc/self/status"))
  local s = f:read("a")
  f:close()
  return tonumber(s:match("VmRSS:%s*(%d+)"))
end

local function make_big_file(dir, name, mib)
  local path = dir .. "/" .. name
  local f = assert(io.open(path, "wb"))
  local block = string.rep("0123456789abcdef", 65536) -- 1 MiB
  for _ = 1, mib do f:write(block) end
  f:close()
  return path
end

t.test("static files stream from disk: clients that do not read cost no memory", function()
  local dir = t.tmpdir()
  make_big_file(dir, "big.bin", 48)
  local srv = assert(http.server{port = 0})
  srv:static("/files", dir)
  local before, after, head
  serve_while(srv, function()
    collectgarbage()
    before = rss_kib()
    local clients = {}
    for i = 1, 6 do
      local c = assert(socket.connect("127.0.0.1", srv.port))
      c:setoption("tcp-nodelay", true)
      assert(c:send("GET /files/big.bin HTTP/1.1\r\nHost: x\r\n\r\n"))
      clients[i] = c
    end
    task.sleep(0.5) -- the server sends what the sockets take, then waits
    after = rss_kib()
    for _, c in ipairs(clients) do c:close() end
    local c = assert(socket.connect("127.0.0.1", srv.port))
    c:settimeout(10)
    assert(c:send("HEAD /files/big.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
    head = c:receive("*a")
    c:close()
  end)
  t.ok(after - before < 64 * 1024,
    string.format("6 readers of a 48 MiB file grew the server by %d KiB", after - before))
  t.match(head, "^HTTP/1.1 200 ")
  t.match(head, "Content%-Length: 50331648\r\n")
  t.match(head, "\r\n\r\n$", "HEAD: no body")
  t.rmtree(dir)
end)

t.test("static files: the whole file arrives intact, an empty one too, pipelined", function()
  local dir = t.tmpdir()
  local path = make_big_file(dir, "data.bin", 3)
  t.writefile(dir .. "/empty.txt", "")
  local srv = assert(http.server{port = 0})
  srv:static("/", dir)
  local got = serve_while(srv, function()
    local c = assert(socket.connect("127.0.0.1", srv.port))
    c:settimeout(10)
    assert(c:send("GET /data.bin HTTP/1.1\r\nHost: x\r\n\r\nGET /empty.txt HTTP/1.1\r\nHost: x\r\n\r\n"))
    local s1, h1, b1 = read_response(c)
    local s2, h2, b2 = read_response(c)
    c:close()
    return {s1, h1, b1, s2, h2, b2}
  end)
  t.eq(got[1], "HTTP/1.1 200 OK")
  t.eq(#got[3], 3 * 1048576)
  t.ok(got[3] == t.readfile(path), "the bytes are the file's")
  t.eq(got[2]["content-type"], "application/octet-stream")
  t.eq(got[4], "HTTP/1.1 200 OK")
  t.eq(got[5]["content-length"], "0")
  t.eq(got[6], "")
  t.rmtree(dir)
end)

t.test("send_timeout bounds a stall, not a slow steady reader", function()
  local dir = t.tmpdir()
  make_big_file(dir, "big.bin", 20)
  local srv = assert(http.server{port = 0, send_timeout = 1})
  srv:static("/", dir)
  local total, stalled = serve_while(srv, function()
    local c = assert(socket.connect("127.0.0.1", srv.port))
    c:settimeout(10)
    assert(c:send("GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n"))
    repeat local line = c:receive("*l") until line == ""
    local got = 0
    -- About 5 MB/s: the reply takes several send_timeouts in all.
    while got < 20 * 1048576 do
      local piece, err, partial = c:receive(math.min(262144, 20 * 1048576 - got))
      piece = piece or partial
      if err and #piece == 0 then break end
      got = got + #piece
      task.sleep(0.05)
    end
    -- A reader that stops is cut off after send_timeout.
    assert(c:send("GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n"))
    task.sleep(2)
    -- The server gave up at its send_timeout: what it had sent arrives,
    -- then the end ("*a" returns once the peer has closed).
    c:settimeout(10)
    local rest, err = c:receive("*a")
    c:close()
    return got, rest and "closed" or err
  end)
  t.eq(total, 20 * 1048576, "every byte arrived")
  t.eq(stalled, "closed", "a stalled reader is dropped")
  t.rmtree(dir)
end)

-- ---- lingering close ----------------------------------------------------------

-- The head of a request whose body is far past max_body, then `n` bytes of
-- that body at once, before reading: they are surely unread on the server
-- when it answers 413 and closes.
local function over_limit(c, n)
  assert(c:send("POST /headers HTTP/1.1\r\nHost: x\r\nContent-Length: 50000000\r\n\r\n"))
  return c:send(string.rep("b", n))
end

-- Sends `total` bytes in 32 KiB pieces, or until a send fails, as a client
-- still uploading after the reply came: the bytes sent and the error. A
-- server that closed with bytes unread has reset the connection by then.
local function send_on(c, total)
  local piece, sent = string.rep("b", 32768), 0
  while sent < total do
    local n, err = c:send(piece, 1, math.min(#piece, total - sent))
    if not n then return sent, err end
    sent = sent + n
  end
  return sent
end

t.test("a body past max_body: the 413 arrives whole, the client may go on sending", function()
  local srv = new_server{port = 0, max_body = 1000, linger = 60}
  local got = serve_while(srv, function()
    local out = {}
    for i = 1, 5 do
      local c = assert(socket.connect("127.0.0.1", srv.port))
      c:settimeout(10)
      local r = {}
      r.first = over_limit(c, 300000)
      r.status, r.headers, r.body = read_response(c)
      r.sent, r.err = send_on(c, 600000)
      c:shutdown("send")
      local rest, rerr, partial = c:receive("*a") -- "closed" when nothing came
      r.rest, r.rerr = rest or partial, rerr
      c:close()
      out[i] = r
    end
    return out
  end)
  for i, r in ipairs(got) do
    t.eq(r.first, 300000, "sent before reading (" .. i .. ")")
    t.match(r.status, "^HTTP/1.1 413 ")
    t.eq(r.headers.connection, "close")
    t.eq(r.body, "request body too large\n")
    t.eq(r.sent, 600000, "sending after the reply was not reset (" .. i .. "): " .. tostring(r.err))
    t.eq(r.rest, "", "nothing more (" .. i .. ")")
    t.ok(r.rerr == nil or r.rerr == "closed", "then EOF, not a reset (" .. i .. "): " .. tostring(r.rerr))
  end
end)

t.test("bytes pipelined after a Connection: close request do not reset its reply", function()
  local srv = new_server{port = 0, linger = 60}
  srv:route("GET", "/", function() return "hi" end)
  local status, body, sent, err = serve_while(srv, function()
    local c = assert(socket.connect("127.0.0.1", srv.port))
    c:settimeout(10)
    assert(c:send("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" .. string.rep("j", 300000)))
    local st, _, b = read_response(c)
    local n, e = send_on(c, 600000)
    c:close()
    return st, b, n, e
  end)
  t.eq(status, "HTTP/1.1 200 OK")
  t.eq(body, "hi")
  t.eq(sent, 600000, "sending after the reply was not reset: " .. tostring(err))
end)

t.test("lingering is bounded: a client that never stops sending is cut off, others are served", function()
  local srv = new_server{port = 0, max_body = 1000, linger = 60}
  srv:route("GET", "/", function() return "hi" end)
  local status, lingered, other, sent, err = serve_while(srv, function()
    local c = assert(socket.connect("127.0.0.1", srv.port))
    c:settimeout(10)
    assert(over_limit(c, 100000))
    local st = read_response(c)
    local n = send_on(c, 300000) -- the server reads on, it has not closed
    -- Another client is served meanwhile.
    local d = assert(socket.connect("127.0.0.1", srv.port))
    d:settimeout(10)
    assert(d:send("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
    local second = assert(d:receive("*a"))
    d:close()
    -- Sending on and on: past the bound (1 MiB) the server closes.
    local total, e = send_on(c, 1e9)
    c:close()
    return st, n, second, total, e
  end)
  t.match(status, "^HTTP/1.1 413 ")
  t.eq(lingered, 300000, "the server read on after its reply")
  t.match(other, "^HTTP/1.1 200 .*hi$")
  t.ok(sent < 1e9, "the server cut the sender off after " .. sent .. " bytes")
  t.ok(err == "closed" or err == "connection reset by peer", "the send failed: " .. tostring(err))
end)

t.test("lingering is bounded in time: a client that neither sends nor closes is closed", function()
  local srv = new_server{port = 0, max_body = 1000, linger = 0.5}
  local reply, left = serve_while(srv, function()
    local c = assert(socket.connect("127.0.0.1", srv.port))
    c:settimeout(10)
    assert(over_limit(c, 100000))
    local data = assert(c:receive("*a"))
    -- The client keeps its end open; the server's closes at `linger`
    -- (waited for up to 30 s, half of serve_while's time: its end would
    -- close the connection too).
    for _ = 1, 300 do
      if srv:connections() == 0 then break end
      task.sleep(0.1)
    end
    local n = srv:connections()
    c:close()
    return data, n
  end)
  t.match(reply, "^HTTP/1.1 413 ")
  t.eq(left, 0, "the lingering connection closed")
end)

t.test("a lingering connection is the first shed when every slot is taken", function()
  local srv = new_server{port = 0, max_body = 1000, linger = 600, max_connections = 1}
  srv:route("GET", "/", function() return "hi" end)
  local status, other = serve_while(srv, function()
    local c = assert(socket.connect("127.0.0.1", srv.port))
    c:settimeout(30)
    assert(over_limit(c, 100000))
    local st = read_response(c) -- it lingers now, holding the one slot
    local d = assert(socket.connect("127.0.0.1", srv.port))
    d:settimeout(30)
    assert(d:send("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
    local second, err = d:receive("*a")
    d:close()
    c:close()
    return st, second or err
  end)
  t.match(status, "^HTTP/1.1 413 ")
  t.match(other, "^HTTP/1.1 200 .*hi$", "the new client got the slot")
end)

t.test("linger option: a non-negative number", function()
  t.raises("linger' must be a number", http.server, {port = 0, linger = "2"})
  t.raises("linger' must be a non-negative number", http.server, {port = 0, linger = -1})
end)

-- ---- connection pressure ------------------------------------------------------

t.test("slowloris: clients trickling requests do not keep others out", function()
  local srv = assert(http.server{port = 0, max_connections = 20, request_timeout = 30})
  srv:route("GET", "/", function() return "hi" end)
  local answered, probes = serve_while(srv, function()
    local running = true
    -- 40 attackers: each sends a byte of a request every 0.2 s, and
    -- reconnects when the server drops it.
    for _ = 1, 40 do
      task.spawn(function()
        local req = "GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " .. string.rep("a", 1000)
        while running do
          local c = socket.connect("127.0.0.1", srv.port)
          if c then
            c:settimeout(1)
            local i = 1
            while running and i <= #req and c:send(req:sub(i, i)) do
              i = i + 1
              task.sleep(0.2)
            end
            c:close()
          else
            task.sleep(0.1)
          end
        end
      end)
    end
    task.sleep(1.5) -- the attackers hold every slot
    local ok, n = 0, 10
    for _ = 1, n do
      local c = assert(socket.connect("127.0.0.1", srv.port))
      c:settimeout(10)
      c:send("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
      local status = c:receive("*l")
      if status == "HTTP/1.1 200 OK" then ok = ok + 1 end
      c:close()
    end
    running = false
    task.sleep(0.5)
    return ok, n
  end)
  t.eq(answered, probes, "every well-behaved client was answered")
end)
t.done()
