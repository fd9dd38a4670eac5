-- Orders out (src/events): the transactional outbox. An order event is written in the same
-- transaction as the change it reports (the worker's batch, a payment, a close, a failure), so
-- there is never an event for a rolled-back change nor a change without its event. Nothing is
-- written while no sink is configured (FLASHGATE_WEBHOOK_URL, FLASHGATE_EVENTS_EXCHANGE).
--
-- A created event has no row here: the order row it reports is its record (the relay builds its
-- body from `order_info`), so the worker's batch adds one small delivery row per order and sink,
-- not a copy of every order. Paid, closed and failed events are written here, as they were.
-- `event_id` is the CloudEvents `id` and the webhook's `webhook-id`: the same on every retry,
-- the receiver's idempotency key. It names what it reports (`created-ORDER`, `paid-ORDER`,
-- `closed-ORDER`, `failed-ENTRY-USER`): each happens once, so writing it twice is impossible. `data` is the event's `data`, as it was when written.
CREATE TABLE order_event (
    id          BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    event_id    VARCHAR(64)  NOT NULL,
    -- 0 created, 1 paid, 2 closed, 3 failed
    type        TINYINT      NOT NULL,
    -- the order (0 for a failed buy that never had one)
    order_id    BIGINT       NOT NULL,
    goods_id    BIGINT       NOT NULL,
    user_id     BIGINT       NOT NULL,
    data        TEXT         NOT NULL,
    created_at  DATETIME(3)  NOT NULL,
    UNIQUE KEY uk_order_event_id (event_id),
    KEY ix_order_event_order (order_id),
    KEY ix_order_event_created (created_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- One row per event and sink, written with the event: what is left to deliver where. It names
-- its event by `event_id` (and carries its type and order), so the worker writes it straight
-- from the batch, with no lookup of the event rows. The relay claims due rows with `FOR UPDATE
-- SKIP LOCKED` in `next_at` order (several workers share the outbox, none sends an event another
-- is sending), and never an order's paid or closed event while its created one is pending.
-- state: 0 pending, 1 delivered, 2 parked (given up: an operator replays it).
CREATE TABLE event_delivery (
    sink        VARCHAR(64)  NOT NULL,
    event_id    VARCHAR(64)  NOT NULL,
    type        TINYINT      NOT NULL,
    order_id    BIGINT       NOT NULL,
    state       TINYINT      NOT NULL DEFAULT 0,
    attempts    INT          NOT NULL DEFAULT 0,
    next_at     DATETIME(3)  NOT NULL,
    last_error  VARCHAR(255) NULL,
    -- since when its attempts fail (NULL: none failed); past the retry horizon it is parked
    failing_since DATETIME(3) NULL,
    -- when the event was written (the backlog's age, replays --since)
    created_at  DATETIME(3)  NOT NULL,
    done_at     DATETIME(3)  NULL,
    PRIMARY KEY (sink, event_id),
    -- the relay's claim: a sink's pending rows in next_at order, stopping at its LIMIT
    KEY ix_event_delivery_due (sink, state, next_at),
    KEY ix_event_delivery_order (sink, order_id, state),
    KEY ix_event_delivery_created (created_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- The sinks the relays have seen, and which an endpoint's 410 Gone disabled (an operator
-- re-enables it: `flashgate events enable SINK`).
CREATE TABLE event_sink (
    sink          VARCHAR(64)   NOT NULL PRIMARY KEY,
    target        VARCHAR(2048) NOT NULL,
    disabled_at   DATETIME(3)   NULL,
    disabled_why  VARCHAR(255)  NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
