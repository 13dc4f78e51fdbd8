//! The realtime-API codec: round trips, unknown events, random input.

use proptest::prelude::*;
use rand::{RngExt, SeedableRng};
use serde_json::{Map, Value, json};
use steward_ws::realtime::*;

fn arb_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9_.-]{0,12}",
        any::<String>().prop_map(|s| s.chars().take(24).collect()),
    ]
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        arb_text().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec(("[a-z]{1,6}", inner), 0..4)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// Extra fields under names no typed field uses.
fn arb_extra() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::vec(("x_[a-z]{1,6}", arb_json()), 0..3)
        .prop_map(|kv| kv.into_iter().collect())
}

fn arb_object() -> impl Strategy<Value = Value> {
    prop::collection::vec(("[a-z]{1,6}", arb_json()), 0..4)
        .prop_map(|kv| Value::Object(kv.into_iter().collect()))
}

fn opt<T: std::fmt::Debug + Clone>(
    s: impl Strategy<Value = T>,
) -> impl Strategy<Value = Option<T>> {
    prop::option::of(s)
}

fn arb_session() -> impl Strategy<Value = SessionConfig> {
    (
        opt(arb_text()),
        opt(arb_text()),
        opt(arb_text()),
        opt(prop::collection::vec(arb_object(), 0..3)),
        arb_extra(),
    )
        .prop_map(|(model, instructions, voice, tools, extra)| SessionConfig {
            kind: Some("realtime".into()),
            model,
            instructions,
            voice,
            tools,
            extra,
        })
}

fn arb_client_event() -> impl Strategy<Value = ClientEvent> {
    let id = || opt(arb_text());
    prop_oneof![
        (id(), arb_session(), arb_extra()).prop_map(|(event_id, session, extra)| {
            ClientEvent::SessionUpdate(SessionUpdate {
                event_id,
                session,
                extra,
            })
        }),
        (id(), prop::collection::vec(any::<i16>(), 0..64)).prop_map(|(event_id, pcm)| {
            ClientEvent::InputAudioBufferAppend(InputAudioBufferAppend {
                event_id,
                audio: encode_pcm16(&pcm),
                extra: Map::new(),
            })
        }),
        (id(), arb_extra()).prop_map(|(event_id, extra)| {
            ClientEvent::InputAudioBufferCommit(Plain { event_id, extra })
        }),
        (id(), arb_extra()).prop_map(|(event_id, extra)| {
            ClientEvent::InputAudioBufferClear(Plain { event_id, extra })
        }),
        (id(), opt(arb_text()), arb_object()).prop_map(|(event_id, previous_item_id, item)| {
            ClientEvent::ConversationItemCreate(ConversationItemCreate {
                event_id,
                previous_item_id,
                item,
                extra: Map::new(),
            })
        }),
        (id(), opt(arb_object())).prop_map(|(event_id, response)| {
            ClientEvent::ResponseCreate(ResponseCreate {
                event_id,
                response,
                extra: Map::new(),
            })
        }),
        (id(), opt(arb_text())).prop_map(|(event_id, response_id)| {
            ClientEvent::ResponseCancel(ResponseCancel {
                event_id,
                response_id,
                extra: Map::new(),
            })
        }),
    ]
}

fn arb_delta() -> impl Strategy<Value = Delta> {
    (
        opt(arb_text()),
        opt(arb_text()),
        opt(arb_text()),
        opt(any::<u32>()),
        opt(any::<u32>()),
        arb_text(),
        arb_extra(),
    )
        .prop_map(
            |(event_id, response_id, item_id, output_index, content_index, delta, extra)| Delta {
                event_id,
                response_id,
                item_id,
                output_index,
                content_index,
                delta,
                extra,
            },
        )
}

fn arb_server_event() -> impl Strategy<Value = ServerEvent> {
    let id = || opt(arb_text());
    prop_oneof![
        (
            id(),
            opt(arb_text()),
            opt(arb_text()),
            arb_text(),
            opt(arb_text()),
            arb_extra()
        )
            .prop_map(|(event_id, kind, code, message, param, extra)| {
                ServerEvent::Error(ErrorEvent {
                    event_id,
                    error: ErrorDetail {
                        kind,
                        code,
                        message,
                        param,
                        event_id: None,
                        extra,
                    },
                    extra: Map::new(),
                })
            }),
        (id(), arb_session()).prop_map(|(event_id, session)| {
            ServerEvent::SessionCreated(SessionEvent {
                event_id,
                session,
                extra: Map::new(),
            })
        }),
        (id(), arb_session()).prop_map(|(event_id, session)| {
            ServerEvent::SessionUpdated(SessionEvent {
                event_id,
                session,
                extra: Map::new(),
            })
        }),
        (id(), opt(any::<u64>()), opt(arb_text())).prop_map(|(event_id, ms, item_id)| {
            ServerEvent::SpeechStarted(SpeechEvent {
                event_id,
                audio_start_ms: ms,
                audio_end_ms: None,
                item_id,
                extra: Map::new(),
            })
        }),
        (id(), opt(any::<u64>())).prop_map(|(event_id, ms)| {
            ServerEvent::SpeechStopped(SpeechEvent {
                event_id,
                audio_end_ms: ms,
                ..Default::default()
            })
        }),
        (id(), arb_object()).prop_map(|(event_id, response)| {
            ServerEvent::ResponseCreated(ResponseEvent {
                event_id,
                response,
                extra: Map::new(),
            })
        }),
        (id(), arb_object(), arb_extra()).prop_map(|(event_id, response, extra)| {
            ServerEvent::ResponseDone(ResponseEvent {
                event_id,
                response,
                extra,
            })
        }),
        arb_delta().prop_map(ServerEvent::OutputAudioDelta),
        arb_delta().prop_map(ServerEvent::AudioDelta),
        arb_delta().prop_map(ServerEvent::OutputAudioTranscriptDelta),
        arb_delta().prop_map(ServerEvent::AudioTranscriptDelta),
        (id(), arb_text(), opt(arb_text()), arb_text()).prop_map(
            |(event_id, call_id, name, arguments)| {
                ServerEvent::FunctionCallArgumentsDone(FunctionCallArgumentsDone {
                    event_id,
                    call_id,
                    name,
                    arguments,
                    ..Default::default()
                })
            }
        ),
        (
            id(),
            prop::collection::vec(
                (
                    arb_text(),
                    opt(any::<u64>()),
                    opt(any::<u64>()),
                    opt((0.0f64..1e6).prop_filter("finite", |f| f.is_finite()))
                ),
                0..3
            )
        )
            .prop_map(|(event_id, limits)| {
                ServerEvent::RateLimitsUpdated(RateLimitsUpdated {
                    event_id,
                    rate_limits: limits
                        .into_iter()
                        .map(|(name, limit, remaining, reset_seconds)| RateLimit {
                            name,
                            limit,
                            remaining,
                            reset_seconds,
                            extra: Map::new(),
                        })
                        .collect(),
                    extra: Map::new(),
                })
            }),
    ]
}

const KNOWN: &[&str] = &[
    "session.update",
    "input_audio_buffer.append",
    "input_audio_buffer.commit",
    "input_audio_buffer.clear",
    "conversation.item.create",
    "response.create",
    "response.cancel",
    "error",
    "session.created",
    "session.updated",
    "input_audio_buffer.speech_started",
    "input_audio_buffer.speech_stopped",
    "response.created",
    "response.done",
    "response.output_audio.delta",
    "response.audio.delta",
    "response.output_audio_transcript.delta",
    "response.audio_transcript.delta",
    "response.function_call_arguments.done",
    "rate_limits.updated",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn prop_client_events_round_trip(event in arb_client_event()) {
        let text = event.to_json().unwrap();
        let back = ClientEvent::parse(&text).unwrap();
        prop_assert!(!matches!(back, ClientEvent::Other(_)), "typed event read as Other: {text}");
        prop_assert_eq!(back.event_type(), event.event_type());
        prop_assert_eq!(&back, &event);
        prop_assert_eq!(back.to_json().unwrap(), text);
    }

    #[test]
    fn prop_server_events_round_trip(event in arb_server_event()) {
        let text = event.to_json().unwrap();
        let back = ServerEvent::parse(&text).unwrap();
        prop_assert!(!matches!(back, ServerEvent::Other(_)), "typed event read as Other: {text}");
        prop_assert_eq!(&back, &event);
        prop_assert_eq!(back.to_json().unwrap(), text);
    }

    #[test]
    fn prop_unknown_events_survive_unchanged(
        kind in "[a-z_]{1,10}\\.[a-z_.]{1,16}",
        fields in prop::collection::vec(("[a-z_]{1,8}", arb_json()), 0..6),
        type_first in any::<bool>(),
    ) {
        prop_assume!(!KNOWN.contains(&kind.as_str()));
        let mut map = Map::new();
        if type_first {
            map.insert("type".into(), Value::String(kind.clone()));
        }
        for (k, v) in fields {
            if k != "type" {
                map.insert(k, v);
            }
        }
        if !type_first {
            map.insert("type".into(), Value::String(kind.clone()));
        }
        let text = serde_json::to_string(&Value::Object(map.clone())).unwrap();
        let server = ServerEvent::parse(&text).unwrap();
        prop_assert_eq!(&server, &ServerEvent::Other(Value::Object(map.clone())));
        prop_assert_eq!(server.event_type(), kind.as_str());
        prop_assert_eq!(server.to_json().unwrap(), text.clone());
        let client = ClientEvent::parse(&text).unwrap();
        prop_assert_eq!(client.to_json().unwrap(), text);
    }

    #[test]
    fn prop_known_events_keep_unknown_fields(delta in arb_delta(), beta in any::<bool>()) {
        // A typed event from JSON with extra fields writes them back.
        let event = if beta { ServerEvent::AudioDelta(delta) } else { ServerEvent::OutputAudioDelta(delta) };
        let value: Value = serde_json::from_str(&event.to_json().unwrap()).unwrap();
        let reparsed = ServerEvent::parse(&value.to_string()).unwrap();
        let again: Value = serde_json::from_str(&reparsed.to_json().unwrap()).unwrap();
        prop_assert_eq!(again, value);
        prop_assert!(reparsed.audio_delta().is_some());
    }

    #[test]
    fn prop_pcm16_base64_round_trip(samples in prop::collection::vec(any::<i16>(), 0..2048)) {
        let b64 = encode_pcm16(&samples);
        prop_assert_eq!(decode_pcm16(&b64).unwrap(), samples.clone());
        let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
        prop_assert_eq!(decode_audio(&b64).unwrap(), bytes.clone());
        prop_assert_eq!(encode_audio(&bytes), b64);
    }
}

#[test]
fn ga_and_beta_names_are_both_typed() {
    for (name, audio) in [
        ("response.output_audio.delta", true),
        ("response.audio.delta", true),
        ("response.output_audio_transcript.delta", false),
        ("response.audio_transcript.delta", false),
    ] {
        let text = format!(
            r#"{{"type":"{name}","response_id":"r","item_id":"i","output_index":0,"content_index":0,"delta":"AQA="}}"#
        );
        let event = ServerEvent::parse(&text).unwrap();
        assert_eq!(event.event_type(), name);
        assert_eq!(event.audio_delta().is_some(), audio, "{name}");
        assert_eq!(event.transcript_delta().is_some(), !audio, "{name}");
        assert_eq!(event.to_json().unwrap(), text);
    }
    let event =
        ServerEvent::parse(r#"{"type":"response.audio.delta","delta":"AQACAA=="}"#).unwrap();
    assert_eq!(event.audio_delta().unwrap().pcm16().unwrap(), vec![1, 2]);
}

#[test]
fn tool_call_and_answer() {
    let event = ServerEvent::parse(
        r#"{"type":"response.function_call_arguments.done","event_id":"e1","response_id":"r1","item_id":"i1","output_index":0,"call_id":"call_9","name":"get_weather","arguments":"{\"city\":\"Oslo\"}"}"#,
    )
    .unwrap();
    let ServerEvent::FunctionCallArgumentsDone(call) = event else {
        panic!("{event:?}")
    };
    assert_eq!(call.name.as_deref(), Some("get_weather"));
    let answer = ClientEvent::function_call_output(&call.call_id, r#"{"temp":3}"#);
    let value: Value = serde_json::from_str(&answer.to_json().unwrap()).unwrap();
    assert_eq!(value["type"], "conversation.item.create");
    assert_eq!(value["item"]["call_id"], "call_9");
    assert_eq!(value["item"]["type"], "function_call_output");
}

/// The parser over random and mutated inputs: errors are fine, panics are not.
#[test]
fn parser_survives_random_input() {
    let seeds: Vec<String> = vec![
        r#"{"type":"response.audio.delta","delta":"AAAA","response_id":"r"}"#.into(),
        r#"{"type":"error","error":{"type":"invalid_request_error","message":"bad","code":null}}"#.into(),
        r#"{"type":"rate_limits.updated","rate_limits":[{"name":"tokens","limit":10,"remaining":3,"reset_seconds":1.5}]}"#.into(),
        r#"{"type":"session.created","session":{"type":"realtime","model":"m","tools":[]}}"#.into(),
        r#"{"type":"x.y","a":[1,{"b":null}]}"#.into(),
    ];
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
    let cases: usize = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(256)
        * 40;
    for _ in 0..cases {
        let mut bytes = if rng.random_bool(0.3) {
            (0..rng.random_range(0..64))
                .map(|_| rng.random::<u8>())
                .collect::<Vec<u8>>()
        } else {
            seeds[rng.random_range(0..seeds.len())].clone().into_bytes()
        };
        for _ in 0..rng.random_range(0..4) {
            if bytes.is_empty() {
                break;
            }
            let at = rng.random_range(0..bytes.len());
            match rng.random_range(0..3) {
                0 => bytes[at] = rng.random(),
                1 => {
                    bytes.remove(at);
                }
                _ => {
                    const PUNCT: &[u8] = b"{}[]\":,0-e.";
                    bytes.insert(at, PUNCT[rng.random_range(0..PUNCT.len())]);
                }
            }
        }
        let message = steward_ws::Message::binary(bytes.clone());
        if let Ok(event) = ServerEvent::from_message(&message) {
            // Whatever parses writes back and parses again; typed events
            // come back identical (raw ones may be normalized, e.g. duplicate keys).
            let text = event.to_json().unwrap();
            let again = ServerEvent::parse(&text).unwrap();
            if !matches!(event, ServerEvent::Other(_)) {
                assert_eq!(again, event, "{text}");
            }
        }
        if let Ok(text) = std::str::from_utf8(&bytes) {
            let _ = ClientEvent::parse(text);
            let _ = decode_pcm16(text);
        }
    }
}
