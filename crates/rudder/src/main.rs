//! The `rudder` binary: the command line, and wiring the components together. Nothing else —
//! every behaviour lives in the component crates.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use rudder_store::compactor::{self, CompactionPolicy};
use rudder_store::embedded::{Embedded, EmbeddedOptions};
use rudder_store::etcd::{parse_endpoints, EtcdStore};
use rudder_store::{snapshot, Store};

mod service;
mod uninstall;

/// mimalloc instead of glibc's malloc: the server's work is mostly small JSON values made and
/// dropped per request, where glibc spent a third of the CPU (docs/benchmarks.md), and
/// mimalloc gives freed pages back to the system by itself.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc commits a whole arena up front by default (some 15–40 MiB more resident at idle);
/// committing on demand keeps an idle server as small as under glibc. mimalloc reads its
/// options when it initialises, in a constructor before `main`, so this runs before it: a
/// constructor of priority 100 (unprioritised ones, mimalloc's among them, run after all
/// prioritised ones).
#[used]
#[link_section = ".init_array.00100"]
static TUNE_ALLOCATOR: extern "C" fn() = tune_allocator;

/// `mi_option_arena_eager_commit` in the mimalloc that libmimalloc-sys builds (v3).
const ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;

extern "C" fn tune_allocator() {
    // SAFETY: setting an option only stores a value; mimalloc allows it before it starts.
    unsafe { libmimalloc_sys::mi_option_set(ARENA_EAGER_COMMIT, 0) }
}

/// `mi_option_purge_delay` in the mimalloc that libmimalloc-sys builds (v3).
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Gives memory back to the system as soon as it is freed. mimalloc's default waits 10 s
/// (`purge_delay` 1 s × `arena_purge_mult` 10) and purges only when the allocator is next
/// busy, so what a process freed after its start stays resident for good once it is idle:
/// about 3 MiB of an idle agent's 6.8 MiB of heap. An agent allocates little once its pods
/// run, so purging at once costs it nothing that shows; the API server's hot path keeps the
/// delay.
fn purge_freed_memory_at_once() {
    // SAFETY: setting an option only stores a value, which mimalloc reads when it purges.
    unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, 0) }
}

#[derive(Parser)]
#[command(
    name = "rudder",
    version,
    about = "A Kubernetes-compatible container orchestrator in one binary"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the control plane (store, API server, scheduler, controllers) and a node agent.
    Server(Box<ServerArgs>),
    /// Run a node agent that joins a server (`--fake-nodes N` simulates N nodes).
    Agent(Box<AgentArgs>),
    /// Run the controllers alone, against the cluster a kubeconfig names.
    Controllers(ControllersArgs),
    /// Run the scheduler alone, against the cluster a kubeconfig names.
    Scheduler(SchedulerCmdArgs),
    /// Work on the datastore directly (the server must be stopped for the embedded store).
    Store {
        #[command(subcommand)]
        command: StoreCommand,
    },
    /// The node's images (in its containerd's CRI namespace): import archives by hand, list them.
    Images {
        #[command(subcommand)]
        command: ImagesCommand,
    },
    /// Print the URLs where a Service answers (its load balancer, NodePorts on each Ready
    /// node, its cluster IP), as `minikube service --url` does.
    Service(ServiceArgs),
    /// Stop Rudder on this machine and take away what it made: its processes, the pods'
    /// containers, its networking, its mounts and (unless --keep-data) its data dir.
    Uninstall(UninstallArgs),
    /// Print the version.
    Version,
}

#[derive(Args)]
struct UninstallArgs {
    /// The data dir of the server or agent to take away (default /var/lib/rudder as root).
    #[arg(long, env = "RUDDER_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Stop everything and clean the machine up, but keep the data dir (k3s-killall.sh).
    #[arg(long)]
    keep_data: bool,
}

#[derive(Args)]
struct ServiceArgs {
    /// The Service's name.
    name: String,
    /// Its namespace.
    #[arg(short, long, default_value = "default")]
    namespace: String,
    /// The kubeconfig to reach the cluster with (default: $KUBECONFIG, then ~/.kube/config,
    /// then the server's <data-dir>/kubeconfig.yaml).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
}

#[derive(Subcommand)]
enum ImagesCommand {
    /// Import image archives (OCI layout or `docker save` tar) into the node's containerd, as
    /// the agent imports `<data-dir>/agent/images/*.tar` when it starts.
    Import {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[command(flatten)]
        node: ImagesArgs,
    },
    /// List the images the node's containerd holds for pods.
    List {
        #[command(flatten)]
        node: ImagesArgs,
    },
}

#[derive(Args)]
struct ImagesArgs {
    /// The agent's data directory, whose containerd is used (default /var/lib/rudder as root).
    #[arg(long, env = "RUDDER_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// The CRI socket of another containerd instead of the agent's own.
    #[arg(long)]
    container_runtime_endpoint: Option<PathBuf>,
}

impl ImagesArgs {
    /// The containerd socket, checked to answer.
    async fn socket(&self) -> Result<PathBuf> {
        let socket = match &self.container_runtime_endpoint {
            Some(s) => {
                let s = s.to_string_lossy();
                PathBuf::from(s.strip_prefix("unix://").unwrap_or(&s))
            }
            None => rudder_agent::containerd::Layout::new(
                self.data_dir
                    .clone()
                    .unwrap_or_else(default_data_dir)
                    .join("agent/containerd"),
            )
            .socket(),
        };
        if tokio::net::UnixStream::connect(&socket).await.is_err() {
            bail!(
                "no containerd answers at {}: start the node first (rudder server or rudder \
                 agent with --runtime cri), or give --data-dir or --container-runtime-endpoint",
                socket.display()
            );
        }
        Ok(socket)
    }
}

async fn images(command: ImagesCommand) -> Result<()> {
    match command {
        ImagesCommand::Import { files, node } => {
            let socket = node.socket().await?;
            for f in &files {
                if !f.is_file() {
                    bail!("{}: not a file", f.display());
                }
                rudder_agent::containerd::import(&socket, f).await?;
                println!("imported {}", f.display());
            }
            Ok(())
        }
        ImagesCommand::List { node } => {
            let socket = node.socket().await?;
            let cri = rudder_agent::cri::Cri::connect(&socket).await?;
            let mut rows = vec![[
                "IMAGE".to_string(),
                "TAG".to_string(),
                "IMAGE ID".to_string(),
                "SIZE".to_string(),
            ]];
            for image in cri.list_images().await? {
                let id = image.id.trim_start_matches("sha256:");
                let id = id.get(..13).unwrap_or(id).to_string();
                let size = format!("{:.1}MB", image.size as f64 / 1e6);
                let tags = if image.repo_tags.is_empty() {
                    vec!["<none>:<none>".to_string()]
                } else {
                    image.repo_tags
                };
                for tag in tags {
                    let (repo, tag) = tag.rsplit_once(':').unwrap_or((&tag, ""));
                    rows.push([repo.to_string(), tag.to_string(), id.clone(), size.clone()]);
                }
            }
            let widths: Vec<usize> = (0..4)
                .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
                .collect();
            for r in rows {
                println!(
                    "{:<w0$}   {:<w1$}   {:<w2$}   {}",
                    r[0],
                    r[1],
                    r[2],
                    r[3],
                    w0 = widths[0],
                    w1 = widths[1],
                    w2 = widths[2]
                );
            }
            Ok(())
        }
    }
}

#[derive(Subcommand)]
enum StoreCommand {
    /// Snapshots: every key at one revision, in a portable file.
    Snapshot {
        #[command(subcommand)]
        command: SnapshotCommand,
    },
}

#[derive(Subcommand)]
enum SnapshotCommand {
    /// Write a consistent snapshot of the datastore to FILE.
    Save {
        file: PathBuf,
        #[command(flatten)]
        datastore: DatastoreArgs,
    },
    /// Replace the datastore's contents with the snapshot in FILE.
    ///
    /// Embedded store: the old files are moved aside to `<dir>.before-restore-<time>`, revisions
    /// are kept. etcd: the target must be empty; etcd assigns new revisions.
    Restore {
        file: PathBuf,
        #[command(flatten)]
        datastore: DatastoreArgs,
    },
}

#[derive(Args, Clone)]
struct DatastoreArgs {
    /// Directory for all state (default /var/lib/rudder as root, ~/.rudder otherwise).
    #[arg(long, env = "RUDDER_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Use an etcd cluster instead of the embedded store: http://HOST:PORT[,http://HOST:PORT…].
    #[arg(long, env = "RUDDER_DATASTORE_ENDPOINT")]
    datastore_endpoint: Option<String>,
}

#[derive(Args)]
struct ServerArgs {
    #[command(flatten)]
    datastore: DatastoreArgs,
    /// Keep at least this much history before compacting (e.g. 5m, 1h; 0 turns it off).
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    compaction_retention: Duration,
    /// Keep at least this many revisions before compacting (0: no revision limit).
    #[arg(long, default_value_t = 0)]
    compaction_keep_revisions: i64,
    /// How often automatic compaction runs (0 turns it off).
    #[arg(long, default_value = "1m", value_parser = humantime::parse_duration)]
    compaction_interval: Duration,
    /// HTTPS port of the API server (0 picks a free one).
    #[arg(long, default_value_t = 6443)]
    https_listen_port: u16,
    /// Address the API server listens on.
    #[arg(long, default_value = "0.0.0.0")]
    bind_address: std::net::IpAddr,
    /// Write the admin kubeconfig here (default <data-dir>/kubeconfig.yaml).
    #[arg(long, env = "RUDDER_KUBECONFIG_OUTPUT")]
    write_kubeconfig: Option<PathBuf>,
    /// File mode of the kubeconfig, octal (e.g. 644).
    #[arg(long, env = "RUDDER_KUBECONFIG_MODE", default_value = "600")]
    write_kubeconfig_mode: String,
    /// Shared secret agents join with (default: generated, kept in <data-dir>/server/node-token).
    #[arg(long, env = "RUDDER_TOKEN")]
    token: Option<String>,
    /// Another name or IP for the server certificate (repeatable).
    #[arg(long)]
    tls_san: Vec<String>,
    /// How long the certificates agents get are valid; they renew them once 70-90% of that has
    /// passed.
    #[arg(long, default_value = "8760h", value_parser = humantime::parse_duration)]
    cluster_signing_duration: Duration,
    /// Do not run the node agent on this machine.
    #[arg(long)]
    disable_agent: bool,
    /// Do not run the scheduler.
    #[arg(long)]
    disable_scheduler: bool,
    /// Do not run the controllers.
    #[arg(long)]
    disable_controller_manager: bool,
    #[command(flatten)]
    node: NodeArgs,
    #[command(flatten)]
    controllers: ControllerArgs,
    #[command(flatten)]
    scheduler: SchedulerArgs,
    #[command(flatten)]
    leader: LeaderArgs,
    /// Service network (ClusterIPs are allocated from it).
    #[arg(long, default_value = "10.43.0.0/16")]
    service_cidr: String,
    /// Start with an empty embedded store although this server's other state (certificates,
    /// node token) exists, i.e. deliberately start the cluster over. Without it such a start
    /// is refused, since the store's files are missing.
    #[arg(long)]
    cluster_reset: bool,
    /// Seconds a pod tolerates its node being not ready (the `node.kubernetes.io/not-ready`
    /// NoExecute toleration the DefaultTolerationSeconds admission plugin adds to pods).
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(i64).range(0..))]
    default_not_ready_toleration_seconds: i64,
    /// Seconds a pod tolerates its node being unreachable (`node.kubernetes.io/unreachable`):
    /// after the node has been silent for --node-monitor-grace-period. Upstream's 300 s makes
    /// a lost node's pods come back elsewhere after minutes; 1 s after the 5 s grace period
    /// brings them back within 10 s (see docs/architecture.md, "Failover").
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(i64).range(0..))]
    default_unreachable_toleration_seconds: i64,
    /// Non-mutating requests (get, list) in flight at most; beyond it 429 (0: no limit).
    #[arg(long, default_value_t = 400)]
    max_requests_inflight: usize,
    /// Mutating requests in flight at most; beyond it 429 (0: no limit).
    #[arg(long, default_value_t = 200)]
    max_mutating_requests_inflight: usize,
    /// Time a client has to finish the TLS handshake.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    tls_handshake_timeout: Duration,
    /// Time a client has to send a request header (and a new connection its first request).
    #[arg(long, default_value = "32s", value_parser = humantime::parse_duration)]
    request_header_timeout: Duration,
    /// Close connections with no request in flight for this long.
    #[arg(long, default_value = "90s", value_parser = humantime::parse_duration)]
    idle_connection_timeout: Duration,
    /// Time a client has to send a request body (then 504 Timeout).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    request_body_timeout: Duration,
    /// Time a request that is not long-running (not a watch, exec, attach, port-forward,
    /// proxy or log) has to be answered, then 504 Timeout (upstream's --request-timeout); the
    /// request's `timeout` parameter may shorten it.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    request_timeout: Duration,
    /// Open connections at most (0: 4096, less if the open-file limit is lower).
    #[arg(long, default_value_t = 0)]
    max_connections: usize,
    /// Connections not yet authenticated at most; the oldest is closed to make room (0: 1024,
    /// at most half of --max-connections).
    #[arg(long, default_value_t = 0)]
    max_pending_connections: usize,
    /// Connections not yet authenticated from one client address (an IPv6 /64) at most; a new
    /// one closes that address's own oldest (0: 256, at most a quarter of
    /// --max-pending-connections).
    #[arg(long, default_value_t = 0)]
    max_pending_connections_per_address: usize,
}

/// How the controllers run (shared by `rudder server` and `rudder controllers`).
#[derive(Args, Clone)]
struct ControllerArgs {
    /// Pod network.
    #[arg(long, default_value = "10.42.0.0/16")]
    cluster_cidr: String,
    /// Prefix length of the podCIDR each node gets from the pod network.
    #[arg(long, default_value_t = 24, value_parser = clap::value_parser!(u8).range(8..=30))]
    node_cidr_mask_size: u8,
    /// A node whose heartbeat is silent this long is marked Unknown and tainted unreachable.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    node_monitor_grace_period: Duration,
    /// How often the node lifecycle controller looks at nodes.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    node_monitor_period: Duration,
    /// Terminated pods (Succeeded or Failed) kept before pod GC deletes the oldest (0: never).
    #[arg(long, default_value_t = 12500)]
    terminated_pod_gc_threshold: usize,
    /// How often the resource quota controller recounts every quota's usage (it also does
    /// whenever a quota or an object it charges changes).
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    resource_quota_sync_period: Duration,
}

impl ControllerArgs {
    fn config(&self, root_ca_pem: String) -> rudder_controllers::Config {
        rudder_controllers::Config {
            root_ca_pem,
            cluster_cidr: self.cluster_cidr.clone(),
            node_cidr_mask_size: self.node_cidr_mask_size,
            node_lifecycle: rudder_controllers::nodelifecycle::Config {
                grace: self.node_monitor_grace_period,
                period: self.node_monitor_period,
                server_trouble: None,
            },
            pod_gc: rudder_controllers::podgc::Config {
                terminated_threshold: self.terminated_pod_gc_threshold,
                ..Default::default()
            },
            resource_quota: rudder_controllers::resourcequota::Config {
                resync: self.resource_quota_sync_period,
            },
        }
    }
}

#[derive(Args)]
struct ControllersArgs {
    /// The kubeconfig to reach the cluster with (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Serve /metrics and /healthz over plain HTTP on this address (0: not at all). Default
    /// 127.0.0.1:10257; when that port is taken (another instance on this machine) the
    /// controllers run without it, saying so. A port given here must be free.
    #[arg(long, value_parser = parse_metrics_address)]
    metrics_bind_address: Option<MetricsAddress>,
    #[command(flatten)]
    controllers: ControllerArgs,
    #[command(flatten)]
    leader: LeaderArgs,
}

/// Leader election of the scheduler and the controllers (shared by the commands that run them).
#[derive(Args, Clone)]
struct LeaderArgs {
    /// Run the loops only while holding their Lease in kube-system, so that several servers
    /// (or standalone processes) can run them with one active (false: always run them).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    leader_elect: bool,
    /// How long a Lease nobody renews keeps other candidates out.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    leader_elect_lease_duration: Duration,
    /// How long the leader keeps trying to renew before it stops its loops.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    leader_elect_renew_deadline: Duration,
    /// How often the leader renews and the others try.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    leader_elect_retry_period: Duration,
}

impl LeaderArgs {
    /// Runs the loops `start` starts (they stop when what it returns is dropped): while holding
    /// the Lease `lease`, or always without --leader-elect; until `stop` turns true, when the
    /// Lease is released.
    fn spawn<T: Send + 'static>(
        &self,
        client: kube::Client,
        lease: &str,
        start: impl FnMut() -> T + Send + 'static,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> Result<tokio::task::JoinHandle<()>> {
        let stopped = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        if !self.leader_elect {
            let mut start = start;
            return Ok(tokio::spawn(async move {
                let _running = start();
                stopped.await;
            }));
        }
        let cfg = rudder_controllers::leader::Config {
            lease: lease.into(),
            identity: rudder_controllers::leader::identity(),
            lease_duration: self.leader_elect_lease_duration,
            renew_deadline: self.leader_elect_renew_deadline,
            retry_period: self.leader_elect_retry_period,
        };
        cfg.validate().map_err(anyhow::Error::msg)?;
        Ok(tokio::spawn(rudder_controllers::leader::run(
            client, cfg, start, stopped,
        )))
    }
}

/// The controllers' loops as `start` gives them to the leader election (the configuration is
/// checked before, so starting cannot fail).
fn controller_loops(
    informers: rudder_controllers::informers::Informers,
    cfg: rudder_controllers::Config,
) -> Result<impl FnMut() -> Option<rudder_controllers::Controllers> + Send + 'static> {
    cfg.check()?;
    Ok(
        move || match rudder_controllers::start_on(&informers, &cfg) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::error!(error = %e, "starting the controllers");
                None
            }
        },
    )
}

/// How the scheduler runs (shared by `rudder server` and `rudder scheduler`).
#[derive(Args, Clone)]
struct SchedulerArgs {
    /// Share of the nodes (percent) found feasible before a pod's nodes are scored; 0 is
    /// upstream's adaptive default (50% less 1% per 125 nodes, at least 5% and 100 nodes).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=100))]
    percentage_of_nodes_to_score: u32,
    /// Bindings sent at once. Keep it below the server's --max-mutating-requests-inflight
    /// when the scheduler's identity is not in system:masters.
    #[arg(long, default_value_t = rudder_scheduler::Config::default().max_in_flight_bindings as u64,
          value_parser = clap::value_parser!(u64).range(1..=100_000))]
    max_in_flight_bindings: u64,
}

impl SchedulerArgs {
    fn config(&self) -> rudder_scheduler::Config {
        rudder_scheduler::Config {
            percentage_of_nodes_to_score: (self.percentage_of_nodes_to_score > 0)
                .then_some(self.percentage_of_nodes_to_score),
            max_in_flight_bindings: self.max_in_flight_bindings as usize,
            ..Default::default()
        }
    }
}

#[derive(Args)]
struct SchedulerCmdArgs {
    /// The kubeconfig to reach the cluster with (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Serve /metrics and /healthz over plain HTTP on this address (0: not at all). Default
    /// 127.0.0.1:10259; when that port is taken (another instance on this machine) the
    /// scheduler run without it, saying so. A port given here must be free.
    #[arg(long, value_parser = parse_metrics_address)]
    metrics_bind_address: Option<MetricsAddress>,
    #[command(flatten)]
    scheduler: SchedulerArgs,
    #[command(flatten)]
    leader: LeaderArgs,
}

/// Where a standalone scheduler or controller manager serves its metrics; None: nowhere.
#[derive(Clone, Copy, Debug)]
struct MetricsAddress(Option<std::net::SocketAddr>);

fn parse_metrics_address(s: &str) -> std::result::Result<MetricsAddress, String> {
    if s == "0" {
        return Ok(MetricsAddress(None));
    }
    s.parse()
        .map(|a| MetricsAddress(Some(a)))
        .map_err(|e| format!("{e}: want HOST:PORT, or 0 to serve no metrics"))
}

/// Serves `/metrics` (the metrics `render` appends, then the process's) and `/healthz` over
/// plain HTTP on `address`, until the returned task is dropped or aborted.
async fn serve_metrics(
    address: Option<MetricsAddress>,
    default: std::net::SocketAddr,
    render: fn(&mut String),
) -> Result<Option<tokio::task::JoinHandle<()>>> {
    use axum::http::header;
    let listener = match address {
        Some(MetricsAddress(None)) => return Ok(None),
        Some(MetricsAddress(Some(a))) => tokio::net::TcpListener::bind(a)
            .await
            .with_context(|| format!("--metrics-bind-address {a}"))?,
        None => match tokio::net::TcpListener::bind(default).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(
                    address = %default,
                    error = %e,
                    "not serving metrics (give --metrics-bind-address another address)"
                );
                return Ok(None);
            }
        },
    };
    let app = axum::Router::new()
        .route(
            "/metrics",
            axum::routing::get(move || async move {
                let mut text = String::new();
                render(&mut text);
                rudder_apiserver::metrics::render_process(&mut text);
                (
                    [(
                        header::CONTENT_TYPE,
                        rudder_apiserver::metrics::CONTENT_TYPE,
                    )],
                    text,
                )
            }),
        )
        .route("/healthz", axum::routing::get(|| async { "ok" }));
    tracing::info!(address = %listener.local_addr()?, "serving metrics");
    Ok(Some(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "metrics listener");
        }
    })))
}

/// A client for the cluster a kubeconfig names (the given file, else kube's usual places),
/// and the cluster's CA certificate (PEM) if the kubeconfig has it.
async fn kubeconfig_client(path: Option<&Path>) -> Result<(kube::Client, String)> {
    let options = kube::config::KubeConfigOptions::default();
    let file = match path {
        Some(p) => kube::config::Kubeconfig::read_from(p)
            .with_context(|| format!("read kubeconfig {}", p.display()))?,
        None => kube::config::Kubeconfig::read()
            .context("no kubeconfig: give --kubeconfig or set KUBECONFIG")?,
    };
    let ca = kubeconfig_ca(&file).unwrap_or_default();
    let config = kube::Config::from_custom_kubeconfig(file, &options).await?;
    Ok((rudder_agent::connect::http2_client(config)?, ca))
}

/// The CA (PEM) of the current context's cluster: `certificate-authority-data`, else the
/// `certificate-authority` file.
fn kubeconfig_ca(file: &kube::config::Kubeconfig) -> Option<String> {
    use base64::Engine as _;
    let context = file.current_context.as_deref()?;
    let cluster_name = file
        .contexts
        .iter()
        .find(|c| c.name == context)?
        .context
        .as_ref()?
        .cluster
        .clone();
    let cluster = file
        .clusters
        .iter()
        .find(|c| c.name == cluster_name)?
        .cluster
        .as_ref()?;
    if let Some(data) = &cluster.certificate_authority_data {
        let pem = base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .ok()?;
        return String::from_utf8(pem).ok();
    }
    std::fs::read_to_string(cluster.certificate_authority.as_ref()?).ok()
}

async fn controllers(args: ControllersArgs) -> Result<()> {
    let shutdown = shutdown_signal()?;
    let (client, ca) = kubeconfig_client(args.kubeconfig.as_deref()).await?;
    let metrics = serve_metrics(
        args.metrics_bind_address,
        ([127, 0, 0, 1], 10257).into(),
        rudder_controllers::metrics::render,
    )
    .await?;
    let (stop, stopping) = tokio::sync::watch::channel(false);
    // Caches that outlive a lost leadership, warm for the next.
    let caches = rudder_controllers::informers::Informers::new(client.clone());
    caches.start();
    let loops = controller_loops(caches, args.controllers.config(ca))?;
    let running = args
        .leader
        .spawn(client, "kube-controller-manager", loops, stopping)?;
    tracing::info!("controllers running");
    shutdown.await;
    let _ = stop.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), running).await;
    if let Some(m) = metrics {
        m.abort();
    }
    Ok(())
}

async fn scheduler(args: SchedulerCmdArgs) -> Result<()> {
    let shutdown = shutdown_signal()?;
    let (client, _ca) = kubeconfig_client(args.kubeconfig.as_deref()).await?;
    let metrics = serve_metrics(
        args.metrics_bind_address,
        ([127, 0, 0, 1], 10259).into(),
        rudder_scheduler::metrics::render,
    )
    .await?;
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let cfg = args.scheduler.config();
    let c = client.clone();
    let running = args.leader.spawn(
        client,
        "kube-scheduler",
        move || rudder_scheduler::start(c.clone(), cfg.clone()),
        stopping,
    )?;
    tracing::info!("scheduler running");
    shutdown.await;
    let _ = stop.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), running).await;
    if let Some(m) = metrics {
        m.abort();
    }
    Ok(())
}

/// What a node agent registers and how it runs (shared by `rudder server` and `rudder agent`).
#[derive(Args, Clone)]
struct NodeArgs {
    /// This node's name (default: the hostname).
    #[arg(long, env = "RUDDER_NODE_NAME")]
    node_name: Option<String>,
    /// The node's address (default: the address of the interface with the default route).
    #[arg(long)]
    node_ip: Option<std::net::IpAddr>,
    /// Labels the node registers with: key=value[,key=value…] (repeatable).
    #[arg(long = "node-labels", alias = "node-label", value_delimiter = ',')]
    node_labels: Vec<String>,
    /// Taints the node registers with: key[=value]:Effect[,…] (repeatable).
    #[arg(long = "node-taints", alias = "node-taint", value_delimiter = ',')]
    node_taints: Vec<String>,
    /// What the node offers instead of this machine's figures: cpu=4,memory=8Gi,pods=110.
    #[arg(long, value_delimiter = ',')]
    node_capacity: Vec<String>,
    /// Container runtime (default: cri when containerd is installed and this runs as root,
    /// else fake, saying why).
    #[arg(long, value_enum, env = "RUDDER_RUNTIME")]
    runtime: Option<RuntimeKind>,
    /// The CRI socket of a running containerd for `--runtime cri` (default: the agent starts
    /// its own containerd under <data-dir>/agent/containerd).
    #[arg(long)]
    container_runtime_endpoint: Option<PathBuf>,
    /// The port of the node's own HTTPS server, which the API server reaches for logs (0: any
    /// free port; the node reports the one it got).
    #[arg(long, default_value_t = 10250)]
    kubelet_port: u16,
    /// How long the node's heartbeat Lease lasts; the agent renews it every quarter of that.
    #[arg(long, default_value = "4s", value_parser = humantime::parse_duration)]
    node_lease_duration: Duration,
    /// The longest time before a running pod's ConfigMap, Secret and downward API volumes show
    /// a change (the kubelet's sync frequency).
    #[arg(long, default_value = "1m", value_parser = humantime::parse_duration)]
    sync_frequency: Duration,
    /// The cluster DNS service's address, the nameserver of pods with dnsPolicy ClusterFirst.
    #[arg(long, default_value = "10.43.0.10")]
    cluster_dns: std::net::IpAddr,
    /// The port on the node's address where the node serves the cluster DNS (UDP and TCP; 0:
    /// any free port, as tests that run several nodes on one machine need).
    #[arg(long, default_value_t = 53)]
    cluster_dns_port: u16,
    /// Leave the machine's nftables alone: no service proxy on this node (Services answer
    /// only where another proxy serves them). Nodes that simulate pods never run one.
    #[arg(long)]
    disable_proxy: bool,
    /// How pods reach other nodes' pods: `vxlan` routes each other node's podCIDR through its
    /// address when it is on a network this node shares, and through a VXLAN overlay when not;
    /// `host-gw` only routes (the nodes must share a network); both masquerade what pods send
    /// outside the pods' addresses. `none` leaves it to something else (pods still get
    /// addresses on the node's bridge). Nodes that simulate pods never route.
    #[arg(long, value_enum, default_value = "vxlan")]
    pod_network: PodNetwork,
    /// On shutdown, remove the service rules, routes and masquerading this node wrote (they
    /// stay by default, so that connections keep working while the agent restarts).
    #[arg(long)]
    cleanup: bool,
    /// Registry mirrors, credentials and TLS for `--runtime cri`, in k3s's registries.yaml
    /// format (used when the file exists).
    #[arg(long, default_value = "/etc/rudder/registries.yaml")]
    private_registry: PathBuf,
    /// The size past which a container's log file is rotated (a quantity: 10Mi).
    #[arg(long, default_value = "10Mi", value_parser = log_size)]
    container_log_max_size: u64,
    /// How many log files of a container are kept, the current one included (at least 2).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(2..))]
    container_log_max_files: u16,
}

/// A log size limit: a quantity of bytes of at least 1Ki.
fn log_size(s: &str) -> Result<u64, String> {
    let q = rudder_api::validation::Quantity::parse(s)
        .ok_or_else(|| format!("{s:?} is not a quantity (e.g. 10Mi)"))?;
    u64::try_from(q.nanos() / 1_000_000_000)
        .ok()
        .filter(|&n| n >= 1024)
        .ok_or_else(|| format!("{s:?}: a log must be allowed at least 1Ki"))
}

#[derive(Clone, Copy, PartialEq, clap::ValueEnum)]
enum PodNetwork {
    Vxlan,
    HostGw,
    None,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum RuntimeKind {
    /// Runs no containers: pods go Running at once (simulation, scale tests).
    Fake,
    /// Runs pods as containers through containerd's CRI (only hostNetwork pods until the pod
    /// network lands).
    Cri,
}

#[derive(Args)]
struct AgentArgs {
    /// The server to join: https://HOST:6443.
    #[arg(long, env = "RUDDER_URL")]
    server: String,
    /// The join token (<data-dir>/server/node-token on the server).
    #[arg(long, env = "RUDDER_TOKEN")]
    token: String,
    /// Directory for the agent's state (default /var/lib/rudder as root, ~/.rudder otherwise).
    #[arg(long, env = "RUDDER_DATA_DIR")]
    data_dir: Option<PathBuf>,
    #[command(flatten)]
    node: NodeArgs,
    /// Act as this many simulated nodes, NAME-0 … NAME-(N-1) (fake runtime only).
    #[arg(long, default_value_t = 0)]
    fake_nodes: usize,
}

/// The node agent's runtime when it is not the fake one, and what must be stopped with it.
type NodeRuntime = (
    Arc<dyn rudder_agent::runtime::Runtime>,
    Option<rudder_agent::containerd::Containerd>,
);

impl NodeArgs {
    /// The runtime asked for, else the CRI one where containerd can run pods (installed, and
    /// this process root), else the fake one with a word on why.
    fn runtime_kind(&self) -> RuntimeKind {
        if let Some(kind) = self.runtime {
            return kind;
        }
        if self.container_runtime_endpoint.is_some() {
            return RuntimeKind::Cri;
        }
        let root = effective_uid() == 0;
        let why = match (rudder_agent::containerd::on_path("containerd"), root) {
            (Some(_), true) => return RuntimeKind::Cri,
            (None, _) => "containerd is not installed (apt install containerd runc containernetworking-plugins)",
            (Some(_), false) => "containers need root",
        };
        tracing::warn!(
            "pods are simulated, no container runs (the fake runtime): {why}; --runtime fake says this is meant"
        );
        RuntimeKind::Fake
    }

    /// Starts the node's runtime: the fake one, or the CRI runtime (with its containerd
    /// child, if the agent starts one).
    async fn runtime(&self, agent_dir: &Path, node_ip: std::net::IpAddr) -> Result<NodeRuntime> {
        match self.runtime_kind() {
            RuntimeKind::Fake => {
                if self.container_runtime_endpoint.is_some() {
                    bail!("--container-runtime-endpoint needs --runtime cri");
                }
                Ok((Arc::new(rudder_agent::fake::Fake::new()), None))
            }
            RuntimeKind::Cri => {
                let registries = if self.private_registry.exists() {
                    rudder_agent::registries::Registries::load(&self.private_registry)
                        .map_err(|e| anyhow::anyhow!("--private-registry {e}"))?
                } else {
                    Default::default()
                };
                let (rt, child) = rudder_agent::cri_runtime::start_on_node(
                    agent_dir,
                    self.container_runtime_endpoint.as_deref(),
                    self.pod_mtu(node_ip).await,
                    registries,
                    rudder_agent::logs::LogLimits {
                        max_size: self.container_log_max_size,
                        max_files: usize::from(self.container_log_max_files),
                    },
                )
                .await
                .context("start the cri runtime")?;
                Ok((Arc::new(rt), Some(child).flatten()))
            }
        }
    }

    /// The MTU of pods' interfaces: the overlay's when pods' traffic may cross it, else the
    /// bridge's default.
    async fn pod_mtu(&self, node_ip: std::net::IpAddr) -> Option<u32> {
        let (PodNetwork::Vxlan, std::net::IpAddr::V4(ip)) = (self.pod_network, node_ip) else {
            return None;
        };
        match rudder_net::pods::overlay_mtu(ip).await {
            Ok(mtu) => Some(mtu),
            Err(e) => {
                tracing::warn!(error = %e, "pods keep the default MTU");
                None
            }
        }
    }

    /// Runs one node: its server on `--kubelet-port` (with the serving certificate of
    /// `certified`, clients checked against `ca_pem`), the renewal of its certificates, then
    /// the agent's loops, until the task is aborted.
    async fn run(
        &self,
        client: kube::Client,
        mut cfg: rudder_agent::node::NodeConfig,
        runtime: Arc<dyn rudder_agent::runtime::Runtime>,
        ca_pem: &str,
        certified: Certified,
    ) -> Result<tokio::task::JoinHandle<()>> {
        let port = self.kubelet_port;
        // Every address, IPv6 and IPv4 alike where the machine has IPv6.
        let listener = match tokio::net::TcpListener::bind((std::net::Ipv6Addr::UNSPECIFIED, port))
            .await
        {
            Ok(l) => l,
            Err(_) => tokio::net::TcpListener::bind((std::net::Ipv4Addr::UNSPECIFIED, port))
                .await
                .with_context(|| format!("listen on the node's port {port} (--kubelet-port)"))?,
        };
        cfg.kubelet_port = listener.local_addr()?.port();
        cfg.system.container_runtime_version = runtime.version();
        let tls = rudder_agent::serve::tls_config(ca_pem, certified.identity.serving.clone())?;
        tracing::info!(port = cfg.kubelet_port, "node server listening");
        let server = tokio::spawn(rudder_agent::serve::serve(listener, tls, runtime.clone()));
        let renewing = tokio::spawn(async move {
            let Certified {
                identity,
                issue,
                renewed,
            } = certified;
            identity.keep_renewed(issue, renewed).await
        });
        // One watch of the Services and EndpointSlices feeds the DNS and the proxy.
        let (services_tx, services) = tokio::sync::watch::channel(Default::default());
        let watch = tokio::spawn(rudder_net::watch_services(client.clone(), services_tx));
        let dns = self.cluster_dns(services.clone(), cfg.node_ip).await;
        let proxy = (!runtime.simulated() && !self.disable_proxy).then(|| {
            let proxy = rudder_net::proxy::Config {
                node_name: cfg.name.clone(),
                node_ips: vec![cfg.node_ip],
                bridge: rudder_agent::cri_runtime::BRIDGE.into(),
                local_dns: dns.as_ref().map(|(addr, _)| (self.cluster_dns, *addr)),
            };
            tokio::spawn(rudder_net::proxy::run(proxy, services))
        });
        let backend = match self.pod_network {
            PodNetwork::Vxlan => Some(rudder_net::pods::Backend::Vxlan),
            PodNetwork::HostGw => Some(rudder_net::pods::Backend::HostGw),
            PodNetwork::None => None,
        };
        let routing = match (backend, cfg.node_ip) {
            (Some(backend), std::net::IpAddr::V4(node_ip)) if !runtime.simulated() => {
                let pods = rudder_net::pods::Config {
                    node_name: cfg.name.clone(),
                    node_ip,
                    backend,
                };
                let client = client.clone();
                Some(tokio::spawn(async move {
                    if let Err(e) = rudder_net::pods::run(client, pods).await {
                        tracing::warn!(error = %e, "no pod network between nodes");
                    }
                }))
            }
            (Some(_), std::net::IpAddr::V6(_)) if !runtime.simulated() => {
                tracing::warn!("no pod network between nodes: it needs an IPv4 --node-ip");
                None
            }
            _ => None,
        };
        Ok(tokio::spawn(async move {
            let _server = rudder_agent::AbortOnDrop(server);
            let _renewing = rudder_agent::AbortOnDrop(renewing);
            let _watch = rudder_agent::AbortOnDrop(watch);
            let _dns = dns.map(|(_, task)| rudder_agent::AbortOnDrop(task));
            let _proxy = proxy.map(rudder_agent::AbortOnDrop);
            let _routing = routing.map(rudder_agent::AbortOnDrop);
            rudder_agent::run_node(client, cfg, runtime).await;
        }))
    }

    /// What `--cleanup` asks for when the node stops: its service rules, routes and
    /// masquerading removed.
    async fn clean_up(&self) {
        if !self.cleanup {
            return;
        }
        match rudder_net::proxy::cleanup().await {
            Ok(()) => tracing::info!("service rules removed (--cleanup)"),
            Err(e) => tracing::warn!(error = %e, "service rules not removed"),
        }
        match rudder_net::pods::cleanup().await {
            Ok(()) => tracing::info!("pod routes and masquerading removed (--cleanup)"),
            Err(e) => tracing::warn!(error = %e, "pod routes and masquerading not removed"),
        }
    }

    /// The cluster DNS on the node's address and `--cluster-dns-port`, answering from the
    /// cluster's Services and EndpointSlices and forwarding the rest to this machine's
    /// resolvers: the address it serves on and its task. A port already taken is a warning:
    /// the node runs its pods without it.
    async fn cluster_dns(
        &self,
        services: tokio::sync::watch::Receiver<Arc<rudder_net::Services>>,
        node_ip: std::net::IpAddr,
    ) -> Option<(std::net::SocketAddr, tokio::task::JoinHandle<()>)> {
        use rudder_net::dns;
        let domain = rudder_agent::volumes::CLUSTER_DOMAIN;
        let empty = dns::Records::build(domain, [], []).ok()?;
        let (tx, rx) = tokio::sync::watch::channel(Arc::new(empty));
        let resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        let upstream = dns::upstreams(&resolv, &[self.cluster_dns]);
        let addr = std::net::SocketAddr::new(node_ip, self.cluster_dns_port);
        let (local, serving) = match dns::serve(addr, rx, upstream.clone()).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(
                    "no cluster DNS on this node: {e} (--cluster-dns-port picks another port)"
                );
                return None;
            }
        };
        tracing::info!(address = %local, upstream = ?upstream, "cluster DNS serving");
        let task = tokio::spawn(async move {
            let _serving = rudder_agent::AbortOnDrop(serving);
            if let Err(e) = dns::follow(domain.into(), services, tx).await {
                tracing::warn!(error = %e, "cluster DNS stopped");
            }
        });
        Some((local, task))
    }

    /// The node's configuration.
    fn config(&self, data_dir: &Path) -> Result<rudder_agent::node::NodeConfig> {
        use rudder_agent::node;
        let name = match &self.node_name {
            Some(n) => n.clone(),
            None => std::fs::read_to_string("/proc/sys/kernel/hostname")
                .context("read the hostname (or give --node-name)")?
                .trim()
                .to_ascii_lowercase(),
        };
        let errs = rudder_api::validation::dns1123_subdomain(&name);
        if !errs.is_empty() {
            bail!("invalid node name {name:?}: {}", errs.join("; "));
        }
        let labels = node::parse_labels(&self.node_labels).map_err(anyhow::Error::msg)?;
        let forbidden = rudder_apiserver::admission::forbidden_node_labels(
            &serde_json::json!({"metadata": {"labels": labels}}),
            None,
        );
        if !forbidden.is_empty() {
            bail!(
                "--node-labels: a node may not set these labels on itself: {} (in the \
                 kubernetes.io and k8s.io namespaces only kubelet.kubernetes.io/…, \
                 node.kubernetes.io/… and the well-known topology, os, arch, instance-type and \
                 hostname labels; others are set with kubectl label node)",
                forbidden.join(", ")
            );
        }
        let taints = node::parse_taints(&self.node_taints).map_err(anyhow::Error::msg)?;
        let (capacity, allocatable) = node::machine_capacity(node::filesystem_bytes(data_dir));
        let capacity =
            node::parse_capacity(&self.node_capacity, &capacity).map_err(anyhow::Error::msg)?;
        // Given figures are what pods may use; the machine's lose the eviction reserve.
        let allocatable =
            node::parse_capacity(&self.node_capacity, &allocatable).map_err(anyhow::Error::msg)?;
        if self.node_lease_duration < Duration::from_secs(1) {
            bail!("--node-lease-duration must be at least 1s");
        }
        if self.sync_frequency < Duration::from_secs(1) {
            bail!("--sync-frequency must be at least 1s");
        }
        // The CRI runtime's version is known once it runs (NodeArgs::runtime).
        let runtime_version = {
            use rudder_agent::runtime::Runtime as _;
            rudder_agent::fake::Fake::new().version()
        };
        Ok(node::NodeConfig {
            name,
            labels,
            taints,
            node_ip: self.node_ip.unwrap_or_else(node::default_node_ip),
            capacity,
            allocatable,
            system: node::system_info(runtime_version),
            lease_duration: self.node_lease_duration,
            status_report_period: Duration::from_secs(300),
            sync_frequency: self.sync_frequency,
            record_events: true,
            kubelet_port: 0,
            pods_dir: PathBuf::new(),
            cluster_dns: Some(self.cluster_dns),
        })
    }
}

/// Puts the control-plane role labels on the server's own node once it is registered.
async fn label_control_plane(client: kube::Client, name: String) {
    use kube::api::{Patch, PatchParams};
    let nodes: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(client);
    let patch = serde_json::json!({"metadata": {"labels": {
        "node-role.kubernetes.io/control-plane": "true",
        "node-role.kubernetes.io/master": "true",
    }}});
    let mut wait = Duration::from_millis(50);
    loop {
        match nodes
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => return,
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => tracing::warn!(error = %e, "the node's role labels not set yet"),
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(5));
    }
}

/// A node's certificates, how they are asked for, and what follows a renewal.
struct Certified {
    identity: Arc<rudder_agent::identity::Identity>,
    issue: rudder_agent::identity::Issue,
    renewed: Box<dyn Fn() + Send>,
}

fn default_data_dir() -> PathBuf {
    if effective_uid() == 0 {
        return PathBuf::from("/var/lib/rudder");
    }
    std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".rudder"))
        .unwrap_or_else(|| PathBuf::from(".rudder"))
}

fn effective_uid() -> u32 {
    // Read from /proc to avoid a libc dependency in the binary.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2))
                .and_then(|u| u.parse().ok())
        })
        .unwrap_or(u32::MAX)
}

impl DatastoreArgs {
    fn data_dir(&self) -> PathBuf {
        self.data_dir.clone().unwrap_or_else(default_data_dir)
    }

    fn store_dir(&self) -> PathBuf {
        self.data_dir().join("server").join("db")
    }

    /// Opens the datastore; the embedded store is also returned as itself, so that it can be
    /// closed cleanly however many handles remain. With `require_existing`, a missing embedded
    /// store is an error ([`rudder_store::StoreError::Missing`]) instead of a new empty one.
    async fn open(
        &self,
        require_existing: bool,
    ) -> Result<(Arc<dyn Store>, Option<Arc<Embedded>>)> {
        match &self.datastore_endpoint {
            Some(ep) => {
                let endpoints = parse_endpoints(ep);
                if endpoints.is_empty() {
                    bail!("--datastore-endpoint is empty");
                }
                let store = EtcdStore::connect(&endpoints)
                    .await
                    .with_context(|| format!("connect to etcd at {ep}"))?;
                Ok((Arc::new(store), None))
            }
            None => {
                let dir = self.store_dir();
                let store = tokio::task::spawn_blocking(move || {
                    let mut opts = EmbeddedOptions::new(&dir);
                    opts.require_existing = require_existing;
                    Embedded::open(opts)
                        .with_context(|| format!("open the embedded store in {}", dir.display()))
                })
                .await??;
                let store = Arc::new(store);
                Ok((store.clone(), Some(store)))
            }
        }
    }
}

fn main() -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    let result = runtime.block_on(run_cli());
    // Everything that must finish (the store's close, containerd's stop) was awaited. Blocking
    // work still running is not waited for: the OpenAPI documents a server builds on a
    // blocking thread as it starts take seconds of CPU on a loaded machine, and a SIGTERM
    // right after "ready" would wait for them.
    runtime.shutdown_background();
    result
}

async fn run_cli() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Version => {
            println!("rudder version v{}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Command::Server(args) => server(*args).await,
        Command::Agent(args) => agent(*args).await,
        Command::Controllers(args) => controllers(args).await,
        Command::Scheduler(args) => scheduler(args).await,
        Command::Images { command } => images(command).await,
        Command::Service(args) => service_urls(args).await,
        Command::Uninstall(args) => {
            let dir = args.data_dir.unwrap_or_else(default_data_dir);
            for line in uninstall::uninstall(&dir, &default_data_dir(), args.keep_data).await? {
                println!("{line}");
            }
            Ok(())
        }
        Command::Store {
            command: StoreCommand::Snapshot { command },
        } => match command {
            SnapshotCommand::Save { file, datastore } => snapshot_save(&file, &datastore).await,
            SnapshotCommand::Restore { file, datastore } => {
                snapshot_restore(&file, &datastore).await
            }
        },
    }
}

async fn server(args: ServerArgs) -> Result<()> {
    let started = std::time::Instant::now();
    // Before anything is announced: a SIGTERM right after "ready" must shut down cleanly.
    let shutdown = shutdown_signal()?;
    let data_dir = args.datastore.data_dir();
    let server_dir = data_dir.join("server");
    // Private: it holds the store (Secrets), the cluster's keys and the node token.
    create_private_dir(&server_dir)?;
    tighten_dir(&server_dir)?;
    let (store, embedded) = open_server_store(&args, &server_dir).await?;
    let revision = store.current_revision().await?;
    tracing::info!(
        backend = store.backend(),
        revision,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "store ready"
    );
    let compaction = (!args.compaction_interval.is_zero()).then(|| {
        compactor::spawn(
            store.clone(),
            CompactionPolicy {
                retention: (!args.compaction_retention.is_zero())
                    .then_some(args.compaction_retention),
                keep_revisions: (args.compaction_keep_revisions > 0)
                    .then_some(args.compaction_keep_revisions),
                interval: args.compaction_interval,
            },
        )
    });
    let mode = rudder_apiserver::pki::parse_mode(&args.write_kubeconfig_mode)?;
    let api = rudder_apiserver::server::start(
        rudder_apiserver::server::Config {
            data_dir: data_dir.clone(),
            bind_address: args.bind_address,
            port: args.https_listen_port,
            tls_sans: args.tls_san.clone(),
            token: args.token.clone(),
            kubeconfig: args.write_kubeconfig.clone(),
            kubeconfig_mode: mode,
            service_cidr: args.service_cidr.clone(),
            cluster_dns: Some(args.node.cluster_dns),
            limits: rudder_apiserver::limits::Limits {
                tls_handshake_timeout: args.tls_handshake_timeout,
                request_header_timeout: args.request_header_timeout,
                idle_connection_timeout: args.idle_connection_timeout,
                request_body_timeout: args.request_body_timeout,
                request_timeout: args.request_timeout,
                max_connections: args.max_connections,
                max_pending_connections: args.max_pending_connections,
                max_pending_connections_per_address: args.max_pending_connections_per_address,
                max_requests_inflight: args.max_requests_inflight,
                max_mutating_requests_inflight: args.max_mutating_requests_inflight,
            },
            admission: rudder_apiserver::admission::Config {
                not_ready_toleration_seconds: args.default_not_ready_toleration_seconds,
                unreachable_toleration_seconds: args.default_unreachable_toleration_seconds,
            },
            // The scheduler's and the controllers' metrics are served on the API server's
            // /metrics (only theirs that run here).
            extra_metrics: [
                (!args.disable_scheduler).then(|| {
                    rudder_apiserver::metrics::Source::new(rudder_scheduler::metrics::render)
                }),
                (!args.disable_controller_manager).then(|| {
                    rudder_apiserver::metrics::Source::new(rudder_controllers::metrics::render)
                }),
            ]
            .into_iter()
            .flatten()
            .collect(),
            node_cert_lifetime: args.cluster_signing_duration,
        },
        store.clone(),
    )
    .await?;
    tracing::info!(
        address = %api.addr,
        kubeconfig = %api.kubeconfig.display(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "api server ready"
    );
    // Until RBAC exists, the controllers act as masters; everything they do goes through the
    // API like any client's request.
    // Loops that stop (and release their Leases) before the API server does.
    let (stop_loops, loops_stopping) = tokio::sync::watch::channel(false);
    let mut loops = Vec::new();
    // One set of caches for the scheduler and the controllers, warm whether or not this server
    // leads them: one copy of every pod, not one per loop (each writes as its own user).
    let caches = rudder_controllers::informers::Informers::new(api.client(
        rudder_apiserver::pki::User {
            name: "system:apiserver".into(),
            groups: vec!["system:masters".into()],
            uid: None,
        },
        "default",
    ));
    caches.start();
    if !args.disable_controller_manager {
        let user = rudder_apiserver::pki::User {
            name: "system:kube-controller-manager".into(),
            groups: vec!["system:masters".into()],
            uid: None,
        };
        let client = api.client(user, "default");
        let mut cfg = args.controllers.config(api.ca_pem().to_string());
        // In the server's process, the node lifecycle controller knows when the server itself
        // fell behind the nodes' heartbeats.
        let trouble = api.heartbeat_trouble();
        cfg.node_lifecycle.server_trouble = Some(rudder_controllers::nodelifecycle::ServerTrouble(
            Arc::new(move || trouble.last()),
        ));
        let start = controller_loops(caches.with_client(client.clone()), cfg)?;
        loops.push(args.leader.spawn(
            client,
            "kube-controller-manager",
            start,
            loops_stopping.clone(),
        )?);
    }
    // The scheduler has its own client and identity, as it would running standalone, and its
    // own Lease.
    if !args.disable_scheduler {
        let user = rudder_apiserver::pki::User {
            name: "system:kube-scheduler".into(),
            groups: vec!["system:masters".into()],
            uid: None,
        };
        let client = api.client(user, "default");
        let cfg = args.scheduler.config();
        let view = caches.with_client(client.clone());
        loops.push(args.leader.spawn(
            client,
            "kube-scheduler",
            move || rudder_scheduler::start_on(&view, cfg.clone()),
            loops_stopping.clone(),
        )?);
    }
    let agent = if args.disable_agent {
        None
    } else {
        let mut cfg = args.node.config(&data_dir)?;
        // As on k3s, the server gives its node the role labels: NodeRestriction keeps a node
        // from setting them on itself.
        let admin = api.client(
            rudder_apiserver::pki::User {
                name: "system:apiserver".into(),
                groups: vec![rudder_apiserver::authz::MASTERS.into()],
                uid: None,
            },
            "default",
        );
        let labeler = tokio::spawn(label_control_plane(admin, cfg.name.clone()));
        let client = api.client(
            rudder_apiserver::pki::User {
                name: format!("system:node:{}", cfg.name),
                groups: vec![rudder_apiserver::authz::NODES.into()],
                uid: None,
            },
            "default",
        );
        let agent_dir = data_dir.join("agent");
        create_private_dir(&agent_dir)?;
        cfg.pods_dir = agent_dir.join("pods");
        // The server's node joins as any other does, in process: so its name is bound to this
        // machine, and its server has a certificate from the cluster CA.
        let joiner = api.joiner();
        let issue: rudder_agent::identity::Issue = Arc::new(move |req| {
            let joiner = joiner.clone();
            Box::pin(async move {
                joiner
                    .join(req)
                    .await
                    .map_err(|e| anyhow::anyhow!("{}", e.message))
            })
        });
        let identity = rudder_agent::identity::Identity::obtain(
            &agent_dir,
            &cfg.name,
            vec![cfg.node_ip],
            api.ca_pem(),
            &issue,
        )
        .await
        .context("the node's certificates")?;
        let certified = Certified {
            identity: Arc::new(identity),
            issue,
            renewed: Box::new(|| {}),
        };
        let (runtime, child) = args.node.runtime(&agent_dir, cfg.node_ip).await?;
        Some((
            args.node
                .run(client, cfg, runtime, api.ca_pem(), certified)
                .await?,
            child,
            labeler,
        ))
    };
    shutdown.await;
    if let Some((a, child, labeler)) = agent {
        labeler.abort();
        a.abort();
        if let Some(mut c) = child {
            c.stop(Duration::from_secs(10)).await;
        }
        args.node.clean_up().await;
    }
    let _ = stop_loops.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        for l in loops {
            let _ = l.await;
        }
    })
    .await;
    api.stop();
    tracing::info!("shutting down");
    if let Some(c) = compaction {
        c.abort();
    }
    drop(store);
    if let Some(e) = embedded {
        // However many handles the stopped components still hold: every write is durable now,
        // and the store records a clean shutdown.
        tokio::task::spawn_blocking(move || e.close()).await?;
    }
    Ok(())
}

async fn agent(mut args: AgentArgs) -> Result<()> {
    use rudder_agent::connect;
    let shutdown = shutdown_signal()?;
    let data_dir = args.data_dir.clone().unwrap_or_else(default_data_dir);
    let agent_dir = data_dir.join("agent");
    create_private_dir(&agent_dir)?;
    if args.fake_nodes > 0 {
        if matches!(args.node.runtime, Some(RuntimeKind::Cri)) {
            bail!("--fake-nodes needs the fake runtime (--runtime fake)");
        }
        args.node.runtime = Some(RuntimeKind::Fake);
    }
    if args.fake_nodes == 0 {
        purge_freed_memory_at_once();
    }
    let token = connect::Token::parse(&args.token).context("--token")?;
    let ca = connect::fetch_ca(&args.server, &token).await?;
    let mut template = args.node.config(&agent_dir)?;
    template.pods_dir = agent_dir.join("pods");
    let password = rudder_agent::identity::node_password(&agent_dir)?;
    let mut clients = std::collections::HashMap::new();
    let mut certified = None;
    if args.fake_nodes == 0 {
        // The node's own certificates, asked for with the token.
        let issue: rudder_agent::identity::Issue = {
            let (server, ca, token) = (args.server.clone(), ca.clone(), token.clone());
            Arc::new(move |req| {
                let (server, ca, token) = (server.clone(), ca.clone(), token.clone());
                Box::pin(async move { connect::join(&server, &ca, &token, &req).await })
            })
        };
        let identity = rudder_agent::identity::Identity::obtain(
            &agent_dir,
            &template.name,
            vec![template.node_ip],
            &ca,
            &issue,
        )
        .await?;
        let identity = Arc::new(identity);
        let transport = connect::Transport::new(&args.server, &ca, Some(identity.client.clone()))?;
        clients.insert(template.name.clone(), transport.client(0, None)?);
        certified = Some(Certified {
            identity,
            issue,
            renewed: Box::new(move || transport.reconnect()),
        });
    } else {
        // Simulated nodes: each name bound to this machine's password, which they then
        // authenticate with, over shared HTTP/2 connections.
        use futures::{StreamExt as _, TryStreamExt as _};
        let names: Vec<String> = (0..args.fake_nodes)
            .map(|i| format!("{}-{i}", template.name))
            .collect();
        futures::stream::iter(&names)
            .map(|name| {
                let req = rudder_api::join::JoinRequest {
                    node_name: name.clone(),
                    node_password: password.clone(),
                    ..Default::default()
                };
                let (server, ca, token) = (&args.server, &ca, &token);
                async move { connect::join(server, ca, token, &req).await }
            })
            .buffer_unordered(32)
            .try_collect::<Vec<_>>()
            .await?;
        let transport = connect::Transport::new(&args.server, &ca, None)?;
        for (i, name) in names.into_iter().enumerate() {
            let client = transport.client(i, Some((&name, &password)))?;
            clients.insert(name, client);
        }
    }
    let first = clients.values().next().context("no node to run")?.clone();
    first
        .list_core_api_versions()
        .await
        .with_context(|| format!("reach the server at {}", args.server))?;
    tracing::info!(server = %args.server, nodes = clients.len(), "agent ready");
    let (runtime, child) = args.node.runtime(&agent_dir, template.node_ip).await?;
    let run: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> =
        if args.fake_nodes > 0 {
            Box::pin(rudder_agent::run_fake_nodes(
                template,
                args.fake_nodes,
                move |name| clients.get(name).cloned().unwrap_or_else(|| first.clone()),
            ))
        } else {
            let certified = certified.context("the node's certificates")?;
            let mut node = rudder_agent::AbortOnDrop(
                args.node
                    .run(first, template, runtime, &ca, certified)
                    .await?,
            );
            Box::pin(async move {
                let _ = (&mut node.0).await;
            })
        };
    tokio::select! {
        _ = run => {}
        _ = shutdown => tracing::info!("shutting down"),
    }
    if let Some(mut c) = child {
        c.stop(Duration::from_secs(10)).await;
    }
    args.node.clean_up().await;
    Ok(())
}

/// `rudder service NAME`: one URL per line.
async fn service_urls(args: ServiceArgs) -> Result<()> {
    use k8s_openapi::api::core::v1::{Node, Service};
    let usual = std::env::var_os("KUBECONFIG").is_some()
        || std::env::var_os("HOME").is_some_and(|h| Path::new(&h).join(".kube/config").exists());
    let fallback = default_data_dir().join("kubeconfig.yaml");
    let path = match args.kubeconfig {
        Some(p) => Some(p),
        None if !usual && fallback.exists() => Some(fallback),
        None => None,
    };
    let (client, _ca) = kubeconfig_client(path.as_deref()).await?;
    let services: kube::Api<Service> = kube::Api::namespaced(client.clone(), &args.namespace);
    let svc = match services.get_opt(&args.name).await {
        Ok(Some(s)) => s,
        Ok(None) => bail!(
            "service {} not found in namespace {}",
            args.name,
            args.namespace
        ),
        Err(e) => return Err(anyhow::Error::new(e).context("read the service")),
    };
    let nodes = kube::Api::<Node>::all(client)
        .list(&Default::default())
        .await
        .context("list the nodes")?
        .items;
    for url in service::urls(&svc, &nodes).map_err(anyhow::Error::msg)? {
        println!("{url}");
    }
    Ok(())
}

/// Creates a data directory (and its parents) that only its owner may open.
fn create_private_dir(dir: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("create data dir {}", dir.display()))
}

/// Takes group and other access away from a directory of the server's.
fn tighten_dir(dir: &Path) -> Result<()> {
    let mode = std::fs::metadata(dir)
        .with_context(|| format!("stat {}", dir.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        tracing::warn!(dir = %dir.display(), mode = format!("{:o}", mode & 0o777), "directory was open to other users; setting mode 700");
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("set the mode of {}", dir.display()))?;
    }
    Ok(())
}

/// Opens the server's store. When the server's other state exists (certificates, node token),
/// the embedded store must exist too: starting empty would silently lose the cluster, so that
/// takes `--cluster-reset`.
async fn open_server_store(
    args: &ServerArgs,
    server_dir: &Path,
) -> Result<(Arc<dyn Store>, Option<Arc<Embedded>>)> {
    let state: Vec<PathBuf> = ["tls", "node-token"]
        .iter()
        .map(|n| server_dir.join(n))
        .filter(|p| p.exists())
        .collect();
    let require = args.datastore.datastore_endpoint.is_none() && !state.is_empty();
    match args.datastore.open(require && !args.cluster_reset).await {
        Err(e) => {
            let missing = e
                .downcast_ref::<rudder_store::StoreError>()
                .is_some_and(|e| matches!(e, rudder_store::StoreError::Missing { .. }));
            if !missing {
                return Err(e);
            }
            let also = if state.is_empty() {
                String::new()
            } else {
                format!(
                    ", although this server's other state is there ({})",
                    state
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            Err(e.context(format!(
                "refusing to start: the store in {} is missing{also}. Starting with an empty \
                 store would lose every object of this cluster. Restore the store's files (or a \
                 snapshot with `rudder store snapshot restore`), or start with --cluster-reset \
                 to start deliberately with an empty store (if files of the old store remain in \
                 that directory, move them aside first)",
                args.datastore.store_dir().display()
            )))
        }
        Ok(opened) => {
            if require && args.cluster_reset {
                tracing::warn!(
                    "--cluster-reset: the store was allowed to start empty although this server's \
                     other state exists"
                );
            }
            Ok(opened)
        }
    }
}

/// Installs the SIGTERM/SIGINT handlers now; the returned future completes on either signal.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("install SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("install SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

async fn snapshot_save(file: &Path, datastore: &DatastoreArgs) -> Result<()> {
    if datastore.datastore_endpoint.is_none() && !datastore.store_dir().exists() {
        bail!(
            "no store in {} (is --data-dir right?)",
            datastore.store_dir().display()
        );
    }
    let (store, _) = datastore.open(true).await?;
    let info = snapshot::save(store.as_ref(), file)
        .await
        .with_context(|| format!("save snapshot to {}", file.display()))?;
    println!(
        "Snapshot saved to {}: {} keys ({} bytes of values) at revision {}",
        file.display(),
        info.keys,
        info.value_bytes,
        info.revision
    );
    Ok(())
}

async fn snapshot_restore(file: &Path, datastore: &DatastoreArgs) -> Result<()> {
    if datastore.datastore_endpoint.is_some() {
        let (store, _) = datastore.open(false).await?;
        let info = snapshot::restore_into(store.as_ref(), file)
            .await
            .with_context(|| format!("restore {} into etcd", file.display()))?;
        println!(
            "Restored {} keys from {} into etcd (revisions assigned by etcd)",
            info.keys,
            file.display()
        );
        return Ok(());
    }
    let dir = datastore.store_dir();
    let file2 = file.to_path_buf();
    let dir2 = dir.clone();
    let (info, moved) = tokio::task::spawn_blocking(move || {
        snapshot::restore_embedded(&file2, &dir2)
            .with_context(|| format!("restore {} into {}", file2.display(), dir2.display()))
    })
    .await??;
    println!(
        "Restored {} keys at revision {} from {} into {}",
        info.keys,
        info.revision,
        file.display(),
        dir.display()
    );
    if let Some(m) = moved {
        println!("The previous store was moved to {}", m.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allocator_options_are_the_ones_meant() {
        // SAFETY: reading an option has no precondition.
        let get = |option| unsafe { libmimalloc_sys::mi_option_get(option) };
        // Set by the constructor before mimalloc started.
        assert_eq!(get(ARENA_EAGER_COMMIT), 0);
        // mimalloc's default for the purge delay, unless the environment sets it.
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            assert_eq!(get(PURGE_DELAY), 1000);
        }
        purge_freed_memory_at_once();
        assert_eq!(get(PURGE_DELAY), 0);
    }
}
