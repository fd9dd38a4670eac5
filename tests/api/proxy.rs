//! A TCP proxy a test can cut and restore ("MySQL unreachable for a while" for one test's
//! worker, without stopping the MariaDB every other test is using), or hold: bytes are read but
//! not passed on until released, so a statement can be caught on its way.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, watch};
use tokio::task::JoinSet;

pub struct Proxy {
    pub port: u16,
    up: Arc<AtomicBool>,
    flowing: watch::Sender<bool>,
    conns: Arc<Mutex<JoinSet<()>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Forwards 127.0.0.1:port to `upstream`.
    pub async fn start(upstream: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let (flowing, _) = watch::channel(true);
        let conns = Arc::new(Mutex::new(JoinSet::new()));
        let upstream = upstream.to_string();
        let accept = {
            let (up, conns, flowing) = (up.clone(), conns.clone(), flowing.clone());
            tokio::spawn(async move {
                while let Ok((inbound, _)) = listener.accept().await {
                    if !up.load(Ordering::SeqCst) {
                        drop(inbound); // refused: closed at once
                        continue;
                    }
                    let upstream = upstream.clone();
                    let flowing = flowing.clone();
                    conns.lock().await.spawn(async move {
                        if let Ok(outbound) = TcpStream::connect(&upstream).await {
                            let (in_read, in_write) = inbound.into_split();
                            let (out_read, out_write) = outbound.into_split();
                            tokio::join!(
                                pump(in_read, out_write, flowing.subscribe()),
                                pump(out_read, in_write, flowing.subscribe()),
                            );
                        }
                    });
                }
            })
        };
        Self {
            port,
            up,
            flowing,
            conns,
            accept,
        }
    }

    /// Drops every open connection and refuses new ones.
    pub async fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.conns.lock().await.abort_all();
    }

    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }

    /// Keeps what either side sends from the other until [`Proxy::release`].
    pub fn hold(&self) {
        self.flowing.send_replace(false);
    }

    pub fn release(&self) {
        self.flowing.send_replace(true);
    }
}

/// Copies `from` to `to`, holding each read while the proxy is held.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut flowing: watch::Receiver<bool>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if flowing.wait_for(|f| *f).await.is_err() || to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}
