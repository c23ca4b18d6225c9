-- httphelp.lua: helpers shared by the http tests: start the independent
-- Python peer (tests/fixtures/peer.py) on a loopback port 0 and stop it by
-- PID. Every peer exits by itself after its lifetime, whatever happens.
local t = require "testlib"
local time = require "time"

local M = {}

M.dir = (arg and arg[0] and arg[0]:match("^(.*)/[^/]*$")) or "tests"
M.fixtures = M.dir .. "/fixtures"

-- Waits (at most 10 s) for a file to appear and returns its content.
function M.waitfile(path)
  for _ = 1, 200 do
    local data = t.readfile(path)
    if data and data ~= "" then return data end
    time.sleep(0.05)
  end
  error("timed out waiting for " .. path)
end

-- Starts `cmd` (a shell command writing its port to $PORTFILE) in the
-- background; returns the port and a stop function.
function M.spawn(cmd)
  local dir = t.tmpdir()
  os.execute(string.format("PORTFILE=%s/port; export PORTFILE; ( %s ) >%s/log 2>&1 & echo $! > %s/pid",
    dir, cmd, dir, dir))
  local port = tonumber(M.waitfile(dir .. "/port"))
  local pid = M.waitfile(dir .. "/pid"):match("%d+")
  local function stop()
    os.execute("kill " .. pid .. " 2>/dev/null")
    t.rmtree(dir)
  end
  return port, stop, dir
end

function M.peer(lifetime)
  return M.spawn(string.format("exec python3 %s/peer.py \"$PORTFILE\" %d",
    M.fixtures, lifetime or 60))
end

-- Lists the names in a directory (sorted).
function M.ls(dir)
  local p = io.popen("ls -A " .. t.shellquote(dir) .. " 2>/dev/null")
  local names = {}
  for line in p:lines() do names[#names + 1] = line end
  p:close()
  table.sort(names)
  return names
end

return M
