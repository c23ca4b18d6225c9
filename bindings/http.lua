-- http.lua: the Lua half of the http module (layer: bindings). It receives
-- the C client core (bindings/http.c: perform and escape, on libcurl's multi
-- interface, loaded on the first transfer) and builds the user-facing API:
-- request options, query encoding, responses, retries with exponential
-- backoff, downloads that are renamed into place only when complete; and it
-- re-exports the server (bindings/httpserver.lua) as http.server.
local core = ...

local json = require "json"
local time = require "time"
local task = require "task"

local type, pairs, ipairs, tostring, error = type, pairs, ipairs, tostring, error
local format, concat, sort = string.format, table.concat, table.sort

-- max_body: the default limit for a body kept in memory (a script may
-- change it); a download has none unless its options give one.
local server = require "http.server"
local url = require "http.url"

local M = {_NAME = "http", user_agent = core.user_agent, max_body = 64 * 1024 * 1024,
  server = server, url = url, unescape = server.unescape, parse_query = server.parse_query,
  mime_type = server.mime_type, cookie = server.cookie}

M.escape = core.escape

-- http.curl_version loads libcurl, as the first transfer does.
setmetatable(M, {__index = function(_, k)
  if k == "curl_version" then return core.curl_version() end
end})

-- ---- requests -----------------------------------------------------------

local OPTIONS = {url = "string", method = "string", headers = "table",
  query = "table", body = "string", json = "any", timeout = "number",
  connect_timeout = "number", follow_redirects = "boolean",
  max_redirects = "number", retries = "number", retry_backoff = "number",
  retry_5xx = "boolean", verify = "boolean", user_agent = "string",
  output = "string", max_body = "number", request_head = "boolean"}

local function check_options(opts, level)
  if type(opts) ~= "table" then
    error("http: options must be a table, got " .. type(opts), level + 1)
  end
  for k, v in pairs(opts) do
    local want = OPTIONS[k]
    if want == nil then error(format("http: unknown option '%s'", tostring(k)), level + 1) end
    if want ~= "any" and type(v) ~= want then
      error(format("http: option '%s' must be a %s, got %s", k, want, type(v)), level + 1)
    end
  end
  if opts.url == nil then error("http: option 'url' missing", level + 1) end
  if opts.max_body ~= nil and not (opts.max_body >= 0) then
    error("http: option 'max_body' must be at least 0", level + 1)
  end
end

-- "a=1&b=x%20y" with keys sorted; a table value repeats its key.
local encode_query = url.encode_query
M.encode_query = encode_query

local function with_query(url, query)
  if query == nil then return url end
  local q = encode_query(query)
  if q == "" then return url end
  local base, frag = url:match("^([^#]*)(#?.*)$")
  return base .. (base:find("?", 1, true) and "&" or "?") .. q .. frag
end

-- The spec perform() reads: header lines, JSON body, query in the URL.
local function build_spec(opts)
  local spec = {url = with_query(opts.url, opts.query),
    method = opts.method and opts.method:upper() or nil, body = opts.body,
    timeout = opts.timeout, connect_timeout = opts.connect_timeout,
    follow_redirects = opts.follow_redirects, max_redirects = opts.max_redirects,
    verify = opts.verify, user_agent = opts.user_agent, headers = {},
    request_head = opts.request_head,
    max_body = opts.max_body or (opts.output == nil and M.max_body or nil)}
  local has_type = false
  for name, value in pairs(opts.headers or {}) do
    if type(value) ~= "table" then value = {value} end
    if tostring(name):find("[\r\n:]") then
      error(format("http: bad header name %q", tostring(name)), 4)
    end
    for _, v in ipairs(value) do
      if tostring(v):find("[\r\n]") then
        error(format("http: header '%s' holds a line break", tostring(name)), 4)
      end
      spec.headers[#spec.headers + 1] = tostring(name) .. ": " .. tostring(v)
    end
    if tostring(name):lower() == "content-type" then has_type = true end
  end
  if opts.json ~= nil then
    spec.body = json.encode(opts.json)
    if not has_type then spec.headers[#spec.headers + 1] = "Content-Type: application/json" end
  end
  if spec.method == nil then spec.method = spec.body and "POST" or "GET" end
  return spec
end

-- ---- responses ----------------------------------------------------------

local Response = {}
Response.__index = Response
Response.__name = "http.response"

function Response:json()
  return json.decode(self.body)
end

function Response:__tostring()
  return format("http.response: %d %s", self.status, self.reason)
end

-- Status line and headers of the final response: names lower-cased; a
-- repeated header reads as its values joined with ", " in `headers` and
-- stays apart in `header_list` ({name, value} pairs, in order).
local function parse_head(head)
  local headers, list, reason = {}, {}, ""
  local first = true
  for line in head:gmatch("([^\r\n]*)\r?\n") do
    if first then
      reason = line:match("^HTTP/%S+%s+%d+%s*(.*)$") or ""
      first = false
    elseif line ~= "" then
      local name, value = line:match("^([^:]+):%s*(.-)%s*$")
      if name then
        name = name:lower()
        list[#list + 1] = {name, value}
        headers[name] = headers[name] and (headers[name] .. ", " .. value) or value
      end
    end
  end
  return headers, list, reason
end

local function make_response(r)
  local headers, list, reason = parse_head(r.head)
  return setmetatable({status = r.status, reason = reason, headers = headers,
    header_list = list, body = r.body, url = r.url, elapsed = r.elapsed,
    head = r.head, request_head = r.request_head,
    ok = r.status >= 200 and r.status < 300}, Response)
end

-- ---- retries ------------------------------------------------------------

local RETRYABLE = {CURLE_COULDNT_CONNECT = true, CURLE_OPERATION_TIMEDOUT = true,
  CURLE_RECV_ERROR = true, CURLE_SEND_ERROR = true, CURLE_GOT_NOTHING = true,
  CURLE_PARTIAL_FILE = true}

local function should_retry(opts, r, attempt)
  if attempt > (opts.retries or 0) then return false end
  if r.error then return RETRYABLE[r.code] == true end
  return r.status >= 500 and opts.retry_5xx ~= false
end

local function random_suffix()
  local f = io.open("/dev/urandom", "rb")
  local bytes = f and f:read(6) or tostring(os.clock())
  if f then f:close() end
  return (bytes:gsub(".", function(c) return format("%02x", c:byte()) end))
end

-- A temporary name next to `path`, in the same directory so the final
-- rename stays on one file system; at most NAME_MAX (255) bytes, so any
-- name that fits has a temporary name that fits too.
local function temp_name(path)
  local dir, base = path:match("^(.*/)([^/]*)$")
  if not dir then dir, base = "", path end
  local suffix = ".part-" .. random_suffix()
  return dir .. "." .. base:sub(1, 254 - #suffix) .. suffix
end

-- Turns a raw result into what the API returns: a response, or nil, msg,
-- code. A download is renamed into place only on a complete 2xx body.
local function finish(opts, r)
  if r.error then
    if r.temp then os.remove(r.temp) end
    return nil, r.error, r.code
  end
  local res = make_response(r)
  if not r.temp then return res end
  if not res.ok then
    os.remove(r.temp)
    return nil, format("http error %d%s", res.status,
      res.reason ~= "" and (" " .. res.reason:lower()) or ""), "HTTP_" .. res.status
  end
  local renamed, err = os.rename(r.temp, opts.output)
  if not renamed then
    os.remove(r.temp)
    return nil, err:lower(), "ERENAME"
  end
  res.body, res.bytes = nil, r.written
  return res
end

-- A to-be-closed value that removes the temporary files left in `temps`
-- however the transfers end: done (each was renamed or removed already),
-- failed, interrupted, or the task cancelled (which pcall cannot see).
local function removing(temps)
  return setmetatable({}, {__close = function()
    for _, tmp in pairs(temps) do os.remove(tmp) end
  end})
end

-- Runs every request of `list` (each an options table), retrying those
-- that failed in a retryable way after a backoff of retry_backoff *
-- 2^(attempt-1) seconds. Returns, per request, the packed final returns of
-- finish(); progress(i, res, msg, code) is called as each one is final.
local function run_all(list, concurrency, progress)
  local finals, pending, attempt = {}, {}, 1
  for i = 1, #list do pending[i] = i end
  while #pending > 0 do
    local specs, temps, again, wait = {}, {}, {}, 0
    for j, i in ipairs(pending) do
      specs[j] = build_spec(list[i])
      if list[i].output then
        temps[j] = temp_name(list[i].output)
        specs[j].output = temps[j]
      end
    end
    local function on_done(j, r)
      local i = pending[j]
      local opts = list[i]
      r.temp = temps[j]
      if should_retry(opts, r, attempt) then
        if r.temp then os.remove(r.temp) end
        again[#again + 1] = i
        local backoff = (opts.retry_backoff or 0.5) * 2 ^ (attempt - 1)
        if backoff > wait then wait = backoff end
        return
      end
      finals[i] = table.pack(finish(opts, r))
      if progress then progress(i, table.unpack(finals[i], 1, 3)) end
    end
    do
      local _ <close> = removing(temps)
      local ok, err = pcall(core.perform, specs, concurrency, on_done)
      if not ok then error(err, 0) end -- the message as perform raised it
    end
    sort(again)
    pending, attempt = again, attempt + 1
    if #pending > 0 then time.sleep(wait) end
  end
  return finals
end

function M.request(opts)
  check_options(opts, 2)
  return table.unpack(run_all({opts}, 1)[1], 1, 3)
end

local function merge(opts, extra)
  local o = {}
  for k, v in pairs(opts or {}) do o[k] = v end
  for k, v in pairs(extra) do o[k] = v end
  return o
end

function M.get(url, opts)
  if type(url) ~= "string" then error("bad argument #1 to 'get' (string expected, got " .. type(url) .. ")", 2) end
  return M.request(merge(opts, {url = url, method = (opts and opts.method) or "GET"}))
end

function M.post(url, body, opts)
  if type(url) ~= "string" then error("bad argument #1 to 'post' (string expected, got " .. type(url) .. ")", 2) end
  local o = merge(opts, {url = url, method = (opts and opts.method) or "POST"})
  if type(body) == "table" then
    o.body = encode_query(body)
    o.headers = merge(o.headers, {})
    local has = false
    for k in pairs(o.headers) do if tostring(k):lower() == "content-type" then has = true end end
    if not has then o.headers["Content-Type"] = "application/x-www-form-urlencoded" end
  elseif body ~= nil then
    o.body = tostring(body)
  end
  return M.request(o)
end

-- download(url, path[, opts]) -> response (body nil, bytes set) or nil, msg,
-- code. Writes to a temporary file next to path, renamed on a complete 2xx.
function M.download(url, path, opts)
  if type(url) ~= "string" then error("bad argument #1 to 'download' (string expected, got " .. type(url) .. ")", 2) end
  if type(path) ~= "string" then error("bad argument #2 to 'download' (string expected, got " .. type(path) .. ")", 2) end
  return M.request(merge(opts, {url = url, output = path}))
end

-- request_many(list[, {concurrency=N, progress=fn}]) -> results in input
-- order; each a response or {error=msg, code=code}. progress(i, res, msg,
-- code) is called as each request is final (after its retries).
-- http.websocket(url[, opts]) -> ws | nil, err: a WebSocket client
-- (bindings/websocket.lua; it needs no libcurl).
function M.websocket(url, opts)
  return require("websocket").connect(url, opts)
end

function M.request_many(list, how)
  if type(list) ~= "table" then error("bad argument #1 to 'request_many' (table expected)", 2) end
  local concurrency = how and how.concurrency or 8
  local progress = how and how.progress
  if progress ~= nil and type(progress) ~= "function" then
    error("bad argument #2 to 'request_many' (progress must be a function)", 2)
  end
  if type(concurrency) ~= "number" or concurrency < 1 then
    error("bad argument #2 to 'request_many' (concurrency must be at least 1)", 2)
  end
  local opts_list = {}
  for i, item in ipairs(list) do
    if type(item) == "string" then item = {url = item} end
    check_options(item, 2)
    opts_list[i] = item
  end
  local finals = run_all(opts_list, math.floor(concurrency), progress)
  local out = {}
  for i = 1, #opts_list do
    local res, msg, code = table.unpack(finals[i], 1, 3)
    out[i] = res or {error = msg, code = code}
  end
  return out
end

return M
