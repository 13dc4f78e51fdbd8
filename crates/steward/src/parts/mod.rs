//! The parts the wiring looks after, one module each, each behind its
//! feature once. A part's module holds all of it: what the builder collects,
//! its methods on [`StewardBuilder`](crate::StewardBuilder) and
//! [`Steward`](crate::Steward), its cleanup handlers, its section of
//! [`Health`] and its metric families. This module only lists them.

use std::future::Future;
use std::sync::Arc;

use steward_monitor::{BoxError, CleanupContext, Level, Monitor};

use crate::error::Error;
use crate::health::Health;
use crate::metrics::Out;
use crate::steward::{MonitorPart, StewardConfig};

#[cfg(feature = "audio")]
pub(crate) mod audio;
#[cfg(any(feature = "ws", feature = "audio"))]
mod entry;
#[cfg(feature = "pool")]
pub(crate) mod pool;
#[cfg(feature = "realtime")]
pub(crate) mod realtime;
#[cfg(any(feature = "ws", feature = "audio"))]
mod shed;
#[cfg(feature = "store")]
pub(crate) mod store;
#[cfg(feature = "tracker")]
pub(crate) mod tracker;
#[cfg(feature = "ws")]
pub(crate) mod ws;

#[cfg(feature = "tracker")]
pub(crate) use steward_tracker::Tracker;

/// Without the `tracker` feature there is no tracker to hand in.
#[cfg(all(not(feature = "tracker"), any(feature = "ws", feature = "audio")))]
pub(crate) enum Tracker {}

/// What the builder collected for each part.
#[derive(Default)]
pub(crate) struct Pending {
    #[cfg(feature = "store")]
    pub(crate) store: store::Pending,
    #[cfg(feature = "tracker")]
    pub(crate) tracker: Option<Tracker>,
    #[cfg(feature = "pool")]
    pub(crate) pools: Vec<Arc<dyn pool::PoolPart>>,
    #[cfg(feature = "ws")]
    pub(crate) ws: Vec<(String, steward_ws::WeakSession)>,
    #[cfg(feature = "audio")]
    pub(crate) audio: audio::Pending,
}

/// What the cleanup handlers act on. Never holds the monitor: a handler
/// holding a monitor handle would keep its task alive forever.
pub(crate) struct Parts {
    pub(crate) config: StewardConfig,
    /// The rounds and the trim: the monitor's own part.
    pub(crate) monitor: MonitorPart,
    /// The `Growing` signal with the tracked kinds, kept by the growth task.
    pub(crate) growth: crate::growth::GrowthState,
    #[cfg(feature = "store")]
    pub(crate) store: store::StorePart,
    #[cfg(feature = "tracker")]
    pub(crate) tracker: tracker::TrackerPart,
    #[cfg(feature = "pool")]
    pub(crate) pools: pool::Pools,
    #[cfg(feature = "ws")]
    pub(crate) ws: ws::WsParts,
    #[cfg(feature = "realtime")]
    pub(crate) realtime: realtime::RealtimeParts,
    #[cfg(feature = "audio")]
    pub(crate) audio: audio::AudioParts,
    /// Whether the shed handler is registered (with the first session or
    /// stream, so the features alone change nothing).
    #[cfg(any(feature = "ws", feature = "audio"))]
    pub(crate) shed: shed::ShedState,
}

impl Parts {
    /// The parts from what the builder collected; the builder's strong
    /// handles of streams go with `pending`, the wiring holds them weakly.
    pub(crate) fn new(config: StewardConfig, pending: Pending) -> Self {
        // Without any part's feature, nothing was collected.
        let _ = &pending;
        let monitor = MonitorPart::new(config.trim_on_critical);
        #[cfg(feature = "tracker")]
        let tracker = tracker::TrackerPart::new(pending.tracker);
        let parts = Self {
            config,
            monitor,
            growth: crate::growth::GrowthState::default(),
            #[cfg(feature = "store")]
            store: store::StorePart::new(pending.store),
            #[cfg(feature = "pool")]
            pools: pool::Pools::new(pending.pools),
            #[cfg(feature = "ws")]
            ws: ws::WsParts::default(),
            #[cfg(feature = "realtime")]
            realtime: realtime::RealtimeParts::default(),
            #[cfg(feature = "audio")]
            audio: audio::AudioParts::default(),
            #[cfg(any(feature = "ws", feature = "audio"))]
            shed: shed::ShedState::default(),
            #[cfg(feature = "tracker")]
            tracker,
        };
        #[cfg(feature = "ws")]
        for (name, session) in &pending.ws {
            parts.ws.add(name, session, parts.tracker());
        }
        #[cfg(feature = "audio")]
        parts.audio.add_pending(pending.audio, parts.tracker());
        parts
    }

    /// The tracker handed in, for the sessions and streams that track
    /// themselves with it.
    #[cfg(any(feature = "ws", feature = "audio"))]
    pub(crate) fn tracker(&self) -> Option<&Tracker> {
        #[cfg(feature = "tracker")]
        return self.tracker.get();
        #[cfg(not(feature = "tracker"))]
        None
    }

    /// Registers every part's cleanup handlers; the shed handler only when
    /// there are buffers to shed.
    pub(crate) fn register(monitor: &Monitor, parts: &Arc<Parts>) -> Result<(), Error> {
        #[cfg(feature = "pool")]
        pool::register(monitor, parts)?;
        #[cfg(feature = "store")]
        store::register(monitor, parts)?;
        #[cfg(feature = "tracker")]
        tracker::register(monitor, parts)?;
        #[cfg(any(feature = "ws", feature = "audio"))]
        if parts.buffers() > 0 {
            shed::register(monitor, parts)?;
        }
        let _ = (monitor, parts);
        Ok(())
    }

    /// Sessions and streams under the wiring.
    #[cfg(any(feature = "ws", feature = "audio"))]
    fn buffers(&self) -> usize {
        #[cfg(feature = "ws")]
        let ws = self.ws.len();
        #[cfg(not(feature = "ws"))]
        let ws = 0;
        #[cfg(feature = "audio")]
        let audio = self.audio.len();
        #[cfg(not(feature = "audio"))]
        let audio = 0;
        ws + audio
    }

    /// Refreshes the tracker entries of sessions and streams (traffic since
    /// the last look is not stale).
    #[cfg(feature = "tracker")]
    fn refresh_entries(&self) {
        #[cfg(feature = "ws")]
        self.ws.refresh();
        #[cfg(feature = "audio")]
        self.audio.refresh();
    }

    /// Fills every part's section of `h`. Sessions and streams first: they
    /// refresh their tracker entries before the tracker's snapshot.
    pub(crate) fn health(&self, h: &mut Health) {
        #[cfg(feature = "ws")]
        self.ws.health(h);
        #[cfg(feature = "realtime")]
        self.realtime.health(h);
        #[cfg(feature = "audio")]
        self.audio.health(h);
        #[cfg(feature = "pool")]
        self.pools.health(h);
        #[cfg(feature = "tracker")]
        self.tracker.health(h);
        #[cfg(feature = "store")]
        self.store.health(h);
        let _ = h;
    }
}

/// Every part's metric families.
pub(crate) fn metrics(o: &mut Out, h: &Health) {
    #[cfg(feature = "pool")]
    pool::metrics(o, h);
    #[cfg(feature = "tracker")]
    tracker::metrics(o, h);
    #[cfg(feature = "store")]
    store::metrics(o, h);
    #[cfg(feature = "ws")]
    ws::metrics(o, h);
    #[cfg(feature = "realtime")]
    realtime::metrics(o, h);
    #[cfg(feature = "audio")]
    audio::metrics(o, h);
    let _ = (o, h);
}

/// Registers one handler that gets a clone of `parts`.
pub(crate) fn on<F, Fut>(
    monitor: &Monitor,
    parts: &Arc<Parts>,
    level: Level,
    priority: i32,
    name: &'static str,
    run: F,
) -> Result<(), Error>
where
    F: Fn(Arc<Parts>, CleanupContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<u64, BoxError>> + Send + 'static,
{
    let parts = Arc::clone(parts);
    monitor
        .on(level, priority, name, move |ctx| {
            run(Arc::clone(&parts), ctx)
        })
        .map(drop)
        .map_err(|source| Error::Handler { name, source })
}

/// A count as a counter value.
#[cfg_attr(
    not(any(
        feature = "pool",
        feature = "store",
        feature = "tracker",
        feature = "audio"
    )),
    allow(dead_code)
)]
pub(crate) fn as_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}
