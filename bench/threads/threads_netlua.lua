-- threads_netlua.lua: netlua's thread micro-benchmark: spawn+join of an empty
-- function, then messages through a thread.channel from one thread to another.
-- Usage: netlua threads_netlua.lua SPAWNS MSGS. Prints one RESULT line.
local thread = require "thread"
local time = require "time"

local spawns, msgs = tonumber(arg[1]) or 1000, tonumber(arg[2]) or 100000

local t0 = time.monotonic()
for _ = 1, spawns do thread.spawn(function() end):join() end
local spawn_s = time.monotonic() - t0

local ch = thread.channel(1024)
t0 = time.monotonic()
local producer = thread.spawn(function(c, n)
  for i = 1, n do c:send(i) end
end, ch, msgs)
for _ = 1, msgs do ch:recv() end
producer:join()
local chan_s = time.monotonic() - t0

print(string.format("RESULT spawn_per_s=%.1f msgs_per_s=%.1f", spawns / spawn_s, msgs / chan_s))
