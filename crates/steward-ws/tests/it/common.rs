//! Servers on 127.0.0.1 and helpers shared by the tests.

use std::future::Future;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use steward_ws::{Client, ClientBuilder, Event, Message};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, ChildStdout, Command};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

pub(crate) type ServerWs = WebSocketStream<TcpStream>;

/// Hang guard: generous, never a timing assertion.
pub(crate) async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(30), fut).await {
        Ok(v) => v,
        Err(_) => panic!("hang guard: {what} did not happen within 30 s"),
    }
}

/// A builder with a slow heartbeat so it never interferes, and fast reconnects.
pub(crate) fn builder(url: &str) -> ClientBuilder {
    Client::builder(url)
        .heartbeat(Duration::from_secs(30), Duration::from_secs(30))
        .connect_timeout(Duration::from_secs(10))
        .close_timeout(Duration::from_secs(2))
}

/// Builds and connects, failing the test with the error: every test's first step.
pub(crate) trait ConnectedExt {
    /// The session after its first connection succeeded.
    async fn connected(self) -> steward_ws::Session;
}

impl ConnectedExt for ClientBuilder {
    async fn connected(self) -> steward_ws::Session {
        self.build()
            .expect("valid client config")
            .connect()
            .await
            .expect("first connection")
    }
}

/// A tokio-tungstenite server: every connection runs `handler`.
pub(crate) async fn rust_server<F, Fut>(handler: F) -> String
where
    F: Fn(ServerWs) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let handler = std::sync::Arc::new(handler);
        while let Ok((tcp, _)) = listener.accept().await {
            let handler = handler.clone();
            tokio::spawn(async move {
                let config = WebSocketConfig::default()
                    .max_message_size(Some(64 << 20))
                    .max_frame_size(Some(64 << 20));
                if let Ok(ws) = tokio_tungstenite::accept_async_with_config(tcp, Some(config)).await
                {
                    handler(ws).await;
                }
            });
        }
    });
    format!("ws://{addr}/")
}

/// Echoes data messages until the connection ends.
pub(crate) async fn echo(mut ws: ServerWs) {
    while let Some(Ok(m)) = ws.next().await {
        if (m.is_text() || m.is_binary()) && ws.send(m).await.is_err() {
            break;
        }
    }
}

/// The next event, skipping nothing.
pub(crate) async fn next_event(events: &steward_ws::Events) -> Event {
    within("next event", events.recv())
        .await
        .expect("event stream ended")
}

/// The independent peer: `peer.py` run by the Python of the project's venv.
pub(crate) struct PyPeer {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    pub(crate) port: u16,
}

fn python() -> PathBuf {
    let python = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/pyenv/bin/python");
    assert!(
        python.exists(),
        "the Python WebSocket peer is missing ({}): run `cargo xtask setup`",
        python.display()
    );
    python
}

impl PyPeer {
    /// Starts `peer.py MODE ARGS...`, on `port` (0 = any).
    pub(crate) async fn start(args: &[&str], port: u16) -> PyPeer {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/it/peer.py");
        let mut child = Command::new(python())
            .arg(script)
            .args(args)
            .args(["--port", &port.to_string()])
            .stdout(Stdio::piped())
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start peer.py");
        let stdout = child.stdout.take().expect("stdout");
        let mut peer = PyPeer {
            child,
            lines: BufReader::new(stdout).lines(),
            port: 0,
        };
        let first = peer.line().await;
        peer.port = first
            .strip_prefix("PORT ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("peer.py said {first:?}, not PORT <n>"));
        peer
    }

    pub(crate) fn url(&self) -> String {
        format!(
            "ws://127.0.0.1:{}/realtime?model=test&key=secret",
            self.port
        )
    }

    /// The next line the peer printed.
    pub(crate) async fn line(&mut self) -> String {
        within("a line from peer.py", self.lines.next_line())
            .await
            .expect("read peer.py stdout")
            .expect("peer.py exited")
    }

    /// Kills the process (SIGKILL): the kernel resets its connections.
    pub(crate) async fn kill(mut self) {
        self.child.kill().await.expect("kill peer.py");
    }
}

/// A deterministic payload of `len` bytes.
pub(crate) fn payload(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Echo round trip helper.
pub(crate) async fn roundtrip(session: &steward_ws::Session, message: Message) {
    session.send(message.clone()).await.unwrap();
    let back = within("echo", session.recv()).await.expect("session ended");
    assert_eq!(back, message);
}

/// A reconnect policy that is on, doubles its delay from `initial_ms` up to
/// `max_ms` with 20 % jitter, and counts a link healthy after
/// `healthy_after` (`ReconnectConfig` is `#[non_exhaustive]`: no literal).
pub(crate) fn reconnect_policy(
    max_attempts: Option<u32>,
    initial_ms: u64,
    max_ms: u64,
    healthy_after: Duration,
) -> steward_ws::ReconnectConfig {
    let mut policy = steward_ws::ReconnectConfig::default();
    policy.enabled = true;
    policy.max_attempts = max_attempts;
    policy.initial_delay = Duration::from_millis(initial_ms);
    policy.max_delay = Duration::from_millis(max_ms);
    policy.multiplier = 2.0;
    policy.jitter = 0.2;
    policy.healthy_after = healthy_after;
    policy
}
