-- Write an execution record, announce it, and optionally release the job's no-overlap lock if this
-- execution's fire still owns it, in one atomic step (so the record and the release never part).
-- KEYS[1] exec key  KEYS[2] executions index  KEYS[3] job's executions index  KEYS[4] lock key
-- KEYS[5] open executions (an open record joins it, an ended one leaves it)
-- ARGV[1] exec id  ARGV[2] JSON  ARGV[3] retention ms  ARGV[4] channel  ARGV[5] release '0'|'1'
-- ARGV[6] fire id (the lock owner)  ARGV[7] id prefix of executions past retention (UUIDv7 of then)
-- ARGV[8] '1': write only over a missing or open (pending/running) record
-- ARGV[9] the job index's TTL (ms): the retention and the margin finish.lua's refreshes use, so that
--   no write shortens it
-- KEYS[6] the job's held list  KEYS[7] the held index  KEYS[8] inflight (watch set)
-- ARGV[10] the fire key prefix  ARGV[11] lock ttl ms  ARGV[12] misfire threshold ms: a lock let go
--   passes to the oldest fire held for it, `dispatching` for the master's sweep (section 3.20)
-- Returns 1 when written, 0 when refused
local bad = wrong(KEYS[2], 'zset', KEYS[3], 'zset', KEYS[4], 'string', KEYS[5], 'zset')
if not bad and ARGV[5] == '1' then bad = wrong(KEYS[6], 'list', KEYS[7], 'zset', KEYS[8], 'zset') end
if bad then return refuse(bad) end
if ARGV[8] == '1' then
  local cur = redis.call('GET', KEYS[1])
  if cur then
    local ok, d = pcall(cjson.decode, cur)
    if ok and type(d) == 'table' and d.state ~= 'pending' and d.state ~= 'running' then return 0 end
  end
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
redis.call('ZADD', KEYS[2], 0, ARGV[1])
redis.call('ZADD', KEYS[3], 0, ARGV[1])
-- Trim index entries past retention as we go, so a busy job's index stays bounded (O(log N + removed)).
redis.call('ZREMRANGEBYLEX', KEYS[3], '-', '(' .. ARGV[7])
redis.call('PEXPIRE', KEYS[3], ARGV[9])
if ARGV[5] == '1' and redis.call('GET', KEYS[4]) == ARGV[6] then
  redis.call('DEL', KEYS[4])
  promote(KEYS[6], KEYS[7], KEYS[4], string.match(ARGV[6], '^([^@]*)@') or '', ARGV[10], ARGV[11], ARGV[12], KEYS[8])
end
redis.call('PUBLISH', ARGV[4], ARGV[2])
local ok, d = pcall(cjson.decode, ARGV[2])
if ok and type(d) == 'table' and d.state ~= 'pending' and d.state ~= 'running' then
  redis.call('ZREM', KEYS[5], ARGV[1])
  archive(ARGV[4], ARGV[2])
  flush()
else
  redis.call('ZADD', KEYS[5], 0, ARGV[1])
end
return 1
