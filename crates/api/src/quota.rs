//! Resource quota accounting: what an object charges against a ResourceQuota, which quota
//! names a resource's objects are counted under, which objects a scoped quota covers, and the
//! `status` a quota gets from counted usage. Shared by the ResourceQuota admission plugin
//! (which charges a write before it is stored) and the resource quota controller (which
//! recounts usage from its caches), so both arrive at the same numbers.
//!
//! Owns: the usage rules of upstream's quota evaluators (pods, services, claims, object
//! counts) and scope matching. Must not touch: reading objects (callers count what they hold).

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::validation::Quantity;

/// A resource list (`{cpu: 100m, …}`) in nano-units, each with the format of its first
/// operand.
pub type Resources = BTreeMap<String, Quantity>;

/// A resource of the API by group (`""` for core) and plural name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupResource<'a> {
    pub group: &'a str,
    pub plural: &'a str,
}

impl<'a> GroupResource<'a> {
    pub const fn new(group: &'a str, plural: &'a str) -> Self {
        GroupResource { group, plural }
    }

    pub const fn core(plural: &'a str) -> Self {
        GroupResource { group: "", plural }
    }

    fn is_core(&self, plural: &str) -> bool {
        self.group.is_empty() && self.plural == plural
    }
}

/// The core resources whose quota names are not only `count/<resource>`.
pub const CORE_COUNTED: [&str; 7] = [
    "pods",
    "services",
    "persistentvolumeclaims",
    "configmaps",
    "secrets",
    "replicationcontrollers",
    "resourcequotas",
];

fn at<'v>(v: &'v Value, path: &[&str]) -> Option<&'v Value> {
    path.iter().try_fold(v, |v, k| v.get(*k))
}

fn s<'v>(v: &'v Value, path: &[&str]) -> &'v str {
    at(v, path).and_then(Value::as_str).unwrap_or("")
}

fn items<'v>(v: &'v Value, path: &[&str]) -> &'v [Value] {
    at(v, path)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// A resource list read from JSON; entries that are not quantities are left out.
pub fn resources(v: Option<&Value>) -> Resources {
    v.and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, q)| Some((k.clone(), Quantity::from_json(q)?)))
        .collect()
}

/// Adds `q` to `into[key]`.
pub fn add_to(into: &mut Resources, key: &str, q: Quantity) {
    match into.get_mut(key) {
        Some(have) => *have = have.add(&q),
        None => {
            into.insert(key.to_string(), q);
        }
    }
}

fn units(n: i64) -> Quantity {
    Quantity::from_units(n)
}

/// Requests or limits of a pod, as the scheduler counts them: the sum over its containers,
/// at least any one init container's, plus the pod overhead.
pub fn pod_resources(pod: &Value, which: &str) -> Resources {
    let mut total = Resources::new();
    for c in items(pod, &["spec", "containers"]) {
        for (k, q) in resources(at(c, &["resources", which])) {
            add_to(&mut total, &k, q);
        }
    }
    for c in items(pod, &["spec", "initContainers"]) {
        for (k, q) in resources(at(c, &["resources", which])) {
            match total.get(&k) {
                Some(have) if have.nanos() >= q.nanos() => {}
                _ => {
                    total.insert(k, q);
                }
            }
        }
    }
    for (k, q) in resources(at(pod, &["spec", "overhead"])) {
        if total.contains_key(&k) {
            add_to(&mut total, &k, q);
        }
    }
    total
}

/// The legacy quota name of a core resource counted by object (`pods`, `services`, …).
pub fn legacy_count_name(res: GroupResource<'_>) -> Option<&'static str> {
    if !res.group.is_empty() {
        return None;
    }
    CORE_COUNTED.into_iter().find(|p| *p == res.plural)
}

/// `count/<resource>[.<group>]`.
pub fn count_name(res: GroupResource<'_>) -> String {
    if res.group.is_empty() {
        format!("count/{}", res.plural)
    } else {
        format!("count/{}.{}", res.plural, res.group)
    }
}

/// Whether a quota resource name is counted from objects of `res`.
pub fn owns(res: GroupResource<'_>, key: &str) -> bool {
    if key == count_name(res) || Some(key) == legacy_count_name(res) {
        return true;
    }
    if !res.group.is_empty() {
        return false;
    }
    match res.plural {
        "pods" => {
            matches!(key, "cpu" | "memory" | "ephemeral-storage")
                || (key.starts_with("requests.") && key != "requests.storage")
                || key.starts_with("limits.")
                || key.starts_with("hugepages-")
        }
        "services" => matches!(key, "services.nodeports" | "services.loadbalancers"),
        "persistentvolumeclaims" => {
            key == "requests.storage" || key.contains(".storageclass.storage.k8s.io/")
        }
        _ => false,
    }
}

/// The resource whose objects a quota name counts, as (group, plural): `count/<r>.<g>` names
/// its resource (whether it is served is the caller's question), the other names one of the
/// core resources. `None`: nothing counts it.
pub fn owner_of(key: &str) -> Option<(String, String)> {
    if let Some(counted) = key.strip_prefix("count/") {
        let (plural, group) = counted.split_once('.').unwrap_or((counted, ""));
        return Some((group.to_string(), plural.to_string()));
    }
    CORE_COUNTED
        .into_iter()
        .find(|p| owns(GroupResource::core(p), key))
        .map(|p| (String::new(), p.to_string()))
}

/// Whether an object still counts against quota (a finished pod does not).
pub fn counts(res: GroupResource<'_>, obj: &Value) -> bool {
    if res.is_core("pods") {
        return !matches!(s(obj, &["status", "phase"]), "Succeeded" | "Failed");
    }
    true
}

/// What one object charges.
pub fn usage(res: GroupResource<'_>, obj: &Value) -> Resources {
    let mut u = Resources::new();
    if !counts(res, obj) {
        return u;
    }
    u.insert(count_name(res), units(1));
    if let Some(legacy) = legacy_count_name(res) {
        u.insert(legacy.into(), units(1));
    }
    if !res.group.is_empty() {
        return u;
    }
    match res.plural {
        "pods" => {
            for (k, q) in pod_resources(obj, "requests") {
                if k == "cpu" || k == "memory" || k == "ephemeral-storage" {
                    u.insert(k.clone(), q);
                }
                u.insert(format!("requests.{k}"), q);
            }
            for (k, q) in pod_resources(obj, "limits") {
                u.insert(format!("limits.{k}"), q);
            }
        }
        "services" => {
            let ports = items(obj, &["spec", "ports"]);
            match s(obj, &["spec", "type"]) {
                "NodePort" => {
                    u.insert("services.nodeports".into(), units(ports.len() as i64));
                }
                "LoadBalancer" => {
                    let all = obj["spec"]["allocateLoadBalancerNodePorts"] != json!(false);
                    let n = ports
                        .iter()
                        .filter(|p| all || p.get("nodePort").is_some())
                        .count();
                    u.insert("services.nodeports".into(), units(n as i64));
                    u.insert("services.loadbalancers".into(), units(1));
                }
                _ => {}
            }
        }
        "persistentvolumeclaims" => {
            let class = s(obj, &["spec", "storageClassName"]);
            if !class.is_empty() {
                u.insert(
                    format!("{class}.storageclass.storage.k8s.io/persistentvolumeclaims"),
                    units(1),
                );
            }
            if let Some(q) = resources(at(obj, &["spec", "resources", "requests"])).get("storage") {
                u.insert("requests.storage".into(), *q);
                if !class.is_empty() {
                    u.insert(
                        format!("{class}.storageclass.storage.k8s.io/requests.storage"),
                        *q,
                    );
                }
            }
        }
        _ => {}
    }
    u
}

/// A quota's scope requirements: each of `spec.scopes` (operator `Exists`) and each
/// expression of `spec.scopeSelector` (upstream's `GetScopeSelectorsFromQuota`), as
/// (scope, operator, values).
pub fn scope_selectors(quota: &Value) -> Vec<(&str, &str, Vec<&str>)> {
    let mut out: Vec<(&str, &str, Vec<&str>)> = items(quota, &["spec", "scopes"])
        .iter()
        .filter_map(Value::as_str)
        .map(|scope| (scope, "Exists", Vec::new()))
        .collect();
    for e in items(quota, &["spec", "scopeSelector", "matchExpressions"]) {
        let values = items(e, &["values"])
            .iter()
            .filter_map(Value::as_str)
            .collect();
        out.push((s(e, &["scopeName"]), s(e, &["operator"]), values));
    }
    out
}

/// Whether a quota covers `obj`: a quota without scopes covers everything it limits; a
/// scoped quota covers only pods matching every scope requirement (upstream's pod evaluator;
/// the other evaluators match no scope).
pub fn matches_scopes(quota: &Value, res: GroupResource<'_>, obj: &Value) -> bool {
    let selectors = scope_selectors(quota);
    if selectors.is_empty() {
        return true;
    }
    if !res.is_core("pods") {
        return false;
    }
    selectors
        .iter()
        .all(|(scope, op, values)| pod_matches_scope(obj, scope, op, values))
}

fn pod_matches_scope(pod: &Value, scope: &str, op: &str, values: &[&str]) -> bool {
    let terminating = at(pod, &["spec", "activeDeadlineSeconds"])
        .and_then(Value::as_i64)
        .is_some_and(|d| d >= 0);
    match scope {
        "Terminating" => terminating,
        "NotTerminating" => !terminating,
        "BestEffort" => is_best_effort(pod),
        "NotBestEffort" => !is_best_effort(pod),
        "PriorityClass" => {
            // Upstream matches a label selector against {PriorityClass: <name>}: the key is
            // always there, so DoesNotExist never matches.
            let class = s(pod, &["spec", "priorityClassName"]);
            match op {
                "Exists" => !class.is_empty(),
                "In" => values.contains(&class),
                "NotIn" => !values.contains(&class),
                _ => false,
            }
        }
        "CrossNamespacePodAffinity" => uses_cross_namespace_affinity(pod),
        _ => false,
    }
}

/// A pod of the BestEffort QoS class: no container (or init container) requests or limits
/// any cpu or memory.
pub fn is_best_effort(pod: &Value) -> bool {
    let containers = items(pod, &["spec", "containers"])
        .iter()
        .chain(items(pod, &["spec", "initContainers"]));
    let pod_level = at(pod, &["spec", "resources"]);
    !containers
        .map(|c| at(c, &["resources"]))
        .chain(std::iter::once(pod_level))
        .any(|r| {
            ["requests", "limits"].iter().any(|which| {
                resources(r.and_then(|r| r.get(*which)))
                    .iter()
                    .any(|(k, q)| (k == "cpu" || k == "memory") && q.nanos() > 0)
            })
        })
}

/// A pod whose (anti-)affinity terms name other namespaces or select namespaces.
fn uses_cross_namespace_affinity(pod: &Value) -> bool {
    let cross = |term: &Value| {
        !items(term, &["namespaces"]).is_empty()
            || at(term, &["namespaceSelector"]).is_some_and(|v| !v.is_null())
    };
    ["podAffinity", "podAntiAffinity"].iter().any(|kind| {
        let Some(a) = at(pod, &["spec", "affinity", kind]) else {
            return false;
        };
        items(a, &["requiredDuringSchedulingIgnoredDuringExecution"])
            .iter()
            .any(cross)
            || items(a, &["preferredDuringSchedulingIgnoredDuringExecution"])
                .iter()
                .any(|w| at(w, &["podAffinityTerm"]).is_some_and(cross))
    })
}

/// The usage of `objs` (objects of `res`) that `quota` covers.
pub fn total<'v>(
    quota: &Value,
    res: GroupResource<'_>,
    objs: impl IntoIterator<Item = &'v Value>,
) -> Resources {
    let mut sum = Resources::new();
    for obj in objs {
        if !matches_scopes(quota, res, obj) {
            continue;
        }
        for (k, q) in usage(res, obj) {
            add_to(&mut sum, &k, q);
        }
    }
    sum
}

/// `status` of a quota given its hard limits and the usage of the resources in `counted`,
/// counted fresh: `hard` is `spec.hard`, `used` has an entry for every hard name, from the
/// resource that owns it if counted, otherwise as recorded (0 when nothing was).
pub fn status(quota: &Value, counted: &[(GroupResource<'_>, &Resources)]) -> Value {
    let hard = resources(at(quota, &["spec", "hard"]));
    let recorded = resources(at(quota, &["status", "used"]));
    let mut used = serde_json::Map::new();
    for key in hard.keys() {
        let fresh = counted.iter().find(|(res, _)| owns(*res, key));
        let q = match fresh {
            Some((_, u)) => u.get(key).copied().unwrap_or_else(|| units(0)),
            None => recorded.get(key).copied().unwrap_or_else(|| units(0)),
        };
        used.insert(key.clone(), json!(q.canonical()));
    }
    json!({
        "hard": at(quota, &["spec", "hard"]).cloned().unwrap_or(json!({})),
        "used": Value::Object(used),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PODS: GroupResource<'static> = GroupResource::core("pods");

    fn pretty(r: &Resources) -> String {
        r.iter()
            .map(|(k, v)| format!("{k}={}", v.canonical()))
            .collect::<Vec<_>>()
            .join(",")
    }

    #[test]
    fn pod_usage_counts_containers_init_containers_and_overhead() {
        let pod = json!({"spec": {
            "containers": [
                {"name": "a", "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "1"}}},
                {"name": "b", "resources": {"requests": {"cpu": "200m"}}},
            ],
            "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "500m"}}}],
        }});
        let u = usage(PODS, &pod);
        assert_eq!(u["pods"].canonical(), "1");
        assert_eq!(u["count/pods"].canonical(), "1");
        assert_eq!(u["requests.cpu"].canonical(), "500m");
        assert_eq!(u["cpu"].canonical(), "500m");
        assert_eq!(u["requests.memory"].canonical(), "64Mi");
        assert_eq!(u["limits.cpu"].canonical(), "1");
        assert!(!u.contains_key("limits.memory"));
        let done = json!({"spec": {}, "status": {"phase": "Succeeded"}});
        assert!(usage(PODS, &done).is_empty());
    }

    #[test]
    fn service_usage_counts_node_ports_and_balancers() {
        let svc = json!({"spec": {"type": "LoadBalancer", "ports": [{"port": 1}, {"port": 2}]}});
        let u = usage(GroupResource::core("services"), &svc);
        assert_eq!(
            pretty(&u),
            "count/services=1,services=1,services.loadbalancers=1,services.nodeports=2"
        );
        let cm = usage(GroupResource::core("configmaps"), &json!({}));
        assert_eq!(pretty(&cm), "configmaps=1,count/configmaps=1");
        let d = usage(GroupResource::new("apps", "deployments"), &json!({}));
        assert_eq!(pretty(&d), "count/deployments.apps=1");
    }

    #[test]
    fn quota_names_and_owners() {
        assert!(owns(PODS, "requests.cpu"));
        assert!(owns(PODS, "count/pods"));
        assert!(!owns(PODS, "services"));
        let owner = |k| owner_of(k).map(|(g, p)| format!("{g}/{p}"));
        assert_eq!(
            owner("requests.storage").unwrap(),
            "/persistentvolumeclaims"
        );
        assert_eq!(owner("count/deployments.apps").unwrap(), "apps/deployments");
        assert_eq!(owner("secrets").unwrap(), "/secrets");
        assert_eq!(owner("limits.memory").unwrap(), "/pods");
        assert_eq!(owner("hugepages-2Mi").unwrap(), "/pods");
        assert_eq!(owner("no-such-thing"), None);
    }

    #[test]
    fn scopes_select_pods() {
        let best_effort = json!({"spec": {"containers": [{"name": "a"}]}});
        let burstable = json!({"spec": {"activeDeadlineSeconds": 30, "priorityClassName": "high",
            "containers": [{"name": "a", "resources": {"requests": {"cpu": "1"}}}]}});
        let scoped = |scopes: Value| json!({"spec": {"hard": {"pods": "9"}, "scopes": scopes}});
        let q = scoped(json!(["BestEffort"]));
        assert!(matches_scopes(&q, PODS, &best_effort));
        assert!(!matches_scopes(&q, PODS, &burstable));
        let q = scoped(json!(["NotBestEffort", "Terminating"]));
        assert!(matches_scopes(&q, PODS, &burstable));
        assert!(!matches_scopes(&q, PODS, &best_effort));
        let q = scoped(json!(["NotTerminating"]));
        assert!(matches_scopes(&q, PODS, &best_effort));
        assert!(!matches_scopes(&q, PODS, &burstable));
        // Scoped quotas cover pods only.
        assert!(!matches_scopes(
            &q,
            GroupResource::core("services"),
            &json!({})
        ));
        let by_class = |op: &str, values: Value| {
            json!({"spec": {"scopeSelector": {"matchExpressions": [
                {"scopeName": "PriorityClass", "operator": op, "values": values}]}}})
        };
        assert!(matches_scopes(
            &by_class("In", json!(["high"])),
            PODS,
            &burstable
        ));
        assert!(!matches_scopes(
            &by_class("In", json!(["high"])),
            PODS,
            &best_effort
        ));
        assert!(matches_scopes(
            &by_class("NotIn", json!(["high"])),
            PODS,
            &best_effort
        ));
        assert!(matches_scopes(
            &by_class("Exists", json!([])),
            PODS,
            &burstable
        ));
        assert!(!matches_scopes(
            &by_class("DoesNotExist", json!([])),
            PODS,
            &best_effort
        ));
    }

    #[test]
    fn status_sums_covered_objects_for_every_hard_name() {
        let quota = json!({
            "spec": {"hard": {"pods": "10", "requests.cpu": "2", "secrets": "5"}, "scopes": ["NotTerminating"]},
            "status": {"used": {"secrets": "3"}},
        });
        let pod = |cpu: &str, phase: &str, deadline: Option<i64>| {
            json!({"spec": {"activeDeadlineSeconds": deadline,
                "containers": [{"name": "a", "resources": {"requests": {"cpu": cpu}}}]},
                "status": {"phase": phase}})
        };
        let pods = [
            pod("250m", "Running", None),
            pod("500m", "Pending", None),
            // Finished: no longer charged.
            pod("1", "Succeeded", None),
            // Terminating: outside the quota's scope.
            pod("1", "Running", Some(60)),
        ];
        let used = total(&quota, PODS, &pods);
        let status = status(&quota, &[(PODS, &used)]);
        assert_eq!(
            status,
            json!({
                "hard": {"pods": "10", "requests.cpu": "2", "secrets": "5"},
                // Secrets were not counted: as recorded.
                "used": {"pods": "2", "requests.cpu": "750m", "secrets": "3"},
            })
        );
        // Nothing covered: every hard name at 0.
        let none = total(&quota, PODS, &[]);
        assert_eq!(status_used(&quota, &[(PODS, &none)], "pods"), json!("0"));
    }

    fn status_used(quota: &Value, counted: &[(GroupResource<'_>, &Resources)], k: &str) -> Value {
        status(quota, counted)["used"][k].clone()
    }
}
