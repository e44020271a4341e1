//! Choosing a trigger's cut from scored frames: the accept rate every cut gives (and, against a
//! simulator's truth, the efficiency and purity), the cut that holds a target rate, and the curve as
//! an SVG picture. Sans-IO: scores in, numbers and text out.

use std::collections::HashMap;
use std::fmt::Write;

/// One candidate cut: frames with a score at or above it are accepted.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CutPoint {
    pub threshold: f32,
    pub accept_rate: f64,
    /// Fraction of true hits accepted (with truth).
    pub efficiency: Option<f64>,
    /// Fraction of accepted frames that are true hits (with truth).
    pub purity: Option<f64>,
}

/// The accept-rate curve of a run.
#[derive(Clone, Debug, PartialEq)]
pub struct TuneCurve {
    /// Every distinct score as a cut, from the lowest (accepts everything) up.
    pub points: Vec<CutPoint>,
    pub frames: usize,
    pub hits: Option<usize>,
}

impl TuneCurve {
    /// The curve of `scores` (frame number → score); `truth` (frame number → hit) adds efficiency and
    /// purity, counted over the frames that have both.
    pub fn new(scores: &HashMap<u64, f32>, truth: Option<&HashMap<u64, bool>>) -> TuneCurve {
        let mut frames: Vec<(f32, Option<bool>)> = scores
            .iter()
            .filter(|(_, s)| s.is_finite())
            .filter_map(|(n, &s)| match truth {
                Some(t) => t.get(n).map(|&hit| (s, Some(hit))),
                None => Some((s, None)),
            })
            .collect();
        // Highest score first: walking down, each new score admits the frames at it.
        frames.sort_by(|a, b| b.0.total_cmp(&a.0));
        let n = frames.len();
        let hits = truth.map(|_| frames.iter().filter(|f| f.1 == Some(true)).count());
        let mut points = Vec::new();
        let (mut accepted, mut hits_accepted) = (0usize, 0usize);
        let mut i = 0;
        while i < n {
            let threshold = frames[i].0;
            while i < n && frames[i].0 == threshold {
                accepted += 1;
                hits_accepted += usize::from(frames[i].1 == Some(true));
                i += 1;
            }
            points.push(CutPoint {
                threshold,
                accept_rate: accepted as f64 / n as f64,
                efficiency: hits.map(|h| if h == 0 { 1.0 } else { hits_accepted as f64 / h as f64 }),
                purity: hits.map(|_| hits_accepted as f64 / accepted as f64),
            });
        }
        points.reverse();
        TuneCurve { points, frames: n, hits }
    }

    /// The lowest cut whose accept rate does not exceed `target_rate` (keeping as much as the rate
    /// allows); `None` when even the highest score's frames are more than the target.
    pub fn cut_for_rate(&self, target_rate: f64) -> Option<CutPoint> {
        self.points.iter().copied().find(|p| p.accept_rate <= target_rate + 1e-12)
    }

    /// Why no cut gives `target_rate`, or only one far below it, said plainly (scores that tie, a
    /// target beyond the end of the scores' range); `None` when a cut gives it within half.
    pub fn rate_problem(&self, target_rate: f64) -> Option<String> {
        let pct = |r: f64| format!("{:.1}%", 100.0 * r);
        if let [only] = self.points[..] {
            return Some(format!(
                "every frame scores {}: no cut can hold {} (the scores cannot tell frames apart; inputs unlike \
                 those the model was trained on?)",
                only.threshold,
                pct(target_rate)
            ));
        }
        let top = *self.points.last()?;
        match self.cut_for_rate(target_rate) {
            None => Some(format!(
                "{} of the frames score the highest, {}: no cut holds {} (the target lies beyond the end of the \
                 scores' range)",
                pct(top.accept_rate),
                top.threshold,
                pct(target_rate)
            )),
            Some(cut) if cut.accept_rate < 0.5 * target_rate => {
                let below = self.points.iter().rev().find(|p| p.threshold < cut.threshold);
                Some(format!(
                    "the nearest cut to {} keeps {}: the next one down, {}, keeps {} (frames tie at scores)",
                    pct(target_rate),
                    pct(cut.accept_rate),
                    below.map_or("none".to_string(), |b| b.threshold.to_string()),
                    below.map_or("—".to_string(), |b| pct(b.accept_rate))
                ))
            }
            Some(_) => None,
        }
    }

    /// At most `rows` cuts spread over the curve, always with the chosen one.
    pub fn table(&self, rows: usize, chosen: Option<CutPoint>) -> String {
        let mut picked: Vec<CutPoint> = if self.points.len() <= rows {
            self.points.clone()
        } else {
            (0..rows).map(|k| self.points[k * (self.points.len() - 1) / (rows - 1).max(1)]).collect()
        };
        if let Some(c) = chosen
            && !picked.contains(&c)
        {
            picked.push(c);
            picked.sort_by(|a, b| a.threshold.total_cmp(&b.threshold));
        }
        let mut out = String::new();
        let truth = self.hits.is_some();
        let _ = writeln!(
            out,
            "{:>12}  {:>11}{}",
            "threshold",
            "accept rate",
            if truth { "   efficiency       purity" } else { "" }
        );
        for p in picked {
            let mark = if Some(p) == chosen { "  ← target" } else { "" };
            let _ = write!(out, "{:>12}  {:>10.2}%", format_cut(p.threshold), 100.0 * p.accept_rate);
            if let (Some(e), Some(pu)) = (p.efficiency, p.purity) {
                let _ = write!(out, "  {:>10.2}%  {:>10.2}%", 100.0 * e, 100.0 * pu);
            }
            let _ = writeln!(out, "{mark}");
        }
        out
    }

    /// The curve as an SVG picture: accept rate (and efficiency, purity) against the cut, with the
    /// chosen cut marked.
    pub fn svg(&self, title: &str, chosen: Option<CutPoint>) -> String {
        let (w, h, left, right, top, bottom) = (720.0, 440.0, 70.0, 20.0, 40.0, 60.0);
        let (pw, ph) = (w - left - right, h - top - bottom);
        let (lo, hi) = match (self.points.first(), self.points.last()) {
            (Some(a), Some(b)) if b.threshold > a.threshold => (a.threshold, b.threshold),
            (Some(a), _) => (a.threshold - 1.0, a.threshold + 1.0),
            _ => (0.0, 1.0),
        };
        // Cuts spread over orders of magnitude (spot counts): the axis is ln(1 + cut − lowest).
        let span = f64::from(hi - lo).ln_1p();
        let x = |t: f32| left + pw * f64::from(t - lo).max(0.0).ln_1p() / span;
        let y = |v: f64| top + ph * (1.0 - v.clamp(0.0, 1.0));
        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="13">"#
        );
        let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
        let _ = writeln!(s, r#"<text x="{left}" y="24" font-size="15">{}</text>"#, escape(title));
        for k in 0..=5 {
            let v = f64::from(k) / 5.0;
            let _ = writeln!(
                s,
                r##"<line x1="{left}" x2="{}" y1="{yy:.1}" y2="{yy:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{:.0}%</text>"##,
                left + pw,
                left - 6.0,
                y(v) + 4.0,
                100.0 * v,
                yy = y(v)
            );
        }
        for k in 0..=5 {
            let t = lo + ((span * f64::from(k) / 5.0).exp_m1()) as f32;
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                x(t),
                top + ph + 18.0,
                significant(t)
            );
        }
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">threshold (score a frame needs; scale ln(1 + cut))</text>"#,
            left + pw / 2.0,
            h - 14.0
        );
        let _ = writeln!(s, r#"<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="black"/>"#);
        let mut series: Vec<Series<'_>> =
            vec![("accept rate", "#1f77b4", self.points.iter().map(|p| (p.threshold, p.accept_rate)).collect())];
        if self.hits.is_some() {
            series.push((
                "efficiency",
                "#2ca02c",
                self.points.iter().map(|p| (p.threshold, p.efficiency.unwrap_or(0.0))).collect(),
            ));
            series.push((
                "purity",
                "#d62728",
                self.points.iter().map(|p| (p.threshold, p.purity.unwrap_or(0.0))).collect(),
            ));
        }
        for (k, (name, colour, pts)) in series.iter().enumerate() {
            let path: Vec<String> = pts.iter().map(|&(t, v)| format!("{:.1},{:.1}", x(t), y(v))).collect();
            let _ = writeln!(
                s,
                r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#,
                path.join(" ")
            );
            let ly = top + 16.0 + 18.0 * k as f64;
            let _ = writeln!(
                s,
                r#"<line x1="{:.1}" x2="{:.1}" y1="{ly:.1}" y2="{ly:.1}" stroke="{colour}" stroke-width="3"/><text x="{:.1}" y="{:.1}">{name}</text>"#,
                left + pw - 150.0,
                left + pw - 125.0,
                left + pw - 118.0,
                ly + 4.0
            );
        }
        if let Some(c) = chosen {
            let cx = x(c.threshold);
            let _ = writeln!(
                s,
                r##"<line x1="{cx:.1}" x2="{cx:.1}" y1="{top}" y2="{:.1}" stroke="#555" stroke-dasharray="5,4"/><text x="{:.1}" y="{:.1}">cut {} → {:.1}% accepted</text>"##,
                top + ph,
                cx + 5.0,
                top + ph - 8.0,
                trim(c.threshold),
                100.0 * c.accept_rate
            );
        }
        s.push_str("</svg>\n");
        s
    }
}

fn trim(v: f32) -> String {
    let t = format!("{v:.3}");
    t.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// A cut as a table shows it: whole numbers plain, small probabilities in scientific notation.
pub fn format_cut(t: f32) -> String {
    if t.fract() == 0.0 {
        format!("{t:.0}")
    } else if t.abs() < 0.01 {
        format!("{t:.2e}")
    } else {
        format!("{t:.4}")
    }
}

/// A curve to draw: its name, colour and (cut, value) points.
type Series<'a> = (&'a str, &'a str, Vec<(f32, f64)>);

/// A tick label: three significant digits.
fn significant(v: f32) -> String {
    if v == 0.0 || !v.is_finite() {
        return trim(v);
    }
    let digits = (2 - v.abs().log10().floor() as i32).max(0) as usize;
    let t = format!("{v:.digits$}");
    if t.contains('.') { t.trim_end_matches('0').trim_end_matches('.').to_string() } else { t }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run() -> (HashMap<u64, f32>, HashMap<u64, bool>) {
        // 90 misses scoring 0..=2, 10 hits scoring 5..=14.
        let mut scores = HashMap::new();
        let mut truth = HashMap::new();
        for n in 0..90u64 {
            scores.insert(n, (n % 3) as f32);
            truth.insert(n, false);
        }
        for n in 90..100u64 {
            scores.insert(n, (n - 85) as f32);
            truth.insert(n, true);
        }
        (scores, truth)
    }

    #[test]
    fn the_curve_counts_what_each_cut_accepts() {
        let (scores, truth) = run();
        let curve = TuneCurve::new(&scores, Some(&truth));
        assert_eq!(curve.frames, 100);
        let first = curve.points[0];
        assert_eq!((first.threshold, first.accept_rate, first.efficiency), (0.0, 1.0, Some(1.0)));
        let at5 = curve.points.iter().find(|p| p.threshold == 5.0).unwrap();
        assert_eq!((at5.accept_rate, at5.efficiency, at5.purity), (0.10, Some(1.0), Some(1.0)));
        let at3 = curve.points.iter().find(|p| p.threshold == 2.0).unwrap();
        assert!((at3.accept_rate - 0.40).abs() < 1e-12, "{at3:?}");
        assert!(curve.points.windows(2).all(|w| w[0].accept_rate >= w[1].accept_rate));
    }

    #[test]
    fn the_cut_for_a_rate_never_exceeds_it() {
        let (scores, truth) = run();
        let curve = TuneCurve::new(&scores, Some(&truth));
        assert_eq!(curve.cut_for_rate(0.10).unwrap().threshold, 5.0);
        assert_eq!(curve.cut_for_rate(0.15).unwrap().threshold, 5.0);
        assert_eq!(curve.cut_for_rate(0.05).unwrap().threshold, 10.0);
        assert!(curve.cut_for_rate(0.001).is_none());
        let table = curve.table(6, curve.cut_for_rate(0.10));
        assert!(table.contains("← target") && table.contains("efficiency"), "{table}");
    }

    #[test]
    fn scores_that_tie_are_said_plainly() {
        let same: HashMap<u64, f32> = (0..100).map(|n| (n, 0.999_999_5)).collect();
        let curve = TuneCurve::new(&same, None);
        assert_eq!(curve.cut_for_rate(0.1), None);
        let said = curve.rate_problem(0.1).unwrap();
        assert!(said.contains("every frame scores 0.9999995"), "{said}");
        // 80 frames at the top score: a 10% target lies beyond the range.
        let top: HashMap<u64, f32> = (0..100).map(|n| (n, if n < 80 { 1.0 } else { n as f32 / 100.0 })).collect();
        let said = TuneCurve::new(&top, None).rate_problem(0.1).unwrap();
        assert!(said.contains("80.0% of the frames score the highest, 1"), "{said}");
        // Spread scores: nothing to say.
        let (scores, _) = run();
        assert_eq!(TuneCurve::new(&scores, None).rate_problem(0.1), None);
    }

    #[test]
    fn the_svg_is_a_picture_with_every_series() {
        let (scores, truth) = run();
        let curve = TuneCurve::new(&scores, Some(&truth));
        let svg = curve.svg("run <1>", curve.cut_for_rate(0.1));
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 3);
        assert!(svg.contains("run &lt;1&gt;") && svg.contains("cut 5"));
        let bare = TuneCurve::new(&scores, None).svg("x", None);
        assert_eq!(bare.matches("<polyline").count(), 1);
    }
}
