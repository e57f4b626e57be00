//! Crash safety in the test suite: 20 SIGKILL rounds (`scripts/bench store-crash` does 100).

#[test]
fn acknowledged_writes_survive_sigkill() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_rudder-bench"));
    let report = rudder_bench::crash::run(exe, &dir, 20, |round, r| {
        eprintln!(
            "round {round}: {} acknowledged, revision {}",
            r.acknowledged, r.final_revision
        )
    })
    .expect("every acknowledged write survives");
    assert_eq!(report.rounds, 20);
    assert!(report.acknowledged > 0, "the child acknowledged writes");
    assert!(
        report.checked_at_revision > 0,
        "writes were checked at their revision"
    );
}
