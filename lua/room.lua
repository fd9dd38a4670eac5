-- contract: keys meta line seq stock soldout through | args op user draw split now? | codes OK WAITING IN_ROOM TOO_MANY_PATHS SOLD_OUT NOT_STARTED ENDED NO_TICKET NO_ROOM NO_SALE
--[[
  room.lua: the waiting room of one sale: join it (one ticket per shopper), or look where a
  ticket stands. Atomic, so every edge sees one line.

  The line is a sorted set of user ids (KEYS[2]). A shopper who joins before the start gets a
  random score below 2^52 drawn by the edge (ARGV[3]): the order of early joiners is a random
  permutation, fixed for each when they join but seen by nobody, which is a fair draw at the
  start. A shopper who joins after the start gets 2^52 + join ms * 1024 + (a counter mod 1024):
  behind every early joiner, in arrival order. A ticket's place in line is its rank (ZRANK,
  O(log n), no scan).

  Nobody walks the line: how many tickets are through is a function of time,
    through(now) = min(path_cap, floor((now - start_ms) * room_rate / 1000))
  so a ticket of rank r is through once through(now) > r, on every edge alike, and its position
  (r - through + 1) and wait only ever go down. Tickets of rank >= path_cap never get through:
  the sale cannot use them (TOO_MANY_PATHS). When the sale is sold out, every ticket is told
  so (SOLD_OUT), so nobody goes on waiting or on to a buy that cannot succeed.

  Steps:
    1. the sale is loaded (else NO_SALE), has a room (else NO_ROOM), the room is open
       (else NOT_STARTED, ms until it opens), the sale has not ended (else ENDED)
    2. join: ZADD the shopper if absent (a second join keeps the first ticket);
       look: a shopper without a ticket is NO_TICKET
    3. before the start: IN_ROOM {ms to the start, room size}: no position before the draw
    4. sold out: SOLD_OUT (to every ticket: nothing is left for anyone in line)
       rank < through: OK {wait ms, 1 the first time this ticket is seen through}
       rank >= path_cap: TOO_MANY_PATHS
       else WAITING {position, wait ms, room size, through}

  KEYS (the sale's shard 0 hash tag {g:ID}, also for a split sale):
    1 meta     hash: start_ms, end_ms, path_cap, room_opens_ms (-1: no room), room_rate
    2 line     sorted set: user id -> score (see above)
    3 seq      string: the latecomers' counter
    4 stock    string: shard 0's stock (sold out, for a sale that is not split)
    5 soldout  string: set by the edge when a split sale is sold out everywhere
    6 through  set: tickets already seen through (so each is counted once)
  ARGV:
    1 'join' or 'look'
    2 user id
    3 the random draw, an integer in [0, 2^52) (join only)
    4 '1' for a split sale (sold out is KEYS[5], not KEYS[4])
    5 now in ms, optional: tests pin the clock with it; empty means Redis TIME
]]

local meta = redis.call('HMGET', KEYS[1], 'start_ms', 'end_ms', 'path_cap', 'room_opens_ms',
  'room_rate')
if not meta[1] then
  return {NO_SALE}
end
local start, stop, cap = tonumber(meta[1]), tonumber(meta[2]), tonumber(meta[3])
local opens, rate = tonumber(meta[4] or '-1'), tonumber(meta[5] or '0')
if opens < 0 or rate <= 0 then
  return {NO_ROOM}
end
local now
if ARGV[5] and ARGV[5] ~= '' then
  now = tonumber(ARGV[5])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
if now < opens then
  return {NOT_STARTED, opens - now}
end
if now >= stop then
  return {ENDED}
end

local uid = ARGV[2]
local score = redis.call('ZSCORE', KEYS[2], uid)
if not score then
  if ARGV[1] ~= 'join' then
    return {NO_TICKET}
  end
  if now < start then
    score = ARGV[3]
  else
    local n = redis.call('INCR', KEYS[3]) % 1024
    score = string.format('%.0f', 4503599627370496 + now * 1024 + n)
  end
  redis.call('ZADD', KEYS[2], score, uid)
end

local size = redis.call('ZCARD', KEYS[2])
if now < start then
  return {IN_ROOM, start - now, size}
end

-- a sale that is sold out has nothing left for anyone in its line, through or not
local sold_out
if ARGV[4] == '1' then
  sold_out = redis.call('EXISTS', KEYS[5]) == 1
else
  sold_out = tonumber(redis.call('GET', KEYS[4]) or '0') <= 0
end
if sold_out then
  return {SOLD_OUT}
end

local rank = redis.call('ZRANK', KEYS[2], uid)
local through = math.min(cap, math.floor((now - start) * rate / 1000))
-- when this rank's turn comes (or came): ms since the start
local turn = math.ceil((rank + 1) * 1000 / rate)
if rank < through then
  -- the wait, for the metrics: from the start, or from joining for a latecomer
  local s = tonumber(score)
  local joined = start
  if s >= 4503599627370496 then
    joined = math.floor((s - 4503599627370496) / 1024)
  end
  local wait = math.max(0, start + turn - joined)
  return {OK, wait, redis.call('SADD', KEYS[6], uid)}
end
if rank >= cap then
  return {TOO_MANY_PATHS}
end
return {WAITING, rank - through + 1, math.max(0, start + turn - now), size, through}
