-- udp_echo.lua: a UDP echo server and its client, on luasocket's API.
--   netlua scripts/udp_echo.lua server [host [port]] [--count N]
--   netlua scripts/udp_echo.lua client [host [port]] [message]
-- host defaults to 127.0.0.1, port to 9999 (server: 0 picks a free one);
-- the server echoes each datagram back to its sender (--count N: exit after
-- N datagrams); the client sends `message` (default "hello") and prints the
-- reply, retrying three times, one second apart.
local socket = require "socket"
local cli = require "cli"

local function new_udp(host)
  if host:find(":", 1, true) then return socket.udp6() end
  return socket.udp4()
end

local function server(host, port, count)
  local sock = assert(new_udp(host))
  local ok, err = sock:setsockname(host, port)
  if not ok then cli.fail("cannot listen on %s (udp): %s", cli.where(host, port), err) end
  local ip, p = sock:getsockname()
  print(string.format("listening on %s (udp)", cli.where(ip, p)))
  local served = 0
  while not count or served < count do
    local data, from, fport = sock:receivefrom(65535) -- the default 8192 cut big datagrams
    if data then
      print(string.format("%d bytes from %s, echoed", #data, cli.where(from, fport)))
      sock:sendto(data, from, fport)
      served = served + 1
    end
  end
  sock:close()
end

local function client(host, port, message)
  local sock = assert(new_udp(host))
  local ok, err = sock:setpeername(host, port)
  if not ok then cli.fail("cannot reach %s (udp): %s", cli.where(host, port), err) end
  sock:settimeout(1)
  for _ = 1, 3 do
    sock:send(message)
    local reply, rerr = sock:receive(65535)
    if reply then
      print(string.format("reply from %s: %s", cli.where(host, port), reply))
      return
    end
    err = rerr
    if rerr ~= "timeout" then break end
  end
  cli.fail("no reply from %s (udp): %s", cli.where(host, port), err)
end

local USAGE = "netlua scripts/udp_echo.lua server [host [port]] [--count N]\n" ..
  "       netlua scripts/udp_echo.lua client [host [port]] [message]"
local HELP = "A UDP echo server and its client.\n\n" ..
  "  server      echoes each datagram back to its sender\n" ..
  "  client      sends `message` (default \"hello\") and prints the reply; tries\n" ..
  "              three times, one second apart\n" ..
  "  host        the address to listen on or send to (default 127.0.0.1)\n" ..
  "  port        the port (default 9999; the server's 0 picks a free one)\n" ..
  "  --count N   the server stops after N datagrams\n"

local specs = {
  server = {usage = USAGE, help = HELP, options = {count = {"count", false}},
    args = {{"host", "host", "127.0.0.1"}, {"port", "port", 9999}}},
  client = {usage = USAGE, help = HELP,
    args = {{"host", "host", "127.0.0.1"}, {"port", "peer_port", 9999}, {"message", "text", "hello"}}},
}

local args = {...}
local mode = args[1]
if specs[mode] then
  local opts = cli.parse({table.unpack(args, 2)}, specs[mode])
  io.stdout:setvbuf("line")
  if mode == "server" then server(opts.host, opts.port, opts.count)
  else client(opts.host, opts.port, opts.message) end
else
  local only = {usage = USAGE, help = HELP}
  for _, a in ipairs(args) do -- --help, or an unknown option
    if a:match("^%-%-?%a") then cli.parse({a}, only) end
  end
  if mode == nil then cli.usage_error(only, "server or client is missing") end
  cli.usage_error(only, "the first argument must be server or client, not '%s'", mode)
end
