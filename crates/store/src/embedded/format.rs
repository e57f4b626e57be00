//! On-disk format of the embedded engine: records, CRC32C frames, segment and checkpoint files.
//!
//! A *frame* is `[payload len u32][payload crc32c u32][header crc32c u32][payload]`, all
//! little-endian. The header CRC covers the first eight bytes, so a damaged length is detected
//! before it is trusted. A frame's payload is a sequence of records:
//!
//! ```text
//! PUT     = 1 rev:i64 create_rev:i64 version:i64 klen:u32 key vlen:u32 value
//! DELETE  = 2 rev:i64 klen:u32 key
//! COMPACT = 3 rev:i64
//! END     = 4 count:u64                (checkpoints only: the number of records before it)
//! SEAL    = 5 next:u64                 (segments only: the last record; segment `next` exists)
//! ```
//!
//! A *segment* (`wal-<seq>.seg`) is preallocated to its capacity (stored in its header) and
//! filled with frames; all bytes after the last frame are zero. When the writer moves on, it
//! first creates the next segment durably, then seals the full one with a SEAL record, so a
//! deleted newest segment is noticed (its predecessor is sealed). A *checkpoint*
//! (`checkpoint-<seq>.ckpt`) holds every retained version as of its revision, covers every segment
//! with a smaller sequence number, and ends with an END record; a portable snapshot file has the
//! same format.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use bytes::{BufMut, Bytes};

use crate::{Revision, StoreError};

/// Modes of everything the store creates: it holds Secrets, so only its owner may read it.
pub const DIR_MODE: u32 = 0o700;
pub const FILE_MODE: u32 = 0o600;

pub const FRAME_HEADER: usize = 12;
pub const SEGMENT_MAGIC: &[u8; 8] = b"RDRWAL01";
pub const CHECKPOINT_MAGIC: &[u8; 8] = b"RDRCKP01";
/// Segment header: magic, seq u64, capacity u64, crc32c of the preceding 24 bytes, padding.
pub const SEGMENT_HEADER: usize = 32;
/// Checkpoint header: magic, seq u64, revision i64, compacted i64, crc32c, padding.
pub const CHECKPOINT_HEADER: usize = 40;
/// Frames the writer builds stay under this many payload bytes (one oversized write excepted,
/// bounded by `MAX_WRITE_BYTES`), so a longer frame on disk is damage, not data.
pub const MAX_BATCH_BYTES: usize = 4 << 20;
pub const MAX_FRAME_PAYLOAD: usize = MAX_BATCH_BYTES + crate::MAX_WRITE_BYTES + 64;

pub const KIND_PUT: u8 = 1;
pub const KIND_DELETE: u8 = 2;
pub const KIND_COMPACT: u8 = 3;
pub const KIND_END: u8 = 4;
pub const KIND_SEAL: u8 = 5;
/// Bytes a frame holding one SEAL record takes; every segment keeps room for it.
pub const SEAL_FRAME: usize = FRAME_HEADER + 9;

/// A decoded record. Values are copied out of the frame so that no record pins a whole frame.
#[derive(Debug, Clone)]
pub enum Record {
    Put {
        rev: Revision,
        create_rev: Revision,
        version: i64,
        key: Bytes,
        value: Bytes,
        /// Offset of the value bytes inside the payload.
        value_off: usize,
    },
    Delete {
        rev: Revision,
        key: Bytes,
    },
    Compact {
        rev: Revision,
    },
    End {
        count: u64,
    },
    Seal {
        next: u64,
    },
}

/// Appends records to a payload buffer.
#[derive(Default)]
pub struct PayloadWriter {
    pub buf: Vec<u8>,
}

impl PayloadWriter {
    /// Returns the offset of the value inside the payload.
    pub fn put(
        &mut self,
        rev: Revision,
        create_rev: Revision,
        version: i64,
        key: &[u8],
        value: &[u8],
    ) -> usize {
        self.buf.put_u8(KIND_PUT);
        self.buf.put_i64_le(rev);
        self.buf.put_i64_le(create_rev);
        self.buf.put_i64_le(version);
        self.buf.put_u32_le(key.len() as u32);
        self.buf.put_slice(key);
        self.buf.put_u32_le(value.len() as u32);
        let off = self.buf.len();
        self.buf.put_slice(value);
        off
    }

    pub fn delete(&mut self, rev: Revision, key: &[u8]) {
        self.buf.put_u8(KIND_DELETE);
        self.buf.put_i64_le(rev);
        self.buf.put_u32_le(key.len() as u32);
        self.buf.put_slice(key);
    }

    pub fn compact(&mut self, rev: Revision) {
        self.buf.put_u8(KIND_COMPACT);
        self.buf.put_i64_le(rev);
    }

    pub fn end(&mut self, count: u64) {
        self.buf.put_u8(KIND_END);
        self.buf.put_u64_le(count);
    }

    pub fn seal(&mut self, next: u64) {
        self.buf.put_u8(KIND_SEAL);
        self.buf.put_u64_le(next);
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

/// The 12-byte header of a frame carrying `payload`.
pub fn frame_header(payload: &[u8]) -> [u8; FRAME_HEADER] {
    let mut h = [0u8; FRAME_HEADER];
    h[0..4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    h[4..8].copy_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    let hc = crc32c::crc32c(&h[0..8]);
    h[8..12].copy_from_slice(&hc.to_le_bytes());
    h
}

/// What a frame header says.
#[derive(Debug, PartialEq, Eq)]
pub enum HeaderState {
    /// All zero: no frame here (end of data).
    Empty,
    /// A valid header announcing a payload of this length and CRC.
    Frame { len: usize, crc: u32 },
    /// Not zero and not valid.
    Damaged,
}

pub fn parse_header(h: &[u8]) -> HeaderState {
    if h.iter().all(|&b| b == 0) {
        return HeaderState::Empty;
    }
    let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
    let crc = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
    let hc = u32::from_le_bytes([h[8], h[9], h[10], h[11]]);
    if crc32c::crc32c(&h[0..8]) != hc || len > MAX_FRAME_PAYLOAD {
        return HeaderState::Damaged;
    }
    HeaderState::Frame { len, crc }
}

fn short(what: &str) -> String {
    format!("record truncated inside a valid frame ({what})")
}

/// Decodes the records of one frame payload.
pub fn decode_payload(payload: &[u8]) -> Result<Vec<Record>, String> {
    let mut out = Vec::new();
    let mut p = 0usize;
    let take = |p: &mut usize, n: usize, what: &str| -> Result<std::ops::Range<usize>, String> {
        if payload.len() - *p < n {
            return Err(short(what));
        }
        let r = *p..*p + n;
        *p += n;
        Ok(r)
    };
    let i64_at = |r: std::ops::Range<usize>| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&payload[r]);
        i64::from_le_bytes(b)
    };
    let u32_at = |r: std::ops::Range<usize>| {
        let mut b = [0u8; 4];
        b.copy_from_slice(&payload[r]);
        u32::from_le_bytes(b) as usize
    };
    while p < payload.len() {
        let kind = payload[p];
        p += 1;
        match kind {
            KIND_PUT => {
                let rev = i64_at(take(&mut p, 8, "rev")?);
                let create_rev = i64_at(take(&mut p, 8, "create_rev")?);
                let version = i64_at(take(&mut p, 8, "version")?);
                let klen = u32_at(take(&mut p, 4, "key length")?);
                let key = Bytes::copy_from_slice(&payload[take(&mut p, klen, "key")?]);
                let vlen = u32_at(take(&mut p, 4, "value length")?);
                let vr = take(&mut p, vlen, "value")?;
                let value_off = vr.start;
                let value = Bytes::copy_from_slice(&payload[vr]);
                out.push(Record::Put {
                    rev,
                    create_rev,
                    version,
                    key,
                    value,
                    value_off,
                });
            }
            KIND_DELETE => {
                let rev = i64_at(take(&mut p, 8, "rev")?);
                let klen = u32_at(take(&mut p, 4, "key length")?);
                let key = Bytes::copy_from_slice(&payload[take(&mut p, klen, "key")?]);
                out.push(Record::Delete { rev, key });
            }
            KIND_COMPACT => {
                let rev = i64_at(take(&mut p, 8, "rev")?);
                out.push(Record::Compact { rev });
            }
            KIND_END => {
                let count = i64_at(take(&mut p, 8, "count")?) as u64;
                out.push(Record::End { count });
            }
            KIND_SEAL => {
                let next = i64_at(take(&mut p, 8, "next")?) as u64;
                out.push(Record::Seal { next });
            }
            other => return Err(format!("unknown record kind {other}")),
        }
    }
    Ok(out)
}

pub fn segment_header(seq: u64, capacity: u64) -> [u8; SEGMENT_HEADER] {
    let mut h = [0u8; SEGMENT_HEADER];
    h[0..8].copy_from_slice(SEGMENT_MAGIC);
    h[8..16].copy_from_slice(&seq.to_le_bytes());
    h[16..24].copy_from_slice(&capacity.to_le_bytes());
    let c = crc32c::crc32c(&h[0..24]);
    h[24..28].copy_from_slice(&c.to_le_bytes());
    h
}

/// Parses a segment header: `(seq, capacity)`.
pub fn parse_segment_header(h: &[u8]) -> Result<(u64, u64), String> {
    if h.len() < 8 || &h[0..8] != SEGMENT_MAGIC {
        return Err("not a Rudder WAL segment (bad magic)".into());
    }
    if h.len() < SEGMENT_HEADER {
        return Err(format!(
            "truncated: {} bytes, shorter than the {SEGMENT_HEADER}-byte segment header",
            h.len()
        ));
    }
    let c = u32::from_le_bytes([h[24], h[25], h[26], h[27]]);
    if crc32c::crc32c(&h[0..24]) != c {
        return Err("segment header checksum mismatch".into());
    }
    let seq = u64::from_le_bytes(h[8..16].try_into().unwrap_or_default());
    let cap = u64::from_le_bytes(h[16..24].try_into().unwrap_or_default());
    // A header with a valid checksum can still be crafted: nothing is sized or indexed by
    // these numbers before they are checked here and against the file's length.
    if seq >= MAX_SEQ {
        return Err(format!("header names impossible sequence number {seq}"));
    }
    if cap < SEGMENT_HEADER as u64 {
        return Err(format!(
            "header names capacity {cap}, smaller than the segment header"
        ));
    }
    Ok((seq, cap))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointHeader {
    pub seq: u64,
    pub revision: Revision,
    pub compacted: Revision,
}

pub fn checkpoint_header(h: &CheckpointHeader) -> [u8; CHECKPOINT_HEADER] {
    let mut b = [0u8; CHECKPOINT_HEADER];
    b[0..8].copy_from_slice(CHECKPOINT_MAGIC);
    b[8..16].copy_from_slice(&h.seq.to_le_bytes());
    b[16..24].copy_from_slice(&h.revision.to_le_bytes());
    b[24..32].copy_from_slice(&h.compacted.to_le_bytes());
    let c = crc32c::crc32c(&b[0..32]);
    b[32..36].copy_from_slice(&c.to_le_bytes());
    b
}

/// The largest revision a file may name: far beyond any real store, and far enough from
/// `i64::MAX` that adding to it cannot overflow.
pub const MAX_REVISION: Revision = 1 << 62;
/// Sequence numbers of segments and checkpoints stay below this (a checkpoint's file id sets
/// the top bit, and `seq + 1` must not overflow).
pub const MAX_SEQ: u64 = 1 << 62;

pub fn parse_checkpoint_header(b: &[u8]) -> Result<CheckpointHeader, String> {
    if b.len() < 8 || &b[0..8] != CHECKPOINT_MAGIC {
        return Err("not a Rudder checkpoint or snapshot (bad magic)".into());
    }
    if b.len() < CHECKPOINT_HEADER {
        return Err(format!(
            "truncated: {} bytes, shorter than the {CHECKPOINT_HEADER}-byte header",
            b.len()
        ));
    }
    let c = u32::from_le_bytes([b[32], b[33], b[34], b[35]]);
    if crc32c::crc32c(&b[0..32]) != c {
        return Err("checkpoint header checksum mismatch".into());
    }
    let u = |r: std::ops::Range<usize>| u64::from_le_bytes(b[r].try_into().unwrap_or_default());
    let h = CheckpointHeader {
        seq: u(8..16),
        revision: u(16..24) as i64,
        compacted: u(24..32) as i64,
    };
    // A header with a valid checksum can still be crafted: its numbers are checked before
    // anything is sized by them.
    if !(0..=MAX_REVISION).contains(&h.revision) {
        return Err(format!("header names impossible revision {}", h.revision));
    }
    if !(0..=h.revision).contains(&h.compacted) {
        return Err(format!(
            "header names compacted revision {} outside 0..={}",
            h.compacted, h.revision
        ));
    }
    if h.seq >= MAX_SEQ {
        return Err(format!("header names impossible sequence number {}", h.seq));
    }
    Ok(h)
}

/// Name of the clean-shutdown marker in a store directory.
pub const CLEAN_MARKER_NAME: &str = "clean-shutdown";
pub const CLEAN_MAGIC: &[u8; 8] = b"RDRCLN01";
/// Clean-shutdown marker: magic, newest segment seq u64, end of its last frame u64, revision
/// i64, crc32c of the preceding 32 bytes.
pub const CLEAN_MARKER: usize = 36;

/// What the clean-shutdown marker vouches for: the log ended exactly here when the store was
/// closed, every frame durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CleanMarker {
    pub seq: u64,
    pub end: u64,
    pub revision: Revision,
}

pub fn clean_marker(m: &CleanMarker) -> [u8; CLEAN_MARKER] {
    let mut b = [0u8; CLEAN_MARKER];
    b[0..8].copy_from_slice(CLEAN_MAGIC);
    b[8..16].copy_from_slice(&m.seq.to_le_bytes());
    b[16..24].copy_from_slice(&m.end.to_le_bytes());
    b[24..32].copy_from_slice(&m.revision.to_le_bytes());
    let c = crc32c::crc32c(&b[0..32]);
    b[32..36].copy_from_slice(&c.to_le_bytes());
    b
}

pub fn parse_clean_marker(b: &[u8]) -> Result<CleanMarker, String> {
    if b.len() != CLEAN_MARKER || &b[0..8] != CLEAN_MAGIC {
        return Err(format!(
            "not a clean-shutdown marker ({} bytes, or bad magic)",
            b.len()
        ));
    }
    let c = u32::from_le_bytes([b[32], b[33], b[34], b[35]]);
    if crc32c::crc32c(&b[0..32]) != c {
        return Err("clean-shutdown marker checksum mismatch".into());
    }
    let u = |r: std::ops::Range<usize>| u64::from_le_bytes(b[r].try_into().unwrap_or_default());
    Ok(CleanMarker {
        seq: u(8..16),
        end: u(16..24),
        revision: u(24..32) as i64,
    })
}

/// A record read from a checkpoint, with the file offset of a put's value.
pub struct CheckpointRecord {
    pub record: Record,
    pub value_file_off: u64,
}

/// Reads and verifies a whole checkpoint (or snapshot) file: every frame's CRC, the END record
/// and its count, and nothing after it. Any damage is a [`StoreError::Corrupt`] naming the file.
pub fn read_checkpoint(
    path: &Path,
) -> Result<(CheckpointHeader, Vec<CheckpointRecord>), StoreError> {
    let corrupt = |detail: String| StoreError::Corrupt {
        path: path.to_path_buf(),
        detail,
    };
    let mut f =
        File::open(path).map_err(|e| StoreError::io(format!("open {}", path.display()), e))?;
    let mut data = Vec::new();
    f.read_to_end(&mut data)
        .map_err(|e| StoreError::io(format!("read {}", path.display()), e))?;
    if data.len() < CHECKPOINT_HEADER {
        return Err(corrupt(format!(
            "truncated: {} bytes, shorter than the header",
            data.len()
        )));
    }
    let header = parse_checkpoint_header(&data).map_err(corrupt)?;
    let mut pos = CHECKPOINT_HEADER;
    let mut out = Vec::new();
    loop {
        if data.len() - pos < FRAME_HEADER {
            return Err(corrupt(format!(
                "truncated at byte {pos}: the end record is missing"
            )));
        }
        let (len, crc) = match parse_header(&data[pos..pos + FRAME_HEADER]) {
            HeaderState::Frame { len, crc } => (len, crc),
            _ => return Err(corrupt(format!("damaged frame header at byte {pos}"))),
        };
        let start = pos + FRAME_HEADER;
        if data.len() - start < len {
            return Err(corrupt(format!(
                "truncated at byte {pos}: frame of {len} bytes runs past the end of the file"
            )));
        }
        let payload = &data[start..start + len];
        if crc32c::crc32c(payload) != crc {
            return Err(corrupt(format!("checksum mismatch in frame at byte {pos}")));
        }
        let records =
            decode_payload(payload).map_err(|e| corrupt(format!("frame at byte {pos}: {e}")))?;
        pos = start + len;
        for record in records {
            if let Record::Put { rev, .. } | Record::Delete { rev, .. } = &record {
                if !(1..=header.revision).contains(rev) {
                    return Err(corrupt(format!(
                        "frame at byte {}: record at revision {rev}, outside 1..={}",
                        start - FRAME_HEADER,
                        header.revision
                    )));
                }
            }
            if let Record::End { count } = record {
                if count != out.len() as u64 {
                    return Err(corrupt(format!(
                        "end record counts {count} records, the file has {}",
                        out.len()
                    )));
                }
                if pos != data.len() {
                    return Err(corrupt(format!(
                        "{} unexpected bytes after the end record",
                        data.len() - pos
                    )));
                }
                return Ok((header, out));
            }
            let value_file_off = match &record {
                Record::Put { value_off, .. } => (start + value_off) as u64,
                _ => 0,
            };
            out.push(CheckpointRecord {
                record,
                value_file_off,
            });
        }
    }
}

/// Writes a checkpoint (or snapshot) file: to `<path>.tmp`, then fsync, rename and directory
/// fsync in [`CheckpointWriter::finish`]. Dropped unfinished, it removes the temporary file.
pub struct CheckpointWriter {
    file: Option<std::io::BufWriter<File>>,
    tmp: std::path::PathBuf,
    path: std::path::PathBuf,
    /// File offset where the pending frame will start.
    pos: u64,
    payload: PayloadWriter,
    count: u64,
}

const CHECKPOINT_FRAME_BYTES: usize = 1 << 20;

impl CheckpointWriter {
    pub fn create(path: &Path, header: &CheckpointHeader) -> Result<Self, StoreError> {
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = std::path::PathBuf::from(tmp);
        let f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(FILE_MODE)
            .open(&tmp)
            .map_err(|e| StoreError::io(format!("create {}", tmp.display()), e))?;
        let mut w = CheckpointWriter {
            file: Some(std::io::BufWriter::with_capacity(1 << 20, f)),
            tmp,
            path: path.to_path_buf(),
            pos: 0,
            payload: PayloadWriter::default(),
            count: 0,
        };
        w.write(&checkpoint_header(header))?;
        Ok(w)
    }

    fn write(&mut self, b: &[u8]) -> Result<(), StoreError> {
        use std::io::Write as _;
        let tmp = &self.tmp;
        self.file
            .as_mut()
            .ok_or(StoreError::Closed)?
            .write_all(b)
            .map_err(|e| StoreError::io(format!("write {}", tmp.display()), e))?;
        self.pos += b.len() as u64;
        Ok(())
    }

    fn flush_frame(&mut self) -> Result<(), StoreError> {
        if self.payload.is_empty() {
            return Ok(());
        }
        let payload = std::mem::take(&mut self.payload.buf);
        self.write(&frame_header(&payload))?;
        self.write(&payload)
    }

    /// Adds a version; returns the file offset its value will have.
    pub fn put(
        &mut self,
        rev: Revision,
        create_rev: Revision,
        version: i64,
        key: &[u8],
        value: &[u8],
    ) -> Result<u64, StoreError> {
        let off = self.payload.put(rev, create_rev, version, key, value);
        self.count += 1;
        let file_off = self.pos + FRAME_HEADER as u64 + off as u64;
        if self.payload.len() >= CHECKPOINT_FRAME_BYTES {
            self.flush_frame()?;
        }
        Ok(file_off)
    }

    pub fn delete(&mut self, rev: Revision, key: &[u8]) -> Result<(), StoreError> {
        self.payload.delete(rev, key);
        self.count += 1;
        if self.payload.len() >= CHECKPOINT_FRAME_BYTES {
            self.flush_frame()?;
        }
        Ok(())
    }

    /// Writes the END record, makes the file durable and moves it to its final name.
    pub fn finish(mut self) -> Result<(), StoreError> {
        let count = self.count;
        self.payload.end(count);
        self.flush_frame()?;
        let tmp = self.tmp.clone();
        let io = |what: &str| {
            let tmp = tmp.clone();
            let what = what.to_string();
            move |e| StoreError::io(format!("{what} {}", tmp.display()), e)
        };
        let file = self
            .file
            .take()
            .ok_or(StoreError::Closed)?
            .into_inner()
            .map_err(|e| StoreError::io(format!("write {}", tmp.display()), e.into_error()))?;
        file.sync_all().map_err(io("fsync"))?;
        std::fs::rename(&self.tmp, &self.path).map_err(io("rename"))?;
        if let Some(dir) = self.path.parent() {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| StoreError::io(format!("fsync directory {}", dir.display()), e))?;
        }
        Ok(())
    }
}

impl Drop for CheckpointWriter {
    fn drop(&mut self) {
        if self.file.is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Reads `len` bytes at `off` from `file`.
pub fn read_at(file: &File, off: u64, len: usize) -> io::Result<Bytes> {
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, off)?;
    Ok(Bytes::from(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let mut w = PayloadWriter::default();
        let off = w.put(7, 5, 3, b"/a", b"hello");
        w.delete(8, b"/b");
        w.compact(6);
        w.end(3);
        assert_eq!(&w.buf[off..off + 5], b"hello");
        let recs = decode_payload(&w.buf).unwrap();
        assert_eq!(recs.len(), 4);
        match &recs[0] {
            Record::Put {
                rev,
                create_rev,
                version,
                key,
                value,
                value_off,
            } => {
                assert_eq!((*rev, *create_rev, *version), (7, 5, 3));
                assert_eq!(&key[..], b"/a");
                assert_eq!(&value[..], b"hello");
                assert_eq!(*value_off, off);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(recs[3], Record::End { count: 3 }));
    }

    #[test]
    fn truncated_record_is_an_error() {
        let mut w = PayloadWriter::default();
        w.put(1, 1, 1, b"key", b"value");
        for cut in 1..w.buf.len() {
            assert!(decode_payload(&w.buf[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn headers() {
        let h = frame_header(b"payload");
        assert_eq!(
            parse_header(&h),
            HeaderState::Frame {
                len: 7,
                crc: crc32c::crc32c(b"payload")
            }
        );
        assert_eq!(parse_header(&[0u8; 12]), HeaderState::Empty);
        let mut bad = h;
        bad[1] ^= 1;
        assert_eq!(parse_header(&bad), HeaderState::Damaged);
        let s = segment_header(9, 1 << 20);
        assert_eq!(parse_segment_header(&s).unwrap(), (9, 1 << 20));
        let c = CheckpointHeader {
            seq: 3,
            revision: 100,
            compacted: 50,
        };
        assert_eq!(parse_checkpoint_header(&checkpoint_header(&c)).unwrap(), c);
    }
}
