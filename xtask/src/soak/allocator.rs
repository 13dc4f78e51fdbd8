//! The allocator a soak runs the assistant with (`--allocator`), so that
//! glibc's retention can be compared with fewer arenas or jemalloc on the
//! same load.

use anyhow::{Context, Result, bail};

/// The allocator a soak runs the assistant with, so that their retention
/// can be compared on the same load (#22).
#[derive(Clone, Copy, Debug)]
pub(super) enum Allocator {
    /// glibc as the assistant ships: trimmed every minute.
    Glibc,
    /// glibc with the assistant's periodic trim off.
    GlibcUntrimmed,
    /// glibc limited to two arenas: fewer places for freed memory to sit.
    Arena2,
    /// The system's jemalloc, preloaded into the assistant only.
    Jemalloc,
}

/// Where distributions put the jemalloc shared library.
const JEMALLOC_PATHS: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2",
    "/usr/lib/aarch64-linux-gnu/libjemalloc.so.2",
    "/usr/lib64/libjemalloc.so.2",
    "/usr/lib/libjemalloc.so.2",
];

impl Allocator {
    pub(super) fn parse(name: &str) -> Result<Self> {
        Ok(match name {
            "glibc" => Self::Glibc,
            "glibc-untrimmed" => Self::GlibcUntrimmed,
            "arena2" => Self::Arena2,
            "jemalloc" => Self::Jemalloc,
            other => {
                bail!("--allocator is glibc, glibc-untrimmed, arena2 or jemalloc, not {other:?}")
            }
        })
    }

    pub(super) fn apply(self, cmd: &mut std::process::Command) -> Result<()> {
        match self {
            Self::Glibc | Self::GlibcUntrimmed => {}
            Self::Arena2 => {
                cmd.env("MALLOC_ARENA_MAX", "2");
            }
            Self::Jemalloc => {
                let lib = JEMALLOC_PATHS
                    .iter()
                    .find(|p| std::path::Path::new(p).exists())
                    .context(
                        "--allocator jemalloc needs libjemalloc.so.2 (package libjemalloc2)",
                    )?;
                cmd.env("LD_PRELOAD", lib);
            }
        }
        Ok(())
    }

    /// The assistant's own arguments for this run: every allocator but the
    /// shipped one is measured alone, without the periodic trim.
    pub(super) fn assistant_args(self) -> &'static [&'static str] {
        match self {
            Self::Glibc => &[],
            Self::GlibcUntrimmed | Self::Arena2 | Self::Jemalloc => &["--trim-every", "0s"],
        }
    }
}
