//! The HTTP endpoint scraped over 127.0.0.1 while a session runs: strict
//! Prometheus text with series of every part, and `/health` JSON of the
//! same shape as `steward::Health`.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use steward_cli::assistant::{Assistant, Input};
use steward_test_support::prometheus::check_exposition;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{HANG_GUARD, config, eventually, require_sound_server, runtime, speech_wav};

/// One `GET` on a fresh connection; the status and the body.
async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(HANG_GUARD, stream.read_to_end(&mut raw))
        .await
        .expect("a reply within the hang guard")
        .unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("a header block");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status code");
    (status, body.to_owned())
}

/// Whether `got` has the shape of `want`: the same keys in every object,
/// the same JSON types, arrays compared by their first elements; `null`
/// (an `Option` not set at that moment) matches anything.
fn same_shape(got: &Value, want: &Value, at: &str) -> Result<(), String> {
    match (got, want) {
        (Value::Null, _) | (_, Value::Null) => Ok(()),
        (Value::Object(g), Value::Object(w)) => {
            let gk: Vec<_> = g.keys().collect();
            let wk: Vec<_> = w.keys().collect();
            if gk != wk {
                return Err(format!("{at}: keys {gk:?} != {wk:?}"));
            }
            g.iter()
                .try_for_each(|(k, v)| same_shape(v, &w[k], &format!("{at}.{k}")))
        }
        (Value::Array(g), Value::Array(w)) => match (g.first(), w.first()) {
            (Some(g), Some(w)) => same_shape(g, w, &format!("{at}[0]")),
            _ => Ok(()),
        },
        (Value::Number(_), Value::Number(_))
        | (Value::String(_), Value::String(_))
        | (Value::Bool(_), Value::Bool(_)) => Ok(()),
        _ => Err(format!("{at}: {got} is not like {want}")),
    }
}

/// The parts whose series `/metrics` must hold while a session runs.
const PARTS: [&str; 6] = [
    "steward_store_",
    "steward_realtime_",
    "steward_tracker_",
    "steward_monitor_",
    "steward_ws_",
    "steward_audio_",
];

#[test]
fn endpoint_scraped_during_a_session_serves_valid_metrics_and_health() {
    require_sound_server();
    let dir = tempfile::tempdir().unwrap();
    let wav = speech_wav(dir.path(), 20.0);
    runtime().block_on(async {
        let mut c = config(dir.path(), Input::Wav(wav), Some(Duration::from_secs(60)));
        c.http_addr = Some("127.0.0.1:0".parse().unwrap());
        let assistant = Assistant::start(c).await.unwrap();
        let addr = assistant.http_addr().expect("the endpoint runs");
        assert_ne!(addr.port(), 0);
        // Once audio has flowed both ways, every part has series.
        eventually("audio both ways", || {
            let h = assistant.health();
            !h.ws.is_empty() && !h.audio.is_empty() && h.audio[0].stats.frames_in > 0
        })
        .await;

        for scrape in 0..5 {
            let (status, text) = get(addr, "/metrics").await;
            assert_eq!(status, 200);
            let series =
                check_exposition(&text).unwrap_or_else(|e| panic!("scrape {scrape}: {e}\n{text}"));
            for part in PARTS {
                assert!(
                    series.keys().any(|(name, _)| name.starts_with(part)),
                    "scrape {scrape}: no {part}* series in\n{text}"
                );
            }
            // The command queue's refusals (the text byte bound) too.
            assert!(
                series
                    .keys()
                    .any(|(name, _)| name == "steward_realtime_texts_refused_total"),
                "scrape {scrape}: no texts_refused in\n{text}"
            );

            let (status, body) = get(addr, "/health").await;
            assert_eq!(status, 200);
            let got: Value = serde_json::from_str(&body)
                .unwrap_or_else(|e| panic!("scrape {scrape}: /health is not JSON ({e}): {body}"));
            let want = serde_json::to_value(assistant.health()).unwrap();
            same_shape(&got, &want, "health").unwrap_or_else(|e| panic!("scrape {scrape}: {e}"));
            tokio::time::sleep(Duration::from_millis(300)).await;
        }

        assistant.stop();
        let report = tokio::time::timeout(HANG_GUARD, assistant.wait())
            .await
            .expect("wait within the hang guard")
            .unwrap();
        assert!(report.turns > 0);
        assert!(
            TcpStream::connect(addr).await.is_err(),
            "the endpoint stops with the assistant"
        );
    });
}

#[test]
fn same_shape_compares_keys_and_types() {
    let want = serde_json::json!({"a": 1, "b": {"c": [{"d": "x"}]}, "e": null});
    let good = serde_json::json!({"a": 2, "b": {"c": [{"d": "y"}, {"d": "z"}]}, "e": {"f": 1}});
    same_shape(&good, &want, "h").unwrap();
    let missing = serde_json::json!({"a": 2, "b": {"c": []}});
    assert!(same_shape(&missing, &want, "h").is_err());
    let wrong_type = serde_json::json!({"a": "2", "b": {"c": []}, "e": null});
    assert!(same_shape(&wrong_type, &want, "h").is_err());
    let wrong_inner = serde_json::json!({"a": 2, "b": {"c": [{"d": 1}]}, "e": null});
    assert!(same_shape(&wrong_inner, &want, "h").is_err());
}
