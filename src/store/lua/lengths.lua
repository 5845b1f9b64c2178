-- How many entries each given list holds, for choosing a busier node to help (`queue_lengths`): a
-- list of the wrong type counts 0, so one clobbered list hides only itself (section 3.22).
-- KEYS: the lists. Returns one length per key, in order.
local out = {}
for i, k in ipairs(KEYS) do
  local n = read('list', 'LLEN', k)
  out[i] = n or 0
end
return out
