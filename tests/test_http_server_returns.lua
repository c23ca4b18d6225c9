-- test_http_server_returns.lua: what an http.server handler may return, and
-- a clear 500 with a log line naming the route and the value for anything
-- else. The server runs in its own process, so the log lines it writes are
-- captured here and checked, not mixed into prove's output.
package.path = (arg[0]:match("^(.*)/") or ".") .. "/?.lua;" .. package.path
local t = require "testlib"

-- Serves `routes` (Lua source of srv:route calls) in a child netlua, GETs
-- each path in order with a raw socket and prints "path status hex(body)"
-- lines.
-- Returns {path = {status, body}} and the child's stderr.
local function run(routes, paths)
  local path, dir = t.script(string.format([[
    local http, socket, task = require "http", require "socket", require "task"
    local srv = assert(http.server{port = 0})
    %s
    local function get(p)
      local c = assert(socket.connect("127.0.0.1", srv.port))
      c:settimeout(10)
      c:send("GET " .. p .. " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
      local reply = assert(c:receive("*a"))
      c:close()
      return reply:match("^HTTP/1.1 (%%d+)"), reply:match("\r\n\r\n(.*)$")
    end
    task.spawn(function()
      for _, p in ipairs{%s} do
        local status, body = get(p)
        io.write(p, " ", status, " ", (body:gsub(".", function(ch)
          return string.format("%%02x", ch:byte()) end)), "\n")
      end
      srv:close()
    end)
    srv:serve{timeout = 30}
  ]], routes, paths))
  local out, err, code = t.netlua(t.shellquote(path))
  t.rmtree(dir)
  t.eq(code, 0, err)
  local got = {}
  for p, status, hex in out:gmatch("(%S+) (%d+) (%x*)\n") do
    got[p] = {tonumber(status), (hex:gsub("%x%x", function(h) return string.char(tonumber(h, 16)) end))}
  end
  return got, err
end

local function expect_500(got, err, path, line)
  t.ok(got[path], "a reply for " .. path)
  t.eq(got[path][1], 500, path)
  t.eq(got[path][2], "internal server error\n", path)
  t.ok(err:find(line, 1, true), "log line for " .. path .. ": " .. line .. "\nin:\n" .. err)
end

t.test("a status written as a string (return \"404\", \"text\") is a 500 that says so", function()
  local got, err = run([[srv:route("GET", "/s", function() return "404", "not here" end)]], '"/s"')
  expect_500(got, err, "/s", 'netlua http.server: error in handler for GET /s: ' ..
    'the handler returned the status "404" as a string (return 404, ... with a number)\n')
end)

t.test("return 42 (not a final status) is a 500 naming the status", function()
  local got, err = run([[srv:route("GET", "/n", function() return 42 end)]], '"/n"')
  expect_500(got, err, "/n", "error in handler for GET /n: the handler returned " ..
    "status 42 (a final status is an integer from 200 to 599)\n")
end)

t.test("returning a function is a 500, not its address sent as the body", function()
  local got, err = run([[
    srv:route("GET", "/f", function() return function() end end)
    srv:route("GET", "/fb", function() return 200, print end)
    srv:route("GET", "/co", function() return 200, coroutine.create(print) end)
    srv:route("GET", "/yes", function() return true end)
  ]], '"/f", "/fb", "/co", "/yes"')
  expect_500(got, err, "/f", "error in handler for GET /f: the handler returned a function " ..
    "(a reply is status, body, headers or a body alone: a string, a table or nil)\n")
  expect_500(got, err, "/fb", "error in handler for GET /fb: the handler returned a body of " ..
    "type function (a body is a string, a table sent as JSON, or nil)\n")
  expect_500(got, err, "/co", "the handler returned a body of type thread")
  expect_500(got, err, "/yes", "error in handler for GET /yes: the handler returned a boolean")
  t.ok(not err:find("0x", 1, true), "no address in the log")
end)

t.test("a table that is not JSON is a 500 naming the route and why", function()
  local got, err = run([[
    srv:route("GET", "/users/:id", function() return {name = "x", greet = print} end)
    srv:route("GET", "/cycle", function() local c = {} c.c = c return 200, c, {["X-A"] = "1"} end)
  ]], '"/users/7", "/cycle"')
  expect_500(got, err, "/users/7", "error in handler for GET /users/7 (route GET /users/:id): " ..
    "the handler returned a table that is not JSON (cannot serialise function")
  expect_500(got, err, "/cycle", "error in handler for GET /cycle: the handler returned " ..
    "a table that is not JSON (")
end)

t.test("a body and a second value that is not headers is a 500 that says the status goes first", function()
  local got, err = run([[srv:route("GET", "/two", function() return "text", "more" end)]], '"/two"')
  expect_500(got, err, "/two", 'the handler returned "text", "more" ' ..
    "(the status goes first, a number: return 200, body)\n")
end)

t.test("what README allows is still answered: body alone, status and body, numbers, body with headers", function()
  local got, err = run([[
    srv:route("GET", "/text", function() return "hi" end)
    srv:route("GET", "/json", function() return {a = 1} end)
    srv:route("GET", "/nothing", function() end)
    srv:route("GET", "/num", function() return 201, 42 end)
    srv:route("GET", "/float", function() return 404.0, "gone" end)
    srv:route("GET", "/hdr", function() return "typed", {["Content-Type"] = "text/x"} end)
  ]], '"/text", "/json", "/nothing", "/num", "/float", "/hdr"')
  t.eq(err, "")
  t.eq(got["/text"][1], 200) t.eq(got["/text"][2], "hi")
  t.eq(got["/json"][1], 200) t.eq(got["/json"][2], '{"a":1}')
  t.eq(got["/nothing"][1], 204)
  t.eq(got["/num"][1], 201) t.eq(got["/num"][2], "42")
  t.eq(got["/float"][1], 404) t.eq(got["/float"][2], "gone")
  t.eq(got["/hdr"][1], 200) t.eq(got["/hdr"][2], "typed")
end)

t.done()
