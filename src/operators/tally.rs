//! Per-sale, per-second counts for the operators' live view (`public/admin.html`): how many
//! buys each edge answered with each outcome, and how many orders each worker wrote.
//!
//! `/metrics` has the same counts per process, not per sale, and Prometheus may not be there
//! during a sale; the console needs one sale's picture across every edge and worker. So each
//! process counts locally ([`Tally::count`]: a short lock and an increment on the buy path) and
//! a task flushes the counts to Redis once a second ([`flush_every_second`]): `HINCRBY` into
//! one hash per sale and minute, `sk:{g:ID}:tally:MINUTE`, field `SECOND:series`, kept for
//! [`TALLY_TTL`]. [`read`] turns the last minutes back into one row per second.
//!
//! A process that dies or is stopped loses at most its last second of counts; the counts are a
//! picture, the audit (`crate::operators::audit`) is the proof. Only buys of a sale that exists are
//! counted (an unknown goods id writes nothing).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::aio::ConnectionLike;
use serde::Serialize;

use crate::domain::GoodsId;
use crate::plumbing::keys::{Keys, TALLY_TTL};
use crate::plumbing::metrics::OUTCOMES;

/// What is counted: the admission outcomes (`crate::plumbing::metrics::OUTCOMES`), then orders written.
pub const SERIES: [&str; OUTCOMES.len() + 1] = {
    let mut all = [""; OUTCOMES.len() + 1];
    let mut i = 0;
    while i < OUTCOMES.len() {
        all[i] = OUTCOMES[i];
        i += 1;
    }
    all[OUTCOMES.len()] = WRITTEN;
    all
};
/// The series of orders written by workers.
pub const WRITTEN: &str = "written";

/// This process's counts not yet flushed, by sale and second.
#[derive(Debug, Default)]
pub struct Tally {
    counts: Mutex<HashMap<(GoodsId, i64), [u64; SERIES.len()]>>,
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl Tally {
    /// Counts `n` of `series` (one of [`SERIES`]) for `goods`, in this second.
    pub fn count(&self, goods: GoodsId, series: &str, n: u64) {
        self.count_at(goods, now_secs(), series, n);
    }

    fn count_at(&self, goods: GoodsId, sec: i64, series: &str, n: u64) {
        let Some(i) = SERIES.iter().position(|s| *s == series) else {
            debug_assert!(false, "unknown series {series}");
            return;
        };
        let mut counts = self.counts.lock().expect("tally lock");
        counts.entry((goods, sec)).or_default()[i] += n;
    }

    /// Takes every count out (to flush them).
    fn take(&self) -> HashMap<(GoodsId, i64), [u64; SERIES.len()]> {
        std::mem::take(&mut *self.counts.lock().expect("tally lock"))
    }

    /// Puts counts back after a failed flush, so they go out with the next one.
    fn put_back(&self, counts: HashMap<(GoodsId, i64), [u64; SERIES.len()]>) {
        let mut mine = self.counts.lock().expect("tally lock");
        for (at, row) in counts {
            let into = mine.entry(at).or_default();
            for (a, b) in into.iter_mut().zip(row) {
                *a += b;
            }
        }
    }

    /// Writes every count to Redis: one pipeline per sale (its keys share its hash tag).
    pub async fn flush<C: ConnectionLike + Send>(&self, con: &mut C, keys: &Keys) {
        let counts = self.take();
        let mut by_goods: HashMap<GoodsId, Vec<(i64, [u64; SERIES.len()])>> = HashMap::new();
        for ((goods, sec), row) in counts {
            by_goods.entry(goods).or_default().push((sec, row));
        }
        for (goods, rows) in by_goods {
            let sale = keys.sale(goods);
            let mut pipe = redis::pipe();
            for (sec, row) in &rows {
                let key = sale.tally(sec.div_euclid(60));
                for (name, n) in SERIES.iter().zip(row).filter(|(_, n)| **n > 0) {
                    pipe.hincr(&key, format!("{}:{name}", sec.rem_euclid(60)), *n)
                        .ignore();
                }
                pipe.expire(&key, TALLY_TTL.as_secs() as i64).ignore();
            }
            if let Err(e) = pipe.query_async::<()>(con).await {
                tracing::debug!(error = %e, goods = goods.get(), "tally flush failed; kept");
                self.put_back(rows.into_iter().map(|(s, r)| ((goods, s), r)).collect());
            }
        }
    }
}

/// Flushes `tally` once a second until `shutdown`. Nothing is written once shutdown is
/// signalled (what is still counted then is lost, as when a process dies): a process told to
/// stop writes nothing more to Redis.
pub async fn flush_every_second(
    tally: std::sync::Arc<Tally>,
    mut con: crate::plumbing::redis_conn::RedisConn,
    keys: Keys,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        if *shutdown.borrow() {
            return;
        }
        tally.flush(&mut con, &keys).await;
    }
}

/// One sale's counts over a span of seconds: `series[name][i]` is the count in second
/// `from + i` (epoch seconds).
#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Series {
    pub from: i64,
    pub seconds: usize,
    pub series: HashMap<&'static str, Vec<u64>>,
}

/// The last `seconds` complete seconds of `goods` (up to [`TALLY_TTL`]).
pub async fn read<C: ConnectionLike + Send>(
    con: &mut C,
    keys: &Keys,
    goods: GoodsId,
    seconds: usize,
) -> redis::RedisResult<Series> {
    let seconds = seconds.clamp(1, TALLY_TTL.as_secs() as usize);
    let to = now_secs(); // exclusive: this second is still being counted
    let from = to - seconds as i64;
    let sale = keys.sale(goods);
    let mut pipe = redis::pipe();
    let minutes: Vec<i64> = (from.div_euclid(60)..=(to - 1).div_euclid(60)).collect();
    for m in &minutes {
        pipe.hgetall(sale.tally(*m));
    }
    let hashes: Vec<HashMap<String, u64>> = pipe.query_async(con).await?;
    let mut series: HashMap<&'static str, Vec<u64>> =
        SERIES.iter().map(|s| (*s, vec![0; seconds])).collect();
    for (minute, hash) in minutes.iter().zip(hashes) {
        for (field, n) in hash {
            let Some((sec, name)) = field.split_once(':') else {
                continue;
            };
            let (Ok(sec), Some(column)) = (sec.parse::<i64>(), series.get_mut(name)) else {
                continue;
            };
            let at = minute * 60 + sec;
            if (from..to).contains(&at) {
                column[(at - from) as usize] += n;
            }
        }
    }
    Ok(Series {
        from,
        seconds,
        series,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_add_up_per_sale_and_second_and_survive_a_failed_flush() {
        let t = Tally::default();
        let g = GoodsId::new(3).unwrap();
        t.count_at(g, 100, "queued", 2);
        t.count_at(g, 100, "queued", 1);
        t.count_at(g, 100, WRITTEN, 5);
        let taken = t.take();
        assert_eq!(taken.len(), 1);
        let row = taken.values().next().unwrap();
        assert_eq!(row[0], 3);
        assert_eq!(row[SERIES.len() - 1], 5);
        t.put_back(taken);
        t.count_at(g, 100, "queued", 1);
        let again: u64 = t.take().values().map(|r| r[0]).sum();
        assert_eq!(again, 4);
        assert!(t.take().is_empty());
    }

    #[test]
    fn the_series_are_the_outcomes_then_written() {
        assert_eq!(&SERIES[..OUTCOMES.len()], &OUTCOMES[..]);
        assert_eq!(SERIES[OUTCOMES.len()], "written");
    }
}
