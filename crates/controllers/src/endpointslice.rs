//! EndpointSlices (upstream's endpointslice controller, discovery.k8s.io/v1): the endpoints of
//! every Service with a selector, cut into slices of at most 100 named `<service>-<random>`,
//! labelled `kubernetes.io/service-name` and `endpointslice.kubernetes.io/managed-by`, owned by
//! the Service. Each selected pod with an IP of the Service's family is an endpoint with its
//! conditions (ready, serving, terminating: terminating pods stay, not ready), node, zone (the
//! node's `topology.kubernetes.io/zone`), pod reference and hostname; pods whose resolved ports
//! differ (a named targetPort) go into different slices. Churn is kept low as upstream keeps
//! it: an endpoint stays in the slice it is in, a slice is only written when what it holds
//! changes, new endpoints fill slices being written anyway before new slices are made. A
//! Service without endpoints keeps one empty placeholder slice.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::{Future, StreamExt};
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::ResourceExt;

use crate::endpoints;
use crate::informers::{Change, Informers};

pub const SERVICE_NAME: &str = "kubernetes.io/service-name";
pub const MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
pub const CONTROLLER: &str = "endpointslice-controller.k8s.io";
const ZONE: &str = "topology.kubernetes.io/zone";
/// Endpoints a slice holds at most (upstream's --max-endpoints-per-slice default).
pub const MAX_PER_SLICE: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Api(#[from] kube::Error),
}

struct Ctx {
    client: kube::Client,
    pods: Store<Pod>,
    nodes: Store<Node>,
    slices: Store<EndpointSlice>,
}

/// Runs the controller until the task is dropped.
pub fn run(informers: &Informers) -> impl Future<Output = ()> + Send {
    let tracked = crate::metrics::Tracked::new("endpoint_slice");
    let client = informers.client().clone();
    let services = informers.store::<Service>();
    let slices = informers.store::<EndpointSlice>();
    let by_pod = services.clone();
    let slice_store = slices.clone();
    let controller =
        Controller::for_shared_stream(tracked.trigger(informers.subscribe::<Service>()), services)
            .watches_shared_stream(
                informers.subscribe::<Pod>(),
                tracked.mapper(move |pod: Arc<Pod>| services_of_pod(&by_pod, &slice_store, &pod)),
            )
            .watches_shared_stream(
                informers.subscribe::<EndpointSlice>(),
                tracked.mapper(|s: Arc<EndpointSlice>| {
                    let ours = s.labels().get(MANAGED_BY).map(String::as_str) == Some(CONTROLLER);
                    let svc = s.labels().get(SERVICE_NAME).cloned();
                    svc.filter(|_| ours).map(|name| {
                        ObjectRef::<Service>::new(&name).within(&s.namespace().unwrap_or_default())
                    })
                }),
            );
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        pods: informers.store::<Pod>(),
        nodes: informers.store::<Node>(),
        slices,
    });
    let cleanup = cleanup(client, informers.changes::<Service>());
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

/// Deletes the slices of each Service that goes. The garbage collector would too (they are
/// owned by the Service); doing it here does not make them wait for it.
async fn cleanup(client: kube::Client, changes: impl futures::Stream<Item = Change<Service>>) {
    let mut changes = std::pin::pin!(changes);
    while let Some(change) = changes.next().await {
        let Change::Deleted(svc) = change else {
            continue;
        };
        let ns = svc.namespace().unwrap_or_default();
        let api: Api<EndpointSlice> = Api::namespaced(client.clone(), &ns);
        let lp = ListParams::default().labels(&format!(
            "{SERVICE_NAME}={},{MANAGED_BY}={CONTROLLER}",
            svc.name_any()
        ));
        if let Err(e) = api.delete_collection(&DeleteParams::default(), &lp).await {
            tracing::debug!(service = %svc.name_any(), error = %e, "deleting endpoint slices");
        }
    }
}

fn services_of_pod(
    services: &Store<Service>,
    slices: &Store<EndpointSlice>,
    pod: &Pod,
) -> Vec<ObjectRef<Service>> {
    let ns = pod.namespace().unwrap_or_default();
    let uid = pod.metadata.uid.clone();
    let mut out: Vec<ObjectRef<Service>> = services
        .state()
        .into_iter()
        .filter(|s| endpoints::selects(s, pod))
        .map(|s| ObjectRef::from_obj(&*s))
        .collect();
    // Services whose slices hold the pod (its labels may have changed).
    for s in slices.state() {
        if s.namespace().as_deref() != Some(&ns) {
            continue;
        }
        let holds = s
            .endpoints
            .iter()
            .any(|e| e.target_ref.as_ref().map(|r| &r.uid) == Some(&uid));
        if let (true, Some(name)) = (holds, s.labels().get(SERVICE_NAME)) {
            let r = ObjectRef::new(name).within(&ns);
            if !out.contains(&r) {
                out.push(r);
            }
        }
    }
    out
}

/// The address family of the Service's slices.
fn address_type(svc: &Service) -> &'static str {
    let fam = svc
        .spec
        .as_ref()
        .and_then(|s| s.ip_families.as_ref())
        .and_then(|f| f.first().cloned());
    match fam.as_deref() {
        Some("IPv6") => "IPv6",
        _ => "IPv4",
    }
}

/// The pod as an endpoint of the Service.
fn endpoint(svc: &Service, pod: &Pod, nodes: &Store<Node>, family: &str) -> Option<Endpoint> {
    let st = pod.status.as_ref()?;
    let ips: Vec<String> = st
        .pod_ips
        .iter()
        .flatten()
        .map(|p| p.ip.clone())
        .chain(st.pod_ip.clone())
        .filter(|ip| ip.contains(':') == (family == "IPv6"))
        .take(1)
        .collect();
    if ips.is_empty() {
        return None;
    }
    let publish = svc
        .spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false);
    let serving = endpoints::is_pod_ready(pod);
    let terminating = pod.metadata.deletion_timestamp.is_some();
    let node_name = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .filter(|n| !n.is_empty());
    let zone = node_name
        .as_ref()
        .and_then(|n| nodes.get(&ObjectRef::new(n)))
        .and_then(|n| n.labels().get(ZONE).cloned())
        .filter(|z| !z.is_empty());
    Some(Endpoint {
        addresses: ips,
        conditions: Some(EndpointConditions {
            ready: Some(publish || (serving && !terminating)),
            serving: Some(serving),
            terminating: Some(terminating),
        }),
        hostname: endpoints::should_set_hostname(pod, svc)
            .then(|| pod.spec.as_ref().and_then(|s| s.hostname.clone()))
            .flatten(),
        node_name,
        target_ref: Some(endpoints::pod_ref(pod)),
        zone,
        ..Default::default()
    })
}

/// The ports of the Service as the pod offers them (a named port the pod lacks is left out).
fn ports_of(svc: &Service, pod: &Pod) -> Vec<EndpointPort> {
    let mut ports: Vec<EndpointPort> = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|sp| {
            let port = endpoints::find_port(pod, sp)?;
            Some(EndpointPort {
                name: Some(sp.name.clone().unwrap_or_default()),
                port: Some(port),
                protocol: Some(sp.protocol.clone().unwrap_or_else(|| "TCP".into())),
                app_protocol: sp.app_protocol.clone(),
            })
        })
        .collect();
    ports.sort_by_key(ports_sort_key);
    ports
}

fn ports_sort_key(p: &EndpointPort) -> (String, i32, String) {
    (
        p.name.clone().unwrap_or_default(),
        p.port.unwrap_or(0),
        p.protocol.clone().unwrap_or_default(),
    )
}

/// A set of ports as a map key.
fn ports_key(ports: &[EndpointPort]) -> String {
    let mut v: Vec<_> = ports.iter().collect();
    v.sort_by_key(|p| ports_sort_key(p));
    serde_json::to_string(&v).unwrap_or_default()
}

fn endpoint_key(e: &Endpoint) -> String {
    e.target_ref
        .as_ref()
        .and_then(|r| r.uid.clone())
        .unwrap_or_else(|| e.addresses.join(","))
}

/// What to do to the existing slices.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// New slices: their ports and endpoints.
    pub create: Vec<(Vec<EndpointPort>, Vec<Endpoint>)>,
    /// Existing slices with new endpoints (by name).
    pub update: Vec<(String, Vec<Endpoint>)>,
    /// Existing slices to delete (by name).
    pub delete: Vec<String>,
}

/// Upstream's reconciliation for one address family: `desired` holds the endpoints grouped by
/// their ports (in a stable order), `existing` the slices as they are.
pub fn plan(
    desired: Vec<(Vec<EndpointPort>, Vec<Endpoint>)>,
    existing: &[EndpointSlice],
    max: usize,
) -> Plan {
    let mut plan = Plan::default();
    let mut groups: BTreeMap<String, (Vec<EndpointPort>, Vec<Endpoint>)> = BTreeMap::new();
    for (ports, eps) in desired {
        groups
            .entry(ports_key(&ports))
            .or_insert_with(|| (ports, Vec::new()))
            .1
            .extend(eps);
    }
    let mut by_ports: HashMap<String, Vec<&EndpointSlice>> = HashMap::new();
    for s in existing {
        by_ports
            .entry(ports_key(s.ports.as_deref().unwrap_or(&[])))
            .or_default()
            .push(s);
    }
    for (key, (ports, eps)) in groups {
        if eps.is_empty() {
            continue;
        }
        let slices = by_ports.remove(&key).unwrap_or_default();
        let mut want: HashMap<String, Endpoint> =
            eps.iter().map(|e| (endpoint_key(e), e.clone())).collect();
        // Each slice keeps the endpoints it holds that are still wanted, updated.
        let mut kept: Vec<(String, Vec<Endpoint>, bool)> = Vec::new();
        for s in slices {
            let mut mine = Vec::new();
            let mut changed = false;
            for e in &s.endpoints {
                match want.remove(&endpoint_key(e)) {
                    Some(d) => {
                        changed |= &d != e;
                        mine.push(d);
                    }
                    None => changed = true,
                }
            }
            // Beyond the limit (it was lowered): the rest are placed anew.
            if mine.len() > max {
                for e in mine.drain(max..) {
                    want.insert(endpoint_key(&e), e);
                }
                changed = true;
            }
            if mine.is_empty() {
                plan.delete.push(s.name_any());
            } else {
                kept.push((s.name_any(), mine, changed));
            }
        }
        // What is left, in the desired order: first into slices written anyway, then into
        // the fullest ones with room, then into new slices.
        let mut left: Vec<Endpoint> = eps
            .iter()
            .filter_map(|e| want.remove(&endpoint_key(e)))
            .collect();
        kept.sort_by_key(|(_, eps, changed)| (!*changed, std::cmp::Reverse(eps.len())));
        for (_, mine, changed) in kept.iter_mut() {
            if left.is_empty() {
                break;
            }
            let room = max.saturating_sub(mine.len());
            if room == 0 {
                continue;
            }
            let take = room.min(left.len());
            mine.extend(left.drain(..take));
            *changed = true;
        }
        for chunk in left.chunks(max) {
            plan.create.push((ports.clone(), chunk.to_vec()));
        }
        for (name, mine, changed) in kept {
            if changed {
                plan.update.push((name, mine));
            }
        }
    }
    // Slices whose ports nothing offers any more.
    for slices in by_ports.into_values() {
        plan.delete.extend(slices.iter().map(|s| s.name_any()));
    }
    // A Service without endpoints keeps one empty placeholder slice.
    if plan.create.is_empty() && plan.delete.len() == existing.len() {
        let placeholder = existing
            .iter()
            .find(|s| s.endpoints.is_empty() && s.ports.as_deref().unwrap_or(&[]).is_empty());
        match placeholder {
            Some(p) => plan.delete.retain(|n| *n != p.name_any()),
            None => plan.create.push((Vec::new(), Vec::new())),
        }
    }
    plan.delete.sort();
    plan
}

fn slice_labels(svc: &Service) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = svc
        .labels()
        .iter()
        .filter(|(k, _)| k.as_str() != SERVICE_NAME && k.as_str() != MANAGED_BY)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    labels.insert(SERVICE_NAME.into(), svc.name_any());
    labels.insert(MANAGED_BY.into(), CONTROLLER.into());
    if svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None") {
        labels.insert(endpoints::HEADLESS.into(), String::new());
    }
    labels
}

fn owner(svc: &Service) -> OwnerReference {
    OwnerReference {
        api_version: "v1".into(),
        kind: "Service".into(),
        name: svc.name_any(),
        uid: svc.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

async fn reconcile(svc: Arc<Service>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if endpoints::selector(&svc).is_none() {
        return Ok(Action::await_change());
    }
    if ctx.pods.wait_until_ready().await.is_err()
        || ctx.slices.wait_until_ready().await.is_err()
        || ctx.nodes.wait_until_ready().await.is_err()
    {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    let ns = svc.namespace().unwrap_or_default();
    let name = svc.name_any();
    let family = address_type(&svc);
    let pods = endpoints::pods_of(&ctx.pods, &svc);
    let mut desired: Vec<(Vec<EndpointPort>, Vec<Endpoint>)> = Vec::new();
    for pod in &pods {
        if !endpoints::should_be_in_endpoints(pod, true) {
            continue;
        }
        let Some(ep) = endpoint(&svc, pod, &ctx.nodes, family) else {
            continue;
        };
        let ports = ports_of(&svc, pod);
        match desired.iter_mut().find(|(p, _)| *p == ports) {
            Some((_, eps)) => eps.push(ep),
            None => desired.push((ports, vec![ep])),
        }
    }
    let existing: Vec<EndpointSlice> = ctx
        .slices
        .state()
        .into_iter()
        .filter(|s| {
            s.namespace().as_deref() == Some(&ns)
                && s.labels().get(SERVICE_NAME) == Some(&name)
                && s.labels().get(MANAGED_BY).map(String::as_str) == Some(CONTROLLER)
                && s.address_type == family
        })
        .map(|s| (*s).clone())
        .collect();
    let plan = plan(desired, &existing, MAX_PER_SLICE);
    let labels = slice_labels(&svc);
    let trigger = endpoints::trigger_time(&svc, &pods).map(|t| t.0.to_string());
    let api: Api<EndpointSlice> = Api::namespaced(ctx.client.clone(), &ns);
    let pp = PostParams {
        field_manager: Some(crate::MANAGER.into()),
        ..Default::default()
    };
    let annotate = |meta: &mut ObjectMeta| {
        let a = meta.annotations.get_or_insert_with(Default::default);
        match &trigger {
            Some(t) => {
                a.insert(endpoints::TRIGGER_TIME.into(), t.clone());
            }
            None => {
                a.remove(endpoints::TRIGGER_TIME);
            }
        }
    };
    for (ports, eps) in plan.create {
        let mut slice = EndpointSlice {
            metadata: ObjectMeta {
                generate_name: Some(format!("{}-", truncate_name(&name))),
                namespace: Some(ns.clone()),
                labels: Some(labels.clone()),
                owner_references: Some(vec![owner(&svc)]),
                ..Default::default()
            },
            address_type: family.into(),
            endpoints: eps,
            ports: Some(ports),
        };
        annotate(&mut slice.metadata);
        api.create(&pp, &slice).await?;
    }
    let mut updated: Vec<String> = Vec::new();
    for (slice_name, eps) in plan.update {
        let Some(old) = existing.iter().find(|s| s.name_any() == slice_name) else {
            continue;
        };
        let mut slice = old.clone();
        slice.metadata.managed_fields = None;
        slice.metadata.labels = Some(labels.clone());
        annotate(&mut slice.metadata);
        slice.endpoints = eps;
        api.replace(&slice_name, &pp, &slice).await?;
        updated.push(slice_name);
    }
    for slice_name in &plan.delete {
        match api.delete(slice_name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    // Slices left as they are still carry the Service's current labels and owner.
    for s in &existing {
        let n = s.name_any();
        if updated.contains(&n) || plan.delete.contains(&n) {
            continue;
        }
        let owned = s
            .metadata
            .owner_references
            .as_ref()
            .is_some_and(|o| o.iter().any(|o| Some(&o.uid) == svc.metadata.uid.as_ref()));
        if s.labels() != &labels || !owned {
            let mut slice = s.clone();
            slice.metadata.managed_fields = None;
            slice.metadata.labels = Some(labels.clone());
            slice.metadata.owner_references = Some(vec![owner(&svc)]);
            api.replace(&n, &pp, &slice).await?;
        }
    }
    Ok(Action::await_change())
}

/// The generateName prefix leaves room for the random suffix within 63 characters.
fn truncate_name(name: &str) -> &str {
    let max = 63 - 6;
    if name.len() <= max {
        name
    } else {
        &name[..max]
    }
}

fn error_policy(svc: Arc<Service>, error: &Error, _ctx: Arc<Ctx>) -> Action {
    tracing::debug!(service = %ObjectRef::from_obj(svc.as_ref()), %error, "endpoint slices");
    Action::requeue(Duration::from_millis(500))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ObjectReference;

    fn ep(uid: &str, ready: bool) -> Endpoint {
        Endpoint {
            addresses: vec![format!("10.0.0.{}", uid.len())],
            conditions: Some(EndpointConditions {
                ready: Some(ready),
                serving: Some(ready),
                terminating: Some(false),
            }),
            target_ref: Some(ObjectReference {
                uid: Some(uid.into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn port(n: i32) -> EndpointPort {
        EndpointPort {
            name: Some("http".into()),
            port: Some(n),
            protocol: Some("TCP".into()),
            app_protocol: None,
        }
    }

    fn slice(name: &str, ports: Vec<EndpointPort>, eps: Vec<Endpoint>) -> EndpointSlice {
        EndpointSlice {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            address_type: "IPv4".into(),
            endpoints: eps,
            ports: Some(ports),
        }
    }

    fn eps(prefix: &str, n: usize) -> Vec<Endpoint> {
        (0..n).map(|i| ep(&format!("{prefix}{i}"), true)).collect()
    }

    #[test]
    fn new_services_get_full_slices_of_at_most_max() {
        let p = plan(vec![(vec![port(80)], eps("a", 250))], &[], 100);
        let sizes: Vec<usize> = p.create.iter().map(|(_, e)| e.len()).collect();
        assert_eq!(sizes, vec![100, 100, 50]);
        assert!(p.update.is_empty() && p.delete.is_empty());
    }

    #[test]
    fn unchanged_slices_are_left_alone_and_changes_touch_one_slice() {
        let all = eps("a", 150);
        let existing = vec![
            slice("s1", vec![port(80)], all[..100].to_vec()),
            slice("s2", vec![port(80)], all[100..].to_vec()),
        ];
        assert_eq!(
            plan(vec![(vec![port(80)], all.clone())], &existing, 100),
            Plan::default()
        );
        // One endpoint of s2 turns not ready: only s2 is written.
        let mut changed = all.clone();
        changed[120] = ep("a120", false);
        let p = plan(vec![(vec![port(80)], changed.clone())], &existing, 100);
        assert!(p.create.is_empty() && p.delete.is_empty());
        assert_eq!(p.update.len(), 1);
        assert_eq!(p.update[0].0, "s2");
        assert_eq!(p.update[0].1[20], ep("a120", false));
        // A new endpoint goes into the slice with room, not a new slice.
        let mut more = all.clone();
        more.push(ep("new", true));
        let p = plan(vec![(vec![port(80)], more)], &existing, 100);
        assert_eq!(p.update.len(), 1);
        assert_eq!(p.update[0].0, "s2");
        assert_eq!(p.update[0].1.len(), 51);
        // The endpoints of s1 go: s1 is deleted, s2 untouched.
        let p = plan(vec![(vec![port(80)], all[100..].to_vec())], &existing, 100);
        assert_eq!(p.delete, vec!["s1".to_string()]);
        assert!(p.update.is_empty() && p.create.is_empty());
    }

    #[test]
    fn different_ports_different_slices_and_a_placeholder_when_empty() {
        let existing = vec![slice("old", vec![port(80)], eps("a", 2))];
        let p = plan(
            vec![
                (vec![port(80)], eps("a", 2)),
                (vec![port(8080)], eps("b", 1)),
            ],
            &existing,
            100,
        );
        assert_eq!(p.create, vec![(vec![port(8080)], eps("b", 1))]);
        assert!(p.update.is_empty() && p.delete.is_empty());
        // Nothing left: the slice goes and an empty placeholder is made once.
        let p = plan(vec![], &existing, 100);
        assert_eq!(p.delete, vec!["old".to_string()]);
        assert_eq!(p.create, vec![(vec![], vec![])]);
        let placeholder = vec![slice("ph", vec![], vec![])];
        assert_eq!(plan(vec![], &placeholder, 100), Plan::default());
        // Endpoints come: the placeholder is replaced.
        let p = plan(vec![(vec![port(80)], eps("a", 1))], &placeholder, 100);
        assert_eq!(p.delete, vec!["ph".to_string()]);
        assert_eq!(p.create.len(), 1);
    }
}
