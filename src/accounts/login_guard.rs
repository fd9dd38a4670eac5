//! Failed-login limits, kept in Redis so they hold across every edge.
//!
//! A password guesser is slowed down twice: per mobile (the account under attack) and per
//! client address (one machine trying many accounts; IPv6 counted by /64). Every attempt counts
//! against both in a fixed window (`login_window_secs`, starting at the first attempt) *before*
//! the password is checked; once either count is past its limit the login is refused with 429
//! and `Retry-After` until that window ends, so the right password does not get in either. A
//! successful login takes its attempt back: the mobile's count is cleared, the address's
//! lowered by one (one success must not clear a guesser's tries at other accounts).
//!
//! Each counter is one key (`login:fail:m:MOBILE`, `login:fail:a:ADDRESS`, see
//! [`crate::plumbing::keys`]), written as `SET key 0 EX window NX` + `INCR key` + `PTTL key` in
//! one `MULTI`: the window is set once, by the first attempt, and every key expires by itself.

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
            address_key: keys.login_failures_address(crate::http::proxy::counted(client)),
        }
    }

    /// Counts this attempt against the mobile and the address *before* the password is
    /// checked, and refuses it (`TooManyLogins`, with the wait) if either count is then past its
    /// limit. Counting first is what makes the limit hold under a burst: with check-then-count,
    /// 20 guesses sent together all passed the check before any was counted (security review,
    /// row 3). Each counter is one atomic `MULTI` (`SET 0 EX window NX`, `INCR`, `PTTL`) on its
    /// own key, so the two may sit on different cluster slots; the two are sent together.
    pub async fn attempt(&self) -> Result<(), AppError> {
        let window = self.limits.window.as_secs().max(1);
        let count = |key: String| {
            let mut con = self.redis.clone();
            async move {
                redis::pipe()
                    .atomic()
                    .cmd("SET")
                    .arg(&key)
                    .arg(0)
                    .arg("EX")
                    .arg(window)
                    .arg("NX")
                    .ignore()
                    .incr(&key, 1)
                    .pttl(&key)
                    .query_async::<(u32, i64)>(&mut con)
                    .await
            }
        };
        let ((by_mobile, mobile_ttl), (by_address, address_ttl)) = tokio::try_join!(
            count(self.mobile_key.clone()),
            count(self.address_key.clone()),
        )?;
        let mut wait_ms = 0i64;
        if by_mobile > self.limits.per_mobile {
            wait_ms = wait_ms.max(mobile_ttl.max(1));
        }
        if by_address > self.limits.per_address {
            wait_ms = wait_ms.max(address_ttl.max(1));
        }
        if wait_ms > 0 {
            return Err(AppError::TooManyLogins {
                retry_after_ms: wait_ms as u64,
            });
        }
        Ok(())
    }

    /// A successful login: the mobile's failures are forgiven, and the attempt no longer
    /// counts against the address (its other failures still do: one success must not clear a
    /// guesser's tries at other accounts).
    pub async fn succeeded(&self) -> Result<(), AppError> {
        let _: () = redis::pipe()
            .del(&self.mobile_key)
            .ignore()
            .query_async(&mut self.redis.clone())
            .await?;
        let left: i64 = self.redis.clone().decr(&self.address_key, 1).await?;
        if left <= 0 {
            let _: () = self.redis.clone().del(&self.address_key).await?;
        }
        Ok(())
    }
}
