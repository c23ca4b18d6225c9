-- test_signals.lua: SIGTERM and SIGHUP are Ctrl-C: the catchable error
-- "interrupted", to-be-closed variables run, and uncaught the program ends
-- with 128 + the signal (143, 129). Ctrl-C itself is in test_cli.lua.
package.path = (arg[0]:match("^(.*)/") or ".") .. "/?.lua;" .. package.path
local t = require "testlib"

-- A SIGHUP ignored by whoever started the tests is ignored by every
-- netlua they start too (as it should): the SIGHUP cases then skip.
local function hup_ignored()
  local out = t.sh("grep '^SigIgn:' /proc/self/status")
  local mask = tonumber((out or ""):match("SigIgn:%s*(%x+)") or "0", 16)
  return mask % 2 == 1
end

-- During a wait, caught, in a busy loop, twice: the cases Ctrl-C passes
-- (test_cli.lua), for SIGTERM and SIGHUP.
t.interrupt_cases("TERM", 143)
t.interrupt_cases("HUP", 129, function() return hup_ignored() and "SIGHUP is ignored here" or nil end)

t.test("SIGTERM interrupts a busy loop in a task: exit 143", function()
  local out, err, code = t.interrupt_script([[
    local task = require "task"
    task.spawn(function()
      print("ready"); io.stdout:flush()
      local n = 0
      while true do n = n + 1 end
    end)
  ]], nil, "TERM")
  t.eq(code, 143)
  t.eq(out, "ready\n")
  t.match(err, "interrupted")
end)

t.test("SIGTERM while waiting for a thread: the thread stops, exit 143", function()
  local out, err, code = t.interrupt_script([[
    local thread = require "thread"
    local th = thread.spawn(function() require("time").sleep(60) end)
    print("ready"); io.stdout:flush()
    th:join()
  ]], nil, "TERM")
  t.eq(code, 143)
  t.eq(out, "ready\n")
  t.match(err, "^netlua: interrupted\n")
  t.ok(not err:find("still waiting"), "the script had not ended: no listing\n" .. err)
end)

t.test("SIGHUP ignored from the start (nohup) stays ignored", function()
  local path, dir = t.script([[
    os.execute("kill -HUP $PPID")
    require("time").sleep(0.01)
    print("still here")
  ]])
  local out, err, code = t.sh("trap '' HUP; exec " .. t.shellquote(t.NETLUA) .. " " .. t.shellquote(path))
  t.eq(code, 0, err)
  t.eq(out, "still here\n")
  t.rmtree(dir)
end)

t.test("SIGHUP not ignored: the same script is interrupted, exit 129", function()
  if hup_ignored() then return t.skip(nil, "SIGHUP is ignored here") end
  local path, dir = t.script([[
    os.execute("kill -HUP $PPID")
    require("time").sleep(0.01)
    print("still here")
  ]])
  local out, err, code = t.netlua(t.shellquote(path))
  t.eq(code, 129)
  t.eq(out, "")
  t.match(err, "^netlua: interrupted\n")
  t.rmtree(dir)
end)

t.done()
