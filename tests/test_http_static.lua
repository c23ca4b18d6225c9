-- test_http_static.lua: static files as browsers fetch them: ETag and
-- Last-Modified with 304 (If-None-Match, If-Modified-Since), single byte
-- ranges (206, 416, If-Range), and Content-Type for the common web types;
-- against curl, Python's urllib and raw requests.
package.path = (arg[0]:match("^(.*)/") or ".") .. "/?.lua;" .. package.path
local t = require "testlib"
local http = require "http"

local CONTENT = "0123456789abcdefghijklmnopqrstuvwxyz\n" -- 37 bytes

-- A server with a static directory holding a.txt (CONTENT), and the dir.
local function static_server()
  local dir = t.tmpdir()
  t.writefile(dir .. "/a.txt", CONTENT)
  t.writefile(dir .. "/clip.mp4", "not really a video")
  t.writefile(dir .. "/font.woff2", "wOF2")
  local srv = assert(http.server{port = 0})
  srv:static("/f", dir)
  return srv, dir
end

-- Raw GET of path with extra header lines; the whole reply.
local function get(srv, path, extra, method)
  local c = t.connect(srv.port)
  c:send(string.format("%s %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n%s\r\n",
    method or "GET", path, extra or ""))
  local r = c:receive("*a")
  c:close()
  return r
end

local function header(reply, name)
  return reply:match("\r\n" .. name:gsub("%-", "%%-") .. ": ([^\r]*)")
end

local function body(reply)
  return reply:match("\r\n\r\n(.*)$")
end

t.test("a static file carries ETag, Last-Modified and Accept-Ranges; If-None-Match gets 304", function()
  local srv, dir = static_server()
  local first, again, weak, other, star = t.serve_while(srv, function()
    local r = get(srv, "/f/a.txt")
    local etag = header(r, "ETag")
    return r, get(srv, "/f/a.txt", "If-None-Match: " .. etag .. "\r\n"),
      get(srv, "/f/a.txt", 'If-None-Match: "x", W/' .. etag .. "\r\n"),
      get(srv, "/f/a.txt", 'If-None-Match: "other"\r\n'),
      get(srv, "/f/a.txt", "If-None-Match: *\r\n")
  end)
  t.match(first, "^HTTP/1.1 200 ")
  t.match(header(first, "ETag"), '^"[%x]+%-[%x]+"$')
  t.match(header(first, "Last-Modified"), "^%a%a%a, %d%d %a%a%a %d%d%d%d %d%d:%d%d:%d%d GMT$")
  t.eq(header(first, "Accept-Ranges"), "bytes")
  t.eq(body(first), CONTENT)
  t.match(again, "^HTTP/1.1 304 Not Modified\r\n")
  t.eq(body(again), "", "a 304 has no body")
  t.eq(header(again, "Content-Length"), nil)
  t.eq(header(again, "ETag"), header(first, "ETag"))
  t.match(weak, "^HTTP/1.1 304 ")
  t.match(other, "^HTTP/1.1 200 ")
  t.match(star, "^HTTP/1.1 304 ")
  t.rmtree(dir)
end)

t.test("curl -z (If-Modified-Since) gets 304 until the file changes", function()
  if not t.have("curl") then return t.skip("curl -z", "needs curl") end
  local srv, dir = static_server()
  os.execute("touch -d '2020-01-02 03:04:05 UTC' " .. dir .. "/a.txt")
  local same, older, newer = t.serve_while(srv, function()
    local function status(z)
      local out = t.sh_task(string.format("curl -s -o /dev/null -w '%%{http_code}' -z %s %s/f/a.txt",
        t.shellquote(z), srv.url))
      return out
    end
    return status("Thu, 02 Jan 2020 03:04:05 GMT"), status("Thu, 02 Jan 2020 03:04:04 GMT"),
      status("Fri, 03 Jan 2020 00:00:00 GMT")
  end)
  t.eq(same, "304")
  t.eq(older, "200")
  t.eq(newer, "304")
  t.rmtree(dir)
end)

t.test("curl -r: a single range is 206 with Content-Range; suffix and open ranges", function()
  if not t.have("curl") then return t.skip("curl -r", "needs curl") end
  local srv, dir = static_server()
  local results = t.serve_while(srv, function()
    local list = {}
    for _, r in ipairs{"2-5", "-4", "30-", "30-1000"} do
      local out, err, code = t.sh_task(string.format("curl -s -D /dev/stderr -r %s %s/f/a.txt", r, srv.url))
      list[r] = {out = out, err = err, code = code}
    end
    return list
  end)
  t.eq(results["2-5"].out, "2345")
  t.match(results["2-5"].err, "^HTTP/1.1 206 Partial Content")
  t.match(results["2-5"].err, "Content%-Range: bytes 2%-5/37")
  t.match(results["2-5"].err, "Content%-Length: 4\r\n")
  t.eq(results["-4"].out, "xyz\n")
  t.match(results["-4"].err, "Content%-Range: bytes 33%-36/37")
  t.eq(results["30-"].out, "uvwxyz\n")
  t.eq(results["30-1000"].out, "uvwxyz\n")
  t.match(results["30-1000"].err, "Content%-Range: bytes 30%-36/37")
  t.rmtree(dir)
end)

t.test("an unsatisfiable range is 416 with bytes */size; several ranges or a bad one get the whole file", function()
  local srv, dir = static_server()
  local past, multi, bad, head = t.serve_while(srv, function()
    return get(srv, "/f/a.txt", "Range: bytes=37-\r\n"),
      get(srv, "/f/a.txt", "Range: bytes=0-1,4-5\r\n"),
      get(srv, "/f/a.txt", "Range: lines=1-2\r\n"),
      get(srv, "/f/a.txt", "Range: bytes=2-5\r\n", "HEAD")
  end)
  t.match(past, "^HTTP/1.1 416 Range Not Satisfiable\r\n")
  t.eq(header(past, "Content-Range"), "bytes */37")
  t.match(multi, "^HTTP/1.1 200 ")
  t.eq(body(multi), CONTENT)
  t.match(bad, "^HTTP/1.1 200 ")
  t.match(head, "^HTTP/1.1 206 ")
  t.eq(header(head, "Content-Length"), "4")
  t.eq(body(head), "")
  t.rmtree(dir)
end)

t.test("If-Range: the range applies while the validator matches, else the whole file", function()
  local srv, dir = static_server()
  local match, stale = t.serve_while(srv, function()
    local etag = header(get(srv, "/f/a.txt"), "ETag")
    return get(srv, "/f/a.txt", "Range: bytes=0-2\r\nIf-Range: " .. etag .. "\r\n"),
      get(srv, "/f/a.txt", 'Range: bytes=0-2\r\nIf-Range: "old"\r\n')
  end)
  t.match(match, "^HTTP/1.1 206 ")
  t.eq(body(match), "012")
  t.match(stale, "^HTTP/1.1 200 ")
  t.eq(body(stale), CONTENT)
  t.rmtree(dir)
end)

t.test("Python's urllib: a Range request and a conditional one", function()
  if not t.have("/usr/bin/python3") then return t.skip("python client", "needs /usr/bin/python3") end
  local srv, dir = static_server()
  local out, err, code = t.serve_while(srv, function()
    return t.sh_task(string.format([[/usr/bin/python3 -c '
import urllib.request, urllib.error
u = "%s/f/a.txt"
r = urllib.request.urlopen(urllib.request.Request(u, headers={"Range": "bytes=10-15"}), timeout=20)
print(r.status, r.headers["Content-Range"], r.read().decode())
etag = urllib.request.urlopen(u, timeout=20).headers["ETag"]
try:
    urllib.request.urlopen(urllib.request.Request(u, headers={"If-None-Match": etag}), timeout=20)
except urllib.error.HTTPError as e:
    print(e.code)
']], srv.url))
  end)
  t.eq(code, 0, err)
  t.eq(out, "206 bytes 10-15/37 abcdef\n304\n")
  t.rmtree(dir)
end)

t.test("Content-Type for the common web types, served and from http.mime_type", function()
  local want = {mp4 = "video/mp4", webm = "video/webm", mp3 = "audio/mpeg", ogg = "audio/ogg",
    woff2 = "font/woff2", woff = "font/woff", avif = "image/avif", mjs = "text/javascript",
    map = "application/json", csv = "text/csv; charset=utf-8", md = "text/markdown; charset=utf-8",
    wasm = "application/wasm", svg = "image/svg+xml"}
  for ext, mime in pairs(want) do t.eq(http.mime_type("x." .. ext:upper()), mime, ext) end
  local srv, dir = static_server()
  local mp4, woff2 = t.serve_while(srv, function()
    return get(srv, "/f/clip.mp4"), get(srv, "/f/font.woff2")
  end)
  t.eq(header(mp4, "Content-Type"), "video/mp4")
  t.eq(header(woff2, "Content-Type"), "font/woff2")
  t.rmtree(dir)
end)

t.done()
