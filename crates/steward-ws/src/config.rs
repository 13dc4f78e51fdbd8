//! Plain-data configuration and its builder.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use steward_redact::redact_url;

use crate::Error;
use crate::shed::ShedFloor;

/// One MiB.
const MIB: usize = 1024 * 1024;

/// Everything a [`Client`](crate::Client) needs, as plain data (serde).
///
/// Durations are written in milliseconds (`ping_interval_ms = 15000`). Every
/// field has a default, so a config file may name only `url`.
///
/// `Debug` shows header names but never their values (`Authorization`
/// carries API keys). `Debug`, `Serialize`, errors and logs show the URL as
/// [`steward_redact::redact_url`] does: no user info, no query string.
/// `Serialize` also writes `<redacted>` for the value of every header that
/// carries credentials ([`steward_redact::is_sensitive_header`]), so a
/// serialized config is for showing: it never holds a secret, and it reads
/// back without them.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct ClientConfig {
    /// `ws://` or `wss://` URL.
    #[serde(serialize_with = "shown::url")]
    pub url: String,
    /// Extra request headers, e.g. `("Authorization", "Bearer …")`. Never logged.
    #[serde(serialize_with = "shown::headers")]
    pub headers: Vec<(String, String)>,
    /// TCP connect, TLS and HTTP upgrade together. Default 10 s.
    #[serde(
        rename = "connect_timeout_ms",
        with = "serde_with::As::<serde_with::DurationMilliSeconds<u64>>"
    )]
    pub connect_timeout: Duration,
    /// A ping is sent this often. Default 15 s.
    #[serde(
        rename = "ping_interval_ms",
        with = "serde_with::As::<serde_with::DurationMilliSeconds<u64>>"
    )]
    pub ping_interval: Duration,
    /// The peer is declared dead when no frame of any kind (pong or data)
    /// arrives within this time after a ping. Must not exceed
    /// `ping_interval`, so a silent peer is found within 2× the interval.
    /// While the application lags and the inbound queue is full the socket is
    /// not read, and that time does not count as silence. A ping queued
    /// behind a large outgoing message still counts from when it was due, so
    /// keep the timeout above the upload time of your largest message.
    /// Default 10 s.
    #[serde(
        rename = "pong_timeout_ms",
        with = "serde_with::As::<serde_with::DurationMilliSeconds<u64>>"
    )]
    pub pong_timeout: Duration,
    /// How long the close handshake may take before the socket is dropped. Default 5 s.
    #[serde(
        rename = "close_timeout_ms",
        with = "serde_with::As::<serde_with::DurationMilliSeconds<u64>>"
    )]
    pub close_timeout: Duration,
    /// How long `shutdown(Drain)` may spend writing queued messages. Default 10 s.
    #[serde(
        rename = "drain_timeout_ms",
        with = "serde_with::As::<serde_with::DurationMilliSeconds<u64>>"
    )]
    pub drain_timeout: Duration,
    /// Largest message, either way, in bytes. Default 16 MiB (realtime audio
    /// appends reach 15 MiB).
    pub max_message_size: usize,
    /// Largest incoming frame payload in bytes. Default 16 MiB.
    pub max_frame_size: usize,
    /// Outbound queue limit in messages: `send` waits, `try_send` says `Full`. Default 1024.
    pub outbound_queue_messages: usize,
    /// Outbound queue limit in bytes (a single larger message still passes
    /// when the queue is empty). Default 32 MiB.
    pub outbound_queue_bytes: usize,
    /// Inbound queue limit in messages; when full, the session stops reading
    /// the socket (TCP pushes back on the peer). Default 1024.
    pub inbound_queue_messages: usize,
    /// Inbound queue limit in bytes. Default 32 MiB.
    pub inbound_queue_bytes: usize,
    /// Events kept for the application. Beyond that `Reconnecting` events
    /// are dropped (counted in `Stats::events_dropped`) and a `Disconnected`
    /// is folded into the one before it (`Stats::events_coalesced`);
    /// `Connected`, `Disconnected`, `GaveUp` and `Closed` are never dropped
    /// (see [`Events`](crate::Events)). Default 256.
    pub event_queue: usize,
    /// Bytes of undelivered messages that unread `Disconnected` / `GaveUp`
    /// events may hold; beyond that the oldest are dropped, counted in
    /// `Stats::undelivered_dropped_*` and logged. Keep it at least
    /// `outbound_queue_bytes + max_message_size`, so one event always keeps
    /// all of its messages. Default 64 MiB.
    pub event_queue_bytes: usize,
    /// Reconnect policy.
    pub reconnect: ReconnectConfig,
    /// PEM files with extra root certificates trusted for wss:// (on top of the
    /// roots chosen by feature).
    pub root_certificates: Vec<PathBuf>,
    /// What [`Session::shed_queued`](crate::Session::shed_queued) keeps of
    /// each queue (memory pressure). Default: the newest 256 messages /
    /// 256 KiB of audio.
    pub shed_floor: ShedFloor,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            headers: Vec::new(),
            connect_timeout: Duration::from_secs(10),
            ping_interval: Duration::from_secs(15),
            pong_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(5),
            drain_timeout: Duration::from_secs(10),
            max_message_size: 16 * MIB,
            max_frame_size: 16 * MIB,
            outbound_queue_messages: 1024,
            outbound_queue_bytes: 32 * MIB,
            inbound_queue_messages: 1024,
            inbound_queue_bytes: 32 * MIB,
            event_queue: 256,
            event_queue_bytes: 64 * MIB,
            reconnect: ReconnectConfig::default(),
            root_certificates: Vec::new(),
            shed_floor: ShedFloor::default(),
        }
    }
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<String> = self
            .headers
            .iter()
            .map(|(name, _)| format!("{name}: <redacted>"))
            .collect();
        f.debug_struct("ClientConfig")
            .field("url", &redact_url(&self.url))
            .field("headers", &headers)
            .field("connect_timeout", &self.connect_timeout)
            .field("ping_interval", &self.ping_interval)
            .field("pong_timeout", &self.pong_timeout)
            .field("close_timeout", &self.close_timeout)
            .field("drain_timeout", &self.drain_timeout)
            .field("max_message_size", &self.max_message_size)
            .field("max_frame_size", &self.max_frame_size)
            .field("outbound_queue_messages", &self.outbound_queue_messages)
            .field("outbound_queue_bytes", &self.outbound_queue_bytes)
            .field("inbound_queue_messages", &self.inbound_queue_messages)
            .field("inbound_queue_bytes", &self.inbound_queue_bytes)
            .field("event_queue", &self.event_queue)
            .field("event_queue_bytes", &self.event_queue_bytes)
            .field("reconnect", &self.reconnect)
            .field("root_certificates", &self.root_certificates)
            .field("shed_floor", &self.shed_floor)
            .finish()
    }
}

/// Reconnect with exponential backoff and jitter.
///
/// The delay before attempt `n` (from 1) is
/// `min(initial_delay × multiplier^(n-1), max_delay)`, then reduced by a
/// random fraction up to `jitter` (0.2 = up to 20 % shorter) so that many
/// clients cut off together do not come back together.
///
/// `n` counts consecutive failures: failed connects, and links that were
/// lost before they had been up for `healthy_after` (a server or proxy that
/// accepts and then drops at once, or closes every session with 1009). Such
/// a *flap* does not start the count again: the backoff keeps growing and
/// `max_attempts` applies. Only a link that stayed up for `healthy_after`
/// resets it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct ReconnectConfig {
    /// Reconnect at all. Default true.
    pub enabled: bool,
    /// Give up after this many failed attempts in a row; `None` never gives up. Default 10.
    pub max_attempts: Option<u32>,
    /// Delay before the first attempt. Default 250 ms.
    #[serde(
        rename = "initial_delay_ms",
        with = "serde_with::As::<serde_with::DurationMilliSeconds<u64>>"
    )]
    pub initial_delay: Duration,
    /// Upper bound of the delay. Default 30 s.
    #[serde(
        rename = "max_delay_ms",
        with = "serde_with::As::<serde_with::DurationMilliSeconds<u64>>"
    )]
    pub max_delay: Duration,
    /// Growth factor per attempt (≥ 1). Default 2.
    pub multiplier: f64,
    /// Random reduction of each delay, 0..=1. Default 0.2.
    pub jitter: f64,
    /// A link lost before it was up this long is a failure (a flap,
    /// counted in `Stats::flaps` and logged): the attempt count goes on
    /// from where it was. Zero: every link that came up resets the count.
    /// Default 5 s.
    #[serde(
        rename = "healthy_after_ms",
        with = "serde_with::As::<serde_with::DurationMilliSeconds<u64>>"
    )]
    pub healthy_after: Duration,
}

impl Default for ReconnectConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_attempts: Some(10),
            initial_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(30),
            multiplier: 2.0,
            jitter: 0.2,
            healthy_after: Duration::from_secs(5),
        }
    }
}

impl ReconnectConfig {
    /// The delay before attempt `attempt` (from 1), given a random `unit` in 0..1.
    pub fn delay(&self, attempt: u32, unit: f64) -> Duration {
        let exp = i32::try_from(attempt.saturating_sub(1)).unwrap_or(i32::MAX);
        let base = self.initial_delay.as_secs_f64() * self.multiplier.powi(exp);
        let capped = base.min(self.max_delay.as_secs_f64());
        let jittered = capped * (1.0 - self.jitter.clamp(0.0, 1.0) * unit.clamp(0.0, 1.0));
        Duration::try_from_secs_f64(jittered.max(0.0)).unwrap_or(self.max_delay)
    }
}

/// Serde helpers: what a serialized config shows of its secrets.
mod shown {
    use serde::Serializer;
    use steward_redact::{is_sensitive_header, redact_url};

    pub(super) fn url<S: Serializer>(url: &str, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&redact_url(url))
    }

    pub(super) fn headers<S: Serializer>(
        headers: &[(String, String)],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(headers.iter().map(|(name, value)| {
            let value = if is_sensitive_header(name) {
                "<redacted>"
            } else {
                value.as_str()
            };
            (name, value)
        }))
    }
}

/// Checks the plain-data limits; the URL and headers are checked by the client.
pub(crate) fn validate(c: &ClientConfig) -> Result<(), Error> {
    let bad = |what: String| Error::Config { what, source: None };
    if c.ping_interval.is_zero() {
        return Err(bad("ping_interval must be above zero".into()));
    }
    if c.pong_timeout.is_zero() || c.pong_timeout > c.ping_interval {
        return Err(bad(format!(
            "pong_timeout ({:?}) must be above zero and at most ping_interval ({:?}) so a silent peer is found within 2x the interval",
            c.pong_timeout, c.ping_interval
        )));
    }
    for (name, value) in [
        ("max_message_size", c.max_message_size),
        ("max_frame_size", c.max_frame_size),
        ("outbound_queue_messages", c.outbound_queue_messages),
        ("outbound_queue_bytes", c.outbound_queue_bytes),
        ("inbound_queue_messages", c.inbound_queue_messages),
        ("inbound_queue_bytes", c.inbound_queue_bytes),
        ("event_queue", c.event_queue),
        ("event_queue_bytes", c.event_queue_bytes),
    ] {
        if value == 0 {
            return Err(bad(format!("{name} must be above zero")));
        }
    }
    let r = &c.reconnect;
    if !(r.multiplier.is_finite() && r.multiplier >= 1.0) {
        return Err(bad(format!(
            "reconnect.multiplier ({}) must be a finite number >= 1",
            r.multiplier
        )));
    }
    if !(0.0..=1.0).contains(&r.jitter) {
        return Err(bad(format!(
            "reconnect.jitter ({}) must be within 0..=1",
            r.jitter
        )));
    }
    Ok(())
}
