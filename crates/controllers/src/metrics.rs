//! The controllers' metrics, in the Prometheus text format, with the names kube-controller-manager
//! (client-go's work queues) and controller-runtime use, so that dashboards written for them
//! read these:
//!
//! - `workqueue_depth`, `workqueue_adds_total`, `workqueue_retries_total`,
//!   `workqueue_queue_duration_seconds`, `workqueue_work_duration_seconds`,
//!   `workqueue_unfinished_work_seconds`, `workqueue_longest_running_processor_seconds`, each
//!   by `name` (the queue: upstream's name for the controller's queue);
//! - `controller_runtime_reconcile_total{controller,result}` and
//!   `controller_runtime_reconcile_errors_total{controller}` for the reconcile loops;
//! - `rudder_controller_pass_duration_seconds{controller}` for the periodic loops (node
//!   lifecycle, pod GC), which have no queue: how long one pass over the cache took.
//!
//! The metrics are the process's (one set, however often leadership starts the loops again),
//! so counters keep counting across restarts of the loops. [`render`] writes them out; the
//! server appends it to its `/metrics`, the standalone `rudder controllers` serves it itself.
//!
//! kube-runtime's `Controller` keeps its queue to itself; [`Tracked`] measures it from the
//! outside: an object is queued when a trigger (its own change, or a mapped change of another
//! kind) names it and it is not queued yet (kube-runtime merges repeats as client-go's queue
//! does), and leaves the queue when its reconcile starts or when kube-runtime finds it gone from
//! the cache. A requeue a reconcile asked for (`Action::requeue`) counts as an add when it
//! fires, as client-go's `AddAfter` does, without a queue duration (the firing time is
//! kube-runtime's).

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::{FutureExt, Stream, StreamExt};
use kube::runtime::controller::{Action, Error as ControllerError};
use kube::runtime::reflector::ObjectRef;
use kube::Resource;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NameLabel {
    name: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ControllerLabel {
    controller: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    controller: &'static str,
    result: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// client-go's buckets for the work queue durations: 10 ns to 10 s, by tens.
fn queue_histogram() -> Histogram {
    Histogram::new(exponential_buckets(10e-9, 10.0, 10))
}

/// A periodic pass: 1 ms to about 16 s.
fn pass_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// Work in progress, by queue: when each item's processing started.
#[derive(Debug, Default)]
struct InFlight {
    next: AtomicU64,
    work: Mutex<HashMap<&'static str, HashMap<u64, Instant>>>,
}

/// `workqueue_unfinished_work_seconds` and `workqueue_longest_running_processor_seconds`,
/// computed when the document is written.
#[derive(Debug)]
struct InFlightCollector(Arc<InFlight>);

impl Collector for InFlightCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let now = Instant::now();
        let rows: Vec<(&'static str, f64, f64)> = {
            let work = self.0.work.lock().unwrap_or_else(|e| e.into_inner());
            let mut rows: Vec<_> = work
                .iter()
                .map(|(name, items)| {
                    let ages = items.values().map(|t| now.duration_since(*t).as_secs_f64());
                    // (`sum` of nothing is -0.0.)
                    let total = ages.clone().fold(0.0, |a, b| a + b);
                    let longest = ages.fold(0.0, f64::max);
                    (*name, total, longest)
                })
                .collect();
            rows.sort_by_key(|r| r.0);
            rows
        };
        type Value = fn(&(&'static str, f64, f64)) -> f64;
        let metrics: [(&str, &str, Value); 2] = [
            (
                "workqueue_unfinished_work_seconds",
                "How many seconds of work has been done that is in progress and hasn't been observed by work_duration. Large values indicate stuck threads",
                |r| r.1,
            ),
            (
                "workqueue_longest_running_processor_seconds",
                "How many seconds has the longest running processor for workqueue been running",
                |r| r.2,
            ),
        ];
        for (metric, help, value) in metrics {
            let mut family = encoder.encode_descriptor(
                metric,
                help,
                None,
                prometheus_client::metrics::MetricType::Gauge,
            )?;
            for row in &rows {
                let gauge = ConstGauge::new(value(row));
                gauge.encode(family.encode_family(&NameLabel { name: row.0 })?)?;
            }
        }
        Ok(())
    }
}

/// Every metric of the controllers, and the registry that writes them out.
pub struct Metrics {
    registry: Registry,
    depth: Family<NameLabel, Gauge>,
    adds: Family<NameLabel, Counter>,
    retries: Family<NameLabel, Counter>,
    queue_duration: HistogramFamily<NameLabel>,
    work_duration: HistogramFamily<NameLabel>,
    inflight: Arc<InFlight>,
    reconciles: Family<ResultLabels, Counter>,
    reconcile_errors: Family<ControllerLabel, Counter>,
    passes: HistogramFamily<ControllerLabel>,
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

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let depth = Family::<NameLabel, Gauge>::default();
        registry.register(
            "workqueue_depth",
            "Current depth of workqueue",
            depth.clone(),
        );
        let adds = Family::<NameLabel, Counter>::default();
        registry.register(
            "workqueue_adds",
            "Total number of adds handled by workqueue",
            adds.clone(),
        );
        let retries = Family::<NameLabel, Counter>::default();
        registry.register(
            "workqueue_retries",
            "Total number of retries handled by workqueue",
            retries.clone(),
        );
        let queue_duration: HistogramFamily<NameLabel> =
            Family::new_with_constructor(queue_histogram);
        registry.register(
            "workqueue_queue_duration_seconds",
            "How long in seconds an item stays in workqueue before being requested",
            queue_duration.clone(),
        );
        let work_duration: HistogramFamily<NameLabel> =
            Family::new_with_constructor(queue_histogram);
        registry.register(
            "workqueue_work_duration_seconds",
            "How long in seconds processing an item from workqueue takes",
            work_duration.clone(),
        );
        let inflight = Arc::new(InFlight::default());
        registry.register_collector(Box::new(InFlightCollector(inflight.clone())));
        let reconciles = Family::<ResultLabels, Counter>::default();
        registry.register(
            "controller_runtime_reconcile",
            "Total number of reconciliations per controller",
            reconciles.clone(),
        );
        let reconcile_errors = Family::<ControllerLabel, Counter>::default();
        registry.register(
            "controller_runtime_reconcile_errors",
            "Total number of reconciliation errors per controller",
            reconcile_errors.clone(),
        );
        let passes: HistogramFamily<ControllerLabel> = Family::new_with_constructor(pass_histogram);
        registry.register(
            "rudder_controller_pass_duration_seconds",
            "How long in seconds one pass of a periodic controller (no work queue) over its caches takes",
            passes.clone(),
        );
        Metrics {
            registry,
            depth,
            adds,
            retries,
            queue_duration,
            work_duration,
            inflight,
            reconciles,
            reconcile_errors,
            passes,
        }
    }

    /// Appends the metrics to `out` (Prometheus text format 0.0.4).
    pub fn render_into(&self, out: &mut String) {
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(out, &self.registry);
    }

    /// The metrics of the work queue `name`.
    pub fn queue(&self, name: &'static str) -> QueueMetrics {
        let label = NameLabel { name };
        QueueMetrics {
            name,
            depth: self.depth.get_or_create_owned(&label),
            adds: self.adds.get_or_create_owned(&label),
            retries: self.retries.get_or_create_owned(&label),
            queue_duration: self.queue_duration.get_or_create_owned(&label),
            work_duration: self.work_duration.get_or_create_owned(&label),
            inflight: self.inflight.clone(),
        }
    }

    /// Times one pass of the periodic controller `controller`.
    pub fn pass(&self, controller: &'static str, elapsed: Duration) {
        self.passes
            .get_or_create(&ControllerLabel { controller })
            .observe(elapsed.as_secs_f64());
    }

    fn reconciled(&self, controller: &'static str, result: &'static str) {
        self.reconciles
            .get_or_create(&ResultLabels { controller, result })
            .inc();
        if result == "error" {
            self.reconcile_errors
                .get_or_create(&ControllerLabel { controller })
                .inc();
        }
    }
}

/// The process's controller metrics.
pub fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// Appends the process's controller metrics to `out`.
pub fn render(out: &mut String) {
    global().render_into(out);
}

/// The metrics of one work queue (cheap handles onto the process's families).
#[derive(Clone, Debug)]
pub struct QueueMetrics {
    name: &'static str,
    depth: Gauge,
    adds: Counter,
    retries: Counter,
    queue_duration: Histogram,
    work_duration: Histogram,
    inflight: Arc<InFlight>,
}

impl QueueMetrics {
    /// An item entered the queue (not a repeat of one already waiting).
    pub fn added(&self) {
        self.adds.inc();
        self.depth.inc();
    }

    /// An item left the queue for a worker after waiting `waited`.
    pub fn taken(&self, waited: Duration) {
        self.depth.dec();
        self.queue_duration.observe(waited.as_secs_f64());
    }

    /// Items left the queue without being worked on (the queue was dropped, …).
    pub fn discarded(&self, n: usize) {
        self.depth.dec_by(n as i64);
    }

    /// An item is put back to be tried again later (after an error).
    pub fn retried(&self) {
        self.retries.inc();
    }

    /// A worker starts on an item; the work is timed until the guard is dropped.
    pub fn work(&self) -> WorkGuard {
        let id = self.inflight.next.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        self.inflight
            .work
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(self.name)
            .or_default()
            .insert(id, started);
        WorkGuard {
            queue: self.clone(),
            id,
            started,
        }
    }
}

/// Work in progress on one item; dropping it observes `workqueue_work_duration_seconds`.
#[derive(Debug)]
pub struct WorkGuard {
    queue: QueueMetrics,
    id: u64,
    started: Instant,
}

impl Drop for WorkGuard {
    fn drop(&mut self) {
        if let Some(items) = self
            .queue
            .inflight
            .work
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(self.queue.name)
        {
            items.remove(&self.id);
        }
        self.queue
            .work_duration
            .observe(self.started.elapsed().as_secs_f64());
    }
}

/// Times one pass of a periodic controller until dropped.
#[derive(Debug)]
pub struct PassTimer {
    controller: &'static str,
    started: Instant,
}

impl PassTimer {
    pub fn new(controller: &'static str) -> PassTimer {
        PassTimer {
            controller,
            started: Instant::now(),
        }
    }
}

impl Drop for PassTimer {
    fn drop(&mut self) {
        global().pass(self.controller, self.started.elapsed());
    }
}

/// What a kube-runtime `Controller`'s run yields for each reconcile.
pub type Outcome<K, E1, E2> = Result<(ObjectRef<K>, Action), ControllerError<E1, E2>>;

/// The key of a queued object: namespace and name.
type Key = (Option<String>, String);

/// Measures a kube-runtime `Controller` from the outside (see the module's documentation):
/// wrap its main trigger stream with [`Tracked::trigger`], its mappers with
/// [`Tracked::mapper`], its reconcile and error policy with [`Tracked::reconcile`] and
/// [`Tracked::error_policy`], and consume its results with [`Tracked::results`].
#[derive(Debug)]
pub struct Tracked {
    controller: &'static str,
    queue: QueueMetrics,
    queued: Mutex<HashMap<Key, Instant>>,
}

impl Tracked {
    /// `name`: upstream's name for the controller's queue (the `name` and `controller` labels).
    pub fn new(name: &'static str) -> Arc<Tracked> {
        Arc::new(Tracked {
            controller: name,
            queue: global().queue(name),
            queued: Mutex::default(),
        })
    }

    fn mark(&self, key: Key) {
        let mut queued = self.queued.lock().unwrap_or_else(|e| e.into_inner());
        if let std::collections::hash_map::Entry::Vacant(v) = queued.entry(key) {
            v.insert(Instant::now());
            self.queue.added();
        }
    }

    /// Takes the object out of the queue; whether it was in it.
    fn unmark(&self, key: &Key) -> Option<Instant> {
        self.queued
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key)
    }

    /// The controller's own kind's changes: each names its object.
    pub fn trigger<K: Resource>(
        self: &Arc<Self>,
        stream: impl Stream<Item = Arc<K>> + Send + 'static,
    ) -> impl Stream<Item = Arc<K>> + Send + 'static {
        let t = self.clone();
        stream.inspect(move |o| {
            let meta = o.meta();
            t.mark((
                meta.namespace.clone(),
                meta.name.clone().unwrap_or_default(),
            ));
        })
    }

    /// A mapper from another kind's changes to the objects they concern.
    pub fn mapper<O, K, I>(
        self: &Arc<Self>,
        f: impl Fn(Arc<O>) -> I + Send + Sync + 'static,
    ) -> impl Fn(Arc<O>) -> Vec<ObjectRef<K>> + Send + Sync + 'static
    where
        K: Resource,
        K::DynamicType: Clone,
        I: IntoIterator<Item = ObjectRef<K>>,
    {
        let t = self.clone();
        move |o| {
            let refs: Vec<ObjectRef<K>> = f(o).into_iter().collect();
            for r in &refs {
                t.mark((r.namespace.clone(), r.name.clone()));
            }
            refs
        }
    }

    /// The reconcile function, timed and counted.
    pub fn reconcile<K, C, E, Fut>(
        self: &Arc<Self>,
        f: impl Fn(Arc<K>, Arc<C>) -> Fut + Send + 'static,
    ) -> impl FnMut(Arc<K>, Arc<C>) -> BoxFuture<'static, Result<Action, E>>
    where
        K: Resource,
        Fut: Future<Output = Result<Action, E>> + Send + 'static,
        E: Send + 'static,
    {
        let t = self.clone();
        move |obj, ctx| {
            let meta = obj.meta();
            let key = (
                meta.namespace.clone(),
                meta.name.clone().unwrap_or_default(),
            );
            match t.unmark(&key) {
                Some(since) => t.queue.taken(since.elapsed()),
                // A requeue firing: an add of its own, never counted as waiting.
                None => {
                    t.queue.adds.inc();
                }
            }
            let work = t.queue.work();
            let fut = f(obj, ctx);
            let t = t.clone();
            async move {
                let out = fut.await;
                drop(work);
                let result = match &out {
                    Err(_) => "error",
                    Ok(a) if *a == Action::await_change() => "success",
                    Ok(_) => "requeue_after",
                };
                t.queue_reconciled(result);
                out
            }
            .boxed()
        }
    }

    fn queue_reconciled(&self, result: &'static str) {
        global().reconciled(self.controller, result);
    }

    /// The error policy: a requeue it asks for is a retry.
    pub fn error_policy<K, C, E>(
        self: &Arc<Self>,
        f: impl Fn(Arc<K>, &E, Arc<C>) -> Action,
    ) -> impl Fn(Arc<K>, &E, Arc<C>) -> Action {
        let t = self.clone();
        move |obj, e, ctx| {
            let action = f(obj, e, ctx);
            if action != Action::await_change() {
                t.queue.retried();
            }
            action
        }
    }

    /// Consumes the controller's results: an object kube-runtime found gone from its cache
    /// leaves the queue without a reconcile.
    pub fn results<K, E1, E2>(
        self: &Arc<Self>,
    ) -> impl FnMut(Outcome<K, E1, E2>) -> futures::future::Ready<()>
    where
        K: Resource,
    {
        let t = self.clone();
        move |r| {
            if let Err(ControllerError::ObjectNotFound(o)) = r {
                if t.unmark(&(o.namespace.clone(), o.name.clone())).is_some() {
                    t.queue.depth.dec();
                }
            }
            futures::future::ready(())
        }
    }
}

impl Drop for Tracked {
    /// The loops stopped (leadership lost): what was queued is no longer.
    fn drop(&mut self) {
        let n = self
            .queued
            .get_mut()
            .map(|q| q.len())
            .unwrap_or_else(|e| e.into_inner().len());
        self.queue.discarded(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn cm(name: &str) -> Arc<ConfigMap> {
        Arc::new(ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("d".into()),
                ..Default::default()
            },
            ..Default::default()
        })
    }

    fn line<'a>(text: &'a str, prefix: &str) -> &'a str {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("{prefix} in {text}"))
    }

    #[tokio::test]
    async fn a_tracked_controller_reports_upstreams_queue_metrics() {
        let t = Tracked::new("test_tracked");
        // Two changes of one object before it is worked on are one add.
        let triggers: Vec<Arc<ConfigMap>> = t
            .trigger(futures::stream::iter([cm("a"), cm("a"), cm("b")]))
            .collect()
            .await;
        assert_eq!(triggers.len(), 3);
        let mapped =
            t.mapper(|_: Arc<ConfigMap>| vec![ObjectRef::<ConfigMap>::new("c").within("d")]);
        assert_eq!(mapped(cm("x")).len(), 1);
        let text = {
            let mut s = String::new();
            render(&mut s);
            s
        };
        assert!(
            text.contains("workqueue_depth{name=\"test_tracked\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("workqueue_adds_total{name=\"test_tracked\"} 3"),
            "{text}"
        );

        #[derive(Debug, thiserror::Error)]
        #[error("boom")]
        struct Boom;
        let mut ok = t.reconcile(|_: Arc<ConfigMap>, _: Arc<()>| async {
            Ok::<_, Boom>(Action::await_change())
        });
        ok(cm("a"), Arc::new(())).await.unwrap();
        let mut bad = t.reconcile(|_: Arc<ConfigMap>, _: Arc<()>| async { Err::<Action, _>(Boom) });
        assert!(bad(cm("b"), Arc::new(())).await.is_err());
        let policy = t.error_policy(|_: Arc<ConfigMap>, _: &Boom, _: Arc<()>| {
            Action::requeue(Duration::from_secs(1))
        });
        policy(cm("b"), &Boom, Arc::new(()));
        // "c" was deleted before its turn.
        let mut results = t.results::<ConfigMap, Boom, Boom>();
        let gone = ObjectRef::<ConfigMap>::new("c").within("d").erase();
        results(Err(ControllerError::ObjectNotFound(Box::new(gone)))).await;

        let mut text = String::new();
        render(&mut text);
        for (prefix, want) in [
            ("workqueue_depth{name=\"test_tracked\"}", "0"),
            ("workqueue_adds_total{name=\"test_tracked\"}", "3"),
            ("workqueue_retries_total{name=\"test_tracked\"}", "1"),
            ("workqueue_work_duration_seconds_count{name=\"test_tracked\"}", "2"),
            ("workqueue_queue_duration_seconds_count{name=\"test_tracked\"}", "2"),
            (
                "controller_runtime_reconcile_total{controller=\"test_tracked\",result=\"success\"}",
                "1",
            ),
            (
                "controller_runtime_reconcile_total{controller=\"test_tracked\",result=\"error\"}",
                "1",
            ),
            (
                "controller_runtime_reconcile_errors_total{controller=\"test_tracked\"}",
                "1",
            ),
            (
                "workqueue_longest_running_processor_seconds{name=\"test_tracked\"}",
                "0",
            ),
            (
                "workqueue_unfinished_work_seconds{name=\"test_tracked\"}",
                "0",
            ),
        ] {
            let l = line(&text, prefix);
            let got: f64 = l.rsplit(' ').next().unwrap().parse().unwrap();
            assert_eq!(got, want.parse::<f64>().unwrap(), "{l}");
        }
        assert!(!text.contains("-0.0"), "{text}");
        assert!(text.contains("# TYPE workqueue_depth gauge"));
        assert!(text.contains("# TYPE workqueue_adds_total counter"));
        assert!(text.contains("# TYPE workqueue_queue_duration_seconds histogram"));
    }

    #[test]
    fn dropping_a_tracked_controller_empties_its_depth() {
        let t = Tracked::new("test_dropped");
        t.mark((None, "x".into()));
        t.mark((None, "y".into()));
        drop(t);
        let mut text = String::new();
        render(&mut text);
        assert!(
            text.contains("workqueue_depth{name=\"test_dropped\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("workqueue_adds_total{name=\"test_dropped\"} 2"),
            "{text}"
        );
    }

    #[test]
    fn periodic_passes_are_timed() {
        global().pass("test_pass", Duration::from_millis(3));
        let mut text = String::new();
        render(&mut text);
        assert!(text
            .contains("rudder_controller_pass_duration_seconds_count{controller=\"test_pass\"} 1"));
    }
}
