//! `rudder-bench NAME`: see `scripts/bench` and docs/benchmarks.md.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};
use rudder_bench::{api, cluster, crash, failover, net, pods, store};

#[derive(Parser)]
#[command(
    name = "rudder-bench",
    about = "Rudder's benchmarks and crash-safety harnesses"
)]
struct Cli {
    #[command(subcommand)]
    command: Bench,
}

#[derive(Subcommand)]
enum Bench {
    /// Kill a writing process with SIGKILL at random moments and check every acknowledged write
    /// survives (the embedded store).
    StoreCrash {
        #[arg(long, default_value_t = 100)]
        rounds: usize,
        /// Store directory (default: a temporary one).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// The writing child of `store-crash`.
    #[command(hide = true)]
    StoreCrashChild { dir: PathBuf },
    /// The embedded store against a real etcd: sequential put latency, throughput with
    /// concurrent writers, range read, watch delivery latency, RSS (docs/benchmarks.md).
    Store {
        /// A tenth of every size (a smoke run; the docs report the full sizes).
        #[arg(long)]
        quick: bool,
        /// Sequential puts timed one by one.
        #[arg(long)]
        seq_puts: Option<usize>,
        /// Concurrent writers (throughput and load phases).
        #[arg(long)]
        writers: Option<usize>,
        /// Puts in the throughput phase.
        #[arg(long)]
        writes: Option<usize>,
        /// Keys read by the full range read.
        #[arg(long)]
        range_keys: Option<usize>,
        /// Timed range reads (the median is reported).
        #[arg(long)]
        range_reads: Option<usize>,
        /// Puts whose watch delivery is timed.
        #[arg(long)]
        watch_puts: Option<usize>,
        /// Keys written before RSS is read.
        #[arg(long)]
        rss_keys: Option<usize>,
        /// Value size in bytes.
        #[arg(long)]
        value_size: Option<usize>,
    },
    /// `rudder server --disable-agent` over HTTPS against etcd: ConfigMap creates/s vs raw etcd
    /// puts, list of 10,000 pods (JSON and Table), 1,000-watcher fan-out delay, idle RSS, cold
    /// start (docs/benchmarks.md).
    Api {
        /// Far smaller counts (a smoke run of about 20 s; the docs report the full sizes).
        #[arg(long)]
        quick: bool,
        /// Run only these parts (comma-separated), e.g. `--only watch`.
        #[arg(long, value_enum, value_delimiter = ',')]
        only: Vec<api::Phase>,
        /// Concurrent clients for creates (default 32).
        #[arg(long)]
        clients: Option<usize>,
        /// Timed ConfigMap creates per server (and raw etcd puts).
        #[arg(long)]
        creates: Option<usize>,
        /// Rounds the creates are split into, alternating between the servers and raw etcd.
        #[arg(long)]
        rounds: Option<usize>,
        /// Pods created and then listed.
        #[arg(long)]
        pods: Option<usize>,
        /// Timed lists per format.
        #[arg(long)]
        list_runs: Option<usize>,
        /// Concurrent watchers.
        #[arg(long)]
        watchers: Option<usize>,
        /// Watch streams per HTTP/2 connection.
        #[arg(long)]
        streams_per_conn: Option<usize>,
        /// Timed writes seen by the watchers.
        #[arg(long)]
        watch_writes: Option<usize>,
        /// Milliseconds between timed writes.
        #[arg(long)]
        watch_interval_ms: Option<u64>,
        /// Seconds after start at which idle memory is read.
        #[arg(long)]
        idle_secs: Option<u64>,
        /// Cold starts (each: empty data dir, then a restart).
        #[arg(long)]
        start_runs: Option<usize>,
        /// The rudder binary (default: beside rudder-bench, else $CARGO_TARGET_DIR/release/rudder).
        #[arg(long)]
        rudder: Option<PathBuf>,
        /// Parent directory of the data dirs (default /var/tmp: a real disk).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// A node agent process killed: time until its Deployment pods are Ready on the other
    /// nodes, against Kubernetes' defaults; then false alarms with every core busy
    /// (docs/benchmarks.md).
    Failover {
        /// Fake nodes per agent process (two processes).
        #[arg(long, default_value_t = 10)]
        nodes: usize,
        #[arg(long, default_value_t = 30)]
        replicas: i32,
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Seconds every core is kept busy while counting nodes wrongly declared lost.
        #[arg(long, default_value_t = 60)]
        load_secs: u64,
        /// The rudder binary (default: beside rudder-bench, else $CARGO_TARGET_DIR/release/rudder).
        #[arg(long)]
        rudder: Option<PathBuf>,
    },
    /// Scheduler throughput, upstream scheduler_perf's SchedulingBasic shape: N nodes, M pods
    /// created, then a standalone `rudder scheduler`; pods/s from first to last binding.
    Scheduler {
        #[arg(long, default_value_t = 5000)]
        nodes: usize,
        #[arg(long, default_value_t = 10000)]
        pods: usize,
        #[arg(long)]
        rudder: Option<PathBuf>,
    },
    /// A Deployment of R replicas on N fake nodes: seconds from create to every replica Ready
    /// (against kube-controller-manager's default client rate limit).
    Deployment {
        #[arg(long, default_value_t = 100)]
        nodes: usize,
        #[arg(long, default_value_t = 1000)]
        replicas: i32,
        #[arg(long)]
        rudder: Option<PathBuf>,
    },
    /// Real containers on one node (`--runtime cri`, needs root and containerd): pods created
    /// one after another to Running against `ctr run`, the agent's RSS, and Docker Swarm's
    /// everyday operations (a 3-replica Deployment, scale to 10, a rolling update).
    PodStart {
        #[arg(long, default_value_t = 100)]
        pods: usize,
        #[arg(long)]
        rudder: Option<PathBuf>,
    },
    /// The service proxy and cluster DNS on a real node in a network namespace of its own:
    /// HTTP through a cluster IP vs the pod's address, rule sync time with many Services, DNS
    /// queries/s.
    Net {
        /// Services written for the rule sync measurement.
        #[arg(long, default_value_t = 1000)]
        services: usize,
        /// Endpoints of each of them.
        #[arg(long, default_value_t = 10)]
        endpoints: usize,
        /// EndpointSlice changes timed.
        #[arg(long, default_value_t = 20)]
        changes: usize,
        /// Small GETs timed each way.
        #[arg(long, default_value_t = 500)]
        requests: usize,
        #[arg(long)]
        rudder: Option<PathBuf>,
    },
    /// N heartbeating fake nodes and M pods Running: server idle CPU, RSS, `kubectl get pods -A`.
    Scale {
        #[arg(long, default_value_t = 5000)]
        nodes: usize,
        #[arg(long, default_value_t = 150000)]
        pods: usize,
        /// Seconds the idle CPU is sampled over.
        #[arg(long, default_value_t = 30)]
        idle_secs: u64,
        /// The nodes' Lease duration in seconds (renewed every quarter of it; the node
        /// lifecycle controller waits 1.25 times it). Default: Rudder's (4 s, grace 5 s);
        /// upstream's kubelet uses 40.
        #[arg(long)]
        lease_secs: Option<u64>,
        #[arg(long)]
        rudder: Option<PathBuf>,
    },
    /// The child of `store` that measures the embedded store's RSS in its own process.
    #[command(hide = true)]
    StoreRssChild {
        dir: PathBuf,
        #[arg(long, default_value_t = 100_000)]
        keys: usize,
        #[arg(long, default_value_t = 64)]
        writers: usize,
        #[arg(long, default_value_t = 1024)]
        value_size: usize,
        /// Only open (recover) the existing store and report.
        #[arg(long)]
        reopen_only: bool,
    },
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Bench::StoreCrash { rounds, dir } => {
            let (dir, _tmp) = crash::work_dir(dir)?;
            let exe = std::env::current_exe()?;
            let started = std::time::Instant::now();
            let report = crash::run(&exe, &dir, rounds, |round, r| {
                println!(
                    "round {:>3}: {} writes acknowledged so far, revision {}",
                    round + 1,
                    r.acknowledged,
                    r.final_revision
                );
            })?;
            println!(
                "store-crash: {} rounds, {} acknowledged writes all present after SIGKILL \
                 ({} checked at their own revision), final revision {}, {:.1} s",
                report.rounds,
                report.acknowledged,
                report.checked_at_revision,
                report.final_revision,
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Bench::StoreCrashChild { dir } => crash::child(&dir),
        Bench::Store {
            quick,
            seq_puts,
            writers,
            writes,
            range_keys,
            range_reads,
            watch_puts,
            rss_keys,
            value_size,
        } => {
            let mut sizes = if quick {
                store::Sizes::quick()
            } else {
                store::Sizes::full()
            };
            let set = |field: &mut usize, v: Option<usize>| {
                if let Some(v) = v {
                    *field = v.max(1);
                }
            };
            set(&mut sizes.seq_puts, seq_puts);
            set(&mut sizes.writers, writers);
            set(&mut sizes.writes, writes);
            set(&mut sizes.range_keys, range_keys);
            set(&mut sizes.range_reads, range_reads);
            set(&mut sizes.watch_puts, watch_puts);
            set(&mut sizes.rss_keys, rss_keys);
            set(&mut sizes.value_size, value_size);
            sizes.value_size = sizes.value_size.max(8);
            store::run(&std::env::current_exe()?, &sizes)
        }
        Bench::Api {
            quick,
            only,
            clients,
            creates,
            rounds,
            pods,
            list_runs,
            watchers,
            streams_per_conn,
            watch_writes,
            watch_interval_ms,
            idle_secs,
            start_runs,
            rudder,
            dir,
        } => {
            let mut sizes = if quick {
                api::Sizes::quick()
            } else {
                api::Sizes::full()
            };
            let set = |field: &mut usize, v: Option<usize>| {
                if let Some(v) = v {
                    *field = v.max(1);
                }
            };
            set(&mut sizes.clients, clients);
            set(&mut sizes.creates, creates);
            set(&mut sizes.rounds, rounds);
            set(&mut sizes.pods, pods);
            set(&mut sizes.list_runs, list_runs);
            set(&mut sizes.watchers, watchers);
            set(&mut sizes.streams_per_conn, streams_per_conn);
            set(&mut sizes.watch_writes, watch_writes);
            set(&mut sizes.start_runs, start_runs);
            if let Some(v) = watch_interval_ms {
                sizes.watch_interval = std::time::Duration::from_millis(v);
            }
            if let Some(v) = idle_secs {
                sizes.idle = std::time::Duration::from_secs(v);
            }
            let phases = if only.is_empty() {
                api::Phase::all()
            } else {
                only.into_iter().collect()
            };
            api::run(&api::Options {
                sizes,
                phases,
                rudder: rudder.unwrap_or_else(api::default_rudder_bin),
                parent: dir.unwrap_or_else(|| PathBuf::from(store::BENCH_PARENT)),
            })?;
            Ok(())
        }
        Bench::Failover {
            nodes,
            replicas,
            rounds,
            load_secs,
            rudder,
        } => tokio::runtime::Runtime::new()?.block_on(failover::run(&failover::Options {
            nodes: nodes.max(1),
            replicas: replicas.max(1),
            rounds: rounds.max(1),
            load: std::time::Duration::from_secs(load_secs),
            rudder: rudder.unwrap_or_else(api::default_rudder_bin),
        })),
        Bench::Scheduler {
            nodes,
            pods,
            rudder,
        } => tokio::runtime::Runtime::new()?.block_on(cluster::scheduler(
            &cluster::SchedulerOptions {
                nodes: nodes.max(1),
                pods: pods.max(1),
                rudder: rudder.unwrap_or_else(api::default_rudder_bin),
            },
        )),
        Bench::Deployment {
            nodes,
            replicas,
            rudder,
        } => tokio::runtime::Runtime::new()?.block_on(cluster::deployment(
            &cluster::DeploymentOptions {
                nodes: nodes.max(1),
                replicas: replicas.max(1),
                rudder: rudder.unwrap_or_else(api::default_rudder_bin),
            },
        )),
        Bench::PodStart {
            pods: count,
            rudder,
        } => tokio::runtime::Runtime::new()?.block_on(pods::pod_start(&pods::Options {
            rudder: rudder.unwrap_or_else(api::default_rudder_bin),
            pods: count.max(1),
        })),
        Bench::Net {
            services,
            endpoints,
            changes,
            requests,
            rudder,
        } => {
            // Before the runtime: its threads and every process it starts are inside.
            net::enter_netns()?;
            tokio::runtime::Runtime::new()?.block_on(net::net(&net::Options {
                rudder: rudder.unwrap_or_else(api::default_rudder_bin),
                services: services.max(1),
                endpoints: endpoints.max(1),
                changes,
                requests: requests.max(1),
            }))
        }
        Bench::Scale {
            nodes,
            pods,
            idle_secs,
            lease_secs,
            rudder,
        } => tokio::runtime::Runtime::new()?.block_on(cluster::scale(&cluster::ScaleOptions {
            nodes: nodes.max(1),
            pods: pods.max(1),
            idle: std::time::Duration::from_secs(idle_secs.max(1)),
            lease: lease_secs.map(|s| std::time::Duration::from_secs(s.max(1))),
            rudder: rudder.unwrap_or_else(api::default_rudder_bin),
        })),
        Bench::StoreRssChild {
            dir,
            keys,
            writers,
            value_size,
            reopen_only,
        } => store::rss_child(&dir, keys, writers.max(1), value_size, reopen_only),
    }
}
