-- locate.lua: find the stream entries of messages by their relevo ID, scanning in Redis.
--
-- Scans up to ARGV[2] entries from ARGV[1] (an XRANGE start, e.g. "(1700000000000-0")
-- and reports the stream entry ID of each wanted message ID met there. Scanning here
-- rather than in the client sends back a few IDs instead of every body; the count keeps
-- each call (and so each pause of Redis) short.
--
-- KEYS[1]   the queue's stream
-- ARGV[1]   where to start (XRANGE syntax)
-- ARGV[2]   entries to scan at most
-- ARGV[3..] wanted message IDs ("i" field)
-- Returns {last entry ID scanned or "", entries scanned, message ID, entry ID, ...}.
local wanted = {}
for i = 3, #ARGV do
  wanted[ARGV[i]] = true
end
local entries = redis.call('XRANGE', KEYS[1], ARGV[1], '+', 'COUNT', tonumber(ARGV[2]))
local reply = {'', #entries}
for _, entry in ipairs(entries) do
  reply[1] = entry[1]
  local fields = entry[2]
  for f = 1, #fields, 2 do
    if fields[f] == 'i' then
      if wanted[fields[f + 1]] then
        reply[#reply + 1] = fields[f + 1]
        reply[#reply + 1] = entry[1]
      end
      break
    end
  end
end
return reply
