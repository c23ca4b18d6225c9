-- _check_spec.lua: loads and checks an exercise spec for `netlua -m check`
-- (lab/check.lua). A spec is a Lua file returning a table; every key is
-- checked here, so a typo ("expct") or a wrong type is a clear error
-- before any server starts, never a dialogue that silently does nothing.
local M = {}

M.DEFAULT_WITHIN = 5
M.DEFAULT_READY_WITHIN = 10
M.MAX_CLIENTS = 1000
M.MAX_BYTES = 16 * 1024 * 1024 -- the most one expect step may wait for
M.MAX_LINE = 64 * 1024 -- the longest line an expect_line step reads

-- A spec error: raised as a table so the loader tells it from a bug.
local function bad(where, fmt, ...)
  error({spec_error = where .. ": " .. string.format(fmt, ...)}, 0)
end

local function describe(v)
  if type(v) == "string" then return string.format("%q", v) end
  return tostring(v) .. " (" .. type(v) .. ")"
end

-- Checks of one value: each returns true or what the value must be.
local is = {
  string = function(v) return type(v) == "string" or "a string" end,
  text = function(v) return type(v) == "string" or "a string (the bytes to send or expect)" end,
  boolean = function(v) return type(v) == "boolean" or "true or false" end,
  ["true"] = function(v) return v == true or "true" end,
  seconds = function(v)
    return (type(v) == "number" and v > 0 and v < math.huge) or "a number of seconds above 0"
  end,
  sleep = function(v)
    return (type(v) == "number" and v >= 0 and v < math.huge) or "a number of seconds, 0 or more"
  end,
  clients = function(v)
    return (math.type(v) == "integer" and v >= 1 and v <= M.MAX_CLIENTS)
      or string.format("a whole number from 1 to %d", M.MAX_CLIENTS)
  end,
  bytes = function(v)
    return (math.type(v) == "integer" and v >= 1 and v <= M.MAX_BYTES)
      or string.format("a whole number from 1 to %d", M.MAX_BYTES)
  end,
  pattern = function(v)
    if type(v) ~= "string" then return "a string (a Lua pattern)" end
    local ok, err = pcall(string.find, "", v)
    return ok or ("a valid Lua pattern (" .. tostring(err):gsub("^.-:%d+: ", "") .. ")")
  end,
}

local function check(where, key, v, kind)
  local ok = is[kind](v)
  if ok ~= true then bad(where, "%s must be %s, not %s", key, ok, describe(v)) end
end

local function check_list(where, key, v, kind)
  if type(v) ~= "table" then bad(where, "%s must be a list, not %s", key, describe(v)) end
  for k in pairs(v) do
    if math.type(k) ~= "integer" or k < 1 or k > #v then
      bad(where, "%s must be a list (1, 2, 3 ...), not a table with key %s", key, describe(k))
    end
  end
  for k, item in ipairs(v) do
    if kind then check(where, string.format("%s[%d]", key, k), item, kind) end
  end
end

-- What a step does: exactly one of these keys per step.
local ACTIONS = {
  send = "text", expect = "text", expect_line = "pattern", expect_bytes = "bytes",
  expect_close = "true", sleep = "sleep", sync = "true",
}
local EXPECTS = {expect = true, expect_line = true, expect_bytes = true, expect_close = true}
-- And the keys that qualify it.
local MODIFIERS = {within = true, client = true, skip = true}

local function check_client(where, v, clients)
  local list = type(v) == "table" and v or {v}
  if type(v) == "table" then check_list(where, "client", v) end
  for _, c in ipairs(list) do
    if math.type(c) ~= "integer" or c < 1 or c > clients then
      bad(where, "client must be a client's number from 1 to %d (or a list of them), not %s",
        clients, describe(c))
    end
  end
  local set = {}
  for _, c in ipairs(list) do set[c] = true end
  return set
end

local function check_step(where, step, clients, udp)
  if type(step) ~= "table" then bad(where, "a step must be a table, not %s", describe(step)) end
  local action
  for key, v in pairs(step) do
    if ACTIONS[key] then
      if action then bad(where, "a step does one thing: both %s and %s", action, key) end
      action = key
      check(where, key, v, ACTIONS[key])
    elseif not MODIFIERS[key] then
      bad(where, "unknown key %s (a step has one of send, expect, expect_line, expect_bytes, " ..
        "expect_close, sleep, sync; and within, client, skip)", describe(key))
    end
  end
  if not action then bad(where, "the step does nothing: it needs send, expect, expect_line, " ..
    "expect_bytes, expect_close, sleep or sync") end
  if step.within ~= nil then
    if not EXPECTS[action] and action ~= "sync" then
      bad(where, "within belongs to an expect or sync step, not to %s", action)
    end
    check(where, "within", step.within, "seconds")
  end
  if step.skip ~= nil then
    if action ~= "expect_line" then bad(where, "skip belongs to an expect_line step, not to %s", action) end
    check(where, "skip", step.skip, "boolean")
  end
  if udp and action == "expect_close" then
    bad(where, "expect_close means nothing over UDP (udp = true): there is no connection to close")
  end
  if action == "sync" and step.client ~= nil then
    bad(where, "a sync step is for every client: it takes no client key")
  end
  local only = step.client ~= nil and check_client(where, step.client, clients) or nil
  return {action = action, arg = step[action], within = step.within, skip = step.skip == true,
    only = only}
end

local DIALOGUE_KEYS = {name = "string", clients = "clients", steps = true, within = "seconds"}

local function check_dialogue(where, d, udp, within)
  if type(d) ~= "table" then bad(where, "a dialogue must be a table, not %s", describe(d)) end
  for key, v in pairs(d) do
    local kind = DIALOGUE_KEYS[key]
    if not kind then
      bad(where, "unknown key %s (a dialogue has name, clients, steps, within)", describe(key))
    end
    if kind ~= true then check(where, key, v, kind) end
  end
  if d.name == nil then bad(where, "the dialogue needs a name") end
  where = where .. string.format(" (%s)", d.name)
  if d.steps == nil then bad(where, "the dialogue needs steps") end
  check_list(where, "steps", d.steps)
  local out = {name = d.name, clients = d.clients or 1, within = d.within or within, steps = {}}
  for k, step in ipairs(d.steps) do
    out.steps[k] = check_step(string.format("%s, step %d", where, k), step, out.clients, udp)
    out.steps[k].within = out.steps[k].within or out.within
  end
  return out
end

local TOP_KEYS = {title = "string", args = true, udp = "boolean", ready_within = "seconds",
  within = "seconds", dialogues = true}

-- The spec table t, checked; `where` names it in errors. Returns the spec
-- with every default filled in.
function M.check(t, where)
  if type(t) ~= "table" then bad(where, "the file must return a table, not %s", describe(t)) end
  for key, v in pairs(t) do
    local kind = TOP_KEYS[key]
    if not kind then
      bad(where, "unknown key %s (a spec has title, args, udp, ready_within, within, dialogues)",
        describe(key))
    end
    if kind ~= true then check(where, key, v, kind) end
  end
  local args = t.args or {}
  check_list(where, "args", args)
  for k, a in ipairs(args) do
    if type(a) ~= "string" and type(a) ~= "number" then
      bad(where, "args[%d] must be a string or a number, not %s", k, describe(a))
    end
  end
  if t.dialogues == nil then bad(where, "the spec needs dialogues") end
  check_list(where, "dialogues", t.dialogues)
  if #t.dialogues == 0 then bad(where, "dialogues is empty: nothing to check") end
  local spec = {title = t.title, udp = t.udp == true, args = {},
    ready_within = t.ready_within or M.DEFAULT_READY_WITHIN, dialogues = {}}
  for k, a in ipairs(args) do spec.args[k] = tostring(a) end
  for k, d in ipairs(t.dialogues) do
    spec.dialogues[k] = check_dialogue(string.format("%s: dialogue %d", where, k), d, spec.udp,
      t.within or M.DEFAULT_WITHIN)
  end
  return spec
end

-- What a spec file may use: plain data and string helpers (string.rep for
-- a big payload), nothing that touches the process.
local function sandbox()
  return {string = string, table = table, math = math, utf8 = utf8, tostring = tostring,
    tonumber = tonumber, ipairs = ipairs, pairs = pairs, select = select, type = type,
    error = error, assert = assert}
end

-- Loads and checks the spec at `path`: the spec, or nil and why.
function M.load(path)
  local chunk, err = loadfile(path, "t", sandbox())
  if not chunk then return nil, "cannot load the spec: " .. err end
  local ok, t = pcall(chunk)
  if not ok then return nil, "the spec " .. path .. " failed: " .. tostring(t) end
  local checked, spec = pcall(M.check, t, "spec " .. path)
  if not checked then
    if type(spec) == "table" and spec.spec_error then return nil, spec.spec_error end
    error(spec, 0)
  end
  return spec
end

return M
