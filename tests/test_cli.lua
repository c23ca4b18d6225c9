-- cli.lua: the netlua command line, run as a child process: arguments,
-- options, exit codes, error messages, require paths, signals.
local t = require "testlib"
local q = t.shellquote

t.test("script gets arg table and ... like lua.c", function()
  local path, dir = t.script([[
    print(arg[0], arg[1], arg[2], #arg, arg[-1] ~= nil)
    print(select("#", ...), ...)
  ]])
  local out, err, code = t.netlua(q(path) .. " a 'b c'")
  t.eq(code, 0, err)
  t.eq(out, path .. "\ta\tb c\t2\ttrue\n2\ta\tb c\n")
  t.rmtree(dir)
end)

t.test("-e runs code; with no script arg[0] is the program, as in lua.c", function()
  local out, err, code = t.netlua("-e 'print(arg[1], arg[2], #arg)' -e 'x=1'")
  t.eq(code, 0, err)
  t.eq(out, "-e\tprint(arg[1], arg[2], #arg)\t4\n")
end)

t.test("options before a script get negative arg indices", function()
  local path, dir = t.script("print(arg[-2], arg[-1], arg[0])")
  local out, err, code = t.netlua("-e 'x=1' " .. q(path))
  t.eq(code, 0, err)
  t.eq(out, "-e\tx=1\t" .. path .. "\n")
  t.rmtree(dir)
end)

t.test("-e then a script: both run in order", function()
  local path, dir = t.script("print('script', X)")
  local out, _, code = t.netlua("-e 'X=7' " .. q(path))
  t.eq(code, 0)
  t.eq(out, "script\t7\n")
  t.rmtree(dir)
end)

t.test("-l mod and -l g=mod load modules into globals", function()
  local dir = t.tmpdir()
  t.writefile(dir .. "/greet.lua", "return {hello = 'hi'}")
  local out, err, code = t.sh(string.format(
    "NETLUA_PATH=%s %s -l greet -l g=greet -e 'print(greet.hello, g == greet)'",
    q(dir), q(t.NETLUA)))
  t.eq(code, 0, err)
  t.eq(out, "hi\ttrue\n")
  t.rmtree(dir)
end)

t.test("-v prints the version and -h the help, both exit 0", function()
  local out, _, code = t.netlua("-v")
  t.eq(code, 0)
  t.match(out, "^netlua %d+%.%d+%.%d+ %(Lua 5%.4")
  out, _, code = t.netlua("-h")
  t.eq(code, 0)
  t.match(out, "usage: netlua")
  t.match(out, "NETLUA_PATH")
end)

t.test("- runs the script from stdin with arguments", function()
  local out, err, code = t.netlua("- x y", {stdin = "print('from stdin', ...)"})
  t.eq(code, 0, err)
  t.eq(out, "from stdin\tx\ty\n")
end)

t.test("no script and stdin not a terminal: runs stdin", function()
  local out, _, code = t.netlua("", {stdin = "print(40 + 2)"})
  t.eq(code, 0)
  t.eq(out, "42\n")
end)

t.test("-i enters the REPL after the script and prints expression values", function()
  local path, dir = t.script("x = 41")
  local out, err, code = t.netlua("-i " .. q(path), {stdin = "x + 1\nreturn 'a', 'b'\n"})
  t.eq(code, 0, err)
  t.match(out, "42\n")
  t.match(out, "a\tb\n")
  t.rmtree(dir)
end)

t.test("REPL on a terminal prints values and continues incomplete lines", function()
  if not os.execute("command -v script >/dev/null 2>&1") then
    t.skip("REPL on a terminal", "no util-linux script(1)")
    return
  end
  local out, _, code = t.sh(string.format(
    "script -qec %s /dev/null", q(q(t.NETLUA))),
    {stdin = "1 + 2\nfunction f()\nreturn 'multi'\nend\nf()\n"})
  t.eq(code, 0)
  t.match(out, "Lua 5%.4")
  t.match(out, "3\r?\n")
  t.match(out, "multi\r?\n")
end)

t.test("readline is loaded by the REPL, not by scripts", function()
  local probe = "print(io.open('/proc/self/maps'):read('a'):find('libreadline') and 'rl-mapped' or 'rl-absent')"
  local out, err, code = t.netlua("-e " .. q(probe))
  t.eq(code, 0, err)
  t.eq(out, "rl-absent\n")
  if not os.execute("command -v script >/dev/null 2>&1") then return end
  out, _, code = t.sh(string.format("script -qec %s /dev/null", q(q(t.NETLUA))),
    {stdin = probe .. "\n"})
  t.eq(code, 0)
  t.match(out, "[\r\n]rl%-mapped\r?\n", "line editing in the REPL")
end)

t.test("tracebacks through embedded Lua halves name their file and line", function()
  -- The halves are embedded as bytecode (tools/luadump.c): debug info kept.
  local _, err, code = t.netlua("-e " .. q("require('http').get(1)"))
  t.eq(code, 1)
  t.match(err, "%[netlua%] http%.lua:%d+: in function 'http%.get'")
end)

t.test("uncaught error: netlua: message and traceback on stderr, exit 1", function()
  local path, dir = t.script("local function f() error('boom') end\nf()\n")
  local out, err, code = t.netlua(q(path))
  t.eq(code, 1)
  t.eq(out, "")
  t.match(err, "^netlua: [^\n]*script%.lua:1: boom\n")
  t.match(err, "stack traceback:")
  t.match(err, "in local 'f'")
  t.rmtree(dir)
end)

t.test("an error object that is a table is reported by type", function()
  local _, err, code = t.netlua("-e 'error({})'")
  t.eq(code, 1)
  t.match(err, "error object is a table value")
end)

t.test("an error object with __tostring gets its traceback in main as in a thread (main printed the message alone)", function()
  local code_text = "local e = setmetatable({}, {__tostring = function() return 'custom' end}) "
  local _, err, code = t.netlua("-e " .. q(code_text .. "error(e)"))
  t.eq(code, 1)
  t.match(err, "^netlua: custom\nstack traceback:")
  local out = t.netlua("-e " .. q("print(select(2, require('thread').spawn(function() " .. code_text .. "error(e) end):join()))"))
  t.match(out, "^custom\nstack traceback:")
end)

t.test("bad option: one usage line on stderr, exit 2", function()
  local out, err, code = t.netlua("-z")
  t.eq(code, 2)
  t.eq(out, "")
  t.match(err, "unrecognized option '%-z'")
  t.match(err, "\nusage: netlua [^\n]*\n$")
  local _, err2, code2 = t.netlua("-e")
  t.eq(code2, 2)
  t.match(err2, "'%-e' needs an argument")
end)

t.test("unreadable script: message names the file, exit 1", function()
  local _, err, code = t.netlua("/nonexistent/dir/missing.lua")
  t.eq(code, 1)
  t.match(err, "^netlua: cannot open /nonexistent/dir/missing%.lua")
end)

t.test("syntax error in the script: exit 1 with the position", function()
  local path, dir = t.script("x = = 1\n")
  local _, err, code = t.netlua(q(path))
  t.eq(code, 1)
  t.match(err, "script%.lua:1:")
  t.rmtree(dir)
end)

t.test("require finds modules next to the script first", function()
  local dir = t.tmpdir()
  t.writefile(dir .. "/helper.lua", "return 'beside the script'")
  t.writefile(dir .. "/main.lua", "print((require 'helper'))")
  local other = t.tmpdir()
  t.writefile(other .. "/helper.lua", "return 'from NETLUA_PATH'")
  local out, err, code = t.sh(string.format("cd / && NETLUA_PATH=%s %s %s",
    q(other), q(t.NETLUA), q(dir .. "/main.lua")))
  t.eq(code, 0, err)
  t.eq(out, "beside the script\n")
  os.remove(dir .. "/helper.lua")
  out = t.sh(string.format("cd / && NETLUA_PATH=%s %s %s",
    q(other), q(t.NETLUA), q(dir .. "/main.lua")))
  t.eq(out, "from NETLUA_PATH\n")
  t.rmtree(dir); t.rmtree(other)
end)

t.test("built-in modules win over files of the same name", function()
  local dir = t.tmpdir()
  t.writefile(dir .. "/json.lua", "return 'impostor'")
  t.writefile(dir .. "/time.lua", "return 'impostor'")
  t.writefile(dir .. "/main.lua",
    "print(type(require 'json'), type(require 'time'), type(require('json').encode))")
  local out, err, code = t.netlua(q(dir .. "/main.lua"))
  t.eq(code, 0, err)
  t.eq(out, "table\ttable\tfunction\n")
  t.rmtree(dir)
end)

t.test("writing to a closed pipe is an error return, not SIGPIPE", function()
  local dir = t.tmpdir()
  local script = dir .. "/w.lua"
  t.writefile(script, [[
    io.stdout:setvbuf("no")
    for i = 1, 100000 do
      local ok, err = io.stdout:write(string.rep("x", 4096))
      if not ok then io.stderr:write("write failed: ", err, "\n"); os.exit(3) end
    end
    os.exit(4)
  ]])
  local _, err = t.sh(string.format("(%s %s; echo \"status=$?\" >&2) | head -c 1 >/dev/null",
    q(t.NETLUA), q(script)))
  t.match(err, "write failed: [Bb]roken pipe")
  t.match(err, "status=3")
  t.rmtree(dir)
end)

-- Ctrl-C (SIGINT) during a wait, caught, in a busy loop, twice: the cases
-- test_signals.lua runs for SIGTERM and SIGHUP too (testlib).
t.interrupt_cases("INT", 130)

t.test("Ctrl-C in running Lua code is catchable too", function()
  local out, err, code = t.interrupt_script([[
    print("ready"); io.stdout:flush()
    local ok, err = pcall(function() while true do end end)
    io.stderr:write("caught ", tostring(err), "\n"); io.stderr:flush()
    require("time").sleep(60)
  ]], {"caught"})
  t.eq(out, "ready\n")
  t.match(err, "caught interrupted\n")
  t.eq(code, 130)
end)

t.test("Lua and lua-cjson are linked statically, libcurl not at all", function()
  local out, _, code = t.sh("ldd " .. q(t.NETLUA))
  t.eq(code, 0)
  t.ok(not out:find("liblua"), "no shared liblua in:\n" .. out)
  t.ok(not out:find("libcurl"), "libcurl is loaded on first use, not linked:\n" .. out)
end)

t.test("make install puts a binary that runs from any directory", function()
  local prefix = t.tmpdir()
  local _, err, code = t.sh("make -s install PREFIX=" .. q(prefix))
  t.eq(code, 0, err)
  local out, err2, code2 = t.sh(string.format(
    "cd / && %s/bin/netlua -e 'print(require(\"json\").encode({1}), type(require(\"time\").now()))'",
    q(prefix)))
  t.eq(code2, 0, err2)
  t.eq(out, "[1]\tnumber\n")
  t.rmtree(prefix)
end)

-- stdout into a file is fully buffered, and flushed whenever a thread is
-- about to wait: what io.write wrote is there while it waits, in every
-- thread (before, it showed only at exit or every 4 KiB, unless the script
-- asked for line buffering; print flushes each line itself, as in Lua).
t.test("stdout into a file shows what was printed once the program waits", function()
  local script = t.script([[
    local thread, time = require "thread", require "time"
    print("main before its wait")
    local th = thread.spawn(function()
      local time = require "time"
      io.write("thread before its wait\n")
      time.sleep(30)
    end)
    time.sleep(30)
  ]])
  local pid, _, dir = t.start_program(script, "", 60, "main before its wait")
  local out
  for _ = 1, 400 do
    out = t.readfile(dir .. "/out") or ""
    if out:find("thread before its wait", 1, true) then break end
    require("time").sleep(0.05)
  end
  os.execute("kill -KILL " .. pid)
  t.match(out, "main before its wait\n")
  t.match(out, "thread before its wait\n")
  t.rmtree(dir)
end)

-- print writes into stdout's buffer as io.write does (Lua's print flushed
-- every line: one write(2) a line for a server's log): into a file the
-- line is there once the program waits, not the moment print returns.
t.test("print into a file is buffered: its lines are out by the next wait", function()
  local script, dir = t.script([[
    local path = ...
    local function content()
      local f = assert(io.open(path))
      local text = f:read("a")
      f:close()
      return text
    end
    print("one", 2, nil, true)
    local before = content()
    require("time").sleep(0.01)
    io.stderr:write("before=[" .. before .. "] after=[" .. content() .. "]")
  ]])
  local _, err, code = t.sh(string.format("%s %s %s/log > %s/log", t.shellquote(t.NETLUA),
    t.shellquote(script), dir, dir))
  t.eq(code, 0, err)
  t.eq(err, "before=[] after=[one\t2\tnil\ttrue\n]")
  t.eq(t.readfile(dir .. "/log"), "one\t2\tnil\ttrue\n")
  t.rmtree(dir)
end)

-- Lua's print wrote each value with its own fwrite, so two threads
-- printing at once mixed their lines (about 1,000 of 40,000 here): each
-- print's line is written whole under stdout's lock.
t.test("threads printing at once never mix their lines", function()
  local script, dir = t.script([[
    local thread = require "thread"
    local function body(tag, last)
      for i = 1, 20000 do print(tag, i, tag:rep(20), last) end
    end
    local a, b = thread.spawn(body, "A", "x"), thread.spawn(body, "B", "y")
    a:join()
    b:join()
  ]])
  local _, err, code = t.sh(string.format("%s %s > %s/log", t.shellquote(t.NETLUA), t.shellquote(script), dir))
  t.eq(code, 0, err)
  local count = {A = 0, B = 0}
  for line in io.lines(dir .. "/log") do
    local tag, number = line:match("^([AB])\t(%d+)\t")
    local whole = tag and table.concat({tag, number, tag:rep(20), tag == "A" and "x" or "y"}, "\t")
    t.ok(line == whole, "a mixed line: " .. line)
    count[tag] = count[tag] + 1
  end
  t.eq(count.A, 20000)
  t.eq(count.B, 20000)
  t.rmtree(dir)
end)

-- With stdout and stderr in one file, what the script printed comes
-- before the error that ends it, a task or a thread: each report on
-- stderr flushes stdout first.
t.test("printed lines come before the error reports that follow them", function()
  local cases = {
    {"print('printed first') error('boom')", "netlua: .*boom"},
    {"local task = require 'task' task.spawn(function() print('printed first') error('boom') end)",
     "netlua: error in task 1: .*boom"},
    {"local thread = require 'thread' thread.spawn(function() print('printed first') error('boom') end)",
     "Exception in thread Thread%-1:\n.*boom"},
  }
  for _, case in ipairs(cases) do
    local script, dir = t.script(case[1])
    t.sh(string.format("%s %s > %s/log 2>&1", t.shellquote(t.NETLUA), t.shellquote(script), dir))
    local log = t.readfile(dir .. "/log")
    t.match(log, "^printed first\n" .. case[2], case[1])
    t.rmtree(dir)
  end
end)

t.done()
