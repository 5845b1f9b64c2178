
-- Runs `one` (the per-item script above) for each item of a batch, in this one atomic step: KEYS
-- and ARGV hold the items' keys and arguments one item after another, ARGV[1] and ARGV[2] saying
-- how many of each an item has. Returns one reply per item, in order ({'ERROR', why} for an item
-- whose script failed).
local nk, na = tonumber(ARGV[1]), tonumber(ARGV[2])
local out = {}
for i = 0, #KEYS / nk - 1 do
  local k, a = {}, {}
  for j = 1, nk do k[j] = KEYS[i * nk + j] end
  for j = 1, na do a[j] = ARGV[2 + i * na + j] end
  -- One fire's error (a key of the wrong type, say) is that fire's reply, not the whole batch's.
  local ok, r = pcall(one, k, a)
  if ok then out[i + 1] = r else out[i + 1] = {'ERROR', tostring(r)} end
end
flush()  -- the items' announced changes, as one message
return out
