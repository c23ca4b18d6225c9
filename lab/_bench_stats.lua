-- _bench_stats.lua: what `netlua -m bench` (lab/bench.lua) counts: requests,
-- errors by kind, HTTP status codes, and a latency histogram with
-- logarithmic buckets (each about 9 % wide: 8 per doubling), so its size is
-- fixed (a few hundred buckets at most) however many requests a run makes.
-- Stats are plain tables: they cross threads by copy and merge by adding.
local M = {}

local PER_DOUBLING = 8

function M.new()
  return {requests = 0, errors = {}, statuses = {}, buckets = {}, max = 0, min = math.huge, sum = 0}
end

local function bucket_of(seconds)
  local us = math.max(seconds * 1e6, 1)
  return math.floor(math.log(us, 2) * PER_DOUBLING)
end

-- The upper edge of a bucket, in seconds.
local function bucket_top(b)
  return 2 ^ ((b + 1) / PER_DOUBLING) / 1e6
end

-- One request that got its reply after `seconds`.
function M.add(st, seconds)
  st.requests = st.requests + 1
  local b = bucket_of(seconds)
  st.buckets[b] = (st.buckets[b] or 0) + 1
  st.sum = st.sum + seconds
  if seconds > st.max then st.max = seconds end
  if seconds < st.min then st.min = seconds end
end

function M.error(st, kind)
  st.errors[kind] = (st.errors[kind] or 0) + 1
end

function M.status(st, code)
  local key = tostring(code)
  st.statuses[key] = (st.statuses[key] or 0) + 1
end

local function add_counts(into, from)
  for k, n in pairs(from) do into[k] = (into[k] or 0) + n end
end

-- Adds `from` into `into` (a thread's stats into the total).
function M.merge(into, from)
  into.requests = into.requests + from.requests
  add_counts(into.errors, from.errors)
  add_counts(into.statuses, from.statuses)
  add_counts(into.buckets, from.buckets)
  into.sum = into.sum + from.sum
  into.max = math.max(into.max, from.max)
  into.min = math.min(into.min, from.min)
  return into
end

local function sorted_buckets(st)
  local keys = {}
  for b in pairs(st.buckets) do keys[#keys + 1] = b end
  table.sort(keys)
  return keys
end

-- The latency at percentile p (0-100): the top of the bucket holding it,
-- never above the largest seen. nil with no requests.
function M.percentile(st, p)
  if st.requests == 0 then return nil end
  local rank, seen = math.max(1, math.ceil(st.requests * p / 100)), 0
  for _, b in ipairs(sorted_buckets(st)) do
    seen = seen + st.buckets[b]
    if seen >= rank then return math.min(bucket_top(b), st.max) end
  end
  return st.max
end

function M.errors_total(st)
  local n = 0
  for _, c in pairs(st.errors) do n = n + c end
  return n
end

-- "0.21 ms", "1.3 s".
function M.duration(seconds)
  if seconds >= 1 then return string.format("%.2f s", seconds) end
  if seconds >= 0.001 then return string.format("%.2f ms", seconds * 1e3) end
  return string.format("%.0f us", seconds * 1e6)
end

-- The text histogram: rows of doublings from the fastest to the slowest
-- request (at most `rows`, the fastest rows merged), a bar of up to
-- `width` marks each. Returns a list of lines.
function M.histogram(st, rows, width)
  if st.requests == 0 then return {} end
  local lo, hi = math.floor(math.log(math.max(st.min * 1e6, 1), 2)),
    math.floor(math.log(math.max(st.max * 1e6, 1), 2))
  lo = math.max(lo, hi - (rows or 12) + 1)
  local counts, top = {}, 0
  for b, n in pairs(st.buckets) do
    local row = math.max(lo, math.floor(b / PER_DOUBLING))
    counts[row] = (counts[row] or 0) + n
  end
  for row = lo, hi do top = math.max(top, counts[row] or 0) end
  local lines = {}
  for row = lo, hi do
    local n = counts[row] or 0
    local bar = string.rep("#", math.ceil((width or 40) * n / top))
    lines[#lines + 1] = string.format("  < %-9s %-" .. (width or 40) .. "s %d",
      M.duration(2 ^ (row + 1) / 1e6), bar, n)
  end
  return lines
end

return M
