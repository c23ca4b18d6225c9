-- The tutorial's chapter 9 exercise (docs/tutorial.md, "Browser and
-- server"): a web server on a bare TCP socket. Model solution:
-- docs/solutions/tinyweb.lua.
return {
  title = "a web server by hand: HTTP/1.0 on a TCP socket",
  args = {"{port}"},
  dialogues = {
    { name = "answers GET /hello with its path",
      steps = {
        {send = "GET /hello HTTP/1.0\r\nHost: 127.0.0.1\r\nUser-Agent: check\r\n\r\n"},
        {expect = "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 18\r\n\r\nhello from /hello\n"},
        {expect_close = true},
      } },
    { name = "waits for the whole request before it answers",
      steps = {
        {send = "GET /a/b HTTP/1.1\r\nHost: 127.0.0.1\r\n"},
        {sleep = 0.2},
        {send = "\r\n"},
        {expect_line = "^HTTP/1%.0 200 OK$"},
        {expect_line = "^Content%-Type: text/plain$"},
        {expect_line = "^Content%-Length: 16$"},
        {expect_line = "^$"},
        {expect = "hello from /a/b\n"},
        {expect_close = true},
      } },
    { name = "answers 400 to what is not HTTP",
      steps = {
        {send = "hello\r\n\r\n"},
        {expect_line = "^HTTP/1%.0 400 "},
      } },
  },
}
