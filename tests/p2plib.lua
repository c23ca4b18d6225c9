-- p2plib.lua: helpers shared by the p2p tests: start scripts/p2p.lua peers
-- as background processes on loopback addresses, type into them (their
-- standard input is a FIFO), wait for lines in what they print, and stop
-- them. Every process is killed after LIMIT seconds whatever happens.
local t = require "testlib"
local time = require "time"
local socket = require "socket"
local json = require "json"
local crypto = require "crypto"

local M = {}

M.ROOT = (arg and arg[0] and arg[0]:match("^(.*)/tests/")) or "."
M.SCRIPT = M.ROOT .. "/scripts/p2p.lua"
M.FIXTURES = M.ROOT .. "/tests/fixtures"
M.LIMIT = 120 -- seconds any process started here may live
M.WAIT = 60   -- seconds a wait for a line may take before the test fails

-- A UDP port that is free now, so each test's discovery is its own.
function M.udp_port()
  local u = socket.udp()
  assert(u:setsockname("0.0.0.0", 0))
  local _, port = u:getsockname()
  u:close()
  return tonumber(port)
end

-- Runs `cmd` in the background with its output in dir/out and dir/err and
-- its input from dir/in (a FIFO); returns its pid and its guard's pid.
local function background(cmd, dir)
  os.execute("mkfifo " .. dir .. "/in")
  local p = io.popen(string.format(
    "%s < %s/in > %s/out 2> %s/err & pid=$!; " ..
    "( sleep %d; kill -KILL $pid ) > /dev/null 2>&1 & echo $pid $!",
    cmd, dir, dir, dir, M.LIMIT))
  local pid, guard = p:read("l"):match("(%d+) (%d+)")
  p:close()
  return pid, guard
end

local Peer = {}
Peer.__index = Peer

function Peer:out() return t.readfile(self.dir .. "/out") or "" end
function Peer:err() return t.readfile(self.dir .. "/err") or "" end

-- Waits until what the peer printed matches pattern; returns the capture
-- (or the match). Fails the test, with the peer's output, after M.WAIT s.
function Peer:wait(pattern, what)
  local deadline = time.monotonic() + M.WAIT
  while time.monotonic() < deadline do
    local out = self:out()
    local found = table.pack(out:match(pattern))
    if found[1] then return table.unpack(found, 1, found.n) end
    time.sleep(0.05)
  end
  error(string.format("%s never printed %s (%s)\n--- out:\n%s--- err:\n%s", self.name,
    what or pattern, pattern, self:out(), self:err()), 2)
end

-- How many times the plain text occurs in what the peer printed.
function Peer:count(text)
  local n, i = 0, 1
  local out = self:out()
  while true do
    local s, e = out:find(text, i, true)
    if not s then return n end
    n, i = n + 1, e + 1
  end
end

-- Types a line into the peer.
function Peer:type(line)
  self.stdin:write(line, "\n")
  self.stdin:flush()
end

function Peer:alive()
  return os.execute("kill -0 " .. self.pid .. " 2>/dev/null") == true
end

function Peer:kill()
  os.execute("kill -KILL " .. self.pid .. " " .. self.guard .. " 2>/dev/null")
  for _ = 1, 200 do
    if not self:alive() then break end
    time.sleep(0.05)
  end
end

-- Asks the peer to quit (/quit), kills it if it has not within a while,
-- and removes its directory unless `keep`. Returns what it printed.
function Peer:stop(keep)
  if self:alive() then
    pcall(self.type, self, "/quit")
    for _ = 1, 100 do
      if not self:alive() then break end
      time.sleep(0.05)
    end
  end
  self:kill()
  pcall(self.stdin.close, self.stdin)
  local out, err = self:out(), self:err()
  if not keep then t.rmtree(self.dir) end
  return out, err
end

-- The file names in the peer's share, sorted, hidden ones included.
function Peer:files()
  local p = io.popen("ls -A " .. t.shellquote(self.share))
  local names = {}
  for name in p:lines() do names[#names + 1] = name end
  p:close()
  table.sort(names)
  return names
end

-- Starts a peer: opts.ip (a loopback address), opts.name, opts.args (more
-- arguments, already quoted), opts.files (name -> contents to share from
-- the start), opts.prefix (a command the peer's command line is given to,
-- such as "nsenter -t PID -n"). Waits until it listens; its port is
-- peer.port.
function M.start(opts)
  local dir = t.tmpdir()
  local peer = setmetatable({name = opts.name, ip = opts.ip, dir = dir, share = dir .. "/share"}, Peer)
  os.execute("mkdir " .. peer.share)
  for name, data in pairs(opts.files or {}) do t.writefile(peer.share .. "/" .. name, data) end
  local cmd = string.format("%s%s %s --host %s --port 0 --name %s --share %s --interval 0.3 --forget 3 %s",
    opts.prefix and opts.prefix .. " " or "", t.shellquote(t.NETLUA), t.shellquote(M.SCRIPT),
    opts.ip, opts.name, peer.share, opts.args or "")
  peer.pid, peer.guard = background(cmd, dir)
  peer.stdin = assert(io.open(dir .. "/in", "w")) -- waits until the peer's shell opens it
  peer.port = tonumber(peer:wait("listening on [%d.]+:(%d+)", "its port"))
  return peer
end

-- Stops every peer in the list (for the end of a test, however it ends).
function M.stop_all(list)
  for _, p in ipairs(list) do p:stop() end
end

-- Runs fn(peers) with a list that it fills; stops every peer it started
-- however fn ends.
function M.with_peers(fn)
  local list = {}
  local ok, err = pcall(fn, list)
  M.stop_all(list)
  if not ok then error(err, 0) end
end

-- ---- checks shared by the tests ------------------------------------------

-- n random bytes, as a string.
function M.random_bytes(n)
  local parts = {}
  for i = 1, n // 4096 do parts[i] = crypto.random(4096) end
  parts[#parts + 1] = crypto.random(n % 4096)
  return table.concat(parts)
end

-- Puts a file into a running peer's share the way a user would: written
-- under a hidden name, then renamed, so no scan sees half of it.
function M.drop_file(peer, name, data)
  t.writefile(peer.share .. "/.incoming", data)
  assert(os.rename(peer.share .. "/.incoming", peer.share .. "/" .. name))
end

-- No temporary file of a fetch is left in the peer's share.
function M.no_part(peer)
  for _, name in ipairs(peer:files()) do
    t.ok(not name:find("%.part$"), peer.name .. " holds a partial file " .. name)
  end
end

-- Waits until every peer in the list has joined with every other.
function M.all_joined(list)
  for _, a in ipairs(list) do
    for _, b in ipairs(list) do
      if a ~= b then a:wait("peer " .. b.name .. " joined", b.name .. " joining") end
    end
  end
end

-- A chat line typed at `from` is shown exactly once by every other peer
-- and not at all by `from`. A second line, typed after it at another peer,
-- is awaited everywhere first, so a late duplicate of the first line has
-- had every chance to arrive.
function M.chat_once(list, from, text)
  from:type(text)
  for _, p in ipairs(list) do
    if p ~= from then p:wait("%[" .. from.name .. "%] " .. text, "the chat line") end
  end
  local other = list[1] == from and list[2] or list[1]
  other:type("after " .. text)
  for _, p in ipairs(list) do
    if p ~= other then p:wait("%[" .. other.name .. "%] after " .. text, "the second line") end
  end
  for _, p in ipairs(list) do
    t.eq(p:count("[" .. from.name .. "] " .. text), p == from and 0 or 1, p.name .. " shows the line")
  end
end

-- ---- speaking the protocol by hand (for hostile input) ------------------

-- A TCP connection to a peer from `ip`, with a 10 s timeout per wait.
function M.connect(peer, ip)
  local c = socket.tcp()
  c:settimeout(10)
  if ip then assert(c:bind(ip, 0)) end
  assert(c:connect(peer.ip, peer.port))
  return c
end

function M.send(c, msg) return c:send(json.encode(msg) .. "\n") end

-- The next frame that is not a ping, decoded; nil and the error at the end.
function M.frame(c)
  while true do
    local line, err = c:receive("*l")
    if not line then return nil, err end
    local msg = json.decode(line)
    if msg.type ~= "ping" then return msg end
  end
end

-- Reads until the peer closes the connection; returns the error that ended
-- it ("closed" when the peer closed it).
function M.until_closed(c)
  while true do
    local line, err = c:receive("*l")
    if not line then return err end
  end
end

-- A connection that said hello as `name`: returns it and the peer's hello.
-- A task pings on it every 0.2 s until it closes, so the peer does not
-- forget it (the caller's waits let the task run).
function M.hello(peer, name, ip)
  local c = M.connect(peer, ip)
  M.send(c, {type = "hello", name = name, port = 9})
  local hello = assert(M.frame(c))
  require("task").spawn(function()
    while M.send(c, {type = "ping"}) do require("task").sleep(0.2) end
  end)
  return c, hello
end

return M
