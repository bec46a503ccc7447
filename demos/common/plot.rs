//! Figures: line charts (linear or log y) in panels, image grids, the palette and the embedded
//! font, written as compressed PNG.

use super::DemoResult;
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use std::path::Path;

/// The font family registered for the figures (DejaVu Sans, embedded: no system fonts needed).
const FONT: &str = "sans-serif";

/// Registers the embedded DejaVu Sans as the figures' font.
pub fn register_font() -> DemoResult<()> {
    plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular())
        .map_err(|_| "the embedded DejaVu Sans font did not parse")?;
    plotters::style::register_font(FONT, FontStyle::Bold, dejavu::sans::bold())
        .map_err(|_| "the embedded DejaVu Sans Bold font did not parse")?;
    Ok(())
}

/// Colours of the series, in order (the "tab10" palette).
pub const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// One line of a chart.
#[derive(Clone, Debug)]
pub struct Series {
    /// Legend entry (empty: not in the legend).
    pub name: String,
    /// (x, y) points; non-finite ones (and, on a log axis, non-positive ones) are skipped.
    pub points: Vec<(f64, f64)>,
    /// Line colour.
    pub color: RGBColor,
    /// Dashed instead of solid.
    pub dashed: bool,
    /// Draw a dot at every point.
    pub markers: bool,
}

impl Series {
    /// A solid line with markers in `color`.
    pub fn new(name: &str, points: Vec<(f64, f64)>, color: RGBColor) -> Series {
        Series {
            name: name.to_string(),
            points,
            color,
            dashed: false,
            markers: true,
        }
    }
}

/// One chart: title, axis labels, lines; y optionally on a log scale.
#[derive(Clone, Debug)]
pub struct Panel {
    /// Title above the chart.
    pub title: String,
    /// Label of the x axis.
    pub x_label: String,
    /// Label of the y axis.
    pub y_label: String,
    /// The lines.
    pub series: Vec<Series>,
    /// Base-10 log scale on y.
    pub log_y: bool,
    /// Fixed y range (in data units), else fitted to the data.
    pub y_range: Option<(f64, f64)>,
}
/// The two-panel figure every training demo writes: training loss (log scale) and test
/// accuracy per epoch, one series per variant, titled with the run's `setting`.
pub fn plot_training_curves(
    path: &Path,
    setting: &str,
    loss: Vec<Series>,
    accuracy: Vec<Series>,
) -> DemoResult<()> {
    plot_panels(
        path,
        2,
        (640, 440),
        &training_curve_panels(setting, loss, accuracy),
    )
}

/// The two panels of [`plot_training_curves`], for figures with one such pair per setting.
pub fn training_curve_panels(
    setting: &str,
    loss: Vec<Series>,
    accuracy: Vec<Series>,
) -> [Panel; 2] {
    [
        Panel {
            title: format!("Training loss ({setting})"),
            x_label: "epoch".into(),
            y_label: "cross-entropy (log scale)".into(),
            series: loss,
            log_y: true,
            y_range: None,
        },
        Panel {
            title: format!("Test accuracy ({setting})"),
            x_label: "epoch".into(),
            y_label: "accuracy".into(),
            series: accuracy,
            log_y: false,
            y_range: Some((0.0, 1.0)),
        },
    ]
}

/// Draws `panels` on a grid of `cols` columns, each `size` pixels, into the PNG `path`.
pub fn plot_panels(path: &Path, cols: usize, size: (u32, u32), panels: &[Panel]) -> DemoResult<()> {
    let cols = cols.clamp(1, panels.len().max(1));
    let rows = panels.len().div_ceil(cols).max(1);
    let root =
        BitMapBackend::new(path, (size.0 * cols as u32, size.1 * rows as u32)).into_drawing_area();
    root.fill(&WHITE)?;
    let areas = root.split_evenly((rows, cols));
    for (panel, area) in panels.iter().zip(&areas) {
        draw_panel(area, panel)?;
    }
    root.present()?;
    drop(root);
    recompress(path)
}

/// Rewrites a PNG with the strongest deflate setting and adaptive row filters: plotters
/// writes fast, large files; this halves them.
fn recompress(path: &Path) -> DemoResult<()> {
    let mut reader =
        png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path)?)).read_info()?;
    let mut pixels = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut pixels)?;
    let mut encoder = png::Encoder::new(
        std::io::BufWriter::new(std::fs::File::create(path)?),
        info.width,
        info.height,
    );
    encoder.set_color(info.color_type);
    encoder.set_depth(info.bit_depth);
    encoder.set_compression(png::Compression::Best);
    encoder.set_adaptive_filter(png::AdaptiveFilterType::Adaptive);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(&pixels[..info.buffer_size()])?;
    writer.finish()?;
    Ok(())
}

/// (min, max) of `values`, padded by 5%; flat data gets ±`flat` around its value.
fn padded_range(values: impl Iterator<Item = f64>, flat: f64) -> Option<(f64, f64)> {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if !(lo.is_finite() && hi.is_finite()) {
        return None;
    }
    if hi - lo <= 1e-9 * lo.abs().max(1.0) {
        return Some((lo - flat, hi + flat));
    }
    let pad = 0.05 * (hi - lo);
    Some((lo - pad, hi + pad))
}

/// Decimals that tell apart ticks about `step` apart.
fn decimals(step: f64) -> usize {
    if step > 0.0 && step.is_finite() {
        (-step.log10()).ceil().clamp(0.0, 6.0) as usize
    } else {
        2
    }
}

fn draw_panel(
    area: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
    p: &Panel,
) -> DemoResult<()> {
    let ty = |y: f64| if p.log_y { y.log10() } else { y };
    let keep = |&(x, y): &(f64, f64)| x.is_finite() && y.is_finite() && (!p.log_y || y > 0.0);
    // The points in data units (drawn) and on the axis's linear scale (fitted, placed).
    let lines: Vec<(&Series, Vec<(f64, f64)>)> = p
        .series
        .iter()
        .map(|s| (s, s.points.iter().copied().filter(keep).collect()))
        .collect();
    let scaled: Vec<(&Series, Vec<(f64, f64)>)> = lines
        .iter()
        .map(|(s, pts)| (*s, pts.iter().map(|&(x, y)| (x, ty(y))).collect()))
        .collect();
    let all = || scaled.iter().flat_map(|(_, pts)| pts.iter().copied());
    let (x0, x1) = padded_range(all().map(|q| q.0), 0.5).unwrap_or((0.0, 1.0));
    let (y0, y1) = match p.y_range {
        Some((a, b)) => (ty(a), ty(b)),
        None => {
            let flat = all().next().map_or(1.0, |q| q.1.abs().max(1.0) * 0.1);
            let flat = if p.log_y { 0.1 } else { flat };
            padded_range(all().map(|q| q.1), flat).unwrap_or((0.0, 1.0))
        }
    };
    let untransform = |v: f64| if p.log_y { 10f64.powf(v) } else { v };
    let y_axis = YAxis {
        lo: untransform(y0),
        hi: untransform(y1),
        log: p.log_y,
    };
    let mut chart = ChartBuilder::on(area)
        .caption(&p.title, (FONT, 20).into_font().style(FontStyle::Bold))
        .margin(12)
        .x_label_area_size(42)
        .y_label_area_size(64)
        .build_cartesian_2d(x0..x1, y_axis.clone())?;
    // Decade ticks get compact labels; evenly spaced ones as many decimals as their spacing.
    let decades = p.log_y && y_axis.hi / y_axis.lo >= 10.0;
    let y_decimals = decimals((y_axis.hi - y_axis.lo) / 8.0);
    let y_fmt = move |v: &f64| {
        if decades {
            number(*v)
        } else {
            format!("{v:.y_decimals$}")
        }
    };
    let x_fmt = |v: &f64| {
        if (v - v.round()).abs() < 1e-9 {
            format!("{v:.0}")
        } else {
            format!("{v:.1}")
        }
    };
    let mut mesh = chart.configure_mesh();
    mesh.x_desc(p.x_label.as_str())
        .y_desc(p.y_label.as_str())
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 15))
        .x_label_formatter(&x_fmt)
        .y_label_formatter(&y_fmt)
        .light_line_style(TRANSPARENT)
        .bold_line_style(RGBColor(225, 225, 225));
    // Whole-number x data (epochs, layers) gets whole-number ticks.
    let integral_x = all().all(|q| (q.0 - q.0.round()).abs() < 1e-9);
    if integral_x && x1 - x0 < 12.0 {
        mesh.x_labels((x1 - x0).ceil() as usize + 1);
    }
    mesh.draw()?;
    let mut legend = false;
    for (s, pts) in &lines {
        let style = ShapeStyle::from(&s.color).stroke_width(2);
        let drawn = if s.dashed {
            chart.draw_series(DashedLineSeries::new(pts.iter().copied(), 8, 5, style))?
        } else {
            chart.draw_series(LineSeries::new(pts.iter().copied(), style))?
        };
        if !s.name.is_empty() {
            legend = true;
            let c = s.color;
            drawn.label(s.name.as_str()).legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(3))
            });
        }
        if s.markers && pts.len() <= 60 {
            chart.draw_series(pts.iter().map(|&q| Circle::new(q, 3, s.color.filled())))?;
        }
    }
    if legend {
        chart
            .configure_series_labels()
            .position(emptiest_corner(&scaled, (x0, x1), (y0, y1)))
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(180, 180, 180))
            .label_font((FONT, 14))
            .draw()?;
    }
    Ok(())
}

/// A y axis on a linear or base-10 log scale, with round tick values on either (1, 2, 5 ×
/// 10^k on a log axis that spans decades, evenly spaced round values on a short one).
#[derive(Clone, Debug)]
struct YAxis {
    lo: f64,
    hi: f64,
    log: bool,
}

impl YAxis {
    fn scale(&self, v: f64) -> f64 {
        if self.log {
            v.max(f64::MIN_POSITIVE).log10()
        } else {
            v
        }
    }
}

impl Ranged for YAxis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, v: &f64, limit: (i32, i32)) -> i32 {
        let (a, b) = (self.scale(self.lo), self.scale(self.hi));
        if a == b {
            return (limit.0 + limit.1) / 2;
        }
        let t = (self.scale(*v) - a) / (b - a);
        limit.0 + (t * (limit.1 - limit.0) as f64).round() as i32
    }

    fn key_points<H: KeyPointHint>(&self, hint: H) -> Vec<f64> {
        let linear = || RangedCoordf64::from(self.lo..self.hi).key_points(hint.max_num_points());
        if !self.log {
            return linear();
        }
        let max = hint.max_num_points().max(2);
        let (first, last) = (
            self.lo.log10().floor() as i32,
            self.hi.log10().ceil() as i32,
        );
        let in_range = |v: &f64| *v >= self.lo * (1.0 - 1e-9) && *v <= self.hi * (1.0 + 1e-9);
        for mantissas in [
            &[1.0, 2.0, 3.0, 5.0][..],
            &[1.0, 2.0, 5.0],
            &[1.0, 3.0],
            &[1.0],
        ] {
            let ticks: Vec<f64> = (first..=last)
                .flat_map(|e| mantissas.iter().map(move |m| m * 10f64.powi(e)))
                .filter(in_range)
                .collect();
            if ticks.len() >= 3 && ticks.len() <= max {
                return ticks;
            }
            if ticks.len() > max && mantissas.len() == 1 {
                let step = ticks.len().div_ceil(max);
                return ticks.into_iter().step_by(step).collect();
            }
        }
        // Less than a decade with too few round values: evenly spaced ones.
        linear()
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.lo..self.hi
    }
}

/// A compact label for a positive number: 3 significant digits between 0.01 and 1000,
/// scientific notation outside.
fn number(v: f64) -> String {
    if (0.01..1000.0).contains(&v) {
        let digits = (2 - v.log10().floor() as i32).max(0) as usize;
        let s = format!("{v:.digits$}");
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        }
    } else {
        format!("{v:.0e}")
    }
}

/// Where the legend covers the fewest points of the drawn lines: one of eight places along
/// the edges, each taken as a box of about a third of the width and `rows` legend rows high.
fn emptiest_corner(
    lines: &[(&Series, Vec<(f64, f64)>)],
    (x0, x1): (f64, f64),
    (y0, y1): (f64, f64),
) -> SeriesLabelPosition {
    use SeriesLabelPosition as P;
    let rows = lines.iter().filter(|(s, _)| !s.name.is_empty()).count();
    let h = (0.06 * rows as f64 + 0.06).min(0.5);
    let (left, centre, right) = ((0.0, 0.34), (0.33, 0.67), (0.66, 1.0));
    let (top, middle, bottom) = ((1.0 - h, 1.0), (0.5 - h / 2.0, 0.5 + h / 2.0), (0.0, h));
    // In order of preference on ties.
    let places = [
        (P::UpperRight, right, top),
        (P::LowerRight, right, bottom),
        (P::UpperLeft, left, top),
        (P::LowerLeft, left, bottom),
        (P::MiddleRight, right, middle),
        (P::MiddleLeft, left, middle),
        (P::UpperMiddle, centre, top),
        (P::LowerMiddle, centre, bottom),
    ];
    // Points along the drawn segments, not only the data points.
    let points: Vec<(f64, f64)> = lines
        .iter()
        .flat_map(|(_, pts)| {
            pts.windows(2)
                .flat_map(|w| {
                    (0..20).map(move |k| {
                        let t = k as f64 / 20.0;
                        (
                            w[0].0 + t * (w[1].0 - w[0].0),
                            w[0].1 + t * (w[1].1 - w[0].1),
                        )
                    })
                })
                .chain(pts.last().copied())
        })
        .map(|(x, y)| ((x - x0) / (x1 - x0), (y - y0) / (y1 - y0)))
        .collect();
    let inside = |(a, b): (f64, f64), v: f64| v >= a - 0.03 && v <= b + 0.03;
    places
        .into_iter()
        .min_by_key(|&(_, xs, ys)| {
            points
                .iter()
                .filter(|&&(fx, fy)| inside(xs, fx) && inside(ys, fy))
                .count()
        })
        .map_or(P::UpperRight, |p| p.0)
}

/// A blue–white–red colour for `v` in [−1, 1] (clamped): negative blue, positive red.
pub fn diverging(v: f64) -> RGBColor {
    let v = v.clamp(-1.0, 1.0);
    let mix = |a: f64, b: f64, t: f64| (a + (b - a) * t).round() as u8;
    let (end, t) = if v < 0.0 {
        ((33.0, 102.0, 172.0), -v)
    } else {
        ((178.0, 24.0, 43.0), v)
    };
    RGBColor(
        mix(247.0, end.0, t),
        mix(247.0, end.1, t),
        mix(247.0, end.2, t),
    )
}

/// Draws images (each `shape.0 × shape.1`, row-major) as a grid of `cols` tiles with a
/// caption each, into the PNG `path`. Each image is scaled by its own largest |value| and
/// drawn blue (negative) – white – red (positive).
pub fn image_grid(
    path: &Path,
    title: &str,
    images: &[(String, Vec<f32>)],
    shape: (usize, usize),
    cols: usize,
) -> DemoResult<()> {
    let cols = cols.clamp(1, images.len().max(1));
    let rows = images.len().div_ceil(cols).max(1);
    let cell = (150u32 / shape.1.max(1) as u32).max(2);
    let (tile_w, tile_h) = (cell * shape.1 as u32, cell * shape.0 as u32);
    let (pad, caption, header) = (10u32, 22u32, 40u32);
    let width = cols as u32 * (tile_w + pad) + pad;
    let height = header + rows as u32 * (tile_h + caption + pad) + pad;
    let root = BitMapBackend::new(path, (width, height)).into_drawing_area();
    root.fill(&WHITE)?;
    root.draw(&Text::new(
        title.to_string(),
        (pad as i32, 10),
        (FONT, 20).into_font().style(FontStyle::Bold),
    ))?;
    for (k, (name, img)) in images.iter().enumerate() {
        let (r, c) = ((k / cols) as u32, (k % cols) as u32);
        let x0 = (pad + c * (tile_w + pad)) as i32;
        let y0 = (header + r * (tile_h + caption + pad)) as i32;
        root.draw(&Text::new(name.clone(), (x0, y0), (FONT, 15)))?;
        let y0 = y0 + caption as i32;
        let scale = img
            .iter()
            .fold(0.0f32, |m, v| m.max(v.abs()))
            .max(f32::MIN_POSITIVE);
        for (i, &v) in img.iter().enumerate() {
            let (py, px) = ((i / shape.1) as i32, (i % shape.1) as i32);
            let (x, y) = (x0 + px * cell as i32, y0 + py * cell as i32);
            root.draw(&Rectangle::new(
                [(x, y), (x + cell as i32, y + cell as i32)],
                diverging((v / scale) as f64).filled(),
            ))?;
        }
        root.draw(&Rectangle::new(
            [(x0, y0), (x0 + tile_w as i32, y0 + tile_h as i32)],
            RGBColor(160, 160, 160),
        ))?;
    }
    root.present()?;
    drop(root);
    recompress(path)
}
