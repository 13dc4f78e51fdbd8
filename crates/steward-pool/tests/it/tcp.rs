//! A pool of real TCP connections to a 127.0.0.1 echo server that drops
//! connections: the health check must notice.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use steward_pool::{CloseReason, Manager, Pool};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// An echo server; bumping the `drop_all` generation closes every
/// connection it holds (`dropped` counts them).
struct Echo {
    addr: std::net::SocketAddr,
    accepted: Arc<AtomicUsize>,
    dropped: Arc<AtomicUsize>,
    drop_all: watch::Sender<u64>,
}

async fn echo_server() -> Echo {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let (drop_all, rx) = watch::channel(0u64);
    let dropped = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    let gone = dropped.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            count.fetch_add(1, SeqCst);
            let mut rx = rx.clone();
            rx.borrow_and_update();
            let gone = gone.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 256];
                loop {
                    tokio::select! {
                        _ = rx.changed() => {
                            drop(sock);
                            gone.fetch_add(1, SeqCst);
                            return;
                        }
                        n = sock.read(&mut buf) => match n {
                            Ok(0) | Err(_) => return,
                            Ok(n) => if sock.write_all(&buf[..n]).await.is_err() { return },
                        },
                    }
                }
            });
        }
    });
    Echo {
        addr,
        accepted,
        dropped,
        drop_all,
    }
}

struct Tcp {
    addr: std::net::SocketAddr,
}

async fn ping(s: &mut TcpStream, msg: &[u8]) -> io::Result<()> {
    s.write_all(msg).await?;
    let mut back = vec![0u8; msg.len()];
    s.read_exact(&mut back).await?;
    if back != msg {
        return Err(io::Error::other("echo mismatch"));
    }
    Ok(())
}

impl Manager for Tcp {
    type Object = TcpStream;
    type Error = io::Error;

    async fn create(&self) -> io::Result<TcpStream> {
        TcpStream::connect(self.addr).await
    }

    async fn recycle(&self, s: &mut TcpStream) -> io::Result<()> {
        ping(s, b"ping").await
    }

    fn close(&self, _s: &mut TcpStream, _reason: CloseReason) {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_check_notices_dropped_connections() {
    let server = echo_server().await;
    let p = Pool::builder(Tcp { addr: server.addr })
        .max_size(3)
        .recycle_timeout(Some(Duration::from_secs(10)))
        .reaper_interval(None)
        .build()
        .unwrap();
    {
        let mut a = p.get().await.unwrap();
        let mut b = p.get().await.unwrap();
        ping(&mut a, b"hello").await.unwrap();
        ping(&mut b, b"world").await.unwrap();
    }
    assert_eq!(p.stats().idle, 2);
    // Reuse: no new connection.
    {
        let mut a = p.get().await.unwrap();
        ping(&mut a, b"again").await.unwrap();
    }
    assert_eq!(server.accepted.load(SeqCst), 2);
    // The server drops every connection; the pool must not hand them out.
    server.drop_all.send_modify(|g| *g += 1);
    // Both sockets closed on the server's side before the next checkout.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while server.dropped.load(SeqCst) < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "hang guard: the server did not drop its connections"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut c = p.get().await.unwrap();
    ping(&mut c, b"fresh").await.expect("a working connection");
    drop(c);
    let stats = p.stats();
    assert_eq!(stats.closed.broken, 2, "{stats:?}");
    assert_eq!(stats.size, 1);
    assert_eq!(server.accepted.load(SeqCst), 3);
}
