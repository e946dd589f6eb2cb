-- A Lua handler as an application writes one; process_task stands in for the real work.

local json = require("json")
local logger = require("logger")

-- Pretend work: tasks with action "fail" are refused (and so requeued).
local function process_task(data)
  if data.action == "fail" then
    return nil, "cannot process task " .. tostring(data.id)
  end
  return {id = data.id, status = "done"}
end

local function handler(body)
  local data = json.decode(body)
  logger.info("Procesando", {task_id = data.id})
  local result, err = process_task(data)
  if err then
    return nil, err -- Nack: reencolar mensaje
  end
  return result -- Ack: remover de cola
end

return handler
