-- contract: keys spent addresses | args address spent_ms work base per_address | codes OK REPLAYED TOO_EASY
--[[
  pow_spend.lua: spends a proof of work for joining a sale's waiting room (src/admission/room.rs,
  FLASHGATE_ROOM_POW), atomically. The edge has checked the proof's hash and signature (one hash,
  one HMAC: src/draws/proof.rs); what only Redis can tell is decided here, in one call, so proofs
  sent together are each priced at the count the ones before them left (a draw entry does the
  same in lua/draw_enter.lua, in the call that records the entry).

  Steps; each can refuse, and a refusal writes nothing:
    1. the proof's challenge was not used before                      else REPLAYED
    2. the proof carries the work its address owes now: base doubled
       for every per_address joins the address brought (at most 2^10
       times; per_address 0: base)                                    else TOO_EASY (detail: the work owed)
    3. the challenge marked spent (its remaining life), the address
       counted                                                        -> OK

  KEYS (both in the sale's hash tag {g:ID}):
    1 spent      string: this proof's challenge, spent
    2 addresses  hash: address digest -> joins it paid for

  ARGV: 1 the address digest the proof was issued for, 2 how long the spent mark lives (ms),
  3 the work the proof was issued with (its signed maxnumber), 4 the base work
  (FLASHGATE_DRAW_POW_MAX), 5 joins per doubling (FLASHGATE_DRAW_POW_PER_ADDRESS)

  Returns {code, detail}.
]]

local REPLAYED = 40 -- this proof was spent already
local TOO_EASY = 41 -- this proof carries less work than its address owes now

if redis.call('EXISTS', KEYS[1]) == 1 then
  return {REPLAYED, 0}
end
local per = tonumber(ARGV[5])
if per > 0 then
  local brought = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
  local owed = tonumber(ARGV[4]) * 2 ^ math.min(math.floor(brought / per), 10)
  if tonumber(ARGV[3]) < owed then
    return {TOO_EASY, owed}
  end
end
redis.call('SET', KEYS[1], '1', 'PX', math.max(1, tonumber(ARGV[2])))
redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
return {OK, 0}
