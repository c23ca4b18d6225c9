-- The tutorial's chapter 5 exercise (docs/tutorial.md, "UDP"): an echo
-- server in capitals. Model solution: docs/solutions/udpupper.lua.
return {
  title = "UDP echo in capitals",
  args = {"{port}"},
  udp = true,
  dialogues = {
    { name = "answers each datagram in capitals",
      steps = {
        {send = "hello"},
        {expect = "HELLO"},
        {send = "netlua 5.4"},
        {expect = "NETLUA 5.4"},
      } },
    { name = "answers several clients",
      clients = 3,
      steps = {
        {send = "client"},
        {expect = "CLIENT"},
      } },
  },
}
