//! kubectl 1.32+ sends built-in objects as protobuf (`application/vnd.kubernetes.protobuf`),
//! where Go writes every non-pointer field even when it is zero. What the server stores from
//! such a body must be what it stores from the same object sent as JSON by kubectl 1.31, and
//! what upstream stores: no `generateName: ""`, `minReadySeconds: 0`, `hostNetwork: false`, …
//! (Go's JSON drops zero `omitempty` fields), while a pointer set to zero (`replicas: 0`)
//! stays.

use std::path::Path;

use rudder_testkit::RudderServer;
use serde_json::Value;

fn server() -> RudderServer {
    RudderServer::api_only(Path::new(env!("CARGO_BIN_EXE_rudder")), &[])
        .expect("start rudder server")
}

/// The objects every test here creates, as kubectl arguments (after `-n NS`).
const CREATE: &[&[&str]] = &[
    &["create", "deployment", "d", "--image=nginx"],
    &[
        "create",
        "deployment",
        "d0",
        "--image=nginx",
        "--replicas=0",
    ],
    &["create", "configmap", "c1", "--from-literal=x=y"],
    &["create", "service", "clusterip", "s1", "--tcp=80:8080"],
    &["create", "job", "j", "--image=busybox", "--", "sleep", "1"],
];

/// (kind for `kubectl get`, name) of what [`CREATE`] makes.
const OBJECTS: &[(&str, &str)] = &[
    ("deployment", "d"),
    ("deployment", "d0"),
    ("configmap", "c1"),
    ("service", "s1"),
    ("job", "j"),
];

fn create_all(s: &RudderServer, minor: u32, ns: &str) {
    s.kubectl(&["create", "namespace", ns]).ok();
    for args in CREATE {
        // Before the arguments: the job's end with `-- sleep 1`.
        let mut a = vec!["-n", ns];
        a.extend(*args);
        s.kubectl_version(minor, &a).ok();
    }
}

fn get(s: &RudderServer, ns: &str, kind: &str, name: &str) -> Value {
    let out = s.kubectl(&["get", kind, name, "-n", ns, "-o", "json"]).ok();
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{kind}/{name}: {e}: {out}"))
}

/// Paths under `v` holding `""`, `false` or `0`: the zero values Go's JSON leaves out of
/// `omitempty` fields.
fn zero_values(path: &str, v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                zero_values(&format!("{path}/{k}"), v, out);
            }
        }
        Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                zero_values(&format!("{path}/{i}"), v, out);
            }
        }
        Value::String(s) if s.is_empty() => out.push(format!("{path}: \"\"")),
        Value::Bool(false) => out.push(format!("{path}: false")),
        Value::Number(n) if n.as_f64() == Some(0.0) => out.push(format!("{path}: 0")),
        _ => {}
    }
}

/// The object without what differs between two creations of it: server-set identity and
/// times, field managers, allocated cluster IPs, the job's generated controller-uid labels
/// and status (controllers write it at their own pace).
fn comparable(mut v: Value) -> Value {
    if let Some(m) = v["metadata"].as_object_mut() {
        for k in [
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "namespace",
            "managedFields",
        ] {
            m.remove(k);
        }
    }
    if let Some(spec) = v["spec"].as_object_mut() {
        spec.remove("clusterIP");
        spec.remove("clusterIPs");
    }
    for labels in [
        "/metadata/labels",
        "/spec/selector/matchLabels",
        "/spec/template/metadata/labels",
    ] {
        if let Some(Value::Object(m)) = v.pointer_mut(labels) {
            m.retain(|k, _| !k.ends_with("controller-uid"));
            m.remove("job-name");
            m.remove("batch.kubernetes.io/job-name");
        }
    }
    if let Some(m) = v.as_object_mut() {
        m.remove("status");
    }
    v
}

#[test]
fn protobuf_bodies_store_no_zero_values_upstream_leaves_out() {
    let s = server();
    // kubectl 1.32 sends protobuf: check it really does.
    s.kubectl(&["create", "namespace", "pb"]).ok();
    let sent = s
        .kubectl_version(
            32,
            &[
                "create",
                "configmap",
                "probe",
                "-n",
                "pb",
                "--from-literal=a=b",
                "-v=8",
            ],
        )
        .out;
    let log = String::from_utf8_lossy(&sent.stderr);
    assert!(
        log.contains("Content-Type: application/vnd.kubernetes.protobuf"),
        "kubectl 1.32 did not send protobuf:\n{log}"
    );
    for args in CREATE {
        let mut a = vec!["-n", "pb"];
        a.extend(*args);
        s.kubectl_version(32, &a).ok();
    }

    let cm = get(&s, "pb", "configmap", "c1");
    assert!(cm["metadata"].get("generateName").is_none(), "{cm}");
    assert!(cm["metadata"].get("generation").is_none(), "{cm}");

    let d = get(&s, "pb", "deployment", "d");
    let spec = &d["spec"];
    for k in ["minReadySeconds", "paused"] {
        assert!(spec.get(k).is_none(), "spec.{k}: {d}");
    }
    let meta = &spec["template"]["metadata"];
    for k in [
        "name",
        "namespace",
        "selfLink",
        "uid",
        "generateName",
        "resourceVersion",
        "generation",
    ] {
        assert!(meta.get(k).is_none(), "template metadata.{k}: {d}");
    }
    let pod = &spec["template"]["spec"];
    for k in [
        "hostNetwork",
        "hostPID",
        "hostIPC",
        "nodeName",
        "hostname",
        "subdomain",
        "serviceAccountName",
        "priorityClassName",
    ] {
        assert!(pod.get(k).is_none(), "template spec.{k}: {d}");
    }
    let c = &pod["containers"][0];
    for k in ["stdin", "stdinOnce", "tty", "workingDir"] {
        assert!(c.get(k).is_none(), "container {k}: {d}");
    }
    assert_eq!(c["name"], "nginx");

    // An explicit zero of a pointer field survives (defaulting would make it 1).
    let d0 = get(&s, "pb", "deployment", "d0");
    assert_eq!(d0["spec"]["replicas"], 0, "{d0}");

    let svc = get(&s, "pb", "service", "s1");
    for k in [
        "externalName",
        "externalTrafficPolicy",
        "loadBalancerIP",
        "healthCheckNodePort",
    ] {
        assert!(svc["spec"].get(k).is_none(), "spec.{k}: {svc}");
    }
    assert!(svc["spec"]["ports"][0].get("nodePort").is_none(), "{svc}");

    // No zero value anywhere in what the client sent (spec and metadata), but for the pointer
    // zeros that upstream's defaulting writes itself.
    let allowed = [
        ("deployment", "d0", "/spec/replicas: 0"),
        ("job", "j", "/spec/suspend: false"),
        ("job", "j", "/spec/manualSelector: false"),
    ];
    let mut found = Vec::new();
    for (kind, name) in OBJECTS {
        let mut v = get(&s, "pb", kind, name);
        if let Some(m) = v["metadata"].as_object_mut() {
            m.remove("managedFields");
        }
        let mut zeros = Vec::new();
        zero_values("/metadata", &v["metadata"], &mut zeros);
        zero_values("/spec", &v["spec"], &mut zeros);
        zeros.retain(|z| !allowed.contains(&(*kind, *name, z.as_str())));
        found.extend(zeros.into_iter().map(|z| format!("{kind}/{name} {z}")));
    }
    assert!(
        found.is_empty(),
        "zero values stored:\n{}",
        found.join("\n")
    );
}

#[test]
fn protobuf_and_json_bodies_store_the_same_objects() {
    let s = server();
    create_all(&s, 32, "pb");
    create_all(&s, 31, "js");
    for (kind, name) in OBJECTS {
        let pb = comparable(get(&s, "pb", kind, name));
        let js = comparable(get(&s, "js", kind, name));
        assert_eq!(
            pb,
            js,
            "{kind}/{name} from protobuf (kubectl 1.32):\n{}\nfrom JSON (kubectl 1.31):\n{}",
            serde_json::to_string_pretty(&pb).unwrap(),
            serde_json::to_string_pretty(&js).unwrap()
        );
    }
}
