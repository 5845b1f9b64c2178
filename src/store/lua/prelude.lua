-- Prepended to every script. A Redis command on a key of the wrong type (a key clobbered by hand,
-- or planted) fails the script where it stands, and Redis keeps whatever the script wrote before
-- that point: a fire could be left half-moved (its state written, its list push refused). So each
-- script makes sure of every key it will write before its first write, and writes nothing when one
-- is wrong, in one of two ways:
-- * read(type, command, key, ...): the key's first command is one that fails on the wrong type
--   without changing anything (a read, or a trim): it runs under redis.pcall and a WRONGTYPE error
--   becomes `nil, why` (one TYPE, on that error path only). No extra command when the key is fine.
-- * wrong(key, type, key, type, ...): nil, or why the first wrong key is wrong (a missing key is
--   fine), by TYPE, for a key whose first command is a write. A key found fine is remembered for
--   the rest of this call (a batch's shared lists and indexes are checked once, not per fire): only
--   this script writes during the call, and it never gives a key another type.
local typed = {}
local function wrong(...)
  local a = {...}
  for i = 1, #a, 2 do
    if typed[a[i]] ~= a[i + 1] then
      local got = redis.call('TYPE', a[i])['ok']
      if got ~= 'none' and got ~= a[i + 1] then
        return a[i] .. ' is a ' .. got .. ', not a ' .. a[i + 1]
      end
      typed[a[i]] = a[i + 1]
    end
  end
  return nil
end
local function read(want, ...)
  local r = redis.pcall(...)
  if type(r) == 'table' and r.err then
    if not string.find(r.err, 'WRONGTYPE', 1, true) then error(r.err) end
    local key = select(2, ...)
    return nil, key .. ' is a ' .. redis.call('TYPE', key)['ok'] .. ', not a ' .. want
  end
  typed[select(2, ...)] = want
  return r
end
-- The whole call refused, nothing written: an error reply the caller maps to a corrupt-key error.
local function refuse(why)
  return redis.error_reply('BADKEY ' .. why)
end
-- A node's durable queue (section 3.22) is three lists, one per priority: `<q>:hi`, `<q>` (normal:
-- the name a queue always had) and `<q>:lo` (a node id holds no ':'), each pushed at the left and
-- taken at the right; and its doorbell `<q>:bell`, a list of at most one entry that a node waiting
-- for work blocks on, rung by every push. A fire's level is its hash's `prio` (absent: normal).
local function queue_list(q, prio)
  if prio == 'high' then return q .. ':hi' end
  if prio == 'low' then return q .. ':lo' end
  return q
end
-- Highest first.
local function queue_lists(q)
  return {q .. ':hi', q, q .. ':lo'}
end
-- Pushes `fire` into its level's list of queue `q` (the caller has checked that list's type) and
-- rings the doorbell, under pcall: a clobbered bell costs wake-ups (the taker polls), never the
-- push, and the next take that finds the queue empty deletes it.
local function push_queue(q, prio, fire)
  redis.call('LPUSH', queue_list(q, prio), fire)
  if redis.pcall('LLEN', q .. ':bell') == 0 then redis.pcall('RPUSH', q .. ':bell', '1') end
end
-- A GET done once per call, for a key this script never writes (a node's heartbeat in a batch of
-- that node's starts).
local got = {}
local function get_once(key)
  if got[key] == nil then got[key] = redis.call('GET', key) end
  return got[key]
end
-- Redis TIME in ms, read once per call (a batch's fires share it).
local now_cache = nil
local function time_ms()
  if not now_cache then
    local t = redis.call('TIME')
    now_cache = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  end
  return now_cache
end
-- Execution changes are announced once per call: `announce` collects a change's JSON, `flush`
-- publishes them all as one JSON array on the change channel (the relay fans it out).
local changes, change_channel = {}, nil
local function announce(channel, json)
  change_channel = channel
  changes[#changes + 1] = json
end
-- The history archive (`history_postgres`): while `<tag>:archive:on` exists (an archiving node keeps
-- it), every execution record written in a final state goes on the outbox list `<tag>:archive` (a
-- copy of its JSON, so a record its job's cap deletes before the archiver gets to it is still
-- archived), in the same atomic step as the record, so the archiver, which copies the outbox to
-- PostgreSQL and only then trims it, can never miss one. `archive` collects the records of a call
-- (named by its change channel `<tag>:chan:exec`, which every such script is given), `flush` pushes
-- them with one RPUSH. The keys are `Keys::archive` and `Keys::archive_on`.
-- Writes of many fires to one shared key (the watch set, the executions index, a processing list)
-- made as one command for the whole call instead of one per fire: `later(cmd, key, ...)` stages
-- one (ZADD score member, ZREM member, LPUSH value) and `flush` runs them, a command per key and
-- kind, in the order staged. Only for writes that nothing later in the same call reads or undoes
-- (the call is atomic: no one else sees when they happen), on keys whose type the step checked
-- first. A batch item's staged writes are kept only when the item ends well (`batch.lua`).
local staged, later_groups, later_order = {}, {}, {}
local function later(cmd, key, ...)
  staged[#staged + 1] = {cmd, key, ...}
end
local function keep_later()
  for _, w in ipairs(staged) do
    local id = w[1] .. '\0' .. w[2]
    local g = later_groups[id]
    if not g then
      g = {w[1], w[2]}
      later_groups[id] = g
      later_order[#later_order + 1] = g
    end
    for i = 3, #w do g[#g + 1] = w[i] end
  end
  staged = {}
end
local function drop_later()
  staged = {}
end
local function run_later()
  keep_later()
  for _, g in ipairs(later_order) do
    -- At most 1000 arguments a command (an even number: ZADD's pairs stay together).
    for i = 3, #g, 1000 do
      redis.call(g[1], g[2], unpack(g, i, math.min(i + 999, #g)))
    end
  end
  later_groups, later_order = {}, {}
end
local archived, archive_tag = {}, nil
local function archive(channel, json)
  archive_tag = string.match(channel, '^({[^}]*})')
  archived[#archived + 1] = json
end
local function flush()
  run_later()
  if change_channel and #changes > 0 then
    redis.call('PUBLISH', change_channel, '[' .. table.concat(changes, ',') .. ']')
    changes = {}
  end
  if archive_tag and #archived > 0 then
    if redis.call('EXISTS', archive_tag .. ':archive:on') == 1 then
      -- A clobbered outbox must not fail the write it follows: the copies go nowhere, and the
      -- archiver reports the key (`archive_take`).
      redis.pcall('RPUSH', archive_tag .. ':archive', unpack(archived))
    end
    archived = {}
  end
end
-- A job's history past its caps (`Keep` in store/mod.rs), when a run of it finishes: its index
-- `kje` keeps its newest `last` executions; of the older ones, an open one (pending, running) stays,
-- a failed one (failed, timed_out, lost) moves to the job's failure index `kjf`, which keeps its
-- newest `failed`, and every other one is deleted with its entry in the executions index `kall`.
-- `n` is ZCARD of `kje`; the caller has checked `kjf`'s type (`trim_due` first). `prefix` + id is
-- the key of an execution's record kept apart, `fprefix` + fire id a fire hash (the record of the
-- fire's current execution, `record_of`); `oldest` the id prefix of executions past retention; `ttl` the retention;
-- `own` the record this call wrote, never deleted by it (a forbid job's long run is older than the
-- fires skipped meanwhile). At most TRIM_MAX entries per call: a job index filled before caps
-- existed (a day of a per-second job) is worked down over later finishes, never in one long call
-- that would stall Redis past the nodes' heartbeats.
-- Whether a fire id names a scheduled fire ('<job>@<ms>', or one of its shards '<job>@<ms>/<i>of<n>'),
-- whose instant the id itself gives (a manual fire's does not).
local function scheduled(fire)
  return string.find(fire, '@%d+$') ~= nil or string.find(fire, '@%d+/%d+of%d+$') ~= nil
end
-- Adds field `name` with `value` to the HSET arguments `h` when it has a value (a number, or a
-- string that is not empty); otherwise, when `gone` is given, to the fields to delete (`HDEL`).
local function put_field(h, gone, name, value)
  if type(value) == 'number' or (type(value) == 'string' and value ~= '') then
    h[#h+1] = name; h[#h+1] = value
  elseif gone then
    gone[#gone+1] = name
  end
end
-- Whether a job's stored definition (its `spec` JSON, or '' / nil for none) is master-only. A plain
-- find first: only a spec that may say so is decoded (args could hold the same text).
local function master_only(spec)
  if not spec or not string.find(spec, '"master_only":true', 1, true) then return false end
  local ok, d = pcall(cjson.decode, spec)
  return ok and type(d) == 'table' and d.master_only == true
end
-- The `running` record of an attempt, as the Execution type's serde form (tested by the store
-- conformance suite), announced when a fire starts. The epoch goes in as its digits: a Lua number
-- prints 14 significant digits, and epochs may have 16. Ids are plain ([A-Za-z0-9._:@~-], validated
-- where they are made), so the JSON is written by hand, which costs a fraction of a table for
-- cjson; a planted fire whose fields are not plain goes through cjson.
local function running_json(exec, job, fire, sched, start, node, attempt, manual, epoch)
  if not string.match(epoch or '', '^%d+$') then epoch = '0' end
  local function plain(v) return v ~= nil and v ~= false and string.find(v, '^[%w%._:@~%-]+$') ~= nil end
  if plain(exec) and plain(job) and plain(fire) and plain(node) and string.find(sched or '', '^%-?%d+$') then
    return '{"id":"' .. exec .. '","job_id":"' .. job .. '","fire_id":"' .. fire .. '","scheduled_ms":' .. sched
      .. ',"start_ms":' .. string.format('%d', start) .. ',"node_id":"' .. node .. '","attempt":' .. attempt
      .. ',"state":"running"' .. (manual and ',"manual":true' or '') .. ',"epoch":' .. epoch .. '}'
  end
  local json = cjson.encode({
    id = exec, job_id = job, fire_id = fire, scheduled_ms = tonumber(sched), start_ms = start,
    end_ms = cjson.null, node_id = node, attempt = attempt, state = 'running', error = '', output = '',
    manual = manual, epoch = 0
  })
  return (string.gsub(json, '"epoch":0', '"epoch":' .. epoch, 1))
end
local FAILURE = {failed = true, timed_out = true, lost = true}
local TRIM_MAX = 100
-- What a fire hash in a state says of its current execution (RedisStore::records has the same rule):
-- not yet started, or running; an ended state is the execution's own only once the hash holds the
-- outcome (`ended`), before that (a reap's `lost`, a start's `misfired`, whose records are written
-- apart just after) the execution reads as still open.
local OPEN = {dispatching = 'pending', accepted = 'pending', queued = 'pending', held = 'pending', running = 'running'}
-- The state of execution `id`'s record, and the fire hash's key when that hash holds its outcome
-- (the hash goes with the record then; never while its fire is open, whatever a record kept apart
-- says: a failed attempt waiting for its retry, an attempt handed over or closed for a re-run).
local function record_of(prefix, fprefix, id)
  local fire, fk, f = string.match(id, '~(.+)$'), nil, nil
  if fire then
    f = redis.pcall('HMGET', fprefix .. fire, 'state', 'next_exec', 'exec', 'ended', 'started')
    if type(f) ~= 'table' or f.err then f = {} end
    local cur = f[2]
    if not cur or cur == '' then cur = f[3] end
    if cur == id and f[1] then fk = fprefix .. fire end
  end
  if fk and f[4] then return OPEN[f[1]] or f[1], fk end
  local json = redis.pcall('GET', prefix .. id)
  if type(json) == 'string' then
    local ok, d = pcall(cjson.decode, json)
    if ok and type(d) == 'table' then return d.state, nil end
    return nil, nil
  end
  if fk then
    if OPEN[f[1]] then return OPEN[f[1]], nil end
    return (f[5] and f[3] == id) and 'running' or 'pending', nil
  end
  return nil, nil
end
local function trim_due(n, last)
  last = tonumber(last)
  return n > last + math.floor(last / 10)
end
local function trim_history(kje, kjf, kall, prefix, fprefix, n, last, failed, oldest, ttl, own)
  last, failed = tonumber(last), tonumber(failed)
  local take = math.min(n - last, TRIM_MAX)
  local old = redis.call('ZRANGE', kje, 0, take - 1)
  redis.call('ZREMRANGEBYRANK', kje, 0, take - 1)
  local gone, back, moved, hashes = {}, {}, {}, {}
  for _, id in ipairs(old) do
    -- A record of the wrong type (planted) reads as no record: it goes.
    local state, fk = record_of(prefix, fprefix, id)
    hashes[id] = fk
    if state == 'pending' or state == 'running' or id == own then back[#back + 1] = id
    elseif FAILURE[state] and failed > 0 then moved[#moved + 1] = id
    else gone[#gone + 1] = id end
  end
  for i = 1, #back do redis.call('ZADD', kje, 0, back[i]) end
  for i = 1, #moved do redis.call('ZADD', kjf, 0, moved[i]) end
  redis.call('ZREMRANGEBYLEX', kjf, '-', '(' .. oldest)
  local m = redis.call('ZCARD', kjf)
  if m > failed then
    -- Oldest first, and as many as one call takes (a cap lowered by hand may leave more).
    local drop = math.min(m - failed, TRIM_MAX)
    for _, id in ipairs(redis.call('ZRANGE', kjf, 0, drop - 1)) do
      gone[#gone + 1] = id
      local _, fk = record_of(prefix, fprefix, id)
      hashes[id] = fk
    end
    redis.call('ZREMRANGEBYRANK', kjf, 0, drop - 1)
  end
  if m > 0 then redis.call('PEXPIRE', kjf, ttl) end
  for i = 1, #gone do
    redis.call('DEL', prefix .. gone[i])
    if hashes[gone[i]] then redis.call('DEL', hashes[gone[i]]) end
  end
  for i = 1, #gone, 500 do redis.call('ZREM', kall, unpack(gone, i, math.min(i + 499, #gone))) end
end
-- Overlap policies (section 3.20). A fire of a `replace` or `buffer` job that finds the job's
-- no-overlap lock held waits for it: state 'held', its id at the tail of the job's held list
-- `kheld`, the job in the shard's held index `kindex` (the sweep's way to the jobs whose lock may
-- have expired with held fires waiting). The lock, once let go by its fire (finish, cancel, a
-- misfire at start) or expired, passes to the oldest held fire (`promote`).
--
-- The record of a fire ended in Lua with no record of its own to announce: `state` (an ended one),
-- the error, as the Execution type's serde form (as `running_json`).
local function ended_json(exec, job, fire, sched, ended, state, err, manual, epoch)
  if not string.match(epoch or '', '^%d+$') then epoch = '0' end
  local json = cjson.encode({
    id = exec, job_id = job, fire_id = fire, scheduled_ms = tonumber(sched) or 0, start_ms = cjson.null,
    end_ms = ended, node_id = '', attempt = 1, state = state, error = err, output = '', manual = manual,
    epoch = 0
  })
  return (string.gsub(json, '"epoch":0', '"epoch":' .. epoch, 1))
end
-- Makes sure of the keys `hold` writes (but the open set, which the caller checks), before the
-- caller's first write: nil, or why one is wrong.
-- For a replace (`mode` 'r') also reads the lock's holder, to stop it: {holder fire, its node, its
-- execution} when it runs (the stop list's key is checked too), else nil.
local function hold_check(mode, kheld, kindex, klock, fprefix, stops_prefix)
  local bad = wrong(kheld, 'list', kindex, 'zset')
  if bad or mode ~= 'r' then return bad, nil end
  local holder = redis.call('GET', klock)
  if not holder then return nil, nil end
  local f = redis.pcall('HMGET', fprefix .. holder, 'state', 'node', 'exec')
  if type(f) ~= 'table' or f.err or f[1] ~= 'running' or not f[2] or not f[3] then return nil, nil end
  bad = wrong(stops_prefix .. f[2], 'list')
  if bad then return bad, nil end
  return nil, {holder, f[2], f[3]}
end
-- Ends the fires held for job `job` `skipped`, replaced by `fire` before they began (concurrency
-- replace), and empties its held list. A held entry whose hash is not a hash (planted) is dropped.
local function replace_held(kheld, kopen, job, fire, fprefix, channel, now)
  for _, w in ipairs(redis.call('LRANGE', kheld, 0, -1)) do
    local kw = fprefix .. w
    local f = redis.pcall('HMGET', kw, 'state', 'next_exec', 'sched', 'manual', 'epoch')
    if type(f) == 'table' and not f.err and f[1] == 'held' then
      local why = 'skipped: replaced by a newer fire, ' .. fire .. ', before it began (concurrency replace)'
      redis.call('HSET', kw, 'state', 'skipped', 'exec', f[2] or '', 'ended', now, 'error', why, 'attempts', 1)
      redis.call('HDEL', kw, 'next_exec', 'claimed_at', 'deadline_ms', 'recoveries', 'job', 'lock')
      local json = ended_json(f[2] or '', job, w, f[3] or string.match(w, '@(%d+)'), now, 'skipped', why,
        f[4] == '1', f[5])
      announce(channel, json)
      archive(channel, json)
      if f[2] then redis.call('ZREM', kopen, f[2]) end
    end
  end
  redis.call('DEL', kheld)
end
-- Holds `fire` (its hash about to be written, state 'held') for the lock of job `job` under `mode`
-- ('b<n>': buffer n, 'r': replace), after `hold_check`. False when a buffer is full (the caller
-- records the fire skipped instead and nothing is written here). A replace ends the fires held
-- before it (`replace_held`) and asks the running holder (`stop`, from `hold_check`) to stop: a
-- stop request on its node's stop list, as CancelExecution leaves one. The job joins the held index
-- at its head (score 0) when it is not in it already.
local function hold(mode, kheld, kindex, kopen, job, fire, fprefix, stop, stops_prefix, stops_ttl, channel, now)
  if mode == 'r' then
    replace_held(kheld, kopen, job, fire, fprefix, channel, now)
    if stop then
      local key = stops_prefix .. stop[2]
      redis.call('RPUSH', key, cjson.encode({fire = stop[1], exec = stop[3],
        why = 'replaced by a newer fire, ' .. fire .. ' (concurrency replace)'}))
      redis.call('PEXPIRE', key, stops_ttl)
    end
  elseif redis.call('LLEN', kheld) >= (tonumber(string.sub(mode, 2)) or 1) then
    return false
  end
  redis.call('RPUSH', kheld, fire)
  redis.call('ZADD', kindex, 'NX', 0, job)
  return true
end
-- The job's lock is free (just let go by its fire, or expired): the oldest fire held for it takes
-- it and goes on as a claimed fire does: into node `node`'s durable queue `queue` when given (the
-- node that just finished the job's previous run, which can run it; its drain takes it at once),
-- `queued` and watched; otherwise `dispatching`, its dispatch deadline passed, for the master's
-- sweep to queue. Its start deadline is the misfire threshold from now: it waited on purpose.
-- Entries no longer held (cancelled meanwhile) are dropped. The caller has checked the types of
-- `kheld` and `kindex`; `queue` is a node's queue (`queue_list`), whose level list is checked here:
-- a clobbered one leaves the fire to the sweep. Returns the fire handed the lock, or nil.
local function promote(kheld, kindex, klock, job, fprefix, lock_ttl, misfire_ms, kinflight, watch_ms, queue, node)
  local now = time_ms()
  while true do
    local fire = redis.call('LPOP', kheld)
    if not fire then
      redis.call('ZREM', kindex, job)
      return nil
    end
    local kf = fprefix .. fire
    local f = redis.pcall('HMGET', kf, 'state', 'prio')
    if type(f) == 'table' and not f.err and f[1] == 'held' then
      redis.call('SET', klock, fire, 'PX', lock_ttl)
      if queue and wrong(queue_list(queue, f[2]), 'list') then queue = nil end
      if queue then
        redis.call('HSET', kf, 'state', 'queued', 'node', node, 'lock', '1', 'deadline_ms', now + tonumber(misfire_ms))
        push_queue(queue, f[2], fire)
        redis.call('ZADD', kinflight, now + tonumber(watch_ms), fire)
      else
        redis.call('HSET', kf, 'state', 'dispatching', 'lock', '1', 'deadline_ms', now + tonumber(misfire_ms))
        redis.call('ZADD', kinflight, now, fire)
      end
      if redis.call('LLEN', kheld) == 0 then redis.call('ZREM', kindex, job) end
      return fire
    end
  end
end
-- A fire of an exclusive job (`mode` '1', 'b<n>' or 'r') meets the job's lock `klock`, after
-- `hold_check` (its `stop`): 'LOCKED' (it took the lock), 'HELD' or 'SKIPPED' (section 3.20). A lock
-- free while fires are held for it (its holder's node died and it expired before the sweep handed
-- it on) is theirs: a replace fire replaces them and takes it; a buffer fire waits behind them (or
-- is skipped, the buffer full), and the oldest takes it now.
local function meet_lock(mode, klock, kheld, kindex, kopen, kinflight, job, fire, fprefix, stop, stops_prefix,
    stops_ttl, channel, lock_ttl, misfire_ms, now)
  local holds = mode ~= '1'
  local waiting = holds and redis.call('EXISTS', klock) == 0 and redis.call('LLEN', kheld) > 0
  if waiting and mode == 'r' then replace_held(kheld, kopen, job, fire, fprefix, channel, now) end
  if not (waiting and mode ~= 'r') and redis.call('SET', klock, fire, 'NX', 'PX', lock_ttl) then return 'LOCKED' end
  local met = 'SKIPPED'
  if holds and hold(mode, kheld, kindex, kopen, job, fire, fprefix, stop, stops_prefix, stops_ttl, channel, now) then
    met = 'HELD'
  end
  if waiting then promote(kheld, kindex, klock, job, fprefix, lock_ttl, misfire_ms, kinflight) end
  return met
end
-- A concurrency limit's `max`, from its definition in the limits hash `klimits` (section 3.21); nil
-- when it is not defined (deleted: it limits nothing), or not stored right.
local function limit_max(klimits, name)
  local def = redis.call('HGET', klimits, name)
  if not def then return nil end
  local ok, d = pcall(cjson.decode, def)
  return ok and type(d) == 'table' and tonumber(d.max) or nil
end
