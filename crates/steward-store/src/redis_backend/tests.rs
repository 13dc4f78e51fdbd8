//! Unit tests of the URL handling and the change encoding.

use super::changes::decode_change;
use super::connect::Target;
use super::*;
use crate::subscribe::Change;

#[test]
fn urls_name_the_server_without_password() {
    let t = Target::parse("redis://:secret@10.0.0.1:7000/3?ns=alice").unwrap();
    assert_eq!(t.server, "10.0.0.1:7000/3");
    assert_eq!(t.ns.as_deref(), Some("alice"));
    assert!(!t.client_url.contains("ns="));
    let t = Target::parse("redis://localhost").unwrap();
    assert_eq!((t.server.as_str(), t.ns), ("localhost:6379/0", None));
    assert!(Target::parse("http://x").is_err());
    let e = Target::parse("redis://u:secret@/x?ns=")
        .err()
        .unwrap()
        .to_string();
    assert!(!e.contains("secret"), "{e}");
}

#[tokio::test]
async fn passwords_with_reserved_characters_never_show() {
    for password in [
        "hunter2",
        "hun/ter2",
        "hun?ter2#x",
        "hun@ter2",
        "h/u?n#t@er2",
    ] {
        let url = format!("redis://bob:{password}@127.0.0.1:1/0?ns=alice&x=qkey");
        let builder = RedisStore::builder(url.as_str()).retry_for(Duration::from_millis(10));
        let shown = format!("{builder:?}");
        let json = serde_json::to_string(&builder.config).expect("json");
        // Nothing listens on port 1: every URL is refused or unreachable.
        let Err(err) = builder.build().await else {
            panic!("nothing listens on port 1");
        };
        let mut text = format!("{shown} {json} {err} {err:?}");
        let mut source = std::error::Error::source(&err);
        while let Some(s) = source {
            text.push_str(&format!(" {s} {s:?}"));
            source = s.source();
        }
        assert!(
            !text.contains("ter2") && !text.contains("qkey"),
            "{password}: {text}"
        );
    }
}

#[test]
fn changes_round_trip() {
    assert_eq!(
        decode_change(b"S5:a:b:c{\"x\":1}"),
        Some(("a:b:c".into(), Change::Set(serde_json::json!({"x": 1}))))
    );
    assert_eq!(decode_change("D4:café".as_bytes()), None);
    assert_eq!(
        decode_change("D5:café".as_bytes()),
        Some(("café".into(), Change::Deleted))
    );
    assert_eq!(decode_change(b"R0:"), Some((String::new(), Change::Reset)));
    assert_eq!(decode_change(b"X9:a"), None);
}
