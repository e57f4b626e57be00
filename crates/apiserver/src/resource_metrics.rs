//! `metrics.k8s.io/v1beta1` (`kubectl top`), as metrics-server serves it, answered from the
//! node agents: each agent measures its node and its running containers when asked
//! (`GET /stats/resource`, see `rudder_agent::stats`), so there is no scraping loop and
//! nothing to deploy. Nodes and pods are those of the core API, with its label and field
//! selectors; one whose agent does not answer has no metrics (listed without it, or
//! NotFound by name), as metrics-server leaves out what it could not scrape.

use std::collections::{BTreeMap, HashMap};

use axum::http::StatusCode;
use axum::response::Response;
use futures::future::join_all;
use rudder_api::catalogue::ResourceType;
use serde_json::{json, Map, Value};

use crate::error::{ApiError, Target};
use crate::handlers::{json_response, list_options, AppState, Query};
use crate::registry::ListOptions;
use crate::resources::Served;

const API_VERSION: &str = "metrics.k8s.io/v1beta1";

/// GET of `rt` (NodeMetrics or PodMetrics): the object `name`, or the list.
pub async fn serve(
    st: &AppState,
    rt: &ResourceType,
    ns: Option<&str>,
    name: Option<&str>,
    q: &Query,
) -> Result<Response, ApiError> {
    let core = |plural| {
        st.registry
            .resolve("", "v1", plural)
            .ok_or_else(|| ApiError::internal(format!("{plural} are not served")))
    };
    let nodes = core("nodes")?;
    let pods_served = (rt.kind == "PodMetrics")
        .then(|| core("pods"))
        .transpose()?;
    let of = pods_served.as_ref().unwrap_or(&nodes);
    let objects = match name {
        Some(n) => match st.registry.get(&of.res, ns, n).await {
            Ok(o) => vec![o],
            Err(e) if e.code == 404 => Vec::new(),
            Err(e) => return Err(e),
        },
        None => items(st, of, ns, &list_options(of, q)?).await?,
    };
    let metrics = match &pods_served {
        None => node_metrics(st, objects).await,
        Some(_) => pod_metrics(st, &nodes, objects).await,
    };
    let Some(name) = name else {
        let list = json!({
            "kind": format!("{}List", rt.kind),
            "apiVersion": API_VERSION,
            "metadata": {},
            "items": metrics,
        });
        return Ok(json_response(StatusCode::OK, &list));
    };
    let mut one = metrics.into_iter().next().ok_or_else(|| {
        let name = match ns {
            Some(ns) => format!("{ns}/{name}"),
            None => name.to_string(),
        };
        ApiError::not_found(Target {
            group: "metrics.k8s.io",
            name_of_type: if pods_served.is_some() {
                "podmetrics"
            } else {
                "nodemetrics"
            },
            name: &name,
        })
    })?;
    if let Some(m) = one.as_object_mut() {
        m.insert("kind".into(), json!(rt.kind));
        m.insert("apiVersion".into(), json!(API_VERSION));
    }
    Ok(json_response(StatusCode::OK, &one))
}

async fn items(
    st: &AppState,
    served: &Served,
    ns: Option<&str>,
    opts: &ListOptions,
) -> Result<Vec<Value>, ApiError> {
    let list = st.registry.list(&served.res, ns, opts).await?;
    Ok(match list {
        Value::Object(mut m) => match m.remove("items") {
            Some(Value::Array(items)) => items,
            _ => Vec::new(),
        },
        _ => Vec::new(),
    })
}

/// The agents' summaries of `nodes`, by node name (those that answered).
async fn summaries(st: &AppState, nodes: &[Value]) -> HashMap<String, Value> {
    let asked = nodes.iter().map(|n| async move {
        let name = n["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        match st.kubelets.stats(n).await {
            Ok(s) => Some((name, s)),
            Err(e) => {
                tracing::debug!(node = %name, error = %e.message, "no resource metrics");
                None
            }
        }
    });
    join_all(asked).await.into_iter().flatten().collect()
}

/// An object's metadata as metrics-server gives it: name, namespace, labels, and the
/// time the object was created.
fn metadata(obj: &Value) -> Value {
    let mut m = Map::new();
    for key in ["name", "namespace", "creationTimestamp", "labels"] {
        if let Some(v) = obj["metadata"].get(key) {
            m.insert(key.into(), v.clone());
        }
    }
    Value::Object(m)
}

fn stamp(meta: Value, summary: &Value) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("metadata".into(), meta);
    m.insert("timestamp".into(), summary["timestamp"].clone());
    m.insert(
        "window".into(),
        json!(go_duration_ms(
            summary["windowMillis"].as_u64().unwrap_or(0)
        )),
    );
    m
}

async fn node_metrics(st: &AppState, nodes: Vec<Value>) -> Vec<Value> {
    let by_node = summaries(st, &nodes).await;
    nodes
        .iter()
        .filter_map(|n| {
            let summary = by_node.get(n["metadata"]["name"].as_str()?)?;
            let mut m = stamp(metadata(n), summary);
            m.insert("usage".into(), usage(&summary["node"]));
            Some(Value::Object(m))
        })
        .collect()
}

async fn pod_metrics(st: &AppState, nodes: &Served, pods: Vec<Value>) -> Vec<Value> {
    // Only the nodes the pods run on are asked.
    let mut wanted: Vec<&str> = pods
        .iter()
        .filter_map(|p| p["spec"]["nodeName"].as_str())
        .collect();
    wanted.sort_unstable();
    wanted.dedup();
    let mut node_objects = Vec::new();
    for name in wanted {
        if let Ok(n) = st.registry.get(&nodes.res, None, name).await {
            node_objects.push(n);
        }
    }
    let by_node = summaries(st, &node_objects).await;
    // Each pod's containers in the summary of its node, by UID.
    let mut by_uid: BTreeMap<&str, (&Value, &Value)> = BTreeMap::new();
    for summary in by_node.values() {
        for p in summary["pods"].as_array().into_iter().flatten() {
            if let Some(uid) = p["uid"].as_str() {
                by_uid.insert(uid, (summary, p));
            }
        }
    }
    pods.iter()
        .filter_map(|pod| {
            let (summary, measured) = by_uid.get(pod["metadata"]["uid"].as_str()?)?;
            let containers: Vec<Value> = measured["containers"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| json!({"name": c["name"], "usage": usage(c)}))
                .collect();
            let mut m = stamp(metadata(pod), summary);
            m.insert("containers".into(), Value::Array(containers));
            Some(Value::Object(m))
        })
        .collect()
}

/// `{"cpu", "memory"}` as quantities from nanocores and bytes, in the forms metrics-server's
/// quantities take (`12345n`, `5m`; `1024Ki`, `1000`).
fn usage(figures: &Value) -> Value {
    let cpu = figures["cpu"].as_u64().unwrap_or(0);
    let memory = figures["memory"].as_u64().unwrap_or(0);
    let cpu = if cpu.is_multiple_of(1_000_000) {
        format!("{}m", cpu / 1_000_000)
    } else {
        format!("{cpu}n")
    };
    let memory = if memory.is_multiple_of(1024) && memory > 0 {
        format!("{}Ki", memory / 1024)
    } else {
        memory.to_string()
    };
    json!({"cpu": cpu, "memory": memory})
}

/// A window as Go prints a duration: `1.004s`, `15s`, `500ms`.
fn go_duration_ms(ms: u64) -> String {
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let fraction = format!("{:03}", ms % 1000);
    let fraction = fraction.trim_end_matches('0');
    if fraction.is_empty() {
        format!("{}s", ms / 1000)
    } else {
        format!("{}.{fraction}s", ms / 1000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_read_as_metrics_server_writes_them() {
        assert_eq!(
            usage(&json!({"cpu": 12_345, "memory": 2048})),
            json!({"cpu": "12345n", "memory": "2Ki"})
        );
        assert_eq!(
            usage(&json!({"cpu": 5_000_000, "memory": 1000})),
            json!({"cpu": "5m", "memory": "1000"})
        );
        assert_eq!(usage(&json!({})), json!({"cpu": "0m", "memory": "0"}));
        assert_eq!(go_duration_ms(1004), "1.004s");
        assert_eq!(go_duration_ms(15_000), "15s");
        assert_eq!(go_duration_ms(1_500), "1.5s");
        assert_eq!(go_duration_ms(500), "500ms");
    }
}
