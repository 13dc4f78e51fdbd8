//! The allocator a soak runs the assistant with (`--allocator`), so that
//! the shipped jemalloc can be compared with glibc, trimmed or not, on the
//! same load.

use anyhow::{Result, bail};

/// The allocator a soak runs the assistant with, so that their retention
/// can be compared on the same load (#22).
#[derive(Clone, Copy, Debug)]
pub(super) enum Allocator {
    /// As the binary ships: jemalloc (feature `jemalloc`) for Rust's
    /// allocations.
    Jemalloc,
    /// glibc, with the assistant's periodic trim (every minute).
    Glibc,
    /// glibc with the assistant's periodic trim off.
    GlibcUntrimmed,
    /// glibc limited to two arenas, untrimmed: fewer places for freed
    /// memory to sit.
    Arena2,
}

impl Allocator {
    pub(super) fn parse(name: &str) -> Result<Self> {
        Ok(match name {
            "jemalloc" => Self::Jemalloc,
            "glibc" => Self::Glibc,
            "glibc-untrimmed" => Self::GlibcUntrimmed,
            "arena2" => Self::Arena2,
            other => {
                bail!("--allocator is jemalloc, glibc, glibc-untrimmed or arena2, not {other:?}")
            }
        })
    }

    /// The features the binary is built with: glibc builds leave out
    /// `jemalloc` (and keep the default `plot`).
    pub(super) fn build_args(self) -> &'static [&'static str] {
        match self {
            Self::Jemalloc => &[],
            Self::Glibc | Self::GlibcUntrimmed | Self::Arena2 => {
                &["--no-default-features", "--features", "plot"]
            }
        }
    }

    /// Whether glibc serves the assistant's allocations (so that its view,
    /// in use and free, is the heap's).
    pub(super) fn is_glibc(self) -> bool {
        !matches!(self, Self::Jemalloc)
    }

    pub(super) fn apply(self, cmd: &mut std::process::Command) {
        if let Self::Arena2 = self {
            cmd.env("MALLOC_ARENA_MAX", "2");
        }
    }

    /// The assistant's own arguments for this run: the shipped periodic
    /// trim stays on but for the untrimmed glibc runs.
    pub(super) fn assistant_args(self) -> &'static [&'static str] {
        match self {
            Self::Jemalloc | Self::Glibc => &[],
            Self::GlibcUntrimmed | Self::Arena2 => &["--trim-every", "0s"],
        }
    }
}
