-- gallery.lua: the image downloader as a web application (browser/server).
--
-- usage: netlua scripts/gallery.lua [--host H] [--port P] [--out DIR]
--
-- The page at / (scripts/web/gallery.html) shows the images already in
-- --out (default ./downloads) and has a form that starts a download run:
-- the list's URL (the bundled image API by default, so it works offline),
-- how many images, how many at once. The run goes on in a task on the
-- server; every page that is open hears about it as it happens through
-- server-sent events (GET /events), so each image appears as it lands and
-- an error shows up on the page. The downloading itself is download.lua's,
-- the module downloader.lua uses too.
--
--   GET  /                 the page
--   GET  /api/images       {"images": [names in --out]}
--   GET  /images/NAME      one image from --out
--   POST /download         form fields api, num, concurrency: 202 {"run": n},
--                          400 {"error": why}, 409 when a run is going
--   GET  /events           the event stream: start, image, failed, done, problem
local HERE = (arg and arg[0] and arg[0]:match("^(.*)/[^/]*$")) or "."
package.path = HERE .. "/?.lua;" .. package.path

local http = require "http"
local json = require "json"
local task = require "task"
local thread = require "thread"
local cli = require "cli"
local imageapi = require "imageapi"
local dl = require "download"

local MAX_NUM = imageapi.MAX_NUM  -- the bundled API gives at most 50
local MAX_CONCURRENCY = 16
local MAX_URL = 2048
local MAX_WATCHERS = 64           -- pages listening to /events at once
local BACKLOG = 256               -- events queued for one slow page before it is dropped
local KEEPALIVE = 5               -- seconds between comments on a quiet stream (a page
                                  -- that went away is noticed by the second)
local IMAGE_EXT = {png = true, jpg = true, jpeg = true, gif = true, webp = true, bmp = true}

local SPEC = {
  usage = "netlua scripts/gallery.lua [--host H] [--port P] [--out DIR]",
  help = "The image downloader as a web page: open http://HOST:PORT/ in a browser.\n" ..
    "It shows the images in --out and starts download runs from a form; the\n" ..
    "progress is pushed to the page as it happens (server-sent events).\n\n" ..
    "  --host H   address to listen on (default 127.0.0.1)\n" ..
    "  --port P   port (default 8080; 0 picks a free one)\n" ..
    "  --out DIR  where the images are (default ./downloads)\n",
  options = {host = {"host", "127.0.0.1"}, port = {"port", 8080}, out = {"text", "./downloads"}},
}

-- ---- the pages that listen ----------------------------------------------------

local watchers, nwatchers = {}, 0 -- outbox (a bounded thread.channel) -> true

-- Queues an event for every page; a page whose backlog is full has stopped
-- reading: its outbox is closed, and its stream ends.
local function broadcast(event, data)
  for outbox in pairs(watchers) do
    if not outbox:send({event = event, data = data}, 0) then outbox:close() end
  end
end

-- One page's event stream: what broadcast queues for it, and a comment
-- when it is quiet, which is how a page that went away is noticed.
local function stream_events(req, current)
  if nwatchers >= MAX_WATCHERS then return 503, {error = "too many pages are listening"} end
  local events = req:sse{retry = 2000, heartbeat = false} -- the loop below keeps it alive
  local outbox = thread.channel(BACKLOG)
  watchers[outbox], nwatchers = true, nwatchers + 1
  local ok = true
  if current() then ok = events:send{event = "start", data = current()} end
  while ok do
    local ev, err = outbox:recv(KEEPALIVE)
    if ev then ok = events:send(ev)
    elseif err == "timeout" then ok = events:comment("keep-alive")
    else break end
  end
  watchers[outbox], nwatchers = nil, nwatchers - 1
  events:close()
end

-- ---- the images in --out ----------------------------------------------------

-- The image files in dir (regular files with an image extension, not
-- hidden: a download in progress is a hidden .NAME.part file), sorted.
local function list_images(dir)
  local p = io.popen("find " .. cli.shellquote(dir) ..
    " -mindepth 1 -maxdepth 1 -type f -printf '%f\\0' 2>/dev/null")
  local all = p:read("a")
  p:close()
  local names = setmetatable({}, json.array_mt) -- [] in JSON even when empty
  for name in all:gmatch("([^%z]+)%z") do
    local ext = name:match("%.(%w+)$")
    if name:sub(1, 1) ~= "." and ext and IMAGE_EXT[ext:lower()] and utf8.len(name) then
      names[#names + 1] = name
    end
  end
  table.sort(names)
  return names
end

-- ---- the form -----------------------------------------------------------------

-- A whole number from lo to hi given as text, or nil and why.
local function whole(fields, name, lo, hi)
  local n = math.tointeger(tonumber(fields[name] or ""))
  if n and n >= lo and n <= hi then return n end
  return nil, string.format("%s must be a whole number from %d to %d, not '%s'",
    name, lo, hi, tostring(fields[name] or ""):sub(1, 40))
end

-- The run the form asks for: {api=, num=, threads=}, or nil and why.
local function read_form(req, default_api)
  local f, why = req:form()
  if not f then return nil, why end
  local api = f.api or ""
  if api == "" then api = default_api end
  if #api > MAX_URL then return nil, "the API URL is longer than " .. MAX_URL .. " bytes" end
  if not api:find("^[hH][tT][tT][pP][sS]?://[^%s/?#]+[^%s]*$") then
    return nil, string.format("the API URL must start with http:// or https://, not '%s'", api:sub(1, 60))
  end
  local num, nwhy = whole(f, "num", 1, MAX_NUM)
  if not num then return nil, nwhy end
  local threads, twhy = whole(f, "concurrency", 1, MAX_CONCURRENCY)
  if not threads then return nil, twhy end
  return {api = api, num = num, threads = threads}
end

-- ---- a download run -------------------------------------------------------------

-- Fetches the list and downloads it into out, telling every page as it
-- goes: start {run, api, num}, image {name, bytes} or failed {url, reason}
-- per file, then done {run, saved, failed, bytes, seconds}; problem {run,
-- message} when the run cannot go on.
local function run(o, id)
  local urls, skipped = dl.fetch_list(o)
  if not urls then return broadcast("problem", {run = id, message = skipped}) end
  local made, why = dl.mkdir(o.out)
  if not made then return broadcast("problem", {run = id, message = why}) end
  local names = dl.unique_names(urls)
  broadcast("start", {run = id, api = o.api, num = #urls})
  for _, i in ipairs(skipped) do
    broadcast("failed", {run = id, url = "list entry " .. i, reason = "no picUrl"})
  end
  local failures, bytes, secs = dl.download_all(o, urls, names, function(i, n, reason)
    if n then broadcast("image", {run = id, name = names[i], bytes = n})
    else broadcast("failed", {run = id, url = urls[i], reason = reason}) end
  end)
  print(string.format("run %d: %d of %d images saved into %s", id, #urls - #failures,
    #urls, o.out))
  broadcast("done", {run = id, saved = #urls - #failures, failed = #failures + #skipped,
    bytes = bytes, seconds = secs})
end

-- ---- the server ---------------------------------------------------------------

local function page(name)
  local f = assert(io.open(HERE .. "/web/" .. name, "rb"))
  local html = f:read("a")
  f:close()
  return html
end

local function main(...)
  local o = cli.parse({...}, SPEC)
  local made, why = dl.mkdir(o.out)
  if not made then cli.fail("%s", why) end
  local key = imageapi.key()
  local api, stop = dl.start_bundled_api(key)
  if not api then cli.fail("%s", stop) end
  local srv, msg = http.server{host = o.host, port = o.port}
  if not srv then
    stop()
    cli.fail("cannot listen on %s: %s", cli.where(o.host, o.port), msg)
  end
  io.stdout:setvbuf("line")
  print("listening on " .. cli.where(srv.host, srv.port))
  print("gallery of " .. o.out .. " at " .. srv.url .. "/ (the bundled image API at " .. api .. ")")

  -- the run going on ({run, api, num}), its task, and how many runs began
  local current, runner, runs = nil, nil, 0
  srv:route("GET", "/", function()
    return 200, page("gallery.html"), {["Content-Type"] = "text/html; charset=utf-8"}
  end)
  srv:route("GET", "/api/images", function()
    return {images = list_images(o.out), api = api}
  end)
  srv:static("/images", o.out)
  srv:route("GET", "/events", function(req) return stream_events(req, function() return current end) end)
  srv:route("POST", "/download", function(req)
    local r, bad = read_form(req, api)
    if not r then return 400, {error = bad} end
    if current then return 409, {error = "run " .. current.run .. " is still going"} end
    runs = runs + 1
    local id = runs
    current = {run = id, api = r.api, num = r.num}
    r.key, r.out, r.timeout, r.retries, r.max_size = key, o.out, 30, 2, 20 * 1024 * 1024
    runner = task.spawn(function()
      local ok, err = pcall(run, r, id)
      if not ok then broadcast("problem", {run = id, message = tostring(err)}) end
      current = nil
    end)
    return 202, {run = id}
  end)
  -- The server runs in a task and this waits for it, so Ctrl-C lands here:
  -- a run going on is cancelled (its downloads leave no partial files), the
  -- open streams are ended first (serve() waits for every handler).
  local server = task.spawn(srv.serve, srv)
  local waited, served, err = pcall(server.join, server) -- Ctrl-C: false, "interrupted"
  if runner then runner:cancel() end
  for outbox in pairs(watchers) do outbox:close() end
  srv:close()
  if not waited then served, err = server:join() end
  stop()
  if not served and err ~= "interrupted" then error(err, 0) end
end

main(...)
