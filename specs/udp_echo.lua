-- The UDP echo server, scripts/udp_echo.lua server: each datagram goes
-- back to its sender.
--   netlua -m check scripts/udp_echo.lua --spec specs/udp_echo.lua
return {
  title = "the UDP echo server",
  args = {"server", "{host}", "{port}"},
  udp = true,
  dialogues = {
    { name = "echoes a datagram",
      steps = { {send = "hello"}, {expect = "hello"} } },
    { name = "echoes each datagram whole",
      steps = { {send = "one"}, {expect = "one"}, {send = string.rep("x", 1000)}, {expect_bytes = 1000} } },
    { name = "three clients each get their own datagram back",
      clients = 3,
      steps = { {send = "from client {i}\n"}, {expect_line = "^from client {i}$"} } },
  },
}
