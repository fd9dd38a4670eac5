//! The Lua scripts on a real Redis. Their contract, case by case, is the suite of
//! `lua/cases/*.json` that `flashgate lua check` runs (`admission::script_check`): it runs here
//! too, on the shipped scripts, and a tuned script with a bug is shown to fail it by name. What
//! the cases cannot say lives below: the script cache lost and reloaded, Redis's own clock, and
//! that one call writes one queue entry (the cases read a queue by the shoppers it holds).

use flashgate::admission::script_check;
use flashgate::admission::scripts::{self, Admission, Scripts};
use flashgate::domain::{GoodsId, UserId};
use flashgate::plumbing::keys::Keys;
use flashgate::plumbing::redis_conn::RedisConn;
use redis::AsyncCommands;

#[tokio::test]
async fn the_shipped_scripts_pass_every_case_of_the_contract_suite() {
    let (mut con, _) = crate::helpers::script_redis("l").await;
    let report = script_check::run(&mut con, &scripts::builtin_files(None).unwrap())
        .await
        .unwrap();
    assert!(report.passed(), "{}", report.text());
    for (script, _) in script_check::CASES {
        assert!(
            report.cases.iter().filter(|c| c.script == script).count() >= 2,
            "{script} has cases"
        );
    }
}

/// The shipped set with `script`'s text changed by `edit`.
pub fn tuned(script: &str, edit: impl Fn(&str) -> String) -> scripts::Files {
    let mut files = scripts::builtin_files(None).unwrap();
    let text = files.get_mut(script).unwrap();
    let changed = edit(text);
    assert_ne!(&changed, text, "the edit must change {script}");
    *text = changed;
    files
}

/// admit.lua that forgets the duplicate marker: a shopper can buy twice.
pub fn admit_without_duplicate_marker() -> scripts::Files {
    tuned("admit.lua", |t| {
        t.replace(
            "elseif redis.call('SADD', KEYS[3], uid) == 0 then",
            "elseif false then",
        )
    })
}

#[tokio::test]
async fn a_tuned_admit_that_forgets_the_duplicate_marker_fails_naming_the_cases() {
    let (mut con, _) = crate::helpers::script_redis("l").await;
    let report = script_check::run(&mut con, &admit_without_duplicate_marker())
        .await
        .unwrap();
    assert!(!report.passed());
    let failed: Vec<&str> = report.failed().iter().map(|c| c.case.as_str()).collect();
    assert!(
        failed.contains(&"duplicate: the buckets are spent, nothing else"),
        "{failed:?}"
    );
    assert!(failed.contains(&"duplicates inside one call"), "{failed:?}");
    assert!(
        report.text().contains("expected \"DUPLICATE\", got OK"),
        "{}",
        report.text()
    );
    // every failing case is admit.lua's: the others still pass
    assert!(report.failed().iter().all(|c| c.script == "admit.lua"));
}

#[tokio::test]
async fn a_script_that_touches_a_key_it_was_not_given_fails_the_cluster_check() {
    let (mut con, _) = crate::helpers::script_redis("l").await;
    let files = tuned("take.lua", |t| {
        t.replace(
            "redis.call('DECR', KEYS[1])",
            "redis.call('DECR', KEYS[1]) redis.call('INCR', 'fgcheck-elsewhere')",
        )
    });
    let report = script_check::run(&mut con, &files).await.unwrap();
    let _: () = con.del("fgcheck-elsewhere").await.unwrap();
    let text = report.text();
    // on one server the suite sees the key; on a cluster, where the key may be in another
    // slot, the cluster refuses the command first: the suite names the fault either way
    assert!(
        text.contains("take.lua touched fgcheck-elsewhere, a key it was not given")
            || text.contains("take.lua touched a key it was not given (the cluster refused it"),
        "{text}"
    );
}

#[tokio::test]
async fn a_batch_that_decides_otherwise_than_one_by_one_fails() {
    // a tuned admit.lua that reads the stock afresh for the first shopper of a call only if it
    // is alone: in one call, shoppers after the first see a stock of 1 more than left
    let (mut con, _) = crate::helpers::script_redis("l").await;
    let files = tuned("admit.lua", |t| {
        t.replace(
            "      stock = stock - q\n",
            "      if n == 1 then stock = stock - q end\n",
        )
    });
    let report = script_check::run(&mut con, &files).await.unwrap();
    let failed: Vec<&str> = report.failed().iter().map(|c| c.case.as_str()).collect();
    assert!(
        failed.contains(&"the stock runs out mid-call, then a buyer comes back"),
        "{}",
        report.text()
    );
}

#[tokio::test]
async fn a_set_that_cannot_be_checked_is_named() {
    let err = |files| async move {
        let (mut con, _) = crate::helpers::script_redis("l").await;
        script_check::run(&mut con, &files)
            .await
            .unwrap_err()
            .to_string()
    };
    let broken = tuned("room.lua", |t| format!("{t}\nlocal = oops"));
    let e = err(broken).await;
    assert!(e.starts_with("room.lua does not compile"), "{e}");
    let mut missing = scripts::builtin_files(None).unwrap();
    missing.remove("mend.lua");
    let e = err(missing).await;
    assert!(e.contains("mend.lua: missing from the set"), "{e}");
    let changed = tuned("issue_path.lua", |t| {
        t.replacen("per_user now?", "per_user", 1)
    });
    let e = err(changed).await;
    assert!(e.contains("issue_path.lua: its args differ"), "{e}");
    let dir = std::env::temp_dir().join(format!("fg-none-{}", uuid::Uuid::new_v4()));
    let e = scripts::files_from_dir(&dir).unwrap_err().to_string();
    assert!(e.ends_with("no such directory"), "{e}");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("codes.lua"), scripts::CODES.1).unwrap();
    let e = scripts::files_from_dir(&dir).unwrap_err().to_string();
    assert!(e.starts_with("the set lacks admit.lua"), "{e}");
    std::fs::remove_dir_all(dir).unwrap();
}

struct Sale {
    con: RedisConn,
    keys: Keys,
    goods: GoodsId,
    scripts: Scripts,
}

const PATH: &str = "0123456789abcdef0123456789abcdef";

impl Sale {
    /// A sale from t=1000 to t=100000 (ms), user bucket 1/s burst 2, gate as given.
    async fn new(stock: i64, gate_rate: f64, gate_burst: i64) -> Self {
        let (mut con, keys) = crate::helpers::script_redis("l").await;
        let goods = GoodsId::new(1).unwrap();
        let k = keys.sale(goods);
        let _: () = redis::pipe()
            .hset_multiple(
                k.meta(),
                &[
                    ("start_ms", "1000".to_string()),
                    ("end_ms", "100000".to_string()),
                    ("user_rate", "1".to_string()),
                    ("user_burst", "2".to_string()),
                    ("gate_rate", gate_rate.to_string()),
                    ("gate_burst", gate_burst.to_string()),
                ],
            )
            .set(k.stock(), stock)
            .query_async(&mut con)
            .await
            .unwrap();
        Self {
            con,
            keys,
            goods,
            scripts: Scripts::load(None).unwrap(),
        }
    }

    async fn give_path(&mut self, user: i64) {
        let key = self.keys.sale(self.goods).user(UserId::new(user).unwrap());
        let _: () = self.con.set_ex(key, PATH, 60).await.unwrap();
    }

    async fn admit(&mut self, user: i64, path: &str, now: i64) -> Admission {
        self.admit_run(user, path, now, "").await
    }

    /// `again` is a shopper's fourth argument: "1" when the edge runs a request again after
    /// moving a unit in.
    async fn admit_run(&mut self, user: i64, path: &str, now: i64, again: &str) -> Admission {
        let mut one = self.admit_batch(&[(user, path, again)], now).await;
        one.remove(0)
    }

    /// One call deciding `shoppers` (user, path sent, again) in order; `now` < 0 means Redis TIME.
    async fn admit_batch(&mut self, shoppers: &[(i64, &str, &str)], now: i64) -> Vec<Admission> {
        let users = shoppers.iter().map(|s| UserId::new(s.0).unwrap());
        let keys = self.keys.sale(self.goods).admit(users);
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let mut args = vec![if now < 0 {
            String::new()
        } else {
            now.to_string()
        }];
        for (user, path, again) in shoppers {
            args.extend([
                user.to_string(),
                path.to_string(),
                format!("req-{user}"),
                again.to_string(),
                "1".to_string(),
                String::new(),
            ]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let reply = self
            .scripts
            .get()
            .admit
            .invoke(&mut self.con, &keys, &args)
            .await
            .unwrap();
        Admission::from_batch_reply(reply, shoppers.len()).unwrap()
    }

    /// (stock, buyers, queue length)
    async fn state(&mut self) -> (i64, i64, i64) {
        let k = self.keys.sale(self.goods);
        redis::pipe()
            .get(k.stock())
            .scard(k.buyers())
            .xlen(k.queue())
            .query_async(&mut self.con)
            .await
            .unwrap()
    }

    async fn cleanup(mut self) {
        self.con
            .delete_matching(&self.keys.everything())
            .await
            .unwrap();
    }
}

fn queued(a: &Admission) -> bool {
    matches!(a, Admission::Queued { .. })
}

#[tokio::test]
async fn script_flush_is_survived_by_reloading_on_noscript() {
    let mut sale = Sale::new(2, 1000.0, 1000).await;
    sale.give_path(5).await;
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut sale.con)
        .await
        .unwrap();
    let exists: Vec<bool> = redis::cmd("SCRIPT")
        .arg("EXISTS")
        .arg(&sale.scripts.get().admit.sha)
        .query_async(&mut sale.con)
        .await
        .unwrap();
    assert_eq!(exists, vec![false]);
    assert!(queued(&sale.admit(5, PATH, 2000).await));
    sale.cleanup().await;
}

#[tokio::test]
async fn without_a_pinned_clock_the_script_uses_redis_time() {
    let mut sale = Sale::new(2, 1000.0, 1000).await;
    sale.give_path(6).await;
    // the window is t=1000..100000 ms: Redis TIME today is long after it
    assert_eq!(
        sale.admit(6, PATH, 0).await,
        Admission::NotStarted { starts_in_ms: 1000 }
    );
    let reply = sale.admit_batch(&[(6, PATH, "")], -1).await;
    assert_eq!(reply, vec![Admission::Ended]);
    sale.cleanup().await;
}

#[tokio::test]
async fn one_call_writes_one_queue_entry_holding_its_shoppers_in_order() {
    let mut sale = Sale::new(10, 1000.0, 1000).await;
    for u in [5, 3, 9] {
        sale.give_path(u).await;
    }
    let out = sale
        .admit_batch(
            &[(5, PATH, ""), (4, PATH, ""), (3, PATH, ""), (9, PATH, "")],
            5000,
        )
        .await;
    let ids: Vec<&str> = out
        .iter()
        .filter_map(|a| match a {
            Admission::Queued { entry_id } => Some(entry_id.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(ids.len(), 3);
    assert!(ids.iter().all(|id| *id == ids[0]), "one entry: {ids:?}");
    let k = sale.keys.sale(sale.goods);
    let r: redis::streams::StreamRangeReply = sale.con.xrange_all(k.queue()).await.unwrap();
    assert_eq!(r.ids.len(), 1);
    let e = &r.ids[0];
    assert_eq!(e.id, ids[0]);
    assert_eq!(e.get::<String>("u").unwrap(), "5,3,9");
    assert_eq!(e.get::<String>("r").unwrap(), "req-5,req-3,req-9");
    assert_eq!(e.get::<String>("t").unwrap(), "5000");
    let admitted: i64 = sale.con.hget(k.meta(), "admitted").await.unwrap();
    assert_eq!(admitted, 3);
    assert_eq!(sale.state().await, (7, 3, 1));
    // a call that admits no one writes no entry
    let out = sale
        .admit_batch(&[(5, PATH, ""), (4, PATH, "")], 5000)
        .await;
    assert_eq!(out, vec![Admission::Duplicate, Admission::BadPath]);
    assert_eq!(sale.state().await, (7, 3, 1));
    sale.cleanup().await;
}
