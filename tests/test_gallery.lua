-- test_gallery.lua: scripts/gallery.lua in a real browser (headless
-- Chromium driven by tests/cdp.py): the page lists what --out holds, a run
-- started from its form shows every image as it lands on every open page
-- (server-sent events), bad form values and a failing API show up on the
-- page as errors. Without a browser the browser cases skip; the HTTP cases
-- (curl) run anyway.
package.path = (arg[0]:match("^(.*)/") or ".") .. "/?.lua;" .. package.path
local t = require "testlib"
local h = require "httphelp"

local root = h.dir .. "/.."
package.path = root .. "/scripts/?.lua;" .. package.path
local imageapi = require "imageapi"
local gallery = root .. "/scripts/gallery.lua"

local dir = t.tmpdir()
local out = dir .. "/images"
os.execute("mkdir " .. out)
t.writefile(out .. "/old.png", imageapi.png(9))
t.writefile(out .. "/notes.txt", "not an image")
t.writefile(out .. "/.half.png.part-1234", "a download in progress")

local peer, stop_peer = h.peer(240)
local peer_api = "http://127.0.0.1:" .. peer .. "/api/"
local pid, port, sdir = t.start_program(gallery, "--port 0 --out " .. t.shellquote(out), 240)
local url = "http://127.0.0.1:" .. port .. "/"

-- JavaScript: how many images of the gallery have loaded as real pictures.
local LOADED = "[...document.querySelectorAll('#gallery img')]" ..
  ".filter(i => i.complete && i.naturalWidth === 96).length"
local function js_text(id) return "document.getElementById('" .. id .. "').textContent" end
-- JavaScript that fills the form and submits it as a user would.
local function submit(api, num, concurrency)
  return string.format("(() => { const f = document.getElementById('run'); " ..
    "f.api.value = %q; f.num.value = %q; f.concurrency.value = %q; " ..
    "f.requestSubmit(); return true; })()", api, num, concurrency)
end

local function curl(args)
  return t.sh("curl -s -w ' %{http_code}' " .. args)
end

t.test("the form's bad values are refused with a clear JSON error (curl)", function()
  for _, case in ipairs{
      {"num=0&concurrency=2", "num must be a whole number from 1 to 50, not '0'"},
      {"num=51&concurrency=2", "num must be a whole number from 1 to 50"},
      {"num=x&concurrency=2", "not 'x'"},
      {"num=2&concurrency=99", "concurrency must be a whole number from 1 to 16"},
      {"num=2&concurrency=2&api=file:///etc/passwd", "must start with http:// or https://"},
      {"num=2&concurrency=2&api=javascript:alert(1)", "must start with http:// or https://"}} do
    local body = curl("--data " .. t.shellquote(case[1]) .. " " .. url .. "download")
    t.match(body, " 400$", case[1])
    t.ok(body:find(case[2], 1, true), body)
  end
  local body = curl("-H 'Content-Type: application/json' --data '{}' " .. url .. "download")
  t.match(body, "not a form.* 400$")
end)

t.test("GET /api/images lists the images in --out, nothing else", function()
  local body = curl(url .. "api/images")
  t.match(body, '"images":%["old%.png"%]')
  t.match(curl("-o /dev/null " .. url .. "images/old.png"), "200$")
  t.match(curl("-o /dev/null " .. url .. "images/..%2f..%2fetc%2fpasswd"), "40[34]$")
end)

t.test("browser: a run from the form appears on two pages as it lands", function()
  local r, why = t.browser({
    {open = "a", url = url}, {open = "b", url = url},
    {wait = js_text("status") .. ".startsWith('connected')", page = "a", timeout = 30},
    {wait = js_text("status") .. ".startsWith('connected')", page = "b", timeout = 30},
    {wait = LOADED .. " === 1", page = "a", timeout = 30},
    {eval = "[...document.querySelectorAll('#gallery img')].map(i => i.dataset.name).join()", page = "a"},
    {eval = submit("", "4", "2"), page = "a"},
    {wait = LOADED .. " === 5", page = "a", timeout = 60},
    {wait = LOADED .. " === 5", page = "b", timeout = 60},
    {wait = js_text("status") .. ".includes('done')", page = "b", timeout = 30},
    {eval = js_text("status"), page = "b"},
    {eval = "[...document.querySelectorAll('#gallery img')].map(i => i.dataset.name).sort().join()", page = "b"},
    {eval = "document.getElementById('progress').value", page = "b"},
  })
  if not r then return t.skip(nil, why) end
  t.eq(r[6].value, "old.png", "the page showed what --out held, and only the images")
  t.match(r[11].value, "^run 1 done: 4 saved, 0 failed")
  t.eq(r[12].value, "meinv-001.png,meinv-002.png,meinv-003.png,meinv-004.png,old.png")
  t.eq(r[13].value, 4, "the progress bar counted every image")
  t.eq(t.readfile(out .. "/meinv-003.png"), imageapi.png(3), "the files are on disk")
end)

t.test("browser: bad form values and a failing API are shown on the page", function()
  local errors = "[...document.querySelectorAll('#errors li')].map(l => l.textContent).join('|')"
  -- the errors shown, once they include `text`
  local function errors_with(text) return errors .. ".includes('" .. text .. "') && " .. errors end
  local r, why = t.browser({
    {open = "a", url = url},
    {wait = js_text("status") .. ".startsWith('connected')", page = "a", timeout = 30},
    {eval = submit("", "500", "2"), page = "a"},
    {wait = errors, page = "a", timeout = 20},
    {eval = submit("ftp://127.0.0.1/x", "2", "2"), page = "a"},
    {wait = errors_with("http://"), page = "a", timeout = 20},
    {eval = submit("http://127.0.0.1:1/meinv/", "2", "2"), page = "a"},
    {wait = errors_with("cannot reach"), page = "a", timeout = 30},
    {eval = js_text("status"), page = "a"},
  })
  if not r then return t.skip(nil, why) end
  t.match(r[4].value, "num must be a whole number from 1 to 50, not '500'")
  t.match(r[6].value, "the API URL must start with http:// or https://, not 'ftp://")
  t.match(r[8].value, "cannot reach the API http://127%.0%.0%.1:1/meinv/: .*refused")
  t.match(r[9].value, "^run %d+ failed")
end)

t.test("browser: file names that are HTML show as text, their images load by name", function()
  local captions = "[...document.querySelectorAll('#gallery figcaption')].map(c => c.textContent)"
  local r, why = t.browser({
    {open = "a", url = url},
    {wait = js_text("status") .. ".startsWith('connected')", page = "a", timeout = 30},
    {eval = submit(peer_api .. "markup", "3", "3"), page = "a"},
    {wait = js_text("status") .. ".includes('done')", page = "a", timeout = 30},
    {eval = captions .. ".filter(c => !c.startsWith('meinv-') && c !== 'old.png').sort().join('|')", page = "a"},
    {eval = "document.querySelectorAll('#gallery b').length + ' ' + " ..
      "document.querySelectorAll('#gallery img').length + ' ' + " ..
      "document.querySelectorAll('#gallery figure').length + ' ' + typeof window.pwned", page = "a"},
    {eval = "fetch(document.querySelector('img[data-name^=\"100\"]').src).then(r => r.text())", page = "a"},
  })
  if not r then return t.skip(nil, why) end
  t.eq(r[5].value, "\"><b>bold<_b>.png|100% real.png|<img src=x onerror=window.pwned=1>.png")
  t.match(r[6].value, "^0 (%d+) %1 undefined$")
  t.eq(r[7].value, "IMG:/img/100%25%20real.png", "the image's URL names the file")
end)

t.test("a page that goes away mid-stream does not stop the server", function()
  local body = t.sh("curl -s -m 1 " .. url .. "events; curl -s " .. url .. "api/images")
  t.match(body, '"images":%[')
end)

t.test("one run at a time: a second is refused while the first goes on (curl)", function()
  local body = curl("--data 'num=1&concurrency=1&api=" .. peer_api .. "stall' " .. url .. "download")
  t.match(body, '^{"run":%d+} 202$')
  body = curl("--data 'num=1&concurrency=1' " .. url .. "download")
  t.match(body, "is still going.* 409$")
end)

t.test("Ctrl-C stops the server cleanly, also while a page listens and a run goes on", function()
  local ev = t.tmpdir()
  os.execute("timeout 60 curl -sN " .. url .. "events > " .. ev .. "/events 2>&1 &")
  for _ = 1, 200 do
    if (t.readfile(ev .. "/events") or "") ~= "" then break end
    require("time").sleep(0.05)
  end
  t.match(t.readfile(ev .. "/events"), "^retry: 2000\n")
  os.execute("kill -INT " .. pid)
  local _, err = t.finish_server(pid, sdir)
  t.ok(not err:find("traceback"), err)
  t.eq(t.sh("ls -A " .. t.shellquote(out) .. " | grep -c part"), "1\n", "no partial file but the test's own")
  t.rmtree(ev)
end)

stop_peer()
t.rmtree(dir)
t.done()
