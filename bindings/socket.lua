-- socket.lua: the Lua half of the socket module (layer: bindings). It gets
-- the C table from socket.c and adds what luasocket's socket.lua and
-- except.c offer: try/newtry/protect/skip, socket.bind, connect4/connect6,
-- choose, sink/source, and socket.unix (stream and datagram constructors).
local socket = ...

local error, pcall, select, setmetatable, getmetatable, ipairs, type, tostring =
  error, pcall, select, setmetatable, getmetatable, ipairs, type, tostring

socket._VERSION = "LuaSocket 3.0.0"
socket._NAME = "socket"
socket._DATAGRAMSIZE = 8192
socket.BLOCKSIZE = 2048

-- socket.skip(d, ...): the arguments after the first d.
function socket.skip(d, ...)
  return select(d + 1, ...)
end

-- Errors raised by try functions are wrapped so that protect can tell them
-- from real errors (luasocket's except.c).
local wrapper_mt = {__tostring = function(e) return tostring(e[1]) end}

function socket.newtry(finalizer)
  return function(...)
    if not (...) then
      if finalizer then pcall(finalizer) end
      error(setmetatable({(select(2, ...))}, wrapper_mt), 0)
    end
    return ...
  end
end

socket.try = socket.newtry()

local function unwrap(ok, ...)
  if ok then return ... end
  local err = ...
  if type(err) == "table" and getmetatable(err) == wrapper_mt then
    return nil, err[1]
  end
  error(err, 0)
end

function socket.protect(fn)
  return function(...)
    return unwrap(pcall(fn, ...))
  end
end

-- nil, err and the explanation when there is one (luasocket's two values
-- when there is none).
local function socket_fail(err, why)
  if why then return nil, err, why end
  return nil, err
end

-- socket.bind(host, port[, backlog]): a listening tcp{server}, reuseaddr on
-- so that a restarted server binds at once; tries each address in turn.
-- A failure returns nil, luasocket's message and its explanation.
function socket.bind(host, port, backlog)
  if host == "*" then host = "0.0.0.0" end
  local addrinfo, err, why = socket.dns.getaddrinfo(host)
  if not addrinfo then return socket_fail(err, why) end
  err = "no info on address"
  for _, alt in ipairs(addrinfo) do
    local sock, res
    if alt.family == "inet" then sock, err = socket.tcp4() else sock, err = socket.tcp6() end
    if not sock then return nil, err end
    sock:setoption("reuseaddr", true)
    res, err, why = sock:bind(alt.addr, port)
    if res then res, err, why = sock:listen(backlog) end
    if res then return sock end
    sock:close()
  end
  return socket_fail(err, why)
end

function socket.connect4(address, port, laddress, lport)
  return socket.connect(address, port, laddress, lport, "inet")
end

function socket.connect6(address, port, laddress, lport)
  return socket.connect(address, port, laddress, lport, "inet6")
end

function socket.choose(tab)
  return function(name, opt1, opt2)
    if type(name) ~= "string" then
      name, opt1, opt2 = "default", name, opt1
    end
    local f = tab[name or "nil"]
    if not f then error("unknown key (" .. tostring(name) .. ")", 3)
    else return f(opt1, opt2) end
  end
end

-- LTN12 sources and sinks over sockets (luasocket's socket.lua); each also
-- answers getfd/dirty so it can go into socket.select.
local function selectable(sock, call)
  return setmetatable({
    getfd = function() return sock:getfd() end,
    dirty = function() return sock:dirty() end,
  }, {__call = call})
end

socket.sinkt, socket.sourcet = {}, {}

socket.sinkt["close-when-done"] = function(sock)
  return selectable(sock, function(_, chunk)
    if not chunk then
      sock:close()
      return 1
    end
    return sock:send(chunk)
  end)
end

socket.sinkt["keep-open"] = function(sock)
  return selectable(sock, function(_, chunk)
    if chunk then return sock:send(chunk) end
    return 1
  end)
end

socket.sinkt["default"] = socket.sinkt["keep-open"]
socket.sink = socket.choose(socket.sinkt)

socket.sourcet["by-length"] = function(sock, length)
  return selectable(sock, function()
    if length <= 0 then return nil end
    local chunk, err = sock:receive(math.min(socket.BLOCKSIZE, length))
    if err then return nil, err end
    length = length - #chunk
    return chunk
  end)
end

socket.sourcet["until-closed"] = function(sock)
  local done = false
  return selectable(sock, function()
    if done then return nil end
    local chunk, err, partial = sock:receive(socket.BLOCKSIZE)
    if not err then return chunk end
    if err == "closed" then
      sock:close()
      done = true
      return partial
    end
    return nil, err
  end)
end

socket.sourcet["default"] = socket.sourcet["until-closed"]
socket.source = socket.choose(socket.sourcet)

-- socket.unix(): a unixstream{master} stream socket; socket.unix.stream() and
-- socket.unix.dgram() as luasocket's socket.unix module has them.
local unix = {stream = socket._unix_stream, dgram = socket._unix_dgram}
setmetatable(unix, {__call = function(_, ...) return unix.stream(...) end})
socket.unix = unix
socket._unix_stream, socket._unix_dgram = nil, nil

local classes = socket._classes
socket._classes = nil

-- sock:starttls([ctx or params]): TLS on this connected socket, handshake
-- done, verifying the name it was connected to (ssl.starttls).
classes["tcp{client}"].starttls = function(sock, cfg)
  return require("ssl").starttls(sock, cfg)
end

-- require "socket.core" and "socket.unix" work as with luasocket.
package.preload["socket.core"] = package.preload["socket.core"] or function() return socket end
package.preload["socket.unix"] = package.preload["socket.unix"] or function() return unix end

return socket
