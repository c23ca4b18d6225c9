-- json.lua: the Lua half of the json module (layer: bindings). It receives
-- lua-cjson's C table and adds what upstream lacks: decode errors that give
-- the line and column, and an encoder for pretty printing (sorted keys) and
-- for tables marked as arrays (json.empty_array, json.array_mt). json.c sends
-- encode() here only when one of those is needed; plain values go straight
-- to cjson.
local cjson, array_mt, empty_array_mt = ...

local raw_encode, raw_decode, max_depth = cjson.encode, cjson.decode, cjson.encode_max_depth
local concat, sort, rep, format = table.concat, table.sort, string.rep, string.format
local type, pairs, getmetatable, tostring = type, pairs, getmetatable, tostring
local math_type = math.type

local M = {}
for name, value in pairs(cjson) do M[name] = value end

M._NAME = "json"
M.array_mt = array_mt
M.empty_array = setmetatable({}, empty_array_mt)

-- "line 3, column 7" for the byte offset cjson reports.
local function where(text, offset)
  local line, line_start = 1, 1
  for pos in text:sub(1, offset - 1):gmatch("()\n") do
    line, line_start = line + 1, pos + 1
  end
  return line, offset - line_start + 1
end

function M.decode(text)
  local ok, result = pcall(raw_decode, text)
  if ok then return result end
  local offset = type(text) == "string" and type(result) == "string"
                 and tonumber(result:match("at character (%d+)"))
  if offset then
    local line, column = where(text, offset)
    local what = result:gsub("^%u", string.lower)
    error(format("json: %s (line %d, column %d)", what, line, column), 2)
  end
  error(result, 2)
end

local function is_marked_array(t)
  local mt = getmetatable(t)
  return mt == array_mt or mt == empty_array_mt
end

-- cjson's rule: positive integer keys, not excessively sparse -> an array.
-- Returns the length for an array, or nil for an object.
local function array_length(t)
  local count, max = 0, 0
  for k in pairs(t) do
    if math_type(k) ~= "integer" or k < 1 then return nil end
    if k > max then max = k end
    count = count + 1
  end
  if count == 0 then return nil end
  if max > 10 and max > count * 2 then
    error("json: cannot encode an excessively sparse array", 0)
  end
  return max
end

local function key_string(k)
  local kt = type(k)
  if kt == "string" then return k end
  if kt == "number" then return raw_encode(k) end
  error("json: cannot encode a table key of type " .. kt, 0)
end

-- Encodes `value` with `opts` (indent: number of spaces or a string;
-- sort_keys: default true when indenting). Nesting is bounded, with the same
-- error, by cjson's json.encode_max_depth().
function M._encode_ext(value, opts)
  opts = opts or {}
  local indent = opts.indent
  if type(indent) == "number" then indent = rep(" ", indent) end
  if indent ~= nil and type(indent) ~= "string" then
    error("json: indent must be a number or a string", 2)
  end
  local sort_keys = opts.sort_keys
  if sort_keys == nil then sort_keys = indent ~= nil end
  local out, n, active, limit = {}, 0, {}, max_depth()

  local function put(s) n = n + 1; out[n] = s end
  local function newline(depth)
    if indent then put("\n" .. rep(indent, depth)) end
  end

  local encode
  local function encode_array(t, len, depth)
    if len == 0 then put("[]"); return end
    put("[")
    for i = 1, len do
      if i > 1 then put(",") end
      newline(depth + 1)
      encode(t[i], depth + 1)
    end
    newline(depth)
    put("]")
  end

  local function encode_object(t, depth)
    local keys, by_name = {}, {}
    for k in pairs(t) do
      local name = key_string(k)
      keys[#keys + 1] = name
      by_name[name] = k
    end
    if #keys == 0 then put("{}"); return end
    if sort_keys then sort(keys) end
    put("{")
    for i, name in ipairs(keys) do
      if i > 1 then put(",") end
      newline(depth + 1)
      put(raw_encode(name))
      put(indent and ": " or ":")
      encode(t[by_name[name]], depth + 1)
    end
    newline(depth)
    put("}")
  end

  function encode(v, depth)
    if type(v) ~= "table" then put(raw_encode(v)); return end
    if active[v] then error("json: cannot encode a table that contains itself", 0) end
    if depth >= limit then error(format("Cannot serialise, excessive nesting (%d)", depth + 1), 0) end
    active[v] = true
    if is_marked_array(v) then
      encode_array(v, #v, depth)
    else
      local len = array_length(v)
      if len then encode_array(v, len, depth) else encode_object(v, depth) end
    end
    active[v] = nil
  end

  encode(value, 0)
  return concat(out)
end

return M
