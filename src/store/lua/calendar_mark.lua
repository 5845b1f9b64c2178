-- A calendar's delete, first step (section 3.24): mark it being deleted, only if this shard has it,
-- so no job is put naming it (put_job.lua) while the delete looks for jobs that do.
-- KEYS[1] the shard's calendars hash  KEYS[2] the calendars being deleted (set)  ARGV[1] name
-- Returns 1 (marked) or 0 (no such calendar here).
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('SADD', KEYS[2], ARGV[1])
return 1
