//! Pure parsers for the kernel files the sampler reads.
//!
//! Each function takes the file's text (or bytes) and never touches the
//! filesystem, so every format can be tested against sample contents. None of
//! them panics on any input: malformed text yields `None` or is skipped.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The first three fields of `/proc/self/statm`, in pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Statm {
    /// Total program size (virtual), in pages.
    pub size_pages: u64,
    /// Resident set size, in pages.
    pub resident_pages: u64,
    /// Resident pages backed by files or shared memory (`RssFile +
    /// RssShmem`), when the file has the field; the rest of the resident
    /// set is anonymous (heap, stacks).
    pub shared_pages: Option<u64>,
}

impl Statm {
    /// Anonymous resident pages: resident minus shared, when known.
    #[must_use]
    pub fn anon_pages(&self) -> Option<u64> {
        self.shared_pages
            .map(|shared| self.resident_pages.saturating_sub(shared))
    }
}

/// Parses `/proc/self/statm` (`size resident shared text lib data dt`).
///
/// ```
/// let s = steward_monitor::parse::statm("765 438 410 5 0 123 0\n").unwrap();
/// assert_eq!((s.size_pages, s.resident_pages, s.anon_pages()), (765, 438, Some(28)));
/// ```
#[must_use]
pub fn statm(text: &str) -> Option<Statm> {
    let mut fields = text.split_ascii_whitespace();
    let size_pages = fields.next()?.parse().ok()?;
    let resident_pages = fields.next()?.parse().ok()?;
    let shared_pages = fields.next().and_then(|f| f.parse().ok());
    Some(Statm {
        size_pages,
        resident_pages,
        shared_pages,
    })
}

/// The page size from the bytes of `/proc/self/auxv` (`AT_PAGESZ`).
///
/// The auxiliary vector is a list of native-endian `(type, value)` pairs of
/// pointer width, ended by `AT_NULL`. Reading it avoids an `unsafe` call to
/// `sysconf(_SC_PAGESIZE)`.
#[must_use]
pub fn auxv_page_size(bytes: &[u8]) -> Option<u64> {
    const AT_NULL: u64 = 0;
    const AT_PAGESZ: u64 = 6;
    const WORD: usize = std::mem::size_of::<usize>();
    let word = |chunk: &[u8]| -> Option<u64> {
        let arr: [u8; WORD] = chunk.try_into().ok()?;
        u64::try_from(usize::from_ne_bytes(arr)).ok()
    };
    for pair in bytes.chunks_exact(2 * WORD) {
        let key = word(&pair[..WORD])?;
        let value = word(&pair[WORD..])?;
        match key {
            AT_NULL => return None,
            // A page size is a power of two; anything else is a corrupt file.
            AT_PAGESZ if value.is_power_of_two() => return Some(value),
            AT_PAGESZ => return None,
            _ => {}
        }
    }
    None
}

/// The two figures of `/proc/meminfo` the monitor uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MemInfo {
    /// `MemTotal`: physical memory, in bytes.
    pub total_bytes: Option<u64>,
    /// `MemAvailable`: memory available for new work without swapping, in bytes.
    pub available_bytes: Option<u64>,
}

/// Parses `/proc/meminfo` (`MemTotal:  24684220 kB` lines).
///
/// ```
/// let m = steward_monitor::parse::meminfo("MemTotal: 2048 kB\nMemAvailable: 1024 kB\n");
/// assert_eq!(m.total_bytes, Some(2048 * 1024));
/// assert_eq!(m.available_bytes, Some(1024 * 1024));
/// ```
#[must_use]
pub fn meminfo(text: &str) -> MemInfo {
    let mut out = MemInfo::default();
    for line in text.lines() {
        let Some((key, rest)) = line.split_once(':') else {
            continue;
        };
        let slot = match key.trim() {
            "MemTotal" => &mut out.total_bytes,
            "MemAvailable" => &mut out.available_bytes,
            _ => continue,
        };
        let mut parts = rest.split_ascii_whitespace();
        let Some(Ok(n)) = parts.next().map(str::parse::<u64>) else {
            continue;
        };
        let scale = match parts.next() {
            Some("kB") => 1024,
            None => 1,
            Some(_) => continue,
        };
        *slot = n.checked_mul(scale);
    }
    out
}

/// One line of a PSI file: the share of wall time (in percent, 0–100) that
/// some (or all) tasks stalled on memory, averaged over 10, 60 and 300 s.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PsiLine {
    /// Average over the last 10 s, percent.
    pub avg10: f64,
    /// Average over the last 60 s, percent.
    pub avg60: f64,
    /// Average over the last 300 s, percent.
    pub avg300: f64,
    /// Total stall time, microseconds.
    pub total_us: u64,
}

/// Memory pressure stall information (`/proc/pressure/memory` or a cgroup's
/// `memory.pressure`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Psi {
    /// Some tasks stalled.
    pub some: PsiLine,
    /// All non-idle tasks stalled at once (absent on old kernels).
    pub full: Option<PsiLine>,
}

/// Parses a PSI file:
///
/// ```
/// let text = "some avg10=1.50 avg60=0.25 avg300=0.00 total=1234\n\
///             full avg10=0.50 avg60=0.00 avg300=0.00 total=99\n";
/// let psi = steward_monitor::parse::psi(text).unwrap();
/// assert_eq!(psi.some.avg10, 1.5);
/// assert_eq!(psi.full.unwrap().total_us, 99);
/// ```
#[must_use]
pub fn psi(text: &str) -> Option<Psi> {
    let mut some = None;
    let mut full = None;
    for line in text.lines() {
        let mut words = line.split_ascii_whitespace();
        let slot = match words.next() {
            Some("some") => &mut some,
            Some("full") => &mut full,
            _ => continue,
        };
        *slot = psi_line(words);
    }
    Some(Psi { some: some?, full })
}

fn psi_line<'a>(words: impl Iterator<Item = &'a str>) -> Option<PsiLine> {
    let (mut avg10, mut avg60, mut avg300, mut total) = (None, None, None, None);
    for word in words {
        let (key, value) = word.split_once('=')?;
        match key {
            "avg10" => avg10 = percent(value),
            "avg60" => avg60 = percent(value),
            "avg300" => avg300 = percent(value),
            "total" => total = value.parse().ok(),
            _ => {}
        }
    }
    Some(PsiLine {
        avg10: avg10?,
        avg60: avg60?,
        avg300: avg300?,
        total_us: total?,
    })
}

fn percent(value: &str) -> Option<f64> {
    value
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && (0.0..=100.0).contains(v))
}

/// A memory limit file's value: `max` (v2) or a huge number (v1) mean
/// unlimited, returned as `Some(None)`; malformed text is `None`.
///
/// cgroup v1 reports "unlimited" as `PAGE_COUNTER_MAX` pages
/// (9223372036854771712 on 4 KiB pages), so any value at or above 2^60 is
/// treated as unlimited: no machine has an exbibyte of memory.
///
/// ```
/// use steward_monitor::parse::cgroup_limit;
/// assert_eq!(cgroup_limit("max\n"), Some(None));
/// assert_eq!(cgroup_limit("9223372036854771712\n"), Some(None));
/// assert_eq!(cgroup_limit("536870912\n"), Some(Some(512 << 20)));
/// assert_eq!(cgroup_limit("lots"), None);
/// ```
#[must_use]
pub fn cgroup_limit(text: &str) -> Option<Option<u64>> {
    let text = text.trim();
    if text == "max" {
        return Some(None);
    }
    let n: u64 = text.parse().ok()?;
    Some((n < 1 << 60).then_some(n))
}

/// A byte count file (`memory.current`, `memory.usage_in_bytes`).
#[must_use]
pub fn bytes(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// One line of `/proc/self/cgroup`: `hierarchy-id:controllers:path`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CgroupEntry {
    /// The hierarchy id (0 for the v2 unified hierarchy).
    pub hierarchy: u32,
    /// The controllers bound to it (`memory`, `cpu,cpuacct`, `name=systemd`); empty for v2.
    pub controllers: Vec<String>,
    /// The cgroup's path relative to the hierarchy's root.
    pub path: String,
}

/// Parses `/proc/self/cgroup`, skipping malformed lines.
#[must_use]
pub fn proc_cgroup(text: &str) -> Vec<CgroupEntry> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ':');
            let hierarchy = parts.next()?.parse().ok()?;
            let controllers = parts
                .next()?
                .split(',')
                .filter(|c| !c.is_empty())
                .map(str::to_owned)
                .collect();
            let path = parts.next()?.to_owned();
            path.starts_with('/').then_some(CgroupEntry {
                hierarchy,
                controllers,
                path,
            })
        })
        .collect()
}

/// Which cgroup hierarchy a mount or a limit belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupVersion {
    /// The legacy per-controller hierarchies (`memory.limit_in_bytes`).
    V1,
    /// The unified hierarchy (`memory.max`).
    V2,
}

/// A cgroup filesystem mount from `/proc/self/mountinfo`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CgroupMount {
    /// v1 (`cgroup`) or v2 (`cgroup2`).
    pub version: CgroupVersion,
    /// The cgroup the mount shows at its mount point (field 4; `/` unless
    /// a cgroup namespace or a bind mount narrows it).
    pub root: String,
    /// Where it is mounted.
    pub mount_point: PathBuf,
    /// The super options (`rw,memory` for the v1 memory controller).
    pub super_options: Vec<String>,
}

/// Parses the cgroup mounts out of `/proc/self/mountinfo`.
///
/// A line reads `id parent major:minor root mount-point options
/// [optional fields...] - fstype source super-options`; paths escape spaces
/// and the like as octal (`\040`).
#[must_use]
pub fn mountinfo_cgroups(text: &str) -> Vec<CgroupMount> {
    text.lines().filter_map(mountinfo_line).collect()
}

fn mountinfo_line(line: &str) -> Option<CgroupMount> {
    let (left, right) = line.split_once(" - ")?;
    let mut right = right.split_ascii_whitespace();
    let version = match right.next()? {
        "cgroup" => CgroupVersion::V1,
        "cgroup2" => CgroupVersion::V2,
        _ => return None,
    };
    let _source = right.next()?;
    let super_options = right
        .next()
        .unwrap_or_default()
        .split(',')
        .map(str::to_owned)
        .collect();
    let mut left = left.split_ascii_whitespace();
    let root = unescape(left.nth(3)?);
    let mount_point = PathBuf::from(unescape(left.next()?));
    Some(CgroupMount {
        version,
        root,
        mount_point,
        super_options,
    })
}

/// Decodes the `\ooo` octal escapes of mountinfo paths.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            let s = std::str::from_utf8(d).ok()?;
            u8::from_str_radix(s, 8).ok()
        });
        match (bytes[i], octal) {
            (b'\\', Some(b)) => {
                out.push(b);
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Where this process's memory cgroup lives.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CgroupLocation {
    /// v1 or v2.
    pub version: CgroupVersion,
    /// The cgroup's own directory.
    pub dir: PathBuf,
    /// The hierarchy's mount point: limits are read from `dir` up to here.
    pub mount_point: PathBuf,
}

impl CgroupLocation {
    /// The directories whose limits apply, from the cgroup itself up to the
    /// mount point (a parent's limit caps its children).
    #[must_use]
    pub fn limit_dirs(&self) -> Vec<PathBuf> {
        let mut dirs = Vec::new();
        let mut dir: &Path = &self.dir;
        loop {
            dirs.push(dir.to_path_buf());
            if dir == self.mount_point {
                break;
            }
            match dir.parent() {
                Some(parent) if parent.starts_with(&self.mount_point) => dir = parent,
                _ => break,
            }
        }
        dirs
    }

    /// The limit file's name for this version.
    #[must_use]
    pub fn limit_file(&self) -> &'static str {
        match self.version {
            CgroupVersion::V1 => "memory.limit_in_bytes",
            CgroupVersion::V2 => "memory.max",
        }
    }

    /// The usage file's name for this version.
    #[must_use]
    pub fn usage_file(&self) -> &'static str {
        match self.version {
            CgroupVersion::V1 => "memory.usage_in_bytes",
            CgroupVersion::V2 => "memory.current",
        }
    }
}

/// Finds the memory cgroup from the texts of `/proc/self/cgroup` and
/// `/proc/self/mountinfo`.
///
/// A v1 memory hierarchy wins when present (on hybrid machines the memory
/// controller is bound there and the unified hierarchy holds no memory
/// files); otherwise the v2 unified hierarchy is used. `None` when the
/// process is in no memory cgroup or its hierarchy is not mounted. Whether
/// the v2 memory controller is enabled is for the caller to check (the
/// `memory.max` file exists or not).
#[must_use]
pub fn locate_cgroup(proc_cgroup_text: &str, mountinfo_text: &str) -> Option<CgroupLocation> {
    let entries = proc_cgroup(proc_cgroup_text);
    let mounts = mountinfo_cgroups(mountinfo_text);
    let v1 = entries
        .iter()
        .find(|e| e.hierarchy != 0 && e.controllers.iter().any(|c| c == "memory"))
        .and_then(|e| {
            let mount = mounts.iter().find(|m| {
                m.version == CgroupVersion::V1 && m.super_options.iter().any(|o| o == "memory")
            })?;
            Some(location(CgroupVersion::V1, mount, &e.path))
        });
    if v1.is_some() {
        return v1;
    }
    let entry = entries
        .iter()
        .find(|e| e.hierarchy == 0 && e.controllers.is_empty())?;
    let mount = mounts.iter().find(|m| m.version == CgroupVersion::V2)?;
    Some(location(CgroupVersion::V2, mount, &entry.path))
}

fn location(version: CgroupVersion, mount: &CgroupMount, path: &str) -> CgroupLocation {
    // The path in /proc/self/cgroup is relative to the hierarchy's root; the
    // mount shows `mount.root` at its mount point. Outside that subtree (a
    // cgroup namespace we cannot see past) the mount point is the best guess.
    let relative = path
        .strip_prefix(mount.root.as_str())
        .filter(|rest| rest.is_empty() || rest.starts_with('/') || mount.root == "/")
        .unwrap_or("");
    let relative = relative.trim_start_matches('/');
    let dir = if relative.is_empty() {
        mount.mount_point.clone()
    } else {
        mount.mount_point.join(relative)
    };
    CgroupLocation {
        version,
        dir,
        mount_point: mount.mount_point.clone(),
    }
}
