//! Endpoints (upstream's endpoint controller): for every Service with a selector, the Endpoints
//! object of the same name lists the selected pods that have an IP: ready ones in `addresses`,
//! the others in `notReadyAddresses` (all in `addresses` with `publishNotReadyAddresses`),
//! terminating and finished pods left out, each port resolved on each pod (a named targetPort the
//! pod lacks leaves the pod out of that port's subset), the subsets repacked as upstream does
//! (pods offering the same ports share a subset). Labels are the Service's (plus
//! `service.kubernetes.io/headless` for a headless Service); the
//! `endpoints.kubernetes.io/last-change-trigger-time` annotation says when the last change it
//! reflects happened. Services without a selector are left alone (their Endpoints are the
//! user's), and the Endpoints go when their Service goes. Nothing is written unless it changes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::{Future, StreamExt};
use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Pod, Service,
    ServicePort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::ResourceExt;

use crate::informers::{Change, Informers};

/// The annotation with the time of the last change the Endpoints reflect.
pub const TRIGGER_TIME: &str = "endpoints.kubernetes.io/last-change-trigger-time";
/// The label a headless Service's Endpoints and EndpointSlices carry.
pub const HEADLESS: &str = "service.kubernetes.io/headless";
const OVER_CAPACITY: &str = "endpoints.kubernetes.io/over-capacity";
/// Addresses an Endpoints object holds at most (upstream's maxCapacity).
const MAX_CAPACITY: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Api(#[from] kube::Error),
}

struct Ctx {
    client: kube::Client,
    pods: Store<Pod>,
    endpoints: Store<Endpoints>,
}

/// Runs the controller until the task is dropped.
pub fn run(informers: &Informers) -> impl Future<Output = ()> + Send {
    let tracked = crate::metrics::Tracked::new("endpoint");
    let client = informers.client().clone();
    let services = informers.store::<Service>();
    let pods = informers.store::<Pod>();
    let endpoints = informers.store::<Endpoints>();
    let by_pod = services.clone();
    let ep_store = endpoints.clone();
    let controller =
        Controller::for_shared_stream(tracked.trigger(informers.subscribe::<Service>()), services)
            .watches_shared_stream(
                informers.subscribe::<Pod>(),
                tracked.mapper(move |pod: Arc<Pod>| services_of_pod(&by_pod, &ep_store, &pod)),
            )
            .watches_shared_stream(
                informers.subscribe::<Endpoints>(),
                tracked.mapper(|ep: Arc<Endpoints>| {
                    Some(
                        ObjectRef::<Service>::new(&ep.name_any())
                            .within(&ep.namespace().unwrap_or_default()),
                    )
                }),
            );
    let deletions = informers.changes::<Service>();
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        pods,
        endpoints,
    });
    let cleanup = cleanup(client, deletions);
    let main = controller
        .run(
            tracked.reconcile(reconcile),
            tracked.error_policy(error_policy),
            ctx,
        )
        .for_each(tracked.results());
    async move {
        tokio::join!(main, cleanup);
    }
}

/// Deletes the Endpoints of each Service that goes (the controller only sees what exists).
async fn cleanup(client: kube::Client, changes: impl futures::Stream<Item = Change<Service>>) {
    let mut changes = std::pin::pin!(changes);
    while let Some(change) = changes.next().await {
        let Change::Deleted(svc) = change else {
            continue;
        };
        if svc
            .spec
            .as_ref()
            .and_then(|s| s.selector.as_ref())
            .is_none_or(|s| s.is_empty())
        {
            continue;
        }
        let ns = svc.namespace().unwrap_or_default();
        let api: Api<Endpoints> = Api::namespaced(client.clone(), &ns);
        match api.delete(&svc.name_any(), &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => tracing::warn!(service = %svc.name_any(), error = %e, "deleting endpoints"),
        }
    }
}

/// The Services a pod's change may matter to: those selecting it now, and those whose
/// Endpoints list it (its labels may just have changed).
fn services_of_pod(
    services: &Store<Service>,
    endpoints: &Store<Endpoints>,
    pod: &Pod,
) -> Vec<ObjectRef<Service>> {
    let ns = pod.namespace().unwrap_or_default();
    let name = pod.name_any();
    services
        .state()
        .into_iter()
        .filter(|s| s.namespace().as_deref() == Some(&ns))
        .filter(|s| {
            selects(s, pod) || {
                let r = ObjectRef::<Endpoints>::new(&s.name_any()).within(&ns);
                endpoints.get(&r).is_some_and(|ep| lists_pod(&ep, &name))
            }
        })
        .map(|s| ObjectRef::from_obj(&*s))
        .collect()
}

fn lists_pod(ep: &Endpoints, pod: &str) -> bool {
    ep.subsets.iter().flatten().any(|s| {
        s.addresses
            .iter()
            .flatten()
            .chain(s.not_ready_addresses.iter().flatten())
            .any(|a| a.target_ref.as_ref().and_then(|r| r.name.as_deref()) == Some(pod))
    })
}

/// The Service's selector, if it has one (no selector: endpoints are managed by hand).
pub(crate) fn selector(svc: &Service) -> Option<&BTreeMap<String, String>> {
    let spec = svc.spec.as_ref()?;
    if spec.type_.as_deref() == Some("ExternalName") {
        return None;
    }
    spec.selector.as_ref().filter(|s| !s.is_empty())
}

/// Whether the Service selects the pod (same namespace, every selector label matches).
pub(crate) fn selects(svc: &Service, pod: &Pod) -> bool {
    let Some(sel) = selector(svc) else {
        return false;
    };
    if svc.namespace() != pod.namespace() {
        return false;
    }
    let labels = pod.labels();
    sel.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// The pods of the Service, from the cache.
pub(crate) fn pods_of(pods: &Store<Pod>, svc: &Service) -> Vec<Arc<Pod>> {
    let mut out: Vec<Arc<Pod>> = pods
        .state()
        .into_iter()
        .filter(|p| selects(svc, p))
        .collect();
    out.sort_by_key(|p| p.name_any());
    out
}

/// The pod's Ready condition is True.
pub(crate) fn is_pod_ready(pod: &Pod) -> bool {
    ready_condition(pod).is_some_and(|c| c.status == "True")
}

fn ready_condition(pod: &Pod) -> Option<&k8s_openapi::api::core::v1::PodCondition> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
}

/// Whether the pod belongs in endpoints at all: it has an IP, has not finished, and is not
/// terminating unless terminating pods are wanted (upstream's ShouldPodBeInEndpoints).
pub(crate) fn should_be_in_endpoints(pod: &Pod, include_terminating: bool) -> bool {
    let Some(st) = pod.status.as_ref() else {
        return false;
    };
    if matches!(st.phase.as_deref(), Some("Succeeded" | "Failed")) {
        return false;
    }
    if st.pod_ip.as_deref().unwrap_or("").is_empty() {
        return false;
    }
    include_terminating || pod.metadata.deletion_timestamp.is_none()
}

/// The pod's port a Service port sends to: a number as is, a name looked up in the pod's
/// containers (and sidecar init containers) with the same protocol; `None` if the pod lacks it.
pub(crate) fn find_port(pod: &Pod, sp: &ServicePort) -> Option<i32> {
    match &sp.target_port {
        None => Some(sp.port),
        Some(IntOrString::Int(0)) => Some(sp.port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => {
            if let Ok(n) = name.parse::<i32>() {
                return Some(n);
            }
            let proto = sp.protocol.as_deref().unwrap_or("TCP");
            let spec = pod.spec.as_ref()?;
            let sidecars = spec
                .init_containers
                .iter()
                .flatten()
                .filter(|c| c.restart_policy.as_deref() == Some("Always"));
            spec.containers
                .iter()
                .chain(sidecars)
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| {
                    p.name.as_deref() == Some(name.as_str())
                        && p.protocol.as_deref().unwrap_or("TCP") == proto
                })
                .map(|p| p.container_port)
        }
    }
}

/// Whether the pod's hostname goes into its endpoint (it names this Service as its subdomain).
pub(crate) fn should_set_hostname(pod: &Pod, svc: &Service) -> bool {
    let spec = pod.spec.as_ref();
    !spec
        .and_then(|s| s.hostname.as_deref())
        .unwrap_or("")
        .is_empty()
        && spec.and_then(|s| s.subdomain.as_deref()) == Some(svc.name_any().as_str())
        && pod.namespace() == svc.namespace()
}

/// The time of the latest change the endpoints reflect: the latest Ready transition of a
/// selected pod, or the Service's creation if later (upstream tracks the earliest change not yet
/// written; without that memory the latest known change is the closest stateless reading).
pub(crate) fn trigger_time(svc: &Service, pods: &[Arc<Pod>]) -> Option<Time> {
    pods.iter()
        .filter_map(|p| ready_condition(p).and_then(|c| c.last_transition_time.clone()))
        .chain(svc.metadata.creation_timestamp.clone())
        .max_by_key(|t| t.0)
}

/// The pod reference of an endpoint.
pub(crate) fn pod_ref(pod: &Pod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".into()),
        namespace: pod.namespace(),
        name: Some(pod.name_any()),
        uid: pod.metadata.uid.clone(),
        ..Default::default()
    }
}

fn is_headless(svc: &Service) -> bool {
    svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None")
}

/// The subsets the Service's pods make, packed.
pub fn desired_subsets(svc: &Service, pods: &[Arc<Pod>]) -> Vec<EndpointSubset> {
    let spec = svc.spec.clone().unwrap_or_default();
    let publish = spec.publish_not_ready_addresses.unwrap_or(false);
    let mut subsets = Vec::new();
    for pod in pods {
        if !should_be_in_endpoints(pod, publish) {
            continue;
        }
        let ip = pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.clone())
            .unwrap_or_default();
        let node = pod.spec.as_ref().and_then(|s| s.node_name.clone());
        let addr = EndpointAddress {
            ip,
            node_name: node.filter(|n| !n.is_empty()),
            target_ref: Some(pod_ref(pod)),
            hostname: should_set_hostname(pod, svc)
                .then(|| pod.spec.as_ref().and_then(|s| s.hostname.clone()))
                .flatten(),
        };
        let ready = publish || is_pod_ready(pod);
        let mut add = |ports: Option<Vec<EndpointPort>>| {
            subsets.push(if ready {
                EndpointSubset {
                    addresses: Some(vec![addr.clone()]),
                    ports,
                    ..Default::default()
                }
            } else {
                EndpointSubset {
                    not_ready_addresses: Some(vec![addr.clone()]),
                    ports,
                    ..Default::default()
                }
            })
        };
        let ports = spec.ports.clone().unwrap_or_default();
        if ports.is_empty() {
            // A headless Service without ports still lists its pods.
            if is_headless(svc) {
                add(None);
            }
            continue;
        }
        for sp in &ports {
            let Some(port) = find_port(pod, sp) else {
                continue;
            };
            add(Some(vec![EndpointPort {
                name: sp.name.clone().filter(|n| !n.is_empty()),
                port,
                protocol: Some(sp.protocol.clone().unwrap_or_else(|| "TCP".into())),
                app_protocol: sp.app_protocol.clone(),
            }]));
        }
    }
    repack(subsets)
}

type AddrKey = (String, String);
type PortKey = (i32, String, String, String);
/// The addresses offering one port, with their readiness.
type Offered = BTreeMap<AddrKey, (EndpointAddress, bool)>;
/// The ports one set of addresses offers, and those addresses.
type Group = (Vec<EndpointPort>, Vec<(EndpointAddress, bool)>);

fn port_key(p: &EndpointPort) -> PortKey {
    (
        p.port,
        p.name.clone().unwrap_or_default(),
        p.protocol.clone().unwrap_or_default(),
        p.app_protocol.clone().unwrap_or_default(),
    )
}

fn addr_key(a: &EndpointAddress) -> AddrKey {
    (
        a.ip.clone(),
        a.target_ref
            .as_ref()
            .and_then(|r| r.uid.clone())
            .unwrap_or_default(),
    )
}

/// Upstream's RepackSubsets: every port is offered by a set of addresses; ports offered by the
/// same set (readiness included) share one subset. An address ready in one subset and not in
/// another is ready. Addresses are sorted by IP then pod UID, ports by number, name and
/// protocol, and subsets by their first address (upstream orders ports and subsets by a hash;
/// this order is as deterministic and easier to read).
pub fn repack(subsets: Vec<EndpointSubset>) -> Vec<EndpointSubset> {
    // Port (or the "no ports" sentinel) → address → (address, ready).
    let mut by_port: BTreeMap<Option<PortKey>, (Option<EndpointPort>, Offered)> = BTreeMap::new();
    for s in &subsets {
        let ports: Vec<Option<&EndpointPort>> = match s.ports.as_deref() {
            None | Some([]) => vec![None],
            Some(ps) => ps.iter().map(Some).collect(),
        };
        for p in ports {
            let entry = by_port
                .entry(p.map(port_key))
                .or_insert_with(|| (p.cloned(), BTreeMap::new()));
            for a in s.addresses.iter().flatten() {
                entry.1.insert(addr_key(a), (a.clone(), true));
            }
            for a in s.not_ready_addresses.iter().flatten() {
                entry.1.entry(addr_key(a)).or_insert((a.clone(), false));
            }
        }
    }
    // The set of addresses (with readiness) → the ports it offers.
    let mut groups: BTreeMap<Vec<(AddrKey, bool)>, Group> = BTreeMap::new();
    for (_, (port, addrs)) in by_port {
        let key: Vec<(AddrKey, bool)> = addrs.iter().map(|(k, (_, r))| (k.clone(), *r)).collect();
        let g = groups
            .entry(key)
            .or_insert_with(|| (Vec::new(), addrs.into_values().collect()));
        if let Some(p) = port {
            g.0.push(p);
        }
    }
    let mut out: Vec<EndpointSubset> = groups
        .into_values()
        .filter(|(_, addrs)| !addrs.is_empty())
        .map(|(mut ports, addrs)| {
            ports.sort_by_key(port_key);
            let ready: Vec<EndpointAddress> = addrs
                .iter()
                .filter(|(_, r)| *r)
                .map(|(a, _)| a.clone())
                .collect();
            let not_ready: Vec<EndpointAddress> = addrs
                .iter()
                .filter(|(_, r)| !*r)
                .map(|(a, _)| a.clone())
                .collect();
            EndpointSubset {
                addresses: (!ready.is_empty()).then_some(ready),
                not_ready_addresses: (!not_ready.is_empty()).then_some(not_ready),
                ports: (!ports.is_empty()).then_some(ports),
            }
        })
        .collect();
    out.sort_by_key(|s| {
        let first = s
            .addresses
            .iter()
            .flatten()
            .chain(s.not_ready_addresses.iter().flatten())
            .next()
            .map(addr_key);
        (
            first,
            s.ports
                .as_ref()
                .map(|p| p.iter().map(port_key).collect::<Vec<_>>()),
        )
    });
    out
}

/// Keeps the first `MAX_CAPACITY` addresses, ready ones first (upstream truncates the same way).
fn truncate(subsets: &mut [EndpointSubset]) -> bool {
    let total: usize = subsets
        .iter()
        .map(|s| {
            s.addresses.as_ref().map_or(0, Vec::len)
                + s.not_ready_addresses.as_ref().map_or(0, Vec::len)
        })
        .sum();
    if total <= MAX_CAPACITY {
        return false;
    }
    let mut left = MAX_CAPACITY;
    for s in subsets.iter_mut() {
        if let Some(a) = s.addresses.as_mut() {
            a.truncate(left);
            left -= a.len();
        }
    }
    for s in subsets.iter_mut() {
        if let Some(a) = s.not_ready_addresses.as_mut() {
            a.truncate(left);
            left -= a.len();
        }
    }
    true
}

/// Whether two subset lists say the same (target references' resourceVersion aside).
fn same_subsets(a: &[EndpointSubset], b: &[EndpointSubset]) -> bool {
    let norm = |s: &[EndpointSubset]| {
        let mut v = s.to_vec();
        for sub in &mut v {
            for a in sub
                .addresses
                .iter_mut()
                .flatten()
                .chain(sub.not_ready_addresses.iter_mut().flatten())
            {
                if let Some(r) = a.target_ref.as_mut() {
                    r.resource_version = None;
                }
            }
            if sub.addresses.as_ref().is_some_and(Vec::is_empty) {
                sub.addresses = None;
            }
            if sub.not_ready_addresses.as_ref().is_some_and(Vec::is_empty) {
                sub.not_ready_addresses = None;
            }
        }
        v
    };
    norm(a) == norm(b)
}

async fn reconcile(svc: Arc<Service>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if selector(&svc).is_none() {
        return Ok(Action::await_change());
    }
    if ctx.pods.wait_until_ready().await.is_err() || ctx.endpoints.wait_until_ready().await.is_err()
    {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    let ns = svc.namespace().unwrap_or_default();
    let name = svc.name_any();
    let pods = pods_of(&ctx.pods, &svc);
    let mut subsets = desired_subsets(&svc, &pods);
    let over = truncate(&mut subsets);
    let mut labels = svc.labels().clone();
    if is_headless(&svc) {
        labels.insert(HEADLESS.into(), String::new());
    }
    let current = ctx.endpoints.get(&ObjectRef::new(&name).within(&ns));
    if let Some(cur) = &current {
        let cur_over = cur.annotations().get(OVER_CAPACITY).is_some();
        if same_subsets(cur.subsets.as_deref().unwrap_or(&[]), &subsets)
            && cur.labels() == &labels
            && cur_over == over
        {
            return Ok(Action::await_change());
        }
    }
    let mut ep = current.as_deref().cloned().unwrap_or_else(|| Endpoints {
        metadata: kube::api::ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(ns.clone()),
            ..Default::default()
        },
        ..Default::default()
    });
    ep.metadata.labels = Some(labels);
    let annotations = ep.metadata.annotations.get_or_insert_with(Default::default);
    match trigger_time(&svc, &pods) {
        Some(t) => {
            annotations.insert(TRIGGER_TIME.into(), t.0.to_string());
        }
        None => {
            annotations.remove(TRIGGER_TIME);
        }
    }
    if over {
        annotations.insert(OVER_CAPACITY.into(), "truncated".into());
    } else {
        annotations.remove(OVER_CAPACITY);
    }
    ep.metadata.managed_fields = None;
    ep.subsets = (!subsets.is_empty()).then_some(subsets);
    let api: Api<Endpoints> = Api::namespaced(ctx.client.clone(), &ns);
    let pp = PostParams {
        field_manager: Some(crate::MANAGER.into()),
        ..Default::default()
    };
    if current.is_some() {
        // The resourceVersion read makes it a compare-and-swap: a conflict requeues.
        api.replace(&name, &pp, &ep).await?;
    } else {
        match api.create(&pp, &ep).await {
            Ok(_) => {}
            // Made meanwhile (by hand, or the cache is behind): the next change looks again.
            Err(kube::Error::Api(e)) if e.code == 409 => {
                return Ok(Action::requeue(Duration::from_secs(1)))
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Action::await_change())
}

fn error_policy(svc: Arc<Service>, error: &Error, _ctx: Arc<Ctx>) -> Action {
    tracing::debug!(service = %ObjectRef::from_obj(svc.as_ref()), %error, "endpoints");
    Action::requeue(Duration::from_millis(500))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(ip: &str, uid: &str) -> EndpointAddress {
        EndpointAddress {
            ip: ip.into(),
            target_ref: Some(ObjectReference {
                uid: Some(uid.into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn port(name: &str, n: i32) -> EndpointPort {
        EndpointPort {
            name: Some(name.into()),
            port: n,
            protocol: Some("TCP".into()),
            app_protocol: None,
        }
    }

    fn sub(
        ready: Vec<EndpointAddress>,
        not_ready: Vec<EndpointAddress>,
        ports: Vec<EndpointPort>,
    ) -> EndpointSubset {
        EndpointSubset {
            addresses: (!ready.is_empty()).then_some(ready),
            not_ready_addresses: (!not_ready.is_empty()).then_some(not_ready),
            ports: (!ports.is_empty()).then_some(ports),
        }
    }

    #[test]
    fn pods_with_the_same_ports_share_a_subset_sorted() {
        let (a, b, c) = (
            addr("10.0.0.3", "a"),
            addr("10.0.0.1", "b"),
            addr("10.0.0.2", "c"),
        );
        let http = port("http", 80);
        let metrics = port("metrics", 9090);
        let packed = repack(vec![
            sub(vec![a.clone()], vec![], vec![http.clone()]),
            sub(vec![a.clone()], vec![], vec![metrics.clone()]),
            sub(vec![b.clone()], vec![], vec![http.clone()]),
            sub(vec![b.clone()], vec![], vec![metrics.clone()]),
            // c lacks the named port "metrics".
            sub(vec![], vec![c.clone()], vec![http.clone()]),
        ]);
        assert_eq!(packed.len(), 2, "{packed:?}");
        // http is offered by b and a (ready) and c (not ready), metrics by b and a only:
        // two subsets, addresses by IP, then by their ports.
        assert_eq!(
            packed[0],
            sub(vec![b.clone(), a.clone()], vec![c], vec![http.clone()])
        );
        assert_eq!(packed[1], sub(vec![b, a], vec![], vec![metrics]));
        // Pods offering the same ports share one subset with both ports.
        let (d, e) = (addr("10.0.0.5", "d"), addr("10.0.0.4", "e"));
        let packed = repack(vec![
            sub(vec![d.clone()], vec![], vec![port("metrics", 9090)]),
            sub(vec![d.clone()], vec![], vec![http.clone()]),
            sub(vec![], vec![e.clone()], vec![http.clone()]),
            sub(vec![], vec![e.clone()], vec![port("metrics", 9090)]),
        ]);
        assert_eq!(
            packed,
            vec![sub(vec![d], vec![e], vec![http, port("metrics", 9090)])]
        );
    }

    #[test]
    fn ready_wins_and_portless_subsets_are_kept() {
        let a = addr("10.0.0.1", "a");
        let packed = repack(vec![
            sub(vec![], vec![a.clone()], vec![]),
            sub(vec![a.clone()], vec![], vec![]),
        ]);
        assert_eq!(packed, vec![sub(vec![a], vec![], vec![])]);
        assert!(repack(vec![]).is_empty());
    }

    #[test]
    fn truncation_keeps_ready_addresses_first() {
        let ready: Vec<EndpointAddress> = (0..900)
            .map(|i| addr(&format!("10.1.{}.{}", i / 250, i % 250), &i.to_string()))
            .collect();
        let not_ready: Vec<EndpointAddress> = (0..200)
            .map(|i| addr(&format!("10.2.0.{i}"), &format!("n{i}")))
            .collect();
        let mut subsets = vec![sub(ready.clone(), not_ready.clone(), vec![port("", 80)])];
        assert!(truncate(&mut subsets));
        assert_eq!(subsets[0].addresses.as_ref().unwrap().len(), 900);
        assert_eq!(subsets[0].not_ready_addresses.as_ref().unwrap().len(), 100);
        assert!(!truncate(&mut subsets));
    }
}
