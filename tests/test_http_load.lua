-- test_http_load.lua: libcurl is loaded by the first HTTP transfer
-- (runtime/curlload.c), not at start-up nor by require "http": a script that
-- only serves never maps it; one that makes requests gets a working client,
-- in any thread; without a usable libcurl, servers still run and the first
-- client call is a clear, catchable error.
local t = require "testlib"

-- A Lua source fragment: a function telling whether libcurl is mapped.
local MAPPED = [[
local function curl_mapped()
  local f = assert(io.open("/proc/self/maps"))
  local maps = f:read("a")
  f:close()
  return maps:find("libcurl", 1, true) ~= nil
end
]]

t.test("a script that never makes a request does not map libcurl", function()
  local path, dir = t.script(MAPPED .. [[
    for _, m in ipairs{"socket", "thread", "json", "cjson", "time", "http.server", "http"} do
      require(m)
    end
    print(curl_mapped() and "mapped" or "not mapped")
  ]])
  local out, err, code = t.netlua(t.shellquote(path))
  t.eq(code, 0, err)
  t.eq(out, "not mapped\n")
  t.rmtree(dir)
end)

t.test("a server-only script serves without mapping libcurl, alone or through http", function()
  local path, dir = t.script(MAPPED .. [[
    local socket, task = require "socket", require "task"
    local function serve_one(new)
      local srv = assert(new{port = 0})
      srv:route("GET", "/hi", function() return "hello" end)
      local reply
      task.spawn(function()
        local c = assert(socket.connect("127.0.0.1", srv.port))
        c:send("GET /hi HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        reply = c:receive("*a")
        c:close()
        srv:close()
      end)
      srv:serve{timeout = 20}
      return reply:match("hello$")
    end
    print(serve_one(require "http.server"), serve_one(require("http").server))
    print(curl_mapped() and "mapped" or "not mapped")
  ]])
  local out, err, code = t.netlua(t.shellquote(path))
  t.eq(code, 0, err)
  t.eq(out, "hello\thello\nnot mapped\n")
  t.rmtree(dir)
end)

t.test("the first request maps libcurl and the client makes real requests", function()
  local path, dir = t.script(((MAPPED .. [[
    local thread = require "thread"
    local http = require "http"
    print(curl_mapped(), type(http.curl_version), curl_mapped())
    local ready = thread.channel()
    local bg = thread.spawn(function(ch)
      local h = require "http"
      local srv = assert(h.server{port = 0})
      srv:route("GET", "/hi", function() return "hello" end)
      ch:send(srv.port)
      srv:serve{max_requests = 1, timeout = 20}
      srv:close()
    end, ready)
    local port = assert(ready:recv(20))
    local r = assert(http.get("http://127.0.0.1:" .. port .. "/hi", {timeout = 20}))
    print(r.status, r.body)
    assert(bg:join())
    print(http.get("http://127.0.0.1:REFUSED/"))
  ]]):gsub("REFUSED", t.closed_port())))
  local out, err, code = t.netlua(t.shellquote(path))
  t.eq(code, 0, err)
  t.eq(out, "false\tstring\ttrue\n200\thello\n"
    .. "nil\tconnection refused\tCURLE_COULDNT_CONNECT\n")
  t.rmtree(dir)
end)

t.test("threads that require http at the same time all get a working client", function()
  local path, dir = t.script([[
    local thread = require "thread"
    local ts = {}
    for i = 1, 6 do
      ts[i] = thread.spawn(function()
        local h = require "http"
        local _, msg, code = h.get("http://127.0.0.1:1/")
        return h.curl_version, msg, code
      end)
    end
    for i = 1, 6 do print(select(2, assert(ts[i]:join()))) end
  ]])
  local out, err, code = t.netlua(t.shellquote(path))
  t.eq(code, 0, err)
  local n = 0
  for line in out:gmatch("[^\n]+") do
    t.match(line, "^%d+%.%d+[^\t]*\tconnection refused\tCURLE_COULDNT_CONNECT$")
    n = n + 1
  end
  t.eq(n, 6)
  t.rmtree(dir)
end)

-- The dynamic loader finds LD_LIBRARY_PATH's libcurl.so.4 first: a file
-- that is not a library stands for a broken or missing libcurl.
local function with_broken_libcurl(args)
  local dir = t.tmpdir()
  t.writefile(dir .. "/libcurl.so.4", "not a shared library\n")
  local out, err, code = t.sh("LD_LIBRARY_PATH=" .. t.shellquote(dir) .. " "
    .. t.shellquote(t.NETLUA) .. " " .. args)
  t.rmtree(dir)
  return out, err, code
end

t.test("without a usable libcurl, a request raises a clear error and servers still run", function()
  local out, err, code = with_broken_libcurl("-e " .. t.shellquote([[
    local http = require "http"
    local ok, e = pcall(http.get, "http://127.0.0.1:1/")
    print(ok, e)
    print(pcall(function() return http.curl_version end))
    print(require("json").encode{1}, type(require("socket").tcp))
    local srv = assert(http.server{port = 0})
    print(type(srv.port))
    srv:close()
  ]]))
  t.eq(code, 0, err)
  local lines = {}
  for line in out:gmatch("[^\n]+") do lines[#lines + 1] = line end
  t.match(lines[1], "^false\t.*http needs libcurl %(libcurl4%): .*libcurl%.so%.4")
  t.match(lines[2], "^false\t.*http needs libcurl %(libcurl4%)")
  t.eq(lines[3], "[1]\tfunction")
  t.eq(lines[4], "number")
end)

t.test("without a usable libcurl, uncaught: exit 1 and the message; -v says so", function()
  local _, err, code = with_broken_libcurl("-e 'require(\"http\").get(\"http://127.0.0.1:1/\")'")
  t.eq(code, 1)
  t.match(err, "^netlua: http needs libcurl %(libcurl4%):")
  local out, err2, code2 = with_broken_libcurl("-v")
  t.eq(code2, 0, err2)
  t.match(out, "libcurl not available")
end)

t.test("-v names the libcurl that http loads", function()
  local out, err, code = t.netlua("-v -e 'print(require(\"http\").curl_version)'")
  t.eq(code, 0, err)
  local shown, loaded = out:match("libcurl ([^)]+)%)\n([^\n]+)\n$")
  t.ok(shown, out)
  t.eq(shown, loaded)
end)

t.done()
