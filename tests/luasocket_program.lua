-- luasocket_program.lua: a program written for luasocket 3.0, following its
-- documentation only (no netlua extras). test_socket_compat.lua runs it
-- under netlua and, when installed, under lua5.4 with the real luasocket,
-- and compares the output. Prints nothing that varies between runs.
local socket = require("socket")

local function show(...)
  local t = table.pack(...)
  for i = 1, t.n do
    local v = t[i]
    if type(v) == "userdata" then v = tostring(v):match("^[^:]+") end
    if type(v) == "table" then v = "table" end
    t[i] = tostring(v)
  end
  print(table.concat(t, " ", 1, t.n))
end

local function free_port()
  local s = socket.tcp()
  s:bind("127.0.0.1", 0)
  local _, port = s:getsockname()
  s:close()
  return port
end

-- tcp: a little HTTP-ish exchange
local server = assert(socket.bind("127.0.0.1", 0))
local ip, port = server:getsockname()
show("server", server.class, ip, math.type(port), server:getfamily())
server:settimeout(0.05)
show("accept timeout", server:accept())
local client = assert(socket.connect(ip, port))
local conn = assert(server:accept())
show("classes", client.class, conn.class, client, conn)
show("peer", conn:getpeername() == client:getsockname())
show("send", client:send("GET / HTTP/1.0\r\nHost: x\r\n\r\nbody-bytes"))
conn:settimeout(0.05)
repeat
  local line = conn:receive("*l")
  show("line", line, #line)
until line == ""
show("count", conn:receive(4))
show("partial", conn:receive(100))
show("prefix", conn:receive(3, "pre"))
show("select none", #(socket.select({conn}, nil, 0)), select(3, socket.select({conn}, nil, 0)))
show("send slice", client:send("0123456789more\n", 11))
local r, w = socket.select({conn}, {client}, 1)
show("select", #r, r[1] == conn, r[conn], #w, w[client])
show("line2", conn:receive())
show("dirty", conn:dirty())
show("stats", (conn:getstats()))
show("nodelay", conn:setoption("tcp-nodelay", true), conn:getoption("tcp-nodelay"))
show("keepalive", conn:setoption("keepalive", true), conn:getoption("keepalive"))
show("linger", conn:setoption("linger", {on = true, timeout = 2}), conn:getoption("linger").timeout)
show("reuseaddr", server:getoption("reuseaddr"))
show("shutdown", client:shutdown("send"))
show("after close", conn:receive("*a"))
show("again", conn:receive())
show("close", conn:close(), client:close(), conn:close())
show("closed", conn:receive())
show("closed send", client:send("x"))

-- errors, as programs compare them
local dead = free_port()
show("refused", socket.connect("127.0.0.1", dead))
show("in use", socket.bind("127.0.0.1", port))
local m = socket.tcp()
show("in use 2", m:bind("127.0.0.1", port))
m:close()
server:close()

-- try / protect
local fetch = socket.protect(function(host, p)
  local c = socket.try(socket.connect(host, p))
  return "never here", c
end)
show("protect", fetch("127.0.0.1", dead))
show("skip", socket.skip(2, "a", "b", "c", "d"))

-- udp
local u1, u2 = socket.udp(), socket.udp()
show("udp class", u1.class)
show("udp bind", u1:setsockname("127.0.0.1", 0), u2:setsockname("127.0.0.1", 0))
local ip2, port2 = u2:getsockname()
show("sendto", u1:sendto("datagram\0bytes", ip2, port2))
u2:settimeout(1)
local data, fromip, fromport = u2:receivefrom()
show("receivefrom", data, #data, fromip, fromport == select(2, u1:getsockname()))
u2:settimeout(0.02)
show("udp timeout", u2:receive())
show("setpeername", u1:setpeername(ip2, port2), u1.class)
show("send", u1:send("x"))
show("receive", u2:receive())
show("unconnect", u1:setpeername("*"), u1.class)
u1:close()
u2:close()

-- dns and friends
local addr = socket.dns.toip("localhost")
show("toip", addr)
show("toip bad", socket.dns.toip("no-such-host.invalid"))
show("getaddrinfo", socket.dns.getaddrinfo("127.0.0.1")[1].family, socket.dns.getaddrinfo("127.0.0.1")[1].addr)
show("gettime", math.type(socket.gettime()))
show("tcp6", socket.tcp6():getfamily())
show("bad pattern", pcall(socket.tcp().receive, socket.tcp(), "*x"))

-- unix-domain stream sockets (luasocket's socket.unix)
local unix = require("socket.unix")
local path = os.tmpname()
os.remove(path)
local us = unix()
show("unix", us.class, us:bind(path), us:listen(), us.class)
local uc = unix()
show("unix connect", uc:connect(path), uc.class)
local ua = us:accept()
show("unix accept", ua.class)
show("unix send", uc:send("unix line\r\n"))
show("unix receive", ua:receive())
show("unix getsockname", us:getsockname() == path)
show("unix close", uc:close(), ua:close(), us:close())
os.remove(path)

-- sources and sinks
local ls = assert(socket.bind("127.0.0.1", 0))
local lip, lport = ls:getsockname()
local sc = assert(socket.connect(lip, lport))
local sp = assert(ls:accept())
local sink = socket.sink("close-when-done", sc)
show("sink", sink("abc"), sink("def"), sink(nil))
local src = socket.source("until-closed", sp)
show("source", src(), src(), src())
ls:close()
