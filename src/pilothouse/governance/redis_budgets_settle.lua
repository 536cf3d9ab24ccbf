-- Settle or release one charge (pilothouse.governance.redis_backend).
-- KEYS: [1] the charge's record, then per subject: its sums hash and its open zset.
-- ARGV: id, amount (as reserved), spent (what to charge, at most amount), idle_ms.
-- A charge whose lease ended was given back by then; what it spent is charged all the same.
-- Returns 1, or 0 when the record is gone (settled or released already: never twice).
if redis.call('DEL', KEYS[1]) == 0 then
  return 0
end
local member = ARGV[1] .. ':' .. ARGV[2]
local spent = tonumber(ARGV[3])
local idle_ms = tonumber(ARGV[4])
for i = 1, (#KEYS - 1) / 2 do
  local sums_key, open_key = KEYS[2 * i], KEYS[2 * i + 1]
  if redis.call('ZREM', open_key, member) == 1 then
    if redis.call('ZCARD', open_key) == 0 then
      redis.call('HSET', sums_key, 'reserved', 0)
    else
      redis.call('HINCRBYFLOAT', sums_key, 'reserved', '-' .. ARGV[2])
    end
  end
  if spent > 0 then
    redis.call('HINCRBYFLOAT', sums_key, 'spent', ARGV[3])
  end
  redis.call('PEXPIRE', sums_key, idle_ms)
end
return 1
