-- report.lua: turns the raw runs of bench/run.sh into the table of medians and
-- ratios (Markdown), or compares two runs. Plain Lua 5.4 (run by netlua).
--
--   netlua bench/report.lua RUN.tsv             the table of one run
--   netlua bench/report.lua OLD.tsv NEW.tsv     medians side by side, NEW/OLD
--
-- "vs ref" divides by the reference of the workload (BASELINE below), "vs best
-- peer" by the best peer runtime (neither netlua nor the reference) for that
-- metric; metrics marked hi are better higher, lo better lower.

-- Runtimes named "netlua" or "netlua-<variant>" are ours, never peers.
local function ours(rt) return rt == "netlua" or rt:match("^netlua%-") ~= nil end

-- The reference each workload is divided by ("vs ref"): the C program, or
-- for http and https the target's runtime, Node.js (nginx stays a peer); for
-- tls_handshake nginx (the target is a share of its rate), for tls_bulk
-- OpenSSL's own s_server, for the WebSocket rows Node.js `ws` (sse_fanout,
-- netlua alone, has none), for p2p_fanout one plain C copy (loadgen copy).
local BASELINE = { time = "c-epoll", echo = "c-epoll", echo1k = "c-epoll", http = "node",
                   https = "node", tls_handshake = "nginx-w1", tls_bulk = "openssl",
                   download = "curl", startup = "lua5.4", threads = "c-pthread",
                   ws_echo = "node", ws_idle = "node", p2p_fanout = "c-copy" }

-- Reads a run file: comment lines, then rows in first-seen order of
-- (workload, metric, runtime), each with its values and direction.
local function load(path)
  local f = assert(io.open(path))
  local run = { comments = {}, rows = {}, index = {}, skipped = {} }
  for line in f:lines() do
    if line:sub(1, 1) == "#" then
      run.comments[#run.comments + 1] = line
    elseif not line:match("^workload\t") then
      local w, rt, metric, better, _, value = line:match("^(.-)\t(.-)\t(.-)\t(.-)\t(.-)\t(.*)$")
      if metric == "skipped" then
        run.skipped[#run.skipped + 1] = { w = w, rt = rt, why = value }
      elseif w then
        local key = w .. "\0" .. metric .. "\0" .. rt
        local row = run.index[key]
        if not row then
          row = { w = w, metric = metric, rt = rt, better = better, values = {} }
          run.index[key] = row
          run.rows[#run.rows + 1] = row
        end
        row.values[#row.values + 1] = tonumber(value)
      end
    end
  end
  f:close()
  return run
end

local function median(vs)
  local s = table.move(vs, 1, #vs, 1, {})
  table.sort(s)
  local n = #s
  if n % 2 == 1 then return s[(n + 1) // 2] end
  return (s[n // 2] + s[n // 2 + 1]) / 2
end

local function num(v)
  if v == nil then return "-" end
  local a = math.abs(v)
  if a >= 100 then return string.format("%.0f", v) end
  if a >= 10 then return string.format("%.1f", v) end
  return string.format("%.2f", v)
end

local function ratio(v, ref)
  if not v or not ref or ref == 0 then return "-" end
  local r = v / ref
  return string.format(r < 0.1 and "%.3fx" or "%.2fx", r)
end

-- Orders rows by workload, then metric, then runtime, each in first-seen order.
local function order(run)
  local seen, n = {}, 0
  local function rank(k)
    if not seen[k] then n = n + 1; seen[k] = n end
    return seen[k]
  end
  for _, row in ipairs(run.rows) do
    local rt = rank("r" .. row.rt) - (row.rt == BASELINE[row.w] and 2000 or ours(row.rt) and 1000 or 0)
    row.rank = { rank("w" .. row.w), rank("m" .. row.w .. "\0" .. row.metric), rt }
  end
  table.sort(run.rows, function(x, y)
    for i = 1, 3 do
      if x.rank[i] ~= y.rank[i] then return x.rank[i] < y.rank[i] end
    end
    return false
  end)
end

-- Fills row.med, row.min, row.max for every row.
local function summarize(run)
  order(run)
  for _, row in ipairs(run.rows) do
    local s = table.move(row.values, 1, #row.values, 1, {})
    table.sort(s)
    row.med, row.min, row.max = median(s), s[1], s[#s]
  end
end

-- The best peer row for (workload, metric): not netlua, not the baseline.
local function best_peer(run, w, metric)
  local best
  for _, row in ipairs(run.rows) do
    if row.w == w and row.metric == metric and not ours(row.rt) and row.rt ~= BASELINE[w] then
      local better = row.better == "hi" and (not best or row.med > best.med)
        or row.better == "lo" and (not best or row.med < best.med)
      if better then best = row end
    end
  end
  return best
end

local function errors_all_zero(run, row)
  return row.metric == "errors" and row.max == 0
end

local function one_run(run)
  summarize(run)
  for _, c in ipairs(run.comments) do print("    " .. c) end
  print()
  print("| workload | metric | runtime | median | min-max | vs ref | vs best peer |")
  print("| --- | --- | --- | ---: | ---: | ---: | ---: |")
  for _, row in ipairs(run.rows) do
    if not errors_all_zero(run, row) then
      local base = run.index[row.w .. "\0" .. row.metric .. "\0" .. (BASELINE[row.w] or "")]
      local peer = best_peer(run, row.w, row.metric)
      local mm = #row.values > 1 and (num(row.min) .. "-" .. num(row.max)) or "-"
      local plain = row.metric == "errors"
      print(string.format("| %s | %s (%s) | %s | %s | %s | %s | %s |", row.w, row.metric,
        row.better == "hi" and "hi" or "lo", row.rt, num(row.med), mm,
        plain and "-" or ratio(row.med, base and base.med),
        plain and "-" or ratio(row.med, peer and peer.med) .. (peer and (" " .. peer.rt) or "")))
    end
  end
  for _, s in ipairs(run.skipped) do
    print(string.format("| %s | - | %s | skipped: %s | | | |", s.w, s.rt, s.why))
  end
end

local function compare(old, new)
  summarize(old)
  summarize(new)
  print("old: " .. (old.comments[1] or "?"))
  print("new: " .. (new.comments[1] or "?"))
  print()
  print("| workload | metric | runtime | old median | new median | new/old |")
  print("| --- | --- | --- | ---: | ---: | ---: |")
  for _, row in ipairs(new.rows) do
    local o = old.index[row.w .. "\0" .. row.metric .. "\0" .. row.rt]
    print(string.format("| %s | %s | %s | %s | %s | %s |", row.w, row.metric, row.rt,
      num(o and o.med), num(row.med), ratio(row.med, o and o.med)))
  end
end

local a, b = ...
if not a then
  io.stderr:write("usage: report.lua RUN.tsv [NEW.tsv]\n")
  os.exit(2)
end
if b then compare(load(a), load(b)) else one_run(load(a)) end
