-- The tutorial's chapter 2 exercise (docs/tutorial.md, "HTTP and JSON"):
-- a server that adds numbers sent as JSON lines. Model solution:
-- docs/solutions/jsonsum.lua.
return {
  title = "JSON sums: {\"a\":1,\"b\":2} gets {\"sum\":3}",
  args = {"{port}"},
  dialogues = {
    { name = "adds a and b, line after line",
      steps = {
        {send = "{\"a\":1,\"b\":2}\n"},
        {expect = "{\"sum\":3}\n"},
        {send = "{\"b\":40,\"a\":2}\n"},
        {expect = "{\"sum\":42}\n"},
      } },
    { name = "answers an error for a line that is not JSON, and goes on",
      steps = {
        {send = "hello\n"},
        {expect_line = "^{\"error\":\"[^\"]+\"}$"},
        {send = "{\"a\":0.5,\"b\":0.25}\n"},
        {expect = "{\"sum\":0.75}\n"},
      } },
    { name = "answers an error when a or b is not a number",
      steps = {
        {send = "{\"a\":\"1\",\"b\":2}\n"},
        {expect_line = "^{\"error\":\"[^\"]+\"}$"},
      } },
    { name = "serves three clients at once",
      clients = 3,
      steps = {
        {send = "{\"a\":{i},\"b\":{i}}\n"},
        {expect_line = "^{\"sum\":%d+}$"},
      } },
  },
}
