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
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    ContainerState as K8sState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, HostIP, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::{watcher, WatchStreamExt};
use tokio::sync::mpsc;

use crate::ipam::PodIps;
use crate::runtime::{
    Container, ContainerConfig, ContainerState, Runtime, Sandbox, SandboxConfig, SandboxState,
    CONTAINER_NAME_LABEL, POD_NAMESPACE_LABEL, POD_NAME_LABEL, POD_UID_LABEL,
};

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

enum Message {
    Pod(Arc<Pod>),
    /// The pod object is gone from the API.
    Gone,
}

/// Watches the node's pods and hands each to its worker until `shutdown` resolves.
pub async fn run(shared: Arc<Shared>) {
    let config = watcher::Config::default().fields(&format!("spec.nodeName={}", shared.node_name));
    // Workers never read managedFields; decoded they are most of a pod's size.
    let mut events = std::pin::pin!(watcher(shared.pods.clone(), config)
        .modify(|p| p.metadata.managed_fields = None)
        .default_backoff());
    let mut workers: HashMap<String, mpsc::UnboundedSender<Message>> = HashMap::new();
    let mut seen: HashSet<String> = HashSet::new();
    let mut adopted = false;
    while let Some(event) = events.next().await {
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
                    dispatch(&shared, &mut workers, uid, Message::Pod(Arc::new(pod)));
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
                    dispatch(&shared, &mut workers, uid, Message::Gone);
                }
                if !adopted {
                    adopted = true;
                    remove_orphans(&shared, &seen).await;
                }
            }
            watcher::Event::Apply(pod) => {
                if let Some(uid) = pod.metadata.uid.clone() {
                    dispatch(&shared, &mut workers, uid, Message::Pod(Arc::new(pod)));
                }
            }
            watcher::Event::Delete(pod) => {
                if let Some(uid) = pod.metadata.uid.clone() {
                    dispatch(&shared, &mut workers, uid, Message::Gone);
                }
            }
        }
        workers.retain(|_, tx| !tx.is_closed());
    }
}

fn dispatch(
    shared: &Arc<Shared>,
    workers: &mut HashMap<String, mpsc::UnboundedSender<Message>>,
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
    tokio::spawn(Worker::new(shared.clone(), uid).run(rx));
}

/// Sandboxes of pods that do not exist any more (deleted while the agent was away).
async fn remove_orphans(shared: &Shared, live: &HashSet<String>) {
    let Ok(sandboxes) = shared.runtime.list_sandboxes().await else {
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
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

struct Worker {
    shared: Arc<Shared>,
    uid: String,
    sandbox: Option<Sandbox>,
    restarts: HashMap<String, i32>,
    /// The status last written, to write only changes (boxed: most of a worker's size).
    written: Option<Box<PodStatus>>,
    finished: bool,
}

impl Worker {
    fn new(shared: Arc<Shared>, uid: String) -> Worker {
        Worker {
            shared,
            uid,
            sandbox: None,
            restarts: HashMap::new(),
            written: None,
            finished: false,
        }
    }

    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Message>) {
        let mut pod: Option<Arc<Pod>> = None;
        let mut network = self.shared.network_ready.clone();
        let poll = self.shared.runtime.poll_period();
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
            let wait = match (backoff, poll) {
                (Some(b), Some(p)) => b.min(p),
                (Some(b), None) => b,
                (None, p) => p.unwrap_or(Duration::from_secs(3600)),
            };
            let retry = tokio::time::sleep(wait);
            tokio::select! {
                m = rx.recv() => match m {
                    Some(Message::Pod(p)) => pod = Some(p),
                    Some(Message::Gone) | None => {
                        Box::pin(self.teardown()).await;
                        return;
                    }
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
    }

    async fn find_sandboxes(&self) -> Vec<Sandbox> {
        self.shared
            .runtime
            .list_sandboxes()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|sb| sb.labels.get(POD_UID_LABEL) == Some(&self.uid))
            .collect()
    }

    async fn sync(&mut self, pod: &Pod) -> anyhow::Result<()> {
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
            let ip = if host_network {
                None
            } else {
                let mut ips = lock(&self.shared.ips);
                match ips.as_mut() {
                    // No podCIDR yet: the pod waits, as it waits for the CNI on a kubelet.
                    None => return Ok(()),
                    Some(p) => Some(p.allocate()?),
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
                ip,
                labels: self.labels(pod, None),
            };
            match self.shared.runtime.run_sandbox(&config).await {
                Ok(sb) => self.sandbox = Some(sb),
                Err(e) => {
                    if let Some(ip) = ip {
                        self.shared.release(ip);
                    }
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
        // Init containers, one at a time and in order.
        let mut initialized = true;
        for c in spec.init_containers.iter().flatten() {
            match newest(&running, &c.name).map(|c| c.state.clone()) {
                Some(ContainerState::Exited { exit_code: 0, .. }) => continue,
                Some(ContainerState::Exited { .. }) if restart_policy == "Never" => {
                    initialized = false;
                    self.finished = true;
                    break;
                }
                Some(ContainerState::Running { .. } | ContainerState::Created) => {
                    initialized = false;
                    break;
                }
                _ => {
                    self.start(pod, &sandbox, c, true).await?;
                    initialized = false;
                    break;
                }
            }
        }
        if initialized {
            for c in &spec.containers {
                let restart = match newest(&running, &c.name).map(|c| &c.state) {
                    None => true,
                    Some(ContainerState::Exited { exit_code, .. }) => {
                        let again = restart_policy == "Always"
                            || (restart_policy == "OnFailure" && *exit_code != 0);
                        if again {
                            *self.restarts.entry(c.name.clone()).or_insert(0) += 1;
                        }
                        again
                    }
                    Some(_) => false,
                };
                if restart {
                    self.start(pod, &sandbox, c, false).await?;
                }
            }
        }
        running = rt.list_containers(&sandbox.id).await?;
        let status = self.status(pod, &sandbox, &running, initialized);
        if self.written.as_deref() != Some(&status) {
            self.write_status(pod, &status).await?;
            self.written = Some(Box::new(status));
        }
        Ok(())
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

    async fn start(
        &self,
        pod: &Pod,
        sandbox: &Sandbox,
        c: &k8s_openapi::api::core::v1::Container,
        init: bool,
    ) -> anyhow::Result<()> {
        let rt = &self.shared.runtime;
        let image = c.image.clone().unwrap_or_default();
        rt.pull_image(&image).await?;
        let config = ContainerConfig {
            name: c.name.clone(),
            image,
            command: c.command.clone().unwrap_or_default(),
            args: c.args.clone().unwrap_or_default(),
            working_dir: c.working_dir.clone(),
            env: c
                .env
                .iter()
                .flatten()
                .filter_map(|e| e.value.clone().map(|v| (e.name.clone(), v)))
                .collect(),
            labels: self.labels(pod, Some(&c.name)),
            tty: c.tty.unwrap_or(false),
            stdin: c.stdin.unwrap_or(false),
            run_to_completion: init,
        };
        let id = rt.create_container(&sandbox.id, &config).await?;
        rt.start_container(&id).await?;
        Ok(())
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
        let status_of = |c: &k8s_openapi::api::core::v1::Container, init: bool| {
            let current = newest(running, &c.name);
            let (state, started, ready) = match current.map(|c| &c.state) {
                None | Some(ContainerState::Created) => (
                    K8sState {
                        waiting: Some(ContainerStateWaiting {
                            reason: Some(
                                if init || initialized {
                                    "ContainerCreating"
                                } else {
                                    "PodInitializing"
                                }
                                .into(),
                            ),
                            message: None,
                        }),
                        ..Default::default()
                    },
                    false,
                    false,
                ),
                Some(ContainerState::Running { started_at }) => (
                    K8sState {
                        running: Some(ContainerStateRunning {
                            started_at: Some(Time(*started_at)),
                        }),
                        ..Default::default()
                    },
                    true,
                    !init,
                ),
                Some(ContainerState::Exited {
                    started_at,
                    finished_at,
                    exit_code,
                    reason,
                    message,
                }) => (
                    K8sState {
                        terminated: Some(ContainerStateTerminated {
                            container_id: current.map(|k| format!("{scheme}://{}", k.id)),
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
                    },
                    false,
                    init && *exit_code == 0,
                ),
            };
            ContainerStatus {
                name: c.name.clone(),
                image: c.image.clone().unwrap_or_default(),
                image_id: current.map(|k| k.image_ref.clone()).unwrap_or_default(),
                container_id: current.map(|k| format!("{scheme}://{}", k.id)),
                ready,
                started: Some(started),
                restart_count: self.restarts.get(&c.name).copied().unwrap_or(0),
                state: Some(state),
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
        let all_exited = statuses
            .iter()
            .all(|s| s.state.as_ref().is_some_and(|st| st.terminated.is_some()));
        let failed_init = self.finished && !initialized;
        let phase = if failed_init {
            "Failed"
        } else if initialized && all_exited && !statuses.is_empty() {
            let restart_policy = spec.restart_policy.as_deref().unwrap_or("Always");
            let any_failed = statuses.iter().any(|s| {
                s.state
                    .as_ref()
                    .and_then(|st| st.terminated.as_ref())
                    .is_some_and(|t| t.exit_code != 0)
            });
            match restart_policy {
                "Always" => "Running",
                _ if any_failed && restart_policy == "Never" => "Failed",
                "OnFailure" if any_failed => "Running",
                _ => "Succeeded",
            }
        } else if initialized
            && statuses.iter().all(|s| {
                s.started == Some(true)
                    || s.state.as_ref().is_some_and(|st| st.terminated.is_some())
            })
        {
            "Running"
        } else {
            "Pending"
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
        for sb in &sandboxes {
            for c in rt.list_containers(&sb.id).await.unwrap_or_default() {
                if matches!(c.state, ContainerState::Running { .. }) {
                    rt.stop_container(&c.id, grace).await?;
                }
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

/// The most recent container of this name (restarts leave the exited ones behind).
fn newest<'a>(running: &'a [Container], name: &str) -> Option<&'a Container> {
    let started = |c: &Container| match &c.state {
        ContainerState::Created => None,
        ContainerState::Running { started_at } => Some(*started_at),
        ContainerState::Exited {
            started_at,
            finished_at,
            ..
        } => Some(started_at.unwrap_or(*finished_at)),
    };
    running
        .iter()
        .filter(|c| c.name == name)
        .max_by_key(|c| (started(c).is_none(), started(c)))
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
        });
        let (_tx, rx) = mpsc::unbounded_channel();
        let worker = Worker::new(shared, "uid".into()).run(rx);
        let size = std::mem::size_of_val(&worker);
        assert!(size <= 1024, "a worker's future is {size} bytes");
    }
}
