//! The scheduler's metrics, with kube-scheduler's names, labels and buckets:
//!
//! - `scheduler_schedule_attempts_total{profile,result}`: `scheduled` once the binding is
//!   accepted, `unschedulable` when no node fits, `error` when the binding fails;
//! - `scheduler_scheduling_attempt_duration_seconds{profile,result}`: from taking the pod off
//!   the queue to that result (the algorithm, plus the binding for `scheduled` and `error`);
//! - `scheduler_scheduling_algorithm_duration_seconds`: filtering and scoring alone;
//! - `scheduler_pending_pods{queue}`: `active`, `backoff`, `unschedulable` (Rudder has no
//!   scheduling gates, so no `gated`); zero while this process is not the leader;
//! - `scheduler_pod_scheduling_sli_duration_seconds{attempts}`: from the pod's first entry into
//!   the queue to its successful binding, and `scheduler_pod_scheduling_attempts`, how many
//!   attempts that took;
//! - `scheduler_preemption_attempts_total`, `scheduler_preemption_victims`: counted by the
//!   preemption code through [`preemption_attempt`].
//!
//! They are the process's (one set, however often leadership starts the scheduler again);
//! [`render`] writes them out: the server appends them to its `/metrics`, the standalone
//! `rudder scheduler` serves them itself.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    profile: String,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabel {
    queue: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AttemptsLabel {
    attempts: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// 1 ms to about 16 s.
fn attempt_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// 10 ms to about 88 min.
fn sli_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 2.0, 20))
}

/// Every metric of the scheduler, and the registry that writes them out.
pub struct Metrics {
    registry: Registry,
    attempts: Family<ResultLabels, Counter>,
    attempt_duration: HistogramFamily<ResultLabels>,
    algorithm: Histogram,
    pending: Family<QueueLabel, Gauge>,
    sli: HistogramFamily<AttemptsLabel>,
    pod_attempts: Histogram,
    preemption_attempts: Counter,
    preemption_victims: Histogram,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// The queues of `scheduler_pending_pods`.
const QUEUES: [&str; 3] = ["active", "backoff", "unschedulable"];

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let attempts = Family::<ResultLabels, Counter>::default();
        registry.register(
            "scheduler_schedule_attempts",
            "Number of attempts to schedule pods, by the result. 'unschedulable' means a pod could not be scheduled, while 'error' means an internal scheduler problem",
            attempts.clone(),
        );
        let attempt_duration: HistogramFamily<ResultLabels> =
            Family::new_with_constructor(attempt_histogram);
        registry.register(
            "scheduler_scheduling_attempt_duration_seconds",
            "Scheduling attempt latency in seconds (scheduling algorithm + binding)",
            attempt_duration.clone(),
        );
        let algorithm = attempt_histogram();
        registry.register(
            "scheduler_scheduling_algorithm_duration_seconds",
            "Scheduling algorithm latency in seconds",
            algorithm.clone(),
        );
        let pending = Family::<QueueLabel, Gauge>::default();
        registry.register(
            "scheduler_pending_pods",
            "Number of pending pods, by the queue type. 'active' means number of pods in activeQ; 'backoff' means number of pods in backoffQ; 'unschedulable' means number of pods in unschedulablePods that the scheduler attempted to schedule and failed",
            pending.clone(),
        );
        for queue in QUEUES {
            pending.get_or_create_owned(&QueueLabel { queue });
        }
        let sli: HistogramFamily<AttemptsLabel> = Family::new_with_constructor(sli_histogram);
        registry.register(
            "scheduler_pod_scheduling_sli_duration_seconds",
            "E2e latency for a pod being scheduled, from the time the pod enters the scheduling queue and might involve multiple scheduling attempts",
            sli.clone(),
        );
        let pod_attempts = Histogram::new(exponential_buckets(1.0, 2.0, 5));
        registry.register(
            "scheduler_pod_scheduling_attempts",
            "Number of attempts to successfully schedule a pod",
            pod_attempts.clone(),
        );
        let preemption_attempts = Counter::default();
        registry.register(
            "scheduler_preemption_attempts",
            "Total preemption attempts in the cluster till now",
            preemption_attempts.clone(),
        );
        let preemption_victims = Histogram::new(exponential_buckets(1.0, 2.0, 7));
        registry.register(
            "scheduler_preemption_victims",
            "Number of selected preemption victims",
            preemption_victims.clone(),
        );
        Metrics {
            registry,
            attempts,
            attempt_duration,
            algorithm,
            pending,
            sli,
            pod_attempts,
            preemption_attempts,
            preemption_victims,
        }
    }

    /// Appends the metrics to `out` (Prometheus text format 0.0.4).
    pub fn render_into(&self, out: &mut String) {
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(out, &self.registry);
    }

    fn attempt(&self, profile: &str, result: &'static str, elapsed: Duration) {
        let labels = ResultLabels {
            profile: profile.to_string(),
            result,
        };
        self.attempts.get_or_create(&labels).inc();
        self.attempt_duration
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }

    /// The pod was bound: its attempt, and its way from the queue to the node.
    pub fn scheduled(&self, profile: &str, attempt: &Attempt) {
        self.attempt(profile, "scheduled", attempt.started.elapsed());
        self.sli
            .get_or_create(&AttemptsLabel {
                attempts: attempt.attempts.to_string(),
            })
            .observe(attempt.queued.elapsed().as_secs_f64());
        self.pod_attempts.observe(f64::from(attempt.attempts));
    }

    /// No node fits the pod.
    pub fn unschedulable(&self, profile: &str, attempt: &Attempt) {
        self.attempt(profile, "unschedulable", attempt.started.elapsed());
    }

    /// The attempt failed (the binding was refused or failed).
    pub fn error(&self, profile: &str, attempt: &Attempt) {
        self.attempt(profile, "error", attempt.started.elapsed());
    }

    /// Filtering and scoring took `elapsed`.
    pub fn algorithm(&self, elapsed: Duration) {
        self.algorithm.observe(elapsed.as_secs_f64());
    }

    /// The pods waiting in each queue.
    pub fn pending(&self, active: usize, backoff: usize, unschedulable: usize) {
        for (queue, n) in QUEUES.into_iter().zip([active, backoff, unschedulable]) {
            self.pending
                .get_or_create(&QueueLabel { queue })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }
}

/// One scheduling attempt of a pod: when it started, when the pod first entered the queue,
/// and which attempt this is (1 for the first).
#[derive(Clone, Copy, Debug)]
pub struct Attempt {
    pub started: Instant,
    pub queued: Instant,
    pub attempts: u32,
}

/// The process's scheduler metrics.
pub fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// Appends the process's scheduler metrics to `out`.
pub fn render(out: &mut String) {
    global().render_into(out);
}

/// Preemption was tried for a pod that fits nowhere, and chose `victims` pods to evict
/// (`scheduler_preemption_attempts_total`, `scheduler_preemption_victims`; upstream observes
/// the victims only when there are some).
pub fn preemption_attempt(victims: usize) {
    let m = global();
    m.preemption_attempts.inc();
    if victims > 0 {
        m.preemption_victims.observe(victims as f64);
    }
}

/// Zeroes `scheduler_pending_pods` when dropped: the scheduler that held the queue stopped.
#[derive(Debug, Default)]
pub struct PendingGuard;

impl Drop for PendingGuard {
    fn drop(&mut self) {
        global().pending(0, 0, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str, prefix: &str) -> f64 {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{prefix} in {text}"))
    }

    #[test]
    fn attempts_are_rendered_with_upstreams_names_and_labels() {
        let m = Metrics::new();
        let t0 = Instant::now();
        let first = Attempt {
            started: t0,
            queued: t0,
            attempts: 1,
        };
        m.unschedulable("default-scheduler", &first);
        m.scheduled(
            "default-scheduler",
            &Attempt {
                attempts: 2,
                ..first
            },
        );
        m.error("default-scheduler", &first);
        m.algorithm(Duration::from_millis(2));
        m.pending(3, 2, 1);
        let mut text = String::new();
        m.render_into(&mut text);
        for (prefix, want) in [
            (
                "scheduler_schedule_attempts_total{profile=\"default-scheduler\",result=\"scheduled\"}",
                1.0,
            ),
            (
                "scheduler_schedule_attempts_total{profile=\"default-scheduler\",result=\"unschedulable\"}",
                1.0,
            ),
            (
                "scheduler_schedule_attempts_total{profile=\"default-scheduler\",result=\"error\"}",
                1.0,
            ),
            (
                "scheduler_scheduling_attempt_duration_seconds_count{profile=\"default-scheduler\",result=\"scheduled\"}",
                1.0,
            ),
            ("scheduler_scheduling_algorithm_duration_seconds_count", 1.0),
            ("scheduler_pending_pods{queue=\"active\"}", 3.0),
            ("scheduler_pending_pods{queue=\"backoff\"}", 2.0),
            ("scheduler_pending_pods{queue=\"unschedulable\"}", 1.0),
            (
                "scheduler_pod_scheduling_sli_duration_seconds_count{attempts=\"2\"}",
                1.0,
            ),
            ("scheduler_pod_scheduling_attempts_bucket{le=\"2\"}", 1.0),
            ("scheduler_pod_scheduling_attempts_bucket{le=\"1\"}", 0.0),
            ("scheduler_preemption_attempts_total", 0.0),
        ] {
            assert_eq!(value(&text, prefix), want, "{prefix}");
        }
        assert!(text.contains("# TYPE scheduler_schedule_attempts_total counter"));
        assert!(text.contains("# TYPE scheduler_pending_pods gauge"));
        assert!(text.contains("# TYPE scheduler_scheduling_attempt_duration_seconds histogram"));
        assert!(!text.contains("# EOF"));
    }

    #[test]
    fn preemption_is_counted_and_pending_pods_zeroed_on_stop() {
        preemption_attempt(2);
        preemption_attempt(0);
        global().pending(5, 0, 0);
        drop(PendingGuard);
        let mut text = String::new();
        render(&mut text);
        assert!(value(&text, "scheduler_preemption_attempts_total") >= 2.0);
        assert!(value(&text, "scheduler_preemption_victims_count") >= 1.0);
        assert_eq!(
            value(&text, "scheduler_pending_pods{queue=\"active\"}"),
            0.0
        );
    }
}
