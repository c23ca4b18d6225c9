-- The tutorial's chapter 10 exercise (docs/tutorial.md, "Peers without a
-- server"): the first two frames of p2p.lua's wire protocol. Model
-- solution: docs/solutions/peerhello.lua.
return {
  title = "a peer's greeting: hello, then the index",
  args = {"{port}"},
  dialogues = {
    { name = "answers a hello with its own hello and an index",
      steps = {
        {send = "{\"type\":\"hello\",\"name\":\"checker\",\"port\":1}\n"},
        {expect_line = "\"type\":\"hello\""},
        {expect_line = "\"type\":\"index\""},
      } },
    { name = "closes a connection that does not start with hello",
      steps = {
        {send = "GET / HTTP/1.0\r\n\r\n"},
        {expect_close = true},
      } },
  },
}
