-- Extend a no-overlap lock only while its owner still holds it.
-- KEYS[1] lock key  ARGV[1] owner (fire id)  ARGV[2] ttl ms
-- Returns 1 when extended, 0 when the lock is gone or owned by another fire.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2]); return 1
end
return 0
