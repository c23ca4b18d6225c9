-- ws_echo.lua: netlua's WebSocket echo server for the benchmark (bench/
-- only): srv:websocket("/echo") sends every message back as it came (text
-- or binary), a task per connection.
--   netlua bench/servers/ws_echo.lua [port]
-- Listens on 127.0.0.1:PORT (0 = the OS picks) and prints the port.
local http = require "http"

local port = tonumber(arg[1] or 0)
if port == nil then
  io.stderr:write("usage: netlua bench/servers/ws_echo.lua [port]\n")
  os.exit(2)
end
-- ws_idle holds 1,000 connections; echo 50
local srv = assert(http.server{host = "127.0.0.1", port = port, max_connections = 4096})
srv:websocket("/echo", function(ws)
  while true do
    local msg, kind = ws:receive()
    if msg == nil then return end
    if not ws:send(msg, kind) then return end
  end
end)
print("listening on 127.0.0.1:" .. srv.port)
io.stdout:flush()
srv:serve()
