-- task.lua: the Lua half of the task module (layer: bindings). Receives the
-- C half's table and adds what is simpler in Lua.
local task = ...
local monotonic = require("time").monotonic

-- task.all(handles[, timeout]): joins every task; returns a list with one
-- table.pack'ed outcome per handle ({true, results...} or {false, err}),
-- or nil, "timeout" (the tasks keep running) when the timeout passes first.
function task.all(list, timeout)
  if type(list) ~= "table" then
    error("bad argument #1 to 'all' (table expected, got " .. type(list) .. ")", 2)
  end
  local deadline = timeout and timeout >= 0 and monotonic() + timeout
  local out = {}
  for i, h in ipairs(list) do
    local left = deadline and math.max(0, deadline - monotonic())
    local r = table.pack(h:join(left))
    if r[1] == nil and r[2] == "timeout" then return nil, "timeout" end
    out[i] = r
  end
  return out
end

-- task.semaphore(n) is thread.semaphore (bindings/mutex.c: a counting
-- lock on the runtime's wait queue, shared by tasks and threads alike),
-- looked up on first use so that loading task does not load thread.
setmetatable(task, {__index = function(t, k)
  if k ~= "semaphore" then return nil end
  local semaphore = require("thread").semaphore
  rawset(t, k, semaphore)
  return semaphore
end})

return task
