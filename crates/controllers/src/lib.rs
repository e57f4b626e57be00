//! The controllers (Rudder's kube-controller-manager): one module per controller, each a
//! reconcile loop written with kube-runtime over watch caches, and each a client of the API
//! like any other (no access to the store).
//!
//! Owns: deciding what objects must exist or change given others (node pod CIDRs, …) and the
//! events that say so. Must not touch: the store, the API server's internals, nodes' runtimes.

pub mod nodeipam;
pub mod nodelifecycle;

use std::sync::Arc;

/// What the controllers are configured with.
#[derive(Clone, Debug)]
pub struct Config {
    /// The pod network (`--cluster-cidr`), cut into one podCIDR per node.
    pub cluster_cidr: String,
    /// Prefix length of each node's podCIDR (`--node-cidr-mask-size`).
    pub node_cidr_mask_size: u8,
    /// Node health: how long a silent node stays Ready, how often nodes are looked at.
    pub node_lifecycle: nodelifecycle::Config,
}

/// Starts every controller on `client`; they run until the returned handles are dropped.
pub fn start(client: kube::Client, cfg: &Config) -> anyhow::Result<Controllers> {
    let ipam = Arc::new(nodeipam::CidrSet::new(
        &cfg.cluster_cidr,
        cfg.node_cidr_mask_size,
    )?);
    let tasks = vec![
        tokio::spawn(nodeipam::run(client.clone(), ipam)),
        tokio::spawn(nodelifecycle::run(client, cfg.node_lifecycle.clone())),
    ];
    Ok(Controllers { tasks })
}

/// The running controllers; dropping it stops them.
pub struct Controllers {
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Controllers {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}
