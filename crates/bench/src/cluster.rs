//! Control-plane benchmarks at cluster scale.
//!
//! - `rudder-bench scheduler`: upstream scheduler_perf's "SchedulingBasic" shape. 5,000 Nodes
//!   (API objects, Ready, 4 CPU / 32 GiB / 110 pods; no agents, as scheduler_perf has no
//!   kubelets) and 10,000 pending pods are created on a server without scheduler or
//!   controllers; then a standalone `rudder scheduler --kubeconfig` starts, and the figure is
//!   pods bound per second from the first binding to the last. The peer is kube-scheduler's own
//!   perf-test floor for that case (680 pods/s): there is no kube-scheduler on this machine.
//! - `rudder-bench deployment`: a Deployment of 1,000 replicas on 100 fake nodes (one `rudder
//!   agent --fake-nodes` process) of a server running its scheduler and controllers; seconds
//!   from the create to `readyReplicas` = 1,000. The peer is kube-controller-manager's default
//!   client rate limit (`--kube-api-qps` 20): its ReplicaSet controller cannot create 1,000
//!   pods in less than 50 s, before any scheduling or kubelet work.
//! - `rudder-bench scale`: 5,000 fake nodes (one `rudder agent --fake-nodes` process,
//!   heartbeating) and 150,000 pods scheduled and Running; the server's idle CPU with the nodes
//!   alone, its RSS with everything, and `kubectl get pods -A` latency.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{watcher, WatchStreamExt};
use rudder_testkit::RudderServer;

/// kube-scheduler's throughput floor in upstream's scheduler_perf for SchedulingBasic
/// (5,000 nodes, 10,000 pods).
const KUBE_SCHEDULER_FLOOR: f64 = 680.0;
/// Requests in flight while the benchmark creates objects.
const CONCURRENCY: usize = 64;

#[derive(Clone, Debug)]
pub struct SchedulerOptions {
    pub nodes: usize,
    pub pods: usize,
    pub rudder: PathBuf,
}

#[derive(Clone, Debug)]
pub struct DeploymentOptions {
    pub nodes: usize,
    pub replicas: i32,
    pub rudder: PathBuf,
}

/// kube-controller-manager's default `--kube-api-qps`: pod creates per second at most.
const KCM_QPS: f64 = 20.0;

#[derive(Clone, Debug)]
pub struct ScaleOptions {
    pub nodes: usize,
    pub pods: usize,
    /// How long idle CPU is sampled.
    pub idle: Duration,
    /// The nodes' Lease duration (renewed every quarter of it), with a node monitor grace
    /// period of 1.25 times it; `None` keeps Rudder's defaults (4 s, 5 s).
    pub lease: Option<Duration>,
    pub rudder: PathBuf,
}

/// A client for the server, through its admin kubeconfig.
pub(crate) async fn client_of(server: &RudderServer) -> Result<kube::Client> {
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(&server.kubeconfig)?,
        &Default::default(),
    )
    .await?;
    Ok(kube::Client::try_from(config)?)
}

fn node(name: &str) -> Result<Node> {
    Ok(serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
    }))?)
}

fn node_status() -> serde_json::Value {
    let resources = serde_json::json!({"cpu": "4", "memory": "32Gi", "pods": "110"});
    serde_json::json!({"status": {
        "capacity": resources,
        "allocatable": resources,
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                        "message": "benchmark node"}],
    }})
}

fn pod(name: &str) -> Result<Pod> {
    Ok(serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"bench": "pods"}},
        "spec": {"containers": [{"name": "c", "image": "pause:3.9",
            "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}}}]},
    }))?)
}

/// Runs `make(i)` for `0..count` with [`CONCURRENCY`] in flight.
async fn in_parallel<F, Fut>(count: usize, make: F) -> Result<()>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    futures::stream::iter((0..count).map(make))
        .buffer_unordered(CONCURRENCY)
        .try_collect::<()>()
        .await
}

async fn create_nodes(client: &kube::Client, count: usize) -> Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let status = node_status();
    in_parallel(count, |i| {
        let nodes = nodes.clone();
        let status = status.clone();
        async move {
            let name = format!("node-{i}");
            nodes.create(&PostParams::default(), &node(&name)?).await?;
            nodes
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                .await?;
            // Admission taints a new node not-ready; without a node lifecycle controller on
            // this server, the benchmark lifts the taint as that controller would.
            let untaint = serde_json::json!({"spec": {"taints": null}});
            nodes
                .patch(&name, &PatchParams::default(), &Patch::Merge(&untaint))
                .await?;
            Ok(())
        }
    })
    .await
}

async fn create_pods(client: &kube::Client, count: usize) -> Result<()> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    in_parallel(count, |i| {
        let pods = pods.clone();
        async move {
            pods.create(&PostParams::default(), &pod(&format!("pod-{i}"))?)
                .await?;
            Ok(())
        }
    })
    .await
}

pub async fn scheduler(opts: &SchedulerOptions) -> Result<()> {
    let server = RudderServer::api_only(&opts.rudder, &[])?;
    let client = client_of(&server).await?;
    let started = Instant::now();
    create_nodes(&client, opts.nodes).await?;
    create_pods(&client, opts.pods).await?;
    println!(
        "scheduler: {} nodes and {} pending pods created in {:.1} s",
        opts.nodes,
        opts.pods,
        started.elapsed().as_secs_f64()
    );

    // Bindings are timed as the watch delivers them.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let want = opts.pods;
    let watch = tokio::spawn(async move {
        let mut bound = std::collections::HashSet::new();
        let mut events = std::pin::pin!(watcher(pods, watcher::Config::default())
            .default_backoff()
            .applied_objects());
        while let Some(event) = events.next().await {
            let p = match event {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("watch: {e}");
                    continue;
                }
            };
            let on_node = p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some();
            if on_node && bound.insert(p.metadata.name.unwrap_or_default()) {
                let _ = tx.send(Instant::now());
                if bound.len() == want {
                    return;
                }
            }
        }
    });
    let mut sched = Command::new(&opts.rudder)
        .arg("scheduler")
        .arg("--kubeconfig")
        .arg(&server.kubeconfig)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("start rudder scheduler")?;
    let spawned = Instant::now();
    let mut first = None;
    let mut last = None;
    let mut count = 0;
    let deadline = Duration::from_secs(60);
    while count < want {
        match tokio::time::timeout(deadline, rx.recv()).await {
            Ok(Some(at)) => {
                first.get_or_insert(at);
                last = Some(at);
                count += 1;
            }
            Ok(None) => break,
            Err(_) => {
                eprintln!("scheduler: no binding seen for {deadline:?} after {count}");
                break;
            }
        }
    }
    let _ = sched.kill();
    let _ = sched.wait();
    watch.abort();
    let (Some(first), Some(last)) = (first, last) else {
        bail!("no pod was bound");
    };
    if count < want {
        bail!("only {count} of {want} pods were bound");
    }
    let rate = (count.saturating_sub(1)) as f64 / last.duration_since(first).as_secs_f64();
    let rows = [
        [
            "scheduler (SchedulingBasic)",
            "rudder",
            "kube-scheduler floor",
            "ratio",
            "notes",
        ],
        [
            &format!("{} pods on {} nodes, pods/s", want, opts.nodes),
            &format!("{rate:.0}"),
            &format!("{KUBE_SCHEDULER_FLOOR:.0}"),
            &format!("{:.1}x", rate / KUBE_SCHEDULER_FLOOR),
            "first to last binding; target ≥ 6,800",
        ],
        [
            "scheduler start to first binding",
            &format!("{:.2} s", first.duration_since(spawned).as_secs_f64()),
            "",
            "",
            "process start, caches listed",
        ],
    ];
    crate::print_table(&rows);
    Ok(())
}

/// CPU seconds (user + system) a process has used.
fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("/proc stat")?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    let ticks: f64 = fields.get(11).context("utime")?.parse::<f64>()?
        + fields.get(12).context("stime")?.parse::<f64>()?;
    // SAFETY: sysconf only reads a constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok(ticks / hz)
}

fn rss_mib(pid: u32) -> Result<f64> {
    status_mib(pid, "VmRSS")
}

/// A size from `/proc/PID/status` (`VmRSS`, `VmHWM`), in MiB.
fn status_mib(pid: u32, field: &str) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next())
        .with_context(|| field.to_string())?
        .parse()?;
    Ok(kb / 1024.0)
}

/// Polls `f` every `poll` until it holds; how long that took.
pub(crate) async fn wait_for<F, Fut>(
    what: &str,
    patience: Duration,
    poll: Duration,
    mut f: F,
) -> Result<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let start = Instant::now();
    loop {
        if f().await? {
            return Ok(start.elapsed());
        }
        if start.elapsed() > patience {
            bail!("gave up waiting for {what}");
        }
        tokio::time::sleep(poll).await;
    }
}

/// Whether the node's Ready condition is True.
pub(crate) fn node_ready(n: &Node) -> bool {
    n.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// Waits until `count` nodes are Ready; how long that took.
async fn all_nodes_ready(client: &kube::Client, count: usize) -> Result<Duration> {
    let nodes: Api<Node> = Api::all(client.clone());
    wait_for(
        "every node Ready",
        Duration::from_secs(900),
        Duration::from_secs(1),
        || async {
            let list = nodes.list(&ListParams::default()).await?;
            Ok(list.items.iter().filter(|n| node_ready(n)).count() == count)
        },
    )
    .await
}

/// A child process killed when this is dropped, also when a benchmark fails half-way.
pub(crate) struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `rudder agent --fake-nodes NODES --node-name NAME [EXTRA...]` joined to `server`,
/// its data under the server's data dir.
pub(crate) fn spawn_agent(
    bin: &Path,
    server: &RudderServer,
    name: &str,
    nodes: usize,
    extra: &[&str],
    stderr: Stdio,
) -> Result<std::process::Child> {
    let token = std::fs::read_to_string(server.data_dir().join("server/node-token"))
        .context("read the node token")?;
    Command::new(bin)
        .args(["agent", "--server", &server.url, "--token", token.trim()])
        .args(["--node-name", name, "--fake-nodes", &nodes.to_string()])
        .args(extra)
        .arg("--data-dir")
        .arg(server.data_dir().join(format!("agent-{name}")))
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .context("start rudder agent")
}

/// Waits, through one watch, until `want` pods labelled `bench=pods` are Running; how long
/// that took from `since`. Prints progress every 10 s so a stall shows where it is.
async fn all_running(client: &kube::Client, want: usize, since: Instant) -> Result<Duration> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    // A streaming list: a paged re-list of 150,000 pods on a loaded server outlives its
    // continue token.
    let config = watcher::Config::default()
        .labels("bench=pods")
        .streaming_lists();
    let mut events = std::pin::pin!(watcher(pods, config).default_backoff());
    let mut running = std::collections::HashSet::new();
    let mut phases: std::collections::HashMap<String, String> = Default::default();
    let mut report = tokio::time::interval(Duration::from_secs(10));
    let patience = Duration::from_secs(3600);
    loop {
        tokio::select! {
            event = events.next() => {
                let objects = match event {
                    Some(Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p))) => vec![p],
                    Some(Ok(watcher::Event::Delete(p))) => {
                        // Nothing deletes these pods but an eviction: a node taken for lost.
                        let name = p.metadata.name.unwrap_or_default();
                        running.remove(&name);
                        phases.remove(&name);
                        bail!("pod {name} was deleted: its node was taken for lost");
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => {
                        eprintln!("scale: watch: {e}");
                        continue;
                    }
                    None => bail!("the pod watch ended"),
                };
                for p in objects {
                    let name = p.metadata.name.clone().unwrap_or_default();
                    let phase = p.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default();
                    let phase = if phase == "Pending" && node_of(&p).is_empty() {
                        "Unscheduled".to_string()
                    } else {
                        phase
                    };
                    if phase == "Running" {
                        running.insert(name.clone());
                    } else {
                        running.remove(&name);
                    }
                    phases.insert(name, phase);
                }
                if running.len() == want {
                    return Ok(since.elapsed());
                }
            }
            _ = report.tick() => {
                let mut by_phase = std::collections::BTreeMap::<&str, usize>::new();
                for phase in phases.values() {
                    *by_phase.entry(phase.as_str()).or_default() += 1;
                }
                println!("scale: {:.0} s: {by_phase:?}", since.elapsed().as_secs_f64());
                if since.elapsed() > patience {
                    bail!("gave up waiting for every pod Running");
                }
            }
        }
    }
}

pub(crate) fn node_of(p: &Pod) -> &str {
    p.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or("")
}

/// A server started with `server_args` and one `rudder agent` process acting as `nodes` fake
/// nodes `sim-0` … (with `agent_args`), killed when the guard drops.
async fn start_cluster(
    rudder: &Path,
    server_args: &[&str],
    nodes: usize,
    agent_args: &[&str],
) -> Result<(RudderServer, kube::Client, KillOnDrop)> {
    let server = RudderServer::start(rudder, server_args)?;
    let client = client_of(&server).await?;
    let agent = KillOnDrop(spawn_agent(
        rudder,
        &server,
        "sim",
        nodes,
        agent_args,
        Stdio::inherit(),
    )?);
    Ok((server, client, agent))
}

pub async fn deployment(opts: &DeploymentOptions) -> Result<()> {
    let (_server, client, agent) =
        start_cluster(&opts.rudder, &["--disable-agent"], opts.nodes, &[]).await?;
    all_nodes_ready(&client, opts.nodes).await?;
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(client.clone(), "default");
    let d: k8s_openapi::api::apps::v1::Deployment = serde_json::from_value(serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "big"},
        "spec": {
            "replicas": opts.replicas,
            "selector": {"matchLabels": {"app": "big"}},
            "template": {
                "metadata": {"labels": {"app": "big"}},
                "spec": {"containers": [{"name": "c", "image": "pause:3.9",
                    "resources": {"requests": {"cpu": "1m", "memory": "4Mi"}}}]},
            },
        },
    }))?;
    let started = Instant::now();
    deployments.create(&PostParams::default(), &d).await?;
    let want = opts.replicas;
    wait_for(
        "every replica Ready",
        Duration::from_secs(1800),
        Duration::from_millis(200),
        || async {
            let d = deployments.get("big").await?;
            Ok(d.status.and_then(|s| s.ready_replicas).unwrap_or(0) == want)
        },
    )
    .await?;
    drop(agent);
    let secs = started.elapsed().as_secs_f64();
    let floor = f64::from(want) / KCM_QPS;
    let rows = [
        [
            "deployment",
            "rudder",
            "kube-controller-manager floor",
            "ratio",
            "notes",
        ],
        [
            &format!(
                "{want} replicas on {} fake nodes, create to all Ready",
                opts.nodes
            ),
            &format!("{secs:.1} s"),
            &format!("{floor:.0} s"),
            &format!("{:.2}x", secs / floor),
            "floor: pod creates at its default 20 requests/s",
        ],
    ];
    crate::print_table(&rows);
    Ok(())
}

/// How long the scale benchmark waits before it measures memory again.
const SETTLE: Duration = Duration::from_secs(90);

pub async fn scale(opts: &ScaleOptions) -> Result<()> {
    // One /24 per node out of a /9: room for 32,768 nodes.
    let server_args = [
        "--disable-agent",
        "--cluster-cidr=10.128.0.0/9",
        "--node-cidr-mask-size=24",
    ];
    // The node lifecycle controller gives each node a quarter more than its Lease declares.
    let agent_args: Vec<String> = opts
        .lease
        .map(|l| format!("--node-lease-duration={}ms", l.as_millis()))
        .into_iter()
        .collect();
    let agent_args: Vec<&str> = agent_args.iter().map(String::as_str).collect();
    let (server, client, agent) =
        start_cluster(&opts.rudder, &server_args, opts.nodes, &agent_args).await?;
    let joined = all_nodes_ready(&client, opts.nodes).await?;
    println!(
        "scale: {} fake nodes Ready in {:.1} s",
        opts.nodes,
        joined.as_secs_f64()
    );
    let pid = server.pid();
    let cpu0 = cpu_seconds(pid)?;
    tokio::time::sleep(opts.idle).await;
    let idle_cpu = (cpu_seconds(pid)? - cpu0) / opts.idle.as_secs_f64();
    let idle_rss = rss_mib(pid)?;

    let created = Instant::now();
    create_pods(&client, opts.pods).await?;
    let create_secs = created.elapsed().as_secs_f64();
    let running = match all_running(&client, opts.pods, created).await {
        Ok(r) => r,
        Err(e) => {
            // What the node lifecycle controller saw and did.
            for line in server.log().lines().filter(|l| {
                ["stopped posting", "zone state", "evicted"]
                    .iter()
                    .any(|w| l.contains(w))
            }) {
                eprintln!("server: {line}");
            }
            return Err(e);
        }
    };
    let full_rss = rss_mib(pid)?;
    // kubectl's pages of 500 are held to its own client-side limit (5 requests/s after 10):
    // at 150,000 pods that alone is a minute. In one chunk the server's part shows.
    let paged = kubectl_get_pods(&server, &[])?;
    let whole = kubectl_get_pods(&server, &["--chunk-size=0"])?;
    // The watch cache keeps the last 75 s of events (the burst of creates, bindings and
    // status writes) and lets them go on its next tick after that.
    tokio::time::sleep(SETTLE).await;
    let settled_rss = rss_mib(pid)?;
    let peak_rss = status_mib(pid, "VmHWM")?;
    let agent_rss = rss_mib(agent.0.id())?;
    drop(agent);
    let rows = [
        ["scale", "rudder", "target", "", "notes"],
        [
            &format!("server idle CPU, {} heartbeating nodes", opts.nodes),
            &format!("{:.0} %", idle_cpu * 100.0),
            "",
            "",
            &format!("of one core, over {} s", opts.idle.as_secs()),
        ],
        [
            "server RSS, nodes only",
            &format!("{idle_rss:.0} MiB"),
            "",
            "",
            "",
        ],
        [
            &format!("{} pods created", opts.pods),
            &format!("{create_secs:.0} s"),
            "",
            "",
            &format!(
                "{:.0} pods/s, {CONCURRENCY} in flight",
                opts.pods as f64 / create_secs
            ),
        ],
        [
            "all pods Running",
            &format!("{:.0} s", running.as_secs_f64()),
            "",
            "",
            "from the first create",
        ],
        [
            "server RSS, nodes and pods",
            &format!("{full_rss:.0} MiB"),
            "≤ 4096 MiB",
            "",
            "",
        ],
        [
            "server RSS, the same 90 s later",
            &format!("{settled_rss:.0} MiB"),
            "≤ 4096 MiB",
            "",
            "the watch cache's 75 s of history let go",
        ],
        [
            "server peak RSS (VmHWM)",
            &format!("{peak_rss:.0} MiB"),
            "",
            "",
            "",
        ],
        [
            &format!("agent RSS ({} fake nodes), pods Running", opts.nodes),
            &format!("{agent_rss:.0} MiB"),
            "",
            "",
            "one `rudder agent --fake-nodes` process",
        ],
        [
            "kubectl get pods -A (median of 3)",
            &format!("{paged:.1} s"),
            "",
            "",
            "pages of 500, kubectl's client-side limit of 5 requests/s",
        ],
        [
            "kubectl get pods -A --chunk-size=0 (median of 3)",
            &format!("{whole:.1} s"),
            "",
            "",
            "one request",
        ],
    ];
    crate::print_table(&rows);
    Ok(())
}

/// The median seconds of three `kubectl get pods -A EXTRA...` against `server`.
fn kubectl_get_pods(server: &RudderServer, extra: &[&str]) -> Result<f64> {
    let mut times = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let out = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&server.kubeconfig)
            .args(["get", "pods", "-A"])
            .args(extra)
            .stdout(Stdio::null())
            .status()?;
        if !out.success() {
            bail!("kubectl get pods -A {extra:?} failed");
        }
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok(times[1])
}
