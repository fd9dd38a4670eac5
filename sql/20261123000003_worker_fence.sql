-- The worker fence (src/worker/fence.rs): one row per stream consumer with an epoch. A worker's
-- batch transaction reads its own row under a shared lock and commits only if the epoch is the
-- one it held when it read the batch; a worker that takes over another's stale entries first
-- bumps that worker's epoch (waiting for its open transactions), so the two can never both act on
-- one entry.
CREATE TABLE worker_fence (
    consumer    VARCHAR(64) NOT NULL PRIMARY KEY,
    epoch       BIGINT      NOT NULL,
    updated_at  DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
