-- The layout of a composed call (pilothouse.governance.redis_admission.RedisAdmission): the
-- limits, token budget and money budget parts of one request in one script call.
-- ARGV[1..3]: the number of keys of each part (0: the part is absent); ARGV[4..6]: the
-- number of its arguments; then each part's arguments, as its own script takes them.
-- KEYS: each part's keys, in the same order. The parts' scripts are local functions here.
local part_keys, part_args = {}, {}
do
  local k, a = 1, 7
  for p = 1, 3 do
    local nk, na = tonumber(ARGV[p]), tonumber(ARGV[p + 3])
    local keys, args = {}, {}
    for i = 1, nk do keys[i] = KEYS[k + i - 1] end
    for i = 1, na do args[i] = ARGV[a + i - 1] end
    part_keys[p], part_args[p] = keys, args
    k, a = k + nk, a + na
  end
end
