//! Disruption (upstream's disruption controller): the status of every PodDisruptionBudget, which
//! the eviction subresource reads and spends (`kubectl drain` evicts within it).
//!
//! For the pods the budget selects: `expectedPods` (the pods themselves for an integer
//! `minAvailable`, else the sum of the scales of their controllers: ReplicaSet, Deployment
//! (through its ReplicaSet), StatefulSet, ReplicationController), `desiredHealthy` (from
//! `minAvailable`, or `expectedPods - maxUnavailable`, percentages rounded up), `currentHealthy`
//! (Ready pods neither being deleted nor just evicted), `disruptionsAllowed` (the difference,
//! never below 0, 0 without expected pods), `disruptedPods` (evictions whose pod is not deleted
//! yet, dropped once it is or after two minutes), `observedGeneration`, and the condition
//! `DisruptionAllowed` (True `SufficientPods` / False `InsufficientPods`, `SyncFailed` when the
//! budget cannot be worked out, which then allows no disruption).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::{Future, StreamExt};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, OwnerReference, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::core::{Selector, SelectorExt};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;

use crate::events::Events;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};

use crate::informers::Informers;

/// How long an evicted pod may take to get its deletion timestamp before it counts again.
pub const DELETION_TIMEOUT: Duration = Duration::from_secs(120);
pub const CONDITION: &str = "DisruptionAllowed";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Api(#[from] kube::Error),
}

struct Ctx {
    client: kube::Client,
    pods: Store<Pod>,
    replicasets: Store<ReplicaSet>,
    deployments: Store<Deployment>,
    statefulsets: Store<StatefulSet>,
    rcs: Store<ReplicationController>,
    recorder: Events,
}

/// Runs the controller until the task is dropped.
pub fn run(informers: &Informers) -> impl Future<Output = ()> + Send {
    let tracked = crate::metrics::Tracked::new("disruption");
    let client = informers.client().clone();
    let pdbs = informers.store::<PodDisruptionBudget>();
    // A change to a pod or a controller may change any budget of its namespace.
    fn in_namespace<K: Resource>(
        pdbs: Store<PodDisruptionBudget>,
    ) -> impl Fn(Arc<K>) -> Vec<ObjectRef<PodDisruptionBudget>> + Send + Sync + 'static {
        move |o: Arc<K>| {
            let ns = o.meta().namespace.clone();
            pdbs.state()
                .iter()
                .filter(|p| p.metadata.namespace == ns)
                .map(|p| ObjectRef::from_obj(&**p))
                .collect()
        }
    }
    let controller = Controller::for_shared_stream(
        tracked.trigger(informers.subscribe::<PodDisruptionBudget>()),
        pdbs.clone(),
    )
    .watches_shared_stream(
        informers.subscribe::<Pod>(),
        tracked.mapper(in_namespace::<Pod>(pdbs.clone())),
    )
    .watches_shared_stream(
        informers.subscribe::<ReplicaSet>(),
        tracked.mapper(in_namespace::<ReplicaSet>(pdbs.clone())),
    )
    .watches_shared_stream(
        informers.subscribe::<Deployment>(),
        tracked.mapper(in_namespace::<Deployment>(pdbs.clone())),
    )
    .watches_shared_stream(
        informers.subscribe::<StatefulSet>(),
        tracked.mapper(in_namespace::<StatefulSet>(pdbs.clone())),
    )
    .watches_shared_stream(
        informers.subscribe::<ReplicationController>(),
        tracked.mapper(in_namespace::<ReplicationController>(pdbs)),
    );
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        pods: informers.store::<Pod>(),
        replicasets: informers.store::<ReplicaSet>(),
        deployments: informers.store::<Deployment>(),
        statefulsets: informers.store::<StatefulSet>(),
        rcs: informers.store::<ReplicationController>(),
        recorder: Events::new(client, "disruption-controller"),
    });
    controller
        .run(
            tracked.reconcile(reconcile),
            tracked.error_policy(error_policy),
            ctx,
        )
        .for_each(tracked.results())
}

/// A value of `minAvailable`/`maxUnavailable` against `total`: an integer as is, a percentage
/// of it rounded up (upstream's GetScaledValueFromIntOrPercent with roundUp).
pub fn scaled(v: &IntOrString, total: i32) -> Result<i32, String> {
    match v {
        IntOrString::Int(n) => Ok(*n),
        IntOrString::String(s) => {
            let p: i64 = s
                .strip_suffix('%')
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| format!("invalid value for IntOrString: invalid value {s:?}"))?;
            Ok(((p * total as i64 + 99) / 100) as i32)
        }
    }
}

/// What a budget's numbers come to.
#[derive(Debug, PartialEq, Eq)]
pub struct Counts {
    pub expected: i32,
    pub desired_healthy: i32,
}

/// Expected pods and desired healthy ones, given the pods' count and a way to get the sum of
/// their controllers' scale (asked only when the spec needs it).
pub fn counts(
    pdb: &PodDisruptionBudget,
    pods: usize,
    scale: impl FnOnce() -> Result<i32, String>,
) -> Result<Counts, String> {
    let spec = pdb.spec.clone().unwrap_or_default();
    if let Some(max) = &spec.max_unavailable {
        let expected = scale()?;
        let unavailable = scaled(max, expected)?;
        return Ok(Counts {
            expected,
            desired_healthy: (expected - unavailable).max(0),
        });
    }
    match &spec.min_available {
        Some(IntOrString::Int(n)) => Ok(Counts {
            expected: pods as i32,
            desired_healthy: *n,
        }),
        Some(min) => {
            let expected = scale()?;
            Ok(Counts {
                expected,
                desired_healthy: scaled(min, expected)?,
            })
        }
        None => Ok(Counts {
            expected: 0,
            desired_healthy: 0,
        }),
    }
}

/// Disruptions allowed: healthy beyond desired, none without expected pods.
pub fn allowed(current_healthy: i32, c: &Counts) -> i32 {
    let a = current_healthy - c.desired_healthy;
    if c.expected <= 0 || a <= 0 {
        0
    } else {
        a
    }
}

fn controller_of(meta: &kube::api::ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
}

impl Ctx {
    /// The controller of a pod and its scale, as upstream's finders look them up.
    fn scale_of(&self, r: &OwnerReference, ns: &str) -> Option<(String, i32)> {
        let group = r.api_version.split('/').next().unwrap_or("");
        let same = |uid: &Option<String>| uid.as_deref() == Some(r.uid.as_str());
        match (r.kind.as_str(), group) {
            ("ReplicationController", "v1") => {
                let rc = self.rcs.get(&ObjectRef::new(&r.name).within(ns))?;
                same(&rc.metadata.uid).then(|| {
                    let n = rc.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                    (r.uid.clone(), n)
                })
            }
            ("ReplicaSet", "apps") => {
                let rs = self.replicasets.get(&ObjectRef::new(&r.name).within(ns))?;
                if !same(&rs.metadata.uid) {
                    return None;
                }
                // A Deployment's ReplicaSet: the Deployment's scale counts.
                if let Some(d) = controller_of(&rs.metadata).filter(|o| o.kind == "Deployment") {
                    let dep = self.deployments.get(&ObjectRef::new(&d.name).within(ns))?;
                    if dep.metadata.uid.as_deref() != Some(d.uid.as_str()) {
                        return None;
                    }
                    let n = dep.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                    return Some((d.uid.clone(), n));
                }
                let n = rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                Some((r.uid.clone(), n))
            }
            ("StatefulSet", "apps") => {
                let sts = self.statefulsets.get(&ObjectRef::new(&r.name).within(ns))?;
                same(&sts.metadata.uid).then(|| {
                    let n = sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                    (r.uid.clone(), n)
                })
            }
            _ => None,
        }
    }

    /// The sum of the scales of the pods' controllers; pods without one are listed.
    fn expected_scale(
        &self,
        pods: &[Arc<Pod>],
        unmanaged: &mut Vec<String>,
    ) -> Result<i32, String> {
        let mut scales: HashMap<String, i32> = HashMap::new();
        for pod in pods {
            let Some(r) = controller_of(&pod.metadata) else {
                unmanaged.push(pod.name_any());
                continue;
            };
            if scales.contains_key(&r.uid) {
                continue;
            }
            let ns = pod.namespace().unwrap_or_default();
            match self.scale_of(r, &ns) {
                Some((uid, n)) => {
                    scales.insert(uid, n);
                    scales.insert(r.uid.clone(), 0);
                }
                None => return Err(format!("found no controllers for pod {:?}", pod.name_any())),
            }
        }
        Ok(scales.values().sum())
    }
}

fn selected(pdb: &PodDisruptionBudget, pods: &Store<Pod>) -> Result<Vec<Arc<Pod>>, String> {
    // policy/v1: no selector selects nothing, an empty one every pod of the namespace.
    let Some(sel) = pdb.spec.as_ref().and_then(|s| s.selector.clone()) else {
        return Ok(Vec::new());
    };
    let sel = Selector::try_from(sel).map_err(|e| e.to_string())?;
    let ns = pdb.namespace();
    let mut out: Vec<Arc<Pod>> = pods
        .state()
        .into_iter()
        .filter(|p| p.namespace() == ns && sel.matches(p.labels()))
        .collect();
    out.sort_by_key(|p| p.name_any());
    Ok(out)
}

/// The evictions still in flight (pod there, not being deleted, evicted less than the timeout
/// ago), and when the earliest of them expires.
pub fn disrupted(
    pods: &[Arc<Pod>],
    recorded: Option<&BTreeMap<String, Time>>,
    now: Timestamp,
) -> (BTreeMap<String, Time>, Option<Timestamp>) {
    let mut out = BTreeMap::new();
    let mut recheck: Option<Timestamp> = None;
    let Some(recorded) = recorded else {
        return (out, None);
    };
    for pod in pods {
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let name = pod.name_any();
        let Some(t) = recorded.get(&name) else {
            continue;
        };
        let Ok(expires) = t.0.checked_add(DELETION_TIMEOUT) else {
            continue;
        };
        if expires < now {
            continue;
        }
        recheck = Some(recheck.map_or(expires, |r| r.min(expires)));
        out.insert(name, t.clone());
    }
    (out, recheck)
}

/// Ready pods neither being deleted nor in `disrupted`.
pub fn healthy(pods: &[Arc<Pod>], disrupted: &BTreeMap<String, Time>) -> i32 {
    pods.iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| !disrupted.contains_key(&p.name_any()))
        .filter(|p| crate::endpoints::is_pod_ready(p))
        .count() as i32
}

/// Sets the condition of type `CONDITION` as apimachinery's SetStatusCondition does: the
/// transition time changes only when the status does.
fn set_condition(
    conds: &mut Vec<Condition>,
    status: &str,
    reason: &str,
    message: String,
    gen: Option<i64>,
) {
    let now = Time(Timestamp::now());
    match conds.iter_mut().find(|c| c.type_ == CONDITION) {
        Some(c) => {
            if c.status != status {
                c.status = status.into();
                c.last_transition_time = now;
            }
            c.reason = reason.into();
            c.message = message;
            c.observed_generation = gen;
        }
        None => conds.push(Condition {
            type_: CONDITION.into(),
            status: status.into(),
            reason: reason.into(),
            message,
            observed_generation: gen,
            last_transition_time: now,
        }),
    }
}

async fn write(
    ctx: &Ctx,
    pdb: &PodDisruptionBudget,
    status: PodDisruptionBudgetStatus,
) -> Result<(), Error> {
    let mut new = pdb.clone();
    new.metadata.managed_fields = None;
    new.status = Some(status);
    let api: Api<PodDisruptionBudget> =
        Api::namespaced(ctx.client.clone(), &pdb.namespace().unwrap_or_default());
    let pp = PostParams {
        field_manager: Some(crate::MANAGER.into()),
        ..Default::default()
    };
    // With the resourceVersion read: an eviction spending the budget meanwhile is a conflict.
    api.replace_status(&pdb.name_any(), &pp, &new).await?;
    Ok(())
}

async fn reconcile(pdb: Arc<PodDisruptionBudget>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    for ready in [
        ctx.pods.wait_until_ready().await,
        ctx.replicasets.wait_until_ready().await,
        ctx.deployments.wait_until_ready().await,
        ctx.statefulsets.wait_until_ready().await,
        ctx.rcs.wait_until_ready().await,
    ] {
        if ready.is_err() {
            return Ok(Action::requeue(Duration::from_secs(1)));
        }
    }
    let old = pdb.status.clone().unwrap_or_default();
    let generation = pdb.metadata.generation;
    let pods = match selected(&pdb, &ctx.pods) {
        Ok(p) => p,
        Err(e) => return fail_safe(&ctx, &pdb, old, e).await,
    };
    if pods.is_empty() {
        ctx.recorder
            .record(
                &*pdb,
                EventType::Normal,
                "NoPods",
                "Sync",
                "No matching pods found".into(),
            )
            .await;
    }
    let mut unmanaged = Vec::new();
    let counts = match counts(&pdb, pods.len(), || {
        ctx.expected_scale(&pods, &mut unmanaged)
    }) {
        Ok(c) => c,
        Err(e) => {
            ctx.recorder
                .record(
                    &*pdb,
                    EventType::Warning,
                    "CalculateExpectedPodCountFailed",
                    "Sync",
                    format!("Failed to calculate the number of expected pods: {e}"),
                )
                .await;
            return fail_safe(&ctx, &pdb, old, e).await;
        }
    };
    if !unmanaged.is_empty() {
        let sel = pdb
            .spec
            .as_ref()
            .and_then(|s| s.selector.clone())
            .and_then(|s| Selector::try_from(s).ok())
            .map(|s| s.to_string())
            .unwrap_or_default();
        ctx.recorder.record(&*pdb,
            EventType::Warning,
            "UnmanagedPods",
            "Sync",
            format!(
                "Pods selected by this PodDisruptionBudget (selector: {sel}) were found to be unmanaged. \
                 As a result, the status of the PDB cannot be calculated correctly, which may result in undefined behavior. \
                 To account for these pods please set \".spec.minAvailable\" field of the PDB to an integer value."
            ),
        )
        .await;
    }
    let now = Timestamp::now();
    let (disrupted_pods, recheck) = disrupted(&pods, old.disrupted_pods.as_ref(), now);
    let current = healthy(&pods, &disrupted_pods);
    let allowed = allowed(current, &counts);
    let (cond_status, reason) = if allowed > 0 {
        ("True", "SufficientPods")
    } else {
        ("False", "InsufficientPods")
    };
    let old_disrupted = old.disrupted_pods.clone().unwrap_or_default();
    let cond_ok = old.conditions.iter().flatten().any(|c| {
        c.type_ == CONDITION
            && c.status == cond_status
            && c.observed_generation == old.observed_generation
    });
    let requeue = match recheck {
        Some(t) => Action::requeue(
            Duration::try_from(t.duration_since(now)).unwrap_or_default()
                + Duration::from_millis(100),
        ),
        None => Action::await_change(),
    };
    if old.current_healthy == current
        && old.desired_healthy == counts.desired_healthy
        && old.expected_pods == counts.expected
        && old.disruptions_allowed == allowed
        && old_disrupted == disrupted_pods
        && old.observed_generation == generation
        && cond_ok
    {
        return Ok(requeue);
    }
    let mut conditions = old.conditions.clone().unwrap_or_default();
    set_condition(
        &mut conditions,
        cond_status,
        reason,
        String::new(),
        generation,
    );
    let status = PodDisruptionBudgetStatus {
        current_healthy: current,
        desired_healthy: counts.desired_healthy,
        expected_pods: counts.expected,
        disruptions_allowed: allowed,
        disrupted_pods: (!disrupted_pods.is_empty()).then_some(disrupted_pods),
        observed_generation: generation,
        conditions: Some(conditions),
    };
    write(&ctx, &pdb, status).await?;
    Ok(requeue)
}

/// The budget could not be worked out: no disruption is allowed (upstream's failSafe).
async fn fail_safe(
    ctx: &Ctx,
    pdb: &PodDisruptionBudget,
    mut status: PodDisruptionBudgetStatus,
    error: String,
) -> Result<Action, Error> {
    tracing::debug!(pdb = %pdb.name_any(), %error, "disruption budget");
    status.disruptions_allowed = 0;
    let mut conditions = status.conditions.take().unwrap_or_default();
    let gen = status.observed_generation;
    let unchanged = conditions.iter().any(|c| {
        c.type_ == CONDITION
            && c.status == "False"
            && c.reason == "SyncFailed"
            && c.message == error
    }) && pdb
        .status
        .as_ref()
        .is_some_and(|s| s.disruptions_allowed == 0);
    if !unchanged {
        set_condition(&mut conditions, "False", "SyncFailed", error, gen);
        status.conditions = Some(conditions);
        write(ctx, pdb, status).await?;
    }
    Ok(Action::requeue(Duration::from_secs(30)))
}

fn error_policy(pdb: Arc<PodDisruptionBudget>, error: &Error, _ctx: Arc<Ctx>) -> Action {
    tracing::debug!(pdb = %ObjectRef::from_obj(pdb.as_ref()), %error, "disruption");
    Action::requeue(Duration::from_millis(500))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::policy::v1::PodDisruptionBudgetSpec;

    fn pdb(min: Option<IntOrString>, max: Option<IntOrString>) -> PodDisruptionBudget {
        PodDisruptionBudget {
            spec: Some(PodDisruptionBudgetSpec {
                min_available: min,
                max_unavailable: max,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn pct(s: &str) -> IntOrString {
        IntOrString::String(s.into())
    }

    #[test]
    fn integer_min_available_counts_the_pods() {
        let p = pdb(Some(IntOrString::Int(2)), None);
        let c = counts(&p, 3, || panic!("no scale needed")).unwrap();
        assert_eq!(
            c,
            Counts {
                expected: 3,
                desired_healthy: 2
            }
        );
        assert_eq!(allowed(3, &c), 1);
        assert_eq!(allowed(2, &c), 0);
        assert_eq!(allowed(1, &c), 0);
    }

    #[test]
    fn percentages_round_up_against_the_controllers_scale() {
        // minAvailable 50% of 5 → 3 healthy wanted.
        let p = pdb(Some(pct("50%")), None);
        let c = counts(&p, 4, || Ok(5)).unwrap();
        assert_eq!(
            c,
            Counts {
                expected: 5,
                desired_healthy: 3
            }
        );
        assert_eq!(allowed(4, &c), 1);
        // maxUnavailable 30% of 5 → 2 may be down → 3 wanted.
        let p = pdb(None, Some(pct("30%")));
        assert_eq!(
            counts(&p, 5, || Ok(5)).unwrap(),
            Counts {
                expected: 5,
                desired_healthy: 3
            }
        );
        // maxUnavailable 1 of 3.
        let p = pdb(None, Some(IntOrString::Int(1)));
        let c = counts(&p, 3, || Ok(3)).unwrap();
        assert_eq!(c.desired_healthy, 2);
        assert_eq!(allowed(3, &c), 1);
        // maxUnavailable beyond the scale never asks for less than 0.
        let p = pdb(None, Some(IntOrString::Int(10)));
        assert_eq!(counts(&p, 3, || Ok(3)).unwrap().desired_healthy, 0);
        // No expected pods: nothing allowed.
        let c = counts(&p, 0, || Ok(0)).unwrap();
        assert_eq!(allowed(0, &c), 0);
        // Errors are passed on.
        assert!(counts(&p, 1, || Err("found no controllers".into())).is_err());
        assert!(scaled(&pct("x%"), 3).is_err());
        assert_eq!(scaled(&pct("0%"), 3).unwrap(), 0);
        assert_eq!(scaled(&pct("100%"), 3).unwrap(), 3);
    }

    #[test]
    fn evictions_in_flight_expire_and_deleted_pods_leave() {
        let now = Timestamp::now();
        let mk = |name: &str, deleting: bool| {
            let mut p = Pod::default();
            p.metadata.name = Some(name.into());
            if deleting {
                p.metadata.deletion_timestamp = Some(Time(now));
            }
            Arc::new(p)
        };
        let pods = vec![mk("fresh", false), mk("old", false), mk("deleting", true)];
        let recent = Time(now.checked_sub(Duration::from_secs(10)).unwrap());
        let stale = Time(now.checked_sub(Duration::from_secs(300)).unwrap());
        let recorded = BTreeMap::from([
            ("fresh".to_string(), recent.clone()),
            ("old".to_string(), stale),
            ("deleting".to_string(), recent.clone()),
            ("gone".to_string(), recent.clone()),
        ]);
        let (kept, recheck) = disrupted(&pods, Some(&recorded), now);
        assert_eq!(
            kept,
            BTreeMap::from([("fresh".to_string(), recent.clone())])
        );
        assert_eq!(
            recheck,
            Some(recent.0.checked_add(DELETION_TIMEOUT).unwrap())
        );
        assert_eq!(healthy(&pods, &kept), 0);
    }
}
