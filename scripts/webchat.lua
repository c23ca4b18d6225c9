-- webchat.lua: one chat room for browsers and terminals: client/server and
-- browser/server side by side in one program.
--
-- usage: netlua scripts/webchat.lua [--host H] [--port P] [--tcp-port T]
--
-- Browsers open http://H:P/ (scripts/web/webchat.html), which talks to the
-- room over a WebSocket (/chat); terminal clients connect to T with `nc` or
-- scripts/chatclient.lua and speak chatserver.lua's line protocol. Everyone
-- is in the same room: each line anyone sends reaches the others as
-- "[id] text", and joins and leaves as "* client id joined/left"; "/quit"
-- leaves. The room is chatroom.lua's, which taskchatserver.lua uses too:
-- this script adds the page and the WebSocket side.
local HERE = (arg and arg[0] and arg[0]:match("^(.*)/[^/]*$")) or "."
package.path = HERE .. "/?.lua;" .. package.path

local http = require "http"
local task = require "task"
local cli = require "cli"
local chatroom = require "chatroom"

local MAX_LINE = 4096   -- longest message, in bytes; a longer TCP line disconnects
local BACKLOG = 256     -- messages queued for one member before it is dropped
local MAX_MEMBERS = 256 -- members at once (browsers and terminals)

local SPEC = {
  usage = "netlua scripts/webchat.lua [--host H] [--port P] [--tcp-port T]",
  help = "A chat room for browsers (WebSocket, the page at http://H:P/) and terminal\n" ..
    "clients (nc H T, or chatclient.lua H T) at once.\n\n" ..
    "  --host H       address to listen on (default 127.0.0.1)\n" ..
    "  --port P       the page's port (default 8080; 0 picks a free one)\n" ..
    "  --tcp-port T   the terminal clients' port (default 6790; 0 picks one)\n",
  options = {host = {"host", "127.0.0.1"}, port = {"port", 8080},
    ["tcp-port"] = {"port", 6790}},
}

local room = chatroom.new{max_line = MAX_LINE, backlog = BACKLOG, max_members = MAX_MEMBERS}

-- ---- browsers: messages over a WebSocket -----------------------------------------

-- The reader of a browser: each text message is a line; a binary or an
-- over-long one is refused with a notice, and the member stays.
local function ws_lines(ws)
  return function(each)
    while true do
      local msg, kind, code = ws:receive()
      if not msg then return kind .. (code and (" " .. code) or "") end
      if kind ~= "text" then
        ws:send("* only text messages, please")
      elseif #msg > MAX_LINE then
        ws:send(string.format("* message too long (more than %d bytes), not sent", MAX_LINE))
      elseif each(msg) == false then
        return "quit"
      end
    end
  end
end

local function ws_session(ws)
  room:member("browser", function(text) return ws:send(text) ~= nil end, ws_lines(ws))
  ws:close()
end

-- ---- the program ---------------------------------------------------------------

local function main(...)
  local o = cli.parse({...}, SPEC)
  io.stdout:setvbuf("line")
  local srv, msg = http.server{host = o.host, port = o.port}
  if not srv then cli.fail("cannot listen on %s: %s", cli.where(o.host, o.port), msg) end
  local tcp = cli.listen({host = o.host, port = o["tcp-port"]}, 64,
    " for terminal clients (nc, chatclient.lua)")
  print("chat page at " .. srv.url .. "/")

  srv:route("GET", "/", function()
    local f = assert(io.open(HERE .. "/web/webchat.html", "rb"))
    local html = f:read("a")
    f:close()
    return 200, html, {["Content-Type"] = "text/html; charset=utf-8"}
  end)
  srv:websocket("/chat", ws_session)
  local open = true
  task.spawn(function() -- the terminal clients' door, checked twice a second
    tcp:settimeout(0.5)
    while open do
      local client, err = tcp:accept()
      if client then task.spawn(room.tcp_session, room, client)
      elseif err ~= "timeout" then print("accept failed: " .. err) task.sleep(0.1) end
    end
    tcp:close()
  end)
  local ok, err = pcall(srv.serve, srv)
  open = false
  srv:close()
  if not ok and err ~= "interrupted" then error(err, 0) end
  -- Ctrl-C: the members' tasks would wait for their peers forever (netlua
  -- runs tasks to their end before it exits); exiting now closes them all.
  print("stopped")
  os.exit(0)
end

main(...)
