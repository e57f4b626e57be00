//! The embedded MVCC engine: Rudder's default store, files under `<data-dir>/server/db`.
//!
//! Why not redb (or sled, rocksdb): this is a log-structured engine written for exactly the
//! etcd contract. Every write is one revision appended to a write-ahead log; a dedicated writer
//! thread takes every request waiting for it, writes them as one CRC-framed batch and makes it
//! durable with a single `fdatasync` (group commit), so 64 concurrent writers cost one sync, not
//! 64, and no B-tree pages are rewritten per commit. The MVCC index (key → versions) lives in
//! memory like etcd's own `treeIndex`; the latest value of each key stays in memory and older
//! versions are read back from the log by offset. `scripts/bench store` measures the result
//! against a real etcd; `docs/benchmarks.md` has the figures.
//!
//! Files (see [`format`]): `wal-<seq>.seg` preallocated segments, `checkpoint-<seq>.ckpt` holding
//! every retained version as of a revision (written by [`Embedded::checkpoint`] after compaction
//! so that old segments can be deleted and disk space given back), `LOCK` (one process at a
//! time), `clean-shutdown` (present only after a clean close: where the log ended). Recovery
//! replays the newest checkpoint and the segments after it; after a crash a torn final write
//! (never acknowledged) is discarded, and any other damage, or any damage at all after a clean
//! close, refuses to open with the file and offset named (rules in [`wal`]). A directory whose
//! log is gone while other files remain, or that holds no store when the caller requires one,
//! is refused as [`StoreError::Missing`] rather than opened empty. Everything the store
//! creates is private (directories 0700, files 0600; looser modes are tightened at open), as
//! the log holds Secrets.
//!
//! Concurrency: readers share a `RwLock` over the index; only the writer thread mutates it,
//! after the batch is durable, and fans the batch out to watchers in the same critical section,
//! so a watch that registers under the read lock sees every later revision exactly once.

mod format;
mod index;
mod wal;

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use tokio::sync::{mpsc, oneshot, Notify};

pub use format::{read_checkpoint, CheckpointHeader, CheckpointWriter, Record};
use format::{PayloadWriter, MAX_BATCH_BYTES};
use index::{make_event, FileId, Index, Loc, Version, CHECKPOINT_BIT};
use wal::{checkpoint_name, io_err, parse_name, segment_name, ActiveSegment};

use crate::{
    check_range, check_write, Event, KeyRange, KeyValue, ProgressRequester, RangeRequest,
    RangeResponse, Result, Revision, Store, StoreError, Watch, WatchMessage, WatchRequest,
    DEFAULT_PROGRESS_INTERVAL,
};

/// How to open an embedded store.
#[derive(Clone, Debug)]
pub struct EmbeddedOptions {
    pub dir: PathBuf,
    /// Capacity each new WAL segment is preallocated to.
    pub segment_size: u64,
    /// How often an idle watch with `progress_notify` reports progress.
    pub progress_interval: Duration,
    /// Refuse to open ([`StoreError::Missing`]) unless the directory already holds a store
    /// (a WAL segment or a checkpoint), instead of starting an empty one. For callers that know
    /// a store existed, e.g. a server whose other state is there.
    pub require_existing: bool,
}

impl EmbeddedOptions {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        EmbeddedOptions {
            dir: dir.into(),
            segment_size: 64 << 20,
            progress_interval: DEFAULT_PROGRESS_INTERVAL,
            require_existing: false,
        }
    }
}

/// Batches a watcher may have queued before it is considered lagging and switched to catching
/// up from the index (as etcd's "unsynced" watchers).
const WATCH_QUEUE: usize = 1024;
/// Revisions a catching-up watcher reads per lock acquisition.
const CATCHUP_CHUNK: i64 = 1000;

/// The events of one durable batch, shared by every watcher.
struct WatchBatch {
    revision: Revision,
    events: Vec<Event>,
}

struct Slot {
    tx: mpsc::Sender<Arc<WatchBatch>>,
}

struct Inner {
    index: Index,
    /// Open handles of every segment and checkpoint that values may be read from.
    files: HashMap<FileId, Arc<File>>,
    /// Capacity of every segment on disk, by sequence number.
    segments: BTreeMap<u64, u64>,
    /// The current checkpoint: sequence number and size.
    checkpoint: Option<(u64, u64)>,
    /// Set when a write could not be made durable: no more writes until reopened.
    failed: Option<String>,
    closed: bool,
}

impl Inner {
    fn value(&self, v: &Version) -> Result<Bytes> {
        if let Some(value) = &v.value {
            return Ok(value.clone());
        }
        let Some(loc) = v.loc else {
            return Ok(Bytes::new());
        };
        let file = self
            .files
            .get(&loc.file)
            .ok_or_else(|| StoreError::Backend(format!("value in unknown file {:x}", loc.file)))?;
        format::read_at(file, loc.off, loc.len as usize)
            .map_err(|e| StoreError::io("read an older version from the log", e))
    }

    fn kv(&self, key: &Bytes, v: &Version) -> Result<KeyValue> {
        Ok(KeyValue {
            key: key.clone(),
            value: self.value(v)?,
            create_revision: v.create_rev,
            mod_revision: v.mod_rev,
            version: v.version,
        })
    }
}

struct Shared {
    dir: PathBuf,
    opts: EmbeddedOptions,
    state: RwLock<Inner>,
    watchers: Mutex<Vec<Slot>>,
}

enum Op {
    Create {
        key: Bytes,
        value: Bytes,
    },
    Update {
        key: Bytes,
        value: Bytes,
        expected: Revision,
    },
    Put {
        key: Bytes,
        value: Bytes,
    },
    Delete {
        key: Bytes,
        expected: Option<Revision>,
    },
    Compact {
        rev: Revision,
    },
    /// Close the active segment after this batch; answers with the new segment's sequence
    /// number and the last revision in the closed ones.
    Rotate,
}

enum Reply {
    Kv(KeyValue),
    Deleted(KeyValue, Revision),
    Done,
    Rotated(u64, Revision),
}

struct Request {
    op: Op,
    reply: oneshot::Sender<Result<Reply>>,
}

/// The embedded store. See the module documentation.
pub struct Embedded {
    shared: Arc<Shared>,
    tx: Mutex<Option<std_mpsc::Sender<Request>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// Serialises compaction and checkpoints.
    maintenance: tokio::sync::Mutex<()>,
    _lock: File,
}

/// Counts writes since start (for tests and metrics).
static BATCHES: AtomicU64 = AtomicU64::new(0);

/// Number of durable batches written by every embedded store in this process.
pub fn batches_written() -> u64 {
    BATCHES.load(Ordering::Relaxed)
}

fn lock_dir(dir: &Path) -> Result<File> {
    let path = dir.join("LOCK");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(format::FILE_MODE)
        .open(&path)
        .map_err(io_err("open", &path))?;
    wal::tighten(&path, format::FILE_MODE)?;
    // SAFETY: flock on a descriptor owned by `f`.
    let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if r != 0 {
        return Err(StoreError::io(
            format!(
                "store {} is in use by another process (lock {})",
                dir.display(),
                path.display()
            ),
            std::io::Error::last_os_error(),
        ));
    }
    Ok(f)
}

impl Embedded {
    /// Opens (or creates) the store in `opts.dir`, recovering from the files there.
    pub fn open(opts: EmbeddedOptions) -> Result<Embedded> {
        let dir = opts.dir.clone();
        check_not_missing(&dir, &opts)?;
        wal::private_dir(&dir)?;
        let lock = lock_dir(&dir)?;
        let (inner, active) = recover(&dir, &opts)?;
        // From here on a write may be in flight: until the next clean close, the files must be
        // read by the crash rules.
        wal::remove_clean_marker(&dir)?;
        let shared = Arc::new(Shared {
            dir,
            opts,
            state: RwLock::new(inner),
            watchers: Mutex::new(Vec::new()),
        });
        let (tx, rx) = std_mpsc::channel();
        let s = shared.clone();
        let writer = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer_loop(s, rx, active))
            .map_err(|e| StoreError::io("start the store writer thread", e))?;
        Ok(Embedded {
            shared,
            tx: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
            maintenance: tokio::sync::Mutex::new(()),
            _lock: lock,
        })
    }

    async fn submit(&self, op: Op) -> Result<Reply> {
        let (reply, rx) = oneshot::channel();
        {
            let tx = self.tx.lock();
            let tx = tx.as_ref().ok_or(StoreError::Closed)?;
            tx.send(Request { op, reply })
                .map_err(|_| StoreError::Closed)?;
        }
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Stops the writer after the writes already queued; later calls fail with `Closed`.
    pub fn close(&self) {
        self.tx.lock().take();
        if let Some(w) = self.writer.lock().take() {
            let _ = w.join();
        }
    }

    /// Bytes the store's files take on disk (segments at their preallocated size).
    pub fn disk_bytes(&self) -> u64 {
        let st = self.shared.state.read();
        st.segments.values().sum::<u64>() + st.checkpoint.map_or(0, |c| c.1)
    }

    /// Writes a checkpoint of every retained version and deletes the segments (and older
    /// checkpoint) it covers. This is what gives back the space freed by compaction.
    pub async fn checkpoint(&self) -> Result<()> {
        let _guard = self.maintenance.lock().await;
        self.checkpoint_locked().await
    }

    async fn checkpoint_locked(&self) -> Result<()> {
        let Reply::Rotated(seq, rev) = self.submit(Op::Rotate).await? else {
            return Err(StoreError::Backend("unexpected reply to rotate".into()));
        };
        // Everything at or below `rev` lives in files older than segment `seq`.
        let (versions, files, compacted) = {
            let st = self.shared.state.read();
            let mut versions: Vec<(Bytes, Version)> = Vec::new();
            for (k, vs) in &st.index.keys {
                for v in vs.iter().filter(|v| v.mod_rev <= rev) {
                    versions.push((k.clone(), v.clone()));
                }
            }
            (versions, st.files.clone(), st.index.compacted)
        };
        let dir = self.shared.dir.clone();
        let header = CheckpointHeader {
            seq,
            revision: rev,
            compacted,
        };
        let (path, size, locs) =
            tokio::task::spawn_blocking(move || write_checkpoint(&dir, &header, &versions, &files))
                .await
                .map_err(|e| StoreError::Backend(format!("checkpoint task failed: {e}")))??;
        let ckpt_file = File::open(&path).map_err(io_err("open", &path))?;

        // Point every version still retained at its copy in the checkpoint, then drop the files
        // the checkpoint covers.
        let old_files: Vec<PathBuf>;
        {
            let mut st = self.shared.state.write();
            let new_id = CHECKPOINT_BIT | seq;
            for (key, mod_rev, loc) in locs {
                if let Some(vs) = st.index.keys.get_mut(&key) {
                    if let Some(v) = vs.iter_mut().find(|v| v.mod_rev == mod_rev) {
                        v.loc = Some(Loc {
                            file: new_id,
                            ..loc
                        });
                    }
                }
            }
            st.files.insert(new_id, Arc::new(ckpt_file));
            let mut old = Vec::new();
            let covered: Vec<u64> = st.segments.range(..seq).map(|(s, _)| *s).collect();
            for s in covered {
                st.segments.remove(&s);
                st.files.remove(&s);
                old.push(self.shared.dir.join(segment_name(s)));
            }
            if let Some((old_seq, _)) = st.checkpoint.replace((seq, size)) {
                st.files.remove(&(CHECKPOINT_BIT | old_seq));
                old.push(self.shared.dir.join(checkpoint_name(old_seq)));
            }
            old_files = old;
        }
        for f in &old_files {
            std::fs::remove_file(f).map_err(io_err("remove", f))?;
        }
        wal::sync_dir(&self.shared.dir)?;
        tracing::debug!(
            seq,
            rev,
            removed = old_files.len(),
            "store checkpoint written"
        );
        Ok(())
    }
}

impl Drop for Embedded {
    fn drop(&mut self) {
        self.close();
    }
}

type CheckpointResult = (PathBuf, u64, Vec<(Bytes, Revision, Loc)>);

fn write_checkpoint(
    dir: &Path,
    header: &CheckpointHeader,
    versions: &[(Bytes, Version)],
    files: &HashMap<FileId, Arc<File>>,
) -> Result<CheckpointResult> {
    let path = dir.join(checkpoint_name(header.seq));
    let mut w = CheckpointWriter::create(&path, header)?;
    let mut locs = Vec::with_capacity(versions.len());
    for (key, v) in versions {
        match v.loc {
            None => w.delete(v.mod_rev, key)?,
            Some(loc) => {
                let value = match &v.value {
                    Some(b) => b.clone(),
                    None => {
                        let f = files.get(&loc.file).ok_or_else(|| {
                            StoreError::Backend(format!("value in unknown file {:x}", loc.file))
                        })?;
                        format::read_at(f, loc.off, loc.len as usize)
                            .map_err(|e| StoreError::io("read a version for the checkpoint", e))?
                    }
                };
                let off = w.put(v.mod_rev, v.create_rev, v.version, key, &value)?;
                locs.push((
                    key.clone(),
                    v.mod_rev,
                    Loc {
                        file: 0,
                        off,
                        len: value.len() as u32,
                    },
                ));
            }
        }
    }
    w.finish()?;
    let size = std::fs::metadata(&path)
        .map_err(io_err("stat", &path))?
        .len();
    Ok((path, size, locs))
}

/// Refuses ([`StoreError::Missing`]) a directory without a WAL segment or checkpoint that
/// should have them: other files of a store remain (its log was deleted), or the caller
/// requires an existing store. Creates nothing.
fn check_not_missing(dir: &Path, opts: &EmbeddedOptions) -> Result<()> {
    let missing = |detail: String| StoreError::Missing {
        dir: dir.to_path_buf(),
        detail,
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return if opts.require_existing {
                Err(missing("the directory does not exist".into()))
            } else {
                Ok(())
            };
        }
        Err(e) => return Err(StoreError::io(format!("list {}", dir.display()), e)),
    };
    let mut others = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_err("list", dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if parse_name(&name).is_some() {
            return Ok(());
        }
        // The lock, and unfinished files (removed at open), are no sign of a store.
        if name != "LOCK" && !name.ends_with(".tmp") {
            others.push(name);
        }
    }
    if !others.is_empty() {
        others.sort();
        return Err(missing(format!(
            "no WAL segment or checkpoint, yet {} remain: the log was deleted. Restore it (or \
             a snapshot), or move the directory aside to start an empty store",
            others.join(", ")
        )));
    }
    if opts.require_existing {
        return Err(missing("no WAL segment or checkpoint in it".into()));
    }
    Ok(())
}

/// Rebuilds the index from the files in `dir` and opens the segment to append to.
fn recover(dir: &Path, opts: &EmbeddedOptions) -> Result<(Inner, ActiveSegment)> {
    let mut segments = BTreeMap::new();
    let mut checkpoints = BTreeMap::new();
    for entry in std::fs::read_dir(dir).map_err(io_err("list", dir))? {
        let entry = entry.map_err(io_err("list", dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".tmp") {
            // An unfinished segment or checkpoint: never part of the durable state.
            let p = entry.path();
            std::fs::remove_file(&p).map_err(io_err("remove", &p))?;
            continue;
        }
        match parse_name(&name) {
            Some((false, seq)) => {
                segments.insert(seq, entry.path());
            }
            Some((true, seq)) => {
                checkpoints.insert(seq, entry.path());
            }
            None => {}
        }
        if parse_name(&name).is_some() || name == format::CLEAN_MARKER_NAME {
            wal::tighten(&entry.path(), format::FILE_MODE)?;
        }
    }
    if segments.is_empty() && checkpoints.is_empty() {
        // Checked before the lock was taken; files may have gone since.
        check_not_missing(dir, opts)?;
    }
    // Present only after a clean close: then nothing can be torn, and the log must end where
    // it says.
    let clean = wal::read_clean_marker(dir)?;

    let mut inner = Inner {
        index: Index::new(),
        files: HashMap::new(),
        segments: BTreeMap::new(),
        checkpoint: None,
        failed: None,
        closed: false,
    };

    let mut base_seq = 0;
    if let Some((&seq, path)) = checkpoints.iter().next_back() {
        load_checkpoint(&mut inner, seq, path)?;
        base_seq = seq;
        // Files a finished checkpoint covers, left by a crash before their removal.
        let stale: Vec<PathBuf> = checkpoints
            .range(..seq)
            .map(|(_, p)| p.clone())
            .chain(segments.range(..seq).map(|(_, p)| p.clone()))
            .collect();
        for p in stale {
            std::fs::remove_file(&p).map_err(io_err("remove", &p))?;
        }
        segments = segments.split_off(&seq);
    }

    let seqs: Vec<u64> = segments.keys().copied().collect();
    for (i, seq) in seqs.iter().enumerate() {
        let expected = base_seq + i as u64;
        if *seq != expected {
            return Err(StoreError::Corrupt {
                path: dir.join(segment_name(expected)),
                detail: format!(
                    "missing: the log continues at {} (data between would be lost)",
                    segment_name(*seq)
                ),
            });
        }
    }

    let mut active = None;
    let mut prev_unsealed: Option<(PathBuf, wal::ScannedSegment)> = None;
    for (i, (seq, path)) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        let scanned = wal::scan_segment(path, last, clean.is_some())?;
        if scanned.seq != *seq {
            return Err(StoreError::Corrupt {
                path: path.clone(),
                detail: format!(
                    "header says segment {} but the name says {seq}",
                    scanned.seq
                ),
            });
        }
        // The writer creates a segment before sealing the one before it, so an unsealed
        // segment may only be followed by the newest one, still empty (a crash in between).
        if let Some((unsealed, meta)) = prev_unsealed.take() {
            if clean.is_some() {
                return Err(StoreError::Corrupt {
                    path: unsealed,
                    detail: format!(
                        "not sealed, yet {} follows it and the store was shut down cleanly",
                        segment_name(*seq)
                    ),
                });
            }
            if !(last && scanned.frames.is_empty()) {
                return Err(StoreError::Corrupt {
                    path: unsealed,
                    detail: format!(
                        "not sealed, yet {} follows it: records are missing",
                        segment_name(*seq)
                    ),
                });
            }
            // Finish the interrupted roll-over before anything lands in the new segment:
            // otherwise the next open would find records after an unsealed segment.
            wal::reopen_active(&unsealed, &meta)?
                .seal(*seq)
                .map_err(io_err("seal", &unsealed))?;
        }

        if scanned.sealed && last {
            return Err(StoreError::Corrupt {
                path: dir.join(segment_name(seq + 1)),
                detail: format!(
                    "missing: {} is sealed and names it as the next segment",
                    segment_name(*seq)
                ),
            });
        }
        for frame in &scanned.frames {
            for record in &frame.records {
                replay(&mut inner.index, *seq, frame.payload_off, record).map_err(|detail| {
                    StoreError::Corrupt {
                        path: path.clone(),
                        detail,
                    }
                })?;
            }
        }
        inner.segments.insert(*seq, scanned.capacity);
        if last {
            if let Some(m) = &clean {
                check_clean_end(dir, path, m, &scanned, inner.index.rev)?;
            }
            let seg = wal::reopen_active(path, &scanned)?;
            inner.files.insert(*seq, seg.file.clone());
            active = Some(seg);
        } else {
            let f = File::open(path).map_err(io_err("open", path))?;
            inner.files.insert(*seq, Arc::new(f));
            if !scanned.sealed {
                let meta = wal::ScannedSegment {
                    frames: Vec::new(),
                    ..scanned
                };
                prev_unsealed = Some((path.clone(), meta));
            }
        }
    }
    if let (Some(m), None) = (&clean, &active) {
        return Err(StoreError::Corrupt {
            path: dir.join(segment_name(m.seq)),
            detail: format!(
                "missing: the store was shut down cleanly with it as the newest segment \
                 (revision {})",
                m.revision
            ),
        });
    }
    let active = match active {
        Some(a) => a,
        None if inner.checkpoint.is_some() => {
            // A checkpoint is only ever written after its segment exists.
            return Err(StoreError::Corrupt {
                path: dir.join(segment_name(base_seq)),
                detail: "missing: the checkpoint says the log continues in it".into(),
            });
        }
        None => {
            let seg = ActiveSegment::create(dir, base_seq, opts.segment_size)?;
            inner.files.insert(seg.seq, seg.file.clone());
            inner.segments.insert(seg.seq, seg.capacity);
            seg
        }
    };
    Ok((inner, active))
}

/// After a clean close the newest segment must end exactly where the marker says.
fn check_clean_end(
    dir: &Path,
    path: &Path,
    m: &format::CleanMarker,
    newest: &wal::ScannedSegment,
    rev: Revision,
) -> Result<()> {
    let marker = dir.join(format::CLEAN_MARKER_NAME);
    if newest.seq != m.seq {
        return Err(StoreError::Corrupt {
            path: dir.join(segment_name(m.seq)),
            detail: format!(
                "the store was shut down cleanly with it as the newest segment, but the newest \
                 is {} ({})",
                segment_name(newest.seq),
                marker.display()
            ),
        });
    }
    if newest.end != m.end || rev != m.revision {
        return Err(StoreError::Corrupt {
            path: path.to_path_buf(),
            detail: format!(
                "the log ends at byte {} (revision {rev}), but the store was shut down cleanly \
                 with it ending at byte {} (revision {}): {} ({})",
                newest.end,
                m.end,
                m.revision,
                if newest.end < m.end {
                    "acknowledged writes are missing"
                } else {
                    "frames appeared after the shutdown"
                },
                marker.display()
            ),
        });
    }
    Ok(())
}

fn load_checkpoint(inner: &mut Inner, seq: u64, path: &Path) -> Result<()> {
    let (header, records) = read_checkpoint(path)?;
    if header.seq != seq {
        return Err(StoreError::Corrupt {
            path: path.to_path_buf(),
            detail: format!(
                "header says checkpoint {} but the name says {seq}",
                header.seq
            ),
        });
    }
    let file_id = CHECKPOINT_BIT | seq;
    let ix = &mut inner.index;
    // Every revision in compacted..=revision changed a version the checkpoint keeps (one
    // revision per put or delete), so the log of revisions to rebuild is about as long as the
    // records; a header claiming far more is damage, and must not size an allocation.
    let span = header.revision - header.compacted.max(1) + 1;
    let most = (records.len() as i64)
        .saturating_mul(2)
        .saturating_add(1024);
    if span > most {
        return Err(StoreError::Corrupt {
            path: path.to_path_buf(),
            detail: format!(
                "header says revisions {}..={} are retained, but the file holds only {} records",
                header.compacted,
                header.revision,
                records.len()
            ),
        });
    }
    let mut revs: Vec<(Revision, Bytes)> = Vec::with_capacity(records.len());
    for r in records {
        match r.record {
            Record::Put {
                rev,
                create_rev,
                version,
                key,
                value,
                ..
            } => {
                let versions = ix.keys.entry(key.clone()).or_default();
                if let Some(prev) = versions.last_mut() {
                    prev.value = None;
                }
                ix.retained_bytes += (key.len() + value.len()) as u64;
                versions.push(Version {
                    mod_rev: rev,
                    create_rev,
                    version,
                    loc: Some(Loc {
                        file: file_id,
                        off: r.value_file_off,
                        len: value.len() as u32,
                    }),
                    value: Some(value),
                });
                revs.push((rev, key));
            }
            Record::Delete { rev, key } => {
                let versions = ix.keys.entry(key.clone()).or_default();
                if let Some(prev) = versions.last_mut() {
                    prev.value = None;
                }
                ix.retained_bytes += key.len() as u64;
                versions.push(Version {
                    mod_rev: rev,
                    create_rev: 0,
                    version: 0,
                    loc: None,
                    value: None,
                });
                revs.push((rev, key));
            }
            _ => {
                return Err(StoreError::Corrupt {
                    path: path.to_path_buf(),
                    detail: "unexpected record kind in a checkpoint".into(),
                })
            }
        }
    }
    // Versions were written key by key in revision order; the log of revisions is rebuilt
    // from them.
    revs.sort_unstable_by_key(|(r, _)| *r);
    ix.rev = header.revision;
    ix.compacted = header.compacted;
    ix.revlog_base = header.compacted.max(1);
    for (rev, key) in revs {
        if rev < ix.revlog_base {
            continue;
        }
        let i = (rev - ix.revlog_base) as usize;
        if ix.revlog.len() <= i {
            ix.revlog.resize(i + 1, None);
        }
        ix.revlog[i] = Some(key);
    }
    let upto = (header.revision - ix.revlog_base + 1).max(0) as usize;
    if ix.revlog.len() < upto {
        ix.revlog.resize(upto, None);
    }
    let size = std::fs::metadata(path).map_err(io_err("stat", path))?.len();
    let f = File::open(path).map_err(io_err("open", path))?;
    inner.files.insert(file_id, Arc::new(f));
    inner.checkpoint = Some((seq, size));
    Ok(())
}

fn replay(
    ix: &mut Index,
    seq: u64,
    payload_off: u64,
    record: &Record,
) -> std::result::Result<(), String> {
    let next = |ix: &Index, rev: Revision| {
        if rev == ix.rev + 1 {
            Ok(())
        } else {
            Err(format!(
                "revision {rev} follows revision {} (a write is missing)",
                ix.rev
            ))
        }
    };
    match record {
        Record::Put {
            rev,
            create_rev,
            version,
            key,
            value,
            value_off,
        } => {
            next(ix, *rev)?;
            let loc = Loc {
                file: seq,
                off: payload_off + *value_off as u64,
                len: value.len() as u32,
            };
            ix.apply_put(key.clone(), *rev, *create_rev, *version, value.clone(), loc);
        }
        Record::Delete { rev, key } => {
            next(ix, *rev)?;
            ix.apply_delete(key.clone(), *rev);
        }
        Record::Compact { rev } if *rev > ix.rev => {
            return Err(format!(
                "compaction to revision {rev}, beyond the current revision {}",
                ix.rev
            ))
        }
        Record::Compact { rev } => ix.compact(*rev),
        Record::Seal { .. } => {}
        Record::End { .. } => return Err("END record in a WAL segment".into()),
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The writer thread.

fn op_bytes(op: &Op) -> usize {
    match op {
        Op::Create { key, value } | Op::Update { key, value, .. } | Op::Put { key, value } => {
            key.len() + value.len() + 48
        }
        Op::Delete { key, .. } => key.len() + 24,
        Op::Compact { .. } | Op::Rotate => 16,
    }
}

fn writer_loop(shared: Arc<Shared>, rx: std_mpsc::Receiver<Request>, mut seg: ActiveSegment) {
    while let Ok(first) = rx.recv() {
        let mut bytes = op_bytes(&first.op);
        let mut batch = vec![first];
        while bytes < MAX_BATCH_BYTES {
            match rx.try_recv() {
                Ok(r) => {
                    bytes += op_bytes(&r.op);
                    batch.push(r);
                }
                Err(_) => break,
            }
        }
        process_batch(&shared, &mut seg, batch);
    }
    let mut st = shared.state.write();
    st.closed = true;
    shared.watchers.lock().clear();
    // Every frame is durable and none will follow: vouch for where the log ends, unless a
    // write failed (then the end of the file is unknown and the crash rules must apply).
    if st.failed.is_none() {
        let marker = format::CleanMarker {
            seq: seg.seq,
            end: seg.offset,
            revision: st.index.rev,
        };
        if let Err(e) = wal::write_clean_marker(&shared.dir, &marker) {
            tracing::warn!("no clean-shutdown marker (the next open uses the crash rules): {e}");
        }
    }
}

/// A validated write waiting for its batch to become durable.
enum Staged {
    Put {
        key: Bytes,
        value: Bytes,
        rev: Revision,
        create_rev: Revision,
        version: i64,
        value_off: usize,
        prev: Option<KeyValue>,
    },
    Delete {
        key: Bytes,
        rev: Revision,
        prev: KeyValue,
    },
    Compact(Revision),
    Rotate,
}

/// A request's reply channel and what validation made of it.
type Answer = (oneshot::Sender<Result<Reply>>, Result<Staged>);

fn process_batch(shared: &Shared, seg: &mut ActiveSegment, batch: Vec<Request>) {
    let mut answers: Vec<Answer> = Vec::with_capacity(batch.len());
    let mut payload = PayloadWriter::default();
    let mut rotate = false;
    {
        let st = shared.state.read();
        if let Some(why) = &st.failed {
            for r in batch {
                let _ = r.reply.send(Err(StoreError::Failed(why.clone())));
            }
            return;
        }
        // Keys written earlier in this batch: their newest version (None = deleted).
        let mut overlay: HashMap<Bytes, Option<KeyValue>> = HashMap::new();
        let mut rev = st.index.rev;
        let mut compacted = st.index.compacted;
        let current =
            |overlay: &HashMap<Bytes, Option<KeyValue>>, key: &Bytes| match overlay.get(key) {
                Some(v) => v.clone(),
                None => st.index.live_kv(key),
            };
        for req in batch {
            let staged = match req.op {
                Op::Create { key, value } => match current(&overlay, &key) {
                    Some(cur) => Err(StoreError::AlreadyExists { current: cur }),
                    None => {
                        rev += 1;
                        Ok(stage_put(&mut payload, &mut overlay, key, value, rev, None))
                    }
                },
                Op::Update {
                    key,
                    value,
                    expected,
                } => {
                    let cur = current(&overlay, &key);
                    if cur.as_ref().map(|c| c.mod_revision) != Some(expected) {
                        Err(StoreError::Conflict {
                            key,
                            expected,
                            current: cur,
                        })
                    } else {
                        rev += 1;
                        Ok(stage_put(&mut payload, &mut overlay, key, value, rev, cur))
                    }
                }
                Op::Put { key, value } => {
                    let cur = current(&overlay, &key);
                    rev += 1;
                    Ok(stage_put(&mut payload, &mut overlay, key, value, rev, cur))
                }
                Op::Delete { key, expected } => {
                    let cur = current(&overlay, &key);
                    match (cur, expected) {
                        (cur, Some(e)) if cur.as_ref().map(|c| c.mod_revision) != Some(e) => {
                            Err(StoreError::Conflict {
                                key,
                                expected: e,
                                current: cur,
                            })
                        }
                        (None, _) => Err(StoreError::NotFound { key }),
                        (Some(prev), _) => {
                            rev += 1;
                            payload.delete(rev, &key);
                            overlay.insert(key.clone(), None);
                            Ok(Staged::Delete { key, rev, prev })
                        }
                    }
                }
                Op::Compact { rev: c } => {
                    if c <= compacted {
                        Err(StoreError::Compacted {
                            requested: c,
                            compacted,
                        })
                    } else if c > rev {
                        Err(StoreError::FutureRevision {
                            requested: c,
                            current: rev,
                        })
                    } else {
                        compacted = c;
                        payload.compact(c);
                        Ok(Staged::Compact(c))
                    }
                }
                Op::Rotate => {
                    rotate = true;
                    Ok(Staged::Rotate)
                }
            };
            answers.push((req.reply, staged));
        }
    }

    let fail_all = |answers: Vec<Answer>, err: &dyn Fn() -> StoreError| {
        for (tx, staged) in answers {
            let _ = tx.send(staged.and_then(|_| Err(err())));
        }
    };

    let mut payload_off = 0;
    if !payload.is_empty() {
        let frame_len = format::FRAME_HEADER + payload.len();
        if !seg.fits(frame_len) {
            if let Err(e) = roll_over(shared, seg, frame_len) {
                // Nothing was written: the store stays healthy and the callers get the error.
                let msg = e.to_string();
                fail_all(answers, &|| StoreError::Io {
                    context: msg.clone(),
                    source: std::io::Error::other("write not acknowledged"),
                });
                return;
            }
        }
        match seg.append(&payload.buf) {
            Ok(off) => payload_off = off,
            Err(e) => {
                // The state of the file is unknown after a failed write or fsync: refuse every
                // later write rather than risk acknowledging something that is not durable.
                let msg = format!(
                    "write or fsync of {} failed: {e}",
                    shared.dir.join(segment_name(seg.seq)).display()
                );
                tracing::error!("{msg}");
                shared.state.write().failed = Some(msg.clone());
                fail_all(answers, &|| StoreError::Io {
                    context: msg.clone(),
                    source: std::io::Error::other("write not acknowledged"),
                });
                return;
            }
        }
        BATCHES.fetch_add(1, Ordering::Relaxed);
    }

    // Durable: make it visible, tell the watchers, answer.
    let mut events = Vec::new();
    let mut replies = Vec::with_capacity(answers.len());
    {
        let mut st = shared.state.write();
        for (tx, staged) in answers {
            let reply = match staged {
                Err(e) => Err(e),
                Ok(Staged::Put {
                    key,
                    value,
                    rev,
                    create_rev,
                    version,
                    value_off,
                    prev,
                }) => {
                    let loc = Loc {
                        file: seg.seq,
                        off: payload_off + value_off as u64,
                        len: value.len() as u32,
                    };
                    st.index
                        .apply_put(key.clone(), rev, create_rev, version, value.clone(), loc);
                    let kv = KeyValue {
                        key: key.clone(),
                        value,
                        create_revision: create_rev,
                        mod_revision: rev,
                        version,
                    };
                    events.push(make_event(&key, Some(kv.clone()), prev, rev));
                    Ok(Reply::Kv(kv))
                }
                Ok(Staged::Delete { key, rev, prev }) => {
                    st.index.apply_delete(key.clone(), rev);
                    events.push(make_event(&key, None, Some(prev.clone()), rev));
                    Ok(Reply::Deleted(prev, rev))
                }
                Ok(Staged::Compact(c)) => {
                    st.index.compact(c);
                    Ok(Reply::Done)
                }
                // Answered below, once the new segment exists.
                Ok(Staged::Rotate) => {
                    replies.push((tx, None));
                    continue;
                }
            };
            replies.push((tx, Some(reply)));
        }
        if !events.is_empty() {
            let batch = Arc::new(WatchBatch {
                revision: st.index.rev,
                events,
            });
            shared
                .watchers
                .lock()
                .retain(|slot| slot.tx.try_send(batch.clone()).is_ok());
        }
    }
    let rotated = if rotate {
        let rev = shared.state.read().index.rev;
        Some(roll_over(shared, seg, 0).map(|()| Reply::Rotated(seg.seq, rev)))
    } else {
        None
    };
    for (tx, reply) in replies {
        let reply = match reply {
            Some(r) => r,
            None => match &rotated {
                Some(Ok(Reply::Rotated(s, r))) => Ok(Reply::Rotated(*s, *r)),
                Some(Err(e)) => Err(StoreError::Backend(e.to_string())),
                _ => Err(StoreError::Backend("rotation did not run".into())),
            },
        };
        let _ = tx.send(reply);
    }
}

fn stage_put(
    payload: &mut PayloadWriter,
    overlay: &mut HashMap<Bytes, Option<KeyValue>>,
    key: Bytes,
    value: Bytes,
    rev: Revision,
    prev: Option<KeyValue>,
) -> Staged {
    let (create_rev, version) = match &prev {
        Some(p) => (p.create_revision, p.version + 1),
        None => (rev, 1),
    };
    let value_off = payload.put(rev, create_rev, version, &key, &value);
    overlay.insert(
        key.clone(),
        Some(KeyValue {
            key: key.clone(),
            value: value.clone(),
            create_revision: create_rev,
            mod_revision: rev,
            version,
        }),
    );
    Staged::Put {
        key,
        value,
        rev,
        create_rev,
        version,
        value_off,
        prev,
    }
}

/// Starts the next segment, big enough for a frame of `frame_len` bytes.
fn roll_over(shared: &Shared, seg: &mut ActiveSegment, frame_len: usize) -> Result<()> {
    let capacity = shared
        .opts
        .segment_size
        .max((format::SEGMENT_HEADER + frame_len + format::SEAL_FRAME) as u64);
    let next = ActiveSegment::create(&shared.dir, seg.seq + 1, capacity)?;
    if let Err(e) = seg.seal(next.seq) {
        let msg = format!(
            "sealing {} failed: {e}",
            shared.dir.join(segment_name(seg.seq)).display()
        );
        shared.state.write().failed = Some(msg.clone());
        return Err(StoreError::Failed(msg));
    }
    let mut st = shared.state.write();
    st.files.insert(next.seq, next.file.clone());
    st.segments.insert(next.seq, next.capacity);
    *seg = next;
    Ok(())
}

/// Creates a store directory (and missing parents) with mode 0700.
pub(crate) fn create_private_dir(dir: &Path) -> Result<()> {
    wal::private_dir(dir)
}

/// Starts the log of a store whose only file is a checkpoint (after a snapshot restore).
pub(crate) fn start_log(dir: &Path, seq: u64) -> Result<()> {
    ActiveSegment::create(dir, seq, EmbeddedOptions::new(dir).segment_size).map(drop)
}

// ---------------------------------------------------------------------------------------------
// Watches.

struct NotifyRequester(Arc<Notify>);

impl ProgressRequester for NotifyRequester {
    fn request_progress(&self) {
        self.0.notify_one();
    }
}

type Out = mpsc::Sender<Result<WatchMessage>>;

enum CatchUp {
    Compacted(Revision),
    Live(mpsc::Receiver<Arc<WatchBatch>>),
    Events(Revision, Vec<Event>),
    Failed(StoreError),
    Closed,
}

/// One step of catching up from `next`: events from the index, or registration for live
/// batches once caught up (under the same read lock, so nothing is missed or repeated).
fn catch_up(shared: &Shared, range: &KeyRange, next: &mut Revision) -> CatchUp {
    let st = shared.state.read();
    if st.closed {
        return CatchUp::Closed;
    }
    if *next < st.index.compacted {
        return CatchUp::Compacted(st.index.compacted);
    }
    if *next > st.index.rev {
        let (tx, rx) = mpsc::channel(WATCH_QUEUE);
        shared.watchers.lock().push(Slot { tx });
        return CatchUp::Live(rx);
    }
    let end = st.index.rev.min(*next + CATCHUP_CHUNK - 1);
    let mut events = Vec::new();
    for r in *next..=end {
        if let Some((key, v, prev)) = st.index.event_at(r, range) {
            let build = || -> Result<Event> {
                let prev = prev.map(|p| st.kv(&key, p)).transpose()?;
                let new = if v.is_tombstone() {
                    None
                } else {
                    Some(st.kv(&key, v)?)
                };
                Ok(make_event(&key, new, prev, r))
            };
            match build() {
                Ok(e) => events.push(e),
                Err(e) => return CatchUp::Failed(e),
            }
        }
    }
    *next = end + 1;
    CatchUp::Events(st.index.rev, events)
}

async fn watch_task(
    shared: Arc<Shared>,
    range: KeyRange,
    mut next: Revision,
    out: Out,
    progress: Arc<Notify>,
    progress_notify: bool,
) {
    let interval = shared.opts.progress_interval;
    'catch_up: loop {
        let mut live = loop {
            match catch_up(&shared, &range, &mut next) {
                CatchUp::Closed => return,
                CatchUp::Compacted(compacted) => {
                    let _ = out
                        .send(Err(StoreError::Compacted {
                            requested: next,
                            compacted,
                        }))
                        .await;
                    return;
                }
                CatchUp::Failed(e) => {
                    let _ = out.send(Err(e)).await;
                    return;
                }
                CatchUp::Live(rx) => break rx,
                CatchUp::Events(revision, events) => {
                    if !events.is_empty()
                        && out
                            .send(Ok(WatchMessage::Events { revision, events }))
                            .await
                            .is_err()
                    {
                        return;
                    }
                }
            }
        };
        let mut idle_until = tokio::time::Instant::now() + interval;
        loop {
            tokio::select! {
                batch = live.recv() => match batch {
                    Some(batch) => {
                        if !deliver(&batch, &range, &mut next, &out).await {
                            return;
                        }
                        idle_until = tokio::time::Instant::now() + interval;
                    }
                    // Dropped by the writer: the queue overflowed (catch up from the index) or
                    // the store closed (catch_up notices).
                    None => continue 'catch_up,
                },
                _ = progress.notified() => {
                    match report_progress(&shared, &mut live, &range, &mut next, &out).await {
                        Some(true) => {}
                        Some(false) => continue 'catch_up,
                        None => return,
                    }
                }
                _ = tokio::time::sleep_until(idle_until), if progress_notify => {
                    match report_progress(&shared, &mut live, &range, &mut next, &out).await {
                        Some(true) => {}
                        Some(false) => continue 'catch_up,
                        None => return,
                    }
                    idle_until = tokio::time::Instant::now() + interval;
                }
                _ = out.closed() => return,
            }
        }
    }
}

/// Sends the events of a live batch that this watch wants. False if the consumer is gone.
async fn deliver(batch: &WatchBatch, range: &KeyRange, next: &mut Revision, out: &Out) -> bool {
    let events: Vec<Event> = batch
        .events
        .iter()
        .filter(|e| e.kv.mod_revision >= *next && range.contains(&e.kv.key))
        .cloned()
        .collect();
    if batch.revision >= *next {
        *next = batch.revision + 1;
    }
    events.is_empty()
        || out
            .send(Ok(WatchMessage::Events {
                revision: batch.revision,
                events,
            }))
            .await
            .is_ok()
}

/// Sends a progress notification once every queued batch is delivered. `Some(false)`: the
/// watch fell behind and must catch up first; `None`: the consumer is gone.
async fn report_progress(
    shared: &Shared,
    live: &mut mpsc::Receiver<Arc<WatchBatch>>,
    range: &KeyRange,
    next: &mut Revision,
    out: &Out,
) -> Option<bool> {
    loop {
        // Under the read lock no batch can be published, so an empty queue means every batch
        // up to `rev` has been delivered.
        let (rev, item) = {
            let st = shared.state.read();
            (st.index.rev, live.try_recv())
        };
        match item {
            Ok(batch) => {
                if !deliver(&batch, range, next, out).await {
                    return None;
                }
            }
            Err(mpsc::error::TryRecvError::Empty) => {
                return out
                    .send(Ok(WatchMessage::Progress { revision: rev }))
                    .await
                    .ok()
                    .map(|()| true);
            }
            Err(mpsc::error::TryRecvError::Disconnected) => return Some(false),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The Store implementation.

#[async_trait]
impl Store for Embedded {
    async fn range(&self, req: RangeRequest) -> Result<RangeResponse> {
        check_range(&req.range)?;
        if req.revision < 0 {
            return Err(StoreError::Invalid(format!(
                "negative revision {}",
                req.revision
            )));
        }
        let st = self.shared.state.read();
        let current = st.index.rev;
        let rev = if req.revision == 0 {
            current
        } else {
            req.revision
        };
        if rev > current {
            return Err(StoreError::FutureRevision {
                requested: rev,
                current,
            });
        }
        if rev < st.index.compacted {
            return Err(StoreError::Compacted {
                requested: rev,
                compacted: st.index.compacted,
            });
        }
        let mut resp = RangeResponse {
            revision: rev,
            ..Default::default()
        };
        let mut last: Option<&Bytes> = None;
        for (key, v) in st.index.visible(&req.range, rev) {
            resp.count += 1;
            if req.count_only {
                continue;
            }
            if req.limit > 0 && resp.kvs.len() >= req.limit {
                resp.more = true;
                continue;
            }
            resp.kvs.push(st.kv(key, v)?);
            last = Some(key);
        }
        if resp.more {
            resp.next_key = last.map(|k| {
                let mut n = k.to_vec();
                n.push(0);
                Bytes::from(n)
            });
        }
        Ok(resp)
    }

    async fn create(&self, key: Bytes, value: Bytes) -> Result<KeyValue> {
        check_write(&key, &value)?;
        match self.submit(Op::Create { key, value }).await? {
            Reply::Kv(kv) => Ok(kv),
            _ => Err(StoreError::Backend("unexpected reply to create".into())),
        }
    }

    async fn update(&self, key: Bytes, value: Bytes, expected: Revision) -> Result<KeyValue> {
        check_write(&key, &value)?;
        crate::check_expected(expected)?;
        match self
            .submit(Op::Update {
                key,
                value,
                expected,
            })
            .await?
        {
            Reply::Kv(kv) => Ok(kv),
            _ => Err(StoreError::Backend("unexpected reply to update".into())),
        }
    }

    async fn put(&self, key: Bytes, value: Bytes) -> Result<KeyValue> {
        check_write(&key, &value)?;
        match self.submit(Op::Put { key, value }).await? {
            Reply::Kv(kv) => Ok(kv),
            _ => Err(StoreError::Backend("unexpected reply to put".into())),
        }
    }

    async fn delete(&self, key: Bytes, expected: Option<Revision>) -> Result<(KeyValue, Revision)> {
        check_write(&key, b"")?;
        if let Some(expected) = expected {
            crate::check_expected(expected)?;
        }
        match self.submit(Op::Delete { key, expected }).await? {
            Reply::Deleted(kv, rev) => Ok((kv, rev)),
            _ => Err(StoreError::Backend("unexpected reply to delete".into())),
        }
    }

    async fn watch(&self, req: WatchRequest) -> Result<Watch> {
        check_range(&req.range)?;
        if req.start_revision < 0 {
            return Err(StoreError::Invalid(format!(
                "negative revision {}",
                req.start_revision
            )));
        }
        let next = if req.start_revision == 0 {
            self.shared.state.read().index.rev + 1
        } else {
            req.start_revision
        };
        let (out, rx) = mpsc::channel(64);
        let notify = Arc::new(Notify::new());
        tokio::spawn(watch_task(
            self.shared.clone(),
            req.range,
            next,
            out,
            notify.clone(),
            req.progress_notify,
        ));
        Ok(Watch::new(
            Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)),
            Box::new(NotifyRequester(notify)),
        ))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        if revision <= 0 {
            return Err(StoreError::Invalid(format!(
                "compaction revision must be positive, got {revision}"
            )));
        }
        let _guard = self.maintenance.lock().await;
        self.submit(Op::Compact { rev: revision }).await.map(|_| ())
    }

    async fn reclaim(&self) -> Result<()> {
        let _guard = self.maintenance.lock().await;
        let (on_disk, retained) = {
            let st = self.shared.state.read();
            (
                st.segments.values().sum::<u64>() + st.checkpoint.map_or(0, |c| c.1),
                st.index.retained_bytes,
            )
        };
        // Rewrite only when at least half of what is on disk could go: amortised, each byte
        // written is copied at most about once more.
        if on_disk <= 2 * retained + self.shared.opts.segment_size {
            return Ok(());
        }
        self.checkpoint_locked().await
    }

    async fn current_revision(&self) -> Result<Revision> {
        Ok(self.shared.state.read().index.rev)
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        Ok(self.shared.state.read().index.compacted)
    }

    fn backend(&self) -> &'static str {
        "embedded"
    }
}
