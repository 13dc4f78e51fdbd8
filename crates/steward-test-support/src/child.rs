//! Child processes running one ignored test of the current test binary.
//!
//! A test binary is its own helper program: `ChildTest::spawn("name")`
//! re-executes it as `<exe> name --exact --ignored --nocapture`, so the
//! helper test runs alone in a fresh process. Helper tests should return at
//! once unless [`CHILD_ENV`] is set, so that `cargo test -- --ignored` does
//! not run them by accident. The child's stdout is read line by line by a
//! thread; [`ChildTest::wait_for_line`] waits for a marker such as
//! `READY 127.0.0.1:4000`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

/// Set (to `1`) in the environment of every child started here.
pub const CHILD_ENV: &str = "STEWARD_TEST_CHILD";

/// Whether this process is a child started by [`ChildTest`] or [`run_child`].
pub fn is_child() -> bool {
    std::env::var_os(CHILD_ENV).is_some()
}

/// The command that runs test `name` of this test binary alone (ignored or
/// not) in a child process, with [`CHILD_ENV`] and `env` set. For a
/// protocol of one's own over its stdout; [`ChildTest`] and [`run_child`]
/// cover the usual cases.
///
/// # Errors
/// When the path of this test binary cannot be found.
pub fn command(name: &str, env: &[(&str, &str)]) -> std::io::Result<Command> {
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(exe);
    cmd.args(test_args(name));
    with_env(&mut cmd, env);
    Ok(cmd)
}

/// Like [`command`], started through `bash -c` with `setup` run first in
/// the shell that then becomes the test (a `ulimit -f`, a `trap`): for
/// limits the child must live under from its start.
///
/// # Errors
/// When the path of this test binary cannot be found.
pub fn command_in_shell(setup: &str, name: &str, env: &[(&str, &str)]) -> std::io::Result<Command> {
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg(format!("{setup}; exec \"$0\" \"$@\""))
        .arg(exe)
        .args(test_args(name));
    with_env(&mut cmd, env);
    Ok(cmd)
}

/// libtest's arguments that run exactly the test `name`, ignored or not.
fn test_args(name: &str) -> [&str; 5] {
    [
        name,
        "--exact",
        "--include-ignored",
        "--nocapture",
        "--test-threads=1",
    ]
}

fn with_env(cmd: &mut Command, env: &[(&str, &str)]) {
    cmd.env(CHILD_ENV, "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
}

/// A running child test process; SIGKILLed when dropped.
#[derive(Debug)]
pub struct ChildTest {
    name: String,
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl ChildTest {
    /// Starts the ignored test `name` of this binary in a child process
    /// with extra environment; its stderr goes to ours.
    pub fn spawn(name: &str, env: &[(&str, &str)]) -> std::io::Result<Self> {
        let mut cmd = command(name, env)?;
        cmd.stdout(Stdio::piped()).stderr(Stdio::inherit());
        let mut child = cmd.spawn()?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| std::io::Error::other("child stdout not piped"))?;
        let (tx, lines) = channel();
        std::thread::Builder::new()
            .name(format!("child-out-{name}"))
            .spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            })?;
        Ok(Self {
            name: name.to_owned(),
            child,
            lines,
            seen: Vec::new(),
        })
    }

    /// The child's process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Waits up to `timeout` for a stdout line containing `prefix` and
    /// returns the rest of the line after it (libtest may have printed
    /// `test name ... ` before it on the same line); `Err` with everything
    /// the child printed when it exits or the time runs out first.
    pub fn wait_for_line(&mut self, prefix: &str, timeout: Duration) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(at) = line.find(prefix) {
                        let rest = line[at + prefix.len()..].trim().to_owned();
                        self.seen.push(line);
                        return Ok(rest);
                    }
                    self.seen.push(line);
                }
                Err(RecvTimeoutError::Timeout) => {
                    return Err(self.failure(&format!("no line {prefix:?} within {timeout:?}")));
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait().ok();
                    return Err(self.failure(&format!("exited ({status:?}) before {prefix:?}")));
                }
            }
        }
    }

    fn failure(&self, what: &str) -> String {
        format!(
            "child test {}: {what}; its stdout:\n{}",
            self.name,
            self.seen.join("\n")
        )
    }

    /// SIGKILLs the child (no cleanup runs in it) and reaps it.
    pub fn kill(&mut self) -> std::io::Result<ExitStatus> {
        // `Child::kill` sends SIGKILL on Unix.
        match self.child.kill() {
            Ok(()) => {}
            // Already exited: reaping below reports how.
            Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => {}
            Err(e) => return Err(e),
        }
        self.child.wait()
    }
}

impl Drop for ChildTest {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// Runs the ignored test `name` of this binary to completion in a child
/// process (with extra environment), so it has the process to itself:
/// thread and descriptor counts there see only that test. Returns its
/// stdout; `Err` with its output when it fails or did not run.
pub fn run_child(name: &str, env: &[(&str, &str)]) -> Result<String, String> {
    let out = command(name, env)
        .and_then(|mut c| c.output())
        .map_err(|e| format!("cannot run child test {name}: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(format!(
            "child test {name} failed ({}):\n{stdout}\n{stderr}",
            out.status
        ));
    }
    // A filter that matched nothing would "pass": make sure it ran.
    if !stdout.contains("1 passed") {
        return Err(format!(
            "child test {name} did not run:\n{stdout}\n{stderr}"
        ));
    }
    Ok(stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[ignore = "helper: run in a child process by the tests below"]
    fn helper_ready_then_sleeps() {
        if !is_child() {
            return;
        }
        println!("noise before the marker");
        // Mid-line, as after libtest's `test name ... `.
        println!("test x ... READY {}", std::process::id());
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    #[test]
    #[ignore = "helper: run in a child process by the tests below"]
    fn helper_passes() {
        if is_child() {
            println!("HELLO from the child");
        }
    }

    #[test]
    fn a_child_is_killed_and_started_again() {
        let _serial = crate::serial();
        for _ in 0..2 {
            let mut child =
                ChildTest::spawn("child::tests::helper_ready_then_sleeps", &[]).unwrap();
            let pid = child
                .wait_for_line("READY ", Duration::from_secs(60))
                .unwrap();
            assert_eq!(pid, child.id().to_string());
            let status = child.kill().unwrap();
            assert!(!status.success(), "killed, not exited: {status}");
            let err = child
                .wait_for_line("READY ", Duration::from_secs(60))
                .unwrap_err();
            assert!(err.contains("noise before the marker"), "{err}");
        }
    }

    #[test]
    fn run_child_reports_runs_and_non_runs() {
        let _serial = crate::serial();
        let out = run_child("child::tests::helper_passes", &[]).unwrap();
        assert!(out.contains("HELLO from the child"), "{out}");
        let err = run_child("child::tests::no_such_test", &[]).unwrap_err();
        assert!(err.contains("did not run"), "{err}");
    }
}
