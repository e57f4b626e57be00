use super::*;
use serde_json::json;

fn cfg() -> Config {
    Config {
        node_name: "n1".into(),
        node_ips: vec!["192.168.5.1".parse().unwrap()],
        bridge: "rudder0".into(),
        local_dns: Some((
            "10.43.0.10".parse().unwrap(),
            "192.168.5.1:5353".parse().unwrap(),
        )),
    }
}

fn service(v: serde_json::Value) -> Arc<Service> {
    Arc::new(serde_json::from_value(v).unwrap())
}

/// An IPv4 slice of `svc` in default with port `http` 8080/TCP; endpoints are (address,
/// node, ready, serving, terminating).
fn slice(svc: &str, eps: &[(&str, &str, bool, bool, bool)]) -> Arc<EndpointSlice> {
    let endpoints: Vec<serde_json::Value> = eps
        .iter()
        .map(|(ip, node, ready, serving, terminating)| {
            json!({"addresses": [ip], "nodeName": node,
                   "conditions": {"ready": ready, "serving": serving, "terminating": terminating}})
        })
        .collect();
    Arc::new(
        serde_json::from_value(json!({
            "metadata": {"name": format!("{svc}-x"), "namespace": "default",
                         "labels": {"kubernetes.io/service-name": svc}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": endpoints}))
        .unwrap(),
    )
}

fn web(extra: serde_json::Value) -> Arc<Service> {
    let mut spec = json!({"clusterIP": "10.43.0.20", "clusterIPs": ["10.43.0.20"],
                          "ports": [{"name": "http", "port": 80, "protocol": "TCP",
                                     "targetPort": 8080, "nodePort": 30080}]});
    for (k, v) in extra.as_object().unwrap() {
        spec[k] = v.clone();
    }
    service(json!({"metadata": {"name": "web", "namespace": "default"}, "spec": spec}))
}

fn two_ready() -> Arc<EndpointSlice> {
    slice(
        "web",
        &[
            ("10.42.0.5", "n1", true, true, false),
            ("10.42.1.5", "n2", true, true, false),
        ],
    )
}

fn build(services: Vec<Arc<Service>>, slices: Vec<Arc<EndpointSlice>>) -> Rules {
    Rules::build(&cfg(), &Services { services, slices })
}

fn elements(r: &Rules, set: &str) -> Vec<String> {
    r.elements[set]
        .iter()
        .map(|(k, v)| {
            if v.is_empty() {
                k.clone()
            } else {
                format!("{k} : {v}")
            }
        })
        .collect()
}

const SVC: &str = "svc/default/web/tcp/80";
const EP5: &str = "ep/default/web/tcp/80/10.42.0.5/8080";
const EP15: &str = "ep/default/web/tcp/80/10.42.1.5/8080";

#[test]
fn a_cluster_ip_spreads_over_ready_endpoints_and_masquerades_what_is_not_a_local_pod() {
    let r = build(vec![web(json!({}))], vec![two_ready()]);
    assert_eq!(
        elements(&r, "service-ips-v4"),
        [format!("10.43.0.20 . tcp . 80 : goto {SVC}")]
    );
    assert_eq!(elements(&r, "cluster-ips-v4"), ["10.43.0.20"]);
    assert_eq!(
        r.chains[SVC],
        [
            "iifname != \"rudder0\" jump mark-for-masquerade".to_string(),
            "fib saddr type local jump mark-for-masquerade".into(),
            format!("numgen random mod 2 vmap {{ 0 : goto {EP5}, 1 : goto {EP15} }}"),
        ]
    );
    assert_eq!(
        r.chains[EP5],
        [
            "ip saddr 10.42.0.5 jump mark-for-masquerade",
            "meta l4proto tcp dnat ip to 10.42.0.5:8080"
        ]
    );
    // A ClusterIP Service has no NodePort even when the field is set.
    assert!(r.elements["service-nodeports-v4"].is_empty());
    assert_eq!(elements(&r, "nodeport-ips-v4"), ["192.168.5.1"]);
}

#[test]
fn unready_endpoints_get_nothing_unless_only_terminating_ones_serve() {
    let some_ready = slice(
        "web",
        &[
            ("10.42.0.5", "n1", true, true, false),
            ("10.42.0.6", "n1", false, false, false),
            ("10.42.0.7", "n1", false, true, true),
        ],
    );
    let r = build(vec![web(json!({}))], vec![some_ready]);
    assert_eq!(
        r.chains[SVC][2],
        format!("goto {EP5}"),
        "only the ready one: {:?}",
        r.chains
    );
    let terminating = slice(
        "web",
        &[
            ("10.42.0.6", "n1", false, false, false),
            ("10.42.0.7", "n1", false, true, true),
        ],
    );
    let r = build(vec![web(json!({}))], vec![terminating]);
    assert_eq!(
        r.chains[SVC][2],
        "goto ep/default/web/tcp/80/10.42.0.7/8080"
    );
    // None usable: no chain, and the cluster IP stays in the set that rejects.
    let none = slice("web", &[("10.42.0.6", "n1", false, false, false)]);
    let r = build(vec![web(json!({}))], vec![none]);
    assert!(r.chains.is_empty(), "{:?}", r.chains);
    assert!(r.elements["service-ips-v4"].is_empty());
    assert_eq!(elements(&r, "cluster-ips-v4"), ["10.43.0.20"]);
}

#[test]
fn node_ports_and_load_balancers_are_external_traffic() {
    let lb = web(json!({"type": "LoadBalancer", "externalIPs": ["192.0.2.7"]}));
    let mut lb = (*lb).clone();
    lb.status = serde_json::from_value(
        json!({"loadBalancer": {"ingress": [{"ip": "192.168.5.1"}, {"ip": "192.168.5.2"}]}}),
    )
    .unwrap();
    let r = build(vec![Arc::new(lb)], vec![two_ready()]);
    let ext = "ext/default/web/tcp/80";
    assert_eq!(
        elements(&r, "service-nodeports-v4"),
        [format!("tcp . 30080 : goto {ext}")]
    );
    assert_eq!(
        elements(&r, "service-ips-v4"),
        [
            format!("10.43.0.20 . tcp . 80 : goto {SVC}"),
            format!("192.0.2.7 . tcp . 80 : goto {ext}"),
            format!("192.168.5.1 . tcp . 80 : goto {ext}"),
            format!("192.168.5.2 . tcp . 80 : goto {ext}"),
        ]
    );
    assert_eq!(
        r.chains[ext],
        [
            "jump mark-for-masquerade".to_string(),
            format!("goto {SVC}")
        ]
    );
}

#[test]
fn local_traffic_policies_keep_to_this_nodes_endpoints() {
    let r = build(
        vec![web(
            json!({"type": "NodePort", "externalTrafficPolicy": "Local",
                         "internalTrafficPolicy": "Local"}),
        )],
        vec![two_ready()],
    );
    let local = "local/default/web/tcp/80";
    assert_eq!(r.chains[local], [format!("goto {EP5}")]);
    assert_eq!(
        elements(&r, "service-ips-v4"),
        [format!("10.43.0.20 . tcp . 80 : goto {local}")]
    );
    // External sources keep their address and reach only local endpoints; this node's pods
    // and the node itself reach any.
    assert_eq!(
        r.chains["ext/default/web/tcp/80"],
        [
            format!("iifname \"rudder0\" goto {SVC}"),
            format!("fib saddr type local goto {SVC}"),
            format!("goto {local}"),
        ]
    );
    // No endpoint here: local traffic is dropped, as kube-proxy does.
    let remote = slice("web", &[("10.42.1.5", "n2", true, true, false)]);
    let r = build(
        vec![web(
            json!({"type": "NodePort", "externalTrafficPolicy": "Local"}),
        )],
        vec![remote],
    );
    assert_eq!(r.chains[local], ["drop"]);
}

#[test]
fn client_ip_affinity_remembers_each_clients_endpoint() {
    let r = build(
        vec![web(json!({"sessionAffinity": "ClientIP",
                         "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}}}))],
        vec![two_ready()],
    );
    let set = "affinity/default/web/tcp/80/10.42.0.5/8080/60";
    assert_eq!(
        r.affinity[set],
        "{ type ipv4_addr; flags dynamic,timeout; timeout 60s; }"
    );
    assert_eq!(r.chains[SVC][2], format!("ip saddr @{set} goto {EP5}"));
    assert_eq!(r.chains[EP5][1], format!("update @{set} {{ ip saddr }}"));
}

#[test]
fn headless_and_external_name_services_have_no_rules() {
    let headless = service(json!({"metadata": {"name": "web", "namespace": "default"},
        "spec": {"clusterIP": "None", "ports": [{"name": "http", "port": 80}]}}));
    let external = service(json!({"metadata": {"name": "ext", "namespace": "default"},
        "spec": {"type": "ExternalName", "externalName": "example.org"}}));
    let r = build(vec![headless, external], vec![two_ready()]);
    assert!(r.chains.is_empty());
    assert!(r.elements["service-ips-v4"].is_empty());
    assert!(r.elements["cluster-ips-v4"].is_empty());
}

#[test]
fn the_cluster_dns_service_goes_to_this_nodes_dns_server() {
    let dns = service(
        json!({"metadata": {"name": "kube-dns", "namespace": "kube-system"},
        "spec": {"clusterIP": "10.43.0.10", "ports": [
            {"name": "dns", "port": 53, "protocol": "UDP"},
            {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]}}),
    );
    let r = build(vec![dns], vec![]);
    assert_eq!(
        r.chains["ep/kube-system/kube-dns/udp/53/192.168.5.1/5353"][1],
        "meta l4proto udp dnat ip to 192.168.5.1:5353"
    );
    assert_eq!(
        elements(&r, "service-ips-v4"),
        [
            "10.43.0.10 . tcp . 53 : goto svc/kube-system/kube-dns/tcp/53",
            "10.43.0.10 . udp . 53 : goto svc/kube-system/kube-dns/udp/53",
        ]
    );
}

#[test]
fn ipv6_services_get_rules_of_their_family() {
    let svc = service(json!({"metadata": {"name": "web", "namespace": "default"},
        "spec": {"clusterIP": "fd43::20", "clusterIPs": ["fd43::20"],
                 "ports": [{"name": "http", "port": 80}]}}));
    let slice = Arc::new(
        serde_json::from_value(json!({
            "metadata": {"name": "web-6", "namespace": "default",
                         "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv6",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [{"addresses": ["fd42::5"]}]}))
        .unwrap(),
    );
    let r = build(vec![svc], vec![two_ready(), slice]);
    let ep = "ep/default/web/tcp/80/v6/fd42--5/8080";
    assert_eq!(
        r.chains[ep],
        [
            "ip6 saddr fd42::5 jump mark-for-masquerade",
            "meta l4proto tcp dnat ip6 to [fd42::5]:8080"
        ]
    );
    assert_eq!(
        elements(&r, "service-ips-v6"),
        ["fd43::20 . tcp . 80 : goto svc/default/web/tcp/80/v6"]
    );
}

#[test]
fn a_change_of_endpoints_rewrites_only_what_changed() {
    let before = build(vec![web(json!({}))], vec![two_ready()]);
    let full = before.script(None);
    assert!(
        full.starts_with("add table inet rudder\ndelete table inet rudder\ntable inet rudder {")
    );
    let one = slice("web", &[("10.42.0.5", "n1", true, true, false)]);
    let after = build(vec![web(json!({}))], vec![one]);
    let diff = after.script(Some(&before));
    assert_eq!(
        diff,
        format!(
            "flush chain inet rudder {SVC}
add rule inet rudder {SVC} iifname != \"rudder0\" jump mark-for-masquerade
add rule inet rudder {SVC} fib saddr type local jump mark-for-masquerade
add rule inet rudder {SVC} goto {EP5}
flush chain inet rudder {EP15}
delete chain inet rudder {EP15}
"
        )
    );
    assert_eq!(after.script(Some(&after)), "");
}

/// Runs `scripts` one after the other with the real nft in a network namespace of its own and
/// returns the table as nft lists it.
fn nft_in_netns(scripts: &[String]) -> String {
    let dir = std::env::temp_dir().join(format!("rudder-proxy-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut cmd = String::new();
    for (i, s) in scripts.iter().enumerate() {
        let f = dir.join(format!("{i}.nft"));
        std::fs::write(&f, s).unwrap();
        cmd.push_str(&format!("nft -f {} && ", f.display()));
    }
    cmd.push_str("nft list table inet rudder");
    let out = std::process::Command::new("unshare")
        .args(["-n", "sh", "-c", &cmd])
        .output()
        .expect("unshare (util-linux)");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "nft: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_kernel_takes_the_full_table_and_each_change() {
    let lb = {
        let mut s = (*web(
            json!({"type": "LoadBalancer", "sessionAffinity": "ClientIP",
                                 "externalTrafficPolicy": "Local"}),
        ))
        .clone();
        s.status =
            serde_json::from_value(json!({"loadBalancer": {"ingress": [{"ip": "192.168.5.1"}]}}))
                .unwrap();
        Arc::new(s)
    };
    let dns = service(
        json!({"metadata": {"name": "kube-dns", "namespace": "kube-system"},
        "spec": {"clusterIP": "10.43.0.10", "ports": [
            {"name": "dns", "port": 53, "protocol": "UDP"}]}}),
    );
    let first = build(vec![lb.clone(), dns.clone()], vec![two_ready()]);
    let one = slice("web", &[("10.42.1.5", "n2", true, true, false)]);
    let second = build(vec![lb, dns.clone()], vec![one]);
    let third = build(vec![dns], vec![]);
    let listed = nft_in_netns(&[
        first.script(None),
        second.script(Some(&first)),
        third.script(Some(&second)),
        first.script(Some(&third)),
    ]);
    assert!(
        listed.contains(
            "numgen random mod 2 vmap { 0 : goto ep/default/web/tcp/80/10.42.0.5/8080, 1 : goto ep/default/web/tcp/80/10.42.1.5/8080 }"
        ),
        "{listed}"
    );
    assert!(listed.contains("dnat ip to 192.168.5.1:5353"), "{listed}");
    assert!(listed.contains("timeout 3h"), "{listed}");
}

/// A NodePort Service `dns` at 10.43.0.53 and 192.168.5.9 with a UDP and a TCP port 53, and
/// its slice: `eps` on node n2 at 5353.
fn udp_dns(eps: &[&str]) -> Services {
    let svc = service(json!({"metadata": {"name": "dns", "namespace": "default"},
        "spec": {"type": "NodePort", "clusterIP": "10.43.0.53", "clusterIPs": ["10.43.0.53"],
                 "externalIPs": ["192.168.5.9"],
                 "ports": [{"name": "dns", "port": 53, "protocol": "UDP", "nodePort": 30053},
                           {"name": "tcp", "port": 53, "protocol": "TCP"}]}}));
    let endpoints: Vec<serde_json::Value> = eps
        .iter()
        .map(|ip| json!({"addresses": [ip], "nodeName": "n2"}))
        .collect();
    let slice = Arc::new(
        serde_json::from_value(json!({
            "metadata": {"name": "dns-x", "namespace": "default",
                         "labels": {"kubernetes.io/service-name": "dns"}},
            "addressType": "IPv4",
            "ports": [{"name": "dns", "port": 5353, "protocol": "UDP"},
                      {"name": "tcp", "port": 5353, "protocol": "TCP"}],
            "endpoints": endpoints}))
        .unwrap(),
    );
    Services {
        services: vec![svc],
        slices: vec![slice],
    }
}

#[test]
fn udp_flows_left_stale_by_a_change_of_endpoints_are_named() {
    let dns = |eps: &[&str]| Rules::build(&cfg(), &udp_dns(eps));
    let filter = |dst: Option<&str>, port, from: Option<&str>| conntrack::Filter {
        dst: dst.map(|d| d.parse().unwrap()),
        dst_port: port,
        reply_src: from.map(|f| f.parse().unwrap()),
    };
    let (two, one, none) = (
        dns(&["10.42.1.7", "10.42.1.8"]),
        dns(&["10.42.1.7"]),
        dns(&[]),
    );
    // Nothing changed, or an endpoint came: nothing is stale.
    assert!(two.stale_udp(&two).is_empty());
    assert!(two.stale_udp(&one).is_empty());
    // An endpoint went: the flows it answered, at every address of the port and its NodePort
    // (TCP's flows are not the proxy's to cut).
    let gone = Some("10.42.1.8");
    assert_eq!(
        Vec::from_iter(one.stale_udp(&two)),
        [
            filter(None, 30053, gone),
            filter(Some("10.43.0.53"), 53, gone),
            filter(Some("192.168.5.9"), 53, gone),
        ]
    );
    // Endpoints after none: every flow to the port, which no DNAT caught.
    let all = [
        filter(None, 30053, None),
        filter(Some("10.43.0.53"), 53, None),
        filter(Some("192.168.5.9"), 53, None),
    ];
    assert_eq!(Vec::from_iter(one.stale_udp(&none)), all);
    // The Service gone: every flow to it.
    assert_eq!(Vec::from_iter(build(vec![], vec![]).stale_udp(&one)), all);
}

/// The real path, in a network namespace of the test's: the proxy's rules in nft, a UDP client
/// on the node that keeps sending to the cluster IP from one socket, and endpoints at local
/// addresses. When its endpoint is replaced, the client's flow follows to the new one.
#[test]
fn a_udp_client_follows_its_service_to_a_new_endpoint() {
    use std::net::UdpSocket;
    let moved = std::thread::spawn(|| {
        // SAFETY: unshare(2) moves only this thread into a new network namespace.
        assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0);
        for args in [
            "link set lo up",
            "addr add 10.43.0.53/32 dev lo",
            "addr add 10.99.0.1/32 dev lo",
            "addr add 10.99.0.2/32 dev lo",
        ] {
            let st = std::process::Command::new("ip")
                .args(args.split(' '))
                .status()
                .unwrap();
            assert!(st.success(), "ip {args}");
        }
        let endpoint = |ip: &str| {
            let s = UdpSocket::bind((ip, 5353)).unwrap();
            s.set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            s
        };
        let (first, second) = (endpoint("10.99.0.1"), endpoint("10.99.0.2"));
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        let reaches = |s: &UdpSocket| {
            let mut buf = [0; 16];
            (0..300).any(|_| {
                client.send_to(b"ping", "10.43.0.53:53").unwrap();
                s.recv(&mut buf).is_ok()
            })
        };
        // Its threads are made here, in the namespace.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let (tx, rx) = watch::channel(Arc::new(Services::default()));
        let cfg = Config {
            local_dns: None,
            ..cfg()
        };
        let _proxy = rt.spawn(run(cfg, rx));
        tx.send(Arc::new(udp_dns(&["10.99.0.1"]))).unwrap();
        let reached_first = reaches(&first);
        tx.send(Arc::new(udp_dns(&["10.99.0.2"]))).unwrap();
        (reached_first, reaches(&second))
    })
    .join()
    .unwrap();
    assert_eq!(moved, (true, true));
}
