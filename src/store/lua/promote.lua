-- The master's sweep (section 3.20): for each job of the held index (jobs with fires held for
-- their no-overlap lock) whose lock is free (its holder's node died, and the lock expired; or a
-- release whose hand-on was lost), the oldest held fire takes the lock (`promote`), `dispatching`,
-- and the same sweep queues it. A job whose held list is empty leaves the index. Fenced by the lease.
-- KEYS[1] the held index  KEYS[2] inflight (watch set)  KEYS[3] lease
-- ARGV[1] the caller's lease value  ARGV[2] the held list key prefix ('<tag>:held:')
-- ARGV[3] the lock key prefix  ARGV[4] the fire key prefix  ARGV[5] lock ttl ms
-- ARGV[6] misfire threshold ms  ARGV[7] most jobs looked at
-- Returns {'FENCED'} | the fires handed the lock | {'BADKEY', why} (nothing written)
if redis.call('GET', KEYS[3]) ~= ARGV[1] then return {'FENCED'} end
-- The jobs looked at longest ago first: a job whose lock is live (or whose keys are clobbered) goes
-- to the back (score now), so more than ARGV[7] such jobs never hide the others.
local jobs, bad = read('zset', 'ZRANGE', KEYS[1], 0, tonumber(ARGV[7]) - 1)
if bad then return {'BADKEY', bad} end
bad = wrong(KEYS[2], 'zset')
if bad then return {'BADKEY', bad} end
local out = {}
for _, job in ipairs(jobs) do
  local kh, kl = ARGV[2] .. job, ARGV[3] .. job
  if wrong(kh, 'list', kl, 'string') then
    -- Clobbered: left alone (and in the index, at the back) for an operator; the others go on.
    redis.call('ZADD', KEYS[1], 'XX', time_ms(), job)
  elseif redis.call('LLEN', kh) == 0 then
    redis.call('ZREM', KEYS[1], job)
  elseif redis.call('EXISTS', kl) == 0 then
    local fire = promote(kh, KEYS[1], kl, job, ARGV[4], ARGV[5], ARGV[6], KEYS[2])
    if fire then out[#out + 1] = fire end
  else
    redis.call('ZADD', KEYS[1], 'XX', time_ms(), job)
  end
end
return out
