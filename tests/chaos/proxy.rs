//! A small TCP proxy the chaos runner puts in front of each node's gRPC port and of Redis (one per
//! node), so it can delay, refuse or black-hole one node's traffic: the partitions and slow links
//! this machine's kernel cannot make (no netem). Changing the mode cuts every open connection, so
//! clients see the new conditions at once instead of on their next connect.
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Forward as is.
    Pass = 0,
    /// Forward, holding every chunk back by the delay.
    Delay = 1,
    /// Accept and close at once: "connection reset" to the client.
    Refuse = 2,
    /// Accept and never answer: the client waits for its own timeout, as behind a dropped link.
    Blackhole = 3,
}

struct Shared {
    mode: AtomicU8,
    delay_ms: AtomicU64,
    cut: watch::Sender<u64>,
}

pub struct Proxy {
    pub port: u16,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `target` (host:port).
    pub async fn start(target: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy bind");
        let port = listener.local_addr().expect("proxy addr").port();
        let shared = Arc::new(Shared {
            mode: AtomicU8::new(Mode::Pass as u8),
            delay_ms: AtomicU64::new(0),
            cut: watch::channel(0).0,
        });
        let sh = Arc::clone(&shared);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let _ = client.set_nodelay(true);
                tokio::spawn(serve(client, target.clone(), Arc::clone(&sh)));
            }
        });
        Proxy { port, shared, task }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn set(&self, mode: Mode, delay: Duration) {
        self.shared.delay_ms.store(delay.as_millis() as u64, Ordering::SeqCst);
        self.shared.mode.store(mode as u8, Ordering::SeqCst);
        self.shared.cut.send_modify(|g| *g += 1);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        self.shared.cut.send_modify(|g| *g += 1);
    }
}

async fn serve(client: TcpStream, target: String, sh: Arc<Shared>) {
    let mut cut = sh.cut.subscribe();
    cut.mark_unchanged();
    match sh.mode.load(Ordering::SeqCst) {
        m if m == Mode::Refuse as u8 => return,
        m if m == Mode::Blackhole as u8 => {
            // Hold the socket, unread, until the mode changes.
            let _ = cut.changed().await;
            return;
        }
        _ => {}
    }
    let Ok(upstream) = TcpStream::connect(&target).await else { return };
    let _ = upstream.set_nodelay(true);
    let (cr, cw) = client.into_split();
    let (ur, uw) = upstream.into_split();
    tokio::select! {
        _ = pump(cr, uw, &sh) => {}
        _ = pump(ur, cw, &sh) => {}
        _ = cut.changed() => {}
    }
}

async fn pump(mut from: tokio::net::tcp::OwnedReadHalf, mut to: tokio::net::tcp::OwnedWriteHalf, sh: &Shared) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let d = sh.delay_ms.load(Ordering::SeqCst);
        if d > 0 {
            tokio::time::sleep(Duration::from_millis(d)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
