-- Count one allocation in its step summary (budget histogram, difficulty bands).
--
-- KEYS[1] cfg, KEYS[2] meta, KEYS[3] steps index, KEYS[4] step summary hash
-- ARGV: step, then field/increment pairs (increments are non-negative integers).

local function fail(message)
  error({err = 'KRL_BAD_ARGS ' .. message})
end

local step = tonumber(ARGV[1])
if step == nil or step ~= math.floor(step) or step < 0 or step > 2147483647 then
  fail('step must be an integer in [0, 2^31 - 1]')
end
if #ARGV % 2 ~= 1 then fail('fields and increments must come in pairs') end
for i = 3, #ARGV, 2 do
  local x = tonumber(ARGV[i])
  if x == nil or x ~= math.floor(x) or x < 0 or x > 2^53 then
    fail('increments must be non-negative integers')
  end
end
if redis.call('EXISTS', KEYS[1]) == 0 then
  return redis.error_reply('KRL_RUN_NOT_FOUND')
end
redis.call('HINCRBY', KEYS[2], 'allocations', 1)
redis.call('ZADD', KEYS[3], ARGV[1], ARGV[1])
for i = 2, #ARGV, 2 do
  redis.call('HINCRBY', KEYS[4], ARGV[i], ARGV[i + 1])
end
return 1
