-- echo_luasocket.lua: a select-based echo server, the usual single-threaded
-- luasocket pattern (socket.select over every connection, settimeout(0),
-- partial receives echoed back). The benchmark runs this same file under
-- lua5.4 + Debian's lua-socket and under netlua (the "netlua-select" row):
-- one program, two runtimes, as luasocket compatibility promises.
-- Listens on 127.0.0.1:PORT (arg[1], 0 = the OS picks) and prints the port.
local socket = require "socket"

local server = assert(socket.bind("127.0.0.1", tonumber(arg[1]) or 0, 512))
server:settimeout(0)
local _, port = server:getsockname()
print("listening on 127.0.0.1:" .. port)
io.stdout:flush()

local watch = { server }

local function drop(c)
  for i, s in ipairs(watch) do
    if s == c then table.remove(watch, i) break end
  end
  c:close()
end

-- Reads what is there (a partial result on timeout) and sends it back.
local function echo(c)
  local data, err, partial = c:receive(65536)
  data = data or partial
  if data and #data > 0 then c:send(data) end
  if err == "closed" then drop(c) end
end

while true do
  local ready = socket.select(watch, nil)
  for _, s in ipairs(ready) do
    if s == server then
      local c = server:accept()
      if c then
        c:settimeout(0)
        c:setoption("tcp-nodelay", true)
        watch[#watch + 1] = c
      end
    else
      echo(s)
    end
  end
end
