//! Critical pressure (from the monitor's named fake sample source) sheds
//! real queues: a WebSocket session whose server stopped reading, a
//! playback stream on the sound server's null sink and a capture stream from
//! its source, nobody reading.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use steward::audio::{Capture, Playback};
use steward::monitor::{FakeSource, Level, Outcome, Sample};
use steward::tracker::Tracker;
use steward::ws::{Client, Error as WsError, Message, ShedFloor, ShutdownMode};
use steward::{AUDIO_CAPTURE_KIND, AUDIO_PLAYBACK_KIND, Steward, WS_SESSION_KIND};
use tokio::sync::oneshot;

use crate::common::eventually;

/// A server that reads nothing until `resume` fires, then reads to the end
/// and reports the close code.
async fn stalled_server() -> (
    String,
    oneshot::Sender<()>,
    tokio::task::JoinHandle<(usize, Option<u16>)>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (resume_tx, resume_rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        let _ = resume_rx.await;
        let mut data = 0;
        let mut code = None;
        while let Some(Ok(m)) = ws.next().await {
            match m {
                tokio_tungstenite::tungstenite::Message::Close(frame) => {
                    code = frame.map(|f| u16::from(f.code));
                }
                m if m.is_binary() || m.is_text() => data += 1,
                _ => {}
            }
        }
        (data, code)
    });
    (format!("ws://{addr}/v1/realtime"), resume_tx, task)
}

/// 16 KiB binary messages (audio, for the floor) until the queue is full
/// and stays full: the socket's buffers took all they will take.
async fn fill_queue(session: &steward::ws::Session, limit: u64) -> usize {
    let mut sent = 0;
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            match session.try_send(Message::binary(vec![1_u8; 16 * 1024])) {
                Ok(()) => sent += 1,
                Err(WsError::Full { .. }) => {
                    // Paces a poll in the hang guard: an early end under load
                    // only leaves the writer moving older messages meanwhile.
                    let written = session.stats().messages_sent;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    let now = session.stats();
                    if now.outbound_queued_messages == limit && now.messages_sent == written {
                        return;
                    }
                }
                Err(e) => panic!("send: {e}"),
            }
        }
    })
    .await
    .expect("the outbound queue fills within the hang guard");
    sent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn critical_pressure_sheds_ws_and_audio_queues_to_their_floor() {
    // A session whose peer stopped reading: its outbound queue is full.
    let (url, resume, server) = stalled_server().await;
    let session = Client::builder(url)
        .outbound_queue(64, 64 << 20)
        .shed_floor(ShedFloor::new(8, 1 << 30))
        .build()
        .unwrap()
        .connect()
        .await
        .unwrap();

    // Four seconds of audio queued for the speaker.
    let speaker = Arc::new(
        Playback::builder()
            .queue(Duration::from_secs(10))
            .build()
            .expect("a playback device: run scripts/setup.sh for the null sink"),
    );
    let pcm = vec![0_u8; 4 * 24_000 * 2];
    assert_eq!(speaker.try_write(&pcm).unwrap(), pcm.len());
    // A microphone nobody reads.
    let mic = Arc::new(
        Capture::builder()
            .queue(Duration::from_secs(5))
            .build()
            .expect("a capture device: run scripts/setup.sh for the null source"),
    );

    let fake = FakeSource::new(Sample::with_rss(10, 100));
    let tracker = Tracker::new();
    let steward = Steward::builder()
        .source(fake.clone())
        .tracker(tracker.clone())
        .ws_session("model", &session)
        .playback("speaker", &speaker)
        .capture("mic", &mic)
        .build()
        .unwrap();
    assert!(
        steward
            .monitor()
            .handlers()
            .iter()
            .any(|h| h.name == "steward.buffers.shed")
    );
    // The capture stream is in the snapshot and the tracker.
    let h = steward.health();
    assert_eq!(h.capture.len(), 1);
    assert_eq!(h.capture[0].name, "mic");
    for kind in [WS_SESSION_KIND, AUDIO_PLAYBACK_KIND, AUDIO_CAPTURE_KIND] {
        assert_eq!(tracker.kind(kind).unwrap().totals.live_count, 1, "{kind}");
    }
    eventually("the microphone queues a second", || {
        mic.stats().queued_frames >= 24_000
    })
    .await;
    // Last, so the socket's buffers have no time to grow and take it.
    let sent = fill_queue(&session, 64).await;

    fake.set(Sample::with_rss(95, 100));
    let report = steward.monitor().check_now().await.unwrap();
    assert_eq!(report.level, Level::Critical);
    let shed = report
        .handlers
        .iter()
        .find(|r| r.name == "steward.buffers.shed")
        .expect("the shed handler ran");
    assert_eq!(shed.outcome, Outcome::Ok);
    assert!(shed.freed_bytes > 0);

    let h = steward.health();
    println!("sent {sent}; cleanup: {:?}", h.cleanup);
    assert!(h.cleanup.ws_shed_messages > 0, "{:?}", h.cleanup);
    assert!(h.cleanup.ws_shed_bytes >= h.cleanup.ws_shed_messages * 16 * 1024);
    assert!(h.cleanup.audio_shed_frames > 0, "{:?}", h.cleanup);
    let ws = &h.ws[0].stats;
    assert_eq!(ws.shed_outbound_messages, h.cleanup.ws_shed_messages);
    // The floor is left, and the message being written holds its place too.
    assert!(ws.outbound_queued_messages <= 8 + 1, "{ws:?}");
    // Nothing more to drop.
    assert_eq!(session.shed_queued().await.messages(), 0);
    let played = &h.audio[0].stats;
    assert!(played.shed_frames > 0, "{played:?}");
    // 500 ms (the default floor), and what already left the queue (the
    // device ring, 200 ms) until the callback's next run skips it.
    assert!(played.queued_frames <= 12_000 + 4_800 + 2_400, "{played:?}");
    let captured = &h.capture[0].stats;
    assert!(captured.shed_frames > 0, "{captured:?}");
    assert!(captured.queued_frames <= 12_000 + 4_800, "{captured:?}");
    let metrics = steward.metrics_text();
    for line in [
        format!(
            "steward_cleanup_ws_shed_messages_total {}\n",
            h.cleanup.ws_shed_messages
        ),
        format!(
            "steward_ws_shed_messages_total{{session=\"model\",direction=\"outbound\"}} {}\n",
            ws.shed_outbound_messages
        ),
        "steward_audio_capture_queued_frames{stream=\"mic\",host=\"pulseaudio\"}".to_string(),
        "steward_audio_capture_shed_frames_total{stream=\"mic\",host=\"pulseaudio\"}".to_string(),
        "steward_audio_shed_frames_total{stream=\"speaker\",host=\"pulseaudio\"}".to_string(),
    ] {
        assert!(metrics.contains(&line), "{line} missing from:\n{metrics}");
    }
    // Valid exposition text with every part in it.
    #[cfg(feature = "http")]
    crate::http::check_exposition(&metrics);

    // The session lives on: the peer reads again and gets the rest.
    resume.send(()).unwrap();
    let unsent = session.shutdown(ShutdownMode::Drain).await;
    assert!(unsent.is_empty());
    let (data, code) = tokio::time::timeout(Duration::from_secs(30), server)
        .await
        .expect("the peer ends after the close")
        .unwrap();
    assert_eq!(code, Some(1000));
    assert_eq!(data as u64 + ws.shed_outbound_messages, sent as u64);

    // Streams leave the wiring and the tracker when dropped.
    drop(mic);
    drop(speaker);
    let h = steward.health();
    assert!(h.capture.is_empty() && h.audio.is_empty());
    assert_eq!(
        tracker.kind(AUDIO_CAPTURE_KIND).unwrap().totals.live_count,
        0
    );
    steward.shutdown().await;
}

/// The features alone register nothing: the shed handler comes with the
/// first session or stream handed in, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shed_handler_comes_with_the_first_buffer() {
    let steward = Steward::builder()
        .source(FakeSource::new(Sample::with_rss(10, 100)))
        .build()
        .unwrap();
    let count = |s: &Steward| {
        s.monitor()
            .handlers()
            .iter()
            .filter(|h| h.name == "steward.buffers.shed")
            .count()
    };
    assert_eq!(count(&steward), 0);
    let mic = Arc::new(
        Capture::builder()
            .build()
            .expect("a capture device: run scripts/setup.sh for the null source"),
    );
    steward.add_capture("mic", &mic);
    steward.add_capture("mic again", &mic);
    assert_eq!(count(&steward), 1);
    assert_eq!(steward.health().capture.len(), 2);
    mic.close().unwrap();
    steward.shutdown().await;
}
