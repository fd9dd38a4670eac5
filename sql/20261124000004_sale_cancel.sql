-- Sale management (src/manage.rs): a cancelled sale keeps its window for the record and stops
-- admitting from `cancelled_at` on (its effective end is the earlier of the two). NULL: not
-- cancelled.
ALTER TABLE seckill_goods
    ADD COLUMN cancelled_at DATETIME(3) NULL;

-- The live view and the audit count a sale's orders by status.
CREATE INDEX ix_order_goods_status ON order_info (goods_id, status);
