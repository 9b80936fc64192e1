-- Today's billable tokens for all clients and for each identity asked about: how an instance
-- learns that a budget was spent through another one.
-- ARGV: prefix, then identities. Returns {day, all, identity1's, identity2's, ...}.
local p = ARGV[1]
local t = redis.call('TIME')
local day = math.floor(tonumber(t[1]) / 86400)
local out = {day, tonumber(redis.call('HGET', p .. 'usage:' .. day .. ':all', 'billable') or '0')}
for i = 2, #ARGV do
  out[#out + 1] = tonumber(redis.call('HGET', p .. 'usage:' .. day .. ':id:' .. ARGV[i], 'billable') or '0')
end
return out
