-- Draw sales (issue #43, src/draws/): a sale whose units go to entries drawn at random instead
-- of to the fastest buyers. One row per draw sale, beside its seckill_goods row.
--
-- seed: 32 bytes from the OS's CSPRNG, drawn when the sale is made; its SHA-256 (commitment) is
-- public from then on, the seed itself only once drawn_at is set. secret: 32 more random bytes,
-- never published: the key of the entries' pseudonymous digests and of the proof-of-work
-- challenges' signatures. drawn_at: set once, by the first draw; a second draw is refused.
CREATE TABLE sale_draw (
    goods_id        BIGINT      NOT NULL PRIMARY KEY,
    register_from   DATETIME(3) NOT NULL,
    register_until  DATETIME(3) NOT NULL,
    claim_for_secs  INT         NOT NULL,
    seed            BINARY(32)  NOT NULL,
    commitment      CHAR(64)    NOT NULL,
    secret          BINARY(32)  NOT NULL,
    drawn_at        DATETIME(3) NULL,
    -- how many entries the draw ordered (NULL before it)
    entries         INT         NULL,
    KEY ix_sale_draw_due (drawn_at, register_until)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
