//! Failed-login limits, kept in Redis so they hold across every edge.
//!
//! A password guesser is slowed down twice: per mobile (the account under attack) and per
//! client address (one machine trying many accounts). Each failed login counts against both in
//! a fixed window (`login_window_secs`, starting at the first failure); once either count reaches
//! its limit the login is refused with 429 and `Retry-After` until that window ends, *before*
//! the password is checked, so the right password does not get in either. A successful login
//! clears the mobile's count (not the address's: one success must not clear a guesser's tries at
//! other accounts).
//!
//! Each counter is one key (`login:fail:m:MOBILE`, `login:fail:a:ADDRESS`, see
//! [`crate::plumbing::keys`]), written as `SET key 0 EX window NX` + `INCR key` in one `MULTI`: the window
//! is set once, by the first failure, and every key expires by itself.

use std::net::IpAddr;
use std::time::Duration;

use redis::AsyncCommands;

use crate::domain::Mobile;
use crate::error::AppError;
use crate::plumbing::keys::Keys;
use crate::plumbing::redis_conn::RedisConn;

/// The limits, from the settings.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub per_mobile: u32,
    pub per_address: u32,
    pub window: Duration,
}

/// The two counters of one login attempt.
pub struct Guard {
    redis: RedisConn,
    limits: Limits,
    mobile_key: String,
    address_key: String,
}

impl Guard {
    pub fn new(
        redis: &RedisConn,
        keys: &Keys,
        limits: Limits,
        mobile: &Mobile,
        client: IpAddr,
    ) -> Self {
        Self {
            redis: redis.clone(),
            limits,
            mobile_key: keys.login_failures_mobile(mobile.as_str()),
            address_key: keys.login_failures_address(client),
        }
    }

    /// `Err(TooManyLogins)` if the mobile or the address is over its limit now.
    pub async fn check(&self) -> Result<(), AppError> {
        let (mut a, mut b) = (self.redis.clone(), self.redis.clone());
        // two keys, two slots on a cluster: two commands, sent together
        let (by_mobile, by_address) = tokio::try_join!(
            a.get::<_, Option<u32>>(&self.mobile_key),
            b.get::<_, Option<u32>>(&self.address_key),
        )?;
        let over = [
            (
                by_mobile.unwrap_or(0) >= self.limits.per_mobile,
                &self.mobile_key,
            ),
            (
                by_address.unwrap_or(0) >= self.limits.per_address,
                &self.address_key,
            ),
        ];
        let mut wait_ms = 0i64;
        for (is_over, key) in over {
            if is_over {
                let ttl: i64 = self.redis.clone().pttl(key).await?;
                wait_ms = wait_ms.max(ttl.max(1));
            }
        }
        if wait_ms > 0 {
            return Err(AppError::TooManyLogins {
                retry_after_ms: wait_ms as u64,
            });
        }
        Ok(())
    }

    /// Counts a failed login against the mobile and the address.
    pub async fn failed(&self) -> Result<(), AppError> {
        let window = self.limits.window.as_secs().max(1);
        for key in [&self.mobile_key, &self.address_key] {
            let _: () = redis::pipe()
                .atomic()
                .cmd("SET")
                .arg(key)
                .arg(0)
                .arg("EX")
                .arg(window)
                .arg("NX")
                .ignore()
                .incr(key, 1)
                .ignore()
                .query_async(&mut self.redis.clone())
                .await?;
        }
        Ok(())
    }

    /// A successful login: the mobile's failures are forgiven.
    pub async fn succeeded(&self) -> Result<(), AppError> {
        let _: () = self.redis.clone().del(&self.mobile_key).await?;
        Ok(())
    }
}
