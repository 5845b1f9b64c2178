-- Heartbeat of a registered incarnation: compare-and-PEXPIRE, then publish the node record.
-- A key that merely expired is taken back: Redis was down or restarted (its keys expire by its wall
-- clock, which ran on while nobody could beat), and a live node must not die of it. An incarnation
-- whose running work the master already took over (named in gone:<node>, written by the reap in the
-- same step) never comes back: it must register anew. A key held by another incarnation: revoked.
-- KEYS[1] hb:<node>  KEYS[2] node record  KEYS[3] nodes set  KEYS[4] epoch counter  KEYS[5] gone:<node>
-- ARGV[1] incarnation  ARGV[2] ttl ms  ARGV[3] node record JSON  ARGV[4] record ttl ms  ARGV[5] node id
-- Returns {'OK', current epoch}, {'RESUMED', current epoch} (the key had expired and was taken back)
--   or {'REVOKED', current epoch}
local bad = wrong(KEYS[1], 'string', KEYS[2], 'string', KEYS[3], 'set', KEYS[5], 'set')
if bad then return refuse(bad) end
local epoch = redis.call('GET', KEYS[4]) or '0'
local cur = redis.call('GET', KEYS[1])
local st = 'OK'
if cur ~= ARGV[1] then
  if cur or redis.call('SISMEMBER', KEYS[5], ARGV[1]) == 1 then return {'REVOKED', epoch} end
  st = 'RESUMED'
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
else
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
redis.call('SADD', KEYS[3], ARGV[5])
redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[4])
return {st, epoch}
