-- Apply one outcome report to a run: all or nothing, once per report id.
-- The arithmetic mirrors knapsack_service/store/records.py operation by operation
-- (Lua numbers are IEEE doubles; struct 'f' is C's (float) cast), so the records
-- written here are byte-identical to the Python reference.
--
-- KEYS[1] cfg          run settings (string); absent = run not found
-- KEYS[2] meta         run counters and the rates' moments (hash)
-- KEYS[3] prompts      prompt id -> packed 60-byte record (hash)
-- KEYS[4] steps        index of step summaries (sorted set, score = step)
-- KEYS[5] report ids   report id -> unix seconds of first application (sorted set)
-- KEYS[6] acks         report id -> '<digest> <accepted> <step>' (hash, same members)
-- KEYS[7] step summary counters of ARGV[2]'s step (hash)
-- ARGV: report_id, step, decay, retention_seconds, group_count, digest,
--       max_prompts ('' = no limit),
--       then per group: prompt_id, successes, trials, mean_tokens ('' = none),
--       zero_variance ('0' | '1')
-- Returns {accepted, duplicate (0|1), step totals...}; a duplicate returns the
-- accepted count of its first application and no totals.
-- Refusals (nothing written): KRL_CONFLICT (same id, other digest), KRL_EXPIRED <step>
-- (the report's step is closed), KRL_OVERFLOW <group> (1-based), KRL_PROMPT_LIMIT <new>.

local RECORD = '<I6I6I6I6fffi4i4I4I4ff'
local RING_BITS = 48
local MAX_COUNT = 2147483647
local MAX_COUNTER = 2^48 - 1
local MAX_VISIT_TRIALS = 2^32 - 1
local HEAD = 7
local PER_GROUP = 5
local CHUNK = 2000
-- Expired report ids forgotten per call: bounds the work one report can inherit.
local PRUNE = 1000

-- Lua's tostring keeps 14 digits; counters may need 15, so format integers explicitly.
local function int(x)
  return string.format('%d', x)
end

local function fail(message)
  error({err = 'KRL_BAD_ARGS ' .. message})
end

local function whole(text, low, high, what)
  local x = tonumber(text)
  -- NaN fails x == floor(x); inf fails the range check.
  if x == nil or x ~= math.floor(x) or x < low or x > high then
    fail(what .. ' must be an integer in [' .. low .. ', ' .. high .. ']')
  end
  return x
end

-- 1. Validate every argument before anything is written.
local report_id = ARGV[1]
if report_id == nil or #report_id == 0 then fail('report_id is empty') end
local step = whole(ARGV[2], 0, MAX_COUNT, 'step')
local decay = tonumber(ARGV[3])
if decay == nil or not (decay > 0 and decay <= 1) then fail('decay must be in (0, 1]') end
local retention = whole(ARGV[4], 1, 2^40, 'retention')
local count = whole(ARGV[5], 1, 2^31, 'group count')
local digest = ARGV[6]
if digest == nil or not string.match(digest, '^%x+$') then fail('digest must be hex') end
local max_prompts = false
if ARGV[7] ~= '' then max_prompts = whole(ARGV[7], 1, 2^48, 'max_prompts') end
if #ARGV ~= HEAD + PER_GROUP * count then fail('expected ' .. count .. ' groups') end

-- The checks of `whole` inlined on the hot path; a failing value goes through
-- `whole` itself, which raises the message.
local floor, tonumber_, huge = math.floor, tonumber, math.huge
local pids, succ, trials, tokens, zerovar = {}, {}, {}, {}, {}
for g = 1, count do
  local base = HEAD + PER_GROUP * (g - 1)
  pids[g] = ARGV[base + 1]
  local t = tonumber_(ARGV[base + 3])
  if t == nil or t ~= floor(t) or t < 1 or t > MAX_COUNT then
    t = whole(ARGV[base + 3], 1, MAX_COUNT, 'trials')
  end
  local s = tonumber_(ARGV[base + 2])
  if s == nil or s ~= floor(s) or s < 0 or s > t then
    s = whole(ARGV[base + 2], 0, t, 'successes')
  end
  succ[g] = s
  trials[g] = t
  local m = ARGV[base + 4]
  if m == '' then
    tokens[g] = false
  else
    m = tonumber_(m)
    if m == nil or not (m >= 0 and m < huge) then fail('mean tokens must be finite and >= 0') end
    tokens[g] = m
  end
  local z = ARGV[base + 5]
  if z == '1' then
    zerovar[g] = true
  elseif z == '0' then
    zerovar[g] = false
  else
    fail('zero_variance must be 0 or 1')
  end
end

-- 2. The run must exist; a report id seen within the retention window is a duplicate
-- (or a conflict, when its digest differs). Ids leaving the window close their steps:
-- a report at or below the highest closed step could be a replay nobody can detect.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return redis.error_reply('KRL_RUN_NOT_FOUND')
end
local now = tonumber(redis.call('TIME')[1])
local expired = redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', '(' .. (now - retention),
  'LIMIT', 0, PRUNE)
local closed_step = tonumber(redis.call('HGET', KEYS[2], 'closed_step') or '-1')
if #expired > 0 then
  local old_acks = redis.call('HMGET', KEYS[6], unpack(expired))
  for i = 1, #expired do
    local old_step = old_acks[i] and tonumber(string.match(old_acks[i], ' (%d+)$'))
    if old_step and old_step > closed_step then closed_step = old_step end
  end
  redis.call('HSET', KEYS[2], 'closed_step', int(closed_step))
  redis.call('ZREM', KEYS[5], unpack(expired))
  redis.call('HDEL', KEYS[6], unpack(expired))
end
local ack = redis.call('HGET', KEYS[6], report_id)
if ack then
  local known_digest, known_accepted = string.match(ack, '^(%x+) (%d+)')
  if known_digest ~= digest then return redis.error_reply('KRL_CONFLICT') end
  redis.call('HINCRBY', KEYS[2], 'duplicate_reports', 1)
  return {tonumber(known_accepted), 1}
end
if redis.call('ZSCORE', KEYS[5], report_id) then
  -- Applied before acks were kept (an older version): a duplicate, count unknown.
  redis.call('HINCRBY', KEYS[2], 'duplicate_reports', 1)
  return {0, 1}
end
if step <= closed_step then
  return redis.error_reply('KRL_EXPIRED ' .. int(closed_step))
end

-- 3. Read every touched record once, compute the new ones (errors still write nothing).
local unique, current = {}, {}
for g = 1, count do
  if current[pids[g]] == nil then
    current[pids[g]] = false
    unique[#unique + 1] = pids[g]
  end
end
local new_prompts = 0
local before = {}
for first = 1, #unique, CHUNK do
  local last = math.min(first + CHUNK - 1, #unique)
  local values = redis.call('HMGET', KEYS[3], unpack(unique, first, last))
  for i = first, last do
    current[unique[i]] = values[i - first + 1]
    before[unique[i]] = values[i - first + 1]
    if not values[i - first + 1] then new_prompts = new_prompts + 1 end
  end
end
if max_prompts and new_prompts > 0
    and redis.call('HLEN', KEYS[3]) + new_prompts > max_prompts then
  return redis.error_reply('KRL_PROMPT_LIMIT ' .. int(new_prompts))
end

local EMPTY = struct.pack(RECORD, 0, 0, 0, 0, 0, 0, 0, -1, -1, 0, 0, 0, 0)
local unpack_record, pack_record = struct.unpack, struct.pack

-- Ring bits of a group depend on (successes, trials) only; a report repeats few
-- pairs (group sizes are alike), so each pair's bits are computed once per call.
local ring_cache = {}
local function ring_bits(s, t)
  local key = (t <= 65536) and (t * 65537 + s) or nil
  if key then
    local cached = ring_cache[key]
    if cached then return cached end
  end
  local bits, place = 0, 1
  for j = 0, math.min(t, RING_BITS) - 1 do
    if floor((j + 1) * s / t) > floor(j * s / t) then bits = bits + place end
    place = place * 2
  end
  if key then ring_cache[key] = bits end
  return bits
end

-- Powers of two are exact either way; the decay factors repeat across prompts.
local POW2 = {}
for k = 0, RING_BITS do POW2[k] = 2 ^ k end
local factors = {}
local function decay_power(k)
  local f = factors[k]
  if f == nil then
    f = decay ^ k
    factors[k] = f
  end
  return f
end

-- The group being applied, for the overflow refusal.
local current_group = 0

local function apply(raw, s, t, m)
  local rs, rt, ring, tt, bs, bf, mean, bstep, last, vs, vt, vbs, vbf = unpack_record(RECORD, raw)
  rs = rs + s
  rt = rt + t

  local bits = ring_bits(s, t)
  if t >= RING_BITS then
    ring = bits
  else
    ring = (ring % POW2[RING_BITS - t]) * POW2[t] + bits
  end

  if step > bstep then
    local factor = decay_power(step - bstep)
    bs = bs * factor
    bf = bf * factor
    bstep = step
  end
  if bstep == step then
    -- decay ^ 0 == 1 exactly: the weighted sums below are the plain ones.
    bs = bs + s
    bf = bf + (t - s)
  else
    local weight = decay ^ (bstep - step)
    bs = bs + s * weight
    bf = bf + (t - s) * weight
  end

  -- The last visit and the per-visit evidence (records.py: a larger step is a new
  -- visit, the same step adds to it, an older step counts one visit old).
  if step > last then
    vs, vt = s, t
    vbs = vbs * decay + s
    vbf = vbf * decay + (t - s)
  elseif step == last then
    vs, vt = vs + s, vt + t
    vbs = vbs + s
    vbf = vbf + (t - s)
  else
    vbs = vbs + s * decay
    vbf = vbf + (t - s) * decay
  end

  if m then
    if tt == 0 then
      mean = m
    else
      mean = (mean * tt + m * t) / (tt + t)
    end
    tt = tt + t
  end

  if rs > MAX_COUNTER or rt > MAX_COUNTER or tt > MAX_COUNTER then
    error({err = 'KRL_OVERFLOW ' .. int(current_group)})
  end
  if vt > MAX_VISIT_TRIALS then
    error({err = 'KRL_OVERFLOW ' .. int(current_group)})
  end
  if step > last then last = step end
  return pack_record(RECORD, rs, rt, ring, tt, bs, bf, mean, bstep, last, vs, vt, vbs, vbf)
end

local rollouts, successes, effective, zero_variance = 0, 0, 0, 0
local all_success_groups, all_failure_groups = 0, 0
local all_success_rollouts, all_failure_rollouts = 0, 0
for g = 1, count do
  local s, t, pid = succ[g], trials[g], pids[g]
  current_group = g
  current[pid] = apply(current[pid] or EMPTY, s, t, tokens[g])
  rollouts = rollouts + t
  successes = successes + s
  if s == t then
    all_success_groups = all_success_groups + 1
    all_success_rollouts = all_success_rollouts + t
  elseif s == 0 then
    all_failure_groups = all_failure_groups + 1
    all_failure_rollouts = all_failure_rollouts + t
  else
    effective = effective + t
  end
  if zerovar[g] then zero_variance = zero_variance + 1 end
end
local totals = {rollouts = rollouts, groups = count, successes = successes,
  effective_rollouts = effective, all_success_groups = all_success_groups,
  all_failure_groups = all_failure_groups, zero_variance_groups = zero_variance,
  all_success_rollouts = all_success_rollouts, all_failure_rollouts = all_failure_rollouts}

-- The change of the run's rate moments (records.py `rate_moments_change`): per touched
-- prompt, in first-seen order, its old terms out (if it had trials), its new ones in.
local d_count, d_sum, d_square, d_inverse = 0, 0, 0, 0
for i = 1, #unique do
  local pid = unique[i]
  local old = before[pid]
  if old then
    local os_, ot = unpack_record('<I6I6', old)
    if ot > 0 then
      local r = os_ / ot
      d_count = d_count - 1
      d_sum = d_sum - r
      d_square = d_square - r * r
      d_inverse = d_inverse - 1 / ot
    end
  end
  local ns, nt = unpack_record('<I6I6', current[pid])
  local r = ns / nt
  d_count = d_count + 1
  d_sum = d_sum + r
  d_square = d_square + r * r
  d_inverse = d_inverse + 1 / nt
end

-- The run's moments before this report. A run whose records were written before the
-- moments existed (an older version) has records and no moments: they are summed from
-- its records once, here (one pass over the run's prompts, bounded by its prompt
-- limit), and kept up to date by the changes from then on.
local moments = redis.call('HMGET', KEYS[2], 'rate_count', 'rate_sum', 'rate_square_sum',
  'inverse_trials_sum')
local m_count, m_sum = tonumber(moments[1] or '0'), tonumber(moments[2] or '0')
local m_square, m_inverse = tonumber(moments[3] or '0'), tonumber(moments[4] or '0')
if not moments[1] and redis.call('HLEN', KEYS[3]) > 0 then
  local records = redis.call('HVALS', KEYS[3])
  for i = 1, #records do
    local rs, rt = unpack_record('<I6I6', records[i])
    if rt > 0 then
      local r = rs / rt
      m_count = m_count + 1
      m_sum = m_sum + r
      m_square = m_square + r * r
      m_inverse = m_inverse + 1 / rt
    end
  end
end

-- 4. Write: records, step summary, counters, rate moments, report id.
for first = 1, #unique, CHUNK do
  local args, k = {}, 0
  for i = first, math.min(first + CHUNK - 1, #unique) do
    local pid = unique[i]
    args[k + 1] = pid
    args[k + 2] = current[pid]
    k = k + 2
  end
  redis.call('HSET', KEYS[3], unpack(args))
end
for field, value in pairs(totals) do
  if value ~= 0 then redis.call('HINCRBY', KEYS[7], field, int(value)) end
end
redis.call('ZADD', KEYS[4], int(step), int(step))
redis.call('HINCRBY', KEYS[2], 'reports', 1)
redis.call('HINCRBY', KEYS[2], 'results', int(count))
redis.call('HINCRBY', KEYS[2], 'rollouts', int(totals.rollouts))
redis.call('HINCRBY', KEYS[2], 'successes', int(totals.successes))
-- Doubles as '%.17g' (exact round trip); HINCRBYFLOAT would round through long double.
redis.call('HSET', KEYS[2],
  'rate_count', string.format('%.17g', m_count + d_count),
  'rate_sum', string.format('%.17g', m_sum + d_sum),
  'rate_square_sum', string.format('%.17g', m_square + d_square),
  'inverse_trials_sum', string.format('%.17g', m_inverse + d_inverse))
local last_step = tonumber(redis.call('HGET', KEYS[2], 'last_step'))
if last_step == nil or step > last_step then
  redis.call('HSET', KEYS[2], 'last_step', int(step))
end
redis.call('ZADD', KEYS[5], now, report_id)
redis.call('HSET', KEYS[6], report_id, digest .. ' ' .. int(count) .. ' ' .. int(step))
-- The step's totals after this report, for the service's per-run gauges.
local step_totals = redis.call('HMGET', KEYS[7], 'rollouts', 'groups', 'effective_rollouts',
  'all_success_groups', 'all_failure_groups')
local reply = {count, 0}
for i = 1, #step_totals do reply[#reply + 1] = tonumber(step_totals[i] or '0') end
return reply
