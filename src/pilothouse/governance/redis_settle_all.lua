-- Settle (or release) a request's limits, token budgets and money budgets at once; each
-- part's arguments as its settle script takes them. Returns how many parts were still held.
local done = 0
if #part_keys[1] > 0 then
  done = done + limits_settle(part_keys[1], part_args[1])
end
for p = 2, 3 do
  if #part_keys[p] > 0 then
    done = done + budgets_settle(part_keys[p], part_args[p])
  end
end
return done
