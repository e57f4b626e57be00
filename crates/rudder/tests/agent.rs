//! The node agent with the fake runtime, through the real binary and kubectl: the server's own
//! node, agents joining with the token (`--fake-nodes`), pods bound to a node running and being
//! deleted, and a silent node going Unknown with its pods evicted by the NoExecute taint.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use rudder_testkit::{AgentProcess, RudderServer};
use serde_json::{json, Value};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_rudder"))
}

/// A `rudder agent` process joined to `s`, killed on drop.
fn agent(s: &RudderServer, token: &str, extra: &[&str]) -> AgentProcess {
    AgentProcess::start(bin(), s, token, extra).expect("start rudder agent")
}

fn get(s: &RudderServer, args: &[&str]) -> Value {
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", "json"]);
    serde_json::from_str(&s.kubectl(&all).ok()).expect("kubectl get -o json")
}

/// The condition of `kind` in an object's status.
fn condition(obj: &Value, kind: &str) -> Value {
    obj["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == kind))
        .cloned()
        .unwrap_or_else(|| panic!("no {kind} condition in {obj}"))
}

/// Polls `what` until it holds (the deadline only bounds a broken run).
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn bound_pod(name: &str, node: &str) -> String {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": "default"},
           "spec": {"nodeName": node,
                    "initContainers": [{"name": "setup", "image": "busybox"}],
                    "containers": [{"name": "web", "image": "nginx"},
                                   {"name": "side", "image": "busybox"}]}})
    .to_string()
}

#[test]
fn the_servers_own_node_runs_bound_pods_and_deletes_them() {
    let s = RudderServer::start(bin(), &["--node-name", "box", "--node-ip", "127.0.0.1"])
        .expect("start rudder server");
    s.kubectl(&["wait", "--for=condition=Ready", "node/box", "--timeout=60s"])
        .ok();
    let node = get(&s, &["node", "box"]);
    let labels = &node["metadata"]["labels"];
    assert_eq!(labels["kubernetes.io/hostname"], "box");
    assert_eq!(labels["node-role.kubernetes.io/control-plane"], "true");
    assert_eq!(node["spec"]["podCIDR"], "10.42.0.0/24");
    assert_eq!(
        node["status"]["nodeInfo"]["containerRuntimeVersion"],
        "fake://0.1.0"
    );
    assert_eq!(node["status"]["addresses"][0]["address"], "127.0.0.1");
    // Ready, so the not-ready taint TaintNodesByCondition put on at creation is gone.
    eventually("the not-ready taint is removed", || {
        get(&s, &["node", "box"])["spec"]["taints"].is_null()
    });
    let lease = get(&s, &["lease", "box", "-n", "kube-node-lease"]);
    assert_eq!(lease["spec"]["holderIdentity"], "box");
    assert_eq!(lease["metadata"]["ownerReferences"][0]["kind"], "Node");

    s.kubectl_stdin(&["create", "-f", "-"], &bound_pod("p1", "box"))
        .ok();
    s.kubectl(&["wait", "--for=condition=Ready", "pod/p1", "--timeout=60s"])
        .ok();
    let pod = get(&s, &["pod", "p1"]);
    let st = &pod["status"];
    assert_eq!(st["phase"], "Running");
    assert_eq!(st["podIP"], "10.42.0.2");
    assert_eq!(st["hostIP"], "127.0.0.1");
    let init = &st["initContainerStatuses"][0];
    assert_eq!(init["state"]["terminated"]["reason"], "Completed");
    for (i, name) in ["web", "side"].iter().enumerate() {
        let c = &st["containerStatuses"][i];
        assert_eq!(c["name"], *name);
        assert_eq!(c["ready"], true);
        assert!(c["state"]["running"]["startedAt"].is_string(), "{c}");
        assert!(
            c["containerID"].as_str().unwrap().starts_with("fake://"),
            "{c}"
        );
    }
    let types: Vec<&str> = st["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "True")
        .map(|c| c["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "PodReadyToStartContainers",
            "Initialized",
            "Ready",
            "ContainersReady"
        ]
    );
    let wide = s.kubectl(&["get", "pod", "p1", "-o", "wide"]).ok();
    assert!(
        wide.contains("2/2") && wide.contains("Running") && wide.contains("box"),
        "{wide}"
    );
    // The node's own server answers for logs, the fake runtime's record of the container.
    assert_eq!(
        s.kubectl(&["logs", "p1", "-c", "web"]).ok(),
        "fake container web created\nfake container started\n"
    );
    // (kubectl picks the first container itself; the API asks for one.)
    let err = s
        .kubectl(&["get", "--raw", "/api/v1/namespaces/default/pods/p1/log"])
        .fails();
    assert!(
        err.contains("a container name must be specified for pod p1, choose one of: [web side] or one of the init containers: [setup]"),
        "{err}"
    );
    // The node records what it did, as a kubelet does.
    let events = s
        .kubectl(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=p1",
        ])
        .ok();
    for what in ["Created container: web", "Started container side"] {
        assert!(events.contains(what), "{what} not in:\n{events}");
    }

    // A readiness gate holds Ready back until its condition is True.
    let gated = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "gated", "namespace": "default"},
        "spec": {"nodeName": "box", "readinessGates": [{"conditionType": "example.com/lb"}],
                 "containers": [{"name": "c", "image": "nginx"}]}});
    s.kubectl_stdin(&["create", "-f", "-"], &gated.to_string())
        .ok();
    s.kubectl(&[
        "wait",
        "--for=condition=ContainersReady",
        "pod/gated",
        "--timeout=60s",
    ])
    .ok();
    let r = condition(&get(&s, &["pod", "gated"]), "Ready");
    assert_eq!(r["status"], "False");
    assert_eq!(r["reason"], "ReadinessGatesNotReady");

    // Deleting waits for the agent to stop the containers, then the pod is gone.
    s.kubectl(&["delete", "pod", "p1", "--timeout=60s"]).ok();
    let left = s.kubectl(&["get", "pods", "-o", "name"]).ok();
    assert_eq!(left.trim(), "pod/gated");
    // Its address is given out again only after the others.
    s.kubectl_stdin(&["create", "-f", "-"], &bound_pod("p2", "box"))
        .ok();
    s.kubectl(&["wait", "--for=condition=Ready", "pod/p2", "--timeout=60s"])
        .ok();
    assert_eq!(get(&s, &["pod", "p2"])["status"]["podIP"], "10.42.0.4");
}

#[test]
fn agents_join_with_the_token_and_silent_nodes_lose_their_pods() {
    let s = RudderServer::start(
        bin(),
        &[
            "--disable-agent",
            "--node-monitor-grace-period",
            "2s",
            "--default-unreachable-toleration-seconds",
            "1",
        ],
    )
    .expect("start rudder server");
    let token = s.node_token().expect("node token");

    // A wrong secret with the right CA hash: refused, and nothing is registered.
    let (hash, _) = token.split_once("::").unwrap();
    let out = Command::new(bin())
        .args([
            "agent",
            "--server",
            &s.url,
            "--token",
            &format!("{hash}::server:wrong"),
        ])
        .args(["--node-name", "intruder"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("the server refused the token (401 Unauthorized)"),
        "{err}"
    );
    // A token naming another CA: the agent does not trust this server.
    let other = format!("K10{}::server:whatever", "0".repeat(64));
    let out = Command::new(bin())
        .args([
            "agent",
            "--server",
            &s.url,
            "--token",
            &other,
            "--node-name",
            "intruder",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("is not the one the token names"), "{err}");
    assert!(s
        .kubectl(&["get", "node", "intruder"])
        .fails()
        .contains("NotFound"));

    let mut sim = agent(
        &s,
        &token,
        &[
            "--node-name",
            "sim",
            "--fake-nodes",
            "3",
            "--node-labels",
            "tier=edge,topology.kubernetes.io/zone=a",
            "--node-taints",
            "dedicated=ml:NoSchedule",
            "--node-capacity",
            "cpu=4,memory=8Gi,pods=20",
        ],
    );
    for i in 0..3 {
        let node = format!("node/sim-{i}");
        // `kubectl wait` refuses a node that is not registered yet.
        eventually(&format!("{node} registered"), || {
            s.kubectl(&["get", &node]).out.status.success()
        });
        s.kubectl(&["wait", "--for=condition=Ready", &node, "--timeout=60s"])
            .ok();
    }
    let node = get(&s, &["node", "sim-1"]);
    assert_eq!(node["metadata"]["labels"]["tier"], "edge");
    assert_eq!(node["status"]["capacity"]["cpu"], "4");
    assert_eq!(node["status"]["allocatable"]["memory"], "8Gi");
    assert_eq!(node["status"]["allocatable"]["pods"], "20");
    assert_eq!(node["spec"]["taints"][0]["key"], "dedicated");
    let cidrs: Vec<String> = (0..3)
        .map(|i| get(&s, &["node", &format!("sim-{i}")])["spec"]["podCIDR"].to_string())
        .collect();
    assert!(
        cidrs[0] != cidrs[1] && cidrs[1] != cidrs[2] && cidrs[0] != cidrs[2],
        "{cidrs:?}"
    );

    // Each fake node is its own identity, held to the Node authorizer.
    let pod = bound_pod("p", "sim-2");
    s.kubectl_stdin(&["create", "-f", "-"], &pod).ok();
    s.kubectl(&["wait", "--for=condition=Ready", "pod/p", "--timeout=60s"])
        .ok();

    // A node in another zone stays up: were every node of every zone silent, the node
    // lifecycle controller would take it for its own view being cut off and evict nothing.
    let _home = agent(&s, &token, &["--node-name", "home"]);
    eventually("node/home registered", || {
        s.kubectl(&["get", "node/home"]).out.status.success()
    });
    s.kubectl(&[
        "wait",
        "--for=condition=Ready",
        "node/home",
        "--timeout=60s",
    ])
    .ok();

    // The agent dies: the nodes go Unknown, get the unreachable taints, and the pod (which
    // tolerates unreachable for 1 s, by the DefaultTolerationSeconds flag) is evicted.
    let _ = sim.child.kill();
    let _ = sim.child.wait();
    s.kubectl(&[
        "wait",
        "--for=condition=Ready=Unknown",
        "node/sim-2",
        "--timeout=60s",
    ])
    .ok();
    let ready = condition(&get(&s, &["node", "sim-2"]), "Ready");
    assert_eq!(ready["reason"], "NodeStatusUnknown");
    assert_eq!(ready["message"], "Kubelet stopped posting node status.");
    eventually("the unreachable NoExecute taint", || {
        get(&s, &["node", "sim-2"])["spec"]["taints"]
            .as_array()
            .is_some_and(|t| {
                t.iter().any(|t| {
                    t["key"] == "node.kubernetes.io/unreachable" && t["effect"] == "NoExecute"
                })
            })
    });
    eventually("the pod is marked for deletion", || {
        get(&s, &["pod", "p"])["metadata"]["deletionTimestamp"].is_string()
    });
    let target = condition(&get(&s, &["pod", "p"]), "DisruptionTarget");
    assert_eq!(target["reason"], "DeletionByTaintManager");
    let events = s
        .kubectl(&["get", "events", "--field-selector", "involvedObject.name=p"])
        .ok();
    assert!(events.contains("TaintManagerEviction"), "{events}");

    // The agent comes back (the same machine: its data dir holds the node password the names
    // are bound to): Ready again, the taints go, and the pod it finds being deleted is
    // finished off.
    sim.restart(
        bin(),
        &s,
        &token,
        &["--node-name", "sim", "--fake-nodes", "3"],
    )
    .expect("restart rudder agent");
    s.kubectl(&[
        "wait",
        "--for=condition=Ready",
        "node/sim-2",
        "--timeout=60s",
    ])
    .ok();
    s.kubectl(&["wait", "--for=delete", "pod/p", "--timeout=60s"])
        .ok();
    eventually("the condition taints are removed", || {
        get(&s, &["node", "sim-2"])["spec"]["taints"]
            .as_array()
            .is_some_and(|t| t.len() == 1 && t[0]["key"] == "dedicated")
    });
}

/// A kubeconfig for `s` with the client certificate an agent in `dir` holds.
fn node_kubeconfig(s: &RudderServer, dir: &Path) -> std::path::PathBuf {
    let ca = s.ca_data();
    let tls = dir.join("agent/tls");
    let path = dir.join("node-kubeconfig.yaml");
    let config = json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": s.url, "certificate-authority-data": ca}}],
        "users": [{"name": "node", "user": {
            "client-certificate": tls.join("client.crt"),
            "client-key": tls.join("client.key")}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "node"}}],
        "current-context": "c",
    });
    std::fs::write(&path, config.to_string()).unwrap();
    path
}

/// A joined agent gets its own certificates (the token only joins), is then `system:node:NAME`
/// held by NodeRestriction to its own Node and pods, renews its certificates before they
/// expire, and keeps its name from another machine.
#[test]
fn joined_agents_act_with_their_own_renewed_certificates_on_their_own_node_only() {
    let s = RudderServer::start(
        bin(),
        &[
            "--node-name",
            "srv",
            "--node-ip",
            "127.0.0.1",
            "--cluster-signing-duration",
            "20s",
        ],
    )
    .expect("start rudder server");
    let token = s.node_token().expect("node token");
    let a = agent(&s, &token, &["--node-name", "n1"]);
    eventually("node/n1 registered", || {
        s.kubectl(&["get", "node/n1"]).out.status.success()
    });
    s.kubectl(&["wait", "--for=condition=Ready", "node/n1", "--timeout=60s"])
        .ok();
    // The server's node gets its role from the server, the agent's none.
    eventually("the server's node labelled control-plane", || {
        get(&s, &["node", "srv"])["metadata"]["labels"]["node-role.kubernetes.io/control-plane"]
            == "true"
    });

    let kc = node_kubeconfig(&s, a.dir());
    let kc = kc.to_str().unwrap();
    let as_node = |args: &[&str]| {
        let mut all = vec!["--kubeconfig", kc];
        all.extend_from_slice(args);
        s.kubectl(&all)
    };
    let who = as_node(&["auth", "whoami", "-o", "json"]).ok();
    let who: Value = serde_json::from_str(&who).unwrap();
    assert_eq!(who["status"]["userInfo"]["username"], "system:node:n1");
    assert_eq!(
        who["status"]["userInfo"]["groups"],
        json!(["system:nodes", "system:authenticated"])
    );

    // NodeRestriction: its own Node only, not its taints nor the labels that steer workloads.
    let err = as_node(&["label", "node", "srv", "x=y"]).fails();
    assert!(
        err.contains(r#"node "n1" is not allowed to modify node "srv""#),
        "{err}"
    );
    let err = as_node(&["label", "node", "n1", "node-role.kubernetes.io/worker="]).fails();
    assert!(
        err.contains("is not allowed to modify labels: node-role.kubernetes.io/worker"),
        "{err}"
    );
    let err = as_node(&["taint", "node", "n1", "a=b:NoSchedule"]).fails();
    assert!(
        err.contains(r#"node "n1" is not allowed to modify taints"#),
        "{err}"
    );
    as_node(&["label", "node", "n1", "tier=edge"]).ok();
    // Pods bound to another node are not its to delete; its node password is not its to read.
    s.kubectl_stdin(&["create", "-f", "-"], &bound_pod("p", "srv"))
        .ok();
    let err = as_node(&["delete", "pod", "p"]).fails();
    assert!(
        err.contains(r#"node "n1" can only delete pods with spec.nodeName set to itself"#),
        "{err}"
    );
    as_node(&[
        "get",
        "secret",
        "-n",
        "kube-system",
        "n1.node-password.rudder",
    ])
    .fails();

    // Another machine (its own data dir, so another node password) cannot take the name while
    // the node exists.
    let other = tempfile::tempdir().unwrap();
    let out = Command::new(bin())
        .args(["agent", "--server", &s.url, "--token", &token])
        .args([
            "--node-name",
            "n1",
            "--runtime",
            "fake",
            "--kubelet-port",
            "0",
        ])
        .arg("--data-dir")
        .arg(other.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(r#"node "n1" is already registered by another machine"#),
        "{err}"
    );

    // The certificates are renewed (new keys) before they expire, and the agent goes on with
    // the new ones: past the first certificate's end, the node still renews its lease.
    let crt = a.dir().join("agent/tls/client.crt");
    let first = std::fs::read_to_string(&crt).unwrap();
    let since = Instant::now();
    eventually("the client certificate renewed", || {
        std::fs::read_to_string(&crt).unwrap() != first
    });
    std::thread::sleep(Duration::from_secs(20).saturating_sub(since.elapsed()));
    let lease =
        || get(&s, &["lease", "-n", "kube-node-lease", "n1"])["spec"]["renewTime"].to_string();
    let renewed = lease();
    eventually(
        "the node's lease renewed past the first certificate",
        || lease() != renewed,
    );
    let who = as_node(&[
        "auth",
        "whoami",
        "-o",
        "jsonpath={.status.userInfo.username}",
    ])
    .ok();
    assert_eq!(who, "system:node:n1");
}

/// `kubectl debug` adds an ephemeral container through `pods/ephemeralcontainers`, the agent
/// runs it and reports it apart from the pod's containers; that subresource may only add
/// ephemeral containers, and a pod's own update may not touch them.
#[test]
fn ephemeral_containers_come_only_through_their_subresource() {
    let s = RudderServer::start(bin(), &["--node-name", "box", "--node-ip", "127.0.0.1"])
        .expect("start rudder server");
    let resources: Value =
        serde_json::from_str(&s.kubectl(&["get", "--raw", "/api/v1"]).ok()).unwrap();
    let sub = resources["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "pods/ephemeralcontainers")
        .expect("pods/ephemeralcontainers in discovery");
    assert_eq!(sub["kind"], "Pod");
    assert_eq!(sub["verbs"], json!(["get", "patch", "update"]));

    s.kubectl_stdin(&["create", "-f", "-"], &bound_pod("p", "box"))
        .ok();
    s.kubectl(&["wait", "--for=condition=Ready", "pod/p", "--timeout=60s"])
        .ok();
    // A pod's own update may not add one.
    let err = s
        .kubectl(&[
            "patch",
            "pod",
            "p",
            "--type=merge",
            "-p",
            r#"{"spec":{"ephemeralContainers":[{"name":"x","image":"busybox"}]}}"#,
        ])
        .fails();
    assert!(err.contains("pod updates may not change fields"), "{err}");

    for minor in [27, 32, 33] {
        let name = format!("dbg{minor}");
        s.kubectl_version(
            minor,
            &["debug", "p", "--image=busybox", "-c", &name, "--target=web"],
        )
        .ok();
        eventually(&format!("{name} runs"), || {
            get(&s, &["pod", "p"])["status"]["ephemeralContainerStatuses"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["name"] == name.as_str() && c["state"]["running"].is_object())
        });
    }
    let pod = get(&s, &["pod", "p"]);
    let dbg = &pod["spec"]["ephemeralContainers"][0];
    assert_eq!(dbg["targetContainerName"], "web");
    assert_eq!(dbg["terminationMessagePolicy"], "File", "defaulted: {dbg}");
    let status = &pod["status"]["ephemeralContainerStatuses"][0];
    assert_eq!(status["ready"], false);
    assert!(status.get("started").is_none(), "{status}");
    assert_eq!(
        pod["status"]["containerStatuses"].as_array().unwrap().len(),
        2
    );
    // Still Ready, still two containers for kubectl.
    let table = s.kubectl(&["get", "pod", "p"]).ok();
    assert!(
        table.contains("2/2") && table.contains("Running"),
        "{table}"
    );
    assert_eq!(
        s.kubectl(&["logs", "p", "-c", "dbg27"]).ok(),
        "fake container dbg27 created\nfake container started\n"
    );

    // Through the subresource: GET is the pod; removing or changing one is refused.
    let path = "/api/v1/namespaces/default/pods/p/ephemeralcontainers";
    let got: Value = serde_json::from_str(&s.kubectl(&["get", "--raw", path]).ok()).unwrap();
    assert_eq!(got["kind"], "Pod");
    let replace =
        |pod: &Value| s.kubectl_stdin(&["replace", "--raw", path, "-f", "-"], &pod.to_string());
    let mut removed = got.clone();
    removed["spec"]["ephemeralContainers"]
        .as_array_mut()
        .unwrap()
        .remove(0);
    let err = replace(&removed).fails();
    assert!(
        err.contains(r#"existing ephemeral containers "dbg27" may not be removed"#),
        "{err}"
    );
    let mut changed = got.clone();
    changed["spec"]["ephemeralContainers"][0]["image"] = json!("other");
    let err = replace(&changed).fails();
    assert!(
        err.contains(r#"spec.ephemeralContainers[dbg27]: Forbidden: existing ephemeral containers "dbg27" may not be changed"#),
        "{err}"
    );
    let mut bad = got.clone();
    bad["spec"]["ephemeralContainers"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "web", "image": "busybox", "ports": [{"containerPort": 80}]}));
    let err = replace(&bad).fails();
    for what in [
        r#"spec.ephemeralContainers[3].name: Duplicate value: "web""#,
        "spec.ephemeralContainers[3].ports: Forbidden: cannot be set for an Ephemeral Container",
    ] {
        assert!(err.contains(what), "{what} not in {err}");
    }
    // Everything but the ephemeral containers is kept from the stored pod.
    let mut more = got.clone();
    more["metadata"]["labels"] = json!({"sneaky": "yes"});
    more["spec"]["ephemeralContainers"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "late", "image": "busybox"}));
    let out: Value = serde_json::from_str(&replace(&more).ok()).unwrap();
    assert_eq!(out["spec"]["ephemeralContainers"][3]["name"], "late");
    assert!(out["metadata"]["labels"].get("sneaky").is_none(), "{out}");
    let fields = out["metadata"]["managedFields"].as_array().unwrap();
    assert!(
        fields
            .iter()
            .any(|f| f["subresource"] == "ephemeralcontainers"),
        "{fields:?}"
    );
}

/// `metrics.k8s.io` is discovered and answered from the agents: the node's own figures
/// (read from /proc), none for pods of the fake runtime, which runs no processes.
#[test]
fn kubectl_top_reads_node_metrics_from_the_agents() {
    let s = RudderServer::start(bin(), &["--node-name", "box", "--node-ip", "127.0.0.1"])
        .expect("start rudder server");
    s.kubectl(&["wait", "--for=condition=Ready", "node/box", "--timeout=60s"])
        .ok();
    let list: Value = serde_json::from_str(
        &s.kubectl(&["get", "--raw", "/apis/metrics.k8s.io/v1beta1/nodes"])
            .ok(),
    )
    .unwrap();
    assert_eq!(list["kind"], "NodeMetricsList");
    let item = &list["items"][0];
    assert_eq!(item["metadata"]["name"], "box");
    assert!(item["window"].as_str().unwrap().ends_with('s'), "{item}");
    for q in ["cpu", "memory"] {
        assert!(item["usage"][q].is_string(), "{item}");
    }
    let one: Value = serde_json::from_str(
        &s.kubectl(&["get", "--raw", "/apis/metrics.k8s.io/v1beta1/nodes/box"])
            .ok(),
    )
    .unwrap();
    assert_eq!(
        (&one["kind"], &one["apiVersion"]),
        (&json!("NodeMetrics"), &json!("metrics.k8s.io/v1beta1"))
    );
    let err = s
        .kubectl(&["get", "--raw", "/apis/metrics.k8s.io/v1beta1/nodes/nope"])
        .fails();
    assert!(
        err.contains(r#"nodemetrics.metrics.k8s.io "nope" not found"#),
        "{err}"
    );
    for minor in [27, 32, 33] {
        let top = s.kubectl_version(minor, &["top", "node"]).ok();
        let line = top
            .lines()
            .find(|l| l.starts_with("box "))
            .unwrap_or_else(|| {
                panic!("1.{minor}: {top}");
            });
        // NAME CPU(cores) CPU% MEMORY(bytes) MEMORY%
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert!(cols[1].ends_with('m') && cols[2].ends_with('%'), "{line}");
        assert!(cols[3].ends_with("Mi") && cols[4].ends_with('%'), "{line}");
        assert_ne!(cols[3], "0Mi", "{line}");
    }
    s.kubectl_stdin(&["create", "-f", "-"], &bound_pod("p", "box"))
        .ok();
    s.kubectl(&["wait", "--for=condition=Ready", "pod/p", "--timeout=60s"])
        .ok();
    let pods: Value = serde_json::from_str(
        &s.kubectl(&[
            "get",
            "--raw",
            "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods",
        ])
        .ok(),
    )
    .unwrap();
    assert_eq!(pods["kind"], "PodMetricsList");
    assert_eq!(pods["items"], json!([]));
    let err = s.kubectl(&["top", "pod", "p"]).fails();
    assert!(
        err.contains(r#"podmetrics.metrics.k8s.io "default/p" not found"#),
        "{err}"
    );
    // Read only.
    let err = s
        .kubectl_stdin(
            &[
                "create",
                "--raw",
                "/apis/metrics.k8s.io/v1beta1/nodes",
                "-f",
                "-",
            ],
            "{}",
        )
        .fails();
    assert!(
        err.contains("MethodNotAllowed") || err.contains("not allowed"),
        "{err}"
    );
}
