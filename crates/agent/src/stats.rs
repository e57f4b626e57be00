//! Resource use for `kubectl top`: the node's CPU and memory from `/proc`, each running
//! container's from the runtime. CPU is a rate, so it is measured over a window: from the
//! sample the previous request left when it is between [`MIN_WINDOW`] and [`MAX_WINDOW`]
//! old, else over two samples [`MIN_WINDOW`] apart; a request within [`MIN_WINDOW`] of the
//! last answer gets that answer. Nothing is sampled between requests.
//!
//! `GET /stats/resource` on the agent's port answers
//! `{"timestamp", "windowMillis", "node": {"cpu", "memory"}, "pods": [{"uid", "name",
//! "namespace", "containers": [{"name", "cpu", "memory"}]}]}`: CPU in nanocores, memory as
//! the working set in bytes (what the kubelet's resource metrics report).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use k8s_openapi::jiff::Timestamp;
use serde_json::{json, Value};
use tokio::sync::Mutex;

use crate::runtime::{
    ContainerStats, Runtime, CONTAINER_NAME_LABEL, POD_NAMESPACE_LABEL, POD_NAME_LABEL,
    POD_UID_LABEL,
};

const MIN_WINDOW: Duration = Duration::from_secs(1);
const MAX_WINDOW: Duration = Duration::from_secs(60);

/// The last sample taken, for the next request's window, and the summary it ended.
#[derive(Default)]
pub struct Sampler {
    last: Mutex<Option<(Sample, Value)>>,
}

#[derive(Clone)]
struct Sample {
    at: Instant,
    time: Timestamp,
    node_cpu_nanos: u64,
    node_memory: u64,
    containers: Vec<ContainerStats>,
}

impl Sampler {
    /// The node's and its containers' use now, CPU over the window that ends now. Requests
    /// within [`MIN_WINDOW`] of the last answer (concurrent ones, waiting on each other) get
    /// that answer again.
    pub async fn summary(&self, runtime: &dyn Runtime) -> Value {
        let mut last = self.last.lock().await;
        if let Some((b, summary)) = last.as_ref() {
            if b.at.elapsed() < MIN_WINDOW {
                return summary.clone();
            }
        }
        let mut now = sample(runtime).await;
        let before = match last.take() {
            Some((b, _)) if now.at.duration_since(b.at) <= MAX_WINDOW => b,
            _ => {
                let first = now;
                tokio::time::sleep(MIN_WINDOW).await;
                now = sample(runtime).await;
                first
            }
        };
        let summary = between(&before, &now);
        *last = Some((now, summary.clone()));
        summary
    }
}

async fn sample(runtime: &dyn Runtime) -> Sample {
    let containers = match runtime.container_stats().await {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(error = %e, "no container stats");
            Vec::new()
        }
    };
    Sample {
        at: Instant::now(),
        time: Timestamp::now(),
        node_cpu_nanos: std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| cpu_nanos(&s, clock_ticks()))
            .unwrap_or(0),
        node_memory: std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|s| working_set(&s))
            .unwrap_or(0),
        containers,
    }
}

/// Nanocores used between two cumulative CPU times `elapsed` apart.
fn rate(before: u64, after: u64, elapsed: Duration) -> u64 {
    let used = u128::from(after.saturating_sub(before));
    let nanos = elapsed.as_nanos().max(1);
    u64::try_from(used * 1_000_000_000 / nanos).unwrap_or(u64::MAX)
}

fn between(before: &Sample, now: &Sample) -> Value {
    let elapsed = now.at.duration_since(before.at);
    let earlier: HashMap<&str, u64> = before
        .containers
        .iter()
        .map(|c| (c.id.as_str(), c.cpu_core_nanos))
        .collect();
    // Containers by pod, those seen in both samples (a rate needs two).
    let mut pods: BTreeMap<(&str, &str, &str), Vec<Value>> = BTreeMap::new();
    for c in &now.containers {
        let (Some(cpu_before), Some(uid), Some(name)) = (
            earlier.get(c.id.as_str()),
            c.labels.get(POD_UID_LABEL),
            c.labels.get(CONTAINER_NAME_LABEL),
        ) else {
            continue;
        };
        let label = |k: &str| c.labels.get(k).map_or("", String::as_str);
        pods.entry((label(POD_NAMESPACE_LABEL), label(POD_NAME_LABEL), uid))
            .or_default()
            .push(json!({
                "name": name,
                "cpu": rate(*cpu_before, c.cpu_core_nanos, elapsed),
                "memory": c.memory_working_set_bytes,
            }));
    }
    json!({
        "timestamp": now.time.to_string(),
        "windowMillis": u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
        "node": {
            "cpu": rate(before.node_cpu_nanos, now.node_cpu_nanos, elapsed),
            "memory": now.node_memory,
        },
        "pods": pods.into_iter().map(|((namespace, name, uid), containers)| json!({
            "namespace": namespace,
            "name": name,
            "uid": uid,
            "containers": containers,
        })).collect::<Vec<_>>(),
    })
}

fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).ok().filter(|&t| t > 0).unwrap_or(100)
}

/// The CPU time all CPUs spent busy, in nanoseconds, from `/proc/stat`'s `cpu` line (user,
/// nice, system, irq, softirq and steal; not idle or iowait).
fn cpu_nanos(stat: &str, ticks_per_second: u64) -> Option<u64> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    let busy: u64 = [0, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|&i| fields.get(i))
        .sum();
    Some(busy.saturating_mul(1_000_000_000 / ticks_per_second.max(1)))
}

/// The node's memory working set from `/proc/meminfo`, as the kubelet reports its root
/// cgroup's: memory in use (page cache included) less the inactive file pages.
fn working_set(meminfo: &str) -> Option<u64> {
    let kib = |key: &str| -> Option<u64> {
        meminfo
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))?
            .split_whitespace()
            .next()?
            .parse::<u64>()
            .ok()
    };
    let used = kib("MemTotal")?.saturating_sub(kib("MemFree")?);
    Some(used.saturating_sub(kib("Inactive(file)").unwrap_or(0)) * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_figures_come_from_proc() {
        let stat = "cpu  100 20 30 4000 50 6 7 8 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n";
        // user+nice+system+irq+softirq+steal = 171 ticks of 10 ms.
        assert_eq!(cpu_nanos(stat, 100), Some(1_710_000_000));
        let meminfo = "MemTotal:       1000 kB\nMemFree:         200 kB\nMemAvailable:    600 kB\nInactive(file):  300 kB\n";
        assert_eq!(working_set(meminfo), Some(500 * 1024));
        assert_eq!(working_set("nonsense"), None);
    }

    #[test]
    fn cpu_is_a_rate_over_the_window_per_pod() {
        let stats = |id: &str, pod: &str, cpu: u64| ContainerStats {
            id: id.into(),
            labels: BTreeMap::from([
                (POD_UID_LABEL.into(), format!("uid-{pod}")),
                (POD_NAME_LABEL.into(), pod.into()),
                (POD_NAMESPACE_LABEL.into(), "ns".into()),
                (CONTAINER_NAME_LABEL.into(), format!("c-{id}")),
            ]),
            cpu_core_nanos: cpu,
            memory_working_set_bytes: 4096,
        };
        let at = Instant::now();
        let before = Sample {
            at,
            time: Timestamp::now(),
            node_cpu_nanos: 1_000_000_000,
            node_memory: 1,
            containers: vec![stats("a", "p", 100), stats("b", "p", 0)],
        };
        let now = Sample {
            at: at + Duration::from_secs(2),
            time: Timestamp::now(),
            node_cpu_nanos: 2_000_000_000,
            node_memory: 2,
            containers: vec![
                stats("a", "p", 500_000_100),
                stats("b", "p", 2_000_000_000),
                // New since the first sample: no rate yet.
                stats("c", "q", 7),
            ],
        };
        let s = between(&before, &now);
        assert_eq!(s["windowMillis"], 2000);
        assert_eq!(s["node"], json!({"cpu": 500_000_000, "memory": 2}));
        assert_eq!(
            s["pods"],
            json!([{"namespace": "ns", "name": "p", "uid": "uid-p", "containers": [
                {"name": "c-a", "cpu": 250_000_000, "memory": 4096},
                {"name": "c-b", "cpu": 1_000_000_000, "memory": 4096},
            ]}])
        );
    }
}
