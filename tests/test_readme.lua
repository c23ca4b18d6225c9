-- test_readme.lua: every README code block marked as a complete program
-- runs, so README cannot drift from what netlua does. A block is marked by
-- a comment line right above its ```lua fence:
--   <!-- test -->              runs by itself: exit 0, nothing on stderr, and
--                              each `print(...) --> text` line prints text
--                              (runs of blanks count as one; a trailing
--                              "(...)" remark is not compared)
--   <!-- test: echo PORT -->   a TCP echo server on PORT (the test gives it
--                              a free port instead): a line sent comes back;
--                              then Ctrl-C ends it (status 130)
--   <!-- test: http PATH BODY -->  an HTTP server that prints its URL first:
--                              GET PATH answers BODY; then Ctrl-C ends it
-- Each block runs in a fresh directory holding public/index.html.
package.path = (arg[0]:match("^(.*)/") or ".") .. "/?.lua;" .. package.path
local t = require "testlib"
local socket = require "socket"
local time = require "time"

local README = (arg[0]:match("^(.*)/") or ".") .. "/../README.md"
-- The examples run in a directory of their own: netlua by its full path.
local NETLUA = t.NETLUA:sub(1, 1) == "/" and t.NETLUA or (os.getenv("PWD") .. "/" .. t.NETLUA)

-- The marked blocks: {kind=, args=, code=, line=} in README order.
local function marked_blocks(text)
  local blocks, pending, current = {}, nil, nil
  local n = 0
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    n = n + 1
    if current then
      if line:match("^```%s*$") then
        blocks[#blocks + 1] = current
        current = nil
      else
        current.code = current.code .. line .. "\n"
      end
    elseif pending and line:match("^```lua%s*$") then
      current = {kind = pending.kind, args = pending.args, code = "", line = n}
      pending = nil
    else
      local spec = line:match("^<!%-%- test:?%s*(.-)%s*%-%->%s*$")
      if spec then
        local kind, args = spec:match("^(%S*)%s*(.*)$")
        pending = {kind = kind == "" and "run" or kind, args = args}
      elseif line:match("%S") then
        pending = nil -- a marker belongs to the fence right below it
      end
    end
  end
  return blocks
end

local function squeeze(s) return (s:gsub("%s+", " "):gsub("^ ", ""):gsub(" $", "")) end

-- What the block's `print(...) --> text` lines promise, in order.
local function promised_output(code)
  local lines = {}
  for line in code:gmatch("[^\n]+") do
    local said = line:match("^%s*print%(.*%-%->%s*(.-)%s*$")
    if said then lines[#lines + 1] = squeeze(said:gsub("%s*%b()$", "")) end
  end
  return lines
end

local function workdir(code)
  local dir = t.tmpdir()
  os.execute("mkdir " .. t.shellquote(dir .. "/public"))
  t.writefile(dir .. "/public/index.html", "<h1>hello</h1>\n")
  t.writefile(dir .. "/example.lua", code)
  return dir
end

local function free_port()
  local s = assert(socket.bind("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return tonumber(port)
end

local function wait_for(fn)
  for _ = 1, 400 do
    local v = fn()
    if v then return v end
    time.sleep(0.05)
  end
end

-- Starts the example in `dir` in the background (killed after 30 s
-- whatever happens); its stdout, stderr and status land in dir/out, err,
-- status. Returns its pid.
local function start(dir)
  t.writefile(dir .. "/run.sh", string.format(
    "cd %s\n%s example.lua > out 2> err < /dev/null &\npid=$!\necho $pid > pid\n" ..
    "( sleep 30; kill -KILL $pid ) > /dev/null 2>&1 &\nguard=$!\n" ..
    "wait $pid\necho $? > status\nkill $guard 2> /dev/null\n",
    t.shellquote(dir), t.shellquote(NETLUA)))
  os.execute("sh " .. t.shellquote(dir .. "/run.sh") .. " > /dev/null 2>&1 &")
  return wait_for(function() return tonumber((t.readfile(dir .. "/pid") or ""):match("%d+")) end)
end

-- Sends SIGINT and waits (bounded) for the status file.
local function interrupt(pid, dir)
  os.execute("kill -INT " .. pid .. " 2>/dev/null")
  for _ = 1, 400 do
    local status = t.readfile(dir .. "/status")
    if status and status:match("%d") then return tonumber(status:match("%d+")) end
    time.sleep(0.05)
  end
  os.execute("kill -KILL " .. pid .. " 2>/dev/null")
  return nil
end

local run = {}

function run.run(block, dir)
  local out, err, code = t.sh("cd " .. t.shellquote(dir) .. " && " ..
    t.shellquote(NETLUA) .. " example.lua")
  t.eq(code, 0, err)
  t.eq(err, "")
  local want = promised_output(block.code)
  if #want > 0 then
    local got = {}
    for line in out:gmatch("[^\n]+") do got[#got + 1] = squeeze(line) end
    t.eq(table.concat(got, "\n"), table.concat(want, "\n"))
  end
end

function run.echo(block, dir)
  local fixed = assert(block.args:match("^(%d+)$"), "echo needs the block's port")
  local port = free_port()
  local code = block.code:gsub(fixed, tostring(port))
  t.writefile(dir .. "/example.lua", code)
  local pid = start(dir)
  local c = wait_for(function() return socket.connect("127.0.0.1", port) end)
  t.ok(c, "the echo server accepts: " .. tostring(t.readfile(dir .. "/err")))
  c:settimeout(10)
  c:send("hello readme\n")
  t.eq(c:receive("*l"), "hello readme")
  c:close()
  t.eq(interrupt(pid, dir), 130)
  t.match(t.readfile(dir .. "/err"), "^netlua: interrupted\n")
end

function run.http(block, dir)
  local http = require "http"
  local path, body = block.args:match("^(%S+)%s+(.+)$")
  local pid = start(dir)
  local url = wait_for(function()
    return (t.readfile(dir .. "/out") or ""):match("^(http://127%.0%.0%.1:%d+)\n")
  end)
  t.ok(url, "the server printed its URL first: " .. tostring(t.readfile(dir .. "/err")))
  local res = assert(http.get(url .. path, {timeout = 10}))
  t.eq(res.status, 200)
  t.eq(res.body, body)
  t.eq(interrupt(pid, dir), 130)
  t.match(t.readfile(dir .. "/err"), "^netlua: interrupted\n")
end

local text = assert(t.readfile(README), "cannot read " .. README)
local blocks = marked_blocks(text)

t.test("README marks its complete programs", function()
  t.ok(#blocks >= 5, "found only " .. #blocks .. " marked blocks")
end)

for _, block in ipairs(blocks) do
  local first = block.code:match("[^\n]*%S[^\n]*") or ""
  t.test(string.format("README line %d (%s): %s", block.line, block.kind, squeeze(first)), function()
    local runner = run[block.kind]
    t.ok(runner, "unknown marker kind '" .. block.kind .. "'")
    local dir = workdir(block.code)
    local ok, err = pcall(runner, block, dir)
    t.rmtree(dir)
    if not ok then error(err, 0) end
  end)
end

t.done()
