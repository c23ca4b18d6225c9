-- websocket.lua: the websocket module's Lua half (layer: bindings): the
-- protocol of RFC 6455 over the frame codec of bindings/websocket.c. One
-- WebSocket class serves both sides; only the direction of masking
-- differs. The server side upgrades an http.server request (req:socket()
-- takes the connection over), the client side connects with socket or ssl.
--
--   ws:receive([timeout]) -> message, "text"|"binary"
--                          | nil, "timeout" | nil, "closed", code, reason
--   ws:send(data[, "text"|"binary"]) -> true | nil, err
--   ws:ping([data]) -> true | nil, err
--   ws:close([code[, reason]]) -> true (the closing handshake)
--
-- Every way a connection ends is `nil, "closed", code, reason`: the peer's
-- close code and reason, or the one we closed with (1002 protocol error,
-- 1007 invalid UTF-8, 1009 too big, 1006 connection lost, ...).
local codec = ...
local crypto = require "crypto"
local time = require "time"
local task = require "task"

local type, tostring, error, pairs, ipairs, setmetatable = type, tostring, error, pairs, ipairs, setmetatable
local format, concat, spack, sunpack = string.format, table.concat, string.pack, string.unpack

local M = {_NAME = "websocket", MAX_MESSAGE = 1048576, CLOSE_TIMEOUT = 5}

local GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
local CONT, TEXT, BINARY, CLOSE, PING, PONG = 0, 1, 2, 8, 9, 10
local KIND = {[TEXT] = "text", [BINARY] = "binary"}
local OPNAME = {[CONT] = "continuation", [TEXT] = "text", [BINARY] = "binary", [CLOSE] = "close",
  [PING] = "ping", [PONG] = "pong"}

-- Sec-WebSocket-Accept for a Sec-WebSocket-Key.
function M.accept_key(key)
  return crypto.base64(crypto.digest("sha1", key .. GUID))
end

-- Close codes an endpoint may send or receive (RFC 6455 7.4 and the IANA
-- registry): 1005, 1006 and 1015 only ever describe a close, never travel.
local function valid_code(code)
  return (code >= 1000 and code <= 1003) or (code >= 1007 and code <= 1014) or
         (code >= 3000 and code <= 4999)
end

local function is_utf8(s) return codec.utf8(0, s) == 0 end

-- ---- the WebSocket object ------------------------------------------------------

local WebSocket = {}
WebSocket.__index = WebSocket
WebSocket.__name = "websocket"

-- sock: a connected tcp{client} or ssl connection; client: true when we
-- are the client (we mask, the peer must not).
local function new(sock, client, opts)
  return setmetatable({sock = sock, client = client, partial = "",
    max_message = opts.max_message or M.MAX_MESSAGE,
    close_timeout = opts.close_timeout or M.CLOSE_TIMEOUT,
    send_timeout = opts.send_timeout, protocol = opts.protocol,
    msg_len = 0, send_lock = task.semaphore(1),
    fd = codec.tracing and sock:getfd() or nil}, WebSocket)
end

-- --trace: a frame sent or received ("ws_send", "ws_recv").
local function trace_frame(self, name, op, fin, len)
  codec.trace(name, self.fd, "opcode", OPNAME[op] or tostring(op), "fin", fin, "bytes", len)
end

-- Each socket call here first sets its own timeout, what is left before its
-- deadline: the receiving and the sending task share the socket, and a call
-- keeps the timeout the socket had when it began.
local function settimeout(sock, deadline)
  if deadline == nil then return sock:settimeout(-1) end
  local left = deadline - time.monotonic()
  sock:settimeout(left > 0 and left or 0)
end

local function expired(deadline)
  return deadline ~= nil and time.monotonic() >= deadline
end

-- The connection is over: the socket closes, and every later receive
-- answers nil, "closed", code, reason.
local function finish(self, code, reason)
  if not self.closed then
    self.closed, self.close_code, self.close_reason = true, code, reason
    self.sock:close()
  end
  return nil, "closed", self.close_code, self.close_reason
end

-- Writes a whole frame in one send. A send that gives up half-way (its
-- send_timeout) ends the connection: the rest of a frame can never follow
-- another one.
local function write_frame(self, frame)
  local sock = self.sock
  settimeout(sock, self.send_timeout and time.monotonic() + self.send_timeout)
  local last, err, sent = sock:send(frame)
  if last then return true end
  if (sent or 0) > 0 then finish(self, 1006, "send failed: " .. err) end
  return nil, err
end

-- One frame at a time: the sending task holds the WebSocket's send lock
-- until its whole frame is out, so frames of tasks sharing the WebSocket
-- never interleave (a socket send that stops at a timeout would let
-- another task's send in).
local function frame_of(self, opcode, payload)
  return codec.frame(opcode, true, payload, self.client and crypto.random(4) or nil)
end

local function send_frame(self, opcode, payload)
  if self.closed then return nil, "closed" end
  local ok, err = self.send_lock:with(write_frame, self, frame_of(self, opcode, payload))
  if ok and codec.tracing then trace_frame(self, "ws_send", opcode, 1, #payload) end
  return ok, err
end

-- Fails the connection (RFC 6455 7.1.7): our close frame with code and the
-- reason (cut to the 123 bytes a control frame has room for) unless
-- another task is in the middle of a frame, then the socket closes.
local function fail(self, code, reason)
  if not self.closed and not self.close_sent then
    self.close_sent = true
    if self.send_lock:tryacquire() then
      local ok, err = pcall(write_frame, self, frame_of(self, CLOSE, spack(">I2", code) .. reason:sub(1, 123)))
      self.send_lock:release()
      if not ok then -- Ctrl-C
        finish(self, code, reason)
        error(err, 0)
      end
    end
  end
  return finish(self, code, reason)
end

-- n bytes from the socket, or nil, err. What arrived before a timeout is
-- kept and the next call goes on from there.
local function read_exact(self, n, deadline)
  local have = self.partial
  while #have < n do
    settimeout(self.sock, deadline)
    local data, err, part = self.sock:receive(n - #have)
    if data then
      self.partial = ""
      return have .. data
    end
    have = have .. (part or "")
    if err ~= "timeout" or expired(deadline) then
      self.partial = have
      return nil, err
    end
  end
  return have
end

-- What a frame header may not say, as the reason of a 1002 (or 1009)
-- close; nil when the frame is acceptable here.
local function refuse(self, fin, rsv, op, key, len)
  if rsv ~= 0 then return 1002, "protocol error: reserved bits set (no extension was agreed)" end
  if op > PONG or (op > BINARY and op < CLOSE) then
    return 1002, format("protocol error: unknown opcode %d", op)
  end
  if self.client and key then return 1002, "protocol error: masked frame from server" end
  if not self.client and not key then return 1002, "protocol error: unmasked frame from client" end
  if op >= CLOSE then
    if fin == 0 then return 1002, "protocol error: fragmented control frame" end
    if len > 125 then return 1002, format("protocol error: control frame of %d bytes (at most 125)", len) end
    return nil
  end
  if op == CONT and self.msg_op == nil then
    return 1002, "protocol error: continuation frame without a message to continue"
  end
  if op ~= CONT and self.msg_op ~= nil then
    return 1002, "protocol error: new message before the previous one ended"
  end
  if len > self.max_message - self.msg_len then -- (a sum could overflow)
    return 1009, format("message too big (over %d bytes)", self.max_message)
  end
end

-- The next frame: opcode, fin, payload (unmasked); or nil, err (the
-- socket's "timeout" or "closed"); or false, code, reason (refused).
local function read_frame(self, deadline)
  local h = self.header
  if h == nil then
    local need = 2
    while true do
      local head, err = read_exact(self, need, deadline)
      if not head then return nil, err end
      local fin, rsv, op, _, len, key = codec.parse(head)
      if fin == false then return false, 1002, "protocol error: " .. rsv end
      if fin ~= nil then
        self.partial = ""
        local code, why = refuse(self, fin, rsv, op, key, len)
        if code then return false, code, why end
        h = {fin = fin, op = op, key = key, len = len}
        self.header = h
        break
      end
      self.partial, need = head, rsv -- rsv: the header's whole size
    end
  end
  local payload, err = read_exact(self, h.len, deadline)
  if not payload then return nil, err end
  self.partial, self.header = "", nil
  if h.key then payload = codec.unmask(payload, h.key) end
  if codec.tracing then trace_frame(self, "ws_recv", h.op, h.fin, #payload) end
  return h.op, h.fin, payload
end

-- A close frame's payload -> code, reason; or false, code, reason.
local function close_payload(payload)
  if #payload == 0 then return 1005, "" end
  if #payload == 1 then return false, 1002, "protocol error: close frame with a 1-byte payload" end
  local code, reason = sunpack(">I2", payload), payload:sub(3)
  if not valid_code(code) then return false, 1002, format("protocol error: invalid close code %d", code) end
  if not is_utf8(reason) then return false, 1007, "invalid UTF-8 in a close reason" end
  return code, reason
end

-- The peer's close frame: answered with its code and reason (unless we
-- closed first), then the connection is over.
local function on_close(self, payload)
  local code, reason, why = close_payload(payload)
  if code == false then return fail(self, reason, why) end
  if not self.close_sent then
    self.close_sent = true
    send_frame(self, CLOSE, code == 1005 and "" or spack(">I2", code) .. reason)
  end
  return finish(self, code, reason)
end

-- A data frame's payload joins the message; the message when it is whole.
local function on_data(self, op, fin, payload)
  if op ~= CONT then self.msg_op, self.parts, self.utf8 = op, {}, 0 end
  if self.msg_op == TEXT then
    self.utf8 = codec.utf8(self.utf8, payload)
    if self.utf8 == nil or (fin == 1 and self.utf8 ~= 0) then
      return fail(self, 1007, "invalid UTF-8 in a text message")
    end
  end
  local parts = self.parts
  parts[#parts + 1] = payload
  self.msg_len = self.msg_len + #payload
  if fin == 0 then return nil end
  local kind = KIND[self.msg_op]
  local message = #parts == 1 and parts[1] or concat(parts)
  self.msg_op, self.parts, self.msg_len = nil, nil, 0
  return message, kind
end

-- Frames until a whole message, the end of the connection or the deadline.
local function receive_message(self, deadline)
  while true do
    local op, fin, payload = read_frame(self, deadline)
    if op == nil then
      if fin == "timeout" then return nil, "timeout" end
      return finish(self, 1006, "connection lost")
    elseif op == false then
      return fail(self, fin, payload)
    elseif op == PING then
      if not self.close_sent then send_frame(self, PONG, payload) end
    elseif op == CLOSE then
      return on_close(self, payload)
    elseif op ~= PONG then
      local message, kind, code, reason = on_data(self, op, fin, payload)
      if message ~= nil then return message, kind end
      if kind ~= nil then return nil, kind, code, reason end
    end
  end
end

-- receive's results as they are, once the WebSocket is free for the next
-- receive; an error (Ctrl-C) ends the connection and goes on up.
local function received(self, ok, ...)
  self.receiving = false
  if not ok then
    finish(self, 1006, "interrupted")
    error((...), 0)
  end
  return ...
end

function WebSocket:receive(timeout)
  if self.closed then return nil, "closed", self.close_code, self.close_reason end
  if self.receiving then error("websocket: another task is receiving on this WebSocket", 2) end
  if timeout ~= nil and type(timeout) ~= "number" then
    error(format("bad argument #1 to 'receive' (number expected, got %s)", type(timeout)), 2)
  end
  self.receiving = true
  return received(self, pcall(receive_message, self, timeout and time.monotonic() + timeout))
end

function WebSocket:send(data, kind)
  if type(data) ~= "string" then
    error(format("bad argument #1 to 'send' (string expected, got %s)", type(data)), 2)
  end
  kind = kind or "text"
  if kind ~= "text" and kind ~= "binary" then
    error(format("bad argument #2 to 'send' (\"text\" or \"binary\" expected, got %s)", tostring(kind)), 2)
  end
  if kind == "text" and not is_utf8(data) then
    error("bad argument #1 to 'send' (a text message must be UTF-8: send it as \"binary\")", 2)
  end
  if self.closed or self.close_sent then return nil, "closed" end
  return send_frame(self, kind == "text" and TEXT or BINARY, data)
end

function WebSocket:ping(data)
  data = data or ""
  if type(data) ~= "string" or #data > 125 then
    error("bad argument #1 to 'ping' (a string of at most 125 bytes expected)", 2)
  end
  if self.closed or self.close_sent then return nil, "closed" end
  return send_frame(self, PING, data)
end

-- ws:close([code[, reason]]): sends our close frame, then waits (at most
-- close_timeout seconds) for the peer's, dropping messages that arrive
-- meanwhile, and closes the socket. While another task receives, that task
-- finishes the handshake (its receive returns nil, "closed", ...).
function WebSocket:close(code, reason)
  code, reason = code or 1000, reason or ""
  if math.type(code) ~= "integer" or not valid_code(code) then
    error(format("bad argument #1 to 'close' (a close code 1000-1003, 1007-1014 or 3000-4999 expected, got %s)",
      tostring(code)), 2)
  end
  if type(reason) ~= "string" or #reason > 123 or not is_utf8(reason) then
    error("bad argument #2 to 'close' (a UTF-8 reason of at most 123 bytes expected)", 2)
  end
  if self.closed then return true end
  if not self.close_sent then
    self.close_sent = true
    if not send_frame(self, CLOSE, spack(">I2", code) .. reason) then
      finish(self, code, reason)
      return true
    end
  end
  if self.receiving then return true end
  self.receiving = true
  local deadline = time.monotonic() + self.close_timeout
  local ok = pcall(function()
    repeat local message, kind = receive_message(self, deadline) until message == nil and kind ~= nil
  end)
  self.receiving = false
  finish(self, code, reason)
  if not ok then error("interrupted", 0) end
  return true
end

-- Ends the connection at once, without a closing handshake.
function WebSocket:abort()
  finish(self, 1006, "aborted")
end

function WebSocket:getpeername() return self.sock:getpeername() end

WebSocket.__close = function(self) if not self.closed then self:close() end end
WebSocket.__gc = nil

M.new = new

-- ---- the server side: upgrading an http.server request ------------------------

-- Whether a comma-separated header value holds token (any case).
local function has_token(value, token)
  for item in (value or ""):gmatch("[^,]+") do
    if item:match("^%s*(.-)%s*$"):lower() == token then return true end
  end
  return false
end

-- Why req is not a WebSocket handshake we accept, as a reply.
local function refuse_request(req)
  local h = req.headers
  if req.method ~= "GET" then return 400, "a WebSocket handshake is a GET request\n" end
  if not has_token(h.upgrade, "websocket") then
    return 400, "not a WebSocket handshake (no Upgrade: websocket)\n"
  end
  if not has_token(h.connection, "upgrade") then
    return 400, "not a WebSocket handshake (no Connection: Upgrade)\n"
  end
  if h["sec-websocket-version"] ~= "13" then
    return 426, "unsupported WebSocket version (13 expected)\n", {["Sec-WebSocket-Version"] = "13"}
  end
  local key = h["sec-websocket-key"]
  local raw = key and crypto.unbase64(key)
  if raw == nil or #raw ~= 16 then
    return 400, "bad Sec-WebSocket-Key (16 bytes in base64 expected)\n"
  end
end

-- The first protocol the client offers that we support, or nil.
local function choose_protocol(offered, supported)
  if offered == nil or supported == nil then return nil end
  for item in offered:gmatch("[^,]+") do
    local name = item:match("^%s*(.-)%s*$")
    for _, p in ipairs(supported) do
      if p == name then return name end
    end
  end
end

local SERVER_OPTIONS = {max_message = "number", protocols = "table", close_timeout = "number",
  send_timeout = "number"}
local CLIENT_OPTIONS = {max_message = "number", protocols = "table", close_timeout = "number",
  send_timeout = "number", timeout = "number", headers = "table", cafile = "string",
  verify = "boolean"}

local function check_options(opts, allowed, what, level)
  if opts == nil then return {} end
  if type(opts) ~= "table" then error(format("%s: options must be a table", what), level + 1) end
  for k, v in pairs(opts) do
    if allowed[k] == nil then error(format("%s: unknown option '%s'", what, tostring(k)), level + 1) end
    if type(v) ~= allowed[k] then
      error(format("%s: option '%s' must be a %s", what, k, allowed[k]), level + 1)
    end
  end
  if opts.max_message and (opts.max_message < 0 or opts.max_message ~= opts.max_message) then
    error(format("%s: option 'max_message' must be a size in bytes", what), level + 1)
  end
  return opts
end

-- websocket.upgrade(req[, opts]) -> ws | nil, status, body, headers: takes
-- req's connection over and answers 101, or says what to reply instead
-- (nil, nil, err: the connection failed while taking it over).
function M.upgrade(req, opts)
  opts = check_options(opts, SERVER_OPTIONS, "websocket.upgrade", 2)
  local status, body, headers = refuse_request(req)
  if status then return nil, status, body, headers end
  local protocol = choose_protocol(req.headers["sec-websocket-protocol"], opts.protocols)
  local sock, err = req:socket()
  if not sock then return nil, nil, err end
  local head = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" ..
    "Sec-WebSocket-Accept: " .. M.accept_key(req.headers["sec-websocket-key"]) .. "\r\n" ..
    (protocol and "Sec-WebSocket-Protocol: " .. protocol .. "\r\n" or "") .. "\r\n"
  local ok
  ok, err = sock:send(head)
  if not ok then
    sock:close()
    return nil, nil, err
  end
  return new(sock, false, {max_message = opts.max_message, close_timeout = opts.close_timeout,
    send_timeout = opts.send_timeout, protocol = protocol})
end

-- Upgrades req and runs handler(ws, req): when it returns the WebSocket
-- closes (1000); when it fails, the peer gets 1011 and the error goes on to
-- the server's log.
function M._handle(req, handler, opts)
  local ws, status, body, headers = M.upgrade(req, opts)
  if not ws then return status, body, headers end
  local ok, err = pcall(handler, ws, req)
  if not ok then
    if err == "interrupted" then ws:abort() else fail(ws, 1011, "internal error") end
    error(err, 0)
  end
  if not ws.closed then ws:close() end
end

-- The route handler of srv:websocket. Its only upvalues are the user's
-- handler and options: with workers it is copied into each thread, where
-- require finds this module again.
local function route(handler, opts)
  return function(req)
    return require("websocket")._handle(req, handler, opts)
  end
end

-- srv:websocket(path, handler[, opts]) (http.server calls this).
function M.serve(srv, path, handler, opts)
  if type(path) ~= "string" then error("bad argument #1 to 'websocket' (string expected)", 3) end
  if type(handler) ~= "function" then error("bad argument #2 to 'websocket' (function expected)", 3) end
  check_options(opts, SERVER_OPTIONS, "srv:websocket", 3)
  return srv:route("GET", path, route(handler, opts))
end

-- ---- the client side ------------------------------------------------------------

local MAX_HEAD_LINES, MAX_HEAD_LINE = 100, 8192

-- The reply head: status line, fields (lower-case names, repeats joined);
-- or nil, err.
local function read_head(sock)
  sock:setoption("max-line", MAX_HEAD_LINE)
  local status_line, err = sock:receive("*l")
  if not status_line then return nil, err end
  local fields = {}
  for _ = 1, MAX_HEAD_LINES do
    local line
    line, err = sock:receive("*l")
    if not line then return nil, err end
    if line == "" then
      sock:setoption("max-line", math.huge)
      return status_line, fields
    end
    local name, value = line:match("^([^:%s]+):%s*(.-)%s*$")
    if name then
      name = name:lower()
      fields[name] = fields[name] and fields[name] .. ", " .. value or value
    end
  end
  return nil, "reply head too long"
end

-- Why the server's reply does not complete the handshake, or nil.
local function refuse_reply(status_line, fields, key, offered)
  local code = status_line:match("^HTTP/1%.%d (%d%d%d)")
  if code ~= "101" then return format("websocket handshake failed: %s", status_line) end
  if not has_token(fields.upgrade, "websocket") then return "websocket handshake failed: no Upgrade: websocket" end
  if not has_token(fields.connection, "upgrade") then return "websocket handshake failed: no Connection: Upgrade" end
  if fields["sec-websocket-accept"] ~= M.accept_key(key) then
    return "websocket handshake failed: wrong Sec-WebSocket-Accept"
  end
  if fields["sec-websocket-extensions"] then
    return "websocket handshake failed: the server chose an extension we did not offer"
  end
  local protocol = fields["sec-websocket-protocol"]
  if protocol and choose_protocol(protocol, offered) ~= protocol then
    return format("websocket handshake failed: the server chose protocol '%s', which we did not offer", protocol)
  end
end

local function request_head(u, port, key, opts)
  local host = u.host:find(":", 1, true) and "[" .. u.host .. "]" or u.host
  local default = u.scheme == "wss" and 443 or 80
  local lines = {format("GET %s%s HTTP/1.1", u.raw_path ~= "" and u.raw_path or "/",
      u.query and "?" .. u.query or ""),
    "Host: " .. host .. (port ~= default and ":" .. port or ""),
    "Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Key: " .. key,
    "Sec-WebSocket-Version: 13"}
  if opts.protocols and #opts.protocols > 0 then
    lines[#lines + 1] = "Sec-WebSocket-Protocol: " .. concat(opts.protocols, ", ")
  end
  for k, v in pairs(opts.headers or {}) do
    k, v = tostring(k), tostring(v)
    if not k:find("^[%w!#$%%&'*+%-.^_`|~]+$") or v:find("[\r\n%z]") then
      error(format("websocket.connect: bad header '%s'", k), 3)
    end
    lines[#lines + 1] = k .. ": " .. v
  end
  return concat(lines, "\r\n") .. "\r\n\r\n"
end

-- A connected socket (tcp, or ssl for wss) or nil, err.
local function dial(u, port, opts)
  if u.scheme == "wss" then
    return require("ssl").connect(u.host, port, {cafile = opts.cafile,
      verify = opts.verify == false and "none" or nil, timeout = opts.timeout})
  end
  local socket = require "socket"
  local sock, err = socket.tcp()
  if not sock then return nil, err end
  if opts.timeout then sock:settimeout(opts.timeout) end
  local ok
  ok, err = sock:connect(u.host, port)
  if not ok then
    sock:close()
    return nil, err
  end
  return sock
end

-- websocket.connect(url[, opts]) (also http.websocket) -> ws | nil, err
function M.connect(url, opts)
  if type(url) ~= "string" then error("bad argument #1 to 'websocket' (string expected)", 2) end
  opts = check_options(opts, CLIENT_OPTIONS, "websocket.connect", 2)
  local u, err = require("http.url").parse(url)
  if not u then return nil, err end
  if (u.scheme ~= "ws" and u.scheme ~= "wss") or not u.host or u.host == "" then
    return nil, format("invalid WebSocket URL '%s' (ws://host[:port]/path or wss://...)", url)
  end
  local port = u.port or (u.scheme == "wss" and 443 or 80)
  local key = crypto.base64(crypto.random(16))
  local head = request_head(u, port, key, opts)
  local sock
  sock, err = dial(u, port, opts)
  if not sock then return nil, err end
  local ok, fields, why
  ok, err = sock:send(head)
  if ok then ok, fields = read_head(sock) end
  if ok then why = refuse_reply(ok, fields, key, opts.protocols) else why = fields or err end
  if why then
    sock:close()
    return nil, why
  end
  local ws = new(sock, true, {max_message = opts.max_message, close_timeout = opts.close_timeout,
    send_timeout = opts.send_timeout, protocol = fields["sec-websocket-protocol"]})
  ws.headers = fields
  return ws
end

return M
