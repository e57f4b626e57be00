//! The resource quota controller through the real binary and kubectl, on the server's own
//! node (fake runtime): a quota created in a namespace that already has objects shows their
//! usage (`kubectl describe quota`), a pod that finishes stops counting, deleted objects
//! (directly or by the garbage collector) release their usage, a changed `spec.hard` shows in
//! `status.hard`, scoped quotas count only the pods they cover, and a `status.used` written by
//! someone else is counted again at the next resync. Objects counted by name (config maps,
//! secrets, `count/…`) are released as they go, not at the next resync.

use std::path::Path;
use std::time::{Duration, Instant};

use rudder_testkit::RudderServer;
use serde_json::{json, Value};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_rudder"))
}

/// A server whose own node `box` runs pods with the fake runtime, every quota recounted every
/// `resync`.
fn cluster(resync: &str) -> RudderServer {
    let s = RudderServer::start(
        bin(),
        &[
            "--node-name",
            "box",
            "--node-ip",
            "127.0.0.1",
            "--resource-quota-sync-period",
            resync,
        ],
    )
    .expect("start rudder server");
    s.kubectl(&["wait", "--for=condition=Ready", "node/box", "--timeout=60s"])
        .ok();
    s
}

fn get(s: &RudderServer, args: &[&str]) -> Value {
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", "json"]);
    serde_json::from_str(&s.kubectl(&all).ok()).expect("kubectl get -o json")
}

/// Polls `what` until it holds (the deadline only bounds a broken run).
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while !check() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn apply(s: &RudderServer, obj: Value) {
    s.kubectl_stdin(&["apply", "-f", "-"], &obj.to_string())
        .ok();
}

/// A pod in `ns` that requests `cpu` and `memory` (none: BestEffort) and never restarts.
fn pod(ns: &str, name: &str, requests: Option<(&str, &str)>) -> Value {
    let resources = match requests {
        Some((cpu, memory)) => json!({"requests": {"cpu": cpu, "memory": memory}}),
        None => json!({}),
    };
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"restartPolicy": "Never",
            "containers": [{"name": "c", "image": "busybox", "resources": resources}]},
    })
}

fn quota(ns: &str, name: &str, hard: Value, scopes: &[&str]) -> Value {
    let mut q = json!({
        "apiVersion": "v1", "kind": "ResourceQuota",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"hard": hard},
    });
    if !scopes.is_empty() {
        q["spec"]["scopes"] = json!(scopes);
    }
    q
}

/// `status.used[key]` of quota `name` in `ns` (null while not there).
fn used(s: &RudderServer, ns: &str, name: &str, key: &str) -> Value {
    get(s, &["resourcequota", name, "-n", ns])["status"]["used"][key].clone()
}

/// Waits until quota `name` in `ns` has used `key` = `want`.
fn wait_used(s: &RudderServer, ns: &str, name: &str, key: &str, want: &str) {
    let mut last = Value::Null;
    eventually(&format!("{ns}/{name} used {key}={want}"), || {
        last = used(s, ns, name, key);
        last == json!(want)
    });
}

fn running(s: &RudderServer, ns: &str, name: &str) {
    eventually(&format!("pod {ns}/{name} Running"), || {
        get(s, &["pod", name, "-n", ns])["status"]["phase"] == "Running"
    });
}

/// Config maps, secrets and `count/<resource>` are counted from a watch of the quota's
/// namespace: with an hour between resyncs, what is created (by a user or by the root CA
/// publisher) or deleted shows in `status.used` at once.
#[test]
fn objects_counted_by_name_are_counted_and_released_as_they_come_and_go() {
    let s = cluster("1h");
    let ns = "names";
    s.kubectl(&["create", "namespace", ns]).ok();
    for cm in ["c1", "c2"] {
        s.kubectl(&["create", "configmap", cm, "-n", ns]).ok();
    }
    s.kubectl(&["create", "secret", "generic", "s1", "-n", ns])
        .ok();
    apply(
        &s,
        quota(
            ns,
            "names",
            json!({"configmaps": "10", "secrets": "5", "count/serviceaccounts": "5"}),
            &[],
        ),
    );
    // kube-root-ca.crt is the third config map, "default" the service account.
    wait_used(&s, ns, "names", "configmaps", "3");
    wait_used(&s, ns, "names", "secrets", "1");
    wait_used(&s, ns, "names", "count/serviceaccounts", "1");
    s.kubectl(&["delete", "configmap", "c1", "-n", ns]).ok();
    wait_used(&s, ns, "names", "configmaps", "2");
    s.kubectl(&["delete", "secret", "s1", "-n", ns]).ok();
    wait_used(&s, ns, "names", "secrets", "0");
    s.kubectl(&["create", "serviceaccount", "bot", "-n", ns])
        .ok();
    wait_used(&s, ns, "names", "count/serviceaccounts", "2");
    s.kubectl(&["delete", "serviceaccount", "bot", "-n", ns])
        .ok();
    wait_used(&s, ns, "names", "count/serviceaccounts", "1");
    // The root CA publisher puts its config map back; the count follows.
    s.kubectl(&["delete", "configmap", "kube-root-ca.crt", "-n", ns])
        .ok();
    eventually("kube-root-ca.crt put back", || {
        s.kubectl(&["get", "configmap", "kube-root-ca.crt", "-n", ns])
            .out
            .status
            .success()
    });
    wait_used(&s, ns, "names", "configmaps", "2");
}

#[test]
fn quota_usage_follows_objects_created_before_finished_and_deleted() {
    let s = cluster("2s");
    let ns = "team";
    s.kubectl(&["create", "namespace", ns]).ok();
    // Objects that exist before any quota.
    apply(&s, pod(ns, "a", Some(("100m", "64Mi"))));
    apply(&s, pod(ns, "b", Some(("250m", "128Mi"))));
    apply(&s, pod(ns, "idle", None));
    s.kubectl(&[
        "create",
        "secret",
        "generic",
        "s1",
        "-n",
        ns,
        "--from-literal=k=v",
    ])
    .ok();
    s.kubectl(&[
        "create",
        "secret",
        "generic",
        "s2",
        "-n",
        ns,
        "--from-literal=k=v",
    ])
    .ok();
    s.kubectl(&[
        "create",
        "deployment",
        "web",
        "-n",
        ns,
        "--image=nginx",
        "--replicas=1",
    ])
    .ok();
    for p in ["a", "b", "idle"] {
        running(&s, ns, p);
    }

    apply(
        &s,
        quota(
            ns,
            "compute",
            json!({"pods": "10", "requests.cpu": "2", "requests.memory": "1Gi"}),
            &["NotBestEffort"],
        ),
    );
    apply(
        &s,
        quota(ns, "besteffort", json!({"pods": "5"}), &["BestEffort"]),
    );
    apply(
        &s,
        quota(
            ns,
            "objects",
            json!({"secrets": "10", "count/deployments.apps": "3", "count/replicasets.apps": "5"}),
            &[],
        ),
    );

    // What was there before counts; the scopes split the pods.
    wait_used(&s, ns, "compute", "pods", "2");
    wait_used(&s, ns, "compute", "requests.cpu", "350m");
    wait_used(&s, ns, "compute", "requests.memory", "192Mi");
    wait_used(&s, ns, "besteffort", "pods", "2");
    wait_used(&s, ns, "objects", "secrets", "2");
    wait_used(&s, ns, "objects", "count/deployments.apps", "1");
    wait_used(&s, ns, "objects", "count/replicasets.apps", "1");
    let compute = get(&s, &["resourcequota", "compute", "-n", ns]);
    assert_eq!(compute["status"]["hard"], compute["spec"]["hard"]);
    // The deployment's pod is BestEffort too: both idle and its pod are in "besteffort".
    let describe = s.kubectl(&["describe", "quota", "compute", "-n", ns]).ok();
    let row = |name: &str| -> Vec<String> {
        describe
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no {name} row in:\n{describe}"))
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    assert_eq!(row("pods"), ["pods", "2", "10"], "{describe}");
    assert_eq!(
        row("requests.cpu"),
        ["requests.cpu", "350m", "2"],
        "{describe}"
    );
    assert!(describe.contains("NotBestEffort"), "{describe}");

    // A pod that finishes stops counting (the agent writes a terminal phase; the fake
    // runtime's containers never exit, so the test writes it as the agent would).
    s.kubectl(&[
        "patch",
        "pod",
        "a",
        "-n",
        ns,
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"phase":"Succeeded"}}"#,
    ])
    .ok();
    wait_used(&s, ns, "compute", "pods", "1");
    wait_used(&s, ns, "compute", "requests.cpu", "250m");
    wait_used(&s, ns, "compute", "requests.memory", "128Mi");

    // Deleting releases usage, also when the garbage collector deletes.
    s.kubectl(&["delete", "pod", "b", "-n", ns, "--wait=false"])
        .ok();
    wait_used(&s, ns, "compute", "pods", "0");
    wait_used(&s, ns, "compute", "requests.cpu", "0");
    s.kubectl(&["delete", "secret", "s1", "-n", ns]).ok();
    wait_used(&s, ns, "objects", "secrets", "1");
    s.kubectl(&["delete", "deployment", "web", "-n", ns]).ok();
    wait_used(&s, ns, "objects", "count/deployments.apps", "0");
    wait_used(&s, ns, "objects", "count/replicasets.apps", "0");
    wait_used(&s, ns, "besteffort", "pods", "1");

    // A new limit shows in status.hard.
    s.kubectl(&[
        "patch",
        "resourcequota",
        "compute",
        "-n",
        ns,
        "--type=merge",
        "-p",
        r#"{"spec":{"hard":{"pods":"4","limits.cpu":"3"}}}"#,
    ])
    .ok();
    eventually("status.hard follows spec.hard", || {
        let q = get(&s, &["resourcequota", "compute", "-n", ns]);
        q["status"]["hard"]["pods"] == "4"
            && q["status"]["hard"]["limits.cpu"] == "3"
            && q["status"]["used"]["limits.cpu"] == "0"
    });

    // A status.used written by someone else is counted again by the periodic resync.
    s.kubectl(&[
        "patch",
        "resourcequota",
        "besteffort",
        "-n",
        ns,
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"used":{"pods":"4"}}}"#,
    ])
    .ok();
    wait_used(&s, ns, "besteffort", "pods", "1");
}
