-- A chunk that returns a table of functions: `method` picks one (default: main).
local M = {}

function M.main(body)
  return "main:" .. tostring(body)
end

function M.shout(body)
  return string.upper(body)
end

M.not_a_function = 42

return M
