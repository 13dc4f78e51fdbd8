//! `rss.png`: RSS over time drawn with plotters (bitmap backend; text only
//! when a system font is found, since no font is bundled).

use std::path::Path;
use std::sync::OnceLock;

use plotters::prelude::*;

use super::Row;
use crate::Error;

/// Where a TrueType font is commonly found on Linux systems; the first one
/// present labels the plot.
const FONT_CANDIDATES: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/noto/NotoSans-Regular.ttf",
    "/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
];

/// Registers the first system font found under the name `sans-serif`;
/// false when there is none (the plot is then drawn without text).
fn font_available() -> bool {
    static FOUND: OnceLock<bool> = OnceLock::new();
    *FOUND.get_or_init(|| {
        for candidate in FONT_CANDIDATES {
            let Ok(bytes) = std::fs::read(candidate) else {
                continue;
            };
            // plotters keeps fonts for the life of the process: leak the
            // one file once.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                tracing::debug!(font = candidate, "plot font registered");
                return true;
            }
        }
        tracing::info!("no system font found: rss.png is drawn without text");
        false
    })
}

/// Draws `rows` as RSS (MiB) over time (s) into `path` (PNG, 1000×600),
/// with a vertical line at each session change.
pub(crate) fn plot(path: &Path, rows: &[Row], title: &str) -> Result<(), Error> {
    let fail = |message: String| Error::Output {
        path: path.to_path_buf(),
        message,
        source: None,
    };
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let t_max = rows.last().map_or(1.0, |r| r.seconds).max(1.0);
    let y_max = rows.iter().map(|r| mib(r.rss_bytes)).fold(1.0, f64::max) * 1.15;
    let text = font_available();

    let root = BitMapBackend::new(path, (1000, 600)).into_drawing_area();
    root.fill(&WHITE)
        .map_err(|e| fail(format!("cannot draw: {e}")))?;
    let mut builder = ChartBuilder::on(&root);
    builder.margin(20);
    if text {
        builder
            .caption(title, ("sans-serif", 22))
            .x_label_area_size(45)
            .y_label_area_size(70);
    }
    let mut chart = builder
        .build_cartesian_2d(0.0..t_max, 0.0..y_max)
        .map_err(|e| fail(format!("cannot draw: {e}")))?;
    if text {
        chart
            .configure_mesh()
            .x_desc("seconds")
            .y_desc("RSS (MiB)")
            .label_style(("sans-serif", 15))
            .draw()
            .map_err(|e| fail(format!("cannot draw the axes: {e}")))?;
    }
    // Session changes as light vertical lines.
    let changes = rows
        .windows(2)
        .filter(|w| w[0].session != w[1].session)
        .map(|w| w[1].seconds);
    for t in changes {
        chart
            .draw_series(LineSeries::new(
                [(t, 0.0), (t, y_max)],
                RGBColor(255, 170, 60),
            ))
            .map_err(|e| fail(format!("cannot draw: {e}")))?;
    }
    let series = chart
        .draw_series(LineSeries::new(
            rows.iter().map(|r| (r.seconds, mib(r.rss_bytes))),
            BLUE.stroke_width(2),
        ))
        .map_err(|e| fail(format!("cannot draw the series: {e}")))?;
    if text {
        series
            .label("RSS")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLUE.stroke_width(2)));
    }
    if rows.iter().any(|r| r.rss_anon_bytes > 0) {
        let anon = chart
            .draw_series(LineSeries::new(
                rows.iter().map(|r| (r.seconds, mib(r.rss_anon_bytes))),
                RGBColor(0, 150, 60).stroke_width(2),
            ))
            .map_err(|e| fail(format!("cannot draw the series: {e}")))?;
        if text {
            anon.label("RSS, anonymous (heap, stacks)")
                .legend(|(x, y)| {
                    PathElement::new([(x, y), (x + 20, y)], RGBColor(0, 150, 60).stroke_width(2))
                });
        }
    }
    if text {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font(("sans-serif", 15))
            .position(SeriesLabelPosition::LowerRight)
            .draw()
            .map_err(|e| fail(format!("cannot draw the legend: {e}")))?;
    }
    root.present()
        .map_err(|e| fail(format!("cannot write: {e}")))?;
    Ok(())
}
