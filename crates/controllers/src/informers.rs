//! Shared watch caches: one watch per kind for every loop in the process, as upstream's shared
//! informers, so that the controllers and the scheduler hold one copy of each object however
//! many of them look at it.
//!
//! Each kind is one kube-runtime watcher feeding a reflector [`Store`]; every change is also
//! sent to each subscriber, deletions included (kube-runtime's own shared streams leave them
//! out, and a ReplicaSet must hear that its pod went). A subscriber that falls behind slows the
//! watch rather than losing changes.
//!
//! Use: ask for every store and subscription while setting the loops up, then
//! [`Informers::start`] the watches and run the loops once [`Informers::synced`] says every
//! cache holds its first list. Loops that come and go (with leadership) over caches that stay
//! warm take a view ([`Informers::with_client`]) of caches started beforehand: what they ask
//! for starts at once, and their subscriptions begin with the cache as it is. Loops must not
//! wait on a cache with kube-runtime's `Store::wait_until_ready` before that: it wakes only
//! one of several waiters.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Resource;
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, watch};

/// How many changes a subscriber may be behind before the watch waits for it.
const BUFFER: usize = 1024;

/// A change to an object of a shared cache, as a subscriber sees it.
#[derive(Debug, Clone)]
pub enum Change<K> {
    /// Created or updated (or listed, at the start and after a re-list).
    Applied(Arc<K>),
    /// Gone: the last state the cache knew.
    Deleted(Arc<K>),
}

impl<K> Change<K> {
    pub fn object(&self) -> &Arc<K> {
        match self {
            Change::Applied(o) | Change::Deleted(o) => o,
        }
    }

    pub fn into_object(self) -> Arc<K> {
        match self {
            Change::Applied(o) | Change::Deleted(o) => o,
        }
    }
}

/// The kinds a shared cache can hold: k8s-openapi's typed objects.
pub trait Kind:
    Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static
{
}

impl<K> Kind for K where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static
{
}

/// Where a kind's changes go: one channel per subscriber.
type Subscribers<K> = Arc<Mutex<Vec<mpsc::Sender<Change<K>>>>>;

struct Entry<K: Kind> {
    store: Store<K>,
    subscribers: Subscribers<K>,
}

/// Each cache (an [`Entry`] of its kind) by its kind and field selector.
type Caches = HashMap<(TypeId, Option<&'static str>), Box<dyn Any + Send>>;

/// The shared caches of one process, seen with the client its user writes with: views made
/// by [`Informers::with_client`] share the caches.
#[derive(Clone)]
pub struct Informers {
    client: kube::Client,
    shared: Arc<Shared>,
}

struct Shared {
    /// What the watches read with.
    client: kube::Client,
    kinds: Mutex<Caches>,
    /// The watches asked for and not started yet; `None` once started, when new ones start
    /// at once.
    pending: Mutex<Option<Vec<BoxFuture<'static, ()>>>>,
    /// Watches started after [`Informers::start`], stopped with the last view.
    late: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Whether each cache holds its first list.
    listed: Mutex<Vec<watch::Receiver<bool>>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        for t in self.late.get_mut().unwrap().iter() {
            t.abort();
        }
    }
}

impl Informers {
    pub fn new(client: kube::Client) -> Self {
        Self {
            client: client.clone(),
            shared: Arc::new(Shared {
                client,
                kinds: Mutex::default(),
                pending: Mutex::new(Some(Vec::new())),
                late: Mutex::default(),
                listed: Mutex::default(),
            }),
        }
    }

    /// The same caches, for a loop that writes as another user.
    pub fn with_client(&self, client: kube::Client) -> Self {
        Self {
            client,
            shared: self.shared.clone(),
        }
    }

    /// The client of this view's user, for its writes.
    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    fn entry<K: Kind>(&self) -> (Store<K>, Subscribers<K>) {
        self.selected_entry::<K>(None)
    }

    /// The cache of the `K`s that match `fields` (a field selector; `None`: all of them).
    fn selected_entry<K: Kind>(&self, fields: Option<&'static str>) -> (Store<K>, Subscribers<K>) {
        let shared = &self.shared;
        let mut kinds = shared.kinds.lock().unwrap();
        let key = (TypeId::of::<K>(), fields);
        if let Some(e) = kinds.get(&key).and_then(|b| b.downcast_ref::<Entry<K>>()) {
            return (e.store.clone(), e.subscribers.clone());
        }
        let (store, writer) = reflector::store::<K>();
        let subscribers: Subscribers<K> = Arc::default();
        let api: Api<K> = Api::all(shared.client.clone());
        let mut config = watcher::Config::default();
        if let Some(fields) = fields {
            config = config.fields(fields);
        }
        let (listed, listed_rx) = watch::channel(false);
        shared.listed.lock().unwrap().push(listed_rx);
        let watch = Box::pin(feed(api, config, writer, subscribers.clone(), listed));
        match shared.pending.lock().unwrap().as_mut() {
            Some(pending) => pending.push(watch),
            None => shared.late.lock().unwrap().push(tokio::spawn(watch)),
        }
        kinds.insert(
            key,
            Box::new(Entry {
                store: store.clone(),
                subscribers: subscribers.clone(),
            }),
        );
        (store, subscribers)
    }

    /// The shared cache of every `K` in the cluster.
    pub fn store<K: Kind>(&self) -> Store<K> {
        self.entry::<K>().0
    }

    /// The shared cache of the `K`s that match the field selector `fields` (e.g.
    /// `metadata.name=kube-root-ca.crt`), for a loop that looks at a few objects of a kind
    /// of which there may be many.
    pub fn store_selected<K: Kind>(&self, fields: &'static str) -> Store<K> {
        self.selected_entry::<K>(Some(fields)).0
    }

    /// [`Informers::subscribe`] to the cache of [`Informers::store_selected`].
    pub fn subscribe_selected<K: Kind>(
        &self,
        fields: &'static str,
    ) -> impl Stream<Item = Arc<K>> + Send + 'static {
        self.selected_changes::<K>(Some(fields))
            .map(Change::into_object)
    }

    /// Every change to a `K` from now on: first the whole cache (as it is now, and again once
    /// it is listed if it is not yet), then each change as it is seen. An object may come
    /// twice in a row, never older after newer. The stream must be consumed (or dropped):
    /// the watch waits for it.
    pub fn changes<K: Kind>(&self) -> impl Stream<Item = Change<K>> + Send + 'static {
        self.selected_changes::<K>(None)
    }

    fn selected_changes<K: Kind>(
        &self,
        fields: Option<&'static str>,
    ) -> impl Stream<Item = Change<K>> + Send + 'static {
        let (tx, rx) = mpsc::channel(BUFFER);
        let (store, subscribers) = self.selected_entry::<K>(fields);
        // The watch applies a change to the store before it reads who to send it to: what the
        // snapshot misses, the channel gets.
        let now = {
            let mut subscribers = subscribers.lock().unwrap();
            subscribers.push(tx);
            store.state()
        };
        futures::stream::iter(now.into_iter().map(Change::Applied)).chain(tokio_stream_of(rx))
    }

    /// The objects that changed, deletions included, for kube-runtime's
    /// `Controller::for_shared_stream` / `owns_shared_stream` / `watches_shared_stream`.
    pub fn subscribe<K: Kind>(&self) -> impl Stream<Item = Arc<K>> + Send + 'static {
        self.changes::<K>().map(Change::into_object)
    }

    /// Completes once every cache asked for so far holds its first list.
    pub fn synced(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut listed: Vec<watch::Receiver<bool>> = self.shared.listed.lock().unwrap().clone();
        async move {
            for l in &mut listed {
                let _ = l.wait_for(|done| *done).await;
            }
        }
    }

    /// Starts every watch asked for so far; they run until the returned tasks are aborted.
    /// Watches asked for later start at once and run as long as a view of these caches is
    /// held. Once started, starting again starts nothing.
    pub fn start(&self) -> Vec<tokio::task::JoinHandle<()>> {
        self.shared
            .pending
            .lock()
            .unwrap()
            .take()
            .unwrap_or_default()
            .into_iter()
            .map(tokio::spawn)
            .collect()
    }
}

/// Drops from a cached object what no loop reads. managedFields are most of a small object's
/// size once decoded (upstream's informers drop them likewise, `TransformStripManagedFields`).
/// Pods are the many objects: what only their node's agent acts on goes (volumes, commands,
/// environment, probes, hooks, security contexts, runtime details of container statuses). What
/// stays: metadata, scheduling (resources, ports, affinities, tolerations, spread, priority,
/// images for locality), what endpoints need (ports, hostname, readiness gates), and status
/// phase, conditions, addresses and restart counts. The loops patch pods, never write back a
/// cached one, so nothing dropped here can be lost.
fn slim<K: Kind>(o: &mut K) {
    o.meta_mut().managed_fields = None;
    if let Some(pod) = (o as &mut dyn Any).downcast_mut::<Pod>() {
        slim_pod(pod);
    }
}

fn slim_pod(pod: &mut Pod) {
    if let Some(spec) = pod.spec.as_mut() {
        spec.volumes = None;
        spec.security_context = None;
        spec.image_pull_secrets = None;
        spec.dns_config = None;
        spec.host_aliases = None;
        spec.ephemeral_containers = None;
        for c in spec
            .containers
            .iter_mut()
            .chain(spec.init_containers.iter_mut().flatten())
        {
            c.command = None;
            c.args = None;
            c.env = None;
            c.env_from = None;
            c.volume_mounts = None;
            c.volume_devices = None;
            c.liveness_probe = None;
            c.readiness_probe = None;
            c.startup_probe = None;
            c.lifecycle = None;
            c.security_context = None;
            c.working_dir = None;
            c.termination_message_path = None;
            c.termination_message_policy = None;
            c.resize_policy = None;
        }
    }
    if let Some(status) = pod.status.as_mut() {
        status.ephemeral_container_statuses = None;
        for c in status
            .container_statuses
            .iter_mut()
            .flatten()
            .chain(status.init_container_statuses.iter_mut().flatten())
        {
            c.last_state = None;
            c.image_id = String::new();
            c.container_id = None;
            c.allocated_resources = None;
            c.resources = None;
            c.volume_mounts = None;
            c.user = None;
        }
    }
}

/// The items a channel receives, as a stream.
pub(crate) fn tokio_stream_of<T: Send + 'static>(
    mut rx: mpsc::Receiver<T>,
) -> impl Stream<Item = T> + Send + 'static {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

async fn feed<K: Kind>(
    api: Api<K>,
    config: watcher::Config,
    mut writer: reflector::store::Writer<K>,
    subscribers: Subscribers<K>,
    listed: watch::Sender<bool>,
) {
    let store = writer.as_reader();
    let mut events = std::pin::pin!(watcher(api, config).default_backoff().modify(slim::<K>));
    while let Some(ev) = events.next().await {
        let ev = match ev {
            Ok(ev) => ev,
            Err(e) => {
                tracing::debug!(kind = %K::kind(&()), error = %e, "watch error; retrying");
                continue;
            }
        };
        // A re-list: what was cached and is not listed again was deleted meanwhile.
        let before: Option<Vec<Arc<K>>> =
            matches!(ev, watcher::Event::InitDone).then(|| store.state());
        writer.apply_watcher_event(&ev);
        if matches!(ev, watcher::Event::InitDone) {
            listed.send_replace(true);
        }
        let changes: Vec<Change<K>> = match ev {
            // The cached copy, so that subscribers share it rather than hold their own.
            watcher::Event::Apply(o) => vec![Change::Applied(
                store
                    .get(&ObjectRef::from_obj(&o))
                    .unwrap_or_else(|| Arc::new(o)),
            )],
            watcher::Event::Delete(o) => vec![Change::Deleted(Arc::new(o))],
            watcher::Event::InitDone => {
                let now = store.state();
                let listed: std::collections::HashSet<ObjectRef<K>> =
                    now.iter().map(|o| ObjectRef::from_obj(&**o)).collect();
                before
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|o| !listed.contains(&ObjectRef::from_obj(&**o)))
                    .map(Change::Deleted)
                    .chain(now.into_iter().map(Change::Applied))
                    .collect()
            }
            watcher::Event::Init | watcher::Event::InitApply(_) => Vec::new(),
        };
        if changes.is_empty() {
            continue;
        }
        let targets: Vec<mpsc::Sender<Change<K>>> = subscribers.lock().unwrap().clone();
        let mut gone = false;
        for tx in &targets {
            for c in &changes {
                if tx.send(c.clone()).await.is_err() {
                    gone = true;
                    break;
                }
            }
        }
        if gone {
            subscribers.lock().unwrap().retain(|tx| !tx.is_closed());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slim_pods_keep_what_the_loops_read() {
        let mut pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "labels": {"app": "a"},
                "annotations": {"controller.kubernetes.io/pod-deletion-cost": "5"},
                "managedFields": [{"manager": "kubectl"}]},
            "spec": {
                "nodeName": "n1",
                "hostname": "h",
                "readinessGates": [{"conditionType": "x"}],
                "tolerations": [{"key": "k", "operator": "Exists"}],
                "volumes": [{"name": "v", "emptyDir": {}}],
                "initContainers": [{"name": "side", "image": "i", "restartPolicy": "Always",
                    "resources": {"requests": {"cpu": "1"}}, "env": [{"name": "A"}]}],
                "containers": [{"name": "c", "image": "img", "command": ["sh"],
                    "env": [{"name": "A", "value": "b"}],
                    "ports": [{"name": "http", "containerPort": 80, "hostPort": 8080}],
                    "resources": {"requests": {"cpu": "10m"}},
                    "readinessProbe": {"exec": {"command": ["true"]}},
                    "volumeMounts": [{"name": "v", "mountPath": "/v"}]}]
            },
            "status": {"phase": "Running", "podIP": "10.0.0.1",
                "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [{"name": "c", "image": "img", "imageID": "sha",
                    "ready": true, "restartCount": 3, "lastState": {"terminated": {"exitCode": 1}}}]}
        }))
        .unwrap();
        slim(&mut pod);
        assert!(pod.metadata.managed_fields.is_none());
        assert!(pod.metadata.annotations.is_some());
        let spec = pod.spec.as_ref().unwrap();
        assert!(spec.volumes.is_none());
        let c = &spec.containers[0];
        assert!(c.command.is_none() && c.env.is_none() && c.volume_mounts.is_none());
        assert!(c.readiness_probe.is_none());
        assert_eq!(c.image.as_deref(), Some("img"));
        assert_eq!(c.ports.as_ref().unwrap()[0].host_port, Some(8080));
        assert!(c.resources.as_ref().unwrap().requests.is_some());
        let side = &spec.init_containers.as_ref().unwrap()[0];
        assert!(side.env.is_none());
        assert_eq!(side.restart_policy.as_deref(), Some("Always"));
        assert_eq!(spec.node_name.as_deref(), Some("n1"));
        assert_eq!(spec.hostname.as_deref(), Some("h"));
        assert!(spec.readiness_gates.is_some() && spec.tolerations.is_some());
        let status = pod.status.as_ref().unwrap();
        assert_eq!(status.pod_ip.as_deref(), Some("10.0.0.1"));
        assert!(status.conditions.is_some());
        let cs = &status.container_statuses.as_ref().unwrap()[0];
        assert!(cs.ready && cs.restart_count == 3 && cs.last_state.is_none());
        assert!(cs.image_id.is_empty());
    }
}
