-- The tutorial's chapter 1 exercise (docs/tutorial.md, "TCP/IP and ports"):
-- a server that tells each client its own address. Model solution:
-- docs/solutions/whoami.lua.
return {
  title = "who am I: the server tells each client its address",
  args = {"{port}"},
  dialogues = {
    { name = "answers 'you are IP:PORT' and closes",
      steps = {
        {expect_line = "^you are 127%.0%.0%.1:%d+$"},
        {expect_close = true},
      } },
    { name = "serves a second client as well",
      steps = {
        {expect_line = "^you are 127%.0%.0%.1:%d+$"},
        {expect_close = true},
      } },
  },
}
