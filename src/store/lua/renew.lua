-- Extend a key's TTL only while it still holds the caller's value (compare-and-PEXPIRE): the
-- master's lease (value: the lease) and a forbid job's no-overlap lock (value: the owning fire id).
-- KEYS[1] lease or lock key  ARGV[1] the caller's value  ARGV[2] ttl ms
-- Returns 1 when extended, 0 when the key is gone or holds another value.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2]); return 1
end
return 0
