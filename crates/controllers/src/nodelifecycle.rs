//! Node lifecycle (upstream's node lifecycle controller and its taint eviction manager).
//!
//! - Health: a node's heartbeat is its Lease's renewTime (and its Ready condition's
//!   lastHeartbeatTime) changing, timed by this controller's own clock so that skew between
//!   machines does not matter. A node unheard of for longer than `grace` (or than a quarter
//!   more than its Lease's `leaseDurationSeconds`, if that is longer) has its conditions set
//!   to `Unknown` ("Kubelet stopped posting node status.").
//! - Taints from conditions: `not-ready` / `unreachable` as NoSchedule and NoExecute (with
//!   timeAdded), `memory-pressure`, `disk-pressure`, `pid-pressure`, `network-unavailable` and
//!   `unschedulable` (cordoned) as NoSchedule, added and removed as the conditions change.
//! - Eviction: a pod on a node with a NoExecute taint it does not tolerate is deleted at once;
//!   one that tolerates it for `tolerationSeconds` is deleted when they have passed since the
//!   taint's timeAdded. It first gets the `DisruptionTarget` condition, as upstream marks it.
//! - Disruption: when most nodes of a zone fall silent together, or every node of every zone,
//!   evictions are held back as upstream's zone states hold them ([`Disruption`]).
//!
//! The pods of a lost node are so replaced only after the node stopped heartbeating for the
//! grace period plus the pods' toleration; a real agent stops its containers once it cannot
//! renew its Lease for that long (fencing), so the old and the new never run together.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::Future;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, Preconditions};
use kube::runtime::events::EventType;

use crate::events::Events;
use kube::runtime::reflector;
use kube::ResourceExt;

use crate::informers::Informers;

pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
const UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

/// How the controller judges nodes.
#[derive(Clone, Debug)]
pub struct Config {
    /// A node unheard of for this long is `Unknown` (`--node-monitor-grace-period`).
    pub grace: Duration,
    /// How often nodes are looked at (`--node-monitor-period`).
    pub period: Duration,
    /// When the API server this runs in last kept nodes' heartbeats waiting or turned them
    /// away; none when it runs standalone.
    pub server_trouble: Option<ServerTrouble>,
}

/// When the API server in this process last fell behind its nodes' heartbeats.
#[derive(Clone)]
pub struct ServerTrouble(pub Arc<dyn Fn() -> Option<Instant> + Send + Sync>);

impl std::fmt::Debug for ServerTrouble {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerTrouble")
    }
}

/// Whether a node's silence at `now` may be the server's own doing: it kept heartbeats
/// waiting or turned them away within the node's grace period. The node is not taken for lost
/// until the server has kept up for a whole grace period (a slower failover while the server
/// is overloaded, rather than nodes evicted for its slowness).
fn server_excuses(trouble: Option<Instant>, now: Instant, grace: Duration) -> bool {
    trouble.is_some_and(|at| now.saturating_duration_since(at) <= grace)
}

/// Runs the controller until the task is dropped.
pub fn run(informers: &Informers, cfg: Config) -> impl Future<Output = ()> + Send {
    let client = informers.client().clone();
    let nodes_api: Api<Node> = Api::all(client.clone());
    let leases_api: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let nodes = informers.store::<Node>();
    let leases = informers.store::<Lease>();
    let pods = informers.store::<Pod>();
    let recorder = Events::new(client.clone(), "node-controller");
    async move {
        let mut health = Health::default();
        let mut disruption = Disruption::default();
        let mut tick = tokio::time::interval(cfg.period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let now = Instant::now();
            let _pass = crate::metrics::PassTimer::new("node-lifecycle-controller");
            let mut tainted: HashMap<String, Vec<Taint>> = HashMap::new();
            let mut zones: HashMap<String, Vec<(String, bool)>> = HashMap::new();
            for node in nodes.state() {
                let name = node.name_any();
                let lease = leases.get(&reflector::ObjectRef::new(&name).within("kube-node-lease"));
                let grace = grace_for(cfg.grace, lease.as_deref());
                let mut fresh = health.observe(&node, lease.as_deref(), now, grace);
                if !fresh && ready_status(&node) != Some("Unknown") {
                    let trouble = cfg.server_trouble.as_ref().and_then(|t| (t.0)());
                    if server_excuses(trouble, now, grace) {
                        // Asked first: a server behind its heartbeats is spared the read.
                        tracing::debug!(node = %name, "silent, but the server is behind its heartbeats");
                        fresh = true;
                    } else if let Ok(Some(current)) = leases_api.get_opt(&name).await {
                        // The cache may be behind the store (a loaded server delivers events
                        // late): a renewal it has not seen yet is a heartbeat all the same.
                        let grace = grace_for(cfg.grace, Some(&current));
                        fresh = health.observe(&node, Some(&current), now, grace);
                    }
                }
                let mut node = node;
                if !fresh && ready_status(&node) != Some("Unknown") {
                    match mark_unknown(&nodes_api, &node).await {
                        Ok(n) => {
                            tracing::info!(node = %name, "node stopped posting status: Unknown");
                            recorder
                                .record(
                                    &n,
                                    EventType::Normal,
                                    "NodeNotReady",
                                    "NodeNotReady",
                                    format!("Node {name} status is now: NodeNotReady"),
                                )
                                .await;
                            node = Arc::new(n);
                        }
                        Err(e) => tracing::warn!(node = %name, error = %e, "marking node Unknown"),
                    }
                }
                zones
                    .entry(zone_of(&node).to_string())
                    .or_default()
                    .push((name.clone(), ready_status(&node) == Some("True")));
                match reconcile_taints(&nodes_api, &node).await {
                    Ok(taints) => {
                        let no_execute: Vec<Taint> = taints
                            .into_iter()
                            .filter(|t| t.effect == "NoExecute")
                            .collect();
                        if !no_execute.is_empty() {
                            tainted.insert(name, no_execute);
                        }
                    }
                    Err(e) => tracing::warn!(node = %name, error = %e, "node taints"),
                }
            }
            health.forget_missing(&nodes.state());
            disruption.hold(&zones, &mut tainted, now);
            if !tainted.is_empty() {
                evict(&client, &recorder, &pods.state(), &tainted).await;
            }
        }
    }
}

/// How long a node may be silent: the configured grace, or longer for a node whose Lease says
/// it lasts longer (a quarter more than its duration, as 40 s Leases get upstream's 50 s).
fn grace_for(grace: Duration, lease: Option<&Lease>) -> Duration {
    let declared = lease
        .and_then(|l| l.spec.as_ref())
        .and_then(|s| s.lease_duration_seconds)
        .filter(|s| *s > 0)
        .map_or(Duration::ZERO, |s| Duration::from_secs(s as u64) * 5 / 4);
    grace.max(declared)
}

fn zone_of(node: &Node) -> &str {
    let labels = node.labels();
    labels
        .get("topology.kubernetes.io/zone")
        .or_else(|| labels.get("failure-domain.beta.kubernetes.io/zone"))
        .map_or("", String::as_str)
}

/// A zone is partly disrupted when more than two of its nodes, and at least this share, are
/// not Ready (upstream's `--unhealthy-zone-threshold`).
const UNHEALTHY_ZONE_THRESHOLD: f64 = 0.55;
/// Zones bigger than this still lose a node's pods now and then when partly disrupted
/// (upstream's `--large-cluster-size-threshold`); smaller ones keep them all.
const LARGE_ZONE: usize = 50;
/// How often a partly disrupted large zone may begin evicting one more node's pods (upstream's
/// `--secondary-node-eviction-rate` of 0.01 nodes per second).
const SECONDARY_EVICTION_INTERVAL: Duration = Duration::from_secs(100);

/// Upstream's zone states, which decide whose pods a lost node loses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ZoneState {
    Normal,
    /// Most of the zone is not Ready: more likely a partition or an overloaded control plane
    /// than that many machines failing together.
    Partial,
    /// No node of the zone is Ready.
    Full,
}

fn zone_state(ready: usize, not_ready: usize) -> ZoneState {
    if not_ready > 0 && ready == 0 {
        ZoneState::Full
    } else if not_ready > 2
        && not_ready as f64 / (ready + not_ready) as f64 >= UNHEALTHY_ZONE_THRESHOLD
    {
        ZoneState::Partial
    } else {
        ZoneState::Normal
    }
}

/// Holds evictions back when many nodes fall silent together, as upstream's node lifecycle
/// controller does: the pods of the nodes of a zone in normal state (or a zone wholly down
/// while others are up) are evicted at once; in a partly disrupted zone a node more begins
/// losing its pods only every [`SECONDARY_EVICTION_INTERVAL`], and only in a large zone; and
/// when every node of every zone is not Ready, no pod is evicted at all, for then it is this
/// controller's view (or the control plane) that is cut off, not the whole fleet.
#[derive(Default)]
struct Disruption {
    states: HashMap<String, ZoneState>,
    /// Nodes whose pods are being evicted: their evictions go on whatever the zone's state.
    evicting: std::collections::HashSet<String>,
    /// When each zone last began evicting a node's pods while partly disrupted.
    last_begun: HashMap<String, Instant>,
}

impl Disruption {
    /// Drops from `tainted` the nodes whose pods must stay for now; `zones` lists each zone's
    /// nodes with whether they are Ready.
    fn hold(
        &mut self,
        zones: &HashMap<String, Vec<(String, bool)>>,
        tainted: &mut HashMap<String, Vec<Taint>>,
        now: Instant,
    ) {
        let mut states = HashMap::new();
        for (zone, nodes) in zones {
            let ready = nodes.iter().filter(|(_, r)| *r).count();
            let state = zone_state(ready, nodes.len() - ready);
            if self.states.get(zone).copied().unwrap_or(ZoneState::Normal) != state {
                tracing::warn!(zone = %zone, ?state, ready, nodes = nodes.len(), "zone state changed");
            }
            states.insert(zone.clone(), state);
        }
        self.states = states;
        self.evicting.retain(|n| tainted.contains_key(n));
        let all_down =
            !self.states.is_empty() && self.states.values().all(|s| *s == ZoneState::Full);
        for (zone, nodes) in zones {
            let state = self.states[zone];
            for (name, _) in nodes {
                if !tainted.contains_key(name) || self.evicting.contains(name) {
                    continue;
                }
                let begin = match state {
                    _ if all_down => false,
                    ZoneState::Normal | ZoneState::Full => true,
                    ZoneState::Partial => {
                        nodes.len() > LARGE_ZONE
                            && self.last_begun.get(zone).is_none_or(|t| {
                                now.duration_since(*t) >= SECONDARY_EVICTION_INTERVAL
                            })
                    }
                };
                if begin {
                    if state == ZoneState::Partial {
                        self.last_begun.insert(zone.clone(), now);
                    }
                    self.evicting.insert(name.clone());
                } else {
                    tainted.remove(name);
                }
            }
        }
    }
}

/// When each node was last heard from, by this controller's clock.
#[derive(Default)]
struct Health {
    nodes: HashMap<String, Probe>,
}

struct Probe {
    /// What changed last: (lease renewTime, Ready lastHeartbeatTime).
    seen: (Option<Timestamp>, Option<Timestamp>),
    at: Instant,
}

impl Health {
    /// Records what the node shows now; whether it was heard from within `grace`.
    fn observe(
        &mut self,
        node: &Node,
        lease: Option<&Lease>,
        now: Instant,
        grace: Duration,
    ) -> bool {
        let renew = lease
            .and_then(|l| l.spec.as_ref())
            .and_then(|s| s.renew_time.as_ref())
            .map(|t| t.0);
        let heartbeat = ready_condition(node)
            .and_then(|c| c.last_heartbeat_time.as_ref())
            .map(|t| t.0);
        let seen = (renew, heartbeat);
        let probe = self
            .nodes
            .entry(node.name_any())
            .or_insert(Probe { seen, at: now });
        if probe.seen != seen {
            probe.seen = seen;
            probe.at = now;
        }
        now.duration_since(probe.at) <= grace
    }

    fn forget_missing(&mut self, nodes: &[Arc<Node>]) {
        let names: std::collections::HashSet<String> = nodes.iter().map(|n| n.name_any()).collect();
        self.nodes.retain(|n, _| names.contains(n));
    }
}

fn ready_condition(node: &Node) -> Option<&NodeCondition> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
}

fn ready_status(node: &Node) -> Option<&str> {
    ready_condition(node).map(|c| c.status.as_str())
}

/// Sets every condition the agent reports to Unknown, as upstream does for a silent node.
async fn mark_unknown(api: &Api<Node>, node: &Node) -> kube::Result<Node> {
    let now = Time(Timestamp::now());
    let mut conditions: Vec<NodeCondition> = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    for kind in ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"] {
        if !conditions.iter().any(|c| c.type_ == kind) {
            conditions.push(NodeCondition {
                type_: kind.into(),
                last_heartbeat_time: Some(now.clone()),
                ..Default::default()
            });
        }
    }
    for c in conditions.iter_mut() {
        if matches!(
            c.type_.as_str(),
            "Ready" | "MemoryPressure" | "DiskPressure" | "PIDPressure"
        ) && c.status != "Unknown"
        {
            c.status = "Unknown".into();
            c.reason = Some("NodeStatusUnknown".into());
            c.message = Some("Kubelet stopped posting node status.".into());
            c.last_transition_time = Some(now.clone());
        }
    }
    let patch = serde_json::json!({
        "metadata": {"resourceVersion": node.resource_version()},
        "status": {"conditions": conditions},
    });
    api.patch_status(
        &node.name_any(),
        &crate::patch_params(),
        &Patch::Merge(&patch),
    )
    .await
}

/// The taints the node's conditions call for: (key, effect).
fn wanted(node: &Node) -> Vec<(&'static str, &'static str)> {
    let mut out = Vec::new();
    let conditions = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default();
    let status = |kind: &str| {
        conditions
            .iter()
            .find(|c| c.type_ == kind)
            .map(|c| c.status.as_str())
    };
    match status("Ready") {
        Some("True") => {}
        Some("False") => out.extend([(NOT_READY, "NoSchedule"), (NOT_READY, "NoExecute")]),
        Some(_) => out.extend([(UNREACHABLE, "NoSchedule"), (UNREACHABLE, "NoExecute")]),
        // Not reported yet: not ready to take pods.
        None => out.push((NOT_READY, "NoSchedule")),
    }
    for (kind, key) in [
        ("MemoryPressure", "node.kubernetes.io/memory-pressure"),
        ("DiskPressure", "node.kubernetes.io/disk-pressure"),
        ("PIDPressure", "node.kubernetes.io/pid-pressure"),
        (
            "NetworkUnavailable",
            "node.kubernetes.io/network-unavailable",
        ),
    ] {
        if status(kind) == Some("True") {
            out.push((key, "NoSchedule"));
        }
    }
    if node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
        out.push((UNSCHEDULABLE, "NoSchedule"));
    }
    out
}

const MANAGED: [&str; 7] = [
    NOT_READY,
    UNREACHABLE,
    UNSCHEDULABLE,
    "node.kubernetes.io/memory-pressure",
    "node.kubernetes.io/disk-pressure",
    "node.kubernetes.io/pid-pressure",
    "node.kubernetes.io/network-unavailable",
];

/// Brings the node's condition taints in line; returns the node's taints afterwards.
async fn reconcile_taints(api: &Api<Node>, node: &Node) -> kube::Result<Vec<Taint>> {
    let current: Vec<Taint> = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let want = wanted(node);
    let is_wanted = |t: &Taint| want.iter().any(|(k, e)| t.key == *k && t.effect == *e);
    let mut next: Vec<Taint> = current
        .iter()
        .filter(|t| !MANAGED.contains(&t.key.as_str()) || is_wanted(t))
        .cloned()
        .collect();
    let now = Time(Timestamp::now());
    for (key, effect) in &want {
        if !next.iter().any(|t| t.key == *key && t.effect == *effect) {
            next.push(Taint {
                key: key.to_string(),
                effect: effect.to_string(),
                value: None,
                time_added: (*effect == "NoExecute").then(|| now.clone()),
            });
        }
    }
    if next == current {
        return Ok(current);
    }
    // No taints left: the field goes, as Go's omitempty leaves an empty list out.
    let taints = if next.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::json!(next)
    };
    let patch = serde_json::json!({
        "metadata": {"resourceVersion": node.resource_version()},
        "spec": {"taints": taints},
    });
    api.patch(
        &node.name_any(),
        &crate::patch_params(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(next)
}

/// Whether `tol` tolerates `taint` (upstream's `ToleratesTaint`).
pub fn tolerates(tol: &Toleration, taint: &Taint) -> bool {
    if let Some(e) = tol.effect.as_deref().filter(|e| !e.is_empty()) {
        if e != taint.effect {
            return false;
        }
    }
    let key = tol.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match tol.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => {
            !key.is_empty()
                && tol.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
        _ => false,
    }
}

/// When a pod must leave a node with these NoExecute taints: `None` if it tolerates them all
/// for ever, `Some(deadline)` otherwise (now, if one is not tolerated at all).
fn eviction_deadline(pod: &Pod, taints: &[Taint]) -> Option<Timestamp> {
    let tolerations: &[Toleration] = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or_default();
    let mut deadline: Option<Timestamp> = None;
    for taint in taints {
        let matching: Vec<&Toleration> =
            tolerations.iter().filter(|t| tolerates(t, taint)).collect();
        if matching.is_empty() {
            return Some(Timestamp::UNIX_EPOCH);
        }
        // The shortest of the matching tolerations' limits; none means for ever.
        let seconds = matching.iter().filter_map(|t| t.toleration_seconds).min();
        if let Some(s) = seconds {
            let added = taint
                .time_added
                .as_ref()
                .map_or_else(Timestamp::now, |t| t.0);
            let at = added
                .checked_add(k8s_openapi::jiff::SignedDuration::from_secs(s.max(0)))
                .unwrap_or(added);
            deadline = Some(deadline.map_or(at, |d| d.min(at)));
        }
    }
    deadline
}

async fn evict(
    client: &kube::Client,
    recorder: &Events,
    pods: &[Arc<Pod>],
    tainted: &HashMap<String, Vec<Taint>>,
) {
    let now = Timestamp::now();
    for pod in pods {
        let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) else {
            continue;
        };
        let Some(taints) = tainted.get(node) else {
            continue;
        };
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let Some(deadline) = eviction_deadline(pod, taints) else {
            continue;
        };
        if deadline > now {
            continue;
        }
        let ns = pod.namespace().unwrap_or_default();
        let name = pod.name_any();
        let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let condition = serde_json::json!({"status": {"conditions": [{
            "type": "DisruptionTarget",
            "status": "True",
            "reason": "DeletionByTaintManager",
            "message": "Taint manager: deleting due to NoExecute taint",
            "lastTransitionTime": Time(now),
        }]}});
        let _ = api
            .patch_status(&name, &crate::patch_params(), &Patch::Strategic(&condition))
            .await;
        recorder
            .record(
                &**pod,
                EventType::Normal,
                "TaintManagerEviction",
                "Delete",
                format!("Marking for deletion Pod {ns}/{name}"),
            )
            .await;
        let dp = DeleteParams {
            preconditions: Some(Preconditions {
                uid: pod.metadata.uid.clone(),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(&name, &dp).await {
            Ok(_) => {
                tracing::info!(pod = %format!("{ns}/{name}"), %node, "evicted for a NoExecute taint")
            }
            Err(e) => tracing::warn!(pod = %format!("{ns}/{name}"), error = %e, "taint eviction"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeSpec, NodeStatus, PodSpec};

    fn node(ready: Option<&str>, unschedulable: bool) -> Node {
        Node {
            metadata: Default::default(),
            spec: Some(NodeSpec {
                unschedulable: Some(unschedulable),
                ..Default::default()
            }),
            status: Some(NodeStatus {
                conditions: ready.map(|s| {
                    vec![NodeCondition {
                        type_: "Ready".into(),
                        status: s.into(),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn conditions_call_for_taints() {
        assert!(wanted(&node(Some("True"), false)).is_empty());
        assert_eq!(
            wanted(&node(Some("False"), false)),
            [(NOT_READY, "NoSchedule"), (NOT_READY, "NoExecute")]
        );
        assert_eq!(
            wanted(&node(Some("Unknown"), true)),
            [
                (UNREACHABLE, "NoSchedule"),
                (UNREACHABLE, "NoExecute"),
                (UNSCHEDULABLE, "NoSchedule")
            ]
        );
        assert_eq!(wanted(&node(None, false)), [(NOT_READY, "NoSchedule")]);
    }

    fn taint(key: &str, value: Option<&str>, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            value: value.map(str::to_string),
            effect: effect.into(),
            time_added: Some(Time(Timestamp::now())),
        }
    }

    fn tol(
        key: Option<&str>,
        op: &str,
        value: Option<&str>,
        effect: Option<&str>,
        secs: Option<i64>,
    ) -> Toleration {
        Toleration {
            key: key.map(str::to_string),
            operator: Some(op.into()),
            value: value.map(str::to_string),
            effect: effect.map(str::to_string),
            toleration_seconds: secs,
        }
    }

    #[test]
    fn tolerations_match_as_upstream() {
        let t = taint("k", Some("v"), "NoExecute");
        assert!(tolerates(
            &tol(Some("k"), "Equal", Some("v"), None, None),
            &t
        ));
        assert!(!tolerates(
            &tol(Some("k"), "Equal", Some("w"), None, None),
            &t
        ));
        assert!(tolerates(
            &tol(Some("k"), "Exists", None, Some("NoExecute"), None),
            &t
        ));
        assert!(!tolerates(
            &tol(Some("k"), "Exists", None, Some("NoSchedule"), None),
            &t
        ));
        assert!(
            tolerates(&tol(None, "Exists", None, None, None), &t),
            "tolerates everything"
        );
        assert!(!tolerates(&tol(None, "Equal", None, None, None), &t));
    }

    #[test]
    fn eviction_waits_for_the_shortest_toleration() {
        let t = taint(UNREACHABLE, None, "NoExecute");
        let pod = |tols: Vec<Toleration>| Pod {
            spec: Some(PodSpec {
                tolerations: Some(tols),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            eviction_deadline(&pod(vec![]), std::slice::from_ref(&t)),
            Some(Timestamp::UNIX_EPOCH)
        );
        assert_eq!(
            eviction_deadline(
                &pod(vec![tol(
                    Some(UNREACHABLE),
                    "Exists",
                    None,
                    Some("NoExecute"),
                    None
                )]),
                std::slice::from_ref(&t)
            ),
            None
        );
        let added = t.time_added.clone().unwrap().0;
        let d = eviction_deadline(
            &pod(vec![
                tol(
                    Some(UNREACHABLE),
                    "Exists",
                    None,
                    Some("NoExecute"),
                    Some(30),
                ),
                tol(None, "Exists", None, None, Some(5)),
            ]),
            &[t],
        )
        .unwrap();
        assert_eq!(d.duration_since(added).as_secs(), 5);
    }

    #[test]
    fn zones_are_disrupted_as_upstream_counts() {
        assert_eq!(zone_state(10, 0), ZoneState::Normal);
        assert_eq!(zone_state(0, 1), ZoneState::Full);
        assert_eq!(
            zone_state(1, 2),
            ZoneState::Normal,
            "two nodes down is never a disruption"
        );
        assert_eq!(zone_state(2, 3), ZoneState::Partial);
        assert_eq!(zone_state(5, 5), ZoneState::Normal, "under 55 %");
    }

    /// `zones` as `hold` takes them: `(zone, nodes, of which not Ready)`, nodes named `zone-i`
    /// and the first `down` not Ready; returns the tainted names `hold` lets through.
    fn let_through(
        d: &mut Disruption,
        zones: &[(&str, usize, usize)],
        now: Instant,
    ) -> Vec<String> {
        let mut by_zone = HashMap::new();
        let mut tainted = HashMap::new();
        for (zone, n, down) in zones {
            let nodes: Vec<(String, bool)> = (0..*n)
                .map(|i| (format!("{zone}-{i}"), i >= *down))
                .collect();
            for (name, ready) in &nodes {
                if !ready {
                    tainted.insert(name.clone(), vec![taint(UNREACHABLE, None, "NoExecute")]);
                }
            }
            by_zone.insert(zone.to_string(), nodes);
        }
        d.hold(&by_zone, &mut tainted, now);
        let mut out: Vec<String> = tainted.into_keys().collect();
        out.sort();
        out
    }

    #[test]
    fn evictions_are_held_back_when_many_nodes_fall_silent_together() {
        let t0 = Instant::now();
        // One node of three lost: its pods go at once.
        let mut d = Disruption::default();
        assert_eq!(let_through(&mut d, &[("a", 3, 1)], t0), ["a-0"]);
        // Every node of the only zone silent: nothing is evicted, and a node already being
        // emptied goes on.
        assert_eq!(let_through(&mut d, &[("a", 3, 3)], t0), ["a-0"]);
        // A whole zone down while another is up: its nodes' pods go.
        let mut d = Disruption::default();
        assert_eq!(
            let_through(&mut d, &[("a", 2, 2), ("b", 2, 0)], t0),
            ["a-0", "a-1"]
        );
        // Most of a small zone silent: none of them.
        let mut d = Disruption::default();
        assert!(let_through(&mut d, &[("a", 10, 6)], t0).is_empty());
        // Most of a large zone silent: one node more now and then.
        let mut d = Disruption::default();
        assert_eq!(let_through(&mut d, &[("a", 60, 40)], t0).len(), 1);
        assert_eq!(let_through(&mut d, &[("a", 60, 40)], t0).len(), 1);
        let later = t0 + SECONDARY_EVICTION_INTERVAL;
        assert_eq!(let_through(&mut d, &[("a", 60, 40)], later).len(), 2);
    }

    #[test]
    fn a_server_behind_its_heartbeats_excuses_silence_for_a_grace_period() {
        let now = Instant::now();
        let grace = Duration::from_secs(5);
        assert!(!server_excuses(None, now, grace));
        assert!(server_excuses(Some(now), now, grace));
        assert!(server_excuses(
            Some(now - Duration::from_secs(5)),
            now,
            grace
        ));
        assert!(!server_excuses(
            Some(now - Duration::from_secs(6)),
            now,
            grace
        ));
        // Trouble noted after the pass began still counts.
        assert!(server_excuses(
            Some(now + Duration::from_millis(10)),
            now,
            grace
        ));
    }

    #[test]
    fn a_node_is_given_the_time_its_lease_says_it_lasts() {
        let lease = |secs: Option<i32>| Lease {
            spec: Some(k8s_openapi::api::coordination::v1::LeaseSpec {
                lease_duration_seconds: secs,
                ..Default::default()
            }),
            ..Default::default()
        };
        let grace = Duration::from_secs(5);
        assert_eq!(grace_for(grace, None), grace);
        assert_eq!(grace_for(grace, Some(&lease(Some(4)))), grace);
        assert_eq!(grace_for(grace, Some(&lease(Some(0)))), grace);
        assert_eq!(
            grace_for(grace, Some(&lease(Some(40)))),
            Duration::from_secs(50)
        );
    }
}
