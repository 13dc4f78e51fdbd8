//! Pooling sessions with `steward-pool` (feature `pool`).
//!
//! [`SessionManager`] pools sessions keyed by URL in a
//! [`steward_pool::KeyedPool`]; [`ClientManager`] pools sessions to one URL
//! in a [`steward_pool::Pool`]. A pooled session keeps reconnecting on its
//! own; on checkout the pool's health check refuses a session that is down
//! or closed, and the pool opens a fresh one. A session closed by the pool
//! is dropped: when that was its last handle, its queue is written and the
//! link closed with code 1000.
//!
//! ```no_run
//! use steward_pool::KeyedPool;
//! use steward_ws::{ClientConfig, pool::SessionManager};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let manager = SessionManager::new(ClientConfig::default());
//! let pool = KeyedPool::builder(manager).build()?;
//! let session = pool.get(&"wss://example.test/v1/realtime".to_string()).await?;
//! session.send(r#"{"type":"response.create"}"#).await?;
//! # Ok(())
//! # }
//! ```

use std::collections::HashMap;
use std::sync::Mutex;

use steward_pool::{KeyedManager, Manager};

use crate::{Client, ClientBuilder, ClientConfig, Error, Session};

/// Clients kept per URL so TLS roots are loaded once per URL; beyond this
/// many URLs, clients are built per connection instead of cached.
const MAX_CACHED_CLIENTS: usize = 64;

/// Creates sessions for any URL from one configuration template (its `url`
/// is replaced by the pool key).
#[derive(Debug)]
pub struct SessionManager {
    template: ClientConfig,
    clients: Mutex<HashMap<String, Client>>,
}

impl SessionManager {
    /// A manager whose sessions use `template` with the key as URL.
    pub fn new(template: ClientConfig) -> Self {
        Self {
            template,
            clients: Mutex::new(HashMap::new()),
        }
    }

    fn client(&self, url: &str) -> Result<Client, Error> {
        if let Ok(cache) = self.clients.lock()
            && let Some(client) = cache.get(url)
        {
            return Ok(client.clone());
        }
        let client = ClientBuilder::from_config(ClientConfig {
            url: url.to_string(),
            ..self.template.clone()
        })
        .build()?;
        if let Ok(mut cache) = self.clients.lock()
            && cache.len() < MAX_CACHED_CLIENTS
        {
            cache.insert(url.to_string(), client.clone());
        }
        Ok(client)
    }
}

/// A pooled session is healthy while it is connected and not shut down.
fn check(session: &Session) -> Result<(), Error> {
    if session.is_connected() && !session.is_closed() {
        Ok(())
    } else {
        Err(Error::Closed {
            url: session.url().to_string(),
            message: None,
        })
    }
}

impl KeyedManager<String> for SessionManager {
    type Object = Session;
    type Error = Error;

    async fn create(&self, url: &String) -> Result<Session, Error> {
        self.client(url)?.connect().await
    }

    async fn recycle(&self, _url: &String, session: &mut Session) -> Result<(), Error> {
        check(session)
    }
}

/// Creates sessions to the one URL of a [`Client`].
#[derive(Debug, Clone)]
pub struct ClientManager {
    client: Client,
}

impl ClientManager {
    /// A manager opening sessions with `client`.
    pub fn new(client: Client) -> Self {
        Self { client }
    }
}

impl Manager for ClientManager {
    type Object = Session;
    type Error = Error;

    async fn create(&self) -> Result<Session, Error> {
        self.client.connect().await
    }

    async fn recycle(&self, session: &mut Session) -> Result<(), Error> {
        check(session)
    }
}
