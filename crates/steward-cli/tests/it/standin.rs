//! The stand-in server driven by a real WebSocket client on 127.0.0.1.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use steward_cli::standin::{Api, Standin, StandinConfig};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Generous: the machine may be loaded; nothing here waits on purpose.
const PATIENCE: Duration = Duration::from_secs(20);

async fn connect(url: &str) -> Ws {
    let (ws, _) = tokio::time::timeout(PATIENCE, tokio_tungstenite::connect_async(url))
        .await
        .expect("connect in time")
        .expect("connect");
    ws
}

async fn next_event(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(PATIENCE, ws.next())
            .await
            .expect("an event in time")
            .expect("the stream is open")
            .expect("a message");
        if let Message::Text(text) = msg {
            return serde_json::from_str(text.as_str()).expect("JSON event");
        }
    }
}

/// Events up to and including the first of type `kind`.
async fn until(ws: &mut Ws, kind: &str) -> Vec<Value> {
    let mut events = Vec::new();
    loop {
        let event = next_event(ws).await;
        let last = event["type"] == kind;
        events.push(event);
        if last {
            return events;
        }
    }
}

/// Events up to and including `response.done`.
async fn response(ws: &mut Ws) -> Vec<Value> {
    until(ws, "response.done").await
}

async fn send(ws: &mut Ws, event: Value) {
    ws.send(Message::text(event.to_string()))
        .await
        .expect("send");
}

fn of_type<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["type"] == kind).collect()
}

fn audio_bytes(events: &[Value]) -> usize {
    events
        .iter()
        .filter(|e| {
            e["type"] == "response.output_audio.delta" || e["type"] == "response.audio.delta"
        })
        .map(|e| {
            let b64 = e["delta"].as_str().expect("delta");
            steward::ws::realtime::decode_audio(b64)
                .expect("base64")
                .len()
        })
        .sum()
}

/// `ms` of silence as an append event.
fn append(ms: usize) -> Value {
    let pcm = vec![0_u8; ms * 48];
    json!({"type": "input_audio_buffer.append", "audio": steward::ws::realtime::encode_audio(&pcm)})
}

/// `ms` of a loud tone (RMS about 0.21 of full scale) as an append event.
fn loud(ms: usize) -> Value {
    let pcm: Vec<u8> = (0..ms * 24)
        .flat_map(|i| (((i as f64 * 0.07).sin() * 0.3 * 32_767.0) as i16).to_le_bytes())
        .collect();
    json!({"type": "input_audio_buffer.append", "audio": steward::ws::realtime::encode_audio(&pcm)})
}

/// Sends audio in 100 ms appends.
async fn talk(ws: &mut Ws, silence_ms: usize, loud_ms: usize, then_silence_ms: usize) {
    for _ in 0..silence_ms / 100 {
        send(ws, append(100)).await;
    }
    for _ in 0..loud_ms / 100 {
        send(ws, loud(100)).await;
    }
    for _ in 0..then_silence_ms / 100 {
        send(ws, append(100)).await;
    }
}

async fn manual_mode(ws: &mut Ws) {
    let off = json!({"type": "session.update", "session": {"type": "realtime", "audio": {"input": {"turn_detection": null}}}});
    send(ws, off).await;
    let updated = next_event(ws).await;
    assert_eq!(updated["type"], "session.updated");
    assert!(updated["session"]["audio"]["input"]["turn_detection"].is_null());
}

/// Waits until the server has counted something.
async fn eventually(
    standin: &Standin,
    what: &str,
    done: impl Fn(&steward_cli::standin::StandinStats) -> bool,
) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !done(&standin.stats()) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never counted: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn config() -> StandinConfig {
    let mut config = StandinConfig::default();
    config.remember_every = 0;
    config
}

#[tokio::test]
async fn an_audio_turn_gets_audio_a_transcript_and_done() {
    let standin = Standin::start(config()).await.expect("start");
    let mut ws = connect(&standin.url()).await;
    let created = next_event(&mut ws).await;
    assert_eq!(created["type"], "session.created");
    // The service's defaults: server VAD, and an expiry an hour away.
    assert_eq!(
        created["session"]["audio"]["input"]["turn_detection"]["type"],
        "server_vad"
    );
    assert!(
        created["session"]["expires_at"]
            .as_u64()
            .expect("expires_at")
            > 1_700_000_000
    );

    send(
        &mut ws,
        json!({"type": "session.update", "session": {"instructions": "be brief"}}),
    )
    .await;
    let updated = next_event(&mut ws).await;
    assert_eq!(updated["type"], "session.updated");
    assert_eq!(updated["session"]["instructions"], "be brief");
    assert_eq!(
        updated["session"]["audio"]["input"]["turn_detection"]["silence_duration_ms"],
        500
    );

    for _ in 0..10 {
        send(&mut ws, append(100)).await; // 1 s of silence: no speech
    }
    send(&mut ws, json!({"type": "input_audio_buffer.commit"})).await;
    let committed = next_event(&mut ws).await;
    assert_eq!(committed["type"], "input_audio_buffer.committed");
    let user_item = committed["item_id"].as_str().expect("item_id").to_string();
    let events = response(&mut ws).await;
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(
        kinds[..5],
        [
            "conversation.item.added",
            "conversation.item.done",
            "conversation.item.input_audio_transcription.completed",
            "response.created",
            "response.output_item.added",
        ]
    );
    assert_eq!(events[1]["item"]["id"], user_item.as_str());
    assert_eq!(events[1]["item"]["content"][0]["type"], "input_audio");
    assert_eq!(events[2]["transcript"], "user turn 1 (1000 ms)");
    assert_eq!(events[4]["item"]["status"], "in_progress");
    let part = of_type(&events, "response.content_part.added");
    assert_eq!(part[0]["part"]["type"], "output_audio");
    // Half the committed audio comes back: 500 ms of PCM16 at 24 kHz.
    assert_eq!(audio_bytes(&events), 500 * 48);
    assert!(of_type(&events, "response.output_audio.delta").len() >= 2);
    let transcript = of_type(&events, "response.output_audio_transcript.done");
    assert!(
        transcript[0]["transcript"]
            .as_str()
            .expect("text")
            .contains("1000 ms")
    );
    assert!(of_type(&events, "response.function_call_arguments.done").is_empty());
    let done = events.last().expect("done");
    assert_eq!(done["response"]["status"], "completed");
    assert_eq!(done["response"]["output"][0]["role"], "assistant");
    assert_eq!(
        done["response"]["output"][0]["content"][0]["type"],
        "output_audio"
    );
    // Nothing of the VAD: the audio was silent.
    assert!(of_type(&events, "input_audio_buffer.speech_started").is_empty());

    // An empty commit is an error event, not a dropped connection.
    send(
        &mut ws,
        json!({"type": "input_audio_buffer.commit", "event_id": "mine"}),
    )
    .await;
    let error = next_event(&mut ws).await;
    assert_eq!(error["type"], "error");
    assert_eq!(error["error"]["type"], "invalid_request_error");
    assert_eq!(error["error"]["code"], "input_audio_buffer_commit_empty");
    assert_eq!(error["error"]["event_id"], "mine");

    let stats = standin.stats();
    assert_eq!((stats.sessions, stats.turns, stats.responses), (1, 1, 1));
    assert_eq!(stats.audio_bytes_in, 1000 * 48);
    assert_eq!(stats.audio_bytes_out, 500 * 48);
    assert_eq!(stats.speech_started, 0);
    drop(ws);
    standin.close().await;
}

#[tokio::test]
async fn a_remember_text_gets_a_function_call_and_its_output_an_answer() {
    let standin = Standin::start(StandinConfig::default())
        .await
        .expect("start");
    let mut ws = connect(&standin.url()).await;
    next_event(&mut ws).await; // session.created

    let text = json!({"type": "message", "role": "user",
        "content": [{"type": "input_text", "text": "remember favourite_color: blue"}]});
    send(
        &mut ws,
        json!({"type": "conversation.item.create", "item": text}),
    )
    .await;
    let added = next_event(&mut ws).await;
    assert_eq!(added["type"], "conversation.item.added");
    assert!(added["item"]["id"].is_string());
    assert_eq!(next_event(&mut ws).await["type"], "conversation.item.done");
    send(&mut ws, json!({"type": "response.create"})).await;
    let events = response(&mut ws).await;
    let calls = of_type(&events, "response.function_call_arguments.done");
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["name"], "remember");
    assert_eq!(calls[0]["output_index"], 1);
    let call_id = calls[0]["call_id"].as_str().expect("call_id").to_string();
    let args: Value =
        serde_json::from_str(calls[0]["arguments"].as_str().expect("arguments")).expect("JSON");
    assert_eq!(args, json!({"key": "favourite_color", "value": "blue"}));
    // The call has its own item, added and done.
    let items_done = of_type(&events, "response.output_item.done");
    assert_eq!(items_done.len(), 2);
    assert_eq!(items_done[1]["item"]["type"], "function_call");
    assert_eq!(items_done[1]["item"]["call_id"], call_id.as_str());
    // response.done lists the call too.
    let done = events.last().expect("done");
    assert!(
        done["response"]["output"]
            .as_array()
            .expect("output")
            .iter()
            .any(|i| i["call_id"] == call_id.as_str())
    );

    let output =
        json!({"type": "function_call_output", "call_id": call_id, "output": "{\"ok\":true}"});
    send(
        &mut ws,
        json!({"type": "conversation.item.create", "item": output}),
    )
    .await;
    until(&mut ws, "conversation.item.done").await;
    send(&mut ws, json!({"type": "response.create"})).await;
    let events = response(&mut ws).await;
    assert!(audio_bytes(&events) > 0);
    assert!(of_type(&events, "response.function_call_arguments.done").is_empty());
    let transcript = of_type(&events, "response.output_audio_transcript.done");
    assert!(
        transcript[0]["transcript"]
            .as_str()
            .expect("text")
            .starts_with("Done")
    );

    // recall and forget the same way.
    for (text, name) in [
        ("recall favourite_color", "recall"),
        ("forget favourite_color", "forget"),
    ] {
        let item = json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]});
        send(
            &mut ws,
            json!({"type": "conversation.item.create", "item": item}),
        )
        .await;
        until(&mut ws, "conversation.item.done").await;
        send(&mut ws, json!({"type": "response.create"})).await;
        let events = response(&mut ws).await;
        assert_eq!(
            of_type(&events, "response.function_call_arguments.done")[0]["name"],
            name
        );
    }
    let stats = standin.stats();
    assert_eq!(
        (
            stats.text_requests,
            stats.function_calls,
            stats.function_outputs
        ),
        (3, 3, 1)
    );
    drop(ws);
    standin.close().await;
}

#[tokio::test]
async fn silent_audio_turns_follow_the_tool_script() {
    let mut config = StandinConfig::default();
    config.remember_every = 3;
    config.reply_audio_ms = 20;
    let standin = Standin::start(config).await.expect("start");
    let mut ws = connect(&standin.url()).await;
    next_event(&mut ws).await;
    let mut calls = Vec::new();
    for _ in 0..8 {
        send(&mut ws, append(100)).await;
        send(&mut ws, json!({"type": "input_audio_buffer.commit"})).await;
        next_event(&mut ws).await; // committed
        let events = response(&mut ws).await;
        for call in of_type(&events, "response.function_call_arguments.done") {
            let args: Value =
                serde_json::from_str(call["arguments"].as_str().expect("args")).expect("JSON");
            calls.push(format!(
                "{} {}",
                call["name"].as_str().expect("name"),
                args["key"].as_str().expect("key")
            ));
        }
    }
    assert_eq!(
        calls,
        [
            "remember turn_3",
            "recall turn_3",
            "remember turn_6",
            "recall turn_6",
            "forget turn_3"
        ]
    );
    drop(ws);
    standin.close().await;
}

#[tokio::test]
async fn an_oversized_frame_is_refused_with_1009() {
    let mut config = StandinConfig::default();
    config.max_frame_bytes = 64 * 1024;
    let standin = Standin::start(config).await.expect("start");
    let mut ws = connect(&standin.url()).await;
    next_event(&mut ws).await;
    let big = "x".repeat(200 * 1024);
    // The server may close while we still write: either way is fine.
    let _ = ws.send(Message::text(big)).await;
    let close = loop {
        match tokio::time::timeout(PATIENCE, ws.next())
            .await
            .expect("an answer in time")
        {
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(_)) => continue,
            Some(Err(e)) => panic!("expected a close frame, got {e}"),
            None => panic!("closed without a close frame"),
        }
    };
    let code: u16 = close.expect("a close frame with a code").code.into();
    assert_eq!(code, 1009);
    // Wait until the server has counted it (it closes right after counting).
    eventually(&standin, "refused frame", |s| s.refused_frames == 1).await;
    // Still serving others.
    let mut other = connect(&standin.url()).await;
    assert_eq!(next_event(&mut other).await["type"], "session.created");
    drop(other);
    standin.close().await;
}

#[tokio::test]
async fn dropped_connections_can_reconnect_and_close_says_going_away() {
    let standin = Standin::start(StandinConfig::default())
        .await
        .expect("start");
    let mut ws = connect(&standin.url()).await;
    next_event(&mut ws).await;
    standin.drop_connections();
    // The socket just ends: no close frame.
    let end = tokio::time::timeout(PATIENCE, ws.next())
        .await
        .expect("ends in time");
    assert!(!matches!(end, Some(Ok(Message::Close(_)))), "{end:?}");
    let mut again = connect(&standin.url()).await;
    assert_eq!(next_event(&mut again).await["type"], "session.created");
    assert_eq!(standin.stats().sessions, 2);

    let close = standin.close();
    let (_, frame) = tokio::join!(close, async {
        loop {
            match tokio::time::timeout(PATIENCE, again.next())
                .await
                .expect("in time")
            {
                Some(Ok(Message::Close(frame))) => return frame,
                Some(Ok(_)) => {}
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    });
    let code: u16 = frame.expect("a code").code.into();
    assert_eq!(code, 1001);
}

#[test]
fn the_standin_command_starts_and_answers() {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_steward"))
        .args([
            "standin",
            "--addr",
            "127.0.0.1:0",
            "--api",
            "beta",
            "--session-limit",
            "30s",
            "--speed",
            "2",
            "--bad-delta-every",
            "0",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn steward standin");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .expect("a line");
    assert!(line.contains("stand-in"), "{line}");
    let url = line.split_whitespace().last().expect("a URL").to_string();
    assert!(url.starts_with("ws://127.0.0.1:"), "{url}");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    let first = rt.block_on(async {
        let mut ws = connect(&url).await;
        next_event(&mut ws).await
    });
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(first["type"], "session.created");
    // Beta names: turn detection at the session's top level.
    assert_eq!(first["session"]["turn_detection"]["type"], "server_vad");
}

#[tokio::test]
async fn drop_every_ends_the_connection_after_the_nth_answer() {
    let mut config = config();
    config.drop_every = 2;
    let standin = Standin::start(config).await.expect("start");
    let mut ws = connect(&standin.url()).await;
    next_event(&mut ws).await;
    for _ in 0..2 {
        // The second answer is whole before the drop.
        committed_turn(&mut ws).await;
    }
    dropped_without_close(&standin, &mut ws).await;
    standin.close().await;
}

/// A manual audio turn, committed and answered in full.
async fn committed_turn(ws: &mut Ws) {
    send(ws, append(100)).await;
    send(ws, json!({"type": "input_audio_buffer.commit"})).await;
    assert_eq!(next_event(ws).await["type"], "input_audio_buffer.committed");
    response(ws).await;
}

/// The stand-in ends `ws` abruptly (no close frame) and counts one drop.
async fn dropped_without_close(standin: &Standin, ws: &mut Ws) {
    let end = tokio::time::timeout(PATIENCE, ws.next())
        .await
        .expect("ends in time");
    assert!(!matches!(end, Some(Ok(Message::Close(_)))), "{end:?}");
    eventually(standin, "dropped connection", |s| {
        s.dropped_connections == 1
    })
    .await;
}

/// A renewal opens a new connection: the count goes on across it, so a
/// soak that renews often still sees its drops.
#[tokio::test]
async fn drop_every_counts_turns_across_connections() {
    let mut config = config();
    config.drop_every = 3;
    let standin = Standin::start(config).await.expect("start");
    let mut first = connect(&standin.url()).await;
    next_event(&mut first).await;
    committed_turn(&mut first).await;
    committed_turn(&mut first).await;
    // The renewal: a second connection, the first closed by the client.
    let mut second = connect(&standin.url()).await;
    next_event(&mut second).await;
    let _ = first.close(None).await;
    committed_turn(&mut second).await; // the third turn of the stand-in
    dropped_without_close(&standin, &mut second).await;
    standin.close().await;
}

#[tokio::test]
async fn with_turn_detection_off_a_commit_waits_for_response_create() {
    let standin = Standin::start(StandinConfig::default())
        .await
        .expect("start");
    let mut ws = connect(&standin.url()).await;
    next_event(&mut ws).await;
    manual_mode(&mut ws).await;
    // Loud audio: with turn detection off nothing listens to it.
    send(&mut ws, loud(400)).await;
    send(&mut ws, json!({"type": "input_audio_buffer.commit"})).await;
    assert_eq!(
        next_event(&mut ws).await["type"],
        "input_audio_buffer.committed"
    );
    let item = until(
        &mut ws,
        "conversation.item.input_audio_transcription.completed",
    )
    .await;
    assert_eq!(
        item.iter()
            .filter_map(|e| e["type"].as_str())
            .collect::<Vec<_>>(),
        [
            "conversation.item.added",
            "conversation.item.done",
            "conversation.item.input_audio_transcription.completed"
        ]
    );
    send(&mut ws, json!({"type": "response.create"})).await;
    // The next event is the answer to the turn, not something else first.
    let events = response(&mut ws).await;
    assert_eq!(events[0]["type"], "response.created");
    assert_eq!(audio_bytes(&events), 200 * 48);
    let transcript = of_type(&events, "response.output_audio_transcript.done");
    assert!(
        transcript[0]["transcript"]
            .as_str()
            .expect("text")
            .contains("400 ms")
    );
    let stats = standin.stats();
    assert_eq!((stats.responses, stats.speech_started), (1, 0));
    drop(ws);
    standin.close().await;
}

#[tokio::test]
async fn server_vad_hears_a_loud_burst_commits_it_and_answers() {
    let standin = Standin::start(config()).await.expect("start");
    let mut ws = connect(&standin.url()).await;
    next_event(&mut ws).await;
    // Silence: nothing (the `cleared` answer comes first, in order).
    talk(&mut ws, 1000, 0, 0).await;
    send(&mut ws, json!({"type": "input_audio_buffer.clear"})).await;
    assert_eq!(
        next_event(&mut ws).await["type"],
        "input_audio_buffer.cleared"
    );

    // 300 ms silence, 800 ms loud, 700 ms silence: speech from 1300 ms of
    // the connection's input, 300 ms of padding before it (back to the
    // clear at 1000 ms), and 500 ms of silence after it.
    talk(&mut ws, 300, 800, 700).await;
    let started = next_event(&mut ws).await;
    assert_eq!(started["type"], "input_audio_buffer.speech_started");
    assert_eq!(started["audio_start_ms"], 1000);
    let item_id = started["item_id"].as_str().expect("item_id").to_string();
    let stopped = next_event(&mut ws).await;
    assert_eq!(stopped["type"], "input_audio_buffer.speech_stopped");
    assert_eq!(stopped["audio_end_ms"], 2600);
    assert_eq!(stopped["item_id"], item_id.as_str());
    let committed = next_event(&mut ws).await;
    assert_eq!(committed["type"], "input_audio_buffer.committed");
    assert_eq!(committed["item_id"], item_id.as_str());
    assert!(committed["previous_item_id"].is_null());
    let events = response(&mut ws).await;
    let done = of_type(&events, "conversation.item.done");
    assert_eq!(done[0]["item"]["id"], item_id.as_str());
    assert_eq!(done[0]["item"]["role"], "user");
    assert_eq!(
        done[0]["item"]["content"][0]["transcript"],
        "user turn 1 (1600 ms)"
    );
    let transcribed = of_type(
        &events,
        "conversation.item.input_audio_transcription.completed",
    );
    assert_eq!(transcribed[0]["item_id"], item_id.as_str());
    assert_eq!(transcribed[0]["content_index"], 0);
    // The answer: half of the 1600 ms committed.
    assert_eq!(audio_bytes(&events), 800 * 48);
    assert_eq!(
        events.last().expect("done")["response"]["status"],
        "completed"
    );
    let stats = standin.stats();
    assert_eq!(
        (stats.speech_started, stats.turns, stats.barge_ins),
        (1, 1, 0)
    );

    // create_response false: the VAD commits, response.create answers.
    let quiet = json!({"type": "session.update", "session": {"audio": {"input": {"turn_detection": {"type": "server_vad", "create_response": false, "silence_duration_ms": 200}}}}});
    send(&mut ws, quiet).await;
    let updated = next_event(&mut ws).await;
    let td = &updated["session"]["audio"]["input"]["turn_detection"];
    assert_eq!(
        (td["create_response"].as_bool(), td["threshold"].as_f64()),
        (Some(false), Some(0.5))
    );
    talk(&mut ws, 0, 300, 300).await;
    until(
        &mut ws,
        "conversation.item.input_audio_transcription.completed",
    )
    .await;
    send(&mut ws, json!({"type": "input_audio_buffer.clear"})).await;
    // Nothing else came: the next event answers the clear.
    assert_eq!(
        next_event(&mut ws).await["type"],
        "input_audio_buffer.cleared"
    );
    send(&mut ws, json!({"type": "response.create"})).await;
    let events = response(&mut ws).await;
    assert_eq!(events[0]["type"], "response.created");

    // A bad setting is refused and changes nothing.
    let bad = json!({"type": "session.update", "session": {"audio": {"input": {"turn_detection": {"type": "server_vad", "threshold": 7}}}}});
    send(&mut ws, bad).await;
    let error = next_event(&mut ws).await;
    assert_eq!(error["error"]["code"], "invalid_value");
    drop(ws);
    standin.close().await;
}

#[tokio::test]
async fn speech_during_an_answer_cancels_it_and_the_rest_is_not_sent() {
    let mut config = config();
    config.reply_audio_ms = 2000;
    config.reply_speed = 0.1; // 20 s to stream it whole: it is surely in progress
    let standin = Standin::start(config).await.expect("start");
    let mut ws = connect(&standin.url()).await;
    next_event(&mut ws).await;
    talk(&mut ws, 0, 500, 600).await;
    let head = until(&mut ws, "response.output_audio.delta").await;
    let response_id = of_type(&head, "response.created")[0]["response"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    // The user talks over the answer.
    send(&mut ws, loud(200)).await;
    let cut = response(&mut ws).await;
    let started = of_type(&cut, "input_audio_buffer.speech_started");
    assert_eq!(started.len(), 1);
    let done = cut.last().expect("done");
    assert_eq!(done["response"]["id"], response_id.as_str());
    assert_eq!(done["response"]["status"], "cancelled");
    assert_eq!(
        done["response"]["status_details"],
        json!({"type": "cancelled", "reason": "turn_detected"})
    );
    assert_eq!(done["response"]["output"][0]["status"], "incomplete");
    // Far fewer than the 20 deltas of the whole answer.
    let deltas = of_type(&head, "response.output_audio.delta").len()
        + of_type(&cut, "response.output_audio.delta").len();
    assert!(deltas < 20, "{deltas}");
    // The speech ends and is answered; nothing more of the cancelled one.
    talk(&mut ws, 0, 0, 600).await;
    let after = until(&mut ws, "response.output_audio.delta").await;
    assert!(
        after
            .iter()
            .all(|e| e["response_id"] != response_id.as_str()),
        "{after:?}"
    );
    assert_eq!(of_type(&after, "input_audio_buffer.committed").len(), 1);
    let stats = standin.stats();
    assert_eq!(
        (stats.barge_ins, stats.cancels, stats.speech_started),
        (1, 1, 2)
    );
    drop(ws);
    standin.close().await;
}

#[tokio::test]
async fn without_interrupt_response_the_next_answer_waits_for_the_one_in_progress() {
    let mut config = config();
    config.reply_audio_ms = 300;
    config.reply_speed = 0.1; // 3 s to stream each answer
    let standin = Standin::start(config).await.expect("start");
    let mut ws = connect(&standin.url()).await;
    next_event(&mut ws).await;
    let patient = json!({"type": "session.update", "session": {"audio": {"input": {"turn_detection": {"type": "server_vad", "interrupt_response": false}}}}});
    send(&mut ws, patient).await;
    assert_eq!(next_event(&mut ws).await["type"], "session.updated");
    talk(&mut ws, 0, 300, 600).await;
    until(&mut ws, "response.output_audio.delta").await;
    // The user talks over the answer: counted, not cancelled.
    talk(&mut ws, 0, 300, 600).await;
    let first = response(&mut ws).await;
    assert_eq!(
        of_type(&first, "input_audio_buffer.speech_started").len(),
        1
    );
    assert_eq!(of_type(&first, "input_audio_buffer.committed").len(), 1);
    assert!(of_type(&first, "response.created").is_empty(), "{first:?}");
    assert_eq!(
        first.last().expect("done")["response"]["status"],
        "completed"
    );
    assert_eq!(audio_bytes(&first) + 100 * 48, 300 * 48); // one delta came before
    // Then the second turn's answer, whole.
    let second = response(&mut ws).await;
    assert_eq!(second[0]["type"], "response.created");
    assert_eq!(audio_bytes(&second), 300 * 48);
    let stats = standin.stats();
    assert_eq!((stats.barge_ins, stats.cancels, stats.responses), (1, 0, 2));
    drop(ws);
    standin.close().await;
}

#[tokio::test]
async fn response_cancel_stops_the_answer_and_without_one_is_an_error() {
    let mut config = config();
    config.reply_audio_ms = 2000;
    config.reply_speed = 0.1;
    let standin = Standin::start(config).await.expect("start");
    let mut ws = connect(&standin.url()).await;
    next_event(&mut ws).await;
    manual_mode(&mut ws).await;
    send(&mut ws, append(200)).await;
    send(&mut ws, json!({"type": "input_audio_buffer.commit"})).await;
    send(&mut ws, json!({"type": "response.create"})).await;
    until(&mut ws, "response.output_audio.delta").await;
    // A second response while one is in progress is refused.
    send(&mut ws, json!({"type": "response.create"})).await;
    let refused = until(&mut ws, "error").await;
    assert_eq!(
        refused.last().expect("error")["error"]["code"],
        "conversation_already_has_active_response"
    );
    send(&mut ws, json!({"type": "response.cancel"})).await;
    let done = response(&mut ws).await;
    let done = done.last().expect("done");
    assert_eq!(done["response"]["status"], "cancelled");
    assert_eq!(
        done["response"]["status_details"]["reason"],
        "client_cancelled"
    );
    send(&mut ws, json!({"type": "response.cancel"})).await;
    let error = next_event(&mut ws).await;
    assert_eq!(error["type"], "error");
    assert_eq!(error["error"]["code"], "response_cancel_not_active");
    assert_eq!(standin.stats().cancels, 1);
    drop(ws);
    standin.close().await;
}

#[tokio::test]
async fn truncation_is_checked_as_the_service_does() {
    let mut config = config();
    config.reply_audio_ms = 1000;
    config.reply_speed = 0.0; // all at once
    let standin = Standin::start(config).await.expect("start");
    let mut ws = connect(&standin.url()).await;
    next_event(&mut ws).await;
    manual_mode(&mut ws).await;
    send(&mut ws, append(200)).await;
    send(&mut ws, json!({"type": "input_audio_buffer.commit"})).await;
    let committed = next_event(&mut ws).await;
    let user_item = committed["item_id"]
        .as_str()
        .expect("user item")
        .to_string();
    send(&mut ws, json!({"type": "response.create"})).await;
    let events = response(&mut ws).await;
    assert_eq!(audio_bytes(&events), 1000 * 48);
    let assistant = of_type(&events, "response.output_item.added")[0]["item"]["id"]
        .as_str()
        .expect("assistant item")
        .to_string();

    let truncate = |item: &str, index: u64, ms: u64| json!({"type": "conversation.item.truncate", "item_id": item, "content_index": index, "audio_end_ms": ms});
    let refusals = [
        (
            truncate("item_nope", 0, 10),
            "item_truncate_invalid_item_id",
            "does not exist",
        ),
        (
            truncate(&user_item, 0, 10),
            "unsupported_content_type",
            "Only model output audio messages can be truncated",
        ),
        (
            truncate(&assistant, 1, 10),
            "invalid_value",
            "content_index",
        ),
        (
            truncate(&assistant, 0, 1500),
            "invalid_value",
            "Audio content of 1000ms is already shorter than 1500ms",
        ),
    ];
    for (event, code, message) in refusals {
        send(&mut ws, event).await;
        let error = next_event(&mut ws).await;
        assert_eq!(error["type"], "error", "{error}");
        assert_eq!(error["error"]["type"], "invalid_request_error");
        assert_eq!(error["error"]["code"], code, "{error}");
        let text = error["error"]["message"].as_str().expect("message");
        assert!(text.contains(message), "{text}");
    }
    send(&mut ws, truncate(&assistant, 0, 400)).await;
    let truncated = next_event(&mut ws).await;
    assert_eq!(truncated["type"], "conversation.item.truncated");
    assert_eq!(
        (
            truncated["item_id"].as_str(),
            truncated["content_index"].as_u64(),
            truncated["audio_end_ms"].as_u64()
        ),
        (Some(assistant.as_str()), Some(0), Some(400))
    );
    // The item's audio is now 400 ms.
    send(&mut ws, truncate(&assistant, 0, 600)).await;
    let error = next_event(&mut ws).await;
    assert_eq!(
        error["error"]["message"],
        "Audio content of 400ms is already shorter than 600ms"
    );
    let stats = standin.stats();
    assert_eq!((stats.truncations_ok, stats.truncations_rejected), (1, 5));

    // Deleting: an unknown id is refused; a known item goes, and then it is
    // unknown to truncate too.
    send(
        &mut ws,
        json!({"type": "conversation.item.delete", "item_id": "item_nope"}),
    )
    .await;
    let error = next_event(&mut ws).await;
    assert_eq!(
        error["error"]["code"], "item_delete_invalid_item_id",
        "{error}"
    );
    send(
        &mut ws,
        json!({"type": "conversation.item.delete", "item_id": assistant}),
    )
    .await;
    let deleted = next_event(&mut ws).await;
    assert_eq!(deleted["type"], "conversation.item.deleted", "{deleted}");
    assert_eq!(deleted["item_id"].as_str(), Some(assistant.as_str()));
    send(&mut ws, truncate(&assistant, 0, 100)).await;
    let error = next_event(&mut ws).await;
    assert_eq!(
        error["error"]["code"], "item_truncate_invalid_item_id",
        "{error}"
    );
    assert_eq!(standin.stats().items_deleted, 1);
    drop(ws);
    standin.close().await;
}

#[tokio::test]
async fn a_session_ends_at_its_limit_with_session_expired_and_a_normal_close() {
    let mut config = config();
    config.session_limit_ms = 1000;
    let standin = Standin::start(config).await.expect("start");
    let mut ws = connect(&standin.url()).await;
    let created = next_event(&mut ws).await;
    let expires_at = created["session"]["expires_at"]
        .as_u64()
        .expect("expires_at");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    assert!(expires_at <= now + 2, "{expires_at} vs {now}");
    let error = next_event(&mut ws).await;
    assert_eq!(error["type"], "error");
    assert_eq!(error["error"]["type"], "invalid_request_error");
    assert_eq!(error["error"]["code"], "session_expired");
    assert_eq!(
        error["error"]["message"],
        "Your session hit the maximum duration of 1 second."
    );
    let close = loop {
        match tokio::time::timeout(PATIENCE, ws.next())
            .await
            .expect("closes in time")
        {
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(_)) => {}
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    let code: u16 = close.expect("a code").code.into();
    assert_eq!(code, 1000);
    eventually(&standin, "expired session", |s| s.sessions_expired == 1).await;
    standin.close().await;
}

fn user_text(text: &str) -> Value {
    json!({"type": "conversation.item.create", "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}})
}

fn assistant_text(text: &str) -> Value {
    json!({"type": "conversation.item.create", "item": {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": text}]}})
}

#[tokio::test]
async fn a_replayed_history_is_checked_against_the_conversation_so_far() {
    let mut config = config();
    config.reply_audio_ms = 200;
    let standin = Standin::start(config).await.expect("start");

    // The first conversation: a tool call and its output, then an audio
    // turn whose answer the user cut off.
    let mut ws = connect(&standin.url()).await;
    next_event(&mut ws).await;
    manual_mode(&mut ws).await;
    send(&mut ws, user_text("remember colour: blue")).await;
    send(&mut ws, json!({"type": "response.create"})).await;
    let events = response(&mut ws).await;
    let call = of_type(&events, "response.output_item.done")[1]["item"].clone();
    let first_answer = of_type(&events, "response.output_audio_transcript.done")[0]["transcript"]
        .as_str()
        .expect("transcript")
        .to_string();
    let output =
        json!({"type": "function_call_output", "call_id": call["call_id"], "output": "stored"});
    send(
        &mut ws,
        json!({"type": "conversation.item.create", "item": output}),
    )
    .await;
    send(&mut ws, json!({"type": "response.create"})).await;
    let events = response(&mut ws).await;
    let second_answer = of_type(&events, "response.output_audio_transcript.done")[0]["transcript"]
        .as_str()
        .expect("transcript")
        .to_string();
    send(&mut ws, append(400)).await;
    send(&mut ws, json!({"type": "input_audio_buffer.commit"})).await;
    send(&mut ws, json!({"type": "response.create"})).await;
    let events = response(&mut ws).await;
    let heard_of = of_type(&events, "response.output_item.added")[0]["item"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let user_turn = of_type(
        &events,
        "conversation.item.input_audio_transcription.completed",
    )[0]["transcript"]
        .as_str()
        .expect("transcript")
        .to_string();
    assert_eq!(user_turn, "user turn 1 (400 ms)");
    let truncate = json!({"type": "conversation.item.truncate", "item_id": heard_of, "content_index": 0, "audio_end_ms": 100});
    send(&mut ws, truncate).await;
    assert_eq!(
        next_event(&mut ws).await["type"],
        "conversation.item.truncated"
    );
    ws.close(None).await.expect("close");

    // A new session replays it all, the cut-off answer as heard ("I heard
    // 400 ms of audio in turn 1." cut at 100 of 200 ms: its first word
    // or two).
    let replay = [
        user_text("remember colour: blue"),
        assistant_text(&first_answer),
        json!({"type": "conversation.item.create", "item": {"type": "function_call", "call_id": call["call_id"], "name": call["name"], "arguments": call["arguments"]}}),
        json!({"type": "conversation.item.create", "item": output}),
        assistant_text(&second_answer),
        user_text(&user_turn),
        assistant_text("I heard"),
    ];
    let mut ws = connect(&standin.url()).await;
    next_event(&mut ws).await;
    manual_mode(&mut ws).await;
    for event in &replay {
        send(&mut ws, event.clone()).await;
    }
    // The first other event ends the replay; `cleared` says it was handled.
    send(&mut ws, json!({"type": "input_audio_buffer.clear"})).await;
    let events = until(&mut ws, "input_audio_buffer.cleared").await;
    assert_eq!(
        of_type(&events, "conversation.item.done").len(),
        replay.len()
    );
    // The replayed remember request is history, not a new request.
    assert_eq!(standin.stats().text_requests, 1);
    let stats = standin.stats();
    assert_eq!(
        (
            stats.replays,
            stats.replays_matched,
            stats.replayed_items,
            stats.replay_mismatches
        ),
        (1, 1, 7, 0)
    );
    ws.close(None).await.expect("close");

    // A client that changed an output does not match (its conversation
    // then goes on from what it replayed).
    let changed = json!({"type": "conversation.item.create", "item": {"type": "function_call_output", "call_id": call["call_id"], "output": "lost"}});
    let mut wrong = replay.to_vec();
    wrong[3] = changed;
    let mut ws = connect(&standin.url()).await;
    next_event(&mut ws).await;
    for event in &wrong {
        send(&mut ws, event.clone()).await;
    }
    send(&mut ws, json!({"type": "input_audio_buffer.clear"})).await;
    until(&mut ws, "input_audio_buffer.cleared").await;
    ws.close(None).await.expect("close");
    let stats = standin.stats();
    assert_eq!(
        (
            stats.replays,
            stats.replays_matched,
            stats.replay_mismatches
        ),
        (2, 1, 1)
    );

    // A client that bounds its history replays only the tail.
    let mut ws = connect(&standin.url()).await;
    next_event(&mut ws).await;
    for event in &replay[4..] {
        send(&mut ws, event.clone()).await;
    }
    send(&mut ws, json!({"type": "input_audio_buffer.clear"})).await;
    until(&mut ws, "input_audio_buffer.cleared").await;
    let stats = standin.stats();
    assert_eq!(
        (
            stats.replays,
            stats.replays_matched,
            stats.replayed_items,
            stats.replay_mismatches
        ),
        (3, 2, 17, 1)
    );
    drop(ws);
    standin.close().await;
}

#[tokio::test]
async fn beta_names_are_spoken_on_request() {
    let mut config = config();
    config.api = Api::Beta;
    config.reply_audio_ms = 300;
    let standin = Standin::start(config).await.expect("start");
    let mut ws = connect(&standin.url()).await;
    let created = next_event(&mut ws).await;
    assert_eq!(created["session"]["turn_detection"]["type"], "server_vad");
    assert_eq!(created["session"]["input_audio_format"], "pcm16");
    send(
        &mut ws,
        json!({"type": "session.update", "session": {"turn_detection": null}}),
    )
    .await;
    let updated = next_event(&mut ws).await;
    assert!(updated["session"]["turn_detection"].is_null(), "{updated}");
    send(&mut ws, loud(300)).await; // not heard: turn detection is off
    send(&mut ws, json!({"type": "input_audio_buffer.commit"})).await;
    send(&mut ws, json!({"type": "response.create"})).await;
    let events = response(&mut ws).await;
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    for beta in [
        "input_audio_buffer.committed",
        "conversation.item.created",
        "response.audio.delta",
        "response.audio.done",
        "response.audio_transcript.delta",
        "response.audio_transcript.done",
    ] {
        assert!(kinds.contains(&beta), "{beta} missing from {kinds:?}");
    }
    for ga in [
        "conversation.item.added",
        "conversation.item.done",
        "response.output_audio.delta",
        "response.output_audio_transcript.done",
    ] {
        assert!(!kinds.contains(&ga), "{ga} in {kinds:?}");
    }
    assert!(!kinds.contains(&"input_audio_buffer.speech_started"));
    assert_eq!(
        of_type(&events, "response.content_part.added")[0]["part"]["type"],
        "audio"
    );
    assert_eq!(audio_bytes(&events), 300 * 48);
    // The GA place for turn detection is understood too.
    let ga = json!({"type": "session.update", "session": {"audio": {"input": {"turn_detection": {"type": "semantic_vad"}}}}});
    send(&mut ws, ga).await;
    let updated = next_event(&mut ws).await;
    assert_eq!(updated["session"]["turn_detection"]["type"], "semantic_vad");
    drop(ws);
    standin.close().await;
}

#[tokio::test]
async fn bad_deltas_alternate_odd_lengths_and_bad_base64() {
    let mut config = config();
    config.reply_audio_ms = 1000;
    config.bad_delta_every = 2;
    let standin = Standin::start(config).await.expect("start");
    let mut ws = connect(&standin.url()).await;
    next_event(&mut ws).await;
    send(&mut ws, append(200)).await;
    send(&mut ws, json!({"type": "input_audio_buffer.commit"})).await;
    let events = response(&mut ws).await;
    let deltas = of_type(&events, "response.output_audio.delta");
    assert_eq!(deltas.len(), 10);
    let verdicts: Vec<&str> = deltas
        .iter()
        .map(
            |d| match steward::ws::realtime::decode_audio(d["delta"].as_str().expect("delta")) {
                Err(_) => "base64",
                Ok(pcm) if pcm.len() % 2 == 1 => "odd",
                Ok(_) => "ok",
            },
        )
        .collect();
    assert_eq!(
        verdicts,
        [
            "ok", "odd", "ok", "base64", "ok", "odd", "ok", "base64", "ok", "odd"
        ]
    );
    assert_eq!(
        events.last().expect("done")["response"]["status"],
        "completed"
    );
    assert_eq!(standin.stats().bad_deltas, 5);
    drop(ws);
    standin.close().await;
}

#[tokio::test]
async fn a_frozen_connection_answers_nothing_more() {
    let mut config = config();
    config.freeze_after_ms = 200;
    let standin = Standin::start(config).await.expect("start");
    let mut ws = connect(&standin.url()).await;
    assert_eq!(next_event(&mut ws).await["type"], "session.created");
    eventually(&standin, "frozen connection", |s| s.frozen_connections == 1).await;
    send(&mut ws, json!({"type": "session.update", "session": {}})).await;
    standin.drop_connections();
    // The socket ends with nothing before: no session.updated, no close frame.
    let end = tokio::time::timeout(PATIENCE, ws.next())
        .await
        .expect("ends in time");
    assert!(
        !matches!(end, Some(Ok(Message::Text(_) | Message::Close(_)))),
        "{end:?}"
    );
    standin.close().await;
}
