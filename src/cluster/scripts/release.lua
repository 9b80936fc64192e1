-- Gives a session's lease back at once (a clean end); a lease nobody releases expires by itself.
-- ARGV: prefix, identity, member
local p, identity, member = ARGV[1], ARGV[2], ARGV[3]
redis.call('ZREM', p .. 'live:' .. identity, member)
redis.call('ZREM', p .. 'leases', member)
return 1
