-- netlua -m dns: what the resolver answers for a name (A, AAAA, MX, TXT, NS, CNAME, PTR, ANY...) and how long it took
--
-- Without --type and --server the system resolver answers (getaddrinfo,
-- socket.dns), as every program on the machine would be answered. Other
-- types, or --server, ask a DNS server directly: a query made by
-- lab/_dns_msg.lua goes over UDP, and again over TCP when the answer comes
-- back truncated (TC).
local cli = require "cli"
local socket = require "socket"
local msg = require "_dns_msg"

local spec = {
  usage = "netlua -m dns NAME [--type A|AAAA|MX|TXT|NS|CNAME|PTR|SOA|SRV|ANY] [--server IP[:PORT]] [--timeout S]",
  help = [[
Prints what the resolver answers for NAME and how long it took.

  --type T           the record type; without it (and without --server) the
                     system resolver (getaddrinfo: /etc/hosts, then DNS as
                     /etc/nsswitch.conf says) gives NAME's addresses.
                     A and AAAA without --server ask the system resolver
                     too; the other types (and any type with --server) are
                     a DNS query. PTR takes an address as NAME
                     (192.0.2.1 asks for 1.2.0.192.in-addr.arpa)
  --server IP[:PORT] the DNS server to ask (default: the first nameserver
                     of /etc/resolv.conf; port 53); [IPv6]:PORT
  --timeout S        how long to wait for the answer (default 5)

A DNS query goes over UDP; an answer marked truncated (TC) is asked for
again over TCP. Replies with another id than the query's are ignored (and
counted), as a resolver does. Each record of the answer is printed as
NAME TTL CLASS TYPE DATA, then a line with the status, the server and the
time taken.

Exit status: 0 for an answer (also an empty one: "no records"); 1 for no
such name (NXDOMAIN), a server failure (SERVFAIL, REFUSED ...), no answer
within the timeout, or an answer that is not a sound DNS message (cut off,
a compression loop), each told on one line; 2 for bad usage.]],
  args = {{"name", "host"}},
  options = {type = {"text"}, server = {"text"}, timeout = {"seconds", 5}},
  short = {t = "type", s = "server"},
}

local function ms(seconds)
  return string.format("%.1f ms", seconds * 1000)
end

-- ---- the system resolver ------------------------------------------------------

local function ask_system(name, only)
  local start = socket.gettime()
  local list, err = socket.dns.getaddrinfo(name)
  local took = socket.gettime() - start
  if not list then cli.fail("%s: %s (system resolver, %s)", name, err, ms(took)) end
  local seen, count = {}, 0
  for _, a in ipairs(list) do
    local kind = a.family == "inet6" and "AAAA" or "A"
    if not seen[a.addr] and (only == nil or only == kind) then
      seen[a.addr] = true
      count = count + 1
      print(string.format("%s\t%s\t%s", name, kind, a.addr))
    end
  end
  print(string.format(";; %d address%s from the system resolver (getaddrinfo) in %s",
    count, count == 1 and "" or "es", ms(took)))
end

-- ---- a DNS server -----------------------------------------------------------

-- The server of /etc/resolv.conf (the first), else 127.0.0.1 as the C
-- library would.
local function resolv_conf_server()
  local f = io.open("/etc/resolv.conf")
  if f then
    for line in f:lines() do
      local ip = line:match("^%s*nameserver%s+([%x.:]+)")
      if ip then
        f:close()
        return ip
      end
    end
    f:close()
  end
  return "127.0.0.1"
end

-- "IP", "IP:PORT", "[IPv6]:PORT" or "IPv6": ip, port.
local function parse_server(text)
  local ip, port = text:match("^%[([%x:.]+)%]:(%d+)$")
  if not ip then ip, port = text:match("^([%d.]+):(%d+)$") end
  if not ip then ip = text:match("^%[([%x:.]+)%]$") or text:match("^([%x:.]+)$") end
  local n = tonumber(port or 53)
  if not ip or not n or n < 1 or n > 65535 then
    cli.usage_error(spec, "--server must be IP or IP:PORT ([IPv6]:PORT), not '%s'", text)
  end
  return ip, math.tointeger(n)
end

local function random_id()
  local f = io.open("/dev/urandom", "rb")
  local bytes = f and f:read(2)
  if f then f:close() end
  if bytes and #bytes == 2 then return string.unpack(">I2", bytes) end
  return math.random(0, 0xFFFF)
end

-- Sends the query over UDP and waits for the answer with its id: the
-- answer's bytes, or nil, why, and how many replies with another id came.
local function ask_udp(ip, port, query, id, deadline)
  local u = ip:find(":", 1, true) and socket.udp6() or socket.udp()
  local ok, err = u:setpeername(ip, port)
  if ok then ok, err = u:send(query) end
  if not ok then return nil, err, 0 end
  local ignored = 0
  while true do
    local left = deadline - socket.gettime()
    if left <= 0 then u:close() return nil, "timeout", ignored end
    u:settimeout(left)
    local data, rerr = u:receive(65535)
    if not data then
      u:close()
      return nil, rerr, ignored
    end
    if #data >= 2 and string.unpack(">I2", data) == id then
      u:close()
      return data, nil, ignored
    end
    ignored = ignored + 1
  end
end

-- The same over TCP (each message after its two-byte length).
local function ask_tcp(ip, port, query, deadline)
  local c = socket.tcp()
  c:settimeout(math.max(deadline - socket.gettime(), 0), "t")
  local ok, err = c:connect(ip, port)
  if ok then ok, err = c:send(string.pack(">s2", query)) end
  local len, data
  if ok then len, err = c:receive(2) end
  if len then data, err = c:receive((string.unpack(">I2", len))) end
  c:close()
  return data, err
end

-- The name and type code asked for.
local function question(opts)
  local qname, qtype = opts.name, msg.TYPES[opts.type]
  if not qtype then
    cli.usage_error(spec, "--type must be one of A AAAA MX TXT NS CNAME PTR SOA SRV ANY, not '%s'", opts.type)
  end
  if opts.type == "PTR" then qname = msg.reverse_name(qname) or qname end
  return qname, qtype
end

local function ask_server(opts)
  local qname, qtype = question(opts)
  local ip, port = parse_server(opts.server or resolv_conf_server())
  local id = random_id()
  local query, qerr = msg.query(id, qname, qtype)
  if not query then cli.fail("%s: %s", opts.name, qerr) end
  local where, over = cli.where(ip, port), "UDP"
  local start = socket.gettime()
  local deadline = start + opts.timeout
  local data, err, ignored = ask_udp(ip, port, query, id, deadline)
  local answer, perr
  if data then answer, perr = msg.parse(data) end
  if answer and answer.tc then
    over = "TCP"
    data, err = ask_tcp(ip, port, query, deadline)
    answer, perr = nil, nil
    if data then answer, perr = msg.parse(data) end
  end
  local took = socket.gettime() - start
  local others = ignored > 0 and string.format("; ignored %d repl%s with another id", ignored,
    ignored == 1 and "y" or "ies") or ""
  if not data then
    if err == "timeout" then
      cli.fail("no answer from %s over %s within %g s%s", where, over, opts.timeout, others)
    end
    cli.fail("no answer from %s over %s: %s%s", where, over, err, others)
  end
  if not answer then cli.fail("bad answer from %s over %s: %s", where, over, perr) end
  if answer.id ~= id or not answer.qr then
    cli.fail("bad answer from %s over %s: not a reply to the query", where, over)
  end
  return answer, {where = where, over = over, took = took, qname = qname}
end

local FAILURES = {NXDOMAIN = "no such name", SERVFAIL = "the server failed",
  REFUSED = "the server refused", FORMERR = "the server could not read the query",
  NOTIMP = "the server does not do this"}

local function print_answer(opts, answer, how)
  local summary = string.format("%s from %s over %s in %s", answer.rcode_name, how.where,
    how.over, ms(how.took))
  if answer.rcode ~= 0 then
    cli.fail("%s: %s (%s)", how.qname, FAILURES[answer.rcode_name] or "error", summary)
  end
  for _, r in ipairs(answer.answers) do
    print(string.format("%s\t%d\t%s\t%s\t%s", r.name, r.ttl, r.class == 1 and "IN" or ("CLASS" .. r.class),
      r.type, r.data))
  end
  local n = #answer.answers
  if n == 0 then
    print(string.format(";; no %s records for %s (%s)", opts.type, how.qname, summary))
  else
    print(string.format(";; %d answer%s, %s", n, n == 1 and "" or "s", summary))
  end
end

local opts = cli.parse({...}, spec)
if not opts.name then cli.usage_error(spec, "a NAME is needed") end
if opts.type then opts.type = opts.type:upper() end
io.stdout:setvbuf("line")
if opts.server == nil and (opts.type == nil or opts.type == "A" or opts.type == "AAAA") then
  ask_system(opts.name, opts.type)
else
  opts.type = opts.type or "A"
  print_answer(opts, ask_server(opts))
end
