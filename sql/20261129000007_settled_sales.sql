-- Background work in proportion to what is live (src/operators/audit.rs, src/worker/mod.rs):
-- a sale that is over, drained and audited clean is *settled* (`settled_at`); workers, the
-- audit and the edges' metrics then leave it alone. Every change that can move its units (a
-- closed order, a unit given back, a restock or any other change, a reset, an audit fix) clears
-- `settled_at` and bumps `change_seq`; the audit settles a sale only if `change_seq` is still
-- what it read before auditing, so a change made during an audit is never lost.
ALTER TABLE seckill_goods
    ADD COLUMN settled_at DATETIME(3) NULL,
    ADD COLUMN change_seq BIGINT NOT NULL DEFAULT 0;

-- Discovery, the audit and /metrics ask for unsettled sales; the catalogue for sales not over.
CREATE INDEX ix_seckill_goods_settled ON seckill_goods (settled_at);
CREATE INDEX ix_seckill_goods_end ON seckill_goods (end_at);
