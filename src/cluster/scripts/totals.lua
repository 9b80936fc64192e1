-- Today's billable tokens and cost (billionths of a dollar) for all clients and for each
-- identity asked about: how an instance learns that a budget was spent through another one.
-- ARGV: prefix, then identities.
-- Returns {day, all tokens, all cost, identity1's tokens, identity1's cost, ...}.
local p = ARGV[1]
local t = redis.call('TIME')
local day = math.floor(tonumber(t[1]) / 86400)
local function get(k, field) return tonumber(redis.call('HGET', k, field) or '0') end
local all = p .. 'usage:' .. day .. ':all'
local out = {day, get(all, 'billable'), get(all, 'cost_nano_usd')}
for i = 2, #ARGV do
  local mine = p .. 'usage:' .. day .. ':id:' .. ARGV[i]
  out[#out + 1] = get(mine, 'billable')
  out[#out + 1] = get(mine, 'cost_nano_usd')
end
return out
