-- A shop in front (src/identity): its shoppers log in at the shop, not here. Each shop subject
-- (the JWT's user claim) gets a `users` row of its own the first time it asks for a path, joins
-- a waiting room or looks at a result, so orders, buyer sets and results keep using numeric user
-- ids; such a row has no mobile and no password (it can never log in here). `subject` is
-- compared byte for byte (a shop's ids are case-sensitive).
ALTER TABLE users
    MODIFY COLUMN mobile VARCHAR(20) NULL,
    ADD COLUMN subject VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
    ADD UNIQUE KEY uk_users_subject (subject);

-- The shop's own reference for a sale's product (its SKU): carried in the grant a shopper takes
-- to the shop's checkout, and in the order events.
ALTER TABLE seckill_goods
    ADD COLUMN external_ref VARCHAR(255) NULL;
