-- A node about to begin a handler of a fire it started, without its local proof of ownership (its
-- last heartbeat went through more than a node TTL ago: a pause, a store outage): extends its
-- heartbeat key only while the key still holds this incarnation. Never takes an expired or replaced
-- key back (that is beat.lua's, with the reap's burial check): a key that holds the incarnation
-- means no one has judged it dead, and after this no one can for a node TTL.
-- KEYS[1] hb:<node>  ARGV[1] incarnation  ARGV[2] ttl ms
-- Returns 1 (extended) or 0 (not this incarnation's any more, or expired)
local cur, bad = read('string', 'GET', KEYS[1])
if bad then return refuse(bad) end
if cur ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
