-- filenames.lua: the rules for a file name that came from somewhere else (a
-- URL, another peer), shared by download.lua (the downloader and the
-- gallery) and p2p.lua. `clean(s)`
-- makes a name that is safe to create inside a chosen folder; a name that
-- `clean` leaves as it is was safe already (`is_safe`).
local cli = require "cli"

local M = {}

-- The longest name, in bytes, "-N" and extension included (the temporary
-- ".NAME.part-XXXXXXXXXXXX" must fit NAME_MAX too).
M.MAX_NAME = 120
-- An extension longer than this (dot included) is not one: it is dropped.
local MAX_EXT = 10

-- Code points that may not appear in a name: C0 and C1 controls, DEL, and
-- the invisible ones that make a name read differently from what it is
-- (bidi overrides and isolates such as U+202E, zero-width characters, line
-- separators, BOM, tags).
local UNSAFE = {{0x00, 0x1F}, {0x7F, 0x9F}, {0xAD, 0xAD}, {0x061C, 0x061C},
  {0x180E, 0x180E}, {0x200B, 0x200F}, {0x2028, 0x202E}, {0x2060, 0x206F},
  {0xFEFF, 0xFEFF}, {0xFFF9, 0xFFFB}, {0xE0000, 0xE007F}}

local function unsafe(c)
  local cp = utf8.codepoint(c)
  for _, r in ipairs(UNSAFE) do
    if cp >= r[1] and cp <= r[2] then return "_" end
  end
end

-- The first n bytes of s, not cutting a UTF-8 character, without trailing
-- dots or spaces (they would meet the extension's dot).
local function cut(s, n)
  if #s > n then
    while n > 0 and (s:byte(n + 1) or 0) & 0xC0 == 0x80 do n = n - 1 end
    s = s:sub(1, n)
  end
  return (s:gsub("[ .]+$", ""))
end

-- stem, extension (".png", or "" when there is none or it is too long).
function M.split_ext(name)
  local stem, ext = name:match("^(.+)(%.%w+)$")
  if not stem or #ext > MAX_EXT then return name, "" end
  return stem, ext
end

-- stem .. suffix .. ext within MAX_NAME bytes, the stem cut to fit.
function M.fit(stem, suffix, ext)
  return cut(stem, M.MAX_NAME - #suffix - #ext) .. suffix .. ext
end

-- A safe file name from s: valid UTF-8 without controls, bidi or invisible
-- characters, path separators or ".." (each replaced by "_" or "."); not
-- starting with "." or "-" (so never "." or "..", never hidden, never read
-- as an option); at most MAX_NAME bytes, a short extension kept. May come
-- back empty or without a letter: the caller decides what to do then.
function M.clean(s)
  s = cli.valid_utf8(s):gsub(utf8.charpattern, unsafe):gsub("[/\\]", "_"):gsub("%.%.+", ".")
  local stem, ext = M.split_ext((s:gsub("^ +", ""):gsub(" +$", "")))
  s = M.fit(stem, "", ext)
  return (s:gsub("^[.-]", "_"))
end

-- True when s holds a letter or digit (or any non-ASCII character).
function M.readable(s)
  return s:find("[%w\128-\255]") ~= nil
end

-- True when s may be used as it is: clean leaves it alone and it is readable.
function M.is_safe(s)
  return type(s) == "string" and M.clean(s) == s and M.readable(s)
end

return M
