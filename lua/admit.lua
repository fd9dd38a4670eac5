--[[
  admit.lua: the whole admission decision for one buy request, atomically.

  Steps, in order; each one can refuse, and a refusal writes nothing but the
  rate-limit buckets of step 3 when they allowed the request:
    1. the hidden path given matches the one issued to this user      else BAD_PATH
    2. the sale window holds, by Redis TIME (or ARGV[4] in tests)     else NOT_STARTED / ENDED
    3. the user's token bucket, then the sale's gate bucket, both
       have a token (neither is spent unless both have one)           else RATE_LIMITED
    4. SADD the user to the buyers; already there                     else DUPLICATE
    5. DECR stock; it went below zero (undone with INCR + SREM)        else SOLD_OUT
    6. XADD the request to the queue                                   QUEUED

  KEYS (all share the sale's hash tag {g:ID}, so this runs on Redis Cluster):
    1 meta     hash: start_ms, end_ms, user_rate, user_burst, gate_rate, gate_burst
    2 stock    string: units left
    3 buyers   set: user ids admitted (the duplicate marker)
    4 path     string: the hidden path issued to this user
    5 bucket   hash: this user's token bucket (tokens, ts)
    6 gate     hash: the sale's token bucket (tokens, ts)
    7 queue    stream: the outbox the worker drains

  ARGV:
    1 user id
    2 hidden path sent by the client
    3 request id (opaque, carried to the worker)
    4 now in ms, optional: tests pin the clock with it; empty means Redis TIME
    5 '1' when the edge runs this request again after moving a unit into this shard of a
      split sale (take.lua): its tokens were spent by the first run, so step 3 is skipped

  Returns {code, detail}; the codes are the shared table of lua/codes.lua (`Code` in
  src/scripts.rs, decoded into `Admission`):
    {OK, stream id}                  admitted (QUEUED)
    {BAD_PATH}
    {NOT_STARTED, ms until start}
    {ENDED}
    {RATE_LIMITED, retry after ms}
    {DUPLICATE}
    {SOLD_OUT}
    {NO_SALE}                        meta missing: the sale was never loaded
]]

local uid = ARGV[1]

-- 1. hidden path
local issued = redis.call('GET', KEYS[4])
if (not issued) or issued ~= ARGV[2] then
  return {BAD_PATH}
end

-- 2. sale window
local meta = redis.call('HMGET', KEYS[1], 'start_ms', 'end_ms', 'user_rate', 'user_burst',
  'gate_rate', 'gate_burst')
if not meta[1] then
  return {NO_SALE}
end
local now
if ARGV[4] and ARGV[4] ~= '' then
  now = tonumber(ARGV[4])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
if now < tonumber(meta[1]) then
  return {NOT_STARTED, tonumber(meta[1]) - now}
end
if now >= tonumber(meta[2]) then
  return {ENDED}
end

-- 3. token buckets: refill by elapsed time, capped at burst; a request costs one token.
-- Returns the tokens after refill and the ms until one token is available (0 if now).
local function refill(key, rate, burst)
  local b = redis.call('HMGET', key, 'tokens', 'ts')
  local tokens = tonumber(b[1])
  local ts = tonumber(b[2])
  if not tokens then
    tokens = burst
  elseif now > ts then
    tokens = math.min(burst, tokens + (now - ts) * rate / 1000)
  end
  if tokens >= 1 then
    return tokens, 0
  end
  return tokens, math.ceil((1 - tokens) * 1000 / rate)
end

if ARGV[5] ~= '1' then
  local user_rate, user_burst = tonumber(meta[3]), tonumber(meta[4])
  local gate_rate, gate_burst = tonumber(meta[5]), tonumber(meta[6])
  local user_tokens, user_wait = refill(KEYS[5], user_rate, user_burst)
  if user_wait > 0 then
    return {RATE_LIMITED, user_wait}
  end
  local gate_tokens, gate_wait = refill(KEYS[6], gate_rate, gate_burst)
  if gate_wait > 0 then
    return {RATE_LIMITED, gate_wait}
  end
  redis.call('HSET', KEYS[5], 'tokens', user_tokens - 1, 'ts', now)
  -- a full bucket is the same as no bucket, so the key may go once it would have refilled
  redis.call('PEXPIRE', KEYS[5], math.ceil(user_burst * 1000 / user_rate) + 1000)
  redis.call('HSET', KEYS[6], 'tokens', gate_tokens - 1, 'ts', now)
end

-- 4. duplicate marker: SADD answers 0 when the user is there already. Adding first and undoing
-- on sold out costs two calls fewer on the path that matters (admission) than asking first.
if redis.call('SADD', KEYS[3], uid) == 0 then
  return {DUPLICATE}
end

-- 5. stock: take a unit; if there was none, put everything back as it was
if redis.call('DECR', KEYS[2]) < 0 then
  redis.call('INCR', KEYS[2])
  redis.call('SREM', KEYS[3], uid)
  return {SOLD_OUT}
end

-- 6. admit
local id = redis.call('XADD', KEYS[7], '*', 'u', uid, 'r', ARGV[3], 't', now)
return {OK, id}
