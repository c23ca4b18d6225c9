-- imageapi.lua: a local stand-in for tianapi's image list API
-- (https://api.tianapi.com/meinv/?key=K&num=N), which the tutorial's
-- downloader reads. It answers in tianapi's shape and serves the images its
-- list points at: real PNG files it draws itself, distinct for each index.
--
-- As a script:  netlua scripts/imageapi.lua [--host H] [--port P] [--key K]
--                      [--portfile F] [--lifetime S] [--workers N]
--   (--portfile: write the port there, for --port 0; --lifetime: stop after
--   S seconds; --workers: serve from N threads, or "auto": one per core;
--   the key: --key, else $IMAGEAPI_KEY, else netlua-demo-key)
-- As a module:  local api = require "imageapi"
--               local srv = api.server{port = 0, key = "k"}  -- then srv:serve()
--               api.png(i)  -> the bytes of image i
local http = require "http"
local time = require "time"

local M = {}

M.DEFAULT_KEY = "netlua-demo-key"
M.MAX_NUM = 50
M.WIDTH, M.HEIGHT = 96, 64

-- ---- a small PNG writer: stored (uncompressed) deflate blocks ----------

local crc_table = {}
for n = 0, 255 do
  local c = n
  for _ = 1, 8 do
    if c & 1 == 1 then c = 0xEDB88320 ~ (c >> 1) else c = c >> 1 end
  end
  crc_table[n] = c
end

local function crc32(s)
  local c = 0xFFFFFFFF
  for i = 1, #s do c = crc_table[(c ~ s:byte(i)) & 0xFF] ~ (c >> 8) end
  return c ~ 0xFFFFFFFF
end
M.crc32 = crc32

local function adler32(s)
  local a, b = 1, 0
  for i = 1, #s do
    a = (a + s:byte(i)) % 65521
    b = (b + a) % 65521
  end
  return (b << 16) | a
end
M.adler32 = adler32

-- zlib stream of `data` in stored blocks of at most 65535 bytes.
local function zlib_stored(data)
  local parts = {"\x78\x01"}
  local pos, n = 1, #data
  repeat
    local len = math.min(65535, n - pos + 1)
    local final = (pos + len > n) and 1 or 0
    parts[#parts + 1] = string.pack("<BI2I2", final, len, len ~ 0xFFFF)
    parts[#parts + 1] = data:sub(pos, pos + len - 1)
    pos = pos + len
  until pos > n
  parts[#parts + 1] = string.pack(">I4", adler32(data))
  return table.concat(parts)
end

local function chunk(kind, data)
  return string.pack(">I4", #data) .. kind .. data .. string.pack(">I4", crc32(kind .. data))
end

-- An RGB image as PNG bytes; pixel(x, y) returns r, g, b (0..255).
function M.encode_png(width, height, pixel)
  local rows = {}
  for y = 0, height - 1 do
    local row = {"\0"} -- filter: none
    for x = 0, width - 1 do row[#row + 1] = string.char(pixel(x, y)) end
    rows[#rows + 1] = table.concat(row)
  end
  return "\x89PNG\r\n\x1a\n" ..
    chunk("IHDR", string.pack(">I4I4BBBBB", width, height, 8, 2, 0, 0, 0)) ..
    chunk("IDAT", zlib_stored(table.concat(rows))) ..
    chunk("IEND", "")
end

-- HSV (h in [0,1)) to RGB bytes.
local function hsv(h, s, v)
  local i = math.floor(h * 6) % 6
  local f = h * 6 - math.floor(h * 6)
  local p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
  local r, g, b
  if i == 0 then r, g, b = v, t, p elseif i == 1 then r, g, b = q, v, p
  elseif i == 2 then r, g, b = p, v, t elseif i == 3 then r, g, b = p, q, v
  elseif i == 4 then r, g, b = t, p, v else r, g, b = v, p, q end
  return math.floor(r * 255 + 0.5), math.floor(g * 255 + 0.5), math.floor(b * 255 + 0.5)
end

-- Image i: a diagonal gradient in a hue of its own, with i stripes.
function M.png(i)
  local hue = (i * 0.61803398875) % 1
  local stripes = (i % 9) + 1
  return M.encode_png(M.WIDTH, M.HEIGHT, function(x, y)
    local band = math.floor(x * stripes / M.WIDTH) % 2
    local v = 0.55 + 0.45 * (x + y) / (M.WIDTH + M.HEIGHT)
    return hsv((hue + band * 0.08) % 1, band == 1 and 0.35 or 0.85, v)
  end)
end

-- ---- the API ------------------------------------------------------------

local TITLES = {"Sunrise", "Harbour", "Meadow", "Lantern", "Orchard", "Glacier",
  "Canyon", "Festival", "Bamboo", "Lighthouse"}

-- The list entry for image i, in tianapi's shape.
local function entry(base, i, now)
  local title = TITLES[(i - 1) % #TITLES + 1]
  return {
    ctime = time.format("%Y-%m-%d %H:%M", now - i * 3600),
    title = string.format("%s #%d", title, i),
    description = "netlua bundled image API",
    picUrl = string.format("%s/images/meinv-%03d.png", base, i),
    url = string.format("%s/pages/%d.html", base, i),
  }
end

local function meinv(base, key)
  return function(req)
    if req.query.key ~= key then
      return {code = 230, msg = "key错误或为空"} -- tianapi: "wrong or empty key"
    end
    local num = tonumber(req.query.num or "10")
    if not num or num < 1 or num ~= math.floor(num) then
      return {code = 160, msg = "num参数错误"} -- "bad num parameter"
    end
    num = math.min(num, M.MAX_NUM)
    local list, now = {}, os.time()
    for i = 1, num do list[i] = entry(base, i, now) end
    return {code = 200, msg = "success", newslist = list}
  end
end

local function image(req)
  local i = tonumber(req.params.n)
  if not i or i < 1 or i > 1000 then return 404, "no such image\n" end
  return 200, M.png(i), {["Content-Type"] = "image/png",
    ["Cache-Control"] = "max-age=3600"}
end

local function page(req)
  local i = tonumber(req.params.n) or 0
  return 200, string.format('<!doctype html><title>image %d</title>' ..
    '<img src="/images/meinv-%03d.png">', i, i), {["Content-Type"] = "text/html; charset=utf-8"}
end

-- api.server{host=, port=, key=, workers=} -> http.server with the API's routes, or
-- nil, msg, code. `srv.url .. "/meinv/"` is the endpoint. A GET of
-- /shutdown?key=K closes it (for a server running in the background).
function M.server(opts)
  opts = opts or {}
  local key = opts.key or M.DEFAULT_KEY
  local srv, msg, code = http.server{host = opts.host or "127.0.0.1", port = opts.port or 0,
    workers = opts.workers}
  if not srv then return nil, msg, code end
  srv:route("GET", "/meinv/", meinv(srv.url, key))
  srv:route("GET", "/meinv", meinv(srv.url, key))
  srv:route("GET", "/images/meinv-:n.png", image)
  srv:route("GET", "/pages/:n.html", page)
  srv:route("GET", "/shutdown", function(req)
    if req.query.key ~= key then return 403, "forbidden\n" end
    srv:close()
    return "bye\n"
  end)
  srv.endpoint = srv.url .. "/meinv/"
  return srv
end

-- ---- as a script ----------------------------------------------------------

-- The key: --key, else the environment's IMAGEAPI_KEY, else the demo key
-- (downloader.lua takes its key the same way, so the two agree).
function M.key(given)
  local env = os.getenv("IMAGEAPI_KEY")
  return given or (env ~= "" and env) or M.DEFAULT_KEY
end

local function workers(s)
  if s == "auto" then return s end
  local n = math.tointeger(tonumber(s))
  if n and n >= 1 then return n end
  return nil, "a whole number from 1 up or auto"
end

local SPEC = {
  usage = "netlua scripts/imageapi.lua [--host H] [--port P] [--key K] [--portfile F]\n" ..
    "       [--lifetime S] [--workers N|auto]",
  help = "A local stand-in for tianapi's image list: GET /meinv/?key=K&num=N answers\n" ..
    "{\"code\":200,\"msg\":\"success\",\"newslist\":[...]} (at most 50), and the PNGs its\n" ..
    "picUrls name. A wrong key gets {\"code\":230,\"msg\":\"key错误或为空\"} (wrong or\n" ..
    "empty key), as tianapi answers.\n\n" ..
    "  --host H          the address to listen on (default 127.0.0.1)\n" ..
    "  --port P          the port (default 8000; 0 picks a free one)\n" ..
    "  --key K           the key it accepts (default: $IMAGEAPI_KEY, else\n" ..
    "                    " .. M.DEFAULT_KEY .. ", the downloader's default too)\n" ..
    "  --portfile F      write the port to F (for --port 0)\n" ..
    "  --lifetime S      stop after S seconds\n" ..
    "  --workers N|auto  serve from N threads (auto: one per core)\n",
  options = {host = {"host", "127.0.0.1"}, port = {"port", 8000}, key = {"text"},
    portfile = {"text"}, lifetime = {"seconds"}, workers = {workers}},
}

local function main(...)
  local cli = require "cli"
  local opts = cli.parse({...}, SPEC)
  opts.key = M.key(opts.key)
  local srv, msg = M.server(opts)
  if not srv then
    cli.fail("cannot listen on %s: %s", cli.where(opts.host, opts.port), msg)
  end
  if opts.portfile then
    local f = assert(io.open(opts.portfile .. ".tmp", "w"))
    f:write(srv.port)
    f:close()
    os.rename(opts.portfile .. ".tmp", opts.portfile)
  end
  print(string.format("image API on %s?key=%s&num=10 (Ctrl-C stops)", srv.endpoint, opts.key))
  io.stdout:flush()
  local ok, err = pcall(srv.serve, srv, {timeout = opts.lifetime})
  srv:close()
  if not ok and err ~= "interrupted" then error(err, 0) end
end

if ... ~= "imageapi" then main(...) end
return M
