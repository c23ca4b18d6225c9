-- The date-time server, scripts/timeserver.lua: each client gets the date
-- and time as Python's str(datetime.now()) prints it (no line end), then
-- the connection closes.
--   netlua -m check scripts/timeserver.lua --spec specs/timeserver.lua
local DATE = "^%d%d%d%d%-%d%d%-%d%d %d%d:%d%d:%d%d[%.%d]*$"
return {
  title = "the date-time server",
  args = {"{host}", "{port}"},
  dialogues = {
    { name = "sends the date and time, then closes",
      steps = {
        {expect_line = DATE},
        {expect_close = true},
      } },
    { name = "three clients at once each get the date",
      clients = 3,
      steps = {
        {expect_line = DATE},
        {expect_close = true},
      } },
  },
}
