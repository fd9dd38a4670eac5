//! Failed-login limits, kept in Redis so they hold across every edge.
//!
//! A password guesser is slowed down twice: per mobile (the account under attack) and per
//! client address (one machine trying many accounts; IPv6 counted by /64). Every attempt counts
//! against both in a fixed window (`login_window_secs`, starting at the first attempt) *before*
//! the password is checked; once either count is past its limit the login is refused with 429
//! and `Retry-After` until that window ends, so the right password does not get in either. A
//! successful login counts too: a login is rare for a person (a session lasts), and a script
//! logging a few of its own accounts in over and over must not take the login pool from
//! everyone else (an outside test did, with 20 accounts from two addresses).
//!
//! **The owner is not locked out with the guesser.** A browser that logged in as a mobile gets a
//! device cookie (`fg_device`, 32 random hex digits; `login:devices:MOBILE` keeps the mobile's
//! [`DEVICES`] latest for 30 days, so the keys are bounded by the accounts, not by the logins).
//! Its attempts count against the device, not the mobile: a guesser who keeps the mobile's
//! window full keeps out everyone but the owner's own browsers (OWASP's "device cookies"). A
//! device cookie of another mobile, or an invented one, counts against the mobile as before.
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
use crate::plumbing::redis_conn::{RedisConn, count_in_window};

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
    /// The browsers this mobile logged in on (`login:devices:MOBILE`).
    devices_key: String,
    /// The browser's device cookie and its counter, if it sent one.
    device: Option<Device>,
    /// The counter the account side is counted on, once looked up ([`Guard::account_key`]).
    account: tokio::sync::OnceCell<String>,
}

struct Device {
    id: String,
    failures_key: String,
}

/// The browsers one mobile is known on (the latest).
pub const DEVICES: isize = 5;

/// A device cookie's value: 32 lowercase hex digits.
pub fn is_device(s: &str) -> bool {
    crate::domain::lower_hex(s, 32)
}

impl Guard {
    pub fn new(
        redis: &RedisConn,
        keys: &Keys,
        limits: Limits,
        mobile: &Mobile,
        client: IpAddr,
        device: Option<&str>,
    ) -> Self {
        Self {
            redis: redis.clone(),
            limits,
            mobile_key: keys.login_failures_mobile(mobile.as_str()),
            address_key: keys.login_failures_address(crate::domain::counted(client)),
            devices_key: keys.login_devices(mobile.as_str()),
            device: device.filter(|d| is_device(d)).map(|d| Device {
                id: d.to_string(),
                failures_key: keys.login_failures_device(d),
            }),
            account: tokio::sync::OnceCell::new(),
        }
    }

    /// The counter this attempt's account side is counted on: the device's, if the browser
    /// logged in as this mobile before; else the mobile's.
    async fn account_key(&self) -> Result<&str, AppError> {
        let key = self
            .account
            .get_or_try_init(|| async {
                if let Some(d) = &self.device {
                    let known: Option<f64> =
                        self.redis.clone().zscore(&self.devices_key, &d.id).await?;
                    if known.is_some() {
                        return Ok::<_, AppError>(d.failures_key.clone());
                    }
                }
                Ok(self.mobile_key.clone())
            })
            .await?;
        Ok(key)
    }

    /// Counts this attempt against the mobile and the address *before* the password is
    /// checked, and refuses it (`TooManyLogins`, with the wait) if either count is then past its
    /// limit. Counting first is what makes the limit hold under a burst: with check-then-count,
    /// 20 guesses sent together all passed the check before any was counted (security review,
    /// row 3). Each counter is one atomic `MULTI` (`SET 0 EX window NX`, `INCR`, `PTTL`) on its
    /// own key, so the two may sit on different cluster slots; the two are sent together.
    pub async fn attempt(&self) -> Result<(), AppError> {
        let window = self.limits.window.as_secs();
        let account = self.account_key().await?.to_string();
        let (mut a, mut b) = (self.redis.clone(), self.redis.clone());
        let ((by_mobile, mobile_ttl), (by_address, address_ttl)) = tokio::try_join!(
            count_in_window(&mut a, &account, window),
            count_in_window(&mut b, &self.address_key, window),
        )?;
        let mut wait_ms = 0i64;
        if by_mobile > i64::from(self.limits.per_mobile) {
            wait_ms = wait_ms.max(mobile_ttl.max(1));
        }
        if by_address > i64::from(self.limits.per_address) {
            wait_ms = wait_ms.max(address_ttl.max(1));
        }
        if wait_ms > 0 {
            return Err(AppError::TooManyLogins {
                retry_after_ms: wait_ms as u64,
            });
        }
        Ok(())
    }

    /// A successful login (its attempt still counts): returns the device cookie to set, this
    /// browser's, known now as one of this mobile's for
    /// [`crate::plumbing::keys::DEVICE_TTL`] (a new one if it had none, or another mobile's).
    pub async fn succeeded(&self) -> Result<String, AppError> {
        let id = match &self.device {
            Some(d) if self.account_key().await? == d.failures_key => d.id.clone(),
            _ => hex::encode(rand::random::<[u8; 16]>()),
        };
        let ttl = crate::plumbing::keys::DEVICE_TTL.as_secs();
        let _: () = redis::pipe()
            .atomic()
            .zadd(&self.devices_key, &id, crate::plumbing::clock::now_ms())
            .ignore()
            .zremrangebyrank(&self.devices_key, 0, -(DEVICES + 1))
            .ignore()
            .expire(&self.devices_key, ttl as i64)
            .ignore()
            .query_async(&mut self.redis.clone())
            .await?;
        Ok(id)
    }
}
