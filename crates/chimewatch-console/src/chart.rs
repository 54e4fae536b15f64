//! Charts as SVG, drawn with plotters: time series (lines or stacked areas), horizontal bars and pies. The SVG goes
//! inline into the page, so the console needs no script or asset from anywhere.

use chimewatch_model::Civil;
use plotters::prelude::*;

/// One line of a chart: its legend label and its points (period start in ms, value).
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub label: String,
    pub points: Vec<(i64, f64)>,
}

/// The color of the `i`th series, the same in the chart and its legend.
pub fn color(i: usize) -> RGBColor {
    let (r, g, b) = Palette99::COLORS[i % Palette99::COLORS.len()];
    RGBColor(r, g, b)
}

pub fn css_color(i: usize) -> String {
    let RGBColor(r, g, b) = color(i);
    format!("#{r:02x}{g:02x}{b:02x}")
}

fn failed(e: impl std::fmt::Display) -> String {
    format!("drawing the chart: {e}")
}

/// `HH:MM` (UTC) of a Unix time in ms; with the date when the range spans days.
pub fn clock(ms: i64, with_date: bool) -> String {
    let c = Civil::of(ms);
    if with_date {
        format!("{:02}-{:02} {:02}:{:02}", c.month, c.day, c.hour, c.minute)
    } else {
        format!("{:02}:{:02}", c.hour, c.minute)
    }
}

/// A short form of a value for axes and single values: 1234567 -> 1.23M.
pub fn short(v: f64) -> String {
    let a = v.abs();
    let (scaled, suffix) = match a {
        a if a >= 1e9 => (v / 1e9, "G"),
        a if a >= 1e6 => (v / 1e6, "M"),
        a if a >= 1e4 => (v / 1e3, "k"),
        _ => (v, ""),
    };
    if scaled.fract() == 0.0 || scaled.abs() >= 100.0 {
        format!("{scaled:.0}{suffix}")
    } else {
        let digits = format!("{scaled:.3}");
        format!("{}{suffix}", digits.trim_end_matches('0').trim_end_matches('.'))
    }
}

/// Each timestamp of any series with the running sum of the series up to each one: what a stacked chart draws.
fn stack(series: &[Series]) -> Vec<Vec<(i64, f64)>> {
    let mut times: Vec<i64> = series.iter().flat_map(|s| s.points.iter().map(|p| p.0)).collect();
    times.sort_unstable();
    times.dedup();
    let mut below = vec![0.0; times.len()];
    series
        .iter()
        .map(|s| {
            let at: std::collections::HashMap<i64, f64> = s.points.iter().copied().collect();
            times
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    let v = at.get(t).copied().unwrap_or(0.0);
                    below[i] += v;
                    (*t, below[i])
                })
                .collect()
        })
        .collect()
}

/// An SVG of `size` on a white ground, with what `draw` puts on it.
fn svg(
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<SVGBackend<'_>, plotters::coord::Shift>) -> Result<(), String>,
) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE).map_err(failed)?;
        draw(&root)?;
        root.present().map_err(failed)?;
    }
    Ok(svg)
}

/// A time series chart over `[start_ms, end_ms)`.
pub fn time_series(
    series: &[Series],
    start_ms: i64,
    end_ms: i64,
    stacked: bool,
    size: (u32, u32),
) -> Result<String, String> {
    let lines: Vec<Vec<(i64, f64)>> =
        if stacked { stack(series) } else { series.iter().map(|s| s.points.clone()).collect() };
    let finite = lines.iter().flatten().map(|p| p.1).filter(|v| v.is_finite());
    let (lo, hi) = finite.fold((0.0_f64, 0.0_f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let hi = if hi <= lo { lo + 1.0 } else { hi + (hi - lo) * 0.08 };
    let with_date = end_ms - start_ms > 86_400_000;
    svg(size, |root| {
        let mut chart = ChartBuilder::on(root)
            .margin(6)
            .x_label_area_size(22)
            .y_label_area_size(48)
            .build_cartesian_2d(start_ms..end_ms.max(start_ms + 1), lo..hi)
            .map_err(failed)?;
        chart
            .configure_mesh()
            .x_labels(6)
            .y_labels(5)
            .x_label_formatter(&|t| clock(*t, with_date))
            .y_label_formatter(&|v| short(*v))
            .light_line_style(RGBColor(240, 240, 240))
            .bold_line_style(RGBColor(225, 225, 225))
            .label_style(("sans-serif", 11))
            .draw()
            .map_err(failed)?;
        // Stacked areas are drawn top down, so each lower band paints over the one above it.
        for (i, points) in lines.iter().enumerate().rev() {
            let c = color(i);
            let points: Vec<(i64, f64)> = points.iter().copied().filter(|p| p.1.is_finite()).collect();
            if points.len() == 1 {
                // One period has no line or area to draw: show it as a dot.
                chart.draw_series(points.iter().map(|p| Circle::new(*p, 3, c.filled()))).map_err(failed)?;
            } else if stacked {
                chart
                    .draw_series(AreaSeries::new(points, lo, c.mix(0.35)).border_style(c.stroke_width(2)))
                    .map_err(failed)?;
            } else {
                chart.draw_series(LineSeries::new(points, c.stroke_width(2))).map_err(failed)?;
            }
        }
        Ok(())
    })
}

/// Bars narrower than this make unreadable labels.
const BAR_PX: u32 = 20;

/// Horizontal bars, one per labelled value, the largest on top; as many as the height can show with their labels,
/// the rest counted in the last line.
pub fn bars(values: &[(String, f64)], size: (u32, u32)) -> Result<String, String> {
    let mut sorted: Vec<(String, f64)> = values.to_vec();
    sorted.sort_by(|a, b| b.1.total_cmp(&a.1));
    let fit = usize::try_from((size.1.saturating_sub(30) / BAR_PX).max(1)).unwrap_or(1);
    if sorted.len() > fit {
        let rest = sorted.split_off(fit.saturating_sub(1));
        let total: f64 = rest.iter().map(|v| v.1).sum();
        sorted.push((format!("{} more", rest.len()), total));
    }
    let values = &sorted;
    let max = values.iter().map(|v| v.1).filter(|v| v.is_finite()).fold(0.0_f64, f64::max);
    let max = if max <= 0.0 { 1.0 } else { max * 1.1 };
    let n = values.len().max(1) as f64;
    svg(size, |root| {
        let mut chart = ChartBuilder::on(root)
            .margin(6)
            .x_label_area_size(22)
            .build_cartesian_2d(0.0..max, 0.0..n)
            .map_err(failed)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .disable_y_axis()
            .x_labels(5)
            .x_label_formatter(&|v| short(*v))
            .light_line_style(RGBColor(240, 240, 240))
            .label_style(("sans-serif", 11))
            .draw()
            .map_err(failed)?;
        for (i, (label, v)) in values.iter().enumerate() {
            let v = if v.is_finite() { *v } else { 0.0 };
            // The first value at the top.
            let top = n - i as f64;
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(0.0, top - 0.85), (v, top - 0.15)],
                    color(i).mix(0.8).filled(),
                )))
                .map_err(failed)?;
            chart
                .draw_series(std::iter::once(Text::new(
                    format!("{label}  {}", short(v)),
                    (max * 0.01, top - 0.3),
                    ("sans-serif", 12).into_font().color(&BLACK),
                )))
                .map_err(failed)?;
        }
        Ok(())
    })
}

/// A pie of labelled values; values that are not positive are left out (they have no slice).
pub fn pie(values: &[(String, f64)], size: (u32, u32)) -> Result<String, String> {
    let kept: Vec<(usize, &(String, f64))> =
        values.iter().enumerate().filter(|(_, v)| v.1 > 0.0 && v.1.is_finite()).collect();
    let sizes: Vec<f64> = kept.iter().map(|(_, v)| v.1).collect();
    let colors: Vec<RGBColor> = kept.iter().map(|(i, _)| color(*i)).collect();
    let total: f64 = sizes.iter().sum();
    let labels: Vec<String> = kept.iter().map(|(_, v)| format!("{:.0}%", 100.0 * v.1 / total)).collect();
    svg(size, |root| {
        if !sizes.is_empty() {
            let center = (i32::try_from(size.0 / 2).unwrap_or(0), i32::try_from(size.1 / 2).unwrap_or(0));
            let radius = f64::from(size.0.min(size.1)) * 0.38;
            let mut pie = Pie::new(&center, &radius, &sizes, &colors, &labels);
            pie.start_angle(-90.0);
            pie.label_style(("sans-serif", 12).into_font().color(&BLACK));
            root.draw(&pie).map_err(failed)?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_times() {
        assert_eq!(clock(0, false), "00:00");
        assert_eq!(clock(1_764_609_300_000, true), "12-01 17:15");
    }

    #[test]
    fn short_values() {
        assert_eq!(short(0.0), "0");
        assert_eq!(short(12.5), "12.5");
        assert_eq!(short(0.3333), "0.333");
        assert_eq!(short(12_345.0), "12.345k");
        assert_eq!(short(2_500_000.0), "2.5M");
    }

    #[test]
    fn stacking_sums_the_series_below() {
        let a = Series { label: "a".into(), points: vec![(0, 1.0), (60, 2.0)] };
        let b = Series { label: "b".into(), points: vec![(60, 5.0), (120, 1.0)] };
        assert_eq!(stack(&[a, b]), vec![vec![(0, 1.0), (60, 2.0), (120, 0.0)], vec![(0, 1.0), (60, 7.0), (120, 1.0)]]);
    }

    #[test]
    fn charts_draw_their_data() {
        let s = vec![Series { label: "a".into(), points: vec![(0, 1.0), (60_000, 3.0)] }];
        let svg = time_series(&s, 0, 120_000, false, (400, 200)).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("polyline"), "{svg}");
        assert!(svg.contains("00:01"), "x axis labels are clock times");
        let svg = bars(&[("ios".into(), 2.0), ("js".into(), 4.0)], (400, 200)).unwrap();
        assert!(svg.contains("js  4") && svg.contains("ios  2"), "{svg}");
        assert!(svg.find("js  4") < svg.find("ios  2"), "the largest first: {svg}");
        // Too many for the height: the smallest are summed in one bar.
        let many: Vec<(String, f64)> = (1..=30).map(|i| (format!("s{i}"), f64::from(i))).collect();
        let svg = bars(&many, (400, 130)).unwrap();
        assert!(svg.contains("s30  30") && svg.contains("s27  27") && svg.contains("26 more  351"), "{svg}");
        let svg = pie(&[("js".into(), 3.0), ("ios".into(), 1.0), ("none".into(), 0.0)], (300, 300)).unwrap();
        assert!(svg.contains("75%") && svg.contains("25%"), "{svg}");
        // No data is an empty chart, not an error.
        assert!(time_series(&[], 0, 1, true, (100, 100)).is_ok());
        assert!(pie(&[], (100, 100)).is_ok());
    }
}
