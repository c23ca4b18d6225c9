-- test_http_request_fields.lua: the request fields a handler reads, however
-- the server makes them (query, query_all and params are made when first
-- read): their values, in any order of reading, and the version as sent.
local t = require "testlib"
local server = require "http.server"
local json = require "json"

local function ask(port, head)
  local c = t.connect(port)
  c:send(head)
  local body
  while true do
    local line = assert(c:receive("*l"))
    local n = line:match("^Content%-Length: (%d+)")
    if n then body = tonumber(n) end
    if line == "" then break end
  end
  local data = c:receive(body)
  c:close()
  return json.decode(data)
end

t.test("query_all before query, params on a route without names, version 1.0 and 1.1", function()
  local srv = assert(server{port = 0})
  srv:route("GET", "/a", function(req)
    local all = req.query_all -- first, before req.query
    return {all = all, first = req.query, params = req.params, version = req.version}
  end)
  srv:route("GET", "/u/:id/*", function(req)
    return {params = req.params, query = req.query, path = req.path, raw = req.raw_path}
  end)
  t.serve_while(srv, function()
    local r = ask(srv.port, "GET /a?x=1&x=2&y=a+b HTTP/1.0\r\n\r\n")
    t.eq(r.all.x[1] .. r.all.x[2], "12")
    t.eq(r.first.x, "1")
    t.eq(r.first.y, "a b")
    t.eq(next(r.params), nil)
    t.eq(r.version, "1.0")
    r = ask(srv.port, "GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    t.eq(next(r.first), nil)
    t.eq(next(r.all), nil)
    t.eq(r.version, "1.1")
    r = ask(srv.port, "GET /u/7/a%20b/c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    t.eq(r.params.id, "7")
    t.eq(r.params["1"] or r.params[1], "a b/c")
    t.eq(next(r.query), nil)
    t.eq(r.path, "/u/7/a b/c")
    t.eq(r.raw, "/u/7/a%20b/c")
  end)
end)

t.test("the path is percent-decoded where %XX is two hex digits; raw_path keeps it as sent", function()
  local srv = assert(server{port = 0})
  srv:route("GET", "/p/*", function(req) return {path = req.path, raw = req.raw_path} end)
  t.serve_while(srv, function()
    local raw = "/p/100%25%zz%4%2Fx%e2%82%AC%"
    local r = ask(srv.port, "GET " .. raw .. "?q=%41 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    t.eq(r.path, "/p/100%%zz%4/x\u{20AC}%")
    t.eq(r.raw, raw)
    r = ask(srv.port, "GET /p/plain HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    t.eq(r.path, "/p/plain")
    t.eq(r.raw, "/p/plain")
  end)
end)

t.done()
