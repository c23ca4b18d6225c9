-- task_clients.lua: the client side of test_task_scale.lua (run by it with a
-- raised descriptor limit): holds `idle` connections open to an echo server
-- while `active` tasks exchange `rounds` lines each, then checks that every
-- idle connection still answers with its own data. Prints one summary line.
--   netlua tests/task_clients.lua PORT IDLE ACTIVE ROUNDS
local socket = require "socket"
local task = require "task"
local port, idle, active, rounds = tonumber(arg[1]), tonumber(arg[2]), tonumber(arg[3]), tonumber(arg[4])

local conns = {}
for i = 1, idle do
  local c, err = socket.connect("127.0.0.1", port)
  if not c then print("connect " .. i .. " failed: " .. err) os.exit(1) end
  conns[i] = c
end

-- Active clients, each in a task: every line must come back to its sender.
local function talk(id)
  local c = assert(socket.connect("127.0.0.1", port))
  c:settimeout(30)
  for r = 1, rounds do
    local line = string.format("client %d round %d %s", id, r, string.rep("z", id % 50))
    assert(c:send(line .. "\n"))
    local back, err = c:receive("*l")
    if back ~= line then error(string.format("client %d got %q (%s)", id, back, err)) end
  end
  c:close()
  return true
end

local hs = {}
for i = 1, active do hs[i] = task.spawn(talk, i) end
local bad = 0
for i, r in ipairs(task.all(hs)) do
  if not r[1] then bad = bad + 1; if bad < 5 then print(r[2]) end end
end

-- Every idle connection is still there and still its own.
local checks = {}
for i = 1, idle, 1 do
  checks[#checks + 1] = task.spawn(function()
    local c = conns[i]
    c:settimeout(30)
    assert(c:send("idle " .. i .. "\n"))
    local back = c:receive("*l")
    c:close()
    return back == "idle " .. i
  end)
end
local idle_ok = 0
for _, r in ipairs(task.all(checks)) do if r[1] and r[2] then idle_ok = idle_ok + 1 end end
print(string.format("active ok %d/%d, idle ok %d/%d", active - bad, active, idle_ok, idle))
