//! Service load balancers on the nodes themselves (k3s's servicelb): a `LoadBalancer` Service
//! without a `loadBalancerClass` gets, in `status.loadBalancer.ingress`, the address of every
//! Ready node (its ExternalIP where it has one, else its InternalIP), where every node's
//! service proxy answers at the Service's ports. A Service that stops being a LoadBalancer has
//! its ingress cleared; one with a `loadBalancerClass` is another implementation's and left
//! alone. Nothing is written unless it changes.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures::{Future, StreamExt};
use k8s_openapi::api::core::v1::{Node, Service};
use kube::api::{Api, Patch};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::ResourceExt;

use crate::informers::Informers;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Api(#[from] kube::Error),
}

struct Ctx {
    client: kube::Client,
    nodes: Store<Node>,
}

/// Runs the controller until the task is dropped.
pub fn run(informers: &Informers) -> impl Future<Output = ()> + Send {
    let tracked = crate::metrics::Tracked::new("service-lb");
    let services = informers.store::<Service>();
    let all = services.clone();
    let controller =
        Controller::for_shared_stream(tracked.trigger(informers.subscribe::<Service>()), services)
            .watches_shared_stream(
                informers.subscribe::<Node>(),
                // A node's readiness or address matters to every load balancer.
                tracked.mapper(move |_: Arc<Node>| {
                    all.state()
                        .iter()
                        .filter(|s| is_load_balancer(s))
                        .map(|s| ObjectRef::from_obj(&**s))
                        .collect::<Vec<_>>()
                }),
            );
    let ctx = Arc::new(Ctx {
        client: informers.client().clone(),
        nodes: informers.store::<Node>(),
    });
    controller
        .run(
            tracked.reconcile(reconcile),
            tracked.error_policy(error_policy),
            ctx,
        )
        .for_each(tracked.results())
}

/// A Service this controller serves: a LoadBalancer of no other implementation's class.
fn is_load_balancer(svc: &Service) -> bool {
    svc.spec.as_ref().is_some_and(|s| {
        s.type_.as_deref() == Some("LoadBalancer") && s.load_balancer_class.is_none()
    })
}

/// The address a node is reached at from outside: its ExternalIP, else its InternalIP;
/// `None` for a node that is not Ready.
fn node_address(node: &Node) -> Option<String> {
    let status = node.status.as_ref()?;
    let ready = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    if !ready {
        return None;
    }
    let addresses = status.addresses.as_deref().unwrap_or_default();
    ["ExternalIP", "InternalIP"].iter().find_map(|kind| {
        addresses
            .iter()
            .find(|a| a.type_ == *kind)
            .map(|a| a.address.clone())
    })
}

/// The ingress addresses `svc` should show, in order.
fn ingress(svc: &Service, nodes: &[Arc<Node>]) -> Vec<String> {
    if !is_load_balancer(svc) {
        return Vec::new();
    }
    let ips: BTreeSet<String> = nodes.iter().filter_map(|n| node_address(n)).collect();
    ips.into_iter().collect()
}

fn current(svc: &Service) -> Vec<String> {
    svc.status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|i| i.ip.clone().or_else(|| i.hostname.clone()))
        .collect()
}

async fn reconcile(svc: Arc<Service>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let spec = svc.spec.as_ref();
    let other_class = spec.is_some_and(|s| s.load_balancer_class.is_some());
    let want = ingress(&svc, &ctx.nodes.state());
    // Another implementation's load balancer status is its own.
    if other_class || want == current(&svc) {
        return Ok(Action::await_change());
    }
    let ingress: Vec<serde_json::Value> = want
        .iter()
        .map(|ip| serde_json::json!({"ip": ip, "ipMode": "VIP"}))
        .collect();
    let patch = serde_json::json!({"status": {"loadBalancer": {"ingress": ingress}}});
    let api: Api<Service> =
        Api::namespaced(ctx.client.clone(), &svc.namespace().unwrap_or_default());
    api.patch_status(
        &svc.name_any(),
        &crate::patch_params(),
        &Patch::Merge(&patch),
    )
    .await?;
    tracing::info!(service = %ObjectRef::from_obj(&*svc), ingress = ?want, "load balancer status");
    Ok(Action::await_change())
}

fn error_policy(svc: Arc<Service>, error: &Error, _ctx: Arc<Ctx>) -> Action {
    tracing::warn!(service = %ObjectRef::from_obj(svc.as_ref()), %error, "service load balancer");
    Action::requeue(Duration::from_secs(2))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, ready: &str, addresses: serde_json::Value) -> Arc<Node> {
        Arc::new(
            serde_json::from_value(json!({"metadata": {"name": name},
                "status": {"conditions": [{"type": "Ready", "status": ready}],
                           "addresses": addresses}}))
            .unwrap(),
        )
    }

    fn svc(spec: serde_json::Value) -> Service {
        serde_json::from_value(json!({"metadata": {"name": "web", "namespace": "default"},
                                      "spec": spec}))
        .unwrap()
    }

    #[test]
    fn ready_nodes_external_address_first() {
        let nodes = [
            node(
                "a",
                "True",
                json!([{"type": "InternalIP", "address": "10.0.0.2"},
                                     {"type": "ExternalIP", "address": "198.51.100.2"}]),
            ),
            node(
                "b",
                "True",
                json!([{"type": "InternalIP", "address": "10.0.0.1"},
                                     {"type": "Hostname", "address": "b"}]),
            ),
            node(
                "c",
                "False",
                json!([{"type": "InternalIP", "address": "10.0.0.3"}]),
            ),
            node("d", "True", json!([{"type": "Hostname", "address": "d"}])),
        ];
        let lb = svc(json!({"type": "LoadBalancer"}));
        assert_eq!(ingress(&lb, &nodes), ["10.0.0.1", "198.51.100.2"]);
        let other = svc(json!({"type": "LoadBalancer", "loadBalancerClass": "example.com/lb"}));
        assert!(ingress(&other, &nodes).is_empty());
        assert!(ingress(&svc(json!({"type": "NodePort"})), &nodes).is_empty());
    }
}
