//! `rediss://`: the Redis backend over TLS to a real `redis-server` with its
//! TLS port open, its certificate made here (a private CA).

use std::net::TcpListener;
use std::time::Duration;

use serde_json::json;
use steward_store::{Change, Error, RedisStore};

use crate::redis_server::RedisServer;

/// A server with a TLS port next to its plain one, the CA file and that port.
fn tls_server() -> (RedisServer, tempfile::TempDir, std::path::PathBuf, u16) {
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).expect("certificate");
    let dir = tempfile::tempdir().expect("tempdir");
    let cert = dir.path().join("server.pem");
    let key = dir.path().join("server.key");
    std::fs::write(&cert, certified.cert.pem()).expect("write cert");
    std::fs::write(&key, certified.signing_key.serialize_pem()).expect("write key");
    let tls_port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let (cert_s, key_s) = (
        cert.to_str().expect("utf-8 path"),
        key.to_str().expect("utf-8 path"),
    );
    let server = RedisServer::start_with(&[
        "--tls-port",
        &tls_port.to_string(),
        "--tls-cert-file",
        cert_s,
        "--tls-key-file",
        key_s,
        "--tls-ca-cert-file",
        cert_s,
        "--tls-auth-clients",
        "no",
    ]);
    (server, dir, cert, tls_port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_works_against_a_tls_redis_server() {
    let (_server, _dir, ca, port) = tls_server();
    let url = format!("rediss://127.0.0.1:{port}/0?ns=tls");
    let store = RedisStore::builder(&url)
        .tls_ca_file(&ca)
        .pool_size(2)
        .build()
        .await
        .expect("open over TLS");
    let mut changes = store.subscribe("*").await.expect("subscribe");
    assert!(store.create("user_name", "Ada").await.expect("create"));
    assert_eq!(
        store.get("user_name").await.expect("get"),
        Some(json!("Ada"))
    );
    let (key, change) = tokio::time::timeout(Duration::from_secs(30), changes.next())
        .await
        .expect("a change within the hang guard")
        .expect("subscription open");
    assert_eq!(key, "user_name");
    assert!(matches!(change, Change::Set(_)), "{change:?}");
    store.close().await.expect("close");

    // The certificate is checked: the system's roots do not know it.
    let err = RedisStore::builder(&url)
        .retry_for(Duration::from_millis(500))
        .build()
        .await
        .expect_err("an unknown certificate is refused");
    assert!(matches!(err, Error::RedisUnavailable { .. }), "{err}");
}

#[tokio::test]
async fn a_bad_tls_ca_file_is_a_typed_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("missing.pem");
    let err = RedisStore::builder("rediss://127.0.0.1:1/0")
        .tls_ca_file(&missing)
        .build()
        .await
        .expect_err("no such file");
    assert!(
        matches!(&err, Error::RedisCaFile { path, .. } if *path == missing),
        "{err}"
    );
    assert!(err.to_string().contains("missing.pem"), "{err}");

    let not_pem = dir.path().join("not.pem");
    std::fs::write(&not_pem, "hello").expect("write");
    let err = RedisStore::builder("rediss://127.0.0.1:1/0")
        .tls_ca_file(&not_pem)
        .build()
        .await
        .expect_err("not a certificate");
    assert!(matches!(err, Error::RedisCaFile { .. }), "{err}");

    let err = RedisStore::builder("redis://127.0.0.1:1/0")
        .tls_ca_file(&not_pem)
        .build()
        .await
        .expect_err("a CA without TLS");
    assert!(matches!(err, Error::Config(_)), "{err}");
}
