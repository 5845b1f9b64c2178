-- Read the jobs whose watermark is due, with their definitions, in one round trip.
-- KEYS[1] due zset
-- ARGV[1] now ms  ARGV[2] limit  ARGV[3] job key prefix ('<tag>:job:')
-- Returns a flat list: id, spec, paused, next_ms, last_ms, updated_ms per job.
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for _, id in ipairs(ids) do
  local h = redis.call('HMGET', ARGV[3] .. id, 'spec', 'paused', 'next_ms', 'last_ms', 'updated_ms')
  if h[1] then
    out[#out+1] = id
    for i = 1, 5 do out[#out+1] = h[i] or '' end
  else
    redis.call('ZREM', KEYS[1], id)  -- a due entry whose job is gone: clean it up
  end
end
return out
