-- test_websocket_interop.lua: netlua's WebSocket server and client against
-- independent implementations: Python's websockets and Node's ws, each as
-- client and as server (tests/fixtures/ws_peer.py, ws_peer.js), and wss://
-- against netlua's own http.server{tls=} and Python's websockets over TLS,
-- with a test CA (tests/tlslib.lua).
local t = require "testlib"
local w = require "wslib"
local tls = require "tlslib"
local server = require "http.server"
local websocket = require "websocket"
local time = require "time"

-- An echo server at /echo (protocols chat) that records how each
-- connection ended: {code, reason}.
local function echo_server(opts)
  local srv = assert(server(opts or {port = 0}))
  local ended = {}
  srv:websocket("/echo", function(ws)
    while true do
      local m, kind, code, reason = ws:receive()
      if m == nil then
        ended[#ended + 1] = {code, reason}
        return
      end
      ws:send(m, kind)
    end
  end, {protocols = {"chat"}})
  return srv, ended
end

-- Runs a peer client against url (extra: more arguments, quoted) while srv
-- serves; returns its stdout and stderr.
local function peer_client(srv, fixture, url, extra)
  return t.serve_while(srv, function()
    local _, proc = tls.spawn(w.peer_cmd(fixture, "client " .. t.shellquote(url) .. (extra or "")), "^", 60)
    local out = ""
    for _ = 1, 1200 do -- bounded: a guard against a hang
      out = t.readfile(proc.dir .. "/out") or ""
      if out:find("closed [^\n]*\n") or out:find("error") then break end
      if not os.execute("kill -0 " .. proc.pid .. " 2>/dev/null") then break end
      time.sleep(0.05)
    end
    local _, err = tls.finish(proc)
    return out .. err
  end)
end

-- The lines a peer client prints when every exchange went right.
local function check_client_output(out, pong)
  t.match(out, "protocol chat\n", out)
  t.match(out, "text [Tt]rue\n", out)
  t.match(out, "binary [Tt]rue\n", out)
  t.match(out, "fragments [Tt]rue\n", out)
  t.match(out, "pong [Tt]rue\n", out)
  t.match(out, "closed 4000 done\n", out)
end

-- netlua's client against a peer's echo server at url: messages both
-- kinds, the server's ping answered, a fragmented reply reassembled, a
-- close code and reason the peer reports.
local function client_exchange(url, opts)
  opts = opts or {}
  opts.protocols = {"v2", "chat"}
  local ws = assert(websocket.connect(url, opts))
  t.eq(ws.protocol, "chat")
  assert(ws:send("héllo"))
  t.eq(ws:receive(20), "héllo")
  local data = string.rep("\0\1\2\3\4\5\6\7\8\9\10", 30001)
  assert(ws:send(data, "binary"))
  local m, kind = ws:receive(20)
  t.eq(kind, "binary")
  t.ok(m == data, "the binary echo is intact")
  assert(ws:send("ping me"))
  t.eq(ws:receive(20), "pong ok", "the peer got our pong and its fragments joined")
  t.ok(ws:close(4001, "bye from netlua"))
end

-- Starts a peer's echo server; returns its port and process.
local function peer_server(fixture, args)
  local port, proc = tls.spawn(w.peer_cmd(fixture, args or "server"), "port (%d+)", 60)
  return tonumber(port), proc
end

local python_missing, node_missing = w.python_missing(), w.node_missing()

local function case(name, missing, fn)
  t.test(name, function()
    if missing then return t.skip(nil, missing) end
    fn()
  end)
end

case("Python websockets client -> netlua server", python_missing, function()
  local srv, ended = echo_server()
  local out = peer_client(srv, "ws_peer.py", "ws://127.0.0.1:" .. srv.port .. "/echo")
  check_client_output(out)
  t.eq(ended[1][1], 4000)
  t.eq(ended[1][2], "done")
end)

case("netlua client -> Python websockets server", python_missing, function()
  local port, proc = peer_server("ws_peer.py")
  client_exchange("ws://127.0.0.1:" .. port .. "/")
  local out = tls.finish(proc)
  t.match(out, "closed 4001 bye from netlua\n", out)
end)

case("Node ws client -> netlua server", node_missing, function()
  local srv, ended = echo_server()
  local out = peer_client(srv, "ws_peer.js", "ws://127.0.0.1:" .. srv.port .. "/echo")
  check_client_output(out)
  t.eq(ended[1][1], 4000)
  t.eq(ended[1][2], "done")
end)

case("netlua client -> Node ws server", node_missing, function()
  local port, proc = peer_server("ws_peer.js")
  client_exchange("ws://127.0.0.1:" .. port .. "/")
  local out = tls.finish(proc)
  t.match(out, "closed 4001 bye from netlua\n", out)
end)

local C = not tls.missing() and tls.certs() or nil

case("wss: netlua client -> netlua http.server{tls=} with a test CA", tls.missing(), function()
  local srv = echo_server{port = 0, tls = {certificate = C.server.cert, key = C.server.key}}
  t.serve_while(srv, function()
    local url = "wss://localhost:" .. srv.port .. "/echo"
    local ws, err = websocket.connect(url)
    t.eq(ws, nil, "the test CA is not trusted by default")
    t.match(err, "certificate verify failed")
    ws = assert(websocket.connect(url, {cafile = C.ca.cert, protocols = {"chat"}}))
    local big = string.rep("tls ", 250000)
    assert(ws:send(big))
    t.ok(ws:receive(20) == big, "a 1 MB text message over TLS")
    t.ok(ws:close())
    ws = assert(websocket.connect(url, {verify = false}))
    assert(ws:send("unverified"))
    t.eq(ws:receive(20), "unverified")
    ws:close()
  end)
end)

case("wss: Python websockets client -> netlua http.server{tls=}", tls.missing() or python_missing, function()
  local srv, ended = echo_server{port = 0, tls = {certificate = C.server.cert, key = C.server.key}}
  local out = peer_client(srv, "ws_peer.py", "wss://localhost:" .. srv.port .. "/echo",
    " " .. t.shellquote(C.ca.cert))
  check_client_output(out)
  t.eq(ended[1][1], 4000)
end)

case("wss: netlua client -> Python websockets server over TLS", tls.missing() or python_missing, function()
  local port, proc = peer_server("ws_peer.py", "server " .. t.shellquote(C.server.cert) .. " " ..
    t.shellquote(C.server.key))
  client_exchange("wss://localhost:" .. port .. "/", {cafile = C.ca.cert})
  local out = tls.finish(proc)
  t.match(out, "closed 4001 bye from netlua\n", out)
end)

if C then t.rmtree(C.dir) end
t.done()
