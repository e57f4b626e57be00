//! The API benchmark end to end at toy sizes (`scripts/bench api --quick` is the same code with
//! bigger counts): every phase runs against a real `rudder server` and a real etcd, and every
//! count comes out right. No timing is asserted; benchmarks report, tests check correctness.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rudder_bench::api::{self, Phase, Sizes};

/// The `rudder` binary cargo built beside `rudder-bench` (the workspace's test run builds both).
fn rudder_bin() -> PathBuf {
    let bench = Path::new(env!("CARGO_BIN_EXE_rudder-bench"));
    let bin = bench.with_file_name("rudder");
    assert!(
        bin.is_file(),
        "{} is missing: build it first (cargo build --release -p rudder)",
        bin.display()
    );
    bin
}

#[test]
fn every_phase_counts_right_at_toy_sizes() {
    let sizes = Sizes {
        clients: 4,
        creates: 40,
        rounds: 2,
        payload: 64,
        pods: 30,
        list_runs: 2,
        watchers: 12,
        streams_per_conn: 5,
        watch_writes: 3,
        watch_interval: Duration::from_millis(10),
        idle: Duration::from_secs(1),
        start_runs: 1,
    };
    let parent = tempfile::tempdir().unwrap();
    let opts = api::Options {
        sizes: sizes.clone(),
        phases: Phase::all(),
        rudder: rudder_bin(),
        parent: parent.path().to_path_buf(),
    };
    let r = api::run(&opts).expect("the benchmark runs");

    for (name, b) in [("embedded", &r.embedded), ("etcd", &r.etcd_backend)] {
        let c = b.creates.as_ref().expect("creates measured");
        assert_eq!(
            (c.ok, c.errors),
            (40, 0),
            "{name} creates: {:?}",
            c.first_error
        );
        assert!(c.per_s > 0.0);
        let pods = b.pods.as_ref().expect("pods created");
        assert_eq!((pods.ok, pods.errors), (30, 0), "{name} pods");
        let json = b.list_json.as_ref().expect("JSON list");
        let table = b.list_table.as_ref().expect("Table list");
        assert_eq!((json.items, json.runs), (30, 2), "{name} JSON list");
        assert_eq!((table.items, table.runs), (30, 2), "{name} Table list");
        let h2 = b.watch_h2.as_ref().expect("HTTP/2 watch");
        let h1 = b.watch_h1.as_ref().expect("HTTP/1.1 watch");
        // 12 watchers at 5 streams per connection: 3 HTTP/2 connections; one each for HTTP/1.1.
        assert_eq!(h2.connections, 3, "{name}");
        assert_eq!(h1.connections, 12, "{name}");
        for w in [h2, h1] {
            assert_eq!(w.watchers, 12, "{}", w.label);
            assert_eq!(w.writes, 3, "{}", w.label);
            assert_eq!(w.expected, 36, "{}", w.label);
            assert_eq!(
                w.delivered, 36,
                "{}: every watcher sees every write",
                w.label
            );
            assert_eq!(w.complete_watchers, 12, "{}", w.label);
            assert!(w.delay.max >= w.delay.p99 && w.delay.p99 >= w.delay.p50);
        }
    }
    // The ConfigMap etcd stores holds the 64-byte payload and the server's metadata.
    let stored = r
        .stored_configmap_bytes
        .expect("stored ConfigMap read back");
    assert!(stored > 64, "{stored}");
    assert_eq!(r.raw_put_value_bytes, stored);
    assert!(r.stored_pod_bytes.expect("stored pod read back") > 0);
    let raw = r.raw_put.as_ref().expect("raw etcd puts");
    assert_eq!((raw.ok, raw.rounds.len()), (40, 2));
    assert_eq!(r.raw_range.as_ref().expect("raw range").items, 30);
    let rw = r.raw_watch.as_ref().expect("raw etcd watchers");
    assert_eq!((rw.delivered, rw.expected), (36, 36));

    let idle = r.idle.as_ref().expect("idle memory");
    assert!(idle.rudder.rss_kb > 0 && idle.rudder.hwm_kb >= idle.rudder.rss_kb);
    assert!(idle.etcd.expect("etcd idle memory").rss_kb > 0);
    assert!(idle.after >= Duration::from_secs(1));

    let st = r.starts.as_ref().expect("cold starts");
    for xs in [&st.first, &st.restart, &st.etcd_first, &st.etcd_restart] {
        assert_eq!(xs.len(), 1);
        assert!(xs[0] > Duration::ZERO);
    }
    assert!(
        r.rudder_version.starts_with("rudder version"),
        "{}",
        r.rudder_version
    );
    assert!(r.etcd_version.contains("etcd"), "{}", r.etcd_version);

    // Nothing is left under the parent dir: every server and etcd cleaned up after itself.
    let left: BTreeSet<_> = std::fs::read_dir(parent.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}
