-- test_luasocket_lua_half.lua: luasocket's Lua half (socket.http,
-- socket.url, ltn12, mime from Debian's lua-socket) running on netlua's
-- socket core: the same client program prints the same under netlua and
-- under lua5.4 with the real luasocket, and socket.http requests run
-- concurrently in tasks; socket.smtp speaks to a peer on loopback.
package.path = (arg[0]:match("^(.*)/") or ".") .. "/?.lua;" .. package.path
local t = require "testlib"
local h = require "httphelp"

local program = h.fixtures .. "/luasocket_lua_half.lua"
local have_lua_half = select(3, t.netlua([[-e 'require "socket.http"; require "mime"; require "ltn12"']])) == 0

if not have_lua_half then
  t.skip("luasocket's Lua half", "Debian's lua-socket is not installed (make deps installs it)")
  t.done()
end

local port, stop, sdir = h.spawn(string.format("exec %s %s/server.lua \"$PORTFILE\"",
  t.shellquote(t.NETLUA), h.fixtures))
local base = "http://127.0.0.1:" .. port

t.test("the modules come from lua-socket on Lua's path; socket is netlua's own core", function()
  local out, err, code = t.netlua([[-e '
    print(package.searchpath("socket.http", package.path))
    print(package.searchpath("mime.core", package.cpath))
    print(require("socket").gethostname ~= nil, require("socket.smtp") ~= nil, require("socket.ftp") ~= nil)']])
  t.eq(code, 0, err)
  t.match(out, "^/usr/share/lua/5%.4/socket/http%.lua\n")
  t.match(out, "/lua/5%.4/mime/core%.so\n")
  t.match(out, "true\ttrue\ttrue\n$")
end)

local ours
t.test("socket.http (simple and table form, ltn12 sources and sinks), ltn12 pumps, mime and socket.url under netlua", function()
  local out, err, code = t.netlua(t.shellquote(program) .. " " .. base)
  t.eq(code, 0, err)
  t.match(out, "^simple\thello\n\t200\ttext/plain; charset=utf%-8\t6\tHTTP/1.1 200 OK\n")
  t.match(out, "\npost\t200\tPOST\tx=1&y=two\n")
  t.match(out, '\ntable\t1\t201\tyes\t{"got":{"n":5}}\n')
  t.match(out, "\nfile\t1\ta/b.txt\n")
  t.match(out, "\n404\t404\n")
  t.match(out, "\nrefused\tnil\tconnection refused\n")
  t.match(out, "\npump\tpumped text\nchain\tCHAINED\nb64 filter\tYWI=\n")
  t.match(out, "\nb64\taGVsbG8sIG5ldGx1YQ==\thello, netlua\n")
  t.match(out, "\nurl\thttp\tuser\tpw\texample.com\t8080\t/a/b%%20c\tq=1\tfrag\n")
  ours = out
end)

local probe = select(3, t.sh("lua5.4 -e 'require \"socket.http\"'"))
if probe == 0 then
  t.test("lua5.4 with the real luasocket prints the same", function()
    local theirs, err, code = t.sh("lua5.4 " .. t.shellquote(program) .. " " .. base)
    t.eq(code, 0, err)
    t.eq(ours, theirs)
  end)
else
  t.skip("lua5.4 with the real luasocket prints the same", "lua5.4 with lua-socket not installed")
end

t.test("two socket.http.request calls run at once in tasks (each handler waits for the other's request)", function()
  local out, err, code = t.netlua([[-e '
    local shttp, ltn12 = require "socket.http", require "ltn12"
    local task, thread = require "task", require "thread"
    local srv = assert(require("http").server{port = 0})
    local arrived, go = 0, thread.channel()
    srv:route("GET", "/meet/:n", function(req)
      arrived = arrived + 1
      if arrived == 2 then go:send(true) go:send(true) end
      local ok = go:recv(20)
      return ok and ("met " .. req.params.n) or "the other request never came"
    end)
    local function fetch(n)
      local sink = {}
      local one, code = shttp.request{url = srv.url .. "/meet/" .. n, sink = ltn12.sink.table(sink)}
      return code, table.concat(sink)
    end
    local a, b = task.spawn(fetch, 1), task.spawn(fetch, 2)
    task.spawn(function() print(a:join()) print(b:join()) srv:close() end)
    srv:serve{timeout = 30}']])
  t.eq(code, 0, err)
  t.eq(out, "true\t200\tmet 1\ntrue\t200\tmet 2\n")
end)

t.test("socket.smtp sends a message to an SMTP peer on loopback (a task of this script)", function()
  local out, err, code = t.netlua([[-e '
    local socket, smtp, task = require "socket", require "socket.smtp", require "task"
    local server = assert(socket.bind("127.0.0.1", 0))
    local port = select(2, server:getsockname())
    local peer = task.spawn(function()               -- RFC 5321, the least of it
      local c = assert(server:accept())
      c:settimeout(10)
      local said = {}
      c:send("220 test ready\r\n")
      while true do
        local line = assert(c:receive("*l"))
        said[#said + 1] = line
        local verb = line:sub(1, 4):upper()
        if verb == "EHLO" or verb == "HELO" then c:send("250 hi\r\n")
        elseif verb == "DATA" then
          c:send("354 go on\r\n")
          repeat local l = assert(c:receive("*l")) said[#said + 1] = l until l == "."
          c:send("250 queued\r\n")
        elseif verb == "QUIT" then c:send("221 bye\r\n") break
        else c:send("250 ok\r\n") end
      end
      c:close()
      return said
    end)
    local ok, e = smtp.send{from = "<ann@example.org>", rcpt = "<bob@example.org>",
      server = "127.0.0.1", port = port,
      source = smtp.message{headers = {subject = "hi"}, body = "sent through netlua"}}
    print(ok, e)
    local said = select(2, peer:join())
    print(said[2], said[3])
    for _, l in ipairs(said) do if l == "sent through netlua" then print("body arrived") end end']])
  t.eq(code, 0, err)
  t.eq(out, "1\tnil\nMAIL FROM:<ann@example.org>\tRCPT TO:<bob@example.org>\nbody arrived\n")
end)

stop()
t.rmtree(sdir)
t.done()
