-- Keep a step's plan under its key unless one is kept already: the first call wins,
-- every later call (another rank, a retry, a replay) gets the kept plan back.
--
-- KEYS[1] cfg, KEYS[2] plans hash (plan key -> encoded plan), KEYS[3] plan times
-- (sorted set: plan key scored by the unix second it was kept)
-- ARGV: plan key, encoded plan, retention seconds
-- Returns {1} when this call kept ARGV[2], {0, kept plan} when a plan was kept before.
-- Plans older than the retention are dropped here, at most EXPIRE_BATCH per call.

local EXPIRE_BATCH = 256

local retention = tonumber(ARGV[3])
if retention == nil or retention ~= math.floor(retention) or retention < 1 then
  error({err = 'KRL_BAD_ARGS retention must be a positive integer'})
end
if redis.call('EXISTS', KEYS[1]) == 0 then
  return redis.error_reply('KRL_RUN_NOT_FOUND')
end
local now = tonumber(redis.call('TIME')[1])
local expired = redis.call(
  'ZRANGEBYSCORE', KEYS[3], '-inf', '(' .. (now - retention), 'LIMIT', 0, EXPIRE_BATCH
)
if #expired > 0 then
  redis.call('HDEL', KEYS[2], unpack(expired))
  redis.call('ZREM', KEYS[3], unpack(expired))
end
local kept = redis.call('HGET', KEYS[2], ARGV[1])
if kept then
  return {0, kept}
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[3], now, ARGV[1])
return {1}
