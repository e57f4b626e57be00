//! Write-ahead log segments: creation (preallocated, so `fdatasync` need not update the file
//! size), appends, and the recovery scan that tells a torn tail from damage.
//!
//! Recovery rules:
//! - a segment shorter than the capacity in its header was truncated: error;
//! - after the last frame, every byte must be zero;
//! - a damaged frame (bad header or payload CRC) is a torn write only if it is in the *last*
//!   segment and no valid frame follows it anywhere in that segment (the writer never starts a
//!   frame before the previous one is durable, so only the final frame can be torn); it is then
//!   zeroed. Anything else is an error naming the file and offset: acknowledged data is never
//!   dropped silently.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

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
    if data.len() - pos < FRAME_HEADER {
        return false;
    }
    match parse_header(&data[pos..pos + FRAME_HEADER]) {
        HeaderState::Frame { len, crc } => {
            let start = pos + FRAME_HEADER;
            len > 0 && data.len() - start >= len && crc32c::crc32c(&data[start..start + len]) == crc
        }
        _ => false,
    }
}

/// Whether a valid frame starts anywhere at or after `from`; zero runs are skipped quickly.
fn valid_frame_after(data: &[u8], from: usize) -> bool {
    let mut p = from;
    while p + FRAME_HEADER <= data.len() {
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

/// Reads and checks a whole segment. `last` says whether it is the newest one.
pub fn scan_segment(path: &PathBuf, last: bool) -> Result<ScannedSegment, StoreError> {
    let corrupt = |detail: String| StoreError::Corrupt {
        path: path.clone(),
        detail,
    };
    let mut f = File::open(path).map_err(io_err("open", path))?;
    let mut data = Vec::new();
    f.read_to_end(&mut data).map_err(io_err("read", path))?;
    if data.len() < SEGMENT_HEADER {
        return Err(corrupt(format!(
            "truncated: {} bytes, shorter than the segment header",
            data.len()
        )));
    }
    let (seq, capacity) = parse_segment_header(&data).map_err(corrupt)?;
    if (data.len() as u64) < capacity {
        return Err(corrupt(format!(
            "truncated: {} bytes, the segment was allocated {capacity} bytes",
            data.len()
        )));
    }
    let data = &data[..capacity as usize];
    let mut pos = SEGMENT_HEADER;
    let mut frames = Vec::new();
    let mut torn = false;
    while data.len() - pos >= FRAME_HEADER {
        let state = parse_header(&data[pos..pos + FRAME_HEADER]);
        if state == HeaderState::Empty {
            break;
        }
        let ok = is_valid_frame_at(data, pos);
        if !ok {
            // Damaged. Acceptable only as the torn final frame of the newest segment.
            let later_valid = valid_frame_after(data, pos + 1);
            if last && !later_valid {
                torn = true;
                break;
            }
            return Err(corrupt(format!(
                "damaged frame at byte {pos}{}",
                if later_valid {
                    " followed by valid data"
                } else {
                    " in a segment that is not the newest"
                }
            )));
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

/// Opens the newest segment for appending at `end`, zeroing a torn tail first.
pub fn reopen_active(path: &Path, seg: &ScannedSegment) -> Result<ActiveSegment, StoreError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(io_err("open", path))?;
    if seg.torn {
        let zeros = vec![0u8; (seg.capacity - seg.end) as usize];
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
