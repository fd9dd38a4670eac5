-- contract: keys captcha user issued meta stock | args answer checked path print ttl_ms split now? | codes OK WRONG_CAPTCHA NO_SALE NOT_STARTED ENDED SOLD_OUT TOO_MANY_PATHS
--[[
  issue_path.lua: check the captcha and hand this user a hidden path for this sale.

  Steps (the codes are the shared table of lua/codes.lua; `PathIssue` in src/admission/scripts.rs):
    1. if the captcha is on: the stored answer exists and equals ARGV[1]; it is deleted either
       way (single use)                                           else {WRONG_CAPTCHA}
    2. the sale is loaded and running                              else {NO_SALE},
                                              {NOT_STARTED, ms to start}, {ENDED}
    3. a path this user already holds is handed back as it is      {OK, path}
       (bound to this session's token first if it was bound to
       another: the same user logged in again, or a path issued
       before paths were bound; its bucket and TTL are kept)
       and else the sale has stock                                 else {SOLD_OUT}
    4. the sale has issued fewer than its cap of paths (path
       factor x stock)                                             else {TOO_MANY_PATHS}
    5. SET the new path, bound to the token, with its TTL in the
       user's key (admit.lua keeps the user's token bucket beside
       it, for as long)                                            {OK, path}

  A path is *bound* to the session that asked for it: the user's key holds `PATH.PRINT`, PRINT
  being the fingerprint of the session's token (16 hex digits, `TokenPrint` in src/domain.rs).
  A buy sends admit.lua the path it holds joined with the fingerprint of the token it carries,
  so a path works only with the token it was issued to, and the buy reads no session.

  KEYS (one sale's hash tag):
    1 captcha  string: the answer, this user
    2 user     string "PATH.PRINT" or "PATH.PRINT TOKENS TS": the hidden path of this user,
               bound to a token (and their token bucket, lua/admit.lua)
    3 issued   string: how many paths this sale has issued
    4 meta     hash: start_ms, end_ms, path_cap
    5 stock    string
  ARGV:
    1 the captcha answer given
    2 '1' if the captcha is checked, '0' if it is off
    3 the new path (32 hex digits; the edge hands the shopper USER-PATH)
    4 the fingerprint of the asking session's token
    5 path TTL in ms
    6 '1' for a split sale: this shard's stock is not the sale's, so step 3 does not look at it
      (the edge's sold-out flag covers the whole sale)
    7 now in ms, optional: `flashgate lua check` pins the clock with it; absent or empty means
      Redis TIME
]]

if ARGV[2] == '1' then
  local answer = redis.call('GET', KEYS[1])
  if answer then
    redis.call('DEL', KEYS[1])
  end
  if (not answer) or answer ~= ARGV[1] then
    return {WRONG_CAPTCHA}
  end
end

local meta = redis.call('HMGET', KEYS[4], 'start_ms', 'end_ms', 'path_cap')
if not meta[1] then
  return {NO_SALE}
end
local now
if ARGV[7] and ARGV[7] ~= '' then
  now = tonumber(ARGV[7])
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
  return {OK, path}
end
if ARGV[6] ~= '1' and tonumber(redis.call('GET', KEYS[5]) or '0') <= 0 then
  return {SOLD_OUT}
end
if redis.call('INCR', KEYS[3]) > tonumber(meta[3]) then
  return {TOO_MANY_PATHS}
end
redis.call('SET', KEYS[2], ARGV[3] .. '.' .. ARGV[4], 'PX', tonumber(ARGV[5]))
return {OK, ARGV[3]}
