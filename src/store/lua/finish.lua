-- The final outcome of a fire run by its owner, in one atomic step: write the outcome into the fire
-- hash, which is the record of the fire's current execution (section 4.2), set the fire's terminal state, release the no-overlap lock if this fire holds it, and remove the fire from
-- the owner's processing list (the ack). A late result from an incarnation that no longer owns the
-- fire (it was reaped, and the fire re-run or recorded lost) changes nothing but its own record,
-- which is kept as evidence with state 'superseded'.
-- KEYS[1] exec key  KEYS[2] executions index  KEYS[3] job's executions index  KEYS[4] lock key
-- KEYS[5] fire hash  KEYS[6] p:<self>
-- ARGV[1] exec id  ARGV[2] JSON  ARGV[3] retention ms  ARGV[4] channel  ARGV[5] fire id
-- ARGV[6] id prefix of executions past retention  ARGV[7] self  ARGV[8] incarnation  ARGV[9] outcome state
-- KEYS[7] exec key of the superseded evidence record  KEYS[8] the job's failure index
-- KEYS[9] open executions (the finished one leaves it: one ZREM a call)
-- ARGV[10] the superseded JSON  ARGV[11] its execution id (its own: the fire's real record, e.g.
--   'lost' or a re-run, is never overwritten)
-- ARGV[12] keep last  ARGV[13] keep failed (the job's history caps, `trim_history`)
-- ARGV[14] exec key prefix  ARGV[15] unused (was how long an ended fire hash was kept: it is the
--   record now, kept for the retention)
-- ARGV[16] '1': the worker's definition of the job says forbid (it may hold the lock)
-- ARGV[17] what the caller (`RedisStore`'s `Housekeeping`) says is due for the job's index: '2'
--   housekeeping (sized, trimmed past retention and to its caps) and its TTL; '1' its TTL only;
--   '0' neither. Not at every finish: a busy job's finish costs no ZCARD and no PEXPIRE.
-- ARGV[18] the job index's TTL (ms): the retention and an hour, so that a node refreshing it
--   every 30 minutes keeps it past every record it indexes
-- ARGV[19] start ms or ''  ARGV[20] end ms  ARGV[21] attempt  ARGV[22] error  ARGV[23] output
-- ARGV[24] stderr (the record's fields, written into the fire hash; empty ones are not written)
-- ARGV[25] fire key prefix ('<tag>:fire:', for the history trim)  ARGV[26] '1': a record of this
--   execution may exist apart (a retry's, written while it ran): deleted, the hash has the outcome
-- KEYS[10] the job's held list  KEYS[11] the held index  KEYS[12] q:<self>  KEYS[13] inflight (watch set)
-- ARGV[30] the fire's jitter ms ('' for none: a record field, as the start, end and output are)
-- ARGV[27] lock ttl ms  ARGV[28] misfire threshold ms  ARGV[29] watch ms: the lock this fire lets go
--   passes to the oldest fire held for it, which goes into this node's queue (section 3.20), or,
--   while this node's record (KEYS[14]) says it is draining, to `dispatching` for the master's sweep
-- Returns 'OK' | 'SUPERSEDED' | {'BADKEY', why} (a key of the wrong type: nothing changed)
-- Every key is made sure of before the first write that matters: the fire hash, the lock and
-- p:<self> by their first command under pcall (a read; the ack's LREM), the job's index by its
-- ZCARD when housekeeping; the indexes by TYPE, only when this finish writes them otherwise.
local f, bad = read('hash', 'HMGET', KEYS[5], 'state', 'node', 'inc', 'exec', 'lock')
if bad then return {'BADKEY', bad} end
-- The same finish again (its first reply was lost: Redis restarted between the commit and the reply,
-- and the caller retried): it is recorded already. Without this the repeat would be taken for a late
-- result of a dead incarnation and leave a `superseded` record beside the real one.
-- (An ended fire's hash no longer holds the incarnation: its execution id says which attempt it is.)
if f[1] == ARGV[9] and f[2] == ARGV[7] and (f[3] == ARGV[8] or not f[3]) and f[4] == ARGV[1] then
  local _
  _, bad = read('list', 'LREM', KEYS[6], -1, ARGV[5])
  if bad then return {'BADKEY', bad} end
  return {'OK'}
end
-- Housekeeping (when the caller says it is due): the job's index, its size first (a read that
-- fails on the wrong type without writing); its entries past retention (their records are gone)
-- dropped (listings skip and drop the ones they meet meanwhile).
local housekeep = ARGV[17] == '2'
local n, _, trim = 0, nil, false
if housekeep then
  n, bad = read('zset', 'ZCARD', KEYS[3])
  if bad then return {'BADKEY', bad} end
  redis.call('ZREMRANGEBYLEX', KEYS[3], '-', '(' .. ARGV[6])
  n = redis.call('ZCARD', KEYS[3])
  -- Whether the job's history is due for its trim (then the failure index it may write is checked
  -- here, before any write).
  trim = trim_due(n, ARGV[12])
end
if trim then
  bad = wrong(KEYS[8], 'zset', KEYS[2], 'zset')
  if bad then return {'BADKEY', bad} end
end
local json, result, key, id = ARGV[2], 'OK', KEYS[1], ARGV[1]
-- The ack, from the tail, where the oldest entries are (entries are pushed at the head and run in
-- about that order), stopping at the first match: a whole-list scan made each ack O(list length),
-- and a burst of accepted fires quadratic. A stray second copy is removed by the rescan (start:
-- NOT_MINE). Not when the fire now belongs to a newer incarnation of this very node (declared dead
-- while it ran, it registered anew and took the re-run over): that entry is the new incarnation's.
local mine = f[1] == 'running' and f[2] == ARGV[7] and f[3] == ARGV[8]
local held = nil
-- The lock is read only for a fire that may hold it: one claimed (or re-run) as a forbid fire
-- (`lock` in its hash), or whose job the worker says is forbid (a fire claimed before the field
-- existed).
if mine and (f[5] == '1' or ARGV[16] == '1') then
  held, bad = read('string', 'GET', KEYS[4])
  if bad then return {'BADKEY', bad} end
  -- Letting the lock go hands it on (`promote`): its keys are made sure of now.
  -- (The queue's level list is `promote`'s to check: a clobbered one leaves the fire to the sweep.)
  if held == ARGV[5] then bad = wrong(KEYS[10], 'list', KEYS[11], 'zset', KEYS[13], 'zset') end
  if bad then return {'BADKEY', bad} end
end
-- The fire's own execution (its exec field) was indexed when it was made (claim, trigger, a re-run's
-- start, a retry's record); a superseded evidence record, or another id, is indexed here.
local index = not (mine and f[4] == ARGV[1])
if index then
  bad = wrong(KEYS[2], 'zset', KEYS[3], 'zset')
  if bad then return {'BADKEY', bad} end
end
if mine then
  bad = wrong(KEYS[9], 'zset')  -- once a call: its ZREM is staged
  if bad then return {'BADKEY', bad} end
end
if mine or f[2] ~= ARGV[7] or f[3] == ARGV[8] then
  _, bad = read('list', 'LREM', KEYS[6], -1, ARGV[5])  -- the first write beyond the trim
  if bad then return {'BADKEY', bad} end
end
if not mine then
  json, result, key, id = ARGV[10], 'SUPERSEDED', KEYS[7], ARGV[11]
  redis.call('SET', key, json, 'PX', ARGV[3])
else
  -- The outcome goes into the fire hash, the record (it keeps the retention its claim gave it), and
  -- the fields only the run needed go. An empty field is deleted, not written: an earlier attempt's
  -- value must not read as this one's.
  local h = {'state', ARGV[9], 'exec', ARGV[1], 'attempts', ARGV[21]}
  -- The job and a scheduled fire's instant are in the fire id, which names the hash: read from it.
  local gone = {'claimed_at', 'deadline_ms', 'recoveries', 'next_exec', 'lock', 'inc', 'job'}
  if scheduled(ARGV[5]) then gone[#gone+1] = 'sched' end
  put_field(h, gone, 'started', ARGV[19])
  put_field(h, gone, 'ended', ARGV[20])
  put_field(h, gone, 'error', ARGV[22])
  put_field(h, gone, 'output', ARGV[23])
  put_field(h, gone, 'stderr', ARGV[24])
  put_field(h, gone, 'jitter', ARGV[30])
  redis.call('HSET', KEYS[5], unpack(h))
  redis.call('HDEL', KEYS[5], unpack(gone))
  if not string.find(ARGV[1], '~', 1, true) then
    -- An execution made before ids named their fire (claimed by the release before): readers find
    -- it by its record kept apart, which is written as before.
    redis.call('SET', KEYS[1], json, 'PX', ARGV[3])
  elseif ARGV[26] == '1' then redis.call('DEL', KEYS[1]) end
  if held == ARGV[5] then
    redis.call('DEL', KEYS[4])
    if redis.call('EXISTS', KEYS[10]) == 1 then
      -- A node shutting down no longer takes from its queue (nor do idle nodes steal from it).
      local rec, queue = redis.pcall('GET', KEYS[14]), KEYS[12]
      if type(rec) == 'string' and string.find(rec, '"draining":true', 1, true) then queue = nil end
      promote(KEYS[10], KEYS[11], KEYS[4], string.match(ARGV[5], '^([^@]*)@') or '', ARGV[25], ARGV[27], ARGV[28],
        KEYS[13], ARGV[29], queue, ARGV[7])
    end
  end
  later('ZREM', KEYS[9], ARGV[1])
end
if index then
  redis.call('ZADD', KEYS[2], 0, id)
  redis.call('ZADD', KEYS[3], 0, id)
end
if ARGV[17] ~= '0' or index then redis.call('PEXPIRE', KEYS[3], ARGV[18]) end
if trim then
  trim_history(KEYS[3], KEYS[8], KEYS[2], ARGV[14], ARGV[25], redis.call('ZCARD', KEYS[3]), ARGV[12], ARGV[13],
    ARGV[6], ARGV[3], id)
end
announce(ARGV[4], json)
archive(ARGV[4], json)
return {result}
