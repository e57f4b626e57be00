//! The agent's Node: registration, status reports and the heartbeat Lease, as the kubelet does
//! them. The Lease in `kube-node-lease` is renewed every quarter of its duration (the cheap
//! heartbeat the node lifecycle controller watches); the Node's status is written when it
//! changes, and at least every [`NodeConfig::status_report_period`] otherwise.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus, NodeSystemInfo,
    Taint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};

/// What this node is.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub name: String,
    /// Labels set at registration, on top of the default ones.
    pub labels: BTreeMap<String, String>,
    /// Taints set at registration.
    pub taints: Vec<Taint>,
    pub node_ip: IpAddr,
    pub capacity: BTreeMap<String, Quantity>,
    pub allocatable: BTreeMap<String, Quantity>,
    pub system: NodeSystemInfo,
    pub lease_duration: Duration,
    pub status_report_period: Duration,
    /// How often a running pod's ConfigMap, Secret and downward API volumes are brought up
    /// to date (the kubelet's `--sync-frequency`).
    pub sync_frequency: Duration,
    /// Whether the node records events about its pods (Pulled, Started, BackOff, ...).
    pub record_events: bool,
    /// The port of the node's own server (0: it has none, as simulated nodes).
    pub kubelet_port: u16,
    /// Where pods' volumes and files go on the node (`<agent dir>/pods`).
    pub pods_dir: std::path::PathBuf,
    /// The nameserver of pods with dnsPolicy ClusterFirst.
    pub cluster_dns: Option<IpAddr>,
}

const FIELD_MANAGER: &str = "rudder-agent";

/// The labels every kubelet sets on its Node.
pub fn default_labels(name: &str) -> BTreeMap<String, String> {
    let arch = go_arch().to_string();
    BTreeMap::from([
        ("beta.kubernetes.io/arch".to_string(), arch.clone()),
        ("beta.kubernetes.io/os".to_string(), "linux".to_string()),
        ("kubernetes.io/arch".to_string(), arch),
        ("kubernetes.io/hostname".to_string(), name.to_string()),
        ("kubernetes.io/os".to_string(), "linux".to_string()),
    ])
}

pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// Registers the Node, or takes over the one that exists (a restart): then only the default
/// labels are brought up to date, as the kubelet does; user labels and taints are the
/// registration's and afterwards the cluster's to change.
pub async fn register(api: &Api<Node>, cfg: &NodeConfig) -> kube::Result<Node> {
    let mut labels = default_labels(&cfg.name);
    labels.extend(cfg.labels.clone());
    let node = Node {
        metadata: ObjectMeta {
            name: Some(cfg.name.clone()),
            labels: Some(labels),
            annotations: Some(BTreeMap::from([(
                "volumes.kubernetes.io/controller-managed-attach-detach".to_string(),
                "true".to_string(),
            )])),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            taints: (!cfg.taints.is_empty()).then(|| cfg.taints.clone()),
            ..Default::default()
        }),
        status: None,
    };
    let pp = PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    match api.create(&pp, &node).await {
        Ok(n) => Ok(n),
        Err(kube::Error::Api(s)) if s.code == 409 => {
            let patch = serde_json::json!({"metadata": {"labels": default_labels(&cfg.name)}});
            api.patch(
                &cfg.name,
                &PatchParams {
                    field_manager: Some(FIELD_MANAGER.into()),
                    ..Default::default()
                },
                &Patch::Merge(&patch),
            )
            .await
        }
        Err(e) => Err(e),
    }
}

/// Whether the node can run pods, and why not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Readiness {
    pub ready: bool,
    pub reason: String,
    pub message: String,
}

impl Readiness {
    pub fn ready() -> Readiness {
        Readiness {
            ready: true,
            reason: "KubeletReady".into(),
            message: "kubelet is posting ready status".into(),
        }
    }

    pub fn not_ready(message: impl Into<String>) -> Readiness {
        Readiness {
            ready: false,
            reason: "KubeletNotReady".into(),
            message: message.into(),
        }
    }
}

fn condition(
    kind: &str,
    status: bool,
    reason: &str,
    message: &str,
    now: &Time,
    previous: &[NodeCondition],
) -> NodeCondition {
    let status = if status { "True" } else { "False" }.to_string();
    let transition = previous
        .iter()
        .find(|c| c.type_ == kind && c.status == status)
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.clone());
    NodeCondition {
        type_: kind.to_string(),
        status,
        reason: Some(reason.to_string()),
        message: Some(message.to_string()),
        last_heartbeat_time: Some(now.clone()),
        last_transition_time: Some(transition),
    }
}

/// The status the node reports now; `previous` keeps the conditions' transition times.
pub fn status(cfg: &NodeConfig, readiness: &Readiness, previous: &[NodeCondition]) -> NodeStatus {
    let now = Time(Timestamp::now());
    let pressure = |kind: &str, reason: &str, message: &str| {
        condition(kind, false, reason, message, &now, previous)
    };
    NodeStatus {
        capacity: Some(cfg.capacity.clone()),
        allocatable: Some(cfg.allocatable.clone()),
        addresses: Some(vec![
            NodeAddress {
                type_: "InternalIP".into(),
                address: cfg.node_ip.to_string(),
            },
            NodeAddress {
                type_: "Hostname".into(),
                address: cfg.name.clone(),
            },
        ]),
        conditions: Some(vec![
            pressure(
                "MemoryPressure",
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
            ),
            pressure(
                "DiskPressure",
                "KubeletHasNoDiskPressure",
                "kubelet has no disk pressure",
            ),
            pressure(
                "PIDPressure",
                "KubeletHasSufficientPID",
                "kubelet has sufficient PID available",
            ),
            condition(
                "Ready",
                readiness.ready,
                &readiness.reason,
                &readiness.message,
                &now,
                previous,
            ),
        ]),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(k8s_openapi::api::core::v1::DaemonEndpoint {
                port: i32::from(cfg.kubelet_port),
            }),
        }),
        node_info: Some(cfg.system.clone()),
        ..Default::default()
    }
}

/// Writes the node's status.
pub async fn report(api: &Api<Node>, cfg: &NodeConfig, status: &NodeStatus) -> kube::Result<Node> {
    let patch = serde_json::json!({ "status": status });
    api.patch_status(
        &cfg.name,
        &PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        },
        &Patch::Strategic(&patch),
    )
    .await
}

/// The longest a node's Lease grows to when the server is slow (the kubelet's default).
pub const MAX_LEASE_DURATION: Duration = Duration::from_secs(40);

/// How long the node's Lease lasts, paced by how the server answers renewals.
///
/// The configured duration (`--node-lease-duration`, renewed every quarter of it) is what a
/// healthy server sees, and what makes a lost node's pods move within seconds. A renewal that
/// fails or takes more than half its period is a sign the server is overloaded: the node
/// doubles its Lease (up to [`MAX_LEASE_DURATION`]) and renews half as often, so thousands of
/// nodes lighten the load they put on a struggling server instead of adding retries to it, and
/// the node lifecycle controller, which gives each node the time its Lease declares, does not
/// take a node for lost because the server was slow. Four quick renewals in a row (each
/// under a tenth of its period) take a quarter off again, down to the configured duration.
///
/// A refused renewal did not land: the server still holds the Lease last written, so the next
/// try comes a quarter of *that* Lease later (the longer one is written when a try lands).
#[derive(Debug)]
pub struct LeasePace {
    base: u64,
    secs: u64,
    quick: u32,
    /// The duration of the Lease last written, and whether the last renewal failed.
    written: u64,
    failed: bool,
}

impl LeasePace {
    pub fn new(base: Duration) -> LeasePace {
        let base = base.as_secs().max(1);
        LeasePace {
            base,
            secs: base,
            quick: 0,
            written: base,
            failed: false,
        }
    }

    /// The Lease duration to write now.
    pub fn duration(&self) -> Duration {
        Duration::from_secs(self.secs)
    }

    /// How long until the next renewal.
    pub fn period(&self) -> Duration {
        match self.failed {
            true => Duration::from_secs(self.written) / 4,
            false => self.duration() / 4,
        }
    }

    /// Takes note of a renewal that took `took` and failed or not; whether the pace changed.
    pub fn renewed(&mut self, took: Duration, failed: bool) -> bool {
        let period = self.duration() / 4;
        let before = self.secs;
        self.failed = failed;
        if !failed {
            self.written = before;
        }
        if failed || took > period / 2 {
            self.secs = (self.secs * 2).min(MAX_LEASE_DURATION.as_secs().max(self.base));
            self.quick = 0;
        } else if took < period / 10 {
            self.quick += 1;
            if self.quick >= 4 {
                self.secs = (self.secs * 3 / 4).max(self.base);
                self.quick = 0;
            }
        } else {
            self.quick = 0;
        }
        self.secs != before
    }
}

/// The heartbeat: creates the node's Lease (owned by the Node with uid `owner`) or renews it.
/// `lease` is the last one written (its resourceVersion makes the renewal a compare-and-swap);
/// on a conflict the caller drops it and the next call reads the current one.
pub async fn renew_lease(
    api: &Api<Lease>,
    owner: Option<&str>,
    cfg: &NodeConfig,
    lease: Option<Lease>,
    duration: Duration,
) -> kube::Result<Lease> {
    let now = MicroTime(Timestamp::now());
    let seconds = duration.as_secs().clamp(1, i32::MAX as u64) as i32;
    let current = match lease {
        Some(l) => Some(l),
        None => api.get_opt(&cfg.name).await?,
    };
    match current {
        Some(mut l) => {
            let spec = l.spec.get_or_insert_with(LeaseSpec::default);
            spec.holder_identity = Some(cfg.name.clone());
            spec.lease_duration_seconds = Some(seconds);
            spec.renew_time = Some(now);
            api.replace(&cfg.name, &PostParams::default(), &l).await
        }
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(cfg.name.clone()),
                    namespace: Some("kube-node-lease".into()),
                    // Deleting the Node deletes its Lease.
                    owner_references: owner.map(|uid| {
                        vec![OwnerReference {
                            api_version: "v1".into(),
                            kind: "Node".into(),
                            name: cfg.name.clone(),
                            uid: uid.to_string(),
                            ..Default::default()
                        }]
                    }),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(cfg.name.clone()),
                    lease_duration_seconds: Some(seconds),
                    renew_time: Some(now),
                    ..Default::default()
                }),
            };
            api.create(&PostParams::default(), &lease).await
        }
    }
}

/// Facts about this machine for the Node's nodeInfo.
pub fn system_info(runtime_version: String) -> NodeSystemInfo {
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    let os_image = read("/etc/os-release")
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_else(|| "Linux".into());
    let (ma, mi, pa) = rudder_api::KUBERNETES_VERSION;
    let version = format!("v{ma}.{mi}.{pa}+rudder-{}", env!("CARGO_PKG_VERSION"));
    NodeSystemInfo {
        machine_id: read("/etc/machine-id"),
        system_uuid: read("/sys/class/dmi/id/product_uuid"),
        boot_id: read("/proc/sys/kernel/random/boot_id"),
        kernel_version: read("/proc/sys/kernel/osrelease"),
        os_image,
        container_runtime_version: runtime_version,
        kubelet_version: version.clone(),
        kube_proxy_version: version,
        operating_system: "linux".into(),
        architecture: go_arch().into(),
        ..Default::default()
    }
}

/// This machine's capacity (CPUs, memory, pods) and what is allocatable after the kubelet's
/// default hard eviction thresholds (memory.available 100Mi, nodefs.available 10%).
pub fn machine_capacity(
    ephemeral_storage_bytes: u64,
) -> (BTreeMap<String, Quantity>, BTreeMap<String, Quantity>) {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mem_kib: u64 = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0);
    let q = |s: String| Quantity(s);
    let storage_kib = ephemeral_storage_bytes / 1024;
    let capacity = BTreeMap::from([
        ("cpu".to_string(), q(cpus.to_string())),
        ("memory".to_string(), q(format!("{mem_kib}Ki"))),
        ("pods".to_string(), q("110".into())),
        (
            "ephemeral-storage".to_string(),
            q(format!("{storage_kib}Ki")),
        ),
        ("hugepages-1Gi".to_string(), q("0".into())),
        ("hugepages-2Mi".to_string(), q("0".into())),
    ]);
    let mut allocatable = capacity.clone();
    allocatable.insert(
        "memory".into(),
        q(format!("{}Ki", mem_kib.saturating_sub(100 * 1024))),
    );
    allocatable.insert(
        "ephemeral-storage".into(),
        q((ephemeral_storage_bytes / 10 * 9).to_string()),
    );
    (capacity, allocatable)
}

/// The size of the filesystem holding `path`, in bytes (0 if it cannot be read).
pub fn filesystem_bytes(path: &std::path::Path) -> u64 {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return 0;
    };
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a writable statvfs.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return 0;
    }
    (st.f_blocks as u64).saturating_mul(st.f_frsize as u64)
}

/// The address of the interface that holds the default route (no packet is sent: connecting
/// a UDP socket only picks the route), or loopback when there is none.
pub fn default_node_ip() -> IpAddr {
    let probe = || -> std::io::Result<IpAddr> {
        let s = std::net::UdpSocket::bind("0.0.0.0:0")?;
        s.connect("192.0.2.1:9")?;
        Ok(s.local_addr()?.ip())
    };
    probe().unwrap_or(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST))
}

/// `k=v` pairs (`--node-labels`), checked as the API server would check them.
pub fn parse_labels(items: &[String]) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for item in items.iter().filter(|i| !i.trim().is_empty()) {
        let (k, v) = item
            .split_once('=')
            .ok_or_else(|| format!("invalid node label {item:?}: expected key=value"))?;
        let (k, v) = (k.trim(), v.trim());
        let errs: Vec<String> = rudder_api::validation::qualified_name(k)
            .into_iter()
            .chain(rudder_api::validation::label_value(v))
            .collect();
        if !errs.is_empty() {
            return Err(format!("invalid node label {item:?}: {}", errs.join("; ")));
        }
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

/// `key[=value]:Effect` items (`--node-taints`), as `kubectl taint` writes them.
pub fn parse_taints(items: &[String]) -> Result<Vec<Taint>, String> {
    let mut out: Vec<Taint> = Vec::new();
    for item in items.iter().filter(|i| !i.trim().is_empty()) {
        let bad = |why: &str| format!("invalid node taint {item:?}: {why}");
        let (kv, effect) = item
            .trim()
            .rsplit_once(':')
            .ok_or_else(|| bad("expected key[=value]:Effect"))?;
        if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
            return Err(bad(
                "the effect must be NoSchedule, PreferNoSchedule or NoExecute",
            ));
        }
        let (key, value) = match kv.split_once('=') {
            Some((k, v)) => (k, Some(v.to_string())),
            None => (kv, None),
        };
        let errs: Vec<String> = rudder_api::validation::qualified_name(key)
            .into_iter()
            .chain(
                value
                    .as_deref()
                    .map(rudder_api::validation::label_value)
                    .unwrap_or_default(),
            )
            .collect();
        if !errs.is_empty() {
            return Err(bad(&errs.join("; ")));
        }
        if out.iter().any(|t| t.key == key && t.effect == effect) {
            return Err(bad("the same key and effect twice"));
        }
        out.push(Taint {
            key: key.to_string(),
            value,
            effect: effect.to_string(),
            time_added: None,
        });
    }
    Ok(out)
}

/// `resource=quantity` items (`--node-capacity cpu=4,memory=8Gi,pods=110`) over `base`.
pub fn parse_capacity(
    items: &[String],
    base: &BTreeMap<String, Quantity>,
) -> Result<BTreeMap<String, Quantity>, String> {
    let mut out = base.clone();
    for item in items.iter().filter(|i| !i.trim().is_empty()) {
        let (k, v) = item
            .split_once('=')
            .ok_or_else(|| format!("invalid node capacity {item:?}: expected resource=quantity"))?;
        let (k, v) = (k.trim(), v.trim());
        if rudder_api::validation::parse_quantity(v).is_none() || v.starts_with('-') {
            return Err(format!(
                "invalid node capacity {item:?}: {v:?} is not a quantity"
            ));
        }
        if !rudder_api::validation::qualified_name(k).is_empty() {
            return Err(format!("invalid node capacity {item:?}: bad resource name"));
        }
        out.insert(k.to_string(), Quantity(v.to_string()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse_and_bad_ones_say_why() {
        let l = parse_labels(&["a=b".into(), "x.io/y=".into()]).unwrap();
        assert_eq!(l["a"], "b");
        assert_eq!(l["x.io/y"], "");
        assert!(parse_labels(&["nokey".into()])
            .unwrap_err()
            .contains("key=value"));
        assert!(parse_labels(&["a=b c".into()]).is_err());
        let t = parse_taints(&["gpu=yes:NoSchedule".into(), "dedicated:NoExecute".into()]).unwrap();
        assert_eq!(
            (
                t[0].key.as_str(),
                t[0].value.as_deref(),
                t[0].effect.as_str()
            ),
            ("gpu", Some("yes"), "NoSchedule")
        );
        assert_eq!(
            (t[1].key.as_str(), t[1].value.as_deref()),
            ("dedicated", None)
        );
        assert!(parse_taints(&["a=b:Sometimes".into()])
            .unwrap_err()
            .contains("effect"));
        assert!(parse_taints(&["a=b".into()]).is_err());
        let base = BTreeMap::from([("cpu".to_string(), Quantity("2".into()))]);
        let c = parse_capacity(&["cpu=4".into(), "memory=8Gi".into()], &base).unwrap();
        assert_eq!(c["cpu"].0, "4");
        assert_eq!(c["memory"].0, "8Gi");
        assert!(parse_capacity(&["cpu=lots".into()], &base).is_err());
        assert!(parse_capacity(&["cpu=-1".into()], &base).is_err());
    }

    #[test]
    fn the_lease_grows_when_renewals_are_slow_and_shrinks_back_when_quick() {
        let ms = Duration::from_millis;
        let mut pace = LeasePace::new(Duration::from_secs(4));
        assert_eq!(pace.period(), Duration::from_secs(1));
        // Ordinary renewals change nothing; quick ones at the configured duration neither.
        assert!(!pace.renewed(ms(300), false));
        for _ in 0..8 {
            assert!(!pace.renewed(ms(5), false));
        }
        // Slow or refused: twice as long each time, up to the kubelet's 40 s.
        assert!(pace.renewed(ms(600), false));
        assert_eq!(pace.duration(), Duration::from_secs(8));
        // Refused: the server still holds the 4 s Lease written by the slow renewal, so the
        // next try comes a second later; the one that lands writes the longer Lease.
        pace.renewed(ms(5), true);
        assert_eq!(pace.duration(), Duration::from_secs(16));
        assert_eq!(pace.period(), Duration::from_secs(1));
        pace.renewed(ms(5), true);
        pace.renewed(ms(5), true);
        assert_eq!(pace.period(), Duration::from_secs(1));
        assert_eq!(pace.duration(), MAX_LEASE_DURATION);
        assert!(!pace.renewed(ms(5), true), "no longer than the cap");
        // Four quick renewals in a row take a quarter off; one ordinary one starts over.
        for _ in 0..3 {
            pace.renewed(ms(5), false);
        }
        pace.renewed(ms(2000), false);
        for _ in 0..3 {
            assert!(!pace.renewed(ms(5), false));
        }
        assert!(pace.renewed(ms(5), false));
        assert_eq!(pace.duration(), Duration::from_secs(30));
        for _ in 0..40 {
            pace.renewed(ms(1), false);
        }
        assert_eq!(
            pace.duration(),
            Duration::from_secs(4),
            "back to the configured one"
        );
        // A configured duration above the cap is kept.
        let mut long = LeasePace::new(Duration::from_secs(60));
        long.renewed(ms(0), true);
        assert_eq!(long.duration(), Duration::from_secs(60));
    }
}
