//! Passwords in URLs and credentials in headers never show: not in
//! `Debug`, not in a serialized config, not in an error or its causes.

use std::error::Error as _;

use steward_ws::{Client, ClientConfig};

/// Passwords holding the characters that end a URL's parts early.
const PASSWORDS: [&str; 5] = [
    "hunter2",
    "hun/ter2",
    "hun?ter2#x",
    "hun@ter2",
    "h/u?n#t@er2",
];

fn url_with(password: &str, port: u16) -> String {
    format!("ws://bob:{password}@127.0.0.1:{port}/v1/realtime?model=m&key=qkey")
}

/// The error and every cause under it, one line each.
fn chain(e: &steward_ws::Error) -> String {
    let mut text = format!("{e} / {e:?}");
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(&format!(" / {s} / {s:?}"));
        source = s.source();
    }
    text
}

fn assert_hidden(text: &str, password: &str) {
    assert!(!text.contains("hunter2"), "{password}: {text}");
    assert!(!text.contains("ter2"), "{password}: {text}");
    assert!(!text.contains("qkey"), "{password}: {text}");
}

#[test]
fn debug_and_serde_of_a_config_hide_passwords_and_credential_headers() {
    for password in PASSWORDS {
        let mut config = ClientConfig::default();
        config.url = url_with(password, 9);
        config.headers = vec![
            ("Authorization".into(), "Bearer sk-hunter2".into()),
            ("api-key".into(), "hunter2-key".into()),
            ("Cookie".into(), "session=hunter2".into()),
            ("OpenAI-Beta".into(), "realtime=v1".into()),
        ];
        assert_hidden(&format!("{config:?}"), password);
        let json = serde_json::to_string(&config).expect("serialize");
        assert_hidden(&json, password);
        // What is not a secret is still shown.
        assert!(json.contains("realtime=v1"), "{json}");
        assert!(json.contains("127.0.0.1:9/v1/realtime"), "{json}");
        let builder = Client::builder(url_with(password, 9)).bearer_auth("sk-hunter2");
        assert_hidden(&format!("{builder:?}"), password);
    }
}

#[tokio::test]
async fn errors_never_echo_a_password() {
    // A port nothing listens on: where the URL parses, connecting fails.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    for password in PASSWORDS {
        let url = url_with(password, port);
        let err = match Client::builder(url.as_str())
            .bearer_auth("sk-hunter2")
            .build()
        {
            Err(e) => e,
            Ok(client) => {
                assert_hidden(&format!("{client:?}"), password);
                client.connect().await.expect_err("nothing listens")
            }
        };
        assert_hidden(&chain(&err), password);
        assert!(chain(&err).contains("***@"), "{}", chain(&err));
    }
}
