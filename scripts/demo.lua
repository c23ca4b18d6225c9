-- demo.lua: a short tour of the runtime (run by `make demo`).
-- Usage: netlua scripts/demo.lua
local cli = require "cli"
local json = require "json"
local time = require "time"

cli.parse({...}, {usage = "netlua scripts/demo.lua",
  help = "A short tour of the runtime: time, sleep and JSON (what `make demo` runs first)."})

print("netlua runs Lua " .. _VERSION:match("%d+%.%d+") .. " with modules built in.")
print("time.datetime()  -> " .. time.datetime())
print("time.format('%H:%M:%S.%f') -> " .. time.format("%H:%M:%S.%f"))

local started = time.monotonic()
time.sleep(0.1)
print(string.format("time.sleep(0.1) took %.3f s", time.monotonic() - started))

local reply = json.decode('{"code":200,"msg":"success","newslist":[{"title":"a"},{"title":"b"}]}')
print("json.decode: " .. #reply.newslist .. " items, first title " .. reply.newslist[1].title)
print("json.encode with indent:")
print(json.encode({msg = reply.msg, count = #reply.newslist, tags = json.empty_array}, {indent = 2}))

local ok, err = pcall(json.decode, '{"a": 1,\n "b": }')
print("a decode error says where: " .. err:gsub("^.-: json:", "json:"))
