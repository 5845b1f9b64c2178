-- Before a retry: only the live owner of a running fire may start another attempt. Records the new
-- attempt's execution on the fire, so a later reap or finish names the right execution.
-- KEYS[1] fire hash  KEYS[2] hb:<self>
-- ARGV[1] self  ARGV[2] incarnation  ARGV[3] the retry's execution id
-- Returns the new attempt number, or 0 when this node no longer owns the fire.
if redis.call('GET', KEYS[2]) ~= ARGV[2] then return 0 end
local f = redis.call('HMGET', KEYS[1], 'state', 'node', 'inc')
if f[1] ~= 'running' or f[2] ~= ARGV[1] or f[3] ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'exec', ARGV[3])
return redis.call('HINCRBY', KEYS[1], 'attempts', 1)
