-- Extends a holder's slots of its concurrency limits (section 3.21) while its fire runs.
-- KEYS[1..] each limit's slots  ARGV[1] the holder  ARGV[2] lease ms  ARGV[3..] the limits' names
-- Returns the names of the limits whose slot the holder no longer holds (its lease ran out, and it
-- was dropped or taken over), or a BADKEY error
local bad = nil
for i = 1, #KEYS do bad = bad or wrong(KEYS[i], 'zset') end
if bad then return refuse(bad) end
local now = time_ms()
local lost = {}
for i = 1, #KEYS do
  local until_ms = redis.call('ZSCORE', KEYS[i], ARGV[1])
  if until_ms and tonumber(until_ms) > now then
    redis.call('ZADD', KEYS[i], now + tonumber(ARGV[2]), ARGV[1])
  else
    lost[#lost + 1] = ARGV[i + 2]
  end
end
return lost
