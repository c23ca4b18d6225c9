-- The tutorial's chapter 7 exercise (docs/tutorial.md, "Raw sockets"): the
-- Internet checksum of ICMP (RFC 1071). Model solution:
-- docs/solutions/checksum.lua.
return {
  title = "the Internet checksum of a packet given in hex",
  args = {"{port}"},
  dialogues = {
    { name = "checksums an ICMP echo request and an odd-length packet",
      steps = {
        -- type 8, code 0, checksum 0, id 1, sequence 1
        {send = "0800000000010001\n"},
        {expect = "f7fd\n"},
        -- RFC 1071's example bytes, and one odd byte padded with a zero
        {send = "0001f203f4f5f6f7\n"},
        {expect = "220d\n"},
        {send = "ff\n"},
        {expect = "00ff\n"},
      } },
    { name = "a packet carrying its checksum sums to 0000",
      steps = {
        {send = "0800f7fd00010001\n"},
        {expect = "0000\n"},
      } },
    { name = "answers ERR to what is not hex",
      steps = {
        {send = "hello\n"},
        {expect = "ERR\n"},
      } },
  },
}
