-- Renews the leases of one instance's live sessions and says the instance is alive. A lease
-- missing from Redis (taken while Redis was away, or lost with a Redis restart) is written again.
-- Expired leases of every instance are dropped from the cluster-wide set.
-- ARGV: prefix, instance, lease_ms, then identity, member pairs
local p, instance = ARGV[1], ARGV[2]
local lease_ms = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i = 4, #ARGV, 2 do
  local live = p .. 'live:' .. ARGV[i]
  redis.call('ZADD', live, now + lease_ms, ARGV[i + 1])
  redis.call('PEXPIRE', live, lease_ms)
  redis.call('ZADD', p .. 'leases', now + lease_ms, ARGV[i + 1])
end
redis.call('ZREMRANGEBYSCORE', p .. 'leases', '-inf', now)
redis.call('HSET', p .. 'instances', instance, tostring(now))
-- Instances silent for ten leases are forgotten.
local seen = redis.call('HGETALL', p .. 'instances')
for i = 1, #seen, 2 do
  if now - tonumber(seen[i + 1]) > 10 * lease_ms then redis.call('HDEL', p .. 'instances', seen[i]) end
end
return (#ARGV - 3) / 2
