-- cli.lua: what the server and client scripts share: their command line
-- (`[host [port]] [--flag N]...`), how they print an address, and how they
-- fail. Found by `require "cli"` because it sits next to them.
local M = {}

-- Bad command-line use: the message and the usage line on stderr, status 2.
local function usage_error(msg, usage)
  io.stderr:write("netlua: ", msg, "\n")
  if usage then io.stderr:write("usage: ", usage, "\n") end
  os.exit(2)
end

-- Parses positional host and port plus `--name N` options whose names are
-- keys of `defaults` (each a positive integer), and `--name` switches whose
-- names are keys of `switches` (true when given). Returns a table with host,
-- port and those options; on bad use prints `usage` and exits 2.
function M.parse(args, defaults, usage, switches)
  switches = switches or {}
  local opts, pos, i = {host = "127.0.0.1"}, {}, 1
  for k, v in pairs(defaults) do opts[k] = v end
  while i <= #args do
    local flag = args[i]:match("^%-%-([%w-]+)$")
    if flag and switches[flag] then
      opts[flag] = true
    elseif flag and flag ~= "host" and flag ~= "port" and defaults[flag] ~= nil then
      local n = math.tointeger(tonumber(args[i + 1]))
      if not n or n < 1 then usage_error("--" .. flag .. " needs a positive number", usage) end
      opts[flag] = n
      i = i + 1
    elseif flag then
      usage_error("unknown option --" .. flag, usage)
    else
      pos[#pos + 1] = args[i]
    end
    i = i + 1
  end
  opts.host = pos[1] or opts.host
  opts.port = math.tointeger(tonumber(pos[2] or opts.port))
  if not opts.port or opts.port < 0 or opts.port > 65535 then
    usage_error("port must be a number from 0 to 65535", usage)
  end
  return opts
end

-- A TCP server listening on opts.host:opts.port (backlog clients queued), or
-- "netlua: cannot listen on HOST:PORT: <reason>" and status 1. Prints
-- "listening on IP:PORT" (then `note`, if any) as the first line, which is
-- where tests read the port the OS chose for port 0.
function M.listen(opts, backlog, note)
  local server, err = require("socket").bind(opts.host, opts.port, backlog)
  if not server then M.fail("cannot listen on %s: %s", M.where(opts.host, opts.port), err) end
  local ip, port = server:getsockname()
  print("listening on " .. M.where(ip, port) .. (note or ""))
  return server
end

-- The next client of `server`. An accept that fails (out of descriptors,
-- EMFILE, fails at once, again and again) is printed once, unless `quiet`,
-- and retried every 0.1 s until clients leave, instead of spinning.
function M.accept(server, quiet)
  local last_failure
  while true do
    local client, err = server:accept()
    if client then return client end
    if err ~= last_failure and not quiet then print("accept failed: " .. err) end
    last_failure = err
    require("socket").sleep(0.1)
  end
end

-- Accepts clients until `count` have come (forever when count is false),
-- handing each to handle(client); then closes the server.
function M.serve(server, count, handle)
  local served = 0
  while not count or served < count do
    handle(M.accept(server))
    served = served + 1
  end
  server:close()
end

-- Sends `text` to client, logging "connection from IP:PORT" (and a failed
-- send), then closes it. A client that does not read within 5 s is dropped.
function M.reply(client, text)
  client:settimeout(5)
  local ip, port = client:getpeername()
  local peer = M.where(ip or "?", port or "?")
  print("connection from " .. peer)
  local ok, err = client:send(text)
  if not ok then print(string.format("send to %s failed: %s", peer, err)) end
  client:close()
end

-- "127.0.0.1:80", "[::1]:80".
function M.where(host, port)
  if tostring(host):find(":", 1, true) then return string.format("[%s]:%s", host, port) end
  return string.format("%s:%s", host, port)
end

-- Prints "netlua: <message>" on stderr and exits with status 1.
function M.fail(fmt, ...)
  io.stderr:write("netlua: ", string.format(fmt, ...), "\n")
  os.exit(1)
end

return M
