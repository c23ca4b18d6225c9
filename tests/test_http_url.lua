-- test_http_url.lua: http.url.parse and http.url.build: every part, IPv6
-- literals, percent-decoding, round trips both ways, clear errors.
package.path = (arg[0]:match("^(.*)/") or ".") .. "/?.lua;" .. package.path
local t = require "testlib"
local url = require "http.url"

local function check_parts(u, want)
  for _, k in ipairs{"scheme", "user", "password", "host", "port", "path", "raw_path", "query", "fragment"} do
    t.eq(u[k], want[k], k)
  end
end

t.test("parse splits every part and decodes user, password, host, path and fragment", function()
  local u = assert(url.parse("HTTP://us%20er:p%40ss:w@Example.com:8080/a%20b/c.txt?x=1&y=%41+b#sec%20two"))
  check_parts(u, {scheme = "http", user = "us er", password = "p@ss:w", host = "Example.com",
    port = 8080, path = "/a b/c.txt", raw_path = "/a%20b/c.txt", query = "x=1&y=%41+b",
    fragment = "sec two"})
  local q = require("http").parse_query(u.query)
  t.eq(q.y, "A b")
end)

t.test("IPv6 literals: brackets off, port after them, a zone as %25", function()
  check_parts(assert(url.parse("http://[::1]:8080/")), {scheme = "http", host = "::1", port = 8080,
    path = "/", raw_path = "/"})
  check_parts(assert(url.parse("http://[2001:db8::7]")), {scheme = "http", host = "2001:db8::7",
    path = "", raw_path = ""})
  check_parts(assert(url.parse("https://[fe80::1%25eth0]:443/x")), {scheme = "https",
    host = "fe80::1%eth0", port = 443, path = "/x", raw_path = "/x"})
  check_parts(assert(url.parse("http://[::ffff:127.0.0.1]/")), {scheme = "http",
    host = "::ffff:127.0.0.1", path = "/", raw_path = "/"})
  t.eq(url.build{scheme = "http", host = "::1", port = 8080, path = "/"}, "http://[::1]:8080/")
  t.eq(url.build{scheme = "http", host = "fe80::1%eth0"}, "http://[fe80::1%25eth0]")
end)

t.test("URLs without some parts: no host, no scheme, empty port, only a path", function()
  check_parts(assert(url.parse("mailto:ann@example.com")), {scheme = "mailto",
    path = "ann@example.com", raw_path = "ann@example.com"})
  check_parts(assert(url.parse("//cdn.example/x.js")), {host = "cdn.example", path = "/x.js",
    raw_path = "/x.js"})
  check_parts(assert(url.parse("/search?q=a#top")), {path = "/search", raw_path = "/search",
    query = "q=a", fragment = "top"})
  check_parts(assert(url.parse("http://h:/")), {scheme = "http", host = "h", path = "/", raw_path = "/"})
  check_parts(assert(url.parse("http://h?")), {scheme = "http", host = "h", path = "", raw_path = "",
    query = ""})
  check_parts(assert(url.parse("")), {path = "", raw_path = ""})
end)

local ROUND_TRIPS = {
  "http://example.com", "https://example.com/", "http://user:pw@example.com:8000/p/q?a=1&b=2#f",
  "http://[::1]:8080/api/items?id=3", "http://[fe80::1%25lo]:80/", "ftp://ftp.example.org/pub/file.txt",
  "http://h/a%2Fb/c%20d", "http://h/%E4%BD%A0%E5%A5%BD", "mailto:ann@example.com", "/relative/path?x#y",
  "//host.only", "http://127.0.0.1:0/", "file:///etc/hosts", "http://h/path;params?q=%26#%23",
  "http://h/a%2fb",
}

t.test("build(parse(s)) gives s back", function()
  for _, s in ipairs(ROUND_TRIPS) do
    t.eq(url.build(assert(url.parse(s))), s)
  end
end)

t.test("parse(build(t)) gives t back, whatever the parts hold", function()
  local cases = {
    {scheme = "http", host = "example.com", port = 80, path = "/a b/ü/%/?#", query = "k=v",
      fragment = "a b#c"},
    {scheme = "https", user = "a:b@c", password = "p:@/ w", host = "h", path = "/"},
    {scheme = "http", host = "::1", port = 65535, path = "/x"},
    {scheme = "http", host = "h", path = "", fragment = ""},
    {path = "/only"},
  }
  for i, c in ipairs(cases) do
    local u = assert(url.parse(url.build(c)), "case " .. i)
    for _, k in ipairs{"scheme", "user", "password", "host", "port", "path", "query", "fragment"} do
      t.eq(u[k], c[k], "case " .. i .. " " .. k)
    end
  end
end)

t.test("build encodes a query table as http.encode_query does, keys sorted", function()
  t.eq(url.build{scheme = "http", host = "h", path = "/s", query = {q = "x y&z", n = {1, 2}, ok = true}},
    "http://h/s?n=1&n=2&ok=true&q=x%20y%26z")
  t.eq(require("http").encode_query{q = "x y&z", n = {1, 2}, ok = true}, "n=1&n=2&ok=true&q=x%20y%26z")
  t.eq(url.build{path = "/p", query = "a b=1"}, "/p?a%20b=1")
end)

t.test("malformed URLs are nil and a message naming the URL and the fault", function()
  local cases = {
    {"http://[::1", "invalid URL 'http://[::1': '[' without ']' around an IPv6 address"},
    {"http://[::1]x/", "invalid URL 'http://[::1]x/': 'x' after the IPv6 address (a port is ':N')"},
    {"http://[zz]/", "invalid URL 'http://[zz]/': '[zz]' is not an IPv6 address"},
    {"http://[fe80::1%eth0]/", "bad zone in '[fe80::1%eth0]' (write %25 before it)"},
    {"http://h:70000/", "invalid URL 'http://h:70000/': port 70000 is out of range (0-65535)"},
    {"http://h:123456789012345678901/", "is out of range (0-65535)"},
    {"http://h:8o/", "invalid URL 'http://h:8o/': port '8o' is not a number"},
    {"http://h/a%zz", "invalid URL 'http://h/a%zz': bad escape '%zz' in the path"},
    {"http://h/a%4", "bad escape '%4' in the path"},
    {"http://h/?q=%", "bad escape '%' in the query"},
    {"http://u%ser@h/", "bad escape '%se' in the user"},
    {"http://h/a b", "invalid URL 'http://h/a b': a space at byte 11 (escape it as %20)"},
    {"http://h/\n", "a control character at byte 10 (escape it as %0A)"},
    {"http://h]/", "a '[' or ']' in host 'h]'"},
  }
  for _, c in ipairs(cases) do
    local u, msg = url.parse(c[1])
    t.eq(u, nil, c[1])
    t.ok(msg:find(c[2], 1, true), c[1] .. ": " .. tostring(msg))
  end
end)

t.test("wrong arguments raise", function()
  t.raises("bad argument #1 to 'parse' (string expected, got nil)", url.parse)
  t.raises("bad argument #1 to 'build' (table expected, got string)", url.build, "http://x")
  t.raises("port 70000 is not an integer from 0 to 65535", url.build, {host = "h", port = 70000})
  t.raises("port 8080 is not an integer", url.build, {host = "h", port = "8080"})
  t.raises("with a host, the path must start with '/'", url.build, {host = "h", path = "x"})
  t.raises("a user, password or port needs a host", url.build, {port = 1, path = "/"})
  t.raises("bad scheme '1http'", url.build, {scheme = "1http", path = "/"})
  t.raises("'host' must be a string, got number", url.build, {host = 1})
end)

t.test("http.url comes with require \"http\" and loads no libcurl", function()
  local out, err, code = t.netlua([[-e 'local u = require("http.url"); local h = require("http")
    assert(h.url == u); assert(u.parse("http://[::1]:1/").port == 1)
    for line in io.lines("/proc/self/maps") do if line:find("libcurl", 1, true) then print("curl mapped") end end
    print("done")']])
  t.eq(code, 0, err)
  t.eq(out, "done\n")
end)

t.done()
