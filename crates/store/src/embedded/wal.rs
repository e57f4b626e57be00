//! Write-ahead log segments: creation (preallocated, so `fdatasync` need not update the file
//! size), appends, the clean-shutdown marker, and the recovery scan that tells a torn tail from
//! damage.
//!
//! The clean-shutdown marker (`clean-shutdown`, see [`CleanMarker`]) is written and synced when
//! the store closes with every write durable; it names the newest segment, the byte its last
//! frame ends at and the revision there. Open removes it (durably) before anything is written,
//! so it exists only while no write can be in flight. A directory without it (a crash, or a
//! store written before the marker existed) is recovered by the crash rules below.
//!
//! Recovery rules:
//! - a segment's length must equal the capacity in its header (shorter: truncated; longer or a
//!   capacity smaller than the header: damage); header numbers are checked before anything is
//!   sized or indexed by them;
//! - after the last frame, every byte must be zero;
//! - after a clean shutdown no frame can be torn: any damaged frame is an error, and the log
//!   must end exactly where the marker says (a frame missing or added is an error too);
//! - after a crash, a damaged frame is a torn write only if (a) it is the last frame of the
//!   *last* segment, with no valid frame after it anywhere in that segment (the writer never
//!   starts a frame before the previous one is durable, so only the final frame can be torn),
//!   and (b) it looks like a write that stopped: its last 8 bytes, or some part of it that lies
//!   within one 512-byte sector, are still all zero, as preallocated (a write cut short leaves
//!   the rest of the frame unwritten; a disk writes a sector whole or not at all, in any order).
//!   It was never acknowledged and is zeroed. A *complete* frame that fails its checksum has
//!   flipped bits, not a torn write: an error.
//!
//! Every error names the file and the byte offset: acknowledged data is never dropped silently.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::Path;

use super::format::*;
use crate::StoreError;

pub fn segment_name(seq: u64) -> String {
    format!("wal-{seq:016x}.seg")
}

pub fn checkpoint_name(seq: u64) -> String {
    format!("checkpoint-{seq:016x}.ckpt")
}

/// Parses `wal-<hex>.seg` / `checkpoint-<hex>.ckpt`.
pub fn parse_name(name: &str) -> Option<(bool, u64)> {
    if let Some(hex) = name
        .strip_prefix("wal-")
        .and_then(|s| s.strip_suffix(".seg"))
    {
        return u64::from_str_radix(hex, 16).ok().map(|s| (false, s));
    }
    if let Some(hex) = name
        .strip_prefix("checkpoint-")
        .and_then(|s| s.strip_suffix(".ckpt"))
    {
        return u64::from_str_radix(hex, 16).ok().map(|s| (true, s));
    }
    None
}

pub fn io_err(what: &str, path: &Path) -> impl FnOnce(std::io::Error) -> StoreError {
    let context = format!("{what} {}", path.display());
    move |e| StoreError::io(context, e)
}

/// Creates `dir` (and missing parents) with mode 0700, and takes group and other access
/// away from it if it already existed with them.
pub fn private_dir(dir: &Path) -> Result<(), StoreError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(io_err("create directory", dir))?;
    tighten(dir, DIR_MODE)
}

/// Takes group and other access away from `path` if it has any (to `mode`).
pub fn tighten(path: &Path, mode: u32) -> Result<(), StoreError> {
    let meta = std::fs::metadata(path).map_err(io_err("stat", path))?;
    let current = meta.permissions().mode() & 0o777;
    if current & 0o077 != 0 {
        tracing::warn!(path = %path.display(), mode = format!("{current:o}"), "store file was readable by other users; tightening its mode to {mode:o}");
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(io_err("set the mode of", path))?;
    }
    Ok(())
}

/// fsync a directory so that a create, rename or unlink in it is durable.
pub fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync directory", dir))
}

fn fallocate(file: &File, len: u64) -> std::io::Result<()> {
    // SAFETY: plain syscall on a valid descriptor owned by `file`.
    let r = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len as libc::off_t) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::from_raw_os_error(r))
    }
}

/// The segment being appended to.
pub struct ActiveSegment {
    pub seq: u64,
    pub file: std::sync::Arc<File>,
    pub capacity: u64,
    /// Where the next frame goes.
    pub offset: u64,
}

impl ActiveSegment {
    /// Creates segment `seq` durably: written to a temporary name, preallocated, synced,
    /// renamed, directory synced. On failure nothing is left behind.
    pub fn create(dir: &Path, seq: u64, capacity: u64) -> Result<ActiveSegment, StoreError> {
        let path = dir.join(segment_name(seq));
        let tmp = dir.join(format!("{}.tmp", segment_name(seq)));
        let result = (|| {
            let mut f = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .mode(FILE_MODE)
                .open(&tmp)
                .map_err(io_err("create", &tmp))?;
            fallocate(&f, capacity).map_err(io_err("preallocate", &tmp))?;
            f.write_all(&segment_header(seq, capacity))
                .map_err(io_err("write", &tmp))?;
            f.sync_all().map_err(io_err("fsync", &tmp))?;
            std::fs::rename(&tmp, &path).map_err(io_err("rename", &tmp))?;
            sync_dir(dir)?;
            Ok(f)
        })();
        match result {
            Ok(f) => Ok(ActiveSegment {
                seq,
                file: std::sync::Arc::new(f),
                capacity,
                offset: SEGMENT_HEADER as u64,
            }),
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                Err(e)
            }
        }
    }

    /// Whether a frame of `frame_len` bytes fits, leaving room for the SEAL frame.
    pub fn fits(&self, frame_len: usize) -> bool {
        self.offset + (frame_len + SEAL_FRAME) as u64 <= self.capacity
    }

    /// Marks this segment complete: segment `next` (already durable) continues the log.
    pub fn seal(&mut self, next: u64) -> std::io::Result<()> {
        let mut p = PayloadWriter::default();
        p.seal(next);
        self.append(&p.buf).map(|_| ())
    }

    /// Writes a frame at the current offset and makes it durable. Returns the file offset of
    /// the payload.
    pub fn append(&mut self, payload: &[u8]) -> std::io::Result<u64> {
        let header = frame_header(payload);
        let mut buf = Vec::with_capacity(FRAME_HEADER + payload.len());
        buf.extend_from_slice(&header);
        buf.extend_from_slice(payload);
        self.file.write_all_at(&buf, self.offset)?;
        self.file.sync_data()?;
        let payload_off = self.offset + FRAME_HEADER as u64;
        self.offset += buf.len() as u64;
        Ok(payload_off)
    }
}

/// One frame found by the scan.
pub struct ScannedFrame {
    pub payload_off: u64,
    pub records: Vec<Record>,
}

/// The result of scanning one segment.
pub struct ScannedSegment {
    pub seq: u64,
    pub capacity: u64,
    pub frames: Vec<ScannedFrame>,
    /// Offset just after the last valid frame.
    pub end: u64,
    /// A torn final frame was found (and must be zeroed before appending).
    pub torn: bool,
    /// The segment ends with a SEAL record.
    pub sealed: bool,
}

fn is_valid_frame_at(data: &[u8], pos: usize) -> bool {
    let Some(header) = pos.checked_add(FRAME_HEADER).and_then(|e| data.get(pos..e)) else {
        return false;
    };
    match parse_header(header) {
        HeaderState::Frame { len, crc } => {
            let start = pos + FRAME_HEADER;
            match start.checked_add(len).and_then(|e| data.get(start..e)) {
                Some(payload) => len > 0 && crc32c::crc32c(payload) == crc,
                None => false,
            }
        }
        _ => false,
    }
}

/// Whether a valid frame starts anywhere at or after `from`; zero runs are skipped quickly.
fn valid_frame_after(data: &[u8], from: usize) -> bool {
    let mut p = from;
    while p.saturating_add(FRAME_HEADER) <= data.len() {
        if data[p..p + FRAME_HEADER].iter().all(|&b| b == 0) {
            // No header can start before the next non-zero byte minus its own length.
            match data[p + FRAME_HEADER..].iter().position(|&b| b != 0) {
                Some(nz) => p += nz + 1,
                None => return false,
            }
            continue;
        }
        if is_valid_frame_at(data, p) {
            return true;
        }
        p += 1;
    }
    false
}

/// The unit a disk writes whole or not at all (the smallest sector size in use). Offsets in a
/// file are aligned to it on disk, since file systems allocate whole blocks.
pub const SECTOR: usize = 512;

/// Trailing zero bytes that make a frame look cut short even within one sector (for disks
/// that do not write a sector atomically). A complete frame ends in that many zeros only if
/// its last value does.
pub const TORN_TAIL: usize = 8;

/// Whether `data[start..end]` (one frame) looks like a write that stopped: its last
/// [`TORN_TAIL`] bytes, or some part of it within one sector, are still all zero, as the
/// segment was preallocated. A complete frame with flipped bits has every sector written.
fn looks_unfinished(data: &[u8], start: usize, end: usize) -> bool {
    let end = end.min(data.len());
    if end.saturating_sub(start) >= TORN_TAIL && data[end - TORN_TAIL..end].iter().all(|&b| b == 0)
    {
        return true;
    }
    let mut p = start;
    while p < end {
        let q = (p / SECTOR + 1).saturating_mul(SECTOR).min(end);
        if data[p..q].iter().all(|&b| b == 0) {
            return true;
        }
        p = q;
    }
    false
}

/// Reads and checks a whole segment. `last` says whether it is the newest one; `clean`
/// whether the store was shut down cleanly (then no frame can be torn).
pub fn scan_segment(path: &Path, last: bool, clean: bool) -> Result<ScannedSegment, StoreError> {
    let corrupt = |detail: String| StoreError::Corrupt {
        path: path.to_path_buf(),
        detail,
    };
    let mut f = File::open(path).map_err(io_err("open", path))?;
    let mut data = Vec::new();
    f.read_to_end(&mut data).map_err(io_err("read", path))?;
    let (seq, capacity) = parse_segment_header(&data).map_err(corrupt)?;
    let len = data.len() as u64;
    if len < capacity {
        return Err(corrupt(format!(
            "truncated: {len} bytes, the segment was allocated {capacity} bytes"
        )));
    }
    if len > capacity {
        return Err(corrupt(format!(
            "{len} bytes, longer than the capacity of {capacity} bytes in its header"
        )));
    }
    // From here on `SEGMENT_HEADER <= data.len()`, and every frame is bounds-checked.
    let data = &data[..];
    let mut pos = SEGMENT_HEADER;
    let mut frames = Vec::new();
    let mut torn = false;
    while data.len() - pos >= FRAME_HEADER {
        let state = parse_header(&data[pos..pos + FRAME_HEADER]);
        if state == HeaderState::Empty {
            break;
        }
        if !is_valid_frame_at(data, pos) {
            return match damaged_frame(data, pos, &state, last, clean) {
                Ok(()) => {
                    torn = true;
                    break;
                }
                Err(why) => Err(corrupt(format!("damaged frame at byte {pos}: {why}"))),
            };
        }
        let HeaderState::Frame { len, .. } = state else {
            break;
        };
        let start = pos + FRAME_HEADER;
        let records = decode_payload(&data[start..start + len])
            .map_err(|e| corrupt(format!("frame at byte {pos}: {e}")))?;
        if frames
            .last()
            .is_some_and(|f: &ScannedFrame| matches!(f.records.last(), Some(Record::Seal { .. })))
        {
            return Err(corrupt(format!("frame at byte {pos} after the seal")));
        }
        for (i, r) in records.iter().enumerate() {
            match r {
                Record::Seal { next } if *next != seq + 1 || i + 1 != records.len() => {
                    return Err(corrupt(format!("bad seal record at byte {pos}")));
                }
                Record::End { .. } => {
                    return Err(corrupt(format!(
                        "END record in a WAL segment at byte {pos}"
                    )));
                }
                _ => {}
            }
        }
        frames.push(ScannedFrame {
            payload_off: start as u64,
            records,
        });
        pos = start + len;
    }
    let end = pos as u64;
    let sealed = frames
        .last()
        .is_some_and(|f| matches!(f.records.last(), Some(Record::Seal { .. })));
    if !torn {
        if let Some(nz) = data[pos..].iter().position(|&b| b != 0) {
            return Err(corrupt(format!(
                "unexpected data at byte {} after the last frame (byte {pos})",
                pos + nz
            )));
        }
    }
    Ok(ScannedSegment {
        seq,
        capacity,
        frames,
        end,
        torn,
        sealed,
    })
}

/// Decides whether the damaged frame at `pos` is a torn final write (`Ok`) or damage (`Err`
/// with the reason), by the rules in the module header.
fn damaged_frame(
    data: &[u8],
    pos: usize,
    state: &HeaderState,
    last: bool,
    clean: bool,
) -> Result<(), String> {
    if valid_frame_after(data, pos + 1) {
        return Err("valid frames follow it".into());
    }
    if !last {
        return Err("in a segment that is not the newest".into());
    }
    if clean {
        return Err(
            "the store was shut down cleanly, so no write can have been torn (flipped bits?)"
                .into(),
        );
    }
    // The part of the file this frame was written to.
    let end = match state {
        HeaderState::Frame { len, .. } => {
            let end = pos + FRAME_HEADER + len;
            if end > data.len() {
                return Err(format!(
                    "its valid header announces {len} bytes, past the end of the segment"
                ));
            }
            end
        }
        // The length is not to be trusted: the header itself is the evidence.
        _ => pos + FRAME_HEADER,
    };
    if looks_unfinished(data, pos, end) {
        Ok(())
    } else {
        Err(format!(
            "every sector of it (bytes {pos}..{end}) was written, so it is not a torn write \
             but a complete frame that fails its checksum (flipped bits)"
        ))
    }
}

/// Opens the newest segment for appending at `end`, zeroing a torn tail first.
pub fn reopen_active(path: &Path, seg: &ScannedSegment) -> Result<ActiveSegment, StoreError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(io_err("open", path))?;
    if seg.torn {
        let zeros = vec![0u8; seg.capacity.saturating_sub(seg.end) as usize];
        file.write_all_at(&zeros, seg.end)
            .map_err(io_err("zero torn tail of", path))?;
        file.sync_data().map_err(io_err("fsync", path))?;
        tracing::warn!(path = %path.display(), offset = seg.end, "discarded a torn final write (never acknowledged)");
    }
    Ok(ActiveSegment {
        seq: seg.seq,
        file: std::sync::Arc::new(file),
        capacity: seg.capacity,
        offset: seg.end,
    })
}

/// Reads the clean-shutdown marker in `dir`, if there is one.
pub fn read_clean_marker(dir: &Path) -> Result<Option<CleanMarker>, StoreError> {
    let path = dir.join(CLEAN_MARKER_NAME);
    match std::fs::read(&path) {
        Ok(bytes) => parse_clean_marker(&bytes)
            .map(Some)
            .map_err(|detail| StoreError::Corrupt { path, detail }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StoreError::io(format!("read {}", path.display()), e)),
    }
}

/// Removes the clean-shutdown marker durably: from now on a write may be in flight.
pub fn remove_clean_marker(dir: &Path) -> Result<(), StoreError> {
    let path = dir.join(CLEAN_MARKER_NAME);
    match std::fs::remove_file(&path) {
        Ok(()) => sync_dir(dir),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StoreError::io(format!("remove {}", path.display()), e)),
    }
}

/// Writes the clean-shutdown marker durably (temporary name, fsync, rename, directory fsync).
/// Only called once every frame is durable and no more will be written.
pub fn write_clean_marker(dir: &Path, marker: &CleanMarker) -> Result<(), StoreError> {
    let path = dir.join(CLEAN_MARKER_NAME);
    let tmp = dir.join(format!("{CLEAN_MARKER_NAME}.tmp"));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(FILE_MODE)
            .open(&tmp)
            .map_err(io_err("create", &tmp))?;
        f.write_all(&clean_marker(marker))
            .map_err(io_err("write", &tmp))?;
        f.sync_all().map_err(io_err("fsync", &tmp))?;
        std::fs::rename(&tmp, &path).map_err(io_err("rename", &tmp))?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
