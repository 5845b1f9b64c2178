-- Runs the per-item scripts above (`steps`, by name) for each item of a batch, in this one atomic
-- step: ARGV[1] is the number of items, then per item its step's name, its key count, its argument
-- count and its arguments; KEYS holds the items' keys one item after another. A step is given where
-- its keys and arguments start (its `KEYS[n]` and `ARGV[n]` read `KEYS[ko+n]`, `ARGV[ao+n]`). A batch may mix
-- steps (the starts and finishes of one moment go together). Returns one reply per item, in order
-- ({'ERROR', why} for an item whose script failed).
local out = {}
local ki, ai = 0, 2
for i = 1, tonumber(ARGV[1]) do
  local step, nk, na = steps[ARGV[ai]], tonumber(ARGV[ai + 1]), tonumber(ARGV[ai + 2])
  ai = ai + 3
  -- The step reads its keys and arguments in place (`KEYS[ko+n]`, `ARGV[ao+n]`: batcher.rs).
  local ko, ao = ki, ai - 1
  ki, ai = ki + nk, ai + na
  -- One fire's error (a key of the wrong type, say) is that fire's reply, not the whole batch's.
  if not step then
    out[i] = {'ERROR', 'no such step'}
  else
    local ok, r = pcall(step, ko, ao)
    if ok then
      keep_later()
      out[i] = r
    else
      drop_later()
      out[i] = {'ERROR', tostring(r)}
    end
  end
end
flush()  -- the items' writes to shared keys (`later`), and their announced changes as one message
return out
