-- test_lab_dns.lua: `netlua -m dns` against a real DNS server on loopback
-- (Debian's dnsmasq, serving records given on its command line), the
-- system resolver, and a hostile server (tests/fixtures/dns_liar.py:
-- compression loops, cut-off answers, answers for another id).
local t = require "testlib"
local hh = require "httphelp"
local socket = require "socket"
local time = require "time"

local PYTHON = "/usr/bin/python3"
local TOOL = t.shellquote(t.NETLUA) .. " -m dns "
local DNSMASQ
for _, path in ipairs{"/usr/sbin/dnsmasq", "/sbin/dnsmasq"} do
  if os.execute("test -x " .. path) then DNSMASQ = path break end
end

-- Runs the tool, killed after 60 s (137: it hung): stdout, stderr, status.
local function dns(args)
  return t.sh("timeout -s KILL 60 " .. TOOL .. args)
end

-- A UDP port the OS picked on 127.0.0.1, free again.
local function free_udp_port()
  local u = assert(socket.udp())
  assert(u:setsockname("127.0.0.1", 0))
  local _, port = u:getsockname()
  u:close()
  return tonumber(port)
end

local HOSTS = "192.0.2.10 www.lab.test\n2001:db8::10 www.lab.test\n"
local BIG = string.rep("b", 200)

-- dnsmasq on 127.0.0.1 (UDP and TCP), authoritative for lab.test from its
-- command line only (no upstream, no /etc/hosts); killed after 60 s.
-- Returns its port and a stop function. A port taken between our picking
-- it and dnsmasq binding it is retried with another.
local function start_dnsmasq()
  local dir = t.tmpdir()
  t.writefile(dir .. "/hosts", HOSTS)
  for _ = 1, 10 do
    local port = free_udp_port()
    local args = table.concat({
      "--keep-in-foreground", "--log-facility=-", "--conf-file=/dev/null", "--port=" .. port,
      "--listen-address=127.0.0.1", "--bind-interfaces", "--no-resolv", "--no-hosts",
      "--user=root", "--pid-file=", "--local=/lab.test/", "--local-ttl=300",
      "--addn-hosts=" .. dir .. "/hosts", "--mx-host=lab.test,mail.lab.test,10",
      "--txt-record=lab.test,\"hello world\",two", "--cname=alias.lab.test,www.lab.test",
      "--ptr-record=10.2.0.192.in-addr.arpa,www.lab.test",
      "--txt-record=big.lab.test," .. BIG .. "," .. BIG .. "," .. BIG}, " ")
    os.execute(string.format("timeout -s KILL 60 %s %s > %s/log 2>&1 & echo $! > %s/pid",
      DNSMASQ, args, dir, dir))
    local log = ""
    for _ = 1, 400 do
      log = t.readfile(dir .. "/log") or ""
      if log:find("started") or log:find("dnsmasq: ") and not log:find("started") and
         not os.execute("kill -0 $(cat " .. dir .. "/pid) 2>/dev/null") then break end
      time.sleep(0.05)
    end
    if log:find("started") then
      local pid = t.readfile(dir .. "/pid"):match("%d+")
      return port, function()
        os.execute("kill " .. pid .. " 2>/dev/null")
        t.rmtree(dir)
      end
    end
    if not log:find("in use") then error("dnsmasq did not start: " .. log) end
  end
  error("dnsmasq found no free port")
end

-- The hostile server in MODE: its port and a stop function.
local function liar(mode)
  return hh.spawn(string.format("exec %s %s/dns_liar.py \"$PORTFILE\" %s 60",
    PYTHON, hh.fixtures, mode))
end

-- The pattern of the line after the records: n answers over "UDP"/"TCP".
local function summary(n, over)
  return ";; " .. n .. " answers?, NOERROR from 127%.0%.0%.1:%d+ over " .. over .. " in %d+%.%d ms\n$"
end

if not DNSMASQ then
  t.skip("dns tests against dnsmasq", "dnsmasq is not installed (make deps installs dnsmasq-base)")
else
  local port, stop = start_dnsmasq()
  local server = " --server 127.0.0.1:" .. port

  t.test("dnsmasq: A, AAAA, MX, TXT, CNAME: each record with its TTL, then status, server and time", function()
    local cases = {
      {"www.lab.test --type A", "www.lab.test.\t300\tIN\tA\t192.0.2.10\n"},
      {"www.lab.test --type aaaa", "www.lab.test.\t300\tIN\tAAAA\t2001:db8::10\n"},
      {"lab.test --type MX", "lab.test.\t300\tIN\tMX\t10 mail.lab.test.\n"},
      {"lab.test --type TXT", "lab.test.\t300\tIN\tTXT\t\"hello world\" \"two\"\n"},
      {"alias.lab.test --type CNAME", "alias.lab.test.\t300\tIN\tCNAME\twww.lab.test.\n"},
      {"192.0.2.10 --type PTR", "10.2.0.192.in-addr.arpa.\t300\tIN\tPTR\twww.lab.test.\n"},
    }
    for _, c in ipairs(cases) do
      local out, err, code = dns(c[1] .. server)
      t.eq(code, 0, c[1] .. ": " .. err)
      t.eq(out:sub(1, #c[2]), c[2], c[1])
      t.match(out:sub(#c[2] + 1), "^" .. summary(1, "UDP"), c[1])
    end
  end)

  t.test("dnsmasq: ANY gives every record of the name", function()
    local out, err, code = dns("www.lab.test --type ANY" .. server)
    t.eq(code, 0, err)
    t.match(out, "www%.lab%.test%.\t300\tIN\tA\t192%.0%.2%.10\n")
    t.match(out, "www%.lab%.test%.\t300\tIN\tAAAA\t2001:db8::10\n")
    t.match(out, summary(2, "UDP"))
  end)

  t.test("dnsmasq: an answer too big for UDP comes truncated and is asked again over TCP", function()
    local out, err, code = dns("big.lab.test --type TXT" .. server)
    t.eq(code, 0, err)
    t.eq(out:match("^[^\n]*"), "big.lab.test.\t300\tIN\tTXT\t" ..
      string.format("%q %q %q", BIG, BIG, BIG))
    t.match(out, summary(1, "TCP"))
  end)

  t.test("dnsmasq: no such name is NXDOMAIN, one line, status 1; a name without that type is an empty answer", function()
    local out, err, code = dns("nosuch.lab.test --type A" .. server)
    t.eq(code, 1)
    t.eq(out, "")
    t.match(err, "^netlua: nosuch%.lab%.test: no such name %(NXDOMAIN from 127%.0%.0%.1:%d+ over UDP in [%d.]+ ms%)\n$")
    out, err, code = dns("www.lab.test --type MX" .. server)
    t.eq(code, 0, err)
    t.match(out, "^;; no MX records for www%.lab%.test %(NOERROR from ")
  end)

  stop()
end

t.test("the system resolver answers without --type: /etc/hosts' localhost", function()
  local out, err, code = dns("localhost")
  t.eq(code, 0, err)
  t.match(out, "localhost\tA\t127%.0%.0%.1\n")
  t.match(out, ";; %d+ address[es]* from the system resolver %(getaddrinfo%) in [%d.]+ ms\n$")
end)

t.test("the system resolver: a name it does not know is one line, status 1", function()
  local sh, dir = t.private_etc{["hosts"] = "127.0.0.1 localhost\n", ["nsswitch.conf"] = "hosts: files\n"}
  if not sh then return t.skip("", dir) end
  local out, err, code = sh(TOOL .. "no-such-host.test")
  t.rmtree(dir)
  t.eq(code, 1)
  t.eq(out, "")
  t.match(err, "^netlua: no%-such%-host%.test: [^\n]+ %(system resolver, [%d.]+ ms%)\n$")
end)

if not os.execute("test -x " .. PYTHON) then
  t.skip("hostile DNS answers", PYTHON .. " is not installed")
else
  t.test("hostile answers are one clear line and status 1, never a hang", function()
    local cases = {
      {"loop", "bad answer from 127%.0%.0%.1:%d+ over UDP: compression pointers loop"},
      {"truncated", "bad answer from 127%.0%.0%.1:%d+ over UDP: truncated message %(29 bytes%)"},
      {"badlabel", "bad answer from 127%.0%.0%.1:%d+ over UDP: unknown label type 0x41"},
      {"wrongid", "no answer from 127%.0%.0%.1:%d+ over UDP within 1 s; ignored 1 reply with another id"},
      {"servfail", "x%.test: the server failed %(SERVFAIL from 127%.0%.0%.1:%d+ over UDP in [%d.]+ ms%)"},
    }
    for _, c in ipairs(cases) do
      local port, stop = liar(c[1])
      local out, err, code = dns("x.test --type A --timeout 1 --server 127.0.0.1:" .. port)
      stop()
      t.eq(code, 1, c[1] .. ": " .. err)
      t.eq(out, "", c[1])
      t.match(err, "^netlua: " .. c[2] .. "\n$", c[1])
    end
  end)

  t.test("the same server's sound answer is printed (the hostile cases are the only difference)", function()
    local port, stop = liar("ok")
    local out, err, code = dns("x.test --type A --server 127.0.0.1:" .. port)
    stop()
    t.eq(code, 0, err)
    t.match(out, "^x%.test%.\t60\tIN\tA\t1%.2%.3%.4\n" .. summary(1, "UDP"))
  end)
end

t.test("nothing listening on the server's port: one line, status 1", function()
  local port = free_udp_port()
  local _, err, code = dns("x.test --type MX --timeout 5 --server 127.0.0.1:" .. port)
  t.eq(code, 1)
  t.eq(err, "netlua: no answer from 127.0.0.1:" .. port .. " over UDP: connection refused\n")
end)

t.test("bad usage is status 2 with the usage line", function()
  for _, args in ipairs{"", "x --type BOGUS --server 127.0.0.1", "x --type MX --server 1.2.3.4:99999",
                        "x --type MX --server nope", "a b"} do
    local _, err, code = dns(args)
    t.eq(code, 2, args)
    t.match(err, "\nusage: netlua %-m dns ", args)
  end
end)

t.test("a name too long for DNS is refused before anything is sent", function()
  local _, err, code = dns(string.rep("a", 64) .. ".test --type MX --server 127.0.0.1:9")
  t.eq(code, 1)
  t.match(err, "label longer than 63 bytes")
end)

t.done()
