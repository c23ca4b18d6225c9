-- netlua -m check: checks a server against an exercise spec (scripted client dialogues)
-- check.lua: the exercise checker. Starts the learner's server (`netlua
-- SERVER.lua ARGS`, or any command after --server) on a free port the
-- checker picked, waits until it accepts connections, runs the spec's
-- client dialogues against it (lab/_check_dialogue.lua), prints what passed
-- and, for what failed, the expected and received bytes one above the
-- other, and always stops the server (lab/_check_server.lua). The spec
-- format is checked by lab/_check_spec.lua; README's "netlua -m check"
-- lists every key.
local cli = require "cli"
local socket = require "socket"
local time = require "time"
local specs = require "_check_spec"
local dialogue = require "_check_dialogue"
local process = require "_check_server"

local HOST = "127.0.0.1"
local STDERR_LINES = 20

local USAGE = "netlua -m check SERVER.lua --spec SPEC.lua\n" ..
  "       netlua -m check --spec SPEC.lua --server COMMAND [ARGS...]"
local HELP = [[
Starts the server (netlua SERVER.lua and the spec's args, "{port}" replaced by
a free port), waits until it accepts connections, runs the spec's client
dialogues against it and stops it. Prints ok or FAIL per dialogue; for a
failure, the step, the expected and the received bytes. Exit status: 0 all
passed, 1 a dialogue failed or the server died, 2 bad usage, a bad spec or a
server that never became ready.

  SERVER.lua        the server script, run by this netlua
  --spec SPEC.lua   the spec: a Lua file returning {title=, args=, udp=,
                    ready_within=, within=, dialogues={...}} (README:
                    "netlua -m check")
  --server CMD...   check any program instead: the rest of the command line
                    is its command, the spec's args are added after it
]]
local CLI_SPEC = {usage = USAGE, help = HELP, args = {{"server", "text"}},
  options = {spec = {"text", false}}}

-- The arguments before --server, and the words after it (or nil).
local function split_command(args)
  for k, a in ipairs(args) do
    if a == "--server" then return {table.unpack(args, 1, k - 1)}, {table.unpack(args, k + 1)} end
  end
  return args, nil
end

-- A free port on HOST for the server (TCP, or UDP): the OS picks it.
local function free_port(udp)
  local s
  if udp then
    s = assert(socket.udp())
    assert(s:setsockname(HOST, 0))
  else
    s = assert(socket.bind(HOST, 0))
  end
  local _, port = s:getsockname()
  s:close()
  return tonumber(port)
end

local function fill_in(word, port)
  return (word:gsub("{port}", tostring(port)):gsub("{host}", HOST))
end

-- ---- readiness ------------------------------------------------------------------

local function accepts(port)
  local c = socket.tcp()
  c:settimeout(0.5)
  local ok = c:connect(HOST, port)
  c:close()
  return ok ~= nil
end

-- True when a UDP socket is bound to the port (Linux's /proc/net/udp*),
-- or nil when those files cannot be read.
local function udp_bound(port)
  local hex, readable = string.format("%04X", port), false
  for _, path in ipairs{"/proc/net/udp", "/proc/net/udp6"} do
    local f = io.open(path)
    if f then
      readable = true
      local text = f:read("a")
      f:close()
      for line in text:gmatch("[^\n]+") do
        local addr = line:match("^%s*%d+:%s+(%S+)")
        if addr and addr:match(":(%x+)$") == hex then return true end
      end
    end
  end
  if readable then return false end
  return nil
end

local function ready(port, udp, started)
  if not udp then return accepts(port) end
  local bound = udp_bound(port)
  if bound == nil then return time.monotonic() - started > 0.5 end
  return bound
end

-- Waits until the server accepts (TCP) or has bound its port (UDP):
-- "ready", or "died", or "late" after spec.ready_within seconds.
local function wait_ready(srv, port, spec)
  local started = time.monotonic()
  while true do
    if srv:status() then return "died" end
    if ready(port, spec.udp, started) then return "ready" end
    if time.monotonic() - started > spec.ready_within then return "late" end
    time.sleep(0.05)
  end
end

-- ---- reports ------------------------------------------------------------------------

local function print_tail(what, text)
  if text == "" then
    print(string.format("the server's %s was empty", what))
    return
  end
  local tail, cut = process.tail(text, STDERR_LINES)
  print(string.format("the server's %s%s:", what,
    cut > 0 and string.format(" (last %d lines)", STDERR_LINES) or ""))
  for line in tail:gmatch("[^\n]*\n?") do
    if line ~= "" then io.write("  | ", line:gsub("\n$", ""), "\n") end
  end
end

local function status_text(status)
  if status > 128 then return string.format("was killed by signal %d", status - 128) end
  return string.format("exited with status %d", status)
end

local LABEL = "       expected: "

local function print_failure(d, fail, nfailed)
  print("FAIL " .. d.name)
  local where = fail.step == 0 and "connecting" or string.format("step %d: %s", fail.step, fail.what)
  if d.clients > 1 then where = string.format("client %d, %s", fail.client, where) end
  if nfailed > 1 then where = where .. string.format(" (and %d more clients failed)", nfailed - 1) end
  print("       " .. where)
  print(LABEL .. fail.expected)
  local received = (fail.received and fail.received ~= "") and dialogue.show(fail.received) or "nothing"
  print("       received: " .. received)
  if fail.column and fail.received and fail.column <= #fail.received + 1 then
    local before = dialogue.show(fail.received:sub(1, fail.column - 1))
    print(string.rep(" ", #LABEL + utf8.len(before) - 1) .. "^ first difference: byte " .. fail.column)
  end
  if fail.note then print("       " .. fail.note) end
end

-- ---- the check ---------------------------------------------------------------------------

local function usage_fail(fmt, ...)
  cli.usage_error(CLI_SPEC, fmt, ...)
end

local function fail2(fmt, ...)
  io.stderr:write("netlua: ", string.format(fmt, ...), "\n")
  return 2
end

-- Runs the dialogues; returns how many passed.
local function run_dialogues(srv, spec, port)
  local passed = 0
  for _, d in ipairs(spec.dialogues) do
    local status = srv:status()
    if status then
      print("FAIL " .. d.name)
      print("       the server is not running: it " .. status_text(status))
    else
      local fail, nfailed = dialogue.run(d, HOST, port, spec.udp)
      if fail then
        print_failure(d, fail, nfailed)
        -- a refused or closed connection may be a server that is dying:
        -- give it a moment to say so
        status = srv:wait(0.5)
        if status then print("       the server " .. status_text(status)) end
      else
        print("ok   " .. d.name)
        passed = passed + 1
      end
    end
    io.stdout:flush()
  end
  return passed
end

-- The check itself: the exit status.
local function main(args)
  local before, command = split_command(args)
  local opts = cli.parse(before, CLI_SPEC)
  if not opts.spec then usage_fail("--spec SPEC.lua is missing") end
  if command and opts.server then usage_fail("give SERVER.lua or --server COMMAND, not both") end
  if command and #command == 0 then usage_fail("--server needs a command") end
  if not command and not opts.server then usage_fail("SERVER.lua is missing") end
  local spec, err = specs.load(opts.spec)
  if not spec then return fail2("%s", err) end
  if not command then
    local f = io.open(opts.server)
    if not f then return fail2("cannot read the server %s: no such file or not readable", opts.server) end
    f:close()
    command = {process.netlua_path(), opts.server}
  end
  local port = free_port(spec.udp)
  local argv = {}
  for _, w in ipairs(command) do argv[#argv + 1] = fill_in(w, port) end
  for _, w in ipairs(spec.args) do argv[#argv + 1] = fill_in(w, port) end
  local name = opts.server or command[1]

  local srv <close>, why = process.start(argv)
  if not srv then return fail2("cannot start %s: %s", name, why) end
  local state = wait_ready(srv, port, spec)
  if state == "died" then
    print(string.format("FAIL the server %s before it was ready (%s)", status_text(srv:status()),
      table.concat(argv, " ")))
    print_tail("stderr", srv:stderr())
    return 1
  elseif state == "late" then
    io.stderr:write(string.format("netlua: the server did not %s %s:%d within %g s " ..
      "(ready_within); does the spec's args put {port} where the server takes its port?\n",
      spec.udp and "bind UDP" or "accept connections on", HOST, port, spec.ready_within))
    io.stderr:write("  command: ", table.concat(argv, " "), "\n")
    io.stdout:flush()
    print_tail("stdout", srv:stdout())
    print_tail("stderr", srv:stderr())
    return 2
  end

  print(string.format("checking %s with %s%s", name, opts.spec, spec.title and (": " .. spec.title) or ""))
  io.stdout:flush()
  local passed = run_dialogues(srv, spec, port)
  local total = #spec.dialogues
  print(string.format("%d of %d dialogues passed", passed, total))
  if passed < total then
    local status = srv:status()
    if status then print("the server " .. status_text(status) .. " during the check") end
    print_tail("stderr", srv:stderr())
  end
  return passed == total and 0 or 1
end

local ok, status = xpcall(main, function(e)
  if e == "interrupted" then return e end
  return debug.traceback(tostring(e), 2)
end, {...})
if not ok then
  if status == "interrupted" then
    io.stderr:write("netlua: interrupted; the server was stopped\n")
    os.exit(130)
  end
  error(status, 0)
end
io.stdout:flush()
os.exit(status)
