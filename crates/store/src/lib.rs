//! The store: the cluster's single source of truth, with etcd v3 semantics.
//!
//! Owns: the [`Store`] trait and its two backends, the embedded MVCC engine
//! ([`embedded::Embedded`], the default, files under `--data-dir`) and a real etcd cluster
//! ([`etcd::EtcdStore`], `--datastore-endpoint`); automatic compaction ([`compactor`]) and the
//! portable snapshot format ([`snapshot`]) that works on both.
//!
//! Must not touch: anything Kubernetes-specific. Keys and values are opaque bytes here; the API
//! server decides what `/registry/<resource>/<namespace>/<name>` holds.
//!
//! Semantics (both backends, checked by one contract suite in `tests/contract.rs`):
//! - one global revision, bumped by every successful write; each key carries `create_revision`,
//!   `mod_revision` and `version` (1 on creation, +1 per update, reset by deletion);
//! - a write is acknowledged only once it is durable;
//! - reads at the current or any retained older revision; compaction makes older revisions
//!   unreadable and unwatchable with [`StoreError::Compacted`];
//! - a watch delivers every event after its start revision, in revision order, with the previous
//!   value, then live events, plus progress notifications.

// `StoreError::Conflict` / `AlreadyExists` carry the current value on purpose (callers act on
// it); the error is returned by value throughout the store.
#![allow(clippy::result_large_err)]

use std::fmt;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;

pub mod compactor;
pub mod embedded;
pub mod etcd;
pub mod snapshot;

/// A store revision. Revision 0 in a request means "the current revision".
pub type Revision = i64;

/// Largest key + value one write may carry: etcd's default `--max-request-bytes` (1.5 MiB).
pub const MAX_WRITE_BYTES: usize = 1024 * 1024 * 3 / 2;

/// One version of one key.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: Bytes,
    pub value: Bytes,
    /// Revision of the write that created this incarnation of the key.
    pub create_revision: Revision,
    /// Revision of the write that produced this version.
    pub mod_revision: Revision,
    /// 1 for the creating write, +1 for every update since.
    pub version: i64,
}

impl fmt::Debug for KeyValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyValue")
            .field("key", &String::from_utf8_lossy(&self.key))
            .field("value_len", &self.value.len())
            .field("create_revision", &self.create_revision)
            .field("mod_revision", &self.mod_revision)
            .field("version", &self.version)
            .finish()
    }
}

/// What happened to a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

/// One change seen by a watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    /// For a put: the new version. For a delete: the key, an empty value, `mod_revision` = the
    /// revision of the delete, `create_revision` and `version` 0 (as etcd reports it).
    pub kv: KeyValue,
    /// The version before this event, if the key existed.
    pub prev: Option<KeyValue>,
}

/// A key range: one key, or every key in `[start, end)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRange {
    pub start: Bytes,
    /// `None`: the single key `start`. `Some(end)`: every key `>= start` and `< end`.
    /// An empty `end` means "to the end of the key space" (as etcd's `\0`).
    pub end: Option<Bytes>,
}

impl KeyRange {
    pub fn key(key: impl Into<Bytes>) -> Self {
        KeyRange {
            start: key.into(),
            end: None,
        }
    }

    /// Every key starting with `prefix`.
    pub fn prefix(prefix: impl Into<Bytes>) -> Self {
        let start: Bytes = prefix.into();
        let end = prefix_end(&start);
        KeyRange {
            start,
            end: Some(end),
        }
    }

    /// Every key in `[start, end)`.
    pub fn between(start: impl Into<Bytes>, end: impl Into<Bytes>) -> Self {
        KeyRange {
            start: start.into(),
            end: Some(end.into()),
        }
    }

    pub fn contains(&self, key: &[u8]) -> bool {
        match &self.end {
            None => key == &self.start[..],
            Some(end) => key >= &self.start[..] && (end.is_empty() || key < &end[..]),
        }
    }
}

/// The smallest key greater than every key that starts with `prefix` (etcd's `GetPrefixRangeEnd`);
/// empty when no such key exists (prefix empty or all `0xff`), meaning "no upper bound".
pub fn prefix_end(prefix: &[u8]) -> Bytes {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Bytes::from(end);
        }
    }
    Bytes::new()
}

/// A read.
#[derive(Clone, Debug)]
pub struct RangeRequest {
    pub range: KeyRange,
    /// Read as of this revision; 0 = current.
    pub revision: Revision,
    /// At most this many keys; 0 = no limit.
    pub limit: usize,
    /// Only count the keys, return none.
    pub count_only: bool,
}

impl RangeRequest {
    pub fn new(range: KeyRange) -> Self {
        RangeRequest {
            range,
            revision: 0,
            limit: 0,
            count_only: false,
        }
    }

    pub fn at(mut self, revision: Revision) -> Self {
        self.revision = revision;
        self
    }

    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }
}

/// The answer to a read.
#[derive(Clone, Debug, Default)]
pub struct RangeResponse {
    /// Keys in ascending order (none if `count_only`).
    pub kvs: Vec<KeyValue>,
    /// True if the limit cut the answer short.
    pub more: bool,
    /// Number of keys in the whole range at that revision, regardless of limit.
    pub count: i64,
    /// The revision the read was served at (the store's current revision for a current read).
    pub revision: Revision,
    /// When `more`: the key to start the next page at (last returned key + `\0`).
    pub next_key: Option<Bytes>,
}

/// What a watch yields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchMessage {
    /// Events with increasing revisions; `revision` is the store revision when they were sent.
    Events {
        revision: Revision,
        events: Vec<Event>,
    },
    /// Every event with a revision `<= revision` in the watched range has been delivered.
    Progress { revision: Revision },
}

/// Options of a watch.
#[derive(Clone, Debug)]
pub struct WatchRequest {
    pub range: KeyRange,
    /// Deliver events with revision `>= start_revision`; 0 = only events after the current
    /// revision.
    pub start_revision: Revision,
    /// Send a [`WatchMessage::Progress`] when the watch has been idle for a while.
    pub progress_notify: bool,
}

impl WatchRequest {
    pub fn new(range: KeyRange, start_revision: Revision) -> Self {
        WatchRequest {
            range,
            start_revision,
            progress_notify: false,
        }
    }
}

/// A running watch. Dropping it cancels the watch.
pub struct Watch {
    pub stream: Pin<Box<dyn Stream<Item = Result<WatchMessage, StoreError>> + Send>>,
    progress: Box<dyn ProgressRequester>,
}

/// Asks a watch's backend for an immediate progress notification.
pub trait ProgressRequester: Send + Sync {
    fn request_progress(&self);
}

impl Watch {
    pub fn new(
        stream: Pin<Box<dyn Stream<Item = Result<WatchMessage, StoreError>> + Send>>,
        progress: Box<dyn ProgressRequester>,
    ) -> Self {
        Watch { stream, progress }
    }

    /// Ask for a [`WatchMessage::Progress`] as soon as every event up to the current revision
    /// has been delivered on this watch.
    pub fn request_progress(&self) {
        self.progress.request_progress()
    }

    /// The next message; `None` once the watch has ended.
    pub async fn next(&mut self) -> Option<Result<WatchMessage, StoreError>> {
        futures::StreamExt::next(&mut self.stream).await
    }
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// `create` found the key present.
    #[error("key {} already exists", String::from_utf8_lossy(&current.key))]
    AlreadyExists { current: KeyValue },
    /// A compare-and-swap found another revision (or no key); `current` is what is there now.
    #[error("revision conflict on key {}: expected mod_revision {expected}, found {}",
        String::from_utf8_lossy(key),
        current.as_ref().map(|kv| kv.mod_revision.to_string()).unwrap_or_else(|| "no key".into()))]
    Conflict {
        key: Bytes,
        expected: Revision,
        current: Option<KeyValue>,
    },
    /// The key to update or delete does not exist.
    #[error("key {} not found", String::from_utf8_lossy(key))]
    NotFound { key: Bytes },
    /// The requested revision has been compacted away.
    #[error("required revision {requested} has been compacted (compacted revision {compacted})")]
    Compacted {
        requested: Revision,
        compacted: Revision,
    },
    /// The requested revision is newer than the store's current revision.
    #[error("required revision {requested} is a future revision (current revision {current})")]
    FutureRevision {
        requested: Revision,
        current: Revision,
    },
    /// The key plus value exceed [`MAX_WRITE_BYTES`].
    #[error("request too large: key + value is {size} bytes, the limit is {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    /// An argument that no store accepts (empty key, negative revision, …).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The data on disk is damaged; the store refuses to open rather than lose data silently.
    #[error("store file {} is corrupt: {detail}", path.display())]
    Corrupt { path: PathBuf, detail: String },
    /// The store's files are not there although they should be (the caller said the store
    /// must exist, or some of its files remain without the log): opening would start an empty
    /// store and lose every object, so it is refused.
    #[error("store in {} is missing: {detail}", dir.display())]
    Missing { dir: PathBuf, detail: String },
    /// An I/O error; for a write, nothing was acknowledged.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// A previous write could not be made durable; the store accepts no more writes until it is
    /// reopened.
    #[error("store is failed after an earlier write error and accepts no writes: {0}")]
    Failed(String),
    /// The remote backend (etcd) failed or could not be reached.
    #[error("datastore backend error: {0}")]
    Backend(String),
    /// The store has been closed.
    #[error("store is closed")]
    Closed,
}

impl StoreError {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        StoreError::Io {
            context: context.into(),
            source,
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The store contract. Both backends implement it identically; see the crate header.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Read a range at a revision, with an optional limit.
    async fn range(&self, req: RangeRequest) -> Result<RangeResponse>;

    /// Create `key` with `value`; fails with [`StoreError::AlreadyExists`] if the key exists.
    async fn create(&self, key: Bytes, value: Bytes) -> Result<KeyValue>;

    /// Replace `key`'s value if its `mod_revision` is `expected`; fails with
    /// [`StoreError::Conflict`] (carrying the current value) otherwise, including when the key
    /// no longer exists.
    async fn update(&self, key: Bytes, value: Bytes, expected: Revision) -> Result<KeyValue>;

    /// Set `key` to `value` whether or not it exists.
    async fn put(&self, key: Bytes, value: Bytes) -> Result<KeyValue>;

    /// Delete `key`, optionally only if its `mod_revision` is `expected`. Returns the deleted
    /// version and the revision of the delete. [`StoreError::NotFound`] if absent (without
    /// `expected`), [`StoreError::Conflict`] on a revision mismatch (with `expected`).
    async fn delete(&self, key: Bytes, expected: Option<Revision>) -> Result<(KeyValue, Revision)>;

    /// Watch a range from a revision.
    async fn watch(&self, req: WatchRequest) -> Result<Watch>;

    /// Forget every version older than `revision` that is not the latest one of its key as of
    /// `revision`. Reads and watches below `revision` then fail with [`StoreError::Compacted`].
    async fn compact(&self, revision: Revision) -> Result<()>;

    /// Give the space freed by compaction back to the file system.
    async fn reclaim(&self) -> Result<()>;

    /// The current revision (of the last acknowledged write).
    async fn current_revision(&self) -> Result<Revision>;

    /// The revision the store has been compacted to (0 if never).
    async fn compacted_revision(&self) -> Result<Revision>;

    /// Backend name for logs and metrics: "embedded" or "etcd".
    fn backend(&self) -> &'static str;

    /// Whether a progress notification asked for with [`Watch::request_progress`] always comes
    /// after every event up to its revision, so a watcher may take it as "caught up with the
    /// store as of then" (what a read from a watch cache needs to be as fresh as a read from
    /// the store).
    fn ordered_progress(&self) -> bool {
        true
    }

    /// One key at a revision (0 = current).
    async fn get(&self, key: Bytes, revision: Revision) -> Result<Option<KeyValue>> {
        let mut resp = self
            .range(RangeRequest::new(KeyRange::key(key)).at(revision))
            .await?;
        Ok(resp.kvs.pop())
    }

    /// Number of keys in a range now.
    async fn count(&self, range: KeyRange) -> Result<i64> {
        let resp = self
            .range(RangeRequest {
                range,
                revision: 0,
                limit: 0,
                count_only: true,
            })
            .await?;
        Ok(resp.count)
    }
}

/// A negative expected revision is an invalid argument on every backend, not a conflict.
pub(crate) fn check_expected(expected: Revision) -> Result<()> {
    if expected < 0 {
        return Err(StoreError::Invalid(format!(
            "negative expected revision {expected}"
        )));
    }
    Ok(())
}

/// Checks every backend applies to a write before doing anything.
pub fn check_write(key: &[u8], value: &[u8]) -> Result<()> {
    if key.is_empty() {
        return Err(StoreError::Invalid("key must not be empty".into()));
    }
    let size = key.len() + value.len();
    if size > MAX_WRITE_BYTES {
        return Err(StoreError::TooLarge {
            size,
            limit: MAX_WRITE_BYTES,
        });
    }
    Ok(())
}

/// Checks every backend applies to a key range.
pub fn check_range(range: &KeyRange) -> Result<()> {
    if range.start.is_empty() && range.end.is_none() {
        return Err(StoreError::Invalid("key must not be empty".into()));
    }
    Ok(())
}

/// How often an idle watch with `progress_notify` reports progress, unless configured otherwise.
pub const DEFAULT_PROGRESS_INTERVAL: Duration = Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_last_byte() {
        assert_eq!(&prefix_end(b"/registry/pods/")[..], b"/registry/pods0");
        assert_eq!(&prefix_end(b"a\xff")[..], b"b");
        assert!(prefix_end(b"\xff\xff").is_empty());
        assert!(prefix_end(b"").is_empty());
    }

    #[test]
    fn range_contains() {
        let r = KeyRange::prefix(Bytes::from_static(b"/a/"));
        assert!(r.contains(b"/a/x"));
        assert!(!r.contains(b"/a"));
        assert!(!r.contains(b"/b/"));
        assert!(KeyRange::between(Bytes::from_static(b"m"), Bytes::new()).contains(b"zzz"));
        assert!(KeyRange::key(Bytes::from_static(b"k")).contains(b"k"));
        assert!(!KeyRange::key(Bytes::from_static(b"k")).contains(b"k2"));
    }

    #[test]
    fn write_limits() {
        assert!(matches!(
            check_write(b"", b"v"),
            Err(StoreError::Invalid(_))
        ));
        let big = vec![0u8; MAX_WRITE_BYTES];
        assert!(matches!(
            check_write(b"k", &big),
            Err(StoreError::TooLarge { .. })
        ));
        assert!(check_write(b"k", &big[1..]).is_ok());
    }
}
