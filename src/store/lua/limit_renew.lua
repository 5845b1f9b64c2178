-- Extends a holder's slots of its concurrency limits (section 3.21) while its fire runs. A slot whose
-- lease ran out (the node could not renew it: paused, cut off from Redis) is taken again when its
-- limit has room; otherwise it is lost, and said. A limit deleted meanwhile holds nothing.
-- KEYS[1] the limits hash  KEYS[2..] each limit's slots
-- ARGV[1] the holder  ARGV[2] lease ms  ARGV[3..] the limits' names, as KEYS[2..]
-- Returns the names of the limits whose slot the holder lost (full without it), or a BADKEY error
local bad = wrong(KEYS[1], 'hash')
for i = 2, #KEYS do bad = bad or wrong(KEYS[i], 'zset') end
if bad then return refuse(bad) end
local now = time_ms()
local lost = {}
for i = 2, #KEYS do
  local until_ms = redis.call('ZSCORE', KEYS[i], ARGV[1])
  local keep = until_ms and tonumber(until_ms) > now
  if not keep then
    local max = limit_max(KEYS[1], ARGV[i + 1])
    if max then
      redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
      keep = redis.call('ZCARD', KEYS[i]) < max
      if not keep then lost[#lost + 1] = ARGV[i + 1] end
    end
  end
  if keep then redis.call('ZADD', KEYS[i], now + tonumber(ARGV[2]), ARGV[1]) end
end
return lost
