//! The charts of `loadgen report`, written as SVG by hand (a plotting crate would weigh more
//! than the two panels need): throughput per run as bars above p50/p95/p99 latency per run
//! as lines, on one run axis, the oldest run on the left.

use std::fmt::Write as _;

/// How a run's bar is drawn: the run reported on, an earlier run it compares with, or one
/// of another size or machine (shown for the history, not to be compared).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BarStyle {
    Current,
    Comparable,
    Other,
}

/// One run on the chart.
#[derive(Debug, Clone)]
pub struct Point {
    /// First line under the run: when (`12-01 22:07`).
    pub label: String,
    /// Second line: the commit.
    pub sub: String,
    pub throughput: f64,
    /// p50, p95, p99 in milliseconds.
    pub latency: [f64; 3],
    pub style: BarStyle,
}

pub struct Chart<'a> {
    pub title: &'a str,
    /// The line under the title (the size of the runs compared).
    pub subtitle: &'a str,
    /// What the darkest bar is (`this run`, or `newest run` when the reported run has none).
    pub current_label: &'a str,
    /// Unit of the bars (`tokens/s`).
    pub throughput_unit: &'a str,
    /// What the latency is of (`one token request`).
    pub latency_of: &'a str,
    pub points: &'a [Point],
    /// A line of small print under the run axis.
    pub footnote: Option<&'a str>,
}

const WIDTH: f64 = 780.0;
const HEIGHT: f64 = 520.0;
const LEFT: f64 = 76.0;
const RIGHT: f64 = 84.0;
const BARS_TOP: f64 = 108.0;
const LINES_TOP: f64 = 312.0;
const PANEL_HEIGHT: f64 = 150.0;
const TEXT: &str = "#222222";
const GRID: &str = "#e4e4e4";
const PERCENTILES: [(&str, &str); 3] = [("p50", "#2a7fd4"), ("p95", "#e69500"), ("p99", "#c62828")];

impl BarStyle {
    fn fill(self) -> &'static str {
        match self {
            BarStyle::Current => "#3b6e8f",
            BarStyle::Comparable => "#9cc3dc",
            BarStyle::Other => "#e6e6e6",
        }
    }
}

/// The whole SVG document.
pub fn svg(chart: &Chart) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="DejaVu Sans, Arial, sans-serif" font-size="12" fill="{TEXT}">"##
    );
    s.push('\n');
    let _ = writeln!(
        s,
        r##"<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>"##
    );
    let _ = writeln!(
        s,
        r##"<text x="{LEFT}" y="26" font-size="17" font-weight="bold">{}</text>"##,
        escape(chart.title)
    );
    let _ = writeln!(
        s,
        r##"<text x="{LEFT}" y="46" fill="#555555">{}</text>"##,
        escape(chart.subtitle)
    );
    legend(&mut s, chart);
    let n = chart.points.len().max(1) as f64;
    let plot_width = WIDTH - LEFT - RIGHT;
    let slot = plot_width / n;
    let x_of = |i: usize| LEFT + slot * (i as f64 + 0.5);

    // Throughput bars.
    let _ = writeln!(
        s,
        r##"<text x="{LEFT}" y="{}" font-weight="bold">Throughput ({})</text>"##,
        BARS_TOP - 12.0,
        escape(chart.throughput_unit)
    );
    let top = chart
        .points
        .iter()
        .map(|p| p.throughput)
        .fold(0.0, f64::max);
    let ticks = Ticks::new(top);
    axis(&mut s, BARS_TOP, &ticks, chart.throughput_unit);
    let bar_width = (slot * 0.6).min(56.0);
    for (i, p) in chart.points.iter().enumerate() {
        let h = ticks.scale(p.throughput) * PANEL_HEIGHT;
        let y = BARS_TOP + PANEL_HEIGHT - h;
        let x = x_of(i) - bar_width / 2.0;
        let dash = if p.style == BarStyle::Other {
            r##" stroke="#8a8a8a" stroke-dasharray="3 2""##
        } else {
            ""
        };
        let _ = writeln!(
            s,
            r##"<rect x="{x:.1}" y="{y:.1}" width="{bar_width:.1}" height="{h:.1}" fill="{}"{dash}><title>{} {}: {} {}</title></rect>"##,
            p.style.fill(),
            escape(&p.label),
            escape(&p.sub),
            number(p.throughput),
            escape(chart.throughput_unit)
        );
        let weight = if p.style == BarStyle::Current {
            r##" font-weight="bold""##
        } else {
            ""
        };
        let _ = writeln!(
            s,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="11"{weight}>{}</text>"##,
            x_of(i),
            y - 4.0,
            number(p.throughput)
        );
    }

    // Latency lines.
    let _ = writeln!(
        s,
        r##"<text x="{LEFT}" y="{}" font-weight="bold">Latency (ms) of {}</text>"##,
        LINES_TOP - 12.0,
        escape(chart.latency_of)
    );
    let top = chart
        .points
        .iter()
        .flat_map(|p| p.latency)
        .fold(0.0, f64::max);
    let ticks = Ticks::new(top);
    axis(&mut s, LINES_TOP, &ticks, "ms");
    let y_of = |v: f64| LINES_TOP + PANEL_HEIGHT - ticks.scale(v) * PANEL_HEIGHT;
    for (k, (name, colour)) in PERCENTILES.iter().enumerate() {
        let points: Vec<String> = chart
            .points
            .iter()
            .enumerate()
            .map(|(i, p)| format!("{:.1},{:.1}", x_of(i), y_of(p.latency[k])))
            .collect();
        if points.len() > 1 {
            let _ = writeln!(
                s,
                r##"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="2"/>"##,
                points.join(" ")
            );
        }
        for (i, p) in chart.points.iter().enumerate() {
            // Hollow for a run of another size or machine, like its pale bar.
            let fill = if p.style == BarStyle::Other {
                "white"
            } else {
                colour
            };
            let _ = writeln!(
                s,
                r##"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="{fill}" stroke="{colour}" stroke-width="1.5"><title>{} {}: {name} {} ms</title></circle>"##,
                x_of(i),
                y_of(p.latency[k]),
                escape(&p.label),
                escape(&p.sub),
                number(p.latency[k])
            );
        }
    }
    // The newest run's values beside its markers, pushed apart when they would overlap.
    if let Some(last) = chart.points.last() {
        let x = x_of(chart.points.len() - 1) + 9.0;
        let mut labels: Vec<(f64, usize)> = (0..3).map(|k| (y_of(last.latency[k]), k)).collect();
        labels.sort_by(|a, b| b.0.total_cmp(&a.0));
        for j in 1..labels.len() {
            labels[j].0 = labels[j].0.min(labels[j - 1].0 - 13.0);
        }
        for (y, k) in labels {
            let (name, colour) = PERCENTILES[k];
            let _ = writeln!(
                s,
                r##"<text x="{x:.1}" y="{:.1}" font-size="11" fill="{colour}">{name} {}</text>"##,
                y + 4.0,
                number(last.latency[k])
            );
        }
    }

    // The run axis, under the latency panel.
    let base = LINES_TOP + PANEL_HEIGHT;
    for (i, p) in chart.points.iter().enumerate() {
        let weight = if p.style == BarStyle::Current {
            r##" font-weight="bold""##
        } else {
            ""
        };
        let _ = writeln!(
            s,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="11"{weight}>{}</text>"##,
            x_of(i),
            base + 17.0,
            escape(&p.label)
        );
        let _ = writeln!(
            s,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="10" fill="#666666">{}</text>"##,
            x_of(i),
            base + 31.0,
            escape(&p.sub)
        );
    }
    let _ = writeln!(
        s,
        r##"<text x="{LEFT}" y="{:.1}" font-size="10" fill="#666666">run (UTC, oldest left) and commit{}</text>"##,
        base + 50.0,
        chart
            .footnote
            .map(|f| format!("; {}", escape(f)))
            .unwrap_or_default()
    );
    s.push_str("</svg>\n");
    s
}

/// The bar styles on this chart, then the three lines.
fn legend(s: &mut String, chart: &Chart) {
    let mut x = LEFT;
    let y = 72.0;
    for (style, label) in [
        (BarStyle::Current, chart.current_label),
        (BarStyle::Comparable, "earlier run, same size"),
        (BarStyle::Other, "other size or machine"),
    ] {
        if !chart.points.iter().any(|p| p.style == style) {
            continue;
        }
        let dash = if style == BarStyle::Other {
            r##" stroke="#8a8a8a" stroke-dasharray="3 2""##
        } else {
            ""
        };
        let _ = writeln!(
            s,
            r##"<rect x="{x:.1}" y="{:.1}" width="12" height="12" fill="{}"{dash}/><text x="{:.1}" y="{y:.1}" font-size="11">{}</text>"##,
            y - 10.0,
            style.fill(),
            x + 16.0,
            escape(label)
        );
        x += 24.0 + 6.3 * label.chars().count() as f64;
    }
    x += 10.0;
    for (name, colour) in PERCENTILES {
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{colour}" stroke-width="2"/><circle cx="{:.1}" cy="{:.1}" r="3.5" fill="{colour}"/><text x="{:.1}" y="{y:.1}" font-size="11">{name}</text>"##,
            y - 4.0,
            x + 18.0,
            y - 4.0,
            x + 9.0,
            y - 4.0,
            x + 22.0
        );
        x += 54.0;
    }
}

/// The y axis of one panel: grid lines, tick values, unit.
fn axis(s: &mut String, top: f64, ticks: &Ticks, unit: &str) {
    let bottom = top + PANEL_HEIGHT;
    let right = WIDTH - RIGHT;
    for v in ticks.values() {
        let y = bottom - ticks.scale(v) * PANEL_HEIGHT;
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{right}" y2="{y:.1}" stroke="{GRID}"/><text x="{:.1}" y="{:.1}" text-anchor="end" font-size="11">{}</text>"##,
            LEFT - 6.0,
            y + 4.0,
            ticks.format(v)
        );
    }
    let _ = writeln!(
        s,
        r##"<line x1="{LEFT}" y1="{top}" x2="{LEFT}" y2="{bottom}" stroke="{TEXT}"/><line x1="{LEFT}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="{TEXT}"/>"##
    );
    let mid = top + PANEL_HEIGHT / 2.0;
    let _ = writeln!(
        s,
        r##"<text x="16" y="{mid:.1}" text-anchor="middle" font-size="11" transform="rotate(-90 16 {mid:.1})">{}</text>"##,
        escape(unit)
    );
}

/// Round tick values from zero to a little above the largest value: a step of 1, 2 or 5
/// times a power of ten, about five of them.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Ticks {
    step: f64,
    top: f64,
}

impl Ticks {
    fn new(max: f64) -> Self {
        let max = if max.is_finite() && max > 0.0 {
            max
        } else {
            1.0
        };
        let raw = max / 5.0;
        let magnitude = 10f64.powf(raw.log10().floor());
        let step = [1.0, 2.0, 5.0, 10.0]
            .into_iter()
            .map(|m| m * magnitude)
            .find(|s| *s >= raw)
            .unwrap_or(10.0 * magnitude);
        Ticks {
            step,
            top: (max / step).ceil() * step,
        }
    }

    fn values(&self) -> impl Iterator<Item = f64> + '_ {
        let n = (self.top / self.step).round() as usize;
        (0..=n).map(|i| i as f64 * self.step)
    }

    /// A value as a share of the axis height.
    fn scale(&self, v: f64) -> f64 {
        (v / self.top).clamp(0.0, 1.0)
    }

    fn format(&self, v: f64) -> String {
        if self.top >= 10_000.0 && self.step % 1000.0 == 0.0 && v != 0.0 {
            return format!("{}k", v / 1000.0);
        }
        let decimals = if self.step >= 1.0 {
            0
        } else {
            (-self.step.log10()).ceil() as usize
        };
        format!("{v:.decimals$}")
    }
}

/// A figure with as many decimals as it is worth: `7499`, `48.3`, `9.22`, `0.044`.
pub fn number(v: f64) -> String {
    if v.abs() >= 100.0 || (v.fract() == 0.0 && v.abs() < 1e15) {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        let s = format!("{v:.3}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        if s.is_empty() || s == "-" {
            "0".to_owned()
        } else {
            s.to_owned()
        }
    }
}

/// Text and attribute values escaped for XML.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_maximum() {
        assert_eq!(
            Ticks::new(7499.0),
            Ticks {
                step: 2000.0,
                top: 8000.0
            }
        );
        assert_eq!(
            Ticks::new(59.263),
            Ticks {
                step: 20.0,
                top: 60.0
            }
        );
        assert_eq!(Ticks::new(100_492.0).format(50_000.0), "50k");
        assert_eq!(Ticks::new(100_492.0).format(0.0), "0");
        assert_eq!(Ticks::new(7499.0).format(6000.0), "6000");
        let t = Ticks::new(0.8);
        assert_eq!(t.format(0.2), "0.2");
        assert_eq!(t.values().count(), 5);
        // No runs with a value: one unit of axis, not a division by zero.
        assert_eq!(Ticks::new(0.0).top, 1.0);
        assert_eq!(Ticks::new(f64::NAN).top, 1.0);
    }

    #[test]
    fn figures_and_text() {
        assert_eq!(number(7499.4), "7499");
        assert_eq!(number(48.26), "48.3");
        assert_eq!(number(98.0), "98");
        assert_eq!(number(9.223), "9.22");
        assert_eq!(number(0.25), "0.25");
        assert_eq!(number(0.002), "0.002");
        assert_eq!(number(0.0), "0");
        assert_eq!(escape(r##"a<b & "c""##), "a&lt;b &amp; &quot;c&quot;");
    }
}
