//! The stand-in server driven by a real WebSocket client on 127.0.0.1.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use steward_cli::standin::{Standin, StandinConfig};
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

/// Events up to and including `response.done`.
async fn response(ws: &mut Ws) -> Vec<Value> {
    let mut events = Vec::new();
    loop {
        let event = next_event(ws).await;
        let done = event["type"] == "response.done";
        events.push(event);
        if done {
            return events;
        }
    }
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
    of_type(events, "response.output_audio.delta")
        .iter()
        .map(|e| {
            let b64 = e["delta"].as_str().expect("delta");
            steward::ws::realtime::decode_audio(b64)
                .expect("base64")
                .len()
        })
        .sum()
}

fn append(ms: usize) -> Value {
    let pcm = vec![0_u8; ms * 48];
    json!({"type": "input_audio_buffer.append", "audio": steward::ws::realtime::encode_audio(&pcm)})
}

#[tokio::test]
async fn an_audio_turn_gets_audio_a_transcript_and_done() {
    let mut config = StandinConfig::default();
    config.remember_every = 0;
    let standin = Standin::start(config).await.expect("start");
    let mut ws = connect(&standin.url()).await;
    assert_eq!(next_event(&mut ws).await["type"], "session.created");

    send(
        &mut ws,
        json!({"type": "session.update", "session": {"instructions": "be brief"}}),
    )
    .await;
    let updated = next_event(&mut ws).await;
    assert_eq!(updated["type"], "session.updated");
    assert_eq!(updated["session"]["instructions"], "be brief");

    for _ in 0..10 {
        send(&mut ws, append(100)).await; // 1 s in all
    }
    send(&mut ws, json!({"type": "input_audio_buffer.commit"})).await;
    assert_eq!(
        next_event(&mut ws).await["type"],
        "input_audio_buffer.committed"
    );
    let events = response(&mut ws).await;
    assert_eq!(events[0]["type"], "response.created");
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

    // An empty commit is an error event, not a dropped connection.
    send(&mut ws, json!({"type": "input_audio_buffer.commit"})).await;
    let error = next_event(&mut ws).await;
    assert_eq!(error["type"], "error");
    assert_eq!(error["error"]["code"], "input_audio_buffer_commit_empty");

    let stats = standin.stats();
    assert_eq!((stats.sessions, stats.turns, stats.responses), (1, 1, 1));
    assert_eq!(stats.audio_bytes_in, 1000 * 48);
    assert_eq!(stats.audio_bytes_out, 500 * 48);
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
    assert_eq!(
        next_event(&mut ws).await["type"],
        "conversation.item.created"
    );
    send(&mut ws, json!({"type": "response.create"})).await;
    let events = response(&mut ws).await;
    let calls = of_type(&events, "response.function_call_arguments.done");
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["name"], "remember");
    let call_id = calls[0]["call_id"].as_str().expect("call_id").to_string();
    let args: Value =
        serde_json::from_str(calls[0]["arguments"].as_str().expect("arguments")).expect("JSON");
    assert_eq!(args, json!({"key": "favourite_color", "value": "blue"}));
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
    next_event(&mut ws).await; // conversation.item.created
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
        next_event(&mut ws).await;
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
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while standin.stats().refused_frames == 0 {
        assert!(tokio::time::Instant::now() < deadline, "never counted");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
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
        .args(["standin", "--addr", "127.0.0.1:0"])
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
}

#[tokio::test]
async fn drop_every_ends_the_connection_after_the_nth_answer() {
    let mut config = StandinConfig::default();
    config.drop_every = 2;
    config.remember_every = 0;
    let standin = Standin::start(config).await.expect("start");
    let mut ws = connect(&standin.url()).await;
    next_event(&mut ws).await;
    for _ in 0..2 {
        send(&mut ws, append(100)).await;
        send(&mut ws, json!({"type": "input_audio_buffer.commit"})).await;
        assert_eq!(
            next_event(&mut ws).await["type"],
            "input_audio_buffer.committed"
        );
        response(&mut ws).await; // the second answer is whole before the drop
    }
    let end = tokio::time::timeout(PATIENCE, ws.next())
        .await
        .expect("ends in time");
    assert!(!matches!(end, Some(Ok(Message::Close(_)))), "{end:?}");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while standin.stats().dropped_connections == 0 {
        assert!(tokio::time::Instant::now() < deadline, "never counted");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    standin.close().await;
}

#[tokio::test]
async fn with_turn_detection_off_a_commit_waits_for_response_create() {
    let standin = Standin::start(StandinConfig::default())
        .await
        .expect("start");
    let mut ws = connect(&standin.url()).await;
    next_event(&mut ws).await;
    let off = json!({"type": "session.update", "session": {"type": "realtime", "audio": {"input": {"turn_detection": null}}}});
    send(&mut ws, off).await;
    assert_eq!(next_event(&mut ws).await["type"], "session.updated");
    send(&mut ws, append(400)).await;
    send(&mut ws, json!({"type": "input_audio_buffer.commit"})).await;
    assert_eq!(
        next_event(&mut ws).await["type"],
        "input_audio_buffer.committed"
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
    assert_eq!(standin.stats().responses, 1);
    drop(ws);
    standin.close().await;
}
