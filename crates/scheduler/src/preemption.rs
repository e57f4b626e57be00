//! Preemption, as upstream's DefaultPreemption PostFilter: when a pod fits nowhere, find the
//! nodes where removing pods of lower priority would let it fit, pick the one whose victims
//! matter least, and nominate the pod there while the victims are deleted.
//!
//! Pure logic over the scheduler's [`Cache`]: [`preempt`] decides; the scheduler carries the
//! decision out (the victims' `DisruptionTarget` condition, their graceful deletion, the
//! `Preempted` events, the preemptor's `nominatedNodeName`).
//!
//! Removing a victim is simulated on a copy of its node, so everything the filters read from
//! the node (requests, pod count, host ports) sees it gone, and on a copy of the per-pod state
//! worked out before filtering (inter-pod affinity and spreading counts over the cluster, as
//! upstream's RemovePod/AddPod extensions do), so a node that only removing a victim's
//! (anti-)affinity or its share of a spread would free is a candidate too.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::HashSet;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::cache::{priority, uid, Cache, NodeInfo, PodInfo};
use crate::plugins::{self, Code, Failure, Labels, PodState};
use crate::selectors::label_selector_matches;

/// Upstream's reason when a node has no pod of lower priority.
pub const NO_VICTIMS: &str = "No preemption victims found for incoming pod";
/// Upstream's reason for a node where removing pods cannot help.
pub const NOT_HELPFUL: &str = "Preemption is not helpful for scheduling";
pub const NEVER: &str = "not eligible due to preemptionPolicy=Never.";
pub const TERMINATING: &str = "not eligible due to a terminating pod on the nominated node.";

/// What preemption needs of a PodDisruptionBudget.
#[derive(Clone, Debug)]
pub struct Pdb {
    pub namespace: String,
    pub selector: Option<LabelSelector>,
    pub disruptions_allowed: i32,
    /// Pods the API server already counted as disrupted (evicted, not yet gone).
    pub disrupted: HashSet<String>,
}

impl Pdb {
    pub fn of(p: &PodDisruptionBudget) -> Pdb {
        let status = p.status.as_ref();
        Pdb {
            namespace: p.metadata.namespace.clone().unwrap_or_default(),
            selector: p.spec.as_ref().and_then(|s| s.selector.clone()),
            disruptions_allowed: status.map(|s| s.disruptions_allowed).unwrap_or(0),
            disrupted: status
                .and_then(|s| s.disrupted_pods.as_ref())
                .map(|d| d.keys().cloned().collect())
                .unwrap_or_default(),
        }
    }

    /// Whether the budget covers the pod (an empty or missing selector covers nothing).
    fn covers(&self, pod: &Pod) -> bool {
        let Some(sel) = self.selector.as_ref() else {
            return false;
        };
        let empty = sel.match_labels.as_ref().is_none_or(|m| m.is_empty())
            && sel.match_expressions.as_ref().is_none_or(|e| e.is_empty());
        !empty
            && pod.metadata.namespace.as_deref().unwrap_or("") == self.namespace
            && label_selector_matches(sel, pod.metadata.labels.as_ref())
    }
}

/// The pods to remove from a node, most important first, and how many of them break a budget.
#[derive(Clone, Debug)]
pub struct Victims {
    pub pods: Vec<Arc<PodInfo>>,
    pub pdb_violations: usize,
}

/// A node where the pod fits once its victims are gone.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub node: String,
    pub victims: Victims,
}

/// What preemption decided for a pod that fits nowhere.
#[derive(Debug)]
pub enum Outcome {
    /// The pod may not preempt (now): upstream's message; its nomination stays.
    NotEligible(String),
    /// No node can be freed: upstream's message (`0/N nodes are available: …`); any
    /// nomination of the pod is cleared.
    NoCandidate(String),
    /// Remove these victims and nominate the pod to their node.
    Nominate(Candidate),
}

/// When a pod started (its start time, or now if it has not started: assumed, just bound).
fn start_time(pod: &Pod, now: i128) -> i128 {
    pod.status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .map(|t| t.0.as_nanosecond())
        .unwrap_or(now)
}

fn now_nanos() -> i128 {
    k8s_openapi::jiff::Timestamp::now().as_nanosecond()
}

/// Upstream's MoreImportantPod as an ordering: higher priority first, then the one running
/// longer.
pub fn more_important(a: &Pod, b: &Pod, now: i128) -> Ordering {
    priority(b)
        .cmp(&priority(a))
        .then_with(|| start_time(a, now).cmp(&start_time(b, now)))
}

/// Splits pods (kept in order) into those whose removal would break a budget and the others,
/// spending each budget's allowed disruptions in order.
pub fn split_by_pdb(
    pods: Vec<Arc<PodInfo>>,
    pdbs: &[Pdb],
) -> (Vec<Arc<PodInfo>>, Vec<Arc<PodInfo>>) {
    let mut allowed: Vec<i32> = pdbs.iter().map(|p| p.disruptions_allowed).collect();
    let (mut violating, mut fine) = (Vec::new(), Vec::new());
    for p in pods {
        let mut breaks = false;
        if p.labels().is_some_and(|l| !l.is_empty()) {
            let name = p.pod.metadata.name.as_deref().unwrap_or("");
            for (i, pdb) in pdbs.iter().enumerate() {
                if !pdb.covers(&p.pod) || pdb.disrupted.contains(name) {
                    continue;
                }
                allowed[i] -= 1;
                if allowed[i] < 0 {
                    breaks = true;
                }
            }
        }
        if breaks {
            violating.push(p);
        } else {
            fine.push(p);
        }
    }
    (violating, fine)
}

/// Upstream's SelectVictimsOnNode: remove every pod of lower priority than the preemptor,
/// check that it fits (with the pods nominated to the node of no lower priority counted), then
/// put back as many as still let it fit, budget-breaking ones first, most important first.
pub fn select_victims(
    st: &PodState,
    node: &NodeInfo,
    nominated: &[Arc<PodInfo>],
    pdbs: &[Pdb],
    ns_labels: &dyn Fn(&str) -> Option<Labels>,
) -> Result<Victims, Failure> {
    let prio = priority(&st.pod);
    let mut sim = node.clone();
    let mut st = Cow::Borrowed(st);
    // Moves a pod on or off the simulated node, in the node and in the pod's state.
    let set = |sim: &mut NodeInfo, st: &mut Cow<PodState>, p: &Arc<PodInfo>, on: bool| {
        if st.counts_pods() {
            st.to_mut()
                .update_with(node, p, if on { 1 } else { -1 }, ns_labels);
        }
        if on {
            sim.add_pod(p.clone());
        } else {
            sim.remove_pod(p.uid());
        }
    };
    let mut potential: Vec<Arc<PodInfo>> = node
        .pods
        .values()
        .filter(|p| p.priority() < prio)
        .cloned()
        .collect();
    if potential.is_empty() {
        return Err(Failure {
            plugin: "DefaultPreemption",
            code: Code::UnschedulableAndUnresolvable,
            reasons: vec![NO_VICTIMS.into()],
        });
    }
    for p in &potential {
        set(&mut sim, &mut st, p, false);
    }
    let me = uid(&st.pod).to_string();
    for p in nominated {
        if p.uid() != me && p.priority() >= prio {
            set(&mut sim, &mut st, p, true);
        }
    }
    plugins::filter(&st, &sim)?;
    let now = now_nanos();
    potential.sort_by(|a, b| {
        more_important(&a.pod, &b.pod, now)
            .then_with(|| a.pod.metadata.name.cmp(&b.pod.metadata.name))
    });
    let (violating, fine) = split_by_pdb(potential, pdbs);
    let mixed = !violating.is_empty() && !fine.is_empty();
    let mut victims = Vec::new();
    let mut pdb_violations = 0;
    for (breaks, p) in violating
        .into_iter()
        .map(|p| (true, p))
        .chain(fine.into_iter().map(|p| (false, p)))
    {
        set(&mut sim, &mut st, &p, true);
        if plugins::filter(&st, &sim).is_err() {
            set(&mut sim, &mut st, &p, false);
            pdb_violations += usize::from(breaks);
            victims.push(p);
        }
    }
    if mixed {
        victims.sort_by(|a, b| more_important(&a.pod, &b.pod, now));
    }
    Ok(Victims {
        pods: victims,
        pdb_violations,
    })
}

/// Upstream's pickOneNodeForPreemption: fewest budget violations, then the lowest priority of
/// the most important victim, the smallest sum of priorities, the fewest victims, the latest
/// start of the most important victims; then the first.
pub fn pick_one(cands: &[Candidate]) -> Option<usize> {
    if cands.is_empty() {
        return None;
    }
    let now = now_nanos();
    let scores: [&dyn Fn(&Victims) -> i128; 5] = [
        &|v| -(v.pdb_violations as i128),
        &|v| -i128::from(v.pods.first().map(|p| p.priority()).unwrap_or(i32::MIN)),
        &|v| {
            -v.pods
                .iter()
                .map(|p| i128::from(p.priority()) + i128::from(i32::MAX) + 1)
                .sum::<i128>()
        },
        &|v| -(v.pods.len() as i128),
        &|v| {
            // The earliest start among the victims of the highest priority: later is better.
            let top = v.pods.first().map(|p| p.priority());
            v.pods
                .iter()
                .filter(|p| Some(p.priority()) == top)
                .map(|p| start_time(&p.pod, now))
                .min()
                .unwrap_or(i128::MIN)
        },
    ];
    let mut left: Vec<usize> = (0..cands.len()).collect();
    for f in scores {
        let best = left.iter().map(|&i| f(&cands[i].victims)).max()?;
        left.retain(|&i| f(&cands[i].victims) == best);
        if left.len() == 1 {
            break;
        }
    }
    left.first().copied()
}

/// Whether a pod is being deleted because the scheduler preempted it.
fn terminating_by_preemption(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "DisruptionTarget"))
            .is_some_and(|c| {
                c.status == "True" && c.reason.as_deref() == Some("PreemptionByScheduler")
            })
}

/// How many nodes to dry-run at least (upstream's defaults: 10 %, at least 100).
pub fn candidates_to_find(potential: usize) -> usize {
    (potential / 10).max(100).min(potential)
}

/// Upstream's DefaultPreemption PostFilter for a pod that fit nowhere: `failures` are the
/// filters' verdicts per node index, `nominated` where the pod is nominated now, `offset`
/// where the dry run starts among the nodes that may be freed.
pub fn preempt(
    cache: &Cache,
    st: &PodState,
    failures: &[(usize, Failure)],
    pdbs: &[Pdb],
    nominated: Option<&str>,
    offset: usize,
    ns_labels: &dyn Fn(&str) -> Option<Labels>,
) -> Outcome {
    let pod = &st.pod;
    if pod
        .spec
        .as_ref()
        .and_then(|s| s.preemption_policy.as_deref())
        == Some("Never")
    {
        return Outcome::NotEligible(NEVER.into());
    }
    let nodes = cache.nodes();
    if let Some(nom) = nominated {
        let unresolvable = failures
            .iter()
            .any(|(i, f)| nodes[*i].name == nom && f.code == Code::UnschedulableAndUnresolvable);
        if !unresolvable {
            if let Some(n) = cache.node(nom) {
                let prio = priority(pod);
                if n.pods
                    .values()
                    .any(|p| p.priority() < prio && terminating_by_preemption(&p.pod))
                {
                    return Outcome::NotEligible(TERMINATING.into());
                }
            }
        }
    }
    let all = cache.live_nodes().len();
    let potential: Vec<usize> = failures
        .iter()
        .filter(|(_, f)| f.code == Code::Unschedulable)
        .map(|(i, _)| *i)
        .collect();
    let want = candidates_to_find(potential.len());
    let mut reasons: Vec<String> = Vec::new();
    let mut cands: Vec<Candidate> = Vec::new();
    let mut fine = 0;
    let mut evaluated = 0;
    for k in 0..potential.len() {
        let n = &nodes[potential[(offset + k) % potential.len()]];
        evaluated += 1;
        match select_victims(st, n, cache.nominated_on(&n.name), pdbs, ns_labels) {
            Ok(v) if v.pods.is_empty() => reasons.push(format!(
                "expected at least one victim pod on node {:?}",
                n.name
            )),
            Ok(v) => {
                fine += usize::from(v.pdb_violations == 0);
                cands.push(Candidate {
                    node: n.name.clone(),
                    victims: v,
                });
                if fine > 0 && cands.len() >= want {
                    break;
                }
            }
            Err(f) => reasons.extend(f.reasons),
        }
    }
    match pick_one(&cands) {
        Some(i) => Outcome::Nominate(cands.swap_remove(i)),
        None => {
            reasons.extend(std::iter::repeat_n(
                NOT_HELPFUL.to_string(),
                all.saturating_sub(evaluated),
            ));
            let mut msg = format!("0/{all} nodes are available:");
            let h = crate::histogram(reasons.into_iter());
            if !h.is_empty() {
                msg.push_str(&format!(" {}.", h.join(", ")));
            }
            Outcome::NoCandidate(msg)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, cpu: &str) -> Arc<k8s_openapi::api::core::v1::Node> {
        Arc::new(
            serde_json::from_value(json!({"metadata": {"name": name,
                "labels": {"kubernetes.io/hostname": name}},
                "status": {"allocatable": {"cpu": cpu, "memory": "8Gi", "pods": "110"}}}))
            .unwrap(),
        )
    }

    fn pod(name: &str, node: Option<&str>, cpu: &str, prio: i32, start: Option<&str>) -> Arc<Pod> {
        let mut v = json!({"metadata": {"name": name, "namespace": "default", "uid": name,
                "labels": {"app": name.trim_end_matches(|c: char| c.is_ascii_digit())}},
            "spec": {"priority": prio, "containers": [{"name": "c",
                "resources": {"requests": {"cpu": cpu}}}]}});
        if let Some(n) = node {
            v["spec"]["nodeName"] = json!(n);
        }
        if let Some(s) = start {
            v["status"] = json!({"startTime": s});
        }
        Arc::new(serde_json::from_value(v).unwrap())
    }

    fn pdb(app: &str, allowed: i32) -> Pdb {
        Pdb::of(
            &serde_json::from_value(json!({"metadata": {"name": app, "namespace": "default"},
                "spec": {"selector": {"matchLabels": {"app": app}}},
                "status": {"disruptionsAllowed": allowed, "currentHealthy": 1,
                    "desiredHealthy": 1, "expectedPods": 1}}))
            .unwrap(),
        )
    }

    fn state(cache: &mut Cache, p: &Arc<Pod>) -> PodState {
        cache.refresh();
        PodState::new(p.clone(), cache.nodes(), cache.live_nodes(), &|_| None)
    }

    /// Filters every node, then preempts, as the scheduler does.
    fn run(cache: &mut Cache, p: &Arc<Pod>, pdbs: &[Pdb]) -> Outcome {
        let st = state(cache, p);
        let failures: Vec<(usize, Failure)> = cache
            .live_nodes()
            .iter()
            .filter_map(|&i| {
                plugins::filter(&st, &cache.nodes()[i])
                    .err()
                    .map(|f| (i, f))
            })
            .collect();
        preempt(cache, &st, &failures, pdbs, None, 0, &|_| None)
    }

    fn names(v: &Victims) -> Vec<String> {
        v.pods
            .iter()
            .map(|p| p.pod.metadata.name.clone().unwrap())
            .collect()
    }

    #[test]
    fn the_fewest_and_least_important_victims_are_chosen_and_the_rest_reprieved() {
        let mut c = Cache::default();
        c.apply_node(node("n1", "4"));
        // 4 cpu full: low priority pods of 1 cpu each, one of priority 5.
        c.apply_pod(&pod("a1", Some("n1"), "1", 1, Some("2025-01-01T00:00:00Z")));
        c.apply_pod(&pod("b1", Some("n1"), "1", 1, Some("2025-01-02T00:00:00Z")));
        c.apply_pod(&pod("c1", Some("n1"), "1", 5, None));
        c.apply_pod(&pod("d1", Some("n1"), "1", 100, None));
        let p = pod("hi", None, "2", 50, None);
        let Outcome::Nominate(cand) = run(&mut c, &p, &[]) else {
            panic!("expected a candidate")
        };
        assert_eq!(cand.node, "n1");
        // c1 (priority 5) is reprieved first, then a1 (running longer); b1 must go, and one
        // more: a1 (c1 was put back first and stays).
        assert_eq!(names(&cand.victims), ["a1", "b1"]);
        assert_eq!(cand.victims.pdb_violations, 0);
        // The pod of higher priority (d1) is never a victim: 3 cpu is not enough.
        let big = pod("big", None, "4", 50, None);
        match run(&mut c, &big, &[]) {
            Outcome::NoCandidate(m) => {
                assert_eq!(m, "0/1 nodes are available: 1 Insufficient cpu.")
            }
            o => panic!("unexpected {o:?}"),
        }
        // Nothing of lower priority: upstream's message.
        let low = pod("low", None, "2", 0, None);
        match run(&mut c, &low, &[]) {
            Outcome::NoCandidate(m) => assert_eq!(
                m,
                "0/1 nodes are available: 1 No preemption victims found for incoming pod."
            ),
            o => panic!("unexpected {o:?}"),
        }
    }

    #[test]
    fn budgets_are_respected_where_possible() {
        let mut c = Cache::default();
        c.apply_node(node("n1", "2"));
        c.apply_pod(&pod("guarded1", Some("n1"), "1", 0, None));
        c.apply_pod(&pod("free1", Some("n1"), "1", 0, None));
        let p = pod("hi", None, "1", 10, None);
        // Only one must go: the one without a budget, though sorting alone would not pick it.
        let Outcome::Nominate(cand) = run(&mut c, &p, &[pdb("guarded", 0)]) else {
            panic!("expected a candidate")
        };
        assert_eq!(names(&cand.victims), ["free1"]);
        assert_eq!(cand.victims.pdb_violations, 0);
        // Both must go: the budget is broken, and counted.
        let p2 = pod("hi", None, "2", 10, None);
        let Outcome::Nominate(cand) = run(&mut c, &p2, &[pdb("guarded", 0)]) else {
            panic!("expected a candidate")
        };
        assert_eq!(cand.victims.pdb_violations, 1);
        assert_eq!(cand.victims.pods.len(), 2);
        // A budget that allows one disruption is not broken.
        let Outcome::Nominate(cand) = run(&mut c, &p2, &[pdb("guarded", 1)]) else {
            panic!("expected a candidate")
        };
        assert_eq!(cand.victims.pdb_violations, 0);
    }

    #[test]
    fn nodes_rank_as_upstream() {
        let mut c = Cache::default();
        for n in ["n1", "n2", "n3"] {
            c.apply_node(node(n, "1"));
        }
        // n1: a guarded pod; n2: a pod of priority 3; n3: a pod of priority 2.
        c.apply_pod(&pod("guarded1", Some("n1"), "1", 1, None));
        c.apply_pod(&pod("x1", Some("n2"), "1", 3, None));
        c.apply_pod(&pod("y1", Some("n3"), "1", 2, None));
        let p = pod("hi", None, "1", 10, None);
        let Outcome::Nominate(cand) = run(&mut c, &p, &[pdb("guarded", 0)]) else {
            panic!("expected a candidate")
        };
        assert_eq!(
            cand.node, "n3",
            "lowest highest-victim priority without a violation"
        );
        // Without the budget the guarded pod (priority 1) is the cheapest.
        let Outcome::Nominate(cand) = run(&mut c, &p, &[]) else {
            panic!("expected a candidate")
        };
        assert_eq!(cand.node, "n1");
    }

    #[test]
    fn ranking_ties_go_to_fewer_victims_then_later_starts() {
        let v = |pods: Vec<Arc<Pod>>, pdb: usize| Victims {
            pods: pods
                .into_iter()
                .map(|p| Arc::new(PodInfo::new(p)))
                .collect(),
            pdb_violations: pdb,
        };
        let cand = |node: &str, victims: Victims| Candidate {
            node: node.into(),
            victims,
        };
        let old = Some("2025-01-01T00:00:00Z");
        let new = Some("2025-06-01T00:00:00Z");
        // Same priorities: the sum decides (one victim of 1 beats two of 1).
        let cands = [
            cand(
                "a",
                v(
                    vec![pod("p", None, "1", 1, old), pod("q", None, "1", 1, old)],
                    0,
                ),
            ),
            cand("b", v(vec![pod("r", None, "1", 1, old)], 0)),
        ];
        assert_eq!(pick_one(&cands), Some(1));
        // Equal in everything but start: the later started victims are preferred.
        let cands = [
            cand("a", v(vec![pod("p", None, "1", 1, old)], 0)),
            cand("b", v(vec![pod("r", None, "1", 1, new)], 0)),
        ];
        assert_eq!(pick_one(&cands), Some(1));
        // Fewer budget violations beat everything.
        let cands = [
            cand("a", v(vec![pod("p", None, "1", 0, new)], 1)),
            cand(
                "b",
                v(
                    vec![pod("r", None, "1", 9, old), pod("s", None, "1", 9, old)],
                    0,
                ),
            ),
        ];
        assert_eq!(pick_one(&cands), Some(1));
        // Negative priorities: the sum is taken over priorities shifted to be positive.
        let cands = [
            cand(
                "a",
                v(
                    vec![pod("p", None, "1", -5, old), pod("q", None, "1", -5, old)],
                    0,
                ),
            ),
            cand("b", v(vec![pod("r", None, "1", -5, old)], 0)),
        ];
        assert_eq!(pick_one(&cands), Some(1));
        // All equal: the first.
        let cands = [
            cand("a", v(vec![pod("p", None, "1", 1, old)], 0)),
            cand("b", v(vec![pod("r", None, "1", 1, old)], 0)),
        ];
        assert_eq!(pick_one(&cands), Some(0));
    }

    #[test]
    fn eligibility_and_unresolvable_nodes() {
        let mut c = Cache::default();
        c.apply_node(node("n1", "1"));
        c.apply_pod(&pod("a1", Some("n1"), "1", 0, None));
        let mut never = (*pod("hi", None, "1", 10, None)).clone();
        never.spec.as_mut().unwrap().preemption_policy = Some("Never".into());
        match run(&mut c, &Arc::new(never), &[]) {
            Outcome::NotEligible(m) => assert_eq!(m, NEVER),
            o => panic!("unexpected {o:?}"),
        }
        // A pod that asks for another node: preemption cannot help.
        let mut elsewhere = (*pod("hi", None, "1", 10, None)).clone();
        elsewhere.spec.as_mut().unwrap().node_selector =
            Some([("zone".to_string(), "b".to_string())].into());
        match run(&mut c, &Arc::new(elsewhere), &[]) {
            Outcome::NoCandidate(m) => assert_eq!(
                m,
                "0/1 nodes are available: 1 Preemption is not helpful for scheduling."
            ),
            o => panic!("unexpected {o:?}"),
        }
        // A victim already terminating for the pod on its nominated node: wait for it.
        let mut going = (*pod("a1", Some("n1"), "1", 0, None)).clone();
        going.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::now(),
            ));
        going.status = Some(
            serde_json::from_value(json!({"conditions": [{"type": "DisruptionTarget",
                "status": "True", "reason": "PreemptionByScheduler"}]}))
            .unwrap(),
        );
        c.apply_pod(&Arc::new(going));
        let p = pod("hi", None, "1", 10, None);
        let st = state(&mut c, &p);
        let failures: Vec<(usize, Failure)> = c
            .live_nodes()
            .iter()
            .filter_map(|&i| plugins::filter(&st, &c.nodes()[i]).err().map(|f| (i, f)))
            .collect();
        match preempt(&c, &st, &failures, &[], Some("n1"), 0, &|_| None) {
            Outcome::NotEligible(m) => assert_eq!(m, TERMINATING),
            o => panic!("unexpected {o:?}"),
        }
    }

    #[test]
    fn nominated_pods_of_no_lower_priority_keep_their_room() {
        let mut c = Cache::default();
        c.apply_node(node("n1", "2"));
        c.apply_pod(&pod("a1", Some("n1"), "1", 0, None));
        c.apply_pod(&pod("b1", Some("n1"), "1", 0, None));
        // A pod of priority 20 is nominated to n1 for 1 cpu: a pod of priority 10 wanting 2
        // cpu cannot have the node even with both victims gone.
        c.nominate(pod("first", None, "1", 20, None), "n1");
        let p = pod("hi", None, "2", 10, None);
        assert!(matches!(run(&mut c, &p, &[]), Outcome::NoCandidate(_)));
        // One of lower priority does not count.
        c.nominate(pod("first", None, "1", 5, None), "n1");
        assert!(matches!(run(&mut c, &p, &[]), Outcome::Nominate(_)));
        c.clear_nomination("first");
        assert!(!c.has_nominations());
    }

    /// `pod` with more spec, as JSON.
    fn with_spec(p: Arc<Pod>, spec: serde_json::Value) -> Arc<Pod> {
        let mut v = serde_json::to_value(&*p).unwrap();
        for (k, x) in spec.as_object().unwrap() {
            v["spec"][k] = x.clone();
        }
        Arc::new(serde_json::from_value(v).unwrap())
    }

    fn anti(app: &str) -> serde_json::Value {
        json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{
            "labelSelector": {"matchLabels": {"app": app}},
            "topologyKey": "kubernetes.io/hostname"}]}})
    }

    #[test]
    fn victims_that_block_by_affinity_or_spread_are_found() {
        // An existing pod of lower priority whose anti-affinity keeps the pod off its node.
        let mut c = Cache::default();
        c.apply_node(node("n1", "4"));
        c.apply_pod(&with_spec(
            pod("guard1", Some("n1"), "1", 0, None),
            json!({"affinity": anti("hi")}),
        ));
        c.apply_pod(&pod("other1", Some("n1"), "1", 0, None));
        let p = pod("hi", None, "1", 10, None);
        let Outcome::Nominate(cand) = run(&mut c, &p, &[]) else {
            panic!("expected a candidate")
        };
        assert_eq!(names(&cand.victims), ["guard1"]);

        // The pod's own anti-affinity against a pod of lower priority.
        let mut c = Cache::default();
        c.apply_node(node("n1", "4"));
        c.apply_pod(&pod("web1", Some("n1"), "1", 0, None));
        c.apply_pod(&pod("other1", Some("n1"), "1", 0, None));
        let p = with_spec(
            pod("hi", None, "1", 10, None),
            json!({"affinity": anti("web")}),
        );
        let Outcome::Nominate(cand) = run(&mut c, &p, &[]) else {
            panic!("expected a candidate")
        };
        assert_eq!(names(&cand.victims), ["web1"]);
        // Not if that pod is of higher priority.
        let mut c = Cache::default();
        c.apply_node(node("n1", "4"));
        c.apply_pod(&pod("web1", Some("n1"), "1", 50, None));
        assert!(matches!(run(&mut c, &p, &[]), Outcome::NoCandidate(_)));

        // A spread constraint: n1 holds two matching pods of lower priority, n2 one of higher
        // priority and no room. One victim on n1 brings the skew within bounds.
        let mut c = Cache::default();
        c.apply_node(node("n1", "4"));
        c.apply_node(node("n2", "1"));
        c.apply_pod(&pod("s1", Some("n1"), "1", 0, Some("2025-01-01T00:00:00Z")));
        c.apply_pod(&pod("s2", Some("n1"), "1", 0, Some("2025-02-01T00:00:00Z")));
        c.apply_pod(&pod("s3", Some("n2"), "1", 100, None));
        let p = with_spec(
            pod("s", None, "1", 10, None),
            json!({"topologySpreadConstraints": [{"maxSkew": 1,
                "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "DoNotSchedule",
                "labelSelector": {"matchLabels": {"app": "s"}}}]}),
        );
        let Outcome::Nominate(cand) = run(&mut c, &p, &[]) else {
            panic!("expected a candidate")
        };
        assert_eq!(cand.node, "n1");
        // s1 runs longer, so it is put back first and s2 goes.
        assert_eq!(names(&cand.victims), ["s2"]);
    }
}
