-- Adds one upstream usage report to today's ledger, at most once per key (the response id): a
-- retry after a timeout is not counted twice. Day keys expire 48 hours after their day ends.
-- ARGV: prefix, identity, model, key ('' = no key), billable, then the usage fields as
--       name, value pairs (cost_nano_usd among them: its cost in billionths of a dollar).
-- Returns {counted (1|0), day, today's billable tokens for all clients, for this identity,
--          today's cost in billionths of a dollar for all clients, for this identity}.
local p, identity, model, key = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local billable = tonumber(ARGV[5])
local t = redis.call('TIME')
local day = math.floor(tonumber(t[1]) / 86400)
local all = p .. 'usage:' .. day .. ':all'
local mine = p .. 'usage:' .. day .. ':id:' .. identity
local counted = 1
if key ~= '' and not redis.call('SET', p .. 'seen:' .. key, '1', 'NX', 'EX', 172800) then
  counted = 0
end
if counted == 1 then
  local expire_at = (day + 1) * 86400 + 172800
  local by_model = p .. 'usage:' .. day .. ':model:' .. model
  for _, k in ipairs({all, mine, by_model}) do
    redis.call('HINCRBY', k, 'billable', billable)
    for i = 6, #ARGV, 2 do
      if ARGV[i + 1] ~= '0' then redis.call('HINCRBY', k, ARGV[i], ARGV[i + 1]) end
    end
    redis.call('EXPIREAT', k, expire_at)
  end
  local ids, models = p .. 'usage:' .. day .. ':identities', p .. 'usage:' .. day .. ':models'
  redis.call('ZINCRBY', ids, billable, identity)
  redis.call('SADD', models, model)
  redis.call('EXPIREAT', ids, expire_at)
  redis.call('EXPIREAT', models, expire_at)
end
local function get(k, field) return tonumber(redis.call('HGET', k, field) or '0') end
return {counted, day, get(all, 'billable'), get(mine, 'billable'),
        get(all, 'cost_nano_usd'), get(mine, 'cost_nano_usd')}
