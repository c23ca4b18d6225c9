-- download.lua: the image downloader's logic, shared by downloader.lua (the
-- command line) and gallery.lua (the web page): the bundled image API, the
-- tianapi-style list, safe file names, the downloads themselves. Not a
-- program: `require "download"` finds it next to those scripts.
--   local dl = require "download"
--   local urls, skipped = dl.fetch_list{api=, key=, num=, timeout=, retries=}
--   local failures, bytes, secs = dl.download_all(o, urls, dl.unique_names(urls), each)
local http = require "http"
local time = require "time"
local filenames = require "filenames"

local M = {}

-- This file's directory: the bundled API's thread requires imageapi from it.
local HERE = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."

M.USER_AGENT = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 " ..
  "(KHTML, like Gecko) Chrome/120.0 Safari/537.36"

-- ---- sizes ------------------------------------------------------------------

local SIZE_UNITS = {[""] = 1, K = 1024, M = 1024 ^ 2, G = 1024 ^ 3}

-- "20M" -> 20971520: bytes, or KiB, MiB, GiB with the suffix K, M or G
-- (k, 20MiB, 20MB and 20B read as binary units too); nil if malformed.
function M.parse_size(s)
  local n, unit = s:match("^(%d+%.?%d*)%s*([kKmMgG]?)i?[bB]?$")
  if not n then return nil end
  return math.floor(tonumber(n) * SIZE_UNITS[unit:upper()])
end

function M.human(bytes)
  if bytes < 1024 then return string.format("%d B", math.floor(bytes)) end
  if bytes < 1024 * 1024 then return string.format("%.1f KiB", bytes / 1024) end
  return string.format("%.1f MiB", bytes / 1024 / 1024)
end

-- ---- the bundled API, in the background -------------------------------------

-- Starts scripts/imageapi.lua on a free loopback port in a daemon thread.
-- Returns its endpoint and a stop function, or nil and a message.
function M.start_bundled_api(key)
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
  if not endpoint then return nil, "could not start the bundled image API" end
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
    text = text .. "; the key is --key K, else $IMAGEAPI_KEY, else " ..
      require("imageapi").DEFAULT_KEY .. " (what imageapi.lua accepts by default)"
  end
  return text
end

-- Fetches and checks the image list at o.api (o.key, o.num, o.timeout,
-- o.retries). Returns the picUrls and the list indexes of the entries
-- without one; or nil and a clear message when the API fails, answers
-- non-JSON, an error code, or a list without any picUrl.
function M.fetch_list(o)
  local res, msg = http.get(o.api, {query = {key = o.key, num = o.num},
    user_agent = M.USER_AGENT, timeout = o.timeout, retries = o.retries - 1,
    retry_backoff = 0.2})
  local function fail(fmt, ...) return nil, string.format(fmt, o.api, ...) end
  if not res then return fail("cannot reach the API %s: %s", msg) end
  if res.status ~= 200 then return fail("the API %s answered HTTP %d %s", res.status, res.reason) end
  local ok, data = pcall(res.json, res)
  if not ok or type(data) ~= "table" then
    return fail("the API %s did not answer JSON (got %q...)", res.body:sub(1, 40))
  end
  if data.code ~= 200 then
    local code = math.type(data.code) == "float" and math.tointeger(data.code) or data.code
    return fail("the API %s answered %s", api_error(code, data.msg))
  end
  if type(data.newslist) ~= "table" then return fail("the API %s answered no newslist") end
  local urls, skipped = {}, {}
  for i, item in ipairs(data.newslist) do
    if type(item) == "table" and type(item.picUrl) == "string" and item.picUrl ~= "" then
      urls[#urls + 1] = item.picUrl
    else
      skipped[#skipped + 1] = i
    end
  end
  if #urls == 0 then return fail("the list from %s holds no picUrl") end
  return urls, skipped
end

-- ---- file names -------------------------------------------------------------

-- A safe file name from a URL's last path segment, decoded (filenames.clean
-- says what safe means, for p2p.lua too); image-NNN when nothing readable
-- is left.
function M.safe_name(url, i)
  local path = url:match("^%a[%w+.-]*://[^/?#]*([^?#]*)") or url:match("^([^?#]*)")
  local seg = filenames.clean(http.unescape(path:match("([^/]*)$") or ""))
  if not filenames.readable(seg) then seg = string.format("image-%03d", i) end
  return seg
end

-- Names for every URL; a name already taken gets -2, -3 ... before its
-- extension (the stem shortened if need be), so no download overwrites
-- another.
function M.unique_names(urls)
  local used, names = {}, {}
  for i, url in ipairs(urls) do
    local name = M.safe_name(url, i)
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

-- ---- downloading ------------------------------------------------------------

-- Creates dir and its parents; true, or nil and a message.
function M.mkdir(dir)
  if os.execute("mkdir -p -- " .. require("cli").shellquote(dir) .. " 2>/dev/null") == true then
    return true
  end
  return nil, "cannot create " .. dir
end

-- Downloads every URL into o.out under names[i], at most o.threads at a
-- time (libcurl's multi interface; in a task only the task waits), each
-- with o.timeout, o.retries tries and o.max_size. each(i, bytes) or
-- each(i, nil, reason) is called as each file is final. Returns the
-- failures ({url, reason}, in list order), the bytes saved and the time.
function M.download_all(o, urls, names, each)
  local started, bytes, failures = time.monotonic(), 0, {}
  local list = {}
  for i, url in ipairs(urls) do
    list[i] = {url = url, output = o.out .. "/" .. names[i], user_agent = M.USER_AGENT,
      timeout = o.timeout, retries = o.retries - 1, retry_backoff = 0.2,
      max_body = o.max_size}
  end
  local too_large = "larger than --max-size " .. M.human(o.max_size) .. ", stopped"
  http.request_many(list, {concurrency = o.threads, progress = function(i, res, msg, code)
    if res then
      bytes = bytes + (res.bytes or 0)
      if each then each(i, res.bytes or 0) end
    else
      if code == "CURLE_FILESIZE_EXCEEDED" then msg = too_large end
      failures[#failures + 1] = {i, urls[i], msg}
      if each then each(i, nil, msg) end
    end
  end})
  table.sort(failures, function(a, b) return a[1] < b[1] end)
  for k, f in ipairs(failures) do failures[k] = {f[2], f[3]} end
  return failures, bytes, time.monotonic() - started
end

return M
