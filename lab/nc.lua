-- netlua -m nc: netcat: a TCP or UDP client, or a listener for one peer; stdin to the peer, the peer to stdout
--
-- Standard input goes to the peer while what the peer sends goes to standard
-- output, at the same time: a daemon thread reads standard input (reading
-- it blocks) and hands what it read over a bounded channel; on the main
-- thread one task sends it on and another prints what arrives, each
-- suspended only by its own waits.
local cli = require "cli"
local socket = require "socket"
local task = require "task"
local thread = require "thread"

local spec = {
  usage = "netlua -m nc [-u] [-v] [-w S] [--raw] HOST PORT | netlua -m nc -l [-u] [-v] [-w S] [--raw] [HOST] PORT",
  help = [[
Connects to HOST PORT (or with -l waits for one peer on HOST PORT), then
sends standard input to the peer and prints what the peer sends, both at
once.

  -l, --listen   listen on HOST (default 127.0.0.1; 0.0.0.0 or :: for other
                 machines) and PORT (0 picks a free one) and take one
                 connection; "listening on IP:PORT" and then "connection
                 from IP:PORT" are printed on stderr. With -u the peer is
                 whoever sent the last datagram: replies go there
  -u, --udp      UDP instead of TCP: each line (or --raw chunk) is one
                 datagram, each datagram received is printed as it came
  -v, --verbose  print "connected to IP:PORT" on stderr as a client
  -w, --wait S   give up connecting (with -l: waiting for the peer) after S
                 seconds, and end (status 0) once nothing was sent or
                 received for S seconds
  --raw          send standard input as it comes, in the pieces the
                 terminal or pipe hands over, instead of line by line

Line mode (the default): a line is sent when its newline is read (Enter);
a last line without a newline at the end of input is sent as it is, with
no newline added. What the peer sends is printed as it arrives, in both
modes.

End of input (Ctrl-D, or the end of a pipe): over TCP the sending side of
the connection is shut down (the peer reads end of file) and nc goes on
printing until the peer closes the connection. When the peer closes, nc
exits 0. UDP has no close: after the end of input nc goes on printing
datagrams until -w S passes without any (or until Ctrl-C).

Exit status: 0 when the peer closed (or -w ended a quiet connection), 1
for a failure (connection refused, unknown host, port in use, timeout),
each told on one line on stderr; 2 for bad usage.]],
  args = {{"first", "host"}, {"second", "host"}},
  options = {listen = {"switch"}, udp = {"switch"}, verbose = {"switch"},
    wait = {"seconds"}, raw = {"switch"}},
  short = {l = "listen", u = "udp", v = "verbose", w = "wait"},
}

-- ---- standard input -------------------------------------------------------

-- The stdin thread's function (a copy runs there, so it has no upvalues):
-- sends what standard input gives to `chunks`, a line at a time or, raw,
-- as much as can be read without waiting (at most 4096 bytes), and closes
-- `chunks` at the end of input.
local function read_stdin(chunks, raw)
  if not raw then
    for line in io.stdin:lines("L") do
      if not chunks:send(line) then return end
    end
    chunks:close()
    return
  end
  local sock = require "socket"
  local stdin = {getfd = function() return 0 end}
  io.stdin:setvbuf("no") -- each read(1) is one read(2): nothing hides in a buffer
  while true do
    local byte = io.stdin:read(1)
    if byte == nil then break end
    local piece = {byte}
    while #piece < 4096 and sock.select({stdin}, nil, 0)[1] do
      byte = io.stdin:read(1)
      if byte == nil then break end
      piece[#piece + 1] = byte
    end
    if not chunks:send(table.concat(piece)) then return end
    if byte == nil then break end
  end
  chunks:close()
end

-- Standard input, read by a daemon thread (one blocked reading a terminal
-- does not keep the program alive): {chunks = the channel of its pieces,
-- reader = the thread}.
local function start_stdin(raw)
  local chunks = thread.channel(16) -- bounded: a fast stdin waits for the peer
  local reader = thread.spawn{read_stdin, chunks, raw, daemon = true, name = "stdin"}
  return {chunks = chunks, reader = reader}
end

-- After the last piece: the reader closed the channel as its last act, so
-- it ends now; joined, it is not left behind finished.
local function end_of_input(input)
  input.reader:join()
end

-- ---- activity and -w --------------------------------------------------------

local last_activity = socket.gettime()

local function active()
  last_activity = socket.gettime()
end

-- With -w S: ends the program (status 0) once nothing moved for S seconds.
local function watch_idle(seconds)
  active()
  task.spawn(function()
    while true do
      local quiet = socket.gettime() - last_activity
      if quiet >= seconds then os.exit(0) end
      task.sleep(seconds - quiet)
    end
  end)
end

local function note(fmt, ...)
  io.stderr:write(string.format(fmt, ...), "\n")
end

local function output(data)
  active()
  io.stdout:write(data)
end

-- ---- TCP --------------------------------------------------------------------

-- The TCP connection, or one line saying why not and status 1.
local function tcp_connect(opts)
  local sock = socket.tcp()
  sock:settimeout(opts.wait)
  local ok, err = sock:connect(opts.host, opts.port)
  if not ok then cli.fail("cannot connect to %s: %s", cli.where(opts.host, opts.port), err) end
  sock:settimeout(nil)
  if opts.verbose then note("connected to %s", cli.where(sock:getpeername())) end
  return sock
end

local function tcp_accept(opts)
  local server, err = socket.bind(opts.host, opts.port, 1)
  if not server then cli.fail("cannot listen on %s: %s", cli.where(opts.host, opts.port), err) end
  note("listening on %s", cli.where(server:getsockname()))
  server:settimeout(opts.wait)
  local sock, aerr = server:accept()
  if not sock then cli.fail("no connection on %s: %s", cli.where(server:getsockname()), aerr) end
  server:close()
  sock:settimeout(nil)
  note("connection from %s", cli.where(sock:getpeername()))
  return sock
end

-- Sends every chunk of standard input; at its end shuts the sending side.
local function tcp_send_input(sock, input)
  for chunk in input.chunks:iter() do
    local ok, err = sock:send(chunk)
    if err == "closed" then return end -- the peer is gone: the printer ends
    if not ok then cli.fail("send failed: %s", err) end
    active()
  end
  end_of_input(input)
  sock:shutdown("send")
end

-- Prints what arrives until the peer closes.
local function tcp_print_peer(sock)
  while true do
    local data, err = sock:recv(8192)
    if not data then
      if err == "closed" then return end
      cli.fail("receive failed: %s", err)
    end
    output(data)
  end
end

local function run_tcp(opts)
  local sock = opts.listen and tcp_accept(opts) or tcp_connect(opts)
  local input = start_stdin(opts.raw)
  if opts.wait then watch_idle(opts.wait) end
  task.spawn(tcp_send_input, sock, input)
  local printer = task.spawn(tcp_print_peer, sock)
  printer:join()
  os.exit(0)
end

-- ---- UDP --------------------------------------------------------------------

-- The UDP socket: connected to the peer, or (-l) bound to HOST PORT.
local function udp_socket(opts)
  local sock = assert(socket.udp())
  if opts.listen then
    local ok, err = sock:setsockname(opts.host, opts.port)
    if not ok then cli.fail("cannot listen on %s: %s", cli.where(opts.host, opts.port), err) end
    note("listening on %s", cli.where(sock:getsockname()))
  else
    local ok, err = sock:setpeername(opts.host, opts.port)
    if not ok then cli.fail("cannot send to %s: %s", cli.where(opts.host, opts.port), err) end
    if opts.verbose then note("connected to %s", cli.where(sock:getpeername())) end
  end
  return sock
end

-- Sends every chunk of standard input to the peer: `to()` gives its
-- address, or nothing for the connected socket of a client.
local function udp_send_input(sock, input, to)
  for chunk in input.chunks:iter() do
    local ip, port = to()
    local ok, err
    if ip then ok, err = sock:sendto(chunk, ip, port) else ok, err = sock:send(chunk) end
    if not ok then cli.fail("send failed: %s", err) end
    active()
  end
  end_of_input(input)
end

-- A client sends from the start; a listener once the first datagram came,
-- and always to the address of the last one.
local function run_udp(opts)
  local sock = udp_socket(opts)
  local input = start_stdin(opts.raw)
  local peer_ip, peer_port
  local function to() return peer_ip, peer_port end
  if not opts.listen then
    task.spawn(udp_send_input, sock, input, to)
    if opts.wait then watch_idle(opts.wait) end
  else
    sock:settimeout(opts.wait)
  end
  while true do
    local data, ip, port
    if opts.listen then data, ip, port = sock:receivefrom(65535) else data, ip = sock:receive(65535) end
    if not data then
      if opts.listen and not peer_ip then cli.fail("no datagram on %s: %s", cli.where(sock:getsockname()), ip) end
      cli.fail("receive failed: %s", ip)
    end
    if opts.listen and not peer_ip then
      note("connection from %s", cli.where(ip, port))
      sock:settimeout(nil)
      task.spawn(udp_send_input, sock, input, to)
      if opts.wait then watch_idle(opts.wait) end
    end
    if opts.listen then peer_ip, peer_port = ip, port end
    output(data)
  end
end

-- ---- the command line -------------------------------------------------------

local opts = cli.parse({...}, spec)
if opts.second then
  opts.host, opts.port = opts.first, opts.second
elseif opts.listen and opts.first then
  opts.host, opts.port = "127.0.0.1", opts.first
else
  cli.usage_error(spec, opts.first and "a PORT is needed" or "HOST and PORT are needed")
end
local port, must = cli.kinds[opts.listen and "port" or "peer_port"](opts.port)
if not port then cli.usage_error(spec, "PORT must be %s, not '%s'", must, opts.port) end
opts.port = port
io.stdout:setvbuf("no")
if opts.udp then run_udp(opts) else run_tcp(opts) end
