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

-- ---- multipart/form-data ------------------------------------------------------

local json = require "json"
local task = require "task"
local hh = require "httphelp"

-- A server whose /up route answers what req:form() read (with each file's
-- content read back), storing uploads in a fresh directory; the route
-- /keep moves the file "f" to keep_dir/kept.
local function upload_server(opts)
  local up, keep = t.tmpdir(), t.tmpdir()
  opts = opts or {}
  opts.port, opts.upload_dir = 0, up
  local srv = assert(http.server(opts))
  local calls = 0
  local function answer(req, move)
    calls = calls + 1
    local fields, all, files, all_files = req:form()
    if fields == nil then return 400, all .. "\n" end
    local out = {fields = fields, all = all, files = {}, count = {}}
    for name, list in pairs(all_files) do
      out.count[name] = #list
      t.eq(files[name], list[1])
    end
    for name, f in pairs(files) do
      out.files[name] = {filename = f.filename, type = f.type, size = f.size, name = f.name,
        content = t.readfile(f.path), in_dir = f.path:sub(1, #up + 1) == up .. "/"}
    end
    if move then assert(os.rename(files.f.path, keep .. "/kept")) end
    return out
  end
  srv:route("POST", "/up", function(req) return answer(req) end)
  srv:route("POST", "/keep", function(req) return answer(req, true) end)
  return srv, up, keep, function() return calls end
end

local BINARY = "line1\r\n--not-a-boundary\r\n\0\1\2\255 end"

t.test("multipart: curl -F fields and files; files land in temporary files, removed after the request", function()
  if not t.have("curl") then return t.skip("curl -F", "needs curl") end
  local srv, up, keep = upload_server()
  local dir = t.tmpdir()
  t.writefile(dir .. "/data.bin", BINARY)
  local out, err, code = t.serve_while(srv, function()
    return t.sh_task(string.format("curl -s -F 'name=Jürgen M' -F tag=a -F tag=b " ..
      "-F 'f=@%s/data.bin;type=application/octet-stream' -F 'g=@%s/data.bin;filename=../../etc/passwd' %s/up",
      dir, dir, srv.url))
  end)
  t.eq(code, 0, err)
  local got = json.decode(out)
  t.eq(got.fields.name, "Jürgen M")
  t.eq(got.all.tag[2], "b")
  t.eq(got.files.f.content, BINARY)
  t.eq(got.files.f.size, #BINARY)
  t.eq(got.files.f.filename, "data.bin")
  t.eq(got.files.f.type, "application/octet-stream")
  t.eq(got.files.f.name, "f")
  t.ok(got.files.f.in_dir, "stored under upload_dir")
  t.eq(got.files.g.filename, "passwd", "a hostile filename loses its directories")
  t.eq(#hh.ls(up), 0, "temporary files removed: " .. table.concat(hh.ls(up), " "))
  t.rmtree(up) t.rmtree(keep) t.rmtree(dir)
end)

t.test("multipart: a file the handler moved stays; the rest are removed", function()
  if not t.have("curl") then return t.skip("curl -F", "needs curl") end
  local srv, up, keep = upload_server()
  local dir = t.tmpdir()
  t.writefile(dir .. "/data.bin", BINARY)
  local _, err, code = t.serve_while(srv, function()
    return t.sh_task(string.format("curl -s -F f=@%s/data.bin -F h=@%s/data.bin %s/keep", dir, dir, srv.url))
  end)
  t.eq(code, 0, err)
  t.eq(t.readfile(keep .. "/kept"), BINARY)
  t.eq(#hh.ls(up), 0)
  t.rmtree(up) t.rmtree(keep) t.rmtree(dir)
end)

-- A multipart body by hand, boundary "XyZ", with the given parts (each a
-- {head, content} pair) and an optional preamble.
local function multipart_body(parts, preamble)
  local out = {preamble or ""}
  for _, p in ipairs(parts) do
    out[#out + 1] = "--XyZ\r\n" .. p[1] .. "\r\n\r\n" .. p[2] .. "\r\n"
  end
  out[#out + 1] = "--XyZ--\r\n"
  return table.concat(out)
end

local MP_TYPE = 'multipart/form-data; boundary="XyZ"'

t.test("multipart: a body whose boundaries are split across reads, a preamble, hostile filenames", function()
  local srv, up, keep = upload_server()
  local payload = multipart_body({
    {'Content-Disposition: form-data; name="a"', "alpha"},
    {'Content-Disposition: form-data; name="f"; filename="..\\\\..\\\\win.ini"\r\nContent-Type: text/plain', "one\r\n--XY\r\n--Xy"},
    {'Content-Disposition: form-data; name="g"; filename=".."', ""},
    {'content-disposition: form-data; name="e"; filename="a\\"b.txt"', "q"},
    {"Content-Disposition: form-data; name=\"u\"; filename*=UTF-8''dir%2F%E2%82%AC%20rates.txt", "u"},
  }, "ignored preamble\r\n")
  local reply = t.serve_while(srv, function()
    local c = t.connect(srv.port)
    c:send(string.format("POST /up HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: %s\r\n" ..
      "Content-Length: %d\r\n\r\n", MP_TYPE, #payload))
    for i = 1, #payload, 5 do
      c:send(payload:sub(i, i + 4))
      task.sleep(0.001)
    end
    local r = c:receive("*a")
    c:close()
    return r
  end)
  t.match(reply, "^HTTP/1.1 200 ")
  local got = json.decode(reply:match("\r\n\r\n(.*)$"))
  t.eq(got.fields.a, "alpha")
  t.eq(got.files.f.content, "one\r\n--XY\r\n--Xy")
  t.eq(got.files.f.filename, "win.ini")
  t.eq(got.files.g.filename, "", "'..' is no name")
  t.eq(got.files.g.size, 0)
  t.eq(got.files.e.filename, 'a"b.txt')
  t.eq(got.files.u.filename, "€ rates.txt", "filename* decoded, its directory dropped")
  t.eq(#hh.ls(up), 0)
  t.rmtree(up) t.rmtree(keep)
end)

t.test("multipart: malformed bodies are nil and a message; files made before the fault are removed", function()
  local srv, up, keep = upload_server()
  local function post_mp(ctype, payload)
    return exchange(srv, post("/up", ctype, payload))
  end
  local no_boundary, unterminated, no_disposition, no_name = t.serve_while(srv, function()
    return post_mp("multipart/form-data", "--XyZ\r\n\r\nx\r\n--XyZ--"),
      post_mp(MP_TYPE, "--XyZ\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a\"\r\n\r\nnever ends"),
      post_mp(MP_TYPE, multipart_body({
        {'Content-Disposition: form-data; name="f"; filename="a.txt"', "stored first"},
        {"Content-Type: text/plain", "no disposition"}})),
      post_mp(MP_TYPE, multipart_body({{"Content-Disposition: form-data", "x"}}))
  end)
  t.match(no_boundary, "^HTTP/1.1 400 .*malformed multipart body %(no boundary parameter")
  t.match(unterminated, "^HTTP/1.1 400 .*malformed multipart body %(a part without the closing boundary%)")
  t.match(no_disposition, "^HTTP/1.1 400 .*malformed multipart body %(a part without Content%-Disposition")
  t.match(no_name, "^HTTP/1.1 400 ")
  t.eq(#hh.ls(up), 0, "nothing left: " .. table.concat(hh.ls(up), " "))
  t.rmtree(up) t.rmtree(keep)
end)

t.test("multipart: an upload bigger than max_body is 413 and leaves nothing on disk", function()
  if not t.have("curl") then return t.skip("curl -F", "needs curl") end
  local srv, up, keep, calls = upload_server{max_body = 4096}
  local dir = t.tmpdir()
  t.writefile(dir .. "/big.bin", string.rep("z", 100000))
  local out, err, code = t.serve_while(srv, function()
    return t.sh_task(string.format("curl -s -o /dev/null -w '%%{http_code}' -F f=@%s/big.bin %s/up",
      dir, srv.url))
  end)
  t.eq(out, "413", err .. " " .. tostring(code))
  t.eq(calls(), 0, "the handler never ran")
  t.eq(#hh.ls(up), 0)
  t.rmtree(up) t.rmtree(keep) t.rmtree(dir)
end)

-- ---- uploads go to disk as they arrive ----------------------------------------

-- Runs a server script in its own process (its memory its own) with
-- upload_dir as its argument, and curl against it once it prints
-- "listening on 127.0.0.1:PORT"; the server serves one request and ends.
-- `wrap`: what the shell runs the whole in (e.g. a mount namespace).
-- Returns curl's output, the server's stdout and stderr, and the status.
local function upload_session(script, up, curl_args, wrap, setup)
  local dir = t.tmpdir()
  local sh = table.concat({
    setup or "",
    string.format("ASAN_OPTIONS=quarantine_size_mb=0:detect_leaks=0 timeout 120 %s %s %s > %s/out 2> %s/err &",
      t.shellquote(t.NETLUA), t.shellquote(script), t.shellquote(up), dir, dir),
    "pid=$!",
    string.format("for i in $(seq 400); do port=$(sed -n 's/^listening on 127.0.0.1://p' %s/out); " ..
      "[ -n \"$port\" ] && break; sleep 0.05; done", dir),
    string.format("curl -s %s http://127.0.0.1:$port/up", curl_args),
    "wait $pid",
  }, "\n")
  local out, err, code = t.sh((wrap or "sh -c") .. " " .. t.shellquote(sh))
  local sout, serr = t.readfile(dir .. "/out"), t.readfile(dir .. "/err")
  t.rmtree(dir)
  return out, sout, serr .. err, code
end

-- POST /up answers the form's file size and the growth of the server's
-- peak memory (VmHWM) since it began listening, in KiB.
local MEMORY_SERVER = [[
local http = require "http"
local function hwm()
  for line in io.lines("/proc/self/status") do
    local kb = line:match("^VmHWM:%s*(%d+)")
    if kb then return tonumber(kb) end
  end
end
local srv = assert(http.server{port = 0, upload_dir = arg[1], max_body = 256 * 1048576})
local start
srv:route("POST", "/up", function(req)
  local fields, all, files = req:form()
  if fields == nil then return 400, all end
  return {size = files.f.size, name = fields.name, grew_kib = hwm() - start}
end)
collectgarbage()
start = hwm()
print("listening on 127.0.0.1:" .. srv.port)
io.stdout:flush()
srv:serve{max_requests = 1}
]]

t.test("multipart: a 32 MiB upload goes to disk as it arrives, not into the server's memory", function()
  if not t.have("curl") then return t.skip("curl -F", "needs curl") end
  local dir, up = t.tmpdir(), t.tmpdir()
  local size = 32 * 1048576
  local f = assert(io.open(dir .. "/big.bin", "wb"))
  for i = 1, size // 65536 do f:write(string.rep(string.char(i % 251), 65536)) end
  f:close()
  local out, _, err, code = upload_session(t.script(MEMORY_SERVER), up,
    string.format("-F name=x -F f=@%s/big.bin", dir))
  t.eq(code, 0, err)
  local got = json.decode(out)
  t.eq(got.size, size)
  t.eq(got.name, "x")
  t.ok(got.grew_kib * 1024 < size // 4, string.format(
    "the server's peak memory grew by %d KiB for a %d KiB upload", got.grew_kib, size // 1024))
  t.eq(#hh.ls(up), 0, "nothing left in upload_dir")
  t.rmtree(dir) t.rmtree(up)
end)

t.test("multipart: the body is on disk while it arrives; a client that vanishes leaves nothing", function()
  local srv, up = upload_server()
  local head = string.format("POST /up HTTP/1.1\r\nHost: x\r\nContent-Type: %s\r\n" ..
    "Content-Length: 100000\r\n\r\n", MP_TYPE)
  local seen, after = t.serve_while(srv, function()
    local c = t.connect(srv.port)
    c:send(head .. "--XyZ\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a\"\r\n\r\n" ..
      string.rep("p", 5000))
    local names
    for _ = 1, 200 do -- until the server has read what was sent
      names = hh.ls(up)
      if #names == 1 and #(t.readfile(up .. "/" .. names[1]) or "") >= 5000 then break end
      task.sleep(0.01)
    end
    local held = names[1] and t.readfile(up .. "/" .. names[1])
    c:close()
    for _ = 1, 200 do
      if #hh.ls(up) == 0 then break end
      task.sleep(0.01)
    end
    return {names = names, held = held and #held}, hh.ls(up)
  end)
  t.eq(#seen.names, 1, "one body file while the request comes")
  t.match(seen.names[1], "^netlua%-body%-")
  t.ok(seen.held and seen.held >= 5000, "the bytes so far are in it")
  t.eq(#after, 0, "removed when the client went away: " .. table.concat(after, " "))
  t.rmtree(up)
end)

t.test("multipart: a chunked upload is spooled and bounded by max_body; req.body still reads it", function()
  local srv, up = upload_server{max_body = 8192}
  srv:route("POST", "/raw", function(req)
    return {body = req.body, file = rawget(req, "body_file") ~= nil}
  end)
  local payload = multipart_body({{'Content-Disposition: form-data; name="a"', "alpha"}})
  local function chunked(path, body)
    local out = {string.format("POST %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" ..
      "Content-Type: %s\r\nTransfer-Encoding: chunked\r\n\r\n", path, MP_TYPE)}
    for i = 1, #body, 7 do
      local piece = body:sub(i, i + 6)
      out[#out + 1] = string.format("%x\r\n%s\r\n", #piece, piece)
    end
    out[#out + 1] = "0\r\n\r\n"
    return table.concat(out)
  end
  local small, raw, big = t.serve_while(srv, function()
    return exchange(srv, chunked("/up", payload)), exchange(srv, chunked("/raw", payload)),
      exchange(srv, chunked("/up", string.rep("x", 9000)))
  end)
  t.match(small, "^HTTP/1.1 200 ")
  t.eq(json.decode(small:match("\r\n\r\n(.*)$")).fields.a, "alpha")
  local r = json.decode(raw:match("\r\n\r\n(.*)$"))
  t.eq(r.body, payload, "req.body reads the spooled body")
  t.eq(r.file, true)
  t.match(big, "^HTTP/1.1 413 ")
  t.eq(#hh.ls(up), 0)
  t.rmtree(up)
end)

t.test("multipart: a full disk is 507 with a clear reason and leaves no partial file", function()
  if not t.have("curl") then return t.skip("full disk", "needs curl") end
  if not os.execute("unshare -m true 2>/dev/null") then
    return t.skip("full disk", "needs unshare -m (a mount namespace) to mount a small tmpfs")
  end
  local dir, up = t.tmpdir(), t.tmpdir()
  t.writefile(dir .. "/big.bin", string.rep("d", 1048576))
  local script = t.script([[
local http = require "http"
local srv = assert(http.server{port = 0, upload_dir = arg[1], max_body = 8 * 1048576})
srv:route("POST", "/up", function(req) return 200, "stored\n" end)
print("listening on 127.0.0.1:" .. srv.port)
io.stdout:flush()
srv:serve{max_requests = 1}
local p = io.popen("ls -A " .. arg[1])
print("left: [" .. p:read("a") .. "]")
p:close()
]])
  -- the server's upload_dir is a 256 KiB tmpfs in a mount namespace of its own
  -- The refused upload is not a request served: a plain one follows it.
  -- The server answers while curl still sends the body; its lingering
  -- close reads the rest, so curl gets the 507 and is never reset.
  local out, sout, err = upload_session(script, up, string.format(
    "-w ' code=%%{http_code}' -F f=@%s/big.bin http://127.0.0.1:$port/up; echo \" rc=$?\"; curl -s -d x",
    dir), "unshare -m --propagation private sh -c",
    string.format("mount -t tmpfs -o size=256k netlua-test %s || exit 3", t.shellquote(up)))
  local code = out:match("code=(%d+) rc=%d+")
  t.eq(code, "507", "the upload got its 507, not a reset: " .. out .. err)
  t.match(out, "not enough disk space for the request body")
  t.match(out, "stored\n$", "the server went on to the next request")
  t.match(sout, "left: %[%]", "no partial body file on the full disk: " .. err)
  t.rmtree(dir) t.rmtree(up)
end)

-- ---- cookies ---------------------------------------------------------------------

t.test("cookies: req.cookies from curl -b, several Set-Cookie fields into curl -c's jar", function()
  if not t.have("curl") then return t.skip("curl -b/-c", "needs curl") end
  local srv = assert(http.server{port = 0})
  srv:route("GET", "/login", function(req)
    return 200, req.cookies, {["Set-Cookie"] = {
      http.cookie("session", "abc123", {http_only = true, same_site = "Lax", path = "/", max_age = 3600}),
      http.cookie("theme", "dark", {path = "/"}),
    }}
  end)
  srv:route("GET", "/me", function(req) return req.cookies end)
  local dir = t.tmpdir()
  local first, jar, back = t.serve_while(srv, function()
    local out1 = t.sh_task(string.format("curl -s -b 'a=1; b=\"two\"; a=3' -c %s/jar %s/login", dir, srv.url))
    local out2 = t.sh_task(string.format("curl -s -b %s/jar %s/me", dir, srv.url))
    return out1, t.readfile(dir .. "/jar"), out2
  end)
  local c1 = json.decode(first)
  t.eq(c1.a, "1", "the first of a repeated name")
  t.eq(c1.b, "two", "quotes removed")
  t.match(jar, "#HttpOnly_127%.0%.0%.1\tFALSE\t/\tFALSE\t%d+\tsession\tabc123")
  t.match(jar, "\n127%.0%.0%.1\tFALSE\t/\tFALSE\t0\ttheme\tdark")
  local c2 = json.decode(back)
  t.eq(c2.session, "abc123")
  t.eq(c2.theme, "dark")
  t.rmtree(dir)
end)

t.test("http.cookie writes attributes and refuses what would break the field", function()
  t.eq(http.cookie("id", "a1", {path = "/app", domain = "example.org", max_age = 60,
    expires = 0, secure = true, http_only = true, same_site = "none"}),
    "id=a1; Path=/app; Domain=example.org; Max-Age=60; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Secure; HttpOnly; SameSite=None")
  t.eq(http.cookie("x", ""), "x=")
  t.raises("bad name", http.cookie, "a b", "1")
  t.raises("holds a space", http.cookie, "a", "x;y")
  t.raises("holds a space", http.cookie, "a", "x\r\nSet-Cookie: evil=1")
  t.raises("needs secure = true", http.cookie, "a", "1", {same_site = "None"})
  t.raises("'same_site' must be", http.cookie, "a", "1", {same_site = "sometimes"})
  t.raises("unknown option 'httponly'", http.cookie, "a", "1", {httponly = true})
  t.raises("holds ';'", http.cookie, "a", "1", {path = "/; Domain=evil"})
  t.raises("'max_age' must be an integer", http.cookie, "a", "1", {max_age = 1.5})
end)

t.done()
