-- test_tutorial.lua: every code block of docs/tutorial.md runs, its shown
-- output is what the program prints, docs/tutorial.zh.md holds the same
-- blocks, and each exercise's spec passes its model solution.
--
-- How a block is read (the fence's info string, then an optional marker on
-- the line right above the fence):
--   ```lua            a complete program: saved (as NAME.lua when its first
--                     line is "-- NAME.lua: ...", so later blocks can run
--                     it) and run with netlua; it must exit 0
--   ```lua server     the same, started in the background (see servers)
--   ```sh             each "$ command" line runs (with sh, netlua being the
--                     binary under test); it must exit 0. The lines below a
--                     command are what it prints, checked loosely: each
--                     shown line must be one of the lines it really printed
--                     (stdout or stderr) once every word holding a digit
--                     (times, ports, sizes, hex bytes) counts as one "#"
--                     and runs of blanks as one blank; "..." stands for
--                     lines left out, and a shown line ending in "..."
--                     for any line that starts so
--   ```sh server      its one command, started in the background
--   ```sh root        runs only as root (raw sockets), else skipped
--   ```sh fails       each command must fail (exit status 1), printing
--                     what is shown
--   ```lua excerpt FILE  a piece of FILE (a path in the repository), shown
--                     to explain it: not run, but it must be in FILE as is
--   ```text, ```json  shown only, never run
--   <!-- skip: why --> above a fence: not run; the test says why
-- A command that uses a lab tool (`netlua -m NAME`) this build does not have
-- yet is skipped, saying which; so is every later block of its section
-- when a server was skipped.
--
-- Servers: a server block runs in the background until its section (a
-- "## " heading) ends; then it gets SIGTERM and must end as an interrupt
-- ends netlua (any server is killed after 300 s whatever happens), and the
-- lines shown under its command are checked against what it printed. It is ready once it has
-- printed a line on stdout (the "listening on ..." line every server in the
-- tutorial prints first, line-buffered).
--
-- Ports: the tutorial uses readable fixed ports (those in PORTS below). In
-- each section, each of them is replaced, in every block, by one free port
-- the OS picked (bind port 0, read it back, close), the same in the whole
-- section, so the servers and clients of a section still meet.
--
-- Blocks run in a fresh directory holding links to the repository's
-- scripts/, docs/ and specs/, so downloads and saved programs land there.
package.path = (arg[0]:match("^(.*)/") or ".") .. "/?.lua;" .. package.path
local t = require "testlib"
local time = require "time"

local ROOT = (arg[0]:match("^(.*)/tests/[^/]*$") or ".")
if ROOT:sub(1, 1) ~= "/" then ROOT = os.getenv("PWD") .. "/" .. ROOT end
local NETLUA = t.NETLUA:sub(1, 1) == "/" and t.NETLUA or (os.getenv("PWD") .. "/" .. t.NETLUA)
local PORTS = {6789, 9999, 7000, 7001, 8000, 8080, 6790, 6800, 6801}

-- ---- reading the markdown --------------------------------------------------

-- The file's headings and fenced blocks in order: {heading = text, line = n}
-- or {lang =, tags = {word = true}, info =, skip =, code =, line = n}.
local function parse(path)
  local text = assert(t.readfile(path), "cannot read " .. path)
  local items, current, skip, n = {}, nil, nil, 0
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    n = n + 1
    if current then
      if line:match("^```%s*$") then
        items[#items + 1] = current
        current = nil
      else
        current.code = current.code .. line .. "\n"
      end
    elseif line:match("^```") then
      local info = line:match("^```%s*(.-)%s*$")
      local tags = {}
      for word in info:gmatch("%S+") do tags[word] = true end
      current = {lang = info:match("^%S*"), tags = tags, info = info, skip = skip,
        code = "", line = n + 1}
      skip = nil
    elseif line:match("^## ") then
      items[#items + 1] = {heading = line:sub(4), line = n}
    else
      local why = line:match("^<!%-%- skip:%s*(.-)%s*%-%->%s*$")
      if why then skip = why elseif line:match("%S") then skip = nil end
    end
  end
  assert(not current, path .. ": a fence opened at line " .. (current and current.line or 0) .. " never closes")
  return items
end

local function blocks_of(items)
  local out = {}
  for _, it in ipairs(items) do if it.code then out[#out + 1] = it end end
  return out
end

-- ---- ports, output shapes, lab tools ---------------------------------------

local function substitute(code, ports)
  for _, p in ipairs(PORTS) do
    code = code:gsub("%f[%d]" .. p .. "%f[%D]", function()
      ports[p] = ports[p] or t.closed_port()
      return tostring(ports[p])
    end)
  end
  return code
end

-- Day and month names, which change with the date as numbers do.
local DATE_WORDS = {}
for w in ("Mon Tue Wed Thu Fri Sat Sun Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec"):gmatch("%a+") do
  DATE_WORDS[w] = true
end

-- A line as the loose comparison sees it: words with digits, and day and
-- month names, stand for any such word (a Date header shown on a Saturday
-- matches one printed on a Sunday).
local function shape(line)
  line = line:gsub("[%w_]+", function(w)
    if w:find("%d") then return "#" end
    if DATE_WORDS[w] then return "@" end
  end)
  return (line:gsub("%s+", " "):gsub("^ ", ""):gsub(" $", ""))
end

-- Whether one of the printed lines (shaped) is `line` or, for a line
-- ending in "...", starts as it does.
local function printed_line(have, line)
  local prefix = line:match("^(.-)%s*%.%.%.$")
  if not prefix then return have[shape(line)] end
  prefix = shape(prefix)
  for l in pairs(have) do
    if l:sub(1, #prefix) == prefix then return true end
  end
  return false
end

-- Each shown line (but "...") must be among the printed ones.
local function check_shown(shown, printed, what)
  local have = {}
  for line in printed:gmatch("[^\n]+") do have[shape(line)] = true end
  for _, line in ipairs(shown) do
    if line:match("%S") and not line:match("^%s*%.%.%.%s*$") and not printed_line(have, line) then
      error(string.format("%s did not print a line like\n  %s\nit printed:\n%s", what, line, printed), 0)
    end
  end
end

local tool_cache = {}
local function have_tool(name)
  if tool_cache[name] == nil then
    local _, _, code = t.sh(t.shellquote(NETLUA) .. " -m " .. t.shellquote(name) .. " --help")
    tool_cache[name] = code == 0
  end
  return tool_cache[name]
end

-- Why `code` cannot run in this build (a missing lab tool), or nil.
local function missing_tool(code)
  for name in code:gmatch("netlua%s+%-m%s+([%w._]+)") do
    if not have_tool(name) then
      return "needs `netlua -m " .. name .. "`, which this build does not have yet"
    end
  end
end

-- The "$ command" lines of a shell block, each with the lines shown under it.
local function commands(code)
  local out = {}
  for line in code:gmatch("[^\n]*") do
    local cmd = line:match("^%$ (.*)$")
    if cmd then out[#out + 1] = {cmd = cmd, shown = {}}
    elseif out[#out] then table.insert(out[#out].shown, line) end
  end
  return out
end

-- ---- running blocks ------------------------------------------------------------

local work -- the directory the blocks run in
local bindir -- holds `netlua`, a link to the binary under test, first on PATH

local function setup()
  work = t.tmpdir()
  for _, d in ipairs{"scripts", "docs", "specs"} do
    os.execute(string.format("ln -s %s %s", t.shellquote(ROOT .. "/" .. d), t.shellquote(work .. "/" .. d)))
  end
  bindir = t.tmpdir()
  os.execute(string.format("ln -s %s %s/netlua", t.shellquote(NETLUA), bindir))
end

-- The shell line that runs `cmd` in the work directory.
local function in_work(cmd)
  return string.format("cd %s && PATH=%s:$PATH && export PATH && %s",
    t.shellquote(work), t.shellquote(bindir), cmd)
end

-- `cmd` for a Lua block: saved under its own name or a numbered one.
local function save_lua(block, code)
  local name = block.code:match("^%-%- ([%w_.-]+%.lua):") or ("block" .. block.line .. ".lua")
  t.writefile(work .. "/" .. name, code)
  return "netlua " .. name
end

local function run_foreground(cmd, shown, what, status)
  local out, err, code = t.sh(in_work("timeout -s KILL 60 sh -c " .. t.shellquote(cmd)))
  t.eq(code, status or 0, what .. " exit status; stderr:\n" .. err .. "\nstdout:\n" .. out)
  if shown then check_shown(shown, out .. "\n" .. err, what) end
end

local servers = {} -- this section's: {pid=, dir=, shown=, what=}
local GUARD = 300 -- seconds a server may live, whatever happens

-- Waits (at most `tries` * 0.05 s) until dir/name exists; returns its text.
local function wait_file(dir, name, tries)
  for _ = 1, tries do
    local text = t.readfile(dir .. "/" .. name)
    if text then return text end
    time.sleep(0.05)
  end
end

-- Starts `cmd` in the background: its pid goes to DIR/pid, its output to
-- DIR/out and DIR/err, its exit status, once it ends, to DIR/status. A
-- guard kills it after GUARD seconds; the guard goes when it ends (so it
-- never kills a process that took over its pid).
local function start_server(cmd, shown, what)
  local dir = t.tmpdir()
  local script = string.format("%s & pid=$!; echo $pid > %s/pid.tmp && mv %s/pid.tmp %s/pid; " ..
    "( trap 'kill $nap; exit' TERM; sleep %d & nap=$!; wait $nap; kill -KILL $pid ) > /dev/null 2>&1 & guard=$!; " ..
    "wait $pid; echo $? > %s/status.tmp && mv %s/status.tmp %s/status; kill $guard 2> /dev/null",
    cmd, dir, dir, dir, GUARD, dir, dir, dir)
  os.execute(in_work(string.format("sh -c %s > %s/out 2> %s/err < /dev/null &",
    t.shellquote(script), dir, dir)))
  local pid = tonumber(wait_file(dir, "pid", 400))
  t.ok(pid, what .. " started")
  servers[#servers + 1] = {pid = pid, dir = dir, shown = shown, what = what}
  for _ = 1, 400 do
    if (t.readfile(dir .. "/out") or ""):find("\n") then return end
    if t.readfile(dir .. "/status") then break end
    time.sleep(0.05)
  end
  error(what .. " never printed its first line; stderr:\n" .. tostring(t.readfile(dir .. "/err")), 0)
end

-- Ends this section's servers (SIGTERM; the guard's SIGKILL if that does
-- not end one); checks that
-- each ran until then, ended as an interrupt ends netlua (143 for
-- SIGTERM; 0, or 130, for a script that handles it) rather
-- than with a sanitizer's report, and printed what its block shows.
local function stop_servers()
  local list = servers
  servers = {}
  for _, s in ipairs(list) do
    s.died_before = t.readfile(s.dir .. "/status")
    os.execute("kill -TERM " .. s.pid .. " 2>/dev/null")
  end
  for _, s in ipairs(list) do
    s.status = wait_file(s.dir, "status", 400)
    if s.status == nil then -- a failure of its own: not left to the guard
      os.execute("kill -KILL " .. s.pid .. " 2>/dev/null")
      s.status = "none: still running 20 s after SIGTERM, killed"
    end
  end
  for _, s in ipairs(list) do
    local printed = (t.readfile(s.dir .. "/out") or "") .. "\n" .. (t.readfile(s.dir .. "/err") or "")
    t.test(s.what .. ": ran until the end of its section, printed what the tutorial shows", function()
      t.ok(not s.died_before, "it ended early, status " .. tostring(s.died_before) .. ":\n" .. printed)
      local status = tonumber(s.status)
      t.ok(status == 143 or status == 130 or status == 0, "SIGTERM ended it with status " .. tostring(s.status) .. ":\n" .. printed)
      check_shown(s.shown, printed, s.what)
    end)
  end
end

local function is_root()
  local p = io.popen("id -u")
  local uid = p:read("l")
  p:close()
  return uid == "0"
end

-- Runs one block of the section whose ports are `ports`. Returns false when
-- it was a server that could not start (the rest of the section skips).
local function run_block(file, b, ports, section_skip)
  local what = string.format("%s:%d (%s)", file, b.line, b.info)
  local code = substitute(b.code, ports)
  local why = section_skip or b.skip or (b.tags.root and not is_root() and "needs root or CAP_NET_RAW (raw sockets)")
    or missing_tool(code)
  if why then
    t.skip(what, why)
    return not b.tags.server
  end
  local ok = true
  t.test(what, function()
    if b.tags.excerpt then
      local file = b.info:match("excerpt%s+(%S+)")
      local text = t.readfile(ROOT .. "/" .. tostring(file))
      t.ok(text, "the excerpt's file " .. tostring(file) .. " exists")
      t.ok(text:find(b.code, 1, true), "the excerpt is in " .. file .. " as shown")
    elseif b.lang == "lua" then
      local cmd = save_lua(b, code)
      if b.tags.server then
        ok = false
        start_server(cmd, {}, what)
        ok = true
      else
        run_foreground(cmd, nil, what)
      end
    else
      for _, c in ipairs(commands(code)) do
        if b.tags.server then
          ok = false
          start_server(c.cmd, c.shown, what)
          ok = true
        else
          run_foreground(c.cmd, c.shown, what .. " `" .. c.cmd .. "`", b.tags.fails and 1 or 0)
        end
      end
    end
  end)
  return ok
end

-- ---- the cases ---------------------------------------------------------------

local EN, ZH = ROOT .. "/docs/tutorial.md", ROOT .. "/docs/tutorial.zh.md"
local items = parse(EN)
setup()

t.test("tutorial.zh.md has the same code blocks as tutorial.md", function()
  local en, zh = blocks_of(items), blocks_of(parse(ZH))
  for i = 1, math.max(#en, #zh) do
    local a, b = en[i], zh[i]
    t.ok(a and b, string.format("block %d: tutorial.md has %d blocks, tutorial.zh.md %d", i, #en, #zh))
    if a.info ~= b.info or a.code ~= b.code or a.skip ~= b.skip then
      error(string.format("tutorial.md:%d and tutorial.zh.md:%d differ:\n%s\n---\n%s",
        a.line, b.line, a.info .. "\n" .. a.code, b.info .. "\n" .. b.code), 0)
    end
  end
end)

do
  local ports, section_skip = {}, nil
  for _, it in ipairs(items) do
    if it.heading then
      stop_servers()
      ports, section_skip = {}, nil
    elseif (it.lang == "lua" or it.lang == "sh") then
      if not run_block("tutorial.md", it, ports, section_skip) then
        section_skip = "its section's server (above) did not run"
      end
    end
  end
  stop_servers()
end

-- ---- the exercises -------------------------------------------------------------

local STEP_KEYS = {send = true, expect = true, expect_line = true, expect_bytes = true,
  expect_close = true, sleep = true}

-- The exercise names: specs/exercise_NAME.lua.
local function exercises()
  local p = io.popen("ls " .. t.shellquote(ROOT .. "/specs"))
  local names = {}
  for f in p:lines() do names[#names + 1] = f:match("^exercise_(.+)%.lua$") end
  p:close()
  table.sort(names)
  return names
end

local tutorial_text = t.readfile(EN)
local names = exercises()
t.test("the tutorial has exercises", function() t.ok(#names >= 8, #names .. " specs") end)

-- A server that answers nothing right: on the port given, it closes every
-- TCP connection at once and answers every UDP datagram with "?". Each
-- spec must fail it.
local WRONG = [[
local socket = require "socket"
local port = tonumber(arg[1])
local tcp = assert(socket.bind("127.0.0.1", port))
local udp = assert(socket.udp())
assert(udp:setsockname("127.0.0.1", port))
print("listening"); io.stdout:flush()
while true do
  local r = socket.select({tcp, udp}, nil, 1)
  for _, s in ipairs(r) do
    if s == tcp then
      local c = tcp:accept()
      if c then c:close() end
    else
      local _, ip, from = udp:receivefrom()
      if ip then udp:sendto("?", ip, from) end
    end
  end
end
]]

for _, name in ipairs(names) do
  local spec_path = "specs/exercise_" .. name .. ".lua"
  local solution = "docs/solutions/" .. name .. ".lua"
  t.test(name .. ": the spec is well formed and the tutorial shows it", function()
    local spec = dofile(ROOT .. "/" .. spec_path)
    t.eq(type(spec.title), "string", "title")
    t.ok(type(spec.dialogues) == "table" and #spec.dialogues > 0, "dialogues")
    for _, d in ipairs(spec.dialogues) do
      t.eq(type(d.name), "string", "dialogue name")
      for i, step in ipairs(d.steps) do
        local n = 0
        for k in pairs(step) do
          if STEP_KEYS[k] then n = n + 1 else t.eq(k, "within", d.name .. " step " .. i .. " key") end
        end
        t.eq(n, 1, d.name .. " step " .. i .. " actions")
      end
    end
    t.ok(t.readfile(ROOT .. "/" .. solution), solution .. " exists")
    t.ok(tutorial_text:find(spec_path, 1, true), "tutorial.md names " .. spec_path)
    t.ok(tutorial_text:find(solution, 1, true), "tutorial.md names " .. solution)
  end)
  if not have_tool("check") then
    t.skip(name .. ": netlua -m check passes the solution and fails a wrong server",
      "needs `netlua -m check` (labcheck), which this build does not have yet")
  else
    t.test(name .. ": netlua -m check passes the solution", function()
      local out, err, code = t.sh(in_work(string.format("timeout -s KILL 120 netlua -m check %s --spec %s",
        solution, spec_path)))
      t.eq(code, 0, out .. err)
      t.ok(not out:find("FAIL"), out)
    end)
    if name == "meeting" then
      t.test("meeting: netlua -m check fails the solution serving one client at a time", function()
        local source = assert(t.readfile(ROOT .. "/" .. solution))
        local one_by_one, n = source:gsub("task%.spawn%(serve, client%)", "serve(client)")
        t.eq(n, 1, "the solution spawns a task per client")
        t.writefile(work .. "/one_by_one.lua", one_by_one)
        local out, err, code = t.sh(in_work(string.format("timeout -s KILL 120 netlua -m check one_by_one.lua --spec %s",
          spec_path)))
        t.eq(code, 1, out .. err)
        t.match(out, "FAIL")
      end)
    end
    t.test(name .. ": netlua -m check fails a server that answers nothing right", function()
      t.writefile(work .. "/wrong.lua", WRONG)
      local out, err, code = t.sh(in_work(string.format("timeout -s KILL 120 netlua -m check wrong.lua --spec %s",
        spec_path)))
      t.eq(code, 1, out .. err)
      t.match(out, "FAIL")
    end)
  end
end

t.done()
