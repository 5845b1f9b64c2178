-- Take the master lease if nobody holds it, raising the fencing epoch.
-- KEYS[1] lease  KEYS[2] epoch counter
-- ARGV[1] node id  ARGV[2] incarnation  ARGV[3] lease ttl ms  ARGV[4] floor (highest epoch the caller has seen)
-- Returns {1, lease value, epoch} when taken, {0, current value} when held by someone.
local held = redis.call('GET', KEYS[1])
if held then return {0, held} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local stored = tonumber(redis.call('GET', KEYS[2]) or '0')
-- Monotonic even if Redis lost the counter: never below what any caller has seen, nor below Redis
-- wall time in ms, so a restart without data still moves the epoch forward.
local e = math.max(stored, tonumber(ARGV[4]), now) + 1
local es = string.format('%d', e)
redis.call('SET', KEYS[2], es)
local v = ARGV[1] .. ':' .. es .. ':' .. ARGV[2]
redis.call('SET', KEYS[1], v, 'PX', ARGV[3])
return {1, v, es}
