-- Orders out, the common case made cheap: a worker batch's created events are one row per sink
-- here, not a delivery row per order and sink (event_delivery). The relay claims a batch row
-- with `FOR UPDATE SKIP LOCKED`, sends its events (bodies built from the order rows, as before),
-- and marks it done; an event of it that was not delivered moves to event_delivery, where it is
-- retried, parked and replayed one by one exactly as before. So a batch of 1,000 orders costs
-- the worker one small insert and the relay one update, where it cost 1,000 inserts and 1,000
-- updates of a row with three secondary indexes. Created events an older version left in
-- event_delivery are still delivered from there.
CREATE TABLE event_batch (
    id          BIGINT      NOT NULL AUTO_INCREMENT PRIMARY KEY,
    sink        VARCHAR(64) NOT NULL,
    -- the orders whose created events this row holds: a JSON array of order ids
    orders      MEDIUMTEXT  NOT NULL,
    events      INT         NOT NULL,
    -- the lowest and highest of them (a later event of an order waits while its created one is
    -- in a pending batch: the relay looks among the batches whose range holds the order)
    first_order BIGINT      NOT NULL,
    last_order  BIGINT      NOT NULL,
    -- 0 pending, 1 done: sent once, each event either delivered or handed to event_delivery
    state       TINYINT     NOT NULL DEFAULT 0,
    -- how many of its events the sink took on that first attempt
    delivered   INT         NOT NULL DEFAULT 0,
    created_at  DATETIME(3) NOT NULL,
    done_at     DATETIME(3) NULL,
    -- the relay's claim: a sink's pending batches, oldest first
    KEY ix_event_batch_due (sink, state, id),
    -- replays --since
    KEY ix_event_batch_created (created_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
