-- contract: keys stock buyers result meta given_back held buys campaign | args user result ttl_s channel goods counter order quantity key | codes OK NOT_A_BUYER
--[[
  restore.lua: give one buy's units (and the account's allowance) back, once.

  Used when an admitted request ends as a failed order, when an unpaid order is closed, and when
  a dead-lettered entry is given up on. Idempotent: the unit comes back only if the user was still
  among the buyers, so a retry after a crash does not give it back twice. For a closed order that
  is not enough: its buyer may buy again before a retry, and would then be "still among the
  buyers". So a closed order's id is noted (KEYS[5]) and a second give-back for it does nothing:
  the closer can give the unit back first and note it in MySQL after, and a crash in between
  loses nothing.

  A sale of per_account > 1 notes every buy in KEYS[7] (admit.lua): there the buy's field
  ('USER KEY', KEY '-' for a buy without one) is what is given back once, and the user's held
  units (KEYS[6]) go down by its quantity; the user leaves the buyers when they hold none.
  A sale in a campaign (meta campaign_per_account set) gives the campaign's allowance back with
  it: the user's field of KEYS[8] goes down by the quantity, in the same step that is done once.

  Steps:
    0. with an order id (ARGV[7] not empty): if it is in KEYS[5], stop (already given back)
    1. per_account 1 (meta; absent: 1): SREM the user from the buyers; if they were not there,
       stop (already restored); a key's field in KEYS[7] is deleted (a retry with it may buy again)
       per_account > 1: HDEL the buy's field; if it was not there, stop (already restored);
       HINCRBY held by -quantity, and at 0 HDEL it and SREM the user from the buyers
    1a. in a campaign: HINCRBY the user's field of KEYS[8] by -quantity (HDEL at 0)
    1b. with an order id: SADD it to KEYS[5]
    2. INCRBY stock by the quantity
    3. write the user's result (ARGV[2]: -1 for a failed order; empty leaves the result alone)
    4. PUBLISH the goods id on the restock channel, so every edge clears its sold-out flag
    5. HINCRBY meta by the quantity in the field ARGV[6] names (failed, dead_lettered, closed or
       mended: why units came back, counted for the operators' live view)

  KEYS (one sale's hash tag, plus the channel, which is not a key for Cluster purposes):
    1 stock    string
    2 buyers   set
    3 result   string: this user's result
    4 meta     hash: the shard's meta (its counters)
    5 given_back  set: ids of closed orders whose units have come back
    6 held     hash: user id -> units held (a sale of per_account > 1)
    7 buys     hash: 'USER KEY' -> quantity (admit.lua)
    8 campaign hash: user id -> units held across the sale's campaign (admit.lua)
  ARGV:
    1 user id
    2 result to write ('' = leave it)
    3 result TTL in seconds
    4 restock channel name
    5 goods id (the message)
    6 the meta counter to count this in
    7 the closed order's id ('' for a failed or dead-lettered buy)
    8 the buy's quantity (empty: 1)
    9 the buy's Idempotency-Key digest ('' or '-': none)

  Returns {OK} if the unit was given back, {NOT_A_BUYER} if it had been already (lua/codes.lua).
]]

local once = ARGV[7] ~= ''
if once and redis.call('SISMEMBER', KEYS[5], ARGV[7]) == 1 then
  return {NOT_A_BUYER}
end
local q = tonumber(ARGV[8]) or 1
local idem = ARGV[9] or ''
if idem == '' then
  idem = '-'
end
local field = ARGV[1] .. ' ' .. idem
local rules = redis.call('HMGET', KEYS[4], 'per_account', 'campaign_per_account')
if (tonumber(rules[1]) or 1) <= 1 then
  if redis.call('SREM', KEYS[2], ARGV[1]) == 0 then
    return {NOT_A_BUYER}
  end
  if idem ~= '-' then
    redis.call('HDEL', KEYS[7], field)
  end
else
  if redis.call('HDEL', KEYS[7], field) == 0 then
    return {NOT_A_BUYER}
  end
  if redis.call('HINCRBY', KEYS[6], ARGV[1], -q) <= 0 then
    redis.call('HDEL', KEYS[6], ARGV[1])
    redis.call('SREM', KEYS[2], ARGV[1])
  end
end
if rules[2] and redis.call('HINCRBY', KEYS[8], ARGV[1], -q) <= 0 then
  redis.call('HDEL', KEYS[8], ARGV[1])
end
if once then
  redis.call('SADD', KEYS[5], ARGV[7])
end
redis.call('INCRBY', KEYS[1], q)
if ARGV[2] ~= '' then
  redis.call('SET', KEYS[3], ARGV[2], 'EX', tonumber(ARGV[3]))
end
redis.call('PUBLISH', ARGV[4], ARGV[5])
redis.call('HINCRBY', KEYS[4], ARGV[6], q)
return {OK}
