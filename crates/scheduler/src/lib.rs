//! The scheduler (Rudder's kube-scheduler): assigns each pending pod to a node, a client of the
//! API like any other, over the shared watch caches of [`rudder_controllers::informers`].
//!
//! One task owns the scheduler's state (the [`cache::Cache`] of nodes and what their pods
//! request, and the [`queue::Queue`]); it takes pods from the queue one at a time, filters and
//! scores nodes with the plugins of upstream's default profile ([`plugins`]), assumes the pod on
//! the chosen node at once and sends the binding without waiting for it (many bindings are in
//! flight; a failed one un-assumes the pod and queues it again with backoff). A pod that fits
//! nowhere gets a `FailedScheduling` event and `PodScheduled=False`, and waits in the
//! unschedulable pool until a change of the cluster may let it fit; before that, [`preemption`]
//! may free a node for it by deleting pods of lower priority and nominate it there.
//!
//! Owns: `spec.nodeName` of pods (through `pods/binding`), their `PodScheduled` condition and
//! `status.nominatedNodeName`, the `DisruptionTarget` condition and deletion of preemption
//! victims, and the scheduler's events. Must not touch: the store, anything else of pods or
//! nodes.

pub mod cache;
pub mod metrics;
pub mod plugins;
pub mod preemption;
pub mod queue;
pub mod resources;
pub mod selectors;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Binding, Namespace, Node, ObjectReference, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::events::EventType;
use kube::runtime::reflector::{ObjectRef, Store};
use rudder_controllers::events::Events;
use rudder_controllers::informers::{Change, Informers};
use serde_json::json;
use tokio::sync::{mpsc, Semaphore};

use crate::cache::{terminal, uid, Cache};
use crate::plugins::{Failure, PodState};
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
    /// Bindings sent at once. A binding waits mostly for the store's group commit (its
    /// fsync), not for CPU, so throughput is this over that wait: 128 held the scheduler
    /// benchmark near 4,100 pods/s, 512 lets it reach 5,500–5,900. The server's limit of
    /// mutating requests in flight (200) does not count `system:masters`, the identity the
    /// built-in scheduler and the admin kubeconfig have; a standalone scheduler with a lesser
    /// identity should be given a lower value (`--max-in-flight-bindings`), or its bindings
    /// past that limit are answered 429 and retried.
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
    start_on(&Informers::new(client), cfg)
}

/// Starts the scheduler over `informers` (started already or not), binding with its client.
pub fn start_on(informers: &Informers, cfg: Config) -> Running {
    let mut tasks = vec![tokio::spawn(run(informers, cfg))];
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
    let pdbs = informers.store::<PodDisruptionBudget>();
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
            pdbs,
            cache: Cache::default(),
            queue: Queue::default(),
            cursor: Cursor::default(),
            tx,
            preempting: Default::default(),
            unconfirmed: Default::default(),
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
    /// The API calls of a preemption (by the pod with this uid) are done.
    Preempted(String),
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
    pdbs: Store<PodDisruptionBudget>,
    cache: Cache,
    queue: Queue,
    cursor: Cursor,
    bindings: Arc<Semaphore>,
    tx: mpsc::Sender<Msg>,
    /// Pods whose victims are being marked and deleted: not tried again until that is done
    /// (upstream's async preemption), so they do not pick more victims meanwhile.
    preempting: std::collections::HashSet<String>,
    /// Pods nominated by this scheduler whose `nominatedNodeName` has not been seen back yet
    /// (an update without it predates the status write and does not clear the nomination).
    unconfirmed: std::collections::HashSet<String>,
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

/// Why a pod fits nowhere: each node's failure (by index in the cache), and whether other
/// pods landing may help; `state` is the pod's filter state, for preemption.
pub struct Unschedulable {
    pub all: usize,
    pub failures: Vec<(usize, Failure)>,
    pub needs_pods: bool,
    pub state: Option<Box<PodState>>,
}

impl std::fmt::Debug for Unschedulable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message(None))
    }
}

impl Unschedulable {
    /// Upstream's FitError message, with what preemption said (if anything).
    pub fn message(&self, preemption: Option<&str>) -> String {
        if self.all == 0 {
            return "no nodes available to schedule pods".into();
        }
        let failures: Vec<&Failure> = self.failures.iter().map(|(_, f)| f).collect();
        fit_error(self.all, &failures, preemption)
    }
}

/// Filters node `i` for the pod, counting the pods nominated there that are not of lower
/// priority (upstream's RunFilterPluginsWithNominatedPods, which keeps the room preemption
/// made for a pod from going to pods of lower priority).
pub fn filter_with_nominated(st: &PodState, cache: &Cache, i: usize) -> plugins::Status {
    let n = &cache.nodes()[i];
    if cache.has_nominations() {
        let prio = cache::priority(&st.pod);
        let me = uid(&st.pod);
        let extra: Vec<_> = cache
            .nominated_on(&n.name)
            .iter()
            .filter(|p| p.uid() != me && p.priority() >= prio)
            .cloned()
            .collect();
        if !extra.is_empty() {
            let mut sim = n.clone();
            for p in extra {
                sim.add_pod(p);
            }
            return plugins::filter(st, &sim);
        }
    }
    plugins::filter(st, n)
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
            all: 0,
            failures: Vec::new(),
            needs_pods: false,
            state: None,
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
    // A pod nominated by preemption tries its node first (upstream's evaluateNominatedNode).
    let nominated = cache.nomination_of(uid(pod)).or_else(|| {
        pod.status
            .as_ref()
            .and_then(|s| s.nominated_node_name.as_deref())
            .filter(|n| !n.is_empty())
    });
    if let Some(name) = nominated {
        if let Some(i) = live.iter().copied().find(|&i| nodes[i].name == name) {
            if filter_with_nominated(&st, cache, i).is_ok() {
                return Ok(nodes[i].name.clone());
            }
        }
    }
    let want = feasible_nodes_to_find(all, percentage);
    let start = cursor.next_start % all;
    let mut feasible: Vec<usize> = Vec::with_capacity(want.min(all));
    let mut failures: Vec<(usize, Failure)> = Vec::new();
    let mut processed = 0;
    for k in 0..all {
        let i = live[(start + k) % all];
        processed += 1;
        match filter_with_nominated(&st, cache, i) {
            Ok(()) => {
                feasible.push(i);
                if feasible.len() >= want {
                    break;
                }
            }
            Err(f) => failures.push((i, f)),
        }
    }
    cursor.next_start = (start + processed) % all;
    if feasible.is_empty() {
        return Err(Unschedulable {
            all,
            needs_pods: failures
                .iter()
                .any(|(_, f)| matches!(f.plugin, "InterPodAffinity" | "PodTopologySpread")),
            failures,
            state: Some(Box::new(st)),
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
                if assigned || terminal(&pod) || pod.metadata.deletion_timestamp.is_some() {
                    self.cache.clear_nomination(&id);
                    self.unconfirmed.remove(&id);
                }
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
                    // The nomination the pod carries (another scheduler's, or ours coming
                    // back); an update without one clears it unless ours is not seen back yet.
                    let nnn = pod
                        .status
                        .as_ref()
                        .and_then(|s| s.nominated_node_name.as_deref())
                        .filter(|n| !n.is_empty());
                    match nnn {
                        Some(n) => {
                            if self.cache.nomination_of(&id) == Some(n) {
                                self.unconfirmed.remove(&id);
                            }
                            if !self.unconfirmed.contains(&id) {
                                self.cache.nominate(pod.clone(), n);
                            }
                        }
                        None if !self.unconfirmed.contains(&id) => self.cache.clear_nomination(&id),
                        None => {}
                    }
                    self.queue.add_or_update(&id, pod, now);
                }
            }
            Msg::Pod(Change::Deleted(pod)) => {
                let id = uid(&pod);
                self.queue.remove(id);
                self.cache.clear_nomination(id);
                self.unconfirmed.remove(id);
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
            Msg::Preempted(id) => {
                self.preempting.remove(&id);
                self.queue.activate(&id, now);
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
        if self.preempting.contains(&id) {
            // Tried again once its preemption's API calls are done.
            self.queue.unschedulable(&id, false, now);
            return;
        }
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
                self.cache.clear_nomination(&id);
                self.unconfirmed.remove(&id);
                self.cache.assume(pod.clone(), &node);
                self.queue.done(&id);
                self.bind(pod, node, attempt);
            }
            Err(u) => {
                metrics::global().unschedulable(&self.cfg.scheduler_name, &attempt);
                self.queue.unschedulable(&id, u.needs_pods, now);
                let Some(st) = u.state.as_deref() else {
                    self.report_failure(pod, u.message(None), None);
                    return;
                };
                let pdbs: Vec<preemption::Pdb> = self
                    .pdbs
                    .state()
                    .iter()
                    .map(|p| preemption::Pdb::of(p))
                    .collect();
                let nominated = self
                    .cache
                    .nomination_of(&id)
                    .map(str::to_string)
                    .or_else(|| {
                        pod.status
                            .as_ref()
                            .and_then(|s| s.nominated_node_name.clone())
                            .filter(|n| !n.is_empty())
                    });
                let offset = random(&mut self.cursor.rng) as usize;
                let outcome = preemption::preempt(
                    &self.cache,
                    st,
                    &u.failures,
                    &pdbs,
                    nominated.as_deref(),
                    offset,
                    &ns_labels,
                );
                let victims = match &outcome {
                    preemption::Outcome::Nominate(c) => c.victims.pods.len(),
                    _ => 0,
                };
                metrics::preemption_attempt(victims);
                match outcome {
                    preemption::Outcome::NotEligible(why) => {
                        self.report_failure(pod, u.message(Some(&why)), None);
                    }
                    preemption::Outcome::NoCandidate(why) => {
                        self.cache.clear_nomination(&id);
                        self.unconfirmed.remove(&id);
                        let clear = nominated.is_some().then_some(None);
                        self.report_failure(pod, u.message(Some(&why)), clear);
                    }
                    preemption::Outcome::Nominate(c) => {
                        let node = c.node.clone();
                        self.preempt(&pod, c, now);
                        self.cache.nominate(pod.clone(), &node);
                        self.unconfirmed.insert(id.clone());
                        self.report_failure(pod, u.message(None), Some(Some(node)));
                    }
                }
            }
        }
    }

    /// Carries out a preemption (upstream's prepareCandidate): each victim not already going
    /// gets `DisruptionTarget` (`PreemptionByScheduler`), is deleted with its own grace period
    /// and gets a `Preempted` event; pods of lower priority nominated to the node lose their
    /// nomination (and are tried again at once).
    fn preempt(&mut self, preemptor: &Arc<Pod>, c: preemption::Candidate, now: Instant) {
        let prio = cache::priority(preemptor);
        let lower: Vec<Arc<Pod>> = self
            .cache
            .nominated_on(&c.node)
            .iter()
            .filter(|p| p.priority() < prio && p.uid() != uid(preemptor))
            .map(|p| p.pod.clone())
            .collect();
        for p in &lower {
            let id = uid(p).to_string();
            self.cache.clear_nomination(&id);
            self.unconfirmed.remove(&id);
            self.queue.activate(&id, now);
        }
        let scheduler = preemptor
            .spec
            .as_ref()
            .and_then(|s| s.scheduler_name.clone())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| DEFAULT_SCHEDULER.into());
        let victims: Vec<Arc<Pod>> = c
            .victims
            .pods
            .iter()
            .filter(|v| v.pod.metadata.deletion_timestamp.is_none())
            .map(|v| v.pod.clone())
            .collect();
        tracing::debug!(
            preemptor = ?preemptor.metadata.name,
            node = %c.node,
            victims = victims.len(),
            "preempting"
        );
        let client = self.client.clone();
        let recorder = self.recorder.clone();
        let preemptor_uid = uid(preemptor).to_string();
        self.preempting.insert(preemptor_uid.clone());
        let tx = self.tx.clone();
        let node = c.node;
        tokio::spawn(async move {
            let pp = PatchParams {
                field_manager: Some(MANAGER.into()),
                ..Default::default()
            };
            for v in victims {
                let ns = v.metadata.namespace.clone().unwrap_or_default();
                let name = v.metadata.name.clone().unwrap_or_default();
                let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
                let patch = json!({"status": {"conditions": [{
                    "type": "DisruptionTarget",
                    "status": "True",
                    "reason": "PreemptionByScheduler",
                    "message": format!("{scheduler}: preempting to accommodate a higher priority pod"),
                    "lastTransitionTime": Time(Timestamp::now()),
                }]}});
                match api.patch_status(&name, &pp, &Patch::Strategic(patch)).await {
                    Err(kube::Error::Api(e)) if e.code == 404 => continue,
                    Err(e) => {
                        tracing::debug!(pod = %name, error = %e, "marking a preemption victim");
                        continue;
                    }
                    Ok(_) => {}
                }
                let dp = DeleteParams {
                    preconditions: Some(Preconditions {
                        uid: v.metadata.uid.clone(),
                        resource_version: None,
                    }),
                    ..Default::default()
                };
                match api.delete(&name, &dp).await {
                    Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => continue,
                    Err(e) => {
                        tracing::debug!(pod = %name, error = %e, "deleting a preemption victim");
                        continue;
                    }
                    Ok(_) => {}
                }
                recorder
                    .record(
                        &*v,
                        EventType::Normal,
                        "Preempted",
                        "Preempting",
                        format!("Preempted by pod {preemptor_uid} on node {node}"),
                    )
                    .await;
            }
            for p in lower {
                let ns = p.metadata.namespace.clone().unwrap_or_default();
                let name = p.metadata.name.clone().unwrap_or_default();
                if p.status
                    .as_ref()
                    .and_then(|s| s.nominated_node_name.as_deref())
                    .is_none_or(str::is_empty)
                {
                    continue;
                }
                let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
                let patch = json!({"status": {"nominatedNodeName": null}});
                if let Err(e) = api.patch_status(&name, &pp, &Patch::Strategic(patch)).await {
                    tracing::debug!(pod = %name, error = %e, "clearing a nomination");
                }
            }
            let _ = tx.send(Msg::Preempted(preemptor_uid)).await;
        });
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
    /// message when the pod does not already say so; `nominate` sets (or, `Some(None)`,
    /// clears) its `nominatedNodeName` in the same status write.
    fn report_failure(&self, pod: Arc<Pod>, msg: String, nominate: Option<Option<String>>) {
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
        let had = pod
            .status
            .as_ref()
            .and_then(|s| s.nominated_node_name.clone())
            .filter(|n| !n.is_empty());
        let nominate = nominate.filter(|n| *n != had);
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
            if current == 1 && nominate.is_none() {
                return;
            }
            let ns = pod.metadata.namespace.clone().unwrap_or_default();
            let name = pod.metadata.name.clone().unwrap_or_default();
            let api: Api<Pod> = Api::namespaced(client, &ns);
            let mut patch = json!({"status": {"conditions": [{
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": msg,
                "lastProbeTime": null,
                "lastTransitionTime": Time(Timestamp::now()),
            }]}});
            if let Some(n) = nominate {
                patch["status"]["nominatedNodeName"] = json!(n);
            }
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
/// counted over nodes and sorted), then what preemption said (`preemption: …`), if anything.
pub fn fit_error(all: usize, failures: &[&Failure], preemption: Option<&str>) -> String {
    let mut msg = format!("0/{all} nodes are available:");
    let reasons = histogram(failures.iter().flat_map(|f| f.reasons.iter().cloned()));
    if !reasons.is_empty() {
        msg.push_str(&format!(" {}.", reasons.join(", ")));
    }
    if let Some(p) = preemption {
        msg.push_str(" preemption: ");
        msg.push_str(p);
    }
    msg
}

pub(crate) fn histogram(reasons: impl Iterator<Item = String>) -> Vec<String> {
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

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn fit_error_has_upstreams_shape() {
        use serde_json::json;
        let mut cache = Cache::default();
        let node = |name: &str, taints: serde_json::Value| {
            Arc::new(
                serde_json::from_value(json!({"metadata": {"name": name},
                    "spec": {"taints": taints},
                    "status": {"allocatable": {"cpu": "1", "memory": "1Gi", "pods": "10"}}}))
                .unwrap(),
            )
        };
        cache.apply_node(node(
            "cp",
            json!([{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]),
        ));
        cache.apply_node(node("a", json!([])));
        cache.apply_node(node("b", json!([])));
        let pod = |name: &str, node: Option<&str>, extra: serde_json::Value| {
            let mut v = json!({"metadata": {"name": name, "namespace": "default", "uid": name},
                "spec": {"containers": [{"name": "c",
                    "resources": {"requests": {"cpu": "800m"}}}]}});
            if let Some(n) = node {
                v["spec"]["nodeName"] = json!(n);
            }
            for (k, x) in extra.as_object().unwrap() {
                v["spec"][k] = x.clone();
            }
            Arc::new(serde_json::from_value::<Pod>(v).unwrap())
        };
        cache.apply_pod(&pod("x", Some("a"), json!({})));
        cache.apply_pod(&pod("y", Some("b"), json!({})));
        let mut cursor = Cursor::default();
        let p = pod("p", None, json!({}));
        let u = select_node(&mut cache, &p, &mut cursor, None, &|_| None).unwrap_err();
        let st = u.state.as_deref().unwrap();
        let preemption::Outcome::NoCandidate(why) =
            preemption::preempt(&cache, st, &u.failures, &[], None, 0, &|_| None)
        else {
            panic!("no victims expected")
        };
        assert_eq!(
            u.message(Some(&why)),
            "0/3 nodes are available: 1 node(s) had untolerated taint \
             {node-role.kubernetes.io/control-plane: }, 2 Insufficient cpu. preemption: 0/3 \
             nodes are available: 1 Preemption is not helpful for scheduling, 2 No preemption \
             victims found for incoming pod."
        );
        let never = pod(
            "n",
            None,
            json!({"preemptionPolicy": "Never", "priority": 5}),
        );
        let u = select_node(&mut cache, &never, &mut cursor, None, &|_| None).unwrap_err();
        let preemption::Outcome::NotEligible(why) = preemption::preempt(
            &cache,
            u.state.as_deref().unwrap(),
            &u.failures,
            &[],
            None,
            0,
            &|_| None,
        ) else {
            panic!("not eligible expected")
        };
        assert!(u.message(Some(&why)).ends_with(
            "2 Insufficient cpu. preemption: not eligible due to preemptionPolicy=Never."
        ));
    }

    #[test]
    fn a_nominated_pod_keeps_its_room_from_pods_of_lower_priority() {
        use serde_json::json;
        let mut cache = Cache::default();
        for n in ["a", "b"] {
            cache.apply_node(Arc::new(
                serde_json::from_value(json!({"metadata": {"name": n},
                    "status": {"allocatable": {"cpu": "2", "memory": "1Gi", "pods": "10"}}}))
                .unwrap(),
            ));
        }
        let pod = |name: &str, cpu: &str, prio: i32| {
            Arc::new(
                serde_json::from_value::<Pod>(json!({"metadata": {"name": name,
                    "namespace": "default", "uid": name},
                    "spec": {"priority": prio, "containers": [{"name": "c",
                        "resources": {"requests": {"cpu": cpu}}}]}}))
                .unwrap(),
            )
        };
        // b is full; a pod of priority 100 is nominated to a for 1500m.
        cache.apply_pod(&Arc::new({
            let mut p = (*pod("full", "2", 0)).clone();
            p.spec.as_mut().unwrap().node_name = Some("b".into());
            p
        }));
        let nominee = pod("nominee", "1500m", 100);
        cache.nominate(nominee.clone(), "a");
        let mut cursor = Cursor::default();
        // A pod of lower priority does not get the room.
        let low = pod("low", "1", 50);
        let err = select_node(&mut cache, &low, &mut cursor, None, &|_| None).unwrap_err();
        assert_eq!(
            err.message(None),
            "0/2 nodes are available: 2 Insufficient cpu."
        );
        // One of higher priority does.
        let high = pod("high", "1", 200);
        assert_eq!(
            select_node(&mut cache, &high, &mut cursor, None, &|_| None).unwrap(),
            "a"
        );
        // The nominee itself goes to its node.
        assert_eq!(
            select_node(&mut cache, &nominee, &mut cursor, None, &|_| None).unwrap(),
            "a"
        );
        cache.clear_nomination("nominee");
        assert_eq!(
            select_node(&mut cache, &low, &mut cursor, None, &|_| None).unwrap(),
            "a"
        );
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
