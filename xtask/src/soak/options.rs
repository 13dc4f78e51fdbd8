//! The soak's command line.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};

use super::allocator::Allocator;

const HELP: &str = "\
cargo xtask soak [--duration 1h] [--sessions N] [--drop-every T] [--session-limit L]
                 [--warmup W] [--max-growth-kib-per-hour G] [--heap] [--out DIR]
                 [--allocator jemalloc|glibc|glibc-untrimmed|arena2]

  --duration D       how long (humantime: 60s, 10m, 1h); default 1h
  --sessions N       conversations over the duration (fresh connections); default 6
  --drop-every T     the stand-in drops the link after every T turns (0: never); default 50
  --session-limit L  the stand-in ends each session after L (renewed before); default 2m (renewals
                     every 90 s: more often than the drops come)
  --poll P           sample RSS this often (humantime); default 1s
  --warmup W         seconds left out of the growth (default: 10 min, at most a fifth of the run)
  --max-growth-kib-per-hour G
                     fail when the anonymous RSS grows faster after the warm-up; default 256
                     (with more than 10 sessions the run is judged instead by RSS while the last
                     session ran: at most 1 MiB above RSS after the first 10)
  --heap             profile the heap with dhat from the end of the warm-up and list the
                     allocation sites still live at the end (heap-growth.txt)
  --out DIR          write the run's files there; default target/soak (several runs at once
                     each need their own)
  --allocator A      the assistant's allocator: jemalloc (default: as shipped), glibc (built
                     without feature jemalloc, trimmed every minute as shipped), glibc-untrimmed
                     or arena2 (glibc with MALLOC_ARENA_MAX=2, untrimmed), to compare their
                     retention on the same load
";

/// What `cargo xtask soak` was asked for.
pub(super) struct Options {
    pub(super) duration: String,
    pub(super) sessions: String,
    pub(super) drop_every: String,
    pub(super) session_limit: String,
    pub(super) poll: String,
    pub(super) warmup_s: Option<f64>,
    pub(super) max_growth_kib: f64,
    pub(super) heap: bool,
    pub(super) out: Option<PathBuf>,
    pub(super) allocator: Allocator,
}

impl Options {
    /// The options, or `None` when help was asked for (and printed).
    pub(super) fn parse(args: &[String]) -> Result<Option<Self>> {
        let mut duration = "1h".to_string();
        let mut sessions = "6".to_string();
        let mut drop_every = "50".to_string();
        let mut session_limit = "2m".to_string();
        let mut poll = "1s".to_string();
        let mut warmup_arg: Option<String> = None;
        let mut max_growth = "256".to_string();
        let mut heap = false;
        let mut out: Option<PathBuf> = None;
        let mut allocator = Allocator::Jemalloc;
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            match arg.as_str() {
                "--duration" => duration = it.next().context("--duration needs a value")?.clone(),
                "--sessions" => sessions = it.next().context("--sessions needs a value")?.clone(),
                "--drop-every" => {
                    drop_every = it.next().context("--drop-every needs a value")?.clone();
                }
                "--session-limit" => {
                    session_limit = it.next().context("--session-limit needs a value")?.clone();
                }
                "--poll" => poll = it.next().context("--poll needs a value")?.clone(),
                "--warmup" => {
                    warmup_arg = Some(it.next().context("--warmup needs seconds")?.clone());
                }
                "--max-growth-kib-per-hour" => {
                    max_growth = it
                        .next()
                        .context("--max-growth-kib-per-hour needs a number")?
                        .clone();
                }
                "--heap" => heap = true,
                "--out" => out = Some(it.next().context("--out needs a folder")?.into()),
                "--allocator" => {
                    allocator = Allocator::parse(it.next().context("--allocator needs a name")?)?;
                }
                "-h" | "--help" => {
                    print!("{HELP}");
                    return Ok(None);
                }
                other => bail!("unknown argument `{other}`\n\n{HELP}"),
            }
        }
        sessions
            .parse::<u32>()
            .ok()
            .filter(|n| *n > 0)
            .with_context(|| format!("--sessions must be a positive number, not {sessions:?}"))?;
        drop_every
            .parse::<u32>()
            .with_context(|| format!("--drop-every must be a number, not {drop_every:?}"))?;
        let max_growth_kib: f64 = max_growth
            .parse()
            .ok()
            .filter(|g: &f64| g.is_finite() && *g >= 0.0)
            .with_context(|| {
                format!("--max-growth-kib-per-hour must be a number of KiB, not {max_growth:?}")
            })?;
        let warmup_s: Option<f64> = match &warmup_arg {
            Some(w) => Some(
                w.parse()
                    .ok()
                    .filter(|w: &f64| w.is_finite() && *w >= 0.0)
                    .with_context(|| format!("--warmup must be seconds, not {w:?}"))?,
            ),
            None => None,
        };
        Ok(Some(Self {
            duration,
            sessions,
            drop_every,
            session_limit,
            poll,
            warmup_s,
            max_growth_kib,
            heap,
            out,
            allocator,
        }))
    }
}
