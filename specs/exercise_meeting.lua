-- The tutorial's chapter 8 exercise (docs/tutorial.md, "Threads and
-- tasks"): three clients must be served at once. Model solution:
-- docs/solutions/meeting.lua.
return {
  title = "a meeting: nobody goes before three have joined",
  args = {"{port}"},
  dialogues = {
    { name = "three clients at once each get 'go 3'",
      clients = 3,
      steps = {
        {send = "join\n"},
        {expect = "go 3\n"},
        {expect_close = true},
      } },
    { name = "and the next three too",
      clients = 3,
      steps = {
        {send = "join\n"},
        {expect = "go 3\n"},
        {expect_close = true},
      } },
  },
}
