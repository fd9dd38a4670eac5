-- contract: keys captcha user issued meta stock | args answer checked path ttl_ms split now? | codes OK WRONG_CAPTCHA NO_SALE NOT_STARTED ENDED SOLD_OUT TOO_MANY_PATHS
--[[
  issue_path.lua: check the captcha and hand this user a hidden path for this sale.

  Steps (the codes are the shared table of lua/codes.lua; `PathIssue` in src/admission/scripts.rs):
    1. if the captcha is on: the stored answer exists and equals ARGV[1]; it is deleted either
       way (single use)                                           else {WRONG_CAPTCHA}
    2. the sale is loaded and running                              else {NO_SALE},
                                              {NOT_STARTED, ms to start}, {ENDED}
    3. a path this user already holds is handed back as it is      {OK, path}
       and else the sale has stock                                 else {SOLD_OUT}
    4. the sale has issued fewer than its cap of paths (path
       factor x stock)                                             else {TOO_MANY_PATHS}
    5. SET the new path with its TTL in the user's key (admit.lua
       keeps the user's token bucket beside it, for as long)       {OK, path}

  KEYS (one sale's hash tag):
    1 captcha  string: the answer, this user
    2 user     string "PATH" or "PATH TOKENS TS": the hidden path of this user (and their
               token bucket, lua/admit.lua)
    3 issued   string: how many paths this sale has issued
    4 meta     hash: start_ms, end_ms, path_cap
    5 stock    string
  ARGV:
    1 the captcha answer given
    2 '1' if the captcha is checked, '0' if it is off
    3 the new path
    4 path TTL in ms
    5 '1' for a split sale: this shard's stock is not the sale's, so step 3 does not look at it
      (the edge's sold-out flag covers the whole sale)
    6 now in ms, optional: `flashgate lua check` pins the clock with it; absent or empty means
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
if ARGV[6] and ARGV[6] ~= '' then
  now = tonumber(ARGV[6])
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
  return {OK, sp and string.sub(held, 1, sp - 1) or held}
end
if ARGV[5] ~= '1' and tonumber(redis.call('GET', KEYS[5]) or '0') <= 0 then
  return {SOLD_OUT}
end
if redis.call('INCR', KEYS[3]) > tonumber(meta[3]) then
  return {TOO_MANY_PATHS}
end
redis.call('SET', KEYS[2], ARGV[3], 'PX', tonumber(ARGV[4]))
return {OK, ARGV[3]}
