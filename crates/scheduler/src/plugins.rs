//! The filter and score plugins of upstream's default profile, named as upstream names them.
//!
//! [`PodState`] is what the PreFilter/PreScore steps work out once per pod (the effective
//! request, affinity counts per topology domain, spread counts); each filter is then a cheap
//! check of one node, and each score a number per node, normalized and weighted as upstream's
//! default profile does.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    NodeSelectorTerm, Pod, PodAffinityTerm, Taint, Toleration, TopologySpreadConstraint,
    WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

use crate::cache::{host_ports, normalized_image, HostPort, NodeInfo, PodInfo};
use crate::resources::PodRequest;
use crate::selectors::{label_selector_matches, node_term_matches, tolerated};

pub type Labels = BTreeMap<String, String>;

/// The largest score a plugin gives a node.
pub const MAX_NODE_SCORE: i64 = 100;

/// How a filter rejected a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    /// May fit after the cluster changes, or by preempting pods.
    Unschedulable,
    /// Preemption cannot help on this node.
    UnschedulableAndUnresolvable,
}

/// A filter's rejection: the plugin, its code, and upstream's reason texts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub plugin: &'static str,
    pub code: Code,
    pub reasons: Vec<String>,
}

impl Failure {
    fn new(plugin: &'static str, code: Code, reason: impl Into<String>) -> Failure {
        Failure {
            plugin,
            code,
            reasons: vec![reason.into()],
        }
    }
}

pub type Status = Result<(), Failure>;

// Upstream's reason texts.
pub const ERR_NODE_NAME: &str = "node(s) didn't match the requested node name";
pub const ERR_UNSCHEDULABLE: &str = "node(s) were unschedulable";
pub const ERR_NODE_AFFINITY: &str = "node(s) didn't match Pod's node affinity/selector";
pub const ERR_PORTS: &str = "node(s) didn't have free ports for the requested pod ports";
pub const ERR_AFFINITY: &str = "node(s) didn't match pod affinity rules";
pub const ERR_ANTI_AFFINITY: &str = "node(s) didn't match pod anti-affinity rules";
pub const ERR_EXISTING_ANTI_AFFINITY: &str =
    "node(s) didn't satisfy existing pods anti-affinity rules";
pub const ERR_SPREAD: &str = "node(s) didn't match pod topology spread constraints";
pub const ERR_SPREAD_LABEL: &str =
    "node(s) didn't match pod topology spread constraints (missing required label)";

/// A pod affinity term made ready for matching: the namespaces it applies to and its selector.
#[derive(Clone, Debug)]
pub struct AffinityTerm {
    namespaces: Vec<String>,
    /// Namespace selector; with labels of namespaces looked up when matching.
    namespace_selector: Option<LabelSelector>,
    selector: Option<LabelSelector>,
    pub topology_key: String,
    pub weight: i64,
}

impl AffinityTerm {
    fn new(owner_ns: &str, t: &PodAffinityTerm, weight: i64) -> AffinityTerm {
        let namespaces = match (&t.namespaces, &t.namespace_selector) {
            (Some(n), _) if !n.is_empty() => n.clone(),
            (_, None) => vec![owner_ns.to_string()],
            _ => Vec::new(),
        };
        AffinityTerm {
            namespaces,
            namespace_selector: t.namespace_selector.clone(),
            selector: t.label_selector.clone(),
            topology_key: t.topology_key.clone(),
            weight,
        }
    }

    /// Whether the term selects `pod` (its namespace, then its labels).
    pub fn matches(&self, pod: &Pod, ns_labels: &dyn Fn(&str) -> Option<Labels>) -> bool {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("");
        let in_ns = self.namespaces.iter().any(|n| n == ns)
            || self.namespace_selector.as_ref().is_some_and(|s| {
                // An empty selector is every namespace; otherwise look at the namespace.
                (s.match_labels.as_ref().is_none_or(|m| m.is_empty())
                    && s.match_expressions.as_ref().is_none_or(|m| m.is_empty()))
                    || label_selector_matches(s, ns_labels(ns).as_ref())
            });
        in_ns
            && self
                .selector
                .as_ref()
                .is_some_and(|s| label_selector_matches(s, pod.metadata.labels.as_ref()))
    }
}

fn terms(owner: &Pod, t: Option<&Vec<PodAffinityTerm>>) -> Vec<AffinityTerm> {
    let ns = owner.metadata.namespace.as_deref().unwrap_or("");
    t.into_iter()
        .flatten()
        .map(|t| AffinityTerm::new(ns, t, 1))
        .collect()
}

fn weighted(owner: &Pod, t: Option<&Vec<WeightedPodAffinityTerm>>) -> Vec<AffinityTerm> {
    let ns = owner.metadata.namespace.as_deref().unwrap_or("");
    t.into_iter()
        .flatten()
        .map(|t| AffinityTerm::new(ns, &t.pod_affinity_term, i64::from(t.weight)))
        .collect()
}

/// A pod's required and preferred pod (anti-)affinity terms.
#[derive(Clone, Debug, Default)]
pub struct PodAffinity {
    pub required: Vec<AffinityTerm>,
    pub required_anti: Vec<AffinityTerm>,
    pub preferred: Vec<AffinityTerm>,
    pub preferred_anti: Vec<AffinityTerm>,
}

impl PodAffinity {
    pub fn of(pod: &Pod) -> PodAffinity {
        let a = pod.spec.as_ref().and_then(|s| s.affinity.as_ref());
        let pa = a.and_then(|a| a.pod_affinity.as_ref());
        let anti = a.and_then(|a| a.pod_anti_affinity.as_ref());
        PodAffinity {
            required: terms(
                pod,
                pa.and_then(|p| {
                    p.required_during_scheduling_ignored_during_execution
                        .as_ref()
                }),
            ),
            required_anti: terms(
                pod,
                anti.and_then(|p| {
                    p.required_during_scheduling_ignored_during_execution
                        .as_ref()
                }),
            ),
            preferred: weighted(
                pod,
                pa.and_then(|p| {
                    p.preferred_during_scheduling_ignored_during_execution
                        .as_ref()
                }),
            ),
            preferred_anti: weighted(
                pod,
                anti.and_then(|p| {
                    p.preferred_during_scheduling_ignored_during_execution
                        .as_ref()
                }),
            ),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.required.is_empty()
            && self.required_anti.is_empty()
            && self.preferred.is_empty()
            && self.preferred_anti.is_empty()
    }
}

/// Counts per topology domain `(key, value)`.
type DomainCounts = HashMap<(String, String), i64>;

/// A topology spread constraint with its selector completed by matchLabelKeys.
#[derive(Clone, Debug)]
pub struct Spread {
    pub max_skew: i64,
    pub topology_key: String,
    pub selector: LabelSelector,
    pub min_domains: Option<i64>,
    pub honor_affinity: bool,
    pub honor_taints: bool,
    /// Matching pods per domain value (every eligible node's domain is present).
    pub counts: HashMap<String, i64>,
    pub self_match: i64,
}

impl Spread {
    fn new(pod: &Pod, c: &TopologySpreadConstraint) -> Spread {
        let mut selector = c.label_selector.clone().unwrap_or_default();
        for key in c.match_label_keys.iter().flatten() {
            if let Some(v) = pod.metadata.labels.as_ref().and_then(|l| l.get(key)) {
                selector
                    .match_expressions
                    .get_or_insert_with(Vec::new)
                    .push(LabelSelectorRequirement {
                        key: key.clone(),
                        operator: "In".into(),
                        values: Some(vec![v.clone()]),
                    });
            }
        }
        let self_match = i64::from(
            c.label_selector.is_some()
                && label_selector_matches(&selector, pod.metadata.labels.as_ref()),
        );
        Spread {
            max_skew: i64::from(c.max_skew.max(1)),
            topology_key: c.topology_key.clone(),
            selector,
            min_domains: c.min_domains.map(i64::from),
            honor_affinity: c.node_affinity_policy.as_deref() != Some("Ignore"),
            honor_taints: c.node_taints_policy.as_deref() == Some("Honor"),
            counts: HashMap::new(),
            self_match,
        }
    }

    /// Whether an existing pod counts towards the constraint (terminating pods do not).
    fn counts_pod(&self, p: &PodInfo, ns: &str) -> bool {
        p.namespace() == ns
            && p.pod.metadata.deletion_timestamp.is_none()
            && label_selector_matches(&self.selector, p.labels())
    }

    fn min_match(&self) -> i64 {
        let domains = self.counts.len() as i64;
        if self.min_domains.is_some_and(|m| domains < m) {
            return 0;
        }
        self.counts.values().copied().min().unwrap_or(0)
    }
}

/// Adds `by` to a domain's count; a count that falls to zero is dropped, as upstream does.
fn bump(c: &mut DomainCounts, d: (String, String), by: i64) {
    match c.entry(d) {
        Entry::Occupied(mut e) => {
            *e.get_mut() += by;
            if *e.get() == 0 {
                e.remove();
            }
        }
        Entry::Vacant(e) => {
            if by != 0 {
                e.insert(by);
            }
        }
    }
}

/// What is worked out once per pod before its nodes are filtered and scored.
#[derive(Clone)]
pub struct PodState {
    pub pod: Arc<Pod>,
    pub request: PodRequest,
    pub ports: Vec<HostPort>,
    pub tolerations: Vec<Toleration>,
    pub node_name: Option<String>,
    pub node_selector: Option<Labels>,
    pub required_node_terms: Option<Vec<NodeSelectorTerm>>,
    pub preferred_node_terms: Vec<(i64, NodeSelectorTerm)>,
    pub affinity: PodAffinity,
    /// InterPodAffinity PreFilter: existing pods' anti-affinity against this pod, this pod's
    /// required affinity (per term) and anti-affinity (per term) counts per domain.
    pub existing_anti: DomainCounts,
    pub affinity_counts: Vec<DomainCounts>,
    pub anti_counts: Vec<DomainCounts>,
    /// The pod matches its own required affinity terms (the first of a group may go where
    /// no pod matches them yet).
    pub affinity_self_match: bool,
    /// Whether the InterPodAffinity counts above were worked out (they are skipped when no
    /// pod involved has pod (anti-)affinity terms).
    affinity_counted: bool,
    pub hard_spread: Vec<Spread>,
    pub soft_spread: Vec<Spread>,
    /// InterPodAffinity PreScore: affinity weight per domain.
    pub affinity_scores: DomainCounts,
    pub images: Vec<String>,
    /// Whether any pod in the cluster has pod (anti-)affinity terms.
    cluster_has_affinity: bool,
}

impl PodState {
    /// The per-pod state for `pod`, looking at every node for the cross-pod plugins.
    pub fn new(
        pod: Arc<Pod>,
        nodes: &[NodeInfo],
        live: &[usize],
        ns_labels: &dyn Fn(&str) -> Option<Labels>,
    ) -> PodState {
        let any = live.iter().any(|&i| nodes[i].pods_with_affinity > 0);
        Self::with_hint(pod, nodes, live, ns_labels, any)
    }

    /// As [`PodState::new`], told whether any pod has pod (anti-)affinity terms.
    pub fn with_hint(
        pod: Arc<Pod>,
        nodes: &[NodeInfo],
        live: &[usize],
        ns_labels: &dyn Fn(&str) -> Option<Labels>,
        cluster_has_affinity: bool,
    ) -> PodState {
        let spec = pod.spec.clone().unwrap_or_default();
        let node_aff = spec
            .affinity
            .as_ref()
            .and_then(|a| a.node_affinity.as_ref());
        let required_node_terms = node_aff
            .and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .map(|s| s.node_selector_terms.clone());
        let preferred_node_terms = node_aff
            .and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .into_iter()
            .flatten()
            .map(|p| (i64::from(p.weight), p.preference.clone()))
            .collect();
        let images = spec
            .init_containers
            .iter()
            .flatten()
            .chain(spec.containers.iter())
            .filter_map(|c| c.image.as_deref())
            .map(normalized_image)
            .collect();
        let mut st = PodState {
            request: PodRequest::of(&pod),
            ports: host_ports(&pod),
            tolerations: spec.tolerations.clone().unwrap_or_default(),
            node_name: spec.node_name.clone().filter(|n| !n.is_empty()),
            node_selector: spec.node_selector.clone().filter(|s| !s.is_empty()),
            required_node_terms,
            preferred_node_terms,
            affinity: PodAffinity::of(&pod),
            existing_anti: DomainCounts::new(),
            affinity_counts: Vec::new(),
            anti_counts: Vec::new(),
            affinity_self_match: false,
            affinity_counted: false,
            hard_spread: Vec::new(),
            soft_spread: Vec::new(),
            affinity_scores: DomainCounts::new(),
            images,
            pod,
            cluster_has_affinity,
        };
        st.pre_filter_inter_pod_affinity(nodes, live, ns_labels);
        st.pre_filter_spread(
            &spec.topology_spread_constraints.unwrap_or_default(),
            nodes,
            live,
        );
        st
    }

    fn pre_filter_inter_pod_affinity(
        &mut self,
        nodes: &[NodeInfo],
        live: &[usize],
        ns_labels: &dyn Fn(&str) -> Option<Labels>,
    ) {
        let a = &self.affinity;
        let own = !(a.required.is_empty() && a.required_anti.is_empty());
        let scoring = !(a.preferred.is_empty() && a.preferred_anti.is_empty());
        if !own && !scoring && !self.cluster_has_affinity {
            return;
        }
        self.affinity_counted = true;
        self.affinity_counts = vec![DomainCounts::new(); a.required.len()];
        self.anti_counts = vec![DomainCounts::new(); self.affinity.required_anti.len()];
        for &i in live {
            let n = &nodes[i];
            let mine = own || scoring;
            if !mine && n.pods_with_affinity == 0 {
                continue;
            }
            for p in n.pods.values() {
                if !mine && !p.any_affinity {
                    continue;
                }
                self.count_existing(n, p, 1, ns_labels);
            }
        }
        let a = &self.affinity;
        self.affinity_self_match =
            !a.required.is_empty() && a.required.iter().all(|t| t.matches(&self.pod, ns_labels));
    }

    /// Upstream's AddPod/RemovePod PreFilter extensions: the counts worked out before
    /// filtering, as if `p` were added to node `n` (`delta` 1) or removed from it (-1). What
    /// preemption uses to see a node with some of its pods gone (or nominated pods added).
    pub fn update_with(
        &mut self,
        n: &NodeInfo,
        p: &PodInfo,
        delta: i64,
        ns_labels: &dyn Fn(&str) -> Option<Labels>,
    ) {
        if self.affinity_counted {
            self.count_existing(n, p, delta, ns_labels);
        }
        let ns = self.pod.metadata.namespace.as_deref().unwrap_or("");
        for list in [&mut self.hard_spread, &mut self.soft_spread] {
            if !list.iter().all(|s| n.label(&s.topology_key).is_some()) {
                continue;
            }
            for s in list.iter_mut() {
                if !s.counts_pod(p, ns) {
                    continue;
                }
                // Only domains of eligible nodes are counted; others stay out.
                let v = n.label(&s.topology_key).unwrap_or_default();
                if let Some(c) = s.counts.get_mut(v) {
                    *c += delta;
                }
            }
        }
    }

    /// Whether preemption has to update the state per victim ([`PodState::update_with`]).
    pub fn counts_pods(&self) -> bool {
        self.affinity_counted || !self.hard_spread.is_empty() || !self.soft_spread.is_empty()
    }

    /// Counts existing pod `p` on node `n` (`delta` 1), or takes it back out (-1).
    fn count_existing(
        &mut self,
        n: &NodeInfo,
        p: &PodInfo,
        delta: i64,
        ns_labels: &dyn Fn(&str) -> Option<Labels>,
    ) {
        let domain = |key: &str| n.label(key).map(|v| (key.to_string(), v.to_string()));
        // Existing pods' terms against this pod.
        if p.any_affinity {
            let theirs = PodAffinity::of(&p.pod);
            for t in &theirs.required_anti {
                if t.matches(&self.pod, ns_labels) {
                    if let Some(d) = domain(&t.topology_key) {
                        bump(&mut self.existing_anti, d, delta);
                    }
                }
            }
            for (terms, sign, weight) in [
                (&theirs.required, 1, Some(1)),
                (&theirs.preferred, 1, None),
                (&theirs.preferred_anti, -1, None),
            ] {
                for t in terms {
                    if t.matches(&self.pod, ns_labels) {
                        if let Some(d) = domain(&t.topology_key) {
                            let w = sign * weight.unwrap_or(t.weight);
                            bump(&mut self.affinity_scores, d, w * delta);
                        }
                    }
                }
            }
        }
        // This pod's terms against the existing pod.
        let a = &self.affinity;
        if !a.required.is_empty() && a.required.iter().all(|t| t.matches(&p.pod, ns_labels)) {
            for (i, t) in a.required.iter().enumerate() {
                if let Some(d) = domain(&t.topology_key) {
                    bump(&mut self.affinity_counts[i], d, delta);
                }
            }
        }
        for (i, t) in a.required_anti.iter().enumerate() {
            if t.matches(&p.pod, ns_labels) {
                if let Some(d) = domain(&t.topology_key) {
                    bump(&mut self.anti_counts[i], d, delta);
                }
            }
        }
        for (terms, sign) in [(&a.preferred, 1), (&a.preferred_anti, -1)] {
            for t in terms {
                if t.matches(&p.pod, ns_labels) {
                    if let Some(d) = domain(&t.topology_key) {
                        bump(&mut self.affinity_scores, d, sign * t.weight * delta);
                    }
                }
            }
        }
    }

    fn pre_filter_spread(
        &mut self,
        constraints: &[TopologySpreadConstraint],
        nodes: &[NodeInfo],
        live: &[usize],
    ) {
        for c in constraints {
            let s = Spread::new(&self.pod, c);
            if c.when_unsatisfiable == "DoNotSchedule" {
                self.hard_spread.push(s);
            } else {
                self.soft_spread.push(s);
            }
        }
        if self.hard_spread.is_empty() && self.soft_spread.is_empty() {
            return;
        }
        let ns = self.pod.metadata.namespace.clone().unwrap_or_default();
        for hard in [true, false] {
            let mut list = std::mem::take(if hard {
                &mut self.hard_spread
            } else {
                &mut self.soft_spread
            });
            let keys: Vec<String> = list.iter().map(|s| s.topology_key.clone()).collect();
            for &i in live {
                let n = &nodes[i];
                if !keys.iter().all(|k| n.label(k).is_some()) {
                    continue;
                }
                for s in list.iter_mut() {
                    if s.honor_affinity && node_affinity(self, n).is_err() {
                        continue;
                    }
                    if s.honor_taints && untolerated(&self.tolerations, n, |_| true).is_some() {
                        continue;
                    }
                    let v = n.label(&s.topology_key).unwrap_or_default().to_string();
                    let matching = n.pods.values().filter(|p| s.counts_pod(p, &ns)).count() as i64;
                    *s.counts.entry(v).or_default() += matching;
                }
            }
            *(if hard {
                &mut self.hard_spread
            } else {
                &mut self.soft_spread
            }) = list;
        }
    }
}

/// The first taint of `n` with an effect `which` accepts that the tolerations do not tolerate.
fn untolerated<'a>(
    tolerations: &[Toleration],
    n: &'a NodeInfo,
    which: impl Fn(&str) -> bool,
) -> Option<&'a Taint> {
    n.taints()
        .iter()
        .find(|t| which(&t.effect) && !tolerated(tolerations, t))
}

// ---- Filters, in upstream's order ----------------------------------------------------------

/// NodeUnschedulable: a cordoned node takes only pods that tolerate its taint.
pub fn node_unschedulable(st: &PodState, n: &NodeInfo) -> Status {
    if !n.unschedulable() {
        return Ok(());
    }
    let taint = Taint {
        key: "node.kubernetes.io/unschedulable".into(),
        effect: "NoSchedule".into(),
        ..Default::default()
    };
    if tolerated(&st.tolerations, &taint) {
        return Ok(());
    }
    Err(Failure::new(
        "NodeUnschedulable",
        Code::UnschedulableAndUnresolvable,
        ERR_UNSCHEDULABLE,
    ))
}

/// NodeName: a pod naming a node fits only there.
pub fn node_name(st: &PodState, n: &NodeInfo) -> Status {
    match &st.node_name {
        Some(want) if *want != n.name => Err(Failure::new(
            "NodeName",
            Code::UnschedulableAndUnresolvable,
            ERR_NODE_NAME,
        )),
        _ => Ok(()),
    }
}

/// TaintToleration: every NoSchedule and NoExecute taint must be tolerated.
pub fn taint_toleration(st: &PodState, n: &NodeInfo) -> Status {
    match untolerated(&st.tolerations, n, |e| {
        e == "NoSchedule" || e == "NoExecute"
    }) {
        None => Ok(()),
        Some(t) => Err(Failure::new(
            "TaintToleration",
            Code::UnschedulableAndUnresolvable,
            format!(
                "node(s) had untolerated taint {{{}: {}}}",
                t.key,
                t.value.as_deref().unwrap_or("")
            ),
        )),
    }
}

/// NodeAffinity: the nodeSelector and the required node affinity (any term) must match.
pub fn node_affinity(st: &PodState, n: &NodeInfo) -> Status {
    let labels = n.labels();
    let fail = || {
        Err(Failure::new(
            "NodeAffinity",
            Code::UnschedulableAndUnresolvable,
            ERR_NODE_AFFINITY,
        ))
    };
    if let Some(sel) = &st.node_selector {
        if !sel
            .iter()
            .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
        {
            return fail();
        }
    }
    if let Some(terms) = &st.required_node_terms {
        if !terms.iter().any(|t| node_term_matches(t, &n.name, labels)) {
            return fail();
        }
    }
    Ok(())
}

/// NodePorts: the pod's host ports must be free on the node.
pub fn node_ports(st: &PodState, n: &NodeInfo) -> Status {
    if st
        .ports
        .iter()
        .any(|p| n.ports.iter().any(|q| p.conflicts(q)))
    {
        return Err(Failure::new("NodePorts", Code::Unschedulable, ERR_PORTS));
    }
    Ok(())
}

/// NodeResourcesFit: the pod count and every requested resource must fit in what the node
/// can allocate minus what its pods already request.
pub fn node_resources_fit(st: &PodState, n: &NodeInfo) -> Status {
    let mut reasons = Vec::new();
    let (a, u, r) = (&n.allocatable, &n.requested, &st.request.req);
    if u.pods + 1 > a.pods {
        reasons.push("Too many pods".to_string());
    }
    if !r.is_zero() {
        if r.milli_cpu > 0 && r.milli_cpu > a.milli_cpu - u.milli_cpu {
            reasons.push("Insufficient cpu".into());
        }
        if r.memory > 0 && r.memory > a.memory - u.memory {
            reasons.push("Insufficient memory".into());
        }
        if r.ephemeral_storage > 0
            && r.ephemeral_storage > a.ephemeral_storage - u.ephemeral_storage
        {
            reasons.push("Insufficient ephemeral-storage".into());
        }
        for (name, want) in &r.scalar {
            if *want > 0 && *want > a.scalar(name) - u.scalar(name) {
                reasons.push(format!("Insufficient {name}"));
            }
        }
    }
    if reasons.is_empty() {
        return Ok(());
    }
    Err(Failure {
        plugin: "NodeResourcesFit",
        code: Code::Unschedulable,
        reasons,
    })
}

/// PodTopologySpread (DoNotSchedule constraints): the node must have every constraint's key
/// and placing the pod there must keep the skew within maxSkew.
pub fn pod_topology_spread(st: &PodState, n: &NodeInfo) -> Status {
    for s in &st.hard_spread {
        if n.label(&s.topology_key).is_none() {
            return Err(Failure::new(
                "PodTopologySpread",
                Code::UnschedulableAndUnresolvable,
                ERR_SPREAD_LABEL,
            ));
        }
    }
    for s in &st.hard_spread {
        let v = n.label(&s.topology_key).unwrap_or_default();
        let count = s.counts.get(v).copied().unwrap_or(0);
        if count + s.self_match - s.min_match() > s.max_skew {
            return Err(Failure::new(
                "PodTopologySpread",
                Code::Unschedulable,
                ERR_SPREAD,
            ));
        }
    }
    Ok(())
}

/// InterPodAffinity: existing pods' required anti-affinity, then the pod's required affinity
/// and anti-affinity, by topology domain.
pub fn inter_pod_affinity(st: &PodState, n: &NodeInfo) -> Status {
    let count = |c: &DomainCounts, key: &str| {
        n.label(key)
            .and_then(|v| c.get(&(key.to_string(), v.to_string())))
            .copied()
            .unwrap_or(0)
    };
    if !st.existing_anti.is_empty() {
        let hit = n.labels().into_iter().flatten().any(|(k, v)| {
            st.existing_anti
                .get(&(k.clone(), v.clone()))
                .is_some_and(|c| *c > 0)
        });
        if hit {
            return Err(Failure::new(
                "InterPodAffinity",
                Code::Unschedulable,
                ERR_EXISTING_ANTI_AFFINITY,
            ));
        }
    }
    for (i, t) in st.affinity.required_anti.iter().enumerate() {
        if count(&st.anti_counts[i], &t.topology_key) > 0 {
            return Err(Failure::new(
                "InterPodAffinity",
                Code::Unschedulable,
                ERR_ANTI_AFFINITY,
            ));
        }
    }
    let required = &st.affinity.required;
    if !required.is_empty() {
        // Every topology key on the node, and a matching pod in each term's domain; or, when
        // no pod matches the terms anywhere, the pod itself (the first of a group).
        let ok = required.iter().all(|t| n.label(&t.topology_key).is_some())
            && (required
                .iter()
                .enumerate()
                .all(|(i, t)| count(&st.affinity_counts[i], &t.topology_key) > 0)
                || (st.affinity_self_match && st.affinity_counts.iter().all(|c| c.is_empty())));
        if !ok {
            return Err(Failure::new(
                "InterPodAffinity",
                Code::UnschedulableAndUnresolvable,
                ERR_AFFINITY,
            ));
        }
    }
    Ok(())
}

/// Every filter of the default profile in upstream's order; the first failure.
pub fn filter(st: &PodState, n: &NodeInfo) -> Status {
    node_unschedulable(st, n)?;
    node_name(st, n)?;
    taint_toleration(st, n)?;
    node_affinity(st, n)?;
    node_ports(st, n)?;
    node_resources_fit(st, n)?;
    pod_topology_spread(st, n)?;
    inter_pod_affinity(st, n)
}

// ---- Scores ----------------------------------------------------------------------------------

/// NodeResourcesFit with the LeastAllocated strategy (cpu and memory, weight 1 each): the share
/// of the node left free once the pod is on it.
pub fn least_allocated(st: &PodState, n: &NodeInfo) -> i64 {
    let one = |req: i64, cap: i64| {
        if cap == 0 || req > cap {
            0
        } else {
            (cap - req) * MAX_NODE_SCORE / cap
        }
    };
    let cpu = one(
        n.non_zero_cpu + st.request.non_zero_cpu,
        n.allocatable.milli_cpu,
    );
    let mem = one(
        n.non_zero_mem + st.request.non_zero_mem,
        n.allocatable.memory,
    );
    (cpu + mem) / 2
}

/// NodeResourcesBalancedAllocation: nodes whose cpu and memory would be used in like shares.
pub fn balanced_allocation(st: &PodState, n: &NodeInfo) -> i64 {
    let frac = |req: i64, cap: i64| {
        if cap == 0 {
            None
        } else {
            Some((req as f64 / cap as f64).min(1.0))
        }
    };
    let cpu = frac(
        n.requested.milli_cpu + st.request.req.milli_cpu,
        n.allocatable.milli_cpu,
    );
    let mem = frac(
        n.requested.memory + st.request.req.memory,
        n.allocatable.memory,
    );
    let std = match (cpu, mem) {
        (Some(c), Some(m)) => (c - m).abs() / 2.0,
        _ => 0.0,
    };
    ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
}

/// NodeAffinity: the sum of the weights of the preferred terms the node matches.
pub fn node_affinity_score(st: &PodState, n: &NodeInfo) -> i64 {
    st.preferred_node_terms
        .iter()
        .filter(|(_, t)| node_term_matches(t, &n.name, n.labels()))
        .map(|(w, _)| *w)
        .sum()
}

/// TaintToleration: how many PreferNoSchedule taints the pod does not tolerate.
pub fn taint_toleration_score(st: &PodState, n: &NodeInfo) -> i64 {
    if !n.taints().iter().any(|t| t.effect == "PreferNoSchedule") {
        return 0;
    }
    let prefer: Vec<Toleration> = st
        .tolerations
        .iter()
        .filter(|t| {
            t.effect
                .as_deref()
                .is_none_or(|e| e.is_empty() || e == "PreferNoSchedule")
        })
        .cloned()
        .collect();
    n.taints()
        .iter()
        .filter(|t| t.effect == "PreferNoSchedule" && !tolerated(&prefer, t))
        .count() as i64
}

/// InterPodAffinity: the affinity weights of the node's domains.
pub fn inter_pod_affinity_score(st: &PodState, n: &NodeInfo) -> i64 {
    if st.affinity_scores.is_empty() {
        return 0;
    }
    st.affinity_scores
        .iter()
        .filter(|((k, v), _)| n.label(k) == Some(v.as_str()))
        .map(|(_, s)| *s)
        .sum()
}

/// PodTopologySpread (ScheduleAnyway constraints): matching pods in the node's domains,
/// weighted by the number of domains; None when the node lacks a constraint's key.
pub fn pod_topology_spread_score(st: &PodState, n: &NodeInfo) -> Option<i64> {
    let mut score = 0.0;
    for s in &st.soft_spread {
        let v = n.label(&s.topology_key)?;
        let weight = ((s.counts.len() + 2) as f64).ln();
        let count = s.counts.get(v).copied().unwrap_or(0);
        score += count as f64 * weight + (s.max_skew - 1) as f64;
    }
    Some(score.round() as i64)
}

const MB: i64 = 1024 * 1024;
const IMAGE_MIN: i64 = 23 * MB;
const IMAGE_MAX_PER_CONTAINER: i64 = 1000 * MB;

/// ImageLocality: the sizes of the pod's images already on the node, scaled by how widely each
/// image is spread (so that pods do not all pile on the one node that has it).
pub fn image_locality(
    st: &PodState,
    n: &NodeInfo,
    nodes_with: &dyn Fn(&str) -> usize,
    total: usize,
) -> i64 {
    if n.images.is_empty() || st.images.is_empty() || total == 0 {
        return 0;
    }
    let mut sum: i64 = 0;
    for img in &st.images {
        if let Some(size) = n.images.get(img) {
            sum += (*size as f64 * nodes_with(img) as f64 / total as f64) as i64;
        }
    }
    let max = IMAGE_MAX_PER_CONTAINER * st.images.len() as i64;
    let sum = sum.clamp(IMAGE_MIN, max);
    MAX_NODE_SCORE * (sum - IMAGE_MIN) / (max - IMAGE_MIN)
}

/// Scales raw scores to 0..=100 by the largest (upstream's DefaultNormalizeScore), reversed
/// when fewer is better.
pub fn default_normalize(scores: &mut [i64], reverse: bool) {
    let max = scores.iter().copied().max().unwrap_or(0);
    if max == 0 {
        if reverse {
            scores.iter_mut().for_each(|s| *s = MAX_NODE_SCORE);
        }
        return;
    }
    for s in scores.iter_mut() {
        *s = MAX_NODE_SCORE * *s / max;
        if reverse {
            *s = MAX_NODE_SCORE - *s;
        }
    }
}

/// InterPodAffinity's normalization: min to 0, max to 100.
pub fn min_max_normalize(scores: &mut [i64]) {
    let max = scores.iter().copied().max().unwrap_or(0);
    let min = scores.iter().copied().min().unwrap_or(0);
    let diff = max - min;
    for s in scores.iter_mut() {
        *s = if diff > 0 {
            MAX_NODE_SCORE * (*s - min) / diff
        } else {
            0
        };
    }
}

/// PodTopologySpread's normalization: fewer matching pods is better; nodes without the keys 0.
pub fn spread_normalize(scores: &mut [Option<i64>]) -> Vec<i64> {
    let present: Vec<i64> = scores.iter().flatten().copied().collect();
    let max = present.iter().copied().max().unwrap_or(0);
    let min = present.iter().copied().min().unwrap_or(0);
    scores
        .iter()
        .map(|s| match s {
            None => 0,
            Some(_) if max == 0 => MAX_NODE_SCORE,
            Some(s) => MAX_NODE_SCORE * (max + min - s) / max,
        })
        .collect()
}

/// Weights of upstream's default profile.
pub mod weights {
    pub const NODE_RESOURCES_FIT: i64 = 1;
    pub const BALANCED_ALLOCATION: i64 = 1;
    pub const IMAGE_LOCALITY: i64 = 1;
    pub const INTER_POD_AFFINITY: i64 = 2;
    pub const NODE_AFFINITY: i64 = 2;
    pub const POD_TOPOLOGY_SPREAD: i64 = 2;
    pub const TAINT_TOLERATION: i64 = 3;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::Cache;
    use serde_json::{from_value, json, Value};

    fn pod(name: &str, labels: Value, spec: Value) -> Arc<Pod> {
        Arc::new(
            from_value(
                json!({"metadata": {"name": name, "namespace": "default", "uid": name,
                "labels": labels}, "spec": spec}),
            )
            .unwrap(),
        )
    }

    fn simple(spec: Value) -> Arc<Pod> {
        let mut spec = spec;
        if spec.get("containers").is_none() {
            spec["containers"] = json!([{"name": "c", "image": "nginx"}]);
        }
        pod("p", json!({}), spec)
    }

    fn node(
        name: &str,
        labels: Value,
        spec: Value,
        alloc: Value,
    ) -> Arc<k8s_openapi::api::core::v1::Node> {
        Arc::new(
            from_value(
                json!({"metadata": {"name": name, "labels": labels}, "spec": spec,
                "status": {"allocatable": alloc}}),
            )
            .unwrap(),
        )
    }

    fn big() -> Value {
        json!({"cpu": "4", "memory": "8Gi", "pods": "110"})
    }

    /// A cluster of the given nodes and pods, and the state of `p` in it.
    fn cluster(nodes: Vec<Arc<k8s_openapi::api::core::v1::Node>>, pods: Vec<Arc<Pod>>) -> Cache {
        let mut c = Cache::default();
        for n in nodes {
            c.apply_node(n);
        }
        for p in pods {
            c.apply_pod(&p);
        }
        c
    }

    fn state(c: &mut Cache, p: Arc<Pod>) -> PodState {
        let live = c.live().to_vec();
        PodState::new(p, c.nodes(), &live, &|_| None)
    }

    fn on(p: &Arc<Pod>, node: &str) -> Arc<Pod> {
        let mut p = (**p).clone();
        p.spec.as_mut().unwrap().node_name = Some(node.into());
        Arc::new(p)
    }

    #[test]
    fn node_resources_fit_counts_requests_and_pods() {
        let n = node(
            "n",
            json!({}),
            json!({}),
            json!({"cpu": "1", "memory": "1Gi", "pods": "2"}),
        );
        let used = on(
            &simple(
                json!({"containers": [{"name": "c", "resources": {"requests": {"cpu": "600m"}}}]}),
            ),
            "n",
        );
        let mut c = cluster(vec![n], vec![used]);
        let ok = state(
            &mut c,
            simple(json!({"containers": [{"name": "c",
            "resources": {"requests": {"cpu": "400m", "memory": "1Gi"}}}]})),
        );
        assert_eq!(node_resources_fit(&ok, c.node("n").unwrap()), Ok(()));
        let too_big = state(
            &mut c,
            simple(json!({"containers": [{"name": "c",
            "resources": {"requests": {"cpu": "500m", "memory": "2Gi", "example.com/gpu": "1"}}}]})),
        );
        let f = node_resources_fit(&too_big, c.node("n").unwrap()).unwrap_err();
        assert_eq!(
            f.reasons,
            [
                "Insufficient cpu",
                "Insufficient memory",
                "Insufficient example.com/gpu"
            ]
        );
        // Init containers count as upstream's effective request.
        let init = state(
            &mut c,
            simple(json!({"containers": [{"name": "c"}],
            "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "500m"}}}]})),
        );
        assert!(node_resources_fit(&init, c.node("n").unwrap()).is_err());
        let p2 = on(
            &pod("q", json!({}), json!({"containers": [{"name": "c"}]})),
            "n",
        );
        c.apply_pod(&p2);
        let any = state(&mut c, simple(json!({})));
        assert_eq!(
            node_resources_fit(&any, c.node("n").unwrap())
                .unwrap_err()
                .reasons,
            ["Too many pods"]
        );
    }

    #[test]
    fn node_name_filter() {
        let mut c = cluster(
            vec![
                node("a", json!({}), json!({}), big()),
                node("b", json!({}), json!({}), big()),
            ],
            vec![],
        );
        let st = state(&mut c, simple(json!({"nodeName": "b"})));
        assert!(node_name(&st, c.node("a").unwrap()).is_err());
        assert!(node_name(&st, c.node("b").unwrap()).is_ok());
    }

    #[test]
    fn node_unschedulable_unless_tolerated() {
        let mut c = cluster(
            vec![node("a", json!({}), json!({"unschedulable": true}), big())],
            vec![],
        );
        let st = state(&mut c, simple(json!({})));
        assert_eq!(
            node_unschedulable(&st, c.node("a").unwrap())
                .unwrap_err()
                .reasons,
            [ERR_UNSCHEDULABLE]
        );
        let st = state(
            &mut c,
            simple(json!({"tolerations": [
            {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}]})),
        );
        assert!(node_unschedulable(&st, c.node("a").unwrap()).is_ok());
    }

    #[test]
    fn node_affinity_selector_terms_and_fields() {
        let mut c = cluster(
            vec![
                node("a", json!({"disk": "ssd", "zone": "z1"}), json!({}), big()),
                node("b", json!({"disk": "hdd", "zone": "z2"}), json!({}), big()),
            ],
            vec![],
        );
        let st = state(&mut c, simple(json!({"nodeSelector": {"disk": "ssd"}})));
        assert!(node_affinity(&st, c.node("a").unwrap()).is_ok());
        assert_eq!(
            node_affinity(&st, c.node("b").unwrap())
                .unwrap_err()
                .reasons,
            [ERR_NODE_AFFINITY]
        );
        let st = state(
            &mut c,
            simple(json!({"affinity": {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z9"]}]},
                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["b"]}]}]}}}})),
        );
        assert!(node_affinity(&st, c.node("a").unwrap()).is_err());
        assert!(node_affinity(&st, c.node("b").unwrap()).is_ok());
    }

    #[test]
    fn taint_toleration_filter_and_score() {
        let mut c = cluster(
            vec![
                node(
                    "a",
                    json!({}),
                    json!({"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}),
                    big(),
                ),
                node(
                    "b",
                    json!({}),
                    json!({"taints": [{"key": "x", "effect": "NoExecute"}]}),
                    big(),
                ),
                node(
                    "c",
                    json!({}),
                    json!({"taints": [{"key": "soft", "effect": "PreferNoSchedule"}]}),
                    big(),
                ),
            ],
            vec![],
        );
        let st = state(&mut c, simple(json!({})));
        assert_eq!(
            taint_toleration(&st, c.node("a").unwrap())
                .unwrap_err()
                .reasons,
            ["node(s) had untolerated taint {dedicated: gpu}"]
        );
        assert_eq!(
            taint_toleration(&st, c.node("b").unwrap())
                .unwrap_err()
                .reasons,
            ["node(s) had untolerated taint {x: }"]
        );
        assert!(taint_toleration(&st, c.node("c").unwrap()).is_ok());
        assert_eq!(taint_toleration_score(&st, c.node("c").unwrap()), 1);
        let st = state(
            &mut c,
            simple(
                json!({"tolerations": [{"key": "dedicated", "operator": "Equal", "value": "gpu"},
            {"key": "soft", "operator": "Exists", "effect": "PreferNoSchedule"}]}),
            ),
        );
        assert!(taint_toleration(&st, c.node("a").unwrap()).is_ok());
        assert_eq!(taint_toleration_score(&st, c.node("c").unwrap()), 0);
        let mut s = vec![0, 1, 2];
        default_normalize(&mut s, true);
        assert_eq!(s, [100, 50, 0]);
    }

    #[test]
    fn node_ports_filter() {
        let web = |name: &str| {
            pod(
                name,
                json!({}),
                json!({"containers": [{"name": "c",
            "ports": [{"containerPort": 80, "hostPort": 8080}]}]}),
            )
        };
        let mut c = cluster(
            vec![
                node("a", json!({}), json!({}), big()),
                node("b", json!({}), json!({}), big()),
            ],
            vec![on(&web("old"), "a")],
        );
        let st = state(&mut c, web("new"));
        assert_eq!(
            node_ports(&st, c.node("a").unwrap()).unwrap_err().reasons,
            [ERR_PORTS]
        );
        assert!(node_ports(&st, c.node("b").unwrap()).is_ok());
    }

    #[test]
    fn inter_pod_affinity_filter() {
        let zone = |n: &str, z: &str| {
            node(
                n,
                json!({"zone": z, "kubernetes.io/hostname": n}),
                json!({}),
                big(),
            )
        };
        let db = on(
            &pod(
                "db",
                json!({"app": "db"}),
                json!({"containers": [{"name": "c"}]}),
            ),
            "a",
        );
        let loner = on(
            &pod(
                "loner",
                json!({"app": "loner"}),
                json!({"containers": [{"name": "c"}],
                "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                    {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "zone"}]}}}),
            ),
            "c",
        );
        let mut c = cluster(
            vec![zone("a", "z1"), zone("b", "z2"), zone("c", "z3")],
            vec![db, loner],
        );
        // Affinity to db: only zone z1.
        let near = state(
            &mut c,
            pod(
                "w",
                json!({}),
                json!({"containers": [{"name": "c"}],
            "affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "zone"}]}}}),
            ),
        );
        assert!(inter_pod_affinity(&near, c.node("a").unwrap()).is_ok());
        assert_eq!(
            inter_pod_affinity(&near, c.node("b").unwrap())
                .unwrap_err()
                .reasons,
            [ERR_AFFINITY]
        );
        // Anti-affinity to db: anywhere but z1.
        let far = state(
            &mut c,
            pod(
                "w",
                json!({}),
                json!({"containers": [{"name": "c"}],
            "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "zone"}]}}}),
            ),
        );
        assert_eq!(
            inter_pod_affinity(&far, c.node("a").unwrap())
                .unwrap_err()
                .reasons,
            [ERR_ANTI_AFFINITY]
        );
        assert!(inter_pod_affinity(&far, c.node("b").unwrap()).is_ok());
        // The existing loner repels app=web from z3.
        let web = state(
            &mut c,
            pod(
                "w",
                json!({"app": "web"}),
                json!({"containers": [{"name": "c"}]}),
            ),
        );
        assert_eq!(
            inter_pod_affinity(&web, c.node("c").unwrap())
                .unwrap_err()
                .reasons,
            [ERR_EXISTING_ANTI_AFFINITY]
        );
        assert!(inter_pod_affinity(&web, c.node("b").unwrap()).is_ok());
        // The first pod of a self-affine group may go anywhere.
        let first = state(
            &mut c,
            pod(
                "g",
                json!({"grp": "x"}),
                json!({"containers": [{"name": "c"}],
            "affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {"grp": "x"}}, "topologyKey": "zone"}]}}}),
            ),
        );
        assert!(inter_pod_affinity(&first, c.node("b").unwrap()).is_ok());
    }

    #[test]
    fn inter_pod_affinity_preferred_score() {
        let zone = |n: &str, z: &str| node(n, json!({"zone": z}), json!({}), big());
        let db = on(
            &pod(
                "db",
                json!({"app": "db"}),
                json!({"containers": [{"name": "c"}]}),
            ),
            "a",
        );
        let mut c = cluster(vec![zone("a", "z1"), zone("b", "z2")], vec![db]);
        let st = state(
            &mut c,
            pod(
                "w",
                json!({}),
                json!({"containers": [{"name": "c"}],
            "affinity": {"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 10, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "zone"}}]}}}),
            ),
        );
        let mut s = vec![
            inter_pod_affinity_score(&st, c.node("a").unwrap()),
            inter_pod_affinity_score(&st, c.node("b").unwrap()),
        ];
        assert_eq!(s, [10, 0]);
        min_max_normalize(&mut s);
        assert_eq!(s, [100, 0]);
    }

    #[test]
    fn pod_topology_spread_filter_and_score() {
        let zone = |n: &str, z: &str| node(n, json!({"zone": z}), json!({}), big());
        let app = |name: &str, n: &str| {
            on(
                &pod(
                    name,
                    json!({"app": "web"}),
                    json!({"containers": [{"name": "c"}]}),
                ),
                n,
            )
        };
        let mut c = cluster(
            vec![
                zone("a", "z1"),
                zone("b", "z2"),
                node("nolabel", json!({}), json!({}), big()),
            ],
            vec![app("w1", "a"), app("w2", "a")],
        );
        let spread = |when: &str| {
            pod(
                "w3",
                json!({"app": "web"}),
                json!({"containers": [{"name": "c"}],
            "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": when,
                "labelSelector": {"matchLabels": {"app": "web"}}}]}),
            )
        };
        let st = state(&mut c, spread("DoNotSchedule"));
        assert_eq!(
            pod_topology_spread(&st, c.node("a").unwrap())
                .unwrap_err()
                .reasons,
            [ERR_SPREAD]
        );
        assert!(pod_topology_spread(&st, c.node("b").unwrap()).is_ok());
        assert_eq!(
            pod_topology_spread(&st, c.node("nolabel").unwrap())
                .unwrap_err()
                .reasons,
            [ERR_SPREAD_LABEL]
        );
        let st = state(&mut c, spread("ScheduleAnyway"));
        assert!(st.hard_spread.is_empty());
        let mut raw: Vec<Option<i64>> = ["a", "b", "nolabel"]
            .iter()
            .map(|n| pod_topology_spread_score(&st, c.node(n).unwrap()))
            .collect();
        assert_eq!(raw[2], None);
        let s = spread_normalize(&mut raw);
        assert!(s[1] > s[0], "{s:?}");
        assert_eq!(s[2], 0);
    }

    #[test]
    fn resource_scores() {
        let mut c = cluster(
            vec![
                node(
                    "empty",
                    json!({}),
                    json!({}),
                    json!({"cpu": "4", "memory": "4Gi", "pods": "10"}),
                ),
                node(
                    "busy",
                    json!({}),
                    json!({}),
                    json!({"cpu": "4", "memory": "4Gi", "pods": "10"}),
                ),
            ],
            vec![on(
                &simple(
                    json!({"containers": [{"name": "c", "resources": {"requests": {"cpu": "3", "memory": "1Gi"}}}]}),
                ),
                "busy",
            )],
        );
        let st = state(
            &mut c,
            simple(
                json!({"containers": [{"name": "c", "resources": {"requests": {"cpu": "1", "memory": "1Gi"}}}]}),
            ),
        );
        let (e, b) = (c.node("empty").unwrap(), c.node("busy").unwrap());
        // empty: cpu (4-1)/4 = 75, mem (4-1)/4 = 75; busy: cpu 0, mem 50.
        assert_eq!(least_allocated(&st, e), 75);
        assert_eq!(least_allocated(&st, b), 25);
        // empty: 0.25 and 0.25: balanced; busy: 1.0 and 0.5.
        assert_eq!(balanced_allocation(&st, e), 100);
        assert_eq!(balanced_allocation(&st, b), 75);
    }

    #[test]
    fn node_affinity_preferred_score() {
        let mut c = cluster(
            vec![
                node("a", json!({"disk": "ssd"}), json!({}), big()),
                node("b", json!({}), json!({}), big()),
            ],
            vec![],
        );
        let st = state(
            &mut c,
            simple(json!({"affinity": {"nodeAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 5, "preference":
                {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}}]}}})),
        );
        let mut s = vec![
            node_affinity_score(&st, c.node("a").unwrap()),
            node_affinity_score(&st, c.node("b").unwrap()),
        ];
        assert_eq!(s, [5, 0]);
        default_normalize(&mut s, false);
        assert_eq!(s, [100, 0]);
    }

    #[test]
    fn image_locality_score() {
        let with_image: Arc<k8s_openapi::api::core::v1::Node> = Arc::new(
            from_value(
                json!({"metadata": {"name": "a"}, "status": {"allocatable": big(),
                "images": [{"names": ["docker.io/library/nginx:latest"], "sizeBytes": 500 * MB}]}}),
            )
            .unwrap(),
        );
        let mut c = cluster(
            vec![with_image, node("b", json!({}), json!({}), big())],
            vec![],
        );
        let st = state(&mut c, simple(json!({})));
        let a = image_locality(&st, c.node("a").unwrap(), &|_| 1, 2);
        let b = image_locality(&st, c.node("b").unwrap(), &|_| 1, 2);
        // 500MB spread over half the nodes: 250MB of 1000MB, above the 23MB floor.
        assert_eq!(a, 100 * (250 * MB - IMAGE_MIN) / (1000 * MB - IMAGE_MIN));
        assert_eq!(b, 0);
    }
}
