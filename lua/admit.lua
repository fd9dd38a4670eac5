-- contract: keys meta stock buyers gate queue held buys campaign user... | args now (user path request again quantity key)... | codes OK BAD_PATH NOT_STARTED ENDED RATE_LIMITED DUPLICATE SOLD_OUT NO_SALE LIMIT_REACHED TOO_MANY_UNITS NOT_ENOUGH AGAIN KEY_REUSED CAMPAIGN_LIMIT
--[[
  admit.lua: the whole admission decision for 1..N shoppers of one sale shard, atomically.

  The edge sends one call per buy (N = 1) or coalesces the buys of one shard that arrive while a
  call for it is in flight into the next call (N > 1, up to FLASHGATE_ADMIT_BATCH). Either way the
  shoppers are decided one after another in the order given, exactly as N single calls in that
  order would decide them: the same outcomes and the same Redis state afterwards (but for the
  queue: one entry holds every shopper a call admitted).

  What a shopper costs is kept to the least Redis can do for them, because one Redis core decides
  how big a crowd one item can take (docs/capacity.md): one GET of the shopper's key (hidden path
  and token bucket together, a string: reading a string back into Lua is much cheaper than an
  array), one SADD, and one SET when their bucket was spent. What a call pays once: the meta,
  TIME, the gate bucket, one GET and one DECRBY of the stock, one XADD for all it admitted, and
  the admitted count.

  Steps, for each shopper in order; each one can refuse, and a refusal writes nothing but the
  token buckets of step 3 when they allowed the request:
    1. the hidden path given matches the one issued to this user,
       bound to the token the buy carries (see below)                 else BAD_PATH
    2. the sale is loaded, and its window holds by Redis TIME (or
       ARGV[1] in tests)                                               else NO_SALE / NOT_STARTED / ENDED
    2b. the quantity is at most the sale's per_buy (meta; absent: 1)   else TOO_MANY_UNITS
    3. the user's token bucket, then the sale's gate bucket, both
       have a token (neither is spent unless both have one); skipped
       for a run again after a unit was moved in (the flag below)     else RATE_LIMITED
    3b. with an Idempotency-Key (its digest, ARGV): a buy of this user
       and key admitted before is the same buy: AGAIN if it asked for
       the same quantity (nothing moves), else KEY_REUSED            else AGAIN / KEY_REUSED
    then, in a sale of one unit per account (meta per_account absent or 1, today's rule):
    4. the user is not among the buyers (SADD answers 0), checked
       only while stock is left; when it is gone, SISMEMBER tells     else DUPLICATE
       DUPLICATE from SOLD_OUT
    (in a campaign: SISMEMBER first, then 4c, then the stock, then SADD)
    5. a unit is left (the stock read once, counted down here)         else SOLD_OUT
    or, in a sale of per_account > 1 (counters compared as numbers):
    4. a buy without a key from a user holding any unit               else DUPLICATE
    4b. held + quantity <= per_account (held: the user's field of
        KEYS[6])                                                      else LIMIT_REACHED (detail: units left to them)
    4c. in a campaign (meta campaign_per_account set): held across
        the campaign (the user's field of KEYS[8]) + quantity <=
        campaign_per_account                                          else CAMPAIGN_LIMIT (detail: units left to them)
    5. quantity units are left, all or nothing                        else SOLD_OUT (none left) / NOT_ENOUGH (detail: left)
       and then HINCRBY held by the quantity, SADD buyers
    6. admitted; in a campaign HINCRBY KEYS[8] by the quantity; a buy with a key, or any buy
       of a per_account > 1 sale, is noted in KEYS[7] (field 'USER KEY', KEY '-' for none;
       value: its quantity), which restore.lua reads to give it back once
  and once per call, if any shopper was admitted: one XADD of them all (fields u: user ids, r:
  request ids, both comma-separated in the same order, t: now; and only when some buy is not a
  keyless single unit: q the quantities and k the key digests, '-' for none, in the same
  order), DECRBY stock by their units, HINCRBY meta admitted by their number (the sale's
  running count of buys, read by the live view) and, when they took more units than buys,
  extra_units by the difference (units = admitted + extra_units). A user who appears twice in
  one call sees their own bucket and counters as the first run left them; each spent bucket is
  written once, at the end.

  KEYS (all share the shard's hash tag {g:ID} or {g:ID/S}, or the campaign's {c:NAME}, so this
  runs on Redis Cluster):
    1 meta     hash: start_ms, end_ms, user_rate, user_burst, gate_rate, gate_burst (read);
               admitted (counted up)
    2 stock    string: units left
    3 buyers   set: user ids admitted (the duplicate marker)
    4 gate     hash: the shard's token bucket (tokens, ts)
    5 queue    stream: the outbox the worker drains
    6 held     hash: user id -> units held (only in a sale of per_account > 1)
    7 buys     hash: 'USER KEY' -> quantity: the buys admitted with a key (and every buy of a
               per_account > 1 sale, KEY '-' when it had none)
    8 campaign hash: user id -> units held across the sale's campaign (read and written only
               when the meta has campaign_per_account; a sale in no campaign passes a key
               of its own tag that stays unwritten)
    then for shopper i = 1..N:
    8+i user   string "PATH.PRINT" or "PATH.PRINT TOKENS TS": the hidden path issued to this
               user bound to the fingerprint of the session token that asked for it
               (lua/issue_path.lua sets it, with the path's TTL) and their token bucket

  ARGV:
    1 now in ms, optional: tests pin the clock with it; empty means Redis TIME
    then for shopper i = 1..N (six each, from ARGV[2]):
      user id, the path binding: the hidden path sent by the client joined with the
      fingerprint of the token it came with (PATH.PRINT; the edge reads no session for a buy:
      holding the token and the path issued to it is what the buy proves), request id (carried
      to the worker; no commas),
      '1' when the edge runs this shopper again after moving a unit into this shard of a split
      sale (take.lua): its tokens were spent by the first run, so step 3 is skipped,
      the quantity (a whole number >= 1, checked by the edge; empty: 1),
      the Idempotency-Key's digest (hex, checked by the edge; empty: none)

  Returns one flat array: {entry id or '', code 1, detail 1, code 2, detail 2, ...}, the codes
  of lua/codes.lua, a detail of 0 where the code has none (decoded by `Admission` in
  src/admission/scripts.rs):
    OK              admitted (QUEUED): the entry id (the first element) holds the shopper
    BAD_PATH
    NO_SALE         meta missing: the sale was never loaded
    NOT_STARTED     detail: ms until start
    ENDED
    RATE_LIMITED    detail: ms until a token is back
    DUPLICATE
    SOLD_OUT
    LIMIT_REACHED   detail: units the account may still take here (perAccount - held, or
                    the campaign's left if fewer)
    CAMPAIGN_LIMIT  the campaign's limit refused it; detail: the same as LIMIT_REACHED's
    TOO_MANY_UNITS  detail: the sale's per_buy
    NOT_ENOUGH      detail: units left (fewer than asked, more than none)
    AGAIN           the same buy as one admitted before (same user, key and quantity)
    KEY_REUSED      detail: the quantity the key was first used with
]]

local n = (#ARGV - 1) / 6
local reply = {''}

local meta = redis.call('HMGET', KEYS[1], 'start_ms', 'end_ms', 'user_rate', 'user_burst',
  'gate_rate', 'gate_burst', 'per_buy', 'per_account', 'campaign_per_account')
local now
if ARGV[1] ~= '' then
  now = tonumber(ARGV[1])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local start_ms, end_ms = tonumber(meta[1]), tonumber(meta[2])
local user_rate, user_burst = tonumber(meta[3]), tonumber(meta[4])
local gate_rate, gate_burst = tonumber(meta[5]), tonumber(meta[6])
-- the rules of a sale loaded before they existed: one unit per buy and per account
local per_buy, per_account = tonumber(meta[7]) or 1, tonumber(meta[8]) or 1
-- a sale in a campaign: the most units one account may hold across the campaign's sales
local campaign_limit = tonumber(meta[9])

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
-- each user's key as read: {path, tokens, ts, spent}; written back once if spent
local users = {}
-- the stock, read when the first shopper reaches step 4 and counted down locally
local stock
local uids, rids, qs, ks = {}, {}, {}, {}
local units, plain = 0, true

for i = 1, n do
  local uid, path, rid, again = ARGV[6 * i - 4], ARGV[6 * i - 3], ARGV[6 * i - 2], ARGV[6 * i - 1]
  local q, idem = tonumber(ARGV[6 * i]) or 1, ARGV[6 * i + 1]
  local key = KEYS[8 + i]
  local u = users[key]
  if not u then
    u = {}
    local held = redis.call('GET', key)
    if held then
      local sp = string.find(held, ' ', 1, true)
      if sp then
        local sp2 = string.find(held, ' ', sp + 1, true)
        u[1] = string.sub(held, 1, sp - 1)
        u[2] = tonumber(string.sub(held, sp + 1, sp2 - 1))
        u[3] = tonumber(string.sub(held, sp2 + 1))
      else
        u[1] = held
      end
    end
    users[key] = u
  end
  local code, detail

  -- 1. hidden path
  if u[1] ~= path then
    code = BAD_PATH
  -- 2. sale window
  elseif not start_ms then
    code = NO_SALE
  elseif now < start_ms then
    code, detail = NOT_STARTED, start_ms - now
  elseif now >= end_ms then
    code = ENDED
  -- 2b. the rule of one buy
  elseif q > per_buy then
    code, detail = TOO_MANY_UNITS, per_buy
  -- 3. token buckets
  elseif again ~= '1' then
    local user_tokens, user_wait = refill(u[2], u[3], user_rate, user_burst)
    if user_wait > 0 then
      code, detail = RATE_LIMITED, user_wait
    else
      if not gate_read then
        local g = redis.call('HMGET', KEYS[4], 'tokens', 'ts')
        gate_tokens, gate_ts, gate_read = tonumber(g[1]), tonumber(g[2]), true
      end
      local tokens, gate_wait = refill(gate_tokens, gate_ts, gate_rate, gate_burst)
      if gate_wait > 0 then
        code, detail = RATE_LIMITED, gate_wait
      else
        u[2], u[3], u[4] = user_tokens - 1, now, true
        gate_tokens, gate_ts, gate_spent = tokens - 1, now, true
      end
    end
  end

  -- 3b. a buy with a key admitted before is the same buy
  local field
  if not code and idem ~= '' then
    field = uid .. ' ' .. idem
    local before = tonumber(redis.call('HGET', KEYS[7], field))
    if before == q then
      code = AGAIN
    elseif before then
      code, detail = KEY_REUSED, before
    end
  end

  if not code then
    if not stock then
      stock = tonumber(redis.call('GET', KEYS[2]) or '0')
    end
    -- what the user holds across the campaign (a sale in one only)
    local across = campaign_limit and (tonumber(redis.call('HGET', KEYS[8], uid)) or 0)
    if per_account <= 1 and campaign_limit then
      -- one unit per account in a campaign: the duplicate first, then the campaign's count
      if redis.call('SISMEMBER', KEYS[3], uid) == 1 then
        code = DUPLICATE
      elseif across + q > campaign_limit then
        code, detail = CAMPAIGN_LIMIT, math.max(campaign_limit - across, 0)
      elseif stock <= 0 then
        code = SOLD_OUT
      else
        redis.call('SADD', KEYS[3], uid)
        code = OK
      end
    elseif per_account <= 1 then
      -- one unit per account (q is 1: per_buy <= per_account): the decision as it always was
      if stock <= 0 then
        -- 4 and 5 when the stock is gone: the same answers, nothing to write
        if redis.call('SISMEMBER', KEYS[3], uid) == 1 then
          code = DUPLICATE
        else
          code = SOLD_OUT
        end
      -- 4. duplicate marker: SADD answers 0 when the user is there already
      elseif redis.call('SADD', KEYS[3], uid) == 0 then
        code = DUPLICATE
      else
        code = OK
      end
    else
      local held = tonumber(redis.call('HGET', KEYS[6], uid)) or 0
      local left = per_account - held
      if campaign_limit then
        left = math.min(left, campaign_limit - across)
      end
      if idem == '' and held > 0 then
        code = DUPLICATE
      elseif held + q > per_account then
        code, detail = LIMIT_REACHED, math.max(left, 0)
      elseif campaign_limit and across + q > campaign_limit then
        code, detail = CAMPAIGN_LIMIT, math.max(left, 0)
      elseif stock <= 0 then
        code = SOLD_OUT
      elseif stock < q then
        code, detail = NOT_ENOUGH, stock
      else
        redis.call('HINCRBY', KEYS[6], uid, q)
        redis.call('SADD', KEYS[3], uid)
        code = OK
      end
    end
    if code == OK then
      -- 5 and 6: the units are theirs
      stock = stock - q
      if campaign_limit then
        redis.call('HINCRBY', KEYS[8], uid, q)
      end
      if idem ~= '' or per_account > 1 then
        redis.call('HSET', KEYS[7], field or (uid .. ' -'), q)
      end
      local n_ = #uids + 1
      uids[n_], rids[n_], qs[n_], ks[n_] = uid, rid, q, (idem ~= '' and idem or '-')
      units = units + q
      if q ~= 1 or idem ~= '' then
        plain = false
      end
    end
  end
  reply[2 * i], reply[2 * i + 1] = code, detail or 0
end

for key, u in pairs(users) do
  if u[4] then
    -- the bucket rides on the path's key and keeps its TTL: a full bucket is the same as none
    redis.call('SET', key, u[1] .. ' ' .. u[2] .. ' ' .. u[3], 'KEEPTTL')
  end
end
if gate_spent then
  redis.call('HSET', KEYS[4], 'tokens', gate_tokens, 'ts', gate_ts)
end
if #uids > 0 then
  if plain then
    reply[1] = redis.call('XADD', KEYS[5], '*', 'u', table.concat(uids, ','),
      'r', table.concat(rids, ','), 't', now)
  else
    reply[1] = redis.call('XADD', KEYS[5], '*', 'u', table.concat(uids, ','),
      'r', table.concat(rids, ','), 't', now, 'q', table.concat(qs, ','), 'k', table.concat(ks, ','))
  end
  redis.call('DECRBY', KEYS[2], units)
  redis.call('HINCRBY', KEYS[1], 'admitted', #uids)
  if units > #uids then
    redis.call('HINCRBY', KEYS[1], 'extra_units', units - #uids)
  end
end
return reply
