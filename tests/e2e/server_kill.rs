//! The stand-in runs in a child process on a fixed port and is SIGKILLed
//! mid-session, then started again on the same port: the assistant
//! reconnects and goes on, undelivered audio is accounted for, and the
//! memory file is intact.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use steward_cli::assistant::{Assistant, Input};
use steward_cli::standin::{Standin, StandinConfig};
use steward_test_support::child::ChildTest;

use crate::common::{HANG_GUARD, child, config, eventually, require_sound_server, runtime};

const PORT_ENV: &str = "STEWARD_E2E_STANDIN_PORT";

/// The stand-in alone in this process, on the port named by [`PORT_ENV`],
/// until killed. Every audio turn asks to remember `turn_<n>`.
#[test]
#[ignore = "helper: the stand-in server process of the kill test"]
fn child_standin() {
    if !child() {
        return;
    }
    let port: u16 = std::env::var(PORT_ENV)
        .expect("the port in the environment")
        .parse()
        .expect("a port number");
    runtime().block_on(async {
        let mut c = StandinConfig::default();
        c.addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        c.remember_every = 1;
        // The port was just released by the killed server (or the
        // free-port probe): retry the bind for a while.
        let mut attempts = 0;
        let standin = loop {
            match Standin::start(c.clone()).await {
                Ok(s) => break s,
                Err(e) if attempts < 100 => {
                    attempts += 1;
                    eprintln!("bind {port} failed ({e}), retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("cannot start the stand-in on port {port}: {e}"),
            }
        };
        println!("READY {}", standin.url());
        std::future::pending::<()>().await;
    });
}

fn spawn_standin(port: u16) -> (ChildTest, String) {
    let port = port.to_string();
    let mut server = ChildTest::spawn("server_kill::child_standin", &[(PORT_ENV, &port)])
        .expect("spawn the stand-in process");
    let url = server
        .wait_for_line("READY ", HANG_GUARD)
        .unwrap_or_else(|e| panic!("{e}"));
    (server, url)
}

/// Audio kept while the link is down, ms (and in 24 kHz frames).
const BACKLOG_MS: u32 = 200;
const BACKLOG_FRAMES: u64 = 24 * BACKLOG_MS as u64;

/// Frames the assistant has read from its microphone (the null source).
fn captured_frames(assistant: &Assistant) -> u64 {
    assistant
        .health()
        .capture
        .first()
        .map_or(0, |c| c.stats.frames_out)
}

fn remembered(memory: &std::path::Path) -> BTreeSet<String> {
    steward::store::load(memory)
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

#[test]
fn server_killed_mid_session_reconnects_accounts_audio_and_keeps_memory() {
    require_sound_server();
    let dir = tempfile::tempdir().unwrap();
    let memory = dir.path().join("memory.json");
    let port = steward_test_support::free_port().unwrap();
    let (mut server, url) = spawn_standin(port);

    runtime().block_on(async {
        let mut c = config(dir.path(), Input::Device, Some(Duration::from_secs(120)));
        c.url = Some(url.clone());
        // Audio kept while the link is down: 200 ms, so an outage of a
        // second must drop some (counted).
        c.backlog_ms = BACKLOG_MS;
        let assistant = Assistant::start(c).await.unwrap();

        eventually("a tool call before the kill", || {
            assistant.status().tool_calls > 0 && !remembered(&memory).is_empty()
        })
        .await;
        let before = remembered(&memory);

        let status = server.kill().unwrap();
        assert!(!status.success(), "killed: {status}");
        let at_kill = assistant.status();
        // The outage lasts until the assistant saw the link go and has
        // read five backlogs' worth of microphone audio since.
        eventually("the link to go down", || !assistant.status().ws_connected).await;
        let read_at_loss = captured_frames(&assistant);
        eventually("microphone audio read during the outage", || {
            captured_frames(&assistant) >= read_at_loss + 5 * BACKLOG_FRAMES
        })
        .await;
        let (restarted, url_again) = tokio::task::block_in_place(|| spawn_standin(port));
        server = restarted;
        assert_eq!(url_again, url, "the same port");

        // The session goes on: turns after the restart are answered with
        // tool calls (two, so that one already on its way at the kill
        // cannot pass for it).
        eventually("turns and tool calls after the restart", || {
            let now = assistant.status();
            now.turns >= at_kill.turns + 2 && now.tool_calls >= at_kill.tool_calls + 2
        })
        .await;
        assistant.stop();
        let report = tokio::time::timeout(HANG_GUARD, assistant.wait())
            .await
            .expect("wait within the hang guard")
            .unwrap();
        println!("{}", serde_json::to_string_pretty(&report).unwrap());

        assert!(report.reconnects >= 1, "reconnected: {}", report.reconnects);
        assert!(
            report.audio_bytes_dropped > 0,
            "audio beyond the backlog dropped"
        );
        assert!(
            report.audio_balances(),
            "every captured byte was sent, dropped or is still pending: {} != {} + {} + {}",
            report.audio_bytes_captured,
            report.audio_bytes_sent,
            report.audio_bytes_dropped,
            report.audio_bytes_pending
        );
        let check = steward::store::check(&memory).unwrap();
        assert!(check.is_ok(), "{check:?}");
        let after = remembered(&memory);
        assert!(before.is_subset(&after), "{before:?} kept in {after:?}");
    });
    drop(server);
}
