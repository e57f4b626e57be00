//! Portable snapshots: every live key at one revision, in the embedded checkpoint format (CRC32C
//! frames, an END record with the count, written to a temporary name and renamed once durable).
//!
//! `save` works on any backend through the [`Store`] trait, so a snapshot taken from etcd can be
//! restored into the embedded store and back. [`restore_embedded`] keeps every revision number
//! (clients' resourceVersions stay valid); [`restore_into`] loads an empty store of any backend
//! with fresh revisions (etcd assigns its own).

use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::embedded::{read_checkpoint, CheckpointHeader, CheckpointWriter, Record};
use crate::{KeyRange, RangeRequest, Result, Revision, Store, StoreError};

/// What a snapshot holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotInfo {
    pub revision: Revision,
    pub keys: u64,
    pub value_bytes: u64,
}

/// Every key in the store.
pub fn whole_keyspace() -> KeyRange {
    KeyRange::between(Bytes::from_static(b"\0"), Bytes::new())
}

const PAGE: usize = 1000;

/// Writes a consistent snapshot of `store` (all keys at its current revision) to `path`.
pub async fn save(store: &dyn Store, path: &Path) -> Result<SnapshotInfo> {
    let revision = store.current_revision().await?;
    let header = CheckpointHeader {
        seq: 0,
        revision,
        compacted: revision,
    };
    let mut w = CheckpointWriter::create(path, &header)?;
    let mut info = SnapshotInfo {
        revision,
        keys: 0,
        value_bytes: 0,
    };
    let mut start = whole_keyspace().start;
    loop {
        let resp = store
            .range(
                RangeRequest::new(KeyRange::between(start.clone(), Bytes::new()))
                    .at(revision)
                    .limit(PAGE),
            )
            .await?;
        for kv in &resp.kvs {
            w.put(
                kv.mod_revision,
                kv.create_revision,
                kv.version,
                &kv.key,
                &kv.value,
            )?;
            info.keys += 1;
            info.value_bytes += kv.value.len() as u64;
        }
        match (resp.more, resp.next_key) {
            (true, Some(next)) => start = next,
            _ => break,
        }
    }
    w.finish()?;
    Ok(info)
}

/// Reads and checks a whole snapshot file.
pub fn verify(path: &Path) -> Result<(SnapshotInfo, Vec<Record>)> {
    let (header, records) = read_checkpoint(path)?;
    let mut info = SnapshotInfo {
        revision: header.revision,
        keys: 0,
        value_bytes: 0,
    };
    let mut out = Vec::with_capacity(records.len());
    for r in records {
        match &r.record {
            Record::Put { value, rev, .. } if *rev <= header.revision => {
                info.keys += 1;
                info.value_bytes += value.len() as u64;
            }
            _ => {
                return Err(StoreError::Corrupt {
                    path: path.to_path_buf(),
                    detail: "a snapshot holds only live keys at or below its revision".into(),
                })
            }
        }
        out.push(r.record);
    }
    Ok((info, out))
}

/// Replaces the embedded store in `dir` with the snapshot, keeping its revisions. The store must
/// not be open (the server stopped). Existing files are moved aside to `<dir>.before-restore-<t>`,
/// never deleted. Returns the snapshot's contents and where the old files went.
pub fn restore_embedded(snapshot: &Path, dir: &Path) -> Result<(SnapshotInfo, Option<PathBuf>)> {
    let (info, _) = verify(snapshot)?;
    let mut moved = None;
    if dir.exists() {
        // Refuse while a server holds the store.
        let probe = crate::embedded::Embedded::open(crate::embedded::EmbeddedOptions::new(dir));
        match probe {
            Ok(store) => drop(store),
            Err(e @ StoreError::Io { .. }) if e.to_string().contains("in use") => return Err(e),
            // A damaged store can still be replaced by a good snapshot.
            Err(_) => {}
        }
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut aside = dir.as_os_str().to_owned();
        aside.push(format!(".before-restore-{stamp}"));
        let aside = PathBuf::from(aside);
        std::fs::rename(dir, &aside).map_err(|e| {
            StoreError::io(
                format!("move {} aside to {}", dir.display(), aside.display()),
                e,
            )
        })?;
        moved = Some(aside);
    }
    crate::embedded::create_private_dir(dir)?;
    let target = dir.join(format!("checkpoint-{:016x}.ckpt", 0));
    let mut tmp = target.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::copy(snapshot, &tmp)
        .and_then(|_| std::fs::File::open(&tmp)?.sync_all())
        .and_then(|_| std::fs::rename(&tmp, &target))
        .and_then(|_| std::fs::File::open(dir)?.sync_all())
        .map_err(|e| StoreError::io(format!("write {}", target.display()), e))?;
    crate::embedded::start_log(dir, 0)?;
    // Opening checks the result end to end.
    drop(crate::embedded::Embedded::open(
        crate::embedded::EmbeddedOptions::new(dir),
    )?);
    Ok((info, moved))
}

/// Loads the snapshot into an empty store of any backend (revisions are assigned anew).
pub async fn restore_into(store: &dyn Store, snapshot: &Path) -> Result<SnapshotInfo> {
    let (info, records) = verify(snapshot)?;
    let existing = store.count(whole_keyspace()).await?;
    if existing != 0 {
        return Err(StoreError::Invalid(format!(
            "the target store is not empty ({existing} keys); restore needs an empty datastore"
        )));
    }
    for r in records {
        if let Record::Put { key, value, .. } = r {
            store.create(key, value).await?;
        }
    }
    Ok(info)
}
