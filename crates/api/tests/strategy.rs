//! Strategies: every kind gets upstream's defaults, and invalid objects get upstream's field
//! paths and messages (the text kubectl prints after "is invalid:").

use rudder_api::strategy::{built_in, parse_schedule, Strategy};
use rudder_api::validation::{parse_quantity, FieldError, Quantity};
use serde_json::{json, Value};

const UID: &str = "6f1c3c8e-3a51-4c5e-9d0c-2f3b7d1e9a10";

fn strategy(group: &str, kind: &str) -> impl Strategy {
    built_in(group, kind).unwrap_or_else(|| panic!("a strategy for {group}/{kind}"))
}

#[test]
fn every_stored_row_of_the_catalogue_has_a_strategy() {
    let missing: Vec<String> = rudder_api::catalogue::RESOURCES
        .iter()
        .filter(|r| r.storage.is_some() && built_in(r.group, r.kind).is_none())
        .map(|r| format!("{}/{}", r.group, r.kind))
        .collect();
    assert!(missing.is_empty(), "no strategy for {missing:?}");
    let unused: Vec<String> = rudder_api::strategy::BUILT_IN
        .iter()
        .map(|b| b.group_kind())
        .filter(|(g, k)| {
            !rudder_api::catalogue::RESOURCES
                .iter()
                .any(|r| r.group == *g && r.kind == *k)
        })
        .map(|(g, k)| format!("{g}/{k}"))
        .collect();
    assert!(
        unused.is_empty(),
        "strategies for kinds not served: {unused:?}"
    );
}

fn prepare(group: &str, kind: &str, obj: &mut Value, old: Option<&Value>) {
    strategy(group, kind).prepare(obj, old)
}

fn validate(group: &str, kind: &str, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    strategy(group, kind).validate(obj, old)
}

fn grace_period(group: &str, kind: &str, obj: &Value, requested: Option<i64>) -> i64 {
    strategy(group, kind).grace_period(obj, requested)
}

fn may_go_when_finalized(group: &str, kind: &str, obj: &Value) -> bool {
    strategy(group, kind).may_go_when_finalized(obj)
}

/// Runs prepare as the registry does on create.
fn create(group: &str, kind: &str, mut obj: Value) -> Value {
    prepare(group, kind, &mut obj, None);
    obj
}

/// Runs prepare as the registry does on update.
fn update(group: &str, kind: &str, mut obj: Value, old: &Value) -> Value {
    prepare(group, kind, &mut obj, Some(old));
    obj
}

/// `field: message` lines, as kubectl shows them.
fn lines(errs: &[FieldError]) -> Vec<String> {
    errs.iter()
        .map(|e| format!("{}: {}", e.field, e.message))
        .collect()
}

fn errors(group: &str, kind: &str, obj: &Value, old: Option<&Value>) -> Vec<String> {
    lines(&validate(group, kind, obj, old))
}

/// Defaults then validation of a new object.
fn create_errors(group: &str, kind: &str, obj: Value) -> Vec<String> {
    let obj = create(group, kind, obj);
    errors(group, kind, &obj, None)
}

fn meta(name: &str) -> Value {
    json!({"name": name, "namespace": "default", "uid": UID})
}

// ---- pods ----------------------------------------------------------------------------------

#[test]
fn strategy_pod_gets_upstream_defaults() {
    // The body `kubectl run p --image=nginx` sends.
    let pod = json!({
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {"name": "p", "namespace": "default", "uid": UID, "creationTimestamp": null, "labels": {"run": "p"}},
        "spec": {
            "containers": [{"name": "p", "image": "nginx", "resources": {}}],
            "dnsPolicy": "ClusterFirst",
            "restartPolicy": "Always"
        },
        "status": {}
    });
    let got = create("", "Pod", pod);
    let want = json!({
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {"name": "p", "namespace": "default", "uid": UID, "creationTimestamp": null, "labels": {"run": "p"}},
        "spec": {
            "containers": [{
                "name": "p",
                "image": "nginx",
                "resources": {},
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File",
                "imagePullPolicy": "Always"
            }],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "serviceAccountName": "default",
            "serviceAccount": "default",
            "securityContext": {},
            "schedulerName": "default-scheduler",
            "priority": 0,
            "enableServiceLinks": true,
            "preemptionPolicy": "PreemptLowerPriority"
        },
        "status": {"phase": "Pending", "qosClass": "BestEffort"}
    });
    assert_eq!(got, want);
    assert!(errors("", "Pod", &got, None).is_empty());
    // Defaulting is idempotent.
    assert_eq!(create("", "Pod", got.clone()), got);
}

#[test]
fn strategy_pod_container_and_volume_defaults() {
    let pod = json!({
        "metadata": meta("p"),
        "spec": {
            "containers": [{
                "name": "app",
                "image": "registry.local:5000/app:1.2",
                "ports": [{"containerPort": 8080}],
                "env": [{"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
                "resources": {"limits": {"cpu": "0.5", "memory": "1024Mi"}},
                "livenessProbe": {"httpGet": {"port": 8080}},
                "readinessProbe": {"tcpSocket": {"port": "http"}, "periodSeconds": 5}
            }],
            "initContainers": [{"name": "init", "image": "busybox@sha256:0123"}],
            "volumes": [
                {"name": "scratch"},
                {"name": "cfg", "configMap": {"name": "cfg"}},
                {"name": "sec", "secret": {"secretName": "sec"}},
                {"name": "host", "hostPath": {"path": "/var/log"}},
                {"name": "cache", "emptyDir": {"sizeLimit": "1024Mi"}}
            ]
        }
    });
    let got = create("", "Pod", pod);
    let c = &got["spec"]["containers"][0];
    assert_eq!(c["imagePullPolicy"], "IfNotPresent");
    assert_eq!(c["ports"][0]["protocol"], "TCP");
    assert_eq!(c["env"][0]["valueFrom"]["fieldRef"]["apiVersion"], "v1");
    // Limits become requests on pods, in canonical form.
    assert_eq!(
        c["resources"],
        json!({"limits": {"cpu": "500m", "memory": "1Gi"}, "requests": {"cpu": "500m", "memory": "1Gi"}})
    );
    assert_eq!(
        c["livenessProbe"],
        json!({"httpGet": {"port": 8080, "path": "/", "scheme": "HTTP"}, "timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3})
    );
    assert_eq!(c["readinessProbe"]["periodSeconds"], 5);
    assert_eq!(
        got["spec"]["initContainers"][0]["imagePullPolicy"],
        "IfNotPresent"
    );
    let v = &got["spec"]["volumes"];
    assert_eq!(v[0], json!({"name": "scratch", "emptyDir": {}}));
    assert_eq!(v[1]["configMap"]["defaultMode"], 420);
    assert_eq!(v[2]["secret"]["defaultMode"], 420);
    assert_eq!(v[3]["hostPath"]["type"], "");
    assert_eq!(v[4]["emptyDir"]["sizeLimit"], "1Gi");
    // The init container has no limits, so the pod is not Guaranteed (as upstream).
    assert_eq!(got["status"]["qosClass"], "Burstable");
    assert!(
        errors("", "Pod", &got, None).is_empty(),
        "{:?}",
        errors("", "Pod", &got, None)
    );
}

#[test]
fn strategy_pod_qos_classes() {
    let qos = |resources: Value| {
        let pod = json!({"metadata": meta("p"), "spec": {"containers": [{"name": "a", "image": "x", "resources": resources}]}});
        create("", "Pod", pod)["status"]["qosClass"].clone()
    };
    assert_eq!(qos(json!({})), "BestEffort");
    assert_eq!(qos(json!({"requests": {"cpu": "100m"}})), "Burstable");
    assert_eq!(
        qos(json!({"limits": {"cpu": "1", "memory": "1Gi"}})),
        "Guaranteed"
    );
    assert_eq!(
        qos(json!({"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m"}})),
        "Burstable"
    );
}

#[test]
fn strategy_pod_admission_respects_what_is_set() {
    let pod = json!({
        "metadata": meta("p"),
        "spec": {
            "serviceAccountName": "builder",
            "priorityClassName": "system-node-critical",
            "tolerations": [{"operator": "Exists"}],
            "containers": [{"name": "a", "image": "x"}],
            "schedulingGates": [{"name": "example.com/wait"}]
        }
    });
    let got = create("", "Pod", pod);
    assert_eq!(got["spec"]["serviceAccount"], "builder");
    assert_eq!(got["spec"]["priority"], 2_000_001_000);
    assert_eq!(got["spec"]["tolerations"], json!([{"operator": "Exists"}]));
    assert_eq!(got["status"]["conditions"][0]["reason"], "SchedulingGated");
}

fn pod_with(container: Value) -> Value {
    json!({"metadata": meta("p"), "spec": {"containers": [container]}})
}

#[test]
fn strategy_pod_validation_messages() {
    assert_eq!(
        create_errors(
            "",
            "Pod",
            json!({"metadata": meta("p"), "spec": {"containers": []}})
        ),
        ["spec.containers: Required value"]
    );
    assert_eq!(
        create_errors("", "Pod", pod_with(json!({"name": "web"}))),
        ["spec.containers[0].image: Required value"]
    );
    assert_eq!(
        create_errors(
            "",
            "Pod",
            json!({"metadata": meta("p"), "spec": {"containers": [
                {"name": "web", "image": "nginx"},
                {"name": "web", "image": "nginx"}
            ]}})
        ),
        ["spec.containers[1].name: Duplicate value: \"web\""]
    );
    assert_eq!(
        create_errors("", "Pod", pod_with(json!({"name": "Web_1", "image": "nginx"}))),
        ["spec.containers[0].name: Invalid value: \"Web_1\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"]
    );
    assert_eq!(
        create_errors(
            "",
            "Pod",
            pod_with(json!({"name": "web", "image": "nginx", "ports": [
                {"containerPort": 70000},
                {"containerPort": 80, "name": "HTTP", "protocol": "tcp"},
                {"name": "http"}
            ]}))
        ),
        [
            "spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
            "spec.containers[0].ports[1].name: Invalid value: \"HTTP\": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)",
            "spec.containers[0].ports[1].name: Invalid value: \"HTTP\": must contain at least one letter (a-z)",
            "spec.containers[0].ports[1].protocol: Unsupported value: \"tcp\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
            "spec.containers[0].ports[2].containerPort: Required value",
        ]
    );
    assert_eq!(
        create_errors(
            "",
            "Pod",
            pod_with(json!({"name": "web", "image": "nginx",
                "livenessProbe": {"periodSeconds": 5},
                "readinessProbe": {"exec": {"command": ["true"]}, "tcpSocket": {"port": 80}},
                "startupProbe": {"httpGet": {"port": 0}, "successThreshold": 2}
            }))
        ),
        [
            "spec.containers[0].livenessProbe: Required value: must specify a handler type",
            "spec.containers[0].readinessProbe.tcpSocket: Forbidden: may not specify more than 1 handler type",
            "spec.containers[0].startupProbe.httpGet.port: Invalid value: 0: must be between 1 and 65535, inclusive",
            "spec.containers[0].startupProbe.successThreshold: Invalid value: 2: must be 1",
        ]
    );
    assert_eq!(
        create_errors(
            "",
            "Pod",
            pod_with(json!({"name": "web", "image": "nginx",
                "resources": {"requests": {"cpu": "2", "memory": "lots"}, "limits": {"cpu": "1"}}
            }))
        ),
        [
            "spec.containers[0].resources.requests: Invalid value: \"2\": must be less than or equal to cpu limit of 1",
            "spec.containers[0].resources.requests[memory]: Invalid value: \"lots\": quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
        ]
    );
    assert_eq!(
        create_errors(
            "",
            "Pod",
            pod_with(
                json!({"name": "web", "image": "nginx", "volumeMounts": [{"name": "data", "mountPath": "/data"}]})
            )
        ),
        ["spec.containers[0].volumeMounts[0].name: Not found: \"data\""]
    );
    assert_eq!(
        create_errors(
            "",
            "Pod",
            json!({"metadata": meta("p"), "spec": {"restartPolicy": "Sometimes", "containers": [{"name": "a", "image": "x"}]}})
        ),
        ["spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\""]
    );
    assert_eq!(
        create_errors(
            "",
            "Pod",
            json!({"metadata": meta("p"), "spec": {
                "containers": [{"name": "a", "image": "x"}],
                "volumes": [{"name": "v", "emptyDir": {}, "hostPath": {"path": "/tmp"}}]
            }})
        ),
        ["spec.volumes[0].hostPath: Forbidden: may not specify more than 1 volume type"]
    );
}

#[test]
fn strategy_pod_updates() {
    // (The tolerations admission adds to every pod, given here.)
    let mut pod = pod_with(json!({"name": "web", "image": "nginx:1.25"}));
    pod["spec"]["tolerations"] = json!([{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}]);
    let old = create("", "Pod", pod);
    // The image may change.
    let mut new = old.clone();
    new["spec"]["containers"][0]["image"] = json!("nginx:1.27");
    let new = update("", "Pod", new, &old);
    assert!(errors("", "Pod", &new, Some(&old)).is_empty());
    // Anything else may not.
    let mut new = old.clone();
    new["spec"]["restartPolicy"] = json!("Never");
    let new = update("", "Pod", new, &old);
    let errs = errors("", "Pod", &new, Some(&old));
    assert_eq!(errs.len(), 1);
    assert!(errs[0].starts_with("spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)\n"), "{}", errs[0]);
    assert!(errs[0].contains("restartPolicy"));
    // Tolerations may only be added.
    let mut new = old.clone();
    new["spec"]["tolerations"]
        .as_array_mut()
        .unwrap()
        .push(json!({"key": "k", "operator": "Exists", "effect": "NoSchedule"}));
    assert!(errors("", "Pod", &update("", "Pod", new, &old), Some(&old)).is_empty());
    let mut new = old.clone();
    new["spec"]["tolerations"] = json!([]);
    assert_eq!(
        errors("", "Pod", &update("", "Pod", new, &old), Some(&old)),
        ["spec.tolerations: Forbidden: existing toleration can not be modified except its tolerationSeconds"]
    );
    // Containers may not come or go.
    let mut new = old.clone();
    new["spec"]["containers"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "side", "image": "x"}));
    assert_eq!(
        errors("", "Pod", &update("", "Pod", new, &old), Some(&old)),
        ["spec.containers: Forbidden: pod updates may not add or remove containers"]
    );
}

// ---- apps ----------------------------------------------------------------------------------

/// The body of `kubectl create deployment web --image=nginx` (kubectl 1.31).
fn kubectl_deployment() -> Value {
    json!({
        "kind": "Deployment",
        "apiVersion": "apps/v1",
        "metadata": {"name": "web", "creationTimestamp": null, "labels": {"app": "web"}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"creationTimestamp": null, "labels": {"app": "web"}},
                "spec": {"containers": [{"name": "nginx", "image": "nginx", "resources": {}}]}
            },
            "strategy": {}
        },
        "status": {}
    })
}

#[test]
fn strategy_deployment_from_kubectl_create_gets_upstream_defaults() {
    let got = create("apps", "Deployment", kubectl_deployment());
    let want = json!({
        "kind": "Deployment",
        "apiVersion": "apps/v1",
        "metadata": {"name": "web", "creationTimestamp": null, "labels": {"app": "web"}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"creationTimestamp": null, "labels": {"app": "web"}},
                "spec": {
                    "containers": [{
                        "name": "nginx",
                        "image": "nginx",
                        "resources": {},
                        "terminationMessagePath": "/dev/termination-log",
                        "terminationMessagePolicy": "File",
                        "imagePullPolicy": "Always"
                    }],
                    "restartPolicy": "Always",
                    "terminationGracePeriodSeconds": 30,
                    "dnsPolicy": "ClusterFirst",
                    "securityContext": {},
                    "schedulerName": "default-scheduler"
                }
            },
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}},
            "revisionHistoryLimit": 10,
            "progressDeadlineSeconds": 600
        },
        "status": {}
    });
    assert_eq!(got, want);
    assert!(errors("apps", "Deployment", &got, None).is_empty());
    assert_eq!(create("apps", "Deployment", got.clone()), got);
}

#[test]
fn strategy_deployment_validation_messages() {
    let mut d = kubectl_deployment();
    d["spec"]["template"]["spec"]["containers"][0]
        .as_object_mut()
        .unwrap()
        .remove("image");
    assert_eq!(
        create_errors("apps", "Deployment", d),
        ["spec.template.spec.containers[0].image: Required value"]
    );
    let mut d = kubectl_deployment();
    d["spec"]["replicas"] = json!(-1);
    assert_eq!(
        create_errors("apps", "Deployment", d),
        ["spec.replicas: Invalid value: -1: must be greater than or equal to 0"]
    );
    let mut d = kubectl_deployment();
    d["spec"]["selector"] = json!({"matchLabels": {"app": "other"}});
    assert_eq!(
        create_errors("apps", "Deployment", d),
        ["spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"web\"}: `selector` does not match template `labels`"]
    );
    let mut d = kubectl_deployment();
    d["spec"].as_object_mut().unwrap().remove("selector");
    assert_eq!(
        create_errors("apps", "Deployment", d),
        [
            "spec.selector: Required value",
            "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"web\"}: `selector` does not match template `labels`",
        ]
    );
    let mut d = kubectl_deployment();
    d["spec"]["selector"] = json!({});
    assert_eq!(
        create_errors("apps", "Deployment", d),
        ["spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for deployment"]
    );
    let mut d = kubectl_deployment();
    d["spec"]["strategy"] =
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "0%"}});
    assert_eq!(
        create_errors("apps", "Deployment", d),
        ["spec.strategy.rollingUpdate.maxUnavailable: Invalid value: 0: may not be 0 when `maxSurge` is 0"]
    );
    let mut d = kubectl_deployment();
    d["spec"]["template"]["spec"]["restartPolicy"] = json!("Never");
    assert_eq!(
        create_errors("apps", "Deployment", d),
        ["spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\""]
    );
}

#[test]
fn strategy_deployment_selector_is_immutable() {
    let old = create("apps", "Deployment", kubectl_deployment());
    let mut new = old.clone();
    new["spec"]["selector"]["matchLabels"]["tier"] = json!("front");
    new["spec"]["template"]["metadata"]["labels"]["tier"] = json!("front");
    let new = update("apps", "Deployment", new, &old);
    assert_eq!(
        errors("apps", "Deployment", &new, Some(&old)),
        ["spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"web\", \"tier\":\"front\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable"]
    );
    // Scaling and a new image are fine.
    let mut new = old.clone();
    new["spec"]["replicas"] = json!(3);
    new["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:1.27");
    let new = update("apps", "Deployment", new, &old);
    assert!(errors("apps", "Deployment", &new, Some(&old)).is_empty());
    // The pull policy defaulted for `nginx` stays: defaults only fill what is unset.
    assert_eq!(
        new["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"],
        "Always"
    );
}

fn workload(kind_extra: Value) -> Value {
    let mut w = json!({
        "metadata": meta("w"),
        "spec": {
            "selector": {"matchLabels": {"app": "w"}},
            "template": {
                "metadata": {"labels": {"app": "w"}},
                "spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]}
            }
        }
    });
    if let Some(extra) = kind_extra.as_object() {
        for (k, v) in extra {
            w["spec"][k] = v.clone();
        }
    }
    w
}

#[test]
fn strategy_replica_set_defaults_and_validation() {
    let got = create("apps", "ReplicaSet", workload(json!({})));
    assert_eq!(got["spec"]["replicas"], 1);
    assert_eq!(got["status"], json!({"replicas": 0}));
    assert_eq!(
        got["spec"]["template"]["metadata"]["creationTimestamp"],
        Value::Null
    );
    assert!(got["spec"]["template"]["metadata"]
        .as_object()
        .unwrap()
        .contains_key("creationTimestamp"));
    assert!(errors("apps", "ReplicaSet", &got, None).is_empty());
    let mut new = got.clone();
    new["spec"]["selector"] =
        json!({"matchExpressions": [{"key": "app", "operator": "In", "values": ["w"]}]});
    assert_eq!(
        errors("apps", "ReplicaSet", &update("apps", "ReplicaSet", new, &got), Some(&got)),
        ["spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), MatchExpressions:[]v1.LabelSelectorRequirement{v1.LabelSelectorRequirement{Key:\"app\", Operator:\"In\", Values:[]string{\"w\"}}}}: field is immutable"]
    );
}

#[test]
fn strategy_stateful_set_defaults_and_updates() {
    let sts = workload(json!({
        "serviceName": "w",
        "volumeClaimTemplates": [{
            "metadata": {"name": "data"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
        }]
    }));
    let got = create("apps", "StatefulSet", sts);
    let spec = &got["spec"];
    assert_eq!(spec["podManagementPolicy"], "OrderedReady");
    assert_eq!(
        spec["updateStrategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
    );
    assert_eq!(spec["revisionHistoryLimit"], 10);
    assert_eq!(spec["replicas"], 1);
    assert_eq!(
        spec["persistentVolumeClaimRetentionPolicy"],
        json!({"whenDeleted": "Retain", "whenScaled": "Retain"})
    );
    assert_eq!(
        spec["volumeClaimTemplates"][0],
        json!({
            "metadata": {"name": "data", "creationTimestamp": null},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}, "volumeMode": "Filesystem"},
            "status": {"phase": "Pending"}
        })
    );
    assert_eq!(
        got["status"],
        json!({"replicas": 0, "availableReplicas": 0})
    );
    assert!(errors("apps", "StatefulSet", &got, None).is_empty());
    // replicas, template and update strategy may change; the rest may not.
    let mut new = got.clone();
    new["spec"]["replicas"] = json!(3);
    new["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:1.28");
    assert!(errors(
        "apps",
        "StatefulSet",
        &update("apps", "StatefulSet", new, &got),
        Some(&got)
    )
    .is_empty());
    let mut new = got.clone();
    new["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] =
        json!("2Gi");
    assert_eq!(
        errors("apps", "StatefulSet", &update("apps", "StatefulSet", new, &got), Some(&got)),
        ["spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"]
    );
    let mut bad = workload(json!({"podManagementPolicy": "Sometimes"}));
    bad["spec"]["replicas"] = json!(-2);
    assert_eq!(
        create_errors("apps", "StatefulSet", bad),
        [
            "spec.podManagementPolicy: Invalid value: \"Sometimes\": must be 'OrderedReady' or 'Parallel'",
            "spec.replicas: Invalid value: -2: must be greater than or equal to 0",
        ]
    );
}

#[test]
fn strategy_daemon_set_defaults_and_validation() {
    let got = create("apps", "DaemonSet", workload(json!({})));
    assert_eq!(
        got["spec"]["updateStrategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}})
    );
    assert_eq!(got["spec"]["revisionHistoryLimit"], 10);
    assert_eq!(
        got["metadata"]["annotations"]["deprecated.daemonset.template.generation"],
        "1"
    );
    assert_eq!(
        got["status"],
        json!({"currentNumberScheduled": 0, "numberMisscheduled": 0, "desiredNumberScheduled": 0, "numberReady": 0})
    );
    assert!(errors("apps", "DaemonSet", &got, None).is_empty());
    let mut new = got.clone();
    new["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:1.28");
    let new = update("apps", "DaemonSet", new, &got);
    assert_eq!(
        new["metadata"]["annotations"]["deprecated.daemonset.template.generation"],
        "2"
    );
    let bad = workload(
        json!({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 0}}}),
    );
    assert_eq!(
        create_errors("apps", "DaemonSet", bad),
        ["spec.updateStrategy.rollingUpdate.maxUnavailable: Required value: cannot be 0 when maxSurge is 0"]
    );
}

// ---- batch ---------------------------------------------------------------------------------

/// The body of `kubectl create job j --image=busybox` (kubectl 1.31), with the uid the
/// registry assigns.
fn kubectl_job() -> Value {
    json!({
        "kind": "Job",
        "apiVersion": "batch/v1",
        "metadata": {"name": "j", "namespace": "default", "uid": UID, "creationTimestamp": null},
        "spec": {
            "template": {
                "metadata": {"creationTimestamp": null},
                "spec": {"containers": [{"name": "j", "image": "busybox", "resources": {}}], "restartPolicy": "Never"}
            }
        },
        "status": {}
    })
}

#[test]
fn strategy_job_gets_upstream_defaults_and_selector() {
    let got = create("batch", "Job", kubectl_job());
    let spec = &got["spec"];
    for (k, v) in [
        ("parallelism", json!(1)),
        ("completions", json!(1)),
        ("backoffLimit", json!(6)),
        ("completionMode", json!("NonIndexed")),
        ("suspend", json!(false)),
        ("podReplacementPolicy", json!("TerminatingOrFailed")),
        ("manualSelector", json!(false)),
    ] {
        assert_eq!(spec[k], v, "{k}");
    }
    assert_eq!(
        spec["selector"],
        json!({"matchLabels": {"batch.kubernetes.io/controller-uid": UID}})
    );
    assert_eq!(
        spec["template"]["metadata"]["labels"],
        json!({
            "batch.kubernetes.io/controller-uid": UID,
            "batch.kubernetes.io/job-name": "j",
            "controller-uid": UID,
            "job-name": "j"
        })
    );
    assert_eq!(spec["template"]["spec"]["restartPolicy"], "Never");
    assert_eq!(
        spec["template"]["spec"]["terminationGracePeriodSeconds"],
        30
    );
    assert!(got["metadata"].get("labels").is_none());
    assert!(
        errors("batch", "Job", &got, None).is_empty(),
        "{:?}",
        errors("batch", "Job", &got, None)
    );
    // With template labels and none of its own, the Job shows the template's.
    let mut j = kubectl_job();
    j["spec"]["template"]["metadata"]["labels"] = json!({"app": "batch"});
    let got = create("batch", "Job", j);
    assert_eq!(got["metadata"]["labels"]["app"], "batch");
    assert_eq!(
        got["metadata"]["labels"]["batch.kubernetes.io/job-name"],
        "j"
    );
    // Only parallelism set: completions stays unset.
    let mut j = kubectl_job();
    j["spec"]["parallelism"] = json!(3);
    let got = create("batch", "Job", j);
    assert!(got["spec"].get("completions").is_none());
}

#[test]
fn strategy_job_validation_and_immutability() {
    let mut j = kubectl_job();
    j["spec"]["template"]["spec"]["restartPolicy"] = json!("Always");
    assert_eq!(
        create_errors("batch", "Job", j),
        ["spec.template.spec.restartPolicy: Required value: valid values: \"OnFailure\", \"Never\""]
    );
    let mut j = kubectl_job();
    j["spec"]["backoffLimit"] = json!(-1);
    assert_eq!(
        create_errors("batch", "Job", j),
        ["spec.backoffLimit: Invalid value: -1: must be greater than or equal to 0"]
    );
    let old = create("batch", "Job", kubectl_job());
    let mut new = old.clone();
    new["spec"]["template"]["spec"]["containers"][0]["image"] = json!("busybox:1.36");
    let new = update("batch", "Job", new, &old);
    let errs = errors("batch", "Job", &new, Some(&old));
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].starts_with("spec.template: Invalid value: "));
    assert!(errs[0].ends_with(": field is immutable"));
    let mut new = old.clone();
    new["spec"]["selector"]["matchLabels"]["extra"] = json!("x");
    let new = update("batch", "Job", new, &old);
    assert!(errors("batch", "Job", &new, Some(&old)).contains(&format!(
        "spec.selector: Invalid value: v1.LabelSelector{{MatchLabels:map[string]string{{\"batch.kubernetes.io/controller-uid\":\"{UID}\", \"extra\":\"x\"}}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}}: field is immutable"
    )));
    // Parallelism may change; a suspended Job that never ran may move its pods.
    let mut new = old.clone();
    new["spec"]["parallelism"] = json!(2);
    assert!(errors(
        "batch",
        "Job",
        &update("batch", "Job", new, &old),
        Some(&old)
    )
    .is_empty());
    let mut suspended = kubectl_job();
    suspended["spec"]["suspend"] = json!(true);
    let old = create("batch", "Job", suspended);
    let mut new = old.clone();
    new["spec"]["template"]["spec"]["nodeSelector"] = json!({"disk": "ssd"});
    assert!(errors(
        "batch",
        "Job",
        &update("batch", "Job", new, &old),
        Some(&old)
    )
    .is_empty());
    // Without a uid the selector cannot be generated.
    let mut j = kubectl_job();
    j["metadata"].as_object_mut().unwrap().remove("uid");
    let j = create("batch", "Job", j);
    assert!(errors("batch", "Job", &j, None).contains(&"spec.selector: Required value".to_string()));
}

#[test]
fn strategy_cron_job_defaults_and_schedule() {
    let cj = json!({
        "metadata": meta("nightly"),
        "spec": {
            "schedule": "0 3 * * *",
            "jobTemplate": {
                "metadata": {"creationTimestamp": null},
                "spec": {"template": {"metadata": {"creationTimestamp": null}, "spec": {"containers": [{"name": "c", "image": "busybox"}], "restartPolicy": "OnFailure"}}}
            }
        }
    });
    let got = create("batch", "CronJob", cj.clone());
    let spec = &got["spec"];
    assert_eq!(spec["concurrencyPolicy"], "Allow");
    assert_eq!(spec["suspend"], false);
    assert_eq!(spec["successfulJobsHistoryLimit"], 3);
    assert_eq!(spec["failedJobsHistoryLimit"], 1);
    assert!(spec["jobTemplate"]["spec"].get("backoffLimit").is_none());
    assert_eq!(got["status"], json!({}));
    assert!(errors("batch", "CronJob", &got, None).is_empty());
    for (schedule, message) in [
        ("61 * * * *", "end of range (61) above maximum (59): 61"),
        ("* * * *", "expected exactly 5 fields, found 4: [* * * *]"),
        ("@fortnightly", "unrecognized descriptor: @fortnightly"),
    ] {
        let mut bad = cj.clone();
        bad["spec"]["schedule"] = json!(schedule);
        assert_eq!(
            create_errors("batch", "CronJob", bad),
            [format!(
                "spec.schedule: Invalid value: \"{schedule}\": {message}"
            )]
        );
    }
    for ok in ["@hourly", "@daily", "*/15 9-17 * * mon-fri", "@every 2h"] {
        assert_eq!(parse_schedule(ok), Ok(()), "{ok}");
    }
    let mut bad = cj.clone();
    bad["spec"]["concurrencyPolicy"] = json!("Sometimes");
    bad["spec"]["jobTemplate"]["spec"]["template"]["spec"]["restartPolicy"] = json!("Always");
    assert_eq!(
        create_errors("batch", "CronJob", bad),
        [
            "spec.concurrencyPolicy: Unsupported value: \"Sometimes\": supported values: \"Allow\", \"Forbid\", \"Replace\"",
            "spec.jobTemplate.spec.template.spec.restartPolicy: Required value: valid values: \"OnFailure\", \"Never\"",
        ]
    );
}

// ---- services ------------------------------------------------------------------------------

fn service(spec: Value) -> Value {
    json!({"metadata": meta("web"), "spec": spec})
}

#[test]
fn strategy_service_defaults() {
    // `kubectl create service clusterip web --tcp=80:8080` and a bare port.
    let got = create(
        "",
        "Service",
        service(
            json!({"selector": {"app": "web"}, "ports": [{"name": "80-8080", "port": 80, "targetPort": 8080}, {"name": "metrics", "port": 9090}]}),
        ),
    );
    assert_eq!(
        got["spec"],
        json!({
            "selector": {"app": "web"},
            "ports": [
                {"name": "80-8080", "port": 80, "targetPort": 8080, "protocol": "TCP"},
                {"name": "metrics", "port": 9090, "targetPort": 9090, "protocol": "TCP"}
            ],
            "type": "ClusterIP",
            "sessionAffinity": "None",
            "internalTrafficPolicy": "Cluster",
            "ipFamilyPolicy": "SingleStack",
            "ipFamilies": ["IPv4"]
        })
    );
    assert_eq!(got["status"], json!({"loadBalancer": {}}));
    assert!(errors("", "Service", &got, None).is_empty());
    let lb = create(
        "",
        "Service",
        service(json!({"type": "LoadBalancer", "ports": [{"port": 443}]})),
    );
    assert_eq!(lb["spec"]["externalTrafficPolicy"], "Cluster");
    assert_eq!(lb["spec"]["allocateLoadBalancerNodePorts"], true);
    let headless = create(
        "",
        "Service",
        service(json!({"clusterIP": "None", "ports": [{"port": 80}]})),
    );
    assert_eq!(headless["spec"]["clusterIPs"], json!(["None"]));
    assert_eq!(headless["spec"]["ipFamilyPolicy"], "RequireDualStack");
    let external = create(
        "",
        "Service",
        service(json!({"type": "ExternalName", "externalName": "db.example.com"})),
    );
    assert!(external["spec"].get("internalTrafficPolicy").is_none());
    assert!(external["spec"].get("ipFamilies").is_none());
    assert!(errors("", "Service", &external, None).is_empty());
}

#[test]
fn strategy_service_validation_messages() {
    assert_eq!(
        create_errors(
            "",
            "Service",
            service(json!({"ports": [{"targetPort": 80}]}))
        ),
        ["spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive"]
    );
    assert_eq!(
        create_errors(
            "",
            "Service",
            service(json!({"ports": [{"port": 80}, {"port": 443}]}))
        ),
        [
            "spec.ports[0].name: Required value",
            "spec.ports[1].name: Required value"
        ]
    );
    assert_eq!(
        create_errors("", "Service", service(json!({"ports": [{"name": "a", "port": 80}, {"name": "a", "port": 81, "targetPort": "HTTP"}]}))),
        [
            "spec.ports[1].name: Duplicate value: \"a\"",
            "spec.ports[1].targetPort: Invalid value: \"HTTP\": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)",
            "spec.ports[1].targetPort: Invalid value: \"HTTP\": must contain at least one letter (a-z)",
        ]
    );
    assert_eq!(
        create_errors("", "Service", service(json!({"type": "Balanced", "ports": [{"port": 80}]}))),
        ["spec.type: Unsupported value: \"Balanced\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\""]
    );
    assert_eq!(
        create_errors(
            "",
            "Service",
            service(json!({"ports": [{"port": 80, "nodePort": 30080}]}))
        ),
        ["spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"]
    );
    assert_eq!(
        create_errors("", "Service", service(json!({}))),
        ["spec.ports: Required value"]
    );
}

#[test]
fn strategy_service_cluster_ip_is_immutable() {
    let mut old = create("", "Service", service(json!({"ports": [{"port": 80}]})));
    // What the allocator does.
    old["spec"]["clusterIP"] = json!("10.43.0.10");
    old["spec"]["clusterIPs"] = json!(["10.43.0.10"]);
    // Re-applying the manifest without a cluster IP keeps the allocated one.
    let new = update(
        "",
        "Service",
        service(json!({"ports": [{"port": 80}]})),
        &old,
    );
    assert_eq!(new["spec"]["clusterIP"], "10.43.0.10");
    assert!(errors("", "Service", &new, Some(&old)).is_empty());
    let new = update(
        "",
        "Service",
        service(json!({"clusterIP": "10.43.0.11", "ports": [{"port": 80}]})),
        &old,
    );
    assert_eq!(
        errors("", "Service", &new, Some(&old)),
        ["spec.clusterIPs[0]: Invalid value: []string{\"10.43.0.11\"}: may not change once set"]
    );
    // Changing the type to ExternalName drops the cluster IP.
    let mut to_external = old.clone();
    to_external["spec"]["type"] = json!("ExternalName");
    to_external["spec"]["externalName"] = json!("db.example.com");
    let new = update("", "Service", to_external, &old);
    assert!(new["spec"].get("clusterIP").is_none());
    assert!(
        errors("", "Service", &new, Some(&old)).is_empty(),
        "{:?}",
        errors("", "Service", &new, Some(&old))
    );
}

// ---- core: namespaces, secrets, config maps, storage ---------------------------------------

#[test]
fn strategy_namespace_defaults() {
    let got = create("", "Namespace", json!({"metadata": {"name": "team-a"}}));
    assert_eq!(
        got,
        json!({
            "metadata": {"name": "team-a", "labels": {"kubernetes.io/metadata.name": "team-a"}},
            "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Active"}
        })
    );
    assert!(errors("", "Namespace", &got, None).is_empty());
}

#[test]
fn strategy_secret_defaults_and_validation() {
    let got = create(
        "",
        "Secret",
        json!({"metadata": meta("s"), "stringData": {"password": "hunter2"}, "data": {"user": "YWRtaW4="}}),
    );
    assert_eq!(got["type"], "Opaque");
    assert_eq!(
        got["data"],
        json!({"user": "YWRtaW4=", "password": "aHVudGVyMg=="})
    );
    assert!(got.get("stringData").is_none());
    assert!(errors("", "Secret", &got, None).is_empty());
    assert_eq!(
        create_errors("", "Secret", json!({"metadata": meta("s"), "data": {"bad key": "eA==", "ok": "not base64!"}})),
        [
            "data[bad key]: Invalid value: \"bad key\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key_name', regex used for validation is '[-._a-zA-Z0-9]+')",
            "data[ok]: Invalid value: \"<secret contents redacted>\": illegal base64 data at input byte 3",
        ]
    );
    let big = "A".repeat(1_398_104); // 1 MiB + 2 bytes once decoded
    assert_eq!(
        create_errors(
            "",
            "Secret",
            json!({"metadata": meta("s"), "data": {"blob": big}})
        ),
        ["data: Too long: may not be more than 1048576 bytes"]
    );
    assert_eq!(
        create_errors(
            "",
            "Secret",
            json!({"metadata": meta("s"), "type": "kubernetes.io/tls", "data": {}})
        ),
        [
            "data[tls.crt]: Required value",
            "data[tls.key]: Required value"
        ]
    );
    let old = create(
        "",
        "Secret",
        json!({"metadata": meta("s"), "immutable": true, "data": {"a": "YQ=="}}),
    );
    let new = update(
        "",
        "Secret",
        json!({"metadata": meta("s"), "immutable": true, "data": {"a": "Yg=="}}),
        &old,
    );
    assert_eq!(
        errors("", "Secret", &new, Some(&old)),
        ["data: Forbidden: field is immutable when `immutable` is set"]
    );
    let new = update(
        "",
        "Secret",
        json!({"metadata": meta("s"), "type": "Other", "immutable": true, "data": {"a": "YQ=="}}),
        &old,
    );
    assert_eq!(
        errors("", "Secret", &new, Some(&old)),
        ["type: Invalid value: \"Other\": field is immutable"]
    );
}

#[test]
fn strategy_config_map_validation() {
    assert_eq!(
        create_errors("", "ConfigMap", json!({"metadata": meta("c"), "data": {"app.properties": "x", "../etc": "y"}})),
        [
            "data[../etc]: Invalid value: \"../etc\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key_name', regex used for validation is '[-._a-zA-Z0-9]+')",
            "data[../etc]: Invalid value: \"../etc\": must not start with '..'",
        ]
    );
    let old = json!({"metadata": meta("c"), "immutable": true, "data": {"a": "1"}});
    let new = json!({"metadata": meta("c"), "data": {"a": "1"}});
    assert_eq!(
        errors("", "ConfigMap", &new, Some(&old)),
        ["immutable: Forbidden: field is immutable when `immutable` is set"]
    );
    let huge = "x".repeat(1024 * 1024 + 1);
    assert_eq!(
        errors(
            "",
            "ConfigMap",
            &json!({"metadata": meta("c"), "data": {"k": huge}}),
            None
        ),
        ["[]: Too long: may not be more than 1048576 bytes"]
    );
}

#[test]
fn strategy_volumes_and_claims() {
    let pv = create(
        "",
        "PersistentVolume",
        json!({"metadata": {"name": "pv1"}, "spec": {"capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteOnce"], "hostPath": {"path": "/data/pv1"}}}),
    );
    assert_eq!(pv["spec"]["persistentVolumeReclaimPolicy"], "Retain");
    assert_eq!(pv["spec"]["volumeMode"], "Filesystem");
    assert_eq!(pv["spec"]["hostPath"]["type"], "");
    assert_eq!(pv["status"]["phase"], "Pending");
    assert!(errors("", "PersistentVolume", &pv, None).is_empty());
    let pvc = create(
        "",
        "PersistentVolumeClaim",
        json!({"metadata": meta("data"), "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1024Mi"}}}}),
    );
    assert_eq!(pvc["spec"]["volumeMode"], "Filesystem");
    assert_eq!(pvc["spec"]["resources"]["requests"]["storage"], "1Gi");
    assert_eq!(pvc["status"], json!({"phase": "Pending"}));
    assert!(errors("", "PersistentVolumeClaim", &pvc, None).is_empty());
    assert_eq!(
        create_errors("", "PersistentVolumeClaim", json!({"metadata": meta("data"), "spec": {"accessModes": ["ReadWriteSometimes"]}})),
        [
            "spec.accessModes: Unsupported value: \"ReadWriteSometimes\": supported values: \"ReadOnlyMany\", \"ReadWriteMany\", \"ReadWriteOnce\", \"ReadWriteOncePod\"",
            "spec.resources[storage]: Required value",
        ]
    );
    // A bound claim may grow; nothing else in its spec may change.
    let mut old = pvc.clone();
    old["spec"]["volumeName"] = json!("pv1");
    old["status"] = json!({"phase": "Bound", "capacity": {"storage": "1Gi"}});
    let mut grown = old.clone();
    grown["spec"]["resources"]["requests"]["storage"] = json!("2Gi");
    let grown = update("", "PersistentVolumeClaim", grown, &old);
    assert!(errors("", "PersistentVolumeClaim", &grown, Some(&old)).is_empty());
    let mut changed = old.clone();
    changed["spec"]["accessModes"] = json!(["ReadWriteMany"]);
    let changed = update("", "PersistentVolumeClaim", changed, &old);
    let errs = errors("", "PersistentVolumeClaim", &changed, Some(&old));
    assert_eq!(errs.len(), 1);
    assert!(errs[0].starts_with("spec: Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims\n"));
    // The claim learns its volume once.
    let mut binding = pvc.clone();
    binding["spec"]["volumeName"] = json!("pv1");
    assert!(errors("", "PersistentVolumeClaim", &binding, Some(&pvc)).is_empty());
}

#[test]
fn strategy_storage_and_scheduling_classes() {
    let sc = create(
        "storage.k8s.io",
        "StorageClass",
        json!({"metadata": {"name": "local-path"}, "provisioner": "rancher.io/local-path"}),
    );
    assert_eq!(sc["reclaimPolicy"], "Delete");
    assert_eq!(sc["volumeBindingMode"], "Immediate");
    assert!(errors("storage.k8s.io", "StorageClass", &sc, None).is_empty());
    let mut changed = sc.clone();
    changed["reclaimPolicy"] = json!("Retain");
    assert_eq!(
        errors("storage.k8s.io", "StorageClass", &changed, Some(&sc)),
        ["reclaimPolicy: Forbidden: updates to reclaimPolicy are forbidden."]
    );
    let pc = create(
        "scheduling.k8s.io",
        "PriorityClass",
        json!({"metadata": {"name": "high"}, "value": 1000}),
    );
    assert_eq!(pc["preemptionPolicy"], "PreemptLowerPriority");
    assert!(errors("scheduling.k8s.io", "PriorityClass", &pc, None).is_empty());
    let mut changed = pc.clone();
    changed["value"] = json!(2000);
    assert_eq!(
        errors("scheduling.k8s.io", "PriorityClass", &changed, Some(&pc)),
        ["value: Forbidden: may not be changed in an update."]
    );
}

#[test]
fn strategy_limit_range_and_quota() {
    let lr = create(
        "",
        "LimitRange",
        json!({"metadata": meta("limits"), "spec": {"limits": [{"type": "Container", "max": {"cpu": "2"}, "default": {"memory": "512Mi"}, "min": {"memory": "64Mi"}}]}}),
    );
    assert_eq!(
        lr["spec"]["limits"][0],
        json!({
            "type": "Container",
            "max": {"cpu": "2"},
            "min": {"memory": "64Mi"},
            "default": {"cpu": "2", "memory": "512Mi"},
            "defaultRequest": {"cpu": "2", "memory": "512Mi"}
        })
    );
    assert!(errors("", "LimitRange", &lr, None).is_empty());
    let quota = create(
        "",
        "ResourceQuota",
        json!({"metadata": meta("q"), "spec": {"hard": {"pods": "10", "requests.cpu": "0.5", "limits.memory": "2048Mi"}}}),
    );
    assert_eq!(
        quota["spec"]["hard"],
        json!({"pods": "10", "requests.cpu": "500m", "limits.memory": "2Gi"})
    );
    assert_eq!(
        create_errors("", "ResourceQuota", json!({"metadata": meta("q"), "spec": {"hard": {"pods": "1.5", "widgets": "1"}}})),
        [
            "spec.hard[pods]: Invalid value: 1500m: must be an integer",
            "spec.hard[widgets]: Invalid value: \"widgets\": must be a standard resource type or fully qualified",
            "spec.hard[widgets]: Invalid value: \"widgets\": must be a standard resource for quota",
        ]
    );
}

#[test]
fn strategy_endpoints_events_and_templates() {
    let ep = create(
        "",
        "Endpoints",
        json!({"metadata": meta("web"), "subsets": [{"addresses": [{"ip": "10.42.0.5"}], "ports": [{"port": 80}]}]}),
    );
    assert_eq!(ep["subsets"][0]["ports"][0]["protocol"], "TCP");
    assert!(errors("", "Endpoints", &ep, None).is_empty());
    assert_eq!(
        errors("", "Endpoints", &json!({"subsets": [{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"port": 80, "protocol": "TCP"}]}]}), None),
        ["subsets[0].addresses[0].ip: Invalid value: \"127.0.0.1\": may not be in the loopback range (127.0.0.0/8, ::1/128)"]
    );
    let slice = create(
        "discovery.k8s.io",
        "EndpointSlice",
        json!({"metadata": meta("web-abc"), "addressType": "IPv4", "endpoints": [{"addresses": ["10.42.0.5"]}], "ports": [{"port": 80}]}),
    );
    assert_eq!(
        slice["ports"][0],
        json!({"port": 80, "name": "", "protocol": "TCP"})
    );
    assert_eq!(slice["endpoints"][0]["conditions"], json!({}));
    assert!(errors("discovery.k8s.io", "EndpointSlice", &slice, None).is_empty());
    let ev = create(
        "",
        "Event",
        json!({"metadata": meta("e"), "reason": "Started", "involvedObject": {"kind": "Pod", "name": "p"}}),
    );
    assert_eq!(ev["reportingComponent"], "");
    assert_eq!(ev["source"], json!({}));
    let pt = create(
        "",
        "PodTemplate",
        json!({"metadata": meta("t"), "template": {"spec": {"containers": [{"name": "c", "image": "busybox"}]}}}),
    );
    assert_eq!(pt["template"]["spec"]["restartPolicy"], "Always");
    assert!(errors("", "PodTemplate", &pt, None).is_empty());
    let rc = create(
        "",
        "ReplicationController",
        json!({"metadata": meta("rc"), "spec": {"template": {"metadata": {"labels": {"app": "rc"}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}),
    );
    assert_eq!(rc["spec"]["selector"], json!({"app": "rc"}));
    assert_eq!(rc["spec"]["replicas"], 1);
    assert_eq!(rc["metadata"]["labels"], json!({"app": "rc"}));
    assert!(errors("", "ReplicationController", &rc, None).is_empty());
}

// ---- networking, policy, autoscaling, RBAC, leases -----------------------------------------

#[test]
fn strategy_network_policy_and_ingress() {
    let np = create(
        "networking.k8s.io",
        "NetworkPolicy",
        json!({"metadata": meta("np"), "spec": {"egress": [{"ports": [{"port": 53}]}]}}),
    );
    assert_eq!(np["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
    assert_eq!(np["spec"]["podSelector"], json!({}));
    assert_eq!(np["spec"]["egress"][0]["ports"][0]["protocol"], "TCP");
    assert!(errors("networking.k8s.io", "NetworkPolicy", &np, None).is_empty());
    let ing = create(
        "networking.k8s.io",
        "Ingress",
        json!({"metadata": meta("web"), "spec": {"rules": [{"host": "web.example.com", "http": {"paths": [
            {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 80}}}}
        ]}}]}}),
    );
    assert_eq!(ing["status"], json!({"loadBalancer": {}}));
    assert!(errors("networking.k8s.io", "Ingress", &ing, None).is_empty());
    assert_eq!(
        create_errors(
            "networking.k8s.io",
            "Ingress",
            json!({"metadata": meta("web"), "spec": {"rules": [{"http": {"paths": [
                {"path": "api", "backend": {"service": {"name": "web"}}},
                {"path": "api", "pathType": "Exact", "backend": {"service": {"name": "web", "port": {"number": 80}}}}
            ]}}]}})
        ),
        [
            "spec.rules[0].http.paths[0].pathType: Required value: pathType must be specified",
            "spec.rules[0].http.paths[1].path: Invalid value: \"api\": must be an absolute path",
        ]
    );
}

#[test]
fn strategy_pdb_hpa_rbac_lease() {
    let pdb = create(
        "policy",
        "PodDisruptionBudget",
        json!({"metadata": meta("pdb"), "spec": {"minAvailable": "50%", "selector": {"matchLabels": {"app": "w"}}}}),
    );
    assert_eq!(
        pdb["status"],
        json!({"currentHealthy": 0, "desiredHealthy": 0, "disruptionsAllowed": 0, "expectedPods": 0})
    );
    assert!(errors("policy", "PodDisruptionBudget", &pdb, None).is_empty());
    let errs = create_errors(
        "policy",
        "PodDisruptionBudget",
        json!({"metadata": meta("pdb"), "spec": {"minAvailable": "150%", "maxUnavailable": 1}}),
    );
    assert_eq!(errs.len(), 2);
    assert!(errs[0].ends_with(": minAvailable and maxUnavailable cannot be both set"));
    assert_eq!(
        errs[1],
        "spec.minAvailable: Invalid value: 150%: must not be greater than 100%"
    );
    let hpa = create(
        "autoscaling",
        "HorizontalPodAutoscaler",
        json!({"metadata": meta("web"), "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}, "maxReplicas": 5}}),
    );
    assert_eq!(hpa["spec"]["minReplicas"], 1);
    assert_eq!(
        hpa["spec"]["metrics"],
        json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}])
    );
    assert!(hpa["spec"].get("behavior").is_none());
    assert!(errors("autoscaling", "HorizontalPodAutoscaler", &hpa, None).is_empty());
    let mut bad = hpa.clone();
    bad["spec"]["maxReplicas"] = json!(0);
    assert_eq!(
        errors("autoscaling", "HorizontalPodAutoscaler", &bad, None),
        [
            "spec.maxReplicas: Invalid value: 0: must be greater than 0",
            "spec.maxReplicas: Invalid value: 0: must be greater than or equal to `minReplicas`",
        ]
    );
    let rb = create(
        "rbac.authorization.k8s.io",
        "RoleBinding",
        json!({"metadata": meta("rb"), "roleRef": {"kind": "Role", "name": "reader"}, "subjects": [{"kind": "User", "name": "jane"}, {"kind": "ServiceAccount", "name": "default"}]}),
    );
    assert_eq!(rb["roleRef"]["apiGroup"], "rbac.authorization.k8s.io");
    assert_eq!(rb["subjects"][0]["apiGroup"], "rbac.authorization.k8s.io");
    assert_eq!(rb["subjects"][1]["apiGroup"], "");
    assert!(errors("rbac.authorization.k8s.io", "RoleBinding", &rb, None).is_empty());
    let mut changed = rb.clone();
    changed["roleRef"]["name"] = json!("writer");
    assert_eq!(
        errors("rbac.authorization.k8s.io", "RoleBinding", &changed, Some(&rb)),
        ["roleRef: Invalid value: rbac.RoleRef{APIGroup:\"rbac.authorization.k8s.io\", Kind:\"Role\", Name:\"writer\"}: cannot change roleRef"]
    );
    assert_eq!(
        errors(
            "rbac.authorization.k8s.io",
            "Role",
            &json!({"rules": [{"resources": ["pods"]}]}),
            None
        ),
        [
            "rules[0].verbs: Required value: verbs must contain at least one value",
            "rules[0].apiGroups: Required value: resource rules must supply at least one api group",
        ]
    );
    assert_eq!(
        errors(
            "coordination.k8s.io",
            "Lease",
            &json!({"spec": {"leaseDurationSeconds": 0}}),
            None
        ),
        ["spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0"]
    );
}

// ---- quantities ----------------------------------------------------------------------------

#[test]
fn strategy_quantities_parse_and_print_like_upstream() {
    assert_eq!(parse_quantity("250m"), Some(250));
    assert_eq!(parse_quantity("1.5"), Some(1500));
    assert_eq!(parse_quantity("1Gi"), Some(1_073_741_824_000));
    assert_eq!(parse_quantity("nope"), None);
    for (input, canonical) in [
        ("0.1", "100m"),
        ("2048Ki", "2Mi"),
        ("1000000", "1M"),
        ("12e2", "1200"),
        ("1.5Gi", "1536Mi"),
    ] {
        assert_eq!(
            Quantity::parse(input).unwrap().canonical(),
            canonical,
            "{input}"
        );
    }
}

#[test]
fn strategy_unknown_kinds_have_none() {
    assert!(built_in("example.com", "Widget").is_none());
}

// ---- more corners --------------------------------------------------------------------------

#[test]
fn strategy_service_type_changes_drop_what_no_longer_applies() {
    let mut old = create(
        "",
        "Service",
        service(json!({"type": "NodePort", "ports": [{"name": "http", "port": 80}]})),
    );
    // What the allocators do.
    old["spec"]["clusterIP"] = json!("10.43.0.20");
    old["spec"]["clusterIPs"] = json!(["10.43.0.20"]);
    old["spec"]["ports"][0]["nodePort"] = json!(30080);
    assert!(errors("", "Service", &old, None).is_empty());
    // Re-applying the same manifest keeps the node port.
    let same = update(
        "",
        "Service",
        service(json!({"type": "NodePort", "ports": [{"name": "http", "port": 80}]})),
        &old,
    );
    assert_eq!(same["spec"]["ports"][0]["nodePort"], 30080);
    // Going back to ClusterIP drops the node port and the external traffic policy.
    let mut back = old.clone();
    back["spec"]["type"] = json!("ClusterIP");
    let back = update("", "Service", back, &old);
    assert!(back["spec"]["ports"][0].get("nodePort").is_none());
    assert!(back["spec"].get("externalTrafficPolicy").is_none());
    assert!(errors("", "Service", &back, Some(&old)).is_empty());
}

#[test]
fn strategy_pod_spec_corners() {
    assert_eq!(
        create_errors(
            "",
            "Pod",
            json!({"metadata": meta("p"), "spec": {"hostNetwork": true, "containers": [{"name": "a", "image": "x", "ports": [{"containerPort": 80, "hostPort": 8080}]}]}})
        ),
        ["spec.containers[0].ports[0].hostPort: Invalid value: 8080: must match `containerPort` when `hostNetwork` is true"]
    );
    let host_net = create(
        "",
        "Pod",
        json!({"metadata": meta("p"), "spec": {"hostNetwork": true, "containers": [{"name": "a", "image": "x", "ports": [{"containerPort": 80}]}]}}),
    );
    assert_eq!(
        host_net["spec"]["containers"][0]["ports"][0]["hostPort"],
        80
    );
    assert_eq!(
        create_errors(
            "",
            "Pod",
            pod_with(json!({"name": "a", "image": "x", "env": [
                {"name": ""},
                {"name": "A=B"},
                {"name": "FROM", "valueFrom": {}},
                {"name": "KEY", "valueFrom": {"secretKeyRef": {"name": "s"}}}
            ]}))
        ),
        [
            "spec.containers[0].env[0].name: Required value",
            "spec.containers[0].env[1].name: Invalid value: \"A=B\": a valid environment variable name must consist only of printable ASCII characters other than '='",
            "spec.containers[0].env[2].valueFrom: Invalid value: \"\": must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
            "spec.containers[0].env[3].valueFrom.secretKeyRef.key: Required value",
        ]
    );
    assert_eq!(
        create_errors(
            "",
            "Pod",
            json!({"metadata": meta("p"), "spec": {
                "containers": [{"name": "a", "image": "x"}],
                "tolerations": [{"key": "k", "operator": "Exists", "value": "v"}],
                "activeDeadlineSeconds": 0
            }})
        ),
        [
            "spec.activeDeadlineSeconds: Invalid value: 0: must be between 1 and 2147483647, inclusive",
            "spec.tolerations[0].operator: Invalid value: \"v\": value must be empty when `operator` is 'Exists'",
        ]
    );
    assert_eq!(
        create_errors(
            "",
            "Pod",
            pod_with(json!({"name": "a", "image": "x", "resources": {"limits": {"example.com/gpu": "1"}, "requests": {"example.com/gpu": "2"}}}))
        ),
        ["spec.containers[0].resources.requests: Invalid value: \"2\": must be equal to example.com/gpu limit of 1"]
    );
    assert_eq!(
        create_errors(
            "",
            "Pod",
            pod_with(json!({"name": "a", "image": "x", "resources": {"limits": {"cpu": "-1"}, "requests": {"gpu": "1"}}}))
        ),
        [
            "spec.containers[0].resources.limits[cpu]: Invalid value: \"-1\": must be greater than or equal to 0",
            // A pod's limits are its requests unless it says otherwise.
            "spec.containers[0].resources.requests[cpu]: Invalid value: \"-1\": must be greater than or equal to 0",
            "spec.containers[0].resources.requests[gpu]: Invalid value: \"gpu\": must be a standard resource type or fully qualified",
            "spec.containers[0].resources.requests[gpu]: Invalid value: \"gpu\": must be a standard resource for containers",
        ]
    );
}

#[test]
fn strategy_stored_objects_are_compared_with_their_defaults() {
    // An object stored without defaults still updates cleanly when only the image changes.
    let stored = json!({"metadata": meta("p"), "spec": {"containers": [{"name": "web", "image": "nginx:1.25"}]}});
    let mut new = stored.clone();
    new["spec"]["containers"][0]["image"] = json!("nginx:1.27");
    let new = update("", "Pod", new, &stored);
    assert!(errors("", "Pod", &new, Some(&stored)).is_empty());
}

#[test]
fn strategy_daemon_set_and_stateful_set_selectors() {
    let mut ds = workload(json!({}));
    ds["spec"].as_object_mut().unwrap().remove("selector");
    assert_eq!(
        create_errors("apps", "DaemonSet", ds),
        ["spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"w\"}: `selector` does not match template `labels`"]
    );
    let mut sts = workload(json!({}));
    sts["spec"]["selector"] = json!({"matchLabels": {"app": "x"}});
    assert_eq!(
        create_errors("apps", "StatefulSet", sts),
        ["spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"w\"}: `selector` does not match template `labels`"]
    );
}

#[test]
fn strategy_more_validation_corners() {
    let cj = json!({
        "metadata": meta("c"),
        "spec": {
            "schedule": "@daily",
            "timeZone": "Mars/Olympus_Mons",
            "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox"}], "restartPolicy": "Never"}}}}
        }
    });
    assert_eq!(
        create_errors("batch", "CronJob", cj),
        ["spec.timeZone: Invalid value: \"Mars/Olympus_Mons\": unknown time zone Mars/Olympus_Mons"]
    );
    assert_eq!(
        create_errors(
            "networking.k8s.io",
            "Ingress",
            json!({"metadata": meta("i"), "spec": {"rules": [{"host": "*.*.example.com"}]}})
        ),
        ["spec.rules[0].host: Invalid value: \"*.*.example.com\": a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS subdomain, which must consist of lower case alphanumeric characters, '-' or '.' and end with an alphanumeric character (e.g. '*.example.com', regex used for validation is '\\*\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"]
    );
    assert_eq!(
        create_errors(
            "",
            "LimitRange",
            json!({"metadata": meta("l"), "spec": {"limits": [{"type": "Container", "min": {"cpu": "2"}, "max": {"cpu": "1"}}]}})
        ),
        [
            // The default comes from max and the default request from the default.
            "spec.limits[0].min[cpu]: Invalid value: 2: min value 2 is greater than max value 1",
            "spec.limits[0].defaultRequest[cpu]: Invalid value: 1: min value 2 is greater than default request value 1",
            "spec.limits[0].default[cpu]: Invalid value: 2: min value 2 is greater than default value 1",
        ]
    );
    assert_eq!(
        create_errors("", "Namespace", json!({"metadata": {"name": "n"}, "spec": {"finalizers": ["custom"]}})),
        ["spec.finalizers: Invalid value: \"custom\": name is neither a standard finalizer name nor is it fully qualified"]
    );
}

/// Set-based requirements in label selectors and node affinity share their value rules;
/// node affinity also has `Gt`/`Lt` with exactly one value.
#[test]
fn strategy_selector_requirements_need_the_values_their_operator_does() {
    let pdb = json!({
        "metadata": meta("pdb"),
        "spec": {"minAvailable": 1, "selector": {"matchExpressions": [
            {"key": "a", "operator": "In"},
            {"key": "b", "operator": "Exists", "values": ["x"]},
            {"key": "c", "operator": "Gt", "values": ["1"]},
        ]}},
    });
    assert_eq!(
        create_errors("policy", "PodDisruptionBudget", pdb),
        [
            "spec.selector.matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'",
            "spec.selector.matchExpressions[1].values: Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            "spec.selector.matchExpressions[2].operator: Invalid value: \"Gt\": not a valid selector operator",
        ]
    );
    let term = |rq: Value| {
        json!({
            "metadata": meta("p"),
            "spec": {
                "containers": [{"name": "c", "image": "i"}],
                "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchExpressions": [rq]}],
                }}},
            },
        })
    };
    let path = "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0]";
    let cases = [
        (json!({"key": "k", "operator": "NotIn"}), format!("{path}.values: Required value: must be specified when `operator` is 'In' or 'NotIn'")),
        (json!({"key": "k", "operator": "DoesNotExist", "values": ["v"]}), format!("{path}.values: Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'")),
        (json!({"key": "k", "operator": "Lt", "values": ["1", "2"]}), format!("{path}.values: Required value: must be specified single value when `operator` is 'Lt' or 'Gt'")),
        (json!({"key": "k", "operator": "Near"}), format!("{path}.operator: Invalid value: \"Near\": not a valid selector operator")),
    ];
    for (rq, want) in cases {
        assert_eq!(create_errors("", "Pod", term(rq)), [want]);
    }
    assert!(create_errors(
        "",
        "Pod",
        term(json!({"key": "k", "operator": "Gt", "values": ["1"]}))
    )
    .is_empty());
}

/// Graceful deletion is the pods' (unless they never ran or have finished); namespaces wait
/// for their spec finalizers.
#[test]
fn strategy_deletion_rules() {
    let pod = |node: &str, phase: &str| json!({"spec": {"nodeName": node, "terminationGracePeriodSeconds": 45}, "status": {"phase": phase}});
    assert_eq!(grace_period("", "Pod", &pod("n1", "Running"), None), 45);
    assert_eq!(grace_period("", "Pod", &pod("n1", "Running"), Some(5)), 5);
    assert_eq!(grace_period("", "Pod", &pod("n1", "Running"), Some(-3)), 0);
    assert_eq!(grace_period("", "Pod", &pod("", "Pending"), Some(5)), 0);
    assert_eq!(grace_period("", "Pod", &pod("n1", "Succeeded"), None), 0);
    assert_eq!(
        grace_period("", "Pod", &json!({"spec": {"nodeName": "n1"}}), None),
        30
    );
    assert_eq!(grace_period("apps", "Deployment", &json!({}), Some(30)), 0);
    let ns = |f: Value| json!({"spec": {"finalizers": f}});
    assert!(!may_go_when_finalized(
        "",
        "Namespace",
        &ns(json!(["kubernetes"]))
    ));
    assert!(may_go_when_finalized("", "Namespace", &ns(json!([]))));
    assert!(may_go_when_finalized("", "ConfigMap", &ns(json!(["x"]))));
}
