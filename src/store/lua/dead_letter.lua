-- Set a queue entry aside: remove it from the node's processing list and keep it, with the reason,
-- in the dead-letter list (never dropped). Used for entries that cannot be a fire id at all.
-- KEYS[1] p:<self>  KEYS[2] dlq
-- ARGV[1] entry  ARGV[2] self  ARGV[3] reason  ARGV[4] now ms
local bad = wrong(KEYS[1], 'list', KEYS[2], 'list')
if bad then return refuse(bad) end
redis.call('LREM', KEYS[1], 1, ARGV[1])
redis.call('LPUSH', KEYS[2], cjson.encode({entry = ARGV[1], node = ARGV[2], reason = ARGV[3], at = ARGV[4]}))
return 1
