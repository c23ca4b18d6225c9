-- test_lab_http_server.lua: `netlua -m http.server`, python -m http.server's
-- file server, against curl and raw requests from /usr/bin/python3:
-- the start line, listings (sorted, escaped, encoded, folders with '/'),
-- index.html, files and ranges, 404, the redirect of a folder without its
-- '/', every way out of the directory refused, a log line per request.
package.path = (arg[0]:match("^(.*)/") or ".") .. "/?.lua;" .. package.path
local t = require "testlib"

local START = "Serving HTTP on 127%.0%.0%.1 port (%d+) %(http://127%.0%.0%.1:%d+/%) %.%.%."

-- The served tree: files with names that need escaping, a folder with an
-- index.html, an empty folder, symlinks inside and pointing out.
local function tree()
  local root = t.tmpdir()
  local dir = root .. "/www"
  os.execute(string.format("mkdir -p %s/site %s/Empty %s/out", dir, dir, root))
  t.writefile(dir .. "/b.txt", "0123456789\n")
  t.writefile(dir .. "/a <&> \"q\".txt", "odd name\n")
  t.writefile(dir .. "/C.md", "# capital\n")
  t.writefile(dir .. "/site/index.html", "<p>the index</p>\n")
  t.writefile(dir .. "/site/other.txt", "other\n")
  t.writefile(root .. "/out/secret.txt", "secret\n")
  os.execute(string.format("ln -s b.txt %s/inside-link && ln -s ../out %s/outside && ln -s ../out/secret.txt %s/leak.txt",
    dir, dir, dir))
  return dir
end

local function start(dir, extra)
  return t.start_tool("http.server", string.format("0 --bind 127.0.0.1 --directory %s %s",
    t.shellquote(dir), extra or ""), 120, START)
end

-- curl's status code and body for a path on port (extra: curl options).
local function curl(port, path, extra)
  local out, err = t.sh(string.format("curl -s -S --path-as-is %s -w '\\n%%{http_code}' %s",
    extra or "", t.shellquote("http://127.0.0.1:" .. port .. path)))
  local body, code = (out or ""):match("^(.*)\n(%d+)$")
  t.ok(code, "curl answered: " .. tostring(err))
  return tonumber(code), body
end

if not t.have("curl") then
  t.skip("netlua -m http.server", "needs curl")
  t.done()
end

local dir = tree()
local pid, port, sdir = start(dir)

t.test("the start line says the address, the port the OS picked and the URL", function()
  local out = t.readfile(sdir .. "/out")
  t.match(out, "^Serving HTTP on 127%.0%.0%.1 port " .. port .. " %(http://127%.0%.0%.1:" .. port .. "/%) %.%.%.\n")
end)

t.test("a folder without index.html is listed: sorted, names escaped, links encoded, folders with '/'", function()
  local code, body = curl(port, "/")
  t.eq(code, 200)
  t.match(body, "<title>Directory listing for /</title>")
  local names, links = {}, {}
  for href, name in body:gmatch('<li><a href="([^"]*)">([^<]*)</a></li>') do
    links[#links + 1], names[#names + 1] = href, name
  end
  t.eq(table.concat(names, "|"),
    "a &lt;&amp;&gt; &quot;q&quot;.txt|b.txt|C.md|Empty/|inside-link|leak.txt|outside/|site/")
  t.eq(links[1], "a%20%3C%26%3E%20%22q%22.txt")
  t.eq(links[4], "Empty/")
  local code2, odd = curl(port, "/" .. links[1])
  t.eq(code2, 200, "the encoded link leads to the file")
  t.eq(odd, "odd name\n")
end)

t.test("a folder with index.html serves it; an empty folder lists nothing", function()
  local code, body = curl(port, "/site/")
  t.eq(code, 200)
  t.eq(body, "<p>the index</p>\n")
  local code2, empty = curl(port, "/Empty/")
  t.eq(code2, 200)
  t.ok(not empty:find("<li>", 1, true), "no entries")
end)

t.test("a folder without its '/' is redirected (301) to it, query kept, '//' made one '/'", function()
  local out = t.sh(string.format("curl -s -S -o /dev/null --path-as-is -w '%%{http_code} %%{redirect_url}' %s",
    t.shellquote("http://127.0.0.1:" .. port .. "//site?x=1")))
  t.eq(out, "301 http://127.0.0.1:" .. port .. "/site/?x=1")
end)

t.test("files: contents and type, 404 for what is not there, a Range gets 206", function()
  local out = t.sh(string.format("curl -s -S -D - %s", t.shellquote("http://127.0.0.1:" .. port .. "/C.md")))
  t.match(out, "^HTTP/1.1 200 ")
  t.match(out, "\r\nContent%-Type: text/markdown; charset=utf%-8\r\n")
  t.match(out, "\r\nETag: \"")
  t.match(out, "\r\n\r\n# capital\n$")
  t.eq((curl(port, "/nothing-here.txt")), 404)
  local code, part = curl(port, "/b.txt", "-r 2-5")
  t.eq(code, 206)
  t.eq(part, "2345")
  local code2, linked = curl(port, "/inside-link")
  t.eq(code2, 200, "a symlink to a file inside is served")
  t.eq(linked, "0123456789\n")
end)

t.test("nothing outside the folder: '..', %2e%2e, ..%2f, symlinks out (403), absolute paths stay inside", function()
  t.eq((curl(port, "/../out/secret.txt")), 403)
  t.eq((curl(port, "/%2e%2e/out/secret.txt")), 403)
  t.eq((curl(port, "/site/..%2f..%2fout/secret.txt")), 403)
  t.eq((curl(port, "/leak.txt")), 403, "symlink to a file out")
  t.eq((curl(port, "/outside/secret.txt")), 403, "symlink to a folder out")
  t.eq((curl(port, "/outside/")), 403)
  local code, body = curl(port, "/" .. dir .. "/b.txt")
  t.eq(code, 404, "an absolute path is taken inside the folder: " .. tostring(body))
  t.eq((curl(port, "//etc/passwd")), 404)
  t.eq((curl(port, "/a%00b")), 400, "a NUL byte")
end)

t.test("a malformed request gets 400 (raw, from /usr/bin/python3)", function()
  if not t.have("/usr/bin/python3") then return t.skip(nil, "needs /usr/bin/python3") end
  local out = t.sh(string.format("/usr/bin/python3 -c %s %d", t.shellquote([[
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
s.sendall(b"GET / HTTP/1.1\r\nHost : x\r\n\r\n")
print(s.recv(100).split(b"\r\n")[0].decode())
]]), port))
  t.eq(out, "HTTP/1.1 400 Bad Request\n")
end)

t.test("one line per request on stderr; Ctrl-C stops it, saying so", function()
  local out, err = t.stop_program(pid, sdir, "INT")
  t.match(err, "127%.0%.0%.1 GET /C%.md 200\n")
  t.match(err, "127%.0%.0%.1 GET /%.%./out/secret%.txt 403\n")
  t.match(out, "Interrupted, exiting%.\n$")
end)

t.test("without --bind it listens on every interface (0.0.0.0), as Python", function()
  local p, bport, bdir = t.start_tool("http.server", "0 -d " .. t.shellquote(dir), 120,
    "Serving HTTP on 0%.0%.0%.0 port (%d+) %(http://0%.0%.0%.0:%d+/%) %.%.%.")
  local code = curl(bport, "/b.txt") -- over loopback
  t.stop_program(p, bdir, "TERM")
  t.eq(code, 200)
end)

t.test("bad use: a folder that is not there (1), a bad port (2)", function()
  local _, err, code = t.netlua("-m http.server 0 --bind 127.0.0.1 -d /nonexistent/x")
  t.eq(code, 1)
  t.match(err, "^netlua: static directory '/nonexistent/x': ")
  local _, err2, code2 = t.netlua("-m http.server 70000")
  t.eq(code2, 2)
  t.match(err2, "port must be a number from 0 to 65535, not '70000'")
  t.match(err2, "usage: netlua %-m http%.server %[PORT%]")
end)

t.done()
