-- attempts.lua: put before the scripts that raise an entry's attempts (requeue, retry,
-- reclaim). `fields` is a stream entry's flat field list; its "a" field (the attempts
-- so far, absent for none) is raised by `bump` in place, and added when absent and
-- `bump` is positive. Returns `fields`.
local function raise_attempts(fields, bump)
  for f = 1, #fields, 2 do
    if fields[f] == 'a' then
      fields[f + 1] = tostring((tonumber(fields[f + 1]) or 0) + bump)
      return fields
    end
  end
  if bump > 0 then
    fields[#fields + 1] = 'a'
    fields[#fields + 1] = tostring(bump)
  end
  return fields
end

