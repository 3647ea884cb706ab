-- Remove every key of one run, atomically, and no other key.
--
-- KEYS: cfg, meta, prompts, steps index, report ids; ARGV[1] summary key prefix.
-- Step summaries are found through the steps index, never by pattern, so a run whose
-- escaped id is a prefix of another run's cannot touch the other's keys.
-- Returns the number of keys removed.

local removed = 0
local steps = redis.call('ZRANGE', KEYS[4], 0, -1)
for _, step in ipairs(steps) do
  removed = removed + redis.call('UNLINK', ARGV[1] .. step)
end
for i = 1, #KEYS do
  removed = removed + redis.call('UNLINK', KEYS[i])
end
return removed
