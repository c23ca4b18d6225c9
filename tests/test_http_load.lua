-- test_http_load.lua: libcurl is loaded when `http` is first required
-- (runtime/curlload.c), not at start-up: a script that never uses http does
-- not map it; one that does gets a working client, in any thread; without a
-- usable libcurl, require "http" is a clear, catchable error.
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

t.test("a script that never requires http does not map libcurl", function()
  local path, dir = t.script(MAPPED .. [[
    for _, m in ipairs{"socket", "thread", "json", "cjson", "time", "http.server_core"} do
      require(m)
    end
    print(curl_mapped() and "mapped" or "not mapped")
  ]])
  local out, err, code = t.netlua(t.shellquote(path))
  t.eq(code, 0, err)
  t.eq(out, "not mapped\n")
  t.rmtree(dir)
end)

t.test("require 'http' then maps libcurl and the client makes real requests", function()
  local path, dir = t.script(MAPPED .. [[
    local thread = require "thread"
    local before = curl_mapped()
    local http = require "http"
    print(before, curl_mapped(), type(http.curl_version))
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
    print(http.get("http://127.0.0.1:1/"))
  ]])
  local out, err, code = t.netlua(t.shellquote(path))
  t.eq(code, 0, err)
  t.eq(out, "false\ttrue\tstring\n200\thello\n"
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

t.test("without a usable libcurl, require 'http' raises a clear error", function()
  local out, err, code = with_broken_libcurl("-e " .. t.shellquote([[
    local ok, e = pcall(require, "http")
    print(ok, e)
    print(pcall(require, "http"))
    print(require("json").encode{1}, type(require("socket").tcp))
  ]]))
  t.eq(code, 0, err)
  local lines = {}
  for line in out:gmatch("[^\n]+") do lines[#lines + 1] = line end
  t.match(lines[1], "^false\thttp needs libcurl %(libcurl4%): .*libcurl%.so%.4")
  t.match(lines[2], "^false\thttp needs libcurl %(libcurl4%)")
  t.eq(lines[3], "[1]\tfunction")
end)

t.test("without a usable libcurl, uncaught: exit 1 and the message; -v says so", function()
  local _, err, code = with_broken_libcurl("-e 'require \"http\"'")
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
