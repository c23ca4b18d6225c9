-- fanout.lua: the benchmark's p2p row (bench/ only). Starts one seed peer
-- whose share holds FILE (a hard link), then, once it listens, PEERS more
-- (scripts/p2p.lua, each on its own 127.0.0.x, --peer to the seed, no
-- discovery), and measures the time from starting the seed until every
-- other peer has printed "got NAME (... SHA-256 verified)". The seed's
-- hashing of the file, each transfer and each peer's hashing are all inside
-- that time, and so are the start of the processes and their connecting.
-- Prints the time and the CPU time the peers used up to then:
--   RESULT secs=S cpu_s=C bytes=B peers=N
-- Every process it started is killed at the end, however it ends.
--   netlua bench/p2p/fanout.lua NETLUA FILE [PEERS [EXTRA-ARGS]]
local time = require "time"

local netlua, file, npeers, extra = arg[1], arg[2], tonumber(arg[3] or 4), arg[4] or ""
if not (netlua and file and npeers) then
  io.stderr:write("usage: netlua bench/p2p/fanout.lua NETLUA FILE [PEERS [EXTRA-ARGS]]\n")
  os.exit(2)
end
local ROOT = arg[0]:match("^(.*)/bench/p2p/[^/]*$") or "."
local SCRIPT = ROOT .. "/scripts/p2p.lua"
local LIMIT = 120 -- seconds a peer may live, whatever happens
local NAME = "fanout.bin"

local function sh(cmd)
  local p = io.popen(cmd)
  local out = p:read("a")
  p:close()
  return (out:gsub("%s+$", ""))
end
local function q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end
local function readfile(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("a")
  f:close()
  return s
end

local dir = sh("mktemp -d /tmp/netlua-p2pbench.XXXXXX")
local peers = {}

-- Starts peer i (0: the seed) in the background, killed after LIMIT s.
local function start(i, args)
  local p = {name = "b" .. i, ip = "127.0.0." .. (100 + i), share = dir .. "/b" .. i}
  p.out = p.share .. ".out"
  os.execute("mkdir " .. q(p.share))
  p.pid = sh(string.format("timeout -s KILL %d %s %s --host %s --port 0 --name %s --share %s " ..
    "--discovery none %s %s < /dev/null > %s 2>&1 & echo $!",
    LIMIT, q(netlua), q(SCRIPT), p.ip, p.name, q(p.share), args, extra, q(p.out)))
  peers[#peers + 1] = p
  return p
end

-- Waits (at most 60 s) until every peer's output matches its pattern.
local function until_all(list, pattern_of)
  local deadline = time.monotonic() + 60
  while true do
    local missing
    for _, p in ipairs(list) do
      if not readfile(p.out):find(pattern_of(p)) then missing = p break end
    end
    if not missing then return true end
    if time.monotonic() > deadline then
      error(string.format("%s never printed %s:\n%s", missing.name, pattern_of(missing), readfile(missing.out)), 0)
    end
    time.sleep(0.002)
  end
end

-- The CPU time (user and system, seconds) the peers have used so far, with
-- that of the commands they ran and waited for (the scans' find): each peer
-- is the child of its `timeout`.
local function cpu_secs()
  local hz = tonumber(sh("getconf CLK_TCK"))
  local ticks = 0
  for _, p in ipairs(peers) do
    for pid in sh("cat /proc/" .. p.pid .. "/task/*/children"):gmatch("%d+") do
      local stat = readfile("/proc/" .. pid .. "/stat"):gsub("^.*%) ", "")
      local fields = {}
      for f in stat:gmatch("%S+") do fields[#fields + 1] = f end
      ticks = ticks + tonumber(fields[12]) + tonumber(fields[13]) + tonumber(fields[14]) + tonumber(fields[15])
    end
  end
  return ticks / hz
end

local function run()
  local t0 = time.monotonic()
  local seed = start(0, "")
  assert(os.execute("ln " .. q(file) .. " " .. q(seed.share .. "/" .. NAME)))
  until_all({seed}, function() return "listening on [%d.]+:%d+" end)
  local port = readfile(seed.out):match("listening on [%d.]+:(%d+)")
  local others = {}
  for i = 1, npeers do others[i] = start(i, "--peer " .. seed.ip .. ":" .. port) end
  until_all(others, function() return "got " .. NAME:gsub("%.", "%%.") .. " %(%d+ bytes, SHA%-256 verified%)" end)
  local secs = time.monotonic() - t0
  local bytes = sh("stat -c %s " .. q(file))
  for _, p in ipairs(others) do -- the peer checked the SHA-256; this, that it is where it says
    assert(sh("stat -c %s " .. q(p.share .. "/" .. NAME)) == bytes, p.name .. "'s copy is not there")
  end
  print(string.format("RESULT secs=%.3f cpu_s=%.3f bytes=%s peers=%d", secs, cpu_secs(), bytes, npeers))
end

-- Stops a peer: TERM to its `timeout`, which passes it on; if the peer is
-- still there 2 s later, KILL to both.
local function stop(p)
  os.execute("kill " .. p.pid .. " 2>/dev/null")
  for _ = 1, 100 do
    if not os.execute("kill -0 " .. p.pid .. " 2>/dev/null") then return end
    time.sleep(0.02)
  end
  local children = sh("cat /proc/" .. p.pid .. "/task/*/children 2>/dev/null")
  io.stderr:write("fanout.lua: ", p.name, " did not stop on TERM: killed\n")
  os.execute("kill -KILL " .. children .. " " .. p.pid .. " 2>/dev/null")
end

local ok, err = pcall(run)
for _, p in ipairs(peers) do stop(p) end
os.execute("rm -rf " .. q(dir))
if not ok then
  io.stderr:write("fanout.lua: ", tostring(err), "\n")
  os.exit(1)
end
