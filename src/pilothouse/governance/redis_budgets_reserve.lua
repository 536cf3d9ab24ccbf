-- Reserve `amount` on every budget, all or nothing (pilothouse.governance.redis_backend).
-- KEYS: [1] the charge's record, then per subject: its sums hash ('spent', 'reserved') and
--       its open zset (members '<id>:<amount>' scored by when their lease ends).
-- ARGV: id, amount, lease_ms, idle_ms, then per subject: its limit.
-- Time is this server's TIME: every replica sees one clock for leases.
-- Returns {1} when held (also when this id was held already: a retried call holds nothing
-- twice), {0, subject_index, left} when refused.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {1}
end
local id = ARGV[1]
local amount = tonumber(ARGV[2])
local lease_ms = tonumber(ARGV[3])
local idle_ms = tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local subjects = (#KEYS - 1) / 2

-- Give back what charges whose lease ended (their replica died) still hold.
local function expire(sums_key, open_key)
  local ended = redis.call('ZRANGEBYSCORE', open_key, '-inf', now)
  for _, member in ipairs(ended) do
    local held = tonumber(string.match(member, ':(.*)$'))
    redis.call('HINCRBYFLOAT', sums_key, 'reserved', -held)
  end
  if #ended > 0 then
    redis.call('ZREMRANGEBYSCORE', open_key, '-inf', now)
  end
  -- Nothing open: nothing reserved, exactly (no float residue, nor an open set that expired).
  if redis.call('ZCARD', open_key) == 0 and redis.call('HEXISTS', sums_key, 'reserved') == 1 then
    redis.call('HSET', sums_key, 'reserved', 0)
  end
end

for i = 1, subjects do
  local sums_key, open_key = KEYS[2 * i], KEYS[2 * i + 1]
  expire(sums_key, open_key)
  local sums = redis.call('HMGET', sums_key, 'spent', 'reserved')
  local committed = tonumber(sums[1] or '0') + tonumber(sums[2] or '0')
  local left = tonumber(ARGV[4 + i]) - committed
  if amount > left then
    return {0, i, string.format('%.17g', left)}
  end
end

local member = id .. ':' .. ARGV[2]
local lease_end = now + lease_ms / 1000
for i = 1, subjects do
  local sums_key, open_key = KEYS[2 * i], KEYS[2 * i + 1]
  redis.call('HINCRBYFLOAT', sums_key, 'reserved', ARGV[2])
  redis.call('PEXPIRE', sums_key, idle_ms)
  redis.call('ZADD', open_key, lease_end, member)
  redis.call('PEXPIRE', open_key, lease_ms + 60000)
end
redis.call('SET', KEYS[1], 1, 'PX', 2 * lease_ms + 60000)
return {1}
