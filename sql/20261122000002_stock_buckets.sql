-- A hot sale's stock may be split into several buckets, each under a Redis hash tag of its own,
-- so one item's load spreads over a cluster's shards (src/domain.rs, `Shard`). 1 = not split.
ALTER TABLE seckill_goods
    ADD COLUMN stock_buckets SMALLINT NOT NULL DEFAULT 1,
    ADD CONSTRAINT ck_seckill_buckets CHECK (stock_buckets BETWEEN 1 AND 64);
