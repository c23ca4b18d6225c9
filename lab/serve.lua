-- netlua -m serve: classic test servers: echo, chargen, daytime, time, http-echo, chat ...
-- The lab's fixture servers, one per run: the small TCP and UDP services of
-- RFCs 862-868 (echo, discard, chargen, qotd, daytime, time), an HTTP server
-- that answers each request with what it received (http-echo), the chat room
-- of scripts/chatroom.lua and the image API of scripts/imageapi.lua. Each
-- prints "listening on IP:PORT (...)" as its first line on stdout, so a test
-- or a learner knows the port (0 picks one); what happens goes to stderr.
-- Every TCP client is a task on the main thread's loop: a client that does
-- not read makes its own sends wait, nothing else.
local cli = require "cli"
local socket = require "socket"
local task = require "task"

local MAX_CLIENTS = 1000 -- TCP clients at once; more are closed at once
local PIECE = 4096       -- the most an echo or discard reads at a time
local SECONDS_1900_1970 = 2208988800

-- ---- what each service sends ------------------------------------------------

-- RFC 864's pattern: line k holds the 72 printable ASCII characters from
-- the k-th one on (wrapping round the 95 of them), then CR LF; after 95
-- lines it starts again. CYCLE is those 95 lines.
local function chargen_cycle()
  local chars, lines = {}, {}
  for c = 32, 126 do chars[#chars + 1] = string.char(c) end
  local twice = table.concat(chars):rep(2)
  for k = 1, 95 do lines[k] = twice:sub(k, k + 71) .. "\r\n" end
  return table.concat(lines)
end
local CYCLE = chargen_cycle()
local LINE = 74

local QUOTES = {
  "The network is reliable. (the first fallacy of distributed computing)",
  "Be conservative in what you send, be liberal in what you accept. (RFC 760)",
  "We reject kings, presidents and voting. We believe in rough consensus and running code. (David Clark)",
  "There are two hard things in computer science: cache invalidation, naming things, and off-by-one errors.",
}
local quotes_sent = 0

local function daytime()
  return os.date("!%A, %B %d, %Y %H:%M:%S-UTC\r\n")
end

local function qotd()
  quotes_sent = quotes_sent + 1
  return QUOTES[(quotes_sent - 1) % #QUOTES + 1] .. "\r\n"
end

-- RFC 868: seconds since 1900-01-01 00:00 UTC, 32 bits, big-endian.
local function time_bytes()
  return string.pack(">I4", (os.time() + SECONDS_1900_1970) % (1 << 32))
end

-- ---- TCP services: each returns why its client's session ended ------------

local tcp = {}

function tcp.echo(client)
  while true do
    local data, err = client:recv(PIECE)
    if not data then return err end
    local ok, send_err = client:send(data) -- waits while the client does not read
    if not ok then return send_err end
  end
end

function tcp.discard(client)
  while true do
    local data, err = client:recv(PIECE)
    if not data then return err end
  end
end

function tcp.chargen(client)
  while true do
    local ok, err = client:send(CYCLE) -- waits while the client does not read
    if not ok then return err end
  end
end

-- A service that sends one reply and closes: daytime, qotd, time.
local function once(make)
  return function(client)
    client:settimeout(10)
    local ok, err = client:send(make())
    return ok and "done" or err
  end
end
tcp.daytime, tcp.qotd, tcp.time = once(daytime), once(qotd), once(time_bytes)

-- ---- UDP services: the reply to one datagram, or nil --------------------------

local udp = {}
local datagrams = 0

function udp.echo(data) return data end
function udp.discard() return nil end
function udp.daytime() return daytime() end
function udp.qotd() return qotd() end
function udp.time() return time_bytes() end

-- RFC 864 over UDP: between 0 and 512 characters of the pattern, each
-- datagram starting one line further on.
function udp.chargen()
  datagrams = datagrams + 1
  local start = (datagrams - 1) % 95 * LINE
  return (CYCLE .. CYCLE):sub(start + 1, start + math.random(0, 512))
end

-- ---- serving ---------------------------------------------------------------

local function log(fmt, ...)
  io.stderr:write(string.format(fmt, ...), "\n")
  io.stderr:flush()
end

local function announce(host, port, what)
  print(string.format("listening on %s (%s)", cli.where(host, port), what))
  io.stdout:flush()
end

-- One TCP client in its own task: the service's session, logged.
local clients = 0
local function session(service, client, peer)
  clients = clients + 1
  log("%s connected (%d at once)", peer, clients)
  local ok, why = pcall(service, client)
  client:close()
  clients = clients - 1
  if not ok and why == "interrupted" then error(why, 0) end
  log("%s left: %s", peer, tostring(why))
end

local function peer_of(client)
  local ip, port = client:getpeername()
  return cli.where(ip or "?", port or "?")
end

local function serve_tcp(opts, name, service)
  local server, err = socket.bind(opts.host, opts.port, 128)
  if not server then cli.fail("cannot listen on %s: %s", cli.where(opts.host, opts.port), err) end
  local ip, port = server:getsockname()
  announce(ip, port, name .. " over tcp")
  while true do
    local client = cli.accept(server, true)
    local peer = peer_of(client)
    if clients >= MAX_CLIENTS then
      log("%s refused: %d clients already", peer, clients)
      client:close()
    else
      task.spawn(session, service, client, peer)
    end
  end
end

local function serve_udp(opts, name, reply)
  local family = opts.host:find(":", 1, true) and socket.udp6 or socket.udp
  local sock = family()
  local ok, err = sock:setsockname(opts.host, opts.port)
  if not ok then cli.fail("cannot listen on %s: %s", cli.where(opts.host, opts.port), err) end
  local ip, port = sock:getsockname()
  announce(ip, port, name .. " over udp")
  while true do
    local data, from, from_port = sock:receivefrom(65535)
    if data then
      local answer = reply(data)
      local sent, err = true, nil
      if answer then sent, err = sock:sendto(answer, from, from_port) end
      -- logged once the reply is out: a test reading this line finds it there
      log("%s sent %d bytes, answered %s", cli.where(from, from_port), #data,
        not answer and "nothing" or sent and (#answer .. " bytes") or ("nothing: " .. tostring(err)))
    else
      log("receive failed: %s", from)
      socket.sleep(0.1) -- a failure that repeats does not spin
    end
  end
end

-- ---- the HTTP ones, the chat ---------------------------------------------------

local ECHO_MAX_BODY = 64 * 1024

-- What an HTTP client sent, as a table for JSON: the body as text when it
-- is UTF-8, else in base64 (JSON holds text only).
local function echo_of(req)
  local out = {method = req.method, target = req.target, path = req.path,
    query = req.rawquery, args = req.query_all, version = req.version,
    headers = req.headers, peer = req.peer, body_length = #req.body}
  if utf8.len(req.body) then
    out.body = req.body
  else
    out.body_base64 = require("crypto").base64(req.body)
  end
  return out
end

local function serve_http_echo(opts)
  local srv, err = require("http.server"){host = opts.host, port = opts.port, log = true,
    max_body = ECHO_MAX_BODY}
  if not srv then cli.fail("cannot listen on %s: %s", cli.where(opts.host, opts.port), err) end
  srv:route("*", "/*", echo_of)
  announce(srv.host, srv.port, "http-echo: " .. srv.url .. "/")
  srv:serve()
end

local function serve_chat(opts)
  local room = require("chatroom").new()
  serve_tcp(opts, "chat", function(client) room:tcp_session(client) return "left the chat" end)
end

local function serve_imageapi(opts)
  local api = require "imageapi"
  local srv, err = api.server{host = opts.host, port = opts.port, key = api.key()}
  if not srv then cli.fail("cannot listen on %s: %s", cli.where(opts.host, opts.port), err) end
  srv.log = true
  announce(srv.host, srv.port, "imageapi: " .. srv.endpoint .. "?key=" .. api.key() .. "&num=10")
  srv:serve()
end

-- ---- the command line -------------------------------------------------------

-- name -> {default port, what it is, TCP session, UDP reply or false, or
-- run(opts) for the servers of their own}
local SERVICES = {
  echo = {10007, "RFC 862: sends back what it receives", tcp.echo, udp.echo},
  discard = {10009, "RFC 863: reads and throws away", tcp.discard, udp.discard},
  daytime = {10013, "RFC 867: the date and time as a line, then closes", tcp.daytime, udp.daytime},
  qotd = {10017, "RFC 865: a quote, then closes", tcp.qotd, udp.qotd},
  chargen = {10019, "RFC 864: characters in a rotating pattern, for ever", tcp.chargen, udp.chargen},
  time = {10037, "RFC 868: 4 bytes, seconds since 1900 (big-endian), then closes", tcp.time, udp.time},
  ["http-echo"] = {8080, "answers each HTTP request with what it received, as JSON", run = serve_http_echo},
  chat = {6790, "the chat room of scripts/taskchatserver.lua (lines, /quit)", run = serve_chat},
  imageapi = {8000, "the image API of scripts/imageapi.lua (GET /meinv/?key=K&num=N)", run = serve_imageapi},
}
local ORDER = {"echo", "discard", "daytime", "qotd", "chargen", "time", "http-echo", "chat", "imageapi"}

local function service_kind(s)
  if SERVICES[s] then return s end
  return nil, "one of " .. table.concat(ORDER, ", ")
end

local function help_lines()
  local lines = {}
  for _, name in ipairs(ORDER) do
    local s = SERVICES[name]
    lines[#lines + 1] = string.format("  %-10s %5d  %s", name, s[1], s[2])
  end
  return table.concat(lines, "\n")
end

local SPEC = {
  usage = "netlua -m serve NAME [--port P] [--host H] [--udp]",
  help = "Runs one of the classic test servers until Ctrl-C. Its first line on stdout\n" ..
    "is \"listening on IP:PORT (...)\"; each client and request is logged on stderr.\n\n" ..
    "  NAME        default port, what it does:\n" .. help_lines() .. "\n\n" ..
    "  --port P    the port (default above: the classic port plus 10000, which\n" ..
    "              needs no root; 0 picks a free one)\n" ..
    "  --host H    the address to listen on (default 127.0.0.1; 0.0.0.0 or ::\n" ..
    "              for other machines too)\n" ..
    "  --udp       the RFC service over UDP: one reply datagram per datagram\n" ..
    "              (echo, discard, daytime, qotd, chargen, time)\n",
  args = {{"name", service_kind}},
  options = {port = {"port"}, host = {"host", "127.0.0.1"}, udp = {"switch", false}},
}

local opts = cli.parse({...}, SPEC)
if not opts.name then cli.usage_error(SPEC, "which server? %s", select(2, service_kind(""))) end
local service = SERVICES[opts.name]
if opts.udp and not service[4] then cli.usage_error(SPEC, "%s has no --udp form", opts.name) end
if opts.port == nil then opts.port = service[1] end

local ok, err = pcall(function()
  if service.run then
    service.run(opts)
  elseif opts.udp then
    serve_udp(opts, opts.name, service[4])
  else
    serve_tcp(opts, opts.name, service[3])
  end
end)
if not ok and err ~= "interrupted" then error(err, 0) end
log("stopped")
os.exit(0, true)
