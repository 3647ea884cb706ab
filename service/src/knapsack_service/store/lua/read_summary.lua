-- Read a run's per-step summaries, ascending step, atomically.
--
-- KEYS[1] cfg, KEYS[2] steps index; ARGV[1] summary key prefix ('krl:{run}:s:'),
-- ARGV[2] how many of the latest steps (0 = all).
-- Summary keys are built here from the run's own prefix, so they share the run's hash
-- tag (same cluster slot as the declared keys).
-- Returns {step, {field, value, ...}, step, {...}, ...}.

if redis.call('EXISTS', KEYS[1]) == 0 then
  return redis.error_reply('KRL_RUN_NOT_FOUND')
end
local last = tonumber(ARGV[2])
local steps
if last and last > 0 then
  steps = redis.call('ZRANGE', KEYS[2], -last, -1)
else
  steps = redis.call('ZRANGE', KEYS[2], 0, -1)
end
local out = {}
for _, step in ipairs(steps) do
  out[#out + 1] = step
  out[#out + 1] = redis.call('HGETALL', ARGV[1] .. step)
end
return out
