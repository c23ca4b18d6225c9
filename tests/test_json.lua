-- json.lua: the json module (lua-cjson plus netlua's additions).
local t = require "testlib"
local json = require "json"

t.test("json, cjson and cjson.safe are preloaded; json is cjson", function()
  t.eq(require "cjson", json)
  local safe = require "cjson.safe"
  t.eq(type(safe.decode), "function")
  local v, err = safe.decode("{bad")
  t.eq(v, nil)
  t.match(err, "^json: unexpected 'bad'")
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
  t.match(err, "^json: unexpected 'tru' at line 3, column 8")
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


-- ---- JSON like Python's -------------------------------------------------

t.test("numbers written without fraction or exponent decode as integers", function()
  local v = json.decode('{"id":1}')
  t.eq(v.id, 1)
  t.eq(math.type(v.id), "integer")
  v = json.decode(' [ 7 , -2 , 0 , -0 , 2.5 , 3.0 , 4e0 , 5E1 , 1e2 ] ')
  for i, want in ipairs{"integer", "integer", "integer", "integer", "float", "float", "float", "float", "float"} do
    t.eq(math.type(v[i]), want, "element " .. i)
  end
  t.eq(math.type(json.decode("42")), "integer", "a number alone")
  t.eq(math.type(json.decode("42.0")), "float")
  t.eq(json.decode("9007199254740993"), 9007199254740993, "exact beyond 2^53")
  t.eq(json.decode("-9223372036854775808"), math.mininteger)
  t.eq(json.decode("9223372036854775807"), math.maxinteger)
  t.eq(math.type(json.decode("9223372036854775808")), "float", "too big for an integer")
  v = json.decode('{"a":{"b":[{"c":3}]},"k\\"ey":4,"\\u00e9":5,"s":"6","t":true,"n":null}')
  t.eq(math.type(v.a.b[1].c), "integer", "nested")
  t.eq(math.type(v['k"ey']), "integer", "escaped key")
  t.eq(math.type(v["\195\169"]), "integer", "\\u key")
  t.eq(v.s, "6")
  t.eq(math.type(json.decode('{"a":1,"a":2.5}').a), "float", "a repeated key: the last wins")
  t.eq(math.type(json.decode('{"a":2.5,"a":1}').a), "integer")
  t.eq(math.type(json.decode('[1]')[1]), "integer", "cjson.decode is json.decode")
  t.eq(math.type(require("cjson.safe").decode('[1]')[1]), "integer")
end)

t.test("integers encode exactly, integral floats keep their .0", function()
  t.eq(json.encode(1.0), "1.0")
  t.eq(json.encode(1), "1")
  t.eq(json.encode(-0.0), "-0.0")
  t.eq(json.encode({1, 2.0, 0.5, 123456789012345, math.maxinteger, 1e300}),
    "[1,2.0,0.5,123456789012345,9223372036854775807,1e+300]")
  t.eq(json.encode({x = 3.0}, {indent = 1}), '{\n "x": 3.0\n}')
  local back = json.decode(json.encode({1, 1.0, 123456789012345}))
  t.eq(math.type(back[1]), "integer")
  t.eq(math.type(back[2]), "float")
  t.eq(back[3], 123456789012345)
  local v = {n = 5.0, m = {6.0}}
  t.eq(json.encode(v.m), "[6.0]")
  json.encode(v)
  t.eq(math.type(v.n), "float", "the value is left as it was")
  t.eq(math.type(v.m[1]), "float")
end)

t.test("decoded arrays carry json.array_mt, so [] re-encodes as []", function()
  local v = json.decode('{"list":[],"obj":{},"nested":[[],{}]}')
  t.eq(getmetatable(v.list), json.array_mt)
  t.eq(getmetatable(v.nested), json.array_mt)
  t.eq(getmetatable(v.obj), nil)
  t.eq(getmetatable(v), nil)
  t.eq(json.encode(v.list), "[]")
  t.eq(json.encode(v.obj), "{}")
  t.eq(json.encode(v.nested), "[[],{}]")
  t.eq(json.encode(json.decode('{"a":[]}')), '{"a":[]}')
  t.eq(json.encode(json.decode('[]')), "[]")
  t.eq(json.encode(v, {sort_keys = true}), '{"list":[],"nested":[[],{}],"obj":{}}')
  v.list[1] = "x"
  t.eq(json.encode(v.list), '["x"]', "still an ordinary table")
end)

t.test("encode marks nothing on the value it writes, even when it fails", function()
  local e = json.array()
  local v = {e = e, n = 2.0, list = {e, 1.0}}
  t.eq(json.encode(v.list), "[[],1.0]")
  t.eq(rawget(v.list, 1), e)
  t.eq(math.type(rawget(v.list, 2)), "float")
  v.bad = print
  t.raises("Cannot serialise function", json.encode, v)
  t.eq(rawget(v, "e"), e)
  t.eq(math.type(rawget(v, "n")), "float")
  t.eq(json.encode({"\1x", 1.0}), '["\\u0001x",1.0]', "a string that looks like encode's own marker")
end)

t.test("encode keeps nothing of the value alive after it returns", function()
  local weak = setmetatable({}, {__mode = "v"})
  do
    local v = {list = {json.array(), 2.0}}
    weak[1], weak[2] = v, v.list
    t.eq(json.encode(v), '{"list":[[],2.0]}')
  end
  collectgarbage()
  collectgarbage()
  t.eq(next(weak), nil, "the value was collected")
end)

t.test("encode writes / plainly", function()
  t.eq(json.encode("a/b"), '"a/b"')
  t.eq(json.encode({url = "http://x.test/a/b.png"}), '{"url":"http://x.test/a/b.png"}')
  t.eq(json.encode({["k/"] = "\\/"}), '{"k/":"\\\\/"}', "a backslash before the slash")
  t.eq(json.encode({"a/b"}, {indent = 2}), '[\n  "a/b"\n]')
  t.eq(json.encode({"/", json.array()}), '["/",[]]')
  t.eq(json.decode(json.encode("x\\/y/")), "x\\/y/")
end)

t.test("decode errors say what was found, where, and what was expected", function()
  local function err(text) return select(2, pcall(json.decode, text)) end
  t.eq(err(""), "json: unexpected end of input at line 1, column 1 (expected a value)")
  t.eq(err("[1, 2, }"), "json: unexpected '}' at line 1, column 8 (expected a value after ',')")
  t.eq(err('{"a":1,}'), "json: unexpected '}' at line 1, column 8 (expected a key string after ',')")
  t.eq(err('{"a" 1}'), "json: unexpected number 1 at line 1, column 6 (expected ':' after the key)")
  t.eq(err("[1 2]"), "json: unexpected number 2 at line 1, column 4 (expected ',' or ']')")
  t.eq(err('{"a":1 "b":2}'), "json: unexpected string \"b\" at line 1, column 8 (expected ',' or '}')")
  t.eq(err("{} x"), "json: unexpected 'x' at line 1, column 4 (expected the end of input)")
  t.eq(err('{\n  "name": "\195\169t\195\169" nope\n}'),
    "json: unexpected 'nope' at line 2, column 17 (expected ',' or '}')", "columns count characters")
  t.eq(err('["abc'), "json: unterminated string at line 1, column 2 (expected '\"' before the end of input)")
  t.eq(err('["\\q"]'), [[json: invalid escape '\q' in a string at line 1, column 3 (expected one of \" \\ \/ \b \f \n \r \t \uXXXX)]])
  t.eq(err("[" .. ("["):rep(1000)), "json: too deeply nested at line 1, column 1001 (more than 1000 levels; json.decode_max_depth sets the limit)")
  t.eq(err("[\1]"), "json: unexpected byte 0x01 at line 1, column 2 (expected a value or ']')")
  local safe = require "cjson.safe"
  local v, msg = safe.decode("[1, 2, }")
  t.eq(v, nil)
  t.eq(msg, "json: unexpected '}' at line 1, column 8 (expected a value after ',')", "cjson.safe says the same")
  t.eq(select(2, safe.encode(print)), "Cannot serialise function: type not supported")
  t.eq(safe.encode({a = "/"}), '{"a":"/"}')
end)

t.test("req:json() in an http.server handler gives the same wording", function()
  local http = require "http"
  local task = require "task"
  local srv = assert(http.server{port = 0})
  srv:route("POST", "/j", function(req)
    local ok, e = pcall(req.json, req)
    return {ok = ok, err = e}
  end)
  local result
  local h = task.spawn(function()
    result = table.pack(pcall(http.post, srv.url .. "/j", "[1, 2, }", {timeout = 10}))
    srv:close()
  end)
  srv:serve{timeout = 30}
  h:join()
  t.ok(result[1], tostring(result[2]))
  local reply = assert(result[2]):json()
  t.eq(reply.ok, false)
  t.eq(reply.err, "json: unexpected '}' at line 1, column 8 (expected a value after ',')")
end)

t.test("a table holding itself twice fails at once (the walk before encode was exponential)", function()
  local out, err, code = t.sh("timeout -s KILL 20 " .. t.shellquote(t.NETLUA) .. [[ -e '
    local json = require "json"
    local a = {}
    a[1] = a; a[2] = a
    print(select(2, pcall(json.encode, a)))']])
  t.eq(code, 0, err)
  t.eq(out, "Cannot serialise, excessive nesting (1001)\n")
end)

t.done()
