-- A manual fire: deduplicated by idempotency key, recorded, and (for forbid jobs) locked, atomically.
-- KEYS[1] job hash  KEYS[2] fire key  KEYS[3] lock key  KEYS[4] exec key  KEYS[5] executions index
-- KEYS[6] job's executions index  KEYS[7] idempotency key (ignored when ARGV[8] is '0')
-- ARGV[1] retention ms  ARGV[2] change channel  ARGV[3] exec id  ARGV[4] pending JSON
-- ARGV[5] skipped JSON  ARGV[6] forbid '0'|'1'  ARGV[7] lock ttl ms  ARGV[8] has key '0'|'1'
-- ARGV[9] fire id  ARGV[10] exec key prefix ('<tag>:exec:')
-- Returns {'GONE'} | {'DEDUP', JSON} | {'CREATED'} | {'SKIPPED'}
if redis.call('EXISTS', KEYS[1]) == 0 then return {'GONE'} end
if ARGV[8] == '1' then
  local prev = redis.call('GET', KEYS[7])
  if prev then
    local e = redis.call('GET', ARGV[10] .. prev)
    if e then return {'DEDUP', e} end
  end
  redis.call('SET', KEYS[7], ARGV[3], 'PX', ARGV[1])
end
redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[1])
local st, json = 'CREATED', ARGV[4]
if ARGV[6] == '1' and not redis.call('SET', KEYS[3], ARGV[9], 'NX', 'PX', ARGV[7]) then
  st, json = 'SKIPPED', ARGV[5]
end
redis.call('SET', KEYS[4], json, 'PX', ARGV[1])
redis.call('ZADD', KEYS[5], 0, ARGV[3])
redis.call('ZADD', KEYS[6], 0, ARGV[3])
redis.call('PUBLISH', ARGV[2], json)
return {st}
