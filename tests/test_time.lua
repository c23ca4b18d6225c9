-- time.lua: the time module.
local t = require "testlib"
local time = require "time"

t.test("now() is the wall clock with sub-second resolution", function()
  local now = time.now()
  t.ok(math.abs(now - os.time()) <= 1.5, "close to os.time()")
  t.ok(math.type(now) == "float")
  local distinct = false
  for _ = 1, 1000 do if time.now() ~= now then distinct = true break end end
  t.ok(distinct, "advances below one second")
end)

t.test("monotonic() never goes back", function()
  local last = time.monotonic()
  for _ = 1, 1000 do
    local m = time.monotonic()
    t.ok(m >= last)
    last = m
  end
end)

t.test("sleep waits at least the time asked", function()
  local start = time.monotonic()
  time.sleep(0.05)
  t.ok(time.monotonic() - start >= 0.05)
  time.sleep(0)
end)

t.test("sleep refuses negative or non-number lengths", function()
  t.raises("non-negative", time.sleep, -1)
  t.raises("number expected", time.sleep, "soon")
end)

t.test("datetime prints like Python's str(datetime)", function()
  local s = time.datetime()
  t.match(s, "^%d%d%d%d%-%d%d%-%d%d %d%d:%d%d:%d%d%.%d%d%d%d%d%d$")
end)

t.test("datetime of given times matches Python, in local time", function()
  local stamps = {0, 1.5, 1700000000.123456, 951782400.000001, 86399.9999996}
  for _, ts in ipairs(stamps) do
    local p = io.popen(string.format(
      "python3 -c 'from datetime import datetime; print(datetime.fromtimestamp(%.7f))'", ts))
    local want = p:read("l")
    p:close()
    if want then t.eq(time.datetime(ts), want, "t=" .. ts) end
  end
  t.eq(time.datetime(0):match("^1970%-01%-01") ~= nil or time.datetime(0):match("^1969") ~= nil, true)
end)

t.test("format is strftime plus %f", function()
  local ts = 1700000000.25
  t.eq(time.format("%f", ts), "250000")
  t.eq(time.format("%Y-%m-%d", ts), os.date("%Y-%m-%d", 1700000000))
  t.eq(time.format("%%f is literal", ts), "%f is literal")
  t.eq(time.format("", ts), "")
  t.eq(#time.format(string.rep("%Y", 1000), ts), 4000)
end)

t.done()
