-- ssl_https.lua: require "ssl.https" (layer: bindings), LuaSec's https
-- module on luasocket's socket.http (Debian's lua-socket, as LuaSec uses
-- it): https.request(url[, body]) and https.request{...}, and https.tcp,
-- which socket.http itself calls for https:// URLs. Unlike LuaSec it
-- verifies by default: the system's CA store (or the request's cafile/
-- capath) and the host name; verify = "none" in the request opts out.
local ssl = ...
local socket = require "socket"
local ltn12 = require "ltn12"
local http = require "socket.http"
local url = require "socket.url"

local ipairs, setmetatable, type = ipairs, setmetatable, type

local M = {_VERSION = "1.3.2", PORT = 443, TIMEOUT = 60}

-- The fields of a request that are ssl.newcontext parameters.
local SSL_PARAMS = {"protocol", "key", "certificate", "password", "cafile", "capath",
  "verify", "options", "ciphers", "ciphersuites", "depth", "curve", "alpn", "servername"}

-- Forwards the connection's methods to the TLS connection inside it; each
-- method's wrapper is made once, on its first use, and kept in conn.
local function forward(conn)
  return setmetatable(conn, {__index = function(_, k)
    local v = conn.sock[k]
    if type(v) ~= "function" then return v end
    -- conn.sock changes (TCP, then TLS): the method is looked up per call
    local f = function(_, ...) local s = conn.sock return s[k](s, ...) end
    rawset(conn, k, f)
    return f
  end})
end

-- https.tcp(params): a socket factory for socket.http whose connect does
-- TCP, then the TLS handshake, sending and checking the host name.
function M.tcp(params)
  params = params or {}
  local cfg = {mode = "client", protocol = "any"}
  for _, k in ipairs(SSL_PARAMS) do
    if params[k] ~= nil then cfg[k] = params[k] end
  end
  return function()
    local conn = {sock = socket.try(socket.tcp())}
    function conn:settimeout()
      return self.sock:settimeout(M.TIMEOUT)
    end
    function conn:connect(host, port)
      socket.try(self.sock:connect(host, port))
      self.sock = socket.try(ssl.wrap(self.sock, cfg))
      if not cfg.servername then socket.try(self.sock:sni(host)) end
      self.sock:settimeout(M.TIMEOUT)
      socket.try(self.sock:dohandshake())
      forward(self)
      return 1
    end
    return conn
  end
end

-- An https URL with its port made explicit (443 by default).
local function with_port(u)
  local parsed = url.parse(u)
  if parsed.scheme ~= "https" then return nil, "not an https url: " .. u end
  parsed.port = parsed.port or M.PORT
  return url.build(parsed)
end

-- https.request(url[, body]) -> body, code, headers, status;
-- https.request{url = ..., sink = ..., (ssl parameters)} -> 1, code, ...
function M.request(reqt, body)
  local chunks, simple = {}, type(reqt) == "string"
  local u, err = with_port(simple and reqt or reqt.url)
  if not u then return nil, err end
  if simple then
    reqt = {url = u, method = body and "POST" or "GET", sink = ltn12.sink.table(chunks)}
    if body then
      reqt.source = ltn12.source.string(body)
      reqt.headers = {["content-length"] = #body,
        ["content-type"] = "application/x-www-form-urlencoded"}
    end
  else
    reqt.url = u
  end
  if http.PROXY or reqt.proxy then return nil, "proxy not supported" end
  reqt.create = reqt.create or M.tcp(reqt)
  local res, code, headers, status = http.request(reqt)
  if res and simple then return table.concat(chunks), code, headers, status end
  return res, code, headers, status
end

return M
