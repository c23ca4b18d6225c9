-- p2p.lua: a peer of a decentralised network. Every peer is client and
-- server at once: it listens for other peers over TCP, finds them by UDP
-- announcements on the local network (or by --peer addresses given by
-- hand), shares the files of its --share folder, fetches the files it lacks
-- from whichever peer has them, and passes chat lines on, peer to peer.
-- There is no central server: stop any peer, the others go on.
--
--   netlua scripts/p2p.lua [--host IP] [--port P] [--share DIR] [--name N]
--          [--peer HOST:PORT ...] [--discovery broadcast|multicast|none]
--
-- Type a line to chat; /peers and /files print the peer's state; /quit
-- ends it. --status-port P serves the same as a web page. Everything runs
-- on one thread: one task per connection and one per job (announcing,
-- dialing, scanning the share, each fetch, the status page's http.server);
-- standard input is read by a second thread, which hands the lines over a
-- channel.
--
-- The wire protocol (README, "Decentralised mode", has it in full):
--   * A frame is one JSON object on one line ("\n" ends it; JSON escapes
--     every newline inside strings), at most MAX_FRAME bytes; its "type"
--     says what it is.
--   * A peer connection starts with "hello" both ways, then carries
--     "index" (the files a peer has), "chat" and "ping" frames.
--   * A fetch is a connection of its own: the first frame is "get"
--     (name, sha256, offset); the answer is one "file" frame (size) and
--     then exactly that many raw bytes, or an "error" frame.
--   * Discovery: each peer sends an "announce" datagram (its name and TCP
--     port) every --interval seconds; the sender's address is the
--     datagram's.
local HERE = (arg and arg[0] and arg[0]:match("^(.*)/[^/]*$")) or "."
package.path = HERE .. "/?.lua;" .. package.path

local socket = require "socket"
local task = require "task"
local thread = require "thread"
local json = require "json"
local crypto = require "crypto"
local time = require "time"
local cli = require "cli"
local filenames = require "filenames"
local lfs = require "lfs"

local MAX_FRAME = 64 * 1024  -- the longest frame a peer accepts, in bytes
local CHUNK = 64 * 1024      -- file bytes are read and written in pieces this big
local MAX_FILES = 1000       -- the most files an index may list
local MAX_TEXT = 2000        -- the longest chat line
local OUTBOX = 256           -- frames queued for one peer before it counts as stuck
local SEEN = 4096            -- chat ids remembered, to show each line once
local MAX_HEARD = 256        -- addresses heard announcing kept at once
local MULTICAST_GROUP = "239.255.77.77"

-- ---- options ------------------------------------------------------------

local SIZE_UNITS = {[""] = 1, K = 1024, M = 1024 ^ 2, G = 1024 ^ 3, T = 1024 ^ 4}

local function size(s)
  local n, unit = s:match("^(%d+)([KMGT]?)$")
  if n then return math.tointeger(tonumber(n) * SIZE_UNITS[unit]) end
  return nil, "a size in bytes, or with K, M, G or T"
end

-- "HOST:PORT" -> {host=, port=}; every --peer adds one to the same list.
local hand_peers = {}
local function peer_address(s)
  local host, port = s:match("^%[(.+)%]:(%d+)$")
  if not host then host, port = s:match("^([^:]+):(%d+)$") end
  port = math.tointeger(tonumber(port))
  if not host or not port or port < 1 or port > 65535 then return nil, "HOST:PORT" end
  hand_peers[#hand_peers + 1] = {host = host, port = port}
  return hand_peers
end

local function discovery(s)
  if s == "broadcast" or s == "multicast" or s == "none" then return s end
  return nil, "broadcast, multicast or none"
end

local SPEC = {
  usage = "netlua scripts/p2p.lua [--host IP] [--port P] [--share DIR] [--name N]\n" ..
    "       [--peer HOST:PORT ...] [--discovery broadcast|multicast|none]",
  help = "A peer: shares the files of --share with the peers it finds, fetches theirs,\n" ..
    "and passes chat lines on. Type a line to chat, /peers, /files, /quit.\n\n" ..
    "  --host IP            the address to listen on (default 0.0.0.0)\n" ..
    "  --port P             the TCP port for peers (default 6800; 0: any free port)\n" ..
    "  --share DIR          the folder to share and fetch into (default ./share)\n" ..
    "  --name N             this peer's name (default peer- and 8 random hex digits)\n" ..
    "  --peer HOST:PORT     a peer to connect to (repeat for more)\n" ..
    "  --discovery D        broadcast, multicast or none (default broadcast)\n" ..
    "  --broadcast IP       where broadcast announcements go (default 127.255.255.255;\n" ..
    "                       on a LAN, its broadcast address, as `ip -4 addr` shows after brd)\n" ..
    "  --discovery-port P   the UDP port of announcements (default 6801)\n" ..
    "  --interval S         seconds between announcements, pings, scans (default 1)\n" ..
    "  --forget S           seconds of silence before a peer is forgotten (default 5)\n" ..
    "  --max-file N         the largest file accepted (default 4G)\n" ..
    "  --max-conns N        connections at once (default 64)\n" ..
    "  --jobs N             fetches at once (default 4)\n" ..
    "  --rate N             bytes per second each upload is held to (default: no limit)\n" ..
    "  --status-port P      serve a status page (and /status.json) on this port of --host\n" ..
    "                       (127.0.0.1 when --host is 0.0.0.0; 0: any free port, printed)\n",
  options = {host = {"host", "0.0.0.0"}, port = {"port", 6800}, share = {"text", "./share"},
    name = {"text"}, peer = {peer_address, hand_peers}, discovery = {discovery, "broadcast"},
    broadcast = {"host", "127.255.255.255"},
    ["discovery-port"] = {"peer_port", 6801}, interval = {"seconds", 1}, forget = {"seconds", 5},
    ["max-file"] = {size, 4 * 1024 ^ 3}, ["max-conns"] = {"count", 64}, jobs = {"count", 4},
    rate = {size}, ["status-port"] = {"port"}},
}

local o = cli.parse({...}, SPEC)
o.name = o.name or "peer-" .. crypto.hex(crypto.random(4))
if not o.name:match("^[%w._-]+$") or #o.name > 64 then
  cli.usage_error(SPEC, "--name must be 1 to 64 letters, digits, '.', '_' or '-', not '%s'", o.name)
end

io.stdout:setvbuf("line")
local function log(fmt, ...) print(string.format(fmt, ...)) end
local function now() return time.monotonic() end

-- ---- the state of this peer ------------------------------------------------

local peers = {}    -- name -> peer {name, host, port, sock, outbox, seen, index, dialer}
local dials = {}    -- "host:port" -> {host, port, by_hand, heard, busy, me}: where to connect
local files = {}    -- name -> {name, size, sha256, mtime}: what our share holds
local fetching = {} -- name -> {got = bytes so far}: the fetches in flight
local liars = {}    -- names of peers that served bytes that failed the hash
local served = {}   -- name -> the set of peers whose bytes its part file holds
local conns = 0     -- connections open now, of any kind

local function address(host, port) return cli.where(host, port) end

-- ---- frames -----------------------------------------------------------------

local function encode(msg) return json.encode(msg) .. "\n" end

-- The next frame from sock: a table with a string "type", or nil and why.
local function read_frame(sock)
  local line, err = sock:receive("*l")
  if not line then
    if err == "line too long" then return nil, "frame longer than " .. MAX_FRAME .. " bytes" end
    return nil, err
  end
  local ok, msg = pcall(json.decode, line)
  if not ok or type(msg) ~= "table" or type(msg.type) ~= "string" then
    return nil, "not a JSON object with a type: " .. string.format("%q", line:sub(1, 40))
  end
  return msg
end

-- Checks of what a frame carries; each returns nil and why when it is bad.
local function integer(v, lo, hi)
  v = math.type(v) == "float" and math.tointeger(v) or v
  if math.type(v) == "integer" and v >= lo and v <= hi then return v end
end

local function check_hello(msg)
  if type(msg.name) ~= "string" or not msg.name:match("^[%w._-]+$") or #msg.name > 64 then
    return nil, "hello without a proper name"
  end
  msg.port = integer(msg.port, 1, 65535)
  if not msg.port then return nil, "hello without a port" end
  return msg
end

-- An index entry is trusted only this far: a safe name, a size we accept,
-- a SHA-256 in hex. Anything else ends the connection.
local function check_entry(e)
  if type(e) ~= "table" then return nil, "an index entry that is not an object" end
  if not filenames.is_safe(e.name) then
    return nil, string.format("unsafe file name %q", tostring(e.name):sub(1, 80))
  end
  local n = integer(e.size, 0, math.maxinteger)
  if not n then return nil, "file " .. e.name .. " without a proper size" end
  if n > o["max-file"] then
    return nil, string.format("file %s of %d bytes is larger than --max-file (%d)", e.name, n, o["max-file"])
  end
  if type(e.sha256) ~= "string" or not e.sha256:match("^%x+$") or #e.sha256 ~= 64 then
    return nil, "file " .. e.name .. " without a SHA-256"
  end
  return {name = e.name, size = n, sha256 = e.sha256:lower()}
end

local function check_index(msg)
  if type(msg.files) ~= "table" or #msg.files > MAX_FILES then
    return nil, "an index that is not a list of at most " .. MAX_FILES .. " files"
  end
  local index = {}
  for _, e in ipairs(msg.files) do
    local entry, why = check_entry(e)
    if not entry then return nil, why end
    index[entry.name] = entry
  end
  return index
end

local function check_chat(msg)
  for _, k in ipairs({"id", "from", "text"}) do
    if type(msg[k]) ~= "string" then return nil, "chat without " .. k end
  end
  if #msg.id > 64 or #msg.from > 64 or #msg.text > MAX_TEXT then return nil, "chat too long" end
  return msg
end

-- ---- talking to peers ---------------------------------------------------------

-- Queues a frame for a peer; its writer task sends it. A peer that lets
-- OUTBOX frames pile up is stuck: its connection is closed.
local function queue(peer, msg)
  if not peer.outbox:send(msg, 0) then
    log("dropping %s: %d frames queued and not read", peer.name, OUTBOX)
    peer.sock:close()
  end
end

local function to_all(msg, except)
  for _, peer in pairs(peers) do
    if peer ~= except then queue(peer, msg) end
  end
end

local function index_msg()
  local list = {}
  for _, f in pairs(files) do list[#list + 1] = {name = f.name, size = f.size, sha256 = f.sha256} end
  table.sort(list, function(a, b) return a.name < b.name end)
  return {type = "index", files = list}
end

-- Sends what the outbox holds; a ping when nothing was sent for an
-- interval, so the other side knows we are alive.
local function writer(sock, outbox)
  while true do
    local msg, err = outbox:recv(o.interval)
    if err == "closed" then break end
    if not sock:send(encode(msg or {type = "ping"})) then break end
  end
end

-- Chat ids already shown: a set and a ring of the same ids, so the oldest
-- is forgotten once SEEN are held.
local seen, seen_ring, seen_next = {}, {}, 1
local function first_time(id)
  if seen[id] then return false end
  local old = seen_ring[seen_next]
  if old then seen[old] = nil end
  seen_ring[seen_next], seen[id] = id, true
  seen_next = seen_next % SEEN + 1
  return true
end

-- Text from a peer as it may be shown: control characters (a terminal's
-- escape sequences among them) become "?".
local function printable(s) return (s:gsub("%c", "?")) end

-- Gossip: a chat line is shown once and passed on to every other peer.
local function on_chat(peer, msg)
  if not first_time(msg.id) then return end
  log("[%s] %s", printable(msg.from), printable(msg.text))
  to_all({type = "chat", id = msg.id, from = msg.from, text = msg.text}, peer)
end

local function say(text)
  local id = crypto.hex(crypto.random(8))
  first_time(id)
  to_all({type = "chat", id = id, from = o.name, text = text})
end

-- Which of two connections to one peer stays: the one dialed by the peer
-- whose name sorts first. Both ends decide the same way.
local function keeps(new, old)
  local keeper = o.name < new.name and o.name or new.name
  return new.dialer == keeper and old.dialer ~= keeper
end

-- Enters a peer that said hello into the table, or says why not.
local function admit(peer)
  if peer.name == o.name then return nil, "that is this peer" end
  if liars[peer.name] then return nil, "it served bytes that failed the SHA-256 check" end
  local old = peers[peer.name]
  if old then
    if not keeps(peer, old) then return nil, "already connected" end
    old.replaced = true
    old.sock:close()
  end
  peers[peer.name] = peer
  if not old then log("peer %s joined from %s", peer.name, address(peer.host, peer.port)) end
  return true
end

-- The fetcher waits on this between its rounds; a new index wakes it, so a
-- fetch starts as soon as a file is offered.
local fetcher_poked = thread.channel(1)
local function poke_fetcher() fetcher_poked:send(true, 0) end

local function on_frame(peer, msg)
  peer.seen = now()
  if msg.type == "index" then
    local index, why = check_index(msg)
    if not index then return nil, why end
    peer.index = index
    poke_fetcher()
  elseif msg.type == "chat" then
    local chat, why = check_chat(msg)
    if not chat then return nil, why end
    on_chat(peer, chat)
  elseif msg.type ~= "ping" then
    return nil, "unknown frame type " .. string.format("%q", msg.type:sub(1, 20))
  end
  return true
end

-- A peer connection after its hello: frames until it closes, falls
-- silent for --forget seconds, or sends something it must not.
local function peer_session(sock, ip, hello, dialer, outbox)
  local peer = {name = hello.name, host = ip, port = hello.port, sock = sock, seen = now(),
    outbox = outbox, index = {}, dialer = dialer == "us" and o.name or hello.name}
  local ok, why = admit(peer)
  if not ok then return log("closing connection with %s (%s): %s", peer.name, ip, why) end
  queue(peer, index_msg())
  local err
  while true do
    local msg
    msg, err = read_frame(sock)
    if not msg then break end
    ok, err = on_frame(peer, msg)
    if not ok then break end
  end
  if peers[peer.name] == peer then peers[peer.name] = nil end
  if not peer.replaced then
    if err == "timeout" then err = string.format("silent for %g s", o.forget) end
    log("peer %s left (%s)", peer.name, err)
  end
end

-- ---- serving files ----------------------------------------------------------

local function error_reply(sock, text)
  sock:send(encode({type = "error", text = text}))
end

-- Answers one "get": a "file" frame with the number of bytes that follow,
-- then the bytes from the asked offset, at most --rate bytes a second.
local function serve_file(sock, ip, msg)
  local f = type(msg.name) == "string" and files[msg.name]
  if not f or msg.sha256 ~= f.sha256 then
    log("%s asked for %q, which we do not have", ip, tostring(msg.name):sub(1, 80))
    return error_reply(sock, "no such file")
  end
  local offset = integer(msg.offset, 0, f.size)
  if not offset then return error_reply(sock, "bad offset") end
  local fh = io.open(o.share .. "/" .. f.name, "rb")
  if not fh then return error_reply(sock, "cannot read the file") end
  fh:seek("set", offset)
  sock:send(encode({type = "file", name = f.name, size = f.size - offset}))
  local left = f.size - offset
  while left > 0 do
    local block = fh:read(math.min(CHUNK, left))
    if not block or not sock:send(block) then break end
    left = left - #block
    if o.rate then task.sleep(#block / o.rate) end
  end
  fh:close()
end

-- ---- connections ----------------------------------------------------------------

-- Every connection, in or out: the first frame says what it is. A "hello"
-- makes it a peer connection; a "get" (incoming only) a file transfer.
-- Returns the name the other side said hello with, if it did.
local function connection(sock, dialer)
  local ip, port = sock:getpeername()
  local where = address(ip, port)
  sock:setoption("max-line", MAX_FRAME)
  sock:settimeout(o.forget)
  local outbox = thread.channel(OUTBOX)
  local w = task.spawn(writer, sock, outbox)
  if dialer == "us" then outbox:send({type = "hello", name = o.name, port = o.bound_port}) end
  local msg, err = read_frame(sock)
  if msg and msg.type == "hello" then msg, err = check_hello(msg) end
  if msg and msg.type == "hello" then
    if dialer ~= "us" then outbox:send({type = "hello", name = o.name, port = o.bound_port}) end
    peer_session(sock, ip, msg, dialer, outbox)
  elseif msg and msg.type == "get" and dialer ~= "us" then
    outbox:close()
    w:join()
    serve_file(sock, ip, msg)
  elseif msg then
    log("closing connection from %s: expected hello or get, got %q", where, msg.type:sub(1, 20))
  else
    log("closing connection from %s: %s", where, err)
  end
  sock:close()
  outbox:close()
  w:join()
  return msg and msg.type == "hello" and msg.name
end

-- Runs a connection that `conns` counts already (it is counted as soon as
-- it is accepted or dialed, before its task runs); returns what
-- connection returns.
local function run(sock, dialer)
  local ok, name = pcall(connection, sock, dialer)
  conns = conns - 1
  if not ok and name == "interrupted" then error(name, 0) end -- Ctrl-C ends the peer
  if not ok then log("connection failed: %s", tostring(name)) end
  return ok and name
end

local function accept_loop(server)
  while true do
    local sock = server:accept()
    if sock and conns >= o["max-conns"] then
      log("refusing %s: already %d connections (--max-conns)", address(sock:getpeername()), conns)
      sock:close()
    elseif sock then
      conns = conns + 1
      task.spawn(run, sock, "them")
    end
  end
end

-- True when some peer in the table listens at host:port.
local function connected(d)
  for _, peer in pairs(peers) do
    if peer.host == d.host and peer.port == d.port then return true end
  end
  return false
end

-- A TCP socket whose connections come from our --host, so the other side
-- sees the address we listen on.
local function new_tcp()
  local sock = socket.tcp()
  sock:settimeout(o.forget)
  if o.host ~= "0.0.0.0" then assert(sock:bind(o.host, 0)) end
  return sock
end

-- Connects to an address we know of. One that turns out to be this very
-- peer (a --peer pointing to ourselves) is not tried again.
local function dial(d)
  local sock = new_tcp()
  local ok, err = sock:connect(d.host, d.port)
  if ok then
    conns = conns + 1
    d.me = run(sock, "us") == o.name
  else
    sock:close()
    if d.by_hand and d.said ~= err then log("cannot reach %s: %s", address(d.host, d.port), err) end
    d.said = err
  end
  d.busy = false
end

-- The dialer: every interval, connects to each address we know of that no
-- peer in the table has: --peer ones always, discovered ones while they
-- keep announcing. Of two peers that heard each other, the one whose name
-- sorts first waits to be dialed, so they do not dial each other at once.
-- Discovered addresses silent for --forget are dropped.
local function dialer()
  for _, p in ipairs(hand_peers) do
    dials[address(p.host, p.port)] = {host = p.host, port = p.port, by_hand = true}
  end
  while true do
    for key, d in pairs(dials) do
      if not d.by_hand and now() - d.heard > o.forget then
        dials[key] = nil
      elseif not d.busy and not connected(d) and not d.me and not (d.name and d.name < o.name) then
        d.busy = true
        task.spawn(dial, d)
      end
    end
    task.sleep(o.interval)
  end
end

-- ---- discovery ------------------------------------------------------------------

local function discovery_target()
  if o.discovery == "multicast" then return MULTICAST_GROUP end
  return o.broadcast
end

-- Sends "announce" every interval, from our own address, so receivers
-- learn where we are from the datagram itself.
local function announcer()
  local udp = socket.udp()
  if o.host ~= "0.0.0.0" then assert(udp:setsockname(o.host, 0)) end
  if o.discovery == "broadcast" then
    udp:setoption("broadcast", true)
  else
    udp:setoption("ip-multicast-if", o.host ~= "0.0.0.0" and o.host or "127.0.0.1")
    udp:setoption("ip-multicast-loop", true)
  end
  local target = discovery_target()
  local datagram = json.encode({type = "announce", name = o.name, port = o.bound_port})
  while true do
    udp:sendto(datagram, target, o["discovery-port"])
    task.sleep(o.interval)
  end
end

-- How many addresses we know of from announcements (not by --peer).
local function heard_count()
  local n = 0
  for _, d in pairs(dials) do
    if not d.by_hand then n = n + 1 end
  end
  return n
end

-- An announcement adds or refreshes the address it came from. At most
-- MAX_HEARD are kept: datagrams are cheap to forge.
local function on_announce(data, ip)
  local ok, msg = pcall(json.decode, data)
  if not ok or type(msg) ~= "table" or msg.type ~= "announce" or not check_hello(msg) then return end
  if msg.name == o.name then return end
  local key = address(ip, msg.port)
  if not dials[key] and heard_count() >= MAX_HEARD then return end
  local d = dials[key] or {host = ip, port = msg.port}
  d.heard, d.name = now(), msg.name
  dials[key] = d
end

-- Listens for announcements on the discovery port (every peer of this
-- machine binds it: SO_REUSEADDR lets them share it).
local function listener()
  local udp = socket.udp()
  udp:setoption("reuseaddr", true)
  local ok, err = udp:setsockname("0.0.0.0", o["discovery-port"])
  if not ok then return log("no discovery: cannot bind UDP port %d: %s", o["discovery-port"], err) end
  if o.discovery == "multicast" then
    udp:setoption("ip-add-membership", {multiaddr = MULTICAST_GROUP,
      interface = o.host ~= "0.0.0.0" and o.host or "127.0.0.1"})
  end
  while true do
    local data, ip = udp:receivefrom(MAX_FRAME)
    if data then on_announce(data, ip) end
  end
end

-- ---- the share folder -----------------------------------------------------------

local function quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- The SHA-256 (hex) of the file at path, read a block at a time; the
-- other tasks run between blocks.
local function sha256_file(path, h)
  h = h or crypto.hash("sha256")
  local fh = io.open(path, "rb")
  if not fh then return nil end
  for block in fh:lines(1 << 20) do
    h:update(block)
    task.yield()
  end
  fh:close()
  return h
end

-- The size and modification time of share/NAME when it is a regular file
-- (not a link, as find -type f), else nil.
local function stat_file(name)
  local a = lfs.symlinkattributes(o.share .. "/" .. name)
  if a and a.mode == "file" then return {size = a.size, mtime = a.modification} end
end

-- The regular files in the share: name -> {size, mtime}. Hidden files
-- (our temporary ".NAME.part") and unsafe names are not shared. A folder
-- that cannot be read lists nothing.
local function list_share()
  local found = {}
  local ok, names, dir = pcall(lfs.dir, o.share)
  if not ok then return found end
  for name in names, dir do
    if filenames.is_safe(name) then found[name] = stat_file(name) end
  end
  return found
end

-- Whether a file whose mtime (whole seconds) is `mtime` may still change
-- without its mtime showing it: it was written this second or the last.
-- Such a file is hashed again at the next scan (as git treats a "racy"
-- index entry).
local function racy(mtime)
  return mtime >= os.time() - 1
end

-- Brings `files` up to date with the folder; tells the peers when it changed.
local function scan()
  local changed = false
  for name, st in pairs(list_share()) do
    local f = files[name]
    if not f or f.size ~= st.size or f.mtime ~= st.mtime or f.racy then
      local is_racy = racy(st.mtime) -- before the hash reads the file
      local h = sha256_file(o.share .. "/" .. name)
      if h then
        local sum = h:hexdigest()
        if not f or f.sha256 ~= sum or f.size ~= st.size then changed = true end
        files[name] = {name = name, size = st.size, mtime = st.mtime, sha256 = sum, racy = is_racy}
      end
    end
  end
  local still = list_share()
  for name in pairs(files) do
    if not still[name] then files[name], changed = nil, true end
  end
  if changed then to_all(index_msg()) end
end

local function scanner()
  while true do
    scan()
    task.sleep(o.interval)
  end
end

-- ---- fetching ---------------------------------------------------------------------

-- The peers that offer this exact file, the one that failed fewest times first.
local function sources(want)
  local list = {}
  for _, peer in pairs(peers) do
    local e = peer.index[want.name]
    if e and e.sha256 == want.sha256 and e.size == want.size and not liars[peer.name] then list[#list + 1] = peer end
  end
  table.sort(list, function(a, b)
    local fa, fb = want.failed[a.name] or 0, want.failed[b.name] or 0
    if fa ~= fb then return fa < fb end
    return a.name < b.name
  end)
  return list
end

local function file_size(path)
  local fh = io.open(path, "rb")
  if not fh then return 0 end
  local n = fh:seek("end")
  fh:close()
  return n
end

-- Reads the "file" answer and its bytes into the part file, feeding the
-- hash. Returns true when all bytes came, or nil and why.
local function receive_into(sock, part, h, want, offset)
  local head, err = read_frame(sock)
  if not head then return nil, err end
  if head.type == "error" then return nil, "it answered: " .. tostring(head.text) end
  if head.type ~= "file" or integer(head.size, 0, math.maxinteger) ~= want.size - offset then
    return nil, "it answered something else than the file"
  end
  local fh = assert(io.open(part, "ab"))
  local left = want.size - offset
  while left > 0 do
    local block, rerr, partial = sock:receive(math.min(CHUNK, left))
    block = block or partial
    if block and #block > 0 then
      fh:write(block)
      h:update(block)
      left = left - #block
      fetching[want.name].got = want.size - left
    end
    if rerr then fh:close() return nil, rerr end
  end
  fh:close()
  return true
end

-- Accepts the part as NAME when its hash is right. When not, deletes it,
-- and drops the peer that served it. (If several served parts of it, the
-- hash cannot say which lied: they are only counted as failed, and the
-- next try starts from byte 0 with one of them.)
local function finish(want, part, h, from)
  local got = h:hexdigest()
  if got == want.sha256 then
    served[want.name] = nil
    os.rename(part, o.share .. "/" .. want.name)
    log("got %s (%d bytes, SHA-256 verified) from %s", want.name, want.size, from)
    local st = stat_file(want.name)
    files[want.name] = {name = want.name, size = want.size, sha256 = got, mtime = st and st.mtime}
    to_all(index_msg())
    return true
  end
  os.remove(part)
  local names = {}
  for name in pairs(served[want.name]) do names[#names + 1] = name end
  table.sort(names)
  served[want.name] = nil
  local why = string.format("failed the SHA-256 check (got %s, want %s)", got:sub(1, 12), want.sha256:sub(1, 12))
  if #names > 1 then
    for _, name in ipairs(names) do want.failed[name] = (want.failed[name] or 0) + 1 end
    return log("%s from %s %s: starting again from byte 0", want.name, table.concat(names, " and "), why)
  end
  log("%s from %s %s: dropping %s", want.name, from, why, from)
  liars[from] = true
  if peers[from] then peers[from].sock:close() end
end

-- One try at a file from one peer, going on from what the part file holds.
local function fetch_from(want, peer)
  local part = o.share .. "/." .. want.name .. ".part"
  local offset = file_size(part)
  if offset > want.size then os.remove(part) offset = 0 end
  if offset == 0 then
    served[want.name] = {}
  elseif not served[want.name] then -- a part file an earlier run left
    served[want.name] = {["an earlier run"] = true}
  end
  local h = crypto.hash("sha256")
  if offset > 0 and not sha256_file(part, h) then return nil, "cannot read " .. part end
  local sock = new_tcp()
  local ok, err = sock:connect(peer.host, peer.port)
  if ok then
    sock:setoption("max-line", MAX_FRAME)
    log("fetching %s from %s%s", want.name, peer.name, offset > 0 and " from byte " .. offset or "")
    served[want.name][peer.name] = true
    ok, err = sock:send(encode({type = "get", name = want.name, sha256 = want.sha256, offset = offset}))
    if ok then ok, err = receive_into(sock, part, h, want, offset) end
  end
  sock:close()
  if not ok then return nil, err end
  return finish(want, part, h, peer.name)
end

-- A fetch job: tries the peers that offer the file until it is here and
-- verified or nobody offers it any more.
local function fetch(want, jobs)
  jobs:with(function()
    while not files[want.name] do
      local peer = sources(want)[1]
      if not peer then break end
      local ok, err = fetch_from(want, peer)
      if ok == nil and err then
        want.failed[peer.name] = (want.failed[peer.name] or 0) + 1
        log("fetch of %s from %s stopped at byte %d: %s", want.name, peer.name,
          fetching[want.name].got, err)
        task.sleep(o.interval)
      end
    end
  end)
  fetching[want.name] = nil
end

-- A fetch job for each file a peer offers that we lack: every interval,
-- and at once when an index arrives (poke_fetcher).
local function fetcher()
  local jobs = task.semaphore(o.jobs)
  while true do
    for _, peer in pairs(peers) do
      for name, e in pairs(peer.index) do
        if not files[name] and not fetching[name] then
          fetching[name] = {got = 0, size = e.size}
          task.spawn(fetch, {name = name, size = e.size, sha256 = e.sha256, failed = {}}, jobs)
        end
      end
    end
    fetcher_poked:recv(o.interval)
  end
end

-- ---- standard input ---------------------------------------------------------------

-- The peer's state as data, for /peers, /files and the status page: lists
-- marked as JSON arrays, so an empty one is [] in status.json.

-- The peers connected, by name, then the addresses known but not connected.
local function peer_status()
  local list, waiting = json.array(), json.array()
  for name, p in pairs(peers) do
    list[#list + 1] = {name = name, address = address(p.host, p.port), last_seen = now() - p.seen}
  end
  table.sort(list, function(a, b) return a.name < b.name end)
  for key, d in pairs(dials) do
    if not connected(d) and not d.me then
      waiting[#waiting + 1] = {address = key, source = d.by_hand and "--peer" or "announced"}
    end
  end
  table.sort(waiting, function(a, b) return a.address < b.address end)
  return list, waiting
end

-- The files held, by name, and the fetches in flight.
local function file_status()
  local held, inflight = json.array(), json.array()
  for _, f in pairs(files) do held[#held + 1] = {name = f.name, size = f.size, sha256 = f.sha256} end
  table.sort(held, function(a, b) return a.name < b.name end)
  for name, job in pairs(fetching) do inflight[#inflight + 1] = {name = name, got = job.got, size = job.size} end
  table.sort(inflight, function(a, b) return a.name < b.name end)
  return held, inflight
end

local function status()
  local list, waiting = peer_status()
  local held, inflight = file_status()
  return {name = o.name, peers = list, not_connected = waiting, files = held, fetching = inflight}
end

-- /peers: the peer table, then addresses heard of but not connected.
local function show_peers()
  local list, waiting = peer_status()
  log("peers (%d):", #list)
  for _, p in ipairs(list) do log("  %s at %s, last seen %.1f s ago", p.name, p.address, p.last_seen) end
  for _, d in ipairs(waiting) do
    log("  (not connected) %s, %s", d.address, d.source == "--peer" and "given by --peer" or "announced")
  end
end

-- /files: what we hold, what is on its way.
local function show_files()
  local held, inflight = file_status()
  log("files here (%d):", #held)
  for _, f in ipairs(held) do log("  %s  %d bytes  sha256 %s", f.name, f.size, f.sha256:sub(1, 16)) end
  for _, job in ipairs(inflight) do
    log("  fetching %s: %d of %d bytes so far", job.name, job.got, job.size)
  end
end

-- ---- the status page --------------------------------------------------------------

local function html_escape(v)
  return (tostring(v):gsub("[&<>\"]", {["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;"}))
end

-- One HTML table: a header row of `heads`, then a row per item of `rows`
-- with the fields `keys` (a function of the item, or a field name).
local function html_table(heads, rows, keys)
  local out = {"<table><tr><th>" .. table.concat(heads, "</th><th>") .. "</th></tr>"}
  for _, row in ipairs(rows) do
    local cells = {}
    for i, k in ipairs(keys) do
      cells[i] = html_escape(type(k) == "function" and k(row) or row[k])
    end
    out[#out + 1] = "<tr><td>" .. table.concat(cells, "</td><td>") .. "</td></tr>"
  end
  out[#out + 1] = "</table>"
  return table.concat(out, "\n")
end

-- The page: the same data as status.json, as tables; it reloads itself
-- every few seconds.
local function status_page()
  local s = status()
  local function ago(p) return string.format("%.1f s ago", p.last_seen) end
  local function short(f) return f.sha256:sub(1, 16) end
  return table.concat({
    "<!doctype html><html><head><meta charset=\"utf-8\">",
    "<meta http-equiv=\"refresh\" content=\"2\"><title>p2p " .. html_escape(s.name) .. "</title>",
    "<style>body{font-family:sans-serif}td,th{padding:0 1em;text-align:left}</style></head><body>",
    "<h1>peer " .. html_escape(s.name) .. "</h1>",
    "<h2>peers (" .. #s.peers .. ")</h2>",
    html_table({"name", "address", "last seen"}, s.peers, {"name", "address", ago}),
    "<h2>not connected (" .. #s.not_connected .. ")</h2>",
    html_table({"address", "from"}, s.not_connected, {"address", "source"}),
    "<h2>files here (" .. #s.files .. ")</h2>",
    html_table({"name", "bytes", "sha256"}, s.files, {"name", "size", short}),
    "<h2>fetching (" .. #s.fetching .. ")</h2>",
    html_table({"name", "bytes so far", "of"}, s.fetching, {"name", "got", "size"}),
    "<p><a href=\"/status.json\">status.json</a></p></body></html>\n",
  }, "\n")
end

-- Serves the page at / and the data at /status.json, in a task of this
-- thread: the handlers read the tables the other tasks keep.
local function status_server()
  local http = require "http.server"
  local host = o.host == "0.0.0.0" and "127.0.0.1" or o.host
  local srv, err = http{host = host, port = o["status-port"]}
  if not srv then cli.fail("cannot serve the status page on %s: %s", address(host, o["status-port"]), err) end
  srv:route("GET", "/", function()
    return 200, status_page(), {["Content-Type"] = "text/html; charset=utf-8"}
  end)
  srv:route("GET", "/status.json", function() return status() end)
  log("status page at %s/", srv.url)
  task.spawn(function() srv:serve() end)
end

local function command(line)
  if line == "/peers" then show_peers()
  elseif line == "/files" then show_files()
  elseif line == "/quit" then
    log("bye")
    os.exit(0)
  elseif line:match("^/") then log("commands: /peers, /files, /quit; anything else is chat")
  elseif line ~= "" then say(line:sub(1, MAX_TEXT))
  end
end

-- Standard input blocks, so a daemon thread reads it and hands each line
-- to this task through a channel. At its end the peer goes on. While that
-- thread waits for a line it holds stdin's lock, and io.popen (which
-- flushes every stream first) would wait for it: this script uses none.
local function console()
  local typed = thread.channel()
  thread.spawn{function(ch)
    for line in io.lines() do ch:send(line) end
    ch:close()
  end, typed, daemon = true, name = "stdin"}
  for line in typed:iter() do command((line:gsub("\r$", ""))) end
end

-- ---- main -------------------------------------------------------------------------

local function main()
  if os.execute("mkdir -p " .. quote(o.share)) ~= true then cli.fail("cannot create %s", o.share) end
  local server, err, why = socket.bind(o.host, o.port, 64)
  if not server then cli.fail("cannot listen on %s: %s", address(o.host, o.port), cli.reason(err, why)) end
  local ip, port = server:getsockname()
  o.bound_port = tonumber(port)
  log("listening on %s as %s, sharing %s", address(ip, port), o.name, o.share)
  if o["status-port"] then status_server() end
  scan()
  task.spawn(scanner)
  task.spawn(dialer)
  task.spawn(fetcher)
  if o.discovery ~= "none" then
    task.spawn(listener)
    task.spawn(announcer)
  end
  task.spawn(console)
  local _, err = pcall(accept_loop, server)
  if err == "interrupted" then log("stopped") end -- Ctrl-C, or SIGTERM
  error(err, 0) -- netlua ends with 128 + the signal's number (130, 143)
end

main()
