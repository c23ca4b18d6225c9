-- timeserver.lua: the tutorial's date-time server, on luasocket's API.
-- Each client gets the current date-time as Python's str(datetime.now())
-- prints it, then the connection closes.
--   netlua scripts/timeserver.lua [host [port]] [--count N]
-- host defaults to 127.0.0.1 (0.0.0.0 or :: accept other machines), port to
-- 6789 (0: any free port); --count N exits after N clients.
local socket = require "socket"
local time = require "time"

local function parse_args(args, default_port)
  local opts, pos, i = {host = "127.0.0.1", port = default_port}, {}, 1
  while i <= #args do
    if args[i] == "--count" then
      opts.count = tonumber(args[i + 1]) or error("--count needs a number", 0)
      i = i + 1
    else
      pos[#pos + 1] = args[i]
    end
    i = i + 1
  end
  opts.host = pos[1] or opts.host
  opts.port = tonumber(pos[2] or opts.port) or error("port must be a number", 0)
  return opts
end

local function where(host, port)
  if host:find(":", 1, true) then return string.format("[%s]:%s", host, port) end
  return string.format("%s:%s", host, port)
end

local function fail(fmt, ...)
  io.stderr:write("netlua: ", string.format(fmt, ...), "\n")
  os.exit(1)
end

local function serve(client)
  client:settimeout(5) -- a client that never reads cannot hold the server
  local ip, port = client:getpeername()
  print(string.format("connection from %s", where(ip or "?", port or "?")))
  local ok, err = client:send(time.datetime())
  if not ok then print(string.format("send to %s failed: %s", where(ip or "?", port or "?"), err)) end
  client:close()
end

local opts = parse_args({...}, 6789)
io.stdout:setvbuf("line")
local server, err = socket.bind(opts.host, opts.port, 512)
if not server then fail("cannot listen on %s: %s", where(opts.host, opts.port), err) end
local ip, port = server:getsockname()
print(string.format("listening on %s", where(ip, port)))
local served = 0
local accept_failure -- the last accept error, printed once
while not opts.count or served < opts.count do
  local client, aerr = server:accept()
  if client then
    accept_failure = nil
    serve(client)
    served = served + 1
  else
    -- Out of descriptors (EMFILE) accept fails at once, again and again: say
    -- it once and wait for clients to leave instead of spinning.
    if aerr ~= accept_failure then print("accept failed: " .. aerr) end
    accept_failure = aerr
    socket.sleep(0.1)
  end
end
server:close()
