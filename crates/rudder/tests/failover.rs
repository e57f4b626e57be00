//! Failover with the default settings, through the real binary and kubectl, on fake nodes of
//! separate `rudder agent` processes: a killed agent's Deployment pods run again on the other
//! agent's nodes, `kubectl drain` moves a node's Deployment pods, and an agent that is merely
//! slow (stopped for 2 s of every 3) is never taken for lost. `scripts/bench failover` times
//! the same chain; nothing here is timed.

use std::path::Path;
use std::time::{Duration, Instant};

use rudder_testkit::{AgentProcess, RudderServer};
use serde_json::{json, Value};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_rudder"))
}

fn get(s: &RudderServer, args: &[&str]) -> Value {
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", "json"]);
    serde_json::from_str(&s.kubectl(&all).ok()).expect("kubectl get -o json")
}

/// Polls until `check` holds (the deadline only bounds a broken run).
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !check() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// A server with every failover setting at its default, and agents `names` of two fake
/// nodes each, all Ready.
fn cluster(names: &[&str]) -> (RudderServer, Vec<AgentProcess>) {
    let s = RudderServer::start(bin(), &["--disable-agent"]).expect("start rudder server");
    let token = s.node_token().expect("node token");
    let agents = names
        .iter()
        .map(|name| {
            AgentProcess::start(
                bin(),
                &s,
                &token,
                &["--node-name", name, "--fake-nodes", "2"],
            )
            .expect("start rudder agent")
        })
        .collect();
    for name in names {
        for i in 0..2 {
            let node = format!("node/{name}-{i}");
            eventually(&format!("{node} registered"), || {
                s.kubectl(&["get", &node]).out.status.success()
            });
            s.kubectl(&["wait", "--for=condition=Ready", &node, "--timeout=120s"])
                .ok();
        }
    }
    (s, agents)
}

/// The Deployment's pods that are not being deleted, with their nodes.
fn live_pods(s: &RudderServer, app: &str) -> Vec<(String, String)> {
    get(s, &["pods", "-l", &format!("app={app}")])["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .map(|p| {
            let name = p["metadata"]["name"].as_str().unwrap_or("").to_string();
            let node = p["spec"]["nodeName"].as_str().unwrap_or("").to_string();
            (name, node)
        })
        .collect()
}

fn ready_replicas(s: &RudderServer, deployment: &str) -> i64 {
    get(s, &["deployment", deployment])["status"]["readyReplicas"]
        .as_i64()
        .unwrap_or(0)
}

#[test]
fn a_killed_agents_pods_run_again_elsewhere_and_drain_moves_deployment_pods() {
    let (s, mut agents) = cluster(&["a", "b"]);
    // Every replica on a's nodes first: b's are cordoned while the Deployment rolls out.
    for node in ["b-0", "b-1"] {
        s.kubectl(&["cordon", node]).ok();
    }
    s.kubectl(&[
        "create",
        "deployment",
        "web",
        "--image=nginx",
        "--replicas=4",
    ])
    .ok();
    s.kubectl(&["rollout", "status", "deployment/web", "--timeout=120s"])
        .ok();
    let before = live_pods(&s, "web");
    assert_eq!(before.len(), 4, "{before:?}");
    assert!(
        before.iter().all(|(_, n)| n.starts_with("a-")),
        "{before:?}"
    );
    for node in ["b-0", "b-1"] {
        s.kubectl(&["uncordon", node]).ok();
    }

    // a's process dies (SIGKILL): its nodes go Unknown, their pods are evicted, and the
    // ReplicaSet's replacements run on b's nodes.
    let a = &mut agents[0];
    a.child.kill().expect("kill agent a");
    a.child.wait().expect("reap agent a");
    eventually("four Ready replicas, all on b's nodes", || {
        let pods = live_pods(&s, "web");
        ready_replicas(&s, "web") == 4
            && pods.len() == 4
            && pods.iter().all(|(_, n)| n.starts_with("b-"))
    });
    // The old pods were marked for deletion by the taint manager, not left running beside
    // their replacements in the API.
    for (name, _) in &before {
        let pod = s.kubectl(&["get", "pod", name, "-o", "json"]);
        if pod.out.status.success() {
            let pod: Value = serde_json::from_str(&pod.ok()).expect("pod json");
            assert!(pod["metadata"]["deletionTimestamp"].is_string(), "{pod}");
        }
    }
    let unknown = get(&s, &["node", "a-0"])["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready").cloned())
        .expect("a Ready condition");
    assert_eq!(unknown["status"], "Unknown", "{unknown}");

    // Draining b-0 evicts its Deployment pods; they come back on b-1.
    s.kubectl(&[
        "drain",
        "b-0",
        "--ignore-daemonsets",
        "--delete-emptydir-data",
        "--timeout=120s",
    ])
    .ok();
    assert_eq!(
        get(&s, &["node", "b-0"])["spec"]["unschedulable"],
        json!(true)
    );
    eventually("four Ready replicas, all on b-1", || {
        let pods = live_pods(&s, "web");
        ready_replicas(&s, "web") == 4 && pods.len() == 4 && pods.iter().all(|(_, n)| n == "b-1")
    });
}

#[test]
fn a_slow_agent_is_not_taken_for_lost() {
    let (s, agents) = cluster(&["slow"]);
    s.kubectl(&[
        "create",
        "deployment",
        "steady",
        "--image=nginx",
        "--replicas=2",
    ])
    .ok();
    s.kubectl(&["rollout", "status", "deployment/steady", "--timeout=120s"])
        .ok();
    let pods_before = live_pods(&s, "steady");
    let ready_since = |node: &str| {
        get(&s, &["node", node])["status"]["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready").cloned())
            .expect("a Ready condition")
    };
    let before: Vec<Value> = ["slow-0", "slow-1"].map(ready_since).to_vec();

    // The agent's process is stopped for 2 s of every 3 for 24 s: slower than any real
    // loaded machine keeps up, yet never silent for the node grace period (5 s).
    let pid = agents[0].child.id() as libc::pid_t;
    for _ in 0..8 {
        // SAFETY: signals to a child process this test started and still owns.
        unsafe { libc::kill(pid, libc::SIGSTOP) };
        std::thread::sleep(Duration::from_secs(2));
        // SAFETY: as above.
        unsafe { libc::kill(pid, libc::SIGCONT) };
        std::thread::sleep(Duration::from_secs(1));
    }

    let after: Vec<Value> = ["slow-0", "slow-1"].map(ready_since).to_vec();
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(a["status"], "True", "{a}");
        assert_eq!(
            a["lastTransitionTime"], b["lastTransitionTime"],
            "the node's readiness changed meanwhile: {b} then {a}"
        );
    }
    for node in ["slow-0", "slow-1"] {
        let taints = get(&s, &["node", node])["spec"]["taints"].clone();
        assert!(
            taints.as_array().is_none_or(|t| t.is_empty()),
            "{node}: {taints}"
        );
    }
    assert_eq!(
        live_pods(&s, "steady"),
        pods_before,
        "the pods were replaced"
    );
    assert_eq!(ready_replicas(&s, "steady"), 2);
}
