-- httpserver.lua: the Lua half of http.server (layer: bindings). It
-- receives the C core (bindings/httpserver.c: listening, connections,
-- requests read by runtime/httpparse.c) and routes requests, serves static
-- files, turns handler results into replies and runs a task per
-- connection, in this thread and in worker threads. It needs no libcurl:
-- `require "http.server"` alone serves; `require "http"` re-exports it.
local server_core = ...
local forms, streams = server_core.form, server_core.stream

local json = require "json"
local time = require "time"
local task = require "task"

local type, pairs, ipairs, tostring, error = type, pairs, ipairs, tostring, error
local format, concat, sort = string.format, table.concat, table.sort

local M = {_NAME = "http.server"}

local Server = {}
Server.__index = Server
Server.__name = "http.server"

local Request = {}

-- Fields a request makes the first time they are read (most handlers never
-- read them): lazy[name](req) sets them and returns the value.
local lazy = {}

Request.__index = function(req, k)
  local make = lazy[k]
  if make ~= nil then return make(req) end
  return Request[k]
end

-- The stream a handler opened (req:stream), by request.
local stream_of = setmetatable({}, {__mode = "k"})
-- The connections whose handler is streaming its reply now: srv:close()
-- ends them instead of waiting for a stream that may never end.
local streaming = setmetatable({}, {__mode = "k"})

function Request:json()
  return json.decode(self.body)
end

local function unhex(h) return string.char(tonumber(h, 16)) end

local function unescape(s)
  return (s:gsub("%%(%x%x)", unhex))
end
M.unescape = unescape

-- "a=1&b=x+y&a=2" -> {a="1", b="x y"}, {a={"1","2"}, b={"x y"}}
local function parse_query(raw)
  local first, all = {}, {}
  for pair in raw:gmatch("[^&;]+") do
    local k, v = pair:match("^([^=]*)=?(.*)$")
    k, v = unescape((k:gsub("%+", " "))), unescape((v:gsub("%+", " ")))
    if first[k] == nil then first[k] = v end
    all[k] = all[k] or {}
    all[k][#all[k] + 1] = v
  end
  return first, all
end
M.parse_query = parse_query

function lazy.query(req)
  local first, all = parse_query(req.rawquery)
  rawset(req, "query", first)
  rawset(req, "query_all", all)
  return first
end

function lazy.query_all(req)
  lazy.query(req)
  return rawget(req, "query_all")
end

function lazy.params(req) -- a route without :names or *
  local params = {}
  rawset(req, "params", params)
  return params
end

-- An upload's body went to a file as it arrived (req.body_file): read
-- whole only when a handler asks for req.body (it is within max_body).
function lazy.body(req)
  local path, body = rawget(req, "body_file"), ""
  if path ~= nil then
    local f = assert(io.open(path, "rb"))
    body = f:read("a") or ""
    f:close()
  end
  rawset(req, "body", body)
  return body
end

function lazy.cookies(req)
  local jar = forms.parse_cookies(req.headers.cookie)
  rawset(req, "cookies", jar)
  return jar
end

local function media_type(ctype)
  local media = ctype:match("^%s*([^;%s]+)")
  return media and media:lower()
end

-- req:form() -> fields, all_fields[, files, all_files] | nil, msg: an
-- application/x-www-form-urlencoded body read as parse_query reads a query,
-- or a multipart/form-data one whose files are stored in temporary files
-- (removed when the request ends, unless the handler moved them). The body
-- is already within the server's max_body. A second call returns the same.
function Request:form()
  if self.form_result then return table.unpack(self.form_result, 1, 4) end
  local ctype = self.headers["content-type"]
  if ctype == nil then return nil, "not a form (no Content-Type)" end
  local media = media_type(ctype)
  local r
  if media == "application/x-www-form-urlencoded" then
    r = {parse_query(self.body)}
  elseif media == "multipart/form-data" then
    self.uploads, self._special = self.uploads or {}, true
    local body = rawget(self, "body") -- else it is still in body_file
    r = {forms.multipart(body or {path = self.body_file}, ctype,
      self.server.upload_dir or os.getenv("TMPDIR") or "/tmp", self.uploads)}
  else
    return nil, format("not a form (Content-Type: %s)", ctype)
  end
  if r[1] ~= nil then self.form_result = r end
  return table.unpack(r, 1, 4)
end

-- The serving state (below) of each open connection, for req:socket().
local state_of_conn = setmetatable({}, {__mode = "k"})

-- req:socket() -> socket | nil, msg: the handler takes the connection over.
-- The server sends no reply to this request and serves nothing more on the
-- connection; the handler (still the connection's task) owns the returned
-- socket: a tcp client socket, or for HTTPS an ssl connection, with the
-- bytes the client sent after this request already in its buffer. For
-- WebSocket, streams and other protocols that start with an HTTP request.
function Request:socket()
  local conn = self._conn
  if conn == nil then error("req:socket(): the connection was already taken over", 2) end
  if stream_of[self] then error("req:socket(): a streamed reply has begun on this connection", 2) end
  self._conn, self._taken, self._special = nil, true, true
  local st = state_of_conn[conn]
  if st ~= nil then
    st.conns[conn], st.tasks[conn] = nil, nil -- serve() does not wait for it
  end
  local fd, pending, tls = conn:detach()
  if fd == nil then return nil, pending end
  if tls ~= nil then return require("ssl")._adopt(tls, fd, pending) end
  return require("socket")._adopt(fd, pending)
end

local SERVER_OPTIONS = {host = "string", port = "number", max_uri = "number",
  max_header = "number", max_body = "number", request_timeout = "number",
  keepalive_timeout = "number", send_timeout = "number", linger = "number",
  max_connections = "number", log = "boolean", workers = "any", tls = "table",
  upload_dir = "string"}

-- tls = {certificate = path, key = path[, password = string]}: HTTPS.
local TLS_OPTIONS = {certificate = true, key = true, password = false}

local function check_tls(tls)
  for k, v in pairs(tls) do
    if TLS_OPTIONS[k] == nil then error(format("http.server: unknown tls option '%s'", tostring(k)), 4) end
    if type(v) ~= "string" then error(format("http.server: tls option '%s' must be a string", k), 4) end
  end
  for k, required in pairs(TLS_OPTIONS) do
    if required and tls[k] == nil then error(format("http.server: tls option '%s' is required", k), 4) end
  end
end

-- workers = N (threads), "auto" (one per core) or 1 (the default).
local function worker_count(n)
  if n == nil then return 1 end
  if n == "auto" then return require("thread").cpus() end
  if math.type(n) ~= "integer" or n < 1 then
    error("http.server: option 'workers' must be a positive integer or \"auto\"", 3)
  end
  return n
end

-- http.server{host=, port=, ...} -> server | nil, msg, code
function M.new(opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("bad argument #1 to 'server' (table expected)", 2) end
  for k, v in pairs(opts) do
    if SERVER_OPTIONS[k] == nil then error(format("http.server: unknown option '%s'", tostring(k)), 2) end
    if SERVER_OPTIONS[k] ~= "any" and type(v) ~= SERVER_OPTIONS[k] then
      error(format("http.server: option '%s' must be a %s", k, SERVER_OPTIONS[k]), 2)
    end
  end
  if opts.tls then check_tls(opts.tls) end
  local workers = worker_count(opts.workers)
  local core_srv, msg, code = server_core.listen(opts.host or "127.0.0.1", opts.port or 8000, opts)
  if not core_srv then return nil, msg, code end
  local host, port = core_srv:getsockname()
  local self = setmetatable({core = core_srv, host = host, port = port,
    routes = {}, statics = {}, log = opts.log, workers = workers,
    upload_dir = opts.upload_dir}, Server)
  local scheme = opts.tls and "https" or "http"
  self.url = format(host:find(":", 1, true) and "%s://[%s]:%d" or "%s://%s:%d", scheme, host, port)
  return self
end

-- Route patterns: "/exact", "/users/:id" (a segment into req.params.id),
-- "/files/*" (the rest into req.params[1]).
local function compile(pattern)
  local names = {}
  local lua = pattern:gsub("[%^%$%(%)%%%.%[%]%+%-%?]", "%%%0")
  lua = lua:gsub(":([%w_]+)", function(name) names[#names + 1] = name return "([^/]+)" end)
  if lua:sub(-1) == "*" then
    lua = lua:sub(1, -2) .. "(.*)"
    names[#names + 1] = 1
  end
  return "^" .. lua .. "$", names
end

function Server:route(method, pattern, handler)
  if type(method) ~= "string" then error("bad argument #1 to 'route' (string expected)", 2) end
  if type(pattern) ~= "string" then error("bad argument #2 to 'route' (string expected)", 2) end
  if type(handler) ~= "function" then error("bad argument #3 to 'route' (function expected)", 2) end
  local lua, names = compile(pattern)
  self.routes[#self.routes + 1] = {method = method:upper(), lua = lua, names = names,
    exact = #names == 0 and pattern or nil, pattern = pattern, handler = handler}
  return self
end

-- srv:websocket(path, handler[, opts]): WebSocket upgrades of GET path,
-- handler(ws, req) running as the connection's task (bindings/websocket.lua).
function Server:websocket(path, handler, opts)
  return require("websocket").serve(self, path, handler, opts)
end

-- srv:static(prefix, dir[, {listing = true}]): files under dir at prefix;
-- with listing, a directory without index.html is answered by a listing of
-- its entries, and a directory's path without its final '/' by a redirect.
function Server:static(prefix, dir, opts)
  if type(prefix) ~= "string" or type(dir) ~= "string" then
    error("bad arguments to 'static' (prefix and directory strings expected)", 2)
  end
  if opts ~= nil and type(opts) ~= "table" then
    error("bad argument #3 to 'static' (table expected)", 2)
  end
  for k in pairs(opts or {}) do
    if k ~= "listing" then error(format("http.server: unknown static option '%s'", tostring(k)), 2) end
  end
  local root, msg = server_core.realpath(dir)
  if not root then error(format("http.server: static directory '%s': %s", dir, msg), 2) end
  if prefix:sub(-1) ~= "/" then prefix = prefix .. "/" end
  self.statics[#self.statics + 1] = {prefix = prefix, root = root,
    listing = opts ~= nil and opts.listing == true}
  return self
end

local MIME = {html = "text/html; charset=utf-8", htm = "text/html; charset=utf-8",
  txt = "text/plain; charset=utf-8", css = "text/css", js = "text/javascript",
  json = "application/json", png = "image/png", jpg = "image/jpeg",
  jpeg = "image/jpeg", gif = "image/gif", svg = "image/svg+xml",
  ico = "image/x-icon", webp = "image/webp", pdf = "application/pdf",
  xml = "application/xml", wasm = "application/wasm", lua = "text/plain; charset=utf-8",
  mjs = "text/javascript", map = "application/json", csv = "text/csv; charset=utf-8",
  md = "text/markdown; charset=utf-8", mp4 = "video/mp4", webm = "video/webm",
  ogv = "video/ogg", mp3 = "audio/mpeg", ogg = "audio/ogg", oga = "audio/ogg",
  opus = "audio/ogg", wav = "audio/wav", flac = "audio/flac", m4a = "audio/mp4",
  woff2 = "font/woff2", woff = "font/woff", ttf = "font/ttf", otf = "font/otf",
  avif = "image/avif", bmp = "image/bmp", webmanifest = "application/manifest+json",
  zip = "application/zip", gz = "application/gzip", tar = "application/x-tar",
  vtt = "text/vtt; charset=utf-8"}

local function mime_type(path)
  local ext = path:match("%.([%w]+)$")
  return ext and MIME[ext:lower()] or "application/octet-stream"
end
M.mime_type = mime_type
M.cookie = forms.cookie

-- A reply body streamed from a file (conn:write_file), never read into
-- memory: {path = real path, size =, mtime =[, offset =, length =]}.
local FileBody = {}

-- ---- directory listings (srv:static with listing = true) --------------------

local HTML_ESCAPES = {["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;",
  ["'"] = "&#39;"}

local function html_escape(s)
  return (s:gsub("[&<>\"']", HTML_ESCAPES))
end

-- A name as one path segment of a URL: every byte but RFC 3986's
-- unreserved ones percent-encoded.
local function url_segment(s)
  return (s:gsub("[^%w%-%._~]", function(c) return format("%%%02X", c:byte()) end))
end

-- The entries of directory `real`, sorted without regard to case (then
-- byte by byte), a directory's name (a symlink's target's kind) ending in
-- "/".
local function listing_entries(real)
  local names, msg = server_core.listdir(real)
  if not names then return nil, msg end
  sort(names, function(a, b)
    local la, lb = a:lower(), b:lower()
    if la ~= lb then return la < lb end
    return a < b
  end)
  for i, name in ipairs(names) do
    if server_core.filetype(real .. "/" .. name) == "directory" then names[i] = name .. "/" end
  end
  return names
end

-- The HTML listing of directory `real` shown at URL path `path` (decoded):
-- names HTML-escaped, links URL-encoded and relative, so the listing works
-- under any prefix.
local function listing_reply(real, path)
  local names, msg = listing_entries(real)
  if not names then return 403, format("cannot list this directory: %s\n", msg) end
  local title = html_escape("Directory listing for " .. path)
  local out = {"<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n",
    "<title>", title, "</title>\n</head>\n<body>\n<h1>", title, "</h1>\n<hr>\n<ul>\n"}
  for _, name in ipairs(names) do
    local bare, slash = name:match("^(.-)(/?)$")
    out[#out + 1] = format("<li><a href=\"%s%s\">%s</a></li>\n", url_segment(bare), slash,
      html_escape(name))
  end
  out[#out + 1] = "</ul>\n<hr>\n</body>\n</html>\n"
  return 200, concat(out), {["Content-Type"] = "text/html; charset=utf-8"}
end

-- A directory asked for without its final '/': the same path with it (and
-- the query), so relative links resolve inside it. Leading slashes become
-- one: "//host" in a Location would send the browser to another host.
local function slash_redirect(req)
  local location = "/" .. req.raw_path:gsub("^/+", "") .. "/"
  if req.rawquery ~= "" then location = location .. "?" .. req.rawquery end
  return 301, "moved permanently\n", {Location = location}
end

-- Serves s.root/rel (s: a static mount) where rel comes from a decoded URL
-- path: no NUL, no ".." segment, and the real path (symlinks resolved) must
-- stay under root.
local function serve_file(s, rel, req)
  local root = s.root
  if rel:find("\0", 1, true) then return 400, "bad request\n" end
  for seg in rel:gmatch("[^/]+") do
    if seg == ".." then return 403, "forbidden\n" end
  end
  local real = server_core.realpath(root .. "/" .. rel)
  if not real then return 404, "not found\n" end
  if real ~= root and real:sub(1, #root + 1) ~= root .. "/" then
    return 403, "forbidden\n"
  end
  local kind, size, mtime = server_core.filetype(real)
  if kind == "directory" then -- served by its index.html, or listed
    if req.path:sub(-1) ~= "/" then
      if s.listing then return slash_redirect(req) end
      if rel ~= "" then return 404, "not found\n" end
    end
    if s.listing and server_core.filetype(real .. "/index.html") ~= "file" then
      return listing_reply(real, req.path)
    end
    return serve_file(s, rel .. "index.html", req)
  end
  if kind ~= "file" then return 404, "not found\n" end
  return 200, setmetatable({path = real, size = size, mtime = mtime}, FileBody),
    {["Content-Type"] = mime_type(real)}
end

-- The file's validator: its modification time and size. Strong enough for
-- Range (a file rewritten within one second keeping its size is the gap).
local function etag_of(file)
  return format('"%x-%x"', file.mtime, file.size)
end

-- If-None-Match (weak comparison; "*") or, without it, If-Modified-Since:
-- true when the client's copy is current (304).
local function not_modified(req, etag, mtime)
  local inm = req.headers["if-none-match"]
  if inm ~= nil then
    for tag in inm:gmatch("[^,%s][^,]*") do
      tag = tag:gsub("%s+$", ""):gsub("^W/", "")
      if tag == "*" or tag == etag then return true end
    end
    return false
  end
  local ims = req.headers["if-modified-since"]
  local since = ims and server_core.parsedate(ims)
  return since ~= nil and mtime <= since
end

-- A Range field against a file of `size` bytes: first, last (a single
-- satisfiable range), false (unsatisfiable: 416), or nil (no usable Range:
-- the whole file; several ranges are answered so too).
local function byte_range(range, size)
  local a, b = range:match("^%s*bytes%s*=%s*(%d*)%s*%-%s*(%d*)%s*$")
  if a == nil or (a == "" and b == "") then return nil end
  local first, last
  if a == "" then -- the last b bytes
    local n = tonumber(b)
    if n == 0 or size == 0 then return false end
    first, last = math.max(size - n, 0), size - 1
  else
    first, last = tonumber(a), b ~= "" and tonumber(b) or size - 1
    if first >= size then return false end
    if last < first then return nil end
    last = math.min(last, size - 1)
  end
  return first, last
end

-- If-Range: the range applies only while the client's validator (an ETag or
-- the Last-Modified date) still names this file.
local function range_applies(req, etag, modified)
  local ir = req.headers["if-range"]
  return ir == nil or ir == etag or ir == modified
end

-- A static file's reply to req: 304, 206 with Content-Range, 416, or 200,
-- each with ETag, Last-Modified and Accept-Ranges.
local function file_reply(req, file, headers)
  local etag, modified = etag_of(file), server_core.httpdate(file.mtime)
  headers["ETag"], headers["Last-Modified"], headers["Accept-Ranges"] = etag, modified, "bytes"
  if not_modified(req, etag, file.mtime) then
    headers["Content-Type"] = nil
    return 304, nil, headers
  end
  local range = req.headers.range
  if range == nil or not range_applies(req, etag, modified) then return 200, file, headers end
  local first, last = byte_range(range, file.size)
  if first == false then
    headers["Content-Type"], headers["Content-Range"] = nil, format("bytes */%d", file.size)
    return 416, "range not satisfiable\n", headers
  elseif first == nil then
    return 200, file, headers
  end
  file.offset, file.length = first, last - first + 1
  headers["Content-Range"] = format("bytes %d-%d/%d", first, last, file.size)
  return 206, file, headers
end

local function find_static(self, req)
  if req.method ~= "GET" and req.method ~= "HEAD" then return nil end
  for _, s in ipairs(self.statics) do
    if req.path:sub(1, #s.prefix) == s.prefix or req.path .. "/" == s.prefix then
      local status, body, headers = serve_file(s, req.path:sub(#s.prefix + 1), req)
      if getmetatable(body) ~= FileBody then return status, body, headers end
      return file_reply(req, body, headers)
    end
  end
end

local NO_CAPTURES = {}

-- The route for req and its params, or nil and whether a route had the path
-- (for another method). A route without params compares strings.
local function match_route(self, req)
  local path, method, method_seen, routes = req.path, req.method, false, self.routes
  for i = 1, #routes do
    local r, caps = routes[i], nil
    if r.exact then
      if path == r.exact then caps = NO_CAPTURES end
    else
      caps = {path:match(r.lua)} -- such a pattern always captures
      if caps[1] == nil then caps = nil end
    end
    if caps then
      if r.method == method or r.method == "*" or
         (r.method == "GET" and method == "HEAD") then
        if caps == NO_CAPTURES then return r, nil end -- req.params made if read
        local params = {}
        for k, name in ipairs(r.names) do params[name] = caps[k] end
        return r, params
      end
      method_seen = true
    end
  end
  return nil, method_seen
end

local TEXT_LINES = "Content-Type: text/plain; charset=utf-8\r\n"
local JSON_LINES = "Content-Type: application/json\r\n"

-- The head lines of a handler's headers (nil: none), sorted, and whether
-- they name a Content-Type; `default`, a whole line, is sorted in when they
-- do not. Fields the server frames itself (Content-Length, Transfer-
-- Encoding, Connection, Date), a name that is not a token and a value
-- holding CR, LF or NUL are dropped; a list value makes a line per element
-- (several Set-Cookie fields). bindings/httphead.c; the table is only read.
local headlines = server_core.headlines

-- Removes the files an upload left, once its request is answered.
local function remove_uploads(req)
  local uploads = rawget(req, "uploads")
  if uploads == nil then return end
  for _, path in ipairs(uploads) do os.remove(path) end
end

-- req:stream([status[, headers]]) -> writer: sends the head now; the body
-- follows in out:write(data) pieces until out:close() (or the handler's end).
function Request:stream(status, headers)
  local conn = self._conn
  if conn == nil then error("req:stream: the connection was taken over (req:socket())", 2) end
  if stream_of[self] then error("req:stream: the reply has already begun", 2) end
  status = status or 200
  local code = math.tointeger(status)
  if code == nil or code < 200 or code > 599 then
    error(format("req:stream: bad status %s (an integer from 200 to 599)", tostring(status)), 2)
  end
  if headers ~= nil and type(headers) ~= "table" then
    error("bad argument #2 to 'stream' (table expected)", 2)
  end
  local lines, typed = headlines(headers)
  if not typed then lines = TEXT_LINES .. lines end
  local out = streams.open(conn, code, lines)
  stream_of[self], self._special = out, true
  streaming[conn] = true
  return out
end

-- req:sse([{retry = ms, heartbeat = seconds | false}]) -> events: a
-- text/event-stream reply (see bindings/httpstream.lua).
function Request:sse(opts)
  return streams.sse(function(status, headers) return self:stream(status, headers) end,
    self.headers["last-event-id"], opts)
end

-- A table body as JSON, or nil and why it cannot be (a function or a
-- coroutine inside, a cycle, a sparse array).
local function json_body(body)
  local ok, text = pcall(json.encode, body)
  if ok then return text end
  local why = tostring(text):gsub("^json: ", ""):gsub("^%u", string.lower)
  return nil, format("a table that is not JSON (%s)", why)
end

-- What a handler returned, as the log line words it.
local function shown(v)
  if type(v) == "string" then return format("%q", #v > 40 and v:sub(1, 40) .. "..." or v) end
  return "a " .. type(v)
end

local BODY_KINDS = {string = true, table = true, number = true, ["nil"] = true}

-- A returned status that is not a number: the first value is the body,
-- unless it is a status written as a string ("404", "text").
local function wrong_status(status, body)
  if type(status) == "string" and body ~= nil and type(body) ~= "table" and
     math.tointeger(tonumber(status)) then
    return format("the status %s as a string (return %s, ... with a number)", shown(status), status)
  end
  if not BODY_KINDS[type(status)] then
    return format("%s (a reply is status, body, headers or a body alone: a string, a table or nil)",
      shown(status))
  end
  if body ~= nil and type(body) ~= "table" then
    return format("%s, %s (the status goes first, a number: return 200, body)", shown(status), shown(body))
  end
end

-- What a handler returned -> status, header lines, body; or nil and what is
-- wrong with it. Status is an integer from 200 to 599 (or left out: 200);
-- `nil, message` is a handler's failure. A body is a string, a number (its
-- text), a table (JSON) or nil; a body alone may come with headers. A
-- route's common replies (a string, or a status and a string) go out by
-- conn:reply and do not come here.
local function normalize(status, body, headers)
  if status == nil and body ~= nil then
    return nil, format("nil, %s (a failure)", tostring(body))
  end
  if type(status) ~= "number" then
    local wrong = wrong_status(status, body)
    if wrong then return nil, wrong end
    status, body, headers = 200, status, body
  end
  local code = math.tointeger(status)
  if code == nil or code < 200 or code > 599 then
    return nil, format("status %s (a final status is an integer from 200 to 599)", tostring(status))
  end
  status = code
  local kind = type(body)
  if not BODY_KINDS[kind] and getmetatable(body) ~= FileBody then
    return nil, format("a body of type %s (a body is a string, a table sent as JSON, or nil)", kind)
  end
  if headers == nil then -- the common case, without building tables
    if kind == "string" then return status, TEXT_LINES, body end
    if kind == "table" and getmetatable(body) == nil then
      local text, why = json_body(body)
      if text == nil then return nil, why end
      return status, JSON_LINES, text
    end
  elseif type(headers) ~= "table" then
    return nil, format("headers of type %s (a table expected)", type(headers))
  end
  if getmetatable(body) == FileBody then return status, headlines(headers), body end
  if body == nil then return status, headlines(headers), "" end
  if kind == "table" then
    local text, why = json_body(body)
    if text == nil then return nil, why end
    return status, headlines(headers, JSON_LINES), text
  end
  return status, headlines(headers, TEXT_LINES), tostring(body)
end

-- Ctrl-C (or SIGTERM) on its way up, possibly with a traceback behind it.
local function is_interrupted(err)
  return type(err) == "string" and (err == "interrupted" or err:find("^interrupted\n") ~= nil)
end

-- The line on stderr for a handler that failed: the request, and the
-- route's pattern when it is not the path itself.
local function log_error(req, err, route)
  local where = req.method .. " " .. req.path
  if route ~= nil and route.pattern ~= req.path then
    where = format("%s (route %s %s)", where, route.method, route.pattern)
  end
  io.stdout:flush() -- what the handler printed comes first
  io.stderr:write(format("netlua http.server: error in handler for %s: %s\n", where, tostring(err)))
  io.stderr:flush()
end

-- xpcall's message handler for route handlers: the traceback, except for
-- Ctrl-C, which goes on up as it is.
local function handler_traceback(e)
  if e == "interrupted" then return e end
  return debug.traceback(tostring(e), 2)
end

-- What after_special returns for a reply the handler streamed: STREAMED, the
-- stream, whether the handler ended without an error.
local STREAMED = {}

-- After a handler whose reply went out its own way (req:stream,
-- req:socket): its error logged, and the access line saying how.
local function log_handled(self, req, route, ok, err, how)
  if not ok then
    if err == "interrupted" then error(err, 0) end
    log_error(req, err, route)
  end
  if self.log then
    io.stderr:write(format("%s %s %s (%s)\n", req.peer, req.method, req.target, how))
  end
end

-- Sends a reply that normalize made (or ends a streamed one): true to go
-- on, false when the connection closed.
local function write_reply(conn, status, lines, body)
  if status == STREAMED then
    streaming[conn] = nil
    return streams.finish(lines, body)
  end
  if getmetatable(body) == FileBody then
    return conn:write_file(status, lines, body.path, body.offset, body.length)
  end
  return conn:write(status, lines, body)
end

-- What a handler returned -> status, header lines, body, for write_reply;
-- a reply that is not one is a 500 and a line on stderr.
local function reply_of(req, route, status, body, headers)
  if status == nil and body == nil then status = 204 end
  local st, lines, data = normalize(status, body, headers)
  if st == nil then
    log_error(req, "the handler returned " .. lines, route)
    return 500, TEXT_LINES, "internal server error\n"
  end
  return st, lines, data
end

-- After the handler ran: the request's uploads removed; a streamed reply
-- ended, a taken-over connection let go, or a failure logged (and a 500).
-- Returns what write_reply takes, or nil when nothing is to be sent.
local function after_special(self, req, route, ok, s, b, hd)
  remove_uploads(req)
  if stream_of[req] then
    log_handled(self, req, route, ok, s, "streamed")
    return STREAMED, stream_of[req], ok
  end
  if rawget(req, "_taken") then -- req:socket(): nothing to send
    log_handled(self, req, route, ok, s, "connection taken over")
    return nil
  end
  if not ok then
    if s == "interrupted" then error(s, 0) end
    log_error(req, s, route)
    return 500, TEXT_LINES, "internal server error\n"
  end
  return reply_of(req, route, s, b, hd)
end

local function log_access(self, req, status)
  io.stderr:write(format("%s %s %s %d\n", req.peer, req.method, req.target, status))
end

-- The function each connection's task calls for each request: answers req
-- on conn. Returns true to go on, false when the connection closed, nil
-- when req:socket() took it over. A reply as most handlers return it goes
-- out by conn:reply (bindings/httpconn.c), in one call; the rest through
-- normalize and write_reply.
local function make_answer(self)
  return function(conn, req)
    local status, lines, body
    local route, params = match_route(self, req)
    if route then
      if params ~= nil then req.params = params end
      local ok, s, b, hd = xpcall(route.handler, handler_traceback, req)
      if ok and rawget(req, "_special") == nil then
        local sent = conn:reply(s, b, hd)
        if sent ~= nil then
          if self.log then log_access(self, req, type(s) == "number" and s or 200) end
          return sent
        end
        status, lines, body = reply_of(req, route, s, b, hd)
      else
        status, lines, body = after_special(self, req, route, ok, s, b, hd)
        if status == nil then return nil end -- taken over
        if status == STREAMED then return write_reply(conn, status, lines, body) end
      end
    else
      remove_uploads(req)
      local st, b, hd = find_static(self, req)
      if st == nil then
        if params then st, b = 405, "method not allowed\n"
        else st, b = 404, "not found\n" end
      end
      status, lines, body = reply_of(req, nil, st, b, hd)
    end
    if self.log then log_access(self, req, status) end
    return write_reply(conn, status, lines, body)
  end
end

-- ---- serving: a task per connection ----------------------------------------
-- What serving needs in this state (the server table itself may be a copy
-- in a worker thread, so none of it lives there): the answer function,
-- the server table it answers for, the open connections, the tasks serving
-- them.
local live = setmetatable({}, {__mode = "k"})

local function state_of(self)
  local st = live[self]
  if st == nil then
    st = {conns = {}, tasks = {}, answer = make_answer(self), server = self}
    live[self] = st
  end
  return st
end

-- Requests a connection may answer in a row before the other tasks get a
-- turn: a client that always has its next request waiting (pipelining)
-- would otherwise never let its task wait, and no other connection would
-- be served.
local BURST = 16

-- One connection's requests, in order, until the peer leaves, the
-- connection fails or closes, or serving stops ("stopped": it stays open in
-- st.conns for the next serve). at.req is the request in hand, for
-- serve_connection. Returns whether the connection is still the server's
-- (false: req:socket() took it over).
local function serve_requests(st, conn, at)
  local answer, server = st.answer, st.server
  while true do
    at.answered = at.answered + 1
    if at.answered % BURST == 0 then task.yield() end
    local req, why = conn:read(Request, server)
    if req == nil then
      if why ~= "stopped" then st.conns[conn] = nil end
      return true
    end
    at.req = req
    local more = answer(conn, req)
    at.req = nil
    if more == nil then return false end
    if not more then
      st.conns[conn] = nil
      return true
    end
  end
end

-- serve_requests under pcall, one call for as many requests as go well: a
-- failure outside the handler (which answer already catches) is still a 500
-- and a line on stderr, never a client left waiting, and the connection
-- goes on. Ctrl-C goes on up, as does a failure between requests.
local function serve_connection(st, conn)
  local at = {answered = 0}
  while true do
    local ok, err = pcall(serve_requests, st, conn, at)
    if ok then
      if err then st.tasks[conn] = nil end
      return
    end
    local req = at.req
    if is_interrupted(err) or req == nil then error(err, 0) end
    at.req = nil
    log_error(req, err)
    local sent
    if stream_of[req] then sent = write_reply(conn, STREAMED, stream_of[req], false)
    else sent = conn:write(500, TEXT_LINES, "internal server error\n") end
    if not sent then
      st.conns[conn], st.tasks[conn] = nil, nil
      return
    end
  end
end

local function spawn_connection(st, conn)
  state_of_conn[conn] = st
  st.tasks[conn] = task.spawn(serve_connection, st, conn)
end

local function accept_loop(core, st, deadline)
  while true do
    local conn, why = core:accept(deadline)
    if conn == nil then return why end
    st.conns[conn] = true
    spawn_connection(st, conn)
  end
end

-- Ends the task serving conn where it waits (its to-be-closed variables
-- run) and closes the connection.
local function cancel_connection(st, conn, t)
  t:cancel()
  conn:close()
  st.conns[conn], st.tasks[conn] = nil, nil
end

-- After serving stopped: idle connections have left their tasks; waits for
-- the others to finish the request in hand. A task that failed (a bug, or
-- Ctrl-C in a handler) loses its connection. On srv:close() or Ctrl-C, a
-- handler streaming its reply is ended instead (a stream may never end by
-- itself; a stop, or the end of a step(), lets it go on at the next serve).
local function finish_connections(st, closing)
  local pending = {}
  for conn, t in pairs(st.tasks) do pending[conn] = t end
  for conn, t in pairs(pending) do
    if closing and streaming[conn] then cancel_connection(st, conn, t) end
  end
  for conn, t in pairs(pending) do
    -- a task that failed printed its error when it ended (task.spawn's rule)
    if not t:join() then
      conn:close()
      st.conns[conn] = nil
      st.tasks[conn] = nil
    end
  end
end

-- Serves in this state until serving stops: the accept loop runs in the
-- caller, each connection in its own task. Returns the accept loop's
-- outcome (pcall's).
local function serve_here(self, st, deadline)
  st.serving = true
  for conn in pairs(st.conns) do spawn_connection(st, conn) end
  local ok, err = pcall(accept_loop, self.core, st, deadline)
  self.core:stop()
  finish_connections(st, self.core:close_asked() or (not ok and is_interrupted(err)))
  st.serving = false
  return ok, err
end

-- A worker thread: the server table arrives as a copy (its handlers with
-- their upvalues, its core sharing the listening socket).
function M._serve_worker(self, deadline)
  setmetatable(self, Server)
  local st = state_of(self)
  local ok, err = serve_here(self, st, deadline)
  for conn in pairs(st.conns) do conn:close() end
  self.core:close()
  if not ok then error(err, 0) end
end

local function worker_main(self, deadline)
  return require("http.server")._serve_worker(self, deadline)
end

local function join_workers(list)
  local failure
  for _, t in ipairs(list) do
    local ok, err = t:join()
    if not ok and failure == nil then failure = err end
  end
  return failure
end

-- Starts workers - 1 threads serving beside this one.
local function start_workers(self)
  local list = {}
  if self.workers <= 1 then return list end
  local thread = require "thread"
  for _ = 2, self.workers do
    -- quiet: serve() raises a worker's error itself (join_workers)
    local ok, t = pcall(thread.spawn, {worker_main, self, live[self].deadline, quiet = true})
    if not ok then
      self.core:stop()
      join_workers(list)
      if is_interrupted(t) then error("interrupted", 0) end -- Ctrl-C while starting them
      error(format("http.server: cannot start a worker: %s", tostring(t)), 3)
    end
    list[#list + 1] = t
  end
  return list
end

-- srv:serve([{max_requests=N, timeout=S}]) -> requests served. Serves until
-- srv:stop() or srv:close() (from a handler or another task), N requests, S
-- seconds; Ctrl-C raises "interrupted".
function Server:serve(how)
  how = how or {}
  local core = self.core
  local st = state_of(self)
  if st.serving then error("server is already running", 2) end
  if how.timeout ~= nil and how.timeout >= 0 then
    st.deadline = time.monotonic() + how.timeout
  else
    st.deadline = nil
  end
  local start = core:begin(how.max_requests)
  local workers = start_workers(self)
  local ok, err = serve_here(self, st, st.deadline)
  local failure = join_workers(workers)
  local served = core:served() - start
  if core:close_asked() then self:close() end
  if not ok then error(err, 0) end
  if failure ~= nil then error(format("http.server: a worker failed: %s", tostring(failure)), 2) end
  return served
end

-- srv:step(timeout): serves what arrives within `timeout` seconds.
function Server:step(timeout)
  return self:serve{timeout = timeout or 0}
end

-- srv:stop(): serve() returns once the requests in hand are answered.
function Server:stop()
  self.core:stop()
end

-- srv:close(): while serving (from a handler or another task), serve()
-- returns after the requests in hand, then closes; otherwise closes now.
function Server:close()
  local st = live[self]
  if st ~= nil and st.serving then
    self.core:stop(true)
    return
  end
  if st ~= nil then
    for conn in pairs(st.conns) do conn:close() end
    st.conns = {}
  end
  self.core:close()
end

function Server:connections()
  return self.core:connections()
end

Server.__close = Server.close
Server.__gc = nil

-- http.server{...} is http.server.new{...}.
return setmetatable(M, {__call = function(_, opts) return M.new(opts) end})
