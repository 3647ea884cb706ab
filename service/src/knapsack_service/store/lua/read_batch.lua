-- Read a run's settings and the records of many prompts in one round trip.
-- Records come back concatenated in request order (an unseen prompt gets the empty
-- record), so the client decodes the whole batch with one numpy view.
--
-- KEYS[1] cfg, KEYS[2] prompts hash; ARGV: prompt ids.
-- Returns {exists (0|1), settings ('' if absent), records blob}.

local RECORD = '<I6I6I6I6fffi4i4'
local CHUNK = 2000
local EMPTY = struct.pack(RECORD, 0, 0, 0, 0, 0, 0, 0, -1, -1)

local settings = redis.call('GET', KEYS[1])
local parts = {}
for first = 1, #ARGV, CHUNK do
  local last = math.min(first + CHUNK - 1, #ARGV)
  local values = redis.call('HMGET', KEYS[2], unpack(ARGV, first, last))
  for i = 1, last - first + 1 do
    parts[#parts + 1] = values[i] or EMPTY
  end
end
if settings then
  return {1, settings, table.concat(parts)}
end
return {0, '', table.concat(parts)}
