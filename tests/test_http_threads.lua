-- test_http_threads.lua: the http client and server in threads (needs the
-- thread module; skipped in a build without it).
local t = require "testlib"
local ok, thread = pcall(require, "thread")
local http = require "http"

if not ok or type(thread) ~= "table" then
  t.skip("http client in every thread", "no thread module in this build")
  t.skip("http server in a background thread", "no thread module in this build")
  t.done()
end

t.test("http client in every thread, against a server in the main one", function()
  local srv = assert(http.server{port = 0})
  srv:route("GET", "/x", function(req) return "x" .. req.query.i end)
  local results = thread.channel()
  local ts = {}
  for i = 1, 4 do
    ts[i] = thread.spawn(function(port, n, ch)
      local h = require "http"
      local r = assert(h.get("http://127.0.0.1:" .. port .. "/x", {query = {i = n}}))
      ch:send(r.body)
    end, srv.port, i, results)
  end
  t.eq(srv:serve{max_requests = 4, timeout = 20}, 4)
  for i = 1, 4 do t.eq(ts[i]:join(), true) end
  local got = {}
  for _ = 1, 4 do got[results:recv(5)] = true end
  for i = 1, 4 do t.ok(got["x" .. i], "thread " .. i) end
  srv:close()
end)

t.test("http server in a background thread, many client transfers at once", function()
  local ready = thread.channel()
  local bg = thread.spawn{function(ch)
    local h = require "http"
    local srv = assert(h.server{port = 0})
    srv:route("GET", "/n/:n", function(req) return {n = tonumber(req.params.n)} end)
    srv:route("GET", "/stop", function() srv:close() return "bye" end)
    ch:send(srv.port)
    srv:serve{timeout = 30}
  end, ready, daemon = true}
  local port = ready:recv(10)
  local list = {}
  for i = 1, 20 do list[i] = "http://127.0.0.1:" .. port .. "/n/" .. i end
  local rs = http.request_many(list, {concurrency = 10})
  for i = 1, 20 do t.eq(rs[i]:json().n, i) end
  t.eq(assert(http.get("http://127.0.0.1:" .. port .. "/stop")).body, "bye")
  t.eq(bg:join(10), true)
end)

t.done()
