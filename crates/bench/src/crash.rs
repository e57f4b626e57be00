//! Crash safety of the embedded store, with real process deaths.
//!
//! A child process (`rudder-bench store-crash-child DIR`) runs concurrent writers (puts, creates,
//! compare-and-swap updates, deletes) plus compaction and checkpoints, and prints one line per
//! acknowledged write. The parent kills it with SIGKILL at a random moment, reopens the store and
//! checks that it opens cleanly, that the revision never went backwards, and that every
//! acknowledged write is there: read at its own revision (when not compacted away) it has exactly
//! the acknowledged value, and no key's current version is older than its last acknowledged
//! write. Rounds continue on the same directory, so recovery after recovery is exercised.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use rand::{Rng, SeedableRng};
use rudder_store::embedded::{Embedded, EmbeddedOptions};
use rudder_store::{Store, StoreError};

const KEYS: usize = 300;
const WRITERS: usize = 16;

fn options(dir: &Path) -> EmbeddedOptions {
    let mut o = EmbeddedOptions::new(dir);
    // Small segments: roll-overs and seals happen often enough to be killed in the middle of.
    o.segment_size = 256 << 10;
    o
}

fn key(i: usize) -> Bytes {
    Bytes::from(format!("/registry/crash/k{i:04}"))
}

/// A value whose content the parent can check from its length and checksum.
fn value(rng: &mut impl Rng) -> Bytes {
    let len = rng.gen_range(1..4096);
    let mut v = vec![0u8; len];
    rng.fill(&mut v[..]);
    Bytes::from(v)
}

/// One acknowledged write, as the child reports it: `P key rev crc len` or `D key rev`.
#[derive(Clone, Copy, Debug)]
struct Ack {
    rev: i64,
    /// `None` for a delete.
    value: Option<(u32, usize)>,
}

fn report(out: &std::sync::Mutex<std::io::Stdout>, line: String) {
    if let Ok(mut o) = out.lock() {
        // A failed write to the parent means it is gone; the child is about to be killed.
        let _ = writeln!(o, "{line}").and_then(|_| o.flush());
    }
}

/// The child: writes until killed.
pub fn child(dir: &Path) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let store = Arc::new(Embedded::open(options(dir)).context("child: open")?);
        let out = Arc::new(std::sync::Mutex::new(std::io::stdout()));
        report(&out, format!("READY {}", store.current_revision().await?));
        let mut tasks = Vec::new();
        for w in 0..WRITERS {
            let store = store.clone();
            let out = out.clone();
            tasks.push(tokio::spawn(async move {
                let mut rng = rand::rngs::StdRng::from_entropy();
                loop {
                    let k = rng.gen_range(0..KEYS);
                    let op = rng.gen_range(0..10);
                    let v = value(&mut rng);
                    let line = match op {
                        0..=4 => store
                            .put(key(k), v.clone())
                            .await
                            .map(|kv| Some((kv.mod_revision, Some(v)))),
                        5 | 6 => match store.get(key(k), 0).await {
                            Ok(Some(cur)) => {
                                match store.update(key(k), v.clone(), cur.mod_revision).await {
                                    Ok(kv) => Ok(Some((kv.mod_revision, Some(v)))),
                                    Err(StoreError::Conflict { .. }) => Ok(None),
                                    Err(e) => Err(e),
                                }
                            }
                            Ok(None) => Ok(None),
                            Err(e) => Err(e),
                        },
                        7 => match store.create(key(k), v.clone()).await {
                            Ok(kv) => Ok(Some((kv.mod_revision, Some(v)))),
                            Err(StoreError::AlreadyExists { .. }) => Ok(None),
                            Err(e) => Err(e),
                        },
                        _ => match store.delete(key(k), None).await {
                            Ok((_, rev)) => Ok(Some((rev, None))),
                            Err(StoreError::NotFound { .. }) => Ok(None),
                            Err(e) => Err(e),
                        },
                    };
                    match line {
                        Ok(Some((rev, Some(v)))) => report(
                            &out,
                            format!("P {k} {rev} {} {}", crc32c::crc32c(&v), v.len()),
                        ),
                        Ok(Some((rev, None))) => report(&out, format!("D {k} {rev}")),
                        Ok(None) => {}
                        Err(e) => {
                            report(&out, format!("ERROR writer {w}: {e}"));
                            return;
                        }
                    }
                }
            }));
        }
        // Maintenance: compaction and checkpoints, so kills land in those too.
        let maint = {
            let store = store.clone();
            tokio::spawn(async move {
                let mut i = 0u64;
                loop {
                    tokio::time::sleep(Duration::from_millis(30)).await;
                    i += 1;
                    if let Ok(rev) = store.current_revision().await {
                        if rev > 3000 {
                            let _ = store.compact(rev - 3000).await;
                        }
                    }
                    if i.is_multiple_of(3) {
                        let _ = store.checkpoint().await;
                    }
                }
            })
        };
        for t in tasks {
            let _ = t.await;
        }
        maint.abort();
        bail!("child: every writer stopped")
    })
}

/// What the crash rounds found.
#[derive(Debug, Default)]
pub struct CrashReport {
    pub rounds: usize,
    pub acknowledged: u64,
    pub final_revision: i64,
    pub checked_at_revision: u64,
}

fn parse(line: &str) -> Option<(usize, Ack)> {
    let mut it = line.split_whitespace();
    let kind = it.next()?;
    let k: usize = it.next()?.parse().ok()?;
    let rev: i64 = it.next()?.parse().ok()?;
    match kind {
        "P" => {
            let crc: u32 = it.next()?.parse().ok()?;
            let len: usize = it.next()?.parse().ok()?;
            Some((
                k,
                Ack {
                    rev,
                    value: Some((crc, len)),
                },
            ))
        }
        "D" => Some((k, Ack { rev, value: None })),
        _ => None,
    }
}

/// Runs `rounds` kill-and-recover rounds in `dir`, using `child_exe store-crash-child DIR` as
/// the child. `progress` is called after each round.
pub fn run(
    child_exe: &Path,
    dir: &Path,
    rounds: usize,
    mut progress: impl FnMut(usize, &CrashReport),
) -> Result<CrashReport> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut rng = rand::rngs::StdRng::from_entropy();
    let mut report = CrashReport::default();
    let mut last_rev = 0i64;
    for round in 0..rounds {
        let mut child = Command::new(child_exe)
            .arg("store-crash-child")
            .arg(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("start {}", child_exe.display()))?;
        let stdout = child.stdout.take().context("child stdout")?;
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let first = rx
            .recv_timeout(Duration::from_secs(60))
            .context("the child never reported READY")?;
        let Some(start_rev) = first
            .strip_prefix("READY ")
            .and_then(|r| r.parse::<i64>().ok())
        else {
            let _ = child.kill();
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            bail!("round {round}: child failed to start: {first}\n{err}");
        };
        if start_rev < last_rev {
            bail!("round {round}: revision went backwards: {start_rev} < {last_rev}");
        }
        std::thread::sleep(Duration::from_millis(rng.gen_range(20..400)));
        // SAFETY: signalling our own child by pid.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGKILL);
        }
        let _ = child.wait();
        let _ = reader.join();
        let mut acks: Vec<(usize, Ack)> = Vec::new();
        for line in rx.try_iter() {
            if line.starts_with("ERROR") {
                bail!("round {round}: child write failed: {line}");
            }
            if let Some(a) = parse(&line) {
                acks.push(a);
            }
        }
        let max_acked = acks.iter().map(|(_, a)| a.rev).max().unwrap_or(start_rev);
        let checked = rt
            .block_on(verify(dir, &acks, max_acked.max(last_rev)))
            .with_context(|| format!("round {round}"))?;
        report.rounds += 1;
        report.acknowledged += acks.len() as u64;
        report.checked_at_revision += checked;
        last_rev = rt.block_on(async {
            let s = Embedded::open(options(dir))?;
            s.current_revision().await
        })?;
        report.final_revision = last_rev;
        progress(round, &report);
    }
    Ok(report)
}

/// Reopens the store and checks every acknowledged write. Returns how many were checked at
/// their own revision (the rest were compacted away and are checked against the present).
async fn verify(dir: &Path, acks: &[(usize, Ack)], min_rev: i64) -> Result<u64> {
    let store = Embedded::open(options(dir)).context("reopen after SIGKILL")?;
    let current = store.current_revision().await?;
    if current < min_rev {
        bail!("acknowledged revision {min_rev} lost: the store is at {current}");
    }
    let compacted = store.compacted_revision().await?;
    let mut last: HashMap<usize, Ack> = HashMap::new();
    let mut checked = 0;
    for (k, ack) in acks {
        if last.get(k).is_none_or(|a| a.rev < ack.rev) {
            last.insert(*k, *ack);
        }
        if ack.rev < compacted {
            continue;
        }
        let got = store.get(key(*k), ack.rev).await?;
        match (ack.value, got) {
            (Some((crc, len)), Some(kv)) => {
                if kv.mod_revision != ack.rev
                    || kv.value.len() != len
                    || crc32c::crc32c(&kv.value) != crc
                {
                    bail!(
                        "key {k} at revision {}: found mod_revision {} with {} bytes, acknowledged {len} bytes",
                        ack.rev,
                        kv.mod_revision,
                        kv.value.len()
                    );
                }
            }
            (Some(_), None) => bail!(
                "acknowledged put of key {k} at revision {} is missing",
                ack.rev
            ),
            (None, Some(kv)) => bail!(
                "acknowledged delete of key {k} at revision {} not there: found mod_revision {}",
                ack.rev,
                kv.mod_revision
            ),
            (None, None) => {}
        }
        checked += 1;
    }
    // Nothing older than the last acknowledged write of a key may be current.
    for (k, ack) in last {
        if let Some(kv) = store.get(key(k), 0).await? {
            if kv.mod_revision < ack.rev {
                bail!(
                    "key {k} is at mod_revision {} but a write at {} was acknowledged",
                    kv.mod_revision,
                    ack.rev
                );
            }
        }
    }
    Ok(checked)
}

/// Directory for a crash run: a temporary one unless given.
pub fn work_dir(given: Option<PathBuf>) -> Result<(PathBuf, Option<tempfile::TempDir>)> {
    match given {
        Some(d) => Ok((d, None)),
        None => {
            let t = tempfile::tempdir()?;
            Ok((t.path().join("db"), Some(t)))
        }
    }
}
