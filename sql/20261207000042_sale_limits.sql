-- A sale's rules (issue #42): the most units one buy may take (`per_buy`) and one account may
-- hold in the sale (`per_account`). The defaults are the one rule there was before: one unit per
-- buy and per account.
ALTER TABLE seckill_goods
    ADD COLUMN per_buy INT NOT NULL DEFAULT 1,
    ADD COLUMN per_account INT NOT NULL DEFAULT 1;

-- A buy's units are its order's `goods_count` (1 before quantities). A buy may carry an
-- Idempotency-Key, kept as a digest (32 hex digits, '' without one): the order is one per
-- (user, goods, key), so an account may hold several orders of one sale, each its own buy, and
-- a buy without a key is still one per (user, goods). The closer gives the order's units back
-- to the buy the key names, so order_info keeps it too.
ALTER TABLE order_info
    ADD COLUMN buy_key VARCHAR(32) NOT NULL DEFAULT '';
ALTER TABLE seckill_order
    ADD COLUMN buy_key VARCHAR(32) NOT NULL DEFAULT '',
    ADD UNIQUE KEY uk_seckill_user_goods_key (user_id, goods_id, buy_key),
    DROP INDEX uk_seckill_user_goods;
