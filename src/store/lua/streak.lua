-- A scheduled fire's final outcome, for its job's pause_after_failures: a failed one (failed, timed
-- out, lost) raises the job's `fail_streak`, a succeeded one clears it. Only on an existing job hash
-- (an HINCRBY would make a hash of a deleted job).
-- KEYS[1] job hash  ARGV[1] '1' failed | '0' succeeded
-- Returns the streak after it (0 after a success), or -1 when the job is gone.
local bad = wrong(KEYS[1], 'hash')
if bad then return refuse(bad) end
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if ARGV[1] == '1' then return redis.call('HINCRBY', KEYS[1], 'fail_streak', 1) end
redis.call('HDEL', KEYS[1], 'fail_streak')
return 0
