-- The date-time server with a pool of worker threads,
-- scripts/threadedserver.lua: the protocol of timeserver.lua (the date and
-- time, no line end, then the connection closes), here with two workers.
--   netlua -m check scripts/threadedserver.lua --spec specs/threadedserver.lua
local DATE = "^%d%d%d%d%-%d%d%-%d%d %d%d:%d%d:%d%d[%.%d]*$"
return {
  title = "the date-time server, a pool of worker threads",
  args = {"{host}", "{port}", "--workers", "2"},
  dialogues = {
    { name = "sends the date and time, then closes",
      steps = { {expect_line = DATE}, {expect_close = true} } },
    { name = "ten clients at once each get the date from a worker",
      clients = 10,
      steps = { {expect_line = DATE}, {expect_close = true} } },
  },
}
