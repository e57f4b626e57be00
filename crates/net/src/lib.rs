//! Rudder's service networking, run by every node agent.
//!
//! Owns: the cluster DNS ([`dns`]): the names of Services and their endpoints, answered from
//! the API's Services and EndpointSlices, everything else forwarded to the node's own
//! resolvers; the service proxy ([`proxy`]): nftables rules that send the traffic for a
//! Service's addresses and ports to its endpoints. Both follow one watch of the cluster's
//! Services and EndpointSlices ([`watch_services`]). The pod network between nodes ([`pods`]):
//! routes to the other nodes' podCIDRs and masquerading of what pods send elsewhere, let past
//! the machine's firewall, and the hostPort rules of pods that outlived their runtime taken
//! away ([`iptables`]).
//!
//! Must not touch: the API server's internals (it is a client of the API like any other), or
//! any network configuration of the machine it was not asked to manage (the proxy keeps to its
//! own nftables table).

use std::sync::Arc;

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::{reflector, watcher, WatchStreamExt};
use tokio::sync::watch;

pub mod conntrack;
pub mod dns;
pub mod iptables;
pub mod pods;
pub mod proxy;

/// The cluster's Services and EndpointSlices at one moment.
#[derive(Clone, Default)]
pub struct Services {
    pub services: Vec<Arc<Service>>,
    pub slices: Vec<Arc<EndpointSlice>>,
}

/// Keeps `tx` holding the cluster's Services and EndpointSlices, sent again after each burst of
/// changes (the first send is the complete initial list); returns when every receiver is gone.
pub async fn watch_services(client: kube::Client, tx: watch::Sender<Arc<Services>>) {
    let (services, services_writer) = reflector::store::<Service>();
    let (slices, slices_writer) = reflector::store::<EndpointSlice>();
    let all = watcher::Config::default();
    let service_events = reflector(
        services_writer,
        watcher(kube::Api::<Service>::all(client.clone()), all.clone()).default_backoff(),
    )
    .map(|e| e.map(drop));
    let slice_events = reflector(
        slices_writer,
        watcher(kube::Api::<EndpointSlice>::all(client), all).default_backoff(),
    )
    .map(|e| e.map(drop));
    let mut events = std::pin::pin!(futures::stream::select(service_events, slice_events));
    while let Some(event) = events.next().await {
        // Take in the whole burst, then send once.
        take_burst(event, &mut events, "Services and EndpointSlices");
        // Until both lists are in, a send would show Services without their endpoints.
        if services.wait_until_ready().now_or_never().is_none()
            || slices.wait_until_ready().now_or_never().is_none()
        {
            continue;
        }
        let now = Services {
            services: services.state(),
            slices: slices.state(),
        };
        if tx.send(Arc::new(now)).is_err() {
            return;
        }
    }
}

/// Takes in `first` and every watch event already waiting after it, logging the errors among
/// them (the watcher retries by itself): a burst of changes is then acted on once.
pub(crate) fn take_burst<T, E: std::fmt::Display>(
    first: Result<T, E>,
    events: &mut (impl futures::Stream<Item = Result<T, E>> + Unpin),
    watching: &str,
) {
    let mut next = Some(first);
    while let Some(event) = next {
        if let Err(e) = event {
            tracing::debug!(error = %e, "watching {watching}");
        }
        next = events.next().now_or_never().flatten();
    }
}
