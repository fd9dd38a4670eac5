//! A bb8 pool of Redis connections for blocking reads (`XREADGROUP … BLOCK`).
//!
//! A blocking read would stall every request sharing a multiplexed connection, so each reader
//! checks out a connection of its own. The manager here differs from bb8-redis's in one setting:
//! its connections wait long enough for a blocking read to return (bb8-redis's use the client's
//! 500 ms default response timeout, shorter than a useful `BLOCK`).

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, RedisError};

/// How long a blocking read blocks for.
pub const BLOCK: Duration = Duration::from_millis(1000);

pub type Pool = bb8::Pool<Manager>;

pub struct Manager {
    client: Client,
}

impl bb8::ManageConnection for Manager {
    type Connection = MultiplexedConnection;
    type Error = RedisError;

    async fn connect(&self) -> Result<Self::Connection, Self::Error> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(BLOCK + Duration::from_secs(2)));
        self.client
            .get_multiplexed_async_connection_with_config(&config)
            .await
    }

    async fn is_valid(&self, conn: &mut Self::Connection) -> Result<(), Self::Error> {
        redis::cmd("PING").query_async::<()>(conn).await
    }

    fn has_broken(&self, _: &mut Self::Connection) -> bool {
        false
    }
}

pub async fn pool(redis_url: &str) -> anyhow::Result<Pool> {
    let client = Client::open(redis_url)?;
    Ok(bb8::Pool::builder()
        .max_size(64)
        .connection_timeout(Duration::from_secs(2))
        .build_unchecked(Manager { client }))
}
