--[[
  take.lua: take one unit from a stock bucket of a split sale, for another bucket.

  A hot sale's stock may be split into buckets with hash tags of their own (src/domain.rs,
  `Shard`), and every shopper buys from their home bucket. When the home bucket is empty the edge
  moves a unit over from another: this script takes it (here), then the edge adds it to the home
  bucket's stock (`INCR`) and runs admit.lua there again. The two buckets may live on different
  cluster nodes, so the move is two steps; the edge finishes it even if the shopper goes away.

  KEYS (one bucket's hash tag):
    1 stock    string: units left in this bucket
  Returns 1 if a unit was taken, 0 if the bucket is empty.
]]

if tonumber(redis.call('GET', KEYS[1]) or '0') <= 0 then
  return 0
end
redis.call('DECR', KEYS[1])
return 1
