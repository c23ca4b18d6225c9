-- The chat server, scripts/chatserver.lua (one thread per client): a client is
-- welcomed with its number, each line it sends goes to the other clients as
-- "[id] text", "/quit" leaves, and the others hear "* client id left".
-- Numbers depend on who came first, so the lines are matched as patterns;
-- skip = true passes over the "* client N joined" lines in between.
--   netlua -m check scripts/chatserver.lua --spec specs/chatserver.lua
return {
  title = "the chat server, one thread per client",
  args = {"{host}", "{port}"},
  dialogues = {
    { name = "a client is welcomed with its number",
      steps = { {expect_line = "^welcome, you are client %d+; /quit leaves$"},
        {send = "/quit\n"}, {expect_close = true} } },
    { name = "two clients see each other's lines",
      clients = 2,
      steps = {
        {expect_line = "^welcome, you are client %d+"},
        {sync = true},
        {send = "hello from 1\n", client = 1},
        {expect_line = "^%[%d+%] hello from 1$", skip = true, client = 2},
        {send = "and hello from 2\n", client = 2},
        {expect_line = "^%[%d+%] and hello from 2$", skip = true, client = 1},
        {sync = true},
        {send = "/quit\n"},
        {expect_close = true, client = 1},
      } },
    { name = "three clients: each line reaches the two others, a leaver is announced",
      clients = 3,
      steps = {
        {expect_line = "^welcome, you are client %d+"},
        {sync = true},
        {send = "one says hi\n", client = 1},
        {expect_line = "^%[%d+%] one says hi$", skip = true, client = {2, 3}},
        {sync = true},
        {send = "two says hi\n", client = 2},
        {expect_line = "^%[%d+%] two says hi$", skip = true, client = {1, 3}},
        {sync = true},
        {send = "/quit\n", client = 3},
        {expect_close = true, client = 3},
        {expect_line = "^%* client %d+ left$", skip = true, client = {1, 2}},
      } },
  },
}
