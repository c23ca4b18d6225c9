-- wslib.lua: WebSocket frames written and read by hand (string.pack, not
-- netlua's codec) for the WebSocket tests, a raw client that does the
-- opening handshake over a plain socket, and the independent peers
-- (Python's websockets, Node's ws) those tests run.
local t = require "testlib"
local socket = require "socket"

local M = {}

M.PYTHON = "/usr/bin/python3"
-- tests/, as an absolute path (peers run in other directories).
local TESTS = arg[0]:match("^(.*)/[^/]*$") or "."
if TESTS:sub(1, 1) ~= "/" then TESTS = os.getenv("PWD") .. "/" .. TESTS end
M.NODE_PATH = TESTS .. "/../build/npm/node_modules"

M.OP = {cont = 0, text = 1, binary = 2, close = 8, ping = 9, pong = 10}

-- XOR with a 4-byte key, in Lua (small payloads only: the tests mask big
-- ones with the key "\0\0\0\0", which leaves them as they are).
local function mask(data, key)
  if key == "\0\0\0\0" then return data end
  local out = {}
  for i = 1, #data do
    out[i] = string.char(data:byte(i) ~ key:byte((i - 1) % 4 + 1))
  end
  return table.concat(out)
end

-- A frame: op (a number or a name of M.OP), payload; opts.fin (default
-- true), opts.rsv (0..7), opts.key (4 bytes; default a fixed one; false:
-- unmasked), opts.length (a length to claim instead of #payload).
function M.frame(op, payload, opts)
  opts = opts or {}
  op = M.OP[op] or op
  payload = payload or ""
  local key = opts.key
  if key == nil then key = "\55\11\200\3" end
  local len = opts.length or #payload
  local b1 = ((opts.fin == false) and 0 or 0x80) | ((opts.rsv or 0) << 4) | op
  local m = key and 0x80 or 0
  local head
  if len < 126 then head = string.pack("BB", b1, m | len)
  elseif len < 65536 then head = string.pack(">BBI2", b1, m | 126, len)
  else head = string.pack(">BBI8", b1, m | 127, len) end
  if key then return head .. key .. mask(payload, key) end
  return head .. payload
end

-- A close frame's payload: code (2 bytes) and reason.
function M.close_payload(code, reason)
  return string.pack(">I2", code) .. (reason or "")
end

-- Reads one frame -> {fin=, rsv=, op=, masked=, payload=} | nil, err.
function M.read_frame(sock)
  local head, err = sock:receive(2)
  if not head then return nil, err end
  local b1, b2 = head:byte(1, 2)
  local f = {fin = b1 >> 7 == 1, rsv = (b1 >> 4) & 7, op = b1 & 15, masked = b2 >> 7 == 1}
  local len = b2 & 127
  if len == 126 then len = string.unpack(">I2", assert(sock:receive(2)))
  elseif len == 127 then len = string.unpack(">I8", assert(sock:receive(8))) end
  local key = f.masked and assert(sock:receive(4))
  local payload = len > 0 and assert(sock:receive(len)) or ""
  f.payload = key and mask(payload, key) or payload
  return f
end

-- Reads frames until a close frame -> code (nil for an empty payload),
-- reason, the frames before it.
function M.read_close(sock)
  local before = {}
  while true do
    local f, err = M.read_frame(sock)
    if not f then error("no close frame: " .. tostring(err)) end
    if f.op == M.OP.close then
      if #f.payload < 2 then return nil, "", before end
      return string.unpack(">I2", f.payload), f.payload:sub(3), before
    end
    before[#before + 1] = f
  end
end

M.KEY = "dGhlIHNhbXBsZSBub25jZQ==" -- RFC 6455's example: accept s3pPLMBiTxaQ9kYGzzhZRbK+xOo=

-- The request head of an opening handshake; fields replace or remove
-- (false) the standard ones.
function M.request(path, fields)
  local f = {Host = "127.0.0.1", Upgrade = "websocket", Connection = "Upgrade",
    ["Sec-WebSocket-Key"] = M.KEY, ["Sec-WebSocket-Version"] = "13"}
  for k, v in pairs(fields or {}) do f[k] = v or nil end
  local lines = {"GET " .. path .. " HTTP/1.1"}
  for k, v in pairs(f) do lines[#lines + 1] = k .. ": " .. v end
  return table.concat(lines, "\r\n") .. "\r\n\r\n"
end

-- Reads a reply head -> status (number), fields (lower-case names).
function M.read_head(sock)
  local status = tonumber(assert(sock:receive("*l")):match("^HTTP/1%.1 (%d+)"))
  local fields = {}
  while true do
    local line = assert(sock:receive("*l"))
    if line == "" then return status, fields end
    local k, v = line:match("^([^:]+):%s*(.*)$")
    fields[k:lower()] = v
  end
end

-- A raw client that has done the opening handshake on 127.0.0.1:port:
-- sock, status, fields. `head` (a string) replaces the request.
function M.handshake(port, path, fields, head)
  local c = t.connect(port)
  assert(c:send(head or M.request(path or "/ws", fields)))
  local status, reply = M.read_head(c)
  return c, status, reply
end

-- ---- the independent peers ------------------------------------------------------

-- Why the Python peer cannot run, or nil.
function M.python_missing()
  if not os.execute(M.PYTHON .. " -c 'import websockets' 2>/dev/null") then
    return "Python's websockets is not installed (make deps: python3-websockets)"
  end
end

-- Why the Node peer cannot run, or nil.
function M.node_missing()
  if not t.have("node") then return "node is not installed" end
  if not os.execute("NODE_PATH=" .. t.shellquote(M.NODE_PATH) .. " node -e 'require(\"ws\")' 2>/dev/null") then
    return "Node's ws is not installed (make deps: npm install --prefix build/npm ws)"
  end
end

-- The command line that runs fixture `name` (ws_peer.py, ws_peer.js)
-- with args (already quoted).
function M.peer_cmd(name, args)
  local fixtures = TESTS .. "/fixtures/"
  if name:match("%.js$") then
    return "NODE_PATH=" .. t.shellquote(M.NODE_PATH) .. " node " .. t.shellquote(fixtures .. name) .. " " .. args
  end
  return M.PYTHON .. " " .. t.shellquote(fixtures .. name) .. " " .. args
end

return M
