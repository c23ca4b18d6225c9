-- test_p2p.lua: scripts/p2p.lua as real processes on loopback addresses
-- (127.0.0.0/8 is all local on Linux): discovery, file sharing, gossip
-- chat, a peer killed mid-transfer, a lying peer.
local t = require "testlib"
local p2p = require "p2plib"
local crypto = require "crypto"
local json = require "json"
local random_bytes, drop_file, no_part = p2p.random_bytes, p2p.drop_file, p2p.no_part
local all_joined, chat_once = p2p.all_joined, p2p.chat_once

local function starts(list, names, ip_base, args)
  for i, name in ipairs(names) do
    list[#list + 1] = p2p.start{ip = "127.0.0." .. (ip_base + i), name = name, args = args}
  end
  return list
end

t.test("five peers find each other by broadcast, a new file reaches all verified, chat once", function()
  p2p.with_peers(function(list)
    local args = "--discovery broadcast --discovery-port " .. p2p.udp_port()
    starts(list, {"p1", "p2", "p3", "p4", "p5"}, 10, args)
    all_joined(list)
    local data = random_bytes(300 * 1024 + 7)
    drop_file(list[3], "photo.jpg", data)
    for i, p in ipairs(list) do
      if i ~= 3 then
        p:wait("got photo%.jpg %(307207 bytes, SHA%-256 verified%)", "photo.jpg verified")
        t.eq(t.readfile(p.share .. "/photo.jpg") == data, true, p.name .. "'s copy")
      end
    end
    chat_once(list, list[1], "hello mesh")
    list[1]:type("/peers")
    list[1]:wait("peers %(4%):")
    list[4]:type("/files")
    list[4]:wait("files here %(1%):\n  photo%.jpg  307207 bytes  sha256 " ..
      crypto.hexdigest("sha256", data):sub(1, 16))
    for _, p in ipairs(list) do no_part(p) end
  end)
end)

t.test("multicast discovery on lo: three peers find each other", function()
  p2p.with_peers(function(list)
    starts(list, {"m1", "m2", "m3"}, 20, "--discovery multicast --discovery-port " .. p2p.udp_port())
    all_joined(list)
  end)
end)

t.test("a ring by --peer with no discovery: chat passes peers that are not connected, once", function()
  p2p.with_peers(function(list)
    -- r1 <- r2 <- r3 <- r4 <- r5, and r5 -> r1 closes the ring
    for i = 1, 5 do
      local args = "--discovery none"
      if i > 1 then args = args .. " --peer 127.0.0." .. (29 + i) .. ":" .. list[i - 1].port end
      if i == 5 then args = args .. " --peer 127.0.0.31:" .. list[1].port end
      local files = i == 1 and {["notes.txt"] = "the ring carries files too\n"} or nil
      list[i] = p2p.start{ip = "127.0.0." .. (30 + i), name = "r" .. i, args = args, files = files}
    end
    for i = 1, 5 do
      local next_one = list[i % 5 + 1]
      list[i]:wait("peer " .. next_one.name .. " joined")
      next_one:wait("peer " .. list[i].name .. " joined")
    end
    chat_once(list, list[1], "round the ring")
    t.eq(list[1]:count("peer r3 joined"), 0, "r1 is not connected to r3")
    list[3]:wait("got notes%.txt %(27 bytes, SHA%-256 verified%)", "the file two hops away")
    t.eq(t.readfile(list[3].share .. "/notes.txt"), "the ring carries files too\n")
  end)
end)

t.test("a peer killed while serving a file: no partial file, the file comes from another", function()
  p2p.with_peers(function(list)
    local data = random_bytes(1024 * 1024)
    local slow = "--discovery none --rate 128K"
    list[1] = p2p.start{ip = "127.0.0.41", name = "k1", args = slow, files = {["big.bin"] = data}}
    list[2] = p2p.start{ip = "127.0.0.42", name = "k2", args = slow, files = {["big.bin"] = data}}
    local fetcher = p2p.start{ip = "127.0.0.43", name = "k3", args = string.format(
      "--discovery none --peer 127.0.0.41:%d --peer 127.0.0.42:%d", list[1].port, list[2].port)}
    list[3] = fetcher
    local from = fetcher:wait("fetching big%.bin from (k%d)", "the first fetch")
    local server = from == "k1" and list[1] or list[2]
    local part = fetcher.share .. "/.big.bin.part"
    for _ = 1, 400 do
      if #(t.readfile(part) or "") > 0 then break end
      require("time").sleep(0.05)
    end
    t.ok(#(t.readfile(part) or "") > 0, "the fetch had begun")
    server:kill()
    fetcher:wait("fetch of big%.bin from " .. from .. " stopped at byte %d+", "the cut-off")
    fetcher:wait("fetching big%.bin from k%d from byte %d+", "the fetch going on from the part")
    fetcher:wait("got big%.bin %(1048576 bytes, SHA%-256 verified%)", "big.bin verified")
    t.eq(t.readfile(fetcher.share .. "/big.bin") == data, true, "the copy is the file")
    t.eq(table.concat(fetcher:files(), " "), "big.bin", "what the share holds")
  end)
end)

t.test("a lying peer is caught by the hash, dropped, refused, and the file comes from an honest one", function()
  if not t.have("/usr/bin/python3") then return t.skip(nil, "needs /usr/bin/python3") end
  p2p.with_peers(function(list)
    local data = random_bytes(200 * 1024)
    local victim = p2p.start{ip = "127.0.0.51", name = "v1", args = "--discovery none"}
    list[1] = victim
    local dir = victim.dir -- removed with the victim
    t.writefile(dir .. "/real.bin", data)
    local liar = io.popen(string.format("timeout -s KILL %d /usr/bin/python3 %s/p2p_liar.py %s %d %s 2>&1",
      p2p.LIMIT, p2p.FIXTURES, "127.0.0.51", victim.port, dir .. "/real.bin"))
    victim:wait("real%.bin from liar failed the SHA%-256 check %(got %x+, want %x+%): dropping liar",
      "the liar caught")
    victim:wait("closing connection with liar %(127%.0%.0%.52%): it served bytes that failed the SHA%-256 check",
      "the liar refused when it came back")
    local said = liar:read("a")
    liar:close()
    t.match(said, "served wrong bytes")
    t.match(said, "dropped\n")
    t.eq(t.readfile(victim.share .. "/real.bin"), nil, "nothing kept of the lie")
    list[2] = p2p.start{ip = "127.0.0.53", name = "h1", files = {["real.bin"] = data},
      args = "--discovery none --peer 127.0.0.51:" .. victim.port}
    victim:wait("got real%.bin %(204800 bytes, SHA%-256 verified%) from h1", "the honest copy")
    t.eq(t.readfile(victim.share .. "/real.bin") == data, true, "the copy is the file")
    no_part(victim)
  end)
end)

t.test("a file cut off by a liar and completed by an honest peer: fetched again, the honest one kept", function()
  if not t.have("/usr/bin/python3") then return t.skip(nil, "needs /usr/bin/python3") end
  p2p.with_peers(function(list)
    local data = random_bytes(200 * 1024)
    local victim = p2p.start{ip = "127.0.0.51", name = "v2", args = "--discovery none"}
    list[1] = victim
    local dir = victim.dir -- removed with the victim
    t.writefile(dir .. "/real.bin", data)
    local liar = io.popen(string.format("timeout -s KILL %d /usr/bin/python3 %s/p2p_liar.py %s %d %s half 2>&1",
      p2p.LIMIT, p2p.FIXTURES, "127.0.0.51", victim.port, dir .. "/real.bin"))
    t.eq(liar:read("a"), "served half\n")
    liar:close()
    victim:wait("fetch of real%.bin from liar stopped at byte (%d+)", "the liar's cut-off")
    list[2] = p2p.start{ip = "127.0.0.54", name = "zed", files = {["real.bin"] = data},
      args = "--discovery none --peer 127.0.0.51:" .. victim.port}
    victim:wait("fetching real%.bin from zed from byte %d+", "the honest peer going on")
    victim:wait("real%.bin from liar and zed failed the SHA%-256 check %(got %x+, want %x+%): " ..
      "starting again from byte 0", "the mixed part thrown away")
    victim:wait("got real%.bin %(204800 bytes, SHA%-256 verified%) from zed", "the honest copy")
    t.eq(t.readfile(victim.share .. "/real.bin") == data, true, "the copy is the file")
    t.eq(victim:count("dropping zed"), 0, "the honest peer is not dropped")
    no_part(victim)
  end)
end)

-- GET url with curl: the body, or the test fails with what curl said.
local function curl(url)
  local out, err, code = t.sh("curl -sS --max-time 20 -D - " .. t.shellquote(url))
  t.eq(code, 0, "curl " .. url .. ": " .. (err or ""))
  local head, body = out:match("^(.-\r\n)\r\n(.*)$")
  return body, head
end

t.test("the status page: the same peers, files and fetches as /peers and /files print", function()
  if not t.have("curl") then return t.skip(nil, "needs curl") end
  p2p.with_peers(function(list)
    local data = random_bytes(1024 * 1024)
    list[1] = p2p.start{ip = "127.0.0.61", name = "s1", files = {["big.bin"] = data, ["small.txt"] = "tiny\n"},
      args = "--discovery none --rate 256K"}
    local s2 = p2p.start{ip = "127.0.0.62", name = "s2", args = "--discovery none --status-port 0 " ..
      "--peer 127.0.0.61:" .. list[1].port .. " --peer 127.0.0.61:1"}
    list[2] = s2
    local url = s2:wait("status page at (http://127%.0%.0%.62:%d+)/", "the status URL")
    s2:wait("got small%.txt", "small.txt")
    s2:wait("fetching big%.bin from s1", "the fetch of big.bin")
    local st = json.decode((curl(url .. "/status.json")))
    t.eq(st.name, "s2")
    t.eq(#st.fetching, 1, "one fetch in flight")
    t.eq(st.fetching[1].name, "big.bin")
    t.eq(st.fetching[1].size, 1048576)
    t.ok(st.fetching[1].got < 1048576, "big.bin is on its way")
    s2:type("/files")
    s2:wait("fetching big%.bin: %d+ of 1048576 bytes so far", "/files with the fetch")

    s2:wait("got big%.bin %(1048576 bytes, SHA%-256 verified%)", "big.bin verified")
    s2:type("/peers")
    s2:type("/files")
    s2:wait("files here %(2%):\n[^\n]*\n[^\n]*\n", "/files with both")
    local raw = curl(url .. "/status.json")
    st = json.decode(raw)
    t.match(raw, '"fetching":%[%]', "no fetch: an empty JSON array")
    local out = s2:out()
    t.eq(#st.peers, 1, "one peer")
    t.match(out, "  " .. st.peers[1].name .. " at " .. st.peers[1].address:gsub("%.", "%%.") .. ", last seen",
      "the peer as /peers prints it")
    t.eq(st.peers[1].address, "127.0.0.61:" .. list[1].port)
    t.eq(st.not_connected[1].address, "127.0.0.61:1")
    t.match(out, "%(not connected%) 127%.0%.0%.61:1, given by %-%-peer")
    t.eq(#st.files, 2, "two files")
    for _, f in ipairs(st.files) do
      t.match(out, "  " .. f.name:gsub("%.", "%%.") .. "  " .. f.size .. " bytes  sha256 " .. f.sha256:sub(1, 16),
        f.name .. " as /files prints it")
    end
    t.eq(st.files[1].sha256, crypto.hexdigest("sha256", data), "big.bin's SHA-256")
    t.eq(#st.fetching, 0, "no fetch in flight")

    local page, head = curl(url .. "/")
    t.match(head, "[Cc]ontent%-[Tt]ype: text/html")
    t.match(page, "<h2>peers %(1%)</h2>")
    t.match(page, "<td>s1</td><td>127%.0%.0%.61:%d+</td>")
    t.match(page, "<td>big%.bin</td><td>1048576</td><td>" .. st.files[1].sha256:sub(1, 16) .. "</td>")
    t.match(page, "<td>small%.txt</td><td>5</td>")
  end)
end)

t.test("--status-port on a port in use: a clear error", function()
  local holder = require("socket").bind("127.0.0.63", 0)
  local _, port = holder:getsockname()
  local out, err, code = t.netlua(t.shellquote(p2p.SCRIPT) .. " --host 127.0.0.63 --port 0 --discovery none " ..
    "--share " .. t.tmpdir() .. " --status-port " .. port, {stdin = ""})
  holder:close()
  t.eq(code, 1, "exit status")
  t.match(out .. err, "cannot serve the status page on 127%.0%.0%.63:" .. port .. ": address already in use")
end)

t.test("SIGTERM: the peer logs \"stopped\" and ends as netlua does, with 143 (SIGINT: 130)", function()
  for _, sig in ipairs({{"TERM", 143}, {"INT", 130}}) do
    local share = t.tmpdir()
    local p = t.interactive(string.format("%s scripts/p2p.lua --host 127.0.0.1 --port 0 --discovery none --share %s",
      t.shellquote(t.NETLUA), t.shellquote(share)))
    p:wait_for("listening on")
    local pid = assert(p.pid, "the peer's pid")
    os.execute(string.format("kill -%s %s", sig[1], pid))
    local out, _, status = p:wait_exit()
    t.eq(status, sig[2], out)
    t.match(out, "stopped\n")
    t.rmtree(share)
  end
end)

t.done()
