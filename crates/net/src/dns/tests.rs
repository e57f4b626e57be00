use super::*;
use hickory_proto::op::Query;
use serde_json::json;

fn service(v: serde_json::Value) -> Service {
    serde_json::from_value(v).unwrap()
}

fn slice(v: serde_json::Value) -> EndpointSlice {
    serde_json::from_value(v).unwrap()
}

fn world() -> Records {
    let services = [
        service(json!({"metadata": {"name": "web", "namespace": "default"},
            "spec": {"clusterIP": "10.43.0.20", "clusterIPs": ["10.43.0.20"],
                     "ports": [{"name": "http", "port": 80, "protocol": "TCP"},
                               {"port": 81}]}})),
        service(json!({"metadata": {"name": "db", "namespace": "prod"},
            "spec": {"clusterIP": "None", "ports": [{"name": "pg", "port": 5432}]}})),
        service(json!({"metadata": {"name": "ext", "namespace": "default"},
            "spec": {"type": "ExternalName", "externalName": "example.org"}})),
    ];
    let slices = [slice(json!({
    "metadata": {"name": "db-abc", "namespace": "prod",
                 "labels": {"kubernetes.io/service-name": "db"}},
    "addressType": "IPv4",
    "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}],
    "endpoints": [
        {"addresses": ["10.42.0.5"], "hostname": "db-0", "conditions": {"ready": true}},
        {"addresses": ["10.42.0.6"], "conditions": {"ready": true}},
        {"addresses": ["10.42.0.7"], "conditions": {"ready": false}}
    ]}))];
    Records::build("cluster.local", &services, &slices).unwrap()
}

fn ask(r: &Records, name: &str, t: RecordType) -> Option<Resolution> {
    r.resolve(&Name::from_ascii(name).unwrap(), t)
}

fn data(res: &Resolution) -> Vec<String> {
    let mut v: Vec<String> = res.answers.iter().map(|a| a.data().to_string()).collect();
    v.sort();
    v
}

#[test]
fn services_have_addresses_ports_and_reverse_names() {
    let r = world();
    let a = ask(&r, "web.default.svc.cluster.local.", RecordType::A).unwrap();
    assert_eq!(
        (a.code, data(&a)),
        (ResponseCode::NoError, vec!["10.43.0.20".into()])
    );
    assert_eq!(a.answers[0].ttl(), TTL);
    // Case does not matter; the answer keeps the asked spelling.
    let upper = ask(&r, "WEB.Default.svc.cluster.local.", RecordType::A).unwrap();
    assert_eq!(
        upper.answers[0].name().to_ascii(),
        "WEB.Default.svc.cluster.local."
    );
    let srv = ask(
        &r,
        "_http._tcp.web.default.svc.cluster.local.",
        RecordType::SRV,
    )
    .unwrap();
    assert_eq!(
        data(&srv),
        vec!["0 100 80 web.default.svc.cluster.local.".to_string()]
    );
    let ptr = ask(&r, "20.0.43.10.in-addr.arpa.", RecordType::PTR).unwrap();
    assert_eq!(
        data(&ptr),
        vec!["web.default.svc.cluster.local.".to_string()]
    );
    // The name exists without AAAA: NODATA, with the zone's SOA.
    let aaaa = ask(&r, "web.default.svc.cluster.local.", RecordType::AAAA).unwrap();
    assert_eq!((aaaa.code, aaaa.answers.len()), (ResponseCode::NoError, 0));
    assert_eq!(aaaa.authority[0].record_type(), RecordType::SOA);
    // Names between the service and the zone exist; others do not.
    let ns = ask(&r, "default.svc.cluster.local.", RecordType::A).unwrap();
    assert_eq!(ns.code, ResponseCode::NoError);
    for missing in [
        "nope.default.svc.cluster.local.",
        "web.other.svc.cluster.local.",
        "google.com.default.svc.cluster.local.",
    ] {
        let nx = ask(&r, missing, RecordType::A).unwrap();
        assert_eq!(nx.code, ResponseCode::NXDomain, "{missing}");
        assert_eq!(nx.authority[0].record_type(), RecordType::SOA);
    }
    // Not the cluster's: the node's resolvers are asked.
    assert!(ask(&r, "example.org.", RecordType::A).is_none());
    assert!(ask(&r, "1.1.168.192.in-addr.arpa.", RecordType::PTR).is_none());
}

#[test]
fn headless_services_name_their_ready_endpoints() {
    let r = world();
    let all = ask(&r, "db.prod.svc.cluster.local.", RecordType::A).unwrap();
    assert_eq!(
        data(&all),
        vec!["10.42.0.5".to_string(), "10.42.0.6".into()]
    );
    let host = ask(&r, "db-0.db.prod.svc.cluster.local.", RecordType::A).unwrap();
    assert_eq!(data(&host), vec!["10.42.0.5".to_string()]);
    let dashed = ask(&r, "10-42-0-6.db.prod.svc.cluster.local.", RecordType::A).unwrap();
    assert_eq!(data(&dashed), vec!["10.42.0.6".to_string()]);
    let not_ready = ask(&r, "10-42-0-7.db.prod.svc.cluster.local.", RecordType::A).unwrap();
    assert_eq!(not_ready.code, ResponseCode::NXDomain);
    let srv = ask(&r, "_pg._tcp.db.prod.svc.cluster.local.", RecordType::SRV).unwrap();
    assert_eq!(
        data(&srv),
        vec![
            "0 100 5432 10-42-0-6.db.prod.svc.cluster.local.".to_string(),
            "0 100 5432 db-0.db.prod.svc.cluster.local.".into()
        ]
    );
    let ptr = ask(&r, "5.0.42.10.in-addr.arpa.", RecordType::PTR).unwrap();
    assert_eq!(
        data(&ptr),
        vec!["db-0.db.prod.svc.cluster.local.".to_string()]
    );

    // publishNotReadyAddresses: the not-ready one too.
    let services = [service(
        json!({"metadata": {"name": "db", "namespace": "prod"},
        "spec": {"clusterIP": "None", "publishNotReadyAddresses": true}}),
    )];
    let slices = [slice(json!({
        "metadata": {"name": "db-abc", "namespace": "prod",
                     "labels": {"kubernetes.io/service-name": "db"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.42.0.7"], "conditions": {"ready": false}}]}))];
    let r = Records::build("cluster.local", &services, &slices).unwrap();
    let all = ask(&r, "db.prod.svc.cluster.local.", RecordType::A).unwrap();
    assert_eq!(data(&all), vec!["10.42.0.7".to_string()]);
}

#[test]
fn external_names_are_cnames_and_pods_are_named_by_address() {
    let r = world();
    let c = ask(&r, "ext.default.svc.cluster.local.", RecordType::A).unwrap();
    assert_eq!(c.answers[0].record_type(), RecordType::CNAME);
    assert_eq!(data(&c), vec!["example.org.".to_string()]);
    let pod = ask(&r, "10-42-1-9.default.pod.cluster.local.", RecordType::A).unwrap();
    assert_eq!(data(&pod), vec!["10.42.1.9".to_string()]);
    let bad = ask(&r, "10-42-1.default.pod.cluster.local.", RecordType::A).unwrap();
    assert_eq!(bad.code, ResponseCode::NXDomain);
    let soa = ask(&r, "cluster.local.", RecordType::SOA).unwrap();
    assert_eq!(soa.answers[0].record_type(), RecordType::SOA);
}

#[test]
fn only_private_clients_are_served() {
    for ip in [
        "127.0.0.1",
        "10.42.0.5",
        "172.16.3.4",
        "192.168.1.9",
        "100.64.0.1",
        "169.254.20.10",
        "::1",
        "fd00::1",
        "fe80::1",
        "::ffff:10.0.0.1",
    ] {
        assert!(private_source(ip.parse().unwrap()), "{ip}");
    }
    for ip in [
        "8.8.8.8",
        "100.128.0.1",
        "172.32.0.1",
        "2001:db8::1",
        "::ffff:1.1.1.1",
    ] {
        assert!(!private_source(ip.parse().unwrap()), "{ip}");
    }
}

#[test]
fn the_nodes_resolvers_come_from_resolv_conf_without_the_cluster_dns() {
    let conf = "# comment\nsearch example\nnameserver 10.43.0.10\nnameserver 192.0.2.1\n\
                nameserver fe80::1%eth0\noptions ndots:5\n";
    assert_eq!(
        upstreams(conf, &["10.43.0.10".parse().unwrap()]),
        vec![
            "192.0.2.1:53".parse::<SocketAddr>().unwrap(),
            "[fe80::1]:53".parse().unwrap()
        ]
    );
}

fn query(name: &str, t: RecordType, edns: bool) -> Vec<u8> {
    let mut m = Message::new();
    m.set_id(4242).set_recursion_desired(true);
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), t));
    if edns {
        let mut e = Edns::new();
        e.set_max_payload(4096);
        m.set_edns(e);
    }
    m.to_vec().unwrap()
}

async fn udp_ask(server: SocketAddr, q: &[u8]) -> Message {
    let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    s.send_to(q, server).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), s.recv(&mut buf))
        .await
        .expect("an answer")
        .unwrap();
    Message::from_vec(&buf[..n]).unwrap()
}

async fn tcp_ask(server: SocketAddr, q: &[u8]) -> Message {
    let mut s = TcpStream::connect(server).await.unwrap();
    s.write_all(&(q.len() as u16).to_be_bytes()).await.unwrap();
    s.write_all(q).await.unwrap();
    let mut len = [0u8; 2];
    s.read_exact(&mut len).await.unwrap();
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut buf).await.unwrap();
    Message::from_vec(&buf).unwrap()
}

/// A resolver on loopback that answers every query with one A record, 192.0.2.7.
async fn fake_upstream() -> SocketAddr {
    let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = s.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        while let Ok((n, peer)) = s.recv_from(&mut buf).await {
            let q = Message::from_vec(&buf[..n]).unwrap();
            let mut m = Message::new();
            m.set_id(q.id()).set_message_type(MessageType::Response);
            m.add_query(q.queries()[0].clone());
            m.add_answer(Record::from_rdata(
                q.queries()[0].name().clone(),
                60,
                RData::A(A("192.0.2.7".parse().unwrap())),
            ));
            let _ = s.send_to(&m.to_vec().unwrap(), peer).await;
        }
    });
    addr
}

#[tokio::test]
async fn the_server_answers_forwards_and_truncates() {
    // A headless service with 100 endpoints: its A answer is larger than 512 bytes.
    let services = [service(
        json!({"metadata": {"name": "many", "namespace": "default"},
        "spec": {"clusterIP": "None"}}),
    )];
    let endpoints: Vec<_> = (1..=100)
        .map(|i| json!({"addresses": [format!("10.42.1.{i}")]}))
        .collect();
    let slices = [slice(json!({
        "metadata": {"name": "many-x", "namespace": "default",
                     "labels": {"kubernetes.io/service-name": "many"}},
        "addressType": "IPv4", "endpoints": endpoints}))];
    let (tx, rx) = watch::channel(Arc::new(world()));
    let upstream = fake_upstream().await;
    let (addr, _serving) = serve("127.0.0.1:0".parse().unwrap(), rx, vec![upstream])
        .await
        .unwrap();

    let a = udp_ask(
        addr,
        &query("web.default.svc.cluster.local.", RecordType::A, false),
    )
    .await;
    assert_eq!((a.id(), a.response_code()), (4242, ResponseCode::NoError));
    assert!(a.authoritative());
    assert_eq!(a.answers()[0].data().to_string(), "10.43.0.20");
    let nx = udp_ask(
        addr,
        &query("x.default.svc.cluster.local.", RecordType::A, false),
    )
    .await;
    assert_eq!(nx.response_code(), ResponseCode::NXDomain);
    let fwd = udp_ask(addr, &query("example.org.", RecordType::A, false)).await;
    assert_eq!(fwd.answers()[0].data().to_string(), "192.0.2.7");
    let fwd_tcp = tcp_ask(addr, &query("example.org.", RecordType::A, false)).await;
    assert_eq!(fwd_tcp.answers()[0].data().to_string(), "192.0.2.7");

    // New records are answered as soon as they are swapped in.
    tx.send_replace(Arc::new(
        Records::build("cluster.local", &services, &slices).unwrap(),
    ));
    let small = udp_ask(
        addr,
        &query("many.default.svc.cluster.local.", RecordType::A, false),
    )
    .await;
    assert!(small.truncated());
    assert!(small.answers().is_empty());
    let edns = udp_ask(
        addr,
        &query("many.default.svc.cluster.local.", RecordType::A, true),
    )
    .await;
    assert!(
        edns.truncated(),
        "1,600 bytes do not fit the 1232 a server sends"
    );
    let whole = tcp_ask(
        addr,
        &query("many.default.svc.cluster.local.", RecordType::A, false),
    )
    .await;
    assert_eq!(whole.answers().len(), 100);

    // Garbage gets FORMERR; without resolvers, names outside the cluster get SERVFAIL.
    let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    s.send_to(&[0x12, 0x34, 0xff], addr).await.unwrap();
    let mut buf = [0u8; 512];
    let n = s.recv(&mut buf).await.unwrap();
    let formerr = Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(
        (formerr.id(), formerr.response_code()),
        (0x1234, ResponseCode::FormErr)
    );
    // A response sent to the server is not answered: the next datagram back is the answer
    // to the query after it.
    let mut bounce = Message::new();
    bounce.set_id(1).set_message_type(MessageType::Response);
    s.send_to(&bounce.to_vec().unwrap(), addr).await.unwrap();
    s.send_to(
        &query("web.default.svc.cluster.local.", RecordType::A, false),
        addr,
    )
    .await
    .unwrap();
    let n = s.recv(&mut buf).await.unwrap();
    assert_eq!(Message::from_vec(&buf[..n]).unwrap().id(), 4242);
    let (_tx, rx) = watch::channel(Arc::new(world()));
    let (lonely, _serving) = serve("127.0.0.1:0".parse().unwrap(), rx, vec![])
        .await
        .unwrap();
    let fail = udp_ask(lonely, &query("example.org.", RecordType::A, false)).await;
    assert_eq!(fail.response_code(), ResponseCode::ServFail);
}
