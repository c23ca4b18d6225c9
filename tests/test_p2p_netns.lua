-- test_p2p_netns.lua: scripts/p2p.lua peers as different hosts of one
-- LAN: each in a network namespace of its own, joined by veth pairs and a
-- bridge (t.lan), on 10.77.0.0/24, which exists only inside those
-- namespaces. Discovery by the subnet's broadcast address and by
-- multicast, a file and a chat line through the LAN, and a cable pulled
-- and plugged in again. Needs root (unshare -n, ip): skipped otherwise.
local t = require "testlib"
local p2p = require "p2plib"

-- Runs fn(lan, peers): one peer p1..pn on each host of an n-host LAN with
-- the arguments args(lan) gives; every peer and the LAN are gone afterwards
-- however fn ends.
local function on_lan(name, n, args, fn)
  t.test(name, function()
    local lan, why = t.lan(n, p2p.LIMIT)
    if not lan then return t.skip(name, why) end
    local ok, err = pcall(p2p.with_peers, function(list)
      for i = 1, n do
        list[i] = p2p.start{ip = lan.addr[i], name = "p" .. i, args = args(lan), prefix = lan:inside(i)}
      end
      fn(lan, list)
    end)
    lan:close()
    if not ok then error(err, 0) end
  end)
end

on_lan("four hosts find each other by subnet broadcast; a file and a chat line reach all; " ..
    "a cable pulled and plugged in again: forgotten, found again, the mesh heals", 4,
    function(lan) return "--discovery broadcast --broadcast " .. lan.broadcast end, function(lan, list)
  p2p.all_joined(list)
  t.match(list[1]:out(), "peer p2 joined from 10%.77%.0%.3:%d+", "p2 is heard at its LAN address")
  local data = p2p.random_bytes(256 * 1024 + 3)
  p2p.drop_file(list[2], "map.png", data)
  for i, p in ipairs(list) do
    if i ~= 2 then
      p:wait("got map%.png %(262147 bytes, SHA%-256 verified%)", "map.png verified")
      t.eq(t.readfile(p.share .. "/map.png") == data, true, p.name .. "'s copy")
    end
  end
  p2p.chat_once(list, list[3], "across the bridge")

  lan:link(4, "down")
  for i = 1, 3 do
    list[i]:wait("peer p4 left %(silent for 3 s%)", "p4 forgotten")
    list[4]:wait("peer p" .. i .. " left %(silent for 3 s%)", "p" .. i .. " forgotten by p4")
  end
  local later = p2p.random_bytes(64 * 1024)
  p2p.drop_file(list[1], "later.txt", later) -- while p4 is cut off
  lan:link(4, "up")
  for i = 1, 3 do
    list[i]:wait("peer p4 left[^\n]*\n.-peer p4 joined", "p4 found again")
    list[4]:wait("peer p" .. i .. " left[^\n]*\n.-peer p" .. i .. " joined", "p" .. i .. " found again by p4")
  end
  list[4]:wait("got later%.txt %(65536 bytes, SHA%-256 verified%)", "the file added while it was away")
  t.eq(t.readfile(list[4].share .. "/later.txt") == later, true, "p4's copy of later.txt")
  p2p.chat_once(list, list[4], "back again")
  for _, p in ipairs(list) do p2p.no_part(p) end
end)

on_lan("three hosts find each other by multicast on their LAN, and a chat line reaches all once", 3,
    function() return "--discovery multicast" end, function(lan, list)
  p2p.all_joined(list)
  t.match(list[3]:out(), "peer p1 joined from 10%.77%.0%.2:%d+", "p1 is heard at its LAN address")
  p2p.chat_once(list, list[1], "by multicast")
end)

t.done()
