//! `/metrics`: the API server's own metrics in the Prometheus text format (0.0.4), with
//! upstream's names and labels so that dashboards and alerts written for kube-apiserver read
//! them: `apiserver_request_total`, `apiserver_request_duration_seconds`,
//! `apiserver_current_inflight_requests`, `apiserver_longrunning_requests`,
//! `etcd_request_duration_seconds` / `etcd_requests_total` (the store, whichever backend), and
//! the `process_*` metrics read from `/proc`.
//!
//! Other parts of the process (the scheduler, the controllers) add their metrics to the same
//! document through [`Source`]s given in the server's configuration: text appended after the
//! server's own, so that this crate depends on none of them.
//!
//! Label values come only from the catalogue (a request for a resource the server does not
//! serve is not counted, as upstream counts only requests its routes serve), so a client cannot
//! grow the number of series.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::http::{header, HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use rudder_store::{
    KeyRange, KeyValue, RangeRequest, RangeResponse, Revision, Store, Watch, WatchRequest,
};

use crate::authz::RequestInfo;
use crate::limits::RequestKind;

/// Upstream's buckets for `apiserver_request_duration_seconds` and
/// `etcd_request_duration_seconds`.
const LATENCY_BUCKETS: [f64; 23] = [
    0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0,
    10.0, 15.0, 20.0, 30.0, 45.0, 60.0,
];

const COMPONENT: &str = "apiserver";

/// The labels of one request (`apiserver_request_total` without `code`). Fields are in the
/// order Go's client writes labels (sorted by name).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    component: &'static str,
    dry_run: &'static str,
    group: String,
    resource: String,
    scope: &'static str,
    subresource: String,
    verb: &'static str,
    version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabels {
    code: String,
    component: &'static str,
    dry_run: &'static str,
    group: String,
    resource: String,
    scope: &'static str,
    subresource: String,
    verb: &'static str,
    version: String,
}

/// `apiserver_longrunning_requests` has no `dry_run`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LongRunningLabels {
    component: &'static str,
    group: String,
    resource: String,
    scope: &'static str,
    subresource: String,
    verb: &'static str,
    version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    request_kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreLabels {
    operation: &'static str,
    r#type: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// The `Content-Type` of the `/metrics` document (Prometheus text format 0.0.4).
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// More metrics for `/metrics`: appends its families to the document (Prometheus text format
/// 0.0.4, names distinct from the server's own).
#[derive(Clone)]
pub struct Source(Arc<dyn Fn(&mut String) + Send + Sync>);

impl Source {
    pub fn new(append: impl Fn(&mut String) + Send + Sync + 'static) -> Source {
        Source(Arc::new(append))
    }
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Source")
    }
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// Every metric the server keeps, and the registry that writes them out.
pub struct Metrics {
    registry: Registry,
    requests: Family<CodeLabels, Counter>,
    durations: HistogramFamily<RequestLabels>,
    inflight: Family<KindLabels, Gauge>,
    longrunning: Family<LongRunningLabels, Gauge>,
    store_durations: HistogramFamily<StoreLabels>,
    store_requests: Family<StoreLabels, Counter>,
    sources: Vec<Source>,
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
        let requests = Family::<CodeLabels, Counter>::default();
        registry.register(
            "apiserver_request",
            "Counter of apiserver requests broken out for each verb, dry run value, group, version, resource, scope, component, and HTTP response code",
            requests.clone(),
        );
        let durations: HistogramFamily<RequestLabels> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "apiserver_request_duration_seconds",
            "Response latency distribution in seconds for each verb, dry run value, group, version, resource, subresource, scope and component",
            durations.clone(),
        );
        let inflight = Family::<KindLabels, Gauge>::default();
        registry.register(
            "apiserver_current_inflight_requests",
            "Number of requests in flight (not long-running) of the kind given by request_kind: readOnly or mutating",
            inflight.clone(),
        );
        for kind in ["readOnly", "mutating"] {
            inflight.get_or_create_owned(&KindLabels { request_kind: kind });
        }
        let longrunning = Family::<LongRunningLabels, Gauge>::default();
        registry.register(
            "apiserver_longrunning_requests",
            "Gauge of all active long-running apiserver requests (watches, exec, logs) broken out by verb, group, version, resource, scope and component",
            longrunning.clone(),
        );
        let store_durations: HistogramFamily<StoreLabels> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "etcd_request_duration_seconds",
            "Store request latency in seconds for each operation and object type (the embedded store or etcd)",
            store_durations.clone(),
        );
        let store_requests = Family::<StoreLabels, Counter>::default();
        registry.register(
            "etcd_requests",
            "Store request counts for each operation and object type",
            store_requests.clone(),
        );
        registry.register_collector(Box::new(ProcessCollector::new()));
        Metrics {
            registry,
            requests,
            durations,
            inflight,
            longrunning,
            store_durations,
            store_requests,
            sources: Vec::new(),
        }
    }

    /// The server's metrics followed by those of `sources`.
    pub fn with_sources(sources: Vec<Source>) -> Metrics {
        Metrics {
            sources,
            ..Metrics::new()
        }
    }

    /// The `/metrics` document.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        for source in &self.sources {
            (source.0)(&mut out);
        }
        out
    }

    /// The `/metrics` response.
    pub fn response(&self) -> Response {
        (
            [(
                header::CONTENT_TYPE,
                prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            )],
            self.render(),
        )
            .into_response()
    }

    /// Marks a request in flight until the returned guard is dropped (long-running requests
    /// are not counted).
    pub fn inflight(self: &Arc<Self>, kind: RequestKind) -> Option<InflightGuard> {
        let request_kind = match kind {
            RequestKind::LongRunning => return None,
            RequestKind::ReadOnly => "readOnly",
            RequestKind::Mutating => "mutating",
        };
        let gauge = self
            .inflight
            .get_or_create_owned(&KindLabels { request_kind });
        gauge.inc();
        Some(InflightGuard { gauge })
    }

    /// Counts a request's answer.
    pub fn observe(&self, labels: &RequestLabels, code: u16, elapsed: Duration) {
        let l = labels.clone();
        self.requests
            .get_or_create(&CodeLabels {
                code: code.to_string(),
                component: l.component,
                dry_run: l.dry_run,
                group: l.group,
                resource: l.resource,
                scope: l.scope,
                subresource: l.subresource,
                verb: l.verb,
                version: l.version,
            })
            .inc();
        self.durations
            .get_or_create(labels)
            .observe(elapsed.as_secs_f64());
    }

    /// Marks a long-running request (a watch, a log stream) open until the guard is dropped;
    /// then it is counted as answered with `code`.
    pub fn long_running(
        self: &Arc<Self>,
        labels: RequestLabels,
        code: u16,
        started: Instant,
    ) -> LongRunningGuard {
        let gauge = self.longrunning.get_or_create_owned(&LongRunningLabels {
            component: labels.component,
            group: labels.group.clone(),
            resource: labels.resource.clone(),
            scope: labels.scope,
            subresource: labels.subresource.clone(),
            verb: labels.verb,
            version: labels.version.clone(),
        });
        gauge.inc();
        LongRunningGuard {
            metrics: self.clone(),
            gauge,
            labels,
            code,
            started,
        }
    }

    fn store_op(&self, operation: &'static str, key: &[u8], elapsed: Duration) {
        let labels = StoreLabels {
            operation,
            r#type: store_type(key),
        };
        self.store_requests.get_or_create(&labels).inc();
        self.store_durations
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }
}

/// Holds an in-flight request's place in `apiserver_current_inflight_requests`.
pub struct InflightGuard {
    gauge: Gauge,
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

/// Holds a long-running request's place in `apiserver_longrunning_requests`; counts it in
/// `apiserver_request_total` when it ends, as upstream does.
pub struct LongRunningGuard {
    metrics: Arc<Metrics>,
    gauge: Gauge,
    labels: RequestLabels,
    code: u16,
    started: Instant,
}

impl Drop for LongRunningGuard {
    fn drop(&mut self) {
        self.gauge.dec();
        self.metrics
            .observe(&self.labels, self.code, self.started.elapsed());
    }
}

/// A request's labels as upstream's `MonitorRequest` reports them, or `None` for a request
/// that names no served resource (not counted: its path is the client's to choose).
pub fn request_labels(
    info: &RequestInfo,
    method: &Method,
    headers: &HeaderMap,
    query: &[(String, String)],
) -> Option<RequestLabels> {
    if !info.is_resource {
        return None;
    }
    let rt = rudder_api::catalogue::lookup(&info.api_group, &info.api_version, &info.resource)?;
    let subresource = match info.subresource.as_str() {
        "" => "",
        s => rt.subresource(s)?.name,
    };
    let scope = if !info.name.is_empty() || info.verb == "create" {
        "resource"
    } else if !info.namespace.is_empty() {
        "namespace"
    } else {
        "cluster"
    };
    let verb = match method.as_str() {
        _ if info.verb == "watch" => "WATCH",
        "GET" | "HEAD" if scope != "resource" => "LIST",
        "GET" | "HEAD" => "GET",
        _ if matches!(subresource, "log" | "exec" | "portforward" | "attach") => "CONNECT",
        "PATCH"
            if headers
                .get(header::CONTENT_TYPE)
                .is_some_and(|c| c == "application/apply-patch+yaml") =>
        {
            "APPLY"
        }
        "PATCH" => "PATCH",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        _ => "other",
    };
    let verb = match (verb, subresource) {
        ("GET" | "LIST", "log" | "exec" | "portforward" | "attach") => "CONNECT",
        (v, _) => v,
    };
    // `dryRun` values, deduplicated and sorted; anything but `All` is `invalid`.
    let dry: Vec<&str> = query
        .iter()
        .filter(|(k, _)| k == "dryRun")
        .map(|(_, v)| v.as_str())
        .collect();
    let dry_run = match dry.as_slice() {
        [] => "",
        d if d.iter().all(|v| *v == "All") => "All",
        _ => "invalid",
    };
    Some(RequestLabels {
        component: COMPONENT,
        dry_run,
        group: rt.group.to_string(),
        resource: rt.plural.to_string(),
        scope,
        subresource: subresource.to_string(),
        verb,
        version: rt.version.to_string(),
    })
}

/// The `type` label of a store key: upstream's group-resource (`pods`, `deployments.apps`) for
/// keys under a served resource's prefix, `other` for the rest.
fn store_type(key: &[u8]) -> String {
    static TYPES: OnceLock<std::collections::HashMap<&'static str, String>> = OnceLock::new();
    let types = TYPES.get_or_init(|| {
        rudder_api::catalogue::RESOURCES
            .iter()
            .filter_map(|r| r.storage)
            .map(|s| {
                let name = if s.group.is_empty() {
                    s.resource.to_string()
                } else {
                    format!("{}.{}", s.resource, s.group)
                };
                (s.resource, name)
            })
            .collect()
    });
    let segment = key
        .strip_prefix(b"/registry/")
        .and_then(|rest| rest.split(|b| *b == b'/').next())
        .and_then(|s| std::str::from_utf8(s).ok());
    segment
        .and_then(|s| types.get(s))
        .cloned()
        .unwrap_or_else(|| "other".to_string())
}

/// A store that times every operation into the metrics.
pub struct MeasuredStore {
    inner: Arc<dyn Store>,
    metrics: Arc<Metrics>,
}

impl MeasuredStore {
    pub fn new(inner: Arc<dyn Store>, metrics: Arc<Metrics>) -> MeasuredStore {
        MeasuredStore { inner, metrics }
    }
}

#[async_trait]
impl Store for MeasuredStore {
    async fn range(&self, req: RangeRequest) -> rudder_store::Result<RangeResponse> {
        let started = Instant::now();
        let op = if req.count_only {
            "count"
        } else if req.range.end.is_none() {
            "get"
        } else {
            "list"
        };
        let key = req.range.start.clone();
        let out = self.inner.range(req).await;
        self.metrics.store_op(op, &key, started.elapsed());
        out
    }

    async fn create(&self, key: Bytes, value: Bytes) -> rudder_store::Result<KeyValue> {
        let started = Instant::now();
        let out = self.inner.create(key.clone(), value).await;
        self.metrics.store_op("create", &key, started.elapsed());
        out
    }

    async fn update(
        &self,
        key: Bytes,
        value: Bytes,
        expected: Revision,
    ) -> rudder_store::Result<KeyValue> {
        let started = Instant::now();
        let out = self.inner.update(key.clone(), value, expected).await;
        self.metrics.store_op("update", &key, started.elapsed());
        out
    }

    async fn put(&self, key: Bytes, value: Bytes) -> rudder_store::Result<KeyValue> {
        let started = Instant::now();
        let out = self.inner.put(key.clone(), value).await;
        self.metrics.store_op("update", &key, started.elapsed());
        out
    }

    async fn delete(
        &self,
        key: Bytes,
        expected: Option<Revision>,
    ) -> rudder_store::Result<(KeyValue, Revision)> {
        let started = Instant::now();
        let out = self.inner.delete(key.clone(), expected).await;
        self.metrics.store_op("delete", &key, started.elapsed());
        out
    }

    /// Counted when opened (the watch cache opens one per resource; more for a resource mean
    /// watchers it could not serve); its duration is the time to open it.
    async fn watch(&self, req: WatchRequest) -> rudder_store::Result<Watch> {
        let started = Instant::now();
        let key = req.range.start.clone();
        let out = self.inner.watch(req).await;
        self.metrics.store_op("watch", &key, started.elapsed());
        out
    }

    async fn compact(&self, revision: Revision) -> rudder_store::Result<()> {
        let started = Instant::now();
        let out = self.inner.compact(revision).await;
        self.metrics.store_op("compact", b"", started.elapsed());
        out
    }

    async fn reclaim(&self) -> rudder_store::Result<()> {
        self.inner.reclaim().await
    }

    async fn current_revision(&self) -> rudder_store::Result<Revision> {
        self.inner.current_revision().await
    }

    async fn compacted_revision(&self) -> rudder_store::Result<Revision> {
        self.inner.compacted_revision().await
    }

    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    fn ordered_progress(&self) -> bool {
        self.inner.ordered_progress()
    }

    async fn get(&self, key: Bytes, revision: Revision) -> rudder_store::Result<Option<KeyValue>> {
        let started = Instant::now();
        let out = self.inner.get(key.clone(), revision).await;
        self.metrics.store_op("get", &key, started.elapsed());
        out
    }

    async fn count(&self, range: KeyRange) -> rudder_store::Result<i64> {
        let started = Instant::now();
        let key = range.start.clone();
        let out = self.inner.count(range).await;
        self.metrics.store_op("count", &key, started.elapsed());
        out
    }
}

/// Appends the `process_*` metrics alone (for processes without an API server: the standalone
/// scheduler and controllers).
pub fn render_process(out: &mut String) {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    let registry = REGISTRY.get_or_init(|| {
        let mut r = Registry::default();
        r.register_collector(Box::new(ProcessCollector::new()));
        r
    });
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::prometheus_text::encode(out, registry);
}

/// Go's process collector, from `/proc/self`: CPU time, memory, file descriptors, start time.
#[derive(Debug)]
struct ProcessCollector {
    /// Seconds since the epoch at which the process started (read once).
    start_time: f64,
}

/// The process's `/proc/self/stat` fields after the command name (field 3 onwards).
fn self_stat() -> Option<Vec<String>> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    Some(after.split_whitespace().map(str::to_string).collect())
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

fn page_size() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as f64
    } else {
        4096.0
    }
}

/// Field `n` (1-based, as proc(5) numbers them) of `/proc/self/stat`.
fn stat_field(fields: &[String], n: usize) -> Option<f64> {
    fields.get(n.checked_sub(3)?)?.parse().ok()
}

impl ProcessCollector {
    fn new() -> ProcessCollector {
        let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("btime "))
                .and_then(|v| v.trim().parse::<f64>().ok())
        });
        let started = self_stat().and_then(|f| stat_field(&f, 22));
        let start_time = match (boot, started) {
            (Some(b), Some(s)) => b + s / clock_ticks(),
            _ => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0),
        };
        ProcessCollector { start_time }
    }
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stat = self_stat().unwrap_or_default();
        let ticks = clock_ticks();
        let cpu =
            (stat_field(&stat, 14).unwrap_or(0.0) + stat_field(&stat, 15).unwrap_or(0.0)) / ticks;
        let counter = ConstCounter::new(cpu);
        counter.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds",
            None,
            counter.metric_type(),
        )?)?;
        let open_fds = std::fs::read_dir("/proc/self/fd")
            .map(|d| d.count() as i64)
            .unwrap_or(0);
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into the struct it is given.
        let max_fds = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
            i64::try_from(limit.rlim_cur).unwrap_or(i64::MAX)
        } else {
            0
        };
        let gauges: [(&str, &str, f64); 5] = [
            (
                "process_open_fds",
                "Number of open file descriptors",
                open_fds as f64,
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors",
                max_fds as f64,
            ),
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                stat_field(&stat, 24).unwrap_or(0.0) * page_size(),
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
                stat_field(&stat, 23).unwrap_or(0.0),
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds",
                self.start_time,
            ),
        ];
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(value);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(
        method: &str,
        path: &str,
        query: &[(&str, &str)],
    ) -> (RequestInfo, Vec<(String, String)>) {
        let q: Vec<(String, String)> = query
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        (RequestInfo::parse(method, path, &q), q)
    }

    fn labels(method: &str, path: &str, query: &[(&str, &str)], ct: &str) -> Option<RequestLabels> {
        let (i, q) = info(method, path, query);
        let mut h = HeaderMap::new();
        if !ct.is_empty() {
            h.insert(header::CONTENT_TYPE, ct.parse().unwrap());
        }
        request_labels(&i, &method.parse().unwrap(), &h, &q)
    }

    #[test]
    fn verbs_and_scopes_as_upstream_reports_them() {
        let cases = [
            (
                "GET",
                "/api/v1/namespaces/d/pods",
                &[][..],
                "",
                "LIST",
                "namespace",
            ),
            ("GET", "/api/v1/pods", &[][..], "", "LIST", "cluster"),
            (
                "GET",
                "/api/v1/namespaces/d/pods/p",
                &[][..],
                "",
                "GET",
                "resource",
            ),
            (
                "GET",
                "/api/v1/namespaces/d/pods",
                &[("watch", "True")][..],
                "",
                "WATCH",
                "namespace",
            ),
            (
                "GET",
                "/api/v1/watch/namespaces/d/pods",
                &[][..],
                "",
                "WATCH",
                "namespace",
            ),
            (
                "POST",
                "/api/v1/namespaces/d/pods",
                &[][..],
                "",
                "POST",
                "resource",
            ),
            (
                "PATCH",
                "/apis/apps/v1/namespaces/d/deployments/x",
                &[][..],
                "application/apply-patch+yaml",
                "APPLY",
                "resource",
            ),
            (
                "PATCH",
                "/apis/apps/v1/namespaces/d/deployments/x",
                &[][..],
                "application/merge-patch+json",
                "PATCH",
                "resource",
            ),
            (
                "DELETE",
                "/api/v1/namespaces/d/configmaps",
                &[][..],
                "",
                "DELETE",
                "namespace",
            ),
            (
                "GET",
                "/api/v1/namespaces/d/pods/p/log",
                &[][..],
                "",
                "CONNECT",
                "resource",
            ),
        ];
        for (method, path, q, ct, verb, scope) in cases {
            let l = labels(method, path, q, ct).unwrap_or_else(|| panic!("{method} {path}"));
            assert_eq!((l.verb, l.scope), (verb, scope), "{method} {path}");
        }
    }

    #[test]
    fn unknown_resources_are_not_labelled() {
        assert!(labels("GET", "/api/v1/namespaces/d/nonsense", &[], "").is_none());
        assert!(labels("GET", "/apis/x.example/v1/things", &[], "").is_none());
        assert!(labels("GET", "/api/v1/namespaces/d/pods/p/nonsense", &[], "").is_none());
        assert!(labels("GET", "/healthz", &[], "").is_none());
        let l = labels(
            "POST",
            "/api/v1/namespaces/d/pods",
            &[("dryRun", "All")],
            "",
        )
        .unwrap();
        assert_eq!(l.dry_run, "All");
        let l = labels("POST", "/api/v1/namespaces/d/pods", &[("dryRun", "x")], "").unwrap();
        assert_eq!(l.dry_run, "invalid");
    }

    #[test]
    fn store_types_are_group_resources() {
        assert_eq!(store_type(b"/registry/pods/default/p"), "pods");
        assert_eq!(store_type(b"/registry/deployments/d/x"), "deployments.apps");
        assert_eq!(store_type(b"/registry/whatever/x"), "other");
        assert_eq!(store_type(b"/elsewhere"), "other");
    }

    #[test]
    fn sources_are_appended() {
        let source = Source::new(|out: &mut String| {
            out.push_str("# TYPE extra_total counter\nextra_total 7\n");
        });
        let text = Metrics::with_sources(vec![source]).render();
        assert!(text.contains("process_open_fds "), "{text}");
        assert!(text.ends_with("extra_total 7\n"), "{text}");
        let mut process = String::new();
        render_process(&mut process);
        assert!(process.contains("process_start_time_seconds "), "{process}");
        assert!(!process.contains("apiserver_"), "{process}");
    }

    #[test]
    fn process_metrics_are_read() {
        let text = Metrics::new().render();
        for name in [
            "process_cpu_seconds_total ",
            "process_resident_memory_bytes ",
            "process_open_fds ",
            "process_start_time_seconds ",
            "apiserver_current_inflight_requests{request_kind=\"readOnly\"} 0",
        ] {
            assert!(text.contains(name), "{name} in {text}");
        }
    }
}
