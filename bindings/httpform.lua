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

-- The body comes from a string, or from the file it went to as it arrived
-- (an upload: see httpparse.h) read BLOCK bytes at a time, so a file part
-- costs a block of memory however large it is.
local BLOCK = 65536
local MAX_PART_HEAD = 16384 -- a part's head fields, in bytes
local MAX_PADDING = 256     -- white space after a boundary, before its CRLF

-- A scanner over the body: buf holds what has been read and not used
-- from pos on; more() reads the next piece behind it.
local Scan = {}
Scan.__index = Scan

local function scanner(source)
  local read, f = nil, nil
  if type(source) == "string" then
    read = function() local s = source; source = nil; return s end
  else
    local err
    f, err = io.open(source.path, "rb")
    if f == nil then return nil, err end
    read = function() return f:read(BLOCK) end
  end
  return setmetatable({buf = "", pos = 1, read = read, file = f}, Scan)
end

function Scan:close()
  if self.file then self.file:close() end
end

function Scan:more()
  local piece = self.read()
  if piece == nil then return false end
  self.buf = self.buf:sub(self.pos) .. piece
  self.pos = 1
  return true
end

-- At least n bytes from pos (fewer only at the end of the body).
function Scan:ensure(n)
  while #self.buf - self.pos + 1 < n do
    if not self:more() then return end
  end
end

-- Where text begins within `limit` bytes from pos: its start and end, or
-- nil when it is not there (or not within the limit).
function Scan:find_within(text, limit)
  while true do
    local s, e = self.buf:find(text, self.pos, true)
    if s ~= nil then
      if e - self.pos + 1 > limit then return nil end
      return s, e
    end
    if #self.buf - self.pos + 1 >= limit or not self:more() then return nil end
  end
end

-- Hands sink(piece) the bytes before the next `delim` and moves past it;
-- false when the body ends first. At most a block is held at a time.
function Scan:copy_until(delim, sink)
  local keep = #delim - 1 -- a delimiter may begin in the tail
  while true do
    local s, e = self.buf:find(delim, self.pos, true)
    if s ~= nil then
      local ok, why = sink(self.buf:sub(self.pos, s - 1))
      if not ok then return nil, why end
      self.pos = e + 1
      return true
    end
    local upto = #self.buf - keep
    if upto >= self.pos then
      local ok, why = sink(self.buf:sub(self.pos, upto))
      if not ok then return nil, why end
      self.pos = upto + 1
    end
    if not self:more() then return false end
  end
end

local function add(first, all, k, v)
  if first[k] == nil then first[k] = v end
  all[k] = all[k] or {}
  all[k][#all[k] + 1] = v
end

-- A sink for a field: keeps the pieces; value() joins them.
local function field_sink()
  local pieces = {}
  return function(piece) pieces[#pieces + 1] = piece; return true end,
         function() return concat(pieces) end
end

-- A sink for a file part: writes to a new temporary file in dir. Returns
-- the sink and a function ending it (-> path, size | nil, why).
local function file_sink(dir)
  local path, msg = core.tempfile(dir)
  if path == nil then return nil, msg end
  local f, err = io.open(path, "wb")
  if f == nil then
    os.remove(path)
    return nil, err
  end
  local size, failure = 0, nil
  local function sink(piece)
    local ok, why = f:write(piece)
    if not ok then failure = why; return nil, why end
    size = size + #piece
    return true
  end
  local function finish(complete)
    local ok, why = f:close()
    if complete and ok and failure == nil then return path, size end
    os.remove(path)
    return nil, failure or why
  end
  return sink, finish
end

-- Past the boundary: "--" ends the body (true), padding and CRLF begin a
-- part (false); nil and what is wrong.
local function after_boundary(sc)
  sc:ensure(2)
  if sc.buf:sub(sc.pos, sc.pos + 1) == "--" then return true end
  local s, e = sc:find_within("\r\n", MAX_PADDING)
  if s == nil or not sc.buf:sub(sc.pos, s - 1):find("^[ \t]*$") then
    return nil, "a boundary line not followed by CRLF"
  end
  sc.pos = e + 1
  return false
end

-- A part's head: its fields, or nil and what is wrong.
local function part_head(sc)
  sc:ensure(2)
  if sc.buf:sub(sc.pos, sc.pos + 1) == "\r\n" then
    sc.pos = sc.pos + 2
    return {}
  end
  local s, e = sc:find_within("\r\n\r\n", MAX_PART_HEAD)
  if s == nil then return nil, "a part head without its end" end
  local head = sc.buf:sub(sc.pos, s - 1)
  sc.pos = e + 1
  return part_fields(head) or {}
end

-- One part's content into r: a field's value, or a file of its own in dir
-- (its path noted in `mine`). true, or nil and why.
local function take_part(sc, delim, fields, dir, r, mine)
  local disp = fields["content-disposition"]
  local kind, p = params_of(disp or "")
  if kind ~= "form-data" or p.name == nil then
    return nil, "a part without Content-Disposition: form-data; name=..."
  end
  local filename = p.filename or ext_value(p["filename*"])
  if filename == nil then
    local sink, value = field_sink()
    if not sc:copy_until(delim, sink) then return nil, "a part without the closing boundary" end
    add(r.fields, r.all, p.name, value())
    return true
  end
  local sink, finish = file_sink(dir)
  if sink == nil then return nil, "cannot store an uploaded file: " .. tostring(finish) end
  local found, why = sc:copy_until(delim, sink)
  local path, size = finish(found)
  if found == nil then return nil, "cannot store an uploaded file: " .. tostring(why) end
  if not found then return nil, "a part without the closing boundary" end
  if path == nil then return nil, "cannot store an uploaded file: " .. tostring(size) end
  mine[#mine + 1] = path
  add(r.files, r.all_files, p.name, {name = p.name, filename = safe_filename(filename),
    type = fields["content-type"] or "text/plain", path = path, size = size})
  return true
end

-- The parts of a body from the scanner into r; true or nil and why.
local function read_parts(sc, boundary, dir, r, mine)
  local delim = "\r\n--" .. boundary
  sc:ensure(#boundary + 2)
  if sc.buf:sub(sc.pos, sc.pos + #boundary + 1) == "--" .. boundary then
    sc.pos = sc.pos + #boundary + 2
  elseif not sc:copy_until(delim, function() return true end) then -- a preamble
    return nil, "no boundary line"
  end
  while true do
    local done, why = after_boundary(sc)
    if done == nil then return nil, why end
    if done then return true end
    local fields
    fields, why = part_head(sc)
    if fields == nil then return nil, why end
    local ok
    ok, why = take_part(sc, delim, fields, dir, r, mine)
    if not ok then return nil, why end
  end
end

-- multipart(body, content_type, dir, temps) -> fields, all, files,
-- all_files | nil, msg. body: the body's text, or {path = P}: the file it
-- went to. Files go to new files in dir, their paths appended to `temps`
-- (the caller removes them when the request ends); on failure the files
-- made so far are removed at once.
function M.multipart(body, ctype, dir, temps)
  local _, p = params_of(ctype)
  local boundary = p and p.boundary
  if boundary == nil or #boundary < 1 or #boundary > 70 then
    return nil, "malformed multipart body (no boundary parameter of 1 to 70 characters)"
  end
  local sc, err = scanner(body)
  if sc == nil then return nil, "cannot read the request body: " .. tostring(err) end
  local r, mine = {fields = {}, all = {}, files = {}, all_files = {}}, {}
  local ok, msg = read_parts(sc, boundary, dir, r, mine)
  sc:close()
  if not ok then
    for _, path in ipairs(mine) do os.remove(path) end
    return nil, msg:find("^cannot") and msg or "malformed multipart body (" .. msg .. ")"
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
