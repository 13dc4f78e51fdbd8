//! The one shed handler of the buffers (WebSocket queues, audio queues):
//! registered with the first session or stream, so the features alone
//! change nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use steward_monitor::{BoxError, Level, Monitor};

use super::{Parts, on};
use crate::Steward;
use crate::error::Error;

/// Handler name, as listed by [`Monitor::handlers`] and in reports.
const BUFFERS_SHED: &str = "steward.buffers.shed";

/// Whether the handler is registered.
#[derive(Default)]
pub(crate) struct ShedState {
    registered: AtomicBool,
}

/// Registers the shed handler once. It runs at `Critical` after the pools
/// shrank, before the disk and reporting work.
pub(crate) fn register(monitor: &Monitor, parts: &Arc<Parts>) -> Result<(), Error> {
    if parts.shed.registered.swap(true, Relaxed) {
        return Ok(());
    }
    on(monitor, parts, Level::Critical, 20, BUFFERS_SHED, |p, _| {
        shed(p)
    })
}

/// Drops queued WebSocket messages and audio beyond each part's floor;
/// returns the bytes dropped (payload bytes, PCM16 bytes) as freed.
async fn shed(p: Arc<Parts>) -> Result<u64, BoxError> {
    let mut freed = 0u64;
    #[cfg(feature = "ws")]
    {
        freed = freed.saturating_add(p.ws.shed().await);
    }
    #[cfg(feature = "audio")]
    {
        freed = freed.saturating_add(p.audio.shed());
    }
    let _ = &p;
    Ok(freed)
}

impl Steward {
    /// The shed handler, from the first session or stream on. A refusal
    /// (the monitor has stopped) is logged: there is nothing to shed for.
    pub(crate) fn ensure_shed(&self) {
        if let Err(error) = register(self.monitor(), self.parts()) {
            tracing::warn!(%error, "the buffer shed handler could not be registered");
        }
    }
}
