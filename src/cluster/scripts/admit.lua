-- Admits one session across every relay instance, in one atomic step: the daily budgets, the
-- client's live sessions and its connection rate are checked, and its lease taken, together.
-- Time is Redis's own clock (TIME), so instances with skewed clocks agree.
-- ARGV: prefix, identity, member, lease_ms, per_client (0 = off), rate_per_minute (0 = off),
--       global_budget (0 = off), client_budget (0 = off) in tokens, then global_usd (0 = off)
--       and client_usd (0 = off) in billionths of a dollar
-- Returns {'ok'} or {'budget', 'global'|'global_usd'|'client'|'client_usd'} or {'too_many'} or
-- {'rate'}.
local p, identity, member = ARGV[1], ARGV[2], ARGV[3]
local lease_ms = tonumber(ARGV[4])
local per_client, rate = tonumber(ARGV[5]), tonumber(ARGV[6])
local global_budget, client_budget = tonumber(ARGV[7]), tonumber(ARGV[8])
local global_usd, client_usd = tonumber(ARGV[9] or '0'), tonumber(ARGV[10] or '0')
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local day = math.floor(tonumber(t[1]) / 86400)

local all, mine = p .. 'usage:' .. day .. ':all', p .. 'usage:' .. day .. ':id:' .. identity
local budgets = {
  {global_budget, all, 'billable', 'global'}, {global_usd, all, 'cost_nano_usd', 'global_usd'},
  {client_budget, mine, 'billable', 'client'}, {client_usd, mine, 'cost_nano_usd', 'client_usd'},
}
for _, b in ipairs(budgets) do
  if b[1] > 0 and tonumber(redis.call('HGET', b[2], b[3]) or '0') >= b[1] then
    return {'budget', b[4]}
  end
end

local live = p .. 'live:' .. identity
redis.call('ZREMRANGEBYSCORE', live, '-inf', now)
if per_client > 0 and redis.call('ZCARD', live) >= per_client then return {'too_many'} end

if rate > 0 then
  local key = p .. 'rate:' .. identity
  local b = redis.call('HMGET', key, 'tokens', 'at')
  local tokens, at = tonumber(b[1]), tonumber(b[2])
  if tokens == nil or at == nil then tokens, at = rate, now end
  tokens = math.min(rate, tokens + math.max(0, now - at) * rate / 60000)
  if tokens < 1 then return {'rate'} end
  redis.call('HSET', key, 'tokens', tostring(tokens - 1), 'at', tostring(now))
  redis.call('PEXPIRE', key, 120000)
end

redis.call('ZADD', live, now + lease_ms, member)
redis.call('PEXPIRE', live, lease_ms)
redis.call('ZADD', p .. 'leases', now + lease_ms, member)
return {'ok'}
