-- test_lab_http.lua: the http module's request_head option, and `netlua -m
-- http` against a Python server that echoes each request exactly as it
-- arrived (tests/fixtures/headecho.py), curl against the same server, and
-- openssl s_server for https.
local t = require "testlib"
local hh = require "httphelp"
local tls = require "tlslib"
local http = require "http"

local PYTHON = "/usr/bin/python3"
local TOOL = t.shellquote(t.NETLUA) .. " -m http "

if not os.execute("test -x " .. PYTHON) then
  t.skip("http tool tests", PYTHON .. " is not installed")
  t.done()
end

-- The echo server: its base URL and a stop function.
local function echo_server()
  local port, stop = hh.spawn(string.format("exec %s %s/headecho.py \"$PORTFILE\" 60",
    PYTHON, hh.fixtures))
  return "http://127.0.0.1:" .. port, stop
end

-- Runs the tool with `args`, killed after 60 s: stdout, stderr, status.
local function tool(args, opts)
  return t.sh("timeout -s KILL 60 " .. TOOL .. args, opts)
end

-- The head and the body of what the echo server got (its reply's body).
local function split_echo(echo)
  return echo:match("^(.-\r\n\r\n)(.*)$")
end

-- The lines of stderr that start with `prefix`, prefix removed, each with
-- "\r\n" put back: the head they show (curl -v leaves the "\r" in).
local function shown_head(err, prefix)
  local lines = {}
  for line in err:gsub("\r\n", "\n"):gmatch("([^\n]*)\n") do
    if line:sub(1, #prefix) == prefix then lines[#lines + 1] = line:sub(#prefix + 1) .. "\r\n" end
  end
  return table.concat(lines)
end

t.test("http module: request_head = true gives the request head exactly as the server got it", function()
  local base, stop = echo_server()
  local res = assert(http.request{url = base .. "/a?b=1", method = "PUT", body = "data!",
    headers = {["X-Many"] = {"1", "2"}}, request_head = true})
  local without = assert(http.get(base .. "/plain"))
  stop()
  local head, body = split_echo(res.body)
  t.eq(res.request_head, head)
  t.eq(body, "data!")
  t.match(res.request_head, "^PUT /a%?b=1 HTTP/1%.1\r\n")
  t.match(res.request_head, "\r\nX%-Many: 1\r\nX%-Many: 2\r\n")
  t.eq(without.request_head, nil, "only when asked")
end)

t.test("http module: res.head is the reply head as received; after a redirect both heads are the last ones", function()
  local base, stop = echo_server()
  local res = assert(http.request{url = base .. "/redirect", request_head = true})
  stop()
  t.eq(res.status, 200)
  t.match(res.head, "^HTTP/1%.1 200 Echo\r\nContent%-Type: text/plain\r\nX%-Echo: yes\r\n")
  t.match(res.head, "\r\n\r\n$")
  t.match(res.request_head, "^GET /after HTTP/1%.1\r\n")
  t.eq(res.request_head, (split_echo(res.body)))
end)

t.test("http module: request_head must be a boolean", function()
  t.raises("option 'request_head' must be a boolean", http.request,
    {url = "http://127.0.0.1:1/", request_head = "yes"})
end)

t.test("-m http GET: the body to stdout, nothing on stderr, status 0", function()
  local base, stop = echo_server()
  local out, err, code = tool(base .. "/x")
  stop()
  t.eq(code, 0, err)
  t.eq(err, "")
  t.match(out, "^GET /x HTTP/1%.1\r\nHost: 127%.0%.0%.1:%d+\r\n")
end)

t.test("-m http -v: the '> ' lines are the head the server got, the '< ' lines the reply head", function()
  local base, stop = echo_server()
  local out, err, code = tool("-v PUT " .. base .. "/put -H 'X-One: 1' -H 'X-One: 2' -H 'X-Two: b' -d 'body!'")
  stop()
  t.eq(code, 0, err)
  local head, body = split_echo(out)
  t.eq(body, "body!")
  t.eq(shown_head(err, "> "), head)
  local reply = shown_head(err, "< ")
  t.match(reply, "^HTTP/1%.1 200 Echo\r\nContent%-Type: text/plain\r\nX%-Echo: yes\r\nContent%-Length: "
    .. #out .. "\r\nConnection: close\r\n\r\n$")
  t.match(head, "^PUT /put HTTP/1%.1\r\n")
  t.match(head, "\r\nX%-One: 1\r\nX%-One: 2\r\n")
  t.match(head, "\r\nX%-Two: b\r\n")
end)

t.test("-m http -v shows the same reply head as curl -v", function()
  if not t.have("curl") then return t.skip("", "curl is not installed") end
  local base, stop = echo_server()
  local _, err, code = tool("-v " .. base .. "/fixed")
  local _, cerr = t.sh("curl -sv " .. base .. "/fixed")
  stop()
  t.eq(code, 0, err)
  local ours, curls = shown_head(err, "< "), shown_head(cerr, "< ")
  t.match(curls, "^HTTP/1%.1 200 Echo\r\n")
  t.eq(ours, curls)
end)

t.test("-m http -d @FILE and -d @-: the body comes from a file or stdin, the method is POST", function()
  local base, stop = echo_server()
  local dir = t.tmpdir()
  t.writefile(dir .. "/body", "from\0a file\n")
  local out, err, code = tool(base .. "/f -d @" .. dir .. "/body")
  local out2, err2, code2 = tool(base .. "/g -d @-", {stdin = "from stdin"})
  local _, err3, code3 = tool(base .. "/h -d @" .. dir .. "/missing")
  stop()
  t.rmtree(dir)
  t.eq(code, 0, err)
  local head, body = split_echo(out)
  t.match(head, "^POST /f HTTP/1%.1\r\n")
  t.eq(body, "from\0a file\n")
  t.eq(code2, 0, err2)
  t.eq(select(2, split_echo(out2)), "from stdin")
  t.eq(code3, 1)
  t.match(err3, "^netlua: cannot read %-d @[^\n]*missing: [^\n]+\n$")
end)

t.test("-m http: a status of 400 or more prints the body, says the status and exits 22", function()
  local base, stop = echo_server()
  local out, err, code = tool(base .. "/status/404")
  local _, err3, code3 = tool(base .. "/status/302")
  stop()
  t.eq(code, 22)
  t.match(out, "^GET /status/404 HTTP/1%.1\r\n")
  t.eq(err, "netlua: http: 404 Echo\n")
  t.eq(code3, 0, err3)
end)

t.test("-m http: no reply is one line and status 1", function()
  local port = t.closed_port()
  local out, err, code = tool("http://127.0.0.1:" .. port .. "/")
  t.eq(code, 1)
  t.eq(out, "")
  t.eq(err, "netlua: http://127.0.0.1:" .. port .. "/: connection refused\n")
end)

t.test("-m http: https against openssl s_server, -k for its self-signed certificate", function()
  local missing = tls.missing()
  if missing then return t.skip("", missing) end
  local certs = tls.certs()
  local port, proc = tls.s_server(string.format("-cert %s -key %s -www -naccept 2",
    certs.self.cert, certs.self.key))
  local url = "https://127.0.0.1:" .. port .. "/"
  local _, err, code = tool(url)
  local out2, err2, code2 = tool("-v -k " .. url)
  tls.finish(proc)
  t.rmtree(certs.dir)
  t.eq(code, 1)
  t.match(err, "^netlua: https://127%.0%.0%.1:%d+/: [^\n]*certificate[^\n]*\n$")
  t.eq(code2, 0, err2)
  t.match(out2, "s_server")
  t.match(err2, "\n?> GET / HTTP/1%.1\n")
  t.match(err2, "\n< HTTP/1%.0 200 ok\n")
end)

t.test("-m http: bad usage is status 2 with the usage line", function()
  for _, args in ipairs{"", "ftp://127.0.0.1/", "BREW http://127.0.0.1/",
                        "http://127.0.0.1/ -H nocolon", "a b c"} do
    local _, err, code = tool(args)
    t.eq(code, 2, args)
    t.match(err, "\nusage: netlua %-m http ", args)
  end
end)

t.done()
