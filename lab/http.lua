-- netlua -m http: one HTTP(S) request, the body to stdout; -v shows the heads as sent and received
--
-- A small curl on the http module (libcurl underneath). -v prints the
-- request head exactly as libcurl sent it (the module's request_head
-- option, taken from libcurl's debug callback) and the reply head as it
-- arrived, each line prefixed "> " or "< " as curl -v does.
local cli = require "cli"
local http = require "http"

local METHODS = {GET = true, HEAD = true, POST = true, PUT = true, PATCH = true,
  DELETE = true, OPTIONS = true, TRACE = true}

local spec = {
  usage = 'netlua -m http [METHOD] URL [-H "Name: value"]... [-d DATA|@FILE] [-v] [-L] [-k] [-m S]',
  help = [[
Makes one HTTP or HTTPS request and writes the reply's body to stdout.

  METHOD             GET (the default; POST when -d is given), HEAD, POST,
                     PUT, PATCH, DELETE, OPTIONS or TRACE
  -H, --header H     a request header "Name: value" (again for more);
                     "Name:" with no value removes one libcurl would send
  -d, --data D       the request body; @FILE reads it from FILE, @- from
                     standard input
  -v, --verbose      on stderr: the request head as sent ("> " lines) and
                     the reply head as received ("< " lines)
  -L, --location     follow redirects (the heads shown are the last ones)
  -k, --insecure     do not verify the server's TLS certificate
  -m, --max-time S   give up after S seconds

Exit status: 0 for a reply with status below 400; 22 (as curl -f) for a
status of 400 or more, with "netlua: http: STATUS REASON" on stderr (the
body, often the explanation, is still written to stdout); 1 when there is
no reply (connection refused, unknown host, TLS failure, timeout), told on
one line; 2 for bad usage. A body is kept in memory up to the http
module's max_body (64 MiB) and is an error past it.]],
  args = {{"first", "text"}, {"second", "text"}},
  options = {header = {"text", many = true}, data = {"text"}, verbose = {"switch"},
    location = {"switch"}, insecure = {"switch"}, ["max-time"] = {"seconds"}},
  short = {H = "header", d = "data", v = "verbose", L = "location", k = "insecure",
    m = "max-time"},
}

-- The headers table the http module takes, from "Name: value" texts.
local function headers_of(list)
  local headers = {}
  for _, h in ipairs(list) do
    local name, value = h:match("^([^:%s]+):%s*(.-)%s*$")
    if not name then cli.usage_error(spec, "a header is \"Name: value\", not '%s'", h) end
    local values = headers[name] or {}
    values[#values + 1] = value
    headers[name] = values
  end
  return headers
end

-- -d's body: the text, or the contents of @FILE (@- standard input).
local function body_of(data)
  if data == nil or data:sub(1, 1) ~= "@" then return data end
  local path = data:sub(2)
  if path == "-" then return io.stdin:read("a") end
  local f, err = io.open(path, "rb")
  if not f then cli.fail("cannot read -d %s: %s", data, err) end
  local body = f:read("a")
  f:close()
  return body
end

-- Each line of `head` on stderr after `prefix`, without its CR LF.
local function show_head(prefix, head)
  for line in head:gmatch("([^\n]*)\n") do
    io.stderr:write(prefix, (line:gsub("\r$", "")), "\n")
  end
end

local opts = cli.parse({...}, spec)
local method, url = nil, opts.first
if opts.second then method, url = opts.first:upper(), opts.second end
if url == nil then cli.usage_error(spec, "a URL is needed") end
if method and not METHODS[method] then
  cli.usage_error(spec, "METHOD must be one of GET HEAD POST PUT PATCH DELETE OPTIONS TRACE, not '%s'", opts.first)
end
if not url:match("^[hH][tT][tT][pP][sS]?://") then
  cli.usage_error(spec, "the URL must start with http:// or https://, not '%s'", url)
end

local res, err = http.request{url = url, method = method, headers = headers_of(opts.header),
  body = body_of(opts.data), follow_redirects = opts.location == true,
  verify = not opts.insecure, timeout = opts["max-time"], request_head = opts.verbose}
if not res then cli.fail("%s: %s", url, err) end
if opts.verbose then
  show_head("> ", res.request_head)
  show_head("< ", res.head)
end
io.stdout:write(res.body)
io.stdout:flush()
if res.status >= 400 then
  io.stderr:write(string.format("netlua: http: %d %s\n", res.status, res.reason))
  os.exit(22)
end
