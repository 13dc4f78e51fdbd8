//! One measurement of the process and the memory it lives under.

use serde::{Deserialize, Serialize};

use crate::parse::{CgroupVersion, Psi};

/// What bounds the process's memory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitSource {
    /// Physical memory (no cgroup limit, or a larger one).
    #[default]
    Physical,
    /// A cgroup memory limit smaller than physical memory.
    Cgroup,
}

/// The process's memory cgroup, when it has one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CgroupMemory {
    /// v1 or v2.
    pub version: CgroupVersion,
    /// The smallest limit from the cgroup up to the hierarchy's root, in
    /// bytes; `None` when unlimited.
    pub limit_bytes: Option<u64>,
    /// What the whole cgroup uses (`memory.current` / `memory.usage_in_bytes`),
    /// page cache included; `None` when unreadable.
    pub usage_bytes: Option<u64>,
}

/// One sample: plain data, cheap to clone, serialisable.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Sample {
    /// Resident set size of the process, in bytes.
    pub rss_bytes: u64,
    /// Virtual size of the process, in bytes.
    pub virtual_bytes: u64,
    /// Anonymous resident memory of the process (heap, stacks: RSS minus
    /// file-backed and shared pages), in bytes, where the platform tells it
    /// (`/proc/self/statm`). The leak trend follows it.
    #[serde(default)]
    pub anon_bytes: Option<u64>,
    /// The limit the process lives under: the smaller of the cgroup limit and
    /// physical memory, in bytes. Fractions in the thresholds are of this.
    pub limit_bytes: u64,
    /// Where `limit_bytes` comes from.
    pub limit_source: LimitSource,
    /// Physical memory, in bytes.
    pub physical_bytes: u64,
    /// Memory the system can still hand out without swapping, in bytes
    /// (`MemAvailable`), when known.
    pub available_bytes: Option<u64>,
    /// The memory cgroup, when the process is in one that is mounted.
    pub cgroup: Option<CgroupMemory>,
    /// Memory pressure stall information, where the kernel has it.
    pub psi: Option<Psi>,
    /// When the sample was taken, milliseconds since the Unix epoch.
    pub unix_ms: u64,
}

impl Sample {
    /// A sample with just RSS and limit set (handy for fakes and tests).
    ///
    /// ```
    /// let s = steward_monitor::Sample::with_rss(512, 1024);
    /// assert_eq!(s.fraction(), 0.5);
    /// ```
    #[must_use]
    pub fn with_rss(rss_bytes: u64, limit_bytes: u64) -> Self {
        Self {
            rss_bytes,
            virtual_bytes: rss_bytes,
            limit_bytes,
            physical_bytes: limit_bytes,
            unix_ms: now_unix_ms(),
            ..Self::default()
        }
    }

    /// The figure the leak trend follows: the anonymous resident memory
    /// when known, else the RSS.
    #[must_use]
    pub fn trend_bytes(&self) -> (u64, crate::trend::TrendMetric) {
        match self.anon_bytes {
            Some(anon) => (anon, crate::trend::TrendMetric::Anon),
            None => (self.rss_bytes, crate::trend::TrendMetric::Rss),
        }
    }

    /// RSS as a fraction of the limit (0.0 when the limit is unknown).
    #[must_use]
    pub fn fraction(&self) -> f64 {
        if self.limit_bytes == 0 {
            return 0.0;
        }
        // Precision loss above 2^53 bytes is irrelevant for a ratio.
        #[allow(clippy::cast_precision_loss)]
        let f = self.rss_bytes as f64 / self.limit_bytes as f64;
        f
    }
}

pub(crate) fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
