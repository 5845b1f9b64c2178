-- Before a retry: only the live owner of a running fire may start another attempt. Records the new
-- attempt's execution on the fire, so a later reap or finish names the right execution, and indexes
-- it in the same step: a fire's `exec` is always an indexed id (finish.lua relies on it and does not
-- index it again).
-- KEYS[1] fire hash  KEYS[2] hb:<self>  KEYS[3] executions index  KEYS[4] open executions
-- ARGV[1] self  ARGV[2] incarnation  ARGV[3] the retry's execution id  ARGV[4] job's executions index
--   key prefix
-- Returns the new attempt number, or 0 when this node no longer owns the fire.
if redis.call('GET', KEYS[2]) ~= ARGV[2] then return 0 end
local f = redis.call('HMGET', KEYS[1], 'state', 'node', 'inc', 'job')
if f[1] ~= 'running' or f[2] ~= ARGV[1] or f[3] ~= ARGV[2] then return 0 end
local bad = wrong(KEYS[3], 'zset', ARGV[4] .. f[4], 'zset', KEYS[4], 'zset')
if bad then return refuse(bad) end
redis.call('ZADD', KEYS[3], 0, ARGV[3])
redis.call('ZADD', KEYS[4], 0, ARGV[3])
redis.call('ZADD', ARGV[4] .. f[4], 0, ARGV[3])
redis.call('HSET', KEYS[1], 'exec', ARGV[3])
return redis.call('HINCRBY', KEYS[1], 'attempts', 1)
