-- Prepended to every script. A Redis command on a key of the wrong type (a key clobbered by hand,
-- or planted) fails the script where it stands, and Redis keeps whatever the script wrote before
-- that point: a fire could be left half-moved (its state written, its list push refused). So each
-- script checks the type of every key it will write before its first write, and writes nothing when
-- one is wrong.
-- wrong(key, type, key, type, ...): nil, or why the first wrong key is wrong.
local function wrong(...)
  local a = {...}
  for i = 1, #a, 2 do
    local got = redis.call('TYPE', a[i])['ok']
    if got ~= 'none' and got ~= a[i + 1] then
      return a[i] .. ' is a ' .. got .. ', not a ' .. a[i + 1]
    end
  end
  return nil
end
-- The whole call refused, nothing written: an error reply the caller maps to a corrupt-key error.
local function refuse(why)
  return redis.error_reply('BADKEY ' .. why)
end
