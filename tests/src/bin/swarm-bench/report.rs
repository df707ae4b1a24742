//! results.json, results.md and the SVG chart.

use crate::Record;
use std::fmt::Write as _;

pub fn write_results(out: &std::path::Path, records: &[Record], counts: &[usize]) {
    let json: Vec<_> = records
        .iter()
        .map(|r| serde_json::json!({"mode": r.mode, "services": r.services, "metric": r.metric, "value": (r.value * 100.0).round() / 100.0}))
        .collect();
    std::fs::write(
        out.join("results.json"),
        serde_json::to_string_pretty(&json).unwrap(),
    )
    .unwrap();

    let get = |mode: &str, n: usize, metric: &str| {
        let n = if mode == "direct" { counts[0] } else { n };
        records
            .iter()
            .find(|r| r.mode == mode && r.services == n && r.metric == metric)
            .map(|r| r.value)
    };
    let mut md = String::from("| metric | services | xdp | iptables | direct | xdp / iptables |\n|---|---:|---:|---:|---:|---:|\n");
    for metric in [
        "udp_pps",
        "tcp_cps",
        "rr_rps",
        "rr_p50_us",
        "rr_p99_us",
        "program_ms",
    ] {
        for &n in counts {
            let cell = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.0}"));
            let (x, i, d) = (
                get("xdp", n, metric),
                get("iptables", n, metric),
                get("direct", n, metric),
            );
            let ratio = match (x, i) {
                (Some(x), Some(i)) if i > 0.0 => format!("{:.2}×", x / i),
                _ => "–".into(),
            };
            let d = if metric == "program_ms" { None } else { d };
            let _ = writeln!(
                md,
                "| {metric} | {n} | {} | {} | {} | {ratio} |",
                cell(x),
                cell(i),
                cell(d)
            );
        }
    }
    std::fs::write(out.join("results.md"), &md).unwrap();
    std::fs::write(out.join("udp_pps.svg"), chart(records, counts)).unwrap();
    print!("{md}");
}

/// A small line chart of udp_pps against the service count (log scale).
fn chart(records: &[Record], counts: &[usize]) -> String {
    let (w, h, pad) = (640.0, 360.0, 50.0);
    let max = records
        .iter()
        .filter(|r| r.metric == "udp_pps")
        .map(|r| r.value)
        .fold(1.0, f64::max);
    let x = |i: usize| pad + (w - 2.0 * pad) * i as f64 / (counts.len() - 1).max(1) as f64;
    let y = |v: f64| h - pad - (h - 2.0 * pad) * v / max;
    let mut svg = format!("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n");
    let _ = writeln!(svg, "<text x=\"{pad}\" y=\"20\">UDP 64-byte packets/s through node A, by number of services</text>");
    let _ = writeln!(
        svg,
        "<line x1=\"{pad}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>",
        h - pad,
        w - pad,
        h - pad
    );
    for (i, n) in counts.iter().enumerate() {
        let _ = writeln!(
            svg,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{n}</text>",
            x(i),
            h - pad + 18.0
        );
    }
    for (mode, color) in [
        ("xdp", "#1f77b4"),
        ("iptables", "#d62728"),
        ("direct", "#2ca02c"),
    ] {
        let pts: Vec<String> = counts
            .iter()
            .enumerate()
            .filter_map(|(i, &n)| {
                let n = if mode == "direct" { counts[0] } else { n };
                records
                    .iter()
                    .find(|r| r.mode == mode && r.services == n && r.metric == "udp_pps")
                    .map(|r| format!("{:.1},{:.1}", x(i), y(r.value)))
            })
            .collect();
        let _ = writeln!(
            svg,
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>",
            pts.join(" ")
        );
        if let Some(last) = pts.last() {
            let (lx, ly) = last.split_once(',').unwrap();
            let _ = writeln!(
                svg,
                "<text x=\"{lx}\" y=\"{ly}\" dx=\"4\" fill=\"{color}\">{mode}</text>"
            );
        }
    }
    let _ = writeln!(svg, "<text x=\"10\" y=\"{}\">{max:.0}</text>", y(max) + 4.0);
    svg.push_str("</svg>\n");
    svg
}
