-- A node takes a fire that is being dispatched to it (SubmitTask(s), the master's own fires, manual
-- fires): compare-and-set dispatching -> accepted, and push it into the node's processing list before
-- saying yes, so an accepted fire is durable. Races with `enqueue`; exactly one of the two wins.
-- Batched (see batcher.rs) with the other accepts, starts and finishes of the moment: the fires of
-- one call share hb:<self> and the epoch counter, each read once per call, and the type checks of
-- p:<self> and the watch set.
-- KEYS[1] epoch counter  KEYS[2] p:<self>  KEYS[3] inflight zset  KEYS[4] hb:<self>  KEYS[5] fire hash
-- ARGV[1] sender's epoch, or '-' (a node's own manual fire: no master made it, no epoch to check)
-- ARGV[2] self  ARGV[3] incarnation  ARGV[4] watch ms (when the sweep looks at an accepted fire again:
--   see enqueue.lua)  ARGV[5] fire id
-- Returns one of OK | ALREADY | TAKEN | STALE_EPOCH | NOT_LIVE | UNKNOWN | BADKEY (the fire's key is
--   not a hash; nothing written), or {'BADKEY', why} when p:<self> or the watch set has the wrong
--   type (nothing written)
local bad = wrong(KEYS[2], 'list', KEYS[3], 'zset')
if bad then return {'BADKEY', bad} end
if get_once(KEYS[4]) ~= ARGV[3] then return 'NOT_LIVE' end
if ARGV[1] ~= '-' and get_once(KEYS[1]) ~= ARGV[1] then return 'STALE_EPOCH' end
local f
f, bad = read('hash', 'HMGET', KEYS[5], 'state', 'node')
if bad then return 'BADKEY' end
if not f[1] then return 'UNKNOWN' end
if f[1] == 'accepted' or f[1] == 'running' then
  if f[2] == ARGV[2] then return 'ALREADY' end
  return 'TAKEN'
end
if f[1] ~= 'dispatching' then return 'TAKEN' end
redis.call('HSET', KEYS[5], 'state', 'accepted', 'node', ARGV[2], 'inc', ARGV[3])
later('LPUSH', KEYS[2], ARGV[5])
later('ZADD', KEYS[3], time_ms() + tonumber(ARGV[4]), ARGV[5])
return 'OK'
