-- contract: keys draw order claims claimed lapsed buyers stock | args now start_ms grace_ms limit | codes OK NO_SALE
--[[
  draw_move.lua: the waitlist of a drawn sale (src/draws/), one step, atomically. Run by every
  worker every 250 ms for each drawn sale that has not ended; two workers at once are harmless.

  A unit is free when it is in the stock and no unused claim holds it: stock - ZCARD(claims).
  Units come free when a winner's claim passes unused, and when a bought unit comes back
  (an order that failed, or was closed unpaid: restore.lua puts it back in the stock and takes
  the buyer out of buyers). Each free unit goes to the next entry in the draw's order.

  Steps:
    1. the sale is drawn (state 'drawn')                              else NO_SALE
    2. claims whose holder is among the buyers are used: out of
       claims, into claimed
    3. claims past claim-until + grace (the grace covers a buy in
       flight at the deadline; the edge stops issuing paths at
       claim-until) are lapsed: out of claims, into lapsed
    4. while a unit is free and the order has entries left: the
       entry at place `next` gets a claim until max(now, start) +
       claim_ms; `next` moves on (at most ARGV[4] a call)
  (the first run after the draw hands every unit to the first entries: the winners)

  KEYS (all in the sale's hash tag {g:ID}; a draw sale has one shard):
    1 draw     hash: state, next, total, claim_ms
    2 order    string: user ids in the draw's order, 16 hex digits each
    3 claims   sorted set: user id -> claim-until ms
    4 claimed  set: winners who bought in time
    5 lapsed   set: winners whose claim passed unused
    6 buyers   set: the sale's buyers (admit.lua's duplicate marker)
    7 stock    string: units left

  ARGV: 1 now in ms ('' : Redis TIME), 2 the sale's start ms, 3 grace ms, 4 most claims made
  in one call

  Returns {OK, claim-until ms, place, user id, user id, ...}: the entries given a claim by this
  call, the first of them at `place` in the draw's order (1-based), the others after it in
  turn; {NO_SALE} before the draw.
]]

local d = redis.call('HMGET', KEYS[1], 'state', 'next', 'total', 'claim_ms')
if d[1] ~= 'drawn' then
  return {NO_SALE}
end
local now
if ARGV[1] ~= '' then
  now = tonumber(ARGV[1])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local used = redis.call('ZINTER', 2, KEYS[3], KEYS[6])
for _, uid in ipairs(used) do
  redis.call('ZREM', KEYS[3], uid)
  redis.call('SADD', KEYS[4], uid)
end
local limit = tonumber(ARGV[4])
local over = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now - tonumber(ARGV[3]), 'LIMIT', 0, limit)
for _, uid in ipairs(over) do
  redis.call('ZREM', KEYS[3], uid)
  redis.call('SADD', KEYS[5], uid)
end
local free = tonumber(redis.call('GET', KEYS[7]) or '0') - redis.call('ZCARD', KEYS[3])
local nxt, total = tonumber(d[2]), tonumber(d[3])
local till = math.max(now, tonumber(ARGV[2])) + tonumber(d[4])
local out = {OK, till, nxt + 1}
while free > 0 and nxt < total and #out - 3 < limit do
  local hex = redis.call('GETRANGE', KEYS[2], nxt * 16, nxt * 16 + 15)
  local uid = string.format('%d', tonumber(hex, 16))
  nxt = nxt + 1
  redis.call('ZADD', KEYS[3], till, uid)
  out[#out + 1] = uid
  free = free - 1
end
if nxt ~= tonumber(d[2]) then
  redis.call('HSET', KEYS[1], 'next', nxt)
end
return out
