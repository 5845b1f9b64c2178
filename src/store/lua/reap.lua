-- Resolve one entry of a dead node's queue or processing list (the master, fenced by its lease), or
-- of this node's own lists left by its earlier incarnations (fenced by this node's heartbeat).
-- Never-started fires move to a live node's queue; a fire that was running is re-run (recovery
-- 'rerun', at most max_recoveries times) or recorded lost (the caller records and alerts).
-- KEYS[1] fence key (lease, or hb:<self>)  KEYS[2] hb:<dead>  KEYS[3] the dead node's q or p list
-- KEYS[4] fire hash  KEYS[5] q:<target>  KEYS[6] lock key
-- ARGV[1] fence value (the lease value, or this node's live incarnation)  ARGV[2] fire id
-- ARGV[3] recovery 'rerun'|'lost'  ARGV[4] max recoveries, or '-': a hand-over that is no recovery
-- ARGV[5] lock ttl ms  ARGV[6] target node  ARGV[7] dead node  ARGV[8] misfire threshold ms
-- ARGV[9] mode: 'master' (fenced by the lease: the node must be dead; any incarnation's entry goes,
--   and one that was running is buried), 'adopt' (fenced by hb:<self>: the live incarnation's own
--   entries are put back, its earlier incarnations' go) or 'handoff' (fenced by hb:<self>: a fire
--   the live incarnation holds goes too, and the handing node records its own attempt: no closing)
-- KEYS[7] gone:<dead>  ARGV[10] how long to remember a buried incarnation (ms)
-- KEYS[8] inflight (watch set)  ARGV[11] watch ms (see enqueue.lua)  KEYS[9] closing hash
-- ARGV[12] 'q': KEYS[3] is the dead node's queue, whose three level lists are looked in (section
--   3.22); 'p': its processing list. A fire moved goes into the target's list of its level (`prio`).
-- Returns FENCED | ALIVE | GONE | STALE_COPY | MOVED | {'RERUN', dead exec, job, sched, started, attempts}
--   | {'LOST', job, sched, exec, started, attempts} | DROPPED_<state> (started and attempts: the dead
--   attempt's, '' when the hash has none)
local mode = ARGV[9]
if mode ~= 'master' and mode ~= 'adopt' and mode ~= 'handoff' then
  return redis.error_reply('ERR reap: unknown mode ' .. tostring(mode))
end
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 'FENCED' end
if mode == 'master' and redis.call('EXISTS', KEYS[2]) == 1 then return 'ALIVE' end
local bad = wrong(KEYS[4], 'hash')
if bad then return refuse(bad) end
local prio = redis.call('HGET', KEYS[4], 'prio')
bad = wrong(queue_list(KEYS[5], prio), 'list', KEYS[6], 'string', KEYS[7], 'set', KEYS[8], 'zset', KEYS[9], 'hash')
if bad then return refuse(bad) end
-- The entry leaves the list that holds it (LREM fails on the wrong type before writing: a clobbered
-- level list is passed over, and named only when no list held the entry).
local lists = {KEYS[3]}
if ARGV[12] == 'q' then lists = queue_lists(KEYS[3]) end
local src, clobbered = nil, nil
for _, l in ipairs(lists) do
  local n, why = read('list', 'LREM', l, 1, ARGV[2])
  clobbered = clobbered or why
  if n and n > 0 then src = l; break end
end
if not src and clobbered then return refuse(clobbered) end
if not src then return 'GONE' end
local f = redis.call('HMGET', KEYS[4], 'state', 'node', 'inc', 'job', 'sched', 'exec', 'started', 'attempts')
local st, owner = f[1], f[2]
if owner ~= ARGV[7] then return 'STALE_COPY' end
if mode == 'adopt' and f[3] == ARGV[1] then
  -- our own current incarnation: not a leftover; put it back
  redis.call('RPUSH', src, ARGV[2]); return 'ALIVE'
end
local function watch()
  local t = redis.call('TIME')
  redis.call('ZADD', KEYS[8], tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[11]), ARGV[2])
end
if st == 'queued' or st == 'accepted' then
  redis.call('HSET', KEYS[4], 'state', 'queued', 'node', ARGV[6])
  redis.call('HDEL', KEYS[4], 'inc')  -- no incarnation owns it until one takes it
  push_queue(KEYS[5], prio, ARGV[2]); watch(); return 'MOVED'
end
-- The dead attempt goes into `closing` in this same step: the caller records it lost (and alerts for
-- a lost fire), then deletes the entry; were this reply lost, the master's next sweep finds it.
-- For a handoff too, as kind 'handoff' when the fire runs again: the handing node records its own
-- attempt; were the reply lost, it would not (its fire has left its list, so its rescan never
-- comes back to it), and the sweep closes the attempt instead.
local function closing(kind)
  if f[6] then
    if mode == 'handoff' and kind == 'rerun' then kind = 'handoff' end
    -- When it started and as which attempt: the fire hash, its record, is the next attempt's once
    -- that starts, and the close may come after.
    redis.call('HSET', KEYS[9], f[6], table.concat({kind, ARGV[2], f[4] or '', f[5] or '0', ARGV[7], ARGV[6],
      f[7] or '', f[8] or ''}, '\t'))
  end
end
if st == 'running' then
  if mode == 'master' and f[3] then
    -- The incarnation that ran it is dead for good: were its key merely expired (Redis restarted),
    -- its heartbeat could otherwise take it back while its run is re-run or recorded lost.
    redis.call('SADD', KEYS[7], f[3])
    redis.call('PEXPIRE', KEYS[7], ARGV[10])
  end
  -- A hand-over ('-': a node handing a fire whose handler has not begun) is no recovery: the count
  -- that bounds re-runs after deaths is left alone.
  local r = 0
  if ARGV[4] ~= '-' then r = redis.call('HINCRBY', KEYS[4], 'recoveries', 1) end
  if ARGV[3] == 'rerun' and (ARGV[4] == '-' or r <= tonumber(ARGV[4])) then
    local t = redis.call('TIME')
    local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    redis.call('HSET', KEYS[4], 'state', 'queued', 'node', ARGV[6], 'deadline_ms', now + tonumber(ARGV[8]))
    redis.call('HDEL', KEYS[4], 'inc')
    if redis.call('GET', KEYS[6]) == ARGV[2] then redis.call('PEXPIRE', KEYS[6], ARGV[5]) end
    closing('rerun')
    push_queue(KEYS[5], prio, ARGV[2]); watch()
    return {'RERUN', f[6] or '', f[4] or '', f[5] or '0', f[7] or '', f[8] or ''}
  end
  redis.call('HSET', KEYS[4], 'state', 'lost')
  closing('lost')
  -- The no-overlap lock is left to expire: a node declared dead may only be paused or cut off,
  -- with its handler still running and renewing the lock. Releasing it here would let the job's
  -- next fire run beside that handler.
  return {'LOST', f[4] or '', f[5] or '0', f[6] or '', f[7] or '', f[8] or ''}
end
return 'DROPPED_' .. tostring(st)
