//! The container runtime behind the pod workers, shaped after the CRI: a pod is a sandbox (its
//! network namespace and address) holding containers, each created from a pulled image, started,
//! stopped with a grace period and removed. The agent keeps no state of its own that the runtime
//! does not also hold: after a restart it lists sandboxes and containers (labelled with the pod's
//! UID and the container's name) and adopts them instead of starting them again.
//!
//! Implementations: [`crate::fake::Fake`] (runs nothing; kwok-style, for simulation and scale)
//! and, with the containerd issue, one over containerd's CRI. Streaming (logs, exec) and stats are
//! part of the trait so that the agent's HTTPS server can serve them for any runtime.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::jiff::Timestamp;

use crate::logs::LogSource;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("image {image}: {message}")]
    Image { image: String, message: String },
    /// An image reference that does not parse; trying again cannot help.
    #[error("couldn't parse image name {0:?}: invalid reference format")]
    InvalidImageName(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    Failed(String),
}

pub type Result<T> = std::result::Result<T, RuntimeError>;

/// Refuses an image reference no runtime could pull (empty, or with spaces), with the
/// message container runtimes give.
pub fn check_image_reference(image: &str) -> Result<()> {
    if image.trim().is_empty() || image.chars().any(char::is_whitespace) {
        return Err(RuntimeError::InvalidImageName(image.to_string()));
    }
    Ok(())
}

/// Labels that tie runtime objects to their pod (as the kubelet labels CRI objects).
pub const POD_UID_LABEL: &str = "io.kubernetes.pod.uid";
pub const POD_NAME_LABEL: &str = "io.kubernetes.pod.name";
pub const POD_NAMESPACE_LABEL: &str = "io.kubernetes.pod.namespace";
pub const CONTAINER_NAME_LABEL: &str = "io.kubernetes.container.name";

/// What a sandbox is created from.
#[derive(Clone, Debug, Default)]
pub struct SandboxConfig {
    pub pod_uid: String,
    pub namespace: String,
    pub name: String,
    pub hostname: String,
    pub host_network: bool,
    /// `shareProcessNamespace`: the containers see each other's processes.
    pub share_processes: bool,
    /// The address the agent chose for the pod from the node's podCIDR (none with host network
    /// or when the runtime assigns addresses).
    pub ip: Option<IpAddr>,
    pub labels: BTreeMap<String, String>,
    /// The pod's resolv.conf; `None`: the node's own.
    pub dns: Option<DnsConfig>,
    /// The pod's cgroup (`/kubepods/...`; empty: the runtime's default).
    pub cgroup_parent: String,
    /// Whether any of its containers is privileged (the sandbox must allow it).
    pub privileged: bool,
    /// The containers' `hostPort`s (none with host network, where the ports are the node's).
    pub port_mappings: Vec<PortMapping>,
}

/// A `hostPort`: the node's `host_ip` (empty: all its addresses) and `host_port` forwarded to
/// the pod's `container_port`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortMapping {
    /// `TCP`, `UDP` or `SCTP`.
    pub protocol: String,
    pub container_port: i32,
    pub host_port: i32,
    pub host_ip: String,
}

/// A pod's resolv.conf: nameservers, search domains and options.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DnsConfig {
    pub servers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SandboxState {
    Ready,
    NotReady,
}

#[derive(Clone, Debug)]
pub struct Sandbox {
    pub id: String,
    pub state: SandboxState,
    pub ip: Option<IpAddr>,
    pub created_at: Timestamp,
    pub labels: BTreeMap<String, String>,
}

/// What a container is created from (the pod spec's container after the agent resolved its
/// environment and mounts).
#[derive(Clone, Debug, Default)]
pub struct ContainerConfig {
    pub name: String,
    pub image: String,
    pub command: Vec<String>,
    pub args: Vec<String>,
    pub working_dir: Option<String>,
    pub env: Vec<(String, String)>,
    pub labels: BTreeMap<String, String>,
    pub tty: bool,
    pub stdin: bool,
    /// The container is expected to exit (an init container). Real runtimes ignore it; the
    /// fake runtime lets such a container complete as soon as it starts.
    pub run_to_completion: bool,
    /// Host paths bind-mounted into the container (its volumes, the pod's /etc/hosts).
    pub mounts: Vec<crate::volumes::Mount>,
    pub resources: crate::security::Resources,
    pub security: crate::security::Security,
    /// The pod's cgroup, as its sandbox has it (the CRI wants it again for each container).
    pub cgroup_parent: String,
    /// The container's restart count: one more than its newest earlier instance's (the CRI
    /// keeps name and attempt unique in a sandbox).
    pub attempt: u32,
    /// The container whose processes this one sees (an ephemeral container's target).
    pub pid_target: Option<String>,
}

/// An image present on the node: its id, and the user it runs as (`uid`, or a name).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageInfo {
    pub id: String,
    pub uid: Option<i64>,
    pub username: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ContainerState {
    Created,
    Running {
        started_at: Timestamp,
    },
    Exited {
        started_at: Option<Timestamp>,
        finished_at: Timestamp,
        exit_code: i32,
        /// The runtime's reason (e.g. `OOMKilled`), if any.
        reason: Option<String>,
        message: Option<String>,
    },
}

#[derive(Clone, Debug)]
pub struct Container {
    pub id: String,
    pub sandbox_id: String,
    pub name: String,
    pub image: String,
    /// The resolved image (digest form), as `imageID` reports it.
    pub image_ref: String,
    /// How many containers of this name the pod had before this one (CRI's attempt).
    pub attempt: u32,
    pub state: ContainerState,
    pub labels: BTreeMap<String, String>,
}

/// A streaming session (`kubectl exec`, `attach`, `port-forward`) that the runtime serves on
/// its own streaming server, as the CRI's Exec, Attach and PortForward calls describe one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamRequest {
    Exec {
        container_id: String,
        command: Vec<String>,
        io: StreamIo,
    },
    Attach {
        container_id: String,
        io: StreamIo,
    },
    PortForward {
        sandbox_id: String,
        ports: Vec<i32>,
    },
}

/// Which of a process's streams a session carries (stderr is merged into the terminal with a
/// TTY, so it is never asked for with one).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamIo {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

/// A running container's resource use so far (what `kubectl top` is made of).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerStats {
    pub id: String,
    /// The labels the agent gave it (pod UID, name and namespace, container name).
    pub labels: BTreeMap<String, String>,
    /// CPU time used since it started, in nanoseconds.
    pub cpu_core_nanos: u64,
    pub memory_working_set_bytes: u64,
}

#[async_trait]
pub trait Runtime: Send + Sync + 'static {
    /// `containerRuntimeVersion` in the Node's nodeInfo, e.g. `fake://0.1.0`.
    fn version(&self) -> String;
    /// The prefix of container IDs in pod status (`fake`, `containerd`).
    fn id_scheme(&self) -> &'static str;
    /// How often the node must look at its containers because the runtime does not say when
    /// one changes ([`Runtime::relist`]); `None` when it never changes on its own.
    fn poll_period(&self) -> Option<Duration>;

    /// What the runtime holds now, pod by pod (the kubelet's PLEG relist): a fingerprint of
    /// each pod's sandboxes and containers with their states, by pod UID, that changes when
    /// any of them comes, goes or changes state. One cheap look for the whole node, so that
    /// only the workers of pods that changed look closer.
    async fn relist(&self) -> Result<HashMap<String, u64>> {
        Ok(HashMap::new())
    }

    /// Sets up the pod network over the node's podCIDR (for a CRI runtime, the CNI
    /// configuration its sandboxes join). Runtimes that need none do nothing.
    async fn configure_pod_network(&self, _pod_cidr: &str) -> Result<()> {
        Ok(())
    }

    /// Whether the runtime only simulates containers (nothing to probe: probes succeed).
    fn simulated(&self) -> bool {
        false
    }

    /// Whether the runtime gives pods their addresses itself (through CNI); otherwise the
    /// agent chooses one from the podCIDR for each sandbox.
    fn assigns_addresses(&self) -> bool {
        false
    }

    /// The image's ID if the node has it.
    async fn image_status(&self, image: &str) -> Result<Option<ImageInfo>>;
    /// Pulls the image (again, if present) and returns its ID; `secrets` are the credentials
    /// of the pod's image pull secrets for its registry, tried in order (before those the
    /// runtime has configured itself).
    async fn pull_image(
        &self,
        image: &str,
        secrets: &[crate::registries::PullAuth],
    ) -> Result<String>;

    async fn run_sandbox(&self, config: &SandboxConfig) -> Result<Sandbox>;
    async fn stop_sandbox(&self, id: &str) -> Result<()>;
    async fn remove_sandbox(&self, id: &str) -> Result<()>;
    /// The node's sandboxes, or only those of the pod with UID `pod_uid`.
    async fn list_sandboxes(&self, pod_uid: Option<&str>) -> Result<Vec<Sandbox>>;

    async fn create_container(&self, sandbox_id: &str, config: &ContainerConfig) -> Result<String>;
    async fn start_container(&self, id: &str) -> Result<()>;
    /// Asks the container to stop and kills it after `grace`.
    async fn stop_container(&self, id: &str, grace: Duration) -> Result<()>;
    async fn remove_container(&self, id: &str) -> Result<()>;
    async fn list_containers(&self, sandbox_id: &str) -> Result<Vec<Container>>;

    /// Where the container's log is, in the CRI log format.
    async fn log_source(&self, container_id: &str) -> Result<LogSource>;
    /// Rotates the logs of running containers that outgrew the runtime's limit; a runtime
    /// whose logs have no files does nothing.
    async fn rotate_logs(&self) -> Result<()> {
        Ok(())
    }
    /// Runs `command` in the container and returns its exit code and output.
    async fn exec_sync(
        &self,
        container_id: &str,
        command: &[String],
        timeout: Duration,
    ) -> Result<(i32, Vec<u8>)>;
    /// The resource use of every running container.
    async fn container_stats(&self) -> Result<Vec<ContainerStats>>;

    /// The URL (plain HTTP, on this machine) where the runtime's streaming server takes the
    /// session over: an SPDY/3.1 or WebSocket upgrade of the Kubernetes streaming protocols.
    async fn stream_url(&self, request: &StreamRequest) -> Result<String>;
}
