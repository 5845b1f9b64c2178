-- Create or replace a job (or pause/resume it); set its watermark unless that would move it back.
-- KEYS[1] job hash  KEYS[2] jobs index  KEYS[3] due zset  KEYS[4] resume zset (paused jobs by the
--   `until` of their pause)  KEYS[5] chain index (`after_previous` jobs waiting for a fire's end)
-- KEYS[6] completed index (a job left with no next fire, unpaused and not waiting: when; expire.lua)
-- ARGV[1] job id  ARGV[2] spec JSON  ARGV[3] paused '0'|'1', or '-' to keep the stored state (a new
--   job: not paused)  ARGV[4] next_ms or '-' (used only when the job ends up unpaused)  ARGV[5] now ms
-- ARGV[6] 'put' (create or replace) | 'pause' (only if it exists; keeps the spec)
-- ARGV[7] writer 'api'|'file' (put)  ARGV[8] the jobs file's spec JSON being applied, or '-' to keep
--   the stored one  ARGV[9] that file's paused '' (not said) | '0' | '1'
-- ARGV[10] expected revision, or '-' for any ('0': only if the job does not exist)
-- ARGV[11] a pause note (JSON: note, by, at_ms, until_ms) to keep with a pause, or '' (a pause
--   keeps the note it has). A job that ends up unpaused loses its note and its resume entry.
-- KEYS[7] the shard's calendars hash  KEYS[8] the calendars being deleted (set)
-- ARGV[12] (put) the names of the calendars the job names, space-separated ('' for none): each must
--   be in KEYS[7] and not in KEYS[8] (section 3.24)
-- The revision `rev` rises with every put (not with pause): the compare-and-set token of nodes
-- applying a jobs file at once. A job stored without one (written before it existed) is at 1.
-- Returns {'BEHIND', last_ms} | {'GONE'} | {'CONFLICT'} | {'BADKEY', why} (a key of the wrong type)
--   | {'OK', existed '0'|'1', last_ms or '', spec JSON, paused '0'|'1', rev, writer, file spec or '',
--      file paused, the watermark written ('' for none), fired, pause note or '', fail streak,
--      the instant of the fire it waits on (`after_previous`) or ''}
--   | {'NOCAL', name, 'missing'|'deleted'} (a calendar it names cannot be named)
-- Nothing is written unless the answer is OK (but GONE takes a deleted job's resume entry out).
local bad = wrong(KEYS[1], 'hash', KEYS[2], 'zset', KEYS[3], 'zset', KEYS[4], 'zset', KEYS[5], 'zset', KEYS[6], 'zset',
  KEYS[7], 'hash', KEYS[8], 'set')
if bad then return {'BADKEY', bad} end
if ARGV[6] == 'put' then
  for name in string.gmatch(ARGV[12] or '', '%S+') do
    if redis.call('HEXISTS', KEYS[7], name) == 0 then return {'NOCAL', name, 'missing'} end
    if redis.call('SISMEMBER', KEYS[8], name) == 1 then return {'NOCAL', name, 'deleted'} end
  end
end
local last = redis.call('HGET', KEYS[1], 'last_ms')
local existed = redis.call('EXISTS', KEYS[1])
if ARGV[6] == 'pause' and existed == 0 then
  redis.call('ZREM', KEYS[4], ARGV[1])
  return {'GONE'}
end
local rev = 0
if existed == 1 then rev = math.max(1, tonumber(redis.call('HGET', KEYS[1], 'rev') or '1') or 1) end
if ARGV[10] ~= '-' and tonumber(ARGV[10]) ~= rev then return {'CONFLICT'} end
local paused = ARGV[3]
if paused == '-' then
  paused = (redis.call('HGET', KEYS[1], 'paused') == '1') and '1' or '0'
end
local next_ms = ARGV[4]
if paused == '1' then next_ms = '-' end
-- A job that made its max_fires stays completed (no watermark), whatever the put or resume says.
local ok, sp = pcall(cjson.decode, (ARGV[6] == 'put' and ARGV[2]) or redis.call('HGET', KEYS[1], 'spec') or '{}')
local max_fires = ok and type(sp) == 'table' and tonumber(sp.max_fires) or 0
if max_fires > 0 and (tonumber(redis.call('HGET', KEYS[1], 'fired') or '0') or 0) >= max_fires then next_ms = '-' end
-- after_previous: a job waiting for its fire's end keeps waiting, whatever the put or resume says
-- (that end sets its next fire: chain.lua); a put that makes it another kind ends the wait.
local chained = ok and type(sp) == 'table' and (tonumber(sp.after_previous_ms) or 0) > 0
local unchain, waiting = false, false
if redis.call('HGET', KEYS[1], 'chain') then
  if chained then next_ms, waiting = '-', true else unchain = true end
elseif chained and next_ms ~= '-' then
  -- Between two fires, a put (or a resume of a job that is not paused) keeps the next fire the
  -- last end set, so no put brings a fire sooner than the delay after that end (a changed delay
  -- counts from the next end on).
  local cur = redis.call('HMGET', KEYS[1], 'next_ms', 'paused', 'spec')
  local was, old = pcall(cjson.decode, cur[3] or '{}')
  if cur[1] and cur[2] ~= '1' and was and type(old) == 'table' and (tonumber(old.after_previous_ms) or 0) > 0 then
    next_ms = cur[1]
  end
end
if next_ms ~= '-' and last and tonumber(next_ms) <= tonumber(last) then
  return {'BEHIND', last}
end
if unchain then
  redis.call('HDEL', KEYS[1], 'chain')
  redis.call('ZREM', KEYS[5], ARGV[1])
end
if ARGV[6] == 'put' then
  rev = rev + 1
  redis.call('HSET', KEYS[1], 'spec', ARGV[2], 'writer', ARGV[7], 'rev', rev)
  if ARGV[8] ~= '-' then
    redis.call('HSET', KEYS[1], 'file_spec', ARGV[8], 'file_paused', ARGV[9])
  end
end
redis.call('HSET', KEYS[1], 'paused', paused, 'updated_ms', ARGV[5])
if paused == '0' then
  -- A resumed job counts its failed fires afresh (pause_after_failures).
  redis.call('HDEL', KEYS[1], 'pause', 'fail_streak')
  redis.call('ZREM', KEYS[4], ARGV[1])
elseif ARGV[6] == 'put' and ARGV[3] == '1' then
  -- A put that says paused (PutJob's paused, a jobs file's) is a pause of its own: no note, no
  -- until (an earlier PauseJob's until would resume it).
  redis.call('HDEL', KEYS[1], 'pause')
  redis.call('ZREM', KEYS[4], ARGV[1])
elseif ARGV[11] ~= '' then
  redis.call('HSET', KEYS[1], 'pause', ARGV[11])
  local ok, note = pcall(cjson.decode, ARGV[11])
  local until_ms = ok and type(note) == 'table' and tonumber(note.until_ms)
  if until_ms then redis.call('ZADD', KEYS[4], until_ms, ARGV[1]) else redis.call('ZREM', KEYS[4], ARGV[1]) end
end
if next_ms == '-' and paused == '0' and not waiting then
  -- Completed (nothing left to fire): a one-shot is deleted after the retention (expire.lua).
  if redis.call('ZSCORE', KEYS[6], ARGV[1]) == false then redis.call('ZADD', KEYS[6], ARGV[5], ARGV[1]) end
else
  redis.call('ZREM', KEYS[6], ARGV[1])
end
if next_ms == '-' then
  redis.call('HDEL', KEYS[1], 'next_ms')
  redis.call('ZREM', KEYS[3], ARGV[1])
else
  redis.call('HSET', KEYS[1], 'next_ms', next_ms)
  redis.call('ZADD', KEYS[3], next_ms, ARGV[1])
end
redis.call('ZADD', KEYS[2], 0, ARGV[1])
local f = redis.call('HMGET', KEYS[1], 'spec', 'writer', 'file_spec', 'file_paused', 'fired', 'pause', 'fail_streak',
  'chain')
if next_ms == '-' then next_ms = '' end
return {'OK', tostring(existed), last or '', f[1] or '', paused, tostring(rev), f[2] or 'api', f[3] or '', f[4] or '',
  next_ms, f[5] or '0', f[6] or '', f[7] or '0', f[8] or ''}
