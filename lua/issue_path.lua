-- contract: keys captcha user paths meta stock fails taken | args answer checked path print ttl_ms split member max_wrong lock_ms per_user now? | codes OK WRONG_CAPTCHA CAPTCHA_LOCKED NO_SALE NOT_STARTED ENDED SOLD_OUT TOO_MANY_PATHS
--[[
  issue_path.lua: check the captcha and hand this user a hidden path for this sale.

  Steps (the codes are the shared table of lua/codes.lua; `PathIssue` in src/admission/scripts.rs):
    1. the sale is loaded                                          else {NO_SALE}
       (first: nothing is written for a sale that does not exist)
    2. if the captcha is on: this user has given fewer than ARGV[8] wrong answers in this sale
       lately                                                     else {CAPTCHA_LOCKED, ms left}
       and the stored answer exists and equals ARGV[1]             else {WRONG_CAPTCHA}
       (a wrong answer uses the captcha up and is counted, for ARGV[9] ms from the first);
       then the sale is running               else {NOT_STARTED, ms to start}, {ENDED}
    3. a path this user already holds is handed back as it is      {OK, path}
       (bound to this session's token first if it was bound to
       another: the same user logged in again, or a path issued
       before paths were bound; its bucket and TTL are kept)
       and else the sale has stock                                 else {SOLD_OUT}
    4. fewer paths are *live* than the sale's cap (path factor x
       stock): paths past their TTL are dropped from the count
       first, so an unused path gives its place back when it
       expires                                                     else {TOO_MANY_PATHS}
       and this user has taken fewer than ARGV[11] paths of this
       sale in the last hour (a few accounts cannot hold the
       sale's places by taking a new path each minute)  else {TOO_MANY_PATHS, ms to wait}
    5. SET the new path, bound to the token, with its TTL in the
       user's key (admit.lua keeps the user's token bucket beside
       it, for as long), count it live until then, and count it
       against the user                                           {OK, path}
  The captcha is used up only by a wrong answer (step 1) or a path handed out (steps 3, 5): a
  request refused for the sale's sake spends nothing, and may be sent again.

  A path is *bound* to the session that asked for it: the user's key holds `PATH.PRINT`, PRINT
  being the fingerprint of the session's token (16 hex digits, `TokenPrint` in src/domain.rs).
  A buy sends admit.lua the path it holds joined with the fingerprint of the token it carries,
  so a path works only with the token it was issued to, and the buy reads no session.

  KEYS (one sale's hash tag):
    1 captcha  string: the answer, this user
    2 user     string "PATH.PRINT" or "PATH.PRINT TOKENS TS": the hidden path of this user,
               bound to a token (and their token bucket, lua/admit.lua)
    3 paths    sorted set: the live paths of this sale, member the user, score when it expires
    4 meta     hash: start_ms, end_ms, path_cap
    5 stock    string
    6 fails    string: wrong captcha answers of this user in this sale, with a TTL
    7 taken    string: paths this user took in this sale, for an hour from the first
  ARGV:
    1 the captcha answer given
    2 '1' if the captcha is checked, '0' if it is off
    3 the new path (32 hex digits; the edge hands the shopper USER-PATH)
    4 the fingerprint of the asking session's token
    5 path TTL in ms
    6 '1' for a split sale: this shard's stock is not the sale's, so step 3 does not look at it
      (the edge's sold-out flag covers the whole sale)
    7 this user's member in KEYS[3] (the user id)
    8 wrong answers allowed before the captcha is locked
    9 how long wrong answers are counted (and the lock lasts), in ms
    10 the most paths one user may take in this sale in an hour
    11 now in ms, optional: `flashgate lua check` pins the clock with it; absent or empty means
      Redis TIME
]]

local meta = redis.call('HMGET', KEYS[4], 'start_ms', 'end_ms', 'path_cap')
if not meta[1] then
  return {NO_SALE}
end

if ARGV[2] == '1' then
  local wrong = tonumber(redis.call('GET', KEYS[6]) or '0')
  if wrong >= tonumber(ARGV[8]) then
    return {CAPTCHA_LOCKED, math.max(redis.call('PTTL', KEYS[6]), 1)}
  end
  local answer = redis.call('GET', KEYS[1])
  if (not answer) or answer ~= ARGV[1] then
    if answer then
      redis.call('DEL', KEYS[1])
    end
    if redis.call('INCR', KEYS[6]) == 1 then
      redis.call('PEXPIRE', KEYS[6], tonumber(ARGV[9]))
    end
    return {WRONG_CAPTCHA}
  end
end

local now
if ARGV[11] and ARGV[11] ~= '' then
  now = tonumber(ARGV[11])
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
-- a path already issued is handed back as it is (only inside the window: a sale that ended or
-- was cancelled hands out none)
local held = redis.call('GET', KEYS[2])
if held then
  local sp = string.find(held, ' ', 1, true)
  local binding = sp and string.sub(held, 1, sp - 1) or held
  local dot = string.find(binding, '.', 1, true)
  local path = dot and string.sub(binding, 1, dot - 1) or binding
  local mine = path .. '.' .. ARGV[4]
  if binding ~= mine then
    redis.call('SET', KEYS[2], mine .. (sp and string.sub(held, sp) or ''), 'KEEPTTL')
  end
  if ARGV[2] == '1' then
    redis.call('DEL', KEYS[1])
  end
  return {OK, path}
end
if ARGV[6] ~= '1' and tonumber(redis.call('GET', KEYS[5]) or '0') <= 0 then
  return {SOLD_OUT}
end
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
if redis.call('ZCARD', KEYS[3]) >= tonumber(meta[3]) then
  return {TOO_MANY_PATHS}
end
if tonumber(redis.call('GET', KEYS[7]) or '0') >= tonumber(ARGV[10]) then
  return {TOO_MANY_PATHS, math.max(redis.call('PTTL', KEYS[7]), 1)}
end
if redis.call('INCR', KEYS[7]) == 1 then
  redis.call('PEXPIRE', KEYS[7], 3600000)
end
local ttl = tonumber(ARGV[5])
redis.call('ZADD', KEYS[3], now + ttl, ARGV[7])
redis.call('PEXPIRE', KEYS[3], ttl)
redis.call('SET', KEYS[2], ARGV[3] .. '.' .. ARGV[4], 'PX', ttl)
if ARGV[2] == '1' then
  redis.call('DEL', KEYS[1])
end
return {OK, ARGV[3]}
