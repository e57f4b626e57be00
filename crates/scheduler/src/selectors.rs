//! Label selectors (pods, namespaces) and node selector terms, matched on typed objects.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{NodeSelectorRequirement, NodeSelectorTerm, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

type Labels = BTreeMap<String, String>;

fn get<'a>(labels: Option<&'a Labels>, key: &str) -> Option<&'a str> {
    labels.and_then(|l| l.get(key)).map(String::as_str)
}

/// Whether a `metav1.LabelSelector` matches: an empty selector matches everything.
pub fn label_selector_matches(sel: &LabelSelector, labels: Option<&Labels>) -> bool {
    for (k, v) in sel.match_labels.iter().flatten() {
        if get(labels, k) != Some(v.as_str()) {
            return false;
        }
    }
    sel.match_expressions
        .iter()
        .flatten()
        .all(|r| requirement_matches(r, labels))
}

fn requirement_matches(r: &LabelSelectorRequirement, labels: Option<&Labels>) -> bool {
    let v = get(labels, &r.key);
    let values = r.values.as_deref().unwrap_or(&[]);
    match r.operator.as_str() {
        "In" => v.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => !v.is_some_and(|v| values.iter().any(|x| x == v)),
        "Exists" => v.is_some(),
        "DoesNotExist" => v.is_none(),
        _ => false,
    }
}

/// Whether a node selector requirement holds for a value (`None`: label absent).
fn node_requirement_matches(r: &NodeSelectorRequirement, v: Option<&str>) -> bool {
    let values = r.values.as_deref().unwrap_or(&[]);
    let int = |s: &str| s.parse::<i64>().ok();
    match r.operator.as_str() {
        "In" => v.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => !v.is_some_and(|v| values.iter().any(|x| x == v)),
        "Exists" => v.is_some(),
        "DoesNotExist" => v.is_none(),
        "Gt" | "Lt" => {
            let (Some(have), [want]) = (v.and_then(int), values) else {
                return false;
            };
            let Some(want) = int(want) else {
                return false;
            };
            if r.operator == "Gt" {
                have > want
            } else {
                have < want
            }
        }
        _ => false,
    }
}

/// Whether a node selector term holds for a node: every expression on its labels and every
/// field (only `metadata.name`) on its name. A term with neither matches nothing.
pub fn node_term_matches(term: &NodeSelectorTerm, name: &str, labels: Option<&Labels>) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or(&[]);
    let fields = term.match_fields.as_deref().unwrap_or(&[]);
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    exprs
        .iter()
        .all(|r| node_requirement_matches(r, get(labels, &r.key)))
        && fields
            .iter()
            .all(|r| r.key == "metadata.name" && node_requirement_matches(r, Some(name)))
}

/// Whether a toleration tolerates a taint (as `Toleration.ToleratesTaint`).
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if let Some(e) = t.effect.as_deref().filter(|e| !e.is_empty()) {
        if e != taint.effect {
            return false;
        }
    }
    let key = t.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match t.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => {
            !key.is_empty()
                && t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
        _ => false,
    }
}

pub fn tolerated(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| tolerates(t, taint))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{from_value, json};

    fn labels(v: serde_json::Value) -> Labels {
        from_value(v).unwrap()
    }

    #[test]
    fn label_selectors() {
        let l = labels(json!({"app": "web", "tier": "front"}));
        let s: LabelSelector = from_value(json!({"matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["front", "x"]},
                                 {"key": "gone", "operator": "DoesNotExist"}]}))
        .unwrap();
        assert!(label_selector_matches(&s, Some(&l)));
        let s: LabelSelector = from_value(json!({"matchExpressions": [
            {"key": "tier", "operator": "NotIn", "values": ["front"]}]}))
        .unwrap();
        assert!(!label_selector_matches(&s, Some(&l)));
        assert!(label_selector_matches(&LabelSelector::default(), None));
    }

    #[test]
    fn node_terms_with_fields_and_numbers() {
        let l = labels(json!({"cores": "8", "zone": "a"}));
        let t: NodeSelectorTerm = from_value(json!({"matchExpressions": [
            {"key": "cores", "operator": "Gt", "values": ["4"]},
            {"key": "zone", "operator": "Exists"}]}))
        .unwrap();
        assert!(node_term_matches(&t, "n1", Some(&l)));
        let t: NodeSelectorTerm = from_value(json!({"matchFields": [
            {"key": "metadata.name", "operator": "In", "values": ["n2"]}]}))
        .unwrap();
        assert!(!node_term_matches(&t, "n1", Some(&l)));
        assert!(node_term_matches(&t, "n2", Some(&l)));
        assert!(!node_term_matches(
            &NodeSelectorTerm::default(),
            "n1",
            Some(&l)
        ));
    }

    #[test]
    fn tolerations() {
        let taint: Taint =
            from_value(json!({"key": "k", "value": "v", "effect": "NoSchedule"})).unwrap();
        let ok = |t: serde_json::Value| tolerates(&from_value(t).unwrap(), &taint);
        assert!(ok(json!({"key": "k", "value": "v"})));
        assert!(ok(
            json!({"key": "k", "operator": "Exists", "effect": "NoSchedule"})
        ));
        assert!(ok(json!({"operator": "Exists"})));
        assert!(!ok(json!({"key": "k", "value": "w"})));
        assert!(!ok(
            json!({"key": "k", "operator": "Exists", "effect": "NoExecute"})
        ));
    }
}
