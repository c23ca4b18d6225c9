-- test_ssl_duplex.lua: one TLS connection used by several tasks at once,
-- as a WebSocket over TLS does (one task receives while another sends):
-- against Python's ssl echo server (lines back, upper-cased).
local t = require "testlib"
local tls = require "tlslib"
local ssl = require "ssl"
local task = require "task"

local missing = tls.missing()
if missing then
  t.skip("ssl duplex tests", missing)
  t.done()
end

local C = tls.certs()

-- A connection to a fresh Python echo server, and the server's process.
local function echo_conn()
  local port, proc = tls.python_server{cert = C.server.cert, key = C.server.key, mode = "echo"}
  local conn = assert(ssl.connect("localhost", port, {cafile = C.ca.cert, timeout = 20}))
  return conn, proc
end

local function line(i, width)
  local head = string.format("line %d ", i)
  return head .. string.rep("x", (width or 0) - #head)
end

t.test("a task blocked in receive while another task sends on the same connection", function()
  local conn, proc = echo_conn()
  local got = {}
  local reader = task.spawn(function()
    for i = 1, 20 do got[i] = assert(conn:receive("*l")) end
  end)
  local writer = task.spawn(function()
    for i = 1, 20 do
      assert(conn:send(line(i) .. "\n"))
      task.sleep(0.01) -- the reader is waiting in receive each time
    end
  end)
  assert(writer:join())
  assert(reader:join())
  for i = 1, 20 do t.eq(got[i], line(i):upper()) end
  conn:close()
  tls.finish(proc)
end)

t.test("both directions at once, more than the socket buffers hold", function()
  -- 4 MB each way: the peer stops reading while its replies are unread, so
  -- the writer blocks until the reader, waiting at the same time, reads.
  local conn, proc = echo_conn()
  local n, width = 4000, 1000
  local bad, count = nil, 0
  local reader = task.spawn(function()
    for i = 1, n do
      local l = assert(conn:receive("*l"))
      if l ~= line(i, width):upper() and not bad then bad = i end
      count = count + 1
    end
  end)
  local writer = task.spawn(function()
    for i = 1, n do assert(conn:send(line(i, width) .. "\n")) end
  end)
  assert(writer:join())
  assert(reader:join())
  t.eq(count, n)
  t.eq(bad, nil, "first wrong line")
  conn:close()
  tls.finish(proc)
end)

-- A peer that sends each line in two halves, a pause between them, then
-- closes: a receive waits half-way through each line, and the other
-- receiver must not take the second half.
local HALVES = [=[
import socket, ssl, sys, time
cert, key, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(1)
print("port", srv.getsockname()[1], flush=True)
raw, _ = srv.accept()
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain(cert, key)
c = ctx.wrap_socket(raw, server_side=True)
for i in range(1, n + 1):
    c.sendall(b"line %d first half, " % i); time.sleep(0.05)
    c.sendall(b"second half\n"); time.sleep(0.05)
c.unwrap(); c.close()
]=]

t.test("two tasks receiving on one connection never split a line between them", function()
  local n = 6
  local port, proc = tls.spawn(tls.PYTHON .. " -c " .. t.shellquote(HALVES) .. " "
    .. t.shellquote(C.server.cert) .. " " .. t.shellquote(C.server.key) .. " " .. n, "port (%d+)")
  local conn = assert(ssl.connect("localhost", tonumber(port), {cafile = C.ca.cert, timeout = 20}))
  local lines, ends = {}, {}
  local function receive_all()
    while true do
      local l, err, partial = conn:receive("*l")
      if not l then
        ends[#ends + 1] = err .. "/" .. partial
        return
      end
      lines[#lines + 1] = l
    end
  end
  local a, b = task.spawn(receive_all), task.spawn(receive_all)
  a:join()
  b:join()
  t.eq(#lines, n, table.concat(lines, "|"))
  for i = 1, n do t.eq(lines[i], "line " .. i .. " first half, second half") end
  t.eq(table.concat(ends, " "), "closed/ closed/")
  conn:close()
  tls.finish(proc)
end)

t.test("a receiver cancelled half-way lets the next one go on; close ends those waiting", function()
  local conn, proc = echo_conn()
  local a = task.spawn(function() return conn:receive("*l") end) -- holds the read side
  local b = task.spawn(function() return conn:receive("*l") end) -- waits for its turn
  local c = task.spawn(function() return conn:receive("*l") end)
  task.sleep(0.1)
  t.eq(a:cancel(), true)
  assert(conn:send("after\n"))
  t.eq(select(2, b:join()), "AFTER")
  conn:close()
  t.eq(select(3, c:join()), "closed")
  tls.finish(proc)
end)

-- Sends bigger than the socket buffers, so each waits half-way: the
-- other sender must not slip its bytes into the middle (nor hand OpenSSL
-- other data to retry a blocked write with).
t.test("two tasks sending on one connection take turns, each message whole", function()
  local conn, proc = echo_conn()
  local n, width = 6, 1000000
  local lines = {}
  local reader = task.spawn(function()
    for i = 1, n do lines[i] = assert(conn:receive("*l")) end
  end)
  local function send_some(first)
    for i = first, n, 2 do assert(conn:send(line(i, width) .. "\n")) end
  end
  local a, b = task.spawn(send_some, 1), task.spawn(send_some, 2)
  assert(a:join())
  assert(b:join())
  assert(reader:join())
  local seen = {}
  for _, l in ipairs(lines) do
    local i = tonumber(l:match("^LINE (%d+) "))
    t.ok(i and l == line(i, width):upper(), "a whole line")
    seen[i] = true
  end
  for i = 1, n do t.ok(seen[i], "line " .. i) end
  conn:close()
  tls.finish(proc)
end)

t.done()
