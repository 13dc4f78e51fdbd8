//! The `/health` and `/metrics` endpoint: hyper 1, HTTP/1.1, GET and HEAD.
//!
//! Bounded per connection: hyper's header read timeout, a read timeout and a
//! write timeout on the socket itself ([`Deadlines`]: no progress for that
//! long fails the connection, so a client that pipelines requests and never
//! reads the answers is cut), a maximum age, and a cap on open connections
//! (a semaphore; beyond it a connection gets a `503` and is closed).

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{Instant, Sleep};

use crate::error::Error;
use crate::health::{Health, HttpHealth};
use crate::http_config::HttpConfig;

/// What the endpoint serves: implemented by the steward it belongs to,
/// which it holds weakly (the endpoint never keeps a steward alive).
pub(crate) trait Source: Send + Sync + 'static {
    /// The `/health` snapshot.
    fn health(self: Arc<Self>) -> Health;
    /// The `/metrics` text.
    fn metrics_text(self: Arc<Self>) -> String;
}

/// How long open connections get to finish once shutdown starts, or once
/// they reach their maximum age.
const DRAIN: Duration = Duration::from_secs(5);

const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// How long a refused connection gets to take its `503` and close.
const REFUSE_LINGER: Duration = Duration::from_secs(1);

/// What a refused connection is told.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\nRetry-After: 1\r\n\r\n";

/// Refuses what cannot work: a non-loopback address without
/// `allow_remote`, no connection allowed, a zero timeout.
pub(crate) fn check(addr: SocketAddr, config: &HttpConfig) -> Result<(), Error> {
    if !addr.ip().is_loopback() && !config.allow_remote {
        return Err(Error::InvalidConfig {
            field: "http_addr",
            reason: format!(
                "{addr} is not a loopback address; the endpoint has no authentication \
                 (set `http.allow_remote` to listen there anyway)"
            ),
        });
    }
    if config.max_connections == 0 {
        return Err(Error::InvalidConfig {
            field: "http.max_connections",
            reason: "must be at least 1".into(),
        });
    }
    for (field, value) in [
        ("http.header_read_timeout_ms", config.header_read_timeout),
        ("http.read_timeout_ms", config.read_timeout),
        ("http.write_timeout_ms", config.write_timeout),
        ("http.max_connection_age_ms", config.max_connection_age),
    ] {
        if value.is_zero() {
            return Err(Error::InvalidConfig {
                field,
                reason: "must be more than 0 ms".into(),
            });
        }
    }
    Ok(())
}

/// Binds at build time, so a taken address fails `build`.
pub(crate) fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), Error> {
    let bind = |addr| -> std::io::Result<(TcpListener, SocketAddr)> {
        let std = std::net::TcpListener::bind(addr)?;
        std.set_nonblocking(true)?;
        let local = std.local_addr()?;
        Ok((TcpListener::from_std(std)?, local))
    };
    bind(addr).map_err(|source| Error::Bind { addr, source })
}

/// The endpoint's connection counters.
#[derive(Default)]
pub(crate) struct Counters {
    open: AtomicU64,
    accepted: AtomicU64,
    refused: AtomicU64,
    timed_out: AtomicU64,
    aged_out: AtomicU64,
}

impl Counters {
    pub(crate) fn health(&self) -> HttpHealth {
        HttpHealth {
            open_connections: self.open.load(Relaxed),
            accepted: self.accepted.load(Relaxed),
            refused: self.refused.load(Relaxed),
            timed_out: self.timed_out.load(Relaxed),
            aged_out: self.aged_out.load(Relaxed),
        }
    }
}

/// One served connection: counted open while it lives, its slot given back
/// on drop.
struct Slot {
    counters: Arc<Counters>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.counters.open.fetch_sub(1, Relaxed);
    }
}

/// The running endpoint. Dropping it (with the last `Steward`) stops the
/// accept loop; [`Server::shutdown`] also waits for it.
pub(crate) struct Server {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    counters: Arc<Counters>,
}

impl Server {
    pub(crate) fn start(
        listener: TcpListener,
        steward: Weak<dyn Source>,
        config: HttpConfig,
    ) -> Self {
        let (stop, stopped) = watch::channel(false);
        let counters = Arc::new(Counters::default());
        let task = tokio::spawn(serve(
            listener,
            steward,
            stopped,
            config,
            Arc::clone(&counters),
        ));
        Self {
            stop,
            task,
            counters,
        }
    }

    pub(crate) fn counters(&self) -> Arc<Counters> {
        Arc::clone(&self.counters)
    }

    /// Stops accepting, lets open connections finish (at most [`DRAIN`]),
    /// then waits for the task.
    pub(crate) async fn shutdown(self) {
        self.stop.send_replace(true);
        // Err only if the task panicked or was cancelled by the runtime:
        // either way it is over.
        let _ = self.task.await;
    }
}

/// Resolves when a stop is asked for or the sender is gone.
async fn stop_requested(stopped: &mut watch::Receiver<bool>) {
    let _ = stopped.wait_for(|s| *s).await;
}

async fn serve(
    listener: TcpListener,
    steward: Weak<dyn Source>,
    mut stopped: watch::Receiver<bool>,
    config: HttpConfig,
    counters: Arc<Counters>,
) {
    let addr = listener.local_addr().ok();
    tracing::info!(
        ?addr,
        max_connections = config.max_connections,
        "health endpoint listening"
    );
    let slots = Arc::new(Semaphore::new(config.max_connections));
    // Refused connections told so and closed politely, at most this many
    // at once; beyond, they are dropped.
    let refusing = Arc::new(Semaphore::new(config.max_connections));
    let config = Arc::new(config);
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            () = stop_requested(&mut stopped) => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
                        if let Some(closing) = refuse(stream, peer, &counters, &refusing) {
                            connections.spawn(closing);
                        }
                        continue;
                    };
                    counters.open.fetch_add(1, Relaxed);
                    counters.accepted.fetch_add(1, Relaxed);
                    let slot = Slot { counters: Arc::clone(&counters), _permit: permit };
                    connections.spawn(connection(
                        stream,
                        steward.clone(),
                        stopped.clone(),
                        Arc::clone(&config),
                        slot,
                    ));
                }
                Err(error) => {
                    // Out of file descriptors and the like: back off rather
                    // than spin.
                    tracing::warn!(%error, "health endpoint accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    // The port stops accepting at once.
    drop(listener);
    let drained = tokio::time::timeout(DRAIN, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = connections.len(),
            "health endpoint connections cut at shutdown"
        );
        connections.shutdown().await;
    }
    tracing::info!(?addr, "health endpoint stopped");
}

/// Every slot is taken: the connection is refused. While few refusals are
/// in progress it gets a `503` and a polite close (its request read and
/// dropped, so the close is not a reset that could destroy the answer),
/// all within [`REFUSE_LINGER`]; otherwise it is simply dropped.
fn refuse(
    stream: TcpStream,
    peer: SocketAddr,
    counters: &Counters,
    refusing: &Arc<Semaphore>,
) -> Option<impl Future<Output = ()> + Send + 'static> {
    let refused = counters.refused.fetch_add(1, Relaxed).saturating_add(1);
    // The first refusal and then every 100th, so a flood does not flood the log.
    if refused % 100 == 1 {
        tracing::warn!(%peer, refused, "health endpoint at its connection cap: connection refused");
    }
    let permit = Arc::clone(refusing).try_acquire_owned().ok()?;
    Some(async move {
        let _permit = permit;
        let _ = tokio::time::timeout(REFUSE_LINGER, tell_busy(stream)).await;
    })
}

/// Writes the `503`, ends our side, and reads what the client sends until
/// it closes.
async fn tell_busy(mut stream: TcpStream) -> io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(BUSY).await?;
    stream.shutdown().await?;
    let mut sink = [0_u8; 1024];
    while stream.read(&mut sink).await? > 0 {}
    Ok(())
}

async fn connection(
    stream: TcpStream,
    steward: Weak<dyn Source>,
    mut stopped: watch::Receiver<bool>,
    config: Arc<HttpConfig>,
    slot: Slot,
) {
    let service = hyper::service::service_fn(move |req| {
        let steward = steward.clone();
        async move { Ok::<_, Infallible>(respond(&req, &steward)) }
    });
    let io = Deadlines::new(stream, config.read_timeout, config.write_timeout);
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        .serve_connection(TokioIo::new(io), service);
    let mut conn = std::pin::pin!(conn);
    let aged = tokio::time::sleep(config.max_connection_age);
    let result = tokio::select! {
        result = conn.as_mut() => Some(result),
        () = aged => {
            slot.counters.aged_out.fetch_add(1, Relaxed);
            tracing::debug!("health endpoint connection reached its maximum age");
            None
        }
        () = stop_requested(&mut stopped) => None,
    };
    let result = match result {
        Some(result) => result,
        None => {
            // Finish the request in flight, then close; the socket's
            // timeouts still apply, the drain bounds the rest.
            conn.as_mut().graceful_shutdown();
            match tokio::time::timeout(DRAIN, conn).await {
                Ok(result) => result,
                Err(_) => return,
            }
        }
    };
    if let Err(error) = result {
        if is_timeout(&error) {
            slot.counters.timed_out.fetch_add(1, Relaxed);
        }
        tracing::debug!(%error, "health endpoint connection ended with an error");
    }
}

/// A read, write or header timeout.
fn is_timeout(error: &hyper::Error) -> bool {
    if error.is_timeout() {
        return true;
    }
    let mut source = std::error::Error::source(error);
    while let Some(e) = source {
        if e.downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::TimedOut)
        {
            return true;
        }
        source = e.source();
    }
    false
}

/// A socket whose reads and writes fail with `TimedOut` once they have
/// waited that long with no progress. A write that moves bytes also
/// restarts the read clock (the client is alive); the clocks run only
/// while hyper waits on the socket.
struct Deadlines {
    io: TcpStream,
    read_timeout: Duration,
    write_timeout: Duration,
    read: Clock,
    write: Clock,
}

/// One direction's deadline, armed on the first `Pending` after progress.
struct Clock {
    sleep: Pin<Box<Sleep>>,
    armed: bool,
}

impl Clock {
    fn new() -> Self {
        Self {
            sleep: Box::pin(tokio::time::sleep(Duration::ZERO)),
            armed: false,
        }
    }

    /// Called when the socket said `Pending`: arms the deadline if it is
    /// not yet, then fails once it has passed (the sleep wakes the task).
    fn poll_pending(
        &mut self,
        cx: &mut Context<'_>,
        timeout: Duration,
        what: &str,
    ) -> Poll<io::Error> {
        if !self.armed {
            self.armed = true;
            self.sleep.as_mut().reset(Instant::now() + timeout);
        }
        ready!(self.sleep.as_mut().poll(cx));
        Poll::Ready(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("{what} made no progress for {} ms", timeout.as_millis()),
        ))
    }
}

impl Deadlines {
    fn new(io: TcpStream, read_timeout: Duration, write_timeout: Duration) -> Self {
        Self {
            io,
            read_timeout,
            write_timeout,
            read: Clock::new(),
            write: Clock::new(),
        }
    }

    /// After a write: progress disarms both clocks.
    fn wrote<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match poll {
            Poll::Ready(result) => {
                self.write.armed = false;
                self.read.armed = false;
                Poll::Ready(result)
            }
            Poll::Pending => {
                match self
                    .write
                    .poll_pending(cx, self.write_timeout, "writing the answer")
                {
                    Poll::Ready(error) => Poll::Ready(Err(error)),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl AsyncRead for Deadlines {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(result) => {
                this.read.armed = false;
                Poll::Ready(result)
            }
            Poll::Pending => {
                match this
                    .read
                    .poll_pending(cx, this.read_timeout, "reading a request")
                {
                    Poll::Ready(error) => Poll::Ready(Err(error)),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl AsyncWrite for Deadlines {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.io).poll_write(cx, buf);
        this.wrote(cx, poll)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.wrote(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.io).poll_flush(cx);
        this.wrote(cx, poll)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.io).poll_shutdown(cx);
        this.wrote(cx, poll)
    }
}

fn respond(req: &Request<Incoming>, steward: &Weak<dyn Source>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let Some(steward) = steward.upgrade() else {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "steward is shutting down\n",
        );
    };
    // HEAD: hyper sends the headers (length included) and no body.
    match req.uri().path() {
        "/health" => match serde_json::to_vec(&steward.health()) {
            Ok(body) => with_type(StatusCode::OK, body, "application/json"),
            Err(error) => text(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("serialising the health snapshot failed: {error}\n"),
            ),
        },
        "/metrics" => with_type(
            StatusCode::OK,
            steward.metrics_text().into_bytes(),
            PROMETHEUS_TEXT,
        ),
        "/" => text(
            StatusCode::OK,
            "steward: /health (JSON), /metrics (Prometheus)\n",
        ),
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /health or /metrics\n",
        ),
    }
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    with_type(
        status,
        body.as_bytes().to_vec(),
        "text/plain; charset=utf-8",
    )
}

fn with_type(
    status: StatusCode,
    body: Vec<u8>,
    content_type: &'static str,
) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}
