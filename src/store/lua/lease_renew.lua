-- Extend the lease only while the caller still holds it (compare-and-PEXPIRE).
-- KEYS[1] lease  ARGV[1] the caller's lease value  ARGV[2] ttl ms
-- Returns 1 when extended, 0 when the lease is gone or someone else's.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2]); return 1
end
return 0
