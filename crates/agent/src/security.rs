//! What the kubelet asks of the runtime for a container besides its process: cgroup limits
//! from requests and limits (CPU shares and quota, the memory limit, the OOM score by QoS
//! class), the pod's cgroup under its QoS class, and the security context (user and group,
//! non-root check, read-only root, privileged, capabilities, no_new_privs, and the paths of
//! /proc and /sys that are masked or read-only unless privileged).

use k8s_openapi::api::core::v1::{Container, Pod, SecurityContext};
use rudder_api::validation::Quantity;

/// The CPU period of a quota, as the kubelet's (100 ms).
const CPU_PERIOD: i64 = 100_000;
const MIN_SHARES: i64 = 2;
const MIN_QUOTA: i64 = 1_000;

/// Upstream's paths masked and made read-only in every unprivileged container.
const MASKED_PATHS: [&str; 11] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];
const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// A container's cgroup settings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    pub cpu_shares: i64,
    /// 0: no quota.
    pub cpu_quota: i64,
    pub cpu_period: i64,
    /// 0: no limit.
    pub memory_limit: i64,
    pub oom_score_adj: i64,
}

/// A container's security settings, the pod's and the container's contexts merged.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Security {
    pub run_as_user: Option<i64>,
    pub run_as_group: Option<i64>,
    pub supplemental_groups: Vec<i64>,
    pub readonly_rootfs: bool,
    pub privileged: bool,
    pub add_capabilities: Vec<String>,
    pub drop_capabilities: Vec<String>,
    pub no_new_privs: bool,
    pub masked_paths: Vec<String>,
    pub readonly_paths: Vec<String>,
}

fn quantity(
    q: Option<&k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
) -> Option<Quantity> {
    q.and_then(|q| Quantity::parse(&q.0))
}

/// Millicores of a CPU quantity, bytes of a memory one.
fn milli(q: &Quantity) -> i64 {
    i64::try_from(q.nanos().div_euclid(1_000_000)).unwrap_or(i64::MAX)
}
fn bytes(q: &Quantity) -> i64 {
    i64::try_from(q.nanos().div_euclid(1_000_000_000)).unwrap_or(i64::MAX)
}

/// The pod's QoS class as its status says (the API server sets it at creation).
fn qos(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.qos_class.as_deref())
        .unwrap_or("BestEffort")
}

/// The cgroup settings of container `c` of `pod` on a node of `node_memory` bytes.
pub fn resources(pod: &Pod, c: &Container, node_memory: i64) -> Resources {
    let r = c.resources.clone().unwrap_or_default();
    let get = |m: &Option<std::collections::BTreeMap<String, _>>, k: &str| {
        quantity(m.as_ref().and_then(|m| m.get(k)))
    };
    let (cpu_req, cpu_lim) = (get(&r.requests, "cpu"), get(&r.limits, "cpu"));
    let (mem_req, mem_lim) = (get(&r.requests, "memory"), get(&r.limits, "memory"));
    let shares_of = |m: i64| (m.saturating_mul(1024) / 1000).max(MIN_SHARES);
    let cpu_shares = match (&cpu_req, &cpu_lim) {
        (Some(req), _) if milli(req) > 0 => shares_of(milli(req)),
        (_, Some(lim)) => shares_of(milli(lim)),
        _ => MIN_SHARES,
    };
    let cpu_quota = cpu_lim
        .as_ref()
        .map(|l| (milli(l).saturating_mul(CPU_PERIOD) / 1000).max(MIN_QUOTA))
        .unwrap_or(0);
    let memory_limit = mem_lim.as_ref().map(bytes).unwrap_or(0);
    let oom_score_adj = match qos(pod) {
        "Guaranteed" => -997,
        "BestEffort" => 1000,
        _ => {
            let request = mem_req.as_ref().map(bytes).unwrap_or(0);
            let adj = if node_memory > 0 {
                1000 - (1000i128 * i128::from(request) / i128::from(node_memory)) as i64
            } else {
                1000
            };
            adj.clamp(2, 999)
        }
    };
    Resources {
        cpu_shares,
        cpu_quota,
        cpu_period: CPU_PERIOD,
        memory_limit,
        oom_score_adj,
    }
}

/// The pod's cgroup under the node's `kubepods`, by QoS class, as the kubelet names it for the
/// cgroupfs driver.
pub fn cgroup_parent(pod: &Pod) -> String {
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    match qos(pod) {
        "Guaranteed" => format!("/kubepods/pod{uid}"),
        "Burstable" => format!("/kubepods/burstable/pod{uid}"),
        _ => format!("/kubepods/besteffort/pod{uid}"),
    }
}

/// Removes the cgroups of pod `uid` (under whichever QoS class) once its containers are gone;
/// one still in use stays.
pub fn remove_pod_cgroups(uid: &str) {
    let root = std::path::Path::new("/sys/fs/cgroup");
    // cgroup v1 has a hierarchy per controller; v2 (and a hybrid's unified part) has one.
    let hierarchies = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .chain(std::iter::once(root.to_path_buf()));
    for h in hierarchies {
        for qos in ["", "burstable", "besteffort"] {
            let dir = h.join("kubepods").join(qos).join(format!("pod{uid}"));
            if dir.is_dir() {
                let _ = std::fs::remove_dir(&dir);
            }
        }
    }
}

/// The security settings of container `c` of `pod`: the container's context over the pod's.
pub fn security(pod: &Pod, c: &Container) -> Security {
    let pod_sc = pod
        .spec
        .as_ref()
        .and_then(|s| s.security_context.clone())
        .unwrap_or_default();
    let sc: SecurityContext = c.security_context.clone().unwrap_or_default();
    let privileged = sc.privileged.unwrap_or(false);
    let caps = sc.capabilities.clone().unwrap_or_default();
    let add_capabilities = caps.add.unwrap_or_default();
    // As upstream: no_new_privs unless escalation is allowed, which it is by default and
    // always for privileged containers or those with CAP_SYS_ADMIN.
    let sys_admin = add_capabilities
        .iter()
        .any(|c| c == "SYS_ADMIN" || c == "CAP_SYS_ADMIN");
    let no_new_privs = sc.allow_privilege_escalation == Some(false) && !privileged && !sys_admin;
    let unmasked = privileged || sc.proc_mount.as_deref() == Some("Unmasked");
    let mut supplemental_groups = pod_sc.supplemental_groups.clone().unwrap_or_default();
    if let Some(fs) = pod_sc.fs_group {
        if !supplemental_groups.contains(&fs) {
            supplemental_groups.insert(0, fs);
        }
    }
    Security {
        run_as_user: sc.run_as_user.or(pod_sc.run_as_user),
        run_as_group: sc.run_as_group.or(pod_sc.run_as_group),
        supplemental_groups,
        readonly_rootfs: sc.read_only_root_filesystem.unwrap_or(false),
        privileged,
        add_capabilities,
        drop_capabilities: caps.drop.unwrap_or_default(),
        no_new_privs,
        masked_paths: if unmasked {
            Vec::new()
        } else {
            MASKED_PATHS.iter().map(|p| p.to_string()).collect()
        },
        readonly_paths: if unmasked {
            Vec::new()
        } else {
            READONLY_PATHS.iter().map(|p| p.to_string()).collect()
        },
    }
}

/// Whether the container must not run as root (`runAsNonRoot`, the container's over the
/// pod's).
pub fn requires_non_root(pod: &Pod, c: &Container) -> bool {
    c.security_context
        .as_ref()
        .and_then(|s| s.run_as_non_root)
        .or_else(|| {
            pod.spec
                .as_ref()
                .and_then(|s| s.security_context.as_ref())
                .and_then(|s| s.run_as_non_root)
        })
        .unwrap_or(false)
}

/// Whether `runAsNonRoot` holds for the container, given the user its image runs as (`uid`,
/// or a `username`); the error is the kubelet's CreateContainerConfigError message.
pub fn verify_non_root(
    pod: &Pod,
    c: &Container,
    security: &Security,
    image_uid: Option<i64>,
    image_user: &str,
) -> Result<(), String> {
    if !requires_non_root(pod, c) {
        return Ok(());
    }
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    let pod_ref = format!("{name}_{ns}({uid})");
    if let Some(user) = security.run_as_user {
        if user == 0 {
            return Err(format!(
                "container's runAsUser breaks non-root policy (pod: {pod_ref:?}, container: {})",
                c.name
            ));
        }
        return Ok(());
    }
    match image_uid {
        Some(0) => {}
        Some(_) => return Ok(()),
        None if !image_user.is_empty() => {
            let numeric = image_user.split(':').next().unwrap_or_default();
            match numeric.parse::<i64>() {
                Ok(0) => {}
                Ok(_) => return Ok(()),
                Err(_) => {
                    return Err(format!(
                        "container has runAsNonRoot and image has non-numeric user ({image_user}), \
                         cannot verify user is non-root (pod: {pod_ref:?}, container: {})",
                        c.name
                    ))
                }
            }
        }
        None => {}
    }
    Err(format!(
        "container has runAsNonRoot and image will run as root (pod: {pod_ref:?}, container: {})",
        c.name
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(qos: &str, containers: serde_json::Value) -> (Pod, Container) {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
            "spec": {"containers": containers},
            "status": {"qosClass": qos}
        }))
        .unwrap();
        let c = pod.spec.as_ref().unwrap().containers[0].clone();
        (pod, c)
    }

    #[test]
    fn limits_become_cgroup_settings_as_the_kubelet_makes_them() {
        let (p, c) = pod(
            "Burstable",
            serde_json::json!([{"name": "c", "resources": {
                "requests": {"cpu": "250m", "memory": "256Mi"},
                "limits": {"cpu": "500m", "memory": "512Mi"}}}]),
        );
        let r = resources(&p, &c, 1 << 30);
        assert_eq!(r.cpu_shares, 256);
        assert_eq!((r.cpu_quota, r.cpu_period), (50_000, 100_000));
        assert_eq!(r.memory_limit, 512 << 20);
        assert_eq!(r.oom_score_adj, 750);
        assert_eq!(cgroup_parent(&p), "/kubepods/burstable/podu1");
        let (p, c) = pod("BestEffort", serde_json::json!([{"name": "c"}]));
        let r = resources(&p, &c, 1 << 30);
        assert_eq!(
            (r.cpu_shares, r.cpu_quota, r.memory_limit, r.oom_score_adj),
            (2, 0, 0, 1000)
        );
        assert_eq!(cgroup_parent(&p), "/kubepods/besteffort/podu1");
        let (p, _) = pod("Guaranteed", serde_json::json!([{"name": "c"}]));
        assert_eq!(cgroup_parent(&p), "/kubepods/podu1");
    }

    #[test]
    fn the_container_context_wins_and_non_root_is_checked() {
        let (mut p, c) = pod(
            "BestEffort",
            serde_json::json!([{"name": "c", "securityContext": {
                "runAsUser": 1000, "allowPrivilegeEscalation": false,
                "capabilities": {"add": ["NET_ADMIN"], "drop": ["ALL"]},
                "readOnlyRootFilesystem": true}}]),
        );
        p.spec.as_mut().unwrap().security_context = serde_json::from_value(
            serde_json::json!({"runAsUser": 5, "runAsGroup": 7, "runAsNonRoot": true, "fsGroup": 9}),
        )
        .unwrap();
        let s = security(&p, &c);
        assert_eq!((s.run_as_user, s.run_as_group), (Some(1000), Some(7)));
        assert_eq!(s.supplemental_groups, vec![9]);
        assert!(s.no_new_privs && s.readonly_rootfs && !s.privileged);
        assert_eq!(s.add_capabilities, vec!["NET_ADMIN"]);
        assert_eq!(s.masked_paths.len(), MASKED_PATHS.len());
        assert!(verify_non_root(&p, &c, &s, None, "").is_ok());
        let root = Security {
            run_as_user: None,
            ..s.clone()
        };
        let err = verify_non_root(&p, &c, &root, None, "").unwrap_err();
        assert!(
            err.starts_with("container has runAsNonRoot and image will run as root"),
            "{err}"
        );
        assert!(verify_non_root(&p, &c, &root, Some(65534), "").is_ok());
        assert!(verify_non_root(&p, &c, &root, None, "nobody")
            .unwrap_err()
            .contains("non-numeric user (nobody)"));
        let zero = Security {
            run_as_user: Some(0),
            ..s
        };
        assert!(verify_non_root(&p, &c, &zero, None, "")
            .unwrap_err()
            .contains("breaks non-root policy"));
    }
}
