-- CancelExecution (section 3.19): execution ARGV[2] of fire ARGV[1], when it is the fire's current
-- execution and has not ended.
-- * Not yet begun (dispatching, accepted, queued, held) with its claim's execution (`next_exec`) the one
--   asked: it ends `cancelled` here, as a finish would end it: the outcome in the fire hash (the
--   record), the no-overlap lock released when this fire holds it, out of the watch set, the open
--   set and its node's queue (an idle node would not steal past it). An entry in a processing list
--   stays: its owner's start finds it ended (start.lua: NOT_MINE) and drops it. An accept of it (a
--   SubmitTask in flight) finds it no longer dispatching: TAKEN. A queued re-run (a dead node's
--   attempt moved by the reap: no `next_exec`, its `exec` the dead attempt's, its own execution made
--   at its start) is not cancelled here: NOT_OPEN.
-- * Running (or taken and about to begin at its instant): its node stops it. A stop request goes
--   on that node's stop list, which the node takes at its next rescan; the caller also asks the
--   node directly, and the node ends the run `cancelled` through its finish.
-- A stop request is JSON {fire, exec, why} (`store::StopRequest`).
-- KEYS[1] fire hash  KEYS[2] inflight (watch set)  KEYS[3] open executions  KEYS[4] the job's lock
-- ARGV[1] fire id  ARGV[2] execution id  ARGV[3] the cancelled record's JSON (announced, archived)
-- ARGV[4] its error (who asked and why)  ARGV[5] its end ms  ARGV[6] stop list key prefix
--   ('<tag>:stops:')  ARGV[7] how long a stop list is kept (ms)  ARGV[8] change channel
-- ARGV[10] queue key prefix ('<tag>:q:'; the fire's level list, by its `prio`: section 3.22)
-- KEYS[5] the job's held list (a held fire leaves it)  KEYS[6] the held index
-- ARGV[11] the fire key prefix  ARGV[12] lock ttl ms  ARGV[13] misfire threshold ms: a lock this
--   fire held passes to the oldest fire held for it, `dispatching` for the master's sweep (section 3.20)
-- ARGV[9] '1': execution ARGV[2] has ended and announced a retry; only that retry, while its node
--   holds the fire `running` in its backoff, is stopped (anything else: NOT_OPEN)
-- Returns {'CANCELLED'} | {'RUNNING', node} | {'NOT_OPEN', state} (ended, or another execution is
--   the fire's current one: nothing written) | {'UNKNOWN'} | {'BADKEY', why} (nothing written)
local f, bad = read('hash', 'HMGET', KEYS[1], 'state', 'node', 'next_exec', 'exec', 'lock', 'attempts', 'prio')
if bad then return {'BADKEY', bad} end
local st = f[1]
if not st then return {'UNKNOWN'} end
-- The execution each state is of: a running fire's `exec`; one not yet begun, its claim's `next_exec`.
if st == 'running' and f[4] == ARGV[2] then
  local stops = ARGV[6] .. (f[2] or '')
  bad = wrong(stops, 'list')
  if bad then return {'BADKEY', bad} end
  redis.call('RPUSH', stops, cjson.encode({fire = ARGV[1], exec = ARGV[2], why = ARGV[4]}))
  redis.call('PEXPIRE', stops, ARGV[7])
  return {'RUNNING', f[2] or ''}
end
local waiting = st == 'dispatching' or st == 'accepted' or st == 'queued' or st == 'held'
if ARGV[9] == '1' or not waiting or f[3] ~= ARGV[2] then return {'NOT_OPEN', st} end
local queue = st == 'queued' and queue_list(ARGV[10] .. (f[2] or ''), f[7]) or nil
bad = wrong(KEYS[2], 'zset', KEYS[3], 'zset', KEYS[5], 'list', KEYS[6], 'zset')
if not bad and queue then bad = wrong(queue, 'list') end
if bad then return {'BADKEY', bad} end
local held = nil
if f[5] == '1' then
  held, bad = read('string', 'GET', KEYS[4])
  if bad then return {'BADKEY', bad} end
end
-- The outcome, as finish.lua writes one: it never began (no `started`), and its attempt is the one
-- it would have been.
local h = {'state', 'cancelled', 'exec', ARGV[2], 'attempts', (tonumber(f[6]) or 0) + 1, 'ended', ARGV[5],
  'error', ARGV[4]}
local gone = {'claimed_at', 'deadline_ms', 'recoveries', 'next_exec', 'lock', 'inc', 'job', 'started'}
if scheduled(ARGV[1]) then gone[#gone+1] = 'sched' end
redis.call('HSET', KEYS[1], unpack(h))
redis.call('HDEL', KEYS[1], unpack(gone))
if held == ARGV[1] then
  redis.call('DEL', KEYS[4])
  promote(KEYS[5], KEYS[6], KEYS[4], string.match(ARGV[1], '^([^@]*)@') or '', ARGV[11], ARGV[12], ARGV[13], KEYS[2])
end
if st == 'held' then redis.call('LREM', KEYS[5], 0, ARGV[1]) end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[2])
if queue then redis.call('LREM', queue, -1, ARGV[1]) end
announce(ARGV[8], ARGV[3])
archive(ARGV[8], ARGV[3])
flush()
return {'CANCELLED'}
