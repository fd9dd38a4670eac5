-- contract: keys stock queue meta | args stock admitted delta | codes OK CHANGED
--[[
  mend.lua: the audit's repair of one shard's stock (`flashgate audit --fix`), applied only if
  the shard is still as the audit read it: at rest (its queue empty), the same stock, the same
  admitted count. Otherwise it writes nothing, so a repair computed from a snapshot can never
  undo a buy that happened since.

  KEYS (one shard's hash tag):
    1 stock    string: units left
    2 queue    stream: admitted, unwritten buys
    3 meta     hash: its `admitted` counter
  ARGV:
    1 the stock the audit read
    2 the admitted count the audit read ('0' when absent)
    3 units to add (negative: to take away)

  Returns {OK, stock after} or {CHANGED} (nothing written): the shard moved since it was read,
  or the change would take the stock below zero.
]]

local stock = tonumber(redis.call('GET', KEYS[1]) or '0')
local admitted = redis.call('HGET', KEYS[3], 'admitted') or '0'
local delta = tonumber(ARGV[3])
if stock ~= tonumber(ARGV[1]) or admitted ~= ARGV[2] or redis.call('XLEN', KEYS[2]) ~= 0
    or stock + delta < 0 then
  return {CHANGED}
end
return {OK, redis.call('INCRBY', KEYS[1], delta)}
