//! Soak-run output: `rss.csv` written as samples come in, `rss.png` drawn at
//! the end (feature `plot`).

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::Error;

/// `rss.png`, drawn with plotters (feature `plot`, on by default).
#[cfg(feature = "plot")]
mod plot;
#[cfg(feature = "plot")]
pub(crate) use plot::plot;

/// The CSV header.
pub(crate) const CSV_HEADER: &str =
    "seconds,rss_bytes,level,session,rss_anon_bytes,heap_in_use_bytes,heap_free_bytes";

/// One RSS sample of the run.
#[derive(Clone, Debug)]
pub(crate) struct Row {
    pub(crate) seconds: f64,
    pub(crate) rss_bytes: u64,
    pub(crate) level: steward::monitor::Level,
    pub(crate) session: u32,
    /// The anonymous part of RSS (0 where unknown).
    pub(crate) rss_anon_bytes: u64,
    /// What the C allocator holds, where known (glibc): a leak grows the
    /// bytes in use, an allocator keeping freed memory its free bytes.
    pub(crate) heap: Option<steward::monitor::MallocInfo>,
}

/// The samples kept in memory for the report and the plot: at most
/// [`Rows::MAX`]. When full, every second one goes and from then on only
/// every second new one is kept (the stride doubles), so a run of any length
/// holds the same memory once the first `MAX` polls are in. Kept whole, the
/// samples were the assistant's own slow growth (40 bytes a poll, 141 KiB an
/// hour at the default poll); `rss.csv` still has every one.
pub(crate) struct Rows {
    rows: Vec<Row>,
    max: usize,
    /// Polls seen; the one numbered `n` is kept when `n % stride == 0`.
    seen: u64,
    stride: u64,
}

impl Rows {
    /// 512 rows (20 KiB) fill before a soak's 10 min warm-up ends at the
    /// default poll, and are plenty for a 1000-pixel plot.
    pub(crate) const MAX: usize = 512;

    /// At most `max` rows (rounded up to an even number, at least 2), all
    /// allocated now.
    pub(crate) fn new(max: usize) -> Self {
        let max = max.max(2).next_multiple_of(2);
        Self {
            rows: Vec::with_capacity(max),
            max,
            seen: 0,
            stride: 1,
        }
    }

    pub(crate) fn push(&mut self, row: Row) {
        let n = self.seen;
        self.seen += 1;
        if !n.is_multiple_of(self.stride) {
            return;
        }
        if self.rows.len() == self.max {
            // Keep the even positions: the polls numbered a multiple of the
            // doubled stride (`n` is one: `max` is even).
            let mut position = 0;
            self.rows.retain(|_| {
                position += 1;
                position % 2 == 1
            });
            self.stride *= 2;
        }
        self.rows.push(row);
    }

    pub(crate) fn as_slice(&self) -> &[Row] {
        &self.rows
    }

    pub(crate) fn into_vec(self) -> Vec<Row> {
        self.rows
    }
}

/// Appends rows to `rss.csv` as they come (flushed each time, so a run cut
/// short still leaves its data).
pub(crate) struct CsvWriter {
    path: PathBuf,
    file: std::io::BufWriter<std::fs::File>,
}

impl CsvWriter {
    pub(crate) fn create(dir: &Path) -> Result<Self, Error> {
        let io = |path: &Path, source| Error::Output {
            path: path.to_path_buf(),
            message: "cannot create".into(),
            source: Some(source),
        };
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let path = dir.join("rss.csv");
        let file = std::fs::File::create(&path).map_err(|e| io(&path, e))?;
        let mut writer = Self {
            path,
            file: std::io::BufWriter::new(file),
        };
        writer.line(CSV_HEADER)?;
        Ok(writer)
    }

    pub(crate) fn push(&mut self, row: &Row) -> Result<(), Error> {
        let (in_use, free) = row.heap.map_or((0, 0), |h| (h.in_use_bytes, h.free_bytes));
        let line = format!(
            "{:.3},{},{},{},{},{in_use},{free}",
            row.seconds, row.rss_bytes, row.level, row.session, row.rss_anon_bytes
        );
        self.line(&line)
    }

    fn line(&mut self, line: &str) -> Result<(), Error> {
        writeln!(self.file, "{line}")
            .and_then(|()| self.file.flush())
            .map_err(|source| Error::Output {
                path: self.path.clone(),
                message: "cannot write".into(),
                source: Some(source),
            })
    }
}

/// Built without the `plot` feature: no `rss.png` (`rss.csv` has every
/// sample).
#[cfg(not(feature = "plot"))]
pub(crate) fn plot(path: &Path, _rows: &[Row], _title: &str) -> Result<(), Error> {
    tracing::info!(path = %path.display(), "built without the plot feature: not drawn");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(i: u64) -> Row {
        Row {
            seconds: i as f64,
            rss_bytes: i,
            level: steward::monitor::Level::None,
            session: 1,
            rss_anon_bytes: 0,
            heap: None,
        }
    }

    /// Against the model: after `n` polls the rows are the polls numbered
    /// a multiple of the smallest power-of-two stride that fits them in
    /// `max`, and the memory never moves.
    #[test]
    fn rows_stay_bounded_and_evenly_spaced() {
        for max in [2, 3, 8, 10] {
            let mut rows = Rows::new(max);
            let cap = max.next_multiple_of(2);
            let buffer = rows.as_slice().as_ptr();
            for n in 1..=40 * max as u64 {
                rows.push(row(n - 1));
                let mut stride = 1;
                while n.div_ceil(stride) > cap as u64 {
                    stride *= 2;
                }
                let want: Vec<u64> = (0..n).filter(|i| i % stride == 0).collect();
                let got: Vec<u64> = rows.as_slice().iter().map(|r| r.rss_bytes).collect();
                assert_eq!(got, want, "max {max}, after {n} polls");
                assert_eq!(rows.rows.capacity(), cap);
            }
            assert_eq!(rows.as_slice().as_ptr(), buffer, "reallocated");
        }
    }

    #[test]
    fn csv_and_plot_are_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut csv = CsvWriter::create(dir.path()).expect("csv");
        let rows: Vec<Row> = (0..120)
            .map(|i| Row {
                seconds: f64::from(i),
                rss_bytes: 20_000_000 + u64::from(i % 10) * 100_000,
                level: steward::monitor::Level::None,
                session: i / 40,
                rss_anon_bytes: 5_000_000,
                heap: steward::monitor::malloc_info(),
            })
            .collect();
        for row in &rows {
            csv.push(row).expect("row");
        }
        let text = std::fs::read_to_string(dir.path().join("rss.csv")).expect("csv");
        assert_eq!(text.lines().count(), 121);
        assert!(text.starts_with(CSV_HEADER));
        let png = dir.path().join("rss.png");
        plot(&png, &rows, "test").expect("plot");
        if cfg!(feature = "plot") {
            let bytes = std::fs::read(&png).expect("png");
            assert_eq!(&bytes[1..4], b"PNG");
        } else {
            assert!(!png.exists(), "drawn without the plot feature");
        }
    }
}
