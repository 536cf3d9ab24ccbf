-- Reserve a request's limits, token budgets and money budgets at once, all or nothing: a
-- part refused gives back what the parts before it held, within this one atomic call.
-- Returns {1, at} (at: the limits' time stamp, '' without limits), or
-- {0, part, ...} with the refusing part's own answer after its number.
local at = ''
local limits, tokens, money = #part_keys[1] > 0, #part_keys[2] > 0, #part_keys[3] > 0
if limits then
  local held = limits_reserve(part_keys[1], part_args[1])
  if held[1] == 0 then
    return {0, 1, held[2], held[3]}
  end
  at = held[2]
end
local function give_back_limits()
  if limits then
    local a = part_args[1]  -- id, tokens, lease_ms, window_s, now
    limits_settle(part_keys[1], {a[1], at, -tonumber(a[2]), -1, a[4], a[5]})
  end
end
if tokens then
  local held = budgets_reserve(part_keys[2], part_args[2])
  if held[1] == 0 then
    give_back_limits()
    return {0, 2, held[2], held[3]}
  end
end
if money then
  local held = budgets_reserve(part_keys[3], part_args[3])
  if held[1] == 0 then
    give_back_limits()
    if tokens then
      local a = part_args[2]  -- id, amount, lease_ms, idle_ms
      budgets_settle(part_keys[2], {a[1], a[2], '0', a[4]})
    end
    return {0, 3, held[2], held[3]}
  end
end
return {1, at}
