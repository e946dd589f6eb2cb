-- bounded.lua: add messages to a bounded queue's stream while there is room. It never
-- trims: a full queue refuses (the publisher waits for room, then raises QueueFull).
--
-- Room is max_length minus XLEN: acked entries are deleted from the stream, so XLEN
-- counts the ready messages and those in flight, as the memory driver's bound does.
--
-- KEYS[1]   the queue's stream
-- ARGV[1]   max_length
-- ARGV[2..] messages, each as its field count n followed by its n field/value strings
-- Returns how many messages were added (the first ones), or -1 when the queue is not
-- declared.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return -1
end
local room = tonumber(ARGV[1]) - redis.call('XLEN', KEYS[1])
local added = 0
local i = 2
while i <= #ARGV and added < room do
  local n = tonumber(ARGV[i])
  redis.call('XADD', KEYS[1], '*', unpack(ARGV, i + 1, i + n))
  added = added + 1
  i = i + n + 1
end
return added
