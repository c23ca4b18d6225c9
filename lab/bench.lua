-- netlua -m bench: a load generator for tcp:// (echo), http:// (GET) and ws:// (echo) servers
-- bench.lua: opens N connections (tasks; with --threads T, T threads with
-- N/T each) that repeat a round trip for S seconds (lab/_bench_load.lua),
-- then prints requests/s, latency percentiles and a small histogram
-- (lab/_bench_stats.lua), HTTP status codes, and errors by kind.
local cli = require "cli"
local json = require "json"
local thread = require "thread"
local time = require "time"
local load = require "_bench_load"
local stats = require "_bench_stats"

local SPEC = {
  usage = "netlua -m bench URL [--conns N] [--duration S] [--threads T] [--send TEXT] [--timeout S] [--json]",
  help = [[
A load generator. URL is one of
  tcp://HOST:PORT        an echo round trip: send TEXT, read as many bytes back
  http://HOST:PORT/PATH  GET the URL over keep-alive connections
  ws://HOST:PORT/PATH    a WebSocket echo: send TEXT as a message, read one back
Each connection repeats its round trip until the time is up (the one in flight
then is finished); a failed one is counted by kind (refused, reset, timeout,
closed, bad status, bad reply) and the connection is made again.

  --conns N      connections at once (default 10)
  --duration S   seconds to run (default 5)
  --threads T    spread the connections over T threads (default 1)
  --send TEXT    what tcp and ws send (default "hello\n"; ws: "hello")
  --timeout S    the longest wait for a connection or a reply (default 5)
  --json         print the results as one JSON object instead
Exit status 0 when at least one round trip succeeded, 1 when none did.
]],
  args = {{"url", "text"}},
  options = {conns = {"count", 10}, duration = {"seconds", 5}, threads = {"count", 1},
    send = {"text", false}, timeout = {"seconds", 5}, json = {"switch", false}},
}

-- The target of a URL: scheme, host, port, path (and the GET request).
local function parse_url(url)
  local scheme, rest = url:match("^(%a+)://(.*)$")
  if not scheme or not ({tcp = true, http = true, ws = true})[scheme] then
    cli.usage_error(SPEC, "the URL must start with tcp://, http:// or ws://, not '%s'", url)
  end
  local host, port, path = rest:match("^%[([^%]]+)%]:?(%d*)(.*)$")
  if not host then host, port, path = rest:match("^([^/:]+):?(%d*)(.*)$") end
  if not host or (path ~= "" and path:sub(1, 1) ~= "/") then
    cli.usage_error(SPEC, "cannot read host and port in '%s'", url)
  end
  port = tonumber(port) or (scheme == "tcp" and 0 or 80)
  if port < 1 or port > 65535 then cli.usage_error(SPEC, "%s needs a port from 1 to 65535", url) end
  if path == "" then path = "/" end
  local where = cli.where(host, port)
  return {scheme = scheme, host = host, port = port, path = path, url = url,
    request = string.format("GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: netlua-bench\r\n" ..
      "Connection: keep-alive\r\n\r\n", path, where)}
end

-- Each thread's share of the connections.
local function shares(conns, threads)
  local out = {}
  for k = 1, threads do
    out[k] = conns // threads + (k <= conns % threads and 1 or 0)
  end
  return out
end

local function run_threads(target, opts)
  local handles = {}
  for k, n in ipairs(shares(opts.conns, opts.threads)) do
    handles[k] = thread.spawn{function(t, conns, o) return require("_bench_load").run(t, conns, o) end,
      target, n, opts, name = "bench-" .. k}
  end
  local total = stats.new()
  for _, h in ipairs(handles) do
    local ok, st = h:join()
    if not ok then error(st, 0) end
    stats.merge(total, st)
  end
  return total
end

-- The results as a plain table (what --json prints).
local function results(target, opts, st, elapsed)
  local latency = {}
  if st.requests > 0 then
    latency = {p50 = stats.percentile(st, 50), p90 = stats.percentile(st, 90),
      p99 = stats.percentile(st, 99), max = st.max, min = st.min, mean = st.sum / st.requests}
  end
  return {url = target.url, conns = opts.conns, threads = opts.threads, seconds = elapsed,
    requests = st.requests, rate = st.requests / elapsed, errors = st.errors,
    statuses = st.statuses, latency = latency}
end

local function counts(t)
  local keys, out = {}, {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do out[#out + 1] = string.format("%s %d", k, t[k]) end
  return table.concat(out, ", ")
end

local function print_text(r, st)
  print(string.format("%s: %d connections (%d thread%s), %.2f s", r.url, r.conns, r.threads,
    r.threads == 1 and "" or "s", r.seconds))
  print(string.format("requests  %d (%.1f/s)", r.requests, r.rate))
  if r.requests > 0 then
    local l = r.latency
    print(string.format("latency   p50 %s, p90 %s, p99 %s, max %s", stats.duration(l.p50),
      stats.duration(l.p90), stats.duration(l.p99), stats.duration(l.max)))
    for _, line in ipairs(stats.histogram(st, 12, 40)) do print(line) end
  end
  if next(r.statuses) then print("status    " .. counts(r.statuses)) end
  print("errors    " .. (next(r.errors) and counts(r.errors) or "none"))
end

local opts = cli.parse({...}, SPEC)
if not opts.url then cli.usage_error(SPEC, "URL is missing") end
if opts.threads > opts.conns then
  cli.usage_error(SPEC, "--threads %d is more than --conns %d", opts.threads, opts.conns)
end
local target = parse_url(opts.url)
if target.scheme == "tcp" and target.port == 0 then cli.usage_error(SPEC, "%s needs a port", opts.url) end
opts.text = opts.send or (target.scheme == "ws" and "hello" or "hello\n")
if opts.text == "" then cli.usage_error(SPEC, "--send needs at least one byte") end

local started = time.monotonic()
local st
if opts.threads == 1 then
  st = load.run(target, opts.conns, opts)
else
  st = run_threads(target, opts)
end
local r = results(target, opts, st, time.monotonic() - started)
if opts.json then
  print(json.encode(r))
else
  print_text(r, st)
end
os.exit(st.requests > 0 and 0 or 1)
