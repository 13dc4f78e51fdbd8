//! [`Health`] in the Prometheus text exposition format (version 0.0.4):
//! the writer, the steward's own families (monitor, growth, cleanup, HTTP);
//! each part's families live in its module under `parts`.
//!
//! Why not `prometheus-client`: its encoder writes OpenMetrics, not 0.0.4.
//! A counter family is declared without `_total` (`# TYPE x counter`) and
//! its sample gets `_total` appended, so our families
//! (`# TYPE steward_pool_created_total counter`) would change name, and a
//! 0.0.4 reader (the strict exposition test) finds samples without a
//! `TYPE`; it ends with `# EOF`. It has no summary type for the realtime
//! latency quantiles, and its registry holds live metric handles where we
//! render one snapshot per scrape, so every family would need a custom
//! collector: as much code as this writer, plus a dependency.

use std::fmt::Write as _;

use crate::health::Health;

/// One metric family at a time: `# HELP`, `# TYPE`, then its samples.
pub(crate) struct Out {
    text: String,
}

impl Out {
    pub(crate) fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    pub(crate) fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
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
    pub(crate) fn single(&mut self, name: &str, kind: &str, help: &str, value: f64) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }
}

// Counters and sizes are far below 2^53 in practice; exact enough for a
// scrape.
#[allow(clippy::cast_precision_loss)]
pub(crate) fn f(v: u64) -> f64 {
    v as f64
}

pub(crate) fn number(v: f64) -> String {
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
#[cfg_attr(
    not(any(
        feature = "pool",
        feature = "ws",
        feature = "audio",
        feature = "realtime"
    )),
    allow(dead_code)
)]
pub(crate) fn unique(names: impl Iterator<Item = String>) -> Vec<String> {
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

/// One family: name, type, help, and how to read its value from a row.
pub(crate) type Family<'a, S> = (&'a str, &'a str, &'a str, fn(&S) -> u64);

#[cfg_attr(
    not(any(
        feature = "pool",
        feature = "tracker",
        feature = "ws",
        feature = "realtime"
    )),
    allow(dead_code)
)]
/// Counter and gauge families with one sample per labelled row (a
/// slice, so adding a family needs no length kept in step).
pub(crate) fn per_row<S>(
    o: &mut Out,
    label: &str,
    rows: &[(&str, &S)],
    families: &[Family<'_, S>],
) {
    for (name, kind, help, get) in families {
        o.family(name, kind, help);
        for (row, s) in rows {
            o.sample(name, &[(label, row)], f(get(s)));
        }
    }
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
    crate::parts::metrics(&mut o, h);
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
    let counters = [
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
        (
            "steward_monitor_scheduled_trims_total",
            "Of those, the ones its trim_every schedule made.",
            m.scheduled_trims,
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
    let counters = [
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
    o.single(
        "steward_cleanup_stale_resources",
        "gauge",
        "Stale resources in the last report.",
        f(c.stale_resources),
    );
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
