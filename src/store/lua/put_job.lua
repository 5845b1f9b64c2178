-- Create or replace a job; set its watermark unless that would move it back.
-- KEYS[1] job hash  KEYS[2] jobs index  KEYS[3] due zset
-- ARGV[1] job id  ARGV[2] spec JSON  ARGV[3] paused '0'|'1'  ARGV[4] next_ms or '-'  ARGV[5] now ms
-- ARGV[6] 'put' (create or replace) | 'pause' (only if it exists; keeps the spec)
-- Returns {'BEHIND', last_ms} | {'GONE'} | {'OK', existed '0'|'1', last_ms or '', spec JSON}
--   | {'BADKEY', why} (a key of the wrong type; nothing written)
local bad = wrong(KEYS[1], 'hash', KEYS[2], 'zset', KEYS[3], 'zset')
if bad then return {'BADKEY', bad} end
local last = redis.call('HGET', KEYS[1], 'last_ms')
local existed = redis.call('EXISTS', KEYS[1])
if ARGV[6] == 'pause' and existed == 0 then return {'GONE'} end
if ARGV[4] ~= '-' and last and tonumber(ARGV[4]) <= tonumber(last) then
  return {'BEHIND', last}
end
if ARGV[6] == 'put' then
  redis.call('HSET', KEYS[1], 'spec', ARGV[2])
end
redis.call('HSET', KEYS[1], 'paused', ARGV[3], 'updated_ms', ARGV[5])
if ARGV[4] == '-' then
  redis.call('HDEL', KEYS[1], 'next_ms')
  redis.call('ZREM', KEYS[3], ARGV[1])
else
  redis.call('HSET', KEYS[1], 'next_ms', ARGV[4])
  redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1])
end
redis.call('ZADD', KEYS[2], 0, ARGV[1])
return {'OK', tostring(existed), last or '', redis.call('HGET', KEYS[1], 'spec')}
