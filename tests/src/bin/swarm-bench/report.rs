//! results.json, results.md, one SVG chart per headline metric, and the
//! forwarding core's profile.

use crate::load::Cores;
use crate::Record;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// The metrics the table shows, in order; the charted ones have a title.
const METRICS: &[(&str, Option<&str>, bool)] = &[
    // (metric, chart title, log scale)
    (
        "udp_pps",
        Some("UDP packets/s delivered, established flows"),
        false,
    ),
    (
        "pkt_us",
        Some("Forwarding-core µs per packet, established UDP flows"),
        false,
    ),
    (
        "mesh_us",
        Some("Mesh cost: µs per packet over the direct path"),
        false,
    ),
    (
        "udp_new_pps",
        Some("UDP packets/s delivered, a new flow per packet"),
        false,
    ),
    ("udp_new_pkt_us", None, false),
    ("tcp_cps", Some("New TCP connections/s"), false),
    ("rr_rps", None, false),
    ("rr_p50_us", None, false),
    ("rr_p99_us", None, false),
    (
        "program_ms",
        Some("Programming every service from nothing, ms (log)"),
        true,
    ),
    ("change_ms", Some("One change, ms (log)"), true),
    ("change_add_service_ms", None, false),
    ("change_remove_service_ms", None, false),
    ("change_add_backend_ms", None, false),
    ("change_drain_backend_ms", None, false),
    ("udp_fwd_busy", None, false),
    ("udp_offered_pps", None, false),
];

const MODES: [(&str, &str); 3] = [
    ("xdp", "#1f77b4"),
    ("iptables", "#d62728"),
    ("direct", "#2ca02c"),
];

fn round(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

fn get<'a>(
    records: &'a [Record],
    counts: &[usize],
    mode: &str,
    n: usize,
    m: &str,
) -> Option<&'a Record> {
    // The direct path has no services: its one point stands for every count.
    let n = if mode == "direct" { counts[0] } else { n };
    records
        .iter()
        .find(|r| r.mode == mode && r.services == n && r.metric == m)
}

fn cell(r: Option<&Record>) -> String {
    let f = |v: f64| {
        if v.abs() >= 100.0 {
            format!("{v:.0}")
        } else {
            format!("{v:.2}")
        }
    };
    r.map_or("–".into(), |r| {
        format!("{} ({}–{})", f(r.value), f(r.min), f(r.max))
    })
}

pub fn write_results(out: &Path, records: &[Record], counts: &[usize], notes: &[String]) {
    let json: Vec<_> = records
        .iter()
        .map(|r| {
            serde_json::json!({"mode": r.mode, "services": r.services, "metric": r.metric,
                "value": round(r.value), "min": round(r.min), "max": round(r.max)})
        })
        .collect();
    std::fs::write(
        out.join("results.json"),
        serde_json::to_string_pretty(&json).unwrap(),
    )
    .unwrap();

    let mut md = String::from("Lab and method:\n\n");
    for n in notes {
        let _ = writeln!(md, "- {n}");
    }
    md.push_str("\nMedian (min–max) of the windows. The last column is xdp / iptables.\n\n");
    md.push_str("| metric | services | xdp | iptables | direct | xdp / iptables |\n|---|---:|---:|---:|---:|---:|\n");
    for (metric, _, _) in METRICS {
        for &n in counts {
            let (x, i, d) = (
                get(records, counts, "xdp", n, metric),
                get(records, counts, "iptables", n, metric),
                get(records, counts, "direct", n, metric),
            );
            if x.is_none() && i.is_none() && d.is_none() {
                continue;
            }
            let ratio = match (x, i) {
                (Some(x), Some(i)) if i.value != 0.0 => format!("{:.2}×", x.value / i.value),
                _ => "–".into(),
            };
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
    for (metric, title, log) in METRICS {
        if let Some(title) = title {
            if records.iter().any(|r| r.metric == *metric) {
                let svg = chart(records, counts, metric, title, *log);
                std::fs::write(out.join(format!("{metric}.svg")), svg).unwrap();
            }
        }
    }
    print!("{md}");
}

/// A line chart of `metric` against the service count, median points with
/// min–max bars.
fn chart(records: &[Record], counts: &[usize], metric: &str, title: &str, log: bool) -> String {
    let (w, h, pad) = (640.0, 360.0, 60.0);
    let rows: Vec<&Record> = records.iter().filter(|r| r.metric == metric).collect();
    let max = rows
        .iter()
        .map(|r| r.max)
        .fold(f64::MIN, f64::max)
        .max(1e-9);
    let min_pos = rows
        .iter()
        .map(|r| r.min)
        .filter(|v| *v > 0.0)
        .fold(f64::MAX, f64::min)
        .min(max);
    let (lo, hi) = if log {
        (
            min_pos.log10().floor(),
            max.log10().ceil().max(min_pos.log10().floor() + 1.0),
        )
    } else {
        (0.0, max * 1.1)
    };
    let x = |i: usize| pad + (w - 2.0 * pad) * i as f64 / (counts.len() - 1).max(1) as f64;
    let y = |v: f64| {
        let f = if log {
            (v.max(10f64.powf(lo)).log10() - lo) / (hi - lo)
        } else {
            v / hi
        };
        h - pad - (h - 2.0 * pad) * f
    };
    let mut svg = format!("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n");
    let _ = writeln!(svg, "<text x=\"{pad}\" y=\"20\">{title}</text>");
    let _ = writeln!(
        svg,
        "<line x1=\"{pad}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>",
        h - pad,
        w - pad,
        h - pad
    );
    let _ = writeln!(
        svg,
        "<line x1=\"{pad}\" y1=\"{pad}\" x2=\"{pad}\" y2=\"{}\" stroke=\"black\"/>",
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
    let _ = writeln!(
        svg,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">services</text>",
        w / 2.0,
        h - 15.0
    );
    let ticks: Vec<f64> = if log {
        (lo as i32..=hi as i32).map(|e| 10f64.powi(e)).collect()
    } else {
        (0..=4).map(|k| hi * k as f64 / 4.0).collect()
    };
    for t in ticks {
        let label = if t >= 1000.0 {
            format!("{:.0}k", t / 1000.0)
        } else if t >= 1.0 {
            format!("{t:.0}")
        } else {
            format!("{t:.2}")
        };
        let _ = writeln!(
            svg,
            "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{label}</text><line x1=\"{pad}\" y1=\"{:.1}\" x2=\"{}\" y2=\"{:.1}\" stroke=\"#ddd\"/>",
            pad - 6.0,
            y(t) + 4.0,
            y(t),
            w - pad,
            y(t)
        );
    }
    for (mode, color) in MODES {
        let pts: Vec<(f64, &Record)> = counts
            .iter()
            .enumerate()
            .filter_map(|(i, &n)| Some((x(i), get(records, counts, mode, n, metric)?)))
            .collect();
        if pts.is_empty() {
            continue;
        }
        let line: Vec<String> = pts
            .iter()
            .map(|(px, r)| format!("{px:.1},{:.1}", y(r.value)))
            .collect();
        let _ = writeln!(
            svg,
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>",
            line.join(" ")
        );
        for (px, r) in &pts {
            let _ = writeln!(
                svg,
                "<line x1=\"{px:.1}\" y1=\"{:.1}\" x2=\"{px:.1}\" y2=\"{:.1}\" stroke=\"{color}\"/>",
                y(r.min),
                y(r.max)
            );
        }
        let (lx, last) = pts[pts.len() - 1];
        let _ = writeln!(
            svg,
            "<text x=\"{lx:.1}\" y=\"{:.1}\" dx=\"6\" fill=\"{color}\">{mode}</text>",
            y(last.value)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// Sample the forwarding core (cpu-clock: this VM has no hardware
/// counters) during one window of established UDP flows, and keep the top
/// of the report as DIR/profile-MODE-N.txt.
pub fn profile(out: &Path, mode: &str, n: usize, cores: Cores, window: Duration) {
    let data = out.join(format!("perf-{mode}-{n}.data"));
    let secs = format!("{:.1}", window.as_secs_f64());
    let cpu = cores.forwarding.to_string();
    let mut perf = None;
    crate::load::udp_pps_then(mode, cores, window, || {
        perf = Some(
            Command::new("perf")
                .args([
                    "record",
                    "-q",
                    "-e",
                    "cpu-clock",
                    "-a",
                    "-C",
                    &cpu,
                    "-g",
                    "-o",
                ])
                .arg(&data)
                .args(["--", "sleep", &secs])
                .spawn()
                .expect("running perf (scripts/bench-ingress.sh installs linux-perf)"),
        );
    });
    if let Some(mut p) = perf {
        let _ = p.wait();
    }
    let report = Command::new("perf")
        .args([
            "report",
            "--stdio",
            "--no-children",
            "--sort",
            "symbol",
            "--percent-limit",
            "1.5",
            "-g",
            "none",
            "-i",
        ])
        .arg(&data)
        .output()
        .expect("perf report");
    let text = String::from_utf8_lossy(&report.stdout);
    let top: String = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .take(40)
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(out.join(format!("profile-{mode}-{n}.txt")), top).unwrap();
    let _ = std::fs::remove_file(&data);
}
