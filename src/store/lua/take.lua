-- A node takes the next entry of its own durable queue (section 3.22): from the first list, in the
-- caller's order of levels, that holds one, moved into its processing list in the same step (as
-- LMOVE: a lost reply leaves the entry there, where the node's rescan and adoption find it).
-- A level list of the wrong type is passed over as empty (and named in the reply): one clobbered
-- list must not stop the node from taking the others' entries.
-- KEYS[1] q:<self> (its normal list; `queue_lists` names the three)  KEYS[2] p:<self>
-- ARGV[1] the order: a permutation of 'h', 'n', 'l' (the caller's fairness between levels)
-- Returns {fire id or '', its level letter, the letters of the levels that hold entries after this
--   take (highest first), why a level list was passed over or ''}. With no entry taken, the
--   doorbell is deleted (whatever it held, even a clobbered value): the next push rings it again.
local bad = wrong(KEYS[2], 'list')
if bad then return refuse(bad) end
local levels = queue_lists(KEYS[1])
local by_letter = {h = levels[1], n = levels[2], l = levels[3]}
local len, clobbered = {}, ''
for i, c in ipairs({'h', 'n', 'l'}) do
  local n, why = read('list', 'LLEN', levels[i])
  if why then clobbered = why; n = 0 end
  len[c] = n
end
local function waiting()
  local w = ''
  for _, c in ipairs({'h', 'n', 'l'}) do
    if len[c] > 0 then w = w .. c end
  end
  return w
end
for i = 1, 3 do
  local c = string.sub(ARGV[1], i, i)
  if len[c] and len[c] > 0 then
    local fire = redis.call('LMOVE', by_letter[c], KEYS[2], 'RIGHT', 'LEFT')
    len[c] = len[c] - 1
    return {fire, c, waiting(), clobbered}
  end
end
redis.call('DEL', KEYS[1] .. ':bell')
return {'', '', '', clobbered}
