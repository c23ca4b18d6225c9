-- hello_server.lua: the "hello" route of bench/servers/http_hello.lua (the
-- same handler, headers and all) that stops by itself after N requests,
-- for bench/instructions.sh.
--   netlua bench/instr/hello_server.lua N [CERT KEY]
local server = require "http.server"
local n, cert, key = tonumber(arg[1]), arg[2], arg[3]
local opts = {host = "127.0.0.1", port = 0}
if cert then opts.tls = {certificate = cert, key = key} end
local srv = assert(server(opts))
local HEADERS = {["Content-Type"] = "text/plain"} -- as bench/servers/http_hello.lua
srv:route("GET", "/", function() return 200, "hello\n", HEADERS end)
print(srv.port)
io.stdout:flush()
srv:serve{max_requests = n, timeout = 300}
