//! The Linux fast path: kernel files kept open and re-read with `pread`.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::Error;
use crate::parse::{self, CgroupLocation, CgroupVersion};
use crate::sample::{CgroupMemory, LimitSource, Sample, now_unix_ms};
use crate::source::ProcessMemory;

/// The page size when `/proc/self/auxv` cannot tell (every Linux
/// architecture we build for defaults to 4 KiB).
const FALLBACK_PAGE_SIZE: u64 = 4096;

/// A kernel file kept open: procfs, sysfs and cgroupfs regenerate their
/// content on every read at offset 0, so one `pread` replaces open + read +
/// close.
pub(crate) struct ProcFile {
    path: PathBuf,
    file: File,
    buf: Vec<u8>,
}

impl ProcFile {
    pub(crate) fn open(path: impl Into<PathBuf>) -> Result<Self, Error> {
        let path = path.into();
        let file = File::open(&path).map_err(|source| Error::Read {
            path: path.clone(),
            source,
        })?;
        Ok(Self {
            path,
            file,
            buf: Vec::with_capacity(256),
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the whole file from offset 0 (usually one `pread`).
    pub(crate) fn read(&mut self) -> Result<&str, Error> {
        self.buf.clear();
        // Large enough for /proc/meminfo in one read: every further pread
        // at an offset makes the kernel generate the whole text again.
        let mut chunk = [0u8; 8192];
        loop {
            let offset = self.buf.len() as u64;
            let n = self
                .file
                .read_at(&mut chunk, offset)
                .map_err(|source| Error::Read {
                    path: self.path.clone(),
                    source,
                })?;
            self.buf.extend_from_slice(&chunk[..n]);
            // procfs, sysfs and cgroupfs hand out everything they have up to
            // the buffer's size: a short read is the end. Stopping here saves
            // the second syscall that would return 0 (half the cost of a
            // statm sample).
            if n < chunk.len() {
                break;
            }
            // Guard against a file that never ends.
            if self.buf.len() > 1 << 20 {
                break;
            }
        }
        std::str::from_utf8(&self.buf).map_err(|_| Error::Parse {
            path: self.path.clone(),
            what: "not UTF-8".into(),
        })
    }

    fn parse_err(&self, what: &str) -> Error {
        Error::Parse {
            path: self.path.clone(),
            what: what.into(),
        }
    }
}

/// The memory cgroup's files.
struct CgroupFiles {
    location: CgroupLocation,
    /// Limit files from the cgroup up to the hierarchy's root.
    limits: Vec<ProcFile>,
    usage: Option<ProcFile>,
}

impl CgroupFiles {
    fn open(location: CgroupLocation) -> Option<Self> {
        let limits: Vec<ProcFile> = location
            .limit_dirs()
            .into_iter()
            .filter_map(|dir| ProcFile::open(dir.join(location.limit_file())).ok())
            .collect();
        // No limit file at all: the controller is not enabled there.
        if limits.is_empty() {
            return None;
        }
        let usage = ProcFile::open(location.dir.join(location.usage_file())).ok();
        Some(Self {
            location,
            limits,
            usage,
        })
    }

    fn read(&mut self) -> CgroupMemory {
        let limit_bytes = self
            .limits
            .iter_mut()
            .filter_map(|f| f.read().ok().and_then(parse::cgroup_limit).flatten())
            .min();
        let usage_bytes = self
            .usage
            .as_mut()
            .and_then(|f| f.read().ok().and_then(parse::bytes));
        CgroupMemory {
            version: self.location.version,
            limit_bytes,
            usage_bytes,
        }
    }
}

/// Everything the fast path keeps open.
pub(crate) struct FastProc {
    page_size: u64,
    statm: ProcFile,
    meminfo: ProcFile,
    cgroup: Option<CgroupFiles>,
    psi: Option<ProcFile>,
}

impl FastProc {
    pub(crate) fn open() -> Result<Self, Error> {
        let page_size = std::fs::read("/proc/self/auxv")
            .ok()
            .and_then(|b| parse::auxv_page_size(&b))
            .unwrap_or(FALLBACK_PAGE_SIZE);
        let mut statm = ProcFile::open("/proc/self/statm")?;
        // Fail now, not on the first sample, when the format is unexpected.
        let text = statm.read()?;
        if parse::statm(text).is_none() {
            return Err(statm.parse_err("expected `size resident ...` in pages"));
        }
        let meminfo = ProcFile::open("/proc/meminfo")?;
        let cgroup = discover_cgroup().and_then(CgroupFiles::open);
        let psi = cgroup
            .as_ref()
            .filter(|c| c.location.version == CgroupVersion::V2)
            .and_then(|c| ProcFile::open(c.location.dir.join("memory.pressure")).ok())
            .or_else(|| ProcFile::open("/proc/pressure/memory").ok())
            // Some kernels have the file but refuse reads (psi=0 at boot).
            .and_then(|mut f| f.read().ok().and_then(parse::psi).map(|_| f));
        tracing::debug!(
            page_size,
            cgroup = ?cgroup.as_ref().map(|c| &c.location),
            psi = ?psi.as_ref().map(ProcFile::path),
            "memory monitor: /proc fast path ready"
        );
        Ok(Self {
            page_size,
            statm,
            meminfo,
            cgroup,
            psi,
        })
    }

    pub(crate) fn cgroup_location(&self) -> Option<&CgroupLocation> {
        self.cgroup.as_ref().map(|c| &c.location)
    }

    pub(crate) fn psi_path(&self) -> Option<&Path> {
        self.psi.as_ref().map(ProcFile::path)
    }

    pub(crate) fn read_memory(&mut self) -> Result<ProcessMemory, Error> {
        let page_size = self.page_size;
        let text = self.statm.read()?;
        let Some(statm) = parse::statm(text) else {
            return Err(self
                .statm
                .parse_err("expected `size resident ...` in pages"));
        };
        Ok(ProcessMemory {
            rss_bytes: statm.resident_pages.saturating_mul(page_size),
            virtual_bytes: statm.size_pages.saturating_mul(page_size),
            anon_bytes: statm.anon_pages().map(|p| p.saturating_mul(page_size)),
        })
    }

    pub(crate) fn sample(&mut self) -> Result<Sample, Error> {
        let memory = self.read_memory()?;
        let meminfo = parse::meminfo(self.meminfo.read()?);
        let Some(physical) = meminfo.total_bytes else {
            return Err(self.meminfo.parse_err("no MemTotal line"));
        };
        let cgroup = self.cgroup.as_mut().map(CgroupFiles::read);
        let psi = self
            .psi
            .as_mut()
            .and_then(|f| f.read().ok().and_then(parse::psi));
        let (limit_bytes, limit_source) = match cgroup.as_ref().and_then(|c| c.limit_bytes) {
            Some(limit) if limit < physical => (limit, LimitSource::Cgroup),
            _ => (physical, LimitSource::Physical),
        };
        Ok(Sample {
            rss_bytes: memory.rss_bytes,
            virtual_bytes: memory.virtual_bytes,
            anon_bytes: memory.anon_bytes,
            limit_bytes,
            limit_source,
            physical_bytes: physical,
            available_bytes: meminfo.available_bytes,
            cgroup,
            psi,
            unix_ms: now_unix_ms(),
        })
    }
}

fn discover_cgroup() -> Option<CgroupLocation> {
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    parse::locate_cgroup(&cgroup, &mountinfo)
}

/// RSS of this process from `/proc/self/statm`, opened on first use.
/// Used to measure what `malloc_trim` gave back whatever the sample source.
pub(crate) struct RssProbe {
    fast: Option<(ProcFile, u64)>,
}

impl RssProbe {
    pub(crate) fn new() -> Self {
        let page_size = std::fs::read("/proc/self/auxv")
            .ok()
            .and_then(|b| parse::auxv_page_size(&b))
            .unwrap_or(FALLBACK_PAGE_SIZE);
        Self {
            fast: ProcFile::open("/proc/self/statm")
                .ok()
                .map(|f| (f, page_size)),
        }
    }

    pub(crate) fn rss(&mut self) -> Option<u64> {
        let (file, page_size) = self.fast.as_mut()?;
        let statm = parse::statm(file.read().ok()?)?;
        Some(statm.resident_pages.saturating_mul(*page_size))
    }
}

/// Reads a memory cgroup's limit (the smallest from the cgroup up to the
/// hierarchy's root) and usage. `None` when no limit file exists there (the
/// memory controller is not enabled for it).
#[must_use]
pub fn read_cgroup_memory(location: &CgroupLocation) -> Option<CgroupMemory> {
    CgroupFiles::open(location.clone()).map(|mut files| files.read())
}
