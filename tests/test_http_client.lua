-- test_http_client.lua: the libcurl client against an independent server
-- (Python's http.server, tests/fixtures/peer.py) on loopback.
package.path = (arg[0]:match("^(.*)/") or ".") .. "/?.lua;" .. package.path
local t = require "testlib"
local h = require "httphelp"
local http = require "http"
local json = require "json"

local port, stop, peerdir = h.peer(90)
local base = "http://127.0.0.1:" .. port
-- A port where nothing listens (as root, even port 1 may have a listener).
local REFUSED = "http://127.0.0.1:" .. t.closed_port() .. "/"

t.test("GET returns status, reason, lower-case headers, body, url, elapsed", function()
  local r = assert(http.get(base .. "/echo"))
  t.eq(r.status, 200)
  t.eq(r.reason, "OK")
  t.eq(r.headers["content-type"], "application/json")
  t.eq(r.url, base .. "/echo")
  t.ok(type(r.elapsed) == "number" and r.elapsed >= 0)
  t.eq(r:json().method, "GET")
  t.eq(r:json().headers["user-agent"], "netlua/" .. "0.1.0")
end)

t.test("every method reaches the server with its body", function()
  for _, m in ipairs({"POST", "PUT", "PATCH", "DELETE"}) do
    local r = assert(http.request{url = base .. "/echo", method = m, body = "data-" .. m})
    t.eq(r:json().method, m)
    t.eq(r:json().body, "data-" .. m)
  end
  local r = assert(http.request{url = base .. "/echo", method = "HEAD"})
  t.eq(r.status, 200)
  t.eq(r.body, "")
end)

t.test("request headers are sent, user_agent overrides", function()
  local r = assert(http.get(base .. "/echo", {headers = {["X-Token"] = "abc"},
    user_agent = "Mozilla/5.0 test"}))
  local got = r:json().headers
  t.eq(got["x-token"], "abc")
  t.eq(got["user-agent"], "Mozilla/5.0 test")
end)

t.test("query tables are percent-encoded, repeated keys kept", function()
  local r = assert(http.get(base .. "/echo?x=0", {query = {q = "a b&c=d/é", n = {1, 2}}}))
  local q = r:json().query
  t.eq(q.q[1], "a b&c=d/é")
  t.eq(q.n[1], "1")
  t.eq(q.n[2], "2")
  t.eq(q.x[1], "0")
end)

t.test("json= sends JSON with its content type; post with a table form-encodes", function()
  local r = assert(http.request{url = base .. "/echo", json = {k = "v", n = 3}})
  local e = r:json()
  t.eq(e.method, "POST")
  t.eq(e.headers["content-type"], "application/json")
  t.eq(json.decode(e.body).n, 3)
  r = assert(http.post(base .. "/echo", {a = "1 2", b = "x"}))
  t.eq(r:json().body, "a=1%202&b=x")
  t.eq(r:json().headers["content-type"], "application/x-www-form-urlencoded")
end)

t.test("big request bodies are sent whole", function()
  local body = string.rep("0123456789", 300000)
  local r = assert(http.post(base .. "/echo", body))
  t.eq(#r:json().body, #body)
  t.ok(r:json().body == body)
end)

t.test("repeated response headers are kept", function()
  local r = assert(http.get(base .. "/cookies"))
  t.eq(r.headers["set-cookie"], "a=1, b=2")
  local cookies = {}
  for _, pair in ipairs(r.header_list) do
    if pair[1] == "set-cookie" then cookies[#cookies + 1] = pair[2] end
  end
  t.eq(#cookies, 2)
  t.eq(cookies[2], "b=2")
end)

t.test("any HTTP status is a response, not an error", function()
  local r = assert(http.get(base .. "/status/404"))
  t.eq(r.status, 404)
  t.eq(r.ok, false)
  r = assert(http.get(base .. "/status/503"))
  t.eq(r.status, 503)
end)

t.test("redirects are followed, can be refused and are bounded", function()
  local r = assert(http.get(base .. "/redirect/3"))
  t.eq(r.status, 200)
  t.eq(r.url, base .. "/echo")
  r = assert(http.get(base .. "/redirect/1", {follow_redirects = false}))
  t.eq(r.status, 302)
  t.eq(r.headers.location, "/echo")
  local res, msg, code = http.get(base .. "/redirect/5", {max_redirects = 2})
  t.eq(res, nil)
  t.eq(code, "CURLE_TOO_MANY_REDIRECTS")
  t.match(msg, "redirect")
end)

t.test("a stalling server gives nil, 'timeout'", function()
  local res, msg, code = http.get(base .. "/stall", {timeout = 0.3})
  t.eq(res, nil)
  t.eq(msg, "timeout")
  t.eq(code, "CURLE_OPERATION_TIMEDOUT")
end)

t.test("connection refused and unknown hosts are failures with curl's reason", function()
  local res, msg, code = http.get(REFUSED)
  t.eq(res, nil)
  t.eq(msg, "connection refused")
  t.eq(code, "CURLE_COULDNT_CONNECT")
  res, msg, code = http.get("http://no-such-host.invalid/")
  t.eq(res, nil)
  t.eq(msg, "could not resolve host: no-such-host.invalid")
  t.eq(code, "CURLE_COULDNT_RESOLVE_HOST")
end)

t.test("retries: a server failing twice then succeeding", function()
  local r = assert(http.get(base .. "/flaky/one", {retries = 3, retry_backoff = 0.01}))
  t.eq(r.status, 200)
  t.eq(r.body, "recovered after 2")
  r = assert(http.get(base .. "/flaky/two", {retries = 1, retry_backoff = 0.01}))
  t.eq(r.status, 500, "one retry is not enough")
  r = assert(http.get(base .. "/flaky/three"))
  t.eq(r.status, 500, "no retries by default")
  r = assert(http.get(base .. "/flaky/four", {retries = 5, retry_backoff = 0.01, retry_5xx = false}))
  t.eq(r.status, 500, "retry_5xx=false")
end)

t.test("retries on timeouts, then gives the last error", function()
  local res, msg = http.get(base .. "/stall", {timeout = 0.2, retries = 1, retry_backoff = 0.01})
  t.eq(res, nil)
  t.eq(msg, "timeout")
end)

t.test("download writes the whole body and leaves no temporary file", function()
  local dir = t.tmpdir()
  local r = assert(http.download(base .. "/big/3000000", dir .. "/big.bin"))
  t.eq(r.status, 200)
  t.eq(r.bytes, 3000000)
  local data = t.readfile(dir .. "/big.bin")
  t.eq(#data, 3000000)
  t.eq(data:sub(1, 16), "0123456789abcdef")
  t.eq(table.concat(h.ls(dir), ","), "big.bin")
  t.rmtree(dir)
end)

t.test("a download cut mid-body leaves nothing behind", function()
  local dir = t.tmpdir()
  local res, msg, code = http.download(base .. "/truncated", dir .. "/t.bin")
  t.eq(res, nil)
  t.eq(code, "CURLE_PARTIAL_FILE")
  t.match(msg, "remaining")
  t.eq(#h.ls(dir), 0)
  t.rmtree(dir)
end)

t.test("a download with an error status leaves nothing and keeps the old file", function()
  local dir = t.tmpdir()
  t.writefile(dir .. "/keep.txt", "old")
  local res, msg, code = http.download(base .. "/status/404", dir .. "/keep.txt")
  t.eq(res, nil)
  t.eq(code, "HTTP_404")
  t.match(msg, "404")
  t.eq(t.readfile(dir .. "/keep.txt"), "old")
  t.eq(#h.ls(dir), 1)
  t.rmtree(dir)
end)

t.test("a download to a 255-byte file name works: its temporary name fits too", function()
  local dir = t.tmpdir()
  local name = string.rep("n", 251) .. ".png"
  local r = assert(http.download(base .. "/big/10", dir .. "/" .. name))
  t.eq(r.bytes, 10)
  t.eq(table.concat(h.ls(dir), ","), name)
  t.rmtree(dir)
end)

t.test("a download into a missing directory fails cleanly", function()
  local res, msg, code = http.download(base .. "/big/10", "/nonexistent-dir-netlua/x")
  t.eq(res, nil)
  t.eq(msg, "no such file or directory")
  t.eq(code, "ENOENT")
end)

t.test("a write error mid-download (file size limit) leaves nothing behind", function()
  local dir = t.tmpdir()
  local path = t.script(string.format([[
    local http = require "http"
    print(http.download(%q, %q))
  ]], base .. "/big/3000000", dir .. "/big.bin"))
  local out, err, code = t.sh("trap '' XFSZ; ulimit -f 200; exec " .. t.shellquote(t.NETLUA) ..
    " " .. t.shellquote(path))
  t.eq(code, 0, err)
  t.eq(out, "nil\tfile too large\tEFBIG\n")
  t.eq(#h.ls(dir), 0)
  t.rmtree(dir)
end)

t.test("Ctrl-C during a download removes the temporary file", function()
  local dir = t.tmpdir()
  local path = t.script(string.format([[
    local http = require "http"
    local ok, err = pcall(function(...) -- "ready" inside: an early Ctrl-C lands here too
      print("ready") io.stdout:flush()
      return http.download(...)
    end, %q, %q)
    io.stderr:write("caught: ", tostring(err), "\n")
    local p = io.popen("ls -A %s") io.stderr:write("left:[", p:read("a"), "]\n") p:close()
  ]], base .. "/stall", dir .. "/x.bin", dir))
  local _, err, code = t.interrupt(path)
  t.eq(code, 0, err)
  t.match(err, "caught: interrupted")
  t.match(err, "left:%[%]")
  t.rmtree(dir)
end)

t.test("request_many downloads: each file complete, failures leave nothing", function()
  local dir = t.tmpdir()
  local rs = http.request_many({
    {url = base .. "/big/5000", output = dir .. "/a"},
    {url = base .. "/truncated", output = dir .. "/b"},
    {url = base .. "/status/500", output = dir .. "/c"},
    {url = base .. "/big/7", output = dir .. "/d"},
  }, {concurrency = 4})
  t.eq(rs[1].bytes, 5000)
  t.eq(rs[2].code, "CURLE_PARTIAL_FILE")
  t.eq(rs[3].code, "HTTP_500")
  t.eq(rs[4].bytes, 7)
  t.eq(table.concat(h.ls(dir), ","), "a,d")
  t.rmtree(dir)
end)

t.test("request_many calls progress once per request, after its retries", function()
  local calls, order = {}, {}
  local rs = http.request_many({
    {url = base .. "/flaky/progress", retries = 3, retry_backoff = 0.01},
    base .. "/big/10", REFUSED},
    {concurrency = 3, progress = function(i, res, msg, code)
      order[#order + 1] = i
      calls[i] = {res and res.status, msg, code}
    end})
  t.eq(#order, 3)
  t.eq(calls[1][1], 200)
  t.eq(calls[2][1], 200)
  t.eq(calls[3][2], "connection refused")
  t.eq(calls[3][3], "CURLE_COULDNT_CONNECT")
  t.eq(rs[1].body, "recovered after 2")
end)

t.test("request_many runs many transfers at once, results in input order", function()
  local list = {}
  for i = 1, 30 do list[i] = base .. "/big/" .. (i * 100) end
  list[31] = {url = base .. "/status/418"}
  list[32] = REFUSED
  list[33] = {url = base .. "/stall", timeout = 0.3}
  local rs = http.request_many(list, {concurrency = 8})
  t.eq(#rs, 33)
  for i = 1, 30 do t.eq(#rs[i].body, i * 100, "item " .. i) end
  t.eq(rs[31].status, 418)
  t.eq(rs[32].error, "connection refused")
  t.eq(rs[32].code, "CURLE_COULDNT_CONNECT")
  t.eq(rs[33].error, "timeout")
end)

t.test("request_many keeps stalled transfers from blocking the others", function()
  local list = {{url = base .. "/stall", timeout = 2}}
  for i = 2, 6 do list[i] = base .. "/echo?i=" .. i end
  local rs = http.request_many(list, {concurrency = 6})
  t.eq(rs[1].error, "timeout")
  for i = 2, 6 do t.eq(rs[i]:json().query.i[1], tostring(i)) end
end)

-- The peer's "endless: ..." lines (one per /endless reply that ended).
local function endless_fates()
  local fates = {}
  for line in (t.readfile(peerdir .. "/log") or ""):gmatch("endless: ([^\n]*)") do
    fates[#fates + 1] = line
  end
  return fates
end

-- Waits (at most 10 s) for the peer to report how /endless reply number n
-- ended; returns that line.
local function endless_fate(n)
  local time = require "time"
  for _ = 1, 200 do
    local fates = endless_fates()
    if fates[n] then return fates[n] end
    time.sleep(0.05)
  end
  error("the peer never finished /endless reply " .. n)
end

local MiB = 1024 * 1024

t.test("max_body: an endless chunked reply stops there, the connection closed", function()
  local before = #endless_fates()
  local res, msg, code = http.get(base .. "/endless/64", {max_body = MiB})
  t.eq(res, nil)
  t.eq(msg, "body too large")
  t.eq(code, "CURLE_FILESIZE_EXCEEDED")
  local fate = endless_fate(before + 1)
  t.match(fate, "^stopped after %d+ bytes$", "the peer saw the client hang up")
  t.ok(tonumber(fate:match("%d+")) < 64 * MiB, fate)
end)

t.test("max_body: a body of exactly max_body bytes is kept, one more byte is not", function()
  local r = assert(http.get(base .. "/big/1000", {max_body = 1000}))
  t.eq(#r.body, 1000)
  local res, msg, code = http.get(base .. "/big/1000", {max_body = 999})
  t.eq(res, nil)
  t.eq(msg, "body too large")
  t.eq(code, "CURLE_FILESIZE_EXCEEDED")
  t.eq(assert(http.get(base .. "/big/0", {max_body = 0})).body, "")
end)

t.test("max_body counts decoded bytes: a gzip bomb stops there", function()
  local head = assert(http.request{url = base .. "/bomb/128", method = "HEAD"})
  t.eq(head.headers["content-encoding"], "gzip")
  t.ok(tonumber(head.headers["content-length"]) < MiB, "the bomb is small on the wire")
  local res, msg, code = http.get(base .. "/bomb/128", {max_body = MiB})
  t.eq(res, nil)
  t.eq(msg, "body too large")
  t.eq(code, "CURLE_FILESIZE_EXCEEDED")
  local r = assert(http.get(base .. "/bomb/1", {max_body = MiB}))
  t.eq(r.body, string.rep("\0", MiB), "a bomb within the limit is decoded whole")
end)

t.test("bodies kept in memory stop at http.max_body (64 MiB) by default", function()
  t.eq(http.max_body, 64 * MiB)
  local before = #endless_fates()
  local res, msg = http.get(base .. "/endless/128")
  t.eq(res, nil)
  t.eq(msg, "body too large")
  t.match(endless_fate(before + 1), "^stopped after")
  res, msg = http.get(base .. "/bomb/128")
  t.eq(res, nil)
  t.eq(msg, "body too large")
end)

t.test("a script changes the default with http.max_body, a request with max_body", function()
  local saved = http.max_body
  http.max_body = 100
  local res, msg = http.get(base .. "/big/101")
  t.eq(res, nil)
  t.eq(msg, "body too large")
  t.eq(#assert(http.get(base .. "/big/101", {max_body = 101})).body, 101)
  t.eq(#assert(http.get(base .. "/big/2000", {max_body = math.huge})).body, 2000)
  local rs = http.request_many({base .. "/big/100", base .. "/big/101"})
  t.eq(#rs[1].body, 100)
  t.eq(rs[2].error, "body too large")
  http.max_body = saved
end)

t.test("a download past max_body leaves neither a temporary file nor the file", function()
  local dir = t.tmpdir()
  local before = #endless_fates()
  local res, msg, code = http.download(base .. "/endless/64", dir .. "/e.png", {max_body = MiB})
  t.eq(res, nil)
  t.eq(msg, "body too large")
  t.eq(code, "CURLE_FILESIZE_EXCEEDED")
  t.match(endless_fate(before + 1), "^stopped after")
  res, msg = http.download(base .. "/bomb/128", dir .. "/b.png", {max_body = MiB})
  t.eq(res, nil)
  t.eq(msg, "body too large")
  t.eq(#h.ls(dir), 0)
  local r = assert(http.download(base .. "/bomb/1", dir .. "/ok.png", {max_body = MiB}))
  t.eq(r.bytes, MiB)
  t.eq(table.concat(h.ls(dir), ","), "ok.png")
  t.rmtree(dir)
end)

t.test("a download has no size limit unless max_body is given", function()
  local dir = t.tmpdir()
  local saved = http.max_body
  http.max_body = 10
  local r = assert(http.download(base .. "/big/5000", dir .. "/big.bin"))
  t.eq(r.bytes, 5000)
  http.max_body = saved
  t.rmtree(dir)
end)

t.test("programming errors raise", function()
  t.raises("unknown option 'bogus'", http.request, {url = base, bogus = 1})
  t.raises("option 'url' missing", http.request, {})
  t.raises("option 'timeout' must be a number", http.request, {url = base, timeout = "1"})
  t.raises("option 'max_body' must be a number", http.request, {url = base, max_body = "1M"})
  t.raises("option 'max_body' must be at least 0", http.request, {url = base, max_body = -1})
  t.raises("option 'max_body' must be at least 0", http.request, {url = base, max_body = 0 / 0})
  t.raises("string expected", http.get, 42)
  t.raises("concurrency", http.request_many, {}, {concurrency = 0})
  t.raises("line break", http.get, base, {headers = {X = "a\r\nInjected: 1"}})
  t.raises("bad header name", http.get, base, {headers = {["X\r\nY"] = "a"}})
end)

t.test("non-JSON bodies make res:json() raise a clear error", function()
  local r = assert(http.get(base .. "/nojson"))
  t.raises("", r.json, r)
end)

t.test("Ctrl-C interrupts a request in progress", function()
  local path, dir = t.script(string.format([[
    local http = require "http"
    local ok, err = pcall(function(...) -- "ready" inside: an early Ctrl-C lands here too
      print("ready") io.stdout:flush()
      return http.get(...)
    end, %q)
    io.stderr:write("caught: ", tostring(err), "\n")
    http.get(%q)
  ]], base .. "/stall", base .. "/stall"))
  local out, err, code = t.interrupt(path, {"caught"})
  t.match(err, "caught: interrupted")
  t.eq(code, 130)
  t.rmtree(dir)
end)

t.test("TLS: verification is on by default, verify=false turns it off", function()
  local dir = t.tmpdir()
  local _, err, code = t.sh(string.format("openssl req -x509 -newkey rsa:2048 -nodes -days 1 " ..
    "-subj /CN=localhost -keyout %s/key.pem -out %s/cert.pem", dir, dir))
  t.eq(code, 0, err)
  local tport, tstop = h.spawn(string.format("exec python3 %s/tlspeer.py \"$PORTFILE\" %s/cert.pem %s/key.pem 30",
    h.fixtures, dir, dir))
  local url = "https://127.0.0.1:" .. tport .. "/"
  local res, msg, ecode = http.get(url)
  t.eq(res, nil)
  t.eq(ecode, "CURLE_PEER_FAILED_VERIFICATION")
  t.match(msg, "certificate")
  local r = assert(http.get(url, {verify = false}))
  t.eq(r.body, "secure")
  tstop()
  t.rmtree(dir)
end)

t.test("unsupported schemes are refused", function()
  local res, _, code = http.get("file:///etc/passwd")
  t.eq(res, nil)
  t.eq(code, "CURLE_UNSUPPORTED_PROTOCOL")
end)

stop()
t.done()
