-- Read-only: for each fire hash, the fields that say which execution it started, when, where and
-- as which attempt. `start.lua` does not rewrite the `pending` record the claim (or trigger) made
-- for a fire's first attempt: the fire hash says it is running, and the store's reads of execution
-- records show it so (`RedisStore::with_started`).
-- KEYS: fire hashes. Returns per fire {exec, started, node, attempts, epoch, state} ('' for a field
-- that is not there, and all '' for a key that is not a hash).
local out = {}
for i = 1, #KEYS do
  local f = redis.pcall('HMGET', KEYS[i], 'exec', 'started', 'node', 'attempts', 'epoch', 'state')
  if type(f) ~= 'table' or f.err then f = {} end
  out[i] = {f[1] or '', f[2] or '', f[3] or '', f[4] or '', f[5] or '', f[6] or ''}
end
return out
