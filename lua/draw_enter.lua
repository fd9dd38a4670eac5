-- contract: keys draw entries log addresses spent | args now user user_hex address spent_ms work base per_address | codes OK DUPLICATE NOT_STARTED ENDED NO_SALE REPLAYED TOO_EASY
--[[
  draw_enter.lua: one shopper's entry into a draw sale (src/draws/), atomically.

  The edge has checked the entry's proof of work already (one hash, one HMAC: src/draws/proof.rs);
  what only Redis can tell is decided here, in the same call that records the entry, so a proof
  is spent exactly when an entry is recorded with it and never twice.

  Steps; each can refuse, and a refusal writes nothing:
    1. the draw is loaded                                              else NO_SALE
    2. this user has entered already: the first entry is the answer   -> DUPLICATE, entry number
       (nothing counted again, the proof not spent)
    3. registration is open by Redis TIME (or ARGV[1] in tests):
       from_ms <= now < until_ms, and the draw has not closed it       else NOT_STARTED (ms) / ENDED
    4. the proof's challenge was not used before                       else REPLAYED
    4b. the proof carries the work its address owes now: base doubled
       for every per_address entries the address brought (at most
       2^10 times; per_address 0: base), counted here, in the call that
       counts the entry, so proofs sent together cannot all be priced
       at the count before any of them                                 else TOO_EASY (detail: the work owed)
       then the challenge is marked spent (with its remaining life)
    5. recorded: entry number = HLEN + 1 in entries, the user id
       appended to the log (16 hex digits), the address counted       -> OK, entry number

  KEYS (all in the sale's hash tag {g:ID}, so this runs on Redis Cluster):
    1 draw       hash: from_ms, until_ms, state ('open' until the draw closes it)
    2 entries    hash: user id -> entry number
    3 log        string: user ids in arrival order, 16 hex digits each
    4 addresses  hash: address digest -> entries it brought
    5 spent      string: this proof's challenge, spent

  ARGV:
    1 now in ms, optional ('' : Redis TIME)
    2 user id
    3 the user id as 16 hex digits (what the log holds)
    4 the address digest the proof was issued for
    5 how long the spent mark lives, ms (the challenge's remaining life)
    6 the work the proof was issued with (its signed maxnumber)
    7 the base work (FLASHGATE_DRAW_POW_MAX), 8 entries per doubling (FLASHGATE_DRAW_POW_PER_ADDRESS)

  Returns {code, detail}: OK / DUPLICATE with the entry number; NOT_STARTED with ms until
  registration opens; ENDED, NO_SALE, REPLAYED with 0; TOO_EASY with the work owed.
]]

local REPLAYED = 40 -- draw_enter.lua: this proof was used for an entry already
local TOO_EASY = 41 -- draw_enter.lua: this proof carries less work than its address owes now

local d = redis.call('HMGET', KEYS[1], 'from_ms', 'until_ms', 'state')
if not d[1] then
  return {NO_SALE, 0}
end
local uid = ARGV[2]
local seq = redis.call('HGET', KEYS[2], uid)
if seq then
  return {DUPLICATE, tonumber(seq)}
end
local now
if ARGV[1] ~= '' then
  now = tonumber(ARGV[1])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local from, till = tonumber(d[1]), tonumber(d[2])
if now < from then
  return {NOT_STARTED, from - now}
end
if now >= till or d[3] ~= 'open' then
  return {ENDED, 0}
end
if redis.call('EXISTS', KEYS[5]) == 1 then
  return {REPLAYED, 0}
end
local per = tonumber(ARGV[8])
if per > 0 then
  local brought = tonumber(redis.call('HGET', KEYS[4], ARGV[4]) or '0')
  local owed = tonumber(ARGV[7]) * 2 ^ math.min(math.floor(brought / per), 10)
  if tonumber(ARGV[6]) < owed then
    return {TOO_EASY, owed}
  end
end
redis.call('SET', KEYS[5], '1', 'PX', math.max(1, tonumber(ARGV[5])))
local n = redis.call('HLEN', KEYS[2]) + 1
redis.call('HSET', KEYS[2], uid, n)
redis.call('APPEND', KEYS[3], ARGV[3])
redis.call('HINCRBY', KEYS[4], ARGV[4], 1)
return {OK, n}
