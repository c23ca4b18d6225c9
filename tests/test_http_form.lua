-- test_http_form.lua: req:form() for urlencoded bodies, http.parse_query and
-- http.mime_type, against requests from our client and raw bytes.
package.path = (arg[0]:match("^(.*)/") or ".") .. "/?.lua;" .. package.path
local t = require "testlib"
local http = require "http"

-- Sends raw request bytes to srv and returns the whole reply.
local function exchange(srv, request)
  local c = t.connect(srv.port)
  c:send(request)
  local reply = c:receive("*a")
  c:close()
  return reply
end

local function post(path, ctype, body)
  return string.format("POST %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" ..
    "Content-Type: %s\r\nContent-Length: %d\r\n\r\n%s", path, ctype, #body, body)
end

local function form_server(opts)
  local srv = assert(http.server(opts or {port = 0}))
  srv:route("POST", "/form", function(req)
    local first, all = req:form()
    if first == nil then return 415, all end
    return {first = first, all = all}
  end)
  return srv
end

t.test("req:form() reads repeated keys, + and %XX, and an empty value", function()
  local srv = form_server()
  local reply = t.serve_while(srv, function()
    return exchange(srv, post("/form", "application/x-www-form-urlencoded",
      "name=J%C3%BCrgen+M&tag=a&tag=b%2Bc&empty=&flag&sp%20ace=1%3D2"))
  end)
  local got = require("json").decode(reply:match("\r\n\r\n(.*)$"))
  t.eq(got.first.name, "Jürgen M")
  t.eq(got.first.tag, "a")
  t.eq(got.all.tag[1], "a")
  t.eq(got.all.tag[2], "b+c")
  t.eq(got.first.empty, "")
  t.eq(got.first.flag, "")
  t.eq(got.first["sp ace"], "1=2")
end)

t.test("req:form() reads what http.post sends for a table, with a charset parameter", function()
  local srv = form_server()
  local r, r2 = t.serve_while(srv, function()
    return assert(http.post(srv.url .. "/form", {q = "x y&z", n = {"1", "2"}})),
      exchange(srv, post("/form", "Application/X-WWW-Form-Urlencoded; charset=UTF-8", "a=1"))
  end)
  t.eq(r.status, 200)
  local got = r:json()
  t.eq(got.first.q, "x y&z")
  t.eq(got.all.n[2], "2")
  t.match(r2, "^HTTP/1.1 200 ")
  t.match(r2, '"a":"1"')
end)

t.test("req:form() on another content type is nil and a message naming it", function()
  local srv = form_server()
  local json_reply, none = t.serve_while(srv, function()
    return exchange(srv, post("/form", "application/json", '{"a":1}')),
      exchange(srv, "POST /form HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 3\r\n\r\na=1")
  end)
  t.match(json_reply, "^HTTP/1.1 415 ")
  t.match(json_reply, "\r\n\r\nnot a form %(Content%-Type: application/json%)$")
  t.match(none, "\r\n\r\nnot a form %(no Content%-Type%)$")
end)

t.test("a form body past the server's max_body is refused before the handler (413)", function()
  local srv = form_server{port = 0, max_body = 64}
  local reply = t.serve_while(srv, function()
    return exchange(srv, post("/form", "application/x-www-form-urlencoded", "a=" .. string.rep("x", 100)))
  end)
  t.match(reply, "^HTTP/1.1 413 ")
end)

t.test("http.parse_query and http.mime_type", function()
  local first, all = http.parse_query("a=1&b=x+y&a=2&c=%41%2b")
  t.eq(first.a, "1")
  t.eq(first.b, "x y")
  t.eq(all.a[2], "2")
  t.eq(first.c, "A+")
  t.eq(http.mime_type("site/index.HTML"), "text/html; charset=utf-8")
  t.eq(http.mime_type("a.png"), "image/png")
  t.eq(http.mime_type("noext"), "application/octet-stream")
  t.eq(require("http.server").parse_query, http.parse_query)
end)

t.done()
