//! A few basic checks of the etcd backend against a real etcd (`rudder_testkit::EtcdProcess`).
//! The full store contract, run on both backends, lives in `contract.rs`.

use std::time::Duration;

use anyhow::{bail, Context};
use bytes::Bytes;
use rudder_store::etcd::EtcdStore;
use rudder_store::{
    EventKind, KeyRange, RangeRequest, Store, StoreError, Watch, WatchMessage, WatchRequest,
};
use rudder_testkit::EtcdProcess;

const WAIT: Duration = Duration::from_secs(15);

async fn start() -> anyhow::Result<(EtcdProcess, EtcdStore)> {
    let etcd = EtcdProcess::start()?;
    let store = EtcdStore::connect(&[etcd.endpoint()]).await?;
    Ok((etcd, store))
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

async fn next(w: &mut Watch) -> anyhow::Result<WatchMessage> {
    match tokio::time::timeout(WAIT, w.next()).await {
        Err(_) => bail!("no watch message within {WAIT:?}"),
        Ok(None) => bail!("watch ended"),
        Ok(Some(msg)) => Ok(msg?),
    }
}

/// Collect `n` events from a watch, skipping progress notifications.
async fn events(w: &mut Watch, n: usize) -> anyhow::Result<Vec<rudder_store::Event>> {
    let mut out = Vec::new();
    while out.len() < n {
        if let WatchMessage::Events { events, .. } = next(w).await? {
            out.extend(events);
        }
    }
    Ok(out)
}

#[tokio::test]
async fn create_update_put_delete() -> anyhow::Result<()> {
    let (_etcd, s) = start().await?;
    assert_eq!(s.backend(), "etcd");

    let created = s.create(b("/k"), b("v1")).await?;
    assert_eq!(created.version, 1);
    assert_eq!(created.create_revision, created.mod_revision);
    assert_eq!(s.current_revision().await?, created.mod_revision);

    match s.create(b("/k"), b("other")).await {
        Err(StoreError::AlreadyExists { current }) => assert_eq!(current, created),
        other => bail!("create of an existing key: {other:?}"),
    }

    let updated = s.update(b("/k"), b("v2"), created.mod_revision).await?;
    assert_eq!(updated.version, 2);
    assert_eq!(updated.create_revision, created.create_revision);
    assert_eq!(updated.mod_revision, created.mod_revision + 1);
    assert_eq!(s.get(b("/k"), 0).await?, Some(updated.clone()));

    // Stale expected revision: a conflict carrying what is there now.
    match s.update(b("/k"), b("v3"), created.mod_revision).await {
        Err(StoreError::Conflict {
            key,
            expected,
            current,
        }) => {
            assert_eq!(key, b("/k"));
            assert_eq!(expected, created.mod_revision);
            assert_eq!(current, Some(updated.clone()));
        }
        other => bail!("stale update: {other:?}"),
    }

    let put = s.put(b("/k"), b("v4")).await?;
    assert_eq!(put.version, 3);
    assert_eq!(put.create_revision, created.create_revision);
    let fresh = s.put(b("/p"), b("x")).await?;
    assert_eq!(fresh.version, 1);
    assert_eq!(fresh.create_revision, fresh.mod_revision);

    // Delete with a wrong, then the right expected revision.
    match s.delete(b("/k"), Some(updated.mod_revision)).await {
        Err(StoreError::Conflict { current, .. }) => assert_eq!(current, Some(put.clone())),
        other => bail!("delete with a stale revision: {other:?}"),
    }
    let (gone, rev) = s.delete(b("/k"), Some(put.mod_revision)).await?;
    assert_eq!(gone, put);
    assert_eq!(rev, fresh.mod_revision + 1);
    assert_eq!(s.get(b("/k"), 0).await?, None);
    // The old version is still readable at its revision.
    assert_eq!(s.get(b("/k"), put.mod_revision).await?, Some(put.clone()));

    match s.delete(b("/k"), None).await {
        Err(StoreError::NotFound { key }) => assert_eq!(key, b("/k")),
        other => bail!("delete of an absent key: {other:?}"),
    }
    match s.update(b("/k"), b("v"), put.mod_revision).await {
        Err(StoreError::Conflict { current: None, .. }) => {}
        other => bail!("update of a deleted key: {other:?}"),
    }
    match s.delete(b("/k"), Some(put.mod_revision)).await {
        Err(StoreError::Conflict { current: None, .. }) => {}
        other => bail!("delete of a deleted key with a revision: {other:?}"),
    }
    let (gone, _) = s.delete(b("/p"), None).await?;
    assert_eq!(gone, fresh);

    // Re-creation starts a new incarnation.
    let again = s.create(b("/k"), b("v5")).await?;
    assert_eq!(again.version, 1);
    assert!(again.create_revision > created.create_revision);

    assert!(matches!(
        s.create(Bytes::new(), b("v")).await,
        Err(StoreError::Invalid(_))
    ));
    Ok(())
}

#[tokio::test]
async fn range_pages_with_limit_and_next_key() -> anyhow::Result<()> {
    let (_etcd, s) = start().await?;
    for name in ["a", "b", "c", "d", "e"] {
        s.create(b(&format!("/r/{name}")), b(name)).await?;
    }
    s.create(b("/other"), b("x")).await?;
    let rev = s.current_revision().await?;

    let first = s
        .range(RangeRequest::new(KeyRange::prefix(b("/r/"))).limit(2))
        .await?;
    assert_eq!(first.kvs.len(), 2);
    assert_eq!(first.kvs[0].key, b("/r/a"));
    assert_eq!(first.kvs[1].key, b("/r/b"));
    assert!(first.more);
    assert_eq!(first.count, 5);
    assert_eq!(first.revision, rev);
    let next_key = first.next_key.context("next_key of a cut-short page")?;
    assert_eq!(&next_key[..], b"/r/b\0");

    // Change the range, then read the next page at the first page's revision.
    s.put(b("/r/c"), b("changed")).await?;
    let second = s
        .range(
            RangeRequest::new(KeyRange::between(
                next_key,
                rudder_store::prefix_end(b"/r/"),
            ))
            .at(first.revision)
            .limit(10),
        )
        .await?;
    let keys: Vec<_> = second.kvs.iter().map(|kv| kv.key.clone()).collect();
    assert_eq!(keys, vec![b("/r/c"), b("/r/d"), b("/r/e")]);
    assert_eq!(second.kvs[0].value, b("c"));
    assert!(!second.more);
    assert_eq!(second.next_key, None);
    assert_eq!(second.revision, first.revision);

    assert_eq!(s.count(KeyRange::prefix(b("/r/"))).await?, 5);
    // The whole key space: empty start, empty end.
    let all = s
        .range(RangeRequest::new(KeyRange::between(
            Bytes::new(),
            Bytes::new(),
        )))
        .await?;
    assert_eq!(all.count, 6);
    assert_eq!(all.kvs.last().map(|kv| kv.key.clone()), Some(b("/r/e")));

    match s
        .range(RangeRequest::new(KeyRange::key(b("/r/a"))).at(rev + 100))
        .await
    {
        Err(StoreError::FutureRevision { requested, current }) => {
            assert_eq!(requested, rev + 100);
            assert_eq!(current, rev + 1);
        }
        other => bail!("read at a future revision: {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn watch_delivers_events_with_prev_and_progress() -> anyhow::Result<()> {
    let (etcd, s) = start().await?;
    let before = s.put(b("/w/a"), b("0")).await?;

    let mut live = s
        .watch(WatchRequest::new(KeyRange::prefix(b("/w/")), 0))
        .await?;
    let v1 = s.put(b("/w/a"), b("1")).await?;
    s.put(b("/unwatched"), b("x")).await?;
    let (deleted, del_rev) = s.delete(b("/w/a"), None).await?;

    let got = events(&mut live, 2).await?;
    assert_eq!(got[0].kind, EventKind::Put);
    assert_eq!(got[0].kv, v1);
    assert_eq!(got[0].prev, Some(before.clone()));
    assert_eq!(got[1].kind, EventKind::Delete);
    assert_eq!(got[1].kv.key, b("/w/a"));
    assert_eq!(got[1].kv.mod_revision, del_rev);
    assert_eq!(got[1].kv.version, 0);
    assert!(got[1].kv.value.is_empty());
    assert_eq!(got[1].prev, Some(deleted));

    // Replay from an older revision.
    let mut replay = s
        .watch(WatchRequest::new(
            KeyRange::prefix(b("/w/")),
            before.mod_revision,
        ))
        .await?;
    let got = events(&mut replay, 3).await?;
    let revs: Vec<_> = got.iter().map(|e| e.kv.mod_revision).collect();
    assert_eq!(revs, vec![before.mod_revision, v1.mod_revision, del_rev]);

    // A start revision in the future: etcd waits for it.
    let now = s.current_revision().await?;
    let mut later = s
        .watch(WatchRequest::new(KeyRange::prefix(b("/w/")), now + 3))
        .await?;
    for i in 1..=3 {
        s.put(b("/w/f"), b(&i.to_string())).await?;
    }
    let got = events(&mut later, 1).await?;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].kv.mod_revision, now + 3);
    assert_eq!(got[0].kv.value, b("3"));
    assert_eq!(
        got[0].prev.as_ref().map(|kv| kv.value.clone()),
        Some(b("2"))
    );

    // Periodic progress (the testkit sets etcd's interval to 1 s) on an idle watch.
    let mut idle = s
        .watch(WatchRequest {
            progress_notify: true,
            ..WatchRequest::new(KeyRange::prefix(b("/idle/")), 0)
        })
        .await?;
    let current = s.current_revision().await?;
    match next(&mut idle).await? {
        WatchMessage::Progress { revision } => assert!(revision >= current),
        other => bail!("expected progress on an idle watch, got {other:?}"),
    }

    // Requested progress.
    let mut asked = s
        .watch(WatchRequest::new(KeyRange::key(b("/asked")), 0))
        .await?;
    asked.request_progress();
    match next(&mut asked).await? {
        WatchMessage::Progress { revision } => assert!(revision >= current),
        other => bail!("expected requested progress, got {other:?}"),
    }

    // Dropping watches cancels them in etcd.
    let watching = watcher_count(&etcd)?;
    assert!(watching >= 5, "etcd reports {watching} watchers");
    drop((live, replay, later, idle, asked));
    let deadline = std::time::Instant::now() + WAIT;
    while watcher_count(&etcd)? != 0 {
        if std::time::Instant::now() > deadline {
            bail!("etcd still has {} watchers", watcher_count(&etcd)?);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// etcd's gauge of registered watchers.
fn watcher_count(etcd: &EtcdProcess) -> anyhow::Result<u64> {
    let metrics = etcd.http_get("/metrics")?;
    let line = metrics
        .lines()
        .find(|l| l.starts_with("etcd_debugging_mvcc_watcher_total "))
        .context("no etcd_debugging_mvcc_watcher_total in /metrics")?;
    let value = line.split_whitespace().nth(1).context("metric value")?;
    Ok(value.parse::<f64>()? as u64)
}

#[tokio::test]
async fn compaction_makes_old_revisions_unreadable() -> anyhow::Result<()> {
    let (_etcd, s) = start().await?;
    assert_eq!(s.compacted_revision().await?, 0);
    let v1 = s.put(b("/c"), b("1")).await?;
    let v2 = s.put(b("/c"), b("2")).await?;
    let v3 = s.put(b("/c"), b("3")).await?;

    s.compact(v2.mod_revision).await?;
    assert_eq!(s.compacted_revision().await?, v2.mod_revision);

    match s.get(b("/c"), v1.mod_revision).await {
        Err(StoreError::Compacted {
            requested,
            compacted,
        }) => {
            assert_eq!(requested, v1.mod_revision);
            assert_eq!(compacted, v2.mod_revision);
        }
        other => bail!("read below the compacted revision: {other:?}"),
    }
    // At the compacted revision itself, reads still work.
    assert_eq!(s.get(b("/c"), v2.mod_revision).await?, Some(v2.clone()));

    let mut w = s
        .watch(WatchRequest::new(KeyRange::key(b("/c")), v1.mod_revision))
        .await?;
    match tokio::time::timeout(WAIT, w.next()).await? {
        Some(Err(StoreError::Compacted {
            requested,
            compacted,
        })) => {
            assert_eq!(requested, v1.mod_revision);
            assert_eq!(compacted, v2.mod_revision);
        }
        other => bail!("watch below the compacted revision: {other:?}"),
    }
    assert!(tokio::time::timeout(WAIT, w.next()).await?.is_none());

    match s.compact(v1.mod_revision).await {
        Err(StoreError::Compacted { compacted, .. }) => assert_eq!(compacted, v2.mod_revision),
        other => bail!("compaction below the compacted revision: {other:?}"),
    }
    match s.compact(v3.mod_revision + 10).await {
        Err(StoreError::FutureRevision { current, .. }) => assert_eq!(current, v3.mod_revision),
        other => bail!("compaction at a future revision: {other:?}"),
    }

    // A fresh client (no remembered value) finds the compacted revision too.
    s.put(b("/c"), b("4")).await?;
    s.compact(v3.mod_revision).await?;
    let other = EtcdStore::connect(s.endpoints()).await?;
    assert_eq!(other.compacted_revision().await?, v3.mod_revision);

    s.reclaim().await?;
    assert_eq!(s.get(b("/c"), 0).await?.map(|kv| kv.value), Some(b("4")));
    Ok(())
}

#[tokio::test]
async fn unreachable_etcd_fails_to_connect() -> anyhow::Result<()> {
    // A port that nothing listens on: bind it, then let it go.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let endpoint = format!("http://127.0.0.1:{port}");
    match tokio::time::timeout(Duration::from_secs(30), EtcdStore::connect(&[endpoint])).await {
        Ok(Err(StoreError::Backend(_))) => Ok(()),
        Ok(other) => bail!("connect to a closed port: {other:?}"),
        Err(_) => bail!("connect to a closed port hung"),
    }
}

#[tokio::test]
async fn operations_fail_promptly_when_etcd_goes_away() -> anyhow::Result<()> {
    let (mut etcd, s) = start().await?;
    let mut w = s
        .watch(WatchRequest::new(KeyRange::prefix(b("/x/")), 0))
        .await?;
    s.put(b("/x/a"), b("1")).await?;
    events(&mut w, 1).await?;
    etcd.kill()?;
    match tokio::time::timeout(WAIT, w.next()).await? {
        Some(Err(StoreError::Backend(_))) => {}
        other => bail!("watch after etcd died: {other:?}"),
    }
    assert!(tokio::time::timeout(WAIT, w.next()).await?.is_none());
    match tokio::time::timeout(WAIT, s.put(b("/x/b"), b("2"))).await? {
        Err(StoreError::Backend(_)) => {}
        other => bail!("put after etcd died: {other:?}"),
    }
    Ok(())
}
