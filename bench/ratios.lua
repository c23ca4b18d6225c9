-- ratios.lua RUN.tsv...: the ratios the issues set targets for, one column
-- per run (each run's medians, netlua against the row's reference), and
-- their median over the runs. On a machine whose figures swing by a
-- quarter from one run to the next, this is how a target is judged: many
-- runs, each compared within itself.
--   netlua bench/ratios.lua bench/results/2026*-tls-http.tsv
local TARGETS = {
  {"http", "cpu_us_per_req", "nginx-w1", "HTTP CPU per request / nginx-w1 (target <= 1.3)"},
  {"time", "cpu_us_per_conn", "c-epoll", "time CPU per connection / C (target <= 1.05)"},
  {"time", "cpu_us_per_conn", "c-epoll-log", "time CPU per connection / C that logs (no target)"},
  {"https", "req_per_s", "nginx-w1", "HTTPS requests/s / nginx-w1 (target >= 0.8)"},
  {"https", "req_per_s", "node", "HTTPS requests/s / Node.js (target > 1)"},
  {"tls_handshake", "handshake_per_s", "nginx-w1", "handshakes/s / nginx-w1 (target >= 0.9)"},
  {"tls_bulk", "mib_per_s", "openssl", "TLS bulk MiB/s / openssl (target >= 0.9)"},
}

local function median(list)
  if #list == 0 then return nil end
  table.sort(list)
  local n = #list
  return n % 2 == 1 and list[(n + 1) // 2] or (list[n // 2] + list[n // 2 + 1]) / 2
end

-- One run file: values[workload|runtime|metric] = {value per repetition}.
local function read_run(path)
  local values = {}
  for line in io.lines(path) do
    local w, rt, m, _, _, v = line:match("^([^\t#]+)\t([^\t]+)\t([^\t]+)\t([^\t]+)\t([^\t]+)\t([^\t]+)$")
    if w and tonumber(v) then
      local k = w .. "|" .. rt .. "|" .. m
      values[k] = values[k] or {}
      table.insert(values[k], tonumber(v))
    end
  end
  return values
end

if #arg == 0 then
  io.stderr:write("usage: netlua bench/ratios.lua RUN.tsv...\n")
  os.exit(2)
end
local runs = {}
for i, path in ipairs(arg) do runs[i] = read_run(path) end
for _, t in ipairs(TARGETS) do
  local cells, ratios = {}, {}
  for i = 1, #runs do
    local mine = median(runs[i][t[1] .. "|netlua|" .. t[2]] or {})
    local ref = median(runs[i][t[1] .. "|" .. t[3] .. "|" .. t[2]] or {})
    if mine and ref and ref > 0 then
      ratios[#ratios + 1] = mine / ref
      cells[#cells + 1] = string.format("%.2f", mine / ref)
    else
      cells[#cells + 1] = "-"
    end
  end
  local m = median(ratios)
  print(string.format("%-52s %s   median %s", t[4], table.concat(cells, " "),
    m and string.format("%.2f", m) or "-"))
end
