//! The service address repair's leak counting: an address no service holds is given back only
//! after it has been seen so, unchanged, in several consecutive runs, so that one another
//! server has just taken (its service not yet written) survives any single run.

use std::sync::Arc;

use bytes::Bytes;
use rudder_apiserver::services::{Allocator, Cidr, LEAK_RUNS};
use rudder_store::embedded::{Embedded, EmbeddedOptions};
use rudder_store::Store;

fn b(s: &str) -> Bytes {
    Bytes::from(s.to_string())
}

#[tokio::test]
async fn leaks_are_given_back_after_consecutive_runs_only() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store: Arc<dyn Store> =
        Arc::new(Embedded::open(EmbeddedOptions::new(dir.path().join("db"))).expect("store"));
    let alloc = Allocator::new(store.clone(), Cidr::parse("10.43.0.0/16").expect("cidr"));
    let owner = b(r#"{"name":"s","namespace":"default"}"#);
    let held_ip = "/registry/ranges/serviceips/10.43.0.5";
    let leaked_ip = "/registry/ranges/serviceips/10.43.0.6";
    let retaken = "/registry/ranges/servicenodeports/30001";
    for k in [held_ip, leaked_ip, retaken] {
        store.create(b(k), owner.clone()).await.expect("take");
    }
    store
        .create(
            b("/registry/services/default/s"),
            b(r#"{"metadata":{"name":"s","namespace":"default"},"spec":{"clusterIP":"10.43.0.5","clusterIPs":["10.43.0.5"]}}"#),
        )
        .await
        .expect("service");

    for run in 1..LEAK_RUNS {
        assert_eq!(alloc.repair().await.expect("repair"), 0, "run {run}");
        assert_eq!(alloc.suspected_leaks(), 2);
    }
    // Given back and taken again between two runs: a new allocation, counted afresh.
    store.delete(b(retaken), None).await.expect("release");
    store
        .create(b(retaken), owner.clone())
        .await
        .expect("take again");

    assert_eq!(alloc.repair().await.expect("repair"), 1);
    let exists = |k: &'static str| {
        let store = store.clone();
        async move { store.get(b(k), 0).await.expect("get").is_some() }
    };
    assert!(exists(held_ip).await, "held by a service");
    assert!(!exists(leaked_ip).await, "leaked for {LEAK_RUNS} runs");
    assert!(exists(retaken).await, "taken again since");
    assert_eq!(alloc.suspected_leaks(), 1);
    for _ in 1..LEAK_RUNS {
        alloc.repair().await.expect("repair");
    }
    assert!(!exists(retaken).await);
    assert_eq!(alloc.suspected_leaks(), 0);
}
