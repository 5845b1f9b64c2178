-- A node takes a fire that is being dispatched to it (from SubmitTask, or the master for itself):
-- compare-and-set dispatching -> accepted, and push it into the node's processing list before
-- saying yes, so an accepted fire is durable. Races with `enqueue`; exactly one of the two wins.
-- KEYS[1] epoch counter  KEYS[2] fire hash  KEYS[3] p:<self>  KEYS[4] inflight zset  KEYS[5] hb:<self>
-- ARGV[1] fire id  ARGV[2] sender's epoch  ARGV[3] self  ARGV[4] incarnation
-- Returns OK | ALREADY | TAKEN | STALE_EPOCH | NOT_LIVE | UNKNOWN
if redis.call('GET', KEYS[5]) ~= ARGV[4] then return 'NOT_LIVE' end
if redis.call('GET', KEYS[1]) ~= ARGV[2] then return 'STALE_EPOCH' end
local st = redis.call('HGET', KEYS[2], 'state')
if not st then return 'UNKNOWN' end
if st == 'accepted' or st == 'running' then
  if redis.call('HGET', KEYS[2], 'node') == ARGV[3] then return 'ALREADY' end
  return 'TAKEN'
end
if st ~= 'dispatching' then return 'TAKEN' end
redis.call('HSET', KEYS[2], 'state', 'accepted', 'node', ARGV[3], 'inc', ARGV[4])
redis.call('LPUSH', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
return 'OK'
