-- requeue.lua: give pending entries back to the queue, atomically per entry.
--
-- Each entry still pending for the group (and, when ARGV[2] is set, still owned by that
-- consumer) is re-added at the tail of the stream with its attempts field raised by
-- ARGV[3], then acked and deleted. Used for nack (+1), release (+0) and for deliveries a
-- closing subscription gives back (+1 if a handler had them, +0 if not). Checking the
-- owner first makes a late nack from a consumer whose entry was reclaimed a no-op
-- instead of a duplicate.
--
-- KEYS[1]   the queue's stream
-- ARGV[1]   consumer group
-- ARGV[2]   consumer that must still own each entry ("" = any owner)
-- ARGV[3]   attempts to add to each entry's "a" field (0 or more)
-- ARGV[4..] stream entry IDs
-- Returns the number of entries given back.
local stream, group, owner = KEYS[1], ARGV[1], ARGV[2]
local bump = tonumber(ARGV[3])
local moved = 0
for i = 4, #ARGV do
  local id = ARGV[i]
  local pending = redis.call('XPENDING', stream, group, id, id, 1)[1]
  if pending and (owner == '' or pending[2] == owner) then
    local found = redis.call('XRANGE', stream, id, id)[1]
    if found then
      redis.call('XADD', stream, '*', unpack(raise_attempts(found[2], bump)))
    end
    redis.call('XACK', stream, group, id)
    redis.call('XDEL', stream, id)
    moved = moved + 1
  end
end
return moved
