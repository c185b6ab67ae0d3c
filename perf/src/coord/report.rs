//! The human summary and the output files (JSON result, percentile plot).

use hdrhistogram::Histogram;
use serde_json::{Value, json};

use super::Opts;
use crate::common::*;

pub fn latency_json(h: &Histogram<u64>) -> Value {
    json!({
        "count": h.len(),
        "min": h.min(),
        "mean": h.mean(),
        "p50": h.value_at_quantile(0.5),
        "p90": h.value_at_quantile(0.9),
        "p99": h.value_at_quantile(0.99),
        "p99.9": h.value_at_quantile(0.999),
        "p99.99": h.value_at_quantile(0.9999),
        "max": h.max(),
    })
}

pub fn fmt_us(v: Option<u64>) -> String {
    match v {
        None => "-".into(),
        Some(v) if v >= 10_000_000 => format!("{:.1}s", v as f64 / 1e6),
        Some(v) if v >= 10_000 => format!("{:.1}ms", v as f64 / 1e3),
        Some(v) => format!("{v}µs"),
    }
}

pub(super) fn print_summary(r: &Value) {
    let c = &r["config"];
    println!();
    println!(
        "== ringcast-load: {} ==",
        r["scenario"].as_str().unwrap_or("")
    );
    println!(
        "server:   {} at {}",
        r["server"].as_str().unwrap_or(""),
        r["url"].as_str().unwrap_or("")
    );
    let t = &r["tls"];
    if t["enabled"].as_bool() == Some(true) {
        let n = &t["negotiated"];
        println!(
            "tls:      wss:// — {} {} {} (trusting {} as {}; server cert: {})",
            n["version"].as_str().unwrap_or("no session completed"),
            n["cipher_suite"].as_str().unwrap_or(""),
            n["key_exchange"].as_str().unwrap_or(""),
            t["ca"].as_str().unwrap_or(""),
            t["server_name"].as_str().unwrap_or(""),
            t["server_cert"]
                .as_str()
                .unwrap_or("not started by this run")
        );
    } else {
        println!("tls:      no (ws://)");
    }
    println!(
        "load:     {} connections × {} of {} symbols ({}, {} form), {}-byte ticks, {} client process(es) on cores {}",
        c["conns"],
        c["per_conn"],
        c["symbols"],
        c["sub_dist"].as_str().unwrap_or(""),
        c["form"].as_str().unwrap_or(""),
        c["tick_bytes"],
        c["client_processes"],
        c["client_cores"]
            .as_array()
            .map(|a| a
                .iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join(","))
            .unwrap_or_default()
    );
    let cn = &r["connect"];
    println!(
        "connect:  {}/{} open in {:.2} s ({:.0} connections/s), {} errors",
        cn["open"],
        cn["requested"],
        cn["seconds"].as_f64().unwrap_or(0.0),
        cn["rate_per_s"].as_f64().unwrap_or(0.0),
        cn["errors"]
    );
    println!(
        "{:<12} {:>9} {:>11} {:>8} {:>8} {:>8} {:>8} {:>8} {:>6} {:>5} {:>5} {:>7} {:>9} {:>8}",
        "phase",
        "offered/s",
        "deliv/s",
        "p50",
        "p90",
        "p99",
        "p99.9",
        "max",
        "lost",
        "dup",
        "ooo",
        "srv CPU",
        "ns/deliv",
        "cli CPU"
    );
    for p in r["phases"].as_array().unwrap() {
        let empty = json!({});
        let l = if p["latency_us"]["count"].as_u64().unwrap_or(0) > 0 {
            &p["latency_us"]
        } else {
            &empty
        };
        let cli: f64 = p["client_cpu_pct"]
            .as_array()
            .map(|a| a.iter().filter_map(|x| x.as_f64()).fold(0.0, f64::max))
            .unwrap_or(0.0);
        println!(
            "{:<12} {:>9.0} {:>11.0} {:>8} {:>8} {:>8} {:>8} {:>8} {:>6} {:>5} {:>5} {:>6.0}% {:>9.0} {:>7.0}%",
            p["name"].as_str().unwrap_or(""),
            p["offered_rate"].as_f64().unwrap_or(0.0),
            p["deliveries_per_s"].as_f64().unwrap_or(0.0),
            fmt_us(l["p50"].as_u64()),
            fmt_us(l["p90"].as_u64()),
            fmt_us(l["p99"].as_u64()),
            fmt_us(l["p99.9"].as_u64()),
            fmt_us(l["max"].as_u64()),
            p["counters"]["lost"].as_u64().unwrap_or(0),
            p["counters"]["duplicated"].as_u64().unwrap_or(0),
            p["counters"]["out_of_order"].as_u64().unwrap_or(0),
            p["server_cpu_pct"].as_f64().unwrap_or(0.0),
            p["server_cpu_ns_per_delivery"].as_f64().unwrap_or(0.0),
            cli
        );
        if let Some(a) = p["arrival_latency_us"].as_object()
            && a.get("count").and_then(|x| x.as_u64()).unwrap_or(0) > 0
        {
            let at = |k: &str| fmt_us(a.get(k).and_then(|x| x.as_u64()));
            println!(
                "{:<12} publish→arrival in the clients' sockets (kernel timestamps, the harness's read delay excluded): p50 {} p90 {} p99 {} p99.9 {} max {}",
                "",
                at("p50"),
                at("p90"),
                at("p99"),
                at("p99.9"),
                at("max")
            );
        }
        if let Some(cl) = p["churn_latency_us"].as_object()
            && p["connects_per_s"].as_f64().unwrap_or(0.0) > 0.0
        {
            println!(
                "{:<12} churn: {:.0} connects/s, connect p50 {} p99 {}; churning conns' tick latency p50 {} p99 {}",
                "",
                p["connects_per_s"].as_f64().unwrap_or(0.0),
                fmt_us(p["connect_latency_us"]["p50"].as_u64()),
                fmt_us(p["connect_latency_us"]["p99"].as_u64()),
                fmt_us(cl.get("p50").and_then(|x| x.as_u64())),
                fmt_us(cl.get("p99").and_then(|x| x.as_u64()))
            );
            // Handshake cost: the server's CPU per connect, as connects per second of one core.
            let connects = p["counters"]["connects"].as_f64().unwrap_or(0.0);
            let cpu = p["server_cpu_pct"].as_f64().unwrap_or(0.0) / 100.0;
            if connects > 0.0 && cpu > 0.0 {
                let rate = p["connects_per_s"].as_f64().unwrap_or(0.0);
                println!(
                    "{:<12} server CPU per connect {:.0} µs = {:.0} connects/s per core; TLS resumed {:.1} %",
                    "",
                    cpu / rate * 1e6,
                    rate / cpu,
                    p["counters"]["tls_resumed"].as_f64().unwrap_or(0.0) / connects * 100.0
                );
            }
        }
    }
    let e = &r["extra"];
    if let Some(b) = e["server_rss_bytes_per_conn"].as_f64() {
        println!(
            "memory:   server RSS {} kB → {} kB: {:.0} bytes per connection (+ kernel ≈ {:.0} bytes per client+server socket pair)",
            e["server_rss_kb_before"],
            e["server_rss_kb_after_hold"],
            b,
            e["kernel_slab_bytes_per_conn_pair"].as_f64().unwrap_or(0.0)
        );
    }
    if let Some(b) = e["server_rss_anon_bytes_per_conn"].as_f64() {
        println!(
            "          anonymous RSS (without code pages) {} kB → {} kB: {:.0} bytes per connection",
            e["server_rss_anon_kb_before"], e["server_rss_anon_kb_after_hold"], b
        );
    }
    if let Some(s) = e["saturated_at"].as_object() {
        println!(
            "saturation: the server saturated at {} ticks/s ({})",
            s["rate"],
            s["reason"].as_str().unwrap_or("")
        );
    }
    if e["storm"].is_object() {
        super::storm::print(&e["storm"]);
    }
    if let Some(g) = e["server_rss_growth_kb"].as_i64() {
        println!("slow readers: server RSS grew {g} kB while they stalled");
    }
    let t = &r["totals"];
    println!(
        "totals:   {} published, {} delivered ({} snapshots), lost {}, duplicated {}, out of order {}, unknown {}, server-closed {}",
        r["published"],
        t["deliveries"],
        t["snapshots"],
        t["lost"],
        t["duplicated"],
        t["out_of_order"],
        t["unknown"],
        t["server_closed"]
    );
    // Every close frame the server started during the phases, by code and reason.
    let mut closes = std::collections::BTreeMap::<String, u64>::new();
    for p in r["phases"].as_array().into_iter().flatten() {
        for (k, n) in p["server_closes"].as_object().into_iter().flatten() {
            *closes.entry(k.clone()).or_insert(0) += n.as_u64().unwrap_or(0);
        }
    }
    if !closes.is_empty() {
        let list: Vec<String> = closes
            .iter()
            .map(|(k, n)| {
                let (code, reason) = k.split_once(' ').unwrap_or((k, ""));
                format!("{code} \"{reason}\" ×{n}")
            })
            .collect();
        println!(
            "closes:   server closes in the phases (code \"reason\" ×count): {}",
            list.join(", ")
        );
    }
    for w in r["warnings"].as_array().unwrap() {
        println!("WARNING:  {}", w.as_str().unwrap_or(""));
    }
}

/// Writes the JSON result (`--out`) and the percentile plot (`--svg`), when asked.
pub(super) fn write_outputs(o: &Opts, result: &Value) -> Result<(), String> {
    if !o.out.is_empty() {
        std::fs::write(&o.out, serde_json::to_string_pretty(result).unwrap())
            .map_err(|e| format!("--out {}: {e}", o.out))?;
        eprintln!("result: {}", o.out);
    }
    if !o.svg.is_empty() {
        let series: Vec<(String, Histogram<u64>)> = result["phases"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| {
                Some((
                    p["name"].as_str()?.to_string(),
                    hist_from_b64(p["latency_hist"].as_str()?)?,
                ))
            })
            .filter(|(_, h)| !h.is_empty())
            .collect();
        let title = format!(
            "ringcast-load {} — {} — {} conns, {} symbols",
            o.scenario,
            result["server"].as_str().unwrap_or(""),
            o.conns,
            o.symbols
        );
        std::fs::write(&o.svg, crate::svg::percentile_plot(&title, &series))
            .map_err(|e| format!("--svg {}: {e}", o.svg))?;
        eprintln!("plot: {}", o.svg);
    }
    Ok(())
}
