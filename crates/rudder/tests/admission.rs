//! The admission chain through the real server and kubectl: NamespaceLifecycle,
//! ServiceAccount, Priority, DefaultTolerationSeconds (and its flags),
//! TaintNodesByCondition, LimitRanger and ResourceQuota, with upstream's messages.

use std::path::Path;

use rudder_testkit::RudderServer;
use serde_json::{json, Value};

fn server(extra: &[&str]) -> RudderServer {
    RudderServer::api_only(Path::new(env!("CARGO_BIN_EXE_rudder")), extra)
        .expect("start rudder server")
}

fn create(s: &RudderServer, obj: &Value) -> String {
    s.kubectl_stdin(&["create", "-f", "-"], &obj.to_string())
        .ok()
}

fn refused(s: &RudderServer, obj: &Value) -> String {
    s.kubectl_stdin(&["create", "-f", "-"], &obj.to_string())
        .fails()
}

fn get(s: &RudderServer, args: &[&str]) -> Value {
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", "json"]);
    serde_json::from_str(&s.kubectl(&all).ok()).expect("kubectl get -o json")
}

fn pod(ns: &str, name: &str, spec: Value) -> Value {
    let mut spec = spec;
    if spec.get("containers").is_none() {
        spec.as_object_mut().expect("spec is an object").insert(
            "containers".into(),
            json!([{"name": "c", "image": "busybox"}]),
        );
    }
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": ns}, "spec": spec})
}

#[test]
fn namespace_lifecycle_and_what_every_namespace_holds() {
    let s = server(&[]);
    let err = refused(&s, &pod("nowhere", "p", json!({})));
    assert!(
        err.contains("Error from server (NotFound): error when creating \"STDIN\": namespaces \"nowhere\" not found"),
        "{err}"
    );
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        let err = s.kubectl(&["delete", "namespace", ns]).fails();
        assert!(
            err.contains(&format!(
                "Error from server (Forbidden): namespaces \"{ns}\" is forbidden: this namespace may not be deleted"
            )),
            "{err}"
        );
        // Made at start: the default ServiceAccount.
        let sa = get(&s, &["serviceaccount", "default", "-n", ns]);
        assert_eq!(sa["metadata"]["namespace"], ns);
    }
    // A new namespace gets one at once.
    s.kubectl(&["create", "namespace", "team"]).ok();
    let sa = get(&s, &["serviceaccount", "default", "-n", "team"]);
    assert_eq!(sa["metadata"]["name"], "default");
    // Nothing new in a namespace being deleted (the Status names the object and the cause).
    s.kubectl(&["create", "configmap", "keep", "-n", "team"])
        .ok();
    s.kubectl(&["delete", "namespace", "team", "--wait=false"])
        .ok();
    let answer = s.request(
        "POST",
        "/api/v1/namespaces/team/configmaps",
        "application/json",
        br#"{"metadata":{"name":"late"}}"#,
    );
    assert_eq!(answer.code, 403, "{}", answer.body);
    let status = answer.json();
    assert_eq!(
        status["message"],
        "configmaps \"late\" is forbidden: unable to create new content in namespace team because it is being terminated"
    );
    assert_eq!(
        status["details"]["causes"][0]["reason"],
        "NamespaceTerminating"
    );
    assert_eq!(
        status["details"]["causes"][0]["field"],
        "metadata.namespace"
    );
}

#[test]
fn service_account_defaults_mounts_and_refuses_missing_accounts() {
    let s = server(&[]);
    create(
        &s,
        &pod(
            "default",
            "plain",
            json!({"initContainers": [{"name": "i", "image": "busybox"}],
        "containers": [{"name": "c", "image": "busybox"}]}),
        ),
    );
    let p = get(&s, &["pod", "plain"]);
    assert_eq!(p["spec"]["serviceAccountName"], "default");
    let volume = &p["spec"]["volumes"][0];
    let name = volume["name"].as_str().unwrap_or("");
    assert!(
        name.starts_with("kube-api-access-") && name.len() == 21,
        "{volume}"
    );
    assert_eq!(volume["projected"]["defaultMode"], 420);
    assert_eq!(
        volume["projected"]["sources"],
        json!([
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace",
                "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
        ])
    );
    for list in ["initContainers", "containers"] {
        assert_eq!(
            p["spec"][list][0]["volumeMounts"],
            json!([{"name": name, "readOnly": true,
                    "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}])
        );
    }
    // The pod's choice wins, then the account's.
    create(
        &s,
        &pod(
            "default",
            "nomount",
            json!({"automountServiceAccountToken": false}),
        ),
    );
    assert_eq!(get(&s, &["pod", "nomount"])["spec"].get("volumes"), None);
    create(
        &s,
        &json!({"apiVersion": "v1", "kind": "ServiceAccount",
                "metadata": {"name": "quiet", "namespace": "default"},
                "automountServiceAccountToken": false,
                "imagePullSecrets": [{"name": "regcred"}]}),
    );
    create(
        &s,
        &pod("default", "quiet", json!({"serviceAccountName": "quiet"})),
    );
    let q = get(&s, &["pod", "quiet"]);
    assert_eq!(q["spec"].get("volumes"), None);
    assert_eq!(q["spec"]["imagePullSecrets"], json!([{"name": "regcred"}]));
    let err = refused(
        &s,
        &pod("default", "lost", json!({"serviceAccountName": "missing"})),
    );
    assert!(
        err.contains("Error from server (Forbidden): error when creating \"STDIN\": pods \"lost\" is forbidden: error looking up service account default/missing: serviceaccount \"missing\" not found"),
        "{err}"
    );
}

#[test]
fn priority_classes_decide_pod_priority() {
    let s = server(&[]);
    let classes = s
        .kubectl(&[
            "get",
            "priorityclasses",
            "-o",
            "custom-columns=N:.metadata.name,V:.value",
            "--no-headers",
        ])
        .ok();
    assert!(
        classes.contains("system-cluster-critical   2000000000"),
        "{classes}"
    );
    assert!(
        classes.contains("system-node-critical      2000001000"),
        "{classes}"
    );
    let err = s
        .kubectl(&["delete", "priorityclass", "system-node-critical"])
        .fails();
    assert!(
        err.contains("priorityclasses.scheduling.k8s.io \"system-node-critical\" is forbidden: this is a system priority class and cannot be deleted"),
        "{err}"
    );
    // No class and no default: 0.
    create(&s, &pod("default", "zero", json!({})));
    let zero = get(&s, &["pod", "zero"]);
    assert_eq!(zero["spec"]["priority"], 0);
    assert_eq!(zero["spec"]["preemptionPolicy"], "PreemptLowerPriority");
    create(
        &s,
        &json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                "metadata": {"name": "high"}, "value": 1000, "preemptionPolicy": "Never"}),
    );
    create(
        &s,
        &pod("default", "high", json!({"priorityClassName": "high"})),
    );
    let high = get(&s, &["pod", "high"]);
    assert_eq!(high["spec"]["priority"], 1000);
    assert_eq!(high["spec"]["preemptionPolicy"], "Never");
    create(
        &s,
        &pod(
            "default",
            "node",
            json!({"priorityClassName": "system-node-critical"}),
        ),
    );
    assert_eq!(get(&s, &["pod", "node"])["spec"]["priority"], 2_000_001_000);
    let err = refused(
        &s,
        &pod("default", "nope", json!({"priorityClassName": "nope"})),
    );
    assert!(
        err.contains("pods \"nope\" is forbidden: no PriorityClass with name nope was found"),
        "{err}"
    );
    let err = refused(
        &s,
        &pod(
            "default",
            "set",
            json!({"priorityClassName": "high", "priority": 7}),
        ),
    );
    assert!(
        err.contains("pods \"set\" is forbidden: the integer value of priority (7) must not be provided in pod spec; priority admission controller computed 1000 from the given PriorityClass name"),
        "{err}"
    );
    // A global default class applies to pods that name none; only one may exist.
    create(
        &s,
        &json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                "metadata": {"name": "normal"}, "value": 10, "globalDefault": true}),
    );
    create(&s, &pod("default", "defaulted", json!({})));
    let defaulted = get(&s, &["pod", "defaulted"]);
    assert_eq!(defaulted["spec"]["priorityClassName"], "normal");
    assert_eq!(defaulted["spec"]["priority"], 10);
    let err = refused(
        &s,
        &json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                "metadata": {"name": "other"}, "value": 5, "globalDefault": true}),
    );
    assert!(
        err.contains("priorityclasses.scheduling.k8s.io \"other\" is forbidden: PriorityClass normal is already marked as default. Only one default can exist"),
        "{err}"
    );
}

fn toleration_seconds(p: &Value, key: &str) -> Option<i64> {
    p["spec"]["tolerations"]
        .as_array()?
        .iter()
        .find(|t| t["key"] == key && t["effect"] == "NoExecute")
        .and_then(|t| t["tolerationSeconds"].as_i64())
}

#[test]
fn default_toleration_seconds_come_from_the_flags() {
    let s = server(&[
        "--default-not-ready-toleration-seconds",
        "30",
        "--default-unreachable-toleration-seconds",
        "45",
    ]);
    create(&s, &pod("default", "p", json!({})));
    let p = get(&s, &["pod", "p"]);
    assert_eq!(
        toleration_seconds(&p, "node.kubernetes.io/not-ready"),
        Some(30)
    );
    assert_eq!(
        toleration_seconds(&p, "node.kubernetes.io/unreachable"),
        Some(45)
    );
    // A pod that says how long it tolerates keeps its word; one that tolerates everything
    // gets nothing added.
    create(
        &s,
        &pod(
            "default",
            "own",
            json!({"tolerations": [{"key": "node.kubernetes.io/unreachable",
            "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5}]}),
        ),
    );
    let own = get(&s, &["pod", "own"]);
    assert_eq!(
        toleration_seconds(&own, "node.kubernetes.io/unreachable"),
        Some(5)
    );
    assert_eq!(
        toleration_seconds(&own, "node.kubernetes.io/not-ready"),
        Some(30)
    );
    create(
        &s,
        &pod(
            "default",
            "all",
            json!({"tolerations": [{"operator": "Exists"}]}),
        ),
    );
    assert_eq!(
        get(&s, &["pod", "all"])["spec"]["tolerations"],
        json!([{"operator": "Exists"}])
    );
    // Without the flags: not-ready 300 s as kube-apiserver, unreachable 1 s (fast failover).
    let plain = server(&[]);
    create(&plain, &pod("default", "p", json!({})));
    let p = get(&plain, &["pod", "p"]);
    assert_eq!(
        toleration_seconds(&p, "node.kubernetes.io/not-ready"),
        Some(300)
    );
    assert_eq!(
        toleration_seconds(&p, "node.kubernetes.io/unreachable"),
        Some(1)
    );
    // Nonsense is refused by the command line.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rudder"))
        .args(["server", "--default-not-ready-toleration-seconds", "-1"])
        .output()
        .expect("run rudder");
    assert!(!out.status.success());
}

#[test]
fn new_nodes_are_tainted_not_ready_and_limits_and_quotas_hold() {
    let s = server(&[]);
    create(
        &s,
        &json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"},
                "spec": {"taints": [{"key": "dedicated", "value": "x", "effect": "NoSchedule"}]}}),
    );
    assert_eq!(
        get(&s, &["node", "n1"])["spec"]["taints"],
        json!([{"key": "dedicated", "value": "x", "effect": "NoSchedule"},
               {"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}])
    );

    // LimitRanger: defaults (defaultRequest.memory comes from default, as upstream defaults
    // LimitRanges), then bounds.
    s.kubectl(&["create", "namespace", "lim"]).ok();
    create(
        &s,
        &json!({"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "bounds", "namespace": "lim"},
                "spec": {"limits": [
                    {"type": "Container", "default": {"cpu": "500m", "memory": "128Mi"},
                     "defaultRequest": {"cpu": "100m"}, "min": {"cpu": "50m"}, "max": {"cpu": "1"}},
                    {"type": "PersistentVolumeClaim", "max": {"storage": "1Gi"}}]}}),
    );
    create(&s, &pod("lim", "defaults", json!({})));
    let p = get(&s, &["pod", "defaults", "-n", "lim"]);
    assert_eq!(
        p["spec"]["containers"][0]["resources"],
        json!({"limits": {"cpu": "500m", "memory": "128Mi"}, "requests": {"cpu": "100m", "memory": "128Mi"}})
    );
    assert_eq!(
        p["metadata"]["annotations"]["kubernetes.io/limit-ranger"],
        "LimitRanger plugin set: cpu, memory request for container c; cpu, memory limit for container c"
    );
    let err = refused(
        &s,
        &pod(
            "lim",
            "big",
            json!({"containers": [{"name": "c", "image": "busybox",
            "resources": {"limits": {"cpu": "2"}}}]}),
        ),
    );
    assert!(
        err.contains(
            "pods \"big\" is forbidden: maximum cpu usage per Container is 1, but limit is 2"
        ),
        "{err}"
    );
    let claim = |size: &str| {
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
               "metadata": {"name": format!("c{}", size.to_lowercase()), "namespace": "lim"},
               "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}})
    };
    create(&s, &claim("1Gi"));
    let err = refused(&s, &claim("2Gi"));
    assert!(
        err.contains("persistentvolumeclaims \"c2gi\" is forbidden: maximum storage usage per PersistentVolumeClaim is 1Gi, but request is 2Gi"),
        "{err}"
    );

    // ResourceQuota: usage recorded, 403 beyond it, usage given back on delete.
    s.kubectl(&["create", "namespace", "q"]).ok();
    s.kubectl(&["create", "configmap", "before", "-n", "q"])
        .ok();
    create(
        &s,
        &json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "small", "namespace": "q"},
                "spec": {"hard": {"pods": "2", "configmaps": "3", "services.nodeports": "1"}}}),
    );
    let quota = get(&s, &["resourcequota", "small", "-n", "q"]);
    assert_eq!(
        quota["status"]["hard"],
        json!({"pods": "2", "configmaps": "3", "services.nodeports": "1"})
    );
    // What the namespace held before the quota counts.
    assert_eq!(
        quota["status"]["used"],
        json!({"pods": "0", "configmaps": "1", "services.nodeports": "0"})
    );
    create(&s, &pod("q", "p1", json!({})));
    // Dry run is checked, not charged.
    s.kubectl_stdin(
        &["create", "--dry-run=server", "-f", "-"],
        &pod("q", "dry", json!({})).to_string(),
    )
    .ok();
    create(&s, &pod("q", "p2", json!({})));
    let err = refused(&s, &pod("q", "p3", json!({})));
    assert!(
        err.contains("Error from server (Forbidden): error when creating \"STDIN\": pods \"p3\" is forbidden: exceeded quota: small, requested: pods=1, used: pods=2, limited: pods=2"),
        "{err}"
    );
    assert_eq!(
        get(&s, &["resourcequota", "small", "-n", "q"])["status"]["used"]["pods"],
        "2"
    );
    s.kubectl(&["delete", "pod", "p1", "-n", "q"]).ok();
    assert_eq!(
        get(&s, &["resourcequota", "small", "-n", "q"])["status"]["used"]["pods"],
        "1"
    );
    let described = s.kubectl(&["describe", "quota", "small", "-n", "q"]).ok();
    assert!(
        described
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["pods", "1", "2"]),
        "{described}"
    );
    create(&s, &pod("q", "p3", json!({})));
    let err = s
        .kubectl(&[
            "create",
            "service",
            "nodeport",
            "np",
            "--tcp=80:80,81:81",
            "-n",
            "q",
        ])
        .fails();
    assert!(
        err.contains("services \"np\" is forbidden: exceeded quota: small, requested: services.nodeports=2, used: services.nodeports=0, limited: services.nodeports=1"),
        "{err}"
    );
    // A quota on cpu needs every container to say what it requests.
    create(
        &s,
        &json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "cpu", "namespace": "q"},
                "spec": {"hard": {"requests.cpu": "1"}}}),
    );
    s.kubectl(&["delete", "pod", "p2", "-n", "q"]).ok();
    let err = refused(&s, &pod("q", "p4", json!({})));
    assert!(
        err.contains(
            "pods \"p4\" is forbidden: failed quota: cpu: must specify requests.cpu for: c"
        ),
        "{err}"
    );
    let err = refused(
        &s,
        &pod(
            "q",
            "p5",
            json!({"containers": [{"name": "c", "image": "busybox",
            "resources": {"requests": {"cpu": "1500m"}}}]}),
        ),
    );
    assert!(
        err.contains("pods \"p5\" is forbidden: exceeded quota: cpu, requested: requests.cpu=1500m, used: requests.cpu=0, limited: requests.cpu=1"),
        "{err}"
    );
    create(
        &s,
        &pod(
            "q",
            "p6",
            json!({"containers": [{"name": "c", "image": "busybox",
            "resources": {"requests": {"cpu": "400m"}}}]}),
        ),
    );
    assert_eq!(
        get(&s, &["resourcequota", "cpu", "-n", "q"])["status"]["used"],
        json!({"requests.cpu": "400m"})
    );
}

#[test]
fn quota_scopes_count_only_the_pods_they_cover() {
    let s = server(&[]);
    s.kubectl(&["create", "namespace", "sc"]).ok();
    // `kubectl create quota --scopes`: BestEffort pods only, and NotBestEffort pods only.
    s.kubectl(&[
        "create",
        "quota",
        "be",
        "-n",
        "sc",
        "--hard=pods=1",
        "--scopes=BestEffort",
    ])
    .ok();
    s.kubectl(&[
        "create",
        "quota",
        "nbe",
        "-n",
        "sc",
        "--hard=pods=5,requests.cpu=1",
        "--scopes=NotBestEffort",
    ])
    .ok();
    // A scopeSelector over priority classes: only pods of class `high` count.
    create(
        &s,
        &json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                "metadata": {"name": "high"}, "value": 1000}),
    );
    create(
        &s,
        &json!({"apiVersion": "v1", "kind": "ResourceQuota",
                "metadata": {"name": "high", "namespace": "sc"},
                "spec": {"hard": {"pods": "1"},
                         "scopeSelector": {"matchExpressions": [
                             {"scopeName": "PriorityClass", "operator": "In", "values": ["high"]}]}}}),
    );
    let used = |name: &str| get(&s, &["resourcequota", name, "-n", "sc"])["status"]["used"].clone();
    // A BestEffort pod counts in `be` only.
    create(&s, &pod("sc", "be1", json!({})));
    assert_eq!(used("be"), json!({"pods": "1"}));
    assert_eq!(used("nbe"), json!({"pods": "0", "requests.cpu": "0"}));
    assert_eq!(used("high"), json!({"pods": "0"}));
    // A second one exceeds `be`.
    let err = refused(&s, &pod("sc", "be2", json!({})));
    assert!(
        err.contains("pods \"be2\" is forbidden: exceeded quota: be, requested: pods=1, used: pods=1, limited: pods=1"),
        "{err}"
    );
    // A pod with requests is NotBestEffort: `nbe` counts it, `be` does not.
    let burstable = json!({"containers": [{"name": "c", "image": "busybox",
        "resources": {"requests": {"cpu": "200m"}}}]});
    create(&s, &pod("sc", "nbe1", burstable.clone()));
    assert_eq!(used("be"), json!({"pods": "1"}));
    assert_eq!(used("nbe"), json!({"pods": "1", "requests.cpu": "200m"}));
    // Priority class `high`: counted by `high` (and `nbe`, it requests cpu); a second one is
    // refused by `high`.
    let mut high = burstable.clone();
    high["priorityClassName"] = json!("high");
    create(&s, &pod("sc", "h1", high.clone()));
    assert_eq!(used("high"), json!({"pods": "1"}));
    assert_eq!(used("nbe"), json!({"pods": "2", "requests.cpu": "400m"}));
    let err = refused(&s, &pod("sc", "h2", high));
    assert!(
        err.contains("pods \"h2\" is forbidden: exceeded quota: high, requested: pods=1, used: pods=1, limited: pods=1"),
        "{err}"
    );
    // Deleting a covered pod gives its share back to the quotas covering it only.
    s.kubectl(&["delete", "pod", "be1", "-n", "sc"]).ok();
    assert_eq!(used("be"), json!({"pods": "0"}));
    assert_eq!(used("nbe"), json!({"pods": "2", "requests.cpu": "400m"}));
    // A quota made after the pods counts only those it covers.
    s.kubectl(&[
        "create",
        "quota",
        "later",
        "-n",
        "sc",
        "--hard=pods=10",
        "--scopes=NotTerminating",
    ])
    .ok();
    assert_eq!(used("later"), json!({"pods": "2"}));

    // Validation as upstream: scopes only for what they can track.
    let err = s
        .kubectl(&[
            "create",
            "quota",
            "bad",
            "-n",
            "sc",
            "--hard=services=1",
            "--scopes=BestEffort",
        ])
        .fails();
    assert!(
        err.contains("spec.scopes: Invalid value: []core.ResourceQuotaScope{\"BestEffort\"}: unsupported scope applied to resource"),
        "{err}"
    );
    let err = s
        .kubectl(&[
            "create",
            "quota",
            "bad",
            "-n",
            "sc",
            "--hard=requests.cpu=1",
            "--scopes=BestEffort",
        ])
        .fails();
    assert!(
        err.contains("unsupported scope applied to resource"),
        "{err}"
    );
    let err = refused(
        &s,
        &json!({"apiVersion": "v1", "kind": "ResourceQuota",
                "metadata": {"name": "bad", "namespace": "sc"},
                "spec": {"hard": {"pods": "1"},
                         "scopeSelector": {"matchExpressions": [
                             {"scopeName": "BestEffort", "operator": "In", "values": ["x"]},
                             {"scopeName": "PriorityClass", "operator": "In"}]}}}),
    );
    assert!(
        err.contains("spec.scopeSelector.matchExpressions.operator: Invalid value: \"In\": must be 'Exist' when scope is any of ResourceQuotaScopeTerminating, ResourceQuotaScopeNotTerminating, ResourceQuotaScopeBestEffort, ResourceQuotaScopeNotBestEffort or ResourceQuotaScopeCrossNamespacePodAffinity"),
        "{err}"
    );
    assert!(
        err.contains("spec.scopeSelector.matchExpressions.values: Required value: must be at least one value when `operator` is 'In' or 'NotIn' for scope selector"),
        "{err}"
    );
}
