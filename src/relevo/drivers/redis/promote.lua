-- promote.lua: move delayed messages whose time has come into their stream.
--
-- Atomic, so any number of processes may run it at once: each due member is added to
-- the stream and removed from the sorted set in one step, exactly once. Time is Redis'
-- own (TIME), one clock for every process. When the stream is gone (the queue was
-- deleted) nothing is moved: the members stay until it exists again.
--
-- KEYS[1]  the queue's stream
-- KEYS[2]  the queue's sorted set of delayed messages
-- ARGV[1]  at most this many members per call
-- Returns {moved, next due time or false}; moved is -1 when due members wait for a
-- stream that does not exist.
local stream, delayed = KEYS[1], KEYS[2]
local t = redis.call('TIME')
local now = string.format('%d.%06d', t[1], t[2])
local due = redis.call('ZRANGEBYSCORE', delayed, '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
local moved = 0
if #due > 0 then
  if redis.call('EXISTS', stream) == 0 then
    moved = -1
  else
    for _, member in ipairs(due) do
      local parts = {cmsgpack.unpack(member)}
      redis.call('XADD', stream, '*', unpack(parts, 2))
      redis.call('ZREM', delayed, member)
      moved = moved + 1
    end
  end
end
local first = redis.call('ZRANGE', delayed, 0, 0, 'WITHSCORES')
return {moved, first[2] or false}
