//! Node IPAM (upstream's range allocator): every Node gets a podCIDR, the next free block of
//! `--node-cidr-mask-size` bits from `--cluster-cidr`, written to `spec.podCIDR` and
//! `spec.podCIDRs`. What is taken is read from the Node cache itself (plus blocks handed out and
//! not yet seen back), so a deleted node's block is free again and nothing is held in memory
//! that the API does not also say. A full cluster CIDR leaves the node without a block and
//! records a `CIDRNotAvailable` event on it.

use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use futures::{Future, StreamExt};
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;

use crate::events::Events;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::ResourceExt;
use tokio::sync::Mutex;

use crate::informers::Informers;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid --cluster-cidr {0:?} (an IPv4 CIDR such as 10.42.0.0/16)")]
    InvalidCidr(String),
    #[error("--node-cidr-mask-size {mask} must be between the cluster CIDR's prefix length {prefix} and 30")]
    InvalidMask { mask: u8, prefix: u8 },
    #[error("{0}")]
    Api(#[from] kube::Error),
}

/// The blocks of the cluster CIDR.
#[derive(Debug)]
pub struct CidrSet {
    base: u32,
    mask: u8,
    count: u32,
    /// Blocks handed out whose node has not shown them yet: node name → block.
    pending: Mutex<HashMap<String, u32>>,
}

impl CidrSet {
    pub fn new(cluster_cidr: &str, mask: u8) -> Result<CidrSet, Error> {
        let invalid = || Error::InvalidCidr(cluster_cidr.to_string());
        let (addr, len) = cluster_cidr.split_once('/').ok_or_else(invalid)?;
        let addr: Ipv4Addr = addr.trim().parse().map_err(|_| invalid())?;
        let prefix: u8 = len.trim().parse().map_err(|_| invalid())?;
        if prefix > 30 {
            return Err(invalid());
        }
        if mask < prefix || mask > 30 || mask - prefix > 24 {
            return Err(Error::InvalidMask { mask, prefix });
        }
        let base = u32::from(addr) & (u32::MAX.checked_shl(32 - prefix as u32).unwrap_or(0));
        Ok(CidrSet {
            base,
            mask,
            count: 1 << (mask - prefix),
            pending: Mutex::new(HashMap::new()),
        })
    }

    fn block(&self, index: u32) -> String {
        let start = self.base + (index << (32 - self.mask as u32));
        format!("{}/{}", Ipv4Addr::from(start), self.mask)
    }

    /// The index of `cidr` if it is one of this set's blocks.
    fn index(&self, cidr: &str) -> Option<u32> {
        let (addr, len) = cidr.split_once('/')?;
        let addr: Ipv4Addr = addr.parse().ok()?;
        if len.parse::<u8>().ok()? != self.mask {
            return None;
        }
        let off = u32::from(addr).checked_sub(self.base)?;
        let index = off >> (32 - self.mask as u32);
        (index < self.count && off & ((1 << (32 - self.mask as u32)) - 1) == 0).then_some(index)
    }

    /// The first block no node in `nodes` holds and none is about to; it is then pending for
    /// `node` until the cache shows it.
    async fn allocate(&self, node: &str, nodes: &[Arc<Node>]) -> Option<String> {
        let mut pending = self.pending.lock().await;
        let mut taken = BTreeSet::new();
        let mut seen = HashMap::new();
        for n in nodes {
            let cidr = n.spec.as_ref().and_then(|s| s.pod_cidr.as_deref());
            if let Some(i) = cidr.and_then(|c| self.index(c)) {
                taken.insert(i);
            }
            seen.insert(n.name_any(), cidr.is_some());
        }
        // Pending blocks stay taken until their node shows a block, or is gone.
        pending.retain(|name, _| seen.get(name) == Some(&false));
        if let Some(i) = pending.get(node) {
            return Some(self.block(*i));
        }
        taken.extend(pending.values().copied());
        let index = (0..self.count).find(|i| !taken.contains(i))?;
        pending.insert(node.to_string(), index);
        Some(self.block(index))
    }
}

struct Ctx {
    nodes: Api<Node>,
    store: Store<Node>,
    set: Arc<CidrSet>,
    recorder: Events,
}

/// Runs the controller until the task is dropped.
pub fn run(informers: &Informers, set: Arc<CidrSet>) -> impl Future<Output = ()> + Send {
    let tracked = crate::metrics::Tracked::new("cidrallocator_node");
    let client = informers.client().clone();
    let store = informers.store::<Node>();
    let controller = Controller::for_shared_stream(
        tracked.trigger(informers.subscribe::<Node>()),
        store.clone(),
    );
    let ctx = Arc::new(Ctx {
        nodes: Api::all(client.clone()),
        store,
        set,
        recorder: Events::new(client, "cidrAllocator"),
    });
    controller
        .run(
            tracked.reconcile(reconcile),
            tracked.error_policy(error_policy),
            ctx,
        )
        .for_each(tracked.results())
}

async fn reconcile(node: Arc<Node>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if node
        .spec
        .as_ref()
        .and_then(|s| s.pod_cidr.as_ref())
        .is_some()
    {
        return Ok(Action::await_change());
    }
    // Every node is known before a block is chosen: the loops start once the caches are listed.
    let name = node.name_any();
    let Some(cidr) = ctx.set.allocate(&name, &ctx.store.state()).await else {
        ctx.recorder
            .record(
                &*node,
                EventType::Normal,
                "CIDRNotAvailable",
                "Allocate",
                format!("Node {name} status is now: CIDRNotAvailable"),
            )
            .await;
        return Ok(Action::requeue(Duration::from_secs(30)));
    };
    let patch = serde_json::json!({"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}});
    ctx.nodes
        .patch(&name, &crate::patch_params(), &Patch::Merge(&patch))
        .await?;
    tracing::info!(node = %name, %cidr, "podCIDR allocated");
    Ok(Action::await_change())
}

fn error_policy(node: Arc<Node>, error: &Error, _ctx: Arc<Ctx>) -> Action {
    tracing::warn!(node = %ObjectRef::from_obj(node.as_ref()), %error, "node IPAM");
    Action::requeue(Duration::from_secs(2))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::NodeSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn node(name: &str, cidr: Option<&str>) -> Arc<Node> {
        Arc::new(Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(NodeSpec {
                pod_cidr: cidr.map(str::to_string),
                ..Default::default()
            }),
            status: None,
        })
    }

    #[tokio::test]
    async fn blocks_go_to_nodes_first_free_first() {
        let set = CidrSet::new("10.42.0.0/16", 24).unwrap();
        let mut nodes = vec![
            node("a", Some("10.42.0.0/24")),
            node("b", None),
            node("c", None),
        ];
        assert_eq!(set.allocate("b", &nodes).await.unwrap(), "10.42.1.0/24");
        // Asked again before the cache shows it: the same block.
        assert_eq!(set.allocate("b", &nodes).await.unwrap(), "10.42.1.0/24");
        assert_eq!(set.allocate("c", &nodes).await.unwrap(), "10.42.2.0/24");
        // a is deleted: its block is free again.
        nodes.remove(0);
        nodes.push(node("d", None));
        assert_eq!(set.allocate("d", &nodes).await.unwrap(), "10.42.0.0/24");
    }

    #[tokio::test]
    async fn a_full_cluster_cidr_gives_nothing() {
        let set = CidrSet::new("10.42.0.0/23", 24).unwrap();
        let nodes = vec![
            node("a", Some("10.42.0.0/24")),
            node("b", Some("10.42.1.0/24")),
            node("c", None),
        ];
        assert_eq!(set.allocate("c", &nodes).await, None);
        assert!(CidrSet::new("10.42.0.0/16", 8).is_err());
        assert!(CidrSet::new("nonsense", 24).is_err());
        assert_eq!(set.index("10.42.1.0/24"), Some(1));
        assert_eq!(set.index("10.42.1.1/24"), None);
        assert_eq!(set.index("10.43.0.0/24"), None);
    }
}
