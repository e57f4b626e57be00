//! The store benchmark: the embedded store against a real etcd, through the same [`Store`] trait.
//!
//! Both run one after the other in the same run, each on a fresh store whose files live under
//! `/var/tmp` (the same disk for both, not tmpfs, so every `fsync` costs what it costs; etcd runs
//! with its default durability). Measured for each:
//! 1. sequential put latency (p50/p99), 1 KiB values, one put at a time;
//! 2. put throughput with 64 concurrent writers to distinct keys;
//! 3. latency of a full range read of 10,000 keys under one prefix (median of 20);
//! 4. watch delivery latency: a prefix watch is open, puts are issued one at a time, and the
//!    time from issuing a put to receiving its event is measured (the send time travels in the
//!    value);
//! 5. RSS with 100,000 keys × 1 KiB: the embedded store in a separate child process
//!    (`rudder-bench store-rss-child DIR`) that reports its own RSS after the writes, after
//!    closing and reopening the store in the same process, and in a fresh process that only
//!    recovers the store (what a restarted server pays); etcd's RSS from `/proc/<pid>/status`
//!    after the same load, and again after it was restarted on the same data.
//!
//! Every figure is printed for both with the ratio embedded / etcd, because the machine is shared
//! and absolute numbers drift while ratios hold. Targets are reported as PASS/MISS; a MISS does
//! not fail the benchmark.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use rand::{Rng, SeedableRng};
use rudder_store::embedded::{batches_written, Embedded, EmbeddedOptions};
use rudder_store::etcd::EtcdStore;
use rudder_store::{KeyRange, RangeRequest, Store, WatchMessage, WatchRequest};
use rudder_testkit::EtcdProcess;

/// Where both stores keep their files: a real disk, so that fsync is real.
pub const BENCH_PARENT: &str = "/var/tmp";

/// How big each measurement is.
#[derive(Clone, Debug)]
pub struct Sizes {
    /// Value size of every write, in bytes.
    pub value_size: usize,
    /// Sequential puts timed one by one.
    pub seq_puts: usize,
    /// Concurrent writers for the throughput (and load) phases.
    pub writers: usize,
    /// Puts in the throughput phase.
    pub writes: usize,
    /// Keys under the prefix that is read whole.
    pub range_keys: usize,
    /// Timed full range reads (the median is reported).
    pub range_reads: usize,
    /// Puts whose watch events are timed.
    pub watch_puts: usize,
    /// Keys written before RSS is read.
    pub rss_keys: usize,
}

impl Sizes {
    /// The sizes `docs/benchmarks.md` reports.
    pub fn full() -> Sizes {
        Sizes {
            value_size: 1024,
            seq_puts: 2_000,
            writers: 64,
            writes: 20_000,
            range_keys: 10_000,
            range_reads: 20,
            watch_puts: 1_000,
            rss_keys: 100_000,
        }
    }

    /// A tenth of everything (a smoke run; not for the docs).
    pub fn quick() -> Sizes {
        Sizes {
            value_size: 1024,
            seq_puts: 200,
            writers: 64,
            writes: 2_000,
            range_keys: 1_000,
            range_reads: 5,
            watch_puts: 100,
            rss_keys: 10_000,
        }
    }
}

/// Puts before the timed sequential ones (connection set-up, first segment page, …).
const WARMUP_PUTS: usize = 20;

fn seq_key(i: usize) -> Bytes {
    Bytes::from(format!("/registry/bench-seq/default/obj-{i:07}"))
}
fn tput_key(i: usize) -> Bytes {
    Bytes::from(format!("/registry/bench-tput/default/obj-{i:07}"))
}
const RANGE_PREFIX: &str = "/registry/bench-range/default/";
fn range_key(i: usize) -> Bytes {
    Bytes::from(format!("{RANGE_PREFIX}obj-{i:07}"))
}
const WATCH_PREFIX: &str = "/registry/bench-watch/default/";
fn watch_key(i: usize) -> Bytes {
    Bytes::from(format!("{WATCH_PREFIX}obj-{i:07}"))
}
/// Keys of the RSS load (same length for both backends: the live data size is computed from it).
pub fn rss_key(i: usize) -> Bytes {
    Bytes::from(format!("/registry/bench-rss/default/obj-{i:07}"))
}

/// `n` distinct random values, each its own allocation (a store that keeps values in memory
/// must not get away with sharing one buffer).
fn values(n: usize, size: usize, rng: &mut impl Rng) -> Vec<Bytes> {
    (0..n)
        .map(|_| {
            let mut v = vec![0u8; size];
            rng.fill(&mut v[..]);
            Bytes::from(v)
        })
        .collect()
}

/// Latency percentiles of a sample.
#[derive(Clone, Copy, Debug, Default)]
pub struct Latency {
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
    pub mean: Duration,
}

impl Latency {
    pub fn of(mut xs: Vec<Duration>) -> Latency {
        if xs.is_empty() {
            return Latency::default();
        }
        xs.sort();
        let n = xs.len();
        // Nearest rank.
        let rank = |p: f64| xs[((p * n as f64).ceil() as usize).clamp(1, n) - 1];
        let sum: Duration = xs.iter().sum();
        Latency {
            p50: rank(0.50),
            p99: rank(0.99),
            max: xs[n - 1],
            mean: sum / n as u32,
        }
    }
}

/// Memory of a process, from `/proc/<pid>/status` (kB as the kernel reports them).
#[derive(Clone, Copy, Debug, Default)]
pub struct Mem {
    pub rss_kb: u64,
    pub anon_kb: u64,
    pub file_kb: u64,
    pub hwm_kb: u64,
}

impl Mem {
    pub fn of(pid: Option<u32>) -> Result<Mem> {
        let path = match pid {
            Some(p) => format!("/proc/{p}/status"),
            None => "/proc/self/status".to_string(),
        };
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        let field = |name: &str| -> u64 {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0)
        };
        Ok(Mem {
            rss_kb: field("VmRSS:"),
            anon_kb: field("RssAnon:"),
            file_kb: field("RssFile:") + field("RssShmem:"),
            hwm_kb: field("VmHWM:"),
        })
    }

    pub fn bytes(&self) -> u64 {
        self.rss_kb * 1024
    }

    fn line(&self) -> String {
        format!(
            "{} {} {} {}",
            self.rss_kb, self.anon_kb, self.file_kb, self.hwm_kb
        )
    }

    fn parse(s: &str) -> Option<Mem> {
        let mut it = s.split_whitespace().map(|x| x.parse::<u64>().ok());
        Some(Mem {
            rss_kb: it.next()??,
            anon_kb: it.next()??,
            file_kb: it.next()??,
            hwm_kb: it.next()??,
        })
    }
}

/// What one backend measured in phases 1–4.
#[derive(Clone, Debug, Default)]
pub struct Phases {
    pub seq: Latency,
    pub seq_batches: Option<u64>,
    pub tput_per_s: f64,
    pub tput_elapsed: Duration,
    pub tput_batches: Option<u64>,
    pub range: Duration,
    pub range_min: Duration,
    pub range_max: Duration,
    pub range_fill_per_s: f64,
    pub watch: Latency,
}

/// RSS after a load of `rss_keys` keys.
#[derive(Clone, Debug, Default)]
pub struct RssResult {
    /// Before the store was opened (the embedded child's baseline).
    pub base: Option<Mem>,
    pub after_writes: Mem,
    /// Closed and reopened in the same process (embedded only).
    pub reopened_same_process: Option<Mem>,
    /// A fresh process that only recovers the store (embedded) / etcd restarted on its data.
    pub recovered: Option<Mem>,
    pub load_per_s: f64,
    pub load_batches: Option<u64>,
    pub recover_time: Option<Duration>,
}

async fn seq_puts(
    store: &dyn Store,
    sizes: &Sizes,
    embedded: bool,
) -> Result<(Latency, Option<u64>)> {
    let mut rng = rand::rngs::StdRng::from_entropy();
    let vals = values(sizes.seq_puts + WARMUP_PUTS, sizes.value_size, &mut rng);
    for (i, v) in vals.iter().take(WARMUP_PUTS).enumerate() {
        store.put(seq_key(sizes.seq_puts + i), v.clone()).await?;
    }
    let b0 = batches_written();
    let mut lat = Vec::with_capacity(sizes.seq_puts);
    for (i, v) in vals.into_iter().take(sizes.seq_puts).enumerate() {
        let t = Instant::now();
        store.put(seq_key(i), v).await?;
        lat.push(t.elapsed());
    }
    let batches = embedded.then(|| batches_written() - b0);
    Ok((Latency::of(lat), batches))
}

/// Writes `vals[i]` to `key(i)` for every `i` with `writers` concurrent tasks; returns the
/// elapsed time.
async fn concurrent_puts(
    store: Arc<dyn Store>,
    writers: usize,
    vals: Arc<Vec<Bytes>>,
    key: fn(usize) -> Bytes,
) -> Result<Duration> {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(writers);
    for _ in 0..writers {
        let store = store.clone();
        let next = next.clone();
        let vals = vals.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(v) = vals.get(i) else {
                    return Ok::<(), rudder_store::StoreError>(());
                };
                store.put(key(i), v.clone()).await?;
            }
        }));
    }
    for t in tasks {
        t.await.context("writer task panicked")??;
    }
    Ok(start.elapsed())
}

async fn watch_latency(store: &dyn Store, sizes: &Sizes) -> Result<Latency> {
    let n = sizes.watch_puts;
    let mut watch = store
        .watch(WatchRequest::new(KeyRange::prefix(WATCH_PREFIX), 0))
        .await?;
    let origin = Instant::now();
    let reader = tokio::spawn(async move {
        let mut lat = Vec::with_capacity(n);
        while lat.len() < n {
            match watch.next().await {
                Some(Ok(WatchMessage::Events { events, .. })) => {
                    let now = origin.elapsed();
                    for e in events {
                        let mut sent = [0u8; 8];
                        if e.kv.value.len() >= 8 {
                            sent.copy_from_slice(&e.kv.value[..8]);
                        }
                        let sent = Duration::from_nanos(u64::from_le_bytes(sent));
                        lat.push(now.saturating_sub(sent));
                    }
                }
                Some(Ok(WatchMessage::Progress { .. })) => {}
                Some(Err(e)) => bail!("watch failed: {e}"),
                None => bail!("watch ended after {} of {n} events", lat.len()),
            }
        }
        Ok(lat)
    });
    let mut rng = rand::rngs::StdRng::from_entropy();
    let bodies = values(n, sizes.value_size.max(8), &mut rng);
    for (i, body) in bodies.into_iter().enumerate() {
        let mut v = body.to_vec();
        let sent = origin.elapsed().as_nanos() as u64;
        v[..8].copy_from_slice(&sent.to_le_bytes());
        store.put(watch_key(i), Bytes::from(v)).await?;
    }
    let lat = tokio::time::timeout(Duration::from_secs(60), reader)
        .await
        .context("watch events did not all arrive within 60 s of the last put")?
        .context("watch reader panicked")??;
    Ok(Latency::of(lat))
}

/// Phases 1–4 on one (fresh) store.
async fn phases(store: Arc<dyn Store>, sizes: &Sizes, embedded: bool) -> Result<Phases> {
    let name = store.backend();
    let mut out = Phases::default();
    let mut rng = rand::rngs::StdRng::from_entropy();

    progress(&format!("{name}: {} sequential puts", sizes.seq_puts));
    let (seq, b) = seq_puts(&*store, sizes, embedded).await?;
    out.seq = seq;
    out.seq_batches = b;

    progress(&format!(
        "{name}: {} puts by {} concurrent writers",
        sizes.writes, sizes.writers
    ));
    let vals = Arc::new(values(sizes.writes, sizes.value_size, &mut rng));
    let b0 = batches_written();
    let elapsed = concurrent_puts(store.clone(), sizes.writers, vals, tput_key).await?;
    out.tput_batches = embedded.then(|| batches_written() - b0);
    out.tput_elapsed = elapsed;
    out.tput_per_s = sizes.writes as f64 / elapsed.as_secs_f64();

    progress(&format!(
        "{name}: range of {} keys ({} reads)",
        sizes.range_keys, sizes.range_reads
    ));
    let vals = Arc::new(values(sizes.range_keys, sizes.value_size, &mut rng));
    let fill = concurrent_puts(store.clone(), sizes.writers, vals, range_key).await?;
    out.range_fill_per_s = sizes.range_keys as f64 / fill.as_secs_f64();
    let req = RangeRequest::new(KeyRange::prefix(RANGE_PREFIX));
    let warm = store.range(req.clone()).await?;
    if warm.kvs.len() != sizes.range_keys {
        bail!(
            "{name}: range returned {} keys, expected {}",
            warm.kvs.len(),
            sizes.range_keys
        );
    }
    drop(warm);
    let mut reads = Vec::with_capacity(sizes.range_reads);
    for _ in 0..sizes.range_reads.max(1) {
        let t = Instant::now();
        let resp = store.range(req.clone()).await?;
        let d = t.elapsed();
        if resp.kvs.len() != sizes.range_keys {
            bail!("{name}: range returned {} keys", resp.kvs.len());
        }
        drop(resp);
        reads.push(d);
    }
    reads.sort();
    out.range = reads[reads.len() / 2];
    out.range_min = reads[0];
    out.range_max = reads[reads.len() - 1];

    progress(&format!(
        "{name}: watch delivery over {} puts",
        sizes.watch_puts
    ));
    out.watch = watch_latency(&*store, sizes).await?;
    Ok(out)
}

fn progress(msg: &str) {
    eprintln!("  … {msg}");
}

/// The child of the RSS measurement: `rudder-bench store-rss-child DIR`.
///
/// Without `reopen_only`: opens a fresh store in `dir`, writes `keys` keys of `value_size` bytes
/// with `writers` concurrent writers, reports its RSS, closes and reopens the store, reports
/// again. With `reopen_only`: only opens (recovers) the store and reports. Output lines:
/// `BASE|WRITTEN|REOPENED <rss> <anon> <file> <hwm>` (kB), `LOAD <secs> <batches>`,
/// `OPEN <secs>`.
pub fn rss_child(
    dir: &Path,
    keys: usize,
    writers: usize,
    value_size: usize,
    reopen_only: bool,
) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut out = std::io::stdout();
    writeln!(out, "BASE {}", Mem::of(None)?.line())?;
    rt.block_on(async {
        if !reopen_only {
            let store = Arc::new(Embedded::open(EmbeddedOptions::new(dir))?);
            let next = Arc::new(AtomicUsize::new(0));
            let b0 = batches_written();
            let start = Instant::now();
            let mut tasks = Vec::new();
            for w in 0..writers {
                let store = store.clone();
                let next = next.clone();
                tasks.push(tokio::spawn(async move {
                    let mut rng = rand::rngs::StdRng::seed_from_u64(w as u64);
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= keys {
                            return Ok::<(), rudder_store::StoreError>(());
                        }
                        let mut v = vec![0u8; value_size];
                        rng.fill(&mut v[..]);
                        store.put(rss_key(i), Bytes::from(v)).await?;
                    }
                }));
            }
            for t in tasks {
                t.await.context("writer task panicked")??;
            }
            let elapsed = start.elapsed();
            writeln!(
                out,
                "LOAD {} {}",
                elapsed.as_secs_f64(),
                batches_written() - b0
            )?;
            writeln!(out, "WRITTEN {}", Mem::of(None)?.line())?;
            store.close();
            drop(store);
        }
        let start = Instant::now();
        let store = Embedded::open(EmbeddedOptions::new(dir))?;
        let open = start.elapsed();
        let n = store
            .count(KeyRange::prefix("/registry/bench-rss/"))
            .await?;
        if n != keys as i64 {
            bail!("reopened store holds {n} keys, expected {keys}");
        }
        writeln!(out, "OPEN {}", open.as_secs_f64())?;
        writeln!(out, "REOPENED {}", Mem::of(None)?.line())?;
        store.close();
        Ok(())
    })
}

fn run_rss_child(exe: &Path, dir: &Path, sizes: &Sizes, reopen_only: bool) -> Result<String> {
    let mut cmd = Command::new(exe);
    cmd.arg("store-rss-child")
        .arg(dir)
        .arg("--keys")
        .arg(sizes.rss_keys.to_string())
        .arg("--writers")
        .arg(sizes.writers.to_string())
        .arg("--value-size")
        .arg(sizes.value_size.to_string());
    if reopen_only {
        cmd.arg("--reopen-only");
    }
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {} store-rss-child", exe.display()))?;
    if !out.status.success() {
        bail!("store-rss-child failed with {}", out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn field<'a>(out: &'a str, tag: &str) -> Option<&'a str> {
    out.lines()
        .find_map(|l| l.strip_prefix(tag).and_then(|r| r.strip_prefix(' ')))
}

fn embedded_rss(exe: &Path, parent: &Path, sizes: &Sizes) -> Result<RssResult> {
    let tmp = tempfile::Builder::new()
        .prefix("rudder-bench-rss-")
        .tempdir_in(parent)?;
    let dir = tmp.path().join("db");
    progress(&format!(
        "embedded: RSS child writes {} keys",
        sizes.rss_keys
    ));
    let first = run_rss_child(exe, &dir, sizes, false)?;
    progress("embedded: RSS child recovers the store in a fresh process");
    let second = run_rss_child(exe, &dir, sizes, true)?;
    let mem = |out: &str, tag: &str| {
        field(out, tag)
            .and_then(Mem::parse)
            .with_context(|| format!("store-rss-child printed no {tag} line:\n{out}"))
    };
    let mut load = field(&first, "LOAD").unwrap_or("").split_whitespace();
    let secs: f64 = load.next().and_then(|s| s.parse().ok()).unwrap_or(0.0);
    let batches: Option<u64> = load.next().and_then(|s| s.parse().ok());
    let open: Option<f64> = field(&second, "OPEN").and_then(|s| s.parse().ok());
    Ok(RssResult {
        base: Some(mem(&first, "BASE")?),
        after_writes: mem(&first, "WRITTEN")?,
        reopened_same_process: Some(mem(&first, "REOPENED")?),
        recovered: Some(mem(&second, "REOPENED")?),
        load_per_s: if secs > 0.0 {
            sizes.rss_keys as f64 / secs
        } else {
            0.0
        },
        load_batches: batches,
        recover_time: open.map(Duration::from_secs_f64),
    })
}

async fn etcd_rss(parent: &Path, sizes: &Sizes) -> Result<RssResult> {
    progress(&format!("etcd: fresh etcd, {} keys", sizes.rss_keys));
    let mut etcd = EtcdProcess::start_in(parent, &[])?;
    let base = Mem::of(Some(etcd.pid()))?;
    let store: Arc<dyn Store> = Arc::new(EtcdStore::connect(&[etcd.endpoint()]).await?);
    let mut rng = rand::rngs::StdRng::from_entropy();
    let vals = Arc::new(values(sizes.rss_keys, sizes.value_size, &mut rng));
    let elapsed = concurrent_puts(store.clone(), sizes.writers, vals, rss_key).await?;
    let after = Mem::of(Some(etcd.pid()))?;
    drop(store);
    // Restart etcd on the same data (a later --data-dir wins) for its recovery RSS.
    progress("etcd: restart on the same data");
    etcd.kill()?;
    let data = format!("--data-dir={}", etcd.data_dir().display());
    let start = Instant::now();
    let (recovered, recover_time) = match EtcdProcess::start_in(parent, &[&data]) {
        Ok(again) => {
            let took = start.elapsed();
            let check = EtcdStore::connect(&[again.endpoint()]).await?;
            let n = check
                .count(KeyRange::prefix("/registry/bench-rss/"))
                .await?;
            if n != sizes.rss_keys as i64 {
                bail!("restarted etcd holds {n} keys, expected {}", sizes.rss_keys);
            }
            (Some(Mem::of(Some(again.pid()))?), Some(took))
        }
        Err(e) => {
            eprintln!("etcd could not be restarted on its data, no recovery RSS: {e:#}");
            (None, None)
        }
    };
    Ok(RssResult {
        base: Some(base),
        after_writes: after,
        reopened_same_process: None,
        recovered,
        load_per_s: sizes.rss_keys as f64 / elapsed.as_secs_f64(),
        load_batches: None,
        recover_time,
    })
}

pub(crate) fn etcd_version(etcd: &EtcdProcess) -> String {
    let exe = std::fs::read_link(format!("/proc/{}/exe", etcd.pid()))
        .unwrap_or_else(|_| PathBuf::from(rudder_testkit::DEFAULT_ETCD_BIN));
    let line = Command::new(&exe)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(str::to_string)
        })
        .unwrap_or_else(|| "unknown".into());
    let api = etcd.http_get("/version").unwrap_or_default();
    format!("{line} ({}) {}", exe.display(), api.trim())
}

pub(crate) fn machine() -> String {
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_default();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_default();
    format!(
        "nproc {nproc}, kernel {}, CPU {cpu}, memory {mem}",
        kernel.trim()
    )
}

pub(crate) fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

pub(crate) fn fs_of(path: &Path) -> String {
    // The longest mount point that is a prefix of `path`.
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let p = path.to_string_lossy();
    mounts
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let dev = it.next()?;
            let mnt = it.next()?;
            let fs = it.next()?;
            let inside = p == mnt || mnt == "/" || p.starts_with(&format!("{mnt}/"));
            inside.then(|| (mnt.len(), format!("{fs} on {dev} ({mnt})")))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, s)| s)
        .unwrap_or_else(|| "unknown".into())
}

pub(crate) fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1e3;
    if ms >= 100.0 {
        format!("{ms:.0} ms")
    } else if ms >= 10.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.2} ms")
    }
}

pub(crate) fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / (1 << 20) as f64)
}

pub(crate) fn thousands(x: f64) -> String {
    let n = x.round() as u64;
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn ratio(emb: f64, etcd: f64, lower_better: bool) -> String {
    if etcd <= 0.0 {
        return "—".into();
    }
    let r = emb / etcd;
    let better = if lower_better { "lower" } else { "higher" };
    format!("{r:.2}× ({better} is better)")
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "PASS"
    } else {
        "MISS"
    }
}

/// One row of the table.
struct Row {
    metric: String,
    embedded: String,
    etcd: String,
    ratio: String,
    target: String,
}

fn print_table(rows: &[Row]) {
    let mut table = vec![[
        "metric",
        "embedded",
        "etcd",
        "ratio embedded/etcd",
        "target",
    ]];
    table.extend(rows.iter().map(|r| {
        [
            r.metric.as_str(),
            r.embedded.as_str(),
            r.etcd.as_str(),
            r.ratio.as_str(),
            r.target.as_str(),
        ]
    }));
    crate::print_table(&table);
}

/// Runs the whole benchmark and prints the table. `exe` is this binary (for the RSS child).
pub fn run(exe: &Path, sizes: &Sizes) -> Result<()> {
    let parent = Path::new(BENCH_PARENT);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    println!("rudder-bench store");
    println!("machine: {}", machine());
    println!(
        "store files: under {} ({})",
        parent.display(),
        fs_of(parent)
    );
    println!(
        "sizes: values {} B; {} sequential puts (+{WARMUP_PUTS} warm-up); {} puts by {} writers; \
         range of {} keys × {} reads; {} watched puts; RSS with {} keys",
        sizes.value_size,
        sizes.seq_puts,
        sizes.writes,
        sizes.writers,
        sizes.range_keys,
        sizes.range_reads,
        sizes.watch_puts,
        sizes.rss_keys
    );
    println!("load average at start: {}", loadavg());
    let started = Instant::now();

    let (emb, etcd, etcd_ver) = rt.block_on(async {
        let tmp = tempfile::Builder::new()
            .prefix("rudder-bench-store-")
            .tempdir_in(parent)?;
        let emb = {
            let store = Arc::new(Embedded::open(EmbeddedOptions::new(tmp.path().join("db")))?);
            let r = phases(store.clone(), sizes, true).await?;
            store.close();
            r
        };
        let etcd_proc = EtcdProcess::start_in(parent, &[])?;
        let ver = etcd_version(&etcd_proc);
        let store: Arc<dyn Store> = Arc::new(EtcdStore::connect(&[etcd_proc.endpoint()]).await?);
        let etcd = phases(store, sizes, false).await?;
        drop(etcd_proc);
        anyhow::Ok((emb, etcd, ver))
    })?;
    let emb_rss = embedded_rss(exe, parent, sizes)?;
    let etcd_rss = rt.block_on(etcd_rss(parent, sizes))?;
    let total = started.elapsed();

    println!("etcd: {etcd_ver}");
    println!("load average at end: {}", loadavg());
    println!("run time: {:.0} s", total.as_secs_f64());
    println!();

    let key_len = rss_key(0).len();
    let live = (sizes.rss_keys * (key_len + sizes.value_size)) as u64;
    let f = |d: Duration| d.as_secs_f64();
    let mut rows = vec![
        Row {
            metric: format!("sequential put {} B, p50", sizes.value_size),
            embedded: ms(emb.seq.p50),
            etcd: ms(etcd.seq.p50),
            ratio: ratio(f(emb.seq.p50), f(etcd.seq.p50), true),
            target: "—".into(),
        },
        Row {
            metric: format!("sequential put {} B, p99", sizes.value_size),
            embedded: ms(emb.seq.p99),
            etcd: ms(etcd.seq.p99),
            ratio: ratio(f(emb.seq.p99), f(etcd.seq.p99), true),
            target: format!("≤ etcd's: {}", verdict(emb.seq.p99 <= etcd.seq.p99)),
        },
        Row {
            metric: format!("put throughput, {} writers", sizes.writers),
            embedded: format!("{}/s", thousands(emb.tput_per_s)),
            etcd: format!("{}/s", thousands(etcd.tput_per_s)),
            ratio: ratio(emb.tput_per_s, etcd.tput_per_s, false),
            target: format!(
                "≥ 3× etcd's: {}",
                verdict(emb.tput_per_s >= 3.0 * etcd.tput_per_s)
            ),
        },
        Row {
            metric: format!(
                "range of {} keys (median of {})",
                sizes.range_keys, sizes.range_reads
            ),
            embedded: ms(emb.range),
            etcd: ms(etcd.range),
            ratio: ratio(f(emb.range), f(etcd.range), true),
            target: "—".into(),
        },
        Row {
            metric: "watch delivery, p50".into(),
            embedded: ms(emb.watch.p50),
            etcd: ms(etcd.watch.p50),
            ratio: ratio(f(emb.watch.p50), f(etcd.watch.p50), true),
            target: "—".into(),
        },
        Row {
            metric: "watch delivery, p99".into(),
            embedded: ms(emb.watch.p99),
            etcd: ms(etcd.watch.p99),
            ratio: ratio(f(emb.watch.p99), f(etcd.watch.p99), true),
            target: "—".into(),
        },
    ];
    let rss_row = |label: &str, e: Option<Mem>, c: Option<Mem>| {
        let eb = e.map(|m| m.bytes());
        let cb = c.map(|m| m.bytes());
        Row {
            metric: label.to_string(),
            embedded: eb.map_or("not measured".into(), mib),
            etcd: cb.map_or("not measured".into(), mib),
            ratio: match (eb, cb) {
                (Some(a), Some(b)) => ratio(a as f64, b as f64, true),
                _ => "—".into(),
            },
            target: match eb {
                Some(a) => format!("≤ 2× live data: {}", verdict(a <= 2 * live)),
                None => "—".into(),
            },
        }
    };
    rows.push(rss_row(
        &format!("RSS, {} keys, after the writes", sizes.rss_keys),
        Some(emb_rss.after_writes),
        Some(etcd_rss.after_writes),
    ));
    rows.push(rss_row(
        "RSS after restart (recovery)",
        emb_rss.recovered,
        etcd_rss.recovered,
    ));
    let peak = |m: Option<Mem>| {
        m.map(|m| Mem {
            rss_kb: m.hwm_kb,
            ..m
        })
    };
    rows.push(rss_row(
        "peak RSS during restart (VmHWM)",
        peak(emb_rss.recovered),
        peak(etcd_rss.recovered),
    ));
    let per_live = |m: Option<Mem>| {
        m.map_or("—".into(), |m| {
            format!("{:.2}", m.bytes() as f64 / live as f64)
        })
    };
    rows.push(Row {
        metric: "RSS / live data, after writes".into(),
        embedded: per_live(Some(emb_rss.after_writes)),
        etcd: per_live(Some(etcd_rss.after_writes)),
        ratio: "—".into(),
        target: "≤ 2.00".into(),
    });
    rows.push(Row {
        metric: "RSS / live data, after restart".into(),
        embedded: per_live(emb_rss.recovered),
        etcd: per_live(etcd_rss.recovered),
        ratio: "—".into(),
        target: "≤ 2.00".into(),
    });
    print_table(&rows);

    println!();
    println!(
        "live data: {} keys × ({key_len} B key + {} B value) = {} ({live} B)",
        sizes.rss_keys,
        sizes.value_size,
        mib(live)
    );
    println!("details:");
    for (name, p) in [("embedded", &emb), ("etcd", &etcd)] {
        println!(
            "  {name:<8} sequential put: p50 {} p99 {} max {} mean {}{}",
            ms(p.seq.p50),
            ms(p.seq.p99),
            ms(p.seq.max),
            ms(p.seq.mean),
            p.seq_batches
                .map(|b| format!(
                    ", {:.2} writes per durable batch",
                    sizes.seq_puts as f64 / b.max(1) as f64
                ))
                .unwrap_or_default()
        );
        println!(
            "  {name:<8} throughput: {} puts in {:.2} s{}",
            sizes.writes,
            p.tput_elapsed.as_secs_f64(),
            p.tput_batches
                .map(|b| format!(
                    ", {b} durable batches = {:.1} writes per batch, {} batches/s",
                    sizes.writes as f64 / b.max(1) as f64,
                    thousands(b as f64 / p.tput_elapsed.as_secs_f64())
                ))
                .unwrap_or_default()
        );
        println!(
            "  {name:<8} range: median {} min {} max {}; filling {} keys ran at {}/s",
            ms(p.range),
            ms(p.range_min),
            ms(p.range_max),
            sizes.range_keys,
            thousands(p.range_fill_per_s)
        );
        println!(
            "  {name:<8} watch delivery: p50 {} p99 {} max {} mean {}",
            ms(p.watch.p50),
            ms(p.watch.p99),
            ms(p.watch.max),
            ms(p.watch.mean)
        );
    }
    let kb = |m: &Mem| {
        format!(
            "{} (anon {}, file {}, peak {})",
            mib(m.rss_kb * 1024),
            mib(m.anon_kb * 1024),
            mib(m.file_kb * 1024),
            mib(m.hwm_kb * 1024)
        )
    };
    for (name, r) in [("embedded", &emb_rss), ("etcd", &etcd_rss)] {
        if let Some(b) = &r.base {
            println!("  {name:<8} RSS before the load: {}", kb(b));
        }
        println!(
            "  {name:<8} RSS after {} keys: {}; load ran at {}/s{}",
            sizes.rss_keys,
            kb(&r.after_writes),
            thousands(r.load_per_s),
            r.load_batches
                .map(|b| format!(
                    " ({:.1} writes per durable batch)",
                    sizes.rss_keys as f64 / b.max(1) as f64
                ))
                .unwrap_or_default()
        );
        if let Some(m) = &r.reopened_same_process {
            println!(
                "  {name:<8} RSS after close + reopen in the same process: {}",
                kb(m)
            );
        }
        match &r.recovered {
            Some(m) => println!(
                "  {name:<8} RSS of a fresh process after recovery: {}{}",
                kb(m),
                r.recover_time
                    .map(|t| format!(", recovery took {:.2} s", t.as_secs_f64()))
                    .unwrap_or_default()
            ),
            None => println!("  {name:<8} recovery RSS: not measured"),
        }
    }
    println!();
    println!(
        "targets: throughput ≥ 3× etcd {}; p99 put ≤ etcd {}; RSS ≤ 2× live data {} (after writes), {} (after restart)",
        verdict(emb.tput_per_s >= 3.0 * etcd.tput_per_s),
        verdict(emb.seq.p99 <= etcd.seq.p99),
        verdict(emb_rss.after_writes.bytes() <= 2 * live),
        emb_rss
            .recovered
            .map_or("not measured", |m| verdict(m.bytes() <= 2 * live)),
    );
    Ok(())
}
