//! The scheduler (Rudder's kube-scheduler): assigns each pending pod to a node, a client of the
//! API like any other, over the shared watch caches of [`rudder_controllers::informers`].
//!
//! One task owns the scheduler's state (the [`cache::Cache`] of nodes and what their pods
//! request, and the [`queue::Queue`]); it takes pods from the queue one at a time, filters and
//! scores nodes with the plugins of upstream's default profile ([`plugins`]), assumes the pod on
//! the chosen node at once and sends the binding without waiting for it (many bindings are in
//! flight; a failed one un-assumes the pod and queues it again with backoff). A pod that fits
//! nowhere gets a `FailedScheduling` event and `PodScheduled=False`, and waits in the
//! unschedulable pool until a change of the cluster may let it fit.
//!
//! Owns: `spec.nodeName` of pods (through `pods/binding`), their `PodScheduled` condition and
//! the scheduler's events. Must not touch: the store, anything else of pods or nodes.

pub mod cache;
pub mod metrics;
pub mod plugins;
pub mod queue;
pub mod resources;
pub mod selectors;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Binding, Namespace, Node, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::events::EventType;
use kube::runtime::reflector::{ObjectRef, Store};
use rudder_controllers::events::Events;
use rudder_controllers::informers::{Change, Informers};
use serde_json::json;
use tokio::sync::{mpsc, Semaphore};

use crate::cache::{terminal, uid, Cache};
use crate::plugins::{Code, Failure, PodState};
use crate::queue::{ClusterEvent, Queue};

/// How often, at most, the queue's sizes are reported while pods are being scheduled (they are
/// reported whenever the queue goes idle too).
const PENDING_REPORT_EVERY: Duration = Duration::from_millis(100);

/// The scheduler name pods ask for by default (and this scheduler's event source).
pub const DEFAULT_SCHEDULER: &str = "default-scheduler";
/// The field manager of the scheduler's writes, as upstream's.
pub const MANAGER: &str = "kube-scheduler";

/// What the scheduler is configured with.
#[derive(Clone, Debug)]
pub struct Config {
    /// The `spec.schedulerName` this scheduler serves.
    pub scheduler_name: String,
    /// Share of the nodes to find feasible before scoring; None: upstream's adaptive default.
    pub percentage_of_nodes_to_score: Option<u32>,
    /// Bindings sent at once.
    pub max_in_flight_bindings: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            scheduler_name: DEFAULT_SCHEDULER.into(),
            percentage_of_nodes_to_score: None,
            max_in_flight_bindings: 512,
        }
    }
}

/// The running scheduler; dropping it stops it.
pub struct Running {
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Starts the scheduler on `client` with its own shared caches (pods, nodes, namespaces).
pub fn start(client: kube::Client, cfg: Config) -> Running {
    let informers = Informers::new(client);
    let mut tasks = vec![tokio::spawn(run(&informers, cfg))];
    tasks.extend(informers.start());
    Running { tasks }
}

/// The scheduler over `informers` (ask before `informers.start()`).
pub fn run(informers: &Informers, cfg: Config) -> impl std::future::Future<Output = ()> + Send {
    let pods = informers.changes::<Pod>();
    let nodes = informers.changes::<Node>();
    let pod_store = informers.store::<Pod>();
    let node_store = informers.store::<Node>();
    let namespaces = informers.store::<Namespace>();
    let client = informers.client().clone();
    let synced = informers.synced();
    async move {
        let (tx, rx) = mpsc::channel::<Msg>(8192);
        {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut pods = std::pin::pin!(pods);
                while let Some(c) = pods.next().await {
                    if tx.send(Msg::Pod(c)).await.is_err() {
                        return;
                    }
                }
            });
        }
        {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut nodes = std::pin::pin!(nodes);
                while let Some(c) = nodes.next().await {
                    if tx.send(Msg::Node(c)).await.is_err() {
                        return;
                    }
                }
            });
        }
        // Decide nothing on a partial view of the cluster.
        synced.await;
        let recorder = Arc::new(rudder_controllers::events::Events::new(
            client.clone(),
            DEFAULT_SCHEDULER,
        ));
        // The stores are complete now; their changes may still be on the way: start from them.
        let mut seed: Vec<Msg> = node_store
            .state()
            .into_iter()
            .map(|n| Msg::Node(Change::Applied(n)))
            .collect();
        seed.extend(
            pod_store
                .state()
                .into_iter()
                .map(|p| Msg::Pod(Change::Applied(p))),
        );
        let mut s = Scheduler {
            bindings: Arc::new(Semaphore::new(cfg.max_in_flight_bindings.max(1))),
            cfg,
            client,
            recorder,
            namespaces,
            cache: Cache::default(),
            queue: Queue::default(),
            cursor: Cursor::default(),
            tx,
            _pending: metrics::PendingGuard,
            pending_reported: None,
        };
        for m in seed {
            s.handle(m);
        }
        s.run(rx).await
    }
}

enum Msg {
    Pod(Change<Pod>),
    Node(Change<Node>),
    /// A binding's outcome: the pod (as sent) and the error, if any.
    Bound(Arc<Pod>, Option<BindError>),
}

#[derive(Debug)]
enum BindError {
    /// The pod is gone or already bound: nothing to retry.
    Final,
    Retry,
}

struct Scheduler {
    cfg: Config,
    client: kube::Client,
    recorder: Arc<Events>,
    namespaces: Store<Namespace>,
    cache: Cache,
    queue: Queue,
    cursor: Cursor,
    bindings: Arc<Semaphore>,
    tx: mpsc::Sender<Msg>,
    /// Zeroes `scheduler_pending_pods` when the scheduler stops.
    _pending: metrics::PendingGuard,
    pending_reported: Option<Instant>,
}

/// Where the next pod's search starts (round robin) and the state of the tie-breaker.
#[derive(Debug)]
pub struct Cursor {
    pub next_start: usize,
    pub rng: u64,
}

impl Default for Cursor {
    fn default() -> Self {
        Cursor {
            next_start: 0,
            rng: 0x9E37_79B9_7F4A_7C15,
        }
    }
}

/// Why a pod fits nowhere: upstream's message, and whether other pods landing may help.
#[derive(Debug)]
pub struct Unschedulable {
    pub message: String,
    pub needs_pods: bool,
}

/// One scheduling decision: filter from the cursor until enough nodes are feasible, score
/// them, pick the best (ties at random).
pub fn select_node(
    cache: &mut Cache,
    pod: &Arc<Pod>,
    cursor: &mut Cursor,
    percentage: Option<u32>,
    ns_labels: &dyn Fn(&str) -> Option<BTreeMap<String, String>>,
) -> Result<String, Unschedulable> {
    cache.refresh();
    let live = cache.live_nodes();
    if live.is_empty() {
        return Err(Unschedulable {
            message: "no nodes available to schedule pods".into(),
            needs_pods: false,
        });
    }
    let nodes = cache.nodes();
    let st = PodState::with_hint(
        pod.clone(),
        nodes,
        live,
        ns_labels,
        cache.has_affinity_pods(),
    );
    let all = live.len();
    let want = feasible_nodes_to_find(all, percentage);
    let start = cursor.next_start % all;
    let mut feasible: Vec<usize> = Vec::with_capacity(want.min(all));
    let mut failures: Vec<Failure> = Vec::new();
    let mut processed = 0;
    for k in 0..all {
        let i = live[(start + k) % all];
        processed += 1;
        match plugins::filter(&st, &nodes[i]) {
            Ok(()) => {
                feasible.push(i);
                if feasible.len() >= want {
                    break;
                }
            }
            Err(f) => failures.push(f),
        }
    }
    cursor.next_start = (start + processed) % all;
    if feasible.is_empty() {
        return Err(Unschedulable {
            needs_pods: failures
                .iter()
                .any(|f| matches!(f.plugin, "InterPodAffinity" | "PodTopologySpread")),
            message: fit_error(all, &failures, pod),
        });
    }
    let chosen = if feasible.len() == 1 {
        feasible[0]
    } else {
        let scores = score(&st, nodes, &feasible, all, cache);
        let best = scores.iter().copied().max().unwrap_or(0);
        let ties: Vec<usize> = (0..feasible.len()).filter(|j| scores[*j] == best).collect();
        feasible[ties[(random(&mut cursor.rng) % ties.len() as u64) as usize]]
    };
    Ok(nodes[chosen].name.clone())
}

/// xorshift64*: ties between best nodes are broken at random, as upstream does.
fn random(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

/// How many feasible nodes to look for before scoring (upstream's numFeasibleNodesToFind).
pub fn feasible_nodes_to_find(all: usize, percentage: Option<u32>) -> usize {
    const MIN_NODES: usize = 100;
    const MIN_PERCENTAGE: i64 = 5;
    if all < MIN_NODES || percentage.is_some_and(|p| p >= 100) {
        return all;
    }
    let pct = match percentage.filter(|p| *p > 0) {
        Some(p) => i64::from(p),
        None => (50 - all as i64 / 125).max(MIN_PERCENTAGE),
    };
    ((all as i64 * pct / 100) as usize).max(MIN_NODES)
}

impl Scheduler {
    async fn run(&mut self, mut rx: mpsc::Receiver<Msg>) {
        let mut next_flush = Instant::now() + Duration::from_secs(30);
        let mut since_yield = 0u32;
        loop {
            while let Ok(m) = rx.try_recv() {
                self.handle(m);
            }
            let now = Instant::now();
            if now >= next_flush {
                self.queue.flush(now);
                next_flush = now + Duration::from_secs(30);
            }
            if self
                .pending_reported
                .is_none_or(|t| now.duration_since(t) >= PENDING_REPORT_EVERY)
            {
                self.report_pending(now);
            }
            if let Some(pod) = self.queue.pop(now) {
                self.schedule_one(pod);
                since_yield += 1;
                if since_yield >= 32 {
                    since_yield = 0;
                    tokio::task::yield_now().await;
                }
                continue;
            }
            self.report_pending(now);
            let wake = self
                .queue
                .next_backoff()
                .unwrap_or(next_flush)
                .min(next_flush);
            tokio::select! {
                m = rx.recv() => match m {
                    Some(m) => self.handle(m),
                    None => return,
                },
                _ = tokio::time::sleep_until(wake.into()) => {}
            }
        }
    }

    fn report_pending(&mut self, now: Instant) {
        let (active, backoff, unschedulable) = self.queue.counts();
        metrics::global().pending(active, backoff, unschedulable);
        self.pending_reported = Some(now);
    }

    fn responsible(&self, pod: &Pod) -> bool {
        let name = pod
            .spec
            .as_ref()
            .and_then(|s| s.scheduler_name.as_deref())
            .filter(|n| !n.is_empty())
            .unwrap_or(DEFAULT_SCHEDULER);
        name == self.cfg.scheduler_name
    }

    fn handle(&mut self, m: Msg) {
        let now = Instant::now();
        match m {
            Msg::Pod(Change::Applied(pod)) => {
                let id = uid(&pod).to_string();
                if id.is_empty() {
                    return;
                }
                let assigned = pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.node_name.as_deref())
                    .is_some_and(|n| !n.is_empty());
                if assigned || terminal(&pod) {
                    self.queue.remove(&id);
                    let had = self.cache.node_of(&id).map(str::to_string);
                    let freed = self.cache.apply_pod(&pod);
                    if freed || (terminal(&pod) && had.is_some()) {
                        self.queue.move_all(ClusterEvent::PodGone, now);
                    } else if had.is_none() && assigned {
                        self.queue.move_all(ClusterEvent::PodAssigned, now);
                    }
                } else if pod.metadata.deletion_timestamp.is_some() || !self.responsible(&pod) {
                    self.queue.remove(&id);
                } else if !self.cache.is_assumed(&id) {
                    self.queue.add_or_update(&id, pod, now);
                }
            }
            Msg::Pod(Change::Deleted(pod)) => {
                let id = uid(&pod);
                self.queue.remove(id);
                if self.cache.remove_pod(id) {
                    self.queue.move_all(ClusterEvent::PodGone, now);
                }
            }
            Msg::Node(Change::Applied(node)) => {
                let name = node.metadata.name.clone().unwrap_or_default();
                let old = self.cache.node(&name).and_then(|n| n.node.clone());
                self.cache.apply_node(node.clone());
                let helps = match old {
                    None => true,
                    Some(old) => {
                        let (o, n) = (old.spec.as_ref(), node.spec.as_ref());
                        old.metadata.labels != node.metadata.labels
                            || o.and_then(|s| s.taints.as_ref())
                                != n.and_then(|s| s.taints.as_ref())
                            || o.and_then(|s| s.unschedulable) != n.and_then(|s| s.unschedulable)
                            || old.status.as_ref().and_then(|s| s.allocatable.as_ref())
                                != node.status.as_ref().and_then(|s| s.allocatable.as_ref())
                    }
                };
                if helps {
                    self.queue.move_all(ClusterEvent::Node, now);
                }
            }
            Msg::Node(Change::Deleted(node)) => {
                if let Some(name) = node.metadata.name.as_deref() {
                    self.cache.delete_node(name);
                }
            }
            Msg::Bound(pod, err) => {
                let id = uid(&pod).to_string();
                if let Some(e) = err {
                    self.cache.forget_assumed(&id);
                    // The freed room may help others.
                    self.queue.move_all(ClusterEvent::PodGone, now);
                    if matches!(e, BindError::Retry) {
                        self.queue.retry(&id, pod, now);
                    }
                }
            }
        }
    }

    fn schedule_one(&mut self, pod: Arc<Pod>) {
        let now = Instant::now();
        let id = uid(&pod).to_string();
        let (attempts, queued) = self.queue.attempt(&id).unwrap_or((1, now));
        let attempt = metrics::Attempt {
            started: now,
            queued,
            attempts,
        };
        let namespaces = &self.namespaces;
        let ns_labels = |ns: &str| {
            namespaces
                .get(&ObjectRef::new(ns))
                .and_then(|n| n.metadata.labels.clone())
        };
        let decision = select_node(
            &mut self.cache,
            &pod,
            &mut self.cursor,
            self.cfg.percentage_of_nodes_to_score,
            &ns_labels,
        );
        metrics::global().algorithm(now.elapsed());
        match decision {
            Ok(node) => {
                self.cache.assume(pod.clone(), &node);
                self.queue.done(&id);
                self.bind(pod, node, attempt);
            }
            Err(Unschedulable {
                message,
                needs_pods,
            }) => {
                metrics::global().unschedulable(&self.cfg.scheduler_name, &attempt);
                self.queue.unschedulable(&id, needs_pods, now);
                self.report_failure(pod, message);
            }
        }
    }

    fn bind(&self, pod: Arc<Pod>, node: String, attempt: metrics::Attempt) {
        let profile = self.cfg.scheduler_name.clone();
        let client = self.client.clone();
        let tx = self.tx.clone();
        let sem = self.bindings.clone();
        let recorder = self.recorder.clone();
        tokio::spawn(async move {
            let _permit = sem.acquire_owned().await;
            let ns = pod.metadata.namespace.clone().unwrap_or_default();
            let name = pod.metadata.name.clone().unwrap_or_default();
            let binding = Binding {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some(ns.clone()),
                    uid: pod.metadata.uid.clone(),
                    ..Default::default()
                },
                target: ObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Node".into()),
                    name: Some(node.clone()),
                    ..Default::default()
                },
            };
            let api: Api<Pod> = Api::namespaced(client, &ns);
            let res = api
                .create_subresource::<_, serde_json::Value>(
                    "binding",
                    &name,
                    &PostParams::default(),
                    &binding,
                )
                .await;
            let err = match res {
                Ok(_) => None,
                Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {
                    tracing::debug!(pod = %name, node, error = %e, "binding refused");
                    Some(BindError::Final)
                }
                Err(e) => {
                    tracing::debug!(pod = %name, node, error = %e, "binding failed; retrying");
                    Some(BindError::Retry)
                }
            };
            let ok = err.is_none();
            if ok {
                metrics::global().scheduled(&profile, &attempt);
            } else {
                metrics::global().error(&profile, &attempt);
            }
            let _ = tx.send(Msg::Bound(pod.clone(), err)).await;
            drop(_permit);
            if ok {
                recorder
                    .record(
                        &*pod,
                        EventType::Normal,
                        "Scheduled",
                        "Binding",
                        format!("Successfully assigned {ns}/{name} to {node}"),
                    )
                    .await;
            }
        });
    }

    /// A `FailedScheduling` event for each failed attempt, and `PodScheduled=False` with the
    /// message when the pod does not already say so.
    fn report_failure(&self, pod: Arc<Pod>, msg: String) {
        tracing::debug!(pod = ?pod.metadata.name, msg, "unschedulable");
        let client = self.client.clone();
        let recorder = self.recorder.clone();
        let current = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "PodScheduled"))
            .map(|c| {
                (c.status == "False"
                    && c.reason.as_deref() == Some("Unschedulable")
                    && c.message.as_deref() == Some(msg.as_str())) as u8
            })
            .unwrap_or(0);
        tokio::spawn(async move {
            recorder
                .record(
                    &*pod,
                    EventType::Warning,
                    "FailedScheduling",
                    "Scheduling",
                    msg.clone(),
                )
                .await;
            if current == 1 {
                return;
            }
            let ns = pod.metadata.namespace.clone().unwrap_or_default();
            let name = pod.metadata.name.clone().unwrap_or_default();
            let api: Api<Pod> = Api::namespaced(client, &ns);
            let patch = json!({"status": {"conditions": [{
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": msg,
                "lastProbeTime": null,
                "lastTransitionTime": Time(Timestamp::now()),
            }]}});
            let pp = PatchParams {
                field_manager: Some(MANAGER.into()),
                ..Default::default()
            };
            if let Err(e) = api.patch_status(&name, &pp, &Patch::Strategic(patch)).await {
                tracing::debug!(pod = %name, error = %e, "writing PodScheduled=False");
            }
        });
    }
}

/// Scores the feasible nodes with every score plugin of the default profile: normalized, then
/// weighted and summed.
fn score(
    st: &PodState,
    nodes: &[cache::NodeInfo],
    feasible: &[usize],
    all: usize,
    cache: &Cache,
) -> Vec<i64> {
    use plugins::weights::*;
    let n = |j: usize| &nodes[feasible[j]];
    let len = feasible.len();
    let mut total: Vec<i64> = (0..len)
        .map(|j| {
            NODE_RESOURCES_FIT * plugins::least_allocated(st, n(j))
                + BALANCED_ALLOCATION * plugins::balanced_allocation(st, n(j))
                + IMAGE_LOCALITY
                    * plugins::image_locality(st, n(j), &|img| cache.nodes_with_image(img), all)
        })
        .collect();
    let mut add = |scores: Vec<i64>, w: i64| {
        for (t, s) in total.iter_mut().zip(scores) {
            *t += w * s;
        }
    };
    let mut taints: Vec<i64> = (0..len)
        .map(|j| plugins::taint_toleration_score(st, n(j)))
        .collect();
    plugins::default_normalize(&mut taints, true);
    add(taints, TAINT_TOLERATION);
    if !st.preferred_node_terms.is_empty() {
        let mut s: Vec<i64> = (0..len)
            .map(|j| plugins::node_affinity_score(st, n(j)))
            .collect();
        plugins::default_normalize(&mut s, false);
        add(s, NODE_AFFINITY);
    }
    if !st.affinity_scores.is_empty() {
        let mut s: Vec<i64> = (0..len)
            .map(|j| plugins::inter_pod_affinity_score(st, n(j)))
            .collect();
        plugins::min_max_normalize(&mut s);
        add(s, INTER_POD_AFFINITY);
    }
    if !st.soft_spread.is_empty() {
        let mut s: Vec<Option<i64>> = (0..len)
            .map(|j| plugins::pod_topology_spread_score(st, n(j)))
            .collect();
        add(plugins::spread_normalize(&mut s), POD_TOPOLOGY_SPREAD);
    }
    total
}

/// Upstream's FitError message: `0/N nodes are available: <count> <reason>, ….` (reasons
/// counted over nodes and sorted), then what preemption found.
pub fn fit_error(all: usize, failures: &[Failure], pod: &Pod) -> String {
    let mut msg = format!("0/{all} nodes are available:");
    let reasons = histogram(failures.iter().flat_map(|f| f.reasons.iter().cloned()));
    if !reasons.is_empty() {
        msg.push_str(&format!(" {}.", reasons.join(", ")));
    }
    msg.push(' ');
    msg.push_str(&preemption_message(all, failures, pod));
    msg
}

fn histogram(reasons: impl Iterator<Item = String>) -> Vec<String> {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for r in reasons {
        *counts.entry(r).or_default() += 1;
    }
    let mut out: Vec<String> = counts
        .into_iter()
        .map(|(r, n)| format!("{n} {r}"))
        .collect();
    out.sort();
    out
}

/// What the preemption step says when it finds nothing to do (victims are not chosen yet:
/// preemption is not implemented, so no node offers victims).
fn preemption_message(all: usize, failures: &[Failure], pod: &Pod) -> String {
    if pod
        .spec
        .as_ref()
        .and_then(|s| s.preemption_policy.as_deref())
        == Some("Never")
    {
        return "preemption: not eligible due to preemptionPolicy=Never.".into();
    }
    let reasons = histogram(failures.iter().map(|f| {
        if f.code == Code::UnschedulableAndUnresolvable {
            "Preemption is not helpful for scheduling".to_string()
        } else {
            "No preemption victims found for incoming pod".to_string()
        }
    }));
    format!(
        "preemption: 0/{all} nodes are available: {}.",
        reasons.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::Code::*;

    fn f(plugin: &'static str, code: Code, r: &[&str]) -> Failure {
        Failure {
            plugin,
            code,
            reasons: r.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn fit_error_has_upstreams_shape() {
        let failures = vec![
            f(
                "TaintToleration",
                UnschedulableAndUnresolvable,
                &["node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }"],
            ),
            f("NodeResourcesFit", Unschedulable, &["Insufficient cpu"]),
            f("NodeResourcesFit", Unschedulable, &["Insufficient cpu"]),
        ];
        assert_eq!(
            fit_error(3, &failures, &Pod::default()),
            "0/3 nodes are available: 1 node(s) had untolerated taint \
             {node-role.kubernetes.io/control-plane: }, 2 Insufficient cpu. preemption: 0/3 \
             nodes are available: 1 Preemption is not helpful for scheduling, 2 No preemption \
             victims found for incoming pod."
        );
        let never = Pod {
            spec: Some(k8s_openapi::api::core::v1::PodSpec {
                preemption_policy: Some("Never".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(fit_error(1, &failures[1..2], &never).ends_with(
            "1 Insufficient cpu. preemption: not eligible due to preemptionPolicy=Never."
        ));
    }

    /// The decision's own cost, as the SchedulingBasic benchmark shape: 10,000 pods on 5,000
    /// nodes, each assumed before the next (no API). Prints the rate; run with --ignored.
    #[test]
    #[ignore]
    fn scheduling_basic_decisions() {
        use serde_json::json;
        let mut cache = Cache::default();
        for i in 0..5000 {
            cache.apply_node(Arc::new(
                serde_json::from_value(json!({"metadata": {"name": format!("n-{i}"),
                    "labels": {"kubernetes.io/hostname": format!("n-{i}")}},
                    "status": {"allocatable": {"cpu": "4", "memory": "32Gi", "pods": "110"}}}))
                .unwrap(),
            ));
        }
        let pods: Vec<Arc<Pod>> = (0..10_000)
            .map(|i| {
                Arc::new(
                    serde_json::from_value(json!({"metadata": {"name": format!("p-{i}"),
                        "namespace": "default", "uid": format!("u-{i}")},
                        "spec": {"containers": [{"name": "c", "image": "pause",
                            "resources": {"requests": {"cpu": "100m", "memory": "500Mi"}}}]}}))
                    .unwrap(),
                )
            })
            .collect();
        let mut cursor = Cursor::default();
        let t = Instant::now();
        for p in &pods {
            let node = select_node(&mut cache, p, &mut cursor, None, &|_| None).unwrap();
            cache.assume(p.clone(), &node);
        }
        let secs = t.elapsed().as_secs_f64();
        eprintln!(
            "{} pods in {secs:.2} s: {:.0} pods/s",
            pods.len(),
            pods.len() as f64 / secs
        );
        assert_eq!(cache.pod_count(), 10_000);
    }

    #[test]
    fn a_share_of_big_clusters_is_scored() {
        assert_eq!(feasible_nodes_to_find(50, None), 50);
        assert_eq!(feasible_nodes_to_find(1000, None), 420);
        assert_eq!(feasible_nodes_to_find(5000, None), 500);
        assert_eq!(feasible_nodes_to_find(100_000, None), 5000);
        assert_eq!(feasible_nodes_to_find(1000, Some(100)), 1000);
        assert_eq!(feasible_nodes_to_find(1000, Some(1)), 100);
    }
}
