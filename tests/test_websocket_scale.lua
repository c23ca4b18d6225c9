-- test_websocket_scale.lua: 1,000 idle WebSockets on one thread (the
-- server's handlers and netlua's clients, all in this process): every one
-- stays served while the others wait, then each answers and closes.
local t = require "testlib"
local server = require "http.server"
local websocket = require "websocket"
local time = require "time"

local N = 1000

local function fd_limit()
  local p = io.popen("ulimit -n")
  local n = p:read("l")
  p:close()
  return n == "unlimited" and math.huge or tonumber(n)
end

t.test(N .. " idle WebSockets on one thread", function()
  local limit = fd_limit()
  if limit < 2 * N + 64 then
    return t.skip(nil, string.format("ulimit -n is %d; %d WebSockets here need %d descriptors",
      limit, N, 2 * N + 64))
  end
  local srv = assert(server{port = 0})
  local live, most = 0, 0
  srv:websocket("/idle", function(ws)
    live = live + 1
    most = math.max(most, live)
    while true do
      local m, kind = ws:receive()
      if m == nil then break end
      ws:send(m, kind)
    end
    live = live - 1
  end)
  t.serve_while(srv, function()
    local url = "ws://127.0.0.1:" .. srv.port .. "/idle"
    local clients = {}
    for i = 1, N do clients[i] = assert(websocket.connect(url, {timeout = 30})) end
    for i = 1, N do assert(clients[i]:send("n" .. i)) end
    for i = 1, N do t.eq(clients[i]:receive(30), "n" .. i) end
    t.eq(most, N, "every handler was running at once")
    for i = 1, N do t.ok(clients[i]:close()) end
    for _ = 1, 1000 do -- bounded: a guard against a hang
      if live == 0 then break end
      time.sleep(0.01)
    end
    t.eq(live, 0, "every handler saw its close")
  end)
end)

t.done()
