-- The owner starts a fire taken from its processing list: compare-and-set queued|accepted -> running,
-- only in a live incarnation that owns the fire. An entry that names no fire is set aside in the
-- dead-letter list (never dropped); a stale copy of a fire that lives elsewhere is removed.
-- KEYS[1] fire hash  KEYS[2] p:<self>  KEYS[3] hb:<self>  KEYS[4] dlq
-- ARGV[1] fire id  ARGV[2] self  ARGV[3] incarnation  ARGV[4] fresh execution id  ARGV[5] now ms (for the dlq entry)
-- Returns {'OK', exec id, attempt, job, sched, epoch, manual} | {'NOT_LIVE'} | {'POISON'} | {'NOT_MINE', state}
--   | {'ALREADY'} | {'MISFIRED', job, sched, exec id}
if redis.call('GET', KEYS[3]) ~= ARGV[3] then return {'NOT_LIVE'} end
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('LREM', KEYS[2], -1, ARGV[1])
  redis.call('LPUSH', KEYS[4], cjson.encode({entry = ARGV[1], node = ARGV[2], reason = 'no such fire', at = ARGV[5]}))
  return {'POISON'}
end
local f = redis.call('HMGET', KEYS[1], 'state', 'node', 'inc', 'job', 'sched', 'epoch', 'next_exec', 'deadline_ms', 'manual')
local st, owner = f[1], f[2]
-- Running here, in this or an earlier incarnation: never dropped from the list by a start (an
-- earlier incarnation's run is recovered by adoption or the reaper).
if st == 'running' and owner == ARGV[2] then return {'ALREADY'} end
if (st ~= 'queued' and st ~= 'accepted') or owner ~= ARGV[2] then
  redis.call('LREM', KEYS[2], -1, ARGV[1])
  return {'NOT_MINE', st or ''}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local exec = f[7] or ARGV[4]
if f[8] and now > tonumber(f[8]) then
  -- waited past the start deadline: a misfire, recorded by the caller
  redis.call('HSET', KEYS[1], 'state', 'misfired')
  redis.call('HDEL', KEYS[1], 'next_exec')
  redis.call('LREM', KEYS[2], -1, ARGV[1])
  return {'MISFIRED', f[4], f[5], exec}
end
redis.call('HSET', KEYS[1], 'state', 'running', 'exec', exec, 'inc', ARGV[3], 'started', now)
redis.call('HDEL', KEYS[1], 'next_exec')
local attempt = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
return {'OK', exec, tostring(attempt), f[4], f[5], f[6] or '0', f[9] or '0'}
