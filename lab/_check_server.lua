-- _check_server.lua: the server under test, as a child process of
-- `netlua -m check` (lab/check.lua). A small sh wrapper starts it with its
-- stdout and stderr in files, writes its pid and, when it ends, its exit
-- status; a watchdog in the wrapper stops it if the checker itself is
-- killed (SIGKILL leaves no Lua code to run). Stopping is `srv:stop()`,
-- also the `__close` of the handle, so a failure, an error or Ctrl-C in the
-- checker always ends the server.
local cli = require "cli"
local time = require "time"

local M = {}
local Server = {}
Server.__index = Server

local function readfile(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local data = f:read("a")
  f:close()
  return data
end

local function popen_line(cmd)
  local p = io.popen(cmd)
  local line = p:read("l")
  p:close()
  return line
end

-- The path of the netlua binary running this checker (so a server runs
-- under the same build: a sanitizer build checks with itself).
function M.netlua_path()
  return popen_line("readlink /proc/$PPID/exe")
end

-- The wrapper: $1 is the checker's pid. The watchdog polls once a second
-- while both live; if the checker is gone first it ends the server.
local WRAPPER = [[
%s > "$d/out" 2> "$d/err" < /dev/null &
pid=$!
echo $pid > "$d/pid.tmp" && mv "$d/pid.tmp" "$d/pid"
( while kill -0 "$1" 2>/dev/null && kill -0 $pid 2>/dev/null; do sleep 1; done
  if ! kill -0 "$1" 2>/dev/null; then kill -TERM $pid 2>/dev/null; sleep 2; kill -KILL $pid 2>/dev/null; fi
) > /dev/null 2>&1 &
wait $pid
echo $? > "$d/rc.tmp" && mv "$d/rc.tmp" "$d/rc"
]]

-- Starts the command `argv` (a list of words); returns a handle, or nil
-- and why.
function M.start(argv)
  local words = {}
  for k, w in ipairs(argv) do words[k] = cli.shellquote(w) end
  local dir = popen_line("mktemp -d /tmp/netlua-check.XXXXXX")
  if not dir then return nil, "cannot make a temporary directory" end
  local f = assert(io.open(dir .. "/run.sh", "w"))
  f:write("d=" .. cli.shellquote(dir) .. "\n", string.format(WRAPPER, table.concat(words, " ")))
  f:close()
  local srv = setmetatable({dir = dir, argv = argv}, Server)
  os.execute(string.format("sh %s/run.sh $PPID > /dev/null 2>&1 &", cli.shellquote(dir)))
  for _ = 1, 500 do
    srv.pid = tonumber(readfile(dir .. "/pid"))
    if srv.pid then return srv end
    time.sleep(0.01)
  end
  srv:close()
  return nil, "the server's process did not start"
end

-- Its exit status once it has ended (128 + N for signal N), else nil.
function Server:status()
  return tonumber(readfile(self.dir .. "/rc"))
end

function Server:stderr() return readfile(self.dir .. "/err") or "" end
function Server:stdout() return readfile(self.dir .. "/out") or "" end

-- Waits up to `seconds` for the server to end; its status or nil.
function Server:wait(seconds)
  local deadline = time.monotonic() + seconds
  repeat
    local status = self:status()
    if status then return status end
    time.sleep(0.02)
  until time.monotonic() > deadline
  return nil
end

-- Ends the server if it still runs: SIGTERM (netlua treats it as Ctrl-C),
-- SIGKILL after 3 s. Returns its status (nil if even that did not end it).
function Server:stop()
  if not self.pid or self:status() then return self:status() end
  os.execute("kill -TERM " .. self.pid .. " 2>/dev/null")
  local status = self:wait(3)
  if status then return status end
  os.execute("kill -KILL " .. self.pid .. " 2>/dev/null")
  return self:wait(3)
end

-- Stops the server and removes its files. Idempotent.
function Server:close()
  if self.closed then return end
  self.closed = true
  self:stop()
  os.execute("rm -rf " .. cli.shellquote(self.dir))
end
Server.__close = Server.close

-- The last `n` lines of text.
function M.tail(text, n)
  local lines = {}
  for line in text:gmatch("[^\n]*\n?") do
    if line ~= "" then lines[#lines + 1] = line end
  end
  local from = math.max(1, #lines - n + 1)
  return table.concat(lines, "", from), from - 1
end

return M
