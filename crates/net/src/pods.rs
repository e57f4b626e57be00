//! The pod network between nodes, as flannel's `host-gw` backend makes it: every node routes
//! each other node's podCIDR through that node's InternalIP, and masquerades what its pods send
//! outside the pods' addresses (to node addresses and beyond the cluster), so that replies find
//! their way back.
//!
//! - Routes are written over netlink (rtnetlink) in the main table with a protocol number of
//!   Rudder's own ([`ROUTE_PROTOCOL`]), so that they are told apart from anyone else's: each sync
//!   lists the routes of that protocol, deletes those no node needs any more and adds (replaces)
//!   the missing ones. A node whose address is not on a network this one is attached to gets no
//!   route, with a warning (an overlay for such nodes is not there yet).
//! - Masquerading is the nftables table `ip rudder-pods`, rewritten whole at each change (it
//!   holds one set and one rule): `ip saddr @pods ip daddr != @pods masquerade`, `@pods` being
//!   every node's podCIDR.
//!
//! Both follow a watch of the Nodes, and are written again every 30 s whatever happened to
//! them meanwhile; [`cleanup`] removes both (`--cleanup`).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::sync::Arc;

use futures::{FutureExt, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Node;
use kube::runtime::{reflector, watcher};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol,
};
use rtnetlink::RouteMessageBuilder;

/// The protocol number of Rudder's routes (`ip route show proto 82`).
pub const ROUTE_PROTOCOL: u8 = 82;

/// The masquerading table.
pub const TABLE: &str = "ip rudder-pods";

/// How often routes and masquerading are written again even if no Node changed.
const RESYNC: std::time::Duration = std::time::Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("netlink: {0}")]
    Netlink(#[from] rtnetlink::Error),
    #[error("open a netlink socket: {0}")]
    Socket(std::io::Error),
    #[error("{0}")]
    Nft(#[from] crate::proxy::Error),
    #[error("the watch of Nodes ended")]
    WatchEnded,
}

/// An IPv4 CIDR: its first address and prefix length.
type Cidr = (Ipv4Addr, u8);

/// A route to another node's pods.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Route {
    pub dst: Ipv4Addr,
    pub prefix: u8,
    pub via: Ipv4Addr,
}

/// An IPv4 CIDR `a.b.c.d/n` with its host bits clear.
fn cidr(s: &str) -> Option<Cidr> {
    let (addr, len) = s.split_once('/')?;
    let addr: Ipv4Addr = addr.parse().ok()?;
    let len: u8 = len.parse().ok().filter(|l| *l <= 32)?;
    let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
    (u32::from(addr) & !mask == 0).then_some((addr, len))
}

fn pod_cidrs(node: &Node) -> Vec<Cidr> {
    let spec = node.spec.as_ref();
    let mut all: Vec<&String> = spec
        .and_then(|s| s.pod_cidrs.as_ref())
        .into_iter()
        .flatten()
        .collect();
    all.extend(spec.and_then(|s| s.pod_cidr.as_ref()));
    let mut out: Vec<Cidr> = all.into_iter().filter_map(|c| cidr(c)).collect();
    out.sort();
    out.dedup();
    out
}

fn internal_ip(node: &Node) -> Option<Ipv4Addr> {
    node.status
        .as_ref()?
        .addresses
        .as_ref()?
        .iter()
        .filter(|a| a.type_ == "InternalIP")
        .find_map(|a| a.address.parse().ok())
}

/// The routes node `own` needs: each other node's podCIDRs through its InternalIP.
pub fn routes<'a>(own: &str, nodes: impl IntoIterator<Item = &'a Node>) -> BTreeSet<Route> {
    let mut out = BTreeSet::new();
    for node in nodes {
        if node.metadata.name.as_deref() == Some(own) {
            continue;
        }
        let Some(via) = internal_ip(node) else {
            continue;
        };
        for (dst, prefix) in pod_cidrs(node) {
            out.insert(Route { dst, prefix, via });
        }
    }
    out
}

/// The nft script that replaces the masquerading table for the pods at `cidrs`.
pub fn masquerade_script(cidrs: &BTreeSet<Cidr>) -> String {
    let mut out = format!("add table {TABLE}\ndelete table {TABLE}\ntable {TABLE} {{\n");
    out.push_str("  set pods { type ipv4_addr; flags interval;");
    if !cidrs.is_empty() {
        let list: Vec<String> = cidrs.iter().map(|(a, l)| format!("{a}/{l}")).collect();
        let _ = write!(out, " elements = {{ {} }};", list.join(", "));
    }
    out.push_str(
        " }
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    ip saddr @pods ip daddr != @pods masquerade fully-random
  }
}
",
    );
    out
}

fn route_of(msg: &RouteMessage) -> Option<Route> {
    let (mut dst, mut via) = (None, None);
    for a in &msg.attributes {
        match a {
            RouteAttribute::Destination(RouteAddress::Inet(ip)) => dst = Some(*ip),
            RouteAttribute::Gateway(RouteAddress::Inet(ip)) => via = Some(*ip),
            _ => {}
        }
    }
    Some(Route {
        dst: dst?,
        prefix: msg.header.destination_prefix_length,
        via: via?,
    })
}

/// Rudder's routes in the main table now.
async fn current(handle: &rtnetlink::Handle) -> Result<Vec<(Route, RouteMessage)>, Error> {
    let all: Vec<RouteMessage> = handle
        .route()
        .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
        .execute()
        .try_collect()
        .await?;
    Ok(all
        .into_iter()
        .filter(|m| {
            m.header.protocol == RouteProtocol::from(ROUTE_PROTOCOL)
                && m.header.table == RouteHeader::RT_TABLE_MAIN
        })
        .filter_map(|m| Some((route_of(&m)?, m)))
        .collect())
}

/// Makes Rudder's routes exactly `want`; a route the kernel refuses (its gateway not on a
/// network of this node's) is a warning, the others are still written.
async fn sync_routes(handle: &rtnetlink::Handle, want: &BTreeSet<Route>) -> Result<(), Error> {
    let have = current(handle).await?;
    for (route, msg) in &have {
        if !want.contains(route) {
            handle.route().del(msg.clone()).execute().await?;
            tracing::info!(?route, "pod route removed");
        }
    }
    let had: BTreeSet<Route> = have.into_iter().map(|(r, _)| r).collect();
    for route in want.difference(&had) {
        let msg = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(route.dst, route.prefix)
            .gateway(route.via)
            .protocol(RouteProtocol::from(ROUTE_PROTOCOL))
            .build();
        match handle.route().add(msg).replace().execute().await {
            Ok(()) => tracing::info!(?route, "pod route added"),
            Err(e) => tracing::warn!(
                ?route, error = %e,
                "no route to another node's pods: its address is not on a network this node is attached to"
            ),
        }
    }
    Ok(())
}

/// Keeps this node's routes to the other nodes' pods, and the masquerading of its own pods'
/// traffic, in step with the Nodes (and writes them again every [`RESYNC`]) until the watch
/// ends.
pub async fn run(client: kube::Client, own: String) -> Result<(), Error> {
    let (connection, handle, _) = rtnetlink::new_connection().map_err(Error::Socket)?;
    let _connection = AbortOnDrop(tokio::spawn(connection));
    let (nodes, writer) = reflector::store::<Node>();
    let events = reflector(
        writer,
        watcher(kube::Api::<Node>::all(client), watcher::Config::default()),
    );
    let mut events = std::pin::pin!(events);
    let mut written: Option<(BTreeSet<Route>, BTreeSet<Cidr>)> = None;
    let mut resync = tokio::time::interval(RESYNC);
    resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            event = events.next() => {
                crate::take_burst(event.ok_or(Error::WatchEnded)?, &mut events, "Nodes");
            }
            // Whatever someone else did to the routes or the table, or a failed write: put
            // right.
            _ = resync.tick() => written = None,
        }
        if nodes.wait_until_ready().now_or_never().is_none() {
            continue;
        }
        let state = nodes.state();
        let want = routes(&own, state.iter().map(Arc::as_ref));
        let cidrs: BTreeSet<Cidr> = state.iter().flat_map(|n| pod_cidrs(n)).collect();
        if written.as_ref() == Some(&(want.clone(), cidrs.clone())) {
            continue;
        }
        let routed = sync_routes(&handle, &want).await;
        let masqueraded = crate::proxy::apply(&masquerade_script(&cidrs)).await;
        match (routed, masqueraded) {
            (Ok(()), Ok(())) => written = Some((want, cidrs)),
            (r, m) => {
                // Tried again at the next change of a Node, or the next resync.
                written = None;
                for e in [r.err(), m.err().map(Error::from)].into_iter().flatten() {
                    tracing::warn!(error = %e, "pod network not in step");
                }
            }
        }
    }
}

/// Removes Rudder's routes and the masquerading table.
pub async fn cleanup() -> Result<(), Error> {
    let (connection, handle, _) = rtnetlink::new_connection().map_err(Error::Socket)?;
    let _connection = AbortOnDrop(tokio::spawn(connection));
    sync_routes(&handle, &BTreeSet::new()).await?;
    crate::proxy::apply(&format!("add table {TABLE}\ndelete table {TABLE}\n")).await?;
    Ok(())
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, ip: &str, cidr: Option<&str>) -> Node {
        serde_json::from_value(json!({"metadata": {"name": name},
            "spec": {"podCIDR": cidr, "podCIDRs": cidr.map(|c| vec![c])},
            "status": {"addresses": [{"type": "Hostname", "address": name},
                                     {"type": "InternalIP", "address": ip}]}}))
        .unwrap()
    }

    #[test]
    fn each_other_nodes_pods_go_through_its_address() {
        let nodes = [
            node("a", "192.168.80.11", Some("10.42.0.0/24")),
            node("b", "192.168.80.12", Some("10.42.1.0/24")),
            node("c", "192.168.80.13", None),
            node("d", "192.168.80.14", Some("10.42.3.7/24")),
        ];
        let r = routes("a", &nodes);
        assert_eq!(
            r.into_iter().collect::<Vec<_>>(),
            [Route {
                dst: "10.42.1.0".parse().unwrap(),
                prefix: 24,
                via: "192.168.80.12".parse().unwrap()
            }]
        );
        let cidrs: BTreeSet<_> = nodes.iter().flat_map(pod_cidrs).collect();
        assert_eq!(
            masquerade_script(&cidrs),
            "add table ip rudder-pods\ndelete table ip rudder-pods\ntable ip rudder-pods {
  set pods { type ipv4_addr; flags interval; elements = { 10.42.0.0/24, 10.42.1.0/24 }; }
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    ip saddr @pods ip daddr != @pods masquerade fully-random
  }
}
"
        );
    }

    /// Runs `f` on a thread of its own in a new network namespace with a veth pair whose end
    /// `lan0` holds 192.168.80.1/24.
    fn in_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::spawn(move || {
            // SAFETY: unshare(2) moves only this thread into a new network namespace.
            assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0);
            for args in [
                "link add lan0 type veth peer name lan0-peer",
                "addr add 192.168.80.1/24 dev lan0",
                "link set lan0 up",
                "link set lan0-peer up",
            ] {
                let st = std::process::Command::new("ip")
                    .args(args.split(' '))
                    .status()
                    .unwrap();
                assert!(st.success(), "ip {args}");
            }
            f()
        })
        .join()
        .unwrap()
    }

    #[test]
    fn routes_are_kept_to_exactly_what_the_nodes_need() {
        let shown = in_netns(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let (connection, handle, _) = rtnetlink::new_connection().unwrap();
                let _c = AbortOnDrop(tokio::spawn(connection));
                let route = |dst: &str, via: &str| Route {
                    dst: dst.parse().unwrap(),
                    prefix: 24,
                    via: via.parse().unwrap(),
                };
                // One unreachable gateway: a warning, the others written.
                let first = BTreeSet::from([
                    route("10.42.1.0", "192.168.80.12"),
                    route("10.42.2.0", "192.168.80.13"),
                    route("10.42.3.0", "10.9.9.9"),
                ]);
                sync_routes(&handle, &first).await.unwrap();
                let second = BTreeSet::from([
                    route("10.42.1.0", "192.168.80.22"),
                    route("10.42.4.0", "192.168.80.14"),
                ]);
                sync_routes(&handle, &second).await.unwrap();
                let now: BTreeSet<Route> = current(&handle)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|(r, _)| r)
                    .collect();
                assert_eq!(now, second);
                crate::proxy::apply(&masquerade_script(&BTreeSet::from([(
                    "10.42.0.0".parse().unwrap(),
                    16,
                )])))
                .await
                .unwrap();
                let out = std::process::Command::new("ip")
                    .args(["route", "show", "proto", "82"])
                    .output()
                    .unwrap();
                String::from_utf8(out.stdout).unwrap()
            })
        });
        assert_eq!(
            shown,
            "10.42.1.0/24 via 192.168.80.22 dev lan0 \n10.42.4.0/24 via 192.168.80.14 dev lan0 \n"
        );
    }
}
