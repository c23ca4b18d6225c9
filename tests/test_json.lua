-- json.lua: the json module (lua-cjson plus netlua's additions).
local t = require "testlib"
local json = require "json"

t.test("json, cjson and cjson.safe are preloaded; json is cjson", function()
  t.eq(require "cjson", json)
  local safe = require "cjson.safe"
  t.eq(type(safe.decode), "function")
  local v, err = safe.decode("{bad")
  t.eq(v, nil)
  t.match(err, "Expected")
end)

t.test("round trip of nested values, null and unicode", function()
  local text = '{"a":[1,2.5,"x\\u00e9",true,false,null],"b":{"c":"d"}}'
  local v = json.decode(text)
  t.eq(v.a[2], 2.5)
  t.eq(v.a[3], "x\195\169")
  t.eq(v.a[6], json.null)
  t.eq(v.b.c, "d")
  local again = json.decode(json.encode(v))
  t.eq(again.a[1], 1)
  t.eq(again.b.c, "d")
end)

t.test("decode errors give line and column", function()
  local err = t.raises("line 3, column 8", json.decode, '{\n  "a": 1,\n  "b": tru\n}')
  t.match(err, "^json: expected value but found invalid token")
  t.raises("line 1, column 1", json.decode, "")
  t.raises("line 2, column 1", json.decode, '[1,\n')
end)

t.test("decode error is raised at the caller's line", function()
  local ok, err = pcall(function() local v = json.decode("["); return v end)
  t.eq(ok, false)
  t.match(err, "test_json%.lua:%d+: json:")
end)

t.test("decode of a non-string raises a clear error", function()
  t.raises("string expected", json.decode, {})
end)

t.test("encode with indent pretty-prints with sorted keys", function()
  local text = json.encode({zeta = 1, alpha = {2, 3}, mid = {k = "v"}}, {indent = 2})
  t.eq(text, '{\n  "alpha": [\n    2,\n    3\n  ],\n  "mid": {\n    "k": "v"\n  },\n  "zeta": 1\n}')
  t.eq(json.encode({b = 1, a = 2}, {indent = "\t"}), '{\n\t"a": 2,\n\t"b": 1\n}')
end)

t.test("sort_keys without indent gives compact sorted output", function()
  t.eq(json.encode({b = 1, a = 2, c = {y = 1, x = 2}}, {sort_keys = true}),
    '{"a":2,"b":1,"c":{"x":2,"y":1}}')
end)

t.test("pretty output decodes back to the same value", function()
  local v = {list = {1, 2, {deep = {true, false}}}, s = "q\"uote\n", n = -1.5e10}
  local back = json.decode(json.encode(v, {indent = 4}))
  t.eq(back.list[3].deep[2], false)
  t.eq(back.s, "q\"uote\n")
  t.eq(back.n, -1.5e10)
end)

t.test("empty_array and array_mt encode empty tables as []", function()
  t.eq(json.encode({}), "{}")
  t.eq(json.encode(json.empty_array), "[]")
  t.eq(json.encode({items = json.empty_array}), '{"items":[]}')
  t.eq(json.encode(setmetatable({}, json.array_mt)), "[]")
  t.eq(json.encode(json.array()), "[]")
  t.eq(json.encode({nested = {deeper = json.array({})}}), '{"nested":{"deeper":[]}}')
  t.eq(json.encode({x = json.empty_array}, {indent = 2}), '{\n  "x": []\n}')
  t.eq(json.encode(json.array({1, 2})), "[1,2]")
end)

t.test("empty_array cannot be modified by accident", function()
  t.raises("read-only", function() json.empty_array[1] = 5 end)
  t.eq(next(json.empty_array), nil)
end)

t.test("self-referencing tables are refused", function()
  local a = {}
  a.self = a
  t.raises("contains itself", json.encode, a, {indent = 2})
  t.raises("nesting", json.encode, a)
end)

t.test("encode with indent or sort_keys honours encode_max_depth (it stopped at 1000 whatever the limit)", function()
  local function nest(n)
    local top = {}
    local t_ = top
    for _ = 2, n do t_[1] = {}; t_ = t_[1] end
    return top
  end
  local saved = json.encode_max_depth()
  local ok, err = pcall(function()
    json.encode_max_depth(5)
    t.eq(json.encode(nest(5), {indent = 1}), json.encode(json.decode(json.encode(nest(5))), {indent = 1}))
    local plain = select(2, pcall(json.encode, nest(6)))
    t.eq(plain, "Cannot serialise, excessive nesting (6)", "cjson's own error")
    t.eq(select(2, pcall(json.encode, nest(6), {indent = 2})), plain)
    t.eq(select(2, pcall(json.encode, {a = {b = {c = {d = {e = {f = 1}}}}}}, {sort_keys = true})), plain)
    t.eq(select(2, pcall(json.encode, {json.array({nest(5)})})), plain, "a marked array takes the same path")
    json.encode_max_depth(1200)
    t.ok(json.encode(nest(1100), {indent = 0}), "a raised limit is honoured too")
    t.eq(select(2, pcall(json.encode, nest(1201), {indent = 0})), "Cannot serialise, excessive nesting (1201)")
  end)
  json.encode_max_depth(saved)
  if not ok then error(err, 0) end
end)

t.test("sparse arrays and bad keys are refused in the extended encoder", function()
  t.raises("sparse", json.encode, {[1] = 1, [100] = 2}, {indent = 1})
  t.raises("key of type boolean", json.encode, {[true] = 1}, {indent = 1})
end)

t.test("numeric keys in objects become strings", function()
  t.eq(json.encode({[1] = "a", x = "b"}, {sort_keys = true}), '{"1":"a","x":"b"}')
end)

t.test("encode options must be a table", function()
  t.raises("table expected", json.encode, {}, 2)
end)

t.test("json.null encodes as null and decodes as json.null", function()
  t.eq(json.encode({json.null}), "[null]")
  t.eq(json.encode({a = json.null}, {indent = 1}), '{\n "a": null\n}')
end)

t.done()
