//! Preemption through the real binary and kubectl, on two small nodes of `rudder agent`: a pod
//! of a high PriorityClass that fits nowhere gets `nominatedNodeName`, the scheduler deletes a
//! lower-priority victim (with a `Preempted` event), avoiding the one a PodDisruptionBudget
//! protects, and the pod then runs there; a pod whose class says `preemptionPolicy: Never`
//! stays Pending with upstream's FailedScheduling message.

use std::path::Path;
use std::time::{Duration, Instant};

use rudder_testkit::{AgentProcess, RudderServer};
use serde_json::{json, Value};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_rudder"))
}

fn agent(s: &RudderServer, name: &str) -> AgentProcess {
    let token = s.node_token().expect("node token");
    AgentProcess::start(
        bin(),
        s,
        &token,
        &[
            "--node-name",
            name,
            "--node-capacity",
            "cpu=1,memory=2Gi,pods=110",
        ],
    )
    .expect("start rudder agent")
}

fn get(s: &RudderServer, args: &[&str]) -> Value {
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", "json"]);
    serde_json::from_str(&s.kubectl(&all).ok()).expect("kubectl get -o json")
}

/// Polls `what` until it holds (the deadline only bounds a broken run).
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !check() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn wait_ready(s: &RudderServer, node: &str) {
    eventually(&format!("node {node} registers"), || {
        s.kubectl(&["get", "node", node]).out.status.success()
    });
    s.kubectl(&[
        "wait",
        "--for=condition=Ready",
        &format!("node/{node}"),
        "--timeout=120s",
    ])
    .ok();
}

fn apply(s: &RudderServer, obj: Value) {
    s.kubectl_stdin(&["apply", "-f", "-"], &obj.to_string())
        .ok();
}

/// Tolerates the `not-ready` NoSchedule taint a new node keeps until the node lifecycle
/// controller removes it (not what this test is about).
fn tolerations() -> Value {
    json!([{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoSchedule"}])
}

fn container() -> Value {
    json!([{"name": "c", "image": "nginx", "resources": {"requests": {"cpu": "600m"}}}])
}

/// A Deployment of one low-priority pod asking for 600m (two never fit on one node); its pods
/// may carry a finalizer that keeps them visible once deleted.
fn deployment(name: &str, finalizer: bool) -> Value {
    let mut d = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"priorityClassName": "low", "terminationGracePeriodSeconds": 1,
                    "tolerations": tolerations(), "containers": container()}}}});
    if finalizer {
        d["spec"]["template"]["metadata"]["finalizers"] = json!([HOLD]);
    }
    d
}

const HOLD: &str = "rudder.test/hold";

fn pod(name: &str, class: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"priorityClassName": class, "tolerations": tolerations(),
            "containers": container()}})
}

/// The running pod of a Deployment: (name, node).
fn running_pod_of(s: &RudderServer, app: &str) -> Option<(String, String)> {
    let list = get(s, &["pods", "-l", &format!("app={app}")]);
    list["items"].as_array()?.iter().find_map(|p| {
        if p["status"]["phase"] != "Running" || !p["metadata"]["deletionTimestamp"].is_null() {
            return None;
        }
        Some((
            p["metadata"]["name"].as_str()?.to_string(),
            p["spec"]["nodeName"].as_str()?.to_string(),
        ))
    })
}

fn scheduled_condition(p: &Value) -> Option<Value> {
    p["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "PodScheduled")
        .cloned()
}

#[test]
fn a_high_priority_pod_preempts_an_unprotected_victim_and_runs_in_its_place() {
    let s = RudderServer::start(bin(), &["--disable-agent"]).expect("start rudder server");
    let _a = agent(&s, "small-a");
    let _b = agent(&s, "small-b");
    wait_ready(&s, "small-a");
    wait_ready(&s, "small-b");

    for (name, value, never) in [
        ("low", 10, false),
        ("high", 1000, false),
        ("polite", 1000, true),
    ] {
        let mut pc = json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
            "metadata": {"name": name}, "value": value});
        if never {
            pc["preemptionPolicy"] = json!("Never");
        }
        apply(&s, pc);
    }
    apply(&s, deployment("guarded", false));
    apply(&s, deployment("filler", true));
    apply(
        &s,
        json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": "guarded", "namespace": "default"},
            "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "guarded"}}}}),
    );
    let mut guarded = None;
    let mut filler = None;
    eventually("both low-priority pods run", || {
        guarded = running_pod_of(&s, "guarded");
        filler = running_pod_of(&s, "filler");
        guarded.is_some() && filler.is_some()
    });
    let (guarded, gnode) = guarded.unwrap();
    let (filler, fnode) = filler.unwrap();
    assert_ne!(gnode, fnode, "600m twice never fits in one cpu");
    let low = get(&s, &["pod", &filler]);
    assert_eq!(low["spec"]["priority"], 10, "{low}");
    // The budget protects the guarded pod: no disruption allowed.
    eventually("the budget is computed", || {
        let pdb = get(&s, &["pdb", "guarded"]);
        pdb["status"]["currentHealthy"] == 1 && pdb["status"]["disruptionsAllowed"] == 0
    });

    // preemptionPolicy: Never: no victims, upstream's message, Pending.
    apply(&s, pod("polite", "polite"));
    let never = "0/2 nodes are available: 2 Insufficient cpu. preemption: not eligible due to \
                 preemptionPolicy=Never.";
    eventually("the polite pod is reported unschedulable", || {
        scheduled_condition(&get(&s, &["pod", "polite"]))
            .is_some_and(|c| c["status"] == "False" && c["message"] == never)
    });
    let describe = s.kubectl(&["describe", "pod", "polite"]).ok();
    assert!(describe.contains("FailedScheduling"), "{describe}");
    assert!(describe.contains("preemptionPolicy=Never"), "{describe}");

    // A pod of the high class preempts the filler (no budget), not the guarded pod.
    apply(&s, pod("urgent", "high"));
    // The victim (held by its finalizer) is marked as upstream marks it, and being deleted.
    eventually("the victim is marked and deleted", || {
        let v = get(&s, &["pod", &filler]);
        !v["metadata"]["deletionTimestamp"].is_null()
            && v["status"]["conditions"].as_array().is_some_and(|cs| {
                cs.iter().any(|c| {
                    c["type"] == "DisruptionTarget"
                        && c["status"] == "True"
                        && c["reason"] == "PreemptionByScheduler"
                        && c["message"]
                            == "default-scheduler: preempting to accommodate a higher priority pod"
                })
            })
    });
    s.kubectl(&[
        "patch",
        "pod",
        &filler,
        "--type=json",
        "-p",
        r#"[{"op": "remove", "path": "/metadata/finalizers"}]"#,
    ])
    .ok();
    let mut nominated = None;
    eventually("the urgent pod runs", || {
        let p = get(&s, &["pod", "urgent"]);
        if let Some(n) = p["status"]["nominatedNodeName"].as_str() {
            nominated = Some(n.to_string());
        }
        p["status"]["phase"] == "Running"
    });
    let urgent = get(&s, &["pod", "urgent"]);
    assert_eq!(urgent["spec"]["priority"], 1000, "{urgent}");
    assert_eq!(urgent["spec"]["nodeName"].as_str(), Some(fnode.as_str()));
    assert_eq!(
        nominated.as_deref(),
        Some(fnode.as_str()),
        "nominatedNodeName"
    );
    assert_eq!(
        urgent["status"]["nominatedNodeName"].as_str(),
        Some(fnode.as_str())
    );
    let uid = urgent["metadata"]["uid"].as_str().unwrap().to_string();

    // The victim was deleted, with upstream's event; the protected pod is untouched.
    eventually("the victim is gone", || {
        !s.kubectl(&["get", "pod", &filler]).out.status.success()
    });
    let want = format!("Preempted by pod {uid} on node {fnode}");
    eventually("the victim's Preempted event", || {
        get(
            &s,
            &[
                "events",
                "--field-selector",
                &format!("involvedObject.name={filler}"),
            ],
        )["items"]
            .as_array()
            .is_some_and(|es| {
                es.iter()
                    .any(|e| e["reason"] == "Preempted" && e["message"] == want.as_str())
            })
    });
    // Its FailedScheduling report says what failed, and nothing of preemption (it succeeded).
    let events = get(
        &s,
        &["events", "--field-selector", "involvedObject.name=urgent"],
    );
    assert!(
        events["items"]
            .as_array()
            .is_some_and(|es| es.iter().any(|e| {
                e["reason"] == "FailedScheduling"
                    && e["message"] == "0/2 nodes are available: 2 Insufficient cpu."
            })),
        "{events}"
    );
    let kept = get(&s, &["pod", &guarded]);
    assert!(kept["metadata"]["deletionTimestamp"].is_null(), "{kept}");
    assert_eq!(kept["status"]["phase"], "Running");

    // The room went to the urgent pod, not to the polite one of equal priority nor to the
    // filler's replacement: both wait, the replacement told no victim is of lower priority.
    let polite = get(&s, &["pod", "polite"]);
    assert!(polite["spec"]["nodeName"].is_null(), "{polite}");
    let replacement = "0/2 nodes are available: 2 Insufficient cpu. preemption: 0/2 nodes are \
                       available: 2 No preemption victims found for incoming pod.";
    eventually("the filler's replacement is reported unschedulable", || {
        get(&s, &["pods", "-l", "app=filler"])["items"]
            .as_array()
            .is_some_and(|ps| {
                ps.iter().any(|p| {
                    p["spec"]["nodeName"].is_null()
                        && scheduled_condition(p).is_some_and(|c| c["message"] == replacement)
                })
            })
    });
}
