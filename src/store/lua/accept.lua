-- A node takes a fire that is being dispatched to it (SubmitTask(s), the master's own fires, manual
-- fires): compare-and-set dispatching -> running, in this node's processing list, before saying
-- yes, so a taken fire is durable. Races with `enqueue`; exactly one of the two wins.
-- The fire starts in this same step (section 3.8): its first attempt reads `running` from now on,
-- begins at its instant, and the node needs no start step of its own. What lets it begin the handler
-- later without asking Redis is its heartbeat (`Membership::still_owns`): until the key expires no
-- one can judge it dead and recover the fire. A fire of a master-only job is only taken (`accepted`):
-- its start (start.lua) checks, at its instant, that the node holds the stored lease.
-- Batched (see batcher.rs) with the other accepts, starts and finishes of the moment: the fires of
-- one call share hb:<self> and the epoch counter, each read once per call, and the type checks of
-- p:<self> and the watch set.
-- KEYS[1] epoch counter  KEYS[2] p:<self>  KEYS[3] inflight zset  KEYS[4] hb:<self>  KEYS[5] fire hash
-- ARGV[1] sender's epoch, or '-' (a node's own manual fire: no master made it, no epoch to check)
-- ARGV[2] self  ARGV[3] incarnation  ARGV[4] watch ms (when the sweep looks at an accepted fire again:
--   see enqueue.lua)  ARGV[5] fire id  ARGV[6] job hash key prefix  ARGV[7] change channel
-- ARGV[8] '1': start it too (unless master-only); '0': take it only, for start.lua
-- Returns one of OK (accepted only: a master-only fire) | ALREADY | TAKEN | STALE_EPOCH | NOT_LIVE | UNKNOWN
--   | BADKEY (the fire's key is not a hash; nothing written), or
--   {'STARTED', exec id, attempt, job, sched, epoch, manual, start ms, job spec JSON or '', deadline ms
--   or '', the fire's own arguments JSON or '', its target tags JSON or ''} (taken and started; a manual fire's `args`: TriggerJob's), or {'BADKEY', why} when p:<self> or the watch set has the wrong type
--   (nothing written)
local bad = wrong(KEYS[2], 'list', KEYS[3], 'zset')
if bad then return {'BADKEY', bad} end
if get_once(KEYS[4]) ~= ARGV[3] then return 'NOT_LIVE' end
if ARGV[1] ~= '-' and get_once(KEYS[1]) ~= ARGV[1] then return 'STALE_EPOCH' end
local f
f, bad = read('hash', 'HMGET', KEYS[5], 'state', 'node', 'job', 'sched', 'epoch', 'next_exec', 'manual',
  'attempts', 'deadline_ms', 'args', 'sel')
if bad then return 'BADKEY' end
if not f[1] then return 'UNKNOWN' end
if f[1] == 'accepted' or f[1] == 'running' then
  if f[2] == ARGV[2] then return 'ALREADY' end
  return 'TAKEN'
end
if f[1] ~= 'dispatching' then return 'TAKEN' end
-- A job hash of the wrong type reads as no job: the worker records the fire failed (no such job).
local spec = ARGV[8] == '1' and f[3] and read('hash', 'HGET', ARGV[6] .. f[3], 'spec') or nil
later('LPUSH', KEYS[2], ARGV[5])
if ARGV[8] ~= '1' or master_only(spec) or not f[6] or f[6] == '' then
  -- Taken only (a fire without its claim's execution id is a planted one: start.lua makes one).
  redis.call('HSET', KEYS[5], 'state', 'accepted', 'node', ARGV[2], 'inc', ARGV[3])
  later('ZADD', KEYS[3], time_ms() + tonumber(ARGV[4]), ARGV[5])
  return 'OK'
end
local attempt = (tonumber(f[8]) or 0) + 1
-- It begins at its instant (or now, when late): its start time until the handler says otherwise.
local start = time_ms()
local sched = tonumber(f[4])
if sched and sched > start then start = sched end
redis.call('HSET', KEYS[5], 'state', 'running', 'node', ARGV[2], 'inc', ARGV[3], 'exec', f[6], 'next_exec', '',
  'started', start, 'attempts', attempt)
-- Running, it is no longer watched: its home is p:<self>, where the rescan and the reaper find it.
later('ZREM', KEYS[3], ARGV[5])
local epoch = f[5] or '0'
if not string.match(epoch, '^%d+$') then epoch = '0' end
announce(ARGV[7], running_json(f[6], f[3], ARGV[5], f[4], start, ARGV[2], attempt, f[7] == '1', epoch))
return {'STARTED', f[6], tostring(attempt), f[3] or '', f[4] or '0', epoch, f[7] or '0', tostring(start), spec or '',
  f[9] or '', f[10] or '', f[11] or ''}
