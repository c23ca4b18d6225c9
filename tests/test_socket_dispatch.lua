-- test_socket_dispatch.lua: the patterns of select-based dispatchers in the
-- style of copas (tests/dispatcher_program.lua: settimeout(0), retry until
-- neither "timeout" nor "Operation already in progress", socket.select in
-- between, partial results carried over) give on netlua what they give
-- with the real luasocket (Debian's lua-socket under lua5.4, when
-- installed; the recorded output otherwise).
local t = require "testlib"

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "tests"
local program = t.shellquote(here .. "/dispatcher_program.lua")
local expected = t.readfile(here .. "/dispatcher_program.expected")
local has_luasocket = select(3, t.sh("lua5.4 -e 'require \"socket\"'")) == 0
local NO_LUASOCKET = "lua5.4 with lua-socket not installed"

t.test("dispatcher patterns: netlua prints luasocket's recorded output", function()
  local out, err, code = t.netlua(program)
  t.eq(code, 0, err)
  t.eq(out, expected)
end)

if has_luasocket then
  t.test("dispatcher patterns: netlua and lua5.4 with the real luasocket print the same", function()
    local theirs, terr, tcode = t.sh("lua5.4 " .. program)
    t.eq(tcode, 0, terr)
    t.eq(t.netlua(program), theirs)
  end)
else
  t.skip("dispatcher patterns: netlua and lua5.4 with the real luasocket print the same",
         NO_LUASOCKET)
end

-- A name that does not resolve, where looking it up asks no one: an
-- nsswitch.conf that reads /etc/hosts only.
local private_sh, dir_or_why = t.private_etc{["nsswitch.conf"] = "hosts: files\n"}
local NAME = "a dispatcher's connect to a name that does not resolve ends as with luasocket"
if not private_sh then
  t.skip(NAME, dir_or_why)
else
  t.test(NAME, function()
    local ours, err, code = private_sh(t.shellquote(t.NETLUA) .. " " .. program .. " offline-names")
    t.eq(code, 0, err)
    t.match(ours, "\n%-%- a name that does not resolve\nconnect nil host or service not " ..
      "provided, or not known\nclass tcp{client}\n", "its lines")
    if not has_luasocket then return t.skip(NAME .. " (compared)", NO_LUASOCKET) end
    local theirs, terr, tcode = private_sh("lua5.4 " .. program .. " offline-names")
    t.eq(tcode, 0, terr)
    t.eq(ours, theirs)
  end)
  t.rmtree(dir_or_why)
end

t.done()
