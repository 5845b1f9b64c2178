-- The archiver's turn: take or keep the archive lease (one archiving node at a time, so that only
-- it trims the outbox), and keep archiving on: `archive:on` tells every script writing a final
-- record to put a copy of it on the outbox (prelude `archive`). Both last the retention: when no node
-- archives for that long, the scripts stop pushing and the outbox expires with the records it named.
-- KEYS[1] archive lease  KEYS[2] archive:on  KEYS[3] the outbox list
-- ARGV[1] the holder (node:incarnation)  ARGV[2] lease ttl ms  ARGV[3] retention ms
-- Returns 1 when the caller holds the lease, 0 when another node does
local bad = wrong(KEYS[1], 'string', KEYS[2], 'string', KEYS[3], 'list')
if bad then return refuse(bad) end
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('SET', KEYS[2], '1', 'PX', ARGV[3])
redis.call('PEXPIRE', KEYS[3], ARGV[3])
return 1
