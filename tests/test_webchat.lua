-- test_webchat.lua: scripts/webchat.lua with real clients: two headless
-- Chromium pages (tests/cdp.py) on the WebSocket side and a TCP client on
-- the line side, all in one room; a TCP client sending garbage or an
-- endless line; a browser that goes away. Without a browser the browser
-- case skips; the TCP cases run anyway.
package.path = (arg[0]:match("^(.*)/") or ".") .. "/?.lua;" .. package.path
local t = require "testlib"
local h = require "httphelp"

local webchat = h.dir .. "/../scripts/webchat.lua"

-- The page's line comes after the terminal clients' "listening on" line.
local pid, page_port, sdir = t.start_program(webchat, "--port 0 --tcp-port 0", 240,
  "chat page at http://127%.0%.0%.1:(%d+)/")
local tcp_port = tonumber(t.readfile(sdir .. "/out"):match("listening on 127%.0%.0%.1:(%d+)"))
local url = "http://127.0.0.1:" .. tostring(page_port) .. "/"

-- A TCP member: connected, its welcome read; returns it and its id.
local function tcp_member()
  local c = t.connect(tcp_port)
  local id = t.expect_line(c, "^welcome, you are client (%d+)"):match("(%d+)")
  return c, tonumber(id)
end

t.test("terminal clients chat over TCP, garbage arrives cleaned", function()
  local a, ida = tcp_member()
  local b, idb = tcp_member()
  t.expect_line(a, "^%* client " .. idb .. " joined$")
  a:send("hello b\r\n")
  t.expect_line(b, "^%[" .. ida .. "%] hello b$")
  a:send("bad \xff\xfe bytes \27[31m red\n")
  t.eq(t.expect_line(b, "^%[" .. ida .. "%] bad"), "[" .. ida .. "] bad ?? bytes  [31m red")
  a:send("/quit\n")
  t.expect_line(b, "^%* client " .. ida .. " left$")
  a:close()
  b:close()
end)

t.test("chatclient.lua is a member too", function()
  local a = tcp_member()
  local out, err, code = t.netlua(t.shellquote(h.dir .. "/../scripts/chatclient.lua") ..
    " 127.0.0.1 " .. tcp_port, {stdin = "hi from chatclient\n"})
  t.eq(code, 0, err)
  t.match(out, "^welcome, you are client (%d+); /quit leaves\n")
  local id = out:match("client (%d+)")
  t.expect_line(a, "^%[" .. id .. "%] hi from chatclient$")
  t.expect_line(a, "^%* client " .. id .. " left$")
  a:close()
end)

t.test("an endless line disconnects its sender, the room goes on", function()
  local a, ida = tcp_member()
  local b = tcp_member()
  t.expect_line(a, "joined")
  a:settimeout(10)
  local chunk = string.rep("x", 64 * 1024)
  for _ = 1, 4 do
    if not a:send(chunk) then break end
  end
  t.expect_line(a, "^%* line too long %(more than 4096 bytes%), bye$")
  t.expect_line(b, "^%* client " .. ida .. " left$")
  b:send("still here\n")
  local c = tcp_member()
  t.expect_line(b, "joined")
  b:send("still here\n")
  t.expect_line(c, "still here$")
  a:close()
  b:close()
  c:close()
end)

t.test("browser: two pages and a TCP client see each other's messages", function()
  local c, idc = tcp_member()
  local log = "[...document.querySelectorAll('#log li')].map(l => l.textContent).join('\\n')"
  local function say(text)
    return string.format("(() => { document.getElementById('text').value = %q; " ..
      "document.getElementById('say').requestSubmit(); return true; })()", text)
  end
  local connected = "document.getElementById('state').textContent === 'connected'"
  local r, why = t.browser({
    {open = "a", url = url}, {open = "b", url = url},
    {wait = connected, page = "a", timeout = 30},
    {wait = connected, page = "b", timeout = 30},
    {eval = say("hello from a"), page = "a"},
    {wait = log .. ".includes('] hello from a')", page = "b", timeout = 20},
    {mark = "tcp"},
    {wait = log .. ".includes('<b>tcp</b>')", page = "a", timeout = 20},
    {wait = log .. ".includes('<b>tcp</b>')", page = "b", timeout = 20},
    {eval = "document.querySelectorAll('#log b').length", page = "b"},
    {eval = log, page = "b"},
  }, function(mark)
    if mark == "tcp" then c:send("<b>tcp</b> says hi\n") end
  end)
  if not r then return t.skip(nil, why) end
  t.eq(r[9].value, 0, "a message is shown as text, never as HTML")
  t.match(r[10].value, "%[" .. idc .. "%] <b>tcp</b> says hi")
  -- the TCP client heard the browsers join and speak, then leave when the
  -- browser was killed
  local ida = tonumber(t.expect_line(c, "^%* client %d+ joined$"):match("%d+"))
  t.expect_line(c, "^%[" .. ida .. "%] hello from a$")
  t.expect_line(c, "^%* client %d+ left$")
  t.expect_line(c, "^%* client %d+ left$")
  c:close()
end)

t.test("Ctrl-C stops the server cleanly", function()
  os.execute("kill -INT " .. pid)
  local out, err = t.finish_server(pid, sdir)
  t.ok(not err:find("traceback"), err)
  t.match(out, "client %d+ left %(closed")
  t.match(out, "stopped\n$")
end)

t.done()
