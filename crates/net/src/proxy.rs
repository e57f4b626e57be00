//! The service proxy: nftables rules, in a table of Rudder's own (`inet rudder`), that send the
//! traffic for a Service's addresses to its endpoints, as kube-proxy's nftables mode does:
//!
//! - a ClusterIP (and each of a dual-stack Service's cluster IPs) at each port is DNATed to one
//!   of the port's usable endpoints, picked evenly at random (`numgen random`); with
//!   `sessionAffinity: ClientIP` a client keeps its endpoint for the affinity timeout;
//! - a NodePort on the node's addresses, a LoadBalancer's ingress addresses and the Service's
//!   `externalIPs` at the Service's port are external traffic: with `externalTrafficPolicy:
//!   Cluster` it goes to any endpoint, its source masqueraded so that replies come back through
//!   this node; with `Local` only to endpoints on this node, its source kept (traffic from this
//!   node's own pods and the node itself still goes to any endpoint);
//! - `internalTrafficPolicy: Local` sends cluster-IP traffic to this node's endpoints only;
//! - usable endpoints are the ready ones, or when none is ready the serving ones that are
//!   terminating (as kube-proxy does); with none, traffic to the cluster IP is rejected at
//!   once (ICMP port unreachable: "connection refused") rather than left to time out, and so is
//!   traffic to a cluster IP at a port it does not serve;
//! - traffic from outside this node's pods to a cluster IP is masqueraded, and so is a pod's
//!   traffic that its Service sends back to itself (hairpin);
//! - headless and ExternalName Services have no rules (DNS answers for them);
//! - UDP flows that a change of endpoints leaves stale are deleted from conntrack
//!   ([`Rules::stale_udp`], [`crate::conntrack`]).
//!
//! The cluster DNS Service (at `--cluster-dns`) has no selector and no endpoints of its own:
//! every node sends it to the DNS server it runs itself ([`Config::local_dns`]), so name
//! lookups never leave the node (as NodeLocal DNSCache does).
//!
//! Rules are rebuilt in memory from each new view of the Services and EndpointSlices and
//! written with one `nft -f -` transaction: the first one replaces the whole table, later ones
//! change only the chains and map elements that differ, so a change of endpoints costs the
//! same with 10 Services or 10,000. Conntrack keeps established connections through a rewrite
//! and through an agent restart, which replaces the table at start. A table someone else took
//! away (a firewall reload's `flush ruleset`) is written again within [`CHECK`].
//!
//! `nft` (Debian `nftables`) is run rather than netlink spoken here: its ruleset language is the
//! stable interface kube-proxy also uses, and no maintained crate covers nftables' maps and
//! concatenations.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Service, ServicePort};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;

use crate::{conntrack, Services};

/// The table Rudder's proxy owns; nothing else in the machine's rules is touched.
pub const TABLE: &str = "inet rudder";

/// The packet mark bit that asks for masquerading on the way out.
const MASQUERADE_MARK: &str = "0x4000";

/// How long one `nft` run may take before it is killed and the sync retried.
const NFT_TIMEOUT: Duration = Duration::from_secs(30);

/// How often the proxy checks that its table is still there.
const CHECK: Duration = Duration::from_secs(10);

/// The default of `sessionAffinityConfig.clientIP.timeoutSeconds`: 3 hours.
const DEFAULT_AFFINITY_SECONDS: i32 = 10_800;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("run nft (Debian package nftables): {0}")]
    Spawn(std::io::Error),
    #[error("nft refused the rules: {0}")]
    Refused(String),
    #[error("nft took longer than {NFT_TIMEOUT:?}")]
    Timeout,
}

/// What a node's proxy needs to know about the node.
#[derive(Clone, Debug)]
pub struct Config {
    /// This node's name: endpoints with this `nodeName` are local.
    pub node_name: String,
    /// The addresses NodePorts answer on (`--node-ip`).
    pub node_ips: Vec<IpAddr>,
    /// The bridge of this node's pods: traffic that comes in on it is from a local pod.
    pub bridge: String,
    /// The cluster DNS Service's address and where this node serves DNS.
    pub local_dns: Option<(IpAddr, SocketAddr)>,
}

/// An IP family, as rules and chain names tell them apart.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Family {
    V4,
    V6,
}

impl Family {
    fn of(ip: IpAddr) -> Family {
        if ip.is_ipv4() {
            Family::V4
        } else {
            Family::V6
        }
    }

    /// The nft keyword matching this family's header.
    fn ip(self) -> &'static str {
        match self {
            Family::V4 => "ip",
            Family::V6 => "ip6",
        }
    }

    fn addr_type(self) -> &'static str {
        match self {
            Family::V4 => "ipv4_addr",
            Family::V6 => "ipv6_addr",
        }
    }

    /// The suffix of this family's maps and sets.
    fn suffix(self) -> &'static str {
        match self {
            Family::V4 => "v4",
            Family::V6 => "v6",
        }
    }

    fn slice_type(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }
}

/// One endpoint of a Service port.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Debug)]
struct Endpoint {
    ip: IpAddr,
    port: u16,
    local: bool,
}

/// What the table should hold beyond its fixed skeleton: the per-Service chains with their
/// rules, the elements of the maps and sets the skeleton declares, and the affinity sets.
#[derive(Clone, Default, PartialEq, Debug)]
pub struct Rules {
    chains: BTreeMap<String, Vec<String>>,
    /// Map or set name → key → verdict (empty for a set).
    elements: BTreeMap<String, BTreeMap<String, String>>,
    /// Affinity set name → its declaration.
    affinity: BTreeMap<String, String>,
    /// The UDP Service ports by chain id, for the flows to forget when their endpoints change.
    udp: BTreeMap<String, UdpPort>,
}

/// A UDP Service port as its clients' flows know it.
#[derive(Clone, Default, PartialEq, Debug)]
struct UdpPort {
    /// Where clients send: the cluster IPs, external IPs and load balancers' addresses.
    addrs: Vec<IpAddr>,
    port: u16,
    node_port: Option<u16>,
    /// Where the DNAT sends them.
    endpoints: BTreeSet<IpAddr>,
}

impl UdpPort {
    /// Filters for the flows to this port whose replies come from `from` (any, if `None`).
    fn flows(&self, from: Option<IpAddr>) -> impl Iterator<Item = conntrack::Filter> + '_ {
        let to_addrs = self.addrs.iter().map(move |a| conntrack::Filter {
            dst: Some(*a),
            dst_port: self.port,
            reply_src: from,
        });
        let to_node_port = self.node_port.map(|np| conntrack::Filter {
            dst: None,
            dst_port: np,
            reply_src: from,
        });
        to_addrs.chain(to_node_port)
    }
}

/// The maps and sets of the skeleton, by family: (name, declaration).
fn skeleton_sets(f: Family) -> [(String, String); 4] {
    let (t, s) = (f.addr_type(), f.suffix());
    [
        (
            format!("service-ips-{s}"),
            format!("map service-ips-{s} {{ type {t} . inet_proto . inet_service : verdict; }}"),
        ),
        (
            format!("service-nodeports-{s}"),
            format!("map service-nodeports-{s} {{ type inet_proto . inet_service : verdict; }}"),
        ),
        (
            format!("cluster-ips-{s}"),
            format!("set cluster-ips-{s} {{ type {t}; }}"),
        ),
        (
            format!("nodeport-ips-{s}"),
            format!("set nodeport-ips-{s} {{ type {t}; }}"),
        ),
    ]
}

/// The fixed part of the table: hooks, the lookups of the Service maps, masquerading and the
/// rejection of traffic to cluster IPs that no rule sent on.
fn skeleton() -> String {
    let mut t = format!("table {TABLE} {{\n");
    for f in [Family::V4, Family::V6] {
        for (_, decl) in skeleton_sets(f) {
            let _ = writeln!(t, "  {decl}");
        }
    }
    t.push_str(
        "  chain nat-prerouting { type nat hook prerouting priority dstnat; policy accept; jump services; }
  chain nat-output { type nat hook output priority -100; policy accept; jump services; }
  chain nat-postrouting { type nat hook postrouting priority srcnat; policy accept; jump masquerading; }
  chain filter-forward { type filter hook forward priority filter - 1; policy accept; jump reject-unserved; }
  chain filter-output { type filter hook output priority filter - 1; policy accept; jump reject-unserved; }
  chain services {
    ip daddr . meta l4proto . th dport vmap @service-ips-v4
    ip6 daddr . meta l4proto . th dport vmap @service-ips-v6
    ip daddr @nodeport-ips-v4 meta l4proto . th dport vmap @service-nodeports-v4
    ip6 daddr @nodeport-ips-v6 meta l4proto . th dport vmap @service-nodeports-v6
  }
  chain reject-unserved {
    ip daddr @cluster-ips-v4 reject
    ip6 daddr @cluster-ips-v6 reject
  }
",
    );
    let _ = writeln!(
        t,
        "  chain mark-for-masquerade {{ meta mark set meta mark | {MASQUERADE_MARK}; }}
  chain masquerading {{
    meta mark & {MASQUERADE_MARK} == 0 return
    meta mark set meta mark ^ {MASQUERADE_MARK}
    masquerade fully-random
  }}
}}"
    );
    t
}

/// A name nft accepts unquoted (letters, digits, `/`, `-`, `_`, `.`), from a Service port's
/// identity: Kubernetes names are already of that alphabet; an IPv6 address's colons become
/// dashes.
fn name(parts: &[&str]) -> String {
    parts.join("/").replace(':', "-")
}

fn protocol(p: &ServicePort) -> Option<&'static str> {
    match p.protocol.as_deref().unwrap_or("TCP") {
        "TCP" => Some("tcp"),
        "UDP" => Some("udp"),
        "SCTP" => Some("sctp"),
        _ => None,
    }
}

fn port_u16(p: i32) -> Option<u16> {
    u16::try_from(p).ok().filter(|&p| p > 0)
}

/// The endpoints of `svc`'s port `port` in `family` from its EndpointSlices: the ready ones,
/// else the serving terminating ones.
fn endpoints(
    cfg: &Config,
    svc: &Service,
    port: &ServicePort,
    family: Family,
    slices: &[&EndpointSlice],
) -> Vec<Endpoint> {
    let (mut ready, mut terminating) = (BTreeSet::new(), BTreeSet::new());
    let proto = port.protocol.as_deref().unwrap_or("TCP");
    for slice in slices {
        if slice.address_type != family.slice_type() {
            continue;
        }
        let Some(target) = slice.ports.iter().flatten().find(|p| {
            p.name.as_deref().unwrap_or("") == port.name.as_deref().unwrap_or("")
                && p.protocol.as_deref().unwrap_or("TCP") == proto
        }) else {
            continue;
        };
        let Some(target_port) = target.port.and_then(port_u16) else {
            continue;
        };
        for ep in &slice.endpoints {
            // kube-proxy uses an endpoint's first address.
            let Some(ip) = ep.addresses.first().and_then(|a| a.parse::<IpAddr>().ok()) else {
                continue;
            };
            if Family::of(ip) != family {
                continue;
            }
            let c = ep.conditions.as_ref();
            let is_ready = c.and_then(|c| c.ready).unwrap_or(true);
            let serving = c.and_then(|c| c.serving).unwrap_or(is_ready);
            let is_terminating = c.and_then(|c| c.terminating).unwrap_or(false);
            let e = Endpoint {
                ip,
                port: target_port,
                local: ep.node_name.as_deref() == Some(cfg.node_name.as_str()),
            };
            if is_ready {
                ready.insert(e);
            } else if serving && is_terminating {
                terminating.insert(e);
            }
        }
    }
    // The cluster DNS Service: this node's own DNS server.
    if let Some((dns_ip, local)) = cfg.local_dns {
        let selectorless = svc.spec.as_ref().is_none_or(|s| s.selector.is_none());
        let at_dns = cluster_ips(svc).contains(&dns_ip);
        if ready.is_empty() && selectorless && at_dns && Family::of(local.ip()) == family {
            ready.insert(Endpoint {
                ip: local.ip(),
                port: local.port(),
                local: true,
            });
        }
    }
    let usable = if ready.is_empty() { terminating } else { ready };
    usable.into_iter().collect()
}

/// A Service's cluster IPs, none for a headless one.
fn cluster_ips(svc: &Service) -> Vec<IpAddr> {
    let Some(spec) = &svc.spec else {
        return Vec::new();
    };
    let ips: Vec<&String> = match &spec.cluster_ips {
        Some(ips) if !ips.is_empty() => ips.iter().collect(),
        _ => spec.cluster_ip.iter().collect(),
    };
    ips.into_iter().filter_map(|ip| ip.parse().ok()).collect()
}

/// The rules that send a packet to one of the endpoint chains `eps`: first to the one whose
/// affinity set holds the source (`ip` is the family's keyword), else to any, evenly.
fn pick(rules: &mut Vec<String>, ip: &str, eps: &[(String, Option<String>)]) {
    for (chain, set) in eps {
        if let Some(set) = set {
            rules.push(format!("{ip} saddr @{set} goto {chain}"));
        }
    }
    match eps {
        [] => rules.push("drop".into()),
        [(only, _)] => rules.push(format!("goto {only}")),
        _ => {
            let arms: Vec<String> = eps
                .iter()
                .enumerate()
                .map(|(i, (chain, _))| format!("{i} : goto {chain}"))
                .collect();
            rules.push(format!(
                "numgen random mod {} vmap {{ {} }}",
                eps.len(),
                arms.join(", ")
            ));
        }
    }
}

impl Rules {
    /// The rules for `services` as seen from the node `cfg` describes.
    pub fn build(cfg: &Config, services: &Services) -> Rules {
        let mut by_service: BTreeMap<(&str, &str), Vec<&EndpointSlice>> = BTreeMap::new();
        for slice in &services.slices {
            let labels = slice.metadata.labels.as_ref();
            let (Some(ns), Some(svc)) = (
                slice.metadata.namespace.as_deref(),
                labels.and_then(|l| l.get("kubernetes.io/service-name")),
            ) else {
                continue;
            };
            by_service.entry((ns, svc)).or_default().push(slice);
        }
        let mut rules = Rules::default();
        for f in [Family::V4, Family::V6] {
            for (set, _) in skeleton_sets(f) {
                rules.elements.insert(set, BTreeMap::new());
            }
        }
        for ip in &cfg.node_ips {
            rules.element(
                &format!("nodeport-ips-{}", Family::of(*ip).suffix()),
                ip.to_string(),
                "",
            );
        }
        for svc in &services.services {
            let (Some(ns), Some(svc_name)) = (
                svc.metadata.namespace.as_deref(),
                svc.metadata.name.as_deref(),
            ) else {
                continue;
            };
            let slices = by_service
                .get(&(ns, svc_name))
                .map(Vec::as_slice)
                .unwrap_or_default();
            rules.add_service(cfg, svc, ns, svc_name, slices);
        }
        rules
    }

    fn element(&mut self, set: &str, key: String, verdict: &str) {
        self.elements
            .entry(set.to_string())
            .or_default()
            .insert(key, verdict.to_string());
    }

    fn add_service(
        &mut self,
        cfg: &Config,
        svc: &Service,
        ns: &str,
        svc_name: &str,
        slices: &[&EndpointSlice],
    ) {
        let Some(spec) = &svc.spec else { return };
        if spec.type_.as_deref() == Some("ExternalName") {
            return;
        }
        let ips = cluster_ips(svc);
        let affinity = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
            spec.session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref())
                .and_then(|c| c.timeout_seconds)
                .unwrap_or(DEFAULT_AFFINITY_SECONDS)
                .clamp(1, 86_400)
        });
        let external_local = spec.external_traffic_policy.as_deref() == Some("Local");
        let internal_local = spec.internal_traffic_policy.as_deref() == Some("Local");
        let nodeport_type = matches!(
            spec.type_.as_deref(),
            Some("NodePort") | Some("LoadBalancer")
        );
        let mut external: Vec<IpAddr> = spec
            .external_ips
            .iter()
            .flatten()
            .filter_map(|ip| ip.parse().ok())
            .collect();
        if spec.type_.as_deref() == Some("LoadBalancer") {
            let ingress = svc.status.as_ref().and_then(|s| s.load_balancer.as_ref());
            external.extend(
                ingress
                    .and_then(|lb| lb.ingress.as_ref())
                    .into_iter()
                    .flatten()
                    .filter_map(|i| i.ip.as_deref()?.parse::<IpAddr>().ok()),
            );
        }
        for port in spec.ports.iter().flatten() {
            let (Some(proto), Some(svc_port)) = (protocol(port), port_u16(port.port)) else {
                continue;
            };
            let families: BTreeSet<Family> = ips.iter().map(|ip| Family::of(*ip)).collect();
            for family in families {
                let eps = endpoints(cfg, svc, port, family, slices);
                let p = svc_port.to_string();
                let mut id = vec![ns, svc_name, proto, &p];
                if family == Family::V6 {
                    id.push("v6");
                }
                let node_port = port.node_port.and_then(port_u16).filter(|_| nodeport_type);
                if proto == "udp" {
                    let addrs = ips.iter().chain(&external);
                    self.udp.insert(
                        name(&id),
                        UdpPort {
                            addrs: addrs
                                .filter(|ip| Family::of(**ip) == family)
                                .copied()
                                .collect(),
                            port: svc_port,
                            node_port,
                            endpoints: eps.iter().map(|e| e.ip).collect(),
                        },
                    );
                }
                self.add_port(
                    cfg,
                    PortRules {
                        id: &id,
                        family,
                        proto,
                        svc_port,
                        node_port,
                        cluster_ips: ips.iter().filter(|ip| Family::of(**ip) == family),
                        external_ips: external.iter().filter(|ip| Family::of(**ip) == family),
                        eps: &eps,
                        affinity,
                        external_local,
                        internal_local,
                    },
                );
            }
        }
    }

    fn add_port<'a>(
        &mut self,
        cfg: &Config,
        p: PortRules<'_, impl Iterator<Item = &'a IpAddr>, impl Iterator<Item = &'a IpAddr>>,
    ) {
        let ip = p.family.ip();
        let s = p.family.suffix();
        let cluster_chain = format!("svc/{}", name(p.id));
        let local_chain = format!("local/{}", name(p.id));
        let external_chain = format!("ext/{}", name(p.id));
        // One chain per endpoint: hairpin masquerade, affinity, DNAT.
        let mut cluster = Vec::new();
        let mut local = Vec::new();
        for ep in p.eps {
            let (addr, port) = (ep.ip.to_string(), ep.port.to_string());
            let mut id = p.id.to_vec();
            id.extend([addr.as_str(), port.as_str()]);
            let chain = format!("ep/{}", name(&id));
            let set = p.affinity.map(|seconds| {
                // The timeout is in the name: a new timeout is a new set.
                let seconds = seconds.to_string();
                let mut set_id = id.clone();
                set_id.push(&seconds);
                let set = format!("affinity/{}", name(&set_id));
                self.affinity.insert(
                    set.clone(),
                    format!(
                        "{{ type {}; flags dynamic,timeout; timeout {seconds}s; }}",
                        p.family.addr_type()
                    ),
                );
                set
            });
            let mut rules = vec![format!("{ip} saddr {addr} jump mark-for-masquerade")];
            if let Some(set) = &set {
                rules.push(format!("update @{set} {{ {ip} saddr }}"));
            }
            let to = match p.family {
                Family::V4 => format!("{addr}:{port}"),
                Family::V6 => format!("[{addr}]:{port}"),
            };
            rules.push(format!("meta l4proto {} dnat {ip} to {to}", p.proto));
            self.chains.insert(chain.clone(), rules);
            if ep.local {
                local.push((chain.clone(), set.clone()));
            }
            cluster.push((chain, set));
        }
        if p.eps.is_empty() {
            // Nothing to send to: traffic to the cluster IP is rejected by the skeleton, and
            // a NodePort's is refused by the node, as no rule catches it.
            for cip in p.cluster_ips {
                self.element(&format!("cluster-ips-{s}"), cip.to_string(), "");
            }
            return;
        }
        // Cluster traffic: from anywhere but this node's pods, masqueraded.
        let mut rules = vec![
            format!("iifname != \"{}\" jump mark-for-masquerade", cfg.bridge),
            "fib saddr type local jump mark-for-masquerade".to_string(),
        ];
        pick(&mut rules, ip, &cluster);
        self.chains.insert(cluster_chain.clone(), rules);
        let needs_local = p.internal_local || p.external_local;
        if needs_local {
            let mut rules = Vec::new();
            pick(&mut rules, ip, &local);
            self.chains.insert(local_chain.clone(), rules);
        }
        let internal = if p.internal_local {
            &local_chain
        } else {
            &cluster_chain
        };
        let key = |addr: &IpAddr| format!("{addr} . {} . {}", p.proto, p.svc_port);
        for cip in p.cluster_ips {
            self.element(&format!("cluster-ips-{s}"), cip.to_string(), "");
            self.element(
                &format!("service-ips-{s}"),
                key(cip),
                &format!("goto {internal}"),
            );
        }
        let mut external_ips = p.external_ips.peekable();
        if p.node_port.is_none() && external_ips.peek().is_none() {
            return;
        }
        let rules = if p.external_local {
            vec![
                format!("iifname \"{}\" goto {cluster_chain}", cfg.bridge),
                format!("fib saddr type local goto {cluster_chain}"),
                format!("goto {local_chain}"),
            ]
        } else {
            vec![
                "jump mark-for-masquerade".to_string(),
                format!("goto {cluster_chain}"),
            ]
        };
        self.chains.insert(external_chain.clone(), rules);
        let goto = format!("goto {external_chain}");
        for eip in external_ips {
            self.element(&format!("service-ips-{s}"), key(eip), &goto);
        }
        if let Some(np) = p.node_port {
            self.element(
                &format!("service-nodeports-{s}"),
                format!("{} . {np}", p.proto),
                &goto,
            );
        }
    }

    /// The UDP flows that these rules, replacing `previous`, leave stale (kube-proxy's
    /// conntrack cleanup): those a DNAT sent to an endpoint that is gone; those to a port
    /// that had no endpoints, which no DNAT caught; and those to a port that is gone.
    pub fn stale_udp(&self, previous: &Rules) -> BTreeSet<conntrack::Filter> {
        let mut stale = BTreeSet::new();
        for (id, now) in &self.udp {
            match previous.udp.get(id) {
                Some(was) if !was.endpoints.is_empty() => {
                    for gone in was.endpoints.difference(&now.endpoints) {
                        stale.extend(now.flows(Some(*gone)));
                    }
                }
                _ if !now.endpoints.is_empty() => stale.extend(now.flows(None)),
                _ => {}
            }
        }
        for (id, was) in &previous.udp {
            if !self.udp.contains_key(id) {
                stale.extend(was.flows(None));
            }
        }
        stale
    }

    /// The nft script that turns the table from `previous` (what the last successful run
    /// wrote) into these rules; with no `previous`, one that replaces the whole table.
    pub fn script(&self, previous: Option<&Rules>) -> String {
        let mut out = String::new();
        let empty = Rules::default();
        let old = match previous {
            Some(p) => p,
            None => {
                let _ = writeln!(out, "add table {TABLE}\ndelete table {TABLE}");
                out.push_str(&skeleton());
                &empty
            }
        };
        for (set, decl) in &self.affinity {
            if !old.affinity.contains_key(set) {
                let _ = writeln!(out, "add set {TABLE} {set} {decl}");
            }
        }
        for chain in self.chains.keys() {
            if !old.chains.contains_key(chain) {
                let _ = writeln!(out, "add chain {TABLE} {chain}");
            }
        }
        for (chain, rules) in &self.chains {
            let before = old.chains.get(chain);
            if before == Some(rules) {
                continue;
            }
            if before.is_some() {
                let _ = writeln!(out, "flush chain {TABLE} {chain}");
            }
            for r in rules {
                let _ = writeln!(out, "add rule {TABLE} {chain} {r}");
            }
        }
        for (set, elements) in &self.elements {
            let before = old.elements.get(set);
            let gone: Vec<&String> = before
                .into_iter()
                .flatten()
                .filter(|(k, v)| elements.get(*k) != Some(v))
                .map(|(k, _)| k)
                .collect();
            if !gone.is_empty() {
                let keys: Vec<&str> = gone.iter().map(|k| k.as_str()).collect();
                let _ = writeln!(
                    out,
                    "delete element {TABLE} {set} {{ {} }}",
                    keys.join(", ")
                );
            }
            let new: Vec<String> = elements
                .iter()
                .filter(|(k, v)| before.and_then(|b| b.get(*k)) != Some(v))
                .map(|(k, v)| {
                    if v.is_empty() {
                        k.clone()
                    } else {
                        format!("{k} : {v}")
                    }
                })
                .collect();
            if !new.is_empty() {
                let _ = writeln!(out, "add element {TABLE} {set} {{ {} }}", new.join(", "));
            }
        }
        // Chains that go refer to one another: all are emptied before any is deleted.
        let gone: Vec<&String> = old
            .chains
            .keys()
            .filter(|c| !self.chains.contains_key(*c))
            .collect();
        for verb in ["flush", "delete"] {
            for chain in &gone {
                let _ = writeln!(out, "{verb} chain {TABLE} {chain}");
            }
        }
        for set in old.affinity.keys() {
            if !self.affinity.contains_key(set) {
                let _ = writeln!(out, "delete set {TABLE} {set}");
            }
        }
        out
    }
}

/// What one Service port in one family needs for its rules.
struct PortRules<'a, C, E> {
    id: &'a [&'a str],
    family: Family,
    proto: &'static str,
    svc_port: u16,
    node_port: Option<u16>,
    cluster_ips: C,
    external_ips: E,
    eps: &'a [Endpoint],
    affinity: Option<i32>,
    external_local: bool,
    internal_local: bool,
}

/// Runs `nft -f -` on `script`.
pub async fn apply(script: &str) -> Result<(), Error> {
    let mut child = tokio::process::Command::new("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(Error::Spawn)?;
    let mut stdin = child.stdin.take();
    let run = async {
        if let Some(stdin) = stdin.as_mut() {
            stdin
                .write_all(script.as_bytes())
                .await
                .map_err(Error::Spawn)?;
        }
        drop(stdin);
        child.wait_with_output().await.map_err(Error::Spawn)
    };
    let out = tokio::time::timeout(NFT_TIMEOUT, run)
        .await
        .map_err(|_| Error::Timeout)??;
    if out.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    // nft repeats each failing line of a long script; the first few say what is wrong.
    let head: Vec<&str> = err.lines().take(6).collect();
    Err(Error::Refused(head.join("\n")))
}

/// Removes Rudder's table (`rudder agent --cleanup`, `rudder uninstall`); no table is no error.
pub async fn cleanup() -> Result<(), Error> {
    apply(&format!("add table {TABLE}\ndelete table {TABLE}\n")).await
}

/// Deletes the UDP flows `stale` names, now that the rules that replace them are in force.
/// (After a restart nothing is known of what was there before, and nothing is deleted: the
/// flows that are not stale must go on.)
async fn forget_stale_udp(stale: BTreeSet<conntrack::Filter>) {
    if stale.is_empty() {
        return;
    }
    let filters: Vec<conntrack::Filter> = stale.into_iter().collect();
    match tokio::task::spawn_blocking(move || conntrack::delete_udp(&filters)).await {
        Ok(Ok(n)) => tracing::debug!(flows = n, "stale UDP flows deleted"),
        Ok(Err(e)) => tracing::warn!(error = %e, "stale UDP flows not deleted"),
        Err(e) => tracing::warn!(error = %e, "stale UDP flows not deleted"),
    }
}

/// Whether the proxy's table is there (`nft list tables`, cheap whatever the table holds); an
/// `nft` that cannot say is taken as yes.
async fn table_present() -> bool {
    let listed = tokio::process::Command::new("nft")
        .args(["list", "tables"])
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(NFT_TIMEOUT, listed).await {
        Ok(Ok(out)) if out.status.success() => String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|l| l.trim() == format!("table {TABLE}")),
        _ => true,
    }
}

/// Sets what the proxy needs of the kernel, as k3s does: forwarding on, and bridged traffic
/// through netfilter (`br_netfilter`), without which a pod's reply to a pod on the same bridge
/// that reached it through a Service would skip the un-NAT. What cannot be set is a warning.
fn prepare_kernel() {
    const BRIDGE_NF: &str = "/proc/sys/net/bridge/bridge-nf-call-iptables";
    if !std::path::Path::new(BRIDGE_NF).exists() {
        let _ = std::process::Command::new("modprobe")
            .arg("br_netfilter")
            .stderr(std::process::Stdio::null())
            .status();
    }
    for path in [
        "/proc/sys/net/ipv4/ip_forward",
        BRIDGE_NF,
        "/proc/sys/net/bridge/bridge-nf-call-ip6tables",
    ] {
        if std::fs::read_to_string(path).is_ok_and(|v| v.trim() == "1") {
            continue;
        }
        if let Err(e) = std::fs::write(path, "1") {
            tracing::warn!(
                %path, error = %e,
                "cannot switch on; Services may not answer pods on this node (modprobe br_netfilter)"
            );
        }
    }
}

/// Keeps the node's rules in step with `services` until its sender is gone: each view is
/// written as the changes from the last one written; a failed run is retried, after a pause
/// that grows to 30 s, by replacing the whole table.
pub async fn run(cfg: Config, mut services: watch::Receiver<Arc<Services>>) {
    prepare_kernel();
    let mut written: Option<Rules> = None;
    let mut pause = Duration::from_millis(500);
    let mut check = tokio::time::interval_at(tokio::time::Instant::now() + CHECK, CHECK);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            changed = services.changed() => if changed.is_err() { return },
            _ = check.tick() => {
                // Someone else's `nft flush ruleset` (a firewall's reload) took the table
                // away: written again from what is known. (A table that is there is not
                // replaced on a timer: that would reset every client's affinity.)
                if written.is_none() || table_present().await {
                    continue;
                }
                written = None;
            }
        }
        loop {
            let now = services.borrow_and_update().clone();
            let rules = Rules::build(&cfg, &now);
            if written.as_ref() == Some(&rules) {
                break;
            }
            let script = rules.script(written.as_ref());
            let started = std::time::Instant::now();
            match apply(&script).await {
                Ok(()) => {
                    if let Some(previous) = &written {
                        forget_stale_udp(rules.stale_udp(previous)).await;
                    }
                    tracing::debug!(
                        took = ?started.elapsed(),
                        chains = rules.chains.len(),
                        "service rules written"
                    );
                    written = Some(rules);
                    pause = Duration::from_millis(500);
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "service rules not written; retrying");
                    written = None;
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(30));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
