-- A manual fire: deduplicated by idempotency key, made a fire in 'dispatching' whose hash is its
-- first execution's record (section 4.2; the caller then accepts it for itself), and (for forbid
-- jobs) locked, atomically.
-- KEYS[1] job hash  KEYS[2] fire hash  KEYS[3] lock key  KEYS[4] open executions  KEYS[5] executions index
-- KEYS[6] job's executions index  KEYS[7] idempotency key (ignored when ARGV[8] is '0')  KEYS[8] inflight
-- ARGV[1] retention ms  ARGV[2] change channel  ARGV[3] exec id  ARGV[4] pending JSON
-- ARGV[5] skipped JSON  ARGV[6] the overlap policy (claim.lua's: '0', '1', 'b<n>', 'r')  ARGV[7] lock ttl ms
-- ARGV[8] has key '0'|'1'
-- ARGV[9] fire id  ARGV[10] exec key prefix ('<tag>:exec:')  ARGV[11] scheduled ms  ARGV[12] epoch
-- ARGV[13] start deadline ms  ARGV[14] dispatch deadline ms  ARGV[15] job id
-- ARGV[16] the skipped record's end ms and ARGV[17] its error (written into the hash when skipped)
-- ARGV[18] how many of the newest executions the executions index keeps (claim.lua's ARGV[10])
-- ARGV[19] the fire's own arguments (TriggerJob's `args`, resolved: JSON) or '' (the job's): kept in
--   the fire hash as `args`, which every take and start of the fire returns
-- ARGV[20] the fire key prefix ('<tag>:fire:')
-- KEYS[9] the job's held list  KEYS[10] the held index (section 3.20)
-- ARGV[21] the stop list key prefix ('<tag>:stops:')  ARGV[22] how long a stop list is kept (ms)
-- ARGV[23] the misfire threshold ms (a held fire handed the lock: its start deadline from now)
-- ARGV[24] the job's priority (claim.lua's: kept in the fire hash as `prio` unless 'normal')
-- ARGV[25] the fire's target tags (TriggerJob's `target_selector`, JSON) or '' (none): kept in the
--   fire hash as `sel`, which every take and start of the fire returns after `args`
-- ARGV[26] '1': a manual fire (`manual` in its hash) | '0': a scheduled instant's fire (BackfillJob),
--   made only if no fire of its id was made before (its hash kept for the retention), else {'FIRED'}
-- Returns {'GONE'} | {'FIRED'} | {'DEDUP', exec id} | {'CONFLICT', exec id} | {'CREATED'} | {'SKIPPED'}
--   | {'HELD'} | {'HELD', node, fire, exec} (as claim.lua's)
--   DEDUP: the key made that execution before; the caller reads its record (none: the job's
--   history cap has deleted it since; the key still counts, nothing is fired again).
--   CONFLICT: the key made that execution with other arguments or target tags: nothing is fired.
if redis.call('EXISTS', KEYS[1]) == 0 then return {'GONE'} end
if ARGV[26] == '0' and redis.call('EXISTS', KEYS[2]) == 1 then return {'FIRED'} end
local bad = wrong(KEYS[1], 'hash', KEYS[2], 'hash', KEYS[3], 'string', KEYS[4], 'zset', KEYS[5], 'zset', KEYS[6], 'zset',
  KEYS[8], 'zset')
if bad then return refuse(bad) end
if ARGV[8] == '1' then bad = wrong(KEYS[7], 'string') end
if bad then return refuse(bad) end
local mode = ARGV[6]
local holds, stop = mode ~= '0' and mode ~= '1', nil
if holds then bad, stop = hold_check(mode, KEYS[9], KEYS[10], KEYS[3], ARGV[20], ARGV[21]) end
if bad then return refuse(bad) end
if ARGV[8] == '1' then
  local prev = redis.call('GET', KEYS[7])
  if prev then
    -- The same key with other arguments or target tags is a mistake, not a retry. Its fire's hash
    -- says what it was fired with (gone with the record the job's cap trimmed: DEDUP, which says so).
    local fire = string.match(prev, '~(.+)$')
    if fire then
      local was = redis.pcall('HMGET', ARGV[20] .. fire, 'state', 'args', 'sel')
      if type(was) == 'table' and not was.err and was[1] and ((was[2] or '') ~= ARGV[19] or (was[3] or '') ~= ARGV[25]) then
        return {'CONFLICT', prev}
      end
    end
    return {'DEDUP', prev}
  end
  redis.call('SET', KEYS[7], ARGV[3], 'PX', ARGV[1])
end
local st, json, fs = 'CREATED', ARGV[4], 'dispatching'
if mode ~= '0' then
  local met = meet_lock(mode, KEYS[3], KEYS[9], KEYS[10], KEYS[4], KEYS[8], ARGV[15], ARGV[9], ARGV[20], stop, ARGV[21],
    ARGV[22], ARGV[2], ARGV[7], ARGV[23], time_ms())
  if met == 'SKIPPED' then
    st, json, fs = 'SKIPPED', ARGV[5], 'skipped'
  elseif met == 'HELD' then
    st, fs = 'HELD', 'held'
  end
end
redis.call('HSET', KEYS[2], 'state', fs, 'job', ARGV[15],
           'sched', ARGV[11], 'epoch', ARGV[12], 'attempts', 0, 'recoveries', 0, 'deadline_ms', ARGV[13])
if ARGV[26] == '1' then redis.call('HSET', KEYS[2], 'manual', '1') end
if ARGV[19] ~= '' then redis.call('HSET', KEYS[2], 'args', ARGV[19]) end
if ARGV[24] ~= 'normal' then redis.call('HSET', KEYS[2], 'prio', ARGV[24]) end
if ARGV[25] ~= '' then redis.call('HSET', KEYS[2], 'sel', ARGV[25]) end
if fs == 'held' then
  -- Waits for the lock: its execution is made (pending), in no node's hands, not watched.
  redis.call('HSET', KEYS[2], 'next_exec', ARGV[3])
  redis.call('ZADD', KEYS[4], 0, ARGV[3])
elseif fs == 'dispatching' then
  -- A fire of an exclusive job holds the job's lock: its finish releases it (finish.lua reads the
  -- lock only then).
  if mode ~= '0' then
    redis.call('HSET', KEYS[2], 'next_exec', ARGV[3], 'lock', '1')
  else
    redis.call('HSET', KEYS[2], 'next_exec', ARGV[3])
  end
  redis.call('ZADD', KEYS[8], ARGV[14], ARGV[9])
  redis.call('ZADD', KEYS[4], 0, ARGV[3])
else
  redis.call('HSET', KEYS[2], 'exec', ARGV[3], 'ended', ARGV[16], 'error', ARGV[17])
end
redis.call('PEXPIRE', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[5], 0, ARGV[3])
redis.call('ZREMRANGEBYRANK', KEYS[5], 0, -(tonumber(ARGV[18]) + 1))
redis.call('ZADD', KEYS[6], 0, ARGV[3])
announce(ARGV[2], json)
if fs == 'skipped' then archive(ARGV[2], json) end
flush()
if stop and fs == 'held' then return {st, stop[2], stop[1], stop[3]} end
return {st}
