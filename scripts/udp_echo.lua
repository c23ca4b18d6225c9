-- udp_echo.lua: a UDP echo server and its client, on luasocket's API.
--   netlua scripts/udp_echo.lua server [host [port]] [--count N]
--   netlua scripts/udp_echo.lua client [host [port]] [message]
-- host defaults to 127.0.0.1, port to 9999 (server: 0 picks a free one);
-- the server echoes each datagram back to its sender (--count N: exit after
-- N datagrams); the client sends `message` (default "hello") and prints the
-- reply, retrying three times, one second apart.
local socket = require "socket"

local function where(h, p)
  if tostring(h):find(":", 1, true) then return string.format("[%s]:%s", h, p) end
  return string.format("%s:%s", h, p)
end

local function fail(fmt, ...)
  io.stderr:write("netlua: ", string.format(fmt, ...), "\n")
  os.exit(1)
end

local function new_udp(host)
  if host:find(":", 1, true) then return socket.udp6() end
  return socket.udp4()
end

local function server(host, port, count)
  local sock = assert(new_udp(host))
  local ok, err = sock:setsockname(host, port)
  if not ok then fail("cannot listen on %s (udp): %s", where(host, port), err) end
  local ip, p = sock:getsockname()
  print(string.format("listening on %s (udp)", where(ip, p)))
  local served = 0
  while not count or served < count do
    local data, from, fport = sock:receivefrom(65535) -- the default 8192 cut big datagrams
    if data then
      print(string.format("%d bytes from %s, echoed", #data, where(from, fport)))
      sock:sendto(data, from, fport)
      served = served + 1
    end
  end
  sock:close()
end

local function client(host, port, message)
  local sock = assert(new_udp(host))
  local ok, err = sock:setpeername(host, port)
  if not ok then fail("cannot reach %s (udp): %s", where(host, port), err) end
  sock:settimeout(1)
  for _ = 1, 3 do
    sock:send(message)
    local reply, rerr = sock:receive(65535)
    if reply then
      print(string.format("reply from %s: %s", where(host, port), reply))
      return
    end
    err = rerr
    if rerr ~= "timeout" then break end
  end
  fail("no reply from %s (udp): %s", where(host, port), err)
end

io.stdout:setvbuf("line")
local args, pos, count = {...}, {}, nil
local i = 1
while i <= #args do
  if args[i] == "--count" then count = tonumber(args[i + 1]); i = i + 1
  else pos[#pos + 1] = args[i] end
  i = i + 1
end
local mode, host, port = pos[1], pos[2] or "127.0.0.1", tonumber(pos[3] or 9999)
if mode == "server" then
  server(host, port, count)
elseif mode == "client" then
  client(host, port, pos[4] or "hello")
else
  io.stderr:write("usage: netlua scripts/udp_echo.lua server|client [host [port]] [--count N | message]\n")
  os.exit(2)
end
