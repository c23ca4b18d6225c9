-- ssl.lua: the Lua half of the ssl module (layer: bindings), LuaSec's API:
-- ssl.newcontext, ssl.wrap and ssl.loadcertificate over the C half
-- (ssl.c), plus Python-style shortcuts: ssl.connect(host, port[, opts]) and
-- ssl.starttls(sock[, ctx]) (sock:starttls). Secure by default: a client
-- that knows the name it meant to reach verifies the chain and that name.
local core = ...
local socket = require "socket"

local pairs, type = pairs, type

local ssl = {_VERSION = "1.3.2", _NAME = "ssl"}
ssl.newcontext = core.newcontext
ssl.loadcertificate = core.loadcertificate
ssl._adopt = core.adopt -- http.server's req:socket() on HTTPS

-- What this build supports, in LuaSec's shape (ssl.config, also
-- require "ssl.config"), for programs that look before they ask. Only what
-- newcontext really gives: TLS 1.2 and 1.3 (OpenSSL 3 refuses 1.0 and 1.1
-- at its default security level); the options it applies, and the old ones
-- OpenSSL 3 always applies; the key-exchange groups OpenSSL 3 offers by
-- default (`curve`, `curveslist`).
local function set_of(names)
  local set = {}
  for name in names:gmatch("%S+") do set[name] = true end
  return set
end
ssl.config = {
  protocols = set_of("tlsv1_2 tlsv1_3"),
  options = set_of("all cipher_server_preference no_compression no_ticket no_sslv2 no_sslv3 " ..
    "no_tlsv1 no_tlsv1_1 single_dh_use single_ecdh_use"),
  algorithms = {ec = true},
  curves = set_of("prime256v1 secp384r1 secp521r1 X25519 X448"),
  capabilities = {alpn = true, curves_list = true, ecdh_auto = true},
}

local function is_address(host)
  return host:match("^[%d%.]+$") or host:find(":", 1, true)
end

-- A context from a context or a table of parameters.
local function context_of(cfg, mode)
  if type(cfg) ~= "table" then return cfg end
  if cfg.mode == nil and mode then
    local copy = {}
    for k, v in pairs(cfg) do copy[k] = v end
    copy.mode = mode
    cfg = copy
  end
  return core.newcontext(cfg)
end

-- Takes the socket's descriptor into a new connection (LuaSec's wrap: the
-- socket is left without one), with its max-line. `host`: the name to send
-- and check.
local function take(sock, ctx, host)
  local fd = sock:getfd()
  local conn, err = core.create(ctx, fd, host, sock:getoption("max-line"))
  if not conn then return nil, err end
  sock:setfd(-1)
  return conn
end

-- ssl.wrap(sock, ctx or params): a connection that has not shaken hands.
-- The name it checks: params.servername, else the host name (not an
-- address: LuaSec's checks then) the socket was connected to.
function ssl.wrap(sock, cfg)
  local ctx, err = context_of(cfg)
  if not ctx then return nil, err end
  local host = type(cfg) == "table" and cfg.servername or nil
  local name = socket._connectedname(sock)
  if not host and name and not is_address(name) then host = name end
  return take(sock, ctx, host)
end

-- Shakes hands on a new connection; closes it on failure.
local function handshake(conn, err)
  if not conn then return nil, err end
  local ok
  ok, err = conn:dohandshake()
  if not ok then
    conn:close()
    return nil, err
  end
  return conn
end

-- ssl.starttls(sock[, ctx or params]): TLS on a connected socket, handshake
-- done; a client checks the name (or address) the socket was connected to.
function ssl.starttls(sock, cfg)
  local ctx, err = context_of(cfg or {}, "client")
  if not ctx then return nil, err end
  local block, total = sock:gettimeout()
  local host = type(cfg) == "table" and cfg.servername or socket._connectedname(sock)
  local conn
  conn, err = take(sock, ctx, host)
  if conn then
    conn:settimeout(block)
    conn:settimeout(total, "t")
  end
  return handshake(conn, err)
end

-- ssl.connect(host, port[, params]): connect, handshake and verification
-- in one call (params as newcontext's, plus `timeout`).
function ssl.connect(host, port, params)
  params = params or {}
  local sock, err = socket.tcp()
  if not sock then return nil, err end
  if params.timeout then sock:settimeout(params.timeout) end
  local ok
  ok, err = sock:connect(host, port)
  if not ok then
    sock:close()
    return nil, err
  end
  local ctx
  ctx, err = context_of(params, "client")
  if not ctx then
    sock:close()
    return nil, err
  end
  local conn
  conn, err = take(sock, ctx, params.servername or host)
  if not conn then sock:close() end
  if conn and params.timeout then conn:settimeout(params.timeout) end
  return handshake(conn, err)
end

return ssl
