//! Pod garbage collection (upstream's pkg/controller/podgc), every `period`:
//!
//! - Orphaned pods: a pod bound to a node that does not exist. The node is first held in
//!   quarantine (`quarantine`, so that a node the cache has not seen yet is not taken for a
//!   deleted one), then looked up live; if it is still missing, its pods get the
//!   `DisruptionTarget` condition (`DeletionByPodGC`, "PodGC: node no longer exists"), phase
//!   Failed, and are deleted at once.
//! - Unscheduled terminating pods: a pod being deleted that no node will ever finish is
//!   deleted at once.
//! - Terminated pods (Succeeded or Failed) beyond `--terminated-pod-gc-threshold` are deleted,
//!   oldest first (0 turns this off).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::Future;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, Preconditions};
use kube::ResourceExt;

use crate::informers::Informers;

/// How pod GC runs.
#[derive(Clone, Debug)]
pub struct Config {
    /// Terminated pods kept before the oldest are deleted (`--terminated-pod-gc-threshold`);
    /// 0: never.
    pub terminated_threshold: usize,
    /// How often pods are looked at.
    pub period: Duration,
    /// How long a node must be missing before its pods are deleted.
    pub quarantine: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            terminated_threshold: 12500,
            period: Duration::from_secs(5),
            quarantine: Duration::from_secs(10),
        }
    }
}

/// Runs the controller until the task is dropped.
pub fn run(informers: &Informers, cfg: Config) -> impl Future<Output = ()> + Send {
    let client = informers.client().clone();
    let pods = informers.store::<Pod>();
    let nodes = informers.store::<Node>();
    async move {
        if pods.wait_until_ready().await.is_err() || nodes.wait_until_ready().await.is_err() {
            return;
        }
        let nodes_api: Api<Node> = Api::all(client.clone());
        let mut missing: HashMap<String, Instant> = HashMap::new();
        let mut tick = tokio::time::interval(cfg.period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let _pass = crate::metrics::PassTimer::new("pod-garbage-collector-controller");
            let pods = pods.state();
            let existing: HashSet<String> = nodes.state().iter().map(|n| n.name_any()).collect();

            // Terminated pods beyond the threshold.
            for pod in excess_terminated(&pods, cfg.terminated_threshold) {
                delete(&client, pod, None).await;
            }

            // Orphaned pods: quarantine, then a live look.
            let now = Instant::now();
            let wanted: HashSet<&str> = pods
                .iter()
                .filter_map(|p| node_name(p))
                .filter(|n| !existing.contains(*n))
                .collect();
            missing.retain(|n, _| wanted.contains(n.as_str()));
            let mut gone = HashSet::new();
            for n in wanted {
                let since = *missing.entry(n.to_string()).or_insert(now);
                if now.duration_since(since) < cfg.quarantine {
                    continue;
                }
                match nodes_api.get_opt(n).await {
                    Ok(None) => {
                        gone.insert(n.to_string());
                    }
                    Ok(Some(_)) => {
                        missing.remove(n);
                    }
                    Err(e) => tracing::debug!(node = n, error = %e, "pod GC node lookup"),
                }
            }
            for pod in &pods {
                if node_name(pod).is_some_and(|n| gone.contains(n)) {
                    tracing::info!(
                        namespace = pod.namespace().unwrap_or_default(),
                        pod = %pod.name_any(),
                        node = node_name(pod).unwrap_or(""),
                        "deleting a pod whose node no longer exists"
                    );
                    delete(
                        &client,
                        pod,
                        Some(("DeletionByPodGC", "PodGC: node no longer exists")),
                    )
                    .await;
                }
            }

            // Unscheduled pods being deleted.
            for pod in &pods {
                if pod.metadata.deletion_timestamp.is_some() && node_name(pod).is_none() {
                    delete(&client, pod, None).await;
                }
            }
        }
    }
}

fn node_name(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn terminated(pod: &Pod) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed")
}

/// The terminated pods beyond `threshold`, oldest first (evicted ones before others, as
/// upstream orders them); none when the threshold is 0.
pub fn excess_terminated(pods: &[Arc<Pod>], threshold: usize) -> Vec<&Pod> {
    if threshold == 0 {
        return Vec::new();
    }
    let mut done: Vec<&Pod> = pods
        .iter()
        .map(|p| &**p)
        .filter(|p| terminated(p))
        .collect();
    if done.len() <= threshold {
        return Vec::new();
    }
    let evicted = |p: &Pod| p.status.as_ref().and_then(|s| s.reason.as_deref()) == Some("Evicted");
    done.sort_by(|a, b| {
        evicted(b)
            .cmp(&evicted(a))
            .then_with(|| {
                a.metadata
                    .creation_timestamp
                    .cmp(&b.metadata.creation_timestamp)
            })
            .then_with(|| a.metadata.name.cmp(&b.metadata.name))
    });
    let n = done.len() - threshold;
    done.truncate(n);
    done
}

/// Marks a pod Failed (with a DisruptionTarget condition when given) unless it has
/// terminated already, then deletes it at once, as upstream's markFailedAndDeletePod.
async fn delete(client: &kube::Client, pod: &Pod, condition: Option<(&str, &str)>) {
    let ns = pod.namespace().unwrap_or_default();
    let name = pod.name_any();
    let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    if !terminated(pod) {
        let status = match condition {
            Some((reason, message)) => serde_json::json!({
                "phase": "Failed",
                "conditions": [{
                    "type": "DisruptionTarget",
                    "status": "True",
                    "reason": reason,
                    "message": message,
                    "lastTransitionTime": Time(Timestamp::now()),
                }],
            }),
            None => serde_json::json!({"phase": "Failed"}),
        };
        let patch = serde_json::json!({"status": status});
        if let Err(e) = api
            .patch_status(&name, &crate::patch_params(), &Patch::Strategic(&patch))
            .await
        {
            tracing::debug!(pod = %name, error = %e, "pod GC marking a pod Failed");
        }
    }
    let dp = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: pod.metadata.uid.clone().map(|uid| Preconditions {
            uid: Some(uid),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(&name, &dp).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
        Err(e) => tracing::warn!(namespace = %ns, pod = %name, error = %e, "pod GC delete"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, phase: &str, created: &str, reason: Option<&str>) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name, "namespace": "a", "creationTimestamp": created},
                "status": {"phase": phase, "reason": reason},
            }))
            .unwrap(),
        )
    }

    #[test]
    fn the_oldest_terminated_pods_beyond_the_threshold_go_evicted_first() {
        let pods = vec![
            pod("new", "Succeeded", "2026-01-03T00:00:00Z", None),
            pod("running", "Running", "2026-01-01T00:00:00Z", None),
            pod("old", "Failed", "2026-01-01T00:00:00Z", None),
            pod("evicted", "Failed", "2026-01-05T00:00:00Z", Some("Evicted")),
            pod("mid", "Succeeded", "2026-01-02T00:00:00Z", None),
        ];
        let names = |v: Vec<&Pod>| v.iter().map(|p| p.name_any()).collect::<Vec<_>>();
        assert_eq!(names(excess_terminated(&pods, 2)), vec!["evicted", "old"]);
        assert_eq!(names(excess_terminated(&pods, 3)), vec!["evicted"]);
        assert!(excess_terminated(&pods, 4).is_empty());
        assert!(excess_terminated(&pods, 0).is_empty());
    }
}
