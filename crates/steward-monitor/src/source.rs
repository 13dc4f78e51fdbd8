//! Where samples come from: the real process ([`SystemSource`]) or a script
//! ([`FakeSource`]).

use std::collections::VecDeque;
use std::sync::Arc;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use sysinfo::{MemoryRefreshKind, ProcessRefreshKind, ProcessesToUpdate};

use crate::error::Error;
use crate::sample::{LimitSource, Sample, now_unix_ms};

/// Anything that can take a [`Sample`]. Sampling is synchronous and short
/// (microseconds): it reads a few kernel files.
pub trait SampleSource: Send + 'static {
    /// Takes one sample.
    ///
    /// # Errors
    /// When the underlying files or APIs fail.
    fn sample(&mut self) -> Result<Sample, Error>;

    /// A short name for logs.
    fn name(&self) -> &str {
        "custom"
    }
}

/// RSS and virtual size of the process, the fast path's result.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ProcessMemory {
    /// Resident set size, bytes.
    pub rss_bytes: u64,
    /// Virtual size, bytes.
    pub virtual_bytes: u64,
    /// Anonymous resident memory (RSS minus file-backed and shared pages),
    /// bytes, where the platform tells it.
    pub anon_bytes: Option<u64>,
}

/// The real sampler.
///
/// On Linux it reads `/proc/self/statm` through a file kept open (one
/// `pread`, well under a microsecond), `/proc/meminfo`, the memory cgroup's
/// limit and usage files (v1 or v2, limits of every ancestor) and PSI (the
/// cgroup's `memory.pressure` on v2, else `/proc/pressure/memory`). Elsewhere,
/// or when `/proc` is unusable, it asks `sysinfo`, refreshing only this
/// process's memory and the RAM figures.
pub struct SystemSource {
    #[cfg(target_os = "linux")]
    fast: Option<crate::linux::FastProc>,
    sys: Option<SysinfoProbe>,
}

impl std::fmt::Debug for SystemSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SystemSource")
            .field("fast_path", &self.uses_fast_path())
            .finish_non_exhaustive()
    }
}

impl SystemSource {
    /// The fast path where the platform has it, `sysinfo` otherwise.
    ///
    /// # Errors
    /// When neither `/proc` nor `sysinfo` can describe this process.
    pub fn new() -> Result<Self, Error> {
        #[cfg(target_os = "linux")]
        match crate::linux::FastProc::open() {
            Ok(fast) => {
                return Ok(Self {
                    fast: Some(fast),
                    sys: None,
                });
            }
            Err(error) => {
                tracing::warn!(%error, "memory monitor: /proc fast path unavailable, using sysinfo");
            }
        }
        Self::sysinfo_only()
    }

    /// `sysinfo` only, even where the fast path exists (to compare them).
    ///
    /// # Errors
    /// When `sysinfo` does not support this platform.
    pub fn sysinfo_only() -> Result<Self, Error> {
        Ok(Self {
            #[cfg(target_os = "linux")]
            fast: None,
            sys: Some(SysinfoProbe::new()?),
        })
    }

    /// Whether samples come from the `/proc` fast path.
    #[must_use]
    pub fn uses_fast_path(&self) -> bool {
        #[cfg(target_os = "linux")]
        if self.fast.is_some() {
            return true;
        }
        false
    }

    /// Just RSS and virtual size: on Linux one `pread` of `/proc/self/statm`.
    ///
    /// # Errors
    /// When the file or `sysinfo` fails.
    pub fn read_memory(&mut self) -> Result<ProcessMemory, Error> {
        #[cfg(target_os = "linux")]
        if let Some(fast) = &mut self.fast {
            return fast.read_memory();
        }
        self.probe()?.read_memory()
    }

    /// The memory cgroup this process is in, when found.
    #[must_use]
    pub fn cgroup_location(&self) -> Option<&crate::parse::CgroupLocation> {
        #[cfg(target_os = "linux")]
        if let Some(fast) = &self.fast {
            return fast.cgroup_location();
        }
        None
    }

    /// The PSI file read, when the kernel has one.
    #[must_use]
    pub fn psi_path(&self) -> Option<&std::path::Path> {
        #[cfg(target_os = "linux")]
        if let Some(fast) = &self.fast {
            return fast.psi_path();
        }
        None
    }

    fn probe(&mut self) -> Result<&mut SysinfoProbe, Error> {
        if self.sys.is_none() {
            self.sys = Some(SysinfoProbe::new()?);
        }
        self.sys.as_mut().ok_or(Error::Sysinfo {
            what: "describe this process",
            source: None,
        })
    }
}

impl SampleSource for SystemSource {
    fn sample(&mut self) -> Result<Sample, Error> {
        #[cfg(target_os = "linux")]
        if let Some(fast) = &mut self.fast {
            return fast.sample();
        }
        self.probe()?.sample()
    }

    fn name(&self) -> &str {
        if self.uses_fast_path() {
            "proc"
        } else {
            "sysinfo"
        }
    }
}

/// The `sysinfo` sampler: own process memory, RAM, cgroup limits.
struct SysinfoProbe {
    system: sysinfo::System,
    pid: sysinfo::Pid,
}

impl SysinfoProbe {
    fn new() -> Result<Self, Error> {
        let boxed = |what, e: sysinfo::Error| Error::Sysinfo {
            what,
            source: Some(Box::new(e)),
        };
        let pid = sysinfo::get_current_pid().map_err(|e| boxed("find the current pid", e))?;
        let system = sysinfo::System::new().map_err(|e| boxed("start", e))?;
        Ok(Self { system, pid })
    }

    fn read_memory(&mut self) -> Result<ProcessMemory, Error> {
        self.system.refresh_processes_specifics(
            ProcessesToUpdate::Some(&[self.pid]),
            false,
            ProcessRefreshKind::nothing().with_memory().without_tasks(),
        );
        let process = self.system.process(self.pid).ok_or(Error::Sysinfo {
            what: "see this process's memory",
            source: None,
        })?;
        Ok(ProcessMemory {
            rss_bytes: process.memory(),
            virtual_bytes: process.virtual_memory(),
            anon_bytes: None,
        })
    }

    fn sample(&mut self) -> Result<Sample, Error> {
        let memory = self.read_memory()?;
        self.system
            .refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram());
        let physical = self.system.total_memory();
        // This process's cgroup, not the machine's root one.
        let cgroup_limit = self
            .system
            .process(self.pid)
            .and_then(sysinfo::Process::cgroup_limits)
            .map(|l| l.total_memory)
            .filter(|l| *l > 0 && *l < physical);
        let (limit_bytes, limit_source) = match cgroup_limit {
            Some(l) => (l, LimitSource::Cgroup),
            None => (physical, LimitSource::Physical),
        };
        Ok(Sample {
            rss_bytes: memory.rss_bytes,
            virtual_bytes: memory.virtual_bytes,
            anon_bytes: memory.anon_bytes,
            limit_bytes,
            limit_source,
            physical_bytes: physical,
            available_bytes: Some(self.system.available_memory()),
            cgroup: None,
            psi: None,
            unix_ms: now_unix_ms(),
        })
    }
}

/// A scripted sample source for tests: samples are played in order, then the
/// last one repeats. A cheap-clone handle: keep a clone to push more samples
/// while the monitor owns the other.
///
/// ```
/// use steward_monitor::{FakeSource, Sample, SampleSource};
/// let mut fake = FakeSource::new(Sample::with_rss(10, 100));
/// fake.push(Sample::with_rss(90, 100));
/// assert_eq!(fake.sample().unwrap().rss_bytes, 90);
/// assert_eq!(fake.sample().unwrap().rss_bytes, 90); // repeats the last
/// ```
#[derive(Clone, Debug)]
pub struct FakeSource {
    state: Arc<Mutex<FakeState>>,
}

#[derive(Debug)]
struct FakeState {
    queue: VecDeque<Result<Sample, String>>,
    last: Sample,
    taken: u64,
}

impl FakeSource {
    /// A source that returns `initial` until told otherwise.
    #[must_use]
    pub fn new(initial: Sample) -> Self {
        Self {
            state: Arc::new(Mutex::new(FakeState {
                queue: VecDeque::new(),
                last: initial,
                taken: 0,
            })),
        }
    }

    /// Queues a sample.
    pub fn push(&self, sample: Sample) {
        self.state.lock().queue.push_back(Ok(sample));
    }

    /// Queues a failure.
    pub fn push_error(&self, message: impl Into<String>) {
        self.state.lock().queue.push_back(Err(message.into()));
    }

    /// Drops the queue and returns `sample` from now on.
    pub fn set(&self, sample: Sample) {
        let mut state = self.state.lock();
        state.queue.clear();
        state.last = sample;
    }

    /// Samples taken so far (failures included).
    #[must_use]
    pub fn taken(&self) -> u64 {
        self.state.lock().taken
    }
}

impl SampleSource for FakeSource {
    fn sample(&mut self) -> Result<Sample, Error> {
        let mut state = self.state.lock();
        state.taken += 1;
        match state.queue.pop_front() {
            Some(Ok(sample)) => {
                state.last = sample.clone();
                Ok(sample)
            }
            Some(Err(message)) => Err(Error::source_failed("fake", message)),
            None => Ok(state.last.clone()),
        }
    }

    fn name(&self) -> &str {
        "fake"
    }
}
