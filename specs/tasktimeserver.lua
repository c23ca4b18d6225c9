-- The date-time server with one task per client, scripts/tasktimeserver.lua:
-- the protocol of timeserver.lua (the date and time, no line end, then the
-- connection closes); several clients are served at once.
--   netlua -m check scripts/tasktimeserver.lua --spec specs/tasktimeserver.lua
local DATE = "^%d%d%d%d%-%d%d%-%d%d %d%d:%d%d:%d%d[%.%d]*$"
return {
  title = "the date-time server, one task per client",
  args = {"{host}", "{port}"},
  dialogues = {
    { name = "sends the date and time, then closes",
      steps = { {expect_line = DATE}, {expect_close = true} } },
    { name = "twenty clients at once each get the date",
      clients = 20,
      steps = { {expect_line = DATE}, {expect_close = true} } },
  },
}
