-- Settle or release one reservation (pilothouse.governance.redis_backend).
-- KEYS: [1] the reservation's record, then per subject: its window hash, its in-flight zset.
-- ARGV: id, at (when it was reserved), token_delta, request_delta, window_s,
--       now ('' = this server's TIME).
-- Frees the slot and corrects the bucket of second `at` while it is still in the window.
-- Returns 1, or 0 when the record is gone (settled or released already: never twice).
if redis.call('DEL', KEYS[1]) == 0 then
  return 0
end
local id = ARGV[1]
local at = math.floor(tonumber(ARGV[2]))
local token_delta = tonumber(ARGV[3])
local request_delta = tonumber(ARGV[4])
local window = tonumber(ARGV[5])
local now
if ARGV[6] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
else
  now = tonumber(ARGV[6])
end
local in_window = at > math.floor(now) - window
for i = 1, (#KEYS - 1) / 2 do
  local window_key, flight_key = KEYS[2 * i], KEYS[2 * i + 1]
  redis.call('ZREM', flight_key, id)
  if in_window and redis.call('HEXISTS', window_key, 't' .. at) == 1 then
    if token_delta ~= 0 then
      redis.call('HINCRBY', window_key, 't' .. at, token_delta)
    end
    if request_delta ~= 0 then
      redis.call('HINCRBY', window_key, 'r' .. at, request_delta)
    end
  end
end
return 1
