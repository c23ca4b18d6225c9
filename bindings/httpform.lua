-- httpform.lua: what http.server reads from and writes into requests
-- beyond the head (layer: bindings, the Lua half's helper; httpserver.c
-- hands it to httpserver.lua as core.form): multipart/form-data bodies
-- (files written to temporary files of ours), the Cookie field, and
-- Set-Cookie values.
local core = ...

local type, tostring, error, pairs = type, tostring, error, pairs
local format, concat = string.format, table.concat

local M = {}

-- ---- header parameters -------------------------------------------------------

-- A quoted-string starting at s[i] == '"': its text (backslash escapes
-- undone) and the index after its closing quote, or nil.
local function quoted(s, i)
  local out, j = {}, i + 1
  while j <= #s do
    local ch = s:sub(j, j)
    if ch == '"' then return concat(out), j + 1 end
    if ch == "\\" then j = j + 1 ch = s:sub(j, j) end
    out[#out + 1] = ch
    j = j + 1
  end
  return nil
end

-- 'form-data; name="a"; filename="b.txt"' -> "form-data", {name=, filename=}
-- (parameter names lower case), or nil when it cannot be read.
local function params_of(value)
  local media, i = value:match("^%s*([^;%s]*)%s*()")
  local params = {}
  while i <= #value do
    local k, j = value:match("^;%s*([^=;%s]+)%s*=%s*()", i)
    if k == nil then return nil end
    local v
    if value:sub(j, j) == '"' then
      v, j = quoted(value, j)
      if v == nil then return nil end
      j = value:match("^%s*()", j)
    else
      v, j = value:match("^([^;]*)()", j)
      v = v:gsub("%s+$", "")
    end
    params[k:lower()] = v
    i = j
  end
  return media:lower(), params
end
M.params_of = params_of

-- ---- multipart/form-data -----------------------------------------------------

-- The name a client gave its file, made harmless to show: the last segment
-- after / or \, no control bytes, never "." or "..". It is never a path:
-- the file lives under a name of ours.
local function safe_filename(name)
  name = name:gsub("^.*[/\\]", ""):gsub("%c", "")
  if name == "." or name == ".." then return "" end
  return name
end
M.safe_filename = safe_filename

-- An RFC 8187 value (filename*=UTF-8''a%20b.txt): its text, or nil.
local function ext_value(v)
  local text = v and v:match("^[%w!#$&+%-.^_`|~]*'[^']*'(.*)$")
  if text == nil then return nil end
  return (text:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

-- The fields of one part's head: {["content-disposition"]=, ...}, or nil.
local function part_fields(head)
  local fields = {}
  for line in (head .. "\r\n"):gmatch("(.-)\r\n") do
    local k, v = line:match("^([^:%s]+):%s*(.-)%s*$")
    if k == nil then return nil end
    fields[k:lower()] = v
  end
  return fields
end

-- Splits body at --boundary lines: a list of {head = text, from = i, to = j}
-- (the part's content is body:sub(from, to)), or nil and what is wrong.
local function split_parts(body, boundary)
  local delim, e = "\r\n--" .. boundary, nil
  if body:sub(1, #boundary + 2) == "--" .. boundary then
    e = #boundary + 2
  else
    e = select(2, body:find(delim, 1, true)) -- after a preamble
  end
  if e == nil then return nil, "no boundary line" end
  local parts, pos = {}, e + 1
  while true do
    if body:sub(pos, pos + 1) == "--" then return parts end
    local start = body:match("^[ \t]*\r\n()", pos)
    if start == nil then return nil, "a boundary line not followed by CRLF" end
    local from, head = nil, ""
    if body:sub(start, start + 1) == "\r\n" then
      from = start + 2
    else
      local hs = body:find("\r\n\r\n", start, true)
      if hs == nil then return nil, "a part head without its end" end
      head, from = body:sub(start, hs - 1), hs + 4
    end
    local ds, de = body:find(delim, from, true)
    if ds == nil then return nil, "a part without the closing boundary" end
    parts[#parts + 1] = {head = head, from = from, to = ds - 1}
    pos = de + 1
  end
end

local function add(first, all, k, v)
  if first[k] == nil then first[k] = v end
  all[k] = all[k] or {}
  all[k][#all[k] + 1] = v
end

-- Writes a part's content to a new temporary file in dir: its path, or
-- nil and why.
local function save(dir, body, from, to)
  local path, msg = core.tempfile(dir)
  if path == nil then return nil, msg end
  local f, err = io.open(path, "wb")
  if f ~= nil then
    local ok
    ok, err = f:write(body:sub(from, to))
    f:close()
    if ok then return path end
  end
  os.remove(path)
  return nil, err
end

-- One part into the result: a field, or a file saved to dir (its path
-- noted in `temps`). nil and why on failure.
local function take_part(body, part, dir, r, temps)
  local fields = part_fields(part.head)
  local disp = fields and fields["content-disposition"]
  local kind, p = params_of(disp or "")
  if kind ~= "form-data" or p.name == nil then
    return nil, "a part without Content-Disposition: form-data; name=..."
  end
  local filename = p.filename or ext_value(p["filename*"])
  if filename == nil then
    add(r.fields, r.all, p.name, body:sub(part.from, part.to))
    return true
  end
  local path, why = save(dir, body, part.from, part.to)
  if path == nil then return nil, "cannot store an uploaded file: " .. tostring(why) end
  temps[#temps + 1] = path
  add(r.files, r.all_files, p.name, {name = p.name, filename = safe_filename(filename),
    type = fields["content-type"] or "text/plain", path = path, size = part.to - part.from + 1})
  return true
end

-- multipart(body, content_type, dir, temps) -> fields, all, files,
-- all_files | nil, msg. Files go to new files in dir, their paths appended
-- to `temps` (the caller removes them when the request ends); on failure
-- the files made so far are removed at once.
function M.multipart(body, ctype, dir, temps)
  local _, p = params_of(ctype)
  local boundary = p and p.boundary
  if boundary == nil or #boundary < 1 or #boundary > 70 then
    return nil, "malformed multipart body (no boundary parameter of 1 to 70 characters)"
  end
  local parts, why = split_parts(body, boundary)
  if parts == nil then return nil, "malformed multipart body (" .. why .. ")" end
  local r, mine = {fields = {}, all = {}, files = {}, all_files = {}}, {}
  for _, part in ipairs(parts) do
    local ok, msg = take_part(body, part, dir, r, mine)
    if not ok then
      for _, path in ipairs(mine) do os.remove(path) end
      return nil, msg:find("^cannot") and msg or "malformed multipart body (" .. msg .. ")"
    end
  end
  for _, path in ipairs(mine) do temps[#temps + 1] = path end
  return r.fields, r.all, r.files, r.all_files
end

-- ---- cookies -------------------------------------------------------------------

-- "a=1; b=\"x y\"" -> {a = "1", b = "x y"}: the first of each name; values
-- as the client sent them (not URL-decoded).
function M.parse_cookies(header)
  local jar = {}
  if header == nil then return jar end
  for pair in header:gmatch("[^;]+") do
    local k, v = pair:match("^%s*([^=%s]+)%s*=%s*(.-)%s*$")
    if k ~= nil then
      if #v >= 2 and v:sub(1, 1) == '"' and v:sub(-1) == '"' then v = v:sub(2, -2) end
      if jar[k] == nil then jar[k] = v end
    end
  end
  return jar
end

local COOKIE_OPTIONS = {path = "string", domain = "string", max_age = "number",
  expires = "any", secure = "boolean", http_only = "boolean", same_site = "string"}
local SAME_SITE = {strict = "Strict", lax = "Lax", none = "None"}

-- An attribute value: no ';' and no control bytes (it would end the
-- attribute or split the header).
local function attr(name, v, level)
  if v:find("[;%c]") then
    error(format("http.cookie: %s %q holds ';' or a control byte", name, v), level or 3)
  end
  return v
end

local function expires_text(v)
  if type(v) == "number" then return core.httpdate(math.floor(v)) end
  if type(v) == "string" then return attr("expires", v, 4) end
  error("http.cookie: option 'expires' must be a time (seconds since the epoch) or a date string", 4)
end

local function check_cookie_opts(opts)
  for k, v in pairs(opts) do
    local want = COOKIE_OPTIONS[k]
    if want == nil then error(format("http.cookie: unknown option '%s'", tostring(k)), 3) end
    if want ~= "any" and type(v) ~= want then
      error(format("http.cookie: option '%s' must be a %s", k, want), 3)
    end
  end
end

-- cookie(name, value[, opts]) -> the value of one Set-Cookie field.
function M.cookie(name, value, opts)
  if type(name) ~= "string" or not name:find("^[%w!#$%%&'*+%-.^_`|~]+$") then
    error(format("http.cookie: bad name %s (a token: letters, digits, !#$%%&'*+-.^_`|~)", tostring(name)), 2)
  end
  value = tostring(value == nil and "" or value)
  if value:find('[%c%s",;\\]') or value:find("[\128-\255]") then
    error(format("http.cookie: value %q holds a space, '\"', ',', ';', '\\' or a byte a cookie may not hold (escape it, e.g. crypto.base64)", value), 2)
  end
  opts = opts or {}
  if type(opts) ~= "table" then error("bad argument #3 to 'cookie' (table expected)", 2) end
  check_cookie_opts(opts)
  local out = {name .. "=" .. value}
  if opts.path then out[#out + 1] = "Path=" .. attr("path", opts.path) end
  if opts.domain then out[#out + 1] = "Domain=" .. attr("domain", opts.domain) end
  if opts.max_age then
    local n = math.tointeger(opts.max_age)
    if n == nil then error("http.cookie: option 'max_age' must be an integer (seconds)", 2) end
    out[#out + 1] = "Max-Age=" .. n
  end
  if opts.expires then out[#out + 1] = "Expires=" .. expires_text(opts.expires) end
  if opts.secure then out[#out + 1] = "Secure" end
  if opts.http_only then out[#out + 1] = "HttpOnly" end
  if opts.same_site then
    local ss = SAME_SITE[opts.same_site:lower()]
    if ss == nil then error("http.cookie: option 'same_site' must be \"Strict\", \"Lax\" or \"None\"", 2) end
    if ss == "None" and not opts.secure then
      error("http.cookie: same_site = \"None\" needs secure = true (browsers drop it otherwise)", 2)
    end
    out[#out + 1] = "SameSite=" .. ss
  end
  return concat(out, "; ")
end

return M
