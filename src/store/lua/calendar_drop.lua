-- A calendar's delete, last step (section 3.24): remove it only while it is still marked deleted,
-- so a put of it since the mark (which takes the mark away, and may have let a job name it) keeps it.
-- KEYS[1] the shard's calendars hash  KEYS[2] the calendars being deleted (set)  ARGV[1] name
-- Returns 1 (removed) or 0 (not marked: put again meanwhile, or gone).
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 0 then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('SREM', KEYS[2], ARGV[1])
return 1
