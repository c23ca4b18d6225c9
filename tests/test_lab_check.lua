-- test_lab_check.lua: `netlua -m check`, the exercise checker. Each spec in
-- specs/ passes against its script; deliberately wrong servers (Lua, and
-- /usr/bin/python3 through --server) fail with the expected and received
-- bytes shown and status 1; bad specs, a missing script and a server that
-- never becomes ready are status 2; the server is always stopped.
local t = require "testlib"

local function check(args)
  return t.netlua("-m check " .. args)
end

-- A spec file from source; returns its path.
local function spec(source)
  return (t.script(source, "spec.lua"))
end

local function gone(pid)
  return not os.execute("kill -0 " .. pid .. " 2>/dev/null")
end

-- ---- the repository's specs ---------------------------------------------------

local SPECS = {"timeserver", "server", "echoserver", "taskchatserver", "chatserver", "udp_echo",
  "tasktimeserver", "threadedserver"}

for _, name in ipairs(SPECS) do
  t.test("specs/" .. name .. ".lua passes against scripts/" .. name .. ".lua", function()
    local out, err, code = check(string.format("scripts/%s.lua --spec specs/%s.lua", name, name))
    t.eq(code, 0, out .. err)
    t.ok(not out:find("FAIL"), out)
    local passed, total = out:match("(%d+) of (%d+) dialogues passed")
    t.ok(passed and passed == total, out)
  end)
end

-- ---- wrong servers --------------------------------------------------------------

-- A Lua server (`netlua SERVER host port`) that does `body(client)` for each client.
local function lua_server(body)
  return t.script([[
    local socket = require "socket"
    local host, port = ...
    local server = assert(socket.bind(host, tonumber(port)))
    local kept = {}
    while true do
      local client = server:accept()
      kept[#kept + 1] = client
      ]] .. body .. [[
    end
  ]], "server.lua")
end

local HELLO_SPEC = [[
  return { args = {"{host}", "{port}"}, dialogues = {
    { name = "says hello", steps = { {send = "hi\n"}, {expect = "hello\n", within = %s}, {expect_close = true} } } } }
]]

t.test("a server that sends the wrong line: expected and received, status 1", function()
  local srv = lua_server([[client:receive("*l"); client:send("hellp\n"); client:close()]])
  local out, _, code = check(srv .. " --spec " .. spec(HELLO_SPEC:format(5)))
  t.eq(code, 1, out)
  t.match(out, "FAIL says hello")
  t.match(out, 'step 2: expect "hello\\n"', out)
  t.match(out, '\n       expected: "hello\\n"\n       received: "hellp\\n"\n', out)
  t.match(out, "\n                      %^ first difference: byte 5\n", out)
  t.match(out, "0 of 1 dialogues passed")
end)

t.test("a server that closes early: received nothing, then the close", function()
  local srv = lua_server([[client:close()]])
  local out, _, code = check(srv .. " --spec " .. spec(HELLO_SPEC:format(5)))
  t.eq(code, 1, out)
  t.match(out, 'received: nothing\n       then the server closed the connection\n', out)
end)

t.test("a server that never answers: the step's within runs out", function()
  local srv = lua_server([[client:receive("*l")]])
  local out, _, code = check(srv .. " --spec " .. spec(HELLO_SPEC:format(0.5)))
  t.eq(code, 1, out)
  t.match(out, 'expected: "hello\\n"\n       received: nothing\n       then nothing more within 0.5 s\n', out)
end)

t.test("skip: lines that never match are reported, the last five of them", function()
  local srv = lua_server([[for k = 1, 8 do client:send("noise " .. k .. "\n") end]])
  local out, _, code = check(srv .. " --spec " .. spec([[
    return { args = {"{host}", "{port}"}, dialogues = {
      { name = "waits for a signal", steps = { {expect_line = "^signal$", skip = true, within = 0.5} } } } }
  ]]))
  t.eq(code, 1, out)
  t.match(out, 'received: "noise 4\\nnoise 5\\nnoise 6\\nnoise 7\\nnoise 8\\n"\n' ..
    '       %(3 lines skipped before these%) none matched; then nothing more within 0%.5 s\n', out)
end)

t.test("a server that dies at start: says so and shows its stderr, status 1", function()
  local srv = t.script([[io.stderr:write("cannot start: the dog ate the port\n") os.exit(3)]])
  local out, _, code = check(srv .. " --spec " .. spec(HELLO_SPEC:format(5)))
  t.eq(code, 1, out)
  t.match(out, "FAIL the server exited with status 3 before it was ready", out)
  t.match(out, "  | cannot start: the dog ate the port\n", out)
end)

t.test("a server that dies during the check: the dialogues after it fail, its stderr shown", function()
  local srv = lua_server([[if #kept == 2 then -- the first was the checker's ready probe
      client:send("hello\n") client:close()
      io.stderr:write("oops, exiting\n") os.exit(4)
    end]])
  local out, _, code = check(srv .. " --spec " .. spec([[
    return { args = {"{host}", "{port}"}, dialogues = {
      { name = "first", steps = { {expect_line = "^hello$"} } },
      { name = "second", steps = { {sleep = 0.5} } },
      { name = "third", steps = { {expect_line = "^hello$"} } } } }
  ]]))
  t.eq(code, 1, out)
  t.match(out, "ok   first\n", out)
  t.match(out, "FAIL third\n", out)
  t.match(out, "exited with status 4\n", out)
  t.match(out, "the server exited with status 4 during the check", out)
  t.match(out, "  | oops, exiting\n", out)
end)

t.test("a server that never becomes ready: status 2, and it is stopped", function()
  local dir = t.tmpdir()
  local srv = t.script([[
    print("not listening") io.stdout:flush()
    require("time").sleep(60)
  ]])
  local pidfile = dir .. "/pid"
  local wrapped = t.script(string.format("#!/bin/sh\necho $$ > %s\nexec %s %s \"$@\"\n",
    pidfile, t.shellquote(t.NETLUA), t.shellquote(srv)), "server.sh")
  local out, err, code = check("--spec " .. spec([[
    return { args = {"{port}"}, ready_within = 1, dialogues = {
      { name = "x", steps = { {expect_close = true} } } } }
  ]]) .. " --server /bin/sh " .. t.shellquote(wrapped))
  t.eq(code, 2, out .. err)
  t.match(err, "did not accept connections on 127%.0%.0%.1:%d+ within 1 s", err)
  t.match(out, "  | not listening\n", out)
  local pid = tonumber(t.readfile(pidfile))
  t.ok(pid, "the server wrote its pid")
  t.ok(gone(pid), "the server was stopped")
end)

t.test("Ctrl-C stops the checker and the server", function()
  local dir = t.tmpdir()
  local srv = lua_server(string.format([[local f = io.open(%q, "w") f:write("x") f:close()]],
    dir .. "/connected"))
  local pidfile = dir .. "/pid"
  local wrapped = t.script(string.format("#!/bin/sh\necho $$ > %s\nexec %s %s \"$@\"\n",
    pidfile, t.shellquote(t.NETLUA), t.shellquote(srv)), "server.sh")
  local sp = spec([[
    return { args = {"{host}", "{port}"}, dialogues = {
      { name = "waits", steps = { {sleep = 60} } } } }
  ]])
  local out, err, code = t.sh(string.format(
    "%s -m check --spec %s --server /bin/sh %s > %s/out 2> %s/err & pid=$!; " ..
    "i=0; while ! grep -q checking %s/out && [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done; " ..
    "kill -INT $pid; wait $pid; status=$?; cat %s/out; cat %s/err >&2; exit $status",
    t.shellquote(t.NETLUA), sp, t.shellquote(wrapped), dir, dir, dir, dir, dir))
  t.eq(code, 130, out .. err)
  t.match(err, "interrupted; the server was stopped", err)
  local pid = tonumber(t.readfile(pidfile))
  t.ok(pid and gone(pid), "the server was stopped")
end)

-- ---- independent servers (--server) -----------------------------------------------

local PY_ECHO = [[
import socketserver, sys
class Echo(socketserver.BaseRequestHandler):
    def handle(self):
        while True:
            data = self.request.recv(65536)
            if not data:
                return
            self.request.sendall(data.replace(b"bye", b"BYE") if len(sys.argv) > 3 else data)
class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
Server((sys.argv[1], int(sys.argv[2])), Echo).serve_forever()
]]

t.test("--server: a Python echo server passes specs/echoserver.lua", function()
  if not t.have("/usr/bin/python3") then return t.skip(nil, "needs /usr/bin/python3") end
  local py = t.script(PY_ECHO, "echo.py")
  local out, err, code = check("--spec specs/echoserver.lua --server /usr/bin/python3 " .. py)
  t.eq(code, 0, out .. err)
  t.match(out, "4 of 4 dialogues passed")
end)

t.test("--server: a Python echo server that changes bytes fails for the client that saw it", function()
  if not t.have("/usr/bin/python3") then return t.skip(nil, "needs /usr/bin/python3") end
  local py = t.script(PY_ECHO, "echo.py")
  local sp = spec([[
    return { args = {"{host}", "{port}", "wrong"}, dialogues = {
      { name = "echoes", clients = 3, steps = {
        {send = "hello {i}\n", client = {1, 2}}, {expect = "hello {i}\n", client = {1, 2}},
        {send = "bye {i}", client = 3}, {expect = "bye {i}", client = 3} } } } }
  ]])
  local out, err, code = check("--spec " .. sp .. " --server /usr/bin/python3 " .. py)
  t.eq(code, 1, out .. err)
  t.match(out, 'client 3, step 4: expect "bye 3"\n       expected: "bye 3"\n       received: "BYE 3"\n', out)
end)

t.test("udp: a server that answers another datagram fails with both shown", function()
  local srv = t.script([[
    local socket = require "socket"
    local host, port = ...
    local s = assert(socket.udp())
    assert(s:setsockname(host, tonumber(port)))
    while true do
      local data, ip, p = s:receivefrom()
      if data then s:sendto(data:upper(), ip, p) end
    end
  ]])
  local out, _, code = check(srv .. " --spec " .. spec([[
    return { args = {"{host}", "{port}"}, udp = true, dialogues = {
      { name = "echo", steps = { {send = "ping"}, {expect = "ping"} } },
      { name = "lines", steps = { {send = "a\n"}, {expect_line = "^A$"}, {send = "b"}, {expect_bytes = 2} } } } }
  ]]))
  t.eq(code, 1, out)
  t.match(out, 'FAIL echo\n       step 2: expect "ping"\n       expected: a datagram "ping"\n       received: "PING"\n', out)
  t.match(out, 'FAIL lines\n       step 4: expect_bytes 2\n       expected: a datagram of 2 bytes\n       received: "B"\n', out)
end)

-- ---- bad use, bad specs --------------------------------------------------------------

t.test("a SERVER.lua that does not exist: status 2", function()
  local _, err, code = check("/nonexistent/server.lua --spec specs/timeserver.lua")
  t.eq(code, 2)
  t.match(err, "cannot read the server /nonexistent/server.lua", err)
end)

t.test("no --spec, or both SERVER.lua and --server: usage, status 2", function()
  local _, err, code = check("scripts/timeserver.lua")
  t.eq(code, 2)
  t.match(err, "%-%-spec SPEC.lua is missing\nusage: netlua %-m check", err)
  _, err, code = check("scripts/timeserver.lua --spec specs/timeserver.lua --server /bin/true")
  t.eq(code, 2)
  t.match(err, "not both", err)
end)

local BAD_SPECS = {
  {"return 42", "must return a table"},
  {"return {dialogues = {}, titel = 'x'}", "unknown key \"titel\""},
  {"return {dialogues = {}}", "dialogues is empty"},
  {"return {dialogues = {{steps = {}}}}", "dialogue 1: the dialogue needs a name"},
  {"return {dialogues = {{name = 'a', steps = {{expct = 'x'}}}}}", "dialogue 1 (a), step 1: unknown key \"expct\""},
  {"return {dialogues = {{name = 'a', steps = {{expect_bytes = 'ten'}}}}}", "expect_bytes must be a whole number"},
  {"return {dialogues = {{name = 'a', steps = {{send = 'x', expect = 'y'}}}}}", "a step does one thing"},
  {"return {dialogues = {{name = 'a', steps = {{expect_line = '%'}}}}}", "expect_line must be a valid Lua pattern"},
  {"return {dialogues = {{name = 'a', clients = 2, steps = {{send = 'x', client = 3}}}}}", "client must be a client's number from 1 to 2"},
  {"return {udp = true, dialogues = {{name = 'a', steps = {{expect_close = true}}}}}", "expect_close means nothing over UDP"},
  {"return {args = {'x', {}}, dialogues = {{name = 'a', steps = {{sleep = 1}}}}}", "args[2] must be a string or a number"},
  {"return {ready_within = -1, dialogues = {{name = 'a', steps = {{sleep = 1}}}}}", "ready_within must be a number of seconds above 0"},
  {"return {dialogues = {{name = 'a', steps = {{send = 'x', within = 1}}}}}", "within belongs to an expect or sync step"},
  {"return {", "cannot load the spec"},
  {"error('no spec today')", "no spec today"},
}

t.test("bad specs: status 2 with the reason, before any server starts", function()
  local srv = t.script([[io.stderr:write("STARTED\n")]])
  for _, case in ipairs(BAD_SPECS) do
    local out, err, code = check(srv .. " --spec " .. spec(case[1]))
    t.eq(code, 2, case[1] .. ": " .. out .. err)
    t.ok(err:find(case[2], 1, true), case[1] .. ": " .. err)
    t.ok(not (out .. err):find("STARTED"), "no server started")
  end
  local _, err, code = check(srv .. " --spec /nonexistent/spec.lua")
  t.eq(code, 2)
  t.match(err, "cannot load the spec", err)
end)

t.done()
