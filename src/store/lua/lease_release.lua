-- Give the lease up at once (graceful shutdown), only if the caller holds it.
-- KEYS[1] lease  ARGV[1] the caller's lease value
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1]); return 1
end
return 0
