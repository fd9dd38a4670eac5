-- contract: keys stock buyers result meta given_back? | args user result ttl_s channel goods counter order? | codes OK NOT_A_BUYER
--[[
  restore.lua: give one unit of a sale back, once.

  Used when an admitted request ends as a failed order, when an unpaid order is closed, and when
  a dead-lettered entry is given up on. Idempotent: the unit comes back only if the user was still
  among the buyers, so a retry after a crash does not give it back twice. For a closed order that
  is not enough: its buyer may buy again before a retry, and would then be "still among the
  buyers". So a closed order's id is noted (KEYS[5]) and a second give-back for it does nothing:
  the closer can give the unit back first and note it in MySQL after, and a crash in between
  loses nothing.

  Steps:
    0. with KEYS[5]: if the order id ARGV[7] is in it, stop (already given back)
    1. SREM the user from the buyers; if they were not there, stop (already restored)
    1b. with KEYS[5]: SADD the order id
    2. INCR stock
    3. write the user's result (ARGV[2]: -1 for a failed order; empty leaves the result alone)
    4. PUBLISH the goods id on the restock channel, so every edge clears its sold-out flag
    5. HINCRBY meta by one in the field ARGV[6] names (failed, dead_lettered or closed: why units
       came back, counted for the operators' live view)

  KEYS (one sale's hash tag, plus the channel, which is not a key for Cluster purposes):
    1 stock    string
    2 buyers   set
    3 result   string: this user's result
    4 meta     hash: the shard's meta (its counters)
    5 given_back  set: ids of closed orders whose unit has come back (only for a closed order)
  ARGV:
    1 user id
    2 result to write ('' = leave it)
    3 result TTL in seconds
    4 restock channel name
    5 goods id (the message)
    6 the meta counter to count this in
    7 the closed order's id (with KEYS[5] only)

  Returns {OK} if the unit was given back, {NOT_A_BUYER} if it had been already (lua/codes.lua).
]]

local once = KEYS[5]
if once and redis.call('SISMEMBER', once, ARGV[7]) == 1 then
  return {NOT_A_BUYER}
end
if redis.call('SREM', KEYS[2], ARGV[1]) == 0 then
  return {NOT_A_BUYER}
end
if once then
  redis.call('SADD', once, ARGV[7])
end
redis.call('INCR', KEYS[1])
if ARGV[2] ~= '' then
  redis.call('SET', KEYS[3], ARGV[2], 'EX', tonumber(ARGV[3]))
end
redis.call('PUBLISH', ARGV[4], ARGV[5])
redis.call('HINCRBY', KEYS[4], ARGV[6], 1)
return {OK}
