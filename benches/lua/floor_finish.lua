-- Scenario `floor` (see floor_claim.lua): the finish writes the outcome into the fire hash, which is
-- the execution's record, and enters it in its job's index (the one index, written once), then
-- takes it off the node's list and the watch set (one command a call each), and announces it.
-- KEYS (item): p:<self> zset, watch zset, fire hash, job's index
-- ARGV (item): self, incarnation, fire id, state, end ms, change channel
local bad = wrong(KEYS[1], 'zset', KEYS[2], 'zset')
if bad then return {'BADKEY', bad} end
local f, badfire = read('hash', 'HMGET', KEYS[3], 'state', 'node', 'inc', 'sched')
if badfire then return 'BADKEY' end
if f[1] ~= 'accepted' or f[2] ~= ARGV[1] or f[3] ~= ARGV[2] then return 'NOT_MINE' end
local _, badindex = read('zset', 'ZADD', KEYS[4], f[4], ARGV[3])
if badindex then return 'BADKEY' end
redis.call('HSET', KEYS[3], 'state', ARGV[4], 'ended', ARGV[5])
later('ZREM', KEYS[1], ARGV[3])
later('ZREM', KEYS[2], ARGV[3])
announce(ARGV[6], '{"fire":"' .. ARGV[3] .. '","state":"' .. ARGV[4] .. '","end_ms":' .. ARGV[5] .. '}')
return 'OK'
