"""The Lua side of a relevo Lua state: sandbox, modules, limits and the call protocol.

BOOTSTRAP runs once per state in the state's real globals and receives a `host` table of
Python callables. It returns the functions Python drives the state with. Handler code
only ever sees `env`, a fresh table of safe globals: no `os`, `io`, `debug`, `package`,
`dofile`/`loadfile`, `string.dump`, nor any Python object (host callables live in
upvalues, out of reach without `debug`).

Protocol. A handler runs inside a worker coroutine that loops forever, so one call costs
one `resume`, not a new coroutine. Python holds a stepper bound to it;
`step(call_deadline, budget, ...)` resumes it and reports what happened, code first:

    value                the handler returned: ack. A single value (None included), not
                         a tuple, so the hot path builds and reads none; value is the
                         handler's first result
    6, err[, delay]      it returned `nil, err` or `false, err` (with `delay` seconds: retry
                         no sooner than that): nack with err
    7, false             it returned `false`: nack
    1, op, args...       a module asked Python to wait (sleep, publish, info)
    2, n                 a bare coroutine.yield(): let the event loop breathe, resume
    3, err, traceback    the handler raised
    4, message           a limit was hit (the state must be dropped)
    5, handler, err      the chunk's coroutine returned (only at load)

Deadlines. `step(call_deadline, budget, ...)` sets the call's deadline and instruction
budget (nil keeps them, on later resumes). The `max_blocking` slice of each resume starts
at the hook's first check after it, so Python never reads the clock on the hot path;
that check comes within HOOK_EVERY instructions, the same granularity as the budget.
"""

from __future__ import annotations

BOOTSTRAP = r"""
local host = ...
local debug_sethook, debug_getinfo, debug_traceback, debug_getmetatable =
  debug.sethook, debug.getinfo, debug.traceback, debug.getmetatable
local co_create, co_resume, co_yield, co_status, co_running =
  coroutine.create, coroutine.resume, coroutine.yield, coroutine.status, coroutine.running
local error, next, pairs, ipairs, rawlen, rawget, select, setmetatable, tostring, type =
  error, next, pairs, ipairs, rawlen, rawget, select, setmetatable, tostring, type
local unpack, concat, sort = table.unpack, table.concat, table.sort
local math_huge = math.huge
local real_load, real_collectgarbage = load, collectgarbage

local monotonic = host.monotonic
local HOOK_EVERY = host.hook_every        -- instructions between limit checks; 0 = no limits
local SLICE = host.max_blocking           -- seconds of Lua per resume, or nil
local SLICE_LABEL, TIMEOUT_LABEL = host.max_blocking_label, host.timeout_label

local REQ = setmetatable({}, {__name = "relevo.request", __metatable = false})
local DONE = setmetatable({}, {__name = "relevo.done", __metatable = false})
local ARRAY = {__name = "json.array"}     -- marks a table as a list, also when empty
local NULL = setmetatable({}, {
  __name = "json.null", __metatable = false,
  __tostring = function() return "null" end,
  __newindex = function() error("json.null is read-only", 2) end,
})

-- Limits -------------------------------------------------------------------------------
-- A count hook on every coroutine handler code runs in. Once a limit is hit the hook
-- fires on every instruction, so no pcall/xpcall inside the handler can swallow it.
local call_deadline, slice_deadline, remaining, killed = math_huge, nil, math_huge, nil
local MAIN = co_running()  -- lupa's own thread: where directly called handlers run
local direct_running = false  -- the main thread's hook only counts while a handler runs

local function exceeded()
  remaining = remaining - HOOK_EVERY
  if remaining < 0 then return "max_instructions" end
  if SLICE == nil and call_deadline == math_huge then return nil end
  local now = monotonic()
  if slice_deadline == nil and SLICE ~= nil then slice_deadline = now + SLICE end
  if now > call_deadline and (slice_deadline == nil or call_deadline <= slice_deadline) then
    return TIMEOUT_LABEL
  end
  if slice_deadline ~= nil and now > slice_deadline then return SLICE_LABEL end
  return nil
end

local function hook()
  if killed == nil then
    if not direct_running and co_running() == MAIN then return end
    local what = exceeded()
    if what == nil then return end
    local info = debug_getinfo(2, "Sl")
    local where = ""
    if info and info.currentline and info.currentline > 0 then
      where = info.short_src .. ":" .. info.currentline .. ": "
    end
    killed = where .. what .. " exceeded"
  end
  debug_sethook(co_running(), hook, "", 1)
  error(killed, 0)
end

local function limited(co)
  if HOOK_EVERY > 0 then debug_sethook(co, hook, "", HOOK_EVERY) end
  return co
end
limited(MAIN)

-- Sandboxed coroutines: limited too, and a module's wait inside a user coroutine is
-- passed up to the worker coroutine (Python) and its answer passed back down.
local function forward(co, ok, ...)
  if ok and (...) == REQ and co_status(co) == "suspended" then
    return forward(co, co_resume(co, co_yield(...)))
  end
  return ok, ...
end
local function unwrap(ok, ...)
  if ok then return ... end
  error((...), 0)
end
local sb_coroutine = {}
for k, v in pairs(coroutine) do sb_coroutine[k] = v end
function sb_coroutine.create(f) return limited(co_create(f)) end
function sb_coroutine.resume(co, ...) return forward(co, co_resume(co, ...)) end
function sb_coroutine.wrap(f)
  local co = limited(co_create(f))
  return function(...) return unwrap(forward(co, co_resume(co, ...))) end
end

-- The environment handler code sees ---------------------------------------------------
string.dump = nil                          -- bytecode is never loaded, nor produced
getmetatable("").__metatable = false       -- the shared string metatable stays shared

local function copy(t)
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  return c
end

local env = {}
for _, name in ipairs({"assert", "error", "getmetatable", "ipairs", "next", "pairs",
    "pcall", "rawequal", "rawget", "rawlen", "rawset", "select", "setmetatable",
    "tonumber", "tostring", "type", "xpcall", "_VERSION"}) do
  env[name] = _G[name]
end
env.string, env.table, env.math, env.utf8 = copy(string), copy(table), copy(math), copy(utf8)
env.coroutine = sb_coroutine
env.unpack = unpack
env._G = env
function env.print(...)
  local parts = {}
  for i = 1, select("#", ...) do parts[i] = tostring((select(i, ...))) end
  host.log("info", concat(parts, "\t"), nil)
end
function env.collectgarbage(opt)
  if opt == "count" then return real_collectgarbage("count") end
  error("collectgarbage is limited to 'count' in relevo handlers", 2)
end
function env.load(chunk, name, mode, chunk_env)
  if mode ~= nil and mode ~= "t" then return nil, "only text chunks can be loaded" end
  if chunk_env == nil then chunk_env = env end
  return real_load(chunk, name, "t", chunk_env)
end

-- Modules -----------------------------------------------------------------------------
local modules = {}

local json = {null = NULL}
function json.decode(v)
  if type(v) ~= "string" then return v end  -- already decoded by the queue's codec
  return host.json_decode(v)
end
function json.encode(v) return host.json_encode(v) end
function json.array(t) return setmetatable(t or {}, ARRAY) end
modules.json = json

local logger = {}
local function log_at(level)
  return function(a, b, c)
    if a == logger then a, b = b, c end  -- logger:info(...) as well as logger.info(...)
    host.log(level, a, b)
  end
end
logger.debug, logger.info = log_at("debug"), log_at("info")
logger.warn, logger.warning, logger.error = log_at("warn"), log_at("warn"), log_at("error")
modules.logger = logger

local time = {}
function time.now() return host.wall() end
function time.sleep(d)
  local ok, err = co_yield(REQ, "sleep", d)
  if not ok then error(err, 2) end
  return true
end
modules.time = time

local queue = {}
function queue.publish(id, data, headers) return co_yield(REQ, "publish", id, data, headers) end
function queue.info(id) return co_yield(REQ, "info", id) end
local handles = setmetatable({}, {__mode = "k"})  -- message table -> delivery (never exposed)
local Message = {__name = "queue.message", __metatable = false}
Message.__index = Message
local function delivery(m)
  local d = handles[m]
  if d == nil then error("call message methods as msg:method()", 3) end
  return d
end
function Message.id(m) return host.msg_id(delivery(m)) end
function Message.header(m, key) return host.msg_header(delivery(m), key) end
function Message.headers(m) return host.msg_headers(delivery(m)) end
function Message.attempts(m) return host.msg_attempts(delivery(m)) end
function Message.ack(m) return host.msg_settle(delivery(m), true) end
function Message.nack(m) return host.msg_settle(delivery(m), false) end
function queue.message()
  local d, err = host.msg_current()
  if d == nil then return nil, err end
  local m = setmetatable({}, Message)
  handles[m] = d
  return m
end
modules.queue = queue

local allowed, allowed_names = {}, {}
for _, name in ipairs(host.modules) do
  allowed[name] = modules[name]
  allowed_names[#allowed_names + 1] = name
end
-- `unsafe_libraries`: the real os/io/debug, for trusted code that needs them (they can
-- escape the sandbox and, with debug.sethook, the limits).
for _, name in ipairs(host.unsafe_libraries) do
  env[name] = _G[name]
  allowed[name] = _G[name]
  allowed_names[#allowed_names + 1] = name
end
sort(allowed_names)
local allowed_text = #allowed_names > 0 and concat(allowed_names, ", ") or "none"
function env.require(name)
  local m = allowed[name]
  if m == nil then
    error("module '" .. tostring(name) .. "' is not available (this function's modules: "
      .. allowed_text .. ")", 2)
  end
  return m
end

-- Driving -----------------------------------------------------------------------------
local function done(first, second, third)
  if first == nil or first == false then
    if second ~= nil then return 6, second, third end
    if first == false then return 7, false end
  end
  return 0, first
end

local function finish(co, ok, first, a, b, ...)
  if ok then
    if first == DONE then  -- settled inside the coroutine by done()
      if a == 0 then return b end  -- an ack: its value alone, as for direct calls
      return a, b, ...
    end
    if first == REQ then return 1, a, b, ... end
    if co_status(co) == "dead" then return 5, first, a end
    return 2, 0
  end
  if killed ~= nil then return 4, killed end
  return 3, first, debug_traceback(co)
end

-- Coroutines never reach Python (lupa would hand them back as functions): Python holds
-- a stepper closure bound to one coroutine instead.
-- Each comes with `fast(payload)`: a call start with no per-call limit to set.
local function stepper(co)
  return function(dl, budget, ...)
    slice_deadline = nil
    if dl ~= nil then call_deadline = dl end
    if budget ~= nil then remaining = budget end
    return finish(co, co_resume(co, ...))
  end, function(payload)
    slice_deadline = nil
    return finish(co, co_resume(co, payload))
  end
end

local function worker(handler)
  return stepper(limited(co_create(function(payload)
    while true do payload = co_yield(DONE, done(handler(payload))) end
  end)))
end

-- A handler that cannot wait (no `time`, no `queue` module) is called directly: no
-- coroutine switch, same codes. Its error handler keeps the traceback of the raise.
local direct_traceback = nil
local function keep_traceback(err)
  direct_traceback = debug_traceback(nil, 2)
  return err
end
local function leave(ok, first, second, third)
  direct_running = false
  if ok then
    -- An ack comes back as one value (or none): no tuple for Python to build and read.
    if first ~= nil and first ~= false then return first end
    if first == nil and second == nil then return end
    return done(first, second, third)
  end
  if killed ~= nil then return 4, killed end
  return 3, first, direct_traceback
end
local function direct(handler)
  return function(dl, budget, payload)
    slice_deadline = nil
    if dl ~= nil then call_deadline = dl end
    if budget ~= nil then remaining = budget end
    direct_running = true
    return leave(xpcall(handler, keep_traceback, payload))
  end, function(payload)
    slice_deadline = nil
    direct_running = true
    return leave(xpcall(handler, keep_traceback, payload))
  end
end

-- The chunk runs in a limited coroutine too; it resolves to the handler function.
local function boot(source, chunkname, method)
  local chunk, err = real_load(source, chunkname, "t", env)
  if not chunk then return nil, err end
  local step = stepper(limited(co_create(function()
    local result = chunk()
    if type(result) == "function" then return result end
    if type(result) == "table" then
      local name = method or "main"
      local fn = result[name]
      if type(fn) == "function" then return fn end
      local names = {}
      for k, v in pairs(result) do
        if type(v) == "function" then names[#names + 1] = tostring(k) end
      end
      sort(names)
      return nil, "the returned table has no function '" .. tostring(name) .. "' (it has: "
        .. (#names > 0 and concat(names, ", ") or "none") .. "); set `method`"
    end
    return nil, "the chunk must return a function or a table of functions, not " .. type(result)
  end)))
  return step
end

-- Shape of a table for conversion to Python: 0 null, 1 list (values follow), 2 dict,
-- 3 list too long to unpack (Python indexes it).
local function describe(t)
  if t == NULL then return 0 end
  local n, count = rawlen(t), 0
  for _ in next, t do count = count + 1 end
  if count == 0 then return debug_getmetatable(t) == ARRAY and 1 or 2 end
  if count ~= n then return 2 end
  for i = 1, n do
    if rawget(t, i) == nil then return 2 end
  end
  if n > 4096 then return 3, n end
  return 1, unpack(t, 1, n)
end

local function new_array() return setmetatable({}, ARRAY) end

return worker, direct, boot, describe, new_array, NULL
"""
