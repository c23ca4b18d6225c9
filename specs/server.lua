-- The welcome server, scripts/server.lua: each client gets
-- "欢迎访问菜鸟教程！" and CRLF (UTF-8), then the connection closes; that
-- is what scripts/client.lua reads and prints.
--   netlua -m check scripts/server.lua --spec specs/server.lua
return {
  title = "the welcome server",
  args = {"{host}", "{port}"},
  dialogues = {
    { name = "greets in UTF-8 with CRLF, then closes",
      steps = { {expect = "欢迎访问菜鸟教程！\r\n"}, {expect_close = true} } },
    { name = "greets as one line",
      steps = { {expect_line = "^欢迎访问菜鸟教程！$"}, {expect_close = true} } },
    { name = "five clients at once are each greeted",
      clients = 5,
      steps = { {expect = "欢迎访问菜鸟教程！\r\n"}, {expect_close = true} } },
  },
}
