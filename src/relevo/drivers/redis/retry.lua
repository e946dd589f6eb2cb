-- retry.lua: a delayed nack. Store the delayed copy, then settle the original, atomically.
--
-- Each entry still pending for the group and owned by ARGV[2] is copied into the sorted
-- set of delayed messages (its attempts field raised by one, the entry ID as its unique
-- token, scored by its due time), then acked and deleted from the stream. A late nack
-- from a consumer whose entry was reclaimed meanwhile does nothing.
--
-- KEYS[1]   the queue's stream
-- KEYS[2]   the queue's sorted set of delayed messages
-- ARGV[1]   consumer group
-- ARGV[2]   consumer that must still own each entry
-- ARGV[3..] pairs: stream entry ID, due time (epoch seconds)
-- Returns the number of entries delayed.
local stream, delayed, group, owner = KEYS[1], KEYS[2], ARGV[1], ARGV[2]
local moved = 0
for i = 3, #ARGV, 2 do
  local id, due = ARGV[i], ARGV[i + 1]
  local pending = redis.call('XPENDING', stream, group, id, id, 1)[1]
  if pending and pending[2] == owner then
    local found = redis.call('XRANGE', stream, id, id)[1]
    if found then
      redis.call('ZADD', delayed, due, cmsgpack.pack(id, unpack(raise_attempts(found[2], 1))))
    end
    redis.call('XACK', stream, group, id)
    redis.call('XDEL', stream, id)
    moved = moved + 1
  end
end
return moved
