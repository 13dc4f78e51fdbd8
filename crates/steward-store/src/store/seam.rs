//! The file store through the [`Backend`] seam.

use std::time::Duration;

use serde_json::Value;

use crate::backend::{Backend, BoxFuture, Entry};
use crate::error::Result;
use crate::subscribe::Subscription;

/// The file store through the seam: writes are its async forms (durable
/// when they resolve, never blocking the runtime); reads come from memory.
impl Backend for crate::Store {
    fn location(&self) -> String {
        self.path().display().to_string()
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Value>>> {
        Box::pin(std::future::ready(Ok(crate::Store::get(self, key))))
    }

    fn entries(&self) -> BoxFuture<'_, Result<Vec<(String, Value)>>> {
        Box::pin(std::future::ready(Ok(self.iter().collect())))
    }

    fn entries_with_ttl(&self) -> BoxFuture<'_, Result<Vec<Entry>>> {
        Box::pin(std::future::ready(Ok(crate::Store::entries_with_ttl(self))))
    }

    fn list_keys(&self) -> BoxFuture<'_, Result<Vec<String>>> {
        Box::pin(std::future::ready(Ok(crate::Store::list_keys(self))))
    }

    fn len(&self) -> BoxFuture<'_, Result<usize>> {
        Box::pin(std::future::ready(Ok(crate::Store::len(self))))
    }

    fn create<'a>(&'a self, key: &'a str, value: Value) -> BoxFuture<'a, Result<bool>> {
        Box::pin(crate::Store::create(self, key, value))
    }

    fn update<'a>(&'a self, key: &'a str, value: Value) -> BoxFuture<'a, Result<bool>> {
        Box::pin(crate::Store::update(self, key, value))
    }

    fn upsert<'a>(&'a self, key: &'a str, value: Value) -> BoxFuture<'a, Result<bool>> {
        Box::pin(crate::Store::upsert(self, key, value))
    }

    fn upsert_with_ttl<'a>(
        &'a self,
        key: &'a str,
        value: Value,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(crate::Store::upsert_with_ttl(self, key, value, ttl))
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool>> {
        Box::pin(crate::Store::delete(self, key))
    }

    fn reset(&self) -> BoxFuture<'_, Result<()>> {
        let f = crate::Store::reset(self);
        Box::pin(async move { f.await.map(|_| ()) })
    }

    fn sweep_expired(&self) -> BoxFuture<'_, Result<usize>> {
        let f = crate::Store::sweep_expired(self);
        Box::pin(f)
    }

    fn subscribe<'a>(&'a self, pattern: &'a str) -> BoxFuture<'a, Result<Subscription>> {
        Box::pin(std::future::ready(Ok(crate::Store::subscribe(
            self, pattern,
        ))))
    }

    fn render_prompt<'a>(&'a self, patterns: &'a [String]) -> BoxFuture<'a, Result<String>> {
        Box::pin(std::future::ready(Ok(crate::Store::render_prompt(
            self, patterns,
        ))))
    }

    fn close(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(crate::Store::close(self))
    }
}
