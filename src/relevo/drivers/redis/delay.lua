-- delay.lua: store published messages that wait for a due time.
--
-- Each member is one message, as `fields.pack_delayed` writes it: msgpack values one
-- after another, a unique token first, then the stream entry's field/value pairs. The
-- score is the due time in epoch seconds. An undeclared queue (no stream) stores nothing,
-- as XADD NOMKSTREAM would.
--
-- KEYS[1]   the queue's stream
-- KEYS[2]   the queue's sorted set of delayed messages
-- ARGV[1]   due time, epoch seconds
-- ARGV[2..] members
-- Returns the number stored, or -1 when the queue is not declared.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return -1
end
local due = ARGV[1]
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[2], due, ARGV[i])
end
return #ARGV - 1
