//! Pod workers: one task per pod bound to the node, driving the runtime towards the pod's spec
//! (sandbox, init containers in order, then containers) and writing the pod's status as the
//! kubelet reports it. A pod being deleted has its containers stopped within its grace period,
//! then the worker deletes the object for good (grace 0, UID precondition), as the kubelet does.
//!
//! Pods come from one watch on `spec.nodeName=NODE` (all the Node authorizer lets a node list).
//! After a restart the runtime's sandboxes and containers, labelled with the pod's UID, are
//! adopted; those of pods that no longer exist are removed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    ContainerState as K8sState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, EphemeralContainer, HostIP, ObjectReference, Pod,
    PodCondition, PodIP, PodStatus, Secret,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::events::EventType;
use kube::runtime::{watcher, WatchStreamExt};
use rudder_controllers::events::Events;
use tokio::sync::mpsc;

use crate::backoff::{self, Backoff};
use crate::env;
use crate::ipam::PodIps;
use crate::probes::{self, Probes, Target};
use crate::runtime::{
    Container, ContainerConfig, ContainerState, PortMapping, Runtime, RuntimeError, Sandbox,
    SandboxConfig, SandboxState, CONTAINER_NAME_LABEL, POD_NAMESPACE_LABEL, POD_NAME_LABEL,
    POD_UID_LABEL,
};
use crate::security;
use crate::volumes;

const FIELD_MANAGER: &str = "rudder-agent";

/// What the pod workers of one node share.
pub struct Shared {
    pub pods: Api<Pod>,
    pub runtime: Arc<dyn Runtime>,
    pub node_name: String,
    pub node_ip: IpAddr,
    /// Pod addresses; `None` until the node has a podCIDR.
    pub ips: Mutex<Option<PodIps>>,
    /// Wakes workers waiting for the podCIDR.
    pub network_ready: tokio::sync::watch::Receiver<bool>,
    /// Where the node's events go (`None`: not recorded, as for simulated nodes at scale).
    pub events: Option<Events>,
    /// The node's allocatable resources (what `resourceFieldRef` gives without a limit).
    pub allocatable: BTreeMap<String, Quantity>,
    /// Where pods' volumes and files go (`None`: a simulated runtime, which mounts nothing).
    pub pods_dir: Option<PathBuf>,
    /// The nameserver of pods with dnsPolicy ClusterFirst.
    pub cluster_dns: Option<IpAddr>,
    /// True while the node's Lease has run out: no container may run (see `fence`).
    pub fenced: tokio::sync::watch::Receiver<bool>,
    /// How often the volumes of ConfigMaps, Secrets and the downward API are brought up to
    /// date (the kubelet's sync frequency).
    pub volume_resync: Duration,
}

/// A pod's volumes on the node: what is set up (once it is), and when to look again.
struct PodVolumes {
    ready: Option<(HashMap<String, volumes::Ready>, Option<PathBuf>)>,
    next: Timestamp,
}

impl Shared {
    fn release(&self, ip: IpAddr) {
        if let Some(p) = lock(&self.ips).as_mut() {
            p.release(ip);
        }
    }

    fn reserve(&self, ip: IpAddr) {
        if let Some(p) = lock(&self.ips).as_mut() {
            p.reserve(ip);
        }
    }
}

/// How often a worker looks at its pod when nothing told it to (see [`relist`]).
const RESYNC: Duration = Duration::from_secs(10);

enum Message {
    Pod(Arc<Pod>),
    /// The pod object is gone from the API.
    Gone,
    /// Look again (the pod's containers changed, the node was fenced or is no longer).
    Wake,
}

/// Watches the node's pods and hands each to its worker until `shutdown` resolves.
pub async fn run(shared: Arc<Shared>) {
    let config = watcher::Config::default().fields(&format!("spec.nodeName={}", shared.node_name));
    // Workers never read managedFields; decoded they are most of a pod's size.
    let mut events = std::pin::pin!(watcher(shared.pods.clone(), config)
        .modify(|p| p.metadata.managed_fields = None)
        .default_backoff());
    let mut workers: HashMap<String, mpsc::UnboundedSender<Message>> = HashMap::new();
    // The workers' tasks: they end with this loop (dropped when the agent stops), not after
    // it, so none is left acting on a stopping agent's behalf.
    let mut tasks = tokio::task::JoinSet::new();
    let mut seen: HashSet<String> = HashSet::new();
    let mut adopted = false;
    let mut fenced = shared.fenced.clone();
    let mut changed = relist(&shared);
    loop {
        let event = tokio::select! {
            event = events.next() => match event {
                Some(e) => e,
                None => return,
            },
            // The workers of pods whose containers changed look at them.
            Some(uids) = changed.recv() => {
                for uid in uids {
                    if let Some(tx) = workers.get(&uid) {
                        let _ = tx.send(Message::Wake);
                    }
                }
                continue;
            }
            // Every worker looks again when the node is fenced or no longer (no sender: a
            // simulated node, never fenced).
            Ok(()) = fenced.changed() => {
                for tx in workers.values() {
                    let _ = tx.send(Message::Wake);
                }
                continue;
            }
        };
        let event = match event {
            Ok(e) => e,
            Err(e) => {
                // The stream waits before it tries again.
                crate::retrying(
                    &shared.node_name,
                    "watching pods",
                    crate::watch_busy(&e),
                    &e,
                );
                continue;
            }
        };
        match event {
            watcher::Event::Init => seen.clear(),
            watcher::Event::InitApply(pod) => {
                if let Some(uid) = pod.metadata.uid.clone() {
                    seen.insert(uid.clone());
                    dispatch(
                        &shared,
                        &mut workers,
                        &mut tasks,
                        uid,
                        Message::Pod(Arc::new(pod)),
                    );
                }
            }
            watcher::Event::InitDone => {
                // Pods deleted while the watch was down.
                let gone: Vec<String> = workers
                    .keys()
                    .filter(|uid| !seen.contains(*uid))
                    .cloned()
                    .collect();
                for uid in gone {
                    dispatch(&shared, &mut workers, &mut tasks, uid, Message::Gone);
                }
                if !adopted {
                    adopted = true;
                    remove_orphans(&shared, &seen).await;
                }
            }
            watcher::Event::Apply(pod) => {
                if let Some(uid) = pod.metadata.uid.clone() {
                    dispatch(
                        &shared,
                        &mut workers,
                        &mut tasks,
                        uid,
                        Message::Pod(Arc::new(pod)),
                    );
                }
            }
            watcher::Event::Delete(pod) => {
                if let Some(uid) = pod.metadata.uid.clone() {
                    dispatch(&shared, &mut workers, &mut tasks, uid, Message::Gone);
                }
            }
        }
        workers.retain(|_, tx| !tx.is_closed());
        while tasks.try_join_next().is_some() {}
    }
}

/// Looks at the whole node's sandboxes and containers every [`Runtime::poll_period`] (one
/// listing of each, as the kubelet's PLEG relists) and sends the UIDs of the pods whose
/// sandboxes or containers came, went or changed state since the last look. Nothing is sent
/// for a runtime that never changes on its own.
fn relist(shared: &Arc<Shared>) -> mpsc::UnboundedReceiver<Vec<String>> {
    let (tx, rx) = mpsc::unbounded_channel();
    let Some(period) = shared.runtime.poll_period() else {
        return rx;
    };
    let runtime = shared.runtime.clone();
    tokio::spawn(async move {
        let mut before: HashMap<String, u64> = HashMap::new();
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if tx.is_closed() {
                return;
            }
            let now = match runtime.relist().await {
                Ok(now) => now,
                Err(e) => {
                    tracing::debug!(error = %e, "listing the node's containers");
                    continue;
                }
            };
            let uids = changed_pods(&before, &now);
            before = now;
            if !uids.is_empty() {
                let _ = tx.send(uids);
            }
        }
    });
    rx
}

/// The pods whose fingerprints differ between two relists, those that came or went included.
fn changed_pods(before: &HashMap<String, u64>, now: &HashMap<String, u64>) -> Vec<String> {
    now.iter()
        .filter(|(uid, f)| before.get(*uid) != Some(f))
        .map(|(uid, _)| uid.clone())
        .chain(before.keys().filter(|uid| !now.contains_key(*uid)).cloned())
        .collect()
}

fn dispatch(
    shared: &Arc<Shared>,
    workers: &mut HashMap<String, mpsc::UnboundedSender<Message>>,
    tasks: &mut tokio::task::JoinSet<()>,
    uid: String,
    msg: Message,
) {
    if let Some(tx) = workers.get(&uid) {
        if tx.send(msg).is_ok() {
            return;
        }
        workers.remove(&uid);
        return;
    }
    let Message::Pod(pod) = msg else { return };
    let (tx, rx) = mpsc::unbounded_channel();
    let _ = tx.send(Message::Pod(pod));
    workers.insert(uid.clone(), tx);
    tasks.spawn(Worker::new(shared.clone(), uid).run(rx));
}

/// Sandboxes of pods that do not exist any more (deleted while the agent was away).
async fn remove_orphans(shared: &Shared, live: &HashSet<String>) {
    let Ok(sandboxes) = shared.runtime.list_sandboxes(None).await else {
        return;
    };
    for sb in sandboxes {
        let orphan = sb
            .labels
            .get(POD_UID_LABEL)
            .is_some_and(|uid| !live.contains(uid));
        if orphan {
            let _ = shared.runtime.stop_sandbox(&sb.id).await;
            let _ = shared.runtime.remove_sandbox(&sb.id).await;
            if let Some(ip) = sb.ip {
                shared.release(ip);
            }
        }
    }
    // Their volumes and files too (the directories are named by pod UID).
    let Some(root) = &shared.pods_dir else {
        return;
    };
    for e in std::fs::read_dir(root).into_iter().flatten().flatten() {
        let Some(uid) = e.file_name().to_str().map(str::to_string) else {
            continue;
        };
        // Log directories are NAMESPACE_NAME_UID; pod directories are the bare UID.
        if uid.contains('_') || live.contains(&uid) {
            continue;
        }
        if let Err(e) = volumes::PodDir::new(root, &uid).tear_down() {
            tracing::warn!(%uid, error = %e, "removing an orphaned pod's volumes");
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

struct Worker {
    shared: Arc<Shared>,
    uid: String,
    sandbox: Option<Sandbox>,
    /// Restart back-off per container name, pull back-off per image.
    backoff: Backoff,
    /// Why a container is not running, for as long as that holds.
    waiting: HashMap<String, Waiting>,
    /// When a back-off runs out or a probe is due and the worker must look again.
    wake: Option<Timestamp>,
    probes: Probes,
    /// The status last written, to write only changes (boxed: most of a worker's size).
    written: Option<Box<PodStatus>>,
    finished: bool,
    volumes: Option<Box<PodVolumes>>,
}

/// A container's waiting reason and message in the pod's status (`CrashLoopBackOff`,
/// `ErrImagePull`, ...), and until when it stands; without a time it is worked out again at
/// the next sync.
#[derive(Clone, Debug)]
struct Waiting {
    reason: &'static str,
    message: String,
    until: Option<Timestamp>,
}

impl Worker {
    fn new(shared: Arc<Shared>, uid: String) -> Worker {
        Worker {
            shared,
            uid,
            sandbox: None,
            backoff: Backoff::default(),
            waiting: HashMap::new(),
            wake: None,
            probes: Probes::default(),
            written: None,
            finished: false,
            volumes: None,
        }
    }

    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Message>) {
        let mut pod: Option<Arc<Pod>> = None;
        let mut network = self.shared.network_ready.clone();
        // With a runtime that changes on its own, the relist wakes the worker when its
        // containers change and timers when its probes, back-offs and volumes are due; this
        // look catches the rest (a ConfigMap or Secret a container waits for, created since).
        let poll = self.shared.runtime.poll_period().map(|_| RESYNC);
        // After a failed sync (the API refused or was unreachable), the next try comes after
        // this, doubling up to 30 s, whatever the runtime's polling says.
        let mut backoff: Option<Duration> = None;
        loop {
            // The newest of what is queued.
            let mut gone = false;
            while let Ok(m) = rx.try_recv() {
                match m {
                    Message::Pod(p) => pod = Some(p),
                    Message::Gone => gone = true,
                    Message::Wake => {}
                }
            }
            // The work is boxed: an idle worker (what almost every worker is almost all the
            // time) keeps only this loop's state, not that of the deepest await in a sync.
            if gone {
                Box::pin(self.teardown()).await;
                return;
            }
            if let Some(p) = &pod {
                match Box::pin(self.sync(p)).await {
                    Ok(()) => backoff = None,
                    Err(e) => {
                        let busy = e.downcast_ref::<kube::Error>().is_some_and(crate::busy);
                        crate::retrying(&pod_key(p), "pod sync", busy, &e);
                        // Spread, so pods turned away together do not come back together.
                        let first =
                            Duration::from_secs(1).mul_f64(0.5 + crate::spread(&pod_key(p)));
                        backoff =
                            Some(backoff.map_or(first, |b| (b * 2).min(Duration::from_secs(30))));
                    }
                }
            }
            let mut wait = match (backoff, poll) {
                (Some(b), Some(p)) => b.min(p),
                (Some(b), None) => b,
                (None, p) => p.unwrap_or(Duration::from_secs(3600)),
            };
            if let Some(at) = self.wake {
                let left = at.duration_since(Timestamp::now());
                wait = wait.min(Duration::try_from(left).unwrap_or(Duration::ZERO));
            }
            let retry = tokio::time::sleep(wait);
            tokio::select! {
                m = rx.recv() => match m {
                    Some(Message::Pod(p)) => pod = Some(p),
                    Some(Message::Wake) => {}
                    Some(Message::Gone) => {
                        Box::pin(self.teardown()).await;
                        return;
                    }
                    // The agent is stopping: the pod's containers keep running for the next
                    // agent to adopt, as a kubelet's do.
                    None => return,
                },
                _ = network.changed() => {}
                _ = retry => {}
            }
        }
    }

    /// The pod object is gone: nothing of it may keep running.
    async fn teardown(&mut self) {
        let rt = &self.shared.runtime;
        let sandboxes = match self.sandbox.take() {
            Some(sb) => vec![sb],
            None => self.find_sandboxes().await,
        };
        for sb in sandboxes {
            for c in rt.list_containers(&sb.id).await.unwrap_or_default() {
                let _ = rt.stop_container(&c.id, Duration::ZERO).await;
            }
            let _ = rt.stop_sandbox(&sb.id).await;
            let _ = rt.remove_sandbox(&sb.id).await;
            if let Some(ip) = sb.ip {
                self.shared.release(ip);
            }
        }
        if let Some(root) = &self.shared.pods_dir {
            if let Err(e) = volumes::PodDir::new(root, &self.uid).tear_down() {
                tracing::warn!(uid = %self.uid, error = %e, "removing the pod's volumes");
            }
            security::remove_pod_cgroups(&self.uid);
        }
    }

    /// Sets up the pod's volumes and /etc/hosts, or brings them up to date when that is due;
    /// whether they are there for the containers. A failure is the kubelet's FailedMount.
    async fn mount_volumes(&mut self, pod: &Pod, sandbox: &Sandbox) -> bool {
        let Some(root) = self.shared.pods_dir.clone() else {
            return true;
        };
        let now = Timestamp::now();
        if self.volumes.as_ref().is_some_and(|v| v.next > now) {
            return self.volumes.as_ref().is_some_and(|v| v.ready.is_some());
        }
        let dir = volumes::PodDir::new(&root, &self.uid);
        let client = self.shared.pods.clone().into_client();
        let host_network = pod
            .spec
            .as_ref()
            .and_then(|s| s.host_network)
            .unwrap_or(false);
        let set_up = match dir.set_up(&client, pod, &self.shared.allocatable).await {
            Ok(ready) if host_network => Ok((ready, None)),
            Ok(ready) => dir
                .write_hosts(pod, sandbox.ip)
                .map(|hosts| (ready, Some(hosts)))
                .map_err(|e| format!("writing the pod's /etc/hosts: {e}")),
            Err(why) => Err(why),
        };
        let state = self.volumes.get_or_insert_with(|| {
            Box::new(PodVolumes {
                ready: None,
                next: now,
            })
        });
        match set_up {
            Ok(ready) => {
                state.ready = Some(ready);
                state.next = now
                    .checked_add(
                        SignedDuration::try_from(self.shared.volume_resync).unwrap_or_default(),
                    )
                    .unwrap_or(now);
            }
            Err(why) => {
                // Containers already running keep what they have; new ones wait.
                state.next = self.backoff.failed("volumes", now).unwrap_or(now);
                self.event(pod, EventType::Warning, "FailedMount", why);
            }
        }
        self.volumes.as_ref().is_some_and(|v| v.ready.is_some())
    }

    async fn find_sandboxes(&self) -> Vec<Sandbox> {
        self.shared
            .runtime
            .list_sandboxes(Some(&self.uid))
            .await
            .unwrap_or_default()
    }

    async fn sync(&mut self, pod: &Pod) -> anyhow::Result<()> {
        if *self.shared.fenced.borrow() {
            // Fenced: the pod's containers stop at once and nothing starts (nor can the
            // status be written).
            for sb in self.find_sandboxes().await {
                for c in self.shared.runtime.list_containers(&sb.id).await? {
                    if matches!(c.state, ContainerState::Running { .. }) {
                        self.shared
                            .runtime
                            .stop_container(&c.id, Duration::ZERO)
                            .await?;
                    }
                }
            }
            return Ok(());
        }
        let spec = pod.spec.clone().unwrap_or_default();
        let status = pod.status.clone().unwrap_or_default();
        if pod.metadata.deletion_timestamp.is_some() {
            return self.terminate(pod).await;
        }
        let phase = status.phase.as_deref().unwrap_or("Pending");
        if self.finished || matches!(phase, "Succeeded" | "Failed") {
            // A finished pod's containers are not started again.
            return Ok(());
        }
        if self.sandbox.is_none() {
            // After a restart: adopt what the runtime runs for this pod.
            self.sandbox = self
                .find_sandboxes()
                .await
                .into_iter()
                .find(|sb| sb.state == SandboxState::Ready);
            if let Some(ip) = self.sandbox.as_ref().and_then(|sb| sb.ip) {
                self.shared.reserve(ip);
            }
        }
        let host_network = spec.host_network.unwrap_or(false);
        if self.sandbox.is_none() {
            let ip = {
                let mut ips = lock(&self.shared.ips);
                match ips.as_mut() {
                    // No podCIDR yet: the pod waits, as it waits for the CNI on a kubelet.
                    None if !host_network => return Ok(()),
                    Some(p) if !host_network && !self.shared.runtime.assigns_addresses() => {
                        Some(p.allocate()?)
                    }
                    _ => None,
                }
            };
            let config = SandboxConfig {
                pod_uid: self.uid.clone(),
                namespace: pod.metadata.namespace.clone().unwrap_or_default(),
                name: pod.metadata.name.clone().unwrap_or_default(),
                hostname: spec
                    .hostname
                    .clone()
                    .or_else(|| pod.metadata.name.clone())
                    .unwrap_or_default(),
                host_network,
                share_processes: spec.share_process_namespace.unwrap_or(false),
                ip,
                labels: self.labels(pod, None),
                dns: volumes::dns_config(pod, self.shared.cluster_dns),
                cgroup_parent: security::cgroup_parent(pod),
                privileged: spec
                    .containers
                    .iter()
                    .chain(spec.init_containers.iter().flatten())
                    .any(|c| {
                        c.security_context
                            .as_ref()
                            .and_then(|s| s.privileged)
                            .unwrap_or(false)
                    }),
                port_mappings: if host_network {
                    Vec::new()
                } else {
                    port_mappings(&spec)
                },
            };
            match self.shared.runtime.run_sandbox(&config).await {
                Ok(sb) => self.sandbox = Some(sb),
                Err(e) => {
                    if let Some(ip) = ip {
                        self.shared.release(ip);
                    }
                    self.event(
                        pod,
                        EventType::Warning,
                        "FailedCreatePodSandBox",
                        format!("Failed to create pod sandbox: {e}"),
                    );
                    return Err(e.into());
                }
            }
        }
        let Some(sandbox) = self.sandbox.clone() else {
            return Ok(());
        };
        let rt = self.shared.runtime.clone();
        let mut running = rt.list_containers(&sandbox.id).await?;
        let restart_policy = spec.restart_policy.as_deref().unwrap_or("Always");
        let now = Timestamp::now();
        self.waiting.retain(|_, w| w.until.is_some_and(|u| u > now));
        self.wake = None;
        // Init containers, one at a time and in order; a failed one runs again unless the
        // pod's restartPolicy is Never.
        let mounted = self.mount_volumes(pod, &sandbox).await;
        let mut initialized = mounted;
        for c in spec.init_containers.iter().flatten().filter(|_| mounted) {
            let current = newest(&running, &c.name).cloned();
            match current.as_ref().map(|c| &c.state) {
                Some(ContainerState::Exited { exit_code: 0, .. }) => continue,
                Some(ContainerState::Exited { .. }) if restart_policy == "Never" => {
                    self.finished = true;
                }
                Some(ContainerState::Running { .. }) => {}
                _ => {
                    self.ensure(pod, &sandbox, c, Role::Init, current.as_ref(), &running)
                        .await
                }
            }
            initialized = false;
            break;
        }
        if initialized {
            for c in &spec.containers {
                let current = newest(&running, &c.name).cloned();
                let due = match current.as_ref().map(|c| &c.state) {
                    None | Some(ContainerState::Created) => true,
                    Some(ContainerState::Exited { exit_code, .. }) => {
                        restart_policy == "Always"
                            || (restart_policy == "OnFailure" && *exit_code != 0)
                    }
                    Some(ContainerState::Running { .. }) => false,
                };
                if due {
                    self.ensure(pod, &sandbox, c, Role::App, current.as_ref(), &running)
                        .await;
                }
            }
        }
        // Ephemeral containers run once each, initialized or not, joining their target's
        // processes when they name one.
        for e in spec
            .ephemeral_containers
            .iter()
            .flatten()
            .filter(|_| mounted)
        {
            let current = newest(&running, &e.name).cloned();
            if !matches!(
                current.as_ref().map(|c| &c.state),
                None | Some(ContainerState::Created)
            ) {
                continue;
            }
            let c = as_container(e);
            let role = match e.target_container_name.as_deref() {
                None => Role::Ephemeral(None),
                Some(target) => match newest(&running, target)
                    .filter(|k| matches!(k.state, ContainerState::Running { .. }))
                {
                    Some(k) => Role::Ephemeral(Some(k.id.clone())),
                    None if self.waiting.contains_key(&e.name) => continue,
                    None => {
                        let message = format!("target container {target:?} is not running");
                        let w = self.config_error(pod, &e.name, message);
                        self.waiting.insert(e.name.clone(), w);
                        continue;
                    }
                },
            };
            self.ensure(pod, &sandbox, &c, role, current.as_ref(), &running)
                .await;
        }
        if initialized {
            self.probe(pod, &sandbox, &running).await;
        }
        let probe_due = self.probes.next_due().and_then(|at| {
            let wait = at.saturating_duration_since(tokio::time::Instant::now());
            Timestamp::now()
                .checked_add(SignedDuration::try_from(wait).ok()?)
                .ok()
        });
        self.wake = self
            .waiting
            .values()
            .filter_map(|w| w.until)
            .chain(probe_due)
            .chain(self.volumes.as_ref().map(|v| v.next))
            .min();
        running = rt.list_containers(&sandbox.id).await?;
        let status = self.status(pod, &sandbox, &running, initialized);
        if self.written.as_deref() != Some(&status) {
            self.write_status(pod, &status).await?;
            self.written = Some(Box::new(status));
        }
        Ok(())
    }

    /// Runs the probes that are due for the running containers; a container that failed its
    /// liveness or startup probe is killed (and so restarted as the restartPolicy says).
    async fn probe(&mut self, pod: &Pod, sandbox: &Sandbox, running: &[Container]) {
        let spec = pod.spec.clone().unwrap_or_default();
        let rt = self.shared.runtime.clone();
        let ip = if spec.host_network.unwrap_or(false) {
            Some(self.shared.node_ip)
        } else {
            sandbox.ip
        };
        let grace = Duration::from_secs(
            u64::try_from(spec.termination_grace_period_seconds.unwrap_or(30)).unwrap_or(0),
        );
        let mut live: Vec<&str> = Vec::new();
        for c in &spec.containers {
            let Some(k) = newest(running, &c.name) else {
                continue;
            };
            if !matches!(k.state, ContainerState::Running { .. }) {
                continue;
            }
            live.push(&c.name);
            let target = Target {
                runtime: &rt,
                container_id: &k.id,
                ip,
                spec: c,
            };
            let verdict = self.probes.run(&target, rt.simulated()).await;
            for (kind, output) in verdict.failures {
                self.event(
                    pod,
                    EventType::Warning,
                    "Unhealthy",
                    format!("{} probe failed: {output}", kind.name()),
                );
            }
            if let Some(kind) = verdict.kill {
                self.event(
                    pod,
                    EventType::Normal,
                    "Killing",
                    format!(
                        "Container {} failed {} probe, will be restarted",
                        c.name,
                        kind.name().to_ascii_lowercase()
                    ),
                );
                if let Err(e) = rt.stop_container(&k.id, grace).await {
                    tracing::warn!(pod = %pod_key(pod), container = %c.name, error = %e, "killing an unhealthy container");
                }
            }
        }
        self.probes.keep_only(&live);
    }

    /// Brings up container `c`, whose newest instance is `current` (`None`, never started,
    /// or exited and due to run again), unless a back-off holds it; what stands in the way is
    /// left in `self.waiting` for the status.
    async fn ensure(
        &mut self,
        pod: &Pod,
        sandbox: &Sandbox,
        c: &k8s_openapi::api::core::v1::Container,
        role: Role,
        current: Option<&Container>,
        all: &[Container],
    ) {
        let image = c.image.clone().unwrap_or_default();
        if let Some(w) = self.waiting.get_mut(&c.name) {
            // Still backing off from a failure.
            if w.reason == "ErrImagePull" {
                w.reason = "ImagePullBackOff";
                w.message = format!("Back-off pulling image {image:?}");
                let message = w.message.clone();
                self.event(pod, EventType::Normal, "BackOff", message);
                self.event(
                    pod,
                    EventType::Warning,
                    "Failed",
                    "Error: ImagePullBackOff".into(),
                );
            }
            return;
        }
        let rt = self.shared.runtime.clone();
        let now = Timestamp::now();
        match current {
            Some(
                cur @ Container {
                    state: ContainerState::Exited { finished_at, .. },
                    ..
                },
            ) => {
                if let Some((until, delay)) = self.backoff.waiting(&c.name, *finished_at, now) {
                    let message = format!(
                        "back-off {} restarting failed container={} pod={}({})",
                        backoff::go_duration(delay),
                        c.name,
                        pod_name_ns(pod),
                        self.uid
                    );
                    self.waiting.insert(
                        c.name.clone(),
                        Waiting {
                            reason: "CrashLoopBackOff",
                            message,
                            until: Some(until),
                        },
                    );
                    self.event(
                        pod,
                        EventType::Warning,
                        "BackOff",
                        format!(
                            "Back-off restarting failed container {} in pod {}({})",
                            c.name,
                            pod_name_ns(pod),
                            self.uid
                        ),
                    );
                    return;
                }
                self.backoff.next(&c.name, *finished_at);
                // The instance before stays for `kubectl logs --previous`; older ones go.
                for old in all.iter().filter(|o| {
                    o.name == c.name
                        && o.id != cur.id
                        && matches!(o.state, ContainerState::Exited { .. })
                }) {
                    let _ = rt.remove_container(&old.id).await;
                }
            }
            // Created but never started (the agent stopped in between): made again.
            Some(Container {
                state: ContainerState::Created,
                id,
                ..
            }) => {
                let _ = rt.remove_container(id).await;
            }
            _ => {}
        }
        let attempt = current.map_or(0, |k| k.attempt + 1);
        if let Err(w) = self.start(pod, sandbox, c, role, &image, attempt).await {
            self.waiting.insert(c.name.clone(), w);
        }
    }

    /// A container whose configuration cannot be made (`message` says why): the kubelet's
    /// CreateContainerConfigError, tried again after the back-off.
    fn config_error(&mut self, pod: &Pod, container: &str, message: String) -> Waiting {
        let until = self.backoff.failed(container, Timestamp::now());
        self.event(
            pod,
            EventType::Warning,
            "Failed",
            format!("Error: {message}"),
        );
        Waiting {
            reason: "CreateContainerConfigError",
            message,
            until,
        }
    }

    /// Pulls the image as the container's imagePullPolicy says, then creates and starts the
    /// container, recording the kubelet's events on the way.
    async fn start(
        &mut self,
        pod: &Pod,
        sandbox: &Sandbox,
        c: &k8s_openapi::api::core::v1::Container,
        role: Role,
        image: &str,
        attempt: u32,
    ) -> Result<(), Waiting> {
        let rt = self.shared.runtime.clone();
        let failed = |reason: &'static str, message: String, until: Option<Timestamp>| Waiting {
            reason,
            message,
            until,
        };
        let info = match rt.image_status(image).await {
            Ok(info) => info,
            Err(RuntimeError::InvalidImageName(_)) => {
                let message = format!(
                    "Failed to apply default image tag {image:?}: couldn't parse image name {image:?}: invalid reference format"
                );
                self.event(pod, EventType::Warning, "InspectFailed", message.clone());
                self.event(
                    pod,
                    EventType::Warning,
                    "Failed",
                    "Error: InvalidImageName".into(),
                );
                let until = self
                    .backoff
                    .failed(&format!("pull:{image}"), Timestamp::now());
                return Err(failed("InvalidImageName", message, until));
            }
            Err(_) => None,
        };
        let present = info.is_some();
        let policy = c.image_pull_policy.as_deref().unwrap_or("IfNotPresent");
        if present && policy != "Always" {
            self.event(
                pod,
                EventType::Normal,
                "Pulled",
                format!("Container image {image:?} already present on machine"),
            );
        } else if policy == "Never" {
            let message =
                format!("Container image {image:?} is not present with pull policy of Never");
            self.event(
                pod,
                EventType::Warning,
                "ErrImageNeverPull",
                message.clone(),
            );
            self.event(
                pod,
                EventType::Warning,
                "Failed",
                "Error: ErrImageNeverPull".into(),
            );
            let until = self
                .backoff
                .failed(&format!("pull:{image}"), Timestamp::now());
            return Err(failed("ErrImageNeverPull", message, until));
        } else {
            self.event(
                pod,
                EventType::Normal,
                "Pulling",
                format!("Pulling image {image:?}"),
            );
            let began = std::time::Instant::now();
            let secrets = self.pull_secrets(pod, image).await;
            match rt.pull_image(image, &secrets).await {
                Ok(_) => self.event(
                    pod,
                    EventType::Normal,
                    "Pulled",
                    format!(
                        "Successfully pulled image {image:?} in {:.3}s",
                        began.elapsed().as_secs_f64()
                    ),
                ),
                Err(e) => {
                    let message = match e {
                        RuntimeError::Image { message, .. } => message,
                        e => e.to_string(),
                    };
                    let until = self
                        .backoff
                        .failed(&format!("pull:{image}"), Timestamp::now());
                    self.event(
                        pod,
                        EventType::Warning,
                        "Failed",
                        format!("Failed to pull image {image:?}: {message}"),
                    );
                    self.event(
                        pod,
                        EventType::Warning,
                        "Failed",
                        "Error: ErrImagePull".into(),
                    );
                    return Err(failed("ErrImagePull", message, until));
                }
            }
        }
        // A simulated container has no process to see its environment: the API is spared.
        let env = if rt.simulated() {
            c.env
                .iter()
                .flatten()
                .filter_map(|e| e.value.clone().map(|v| (e.name.clone(), v)))
                .collect()
        } else {
            let client = self.shared.pods.clone().into_client();
            let mut sources = env::Sources::new(&client, &self.shared.allocatable);
            match env::environment(&mut sources, pod, c).await {
                Ok(env) => env,
                Err(message) => {
                    return Err(self.config_error(pod, &c.name, message));
                }
            }
        };
        let known: HashMap<&str, &str> = env
            .iter()
            .map(|(k, v): &(String, String)| (k.as_str(), v.as_str()))
            .collect();
        let expanded = |list: &Option<Vec<String>>| -> Vec<String> {
            list.iter()
                .flatten()
                .map(|a| env::expand(a, &known))
                .collect()
        };
        let mounts = match self.volumes.as_ref().and_then(|v| v.ready.as_ref()) {
            Some((ready, hosts)) => match volumes::PodDir::mounts(c, ready, hosts.as_deref()) {
                Ok(m) => m,
                Err(message) => {
                    return Err(self.config_error(pod, &c.name, message));
                }
            },
            None => Vec::new(),
        };
        let security = security::security(pod, c);
        if security::requires_non_root(pod, c) {
            // The image's user, known once it is here (after a pull, asked again).
            let info = match &info {
                Some(i) => Some(i.clone()),
                None => rt.image_status(image).await.ok().flatten(),
            };
            let (uid, user) = info.map(|i| (i.uid, i.username)).unwrap_or_default();
            if let Err(message) = security::verify_non_root(pod, c, &security, uid, &user) {
                return Err(self.config_error(pod, &c.name, message));
            }
        }
        let node_memory = self
            .shared
            .allocatable
            .get("memory")
            .and_then(|q| rudder_api::validation::Quantity::parse(&q.0))
            .map_or(0, |q| {
                i64::try_from(q.nanos() / 1_000_000_000).unwrap_or(i64::MAX)
            });
        let config = ContainerConfig {
            name: c.name.clone(),
            image: image.to_string(),
            command: expanded(&c.command),
            args: expanded(&c.args),
            working_dir: c.working_dir.clone(),
            env: env.clone(),
            labels: self.labels(pod, Some(&c.name)),
            tty: c.tty.unwrap_or(false),
            stdin: c.stdin.unwrap_or(false),
            run_to_completion: role == Role::Init,
            mounts,
            resources: security::resources(pod, c, node_memory),
            security,
            cgroup_parent: security::cgroup_parent(pod),
            attempt,
            pid_target: match role {
                Role::Ephemeral(target) => target,
                Role::Init | Role::App => None,
            },
        };
        // A failure to create or start backs off as a crash does.
        let back_off = |w: &mut Worker, reason: &'static str, e: RuntimeError| {
            let until = w.backoff.failed(&c.name, Timestamp::now());
            w.event(pod, EventType::Warning, "Failed", format!("Error: {e}"));
            failed(reason, e.to_string(), until)
        };
        let id = match rt.create_container(&sandbox.id, &config).await {
            Ok(id) => id,
            Err(e) => return Err(back_off(self, "CreateContainerError", e)),
        };
        self.event(
            pod,
            EventType::Normal,
            "Created",
            format!("Created container: {}", c.name),
        );
        if let Err(e) = rt.start_container(&id).await {
            return Err(back_off(self, "RunContainerError", e));
        }
        self.event(
            pod,
            EventType::Normal,
            "Started",
            format!("Started container {}", c.name),
        );
        let post_start = c.lifecycle.as_ref().and_then(|l| l.post_start.as_ref());
        if let (Some(hook), false) = (post_start, rt.simulated()) {
            let spec = pod.spec.clone().unwrap_or_default();
            let ip = if spec.host_network.unwrap_or(false) {
                Some(self.shared.node_ip)
            } else {
                sandbox.ip
            };
            let target = Target {
                runtime: &rt,
                container_id: &id,
                ip,
                spec: c,
            };
            let grace = Duration::from_secs(
                u64::try_from(spec.termination_grace_period_seconds.unwrap_or(30)).unwrap_or(0),
            );
            // As the kubelet: a container whose postStart hook fails is killed, and restarted
            // as the restartPolicy says.
            if let Err(e) = probes::run_hook(hook, &target, Duration::from_secs(30)).await {
                self.event(
                    pod,
                    EventType::Warning,
                    "FailedPostStartHook",
                    format!("PostStartHook failed: {e}"),
                );
                let _ = rt.stop_container(&id, grace).await;
            }
        }
        Ok(())
    }

    /// The credentials of the pod's image pull secrets for `image`'s registry; a secret that
    /// cannot be read is left out with the kubelet's warning.
    async fn pull_secrets(&self, pod: &Pod, image: &str) -> Vec<crate::registries::PullAuth> {
        let names: Vec<String> = pod
            .spec
            .iter()
            .flat_map(|s| s.image_pull_secrets.iter().flatten())
            .map(|r| r.name.clone())
            .collect();
        if names.is_empty() {
            return Vec::new();
        }
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let api: Api<Secret> = Api::namespaced(self.shared.pods.clone().into_client(), &ns);
        let mut found = Vec::new();
        let mut missing = Vec::new();
        for name in names {
            let credentials = match api.get(&name).await {
                Ok(secret) => {
                    let data = secret
                        .data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.0))
                        .collect();
                    crate::registries::secret_credentials(&data, image)
                }
                Err(e) => Err(e.to_string()),
            };
            match credentials {
                Ok(c) => found.extend(c),
                Err(why) => {
                    tracing::debug!(pod = %pod_key(pod), secret = %name, %why, "image pull secret");
                    missing.push(name);
                }
            }
        }
        if !missing.is_empty() {
            self.event(
                pod,
                EventType::Warning,
                "FailedToRetrieveImagePullSecret",
                format!(
                    "Unable to retrieve some image pull secrets ({}); attempting to pull the image may not succeed.",
                    missing.join(", ")
                ),
            );
        }
        found
    }

    /// Records an event on the pod as the kubelet of this node.
    fn event(&self, pod: &Pod, type_: EventType, reason: &str, note: String) {
        let Some(events) = &self.shared.events else {
            return;
        };
        let regarding = ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: pod.metadata.name.clone(),
            namespace: pod.metadata.namespace.clone(),
            uid: Some(self.uid.clone()),
            resource_version: pod.metadata.resource_version.clone(),
            field_path: None,
        };
        events.queue(regarding, type_, reason, reason, note);
    }

    fn labels(&self, pod: &Pod, container: Option<&str>) -> BTreeMap<String, String> {
        let mut l = BTreeMap::from([
            (POD_UID_LABEL.to_string(), self.uid.clone()),
            (
                POD_NAME_LABEL.to_string(),
                pod.metadata.name.clone().unwrap_or_default(),
            ),
            (
                POD_NAMESPACE_LABEL.to_string(),
                pod.metadata.namespace.clone().unwrap_or_default(),
            ),
        ]);
        if let Some(c) = container {
            l.insert(CONTAINER_NAME_LABEL.to_string(), c.to_string());
        }
        l
    }

    fn status(
        &self,
        pod: &Pod,
        sandbox: &Sandbox,
        running: &[Container],
        initialized: bool,
    ) -> PodStatus {
        let spec = pod.spec.clone().unwrap_or_default();
        let old = pod.status.clone().unwrap_or_default();
        let scheme = self.shared.runtime.id_scheme();
        let terminated = |k: &Container| match &k.state {
            ContainerState::Exited {
                started_at,
                finished_at,
                exit_code,
                reason,
                message,
            } => Some(K8sState {
                terminated: Some(ContainerStateTerminated {
                    container_id: Some(format!("{scheme}://{}", k.id)),
                    exit_code: *exit_code,
                    finished_at: Some(Time(*finished_at)),
                    started_at: started_at.map(Time),
                    reason: Some(reason.clone().unwrap_or_else(|| {
                        if *exit_code == 0 {
                            "Completed".into()
                        } else {
                            "Error".into()
                        }
                    })),
                    message: message.clone(),
                    signal: None,
                }),
                ..Default::default()
            }),
            _ => None,
        };
        let waiting = |reason: &str, message: Option<String>| K8sState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(reason.into()),
                message,
            }),
            ..Default::default()
        };
        let status_of = |c: &k8s_openapi::api::core::v1::Container, init: bool| {
            let mut instances: Vec<&Container> =
                running.iter().filter(|k| k.name == c.name).collect();
            instances.sort_by_key(|k| std::cmp::Reverse(k.attempt));
            let current = instances.first().copied();
            let previous = instances.get(1).and_then(|k| terminated(k));
            let held = self.waiting.get(&c.name);
            let (state, last_state, started, ready) = match (current.map(|k| &k.state), held) {
                (Some(ContainerState::Running { started_at }), _) => (
                    K8sState {
                        running: Some(ContainerStateRunning {
                            started_at: Some(Time(*started_at)),
                        }),
                        ..Default::default()
                    },
                    previous,
                    self.probes.started(&c.name, c),
                    !init && self.probes.ready(&c.name, c),
                ),
                // Exited and waiting to run again: the exit is the last state.
                (Some(ContainerState::Exited { .. }), Some(w)) => (
                    waiting(w.reason, Some(w.message.clone())),
                    current.and_then(terminated),
                    false,
                    false,
                ),
                (Some(ContainerState::Exited { exit_code, .. }), None) => (
                    current.and_then(terminated).unwrap_or_default(),
                    previous,
                    false,
                    init && *exit_code == 0,
                ),
                (None | Some(ContainerState::Created), held) => (
                    match held {
                        Some(w) => waiting(w.reason, Some(w.message.clone())),
                        None if init || initialized => waiting("ContainerCreating", None),
                        None => waiting("PodInitializing", None),
                    },
                    previous,
                    false,
                    false,
                ),
            };
            ContainerStatus {
                name: c.name.clone(),
                image: c.image.clone().unwrap_or_default(),
                image_id: current.map(|k| k.image_ref.clone()).unwrap_or_default(),
                container_id: current.map(|k| format!("{scheme}://{}", k.id)),
                ready,
                started: Some(started),
                restart_count: current.map_or(0, |k| i32::try_from(k.attempt).unwrap_or(i32::MAX)),
                state: Some(state),
                last_state: last_state.or_else(|| Some(K8sState::default())),
                ..Default::default()
            }
        };
        let init_statuses: Vec<ContainerStatus> = spec
            .init_containers
            .iter()
            .flatten()
            .map(|c| status_of(c, true))
            .collect();
        let statuses: Vec<ContainerStatus> = spec
            .containers
            .iter()
            .map(|c| status_of(c, false))
            .collect();
        // As the kubelet's: never ready, and no `started` (no probes run on them).
        let ephemeral_statuses: Vec<ContainerStatus> = spec
            .ephemeral_containers
            .iter()
            .flatten()
            .map(|e| ContainerStatus {
                ready: false,
                started: None,
                ..status_of(&as_container(e), false)
            })
            .collect();
        let unready: Vec<&str> = statuses
            .iter()
            .filter(|s| !s.ready)
            .map(|s| s.name.as_str())
            .collect();
        let incomplete: Vec<&str> = init_statuses
            .iter()
            .filter(|s| !s.ready)
            .map(|s| s.name.as_str())
            .collect();
        let phase = if self.finished && !initialized {
            "Failed"
        } else if !initialized {
            "Pending"
        } else {
            phase_of(
                &statuses,
                spec.restart_policy.as_deref().unwrap_or("Always"),
            )
        };
        let now = Time(Timestamp::now());
        let keep = |kind: &str, status: &str| {
            old.conditions
                .iter()
                .flatten()
                .find(|c| c.type_ == kind && c.status == status)
                .and_then(|c| c.last_transition_time.clone())
                .unwrap_or_else(|| now.clone())
        };
        let cond = |kind: &str, ok: bool, reason: Option<String>, message: Option<String>| {
            let status = if ok { "True" } else { "False" };
            PodCondition {
                type_: kind.to_string(),
                status: status.to_string(),
                last_transition_time: Some(keep(kind, status)),
                reason: if ok { None } else { reason },
                message: if ok { None } else { message },
                ..Default::default()
            }
        };
        let list = |names: &[&str]| format!("[{}]", names.join(" "));
        let containers_ready = unready.is_empty() && !statuses.is_empty();
        let finished = matches!(phase, "Succeeded" | "Failed");
        // Readiness gates: each must have its condition True in the pod's status.
        let gates_missing: Vec<String> = spec
            .readiness_gates
            .iter()
            .flatten()
            .filter(|g| {
                !old.conditions
                    .iter()
                    .flatten()
                    .any(|c| c.type_ == g.condition_type && c.status == "True")
            })
            .map(|g| g.condition_type.clone())
            .collect();
        let (ready, ready_reason, ready_message) = if finished {
            (false, "PodCompleted".to_string(), String::new())
        } else if !containers_ready {
            (
                false,
                "ContainersNotReady".to_string(),
                format!("containers with unready status: {}", list(&unready)),
            )
        } else if let Some(g) = gates_missing.first() {
            (
                false,
                "ReadinessGatesNotReady".to_string(),
                format!("corresponding condition of pod readiness gate \"{g}\" does not exist."),
            )
        } else {
            (true, String::new(), String::new())
        };
        let ours = [
            "PodReadyToStartContainers",
            "Initialized",
            "Ready",
            "ContainersReady",
        ];
        let mut conditions: Vec<PodCondition> = old
            .conditions
            .iter()
            .flatten()
            .filter(|c| !ours.contains(&c.type_.as_str()))
            .cloned()
            .collect();
        let msg = |s: String| (!s.is_empty()).then_some(s);
        conditions.extend([
            cond(
                "PodReadyToStartContainers",
                sandbox.state == SandboxState::Ready && !finished,
                None,
                None,
            ),
            cond(
                "Initialized",
                initialized,
                Some("ContainersNotInitialized".into()),
                Some(format!(
                    "containers with incomplete status: {}",
                    list(&incomplete)
                )),
            ),
            cond(
                "Ready",
                ready,
                Some(ready_reason.clone()),
                msg(ready_message.clone()),
            ),
            cond(
                "ContainersReady",
                containers_ready && !finished,
                Some(if finished {
                    "PodCompleted".into()
                } else {
                    "ContainersNotReady".into()
                }),
                msg(if finished {
                    String::new()
                } else {
                    ready_message.clone()
                }),
            ),
        ]);
        // Conditions in the kubelet's order.
        let order = |t: &str| match t {
            "PodReadyToStartContainers" => 0,
            "Initialized" => 1,
            "Ready" => 2,
            "ContainersReady" => 3,
            "PodScheduled" => 4,
            _ => 5,
        };
        conditions.sort_by_key(|c| order(&c.type_));
        let host_ip = self.shared.node_ip.to_string();
        let pod_ip = if spec.host_network.unwrap_or(false) {
            Some(host_ip.clone())
        } else {
            sandbox.ip.map(|ip| ip.to_string())
        };
        PodStatus {
            phase: Some(phase.to_string()),
            conditions: Some(conditions),
            host_ip: Some(host_ip.clone()),
            host_ips: Some(vec![HostIP { ip: host_ip }]),
            pod_ip: pod_ip.clone(),
            pod_ips: pod_ip.map(|ip| vec![PodIP { ip }]),
            start_time: old.start_time.clone().or(Some(Time(sandbox.created_at))),
            container_statuses: Some(statuses),
            init_container_statuses: (!init_statuses.is_empty()).then_some(init_statuses),
            ephemeral_container_statuses: (!ephemeral_statuses.is_empty())
                .then_some(ephemeral_statuses),
            qos_class: old.qos_class.clone(),
            ..Default::default()
        }
    }

    async fn write_status(&self, pod: &Pod, status: &PodStatus) -> kube::Result<()> {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.shared.pods.clone().into_client(), &ns);
        // The lists this agent owns are replaced whole (a merge patch); the UID precondition
        // keeps it from writing to a new pod of the same name.
        let patch = serde_json::json!({
            "metadata": {"uid": self.uid},
            "status": status,
        });
        api.patch_status(
            &name,
            &PatchParams {
                field_manager: Some(FIELD_MANAGER.into()),
                ..Default::default()
            },
            &Patch::Merge(&patch),
        )
        .await
        .map(|_| ())
    }

    /// The pod is being deleted: stop its containers within the grace period, then remove the
    /// object for good.
    async fn terminate(&mut self, pod: &Pod) -> anyhow::Result<()> {
        let grace = Duration::from_secs(
            pod.metadata
                .deletion_grace_period_seconds
                .unwrap_or(30)
                .max(0) as u64,
        );
        let rt = self.shared.runtime.clone();
        let sandboxes = match &self.sandbox {
            Some(sb) => vec![sb.clone()],
            None => self.find_sandboxes().await,
        };
        let spec = pod.spec.clone().unwrap_or_default();
        let began = std::time::Instant::now();
        for sb in &sandboxes {
            let running: Vec<Container> = rt
                .list_containers(&sb.id)
                .await
                .unwrap_or_default()
                .into_iter()
                .filter(|c| matches!(c.state, ContainerState::Running { .. }))
                .collect();
            let ip = if spec.host_network.unwrap_or(false) {
                Some(self.shared.node_ip)
            } else {
                sb.ip
            };
            // All containers at once, each running its preStop hook first, all within the
            // one grace period.
            let stops = running.iter().map(|c| {
                let rt = rt.clone();
                let container = spec
                    .containers
                    .iter()
                    .chain(spec.init_containers.iter().flatten())
                    .find(|s| s.name == c.name);
                self.event(
                    pod,
                    EventType::Normal,
                    "Killing",
                    format!("Stopping container {}", c.name),
                );
                async move {
                    let hook = container
                        .and_then(|s| s.lifecycle.as_ref())
                        .and_then(|l| l.pre_stop.as_ref());
                    let mut failed = None;
                    if let (Some(hook), Some(spec), false) = (hook, container, rt.simulated()) {
                        let target = Target {
                            runtime: &rt,
                            container_id: &c.id,
                            ip,
                            spec,
                        };
                        if let Err(e) = probes::run_hook(hook, &target, grace).await {
                            failed = Some(format!("PreStopHook failed: {e}"));
                        }
                    }
                    let left = grace.saturating_sub(began.elapsed());
                    (failed, rt.stop_container(&c.id, left).await)
                }
            });
            for (failed, stopped) in futures::future::join_all(stops).await {
                if let Some(message) = failed {
                    self.event(pod, EventType::Warning, "FailedPreStopHook", message);
                }
                stopped?;
            }
            rt.stop_sandbox(&sb.id).await?;
        }
        let name = pod.metadata.name.clone().unwrap_or_default();
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.shared.pods.clone().into_client(), &ns);
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(self.uid.clone()),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(&name, &dp).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// What a container is to its pod.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Role {
    Init,
    App,
    /// An ephemeral container, with the id of the container whose processes it joins.
    Ephemeral(Option<String>),
}

/// The container an ephemeral container runs as: the same fields, less those it may not set.
fn as_container(e: &EphemeralContainer) -> k8s_openapi::api::core::v1::Container {
    k8s_openapi::api::core::v1::Container {
        name: e.name.clone(),
        image: e.image.clone(),
        image_pull_policy: e.image_pull_policy.clone(),
        command: e.command.clone(),
        args: e.args.clone(),
        working_dir: e.working_dir.clone(),
        env: e.env.clone(),
        env_from: e.env_from.clone(),
        volume_mounts: e.volume_mounts.clone(),
        volume_devices: e.volume_devices.clone(),
        security_context: e.security_context.clone(),
        stdin: e.stdin,
        stdin_once: e.stdin_once,
        tty: e.tty,
        termination_message_path: e.termination_message_path.clone(),
        termination_message_policy: e.termination_message_policy.clone(),
        ..Default::default()
    }
}

/// The `hostPort`s of the pod's containers, as the kubelet hands them to the runtime: ports
/// without one are the pod's own and need no mapping.
fn port_mappings(spec: &k8s_openapi::api::core::v1::PodSpec) -> Vec<PortMapping> {
    spec.containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            Some(PortMapping {
                protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                container_port: p.container_port,
                host_port: p.host_port.filter(|h| *h > 0)?,
                host_ip: p.host_ip.clone().unwrap_or_default(),
            })
        })
        .collect()
}

/// The most recent container of this name (restarts leave the one before behind).
fn newest<'a>(containers: &'a [Container], name: &str) -> Option<&'a Container> {
    containers
        .iter()
        .filter(|c| c.name == name)
        .max_by_key(|c| c.attempt)
}

/// The pod's phase from its containers' statuses once it is initialized, as the kubelet's
/// getPhase: a container waiting to run for the first time keeps the pod Pending; one waiting to
/// run again counts as stopped.
fn phase_of(statuses: &[ContainerStatus], restart_policy: &str) -> &'static str {
    let (mut waiting, mut running, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for s in statuses {
        let state = s.state.clone().unwrap_or_default();
        if state.running.is_some() {
            running += 1;
        } else if let Some(t) = &state.terminated {
            stopped += 1;
            if t.exit_code == 0 {
                succeeded += 1;
            }
        } else if s
            .last_state
            .as_ref()
            .is_some_and(|l| l.terminated.is_some())
        {
            stopped += 1;
        } else {
            waiting += 1;
        }
    }
    if waiting > 0 {
        "Pending"
    } else if running > 0 {
        "Running"
    } else if stopped == 0 {
        "Pending"
    } else if restart_policy == "Always" {
        "Running"
    } else if stopped == succeeded {
        "Succeeded"
    } else if restart_policy == "Never" {
        "Failed"
    } else {
        "Running"
    }
}

/// `NAME_NAMESPACE`, as the kubelet names a pod in its messages.
fn pod_name_ns(p: &Pod) -> String {
    format!(
        "{}_{}",
        p.metadata.name.as_deref().unwrap_or(""),
        p.metadata.namespace.as_deref().unwrap_or("")
    )
}

fn pod_key(p: &Pod) -> String {
    format!(
        "{}/{}",
        p.metadata.namespace.as_deref().unwrap_or(""),
        p.metadata.name.as_deref().unwrap_or("")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_relist_names_the_pods_that_changed_came_or_went() {
        let map = |pairs: &[(&str, u64)]| -> HashMap<String, u64> {
            pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
        };
        let before = map(&[("same", 1), ("changed", 2), ("gone", 3)]);
        let now = map(&[("same", 1), ("changed", 5), ("new", 4)]);
        let mut uids = changed_pods(&before, &now);
        uids.sort();
        assert_eq!(uids, ["changed", "gone", "new"]);
        assert!(changed_pods(&now, &now).is_empty());
    }

    /// Every pod has a worker task, and a task keeps its future's whole state while it waits:
    /// at 30 pods on each of 5,000 fake nodes in one process, its size is multiplied 150,000
    /// times.
    #[tokio::test]
    async fn an_idle_worker_is_small() {
        let client = kube::Client::new(
            tower::service_fn(|_: http::Request<kube::client::Body>| async {
                Err::<http::Response<kube::client::Body>, _>(std::io::Error::other("no server"))
            }),
            "default",
        );
        let (_ready, network_ready) = tokio::sync::watch::channel(false);
        let shared = Arc::new(Shared {
            pods: Api::all(client),
            runtime: Arc::new(crate::fake::Fake::new()),
            node_name: "n".into(),
            node_ip: IpAddr::from([10, 0, 0, 1]),
            ips: Mutex::new(None),
            network_ready,
            events: None,
            allocatable: BTreeMap::new(),
            pods_dir: None,
            cluster_dns: None,
            fenced: tokio::sync::watch::channel(false).1,
            volume_resync: Duration::from_secs(60),
        });
        let (_tx, rx) = mpsc::unbounded_channel();
        let worker = Worker::new(shared, "uid".into()).run(rx);
        let size = std::mem::size_of_val(&worker);
        assert!(size <= 1024, "a worker's future is {size} bytes");
    }

    #[test]
    fn only_host_ports_are_mapped() {
        let spec: k8s_openapi::api::core::v1::PodSpec = serde_json::from_value(serde_json::json!({
            "containers": [
                {"name": "a", "ports": [
                    {"containerPort": 80, "hostPort": 8080},
                    {"containerPort": 81},
                ]},
                {"name": "b", "ports": [
                    {"containerPort": 53, "hostPort": 5353, "protocol": "UDP", "hostIP": "10.0.0.1"},
                ]},
            ],
            "initContainers": [{"name": "i", "ports": [{"containerPort": 1, "hostPort": 1}]}],
        }))
        .unwrap();
        let mapping = |protocol: &str, container_port, host_port, host_ip: &str| PortMapping {
            protocol: protocol.into(),
            container_port,
            host_port,
            host_ip: host_ip.into(),
        };
        assert_eq!(
            port_mappings(&spec),
            [
                mapping("TCP", 80, 8080, ""),
                mapping("UDP", 53, 5353, "10.0.0.1"),
            ]
        );
    }

    fn container(state: serde_json::Value, last: serde_json::Value) -> ContainerStatus {
        serde_json::from_value(serde_json::json!({
            "name": "c", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
            "state": state, "lastState": last,
        }))
        .unwrap()
    }

    #[test]
    fn the_phase_follows_the_containers_as_upstream() {
        use serde_json::json;
        let running = container(json!({"running": {}}), json!({}));
        let creating = container(
            json!({"waiting": {"reason": "ContainerCreating"}}),
            json!({}),
        );
        let ok = container(json!({"terminated": {"exitCode": 0}}), json!({}));
        let failed = container(json!({"terminated": {"exitCode": 1}}), json!({}));
        let crashing = container(
            json!({"waiting": {"reason": "CrashLoopBackOff"}}),
            json!({"terminated": {"exitCode": 1}}),
        );
        let phase = |s: &[&ContainerStatus], policy| {
            let s: Vec<ContainerStatus> = s.iter().map(|c| (*c).clone()).collect();
            phase_of(&s, policy)
        };
        assert_eq!(phase(&[&running, &creating], "Always"), "Pending");
        assert_eq!(phase(&[&running, &failed], "Never"), "Running");
        assert_eq!(phase(&[&crashing], "Always"), "Running");
        assert_eq!(phase(&[&crashing], "OnFailure"), "Running");
        assert_eq!(phase(&[&ok, &ok], "OnFailure"), "Succeeded");
        assert_eq!(phase(&[&ok, &failed], "Never"), "Failed");
        assert_eq!(phase(&[&ok, &failed], "OnFailure"), "Running");
        assert_eq!(phase(&[&ok], "Always"), "Running");
    }
}
