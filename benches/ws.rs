//! Echo round trips over loopback: a steward-ws session against raw
//! tokio-tungstenite, same server, same message, same runtime (one worker
//! thread shared by server and client tasks).
//! Also event decoding: the typed realtime codec against parsing to a
//! `serde_json::Value`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures_util::{SinkExt, StreamExt};
use steward_ws::realtime::{ServerEvent, encode_pcm16};
use steward_ws::{Client, Message};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite;

/// Size of the echoed text message: a typical realtime event.
const MESSAGE: usize = 1024;

/// A tokio-tungstenite echo server, spawned on the benchmark's runtime: with
/// one worker, server and client tasks share a thread, so a round trip
/// measures the work of each layer rather than the wake-up latency of
/// threads on a loaded machine.
fn start_echo_server(rt: &tokio::runtime::Runtime) -> String {
    let listener = rt.block_on(TcpListener::bind("127.0.0.1:0")).expect("bind");
    let addr = listener.local_addr().expect("addr");
    rt.spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let _ = tcp.set_nodelay(true);
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                while let Some(Ok(m)) = ws.next().await {
                    if (m.is_text() || m.is_binary()) && ws.send(m).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    format!("ws://{addr}/")
}

fn client_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("client runtime")
}

async fn steward_roundtrip(session: &steward_ws::Session, text: &str) {
    session
        .send(Message::Text(text.to_owned()))
        .await
        .expect("send");
    black_box(session.recv().await.expect("echo"));
}

async fn raw_roundtrip(raw: &mut Raw, text: &str) {
    raw.send(tungstenite::Message::text(text.to_owned()))
        .await
        .expect("send");
    black_box(raw.next().await.expect("echo").expect("echo ok"));
}

type Raw = tokio_tungstenite::WebSocketStream<TcpStream>;

/// Runs `iters` timed round trips of one client in batches, each preceded by
/// as many untimed ones of the other; returns the timed total.
async fn interleaved(
    iters: u64,
    session: &steward_ws::Session,
    raw: &mut Raw,
    text: &str,
    time_steward: bool,
) -> Duration {
    const BATCH: u64 = 32;
    let mut timed = Duration::ZERO;
    let mut done = 0;
    while done < iters {
        let n = (iters - done).min(BATCH);
        for _ in 0..n {
            if time_steward {
                raw_roundtrip(raw, text).await;
            } else {
                steward_roundtrip(session, text).await;
            }
        }
        let start = Instant::now();
        for _ in 0..n {
            if time_steward {
                steward_roundtrip(session, text).await;
            } else {
                raw_roundtrip(raw, text).await;
            }
        }
        timed += start.elapsed();
        done += n;
    }
    timed
}

fn echo_roundtrip(c: &mut Criterion) {
    let rt = client_runtime();
    let url = start_echo_server(&rt);
    let text = "x".repeat(MESSAGE);

    let session = rt.block_on(async {
        Client::builder(&url)
            .build()
            .expect("client")
            .connect()
            .await
            .expect("connect")
    });
    let raw = rt.block_on(async {
        let tcp = TcpStream::connect(url.trim_start_matches("ws://").trim_end_matches('/'))
            .await
            .expect("tcp");
        tcp.set_nodelay(true).expect("nodelay");
        tokio_tungstenite::client_async(url.as_str(), tcp)
            .await
            .expect("handshake")
            .0
    });
    let raw = std::sync::Arc::new(tokio::sync::Mutex::new(raw));

    let mut group = c.benchmark_group("ws/echo_roundtrip");
    group.throughput(Throughput::Elements(1));
    group.sample_size(40);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(6));
    // Both loops run in a spawned task, as an application's would. The
    // machine is shared and its load drifts over seconds, so each function
    // interleaves batches of both clients and times only its own: both see
    // the same conditions.
    group.bench_function("steward", |b| {
        b.iter_custom(|iters| {
            let (session, raw, text) = (session.clone(), raw.clone(), text.clone());
            rt.block_on(rt.spawn(async move {
                let mut raw = raw.lock().await;
                interleaved(iters, &session, &mut raw, &text, true).await
            }))
            .expect("bench task")
        })
    });
    group.bench_function("raw_tokio_tungstenite", |b| {
        b.iter_custom(|iters| {
            let (session, raw, text) = (session.clone(), raw.clone(), text.clone());
            rt.block_on(rt.spawn(async move {
                let mut raw = raw.lock().await;
                interleaved(iters, &session, &mut raw, &text, false).await
            }))
            .expect("bench task")
        })
    });
    group.finish();
    rt.block_on(async {
        session.shutdown(steward_ws::ShutdownMode::Drain).await;
        let _ = raw.lock().await.close(None).await;
    });
}

fn event_decode(c: &mut Criterion) {
    // 100 ms of 24 kHz PCM16 audio, as the model streams it.
    let samples: Vec<i16> = (0..2400).map(|i| (i * 7 % 2000) as i16).collect();
    let text = format!(
        r#"{{"type":"response.output_audio.delta","event_id":"event_1","response_id":"resp_1","item_id":"item_1","output_index":0,"content_index":0,"delta":"{}"}}"#,
        encode_pcm16(&samples)
    );
    let mut group = c.benchmark_group("ws/event_decode");
    group.throughput(Throughput::Elements(1));
    group.sample_size(40);
    group.measurement_time(Duration::from_secs(4));
    group.bench_function("steward_typed", |b| {
        b.iter(|| black_box(ServerEvent::parse(black_box(&text)).expect("parse")))
    });
    group.bench_function("serde_json_value", |b| {
        b.iter(|| {
            black_box(serde_json::from_str::<serde_json::Value>(black_box(&text)).expect("parse"))
        })
    });
    group.finish();
}

criterion_group!(benches, echo_roundtrip, event_decode);
criterion_main!(benches);
