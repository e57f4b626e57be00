//! The node agent (Rudder's kubelet).
//!
//! Owns: registering the Node and keeping its status, the heartbeat Lease, the pod workers that
//! run a node's pods through a [`runtime::Runtime`] and report their status, pod addresses from
//! the node's podCIDR, and joining a server from outside (`rudder agent --server --token`).
//! `--fake-nodes N` runs N simulated nodes in one process, each with its own identity
//! (`system:node:NAME`), runtime state and watch.
//!
//! Must not touch: the store (it is a client of the API like any kubelet, held to what the Node
//! authorizer allows), other nodes' objects, anything of the server's.

pub mod backoff;
pub mod connect;
pub mod containerd;
pub mod cri;
pub mod cri_runtime;
pub mod env;
pub mod fake;
pub mod identity;
pub mod image;
pub mod ipam;
pub mod logs;
pub mod node;
pub mod pods;
pub mod probes;
pub mod registries;
pub mod runtime;
pub mod security;
pub mod serve;
pub mod spdy;
pub mod stats;
pub mod streaming;
pub mod volumes;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod};
use kube::api::Api;
use kube::runtime::WatchStreamExt;

use crate::ipam::PodIps;
use crate::node::{NodeConfig, Readiness};
use crate::runtime::Runtime;

/// Runs one node until the task is dropped: registers it (retrying until the API answers),
/// then keeps its Lease and status fresh and runs its pods.
pub async fn run_node(client: kube::Client, cfg: NodeConfig, runtime: Arc<dyn Runtime>) {
    let nodes: Api<Node> = Api::all(client.clone());
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let mut backoff = Duration::from_millis(200);
    let registered = loop {
        match node::register(&nodes, &cfg).await {
            Ok(n) => break n,
            Err(e) => {
                retrying(&cfg.name, "registering the node", busy(&e), &e);
                // Spread, so nodes turned away together do not come back together.
                tokio::time::sleep(backoff.mul_f64(0.5 + spread(&cfg.name))).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    };
    tracing::info!(node = %cfg.name, "node registered");
    let (network_tx, network_rx) = tokio::sync::watch::channel(false);
    // Until when the node's Lease holds (the last renewal that landed, plus its duration).
    let (held_tx, held_rx) =
        tokio::sync::watch::channel(tokio::time::Instant::now() + cfg.lease_duration);
    let (fenced_tx, fenced_rx) = tokio::sync::watch::channel(false);
    let _fence = (!runtime.simulated())
        .then(|| AbortOnDrop(tokio::spawn(fence(cfg.name.clone(), held_rx, fenced_tx))));
    let shared = Arc::new(pods::Shared {
        pods: Api::<Pod>::all(client.clone()),
        runtime: runtime.clone(),
        node_name: cfg.name.clone(),
        node_ip: cfg.node_ip,
        ips: Mutex::new(None),
        network_ready: network_rx,
        events: cfg.record_events.then(|| {
            rudder_controllers::events::Events::for_instance(client.clone(), "kubelet", &cfg.name)
        }),
        allocatable: cfg.allocatable.clone(),
        pods_dir: (!runtime.simulated()).then(|| cfg.pods_dir.clone()),
        cluster_dns: cfg.cluster_dns,
        volume_resync: cfg.sync_frequency,
        fenced: fenced_rx,
    });
    let workers = tokio::spawn(pods::run(shared.clone()));
    let _stop_workers = AbortOnDrop(workers);
    let _rotate_logs = (!runtime.simulated()).then(|| {
        let runtime = runtime.clone();
        AbortOnDrop(tokio::spawn(async move {
            loop {
                tokio::time::sleep(logs::ROTATION_PERIOD).await;
                if let Err(e) = runtime.rotate_logs().await {
                    tracing::warn!(error = %e, "rotating container logs");
                }
            }
        }))
    });

    let mut own = std::pin::pin!(
        kube::runtime::watcher::watch_object(nodes.clone(), &cfg.name).default_backoff()
    );
    let mut conditions: Vec<NodeCondition> = registered
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let mut readiness = Readiness::not_ready("network not ready: the node has no podCIDR yet");
    let mut reported: Option<(Readiness, Instant)> = None;
    // The heartbeat has a task of its own, as the kubelet's node lease controller is apart from
    // its status updater: a status report waiting in a busy server's line must not hold back a
    // renewal, or a merely slow node is taken for lost.
    let (owner_tx, owner_rx) = tokio::sync::watch::channel(registered.metadata.uid.clone());
    let _heartbeat = AbortOnDrop(tokio::spawn(heartbeat(
        leases,
        cfg.clone(),
        owner_rx,
        held_tx,
    )));
    let mut current = registered;
    let phase = spread(&cfg.name);
    let check_every = Duration::from_secs(10);
    let mut check = tokio::time::interval_at(
        tokio::time::Instant::now() + check_every.mul_f64(phase),
        check_every,
    );
    loop {
        tokio::select! {
            _ = check.tick() => {}
            seen = own.next() => match seen {
                Some(Ok(Some(n))) => current = n,
                Some(Ok(None)) => {
                    // Deleted (e.g. `kubectl delete node`): register again, as the kubelet does.
                    if let Ok(n) = node::register(&nodes, &cfg).await {
                        current = n;
                        reported = None;
                    }
                }
                // The stream waits before it tries again.
                Some(Err(e)) => retrying(&cfg.name, "watching the node", watch_busy(&e), &e),
                None => return,
            },
        }
        owner_tx.send_if_modified(|uid| {
            let changed = *uid != current.metadata.uid;
            uid.clone_from(&current.metadata.uid);
            changed
        });
        let cidr = current.spec.as_ref().and_then(|s| s.pod_cidr.clone());
        if let Some(cidr) = cidr {
            if lock(&shared.ips).is_none() {
                let prepared = match PodIps::new(&cidr) {
                    Ok(ips) => runtime
                        .configure_pod_network(&cidr)
                        .await
                        .map(|()| ips)
                        .map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                match prepared {
                    Ok(mut ips) => {
                        // Addresses pods already have (containers that outlived a restart).
                        for sb in runtime.list_sandboxes(None).await.unwrap_or_default() {
                            if let Some(ip) = sb.ip {
                                ips.reserve(ip);
                            }
                        }
                        *lock(&shared.ips) = Some(ips);
                        let _ = network_tx.send(true);
                        readiness = Readiness::ready();
                    }
                    Err(e) => {
                        readiness = Readiness::not_ready(format!("network not ready: {e}"));
                    }
                }
            }
        }
        let due = match &reported {
            None => true,
            Some((r, at)) => {
                *r != readiness
                    || at.elapsed() >= cfg.status_report_period
                    || !shows(&current, &readiness)
            }
        };
        if due {
            let status = node::status(&cfg, &readiness, &conditions);
            match node::report(&nodes, &cfg, &status).await {
                Ok(n) => {
                    conditions = status.conditions.unwrap_or_default();
                    current = n;
                    reported = Some((readiness.clone(), Instant::now()));
                }
                Err(e) => retrying(&cfg.name, "reporting node status", busy(&e), &e),
            }
        }
    }
}

/// Renews the node's Lease every quarter of its duration until dropped; `owner` is the uid of
/// the Node the Lease belongs to (a Lease created anew is owned by it).
async fn heartbeat(
    leases: Api<Lease>,
    cfg: NodeConfig,
    owner: tokio::sync::watch::Receiver<Option<String>>,
    held: tokio::sync::watch::Sender<tokio::time::Instant>,
) {
    let mut lease: Option<Lease> = None;
    let mut pace = node::LeasePace::new(cfg.lease_duration);
    // Nodes started together (`--fake-nodes`, a restarted rack) would otherwise renew in the
    // same instant every period: a burst of one request per node. Each node keeps its own
    // phase within the period instead, so the server sees an even rate.
    let mut next_renewal = tokio::time::Instant::now() + pace.period().mul_f64(spread(&cfg.name));
    loop {
        tokio::time::sleep_until(next_renewal).await;
        let started = tokio::time::Instant::now();
        let uid = owner.borrow().clone();
        let renewed = node::renew_lease(
            &leases,
            uid.as_deref(),
            &cfg,
            lease.clone(),
            pace.duration(),
        )
        .await;
        let mut failed = false;
        match renewed {
            Ok(l) => {
                lease = Some(l);
                // The renewal time written is no earlier than when the request went out.
                held.send_replace(started + pace.duration());
            }
            // Someone else wrote it (or removed it): read it again.
            Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => lease = None,
            // Otherwise the write did not land, and the Lease in hand is the latest.
            Err(e) => {
                failed = true;
                // Refused or not, a missed heartbeat is news.
                retrying(&cfg.name, "renewing the node lease", false, &e);
            }
        }
        if pace.renewed(started.elapsed(), failed) {
            tracing::debug!(node = %cfg.name, lease = ?pace.duration(), "lease duration paced");
        }
        next_renewal = started + pace.period();
    }
}

/// Fencing: once the node's Lease has run out without a renewal landing (the server
/// unreachable, or refusing), the control plane may take the node for lost and start its pods
/// elsewhere; the node's own containers must not run beside those, so `fenced` turns true and
/// the pod workers stop them, until a renewal lands again.
async fn fence(
    node: String,
    mut held: tokio::sync::watch::Receiver<tokio::time::Instant>,
    fenced: tokio::sync::watch::Sender<bool>,
) {
    loop {
        let until = *held.borrow_and_update();
        if until > tokio::time::Instant::now() {
            if *fenced.borrow() {
                tracing::warn!(node, "the node lease is renewed again: pods run again");
                fenced.send_replace(false);
            }
            tokio::select! {
                _ = tokio::time::sleep_until(until) => {}
                changed = held.changed() => if changed.is_err() { return },
            }
            continue;
        }
        if !*fenced.borrow() {
            tracing::warn!(
                node,
                "the node lease ran out without a renewal: stopping the pods' containers, as \
                 the control plane may run them elsewhere now"
            );
            fenced.send_replace(true);
        }
        if held.changed().await.is_err() {
            return;
        }
    }
}

/// Whether the Node's Ready condition says what the agent reports: when the node lifecycle
/// controller marked it Unknown (heartbeats were late), the agent reports again at once, as the
/// kubelet does when the Node differs from the status it would post.
fn shows(node: &Node, readiness: &Readiness) -> bool {
    let want = if readiness.ready { "True" } else { "False" };
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == want)
}

/// Logs a request that failed and will be made again: a warning, unless the server only asked
/// for patience (429 Too Many Requests: what thousands of nodes starting at once meet, flow
/// control rather than news).
fn retrying(about: &str, what: &str, busy: bool, error: &dyn std::fmt::Display) {
    if busy {
        tracing::debug!(about, %error, "{what}; retrying");
    } else {
        tracing::warn!(about, %error, "{what}; retrying");
    }
}

/// Whether the server turned the request away for now (429).
fn busy(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 429)
}

/// The same for a watch's list or watch request.
fn watch_busy(e: &kube::runtime::watcher::Error) -> bool {
    use kube::runtime::watcher::Error as E;
    match e {
        E::InitialListFailed(e) | E::WatchStartFailed(e) | E::WatchFailed(e) => busy(e),
        E::WatchError(s) => s.code == 429,
        E::NoResourceVersion => false,
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Aborts the task when dropped.
pub struct AbortOnDrop(pub tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs `count` simulated nodes named `NAME-0` … `NAME-(count-1)`, each with its own client
/// from `client_for(node name)` and its own fake runtime, until dropped.
pub async fn run_fake_nodes(
    template: NodeConfig,
    count: usize,
    client_for: impl Fn(&str) -> kube::Client,
) {
    let names = (0..count).map(|i| format!("{}-{i}", template.name));
    let mut tasks = Vec::with_capacity(count);
    for name in names {
        let mut cfg = template.clone();
        cfg.name = name.clone();
        // Thousands of simulated nodes would flood the API with the events of their pods.
        cfg.record_events = false;
        let runtime: Arc<dyn Runtime> = Arc::new(fake::Fake::new());
        cfg.system.container_runtime_version = runtime.version();
        tasks.push(AbortOnDrop(tokio::spawn(run_node(
            client_for(&name),
            cfg,
            runtime,
        ))));
    }
    for t in &mut tasks {
        let _ = (&mut t.0).await;
    }
}

/// A fraction in [0, 1) that stays the same for a name and spreads different names evenly.
fn spread(name: &str) -> f64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    name.hash(&mut h);
    (h.finish() % 1_000_000) as f64 / 1_000_000.0
}
