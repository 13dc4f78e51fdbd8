//! Opening a backend by location: a Redis URL or a file store's path.

use crate::backend::Backend;
use crate::error::Result;

/// Opens a backend by location: a `redis://` / `rediss://` / `unix://` URL
/// (feature `redis`; the namespace is the `ns` query parameter, default
/// `default`) or else a path to a `memory.json` file store.
///
/// Errors: [`Error::Config`](crate::Error::Config) for a Redis URL without feature `redis`, plus
/// whatever opening that backend returns.
pub async fn open_backend(location: &str) -> Result<Box<dyn Backend>> {
    if is_redis_url(location) {
        return open_redis(location).await;
    }
    let store = crate::Store::open(location)?;
    Ok(Box::new(store))
}

/// Whether `location` names a Redis server rather than a file.
pub fn is_redis_url(location: &str) -> bool {
    ["redis://", "rediss://", "redis+unix://", "unix://"]
        .iter()
        .any(|p| location.starts_with(p))
}

#[cfg(feature = "redis")]
async fn open_redis(url: &str) -> Result<Box<dyn Backend>> {
    let store = crate::redis_backend::RedisStore::builder(url)
        .build()
        .await?;
    Ok(Box::new(store))
}

#[cfg(not(feature = "redis"))]
async fn open_redis(url: &str) -> Result<Box<dyn Backend>> {
    Err(crate::Error::Config(format!(
        "{}: this build has no Redis backend (feature `redis` of steward-store)",
        steward_redact::redact_url(url)
    )))
}
