-- Takes a slot of each of a fire's concurrency limits (section 3.21), all or none: a limit's slots
-- are a sorted set holder -> lease expiry; expired leases (a dead node's) are dropped first.
-- KEYS[1] the limits hash  KEYS[2..] each limit's slots
-- ARGV[1] the holder (a fire id)  ARGV[2] lease ms  ARGV[3..] the limits' names, as KEYS[2..]
-- Returns {'OK'} | {'FULL', name, running, max} | a BADKEY error (a key of the wrong type: nothing
-- written)
local bad = wrong(KEYS[1], 'hash')
for i = 2, #KEYS do bad = bad or wrong(KEYS[i], 'zset') end
if bad then return refuse(bad) end
local now = time_ms()
local live = {}
for i = 2, #KEYS do
  local max = limit_max(KEYS[1], ARGV[i + 1])
  -- A limit deleted (or never stored right) limits nothing.
  if max then
    redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
    local n = redis.call('ZCARD', KEYS[i])
    if not redis.call('ZSCORE', KEYS[i], ARGV[1]) and n >= max then
      return {'FULL', ARGV[i + 1], tostring(n), tostring(max)}
    end
    live[#live + 1] = KEYS[i]
  end
end
for _, k in ipairs(live) do redis.call('ZADD', k, now + tonumber(ARGV[2]), ARGV[1]) end
return {'OK'}
