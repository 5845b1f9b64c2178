-- Register a node incarnation: SET hb NX, so a node id in use by another live process is refused.
-- KEYS[1] hb:<node>  KEYS[2] nodes set  KEYS[3] node record
-- ARGV[1] node id  ARGV[2] incarnation  ARGV[3] ttl ms  ARGV[4] node record JSON  ARGV[5] record ttl ms
-- ARGV[6] the incarnation this one replaces, or '': the same process's previous one, revoked in
--   another shard while its key here still lives (taken over here, not refused)
-- Returns 'OK' or {'ID_IN_USE', other incarnation}
local bad = wrong(KEYS[1], 'string', KEYS[2], 'set', KEYS[3], 'string')
if bad then return refuse(bad) end
if not redis.call('SET', KEYS[1], ARGV[2], 'NX', 'PX', ARGV[3]) then
  local other = redis.call('GET', KEYS[1])
  if other == ARGV[2] then
    redis.call('PEXPIRE', KEYS[1], ARGV[3])  -- registering again: same incarnation, fresh TTL
  elseif ARGV[6] ~= '' and other == ARGV[6] then
    redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])  -- this process's own previous incarnation
  else
    return {'ID_IN_USE', other or ''}
  end
end
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('SET', KEYS[3], ARGV[4], 'PX', ARGV[5])
return {'OK'}
