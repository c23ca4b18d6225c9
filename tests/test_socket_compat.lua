-- test_socket_compat.lua: a program written for luasocket runs unchanged on
-- netlua and prints what it prints with the real luasocket (Debian's
-- lua-socket under lua5.4, when installed; the recorded output otherwise).
-- It prints every value a call returns, so it runs with NETLUA_EXPLAIN=0:
-- netlua's explanations (the value after luasocket's) are off.
local t = require "testlib"

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "tests"
local program = here .. "/luasocket_program.lua"
local expected = t.readfile(here .. "/luasocket_program.expected")

t.test("the luasocket program prints luasocket's recorded output", function()
  local out, err, code = t.sh("NETLUA_EXPLAIN=0 " .. t.shellquote(t.NETLUA) .. " " .. t.shellquote(program))
  t.eq(code, 0, err)
  t.eq(out, expected)
end)

local probe = select(3, t.sh("lua5.4 -e 'require \"socket\"'"))
if probe == 0 then
  t.test("netlua and lua5.4 with the real luasocket print the same", function()
    local theirs, terr, tcode = t.sh("lua5.4 " .. t.shellquote(program))
    t.eq(tcode, 0, terr)
    local ours = t.sh("NETLUA_EXPLAIN=0 " .. t.shellquote(t.NETLUA) .. " " .. t.shellquote(program))
    t.eq(ours, theirs)
  end)
else
  t.skip("netlua and lua5.4 with the real luasocket print the same", "lua5.4 with lua-socket not installed")
end

t.done()
