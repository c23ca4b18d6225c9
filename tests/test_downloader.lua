-- test_downloader.lua: scripts/downloader.lua end to end, against the
-- bundled image API (scripts/imageapi.lua) and a hostile API (Python,
-- tests/fixtures/peer.py): the right files, nothing outside --out, the
-- right exit codes.
package.path = (arg[0]:match("^(.*)/") or ".") .. "/?.lua;" .. package.path
local t = require "testlib"
local h = require "httphelp"

local root = h.dir .. "/.."
local downloader = root .. "/scripts/downloader.lua"

local function run(args)
  return t.netlua(t.shellquote(downloader) .. " " .. args)
end

-- Every file under dir (recursive), relative names, sorted.
local function tree(dir)
  local p = io.popen("cd " .. t.shellquote(dir) .. " && find . -mindepth 1 | sort")
  local names = {}
  for line in p:lines() do names[#names + 1] = line:sub(3) end
  p:close()
  return names
end

t.test("bundled API: every image saved, real distinct PNGs, exit 0", function()
  local dir = t.tmpdir()
  local out, err, code = run("--out " .. dir .. "/dl --num 7 --threads 3")
  t.eq(code, 0, err)
  t.match(out, "started the bundled image API at http://127%.0%.0%.1:%d+/meinv/")
  t.match(out, "downloaded 7 of 7 images")
  local files = tree(dir .. "/dl")
  t.eq(#files, 7)
  local seen = {}
  for i = 1, 7 do
    local name = string.format("meinv-%03d.png", i)
    t.eq(files[i], name)
    local data = t.readfile(dir .. "/dl/" .. name)
    t.eq(data:sub(1, 8), "\x89PNG\r\n\x1a\n", name .. " is a PNG")
    t.ok(not seen[data], name .. " differs from the others")
    seen[data] = true
  end
  t.rmtree(dir)
end)

t.test("bundled API PNGs decode (zlib and CRCs checked by Python)", function()
  local dir = t.tmpdir()
  local _, err, code = run("--out " .. dir .. " --num 2")
  t.eq(code, 0, err)
  local out, perr, pcode = t.sh(string.format([[python3 -c '
import zlib, struct, sys
d = open(sys.argv[1], "rb").read()
assert d[:8] == b"\x89PNG\r\n\x1a\n"
pos, idat = 8, b""
while pos < len(d):
    n, = struct.unpack(">I", d[pos:pos+4]); kind = d[pos+4:pos+8]; body = d[pos+8:pos+8+n]
    crc, = struct.unpack(">I", d[pos+8+n:pos+12+n])
    assert zlib.crc32(kind + body) == crc, kind
    if kind == b"IHDR": w, h = struct.unpack(">II", body[:8])
    if kind == b"IDAT": idat += body
    pos += 12 + n
raw = zlib.decompress(idat)
assert len(raw) == h * (1 + 3 * w)
print(w, h)' %s/meinv-002.png]], dir))
  t.eq(pcode, 0, perr)
  t.eq(out, "96 64\n")
  t.rmtree(dir)
end)

t.test("the image API answers tianapi's error shape for a wrong key", function()
  local path, dir = t.script(string.format([[
    package.path = %q .. "/scripts/?.lua;" .. package.path
    local api = require "imageapi"
    local http = require "http"
    local srv = assert(api.server{port = 0, key = "right"})
    os.execute(string.format("( curl -s '%%s?key=wrong' > %%s/wrong; curl -s '%%s?key=right&num=3' > %%s/right; curl -s '%%s../shutdown?key=right' >/dev/null ) &",
      srv.endpoint, %q, srv.endpoint, %q, srv.endpoint))
    srv:serve{timeout = 20}
  ]], root, "DIR", "DIR"))
  local src = t.readfile(path):gsub("DIR", dir)
  t.writefile(path, src)
  local _, err, code = t.netlua(t.shellquote(path))
  t.eq(code, 0, err)
  local json = require "json"
  local wrong = json.decode(t.readfile(dir .. "/wrong"))
  t.eq(wrong.code, 230)
  t.ok(wrong.newslist == nil)
  local right = json.decode(t.readfile(dir .. "/right"))
  t.eq(right.code, 200)
  t.eq(right.msg, "success")
  t.eq(#right.newslist, 3)
  for _, k in ipairs({"ctime", "title", "description", "picUrl", "url"}) do
    t.ok(right.newslist[1][k], "field " .. k)
  end
  t.rmtree(dir)
end)

for _, workers in ipairs{"", "--workers 2"} do
t.test("imageapi.lua as a program: --port 0 --portfile " .. workers .. ", downloader --api, /shutdown ends it", function()
  local dir = t.tmpdir()
  local portfile = dir .. "/port"
  os.execute(string.format("%s %s --port 0 --key k1 --portfile %s --lifetime 30 %s > %s/out 2>&1 &",
    t.shellquote(t.NETLUA), t.shellquote(root .. "/scripts/imageapi.lua"), portfile, workers, dir))
  local time = require "time"
  local port
  for _ = 1, 400 do
    port = tonumber(t.readfile(portfile) or "")
    if port then break end
    time.sleep(0.05)
  end
  t.ok(port, "imageapi wrote its port: " .. tostring(t.readfile(dir .. "/out")))
  local api = "http://127.0.0.1:" .. port .. "/meinv/"
  local out, err, code = run(string.format("--api %s --key k1 --num 3 --out %s/dl", api, dir))
  t.eq(code, 0, err)
  t.match(out, "downloaded 3 of 3 images")
  t.eq(#tree(dir .. "/dl"), 3)
  _, _, code = run(string.format("--api %s --key wrong --num 3 --out %s/dl2", api, dir))
  t.eq(code, 1, "a wrong key is the API's error, exit 1")
  t.sh(string.format("curl -s 'http://127.0.0.1:%d/shutdown?key=k1'", port))
  local gone = false
  for _ = 1, 200 do
    local _, _, c = t.sh(string.format("curl -s -o /dev/null 'http://127.0.0.1:%d/meinv/'", port))
    if c ~= 0 then gone = true break end
    time.sleep(0.05)
  end
  t.ok(gone, "the API stopped after /shutdown")
  t.match(t.readfile(dir .. "/out"), "image API on http://127%.0%.0%.1:" .. port .. "/meinv/")
  t.rmtree(dir)
end)
end

t.test("imageapi.lua: a bad --workers is a usage error", function()
  local _, err, code = t.netlua(t.shellquote(root .. "/scripts/imageapi.lua") .. " --workers 0")
  t.eq(code, 2)
  t.match(err, "usage: netlua scripts/imageapi.lua")
end)


t.test("on a terminal a progress bar counts files and bytes", function()
  local dir = t.tmpdir()
  local out, err, code = t.sh(string.format("script -qec %s /dev/null",
    t.shellquote(t.shellquote(t.NETLUA) .. " " .. t.shellquote(downloader) ..
      " --num 4 --threads 2 --out " .. dir)))
  t.eq(code, 0, err)
  t.match(out, "%[%-+%] 0/4 files")
  t.match(out, "%[#+%] 4/4 files  72%.5 KiB")
  t.rmtree(dir)
end)

t.test("not on a terminal there is no progress bar", function()
  local dir = t.tmpdir()
  local out, err, code = run("--num 2 --out " .. dir)
  t.eq(code, 0, err)
  t.ok(not out:find("files  ", 1, true))
  t.rmtree(dir)
end)

local port, stop, peerdir = h.peer(120)
local api = "http://127.0.0.1:" .. port .. "/api/"

t.test("hostile file names stay inside --out, never empty, never overwrite", function()
  local dir = t.tmpdir()
  os.execute("mkdir " .. dir .. "/out")
  local out, err, code = run("--api " .. api .. "hostile --out " .. dir .. "/out")
  t.eq(code, 0, err .. out)
  t.eq(table.concat(tree(dir), ","), "out," .. table.concat(tree(dir .. "/out"), ",", 1)
    :gsub("[^,]+", "out/%0"))
  local files = tree(dir .. "/out")
  t.eq(#files, 12, table.concat(files, " "))
  for _, f in ipairs(files) do
    t.ok(not f:find("/", 1, true) and f ~= "" and not f:find("..", 1, true) and f:sub(1, 1) ~= ".", f)
  end
  local set = {}
  for _, f in ipairs(files) do set[f] = true end
  t.ok(set["same.png"] and set["same-2.png"], "duplicates kept apart")
  t.ok(set["ok.png"], "query ignored")
  t.ok(set["a_b.png"], "decoded separator replaced")
  t.eq(t.readfile(dir .. "/out/same.png"), "IMG:/img/same.png")
  t.eq(t.readfile(dir .. "/out/same-2.png"), "IMG:/img2/same.png")
  t.rmtree(dir)
end)

-- Why a file name is not safe, or nil: longer than the cap, not UTF-8, a
-- control, bidi or invisible character, a leading "." or "-".
local function unsafe_name(f)
  if #f > 120 then return "longer than 120 bytes" end
  if not utf8.len(f) then return "not UTF-8" end
  if f == "" or f:find("^[.-]") then return "starts with . or -" end
  for _, cp in utf8.codes(f) do
    if cp < 0x20 or (cp >= 0x7F and cp <= 0x9F) or (cp >= 0x200B and cp <= 0x200F) or
       (cp >= 0x2028 and cp <= 0x202E) or (cp >= 0x2060 and cp <= 0x206F) or cp == 0xFEFF then
      return string.format("holds U+%04X", cp)
    end
  end
end

-- One run over /api/names; the cases below check its files.
local names_dir, names = t.tmpdir(), {}

t.test("hostile names (/api/names): every image saved, every name safe", function()
  local out, err, code = run("--api " .. api .. "names --out " .. names_dir)
  for _, f in ipairs(tree(names_dir)) do names[f] = true end
  t.eq(code, 0, err .. out)
  t.match(out, "downloaded 15 of 15 images")
  for f in pairs(names) do t.eq(unsafe_name(f), nil, f) end
  t.eq(t.readfile(names_dir .. "/evil_gnp.exe"), "IMG:/img/evil%E2%80%AEgnp.exe")
end)

for _, case in ipairs{
    {"a 250-byte name with a 300-byte extension is cut to 120 bytes, no extension",
      string.rep("a", 120)},
    {"U+202E RIGHT-TO-LEFT OVERRIDE is replaced", "evil_gnp.exe"},
    {"U+2066 and U+200B (bidi isolate, zero width) are replaced", "x_y_z.png"},
    {"U+0085 (a C1 control) is replaced", "next_line.png"},
    {"invalid UTF-8 bytes are replaced", "bad__name.png"},
    {"an overlong '/' (C0 AF) is replaced", "__etc__passwd"},
    {"a cut-off UTF-8 sequence is replaced", "trunc__.png"},
    {"a leading - is replaced", "_rf.png"},
    {"a leading . is replaced (a hidden file before, stripped)", "_bashrc"},
    {"'.' becomes image-NNN", "image-009"},
    {"a name of dashes becomes image-NNN", "image-014"},
    {"a name of nothing but U+202E becomes image-NNN", "image-015"},
    {"a long name is cut between characters, its extension kept",
      "x" .. string.rep("é", 57) .. ".png"},
    {"a long name and its clash stay within 120 bytes",
      string.rep("c", 116) .. ".png", string.rep("c", 114) .. "-2.png"}} do
  t.test("file names: " .. case[1], function()
    for i = 2, #case do t.ok(names[case[i]], case[i]) end
  end)
end
t.rmtree(names_dir)

t.test("an API answering non-JSON: clear message, exit 1", function()
  local dir = t.tmpdir()
  local _, err, code = run("--api " .. api .. "badjson --out " .. dir .. "/o")
  t.eq(code, 1)
  t.match(err, "did not answer JSON")
  t.eq(#tree(dir), 0)
  t.rmtree(dir)
end)

t.test("an API error code: clear message, exit 1", function()
  local _, err, code = run("--api " .. api .. "error --out /tmp/netlua-never")
  t.eq(code, 1)
  t.match(err, "error code 230: key error")
end)

t.test("an API failing with 500: retried, then a clear message, exit 1", function()
  local _, err, code = run("--api " .. api .. "500 --retries 2 --out /tmp/netlua-never")
  t.eq(code, 1)
  t.match(err, "HTTP 500")
end)

t.test("a list without picUrl: clear message, exit 1", function()
  local _, err, code = run("--api " .. api .. "nopic --out /tmp/netlua-never")
  t.eq(code, 1)
  t.match(err, "no picUrl")
end)

t.test("an unreachable API: clear message, exit 1", function()
  local _, err, code = run("--api http://127.0.0.1:1/meinv/ --retries 1 --out /tmp/netlua-never")
  t.eq(code, 1)
  t.match(err, "connection refused")
end)

t.test("truncated and missing images: the rest saved, failures listed, exit 1", function()
  local dir = t.tmpdir()
  local out, _, code = run("--api " .. api .. "mixed --retries 1 --out " .. dir)
  t.eq(code, 1)
  t.match(out, "downloaded 1 of 3 images")
  t.match(out, "failed: 2")
  t.match(out, "/truncated: transfer closed")
  t.match(out, "/status/404: http error 404")
  t.eq(table.concat(tree(dir), ","), "good.png", "no partial files left")
  t.rmtree(dir)
end)

t.test("images that fail twice are saved with --retries 3, not with 1", function()
  local dir = t.tmpdir()
  local out, err, code = run("--api " .. api .. "flaky --retries 3 --out " .. dir .. "/a")
  t.eq(code, 0, out .. err)
  t.eq(#tree(dir .. "/a"), 3)
  out, err, code = run("--api " .. api .. "flaky --retries 1 --out " .. dir .. "/b")
  t.eq(code, 1)
  t.eq(#tree(dir .. "/b"), 0)
  t.rmtree(dir)
end)

for _, how in ipairs{{"INT", "Ctrl-C", 130}, {"TERM", "SIGTERM", 143}} do
t.test(how[2] .. " while downloading: exit " .. how[3] .. ", no partial files", function()
  local dir = t.tmpdir()
  os.execute("mkdir " .. dir .. "/ready")
  local path, sdir = t.script(string.format([[
    arg = {[0] = %q}
    assert(loadfile(%q))("--api", %q, "--out", %q, "--timeout", "25")
  ]], downloader, downloader, api .. "stall", dir .. "/ready"))
  local out, err, code = t.interrupt(path, nil, how[1])
  t.eq(code, how[3], err)
  t.match(out, "downloading 1 image into")
  t.match(err, "interrupted")
  t.eq(#tree(dir .. "/ready"), 0)
  t.rmtree(dir)
  t.rmtree(sdir)
end)
end

-- How many /endless replies the peer saw the client hang up on.
local function endless_stopped()
  local n = 0
  for _ in (t.readfile(peerdir .. "/log") or ""):gmatch("endless: stopped after") do n = n + 1 end
  return n
end

for _, size in ipairs{{"--max-size 1M", "1.0 MiB"}, {"", "20.0 MiB"}} do
t.test("images past --max-size (" .. size[2] .. ") are stopped, reported, not kept", function()
  local dir = t.tmpdir()
  local before = endless_stopped()
  local out, err, code = run("--api " .. api .. "huge " .. size[1] .. " --out " .. dir)
  t.eq(code, 1, err)
  t.match(out, "downloaded 1 of 3 images")
  t.match(out, "failed: 2")
  t.match(out, "/endless/64: larger than %-%-max%-size " .. size[2]:gsub("%.", "%%.") .. ", stopped")
  t.match(out, "/bomb/128: larger than %-%-max%-size " .. size[2]:gsub("%.", "%%.") .. ", stopped")
  t.eq(table.concat(tree(dir), ","), "good.png", "no partial files left")
  local time = require "time"
  for _ = 1, 200 do
    if endless_stopped() > before then break end
    time.sleep(0.05)
  end
  t.eq(endless_stopped(), before + 1, "the endless image was cut off")
  t.rmtree(dir)
end)
end

t.test("--max-size takes bytes or K, M, G", function()
  local dir = t.tmpdir()
  local out, err, code = run("--api " .. api .. "mixed --retries 1 --max-size 10 --out " .. dir)
  t.eq(code, 1, err)
  t.match(out, "/img/good.png: larger than %-%-max%-size 10 B")
  out, err, code = run("--api " .. api .. "mixed --retries 1 --max-size 2K --out " .. dir)
  t.eq(code, 1, err)
  t.match(out, "downloaded 1 of 3 images")
  t.eq(table.concat(tree(dir), ","), "good.png")
  t.rmtree(dir)
end)

t.test("bad usage exits 2 with the usage line", function()
  for _, args in ipairs({"--bogus", "--num", "--num 0", "--threads x", "--timeout -1",
      "--max-size 0", "--max-size x", "--max-size 10Q", "--max-size -5M", "--max-size"}) do
    local _, err, code = run(args)
    t.eq(code, 2, args)
    t.match(err, "usage: netlua scripts/downloader.lua", args)
  end
end)

stop()
t.done()
