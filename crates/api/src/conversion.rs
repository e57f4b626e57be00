//! Conversion between a served version and the storage version, for the kinds served in more
//! than one shape (see [`crate::catalogue`]): `autoscaling/v1` HorizontalPodAutoscalers are
//! stored as `autoscaling/v2`, `events.k8s.io/v1` Events as core `v1` Events.
//!
//! Both directions are lossless for what the other side can hold: what `autoscaling/v1` has no
//! field for (metrics other than CPU utilization, behavior, conditions) travels in the same
//! annotations upstream uses, so a v2 object read and written back through v1 keeps them.

use serde_json::{json, Map, Value};

/// How a served version differs from its storage version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conversion {
    /// `autoscaling/v1` HorizontalPodAutoscaler ↔ `autoscaling/v2`.
    HpaV1,
    /// `events.k8s.io/v1` Event ↔ core `v1` Event.
    EventsV1,
}

impl Conversion {
    /// The conversion needed to serve `group/version` `kind`, if it is not its storage form.
    pub fn for_served(group: &str, version: &str, kind: &str) -> Option<Conversion> {
        match (group, version, kind) {
            ("autoscaling", "v1", "HorizontalPodAutoscaler") => Some(Conversion::HpaV1),
            ("events.k8s.io", "v1", "Event") => Some(Conversion::EventsV1),
            _ => None,
        }
    }

    /// The storage form of an object of the served version (kind and apiVersion included).
    pub fn to_storage(self, obj: Value) -> Value {
        match self {
            Conversion::HpaV1 => hpa_v1_to_v2(obj),
            Conversion::EventsV1 => events_to_core(obj),
        }
    }

    /// The served form of a stored object (kind and apiVersion included).
    pub fn from_storage(self, obj: Value) -> Value {
        match self {
            Conversion::HpaV1 => hpa_v2_to_v1(obj),
            Conversion::EventsV1 => core_to_events(obj),
        }
    }
}

const METRICS: &str = "autoscaling.alpha.kubernetes.io/metrics";
const CURRENT_METRICS: &str = "autoscaling.alpha.kubernetes.io/current-metrics";
const CONDITIONS: &str = "autoscaling.alpha.kubernetes.io/conditions";
const BEHAVIOR: &str = "autoscaling.alpha.kubernetes.io/behavior";

fn take_object(obj: &mut Value, key: &str) -> Map<String, Value> {
    match obj.as_object_mut().and_then(|m| m.remove(key)) {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    }
}

/// Removes an annotation holding JSON and parses it.
fn take_annotation(meta: &mut Map<String, Value>, key: &str) -> Option<Value> {
    let annotations = meta.get_mut("annotations")?.as_object_mut()?;
    let text = annotations.remove(key)?;
    if annotations.is_empty() {
        meta.remove("annotations");
    }
    serde_json::from_str(text.as_str()?).ok()
}

fn put_annotation(meta: &mut Map<String, Value>, key: &str, value: &Value) {
    let annotations = meta
        .entry("annotations")
        .or_insert_with(|| json!({}))
        .as_object_mut();
    if let Some(a) = annotations {
        a.insert(key.into(), Value::String(value.to_string()));
    }
}

/// Whether a v2 metric is the CPU utilization target v1 has a field for.
fn cpu_utilization(metric: &Value, target: &str) -> Option<Value> {
    if metric["type"] != "Resource" || metric["resource"]["name"] != "cpu" {
        return None;
    }
    let t = &metric["resource"][target];
    let utilization = t.get("averageUtilization").filter(|v| !v.is_null())?;
    if target == "target" && t["type"] != "Utilization" {
        return None;
    }
    Some(utilization.clone())
}

fn hpa_v2_to_v1(mut obj: Value) -> Value {
    let mut meta = take_object(&mut obj, "metadata");
    let mut spec = take_object(&mut obj, "spec");
    let mut status = take_object(&mut obj, "status");
    let metrics = match spec.remove("metrics") {
        Some(Value::Array(m)) => m,
        _ => Vec::new(),
    };
    let mut others = Vec::new();
    for m in metrics {
        match cpu_utilization(&m, "target") {
            Some(u) if !spec.contains_key("targetCPUUtilizationPercentage") => {
                spec.insert("targetCPUUtilizationPercentage".into(), u);
            }
            _ => others.push(m),
        }
    }
    if !others.is_empty() {
        put_annotation(&mut meta, METRICS, &Value::Array(others));
    }
    if let Some(b) = spec.remove("behavior") {
        put_annotation(&mut meta, BEHAVIOR, &b);
    }
    let current = match status.remove("currentMetrics") {
        Some(Value::Array(m)) => m,
        _ => Vec::new(),
    };
    let mut others = Vec::new();
    for m in current {
        match cpu_utilization(&m, "current") {
            Some(u) if !status.contains_key("currentCPUUtilizationPercentage") => {
                status.insert("currentCPUUtilizationPercentage".into(), u);
            }
            _ => others.push(m),
        }
    }
    if !others.is_empty() {
        put_annotation(&mut meta, CURRENT_METRICS, &Value::Array(others));
    }
    if let Some(c) = status.remove("conditions") {
        put_annotation(&mut meta, CONDITIONS, &c);
    }
    let o = obj.as_object_mut().expect("an object");
    o.insert("apiVersion".into(), json!("autoscaling/v1"));
    o.insert("kind".into(), json!("HorizontalPodAutoscaler"));
    o.insert("metadata".into(), Value::Object(meta));
    o.insert("spec".into(), Value::Object(spec));
    o.insert("status".into(), Value::Object(status));
    obj
}

fn hpa_v1_to_v2(mut obj: Value) -> Value {
    if !obj.is_object() {
        return obj;
    }
    let mut meta = take_object(&mut obj, "metadata");
    let mut spec = take_object(&mut obj, "spec");
    let mut status = take_object(&mut obj, "status");
    let mut metrics = Vec::new();
    if let Some(u) = spec.remove("targetCPUUtilizationPercentage") {
        metrics.push(json!({
            "type": "Resource",
            "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": u}},
        }));
    }
    if let Some(Value::Array(m)) = take_annotation(&mut meta, METRICS) {
        metrics.extend(m);
    }
    if !metrics.is_empty() {
        spec.insert("metrics".into(), Value::Array(metrics));
    }
    if let Some(b) = take_annotation(&mut meta, BEHAVIOR) {
        spec.insert("behavior".into(), b);
    }
    let mut current = Vec::new();
    if let Some(u) = status.remove("currentCPUUtilizationPercentage") {
        current.push(json!({
            "type": "Resource",
            "resource": {"name": "cpu", "current": {"averageUtilization": u}},
        }));
    }
    if let Some(Value::Array(m)) = take_annotation(&mut meta, CURRENT_METRICS) {
        current.extend(m);
    }
    if !current.is_empty() {
        status.insert("currentMetrics".into(), Value::Array(current));
    }
    if let Some(c) = take_annotation(&mut meta, CONDITIONS) {
        status.insert("conditions".into(), c);
    }
    let o = obj.as_object_mut().expect("an object");
    o.insert("apiVersion".into(), json!("autoscaling/v2"));
    o.insert("kind".into(), json!("HorizontalPodAutoscaler"));
    o.insert("metadata".into(), Value::Object(meta));
    o.insert("spec".into(), Value::Object(spec));
    if !status.is_empty() {
        o.insert("status".into(), Value::Object(status));
    }
    obj
}

/// Core `v1` Event field ↔ `events.k8s.io/v1` Event field, for the fields that only differ by
/// name.
const EVENT_FIELDS: &[(&str, &str)] = &[
    ("involvedObject", "regarding"),
    ("message", "note"),
    ("reportingComponent", "reportingController"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
];

fn rename(obj: &mut Value, pairs: impl Iterator<Item = (&'static str, &'static str)>) {
    let Some(m) = obj.as_object_mut() else {
        return;
    };
    let moved: Vec<(&str, Value)> = pairs
        .filter_map(|(from, to)| m.remove(from).map(|v| (to, v)))
        .collect();
    for (to, v) in moved {
        m.insert(to.into(), v);
    }
}

fn core_to_events(mut obj: Value) -> Value {
    rename(&mut obj, EVENT_FIELDS.iter().copied());
    if let Some(m) = obj.as_object_mut() {
        // Upstream's zero values that core Events carry and events.k8s.io ones do not.
        if m.get("deprecatedCount") == Some(&json!(0)) {
            m.remove("deprecatedCount");
        }
        if m.get("deprecatedSource") == Some(&json!({})) {
            m.remove("deprecatedSource");
        }
        m.insert("apiVersion".into(), json!("events.k8s.io/v1"));
        m.insert("kind".into(), json!("Event"));
    }
    obj
}

fn events_to_core(mut obj: Value) -> Value {
    rename(&mut obj, EVENT_FIELDS.iter().map(|&(a, b)| (b, a)));
    if let Some(m) = obj.as_object_mut() {
        m.insert("apiVersion".into(), json!("v1"));
        m.insert("kind".into(), json!("Event"));
    }
    obj
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hpa_round_trips_through_v1() {
        let v2 = json!({
            "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web", "namespace": "default", "annotations": {"a": "b"}},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "minReplicas": 1, "maxReplicas": 5,
                "metrics": [
                    {"type": "Resource", "resource": {"name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": 60}}},
                    {"type": "Resource", "resource": {"name": "memory",
                        "target": {"type": "AverageValue", "averageValue": "100Mi"}}},
                ],
                "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300}},
            },
            "status": {
                "currentReplicas": 2, "desiredReplicas": 2,
                "currentMetrics": [{"type": "Resource", "resource": {"name": "cpu",
                    "current": {"averageUtilization": 40}}}],
                "conditions": [{"type": "AbleToScale", "status": "True"}],
            },
        });
        let v1 = Conversion::HpaV1.from_storage(v2.clone());
        assert_eq!(v1["apiVersion"], "autoscaling/v1");
        assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 60);
        assert_eq!(v1["status"]["currentCPUUtilizationPercentage"], 40);
        assert!(v1["spec"].get("metrics").is_none());
        let ann = v1["metadata"]["annotations"].as_object().unwrap();
        assert!(ann[METRICS].as_str().unwrap().contains("memory"));
        assert!(ann.contains_key(BEHAVIOR) && ann.contains_key(CONDITIONS));
        assert_eq!(Conversion::HpaV1.to_storage(v1), v2);
    }

    #[test]
    fn plain_v1_hpa_becomes_a_cpu_metric() {
        let v1 = json!({
            "apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"},
                "maxReplicas": 3, "targetCPUUtilizationPercentage": 50},
        });
        let v2 = Conversion::HpaV1.to_storage(v1.clone());
        assert_eq!(
            v2["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
            50
        );
        assert!(v2["metadata"].get("annotations").is_none());
        let mut back = Conversion::HpaV1.from_storage(v2);
        back.as_object_mut().unwrap().remove("status");
        assert_eq!(back, v1);
    }

    #[test]
    fn events_rename_fields_both_ways() {
        let core = json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": "e1", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "p"},
            "reason": "Started", "message": "started container", "type": "Normal",
            "source": {"component": "kubelet"}, "count": 3,
            "firstTimestamp": "2024-01-01T00:00:00Z", "lastTimestamp": "2024-01-01T00:01:00Z",
            "reportingComponent": "kubelet", "reportingInstance": "node1",
        });
        let ev = Conversion::EventsV1.from_storage(core.clone());
        assert_eq!(ev["apiVersion"], "events.k8s.io/v1");
        assert_eq!(ev["regarding"]["name"], "p");
        assert_eq!(ev["note"], "started container");
        assert_eq!(ev["deprecatedCount"], 3);
        assert_eq!(ev["reportingController"], "kubelet");
        assert!(ev.get("involvedObject").is_none() && ev.get("message").is_none());
        assert_eq!(Conversion::EventsV1.to_storage(ev), core);
    }

    #[test]
    fn every_row_served_in_another_form_has_a_conversion() {
        for r in crate::catalogue::RESOURCES {
            let Some(st) = r.storage else { continue };
            let differs = (st.group, st.version, st.kind) != (r.group, r.version, r.kind);
            assert_eq!(
                Conversion::for_served(r.group, r.version, r.kind).is_some(),
                differs,
                "{}/{} {}",
                r.group,
                r.version,
                r.kind
            );
        }
    }
}
