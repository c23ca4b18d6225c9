-- test_ssl_load.lua: OpenSSL is loaded on first use (runtime/ossload.c),
-- not at start-up: a script that uses neither ssl nor crypto nor an HTTPS
-- server maps neither libssl nor libcrypto; `require "crypto"` maps
-- libcrypto, `require "ssl"` and http.server{tls=} libssl too; libcurl's
-- TLS is the same OpenSSL, initialised by us first (no atexit clean-up)
-- whichever comes first, in any thread; a library that cannot be loaded
-- is a clear error.
local t = require "testlib"
local tls = require "tlslib"

-- A Lua source fragment: maps() says which of libssl/libcrypto are mapped.
local MAPS = [[
local function maps()
  local f = assert(io.open("/proc/self/maps"))
  local text = f:read("a")
  f:close()
  local found = {}
  if text:find("/libcrypto.so", 1, true) then found[#found + 1] = "libcrypto" end
  if text:find("/libssl.so", 1, true) then found[#found + 1] = "libssl" end
  return #found > 0 and table.concat(found, "+") or "none"
end
]]

-- Runs `source` (after MAPS) as a script with the arguments (strings);
-- returns its stdout, stderr and exit code.
local function run(source, args, env)
  local path, dir = t.script(MAPS .. source)
  local quoted = {}
  for i, a in ipairs(args or {}) do quoted[i] = t.shellquote(a) end
  local out, err, code = t.sh((env or "") .. t.shellquote(t.NETLUA) .. " " .. t.shellquote(path)
    .. " " .. table.concat(quoted, " "))
  t.rmtree(dir)
  return out, err, code
end

t.test("a script that uses neither ssl nor crypto maps neither library, plain servers included", function()
  local out, err, code = run([[
    for _, m in ipairs{"socket", "thread", "json", "time", "task", "http.server", "http"} do
      require(m)
    end
    print(maps())
    local socket, task, server = require "socket", require "task", require "http.server"
    local srv = assert(server{port = 0})
    srv:route("GET", "/hi", function() return "hello" end)
    -- the same port again: listening fails, with no TLS context to free
    print(server{port = srv.port} == nil)
    local reply
    task.spawn(function()
      local c = assert(socket.connect("127.0.0.1", srv.port))
      c:send("GET /hi HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
      reply = c:receive("*a")
      c:close()
      srv:stop()
    end)
    srv:serve{timeout = 20}
    srv:close()
    collectgarbage()
    print(reply:match("hello$"), maps())
  ]])
  t.eq(code, 0, err)
  t.eq(out, "none\ntrue\nhello\tnone\n")
end)

t.test("require crypto maps libcrypto only; require ssl maps libssl too", function()
  local out, err, code = run([[
    local crypto = require "crypto"
    print(maps(), crypto.hexdigest("sha256", "abc"):sub(1, 8))
    local ssl = require "ssl"
    print(maps(), type(ssl.newcontext{mode = "client"}))
  ]])
  t.eq(code, 0, err)
  t.eq(out, "libcrypto\tba7816bf\nlibcrypto+libssl\tuserdata\n")
end)

t.test("a script that only requires ssl.https loads libssl", function()
  local out, err, code = run([[
    print(maps(), type(require("ssl.https").request), maps())
  ]])
  t.eq(code, 0, err)
  t.eq(out, "none\tfunction\tlibcrypto+libssl\n")
end)

-- The dynamic loader finds LD_LIBRARY_PATH's library first: a file that is
-- not a library stands for a broken or missing one.
local function with_broken(soname, source)
  local dir = t.tmpdir()
  t.writefile(dir .. "/" .. soname, "not a shared library\n")
  local out, err, code = run(source, {}, "LD_LIBRARY_PATH=" .. t.shellquote(dir) .. " ")
  t.rmtree(dir)
  return out, err, code
end

local LOAD_ALL = [[
  print(pcall(require, "ssl"))
  print(require("http.server"){port = 0, tls = {certificate = "/nonexistent", key = "/nonexistent"}})
  local srv = assert(require("http.server"){port = 0})
  srv:close()
  print(pcall(function() return require("crypto").hexdigest("md5", "") end))
]]

t.test("without a usable libssl: ssl and HTTPS servers fail clearly, crypto and plain servers work", function()
  local out, err, code = with_broken("libssl.so.3", LOAD_ALL)
  t.eq(code, 0, err)
  local lines = {}
  for line in out:gmatch("[^\n]+") do lines[#lines + 1] = line end
  t.match(lines[1], "^false\tssl: cannot load libssl%.so%.3: .*libssl%.so%.3")
  t.match(lines[2], "^nil\tcannot load libssl%.so%.3: ")
  t.eq(lines[3], "true\td41d8cd98f00b204e9800998ecf8427e")
end)

t.test("without a usable libcrypto: crypto and ssl fail clearly, naming libcrypto", function()
  local out, err, code = with_broken("libcrypto.so.3", LOAD_ALL)
  t.eq(code, 0, err)
  local lines = {}
  for line in out:gmatch("[^\n]+") do lines[#lines + 1] = line end
  t.match(lines[1], "^false\tssl: cannot load libcrypto%.so%.3: ")
  t.match(lines[2], "^nil\tcannot load libcrypto%.so%.3: ")
  t.match(lines[3], "^false\t.*crypto: cannot load libcrypto%.so%.3: ")
  local _, err2, code2 = with_broken("libcrypto.so.3", "require 'crypto'")
  t.eq(code2, 1)
  t.match(err2, "^netlua: .*crypto: cannot load libcrypto%.so%.3: ")
end)

t.test("threads requiring ssl and crypto at the same time all get working modules", function()
  local out, err, code = run([[
    local thread = require "thread"
    local ts = {}
    for i = 1, 6 do
      ts[i] = thread.spawn(function(n)
        local m = n % 2 == 0 and require "ssl" or require "crypto"
        local ssl, crypto = require "ssl", require "crypto"
        return type(m), type(ssl.newcontext{mode = "client"}), crypto.hexdigest("sha1", "abc")
      end, i)
    end
    for i = 1, 6 do print(select(2, assert(ts[i]:join()))) end
  ]])
  t.eq(code, 0, err)
  t.eq(out, string.rep("table\tuserdata\ta9993e364706816aba3e25717850c26c9cd0d89d\n", 6))
end)

-- libcurl initialises OpenSSL in curl_global_init; whatever initialises it
-- first decides whether OpenSSL cleans up from atexit (it must not: see
-- ossload.c). So libcrypto must be loaded (and initialised) before libcurl.
t.test("the first request loads libcrypto before libcurl", function()
  local _, err, code = run([[
    print(require("http").get("http://127.0.0.1:" .. ... .. "/"))
  ]], {tostring(t.closed_port())}, "LD_DEBUG=files ")
  t.eq(code, 0, err)
  local crypto_at = err:find("file=libcrypto.so.3 [0];  dynamically loaded by", 1, true)
  local curl_at = err:find("file=libcurl.so.4 [0];", 1, true)
  t.ok(crypto_at and curl_at, "both loaded")
  t.ok(crypto_at < curl_at, "libcrypto loaded first")
end)

-- test_crypto.lua's case for the exit race, with libcurl loaded first.
t.test("exiting while daemon threads hash after a request neither crashes nor fails their calls", function()
  local path, dir = t.script([[
    local thread = require "thread"
    local port = ...
    assert(select(3, require("http").get("http://127.0.0.1:" .. port .. "/")) == "CURLE_COULDNT_CONNECT")
    local ready = thread.channel()
    for _ = 1, 2 do
      thread.spawn{daemon = true, function()
        local c = require "crypto"
        ready:send(true)
        while true do c.hmac("sha256", "k", "x"):digest(); c.hash("sha512", "y"):digest() end
      end}
    end
    for _ = 1, 2 do ready:recv() end
    print("main done")
  ]])
  local port = t.closed_port()
  for i = 1, 30 do
    local out, err, code = t.netlua(t.shellquote(path) .. " " .. port)
    t.eq(code, 0, "run " .. i .. ": " .. tostring(err))
    t.eq(out, "main done\n", "run " .. i)
    t.eq(err, "", "run " .. i)
  end
  t.rmtree(dir)
end)

local missing = tls.missing()
if missing then
  t.skip("TLS peers", missing)
  t.done()
end
local C = tls.certs()

t.test("an HTTPS server loads libssl by itself and serves curl", function()
  if not t.have("curl") then return t.skip("https server", "curl is not installed") end
  local out, err, code = run([[
    local thread = require "thread"
    local cert, key, ca = ...
    print(maps())
    local ready = thread.channel()
    local worker = thread.spawn(function(ch, c, k)
      local srv = assert(require("http.server"){port = 0, tls = {certificate = c, key = k}})
      srv:route("GET", "/hi", function() return "hello over tls" end)
      ch:send(srv.port)
      srv:serve{max_requests = 1, timeout = 20}
      srv:close()
    end, ready, cert, key)
    local port = assert(ready:recv(20))
    local p = io.popen("curl -s --max-time 20 --cacert " .. ca .. " https://localhost:" .. port .. "/hi")
    print(p:read("a"))
    p:close()
    assert(worker:join())
    print(maps())
  ]], {C.server.cert, C.server.key, C.ca.cert})
  t.eq(code, 0, err)
  t.eq(out, "none\nhello over tls\nlibcrypto+libssl\n")
end)

-- The clients of the order cases: an HTTPS GET through libcurl (http) and
-- a verified handshake plus a GET through the ssl module, both against
-- openssl s_server -www.
local CLIENTS = [[
local port, ca = ...
local function via_http()
  local r = assert(require("http").get("https://localhost:" .. port .. "/", {verify = false, timeout = 20}))
  return "http " .. r.status
end
local function via_ssl()
  local c = assert(require("ssl").connect("localhost", port, {cafile = ca, timeout = 20}))
  c:send("GET / HTTP/1.0\r\n\r\n")
  local line = c:receive("*l")
  c:close()
  return "ssl " .. line:match("^HTTP/1%.%d (%d+)")
end
]]

-- Runs `source` (after CLIENTS, which it also gets as a string for its
-- threads) against an s_server -www that takes `connections` connections;
-- returns its stdout, stderr, exit code.
local function against_s_server(connections, source)
  local port, proc = tls.s_server("-cert " .. t.shellquote(C.server.cert) .. " -key "
    .. t.shellquote(C.server.key) .. " -www -naccept " .. connections)
  local out, err, code = run(CLIENTS .. string.format("local CLIENTS = %q\n", CLIENTS) .. source,
                             {tostring(port), C.ca.cert})
  tls.finish(proc)
  return out, err, code
end

t.test("http first, then ssl: one OpenSSL serves both and the process exits cleanly", function()
  local out, err, code = against_s_server(2, [[
    print(via_http(), maps())
    print(via_ssl())
  ]])
  t.eq(code, 0, err)
  t.eq(err, "")
  t.eq(out, "http 200\tlibcrypto+libssl\nssl 200\n")
end)

t.test("ssl first, then http: the same, the other way round", function()
  local out, err, code = against_s_server(2, [[
    print(via_ssl())
    print(via_http())
  ]])
  t.eq(code, 0, err)
  t.eq(err, "")
  t.eq(out, "ssl 200\nhttp 200\n")
end)

t.test("threads loading http and ssl at the same time all get working clients", function()
  local out, err, code = against_s_server(6, [[
    local thread = require "thread"
    local ts = {}
    for i = 1, 6 do
      ts[i] = thread.spawn(function(which, src, p, c)
        local http_get, ssl_get = load(src .. "return via_http, via_ssl", "clients", "t")(p, c)
        return which % 2 == 0 and http_get() or ssl_get()
      end, i, CLIENTS, port, ca)
    end
    local got = {}
    for i = 1, 6 do got[i] = select(2, assert(ts[i]:join())) end
    print(table.concat(got, ","))
  ]])
  t.eq(code, 0, err)
  t.eq(out, "ssl 200,http 200,ssl 200,http 200,ssl 200,http 200\n")
end)

t.done()
