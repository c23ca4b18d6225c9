-- http_hello.lua: netlua's HTTP "hello" server for the benchmark (bench/
-- only): http.server with one route, GET / -> 200 "hello\n" as text/plain
-- (Content-Length, keep-alive and Date set by the server).
--   netlua bench/servers/http_hello.lua [port [workers]]
-- Listens on 127.0.0.1:PORT (0 = the OS picks) and prints the port. WORKERS
-- is passed to http.server as `workers = N` only when given; a server that
-- does not know the option yet runs without it and says so on stderr.
local http = require "http"

local port = tonumber(arg[1] or 0)
local workers = arg[2] and math.tointeger(tonumber(arg[2]))
if port == nil or (arg[2] and not workers) then
  io.stderr:write("usage: netlua bench/servers/http_hello.lua [port [workers]]\n")
  os.exit(2)
end

local opts = {host = "127.0.0.1", port = port}

-- http.server{...} raises on an unknown option: try with workers, else without.
local function listen()
  if workers then
    opts.workers = workers
    local ok, srv, msg = pcall(http.server, opts)
    if ok then return srv, msg end
    io.stderr:write("http_hello: http.server has no 'workers' option yet (",
      tostring(srv), "); serving from one thread\n")
    opts.workers = nil
  end
  return http.server(opts)
end

local srv, msg = listen()
if not srv then
  io.stderr:write("http_hello: cannot listen on 127.0.0.1:", port, ": ", msg, "\n")
  os.exit(1)
end
local HEADERS = {["Content-Type"] = "text/plain"}
srv:route("GET", "/", function() return 200, "hello\n", HEADERS end)
print("listening on 127.0.0.1:" .. srv.port)
io.stdout:flush()
srv:serve()
