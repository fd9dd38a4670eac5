--[[
  codes.lua: the return codes every script answers with, one table for all of them.

  flashgate puts this file in front of each script when it loads it (src/admission/scripts.rs), so every
  script sees these names; the SHA-1 the edge calls is that of the two together. The same table
  is `Code` in src/admission/scripts.rs, and a test holds the two equal. Running a script by hand
  (redis-cli, redis-benchmark) means sending this file and the script as one text:
    redis-cli SCRIPT LOAD "$(cat lua/codes.lua lua/admit.lua)"
]]
local OK = 0              -- done: admitted, path issued, unit taken, unit given back
local BAD_PATH = 1        -- the hidden path is missing, expired or not this user's
local NOT_STARTED = 2     -- the sale has not started; detail: ms until it does
local ENDED = 3           -- the sale is over
local RATE_LIMITED = 4    -- a token bucket is empty; detail: ms until a token is back
local DUPLICATE = 5       -- this user was admitted to this sale already
local SOLD_OUT = 6        -- no stock left (in this shard, for take.lua)
local NO_SALE = 7         -- the sale's meta is missing: it was never loaded
local WRONG_CAPTCHA = 8   -- the captcha answer is wrong, used or expired
local TOO_MANY_PATHS = 9  -- the sale has issued as many hidden paths as its cap allows
local NOT_A_BUYER = 10    -- restore.lua: the user holds no unit (given back already)
local CHANGED = 11        -- mend.lua: the shard moved since the audit read it; nothing written
local NO_ROOM = 12        -- room.lua: the sale has no waiting room
local IN_ROOM = 13        -- room.lua: in the room before the start; detail: ms to start, size
local WAITING = 14        -- room.lua: in line; detail: position, wait ms, size, through
local NO_TICKET = 15      -- room.lua: this shopper has not joined the room
local LIMIT_REACHED = 16  -- admit.lua: the buy would take the account past perAccount; detail: units left to it
local TOO_MANY_UNITS = 17 -- admit.lua: the buy asks for more than perBuy; detail: perBuy
local NOT_ENOUGH = 18     -- admit.lua: fewer units left than asked (all or nothing); detail: units left
local AGAIN = 19          -- admit.lua: this Idempotency-Key's buy was admitted already (the same buy, nothing moved)
local KEY_REUSED = 20     -- admit.lua: this Idempotency-Key was used for another quantity; detail: that quantity
local CAMPAIGN_LIMIT = 21 -- admit.lua: the buy would take the account past its campaign's campaignPerAccount; detail: units left to it
local CAPTCHA_LOCKED = 30 -- issue_path.lua: too many wrong answers lately; detail: ms until the lock ends
