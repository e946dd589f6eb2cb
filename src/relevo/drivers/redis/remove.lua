-- remove.lua: delete ready entries, never one a consumer holds.
--
-- An entry is removed only if it is still in the stream, still carries the message ID
-- the caller names, and is not pending for the group (delivered and unsettled). The
-- check and the XDEL happen in one atomic step, so a consumer reading meanwhile either
-- got the entry first (it stays) or never sees it.
--
-- KEYS[1]   the queue's stream
-- ARGV[1]   consumer group
-- ARGV[2..] pairs: stream entry ID, message ID ("i" field)
-- Returns {removed, message IDs whose entry was not found at that stream ID...}.
local stream, group = KEYS[1], ARGV[1]
local removed = 0
local missing = {}
for i = 2, #ARGV, 2 do
  local id, message = ARGV[i], ARGV[i + 1]
  local found = redis.call('XRANGE', stream, id, id)[1]
  local matches = false
  if found then
    local fields = found[2]
    for f = 1, #fields, 2 do
      if fields[f] == 'i' then
        matches = fields[f + 1] == message
        break
      end
    end
  end
  if not matches then
    missing[#missing + 1] = message
  elseif redis.call('XPENDING', stream, group, id, id, 1)[1] == nil then
    removed = removed + redis.call('XDEL', stream, id)
  end
end
local reply = {removed}
for _, message in ipairs(missing) do
  reply[#reply + 1] = message
end
return reply
