-- Claim fires: for each, compare-and-set the job's watermark from sched to next and create the fire
-- record, all in one atomic step, so a fire (job, scheduled instant) is claimed once.
-- Fenced: nothing is claimed unless the caller's lease value is the stored lease.
-- A claim marked `here` goes straight into the caller's own hands when it is claimed, as accept.lua
-- would take it at once after the claim, saving the master's own fires that step: `start` ('2', a
-- job that is not master-only) makes it `running` (its first attempt, beginning at its instant: the
-- caller needs no start step, section 3.8); `take` ('1') makes it `accepted` (its node and
-- incarnation, the watch set) for start.lua to start. Either way in the caller's processing list.
-- Only while the caller's heartbeat holds its incarnation (accept.lua's NOT_LIVE check) and its
-- processing list is a list; otherwise the fire is claimed `dispatching`, as without `here`.
-- The fire hash is the record of the fire's first execution (section 4.2): no record of its own is
-- written, and a fire ended at its claim (skipped, misfired) has its outcome written into the hash.
-- KEYS[1] due zset  KEYS[2] executions index (the shard's newest, across jobs)  KEYS[3] lease
-- KEYS[4] inflight zset  KEYS[5] the caller's processing list  KEYS[6] the caller's heartbeat
-- KEYS[7] the open executions (pending or running, across jobs)  KEYS[8] the held index (section 3.20)
-- KEYS[9] the chain index (`after_previous` jobs waiting for a fire's end, section 3.2b)
-- KEYS[10] the completed index (a claim that leaves a job no next fire: when; `expire.lua`)
-- then per claim i (5 keys): job hash, fire hash, lock key, job's executions index, job's held list
-- ARGV[1] retention ms  ARGV[2] change channel  ARGV[3] the caller's lease value  ARGV[4] epoch
-- ARGV[5] dispatch deadline ms (how long a fire may stay 'dispatching')  ARGV[6] misfire threshold ms
--   (a fire must start within it of its scheduled instant, or of its claim when claimed late on
--   purpose: a catch-up fire gets the whole threshold)
-- ARGV[7] the caller's node id  ARGV[8] its incarnation  ARGV[9] watch ms (accept.lua's ARGV[4])
-- ARGV[10] how many of the newest executions the executions index keeps (`execution_recent`)
-- ARGV[11] the fire key prefix ('<tag>:fire:')  ARGV[12] the stop list key prefix ('<tag>:stops:')
-- ARGV[13] how long a stop list is kept (ms)
-- then per claim i (12 args): job id, sched_ms, next_ms or '-' or 'c' (an `after_previous` fire:
--   no watermark; the job waits for this fire's end, in the chain index and its hash's `chain`),
--   the overlap policy ('0' allow,
--   '1' forbid, 'b<n>' buffer n, 'r' replace: every one but '0' takes the job's lock), lock ttl ms,
--   exec id, exec JSON (pending, announced; or final), skipped exec JSON, '0' or the state the fire
--   ends in at its claim (its record is final: 'misfired' for a misfire's summary, 'failed' for a job
--   whose stored definition is invalid, 'skipped' for an instant a calendar excludes), or 'moved'
--   (the claim only moves the watermark: no fire is made, nothing recorded; section 3.24),
--   here '0' | '1' (take) | '2' (take and start), its job's priority ('high', 'normal', 'low': the
--   queue list it waits in should it be queued, kept in the fire hash as `prio`; section 3.22),
--   its shard's suffix ('' or '/<index>of<total>': section 3.23; the fire is '<job>@<sched><suffix>').
--   The shards of one fire come together, in order: the first moves the watermark; the others find
--   it moved by this call from their instant, and are claimed as the first was. The first also
--   marks the whole fire's key (ARGV[11] .. '<job>@<sched>', a string): found there already, every
--   shard of the fire is a DUP.
-- Returns {'FENCED'}, or one status per claim: CLAIMED HERE (claimed into the caller's hands)
--   STARTED (claimed into the caller's hands and started)
--   HELD (the lock was held: the fire waits for it, section 3.20), or 'HELD <node> <fire> <exec>'
--   (a replace, whose holder, fire <fire>'s execution <exec>, runs on <node> and was asked to stop:
--   the caller asks that node directly too)
--   SKIPPED MISFIRED MOVED STALE PAUSED GONE,
--   'DUP <what the fire key held>' (the fire key existed before its claim: claimed before, or planted),
--   'BADKEY <why>' (a key of the claim has the wrong type: nothing written for it but, when the job's
--   own hash is fine, the watermark's move, so the schedule goes on); or a BADKEY error when a shared
--   key has the wrong type (nothing written at all)
if redis.call('GET', KEYS[3]) ~= ARGV[3] then return {'FENCED'} end
local bad = wrong(KEYS[1], 'zset', KEYS[2], 'zset', KEYS[4], 'zset', KEYS[7], 'zset', KEYS[8], 'zset', KEYS[9], 'zset',
  KEYS[10], 'zset')
if bad then return refuse(bad) end
-- What a key that should not exist holds, for the log line (bounded).
local function describe(k)
  local t = redis.call('TYPE', k)['ok']
  if t ~= 'hash' then return 'a ' .. t end
  local s = cjson.encode(redis.call('HGETALL', k))
  if #s > 300 then s = string.sub(s, 1, 300) .. '...' end
  return s
end
-- Whether this call may take fires into the caller's hands: its heartbeat holds its incarnation
-- and its processing list is a list. Asked once, at the first `here` claim; read under `pcall`, so
-- a heartbeat of the wrong type reads as not live (mid-loop, a failed GET would end the script
-- with the earlier fires half written).
local takes = nil
local function may_take()
  if takes == nil then
    takes = read('string', 'GET', KEYS[6]) == ARGV[8] and not wrong(KEYS[5], 'list')
  end
  return takes
end
local now = time_ms()
local out = {}
-- Each job's place in the due set after this call (its last claim's `next`, or false: none), written
-- once at the end: nothing in the call reads the due set, and a job claimed twice in one call (a
-- misfire's summary and its fire) must end where its last claim put it.
local due, due_order = {}, {}
-- Per job, the instant whose claim moved its watermark in this call: a shard after its fire's first.
local moved = {}
-- Per job, the instant of a sharded fire found fanned out before, and what said so: its every shard
-- is a DUP (the shards' own keys cannot tell, as `all` may count another total at each claim).
local fanned, fanned_by = {}, {}
local n = (#KEYS - 10) / 5
for i = 0, n - 1 do
  local kj, kf, kl, kje, kh = KEYS[11+5*i], KEYS[12+5*i], KEYS[13+5*i], KEYS[14+5*i], KEYS[15+5*i]
  local a = 14 + 12*i
  local job, sched, nxt, shard = ARGV[a], ARGV[a+1], ARGV[a+2], ARGV[a+11]
  local mode, lock_ttl, exec_id = ARGV[a+3], ARGV[a+4], ARGV[a+5]
  -- Every policy but allow takes the lock; forbid skips a fire that finds it held, the others hold it.
  local forbid, holds, stop = mode ~= '0', mode ~= '0' and mode ~= '1', nil
  local json, skipped, final, here, prio = ARGV[a+6], ARGV[a+7], ARGV[a+8], ARGV[a+9], ARGV[a+10]
  -- One read for the job (every job hash has updated_ms), under pcall: a job key of the wrong type
  -- is this claim's BADKEY, found without a TYPE of its own.
  local j, badjob = read('hash', 'HMGET', kj, 'next_ms', 'paused', 'updated_ms')
  j = j or {}
  local wm = j[1]
  if badjob then out[#out+1] = 'BADKEY ' .. badjob
  elseif not j[3] then out[#out+1] = 'GONE'
  elseif j[2] == '1' then out[#out+1] = 'PAUSED'
  elseif wm ~= sched and not (shard ~= '' and moved[job] == sched) then out[#out+1] = 'STALE'
  else
    if shard ~= '' and wm == sched then
      -- The first shard of its fire in this call: the whole fire's key marks the instant fanned
      -- out (a string, with its retention), so a claim of it again, with any total, claims none.
      local kw = ARGV[11] .. job .. '@' .. sched
      if redis.call('EXISTS', kw) == 1 then
        fanned[job], fanned_by[job] = sched, describe(kw)
      else
        redis.call('SET', kw, 'fanned out into' .. shard, 'PX', ARGV[1])
      end
    end
    moved[job] = sched
    -- A fire's instant claimed (its first shard; not a misfire's summary): one more toward the
    -- job's max_fires, counted in the same step as the watermark's move.
    if final == '0' and wm == sched then redis.call('HINCRBY', kj, 'fired', 1) end
    -- advance the watermark in the same atomic step as the claim
    if nxt == 'c' then
      -- after_previous: this fire's end sets the next one (chain.lua).
      redis.call('HSET', kj, 'last_ms', sched, 'chain', sched)
      redis.call('HDEL', kj, 'next_ms')
      redis.call('ZADD', KEYS[9], sched, job)
      nxt = '-'
    elseif nxt == '-' then
      redis.call('HSET', kj, 'last_ms', sched)
      redis.call('HDEL', kj, 'next_ms')
      redis.call('ZADD', KEYS[10], now, job)
    else
      redis.call('HSET', kj, 'last_ms', sched, 'next_ms', nxt)
    end
    if due[job] == nil then due_order[#due_order+1] = job end
    due[job] = nxt ~= '-' and nxt
    if final == 'moved' then out[#out+1] = 'MOVED' end
  end
  if out[i+1] then
    -- already decided (BADKEY, GONE, PAUSED, STALE)
  elseif shard ~= '' and fanned[job] == sched then
    out[#out+1] = 'DUP (its fire was fanned out before) ' .. fanned_by[job]
  elseif redis.call('EXISTS', kf) == 1 then
    out[#out+1] = 'DUP ' .. describe(kf)  -- recorded before: the watermark moved on above, nothing else
  else
    -- The lock is written only for a forbid job (SET NX), so only then is its type checked; the
    -- job's index is the fire's first write, a ZADD that fails on the wrong type before writing.
    if forbid then out[i+1] = wrong(kl, 'string') end
    if not out[i+1] and holds then out[i+1], stop = hold_check(mode, kh, KEYS[8], kl, ARGV[11], ARGV[12]) end
    if not out[i+1] then local _; _, out[i+1] = read('zset', 'ZADD', kje, 0, exec_id) end
    if out[i+1] then out[i+1] = 'BADKEY ' .. out[i+1] end
  end
  if out[i+1] then
    -- decided above
  else
    local st = 'CLAIMED'
    local fs = 'dispatching'
    if final ~= '0' then st = 'MISFIRED'; fs = final
    elseif forbid then
      local met = meet_lock(mode, kl, kh, KEYS[8], KEYS[7], KEYS[4], job, job .. '@' .. sched .. shard, ARGV[11], stop,
        ARGV[12], ARGV[13], ARGV[2], lock_ttl, ARGV[6], now)
      if met == 'SKIPPED' then
        st = 'SKIPPED'; fs = 'skipped'; json = skipped
      elseif met == 'HELD' then
        st = 'HELD'; fs = 'held'
        if stop then st = 'HELD ' .. stop[2] .. ' ' .. stop[1] .. ' ' .. stop[3] end
      end
    end
    local h = {'state', fs, 'job', job, 'sched', sched, 'epoch', ARGV[4], 'claimed_at', now,
               'deadline_ms', math.max(tonumber(sched), now) + tonumber(ARGV[6]), 'attempts', 0, 'recoveries', 0}
    if prio ~= 'normal' then h[#h+1] = 'prio'; h[#h+1] = prio end
    if fs == 'held' then
      -- Waits for the lock: its execution is made (pending), in no node's hands, not watched.
      h[#h+1] = 'next_exec'; h[#h+1] = exec_id
    elseif fs ~= 'dispatching' then
      -- Ended at its claim: the record's outcome goes into the hash (the rare path: its JSON is
      -- decoded for the reason and the node).
      local ok, d = pcall(cjson.decode, json)
      if not ok or type(d) ~= 'table' then d = {} end
      put_field(h, nil, 'exec', exec_id)
      put_field(h, nil, 'ended', d.end_ms or now)
      put_field(h, nil, 'error', d.error)
      put_field(h, nil, 'node', d.node_id)
    else
      -- It holds the job's lock: its finish releases it (finish.lua reads the lock only then).
      if forbid then h[#h+1] = 'lock'; h[#h+1] = '1' end
      local fire = job .. '@' .. sched .. shard
      if here ~= '0' and may_take() then
        h[#h+1] = 'node'; h[#h+1] = ARGV[7]; h[#h+1] = 'inc'; h[#h+1] = ARGV[8]
        later('LPUSH', KEYS[5], fire)
        if here == '2' then
          -- Started: it begins at its instant (or now, when late); not watched (section 3.8).
          local start = math.max(tonumber(sched), now)
          st = 'STARTED'; h[2] = 'running'
          h[#h+1] = 'exec'; h[#h+1] = exec_id; h[#h+1] = 'started'; h[#h+1] = start
          h[14] = 1  -- attempts
          json = running_json(exec_id, job, fire, sched, start, ARGV[7], 1, false, ARGV[4])
        else
          st = 'HERE'; h[2] = 'accepted'
          h[#h+1] = 'next_exec'; h[#h+1] = exec_id
          later('ZADD', KEYS[4], now + tonumber(ARGV[9]), fire)
        end
      else
        h[#h+1] = 'next_exec'; h[#h+1] = exec_id
        later('ZADD', KEYS[4], now + tonumber(ARGV[5]), fire)
      end
    end
    redis.call('HSET', kf, unpack(h))
    redis.call('PEXPIRE', kf, ARGV[1])
    later('ZADD', KEYS[2], 0, exec_id)
    if fs == 'dispatching' or fs == 'held' then later('ZADD', KEYS[7], 0, exec_id) end
    announce(ARGV[2], json)
    if fs ~= 'dispatching' and fs ~= 'held' then archive(ARGV[2], json) end
    out[#out+1] = st
  end
end
local add, rem = {}, {}
for _, job in ipairs(due_order) do
  if due[job] then add[#add+1] = due[job]; add[#add+1] = job else rem[#rem+1] = job end
end
for i = 1, #add, 1000 do redis.call('ZADD', KEYS[1], unpack(add, i, math.min(i + 999, #add))) end
for i = 1, #rem, 1000 do redis.call('ZREM', KEYS[1], unpack(rem, i, math.min(i + 999, #rem))) end
flush()
-- The executions index keeps the shard's newest (ids sort by time); older ones stay listable by
-- their job, and open ones by the open set.
redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -(tonumber(ARGV[10]) + 1))
return out
