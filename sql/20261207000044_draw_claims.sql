-- The claims a draw sale gave (issue #43, src/draws/record.rs `step`): one row per entry handed a
-- unit, a winner at the draw or one moved up from the waitlist, written by the waitlist's step as
-- it gives the claim. The order events (data.draw) and the grant read the entry's place from here;
-- the shop's order system can tell draw orders apart by it. A few rows a unit: bounded by the
-- sale's stock and the claims that lapsed, never by the entries.
CREATE TABLE sale_draw_claim (
    goods_id     BIGINT      NOT NULL,
    user_id      BIGINT      NOT NULL,
    -- the entry's place in the draw's order, 1 for the first
    place        INT         NOT NULL,
    claim_until  DATETIME(3) NOT NULL,
    PRIMARY KEY (goods_id, user_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
