-- Heartbeat of a registered incarnation: compare-and-PEXPIRE, so an expired incarnation can never
-- come back (it must register again), then publish the node record.
-- KEYS[1] hb:<node>  KEYS[2] node record  KEYS[3] nodes set  KEYS[4] epoch counter
-- ARGV[1] incarnation  ARGV[2] ttl ms  ARGV[3] node record JSON  ARGV[4] record ttl ms  ARGV[5] node id
-- Returns {'OK', current epoch} or {'REVOKED', current epoch}
local epoch = redis.call('GET', KEYS[4]) or '0'
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return {'REVOKED', epoch} end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('SADD', KEYS[3], ARGV[5])
redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[4])
return {'OK', epoch}
