-- The owner starts a fire taken from its processing list: compare-and-set queued|accepted -> running,
-- only in a live incarnation that owns the fire. The attempt is `running` from this same step: the
-- fire hash is its record (section 4.2), and a re-run's fresh execution becomes the hash's `exec`
-- here (its JSON, built below, is only announced). Returns the job's definition too, so the
-- worker needs no read of its own. An entry that names no fire is set aside in the dead-letter list
-- (never dropped); a stale copy of a fire that lives elsewhere is removed.
-- KEYS[1] fire hash  KEYS[2] p:<self>  KEYS[3] hb:<self>  KEYS[4] dlq  KEYS[5] executions index
-- KEYS[6] inflight (the watch set of fires not yet started: left on start)
-- ARGV[1] fire id  ARGV[2] self  ARGV[3] incarnation  ARGV[4] fresh execution id  ARGV[5] now ms (for the dlq entry)
-- ARGV[6] job hash key prefix  ARGV[7] exec key prefix  ARGV[8] job's executions index key prefix
-- ARGV[9] retention ms  ARGV[10] change channel
-- ARGV[11] what to do with a master-only job's fire (`store::MasterOnly`): 'refuse' (the caller is
--   not master), 'verify' (the caller believes it is: started only while T:lease is this node's
--   incarnation's, checked in this same step) or 'any' (a stand-in: no master to hand it to)
-- KEYS[7] T:lease  KEYS[8] open executions (the started execution joins it: idempotent, and a
--   re-run's fresh one, or one the previous release claimed, is not there yet)
-- Returns {'OK', exec id, attempt, job, sched, epoch, manual, start ms, job spec JSON or '', '', the
--   fire's own arguments JSON or '' (a manual fire's: TriggerJob's `args`), its target tags JSON or ''
--   (a manual fire's: TriggerJob's `target_selector`)}
--   | {'RESUME', the same fields, and the start deadline for a first attempt, '' otherwise} (a
--   repeated start by the incarnation that started it, or a fire its take started whose task was
--   lost: see below; the caller checks the deadline, its handler never having begun)
--   | {'NOT_LIVE'} | {'POISON'} | {'NOT_MINE', state} | {'ALREADY'} | {'MISFIRED', job, sched, exec id}
--   | {'MASTER_ONLY'} (the job is master-only and the caller is not master, or the stored lease is
--     not this node's incarnation's: nothing changed)
--   | {'BADKEY', why} (a key of the wrong type: nothing changed)
-- Batched (see batcher.rs): the fires of one call share hb:<self>, read once per call. Each path
-- makes sure of the keys it writes before its first write: the fire hash by its first read, the
-- others on the paths that write them (the common path, a first start, writes only the fire hash,
-- the watch set, whose ZREM is its first write, and the record; it checks p:<self> once per call).
if get_once(KEYS[3]) ~= ARGV[3] then return {'NOT_LIVE'} end
local f, bad = read('hash', 'HMGET', KEYS[1], 'state', 'node', 'inc', 'job', 'sched', 'epoch', 'next_exec',
  'deadline_ms', 'manual', 'exec', 'attempts', 'started', 'args', 'sel')
if bad then return {'BADKEY', bad} end
-- next_exec is cleared by writing '' (in the same HSET as the state) rather than by an HDEL.
if f[7] == '' then f[7] = false end
local st, owner = f[1], f[2]
-- Every fire hash has a state: none means no such fire.
if not st then
  bad = wrong(KEYS[2], 'list', KEYS[4], 'list')
  if bad then return {'BADKEY', bad} end
  redis.call('LREM', KEYS[2], -1, ARGV[1])
  redis.call('LPUSH', KEYS[4], cjson.encode({entry = ARGV[1], node = ARGV[2], reason = 'no such fire', at = ARGV[5]}))
  return {'POISON'}
end
local function spec_of(job)
  local spec = read('hash', 'HGET', ARGV[6] .. job, 'spec')
  return spec or ''  -- none, or not a hash: the worker records it failed (no such job)
end
if st == 'running' and owner == ARGV[2] then
  -- Started by this very incarnation: the start committed and its reply was lost (Redis restarted
  -- between the two, the connection broke). Safe to call again: the caller, which has no task on
  -- this fire (it checks), runs it under the execution and attempt already recorded.
  if f[3] == ARGV[3] and f[10] then
    local deadline = ''
    if (f[11] or '1') == '1' then deadline = f[8] or '' end
    return {'RESUME', f[10], f[11] or '1', f[4], f[5], f[6] or '0', f[9] or '0', f[12] or '0', spec_of(f[4]), deadline,
      f[13] or '', f[14] or ''}
  end
  -- An earlier incarnation's run: recovered by adoption or the reaper, never dropped by a start.
  return {'ALREADY'}
end
if st == 'misfired' and owner == ARGV[2] and f[3] == ARGV[3] and f[10] then
  -- The same start again, its first reply lost: the caller records the misfire (its record is
  -- still the claim's `pending` one).
  return {'MISFIRED', f[4], f[5], f[10]}
end
if (st ~= 'queued' and st ~= 'accepted') or owner ~= ARGV[2] then
  local _
  _, bad = read('list', 'LREM', KEYS[2], -1, ARGV[1])  -- its one write
  if bad then return {'BADKEY', bad} end
  return {'NOT_MINE', st or ''}
end
local now = time_ms()
local exec = f[7] or ARGV[4]
if f[8] and now > tonumber(f[8]) then
  -- waited past the start deadline: a misfire, recorded by the caller
  bad = wrong(KEYS[2], 'list', KEYS[6], 'zset')
  if bad then return {'BADKEY', bad} end
  redis.call('HSET', KEYS[1], 'state', 'misfired', 'exec', exec, 'inc', ARGV[3], 'next_exec', '')
  redis.call('LREM', KEYS[2], -1, ARGV[1])
  redis.call('ZREM', KEYS[6], ARGV[1])
  return {'MISFIRED', f[4], f[5], exec}
end
-- The job's index is written only for a fresh record (a re-run); the claim's is indexed already.
if not f[7] then
  bad = wrong(KEYS[5], 'zset', ARGV[8] .. f[4], 'zset')
  if bad then return {'BADKEY', bad} end
end
bad = wrong(KEYS[8], 'zset')
if bad then return {'BADKEY', bad} end
local spec = spec_of(f[4])
if ARGV[11] ~= 'any' and master_only(spec) then
  if ARGV[11] == 'refuse' then return {'MASTER_ONLY'} end
  -- The caller's own view of its mastership can be behind the store's: after a Redis failover the
  -- new primary may name another holder while this node's lease has not yet run out locally. A
  -- master-only fire starts only while the stored lease, read in this same step, is this node's
  -- incarnation's (`<node>:<epoch>:<incarnation>`).
  local lease = read('string', 'GET', KEYS[7])
  local mine = type(lease) == 'string' and string.sub(lease, 1, #ARGV[2] + 1) == ARGV[2] .. ':'
    and string.sub(lease, -(#ARGV[3] + 1)) == ':' .. ARGV[3]
  if not mine then return {'MASTER_ONLY'} end
end
-- A running fire's home is p:<self> (where the rescan and the reaper find it): a start does not
-- leave the watch set unless that is a list, and the watch set a zset (one TYPE each per call).
-- Leaving the watch set is one ZREM for the whole call (`later`).
bad = wrong(KEYS[2], 'list', KEYS[6], 'zset')
if bad then return {'BADKEY', bad} end
later('ZREM', KEYS[6], ARGV[1])
local attempt = (tonumber(f[11]) or 0) + 1
-- A fire started ahead of its instant (the worker's start lead) begins at its instant: that is its
-- start time, as `store::started_at` says.
local sched = tonumber(f[5])
if sched and sched > now then now = sched end
redis.call('HSET', KEYS[1], 'state', 'running', 'exec', exec, 'inc', ARGV[3], 'started', now, 'next_exec', '',
  'attempts', attempt)
local epoch = f[6] or '0'
if not string.match(epoch, '^%d+$') then epoch = '0' end
local json = running_json(exec, f[4], ARGV[1], f[5], now, ARGV[2], attempt, f[9] == '1', epoch)
-- The execution made at claim (next_exec) is indexed already; a fresh one (a re-run) is indexed here.
if not f[7] then
  redis.call('ZADD', KEYS[5], 0, exec)
  redis.call('ZADD', ARGV[8] .. f[4], 0, exec)
end
-- Open from now on (the claim's execution is there already, unless the previous release claimed
-- it: this puts it there).
redis.call('ZADD', KEYS[8], 0, exec)
announce(ARGV[10], json)
return {'OK', exec, tostring(attempt), f[4], f[5], epoch, f[9] or '0', tostring(now), spec, '', f[13] or '',
  f[14] or ''}
