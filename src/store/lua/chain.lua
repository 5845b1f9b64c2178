-- after_previous (section 3.2b): for each job waiting on a fire, once that fire has ended, the job's
-- next fire is the fire's end plus the job's delay, set in one step that checks the job still waits
-- on that very fire. Called by the node that recorded the fire's end, and by the master's sweep for
-- a fire whose ender did not (it died, or lost the reply): both set the same next fire from the same
-- stored end, so a second call changes nothing (it finds the job no longer waiting: STALE).
-- KEYS[1] due zset  KEYS[2] chain index
-- ARGV[1] job key prefix ('<tag>:job:')  ARGV[2] fire key prefix ('<tag>:fire:')  ARGV[3] now ms
-- ARGV[4] the end of time (ms: no instant from there on), then per job (2 args): job id, fire instant
-- Returns one per job: 'OPEN' (the fire has not ended: nothing written), 'STALE' (the job waits on no
--   such fire: nothing written but, when it waits on nothing, its index entry's removal),
--   'NEXT <ms>' (the next fire, now the job's watermark), 'NEXT' (none: past the job's end_time, or
--   the job is paused; no watermark, and a resume starts the chain anew)
--   or {'BADKEY', why} when a shared key has the wrong type (nothing written).
-- The job's spec is read for three fields, `after_previous_ms`, `end_ms` and `max_fires` (as
-- put_job.lua reads `max_fires`), only once the fire has ended. A fire hash that is gone, or of the
-- wrong type, counts as ended now, as does one a reap marked `lost` (its record is written apart,
-- just after: the chain counts from when the loss was found).
local bad = wrong(KEYS[1], 'zset', KEYS[2], 'zset')
if bad then return {'BADKEY', bad} end
local now = tonumber(ARGV[3])
local out = {}
for i = 5, #ARGV - 1, 2 do
  local job, sched = ARGV[i], ARGV[i+1]
  local kj = ARGV[1] .. job
  local j = read('hash', 'HMGET', kj, 'chain', 'paused', 'spec', 'fired')
  local f = nil
  if j and j[1] == sched then f = read('hash', 'HMGET', ARGV[2] .. job .. '@' .. sched, 'state', 'ended') end
  if j and j[1] == sched and f and f[1] and OPEN[f[1]] then
    out[#out+1] = 'OPEN'
  else
    local ok, sp = pcall(cjson.decode, (j and j[1] == sched and j[3]) or '{}')
    if not ok or type(sp) ~= 'table' then sp = {} end
    local delay = tonumber(sp.after_previous_ms) or 0
    if not j or j[1] ~= sched or delay <= 0 then
      -- Waiting on nothing (deleted, put as another kind, or a job key of the wrong type): out of
      -- the index. Waiting on another fire: its entry is that fire's, left alone.
      if not j or not j[1] or j[1] == sched then
        if j and j[1] then redis.call('HDEL', kj, 'chain') end
        redis.call('ZREM', KEYS[2], job)
      end
      out[#out+1] = 'STALE'
    else
      local ended = (f and tonumber(f[2])) or now
      local nxt = math.max(ended + delay, tonumber(sched) + 1)
      local last = math.min(tonumber(sp.end_ms) or tonumber(ARGV[4]), tonumber(ARGV[4]))
      -- A job that made its max_fires (lowered while it waited) stays completed, as put_job.lua's.
      local spent = (tonumber(sp.max_fires) or 0) > 0 and (tonumber(j[4]) or 0) >= tonumber(sp.max_fires)
      redis.call('HDEL', kj, 'chain')
      redis.call('ZREM', KEYS[2], job)
      if nxt > last or j[2] == '1' or spent then
        redis.call('HDEL', kj, 'next_ms')
        redis.call('ZREM', KEYS[1], job)
        out[#out+1] = 'NEXT'
      else
        nxt = string.format('%.0f', nxt)
        redis.call('HSET', kj, 'next_ms', nxt)
        redis.call('ZADD', KEYS[1], nxt, job)
        out[#out+1] = 'NEXT ' .. nxt
      end
    end
  end
end
return out
