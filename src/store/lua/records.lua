-- Read-only: execution records by id, as `RedisStore::records` reads them (section 4.2): a fire hash
-- is the record of its fire's current execution; a record kept apart (`<tag>:exec:<id>`, JSON) is
-- that of an earlier attempt, an evidence record, one written over the hash's (a reap's `lost`, a
-- start's `misfired`, a retry's while it runs), or one made before ids named their fire.
-- KEYS: per id, its record key and its fire's hash (for an id that names no fire, the record key
--   twice)  ARGV: the ids
-- Returns per id {record JSON or '', then the fire hash's FIELDS below ('' each when absent, all ''
--   when the key is not a hash)}. The record kept apart is not read when the hash holds the id's
--   outcome (`ended`): a retry's record written while it ran is older.
local FIELDS = {'state', 'job', 'sched', 'epoch', 'attempts', 'manual', 'node', 'next_exec', 'exec', 'started',
  'ended', 'error', 'output', 'stderr', 'jitter'}
local out = {}
for i = 1, #ARGV do
  local ke, kf = KEYS[2*i-1], KEYS[2*i]
  local row = {''}
  if kf ~= ke then
    local f = redis.pcall('HMGET', kf, unpack(FIELDS))
    if type(f) ~= 'table' or f.err then f = {} end
    for k = 1, #FIELDS do row[k+1] = f[k] or '' end
  end
  local cur = row[9] ~= '' and row[9] or row[10]
  if not (cur == ARGV[i] and row[12] ~= '' and row[2] ~= '') then
    local j = redis.pcall('GET', ke)
    if type(j) == 'string' then row[1] = j end
  end
  out[i] = row
end
return out
