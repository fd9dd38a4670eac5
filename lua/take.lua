-- contract: keys stock | args | codes OK SOLD_OUT
--[[
  take.lua: take one unit from a stock shard of a split sale, for another shard.

  A hot sale's stock may be split into shards with hash tags of their own (src/domain.rs,
  `Shard`), and every shopper buys from their home shard. When the home shard is empty the edge
  moves a unit over from another: this script takes it (here), then the edge adds it to the home
  shard's stock (`INCR`) and runs admit.lua there again. The two shards may live on different
  cluster nodes, so the move is two steps; the edge finishes it even if the shopper goes away.

  KEYS (one shard's hash tag):
    1 stock    string: units left in this shard
  Returns {OK} if a unit was taken, {SOLD_OUT} if the shard is empty (lua/codes.lua).
]]

if tonumber(redis.call('GET', KEYS[1]) or '0') <= 0 then
  return {SOLD_OUT}
end
redis.call('DECR', KEYS[1])
return {OK}
