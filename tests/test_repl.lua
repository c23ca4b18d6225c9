-- test_repl.lua: the REPL on a terminal. netlua runs on a pseudo-terminal
-- driven by a small Python program (Python's pty module): it types keys,
-- waits for what netlua prints, sends signals, and hands back everything
-- the terminal showed and the exit status.
local t = require "testlib"
local json = require "json"

local PYTHON = "/usr/bin/python3"

local DRIVER = [==[
import json, os, pty, select, signal, sys, time
steps, cmd = json.loads(sys.argv[1]), sys.argv[2:]
pid, fd = pty.fork()
if pid == 0:
    os.environ["TERM"] = "dumb"
    os.execvp(cmd[0], cmd)
out, mark = b"", 0
def read_some(timeout):
    global out
    r, _, _ = select.select([fd], [], [], timeout)
    if r:
        try:
            data = os.read(fd, 4096)
        except OSError:
            return False
        if not data:
            return False
        out += data
    return True
def wait_for(text):
    global mark, out
    deadline = time.time() + 15
    while time.time() < deadline:
        i = out.replace(b"\r\n", b"\n").find(text.encode(), mark)
        if i >= 0:
            mark = i + len(text.encode())
            return
        if not read_some(0.05):
            break
    out += ("\n[driver: no %r]\n" % text).encode()
    mark = len(out.replace(b"\r\n", b"\n"))
for kind, arg in steps:
    if kind == "type":
        os.write(fd, arg.encode())
    elif kind == "wait":
        wait_for(arg)
    elif kind == "kill":
        os.kill(pid, getattr(signal, arg))
    elif kind == "pause":
        end = time.time() + arg
        while time.time() < end:
            read_some(0.05)
deadline = time.time() + 15
while time.time() < deadline and read_some(0.1):
    pass
try:
    os.kill(pid, signal.SIGKILL)
except ProcessLookupError:
    pass
_, status = os.waitpid(pid, 0)
sys.stdout.write(out.decode("utf-8", "replace").replace("\r\n", "\n"))
sys.stdout.write("[exit %d]\n" % os.waitstatus_to_exitcode(status))
]==]

local driver_dir = t.tmpdir()
local driver = driver_dir .. "/pty_driver.py"
t.writefile(driver, DRIVER)
local usable = os.execute(PYTHON .. " -c 'import pty' 2>/dev/null")

-- Runs the REPL through `steps` ({"type", keys}, {"wait", text},
-- {"kill", "SIGTERM"}, {"pause", seconds}); returns the transcript (CRLF
-- turned into LF) and the exit status.
local function repl(steps, env)
  local out = t.sh(string.format("%s%s %s %s %s", env or "", PYTHON, t.shellquote(driver),
    t.shellquote(json.encode(steps)), t.shellquote(t.NETLUA)))
  local code = tonumber(out:match("%[exit (%-?%d+)%]\n$"))
  return out, code
end

-- The transcript from `> input` up to the next prompt.
local function answer(out, input)
  local from = out:find("> " .. input .. "\n", 1, true)
  if not from then return nil end
  from = from + #input + 3
  local to = out:find("\n>", from, true)
  return out:sub(from, to and to or -1)
end

local function case(name, fn)
  t.test(name, function()
    if not usable then return t.skip(name, "no " .. PYTHON .. " with pty") end
    fn()
  end)
end

case("tables show their contents: nested, sorted keys, cycles, depth limit", function()
  local out, code = repl{
    {"wait", "> "}, {"type", "{1, 2, b = 2, a = {x = true}, [10] = 'ten', ['a b'] = 1}\r"},
    {"wait", "\n> "}, {"type", "t = {name = 'loop'}; t.self = t; return t\r"},
    {"wait", "\n> "}, {"type", "{{{{{{'deep'}}}}}}\r"},
    {"wait", "\n> "}, {"type", "{}, 'text', 1.0, nil\r"},
    {"wait", "\n> "}, {"type", "require('json').decode('{\"list\":[1,2],\"s\":\"\\\\u00e9\\\\n\",\"e\":[]}')\r"},
    {"wait", "\n> "}, {"type", "\4"},
  }
  t.eq(code, 0, out)
  t.eq(answer(out, "{1, 2, b = 2, a = {x = true}, [10] = 'ten', ['a b'] = 1}"),
    '{ 1, 2, [10] = "ten", a = { x = true }, ["a b"] = 1, b = 2 }\n')
  t.eq(answer(out, "t = {name = 'loop'}; t.self = t; return t"),
    '{ name = "loop", self = <cycle> }\n')
  t.eq(answer(out, "{{{{{{'deep'}}}}}}"), "{ { { { {...} } } } }\n")
  t.eq(answer(out, "{}, 'text', 1.0, nil"), "{}\ttext\t1.0\tnil\n")
  t.eq(answer(out, [[require('json').decode('{"list":[1,2],"s":"\\u00e9\\n","e":[]}')]]),
    '{ e = {}, list = { 1, 2 }, s = "\195\169\\n" }\n')
end)

case("a big table spreads over lines, array items filling them", function()
  local out, code = repl{
    {"wait", "> "}, {"type", "r = {} for i = 1, 30 do r[i] = i * 1000 end r.key = 'v' return r\r"},
    {"wait", "\n> "}, {"type", "\4"},
  }
  t.eq(code, 0, out)
  t.eq(answer(out, "r = {} for i = 1, 30 do r[i] = i * 1000 end r.key = 'v' return r"), [[
{
  1000, 2000, 3000, 4000, 5000, 6000, 7000, 8000, 9000, 10000, 11000, 12000,
  13000, 14000, 15000, 16000, 17000, 18000, 19000, 20000, 21000, 22000, 23000,
  24000, 25000, 26000, 27000, 28000, 29000, 30000,
  key = "v"
}
]])
end)

case("=expr and plain expressions both print their values", function()
  local out, code = repl{
    {"wait", "> "}, {"type", "=1 + 1\r"},
    {"wait", "\n> "}, {"type", "2 + 2\r"},
    {"wait", "\n> "}, {"type", "={k = 'v'}\r"},
    {"wait", "\n> "}, {"type", "{k = 'w'}\r"},
    {"wait", "\n> "}, {"type", "\4"},
  }
  t.eq(code, 0, out)
  t.eq(answer(out, "=1 + 1"), "2\n")
  t.eq(answer(out, "2 + 2"), "4\n")
  t.eq(answer(out, "={k = 'v'}"), '{ k = "v" }\n')
  t.eq(answer(out, "{k = 'w'}"), '{ k = "w" }\n')
end)

case("Ctrl-C at the prompt discards the line being typed", function()
  local out, code = repl{
    {"wait", "> "}, {"type", "x = 1 +"}, {"wait", "x = 1 +"}, {"type", "\3"},
    {"wait", "\n> "}, {"type", "print('fresh ' .. tostring(x))\r"},
    {"wait", "fresh nil\n> "},
    {"type", "for i = 1, 2 do"}, {"type", "\r"}, {"wait", ">> "}, {"type", "print(i)"},
    {"wait", "print(i)"}, {"type", "\3"},
    {"wait", "\n> "}, {"type", "print('again')\r"},
    {"wait", "again\n> "}, {"type", "\4"},
  }
  t.eq(code, 0, out)
  t.match(out, "> x = 1 %+%^C\n> print%('fresh ' %.%. tostring%(x%)%)\nfresh nil\n", "the line is dropped")
  t.match(out, ">> print%(i%)%^C\n> print%('again'%)\nagain\n", "the whole statement is dropped")
  t.ok(not out:find("interrupted", 1, true), out)
  t.ok(not out:find("syntax error", 1, true), out)
end)

case("Ctrl-D on a >> line abandons the statement cleanly", function()
  local out, code = repl{
    {"wait", "> "}, {"type", "if true then\r"},
    {"wait", ">> "}, {"type", "\4"},
    {"wait", "\n> "}, {"type", "print('next')\r"},
    {"wait", "next\n> "}, {"type", "\4"},
  }
  t.eq(code, 0, out)
  t.ok(not out:find("error object", 1, true), out)
  t.match(out, ">> \n> print%('next'%)\nnext\n")
end)

case("SIGTERM at the prompt ends the REPL as an interrupt (143)", function()
  local out, code = repl{
    {"wait", "> "}, {"type", "half typed"}, {"wait", "half typed"}, {"kill", "SIGTERM"},
  }
  t.eq(code, 143, out)
end)

case("tasks go on running while the prompt waits", function()
  local out, code = repl{
    {"wait", "> "}, {"type", "task = require 'task'\r"},
    {"wait", "\n> "}, {"type", "ticks = 0; task.spawn(function() while not stop do ticks = ticks + 1; task.sleep(0.01) end end)\r"},
    {"wait", "\n> "}, {"pause", 0.5}, {"type", "ticks > 5\r"},
    {"wait", "\n> "}, {"type", "stop = true\r"},
    {"wait", "\n> "}, {"type", "\4"},
  }
  t.eq(code, 0, out)
  t.eq(answer(out, "ticks > 5"), "true\n")
end)

-- A libreadline.so.8 without readline's functions, found first through
-- LD_LIBRARY_PATH: the REPL then reads plain lines with stdio.
local function no_readline()
  local src = driver_dir .. "/fake.c"
  t.writefile(src, "int netlua_not_readline;\n")
  local ok = os.execute(string.format("cc -shared -fPIC -o %s/libreadline.so.8 %s 2>/dev/null",
    driver_dir, src))
  return ok and "LD_LIBRARY_PATH=" .. t.shellquote(driver_dir) .. " " or nil
end

case("without readline: Ctrl-C drops the line, Ctrl-D on >> drops the statement", function()
  local env = no_readline()
  if not env then return t.skip("without readline", "no cc to build a stand-in library") end
  local out, code = repl({
    {"wait", "> "}, {"type", "{1, 2}\r"},
    {"wait", "\n> "}, {"type", "x = 1 +"}, {"wait", "x = 1 +"}, {"type", "\3"},
    {"wait", "\n> "}, {"type", "print('fresh ' .. tostring(x))\r"},
    {"wait", "fresh nil\n> "}, {"type", "if true then\r"},
    {"wait", ">> "}, {"type", "\4"},
    {"wait", "\n> "}, {"type", "print('next')\r"},
    {"wait", "next\n> "}, {"type", "\4"},
  }, env)
  t.eq(code, 0, out)
  t.eq(answer(out, "{1, 2}"), "{ 1, 2 }\n")
  t.match(out, "> x = 1 %+%^C\n> print", "the line is dropped")
  t.match(out, ">> \n> print%('next'%)\nnext\n", "the statement is dropped, the REPL goes on")
  t.ok(not out:find("error object", 1, true), out)
end)

t.rmtree(driver_dir)
t.done()
