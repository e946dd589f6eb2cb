-- reclaim.lua: hand entries whose consumer went silent back to the queue.
--
-- XAUTOCLAIM takes up to ARGV[4] entries pending longer than ARGV[3] ms (live consumers
-- refresh their entries' idle time while handlers run, so only entries of dead or stuck
-- consumers get here). Each one is re-added at the tail with its attempts field raised by
-- the deliveries it had (every one of them ended without a settlement, so each counts as
-- a failed attempt), then acked and deleted: any live consumer reads it next. Entries
-- trimmed away meanwhile are dropped from the pending list by XAUTOCLAIM itself.
-- Finally, consumers with nothing pending and silent for ARGV[5] ms are removed from the
-- group, so crashed consumers do not count in info() forever.
--
-- KEYS[1]  the queue's stream
-- ARGV[1]  consumer group
-- ARGV[2]  consumer name the claim is made under (the caller's own)
-- ARGV[3]  min idle time in ms (claim_idle)
-- ARGV[4]  max entries to reclaim in this call
-- ARGV[5]  idle time in ms after which an empty consumer is removed
-- ARGV[6]  cursor: stream entry ID to scan from ("0-0" to start over)
-- Returns {next cursor, number of entries given back}.
local stream, group, me = KEYS[1], ARGV[1], ARGV[2]
local claimed = redis.call('XAUTOCLAIM', stream, group, me, ARGV[3], ARGV[6], 'COUNT', ARGV[4])
local moved = 0
for _, entry in ipairs(claimed[2]) do
  local id, fields = entry[1], entry[2]
  -- XAUTOCLAIM counted one more delivery; the ones before it all failed.
  local deliveries = redis.call('XPENDING', stream, group, id, id, 1)[1][4]
  local bump = deliveries - 1
  local seen = false
  for f = 1, #fields, 2 do
    if fields[f] == 'a' then
      fields[f + 1] = tostring((tonumber(fields[f + 1]) or 0) + bump)
      seen = true
    end
  end
  if not seen and bump > 0 then
    fields[#fields + 1] = 'a'
    fields[#fields + 1] = tostring(bump)
  end
  redis.call('XADD', stream, '*', unpack(fields))
  redis.call('XACK', stream, group, id)
  redis.call('XDEL', stream, id)
  moved = moved + 1
end
local stale = tonumber(ARGV[5])
for _, consumer in ipairs(redis.call('XINFO', 'CONSUMERS', stream, group)) do
  -- RESP2 map as a flat list: name, <name>, pending, <n>, idle, <ms>, ...
  local info = {}
  for f = 1, #consumer, 2 do info[consumer[f]] = consumer[f + 1] end
  if info['pending'] == 0 and info['idle'] > stale and info['name'] ~= me then
    redis.call('XGROUP', 'DELCONSUMER', stream, group, info['name'])
  end
end
return {claimed[1], moved}
