-- A hot sale's stock may be split into several shards, each under a Redis hash tag of its own,
-- so one item's load spreads over a cluster's nodes (src/domain.rs, `Shard`). 1 = not split.
-- ("Shard" is the word for a part of a sale's stock; "bucket" means a rate limit's token bucket.)
ALTER TABLE seckill_goods
    ADD COLUMN stock_shards SMALLINT NOT NULL DEFAULT 1,
    ADD CONSTRAINT ck_seckill_shards CHECK (stock_shards BETWEEN 1 AND 64);
