//! A real `redis-server` for tests: a free 127.0.0.1 port, a temporary
//! directory, `appendonly yes` + `appendfsync always`, no RDB snapshots.
//! Killed (SIGKILL) on drop.
//!
//! If `redis-server` is missing it panics telling to run `cargo xtask setup`:
//! tests that need Redis fail rather than skip.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running (or stopped, between `kill` and `start`) Redis server.
pub struct RedisServer {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    extra: Vec<String>,
}

/// The program to run: `STEWARD_REDIS_SERVER` if set, else `redis-server`
/// from the PATH.
fn program() -> String {
    std::env::var("STEWARD_REDIS_SERVER").unwrap_or_else(|_| "redis-server".into())
}

impl RedisServer {
    /// Starts a server and waits until it answers PING.
    pub fn start() -> RedisServer {
        Self::start_with(&[])
    }

    /// Starts a server with extra `--name value` arguments.
    pub fn start_with(extra: &[&str]) -> RedisServer {
        let dir = tempfile::tempdir().expect("tempdir for redis-server");
        let mut server = RedisServer {
            port: 0,
            dir,
            child: None,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        // A port found free can be taken by someone else before the server
        // binds it: try a few.
        for _ in 0..5 {
            server.port = crate::free_port().expect("a free port on 127.0.0.1");
            if server.try_spawn() {
                return server;
            }
        }
        panic!(
            "redis-server did not start; its log:\n{}",
            server.log_tail()
        );
    }

    /// `redis://127.0.0.1:<port>/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// `redis://127.0.0.1:<port>/0?ns=<ns>`.
    pub fn url_ns(&self, ns: &str) -> String {
        format!("{}?ns={ns}", self.url())
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's data directory (the AOF lives here).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Kills the server with SIGKILL (no shutdown save) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same port and directory (it reloads
    /// its AOF) and waits until it answers PING.
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(30);
        // The port may linger briefly after the kill.
        while !self.try_spawn() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not restart; its log:\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Sends one command (inline protocol) and returns the first reply line.
    pub fn command(&self, line: &str) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to redis-server");
        s.set_read_timeout(Some(Duration::from_secs(10))).ok();
        s.write_all(format!("{line}\r\n").as_bytes()).expect("send");
        let mut r = BufReader::new(s);
        let mut reply = String::new();
        r.read_line(&mut reply).expect("reply");
        reply.trim_end().to_string()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Spawns the server; `false` if it exited (e.g. port taken).
    fn try_spawn(&mut self) -> bool {
        let dir = self.dir.path();
        let mut cmd = Command::new(program());
        cmd.args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(dir)
            .args(["--appendonly", "yes"])
            .args(["--appendfsync", "always"])
            .args(["--save", ""])
            .args(["--daemonize", "no"])
            .args(["--protected-mode", "no"])
            .arg("--logfile")
            .arg(self.log_path())
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                "`{}` is not installed: run `cargo xtask setup` (it installs redis-server)",
                program()
            ),
            Err(e) => panic!("starting {}: {e}", program()),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                return false;
            }
            if self.pings() {
                self.child = Some(child);
                return true;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the server answers PING with PONG (not LOADING).
    fn pings(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        s.set_read_timeout(Some(Duration::from_secs(2))).ok();
        if s.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).is_ok() && line.starts_with("+PONG")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
