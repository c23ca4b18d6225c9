-- http_url.lua: the http.url module (layer: bindings, all in Lua): URLs
-- split into their RFC 3986 parts and built back. It needs nothing else, so
-- `require "http.url"` loads no libcurl; `require "http"` gives it as
-- http.url.
--
-- parse(s) -> {scheme, user, password, host, port, path, raw_path, query,
-- fragment} | nil, msg. user, password, host, path and fragment are
-- percent-decoded; raw_path is the path as written and query stays as
-- written (its '&' and '=' are structure: http.parse_query reads it). An
-- IPv6 literal's host is the address without brackets ("[::1]:8080" ->
-- host "::1", port 8080; a zone "%25eth0" -> "%eth0").
-- build(t) -> string: the other way, escaping in each part exactly what
-- that part may not hold; a raw_path that still decodes to t.path is kept.
local type, tostring, tonumber, error = type, tostring, tonumber, error
local format, concat, sort = string.format, table.concat, table.sort

local M = {_NAME = "http.url"}

-- ---- percent-encoding ---------------------------------------------------------

-- Characters each part may hold as they are (RFC 3986, section 3): the
-- unreserved ones, then the part's own. Anything else is %XX.
local UNRESERVED = "A-Za-z0-9%-._~"
local SUB_DELIMS = "!$&'()*+,;="
local KEEP = {
  user = "[^" .. UNRESERVED .. SUB_DELIMS .. "]",
  password = "[^" .. UNRESERVED .. SUB_DELIMS .. ":]",
  host = "[^" .. UNRESERVED .. SUB_DELIMS .. "]",
  path = "[^" .. UNRESERVED .. SUB_DELIMS .. ":@/]",
  fragment = "[^" .. UNRESERVED .. SUB_DELIMS .. ":@/?]",
  query_item = "[^" .. UNRESERVED .. "]", -- a key or value of a query table
}

local function hex(c) return format("%%%02X", c:byte()) end

local function escape(s, part) return (s:gsub(KEEP[part], hex)) end

local function unhex(h) return string.char(tonumber(h, 16)) end

-- The first '%' not followed by two hex digits, with what follows it.
local function bad_escape(s)
  local at = s:find("%", 1, true)
  while at do
    if not s:find("^%x%x", at + 1) then return s:sub(at, at + 2) end
    at = s:find("%", at + 3, true)
  end
end

-- Decodes %XX; nil and a message for a malformed escape.
local function unescape(s, what)
  local bad = bad_escape(s)
  if bad then return nil, format("bad escape '%s' in the %s", bad, what) end
  return (s:gsub("%%(%x%x)", unhex))
end

-- ---- parse --------------------------------------------------------------------

local function fail(url, msg) return nil, format("invalid URL '%s': %s", url, msg) end

-- "8080" -> 8080; "" -> nil (RFC 3986 allows an empty port); else an error.
local function parse_port(text)
  if text == "" then return nil end
  if not text:find("^%d+$") then return nil, format("port '%s' is not a number", text) end
  local n = tonumber(text)
  if #text > 5 or n > 65535 then return nil, format("port %s is out of range (0-65535)", text) end
  return n
end

-- "[v6%25zone]" (brackets included): the address, zone decoded.
local function parse_ipv6(literal)
  local inner = literal:sub(2, -2)
  local addr, zone = inner:match("^([^%%]*)(.*)$")
  if not addr:find("^[%x:.]+$") or not addr:find(":", 1, true) then
    return nil, format("'%s' is not an IPv6 address", literal)
  end
  if zone ~= "" then
    local z = zone:match("^%%25(.+)$")
    z = z and unescape(z, "zone")
    if not z then return nil, format("bad zone in '%s' (write %%25 before it)", literal) end
    return addr .. "%" .. z
  end
  return addr
end

-- "user:pw@host:port" -> the fields of u; nil and a message when malformed.
local function parse_authority(u, auth)
  local userinfo, hostport = auth:match("^(.*)@(.*)$")
  if userinfo then
    local user, password = userinfo:match("^([^:]*):(.*)$")
    local err
    u.user, err = unescape(user or userinfo, "user")
    if not u.user then return nil, err end
    if password then
      u.password, err = unescape(password, "password")
      if not u.password then return nil, err end
    end
  else
    hostport = auth
  end
  local host, rest, err
  if hostport:sub(1, 1) == "[" then
    local literal = hostport:match("^%b[]")
    if not literal then return nil, "'[' without ']' around an IPv6 address" end
    host, err = parse_ipv6(literal)
    if not host then return nil, err end
    rest = hostport:sub(#literal + 1)
    if rest ~= "" and rest:sub(1, 1) ~= ":" then
      return nil, format("'%s' after the IPv6 address (a port is ':N')", rest)
    end
  else
    local name
    name, rest = hostport:match("^([^:]*)(.*)$")
    if name:find("[%[%]]") then return nil, format("a '[' or ']' in host '%s'", name) end
    host, err = unescape(name, "host")
    if not host then return nil, err end
  end
  u.host = host
  if rest ~= "" then
    u.port, err = parse_port(rest:sub(2))
    if err then return nil, err end
  end
  return u
end

function M.parse(url)
  if type(url) ~= "string" then
    error(format("bad argument #1 to 'parse' (string expected, got %s)", type(url)), 2)
  end
  local bad = url:find("[%z\1-\32\127]")
  if bad then
    return fail(url, format("%s at byte %d (escape it as %%%02X)",
      url:byte(bad) == 32 and "a space" or "a control character", bad, url:byte(bad)))
  end
  local u = {}
  local rest = url
  local frag_at = rest:find("#", 1, true)
  if frag_at then
    local err
    u.fragment, err = unescape(rest:sub(frag_at + 1), "fragment")
    if not u.fragment then return fail(url, err) end
    rest = rest:sub(1, frag_at - 1)
  end
  local query_at = rest:find("?", 1, true)
  if query_at then
    u.query = rest:sub(query_at + 1)
    local bad = bad_escape(u.query)
    if bad then return fail(url, format("bad escape '%s' in the query", bad)) end
    rest = rest:sub(1, query_at - 1)
  end
  local scheme, after = rest:match("^(%a[%w+.%-]*):(.*)$")
  if scheme then
    u.scheme, rest = scheme:lower(), after
  end
  local auth, path = rest:match("^//([^/]*)(.*)$")
  if auth then
    local ok, err = parse_authority(u, auth)
    if not ok then return fail(url, err) end
    rest = path
  end
  local path, err = unescape(rest, "path")
  if not path then return fail(url, err) end
  u.path, u.raw_path = path, rest
  return u
end

-- ---- build --------------------------------------------------------------------

local function field(t, name, level)
  local v = t[name]
  if v ~= nil and type(v) ~= "string" then
    error(format("http.url.build: '%s' must be a string, got %s", name, type(v)), level + 1)
  end
  return v
end

-- {a="x y", n={1,2}} -> "a=x%20y&n=1&n=2", keys sorted; a list value
-- repeats its key.
local function encode_query(q)
  local keys, parts = {}, {}
  for k in pairs(q) do keys[#keys + 1] = tostring(k) end
  sort(keys)
  for _, k in ipairs(keys) do
    local v = q[k]
    if v == nil then v = q[tonumber(k)] end
    if type(v) ~= "table" then v = {v} end
    for _, item in ipairs(v) do
      if type(item) == "boolean" then item = item and "true" or "false" end
      parts[#parts + 1] = escape(k, "query_item") .. "=" .. escape(tostring(item), "query_item")
    end
  end
  return concat(parts, "&")
end
M.encode_query = encode_query

local function build_authority(t, out)
  local host, user, password = field(t, "host", 3), field(t, "user", 3), field(t, "password", 3)
  local port = t.port
  if host == nil then
    if user or password or port then error("http.url.build: a user, password or port needs a host", 3) end
    return
  end
  out[#out + 1] = "//"
  if user or password then
    out[#out + 1] = escape(user or "", "user")
    if password then out[#out + 1] = ":" .. escape(password, "password") end
    out[#out + 1] = "@"
  end
  if host:find(":", 1, true) then -- an IPv6 address, its zone as %25
    local addr, zone = host:match("^([^%%]*)%%?(.*)$")
    out[#out + 1] = "[" .. addr .. (zone ~= "" and "%25" .. escape(zone, "host") or "") .. "]"
  else
    out[#out + 1] = escape(host, "host")
  end
  if port ~= nil then
    local n = type(port) == "number" and math.tointeger(port)
    if not n or n < 0 or n > 65535 then
      error(format("http.url.build: port %s is not an integer from 0 to 65535", tostring(port)), 3)
    end
    out[#out + 1] = format(":%d", n)
  end
end

-- The path as written: raw_path when it is a spelling of path, else path
-- escaped.
local function build_path(t, has_host)
  local path, raw = field(t, "path", 3) or "", field(t, "raw_path", 3)
  if raw ~= nil and unescape(raw, "path") == path then path = raw else path = escape(path, "path") end
  if has_host and path ~= "" and path:sub(1, 1) ~= "/" then
    error("http.url.build: with a host, the path must start with '/'", 3)
  end
  return path
end

function M.build(t)
  if type(t) ~= "table" then
    error(format("bad argument #1 to 'build' (table expected, got %s)", type(t)), 2)
  end
  local out = {}
  local scheme = field(t, "scheme", 2)
  if scheme then
    if not scheme:find("^%a[%w+.%-]*$") then
      error(format("http.url.build: bad scheme '%s'", scheme), 2)
    end
    out[1] = scheme .. ":"
  end
  build_authority(t, out)
  out[#out + 1] = build_path(t, t.host ~= nil)
  local query = t.query
  if type(query) == "table" then query = encode_query(query) end
  if query ~= nil then
    if type(query) ~= "string" then
      error(format("http.url.build: 'query' must be a string or a table, got %s", type(query)), 2)
    end
    out[#out + 1] = "?" .. query:gsub("[^" .. UNRESERVED .. SUB_DELIMS .. ":@/?%%]", hex)
  end
  local fragment = field(t, "fragment", 2)
  if fragment then out[#out + 1] = "#" .. escape(fragment, "fragment") end
  return concat(out)
end

return M
