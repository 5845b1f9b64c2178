-- Take the master lease if nobody holds it, raising the fencing epoch.
-- Epochs are decimal integers, handled here as strings, never as Lua numbers: Lua numbers are
-- doubles, so past 2^53 `e + 1` stops rising (two masters got the same epoch) and
-- string.format('%d') of a huge one wraps to -2^63 (no master could ever be elected again). Strings
-- of digits compare by length, then digit by digit; the +1 is Redis's INCR (a 64-bit integer).
-- KEYS[1] lease  KEYS[2] epoch counter
-- ARGV[1] node id  ARGV[2] incarnation  ARGV[3] lease ttl ms  ARGV[4] floor (highest epoch the
--   caller has seen in Redis)  ARGV[5] the largest epoch the protocol allows (2^53 - 1)
-- Returns {1, lease value, epoch, note} when taken (note: '' or why a stored counter was repaired),
--   {0, current value} when held by someone, {'ERR', why} when no valid epoch can be issued.
local held = redis.call('GET', KEYS[1])
if held then return {0, held} end
local function int(s)
  if type(s) ~= 'string' or #s > 18 then return nil end
  if s == '0' or string.match(s, '^[1-9]%d*$') then return s end
  return nil
end
local function gt(a, b) return #a > #b or (#a == #b and a > b) end
local max = ARGV[5]
local floor = int(ARGV[4])
if not floor or gt(floor, max) then return {'ERR', 'floor ' .. string.sub(ARGV[4], 1, 24) .. ' is not an epoch'} end
local raw = redis.call('GET', KEYS[2])
local stored, note = int(raw or '0'), ''
if not stored or gt(stored, max) then
  -- Only a forged or corrupted write puts a counter here (Redis's clock in ms is about 1.8e12):
  -- carry on from Redis's clock and the caller's floor, and say so.
  note = 'epoch counter held ' .. string.sub(tostring(raw), 1, 24) .. ', not an epoch; restarted from the clock'
  stored = '0'
end
-- Never below Redis's wall clock in ms, so a restart without data still moves the epoch forward.
local t = redis.call('TIME')
local e = t[1] .. string.format('%03d', math.floor(tonumber(t[2]) / 1000))
if gt(stored, e) then e = stored end
if gt(floor, e) then e = floor end
if not gt(max, e) then return {'ERR', 'the next epoch would pass ' .. max} end
redis.call('SET', KEYS[2], e)
redis.call('INCR', KEYS[2])
local es = redis.call('GET', KEYS[2])
local v = ARGV[1] .. ':' .. es .. ':' .. ARGV[2]
redis.call('SET', KEYS[1], v, 'PX', ARGV[3])
return {1, v, es, note}
