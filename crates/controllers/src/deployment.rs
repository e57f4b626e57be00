//! The Deployment controller (upstream's pkg/controller/deployment): rolls a Deployment's pod
//! template out through ReplicaSets.
//!
//! - ReplicaSets matching the selector are adopted (released when they stop matching). The one
//!   whose template equals the Deployment's (ignoring `pod-template-hash`) is the new one; the
//!   others are old. A new one is named `<deployment>-<hash>`, the hash (fnv32a of the template
//!   and `status.collisionCount`, in upstream's safe alphabet) also put on its selector and
//!   template as the `pod-template-hash` label; a name taken by another template bumps
//!   `collisionCount`.
//! - RollingUpdate: the new ReplicaSet grows up to `replicas + maxSurge` pods in all (percent
//!   rounded up), old ones shrink while `replicas - maxUnavailable` (percent rounded down; both
//!   zero means one unavailable) stay available, unhealthy old pods first. Recreate: old ones to
//!   zero, wait for their pods to be gone, then the new one to `replicas`.
//! - Scaling (replicas changed, or paused) is proportional across the active ReplicaSets, using
//!   their `deployment.kubernetes.io/desired-replicas` / `max-replicas` annotations.
//! - Revisions: `deployment.kubernetes.io/revision` on each ReplicaSet (max of the old ones + 1
//!   for the new one, so `kubectl rollout undo`, which puts an old template back, bumps the old
//!   ReplicaSet's revision and records the previous ones in `revision-history`) and on the
//!   Deployment; the Deployment's other annotations (change-cause …) are copied to the new
//!   ReplicaSet. Old ReplicaSets with no pods beyond `revisionHistoryLimit` are deleted.
//! - Status and conditions as upstream computes them: Available (MinimumReplicasAvailable /
//!   MinimumReplicasUnavailable), Progressing (NewReplicaSetCreated, FoundNewReplicaSet,
//!   ReplicaSetUpdated, NewReplicaSetAvailable, ProgressDeadlineExceeded, DeploymentPaused,
//!   DeploymentResumed, ReplicaSetCreateError), ReplicaFailure copied from the ReplicaSets.
//! - Events on the Deployment: ScalingReplicaSet ("Scaled up replica set web-… from 0 to 3").

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::{Future, StreamExt};
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet, ReplicaSetSpec,
};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, Patch, PostParams, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;

use crate::events::Events;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::ResourceExt;

use crate::informers::Informers;
use crate::replicaset::{
    controller_of, controller_ref, error_message, normalized, now, owner_patch, selector_matches,
};

pub const REVISION: &str = "deployment.kubernetes.io/revision";
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
pub const HASH_LABEL: &str = "pod-template-hash";
/// Upstream's default `--deployment-controller` limit on the revision-history annotation.
const REVISION_HISTORY_CHARS: usize = 2000;

const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
const TIMED_OUT: &str = "ProgressDeadlineExceeded";
const PAUSED: &str = "DeploymentPaused";
const RESUMED: &str = "DeploymentResumed";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Api(#[from] kube::Error),
    #[error("{0}")]
    Retry(String),
}

struct Ctx {
    client: kube::Client,
    rs_store: Store<ReplicaSet>,
    pods: Store<Pod>,
    events: Events,
}

/// Runs the controller until the task is dropped.
pub fn run(informers: &Informers) -> impl Future<Output = ()> + Send {
    let tracked = crate::metrics::Tracked::new("deployment");
    let client = informers.client().clone();
    let store = informers.store::<Deployment>();
    let rs_store = informers.store::<ReplicaSet>();
    let pods = informers.store::<Pod>();
    let (deploys, sets) = (store.clone(), rs_store.clone());
    let controller =
        Controller::for_shared_stream(tracked.trigger(informers.subscribe::<Deployment>()), store)
            .watches_shared_stream(
                informers.subscribe::<ReplicaSet>(),
                tracked.mapper(move |rs: Arc<ReplicaSet>| rs_owners(&deploys, &rs)),
            )
            // Recreate waits for the old pods to be gone: their deletion is news.
            .watches_shared_stream(
                informers.subscribe::<Pod>(),
                tracked.mapper(move |pod: Arc<Pod>| pod_owner(&sets, &pod)),
            );
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        rs_store,
        pods,
        events: Events::new(client, "deployment-controller"),
    });
    controller
        .run(
            tracked.reconcile(reconcile),
            tracked.error_policy(error_policy),
            ctx,
        )
        .for_each(tracked.results())
}

fn rs_owners(store: &Store<Deployment>, rs: &ReplicaSet) -> Vec<ObjectRef<Deployment>> {
    let ns = rs.namespace().unwrap_or_default();
    if let Some(owner) = controller_of(&rs.metadata) {
        if owner.kind == "Deployment" && owner.api_version.starts_with("apps/") {
            return vec![ObjectRef::new(&owner.name).within(&ns)];
        }
        return Vec::new();
    }
    store
        .state()
        .iter()
        .filter(|d| d.metadata.namespace.as_deref() == Some(ns.as_str()))
        .filter(|d| {
            d.spec
                .as_ref()
                .is_some_and(|s| selector_matches(&s.selector, rs.metadata.labels.as_ref()))
        })
        .map(|d| ObjectRef::from_obj(&**d))
        .collect()
}

fn pod_owner(sets: &Store<ReplicaSet>, pod: &Pod) -> Option<ObjectRef<Deployment>> {
    pod.metadata.deletion_timestamp.as_ref()?;
    let owner = controller_of(&pod.metadata)?;
    if owner.kind != "ReplicaSet" {
        return None;
    }
    let ns = pod.namespace().unwrap_or_default();
    let rs = sets.get(&ObjectRef::new(&owner.name).within(&ns))?;
    let d = controller_of(&rs.metadata)?;
    (d.kind == "Deployment").then(|| ObjectRef::new(&d.name).within(&ns))
}

// ---- pure helpers (upstream's deployment/util) ----

fn replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

fn available(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0)
}

fn desired(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

fn is_rolling(d: &Deployment) -> bool {
    d.spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        != Some("Recreate")
}

/// An int-or-percent of `total`, percents rounded up or down.
pub fn scaled_value(v: Option<&IntOrString>, total: i32, round_up: bool) -> i32 {
    match v {
        None => 0,
        Some(IntOrString::Int(i)) => *i,
        Some(IntOrString::String(s)) => {
            let Some(p) = s.strip_suffix('%').and_then(|p| p.parse::<i64>().ok()) else {
                return s.parse().unwrap_or(0);
            };
            let x = p * i64::from(total);
            let v = if round_up {
                (x + 99).div_euclid(100)
            } else {
                x.div_euclid(100)
            };
            v as i32
        }
    }
}

/// Upstream's ResolveFenceposts: (maxSurge, maxUnavailable) for `desired` replicas.
pub fn resolve_fenceposts(
    surge: Option<&IntOrString>,
    unavailable: Option<&IntOrString>,
    desired: i32,
) -> (i32, i32) {
    let s = scaled_value(surge, desired, true);
    let u = scaled_value(unavailable, desired, false);
    if s == 0 && u == 0 {
        return (0, 1);
    }
    (s, u)
}

fn fenceposts(d: &Deployment) -> (i32, i32) {
    let ru = d
        .spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref());
    let pct = IntOrString::String("25%".into());
    let surge = ru.map_or(Some(&pct), |r| r.max_surge.as_ref());
    let unavail = ru.map_or(Some(&pct), |r| r.max_unavailable.as_ref());
    resolve_fenceposts(surge, unavail, desired(d))
}

fn max_surge(d: &Deployment) -> i32 {
    if !is_rolling(d) {
        return 0;
    }
    fenceposts(d).0
}

fn max_unavailable(d: &Deployment) -> i32 {
    if !is_rolling(d) || desired(d) == 0 {
        return 0;
    }
    fenceposts(d).1.min(desired(d))
}

/// The new ReplicaSet's size for this step of a rollout (upstream's NewRSNewReplicas).
pub fn new_rs_new_replicas(
    rolling: bool,
    desired: i32,
    surge: i32,
    all_replicas: i32,
    new_replicas: i32,
) -> i32 {
    if !rolling {
        return desired;
    }
    let max_total = desired + surge;
    if all_replicas >= max_total {
        return new_replicas;
    }
    let up = (max_total - all_replicas).min(desired - new_replicas);
    new_replicas + up
}

/// fnv32a.
fn fnv32a(data: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in data {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// Upstream's rand.SafeEncodeString: each character to one of an alphabet with no vowels.
fn safe_encode(s: &str) -> String {
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    s.chars()
        .map(|c| ALPHANUMS[(c as usize) % ALPHANUMS.len()] as char)
        .collect()
}

/// The pod-template-hash of a template: fnv32a of the template (its JSON form here) and the
/// collision count, its decimal value in upstream's safe alphabet.
pub fn template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let mut bytes = serde_json::to_vec(template).unwrap_or_default();
    if let Some(c) = collision_count {
        let mut b = [0u8; 8];
        b[..4].copy_from_slice(&(c as u32).to_le_bytes());
        bytes.extend_from_slice(&b);
    }
    safe_encode(&fnv32a(&bytes).to_string())
}

fn without_hash(t: &PodTemplateSpec) -> serde_json::Value {
    let mut t = t.clone();
    if let Some(m) = t.metadata.as_mut() {
        if let Some(l) = m.labels.as_mut() {
            l.remove(HASH_LABEL);
            if l.is_empty() {
                m.labels = None;
            }
        }
    }
    serde_json::to_value(&t).unwrap_or_default()
}

/// Whether two templates are equal but for the pod-template-hash label.
pub fn equal_ignore_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    without_hash(a) == without_hash(b)
}

fn revision(rs: &ReplicaSet) -> i64 {
    rs.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(REVISION))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn by_creation(a: &ReplicaSet, b: &ReplicaSet) -> std::cmp::Ordering {
    let ta = a.metadata.creation_timestamp.as_ref().map(|t| t.0);
    let tb = b.metadata.creation_timestamp.as_ref().map(|t| t.0);
    ta.cmp(&tb).then_with(|| a.name_any().cmp(&b.name_any()))
}

fn annotation_i32(rs: &ReplicaSet, key: &str) -> Option<i32> {
    rs.metadata.annotations.as_ref()?.get(key)?.parse().ok()
}

/// Sets the desired-replicas and max-replicas annotations; whether they changed.
fn set_replicas_annotations(rs: &mut ReplicaSet, desired: i32, max: i32) -> bool {
    let a = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    let mut changed = false;
    for (k, v) in [(DESIRED_REPLICAS, desired), (MAX_REPLICAS, max)] {
        let v = v.to_string();
        if a.get(k) != Some(&v) {
            a.insert(k.into(), v);
            changed = true;
        }
    }
    changed
}

/// Annotations of a Deployment that are not copied to its ReplicaSets.
fn skip_copy(key: &str) -> bool {
    matches!(
        key,
        "kubectl.kubernetes.io/last-applied-configuration"
            | REVISION
            | REVISION_HISTORY
            | DESIRED_REPLICAS
            | MAX_REPLICAS
            | "deprecated.deployment.rollback.to"
    )
}

/// Upstream's SetNewReplicaSetAnnotations: copies the Deployment's annotations, raises the
/// revision to `new_revision` (keeping the old one in revision-history), and on creation sets
/// the replicas annotations. Whether anything changed.
pub fn set_new_rs_annotations(
    d: &Deployment,
    rs: &mut ReplicaSet,
    new_revision: i64,
    exists: bool,
) -> bool {
    let mut changed = false;
    let a = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    for (k, v) in d.metadata.annotations.iter().flatten() {
        if skip_copy(k) || a.get(k) == Some(v) {
            continue;
        }
        a.insert(k.clone(), v.clone());
        changed = true;
    }
    let old = a.get(REVISION).cloned();
    let old_int = match old.as_deref() {
        None => 0,
        Some(s) => match s.parse::<i64>() {
            Ok(v) => v,
            Err(_) => return changed,
        },
    };
    if old_int < new_revision {
        a.insert(REVISION.into(), new_revision.to_string());
        changed = true;
        if let Some(old) = old {
            let history = a.get(REVISION_HISTORY).cloned().unwrap_or_default();
            if history.is_empty() {
                a.insert(REVISION_HISTORY.into(), old);
            } else {
                let mut parts: Vec<&str> = history.split(',').collect();
                let mut total = history.len() + old.len() + 1;
                let mut start = 0;
                while total > REVISION_HISTORY_CHARS && start < parts.len() {
                    total -= parts[start].len() + 1;
                    start += 1;
                }
                if total <= REVISION_HISTORY_CHARS {
                    parts = parts.split_off(start);
                    parts.push(&old);
                    a.insert(REVISION_HISTORY.into(), parts.join(","));
                }
            }
        }
    }
    if !exists && set_replicas_annotations(rs, desired(d), desired(d) + max_surge(d)) {
        changed = true;
    }
    changed
}

fn new_condition(type_: &str, status: &str, reason: &str, message: String) -> DeploymentCondition {
    let t = Time(now());
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(t.clone()),
        last_transition_time: Some(t),
    }
}

fn get_condition<'a>(s: &'a DeploymentStatus, type_: &str) -> Option<&'a DeploymentCondition> {
    s.conditions.as_ref()?.iter().find(|c| c.type_ == type_)
}

/// Upstream's SetDeploymentCondition: nothing if status and reason are the same; the
/// transition time kept if only the reason changed.
fn set_condition(s: &mut DeploymentStatus, mut c: DeploymentCondition) {
    if let Some(cur) = get_condition(s, &c.type_) {
        if cur.status == c.status && cur.reason == c.reason {
            return;
        }
        if cur.status == c.status {
            c.last_transition_time = cur.last_transition_time.clone();
        }
    }
    remove_condition(s, &c.type_);
    s.conditions.get_or_insert_with(Vec::new).push(c);
}

fn remove_condition(s: &mut DeploymentStatus, type_: &str) {
    if let Some(cs) = s.conditions.as_mut() {
        cs.retain(|c| c.type_ != type_);
        if cs.is_empty() {
            s.conditions = None;
        }
    }
}

fn progress_deadline(d: &Deployment) -> Option<i32> {
    d.spec
        .as_ref()
        .and_then(|s| s.progress_deadline_seconds)
        .filter(|s| *s != i32::MAX)
}

fn deployment_complete(d: &Deployment, s: &DeploymentStatus) -> bool {
    let n = desired(d);
    s.updated_replicas == Some(n)
        && s.replicas == Some(n)
        && s.available_replicas == Some(n)
        && s.observed_generation >= d.metadata.generation
}

fn deployment_progressing(d: &Deployment, new: &DeploymentStatus) -> bool {
    let old = d.status.clone().unwrap_or_default();
    let g = |v: Option<i32>| v.unwrap_or(0);
    let old_old = g(old.replicas) - g(old.updated_replicas);
    let new_old = g(new.replicas) - g(new.updated_replicas);
    g(new.updated_replicas) > g(old.updated_replicas)
        || new_old < old_old
        || g(new.ready_replicas) > g(old.ready_replicas)
        || g(new.available_replicas) > g(old.available_replicas)
}

fn deployment_timed_out(d: &Deployment, s: &DeploymentStatus) -> bool {
    let Some(deadline) = progress_deadline(d) else {
        return false;
    };
    let Some(c) = get_condition(s, "Progressing") else {
        return false;
    };
    match c.reason.as_deref() {
        Some(NEW_RS_AVAILABLE) => false,
        Some(TIMED_OUT) => true,
        _ => c
            .last_update_time
            .as_ref()
            .is_some_and(|t| t.0.as_second() + i64::from(deadline) < now().as_second()),
    }
}

/// Upstream's calculateStatus.
fn calculate_status(
    all: &[&ReplicaSet],
    new: Option<&ReplicaSet>,
    d: &Deployment,
) -> DeploymentStatus {
    let st = |rs: &ReplicaSet| rs.status.clone().unwrap_or_default();
    let available_n: i32 = all.iter().map(|r| available(r)).sum();
    let total: i32 = all.iter().map(|r| replicas(r)).sum();
    let old = d.status.clone().unwrap_or_default();
    let mut s = DeploymentStatus {
        observed_generation: d.metadata.generation,
        replicas: Some(all.iter().map(|r| st(r).replicas).sum()),
        updated_replicas: Some(new.map(|r| st(r).replicas).unwrap_or(0)),
        ready_replicas: Some(all.iter().map(|r| st(r).ready_replicas.unwrap_or(0)).sum()),
        available_replicas: Some(available_n),
        unavailable_replicas: Some((total - available_n).max(0)),
        collision_count: old.collision_count,
        conditions: old.conditions.clone(),
        terminating_replicas: old.terminating_replicas,
    };
    if available_n >= desired(d) - max_unavailable(d) {
        set_condition(
            &mut s,
            new_condition(
                "Available",
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.".into(),
            ),
        );
    } else {
        set_condition(
            &mut s,
            new_condition(
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.".into(),
            ),
        );
    }
    s
}

/// What one sync of one Deployment works on.
struct Sync<'a> {
    ctx: &'a Ctx,
    d: Deployment,
    /// Where the status or revision changes since the last write, if any, are.
    requeue: Option<Duration>,
}

async fn reconcile(d: Arc<Deployment>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if ctx.rs_store.wait_until_ready().await.is_err() || ctx.pods.wait_until_ready().await.is_err()
    {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    let mut s = Sync {
        ctx: &ctx,
        d: (*d).clone(),
        requeue: None,
    };
    s.d.metadata.managed_fields = None;
    s.run().await?;
    Ok(match s.requeue.or_else(|| stuck_requeue(&s.d)) {
        Some(after) => Action::requeue(after),
        None => Action::await_change(),
    })
}

/// Upstream's requeueStuckDeployment: look again when the progress deadline passes.
fn stuck_requeue(d: &Deployment) -> Option<Duration> {
    let deadline = progress_deadline(d)?;
    let s = d.status.as_ref()?;
    let c = get_condition(s, "Progressing")?;
    if matches!(
        c.reason.as_deref(),
        Some(NEW_RS_AVAILABLE) | Some(TIMED_OUT)
    ) || deployment_complete(d, s)
    {
        return None;
    }
    let from = c.last_update_time.as_ref()?.0.as_second();
    let left = from + i64::from(deadline) + 1 - now().as_second();
    Some(Duration::from_secs(left.max(1) as u64))
}

impl Sync<'_> {
    fn ns(&self) -> String {
        self.d.namespace().unwrap_or_default()
    }

    fn rs_api(&self) -> Api<ReplicaSet> {
        Api::namespaced(self.ctx.client.clone(), &self.ns())
    }

    fn api(&self) -> Api<Deployment> {
        Api::namespaced(self.ctx.client.clone(), &self.ns())
    }

    fn post_params() -> PostParams {
        PostParams {
            field_manager: Some(crate::MANAGER.into()),
            ..Default::default()
        }
    }

    async fn event(&self, type_: EventType, reason: &str, action: &str, note: String) {
        self.ctx
            .events
            .record(&self.d, type_, reason, action, note)
            .await;
    }

    /// Writes `status` if it differs from what the Deployment has.
    async fn write_status(&mut self, status: DeploymentStatus) -> Result<(), Error> {
        if normalized(&status) == normalized(&self.d.status.clone().unwrap_or_default()) {
            return Ok(());
        }
        let mut new = self.d.clone();
        new.status = Some(status);
        let mut got = self
            .api()
            .replace_status(&self.d.name_any(), &Self::post_params(), &new)
            .await?;
        got.metadata.managed_fields = None;
        self.d = got;
        Ok(())
    }

    /// Sets the Deployment's revision annotation; whether it changed.
    async fn write_revision(&mut self, rev: &str) -> Result<(), Error> {
        let cur = self
            .d
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(REVISION));
        if cur.map(String::as_str) == Some(rev) {
            return Ok(());
        }
        let patch = serde_json::json!({"metadata": {
            "annotations": {REVISION: rev},
            "resourceVersion": self.d.metadata.resource_version}});
        let mut got = self
            .api()
            .patch(
                &self.d.name_any(),
                &crate::patch_params(),
                &Patch::Merge(&patch),
            )
            .await?;
        got.metadata.managed_fields = None;
        self.d = got;
        Ok(())
    }

    async fn run(&mut self) -> Result<(), Error> {
        let spec = self.d.spec.clone().unwrap_or_default();
        if spec
            .selector
            .match_labels
            .as_ref()
            .is_none_or(|m| m.is_empty())
            && spec
                .selector
                .match_expressions
                .as_ref()
                .is_none_or(|e| e.is_empty())
        {
            self.event(
                EventType::Warning,
                "SelectingAll",
                "Sync",
                "This deployment is selecting all pods. A non-empty selector is required.".into(),
            )
            .await;
            let mut st = self.d.status.clone().unwrap_or_default();
            if st.observed_generation < self.d.metadata.generation {
                st.observed_generation = self.d.metadata.generation;
                self.write_status(st).await?;
            }
            return Ok(());
        }
        let rs_list = self.claim_replica_sets().await?;
        let (mut new, mut olds) = self.get_all(rs_list, false).await?;
        if self.d.metadata.deletion_timestamp.is_some() {
            return self.sync_status(&new, &olds).await;
        }
        self.check_paused_conditions().await?;
        if spec.paused == Some(true) {
            return self.sync(&mut new, &mut olds).await;
        }
        if self.is_scaling_event(&new, &olds) {
            return self.sync(&mut new, &mut olds).await;
        }
        if is_rolling(&self.d) {
            self.rollout_rolling(new, olds).await
        } else {
            self.rollout_recreate(new, olds).await
        }
    }

    /// The ReplicaSets this Deployment controls, after adopting matching orphans and releasing
    /// its own that stopped matching.
    async fn claim_replica_sets(&mut self) -> Result<Vec<ReplicaSet>, Error> {
        let ns = self.ns();
        let uid = self.d.metadata.uid.clone().unwrap_or_default();
        let selector = self
            .d
            .spec
            .as_ref()
            .map(|s| s.selector.clone())
            .unwrap_or_default();
        let deleting = self.d.metadata.deletion_timestamp.is_some();
        let me = controller_ref(&self.d);
        let mut out = Vec::new();
        let mut rechecked = None;
        for rs in self.ctx.rs_store.state() {
            if rs.metadata.namespace.as_deref() != Some(ns.as_str()) {
                continue;
            }
            let matches = selector_matches(&selector, rs.metadata.labels.as_ref());
            let rs_uid = rs.metadata.uid.clone().unwrap_or_default();
            match controller_of(&rs.metadata) {
                Some(r) if r.uid == uid => {
                    if matches {
                        out.push((*rs).clone());
                    } else if !deleting {
                        let p = owner_patch(&me, &rs_uid, false);
                        if let Err(e) = self
                            .rs_api()
                            .patch(
                                &rs.name_any(),
                                &crate::patch_params(),
                                &Patch::Strategic(&p),
                            )
                            .await
                        {
                            if !matches!(&e, kube::Error::Api(s) if s.code == 404) {
                                return Err(e.into());
                            }
                        }
                    }
                }
                Some(_) => {}
                None => {
                    if !matches || deleting || rs.metadata.deletion_timestamp.is_some() {
                        continue;
                    }
                    if rechecked.is_none() {
                        let fresh = self.api().get_opt(&self.d.name_any()).await?;
                        rechecked = Some(fresh.is_some_and(|f| {
                            f.metadata.uid.as_deref() == Some(uid.as_str())
                                && f.metadata.deletion_timestamp.is_none()
                        }));
                    }
                    if rechecked != Some(true) {
                        continue;
                    }
                    let p = owner_patch(&me, &rs_uid, true);
                    match self
                        .rs_api()
                        .patch(
                            &rs.name_any(),
                            &crate::patch_params(),
                            &Patch::Strategic(&p),
                        )
                        .await
                    {
                        Ok(got) => out.push(got),
                        Err(kube::Error::Api(s))
                            if s.code == 404 || s.code == 409 || s.code == 422 => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
        Ok(out)
    }

    /// The new ReplicaSet (its template the Deployment's; created if `create` and missing) and
    /// the old ones, with the new one's revision and annotations brought up to date.
    async fn get_all(
        &mut self,
        mut list: Vec<ReplicaSet>,
        create: bool,
    ) -> Result<(Option<ReplicaSet>, Vec<ReplicaSet>), Error> {
        list.sort_by(by_creation);
        let template = self
            .d
            .spec
            .as_ref()
            .map(|s| s.template.clone())
            .unwrap_or_default();
        let idx = list.iter().position(|rs| {
            rs.spec
                .as_ref()
                .and_then(|s| s.template.as_ref())
                .is_some_and(|t| equal_ignore_hash(t, &template))
        });
        let existing = idx.map(|i| list.remove(i));
        let olds = list;
        let new = self.get_new_replica_set(existing, &olds, create).await?;
        Ok((new, olds))
    }

    async fn get_new_replica_set(
        &mut self,
        existing: Option<ReplicaSet>,
        olds: &[ReplicaSet],
        create: bool,
    ) -> Result<Option<ReplicaSet>, Error> {
        let new_revision = olds.iter().map(revision).max().unwrap_or(0) + 1;
        let min_ready = self.d.spec.as_ref().and_then(|s| s.min_ready_seconds);
        if let Some(rs) = existing {
            let mut copy = rs.clone();
            copy.metadata.managed_fields = None;
            let changed = set_new_rs_annotations(&self.d, &mut copy, new_revision, true);
            let spec = copy.spec.get_or_insert_with(Default::default);
            let min_changed = spec.min_ready_seconds.unwrap_or(0) != min_ready.unwrap_or(0);
            if changed || min_changed {
                spec.min_ready_seconds = min_ready;
                let got = self
                    .rs_api()
                    .replace(&copy.name_any(), &Self::post_params(), &copy)
                    .await?;
                return Ok(Some(got));
            }
            let rev = copy
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(REVISION))
                .cloned()
                .unwrap_or_default();
            self.write_revision(&rev).await?;
            let mut st = self.d.status.clone().unwrap_or_default();
            if progress_deadline(&self.d).is_some() && get_condition(&st, "Progressing").is_none() {
                set_condition(
                    &mut st,
                    new_condition(
                        "Progressing",
                        "True",
                        "FoundNewReplicaSet",
                        format!("Found new replica set {:?}", copy.name_any()),
                    ),
                );
                self.write_status(st).await?;
            }
            return Ok(Some(copy));
        }
        if !create {
            return Ok(None);
        }
        let spec = self.d.spec.clone().unwrap_or_default();
        let collision = self.d.status.as_ref().and_then(|s| s.collision_count);
        let hash = template_hash(&spec.template, collision);
        let mut template = spec.template.clone();
        template
            .metadata
            .get_or_insert_with(Default::default)
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(HASH_LABEL.into(), hash.clone());
        let mut selector = spec.selector.clone();
        selector
            .match_labels
            .get_or_insert_with(BTreeMap::new)
            .insert(HASH_LABEL.into(), hash.clone());
        let name = format!("{}-{}", self.d.name_any(), hash);
        let all_replicas: i32 = olds.iter().map(replicas).sum();
        let new_replicas = new_rs_new_replicas(
            is_rolling(&self.d),
            desired(&self.d),
            max_surge(&self.d),
            all_replicas,
            0,
        );
        let mut rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(self.ns()),
                labels: template.metadata.as_ref().and_then(|m| m.labels.clone()),
                owner_references: Some(vec![controller_ref(&self.d)]),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(new_replicas),
                min_ready_seconds: min_ready,
                selector,
                template: Some(template),
            }),
            status: None,
        };
        set_new_rs_annotations(&self.d, &mut rs, new_revision, false);
        let created = match self.rs_api().create(&Self::post_params(), &rs).await {
            Ok(c) => c,
            Err(kube::Error::Api(s)) if s.code == 409 => {
                // The name is taken: ours with an equal template is the new one; anything else
                // is a hash collision.
                let other = self.rs_api().get_opt(&name).await?;
                if let Some(o) = other {
                    let ours = controller_of(&o.metadata).map(|r| r.uid.as_str())
                        == self.d.metadata.uid.as_deref();
                    let same = o
                        .spec
                        .as_ref()
                        .and_then(|s| s.template.as_ref())
                        .is_some_and(|t| equal_ignore_hash(t, &spec.template));
                    if ours && same {
                        return Ok(Some(o));
                    }
                }
                let mut st = self.d.status.clone().unwrap_or_default();
                st.collision_count = Some(st.collision_count.unwrap_or(0).wrapping_add(1));
                self.write_status(st).await?;
                return Err(Error::Retry(format!(
                    "hash collision for replica set {name}"
                )));
            }
            Err(e) => {
                let msg = error_message(&e);
                if progress_deadline(&self.d).is_some() {
                    let mut st = self.d.status.clone().unwrap_or_default();
                    set_condition(
                        &mut st,
                        new_condition(
                            "Progressing",
                            "False",
                            "ReplicaSetCreateError",
                            format!("Failed to create new replica set {name:?}: {msg}"),
                        ),
                    );
                    self.write_status(st).await?;
                }
                return Err(e.into());
            }
        };
        if new_replicas > 0 {
            self.event(
                EventType::Normal,
                "ScalingReplicaSet",
                "Scale",
                format!("Scaled up replica set {name} from 0 to {new_replicas}"),
            )
            .await;
        }
        self.write_revision(&new_revision.to_string()).await?;
        if progress_deadline(&self.d).is_some() {
            let mut st = self.d.status.clone().unwrap_or_default();
            set_condition(
                &mut st,
                new_condition(
                    "Progressing",
                    "True",
                    "NewReplicaSetCreated",
                    format!("Created new replica set {name:?}"),
                ),
            );
            self.write_status(st).await?;
        }
        Ok(Some(created))
    }

    fn is_scaling_event(&self, new: &Option<ReplicaSet>, olds: &[ReplicaSet]) -> bool {
        let want = desired(&self.d);
        new.iter()
            .chain(olds)
            .filter(|rs| replicas(rs) > 0)
            .any(|rs| annotation_i32(rs, DESIRED_REPLICAS).is_some_and(|v| v != want))
    }

    async fn check_paused_conditions(&mut self) -> Result<(), Error> {
        if progress_deadline(&self.d).is_none() {
            return Ok(());
        }
        let mut st = self.d.status.clone().unwrap_or_default();
        let cond = get_condition(&st, "Progressing");
        if cond.is_some_and(|c| c.reason.as_deref() == Some(TIMED_OUT)) {
            return Ok(());
        }
        let paused_cond = cond.is_some_and(|c| c.reason.as_deref() == Some(PAUSED));
        let paused = self.d.spec.as_ref().and_then(|s| s.paused) == Some(true);
        let c = if paused && !paused_cond {
            new_condition(
                "Progressing",
                "Unknown",
                PAUSED,
                "Deployment is paused".into(),
            )
        } else if !paused && paused_cond {
            new_condition(
                "Progressing",
                "Unknown",
                RESUMED,
                "Deployment is resumed".into(),
            )
        } else {
            return Ok(());
        };
        set_condition(&mut st, c);
        self.write_status(st).await
    }

    /// Scales `rs` to `n`, with the replicas annotations; an event if its size changed.
    async fn scale_rs(&mut self, rs: &mut ReplicaSet, n: i32, op: &str) -> Result<bool, Error> {
        let old = replicas(rs);
        let mut copy = rs.clone();
        copy.metadata.managed_fields = None;
        let annotations = set_replicas_annotations(
            &mut copy,
            desired(&self.d),
            desired(&self.d) + max_surge(&self.d),
        );
        if old == n && !annotations {
            return Ok(false);
        }
        copy.spec.get_or_insert_with(Default::default).replicas = Some(n);
        *rs = self
            .rs_api()
            .replace(&copy.name_any(), &Self::post_params(), &copy)
            .await?;
        if old != n {
            self.event(
                EventType::Normal,
                "ScalingReplicaSet",
                "Scale",
                format!(
                    "Scaled {op} replica set {} from {old} to {n}",
                    rs.name_any()
                ),
            )
            .await;
        }
        Ok(old != n)
    }

    async fn scale_and_record(&mut self, rs: &mut ReplicaSet, n: i32) -> Result<bool, Error> {
        let old = replicas(rs);
        if old == n {
            return Ok(false);
        }
        let op = if old < n { "up" } else { "down" };
        self.scale_rs(rs, n, op).await
    }

    /// Upstream's sync: scaling (proportionally) and, when paused, old ReplicaSets cleaned up.
    async fn sync(
        &mut self,
        new: &mut Option<ReplicaSet>,
        olds: &mut [ReplicaSet],
    ) -> Result<(), Error> {
        self.scale(new, olds).await?;
        if self.d.spec.as_ref().and_then(|s| s.paused) == Some(true) {
            self.cleanup(olds).await?;
        }
        self.sync_status(new, olds).await
    }

    async fn sync_status(
        &mut self,
        new: &Option<ReplicaSet>,
        olds: &[ReplicaSet],
    ) -> Result<(), Error> {
        let all: Vec<&ReplicaSet> = olds.iter().chain(new.iter()).collect();
        let st = calculate_status(&all, new.as_ref(), &self.d);
        self.write_status(st).await
    }

    async fn scale(
        &mut self,
        new: &mut Option<ReplicaSet>,
        olds: &mut [ReplicaSet],
    ) -> Result<(), Error> {
        let want = desired(&self.d);
        // One active (or, with none, the newest) ReplicaSet takes the whole size.
        olds.sort_by(|a, b| by_creation(b, a));
        let active: Vec<usize> = (0..olds.len())
            .filter(|i| replicas(&olds[*i]) > 0)
            .collect();
        let new_active = new.as_ref().is_some_and(|r| replicas(r) > 0);
        if new.is_some() || !olds.is_empty() {
            let count = active.len() + usize::from(new_active);
            let target: Option<&mut ReplicaSet> = match count {
                0 => match new.as_mut() {
                    Some(n) => Some(n),
                    None => olds.first_mut(),
                },
                1 if new_active => new.as_mut(),
                1 => Some(&mut olds[active[0]]),
                _ => None,
            };
            if let Some(rs) = target {
                if replicas(rs) == want {
                    return Ok(());
                }
                let mut rs_copy = rs.clone();
                self.scale_and_record(&mut rs_copy, want).await?;
                *rs = rs_copy;
                return Ok(());
            }
        }
        // Saturated new ReplicaSet: the old ones go.
        if let Some(n) = new.as_ref() {
            if annotation_i32(n, DESIRED_REPLICAS) == Some(want)
                && replicas(n) == want
                && available(n) == want
            {
                for rs in olds.iter_mut().filter(|r| replicas(r) > 0) {
                    let mut c = rs.clone();
                    self.scale_and_record(&mut c, 0).await?;
                    *rs = c;
                }
                return Ok(());
            }
        }
        if !is_rolling(&self.d) {
            return Ok(());
        }
        // Proportional scaling across the active ReplicaSets.
        let mut all: Vec<ReplicaSet> = olds
            .iter()
            .chain(new.iter())
            .filter(|r| replicas(r) > 0)
            .cloned()
            .collect();
        let current: i32 = all.iter().map(replicas).sum();
        let allowed = if want > 0 {
            want + max_surge(&self.d)
        } else {
            0
        };
        let to_add = allowed - current;
        let mut op = "";
        if to_add > 0 {
            // Larger first; the newer first among equals.
            all.sort_by(|a, b| {
                replicas(b)
                    .cmp(&replicas(a))
                    .then_with(|| by_creation(b, a))
            });
            op = "up";
        } else if to_add < 0 {
            all.sort_by(|a, b| {
                replicas(b)
                    .cmp(&replicas(a))
                    .then_with(|| by_creation(a, b))
            });
            op = "down";
        }
        let status_replicas = self.d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0);
        let sizes = proportions(
            &all.iter()
                .map(|r| (replicas(r), annotation_i32(r, MAX_REPLICAS)))
                .collect::<Vec<_>>(),
            want,
            max_surge(&self.d),
            status_replicas,
            to_add,
        );
        for (i, mut rs) in all.into_iter().enumerate() {
            self.scale_rs(&mut rs, sizes[i], op).await?;
            let uid = rs.metadata.uid.clone();
            if let Some(n) = new.as_mut().filter(|n| n.metadata.uid == uid) {
                *n = rs;
            } else if let Some(o) = olds.iter_mut().find(|o| o.metadata.uid == uid) {
                *o = rs;
            }
        }
        Ok(())
    }

    async fn rollout_rolling(
        &mut self,
        new: Option<ReplicaSet>,
        mut olds: Vec<ReplicaSet>,
    ) -> Result<(), Error> {
        let mut new = match new {
            Some(n) => n,
            None => match self.get_new_replica_set(None, &olds, true).await? {
                Some(n) => n,
                None => return Ok(()),
            },
        };
        // Scale up the new one.
        let want = desired(&self.d);
        let target = if replicas(&new) > want {
            want
        } else {
            let all: i32 = olds.iter().map(replicas).sum::<i32>() + replicas(&new);
            new_rs_new_replicas(true, want, max_surge(&self.d), all, replicas(&new))
        };
        let mut c = new.clone();
        let scaled_up = self.scale_and_record(&mut c, target).await?;
        new = c;
        let new = Some(new);
        if scaled_up {
            return self.sync_rollout_status(&new, &olds).await;
        }
        // Scale down the old ones.
        if self.reconcile_old(new.as_ref(), &mut olds).await? {
            return self.sync_rollout_status(&new, &olds).await;
        }
        if let Some(st) = self.d.status.clone() {
            if deployment_complete(&self.d, &st) {
                self.cleanup(&olds).await?;
            }
        }
        self.sync_rollout_status(&new, &olds).await
    }

    /// Upstream's reconcileOldReplicaSets; whether any was scaled down.
    async fn reconcile_old(
        &mut self,
        new: Option<&ReplicaSet>,
        olds: &mut [ReplicaSet],
    ) -> Result<bool, Error> {
        let old_count: i32 = olds.iter().map(replicas).sum();
        if old_count == 0 {
            return Ok(false);
        }
        let new_replicas = new.map(replicas).unwrap_or(0);
        let all_count = old_count + new_replicas;
        let min_available = desired(&self.d) - max_unavailable(&self.d);
        let new_unavailable = new_replicas - new.map(available).unwrap_or(0);
        let max_scaled_down = all_count - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return Ok(false);
        }
        olds.sort_by(by_creation);
        // Unhealthy old replicas first, within what may go.
        let mut cleaned = 0;
        for rs in olds.iter_mut() {
            if cleaned >= max_scaled_down {
                break;
            }
            let r = replicas(rs);
            if r == 0 || r == available(rs) {
                continue;
            }
            let down = (max_scaled_down - cleaned).min(r - available(rs));
            let mut c = rs.clone();
            self.scale_and_record(&mut c, r - down).await?;
            *rs = c;
            cleaned += down;
        }
        // Then as many as availability allows.
        let avail: i32 = olds.iter().map(available).sum::<i32>() + new.map(available).unwrap_or(0);
        let mut scaled = 0;
        if avail > min_available {
            let total = avail - min_available;
            for rs in olds.iter_mut() {
                if scaled >= total {
                    break;
                }
                let r = replicas(rs);
                if r == 0 {
                    continue;
                }
                let down = r.min(total - scaled);
                let mut c = rs.clone();
                self.scale_and_record(&mut c, r - down).await?;
                *rs = c;
                scaled += down;
            }
        }
        Ok(cleaned + scaled > 0)
    }

    async fn rollout_recreate(
        &mut self,
        new: Option<ReplicaSet>,
        mut olds: Vec<ReplicaSet>,
    ) -> Result<(), Error> {
        let mut scaled_down = false;
        for rs in olds.iter_mut().filter(|r| replicas(r) > 0) {
            let mut c = rs.clone();
            scaled_down |= self.scale_and_record(&mut c, 0).await?;
            *rs = c;
        }
        if scaled_down {
            return self.sync_rollout_status(&new, &olds).await;
        }
        if self.old_pods_running(new.as_ref(), &olds) {
            self.requeue = Some(Duration::from_secs(1));
            return self.sync_rollout_status(&new, &olds).await;
        }
        let mut new = match new {
            Some(n) => Some(n),
            None => self.get_new_replica_set(None, &olds, true).await?,
        };
        if let Some(n) = new.as_mut() {
            let mut c = n.clone();
            self.scale_and_record(&mut c, desired(&self.d)).await?;
            *n = c;
        }
        if let Some(st) = self.d.status.clone() {
            if deployment_complete(&self.d, &st) {
                self.cleanup(&olds).await?;
            }
        }
        self.sync_rollout_status(&new, &olds).await
    }

    fn old_pods_running(&self, new: Option<&ReplicaSet>, olds: &[ReplicaSet]) -> bool {
        if olds
            .iter()
            .map(|r| r.status.as_ref().map_or(0, |s| s.replicas))
            .sum::<i32>()
            > 0
        {
            return true;
        }
        let old_uids: HashSet<&str> = olds
            .iter()
            .filter_map(|r| r.metadata.uid.as_deref())
            .collect();
        let new_uid = new.and_then(|n| n.metadata.uid.as_deref());
        let ns = self.ns();
        self.ctx.pods.state().iter().any(|p| {
            p.metadata.namespace.as_deref() == Some(ns.as_str())
                && controller_of(&p.metadata).is_some_and(|r| {
                    old_uids.contains(r.uid.as_str()) && Some(r.uid.as_str()) != new_uid
                })
                && !matches!(
                    p.status.as_ref().and_then(|s| s.phase.as_deref()),
                    Some("Failed") | Some("Succeeded")
                )
        })
    }

    /// Deletes the oldest old ReplicaSets with no pods beyond revisionHistoryLimit.
    async fn cleanup(&mut self, olds: &[ReplicaSet]) -> Result<(), Error> {
        let Some(limit) = self.d.spec.as_ref().and_then(|s| s.revision_history_limit) else {
            return Ok(());
        };
        let mut alive: Vec<&ReplicaSet> = olds
            .iter()
            .filter(|r| r.metadata.deletion_timestamp.is_none())
            .collect();
        let diff = alive.len() as i64 - i64::from(limit);
        if diff <= 0 {
            return Ok(());
        }
        alive.sort_by(|a, b| {
            revision(a)
                .cmp(&revision(b))
                .then_with(|| by_creation(a, b))
        });
        for rs in alive.into_iter().take(diff as usize) {
            let st = rs.status.clone().unwrap_or_default();
            if st.replicas != 0
                || replicas(rs) != 0
                || rs.metadata.generation > st.observed_generation
            {
                continue;
            }
            let dp = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: rs.metadata.uid.clone(),
                    resource_version: None,
                }),
                ..Default::default()
            };
            match self.rs_api().delete(&rs.name_any(), &dp).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Upstream's syncRolloutStatus: status, the Progressing condition (progress, completion,
    /// deadline) and ReplicaFailure from the ReplicaSets.
    async fn sync_rollout_status(
        &mut self,
        new: &Option<ReplicaSet>,
        olds: &[ReplicaSet],
    ) -> Result<(), Error> {
        let all: Vec<&ReplicaSet> = olds.iter().chain(new.iter()).collect();
        let mut st = calculate_status(&all, new.as_ref(), &self.d);
        let d = &self.d;
        let has_deadline = progress_deadline(d).is_some();
        if !has_deadline {
            remove_condition(&mut st, "Progressing");
        }
        let cur = d
            .status
            .as_ref()
            .and_then(|s| get_condition(s, "Progressing"))
            .cloned();
        let complete_already = st.replicas == st.updated_replicas
            && cur
                .as_ref()
                .is_some_and(|c| c.reason.as_deref() == Some(NEW_RS_AVAILABLE));
        if has_deadline && !complete_already {
            let name = d.name_any();
            if deployment_complete(d, &st) {
                let msg = match new {
                    Some(n) => {
                        format!("ReplicaSet {:?} has successfully progressed.", n.name_any())
                    }
                    None => format!("Deployment {name:?} has successfully progressed."),
                };
                set_condition(
                    &mut st,
                    new_condition("Progressing", "True", NEW_RS_AVAILABLE, msg),
                );
            } else if deployment_progressing(d, &st) {
                let msg = match new {
                    Some(n) => format!("ReplicaSet {:?} is progressing.", n.name_any()),
                    None => format!("Deployment {name:?} is progressing."),
                };
                let mut c = new_condition("Progressing", "True", "ReplicaSetUpdated", msg);
                if let Some(cur) = &cur {
                    if cur.status == "True" {
                        c.last_transition_time = cur.last_transition_time.clone();
                    }
                    remove_condition(&mut st, "Progressing");
                }
                set_condition(&mut st, c);
            } else if deployment_timed_out(d, &st) {
                let msg = match new {
                    Some(n) => format!("ReplicaSet {:?} has timed out progressing.", n.name_any()),
                    None => format!("Deployment {name:?} has timed out progressing."),
                };
                set_condition(
                    &mut st,
                    new_condition("Progressing", "False", TIMED_OUT, msg),
                );
            }
        }
        // ReplicaFailure: the new ReplicaSet's first, else any old one's.
        let failures = |rs: &ReplicaSet| -> Vec<DeploymentCondition> {
            rs.status
                .iter()
                .flat_map(|s| s.conditions.iter().flatten())
                .filter(|c| c.type_ == "ReplicaFailure")
                .map(|c| DeploymentCondition {
                    type_: c.type_.clone(),
                    status: c.status.clone(),
                    reason: c.reason.clone(),
                    message: c.message.clone(),
                    last_update_time: c.last_transition_time.clone(),
                    last_transition_time: c.last_transition_time.clone(),
                })
                .collect()
        };
        let mut fails = new.as_ref().map(failures).unwrap_or_default();
        if fails.is_empty() {
            fails = all.iter().flat_map(|r| failures(r)).collect();
        }
        match fails.into_iter().next() {
            Some(c) => set_condition(&mut st, c),
            None => remove_condition(&mut st, "ReplicaFailure"),
        }
        self.write_status(st).await
    }
}

/// Upstream's proportional scaling: the new size of each of `sets` ((replicas, max-replicas
/// annotation), sorted as upstream sorts them) when `to_add` replicas are added (or removed,
/// negative) across them; leftovers go to the first.
pub fn proportions(
    sets: &[(i32, Option<i32>)],
    desired: i32,
    surge: i32,
    status_replicas: i32,
    to_add: i32,
) -> Vec<i32> {
    let mut added = 0;
    let mut sizes: Vec<i32> = sets
        .iter()
        .map(|&(r, max)| {
            if to_add == 0 {
                return r;
            }
            let p = if r == 0 || to_add == added {
                0
            } else {
                let fraction = if desired == 0 {
                    -r
                } else {
                    let annotated = max.unwrap_or(status_replicas);
                    let size = f64::from(r) * f64::from(desired + surge) / f64::from(annotated);
                    size.round() as i32 - r
                };
                let allowed = to_add - added;
                if to_add > 0 {
                    fraction.min(allowed)
                } else {
                    fraction.max(allowed)
                }
            };
            added += p;
            r + p
        })
        .collect();
    if to_add != 0 {
        if let Some(first) = sizes.first_mut() {
            *first = (*first + to_add - added).max(0);
        }
    }
    sizes
}

fn error_policy(d: Arc<Deployment>, error: &Error, _ctx: Arc<Ctx>) -> Action {
    match error {
        Error::Api(kube::Error::Api(s)) if s.code == 409 => {
            tracing::debug!(deployment = %ObjectRef::from_obj(d.as_ref()), %error, "deployment sync conflict");
            Action::requeue(Duration::from_millis(200))
        }
        _ => {
            tracing::warn!(deployment = %ObjectRef::from_obj(d.as_ref()), %error, "deployment sync");
            Action::requeue(Duration::from_secs(2))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pct(s: &str) -> IntOrString {
        IntOrString::String(s.into())
    }

    #[test]
    fn fenceposts_round_as_upstream() {
        // 25% of 10: surge rounds up to 3, unavailable down to 2.
        assert_eq!(
            resolve_fenceposts(Some(&pct("25%")), Some(&pct("25%")), 10),
            (3, 2)
        );
        // 25% of 3: 1 and 0.
        assert_eq!(
            resolve_fenceposts(Some(&pct("25%")), Some(&pct("25%")), 3),
            (1, 0)
        );
        // Both zero: one may be unavailable.
        assert_eq!(
            resolve_fenceposts(Some(&IntOrString::Int(0)), Some(&pct("10%")), 5),
            (0, 1)
        );
        assert_eq!(
            resolve_fenceposts(Some(&IntOrString::Int(2)), Some(&IntOrString::Int(1)), 5),
            (2, 1)
        );
        assert_eq!(scaled_value(Some(&pct("50%")), 5, true), 3);
        assert_eq!(scaled_value(Some(&pct("50%")), 5, false), 2);
    }

    #[test]
    fn the_new_replica_set_grows_within_the_surge() {
        // 3 wanted, surge 1: from 3 old pods the new one may have 1.
        assert_eq!(new_rs_new_replicas(true, 3, 1, 3, 0), 1);
        // Already at 4 pods in all: no more.
        assert_eq!(new_rs_new_replicas(true, 3, 1, 4, 1), 1);
        // Old ones gone: up to the desired count, never beyond.
        assert_eq!(new_rs_new_replicas(true, 3, 1, 1, 1), 3);
        assert_eq!(new_rs_new_replicas(false, 3, 1, 9, 0), 3);
    }

    #[test]
    fn scaling_is_proportional() {
        // 10 wanted -> 15 (surge 25% of 15 = 4), sets of 6 (newer) and 4, annotated max 13.
        let sizes = proportions(&[(6, Some(13)), (4, Some(13))], 15, 4, 10, 19 - 10);
        assert_eq!(sizes.iter().sum::<i32>(), 19);
        assert_eq!(sizes, [13, 6]);
        // Scaling to zero empties all.
        assert_eq!(
            proportions(&[(3, Some(4)), (2, Some(4))], 0, 0, 5, -5),
            [0, 0]
        );
    }

    #[test]
    fn hash_names_use_the_safe_alphabet_and_change_with_collisions() {
        let t = PodTemplateSpec::default();
        let h = template_hash(&t, None);
        assert!(!h.is_empty() && h.len() <= 10, "{h}");
        assert!(
            h.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)),
            "{h}"
        );
        assert_eq!(h, template_hash(&t, None));
        assert_ne!(h, template_hash(&t, Some(1)));
        assert_eq!(safe_encode("0123456789"), "456789bcdf");
        assert_eq!(fnv32a(b"a"), 0xe40c292c);
    }

    #[test]
    fn templates_compare_without_the_hash_label() {
        let a = PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(BTreeMap::from([("app".to_string(), "web".to_string())])),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut b = a.clone();
        b.metadata
            .as_mut()
            .unwrap()
            .labels
            .as_mut()
            .unwrap()
            .insert(HASH_LABEL.into(), "x".into());
        assert!(equal_ignore_hash(&a, &b));
        b.metadata
            .as_mut()
            .unwrap()
            .labels
            .as_mut()
            .unwrap()
            .insert("v".into(), "2".into());
        assert!(!equal_ignore_hash(&a, &b));
    }

    #[test]
    fn revisions_and_history_on_rollback() {
        let d = Deployment {
            metadata: ObjectMeta {
                annotations: Some(BTreeMap::from([
                    ("kubernetes.io/change-cause".to_string(), "undo".to_string()),
                    (REVISION.to_string(), "2".to_string()),
                ])),
                ..Default::default()
            },
            ..Default::default()
        };
        let mut rs = ReplicaSet {
            metadata: ObjectMeta {
                annotations: Some(BTreeMap::from([(REVISION.to_string(), "1".to_string())])),
                ..Default::default()
            },
            ..Default::default()
        };
        assert!(set_new_rs_annotations(&d, &mut rs, 3, true));
        let a = rs.metadata.annotations.as_ref().unwrap();
        assert_eq!(a[REVISION], "3");
        assert_eq!(a[REVISION_HISTORY], "1");
        assert_eq!(a["kubernetes.io/change-cause"], "undo");
        assert!(!a.contains_key(DESIRED_REPLICAS));
        assert!(set_new_rs_annotations(&d, &mut rs, 5, true));
        assert_eq!(
            rs.metadata.annotations.as_ref().unwrap()[REVISION_HISTORY],
            "1,3"
        );
        // Nothing new: nothing changes.
        assert!(!set_new_rs_annotations(&d, &mut rs, 5, true));
    }
}
