-- test_p2p_hostile.lua: hostile input on scripts/p2p.lua's peer port.
-- Each case costs only its own connection: the peer logs a clear line,
-- closes it, and a peer connection made before it goes on working.
local t = require "testlib"
local p2p = require "p2plib"
local socket = require "socket"

local peer = p2p.start{ip = "127.0.0.61", name = "target",
  args = "--discovery none --max-conns 16 --max-file 1M", files = {["mine.txt"] = "mine\n"}}
-- A well-behaved peer connection, checked after every case.
local friend, friend_hello = p2p.hello(peer, "friend", "127.0.0.62")

local function friend_still_served()
  t.ok(peer:alive(), "the peer runs")
  -- the friend's connection carries frames: a chat line comes back to it
  -- from the peer (gossip passes a line on to every other peer; here we
  -- send one through a second peer connection)
  local other = p2p.hello(peer, "other", "127.0.0.63")
  local id = "id-" .. tostring(math.random(1 << 30))
  p2p.send(other, {type = "chat", id = id, from = "other", text = "still there?"})
  local msg
  repeat msg = assert(p2p.frame(friend)) until msg.type == "chat"
  t.eq(msg.id, id)
  other:close()
end

t.test("the peer says hello and sends its index", function()
  t.eq(friend_hello.type, "hello")
  t.eq(friend_hello.name, "target")
  local index = assert(p2p.frame(friend))
  t.eq(index.type, "index")
  t.eq(index.files[1].name, "mine.txt")
end)

-- Sends `bytes` on a new connection (after a hello when `hello` is set) and
-- checks that the peer closes it and logs `logged`.
local function hostile(bytes, logged, hello)
  local c = hello and p2p.hello(peer, hello, "127.0.0.64") or p2p.connect(peer, "127.0.0.64")
  c:send(bytes)
  t.eq(p2p.until_closed(c), "closed", "the peer closed the connection")
  c:close()
  peer:wait(logged)
  friend_still_served()
end

t.test("garbage: closed with a clear log line", function()
  hostile("GET / HTTP/1.0\r\n\r\n",
    "closing connection from 127%.0%.0%.64:%d+: not a JSON object with a type: \"GET / HTTP/1%.0\"")
end)

t.test("an oversized frame: closed after 64 KiB, not buffered whole", function()
  hostile(string.rep("x", 200 * 1024), "closing connection from 127%.0%.0%.64:%d+: frame longer than 65536 bytes")
end)

t.test("a path-traversal name in an index: the connection is dropped, nothing written", function()
  hostile('{"type":"index","files":[{"name":"../evil.txt","size":5,"sha256":"' ..
    string.rep("ab", 32) .. '"}]}\n', 'peer traversal left %(unsafe file name "%.%./evil%.txt"%)', "traversal")
  t.eq(t.readfile(peer.dir .. "/evil.txt"), nil)
  for _, name in ipairs({"/etc/passwd", ".hidden", "a\0b", "-rf"}) do
    hostile(require("json").encode({type = "index", files = {{name = name, size = 1,
      sha256 = string.rep("0", 64)}}}) .. "\n", "peer traversal left %(unsafe file name", "traversal")
  end
end)

t.test("an index claiming a 1 TB file: dropped with the size in the log line", function()
  hostile('{"type":"index","files":[{"name":"huge.iso","size":1099511627776,"sha256":"' ..
    string.rep("cd", 32) .. '"}]}\n',
    "peer huge left %(file huge%.iso of 1099511627776 bytes is larger than %-%-max%-file %(1048576%)%)", "huge")
end)

t.test("an unknown frame type after hello: dropped", function()
  hostile('{"type":"rm -rf"}\n', 'peer odd left %(unknown frame type "rm %-rf"%)', "odd")
end)

t.test("a get for a name outside the share: an error frame, nothing read", function()
  for _, name in ipairs({"../test_p2p_hostile.lua", "/etc/passwd", "mine.txt"}) do
    local c = p2p.connect(peer, "127.0.0.64")
    p2p.send(c, {type = "get", name = name, sha256 = string.rep("0", 64), offset = 0})
    local reply = assert(p2p.frame(c))
    t.eq(reply.type, "error", name)
    t.eq(reply.text, "no such file", name)
    c:close()
  end
end)

-- The friend's frames until an index where `name` has the SHA-256 `sum`;
-- returns that index's names, in order. Fails after 60 s without one.
local function until_index_has(name, sum)
  local deadline = os.time() + 60
  while true do
    t.ok(os.time() < deadline, "no index with " .. name .. " as " .. sum .. " in 60 s")
    local msg = assert(p2p.frame(friend))
    if msg.type == "index" then
      local names, found = {}, false
      for _, f in ipairs(msg.files) do
        names[#names + 1] = f.name
        if f.name == name and f.sha256 == sum then found = true end
      end
      if found then return table.concat(names, " ") end
    end
  end
end

-- The scan reads times in whole seconds (LuaFileSystem): a file rewritten
-- with the same size and the same second must still be hashed again. The
-- time is set a minute ahead, so that it is the same second for both
-- writes whatever the load (and a clock that runs behind is handled too).
t.test("a file rewritten with the same size and time: offered again with its new SHA-256; links are not offered", function()
  local crypto = require "crypto"
  local path = peer.share .. "/same.txt"
  local ahead = os.time() + 60
  local function write_with_time(text)
    t.writefile(path, text)
    assert(os.execute(string.format("touch -d @%d %s", ahead, t.shellquote(path))))
  end
  assert(os.execute("ln -s mine.txt " .. t.shellquote(peer.share .. "/link.txt")))
  write_with_time("aaaa\n")
  t.eq(until_index_has("same.txt", crypto.hexdigest("sha256", "aaaa\n")), "mine.txt same.txt",
    "the index: no link")
  write_with_time("bbbb\n")
  until_index_has("same.txt", crypto.hexdigest("sha256", "bbbb\n"))
  os.remove(path)
  os.remove(peer.share .. "/link.txt")
  friend_still_served()
end)

t.test("1,000 connections at once: those past --max-conns are refused and logged; peers go on", function()
  local flood = {}
  for i = 1, 1000 do
    local c = socket.tcp()
    assert(c:bind("127.0.0.65", 0))
    c:settimeout(10)
    assert(c:connect(peer.ip, peer.port))
    flood[i] = c
  end
  peer:wait("refusing 127%.0%.0%.65:%d+: already 16 connections %(%-%-max%-conns%)")
  for _, c in ipairs(flood) do c:close() end
  -- the slots come back once the flood's connections are gone
  local deadline = os.time() + 60
  local ok
  repeat
    ok = pcall(friend_still_served)
  until ok or os.time() > deadline
  friend_still_served()
end)

friend:close()
peer:stop()
t.done()
