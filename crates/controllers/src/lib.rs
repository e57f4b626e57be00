//! The controllers (Rudder's kube-controller-manager): one module per controller, each a
//! reconcile loop written with kube-runtime over watch caches, and each a client of the API
//! like any other (no access to the store).
//!
//! Owns: deciding what objects must exist or change given others (node pod CIDRs, …) and the
//! events that say so. Must not touch: the store, the API server's internals, nodes' runtimes.

pub mod deployment;
pub mod disruption;
pub mod endpoints;
pub mod endpointslice;
pub mod events;
pub mod garbagecollector;
pub mod informers;
pub mod leader;
pub mod metrics;
pub mod namespace;
pub mod nodeipam;
pub mod nodelifecycle;
pub mod podgc;
pub mod replicaset;
pub mod resourcequota;
pub mod rootca;
pub mod serviceaccount;
pub mod servicelb;

use std::sync::Arc;

use futures::future::BoxFuture;

use crate::informers::Informers;

/// What the controllers are configured with.
#[derive(Clone, Debug)]
pub struct Config {
    /// The pod network (`--cluster-cidr`), cut into one podCIDR per node.
    pub cluster_cidr: String,
    /// Prefix length of each node's podCIDR (`--node-cidr-mask-size`).
    pub node_cidr_mask_size: u8,
    /// Node health: how long a silent node stays Ready, how often nodes are looked at.
    pub node_lifecycle: nodelifecycle::Config,
    /// The cluster CA (PEM) the root CA publisher puts into every namespace as
    /// `kube-root-ca.crt`; empty: nothing is published.
    pub root_ca_pem: String,
    /// Pod GC: the terminated-pod threshold (`--terminated-pod-gc-threshold`), how often.
    pub pod_gc: podgc::Config,
    /// Resource quota: how often every quota is recounted (`--resource-quota-sync-period`).
    pub resource_quota: resourcequota::Config,
}

impl Config {
    /// Checks what would make [`start`] fail.
    pub fn check(&self) -> anyhow::Result<()> {
        nodeipam::CidrSet::new(&self.cluster_cidr, self.node_cidr_mask_size)?;
        Ok(())
    }
}

/// Starts every controller on `client`, over one set of shared caches of their own; they run
/// until the returned handles are dropped.
pub fn start(client: kube::Client, cfg: &Config) -> anyhow::Result<Controllers> {
    start_on(&Informers::new(client), cfg)
}

/// Starts every controller over `informers` (started already or not), writing with its
/// client; they run until the returned handles are dropped.
pub fn start_on(informers: &Informers, cfg: &Config) -> anyhow::Result<Controllers> {
    let ipam = Arc::new(nodeipam::CidrSet::new(
        &cfg.cluster_cidr,
        cfg.node_cidr_mask_size,
    )?);
    let loops: Vec<BoxFuture<'static, ()>> = vec![
        Box::pin(nodeipam::run(informers, ipam)),
        Box::pin(nodelifecycle::run(informers, cfg.node_lifecycle.clone())),
        Box::pin(replicaset::run(informers)),
        Box::pin(deployment::run(informers)),
        Box::pin(endpoints::run(informers)),
        Box::pin(endpointslice::run(informers)),
        Box::pin(servicelb::run(informers)),
        Box::pin(serviceaccount::run(informers)),
        Box::pin(rootca::run(informers, cfg.root_ca_pem.clone())),
        Box::pin(disruption::run(informers)),
        Box::pin(garbagecollector::run(informers)),
        Box::pin(namespace::run(informers)),
        Box::pin(podgc::run(informers, cfg.pod_gc.clone())),
        Box::pin(resourcequota::run(informers, cfg.resource_quota.clone())),
    ];
    let synced = informers.synced();
    let mut tasks = informers.start();
    // The loops start once every cache is listed: none of them acts on a partial picture.
    tasks.push(tokio::spawn(async move {
        synced.await;
        futures::future::join_all(loops).await;
    }));
    Ok(Controllers { tasks })
}

/// Patch parameters of a write by the controller manager (its managedFields entry).
pub fn patch_params() -> kube::api::PatchParams {
    kube::api::PatchParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    }
}

/// The field manager of the controllers' writes, as upstream's.
pub const MANAGER: &str = "kube-controller-manager";

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
