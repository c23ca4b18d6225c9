-- test_task_http.lua: HTTP client transfers inside tasks suspend only their
-- task: many tasks download at once from a slow server that is itself a set
-- of tasks in the same thread (were a transfer to block the thread, that
-- server could never answer), while another task keeps answering.
local t = require "testlib"
local task = require "task"
local socket = require "socket"
local http = require "http"

-- A slow HTTP/1.0 server made of tasks: answers each request after `delay`
-- seconds with the request's path. Counts how many requests were in
-- progress at once.
local function slow_server(delay)
  local server = assert(socket.bind("127.0.0.1", 0))
  local _, port = server:getsockname()
  local state = {inflight = 0, max = 0, served = 0}
  state.task = task.spawn(function()
    while true do
      local c = server:accept()
      if not c then break end
      task.spawn(function()
        local first = c:receive("*l")
        repeat local line = c:receive("*l") until line == "" or line == nil
        state.inflight = state.inflight + 1
        if state.inflight > state.max then state.max = state.inflight end
        task.sleep(delay)
        local path = first and first:match("^GET (%S+)") or "?"
        c:send("HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " .. #path ..
               "\r\nConnection: close\r\n\r\n" .. path)
        state.inflight = state.inflight - 1
        state.served = state.served + 1
        c:close()
      end)
    end
  end)
  state.stop = function() state.task:cancel() server:close() end
  return tonumber(port), state
end

t.test("http.get from 20 tasks at once against a slow server in the same thread", function()
  local port, srv = slow_server(0.1)
  local ticks, done = 0, false
  local ticker = task.spawn(function()
    while not done do ticks = ticks + 1; task.sleep(0.005) end
  end)
  local hs = {}
  for i = 1, 20 do
    hs[i] = task.spawn(function()
      local r, err = http.get(string.format("http://127.0.0.1:%d/item/%d", port, i), {timeout = 20})
      if not r then error(err) end
      return r.status, r.body
    end)
  end
  local all = task.all(hs)
  done = true
  ticker:join()
  for i = 1, 20 do
    t.eq(all[i][1], true, tostring(all[i][2]))
    t.eq(all[i][2], 200)
    t.eq(all[i][3], "/item/" .. i, "each task got its own reply")
  end
  t.eq(srv.served, 20)
  t.ok(srv.max > 1, "transfers overlapped: " .. srv.max .. " at most at once")
  t.ok(ticks > 1, "the ticker task kept running during the transfers")
  srv.stop()
end)

t.test("request_many inside a task, and a timed-out transfer in a task", function()
  local port, srv = slow_server(0.3)
  local h = task.spawn(function()
    local list = {}
    for i = 1, 5 do list[i] = {url = string.format("http://127.0.0.1:%d/m/%d", port, i)} end
    local rs = http.request_many(list, {concurrency = 5})
    local bodies = {}
    for i, r in ipairs(rs) do bodies[i] = r.body end
    local r, err = http.get(string.format("http://127.0.0.1:%d/slow", port), {timeout = 0.05})
    return bodies, r, err
  end)
  local ok, bodies, r, err = h:join()
  t.ok(ok, bodies)
  for i = 1, 5 do t.eq(bodies[i], "/m/" .. i) end
  t.eq(r, nil)
  t.eq(err, "timeout")
  srv.stop()
end)

t.test("cancel a task in the middle of a transfer", function()
  local port, srv = slow_server(5)
  local h = task.spawn(function() return http.get(string.format("http://127.0.0.1:%d/never", port)) end)
  task.sleep(0.05)
  t.eq(h:status(), "waiting")
  t.eq(h:cancel(), true)
  t.eq(select(2, h:join()), "cancelled")
  collectgarbage() -- the transfer's batch is freed by its finaliser
  srv.stop()
end)

t.test("cancel a task in the middle of a download: no partial file is left", function()
  local port, srv = slow_server(5)
  local dir = t.tmpdir()
  local h = task.spawn(function()
    return http.request_many({{url = string.format("http://127.0.0.1:%d/x", port),
      output = dir .. "/x.png"}, string.format("http://127.0.0.1:%d/y", port)})
  end)
  t.until_waiting({h})
  while srv.inflight < 2 do task.sleep(0.01) end -- both requests reached the server
  t.eq(h:cancel(), true)
  t.eq(select(2, h:join()), "cancelled")
  local p = io.popen("ls -A " .. dir)
  t.eq(p:read("a"), "", "the temporary .x.png.part-* file was removed")
  p:close()
  t.rmtree(dir)
  srv.stop()
end)

t.test("http.server serving in the main script answers requests made by tasks of the same thread", function()
  local srv = assert(http.server{port = 0})
  srv:route("GET", "/hello/:name", function(req) return "hello " .. req.params.name end)
  local results, hs = {}, {}
  for i = 1, 10 do
    hs[i] = task.spawn(function()
      local r, err = http.get(srv.url .. "/hello/" .. i, {timeout = 10})
      results[i] = r and r.body or err
    end)
  end
  task.spawn(function() task.all(hs) srv:close() end)
  t.ok(srv:serve({timeout = 20}) >= 1, "it served")
  for i = 1, 10 do t.eq(results[i], "hello " .. i) end
end)

t.done()
