-- One-shot jobs (`at`) completed longer ago than the execution retention: deleted as DeleteJob
-- deletes them, unless kept (`keep_completed`) or no longer completed (put again with an instant
-- still to come, paused): those only leave the index. Called by every node's prune loop; atomic and
-- checking, so nodes calling at once delete a job once.
-- KEYS[1] completed index (job id -> when it completed)  KEYS[2] jobs index  KEYS[3] due zset
-- KEYS[4] resume zset  KEYS[5] chain index
-- ARGV[1] job key prefix ('<tag>:job:')  ARGV[2] cutoff ms (completed at or before it)  ARGV[3] limit
-- Returns the ids deleted, or a BADKEY error when a shared key has the wrong type (nothing written).
local bad = wrong(KEYS[1], 'zset', KEYS[2], 'zset', KEYS[3], 'zset', KEYS[4], 'zset', KEYS[5], 'zset')
if bad then return refuse(bad) end
local out = {}
for _, job in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[2], 'LIMIT', 0, ARGV[3])) do
  local kj = ARGV[1] .. job
  local j = read('hash', 'HMGET', kj, 'spec', 'paused', 'next_ms', 'chain')
  local ok, sp = false, nil
  if j and j[1] then ok, sp = pcall(cjson.decode, j[1]) end
  if not ok or type(sp) ~= 'table' then sp = {} end
  local one_shot = type(sp.at_ms) == 'table' and #sp.at_ms > 0
  if one_shot and sp.keep_completed ~= true and j[2] ~= '1' and not j[3] and not j[4] then
    redis.call('DEL', kj)
    redis.call('ZREM', KEYS[2], job)
    redis.call('ZREM', KEYS[3], job)
    redis.call('ZREM', KEYS[4], job)
    redis.call('ZREM', KEYS[5], job)
    out[#out+1] = job
  end
  redis.call('ZREM', KEYS[1], job)
end
return out
