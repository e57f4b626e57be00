//! The `cri` runtime: pods as real containers through a CRI runtime (containerd). Sandboxes and
//! containers carry the pod's labels, so that after an agent restart the pod workers find and
//! adopt them; container logs are the CRI log files under the sandbox's log directory.
//!
//! The pod network: once the node has its podCIDR, the agent writes the CNI configuration of
//! its own containerd (a `rudder0` bridge, host-local addresses from the podCIDR); until then a
//! pod that is not on the node's network waits. Routes between nodes, masquerading and host
//! ports come with the networking issue; volumes, resources and probes are not there yet.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::jiff::Timestamp;

use crate::cri::{api, Cri};
use crate::logs::{LogLimits, LogSource};
use crate::registries::{PullAuth, Registries};
use crate::runtime::{
    Container, ContainerConfig, ContainerState, ContainerStats, ImageInfo, Result, Runtime,
    RuntimeError, Sandbox, SandboxConfig, SandboxState, StreamRequest, POD_NAMESPACE_LABEL,
    POD_NAME_LABEL, POD_UID_LABEL,
};

/// How long the CRI may take to answer once its socket is up.
const CRI_READY_TIMEOUT: Duration = Duration::from_secs(120);

/// How often the node's containers are relisted: CRI v1 on containerd 1.6 sends no events.
const POLL: Duration = Duration::from_secs(1);

pub struct CriRuntime {
    cri: Cri,
    /// `containerd://1.6.20` as the Node's nodeInfo shows it.
    version: String,
    /// Each pod's log directory is `<logs>/<namespace>_<name>_<uid>`, as the kubelet's
    /// `/var/log/pods`.
    logs: PathBuf,
    /// Whether sandboxes may have a network of their own (a CNI configuration exists).
    pod_network: AtomicBool,
    /// Where the agent writes the CNI configuration of its own containerd; `None` for a
    /// containerd the agent did not start, which has its own.
    cni: Option<Cni>,
    /// The configuration each sandbox was run with, which the CRI wants again for every
    /// container created in it (rebuilt from the sandbox's status after a restart).
    sandbox_configs: std::sync::Mutex<std::collections::HashMap<String, api::PodSandboxConfig>>,
    /// Each container as its last ContainerStatus showed it, with the state ListContainers
    /// gave when that status was asked: a container's details change only with its state (a
    /// start, an exit), so a pod worker's look asks for no status while its containers run.
    statuses: std::sync::Mutex<std::collections::HashMap<String, (i32, Container)>>,
    /// The registries configuration (`--private-registry`), for its credentials.
    registries: Registries,
    /// When containers' logs are rotated.
    log_limits: LogLimits,
}

/// The CNI configuration the agent writes for its own containerd.
#[derive(Clone, Debug)]
pub struct Cni {
    /// containerd's CNI `conf_dir`.
    pub conf_dir: PathBuf,
    /// host-local's record of the addresses it gave out.
    pub data_dir: PathBuf,
    /// The MTU of pods' interfaces (the overlay's, if their traffic may cross one).
    pub mtu: Option<u32>,
}

/// The bridge pods on this node join.
pub const BRIDGE: &str = "rudder0";

/// The name of the CNI network pods join (the portmap plugin's rules carry it).
pub const NETWORK: &str = "rudder";

/// The CNI network configuration list for pods on `pod_cidr`: a bridge that is the pods'
/// gateway, addresses from host-local (its records under `data_dir`), portmap for the pods'
/// `hostPort`s (the port mappings containerd passes it, in iptables' `nat` table), the loopback
/// interface coming from containerd itself; `mtu` for the pods' interfaces, if not the default.
pub fn conflist(pod_cidr: &str, data_dir: &std::path::Path, mtu: Option<u32>) -> String {
    let default_route = if pod_cidr.contains(':') {
        "::/0"
    } else {
        "0.0.0.0/0"
    };
    let mut bridge = serde_json::json!({
        "type": "bridge",
        "bridge": BRIDGE,
        "isGateway": true,
        "ipMasq": false,
        "hairpinMode": true,
        "ipam": {
            "type": "host-local",
            "dataDir": data_dir,
            "ranges": [[{"subnet": pod_cidr}]],
            "routes": [{"dst": default_route}],
        },
    });
    if let Some(mtu) = mtu {
        rudder_api::value::set(&mut bridge, &["mtu"], serde_json::json!(mtu));
    }
    serde_json::to_string_pretty(&serde_json::json!({
        "cniVersion": "0.4.0",
        "name": NETWORK,
        "plugins": [bridge, {
            "type": "portmap",
            "capabilities": {"portMappings": true},
            "snat": true,
        }],
    }))
    .unwrap_or_default()
}

fn failed(what: &str) -> impl FnOnce(crate::cri::Error) -> RuntimeError + '_ {
    move |e| match e {
        crate::cri::Error::Call(s) if s.code() == tonic::Code::NotFound => {
            RuntimeError::NotFound(format!("{what}: {}", s.message()))
        }
        crate::cri::Error::Call(s) => RuntimeError::Failed(format!("{what}: {}", s.message())),
        e => RuntimeError::Failed(format!("{what}: {e}")),
    }
}

fn status(what: &str) -> impl FnOnce(tonic::Status) -> RuntimeError + '_ {
    move |s| failed(what)(crate::cri::Error::Call(s))
}

fn timestamp(nanos: i64) -> Option<Timestamp> {
    (nanos > 0)
        .then(|| Timestamp::from_nanosecond(i128::from(nanos)).ok())
        .flatten()
}

fn labels(l: &HashMap<String, String>) -> BTreeMap<String, String> {
    l.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// The node's CRI runtime as the agent starts it: its own containerd under
/// `<agent_dir>/containerd` unless `endpoint` names a running one, the sandbox image imported,
/// then every `<agent_dir>/images/*.tar` (airgap images), and pod logs under
/// `<agent_dir>/pods`. The containerd child, if any, is returned to be stopped with the agent.
pub async fn start_on_node(
    agent_dir: &std::path::Path,
    endpoint: Option<&std::path::Path>,
    pod_mtu: Option<u32>,
    registries: Registries,
    log_limits: LogLimits,
) -> anyhow::Result<(CriRuntime, Option<crate::containerd::Containerd>)> {
    use anyhow::Context;

    use crate::containerd::{self, Containerd, Layout, Settings};
    use crate::image;

    let layout = Layout::new(agent_dir.join("containerd"));
    let netns = std::path::Path::new(containerd::NETNS_DIR);
    containerd::share_netns_dir(netns)
        .with_context(|| format!("making {} a shared mount point", netns.display()))?;
    let (socket, child) = match endpoint {
        Some(e) => (e.to_path_buf(), None),
        None => {
            let c = Containerd::start(
                layout.clone(),
                &Settings::for_this_machine(image::PAUSE_IMAGE),
            )
            .await?;
            tracing::info!(pid = ?c.pid(), socket = %layout.socket().display(), "containerd started");
            // Read by containerd at each pull.
            registries
                .write_hosts(&layout.registries())
                .with_context(|| format!("writing {}", layout.registries().display()))?;
            (layout.socket(), Some(c))
        }
    };
    if endpoint.is_some() && !registries.mirrors.is_empty() {
        tracing::warn!("registry mirrors are written for the agent's own containerd only; configure them in the containerd at --container-runtime-endpoint");
    }
    let pause = agent_dir.join("pause.tar");
    std::fs::write(&pause, image::pause_archive()?)
        .with_context(|| format!("writing {}", pause.display()))?;
    containerd::import(&socket, &pause).await?;
    let images = agent_dir.join("images");
    if let Ok(dir) = std::fs::read_dir(&images) {
        let mut tars: Vec<PathBuf> = dir
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "tar"))
            .collect();
        tars.sort();
        for t in tars {
            containerd::import(&socket, &t).await?;
            tracing::info!(archive = %t.display(), "image imported");
        }
    }
    let cri = Cri::connect(&socket).await?;
    let cni = child.is_some().then(|| Cni {
        conf_dir: layout.cni_conf_dir(),
        data_dir: agent_dir.join("cni"),
        mtu: pod_mtu,
    });
    let mut runtime = CriRuntime::new(cri, agent_dir.join("pods"), cni).await?;
    runtime.registries = registries;
    runtime.log_limits = log_limits;
    Ok((runtime, child))
}

impl CriRuntime {
    /// A runtime over `cri`; `logs` is where pod log directories go; `cni`, where the pod
    /// network's configuration goes once the podCIDR is known (`None`: the runtime has its
    /// own).
    pub async fn new(cri: Cri, logs: PathBuf, cni: Option<Cni>) -> Result<CriRuntime> {
        // containerd serves its socket before its CRI has loaded the containers it already
        // runs ("server is not initialized yet"): seconds, with a hundred pods adopted.
        let deadline = tokio::time::Instant::now() + CRI_READY_TIMEOUT;
        let v = loop {
            match cri.version().await {
                Ok(v) => break v,
                Err(crate::cri::Error::Call(s))
                    if (s.code() == tonic::Code::Unavailable
                        || s.message().contains("not initialized"))
                        && tokio::time::Instant::now() < deadline =>
                {
                    tracing::debug!(error = %s.message(), "waiting for the CRI");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(failed("the runtime's version")(e)),
            }
        };
        Ok(CriRuntime {
            cri,
            version: format!("{}://{}", v.runtime_name, v.runtime_version),
            logs,
            pod_network: AtomicBool::new(cni.is_none()),
            cni,
            sandbox_configs: Default::default(),
            statuses: Default::default(),
            registries: Registries::default(),
            log_limits: LogLimits::default(),
        })
    }

    fn statuses(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, (i32, Container)>> {
        self.statuses.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn configs(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, api::PodSandboxConfig>> {
        self.sandbox_configs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn namespaces(c: &SandboxConfig) -> Option<api::NamespaceOption> {
        let mode = |shared: bool, yes| {
            if shared {
                yes
            } else {
                api::NamespaceMode::Pod
            }
        };
        Some(api::NamespaceOption {
            network: mode(c.host_network, api::NamespaceMode::Node) as i32,
            // A pod does not share its process namespace unless it asks to.
            pid: mode(!c.share_processes, api::NamespaceMode::Container) as i32,
            ipc: api::NamespaceMode::Pod as i32,
            ..Default::default()
        })
    }

    fn security_context(
        s: &crate::security::Security,
        namespace_options: Option<api::NamespaceOption>,
    ) -> api::LinuxContainerSecurityContext {
        api::LinuxContainerSecurityContext {
            namespace_options,
            capabilities: Some(api::Capability {
                add_capabilities: s.add_capabilities.clone(),
                drop_capabilities: s.drop_capabilities.clone(),
                ..Default::default()
            }),
            privileged: s.privileged,
            run_as_user: s.run_as_user.map(|value| api::Int64Value { value }),
            run_as_group: s.run_as_group.map(|value| api::Int64Value { value }),
            readonly_rootfs: s.readonly_rootfs,
            supplemental_groups: s.supplemental_groups.clone(),
            no_new_privs: s.no_new_privs,
            masked_paths: s.masked_paths.clone(),
            readonly_paths: s.readonly_paths.clone(),
            ..Default::default()
        }
    }

    fn sandbox_config(&self, c: &SandboxConfig) -> api::PodSandboxConfig {
        api::PodSandboxConfig {
            metadata: Some(api::PodSandboxMetadata {
                name: c.name.clone(),
                uid: c.pod_uid.clone(),
                namespace: c.namespace.clone(),
                attempt: 0,
            }),
            hostname: if c.host_network {
                String::new()
            } else {
                c.hostname.clone()
            },
            log_directory: self
                .logs
                .join(format!("{}_{}_{}", c.namespace, c.name, c.pod_uid))
                .to_string_lossy()
                .into_owned(),
            labels: c
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            dns_config: c.dns.as_ref().map(|d| api::DnsConfig {
                servers: d.servers.clone(),
                searches: d.searches.clone(),
                options: d.options.clone(),
            }),
            // containerd hands them to the portmap plugin of the CNI configuration.
            port_mappings: c
                .port_mappings
                .iter()
                .map(|p| api::PortMapping {
                    protocol: match p.protocol.as_str() {
                        "UDP" => api::Protocol::Udp,
                        "SCTP" => api::Protocol::Sctp,
                        _ => api::Protocol::Tcp,
                    } as i32,
                    container_port: p.container_port,
                    host_port: p.host_port,
                    host_ip: p.host_ip.clone(),
                })
                .collect(),
            linux: Some(api::LinuxPodSandboxConfig {
                cgroup_parent: c.cgroup_parent.clone(),
                security_context: Some(api::LinuxSandboxSecurityContext {
                    namespace_options: Self::namespaces(c),
                    privileged: c.privileged,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    async fn sandbox_status(&self, id: &str) -> Result<api::PodSandboxStatus> {
        self.cri
            .runtime
            .clone()
            .pod_sandbox_status(api::PodSandboxStatusRequest {
                pod_sandbox_id: id.into(),
                verbose: false,
            })
            .await
            .map_err(status("sandbox status"))?
            .into_inner()
            .status
            .ok_or_else(|| RuntimeError::NotFound(format!("sandbox {id}")))
    }

    fn sandbox_of(s: &api::PodSandboxStatus) -> Sandbox {
        Sandbox {
            id: s.id.clone(),
            state: if s.state == api::PodSandboxState::SandboxReady as i32 {
                SandboxState::Ready
            } else {
                SandboxState::NotReady
            },
            ip: s.network.as_ref().and_then(|n| n.ip.parse::<IpAddr>().ok()),
            created_at: timestamp(s.created_at).unwrap_or_else(Timestamp::now),
            labels: labels(&s.labels),
        }
    }

    async fn container_status(&self, id: &str) -> Result<api::ContainerStatus> {
        self.cri
            .runtime
            .clone()
            .container_status(api::ContainerStatusRequest {
                container_id: id.into(),
                verbose: false,
            })
            .await
            .map_err(status("container status"))?
            .into_inner()
            .status
            .ok_or_else(|| RuntimeError::NotFound(format!("container {id}")))
    }

    /// The containers running now, as the CRI lists them (one call).
    async fn running_containers(&self) -> Result<Vec<api::Container>> {
        Ok(self
            .cri
            .runtime
            .clone()
            .list_containers(api::ListContainersRequest {
                filter: Some(api::ContainerFilter {
                    state: Some(api::ContainerStateValue {
                        state: api::ContainerState::ContainerRunning as i32,
                    }),
                    ..Default::default()
                }),
            })
            .await
            .map_err(status("listing containers"))?
            .into_inner()
            .containers)
    }

    /// The sandbox's configuration as the runtime holds it, rebuilt from its status (CRI wants
    /// it again for every container it creates in the sandbox).
    async fn config_of_sandbox(&self, id: &str) -> Result<api::PodSandboxConfig> {
        let s = self.sandbox_status(id).await?;
        let m = s.metadata.clone().unwrap_or_default();
        let namespaces = s
            .linux
            .as_ref()
            .and_then(|l| l.namespaces.as_ref())
            .and_then(|n| n.options.clone());
        let mut config = self.sandbox_config(&SandboxConfig {
            pod_uid: m.uid,
            namespace: m.namespace,
            name: m.name,
            hostname: String::new(),
            host_network: false,
            share_processes: false,
            ip: None,
            labels: labels(&s.labels),
            dns: None,
            cgroup_parent: String::new(),
            privileged: false,
            port_mappings: Vec::new(),
        });
        if let Some(sc) = config
            .linux
            .as_mut()
            .and_then(|l| l.security_context.as_mut())
        {
            sc.namespace_options = namespaces;
        }
        Ok(config)
    }
}

#[async_trait]
impl Runtime for CriRuntime {
    fn version(&self) -> String {
        self.version.clone()
    }

    fn id_scheme(&self) -> &'static str {
        "containerd"
    }

    fn poll_period(&self) -> Option<Duration> {
        Some(POLL)
    }

    fn assigns_addresses(&self) -> bool {
        true
    }

    async fn configure_pod_network(&self, pod_cidr: &str) -> Result<()> {
        let Some(cni) = &self.cni else {
            return Ok(());
        };
        let io = |what: &std::path::Path, e: std::io::Error| {
            RuntimeError::Failed(format!("{}: {e}", what.display()))
        };
        for dir in [&cni.conf_dir, &cni.data_dir] {
            std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        }
        // Written whole, then renamed: containerd reloads the directory when it changes.
        let path = cni.conf_dir.join("10-rudder.conflist");
        let tmp = cni.conf_dir.join(".10-rudder.conflist.tmp");
        std::fs::write(&tmp, conflist(pod_cidr, &cni.data_dir, cni.mtu))
            .map_err(|e| io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| io(&path, e))?;
        self.pod_network.store(true, Ordering::SeqCst);
        Ok(())
    }

    async fn image_status(&self, image: &str) -> Result<Option<ImageInfo>> {
        crate::runtime::check_image_reference(image)?;
        let found = self
            .cri
            .image(image)
            .await
            .map_err(|e| RuntimeError::Image {
                image: image.to_string(),
                message: e.to_string(),
            })?;
        Ok(found.map(|i| ImageInfo {
            id: i.id,
            uid: i.uid.map(|u| u.value),
            username: i.username,
        }))
    }

    async fn pull_image(&self, image: &str, secrets: &[PullAuth]) -> Result<String> {
        crate::runtime::check_image_reference(image)?;
        // As the kubelet: each credential in turn, the last failure if none works; without
        // any, anonymously.
        let configured = self.registries.credentials(image);
        let mut tries: Vec<Option<&PullAuth>> =
            secrets.iter().chain(&configured).map(Some).collect();
        if tries.is_empty() {
            tries.push(None);
        }
        let mut failure = None;
        for auth in tries {
            let pulled = self
                .cri
                .images
                .clone()
                .pull_image(api::PullImageRequest {
                    image: Some(api::ImageSpec {
                        image: image.into(),
                        ..Default::default()
                    }),
                    auth: auth.map(|a| api::AuthConfig {
                        username: a.auth.username.clone(),
                        password: a.auth.password.clone(),
                        auth: a.auth.auth.clone(),
                        identity_token: a.auth.identitytoken.clone(),
                        server_address: a.server.clone(),
                        ..Default::default()
                    }),
                    sandbox_config: None,
                })
                .await;
            match pulled {
                Ok(p) => return Ok(p.into_inner().image_ref),
                Err(s) => {
                    failure = Some(RuntimeError::Image {
                        image: image.to_string(),
                        message: s.message().to_string(),
                    })
                }
            }
        }
        Err(failure.unwrap_or_else(|| RuntimeError::Failed(format!("pulling {image}"))))
    }

    async fn run_sandbox(&self, config: &SandboxConfig) -> Result<Sandbox> {
        if !config.host_network && !self.pod_network.load(Ordering::SeqCst) {
            return Err(RuntimeError::Unsupported(
                "the pod network is not configured yet (the node has no podCIDR)".into(),
            ));
        }
        let c = self.sandbox_config(config);
        std::fs::create_dir_all(&c.log_directory)
            .map_err(|e| RuntimeError::Failed(format!("{}: {e}", c.log_directory)))?;
        let id = self
            .cri
            .runtime
            .clone()
            .run_pod_sandbox(api::RunPodSandboxRequest {
                config: Some(c.clone()),
                runtime_handler: String::new(),
            })
            .await
            .map_err(status("running the pod sandbox"))?
            .into_inner()
            .pod_sandbox_id;
        self.configs().insert(id.clone(), c);
        Ok(Self::sandbox_of(&self.sandbox_status(&id).await?))
    }

    async fn stop_sandbox(&self, id: &str) -> Result<()> {
        self.cri
            .runtime
            .clone()
            .stop_pod_sandbox(api::StopPodSandboxRequest {
                pod_sandbox_id: id.into(),
            })
            .await
            .map_err(status("stopping the pod sandbox"))?;
        Ok(())
    }

    async fn remove_sandbox(&self, id: &str) -> Result<()> {
        self.configs().remove(id);
        self.statuses().retain(|_, (_, c)| c.sandbox_id != id);
        let s = self.sandbox_status(id).await.ok();
        self.cri
            .runtime
            .clone()
            .remove_pod_sandbox(api::RemovePodSandboxRequest {
                pod_sandbox_id: id.into(),
            })
            .await
            .map_err(status("removing the pod sandbox"))?;
        // Its logs go with it, as the kubelet removes a deleted pod's log directory.
        if let Some(m) = s.and_then(|s| s.metadata) {
            let dir = self
                .logs
                .join(format!("{}_{}_{}", m.namespace, m.name, m.uid));
            let _ = std::fs::remove_dir_all(dir);
        }
        Ok(())
    }

    async fn list_sandboxes(&self, pod_uid: Option<&str>) -> Result<Vec<Sandbox>> {
        // A new pod's worker asks for its own: one status call per sandbox of the node
        // would make each pod start slower than the one before.
        let filter = pod_uid.map(|uid| api::PodSandboxFilter {
            label_selector: HashMap::from([(POD_UID_LABEL.to_string(), uid.to_string())]),
            ..Default::default()
        });
        let items = self
            .cri
            .runtime
            .clone()
            .list_pod_sandbox(api::ListPodSandboxRequest { filter })
            .await
            .map_err(status("listing pod sandboxes"))?
            .into_inner()
            .items;
        let mut out = Vec::with_capacity(items.len());
        for s in items {
            // The address is only in the status; a sandbox removed meanwhile is left out.
            match self.sandbox_status(&s.id).await {
                Ok(st) => out.push(Self::sandbox_of(&st)),
                Err(RuntimeError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    async fn relist(&self) -> Result<HashMap<String, u64>> {
        use std::hash::{Hash, Hasher};
        let mut rt = self.cri.runtime.clone();
        let sandboxes = rt
            .list_pod_sandbox(api::ListPodSandboxRequest { filter: None })
            .await
            .map_err(status("listing pod sandboxes"))?
            .into_inner()
            .items
            .into_iter()
            .map(|s| (s.id, s.state, s.labels));
        let containers = rt
            .list_containers(api::ListContainersRequest { filter: None })
            .await
            .map_err(status("listing containers"))?
            .into_inner()
            .containers
            .into_iter()
            .map(|c| (c.id, c.state, c.labels));
        let mut pods: HashMap<String, u64> = HashMap::new();
        for (id, state, labels) in sandboxes.chain(containers) {
            let Some(uid) = labels.get(POD_UID_LABEL) else {
                continue;
            };
            let mut h = std::collections::hash_map::DefaultHasher::new();
            (id, state).hash(&mut h);
            // A sum: the same whatever order the runtime lists them in.
            let fingerprint = pods.entry(uid.clone()).or_default();
            *fingerprint = fingerprint.wrapping_add(h.finish());
        }
        Ok(pods)
    }

    async fn create_container(&self, sandbox_id: &str, config: &ContainerConfig) -> Result<String> {
        let known = self.configs().get(sandbox_id).cloned();
        let mut sandbox_config = match known {
            Some(c) => c,
            None => self.config_of_sandbox(sandbox_id).await?,
        };
        if let Some(linux) = sandbox_config.linux.as_mut() {
            linux.cgroup_parent = config.cgroup_parent.clone();
        }
        // The sandbox's namespaces; an ephemeral container joins its target's processes.
        let mut namespaces = sandbox_config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|s| s.namespace_options.clone());
        if let (Some(n), Some(target)) = (namespaces.as_mut(), &config.pid_target) {
            n.pid = api::NamespaceMode::Target as i32;
            n.target_id = target.clone();
        }
        let attempt = config.attempt;
        let c = api::ContainerConfig {
            metadata: Some(api::ContainerMetadata {
                name: config.name.clone(),
                attempt,
            }),
            image: Some(api::ImageSpec {
                image: config.image.clone(),
                ..Default::default()
            }),
            command: config.command.clone(),
            args: config.args.clone(),
            working_dir: config.working_dir.clone().unwrap_or_default(),
            envs: config
                .env
                .iter()
                .map(|(k, v)| api::KeyValue {
                    key: k.clone(),
                    value: v.clone(),
                })
                .collect(),
            labels: config
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            mounts: config
                .mounts
                .iter()
                .map(|m| api::Mount {
                    container_path: m.container_path.clone(),
                    host_path: m.host_path.to_string_lossy().into_owned(),
                    readonly: m.read_only,
                    ..Default::default()
                })
                .collect(),
            log_path: format!("{}/{attempt}.log", config.name),
            stdin: config.stdin,
            tty: config.tty,
            linux: Some(api::LinuxContainerConfig {
                resources: Some(api::LinuxContainerResources {
                    cpu_shares: config.resources.cpu_shares,
                    cpu_quota: config.resources.cpu_quota,
                    cpu_period: config.resources.cpu_period,
                    memory_limit_in_bytes: config.resources.memory_limit,
                    oom_score_adj: config.resources.oom_score_adj,
                    ..Default::default()
                }),
                security_context: Some(Self::security_context(&config.security, namespaces)),
            }),
            ..Default::default()
        };
        let dir = PathBuf::from(&sandbox_config.log_directory).join(&config.name);
        std::fs::create_dir_all(&dir)
            .map_err(|e| RuntimeError::Failed(format!("{}: {e}", dir.display())))?;
        Ok(self
            .cri
            .runtime
            .clone()
            .create_container(api::CreateContainerRequest {
                pod_sandbox_id: sandbox_id.into(),
                config: Some(c),
                sandbox_config: Some(sandbox_config),
            })
            .await
            .map_err(status("creating the container"))?
            .into_inner()
            .container_id)
    }

    async fn start_container(&self, id: &str) -> Result<()> {
        self.cri
            .runtime
            .clone()
            .start_container(api::StartContainerRequest {
                container_id: id.into(),
            })
            .await
            .map_err(status("starting the container"))?;
        Ok(())
    }

    async fn stop_container(&self, id: &str, grace: Duration) -> Result<()> {
        self.cri
            .runtime
            .clone()
            .stop_container(api::StopContainerRequest {
                container_id: id.into(),
                timeout: i64::try_from(grace.as_secs()).unwrap_or(i64::MAX),
            })
            .await
            .map_err(status("stopping the container"))?;
        Ok(())
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        self.cri
            .runtime
            .clone()
            .remove_container(api::RemoveContainerRequest {
                container_id: id.into(),
            })
            .await
            .map_err(status("removing the container"))?;
        self.statuses().remove(id);
        Ok(())
    }

    async fn list_containers(&self, sandbox_id: &str) -> Result<Vec<Container>> {
        let listed = self
            .cri
            .runtime
            .clone()
            .list_containers(api::ListContainersRequest {
                filter: Some(api::ContainerFilter {
                    pod_sandbox_id: sandbox_id.into(),
                    ..Default::default()
                }),
            })
            .await
            .map_err(status("listing containers"))?
            .into_inner()
            .containers;
        // Those that were removed behind the agent's back are forgotten.
        self.statuses().retain(|id, (_, known)| {
            known.sandbox_id != sandbox_id || listed.iter().any(|c| &c.id == id)
        });
        let mut out = Vec::with_capacity(listed.len());
        for c in listed {
            if let Some((_, known)) = self.statuses().get(&c.id).filter(|(s, _)| *s == c.state) {
                out.push(known.clone());
                continue;
            }
            let listed_state = c.state;
            // Exit codes and times are only in the status.
            let s = match self.container_status(&c.id).await {
                Ok(s) => s,
                Err(RuntimeError::NotFound(_)) => continue,
                Err(e) => return Err(e),
            };
            let state = match api::ContainerState::try_from(s.state) {
                Ok(api::ContainerState::ContainerRunning) => ContainerState::Running {
                    started_at: timestamp(s.started_at).unwrap_or_else(Timestamp::now),
                },
                Ok(api::ContainerState::ContainerExited) => ContainerState::Exited {
                    started_at: timestamp(s.started_at),
                    finished_at: timestamp(s.finished_at).unwrap_or_else(Timestamp::now),
                    exit_code: s.exit_code,
                    reason: (!s.reason.is_empty()).then(|| s.reason.clone()),
                    message: (!s.message.is_empty()).then(|| s.message.clone()),
                },
                _ => ContainerState::Created,
            };
            let (name, attempt) = c.metadata.map(|m| (m.name, m.attempt)).unwrap_or_default();
            let container = Container {
                id: c.id,
                sandbox_id: c.pod_sandbox_id,
                name,
                attempt,
                image: s.image.map(|i| i.image).unwrap_or_default(),
                image_ref: s.image_ref,
                state,
                labels: labels(&c.labels),
            };
            self.statuses()
                .insert(container.id.clone(), (listed_state, container.clone()));
            out.push(container);
        }
        Ok(out)
    }

    async fn log_source(&self, container_id: &str) -> Result<LogSource> {
        let s = self.container_status(container_id).await?;
        Ok(LogSource::File(s.log_path.into()))
    }

    async fn rotate_logs(&self) -> Result<()> {
        for c in self.running_containers().await? {
            // The path the sandbox's log directory and the container's metadata make.
            let (Some(m), Some(ns), Some(name), Some(uid)) = (
                c.metadata.as_ref(),
                c.labels.get(POD_NAMESPACE_LABEL),
                c.labels.get(POD_NAME_LABEL),
                c.labels.get(POD_UID_LABEL),
            ) else {
                continue;
            };
            let path = self
                .logs
                .join(format!("{ns}_{name}_{uid}"))
                .join(&m.name)
                .join(format!("{}.log", m.attempt));
            let rotated = match crate::logs::rotate(&path, self.log_limits, Timestamp::now()) {
                Ok(Some(r)) => r,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(log = %path.display(), error = %e, "rotating a container log");
                    continue;
                }
            };
            let reopened = self
                .cri
                .runtime
                .clone()
                .reopen_container_log(api::ReopenContainerLogRequest {
                    container_id: c.id.clone(),
                })
                .await;
            if let Err(e) = reopened {
                tracing::warn!(container = %c.id, error = %e.message(), "reopening a rotated log");
                let _ = std::fs::rename(&rotated, &path);
            }
        }
        Ok(())
    }

    async fn exec_sync(
        &self,
        container_id: &str,
        command: &[String],
        timeout: Duration,
    ) -> Result<(i32, Vec<u8>)> {
        let r = self
            .cri
            .runtime
            .clone()
            .exec_sync(api::ExecSyncRequest {
                container_id: container_id.into(),
                cmd: command.to_vec(),
                timeout: i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX),
            })
            .await
            .map_err(status("exec"))?
            .into_inner();
        let mut out = r.stdout;
        out.extend_from_slice(&r.stderr);
        Ok((r.exit_code, out))
    }

    async fn stream_url(&self, request: &StreamRequest) -> Result<String> {
        let mut rt = self.cri.runtime.clone();
        let url = match request {
            StreamRequest::Exec {
                container_id,
                command,
                io,
            } => {
                rt.exec(api::ExecRequest {
                    container_id: container_id.clone(),
                    cmd: command.clone(),
                    tty: io.tty,
                    stdin: io.stdin,
                    stdout: io.stdout,
                    stderr: io.stderr,
                })
                .await
                .map_err(status("exec"))?
                .into_inner()
                .url
            }
            StreamRequest::Attach { container_id, io } => {
                rt.attach(api::AttachRequest {
                    container_id: container_id.clone(),
                    tty: io.tty,
                    stdin: io.stdin,
                    stdout: io.stdout,
                    stderr: io.stderr,
                })
                .await
                .map_err(status("attach"))?
                .into_inner()
                .url
            }
            StreamRequest::PortForward { sandbox_id, ports } => {
                rt.port_forward(api::PortForwardRequest {
                    pod_sandbox_id: sandbox_id.clone(),
                    port: ports.clone(),
                })
                .await
                .map_err(status("port-forward"))?
                .into_inner()
                .url
            }
        };
        Ok(url)
    }

    async fn container_stats(&self) -> Result<Vec<ContainerStats>> {
        let running: std::collections::HashSet<String> = self
            .running_containers()
            .await?
            .into_iter()
            .map(|c| c.id)
            .collect();
        let stats = self
            .cri
            .runtime
            .clone()
            .list_container_stats(api::ListContainerStatsRequest { filter: None })
            .await
            .map_err(status("container stats"))?
            .into_inner()
            .stats;
        Ok(stats
            .into_iter()
            .filter_map(|s| {
                let attributes = s.attributes?;
                running.contains(&attributes.id).then(|| ContainerStats {
                    id: attributes.id,
                    labels: labels(&attributes.labels),
                    cpu_core_nanos: s
                        .cpu
                        .and_then(|c| c.usage_core_nano_seconds)
                        .map_or(0, |v| v.value),
                    memory_working_set_bytes: s
                        .memory
                        .and_then(|m| m.working_set_bytes)
                        .map_or(0, |v| v.value),
                })
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pod_network_is_a_bridge_over_the_pod_cidr() {
        let c: serde_json::Value = serde_json::from_str(&conflist(
            "10.42.3.0/24",
            std::path::Path::new("/d/cni"),
            Some(1450),
        ))
        .unwrap();
        let bridge = &c["plugins"][0];
        assert_eq!(bridge["type"], "bridge");
        assert_eq!(bridge["bridge"], BRIDGE);
        assert_eq!(bridge["isGateway"], true);
        assert_eq!(bridge["ipam"]["ranges"][0][0]["subnet"], "10.42.3.0/24");
        assert_eq!(bridge["ipam"]["dataDir"], "/d/cni");
        assert_eq!(bridge["ipam"]["routes"][0]["dst"], "0.0.0.0/0");
        assert_eq!(bridge["mtu"], 1450);
        let portmap = &c["plugins"][1];
        assert_eq!(portmap["type"], "portmap");
        assert_eq!(portmap["capabilities"]["portMappings"], true);
        let v6: serde_json::Value =
            serde_json::from_str(&conflist("fd00:42::/64", std::path::Path::new("/d"), None))
                .unwrap();
        assert_eq!(v6["plugins"][0]["ipam"]["routes"][0]["dst"], "::/0");
        assert!(v6["plugins"][0].get("mtu").is_none());
    }
}
