//! [`Health`] in the Prometheus text exposition format (version 0.0.4).

use std::fmt::Write as _;

use crate::health::Health;

#[cfg(feature = "realtime")]
mod realtime;
#[cfg(feature = "ws")]
mod ws;

/// One metric family at a time: `# HELP`, `# TYPE`, then its samples.
struct Out {
    text: String,
}

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{k}=\"{}\"", escape_label(v));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {}", number(value));
    }

    /// A family with one unlabelled sample.
    fn single(&mut self, name: &str, kind: &str, help: &str, value: f64) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }
}

// Counters and sizes are far below 2^53 in practice; exact enough for a
// scrape.
#[allow(clippy::cast_precision_loss)]
fn f(v: u64) -> f64 {
    v as f64
}

fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{v}")
    }
}

/// Label values escape backslash, double quote and line feed.
pub(crate) fn escape_label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Help text escapes backslash and line feed.
fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Makes label values unique: a second pool named `db` becomes `db#2`, so
/// no two series collide.
#[cfg(any(
    feature = "pool",
    feature = "ws",
    feature = "audio",
    feature = "realtime"
))]
fn unique(names: impl Iterator<Item = String>) -> Vec<String> {
    let mut seen = std::collections::HashMap::<String, usize>::new();
    names
        .map(|n| {
            let count = seen.entry(n.clone()).or_insert(0);
            *count += 1;
            if *count == 1 {
                n
            } else {
                format!("{n}#{count}")
            }
        })
        .collect()
}

/// Renders the snapshot.
pub(crate) fn render(h: &Health) -> String {
    let mut o = Out {
        text: String::with_capacity(4096),
    };
    o.single("steward_up", "gauge", "1 while the steward answers.", 1.0);
    o.single(
        "steward_uptime_seconds",
        "gauge",
        "Seconds since the steward was built.",
        f(h.uptime_ms) / 1000.0,
    );
    let level = match h.level {
        steward_monitor::Level::None => 0.0,
        steward_monitor::Level::Moderate => 1.0,
        steward_monitor::Level::Critical => 2.0,
    };
    o.single(
        "steward_memory_pressure_level",
        "gauge",
        "Reported memory pressure: 0 none, 1 moderate, 2 critical.",
        level,
    );
    o.single(
        "steward_monitor_running",
        "gauge",
        "1 while the memory monitor task runs.",
        if h.running { 1.0 } else { 0.0 },
    );
    monitor(&mut o, h);
    cleanup(&mut o, h);
    #[cfg(feature = "pool")]
    pools(&mut o, h);
    #[cfg(feature = "tracker")]
    tracker(&mut o, h);
    #[cfg(feature = "store")]
    store(&mut o, h);
    #[cfg(feature = "ws")]
    ws::render(&mut o, h);
    #[cfg(feature = "realtime")]
    realtime::render(&mut o, h);
    #[cfg(feature = "audio")]
    audio(&mut o, h);
    #[cfg(feature = "http")]
    http(&mut o, h);
    o.text
}

#[cfg(feature = "http")]
fn http(o: &mut Out, h: &Health) {
    let Some(c) = &h.http else {
        return;
    };
    let rows: [(&str, &str, &str, u64); 5] = [
        (
            "steward_http_connections",
            "gauge",
            "Connections the health endpoint serves now.",
            c.open_connections,
        ),
        (
            "steward_http_connections_accepted_total",
            "counter",
            "Connections the health endpoint took within its cap.",
            c.accepted,
        ),
        (
            "steward_http_connections_refused_total",
            "counter",
            "Connections refused at the health endpoint's connection cap.",
            c.refused,
        ),
        (
            "steward_http_connections_timed_out_total",
            "counter",
            "Connections closed by a header, read or write timeout.",
            c.timed_out,
        ),
        (
            "steward_http_connections_aged_out_total",
            "counter",
            "Connections closed at their maximum age.",
            c.aged_out,
        ),
    ];
    for (name, kind, help, v) in rows {
        o.single(name, kind, help, f(v));
    }
}

fn monitor(o: &mut Out, h: &Health) {
    if let Some(s) = &h.sample {
        o.single(
            "steward_process_resident_memory_bytes",
            "gauge",
            "Resident set size of the process at the last sample.",
            f(s.rss_bytes),
        );
        o.single(
            "steward_process_virtual_memory_bytes",
            "gauge",
            "Virtual size of the process at the last sample.",
            f(s.virtual_bytes),
        );
        o.single(
            "steward_memory_limit_bytes",
            "gauge",
            "The memory limit the process lives under (cgroup or physical).",
            f(s.limit_bytes),
        );
    }
    growth(o, h);
    let m = &h.monitor;
    let counters: [(&str, &str, u64); 11] = [
        (
            "steward_monitor_samples_total",
            "Memory samples taken.",
            m.samples,
        ),
        (
            "steward_monitor_sample_errors_total",
            "Memory samples that failed.",
            m.sample_errors,
        ),
        (
            "steward_monitor_checks_total",
            "Pressure checks done.",
            m.checks,
        ),
        (
            "steward_monitor_level_changes_total",
            "Changes of the reported pressure level.",
            m.level_changes,
        ),
        (
            "steward_monitor_notifications_total",
            "Cleanup rounds started by the monitor.",
            m.notifications,
        ),
        (
            "steward_monitor_handler_runs_total",
            "Cleanup handler runs, all outcomes.",
            m.handler_runs,
        ),
        (
            "steward_monitor_handler_failures_total",
            "Cleanup handlers that returned an error.",
            m.handler_failures,
        ),
        (
            "steward_monitor_handler_panics_total",
            "Cleanup handlers that panicked.",
            m.handler_panics,
        ),
        (
            "steward_monitor_handler_timeouts_total",
            "Cleanup handlers cancelled at the timeout.",
            m.handler_timeouts,
        ),
        (
            "steward_monitor_freed_bytes_reported_total",
            "Bytes cleanup handlers said they freed.",
            m.freed_bytes_reported,
        ),
        (
            "steward_monitor_malloc_trims_total",
            "malloc_trim calls made by the monitor itself.",
            m.malloc_trims,
        ),
    ];
    for (name, help, v) in counters {
        o.single(name, "counter", help, f(v));
    }
}

/// The leak trend: the slope once there is one, the signal, and with it
/// the change of every tracked kind since the warm-up.
fn growth(o: &mut Out, h: &Health) {
    let g = &h.growth;
    if let Some(rate) = g.bytes_per_hour {
        // Rates are far below 2^53 bytes per hour.
        #[allow(clippy::cast_precision_loss)]
        let rate = rate as f64;
        o.single(
            "steward_memory_growth_bytes_per_hour",
            "gauge",
            "Growth of the process's anonymous memory (RSS where unknown) over the monitor's window after the warm-up, a Theil-Sen slope.",
            rate,
        );
    }
    o.single(
        "steward_memory_growing",
        "gauge",
        "1 while the Growing signal is raised (the slope stayed above the configured rate).",
        if g.growing { 1.0 } else { 0.0 },
    );
    o.single(
        "steward_memory_growing_signals_total",
        "counter",
        "Growing signals raised.",
        f(g.raised),
    );
    if let Some(signal) = &g.signal
        && !signal.kinds.is_empty()
    {
        let name = "steward_memory_growing_kind_bytes_change";
        o.family(
            name,
            "gauge",
            "Per tracked kind, live bytes when Growing was raised minus at the end of the warm-up.",
        );
        for k in &signal.kinds {
            #[allow(clippy::cast_precision_loss)]
            o.sample(name, &[("kind", &k.kind)], k.bytes_change as f64);
        }
    }
}

fn cleanup(o: &mut Out, h: &Health) {
    let c = &h.cleanup;
    let counters: [(&str, &str, u64); 10] = [
        (
            "steward_cleanup_moderate_rounds_total",
            "Cleanup rounds at moderate pressure.",
            c.moderate_rounds,
        ),
        (
            "steward_cleanup_critical_rounds_total",
            "Cleanup rounds at critical pressure.",
            c.critical_rounds,
        ),
        (
            "steward_cleanup_pool_objects_reaped_total",
            "Idle pool objects closed under moderate pressure.",
            c.pool_objects_reaped,
        ),
        (
            "steward_cleanup_pool_objects_shrunk_total",
            "Idle pool objects closed down to min_idle under critical pressure.",
            c.pool_objects_shrunk,
        ),
        (
            "steward_cleanup_store_compactions_total",
            "Store compactions under memory pressure.",
            c.store_compactions,
        ),
        (
            "steward_cleanup_store_compaction_failures_total",
            "Store compactions that failed.",
            c.store_compaction_failures,
        ),
        (
            "steward_cleanup_store_expired_swept_total",
            "Expired TTL entries removed from the store under memory pressure.",
            c.store_expired_swept,
        ),
        (
            "steward_cleanup_stale_reports_total",
            "Stale-resource reports made by the tracker handler.",
            c.stale_reports,
        ),
        (
            "steward_cleanup_malloc_trims_total",
            "malloc_trim calls under critical pressure.",
            c.malloc_trims,
        ),
        (
            "steward_cleanup_malloc_trim_freed_bytes_total",
            "RSS drop measured around those malloc_trim calls.",
            c.malloc_trim_freed_bytes,
        ),
    ];
    for (name, help, v) in counters {
        o.single(name, "counter", help, f(v));
    }
    #[cfg(feature = "ws")]
    {
        o.single(
            "steward_cleanup_ws_shed_messages_total",
            "counter",
            "Queued WebSocket messages dropped beyond their floor under critical pressure.",
            f(c.ws_shed_messages),
        );
        o.single(
            "steward_cleanup_ws_shed_bytes_total",
            "counter",
            "Payload bytes of those messages.",
            f(c.ws_shed_bytes),
        );
    }
    #[cfg(feature = "audio")]
    o.single(
        "steward_cleanup_audio_shed_frames_total",
        "counter",
        "Queued audio frames (PCM16 rate) dropped beyond their floor under critical pressure.",
        f(c.audio_shed_frames),
    );
    o.single(
        "steward_cleanup_stale_resources",
        "gauge",
        "Stale resources in the last report.",
        f(c.stale_resources),
    );
}

#[cfg(feature = "pool")]
fn pools(o: &mut Out, h: &Health) {
    if h.pools.is_empty() {
        return;
    }
    let names = unique(h.pools.iter().map(|m| m.name.clone()));
    let rows: Vec<(&str, &steward_pool::Metrics)> =
        names.iter().map(String::as_str).zip(&h.pools).collect();
    let gauge =
        |o: &mut Out, name: &str, help: &str, get: &dyn Fn(&steward_pool::Metrics) -> u64| {
            o.family(name, "gauge", help);
            for (pool, m) in &rows {
                o.sample(name, &[("pool", pool)], f(get(m)));
            }
        };
    gauge(
        o,
        "steward_pool_max_size",
        "The pool's size limit (0 once closed).",
        &|m| as_u64(m.max_size),
    );
    gauge(
        o,
        "steward_pool_waiters",
        "Callers waiting for an object.",
        &|m| as_u64(m.waiters),
    );
    o.family(
        "steward_pool_objects",
        "gauge",
        "Live objects of the pool, by state.",
    );
    for (pool, m) in &rows {
        o.sample(
            "steward_pool_objects",
            &[("pool", pool), ("state", "idle")],
            f(as_u64(m.idle)),
        );
        o.sample(
            "steward_pool_objects",
            &[("pool", pool), ("state", "in_use")],
            f(as_u64(m.in_use)),
        );
    }
    let counter =
        |o: &mut Out, name: &str, help: &str, get: &dyn Fn(&steward_pool::Metrics) -> u64| {
            o.family(name, "counter", help);
            for (pool, m) in &rows {
                o.sample(name, &[("pool", pool)], f(get(m)));
            }
        };
    counter(
        o,
        "steward_pool_created_total",
        "Objects the manager created.",
        &|m| m.created,
    );
    counter(
        o,
        "steward_pool_recycled_total",
        "Checkouts that reused an idle object.",
        &|m| m.recycled,
    );
    counter(
        o,
        "steward_pool_create_errors_total",
        "Failed or timed-out creates.",
        &|m| m.create_errors,
    );
    counter(
        o,
        "steward_pool_waits_total",
        "Checkouts that had to wait.",
        &|m| m.wait_count,
    );
    counter(
        o,
        "steward_pool_wait_timeouts_total",
        "Waits that gave up at the timeout.",
        &|m| m.wait_timeouts,
    );
    o.family(
        "steward_pool_closed_total",
        "counter",
        "Objects closed, by reason.",
    );
    for (pool, m) in &rows {
        let c = &m.closed;
        let reasons = [
            ("broken", c.broken),
            ("idle", c.idle),
            ("lifetime", c.lifetime),
            ("shrink", c.shrink),
            ("closed", c.closed),
            ("evicted", c.evicted),
            ("removed", c.removed),
        ];
        for (reason, v) in reasons {
            o.sample(
                "steward_pool_closed_total",
                &[("pool", pool), ("reason", reason)],
                f(v),
            );
        }
    }
}

#[cfg(any(feature = "pool", feature = "store"))]
fn as_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

#[cfg(feature = "tracker")]
fn tracker(o: &mut Out, h: &Health) {
    let Some(s) = &h.tracker else {
        return;
    };
    // Kind names are unique within a tracker.
    type Get = fn(&steward_tracker::Totals) -> u64;
    let families: [(&str, &str, &str, Get); 6] = [
        (
            "steward_tracker_live_resources",
            "gauge",
            "Live tracked resources, by kind.",
            |t| t.live_count,
        ),
        (
            "steward_tracker_live_bytes",
            "gauge",
            "Bytes of live tracked resources, by kind.",
            |t| t.live_bytes,
        ),
        (
            "steward_tracker_peak_bytes",
            "gauge",
            "Most live bytes seen, by kind.",
            |t| t.peak_bytes,
        ),
        (
            "steward_tracker_tracked_total",
            "counter",
            "Resources ever tracked, by kind.",
            |t| t.tracked_count,
        ),
        (
            "steward_tracker_released_total",
            "counter",
            "Resources released, by kind.",
            |t| t.released_count,
        ),
        (
            "steward_tracker_released_bytes_total",
            "counter",
            "Bytes released, by kind.",
            |t| t.released_bytes,
        ),
    ];
    for (name, kind, help, get) in families {
        o.family(name, kind, help);
        for k in &s.kinds {
            o.sample(name, &[("kind", &k.kind)], f(get(&k.totals)));
        }
    }
    o.family(
        "steward_tracker_rejected_total",
        "counter",
        "Tracks refused by a hard budget, by kind.",
    );
    for k in &s.kinds {
        o.sample(
            "steward_tracker_rejected_total",
            &[("kind", &k.kind)],
            f(k.rejected),
        );
    }
    o.single(
        "steward_tracker_leaks_reported_total",
        "counter",
        "Resources reported as leaks.",
        f(s.leaks_reported),
    );
    o.single(
        "steward_tracker_unknown_ids_total",
        "counter",
        "By-key operations on unknown keys.",
        f(s.unknown_ids),
    );
}

#[cfg(feature = "store")]
fn store(o: &mut Out, h: &Health) {
    let Some(s) = &h.store else {
        return;
    };
    let label = s.file.as_str();
    let st = &s.stats;
    let rows: [(&str, &str, &str, u64); 9] = [
        (
            "steward_store_keys",
            "gauge",
            "Keys in the store.",
            as_u64(st.keys),
        ),
        (
            "steward_store_log_bytes",
            "gauge",
            "Bytes in the store's log.",
            st.log_bytes,
        ),
        (
            "steward_store_snapshot_bytes",
            "gauge",
            "Size of the last snapshot written.",
            st.snapshot_bytes,
        ),
        (
            "steward_store_writes_total",
            "counter",
            "Durable writes that changed something.",
            st.writes,
        ),
        (
            "steward_store_batches_total",
            "counter",
            "Group-commit batches (one fsync each).",
            st.batches,
        ),
        (
            "steward_store_compactions_total",
            "counter",
            "Compactions of the log into the snapshot.",
            st.compactions,
        ),
        (
            "steward_store_failed_batches_total",
            "counter",
            "Batches that failed to reach the disk.",
            st.failed_batches,
        ),
        (
            "steward_store_keys_refused_total",
            "counter",
            "Writes refused because they would create a key beyond the key cap.",
            st.keys_refused,
        ),
        (
            "steward_store_queue_full_total",
            "counter",
            "Async writes refused because the write queue was full.",
            st.queue_full,
        ),
    ];
    for (name, kind, help, v) in rows {
        o.family(name, kind, help);
        o.sample(name, &[("store", label)], f(v));
    }
}

#[cfg(feature = "audio")]
type AudioGet = fn(&steward_audio::Stats) -> u64;

/// The audio host a stream runs on, as a label value.
#[cfg(feature = "audio")]
fn audio_host(s: &steward_audio::Stats) -> &'static str {
    s.host.map_or("unknown", steward_audio::AudioHost::as_str)
}

/// One family per row of `families`, one sample per stream, labelled with
/// the stream's name and the audio host it runs on.
#[cfg(feature = "audio")]
fn audio_families(
    o: &mut Out,
    streams: &[crate::audio_part::AudioHealth],
    families: &[(&str, &str, &str, AudioGet)],
) {
    if streams.is_empty() {
        return;
    }
    let names = unique(streams.iter().map(|a| a.name.clone()));
    for &(name, kind, help, get) in families {
        o.family(name, kind, help);
        for (stream, a) in names.iter().zip(streams) {
            let labels = [("stream", stream.as_str()), ("host", audio_host(&a.stats))];
            o.sample(name, &labels, f(get(&a.stats)));
        }
    }
}

#[cfg(feature = "audio")]
fn audio(o: &mut Out, h: &Health) {
    let families: [(&str, &str, &str, AudioGet); 9] = [
        (
            "steward_audio_queued_frames",
            "gauge",
            "PCM16 frames waiting to be played.",
            |s| s.queued_frames,
        ),
        (
            "steward_audio_device_lost",
            "gauge",
            "1 once the device was lost.",
            |s| u64::from(s.device_lost),
        ),
        (
            "steward_audio_frames_in_total",
            "counter",
            "PCM16 frames accepted by write.",
            |s| s.frames_in,
        ),
        (
            "steward_audio_underruns_total",
            "counter",
            "Callbacks that ran out of audio while it was flowing.",
            |s| s.underruns,
        ),
        (
            "steward_audio_underrun_frames_total",
            "counter",
            "Device frames of silence played by underruns.",
            |s| s.underrun_frames,
        ),
        (
            "steward_audio_cleared_frames_total",
            "counter",
            "PCM16 frames dropped by clear (barge-in).",
            |s| s.cleared_frames,
        ),
        (
            "steward_audio_shed_frames_total",
            "counter",
            "PCM16 frames dropped beyond the floor (memory pressure).",
            |s| s.shed_frames,
        ),
        (
            "steward_audio_errors_total",
            "counter",
            "Errors the audio backend reported.",
            |s| s.errors,
        ),
        (
            "steward_audio_reopens_total",
            "counter",
            "Times the stream was reopened (after a lost device, say).",
            |s| s.reopens,
        ),
    ];
    audio_families(o, &h.audio, &families);
    // Only the streams whose host reports it.
    let latency: Vec<_> = h
        .audio
        .iter()
        .zip(unique(h.audio.iter().map(|a| a.name.clone())))
        .filter_map(|(a, name)| Some((name, a.stats.output_latency_us?, audio_host(&a.stats))))
        .collect();
    if !latency.is_empty() {
        let name = "steward_audio_output_latency_seconds";
        o.family(
            name,
            "gauge",
            "Output latency the audio host last reported (callback to heard).",
        );
        for (stream, us, host) in latency {
            #[allow(clippy::cast_precision_loss)]
            let secs = us as f64 / 1e6;
            o.sample(name, &[("stream", &stream), ("host", host)], secs);
        }
    }
    let capture: [(&str, &str, &str, AudioGet); 8] = [
        (
            "steward_audio_capture_queued_frames",
            "gauge",
            "PCM16 frames captured and waiting for the reader.",
            |s| s.queued_frames,
        ),
        (
            "steward_audio_capture_device_lost",
            "gauge",
            "1 once the device was lost.",
            |s| u64::from(s.device_lost),
        ),
        (
            "steward_audio_capture_frames_total",
            "counter",
            "PCM16 frames cut into chunks.",
            |s| s.frames_out,
        ),
        (
            "steward_audio_capture_overflow_frames_total",
            "counter",
            "PCM16 frames dropped, oldest first, because the reader fell behind.",
            |s| s.overflow_frames,
        ),
        (
            "steward_audio_capture_ring_overrun_frames_total",
            "counter",
            "Device frames the callback could not store (the stream thread stalled).",
            |s| s.ring_overrun_frames,
        ),
        (
            "steward_audio_capture_shed_frames_total",
            "counter",
            "PCM16 frames dropped beyond the floor (memory pressure).",
            |s| s.shed_frames,
        ),
        (
            "steward_audio_capture_errors_total",
            "counter",
            "Errors the audio backend reported.",
            |s| s.errors,
        ),
        (
            "steward_audio_capture_reopens_total",
            "counter",
            "Times the stream was reopened (after a lost device, say).",
            |s| s.reopens,
        ),
    ];
    audio_families(o, &h.capture, &capture);
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::escape_label;

    /// The model: Prometheus' own unescaping of a label value.
    fn unescape(v: &str) -> Option<String> {
        let mut out = String::new();
        let mut chars = v.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next()? {
                    '\\' => out.push('\\'),
                    '"' => out.push('"'),
                    'n' => out.push('\n'),
                    _ => return None,
                },
                '"' | '\n' => return None,
                c => out.push(c),
            }
        }
        Some(out)
    }

    proptest! {
        #[test]
        fn prop_label_escaping_round_trips(v in any::<String>()) {
            let escaped = escape_label(&v);
            prop_assert!(!escaped.contains('\n'));
            prop_assert_eq!(unescape(&escaped), Some(v));
        }
    }
}
