-- The handler of the original documentation, as written, with a local process_task.
local json = require("json")
local logger = require("logger")

local function process_task(data)
  if data.action == "fail" then
    return nil, "cannot process " .. tostring(data.id)
  end
  return {id = data.id, status = "done"}
end

local function handler(body)
  local data = json.decode(body)
  logger.info("Procesando", {task_id = data.id})
  local result, err = process_task(data)
  if err then
    return nil, err -- Nack: requeue
  end
  return result -- Ack: remove from queue
end

return handler
