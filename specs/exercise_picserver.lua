-- The tutorial's chapter 3 exercise (docs/tutorial.md, "The image
-- downloader"): a picture server that says each picture's size before its
-- bytes. Model solution: docs/solutions/picserver.lua.
return {
  title = "a picture server: GET n answers OK size and size bytes",
  args = {"{port}"},
  dialogues = {
    { name = "sends picture 3 (300 bytes) after its size, then picture 1",
      steps = {
        {send = "GET 3\n"},
        {expect_line = "^OK 300$"},
        {expect = string.rep("\3", 300)},
        {send = "GET 1\n"},
        {expect_line = "^OK 100$"},
        {expect_bytes = 100},
        {send = "BYE\n"},
        {expect_close = true},
      } },
    { name = "refuses a picture that does not exist",
      steps = {
        {send = "GET 51\n"},
        {expect_line = "^ERR "},
        {send = "PUT 1\n"},
        {expect_line = "^ERR "},
        {send = "GET 50\n"},
        {expect_line = "^OK 5000$"},
        {expect_bytes = 5000},
      } },
  },
}
