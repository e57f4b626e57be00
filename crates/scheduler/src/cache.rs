//! The scheduler's view of the cluster: one [`NodeInfo`] per node with what its pods request,
//! kept up to date incrementally from pod and node changes, and pods "assumed" on the node they
//! were given before the binding is seen back.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod, Taint};

use crate::resources::{PodRequest, Resources};

/// A host port a pod takes on its node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPort {
    pub ip: String,
    pub protocol: String,
    pub port: i32,
}

impl HostPort {
    /// Whether two host ports cannot both be taken (0.0.0.0 conflicts with every address).
    pub fn conflicts(&self, o: &HostPort) -> bool {
        let any = |ip: &str| ip.is_empty() || ip == "0.0.0.0";
        self.port == o.port
            && self.protocol == o.protocol
            && (any(&self.ip) || any(&o.ip) || self.ip == o.ip)
    }
}

/// The host ports a pod's containers ask for.
pub fn host_ports(pod: &Pod) -> Vec<HostPort> {
    let mut out = Vec::new();
    let Some(spec) = pod.spec.as_ref() else {
        return out;
    };
    for c in &spec.containers {
        for p in c.ports.iter().flatten() {
            if let Some(hp) = p.host_port.filter(|p| *p > 0) {
                out.push(HostPort {
                    ip: p.host_ip.clone().unwrap_or_default(),
                    protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                    port: hp,
                });
            }
        }
    }
    out
}

/// A pod on a node, with what the plugins need of it worked out once.
#[derive(Debug)]
pub struct PodInfo {
    pub pod: Arc<Pod>,
    pub request: PodRequest,
    pub ports: Vec<HostPort>,
    /// Has required anti-affinity terms (which other pods must respect).
    pub required_anti_affinity: bool,
    /// Has any pod affinity or anti-affinity (which the scoring of others looks at).
    pub any_affinity: bool,
}

impl PodInfo {
    pub fn new(pod: Arc<Pod>) -> PodInfo {
        let request = PodRequest::of(&pod);
        let ports = host_ports(&pod);
        let aff = pod.spec.as_ref().and_then(|s| s.affinity.as_ref());
        let required_anti_affinity = aff
            .and_then(|a| a.pod_anti_affinity.as_ref())
            .and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .is_some_and(|t| !t.is_empty());
        let any_affinity =
            aff.is_some_and(|a| a.pod_affinity.is_some() || a.pod_anti_affinity.is_some());
        PodInfo {
            pod,
            request,
            ports,
            required_anti_affinity,
            any_affinity,
        }
    }

    pub fn uid(&self) -> &str {
        uid(&self.pod)
    }

    pub fn namespace(&self) -> &str {
        self.pod.metadata.namespace.as_deref().unwrap_or("")
    }

    pub fn labels(&self) -> Option<&BTreeMap<String, String>> {
        self.pod.metadata.labels.as_ref()
    }

    pub fn priority(&self) -> i32 {
        priority(&self.pod)
    }
}

pub fn uid(pod: &Pod) -> &str {
    pod.metadata.uid.as_deref().unwrap_or("")
}

pub fn priority(pod: &Pod) -> i32 {
    pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
}

/// A node and what is placed on it (cloned only to simulate a change, as preemption does).
#[derive(Clone, Debug, Default)]
pub struct NodeInfo {
    pub name: String,
    /// The Node object; None while only pods naming it are known.
    pub node: Option<Arc<Node>>,
    pub allocatable: Resources,
    /// The sum of the effective requests of its pods (`pods` counts them).
    pub requested: Resources,
    pub non_zero_cpu: i64,
    pub non_zero_mem: i64,
    pub pods: HashMap<String, Arc<PodInfo>>,
    pub ports: Vec<HostPort>,
    pub pods_with_required_anti_affinity: usize,
    pub pods_with_affinity: usize,
    /// Images present on the node (every name it is known by) and their sizes.
    pub images: HashMap<String, i64>,
    /// Copied from the Node, which every filter asks for: read here, next to the counts,
    /// rather than through the Node, which would cost a cache miss per node and pod.
    unschedulable: bool,
    taints: Vec<Taint>,
}

impl NodeInfo {
    pub fn labels(&self) -> Option<&BTreeMap<String, String>> {
        self.node.as_ref().and_then(|n| n.metadata.labels.as_ref())
    }

    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels().and_then(|l| l.get(key)).map(String::as_str)
    }

    pub fn taints(&self) -> &[Taint] {
        &self.taints
    }

    pub fn unschedulable(&self) -> bool {
        self.unschedulable
    }

    fn set_node(&mut self, node: Arc<Node>) {
        let status = node.status.as_ref();
        self.allocatable = Resources::from_list(status.and_then(|s| s.allocatable.as_ref()));
        self.images.clear();
        for img in status.and_then(|s| s.images.as_ref()).into_iter().flatten() {
            let size = img.size_bytes.unwrap_or(0);
            for n in img.names.iter().flatten() {
                self.images.insert(normalized_image(n), size);
            }
        }
        let spec = node.spec.as_ref();
        self.unschedulable = spec.and_then(|s| s.unschedulable).unwrap_or(false);
        self.taints = spec.and_then(|s| s.taints.clone()).unwrap_or_default();
        self.node = Some(node);
    }

    fn clear_node(&mut self) {
        self.node = None;
        self.unschedulable = false;
        self.taints = Vec::new();
    }

    pub fn add_pod(&mut self, p: Arc<PodInfo>) {
        self.requested.add(&p.request.req);
        self.non_zero_cpu += p.request.non_zero_cpu;
        self.non_zero_mem += p.request.non_zero_mem;
        self.ports.extend(p.ports.iter().cloned());
        self.pods_with_required_anti_affinity += usize::from(p.required_anti_affinity);
        self.pods_with_affinity += usize::from(p.any_affinity);
        if let Some(old) = self.pods.insert(p.uid().to_string(), p) {
            self.forget(&old);
        }
    }

    pub fn remove_pod(&mut self, uid: &str) -> Option<Arc<PodInfo>> {
        let p = self.pods.remove(uid)?;
        self.forget(&p);
        Some(p)
    }

    fn forget(&mut self, p: &PodInfo) {
        self.requested.sub(&p.request.req);
        self.non_zero_cpu -= p.request.non_zero_cpu;
        self.non_zero_mem -= p.request.non_zero_mem;
        for hp in &p.ports {
            if let Some(i) = self.ports.iter().position(|x| x == hp) {
                self.ports.swap_remove(i);
            }
        }
        self.pods_with_required_anti_affinity -= usize::from(p.required_anti_affinity);
        self.pods_with_affinity -= usize::from(p.any_affinity);
    }
}

/// An image reference as the node reports it: with a registry and a tag (`nginx` is
/// `docker.io/library/nginx:latest`).
pub fn normalized_image(name: &str) -> String {
    let mut s = name.to_string();
    let last = s.rsplit('/').next().unwrap_or("");
    if !last.contains(':') && !last.contains('@') {
        s.push_str(":latest");
    }
    let first = s.split('/').next().unwrap_or("");
    let has_registry =
        s.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    if !has_registry {
        if s.contains('/') {
            s = format!("docker.io/{s}");
        } else {
            s = format!("docker.io/library/{s}");
        }
    }
    s
}

/// Whether a pod holds no resources any more (finished).
pub fn terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// Every node and the pods placed on them.
#[derive(Default)]
pub struct Cache {
    nodes: Vec<NodeInfo>,
    index: HashMap<String, usize>,
    /// Where each counted pod is, and whether it is only assumed there.
    pods: HashMap<String, (String, bool)>,
    /// The nodes that exist (have a Node object), in a stable order; rebuilt when nodes come
    /// or go.
    live: Vec<usize>,
    live_dirty: bool,
    /// How many nodes have each image (ImageLocality spreads its score by it).
    image_nodes: HashMap<String, usize>,
    /// How many counted pods have pod (anti-)affinity terms.
    affinity_pods: usize,
    /// Pending pods nominated to a node by preemption (upstream's nominator): node → pods.
    nominated: HashMap<String, Vec<Arc<PodInfo>>>,
    /// Pod uid → the node it is nominated to.
    nominations: HashMap<String, String>,
}

impl Cache {
    pub fn nodes(&self) -> &[NodeInfo] {
        &self.nodes
    }

    /// Indices of the nodes that exist.
    pub fn live(&mut self) -> &[usize] {
        self.refresh();
        &self.live
    }

    /// Indices of the nodes that exist, as of the last [`Cache::refresh`].
    pub fn live_nodes(&self) -> &[usize] {
        &self.live
    }

    /// How many nodes have an image.
    pub fn nodes_with_image(&self, image: &str) -> usize {
        self.image_nodes.get(image).copied().unwrap_or(0)
    }

    /// Where a counted pod is.
    pub fn node_of(&self, uid: &str) -> Option<&str> {
        self.pods.get(uid).map(|(n, _)| n.as_str())
    }

    /// Whether any counted pod has pod (anti-)affinity terms (if not, a pod without any skips
    /// the InterPodAffinity pre-computation).
    pub fn has_affinity_pods(&self) -> bool {
        self.affinity_pods > 0
    }

    /// Adds a pod to a node, keeping the affinity count.
    fn place(&mut self, node: &str, p: Arc<PodInfo>) {
        let slot = self.slot(node);
        let before = slot.pods_with_affinity;
        slot.add_pod(p);
        let after = slot.pods_with_affinity;
        self.affinity_pods = self.affinity_pods + after - before;
    }

    pub fn refresh(&mut self) {
        if self.live_dirty {
            self.live = (0..self.nodes.len())
                .filter(|i| self.nodes[*i].node.is_some())
                .collect();
            self.live
                .sort_by(|a, b| self.nodes[*a].name.cmp(&self.nodes[*b].name));
            self.live_dirty = false;
        }
    }

    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.index.get(name).map(|i| &self.nodes[*i])
    }

    fn slot(&mut self, name: &str) -> &mut NodeInfo {
        let i = match self.index.get(name) {
            Some(i) => *i,
            None => {
                self.nodes.push(NodeInfo {
                    name: name.to_string(),
                    ..Default::default()
                });
                self.index.insert(name.to_string(), self.nodes.len() - 1);
                self.nodes.len() - 1
            }
        };
        &mut self.nodes[i]
    }

    /// A node was added or changed; returns whether it is new.
    pub fn apply_node(&mut self, node: Arc<Node>) -> bool {
        let Some(name) = node.metadata.name.clone() else {
            return false;
        };
        let slot = self.slot(&name);
        let new = slot.node.is_none();
        let before: Vec<String> = slot.images.keys().cloned().collect();
        slot.set_node(node);
        let after: Vec<String> = slot.images.keys().cloned().collect();
        self.count_images(&before, &after);
        if new {
            self.live_dirty = true;
        }
        new
    }

    fn count_images(&mut self, before: &[String], after: &[String]) {
        for img in before {
            if let Some(c) = self.image_nodes.get_mut(img) {
                *c -= 1;
                if *c == 0 {
                    self.image_nodes.remove(img);
                }
            }
        }
        for img in after {
            *self.image_nodes.entry(img.clone()).or_default() += 1;
        }
    }

    pub fn delete_node(&mut self, name: &str) {
        let Some(i) = self.index.get(name).copied() else {
            return;
        };
        let before: Vec<String> = self.nodes[i].images.drain().map(|(k, _)| k).collect();
        self.count_images(&before, &[]);
        if !self.nodes[i].pods.is_empty() {
            // Its pods still count until they are gone (they may come back with the node).
            self.nodes[i].clear_node();
        } else {
            self.remove_slot(i);
        }
        self.live_dirty = true;
    }

    fn remove_slot(&mut self, i: usize) {
        let gone = self.nodes.swap_remove(i);
        self.index.remove(&gone.name);
        if i < self.nodes.len() {
            self.index.insert(self.nodes[i].name.clone(), i);
        }
        self.live_dirty = true;
    }

    /// A pod was seen: counted on its node if it has one and is not finished; returns whether
    /// it freed resources (finished, moved, or deleted).
    pub fn apply_pod(&mut self, pod: &Arc<Pod>) -> bool {
        let uid = uid(pod).to_string();
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty());
        match node {
            Some(n) if !terminal(pod) => {
                let was_elsewhere = self.pods.get(&uid).is_some_and(|(old, _)| *old != n);
                if was_elsewhere {
                    self.remove_pod(&uid);
                }
                self.place(&n, Arc::new(PodInfo::new(pod.clone())));
                self.pods.insert(uid, (n, false));
                was_elsewhere
            }
            // Finished, or not (or no longer) on a node: an assumed pod stays assumed.
            _ => {
                if node.is_none() && self.pods.get(&uid).is_some_and(|(_, assumed)| *assumed) {
                    return false;
                }
                self.remove_pod(&uid)
            }
        }
    }

    /// Forgets a pod wherever it is counted; returns whether it was.
    pub fn remove_pod(&mut self, uid: &str) -> bool {
        let Some((node, _)) = self.pods.remove(uid) else {
            return false;
        };
        if let Some(i) = self.index.get(&node).copied() {
            if let Some(p) = self.nodes[i].remove_pod(uid) {
                self.affinity_pods -= usize::from(p.any_affinity);
            }
            if self.nodes[i].node.is_none() && self.nodes[i].pods.is_empty() {
                self.remove_slot(i);
            }
        }
        true
    }

    /// Counts `pod` on `node` before its binding is seen.
    pub fn assume(&mut self, pod: Arc<Pod>, node: &str) {
        let uid = uid(&pod).to_string();
        self.remove_pod(&uid);
        self.place(node, Arc::new(PodInfo::new(pod)));
        self.pods.insert(uid, (node.to_string(), true));
    }

    pub fn is_assumed(&self, uid: &str) -> bool {
        self.pods.get(uid).is_some_and(|(_, a)| *a)
    }

    /// A binding failed: the assumed pod no longer counts.
    pub fn forget_assumed(&mut self, uid: &str) {
        if self.is_assumed(uid) {
            self.remove_pod(uid);
        }
    }

    pub fn pod_count(&self) -> usize {
        self.pods.len()
    }

    /// Nominates a pending pod to a node (its victims are on their way out): until it is
    /// placed, it counts on that node for pods of no higher priority.
    pub fn nominate(&mut self, pod: Arc<Pod>, node: &str) {
        let uid = uid(&pod).to_string();
        self.clear_nomination(&uid);
        self.nominated
            .entry(node.to_string())
            .or_default()
            .push(Arc::new(PodInfo::new(pod)));
        self.nominations.insert(uid, node.to_string());
    }

    /// The pod is no longer nominated anywhere (placed, gone, or preemption found nothing).
    pub fn clear_nomination(&mut self, uid: &str) {
        let Some(node) = self.nominations.remove(uid) else {
            return;
        };
        if let Some(list) = self.nominated.get_mut(&node) {
            list.retain(|p| p.uid() != uid);
            if list.is_empty() {
                self.nominated.remove(&node);
            }
        }
    }

    /// Where a pod is nominated to.
    pub fn nomination_of(&self, uid: &str) -> Option<&str> {
        self.nominations.get(uid).map(String::as_str)
    }

    /// Whether any pod is nominated anywhere.
    pub fn has_nominations(&self) -> bool {
        !self.nominations.is_empty()
    }

    /// The pods nominated to `node`.
    pub fn nominated_on(&self, node: &str) -> &[Arc<PodInfo>] {
        self.nominated.get(node).map(Vec::as_slice).unwrap_or(&[])
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    pub fn node(name: &str, alloc: serde_json::Value) -> Arc<Node> {
        Arc::new(
            serde_json::from_value(json!({"metadata": {"name": name},
                "status": {"allocatable": alloc}}))
            .unwrap(),
        )
    }

    pub fn bound_pod(uid: &str, node: &str, cpu: &str) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(
                json!({"metadata": {"name": uid, "namespace": "default", "uid": uid},
                "spec": {"nodeName": node, "containers": [{"name": "c",
                    "resources": {"requests": {"cpu": cpu}}}]}}),
            )
            .unwrap(),
        )
    }

    #[test]
    fn pods_are_counted_incrementally_and_assumed_pods_until_confirmed() {
        let mut c = Cache::default();
        c.apply_node(node("n1", json!({"cpu": "2", "pods": "10"})));
        c.apply_pod(&bound_pod("a", "n1", "500m"));
        assert_eq!(c.node("n1").unwrap().requested.milli_cpu, 500);
        assert_eq!(c.node("n1").unwrap().requested.pods, 1);
        // An update of the same pod does not count twice.
        c.apply_pod(&bound_pod("a", "n1", "500m"));
        assert_eq!(c.node("n1").unwrap().requested.milli_cpu, 500);
        // Assumed, then confirmed by the pod coming back bound.
        let mut unbound = (*bound_pod("b", "n1", "1")).clone();
        unbound.spec.as_mut().unwrap().node_name = None;
        c.assume(Arc::new(unbound.clone()), "n1");
        assert_eq!(c.node("n1").unwrap().requested.milli_cpu, 1500);
        assert!(c.is_assumed("b"));
        // A stale unbound update does not undo the assumption.
        c.apply_pod(&Arc::new(unbound));
        assert_eq!(c.node("n1").unwrap().requested.milli_cpu, 1500);
        c.apply_pod(&bound_pod("b", "n1", "1"));
        assert!(!c.is_assumed("b"));
        assert_eq!(c.node("n1").unwrap().requested.milli_cpu, 1500);
        // Finished pods free their resources.
        let mut done = (*bound_pod("a", "n1", "500m")).clone();
        done.status = Some(serde_json::from_value(json!({"phase": "Succeeded"})).unwrap());
        assert!(c.apply_pod(&Arc::new(done)));
        assert_eq!(c.node("n1").unwrap().requested.milli_cpu, 1000);
        // A failed binding un-assumes.
        let mut other = (*bound_pod("c", "n1", "1")).clone();
        other.spec.as_mut().unwrap().node_name = None;
        c.assume(Arc::new(other), "n1");
        c.forget_assumed("c");
        assert_eq!(c.node("n1").unwrap().requested.milli_cpu, 1000);
        assert_eq!(c.live().len(), 1);
    }

    #[test]
    fn pods_of_unknown_nodes_count_once_the_node_appears() {
        let mut c = Cache::default();
        c.apply_pod(&bound_pod("a", "late", "1"));
        assert!(c.live().is_empty());
        c.apply_node(node("late", json!({"cpu": "2"})));
        assert_eq!(c.live().len(), 1);
        assert_eq!(c.node("late").unwrap().requested.milli_cpu, 1000);
        c.delete_node("late");
        assert!(c.live().is_empty());
        c.remove_pod("a");
        assert!(c.node("late").is_none());
    }

    #[test]
    fn pods_with_affinity_are_counted() {
        let mut c = Cache::default();
        c.apply_node(node("n1", json!({"cpu": "2"})));
        let p: Arc<Pod> = Arc::new(
            serde_json::from_value(json!({"metadata": {"name": "a", "namespace": "default", "uid": "a"},
                "spec": {"nodeName": "n1", "containers": [{"name": "c"}],
                    "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                        {"labelSelector": {}, "topologyKey": "zone"}]}}}}))
            .unwrap(),
        );
        assert!(!c.has_affinity_pods());
        c.apply_pod(&p);
        c.apply_pod(&p);
        assert!(c.has_affinity_pods());
        assert_eq!(c.node("n1").unwrap().pods_with_required_anti_affinity, 1);
        c.remove_pod("a");
        assert!(!c.has_affinity_pods());
    }

    #[test]
    fn image_names_are_normalized() {
        assert_eq!(normalized_image("nginx"), "docker.io/library/nginx:latest");
        assert_eq!(normalized_image("foo/bar:1"), "docker.io/foo/bar:1");
        assert_eq!(normalized_image("reg.io/x/y"), "reg.io/x/y:latest");
        assert_eq!(normalized_image("localhost:5000/y:2"), "localhost:5000/y:2");
    }

    #[test]
    fn host_ports_conflict_on_any_address() {
        let a = HostPort {
            ip: "".into(),
            protocol: "TCP".into(),
            port: 80,
        };
        let b = HostPort {
            ip: "10.0.0.1".into(),
            protocol: "TCP".into(),
            port: 80,
        };
        let c = HostPort {
            ip: "10.0.0.2".into(),
            protocol: "TCP".into(),
            port: 80,
        };
        let u = HostPort {
            ip: "".into(),
            protocol: "UDP".into(),
            port: 80,
        };
        assert!(a.conflicts(&b));
        assert!(!b.conflicts(&c));
        assert!(!a.conflicts(&u));
    }
}
