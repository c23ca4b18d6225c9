-- json.lua: the Lua half of the json module (layer: bindings). It receives
-- lua-cjson's C table and adds what upstream lacks: decode errors in words
-- with the line and column (json.c calls _decode_error with cjson's
-- message), and an encoder for pretty printing (sorted keys) and for marked
-- arrays cjson cannot write (_encode_ext). json.c sends encode() here only
-- when one of those is needed; everything else goes to cjson's encoder.
local cjson, array_mt, empty_array_mt = ...

local raw_encode, max_depth = cjson.encode, cjson.encode_max_depth
local concat, sort, rep, format = table.concat, table.sort, string.rep, string.format
local type, pairs, getmetatable, tostring = type, pairs, getmetatable, tostring
local math_type = math.type

local M = {}
for name, value in pairs(cjson) do M[name] = value end

M._NAME = "json"
M.array_mt = array_mt
M.empty_array = setmetatable({}, empty_array_mt)

-- ---- decode errors in words ----------------------------------------------
-- cjson says "Expected comma or array end but found T_NUMBER at character
-- 4"; json.c has the text too and asks _decode_error for a sentence:
-- "json: unexpected number 2 at line 1, column 4 (expected ',' or ']')".

-- Line and column (in characters, when the line is UTF-8) of a byte offset.
local function where(text, offset)
  local line, line_start = 1, 1
  for pos in text:sub(1, offset - 1):gmatch("()\n") do
    line, line_start = line + 1, pos + 1
  end
  local before = text:sub(line_start, offset - 1)
  return line, (utf8.len(before) or #before) + 1
end

local function quoted(s)
  if #s > 24 then s = s:sub(1, 20) .. "..." end
  return "'" .. s .. "'"
end

-- The bad thing at offset: a word, one UTF-8 character, or a byte.
local function thing_at(text, offset)
  local word = text:match("^[%w_.+-]+", offset)
  if word then return quoted(word) end
  local char = text:match("^" .. utf8.charpattern, offset)
  if char and utf8.len(char) and char:byte() >= 32 and char ~= "\127" then
    return quoted(char)
  end
  return format("byte 0x%02X", text:byte(offset) or 0)
end

local punctuation = {
  T_OBJ_BEGIN = "'{'", T_OBJ_END = "'}'", T_ARR_BEGIN = "'['",
  T_ARR_END = "']'", T_COLON = "':'", T_COMMA = "','",
}

local function found_text(found, text, offset)
  if found == "T_END" then return "unexpected end of input" end
  if punctuation[found] then return "unexpected " .. punctuation[found] end
  if found == "T_STRING" then
    local s = text:match('^"[^"]*"?', offset) or '"'
    return "unexpected string " .. (#s > 24 and s:sub(1, 20) .. '..."' or s)
  end
  if found == "T_NUMBER" then
    return "unexpected number " .. (text:match("^[%w.+-]+", offset) or "")
  end
  if found == "T_BOOLEAN" or found == "T_NULL" then
    return "unexpected " .. (text:match("^%a+", offset) or "literal")
  end
  if found == "invalid number" then return "invalid number " .. thing_at(text, offset) end
  return "unexpected " .. thing_at(text, offset) -- invalid token
end

local function previous_char(text, offset)
  return text:sub(1, offset - 1):match("(%S)%s*$")
end

local function expected_text(expected, text, offset)
  local prev = previous_char(text, offset)
  if expected == "value" then
    if prev == "," or prev == ":" then return "a value after '" .. prev .. "'" end
    if prev == "[" then return "a value or ']'" end
    return "a value"
  elseif expected == "object key string" then
    if prev == "," then return "a key string after ','" end
    return "a key string or '}'"
  elseif expected == "colon" then
    return "':' after the key"
  elseif expected == "comma or object end" then
    return "',' or '}'"
  elseif expected == "comma or array end" then
    return "',' or ']'"
  elseif expected == "the end" then
    return "the end of input"
  end
  return expected
end

-- Where an unterminated string opened: the last quote not escaped.
local function string_start(text)
  local start
  for pos, slashes in text:gmatch('()(\\*)"') do
    if #slashes % 2 == 0 then start = pos + #slashes end
  end
  return start or 1
end

function M._decode_error(text, msg)
  local expected, found, offset = msg:match("^Expected (.-) but found (.-) at character (%d+)$")
  offset = tonumber(offset)
  if offset then
    local what
    if found == "unexpected end of string" then
      offset = string_start(text)
      what, expected = "unterminated string", "'\"' before the end of input"
    elseif found == "invalid escape code" then
      what = "invalid escape " .. quoted(text:match("^\\.?", offset) or "\\") .. " in a string"
      expected = [[one of \" \\ \/ \b \f \n \r \t \uXXXX]]
    elseif found == "invalid unicode escape code" then
      what = "invalid escape " .. quoted(text:match("^\\u[^\"]?[^\"]?[^\"]?[^\"]?", offset) or "\\u") .. " in a string"
      expected = [[\u and four hex digits, a surrogate pair for U+10000 and up]]
    else
      what = found_text(found, text, offset)
      expected = expected_text(expected, text, offset)
    end
    local line, column = where(text, offset)
    return format("json: %s at line %d, column %d (expected %s)", what, line, column, expected)
  end
  local depth, at = msg:match("^Found too many nested data structures %((%d+)%) at character (%d+)$")
  if depth then
    local line, column = where(text, tonumber(at))
    return format("json: too deeply nested at line %d, column %d (more than %d levels; json.decode_max_depth sets the limit)",
      line, column, depth - 1)
  end
  if msg:find("UTF-16 or UTF-32", 1, true) then
    return "json: UTF-16 and UTF-32 are not supported (expected UTF-8 text)"
  end
  return "json: " .. msg
end

-- ---- the extended encoder (indent, sort_keys, odd marked arrays) -----------

-- How json.c writes numbers: integers exactly, floats as cjson does, with
-- ".0" when that would read back as an integer.
local function number_text(v)
  if math_type(v) == "integer" then return format("%d", v) end
  local s = raw_encode(v)
  if not s:find("[^%d-]") then s = s .. ".0" end
  return s
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
  if kt == "number" then return number_text(k) end
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
    local vt = type(v)
    if vt == "number" then put(number_text(v)); return end
    if vt ~= "table" then put(raw_encode(v)); return end
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
