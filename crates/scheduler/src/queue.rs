//! The scheduling queue, as upstream's: an active queue ordered by priority then arrival, a
//! backoff queue (1 s doubling to 10 s per failed attempt), and a pool of unschedulable pods
//! that go back to the active (or backoff) queue when the cluster changes in a way that may
//! help them, or after 60 s in the pool at the latest.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;

use crate::cache::priority;

pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How long a pod stays in the unschedulable pool when nothing moves it.
pub const MAX_UNSCHEDULABLE: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Where {
    Active,
    Backoff,
    Unschedulable,
    /// Popped: being scheduled or bound.
    InFlight,
}

#[derive(Debug)]
struct Entry {
    pod: Arc<Pod>,
    attempts: u32,
    last_failure: Option<Instant>,
    at: Where,
    /// Changes each time the entry is (re)queued, so stale heap items are skipped.
    seq: u64,
    since: Instant,
    /// The failure involved pod (anti-)affinity or spreading: other pods landing may help.
    needs_pods: bool,
    /// When the pod first entered the queue (the scheduling SLI starts there).
    queued: Instant,
}

/// Why the unschedulable pods may fit now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClusterEvent {
    /// A node was added or changed in a way that may let more pods fit.
    Node,
    /// A pod went away or finished: resources, ports or anti-affinity are freed.
    PodGone,
    /// A pod was placed: (anti-)affinity and spreading may now be satisfied.
    PodAssigned,
}

#[derive(Default)]
pub struct Queue {
    entries: HashMap<String, Entry>,
    active: BinaryHeap<(i32, Reverse<u64>, String)>,
    backoff: BinaryHeap<Reverse<(Instant, u64, String)>>,
    /// The unschedulable pool (uids), so that cluster events look only at it.
    pool: std::collections::HashSet<String>,
    seq: u64,
}

impl Queue {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn contains(&self, uid: &str) -> bool {
        self.entries.contains_key(uid)
    }

    pub fn location(&self, uid: &str) -> Option<Where> {
        self.entries.get(uid).map(|e| e.at)
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// A new pending pod, or a changed one: new pods and pods whose spec or labels changed go
    /// to the active queue (a changed pod still backing off waits out its backoff).
    pub fn add_or_update(&mut self, uid: &str, pod: Arc<Pod>, now: Instant) {
        if let Some(e) = self.entries.get_mut(uid) {
            let changed = e.pod.spec != pod.spec || e.pod.metadata.labels != pod.metadata.labels;
            e.pod = pod;
            if changed && e.at == Where::Unschedulable {
                self.requeue(uid, now);
            }
            return;
        }
        let seq = self.next_seq();
        self.active
            .push((priority(&pod), Reverse(seq), uid.to_string()));
        self.entries.insert(
            uid.to_string(),
            Entry {
                pod,
                attempts: 0,
                last_failure: None,
                at: Where::Active,
                seq,
                since: now,
                needs_pods: false,
                queued: now,
            },
        );
    }

    pub fn remove(&mut self, uid: &str) {
        self.entries.remove(uid);
        self.pool.remove(uid);
    }

    /// Which attempt of the pod this is (1 for the first) and when it first entered the queue.
    pub fn attempt(&self, uid: &str) -> Option<(u32, Instant)> {
        self.entries.get(uid).map(|e| (e.attempts, e.queued))
    }

    /// How many pods wait in the active queue, the backoff queue and the unschedulable pool.
    pub fn counts(&self) -> (usize, usize, usize) {
        let mut n = (0, 0, 0);
        for e in self.entries.values() {
            match e.at {
                Where::Active => n.0 += 1,
                Where::Backoff => n.1 += 1,
                Where::Unschedulable => n.2 += 1,
                Where::InFlight => {}
            }
        }
        n
    }

    /// How many pods wait in the unschedulable pool.
    pub fn pool_len(&self) -> usize {
        self.pool.len()
    }

    fn backoff_until(e: &Entry) -> Option<Instant> {
        let last = e.last_failure?;
        let exp = e.attempts.saturating_sub(1).min(16);
        let d = INITIAL_BACKOFF.saturating_mul(1u32 << exp).min(MAX_BACKOFF);
        Some(last + d)
    }

    /// Moves a pod to the active queue, or to the backoff queue if it is still backing off.
    fn requeue(&mut self, uid: &str, now: Instant) {
        let seq = self.next_seq();
        self.pool.remove(uid);
        let Some(e) = self.entries.get_mut(uid) else {
            return;
        };
        e.seq = seq;
        e.since = now;
        match Self::backoff_until(e).filter(|t| *t > now) {
            Some(t) => {
                e.at = Where::Backoff;
                self.backoff.push(Reverse((t, seq, uid.to_string())));
            }
            None => {
                e.at = Where::Active;
                self.active
                    .push((priority(&e.pod), Reverse(seq), uid.to_string()));
            }
        }
    }

    /// The next pod to schedule (highest priority, then first queued); it is in flight until
    /// [`Queue::done`], [`Queue::unschedulable`] or [`Queue::retry`].
    pub fn pop(&mut self, now: Instant) -> Option<Arc<Pod>> {
        self.flush_backoff(now);
        while let Some((_, Reverse(seq), uid)) = self.active.pop() {
            if let Some(e) = self.entries.get_mut(&uid) {
                if e.seq == seq && e.at == Where::Active {
                    e.at = Where::InFlight;
                    e.attempts += 1;
                    return Some(e.pod.clone());
                }
            }
        }
        None
    }

    /// Scheduled (assumed on a node): the pod leaves the queue.
    pub fn done(&mut self, uid: &str) {
        self.remove(uid);
    }

    /// No node fits: into the unschedulable pool until the cluster changes.
    pub fn unschedulable(&mut self, uid: &str, needs_pods: bool, now: Instant) {
        if let Some(e) = self.entries.get_mut(uid) {
            e.at = Where::Unschedulable;
            e.last_failure = Some(now);
            e.since = now;
            e.needs_pods = needs_pods;
            self.pool.insert(uid.to_string());
        }
    }

    /// Something about this pod changed that may let it fit (its nomination was taken away):
    /// out of the unschedulable pool.
    pub fn activate(&mut self, uid: &str, now: Instant) {
        if self
            .entries
            .get(uid)
            .is_some_and(|e| e.at == Where::Unschedulable)
        {
            self.requeue(uid, now);
        }
    }

    /// An error (a failed binding …): back with backoff.
    pub fn retry(&mut self, uid: &str, pod: Arc<Pod>, now: Instant) {
        let seq = self.next_seq();
        let e = self.entries.entry(uid.to_string()).or_insert(Entry {
            pod: pod.clone(),
            attempts: 1,
            last_failure: None,
            at: Where::InFlight,
            seq,
            since: now,
            needs_pods: false,
            queued: now,
        });
        e.pod = pod;
        e.last_failure = Some(now);
        self.requeue(uid, now);
    }

    /// The cluster changed: unschedulable pods it may help are queued again.
    pub fn move_all(&mut self, event: ClusterEvent, now: Instant) -> usize {
        let moving: Vec<String> = self
            .pool
            .iter()
            .filter(|uid| {
                self.entries.get(*uid).is_some_and(|e| {
                    e.at == Where::Unschedulable
                        && (event != ClusterEvent::PodAssigned || e.needs_pods)
                })
            })
            .cloned()
            .collect();
        for uid in &moving {
            self.requeue(uid, now);
        }
        moving.len()
    }

    /// Periodic: pods whose backoff ended become active; pods unschedulable for a minute too.
    pub fn flush(&mut self, now: Instant) {
        self.flush_backoff(now);
        let stale: Vec<String> = self
            .pool
            .iter()
            .filter(|uid| {
                self.entries
                    .get(*uid)
                    .is_some_and(|e| now >= e.since + MAX_UNSCHEDULABLE)
            })
            .cloned()
            .collect();
        for uid in stale {
            self.requeue(&uid, now);
        }
    }

    fn flush_backoff(&mut self, now: Instant) {
        while let Some(Reverse((t, seq, uid))) = self.backoff.peek().cloned() {
            if t > now {
                break;
            }
            self.backoff.pop();
            if let Some(e) = self.entries.get_mut(&uid) {
                if e.seq == seq && e.at == Where::Backoff {
                    e.at = Where::Active;
                    self.active
                        .push((priority(&e.pod), Reverse(seq), uid.clone()));
                }
            }
        }
    }

    /// When the next backed-off pod is due.
    pub fn next_backoff(&self) -> Option<Instant> {
        self.backoff.peek().map(|Reverse((t, _, _))| *t)
    }

    pub fn has_active(&self) -> bool {
        !self.active.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, prio: i32) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(json!({"metadata": {"name": name, "uid": name},
                "spec": {"priority": prio, "containers": [{"name": "c"}]}}))
            .unwrap(),
        )
    }

    #[test]
    fn priority_then_arrival() {
        let mut q = Queue::default();
        let now = Instant::now();
        q.add_or_update("a", pod("a", 0), now);
        q.add_or_update("b", pod("b", 10), now);
        q.add_or_update("c", pod("c", 0), now);
        let order: Vec<String> = std::iter::from_fn(|| q.pop(now))
            .map(|p| p.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(order, ["b", "a", "c"]);
    }

    #[test]
    fn unschedulable_pods_move_on_cluster_events_with_backoff() {
        let mut q = Queue::default();
        let t0 = Instant::now();
        q.add_or_update("a", pod("a", 0), t0);
        q.pop(t0).unwrap();
        q.unschedulable("a", false, t0);
        assert!(q.pop(t0).is_none());
        // A pod landing does not help a pod short of resources.
        assert_eq!(q.move_all(ClusterEvent::PodAssigned, t0), 0);
        // A node appearing does; the pod still waits out its 1 s backoff.
        assert_eq!(q.move_all(ClusterEvent::Node, t0), 1);
        assert_eq!(q.location("a"), Some(Where::Backoff));
        assert!(q.pop(t0).is_none());
        assert!(q.pop(t0 + Duration::from_millis(1001)).is_some());
        // Second failure: 2 s.
        let t1 = t0 + Duration::from_secs(2);
        q.unschedulable("a", false, t1);
        q.move_all(ClusterEvent::PodGone, t1);
        assert!(q.pop(t1 + Duration::from_millis(1500)).is_none());
        assert!(q.pop(t1 + Duration::from_millis(2001)).is_some());
    }

    #[test]
    fn backoff_is_capped_and_the_pool_is_flushed_after_a_minute() {
        let mut q = Queue::default();
        let t0 = Instant::now();
        q.add_or_update("a", pod("a", 0), t0);
        for _ in 0..6 {
            q.pop(t0 + Duration::from_secs(100)).unwrap();
            q.retry("a", pod("a", 0), t0);
        }
        assert!(q.pop(t0 + Duration::from_millis(9_900)).is_none());
        assert!(q.pop(t0 + Duration::from_secs(10)).is_some());
        q.unschedulable("a", false, t0);
        q.flush(t0 + Duration::from_secs(59));
        assert_eq!(q.location("a"), Some(Where::Unschedulable));
        q.flush(t0 + Duration::from_secs(60));
        assert!(q.pop(t0 + Duration::from_secs(60)).is_some());
    }

    #[test]
    fn a_changed_pod_leaves_the_pool() {
        let mut q = Queue::default();
        let t0 = Instant::now();
        q.add_or_update("a", pod("a", 0), t0);
        q.pop(t0);
        q.unschedulable("a", false, t0);
        // Same spec (e.g. our own status write): stays.
        q.add_or_update("a", pod("a", 0), t0);
        assert_eq!(q.location("a"), Some(Where::Unschedulable));
        q.add_or_update("a", pod("a", 5), t0);
        assert_ne!(q.location("a"), Some(Where::Unschedulable));
    }
}
