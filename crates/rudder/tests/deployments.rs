//! The ReplicaSet and Deployment controllers through the real binary and kubectl, on the
//! server's own node (fake runtime): the seed's exercise 3 (create, scale, rolling update watched
//! with `rollout status`, history, undo, resources), `wait --for=condition=Available`, pods
//! replaced, adopted and released, pause/resume, restart, Recreate, the progress deadline,
//! minReadySeconds, quota refusals (ReplicaFailure), and
//! the events `kubectl describe` and `kubectl get events` show.

use std::path::Path;
use std::time::{Duration, Instant};

use rudder_testkit::RudderServer;
use serde_json::{json, Value};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_rudder"))
}

/// A server whose own node `box` runs pods with the fake runtime; its scheduler binds them.
struct Cluster {
    s: RudderServer,
}

impl Cluster {
    fn start() -> Cluster {
        let s = RudderServer::start(bin(), &["--node-name", "box", "--node-ip", "127.0.0.1"])
            .expect("start rudder server");
        s.kubectl(&["wait", "--for=condition=Ready", "node/box", "--timeout=60s"])
            .ok();
        Cluster { s }
    }
}

impl std::ops::Deref for Cluster {
    type Target = RudderServer;
    fn deref(&self) -> &RudderServer {
        &self.s
    }
}

fn get(s: &RudderServer, args: &[&str]) -> Value {
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", "json"]);
    serde_json::from_str(&s.kubectl(&all).ok()).expect("kubectl get -o json")
}

fn items(v: &Value) -> Vec<Value> {
    v["items"].as_array().cloned().unwrap_or_default()
}

/// Polls `what` until it holds (the deadline only bounds a broken run).
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while !check() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn condition(obj: &Value, kind: &str) -> Value {
    obj["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == kind))
        .cloned()
        .unwrap_or(Value::Null)
}

/// The pods with `selector` that are not being deleted.
fn live_pods(s: &RudderServer, selector: &str) -> Vec<Value> {
    items(&get(s, &["pods", "-l", selector]))
        .into_iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .collect()
}

/// The ReplicaSets with `selector`, oldest revision first.
fn replica_sets(s: &RudderServer, selector: &str) -> Vec<Value> {
    let mut v = items(&get(s, &["rs", "-l", selector]));
    v.sort_by_key(revision);
    v
}

fn revision(obj: &Value) -> i64 {
    obj["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn rollout_status(s: &RudderServer, d: &str) -> String {
    s.kubectl(&["rollout", "status", d, "--timeout=120s"]).ok()
}

fn images(s: &RudderServer, selector: &str) -> Vec<String> {
    let mut v: Vec<String> = live_pods(s, selector)
        .iter()
        .map(|p| {
            p["spec"]["containers"][0]["image"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    v.sort();
    v.dedup();
    v
}

#[test]
fn exercise_3_scale_roll_out_history_undo_and_resources() {
    let s = Cluster::start();
    s.kubectl(&[
        "create",
        "deployment",
        "web",
        "--image=nginx:1.25",
        "--replicas=3",
    ])
    .ok();
    s.kubectl(&[
        "wait",
        "--for=condition=Available",
        "deployment/web",
        "--timeout=120s",
    ])
    .ok();
    rollout_status(&s, "deployment/web");
    let d = get(&s, &["deployment", "web"]);
    assert_eq!(d["status"]["replicas"], 3, "{d}");
    assert_eq!(d["status"]["readyReplicas"], 3);
    assert_eq!(d["status"]["updatedReplicas"], 3);
    assert_eq!(
        d["status"]["observedGeneration"],
        d["metadata"]["generation"]
    );
    assert_eq!(
        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "1"
    );
    let progressing = condition(&d, "Progressing");
    assert_eq!(progressing["reason"], "NewReplicaSetAvailable", "{d}");
    assert_eq!(
        condition(&d, "Available")["reason"],
        "MinimumReplicasAvailable"
    );
    let rs = replica_sets(&s, "app=web");
    assert_eq!(rs.len(), 1);
    let hash = rs[0]["metadata"]["labels"]["pod-template-hash"]
        .as_str()
        .unwrap()
        .to_string();
    let rs1 = rs[0]["metadata"]["name"].as_str().unwrap().to_string();
    assert_eq!(rs1, format!("web-{hash}"));
    assert!(
        hash.chars()
            .all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)),
        "{hash}"
    );
    assert_eq!(
        rs[0]["spec"]["selector"]["matchLabels"]["pod-template-hash"],
        hash.as_str()
    );
    assert_eq!(
        rs[0]["metadata"]["ownerReferences"][0]["kind"],
        "Deployment"
    );
    assert_eq!(rs[0]["metadata"]["ownerReferences"][0]["controller"], true);
    assert_eq!(
        rs[0]["metadata"]["annotations"]["deployment.kubernetes.io/desired-replicas"],
        "3"
    );
    assert_eq!(
        rs[0]["metadata"]["annotations"]["deployment.kubernetes.io/max-replicas"],
        "4"
    );
    let pods = live_pods(&s, "app=web");
    assert_eq!(pods.len(), 3);
    for p in &pods {
        assert!(p["metadata"]["name"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{rs1}-")));
        assert_eq!(p["metadata"]["ownerReferences"][0]["name"], rs1.as_str());
        assert_eq!(
            p["metadata"]["ownerReferences"][0]["blockOwnerDeletion"],
            true
        );
        assert_eq!(p["status"]["phase"], "Running");
    }

    // Scale up to 5, then down to 2.
    s.kubectl(&["scale", "deployment", "web", "--replicas=5"])
        .ok();
    rollout_status(&s, "deployment/web");
    eventually("5 available", || {
        get(&s, &["deployment", "web"])["status"]["availableReplicas"] == 5
    });
    assert_eq!(live_pods(&s, "app=web").len(), 5);
    s.kubectl(&["scale", "deployment", "web", "--replicas=2"])
        .ok();
    eventually("scaled down to 2", || {
        let d = get(&s, &["deployment", "web"]);
        d["status"]["replicas"] == 2 && d["status"]["availableReplicas"] == 2
    });
    assert_eq!(live_pods(&s, "app=web").len(), 2);

    // A rolling update, watched with rollout status.
    s.kubectl(&["set", "image", "deployment/web", "nginx=nginx:1.26"])
        .ok();
    s.kubectl(&[
        "annotate",
        "deployment/web",
        "kubernetes.io/change-cause=image 1.26",
    ])
    .ok();
    let out = rollout_status(&s, "deployment/web");
    assert!(out.contains("successfully rolled out"), "{out}");
    eventually("only new pods left", || {
        images(&s, "app=web") == ["nginx:1.26"]
    });
    let rs = replica_sets(&s, "app=web");
    assert_eq!(rs.len(), 2);
    assert_eq!(revision(&rs[1]), 2);
    assert_eq!(rs[0]["spec"]["replicas"], 0);
    assert_eq!(rs[1]["spec"]["replicas"], 2);
    assert_eq!(
        rs[1]["metadata"]["annotations"]["kubernetes.io/change-cause"],
        "image 1.26"
    );
    let d = get(&s, &["deployment", "web"]);
    assert_eq!(
        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "2"
    );
    let history = s.kubectl(&["rollout", "history", "deployment/web"]).ok();
    assert!(history.contains("image 1.26"), "{history}");
    let revs: Vec<&str> = history
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.chars().all(|c| c.is_ascii_digit()))
        .collect();
    assert_eq!(revs, ["1", "2"], "{history}");

    // Back to the previous image: the first ReplicaSet comes back as revision 3.
    s.kubectl(&["rollout", "undo", "deployment/web"]).ok();
    rollout_status(&s, "deployment/web");
    eventually("only old-image pods left", || {
        images(&s, "app=web") == ["nginx:1.25"]
    });
    let rs = replica_sets(&s, "app=web");
    assert_eq!(rs.len(), 2);
    assert_eq!(rs[1]["metadata"]["name"], rs1.as_str());
    assert_eq!(revision(&rs[1]), 3);
    assert_eq!(
        rs[1]["metadata"]["annotations"]["deployment.kubernetes.io/revision-history"],
        "1"
    );
    let history = s.kubectl(&["rollout", "history", "deployment/web"]).ok();
    let revs: Vec<&str> = history
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.chars().all(|c| c.is_ascii_digit()))
        .collect();
    assert_eq!(revs, ["2", "3"], "{history}");

    // Requests and limits roll out too.
    s.kubectl(&[
        "set",
        "resources",
        "deployment/web",
        "--requests=cpu=100m,memory=64Mi",
        "--limits=cpu=200m,memory=128Mi",
    ])
    .ok();
    rollout_status(&s, "deployment/web");
    eventually("pods with resources", || {
        let pods = live_pods(&s, "app=web");
        pods.len() == 2
            && pods.iter().all(|p| {
                let r = &p["spec"]["containers"][0]["resources"];
                r["requests"]["cpu"] == "100m" && r["limits"]["memory"] == "128Mi"
            })
    });

    // The events tell the story.
    let describe = s.kubectl(&["describe", "deployment", "web"]).ok();
    assert!(describe.contains("ScalingReplicaSet"), "{describe}");
    assert!(
        describe.contains(&format!("Scaled up replica set {rs1} from 0 to 3")),
        "{describe}"
    );
    assert!(describe.contains("Scaled down replica set"), "{describe}");
    let events = s.kubectl(&["get", "events"]).ok();
    assert!(events.contains("SuccessfulCreate"), "{events}");
    assert!(events.contains(&format!("Created pod: {rs1}-")), "{events}");
    assert!(events.contains("SuccessfulDelete"), "{events}");
}

fn replica_set(name: &str, app: &str, replicas: u32) -> String {
    json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": app}},
                 "template": {"metadata": {"labels": {"app": app}},
                              "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}})
    .to_string()
}

#[test]
fn replica_sets_replace_adopt_and_release_pods() {
    let s = Cluster::start();
    // An orphan that matches, there before the ReplicaSet: adopted, so only one is created.
    let orphan = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "orphan", "namespace": "default", "labels": {"app": "solo"}},
        "spec": {"nodeName": "box", "containers": [{"name": "c", "image": "nginx"}]}});
    s.kubectl_stdin(&["create", "-f", "-"], &orphan.to_string())
        .ok();
    s.kubectl(&[
        "wait",
        "--for=condition=Ready",
        "pod/orphan",
        "--timeout=60s",
    ])
    .ok();
    s.kubectl_stdin(&["create", "-f", "-"], &replica_set("solo", "solo", 2))
        .ok();
    eventually("2 ready", || {
        get(&s, &["rs", "solo"])["status"]["readyReplicas"] == 2
    });
    let pod = get(&s, &["pod", "orphan"]);
    let owner = &pod["metadata"]["ownerReferences"][0];
    assert_eq!(owner["kind"], "ReplicaSet");
    assert_eq!(owner["name"], "solo");
    assert_eq!(owner["controller"], true);
    assert_eq!(owner["blockOwnerDeletion"], true);
    let pods = live_pods(&s, "app=solo");
    assert_eq!(pods.len(), 2);
    let made = pods
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .find(|n| n != "orphan")
        .unwrap();
    assert!(made.starts_with("solo-"), "{made}");
    let rs = get(&s, &["rs", "solo"]);
    assert_eq!(rs["status"]["replicas"], 2);
    assert_eq!(rs["status"]["fullyLabeledReplicas"], 2);
    assert_eq!(rs["status"]["availableReplicas"], 2);
    assert_eq!(
        rs["status"]["observedGeneration"],
        rs["metadata"]["generation"]
    );

    // A deleted pod is replaced.
    s.kubectl(&["delete", "pod", &made, "--wait=false"]).ok();
    eventually("a replacement", || {
        let pods = live_pods(&s, "app=solo");
        pods.len() == 2 && pods.iter().all(|p| p["metadata"]["name"] != made.as_str())
    });
    eventually("2 ready again", || {
        get(&s, &["rs", "solo"])["status"]["readyReplicas"] == 2
    });

    // A pod relabelled out of the selector is released and replaced.
    s.kubectl(&["label", "pod", "orphan", "app=gone", "--overwrite"])
        .ok();
    eventually("released", || {
        get(&s, &["pod", "orphan"])["metadata"]["ownerReferences"]
            .as_array()
            .is_none_or(|a| a.is_empty())
    });
    eventually("replaced after the release", || {
        live_pods(&s, "app=solo").len() == 2
    });
    assert_eq!(live_pods(&s, "app=gone").len(), 1);

    // Too many: the excess goes, the events say so.
    s.kubectl(&["scale", "rs", "solo", "--replicas=1"]).ok();
    eventually("scaled down to 1", || live_pods(&s, "app=solo").len() == 1);
    let describe = s.kubectl(&["describe", "rs", "solo"]).ok();
    assert!(describe.contains("SuccessfulCreate"), "{describe}");
    assert!(describe.contains("Created pod: solo-"), "{describe}");
    assert!(describe.contains("Deleted pod: solo-"), "{describe}");

    // Creation refused (a quota): FailedCreate and the ReplicaFailure condition, gone once
    // pods can be created again.
    s.kubectl(&["create", "quota", "two", "--hard=pods=2"]).ok();
    s.kubectl(&["scale", "rs", "solo", "--replicas=2"]).ok();
    eventually("ReplicaFailure", || {
        condition(&get(&s, &["rs", "solo"]), "ReplicaFailure")["reason"] == "FailedCreate"
    });
    let c = condition(&get(&s, &["rs", "solo"]), "ReplicaFailure");
    assert_eq!(c["status"], "True");
    assert!(
        c["message"]
            .as_str()
            .unwrap()
            .contains("exceeded quota: two"),
        "{c}"
    );
    let events = s.kubectl(&["get", "events"]).ok();
    assert!(events.contains("FailedCreate"), "{events}");
    assert!(events.contains("Error creating: pods \"solo-"), "{events}");
    s.kubectl(&["delete", "quota", "two"]).ok();
    eventually("2 ready without the quota", || {
        let rs = get(&s, &["rs", "solo"]);
        rs["status"]["readyReplicas"] == 2 && condition(&rs, "ReplicaFailure").is_null()
    });
}

#[test]
fn pause_resume_restart_recreate_and_the_progress_deadline() {
    let s = Cluster::start();
    s.kubectl(&[
        "create",
        "deployment",
        "api",
        "--image=nginx:1",
        "--replicas=2",
    ])
    .ok();
    s.kubectl(&[
        "wait",
        "--for=condition=Available",
        "deployment/api",
        "--timeout=120s",
    ])
    .ok();
    rollout_status(&s, "deployment/api");

    // Paused: a template change does not roll out.
    s.kubectl(&["rollout", "pause", "deployment/api"]).ok();
    s.kubectl(&["set", "image", "deployment/api", "nginx=nginx:2"])
        .ok();
    eventually("the change is observed", || {
        let d = get(&s, &["deployment", "api"]);
        d["status"]["observedGeneration"] == d["metadata"]["generation"]
            && condition(&d, "Progressing")["reason"] == "DeploymentPaused"
    });
    let d = get(&s, &["deployment", "api"]);
    assert_eq!(condition(&d, "Progressing")["status"], "Unknown");
    assert_eq!(
        condition(&d, "Progressing")["message"],
        "Deployment is paused"
    );
    assert_eq!(replica_sets(&s, "app=api").len(), 1);
    assert_eq!(images(&s, "app=api"), ["nginx:1"]);

    // Resumed: it does.
    s.kubectl(&["rollout", "resume", "deployment/api"]).ok();
    rollout_status(&s, "deployment/api");
    eventually("new image everywhere", || {
        images(&s, "app=api") == ["nginx:2"]
    });
    assert_eq!(replica_sets(&s, "app=api").len(), 2);

    // Restart: a new ReplicaSet for the same image.
    s.kubectl(&["rollout", "restart", "deployment/api"]).ok();
    rollout_status(&s, "deployment/api");
    let rs = replica_sets(&s, "app=api");
    assert_eq!(rs.len(), 3);
    assert!(rs[2]["spec"]["template"]["metadata"]["annotations"]
        ["kubectl.kubernetes.io/restartedAt"]
        .is_string());
    assert_eq!(rs[2]["spec"]["replicas"], 2);
    assert_eq!(revision(&rs[2]), 3);

    // revisionHistoryLimit: only one old ReplicaSet is kept.
    s.kubectl(&[
        "patch",
        "deployment/api",
        "-p",
        r#"{"spec":{"revisionHistoryLimit":1}}"#,
    ])
    .ok();
    eventually("old ReplicaSets cleaned up", || {
        replica_sets(&s, "app=api").len() == 2
    });

    // Recreate: the old pods go before the new ones come.
    let recreate = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "batch", "namespace": "default"},
        "spec": {"replicas": 2, "strategy": {"type": "Recreate"},
                 "selector": {"matchLabels": {"app": "batch"}},
                 "template": {"metadata": {"labels": {"app": "batch"}},
                              "spec": {"containers": [{"name": "c", "image": "busybox:1"}]}}}});
    s.kubectl_stdin(&["create", "-f", "-"], &recreate.to_string())
        .ok();
    rollout_status(&s, "deployment/batch");
    s.kubectl(&["set", "image", "deployment/batch", "c=busybox:2"])
        .ok();
    rollout_status(&s, "deployment/batch");
    eventually("recreated", || images(&s, "app=batch") == ["busybox:2"]);
    let events = s
        .kubectl(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=batch",
            "-o",
            "json",
        ])
        .ok();
    let notes: Vec<String> = items(&serde_json::from_str(&events).unwrap())
        .iter()
        .map(|e| e["message"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(
        notes
            .iter()
            .any(|n| n.starts_with("Scaled down replica set batch-") && n.ends_with("from 2 to 0")),
        "{notes:?}"
    );
    assert!(
        notes
            .iter()
            .any(|n| n.starts_with("Scaled up replica set batch-") && n.ends_with("from 0 to 2")),
        "{notes:?}"
    );

    // Pods that never become ready: the progress deadline passes and rollout status fails.
    let stuck = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "stuck", "namespace": "default"},
        "spec": {"replicas": 1, "progressDeadlineSeconds": 3,
                 "selector": {"matchLabels": {"app": "stuck"}},
                 "template": {"metadata": {"labels": {"app": "stuck"}},
                              "spec": {"readinessGates": [{"conditionType": "example.com/never"}],
                                       "containers": [{"name": "c", "image": "nginx"}]}}}});
    s.kubectl_stdin(&["create", "-f", "-"], &stuck.to_string())
        .ok();
    eventually("the deadline passes", || {
        condition(&get(&s, &["deployment", "stuck"]), "Progressing")["reason"]
            == "ProgressDeadlineExceeded"
    });
    let d = get(&s, &["deployment", "stuck"]);
    assert_eq!(condition(&d, "Progressing")["status"], "False");
    assert_eq!(condition(&d, "Available")["status"], "False");
    assert_eq!(d["status"]["unavailableReplicas"], 1);
    let err = s
        .kubectl(&["rollout", "status", "deployment/stuck", "--timeout=60s"])
        .fails();
    assert!(err.contains("exceeded its progress deadline"), "{err}");
}

#[test]
fn min_ready_seconds_hold_availability_back() {
    let s = Cluster::start();
    let d = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "slow", "namespace": "default"},
        "spec": {"replicas": 2, "minReadySeconds": 5,
                 "selector": {"matchLabels": {"app": "slow"}},
                 "template": {"metadata": {"labels": {"app": "slow"}},
                              "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}});
    s.kubectl_stdin(&["create", "-f", "-"], &d.to_string()).ok();
    // Ready first, available only minReadySeconds later.
    eventually("ready but not yet available", || {
        let d = get(&s, &["deployment", "slow"]);
        d["status"]["readyReplicas"] == 2
            && d["status"]["availableReplicas"].as_i64().unwrap_or(0) < 2
    });
    let rs = &replica_sets(&s, "app=slow")[0];
    assert_eq!(rs["spec"]["minReadySeconds"], 5);
    s.kubectl(&[
        "wait",
        "--for=condition=Available",
        "deployment/slow",
        "--timeout=120s",
    ])
    .ok();
    let out = rollout_status(&s, "deployment/slow");
    assert!(out.contains("successfully rolled out"), "{out}");
    let d = get(&s, &["deployment", "slow"]);
    assert_eq!(d["status"]["availableReplicas"], 2);
    assert_eq!(
        condition(&d, "Progressing")["reason"],
        "NewReplicaSetAvailable"
    );
}
