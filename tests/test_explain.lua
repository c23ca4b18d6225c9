-- test_explain.lua: errors that explain themselves. Each case provokes the
-- real condition (a refused port, a port a real python3 process holds, a
-- real TIME_WAIT, a privileged port bound by a non-root user, a name no
-- resolver knows, real timeouts, a peer that closed) and checks that the
-- call still returns luasocket's values with the explanation after them.
local t = require "testlib"
local socket = require "socket"

local function q(s) return t.shellquote(s) end

-- The values as one string ("nil|timeout|"), to compare a call's results.
local function vals(...)
  local p = table.pack(...)
  for i = 1, p.n do p[i] = tostring(p[i]) end
  return table.concat(p, "|", 1, p.n)
end

t.test("connection refused: nil, luasocket's message, the address tried", function()
  local port = t.closed_port()
  local c = socket.tcp()
  local ok, err, why = c:connect("127.0.0.1", port)
  t.eq(ok, nil)
  t.eq(err, "connection refused")
  t.eq(why, "nothing is listening on 127.0.0.1:" .. port .. "; is the server running, and on this port?")
  c:close()
  local s, err2, why2 = socket.connect("127.0.0.1", port)
  t.eq(vals(s, err2, why2), vals(nil, "connection refused", why))
end)

t.test("connection refused to a name: what the name became, ::1 first when it was", function()
  local sh, dir = t.private_etc({
    ["nsswitch.conf"] = "hosts: files\n",
    hosts = "::1 localhost\n127.0.0.1 localhost\n",
  })
  if not sh then return t.skip("localhost to ::1 first", dir) end
  local port = t.closed_port()
  local out, err = sh(q(t.NETLUA) .. " -e " .. q(string.format(
    "print(select(3, require('socket').connect('localhost', %d)))", port)))
  t.rmtree(dir)
  t.eq(out, "nothing is listening on localhost port " .. port .. ": tried [::1]:" .. port ..
    " (refused), then 127.0.0.1:" .. port .. " (refused); 'localhost' went to ::1 first " ..
    "(IPv6); is the server running, and on this port?\n", err)
end)

-- A real /usr/bin/python3 listening on 127.0.0.1 (port 0): its pid, its
-- port, and a function that stops it.
local function python_listener()
  local p = io.popen("exec /usr/bin/python3 -c " .. q([[
import os, socket, sys
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen()
print(os.getpid(), s.getsockname()[1], flush=True)
sys.stdin.read()
]]) .. " < /dev/zero", "r")
  local line = p:read("l")
  local pid, port = line:match("^(%d+) (%d+)$")
  return tonumber(pid), tonumber(port), function()
    os.execute("kill " .. pid)
    p:close()
  end
end

t.test("address already in use: the process that holds the port", function()
  if not t.have("/usr/bin/python3") then return t.skip("port holder", "no /usr/bin/python3") end
  local pid, port, stop = python_listener()
  local s = socket.tcp()
  local ok, err, why = s:bind("127.0.0.1", port)
  s:close()
  local srv, err2, why2 = socket.bind("127.0.0.1", port)
  stop()
  t.eq(ok, nil)
  t.eq(err, "address already in use")
  t.eq(why, "port " .. port .. " is held by process " .. pid .. " (python3): stop it, or use " ..
    "another port (0 lets the system pick a free one)")
  t.eq(vals(srv, err2, why2), vals(nil, err, why), "socket.bind passes it on")
end)

t.test("address already in use: a port of this very program", function()
  local srv, port = t.listener()
  local s = socket.tcp()
  local _, err, why = s:bind("127.0.0.1", port)
  s:close()
  srv:close()
  t.eq(err, "address already in use")
  t.match(why, "^this program itself already holds port " .. port)
end)

t.test("address already in use: only TIME_WAIT, and the reuseaddr hint works", function()
  local srv, port = t.listener()
  local c = assert(socket.connect("127.0.0.1", port))
  local a = assert(srv:accept())
  a:close() -- this side closes first: its port goes to TIME_WAIT
  c:settimeout(5)
  t.eq(select(2, c:receive()), "closed")
  c:close()
  srv:close()
  local s = socket.tcp()
  local ok, err, why = s:bind("127.0.0.1", port)
  s:close()
  t.eq(ok, nil)
  t.eq(err, "address already in use")
  t.match(why, "^port " .. port .. " is in TIME_WAIT: a connection on it closed moments ago")
  t.match(why, "sock:setoption%('reuseaddr', true%) before bind", why)
  local again = socket.tcp()
  again:setoption("reuseaddr", true)
  t.eq(again:bind("127.0.0.1", port), 1, "with reuseaddr the bind works")
  again:close()
end)

t.test("permission denied below the first unprivileged port, as a non-root user", function()
  local start = tonumber(t.readfile("/proc/sys/net/ipv4/ip_unprivileged_port_start") or "1024")
  if start <= 80 then return t.skip("privileged port", "ip_unprivileged_port_start is " .. start) end
  local code = string.format("local s = require('socket').tcp(); print(s:bind('127.0.0.1', %d))", start - 1)
  local cmd = q(t.NETLUA) .. " -e " .. q(code)
  local uid = io.popen("id -u"):read("l")
  if uid == "0" then
    if not t.have("setpriv") then return t.skip("privileged port", "root, and no setpriv to drop it") end
    cmd = "setpriv --reuid=65534 --regid=65534 --clear-groups " .. cmd
  end
  local out, err = t.sh(cmd)
  t.eq(out, "nil\tpermission denied\tports below " .. start .. " are reserved for root (or a " ..
    "program with CAP_NET_BIND_SERVICE): use a port from " .. start .. " up, such as 8080, " ..
    "or 0 to let the system pick one\n", err)
end)

t.test("host not found: the name, and a typo of localhost", function()
  local sh, dir = t.private_etc({["nsswitch.conf"] = "hosts: files\n", hosts = "127.0.0.1 localhost\n"})
  if not sh then return t.skip("host not found", dir) end
  local out, err = sh(q(t.NETLUA) .. " -e " .. q([[
    local socket = require "socket"
    print(socket.connect("locahost", 80))
    print(socket.tcp():connect("nosuch.invalid", 80))
    print(socket.dns.toip("lcoalhost"))
  ]]))
  t.rmtree(dir)
  t.eq(out,
    "nil\thost or service not provided, or not known\tno address was found for the name " ..
    "'locahost': did you mean 'localhost'?\n" ..
    "nil\thost or service not provided, or not known\tno address was found for the name " ..
    "'nosuch.invalid': check its spelling, or use an address such as 127.0.0.1\n" ..
    "nil\thost not found\tno address was found for the name 'lcoalhost': did you mean 'localhost'?\n", err)
end)

t.test("timeout while reading names the phase, the peer and the timeout", function()
  local c, s = t.tcp_pair()
  local _, sport = s:getsockname()
  c:settimeout(0.1)
  local data, err, partial, why = c:receive()
  t.eq(vals(data, err, partial), "nil|timeout|")
  t.eq(why, "nothing came from 127.0.0.1:" .. sport .. " within the timeout of 0.1 s (phase: " ..
    "read): it has not sent (more) yet; is it waiting for you to send first, or for a line end (\\n)?")
  c:settimeout(0) -- a poll: "timeout" is its normal answer, not explained
  t.eq(select("#", c:receive()), 3)
  c:close()
  s:close()
end)

t.test("timeout while writing and while accepting", function()
  local c, s = t.tcp_pair()
  c:settimeout(0.1)
  local chunk = string.rep("x", 1 << 20)
  local ok, err, last, why
  for _ = 1, 256 do -- the peer never reads: the buffers fill up
    ok, err, last, why = c:send(chunk)
    if not ok then break end
  end
  t.eq(err, "timeout")
  t.match(why, "^127%.0%.0%.1:%d+ did not take the data within the timeout of 0%.1 s %(phase: write%)")
  c:close()
  s:close()
  local srv, port = t.listener()
  srv:settimeout(0.05)
  local cl, aerr, awhy = srv:accept()
  srv:close()
  t.eq(vals(cl, aerr), "nil|timeout")
  t.eq(awhy, "no client connected to 127.0.0.1:" .. port .. " within the timeout of 0.05 s (phase: accept)")
end)

t.test("timeout while connecting: a server whose backlog is full", function()
  local srv = assert(socket.bind("127.0.0.1", 0, 0)) -- never accepts
  local _, port = srv:getsockname()
  local held, err, why = {}
  for _ = 1, 8 do -- the kernel drops SYNs once the accept queue is full
    local c = socket.tcp()
    c:settimeout(0.3)
    local ok
    ok, err, why = c:connect("127.0.0.1", port)
    held[#held + 1] = c
    if not ok then break end
  end
  for _, c in ipairs(held) do c:close() end
  srv:close()
  t.eq(err, "timeout")
  t.eq(why, "connecting to 127.0.0.1:" .. port .. " got no answer within the timeout (phase: " ..
    "connect); the server may be too busy to accept (its backlog full), or a firewall drops the packets")
end)

t.test("a send to a peer that closed: the other side closed the connection", function()
  local c, s = t.tcp_pair()
  local _, sport = s:getsockname()
  s:close()
  local ok, err, last, why
  for _ = 1, 50 do -- the first send may still go out; the peer's RST ends the next
    ok, err, last, why = c:send("hello\n")
    if not ok then break end
    socket.sleep(0.01)
  end
  c:close()
  t.eq(vals(ok, err, last), "nil|closed|0.0")
  t.match(why, "^the other side %(127%.0%.0%.1:" .. sport .. "%) closed the connection")
end)

t.test("NETLUA_EXPLAIN=0: only luasocket's values", function()
  local port = t.closed_port()
  local out, err = t.sh("NETLUA_EXPLAIN=0 " .. q(t.NETLUA) .. " -e " ..
    q(string.format("print(select('#', require('socket').tcp():connect('127.0.0.1', %d)))", port)))
  t.eq(out, "2\n", err)
end)

t.test("the trace shows the explanation", function()
  local port = t.closed_port()
  local out, err = t.sh(q(t.NETLUA) .. " --trace=jsonl -e " ..
    q(string.format("require('socket').connect('127.0.0.1', %d)", port)))
  local line = (err or ""):match('[^\n]*"explain"[^\n]*')
  t.ok(line, "an explain event: " .. tostring(err))
  t.match(line, '"why":"nothing is listening on 127%.0%.0%.1:' .. port .. ';', line)
end)

t.done()
