-- https_hello.lua: netlua's HTTPS "hello" server for the benchmark (bench/
-- only): bench/servers/http_hello.lua's route on http.server{tls = {...}},
-- GET / -> 200 "hello\n" as text/plain (Content-Length, keep-alive, Date set
-- by the server; a request with "Connection: close" gets its reply, then the
-- connection closes).
--   netlua bench/servers/https_hello.lua PORT CERT KEY
-- Listens on 127.0.0.1:PORT (0 = the OS picks) and prints the port.
local http = require "http"

local port, cert, key = tonumber(arg[1]), arg[2], arg[3]
if not (port and cert and key) then
  io.stderr:write("usage: netlua bench/servers/https_hello.lua PORT CERT KEY\n")
  os.exit(2)
end

local srv, msg = http.server{host = "127.0.0.1", port = port,
  tls = {certificate = cert, key = key}}
if not srv then
  io.stderr:write("https_hello: cannot listen on 127.0.0.1:", port, ": ", msg, "\n")
  os.exit(1)
end
local HEADERS = {["Content-Type"] = "text/plain"}
srv:route("GET", "/", function() return 200, "hello\n", HEADERS end)
print("listening on 127.0.0.1:" .. srv.port)
io.stdout:flush()
srv:serve()
