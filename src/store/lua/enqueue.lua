-- The master puts a fire into a node's durable queue (after a failed or timed-out SubmitTask, or
-- when moving a dead node's work): fenced by the lease; compare-and-set dispatching -> queued.
-- Also the master's sweep of the watch set (`inflight`): every fire not yet started stays in it,
-- scored by when to look at it again. A fire already handed over (accepted or queued) that its
-- owner's processing list or queue still holds is left to wait there; one that no list holds (an
-- orphan: a half-done write of an older version, a list deleted by hand) is queued again here, so
-- it runs or is recorded rather than wait forever.
-- The fire goes into the list of its level (its hash's `prio`) and rings the doorbell (section 3.22).
-- KEYS[1] lease  KEYS[2] fire hash  KEYS[3] q:<target>  KEYS[4] inflight zset  KEYS[5] hb:<target>
-- ARGV[1] lease value  ARGV[2] fire id  ARGV[3] target node  ARGV[4] watch ms
-- ARGV[5] processing list key prefix ('<tag>:p:')  ARGV[6] queue key prefix ('<tag>:q:')
-- Returns OK | FENCED | TARGET_DEAD | ORPHAN | the fire's state when it is not dispatching (e.g.
--   'accepted') | UNKNOWN
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 'FENCED' end
if redis.call('EXISTS', KEYS[5]) == 0 then return 'TARGET_DEAD' end
local bad = wrong(KEYS[2], 'hash', KEYS[4], 'zset')
if bad then return refuse(bad) end
local f = redis.call('HMGET', KEYS[2], 'state', 'node', 'prio')
local st, prio = f[1], f[3]
bad = wrong(queue_list(KEYS[3], prio), 'list')
if bad then return refuse(bad) end
local t = redis.call('TIME')
local watch_at = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[4])
-- Into the target's queue, owned by no incarnation until one takes it, and watched until it starts.
local function queue()
  redis.call('HSET', KEYS[2], 'state', 'queued', 'node', ARGV[3])
  redis.call('HDEL', KEYS[2], 'inc')
  push_queue(KEYS[3], prio, ARGV[2])
  redis.call('ZADD', KEYS[4], watch_at, ARGV[2])
end
if st == 'accepted' or st == 'queued' then
  local function holds(list)
    if wrong(list, 'list') then return false end
    return redis.call('LPOS', list, ARGV[2]) ~= false
  end
  local owner = f[2] or ''
  if holds(ARGV[5] .. owner) or holds(queue_list(ARGV[6] .. owner, prio)) then
    redis.call('ZADD', KEYS[4], watch_at, ARGV[2])
    return st
  end
  queue()
  return 'ORPHAN'
end
if st ~= 'dispatching' then
  redis.call('ZREM', KEYS[4], ARGV[2])  -- started, ended or expired: nothing left to watch
  return st or 'UNKNOWN'
end
queue()
return 'OK'
