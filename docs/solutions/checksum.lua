-- checksum.lua: the model solution of the tutorial's chapter 7 exercise.
-- For each line of hex digits (the bytes of a packet, two digits each)
-- answers the Internet checksum (RFC 1071) that ICMP, IP, UDP and TCP
-- carry, as four lowercase hex digits; "ERR" for a line that is not hex.
--   netlua docs/solutions/checksum.lua [port]     (default 7000)
local socket = require "socket"
local task = require "task"

-- The ones' complement of the ones' complement sum of 16-bit words.
local function checksum(bytes)
  if #bytes % 2 == 1 then bytes = bytes .. "\0" end
  local sum = 0
  for i = 1, #bytes, 2 do
    sum = sum + bytes:byte(i) * 256 + bytes:byte(i + 1)
  end
  while sum > 0xffff do sum = (sum & 0xffff) + (sum >> 16) end
  return ~sum & 0xffff
end

local function answer(line)
  if not line:match("^%x+$") or #line % 2 == 1 then return "ERR" end
  local bytes = line:gsub("%x%x", function(h) return string.char(tonumber(h, 16)) end)
  return string.format("%04x", checksum(bytes))
end

local function serve(client)
  client:settimeout(30)
  while true do
    local line = client:receive("*l")
    if not line then break end
    client:send(answer(line) .. "\n")
  end
  client:close()
end

local port = tonumber(arg[1]) or 7000
local server = assert(socket.bind("127.0.0.1", port))
io.stdout:setvbuf("line")
print("listening on 127.0.0.1:" .. port)
while true do
  local client = server:accept()
  if client then task.spawn(serve, client) end
end
