-- The master puts a fire into a node's durable queue (after a failed or timed-out SubmitTask, or
-- when moving a dead node's work): fenced by the lease; compare-and-set dispatching -> queued.
-- KEYS[1] lease  KEYS[2] fire hash  KEYS[3] q:<target>  KEYS[4] inflight zset  KEYS[5] hb:<target>
-- ARGV[1] lease value  ARGV[2] fire id  ARGV[3] target node
-- Returns OK | FENCED | TARGET_DEAD | the fire's state when it is not dispatching (e.g. 'accepted') | UNKNOWN
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 'FENCED' end
if redis.call('EXISTS', KEYS[5]) == 0 then return 'TARGET_DEAD' end
local bad = wrong(KEYS[2], 'hash', KEYS[3], 'list', KEYS[4], 'zset')
if bad then return refuse(bad) end
local st = redis.call('HGET', KEYS[2], 'state')
if st ~= 'dispatching' then
  redis.call('ZREM', KEYS[4], ARGV[2])  -- not dispatching (or expired): nothing left to sweep
  return st or 'UNKNOWN'
end
redis.call('HSET', KEYS[2], 'state', 'queued', 'node', ARGV[3])
redis.call('LPUSH', KEYS[3], ARGV[2])
redis.call('ZREM', KEYS[4], ARGV[2])
return 'OK'
