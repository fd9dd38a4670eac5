-- flashgate schema. Applied by `flashgate migrate` (sqlx migrations, embedded in the binary).
-- All times are UTC (sqlx sets the session time zone to +00:00).

CREATE TABLE users (
    id          BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    mobile      VARCHAR(20)  NOT NULL,
    nickname    VARCHAR(64)  NOT NULL,
    -- md5(salt[0] + salt[2] + clientHash + salt[5] + salt[4]), hex (the server round of the double MD5)
    password    CHAR(32)     NOT NULL,
    salt        VARCHAR(16)  NOT NULL,
    created_at  DATETIME(3)  NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    UNIQUE KEY uk_users_mobile (mobile)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE TABLE goods (
    id      BIGINT         NOT NULL AUTO_INCREMENT PRIMARY KEY,
    name    VARCHAR(64)    NOT NULL,
    title   VARCHAR(255)   NOT NULL,
    img     VARCHAR(255)   NOT NULL DEFAULT '',
    detail  TEXT           NOT NULL,
    price   DECIMAL(10, 2) NOT NULL,
    stock   INT            NOT NULL DEFAULT 0
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- One flash sale of one goods. `stock` is what is left in MySQL (the worker decrements it);
-- `initial_stock` is what the sale started with (used by reset and by the invariant checks).
-- The nullable tuning columns override the configured defaults for this sale only.
CREATE TABLE seckill_goods (
    id             BIGINT         NOT NULL AUTO_INCREMENT PRIMARY KEY,
    goods_id       BIGINT         NOT NULL,
    seckill_price  DECIMAL(10, 2) NOT NULL,
    stock          INT            NOT NULL,
    initial_stock  INT            NOT NULL,
    start_at       DATETIME(3)    NOT NULL,
    end_at         DATETIME(3)    NOT NULL,
    user_rate      DOUBLE         NULL,
    user_burst     INT            NULL,
    gate_rate      DOUBLE         NULL,
    gate_burst     INT            NULL,
    path_factor    INT            NULL,
    UNIQUE KEY uk_seckill_goods_goods (goods_id),
    CONSTRAINT ck_seckill_stock CHECK (stock >= 0)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- Order ids are handed out by the worker in blocks of 1024: block * 1024 + i, i < 1024, so a batch
-- needs one cheap statement for all its ids and the ids are known before the INSERT. The block
-- counter is this one-row table, bumped with `UPDATE ... SET next_block = LAST_INSERT_ID(next_block
-- + 1)` in a statement of its own (autocommit), so the row lock lasts one statement, not a batch;
-- LAST_INSERT_ID(expr) makes the new value this connection's to read. Portable: MySQL 8 and
-- MariaDB alike (MariaDB's SEQUENCE, used before, does not exist in MySQL).
CREATE TABLE order_block (
    id          TINYINT NOT NULL PRIMARY KEY,
    next_block  BIGINT  NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
INSERT INTO order_block (id, next_block) VALUES (1, 0);

-- status: 0 unpaid, 1 paid, 2 closed (unpaid past its time; stock given back), 3 refunded.
CREATE TABLE order_info (
    id              BIGINT         NOT NULL PRIMARY KEY,
    user_id         BIGINT         NOT NULL,
    goods_id        BIGINT         NOT NULL,
    goods_name      VARCHAR(64)    NOT NULL,
    goods_count     INT            NOT NULL DEFAULT 1,
    goods_price     DECIMAL(10, 2) NOT NULL,
    status          TINYINT        NOT NULL DEFAULT 0,
    -- the Redis stream entry that made this order: what a replay is recognised by
    request_id      VARCHAR(64)    NOT NULL,
    created_at      DATETIME(3)    NOT NULL,
    paid_at         DATETIME(3)    NULL,
    closed_at       DATETIME(3)    NULL,
    -- 1 once a closed order's unit is back in Redis too (the closer retries until it is)
    stock_returned  TINYINT        NOT NULL DEFAULT 0,
    KEY ix_order_status_created (status, created_at),
    KEY ix_order_user (user_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- The live flash-sale orders: one per (user, goods). The unique index is the last line against
-- duplicates; a closed order's row is deleted so its unit can be sold again.
CREATE TABLE seckill_order (
    id        BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    user_id   BIGINT NOT NULL,
    order_id  BIGINT NOT NULL,
    goods_id  BIGINT NOT NULL,
    UNIQUE KEY uk_seckill_user_goods (user_id, goods_id),
    UNIQUE KEY uk_seckill_order (order_id),
    KEY ix_seckill_goods (goods_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
