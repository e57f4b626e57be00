//! The store contract (`rudder_store::Store` and its documentation), checked on both backends.
//!
//! Every case is an `async fn case(store: Arc<dyn Store>) -> Result<()>`; the `contract!` macro
//! turns each into two tests, `embedded::case` (a fresh `Embedded` in a temporary directory,
//! with 256 KiB segments so that segment roll-over is exercised, and a short progress interval)
//! and `etcd::case` (its own fresh etcd from `rudder_testkit::EtcdProcess`). etcd is the
//! reference: where the backends disagree, etcd's behaviour is what the contract means.
//!
//! A fresh etcd is at revision 1 and a fresh embedded store at revision 0, so every case works
//! with revisions relative to the one it starts at, and asserts them exactly.
//!
//! A second, smaller section at the end holds what only the embedded store has (reopening,
//! checkpoints, disk space) and the snapshot module, including restores across backends.
//!
//! No case relies on timing: waits are bounded only so that a broken backend fails the test
//! instead of hanging it.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use rudder_store::embedded::{Embedded, EmbeddedOptions};
use rudder_store::etcd::EtcdStore;
use rudder_store::{
    prefix_end, snapshot, Event, EventKind, KeyRange, KeyValue, RangeRequest, RangeResponse,
    Revision, Store, StoreError, Watch, WatchMessage, WatchRequest, MAX_WRITE_BYTES,
};
use rudder_testkit::EtcdProcess;

// ---------------------------------------------------------------------------------------------
// Fixtures.

/// Small segments, so that the cases roll the embedded log over many times.
const SEGMENT_SIZE: u64 = 256 << 10;
/// How often an idle embedded watch with `progress_notify` reports (the test etcd: 1 s).
const PROGRESS_INTERVAL: Duration = Duration::from_millis(200);
/// Upper bound of any single wait (a watch message, a whole case): only there to turn a hang
/// into a failure.
const WAIT: Duration = Duration::from_secs(30);
const CASE_TIMEOUT: Duration = Duration::from_secs(120);

fn embedded_options(dir: &Path) -> EmbeddedOptions {
    let mut opts = EmbeddedOptions::new(dir);
    opts.segment_size = SEGMENT_SIZE;
    opts.progress_interval = PROGRESS_INTERVAL;
    opts
}

/// What keeps a store's backing alive: its directory or its etcd. Dropped after the store.
enum Backing {
    Dir(#[allow(dead_code)] tempfile::TempDir),
    Etcd(#[allow(dead_code)] EtcdProcess),
}

struct Fixture {
    store: Arc<dyn Store>,
    _backing: Backing,
}

impl Fixture {
    fn embedded() -> Result<Fixture> {
        let (store, dir) = open_embedded()?;
        Ok(Fixture {
            store,
            _backing: Backing::Dir(dir),
        })
    }

    async fn etcd() -> Result<Fixture> {
        let (store, etcd) = start_etcd().await?;
        Ok(Fixture {
            store,
            _backing: Backing::Etcd(etcd),
        })
    }
}

fn open_embedded() -> Result<(Arc<Embedded>, tempfile::TempDir)> {
    let dir = tempfile::tempdir()?;
    let store = Embedded::open(embedded_options(dir.path()))?;
    Ok((Arc::new(store), dir))
}

/// A fresh etcd. The test etcd runs with `--max-request-bytes` of 10 MiB (see
/// `EtcdProcess`): etcd's limit applies to the whole gRPC request, so with its default of
/// 1.5 MiB a write of exactly `MAX_WRITE_BYTES` of key and value (which the contract accepts)
/// would be refused because of the transaction's own overhead.
async fn start_etcd() -> Result<(Arc<EtcdStore>, EtcdProcess)> {
    let etcd = tokio::task::spawn_blocking(EtcdProcess::start).await??;
    let store = EtcdStore::connect(&[etcd.endpoint()]).await?;
    Ok((Arc::new(store), etcd))
}

async fn run(name: &str, case: impl Future<Output = Result<()>>) -> Result<()> {
    tokio::time::timeout(CASE_TIMEOUT, case)
        .await
        .with_context(|| format!("case {name} did not finish within {CASE_TIMEOUT:?}"))?
}

/// Expands every case into `embedded::case` and `etcd::case`.
macro_rules! contract {
    ($($case:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $case() -> anyhow::Result<()> {
                    let fixture = super::Fixture::embedded()?;
                    super::run(stringify!($case), super::$case(fixture.store.clone())).await
                }
            )*
        }
        mod etcd {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $case() -> anyhow::Result<()> {
                    let fixture = super::Fixture::etcd().await?;
                    super::run(stringify!($case), super::$case(fixture.store.clone())).await
                }
            )*
        }
    };
}

contract!(
    create_and_already_exists,
    update_compare_and_swap,
    put_creates_and_overwrites,
    delete_with_and_without_expected_revision,
    recreate_after_delete,
    version_counting,
    revision_advances_only_on_successful_writes,
    invalid_requests,
    write_size_limit,
    reads_at_older_revisions,
    range_shapes,
    thousands_of_keys_with_limit_and_continue,
    watch_from_a_past_revision,
    watch_from_zero_sees_only_new_events,
    watch_single_key_and_prefix,
    watch_delete_events,
    watch_concurrent_writers_exactly_once_in_order,
    watch_started_in_the_past_while_writes_continue,
    watch_request_progress,
    watch_progress_notify,
    watch_at_compacted_revision,
    watch_that_falls_behind_and_catches_up,
    dropping_a_watch_does_not_disturb_others,
    watch_from_a_future_revision_waits,
    compaction,
);

// ---------------------------------------------------------------------------------------------
// Helpers.

fn b(s: impl AsRef<[u8]>) -> Bytes {
    Bytes::copy_from_slice(s.as_ref())
}

fn kv(key: &str, value: &str, create: Revision, modified: Revision, version: i64) -> KeyValue {
    KeyValue {
        key: b(key),
        value: b(value),
        create_revision: create,
        mod_revision: modified,
        version,
    }
}

fn put_event(kv: &KeyValue, prev: Option<&KeyValue>) -> Event {
    Event {
        kind: EventKind::Put,
        kv: kv.clone(),
        prev: prev.cloned(),
    }
}

/// A delete as the contract reports it: the key, no value, `mod_revision` = the delete's
/// revision, `create_revision` and `version` 0.
fn delete_event(key: &str, rev: Revision, prev: &KeyValue) -> Event {
    Event {
        kind: EventKind::Delete,
        kv: KeyValue {
            key: b(key),
            value: Bytes::new(),
            create_revision: 0,
            mod_revision: rev,
            version: 0,
        },
        prev: Some(prev.clone()),
    }
}

/// Fails with the expression and what it returned unless it is the given error.
macro_rules! expect_err {
    ($e:expr, $pat:pat => $body:expr) => {
        match $e {
            Err($pat) => $body,
            other => panic!(
                "{}: expected {}, got {:?}",
                stringify!($e),
                stringify!($pat),
                other
            ),
        }
    };
    ($e:expr, $pat:pat) => {
        expect_err!($e, $pat => ())
    };
}

async fn range(s: &Arc<dyn Store>, range: KeyRange, rev: Revision) -> Result<RangeResponse> {
    Ok(s.range(RangeRequest::new(range).at(rev)).await?)
}

fn keys(resp: &RangeResponse) -> Vec<String> {
    resp.kvs
        .iter()
        .map(|kv| String::from_utf8_lossy(&kv.key).into_owned())
        .collect()
}

/// Every key in the store.
fn everything() -> KeyRange {
    KeyRange::between(Bytes::new(), Bytes::new())
}

/// Puts every `(key, value)` with up to `concurrency` writes in flight; the results in the
/// order the writes were given.
async fn put_all(
    s: &Arc<dyn Store>,
    items: Vec<(Bytes, Bytes)>,
    concurrency: usize,
) -> Result<Vec<KeyValue>> {
    let out: Vec<KeyValue> = futures::stream::iter(items)
        .map(|(k, v)| {
            let s = s.clone();
            async move { s.put(k, v).await }
        })
        .buffered(concurrency)
        .try_collect()
        .await?;
    Ok(out)
}

async fn next_msg(w: &mut Watch) -> Result<WatchMessage> {
    match tokio::time::timeout(WAIT, w.next()).await {
        Err(_) => bail!("no watch message within {WAIT:?}"),
        Ok(None) => bail!("the watch ended"),
        Ok(Some(msg)) => Ok(msg?),
    }
}

/// Exactly `n` events (progress notifications skipped); more in the last message is an error.
async fn next_events(w: &mut Watch, n: usize) -> Result<Vec<Event>> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        match next_msg(w).await? {
            WatchMessage::Events { revision, events } => {
                ensure!(!events.is_empty(), "a watch message without events");
                for e in &events {
                    ensure!(
                        e.kv.mod_revision <= revision,
                        "event at {} in a message sent at revision {revision}",
                        e.kv.mod_revision
                    );
                }
                out.extend(events);
            }
            WatchMessage::Progress { .. } => {}
        }
    }
    ensure!(
        out.len() == n,
        "expected {n} events, got {}: extra {:?}",
        out.len(),
        &out[n..]
    );
    Ok(out)
}

/// Asks for progress and checks that no event arrives before a progress notification at
/// `upto` or later: the watch has delivered everything and nothing twice.
async fn expect_no_more_events(w: &mut Watch, upto: Revision) -> Result<Revision> {
    w.request_progress();
    loop {
        match next_msg(w).await? {
            WatchMessage::Events { events, .. } => bail!("unexpected events {events:?}"),
            WatchMessage::Progress { revision } if revision >= upto => return Ok(revision),
            // An earlier periodic notification; the requested one follows.
            WatchMessage::Progress { .. } => {}
        }
    }
}

/// Checks a watch's events against the writes that produced them: the same versions, in
/// revision order, each exactly once, each with the previous version of its key as `prev`.
fn check_events_match_puts(events: &[Event], mut puts: Vec<KeyValue>) -> Result<()> {
    puts.sort_by_key(|kv| kv.mod_revision);
    ensure!(
        events.len() == puts.len(),
        "{} events for {} writes",
        events.len(),
        puts.len()
    );
    let mut last: HashMap<Bytes, KeyValue> = HashMap::new();
    for (i, (e, put)) in events.iter().zip(&puts).enumerate() {
        ensure!(
            e.kind == EventKind::Put && &e.kv == put,
            "event {i} is {e:?}, the write at that revision was {put:?}"
        );
        let prev = last.insert(put.key.clone(), put.clone());
        if e.prev != prev {
            bail!(
                "event {i} ({:?}) has prev {:?}, expected {prev:?}",
                e.kv,
                e.prev
            );
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Writes.

async fn create_and_already_exists(s: Arc<dyn Store>) -> Result<()> {
    let r0 = s.current_revision().await?;
    let created = s.create(b("/c/a"), b("v1")).await?;
    assert_eq!(created, kv("/c/a", "v1", r0 + 1, r0 + 1, 1));
    assert_eq!(s.current_revision().await?, r0 + 1);
    assert_eq!(s.get(b("/c/a"), 0).await?, Some(created.clone()));

    expect_err!(s.create(b("/c/a"), b("v2")).await,
        StoreError::AlreadyExists { current } => assert_eq!(current, created));
    assert_eq!(
        s.current_revision().await?,
        r0 + 1,
        "a failed create writes nothing"
    );
    assert_eq!(s.get(b("/c/a"), 0).await?, Some(created.clone()));

    // The error carries the newest version.
    let updated = s.update(b("/c/a"), b("v3"), created.mod_revision).await?;
    expect_err!(s.create(b("/c/a"), b("v4")).await,
        StoreError::AlreadyExists { current } => assert_eq!(current, updated));

    // Another key is independent; an empty value is a value.
    let other = s.create(b("/c/b"), Bytes::new()).await?;
    assert_eq!(other, kv("/c/b", "", r0 + 3, r0 + 3, 1));
    expect_err!(s.create(b("/c/b"), b("x")).await,
        StoreError::AlreadyExists { current } => assert_eq!(current, other));
    assert_eq!(s.current_revision().await?, r0 + 3);
    Ok(())
}

async fn update_compare_and_swap(s: Arc<dyn Store>) -> Result<()> {
    let r0 = s.current_revision().await?;
    let c = s.create(b("/u/k"), b("v1")).await?;
    let u = s.update(b("/u/k"), b("v2"), c.mod_revision).await?;
    assert_eq!(u, kv("/u/k", "v2", r0 + 1, r0 + 2, 2));
    assert_eq!(s.get(b("/u/k"), 0).await?, Some(u.clone()));

    // A stale, a never-seen and the zero revision: conflicts carrying the current value.
    for expected in [c.mod_revision, r0 + 99, 0] {
        expect_err!(s.update(b("/u/k"), b("v3"), expected).await,
        StoreError::Conflict { key, expected: e, current } => {
            assert_eq!(key, b("/u/k"));
            assert_eq!(e, expected);
            assert_eq!(current, Some(u.clone()));
        });
    }
    assert_eq!(
        s.current_revision().await?,
        r0 + 2,
        "failed CAS writes nothing"
    );
    assert_eq!(s.get(b("/u/k"), 0).await?, Some(u.clone()));

    // A key that never existed: a conflict with no current value, and nothing is created.
    for expected in [1, 0] {
        expect_err!(s.update(b("/u/missing"), b("x"), expected).await,
        StoreError::Conflict { key, expected: e, current } => {
            assert_eq!(key, b("/u/missing"));
            assert_eq!(e, expected);
            assert_eq!(current, None);
        });
    }
    assert_eq!(s.get(b("/u/missing"), 0).await?, None);

    // CAS on a deleted key: the revision it had, or the delete's, both conflict with no key.
    let (_, del_rev) = s.delete(b("/u/k"), None).await?;
    assert_eq!(del_rev, r0 + 3);
    for expected in [u.mod_revision, del_rev] {
        expect_err!(s.update(b("/u/k"), b("v4"), expected).await,
        StoreError::Conflict { key, expected: e, current } => {
            assert_eq!(key, b("/u/k"));
            assert_eq!(e, expected);
            assert_eq!(current, None);
        });
    }
    assert_eq!(s.get(b("/u/k"), 0).await?, None);
    assert_eq!(s.current_revision().await?, r0 + 3);

    // A successful CAS chain: each update expects the previous one's revision.
    let mut cur = s.create(b("/u/chain"), b("0")).await?;
    for i in 1..=5 {
        let next = s
            .update(b("/u/chain"), b(i.to_string()), cur.mod_revision)
            .await?;
        assert_eq!(
            next,
            kv("/u/chain", &i.to_string(), r0 + 4, r0 + 4 + i, 1 + i)
        );
        cur = next;
    }
    assert_eq!(s.current_revision().await?, r0 + 9);
    Ok(())
}

async fn put_creates_and_overwrites(s: Arc<dyn Store>) -> Result<()> {
    let r0 = s.current_revision().await?;
    let p1 = s.put(b("/p/k"), b("a")).await?;
    assert_eq!(p1, kv("/p/k", "a", r0 + 1, r0 + 1, 1));
    let p2 = s.put(b("/p/k"), b("b")).await?;
    assert_eq!(p2, kv("/p/k", "b", r0 + 1, r0 + 2, 2));
    // Putting the same value again is still a write.
    let p3 = s.put(b("/p/k"), b("b")).await?;
    assert_eq!(p3, kv("/p/k", "b", r0 + 1, r0 + 3, 3));
    let p4 = s.put(b("/p/k"), Bytes::new()).await?;
    assert_eq!(p4, kv("/p/k", "", r0 + 1, r0 + 4, 4));
    assert_eq!(s.get(b("/p/k"), 0).await?, Some(p4));
    assert_eq!(s.get(b("/p/k"), r0 + 2).await?, Some(p2));

    // put after delete starts a new incarnation.
    s.delete(b("/p/k"), None).await?;
    let p6 = s.put(b("/p/k"), b("c")).await?;
    assert_eq!(p6, kv("/p/k", "c", r0 + 6, r0 + 6, 1));
    // A put then accepts a CAS at its revision, and create sees it.
    let u = s.update(b("/p/k"), b("d"), p6.mod_revision).await?;
    assert_eq!(u, kv("/p/k", "d", r0 + 6, r0 + 7, 2));
    expect_err!(s.create(b("/p/k"), b("e")).await,
        StoreError::AlreadyExists { current } => assert_eq!(current, u));
    assert_eq!(s.current_revision().await?, r0 + 7);
    Ok(())
}

async fn delete_with_and_without_expected_revision(s: Arc<dyn Store>) -> Result<()> {
    let r0 = s.current_revision().await?;
    let a = s.create(b("/d/a"), b("1")).await?;
    let (deleted, rev) = s.delete(b("/d/a"), None).await?;
    assert_eq!(deleted, a);
    assert_eq!(rev, r0 + 2);
    assert_eq!(s.current_revision().await?, r0 + 2);
    assert_eq!(s.get(b("/d/a"), 0).await?, None);
    assert_eq!(s.get(b("/d/a"), r0 + 1).await?, Some(a.clone()));

    expect_err!(s.delete(b("/d/a"), None).await,
        StoreError::NotFound { key } => assert_eq!(key, b("/d/a")));
    expect_err!(s.delete(b("/d/never"), None).await,
        StoreError::NotFound { key } => assert_eq!(key, b("/d/never")));
    // With an expected revision a missing key is a conflict with no current value.
    expect_err!(s.delete(b("/d/a"), Some(a.mod_revision)).await,
    StoreError::Conflict { key, expected, current } => {
        assert_eq!(key, b("/d/a"));
        assert_eq!(expected, a.mod_revision);
        assert_eq!(current, None);
    });
    assert_eq!(
        s.current_revision().await?,
        r0 + 2,
        "failed deletes write nothing"
    );

    let c = s.create(b("/d/b"), b("1")).await?;
    let u = s.update(b("/d/b"), b("2"), c.mod_revision).await?;
    for expected in [c.mod_revision, 0, u.mod_revision + 1] {
        expect_err!(s.delete(b("/d/b"), Some(expected)).await,
        StoreError::Conflict { key, expected: e, current } => {
            assert_eq!(key, b("/d/b"));
            assert_eq!(e, expected);
            assert_eq!(current, Some(u.clone()));
        });
    }
    assert_eq!(s.get(b("/d/b"), 0).await?, Some(u.clone()));
    let (deleted, rev) = s.delete(b("/d/b"), Some(u.mod_revision)).await?;
    assert_eq!(deleted, u);
    assert_eq!(rev, r0 + 5);
    assert_eq!(s.current_revision().await?, r0 + 5);
    assert_eq!(s.get(b("/d/b"), 0).await?, None);
    assert_eq!(s.get(b("/d/b"), r0 + 4).await?, Some(u));
    assert_eq!(s.count(KeyRange::prefix(b("/d/"))).await?, 0);
    Ok(())
}

async fn recreate_after_delete(s: Arc<dyn Store>) -> Result<()> {
    let r0 = s.current_revision().await?;
    let v1 = s.create(b("/rc/k"), b("1")).await?;
    let v2 = s.update(b("/rc/k"), b("2"), v1.mod_revision).await?;
    let v3 = s.update(b("/rc/k"), b("3"), v2.mod_revision).await?;
    let (_, del) = s.delete(b("/rc/k"), Some(v3.mod_revision)).await?;
    assert_eq!(del, r0 + 4);
    let n1 = s.create(b("/rc/k"), b("new")).await?;
    assert_eq!(n1, kv("/rc/k", "new", r0 + 5, r0 + 5, 1));
    let n2 = s.update(b("/rc/k"), b("new2"), n1.mod_revision).await?;
    assert_eq!(n2, kv("/rc/k", "new2", r0 + 5, r0 + 6, 2));

    // History keeps both incarnations apart.
    assert_eq!(s.get(b("/rc/k"), r0 + 3).await?, Some(v3.clone()));
    assert_eq!(s.get(b("/rc/k"), r0 + 4).await?, None);
    assert_eq!(s.get(b("/rc/k"), r0 + 5).await?, Some(n1.clone()));
    // A CAS with the old incarnation's revision fails.
    expect_err!(s.update(b("/rc/k"), b("x"), v3.mod_revision).await,
        StoreError::Conflict { current, .. } => assert_eq!(current, Some(n2.clone())));

    // The watch history: the re-creating put has no previous value.
    let mut w = s
        .watch(WatchRequest::new(KeyRange::key(b("/rc/k")), r0 + 1))
        .await?;
    let events = next_events(&mut w, 6).await?;
    assert_eq!(
        events,
        vec![
            put_event(&v1, None),
            put_event(&v2, Some(&v1)),
            put_event(&v3, Some(&v2)),
            delete_event("/rc/k", del, &v3),
            put_event(&n1, None),
            put_event(&n2, Some(&n1)),
        ]
    );
    Ok(())
}

async fn version_counting(s: Arc<dyn Store>) -> Result<()> {
    let r0 = s.current_revision().await?;
    for i in 1..=10 {
        let p = s.put(b("/v/k"), b(format!("{i}"))).await?;
        assert_eq!(p, kv("/v/k", &format!("{i}"), r0 + 1, r0 + i, i));
        assert_eq!(s.current_revision().await?, r0 + i);
    }
    let u = s.update(b("/v/k"), b("u"), r0 + 10).await?;
    assert_eq!(u.version, 11);
    // Writes to other keys advance the revision, not this key's version.
    s.put(b("/v/other"), b("x")).await?;
    let u2 = s.update(b("/v/k"), b("u2"), u.mod_revision).await?;
    assert_eq!(u2, kv("/v/k", "u2", r0 + 1, r0 + 13, 12));
    s.delete(b("/v/k"), None).await?;
    let again = s.put(b("/v/k"), b("again")).await?;
    assert_eq!(again, kv("/v/k", "again", r0 + 15, r0 + 15, 1));
    // Versions at older revisions are the versions of then.
    for i in 1..=10 {
        let old = s.get(b("/v/k"), r0 + i).await?.context("old version")?;
        assert_eq!(old.version, i);
    }
    Ok(())
}

async fn revision_advances_only_on_successful_writes(s: Arc<dyn Store>) -> Result<()> {
    let start = s.current_revision().await?;
    let mut expected = start;
    macro_rules! step {
        ($op:expr, ok) => {{
            let r = $op;
            assert!(r.is_ok(), "{}: {:?}", stringify!($op), r);
            expected += 1;
            assert_eq!(s.current_revision().await?, expected, "{}", stringify!($op));
        }};
        ($op:expr, err) => {{
            let r = $op;
            assert!(r.is_err(), "{}: {:?}", stringify!($op), r);
            assert_eq!(s.current_revision().await?, expected, "{}", stringify!($op));
        }};
        ($op:expr, not_a_write) => {{
            $op?;
            assert_eq!(s.current_revision().await?, expected, "{}", stringify!($op));
        }};
    }
    step!(s.create(b("/n/a"), b("1")).await, ok);
    step!(s.create(b("/n/a"), b("1")).await, err);
    step!(s.update(b("/n/a"), b("2"), start + 1).await, ok);
    step!(s.update(b("/n/a"), b("3"), start + 1).await, err);
    step!(s.put(b("/n/b"), b("1")).await, ok);
    step!(s.put(b("/n/b"), b("2")).await, ok);
    step!(s.delete(b("/n/c"), None).await, err);
    step!(s.delete(b("/n/b"), Some(start + 3)).await, err);
    step!(s.delete(b("/n/b"), Some(start + 4)).await, ok);
    step!(s.delete(b("/n/b"), None).await, err);
    step!(s.put(Bytes::new(), b("x")).await, err);
    step!(
        s.put(b("k"), Bytes::from(vec![0; MAX_WRITE_BYTES])).await,
        err
    );
    // Reads, watches and compaction are not writes.
    step!(s.get(b("/n/a"), 0).await, not_a_write);
    step!(s.compact(start + 1).await, not_a_write);
    let w = s
        .watch(WatchRequest::new(KeyRange::prefix(b("/n/")), 0))
        .await?;
    drop(w);
    assert_eq!(s.current_revision().await?, expected);
    assert_eq!(expected, start + 5);
    Ok(())
}

async fn invalid_requests(s: Arc<dyn Store>) -> Result<()> {
    s.put(b("/i/k"), b("v")).await?;
    let r0 = s.current_revision().await?;
    let empty = Bytes::new;
    expect_err!(s.create(empty(), b("v")).await, StoreError::Invalid(_));
    expect_err!(s.put(empty(), b("v")).await, StoreError::Invalid(_));
    expect_err!(s.update(empty(), b("v"), r0).await, StoreError::Invalid(_));
    expect_err!(s.delete(empty(), None).await, StoreError::Invalid(_));
    expect_err!(s.delete(empty(), Some(r0)).await, StoreError::Invalid(_));
    expect_err!(s.get(empty(), 0).await, StoreError::Invalid(_));
    expect_err!(
        s.range(RangeRequest::new(KeyRange::key(empty()))).await,
        StoreError::Invalid(_)
    );
    expect_err!(
        s.watch(WatchRequest::new(KeyRange::key(empty()), 0))
            .await
            .map(|_| ()),
        StoreError::Invalid(_)
    );
    // Negative revisions.
    expect_err!(s.get(b("/i/k"), -1).await, StoreError::Invalid(_));
    expect_err!(
        s.watch(WatchRequest::new(KeyRange::prefix(b("/i/")), -1))
            .await
            .map(|_| ()),
        StoreError::Invalid(_)
    );
    expect_err!(
        s.update(b("/i/k"), b("v"), -1).await,
        StoreError::Invalid(_)
    );
    expect_err!(s.delete(b("/i/k"), Some(-1)).await, StoreError::Invalid(_));
    // Compaction needs a real revision.
    expect_err!(s.compact(-1).await, StoreError::Invalid(_));
    expect_err!(s.compact(0).await, StoreError::Invalid(_));
    assert_eq!(s.compacted_revision().await?, 0);
    assert_eq!(s.current_revision().await?, r0);
    assert_eq!(s.get(b("/i/k"), 0).await?.map(|kv| kv.value), Some(b("v")));
    Ok(())
}

async fn write_size_limit(s: Arc<dyn Store>) -> Result<()> {
    let r0 = s.current_revision().await?;
    let too_big = Bytes::from(vec![b'x'; MAX_WRITE_BYTES]);
    let check = |r: rudder_store::Result<KeyValue>| {
        expect_err!(r, StoreError::TooLarge { size, limit } => {
            assert_eq!(size, MAX_WRITE_BYTES + 1);
            assert_eq!(limit, MAX_WRITE_BYTES);
        })
    };
    check(s.put(b("k"), too_big.clone()).await);
    check(s.create(b("k"), too_big.clone()).await);
    check(s.update(b("k"), too_big.clone(), r0).await);
    let huge_key = Bytes::from(vec![b'k'; MAX_WRITE_BYTES + 1]);
    expect_err!(s.delete(huge_key, None).await,
    StoreError::TooLarge { size, limit } => {
        assert_eq!(size, MAX_WRITE_BYTES + 1);
        assert_eq!(limit, MAX_WRITE_BYTES);
    });
    assert_eq!(s.current_revision().await?, r0);

    // Exactly at the limit is accepted, stored and read back whole, by every write.
    let at_limit = too_big.slice(1..);
    let created = s.create(b("k"), at_limit.clone()).await?;
    assert_eq!(created.value.len() + created.key.len(), MAX_WRITE_BYTES);
    let mut second = vec![b'y'; MAX_WRITE_BYTES - 1];
    second[0] = b'z';
    let second = Bytes::from(second);
    let updated = s
        .update(b("k"), second.clone(), created.mod_revision)
        .await?;
    let put = s.put(b("k"), at_limit.clone()).await?;
    assert_eq!(put.version, 3);
    let got = s.get(b("k"), 0).await?.context("the key")?;
    assert_eq!(got.value, at_limit);
    let got = s
        .get(b("k"), updated.mod_revision)
        .await?
        .context("the key")?;
    assert_eq!(got.value, second);
    // And through a watch, with the previous value.
    let mut w = s
        .watch(WatchRequest::new(KeyRange::key(b("k")), r0 + 1))
        .await?;
    let events = next_events(&mut w, 3).await?;
    assert_eq!(events[2].kv.value, at_limit);
    assert_eq!(events[2].prev.as_ref().map(|p| &p.value), Some(&second));
    assert_eq!(s.current_revision().await?, r0 + 3);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Reads.

async fn reads_at_older_revisions(s: Arc<dyn Store>) -> Result<()> {
    let r0 = s.current_revision().await?;
    let a1 = s.put(b("/o/a"), b("a1")).await?; // r0+1
    let bx = s.put(b("/o/b"), b("bx")).await?; // r0+2
    let a2 = s.put(b("/o/a"), b("a2")).await?; // r0+3
    s.delete(b("/o/a"), None).await?; // r0+4
    let by = s.put(b("/o/b"), b("by")).await?; // r0+5
    let c = s.put(b("/o/c"), b("c")).await?; // r0+6
    let now = r0 + 6;
    assert_eq!(s.current_revision().await?, now);

    // A single key at every revision, including between two of its writes.
    let want_a = [None, Some(&a1), Some(&a1), Some(&a2), None, None, None];
    for (i, want) in want_a.iter().enumerate().skip(1) {
        let rev = r0 + i as Revision;
        assert_eq!(
            s.get(b("/o/a"), rev).await?.as_ref(),
            *want,
            "/o/a at {rev}"
        );
    }
    assert_eq!(s.get(b("/o/a"), 0).await?, None);
    assert_eq!(s.get(b("/o/b"), r0 + 4).await?, Some(bx.clone()));
    assert_eq!(s.get(b("/o/c"), r0 + 5).await?, None);

    // A prefix at every revision: the set of keys, their versions, count and the read revision.
    let expect: [(Revision, Vec<&KeyValue>); 6] = [
        (r0 + 1, vec![&a1]),
        (r0 + 2, vec![&a1, &bx]),
        (r0 + 3, vec![&a2, &bx]),
        (r0 + 4, vec![&bx]),
        (r0 + 5, vec![&by]),
        (r0 + 6, vec![&by, &c]),
    ];
    for (rev, want) in &expect {
        let resp = range(&s, KeyRange::prefix(b("/o/")), *rev).await?;
        let got: Vec<&KeyValue> = resp.kvs.iter().collect();
        assert_eq!(&got, want, "/o/ at {rev}");
        assert_eq!(resp.count, want.len() as i64);
        assert!(!resp.more);
        assert_eq!(resp.next_key, None);
        assert_eq!(
            resp.revision, *rev,
            "a read at {rev} says it was served at {rev}"
        );
        let counted = s
            .range(RangeRequest {
                range: KeyRange::prefix(b("/o/")),
                revision: *rev,
                limit: 0,
                count_only: true,
            })
            .await?;
        assert_eq!(counted.count, want.len() as i64);
        assert!(counted.kvs.is_empty());
    }
    // A current read says which revision it was served at.
    let resp = range(&s, KeyRange::prefix(b("/o/")), 0).await?;
    assert_eq!(resp.revision, now);
    assert_eq!(resp.kvs, vec![by.clone(), c.clone()]);

    // A revision above the current one.
    expect_err!(s.get(b("/o/a"), now + 1).await,
    StoreError::FutureRevision { requested, current } => {
        assert_eq!(requested, now + 1);
        assert_eq!(current, now);
    });
    expect_err!(s.range(RangeRequest::new(KeyRange::prefix(b("/o/"))).at(now + 100)).await,
    StoreError::FutureRevision { requested, current } => {
        assert_eq!(requested, now + 100);
        assert_eq!(current, now);
    });
    Ok(())
}

async fn range_shapes(s: Arc<dyn Store>) -> Result<()> {
    let all = [
        "/r/a", "/r/a/1", "/r/a/2", "/r/b", "/r/c", "/r0", "/s", "a", "\u{7f}",
    ];
    for k in all {
        s.put(b(k), b(format!("value of {k}"))).await?;
    }
    // Keys are compared as bytes: 0xff sorts after everything else.
    s.put(Bytes::from_static(b"/r/\xff\xfe"), b("high")).await?;
    s.put(Bytes::from_static(b"\xff\xff"), b("top")).await?;
    let rev = s.current_revision().await?;

    let get = |r: KeyRange| {
        let s = s.clone();
        async move { range(&s, r, 0).await }
    };

    let one = get(KeyRange::key(b("/r/a"))).await?;
    assert_eq!(keys(&one), ["/r/a"]);
    assert_eq!(one.kvs[0].value, b("value of /r/a"));
    assert_eq!((one.count, one.more, one.revision), (1, false, rev));
    let none = get(KeyRange::key(b("/r/zz"))).await?;
    assert!(none.kvs.is_empty());
    assert_eq!((none.count, none.more, none.next_key), (0, false, None));

    // A prefix is a byte prefix, not a path.
    assert_eq!(
        keys(&get(KeyRange::prefix(b("/r/a"))).await?),
        ["/r/a", "/r/a/1", "/r/a/2"]
    );
    let r = get(KeyRange::prefix(b("/r/"))).await?;
    assert_eq!(
        keys(&r),
        [
            "/r/a",
            "/r/a/1",
            "/r/a/2",
            "/r/b",
            "/r/c",
            "/r/\u{fffd}\u{fffd}"
        ]
    );
    assert_eq!(r.kvs[5].key, Bytes::from_static(b"/r/\xff\xfe"));
    assert_eq!(r.count, 6);

    // [start, end): the end is excluded.
    assert_eq!(
        keys(&get(KeyRange::between(b("/r/a/1"), b("/r/c"))).await?),
        ["/r/a/1", "/r/a/2", "/r/b"]
    );
    // An empty end: to the end of the key space.
    let tail = get(KeyRange::between(b("/r/c"), Bytes::new())).await?;
    let tail_keys: Vec<Bytes> = tail.kvs.iter().map(|kv| kv.key.clone()).collect();
    let want: Vec<Bytes> = vec![
        b("/r/c"),
        Bytes::from_static(b"/r/\xff\xfe"),
        b("/r0"),
        b("/s"),
        b("a"),
        b("\u{7f}"),
        Bytes::from_static(b"\xff\xff"),
    ];
    assert_eq!(tail_keys, want);
    assert_eq!(tail.count, 7);
    // A prefix of 0xff bytes has no end: everything from it on.
    assert_eq!(prefix_end(b"\xff\xff"), Bytes::new());
    let top = get(KeyRange::prefix(Bytes::from_static(b"\xff\xff"))).await?;
    assert_eq!(top.kvs.len(), 1);
    assert_eq!(top.kvs[0].value, b("top"));
    // The whole key space, and everything below a key.
    let whole = get(everything()).await?;
    assert_eq!(whole.count, 11);
    let mut sorted = whole
        .kvs
        .iter()
        .map(|kv| kv.key.clone())
        .collect::<Vec<_>>();
    sorted.sort();
    assert_eq!(
        whole
            .kvs
            .iter()
            .map(|kv| kv.key.clone())
            .collect::<Vec<_>>(),
        sorted,
        "keys come in ascending byte order"
    );
    assert_eq!(
        keys(&get(KeyRange::between(Bytes::new(), b("/r/a/"))).await?),
        ["/r/a"]
    );
    // Empty ranges: start == end, and start after end.
    for r in [
        KeyRange::between(b("/r/b"), b("/r/b")),
        KeyRange::between(b("/r/c"), b("/r/a")),
    ] {
        let resp = get(r.clone()).await?;
        assert!(resp.kvs.is_empty(), "{r:?}");
        assert_eq!((resp.count, resp.more), (0, false), "{r:?}");
    }

    // count_only and Store::count.
    let counted = s
        .range(RangeRequest {
            range: KeyRange::prefix(b("/r/")),
            revision: 0,
            limit: 0,
            count_only: true,
        })
        .await?;
    assert!(counted.kvs.is_empty());
    assert_eq!(
        (counted.count, counted.more, counted.revision),
        (6, false, rev)
    );
    assert_eq!(s.count(KeyRange::prefix(b("/r/"))).await?, 6);
    assert_eq!(s.count(KeyRange::key(b("/s"))).await?, 1);
    assert_eq!(s.count(KeyRange::prefix(b("/none/"))).await?, 0);
    assert_eq!(s.count(everything()).await?, 11);
    Ok(())
}

async fn thousands_of_keys_with_limit_and_continue(s: Arc<dyn Store>) -> Result<()> {
    const KEYS: usize = 3000;
    const PAGE: usize = 500;
    let key = |i: usize| b(format!("/many/{i:05}"));
    let items = (0..KEYS).map(|i| (key(i), b(format!("v{i}")))).collect();
    put_all(&s, items, 32).await?;
    // Neighbours outside the prefix stay outside.
    s.put(b("/many"), b("below")).await?;
    s.put(b("/many0"), b("above")).await?;
    let rev = s.current_revision().await?;
    let prefix = KeyRange::prefix(b("/many/"));
    let end = prefix.end.clone().context("a prefix has an end")?;

    let mut seen = Vec::new();
    let mut start = prefix.start.clone();
    let mut page = 0;
    loop {
        // The first page is read at the current revision, the rest at the revision it reports,
        // while writes continue in between: new keys, overwrites and deletes in the part of
        // the prefix not read yet.
        let at = if page == 0 { 0 } else { rev };
        let resp = s
            .range(
                RangeRequest::new(KeyRange::between(start.clone(), end.clone()))
                    .at(at)
                    .limit(PAGE),
            )
            .await?;
        assert_eq!(resp.revision, rev);
        assert_eq!(
            resp.count,
            (KEYS - page * PAGE) as i64,
            "count of page {page}"
        );
        assert_eq!(resp.kvs.len(), PAGE);
        let last = resp.kvs.last().context("a page")?.key.clone();
        seen.extend(resp.kvs);
        page += 1;
        s.put(key(KEYS - page), b("overwritten")).await?;
        s.put(b(format!("/many/{:05}x", KEYS - page)), b("new"))
            .await?;
        s.delete(key(1000 + page), None).await?;
        if !resp.more {
            assert_eq!(resp.next_key, None);
            break;
        }
        let mut next = last.to_vec();
        next.push(0);
        assert_eq!(resp.next_key, Some(Bytes::from(next)));
        start = resp.next_key.context("next_key")?;
    }
    assert_eq!(page, KEYS / PAGE);
    assert_eq!(seen.len(), KEYS);
    for (i, kv) in seen.iter().enumerate() {
        assert_eq!(kv.key, key(i));
        assert_eq!(kv.value, b(format!("v{i}")));
        assert!(kv.mod_revision <= rev);
        assert_eq!(kv.version, 1);
    }
    // The writes in between did happen.
    let now = s.current_revision().await?;
    assert_eq!(now, rev + 3 * page as Revision);
    assert_eq!(s.count(prefix.clone()).await?, KEYS as i64);
    assert_eq!(
        range(&s, KeyRange::key(key(KEYS - 1)), 0).await?.kvs[0].value,
        b("overwritten")
    );

    // A limit at or above the count: no more, no next key.
    for limit in [KEYS, KEYS + 1, 10_000] {
        let resp = s
            .range(RangeRequest::new(prefix.clone()).at(rev).limit(limit))
            .await?;
        assert_eq!(
            (resp.kvs.len(), resp.more, resp.count),
            (KEYS, false, KEYS as i64)
        );
        assert_eq!(resp.next_key, None);
    }
    // A limit below it at the current revision; the count is the whole range's.
    let resp = s.range(RangeRequest::new(prefix).limit(1)).await?;
    assert_eq!(
        (resp.kvs.len(), resp.more, resp.count),
        (1, true, KEYS as i64)
    );
    assert_eq!(resp.kvs[0].key, key(0));
    assert_eq!(resp.revision, now);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Watches.

async fn watch_from_a_past_revision(s: Arc<dyn Store>) -> Result<()> {
    let r0 = s.current_revision().await?;
    let a1 = s.put(b("/w/a"), b("a1")).await?; // r0+1
    let b1 = s.put(b("/w/b"), b("b1")).await?; // r0+2
    let a2 = s.put(b("/w/a"), b("a2")).await?; // r0+3
    s.delete(b("/w/b"), None).await?; // r0+4
    s.put(b("/x"), b("outside")).await?; // r0+5
    let a3 = s.update(b("/w/a"), b("a3"), a2.mod_revision).await?; // r0+6

    let mut w = s
        .watch(WatchRequest::new(KeyRange::prefix(b("/w/")), r0 + 2))
        .await?;
    let history = next_events(&mut w, 4).await?;
    assert_eq!(
        history,
        vec![
            put_event(&b1, None),
            put_event(&a2, Some(&a1)),
            delete_event("/w/b", r0 + 4, &b1),
            put_event(&a3, Some(&a2)),
        ]
    );
    // Then live events.
    let c = s.create(b("/w/c"), b("c")).await?;
    let a4 = s.put(b("/w/a"), b("a4")).await?;
    let live = next_events(&mut w, 2).await?;
    assert_eq!(live, vec![put_event(&c, None), put_event(&a4, Some(&a3))]);
    expect_no_more_events(&mut w, a4.mod_revision).await?;

    // From the very first revision: everything.
    let mut all = s
        .watch(WatchRequest::new(KeyRange::prefix(b("/w/")), r0 + 1))
        .await?;
    let events = next_events(&mut all, 7).await?;
    assert_eq!(events[0], put_event(&a1, None));
    let revs: Vec<Revision> = events.iter().map(|e| e.kv.mod_revision).collect();
    assert_eq!(revs, [1, 2, 3, 4, 6, 7, 8].map(|i| r0 + i));
    Ok(())
}

async fn watch_from_zero_sees_only_new_events(s: Arc<dyn Store>) -> Result<()> {
    let old = s.put(b("/z/a"), b("old")).await?;
    s.put(b("/z/b"), b("old")).await?;
    let mut w = s
        .watch(WatchRequest::new(KeyRange::prefix(b("/z/")), 0))
        .await?;
    let new = s.update(b("/z/a"), b("new"), old.mod_revision).await?;
    let events = next_events(&mut w, 1).await?;
    assert_eq!(events, vec![put_event(&new, Some(&old))]);
    expect_no_more_events(&mut w, new.mod_revision).await?;
    Ok(())
}

async fn watch_single_key_and_prefix(s: Arc<dyn Store>) -> Result<()> {
    let mut key = s
        .watch(WatchRequest::new(KeyRange::key(b("/k/a")), 0))
        .await?;
    let mut prefix = s
        .watch(WatchRequest::new(KeyRange::prefix(b("/k/a")), 0))
        .await?;
    let mut dir = s
        .watch(WatchRequest::new(KeyRange::prefix(b("/k/")), 0))
        .await?;
    let mut tail = s
        .watch(WatchRequest::new(
            KeyRange::between(b("/k/b"), Bytes::new()),
            0,
        ))
        .await?;
    let ab = s.put(b("/k/ab"), b("1")).await?;
    let kb = s.put(b("/k/b"), b("1")).await?;
    let j = s.put(b("/j"), b("1")).await?;
    let a = s.put(b("/k/a"), b("1")).await?;
    let z = s.put(b("/z"), b("1")).await?;

    // The single key sees only itself: the first event it gets is the write to it.
    assert_eq!(next_events(&mut key, 1).await?, vec![put_event(&a, None)]);
    assert_eq!(
        next_events(&mut prefix, 2).await?,
        vec![put_event(&ab, None), put_event(&a, None)]
    );
    assert_eq!(
        next_events(&mut dir, 3).await?,
        vec![
            put_event(&ab, None),
            put_event(&kb, None),
            put_event(&a, None)
        ]
    );
    assert_eq!(
        next_events(&mut tail, 2).await?,
        vec![put_event(&kb, None), put_event(&z, None)]
    );
    assert!(j.mod_revision < a.mod_revision);
    for w in [&mut key, &mut prefix, &mut dir, &mut tail] {
        expect_no_more_events(w, z.mod_revision).await?;
    }
    Ok(())
}

async fn watch_delete_events(s: Arc<dyn Store>) -> Result<()> {
    let r0 = s.current_revision().await?;
    let a = s.put(b("/del/a"), b("a")).await?;
    let bb = s.put(b("/del/b"), b("b")).await?;
    let mut w = s
        .watch(WatchRequest::new(KeyRange::prefix(b("/del/")), 0))
        .await?;
    let (_, ra) = s.delete(b("/del/a"), None).await?;
    let (_, rb) = s.delete(b("/del/b"), Some(bb.mod_revision)).await?;
    assert_eq!((ra, rb), (r0 + 3, r0 + 4));
    let live = next_events(&mut w, 2).await?;
    let want = vec![
        delete_event("/del/a", ra, &a),
        delete_event("/del/b", rb, &bb),
    ];
    assert_eq!(live, want);
    // The same from history.
    let mut past = s
        .watch(WatchRequest::new(KeyRange::prefix(b("/del/")), r0 + 3))
        .await?;
    assert_eq!(next_events(&mut past, 2).await?, want);
    // A failed delete is no event.
    expect_err!(
        s.delete(b("/del/a"), None).await,
        StoreError::NotFound { .. }
    );
    let c = s.put(b("/del/a"), b("again")).await?;
    assert_eq!(next_events(&mut w, 1).await?, vec![put_event(&c, None)]);
    Ok(())
}

/// Writers on several tasks; one watch from before they started. Every write shows up once,
/// in revision order, with the right previous value.
async fn watch_concurrent_writers_exactly_once_in_order(s: Arc<dyn Store>) -> Result<()> {
    const TASKS: usize = 8;
    const WRITES: usize = 150;
    let r0 = s.current_revision().await?;
    let mut from_zero = s
        .watch(WatchRequest::new(KeyRange::prefix(b("/cw/")), 0))
        .await?;
    let mut from_rev = s
        .watch(WatchRequest::new(KeyRange::prefix(b("/cw/")), r0 + 1))
        .await?;
    let writers: Vec<_> = (0..TASKS)
        .map(|t| {
            let s = s.clone();
            tokio::spawn(async move {
                let mut out = Vec::with_capacity(WRITES);
                for i in 0..WRITES {
                    let key = b(format!("/cw/{}", (t * 7 + i) % 13));
                    out.push(s.put(key, b(format!("{t}-{i}"))).await?);
                }
                Ok::<_, StoreError>(out)
            })
        })
        .collect();
    let mut puts = Vec::new();
    for w in writers {
        puts.extend(w.await??);
    }
    let n = TASKS * WRITES;
    let end = s.current_revision().await?;
    assert_eq!(end, r0 + n as Revision);
    for w in [&mut from_zero, &mut from_rev] {
        let events = next_events(w, n).await?;
        check_events_match_puts(&events, puts.clone())?;
        let revs: Vec<Revision> = events.iter().map(|e| e.kv.mod_revision).collect();
        assert_eq!(revs, (r0 + 1..=end).collect::<Vec<_>>());
        expect_no_more_events(w, end).await?;
    }
    Ok(())
}

/// A watch from a past revision opened while writes go on: the switch from history to live
/// events loses and repeats nothing.
async fn watch_started_in_the_past_while_writes_continue(s: Arc<dyn Store>) -> Result<()> {
    const WRITES: usize = 1500;
    let r0 = s.current_revision().await?;
    let items: Vec<(Bytes, Bytes)> = (0..WRITES)
        .map(|i| (b(format!("/ps/{}", i % 17)), b(format!("{i}"))))
        .collect();
    let writer = {
        let s = s.clone();
        tokio::spawn(async move { put_all(&s, items, 4).await })
    };
    // Open watches from the start at several points while the writer runs.
    let mut watches = Vec::new();
    for _ in 0..5 {
        watches.push(
            s.watch(WatchRequest::new(KeyRange::prefix(b("/ps/")), r0 + 1))
                .await?,
        );
        tokio::task::yield_now().await;
        let target = s.current_revision().await? + 100;
        while s.current_revision().await? < target.min(r0 + WRITES as Revision) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let puts = writer.await??;
    let end = r0 + WRITES as Revision;
    for w in &mut watches {
        let events = next_events(w, WRITES).await?;
        check_events_match_puts(&events, puts.clone())?;
        expect_no_more_events(w, end).await?;
    }
    Ok(())
}

async fn watch_request_progress(s: Arc<dyn Store>) -> Result<()> {
    s.put(b("/pr/a"), b("1")).await?;
    let mut w = s
        .watch(WatchRequest::new(KeyRange::prefix(b("/pr/")), 0))
        .await?;
    // Idle watch: progress at the current revision.
    let now = s.current_revision().await?;
    w.request_progress();
    assert_eq!(
        next_msg(&mut w).await?,
        WatchMessage::Progress { revision: now }
    );

    // After events: at least the last one's revision.
    let e1 = s.put(b("/pr/a"), b("2")).await?;
    let e2 = s.put(b("/pr/b"), b("1")).await?;
    assert_eq!(next_events(&mut w, 2).await?.len(), 2);
    w.request_progress();
    match next_msg(&mut w).await? {
        WatchMessage::Progress { revision } => {
            assert!(revision >= e2.mod_revision);
            assert_eq!(revision, s.current_revision().await?);
        }
        other => bail!("expected progress, got {other:?}"),
    }
    assert!(e1.mod_revision < e2.mod_revision);

    // Writes outside the range move the revision a progress notification reports.
    s.put(b("/other"), b("1")).await?;
    let outside = s.put(b("/other"), b("2")).await?;
    w.request_progress();
    assert_eq!(
        next_msg(&mut w).await?,
        WatchMessage::Progress {
            revision: outside.mod_revision
        }
    );
    Ok(())
}

async fn watch_progress_notify(s: Arc<dyn Store>) -> Result<()> {
    s.put(b("/pn/a"), b("1")).await?;
    let now = s.current_revision().await?;
    let mut req = WatchRequest::new(KeyRange::prefix(b("/pn/")), 0);
    req.progress_notify = true;
    let mut w = s.watch(req).await?;
    // Idle: a periodic notification arrives without being asked for.
    assert_eq!(
        next_msg(&mut w).await?,
        WatchMessage::Progress { revision: now }
    );
    let e = s.put(b("/pn/a"), b("2")).await?;
    assert_eq!(next_events(&mut w, 1).await?[0].kv, e);
    // Idle again: the next notification is at the new revision.
    assert_eq!(
        next_msg(&mut w).await?,
        WatchMessage::Progress {
            revision: e.mod_revision
        }
    );
    // A watch without progress_notify gets none: the first message after an idle spell is
    // the next event.
    let mut quiet = s
        .watch(WatchRequest::new(KeyRange::prefix(b("/pn/")), 0))
        .await?;
    // Wait for one more periodic notification on the other watch (≥ one interval).
    assert!(matches!(
        next_msg(&mut w).await?,
        WatchMessage::Progress { .. }
    ));
    let e2 = s.put(b("/pn/a"), b("3")).await?;
    assert_eq!(
        next_msg(&mut quiet).await?,
        WatchMessage::Events {
            revision: e2.mod_revision,
            events: vec![put_event(&e2, Some(&e))]
        }
    );
    Ok(())
}

async fn watch_at_compacted_revision(s: Arc<dyn Store>) -> Result<()> {
    let r0 = s.current_revision().await?;
    let mut v = Vec::new();
    for i in 1..=5 {
        v.push(s.put(b("/wc/k"), b(format!("v{i}"))).await?);
    }
    let c = r0 + 3;
    s.compact(c).await?;
    for start in [r0 + 1, r0 + 2] {
        let mut w = s
            .watch(WatchRequest::new(KeyRange::prefix(b("/wc/")), start))
            .await?;
        match tokio::time::timeout(WAIT, w.next()).await? {
            Some(Err(StoreError::Compacted {
                requested,
                compacted,
            })) => {
                assert_eq!(requested, start);
                assert_eq!(compacted, c);
            }
            other => bail!("watch from {start} after compaction at {c}: {other:?}"),
        }
        // And the watch is over.
        assert!(tokio::time::timeout(WAIT, w.next()).await?.is_none());
    }
    // From the compacted revision itself: its event (whose previous version is gone) on.
    let mut w = s
        .watch(WatchRequest::new(KeyRange::prefix(b("/wc/")), c))
        .await?;
    let events = next_events(&mut w, 3).await?;
    assert_eq!(
        events,
        vec![
            put_event(&v[2], None),
            put_event(&v[3], Some(&v[2])),
            put_event(&v[4], Some(&v[3])),
        ]
    );
    // A single-key watch and a watch from 0 are unaffected.
    let mut live = s
        .watch(WatchRequest::new(KeyRange::key(b("/wc/k")), 0))
        .await?;
    let v6 = s.put(b("/wc/k"), b("v6")).await?;
    assert_eq!(
        next_events(&mut live, 1).await?,
        vec![put_event(&v6, Some(&v[4]))]
    );
    assert_eq!(
        next_events(&mut w, 1).await?,
        vec![put_event(&v6, Some(&v[4]))]
    );
    Ok(())
}

/// Nobody reads the watch while thousands of events (with 1 KiB values, so that they exceed
/// what either backend buffers for a watcher) are written; then everything is read.
async fn watch_that_falls_behind_and_catches_up(s: Arc<dyn Store>) -> Result<()> {
    const WRITES: usize = 6000;
    let r0 = s.current_revision().await?;
    let batches_before = rudder_store::embedded::batches_written();
    let mut w = s
        .watch(WatchRequest::new(KeyRange::prefix(b("/fb/")), 0))
        .await?;
    let mut other = s
        .watch(WatchRequest::new(KeyRange::prefix(b("/fb/")), 0))
        .await?;
    let items: Vec<(Bytes, Bytes)> = (0..WRITES)
        .map(|i| {
            let mut value = format!("{i:06}").into_bytes();
            value.resize(1024, b'.');
            (b(format!("/fb/{:03}", i % 60)), Bytes::from(value))
        })
        .collect();
    // A reader that keeps up, alongside.
    let reader = tokio::spawn(async move { next_events(&mut other, WRITES).await });
    let puts = put_all(&s, items, 4).await?;
    let end = s.current_revision().await?;
    assert_eq!(end, r0 + WRITES as Revision);
    if s.backend() == "embedded" {
        // The embedded store queues 1024 batches per watcher (plus a 64-message channel):
        // make sure this case went beyond that. (Other tests in this process only add.)
        let batches = rudder_store::embedded::batches_written() - batches_before;
        assert!(batches > 1024 + 64, "only {batches} batches were written");
    }
    let events = next_events(&mut w, WRITES).await?;
    check_events_match_puts(&events, puts.clone())?;
    expect_no_more_events(&mut w, end).await?;
    check_events_match_puts(&reader.await??, puts)?;
    // And it is live again.
    let after = s.put(b("/fb/000"), b("after")).await?;
    assert_eq!(next_events(&mut w, 1).await?[0].kv, after);
    Ok(())
}

async fn dropping_a_watch_does_not_disturb_others(s: Arc<dyn Store>) -> Result<()> {
    let watch = || {
        let s = s.clone();
        async move {
            s.watch(WatchRequest::new(KeyRange::prefix(b("/dw/")), 0))
                .await
        }
    };
    let dropped_early = watch().await?;
    let mut kept = watch().await?;
    let mut dropped_later = watch().await?;
    drop(dropped_early);
    let first = s.put(b("/dw/a"), b("1")).await?;
    assert_eq!(next_events(&mut dropped_later, 1).await?[0].kv, first);
    // Dropped with events still undelivered.
    let second = s.put(b("/dw/a"), b("2")).await?;
    drop(dropped_later);
    // Many short-lived watches come and go.
    for _ in 0..20 {
        let w = watch().await?;
        s.put(b("/dw/churn"), b("x")).await?;
        drop(w);
    }
    let third = s.put(b("/dw/a"), b("3")).await?;
    let events = next_events(&mut kept, 23).await?;
    assert_eq!(events[0], put_event(&first, None));
    assert_eq!(events[1], put_event(&second, Some(&first)));
    assert_eq!(events[22], put_event(&third, Some(&second)));
    // A new watch still works, and the kept one stays live.
    let mut fresh = watch().await?;
    let fourth = s.put(b("/dw/a"), b("4")).await?;
    assert_eq!(next_events(&mut fresh, 1).await?[0].kv, fourth);
    assert_eq!(next_events(&mut kept, 1).await?[0].kv, fourth);
    Ok(())
}

async fn watch_from_a_future_revision_waits(s: Arc<dyn Store>) -> Result<()> {
    let r0 = s.current_revision().await?;
    let mut w = s
        .watch(WatchRequest::new(KeyRange::prefix(b("/fw/")), r0 + 3))
        .await?;
    let mut v = Vec::new();
    for i in 1..=5 {
        v.push(s.put(b("/fw/k"), b(format!("{i}"))).await?);
    }
    assert_eq!(
        next_events(&mut w, 3).await?,
        vec![
            put_event(&v[2], Some(&v[1])),
            put_event(&v[3], Some(&v[2])),
            put_event(&v[4], Some(&v[3])),
        ]
    );
    expect_no_more_events(&mut w, r0 + 5).await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Compaction.

async fn compaction(s: Arc<dyn Store>) -> Result<()> {
    assert_eq!(s.compacted_revision().await?, 0);
    let r0 = s.current_revision().await?;
    let k1 = s.put(b("/cp/k"), b("k1")).await?; // r0+1
    s.put(b("/cp/k"), b("k2")).await?; // r0+2
    s.put(b("/cp/j"), b("j")).await?; // r0+3
    let k3 = s.put(b("/cp/k"), b("k3")).await?; // r0+4
    s.delete(b("/cp/j"), None).await?; // r0+5
    let k4 = s.put(b("/cp/k"), b("k4")).await?; // r0+6
    s.put(b("/cp/x"), b("x")).await?; // r0+7
    let now = r0 + 7;
    let mut before = BTreeMap::new();
    for rev in r0 + 1..=now {
        before.insert(rev, range(&s, everything(), rev).await?);
    }

    let c = r0 + 4;
    s.compact(c).await?;
    assert_eq!(s.compacted_revision().await?, c);
    for rev in r0 + 1..c {
        expect_err!(s.get(b("/cp/k"), rev).await,
        StoreError::Compacted { requested, compacted } => {
            assert_eq!((requested, compacted), (rev, c));
        });
        expect_err!(s.range(RangeRequest {
            range: everything(),
            revision: rev,
            limit: 0,
            count_only: true,
        }).await,
        StoreError::Compacted { requested, compacted } => {
            assert_eq!((requested, compacted), (rev, c));
        });
    }
    // At and above the compacted revision, the same answers as before.
    let same = |a: &RangeResponse, b: &RangeResponse| {
        a.kvs == b.kvs && a.count == b.count && a.revision == b.revision && a.more == b.more
    };
    for rev in c..=now {
        let after = range(&s, everything(), rev).await?;
        assert!(
            same(&after, &before[&rev]),
            "read at {rev} changed: {after:?}"
        );
    }
    assert_eq!(s.get(b("/cp/k"), c).await?, Some(k3.clone()));
    assert_eq!(s.get(b("/cp/k"), 0).await?, Some(k4.clone()));

    // Compacting again at or below: compacted; above the current revision: future.
    for rev in [c, r0 + 2] {
        expect_err!(s.compact(rev).await,
        StoreError::Compacted { requested, compacted } => {
            assert_eq!((requested, compacted), (rev, c));
        });
    }
    expect_err!(s.compact(now + 1).await,
    StoreError::FutureRevision { requested, current } => {
        assert_eq!((requested, current), (now + 1, now));
    });
    assert_eq!(s.compacted_revision().await?, c);

    // Up to the current revision; the deleted key is gone from history.
    s.compact(now).await?;
    assert_eq!(s.compacted_revision().await?, now);
    expect_err!(s.get(b("/cp/k"), now - 1).await,
    StoreError::Compacted { requested, compacted } => {
        assert_eq!((requested, compacted), (now - 1, now));
    });
    let at_now = range(&s, everything(), now).await?;
    assert!(same(&at_now, &before[&now]));
    assert_eq!(keys(&at_now), ["/cp/k", "/cp/x"]);
    assert_eq!(
        s.current_revision().await?,
        now,
        "compaction is not a write"
    );

    // Give the space back; the data stays.
    s.reclaim().await?;
    assert!(same(&range(&s, everything(), 0).await?, &before[&now]));
    assert_eq!(s.compacted_revision().await?, now);
    // Writes go on from there: versions and create revisions survive compaction.
    let k5 = s.update(b("/cp/k"), b("k5"), k4.mod_revision).await?;
    assert_eq!(k5, kv("/cp/k", "k5", k1.create_revision, now + 1, 5));
    let j = s.create(b("/cp/j"), b("j2")).await?;
    assert_eq!(j, kv("/cp/j", "j2", now + 2, now + 2, 1));
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Embedded only: durability across reopen, checkpoints, disk space; the snapshot module.

mod embedded_only {
    use super::*;

    /// Every revision's view of the whole key space, plus the store's revisions.
    async fn state(s: &Arc<dyn Store>) -> Result<(Revision, Revision, Vec<RangeResponse>)> {
        let current = s.current_revision().await?;
        let compacted = s.compacted_revision().await?;
        let mut views = Vec::new();
        for rev in compacted.max(1)..=current {
            views.push(range(s, everything(), rev).await?);
        }
        Ok((current, compacted, views))
    }

    fn same_state(
        a: &(Revision, Revision, Vec<RangeResponse>),
        b: &(Revision, Revision, Vec<RangeResponse>),
    ) -> bool {
        a.0 == b.0
            && a.1 == b.1
            && a.2.len() == b.2.len()
            && a.2
                .iter()
                .zip(&b.2)
                .all(|(x, y)| x.kvs == y.kvs && x.count == y.count && x.revision == y.revision)
    }

    /// Writes that span several 256 KiB segments: puts, updates, deletes.
    async fn churn(s: &Arc<dyn Store>, round: usize) -> Result<()> {
        for i in 0..120 {
            let key = b(format!("/e/{:02}", i % 23));
            let mut value = format!("{round}-{i}").into_bytes();
            value.resize(8192 + i, b'-');
            let kv = s.put(key.clone(), Bytes::from(value)).await?;
            if i % 7 == 0 {
                s.update(key.clone(), b("cas"), kv.mod_revision).await?;
            }
            if i % 11 == 0 {
                s.delete(key, None).await?;
            }
        }
        Ok(())
    }

    fn reopen(dir: &Path) -> Result<Arc<dyn Store>> {
        Ok(Arc::new(Embedded::open(embedded_options(dir))?))
    }

    fn close(s: Arc<Embedded>) {
        s.close();
        drop(s);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn data_and_revisions_survive_reopen() -> Result<()> {
        run("reopen", async {
            let dir = tempfile::tempdir()?;
            let e = Arc::new(Embedded::open(embedded_options(dir.path()))?);
            let s: Arc<dyn Store> = e.clone();
            churn(&s, 0).await?;
            assert!(e.disk_bytes() > 2 * SEGMENT_SIZE, "the log spans segments");
            let before = state(&s).await?;
            drop(s);
            close(e);

            // Plain reopen.
            let s = reopen(dir.path())?;
            let after = state(&s).await?;
            assert!(same_state(&before, &after), "reopen changed the data");
            drop(s);

            // After a checkpoint, with more writes after it.
            let e = Arc::new(Embedded::open(embedded_options(dir.path()))?);
            let s: Arc<dyn Store> = e.clone();
            e.checkpoint().await?;
            assert!(
                same_state(&before, &state(&s).await?),
                "checkpoint changed the data"
            );
            churn(&s, 1).await?;
            let before = state(&s).await?;
            drop(s);
            close(e);
            let s = reopen(dir.path())?;
            assert!(
                same_state(&before, &state(&s).await?),
                "reopen after checkpoint"
            );
            drop(s);

            // After compaction (in the log only, then also in a checkpoint).
            let e = Arc::new(Embedded::open(embedded_options(dir.path()))?);
            let s: Arc<dyn Store> = e.clone();
            let c = s.current_revision().await? - 50;
            s.compact(c).await?;
            churn(&s, 2).await?;
            let before = state(&s).await?;
            assert_eq!(before.1, c);
            drop(s);
            close(e);
            let e = Arc::new(Embedded::open(embedded_options(dir.path()))?);
            let s: Arc<dyn Store> = e.clone();
            assert!(
                same_state(&before, &state(&s).await?),
                "reopen after compaction"
            );
            expect_err!(s.get(b("/e/00"), c - 1).await,
            StoreError::Compacted { requested, compacted } => {
                assert_eq!((requested, compacted), (c - 1, c));
            });
            let c2 = s.current_revision().await? - 10;
            s.compact(c2).await?;
            e.checkpoint().await?;
            let before = state(&s).await?;
            drop(s);
            close(e);
            let s = reopen(dir.path())?;
            let after = state(&s).await?;
            assert!(
                same_state(&before, &after),
                "reopen after compaction + checkpoint"
            );
            assert_eq!(after.1, c2);

            // History is watchable after reopen, and writes continue the revisions.
            let now = after.0;
            let mut w = s
                .watch(WatchRequest::new(KeyRange::prefix(b("/e/")), c2))
                .await?;
            let events = next_events(&mut w, (now - c2 + 1) as usize).await?;
            let revs: Vec<Revision> = events.iter().map(|e| e.kv.mod_revision).collect();
            assert_eq!(revs, (c2..=now).collect::<Vec<_>>());
            for e in &events[1..] {
                let at = s.get(e.kv.key.clone(), e.kv.mod_revision - 1).await?;
                assert_eq!(e.prev, at, "prev of {:?}", e.kv);
            }
            let next = s.put(b("/e/new"), b("x")).await?;
            assert_eq!(next.mod_revision, now + 1);
            Ok(())
        })
        .await
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn reclaim_gives_disk_space_back() -> Result<()> {
        run("reclaim", async {
            let (e, _dir) = open_embedded()?;
            let s: Arc<dyn Store> = e.clone();
            // 20 MiB of overwrites of four keys.
            let value = Bytes::from(vec![7u8; 64 << 10]);
            let items = (0..320)
                .map(|i| (b(format!("/big/{}", i % 4)), value.clone()))
                .collect();
            put_all(&s, items, 4).await?;
            let full = e.disk_bytes();
            assert!(
                full >= 20 << 20,
                "{full} bytes on disk after 20 MiB of writes"
            );
            // Nothing is compacted yet: reclaim keeps what is still readable.
            s.reclaim().await?;
            assert!(e.disk_bytes() >= 20 << 20);
            let now = s.current_revision().await?;
            s.compact(now).await?;
            s.reclaim().await?;
            let reclaimed = e.disk_bytes();
            // What stays: four 64 KiB values and a segment or two.
            assert!(
                reclaimed < 2 << 20,
                "{reclaimed} bytes on disk after compaction and reclaim (was {full})"
            );
            assert_eq!(s.count(KeyRange::prefix(b("/big/"))).await?, 4);
            for i in 0..4 {
                let kv = s.get(b(format!("/big/{i}")), 0).await?.context("a key")?;
                assert_eq!((kv.value.len(), kv.version), (64 << 10, 80));
            }
            // Still fine after a reopen.
            let dir = _dir.path().to_path_buf();
            drop(s);
            close(e);
            let s = reopen(&dir)?;
            assert_eq!(s.current_revision().await?, now);
            assert_eq!(s.compacted_revision().await?, now);
            assert_eq!(s.count(KeyRange::prefix(b("/big/"))).await?, 4);
            Ok(())
        })
        .await
    }

    /// Keys with history (updates, deletes, compaction) and more than one snapshot page.
    async fn fill(s: &Arc<dyn Store>) -> Result<()> {
        let items = (0..1200)
            .map(|i| (b(format!("/snap/{i:04}")), b(format!("v{i}"))))
            .collect();
        put_all(s, items, 16).await?;
        for i in 0..50 {
            let k = b(format!("/snap/{i:04}"));
            let cur = s.get(k.clone(), 0).await?.context("a key")?;
            s.update(k, b(format!("u{i}")), cur.mod_revision).await?;
        }
        for i in 50..60 {
            s.delete(b(format!("/snap/{i:04}")), None).await?;
        }
        s.put(b("\u{1}low"), Bytes::new()).await?;
        s.put(Bytes::from_static(b"\xff\xff"), b("top")).await?;
        let now = s.current_revision().await?;
        s.compact(now - 5).await?;
        Ok(())
    }

    async fn live(s: &Arc<dyn Store>) -> Result<Vec<KeyValue>> {
        Ok(range(s, everything(), 0).await?.kvs)
    }

    fn same_contents(a: &[KeyValue], b: &[KeyValue]) -> bool {
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|(x, y)| x.key == y.key && x.value == y.value)
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn snapshot_restore_embedded_keeps_revisions() -> Result<()> {
        run("snapshot", async {
            let (e, _dir) = open_embedded()?;
            let s: Arc<dyn Store> = e.clone();
            fill(&s).await?;
            let work = tempfile::tempdir()?;
            let path = work.path().join("snap.db");
            let info = snapshot::save(&*s, &path).await?;
            let want = live(&s).await?;
            let now = s.current_revision().await?;
            assert_eq!(info.revision, now);
            assert_eq!(info.keys, want.len() as u64);
            assert_eq!(
                info.value_bytes,
                want.iter().map(|kv| kv.value.len() as u64).sum::<u64>()
            );
            assert_eq!(snapshot::verify(&path)?.0, info);

            let target = work.path().join("restored");
            let (restored, moved) = snapshot::restore_embedded(&path, &target)?;
            assert_eq!((restored, moved), (info.clone(), None));
            let r: Arc<dyn Store> = Arc::new(Embedded::open(embedded_options(&target))?);
            // Same keys, values, create/mod revisions and versions; same revision.
            assert_eq!(live(&r).await?, want);
            assert_eq!(r.current_revision().await?, now);
            assert_eq!(r.compacted_revision().await?, now);
            expect_err!(
                r.get(b("/snap/0000"), now - 1).await,
                StoreError::Compacted { .. }
            );
            // Restoring over an open store is refused.
            assert!(snapshot::restore_embedded(&path, &target).is_err());
            // Resource versions stay valid: a CAS with the old revision works.
            let k = want
                .iter()
                .find(|kv| kv.key == b("/snap/0003"))
                .context("key")?;
            let u = r.update(k.key.clone(), b("after"), k.mod_revision).await?;
            assert_eq!(
                u,
                kv(
                    "/snap/0003",
                    "after",
                    k.create_revision,
                    now + 1,
                    k.version + 1
                )
            );
            // A watch from the restored revision on is live.
            let mut w = r
                .watch(WatchRequest::new(KeyRange::prefix(b("/snap/")), now + 1))
                .await?;
            assert_eq!(next_events(&mut w, 1).await?[0].kv, u);
            drop(w);
            drop(r);

            // Over an existing (closed) store: the old files are moved aside, not deleted.
            let (_, moved) = snapshot::restore_embedded(&path, &target)?;
            let moved = moved.context("the old store was moved aside")?;
            assert!(moved.exists());
            let r: Arc<dyn Store> = Arc::new(Embedded::open(embedded_options(&target))?);
            assert_eq!(live(&r).await?, want);
            Ok(())
        })
        .await
    }

    async fn restore_across(from: Arc<dyn Store>, to: Arc<dyn Store>) -> Result<()> {
        fill(&from).await?;
        let work = tempfile::tempdir()?;
        let path = work.path().join("snap.db");
        let info = snapshot::save(&*from, &path).await?;
        let want = live(&from).await?;
        assert_eq!(info.keys, want.len() as u64);
        let restored = snapshot::restore_into(&*to, &path).await?;
        assert_eq!(restored, info);
        let got = live(&to).await?;
        assert!(same_contents(&got, &want), "restored contents differ");
        assert!(got.iter().all(|kv| kv.version == 1));
        // Into a store that is not empty: refused, nothing written.
        let rev = to.current_revision().await?;
        expect_err!(
            snapshot::restore_into(&*to, &path).await,
            StoreError::Invalid(_)
        );
        expect_err!(
            snapshot::restore_into(&*from, &path).await,
            StoreError::Invalid(_)
        );
        assert_eq!(to.current_revision().await?, rev);
        Ok(())
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn snapshot_from_embedded_into_etcd() -> Result<()> {
        let (e, _dir) = open_embedded()?;
        let (etcd, _etcd) = start_etcd().await?;
        run("embedded -> etcd", restore_across(e, etcd)).await
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn snapshot_from_etcd_into_embedded() -> Result<()> {
        let (e, _dir) = open_embedded()?;
        let (etcd, _etcd) = start_etcd().await?;
        run("etcd -> embedded", restore_across(etcd, e)).await
    }
}
