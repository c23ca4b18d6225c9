-- The tutorial's chapter 6 exercise (docs/tutorial.md, "IPv6"): writing an
-- address with its port, brackets around IPv6. Model solution:
-- docs/solutions/where.lua.
return {
  title = "host and port as a URL writes them",
  args = {"{port}"},
  dialogues = {
    { name = "brackets IPv6 addresses only",
      steps = {
        {send = "::1 6789\n"},
        {expect = "[::1]:6789\n"},
        {send = "127.0.0.1 80\n"},
        {expect = "127.0.0.1:80\n"},
        {send = "fe80::1%lo 8080\n"},
        {expect = "[fe80::1%lo]:8080\n"},
        {send = "example.org 443\n"},
        {expect = "example.org:443\n"},
      } },
    { name = "answers ERR to a line without a port",
      steps = {
        {send = "::1\n"},
        {expect = "ERR\n"},
      } },
  },
}
