//! The Endpoints, EndpointSlice, ServiceAccount, root CA and disruption controllers through the
//! real binary and kubectl: pods bound to the server's own node (fake runtime, so they run and
//! get addresses), Services selecting them, namespaces getting their defaults back, and
//! `kubectl drain` evicting within a PodDisruptionBudget.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::Engine as _;
use rudder_testkit::RudderServer;
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

/// The object, or `None` while it does not exist.
fn try_get(s: &RudderServer, args: &[&str]) -> Option<Value> {
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", "json", "--ignore-not-found"]);
    let out = s.kubectl(&all).ok();
    (!out.trim().is_empty()).then(|| serde_json::from_str(&out).expect("kubectl get -o json"))
}

/// Polls `check` until it gives a value (the deadline only bounds a broken run).
fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// A server whose own node `box` runs pods with the fake runtime.
fn server_with_node() -> RudderServer {
    let s = RudderServer::start(bin(), &["--node-name", "box", "--node-ip", "127.0.0.1"])
        .expect("start rudder server");
    s.kubectl(&["wait", "--for=condition=Ready", "node/box", "--timeout=90s"])
        .ok();
    s
}

fn create(s: &RudderServer, obj: &Value) {
    s.kubectl_stdin(&["create", "-f", "-"], &obj.to_string())
        .ok();
}

/// A pod bound to `box` (no scheduler needed) with the given labels and container ports.
fn pod(name: &str, labels: Value, ports: Value, gate: bool) -> Value {
    let mut p = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": labels},
        "spec": {"nodeName": "box", "terminationGracePeriodSeconds": 1,
                 "containers": [{"name": "c", "image": "nginx", "ports": ports}]}});
    if gate {
        p["spec"]["readinessGates"] = json!([{"conditionType": "example.com/lb"}]);
    }
    p
}

fn set_gate(s: &RudderServer, pod: &str, status: &str) {
    let patch = json!({"status": {"conditions": [
        {"type": "example.com/lb", "status": status}]}});
    s.kubectl(&[
        "patch",
        "pod",
        pod,
        "--subresource=status",
        "--type=strategic",
        "-p",
        &patch.to_string(),
    ])
    .ok();
}

fn pod_ip(s: &RudderServer, name: &str) -> String {
    eventually(&format!("{name} has an IP"), || {
        get(s, &["pod", name])["status"]["podIP"]
            .as_str()
            .map(str::to_string)
    })
}

/// `[(ip, ready)]` of the addresses of an Endpoints subset offering `port`.
fn addresses_with_port(ep: &Value, port: i64) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    for sub in ep["subsets"].as_array().into_iter().flatten() {
        if !sub["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|p| p["port"] == port)
        {
            continue;
        }
        for (key, ready) in [("addresses", true), ("notReadyAddresses", false)] {
            for a in sub[key].as_array().into_iter().flatten() {
                out.push((a["ip"].as_str().unwrap_or("").to_string(), ready));
            }
        }
    }
    out.sort();
    out
}

/// One endpoint of a slice: its pod's name, the slice's ports (name, number), the endpoint.
type SliceEndpoint = (String, Vec<(String, i64)>, Value);

/// Every endpoint of the Service's slices, by pod name.
fn slice_endpoints(s: &RudderServer, svc: &str) -> Vec<SliceEndpoint> {
    let slices = get(
        s,
        &[
            "endpointslices",
            "-l",
            &format!("kubernetes.io/service-name={svc}"),
        ],
    );
    let mut out = Vec::new();
    for sl in slices["items"].as_array().into_iter().flatten() {
        let mut ports: Vec<(String, i64)> = sl["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| {
                (
                    p["name"].as_str().unwrap_or("").to_string(),
                    p["port"].as_i64().unwrap_or(0),
                )
            })
            .collect();
        ports.sort();
        for e in sl["endpoints"].as_array().into_iter().flatten() {
            let name = e["targetRef"]["name"].as_str().unwrap_or("").to_string();
            out.push((name, ports.clone(), e.clone()));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn endpoints_and_slices_follow_the_pods_of_a_service() {
    let s = server_with_node();
    let http = json!([{"name": "http", "containerPort": 8080}]);
    // web-0 has a readiness gate; web-2 lacks the named port "http".
    create(&s, &pod("web-0", json!({"app": "web"}), http.clone(), true));
    create(
        &s,
        &pod("web-1", json!({"app": "web"}), http.clone(), false),
    );
    create(
        &s,
        &pod(
            "web-2",
            json!({"app": "web"}),
            json!([{"name": "other", "containerPort": 7070}]),
            false,
        ),
    );
    create(&s, &pod("db", json!({"app": "db"}), http.clone(), false));
    // The gate is set once the agent has written the pod's status (a status written from an
    // older read could otherwise drop it).
    s.kubectl(&[
        "wait",
        "--for=condition=ContainersReady",
        "pod/web-0",
        "--timeout=90s",
    ])
    .ok();
    set_gate(&s, "web-0", "True");
    create(
        &s,
        &json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "default", "labels": {"tier": "front"}},
            "spec": {"selector": {"app": "web"},
                     "ports": [{"name": "http", "port": 80, "targetPort": "http"},
                               {"name": "metrics", "port": 9090, "targetPort": 9090}]}}),
    );
    for p in ["web-0", "web-1", "web-2"] {
        s.kubectl(&[
            "wait",
            "--for=condition=Ready",
            &format!("pod/{p}"),
            "--timeout=90s",
        ])
        .ok();
    }
    let (ip0, ip1, ip2) = (
        pod_ip(&s, "web-0"),
        pod_ip(&s, "web-1"),
        pod_ip(&s, "web-2"),
    );

    // Endpoints: web-0 and web-1 offer both ports, web-2 only the numeric one: two subsets.
    let ep = eventually("endpoints list the three pods", || {
        let ep = try_get(&s, &["endpoints", "web"])?;
        (addresses_with_port(&ep, 9090).len() == 3).then_some(ep)
    });
    let mut both = vec![(ip0.clone(), true), (ip1.clone(), true)];
    both.sort();
    assert_eq!(addresses_with_port(&ep, 8080), both, "{ep}");
    let mut all = vec![
        (ip0.clone(), true),
        (ip1.clone(), true),
        (ip2.clone(), true),
    ];
    all.sort();
    assert_eq!(addresses_with_port(&ep, 9090), all, "{ep}");
    let subsets = ep["subsets"].as_array().unwrap();
    assert_eq!(subsets.len(), 2, "{ep}");
    let addr = subsets
        .iter()
        .flat_map(|s| s["addresses"].as_array().unwrap().iter())
        .find(|a| a["ip"] == ip0.as_str())
        .unwrap();
    assert_eq!(addr["nodeName"], "box");
    assert_eq!(addr["targetRef"]["kind"], "Pod");
    assert_eq!(addr["targetRef"]["name"], "web-0");
    assert_eq!(ep["metadata"]["labels"]["tier"], "front");
    assert!(
        ep["metadata"]["annotations"]["endpoints.kubernetes.io/last-change-trigger-time"]
            .is_string(),
        "{ep}"
    );
    let table = s.kubectl(&["get", "endpoints", "web"]).ok();
    assert!(table.contains(&format!("{ip0}:")), "{table}");

    // EndpointSlices: labelled, owned by the Service, one per set of resolved ports.
    let eps = eventually("slices hold the three pods", || {
        let e = slice_endpoints(&s, "web");
        (e.len() == 3).then_some(e)
    });
    let names: Vec<&str> = eps.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(names, ["web-0", "web-1", "web-2"]);
    let two_ports = vec![("http".to_string(), 8080), ("metrics".to_string(), 9090)];
    assert_eq!(eps[0].1, two_ports);
    assert_eq!(eps[1].1, two_ports);
    assert_eq!(eps[2].1, vec![("metrics".to_string(), 9090)]);
    let e0 = &eps[0].2;
    assert_eq!(e0["addresses"], json!([ip0]));
    assert_eq!(
        e0["conditions"],
        json!({"ready": true, "serving": true, "terminating": false})
    );
    assert_eq!(e0["nodeName"], "box");
    let slices = get(
        &s,
        &["endpointslices", "-l", "kubernetes.io/service-name=web"],
    );
    let svc_uid = get(&s, &["service", "web"])["metadata"]["uid"].clone();
    for sl in slices["items"].as_array().unwrap() {
        let m = &sl["metadata"];
        assert!(m["name"].as_str().unwrap().starts_with("web-"), "{sl}");
        assert_eq!(
            m["labels"]["endpointslice.kubernetes.io/managed-by"],
            "endpointslice-controller.k8s.io"
        );
        assert_eq!(m["labels"]["tier"], "front");
        assert_eq!(m["ownerReferences"][0]["kind"], "Service");
        assert_eq!(m["ownerReferences"][0]["uid"], svc_uid);
        assert_eq!(m["ownerReferences"][0]["controller"], true);
        assert_eq!(sl["addressType"], "IPv4");
    }
    let table = s.kubectl(&["get", "endpointslices"]).ok();
    assert!(
        table.contains("8080,9090") || table.contains("9090,8080"),
        "{table}"
    );

    // web-0's gate turns False: it is not ready in both.
    set_gate(&s, "web-0", "False");
    eventually("web-0 is a not-ready address", || {
        let ep = try_get(&s, &["endpoints", "web"])?;
        addresses_with_port(&ep, 8080)
            .contains(&(ip0.clone(), false))
            .then_some(())
    });
    eventually("web-0's endpoint is not ready", || {
        let eps = slice_endpoints(&s, "web");
        let e = &eps.iter().find(|e| e.0 == "web-0")?.2;
        (e["conditions"] == json!({"ready": false, "serving": false, "terminating": false}))
            .then_some(())
    });

    // web-1 is deleted: it leaves both.
    s.kubectl(&["delete", "pod", "web-1", "--timeout=90s"]).ok();
    eventually("web-1 leaves the endpoints", || {
        let ep = try_get(&s, &["endpoints", "web"])?;
        (addresses_with_port(&ep, 9090).len() == 2).then_some(())
    });
    let ep = get(&s, &["endpoints", "web"]);
    assert_eq!(addresses_with_port(&ep, 8080), vec![(ip0.clone(), false)]);
    eventually("web-1 leaves the slices", || {
        let eps = slice_endpoints(&s, "web");
        (!eps.iter().any(|e| e.0 == "web-1")).then_some(())
    });

    // A Service without a selector keeps the Endpoints its user writes.
    create(
        &s,
        &json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "manual", "namespace": "default"},
            "spec": {"ports": [{"port": 5432}]}}),
    );
    create(
        &s,
        &json!({"apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": "manual", "namespace": "default"},
            "subsets": [{"addresses": [{"ip": "192.0.2.7"}], "ports": [{"port": 5432}]}]}),
    );

    // The Service goes: its Endpoints and slices go with it.
    s.kubectl(&["delete", "service", "web"]).ok();
    eventually("the endpoints and slices of web are gone", || {
        let slices = get(
            &s,
            &["endpointslices", "-l", "kubernetes.io/service-name=web"],
        );
        (try_get(&s, &["endpoints", "web"]).is_none()
            && slices["items"].as_array().is_some_and(|i| i.is_empty()))
        .then_some(())
    });
    let manual = get(&s, &["endpoints", "manual"]);
    assert_eq!(manual["subsets"][0]["addresses"][0]["ip"], "192.0.2.7");
}

#[test]
fn namespaces_get_their_default_service_account_and_root_ca_back() {
    let s = RudderServer::start(bin(), &["--disable-agent"]).expect("start rudder server");
    let kubeconfig = std::fs::read_to_string(&s.kubeconfig).expect("kubeconfig");
    let ca_b64 = kubeconfig
        .lines()
        .find_map(|l| l.trim().strip_prefix("certificate-authority-data:"))
        .expect("certificate-authority-data")
        .trim()
        .to_string();
    let ca = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(ca_b64)
            .unwrap(),
    )
    .unwrap();
    s.kubectl(&["create", "namespace", "team"]).ok();
    let cm = eventually("kube-root-ca.crt is published", || {
        try_get(&s, &["configmap", "kube-root-ca.crt", "-n", "team"])
    });
    assert_eq!(cm["data"]["ca.crt"], ca.as_str());
    assert!(cm["metadata"]["annotations"]["kubernetes.io/description"]
        .as_str()
        .unwrap()
        .starts_with("Contains a CA bundle that can be used to verify the kube-apiserver"));
    let sa = eventually("the default service account exists", || {
        try_get(&s, &["serviceaccount", "default", "-n", "team"])
    });
    // Both exist in the namespaces the server made itself too.
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        eventually(&format!("{ns} has both"), || {
            try_get(&s, &["configmap", "kube-root-ca.crt", "-n", ns])?;
            try_get(&s, &["serviceaccount", "default", "-n", ns])
        });
    }

    // Deleted: made again (a new object).
    s.kubectl(&["delete", "serviceaccount", "default", "-n", "team"])
        .ok();
    let again = eventually("the default service account comes back", || {
        try_get(&s, &["serviceaccount", "default", "-n", "team"])
            .filter(|n| n["metadata"]["uid"] != sa["metadata"]["uid"])
    });
    assert_eq!(again["metadata"]["name"], "default");
    s.kubectl(&["delete", "configmap", "kube-root-ca.crt", "-n", "team"])
        .ok();
    let again = eventually("kube-root-ca.crt comes back", || {
        try_get(&s, &["configmap", "kube-root-ca.crt", "-n", "team"])
            .filter(|n| n["metadata"]["uid"] != cm["metadata"]["uid"])
    });
    assert_eq!(again["data"]["ca.crt"], ca.as_str());
    // Changed: put back.
    s.kubectl(&[
        "patch",
        "configmap",
        "kube-root-ca.crt",
        "-n",
        "team",
        "--type=merge",
        "-p",
        r#"{"data":{"ca.crt":"forged"}}"#,
    ])
    .ok();
    eventually("kube-root-ca.crt is restored", || {
        let cm = try_get(&s, &["configmap", "kube-root-ca.crt", "-n", "team"])?;
        (cm["data"]["ca.crt"] == ca.as_str()).then_some(())
    });
}

fn pdb_status(s: &RudderServer) -> Value {
    get(s, &["pdb", "db"])["status"].clone()
}

#[test]
fn drain_evicts_within_the_pod_disruption_budget() {
    let s = server_with_node();
    for i in 0..3 {
        create(
            &s,
            &pod(&format!("db-{i}"), json!({"app": "db"}), json!([]), false),
        );
    }
    for i in 0..3 {
        s.kubectl(&[
            "wait",
            "--for=condition=Ready",
            &format!("pod/db-{i}"),
            "--timeout=90s",
        ])
        .ok();
    }
    create(
        &s,
        &json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": "db", "namespace": "default"},
            "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "db"}}}}),
    );
    let st = eventually("the budget has its status", || {
        let st = pdb_status(&s);
        (st["currentHealthy"] == 3).then_some(st)
    });
    assert_eq!(st["expectedPods"], 3);
    assert_eq!(st["desiredHealthy"], 2);
    assert_eq!(st["disruptionsAllowed"], 1);
    assert_eq!(st["observedGeneration"], 1);
    let cond = &st["conditions"][0];
    assert_eq!(cond["type"], "DisruptionAllowed");
    assert_eq!(cond["status"], "True");
    assert_eq!(cond["reason"], "SufficientPods");
    let table = s.kubectl(&["get", "pdb", "db"]).ok();
    assert!(
        table
            .lines()
            .nth(1)
            .is_some_and(|l| l.split_whitespace().collect::<Vec<_>>()[1..4] == ["2", "N/A", "1"]),
        "{table}"
    );

    // Drain: one pod may go; the others are refused and retried.
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("drain.out");
    let out = std::fs::File::create(&out_path).unwrap();
    let mut drain = Killed(
        s.kubectl_cmd(rudder_testkit::KUBECTL_DEFAULT_MINOR)
            .args([
                "drain",
                "box",
                "--ignore-daemonsets",
                "--force",
                "--delete-emptydir-data",
                "--timeout=180s",
            ])
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("kubectl drain"),
    );
    let refused = "Cannot evict pod as it would violate the pod's disruption budget";
    eventually("drain is refused by the budget", || {
        let text = std::fs::read_to_string(&out_path).ok()?;
        text.contains(refused).then_some(())
    });
    let st = eventually("one pod is evicted, the budget is spent", || {
        let pods = get(&s, &["pods", "-l", "app=db"]);
        let left = pods["items"].as_array()?.len();
        let st = pdb_status(&s);
        (left == 2 && st["currentHealthy"] == 2).then_some(st)
    });
    assert_eq!(st["disruptionsAllowed"], 0);
    assert_eq!(st["conditions"][0]["status"], "False");
    assert_eq!(st["conditions"][0]["reason"], "InsufficientPods");
    assert!(st["disruptedPods"].is_null(), "{st}");
    // Still refused a while later: the pods stay within the budget.
    assert!(drain.0.try_wait().unwrap().is_none(), "drain ended early");
    assert_eq!(
        get(&s, &["pods", "-l", "app=db"])["items"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // The budget is relaxed: the retries go through and the drain finishes.
    s.kubectl(&[
        "patch",
        "pdb",
        "db",
        "--type=merge",
        "-p",
        r#"{"spec":{"minAvailable":0}}"#,
    ])
    .ok();
    let status = eventually("the drain finishes", || drain.0.try_wait().unwrap());
    let text = std::fs::read_to_string(&out_path).unwrap();
    assert!(status.success(), "{text}");
    assert!(text.contains("node/box drained"), "{text}");
    assert!(text.contains("evicted"), "{text}");
    let pods = get(&s, &["pods", "-l", "app=db"]);
    assert!(pods["items"].as_array().unwrap().is_empty(), "{pods}");
    let st = pdb_status(&s);
    assert_eq!(st["observedGeneration"], 2);
    assert_eq!(st["expectedPods"], 0);
    assert_eq!(get(&s, &["node", "box"])["spec"]["unschedulable"], true);
}

/// A child process killed on drop (a failed assertion must not leave a kubectl running).
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn standalone_controllers_publish_the_ca_of_their_kubeconfig() {
    let s = RudderServer::start(bin(), &["--disable-agent", "--disable-controller-manager"])
        .expect("start rudder server");
    let ca = s.ca_data();
    let ca = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(ca.trim())
            .unwrap(),
    )
    .unwrap();
    let _controllers = Killed(
        std::process::Command::new(bin())
            .arg("controllers")
            .arg("--kubeconfig")
            .arg(&s.kubeconfig)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("rudder controllers"),
    );
    s.kubectl(&["create", "namespace", "solo"]).ok();
    let cm = eventually(
        "kube-root-ca.crt is published by rudder controllers",
        || try_get(&s, &["configmap", "kube-root-ca.crt", "-n", "solo"]),
    );
    assert_eq!(cm["data"]["ca.crt"], ca.as_str());
    assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"), "{ca}");
}
