//! The pod network and Services: a pod's address from the node's podCIDR; ClusterIPs,
//! NodePorts, LoadBalancers, hostPorts and the cluster DNS; two nodes on one network and on
//! two (the overlay), a lost node's pods coming back; `rudder uninstall`. Each test builds its
//! own world of network namespaces.

use super::*;

#[test]
fn a_pod_gets_an_address_from_the_pod_cidr_and_answers_on_it() {
    in_new_netns(|| {
        let (s, dir, log, _agent) = cluster("net-node");
        eventually("node Ready", &log, || {
            s.kubectl(&["get", "node", "net-node", "-o", "json"])
                .stdout()
                .contains("\"KubeletReady\"")
        });
        let web = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "httpd", "image": BUSYBOX, "command": ["sh", "-c",
                        "mkdir -p /www && echo hello-from-pod > /www/index.html && \
                         exec httpd -f -p 8080 -h /www"]}]}});
        s.kubectl_stdin(&["apply", "-f", "-"], &web.to_string())
            .ok();
        eventually("web Running", &log, || running(&s, "web"));
        let pod = get(&s, "pod/web");
        let ip = pod["status"]["podIP"].as_str().unwrap().to_string();
        let cidr = get(&s, "node/net-node")["spec"]["podCIDR"]
            .as_str()
            .unwrap()
            .to_string();
        // The first address of the podCIDR is the bridge's; pods get the ones after it.
        let prefix = cidr.rsplit_once('.').unwrap().0;
        assert!(ip.starts_with(&format!("{prefix}.")), "{ip} not in {cidr}");
        assert_eq!(pod["status"]["podIPs"], json!([{"ip": ip}]));
        assert_ne!(pod["status"]["hostIP"], json!(ip));
        // From the node (this thread is in the test's namespace): through the bridge to the
        // pod's own address.
        let mut body = String::new();
        eventually("the pod answers on its address", &log, || {
            match http_get(&format!("{ip}:8080")) {
                Ok(b) => {
                    body = b;
                    true
                }
                Err(_) => false,
            }
        });
        assert!(body.ends_with("\r\n\r\nhello-from-pod\n"), "{body:?}");
        s.kubectl(&["delete", "pod", "web", "--timeout=60s"]).ok();
        let view = CriView::of(dir.path());
        eventually("the sandbox removed", &log, || view.sandboxes().is_empty());
    });
}

/// The answers of `n` GETs of `addr`, each different one once.
fn answers(addr: &str, n: usize) -> std::collections::BTreeSet<String> {
    (0..n).filter_map(|_| body(addr)).collect()
}

#[test]
fn services_answer_on_cluster_ips_node_ports_load_balancers_and_by_name() {
    let node_ip = "192.168.77.1";
    in_node_netns(node_ip, move || {
        let (s, _dir, log, _agent) = cluster_with("svc-node", &["--node-ip", node_ip], |_| {});
        // Ready while /ready exists.
        deploy_web(
            &s,
            json!({"readinessProbe": {"exec": {"command": ["cat", "/ready"]},
                                      "periodSeconds": 1, "failureThreshold": 1}}),
            json!({}),
        );
        let pods = || -> std::collections::BTreeSet<String> {
            ready_pods(&s, "web").into_keys().collect()
        };
        eventually("two ready replicas", &log, || pods().len() == 2);
        let replicas = pods();
        let svc = get(&s, "svc/web");
        let cluster_ip = svc["spec"]["clusterIP"].as_str().unwrap().to_string();
        let node_port = svc["spec"]["ports"][0]["nodePort"].as_u64().unwrap();
        // The seed's first exercise: the NodePort on the node's address, and the cluster IP,
        // each answered by every replica.
        for addr in [format!("{node_ip}:{node_port}"), format!("{cluster_ip}:80")] {
            eventually(&format!("every replica answers at {addr}"), &log, || {
                answers(&addr, 20) == replicas
            });
        }
        // `rudder service` prints where it answers.
        let out = Command::new(bin())
            .args(["service", "web", "--kubeconfig"])
            .arg(&s.kubeconfig)
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("http://{node_ip}:{node_port}\nhttp://{cluster_ip}:80\n"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let missing = Command::new(bin())
            .args(["service", "nothing", "-n", "default", "--kubeconfig"])
            .arg(&s.kubeconfig)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&missing.stderr);
        assert!(
            !missing.status.success()
                && err.contains("service nothing not found in namespace default"),
            "{err}"
        );
        // From a pod, by name through the cluster DNS, short and full; a pod reaching itself
        // through its Service (hairpin) is answered too.
        let client = replicas.iter().next().unwrap().clone();
        for url in ["http://web", "http://web.default.svc.cluster.local"] {
            for _ in 0..4 {
                let got = s
                    .kubectl(&["exec", &client, "--", "timeout", "10", "wget", "-qO-", url])
                    .ok();
                assert!(replicas.contains(got.trim()), "{url}: {got:?}");
            }
        }
        let lookup = s
            .kubectl(&[
                "exec",
                &client,
                "--",
                "nslookup",
                "web.default.svc.cluster.local",
            ])
            .ok();
        assert!(lookup.contains(&cluster_ip), "{lookup}");
        // A headless Service names its pods; an ExternalName Service is a CNAME.
        let others = json!({"apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web-pods"},
             "spec": {"clusterIP": "None", "selector": {"app": "web"}, "ports": [{"port": 8080}]}},
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "alias"},
             "spec": {"type": "ExternalName", "externalName": "web.default.svc.cluster.local"}}]});
        s.kubectl_stdin(&["apply", "-f", "-"], &others.to_string())
            .ok();
        let pod_ips: Vec<String> = get(&s, "pods")["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["status"]["podIP"].as_str().unwrap().to_string())
            .collect();
        eventually("the headless Service's pods by name", &log, || {
            let out = s
                .kubectl(&[
                    "exec",
                    &client,
                    "--",
                    "nslookup",
                    "web-pods.default.svc.cluster.local",
                ])
                .stdout();
            pod_ips.iter().all(|ip| out.contains(ip.as_str()))
        });
        let alias = s
            .kubectl(&[
                "exec",
                &client,
                "--",
                "nslookup",
                "alias.default.svc.cluster.local",
            ])
            .stdout();
        assert!(
            alias.contains("web.default.svc.cluster.local"),
            "a CNAME to the external name: {alias}"
        );
        // A LoadBalancer gets the node's address and answers there.
        s.kubectl(&[
            "expose",
            "deployment",
            "web",
            "--name=web-lb",
            "--type=LoadBalancer",
            "--port=8081",
            "--target-port=8080",
        ])
        .ok();
        eventually("the load balancer's ingress", &log, || {
            get(&s, "svc/web-lb")["status"]["loadBalancer"]["ingress"]
                == json!([{"ip": node_ip, "ipMode": "VIP"}])
        });
        let lb = s.kubectl(&["get", "svc", "web-lb"]).ok();
        assert!(lb.contains(node_ip), "{lb}");
        eventually("every replica answers at the load balancer", &log, || {
            answers(&format!("{node_ip}:8081"), 20) == replicas
        });
        // A pod that stops being ready gets no more traffic.
        let gone = replicas.iter().last().unwrap().clone();
        s.kubectl(&["exec", &gone, "--", "rm", "/ready"]).ok();
        let rest: std::collections::BTreeSet<String> =
            replicas.iter().filter(|r| **r != gone).cloned().collect();
        eventually("only the ready replica answers", &log, || {
            answers(&format!("{cluster_ip}:80"), 10) == rest
        });
        // A hostPort answers on the node's address (the CNI portmap plugin), and stops, its
        // rules gone, with the pod.
        let mut hp: Value = serde_json::from_str(&pod(
            "hostport",
            "echo hostport > /index.html && exec httpd -f -p 8080 -h /",
            "Always",
        ))
        .unwrap();
        hp["spec"]["hostNetwork"] = json!(false);
        hp["spec"]["containers"][0]["ports"] = json!([{"containerPort": 8080, "hostPort": 9090}]);
        s.kubectl_stdin(&["apply", "-f", "-"], &hp.to_string()).ok();
        eventually("the hostPort answers", &log, || {
            body(&format!("{node_ip}:9090")).as_deref() == Some("hostport")
        });
        let hostport_rules = || command_output("iptables-save", &["-t", "nat"]);
        assert!(
            hostport_rules().contains("dport 9090"),
            "{}",
            hostport_rules()
        );
        s.kubectl(&["delete", "pod", "hostport", "--wait"]).ok();
        eventually("the hostPort's rules gone with its pod", &log, || {
            !hostport_rules().contains("9090")
        });
        assert!(http_get(&format!("{node_ip}:9090")).is_err());
        // A Service with no endpoints refuses at once.
        s.kubectl(&["create", "service", "clusterip", "nobody", "--tcp=80:80"])
            .ok();
        let nobody = get(&s, "svc/nobody")["spec"]["clusterIP"]
            .as_str()
            .unwrap()
            .to_string();
        eventually(
            "the empty service refuses",
            &log,
            || matches!(http_get(&format!("{nobody}:80")), Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused),
        );
        // A firewall reload flushes every table: the proxy writes its own again.
        command_output("nft", &["flush", "ruleset"]);
        eventually("the rules back after a flush", &log, || {
            answers(&format!("{cluster_ip}:80"), 10) == rest
        });
    });
}

/// A named network namespace of the test's (`ip netns add`), deleted on drop.
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Netns {
        let name = format!("rudder-{}-{tag}", std::process::id());
        ip(&format!("netns add {name}"));
        Netns(name)
    }

    /// Runs `ip ARGS` inside.
    fn ip(&self, args: &str) {
        ip(&format!("-n {} {args}", self.0));
    }

    /// Runs `f` on a thread that has entered this namespace: the processes it starts live
    /// there.
    fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        use std::os::fd::AsRawFd;
        let ns = std::fs::File::open(format!("/run/netns/{}", self.0)).unwrap();
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    // SAFETY: setns(2) on a namespace file we hold open; this thread only.
                    let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
                    assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
                    f()
                })
                .join()
                .unwrap_or_else(|e| std::panic::resume_unwind(e))
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Deployment `web` of two busybox httpd replicas answering with their own name on port 8080
/// (after `touch /ready`), the container given `container` fields and the pod `pod` fields,
/// exposed by `kubectl expose --type=NodePort --port=80`.
fn deploy_web(s: &RudderServer, container: Value, pod: Value) {
    let mut c = json!({"name": "httpd", "image": BUSYBOX,
        "command": ["sh", "-c", "mkdir -p /www && hostname > /www/index.html && touch /ready \
                     && exec httpd -f -p 8080 -h /www"]});
    let mut spec = json!({"terminationGracePeriodSeconds": 1});
    for (into, from) in [(&mut c, container), (&mut spec, pod)] {
        for (k, v) in from.as_object().unwrap() {
            into[k] = v.clone();
        }
    }
    spec["containers"] = json!([c]);
    let web = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": spec}}});
    s.kubectl_stdin(&["apply", "-f", "-"], &web.to_string())
        .ok();
    s.kubectl(&[
        "expose",
        "deployment",
        "web",
        "--type=NodePort",
        "--port=80",
        "--target-port=8080",
    ])
    .ok();
}

/// The ready pods of `app` with their nodes.
fn ready_pods(s: &RudderServer, app: &str) -> std::collections::BTreeMap<String, (String, String)> {
    let label = format!("app={app}");
    let list: Value =
        serde_json::from_str(&s.kubectl(&["get", "pods", "-l", &label, "-o", "json"]).ok())
            .unwrap();
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .filter(|p| {
            p["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
        .map(|p| {
            let field = |f: &Value| f.as_str().unwrap_or_default().to_string();
            (
                field(&p["metadata"]["name"]),
                (field(&p["spec"]["nodeName"]), field(&p["status"]["podIP"])),
            )
        })
        .collect()
}

/// A node of the test's: its agent, data dir, agent log and network namespace, dropped in
/// that order (a failed test too leaves no pod running: the agent removes its pods and stops
/// its containerd in the namespace before it goes).
struct LanNode {
    agent: Option<Agent>,
    _dir: tempfile::TempDir,
    log: PathBuf,
    ns: Netns,
}

/// Node `node-I` in a network namespace of its own, its `eth0` at `addr`/24 (default route
/// through `gateway`) plugged into the bridge `lan` of the test's namespace, running an agent
/// joined to `s`. With `firewall`, the node's iptables drop what they forward unless told
/// otherwise, as Docker has them.
fn lan_node(
    s: &RudderServer,
    token: &str,
    i: usize,
    (lan, addr, gateway): (&str, &str, &str),
    firewall: bool,
) -> LanNode {
    let ns = Netns::new(&format!("n{i}"));
    if firewall {
        ns.run(|| command_output("iptables", &["-P", "FORWARD", "DROP"]));
    }
    ip(&format!(
        "link add lan-n{i} type veth peer name eth0 netns {}",
        ns.0
    ));
    ip(&format!("link set lan-n{i} master {lan} up"));
    ns.ip("link set lo up");
    ns.ip(&format!("addr add {addr}/24 dev eth0"));
    ns.ip("link set eth0 up");
    ns.ip(&format!("route add default via {gateway}"));
    let (dir, log, agent) =
        ns.run(|| start_agent(s, token, &format!("node-{i}"), &["--node-ip", addr], |_| {}));
    LanNode {
        agent: Some(agent),
        _dir: dir,
        log,
        ns,
    }
}

/// A bridge `name` in the test's namespace holding `addr`/24.
fn lan(name: &str, addr: &str) {
    ip(&format!("link add {name} type bridge"));
    ip(&format!("addr add {addr}/24 dev {name}"));
    ip(&format!("link set {name} up"));
}

/// Waits for both nodes to be Ready and untainted, deploys `web` with one replica on each,
/// and checks that each node's NodePort (at `addrs`) is answered by both replicas, that a pod
/// reaches the other node's pod and the Service by name: the NodePort.
fn web_across_two_nodes(s: &RudderServer, log: &Path, addrs: [&str; 2]) -> u64 {
    // Ready and untainted (the not-ready taint goes just after Ready): both may take pods.
    eventually("both nodes Ready and the default account", log, || {
        let ready = s.kubectl(&["get", "nodes"]).stdout();
        let tainted = get(s, "nodes")["items"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|n| !n["spec"]["taints"].is_null());
        ready.matches(" Ready ").count() == 2
            && !tainted
            && s.kubectl(&["get", "serviceaccount", "default"])
                .stdout()
                .contains("default")
    });
    // One replica on each node.
    deploy_web(
        s,
        json!({}),
        json!({"topologySpreadConstraints": [{"maxSkew": 1,
            "topologyKey": "kubernetes.io/hostname",
            // Hard, over the nodes whose taints the pods tolerate: a lost node (tainted
            // unreachable) no longer counts, and its replica may go to the other.
            "whenUnsatisfiable": "DoNotSchedule",
            "nodeTaintsPolicy": "Honor",
            "labelSelector": {"matchLabels": {"app": "web"}}}]}),
    );
    eventually("two ready replicas", log, || {
        ready_pods(s, "web").len() == 2
    });
    let pods = ready_pods(s, "web");
    let on: std::collections::BTreeSet<&String> = pods.values().map(|(n, _)| n).collect();
    assert_eq!(on.len(), 2, "one replica per node: {pods:?}");
    let names: std::collections::BTreeSet<String> = pods.keys().cloned().collect();
    let node_port = get(s, "svc/web")["spec"]["ports"][0]["nodePort"]
        .as_u64()
        .unwrap();
    // From the LAN: each node's NodePort, answered by both replicas (one of them on the
    // other node, through the pod network between the nodes).
    for addr in addrs {
        let addr = format!("{addr}:{node_port}");
        eventually(&format!("both replicas answer at {addr}"), log, || {
            answers(&addr, 20) == names
        });
    }
    // Pod to pod across nodes, and to the Service by name.
    let mut it = pods.iter();
    let (a, _) = it.next().unwrap();
    let (b, (_, b_ip)) = it.next().unwrap();
    let exec = |pod: &str, url: &str| {
        s.kubectl(&["exec", pod, "--", "timeout", "10", "wget", "-qO-", url])
            .ok()
            .trim()
            .to_string()
    };
    assert_eq!(exec(a, &format!("http://{b_ip}:8080")), *b);
    let by_name: std::collections::BTreeSet<String> =
        (0..12).map(|_| exec(a, "http://web")).collect();
    assert_eq!(by_name, names);
    node_port
}

/// Seed exercise 1 across machines: a server and two agents, each node in a network namespace
/// of its own joined to the server's by a bridge (the "LAN"); a Deployment spread over both
/// nodes answers at each node's NodePort from every replica, pods reach pods on the other node
/// (routed directly: the nodes share the LAN) and the Service by name; a node that dies (agent
/// killed, link cut) has its replica come back on the other node while the Service keeps
/// answering.
#[test]
fn two_nodes_form_one_pod_network_and_a_lost_nodes_pods_come_back() {
    in_new_netns(|| {
        lan("lan0", "192.168.80.1");
        let s = RudderServer::start_on(bin(), "192.168.80.1", &["--disable-agent"]).unwrap();
        let token = s.node_token().unwrap();
        let nodes: Vec<LanNode> = (1..=2)
            .map(|i| {
                let addr = format!("192.168.80.1{i}");
                lan_node(&s, &token, i, ("lan0", &addr, "192.168.80.1"), false)
            })
            .collect();
        let log = nodes[0].log.clone();
        let node_port = web_across_two_nodes(&s, &log, ["192.168.80.11", "192.168.80.12"]);
        // Between nodes on one network, no overlay.
        let routes = nodes[0]
            .ns
            .run(|| command_output("ip", &["route", "show", "proto", "82"]));
        assert!(routes.contains("via 192.168.80.12 dev eth0"), "{routes}");
        // Node 2 dies: its agent frozen (SIGSTOP: no heartbeat, no chance to tidy up; thawed
        // at the end so that it stops its containerd), its link cut. Its replica comes back on
        // node 1, which answers with its own replicas.
        let agent2 = nodes[1].agent.as_ref().unwrap().0.id() as libc::pid_t;
        // SAFETY: signalling our own child.
        unsafe { libc::kill(agent2, libc::SIGSTOP) };
        ip("link set lan-n2 down");
        eventually("two ready replicas on node 1", &log, || {
            let now = ready_pods(&s, "web");
            now.len() == 2 && now.values().all(|(n, _)| n == "node-1")
        });
        let now: std::collections::BTreeSet<String> =
            ready_pods(&s, "web").keys().cloned().collect();
        eventually("the new replicas answer at node 1", &log, || {
            answers(&format!("192.168.80.11:{node_port}"), 20) == now
        });
        // SAFETY: as above.
        unsafe { libc::kill(agent2, libc::SIGCONT) };
        drop(nodes);
    });
}

/// Two nodes on different networks, joined by a router (the test's namespace) that knows
/// nothing of pods, each behind a firewall that drops what it forwards by default: the
/// NodePorts, pod-to-pod traffic and the Service by name work across them through the VXLAN
/// overlay.
#[test]
fn nodes_on_different_networks_reach_each_others_pods_through_the_overlay() {
    in_new_netns(|| {
        lan("lan0", "192.168.80.1");
        lan("lan1", "192.168.81.1");
        let st = Command::new("sh")
            .args(["-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"])
            .status()
            .unwrap();
        assert!(st.success());
        let s = RudderServer::start_on(bin(), "192.168.80.1", &["--disable-agent"]).unwrap();
        let token = s.node_token().unwrap();
        let nodes = vec![
            lan_node(
                &s,
                &token,
                1,
                ("lan0", "192.168.80.11", "192.168.80.1"),
                true,
            ),
            lan_node(
                &s,
                &token,
                2,
                ("lan1", "192.168.81.12", "192.168.81.1"),
                true,
            ),
        ];
        let log = nodes[0].log.clone();
        web_across_two_nodes(&s, &log, ["192.168.80.11", "192.168.81.12"]);
        // Node 1 reaches node 2's pods through its VXLAN device, whose MAC node 2 announced.
        let routes = nodes[0]
            .ns
            .run(|| command_output("ip", &["route", "show", "proto", "82"]));
        assert!(routes.contains("dev rudder.1 onlink"), "{routes}");
        let node2 = get(&s, "node/node-2");
        let mac = node2["metadata"]["annotations"]["rudder.io/vtep-mac"]
            .as_str()
            .unwrap()
            .to_string();
        let fdb = nodes[0]
            .ns
            .run(|| command_output("bridge", &["fdb", "show", "dev", "rudder.1"]));
        assert!(
            fdb.contains(&format!("{mac} dst 192.168.81.12 self permanent")),
            "{fdb}"
        );
        let filter = nodes[0]
            .ns
            .run(|| command_output("iptables-save", &["-t", "filter"]));
        assert!(filter.contains("-j RUDDER-FORWARD"), "{filter}");
        drop(nodes);
    });
}

/// `rudder uninstall` takes a running node away: the agent stops, its containerd and the pods'
/// processes are killed, the node's nftables, routes, VXLAN device and bridge go, nothing
/// stays mounted under the data dir, and the data dir is removed.
#[test]
fn uninstall_takes_away_the_node_its_pods_networking_mounts_and_data() {
    let node_ip = "192.168.78.1";
    in_node_netns(node_ip, move || {
        let (s, dir, log, agent) = cluster_with("gone-node", &["--node-ip", node_ip], |_| {});
        s.kubectl(&["create", "secret", "generic", "s", "--from-literal=a=b"])
            .ok();
        let mut p: Value =
            serde_json::from_str(&pod("sleeper", "exec sleep 31337", "Always")).unwrap();
        p["spec"]["hostNetwork"] = json!(false);
        p["spec"]["volumes"] = json!([{"name": "s", "secret": {"secretName": "s"}}]);
        p["spec"]["containers"][0]["volumeMounts"] = json!([{"name": "s", "mountPath": "/s"}]);
        p["spec"]["containers"][0]["ports"] = json!([{"containerPort": 80, "hostPort": 9091}]);
        s.kubectl_stdin(&["apply", "-f", "-"], &p.to_string()).ok();
        eventually("the pod Running", &log, || {
            get(&s, "pod/sleeper")["status"]["phase"] == "Running"
        });
        let data = dir.path().canonicalize().unwrap();
        let sleeping = || {
            std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
                std::fs::read(e.path().join("cmdline")).is_ok_and(|c| c == b"sleep\x0031337\x00")
            })
        };
        let mounted = || {
            std::fs::read_to_string("/proc/self/mountinfo")
                .unwrap()
                .lines()
                .filter(|l| l.contains(data.to_str().unwrap()))
                .count()
        };
        assert!(sleeping());
        assert!(mounted() > 0, "the secret volume and the image are mounted");
        // The pod's network namespace, pinned by containerd under /run/netns.
        let sleeper_netns = {
            use std::os::unix::fs::MetadataExt as _;
            let pid = std::fs::read_dir("/proc")
                .unwrap()
                .flatten()
                .find(|e| {
                    std::fs::read(e.path().join("cmdline"))
                        .is_ok_and(|c| c == b"sleep\x0031337\x00")
                })
                .unwrap()
                .path();
            let inode = std::fs::metadata(pid.join("ns/net")).unwrap().ino();
            std::fs::read_dir("/run/netns")
                .unwrap()
                .flatten()
                .map(|e| e.path())
                .find(|p| std::fs::metadata(p).is_ok_and(|m| m.ino() == inode))
                .expect("the pod's netns under /run/netns")
        };
        let tables = || command_output("nft", &["list", "tables"]);
        assert!(tables().contains("inet rudder"), "{}", tables());
        let hostport_rules = || command_output("iptables-save", &["-t", "nat"]);
        assert!(
            hostport_rules().contains("dport 9091"),
            "{}",
            hostport_rules()
        );

        let out = Command::new(bin())
            .args(["uninstall", "--data-dir"])
            .arg(&data)
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "{said}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(said.contains("stopped 1 rudder process(es)"), "{said}");
        assert!(
            said.contains(&format!("removed {}", data.display())),
            "{said}"
        );
        assert!(!sleeping(), "the pod's process is gone");
        assert!(!sleeper_netns.exists(), "{}", sleeper_netns.display());
        assert_eq!(mounted(), 0);
        assert!(!data.exists());
        assert_eq!(tables(), "");
        assert_eq!(command_output("ip", &["route", "show", "proto", "82"]), "");
        let links = command_output("ip", &["-o", "link", "show"]);
        assert!(
            !links.contains("rudder0") && !links.contains("rudder.1"),
            "{links}"
        );
        // Nothing left to take away: a second run says the dir is not there.
        let again = Command::new(bin())
            .args(["uninstall", "--data-dir"])
            .arg(&data)
            .output()
            .unwrap();
        assert!(!again.status.success());
        assert!(String::from_utf8_lossy(&again.stderr).contains("no such data dir"));
        drop(agent);
        drop(dir);
    });
}
