-- A node's lists as `node_fires` reads them: the three levels of its queue, then its processing list
-- (section 3.22). A queue level of the wrong type reads as empty, so one clobbered list hides only
-- itself from the sweep, the rescan and adoption; a processing list of the wrong type is an error,
-- as it always was (its owner's scripts refuse it too).
-- KEYS[1..3] the queue's levels, highest first  KEYS[4] the processing list
-- Returns {the entries of each key, as LRANGE 0 -1 gives them}.
local out = {}
for i = 1, 3 do
  out[i] = read('list', 'LRANGE', KEYS[i], 0, -1) or {}
end
out[4] = redis.call('LRANGE', KEYS[4], 0, -1)
return out
