//! The benchmarks' pictures: SVG charts (plotters' SVG backend, no system
//! fonts needed) of one or more series, keepalived and xvrrpd side by side.

use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use plotters::prelude::*;

/// One named series of (x, y) points.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    /// Which daemon: keepalived's series are drawn in one colour family,
    /// xvrrpd's in another.
    pub xvrrpd: bool,
}

/// How the points of a chart are drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// Markers only (one point per trial).
    Points,
    /// Markers joined by lines (a value against a scale).
    Lines,
}

/// A chart to write.
pub struct Chart<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    pub style: Style,
    /// A logarithmic x axis (instance counts: 1, 100, 1000).
    pub log_x: bool,
}

const KEEPALIVED: [RGBColor; 3] = [
    RGBColor(214, 96, 77),
    RGBColor(244, 165, 130),
    RGBColor(178, 24, 43),
];
const XVRRPD: [RGBColor; 3] = [
    RGBColor(67, 147, 195),
    RGBColor(146, 197, 222),
    RGBColor(33, 102, 172),
];

fn bounds(series: &[Series], pick: impl Fn(&(f64, f64)) -> f64) -> Option<(f64, f64)> {
    let v: Vec<f64> = series
        .iter()
        .flat_map(|s| s.points.iter().map(&pick))
        .filter(|v| v.is_finite())
        .collect();
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (lo.is_finite() && hi.is_finite()).then_some((lo, hi))
}

/// Writes `chart` of `series` to `path` as SVG.
pub fn write_svg(path: &Path, chart: &Chart<'_>, series: &[Series]) -> Result<()> {
    if series.iter().all(|s| s.points.is_empty()) {
        bail!("{}: nothing to plot", chart.title);
    }
    let (x_lo, x_hi) = bounds(series, |p| p.0).context("x range")?;
    let (y_lo, y_hi) = bounds(series, |p| p.1).context("y range")?;
    let pad = |lo: f64, hi: f64| {
        let span = (hi - lo).abs().max(hi.abs() * 0.1).max(1e-9);
        (lo - span * 0.08, hi + span * 0.08)
    };
    let (y0, y1) = pad(y_lo.min(0.0), y_hi);
    let root = SVGBackend::new(path, (900, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let mut builder = ChartBuilder::on(&root);
    builder
        .caption(chart.title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(64);
    let mut kept = 0usize;
    let mut color = |xvrrpd: bool| {
        let c = if xvrrpd { XVRRPD } else { KEEPALIVED };
        kept += 1;
        c[(kept - 1) % 3]
    };
    macro_rules! draw {
        ($ctx:expr) => {{
            let mut ctx = $ctx;
            let mut mesh = ctx.configure_mesh();
            mesh.x_desc(chart.x_label)
                .y_desc(chart.y_label)
                .light_line_style(RGBColor(235, 235, 235));
            // Trials are counted: one label per whole number.
            if chart.style == Style::Points {
                mesh.x_labels(((x_hi - x_lo) as usize + 1).clamp(2, 20))
                    .x_label_formatter(&|x| format!("{x:.0}"));
            }
            mesh.draw().map_err(|e| anyhow!("{e}"))?;
            for s in series {
                let c = color(s.xvrrpd);
                let pts: Vec<(f64, f64)> = s.points.clone();
                let anno = match chart.style {
                    Style::Lines => ctx
                        .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
                        .map_err(|e| anyhow!("{e}"))?,
                    Style::Points => ctx
                        .draw_series(std::iter::empty::<Circle<(f64, f64), u32>>())
                        .map_err(|e| anyhow!("{e}"))?,
                };
                anno.label(s.name.clone()).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(3))
                });
                ctx.draw_series(pts.iter().map(|p| Circle::new(*p, 4, c.filled())))
                    .map_err(|e| anyhow!("{e}"))?;
            }
            ctx.configure_series_labels()
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .position(SeriesLabelPosition::UpperRight)
                .draw()
                .map_err(|e| anyhow!("{e}"))?;
        }};
    }
    if chart.log_x {
        let lo = x_lo.max(1e-3);
        let ctx = builder
            .build_cartesian_2d((lo * 0.7..x_hi * 1.4).log_scale(), y0..y1)
            .map_err(|e| anyhow!("{e}"))?;
        draw!(ctx);
    } else {
        let (x0, x1) = pad(x_lo, x_hi);
        let ctx = builder
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(|e| anyhow!("{e}"))?;
        draw!(ctx);
    }
    root.present()
        .map_err(|e| anyhow!("writing {}: {e}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_are_well_formed_svg() {
        let dir = std::env::temp_dir().join(format!("xvrrpd-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let series = vec![
            Series {
                name: "keepalived".into(),
                points: vec![(1.0, 2.5), (2.0, 3.1), (3.0, -0.4)],
                xvrrpd: false,
            },
            Series {
                name: "xvrrpd".into(),
                points: vec![(1.0, 0.2), (2.0, 0.3), (3.0, 0.1)],
                xvrrpd: true,
            },
        ];
        for (style, log_x) in [(Style::Points, false), (Style::Lines, true)] {
            let path = dir.join(format!("{style:?}.svg"));
            let chart = Chart {
                title: "detection error",
                x_label: "trial",
                y_label: "ms",
                style,
                log_x,
            };
            write_svg(&path, &chart, &series).expect("writes");
            let text = std::fs::read_to_string(&path).expect("reads");
            let doc = roxmltree::Document::parse(&text).expect("well-formed XML");
            assert_eq!(doc.root_element().tag_name().name(), "svg");
            // Both series and their legend are drawn.
            assert!(text.contains("keepalived") && text.contains("xvrrpd"));
            assert!(
                doc.descendants()
                    .filter(|n| n.has_tag_name("circle"))
                    .count()
                    >= 6
            );
        }
        let empty = Series {
            name: "none".into(),
            points: vec![],
            xvrrpd: true,
        };
        let chart = Chart {
            title: "empty",
            x_label: "x",
            y_label: "y",
            style: Style::Points,
            log_x: false,
        };
        assert!(write_svg(&dir.join("empty.svg"), &chart, &[empty]).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
