//! The cluster DNS each node serves (`--cluster-dns-port`), asked over UDP and TCP on the
//! node's address while Services and EndpointSlices are created and deleted with kubectl: the
//! names come and go with the objects. Forwarding to the machine's resolvers is not asked here
//! (it would send packets off loopback); crates/net's tests cover it with a resolver of their
//! own.

use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use rudder_testkit::RudderServer;

fn server() -> (RudderServer, SocketAddr) {
    let s = RudderServer::start(
        Path::new(env!("CARGO_BIN_EXE_rudder")),
        &["--node-ip", "127.0.0.1"],
    )
    .expect("start rudder server");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // Without the colours of the log's fields.
        let log = strip_ansi(&s.log());
        let addr = log
            .lines()
            .filter(|l| l.contains("cluster DNS serving"))
            .find_map(|l| {
                l.split("address=")
                    .nth(1)?
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()
            });
        if let Some(addr) = addr {
            return (s, addr);
        }
        assert!(
            Instant::now() < deadline,
            "no cluster DNS in the log:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for e in chars.by_ref() {
                if e.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn query(name: &str, t: RecordType) -> Vec<u8> {
    let mut m = Message::new();
    m.set_id(7).set_recursion_desired(true);
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), t));
    m.to_vec().unwrap()
}

fn udp(dns: SocketAddr, name: &str, t: RecordType) -> Message {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.send_to(&query(name, t), dns).unwrap();
    let mut buf = [0u8; 4096];
    let n = s.recv(&mut buf).expect("an answer over UDP");
    Message::from_vec(&buf[..n]).unwrap()
}

fn tcp(dns: SocketAddr, name: &str, t: RecordType) -> Message {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect(dns).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let q = query(name, t);
    s.write_all(&(q.len() as u16).to_be_bytes()).unwrap();
    s.write_all(&q).unwrap();
    let mut len = [0u8; 2];
    s.read_exact(&mut len).unwrap();
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut buf).unwrap();
    Message::from_vec(&buf).unwrap()
}

/// The answers' data, sorted, once `name` resolves to something (or to nothing, NXDOMAIN, when
/// `want` is empty).
fn settled(dns: SocketAddr, name: &str, t: RecordType, want: &[&str]) -> Message {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let m = udp(dns, name, t);
        let mut got: Vec<String> = m.answers().iter().map(|a| a.data().to_string()).collect();
        got.sort();
        let done = if want.is_empty() {
            m.response_code() == ResponseCode::NXDomain
        } else {
            got == want
        };
        if done {
            return m;
        }
        assert!(
            Instant::now() < deadline,
            "{name} {t}: {:?} {got:?}, not {want:?}",
            m.response_code()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn services_and_endpoints_are_named_in_the_cluster_dns() {
    let (s, dns) = server();
    s.kubectl(&["create", "service", "clusterip", "web", "--tcp=80:8080"])
        .ok();
    let ip = s
        .kubectl(&["get", "service", "web", "-o", "jsonpath={.spec.clusterIP}"])
        .ok();
    let a = settled(dns, "web.default.svc.cluster.local.", RecordType::A, &[&ip]);
    assert_eq!(a.id(), 7);
    assert!(a.authoritative());
    let by_tcp = tcp(dns, "web.default.svc.cluster.local.", RecordType::A);
    assert_eq!(by_tcp.answers()[0].data().to_string(), ip);
    // kubectl names the port 80-8080.
    let srv = udp(
        dns,
        "_80-8080._tcp.web.default.svc.cluster.local.",
        RecordType::SRV,
    );
    assert_eq!(
        srv.answers()[0].data().to_string(),
        "0 100 80 web.default.svc.cluster.local."
    );
    let octets: Vec<&str> = ip.split('.').rev().collect();
    let ptr = udp(
        dns,
        &format!("{}.in-addr.arpa.", octets.join(".")),
        RecordType::PTR,
    );
    assert_eq!(
        ptr.answers()[0].data().to_string(),
        "web.default.svc.cluster.local."
    );

    // A headless service and its endpoints, one of them a StatefulSet-style hostname.
    let headless = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": "db", "namespace": "default"},
         "spec": {"clusterIP": "None", "ports": [{"name": "pg", "port": 5432}]}},
        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
         "metadata": {"name": "db-1", "namespace": "default",
                      "labels": {"kubernetes.io/service-name": "db"}},
         "addressType": "IPv4",
         "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}],
         "endpoints": [
            {"addresses": ["10.42.0.5"], "hostname": "db-0", "conditions": {"ready": true}},
            {"addresses": ["10.42.0.6"], "conditions": {"ready": true}},
            {"addresses": ["10.42.0.7"], "conditions": {"ready": false}}]},
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": "ext", "namespace": "default"},
         "spec": {"type": "ExternalName", "externalName": "db.example.org"}}]});
    s.kubectl_stdin(&["apply", "-f", "-"], &headless.to_string())
        .ok();
    settled(
        dns,
        "db.default.svc.cluster.local.",
        RecordType::A,
        &["10.42.0.5", "10.42.0.6"],
    );
    settled(
        dns,
        "db-0.db.default.svc.cluster.local.",
        RecordType::A,
        &["10.42.0.5"],
    );
    let srv = udp(
        dns,
        "_pg._tcp.db.default.svc.cluster.local.",
        RecordType::SRV,
    );
    assert_eq!(srv.answers().len(), 2);
    settled(
        dns,
        "ext.default.svc.cluster.local.",
        RecordType::A,
        &["db.example.org."],
    );
    // Search-path tries of outside names end at once in the zone.
    let nx = udp(dns, "example.org.default.svc.cluster.local.", RecordType::A);
    assert_eq!(nx.response_code(), ResponseCode::NXDomain);

    // Deleted, gone.
    s.kubectl(&["delete", "service", "web"]).ok();
    settled(dns, "web.default.svc.cluster.local.", RecordType::A, &[]);
}
