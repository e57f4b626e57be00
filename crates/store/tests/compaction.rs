//! Automatic compaction: the compactor keeps the configured window of history, compacts the
//! rest away, and the embedded store gives the disk space back.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rudder_store::compactor::{self, CompactionPolicy, Compactor};
use rudder_store::embedded::{Embedded, EmbeddedOptions};
use rudder_store::etcd::EtcdStore;
use rudder_store::{KeyRange, Store, StoreError};

fn policy(keep: i64) -> CompactionPolicy {
    CompactionPolicy {
        retention: None,
        keep_revisions: Some(keep),
        interval: Duration::from_millis(20),
    }
}

async fn overwrite(store: &dyn Store, rounds: usize, keys: usize, size: usize) {
    let value = Bytes::from(vec![0x33u8; size]);
    for r in 0..rounds {
        for k in 0..keys {
            store
                .put(Bytes::from(format!("/registry/cm/ns/k{k}")), value.clone())
                .await
                .unwrap_or_else(|e| panic!("put round {r}: {e}"));
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn embedded_compactor_keeps_the_window_and_gives_space_back() {
    let d = tempfile::tempdir().unwrap();
    let mut o = EmbeddedOptions::new(d.path());
    o.segment_size = 256 << 10;
    let store = Arc::new(Embedded::open(o.clone()).unwrap());
    // 20 keys rewritten 100 times with 8 KiB: about 16 MiB of log for 160 KiB of live data.
    overwrite(store.as_ref(), 100, 20, 8 << 10).await;
    let before = store.disk_bytes();
    let current = store.current_revision().await.unwrap();
    assert_eq!(current, 2000);

    let mut c = Compactor::new(policy(100));
    compactor::run_once(store.as_ref(), &mut c).await.unwrap();
    assert_eq!(store.compacted_revision().await.unwrap(), current - 100);
    // The window is readable, what lies before it is gone.
    store
        .get(Bytes::from("/registry/cm/ns/k0"), current - 100)
        .await
        .unwrap();
    assert!(matches!(
        store.get(Bytes::from("/registry/cm/ns/k0"), current - 101).await,
        Err(StoreError::Compacted { compacted, .. }) if compacted == current - 100
    ));
    let after = store.disk_bytes();
    assert!(
        after * 4 < before,
        "disk use should shrink to a fraction: {before} -> {after}"
    );
    // Data intact after the space was given back, and after a restart.
    assert_eq!(
        store
            .count(KeyRange::prefix("/registry/cm/"))
            .await
            .unwrap(),
        20
    );
    drop(store);
    let store = Embedded::open(o).unwrap();
    assert_eq!(store.current_revision().await.unwrap(), current);
    assert_eq!(store.compacted_revision().await.unwrap(), current - 100);
    let kv = store
        .get(Bytes::from("/registry/cm/ns/k7"), 0)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(kv.version, 100);
    assert_eq!(kv.value.len(), 8 << 10);
}

#[tokio::test(flavor = "multi_thread")]
async fn background_compactor_runs_by_itself() {
    let d = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(Embedded::open(EmbeddedOptions::new(d.path())).unwrap());
    overwrite(store.as_ref(), 30, 10, 100).await;
    let task = compactor::spawn(store.clone(), policy(50));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while store.compacted_revision().await.unwrap() != 250 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the compactor never ran"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    task.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn etcd_compactor_compacts_and_defragments() {
    let etcd = rudder_testkit::EtcdProcess::start().unwrap();
    let store = EtcdStore::connect(&[etcd.endpoint()]).await.unwrap();
    overwrite(&store, 20, 10, 1024).await;
    let current = store.current_revision().await.unwrap();
    let mut c = Compactor::new(policy(10));
    compactor::run_once(&store, &mut c).await.unwrap();
    assert_eq!(store.compacted_revision().await.unwrap(), current - 10);
    assert!(matches!(
        store
            .get(Bytes::from("/registry/cm/ns/k0"), current - 11)
            .await,
        Err(StoreError::Compacted { .. })
    ));
    assert_eq!(
        store
            .count(KeyRange::prefix("/registry/cm/"))
            .await
            .unwrap(),
        10
    );
}
