//! The Redis store through the [`Backend`] seam.

use std::time::Duration;

use serde_json::Value;

use super::RedisStore;
use crate::backend::{Backend, BoxFuture};
use crate::error::Result;
use crate::subscribe::Subscription;

impl Backend for RedisStore {
    fn location(&self) -> String {
        self.inner.location.clone()
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Value>>> {
        Box::pin(RedisStore::get(self, key))
    }

    fn entries(&self) -> BoxFuture<'_, Result<Vec<(String, Value)>>> {
        Box::pin(RedisStore::entries(self))
    }

    fn entries_with_ttl(&self) -> BoxFuture<'_, Result<Vec<crate::Entry>>> {
        Box::pin(RedisStore::entries_with_ttl(self))
    }

    fn list_keys(&self) -> BoxFuture<'_, Result<Vec<String>>> {
        Box::pin(RedisStore::list_keys(self))
    }

    fn len(&self) -> BoxFuture<'_, Result<usize>> {
        Box::pin(RedisStore::len(self))
    }

    fn create<'a>(&'a self, key: &'a str, value: Value) -> BoxFuture<'a, Result<bool>> {
        Box::pin(RedisStore::create(self, key, value))
    }

    fn update<'a>(&'a self, key: &'a str, value: Value) -> BoxFuture<'a, Result<bool>> {
        Box::pin(RedisStore::update(self, key, value))
    }

    fn upsert<'a>(&'a self, key: &'a str, value: Value) -> BoxFuture<'a, Result<bool>> {
        Box::pin(RedisStore::upsert(self, key, value))
    }

    fn upsert_with_ttl<'a>(
        &'a self,
        key: &'a str,
        value: Value,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(RedisStore::upsert_with_ttl(self, key, value, ttl))
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool>> {
        Box::pin(RedisStore::delete(self, key))
    }

    fn reset(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(RedisStore::reset(self))
    }

    fn sweep_expired(&self) -> BoxFuture<'_, Result<usize>> {
        Box::pin(RedisStore::sweep_expired(self))
    }

    fn subscribe<'a>(&'a self, pattern: &'a str) -> BoxFuture<'a, Result<Subscription>> {
        Box::pin(RedisStore::subscribe(self, pattern))
    }

    fn close(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(RedisStore::close(self))
    }
}
