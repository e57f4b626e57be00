//! Printing the API benchmark's figures: the details of every measurement, then the table of
//! Rudder beside its peer with the ratio and the targets' PASS/FAIL.

use std::time::Duration;

use super::{
    ListResult, Rate, Report, Sizes, WatchResult, COLD_START_TARGET, IDLE_RSS_TARGET_BYTES,
    WATCH_P99_TARGET,
};
use crate::store::{ms, thousands, Mem};

fn mib1(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
}

fn median(xs: &[Duration]) -> Duration {
    let mut v = xs.to_vec();
    v.sort();
    v.get(v.len().saturating_sub(1) / 2)
        .copied()
        .unwrap_or_default()
}

fn max_of(xs: &[Duration]) -> Duration {
    xs.iter().copied().max().unwrap_or_default()
}

/// A Table list may take at most this many times the JSON list of the same objects.
const TABLE_JSON_TARGET: f64 = 2.0;

fn verdict(ok: bool) -> &'static str {
    if ok {
        "PASS"
    } else {
        "FAIL"
    }
}

fn ratio(a: f64, b: f64) -> String {
    if b <= 0.0 || a <= 0.0 {
        return "—".into();
    }
    format!("{:.2}×", a / b)
}

fn per_s(r: &Rate) -> String {
    format!("{}/s", thousands(r.per_s))
}

pub(super) fn print_details(r: &Report, s: &Sizes) {
    println!("details:");
    let rate = |name: &str, x: &Option<Rate>| {
        if let Some(x) = x {
            println!(
                "  {name}: {} ok, {} errors in {:.2} s = {}; latency p50 {} p99 {} max {}",
                x.ok,
                x.errors,
                x.elapsed.as_secs_f64(),
                per_s(x),
                ms(x.latency.p50),
                ms(x.latency.p99),
                ms(x.latency.max)
            );
            let rounds: Vec<String> = x.rounds.iter().map(|r| thousands(*r)).collect();
            println!("    per round: {} /s", rounds.join(", "));
            if let Some(c) = &x.cpu {
                println!("    {}", c.line(x.ok, "write"));
            }
            if let Some(e) = &x.first_error {
                println!("    first error: {e}");
            }
        }
    };
    let list = |name: &str, x: &Option<ListResult>| {
        if let Some(x) = x {
            println!(
                "  {name}: {} entries, {:.1} MB; median {} p99 {} min {} max {} ({} runs)",
                x.items,
                x.bytes as f64 / 1e6,
                ms(x.latency.p50),
                ms(x.latency.p99),
                ms(x.min),
                ms(x.latency.max),
                x.runs
            );
        }
    };
    let watch = |x: &Option<WatchResult>| {
        if let Some(x) = x {
            println!(
                "  watch {}: {} watchers on {} connections, set up in {:.2} s; {} of {} events \
                 delivered ({} watchers saw all {} writes); delay p50 {} p99 {} max {}; \
                 until all watchers saw a write: median {} max {}; write latency p50 {} max {}",
                x.label,
                x.watchers,
                x.connections,
                x.setup.as_secs_f64(),
                x.delivered,
                x.expected,
                x.complete_watchers,
                x.writes,
                ms(x.delay.p50),
                ms(x.delay.p99),
                ms(x.delay.max),
                ms(x.all_seen.p50),
                ms(x.all_seen.max),
                ms(x.write_latency.p50),
                ms(x.write_latency.max)
            );
            if let Some(c) = &x.cpu {
                println!("    {}", c.line(x.delivered, "event delivered"));
            }
        }
    };
    for (name, b) in [("embedded", &r.embedded), ("etcd backend", &r.etcd_backend)] {
        rate(&format!("{name} ConfigMap creates"), &b.creates);
        rate(&format!("{name} pod creates (list set-up)"), &b.pods);
        list(&format!("{name} list JSON"), &b.list_json);
        list(&format!("{name} list Table"), &b.list_table);
        if let (Some(j), Some(t)) = (&b.list_json, &b.list_table) {
            println!(
                "  {name}: Table / JSON, median {:.2}×, p99 {:.2}×",
                t.latency.p50.as_secs_f64() / j.latency.p50.as_secs_f64().max(1e-9),
                t.latency.p99.as_secs_f64() / j.latency.p99.as_secs_f64().max(1e-9)
            );
        }
        watch(&b.watch_h2);
        watch(&b.watch_h1);
        if let Some(n) = b.configmap_bytes {
            println!("  {name}: one ConfigMap as the API returns it: {n} B");
        }
    }
    if let Some(n) = r.stored_configmap_bytes {
        println!("  one ConfigMap as stored in etcd: {n} B");
    }
    if let Some(n) = r.stored_pod_bytes {
        println!("  one pod as stored in etcd: {n} B");
    }
    if r.raw_put.is_some() {
        println!(
            "  raw etcd puts: values of {} B, {} clients (one connection each)",
            r.raw_put_value_bytes, s.clients
        );
    }
    rate("raw etcd puts", &r.raw_put);
    if let Some(raw) = &r.raw_put {
        for (name, b) in [("embedded", &r.embedded), ("etcd backend", &r.etcd_backend)] {
            if let Some(c) = &b.creates {
                let per: Vec<String> = c
                    .rounds
                    .iter()
                    .zip(&raw.rounds)
                    .map(|(a, b)| ratio(*a, *b))
                    .collect();
                println!("  {name} / raw etcd, round by round: {}", per.join(", "));
            }
        }
    }
    list("raw etcd range of the stored pods", &r.raw_range);
    watch(&r.raw_watch);
    if let Some(i) = &r.idle {
        let m = |m: &Mem| {
            format!(
                "VmRSS {} (anon {}, file {}), VmHWM {}",
                mib1(m.rss_kb * 1024),
                mib1(m.anon_kb * 1024),
                mib1(m.file_kb * 1024),
                mib1(m.hwm_kb * 1024)
            )
        };
        println!(
            "  idle after {:.0} s: rudder {}; the API server alone {}; etcd {}",
            i.after.as_secs_f64(),
            m(&i.rudder),
            m(&i.api_alone),
            i.etcd.as_ref().map_or("not measured".into(), m)
        );
    }
    if let Some(st) = &r.starts {
        let all = |xs: &[Duration]| xs.iter().map(|d| ms(*d)).collect::<Vec<_>>().join(", ");
        println!("  rudder start, empty data dir: {}", all(&st.first));
        println!("  rudder restart on its data:   {}", all(&st.restart));
        println!("  etcd start, empty data dir:   {}", all(&st.etcd_first));
        println!("  etcd restart on its data:     {}", all(&st.etcd_restart));
    }
}

/// One row of the table.
pub struct Row {
    pub metric: String,
    pub rudder: String,
    pub peer: String,
    pub ratio: String,
    pub target: String,
}

pub(super) fn table_rows(r: &Report, s: &Sizes) -> Vec<Row> {
    let mut rows = Vec::new();
    let raw_put = r.raw_put.as_ref();
    for (name, b) in [("embedded", &r.embedded), ("etcd backend", &r.etcd_backend)] {
        if let Some(c) = &b.creates {
            let peer = raw_put.map_or(0.0, |p| p.per_s);
            rows.push(Row {
                metric: format!(
                    "ConfigMap creates/s, {} clients, {name} (peer: raw etcd puts)",
                    s.clients
                ),
                rudder: per_s(c),
                peer: raw_put.map_or("—".into(), per_s),
                ratio: ratio(c.per_s, peer),
                target: format!(
                    "≥ peer: {}",
                    verdict(raw_put.is_some() && c.per_s >= peer && c.errors == 0)
                ),
            });
        }
    }
    let raw_range = r.raw_range.as_ref();
    for (name, b) in [("embedded", &r.embedded), ("etcd backend", &r.etcd_backend)] {
        for (fmt, l) in [("JSON", &b.list_json), ("Table", &b.list_table)] {
            let Some(l) = l else { continue };
            for (stat, v, p) in [
                ("median", l.latency.p50, raw_range.map(|x| x.latency.p50)),
                ("p99", l.latency.p99, raw_range.map(|x| x.latency.p99)),
            ] {
                rows.push(Row {
                    metric: format!(
                        "list {} pods {fmt}, {stat}, {name} (peer: etcd range)",
                        thousands(l.items as f64)
                    ),
                    rudder: ms(v),
                    peer: p.map_or("—".into(), ms),
                    ratio: p.map_or("—".into(), |p| ratio(v.as_secs_f64(), p.as_secs_f64())),
                    target: "—".into(),
                });
            }
        }
    }
    // kubectl get's Table beside the plain list of the same pods, same server, same run.
    for (name, b) in [("embedded", &r.embedded), ("etcd backend", &r.etcd_backend)] {
        let (Some(json), Some(table)) = (&b.list_json, &b.list_table) else {
            continue;
        };
        let (t, j) = (table.latency.p50, json.latency.p50);
        let ok = t.as_secs_f64() <= TABLE_JSON_TARGET * j.as_secs_f64();
        rows.push(Row {
            metric: format!(
                "list {} pods as Table vs as JSON, median, {name} (peer: the JSON list)",
                thousands(table.items as f64)
            ),
            rudder: ms(t),
            peer: ms(j),
            ratio: ratio(t.as_secs_f64(), j.as_secs_f64()),
            target: format!("≤ {TABLE_JSON_TARGET}×: {}", verdict(ok)),
        });
    }
    let raw_watch = r.raw_watch.as_ref();
    for (name, b) in [("embedded", &r.embedded), ("etcd backend", &r.etcd_backend)] {
        for w in [&b.watch_h2, &b.watch_h1].into_iter().flatten() {
            let proto = if w.label.ends_with("HTTP/2") {
                format!("HTTP/2, {} conns", w.connections)
            } else {
                "HTTP/1.1".to_string()
            };
            let complete = w.delivered == w.expected;
            rows.push(Row {
                metric: format!(
                    "watch fan-out p99, {} watchers, {proto}, {name} (peer: etcd watchers)",
                    thousands(w.watchers as f64)
                ),
                rudder: if complete {
                    ms(w.delay.p99)
                } else {
                    format!("{} ({}/{} seen)", ms(w.delay.p99), w.delivered, w.expected)
                },
                peer: raw_watch.map_or("—".into(), |p| ms(p.delay.p99)),
                ratio: raw_watch.map_or("—".into(), |p| {
                    ratio(w.delay.p99.as_secs_f64(), p.delay.p99.as_secs_f64())
                }),
                target: format!(
                    "≤ {} ms: {}",
                    WATCH_P99_TARGET.as_millis(),
                    verdict(complete && w.delay.p99 <= WATCH_P99_TARGET)
                ),
            });
        }
    }
    if let Some(i) = &r.idle {
        let peer = i.etcd.map(|m| m.rss_kb * 1024);
        rows.push(Row {
            metric: format!(
                "idle RSS {:.0} s after start, the API server alone (peer: etcd, idle)",
                i.after.as_secs_f64()
            ),
            rudder: mib1(i.api_alone.rss_kb * 1024),
            peer: peer.map_or("—".into(), mib1),
            ratio: peer.map_or("—".into(), |p| {
                ratio(i.api_alone.bytes() as f64, p as f64)
            }),
            target: format!(
                "≤ {} MiB: {}",
                IDLE_RSS_TARGET_BYTES >> 20,
                verdict(i.api_alone.bytes() <= IDLE_RSS_TARGET_BYTES)
            ),
        });
        rows.push(Row {
            metric: "the same, with the scheduler and the controllers (peer: etcd)".into(),
            rudder: mib1(i.rudder.rss_kb * 1024),
            peer: peer.map_or("—".into(), mib1),
            ratio: peer.map_or("—".into(), |p| ratio(i.rudder.bytes() as f64, p as f64)),
            target: "—".into(),
        });
        let peer = i.etcd.map(|m| m.hwm_kb * 1024);
        rows.push(Row {
            metric: "peak RSS (VmHWM) at that point (peer: etcd)".into(),
            rudder: mib1(i.rudder.hwm_kb * 1024),
            peer: peer.map_or("—".into(), mib1),
            ratio: peer.map_or("—".into(), |p| {
                ratio((i.rudder.hwm_kb * 1024) as f64, p as f64)
            }),
            target: "—".into(),
        });
    }
    if let Some(st) = &r.starts {
        let n = st.first.len();
        for (what, xs, peer, target) in [
            ("empty data dir", &st.first, &st.etcd_first, true),
            ("restart on its data", &st.restart, &st.etcd_restart, false),
        ] {
            let (m, p) = (median(xs), median(peer));
            rows.push(Row {
                metric: format!(
                    "cold start to ready, {what}, median of {n} (peer: etcd to healthy)"
                ),
                rudder: ms(m),
                peer: ms(p),
                ratio: ratio(m.as_secs_f64(), p.as_secs_f64()),
                target: if target {
                    format!(
                        "≤ 1 s: {}",
                        verdict(m <= COLD_START_TARGET && max_of(xs) <= COLD_START_TARGET * 2)
                    )
                } else {
                    format!("≤ 1 s: {}", verdict(m <= COLD_START_TARGET))
                },
            });
        }
    }
    rows
}

pub(super) fn print_table(rows: &[Row]) {
    let mut table = vec![["measurement", "rudder", "peer", "rudder/peer", "target"]];
    table.extend(rows.iter().map(|r| {
        [
            r.metric.as_str(),
            r.rudder.as_str(),
            r.peer.as_str(),
            r.ratio.as_str(),
            r.target.as_str(),
        ]
    }));
    crate::print_table(&table);
}
