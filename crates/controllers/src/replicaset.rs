//! The ReplicaSet controller (upstream's pkg/controller/replicaset): keeps `spec.replicas` pods
//! matching a ReplicaSet's selector alive, made from its template.
//!
//! - Ownership: active pods (not terminal, not being deleted) that match the selector and have
//!   no controller are adopted (an ownerReference with `controller` and `blockOwnerDeletion`,
//!   after a live read confirms the ReplicaSet is not being deleted); owned pods that stop
//!   matching are released. Pods another controller owns are never touched.
//! - Too few pods: created from the template (`generateName: <rs>-`) in slow-start batches of
//!   1, 2, 4, … (a batch with an error stops the rest), at most `burst` per sync.
//! - Too many: the ones upstream would delete first go (unscheduled, then pending, not ready,
//!   lower `controller.kubernetes.io/pod-deletion-cost`, more siblings on the same node, ready
//!   for less time, more restarts, newer; the two times compared on a log2 scale).
//! - Expectations: the names created and the UIDs deleted by the last sync are remembered until
//!   the pod cache shows them, so that a sync does not act twice on a change the cache has not
//!   seen yet.
//! - Status: replicas, fullyLabeledReplicas, readyReplicas, availableReplicas (minReadySeconds),
//!   observedGeneration, and the `ReplicaFailure` condition while creating or deleting fails.
//! - Events on the ReplicaSet: SuccessfulCreate, SuccessfulDelete, FailedCreate, FailedDelete.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{Future, StreamExt};
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, ObjectMeta, OwnerReference, Time,
};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PostParams, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;

use crate::events::Events;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};

use crate::informers::Informers;

/// Upstream's burstReplicas: the most pods one sync creates or deletes.
pub const BURST_REPLICAS: usize = 500;
/// How long an expectation waits for the cache before it is given up (upstream: 5 minutes).
const EXPECTATION_TTL: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Api(#[from] kube::Error),
}

/// What one sync did and the cache has not shown yet.
#[derive(Debug)]
struct Expectation {
    uid: String,
    /// Names of pods created.
    creates: HashSet<String>,
    /// UIDs of pods deleted.
    deletes: HashSet<String>,
    since: Instant,
}

struct Ctx {
    client: kube::Client,
    rs_store: Store<ReplicaSet>,
    pods: Store<Pod>,
    events: Events,
    expectations: Mutex<HashMap<(String, String), Expectation>>,
    burst: usize,
}

/// Runs the controller until the task is dropped.
pub fn run(informers: &Informers) -> impl Future<Output = ()> + Send {
    let tracked = crate::metrics::Tracked::new("replicaset");
    let client = informers.client().clone();
    let rs_store = informers.store::<ReplicaSet>();
    let pods = informers.store::<Pod>();
    let lookup = rs_store.clone();
    let controller = Controller::for_shared_stream(
        tracked.trigger(informers.subscribe::<ReplicaSet>()),
        rs_store.clone(),
    )
    .watches_shared_stream(
        informers.subscribe::<Pod>(),
        tracked.mapper(move |pod: Arc<Pod>| pod_owners(&lookup, &pod)),
    );
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        rs_store,
        pods,
        events: Events::new(client, "replicaset-controller"),
        expectations: Mutex::default(),
        burst: BURST_REPLICAS,
    });
    controller
        .run(
            tracked.reconcile(reconcile),
            tracked.error_policy(error_policy),
            ctx,
        )
        .for_each(tracked.results())
}

/// The ReplicaSets a pod change concerns: its controller if it is a ReplicaSet, else (an
/// orphan that may be adopted) every ReplicaSet of its namespace whose selector matches it.
fn pod_owners(store: &Store<ReplicaSet>, pod: &Pod) -> Vec<ObjectRef<ReplicaSet>> {
    let ns = pod.namespace().unwrap_or_default();
    if let Some(owner) = controller_of(&pod.metadata) {
        if owner.kind == "ReplicaSet" && owner.api_version.starts_with("apps/") {
            return vec![ObjectRef::new(&owner.name).within(&ns)];
        }
        return Vec::new();
    }
    store
        .state()
        .iter()
        .filter(|rs| rs.metadata.namespace.as_deref() == Some(ns.as_str()))
        .filter(|rs| {
            rs.spec
                .as_ref()
                .is_some_and(|s| selector_matches(&s.selector, pod.metadata.labels.as_ref()))
        })
        .map(|rs| ObjectRef::from_obj(&**rs))
        .collect()
}

/// The controller ownerReference of an object.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .as_ref()?
        .iter()
        .find(|r| r.controller == Some(true))
}

/// Whether `labels` match a label selector. An empty selector matches nothing here (upstream
/// validation refuses it for ReplicaSets and Deployments); an invalid one matches nothing.
pub fn selector_matches(sel: &LabelSelector, labels: Option<&BTreeMap<String, String>>) -> bool {
    let empty = BTreeMap::new();
    let labels = labels.unwrap_or(&empty);
    let ml = sel.match_labels.as_ref();
    let me = sel.match_expressions.as_ref();
    if ml.is_none_or(|m| m.is_empty()) && me.is_none_or(|e| e.is_empty()) {
        return false;
    }
    if let Some(ml) = ml {
        if !ml.iter().all(|(k, v)| labels.get(k) == Some(v)) {
            return false;
        }
    }
    me.into_iter().flatten().all(|e| {
        let values = e.values.as_deref().unwrap_or_default();
        let got = labels.get(&e.key);
        match e.operator.as_str() {
            "In" => got.is_some_and(|v| values.contains(v)),
            "NotIn" => got.is_none_or(|v| !values.contains(v)),
            "Exists" => got.is_some(),
            "DoesNotExist" => got.is_none(),
            _ => false,
        }
    })
}

/// A pod that counts: not Succeeded/Failed and not being deleted.
pub fn is_active(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    !matches!(phase, Some("Succeeded") | Some("Failed"))
        && pod.metadata.deletion_timestamp.is_none()
}

/// When the pod became Ready, if it is.
pub fn ready_since(pod: &Pod) -> Option<Option<Timestamp>> {
    let c = pod
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")?;
    (c.status == "True").then(|| c.last_transition_time.as_ref().map(|t| t.0))
}

pub fn is_ready(pod: &Pod) -> bool {
    ready_since(pod).is_some()
}

/// Upstream's IsPodAvailable: ready for at least minReadySeconds.
pub fn is_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    match ready_since(pod) {
        None => false,
        Some(_) if min_ready_seconds <= 0 => true,
        Some(None) => false,
        Some(Some(t)) => t.as_second() + i64::from(min_ready_seconds) < now.as_second(),
    }
}

/// Seconds until a ready pod becomes available, if it is ready and not yet available.
fn until_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> Option<u64> {
    match ready_since(pod)? {
        Some(t) if min_ready_seconds > 0 => {
            let left = t.as_second() + i64::from(min_ready_seconds) + 1 - now.as_second();
            (left > 0).then_some(left as u64)
        }
        _ => None,
    }
}

/// Now, at the seconds precision the API keeps.
pub fn now() -> Timestamp {
    Timestamp::from_second(Timestamp::now().as_second()).unwrap_or_else(|_| Timestamp::now())
}

/// A status as JSON with zero, empty and null fields left out, so that a status the server
/// stores without its zeros (as upstream's omitempty does) compares equal to the one computed.
pub fn normalized<T: serde::Serialize>(status: &T) -> serde_json::Value {
    fn strip(v: serde_json::Value) -> Option<serde_json::Value> {
        use serde_json::Value;
        match v {
            Value::Null => None,
            Value::Number(n) if n.as_f64() == Some(0.0) => None,
            Value::String(s) if s.is_empty() => None,
            Value::Array(a) if a.is_empty() => None,
            Value::Array(a) => Some(Value::Array(a.into_iter().filter_map(strip).collect())),
            Value::Object(o) => {
                let o: serde_json::Map<String, Value> = o
                    .into_iter()
                    .filter_map(|(k, v)| strip(v).map(|v| (k, v)))
                    .collect();
                (!o.is_empty()).then_some(Value::Object(o))
            }
            other => Some(other),
        }
    }
    serde_json::to_value(status)
        .ok()
        .and_then(strip)
        .unwrap_or(serde_json::Value::Null)
}

/// The message of an API error as upstream's `err.Error()` reads.
pub fn error_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        other => other.to_string(),
    }
}

fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// A controller ownerReference to `owner`.
pub fn controller_ref<K: Resource<DynamicType = ()>>(owner: &K) -> OwnerReference {
    OwnerReference {
        api_version: K::api_version(&()).into(),
        kind: K::kind(&()).into(),
        name: owner.meta().name.clone().unwrap_or_default(),
        uid: owner.meta().uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Adopts (`adopt`) or releases an object for `owner` through a strategic merge patch that
/// carries the object's UID, as upstream's controller ref manager does.
pub fn owner_patch(owner_ref: &OwnerReference, obj_uid: &str, adopt: bool) -> serde_json::Value {
    if adopt {
        serde_json::json!({"metadata": {"ownerReferences": [owner_ref], "uid": obj_uid}})
    } else {
        serde_json::json!({"metadata": {
            "ownerReferences": [{"$patch": "delete", "uid": owner_ref.uid}],
            "uid": obj_uid}})
    }
}

fn phase_ordinal(pod: &Pod) -> u8 {
    match pod.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Pending") => 0,
        Some("Unknown") => 1,
        Some("Running") => 2,
        _ => 0,
    }
}

fn deletion_cost(pod: &Pod) -> i32 {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("controller.kubernetes.io/pod-deletion-cost"))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn max_restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map(|cs| cs.iter().map(|c| c.restart_count).max().unwrap_or(0))
        .unwrap_or(0)
}

/// log2 of the age in nanoseconds, -1 for the future (upstream's logarithmic scale down).
fn log_rank(t: Timestamp, now: Timestamp) -> i64 {
    let d = now.as_nanosecond() - t.as_nanosecond();
    if d > 0 {
        (d as f64).log2() as i64
    } else {
        -1
    }
}

/// Upstream's comparison of two times for deletion: the later (younger) first, zero first;
/// on a log2 scale of age from `now`, with the UID breaking ties.
fn younger_first(
    a: Option<Timestamp>,
    b: Option<Timestamp>,
    now: Timestamp,
    ua: &str,
    ub: &str,
) -> Option<bool> {
    if a == b {
        return None;
    }
    match (a, b) {
        (None, _) => Some(true),
        (_, None) => Some(false),
        (Some(a), Some(b)) => {
            let diff = log_rank(a, now) - log_rank(b, now);
            Some(if diff == 0 { ua < ub } else { diff < 0 })
        }
    }
}

/// Whether pod `a` (with `rank` `ra`: active related pods on its node) should be deleted
/// before `b`: upstream's ActivePodsWithRanks.Less.
fn delete_before(a: &Pod, ra: usize, b: &Pod, rb: usize, now: Timestamp) -> bool {
    let node = |p: &Pod| {
        p.spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default()
    };
    let (na, nb) = (node(a), node(b));
    if na != nb && (na.is_empty() || nb.is_empty()) {
        return na.is_empty();
    }
    if phase_ordinal(a) != phase_ordinal(b) {
        return phase_ordinal(a) < phase_ordinal(b);
    }
    if is_ready(a) != is_ready(b) {
        return !is_ready(a);
    }
    if deletion_cost(a) != deletion_cost(b) {
        return deletion_cost(a) < deletion_cost(b);
    }
    if ra != rb {
        return ra > rb;
    }
    let (ua, ub) = (
        a.metadata.uid.as_deref().unwrap_or(""),
        b.metadata.uid.as_deref().unwrap_or(""),
    );
    if is_ready(a) && is_ready(b) {
        let ta = ready_since(a).flatten();
        let tb = ready_since(b).flatten();
        if let Some(r) = younger_first(ta, tb, now, ua, ub) {
            return r;
        }
    }
    if max_restarts(a) != max_restarts(b) {
        return max_restarts(a) > max_restarts(b);
    }
    let ca = a.metadata.creation_timestamp.as_ref().map(|t| t.0);
    let cb = b.metadata.creation_timestamp.as_ref().map(|t| t.0);
    younger_first(ca, cb, now, ua, ub).unwrap_or(false)
}

/// The `diff` pods of `pods` to delete first; `related` are the pods of the ReplicaSet and its
/// siblings (same controller), whose count per node ranks the doubled-up pods first.
pub fn pods_to_delete(
    pods: &[Arc<Pod>],
    related: &[Arc<Pod>],
    diff: usize,
    now: Timestamp,
) -> Vec<Arc<Pod>> {
    if diff >= pods.len() {
        return pods.to_vec();
    }
    let mut on_node: HashMap<String, usize> = HashMap::new();
    for p in related.iter().filter(|p| is_active(p)) {
        let n = p
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default();
        *on_node.entry(n).or_default() += 1;
    }
    let mut ranked: Vec<(Arc<Pod>, usize)> = pods
        .iter()
        .map(|p| {
            let n = p
                .spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .unwrap_or_default();
            (p.clone(), on_node.get(&n).copied().unwrap_or(0))
        })
        .collect();
    ranked.sort_by(|(a, ra), (b, rb)| {
        if delete_before(a, *ra, b, *rb, now) {
            std::cmp::Ordering::Less
        } else if delete_before(b, *rb, a, *ra, now) {
            std::cmp::Ordering::Greater
        } else {
            std::cmp::Ordering::Equal
        }
    });
    ranked.into_iter().take(diff).map(|(p, _)| p).collect()
}

/// Upstream's slowStartBatch sizes for `count` items from an initial batch of `initial`:
/// 1, 2, 4, … each at most what is left.
pub fn slow_start_batches(count: usize, initial: usize) -> Vec<usize> {
    let mut out = Vec::new();
    let mut left = count;
    let mut size = initial.max(1).min(left);
    while size > 0 {
        out.push(size);
        left -= size;
        size = (2 * size).min(left);
    }
    out
}

/// The pod a ReplicaSet makes from its template.
fn pod_from_template(rs: &ReplicaSet) -> Pod {
    let template = rs
        .spec
        .as_ref()
        .and_then(|s| s.template.clone())
        .unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", rs.name_any())),
            namespace: rs.namespace(),
            labels: meta.labels,
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![controller_ref(rs)]),
            ..Default::default()
        },
        spec: template.spec,
        status: None,
    }
}

impl Ctx {
    fn key(rs: &ReplicaSet) -> (String, String) {
        (rs.namespace().unwrap_or_default(), rs.name_any())
    }

    /// Whether the cache has seen everything the last sync did (or it is too old to wait for).
    fn satisfied(&self, rs: &ReplicaSet, pods: &[Arc<Pod>]) -> bool {
        let mut all = self.expectations.lock().unwrap();
        let key = Self::key(rs);
        let Some(e) = all.get_mut(&key) else {
            return true;
        };
        if Some(&e.uid) != rs.metadata.uid.as_ref() || e.since.elapsed() > EXPECTATION_TTL {
            all.remove(&key);
            return true;
        }
        if !e.creates.is_empty() {
            let names: HashSet<&str> = pods
                .iter()
                .filter_map(|p| p.metadata.name.as_deref())
                .collect();
            e.creates.retain(|n| !names.contains(n.as_str()));
        }
        if !e.deletes.is_empty() {
            let live: HashSet<&str> = pods
                .iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .filter_map(|p| p.metadata.uid.as_deref())
                .collect();
            e.deletes.retain(|u| live.contains(u.as_str()));
        }
        if e.creates.is_empty() && e.deletes.is_empty() {
            all.remove(&key);
            return true;
        }
        false
    }

    fn expect(&self, rs: &ReplicaSet, creates: HashSet<String>, deletes: HashSet<String>) {
        if creates.is_empty() && deletes.is_empty() {
            return;
        }
        self.expectations.lock().unwrap().insert(
            Self::key(rs),
            Expectation {
                uid: rs.metadata.uid.clone().unwrap_or_default(),
                creates,
                deletes,
                since: Instant::now(),
            },
        );
    }
}

/// A failure to create or delete pods, kept for the ReplicaFailure condition.
struct ManageError {
    reason: &'static str,
    message: String,
}

async fn reconcile(rs: Arc<ReplicaSet>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if ctx.pods.wait_until_ready().await.is_err() {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    let ns = rs.namespace().unwrap_or_default();
    let name = rs.name_any();
    let Some(spec) = rs.spec.as_ref() else {
        return Ok(Action::await_change());
    };
    let uid = rs.metadata.uid.clone().unwrap_or_default();
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let in_ns: Vec<Arc<Pod>> = ctx
        .pods
        .state()
        .into_iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(ns.as_str()))
        .collect();
    let satisfied = ctx.satisfied(&rs, &in_ns);

    // Claim: keep ours that match, release ours that do not, adopt matching orphans.
    let deleting = rs.metadata.deletion_timestamp.is_some();
    let me = controller_ref(&*rs);
    let mut owned: Vec<Arc<Pod>> = Vec::new();
    let mut rechecked: Option<bool> = None;
    for pod in in_ns.iter().filter(|p| is_active(p)) {
        let matches = selector_matches(&spec.selector, pod.metadata.labels.as_ref());
        let pod_uid = pod.metadata.uid.clone().unwrap_or_default();
        match controller_of(&pod.metadata) {
            Some(r) if r.uid == uid => {
                if matches {
                    owned.push(pod.clone());
                } else if !deleting {
                    let patch = owner_patch(&me, &pod_uid, false);
                    match pods_api
                        .patch(
                            &pod.name_any(),
                            &crate::patch_params(),
                            &Patch::Strategic(&patch),
                        )
                        .await
                    {
                        Ok(_) => {}
                        Err(e) if is_not_found(&e) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            Some(_) => {}
            None => {
                if !matches || deleting {
                    continue;
                }
                // Before the first adoption, a live read: the ReplicaSet must still be this one
                // and not being deleted (upstream's RecheckDeletionTimestamp).
                if rechecked.is_none() {
                    let api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), &ns);
                    let fresh = api.get_opt(&name).await?;
                    rechecked = Some(fresh.is_some_and(|f| {
                        f.metadata.uid.as_deref() == Some(uid.as_str())
                            && f.metadata.deletion_timestamp.is_none()
                    }));
                }
                if rechecked != Some(true) {
                    continue;
                }
                let patch = owner_patch(&me, &pod_uid, true);
                match pods_api
                    .patch(
                        &pod.name_any(),
                        &crate::patch_params(),
                        &Patch::Strategic(&patch),
                    )
                    .await
                {
                    Ok(p) => {
                        if is_active(&p) {
                            owned.push(Arc::new(p));
                        }
                    }
                    Err(e)
                        if is_not_found(&e)
                            || matches!(&e, kube::Error::Api(s) if s.code == 409 || s.code == 422) =>
                        {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }

    let mut manage_err = None;
    if satisfied && !deleting {
        manage_err = manage_replicas(&rs, &owned, &in_ns, &ctx, &pods_api).await;
    }

    // Status.
    let now = now();
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let template_labels = spec
        .template
        .as_ref()
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let fully_labeled = owned
        .iter()
        .filter(|p| {
            let l = p.metadata.labels.as_ref();
            template_labels
                .iter()
                .all(|(k, v)| l.and_then(|l| l.get(k)) == Some(v))
        })
        .count();
    let ready = owned.iter().filter(|p| is_ready(p)).count();
    let available = owned
        .iter()
        .filter(|p| is_available(p, min_ready, now))
        .count();
    let old = rs.status.clone().unwrap_or_default();
    let mut conditions = old.conditions.clone().unwrap_or_default();
    let has_failure = conditions.iter().any(|c| c.type_ == "ReplicaFailure");
    match &manage_err {
        Some(e) if !has_failure => conditions.push(ReplicaSetCondition {
            type_: "ReplicaFailure".into(),
            status: "True".into(),
            reason: Some(e.reason.into()),
            message: Some(e.message.clone()),
            last_transition_time: Some(Time(now)),
        }),
        None if has_failure => conditions.retain(|c| c.type_ != "ReplicaFailure"),
        _ => {}
    }
    let status = ReplicaSetStatus {
        replicas: owned.len() as i32,
        fully_labeled_replicas: Some(fully_labeled as i32),
        ready_replicas: Some(ready as i32),
        available_replicas: Some(available as i32),
        observed_generation: rs.metadata.generation,
        conditions: (!conditions.is_empty()).then_some(conditions),
        terminating_replicas: old.terminating_replicas,
    };
    if normalized(&status) != normalized(&old) {
        let mut new = (*rs).clone();
        new.status = Some(status);
        new.metadata.managed_fields = None;
        let api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), &ns);
        let pp = PostParams {
            field_manager: Some(crate::MANAGER.into()),
            ..Default::default()
        };
        match api.replace_status(&name, &pp, &new).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {
                return Ok(Action::requeue(Duration::from_millis(200)))
            }
            Err(e) if is_not_found(&e) => return Ok(Action::await_change()),
            Err(e) => return Err(e.into()),
        }
    }
    if manage_err.is_some() {
        return Ok(Action::requeue(Duration::from_secs(5)));
    }
    if !satisfied {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    // A ready pod becomes available with time only: look again then.
    if let Some(s) = owned
        .iter()
        .filter_map(|p| until_available(p, min_ready, now))
        .min()
    {
        return Ok(Action::requeue(Duration::from_secs(s)));
    }
    Ok(Action::await_change())
}

/// Creates or deletes pods towards `spec.replicas`.
async fn manage_replicas(
    rs: &ReplicaSet,
    owned: &[Arc<Pod>],
    in_ns: &[Arc<Pod>],
    ctx: &Ctx,
    pods_api: &Api<Pod>,
) -> Option<ManageError> {
    let want = rs
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1)
        .max(0) as usize;
    if owned.len() < want {
        let count = (want - owned.len()).min(ctx.burst);
        let pod = pod_from_template(rs);
        let pp = PostParams {
            field_manager: Some(crate::MANAGER.into()),
            ..Default::default()
        };
        let mut created = HashSet::new();
        let mut failure = None;
        'batches: for size in slow_start_batches(count, 1) {
            let results =
                futures::future::join_all((0..size).map(|_| pods_api.create(&pp, &pod))).await;
            for r in results {
                match r {
                    Ok(p) => {
                        let n = p.name_any();
                        ctx.events
                            .record(
                                rs,
                                EventType::Normal,
                                "SuccessfulCreate",
                                "Create",
                                format!("Created pod: {n}"),
                            )
                            .await;
                        created.insert(n);
                    }
                    Err(e) => {
                        let msg = error_message(&e);
                        ctx.events
                            .record(
                                rs,
                                EventType::Warning,
                                "FailedCreate",
                                "Create",
                                format!("Error creating: {msg}"),
                            )
                            .await;
                        failure = Some(ManageError {
                            reason: "FailedCreate",
                            message: msg,
                        });
                    }
                }
            }
            if failure.is_some() {
                break 'batches;
            }
        }
        ctx.expect(rs, created, HashSet::new());
        return failure;
    }
    if owned.len() > want {
        let diff = (owned.len() - want).min(ctx.burst);
        // Related: the pods of this ReplicaSet and of its siblings under the same controller.
        let owner_uid = controller_of(&rs.metadata).map(|r| r.uid.clone());
        let siblings: HashSet<String> = match &owner_uid {
            Some(o) => ctx
                .rs_store
                .state()
                .iter()
                .filter(|s| s.metadata.namespace == rs.metadata.namespace)
                .filter(|s| controller_of(&s.metadata).is_some_and(|r| &r.uid == o))
                .filter_map(|s| s.metadata.uid.clone())
                .collect(),
            None => rs.metadata.uid.iter().cloned().collect(),
        };
        let related: Vec<Arc<Pod>> = in_ns
            .iter()
            .filter(|p| controller_of(&p.metadata).is_some_and(|r| siblings.contains(&r.uid)))
            .cloned()
            .collect();
        let victims = pods_to_delete(owned, &related, diff, now());
        let deletes: HashSet<String> = victims
            .iter()
            .filter_map(|p| p.metadata.uid.clone())
            .collect();
        ctx.expect(rs, HashSet::new(), deletes);
        let results = futures::future::join_all(victims.iter().map(|p| {
            let dp = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: p.metadata.uid.clone(),
                    resource_version: None,
                }),
                ..Default::default()
            };
            let name = p.name_any();
            async move { (name.clone(), pods_api.delete(&name, &dp).await) }
        }))
        .await;
        let mut failure = None;
        for (n, r) in results {
            match r {
                Ok(_) => {
                    ctx.events
                        .record(
                            rs,
                            EventType::Normal,
                            "SuccessfulDelete",
                            "Delete",
                            format!("Deleted pod: {n}"),
                        )
                        .await
                }
                Err(e) if is_not_found(&e) => {}
                Err(e) => {
                    let msg = error_message(&e);
                    ctx.events
                        .record(
                            rs,
                            EventType::Warning,
                            "FailedDelete",
                            "Delete",
                            format!("Error deleting: {msg}"),
                        )
                        .await;
                    failure = Some(ManageError {
                        reason: "FailedDelete",
                        message: msg,
                    });
                }
            }
        }
        if failure.is_some() {
            // The failed ones will not disappear from the cache: stop waiting for them.
            ctx.expectations.lock().unwrap().remove(&Ctx::key(rs));
        }
        return failure;
    }
    None
}

fn error_policy(rs: Arc<ReplicaSet>, error: &Error, _ctx: Arc<Ctx>) -> Action {
    tracing::warn!(replicaset = %ObjectRef::from_obj(rs.as_ref()), %error, "replicaset sync");
    Action::requeue(Duration::from_secs(2))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    fn pod(name: &str, node: &str, phase: &str, ready_at: Option<i64>, created: i64) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                uid: Some(format!("uid-{name}")),
                creation_timestamp: Some(Time(ts(created))),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: (!node.is_empty()).then(|| node.into()),
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                conditions: ready_at.map(|t| {
                    vec![PodCondition {
                        type_: "Ready".into(),
                        status: "True".into(),
                        last_transition_time: Some(Time(ts(t))),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }),
        })
    }

    fn names(pods: &[Arc<Pod>]) -> Vec<String> {
        pods.iter().map(|p| p.name_any()).collect()
    }

    #[test]
    fn pods_are_deleted_in_upstreams_order() {
        let now = ts(1_000_000);
        let running_old = pod("running-old", "n3", "Running", Some(1000), 900);
        let running_new = pod("running-new", "n2", "Running", Some(999_990), 999_980);
        let not_ready = pod("not-ready", "n1", "Running", None, 900);
        let pending = pod("pending", "n1", "Pending", None, 900);
        let unscheduled = pod("unscheduled", "", "Pending", None, 900);
        let all = vec![
            running_old.clone(),
            running_new.clone(),
            not_ready.clone(),
            pending.clone(),
            unscheduled.clone(),
        ];
        assert_eq!(
            names(&pods_to_delete(&all, &all, 4, now)),
            ["unscheduled", "pending", "not-ready", "running-new"]
        );
        // Everything goes when more are asked for than there are.
        assert_eq!(pods_to_delete(&all, &all, 9, now).len(), 5);
    }

    #[test]
    fn doubled_up_pods_and_deletion_cost_come_first() {
        let now = ts(1_000_000);
        let a = pod("a", "n1", "Running", Some(1000), 900);
        let b = pod("b", "n2", "Running", Some(1000), 900);
        let c = pod("c", "n2", "Running", Some(1000), 900);
        let all = vec![a.clone(), b.clone(), c.clone()];
        let first = pods_to_delete(&all, &all, 1, now);
        assert!(["b", "c"].contains(&first[0].name_any().as_str()));
        // A lower deletion cost wins over being doubled up.
        let mut cheap = (*a).clone();
        cheap.metadata.annotations = Some(BTreeMap::from([(
            "controller.kubernetes.io/pod-deletion-cost".to_string(),
            "-5".to_string(),
        )]));
        let all = vec![Arc::new(cheap), b, c];
        assert_eq!(names(&pods_to_delete(&all, &all, 1, now)), ["a"]);
    }

    #[test]
    fn younger_first_on_a_log_scale_with_restarts_between() {
        let now = ts(1_000_000);
        // Ready 10 s and 1000 s ago: the younger goes first.
        let young = pod("young", "n1", "Running", Some(999_990), 100);
        let old = pod("old", "n2", "Running", Some(999_000), 100);
        let all = vec![old.clone(), young.clone()];
        assert_eq!(names(&pods_to_delete(&all, &all, 1, now)), ["young"]);
        // Same ready time: more restarts first.
        let mut restarted = (*pod("restarted", "n1", "Running", Some(999_000), 100)).clone();
        restarted.status.as_mut().unwrap().container_statuses =
            Some(vec![k8s_openapi::api::core::v1::ContainerStatus {
                restart_count: 3,
                ..Default::default()
            }]);
        let all = vec![old, Arc::new(restarted)];
        assert_eq!(names(&pods_to_delete(&all, &all, 1, now)), ["restarted"]);
    }

    #[test]
    fn slow_start_doubles() {
        assert_eq!(slow_start_batches(0, 1), Vec::<usize>::new());
        assert_eq!(slow_start_batches(1, 1), [1]);
        assert_eq!(slow_start_batches(10, 1), [1, 2, 4, 3]);
        assert_eq!(slow_start_batches(15, 1), [1, 2, 4, 8]);
        assert_eq!(slow_start_batches(500, 1).iter().sum::<usize>(), 500);
    }

    #[test]
    fn selectors_match_as_upstream() {
        let labels = BTreeMap::from([
            ("app".to_string(), "web".to_string()),
            ("tier".to_string(), "front".to_string()),
        ]);
        let sel = |ml: &[(&str, &str)], me: Vec<LabelSelectorRequirement>| LabelSelector {
            match_labels: Some(
                ml.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            match_expressions: Some(me),
        };
        let req = |k: &str, op: &str, v: &[&str]| LabelSelectorRequirement {
            key: k.into(),
            operator: op.into(),
            values: Some(v.iter().map(|s| s.to_string()).collect()),
        };
        assert!(selector_matches(
            &sel(&[("app", "web")], vec![]),
            Some(&labels)
        ));
        assert!(!selector_matches(
            &sel(&[("app", "db")], vec![]),
            Some(&labels)
        ));
        assert!(selector_matches(
            &sel(
                &[],
                vec![
                    req("tier", "In", &["front", "back"]),
                    req("x", "DoesNotExist", &[])
                ]
            ),
            Some(&labels)
        ));
        assert!(!selector_matches(
            &sel(&[], vec![req("tier", "NotIn", &["front"])]),
            Some(&labels)
        ));
        assert!(!selector_matches(
            &sel(&[], vec![req("app", "Bogus", &[])]),
            Some(&labels)
        ));
        assert!(!selector_matches(&LabelSelector::default(), Some(&labels)));
    }

    #[test]
    fn availability_waits_min_ready_seconds() {
        let p = pod("p", "n", "Running", Some(100), 50);
        assert!(is_available(&p, 0, ts(100)));
        assert!(!is_available(&p, 10, ts(105)));
        assert!(is_available(&p, 10, ts(111)));
        assert_eq!(until_available(&p, 10, ts(105)), Some(6));
        assert!(!is_available(
            &pod("q", "n", "Running", None, 50),
            0,
            ts(200)
        ));
    }
}
