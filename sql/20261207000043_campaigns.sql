-- Campaigns (issue #42): sales made with the same `campaign` (the sizes of one shoe) share one
-- limit per account across them, `campaignPerAccount`. One row per campaign holds that limit,
-- written by the first sale made in it: every later sale of the campaign must state the same
-- (sale management refuses another, 500724), and the row's primary key is what two sales made
-- at once with different limits meet on. A sale names its campaign in `seckill_goods.campaign`
-- (NULL: none, every sale before this version). The name is 1 to 32 of [a-z0-9._-], compared
-- byte for byte (it is the campaign's Redis hash tag).
CREATE TABLE sale_campaign (
    name        VARCHAR(32) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
    per_account INT         NOT NULL,
    created_at  DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

ALTER TABLE seckill_goods
    ADD COLUMN campaign VARCHAR(32) CHARACTER SET ascii COLLATE ascii_bin NULL,
    ADD KEY ix_seckill_goods_campaign (campaign);
