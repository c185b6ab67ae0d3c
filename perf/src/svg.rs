//! Latency percentile plot (the HdrHistogram style: x = percentile on a log "nines" scale, y = latency
//! on a log scale), one curve per phase, as a standalone SVG.

use std::fmt::Write;

use hdrhistogram::Histogram;

const COLORS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

pub fn percentile_plot(title: &str, series: &[(String, Histogram<u64>)]) -> String {
    let (w, h) = (980.0, 560.0);
    let (ml, mr, mt, mb) = (80.0, 250.0, 50.0, 60.0);
    let pw = w - ml - mr;
    let ph = h - mt - mb;
    // x: nines, 0 (p0) .. max_nines
    let max_count = series
        .iter()
        .map(|(_, h)| h.len())
        .max()
        .unwrap_or(1)
        .max(10);
    let max_nines = ((max_count as f64).log10().floor()).clamp(2.0, 6.0);
    // y: log10 µs
    let lo = series
        .iter()
        .filter(|(_, h)| !h.is_empty())
        .map(|(_, h)| h.min().max(1))
        .min()
        .unwrap_or(1);
    let hi = series
        .iter()
        .map(|(_, h)| h.max())
        .max()
        .unwrap_or(1000)
        .max(lo * 10);
    let y0 = (lo as f64).log10().floor();
    let y1 = (hi as f64).log10().ceil().max(y0 + 1.0);
    let xp = |nines: f64| ml + nines / max_nines * pw;
    let yp = |us: f64| mt + ph - ((us.max(1.0)).log10() - y0) / (y1 - y0) * ph;

    let mut s = String::new();
    let _ = write!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{}" y="24" text-anchor="middle" font-size="15">{}</text>
"##,
        ml + pw / 2.0,
        esc(title)
    );
    // grid: x
    for i in 0..=(max_nines as i32) {
        let x = xp(i as f64);
        let label = match i {
            0 => "0%".to_string(),
            1 => "90%".to_string(),
            n => format!("99.{}%", "9".repeat((n - 2) as usize)).replace("99.%", "99%"),
        };
        let _ = writeln!(
            s,
            r##"<line x1="{x}" y1="{mt}" x2="{x}" y2="{}" stroke="#ddd"/><text x="{x}" y="{}" text-anchor="middle">{label}</text>"##,
            mt + ph,
            mt + ph + 18.0
        );
    }
    // grid: y (decades and 2, 5)
    let mut d = y0 as i32;
    while d as f64 <= y1 {
        for m in [1.0, 2.0, 5.0] {
            let v = m * 10f64.powi(d);
            if v.log10() > y1 + 1e-9 || v.log10() < y0 - 1e-9 {
                continue;
            }
            let y = yp(v);
            let stroke = if m == 1.0 { "#ccc" } else { "#eee" };
            let _ = writeln!(
                s,
                r##"<line x1="{ml}" y1="{y}" x2="{}" y2="{y}" stroke="{stroke}"/><text x="{}" y="{}" text-anchor="end">{}</text>"##,
                ml + pw,
                ml - 6.0,
                y + 4.0,
                fmt_axis(v)
            );
        }
        d += 1;
    }
    let _ = writeln!(
        s,
        r##"<rect x="{ml}" y="{mt}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>
<text x="{}" y="{}" text-anchor="middle">percentile</text>
<text x="18" y="{}" text-anchor="middle" transform="rotate(-90 18 {})">publish → receive latency</text>"##,
        ml + pw / 2.0,
        h - 14.0,
        mt + ph / 2.0,
        mt + ph / 2.0
    );
    for (i, (name, hist)) in series.iter().enumerate() {
        if hist.is_empty() {
            continue;
        }
        let color = COLORS[i % COLORS.len()];
        let top = ((hist.len() as f64).log10()).min(max_nines);
        let mut pts = String::new();
        let steps = 400;
        for k in 0..=steps {
            let nines = top * k as f64 / steps as f64;
            let q = 1.0 - 10f64.powf(-nines);
            let v = hist.value_at_quantile(q.min(1.0)) as f64;
            let _ = write!(pts, "{:.1},{:.1} ", xp(nines), yp(v));
        }
        // the max at the right end of the curve
        let _ = write!(pts, "{:.1},{:.1}", xp(top), yp(hist.max() as f64));
        let _ = writeln!(
            s,
            r##"<polyline fill="none" stroke="{color}" stroke-width="2" points="{pts}"/>"##
        );
        let ly = mt + 10.0 + i as f64 * 36.0;
        let lx = ml + pw + 14.0;
        let _ = writeln!(
            s,
            r##"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{color}" stroke-width="3"/><text x="{}" y="{}">{}</text><text x="{}" y="{}" font-size="10" fill="#555">p50 {} p99 {} max {}</text>"##,
            lx + 18.0,
            lx + 24.0,
            ly + 4.0,
            esc(name),
            lx + 24.0,
            ly + 18.0,
            fmt_axis(hist.value_at_quantile(0.5) as f64),
            fmt_axis(hist.value_at_quantile(0.99) as f64),
            fmt_axis(hist.max() as f64)
        );
    }
    if series.iter().all(|(_, h)| h.is_empty()) {
        let _ = writeln!(
            s,
            r##"<text x="{}" y="{}" text-anchor="middle" fill="#a00">no latency samples</text>"##,
            ml + pw / 2.0,
            mt + ph / 2.0
        );
    }
    s.push_str("</svg>\n");
    s
}

fn fmt_axis(us: f64) -> String {
    if us >= 1e6 {
        format!("{}s", trim(us / 1e6))
    } else if us >= 1e3 {
        format!("{}ms", trim(us / 1e3))
    } else {
        format!("{}µs", trim(us))
    }
}

fn trim(v: f64) -> String {
    let s = format!("{v:.1}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
