-- A node takes fires that are being dispatched to it (from SubmitTask(s), or the master for itself):
-- compare-and-set dispatching -> accepted, and push each into the node's processing list before
-- saying yes, so an accepted fire is durable. Races with `enqueue`; exactly one of the two wins.
-- Several fires in one call (a master's batch): each is decided on its own.
-- KEYS[1] epoch counter  KEYS[2] p:<self>  KEYS[3] inflight zset  KEYS[4] hb:<self>
--   then one fire hash per fire
-- ARGV[1] sender's epoch  ARGV[2] self  ARGV[3] incarnation  ARGV[4] watch ms (when the sweep looks at
--   an accepted fire again: see enqueue.lua)  then one fire id per fire
-- Returns one of OK | ALREADY | TAKEN | STALE_EPOCH | NOT_LIVE | UNKNOWN | BADKEY per fire (BADKEY: the
--   fire's key is not a hash; nothing written for it), or a BADKEY error when a list is not a list
--   (nothing written at all)
local bad = wrong(KEYS[2], 'list', KEYS[3], 'zset')
if bad then return refuse(bad) end
local out = {}
local n = #KEYS - 4
local whole = nil
local watch_at = nil
if redis.call('GET', KEYS[4]) ~= ARGV[3] then whole = 'NOT_LIVE'
elseif redis.call('GET', KEYS[1]) ~= ARGV[1] then whole = 'STALE_EPOCH' end
for i = 1, n do
  local kf, fire = KEYS[4 + i], ARGV[4 + i]
  local st = whole
  if not st then
    local f, bad = read('hash', 'HMGET', kf, 'state', 'node')
    if bad then st = 'BADKEY'; f = {} end
    if st then
      -- set aside above
    elseif not f[1] then st = 'UNKNOWN'
    elseif f[1] == 'accepted' or f[1] == 'running' then
      if f[2] == ARGV[2] then st = 'ALREADY' else st = 'TAKEN' end
    elseif f[1] ~= 'dispatching' then st = 'TAKEN'
    else
      redis.call('HSET', kf, 'state', 'accepted', 'node', ARGV[2], 'inc', ARGV[3])
      redis.call('LPUSH', KEYS[2], fire)
      if not watch_at then watch_at = time_ms() + tonumber(ARGV[4]) end
      redis.call('ZADD', KEYS[3], watch_at, fire)
      st = 'OK'
    end
  end
  out[i] = st
end
return out
