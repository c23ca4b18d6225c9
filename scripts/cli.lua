-- cli.lua: what the scripts share: one command-line parser (positional
-- arguments, `--name value` options, `--help`), how they print an address,
-- and how they fail. Found by `require "cli"` because it sits next to them.
local M = {}

-- ---- the command line --------------------------------------------------

-- Kinds of values: each turns the text into the value, or returns nil and
-- what the value must be ("port must be a number from 0 to 65535, not 'x'").
M.kinds = {
  host = function(s)
    if s ~= "" then return s end
    return nil, "a host name or address"
  end,
  port = function(s) -- a port to listen on: 0 picks a free one
    local n = math.tointeger(tonumber(s))
    if n and n >= 0 and n <= 65535 then return n end
    return nil, "a number from 0 to 65535"
  end,
  peer_port = function(s) -- a port to connect or send to
    local n = math.tointeger(tonumber(s))
    if n and n >= 1 and n <= 65535 then return n end
    return nil, "a number from 1 to 65535"
  end,
  count = function(s)
    local n = math.tointeger(tonumber(s))
    if n and n >= 1 then return n end
    return nil, "a whole number from 1 up"
  end,
  seconds = function(s)
    local n = tonumber(s)
    if n and n > 0 and n < math.huge then return n end
    return nil, "a number of seconds above 0"
  end,
  text = function(s) return s end,
}

-- Bad use: "netlua: <message>" and the usage line on stderr, status 2.
function M.usage_error(spec, fmt, ...)
  io.stderr:write("netlua: ", string.format(fmt, ...), "\n")
  io.stderr:write("usage: ", spec.usage, "\n")
  os.exit(2)
end
local usage_error = M.usage_error

local function help(spec)
  io.stdout:write("usage: ", spec.usage, "\n")
  if spec.help then io.stdout:write("\n", (spec.help:gsub("\n*$", "\n"))) end
  os.exit(0)
end

-- The value of `text` as `kind` (a name in M.kinds or a function), or a
-- usage error naming `what` (the option or argument) and the bad text.
local function convert(spec, what, kind, text)
  local value, must = (type(kind) == "function" and kind or M.kinds[kind])(text)
  if value == nil then usage_error(spec, "%s must be %s, not '%s'", what, must, text) end
  return value
end

-- Parses `args` as `spec` says; returns a table of the values by name.
--   spec.usage    the usage line: "netlua scripts/x.lua [host [port]] [--count N]"
--   spec.help     what --help prints under it
--   spec.args     the positional arguments in order: {name, kind, default}
--   spec.options  --name options: name = {kind, default}; kind "switch"
--                 takes no value and is true when given; {kind, many =
--                 true} may be given again and again: its value is the
--                 list of the values given ({} when none)
--   spec.short    one-letter aliases: c = "count" makes -c N mean --count N
-- Options may come anywhere, as `--name value` or `--name=value`; `--`
-- ends them. Bad use prints the message and the usage line on stderr and
-- exits 2; -h or --help prints the usage and help on stdout and exits 0.
function M.parse(args, spec)
  local opts, pos, options, i = {}, {}, spec.options or {}, 1
  for _, a in ipairs(spec.args or {}) do opts[a[1]] = a[3] end
  for name, o in pairs(options) do
    if o.many then opts[name] = {} else opts[name] = o[2] end
  end
  local only_positional = false
  while i <= #args do
    local a = args[i]
    local name, inline = a:match("^%-%-([%w-]+)=(.*)$")
    if not name then name = a:match("^%-%-([%w-]+)$") end
    if not name and a:match("^%-%w$") then
      name = a == "-h" and "help" or (spec.short or {})[a:sub(2)]
    end
    if only_positional or not name then
      if a == "--" and not only_positional then
        only_positional = true
      elseif a:match("^%-%-?%a") and not only_positional then
        usage_error(spec, "unknown option %s", a)
      else
        pos[#pos + 1] = a
      end
    elseif name == "help" then
      help(spec)
    elseif not options[name] then
      usage_error(spec, "unknown option --%s", name)
    elseif options[name][1] == "switch" then
      if inline then usage_error(spec, "--%s takes no value", name) end
      opts[name] = true
    else
      local text = inline
      if text == nil then
        i = i + 1
        text = args[i]
        if text == nil then usage_error(spec, "--%s needs a value", name) end
      end
      local value = convert(spec, "--" .. name, options[name][1], text)
      if options[name].many then
        table.insert(opts[name], value)
      else
        opts[name] = value
      end
    end
    i = i + 1
  end
  local positional = spec.args or {}
  if #pos > #positional then usage_error(spec, "unexpected argument '%s'", pos[#positional + 1]) end
  for k, text in ipairs(pos) do
    local a = positional[k]
    opts[a[1]] = convert(spec, a[1], a[2], text)
  end
  return opts
end

-- ---- addresses and failures ----------------------------------------------

-- "127.0.0.1:80", "[::1]:80".
-- By concatenation: string.format's "%s" cost the time server about 700
-- instructions per client, 4% of all it runs for one.
function M.where(host, port)
  if type(host) ~= "string" then host = tostring(host) end
  if type(port) ~= "string" and type(port) ~= "number" then port = tostring(port) end
  if host:find(":", 1, true) then return "[" .. host .. "]:" .. port end
  return host .. ":" .. port
end

-- s as one word for the shell: 'it'\''s'.
function M.shellquote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- s with every byte that is not part of valid UTF-8 replaced by `with`
-- ("_" unless given).
function M.valid_utf8(s, with)
  local out, i = {}, 1
  while i <= #s do
    local ok, bad = utf8.len(s, i)
    if ok then out[#out + 1] = s:sub(i) break end
    out[#out + 1] = s:sub(i, bad - 1) .. (with or "_")
    i = bad + 1
  end
  return table.concat(out)
end

-- luasocket's message `err` and, on a line of its own under it, what it
-- means (`why`: the explanation a failed socket call returns after its
-- values, README "Errors that explain themselves"), when there is one.
function M.reason(err, why)
  if why then return tostring(err) .. "\n  " .. why end
  return tostring(err)
end

-- Prints "netlua: <message>" on stderr and exits with status 1.
function M.fail(fmt, ...)
  io.stdout:flush() -- what the script printed comes first
  io.stderr:write("netlua: ", string.format(fmt, ...), "\n")
  os.exit(1)
end

-- ---- servers and clients ---------------------------------------------------

-- A TCP server listening on opts.host:opts.port (backlog clients queued), or
-- "netlua: cannot listen on HOST:PORT: <reason>" and status 1. Prints
-- "listening on IP:PORT" (then `note`, if any) as the first line, which is
-- where tests read the port the OS chose for port 0.
function M.listen(opts, backlog, note)
  local server, err, why = require("socket").bind(opts.host, opts.port, backlog)
  if not server then
    M.fail("cannot listen on %s: %s", M.where(opts.host, opts.port), M.reason(err, why))
  end
  local ip, port = server:getsockname()
  print("listening on " .. M.where(ip, port) .. (note or ""))
  return server
end

-- A TCP connection to host:port, or "netlua: cannot connect to HOST:PORT:
-- <reason>" (and what it means, on the next line) and status 1.
function M.connect(host, port)
  local sock, err, why = require("socket").connect(host, port)
  if not sock then M.fail("cannot connect to %s: %s", M.where(host, port), M.reason(err, why)) end
  return sock
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
-- `peer`: its address when the client cannot tell (a TLS connection).
function M.reply(client, text, peer)
  client:settimeout(5)
  if not peer then
    local ip, port = client:getpeername()
    peer = M.where(ip or "?", port or "?")
  end
  print("connection from " .. peer)
  local ok, err, _, why = client:send(text)
  if not ok then print(string.format("send to %s failed: %s", peer, M.reason(err, why))) end
  client:close()
end

-- The spec of a server's command line, `[host [port]] [--count N]` and
-- the `extra` options: s.name (the script's file name), s.port (its
-- default port), s.about (what it does), s.options and s.usage (extra
-- options and their part of the usage line), s.lines (their help lines).
function M.server_spec(s)
  local options = {count = {"count", false}}
  for k, v in pairs(s.options or {}) do options[k] = v end
  return {
    usage = string.format("netlua scripts/%s [host [port]] [--count N]%s", s.name, s.usage or ""),
    help = s.about .. "\n\n" ..
      "  host        the address to listen on (default 127.0.0.1; 0.0.0.0 or ::\n" ..
      "              for other machines too)\n" ..
      string.format("  port        the port (default %d; 0 picks a free one)\n", s.port) ..
      "  --count N   stop after N clients\n" .. (s.lines or ""),
    args = {{"host", "host", "127.0.0.1"}, {"port", "port", s.port}},
    options = options,
  }
end

return M
