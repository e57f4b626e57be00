//! The garbage collector (upstream's pkg/controller/garbagecollector): objects' ownerReferences
//! across every resource the server serves.
//!
//! - Watches: one metadata-only watch per resource that discovery lists with `list`, `watch`
//!   and `delete` (custom resources included; discovery is looked at again every 30 s, so a new
//!   CRD is watched too). Events are left out, as upstream leaves them. Of each object the graph
//!   keeps what it needs: uid, resource, namespace, name, owner references, and whether it is
//!   being deleted with the `foregroundDeletion` or `orphan` finalizer.
//! - Background: a dependent whose owners are all gone is deleted (with its own finalizers'
//!   propagation). Before it is, every owner is looked up live by name and UID, as upstream
//!   does, so that a watch cache that is behind never deletes a live owner's dependents. An
//!   owner that is gone but not all of them: the references to the gone ones are removed.
//! - Foreground: an owner being deleted with `foregroundDeletion` gets its dependents deleted
//!   (in the foreground too when they have dependents of their own), and once none with
//!   `blockOwnerDeletion: true` is left, the finalizer is removed and the owner goes.
//! - Orphan: an owner being deleted with `orphan` has its reference removed from each
//!   dependent, then the finalizer.
//! - Namespaces: a namespaced owner is looked up in its dependent's namespace, so a reference
//!   to an owner in another namespace is treated as absent; a cluster-scoped owner may own
//!   anything. A cluster-scoped dependent that names a namespaced kind is never collected.
//!   Both record a Warning `OwnerRefInvalidNamespace` event on the dependent.
//!
//! Work waits until every watch has listed once (so a dependent listed before its owner is not
//! looked at for nothing), and a failed step is retried with backoff.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use futures::{Future, StreamExt};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{
    Api, DeleteParams, DynamicObject, PartialObjectMeta, Patch, Preconditions, PropagationPolicy,
};
use kube::discovery::{verbs, ApiCapabilities, ApiResource, Discovery, Scope};
use kube::runtime::events::EventType;

use crate::events::Events;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use tokio::sync::{mpsc, Notify};

use crate::informers::Informers;
use crate::metrics::{self, QueueMetrics};

pub const FOREGROUND: &str = "foregroundDeletion";
pub const ORPHAN: &str = "orphan";

/// How often discovery is looked at again for new resources.
const REDISCOVERY: Duration = Duration::from_secs(30);
/// How many items are worked on at once.
const WORKERS: usize = 8;

/// Every resource the server serves, in its preferred version (discovery of all groups).
pub(crate) async fn discover(
    client: &kube::Client,
) -> Result<Vec<(ApiResource, ApiCapabilities)>, kube::Error> {
    let d = match Discovery::new(client.clone()).run_aggregated().await {
        Ok(d) => d,
        Err(_) => Discovery::new(client.clone()).run().await?,
    };
    Ok(d.groups().flat_map(|g| g.recommended_resources()).collect())
}

/// Resources the collector watches: listable, watchable and deletable, events left out.
fn collectable(ar: &ApiResource, caps: &ApiCapabilities) -> bool {
    caps.supports_operation(verbs::LIST)
        && caps.supports_operation(verbs::WATCH)
        && caps.supports_operation(verbs::DELETE)
        && !(ar.plural == "events" && (ar.group.is_empty() || ar.group == "events.k8s.io"))
}

// ---------------------------------------------------------------------------------------------
// The graph: pure bookkeeping, no I/O.

/// One ownerReference, as the graph keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    pub uid: String,
    pub api_version: String,
    pub kind: String,
    pub name: String,
    /// blockOwnerDeletion
    pub block: bool,
}

impl From<&OwnerReference> for Owner {
    fn from(r: &OwnerReference) -> Owner {
        Owner {
            uid: r.uid.clone(),
            api_version: r.api_version.clone(),
            kind: r.kind.clone(),
            name: r.name.clone(),
            block: r.block_owner_deletion.unwrap_or(false),
        }
    }
}

/// What the graph keeps of one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    /// Index into the collector's resource table.
    pub resource: usize,
    pub namespace: Option<String>,
    pub name: String,
    pub uid: String,
    pub owners: Vec<Owner>,
    /// deletionTimestamp is set.
    pub deleting: bool,
    /// Has the `foregroundDeletion` finalizer.
    pub foreground: bool,
    /// Has the `orphan` finalizer.
    pub orphan: bool,
}

impl Item {
    pub fn from_meta(resource: usize, m: &ObjectMeta) -> Option<Item> {
        let has = |f: &str| m.finalizers.iter().flatten().any(|x| x == f);
        Some(Item {
            resource,
            namespace: m.namespace.clone().filter(|n| !n.is_empty()),
            name: m.name.clone()?,
            uid: m.uid.clone()?,
            owners: m
                .owner_references
                .iter()
                .flatten()
                .map(Owner::from)
                .collect(),
            deleting: m.deletion_timestamp.is_some(),
            foreground: has(FOREGROUND),
            orphan: has(ORPHAN),
        })
    }

    /// Being deleted and waiting for its dependents to go first.
    pub fn deleting_dependents(&self) -> bool {
        self.deleting && self.foreground
    }
}

/// Work for the collector, by object uid.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Work {
    /// Look at whether the object must go (or, being deleted in the foreground, whether its
    /// dependents are gone).
    Delete(String),
    /// Remove the object's dependents' references to it, then its `orphan` finalizer.
    Orphan(String),
}

/// The ownership graph of everything watched.
#[derive(Default, Debug)]
pub struct Graph {
    items: HashMap<String, Item>,
    /// owner uid → uids of the objects that name it (whether the owner is seen or not).
    dependents: HashMap<String, HashSet<String>>,
}

impl Graph {
    pub fn get(&self, uid: &str) -> Option<&Item> {
        self.items.get(uid)
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The objects that name `uid` as an owner.
    pub fn dependents_of(&self, uid: &str) -> Vec<&Item> {
        self.dependents
            .get(uid)
            .into_iter()
            .flatten()
            .filter_map(|d| self.items.get(d))
            .collect()
    }

    /// The dependents of `uid` whose reference to it has blockOwnerDeletion.
    pub fn blocking_dependents(&self, uid: &str) -> Vec<&Item> {
        self.dependents_of(uid)
            .into_iter()
            .filter(|d| d.owners.iter().any(|o| o.uid == uid && o.block))
            .collect()
    }

    /// Whether the cache alone shows that `item` keeps all its owners: each is seen, may own
    /// it (namespace), and is not waiting for its dependents to go. Then there is nothing to
    /// look up.
    pub fn owners_solid(&self, item: &Item) -> bool {
        item.owners.iter().all(|o| {
            self.items.get(&o.uid).is_some_and(|owner| {
                !owner.deleting_dependents()
                    && (owner.namespace.is_none() || owner.namespace == item.namespace)
            })
        })
    }

    /// An object seen (added, or changed); the work it makes.
    pub fn upsert(&mut self, item: Item) -> Vec<Work> {
        let mut work = Vec::new();
        let old = self.items.remove(&item.uid);
        let old_owners = old.as_ref().map(|o| o.owners.as_slice()).unwrap_or(&[]);
        // References removed, or no longer blocking: an owner waiting for them may go on.
        for o in old_owners {
            let now = item.owners.iter().find(|n| n.uid == o.uid);
            if now.is_none() {
                if let Some(set) = self.dependents.get_mut(&o.uid) {
                    set.remove(&item.uid);
                    if set.is_empty() {
                        self.dependents.remove(&o.uid);
                    }
                }
            }
            let unblocked = o.block && now.is_none_or(|n| !n.block);
            if unblocked
                && self
                    .items
                    .get(&o.uid)
                    .is_some_and(Item::deleting_dependents)
            {
                work.push(Work::Delete(o.uid.clone()));
            }
        }
        // References added: an owner not seen, in another namespace, or being deleted in the
        // foreground means this object must be looked at.
        let mut check = false;
        for n in &item.owners {
            if old_owners.iter().any(|o| o.uid == n.uid) {
                continue;
            }
            self.dependents
                .entry(n.uid.clone())
                .or_default()
                .insert(item.uid.clone());
            match self.items.get(&n.uid) {
                None => check = true,
                Some(owner) => {
                    if (owner.namespace.is_some() && owner.namespace != item.namespace)
                        || owner.deleting_dependents()
                    {
                        check = true;
                    }
                }
            }
        }
        let was = |f: fn(&Item) -> bool| old.as_ref().is_some_and(f);
        if item.deleting && item.orphan && !was(|o| o.deleting && o.orphan) {
            work.push(Work::Orphan(item.uid.clone()));
        } else if item.deleting_dependents() && !was(Item::deleting_dependents) {
            for d in self.dependents.get(&item.uid).into_iter().flatten() {
                work.push(Work::Delete(d.clone()));
            }
            check = true;
        }
        if check {
            work.push(Work::Delete(item.uid.clone()));
        }
        self.items.insert(item.uid.clone(), item);
        work
    }

    /// An object gone; the work it makes (its dependents looked at, an owner waiting for it).
    pub fn remove(&mut self, uid: &str) -> Vec<Work> {
        let mut work = Vec::new();
        let Some(item) = self.items.remove(uid) else {
            return work;
        };
        for o in &item.owners {
            if let Some(set) = self.dependents.get_mut(&o.uid) {
                set.remove(uid);
                if set.is_empty() {
                    self.dependents.remove(&o.uid);
                }
            }
            if self
                .items
                .get(&o.uid)
                .is_some_and(Item::deleting_dependents)
            {
                work.push(Work::Delete(o.uid.clone()));
            }
        }
        for d in self.dependents.get(uid).into_iter().flatten() {
            work.push(Work::Delete(d.clone()));
        }
        work
    }

    /// After a (re-)list of `resource`: its objects not in `seen` are gone.
    pub fn retain_listed(&mut self, resource: usize, seen: &HashSet<String>) -> Vec<Work> {
        let gone: Vec<String> = self
            .items
            .values()
            .filter(|i| i.resource == resource && !seen.contains(&i.uid))
            .map(|i| i.uid.clone())
            .collect();
        gone.iter().flat_map(|uid| self.remove(uid)).collect()
    }
}

// ---------------------------------------------------------------------------------------------
// The queue.

/// The queued work in order (with when it was queued), and the same as a set.
type Pending = (VecDeque<(Work, Instant)>, HashSet<Work>);

#[derive(Default)]
struct Queue {
    inner: Mutex<Pending>,
    notify: Notify,
    failures: Mutex<HashMap<Work, u32>>,
}

/// Upstream's two queues' metrics: attempts to delete, attempts to orphan.
fn queue_metrics(w: &Work) -> &'static QueueMetrics {
    static METRICS: OnceLock<[QueueMetrics; 2]> = OnceLock::new();
    let m = METRICS.get_or_init(|| {
        [
            metrics::global().queue("garbage_collector_attempt_to_delete"),
            metrics::global().queue("garbage_collector_attempt_to_orphan"),
        ]
    });
    match w {
        Work::Delete(_) => &m[0],
        Work::Orphan(_) => &m[1],
    }
}

impl Drop for Queue {
    /// The collector stopped (leadership lost): what was queued is no longer.
    fn drop(&mut self) {
        let q = self.inner.get_mut().unwrap_or_else(|e| e.into_inner());
        for (w, _) in q.0.drain(..) {
            queue_metrics(&w).discarded(1);
        }
    }
}

impl Queue {
    fn push(&self, w: Work) {
        let mut q = self.inner.lock().unwrap();
        if q.1.insert(w.clone()) {
            queue_metrics(&w).added();
            q.0.push_back((w, Instant::now()));
            self.notify.notify_one();
        }
    }

    async fn pop(&self) -> Work {
        loop {
            let next = {
                let mut q = self.inner.lock().unwrap();
                let w = q.0.pop_front();
                if let Some((w, since)) = &w {
                    q.1.remove(w);
                    queue_metrics(w).taken(since.elapsed());
                }
                if !q.0.is_empty() {
                    self.notify.notify_one();
                }
                w
            };
            if let Some((w, _)) = next {
                return w;
            }
            self.notify.notified().await;
        }
    }

    fn done(&self, w: &Work) {
        self.failures.lock().unwrap().remove(w);
    }

    /// Again later, waiting longer each time it fails.
    fn retry(self: &Arc<Self>, w: Work) {
        queue_metrics(&w).retried();
        let n = {
            let mut f = self.failures.lock().unwrap();
            let n = f.entry(w.clone()).or_default();
            *n = n.saturating_add(1);
            *n
        };
        let delay = Duration::from_millis(100u64.saturating_mul(1 << n.min(9)))
            .min(Duration::from_secs(30));
        let q = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            q.push(w);
        });
    }
}

// ---------------------------------------------------------------------------------------------
// The collector.

/// A watched resource.
#[derive(Clone, Debug)]
struct Resource {
    ar: ApiResource,
    namespaced: bool,
}

#[derive(Default)]
struct Tables {
    /// Watched resources, by index (never shrinks).
    resources: Vec<Resource>,
    /// (apiVersion, kind) → resource, for every version served: how owner references resolve.
    kinds: HashMap<(String, String), Resource>,
}

enum Msg {
    Init(usize),
    Apply(usize, ObjectMeta),
    Delete(ObjectMeta),
    InitDone(usize),
}

struct Collector {
    client: kube::Client,
    graph: Mutex<Graph>,
    tables: RwLock<Tables>,
    queue: Arc<Queue>,
    recorder: Events,
}

#[derive(Debug, thiserror::Error)]
enum Error {
    #[error("{0}")]
    Api(#[from] kube::Error),
    #[error("cannot resolve owner kind {0}")]
    UnknownKind(String),
    #[error("{0} kept changing")]
    Conflict(String),
}

/// Runs the garbage collector until the task is dropped.
pub fn run(informers: &Informers) -> impl Future<Output = ()> + Send {
    let client = informers.client().clone();
    async move {
        let gc = Arc::new(Collector {
            recorder: Events::new(client.clone(), "garbage-collector-controller"),
            client,
            graph: Mutex::default(),
            tables: RwLock::default(),
            queue: Arc::default(),
        });
        gc.run().await
    }
}

impl Collector {
    async fn run(self: Arc<Self>) {
        let (tx, rx) = mpsc::channel::<Msg>(1024);
        let (synced_tx, synced_rx) = tokio::sync::watch::channel(false);
        let mut watches: HashMap<(String, String), Abort> = HashMap::new();
        let mut guard = Vec::new();
        // First discovery, retried until it works.
        let expected = loop {
            match self.rediscover(&mut watches, &tx).await {
                Ok(n) => break n,
                Err(e) => {
                    tracing::warn!(error = %e, "garbage collector discovery");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            }
        };
        let builder = tokio::spawn(self.clone().build(rx, synced_tx, expected));
        guard.push(Abort(builder));
        for _ in 0..WORKERS {
            let gc = self.clone();
            let mut synced = synced_rx.clone();
            guard.push(Abort(tokio::spawn(async move {
                // Every watch listed once; a resource that cannot be listed does not hold the
                // others back for long.
                let _ =
                    tokio::time::timeout(Duration::from_secs(60), synced.wait_for(|s| *s)).await;
                loop {
                    let w = gc.queue.pop().await;
                    let work = queue_metrics(&w).work();
                    let result = match &w {
                        Work::Delete(uid) => gc.attempt_to_delete(uid).await,
                        Work::Orphan(uid) => gc.attempt_to_orphan(uid).await,
                    };
                    drop(work);
                    match result {
                        Ok(()) => gc.queue.done(&w),
                        Err(e) => {
                            tracing::debug!(?w, error = %e, "garbage collector, will retry");
                            gc.queue.retry(w);
                        }
                    }
                }
            })));
        }
        loop {
            tokio::time::sleep(REDISCOVERY).await;
            watches.retain(|_, t| !t.0.is_finished());
            if let Err(e) = self.rediscover(&mut watches, &tx).await {
                tracing::debug!(error = %e, "garbage collector rediscovery");
            }
        }
    }

    /// Looks at discovery; starts a watch for each resource not watched yet. Returns how many
    /// resources are watched.
    async fn rediscover(
        self: &Arc<Self>,
        watches: &mut HashMap<(String, String), Abort>,
        tx: &mpsc::Sender<Msg>,
    ) -> Result<usize, kube::Error> {
        let d = match Discovery::new(self.client.clone()).run_aggregated().await {
            Ok(d) => d,
            Err(_) => Discovery::new(self.client.clone()).run().await?,
        };
        let mut kinds = HashMap::new();
        for g in d.groups() {
            for v in g.versions() {
                for (ar, caps) in g.versioned_resources(v) {
                    let r = Resource {
                        namespaced: caps.scope == Scope::Namespaced,
                        ar: ar.clone(),
                    };
                    kinds
                        .entry((ar.api_version.clone(), ar.kind.clone()))
                        .or_insert(r);
                }
            }
        }
        let mut start = Vec::new();
        {
            let mut t = self.tables.write().unwrap();
            t.kinds = kinds;
            for g in d.groups() {
                for (ar, caps) in g.recommended_resources() {
                    if !collectable(&ar, &caps) {
                        continue;
                    }
                    let key = (ar.group.clone(), ar.plural.clone());
                    if watches.contains_key(&key) {
                        continue;
                    }
                    let index = match t
                        .resources
                        .iter()
                        .position(|r| r.ar.group == ar.group && r.ar.plural == ar.plural)
                    {
                        Some(i) => i,
                        None => {
                            t.resources.push(Resource {
                                namespaced: caps.scope == Scope::Namespaced,
                                ar: ar.clone(),
                            });
                            t.resources.len() - 1
                        }
                    };
                    start.push((key, index, ar));
                }
            }
        }
        for (key, index, ar) in start {
            let task = tokio::spawn(watch(self.client.clone(), index, ar, tx.clone()));
            watches.insert(key, Abort(task));
        }
        Ok(watches.len())
    }

    /// Feeds the graph from the watches; says when each has listed once.
    async fn build(
        self: Arc<Self>,
        mut rx: mpsc::Receiver<Msg>,
        synced: tokio::sync::watch::Sender<bool>,
        expected: usize,
    ) {
        let mut listing: HashMap<usize, HashSet<String>> = HashMap::new();
        let mut listed: HashSet<usize> = HashSet::new();
        while let Some(msg) = rx.recv().await {
            let work = {
                let mut g = self.graph.lock().unwrap();
                match msg {
                    Msg::Init(r) => {
                        listing.insert(r, HashSet::new());
                        Vec::new()
                    }
                    Msg::Apply(r, meta) => match Item::from_meta(r, &meta) {
                        Some(item) => {
                            if let Some(seen) = listing.get_mut(&r) {
                                seen.insert(item.uid.clone());
                            }
                            g.upsert(item)
                        }
                        None => Vec::new(),
                    },
                    Msg::Delete(meta) => match &meta.uid {
                        Some(uid) => g.remove(uid),
                        None => Vec::new(),
                    },
                    Msg::InitDone(r) => {
                        let seen = listing.remove(&r).unwrap_or_default();
                        listed.insert(r);
                        if listed.len() >= expected && !*synced.borrow() {
                            tracing::info!(objects = g.len(), "garbage collector graph synced");
                            let _ = synced.send(true);
                        }
                        g.retain_listed(r, &seen)
                    }
                }
            };
            for w in work {
                self.queue.push(w);
            }
        }
    }

    fn resource(&self, index: usize) -> Option<Resource> {
        self.tables.read().unwrap().resources.get(index).cloned()
    }

    fn api_of(&self, item: &Item) -> Option<Api<DynamicObject>> {
        let r = self.resource(item.resource)?;
        Some(match &item.namespace {
            Some(ns) if r.namespaced => Api::namespaced_with(self.client.clone(), ns, &r.ar),
            _ => Api::all_with(self.client.clone(), &r.ar),
        })
    }

    /// The object as it is now, if it is still the one the graph knows.
    async fn latest(&self, item: &Item) -> Result<Option<ObjectMeta>, Error> {
        let Some(api) = self.api_of(item) else {
            return Ok(None);
        };
        match api.get_metadata_opt(&item.name).await? {
            Some(m) if m.metadata.uid.as_deref() == Some(item.uid.as_str()) => Ok(Some(m.metadata)),
            _ => Ok(None),
        }
    }

    async fn attempt_to_delete(&self, uid: &str) -> Result<(), Error> {
        let (item, solid, has_dependents) = {
            let g = self.graph.lock().unwrap();
            let Some(item) = g.get(uid).cloned() else {
                return Ok(());
            };
            let solid = g.owners_solid(&item);
            let has_dependents = !g.dependents_of(uid).is_empty();
            (item, solid, has_dependents)
        };
        if item.deleting_dependents() {
            return self.process_deleting_dependents(&item).await;
        }
        if item.deleting || item.owners.is_empty() || solid {
            return Ok(());
        }
        let Some(latest) = self.latest(&item).await? else {
            return Ok(());
        };
        if latest.deletion_timestamp.is_some() {
            return Ok(());
        }
        let refs: Vec<OwnerReference> = latest.owner_references.clone().unwrap_or_default();
        if refs.is_empty() {
            return Ok(());
        }
        let mut solid = Vec::new();
        let mut dangling = Vec::new();
        let mut waiting = Vec::new();
        for r in &refs {
            match self.classify(&item, r).await? {
                Some(Verdict::Solid) => solid.push(r.uid.clone()),
                Some(Verdict::Dangling) => dangling.push(r.uid.clone()),
                Some(Verdict::Waiting) => waiting.push(r.uid.clone()),
                // A cluster-scoped object owned by a namespaced kind: never collected.
                None => return Ok(()),
            }
        }
        if !solid.is_empty() {
            if dangling.is_empty() && waiting.is_empty() {
                return Ok(());
            }
            let gone: Vec<String> = dangling.into_iter().chain(waiting).collect();
            tracing::debug!(
                uid,
                ?gone,
                "removing references to owners that are gone or going"
            );
            return self.remove_owner_refs(&item, &gone).await;
        }
        let policy = if !waiting.is_empty() && has_dependents {
            PropagationPolicy::Foreground
        } else {
            let has = |f: &str| latest.finalizers.iter().flatten().any(|x| x == f);
            if has(ORPHAN) {
                PropagationPolicy::Orphan
            } else if has(FOREGROUND) {
                PropagationPolicy::Foreground
            } else {
                PropagationPolicy::Background
            }
        };
        tracing::info!(
            namespace = item.namespace.as_deref().unwrap_or(""),
            name = %item.name,
            uid,
            ?policy,
            "deleting an object whose owners are gone"
        );
        self.delete(&item, policy).await
    }

    async fn delete(&self, item: &Item, policy: PropagationPolicy) -> Result<(), Error> {
        let Some(api) = self.api_of(item) else {
            return Ok(());
        };
        let dp = DeleteParams {
            propagation_policy: Some(policy),
            preconditions: Some(Preconditions {
                uid: Some(item.uid.clone()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match api.delete(&item.name, &dp).await {
            Ok(_) => Ok(()),
            // Gone, or another object by that name now.
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether one owner of `item` is there; `None` when the reference can never be valid.
    async fn classify(&self, item: &Item, r: &OwnerReference) -> Result<Option<Verdict>, Error> {
        let kind = self
            .tables
            .read()
            .unwrap()
            .kinds
            .get(&(r.api_version.clone(), r.kind.clone()))
            .cloned();
        let Some(kind) = kind else {
            return Err(Error::UnknownKind(format!("{}/{}", r.api_version, r.kind)));
        };
        if kind.namespaced && item.namespace.is_none() {
            self.report_invalid_namespace(item, r).await;
            return Ok(None);
        }
        let api: Api<DynamicObject> = match &item.namespace {
            Some(ns) if kind.namespaced => Api::namespaced_with(self.client.clone(), ns, &kind.ar),
            _ => Api::all_with(self.client.clone(), &kind.ar),
        };
        let owner = api.get_metadata_opt(&r.name).await?;
        let Some(owner) = owner.filter(|o| o.metadata.uid.as_deref() == Some(r.uid.as_str()))
        else {
            // An owner the graph sees in another namespace: a reference across namespaces.
            let elsewhere = kind.namespaced
                && self
                    .graph
                    .lock()
                    .unwrap()
                    .get(&r.uid)
                    .is_some_and(|o| o.namespace.is_some() && o.namespace != item.namespace);
            if elsewhere {
                self.report_invalid_namespace(item, r).await;
            }
            return Ok(Some(Verdict::Dangling));
        };
        let m = &owner.metadata;
        let foreground = m.finalizers.iter().flatten().any(|f| f == FOREGROUND);
        Ok(Some(if m.deletion_timestamp.is_some() && foreground {
            Verdict::Waiting
        } else {
            Verdict::Solid
        }))
    }

    async fn report_invalid_namespace(&self, item: &Item, r: &OwnerReference) {
        let Some(res) = self.resource(item.resource) else {
            return;
        };
        let ns = item.namespace.clone().unwrap_or_default();
        let reference = ObjectReference {
            api_version: Some(res.ar.api_version.clone()),
            kind: Some(res.ar.kind.clone()),
            namespace: item.namespace.clone(),
            name: Some(item.name.clone()),
            uid: Some(item.uid.clone()),
            ..ObjectReference::default()
        };
        self.recorder.queue(
            reference,
            EventType::Warning,
            "OwnerRefInvalidNamespace",
            "GarbageCollect",
            invalid_namespace_message(r, &ns),
        );
    }

    /// An owner being deleted in the foreground: its blocking dependents go first, then the
    /// finalizer.
    async fn process_deleting_dependents(&self, item: &Item) -> Result<(), Error> {
        let (blocked, pending) = {
            let g = self.graph.lock().unwrap();
            let blocking = g.blocking_dependents(&item.uid);
            let pending: Vec<String> = blocking
                .iter()
                .filter(|d| !d.deleting)
                .map(|d| d.uid.clone())
                .collect();
            (!blocking.is_empty(), pending)
        };
        if !blocked {
            tracing::info!(name = %item.name, uid = %item.uid, "dependents gone: removing foregroundDeletion");
            return self.remove_finalizer(item, FOREGROUND).await;
        }
        for d in pending {
            self.queue.push(Work::Delete(d));
        }
        Ok(())
    }

    async fn attempt_to_orphan(&self, uid: &str) -> Result<(), Error> {
        let (item, dependents) = {
            let g = self.graph.lock().unwrap();
            let Some(item) = g.get(uid).cloned() else {
                return Ok(());
            };
            let deps: Vec<Item> = g.dependents_of(uid).into_iter().cloned().collect();
            (item, deps)
        };
        if !(item.deleting && item.orphan) {
            return Ok(());
        }
        for d in &dependents {
            self.remove_owner_refs(d, std::slice::from_ref(&item.uid))
                .await?;
        }
        tracing::info!(name = %item.name, uid, orphaned = dependents.len(), "dependents orphaned: removing the orphan finalizer");
        self.remove_finalizer(&item, ORPHAN).await
    }

    /// Removes the references to `owners` from `item` (compare-and-swap on its
    /// resourceVersion, again on a conflict).
    async fn remove_owner_refs(&self, item: &Item, owners: &[String]) -> Result<(), Error> {
        let Some(api) = self.api_of(item) else {
            return Ok(());
        };
        for _ in 0..5 {
            let Some(latest) = self.latest(item).await? else {
                return Ok(());
            };
            let refs: Vec<OwnerReference> = latest.owner_references.clone().unwrap_or_default();
            let kept: Vec<&OwnerReference> =
                refs.iter().filter(|r| !owners.contains(&r.uid)).collect();
            if kept.len() == refs.len() {
                return Ok(());
            }
            let patch = serde_json::json!({"metadata": {
                "ownerReferences": kept,
                "resourceVersion": latest.resource_version,
                "uid": item.uid,
            }});
            match api
                .patch(&item.name, &crate::patch_params(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => return Ok(()),
                Err(kube::Error::Api(e)) if e.code == 404 => return Ok(()),
                Err(kube::Error::Api(e)) if e.code == 409 => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::Conflict(item.name.clone()))
    }

    async fn remove_finalizer(&self, item: &Item, finalizer: &str) -> Result<(), Error> {
        let Some(api) = self.api_of(item) else {
            return Ok(());
        };
        for _ in 0..5 {
            let Some(latest) = self.latest(item).await? else {
                return Ok(());
            };
            let all: Vec<String> = latest.finalizers.clone().unwrap_or_default();
            if !all.iter().any(|f| f == finalizer) {
                return Ok(());
            }
            let kept: Vec<&String> = all.iter().filter(|f| *f != finalizer).collect();
            let patch = serde_json::json!({"metadata": {
                "finalizers": kept,
                "resourceVersion": latest.resource_version,
            }});
            match api
                .patch(&item.name, &crate::patch_params(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => return Ok(()),
                Err(kube::Error::Api(e)) if e.code == 404 => return Ok(()),
                Err(kube::Error::Api(e)) if e.code == 409 => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::Conflict(item.name.clone()))
    }
}

/// A task stopped when this is dropped (the collector's watches and workers go with it).
struct Abort(tokio::task::JoinHandle<()>);

impl Drop for Abort {
    fn drop(&mut self) {
        self.0.abort();
    }
}

enum Verdict {
    Solid,
    Dangling,
    Waiting,
}

/// Upstream's text: `ownerRef [apiVersion/Kind, namespace: NS, name: N, uid: U] does not exist
/// in namespace "NS"`.
pub fn invalid_namespace_message(r: &OwnerReference, ns: &str) -> String {
    format!(
        "ownerRef [{}/{}, namespace: {ns}, name: {}, uid: {}] does not exist in namespace {ns:?}",
        r.api_version, r.kind, r.name, r.uid
    )
}

/// One resource's metadata watch, into the graph builder.
async fn watch(client: kube::Client, index: usize, ar: ApiResource, tx: mpsc::Sender<Msg>) {
    let api: Api<PartialObjectMeta<DynamicObject>> = Api::all_with(client, &ar);
    let mut stream = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    while let Some(ev) = stream.next().await {
        let msg = match ev {
            Ok(Event::Init) => Msg::Init(index),
            Ok(Event::InitApply(o)) | Ok(Event::Apply(o)) => Msg::Apply(index, o.metadata),
            Ok(Event::Delete(o)) => Msg::Delete(o.metadata),
            Ok(Event::InitDone) => Msg::InitDone(index),
            Err(e) => {
                tracing::debug!(resource = %ar.plural, group = %ar.group, error = %e, "garbage collector watch");
                continue;
            }
        };
        if tx.send(msg).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(uid: &str, block: bool) -> Owner {
        Owner {
            uid: uid.into(),
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            name: format!("n-{uid}"),
            block,
        }
    }

    fn item(uid: &str, ns: Option<&str>, owners: Vec<Owner>) -> Item {
        Item {
            resource: 0,
            namespace: ns.map(String::from),
            name: format!("n-{uid}"),
            uid: uid.into(),
            owners,
            deleting: false,
            foreground: false,
            orphan: false,
        }
    }

    fn del(uid: &str) -> Work {
        Work::Delete(uid.into())
    }

    #[test]
    fn a_dependent_of_an_unseen_owner_is_looked_at() {
        let mut g = Graph::default();
        assert_eq!(
            g.upsert(item("c", Some("a"), vec![owner("p", false)])),
            vec![del("c")]
        );
        // Once the owner is seen, the dependent's owners are solid.
        assert_eq!(g.upsert(item("p", Some("a"), vec![])), vec![]);
        let c = g.get("c").unwrap().clone();
        assert!(g.owners_solid(&c));
        // An unchanged update makes no work.
        assert_eq!(g.upsert(c), vec![]);
    }

    #[test]
    fn an_owner_gone_makes_its_dependents_looked_at() {
        let mut g = Graph::default();
        g.upsert(item("p", Some("a"), vec![]));
        g.upsert(item("c1", Some("a"), vec![owner("p", false)]));
        g.upsert(item("c2", Some("a"), vec![owner("p", true)]));
        let mut w = g.remove("p");
        w.sort_by_key(|w| format!("{w:?}"));
        assert_eq!(w, vec![del("c1"), del("c2")]);
        assert!(!g.owners_solid(&g.get("c1").unwrap().clone()));
        // A dependent gone takes its edge along.
        g.remove("c1");
        assert_eq!(g.dependents_of("p").len(), 1);
    }

    #[test]
    fn foreground_deletion_deletes_dependents_and_waits_for_blocking_ones() {
        let mut g = Graph::default();
        g.upsert(item("p", Some("a"), vec![]));
        g.upsert(item("c1", Some("a"), vec![owner("p", true)]));
        g.upsert(item("c2", Some("a"), vec![owner("p", false)]));
        let mut p = item("p", Some("a"), vec![]);
        p.deleting = true;
        p.foreground = true;
        let mut w = g.upsert(p.clone());
        w.sort_by_key(|w| format!("{w:?}"));
        assert_eq!(w, vec![del("c1"), del("c2"), del("p")]);
        // Seen again while waiting: nothing new.
        assert_eq!(g.upsert(p), vec![]);
        assert_eq!(
            g.blocking_dependents("p")
                .iter()
                .map(|i| i.uid.as_str())
                .collect::<Vec<_>>(),
            vec!["c1"]
        );
        // A dependent of an owner being deleted in the foreground is not solid.
        assert!(!g.owners_solid(&g.get("c2").unwrap().clone()));
        // Each dependent going wakes the owner (as upstream), which then looks at what still
        // blocks it: c1 after c2 went, nothing after c1 went.
        assert_eq!(g.remove("c2"), vec![del("p")]);
        assert_eq!(g.blocking_dependents("p").len(), 1);
        assert_eq!(g.remove("c1"), vec![del("p")]);
        assert!(g.blocking_dependents("p").is_empty());
    }

    #[test]
    fn unblocking_a_reference_wakes_a_waiting_owner() {
        let mut g = Graph::default();
        let mut p = item("p", Some("a"), vec![]);
        p.deleting = true;
        p.foreground = true;
        g.upsert(p);
        g.upsert(item("c", Some("a"), vec![owner("p", true)]));
        assert_eq!(
            g.upsert(item("c", Some("a"), vec![owner("p", false)])),
            vec![del("p")]
        );
        assert_eq!(g.upsert(item("c", Some("a"), vec![])), vec![]);
        assert!(g.dependents_of("p").is_empty());
    }

    #[test]
    fn orphan_finalizer_makes_orphan_work_once() {
        let mut g = Graph::default();
        g.upsert(item("p", None, vec![]));
        g.upsert(item("c", Some("a"), vec![owner("p", true)]));
        let mut p = item("p", None, vec![]);
        p.deleting = true;
        p.orphan = true;
        assert_eq!(g.upsert(p.clone()), vec![Work::Orphan("p".into())]);
        assert_eq!(g.upsert(p), vec![]);
        // A cluster-scoped owner may own a namespaced dependent.
        assert!(g.owners_solid(&g.get("c").unwrap().clone()));
    }

    #[test]
    fn an_owner_in_another_namespace_is_not_an_owner() {
        let mut g = Graph::default();
        g.upsert(item("p", Some("a"), vec![]));
        assert_eq!(
            g.upsert(item("c", Some("b"), vec![owner("p", false)])),
            vec![del("c")]
        );
        assert!(!g.owners_solid(&g.get("c").unwrap().clone()));
        // Nor for a cluster-scoped dependent.
        assert_eq!(
            g.upsert(item("k", None, vec![owner("p", false)])),
            vec![del("k")]
        );
    }

    #[test]
    fn a_relist_drops_what_was_not_listed() {
        let mut g = Graph::default();
        g.upsert(item("p", Some("a"), vec![]));
        g.upsert(item("c", Some("a"), vec![owner("p", false)]));
        let mut other = item("x", Some("a"), vec![]);
        other.resource = 1;
        g.upsert(other);
        let seen: HashSet<String> = ["c".to_string()].into();
        assert_eq!(g.retain_listed(0, &seen), vec![del("c")]);
        assert!(g.get("p").is_none());
        assert!(g.get("x").is_some());
        assert_eq!(g.len(), 2);
    }

    #[test]
    fn items_come_from_metadata() {
        let m: ObjectMeta = serde_json::from_value(serde_json::json!({
            "name": "c", "namespace": "a", "uid": "u1",
            "deletionTimestamp": "2026-01-01T00:00:00Z",
            "finalizers": ["foregroundDeletion"],
            "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "p",
                                 "uid": "u0", "blockOwnerDeletion": true}],
        }))
        .unwrap();
        let i = Item::from_meta(3, &m).unwrap();
        assert!(i.deleting_dependents() && !i.orphan);
        assert_eq!(
            i.owners,
            vec![Owner {
                uid: "u0".into(),
                api_version: "v1".into(),
                kind: "ConfigMap".into(),
                name: "p".into(),
                block: true,
            }]
        );
        assert!(Item::from_meta(0, &ObjectMeta::default()).is_none());
    }

    #[test]
    fn invalid_namespace_message_is_upstreams() {
        let r = OwnerReference {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            name: "p".into(),
            uid: "u0".into(),
            ..OwnerReference::default()
        };
        assert_eq!(
            invalid_namespace_message(&r, "b"),
            "ownerRef [v1/ConfigMap, namespace: b, name: p, uid: u0] does not exist in namespace \"b\""
        );
    }
}
