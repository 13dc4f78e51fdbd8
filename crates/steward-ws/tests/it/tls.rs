//! wss:// against a rustls server with a self-signed certificate made here.

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use steward_ws::{Client, Error, Message};
use tokio::net::TcpListener;

use crate::common::*;

struct TlsServer {
    url: String,
    cert_der: CertificateDer<'static>,
    cert_pem: String,
}

async fn tls_echo_server() -> TlsServer {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert_der = certified.cert.der().clone();
    let cert_pem = certified.cert.pem();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert_der.clone()], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut ws) = tokio_tungstenite::accept_async(tls).await else {
                    return;
                };
                use futures_util::{SinkExt, StreamExt};
                while let Some(Ok(m)) = ws.next().await {
                    if (m.is_text() || m.is_binary()) && ws.send(m).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    TlsServer {
        url: format!("wss://localhost:{port}/realtime"),
        cert_der,
        cert_pem,
    }
}

#[tokio::test]
async fn wss_with_a_custom_root_der() {
    let server = tls_echo_server().await;
    let session = Client::builder(&server.url)
        .add_root_certificate_der(server.cert_der.to_vec())
        .connected()
        .await;
    roundtrip(&session, Message::text("over tls")).await;
    roundtrip(&session, Message::binary(payload(1 << 20, 5))).await;
}

#[tokio::test]
async fn wss_with_a_custom_root_pem_file_from_config() {
    let server = tls_echo_server().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("root.pem");
    std::fs::write(&path, &server.cert_pem).unwrap();
    let mut config = steward_ws::ClientConfig::default();
    config.url = server.url.clone();
    config.root_certificates = vec![path];
    let session = steward_ws::ClientBuilder::from_config(config)
        .connected()
        .await;
    roundtrip(&session, Message::text("pem from config")).await;
}

#[tokio::test]
async fn wss_refuses_an_unknown_certificate() {
    let server = tls_echo_server().await;
    // Trust some other self-signed root: the server's certificate is unknown.
    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let err = Client::builder(&server.url)
        .add_root_certificate_pem(other.cert.pem())
        .build()
        .unwrap()
        .connect()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    let chain = std::error::Error::source(&err)
        .map(ToString::to_string)
        .unwrap_or_default();
    assert!(chain.to_lowercase().contains("certificate"), "{chain}");
}

#[test]
fn unreadable_root_certificate_is_named() {
    let err = Client::builder("wss://localhost:1/")
        .add_root_certificate_pem(b"not a pem".to_vec())
        .build()
        .unwrap_err();
    assert!(matches!(err, Error::Certificate { .. }), "{err:?}");
    let missing = std::path::PathBuf::from("/nonexistent/steward-root.pem");
    let mut config = steward_ws::ClientConfig::default();
    config.url = "wss://localhost:1/".into();
    config.root_certificates = vec![missing];
    let err = steward_ws::ClientBuilder::from_config(config)
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("steward-root.pem"), "{err}");
}
