//! Damaged files and failing disks, on the embedded store: every kind of damage is refused at
//! open with an error naming the file (never a silent reset, never a panic, the files left as
//! they were), a torn final write is discarded, and a write that cannot be made durable is
//! answered with an error and never acknowledged.

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
