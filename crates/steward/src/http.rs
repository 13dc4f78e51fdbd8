//! The `/health` and `/metrics` endpoint: hyper 1, HTTP/1.1, GET and HEAD.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Weak;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::error::Error;
use crate::steward::Inner;

/// How long open connections get to finish once shutdown starts.
const DRAIN: Duration = Duration::from_secs(5);
/// A client must send its request headers within this.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Most connections served at once; more wait in the OS backlog.
const MAX_CONNECTIONS: usize = 64;

const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

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

/// The running endpoint. Dropping it (with the last `Steward`) stops the
/// accept loop; [`Server::shutdown`] also waits for it.
pub(crate) struct Server {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Server {
    pub(crate) fn start(listener: TcpListener, steward: Weak<Inner>) -> Self {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(serve(listener, steward, stopped));
        Self { stop, task }
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

async fn serve(listener: TcpListener, steward: Weak<Inner>, mut stopped: watch::Receiver<bool>) {
    let addr = listener.local_addr().ok();
    tracing::info!(?addr, "health endpoint listening");
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            () = stop_requested(&mut stopped) => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept(), if connections.len() < MAX_CONNECTIONS => match accepted {
                Ok((stream, _peer)) => {
                    connections.spawn(connection(stream, steward.clone(), stopped.clone()));
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

async fn connection(
    stream: tokio::net::TcpStream,
    steward: Weak<Inner>,
    mut stopped: watch::Receiver<bool>,
) {
    let service = hyper::service::service_fn(move |req| {
        let steward = steward.clone();
        async move { Ok::<_, Infallible>(respond(&req, &steward)) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service);
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(error) = result {
                tracing::debug!(%error, "health endpoint connection ended with an error");
            }
        }
        () = stop_requested(&mut stopped) => {
            // Finish the request in flight, then close.
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

fn respond(req: &Request<Incoming>, steward: &Weak<Inner>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let Some(inner) = steward.upgrade() else {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "steward is shutting down\n",
        );
    };
    let steward = crate::Steward::from_inner(inner);
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
