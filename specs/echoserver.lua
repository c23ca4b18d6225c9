-- The echo server, scripts/echoserver.lua: every byte a client sends comes
-- back to it, one task per client; the connection ends when the client
-- closes it.
--   netlua -m check scripts/echoserver.lua --spec specs/echoserver.lua
local BIG = string.rep("0123456789abcdef", 4096) -- 64 KiB
return {
  title = "the echo server",
  args = {"{host}", "{port}"},
  dialogues = {
    { name = "echoes a line",
      steps = { {send = "hello\n"}, {expect = "hello\n"} } },
    { name = "echoes bytes that are not text, and again",
      steps = { {send = "\0\1\2\255\r\n"}, {expect = "\0\1\2\255\r\n"},
        {send = "again"}, {expect = "again"} } },
    { name = "echoes 64 KiB",
      steps = { {send = BIG}, {expect = BIG} } },
    { name = "ten clients at once each get their own bytes back",
      clients = 10,
      steps = { {send = "client {i} says hello\n"}, {expect_line = "^client {i} says hello$"},
        {sync = true},
        {send = "bye from {i}"}, {expect = "bye from {i}"} } },
  },
}
