//! The API server benchmark: `rudder server --disable-agent` over HTTPS, each figure beside its
//! peer measured in the same run.
//!
//! 1. ConfigMap creates/s with 32 concurrent clients (one HTTP/2 connection each, admin client
//!    certificate), on the embedded store and on a real etcd (`--datastore-endpoint`); the peer is
//!    the raw etcd put rate with the same concurrency (32 etcd clients putting values of the size
//!    Rudder stores for one of those ConfigMaps) on a second etcd. The three take turns in
//!    rounds, so that the load of a shared machine drifting during the run hits all of them.
//! 2. List of 10,000 pods (created through the API first, concurrently): JSON and
//!    `as=Table` latency, median and p99 of several runs; the peer is a raw etcd range read of
//!    the same 10,000 stored pods (from the backend etcd). Runs alternate between the targets.
//! 3. Watch fan-out: 1,000 concurrent `watch=1` requests on ConfigMaps in one namespace, as
//!    HTTP/2 streams (100 per connection, as client-go multiplexes) and as 1,000 HTTP/1.1
//!    connections; ~50 creates spaced out, and for each watcher the delay from issuing the
//!    write to that watcher receiving its event. The peer is 1,000 raw etcd watchers (gRPC
//!    streams over one connection) seeing 50 puts.
//! 4. Idle RSS and VmHWM 30 s after start, beside etcd's idle RSS (all fresh, started together):
//!    the server as above (API server, scheduler and controllers in one process) and the API
//!    server alone (`--disable-scheduler --disable-controller-manager`), which the 40 MiB target
//!    is for.
//! 5. Cold start: spawn → `/readyz` 200 over HTTPS with the client certificate, on an empty data
//!    dir and again on the data dir it left; the peer is etcd's spawn → `/health` true.
//!
//! Data dirs live under `/var/tmp` (a real disk, so fsync costs what it costs). Targets are
//! reported PASS/FAIL; a FAIL does not fail the benchmark.

mod client;
mod procs;
mod report;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use etcd_client::{GetOptions, WatchOptions};
use http_body_util::BodyExt;
use hyper::{Method, StatusCode};
use rand::{Rng, SeedableRng};
use rudder_testkit::EtcdProcess;
use serde_json::Value;

pub use client::{Conn, Endpoint, Proto};
pub use procs::{Server, TimedEtcd};

use crate::store::{etcd_version, fs_of, loadavg, machine, Latency, Mem};

/// The Accept header kubectl's `get` sends for a server-side table (its first choice).
pub const TABLE_ACCEPT: &str = "application/json;as=Table;v=v1;g=meta.k8s.io";

/// Targets (docs/benchmarks.md).
pub const WATCH_P99_TARGET: Duration = Duration::from_millis(100);
pub const IDLE_RSS_TARGET_BYTES: u64 = 40 << 20;
pub const COLD_START_TARGET: Duration = Duration::from_secs(1);

/// The parts of the benchmark (`--only`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Phase {
    /// ConfigMap creates/s vs raw etcd puts.
    Creates,
    /// List of N pods, JSON and Table, vs a raw etcd range.
    List,
    /// Watch fan-out delay vs raw etcd watchers.
    Watch,
    /// Idle RSS vs etcd's.
    Idle,
    /// Cold start to ready vs etcd's start to healthy.
    Start,
}

impl Phase {
    pub fn all() -> BTreeSet<Phase> {
        [
            Phase::Creates,
            Phase::List,
            Phase::Watch,
            Phase::Idle,
            Phase::Start,
        ]
        .into_iter()
        .collect()
    }
}

/// How big each measurement is.
#[derive(Clone, Debug)]
pub struct Sizes {
    /// Concurrent clients for creates (one HTTP/2 connection each; etcd clients for the peer).
    pub clients: usize,
    /// Timed ConfigMap creates per server (and raw etcd puts).
    pub creates: usize,
    /// Rounds the creates are split into, alternating between the targets.
    pub rounds: usize,
    /// Bytes of `data.payload` in each ConfigMap.
    pub payload: usize,
    /// Pods created, then listed.
    pub pods: usize,
    /// Timed lists per format (median and p99 are reported).
    pub list_runs: usize,
    /// Concurrent watchers.
    pub watchers: usize,
    /// Watch streams per HTTP/2 connection.
    pub streams_per_conn: usize,
    /// Timed writes the watchers see.
    pub watch_writes: usize,
    /// Pause before each timed write.
    pub watch_interval: Duration,
    /// How long after start the idle RSS is read.
    pub idle: Duration,
    /// Cold starts (each: an empty data dir, then a restart on it).
    pub start_runs: usize,
}

impl Sizes {
    /// The sizes docs/benchmarks.md reports.
    pub fn full() -> Sizes {
        Sizes {
            clients: 32,
            creates: 20_000,
            rounds: 5,
            payload: 512,
            pods: 10_000,
            list_runs: 20,
            watchers: 1_000,
            streams_per_conn: 100,
            watch_writes: 50,
            watch_interval: Duration::from_millis(100),
            idle: Duration::from_secs(30),
            start_runs: 10,
        }
    }

    /// A smoke run (about 20 s): same concurrency, far fewer objects and runs; not for the docs.
    pub fn quick() -> Sizes {
        Sizes {
            clients: 32,
            creates: 1_000,
            rounds: 2,
            payload: 512,
            pods: 500,
            list_runs: 3,
            watchers: 100,
            streams_per_conn: 25,
            watch_writes: 10,
            watch_interval: Duration::from_millis(20),
            idle: Duration::from_secs(2),
            start_runs: 2,
        }
    }
}

/// What to run and where.
#[derive(Clone, Debug)]
pub struct Options {
    pub sizes: Sizes,
    pub phases: BTreeSet<Phase>,
    /// The `rudder` binary.
    pub rudder: PathBuf,
    /// Parent of every data dir.
    pub parent: PathBuf,
}

/// The default `rudder` binary: beside this executable (both are built into the same
/// `target/release`), else `$CARGO_TARGET_DIR/release/rudder`.
pub fn default_rudder_bin() -> PathBuf {
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.parent() {
            let p = dir.join("rudder");
            if p.is_file() {
                return p;
            }
        }
    }
    let target =
        std::env::var_os("CARGO_TARGET_DIR").unwrap_or_else(|| "/var/tmp/rudder-target".into());
    PathBuf::from(target).join("release").join("rudder")
}

/// Concurrent writes, in rounds interleaved with the other targets'.
#[derive(Clone, Debug, Default)]
pub struct Rate {
    pub ok: usize,
    pub errors: usize,
    pub first_error: Option<String>,
    /// Summed over the rounds.
    pub elapsed: Duration,
    /// `ok / elapsed`.
    pub per_s: f64,
    /// Writes/s of each round.
    pub rounds: Vec<f64>,
    pub latency: Latency,
    /// CPU used meanwhile by the server (or etcd) and by this benchmark's clients.
    pub cpu: Option<CpuUse>,
}

/// One round of timed writes to one target.
#[derive(Debug, Default)]
struct Batch {
    lat: Vec<Duration>,
    errors: usize,
    first_error: Option<String>,
    elapsed: Duration,
    cpu: Option<CpuUse>,
}

impl Rate {
    fn of(batches: Vec<Batch>) -> Rate {
        let mut lat = Vec::new();
        let mut r = Rate::default();
        for b in batches {
            r.rounds
                .push(b.lat.len() as f64 / b.elapsed.as_secs_f64().max(1e-9));
            r.errors += b.errors;
            if r.first_error.is_none() {
                r.first_error = b.first_error;
            }
            r.elapsed += b.elapsed;
            if let Some(c) = b.cpu {
                let acc = r.cpu.get_or_insert_with(CpuUse::default);
                acc.wall += c.wall;
                acc.server += c.server;
                acc.client += c.client;
            }
            lat.extend(b.lat);
        }
        r.ok = lat.len();
        r.per_s = r.ok as f64 / r.elapsed.as_secs_f64().max(1e-9);
        r.latency = Latency::of(lat);
        r
    }
}

/// The `round`-th of `rounds` consecutive slices of `0..total`.
fn round_range(total: usize, rounds: usize, round: usize) -> std::ops::Range<usize> {
    let rounds = rounds.max(1);
    total * round / rounds..total * (round + 1) / rounds
}

/// Timed reads of one list.
#[derive(Clone, Debug, Default)]
pub struct ListResult {
    /// Items (rows for a Table) in the checked response.
    pub items: usize,
    /// Response size.
    pub bytes: usize,
    pub latency: Latency,
    pub min: Duration,
    pub runs: usize,
}

/// One watch fan-out run.
#[derive(Clone, Debug, Default)]
pub struct WatchResult {
    pub label: String,
    pub watchers: usize,
    pub connections: usize,
    pub writes: usize,
    /// Events of the timed writes that arrived (one per watcher per write when all is well).
    pub delivered: usize,
    pub expected: usize,
    /// Watchers that saw every timed write.
    pub complete_watchers: usize,
    /// Per watcher and write: from issuing the write to that watcher receiving its event.
    pub delay: Latency,
    /// Per write: until the last watcher received it (writes every watcher saw).
    pub all_seen: Latency,
    /// The writes' own response times.
    pub write_latency: Latency,
    /// Opening every watch.
    pub setup: Duration,
    /// CPU used from the first timed write until every event was in.
    pub cpu: Option<CpuUse>,
}

/// CPU time used during a phase (user + system, all threads).
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuUse {
    pub wall: Duration,
    /// The server under test (or etcd for the raw peers).
    pub server: Duration,
    /// This process: the benchmark's clients.
    pub client: Duration,
}

impl CpuUse {
    fn line(&self, per: usize, what: &str) -> String {
        let us = |d: Duration| d.as_secs_f64() * 1e6 / per.max(1) as f64;
        let cores = |d: Duration| d.as_secs_f64() / self.wall.as_secs_f64().max(1e-9);
        format!(
            "CPU: server {:.2} s ({:.2} cores, {:.0} µs per {what}), clients {:.2} s ({:.2} cores, {:.0} µs per {what})",
            self.server.as_secs_f64(),
            cores(self.server),
            us(self.server),
            self.client.as_secs_f64(),
            cores(self.client),
            us(self.client),
        )
    }
}

/// CPU time (user + system) of a process so far, from `/proc/<pid>/stat` (`None`: this one).
pub fn cpu_time(pid: Option<u32>) -> Duration {
    let path = pid.map_or_else(
        || "/proc/self/stat".to_string(),
        |p| format!("/proc/{p}/stat"),
    );
    let text = std::fs::read_to_string(path).unwrap_or_default();
    // The fields after the command name (which may hold spaces) start at field 3; utime and
    // stime are fields 14 and 15.
    let rest = text.rsplit_once(')').map_or("", |x| x.1);
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Duration::from_secs_f64(ticks as f64 / hz)
}

/// Measures [`CpuUse`] from `start` to `stop`.
struct CpuMeter {
    pid: u32,
    at: Instant,
    server: Duration,
    client: Duration,
}

impl CpuMeter {
    fn start(pid: u32) -> CpuMeter {
        CpuMeter {
            pid,
            at: Instant::now(),
            server: cpu_time(Some(pid)),
            client: cpu_time(None),
        }
    }

    fn stop(&self) -> CpuUse {
        CpuUse {
            wall: self.at.elapsed(),
            server: cpu_time(Some(self.pid)).saturating_sub(self.server),
            client: cpu_time(None).saturating_sub(self.client),
        }
    }
}

/// What one server backend measured.
#[derive(Clone, Debug, Default)]
pub struct Backend {
    pub creates: Option<Rate>,
    pub pods: Option<Rate>,
    pub list_json: Option<ListResult>,
    pub list_table: Option<ListResult>,
    pub watch_h2: Option<WatchResult>,
    pub watch_h1: Option<WatchResult>,
    /// Size of one ConfigMap of the create phase as the API returns it.
    pub configmap_bytes: Option<usize>,
}

#[derive(Clone, Debug, Default)]
pub struct Idle {
    pub after: Duration,
    /// The server as the benchmark runs it: the API server, the scheduler and the controllers.
    pub rudder: Mem,
    /// The API server alone (`--disable-scheduler --disable-controller-manager`).
    pub api_alone: Mem,
    pub etcd: Option<Mem>,
}

#[derive(Clone, Debug, Default)]
pub struct Starts {
    pub first: Vec<Duration>,
    pub restart: Vec<Duration>,
    pub etcd_first: Vec<Duration>,
    pub etcd_restart: Vec<Duration>,
}

/// Everything the run measured.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub embedded: Backend,
    pub etcd_backend: Backend,
    /// Size of one stored ConfigMap (etcd value) and pod.
    pub stored_configmap_bytes: Option<usize>,
    pub stored_pod_bytes: Option<usize>,
    /// The raw etcd peers.
    pub raw_put: Option<Rate>,
    pub raw_put_value_bytes: usize,
    pub raw_range: Option<ListResult>,
    pub raw_watch: Option<WatchResult>,
    pub idle: Option<Idle>,
    pub starts: Option<Starts>,
    pub etcd_version: String,
    pub rudder_version: String,
}

fn progress(msg: &str) {
    eprintln!("  … {msg}");
}

fn payload(len: usize) -> String {
    let mut rng = rand::rngs::StdRng::from_entropy();
    (0..len)
        .map(|_| rng.sample(rand::distributions::Alphanumeric) as char)
        .collect()
}

fn namespace_json(name: &str) -> Bytes {
    Bytes::from(format!(
        r#"{{"apiVersion":"v1","kind":"Namespace","metadata":{{"name":"{name}"}}}}"#
    ))
}

fn configmap_json(name: &str, payload: &str) -> Bytes {
    Bytes::from(format!(
        r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"{name}","labels":{{"app":"rudder-bench"}}}},"data":{{"payload":"{payload}"}}}}"#
    ))
}

/// A pod as a Deployment would stamp it out: one container with ports, resources and env.
fn pod_json(name: &str, i: usize) -> Bytes {
    Bytes::from(format!(
        r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{name}","labels":{{"app":"rudder-bench","shard":"s{shard}"}}}},"spec":{{"containers":[{{"name":"app","image":"localhost:5000/bench/app:1.0","ports":[{{"containerPort":8080,"protocol":"TCP"}}],"resources":{{"requests":{{"cpu":"10m","memory":"16Mi"}},"limits":{{"memory":"64Mi"}}}},"env":[{{"name":"MODE","value":"bench"}}]}}],"restartPolicy":"Always"}}}}"#,
        shard = i % 16
    ))
}

async fn create_namespace(conn: &mut Conn, name: &str) -> Result<()> {
    conn.create("/api/v1/namespaces", namespace_json(name))
        .await
        .with_context(|| format!("creating namespace {name}"))
}

/// Opens `n` connections, at most 32 handshakes at a time.
async fn connect_many(ep: &Endpoint, proto: Proto, n: usize) -> Result<Vec<Conn>> {
    let sem = Arc::new(tokio::sync::Semaphore::new(32));
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        let ep = ep.clone();
        let sem = sem.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire_owned().await?;
            ep.connect(proto).await
        }));
    }
    let mut out = Vec::with_capacity(n);
    for t in tasks {
        out.push(t.await.context("connect task panicked")??);
    }
    Ok(out)
}

/// One client per connection, POSTing `make(i)` for every `i` in `range` (taken in turn from
/// a shared counter); every answer but 201 is an error.
async fn post_many(
    conns: Vec<Conn>,
    range: std::ops::Range<usize>,
    make: Arc<dyn Fn(usize) -> (String, Bytes) + Send + Sync>,
) -> Result<Batch> {
    let next = Arc::new(AtomicUsize::new(range.start));
    let end = range.end;
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(conns.len());
    for mut conn in conns {
        let next = next.clone();
        let make = make.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0usize;
            let mut first_error = None;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= end {
                    break;
                }
                let (path, body) = make(i);
                let t = Instant::now();
                match conn.call(Method::POST, &path, Some(body), None).await {
                    Ok((StatusCode::CREATED, _)) => lat.push(t.elapsed()),
                    Ok((status, body)) => {
                        errors += 1;
                        first_error.get_or_insert_with(|| {
                            format!(
                                "POST {path}: {status}: {}",
                                String::from_utf8_lossy(&body[..body.len().min(300)])
                            )
                        });
                    }
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert_with(|| format!("POST {path}: {e:#}"));
                    }
                }
            }
            (lat, errors, first_error)
        }));
    }
    let mut b = Batch::default();
    for t in tasks {
        let (lat, e, fe) = t.await.context("client task panicked")?;
        b.lat.extend(lat);
        b.errors += e;
        if b.first_error.is_none() {
            b.first_error = fe;
        }
    }
    b.elapsed = start.elapsed();
    Ok(b)
}

/// Further handles (streams) on HTTP/2 connections.
fn share(conns: &[Conn]) -> Vec<Conn> {
    conns.iter().filter_map(Conn::share).collect()
}

/// The processes phases 1–3 run against, all up at once so that their rounds can alternate:
/// Rudder on the embedded store, Rudder on `backend` (an etcd), and `raw`, a second etcd that
/// the benchmark writes to directly.
struct Stack {
    embedded: Server,
    on_etcd: Server,
    backend: EtcdProcess,
    raw: EtcdProcess,
}

impl Stack {
    fn servers(&self) -> [(&'static str, &Server); 2] {
        [
            ("embedded", &self.embedded),
            ("etcd backend", &self.on_etcd),
        ]
    }

    fn backend_mut<'a>(&self, r: &'a mut Report, i: usize) -> &'a mut Backend {
        if i == 0 {
            &mut r.embedded
        } else {
            &mut r.etcd_backend
        }
    }
}

/// `clients` etcd clients, one connection each.
async fn etcd_clients(endpoint: &str, n: usize) -> Result<Vec<etcd_client::Client>> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(etcd_connect(endpoint).await?);
    }
    Ok(out)
}

/// Raw etcd puts of `value` to keys `…/{prefix}-{i}` for `i` in `range`, one task per client.
async fn raw_batch(
    clients: &[etcd_client::Client],
    range: std::ops::Range<usize>,
    value: Arc<Vec<u8>>,
    prefix: &'static str,
) -> Result<Batch> {
    let next = Arc::new(AtomicUsize::new(range.start));
    let end = range.end;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in clients {
        let mut c = c.clone();
        let next = next.clone();
        let value = value.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= end {
                    return Ok::<_, etcd_client::Error>(lat);
                }
                let key = format!("/registry/configmaps/bench-raw/{prefix}-{i:07}");
                let t = Instant::now();
                c.put(key, value.as_slice(), None).await?;
                lat.push(t.elapsed());
            }
        }));
    }
    let mut b = Batch::default();
    for t in tasks {
        b.lat.extend(t.await.context("etcd writer panicked")??);
    }
    b.elapsed = start.elapsed();
    Ok(b)
}

/// Phase 1: the two servers and the raw etcd take turns, `rounds` rounds of `creates / rounds`
/// writes each (the order rotating), so that a change in the machine's load hits all three
/// alike.
async fn creates_phase(st: &Stack, s: &Sizes, r: &mut Report) -> Result<()> {
    let text: Arc<str> = payload(s.payload).into();
    let cm_path = "/api/v1/namespaces/bench-cm/configmaps";
    let mut apis = Vec::new();
    for (label, server) in st.servers() {
        let ep = &server.endpoint;
        let mut admin = ep.connect(Proto::H2).await?;
        create_namespace(&mut admin, "bench-cm").await?;
        let conns = connect_many(ep, Proto::H2, s.clients).await?;
        // Warm-up: a few creates per connection (first requests, lazy server state).
        let t = text.clone();
        let warm = post_many(
            share(&conns),
            0..s.clients * 4,
            Arc::new(move |i| {
                (
                    cm_path.to_string(),
                    configmap_json(&format!("warm-{i:07}"), &t),
                )
            }),
        )
        .await?;
        if warm.errors > 0 {
            bail!(
                "{label}: warm-up creates failed: {}",
                warm.first_error.unwrap_or_default()
            );
        }
        apis.push((server.pid(), conns, admin));
    }
    // What Rudder stores for one of these ConfigMaps is what the raw peer puts.
    let stored = stored_size(
        &st.backend.endpoint(),
        "/registry/configmaps/bench-cm/warm-0000000",
    )
    .await?
    .context("the etcd backend does not hold the ConfigMap just created")?;
    r.stored_configmap_bytes = Some(stored);
    r.raw_put_value_bytes = stored;
    let mut rng = rand::rngs::StdRng::from_entropy();
    let value: Arc<Vec<u8>> = Arc::new((0..stored).map(|_| rng.gen()).collect());
    let raw_clients = etcd_clients(&st.raw.endpoint(), s.clients).await?;
    raw_batch(&raw_clients, 0..s.clients * 4, value.clone(), "warm").await?;

    let rounds = s.rounds.max(1);
    progress(&format!(
        "creates: {} ConfigMaps by {} clients on each server, {} raw etcd puts of {stored} B, \
         in {rounds} alternating rounds",
        s.creates, s.clients, s.creates
    ));
    let mut batches: [Vec<Batch>; 3] = Default::default();
    for round in 0..rounds {
        let range = round_range(s.creates, rounds, round);
        for k in 0..3 {
            let target = (round + k) % 3;
            let batch = if target < 2 {
                let (pid, conns, _) = &apis[target];
                let t = text.clone();
                let meter = CpuMeter::start(*pid);
                let mut b = post_many(
                    share(conns),
                    range.clone(),
                    Arc::new(move |i| {
                        (
                            cm_path.to_string(),
                            configmap_json(&format!("cm-{i:07}"), &t),
                        )
                    }),
                )
                .await?;
                b.cpu = Some(meter.stop());
                b
            } else {
                let meter = CpuMeter::start(st.raw.pid());
                let mut b = raw_batch(&raw_clients, range.clone(), value.clone(), "cm").await?;
                b.cpu = Some(meter.stop());
                b
            };
            batches[target].push(batch);
        }
    }
    let [emb, on_etcd, raw] = batches;
    r.embedded.creates = Some(Rate::of(emb));
    r.etcd_backend.creates = Some(Rate::of(on_etcd));
    r.raw_put = Some(Rate::of(raw));
    for (i, (_, _, admin)) in apis.iter_mut().enumerate() {
        let one = admin.get_ok(&format!("{cm_path}/cm-0000000"), None).await?;
        st.backend_mut(r, i).configmap_bytes = Some(one.len());
    }
    Ok(())
}

/// Phase 2: `pods` pods created on each server, then `list_runs` rounds of (JSON and Table
/// from each server, a raw range of the stored pods from the backend etcd).
async fn list_phase(st: &Stack, s: &Sizes, r: &mut Report) -> Result<()> {
    let path = "/api/v1/namespaces/bench-pods/pods";
    let mut admins = Vec::new();
    for (i, (label, server)) in st.servers().into_iter().enumerate() {
        let ep = &server.endpoint;
        let mut admin = ep.connect(Proto::H2).await?;
        create_namespace(&mut admin, "bench-pods").await?;
        progress(&format!(
            "{label}: creating {} pods with {} clients",
            s.pods, s.clients
        ));
        let conns = connect_many(ep, Proto::H2, s.clients).await?;
        let meter = CpuMeter::start(server.pid());
        let mut b = post_many(
            conns,
            0..s.pods,
            Arc::new(|i| (path.to_string(), pod_json(&format!("pod-{i:06}"), i))),
        )
        .await?;
        b.cpu = Some(meter.stop());
        let pods = Rate::of(vec![b]);
        if pods.errors > 0 {
            bail!(
                "{label}: {} of {} pod creates failed: {}",
                pods.errors,
                s.pods,
                pods.first_error.unwrap_or_default()
            );
        }
        st.backend_mut(r, i).pods = Some(pods);
        // A checked (and warm) read in each format.
        let mut sizes = Vec::new();
        for accept in [None, Some(TABLE_ACCEPT)] {
            let body = admin.get_ok(path, accept).await?;
            let v: Value = serde_json::from_slice(&body).context("list response is not JSON")?;
            let (kind, items) = match accept {
                None => ("PodList", v["items"].as_array().map_or(0, Vec::len)),
                Some(_) => ("Table", v["rows"].as_array().map_or(0, Vec::len)),
            };
            if v["kind"] != kind {
                bail!(
                    "{label}: list answered kind {} instead of {kind}",
                    v["kind"]
                );
            }
            if items != s.pods {
                bail!("{label}: {kind} has {items} entries, expected {}", s.pods);
            }
            sizes.push(body.len());
        }
        admins.push((admin, sizes));
    }
    let prefix = "/registry/pods/bench-pods/";
    r.stored_pod_bytes =
        stored_size(&st.backend.endpoint(), &format!("{prefix}pod-000000")).await?;
    let c = etcd_connect(&st.backend.endpoint()).await?;
    let mut kv = c.kv_client().max_decoding_message_size(1 << 30);
    let opts = || Some(GetOptions::new().with_prefix());
    let first = kv.get(prefix, opts()).await?;
    let raw_items = first.kvs().len();
    let raw_bytes: usize = first
        .kvs()
        .iter()
        .map(|kv| kv.key().len() + kv.value().len())
        .sum();
    if raw_items != s.pods {
        bail!(
            "etcd holds {raw_items} pods under {prefix}, expected {}",
            s.pods
        );
    }
    drop(first);

    progress(&format!(
        "list: {} rounds of (JSON, Table) × 2 servers + a raw etcd range, {} pods each",
        s.list_runs, s.pods
    ));
    // times[server][format], then the raw range.
    let mut times: Vec<[Vec<Duration>; 2]> = vec![Default::default(), Default::default()];
    let mut raw_times = Vec::new();
    for _ in 0..s.list_runs.max(1) {
        for (i, (admin, sizes)) in admins.iter_mut().enumerate() {
            for (f, accept) in [None, Some(TABLE_ACCEPT)].into_iter().enumerate() {
                let t = Instant::now();
                let body = admin.get_ok(path, accept).await?;
                times[i][f].push(t.elapsed());
                if body.len() < sizes[f] / 2 {
                    bail!(
                        "a list answered {} bytes, the checked one {}",
                        body.len(),
                        sizes[f]
                    );
                }
            }
        }
        let t = Instant::now();
        let resp = kv.get(prefix, opts()).await?;
        raw_times.push(t.elapsed());
        if resp.kvs().len() != raw_items {
            bail!("etcd range returned {} keys", resp.kvs().len());
        }
    }
    for (i, [json, table]) in times.into_iter().enumerate() {
        let sizes = &admins[i].1;
        let b = st.backend_mut(r, i);
        b.list_json = Some(list_result(s.pods, sizes[0], json));
        b.list_table = Some(list_result(s.pods, sizes[1], table));
    }
    r.raw_range = Some(list_result(raw_items, raw_bytes, raw_times));
    Ok(())
}

fn list_result(items: usize, bytes: usize, times: Vec<Duration>) -> ListResult {
    let runs = times.len();
    let min = times.iter().copied().min().unwrap_or_default();
    ListResult {
        items,
        bytes,
        latency: Latency::of(times),
        min,
        runs,
    }
}

/// The index in `"name":"bw-NNNNN"` of a watch event line (or etcd key `…/bw-NNNNN`).
fn event_index(line: &[u8], pat: &[u8]) -> Option<u32> {
    let at = line.windows(pat.len()).position(|w| w == pat)? + pat.len();
    let digits = line.get(at..at + 5)?;
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// What one watcher received: (write index, arrival time) per event.
type Arrivals = Vec<(u32, Instant)>;

const NAME_PAT: &[u8] = b"\"name\":\"bw-";
const KEY_PAT: &[u8] = b"/bw-";

fn watch_name(i: usize) -> String {
    format!("bw-{i:05}")
}

/// One API watcher: opens the watch, then records (write index, arrival) for every event until
/// it has `expect` of them, the stream ends or `stop` fires.
async fn api_watcher(
    mut conn: Conn,
    path: Arc<str>,
    expect: usize,
    opened: Arc<AtomicUsize>,
    saw_first: Arc<AtomicUsize>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<Vec<(u32, Instant)>> {
    let resp = conn.send(Method::GET, &path, None, None).await?;
    if resp.status() != StatusCode::OK {
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        bail!("watch: {status}: {}", String::from_utf8_lossy(&body));
    }
    opened.fetch_add(1, Ordering::Relaxed);
    let mut body = resp.into_body();
    let mut buf: Vec<u8> = Vec::new();
    let mut seen = Vec::with_capacity(expect);
    while seen.len() < expect {
        let frame = tokio::select! {
            f = body.frame() => f,
            _ = stop.changed() => break,
        };
        let Some(frame) = frame else { break };
        let now = Instant::now();
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        buf.extend_from_slice(&data);
        while let Some(pos) = buf.iter().position(|&b| b == b'\n') {
            if let Some(i) = event_index(&buf[..pos], NAME_PAT) {
                if i == 0 {
                    saw_first.fetch_add(1, Ordering::Relaxed);
                }
                seen.push((i, now));
            }
            buf.drain(..=pos);
        }
    }
    Ok(seen)
}

/// Waits until `counter` reaches `n` or `limit` passes; returns whether it did.
async fn wait_count(counter: &AtomicUsize, n: usize, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while counter.load(Ordering::Relaxed) < n {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    true
}

/// Per-watcher arrivals and per-write send times → the figures.
/// `sent[0]` is the barrier write, `sent[i]` the i-th timed write; `seen` has one entry per
/// watcher (empty for one that failed).
fn summarize(
    label: String,
    connections: usize,
    sent: &[Instant],
    seen: &[Vec<(u32, Instant)>],
    write_latency: Vec<Duration>,
    setup: Duration,
) -> WatchResult {
    let watchers = seen.len();
    let writes = sent.len().saturating_sub(1);
    let mut delays = Vec::with_capacity(watchers * writes);
    let mut worst = vec![Duration::ZERO; writes + 1];
    let mut count = vec![0usize; writes + 1];
    let mut complete = 0;
    for w in seen {
        let mut got = BTreeSet::new();
        for &(i, at) in w {
            let i = i as usize;
            if i == 0 || i > writes || i >= sent.len() || !got.insert(i) {
                continue;
            }
            let d = at.saturating_duration_since(sent[i]);
            delays.push(d);
            worst[i] = worst[i].max(d);
            count[i] += 1;
        }
        if got.len() == writes {
            complete += 1;
        }
    }
    let all_seen: Vec<Duration> = (1..=writes)
        .filter(|&i| count[i] == watchers)
        .map(|i| worst[i])
        .collect();
    WatchResult {
        label,
        watchers,
        connections,
        writes,
        delivered: delays.len(),
        expected: watchers * writes,
        complete_watchers: complete,
        delay: Latency::of(delays),
        all_seen: Latency::of(all_seen),
        write_latency: Latency::of(write_latency),
        setup,
        cpu: None,
    }
}

/// Phase 3 on one server with one protocol.
async fn watch_fanout(
    ep: &Endpoint,
    pid: u32,
    s: &Sizes,
    proto: Proto,
    label: &str,
) -> Result<WatchResult> {
    let ns = match proto {
        Proto::H2 => "bench-watch-h2",
        Proto::H1 => "bench-watch-h1",
    };
    let mut admin = ep.connect(Proto::H2).await?;
    create_namespace(&mut admin, ns).await?;
    let list = admin
        .get_ok(&format!("/api/v1/namespaces/{ns}/configmaps"), None)
        .await?;
    let list: Value = serde_json::from_slice(&list)?;
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .context("list without resourceVersion")?
        .to_string();
    let path: Arc<str> =
        format!("/api/v1/namespaces/{ns}/configmaps?watch=1&resourceVersion={rv}").into();
    let w = s.watchers;
    progress(&format!(
        "{label}: opening {w} watches over {}",
        proto.label()
    ));
    let setup_start = Instant::now();
    let (conns, per_watcher): (Vec<Conn>, Vec<Conn>) = match proto {
        Proto::H2 => {
            let n = w.div_ceil(s.streams_per_conn.max(1));
            let conns = connect_many(ep, Proto::H2, n).await?;
            let streams = (0..w)
                .filter_map(|i| conns[i % conns.len()].share())
                .collect();
            (conns, streams)
        }
        Proto::H1 => (Vec::new(), connect_many(ep, Proto::H1, w).await?),
    };
    let connections = if conns.is_empty() { w } else { conns.len() };
    let opened = Arc::new(AtomicUsize::new(0));
    let saw_first = Arc::new(AtomicUsize::new(0));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let expect = s.watch_writes + 1;
    let mut tasks = Vec::with_capacity(w);
    for conn in per_watcher {
        tasks.push(tokio::spawn(api_watcher(
            conn,
            path.clone(),
            expect,
            opened.clone(),
            saw_first.clone(),
            stop_rx.clone(),
        )));
    }
    if !wait_count(&opened, w, Duration::from_secs(120)).await {
        let _ = stop_tx.send(true);
        let mut first_err = String::new();
        for t in tasks {
            if let Ok(Err(e)) = t.await {
                first_err = format!("{e:#}");
                break;
            }
        }
        bail!(
            "{label}: only {} of {w} watches opened within 120 s ({first_err})",
            opened.load(Ordering::Relaxed)
        );
    }
    // Write 0 is the barrier: every watcher has seen one event before the timed writes.
    let text = payload(s.payload);
    let mut writer = ep.connect(Proto::H2).await?;
    let cm_path = format!("/api/v1/namespaces/{ns}/configmaps");
    let mut sent = Vec::with_capacity(expect);
    sent.push(Instant::now());
    writer
        .create(&cm_path, configmap_json(&watch_name(0), &text))
        .await?;
    if !wait_count(&saw_first, w, Duration::from_secs(60)).await {
        eprintln!(
            "  ! {label}: only {} of {w} watchers saw the first write within 60 s",
            saw_first.load(Ordering::Relaxed)
        );
    }
    let setup = setup_start.elapsed();
    progress(&format!(
        "{label}: {} writes, {} ms apart",
        s.watch_writes,
        s.watch_interval.as_millis()
    ));
    let mut write_lat = Vec::with_capacity(s.watch_writes);
    let meter = CpuMeter::start(pid);
    for i in 1..=s.watch_writes {
        tokio::time::sleep(s.watch_interval).await;
        let body = configmap_json(&watch_name(i), &text);
        let t = Instant::now();
        sent.push(t);
        writer.create(&cm_path, body).await?;
        write_lat.push(t.elapsed());
    }
    let seen = collect_watchers(tasks, stop_tx).await;
    let cpu = meter.stop();
    drop(conns);
    let mut r = summarize(
        format!("{label}, {}", proto.label()),
        connections,
        &sent,
        &seen,
        write_lat,
        setup,
    );
    r.cpu = Some(cpu);
    Ok(r)
}

/// Joins the watcher tasks, stopping the stragglers 30 s after the last write.
async fn collect_watchers(
    tasks: Vec<tokio::task::JoinHandle<Result<Arrivals>>>,
    stop: tokio::sync::watch::Sender<bool>,
) -> Vec<Vec<(u32, Instant)>> {
    let stop = Arc::new(stop);
    let timer = {
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(30)).await;
            let _ = stop.send(true);
        })
    };
    let mut seen = Vec::with_capacity(tasks.len());
    let mut errors = 0;
    let mut first_err = None;
    for t in tasks {
        match t.await {
            Ok(Ok(v)) => seen.push(v),
            Ok(Err(e)) => {
                errors += 1;
                first_err.get_or_insert(format!("{e:#}"));
                seen.push(Vec::new());
            }
            Err(e) => {
                errors += 1;
                first_err.get_or_insert(format!("{e}"));
                seen.push(Vec::new());
            }
        }
    }
    timer.abort();
    if errors > 0 {
        eprintln!(
            "  ! {errors} watchers failed: {}",
            first_err.unwrap_or_default()
        );
    }
    seen
}

async fn etcd_connect(endpoint: &str) -> Result<etcd_client::Client> {
    etcd_client::Client::connect([endpoint], None)
        .await
        .with_context(|| format!("connecting to etcd at {endpoint}"))
}

/// The size of the value etcd holds at `key`.
async fn stored_size(endpoint: &str, key: &str) -> Result<Option<usize>> {
    let mut c = etcd_connect(endpoint).await?;
    let r = c.get(key, None).await?;
    Ok(r.kvs().first().map(|kv| kv.value().len()))
}

/// The raw peer of phase 3: `watchers` etcd watches (gRPC streams over one connection) on a
/// prefix, and puts spaced as the API writes are.
async fn raw_watch(endpoint: &str, pid: u32, s: &Sizes, size: usize) -> Result<WatchResult> {
    let client = etcd_connect(endpoint).await?;
    let prefix = "/registry/configmaps/bench-watch/";
    let w = s.watchers;
    progress(&format!("raw etcd: opening {w} watches"));
    let setup_start = Instant::now();
    let saw_first = Arc::new(AtomicUsize::new(0));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let expect = s.watch_writes + 1;
    let mut tasks = Vec::with_capacity(w);
    for _ in 0..w {
        let stream = client
            .watch_client()
            .watch(prefix, Some(WatchOptions::new().with_prefix()))
            .await?;
        let (sender, mut responses) = stream.split();
        match responses.message().await? {
            Some(r) if r.created() => {}
            _ => bail!("etcd did not confirm a watch"),
        }
        let saw_first = saw_first.clone();
        let mut stop = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
            let _sender = sender;
            let mut seen = Vec::with_capacity(expect);
            while seen.len() < expect {
                let msg = tokio::select! {
                    m = responses.message() => m?,
                    _ = stop.changed() => break,
                };
                let Some(msg) = msg else { break };
                let now = Instant::now();
                for e in msg.events() {
                    if let Some(i) = e.kv().and_then(|kv| event_index(kv.key(), KEY_PAT)) {
                        if i == 0 {
                            saw_first.fetch_add(1, Ordering::Relaxed);
                        }
                        seen.push((i, now));
                    }
                }
            }
            anyhow::Ok(seen)
        }));
    }
    let mut rng = rand::rngs::StdRng::from_entropy();
    let value: Vec<u8> = (0..size).map(|_| rng.gen()).collect();
    let mut kv = client.kv_client();
    let mut sent = vec![Instant::now()];
    kv.put(format!("{prefix}{}", watch_name(0)), value.clone(), None)
        .await?;
    if !wait_count(&saw_first, w, Duration::from_secs(60)).await {
        eprintln!("  ! raw etcd: not every watcher saw the first put within 60 s");
    }
    let setup = setup_start.elapsed();
    let mut write_lat = Vec::new();
    let meter = CpuMeter::start(pid);
    for i in 1..=s.watch_writes {
        tokio::time::sleep(s.watch_interval).await;
        let t = Instant::now();
        sent.push(t);
        kv.put(format!("{prefix}{}", watch_name(i)), value.clone(), None)
            .await?;
        write_lat.push(t.elapsed());
    }
    let seen = collect_watchers(tasks, stop_tx).await;
    let cpu = meter.stop();
    let mut r = summarize(
        "raw etcd watchers, gRPC".into(),
        1,
        &sent,
        &seen,
        write_lat,
        setup,
    );
    r.cpu = Some(cpu);
    Ok(r)
}

/// Phase 4: a fresh server and a fresh etcd, started together, left alone for `s.idle`.
async fn idle(opts: &Options) -> Result<Idle> {
    let s = &opts.sizes;
    progress(&format!(
        "idle: a fresh server and a fresh etcd, memory read after {} s",
        s.idle.as_secs()
    ));
    let started = Instant::now();
    let (server, _) = Server::start(&opts.rudder, &opts.parent, None).await?;
    let (alone, _) = Server::start_api_alone(&opts.rudder, &opts.parent).await?;
    let parent = opts.parent.clone();
    let etcd = tokio::task::spawn_blocking(move || EtcdProcess::start_in(&parent, &[]))
        .await?
        .ok();
    tokio::time::sleep(s.idle.saturating_sub(started.elapsed())).await;
    let rudder = Mem::of(Some(server.pid()))?;
    let api_alone = Mem::of(Some(alone.pid()))?;
    let etcd_mem = match &etcd {
        Some(e) => Some(Mem::of(Some(e.pid()))?),
        None => None,
    };
    Ok(Idle {
        after: started.elapsed(),
        rudder,
        api_alone,
        etcd: etcd_mem,
    })
}

/// Phase 5.
async fn starts(opts: &Options) -> Result<Starts> {
    let s = &opts.sizes;
    progress(&format!(
        "cold start: {} runs of (empty data dir, restart) for rudder and etcd",
        s.start_runs
    ));
    let mut out = Starts::default();
    for _ in 0..s.start_runs.max(1) {
        let (mut server, first) = Server::start(&opts.rudder, &opts.parent, None).await?;
        out.first.push(first);
        out.restart.push(server.restart().await?);
        drop(server);
        let parent = opts.parent.clone();
        let (f, r) = tokio::task::spawn_blocking(move || {
            let (mut etcd, first) = TimedEtcd::start(&parent)?;
            let again = etcd.restart()?;
            anyhow::Ok((first, again))
        })
        .await??;
        out.etcd_first.push(f);
        out.etcd_restart.push(r);
    }
    Ok(out)
}

fn server_log(server: &Server) -> String {
    format!("the end of the server's log:\n{}", server.log_tail(20))
}

/// Starts the etcd backend, both servers and the raw etcd.
async fn start_stack(opts: &Options, report: &mut Report) -> Result<Stack> {
    let parent = opts.parent.clone();
    let start_etcd = move || {
        let parent = parent.clone();
        tokio::task::spawn_blocking(move || EtcdProcess::start_in(&parent, &[]))
    };
    let backend = start_etcd().await??;
    report.etcd_version = etcd_version(&backend);
    progress("starting rudder server (embedded store) and rudder server on etcd");
    let (embedded, _) = Server::start(&opts.rudder, &opts.parent, None).await?;
    let (on_etcd, _) = Server::start(&opts.rudder, &opts.parent, Some(&backend.endpoint())).await?;
    let raw = start_etcd().await??;
    Ok(Stack {
        embedded,
        on_etcd,
        backend,
        raw,
    })
}

fn rudder_version(bin: &Path) -> String {
    std::process::Command::new(bin)
        .arg("version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// Raises the open-file limit to its hard limit (1,000 HTTP/1.1 watchers are 1,000 sockets on
/// each side; the server inherits the limit).
fn raise_nofile() {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid rlimit struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < r.rlim_max {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

/// Runs the benchmark, prints the details and the table, and returns the figures.
pub fn run(opts: &Options) -> Result<Report> {
    let s = &opts.sizes;
    if !opts.rudder.is_file() {
        bail!(
            "{} does not exist: build it (cargo build --release -p rudder) or pass --rudder",
            opts.rudder.display()
        );
    }
    // Run a private copy: another build into the same target dir during the run must not swap
    // the binary between two of its starts.
    let bin_dir = tempfile::Builder::new()
        .prefix("rudder-bench-bin-")
        .tempdir_in(&opts.parent)?;
    let copy = bin_dir.path().join("rudder");
    std::fs::copy(&opts.rudder, &copy)
        .with_context(|| format!("copying {} to {}", opts.rudder.display(), copy.display()))?;
    let original = opts.rudder.clone();
    let opts = &Options {
        rudder: copy,
        ..opts.clone()
    };
    raise_nofile();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    println!("rudder-bench api");
    println!("machine: {}", machine());
    println!(
        "data dirs: under {} ({})",
        opts.parent.display(),
        fs_of(&opts.parent)
    );
    println!(
        "rudder: {} ({}; a private copy of it is run)",
        rudder_version(&opts.rudder),
        original.display()
    );
    println!(
        "sizes: {} clients × {} ConfigMap creates ({} B payload); {} pods listed {} times per format; \
         {} watchers ({} streams per HTTP/2 connection) × {} writes {} ms apart; idle RSS after {} s; \
         {} cold starts",
        s.clients,
        s.creates,
        s.payload,
        s.pods,
        s.list_runs,
        s.watchers,
        s.streams_per_conn,
        s.watch_writes,
        s.watch_interval.as_millis(),
        s.idle.as_secs(),
        s.start_runs
    );
    let phases: Vec<String> = opts.phases.iter().map(|p| format!("{p:?}")).collect();
    println!("phases: {}", phases.join(", ").to_lowercase());
    println!("load average at start: {}", loadavg());
    let started = Instant::now();
    let mut report = Report {
        rudder_version: rudder_version(&opts.rudder),
        ..Report::default()
    };
    let server_phases = opts
        .phases
        .iter()
        .any(|p| matches!(p, Phase::Creates | Phase::List | Phase::Watch));
    rt.block_on(async {
        if server_phases {
            let st = start_stack(opts, &mut report).await?;
            if opts.phases.contains(&Phase::Creates) {
                creates_phase(&st, s, &mut report).await?;
            }
            if opts.phases.contains(&Phase::List) {
                list_phase(&st, s, &mut report).await?;
            }
            if opts.phases.contains(&Phase::Watch) {
                for (i, (label, server)) in st.servers().into_iter().enumerate() {
                    let (ep, pid) = (&server.endpoint, server.pid());
                    let h2 = watch_fanout(ep, pid, s, Proto::H2, label).await;
                    let h2 = h2.with_context(|| server_log(server))?;
                    let h1 = watch_fanout(ep, pid, s, Proto::H1, label).await;
                    let h1 = h1.with_context(|| server_log(server))?;
                    let b = st.backend_mut(&mut report, i);
                    b.watch_h2 = Some(h2);
                    b.watch_h1 = Some(h1);
                }
                let size = report.stored_configmap_bytes.unwrap_or(s.payload + 250);
                report.raw_watch =
                    Some(raw_watch(&st.raw.endpoint(), st.raw.pid(), s, size).await?);
            }
        }
        if opts.phases.contains(&Phase::Idle) {
            report.idle = Some(idle(opts).await?);
        }
        if opts.phases.contains(&Phase::Start) {
            report.starts = Some(starts(opts).await?);
        }
        anyhow::Ok(())
    })?;
    println!("etcd: {}", report.etcd_version);
    println!("load average at end: {}", loadavg());
    println!("run time: {:.0} s", started.elapsed().as_secs_f64());
    println!();
    report::print_details(&report, s);
    println!();
    report::print_table(&report::table_rows(&report, s));
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_index_finds_the_name() {
        let line = br#"{"type":"ADDED","object":{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"bw-00042","namespace":"x"}}}"#;
        assert_eq!(event_index(line, NAME_PAT), Some(42));
        assert_eq!(
            event_index(b"/registry/configmaps/bench-watch/bw-00007", KEY_PAT),
            Some(7)
        );
        assert_eq!(event_index(b"{\"name\":\"other\"}", NAME_PAT), None);
        assert_eq!(event_index(b"\"name\":\"bw-12", NAME_PAT), None);
    }

    #[test]
    fn summarize_counts_missing_and_late_events() {
        let t0 = Instant::now();
        let sent = vec![
            t0,
            t0 + Duration::from_millis(10),
            t0 + Duration::from_millis(20),
        ];
        let seen = vec![
            vec![
                (0, t0),
                (1, t0 + Duration::from_millis(11)),
                (2, t0 + Duration::from_millis(25)),
            ],
            // Missed write 2, and a duplicate of write 1 is ignored.
            vec![
                (1, t0 + Duration::from_millis(13)),
                (1, t0 + Duration::from_millis(14)),
            ],
        ];
        let r = summarize("x".into(), 1, &sent, &seen, vec![], Duration::ZERO);
        assert_eq!(r.expected, 4);
        assert_eq!(r.delivered, 3);
        assert_eq!(r.complete_watchers, 1);
        assert_eq!(r.delay.max, Duration::from_millis(5));
        // Only write 1 was seen by both watchers: its last arrival was 3 ms after it was sent.
        assert_eq!(r.all_seen.max, Duration::from_millis(3));
    }
}
