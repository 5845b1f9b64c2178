-- Scenario `floor` (benches/suite.rs): a prototype of the leanest fire the one-record model allows,
-- run with rota's own prelude and batch loop, to measure what such a fire would cost Redis. Not
-- used by rota. The claim puts a master's own fire straight into its hands: the fire hash is made
-- `accepted` by the master (and is the execution's record from then on: no separate record, no
-- cluster-wide index), with the watermark's move, in one item.
-- KEYS (item): lease, due zset, watch zset, p:<self> (a zset here: a finish removes by member),
--   hb:<self>, job hash, fire hash
-- ARGV (item): lease value, self, incarnation, retention ms, job id, sched ms, next ms, watch ms,
--   epoch, fire id
if get_once(KEYS[1]) ~= ARGV[1] then return 'FENCED' end
if get_once(KEYS[5]) ~= ARGV[3] then return 'NOT_LIVE' end
local bad = wrong(KEYS[2], 'zset', KEYS[3], 'zset', KEYS[4], 'zset')
if bad then return {'BADKEY', bad} end
local j, badjob = read('hash', 'HMGET', KEYS[6], 'next_ms', 'paused', 'updated_ms')
if badjob then return 'BADKEY' end
if not j[3] then return 'GONE' end
if j[2] == '1' then return 'PAUSED' end
if j[1] ~= ARGV[6] then return 'STALE' end
redis.call('HSET', KEYS[6], 'last_ms', ARGV[6], 'next_ms', ARGV[7])
later('ZADD', KEYS[2], ARGV[7], ARGV[5])
if redis.call('EXISTS', KEYS[7]) == 1 then return 'DUP' end
local now = time_ms()
redis.call('HSET', KEYS[7], 'state', 'accepted', 'job', ARGV[5], 'sched', ARGV[6], 'epoch', ARGV[9],
  'claimed', now, 'deadline', now + 60000, 'node', ARGV[2], 'inc', ARGV[3], 'attempt', 1)
redis.call('PEXPIRE', KEYS[7], ARGV[4])
later('ZADD', KEYS[4], now, ARGV[10])
later('ZADD', KEYS[3], now + tonumber(ARGV[8]), ARGV[10])
return 'CLAIMED'
