//! The pod network between nodes, as flannel makes it. With the `host-gw` backend every node
//! routes each other node's podCIDR through that node's InternalIP; with `vxlan` (flannel's
//! VXLAN backend with direct routing) it does so for nodes on a network it shares, and reaches
//! the others through a VXLAN overlay. Either way it masquerades what its pods send outside the
//! pods' addresses (to node addresses and beyond the cluster), so that replies find their way
//! back.
//!
//! - Routes are written over netlink (rtnetlink) in the main table with a protocol number of
//!   Rudder's own ([`ROUTE_PROTOCOL`]), so that they are told apart from anyone else's: each sync
//!   lists the routes of that protocol, deletes those no node needs any more and adds (replaces)
//!   the missing ones. With `host-gw` a node whose address is not on a network this one is
//!   attached to gets no route, with a warning.
//! - The overlay is the VXLAN device [`VXLAN_DEVICE`] (VNI 1, UDP port 8472 as flannel's, MTU
//!   50 below the node's interface, no learning). Each node announces its device's MAC in its
//!   Node's [`VTEP_ANNOTATION`]; the others route its podCIDR through its podCIDR's first address
//!   on the device (`onlink`), with a permanent neighbour entry giving that address the MAC, and a
//!   forwarding entry sending the MAC to the node's InternalIP.
//! - Masquerading is the nftables table `ip rudder-pods`, rewritten whole at each change (it
//!   holds one set and one rule): `ip saddr @pods ip daddr != @pods masquerade`, `@pods` being
//!   every node's podCIDR.
//!
//! All of it follows a watch of the Nodes, and is written again every 30 s whatever happened to
//! it meanwhile; [`cleanup`] removes it (`--cleanup`).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use futures::{FutureExt, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Node;
use kube::runtime::{reflector, watcher, WatchStreamExt};
use netlink_packet_route::link::{InfoData, InfoVxlan, LinkAttribute, LinkInfo};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol,
};
use netlink_packet_route::AddressFamily;
use rtnetlink::RouteMessageBuilder;

/// The protocol number of Rudder's routes (`ip route show proto 82`).
pub const ROUTE_PROTOCOL: u8 = 82;

/// The masquerading table.
pub const TABLE: &str = "ip rudder-pods";

/// The VXLAN device (flannel's is `flannel.1`).
pub const VXLAN_DEVICE: &str = "rudder.1";
/// The overlay's UDP port (flannel's, the Linux default).
pub const VXLAN_PORT: u16 = 8472;
const VXLAN_ID: u32 = 1;
/// What VXLAN adds to a packet: outer IPv4 (20), UDP (8), VXLAN (8) and inner Ethernet (14)
/// headers.
pub const VXLAN_OVERHEAD: u32 = 50;
/// The Node annotation holding the MAC of a node's VXLAN device.
pub const VTEP_ANNOTATION: &str = "rudder.io/vtep-mac";

/// How often routes and masquerading are written again even if no Node changed.
const RESYNC: std::time::Duration = std::time::Duration::from_secs(30);

/// How pods reach other nodes' pods.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// Routes through each node's address: the nodes must share a network.
    HostGw,
    /// Routes through the addresses of nodes on a shared network, VXLAN to the others.
    Vxlan,
}

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
    #[error("no interface holds the node's address {0} (--node-ip)")]
    NoInterface(Ipv4Addr),
    #[error("announce the VXLAN device: {0}")]
    Announce(#[from] kube::Error),
    #[error("let pods' traffic past the firewall's FORWARD chain: {0}")]
    Firewall(std::io::Error),
}

/// An IPv4 CIDR: its first address and prefix length.
type Cidr = (Ipv4Addr, u8);

/// A route to another node's pods.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Route {
    pub dst: Ipv4Addr,
    pub prefix: u8,
    pub via: Ipv4Addr,
    /// Through the VXLAN device (`via` being on no network: `onlink`).
    pub overlay: bool,
}

/// Another node's end of the overlay.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Vtep {
    /// The address its pods' routes go through (its podCIDR's first).
    pub gateway: Ipv4Addr,
    /// Its VXLAN device's MAC.
    pub mac: [u8; 6],
    /// Its InternalIP, where the encapsulated packets go.
    pub node: Ipv4Addr,
}

/// What node's network needs for the other nodes' pods.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub routes: BTreeSet<Route>,
    pub vteps: BTreeSet<Vtep>,
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

/// `aa:bb:cc:dd:ee:ff`.
fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let parts: Vec<u8> = s
        .split(':')
        .map(|p| u8::from_str_radix(p, 16).ok().filter(|_| p.len() == 2))
        .collect::<Option<_>>()?;
    parts.try_into().ok()
}

fn format_mac(mac: &[u8]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn vtep_mac(node: &Node) -> Option<[u8; 6]> {
    parse_mac(node.metadata.annotations.as_ref()?.get(VTEP_ANNOTATION)?)
}

/// What node `own` needs to reach the other nodes' pods: with `host-gw`, each other node's
/// podCIDRs through its InternalIP; with `vxlan`, so for the nodes whose address `direct` says
/// is on a network this node shares, and through the overlay for the others that announce
/// their VXLAN device.
pub fn plan<'a>(
    own: &str,
    nodes: impl IntoIterator<Item = &'a Node>,
    backend: Backend,
    direct: impl Fn(Ipv4Addr) -> bool,
) -> Plan {
    let mut out = Plan::default();
    for node in nodes {
        if node.metadata.name.as_deref() == Some(own) {
            continue;
        }
        let Some(ip) = internal_ip(node) else {
            continue;
        };
        let cidrs = pod_cidrs(node);
        let Some(&(gateway, _)) = cidrs.first() else {
            continue;
        };
        let (via, overlay) = if backend == Backend::HostGw || direct(ip) {
            (ip, false)
        } else {
            let Some(mac) = vtep_mac(node) else {
                tracing::debug!(node = ?node.metadata.name, "no route to the node's pods yet: it has not announced its VXLAN device");
                continue;
            };
            out.vteps.insert(Vtep {
                gateway,
                mac,
                node: ip,
            });
            (gateway, true)
        };
        for (dst, prefix) in cidrs {
            out.routes.insert(Route {
                dst,
                prefix,
                via,
                overlay,
            });
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

fn route_of(msg: &RouteMessage, vxlan: Option<u32>) -> Option<Route> {
    let (mut dst, mut via, mut oif) = (None, None, None);
    for a in &msg.attributes {
        match a {
            RouteAttribute::Destination(RouteAddress::Inet(ip)) => dst = Some(*ip),
            RouteAttribute::Gateway(RouteAddress::Inet(ip)) => via = Some(*ip),
            RouteAttribute::Oif(i) => oif = Some(*i),
            _ => {}
        }
    }
    Some(Route {
        dst: dst?,
        prefix: msg.header.destination_prefix_length,
        via: via?,
        overlay: oif.is_some() && oif == vxlan,
    })
}

/// Rudder's routes in the main table now.
async fn current(
    handle: &rtnetlink::Handle,
    vxlan: Option<u32>,
) -> Result<Vec<(Route, RouteMessage)>, Error> {
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
        .filter_map(|m| Some((route_of(&m, vxlan)?, m)))
        .collect())
}

/// Makes Rudder's routes exactly `want` (overlay routes through the VXLAN device at index
/// `vxlan`); a route the kernel refuses (its gateway not on a network of this node's) is a
/// warning, the others are still written.
async fn sync_routes(
    handle: &rtnetlink::Handle,
    want: &BTreeSet<Route>,
    vxlan: Option<u32>,
) -> Result<(), Error> {
    let have = current(handle, vxlan).await?;
    for (route, msg) in &have {
        if !want.contains(route) {
            handle.route().del(msg.clone()).execute().await?;
            tracing::info!(?route, "pod route removed");
        }
    }
    let had: BTreeSet<Route> = have.into_iter().map(|(r, _)| r).collect();
    for route in want.difference(&had) {
        let mut msg = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(route.dst, route.prefix)
            .gateway(route.via)
            .protocol(RouteProtocol::from(ROUTE_PROTOCOL));
        if route.overlay {
            let Some(index) = vxlan else { continue };
            msg = msg.output_interface(index).onlink();
        }
        match handle.route().add(msg.build()).replace().execute().await {
            Ok(()) => tracing::info!(?route, "pod route added"),
            Err(e) => tracing::warn!(
                ?route, error = %e,
                "no route to another node's pods: its address is not on a network this node is attached to"
            ),
        }
    }
    Ok(())
}

/// This machine's IPv4 addresses with their prefix lengths, and the interface of each.
async fn addresses(handle: &rtnetlink::Handle) -> Result<Vec<(Ipv4Addr, u8, u32)>, Error> {
    use netlink_packet_route::address::{AddressAttribute, AddressMessage};
    let all: Vec<AddressMessage> = handle.address().get().execute().try_collect().await?;
    Ok(all
        .iter()
        .filter_map(|m| {
            m.attributes.iter().find_map(|a| match a {
                AddressAttribute::Address(IpAddr::V4(ip)) => {
                    Some((*ip, m.header.prefix_len, m.header.index))
                }
                _ => None,
            })
        })
        .collect())
}

/// Whether `ip` is on a network one of `addresses` is on (and not one of them).
fn on_link(addresses: &[(Ipv4Addr, u8, u32)], ip: Ipv4Addr) -> bool {
    addresses.iter().any(|(own, len, _)| {
        let mask = u32::MAX.checked_shl(32 - u32::from(*len)).unwrap_or(0);
        *len > 0 && *own != ip && u32::from(*own) & mask == u32::from(ip) & mask
    })
}

/// The link called `name`, if there is one.
async fn link(
    handle: &rtnetlink::Handle,
    name: &str,
) -> Result<Option<netlink_packet_route::link::LinkMessage>, Error> {
    match handle
        .link()
        .get()
        .match_name(name.to_string())
        .execute()
        .try_next()
        .await
    {
        Ok(l) => Ok(l),
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The MTU the node's interface for `node_ip` has, less the VXLAN overhead: what pods' MTU
/// must be when their traffic may cross the overlay.
pub async fn overlay_mtu(node_ip: Ipv4Addr) -> Result<u32, Error> {
    let (connection, handle, _) = rtnetlink::new_connection().map_err(Error::Socket)?;
    let _connection = AbortOnDrop(tokio::spawn(connection));
    Ok(underlay(&handle, node_ip).await?.1 - VXLAN_OVERHEAD)
}

/// The interface holding `node_ip`: its index and MTU.
async fn underlay(handle: &rtnetlink::Handle, node_ip: Ipv4Addr) -> Result<(u32, u32), Error> {
    let index = addresses(handle)
        .await?
        .into_iter()
        .find(|(ip, _, _)| *ip == node_ip)
        .map(|(_, _, i)| i)
        .ok_or(Error::NoInterface(node_ip))?;
    let msg = handle
        .link()
        .get()
        .match_index(index)
        .execute()
        .try_next()
        .await?
        .ok_or(Error::NoInterface(node_ip))?;
    let mtu = msg
        .attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::Mtu(m) => Some(*m),
            _ => None,
        })
        .unwrap_or(1500);
    Ok((index, mtu.max(VXLAN_OVERHEAD + 576)))
}

/// Makes the VXLAN device (again, if it is not one over `node_ip`'s interface from
/// `node_ip`): its index and MAC.
async fn ensure_vxlan(
    handle: &rtnetlink::Handle,
    node_ip: Ipv4Addr,
) -> Result<(u32, [u8; 6]), Error> {
    let (dev, mtu) = underlay(handle, node_ip).await?;
    if let Some(existing) = link(handle, VXLAN_DEVICE).await? {
        let info: Vec<&InfoVxlan> = existing
            .attributes
            .iter()
            .filter_map(|a| match a {
                LinkAttribute::LinkInfo(infos) => Some(infos),
                _ => None,
            })
            .flatten()
            .filter_map(|i| match i {
                LinkInfo::Data(InfoData::Vxlan(v)) => Some(v),
                _ => None,
            })
            .flatten()
            .collect();
        let ours = info.contains(&&InfoVxlan::Id(VXLAN_ID))
            && info.contains(&&InfoVxlan::Local(node_ip))
            && info.contains(&&InfoVxlan::Link(dev))
            && info.contains(&&InfoVxlan::Port(VXLAN_PORT));
        if !ours {
            tracing::info!("the VXLAN device is set up for another address: made again");
            handle.link().del(existing.header.index).execute().await?;
        }
    }
    if link(handle, VXLAN_DEVICE).await?.is_none() {
        let msg = rtnetlink::LinkVxlan::new(VXLAN_DEVICE, VXLAN_ID)
            .dev(dev)
            .local(node_ip)
            .port(VXLAN_PORT)
            .learning(false)
            .mtu(mtu - VXLAN_OVERHEAD)
            .up()
            .build();
        handle.link().add(msg).execute().await?;
        tracing::info!(device = VXLAN_DEVICE, "VXLAN device made");
    }
    let made = link(handle, VXLAN_DEVICE)
        .await?
        .ok_or(Error::NoInterface(node_ip))?;
    let index = made.header.index;
    handle
        .link()
        .set(rtnetlink::LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await?;
    let mac = made
        .attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::Address(m) => <[u8; 6]>::try_from(m.as_slice()).ok(),
            _ => None,
        })
        .unwrap_or_default();
    Ok((index, mac))
}

/// Makes the permanent neighbour and forwarding entries of the VXLAN device at `index` exactly
/// those of `want`.
async fn sync_vteps(
    handle: &rtnetlink::Handle,
    index: u32,
    want: &BTreeSet<Vtep>,
) -> Result<(), Error> {
    // Neighbours (ARP) and forwarding entries are listed apart.
    let mut all: Vec<NeighbourMessage> = Vec::new();
    for family in [AddressFamily::Inet, AddressFamily::Bridge] {
        let listed: Vec<NeighbourMessage> = handle
            .neighbours()
            .get()
            .set_address_family(family)
            .execute()
            .try_collect()
            .await?;
        all.extend(listed);
    }
    // What is there: (family, address, MAC) of each entry on the device.
    let mut have = BTreeSet::new();
    for m in all.into_iter().filter(|m| m.header.ifindex == index) {
        // A forwarding entry's destination comes as bytes (its family is the bridge's).
        let addr = m.attributes.iter().find_map(|a| match a {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => Some(*ip),
            NeighbourAttribute::Destination(NeighbourAddress::Other(b)) => {
                <[u8; 4]>::try_from(b.as_slice()).ok().map(Ipv4Addr::from)
            }
            _ => None,
        });
        let mac = m.attributes.iter().find_map(|a| match a {
            NeighbourAttribute::LinkLayerAddress(l) => <[u8; 6]>::try_from(l.as_slice()).ok(),
            _ => None,
        });
        let permanent = m.header.state == NeighbourState::Permanent;
        let (Some(addr), Some(mac)) = (addr, mac) else {
            continue;
        };
        let bridge = m.header.family == AddressFamily::Bridge;
        let wanted = if bridge {
            want.iter().any(|v| v.mac == mac && v.node == addr)
        } else {
            want.iter().any(|v| v.mac == mac && v.gateway == addr)
        };
        if wanted && permanent {
            have.insert((bridge, addr, mac));
        } else if permanent || bridge {
            handle.neighbours().del(m).execute().await?;
        }
    }
    for v in want {
        if !have.contains(&(false, v.gateway, v.mac)) {
            handle
                .neighbours()
                .add(index, IpAddr::V4(v.gateway))
                .link_layer_address(&v.mac)
                .state(NeighbourState::Permanent)
                .replace()
                .execute()
                .await?;
        }
        if !have.contains(&(true, v.node, v.mac)) {
            handle
                .neighbours()
                .add_bridge(index, &v.mac)
                .destination(IpAddr::V4(v.node))
                .flags(NeighbourFlags::Own)
                .state(NeighbourState::Permanent)
                .replace()
                .execute()
                .await?;
            tracing::info!(node = %v.node, mac = %format_mac(&v.mac), "VXLAN peer added");
        }
    }
    Ok(())
}

/// What [`run`] needs to know of this node.
#[derive(Clone, Debug)]
pub struct Config {
    pub node_name: String,
    pub node_ip: Ipv4Addr,
    pub backend: Backend,
}

/// Keeps this node's routes (and overlay) to the other nodes' pods, and the masquerading of
/// its own pods' traffic, in step with the Nodes (and writes them again every [`RESYNC`])
/// until the watch ends.
pub async fn run(client: kube::Client, cfg: Config) -> Result<(), Error> {
    let (connection, handle, _) = rtnetlink::new_connection().map_err(Error::Socket)?;
    let _connection = AbortOnDrop(tokio::spawn(connection));
    let api = kube::Api::<Node>::all(client);
    let (nodes, writer) = reflector::store::<Node>();
    // With a back-off: a watch that fails at once (the API server stopping) would otherwise be
    // retried at once, for ever, inside one poll.
    let events = reflector(
        writer,
        watcher(api.clone(), watcher::Config::default()).default_backoff(),
    );
    let mut events = std::pin::pin!(events);
    let mut written: Option<(Plan, BTreeSet<Cidr>)> = None;
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
        match sync(&handle, &api, &cfg, &nodes.state(), &written).await {
            Ok(Some(done)) => written = Some(done),
            Ok(None) => {}
            Err(e) => {
                // Tried again at the next change of a Node, or the next resync.
                written = None;
                tracing::warn!(error = %e, "pod network not in step");
            }
        }
    }
}

/// One pass of [`run`] over the Nodes `state`: what was written, or `None` if it is what
/// `written` says is there already.
async fn sync(
    handle: &rtnetlink::Handle,
    api: &kube::Api<Node>,
    cfg: &Config,
    state: &[Arc<Node>],
    written: &Option<(Plan, BTreeSet<Cidr>)>,
) -> Result<Option<(Plan, BTreeSet<Cidr>)>, Error> {
    let vxlan = match cfg.backend {
        Backend::HostGw => None,
        Backend::Vxlan => {
            let (index, mac) = ensure_vxlan(handle, cfg.node_ip).await?;
            // Announced on this node's Node, for the others to reach it.
            let own = state
                .iter()
                .find(|n| n.metadata.name.as_deref() == Some(cfg.node_name.as_str()));
            if own.is_some_and(|n| vtep_mac(n) != Some(mac)) {
                let patch = serde_json::json!({"metadata": {"annotations": {
                    VTEP_ANNOTATION: format_mac(&mac)}}});
                api.patch(
                    &cfg.node_name,
                    &kube::api::PatchParams::default(),
                    &kube::api::Patch::Merge(&patch),
                )
                .await?;
            }
            Some(index)
        }
    };
    let local = addresses(handle).await?;
    let plan = plan(
        &cfg.node_name,
        state.iter().map(Arc::as_ref),
        cfg.backend,
        |ip| on_link(&local, ip),
    );
    let cidrs: BTreeSet<Cidr> = state.iter().flat_map(|n| pod_cidrs(n)).collect();
    if written.as_ref() == Some(&(plan.clone(), cidrs.clone())) {
        return Ok(None);
    }
    sync_routes(handle, &plan.routes, vxlan).await?;
    if let Some(index) = vxlan {
        sync_vteps(handle, index, &plan.vteps).await?;
    }
    crate::proxy::apply(&masquerade_script(&cidrs)).await?;
    crate::iptables::allow_forwarding(&cidrs)
        .await
        .map_err(Error::Firewall)?;
    Ok(Some((plan, cidrs)))
}

/// Deletes the link `name` if there is one; whether there was.
pub async fn delete_link(name: &str) -> Result<bool, Error> {
    let (connection, handle, _) = rtnetlink::new_connection().map_err(Error::Socket)?;
    let _connection = AbortOnDrop(tokio::spawn(connection));
    let Some(l) = link(&handle, name).await? else {
        return Ok(false);
    };
    handle.link().del(l.header.index).execute().await?;
    Ok(true)
}

/// Removes Rudder's routes, the VXLAN device, the masquerading table and the firewall's
/// `RUDDER-FORWARD` chain.
pub async fn cleanup() -> Result<(), Error> {
    let (connection, handle, _) = rtnetlink::new_connection().map_err(Error::Socket)?;
    let _connection = AbortOnDrop(tokio::spawn(connection));
    sync_routes(&handle, &BTreeSet::new(), None).await?;
    if let Some(vxlan) = link(&handle, VXLAN_DEVICE).await? {
        handle.link().del(vxlan.header.index).execute().await?;
    }
    crate::proxy::apply(&format!("add table {TABLE}\ndelete table {TABLE}\n")).await?;
    crate::iptables::cleanup_forwarding()
        .await
        .map_err(Error::Firewall)?;
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

    fn route(dst: &str, via: &str, overlay: bool) -> Route {
        Route {
            dst: dst.parse().unwrap(),
            prefix: 24,
            via: via.parse().unwrap(),
            overlay,
        }
    }

    #[test]
    fn each_other_nodes_pods_go_through_its_address_or_the_overlay() {
        let mut far = node("e", "10.0.9.15", Some("10.42.4.0/24"));
        far.metadata.annotations =
            Some([(VTEP_ANNOTATION.to_string(), "0a:1b:2c:3d:4e:5f".to_string())].into());
        let nodes = [
            node("a", "192.168.80.11", Some("10.42.0.0/24")),
            node("b", "192.168.80.12", Some("10.42.1.0/24")),
            node("c", "192.168.80.13", None),
            node("d", "192.168.80.14", Some("10.42.3.7/24")),
            far,
            // Far, and not announcing its VXLAN device yet.
            node("f", "10.0.9.16", Some("10.42.5.0/24")),
        ];
        let lan = |ip: Ipv4Addr| ip.octets()[..3] == [192, 168, 80];
        let hostgw = plan("a", &nodes, Backend::HostGw, lan);
        assert_eq!(
            hostgw.routes.into_iter().collect::<Vec<_>>(),
            [
                route("10.42.1.0", "192.168.80.12", false),
                route("10.42.4.0", "10.0.9.15", false),
                route("10.42.5.0", "10.0.9.16", false),
            ]
        );
        assert!(hostgw.vteps.is_empty());
        let vxlan = plan("a", &nodes, Backend::Vxlan, lan);
        assert_eq!(
            vxlan.routes.into_iter().collect::<Vec<_>>(),
            [
                route("10.42.1.0", "192.168.80.12", false),
                route("10.42.4.0", "10.42.4.0", true),
            ]
        );
        assert_eq!(
            vxlan.vteps.into_iter().collect::<Vec<_>>(),
            [Vtep {
                gateway: "10.42.4.0".parse().unwrap(),
                mac: [0x0a, 0x1b, 0x2c, 0x3d, 0x4e, 0x5f],
                node: "10.0.9.15".parse().unwrap(),
            }]
        );
        assert_eq!(parse_mac("0a:1b:2c:3d:4e"), None);
        assert_eq!(parse_mac("0a:1b:2c:3d:4e:5"), None);
        let own = [("192.168.80.11".parse().unwrap(), 24, 2)];
        assert!(on_link(&own, "192.168.80.12".parse().unwrap()));
        assert!(!on_link(&own, "192.168.80.11".parse().unwrap()));
        assert!(!on_link(&own, "192.168.81.12".parse().unwrap()));
        let cidrs: BTreeSet<_> = nodes.iter().flat_map(pod_cidrs).collect();
        assert_eq!(
            masquerade_script(&cidrs),
            "add table ip rudder-pods\ndelete table ip rudder-pods\ntable ip rudder-pods {
  set pods { type ipv4_addr; flags interval; elements = { 10.42.0.0/24, 10.42.1.0/24, 10.42.4.0/24, 10.42.5.0/24 }; }
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
    fn routes_and_the_overlay_are_kept_to_exactly_what_the_nodes_need() {
        let (shown, neighbours, fdb) = in_netns(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let (connection, handle, _) = rtnetlink::new_connection().unwrap();
                let _c = AbortOnDrop(tokio::spawn(connection));
                // One unreachable gateway: a warning, the others written.
                let first = BTreeSet::from([
                    route("10.42.1.0", "192.168.80.12", false),
                    route("10.42.2.0", "192.168.80.13", false),
                    route("10.42.3.0", "10.9.9.9", false),
                ]);
                sync_routes(&handle, &first, None).await.unwrap();
                let node_ip = "192.168.80.1".parse().unwrap();
                let (vxlan, _) = ensure_vxlan(&handle, node_ip).await.unwrap();
                // Made once: the same device the second time.
                assert_eq!(ensure_vxlan(&handle, node_ip).await.unwrap().0, vxlan);
                let vtep = |gw: &str, last: u8, node: &str| Vtep {
                    gateway: gw.parse().unwrap(),
                    mac: [2, 0, 0, 0, 0, last],
                    node: node.parse().unwrap(),
                };
                sync_vteps(
                    &handle,
                    vxlan,
                    &BTreeSet::from([
                        vtep("10.42.5.0", 5, "10.0.9.5"),
                        vtep("10.42.6.0", 6, "10.0.9.6"),
                    ]),
                )
                .await
                .unwrap();
                let second = BTreeSet::from([
                    route("10.42.1.0", "192.168.80.22", false),
                    route("10.42.4.0", "192.168.80.14", false),
                    route("10.42.6.0", "10.42.6.0", true),
                ]);
                sync_routes(&handle, &second, Some(vxlan)).await.unwrap();
                sync_vteps(
                    &handle,
                    vxlan,
                    &BTreeSet::from([vtep("10.42.6.0", 6, "10.0.9.6")]),
                )
                .await
                .unwrap();
                let now: BTreeSet<Route> = current(&handle, Some(vxlan))
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
                let run = |args: &[&str]| {
                    let out = std::process::Command::new(args[0])
                        .args(&args[1..])
                        .output()
                        .unwrap();
                    String::from_utf8(out.stdout).unwrap()
                };
                (
                    run(&["ip", "route", "show", "proto", "82"]),
                    run(&["ip", "neigh", "show", "dev", VXLAN_DEVICE]),
                    run(&["bridge", "fdb", "show", "dev", VXLAN_DEVICE]),
                )
            })
        });
        assert_eq!(
            shown,
            "10.42.1.0/24 via 192.168.80.22 dev lan0 \n10.42.4.0/24 via 192.168.80.14 dev lan0 \n10.42.6.0/24 via 10.42.6.0 dev rudder.1 onlink \n"
        );
        assert_eq!(
            neighbours,
            "10.42.6.0 lladdr 02:00:00:00:00:06 PERMANENT \n"
        );
        assert!(
            fdb.contains("02:00:00:00:00:06 dst 10.0.9.6 self permanent"),
            "{fdb}"
        );
        assert!(!fdb.contains("02:00:00:00:00:05"), "{fdb}");
    }
}
