//! The client of `loadtest/push-hold.sh`: joins a sale's waiting room for each shopper, then
//! holds one event stream (`GET /api/seckill/events`) per shopper open against one edge, spread
//! over several loopback source addresses, and records for each stream when its ticket was told
//! `through` and when it was told `sold_out`, with its rank (from its first `waiting` event).
//!
//! Usage: cargo run --release --example push_hold -- BASE TOKENS_CSV GOODS SECONDS SOURCES
//!   BASE      http://127.0.0.1:PORT (the edge)
//!   SOURCES   comma-separated source addresses (127.0.0.1,127.0.0.2,...)
//! Prints one line a stream: `user rank through_ms sold_out_ms events` (0: never), after
//! SECONDS, or sooner once every stream has been told `through` or `sold_out`; and on stderr how
//! many streams opened and failed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio::sync::Semaphore;

#[derive(Default, Clone)]
struct Seen {
    rank: i64,
    through_ms: i64,
    sold_out_ms: i64,
    events: u64,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The number after `"field":` in `json`, if any.
fn field(json: &str, name: &str) -> Option<i64> {
    let at = json.find(&format!("\"{name}\":"))? + name.len() + 3;
    let rest = &json[at..];
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '-'))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

async fn hold(
    addr: SocketAddr,
    source: std::net::IpAddr,
    token: String,
    goods: String,
    done: Arc<AtomicUsize>,
    until: tokio::time::Instant,
) -> std::io::Result<Seen> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source, 0))?;
    let mut stream = socket.connect(addr).await?;
    let req = format!(
        "GET /api/seckill/events?goodsId={goods} HTTP/1.1\r\nHost: {addr}\r\n\
         Authorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n"
    );
    stream.write_all(req.as_bytes()).await?;
    let mut seen = Seen::default();
    let mut buf = vec![0u8; 4096];
    let mut text = String::new();
    loop {
        let n = match tokio::time::timeout_at(until, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Err(_) => break,
            Ok(Ok(n)) => n,
            Ok(Err(e)) => return Err(e),
        };
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
        while let Some(end) = text.find("\n\n") {
            let block: String = text.drain(..end + 2).collect();
            if !block.contains("event: room") {
                continue;
            }
            seen.events += 1;
            let data = block.split("data: ").nth(1).unwrap_or_default();
            if data.contains("\"state\":\"waiting\"") && seen.rank == 0 {
                if let (Some(p), Some(t)) = (field(data, "position"), field(data, "through")) {
                    seen.rank = p - 1 + t + 1; // 1-based here: 0 means unknown
                }
            } else if data.contains("\"state\":\"through\"") && seen.through_ms == 0 {
                seen.through_ms = now_ms();
            } else if data.contains("\"state\":\"sold_out\"") && seen.sold_out_ms == 0 {
                seen.sold_out_ms = now_ms();
            }
            if seen.through_ms > 0 || seen.sold_out_ms > 0 {
                // its page would go on to the buy (or stop): this stream's story is told
                done.fetch_add(1, Relaxed);
                return Ok(seen);
            }
        }
    }
    Ok(seen)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    anyhow::ensure!(
        args.len() == 6,
        "usage: BASE TOKENS_CSV GOODS SECONDS SOURCES"
    );
    let (base, tokens, goods) = (&args[1], &args[2], args[3].clone());
    let seconds: u64 = args[4].parse()?;
    let sources: Vec<std::net::IpAddr> = args[5]
        .split(',')
        .map(|s| s.parse())
        .collect::<Result<_, _>>()?;
    let addr: SocketAddr = base.trim_start_matches("http://").parse()?;
    let users: Vec<(String, String)> = std::fs::read_to_string(tokens)?
        .lines()
        .skip(1)
        .filter_map(|l| {
            let mut f = l.split(',');
            Some((f.next()?.to_string(), f.next()?.to_string()))
        })
        .collect();

    // every shopper joins the room first (500 at a time)
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(500)
        .build()?;
    let gate = Arc::new(Semaphore::new(500));
    let mut joins = tokio::task::JoinSet::new();
    for (_, token) in &users {
        let (http, gate, token) = (http.clone(), gate.clone(), token.clone());
        let url = format!("{base}/api/seckill/room");
        let body = format!("{{\"goodsId\":{goods}}}");
        joins.spawn(async move {
            let _p = gate.acquire_owned().await;
            http.post(url)
                .bearer_auth(token)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .map(|r| r.status().is_success())
                .unwrap_or(false)
        });
    }
    let mut joined = 0;
    while let Some(ok) = joins.join_next().await {
        joined += usize::from(ok.unwrap_or(false));
    }
    eprintln!("push_hold: {joined} of {} joined the room", users.len());
    drop(http);

    // then one stream each, opened 1,000 at a time
    let until = tokio::time::Instant::now() + Duration::from_secs(seconds);
    let done = Arc::new(AtomicUsize::new(0));
    let mut streams = tokio::task::JoinSet::new();
    for (i, (user, token)) in users.iter().enumerate() {
        let source = sources[i % sources.len()];
        let (token, goods, done, user) = (token.clone(), goods.clone(), done.clone(), user.clone());
        streams.spawn(async move {
            let r = hold(addr, source, token, goods, done, until).await;
            (user, r)
        });
        // paced: 500 connects, then a breath, so the edge's accept queue is not overrun
        if i % 500 == 499 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    eprintln!("push_hold: {} streams opening", users.len());
    let (mut ok, mut failed) = (0, 0);
    let mut out = String::new();
    while let Some(r) = streams.join_next().await {
        match r {
            Ok((user, Ok(s))) => {
                ok += 1;
                out.push_str(&format!(
                    "{user} {} {} {} {}\n",
                    s.rank, s.through_ms, s.sold_out_ms, s.events
                ));
            }
            _ => failed += 1,
        }
    }
    eprintln!("push_hold: {ok} streams held, {failed} failed");
    print!("{out}");
    Ok(())
}
