//! Cluster DNS, as Kubernetes' DNS specification (kubernetes/dns, docs/specification.md) and
//! CoreDNS's `kubernetes` plugin in k3s's configuration answer it:
//!
//! - `SVC.NS.svc.ZONE`: A/AAAA of a Service's cluster IPs; of a headless Service's ready
//!   endpoints (not-ready ones too with `publishNotReadyAddresses`); a CNAME to an
//!   ExternalName Service's name;
//! - `HOST.SVC.NS.svc.ZONE` for each endpoint of a headless Service, HOST being the endpoint's
//!   `hostname` (StatefulSet pods) or its address with dashes;
//! - `_PORT._PROTO.SVC.NS.svc.ZONE`: SRV for each named port, to the Service's name, or to each
//!   endpoint's name for a headless one;
//! - `A-B-C-D.NS.pod.ZONE`: the address written in the name (CoreDNS's `pods insecure`);
//! - PTR for cluster IPs and headless endpoints' addresses;
//! - other names in the zone: NXDOMAIN (NODATA for names that exist with other types), with the
//!   zone's SOA; names outside it, and reverse names it does not know, go to the node's
//!   resolvers (`/etc/resolv.conf`), and without an answer from them SERVFAIL comes at once, or
//!   after [`FORWARD_TIMEOUT`], never a hang.
//!
//! Records are rebuilt from the watched Services and EndpointSlices ([`crate::watch_services`])
//! after each burst of changes and swapped in whole, so a query sees one consistent view. Only clients at loopback,
//! private and link-local addresses are served ([`private_source`]): a node with a public
//! address is no open resolver. What one client may cost is bounded: forwarded queries in
//! flight ([`MAX_FORWARDS`]), TCP connections ([`MAX_TCP_CONNECTIONS`]) and their idle time.
//!
//! The wire format is hickory-proto's; the answering rules are Kubernetes' and written here,
//! since no crate answers from Kubernetes objects.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, PTR, SOA, SRV};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{watch, Semaphore};

/// The TTL of every answer from the cluster's records, as CoreDNS's `kubernetes` plugin.
pub const TTL: u32 = 5;

/// How long a forwarded query waits for each of the node's resolvers.
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(2);

/// Forwarded queries in flight; past it a query gets SERVFAIL at once.
pub const MAX_FORWARDS: usize = 512;

/// TCP clients served at once; more wait to be accepted.
pub const MAX_TCP_CONNECTIONS: usize = 128;

/// How long a TCP client may stay silent before its connection is closed.
const TCP_IDLE: Duration = Duration::from_secs(10);

/// The UDP answer size without EDNS (RFC 1035).
const UDP_PLAIN: usize = 512;

/// The largest UDP answer sent whatever a client's EDNS offers (the DNS flag day's 1232).
const UDP_MAX: u16 = 1232;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cluster DNS on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the cluster domain {0:?} is not a valid DNS name")]
    Zone(String),
}

/// A name as the records key it: lower case, fully qualified.
fn key(name: &Name) -> String {
    let mut s = name.to_lowercase().to_ascii();
    if !s.ends_with('.') {
        s.push('.');
    }
    s
}

/// `ip` with dashes for dots (or colons), as CoreDNS names endpoints without a hostname.
fn dashed(ip: &IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string().replace('.', "-"),
        IpAddr::V6(v6) => v6.to_string().replace(':', "-"),
    }
}

/// The reverse name of `ip` (`D.C.B.A.in-addr.arpa.`).
fn reverse(ip: &IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.in-addr.arpa.", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let mut s = String::with_capacity(72);
            for b in v6.octets().iter().rev() {
                s.push_str(&format!("{:x}.{:x}.", b & 0xf, b >> 4));
            }
            s.push_str("ip6.arpa.");
            s
        }
    }
}

/// The A or AAAA data of `ip`.
fn address(ip: IpAddr) -> RData {
    match ip {
        IpAddr::V4(v4) => RData::A(A(v4)),
        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
    }
}

/// What the cluster's names resolve to.
#[derive(Debug)]
pub struct Records {
    zone: String,
    /// `.ZONE` and `.pod.ZONE`, the suffixes asked names are matched against.
    in_zone: String,
    pods: String,
    soa: Record,
    /// Record data by name ([`key`]).
    data: HashMap<String, Vec<RData>>,
    /// Names that exist in the zone, with data or only below them (so NODATA, not NXDOMAIN).
    names: HashSet<String>,
}

impl Records {
    /// The records of `services` and their `slices` in the zone `domain` (`cluster.local`).
    pub fn build<'a>(
        domain: &str,
        services: impl IntoIterator<Item = &'a Service>,
        slices: impl IntoIterator<Item = &'a EndpointSlice>,
    ) -> Result<Records, Error> {
        let zone_name = Name::from_ascii(format!("{}.", domain.trim_end_matches('.')))
            .map_err(|_| Error::Zone(domain.to_string()))?;
        let zone = key(&zone_name);
        let soa = Record::from_rdata(
            zone_name.clone(),
            TTL,
            RData::SOA(SOA::new(
                Name::from_ascii(format!("ns.dns.{zone}"))
                    .map_err(|_| Error::Zone(zone.clone()))?,
                Name::from_ascii(format!("hostmaster.{zone}"))
                    .map_err(|_| Error::Zone(zone.clone()))?,
                1,
                7200,
                1800,
                86400,
                TTL,
            )),
        );
        let mut r = Records {
            in_zone: format!(".{zone}"),
            pods: format!(".pod.{zone}"),
            zone,
            soa,
            data: HashMap::new(),
            names: HashSet::new(),
        };
        let mut by_service: BTreeMap<(&str, &str), Vec<&EndpointSlice>> = BTreeMap::new();
        for s in slices {
            let service = s
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("kubernetes.io/service-name"));
            if let (Some(ns), Some(service)) = (s.metadata.namespace.as_deref(), service) {
                by_service.entry((ns, service)).or_default().push(s);
            }
        }
        for svc in services {
            let (Some(ns), Some(name)) = (
                svc.metadata.namespace.as_deref(),
                svc.metadata.name.as_deref(),
            ) else {
                continue;
            };
            let slices = by_service.get(&(ns, name)).map_or(&[][..], |v| v);
            r.add_service(ns, name, svc, slices);
        }
        Ok(r)
    }

    fn add(&mut self, name: &str, data: RData) {
        let Ok(parsed) = Name::from_ascii(name) else {
            return;
        };
        let k = key(&parsed);
        if k.ends_with(&self.in_zone) {
            // Every name between it and the zone exists too.
            let mut at = k.as_str();
            while at.len() > self.zone.len() {
                if !self.names.insert(at.to_string()) {
                    break;
                }
                at = at.split_once('.').map_or("", |(_, rest)| rest);
            }
        }
        let list = self.data.entry(k).or_default();
        if !list.contains(&data) {
            list.push(data);
        }
    }

    fn add_address(&mut self, name: &str, ip: IpAddr) {
        self.add(name, address(ip));
    }

    fn add_ptr(&mut self, ip: IpAddr, target: &str) {
        if let Ok(t) = Name::from_ascii(target) {
            self.add(&reverse(&ip), RData::PTR(PTR(t)));
        }
    }

    fn add_srv(&mut self, name: &str, port: u16, target: &str) {
        if let Ok(t) = Name::from_ascii(target) {
            self.add(name, RData::SRV(SRV::new(0, 100, port, t)));
        }
    }

    fn add_service(&mut self, ns: &str, name: &str, svc: &Service, slices: &[&EndpointSlice]) {
        let base = format!("{name}.{ns}.svc.{}", self.zone);
        let spec = svc.spec.clone().unwrap_or_default();
        if spec.type_.as_deref() == Some("ExternalName") {
            let target = spec.external_name.unwrap_or_default();
            if let Ok(t) = Name::from_ascii(format!("{}.", target.trim_end_matches('.'))) {
                self.add(&base, RData::CNAME(CNAME(t)));
            }
            return;
        }
        let headless = spec.cluster_ip.as_deref() == Some("None");
        if !headless {
            let ips = spec
                .cluster_ips
                .clone()
                .unwrap_or_else(|| spec.cluster_ip.clone().into_iter().collect());
            let ips: Vec<IpAddr> = ips.iter().filter_map(|i| i.parse().ok()).collect();
            if ips.is_empty() {
                return;
            }
            for ip in ips {
                self.add_address(&base, ip);
                self.add_ptr(ip, &base);
            }
            for p in spec.ports.iter().flatten() {
                if let (Some(port_name), Ok(port)) = (p.name.as_deref(), u16::try_from(p.port)) {
                    let proto = p.protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase();
                    self.add_srv(&format!("_{port_name}._{proto}.{base}"), port, &base);
                }
            }
            return;
        }
        // Headless: the endpoints themselves.
        self.names.insert(base.clone());
        let publish_all = spec.publish_not_ready_addresses.unwrap_or(false);
        for slice in slices {
            if slice.address_type == "FQDN" {
                continue;
            }
            for ep in &slice.endpoints {
                let ready = ep.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
                if !ready && !publish_all {
                    continue;
                }
                for ip in ep.addresses.iter().filter_map(|a| a.parse::<IpAddr>().ok()) {
                    let host = ep.hostname.clone().unwrap_or_else(|| dashed(&ip));
                    let target = format!("{host}.{base}");
                    self.add_address(&base, ip);
                    self.add_address(&target, ip);
                    self.add_ptr(ip, &target);
                    for p in slice.ports.iter().flatten() {
                        let (Some(port_name), Some(port)) = (
                            p.name.as_deref(),
                            p.port.and_then(|p| u16::try_from(p).ok()),
                        ) else {
                            continue;
                        };
                        if port_name.is_empty() {
                            continue;
                        }
                        let proto = p.protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase();
                        self.add_srv(&format!("_{port_name}._{proto}.{base}"), port, &target);
                    }
                }
            }
        }
    }

    /// The address a `A-B-C-D.NS.pod.ZONE` name spells, if it is one.
    fn pod_address(&self, k: &str) -> Option<IpAddr> {
        let rest = k.strip_suffix(&self.pods)?;
        let (host, ns) = rest.split_once('.')?;
        if ns.is_empty() || ns.contains('.') {
            return None;
        }
        Ipv4Addr::from_str(&host.replace('-', "."))
            .map(IpAddr::V4)
            .or_else(|_| Ipv6Addr::from_str(&host.replace('-', ":")).map(IpAddr::V6))
            .ok()
    }

    /// The answer to `name`/`qtype` from the records, or `None` when the node's resolvers are
    /// to be asked.
    pub fn resolve(&self, name: &Name, qtype: RecordType) -> Option<Resolution> {
        let k = key(name);
        let pod;
        let data: &[RData] = match (self.data.get(&k), self.pod_address(&k)) {
            (Some(d), _) => d,
            (None, Some(ip)) => {
                pod = [address(ip)];
                &pod
            }
            (None, None) => {
                if k != self.zone && !k.ends_with(&self.in_zone) {
                    return None;
                }
                let code = if k == self.zone || self.names.contains(&k) {
                    ResponseCode::NoError
                } else {
                    ResponseCode::NXDomain
                };
                let soa = k == self.zone && matches!(qtype, RecordType::SOA | RecordType::ANY);
                let answers = if soa {
                    vec![self.soa.clone()]
                } else {
                    Vec::new()
                };
                return Some(self.negative_or(code, answers));
            }
        };
        let record = |d: &RData| Record::from_rdata(name.clone(), TTL, d.clone());
        let answers: Vec<Record> = match data.iter().find(|d| matches!(d, RData::CNAME(_))) {
            Some(c) if qtype != RecordType::CNAME => vec![record(c)],
            _ => data
                .iter()
                .filter(|d| qtype == RecordType::ANY || d.record_type() == qtype)
                .map(record)
                .collect(),
        };
        Some(self.negative_or(ResponseCode::NoError, answers))
    }

    /// `answers`, or with none the zone's SOA in the authority section (RFC 2308).
    fn negative_or(&self, code: ResponseCode, answers: Vec<Record>) -> Resolution {
        let authority = if answers.is_empty() {
            vec![self.soa.clone()]
        } else {
            Vec::new()
        };
        Resolution {
            code,
            answers,
            authority,
        }
    }
}

/// An answer from the cluster's records.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolution {
    pub code: ResponseCode,
    pub answers: Vec<Record>,
    pub authority: Vec<Record>,
}

/// The answer to `request` from `records`, or `None` when the node's resolvers are to be asked.
fn reply(records: &Records, request: &Message) -> Option<Message> {
    let mut m = Message::new();
    m.set_id(request.id())
        .set_message_type(MessageType::Response)
        .set_op_code(request.op_code())
        .set_recursion_desired(request.recursion_desired())
        .set_recursion_available(true);
    if let Some(edns) = request.extensions() {
        let mut e = Edns::new();
        e.set_max_payload(edns.max_payload().clamp(UDP_PLAIN as u16, UDP_MAX));
        m.set_edns(e);
    }
    if request.op_code() != OpCode::Query {
        m.set_response_code(ResponseCode::NotImp);
        return Some(m);
    }
    let [query] = request.queries() else {
        m.set_response_code(ResponseCode::FormErr);
        return Some(m);
    };
    m.add_query(query.clone());
    if !matches!(query.query_class(), DNSClass::IN | DNSClass::ANY) {
        return None;
    }
    let r = records.resolve(query.name(), query.query_type())?;
    m.set_authoritative(true)
        .set_response_code(r.code)
        .add_answers(r.answers)
        .add_name_servers(r.authority);
    Some(m)
}

/// `m` encoded to fit `limit` bytes: if it does not, without its records and marked truncated,
/// so the client asks again over TCP.
fn encode(mut m: Message, limit: usize) -> Option<Vec<u8>> {
    let bytes = m.to_vec().ok()?;
    if bytes.len() <= limit {
        return Some(bytes);
    }
    m.take_answers();
    m.take_name_servers();
    m.take_additionals();
    m.set_truncated(true);
    m.to_vec().ok()
}

/// Whether a client at `ip` is served: loopback, private (RFC 1918, the shared 100.64/10,
/// IPv6 unique local) and link-local addresses, where pods and nodes are. A node with a public
/// address must not become an open resolver for the Internet (spoofed queries would make it
/// amplify floods), nor tell it the cluster's service names.
pub fn private_source(ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || (a == 100 && (64..128).contains(&b))
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            v6.is_loopback() || (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80
        }
    }
}

/// The node's resolvers, from a resolv.conf, without `exclude` (the cluster DNS's own address:
/// asking itself would loop).
pub fn upstreams(resolv_conf: &str, exclude: &[IpAddr]) -> Vec<SocketAddr> {
    resolv_conf
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some("nameserver"))
                .then(|| words.next())
                .flatten()
        })
        .filter_map(|a| a.split('%').next()?.parse::<IpAddr>().ok())
        .filter(|ip| !exclude.contains(ip))
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

/// Serves the cluster DNS on `addr` (UDP and TCP, the same port) from the records `records`
/// holds, forwarding what they do not answer to `upstream`. Returns the address it serves on
/// (the port chosen when `addr`'s is 0) once both sockets are bound, and the task serving,
/// which stops taking queries when aborted.
pub async fn serve(
    addr: SocketAddr,
    records: watch::Receiver<Arc<Records>>,
    upstream: Vec<SocketAddr>,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), Error> {
    // With port 0, the TCP port the UDP socket got may be another process's: pick again.
    let attempts = if addr.port() == 0 { 8 } else { 1 };
    let mut attempt = 0;
    let (udp, tcp, local) = loop {
        attempt += 1;
        let udp = UdpSocket::bind(addr)
            .await
            .map_err(|source| Error::Bind { addr, source })?;
        let local = udp
            .local_addr()
            .map_err(|source| Error::Bind { addr, source })?;
        match TcpListener::bind(local).await {
            Ok(tcp) => break (udp, tcp, local),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && attempt < attempts => {}
            Err(source) => {
                return Err(Error::Bind {
                    addr: local,
                    source,
                })
            }
        }
    };
    let server = Arc::new(Server {
        records,
        upstream,
        forwards: Semaphore::new(MAX_FORWARDS),
    });
    let serving = tokio::spawn(async move {
        tokio::join!(server.clone().udp(Arc::new(udp)), server.tcp(tcp));
    });
    Ok((local, serving))
}

struct Server {
    records: watch::Receiver<Arc<Records>>,
    upstream: Vec<SocketAddr>,
    forwards: Semaphore,
}

/// What to do with the bytes of one query.
enum Outcome {
    Send(Vec<u8>),
    /// The node's resolvers are to be asked this.
    Forward(Message),
}

impl Server {
    /// The answer to the query `bytes` from the records, or the request to forward. Over UDP
    /// (`udp`) the answer fits 512 bytes, or what the client's EDNS offers (up to 1232).
    fn decide(&self, bytes: &[u8], udp: bool) -> Option<Outcome> {
        let request = match Message::from_vec(bytes) {
            Ok(m) => m,
            Err(_) => {
                // Unparseable: FORMERR with the id, if there are enough bytes for one.
                let id = u16::from_be_bytes([*bytes.first()?, *bytes.get(1)?]);
                let m = Message::error_msg(id, OpCode::Query, ResponseCode::FormErr);
                return m.to_vec().ok().map(Outcome::Send);
            }
        };
        if request.message_type() == MessageType::Response {
            // Never answered: two servers could bounce answers between them forever.
            return None;
        }
        let limit = match (udp, request.extensions()) {
            (false, _) => usize::from(u16::MAX),
            (true, None) => UDP_PLAIN,
            (true, Some(e)) => usize::from(e.max_payload().clamp(UDP_PLAIN as u16, UDP_MAX)),
        };
        let records = self.records.borrow().clone();
        match reply(&records, &request) {
            Some(m) => encode(m, limit).map(Outcome::Send),
            None => Some(Outcome::Forward(request)),
        }
    }

    /// The node's resolvers' answer to `request` (whose bytes are `bytes`), or SERVFAIL.
    async fn forwarded(&self, request: &Message, bytes: &[u8], tcp: bool) -> Option<Vec<u8>> {
        let answer = match self.forwards.try_acquire() {
            Ok(_permit) => forward(&self.upstream, bytes, tcp).await,
            Err(_) => None,
        };
        answer.or_else(|| {
            let mut m = Message::error_msg(request.id(), request.op_code(), ResponseCode::ServFail);
            m.add_queries(request.queries().to_vec());
            m.set_recursion_desired(request.recursion_desired())
                .set_recursion_available(true);
            m.to_vec().ok()
        })
    }

    async fn udp(self: Arc<Self>, socket: Arc<UdpSocket>) {
        let mut buf = vec![0u8; 4096];
        loop {
            let (n, peer) = match socket.recv_from(&mut buf).await {
                Ok(x) => x,
                Err(e) => {
                    tracing::debug!(error = %e, "cluster DNS: receiving");
                    continue;
                }
            };
            if !private_source(peer.ip()) {
                continue;
            }
            let query = &buf[..n];
            match self.decide(query, true) {
                Some(Outcome::Send(answer)) => {
                    let _ = socket.send_to(&answer, peer).await;
                }
                Some(Outcome::Forward(request)) => {
                    let (this, socket, query) = (self.clone(), socket.clone(), query.to_vec());
                    tokio::spawn(async move {
                        if let Some(answer) = this.forwarded(&request, &query, false).await {
                            let _ = socket.send_to(&answer, peer).await;
                        }
                    });
                }
                None => {}
            }
        }
    }

    async fn tcp(self: Arc<Self>, listener: TcpListener) {
        let slots = Arc::new(Semaphore::new(MAX_TCP_CONNECTIONS));
        loop {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            let Ok((stream, peer)) = listener.accept().await else {
                continue;
            };
            if !private_source(peer.ip()) {
                continue;
            }
            let this = self.clone();
            tokio::spawn(async move {
                let _permit = permit;
                this.tcp_client(stream).await;
            });
        }
    }

    async fn tcp_client(&self, mut stream: TcpStream) {
        loop {
            let mut len = [0u8; 2];
            match tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut len)).await {
                Ok(Ok(_)) => {}
                _ => return,
            }
            let mut query = vec![0u8; usize::from(u16::from_be_bytes(len))];
            match tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut query)).await {
                Ok(Ok(_)) => {}
                _ => return,
            }
            let answer = match self.decide(&query, false) {
                Some(Outcome::Send(a)) => Some(a),
                Some(Outcome::Forward(request)) => self.forwarded(&request, &query, true).await,
                None => None,
            };
            let Some(answer) = answer else {
                return;
            };
            let Ok(n) = u16::try_from(answer.len()) else {
                return;
            };
            if stream.write_all(&n.to_be_bytes()).await.is_err()
                || stream.write_all(&answer).await.is_err()
            {
                return;
            }
        }
    }
}

/// The raw `query` asked of each of `upstream` in turn, each for up to [`FORWARD_TIMEOUT`]:
/// the first answer with the query's id. Over UDP; a truncated answer is asked again over TCP
/// when the client asked over TCP (`tcp`), else relayed for the client to do so.
async fn forward(upstream: &[SocketAddr], query: &[u8], tcp: bool) -> Option<Vec<u8>> {
    let id = query.get(..2)?;
    for server in upstream {
        let ask = async {
            let answer = ask_udp(*server, query, id).await?;
            let truncated = answer.get(2).is_some_and(|flags| flags & 0x02 != 0);
            if truncated && tcp {
                ask_tcp(*server, query).await
            } else {
                Some(answer)
            }
        };
        if let Ok(Some(answer)) = tokio::time::timeout(FORWARD_TIMEOUT, ask).await {
            if answer.get(..2) == Some(id) {
                return Some(answer);
            }
        }
    }
    None
}

async fn ask_udp(server: SocketAddr, query: &[u8], id: &[u8]) -> Option<Vec<u8>> {
    let local: SocketAddr = if server.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let s = UdpSocket::bind(local).await.ok()?;
    s.connect(server).await.ok()?;
    s.send(query).await.ok()?;
    let mut buf = vec![0u8; 4096];
    loop {
        let n = s.recv(&mut buf).await.ok()?;
        if buf.get(..2) == Some(id) {
            return Some(buf[..n].to_vec());
        }
    }
}

async fn ask_tcp(server: SocketAddr, query: &[u8]) -> Option<Vec<u8>> {
    let mut s = TcpStream::connect(server).await.ok()?;
    let n = u16::try_from(query.len()).ok()?;
    s.write_all(&n.to_be_bytes()).await.ok()?;
    s.write_all(query).await.ok()?;
    let mut len = [0u8; 2];
    s.read_exact(&mut len).await.ok()?;
    let mut answer = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut answer).await.ok()?;
    Some(answer)
}

/// Keeps `tx` holding the records of the Services and EndpointSlices `services` holds, in the
/// zone `domain`, rebuilt at each change; returns when `services`' sender is gone.
pub async fn follow(
    domain: String,
    mut services: watch::Receiver<Arc<crate::Services>>,
    tx: watch::Sender<Arc<Records>>,
) -> Result<(), Error> {
    while services.changed().await.is_ok() {
        let now = services.borrow_and_update().clone();
        let records = Records::build(
            &domain,
            now.services.iter().map(|s| s.as_ref()),
            now.slices.iter().map(|s| s.as_ref()),
        )?;
        tx.send_replace(Arc::new(records));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
