//! Resource quota (upstream's resource quota controller): every ResourceQuota's `status.hard`
//! is its `spec.hard` and `status.used` the usage of the objects of its namespace it covers,
//! counted afresh with the same rules as the ResourceQuota admission plugin
//! ([`rudder_api::quota`]), so the two write the same numbers.
//!
//! A quota is recounted when it is created or its `spec.hard` changes (not when only its
//! status does: the admission plugin charges a pod before the pod reaches the caches), when an object it may charge
//! changes or goes (a pod that finishes no longer counts: upstream's replenishment; deletions
//! by the garbage collector or the namespace controller are deletions like any other), and on
//! a full resync every `--resource-quota-sync-period`. Pods, services, replication
//! controllers and claims are counted from the shared caches. Every other resource (config
//! maps, secrets, `count/<resource>` of any kind) charges one per object: while a quota of a
//! namespace charges it, the controller watches the metadata of that namespace's objects of
//! it, counts them from that watch and recounts on each change; before the watch has listed,
//! it counts by listing the metadata through the API page by page. So a namespace without
//! quotas costs nothing, and the process keeps no contents of objects it only counts. The
//! status is written with the quota's resourceVersion as precondition: a conflict means the
//! quota changed and is counted again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{Future, FutureExt, Stream, StreamExt};
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, Pod, ReplicationController, ResourceQuota, Service,
};
use kube::api::{Api, ApiResource, DynamicObject, ListParams, PartialObjectMeta, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Resource, ResourceExt};
use rudder_api::quota::{self, GroupResource, Resources};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::informers::Informers;

/// How the controller runs.
#[derive(Clone, Debug)]
pub struct Config {
    /// Every quota is recounted this often (`--resource-quota-sync-period`).
    pub resync: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            resync: Duration::from_secs(300),
        }
    }
}

/// Objects listed per page when a kind is counted through the API.
const PAGE: u32 = 500;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Api(#[from] kube::Error),
    #[error("{0}")]
    Json(#[from] serde_json::Error),
}

struct Ctx {
    client: kube::Client,
    pods: Store<Pod>,
    services: Store<Service>,
    rcs: Store<ReplicationController>,
    claims: Store<PersistentVolumeClaim>,
    quotas: Store<ResourceQuota>,
    /// The served resource of each (group, plural) counted by name; `None`: not served.
    discovered: Mutex<HashMap<(String, String), Option<ApiResource>>>,
    /// The objects counted by name, watched per (group, plural, namespace) while a quota
    /// charges them.
    watched: Mutex<HashMap<(String, String, String), Watched>>,
    /// Where those watches say which quotas to count again.
    recount: mpsc::Sender<ObjectRef<ResourceQuota>>,
}

/// The metadata of one namespace's objects of one resource, kept by a watch that asks for the
/// quotas charging them to be counted again at each change; the watch stops when this goes.
struct Watched {
    store: Store<PartialObjectMeta<DynamicObject>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Watched {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Runs the controller until the task is dropped.
pub fn run(informers: &Informers, cfg: Config) -> impl Future<Output = ()> + Send {
    let tracked = crate::metrics::Tracked::new("resourcequota_primary");
    let quotas = informers.store::<ResourceQuota>();
    // A quota's own changes count it again only when its limits are not in its status yet
    // (created, or spec.hard changed): a status the ResourceQuota admission plugin just
    // charged must not be recounted from caches that may not show the charged object yet.
    let changed = informers
        .subscribe::<ResourceQuota>()
        .filter(|q| futures::future::ready(needs_sync(q)));
    let controller = Controller::for_shared_stream(tracked.trigger(changed), quotas.clone());
    let controller = replenish::<Pod>(controller, informers, &quotas, &tracked, "pods");
    let controller = replenish::<Service>(controller, informers, &quotas, &tracked, "services");
    let controller = replenish::<ReplicationController>(
        controller,
        informers,
        &quotas,
        &tracked,
        "replicationcontrollers",
    );
    let controller = replenish::<PersistentVolumeClaim>(
        controller,
        informers,
        &quotas,
        &tracked,
        "persistentvolumeclaims",
    );
    let (recount, recounts) = mpsc::channel(64);
    let controller = controller
        .reconcile_all_on(ticks(cfg.resync))
        .reconcile_on(crate::informers::tokio_stream_of(recounts));
    let ctx = Arc::new(Ctx {
        client: informers.client().clone(),
        pods: informers.store::<Pod>(),
        services: informers.store::<Service>(),
        rcs: informers.store::<ReplicationController>(),
        claims: informers.store::<PersistentVolumeClaim>(),
        quotas,
        discovered: Mutex::default(),
        watched: Mutex::default(),
        recount,
    });
    let prune = {
        let ctx = ctx.clone();
        async move {
            loop {
                tokio::time::sleep(PRUNE).await;
                ctx.unwatch_uncharged();
            }
        }
    };
    let controller = controller
        .run(
            tracked.reconcile(reconcile),
            tracked.error_policy(error_policy),
            ctx,
        )
        .for_each(tracked.results());
    async move {
        tokio::select! {
            () = controller => {}
            () = prune => {}
        }
    }
}

/// How often the watches of objects no quota charges any more are stopped.
const PRUNE: Duration = Duration::from_secs(30);

/// Whether a quota's status lacks what its spec asks for: `status.hard` is not `spec.hard`
/// or a hard name has no usage (upstream's `addQuota` test).
fn needs_sync(q: &ResourceQuota) -> bool {
    let Ok(v) = serde_json::to_value(q) else {
        return true;
    };
    let hard = quota::resources(v.pointer("/spec/hard"));
    let recorded = quota::resources(v.pointer("/status/hard"));
    let used = quota::resources(v.pointer("/status/used"));
    hard.len() != recorded.len()
        || hard.iter().any(|(k, q)| {
            recorded.get(k).map(|r| r.nanos()) != Some(q.nanos()) || !used.contains_key(k)
        })
}

/// Every change to an object of the core resource `plural` (deletions included) recounts the
/// quotas of its namespace that name something that resource charges.
fn replenish<K>(
    controller: Controller<ResourceQuota>,
    informers: &Informers,
    quotas: &Store<ResourceQuota>,
    tracked: &Arc<crate::metrics::Tracked>,
    plural: &'static str,
) -> Controller<ResourceQuota>
where
    K: crate::informers::Kind,
{
    let quotas = quotas.clone();
    controller.watches_shared_stream(
        informers.subscribe::<K>(),
        tracked.mapper(move |obj: Arc<K>| {
            let ns = obj.namespace().unwrap_or_default();
            quotas_charging(&quotas, &ns, GroupResource::core(plural))
        }),
    )
}

/// The quotas of `ns` with a hard limit that objects of `res` are counted under.
fn quotas_charging(
    quotas: &Store<ResourceQuota>,
    ns: &str,
    res: GroupResource<'_>,
) -> Vec<ObjectRef<ResourceQuota>> {
    quotas
        .state()
        .into_iter()
        .filter(|q| q.metadata.namespace.as_deref() == Some(ns))
        .filter(|q| {
            let hard = q.spec.as_ref().and_then(|s| s.hard.as_ref());
            hard.is_some_and(|h| h.keys().any(|k| quota::owns(res, k)))
        })
        .map(|q| ObjectRef::from_obj(q.as_ref()))
        .collect()
}

/// A tick every `period`, the first one period from now (the controller counts every quota
/// once at start anyway).
fn ticks(period: Duration) -> impl Stream<Item = ()> + Send {
    let period = period.max(Duration::from_secs(1));
    futures::stream::unfold((), move |()| async move {
        tokio::time::sleep(period).await;
        Some(((), ()))
    })
}

async fn reconcile(q: Arc<ResourceQuota>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let ns = q.namespace().unwrap_or_default();
    let quota_json = serde_json::to_value(q.as_ref())?;
    let hard = quota::resources(quota_json.pointer("/spec/hard"));
    let mut counted: Vec<((String, String), Resources)> = Vec::new();
    for (group, plural) in owners(hard.keys()) {
        let res = GroupResource::new(&group, &plural);
        if let Some(used) = ctx.count(&quota_json, &ns, res).await? {
            counted.push(((group.clone(), plural.clone()), used));
        }
    }
    let refs: Vec<(GroupResource<'_>, &Resources)> = counted
        .iter()
        .map(|((g, p), u)| (GroupResource::new(g, p), u))
        .collect();
    let status = quota::status(&quota_json, &refs);
    if same_status(quota_json.get("status"), &status) {
        return Ok(Action::await_change());
    }
    let mut body = quota_json;
    body["status"] = status;
    let body: ResourceQuota = serde_json::from_value(body)?;
    // The resourceVersion read is the precondition: a quota changed since is counted again.
    let api: Api<ResourceQuota> = Api::namespaced(ctx.client.clone(), &ns);
    let pp = PostParams {
        field_manager: Some(crate::MANAGER.into()),
        ..Default::default()
    };
    match api.replace_status(&q.name_any(), &pp, &body).await {
        Ok(_) => {
            tracing::debug!(quota = %ObjectRef::from_obj(q.as_ref()), "quota usage written");
            Ok(Action::await_change())
        }
        Err(kube::Error::Api(s)) if s.code == 409 => {
            Ok(Action::requeue(Duration::from_millis(100)))
        }
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(Action::await_change()),
        Err(e) => Err(e.into()),
    }
}

impl Ctx {
    /// The usage of `res`'s objects in `ns` that the quota covers; `None` when `res` is not
    /// served (its names keep what was recorded).
    async fn count(
        &self,
        quota_json: &Value,
        ns: &str,
        res: GroupResource<'_>,
    ) -> Result<Option<Resources>, Error> {
        if res.group.is_empty() {
            let cached = match res.plural {
                "pods" => Some(cached(quota_json, &self.pods, ns, res)?),
                "services" => Some(cached(quota_json, &self.services, ns, res)?),
                "replicationcontrollers" => Some(cached(quota_json, &self.rcs, ns, res)?),
                "persistentvolumeclaims" => Some(cached(quota_json, &self.claims, ns, res)?),
                _ => None,
            };
            if cached.is_some() {
                return Ok(cached);
            }
        }
        // Scoped quotas cover pods only: nothing else to list.
        if !quota::scope_selectors(quota_json).is_empty() {
            return Ok(Some(Resources::new()));
        }
        let Some(ar) = self.discover(res).await? else {
            return Ok(None);
        };
        // The other resources charge one per object: counted by name.
        let n = match self.watched_count(&ar, ns) {
            Some(n) => n,
            None => list_count(Api::namespaced_with(self.client.clone(), ns, &ar)).await?,
        };
        let one = quota::usage(res, &Value::Object(Default::default()));
        let times = |q: &rudder_api::validation::Quantity| q.with_nanos(q.nanos() * n as i128);
        Ok(Some(
            one.iter().map(|(k, q)| (k.clone(), times(q))).collect(),
        ))
    }

    /// How many objects of `ar` `ns` holds, as the watch of them says once it has listed;
    /// starts that watch if there is none.
    fn watched_count(&self, ar: &ApiResource, ns: &str) -> Option<usize> {
        let key = (ar.group.clone(), ar.plural.clone(), ns.to_string());
        let mut watched = self.watched.lock().unwrap();
        let w = watched.entry(key.clone()).or_insert_with(|| {
            let writer = reflector::store::Writer::new(ar.clone());
            let store = writer.as_reader();
            let task = tokio::spawn(watch_counted(
                Api::namespaced_with(self.client.clone(), ns, ar),
                writer,
                self.quotas.clone(),
                key,
                self.recount.clone(),
            ));
            Watched { store, task }
        });
        let listed = matches!(w.store.wait_until_ready().now_or_never(), Some(Ok(())));
        listed.then(|| w.store.len())
    }

    /// Stops watching what no quota of its namespace charges any more.
    fn unwatch_uncharged(&self) {
        self.watched
            .lock()
            .unwrap()
            .retain(|(group, plural, ns), _| {
                !quotas_charging(&self.quotas, ns, GroupResource::new(group, plural)).is_empty()
            });
    }

    /// The served resource `res` (its preferred version), asked of discovery once.
    async fn discover(&self, res: GroupResource<'_>) -> Result<Option<ApiResource>, Error> {
        let key = (res.group.to_string(), res.plural.to_string());
        if let Some(known) = self.discovered.lock().unwrap().get(&key) {
            return Ok(known.clone());
        }
        let found = match kube::discovery::group(&self.client, res.group).await {
            Ok(group) => group
                .recommended_resources()
                .into_iter()
                .map(|(ar, _)| ar)
                .find(|ar| ar.plural == res.plural),
            Err(kube::Error::Api(s)) if s.code == 404 => None,
            Err(e) => return Err(e.into()),
        };
        self.discovered.lock().unwrap().insert(key, found.clone());
        Ok(found)
    }
}

/// How many objects `api` lists, page by page.
async fn list_count(api: Api<DynamicObject>) -> Result<usize, kube::Error> {
    let mut n = 0usize;
    let mut lp = ListParams::default().limit(PAGE);
    loop {
        let page = api.list_metadata(&lp).await?;
        n += page.items.len();
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => lp = lp.continue_token(&token),
            None => return Ok(n),
        }
    }
}

/// Keeps the metadata of the objects `api` lists in `writer`'s store and, at each change,
/// sends the quotas of the namespace that charge `(group, plural)` to be counted again.
async fn watch_counted(
    api: Api<PartialObjectMeta<DynamicObject>>,
    writer: reflector::store::Writer<PartialObjectMeta<DynamicObject>>,
    quotas: Store<ResourceQuota>,
    (group, plural, ns): (String, String, String),
    recount: mpsc::Sender<ObjectRef<ResourceQuota>>,
) {
    let events = watcher::watcher(api, watcher::Config::default()).default_backoff();
    let mut events = std::pin::pin!(reflector::reflector(writer, events));
    while let Some(ev) = events.next().await {
        match ev {
            Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_) | watcher::Event::InitDone) => {
                for q in quotas_charging(&quotas, &ns, GroupResource::new(&group, &plural)) {
                    if recount.send(q).await.is_err() {
                        return;
                    }
                }
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(%group, %plural, %ns, error = %e, "quota count watch"),
        }
    }
}

/// The usage of the objects of `store` in `ns` that the quota covers.
fn cached<K>(
    quota_json: &Value,
    store: &Store<K>,
    ns: &str,
    res: GroupResource<'_>,
) -> Result<Resources, serde_json::Error>
where
    K: Resource<DynamicType = ()> + Clone + Serialize + 'static,
{
    let mut sum = Resources::new();
    for obj in store.state() {
        if obj.meta().namespace.as_deref() != Some(ns) {
            continue;
        }
        let v = serde_json::to_value(obj.as_ref())?;
        for (k, q) in quota::total(quota_json, res, [&v]) {
            quota::add_to(&mut sum, &k, q);
        }
    }
    Ok(sum)
}

fn error_policy(q: Arc<ResourceQuota>, error: &Error, _ctx: Arc<Ctx>) -> Action {
    tracing::warn!(quota = %ObjectRef::from_obj(q.as_ref()), %error, "resource quota");
    Action::requeue(Duration::from_secs(2))
}

/// Whether a recorded status says what `want` says: the same names with the same amounts,
/// however spelled (`1000m` is `1`), so a server that normalises quantities is not written to
/// again and again.
fn same_status(recorded: Option<&Value>, want: &Value) -> bool {
    let Some(recorded) = recorded else {
        return false;
    };
    ["hard", "used"].iter().all(|part| {
        let (a, b) = (
            quota::resources(recorded.get(*part)),
            quota::resources(want.get(*part)),
        );
        a.len() == b.len()
            && a.iter()
                .all(|(k, q)| b.get(k).is_some_and(|w| w.nanos() == q.nanos()))
    })
}

/// The resources to count for a quota's hard names: the owner of each, each once, as
/// (group, plural).
fn owners<'k>(hard: impl IntoIterator<Item = &'k String>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for key in hard {
        if let Some(owner) = quota::owner_of(key) {
            if !out.contains(&owner) {
                out.push(owner);
            }
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ResourceQuotaSpec;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use kube::runtime::reflector::store;
    use kube::runtime::watcher;

    fn quota_obj(ns: &str, name: &str, hard: &[(&str, &str)]) -> ResourceQuota {
        ResourceQuota {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(ns.into()),
                ..Default::default()
            },
            spec: Some(ResourceQuotaSpec {
                hard: Some(
                    hard.iter()
                        .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
                        .collect(),
                ),
                ..Default::default()
            }),
            status: None,
        }
    }

    #[test]
    fn changes_recount_only_the_quotas_of_their_namespace_that_they_charge() {
        let (reader, mut writer) = store::<ResourceQuota>();
        for q in [
            quota_obj("a", "pods", &[("pods", "3"), ("requests.cpu", "1")]),
            quota_obj(
                "a",
                "objects",
                &[("count/configmaps", "3"), ("services", "2")],
            ),
            quota_obj("b", "pods", &[("limits.memory", "1Gi")]),
        ] {
            writer.apply_watcher_event(&watcher::Event::Apply(q));
        }
        let names = |ns: &str, plural: &str| {
            let mut v: Vec<String> = quotas_charging(&reader, ns, GroupResource::core(plural))
                .into_iter()
                .map(|r| r.name)
                .collect();
            v.sort();
            v
        };
        assert_eq!(names("a", "pods"), ["pods"]);
        assert_eq!(names("a", "configmaps"), ["objects"]);
        assert_eq!(names("a", "services"), ["objects"]);
        assert!(names("a", "secrets").is_empty());
        assert_eq!(names("b", "pods"), ["pods"]);
        assert!(names("c", "pods").is_empty());
    }

    #[test]
    fn hard_names_are_counted_once_per_resource() {
        let hard: Vec<String> = [
            "pods",
            "requests.cpu",
            "limits.memory",
            "count/deployments.apps",
            "requests.storage",
            "gold.storageclass.storage.k8s.io/requests.storage",
            "secrets",
            "unknown",
        ]
        .map(String::from)
        .into();
        let shown: Vec<String> = owners(&hard)
            .iter()
            .map(|(g, p)| format!("{g}/{p}"))
            .collect();
        assert_eq!(
            shown,
            [
                "/persistentvolumeclaims",
                "/pods",
                "/secrets",
                "apps/deployments"
            ]
        );
    }

    #[test]
    fn quotas_sync_when_their_limits_are_not_in_status() {
        let mut q = quota_obj("a", "q", &[("pods", "3"), ("cpu", "1")]);
        assert!(needs_sync(&q));
        q.status = serde_json::from_value(serde_json::json!({
            "hard": {"pods": "3", "cpu": "1000m"}, "used": {"pods": "1", "cpu": "0"}}))
        .unwrap();
        assert!(!needs_sync(&q));
        q.status = serde_json::from_value(serde_json::json!({
            "hard": {"pods": "3", "cpu": "1"}, "used": {"pods": "1"}}))
        .unwrap();
        assert!(needs_sync(&q));
        q.status = serde_json::from_value(serde_json::json!({
            "hard": {"pods": "2", "cpu": "1"}, "used": {"pods": "1", "cpu": "0"}}))
        .unwrap();
        assert!(needs_sync(&q));
    }

    #[test]
    fn statuses_compare_by_amount() {
        let want = serde_json::json!({"hard": {"cpu": "1"}, "used": {"cpu": "500m"}});
        let same = serde_json::json!({"hard": {"cpu": "1000m"}, "used": {"cpu": "0.5"}});
        assert!(same_status(Some(&same), &want));
        assert!(!same_status(None, &want));
        let more = serde_json::json!({"hard": {"cpu": "1"}, "used": {"cpu": "600m"}});
        assert!(!same_status(Some(&more), &want));
        let fewer = serde_json::json!({"hard": {"cpu": "1"}, "used": {}});
        assert!(!same_status(Some(&fewer), &want));
    }

    #[test]
    fn cached_usage_of_a_namespace() {
        let (reader, mut writer) = store::<Pod>();
        let pod = |ns: &str, name: &str, cpu: &str, phase: &str| -> Pod {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name, "namespace": ns},
                "spec": {"containers": [{"name": "c", "image": "i",
                    "resources": {"requests": {"cpu": cpu}}}]},
                "status": {"phase": phase},
            }))
            .unwrap()
        };
        for p in [
            pod("a", "p1", "100m", "Running"),
            pod("a", "p2", "200m", "Pending"),
            pod("a", "done", "1", "Succeeded"),
            pod("b", "other", "1", "Running"),
        ] {
            writer.apply_watcher_event(&watcher::Event::Apply(p));
        }
        let q = serde_json::to_value(quota_obj("a", "q", &[("pods", "9"), ("requests.cpu", "4")]))
            .unwrap();
        let used = cached(&q, &reader, "a", GroupResource::core("pods")).unwrap();
        assert_eq!(used["pods"].canonical(), "2");
        assert_eq!(used["requests.cpu"].canonical(), "300m");
    }
}
