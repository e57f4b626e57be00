//! `rudder-bench failover`: how long a lost node's Deployment pods take to run again elsewhere,
//! and whether a merely slow node is ever declared lost.
//!
//! A server (`--disable-agent`) and two `rudder agent --fake-nodes N` processes, `a` and `b`;
//! a Deployment of R replicas spread over both. Each round kills (SIGKILL) the agent process
//! that holds the most replicas and times, from the kill: its first node going `Unknown`, its
//! first pod marked for deletion, and all R replicas Ready on the other process's nodes. The
//! killed agent then starts again for the next round. The peer is Kubernetes with its defaults,
//! by arithmetic (40 s node-monitor-grace-period + 300 s unreachable toleration): there is no
//! kube-controller-manager on this machine to run.
//!
//! The false-alarm phase loads every core with busy threads for a while and counts nodes of the
//! live agents that stop being Ready: a slow node must not be taken for a lost one.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams, PostParams};
use rudder_testkit::RudderServer;

use crate::cluster::{client_of, node_of, node_ready, spawn_agent, wait_for};

/// The sizes of one run.
#[derive(Clone, Debug)]
pub struct Options {
    /// Fake nodes per agent process.
    pub nodes: usize,
    pub replicas: i32,
    pub rounds: usize,
    /// How long every core is kept busy in the false-alarm phase.
    pub load: Duration,
    pub rudder: PathBuf,
}

/// Kubernetes' defaults: a node is Unknown after 40 s of silence, its pods tolerate that for
/// 300 s before they are evicted.
const K8S_GRACE: f64 = 40.0;
const K8S_TOLERATION: f64 = 300.0;

const POLL: Duration = Duration::from_millis(50);
const PATIENCE: Duration = Duration::from_secs(180);

struct Agent {
    name: &'static str,
    child: Option<Child>,
}

impl Agent {
    fn start(bin: &Path, server: &RudderServer, name: &'static str, nodes: usize) -> Result<Agent> {
        let child = spawn_agent(bin, server, name, nodes, &[], Stdio::null())?;
        Ok(Agent {
            name,
            child: Some(child),
        })
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn owns(&self, node: &str) -> bool {
        node.strip_prefix(self.name)
            .is_some_and(|rest| rest.starts_with('-'))
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
    }
}

fn pod_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

async fn wait_until<F, Fut>(what: &str, f: F) -> Result<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    wait_for(what, PATIENCE, POLL, f).await
}

async fn ready_nodes(nodes: &Api<Node>) -> Result<Vec<String>> {
    Ok(nodes
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(node_ready)
        .filter(|n| {
            n.spec
                .as_ref()
                .and_then(|s| s.taints.as_ref())
                .is_none_or(|t| t.is_empty())
        })
        .filter_map(|n| n.metadata.name)
        .collect())
}

fn deployment(replicas: i32) -> Result<Deployment> {
    Ok(serde_json::from_value(serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "web:1",
                    "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}
            }
        }
    }))?)
}

/// What one round measured, in seconds from the kill.
struct Round {
    unknown: f64,
    evicted: f64,
    recovered: f64,
}

pub async fn run(opts: &Options) -> Result<()> {
    let bin = &opts.rudder;
    let server = RudderServer::start(bin, &["--disable-agent"])?;
    let client = client_of(&server).await?;
    let nodes: Api<Node> = Api::all(client.clone());
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");

    let mut agents = [
        Agent::start(bin, &server, "a", opts.nodes)?,
        Agent::start(bin, &server, "b", opts.nodes)?,
    ];
    let all = 2 * opts.nodes;
    wait_until("every node Ready", || async {
        Ok(ready_nodes(&nodes).await?.len() == all)
    })
    .await?;
    deployments
        .create(&PostParams::default(), &deployment(opts.replicas)?)
        .await?;
    let want = opts.replicas as usize;
    wait_until("every replica Ready", || async {
        let list = pods.list(&ListParams::default().labels("app=web")).await?;
        Ok(list.items.iter().filter(|p| pod_ready(p)).count() == want)
    })
    .await?;
    println!(
        "failover: {} fake nodes in 2 agent processes, Deployment of {} replicas Ready",
        all, opts.replicas
    );

    let mut rounds = Vec::new();
    for round in 0..opts.rounds {
        let list = pods.list(&ListParams::default().labels("app=web")).await?;
        let mut held: HashMap<usize, usize> = HashMap::new();
        for p in &list.items {
            for (i, a) in agents.iter().enumerate() {
                if a.owns(node_of(p)) {
                    *held.entry(i).or_default() += 1;
                }
            }
        }
        let victim = (0..agents.len())
            .max_by_key(|i| held.get(i).copied().unwrap_or(0))
            .unwrap_or(0);
        let lost = held.get(&victim).copied().unwrap_or(0);
        let (dead, survivor) = (agents[victim].name, agents[1 - victim].name);
        agents[victim].kill();
        let killed = Instant::now();
        let mut unknown = None;
        let mut evicted = None;
        let owns = |n: &str, who: &str| {
            n.strip_prefix(who)
                .is_some_and(|rest| rest.starts_with('-'))
        };
        let recovered = loop {
            if unknown.is_none() {
                let down = nodes
                    .list(&ListParams::default())
                    .await?
                    .items
                    .iter()
                    .any(|n| {
                        owns(n.metadata.name.as_deref().unwrap_or(""), dead) && !node_ready(n)
                    });
                if down {
                    unknown = Some(killed.elapsed());
                }
            }
            let list = pods.list(&ListParams::default().labels("app=web")).await?;
            if evicted.is_none()
                && list
                    .items
                    .iter()
                    .any(|p| owns(node_of(p), dead) && p.metadata.deletion_timestamp.is_some())
            {
                evicted = Some(killed.elapsed());
            }
            let running = list
                .items
                .iter()
                .filter(|p| {
                    owns(node_of(p), survivor)
                        && pod_ready(p)
                        && p.metadata.deletion_timestamp.is_none()
                })
                .count();
            if running >= want {
                break killed.elapsed();
            }
            if killed.elapsed() > PATIENCE {
                bail!(
                    "replicas not Ready elsewhere after {} s",
                    PATIENCE.as_secs()
                );
            }
            tokio::time::sleep(POLL).await;
        };
        let secs = |d: Option<Duration>| d.map_or(f64::NAN, |d| d.as_secs_f64());
        let r = Round {
            unknown: secs(unknown),
            evicted: secs(evicted),
            recovered: recovered.as_secs_f64(),
        };
        println!(
            "round {}: killed agent {dead} ({lost} replicas): Unknown after {:.1} s, evicted after {:.1} s, all {} Ready on {survivor} after {:.1} s",
            round + 1,
            r.unknown,
            r.evicted,
            want,
            r.recovered
        );
        rounds.push(r);
        // The dead agent comes back (its nodes Ready again) for the next round.
        agents[victim] = Agent::start(bin, &server, dead, opts.nodes)?;
        wait_until("the restarted agent's nodes Ready", || async {
            Ok(ready_nodes(&nodes).await?.len() == all)
        })
        .await?;
    }

    // False alarms: every core busy while the nodes heartbeat.
    let stop = Arc::new(AtomicBool::new(false));
    let hogs: Vec<_> = (0..2 * std::thread::available_parallelism().map_or(2, |n| n.get()))
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut x = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                    std::hint::black_box(x);
                }
            })
        })
        .collect();
    let started = Instant::now();
    let mut alarms = std::collections::BTreeSet::new();
    while started.elapsed() < opts.load {
        for n in nodes.list(&ListParams::default()).await?.items {
            if !node_ready(&n) {
                alarms.insert(n.metadata.name.unwrap_or_default());
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for h in hogs {
        let _ = h.join();
    }
    println!(
        "false alarms: {} of {} nodes not Ready during {} s with every core busy",
        alarms.len(),
        all,
        opts.load.as_secs()
    );

    let median = |f: fn(&Round) -> f64| {
        let mut v: Vec<f64> = rounds.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
    };
    let (u, e, r) = (
        median(|r| r.unknown),
        median(|r| r.evicted),
        median(|r| r.recovered),
    );
    let k8s_unknown = K8S_GRACE;
    let k8s_evicted = K8S_GRACE + K8S_TOLERATION;
    let f = |x: f64| format!("{x:.1} s");
    let ratio = |ours: f64, peer: f64| format!("{:.0}x faster", peer / ours);
    let rows = [
        [
            "failover (median of rounds)",
            "rudder",
            "kubernetes defaults",
            "ratio",
            "notes",
        ],
        [
            "node Unknown after the kill",
            &f(u),
            &f(k8s_unknown),
            &ratio(u, k8s_unknown),
            "grace 5 s vs 40 s",
        ],
        [
            "pods evicted",
            &f(e),
            &f(k8s_evicted),
            &ratio(e, k8s_evicted),
            "toleration 1 s vs 300 s",
        ],
        [
            "all replicas Ready elsewhere",
            &f(r),
            &format!("> {}", f(k8s_evicted)),
            &ratio(r, k8s_evicted),
            "target ≤ 10 s",
        ],
        [
            "false alarms under full CPU load",
            &alarms.len().to_string(),
            "",
            "",
            "nodes not Ready while alive",
        ],
    ];
    crate::print_table(&rows);
    Ok(())
}
