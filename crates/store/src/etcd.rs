//! The etcd backend: the [`Store`] contract over a real etcd 3.4+ cluster
//! (`--datastore-endpoint http://HOST:2379,…`).
//!
//! Owns: turning each store operation into etcd v3 KV / Watch / Cluster / Maintenance RPCs
//! through the `etcd-client` crate, turning etcd's answers into the store's types, and etcd's
//! errors into [`StoreError`]. Must not touch: the embedded backend, the compactor's policy, and
//! anything Kubernetes-specific (keys and values are opaque bytes).
//!
//! How the contract maps onto etcd:
//! - `create` / `update` / `delete(expected)` are single transactions (compare on
//!   `create_revision == 0` or `mod_revision == expected`, then put or delete with the previous
//!   value, else get the current value for the error), so they are atomic on the server.
//! - A key range with an empty start is sent as `\0` (etcd refuses empty keys, and no key sorts
//!   below `\0`); an empty end is etcd's "to the end of the key space", `\0`.
//! - etcd does not report its compacted revision. [`EtcdStore::compacted_revision`] finds it by
//!   probing reads: a read at revision `r` fails as compacted exactly when `r` is below it. The
//!   last value found is remembered (it only grows), so usually one probe suffices.
//! - Watches ask for previous values; the creation confirmation is awaited before
//!   [`Store::watch`] returns, so a watch from revision 0 sees every write made after it returns.
//!   Dropping the [`Watch`] drops the gRPC stream, which makes etcd cancel the watcher.
//! - etcd before 3.4.25 / 3.5.8 may answer an explicit progress request
//!   ([`Watch::request_progress`]) before it has sent every event up to the reported revision
//!   (etcd issue 15220); periodic progress notifications do not have that flaw.
//!
//! `https://` endpoints need a TLS feature of `etcd-client` that is not enabled yet.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use etcd_client::proto::{PbEvent, PbKeyValue, PbResponseHeader, PbTxnOpResponse};
use etcd_client::{
    Client, CompactionOptions, Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions,
    KvClient, PutOptions, Txn, TxnOp, WatchClient, WatchOptions, WatchRequestSender, WatchResponse,
    WatchResponseStream,
};
use futures::StreamExt;
use tokio::sync::mpsc;

use crate::{
    Event, EventKind, KeyRange, KeyValue, ProgressRequester, RangeRequest, RangeResponse, Result,
    Revision, Store, StoreError, Watch, WatchMessage, WatchRequest,
};

/// Largest gRPC message accepted from etcd. etcd's own client allows `math.MaxInt32`; a page of
/// a large list easily exceeds tonic's 4 MiB default.
const MAX_DECODING_MESSAGE_SIZE: usize = i32::MAX as usize;

/// How long [`EtcdStore::connect`] waits for etcd to answer a first read.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// HTTP/2 keep-alive while streams (watches, requests) are open. etcd's default
/// `--grpc-keepalive-min-time` is 5 s; pinging faster gets the connection closed.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// The key probed by cheap reads (`current_revision`, compaction probes). Any key works: only
/// the revision checks and the response header matter.
const PROBE_KEY: &[u8] = b"\0";

/// Split a `--datastore-endpoint` value (`http://a:2379,http://b:2379`) into endpoints,
/// trimming blanks and dropping empty items.
pub fn parse_endpoints(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(str::to_string)
        .collect()
}

/// The store over a real etcd cluster.
pub struct EtcdStore {
    client: Client,
    kv: KvClient,
    watch: WatchClient,
    endpoints: Vec<String>,
    /// Highest compacted revision seen so far (a lower bound of etcd's; 0 = none seen).
    compacted: AtomicI64,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("endpoints", &self.endpoints)
            .finish_non_exhaustive()
    }
}

impl EtcdStore {
    /// Connect to etcd at `endpoints` (e.g. `http://127.0.0.1:2379`) and check that it answers.
    pub async fn connect(endpoints: &[String]) -> Result<EtcdStore> {
        if endpoints.is_empty() {
            return Err(StoreError::Invalid("no etcd endpoint given".into()));
        }
        let options = ConnectOptions::new()
            .with_connect_timeout(CONNECT_TIMEOUT)
            .with_keep_alive(KEEP_ALIVE_INTERVAL, KEEP_ALIVE_TIMEOUT);
        let client = Client::connect(endpoints, Some(options))
            .await
            .map_err(|e| {
                StoreError::Backend(format!(
                    "connecting to etcd at {}: {e}",
                    endpoints.join(",")
                ))
            })?;
        let kv = client
            .kv_client()
            .max_decoding_message_size(MAX_DECODING_MESSAGE_SIZE);
        let watch = client
            .watch_client()
            .max_decoding_message_size(MAX_DECODING_MESSAGE_SIZE);
        let store = EtcdStore {
            client,
            kv,
            watch,
            endpoints: endpoints.to_vec(),
            compacted: AtomicI64::new(0),
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, store.current_revision()).await {
            Ok(Ok(_)) => Ok(store),
            Ok(Err(e)) => Err(StoreError::Backend(format!(
                "etcd at {} does not answer: {e}",
                endpoints.join(",")
            ))),
            Err(_) => Err(StoreError::Backend(format!(
                "etcd at {} did not answer within {CONNECT_TIMEOUT:?}",
                endpoints.join(",")
            ))),
        }
    }

    /// The endpoints this store was connected with.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    fn kv(&self) -> KvClient {
        self.kv.clone()
    }

    /// Run a transaction that writes `size` bytes of key and value.
    async fn txn(&self, txn: Txn, size: usize) -> Result<TxnOutcome> {
        let resp = self.kv().txn(txn).await.map_err(|e| write_error(e, size))?;
        let pb = resp.0;
        let revision = header_revision(pb.header.as_ref())?;
        Ok(TxnOutcome {
            succeeded: pb.succeeded,
            revision,
            responses: pb
                .responses
                .into_iter()
                .filter_map(|r| r.response)
                .collect(),
        })
    }

    /// The current value of `key`, for the `current` field of a conflict.
    async fn current(&self, key: &Bytes) -> Result<Option<KeyValue>> {
        let resp = self
            .kv()
            .get(key.to_vec(), None)
            .await
            .map_err(backend_error)?;
        Ok(resp.0.kvs.into_iter().next().map(kv_from_pb))
    }

    /// Map an etcd error of an operation at `requested` revision, looking up the compacted or
    /// current revision the store error carries.
    async fn revision_error(&self, e: etcd_client::Error, requested: Revision) -> StoreError {
        match classify(&e) {
            ErrorKind::Compacted => {
                let compacted = match self.compacted_revision().await {
                    Ok(rev) => rev,
                    Err(_) => self.compacted.load(Ordering::Acquire),
                };
                StoreError::Compacted {
                    requested,
                    compacted,
                }
            }
            ErrorKind::FutureRevision => {
                let current = self
                    .current_revision()
                    .await
                    .unwrap_or(requested.saturating_sub(1));
                StoreError::FutureRevision { requested, current }
            }
            ErrorKind::TooLarge | ErrorKind::Other => backend_error(e),
        }
    }

    /// Whether a read at `revision` succeeds (is not compacted); `Some(header revision)` if so.
    async fn probe(&self, revision: Revision) -> Result<Option<Revision>> {
        let opts = GetOptions::new().with_revision(revision).with_count_only();
        match self.kv().get(PROBE_KEY, Some(opts)).await {
            Ok(resp) => Ok(Some(header_revision(resp.0.header.as_ref())?)),
            Err(e) => match classify(&e) {
                ErrorKind::Compacted => Ok(None),
                _ => Err(backend_error(e)),
            },
        }
    }

    /// Defragment the member reachable at `url`.
    async fn defragment_member(&self, url: &str) -> Result<()> {
        let options = ConnectOptions::new().with_connect_timeout(CONNECT_TIMEOUT);
        let mut client = Client::connect([url], Some(options))
            .await
            .map_err(|e| StoreError::Backend(format!("connecting to etcd member {url}: {e}")))?;
        client
            .defragment()
            .await
            .map_err(|e| StoreError::Backend(format!("defragmenting etcd member {url}: {e}")))?;
        Ok(())
    }
}

#[async_trait]
impl Store for EtcdStore {
    async fn range(&self, req: RangeRequest) -> Result<RangeResponse> {
        crate::check_range(&req.range)?;
        if req.revision < 0 {
            return Err(StoreError::Invalid(format!(
                "negative revision {}",
                req.revision
            )));
        }
        let (key, end) = etcd_key_range(&req.range);
        let mut opts = GetOptions::new();
        if let Some(end) = end {
            opts = opts.with_range(end);
        }
        if req.limit > 0 {
            opts = opts.with_limit(i64::try_from(req.limit).unwrap_or(i64::MAX));
        }
        if req.revision > 0 {
            opts = opts.with_revision(req.revision);
        }
        if req.count_only {
            opts = opts.with_count_only();
        }
        let resp = match self.kv().get(key, Some(opts)).await {
            Ok(resp) => resp.0,
            Err(e) => return Err(self.revision_error(e, req.revision).await),
        };
        let header_rev = header_revision(resp.header.as_ref())?;
        let kvs: Vec<KeyValue> = resp.kvs.into_iter().map(kv_from_pb).collect();
        let next_key = if resp.more {
            kvs.last().map(|kv| {
                let mut next = Vec::with_capacity(kv.key.len() + 1);
                next.extend_from_slice(&kv.key);
                next.push(0);
                Bytes::from(next)
            })
        } else {
            None
        };
        Ok(RangeResponse {
            kvs,
            more: resp.more,
            count: resp.count,
            revision: if req.revision > 0 {
                req.revision
            } else {
                header_rev
            },
            next_key,
        })
    }

    async fn create(&self, key: Bytes, value: Bytes) -> Result<KeyValue> {
        crate::check_write(&key, &value)?;
        let txn = Txn::new()
            .when([Compare::create_revision(key.to_vec(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key.to_vec(), value.to_vec(), None)])
            .or_else([TxnOp::get(key.to_vec(), None)]);
        let out = self.txn(txn, key.len() + value.len()).await?;
        if out.succeeded {
            let rev = out.revision;
            return Ok(KeyValue {
                key,
                value,
                create_revision: rev,
                mod_revision: rev,
                version: 1,
            });
        }
        match out.range_kv()? {
            Some(current) => Err(StoreError::AlreadyExists { current }),
            None => Err(StoreError::Backend(format!(
                "etcd refused to create {} but reports no current value",
                String::from_utf8_lossy(&key)
            ))),
        }
    }

    async fn update(&self, key: Bytes, value: Bytes, expected: Revision) -> Result<KeyValue> {
        crate::check_write(&key, &value)?;
        crate::check_expected(expected)?;
        if expected == 0 {
            // No version of a key has mod_revision 0; etcd would treat it as "absent" and
            // create the key, which is `create`'s job.
            let current = self.current(&key).await?;
            return Err(StoreError::Conflict {
                key,
                expected,
                current,
            });
        }
        let txn = Txn::new()
            .when([Compare::mod_revision(
                key.to_vec(),
                CompareOp::Equal,
                expected,
            )])
            .and_then([TxnOp::put(
                key.to_vec(),
                value.to_vec(),
                Some(PutOptions::new().with_prev_key()),
            )])
            .or_else([TxnOp::get(key.to_vec(), None)]);
        let out = self.txn(txn, key.len() + value.len()).await?;
        if !out.succeeded {
            let current = out.range_kv()?;
            return Err(StoreError::Conflict {
                key,
                expected,
                current,
            });
        }
        let rev = out.revision;
        let prev = out.put_prev()?.ok_or_else(|| {
            StoreError::Backend(format!(
                "etcd updated {} but returned no previous value",
                String::from_utf8_lossy(&key)
            ))
        })?;
        Ok(KeyValue {
            key,
            value,
            create_revision: prev.create_revision,
            mod_revision: rev,
            version: prev.version + 1,
        })
    }

    async fn put(&self, key: Bytes, value: Bytes) -> Result<KeyValue> {
        crate::check_write(&key, &value)?;
        let resp = self
            .kv()
            .put(
                key.to_vec(),
                value.to_vec(),
                Some(PutOptions::new().with_prev_key()),
            )
            .await
            .map_err(|e| write_error(e, key.len() + value.len()))?;
        let pb = resp.0;
        let rev = header_revision(pb.header.as_ref())?;
        let (create_revision, version) = match pb.prev_kv {
            Some(prev) => (prev.create_revision, prev.version + 1),
            None => (rev, 1),
        };
        Ok(KeyValue {
            key,
            value,
            create_revision,
            mod_revision: rev,
            version,
        })
    }

    async fn delete(&self, key: Bytes, expected: Option<Revision>) -> Result<(KeyValue, Revision)> {
        crate::check_write(&key, &[])?;
        let Some(expected) = expected else {
            let resp = self
                .kv()
                .delete(key.to_vec(), Some(DeleteOptions::new().with_prev_key()))
                .await
                .map_err(backend_error)?;
            let pb = resp.0;
            let rev = header_revision(pb.header.as_ref())?;
            return match pb.prev_kvs.into_iter().next() {
                Some(prev) => Ok((kv_from_pb(prev), rev)),
                None if pb.deleted == 0 => Err(StoreError::NotFound { key }),
                None => Err(StoreError::Backend(format!(
                    "etcd deleted {} but returned no previous value",
                    String::from_utf8_lossy(&key)
                ))),
            };
        };
        crate::check_expected(expected)?;
        if expected == 0 {
            let current = self.current(&key).await?;
            return Err(StoreError::Conflict {
                key,
                expected,
                current,
            });
        }
        let txn = Txn::new()
            .when([Compare::mod_revision(
                key.to_vec(),
                CompareOp::Equal,
                expected,
            )])
            .and_then([TxnOp::delete(
                key.to_vec(),
                Some(DeleteOptions::new().with_prev_key()),
            )])
            .or_else([TxnOp::get(key.to_vec(), None)]);
        let out = self.txn(txn, key.len()).await?;
        if !out.succeeded {
            let current = out.range_kv()?;
            return Err(StoreError::Conflict {
                key,
                expected,
                current,
            });
        }
        let rev = out.revision;
        match out.deleted_prev()? {
            Some(prev) => Ok((prev, rev)),
            None => Err(StoreError::Backend(format!(
                "etcd deleted {} but returned no previous value",
                String::from_utf8_lossy(&key)
            ))),
        }
    }

    async fn watch(&self, req: WatchRequest) -> Result<Watch> {
        crate::check_range(&req.range)?;
        if req.start_revision < 0 {
            return Err(StoreError::Invalid(format!(
                "negative start revision {}",
                req.start_revision
            )));
        }
        let (key, end) = etcd_key_range(&req.range);
        let mut opts = WatchOptions::new().with_prev_key();
        if let Some(end) = end {
            opts = opts.with_range(end);
        }
        if req.start_revision > 0 {
            opts = opts.with_start_revision(req.start_revision);
        }
        if req.progress_notify {
            opts = opts.with_progress_notify();
        }
        let (sender, mut responses) = self
            .watch
            .clone()
            .watch(key, Some(opts))
            .await
            .map_err(backend_error)?
            .split();

        // Wait for etcd to confirm the watcher, so that it is registered (and its start
        // revision fixed) before we return. Anything else that arrives first is kept.
        let mut pending = VecDeque::new();
        let created = loop {
            match responses.next().await {
                Some(Ok(resp)) if resp.created() => break resp,
                Some(Ok(resp)) => pending.push_back(resp),
                Some(Err(e)) => return Err(backend_error(e)),
                None => {
                    return Err(StoreError::Backend(
                        "etcd closed the watch stream before confirming the watch".into(),
                    ))
                }
            }
        };
        if created.canceled() {
            return Err(StoreError::Backend(format!(
                "etcd refused the watch: {}",
                created.cancel_reason()
            )));
        }
        let next_revision = if req.start_revision > 0 {
            req.start_revision
        } else {
            header_revision(created.0.header.as_ref())? + 1
        };

        let (progress_tx, progress_rx) = mpsc::channel(1);
        let state = WatchState {
            sender,
            responses,
            pending,
            progress_rx,
            progress_open: true,
            next_revision,
            done: false,
        };
        let stream = futures::stream::unfold(state, |mut state| async move {
            state.next_message().await.map(|msg| (msg, state))
        });
        Ok(Watch::new(
            Box::pin(stream),
            Box::new(EtcdProgressRequester(progress_tx)),
        ))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        if revision <= 0 {
            return Err(StoreError::Invalid(format!(
                "compaction revision must be positive, got {revision}"
            )));
        }
        let opts = CompactionOptions::new().with_physical();
        match self.kv().compact(revision, Some(opts)).await {
            Ok(_) => {
                self.compacted.fetch_max(revision, Ordering::AcqRel);
                Ok(())
            }
            Err(e) => Err(self.revision_error(e, revision).await),
        }
    }

    async fn reclaim(&self) -> Result<()> {
        let members = self
            .client
            .cluster_client()
            .member_list()
            .await
            .map_err(backend_error)?;
        let mut urls: Vec<String> = members
            .members()
            .iter()
            .filter_map(|m| m.client_urls().first().cloned())
            .collect();
        if urls.is_empty() {
            urls = self.endpoints.clone();
        }
        for url in urls {
            self.defragment_member(&url).await?;
        }
        Ok(())
    }

    async fn current_revision(&self) -> Result<Revision> {
        let resp = self
            .kv()
            .get(PROBE_KEY, Some(GetOptions::new().with_count_only()))
            .await
            .map_err(backend_error)?;
        header_revision(resp.0.header.as_ref())
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        // etcd fails a read at revision r as compacted exactly when r < its compacted revision
        // C, and C only grows. `known` <= C, so probe `known` first, then bisect upwards.
        let known = self.compacted.load(Ordering::Acquire);
        let mut lo = known.max(1);
        if self.probe(lo).await?.is_some() {
            // C <= lo: C is `known` (or 1, which is indistinguishable from "never").
            return Ok(known);
        }
        let mut hi = self.current_revision().await?;
        lo += 1;
        // Invariant: lo <= C <= hi (a read at the current revision is never compacted).
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.probe(mid).await?.is_some() {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        let found = self.compacted.fetch_max(lo, Ordering::AcqRel).max(lo);
        Ok(found)
    }

    fn backend(&self) -> &'static str {
        "etcd"
    }

    /// Not before etcd 3.4.25 / 3.5.8 (issue 15220, above), and the version is not checked.
    fn ordered_progress(&self) -> bool {
        false
    }
}

/// The outcome of a transaction: which branch ran, at which revision, and its responses.
struct TxnOutcome {
    succeeded: bool,
    revision: Revision,
    responses: Vec<PbTxnOpResponse>,
}

impl TxnOutcome {
    fn first(self) -> Result<PbTxnOpResponse> {
        self.responses
            .into_iter()
            .next()
            .ok_or_else(|| StoreError::Backend("etcd transaction returned no response".into()))
    }

    /// The key of a `get` branch, if present.
    fn range_kv(self) -> Result<Option<KeyValue>> {
        match self.first()? {
            PbTxnOpResponse::ResponseRange(r) => Ok(r.kvs.into_iter().next().map(kv_from_pb)),
            _ => Err(unexpected_txn_response("range")),
        }
    }

    /// The previous value of a `put` branch, if any.
    fn put_prev(self) -> Result<Option<KeyValue>> {
        match self.first()? {
            PbTxnOpResponse::ResponsePut(r) => Ok(r.prev_kv.map(kv_from_pb)),
            _ => Err(unexpected_txn_response("put")),
        }
    }

    /// The previous value of a `delete` branch, if anything was deleted.
    fn deleted_prev(self) -> Result<Option<KeyValue>> {
        match self.first()? {
            PbTxnOpResponse::ResponseDeleteRange(r) => {
                Ok(r.prev_kvs.into_iter().next().map(kv_from_pb))
            }
            _ => Err(unexpected_txn_response("delete")),
        }
    }
}

fn unexpected_txn_response(wanted: &str) -> StoreError {
    StoreError::Backend(format!(
        "etcd transaction returned an unexpected response (wanted {wanted})"
    ))
}

/// Queues progress requests for the watch's stream, which sends them to etcd the next time it
/// is polled (etcd-client's sender is async); requests made while one is still queued are merged
/// into it.
struct EtcdProgressRequester(mpsc::Sender<()>);

impl ProgressRequester for EtcdProgressRequester {
    fn request_progress(&self) {
        // Full: a request is already queued, which answers this one too. Closed: the watch
        // has ended, nothing to ask.
        let _ = self.0.try_send(());
    }
}

/// A running etcd watch, consumed by the [`Watch`]'s stream. Owns both halves of the gRPC
/// stream: dropping it cancels the watch on the server.
struct WatchState {
    sender: WatchRequestSender,
    responses: WatchResponseStream,
    /// Responses that arrived before the creation confirmation.
    pending: VecDeque<WatchResponse>,
    progress_rx: mpsc::Receiver<()>,
    progress_open: bool,
    /// The lowest revision not yet delivered (for the error when etcd compacted it away).
    next_revision: Revision,
    done: bool,
}

/// What one etcd watch response means for the consumer.
enum Step {
    Skip,
    Message(WatchMessage),
    /// Yield this error and end the watch.
    Fail(StoreError),
}

impl WatchState {
    async fn next_message(&mut self) -> Option<Result<WatchMessage>> {
        loop {
            if self.done {
                return None;
            }
            let resp = if let Some(resp) = self.pending.pop_front() {
                resp
            } else {
                tokio::select! {
                    biased;
                    resp = self.responses.next() => match resp {
                        Some(Ok(resp)) => resp,
                        Some(Err(e)) => {
                            self.done = true;
                            return Some(Err(backend_error(e)));
                        }
                        None => {
                            self.done = true;
                            return Some(Err(StoreError::Backend(
                                "etcd closed the watch stream".into(),
                            )));
                        }
                    },
                    req = self.progress_rx.recv(), if self.progress_open => {
                        match req {
                            Some(()) => {
                                if let Err(e) = self.sender.request_progress().await {
                                    tracing::debug!("etcd watch progress request failed: {e}");
                                }
                            }
                            None => self.progress_open = false,
                        }
                        continue;
                    }
                }
            };
            match self.step(resp) {
                Step::Skip => continue,
                Step::Message(msg) => return Some(Ok(msg)),
                Step::Fail(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
    }

    fn step(&mut self, resp: WatchResponse) -> Step {
        let pb = resp.0;
        if pb.compact_revision > 0 {
            return Step::Fail(StoreError::Compacted {
                requested: self.next_revision,
                compacted: pb.compact_revision,
            });
        }
        if pb.canceled {
            return Step::Fail(StoreError::Backend(format!(
                "etcd canceled the watch: {}",
                pb.cancel_reason
            )));
        }
        if pb.created {
            return Step::Skip;
        }
        let revision = match header_revision(pb.header.as_ref()) {
            Ok(rev) => rev,
            Err(e) => return Step::Fail(e),
        };
        if pb.events.is_empty() {
            return Step::Message(WatchMessage::Progress { revision });
        }
        let mut events = Vec::with_capacity(pb.events.len());
        for event in pb.events {
            match event_from_pb(event) {
                Ok(event) => {
                    self.next_revision = self.next_revision.max(event.kv.mod_revision + 1);
                    events.push(event);
                }
                Err(e) => return Step::Fail(e),
            }
        }
        Step::Message(WatchMessage::Events { revision, events })
    }
}

fn event_from_pb(event: PbEvent) -> Result<Event> {
    let kind = match event.r#type {
        0 => EventKind::Put,
        1 => EventKind::Delete,
        other => {
            return Err(StoreError::Backend(format!(
                "etcd sent a watch event of unknown type {other}"
            )))
        }
    };
    let kv = event
        .kv
        .map(kv_from_pb)
        .ok_or_else(|| StoreError::Backend("etcd sent a watch event without a key".into()))?;
    Ok(Event {
        kind,
        kv,
        prev: event.prev_kv.map(kv_from_pb),
    })
}

fn kv_from_pb(kv: PbKeyValue) -> KeyValue {
    KeyValue {
        key: Bytes::from(kv.key),
        value: Bytes::from(kv.value),
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
    }
}

fn header_revision(header: Option<&PbResponseHeader>) -> Result<Revision> {
    header
        .map(|h| h.revision)
        .ok_or_else(|| StoreError::Backend("etcd sent a response without a header".into()))
}

/// A store key range as etcd's `(key, range_end)`.
fn etcd_key_range(range: &KeyRange) -> (Vec<u8>, Option<Vec<u8>>) {
    // etcd refuses an empty key; no key sorts below "\0", so starting there is the same.
    let key = if range.start.is_empty() {
        vec![0]
    } else {
        range.start.to_vec()
    };
    match &range.end {
        None => (key, None),
        // "To the end of the key space".
        Some(end) if end.is_empty() => (key, Some(vec![0])),
        // Keys below "\0": none. etcd reads a "\0" end as "to the end", so send an empty range
        // of its own (an end equal to the key) instead.
        Some(end) if end[..] == [0] => (vec![0, 0], Some(vec![0, 0])),
        Some(end) => (key, Some(end.to_vec())),
    }
}

/// What an etcd error means for the store.
enum ErrorKind {
    Compacted,
    FutureRevision,
    TooLarge,
    Other,
}

fn classify(e: &etcd_client::Error) -> ErrorKind {
    let etcd_client::Error::GRpcStatus(status) = e else {
        return ErrorKind::Other;
    };
    let msg = status.message();
    if msg.contains("required revision has been compacted") {
        ErrorKind::Compacted
    } else if msg.contains("required revision is a future revision") {
        ErrorKind::FutureRevision
    } else if msg.contains("request is too large") || msg.contains("larger than max") {
        ErrorKind::TooLarge
    } else {
        ErrorKind::Other
    }
}

/// Map the error of a write of `size` bytes (key + value).
fn write_error(e: etcd_client::Error, size: usize) -> StoreError {
    match classify(&e) {
        // etcd's own --max-request-bytes is lower than the store's limit plus the request's
        // overhead: report it as the store's error, with etcd's words in the log.
        ErrorKind::TooLarge => {
            tracing::debug!("etcd refused a write of {size} bytes: {e}");
            StoreError::TooLarge {
                size,
                limit: crate::MAX_WRITE_BYTES.min(size.saturating_sub(1)),
            }
        }
        _ => backend_error(e),
    }
}

fn backend_error(e: etcd_client::Error) -> StoreError {
    StoreError::Backend(format!("etcd: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_split_and_trimmed() {
        assert_eq!(
            parse_endpoints(" http://a:2379, http://b:2379 ,,"),
            vec!["http://a:2379".to_string(), "http://b:2379".to_string()]
        );
        assert!(parse_endpoints("").is_empty());
    }

    #[test]
    fn key_ranges_map_to_etcd() {
        let r = |start: &'static [u8], end: Option<&'static [u8]>| KeyRange {
            start: Bytes::from_static(start),
            end: end.map(Bytes::from_static),
        };
        assert_eq!(etcd_key_range(&r(b"k", None)), (b"k".to_vec(), None));
        assert_eq!(
            etcd_key_range(&r(b"a", Some(b""))),
            (b"a".to_vec(), Some(vec![0]))
        );
        assert_eq!(etcd_key_range(&r(b"", Some(b""))), (vec![0], Some(vec![0])));
        assert_eq!(
            etcd_key_range(&r(b"", Some(b"m"))),
            (vec![0], Some(b"m".to_vec()))
        );
        // "\0" as an end is empty, not "to the end of the key space".
        assert_eq!(
            etcd_key_range(&r(b"", Some(b"\0"))),
            (vec![0, 0], Some(vec![0, 0]))
        );
        assert_eq!(
            etcd_key_range(&r(b"a", Some(b"\0"))),
            (vec![0, 0], Some(vec![0, 0]))
        );
    }
}
