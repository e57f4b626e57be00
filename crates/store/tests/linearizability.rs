//! Compare-and-swap under contention, on both backends: 32 tasks increment 4 shared counters
//! (get, then update with the expected `mod_revision`, retrying on conflict). No increment may
//! be lost or applied twice, and a watch started before the run must see the whole history:
//! every revision exactly once, in order, without gaps, each event's previous value being the
//! counter's previous value.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use bytes::Bytes;
use rudder_store::embedded::{Embedded, EmbeddedOptions};
use rudder_store::etcd::EtcdStore;
use rudder_store::{
    EventKind, KeyRange, KeyValue, RangeRequest, Revision, Store, StoreError, WatchMessage,
    WatchRequest,
};
use rudder_testkit::EtcdProcess;

const TASKS: usize = 32;
const KEYS: usize = 4;
/// Successful increments per task.
const INCREMENTS: usize = 25;
const WAIT: Duration = Duration::from_secs(30);
const TIMEOUT: Duration = Duration::from_secs(120);

fn key(k: usize) -> Bytes {
    Bytes::from(format!("/counters/{k}"))
}

fn value(kv: &KeyValue) -> Result<u64> {
    Ok(std::str::from_utf8(&kv.value)?.parse()?)
}

/// One task: `INCREMENTS` successful increments of counter `k`. Returns what each success
/// wrote and how many conflicts it met.
async fn increment(s: Arc<dyn Store>, k: usize) -> Result<(Vec<KeyValue>, usize)> {
    let mut done = Vec::with_capacity(INCREMENTS);
    let mut conflicts = 0;
    let mut cur = s.get(key(k), 0).await?.context("counter missing")?;
    while done.len() < INCREMENTS {
        let next = value(&cur)? + 1;
        match s
            .update(key(k), Bytes::from(next.to_string()), cur.mod_revision)
            .await
        {
            Ok(kv) => {
                ensure!(kv.version as u64 == next + 1, "{kv:?} after {cur:?}");
                ensure!(kv.mod_revision > cur.mod_revision);
                done.push(kv.clone());
                cur = kv;
            }
            Err(StoreError::Conflict {
                current, expected, ..
            }) => {
                conflicts += 1;
                ensure!(expected == cur.mod_revision);
                let current = current.context("a conflict on a counter that exists")?;
                ensure!(
                    current.mod_revision > cur.mod_revision,
                    "conflict with an older version: {current:?} vs {cur:?}"
                );
                // Every other conflict, read again instead of using the carried value.
                cur = if conflicts % 2 == 0 {
                    current
                } else {
                    s.get(key(k), 0).await?.context("counter missing")?
                };
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok((done, conflicts))
}

async fn counters(s: Arc<dyn Store>) -> Result<()> {
    for k in 0..KEYS {
        s.create(key(k), Bytes::from_static(b"0")).await?;
    }
    let start = s.current_revision().await?;
    let mut watch = s
        .watch(WatchRequest::new(KeyRange::prefix("/counters/"), start + 1))
        .await?;

    // A reader alongside: reads at the current revision never go back in time.
    let stop = Arc::new(tokio::sync::Notify::new());
    let reader = {
        let s = s.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut last_rev = 0;
            let mut last = [0u64; KEYS];
            let mut reads = 0;
            loop {
                let resp = s
                    .range(RangeRequest::new(KeyRange::prefix("/counters/")))
                    .await?;
                ensure!(resp.revision >= last_rev, "read went back in revision");
                last_rev = resp.revision;
                ensure!(resp.kvs.len() == KEYS);
                for (k, kv) in resp.kvs.iter().enumerate() {
                    let v = value(kv)?;
                    ensure!(
                        v >= last[k],
                        "counter {k} went back from {} to {v}",
                        last[k]
                    );
                    ensure!(kv.mod_revision <= resp.revision);
                    last[k] = v;
                }
                reads += 1;
                tokio::select! {
                    _ = stop.notified() => return Ok::<_, anyhow::Error>(reads),
                    _ = tokio::task::yield_now() => {}
                }
            }
        })
    };

    let tasks: Vec<_> = (0..TASKS)
        .map(|t| tokio::spawn(increment(s.clone(), t % KEYS)))
        .collect();
    let mut writes: Vec<KeyValue> = Vec::new();
    let mut conflicts = 0;
    for t in tasks {
        let (done, c) = t.await??;
        writes.extend(done);
        conflicts += c;
    }
    stop.notify_one();
    let reads = reader.await??;
    ensure!(reads > 0);

    // Every increment counted once: each counter equals its number of successful CAS.
    let total = TASKS * INCREMENTS;
    let per_key = (TASKS / KEYS * INCREMENTS) as u64;
    for k in 0..KEYS {
        let kv = s.get(key(k), 0).await?.context("counter")?;
        let successes = writes.iter().filter(|w| w.key == key(k)).count() as u64;
        assert_eq!(successes, per_key);
        assert_eq!(value(&kv)?, successes, "counter {k}");
        assert_eq!(kv.version as u64, successes + 1);
    }
    // One revision per successful write, none for the conflicts.
    let end = s.current_revision().await?;
    assert_eq!(end, start + total as Revision, "{conflicts} conflicts");
    // In revision order, each counter's values are 1, 2, 3, …: the CAS are linearizable.
    writes.sort_by_key(|kv| kv.mod_revision);
    let revs: Vec<Revision> = writes.iter().map(|kv| kv.mod_revision).collect();
    assert_eq!(revs, (start + 1..=end).collect::<Vec<_>>());
    let mut expect: HashMap<Bytes, u64> = HashMap::new();
    for kv in &writes {
        let n = expect.entry(kv.key.clone()).or_insert(0);
        *n += 1;
        assert_eq!(value(kv)?, *n, "{kv:?}");
    }

    // The watch saw all of it: every revision once, in order, no gaps, prev = value - 1.
    let mut events = Vec::with_capacity(total);
    while events.len() < total {
        match tokio::time::timeout(WAIT, watch.next()).await {
            Err(_) => bail!("watch stalled after {} of {total} events", events.len()),
            Ok(None) => bail!("watch ended after {} of {total} events", events.len()),
            Ok(Some(msg)) => match msg? {
                WatchMessage::Events { events: e, .. } => events.extend(e),
                WatchMessage::Progress { .. } => {}
            },
        }
    }
    assert_eq!(events.len(), total, "more events than writes");
    let mut last: HashMap<Bytes, KeyValue> = HashMap::new();
    for (i, (e, w)) in events.iter().zip(&writes).enumerate() {
        assert_eq!(e.kind, EventKind::Put);
        assert_eq!(
            e.kv.mod_revision,
            start + 1 + i as Revision,
            "gap or reorder"
        );
        assert_eq!(&e.kv, w);
        let prev = e.prev.as_ref().context("an increment without prev")?;
        assert_eq!(value(prev)? + 1, value(&e.kv)?);
        match last.insert(e.kv.key.clone(), e.kv.clone()) {
            Some(before) => assert_eq!(prev, &before),
            None => assert_eq!((value(prev)?, prev.version), (0, 1)),
        }
    }
    // And nothing more: the next message is a progress notification at the end.
    watch.request_progress();
    loop {
        match tokio::time::timeout(WAIT, watch.next()).await? {
            Some(Ok(WatchMessage::Progress { revision })) if revision >= end => break,
            Some(Ok(WatchMessage::Progress { .. })) => {}
            other => bail!("after the last event: {other:?}"),
        }
    }
    Ok(())
}

mod embedded {
    use super::*;

    #[tokio::test(flavor = "multi_thread")]
    async fn cas_counters() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let mut opts = EmbeddedOptions::new(dir.path());
        opts.segment_size = 256 << 10;
        let store: Arc<dyn Store> = Arc::new(Embedded::open(opts)?);
        tokio::time::timeout(TIMEOUT, counters(store)).await?
    }
}

mod etcd {
    use super::*;

    #[tokio::test(flavor = "multi_thread")]
    async fn cas_counters() -> Result<()> {
        let etcd = tokio::task::spawn_blocking(EtcdProcess::start).await??;
        let store: Arc<dyn Store> = Arc::new(EtcdStore::connect(&[etcd.endpoint()]).await?);
        tokio::time::timeout(TIMEOUT, counters(store)).await?
    }
}
