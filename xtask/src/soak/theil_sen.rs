//! The Theil–Sen slope: the median of the slopes between every pair of
//! points, and its rank-based confidence interval (Sen 1968).
//!
//! Robust where a least-squares line is not: up to about 29 % of the points
//! can be spikes, or the series can hold a step, and the slope still follows
//! the rest. The cost is one slope per pair, O(n²) time and memory for `n`
//! points: callers bound `n` (the monitor keeps at most a few hundred points,
//! see `TrendConfig::capacity`; the soak summary thins its series first).
//!
//! This file uses the standard library only and nothing else of the crate:
//! the maintainers' task runner keeps a byte-for-byte copy (its tidy tests
//! check that it is one) to summarise soak runs, so that the figure it
//! prints and the monitor's agree.

/// The median of `values` (the mean of the two middle ones for an even
/// count), reordering them; `None` when empty. NaNs sort last.
#[must_use]
pub fn median(values: &mut [f64]) -> Option<f64> {
    let n = values.len();
    if n == 0 {
        return None;
    }
    let (left, upper, _) = values.select_nth_unstable_by(n / 2, f64::total_cmp);
    let upper = *upper;
    if n % 2 == 1 {
        return Some(upper);
    }
    // The lower middle is the largest of the left part.
    let lower = left.iter().copied().max_by(f64::total_cmp)?;
    Some(lower + (upper - lower) / 2.0)
}

/// The slopes `(y_j - y_i) / (x_j - x_i)` of every pair `i < j` whose `x`
/// differ, appended to `out` (cleared first).
pub fn pairwise_slopes(points: &[(f64, f64)], out: &mut Vec<f64>) {
    out.clear();
    for (i, &(xi, yi)) in points.iter().enumerate() {
        for &(xj, yj) in &points[i + 1..] {
            let dx = xj - xi;
            if dx != 0.0 {
                let s = (yj - yi) / dx;
                if s.is_finite() {
                    out.push(s);
                }
            }
        }
    }
}

/// The Theil–Sen slope of `points` (`(x, y)`, any order); `None` with fewer
/// than two distinct `x`. `scratch` holds the pairwise slopes, so that a
/// caller estimating often allocates once.
#[must_use]
pub fn slope_with(points: &[(f64, f64)], scratch: &mut Vec<f64>) -> Option<f64> {
    pairwise_slopes(points, scratch);
    median(scratch)
}

/// [`slope_with`] with a scratch buffer of its own.
///
/// ```
/// # use steward_monitor::theil_sen::slope;
/// // A line of slope 2 with one wild spike: the spike does not move it.
/// let mut points: Vec<(f64, f64)> = (0..10).map(|x| (f64::from(x), 2.0 * f64::from(x))).collect();
/// points[4].1 = 1e9;
/// assert_eq!(slope(&points), Some(2.0));
/// ```
#[must_use]
pub fn slope(points: &[(f64, f64)]) -> Option<f64> {
    slope_with(points, &mut Vec::new())
}

/// A slope with its confidence interval.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct Estimate {
    /// The Theil–Sen slope (median of the pairwise slopes).
    pub slope: f64,
    /// Lower end of the interval.
    pub low: f64,
    /// Upper end of the interval.
    pub high: f64,
    /// How many pairwise slopes there were.
    pub pairs: usize,
}

/// The Theil–Sen slope and its rank-based confidence interval: with `N`
/// pairwise slopes sorted and `C = z · sqrt(n (n − 1) (2n + 5) / 18)` (the
/// standard deviation of Kendall's S times `z`, e.g. 1.96 for 95 %), the
/// interval runs from the slope of rank `(N − C) / 2` to the one of rank
/// `(N + C) / 2 + 1` (Sen 1968; Hollander & Wolfe). It assumes independent
/// residuals: on an autocorrelated series (memory samples a second apart
/// are) it is too narrow, so thin the series to points far enough apart
/// first. `None` with fewer than two distinct `x`.
///
/// ```
/// # use steward_monitor::theil_sen::estimate;
/// let points: Vec<(f64, f64)> = (0..50)
///     .map(|x| (f64::from(x), 3.0 * f64::from(x) + if x % 2 == 0 { 1.0 } else { -1.0 }))
///     .collect();
/// let e = estimate(&points, 1.96).unwrap();
/// assert!(e.low <= 3.0 && 3.0 <= e.high && e.low <= e.slope && e.slope <= e.high);
/// ```
#[must_use]
pub fn estimate(points: &[(f64, f64)], z: f64) -> Option<Estimate> {
    let mut slopes = Vec::new();
    pairwise_slopes(points, &mut slopes);
    let slope = median(&mut slopes)?;
    slopes.sort_unstable_by(f64::total_cmp);
    let n_pairs = slopes.len();
    #[allow(clippy::cast_precision_loss)]
    let (n, big_n) = (points.len() as f64, n_pairs as f64);
    let c = z.abs() * (n * (n - 1.0) * (2.0 * n + 5.0) / 18.0).sqrt();
    // Ranks are 1-based in the textbook formula; indices are 0-based.
    let rank = |r: f64| -> usize {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let r = r.round().max(1.0) as usize;
        r.min(n_pairs) - 1
    };
    let low = slopes[rank((big_n - c) / 2.0)];
    let high = slopes[rank((big_n + c) / 2.0 + 1.0)];
    Some(Estimate {
        slope,
        low: low.min(slope),
        high: high.max(slope),
        pairs: n_pairs,
    })
}
