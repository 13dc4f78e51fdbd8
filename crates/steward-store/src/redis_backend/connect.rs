//! Connecting: the URL's parts, the protocol client (TLS with rustls for
//! `rediss://`), and the pooled connections.

use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ::redis::aio::MultiplexedConnection;
use ::redis::{AsyncConnectionConfig, RedisError};
use steward_pool::Manager;
use steward_redact::redact_url;

use super::RedisConfig;
use crate::error::{Error, Result};

/// The protocol client for `target`: TLS (rustls, ring) for `rediss://`,
/// with the roots of [`RedisConfig::tls_ca_file`] when set.
pub(super) fn client(target: &Target, config: &RedisConfig) -> Result<::redis::Client> {
    let bad_url = |e: RedisError| Error::BadUrl {
        url: redact_url(&config.url),
        reason: e.to_string(),
    };
    if target.tls {
        ensure_crypto_provider();
    }
    // Parses the URL (no connection yet).
    let client = ::redis::Client::open(target.client_url.as_str()).map_err(bad_url)?;
    let Some(path) = config.tls_ca_file.as_ref() else {
        return Ok(client);
    };
    if !target.tls {
        return Err(Error::Config(format!(
            "tls_ca_file {} needs a rediss:// URL",
            path.display()
        )));
    }
    let ca_file = |reason: String| Error::RedisCaFile {
        path: path.clone(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| ca_file(e.to_string()))?;
    const BEGIN: &[u8] = b"-----BEGIN CERTIFICATE-----";
    if !pem.windows(BEGIN.len()).any(|w| w == BEGIN) {
        return Err(ca_file("no PEM certificate in it".into()));
    }
    let certificates = ::redis::TlsCertificates {
        client_tls: None,
        root_cert: Some(pem),
    };
    // The URL parsed above: what fails here is the roots.
    ::redis::Client::build_with_tls(target.client_url.as_str(), certificates)
        .map_err(|e| ca_file(e.to_string()))
}

/// The redis client builds its rustls config with the process's default
/// crypto provider: ring (the one steward-ws uses) unless the program
/// installed one already.
pub(super) fn ensure_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Err: another thread installed one meanwhile, which is as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// What the URL says, split for the client and for messages.
pub(super) struct Target {
    /// The URL without our `ns` parameter.
    pub(super) client_url: String,
    /// `host:port/db` (or the socket path): named in errors, never a password.
    pub(super) server: String,
    pub(super) ns: Option<String>,
    /// The database number (for the server's keyspace event channel).
    pub(super) db: u32,
    /// `rediss://`: TLS.
    pub(super) tls: bool,
}

impl Target {
    pub(super) fn parse(raw: &str) -> Result<Target> {
        let bad = |reason: &str| Error::BadUrl {
            url: redact_url(raw),
            reason: reason.to_string(),
        };
        let mut url = url::Url::parse(raw).map_err(|e| bad(&e.to_string()))?;
        let mut ns = None;
        let rest: Vec<(String, String)> = url
            .query_pairs()
            .filter_map(|(k, v)| {
                if k == "ns" {
                    ns = Some(v.into_owned());
                    None
                } else {
                    Some((k.into_owned(), v.into_owned()))
                }
            })
            .collect();
        if rest.is_empty() {
            url.set_query(None);
        } else {
            url.query_pairs_mut().clear().extend_pairs(rest);
        }
        let (server, db) = match url.scheme() {
            "redis" | "rediss" => {
                let host = url.host_str().ok_or_else(|| bad("no host"))?;
                let port = url.port().unwrap_or(6379);
                let db = url.path().trim_start_matches('/');
                let db = if db.is_empty() { "0" } else { db };
                (format!("{host}:{port}/{db}"), db.to_string())
            }
            "unix" | "redis+unix" => {
                let db = url
                    .query_pairs()
                    .find(|(k, _)| k == "db")
                    .map_or_else(|| "0".to_string(), |(_, v)| v.into_owned());
                (url.path().to_string(), db)
            }
            other => return Err(bad(&format!("unsupported scheme {other:?}"))),
        };
        let db: u32 = db
            .parse()
            .map_err(|_| bad(&format!("database {db:?} is not a number")))?;
        if ns.as_deref().is_some_and(str::is_empty) {
            return Err(bad("empty namespace (ns=)"));
        }
        Ok(Target {
            tls: url.scheme() == "rediss",
            client_url: url.to_string(),
            server,
            ns,
            db,
        })
    }
}

pub(super) fn random_seed() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    h.write_u128(nanos);
    h.finish()
}

/// Creates and checks the pooled connections of a [`RedisStore`](crate::RedisStore): create
/// connects (the client sends AUTH and SELECT from the URL), recycle sends
/// PING (only for connections idle longer than the pool's `recent_window`).
pub struct RedisManager {
    pub(super) client: ::redis::Client,
    pub(super) config: AsyncConnectionConfig,
    pub(super) server: Arc<str>,
    /// `steward:{ns}:op:<random>:`; connection `n`'s record adds `n`.
    pub(super) record_prefix: String,
    pub(super) serial: AtomicU64,
}

impl std::fmt::Debug for RedisManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisManager")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

impl Manager for RedisManager {
    type Object = RedisConnection;
    type Error = Error;

    async fn create(&self) -> Result<RedisConnection> {
        let conn = self
            .client
            .get_multiplexed_async_connection_with_config(&self.config)
            .await
            .map_err(|e| Error::RedisUnavailable {
                server: self.server.to_string(),
                source: Box::new(e),
            })?;
        let n = self.serial.fetch_add(1, Ordering::Relaxed);
        Ok(RedisConnection {
            conn,
            server: Arc::clone(&self.server),
            record: format!("{}{n:x}", self.record_prefix).into(),
        })
    }

    async fn recycle(&self, obj: &mut RedisConnection) -> Result<()> {
        obj.command("PING", &[]).await.map(|_| ())
    }
}

/// One pooled connection to the server.
pub struct RedisConnection {
    pub(super) conn: MultiplexedConnection,
    pub(super) server: Arc<str>,
    /// The key where writes on this connection record their answers.
    pub(super) record: Arc<str>,
}

impl std::fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConnection")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

impl RedisConnection {
    /// Sends one raw command (e.g. `SET k v`, for baselines and tools) and
    /// returns a bulk-string reply's bytes (`None` for any other reply).
    pub async fn command(&mut self, name: &str, args: &[&[u8]]) -> Result<Option<Vec<u8>>> {
        let mut cmd = ::redis::cmd(name);
        for a in args {
            cmd.arg(*a);
        }
        let reply: ::redis::Value =
            cmd.query_async(&mut self.conn)
                .await
                .map_err(|e| Error::Redis {
                    server: self.server.to_string(),
                    op: "command",
                    key: String::new(),
                    source: Box::new(e),
                })?;
        Ok(match reply {
            ::redis::Value::BulkString(b) => Some(b),
            _ => None,
        })
    }
}
