-- test_copy.lua: the copy rules for values crossing into a thread
-- (runtime/copy.c through thread.spawn and channels).
local t = require "testlib"
local thread = require "thread"
local json = require "json"

-- Sends v through a thread and back: the thread returns what it received.
local function roundtrip(...)
  local ok, a, b, c = thread.spawn(function(...) return ... end, ...):join()
  t.ok(ok, tostring(a))
  return a, b, c
end

t.test("nil, booleans, integers and floats cross, kept distinct", function()
  local ok, a, b, c, d, e, f, g = thread.spawn(function(...)
    return select("#", ...), ...
  end, nil, true, false, 3, 3.0, math.maxinteger, -0.5):join()
  t.ok(ok)
  t.eq(a, 7)
  t.eq(b, nil)
  t.eq(c, true)
  t.eq(d, false)
  t.eq(math.type(e), "integer")
  t.eq(math.type(f), "float")
  t.eq(f, 3.0)
  t.eq(g, math.maxinteger)
end)

t.test("special floats cross", function()
  local inf, ninf, nan = roundtrip(math.huge, -math.huge, 0 / 0)
  t.eq(inf, math.huge)
  t.eq(ninf, -math.huge)
  t.ok(nan ~= nan)
end)

t.test("strings are binary-safe", function()
  local bin = {}
  for i = 0, 255 do bin[#bin + 1] = string.char(i) end
  bin = table.concat(bin) .. "\0tail"
  local back = roundtrip(bin)
  t.eq(back, bin)
  t.eq(#back, 261)
  t.eq(roundtrip(""), "")
end)

t.test("nested tables are deep-copied", function()
  local src = {1, 2.5, "x", nested = {deep = {deeper = {"end"}}}, [true] = "bool key",
               [10] = "sparse", [2.5] = "float key"}
  local back = roundtrip(src)
  t.ok(back ~= src, "a copy, not the same table")
  t.eq(back[1], 1)
  t.eq(back[2], 2.5)
  t.eq(back[3], "x")
  t.eq(back.nested.deep.deeper[1], "end")
  t.eq(back[true], "bool key")
  t.eq(back[10], "sparse")
  t.eq(back[2.5], "float key")
end)

t.test("shared sub-tables stay shared and cycles are kept", function()
  local shared = {v = 1}
  local src = {a = shared, b = shared}
  src.self = src
  shared.parent = src
  local back = roundtrip(src)
  t.ok(back.a == back.b, "shared sub-table")
  t.ok(back.self == back, "cycle to itself")
  t.ok(back.a.parent == back, "cycle through a sub-table")
  t.ok(back.a ~= shared)
end)

t.test("a table used as a key crosses, and is the same as its other uses", function()
  local k = {name = "key"}
  local back = roundtrip({[k] = "v", k = k})
  t.eq(back[back.k], "v")
end)

t.test("the same table passed twice is one table on the other side", function()
  local x = {}
  local a, b = roundtrip(x, x)
  t.ok(a == b)
end)

t.test("metatables are dropped unless they are a module", function()
  local withmt = setmetatable({}, {__index = function() return "magic" end})
  local back = roundtrip(withmt)
  t.eq(getmetatable(back), nil)
  t.eq(back.anything, nil)
  local modmeta = setmetatable({}, {__index = string})
  local withmod = setmetatable({}, string)
  local back2 = roundtrip(withmod)
  t.eq(getmetatable(back2), string, "a module metatable is kept by name")
  t.eq(getmetatable(roundtrip(modmeta)), nil)
end)

t.test("module tables cross by name and are the receiver's module", function()
  local ok, same, encoded, isg = thread.spawn(function(j, s, g)
    return j == require "json", j.encode({1}), g == _G and s == string
  end, json, string, _G):join()
  t.ok(ok, tostring(same))
  t.eq(same, true)
  t.eq(encoded, "[1]")
  t.eq(isg, true)
end)

t.test("a module next to the script crosses by name and is required again", function()
  local path, dir = t.script([[
    local thread = require "thread"
    local m = require "mymod"
    m.changed_in_main = true
    local ok, answer, changed = thread.spawn(function(mod)
      return mod.answer, mod.changed_in_main
    end, m):join()
    print(ok, answer, changed)
  ]])
  t.writefile(dir .. "/mymod.lua", "return {answer = 42}")
  local out, err, code = t.netlua(t.shellquote(path))
  t.eq(code, 0, err)
  t.eq(out, "true\t42\tnil\n", "the receiver's own copy of the module")
  t.rmtree(dir)
end)

t.test("functions cross with their upvalues, recursion included", function()
  local base = 10
  local function fact(n) if n <= 1 then return 1 end return n * fact(n - 1) end
  local function f(n) return fact(n) + base end
  local ok, v = thread.spawn(f, 5):join()
  t.ok(ok, tostring(v))
  t.eq(v, 130)
end)

t.test("functions inside tables cross the same way", function()
  local k = 3
  local handlers = {triple = function(x) return x * k end}
  local ok, v = thread.spawn(function(h) return h.triple(7) end, handlers):join()
  t.ok(ok, tostring(v))
  t.eq(v, 21)
end)

t.test("closures over the same local still share it after crossing", function()
  local count = 0
  local counter = {inc = function() count = count + 1 end, get = function() return count end}
  local ok, v = thread.spawn(function(c)
    c.inc() c.inc() c.inc()
    return c.get()
  end, counter):join()
  t.ok(ok, tostring(v))
  t.eq(v, 3)
  t.eq(count, 0, "the sender's local is untouched")
end)

t.test("C functions of modules cross by name", function()
  local fmt, up = string.format, string.upper
  local ok, v = thread.spawn(function() return up(fmt("%d-%s", 5, "x")) end):join()
  t.ok(ok, tostring(v))
  t.eq(v, "5-X")
  local ok2, v2 = thread.spawn(tostring, 12):join()
  t.ok(ok2)
  t.eq(v2, "12")
end)

t.test("regression: a module after a C function still crosses by name", function()
  local fmt, j = string.format, json
  local ok, s, same = thread.spawn(function()
    return fmt("%s!", "x"), j == require "json"
  end):join()
  t.ok(ok, tostring(s))
  t.eq(s, "x!")
  t.eq(same, true)
end)

t.test("globals seen by a function are the receiver's globals", function()
  GLOBAL_ONLY_IN_MAIN = 1
  local ok, v = thread.spawn(function() return GLOBAL_ONLY_IN_MAIN end):join()
  t.ok(ok)
  t.eq(v, nil)
  GLOBAL_ONLY_IN_MAIN = nil
end)

t.test("a coroutine upvalue is rejected, naming it", function()
  local f = coroutine.create(function() end)
  t.raises("upvalue 'f' (a coroutine) cannot be passed to a thread",
           thread.spawn, function() return f end)
end)

t.test("a coroutine argument is rejected, naming it", function()
  t.raises("argument #2 (a coroutine) cannot be passed to a thread",
           thread.spawn, function() end, coroutine.create(print))
end)

t.test("a bad value deep in a table is rejected with its path", function()
  t.raises("field 'co' of field 'inner' of argument #2 (a coroutine)",
           thread.spawn, function() end, {inner = {co = coroutine.create(print)}})
end)

t.test("a C function of no module is rejected", function()
  local orphan = string.gmatch("a", "a") -- an iterator: a C closure of no module
  t.raises("upvalue 'orphan' (a C function) cannot be passed to a thread",
           thread.spawn, function() return orphan end)
end)

t.test("unknown userdata are rejected, by type name", function()
  t.raises("argument #2 (a FILE*) cannot be passed to a thread",
           thread.spawn, function() end, io.stdout)
end)

t.test("a thread handle cannot be passed (only its results can)", function()
  local th = thread.spawn(function() end)
  t.raises("argument #2 (a thread.handle) cannot be passed to a thread",
           thread.spawn, function() end, th)
  th:join()
end)

t.test("a function inside a table with a bad upvalue is rejected with its path", function()
  local co = coroutine.create(print)
  t.raises("upvalue 'co' of field 'cb' of argument #2 (a coroutine)",
           thread.spawn, function() end, {cb = function() return co end})
end)

t.test("results come back by the same rules", function()
  local ok, tab, int, flt = thread.spawn(function()
    local x = {n = 1}
    x.me = x
    return x, 1, 1.0
  end):join()
  t.ok(ok)
  t.ok(tab.me == tab)
  t.eq(math.type(int), "integer")
  t.eq(math.type(flt), "float")
end)

t.test("an uncopyable result is the thread's error", function()
  local ok, err = thread.spawn{function() return coroutine.create(print) end, quiet = true}:join()
  t.eq(ok, false)
  t.match(err, "%(a coroutine%) cannot be passed to a thread")
end)

t.test("too deep nesting is an error, not a crash", function()
  local deep = {}
  local cur = deep
  for _ = 1, 500 do cur.next = {} cur = cur.next end
  t.raises("too deeply nested", thread.spawn, function() end, deep)
end)

t.test("the nesting limit is 200 levels; the error names the argument or upvalue and the limit (it named neither)", function()
  local function nest(n)
    local top = {}
    local cur = top
    for _ = 2, n do cur[1] = {} cur = cur[1] end
    return top
  end
  local ok, v = thread.spawn(function(x) return x end, nest(200)):join()
  t.ok(ok, v)
  t.raises("argument #2 is too deeply nested to pass to a thread (more than 200 levels)",
           thread.spawn, function() end, nest(201))
  local cfg = {inner = nest(300)}
  t.raises("upvalue 'cfg' is too deeply nested to pass to a thread (more than 200 levels)",
           thread.spawn, function() return cfg end)
  local ch = thread.channel()
  t.raises("argument #1 is too deeply nested", ch.send, ch, {nest(300)})
end)

t.test("channels cross channels: shared, not copied", function()
  local ch, reply = thread.channel(), thread.channel()
  ch:send(reply)
  local th = thread.spawn(function(c)
    local r = c:recv()
    r:send("pong")
  end, ch)
  t.eq(reply:recv(), "pong")
  t.ok(th:join())
  local back = roundtrip(ch)
  t.ok(back == ch, "same channel after a round trip")
end)

t.test("regression: a channel among other fields of a table keeps the table walk intact", function()
  local out = thread.channel()
  local msg = {"join", 1, out, x = 2, y = {3}, z = "last"}
  local back = roundtrip(msg)
  t.eq(back[1], "join")
  t.eq(back[2], 1)
  t.ok(rawequal(back[3], back[3]) and back[3] == out)
  t.eq(back.x, 2)
  t.eq(back.y[1], 3)
  t.eq(back.z, "last")
end)

t.test("one channel passed twice is one object on the other side", function()
  local ch = thread.channel()
  local ok, same = thread.spawn(function(a, b) return rawequal(a, b) and rawequal(a, b.me) end,
                                ch, setmetatable({me = ch}, nil)):join()
  t.ok(ok, tostring(same))
  t.eq(same, false, "a table is not the channel")
  local ok2, same2 = thread.spawn(function(a, tab) return rawequal(a, tab.me) end, ch, {me = ch}):join()
  t.ok(ok2, tostring(same2))
  t.eq(same2, true)
end)

t.done()
