-- What GET /stats?scope=cluster shows: live leases, instances, and today's usage.
-- ARGV: prefix, how many identities to list.
-- Returns {day, now_ms, leases, instances, all usage, {model, usage}..., top identities, count}.
local p, top = ARGV[1], tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local day = math.floor(tonumber(t[1]) / 86400)
local d = p .. 'usage:' .. day
local models = {}
for _, m in ipairs(redis.call('SMEMBERS', d .. ':models')) do
  models[#models + 1] = {m, redis.call('HGETALL', d .. ':model:' .. m)}
end
return {
  day, now,
  redis.call('ZRANGEBYSCORE', p .. 'leases', now, '+inf'),
  redis.call('HGETALL', p .. 'instances'),
  redis.call('HGETALL', d .. ':all'),
  models,
  redis.call('ZREVRANGE', d .. ':identities', 0, top - 1, 'WITHSCORES'),
  redis.call('ZCARD', d .. ':identities'),
}
