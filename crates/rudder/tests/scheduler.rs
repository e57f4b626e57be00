//! The scheduler through the real binary and kubectl, on fake nodes of `rudder agent`:
//! pods land where nodeSelector, node affinity, taints and requests say; a pod that fits
//! nowhere gets upstream's FailedScheduling event and PodScheduled=False and is placed as soon
//! as a node that fits joins; `rudder scheduler --kubeconfig` binds pods of a server started
//! with `--disable-scheduler`.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rudder_testkit::{AgentProcess, RudderServer};
use serde_json::{json, Value};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_rudder"))
}

/// A `rudder` child process (agent, scheduler), killed on drop.
struct Proc {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn agent(s: &RudderServer, name: &str, extra: &[&str]) -> AgentProcess {
    let token = s.node_token().expect("node token");
    let mut args = vec!["--node-name", name];
    args.extend_from_slice(extra);
    AgentProcess::start(bin(), s, &token, &args).expect("start rudder agent")
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
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn node_of(s: &RudderServer, pod: &str) -> Option<String> {
    get(s, &["pod", pod])["spec"]["nodeName"]
        .as_str()
        .map(str::to_string)
}

fn wait_ready(s: &RudderServer, node: &str) {
    eventually(&format!("node {node} registers"), || {
        s.kubectl(&["get", "node", node]).out.status.success()
    });
    s.kubectl(&[
        "wait",
        "--for=condition=Ready",
        &format!("node/{node}"),
        "--timeout=90s",
    ])
    .ok();
}

/// Creates a pod. It tolerates the `not-ready` NoSchedule taint, which a new node keeps until
/// the node lifecycle controller removes it (its timing is not what these tests are about).
fn create(s: &RudderServer, name: &str, spec: Value) {
    let mut spec = spec;
    if spec.get("containers").is_none() {
        spec["containers"] = json!([{"name": "c", "image": "nginx"}]);
    }
    let not_ready = json!({"key": "node.kubernetes.io/not-ready", "operator": "Exists",
                           "effect": "NoSchedule"});
    match spec["tolerations"].as_array_mut() {
        Some(t) => t.push(not_ready),
        None => spec["tolerations"] = json!([not_ready]),
    }
    let pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"}, "spec": spec});
    s.kubectl_stdin(&["create", "-f", "-"], &pod.to_string())
        .ok();
}

fn requests(cpu: &str) -> Value {
    json!([{"name": "c", "image": "nginx", "resources": {"requests": {"cpu": cpu}}}])
}

#[test]
fn pods_land_where_selectors_taints_and_requests_say_and_wait_for_a_node_that_fits() {
    let s = RudderServer::start(bin(), &["--disable-agent"]).expect("start rudder server");
    let _ssd = agent(
        &s,
        "ssd",
        &[
            "--node-labels",
            "disk=ssd",
            "--node-capacity",
            "cpu=1,memory=2Gi,pods=110",
        ],
    );
    let _gpu = agent(
        &s,
        "gpu",
        &[
            "--node-labels",
            "accel=gpu",
            "--node-taints",
            "dedicated=gpu:NoSchedule",
            "--node-capacity",
            "cpu=2,memory=4Gi,pods=110",
        ],
    );
    wait_ready(&s, "ssd");
    wait_ready(&s, "gpu");

    create(&s, "by-selector", json!({"nodeSelector": {"disk": "ssd"}}));
    create(
        &s,
        "by-affinity",
        json!({
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "gpu",
                             "effect": "NoSchedule"}],
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [
                    {"key": "accel", "operator": "In", "values": ["gpu"]}]}]}}}}),
    );
    // Untolerated taint: never the gpu node.
    create(&s, "plain", json!({"containers": requests("500m")}));
    for (pod, node) in [
        ("by-selector", "ssd"),
        ("by-affinity", "gpu"),
        ("plain", "ssd"),
    ] {
        eventually(&format!("{pod} is bound"), || node_of(&s, pod).is_some());
        assert_eq!(node_of(&s, pod).as_deref(), Some(node), "{pod}");
    }
    s.kubectl(&[
        "wait",
        "--for=condition=Ready",
        "pod/plain",
        "--timeout=90s",
    ])
    .ok();
    let events = s
        .kubectl(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=plain",
        ])
        .ok();
    assert!(
        events.contains("Successfully assigned default/plain to ssd"),
        "{events}"
    );

    // ssd has 500m left (plain took the rest); gpu is tainted: nowhere fits.
    create(&s, "big", json!({"containers": requests("1500m")}));
    let want = "0/2 nodes are available: 1 Insufficient cpu, 1 node(s) had untolerated taint \
                {dedicated: gpu}. preemption: 0/2 nodes are available: 1 No preemption victims \
                found for incoming pod, 1 Preemption is not helpful for scheduling.";
    eventually("big is reported unschedulable", || {
        get(&s, &["pod", "big"])["status"]["conditions"]
            .as_array()
            .is_some_and(|cs| {
                cs.iter().any(|c| {
                    c["type"] == "PodScheduled"
                        && c["status"] == "False"
                        && c["reason"] == "Unschedulable"
                        && c["message"] == want
                })
            })
    });
    let describe = s.kubectl(&["describe", "pod", "big"]).ok();
    assert!(describe.contains("FailedScheduling"), "{describe}");
    assert!(describe.contains("default-scheduler"), "{describe}");
    assert!(
        describe.contains("0/2 nodes are available: 1 Insufficient cpu"),
        "{describe}"
    );
    assert_eq!(node_of(&s, "big"), None);

    // A node that fits joins: the pod is placed when the node appears (well before the pool's
    // one-minute flush).
    let joined = Instant::now();
    let _large = agent(
        &s,
        "large",
        &["--node-capacity", "cpu=4,memory=8Gi,pods=110"],
    );
    eventually("big is bound", || node_of(&s, "big").is_some());
    assert!(
        joined.elapsed() < Duration::from_secs(55),
        "placed by the periodic flush, not by the node's arrival"
    );
    assert_eq!(node_of(&s, "big").as_deref(), Some("large"));
    s.kubectl(&["wait", "--for=condition=Ready", "pod/big", "--timeout=90s"])
        .ok();
    let cond = get(&s, &["pod", "big"])["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "PodScheduled").cloned())
        .expect("PodScheduled condition");
    assert_eq!(cond["status"], "True");
    // The binding replaced the Unschedulable report whole, as upstream's does.
    assert_eq!(cond.get("reason"), None, "{cond}");
    assert_eq!(cond.get("message"), None, "{cond}");
}

#[test]
fn a_standalone_scheduler_binds_pods_of_a_server_without_one() {
    let s = RudderServer::start(
        bin(),
        &[
            "--disable-scheduler",
            "--node-name",
            "box",
            "--node-ip",
            "127.0.0.1",
        ],
    )
    .expect("start rudder server");
    wait_ready(&s, "box");
    create(&s, "p", json!({}));
    assert_eq!(node_of(&s, "p"), None, "no scheduler runs in the server");
    let dir = tempfile::tempdir().expect("dir");
    let child = Command::new(bin())
        .arg("scheduler")
        .arg("--kubeconfig")
        .arg(&s.kubeconfig)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start rudder scheduler");
    let _sched = Proc { child, _dir: dir };
    eventually("p is bound", || node_of(&s, "p").is_some());
    assert_eq!(node_of(&s, "p").as_deref(), Some("box"));
    s.kubectl(&["wait", "--for=condition=Ready", "pod/p", "--timeout=90s"])
        .ok();
}
