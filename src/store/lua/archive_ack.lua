-- The archiver has stored the outbox's first ARGV[2] entries (in PostgreSQL, committed): drop them,
-- only while the caller still holds the archive lease. Entries are pushed at the tail only, so the
-- first ARGV[2] are the ones it read. A holder whose lease passed to another node trims nothing;
-- the new holder stores those entries again (an upsert: the same rows).
-- KEYS[1] archive lease  KEYS[2] the outbox list
-- ARGV[1] the holder  ARGV[2] how many entries were stored
-- Returns 1 when trimmed, 0 when the caller no longer holds the lease
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local _, bad = read('list', 'LTRIM', KEYS[2], ARGV[2], -1)
if bad then return refuse(bad) end
return 1
