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

local http = require "http"
local time = require "time"
local cli = require "cli"
local imageapi = require "imageapi"
local filenames = require "filenames"

local USER_AGENT = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 " ..
  "(KHTML, like Gecko) Chrome/120.0 Safari/537.36"

-- A clear message and exit status 1, raised so the bundled API stops first.
local Failure = {}
local function fail(fmt, ...)
  error(setmetatable({msg = string.format(fmt, ...)}, Failure), 0)
end

-- ---- arguments ------------------------------------------------------------

local SIZE_UNITS = {[""] = 1, K = 1024, M = 1024 ^ 2, G = 1024 ^ 3}

-- "20M" -> 20971520: bytes, or KiB, MiB, GiB with the suffix K, M or G
-- (k, 20MiB, 20MB and 20B read as binary units too); nil if malformed.
local function parse_size(s)
  local n, unit = s:match("^(%d+%.?%d*)%s*([kKmMgG]?)i?[bB]?$")
  if not n then return nil end
  return math.floor(tonumber(n) * SIZE_UNITS[unit:upper()])
end

local function size(s)
  local n = parse_size(s)
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

-- ---- the bundled API, in the background -----------------------------------

local function quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- Starts scripts/imageapi.lua on a free loopback port. Returns its endpoint
-- and a stop function.
local function start_bundled_api(key)
  local thread = require "thread"
  local ready = thread.channel()
  local t = thread.spawn{function(ch, k, dir)
    package.path = dir .. "/?.lua;" .. package.path
    local api = require "imageapi"
    local srv = assert(api.server{port = 0, key = k})
    ch:send(srv.endpoint)
    srv:serve()
    srv:close()
  end, ready, key, HERE, name = "imageapi", daemon = true}
  local endpoint = ready:recv(10)
  if not endpoint then fail("could not start the bundled image API") end
  return endpoint, function()
    http.get((endpoint:gsub("/meinv/$", "/shutdown")), {query = {key = key}, timeout = 5})
    t:join()
  end
end

-- ---- the list -------------------------------------------------------------

-- What tianapi's error codes mean (its messages are in Chinese), and the
-- bundled API's messages word for word.
local API_CODES = {
  [100] = "internal server error", [110] = "this API is offline",
  [120] = "this API is under maintenance", [130] = "too many calls too fast",
  [140] = "no permission to call this API", [150] = "no calls left",
  [160] = "the account has not applied for this API",
  [170] = "the Referer is not allowed", [180] = "the IP address is not allowed",
  [190] = "this key cannot be used", [230] = "wrong or empty key",
  [240] = "the key parameter is missing", [250] = "no data",
  [260] = "a parameter is empty", [270] = "a parameter's value is wrong",
  [280] = "a required parameter is missing", [290] = "input too long",
}
local API_MESSAGES = {
  ["key错误或为空"] = "wrong or empty key", ["num参数错误"] = "wrong num parameter",
}
local KEY_CODES = {[190] = true, [230] = true, [240] = true}

-- "error code 230: key错误或为空 (wrong or empty key)", and how to set the
-- key when the key is what is wrong.
local function api_error(code, msg)
  local english = API_MESSAGES[msg] or API_CODES[code]
  local text = string.format("error code %s: %s", tostring(code), tostring(msg))
  if english and english ~= msg then text = text .. " (" .. english .. ")" end
  if KEY_CODES[code] then
    text = text .. "; the key is --key K, else $IMAGEAPI_KEY, else " .. imageapi.DEFAULT_KEY ..
      " (what imageapi.lua accepts by default)"
  end
  return text
end

-- Fetches and checks the image list; exits 1 with a clear message when the
-- API fails, answers non-JSON, an error code, or a list without picUrl.
local function fetch_list(o)
  local res, msg = http.get(o.api, {query = {key = o.key, num = o.num},
    user_agent = USER_AGENT, timeout = o.timeout, retries = o.retries - 1,
    retry_backoff = 0.2})
  if not res then fail("cannot reach the API %s: %s", o.api, msg) end
  if res.status ~= 200 then fail("the API %s answered HTTP %d %s", o.api, res.status, res.reason) end
  local ok, data = pcall(res.json, res)
  if not ok or type(data) ~= "table" then
    fail("the API %s did not answer JSON (got %q...)", o.api, res.body:sub(1, 40))
  end
  if data.code ~= 200 then
    local code = math.type(data.code) == "float" and math.tointeger(data.code) or data.code
    fail("the API %s answered %s", o.api, api_error(code, data.msg))
  end
  if type(data.newslist) ~= "table" then fail("the API %s answered no newslist", o.api) end
  local urls, missing = {}, 0
  for i, item in ipairs(data.newslist) do
    if type(item) == "table" and type(item.picUrl) == "string" and item.picUrl ~= "" then
      urls[#urls + 1] = item.picUrl
    else
      missing = missing + 1
      io.stderr:write(string.format("netlua: entry %d of the list from %s has no picUrl\n", i, o.api))
    end
  end
  if #urls == 0 then fail("the list from %s holds no picUrl", o.api) end
  return urls, missing
end

-- ---- file names -------------------------------------------------------------

-- A safe file name from a URL's last path segment, decoded (filenames.clean
-- says what safe means); image-NNN when nothing readable is left.
local function safe_name(url, i)
  local path = url:match("^%a[%w+.-]*://[^/?#]*([^?#]*)") or url:match("^([^?#]*)")
  local seg = filenames.clean(http.unescape(path:match("([^/]*)$") or ""))
  if not filenames.readable(seg) then seg = string.format("image-%03d", i) end
  return seg
end

-- Names for every URL; a name already taken gets -2, -3 ... before its
-- extension (the stem shortened if need be), so no download overwrites
-- another.
local function unique_names(urls)
  local used, names = {}, {}
  for i, url in ipairs(urls) do
    local name = safe_name(url, i)
    local stem, ext = filenames.split_ext(name)
    local n = 1
    while used[name] do
      n = n + 1
      name = filenames.fit(stem, "-" .. n, ext)
    end
    used[name], names[i] = true, name
  end
  return names
end

-- ---- progress -------------------------------------------------------------

local function human(bytes)
  if bytes < 1024 then return string.format("%d B", math.floor(bytes)) end
  if bytes < 1024 * 1024 then return string.format("%.1f KiB", bytes / 1024) end
  return string.format("%.1f MiB", bytes / 1024 / 1024)
end

local is_tty = os.execute("test -t 1") == true

local function progress(done, total, bytes, started)
  if not is_tty then return end
  local width = 30
  local filled = math.floor(width * done / math.max(total, 1))
  local rate = bytes / math.max(time.monotonic() - started, 1e-3)
  io.stdout:write(string.format("\r[%s%s] %d/%d files  %s  %s/s ", string.rep("#", filled),
    string.rep("-", width - filled), done, total, human(bytes), human(rate)))
  io.stdout:flush()
end

-- ---- downloading ------------------------------------------------------------

-- Downloads every URL, at most --threads at a time (libcurl's multi
-- interface in this thread; the bar moves as each file is final). Returns
-- the failures ({url, reason}), the bytes saved and the time taken.
local function download_all(o, urls, names)
  local started, bytes, done, failures = time.monotonic(), 0, 0, {}
  local list = {}
  for i, url in ipairs(urls) do
    list[i] = {url = url, output = o.out .. "/" .. names[i], user_agent = USER_AGENT,
      timeout = o.timeout, retries = o.retries - 1, retry_backoff = 0.2,
      max_body = o.max_size}
  end
  local too_large = "larger than --max-size " .. human(o.max_size) .. ", stopped"
  progress(0, #urls, 0, started)
  http.request_many(list, {concurrency = o.threads, progress = function(i, res, msg, code)
    if res then bytes = bytes + (res.bytes or 0)
    else
      if code == "CURLE_FILESIZE_EXCEEDED" then msg = too_large end
      failures[#failures + 1] = {i, urls[i], msg}
    end
    done = done + 1
    progress(done, #urls, bytes, started)
  end})
  if is_tty then io.stdout:write("\n") end
  table.sort(failures, function(a, b) return a[1] < b[1] end)
  for k, f in ipairs(failures) do failures[k] = {f[2], f[3]} end
  return failures, bytes, time.monotonic() - started
end

local function main(...)
  local o = parse_args({...})
  local stop
  o.key = imageapi.key(o.key)
  if not o.api then
    o.api, stop = start_bundled_api(o.key)
    print("started the bundled image API at " .. o.api)
  end
  local ok, err = pcall(function()
    local urls, missing = fetch_list(o)
    local names = unique_names(urls)
    if os.execute("mkdir -p " .. quote(o.out)) ~= true then fail("cannot create %s", o.out) end
    print(string.format("downloading %d image%s into %s (%d at a time)", #urls,
      #urls == 1 and "" or "s", o.out, o.threads))
    local failures, bytes, elapsed = download_all(o, urls, names)
    print(string.format("downloaded %d of %d images, %s in %.2f s (%s/s) into %s",
      #urls - #failures, #urls + missing, human(bytes), elapsed,
      human(bytes / math.max(elapsed, 1e-3)), o.out))
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
