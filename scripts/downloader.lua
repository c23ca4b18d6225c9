-- downloader.lua: the tutorial's concurrent image downloader.
--
-- usage: netlua scripts/downloader.lua [--api URL] [--key K] [--num N]
--          [--out DIR] [--threads N] [--retries N] [--timeout S]
--          [--max-size N]
--
-- Reads a tianapi-style image list (GET URL?key=K&num=N answering
-- {"code":200,"newslist":[{"picUrl":...}...]}) and downloads every picUrl,
-- at most --threads at a time, each with a browser user-agent, a timeout and
-- up to --retries tries (the tutorial's getHTMLText), into --out (default
-- ./downloads). An image larger than --max-size (bytes, or with a K, M or G
-- suffix; default 20M), counted after any Content-Encoding is decoded, is
-- stopped there and reported as a failure; nothing of it stays on disk.
-- With no --api it first starts the bundled image API
-- (scripts/imageapi.lua) on a free loopback port, so it works offline. The
-- key is --key, else $IMAGEAPI_KEY, else netlua-demo-key: the same rule as
-- imageapi.lua's, so the two work together by default.
-- Exit status 0 only when every image was saved; 1 otherwise; 2 bad usage.
-- Its neighbours cli.lua and imageapi.lua sit next to it; netlua finds
-- modules next to the main script, and this finds them also when another
-- script loads this one (the tests do).
local HERE = (arg and arg[0] and arg[0]:match("^(.*)/[^/]*$")) or "."
package.path = HERE .. "/?.lua;" .. package.path

local time = require "time"
local cli = require "cli"
local imageapi = require "imageapi"
local dl = require "download"

-- A clear message and exit status 1, raised so the bundled API stops first.
local Failure = {}
local function fail(fmt, ...)
  error(setmetatable({msg = string.format(fmt, ...)}, Failure), 0)
end

-- ---- arguments ------------------------------------------------------------

local function size(s)
  local n = dl.parse_size(s)
  if n and n > 0 then return n end
  return nil, "a positive size (bytes, or 512K, 20M, 1G)"
end

local SPEC = {
  usage = "netlua scripts/downloader.lua [--api URL] [--key K] [--num N] [--out DIR]\n" ..
    "       [--threads N] [--retries N] [--timeout S] [--max-size N]",
  help = "The tutorial's image downloader: fetches a tianapi-style image list\n" ..
    "(URL?key=K&num=N) and downloads every picUrl in it, several at a time.\n\n" ..
    "  --api URL      the list's URL (default: the bundled image API, started on a\n" ..
    "                 free loopback port, so it works offline)\n" ..
    "  --key K        the API's key (default: $IMAGEAPI_KEY, else netlua-demo-key,\n" ..
    "                 which the bundled API and imageapi.lua accept by default)\n" ..
    "  --num N        how many images to ask for (default 10)\n" ..
    "  --out DIR      where to save them (default ./downloads)\n" ..
    "  --threads N    downloads at once (default 4)\n" ..
    "  --retries N    tries per request (default 3)\n" ..
    "  --timeout S    seconds per request (default 30)\n" ..
    "  --max-size N   largest image, in bytes or 512K, 20M, 1G (default 20M)\n",
  options = {api = {"text"}, key = {"text"}, num = {"count", 10}, out = {"text", "./downloads"},
    threads = {"count", 4}, retries = {"count", 3}, timeout = {"seconds", 30},
    ["max-size"] = {size, 20 * 1024 * 1024}},
}

local function parse_args(args)
  local o = cli.parse(args, SPEC)
  o.max_size = o["max-size"]
  return o
end

-- ---- progress -------------------------------------------------------------

local is_tty = os.execute("test -t 1") == true

local function progress(done, total, bytes, started)
  if not is_tty then return end
  local width = 30
  local filled = math.floor(width * done / math.max(total, 1))
  local rate = bytes / math.max(time.monotonic() - started, 1e-3)
  io.stdout:write(string.format("\r[%s%s] %d/%d files  %s  %s/s ", string.rep("#", filled),
    string.rep("-", width - filled), done, total, dl.human(bytes), dl.human(rate)))
  io.stdout:flush()
end

-- ---- downloading ------------------------------------------------------------

-- Downloads every URL (download.lua, libcurl's multi interface in this
-- thread), the bar moving as each file is final.
local function download_all(o, urls, names)
  local started, bytes, done = time.monotonic(), 0, 0
  progress(0, #urls, 0, started)
  local failures, saved, elapsed = dl.download_all(o, urls, names, function(_, n)
    bytes, done = bytes + (n or 0), done + 1
    progress(done, #urls, bytes, started)
  end)
  if is_tty then io.stdout:write("\n") end
  return failures, saved, elapsed
end

-- The list, or exit 1 with the API's problem; entries without a picUrl are
-- named on stderr.
local function fetch_list(o)
  local urls, skipped = dl.fetch_list(o)
  if not urls then fail("%s", skipped) end
  for _, i in ipairs(skipped) do
    io.stderr:write(string.format("netlua: entry %d of the list from %s has no picUrl\n", i, o.api))
  end
  return urls, #skipped
end

local function main(...)
  local o = parse_args({...})
  local stop
  o.key = imageapi.key(o.key)
  if not o.api then
    o.api, stop = dl.start_bundled_api(o.key)
    if not o.api then fail("%s", stop) end
    print("started the bundled image API at " .. o.api)
  end
  local ok, err = pcall(function()
    local urls, missing = fetch_list(o)
    local names = dl.unique_names(urls)
    local made, why = dl.mkdir(o.out)
    if not made then fail("%s", why) end
    print(string.format("downloading %d image%s into %s (%d at a time)", #urls,
      #urls == 1 and "" or "s", o.out, o.threads))
    local failures, bytes, elapsed = download_all(o, urls, names)
    print(string.format("downloaded %d of %d images, %s in %.2f s (%s/s) into %s",
      #urls - #failures, #urls + missing, dl.human(bytes), elapsed,
      dl.human(bytes / math.max(elapsed, 1e-3)), o.out))
    if #failures > 0 or missing > 0 then
      print(string.format("failed: %d", #failures + missing))
      for _, f in ipairs(failures) do print(string.format("  %s: %s", f[1], f[2])) end
      if missing > 0 then print(string.format("  %d list entries without picUrl", missing)) end
    end
    return #failures == 0 and missing == 0
  end)
  if stop then stop() end
  if not ok and getmetatable(err) == Failure then
    io.stderr:write("netlua: ", err.msg, "\n")
    os.exit(1)
  end
  if not ok then error(err, 0) end
  os.exit(err and 0 or 1)
end

main(...)
