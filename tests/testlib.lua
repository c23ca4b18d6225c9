-- testlib.lua: a small TAP producer and process helpers for netlua's tests.
-- Each test file does `local t = require "testlib"`, calls t.test(name, fn)
-- for each case and t.done() at the end; prove reads the TAP it prints.
local M = {}

local count, failed = 0, 0
local NETLUA = os.getenv("NETLUA") or "./netlua"
M.NETLUA = NETLUA

local function fmt(v)
  if type(v) == "string" then return string.format("%q", v) end
  return tostring(v)
end

-- Raised by the checks below; carries the message to report.
local function fail(msg, level)
  error({testlib_failure = msg}, (level or 1) + 1)
end

function M.ok(cond, msg)
  if not cond then fail("expected a true value" .. (msg and (": " .. msg) or ""), 2) end
  return cond
end

function M.eq(got, want, msg)
  if got ~= want and not (got ~= got and want ~= want) then
    fail(string.format("%sgot %s, want %s", msg and (msg .. ": ") or "",
      fmt(got), fmt(want)), 2)
  end
end

function M.match(s, pattern, msg)
  if type(s) ~= "string" or not s:find(pattern) then
    fail(string.format("%s%s does not match %q", msg and (msg .. ": ") or "",
      fmt(s), pattern), 2)
  end
end

-- Calls fn(...) and checks that it raises an error matching pattern
-- (plain find). Returns the message.
function M.raises(pattern, fn, ...)
  local ok, err = pcall(fn, ...)
  if ok then fail("expected an error matching " .. fmt(pattern), 2) end
  local text = type(err) == "table" and err.testlib_failure or tostring(err)
  if not text:find(pattern, 1, true) then
    fail(string.format("error %s does not contain %s", fmt(text), fmt(pattern)), 2)
  end
  return text
end

local skipping -- set by M.skip called inside a running test: its reason

function M.test(name, fn)
  count = count + 1
  skipping = false
  local ok, err = xpcall(fn, function(e)
    if type(e) == "table" and e.testlib_failure then
      return e.testlib_failure .. "\n" .. debug.traceback("", 2)
    end
    return debug.traceback(tostring(e), 2)
  end)
  local why = skipping
  skipping = nil
  if ok and why then
    print(string.format("ok %d - %s # SKIP %s", count, name, why))
  elseif ok then
    print(string.format("ok %d - %s", count, name))
  else
    failed = failed + 1
    print(string.format("not ok %d - %s", count, name))
    for line in tostring(err):gmatch("[^\n]+") do print("# " .. line) end
  end
  io.stdout:flush()
end

-- Outside a test: reports a skipped case. Inside t.test (the case then
-- returns): marks that case skipped. It used to count a second case there,
-- and prove failed the file: "Tests out of sequence".
function M.skip(name, why)
  if skipping ~= nil then
    skipping = why
    return
  end
  count = count + 1
  print(string.format("ok %d - %s # SKIP %s", count, name, why))
end

-- The directories M.tmpdir made, removed by M.done (a test that failed
-- half-way left its own behind).
local made_dirs = {}

function M.done()
  print("1.." .. count)
  for _, dir in ipairs(made_dirs) do os.execute("rm -rf " .. M.shellquote(dir)) end
  os.exit(failed == 0 and 0 or 1)
end

-- Calls fn(...) with io.stderr replaced by a recorder, so the lines that
-- Lua code writes there (http.server's error log) are checked rather than
-- mixed into prove's output; io.stderr comes back however fn ends. Returns
-- the text written, then fn's results. (What C code prints, a failed task's
-- or thread's error, cannot be caught so: those tests spawn them quiet or
-- run a child netlua.)
function M.capture_stderr(fn, ...)
  local real, written = io.stderr, {}
  local recorder = {}
  function recorder.write(self, ...)
    for i = 1, select("#", ...) do written[#written + 1] = tostring((select(i, ...))) end
    return self
  end
  function recorder.flush() return true end
  function recorder.setvbuf() return true end
  io.stderr = setmetatable(recorder, {__name = "FILE*"})
  local result = table.pack(pcall(fn, ...))
  io.stderr = real
  if not result[1] then error(result[2], 0) end
  return table.concat(written), table.unpack(result, 2, result.n)
end

-- ---- files and processes -----------------------------------------------

function M.tmpdir()
  local p = io.popen("mktemp -d /tmp/netlua-test.XXXXXX")
  local dir = p:read("l")
  p:close()
  made_dirs[#made_dirs + 1] = dir
  return dir
end

function M.writefile(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
end

function M.readfile(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local data = f:read("a")
  f:close()
  return data
end

function M.shellquote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- Runs a shell command line; returns stdout, stderr, exit status.
-- opts.stdin: a string fed to the command's standard input.
-- The shell line running cmdline with its output into dir/out and dir/err
-- and its input from opts.stdin (or /dev/null).
local function redirected(cmdline, dir, opts)
  local input = " < /dev/null"
  if opts.stdin then
    M.writefile(dir .. "/in", opts.stdin)
    input = " < " .. dir .. "/in"
  end
  return string.format("( %s ) > %s/out 2> %s/err%s", cmdline, dir, dir, input)
end

local function collect(dir)
  local out, err = M.readfile(dir .. "/out"), M.readfile(dir .. "/err")
  os.execute("rm -rf " .. dir)
  return out, err
end

function M.sh(cmdline, opts)
  local dir = M.tmpdir()
  local ok, how, code = os.execute(redirected(cmdline, dir, opts or {}))
  local out, err = collect(dir)
  if how == "signal" then code = 128 + code end
  return out, err, code
end

-- M.sh for a command that talks to a server serving in this process: the
-- command runs in the background (killed after 60 s) and the caller waits
-- with time.sleep, so inside a task only the task waits.
function M.sh_task(cmdline, opts)
  local time = require "time"
  local dir = M.tmpdir()
  os.execute(string.format("( timeout -s KILL 60 sh -c %s; echo $? > %s/rc.tmp; mv %s/rc.tmp %s/rc ) &",
    M.shellquote(redirected(cmdline, dir, opts or {})), dir, dir, dir))
  local rc
  repeat
    time.sleep(0.02)
    rc = M.readfile(dir .. "/rc")
  until rc
  local out, err = collect(dir)
  return out, err, tonumber(rc)
end

-- True when the command `name` (a name on PATH or a path) can be run.
function M.have(name)
  return os.execute("command -v " .. M.shellquote(name) .. " > /dev/null 2>&1") == true
end

-- Runs netlua with the given argument string (already shell-quoted).
function M.netlua(args, opts)
  return M.sh(M.shellquote(NETLUA) .. " " .. args, opts)
end

-- Writes `source` to a temporary script file and returns its path and dir.
function M.script(source, name)
  local dir = M.tmpdir()
  local path = dir .. "/" .. (name or "script.lua")
  M.writefile(path, source)
  return path, dir
end

function M.rmtree(dir)
  if dir and dir:match("^/tmp/netlua%-test%.") then os.execute("rm -rf " .. dir) end
end

-- A private /etc for commands: writes `files` (name -> contents, such as
-- {["nsswitch.conf"] = "hosts: files\n"}) into a new directory and returns
-- a function like M.sh that runs its command line in a mount namespace of
-- its own (unshare -m) where those files replace /etc's, killed after 60 s,
-- and the directory (M.rmtree it when done). nil and why when this
-- machine cannot (unshare and mount need root).
function M.private_etc(files)
  local dir, mounts, names = M.tmpdir(), {}, {}
  for name in pairs(files) do names[#names + 1] = name end
  table.sort(names)
  for _, name in ipairs(names) do
    M.writefile(dir .. "/" .. name, files[name])
    mounts[#mounts + 1] = "mount --bind " .. dir .. "/" .. name .. " /etc/" .. name
  end
  local function sh(cmdline, opts)
    local script = table.concat(mounts, " && ") .. " && " .. cmdline
    return M.sh("timeout -s KILL 60 unshare -m sh -c " .. M.shellquote(script), opts)
  end
  if sh("echo mounted") ~= "mounted\n" then
    M.rmtree(dir)
    return nil, "needs unshare -m and mount (root) for a private /etc/" .. table.concat(names, ", /etc/")
  end
  return sh, dir
end

-- A LAN of `n` hosts on one machine: each host a network namespace of its
-- own (unshare -n) with one interface, eth0, at 10.77.0.(i+1)/24, its
-- other end on a bridge in a further namespace (the switch). Nothing of it
-- is in this machine's own namespace: each namespace is held by a `sleep`
-- that ends after `seconds` (default 120), so it all goes away even when
-- the test dies. Returns the lan, or nil and why when this machine cannot
-- (unshare -n, ip and a bridge need root). lan.addr[i]: host i's address;
-- lan.broadcast: the subnet's; lan:inside(i, cmd): cmd as a command line
-- that runs in host i's namespace (without cmd: the prefix that does it); lan:link(i, "down"/"up"): host i's cable
-- pulled or plugged in again (at the switch); lan:close() ends it.
local Lan = {}
Lan.__index = Lan

-- A process in a network namespace of its own, living `seconds`: its pid,
-- once it is in that namespace; nil when it could not get there (so no
-- command meant for it ever runs in this machine's own namespace).
local function holder(seconds)
  local p = io.popen("unshare -n sleep " .. seconds .. " > /dev/null 2>&1 & pid=$!; " ..
    "while [ \"$(readlink /proc/$pid/ns/net)\" = \"$(readlink /proc/self/ns/net)\" ]; do sleep 0.01; done; " ..
    "[ -n \"$(readlink /proc/$pid/ns/net)\" ] && echo $pid")
  local pid = p:read("l")
  p:close()
  return pid
end

function Lan:inside(i, cmd)
  local prefix = "nsenter -t " .. (i == 0 and self.switch or self.pids[i]) .. " -n"
  return cmd and prefix .. " " .. cmd or prefix
end

-- Runs the ip commands (one a line) in host i's namespace (0: the
-- switch's); true, or nil and what ip said.
function Lan:ip(i, script)
  local _, err, code = M.sh(self:inside(i, "ip -batch -"), {stdin = script})
  if code ~= 0 then return nil, err end
  return true
end

function Lan:link(i, state) return assert(self:ip(0, "link set v" .. i .. " " .. state)) end

function Lan:close()
  os.execute("kill " .. (self.switch or "") .. " " .. table.concat(self.pids, " ") .. " 2>/dev/null")
end

function M.lan(n, seconds)
  if not M.have("unshare") or not M.have("nsenter") or not M.have("ip") then
    return nil, "needs unshare, nsenter and ip (iproute2)"
  end
  seconds = seconds or 120
  local lan = setmetatable({n = n, pids = {}, addr = {}, broadcast = "10.77.0.255"}, Lan)
  lan.switch = holder(seconds)
  for i = 1, n do
    lan.addr[i] = "10.77.0." .. (i + 1)
    lan.pids[#lan.pids + 1] = holder(seconds) -- nothing added when it failed
  end
  local ok, err = lan.switch and #lan.pids == n, "unshare -n failed"
  if ok then ok, err = lan:ip(0, "link add br0 type bridge\nlink set br0 up") end
  for i = 1, n do
    if not ok then break end
    ok, err = lan:ip(0, string.format("link add v%d type veth peer name eth0 netns %s\n" ..
      "link set v%d master br0 up", i, lan.pids[i], i))
    if ok then
      ok, err = lan:ip(i, string.format("addr add %s/24 brd + dev eth0\nlink set eth0 up\n" ..
        "link set lo up", lan.addr[i]))
    end
  end
  if not ok then
    lan:close()
    return nil, "needs network namespaces joined by veth pairs and a bridge (root): " ..
      (err or ""):gsub("%s+$", "")
  end
  return lan
end

-- Starts `netlua script`, waits (at most 20 s) until its stdout holds
-- "ready", sends SIGINT (or the signal named by `signal`, "TERM", "HUP");
-- for each further marker in `then_markers`, waits until stderr holds it
-- and sends the signal again. Returns stdout, stderr and the exit status.
function M.interrupt(script, then_markers, signal)
  local kill = "kill -" .. (signal or "INT") .. " $pid"
  local dir = M.tmpdir()
  local lines = {
    string.format("%s %s > %s/out 2> %s/err < /dev/null &",
      M.shellquote(NETLUA), M.shellquote(script), dir, dir),
    "pid=$!",
    "waitfor() { i=0; while ! grep -q \"$1\" \"$2\" 2>/dev/null && [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done; }",
    string.format("waitfor ready %s/out", dir),
    kill,
  }
  for _, marker in ipairs(then_markers or {}) do
    lines[#lines + 1] = string.format("waitfor %s %s/err", M.shellquote(marker), dir)
    lines[#lines + 1] = kill
  end
  lines[#lines + 1] = "( sleep 20; kill -KILL $pid ) >/dev/null 2>&1 & guard=$!"
  lines[#lines + 1] = "wait $pid; status=$?; kill $guard 2>/dev/null; exit $status"
  M.writefile(dir .. "/run.sh", table.concat(lines, "\n") .. "\n")
  local _, how, code = os.execute("sh " .. dir .. "/run.sh")
  local out, err = M.readfile(dir .. "/out"), M.readfile(dir .. "/err")
  os.execute("rm -rf " .. dir)
  if how == "signal" then code = 128 + code end
  return out, err, code
end

-- ---- sockets ------------------------------------------------------------

-- A listening TCP socket on 127.0.0.1 with a port the OS chose: server, port.
function M.listener()
  local server = assert(require("socket").bind("127.0.0.1", 0))
  local _, port = server:getsockname()
  return server, tonumber(port)
end

-- A loopback port nothing listens on (the OS picked it, then it was
-- closed): connecting is refused. Not port 1, which a program may use.
function M.closed_port()
  local server, port = M.listener()
  server:close()
  return port
end

-- A connected TCP pair on loopback: the client and the server's side (the
-- listening socket is closed).
function M.tcp_pair()
  local server, port = M.listener()
  local c = assert(require("socket").connect("127.0.0.1", port))
  local s = assert(server:accept())
  server:close()
  return c, s
end

-- ---- tasks --------------------------------------------------------------

-- Runs the ready tasks until every handle in hs waits.
function M.until_waiting(hs)
  local task = require "task"
  for _, h in ipairs(hs) do
    while h:status() ~= "waiting" do task.yield() end
  end
end

-- Joins every handle (within `timeout` seconds each, 10 by default: a
-- guard against a lost wake-up); each must have succeeded. Returns the
-- packed outcomes.
function M.join_all(hs, timeout)
  local out = {}
  for i, h in ipairs(hs) do
    local r = table.pack(h:join(timeout or 10))
    assert(r[1], tostring(r[2]))
    out[i] = r
  end
  return out
end

-- Writes `source` to a script, runs it under M.interrupt (same markers and
-- signal) and removes it. Returns stdout, stderr and the exit status.
function M.interrupt_script(source, then_markers, signal)
  local path, dir = M.script(source)
  local out, err, code = M.interrupt(path, then_markers, signal)
  M.rmtree(dir)
  return out, err, code
end

-- The cases every interrupting signal must pass (Ctrl-C is SIGINT; SIGTERM
-- and SIGHUP behave as it does): registers them for `signal` ("INT",
-- "TERM", "HUP"), whose uncaught status is `status`. `skip()` returns a
-- reason to skip them, or nil.
function M.interrupt_cases(signal, status, skip)
  local what = "SIG" .. signal
  local function case(name, fn)
    M.test(what .. " " .. name, function()
      local why = skip and skip()
      if why then return M.skip(nil, why) end
      fn()
    end)
  end
  case("during a wait: uncaught, exit " .. status .. " with 'interrupted'", function()
    local out, err, code = M.interrupt_script([[
      local time = require "time"
      print("ready"); io.stdout:flush()
      time.sleep(60)
      print("not reached")
    ]], nil, signal)
    M.eq(code, status)
    M.eq(out, "ready\n")
    M.match(err, "^netlua: interrupted\n")
  end)
  case("is a catchable error and to-be-closed variables run", function()
    local out, err, code = M.interrupt_script([[
      local time = require "time"
      local function wait()
        local guard <close> = setmetatable({}, {__close = function() print("closed") end})
        print("ready"); io.stdout:flush()
        time.sleep(60)
      end
      print(pcall(wait))
      time.sleep(0.01) -- waits still work afterwards
      print("after")
    ]], nil, signal)
    M.eq(code, 0, err)
    M.eq(out, "ready\nclosed\nfalse\tinterrupted\nafter\n")
  end)
  case("interrupts a busy loop: uncaught, exit " .. status, function()
    local out, err, code = M.interrupt_script([[
      print("ready"); io.stdout:flush()
      local n = 0
      while true do n = n + 1 end
    ]], nil, signal)
    M.eq(code, status)
    M.eq(out, "ready\n")
    M.match(err, "^netlua: interrupted\n")
  end)
  case("a second one during cleanup still exits " .. status, function()
    local _, err, code = M.interrupt_script([[
      local time = require "time"
      stuck = setmetatable({}, {__gc = function()
        io.stderr:write("cleaning\n"); io.stderr:flush()
        pcall(time.sleep, 60)
        pcall(time.sleep, 60)
      end})
      print("ready"); io.stdout:flush()
      time.sleep(60)
    ]], {"cleaning"}, signal)
    M.eq(code, status)
    M.match(err, "interrupted")
    M.match(err, "cleaning")
  end)
end

-- ---- http.server in this process ----------------------------------------

-- Runs fn(srv) as a task while srv serves in the calling (main) coroutine;
-- once fn has finished, the server closes and serve returns. Returns fn's
-- results, or raises its error.
function M.serve_while(srv, fn)
  local result
  local h = require("task").spawn(function()
    result = table.pack(pcall(fn, srv))
    srv:close()
  end)
  srv:serve{timeout = 60}
  h:join()
  if not result[1] then error(result[2], 0) end
  return table.unpack(result, 2, result.n)
end

-- ---- server scripts in the background ----------------------------------

-- Starts `netlua [FLAGS] SCRIPT ARGS` in the background (killed after
-- `limit` seconds whatever happens) and waits until its stdout matches
-- `pattern` (default: "listening on 127.0.0.1:PORT"). Returns its pid, the
-- pattern's first capture (as a number when it is one) and the directory
-- holding its stdout and stderr (out, err). Waits with time.sleep, so inside
-- a task only the task waits. `flags`: netlua's own options (already
-- shell-quoted), "" by default.
function M.start_program(script, args, limit, pattern, flags)
  return M.start_command(string.format("%s %s %s %s", M.shellquote(NETLUA), flags or "",
    M.shellquote(script), args), limit, pattern)
end

-- start_program for any command line (a /usr/bin/python3 server): runs it
-- in the background, killed after `limit` seconds, and waits until its
-- stdout matches `pattern`; returns its pid, the capture and its directory.
function M.start_command(cmdline, limit, pattern)
  local time = require "time"
  pattern = pattern or "listening on 127%.0%.0%.1:(%d+)"
  local dir = M.tmpdir()
  local cmd = string.format(
    "%s > %s/out 2> %s/err < /dev/null & pid=$!; " ..
    "( sleep %d; kill -KILL $pid ) > /dev/null 2>&1 & echo $pid",
    cmdline, dir, dir, limit)
  local p = io.popen(cmd)
  local pid = tonumber(p:read("l"))
  p:close()
  local found
  for _ = 1, 400 do
    found = (M.readfile(dir .. "/out") or ""):match(pattern)
    if found then break end
    time.sleep(0.05)
  end
  M.ok(found, "the program printed " .. pattern .. ": " .. tostring(M.readfile(dir .. "/err")))
  return pid, tonumber(found) or found, dir
end

-- start_program for the TCP servers in scripts/: `netlua [FLAGS] SCRIPT
-- 127.0.0.1 0 ARGS`; returns its pid, the port it printed and its directory.
function M.start_server(script, args, limit, flags)
  return M.start_program(script, "127.0.0.1 0 " .. args, limit, nil, flags)
end

-- Waits (bounded) for a process from start_server to end by itself and
-- checks that it did; returns its stdout and stderr.
function M.finish_server(pid, dir)
  local time = require "time"
  for _ = 1, 400 do
    if not os.execute("kill -0 " .. pid .. " 2>/dev/null") then break end
    time.sleep(0.05)
  end
  local stopped = not os.execute("kill -0 " .. pid .. " 2>/dev/null")
  if not stopped then os.execute("kill -KILL " .. pid) end
  local out, err = M.readfile(dir .. "/out"), M.readfile(dir .. "/err")
  M.rmtree(dir)
  M.ok(stopped, "the server stopped by itself")
  return out, err
end

-- An interactive program: `cmdline` (one command, which the shell execs)
-- runs in the background, killed after `limit` seconds (60) whatever
-- happens; the test decides when each piece of its standard input arrives
-- and when that input ends. The input is a file the test appends to, fed
-- by `tail -f` until a watcher process the test ends; so no descriptor of
-- the test's holds the program's input open (a FIFO the test kept open
-- would be inherited by every program it starts later, and the first
-- would never read the end of its input). Returns an object:
--   p:write(s)            appends s to its standard input
--   p:close_input()       ends its standard input (end of file)
--   p:wait_for(pattern[, stream])  waits (at most 20 s) until its stdout
--                         (or stream "err") matches the Lua pattern; returns
--                         the first capture, or fails the test
--   p:wait_exit()         waits (at most 20 s) for it to end: stdout,
--                         stderr, exit status (fails the test if it runs on)
--   p:kill()              ends it (SIGTERM, which timeout(1) passes on)
-- Waits with time.sleep, so inside a task only the task waits.
function M.interactive(cmdline, limit)
  local time = require "time"
  local dir = M.tmpdir()
  M.writefile(dir .. "/in", "")
  os.execute(string.format("( sleep %d & echo $! > %s/watcher; wait ) > /dev/null 2>&1 &",
    limit or 60, dir))
  local watcher
  for _ = 1, 400 do
    watcher = (M.readfile(dir .. "/watcher") or ""):match("%d+")
    if watcher then break end
    time.sleep(0.05)
  end
  os.execute(string.format("( tail -s 0.05 -c +1 -f --pid=%s %s/in | " ..
    "timeout -s KILL %d sh -c %s > %s/out 2> %s/err & pid=$!; " ..
    "echo $pid > %s/pid; wait $pid; echo $? > %s/rc.tmp; mv %s/rc.tmp %s/rc ) > /dev/null 2>&1 &",
    watcher, dir, limit or 60, M.shellquote("exec " .. cmdline), dir, dir, dir, dir, dir, dir))
  local pid
  for _ = 1, 400 do
    pid = (M.readfile(dir .. "/pid") or ""):match("%d+")
    if pid then break end
    time.sleep(0.05)
  end
  local p = {dir = dir, pid = pid}
  function p:write(s)
    local f = assert(io.open(dir .. "/in", "ab"))
    f:write(s)
    f:close()
  end
  function p:close_input()
    os.execute("kill " .. watcher .. " 2>/dev/null")
  end
  function p:wait_for(pattern, stream)
    local text
    for _ = 1, 400 do
      text = M.readfile(dir .. "/" .. (stream or "out")) or ""
      local found = text:match(pattern)
      if found then return found end
      time.sleep(0.05)
    end
    fail(string.format("%s never matched %q: %q (stderr %q)", stream or "stdout", pattern,
      text, M.readfile(dir .. "/err") or ""), 2)
  end
  function p:wait_exit()
    local rc
    for _ = 1, 400 do
      rc = M.readfile(dir .. "/rc")
      if rc then break end
      time.sleep(0.05)
    end
    self:close_input()
    if not rc then self:kill() end
    M.ok(rc, "the program ended by itself")
    return M.readfile(dir .. "/out"), M.readfile(dir .. "/err"), tonumber(rc)
  end
  function p:kill()
    self:close_input()
    os.execute("kill " .. pid .. " 2>/dev/null")
  end
  return p
end

-- start_program for a lab tool: `netlua -m NAME ARGS`, its pid, the
-- pattern's capture and its directory.
function M.start_tool(name, args, limit, pattern)
  return M.start_program(name, args, limit, pattern, "-m")
end

-- Stops a process from start_program with `signal` ("INT" by default) and
-- waits (bounded) for it to end; returns its stdout and stderr.
function M.stop_program(pid, dir, signal)
  os.execute(string.format("kill -%s %d 2>/dev/null", signal or "INT", pid))
  return M.finish_server(pid, dir)
end

-- A client connected to 127.0.0.1:port, with a 10 s timeout per wait.
function M.connect(port)
  local c = assert(require("socket").connect("127.0.0.1", port))
  c:settimeout(10)
  return c
end

-- Reads lines from c until one matches pattern; returns it.
function M.expect_line(c, pattern)
  while true do
    local line, err = c:receive("*l")
    if not line then error("connection: " .. tostring(err) .. " waiting for " .. pattern) end
    if line:find(pattern) then return line end
  end
end

-- ---- a real browser ------------------------------------------------------

local CDP = (debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "tests") .. "/cdp.py"

-- Runs headless Chromium through tests/cdp.py on `steps` (a list of tables,
-- the steps cdp.py describes), at most `timeout` seconds (90) in all.
-- on_mark(text), if given, is called at each {mark = text} step while the
-- browser goes on with the next. Returns the list of the steps' results
-- ({ok=, value=} or {ok=false, error=}), or nil and why the browser is not
-- there (cdp.py's skip: no browser, no python3-websockets).
function M.browser(steps, on_mark, timeout)
  local json = require "json"
  local dir = M.tmpdir()
  M.writefile(dir .. "/steps.json", json.encode(steps))
  local p = io.popen(string.format("/usr/bin/python3 %s %s/steps.json --timeout %d 2> %s/err; echo \"exit $?\"",
    M.shellquote(CDP), dir, timeout or 90, dir))
  local results, status = {}, nil
  for line in p:lines() do
    status = tonumber(line:match("^exit (%d+)$"))
    if not status then
      local r = json.decode(line)
      if r.mark then
        if on_mark then on_mark(r.mark) end
      else
        results[#results + 1] = r
      end
    end
  end
  p:close()
  local err = M.readfile(dir .. "/err") or ""
  M.rmtree(dir)
  if status == 77 then return nil, (err:match("skip: ([^\n]*)") or err) end
  for _, r in ipairs(results) do
    M.ok(r.ok, string.format("browser step %s: %s", tostring(r.step), tostring(r.error)))
  end
  M.eq(status, 0, "cdp.py: " .. err)
  return results
end

return M
