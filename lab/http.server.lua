-- netlua -m http.server: serve a folder over HTTP, as python -m http.server does
-- The lab's file server: the files under a directory (the current one by
-- default) on all interfaces at port 8000, folders listed when they have no
-- index.html, one line per request on stderr. Built on http.server's static
-- files (bindings/httpserver.lua: ETag, Range, the checks that keep every
-- request inside the directory), with listings switched on.
local cli = require "cli"
local http_server = require "http.server"

local SPEC = {
  usage = "netlua -m http.server [PORT] [--bind ADDR] [--directory DIR]",
  help = "Serves the files under DIR over HTTP, as python -m http.server does: a\n" ..
    "folder's index.html, or else a listing of the folder; ETag, Last-Modified\n" ..
    "and single byte ranges. Nothing outside DIR is served: a path with a '..'\n" ..
    "segment (also written %2e%2e) or a symlink that leads out of DIR gets 403.\n" ..
    "One line per request on stderr; Ctrl-C stops.\n\n" ..
    "  PORT              the port (default 8000; 0 picks a free one)\n" ..
    "  -b, --bind ADDR   the address to listen on (default 0.0.0.0: every\n" ..
    "                    interface, as Python; 127.0.0.1 for this machine only)\n" ..
    "  -d, --directory DIR  the folder to serve (default: the current one)\n",
  args = {{"port", "port", 8000}},
  options = {bind = {"host", "0.0.0.0"}, directory = {"text", "."}},
  short = {b = "bind", d = "directory"},
}

local opts = cli.parse({...}, SPEC)
local srv, msg = http_server{host = opts.bind, port = opts.port, log = true}
if not srv then cli.fail("cannot listen on %s: %s", cli.where(opts.bind, opts.port), msg) end
local ok, err = pcall(srv.static, srv, "/", opts.directory, {listing = true})
if not ok then
  srv:close()
  cli.fail("%s", tostring(err):gsub("^http%.server: ", ""))
end
print(string.format("Serving HTTP on %s port %d (%s/) ...", srv.host, srv.port, srv.url))
io.stdout:flush()
ok, err = pcall(srv.serve, srv)
srv:close()
if not ok and err ~= "interrupted" then error(err, 0) end
print("\nInterrupted, exiting.")
