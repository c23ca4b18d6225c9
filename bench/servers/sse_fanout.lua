-- sse_fanout.lua: netlua's server-sent events hub for the benchmark (bench/
-- only). Clients hold GET /events open (req:sse); POST /publish sends one
-- event ("data: fanout-1") to every subscriber from the publishing task,
-- one events:send each, and answers with how many it reached. Then those
-- subscribers' handlers return and their streams end; later ones wait for
-- the next publish.
--   netlua bench/servers/sse_fanout.lua [port [max_connections]]
-- Listens on 127.0.0.1:PORT (0 = the OS picks) and prints the port; one
-- thread holds every connection (max_connections, default 20000).
local http = require "http"
local task = require "task"

local port, max = tonumber(arg[1] or 0), math.tointeger(tonumber(arg[2] or 20000))
if port == nil or max == nil then
  io.stderr:write("usage: netlua bench/servers/sse_fanout.lua [port [max_connections]]\n")
  os.exit(2)
end
local srv = assert(http.server{host = "127.0.0.1", port = port, max_connections = max})

-- A round: the subscribers since the last publish and the semaphore they
-- wait on (its one permit taken until the publish).
local subscribers, gate
local function new_round()
  subscribers, gate = {}, task.semaphore(1)
  gate:acquire()
end
new_round()

srv:route("GET", "/events", function(req)
  local list, g = subscribers, gate
  list[#list + 1] = req:sse()
  g:acquire()                    -- each one woken passes the permit on
  g:release()
end)

srv:route("POST", "/publish", function()
  local list, g = subscribers, gate
  new_round()
  local sent = 0
  for _, events in ipairs(list) do
    if events:send("fanout-1") then sent = sent + 1 end
  end
  g:release()
  return 200, tostring(sent)
end)

print("listening on 127.0.0.1:" .. srv.port)
io.stdout:flush()
srv:serve()
