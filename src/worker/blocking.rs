//! A bb8 pool of Redis connections for blocking reads (`XREADGROUP … BLOCK`).
//!
//! A blocking read would stall every request sharing a multiplexed connection, so each reader
//! checks out a connection of its own (to one server or a cluster: [`Target::connect`]). These
//! connections differ from the shared one in one setting: they wait long enough for a blocking
//! read to return (the shared connection gives up after 500 ms, shorter than a useful `BLOCK`).

use std::time::Duration;

use redis::RedisError;

use crate::plumbing::redis_conn::{RedisConn, Target};

/// How long a blocking read blocks for.
pub const BLOCK: Duration = Duration::from_millis(1000);

pub type Pool = bb8::Pool<Manager>;

pub struct Manager {
    target: Target,
}

impl bb8::ManageConnection for Manager {
    type Connection = RedisConn;
    type Error = RedisError;

    async fn connect(&self) -> Result<Self::Connection, Self::Error> {
        self.target.connect(BLOCK + Duration::from_secs(2)).await
    }

    async fn is_valid(&self, conn: &mut Self::Connection) -> Result<(), Self::Error> {
        redis::cmd("PING").query_async::<()>(conn).await
    }

    fn has_broken(&self, _: &mut Self::Connection) -> bool {
        false
    }
}

pub fn pool(target: Target) -> Pool {
    bb8::Pool::builder()
        .max_size(64)
        .connection_timeout(Duration::from_secs(2))
        .build_unchecked(Manager { target })
}
