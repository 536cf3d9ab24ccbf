-- Start budgets not yet known from what the ledger says they spent
-- (pilothouse.governance.redis_backend). KEYS: per subject its sums hash.
-- ARGV: idle_ms, then per subject what it spent. A subject already counting keeps its own
-- figure (HSETNX): a replica that restarts never rewinds what the others counted since.
local idle_ms = tonumber(ARGV[1])
local seeded = 0
for i = 1, #KEYS do
  if redis.call('HSETNX', KEYS[i], 'spent', ARGV[i + 1]) == 1 then
    redis.call('PEXPIRE', KEYS[i], idle_ms)
    seeded = seeded + 1
  end
end
return seeded
