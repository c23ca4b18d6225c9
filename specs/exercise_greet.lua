-- The tutorial's chapter 4 exercise (docs/tutorial.md, "TCP sockets"): the
-- welcome server, personal. Model solution: docs/solutions/greet.lua.
return {
  title = "the welcome server greets each client by name",
  args = {"{port}"},
  dialogues = {
    { name = "greets ana and closes",
      steps = {
        {send = "ana\n"},
        {expect = "欢迎, ana!\r\n"},
        {expect_close = true},
      } },
    { name = "greets a name sent in two pieces",
      steps = {
        {send = "be"},
        {sleep = 0.2},
        {send = "n\n"},
        {expect = "欢迎, ben!\r\n"},
        {expect_close = true},
      } },
  },
}
