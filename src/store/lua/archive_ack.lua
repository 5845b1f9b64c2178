-- The archiver has stored the outbox's first ARGV[2] entries (in PostgreSQL, committed): drop them,
-- only while the caller still holds the archive lease, and only while the ARGV[2]-th entry is still
-- the record it read last (its id ARGV[3]; '' for an entry that did not decode, compared as the
-- same). Entries are pushed at the tail only, so then the first ARGV[2] are the ones it read; if
-- Redis lost writes since (a failover, an AOF tail), the list may have changed under it, and it
-- trims nothing: the next turn reads and stores again (the same rows).
-- KEYS[1] archive lease  KEYS[2] the outbox list
-- ARGV[1] the holder  ARGV[2] how many entries were stored  ARGV[3] the id of the last of them
-- Returns 1 when trimmed, 0 when not
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local at, bad = read('list', 'LINDEX', KEYS[2], tonumber(ARGV[2]) - 1)
if bad then return refuse(bad) end
if not at then return 0 end
local ok, d = pcall(cjson.decode, at)
local id = ''
if ok and type(d) == 'table' and type(d.id) == 'string' then id = d.id end
if id ~= ARGV[3] then return 0 end
redis.call('LTRIM', KEYS[2], ARGV[2], -1)
return 1
