-- An idle node takes over the oldest entry of a busier live node's queue: the same compare-and-set
-- hand-off as everywhere else (queued on the victim -> accepted by the thief), so an entry is taken
-- once even when several idle nodes race for it.
-- A failover job's fire is not taken by a node off its list (`JobSpec::may_run_on`): that node
-- would only hand it on (and could take it again); it waits for a node that may run it.
-- It takes from the victim's highest waiting level (section 3.22): a thief helps with what is most
-- urgent; the victim's own fairness between levels is its drain's.
-- KEYS[1] q:<victim>  KEYS[2] p:<self>  KEYS[3] hb:<self>  KEYS[4] fire key prefix ('<tag>:fire:')
-- ARGV[1] victim  ARGV[2] self  ARGV[3] incarnation  ARGV[4] job hash key prefix
-- Returns the fire id taken, or false.
if redis.call('GET', KEYS[3]) ~= ARGV[3] then return false end
local bad = wrong(KEYS[2], 'list')
if bad then return refuse(bad) end
-- A level list of the wrong type is passed over (as take.lua does): the others can still be helped.
local list, fire = nil, nil
for _, l in ipairs(queue_lists(KEYS[1])) do
  fire = read('list', 'LINDEX', l, -1)
  if fire then list = l; break end
end
if not fire then return false end
local fk = KEYS[4] .. fire
bad = wrong(fk, 'hash')
if bad then return refuse(bad) end
local f = redis.call('HMGET', fk, 'state', 'node', 'job')
if f[1] ~= 'queued' or f[2] ~= ARGV[1] then return false end  -- the victim's start will clean it up
-- A plain find first: only a spec that may say failover is decoded (a job hash of the wrong type
-- reads as no spec: the start, which reads it too, sets the fire aside).
local spec = f[3] and read('hash', 'HGET', ARGV[4] .. f[3], 'spec')
if type(spec) == 'string' and string.find(spec, '"routing":"failover"', 1, true) then
  local ok, d = pcall(cjson.decode, spec)
  if ok and type(d) == 'table' and d.routing == 'failover' and type(d.failover_nodes) == 'table' then
    local listed = false
    for _, n in ipairs(d.failover_nodes) do
      if n == ARGV[2] then listed = true end
    end
    if not listed then return false end
  end
end
redis.call('LREM', list, -1, fire)
redis.call('HSET', fk, 'state', 'accepted', 'node', ARGV[2], 'inc', ARGV[3])
redis.call('LPUSH', KEYS[2], fire)
return fire
