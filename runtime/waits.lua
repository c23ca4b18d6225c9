-- waits.lua: what a waiting call waits on, in words (layer: runtime), for
-- the listing printed when Ctrl-C ends a script that was still waiting for
-- its tasks or threads (runtime/waits.c reads the frames and calls this).
-- Gets the call's name, where the script made it ("app.lua:7" or nil), and
-- its first three values (self and two arguments); returns one line.

local function class_of(v)
  local mt = debug.getmetatable(v)
  return type(mt) == "table" and rawget(mt, "__name") or nil
end

-- "127.0.0.1:5000", "[::1]:5000", a Unix socket's path, or nil.
local function address(ip, port)
  if ip == nil then return nil end
  if port == nil then return tostring(ip) end
  if tostring(ip):find(":", 1, true) then return "[" .. ip .. "]:" .. port end
  return ip .. ":" .. port
end

local function ask(obj, method)
  local ok, ip, port = pcall(function() return obj[method](obj) end)
  if ok then return address(ip, port) end
end

local sending = {send = true, sendto = true}

-- tcp{server}, udp{connected}, unixstream{client} ...
local function socket_wait(kind, role, name, sock, a2, a3)
  local here, peer = ask(sock, "getsockname"), ask(sock, "getpeername")
  if role == "server" then return "accept on " .. (here or kind) end
  if name == "connect" then return "connect to " .. (address(a2, a3) or "?") end
  local verb, arrow = "receive", " <- "
  if sending[name] then verb, arrow = "send", " -> " end
  local line = verb .. " on " .. kind
  if here then line = line .. " " .. here end
  if peer then line = line .. arrow .. peer end
  return line
end

local by_class = {
  ["thread.channel"] = function(name)
    return name == "send" and "send on a full channel" or "receive on a channel"
  end,
  ["thread.mutex"] = function() return "lock of a mutex" end,
  ["thread.handle"] = function(_, t) return "join of thread " .. tostring(t.name) end,
  ["task"] = function() return "join of a task" end,
  ["http.server"] = function(_, srv)
    return "accept on " .. (ask(srv, "getsockname") or "an http.server")
  end,
  ["http.server.conn"] = function(name)
    return (name == "read" and "read of a request" or "send of a reply")
      .. " on an http.server connection"
  end,
}

local http_calls = {request = true, get = true, post = true, download = true, request_many = true}

local function what(name, self, a2, a3)
  local class = class_of(self)
  local kind, role = (class or ""):match("^(%a+){(%a+)}$")
  if kind then return socket_wait(kind, role, name, self, a2, a3) end
  if by_class[class] then return by_class[class](name, self) end
  if name == "sleep" then return "sleep" end
  if name == "yield" then return "ready to run" end
  if name == "select" then return "select on sockets" end
  if http_calls[name] then
    local url = type(self) == "table" and self.url or self
    return "http " .. name .. (type(url) == "string" and (" " .. url) or "")
  end
  if name == "not started" then return "not started yet" end
  if name == "running" then return "running Lua code" end
  if name then return "waiting in " .. name .. "()" end
  return "waiting"
end

return function(name, where, ...)
  local line = what(name, ...)
  if where then line = line .. " (" .. where .. ")" end
  return line
end
