//! Damaged files and failing disks, on the embedded store: every kind of damage is refused at
//! open with an error naming the file (never a silent reset, never a panic, the files left as
//! they were), a torn final write after a crash is discarded (but flipped bits, or any damage
//! after a clean shutdown, are refused), a store whose log is gone is refused rather than
//! started empty, its files are private to their owner, and a write that cannot be made
//! durable is answered with an error and never acknowledged.

use std::path::{Path, PathBuf};
use std::process::Command;

use bytes::Bytes;
use rudder_store::embedded::{Embedded, EmbeddedOptions};
use rudder_store::{KeyRange, Store, StoreError};

const SEGMENT: u64 = 64 << 10;

fn opts(dir: &Path) -> EmbeddedOptions {
    let mut o = EmbeddedOptions::new(dir);
    o.segment_size = SEGMENT;
    o
}

fn key(i: usize) -> Bytes {
    Bytes::from(format!("/registry/things/default/t{i:05}"))
}

fn value(i: usize) -> Bytes {
    Bytes::from(format!("value-{i}-").repeat(20))
}

/// A store with `n` keys written one by one (one frame each), spread over several segments.
async fn populated(dir: &Path, n: usize) {
    let s = Embedded::open(opts(dir)).expect("open");
    for i in 0..n {
        s.create(key(i), value(i)).await.expect("create");
    }
}

fn files(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    v.sort();
    v
}

fn snapshot_of_dir(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut v: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(dir)
        .expect("list")
        .map(|e| {
            let p = e.expect("entry").path();
            let b = std::fs::read(&p).expect("read");
            (p, b)
        })
        .collect();
    v.sort();
    v
}

/// Opening must fail with `Corrupt` naming `file`, and leave every file untouched.
fn assert_refused(dir: &Path, file: &Path, detail_contains: &str) {
    let before = snapshot_of_dir(dir);
    match Embedded::open(opts(dir)) {
        Err(StoreError::Corrupt { path, detail }) => {
            assert_eq!(path, file, "error names the damaged file ({detail})");
            assert!(
                detail.contains(detail_contains),
                "detail {detail:?} should mention {detail_contains:?}"
            );
            let msg = StoreError::Corrupt {
                path: path.clone(),
                detail,
            }
            .to_string();
            assert!(msg.contains(&*file.to_string_lossy()), "message: {msg}");
        }
        Err(other) => panic!("expected Corrupt, got {other}"),
        Ok(_) => panic!("a damaged store opened"),
    }
    assert_eq!(before, snapshot_of_dir(dir), "a failed open changed files");
}

/// Where a clean close records where the log ends; a crash leaves none.
const CLEAN_MARKER: &str = "clean-shutdown";

/// Makes a cleanly closed store look as if its process had died instead (the marker is
/// removed at open, so a crash never leaves one). `real_crash_leaves_no_marker` checks that.
fn as_if_crashed(dir: &Path) {
    std::fs::remove_file(dir.join(CLEAN_MARKER)).expect("a clean close left its marker");
}

/// Offsets of the frames in a segment's bytes, by walking their length fields.
fn frame_offsets(data: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut pos = 32;
    while pos + 12 <= data.len() && data[pos..pos + 12].iter().any(|&b| b != 0) {
        out.push(pos);
        let len = u32::from_le_bytes(data[pos..pos + 4].try_into().unwrap()) as usize;
        pos += 12 + len;
    }
    out
}

/// The last frame of the newest segment: (segment, its bytes, frame offset, frame end).
fn last_frame(dir: &Path) -> (PathBuf, Vec<u8>, usize, usize) {
    let seg = files(dir, ".seg").pop().unwrap();
    let data = std::fs::read(&seg).unwrap();
    let at = *frame_offsets(&data).last().expect("a frame");
    let len = u32::from_le_bytes(data[at..at + 4].try_into().unwrap()) as usize;
    (seg, data, at, at + 12 + len)
}

#[tokio::test]
async fn truncated_segment_is_refused() {
    let d = tempfile::tempdir().unwrap();
    populated(d.path(), 700).await;
    let segs = files(d.path(), ".seg");
    assert!(segs.len() >= 3, "several segments: {segs:?}");
    let victim = &segs[1];
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(victim)
        .unwrap();
    f.set_len(SEGMENT / 2).unwrap();
    assert_refused(d.path(), victim, "truncated");
}

#[tokio::test]
async fn truncated_last_segment_is_refused() {
    let d = tempfile::tempdir().unwrap();
    populated(d.path(), 50).await;
    let segs = files(d.path(), ".seg");
    let victim = segs.last().unwrap();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(victim)
        .unwrap();
    f.set_len(100).unwrap();
    assert_refused(d.path(), victim, "truncated");
}

#[tokio::test]
async fn flipped_byte_in_acknowledged_data_is_refused() {
    let d = tempfile::tempdir().unwrap();
    populated(d.path(), 100).await;
    for (which, victim) in files(d.path(), ".seg").iter().enumerate().take(2) {
        let mut data = std::fs::read(victim).unwrap();
        // Inside the first frames' payload: valid frames follow it.
        let at = 32 + 12 + 40 + which;
        data[at] ^= 0x40;
        std::fs::write(victim, &data).unwrap();
        assert_refused(d.path(), victim, "damaged frame");
        data[at] ^= 0x40;
        std::fs::write(victim, &data).unwrap();
    }
    // Repaired, it opens with everything there.
    let s = Embedded::open(opts(d.path())).unwrap();
    assert_eq!(s.count(KeyRange::prefix("/registry/")).await.unwrap(), 100);
}

#[tokio::test]
async fn data_after_the_end_of_a_full_segment_is_refused() {
    let d = tempfile::tempdir().unwrap();
    populated(d.path(), 700).await;
    let segs = files(d.path(), ".seg");
    let victim = &segs[0];
    let mut data = std::fs::read(victim).unwrap();
    let n = data.len();
    data[n - 3] = 0x5a;
    std::fs::write(victim, &data).unwrap();
    assert_refused(d.path(), victim, "unexpected data");
}

#[tokio::test]
async fn missing_segment_is_refused() {
    let d = tempfile::tempdir().unwrap();
    populated(d.path(), 700).await;
    let segs = files(d.path(), ".seg");
    assert!(segs.len() >= 3, "several segments: {segs:?}");
    std::fs::remove_file(&segs[1]).unwrap();
    assert_refused(d.path(), &segs[1], "missing");
}

#[tokio::test]
async fn missing_newest_segment_is_refused() {
    let d = tempfile::tempdir().unwrap();
    populated(d.path(), 700).await;
    let segs = files(d.path(), ".seg");
    let newest = segs.last().unwrap();
    std::fs::remove_file(newest).unwrap();
    assert_refused(d.path(), newest, "missing");
}

/// A crash between creating the next segment and sealing the previous one leaves an unsealed
/// segment followed by an empty one. That opens, and must keep opening after more writes (the
/// open finishes the roll-over), through any number of such crashes.
#[tokio::test]
async fn crash_between_creating_and_sealing_a_segment_recovers_for_good() {
    const SEAL_FRAME: usize = 12 + 9; // frame header + SEAL record (kind, next seq u64 LE)
    const SEGMENT_HEADER: usize = 32;
    let d = tempfile::tempdir().unwrap();
    let mut written = 0;
    for crash in 0..3 {
        {
            let s = Embedded::open(opts(d.path())).expect("open after the crash");
            let before = files(d.path(), ".seg").len();
            // Write until a new segment starts (its first frame is the write that rolled over).
            while files(d.path(), ".seg").len() == before {
                s.create(key(written), value(written)).await.unwrap();
                written += 1;
            }
        }
        // Make it look as if the process died right after creating the newest segment: the
        // newest segment is empty, and the one before has lost its seal.
        as_if_crashed(d.path());
        let segs = files(d.path(), ".seg");
        let newest = &segs[segs.len() - 1];
        let mut bytes = std::fs::read(newest).unwrap();
        bytes[SEGMENT_HEADER..].fill(0);
        std::fs::write(newest, &bytes).unwrap();
        written -= 1; // the roll-over write was in the newest segment: never acknowledged now
        let prev = &segs[segs.len() - 2];
        let mut bytes = std::fs::read(prev).unwrap();
        // The seal ends with the next sequence number (< 256 here): its low byte is the last
        // non-zero byte, followed by seven zero bytes.
        let last_nonzero = bytes.iter().rposition(|&b| b != 0).unwrap();
        let end = last_nonzero + 8;
        bytes[end - SEAL_FRAME..end].fill(0);
        std::fs::write(prev, &bytes).unwrap();

        let s = Embedded::open(opts(d.path())).unwrap_or_else(|e| panic!("crash {crash}: {e}"));
        assert_eq!(
            s.count(KeyRange::prefix(Bytes::from("/registry/")))
                .await
                .unwrap(),
            written as i64
        );
        s.create(key(written), value(written)).await.unwrap();
        written += 1;
    }
    let s = Embedded::open(opts(d.path())).expect("open at the end");
    assert_eq!(
        s.count(KeyRange::prefix(Bytes::from("/registry/")))
            .await
            .unwrap(),
        written as i64
    );
}

#[tokio::test]
async fn missing_segment_after_checkpoint_is_refused() {
    let d = tempfile::tempdir().unwrap();
    {
        let s = Embedded::open(opts(d.path())).unwrap();
        for i in 0..100 {
            s.put(key(i % 10), value(i)).await.unwrap();
        }
        s.checkpoint().await.unwrap();
    }
    let segs = files(d.path(), ".seg");
    assert_eq!(segs.len(), 1, "the checkpoint covers the older segments");
    std::fs::remove_file(&segs[0]).unwrap();
    assert_refused(d.path(), &segs[0], "missing");
}

#[tokio::test]
async fn damaged_checkpoint_is_refused() {
    let d = tempfile::tempdir().unwrap();
    {
        let s = Embedded::open(opts(d.path())).unwrap();
        for i in 0..200 {
            s.put(key(i % 20), value(i)).await.unwrap();
        }
        s.checkpoint().await.unwrap();
        s.put(key(999), value(999)).await.unwrap();
    }
    let ckpt = files(d.path(), ".ckpt").pop().expect("a checkpoint");
    let good = std::fs::read(&ckpt).unwrap();

    let mut flipped = good.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 1;
    std::fs::write(&ckpt, &flipped).unwrap();
    assert_refused(d.path(), &ckpt, "checksum");

    std::fs::write(&ckpt, &good[..good.len() - 20]).unwrap();
    assert_refused(d.path(), &ckpt, "truncated");

    std::fs::write(&ckpt, &good).unwrap();
    let s = Embedded::open(opts(d.path())).unwrap();
    assert_eq!(s.count(KeyRange::prefix("/registry/")).await.unwrap(), 21);
}

#[tokio::test]
async fn torn_final_write_is_discarded_and_the_store_goes_on() {
    let d = tempfile::tempdir().unwrap();
    populated(d.path(), 10).await;
    as_if_crashed(d.path());
    let last = files(d.path(), ".seg").pop().unwrap();
    let mut data = std::fs::read(&last).unwrap();
    // The end of data: the first 12 zero bytes after the header region that stay zero.
    let end = (32..data.len() - 12)
        .find(|&p| data[p..].iter().all(|&b| b == 0))
        .unwrap();
    // A frame header announcing 4 KiB, half written: what a power cut mid-write leaves.
    let payload = vec![0xabu8; 4096];
    let mut frame = Vec::new();
    frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    frame.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
    let hc = crc32c::crc32c(&frame[0..8]);
    frame.extend_from_slice(&hc.to_le_bytes());
    frame.extend_from_slice(&payload[..2048]);
    data[end..end + frame.len()].copy_from_slice(&frame);
    std::fs::write(&last, &data).unwrap();

    let s = Embedded::open(opts(d.path())).expect("a torn tail is not damage");
    assert_eq!(s.current_revision().await.unwrap(), 10);
    for i in 0..10 {
        let kv = s
            .get(key(i), 0)
            .await
            .unwrap()
            .expect("acknowledged write kept");
        assert_eq!(kv.value, value(i));
    }
    s.create(key(10), value(10)).await.unwrap();
    drop(s);
    let s = Embedded::open(opts(d.path())).expect("reopen after writing over the torn tail");
    assert_eq!(s.current_revision().await.unwrap(), 11);
    assert_eq!(s.get(key(10), 0).await.unwrap().unwrap().value, value(10));
}

#[tokio::test]
async fn bit_flip_in_the_last_frame_after_a_clean_close_is_refused() {
    let d = tempfile::tempdir().unwrap();
    populated(d.path(), 10).await;
    assert!(
        d.path().join(CLEAN_MARKER).exists(),
        "a clean close marks it"
    );
    let (seg, mut data, at, end) = last_frame(d.path());
    // One bit in the payload, one in the header: both are damage after a clean stop (the old
    // rules dropped this acknowledged write as a torn one).
    for flip in [end - 5, at + 2] {
        data[flip] ^= 0x08;
        std::fs::write(&seg, &data).unwrap();
        assert_refused(d.path(), &seg, &format!("damaged frame at byte {at}"));
        assert_refused(d.path(), &seg, "shut down cleanly");
        data[flip] ^= 0x08;
    }
    std::fs::write(&seg, &data).unwrap();
    let s = Embedded::open(opts(d.path())).unwrap();
    assert_eq!(s.get(key(9), 0).await.unwrap().unwrap().value, value(9));
}

#[tokio::test]
async fn bit_flip_in_a_complete_last_frame_after_a_crash_is_refused() {
    let d = tempfile::tempdir().unwrap();
    populated(d.path(), 10).await;
    as_if_crashed(d.path());
    let (seg, mut data, at, end) = last_frame(d.path());
    // Every byte of the frame was written: flipped bits, not a write cut short.
    data[end - 20] ^= 0x01;
    std::fs::write(&seg, &data).unwrap();
    assert_refused(d.path(), &seg, &format!("damaged frame at byte {at}"));
    assert_refused(d.path(), &seg, "flipped bits");
}

#[tokio::test]
async fn bit_flip_in_a_middle_frame_is_refused() {
    let d = tempfile::tempdir().unwrap();
    populated(d.path(), 10).await;
    let (seg, data, _, _) = last_frame(d.path());
    let offsets = frame_offsets(&data);
    let mid = offsets[offsets.len() / 2];
    let mut flipped = data.clone();
    flipped[mid + 12 + 30] ^= 0x20;
    std::fs::write(&seg, &flipped).unwrap();
    assert_refused(d.path(), &seg, &format!("damaged frame at byte {mid}"));
    // After a crash too: valid frames follow it, so it was acknowledged.
    as_if_crashed(d.path());
    assert_refused(d.path(), &seg, "valid frames follow");
}

#[tokio::test]
async fn last_frame_gone_after_a_clean_close_is_refused() {
    let d = tempfile::tempdir().unwrap();
    populated(d.path(), 10).await;
    let (seg, mut data, at, end) = last_frame(d.path());
    // Zeroed whole, the log looks shorter but intact: only the marker tells.
    data[at..end].fill(0);
    std::fs::write(&seg, &data).unwrap();
    assert_refused(d.path(), &seg, "acknowledged writes are missing");
}

#[tokio::test]
async fn torn_last_frame_without_the_clean_marker_is_dropped() {
    let d = tempfile::tempdir().unwrap();
    populated(d.path(), 10).await;
    // The newest write was in flight when the power went: its last bytes never reached the
    // disk (the frame ends in zeroes; the old data dirs, without the marker, look the same).
    as_if_crashed(d.path());
    let (seg, mut data, at, end) = last_frame(d.path());
    data[at + 40..end].fill(0);
    std::fs::write(&seg, &data).unwrap();
    let s = Embedded::open(opts(d.path())).expect("a torn tail after a crash is not damage");
    assert_eq!(s.current_revision().await.unwrap(), 9);
    assert!(
        s.get(key(9), 0).await.unwrap().is_none(),
        "the torn write is gone"
    );
    for i in 0..9 {
        assert_eq!(s.get(key(i), 0).await.unwrap().unwrap().value, value(i));
    }
    s.create(key(9), value(99)).await.unwrap();
    drop(s);
    let s = Embedded::open(opts(d.path())).expect("reopen after writing over the torn tail");
    assert_eq!(s.get(key(9), 0).await.unwrap().unwrap().value, value(99));
}

#[tokio::test]
async fn unwritten_sector_in_the_middle_of_the_last_frame_is_a_torn_write() {
    let d = tempfile::tempdir().unwrap();
    populated(d.path(), 5).await;
    {
        let s = Embedded::open(opts(d.path())).unwrap();
        s.create(key(5), Bytes::from(vec![0x5au8; 3000]))
            .await
            .unwrap();
    }
    as_if_crashed(d.path());
    // The disk wrote the frame's sectors out of order and lost power before one in the
    // middle: its tail is there, a whole sector of it is not.
    let (seg, mut data, at, end) = last_frame(d.path());
    let sector = (at / 512 + 2) * 512;
    assert!(sector + 512 < end, "the frame spans several sectors");
    data[sector..sector + 512].fill(0);
    std::fs::write(&seg, &data).unwrap();
    let s = Embedded::open(opts(d.path())).expect("a torn write, not damage");
    assert_eq!(s.current_revision().await.unwrap(), 5);
    assert!(s.get(key(5), 0).await.unwrap().is_none());
}

/// The child of `real_crash_leaves_no_marker`: writes and dies without closing the store.
#[tokio::test]
#[ignore = "run by real_crash_leaves_no_marker"]
async fn crash_child() {
    let dir = child_dir();
    let s = Embedded::open(opts(&dir)).unwrap();
    for i in 0..10 {
        s.put(key(i), value(i)).await.unwrap();
    }
    assert!(!dir.join(CLEAN_MARKER).exists(), "no marker while open");
    std::process::abort();
}

#[test]
fn real_crash_leaves_no_marker() {
    let d = tempfile::tempdir().unwrap();
    populated_blocking(d.path(), 3);
    assert!(d.path().join(CLEAN_MARKER).exists());
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["crash_child", "--exact", "--ignored", "--nocapture"])
        .args(["--test-threads", "1"])
        .env(CHILD_ENV, d.path())
        .output()
        .unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "the child aborted: {text}");
    assert!(text.contains("running 1 test"), "the child ran: {text}");
    assert!(
        !d.path().join(CLEAN_MARKER).exists(),
        "a crash leaves no clean marker: {text}"
    );
    // So a torn last frame is treated as one.
    let (seg, mut data, at, end) = last_frame(d.path());
    data[at + 40..end].fill(0);
    std::fs::write(&seg, &data).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let s = Embedded::open(opts(d.path())).expect("open after the crash");
    assert_eq!(rt.block_on(s.current_revision()).unwrap(), 3 + 10 - 1);
}

fn populated_blocking(dir: &Path, n: usize) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(populated(dir, n));
}

/// A segment header with a valid checksum, as a crafted file would have.
fn crafted_segment_header(seq: u64, capacity: u64) -> Vec<u8> {
    let mut h = vec![0u8; 32];
    h[0..8].copy_from_slice(b"RDRWAL01");
    h[8..16].copy_from_slice(&seq.to_le_bytes());
    h[16..24].copy_from_slice(&capacity.to_le_bytes());
    let c = crc32c::crc32c(&h[0..24]);
    h[24..28].copy_from_slice(&c.to_le_bytes());
    h
}

/// A frame header with a valid header checksum announcing `len` bytes.
fn crafted_frame_header(len: u32, crc: u32) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&len.to_le_bytes());
    f.extend_from_slice(&crc.to_le_bytes());
    let hc = crc32c::crc32c(&f[0..8]);
    f.extend_from_slice(&hc.to_le_bytes());
    f
}

#[tokio::test]
async fn crafted_segment_headers_are_refused_without_panic() {
    let d = tempfile::tempdir().unwrap();
    populated(d.path(), 10).await;
    let seg = files(d.path(), ".seg").pop().unwrap();
    let good = std::fs::read(&seg).unwrap();
    let with_header = |h: Vec<u8>| {
        let mut data = good.clone();
        data[..32].copy_from_slice(&h);
        data
    };
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        // Smaller than its own header: the old scan panicked here (wal.rs:220).
        (
            "tiny capacity",
            with_header(crafted_segment_header(0, 8)),
            "smaller than the segment header",
        ),
        // Just the header: the old scan ignored everything after it and opened empty.
        (
            "capacity of the header alone",
            with_header(crafted_segment_header(0, 32)),
            "longer than the capacity",
        ),
        (
            "huge capacity",
            with_header(crafted_segment_header(0, u64::MAX)),
            "truncated",
        ),
        (
            "impossible sequence number",
            with_header(crafted_segment_header(u64::MAX, SEGMENT)),
            "sequence number",
        ),
        ("truncated header", good[..20].to_vec(), "truncated"),
        (
            "garbage magic",
            {
                let mut g = good.clone();
                g[..8].copy_from_slice(b"GARBAGE!");
                g
            },
            "magic",
        ),
        (
            "header checksum",
            {
                let mut g = good.clone();
                g[17] ^= 0x10;
                g
            },
            "checksum",
        ),
    ];
    for (what, bytes, detail) in cases {
        std::fs::write(&seg, &bytes).unwrap();
        println!("{what}");
        assert_refused(d.path(), &seg, detail);
    }
    std::fs::write(&seg, &good).unwrap();
    let s = Embedded::open(opts(d.path())).unwrap();
    assert_eq!(s.current_revision().await.unwrap(), 10);
}

#[tokio::test]
async fn crafted_frame_lengths_are_refused_without_panic() {
    let d = tempfile::tempdir().unwrap();
    populated(d.path(), 10).await;
    let (seg, good, _, end) = last_frame(d.path());
    // A frame whose header is valid but announces more than the segment holds, or more than
    // any frame may be, after the last one: damage in both cases, crashed or not.
    for len in [u32::MAX, (SEGMENT as u32) - 8, 9 << 20] {
        for crashed in [false, true] {
            let mut data = good.clone();
            data[end..end + 12].copy_from_slice(&crafted_frame_header(len, 0x1234_5678));
            data[end + 12..end + 64].fill(0x77);
            std::fs::write(&seg, &data).unwrap();
            if crashed {
                as_if_crashed(d.path());
            }
            assert_refused(d.path(), &seg, &format!("byte {end}"));
            if crashed {
                std::fs::write(&seg, &good).unwrap();
                drop(Embedded::open(opts(d.path())).unwrap());
            }
        }
    }
}

#[tokio::test]
async fn crafted_checkpoint_headers_are_refused_without_panic() {
    let d = tempfile::tempdir().unwrap();
    {
        let s = Embedded::open(opts(d.path())).unwrap();
        for i in 0..50 {
            s.put(key(i % 5), value(i)).await.unwrap();
        }
        s.checkpoint().await.unwrap();
    }
    let ckpt = files(d.path(), ".ckpt").pop().expect("a checkpoint");
    let good = std::fs::read(&ckpt).unwrap();
    let crafted = |revision: i64, compacted: i64| {
        let mut b = good.clone();
        b[16..24].copy_from_slice(&revision.to_le_bytes());
        b[24..32].copy_from_slice(&compacted.to_le_bytes());
        let c = crc32c::crc32c(&b[0..32]);
        b[32..36].copy_from_slice(&c.to_le_bytes());
        b
    };
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("revision i64::MAX", crafted(i64::MAX, 0), "revision"),
        ("negative revision", crafted(-5, -10), "revision"),
        ("compacted past the revision", crafted(50, 60), "compacted"),
        // Would size the revision log at 2^61 entries.
        ("huge revision span", crafted(1 << 61, 0), "retained"),
        ("records past the revision", crafted(10, 0), "outside"),
        ("truncated header", good[..30].to_vec(), "truncated"),
        (
            "garbage magic",
            {
                let mut g = good.clone();
                g[..8].copy_from_slice(b"GARBAGE!");
                g
            },
            "magic",
        ),
    ];
    for (what, bytes, detail) in cases {
        std::fs::write(&ckpt, &bytes).unwrap();
        println!("{what}");
        assert_refused(d.path(), &ckpt, detail);
    }
    std::fs::write(&ckpt, &good).unwrap();
    let s = Embedded::open(opts(d.path())).unwrap();
    assert_eq!(s.current_revision().await.unwrap(), 50);
}

/// Opening must fail with `Missing` mentioning `detail`, and create or change nothing.
fn assert_missing(o: EmbeddedOptions, detail: &str) {
    let before = o.dir.exists().then(|| snapshot_of_dir(&o.dir));
    match Embedded::open(o.clone()) {
        Err(e @ StoreError::Missing { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains(detail), "{msg:?} should mention {detail:?}");
            assert!(msg.contains(&*o.dir.to_string_lossy()), "{msg}");
        }
        Err(e) => panic!("expected Missing, got {e}"),
        Ok(_) => panic!("opened as an empty store"),
    }
    let after = o.dir.exists().then(|| snapshot_of_dir(&o.dir));
    assert_eq!(before, after, "a refused open changed files");
}

#[tokio::test]
async fn deleted_log_with_other_files_left_is_refused() {
    let d = tempfile::tempdir().unwrap();
    populated(d.path(), 10).await;
    for seg in files(d.path(), ".seg") {
        std::fs::remove_file(seg).unwrap();
    }
    // The clean marker (and the lock) remain: the log was there and is gone.
    assert_missing(opts(d.path()), CLEAN_MARKER);
    assert_missing(opts(d.path()), "the log was deleted");
    // Any file that is not the store's own counts too.
    std::fs::remove_file(d.path().join(CLEAN_MARKER)).unwrap();
    std::fs::write(d.path().join("notes.txt"), b"x").unwrap();
    assert_missing(opts(d.path()), "notes.txt");
}

#[tokio::test]
async fn required_store_that_is_missing_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("server").join("db");
    let mut o = opts(&dir);
    o.require_existing = true;
    assert_missing(o.clone(), "does not exist");
    assert!(!dir.exists(), "nothing was created");
    std::fs::create_dir_all(&dir).unwrap();
    assert_missing(o.clone(), "no WAL segment or checkpoint");
    // Without the requirement a new store starts; then the requirement is met.
    populated(&dir, 3).await;
    let s = Embedded::open(o).expect("an existing store opens");
    assert_eq!(s.current_revision().await.unwrap(), 3);
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn store_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::tempdir().unwrap();
    let server = d.path().join("server");
    let dir = server.join("db");
    {
        let s = Embedded::open(opts(&dir)).unwrap();
        for i in 0..300 {
            s.put(key(i % 20), value(i)).await.unwrap();
        }
        s.checkpoint().await.unwrap();
        s.put(key(0), value(0)).await.unwrap();
    }
    assert_eq!(mode(&server), 0o700, "a parent the store created");
    assert_eq!(mode(&dir), 0o700);
    let all: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(all.iter().any(|p| p.ends_with(CLEAN_MARKER)), "{all:?}");
    assert!(all.iter().any(|p| p.to_string_lossy().ends_with(".ckpt")));
    assert!(all.iter().any(|p| p.to_string_lossy().ends_with(".seg")));
    for f in &all {
        assert_eq!(mode(f), 0o600, "{}", f.display());
    }
    // Files and directories of an older store, open to everyone, are tightened at open.
    let open_up =
        |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    open_up(&dir, 0o755);
    for f in &all {
        open_up(f, 0o644);
    }
    drop(Embedded::open(opts(&dir)).unwrap());
    assert_eq!(mode(&dir), 0o700);
    for f in std::fs::read_dir(&dir).unwrap() {
        let f = f.unwrap().path();
        assert_eq!(mode(&f), 0o600, "{}", f.display());
    }
}

#[tokio::test]
async fn snapshot_files_are_private() {
    let d = tempfile::tempdir().unwrap();
    populated(&d.path().join("db"), 3).await;
    let s = Embedded::open(opts(&d.path().join("db"))).unwrap();
    let snap = d.path().join("snap");
    rudder_store::snapshot::save(&s, &snap).await.unwrap();
    assert_eq!(mode(&snap), 0o600);
    drop(s);
    let restored = d.path().join("restored").join("db");
    rudder_store::snapshot::restore_embedded(&snap, &restored).unwrap();
    assert_eq!(mode(&restored), 0o700);
    assert_eq!(mode(restored.parent().unwrap()), 0o700);
}

#[tokio::test]
async fn foreign_file_is_refused() {
    let d = tempfile::tempdir().unwrap();
    populated(d.path(), 5).await;
    let seg = files(d.path(), ".seg").pop().unwrap();
    std::fs::write(&seg, b"this is not a segment at all, just some text").unwrap();
    assert_refused(d.path(), &seg, "magic");
}

#[tokio::test]
async fn second_open_of_the_same_dir_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let _s = Embedded::open(opts(d.path())).unwrap();
    match Embedded::open(opts(d.path())) {
        Err(e) => assert!(e.to_string().contains("in use"), "{e}"),
        Ok(_) => panic!("two processes' worth of writers on one store"),
    }
}

// --- Failing disks: run in a child process inside its own mount namespace, on a small tmpfs.

const CHILD_ENV: &str = "RUDDER_FAULT_CHILD_DIR";

/// Runs `test_name` (an ignored test of this binary) in a private mount namespace with a
/// `size`-byte tmpfs mounted at a fresh directory, passed in `RUDDER_FAULT_CHILD_DIR`.
fn run_on_small_tmpfs(test_name: &str, size: u64) {
    let root = tempfile::tempdir().unwrap();
    let mnt = root.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let exe = std::env::current_exe().unwrap();
    let script = format!(
        "mount -t tmpfs -o size={size} rudder-fault {mnt} && exec \"$0\" {test_name} --exact --ignored --nocapture --test-threads 1",
        mnt = mnt.display()
    );
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .arg(&exe)
        .env(CHILD_ENV, &mnt)
        .output()
        .expect("run unshare (util-linux); these tests need root to mount a tmpfs");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "child failed:\n{text}");
    assert!(
        text.contains("1 passed"),
        "the child test did not run:\n{text}"
    );
}

fn child_dir() -> PathBuf {
    PathBuf::from(std::env::var_os(CHILD_ENV).expect("run by the parent test"))
}

#[test]
fn disk_full_acknowledges_nothing() {
    run_on_small_tmpfs("disk_full_child", 3 << 20);
}

#[tokio::test]
#[ignore = "run by disk_full_acknowledges_nothing inside a private mount namespace"]
async fn disk_full_child() {
    let dir = child_dir().join("db");
    let mut o = EmbeddedOptions::new(&dir);
    o.segment_size = 1 << 20;
    let s = Embedded::open(o.clone()).unwrap();
    let big = Bytes::from(vec![0x42u8; 60 << 10]);
    let mut acked = 0;
    let err = loop {
        match s.put(key(acked), big.clone()).await {
            Ok(kv) => {
                assert_eq!(kv.mod_revision, acked as i64 + 1);
                acked += 1;
            }
            Err(e) => break e,
        }
        assert!(acked < 1000, "the 3 MiB file system never filled up");
    };
    println!("write {acked} failed as expected: {err}");
    assert!(
        err.to_string().contains("No space left"),
        "the error says why: {err}"
    );
    assert!(acked >= 16, "at least one segment filled first ({acked})");
    // Nothing of the failed write is visible, the store still serves reads and says no again.
    assert_eq!(s.current_revision().await.unwrap(), acked as i64);
    assert!(s.get(key(acked), 0).await.unwrap().is_none());
    assert!(s.put(key(acked), big.clone()).await.is_err());
    assert_eq!(
        s.count(KeyRange::prefix("/registry/")).await.unwrap(),
        acked as i64
    );
    drop(s);
    let s = Embedded::open(o).expect("reopen after a full disk");
    assert_eq!(s.current_revision().await.unwrap(), acked as i64);
    for i in 0..acked {
        assert_eq!(s.get(key(i), 0).await.unwrap().unwrap().value, big);
    }
    assert!(s.get(key(acked), 0).await.unwrap().is_none());
}

/// Runs `test_name` (an ignored test of this binary) as the unprivileged user `nobody`, so that
/// file permissions apply, with a directory it owns in `RUDDER_FAULT_CHILD_DIR`.
fn run_unprivileged(test_name: &str) {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("store");
    std::fs::create_dir(&dir).unwrap();
    std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).expect("chown (needs root)");
    let mut perms = std::fs::metadata(root.path()).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(root.path(), perms).unwrap();
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&exe)
        .args([
            test_name,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD_ENV, &dir)
        .output()
        .expect("run setpriv (util-linux)");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "child failed:\n{text}");
    assert!(
        text.contains("1 passed"),
        "the child test did not run:\n{text}"
    );
}

#[test]
fn read_only_directory_acknowledges_nothing() {
    run_unprivileged("read_only_child");
}

#[tokio::test]
#[ignore = "run by read_only_directory_acknowledges_nothing as an unprivileged user"]
async fn read_only_child() {
    use std::os::unix::fs::PermissionsExt;
    let dir = child_dir();
    let chmod =
        |mode: u32| std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).unwrap();
    let s = Embedded::open(opts(&dir)).unwrap();
    chmod(0o555);
    // Writes go on in the preallocated segment; the one that needs a new segment fails.
    let mut acked = 0;
    let err = loop {
        match s.create(key(acked), value(acked)).await {
            Ok(_) => acked += 1,
            Err(e) => break e,
        }
        assert!(
            acked < 10_000,
            "a read-only directory never stopped the writes"
        );
    };
    println!("write {acked} failed as expected: {err}");
    assert!(err.to_string().contains("Permission denied"), "{err}");
    assert!(acked > 10, "the first segment was used ({acked})");
    assert_eq!(s.current_revision().await.unwrap(), acked as i64);
    assert!(s.get(key(acked), 0).await.unwrap().is_none());
    // Nothing was written, so the store is still healthy: once writable, writes go on.
    chmod(0o755);
    s.create(key(acked), value(acked)).await.unwrap();
    drop(s);
    let s = Embedded::open(opts(&dir)).expect("reopen");
    assert_eq!(s.current_revision().await.unwrap(), acked as i64 + 1);
    for i in 0..=acked {
        assert_eq!(s.get(key(i), 0).await.unwrap().unwrap().value, value(i));
    }
}

#[test]
fn read_only_directory_at_open_is_a_clear_error() {
    // No tmpfs needed: a path under a regular file can never be created.
    let d = tempfile::tempdir().unwrap();
    let file = d.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    match Embedded::open(opts(&file.join("db"))) {
        Err(StoreError::Io { context, .. }) => assert!(context.contains("db"), "{context}"),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("opened a store under a file"),
    }
}
