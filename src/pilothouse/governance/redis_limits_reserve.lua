-- Reserve one request on every subject, all or nothing (pilothouse.governance.redis_backend).
-- KEYS: [1] the reservation's record, then per subject: its window hash, its in-flight zset.
-- ARGV: id, tokens, lease_ms, window_s, now ('' = this server's TIME), then per subject:
--       requests_per_min, tokens_per_min, concurrent (-1 = unlimited).
-- The window hash holds one field per second: 'r<second>' requests, 't<second>' tokens.
-- The in-flight zset holds reservation ids scored by when their lease ends.
-- Returns {1, now} when held (also when this id was held already: a retried call holds
-- nothing twice), {0, subject_index, what} when refused (what: 1 concurrent, 2 requests
-- per minute, 3 tokens per minute).
local held = redis.call('GET', KEYS[1])
if held then
  return {1, held}
end
local id = ARGV[1]
local tokens = tonumber(ARGV[2])
local lease_ms = tonumber(ARGV[3])
local window = tonumber(ARGV[4])
local now
if ARGV[5] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
else
  now = tonumber(ARGV[5])
end
local second = math.floor(now)
local horizon = second - window
local subjects = (#KEYS - 1) / 2

local function window_usage(key)
  local fields = redis.call('HGETALL', key)
  local requests, used, stale = 0, 0, {}
  for i = 1, #fields, 2 do
    local field = fields[i]
    if tonumber(string.sub(field, 2)) <= horizon then
      stale[#stale + 1] = field
    elseif string.sub(field, 1, 1) == 'r' then
      requests = requests + tonumber(fields[i + 1])
    else
      used = used + tonumber(fields[i + 1])
    end
  end
  if #stale > 0 then
    redis.call('HDEL', key, unpack(stale))
  end
  return requests, used
end

for i = 1, subjects do
  local window_key, flight_key = KEYS[2 * i], KEYS[2 * i + 1]
  local rpm = tonumber(ARGV[3 + 3 * i])
  local tpm = tonumber(ARGV[4 + 3 * i])
  local concurrent = tonumber(ARGV[5 + 3 * i])
  redis.call('ZREMRANGEBYSCORE', flight_key, '-inf', now)
  if concurrent >= 0 and redis.call('ZCARD', flight_key) + 1 > concurrent then
    return {0, i, 1}
  end
  local requests, used = window_usage(window_key)
  if rpm >= 0 and requests + 1 > rpm then
    return {0, i, 2}
  end
  if tpm >= 0 and used + tokens > tpm then
    return {0, i, 3}
  end
end

local stamp = string.format('%.17g', now)
local lease_end = now + lease_ms / 1000
for i = 1, subjects do
  local window_key, flight_key = KEYS[2 * i], KEYS[2 * i + 1]
  redis.call('HINCRBY', window_key, 'r' .. second, 1)
  redis.call('HINCRBY', window_key, 't' .. second, tokens)
  redis.call('PEXPIRE', window_key, 2 * window * 1000)
  redis.call('ZADD', flight_key, lease_end, id)
  redis.call('PEXPIRE', flight_key, lease_ms + window * 1000)
end
redis.call('SET', KEYS[1], stamp, 'PX', lease_ms + 2 * window * 1000)
return {1, stamp}
