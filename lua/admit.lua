--[[
  admit.lua: the whole admission decision for 1..N shoppers of one sale shard, atomically.

  The edge sends one call per buy (N = 1) or coalesces the buys of one shard that arrive while a
  call for it is in flight into the next call (N > 1, up to FLASHGATE_ADMIT_BATCH). Either way the
  shoppers are decided one after another in the order given, exactly as N single calls in that
  order would decide them: the same outcomes and the same Redis state afterwards. What is paid
  once per call instead of once per shopper: the call itself, the meta read, TIME, and the gate
  bucket's read and write.

  Steps, for each shopper in order; each one can refuse, and a refusal writes nothing but the
  token buckets of step 3 when they allowed the request:
    1. the hidden path given matches the one issued to this user      else BAD_PATH
    2. the sale is loaded, and its window holds by Redis TIME (or
       ARGV[1] in tests)                                               else NO_SALE / NOT_STARTED / ENDED
    3. the user's token bucket, then the sale's gate bucket, both
       have a token (neither is spent unless both have one); skipped
       for a run again after a unit was moved in (the flag below)     else RATE_LIMITED
    4. SADD the user to the buyers; already there                     else DUPLICATE
    5. DECR stock; it went below zero (undone with INCR + SREM)        else SOLD_OUT
    6. XADD the request to the queue                                   QUEUED (OK)
  and once per call, if any shopper was admitted: HINCRBY meta admitted by their number (the
  sale's running count of admissions, read by the operators' live view).

  KEYS (all share the shard's hash tag {g:ID} or {g:ID/S}, so this runs on Redis Cluster):
    1 meta     hash: start_ms, end_ms, user_rate, user_burst, gate_rate, gate_burst (read);
               admitted (counted up)
    2 stock    string: units left
    3 buyers   set: user ids admitted (the duplicate marker)
    4 gate     hash: the shard's token bucket (tokens, ts)
    5 queue    stream: the outbox the worker drains
    then for shopper i = 1..N:
    5+2i-1 path    string: the hidden path issued to this user
    5+2i   bucket  hash: this user's token bucket (tokens, ts)

  ARGV:
    1 now in ms, optional: tests pin the clock with it; empty means Redis TIME
    then for shopper i = 1..N (four each, from ARGV[2]):
      user id, hidden path sent by the client, request id (carried to the worker),
      '1' when the edge runs this shopper again after moving a unit into this shard of a split
      sale (take.lua): its tokens were spent by the first run, so step 3 is skipped

  Returns one reply per shopper, in order: {{code, detail}, ...}, with the codes of
  lua/codes.lua (decoded by `Admission` in src/admission/scripts.rs):
    {OK, stream id}                  admitted (QUEUED)
    {BAD_PATH}
    {NO_SALE}                        meta missing: the sale was never loaded
    {NOT_STARTED, ms until start}
    {ENDED}
    {RATE_LIMITED, retry after ms}
    {DUPLICATE}
    {SOLD_OUT}
]]

local n = (#ARGV - 1) / 4
local replies = {}

local meta = redis.call('HMGET', KEYS[1], 'start_ms', 'end_ms', 'user_rate', 'user_burst',
  'gate_rate', 'gate_burst')
local now
if ARGV[1] and ARGV[1] ~= '' then
  now = tonumber(ARGV[1])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- 3. token buckets: refill by elapsed time, capped at burst; a request costs one token.
-- Returns the tokens after refill and the ms until one token is available (0 if now).
local function refill(tokens, ts, rate, burst)
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

-- the gate is read once and written once, at the end, if a shopper spent from it
local gate_tokens, gate_ts, gate_read, gate_spent
-- a user who appears twice in one call sees their own bucket as the first run left it
local buckets = {}
-- once this call saw the stock at zero nothing in it raises the stock again, so a later new
-- buyer's SADD, DECR, INCR, SREM would change nothing: SISMEMBER tells DUPLICATE from SOLD_OUT
local sold_out = false
local admitted = 0

for i = 1, n do
  local uid, path, rid, again = ARGV[4 * i - 2], ARGV[4 * i - 1], ARGV[4 * i], ARGV[4 * i + 1]
  local path_key, bucket_key = KEYS[4 + 2 * i], KEYS[5 + 2 * i]
  local reply

  -- 1. hidden path
  local issued = redis.call('GET', path_key)
  if (not issued) or issued ~= path then
    reply = {BAD_PATH}
  -- 2. sale window
  elseif not meta[1] then
    reply = {NO_SALE}
  elseif now < tonumber(meta[1]) then
    reply = {NOT_STARTED, tonumber(meta[1]) - now}
  elseif now >= tonumber(meta[2]) then
    reply = {ENDED}
  end

  -- 3. token buckets
  if (not reply) and again ~= '1' then
    local user_rate, user_burst = tonumber(meta[3]), tonumber(meta[4])
    local gate_rate, gate_burst = tonumber(meta[5]), tonumber(meta[6])
    local b = buckets[bucket_key]
    if not b then
      local stored = redis.call('HMGET', bucket_key, 'tokens', 'ts')
      b = {tonumber(stored[1]), tonumber(stored[2])}
    end
    local user_tokens, user_wait = refill(b[1], b[2], user_rate, user_burst)
    if user_wait > 0 then
      reply = {RATE_LIMITED, user_wait}
    else
      if not gate_read then
        local g = redis.call('HMGET', KEYS[4], 'tokens', 'ts')
        gate_tokens, gate_ts, gate_read = tonumber(g[1]), tonumber(g[2]), true
      end
      local tokens, gate_wait = refill(gate_tokens, gate_ts, gate_rate, gate_burst)
      if gate_wait > 0 then
        reply = {RATE_LIMITED, gate_wait}
      else
        redis.call('HSET', bucket_key, 'tokens', user_tokens - 1, 'ts', now)
        -- a full bucket is the same as no bucket, so the key may go once it would have refilled
        redis.call('PEXPIRE', bucket_key, math.ceil(user_burst * 1000 / user_rate) + 1000)
        buckets[bucket_key] = {user_tokens - 1, now}
        gate_tokens, gate_ts, gate_spent = tokens - 1, now, true
      end
    end
  end

  if not reply then
    if sold_out then
      -- 4 and 5 when the stock is known to be gone: the same answers, nothing to undo
      if redis.call('SISMEMBER', KEYS[3], uid) == 1 then
        reply = {DUPLICATE}
      else
        reply = {SOLD_OUT}
      end
    -- 4. duplicate marker: SADD answers 0 when the user is there already. Adding first and
    -- undoing on sold out costs two calls fewer on the path that matters (admission).
    elseif redis.call('SADD', KEYS[3], uid) == 0 then
      reply = {DUPLICATE}
    -- 5. stock: take a unit; if there was none, put everything back as it was
    elseif redis.call('DECR', KEYS[2]) < 0 then
      redis.call('INCR', KEYS[2])
      redis.call('SREM', KEYS[3], uid)
      sold_out = true
      reply = {SOLD_OUT}
    else
      -- 6. admit
      reply = {OK, redis.call('XADD', KEYS[5], '*', 'u', uid, 'r', rid, 't', now)}
      admitted = admitted + 1
    end
  end
  replies[i] = reply
end

if gate_spent then
  redis.call('HSET', KEYS[4], 'tokens', gate_tokens, 'ts', gate_ts)
end
if admitted > 0 then
  redis.call('HINCRBY', KEYS[1], 'admitted', admitted)
end
return replies
