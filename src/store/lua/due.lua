-- Read the jobs whose watermark is due, with their definitions, in one round trip.
-- A job whose key is not a hash (clobbered by hand) is set aside: it leaves the due index, its key
-- is named in the dead-letter list with the reason, and the caller logs and alerts. One bad key must
-- never stop the other jobs firing (an HMGET on it would fail this whole script, every tick).
-- KEYS[1] due zset  KEYS[2] dead-letter list
-- ARGV[1] now ms  ARGV[2] limit  ARGV[3] job key prefix ('<tag>:job:')
-- Returns a flat list: id, spec, paused, next_ms, last_ms, updated_ms, fired, problem ('' or why the
--   job was set aside) per job.
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for _, id in ipairs(ids) do
  local k = ARGV[3] .. id
  local h, bad = read('hash', 'HMGET', k, 'spec', 'paused', 'next_ms', 'last_ms', 'updated_ms', 'fired')
  if bad then
    redis.call('ZREM', KEYS[1], id)
    if not wrong(KEYS[2], 'list') then
      redis.call('LPUSH', KEYS[2], cjson.encode({entry = k, node = '', reason = bad, at = ARGV[1]}))
    end
    out[#out+1] = id
    for i = 1, 6 do out[#out+1] = '' end
    out[#out+1] = bad
  else
    if h[1] then
      out[#out+1] = id
      for i = 1, 6 do out[#out+1] = h[i] or '' end
      out[#out+1] = ''
    else
      redis.call('ZREM', KEYS[1], id)  -- a due entry whose job is gone: clean it up
    end
  end
end
return out
