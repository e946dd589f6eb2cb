-- reclaim.lua: hand the entries of consumers that went silent back to the queue.
--
-- A consumer is silent when Redis has not heard from it for ARGV[3] ms (claim_idle).
-- A live consumer is never silent: its keeper renews the lease of every entry it still
-- holds every claim_idle / 3 (XCLAIM of its own entries, which also refreshes the
-- consumer's idle time), and a restarted Redis counts every consumer of its AOF as
-- just seen. So an entry a live consumer holds, or has settled but not yet acked
-- (acks queued during an outage), is never taken here, however long its own idle time.
--
-- For each silent consumer, up to ARGV[4] of its entries pending longer than claim_idle
-- are re-added at the tail with their attempts field raised by the deliveries they had
-- (every one of them ended without a settlement, so each counts as a failed attempt),
-- then acked and deleted: any live consumer reads them next. Entries trimmed away
-- meanwhile are only acked. Consumers with nothing pending and silent for ARGV[5] ms
-- are removed from the group, so crashed consumers do not count in info() forever.
--
-- KEYS[1]  the queue's stream
-- ARGV[1]  consumer group
-- ARGV[2]  the caller's own consumer name (never silent, never reclaimed from)
-- ARGV[3]  silence in ms after which a consumer's entries come back (claim_idle)
-- ARGV[4]  max entries to give back in this call
-- ARGV[5]  idle time in ms after which an empty consumer is removed
-- Returns the number of entries given back.
local stream, group, me = KEYS[1], ARGV[1], ARGV[2]
local claim_ms, budget, stale = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local moved = 0
for _, consumer in ipairs(redis.call('XINFO', 'CONSUMERS', stream, group)) do
  -- RESP2 map as a flat list: name, <name>, pending, <n>, idle, <ms>, ...
  local info = {}
  for f = 1, #consumer, 2 do info[consumer[f]] = consumer[f + 1] end
  local name = info['name']
  if name ~= me and info['idle'] >= claim_ms and info['pending'] > 0 and moved < budget then
    local rows = redis.call('XPENDING', stream, group, 'IDLE', claim_ms, '-', '+',
                            budget - moved, name)
    for _, row in ipairs(rows) do
      local id, deliveries = row[1], row[4]
      local found = redis.call('XRANGE', stream, id, id)[1]
      if found then
        redis.call('XADD', stream, '*', unpack(raise_attempts(found[2], deliveries)))
      end
      redis.call('XACK', stream, group, id)
      redis.call('XDEL', stream, id)
      moved = moved + 1
    end
  elseif name ~= me and info['pending'] == 0 and info['idle'] > stale then
    redis.call('XGROUP', 'DELCONSUMER', stream, group, name)
  end
end
return moved
