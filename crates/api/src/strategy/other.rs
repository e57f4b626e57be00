//! The remaining groups: networking (Ingress, IngressClass, NetworkPolicy), policy
//! (PodDisruptionBudget), autoscaling (HorizontalPodAutoscaler), scheduling (PriorityClass),
//! storage (StorageClass), RBAC, coordination (Lease) and discovery (EndpointSlice).

use std::collections::BTreeSet;

use serde_json::{json, Value};

use super::apps::int_or_percent;
use super::corev1::cidr_field;
use super::pod::protocol;
use super::util::*;
use crate::validation::{self, FieldError};

// ---- networking ----------------------------------------------------------------------------

pub(crate) fn prepare_ingress(obj: &mut Value, old: Option<&Value>) {
    if old.is_none() {
        reset_status(obj, json!({"loadBalancer": {}}));
    }
}

fn wildcard_host(errs: &mut Vec<FieldError>, host: &str, path: &str) {
    let ok = host
        .strip_prefix("*.")
        .is_some_and(|rest| validation::dns1123_subdomain(rest).is_empty());
    if host.len() > 253 {
        errs.push(invalid_str(
            path,
            host,
            "must be no more than 253 characters",
        ));
    }
    if !ok {
        errs.push(invalid_str(
            path,
            host,
            "a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS subdomain, which must consist of lower case alphanumeric characters, '-' or '.' and end with an alphanumeric character (e.g. '*.example.com', regex used for validation is '\\*\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
        ));
    }
}

fn path_segment(errs: &mut Vec<FieldError>, value: &str, path: &str) {
    for m in validation::NameRule::PathSegment.check(value) {
        errs.push(invalid_str(path, value, &m));
    }
}

fn ingress_backend(errs: &mut Vec<FieldError>, b: &Value, p: &str) {
    let resource = get(b, "resource");
    let service = get(b, "service");
    match (resource, service) {
        (Some(_), Some(_)) => errs.push(invalid(
            p,
            "\"\"",
            "cannot set both resource and service backends",
        )),
        (Some(r), None) => {
            let rp = format!("{p}.resource");
            if let Some(g) = s(r, "apiGroup") {
                subdomain(errs, g, &format!("{rp}.apiGroup"));
            }
            for field in ["kind", "name"] {
                let v = sz(r, field);
                if v.is_empty() {
                    errs.push(required(
                        format!("{rp}.{field}"),
                        &format!("{field} is required"),
                    ));
                } else {
                    path_segment(errs, v, &format!("{rp}.{field}"));
                }
            }
        }
        (None, Some(svc)) => {
            let name = sz(svc, "name");
            if name.is_empty() {
                errs.push(required(format!("{p}.service.name"), ""));
            } else {
                for m in validation::dns1035_label(name) {
                    errs.push(invalid_str(format!("{p}.service.name"), name, &m));
                }
            }
            let port = svc.get("port").unwrap_or(&Value::Null);
            let pname = sz(port, "name");
            let pnum = int(port, "number").unwrap_or(0);
            if !pname.is_empty() && pnum != 0 {
                errs.push(invalid(
                    p,
                    "\"\"",
                    "cannot set both port name & port number",
                ));
            } else if !pname.is_empty() {
                for m in port_name_errors(pname) {
                    errs.push(invalid_str(format!("{p}.service.port.name"), pname, &m));
                }
            } else if pnum != 0 {
                if !(1..=65535).contains(&pnum) {
                    errs.push(invalid_int(
                        format!("{p}.service.port.number"),
                        pnum,
                        &inclusive_range(1, 65535),
                    ));
                }
            } else {
                errs.push(required(p, "port name or number is required"));
            }
        }
        (None, None) => errs.push(invalid(
            p,
            "\"\"",
            "resource or service backend is required",
        )),
    }
}

pub(crate) fn validate_ingress(obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let rules = arr(spec, "rules");
    if rules.is_empty() && get(spec, "defaultBackend").is_none() {
        errs.push(invalid(
            "spec",
            "[]networking.IngressRule(nil)",
            "either `defaultBackend` or `rules` must be specified",
        ));
    }
    if let Some(b) = get(spec, "defaultBackend") {
        ingress_backend(&mut errs, b, "spec.defaultBackend");
    }
    for (i, rule) in rules.iter().enumerate() {
        let rp = format!("spec.rules[{i}]");
        let host = sz(rule, "host");
        if !host.is_empty() {
            if host.parse::<std::net::IpAddr>().is_ok() {
                errs.push(invalid_str(
                    format!("{rp}.host"),
                    host,
                    "must be a DNS name, not an IP address",
                ));
            }
            if host.contains('*') {
                wildcard_host(&mut errs, host, &format!("{rp}.host"));
            } else {
                subdomain(&mut errs, host, &format!("{rp}.host"));
            }
        }
        let Some(http) = get(rule, "http") else {
            continue;
        };
        let paths = arr(http, "paths");
        if paths.is_empty() {
            errs.push(required(format!("{rp}.http.paths"), ""));
        }
        for (j, path) in paths.iter().enumerate() {
            let pp = format!("{rp}.http.paths[{j}]");
            let value = sz(path, "path");
            match s(path, "pathType") {
                None => {
                    errs.push(required(
                        format!("{pp}.pathType"),
                        "pathType must be specified",
                    ));
                    continue;
                }
                Some("Exact" | "Prefix") => {
                    if !value.starts_with('/') {
                        errs.push(invalid_str(
                            format!("{pp}.path"),
                            value,
                            "must be an absolute path",
                        ));
                    }
                    if !value.is_empty() {
                        for seq in ["//", "/./", "/../", "%2f", "%2F"] {
                            if value.contains(seq) {
                                errs.push(invalid_str(
                                    format!("{pp}.path"),
                                    value,
                                    &format!("must not contain '{seq}'"),
                                ));
                            }
                        }
                        for suffix in ["/..", "/."] {
                            if value.ends_with(suffix) {
                                errs.push(invalid_str(
                                    format!("{pp}.path"),
                                    value,
                                    &format!("cannot end with '{suffix}'"),
                                ));
                            }
                        }
                    }
                }
                Some("ImplementationSpecific") => {
                    if !value.is_empty() && !value.starts_with('/') {
                        errs.push(invalid_str(
                            format!("{pp}.path"),
                            value,
                            "must be an absolute path",
                        ));
                    }
                }
                Some(other) => errs.push(not_supported(
                    format!("{pp}.pathType"),
                    q(other),
                    &["Exact", "ImplementationSpecific", "Prefix"],
                )),
            }
            ingress_backend(
                &mut errs,
                path.get("backend").unwrap_or(&Value::Null),
                &format!("{pp}.backend"),
            );
        }
    }
    for (i, tls) in arr(spec, "tls").iter().enumerate() {
        for (j, host) in arr(tls, "hosts").iter().enumerate() {
            let host = host.as_str().unwrap_or("");
            let hp = format!("spec.tls[{i}].hosts[{j}]");
            if host.contains('*') {
                wildcard_host(&mut errs, host, &hp);
            } else {
                subdomain(&mut errs, host, &hp);
            }
        }
        let secret = sz(tls, "secretName");
        if !secret.is_empty() {
            subdomain(&mut errs, secret, &format!("spec.tls[{i}].secretName"));
        }
    }
    if let Some(class) = s(spec, "ingressClassName") {
        subdomain(&mut errs, class, "spec.ingressClassName");
    }
    if old.is_none() {
        let annotation = at(
            obj,
            &["metadata", "annotations", "kubernetes.io/ingress.class"],
        )
        .and_then(Value::as_str);
        if let (Some(a), Some(c)) = (annotation, s(spec, "ingressClassName")) {
            if a != c {
                errs.push(invalid_str(
                    "annotations.kubernetes.io/ingress.class",
                    a,
                    "must match `ingressClassName` when both are specified",
                ));
            }
        }
    }
    errs
}

pub(crate) fn prepare_ingress_class(obj: &mut Value) {
    if let Some(params) = child_if(obj, "spec").and_then(|s| child_if(s, "parameters")) {
        default(params, "scope", json!("Cluster"));
    }
}

pub(crate) fn validate_ingress_class(obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let controller = sz(spec, "controller");
    if controller.len() > 250 {
        errs.push(too_long("spec.controller", 250));
    }
    domain_prefixed_path(&mut errs, controller, "spec.controller");
    if let Some(params) = get(spec, "parameters") {
        let pp = "spec.parameters";
        if let Some(g) = s(params, "apiGroup") {
            subdomain(&mut errs, g, &format!("{pp}.apiGroup"));
        }
        for field in ["kind", "name"] {
            let v = sz(params, field);
            if v.is_empty() {
                errs.push(required(
                    format!("{pp}.{field}"),
                    &format!("{field} is required"),
                ));
            } else {
                path_segment(&mut errs, v, &format!("{pp}.{field}"));
            }
        }
        match s(params, "scope") {
            None => errs.push(required(format!("{pp}.scope"), "")),
            Some("Namespace") => match s(params, "namespace") {
                None => errs.push(required(
                    format!("{pp}.namespace"),
                    "`parameters.scope` is set to 'Namespace'",
                )),
                Some(ns) => dns_label(&mut errs, ns, &format!("{pp}.namespace")),
            },
            Some("Cluster") => {
                if get(params, "namespace").is_some() {
                    errs.push(forbidden(
                        format!("{pp}.namespace"),
                        "`parameters.scope` is set to 'Cluster'",
                    ));
                }
            }
            Some(other) => errs.push(not_supported(
                format!("{pp}.scope"),
                q(other),
                &["Cluster", "Namespace"],
            )),
        }
    }
    if let Some(old) = old {
        let old_controller = at(old, &["spec", "controller"])
            .and_then(Value::as_str)
            .unwrap_or("");
        if old_controller != controller {
            errs.push(invalid_str("spec.controller", controller, IMMUTABLE));
        }
    }
    errs
}

/// `IsDomainPrefixedPath`.
fn domain_prefixed_path(errs: &mut Vec<FieldError>, value: &str, path: &str) {
    if value.is_empty() {
        errs.push(required(path, ""));
        return;
    }
    let Some((host, rest)) = value
        .split_once('/')
        .filter(|(h, r)| !h.is_empty() && !r.is_empty())
    else {
        errs.push(invalid_str(
            path,
            value,
            "must be a domain-prefixed path (such as \"acme.io/foo\")",
        ));
        return;
    };
    for m in validation::dns1123_subdomain(host) {
        errs.push(invalid_str(path, host, &m));
    }
    let ok = rest
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || b"/-._~%!$&'()*+,;=:".contains(&c));
    if !ok {
        errs.push(invalid_str(
            path,
            rest,
            "Invalid path (regex used for validation is '[A-Za-z0-9/\\-._~%!$&'()*+,;=:]+')",
        ));
    }
}

pub(crate) fn prepare_network_policy(obj: &mut Value) {
    let Some(spec) = child_if(obj, "spec") else {
        return;
    };
    default(spec, "podSelector", json!({}));
    for key in ["ingress", "egress"] {
        for rule in each(spec, key) {
            for port in each(rule, "ports") {
                default(port, "protocol", json!("TCP"));
            }
        }
    }
    if arr(spec, "policyTypes").is_empty() {
        let mut types = vec![json!("Ingress")];
        if !arr(spec, "egress").is_empty() {
            types.push(json!("Egress"));
        }
        if let Some(m) = spec.as_object_mut() {
            m.insert("policyTypes".into(), Value::Array(types));
        }
    }
}

fn network_policy_port(errs: &mut Vec<FieldError>, port: &Value, p: &str) {
    if let Some(proto) = s(port, "protocol") {
        if !["TCP", "UDP", "SCTP"].contains(&proto) {
            errs.push(not_supported(
                format!("{p}.protocol"),
                q(proto),
                &["TCP", "UDP", "SCTP"],
            ));
        }
    }
    match get(port, "port") {
        Some(Value::Number(n)) => {
            let n = n.as_i64().unwrap_or(0);
            if !(1..=65535).contains(&n) {
                errs.push(invalid_int(
                    format!("{p}.port"),
                    n,
                    &inclusive_range(1, 65535),
                ));
            }
            if let Some(end) = int(port, "endPort") {
                if end < n {
                    errs.push(invalid_int(
                        format!("{p}.endPort"),
                        n,
                        "must be greater than or equal to `port`",
                    ));
                }
                if !(1..=65535).contains(&end) {
                    errs.push(invalid_int(
                        format!("{p}.endPort"),
                        end,
                        &inclusive_range(1, 65535),
                    ));
                }
            }
        }
        Some(Value::String(name)) => {
            if let Some(end) = int(port, "endPort") {
                errs.push(invalid_int(
                    format!("{p}.endPort"),
                    end,
                    "may not be specified when `port` is non-numeric",
                ));
            }
            for m in port_name_errors(name) {
                errs.push(invalid_str(format!("{p}.port"), name, &m));
            }
        }
        _ => {
            if let Some(end) = int(port, "endPort") {
                errs.push(invalid_int(
                    format!("{p}.endPort"),
                    end,
                    "may not be specified when `port` is not specified",
                ));
            }
        }
    }
}

fn network_policy_peer(errs: &mut Vec<FieldError>, peer: &Value, p: &str) {
    let mut count = 0;
    for key in ["podSelector", "namespaceSelector"] {
        if let Some(sel) = get(peer, key) {
            count += 1;
            validate_selector(errs, Some(sel), &format!("{p}.{key}"));
        }
    }
    let ip_block = get(peer, "ipBlock");
    if let Some(b) = ip_block {
        count += 1;
        let cidr = sz(b, "cidr");
        if cidr.is_empty() {
            errs.push(required(format!("{p}.ipBlock.cidr"), ""));
        } else {
            cidr_field(errs, cidr, &format!("{p}.ipBlock.cidr"));
            for (i, ex) in arr(b, "except").iter().enumerate() {
                cidr_field(
                    errs,
                    ex.as_str().unwrap_or(""),
                    &format!("{p}.ipBlock.except[{i}]"),
                );
            }
        }
    }
    if count == 0 {
        errs.push(required(p, "must specify a peer"));
    } else if count > 1 && ip_block.is_some() {
        errs.push(forbidden(
            p,
            "may not specify both ipBlock and another peer",
        ));
    }
}

pub(crate) fn validate_network_policy(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    validate_selector(&mut errs, spec.get("podSelector"), "spec.podSelector");
    for (key, peers) in [("ingress", "from"), ("egress", "to")] {
        for (i, rule) in arr(spec, key).iter().enumerate() {
            let rp = format!("spec.{key}[{i}]");
            for (j, port) in arr(rule, "ports").iter().enumerate() {
                network_policy_port(&mut errs, port, &format!("{rp}.ports[{j}]"));
            }
            for (j, peer) in arr(rule, peers).iter().enumerate() {
                network_policy_peer(&mut errs, peer, &format!("{rp}.{peers}[{j}]"));
            }
        }
    }
    let types = arr(spec, "policyTypes");
    if types.len() > 2 {
        errs.push(invalid(
            "spec.policyTypes",
            format!("&{}", go_strings(spec.get("policyTypes"))),
            "may not specify more than two policyTypes",
        ));
        return errs;
    }
    for (i, t) in types.iter().enumerate() {
        let t = t.as_str().unwrap_or("");
        if t != "Ingress" && t != "Egress" {
            errs.push(not_supported(
                format!("spec.policyTypes[{i}]"),
                q(t),
                &["Ingress", "Egress"],
            ));
        }
    }
    errs
}

// ---- policy --------------------------------------------------------------------------------

pub(crate) fn prepare_pdb(obj: &mut Value, old: Option<&Value>) {
    if old.is_none() {
        reset_status(
            obj,
            json!({
                "currentHealthy": 0,
                "desiredHealthy": 0,
                "disruptionsAllowed": 0,
                "expectedPods": 0,
            }),
        );
    }
}

pub(crate) fn validate_pdb(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let min = get(spec, "minAvailable");
    let max = get(spec, "maxUnavailable");
    if min.is_some() && max.is_some() {
        errs.push(invalid(
            "spec",
            spec.to_string(),
            "minAvailable and maxUnavailable cannot be both set",
        ));
    }
    int_or_percent(&mut errs, min, "spec.minAvailable", true);
    int_or_percent(&mut errs, max, "spec.maxUnavailable", true);
    validate_selector(&mut errs, spec.get("selector"), "spec.selector");
    if let Some(p) = s(spec, "unhealthyPodEvictionPolicy") {
        if p != "AlwaysAllow" && p != "IfHealthyBudget" {
            errs.push(not_supported(
                "spec.unhealthyPodEvictionPolicy",
                q(p),
                &["AlwaysAllow", "IfHealthyBudget"],
            ));
        }
    }
    errs
}

// ---- autoscaling ---------------------------------------------------------------------------

fn scaling_rules(rules: Option<&Value>, up: bool) -> Value {
    let mut out = if up {
        json!({
            "stabilizationWindowSeconds": 0,
            "selectPolicy": "Max",
            "policies": [
                {"type": "Pods", "value": 4, "periodSeconds": 15},
                {"type": "Percent", "value": 100, "periodSeconds": 15},
            ],
        })
    } else {
        json!({
            "selectPolicy": "Max",
            "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}],
        })
    };
    if let Some(r) = rules.and_then(Value::as_object) {
        for key in [
            "selectPolicy",
            "stabilizationWindowSeconds",
            "policies",
            "tolerance",
        ] {
            if let Some(v) = r.get(key).filter(|v| !v.is_null()) {
                crate::value::set(&mut out, &[key], v.clone());
            }
        }
    }
    out
}

/// HorizontalPodAutoscalers in their storage form, `autoscaling/v2`.
pub(crate) fn prepare_hpa(obj: &mut Value, old: Option<&Value>) {
    if let Some(spec) = child_if(obj, "spec") {
        default(spec, "minReplicas", json!(1));
        // The v1 form (targetCPUUtilizationPercentage) is converted elsewhere.
        if arr(spec, "metrics").is_empty() && get(spec, "targetCPUUtilizationPercentage").is_none()
        {
            if let Some(m) = spec.as_object_mut() {
                m.insert(
                    "metrics".into(),
                    json!([{
                        "type": "Resource",
                        "resource": {
                            "name": "cpu",
                            "target": {"type": "Utilization", "averageUtilization": 80},
                        },
                    }]),
                );
            }
        }
        if let Some(behavior) = child_if(spec, "behavior") {
            let up = scaling_rules(behavior.get("scaleUp"), true);
            let down = scaling_rules(behavior.get("scaleDown"), false);
            crate::value::set(behavior, &["scaleUp"], up);
            crate::value::set(behavior, &["scaleDown"], down);
        }
    }
    if old.is_none() {
        reset_status(obj, json!({"desiredReplicas": 0}));
    }
}

pub(crate) fn validate_hpa(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let min = int(spec, "minReplicas");
    if let Some(m) = min {
        if m < 1 {
            errs.push(invalid_int(
                "spec.minReplicas",
                m,
                "must be greater than or equal to 1",
            ));
        }
    }
    let max = int(spec, "maxReplicas").unwrap_or(0);
    if max < 1 {
        errs.push(invalid_int(
            "spec.maxReplicas",
            max,
            "must be greater than 0",
        ));
    }
    if min.is_some_and(|m| max < m) {
        errs.push(invalid_int(
            "spec.maxReplicas",
            max,
            "must be greater than or equal to `minReplicas`",
        ));
    }
    let target = spec.get("scaleTargetRef").unwrap_or(&Value::Null);
    for field in ["kind", "name"] {
        let v = sz(target, field);
        let p = format!("spec.scaleTargetRef.{field}");
        if v.is_empty() {
            errs.push(required(p, ""));
        } else {
            path_segment(&mut errs, v, &p);
        }
    }
    for (i, m) in arr(spec, "metrics").iter().enumerate() {
        let mp = format!("spec.metrics[{i}]");
        match sz(m, "type") {
            "" => errs.push(required(
                format!("{mp}.type"),
                "must specify a metric source type",
            )),
            "Resource" | "ContainerResource" | "Pods" | "Object" | "External" => {}
            other => errs.push(invalid_str(
                format!("{mp}.type"),
                other,
                "unrecognized metric source type",
            )),
        }
    }
    errs
}

// ---- scheduling ----------------------------------------------------------------------------

const SYSTEM_CLASSES: [(&str, i64); 2] = [
    ("system-node-critical", 2_000_001_000),
    ("system-cluster-critical", 2_000_000_000),
];

pub(crate) fn prepare_priority_class(obj: &mut Value) {
    default(obj, "preemptionPolicy", json!("PreemptLowerPriority"));
    if let Some(m) = obj.as_object_mut() {
        m.entry("value").or_insert(json!(0));
    }
}

pub(crate) fn validate_priority_class(obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let name = at(obj, &["metadata", "name"])
        .and_then(Value::as_str)
        .unwrap_or("");
    let value = int(obj, "value").unwrap_or(0);
    let system = SYSTEM_CLASSES.iter().find(|(n, _)| *n == name);
    match system {
        Some((_, v)) if *v == value => {}
        Some(_) => errs.push(forbidden(
            "metadata.name",
            &format!(
                "priority class names with 'system-' prefix are reserved for system use only. error: {name} is a known system priority class with a different value"
            ),
        )),
        None => {
            if name.starts_with("system-") {
                errs.push(forbidden(
                    "metadata.name",
                    &format!(
                        "priority class names with 'system-' prefix are reserved for system use only. error: {name} is not a known system priority class"
                    ),
                ));
            }
            if value > 1_000_000_000 {
                errs.push(forbidden(
                    "value",
                    "maximum allowed value of a user defined priority is 1000000000",
                ));
            }
        }
    }
    if let Some(p) = get(obj, "preemptionPolicy") {
        match p.as_str().unwrap_or("") {
            "PreemptLowerPriority" | "Never" => {}
            "" => errs.push(required("preemptionPolicy", "")),
            other => errs.push(not_supported(
                "preemptionPolicy",
                q(other),
                &["PreemptLowerPriority", "Never"],
            )),
        }
    }
    if let Some(old) = old {
        if int(old, "value").unwrap_or(0) != value {
            errs.push(forbidden("value", "may not be changed in an update."));
        }
        if !sem_eq(obj.get("preemptionPolicy"), old.get("preemptionPolicy")) {
            errs.push(invalid(
                "preemptionPolicy",
                gvo(get(obj, "preemptionPolicy")),
                IMMUTABLE,
            ));
        }
    }
    errs
}

// ---- storage -------------------------------------------------------------------------------

pub(crate) fn prepare_storage_class(obj: &mut Value) {
    default(obj, "reclaimPolicy", json!("Delete"));
    default(obj, "volumeBindingMode", json!("Immediate"));
}

pub(crate) fn validate_storage_class(obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let provisioner = sz(obj, "provisioner");
    if provisioner.is_empty() {
        errs.push(required("provisioner", ""));
    } else {
        if provisioner.len() > 63 {
            errs.push(too_long("provisioner", 63));
        }
        for m in validation::qualified_name(&provisioner.to_lowercase()) {
            errs.push(invalid_str("provisioner", provisioner, &m));
        }
    }
    if let Some(r) = s(obj, "reclaimPolicy") {
        if r != "Delete" && r != "Retain" {
            errs.push(not_supported("reclaimPolicy", q(r), &["Delete", "Retain"]));
        }
    }
    match s(obj, "volumeBindingMode") {
        None => errs.push(required("volumeBindingMode", "")),
        Some("Immediate" | "WaitForFirstConsumer") => {}
        Some(other) => errs.push(not_supported(
            "volumeBindingMode",
            q(other),
            &["Immediate", "WaitForFirstConsumer"],
        )),
    }
    if let Some(old) = old {
        if !sem_eq(obj.get("parameters"), old.get("parameters")) {
            errs.push(forbidden(
                "parameters",
                "updates to parameters are forbidden.",
            ));
        }
        if provisioner != sz(old, "provisioner") {
            errs.push(forbidden(
                "provisioner",
                "updates to provisioner are forbidden.",
            ));
        }
        if sz(obj, "reclaimPolicy") != sz(old, "reclaimPolicy") {
            errs.push(forbidden(
                "reclaimPolicy",
                "updates to reclaimPolicy are forbidden.",
            ));
        }
        if !sem_eq(obj.get("volumeBindingMode"), old.get("volumeBindingMode")) {
            errs.push(invalid(
                "volumeBindingMode",
                gvo(get(obj, "volumeBindingMode")),
                IMMUTABLE,
            ));
        }
    }
    errs
}

// ---- RBAC ----------------------------------------------------------------------------------

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

pub(crate) fn prepare_binding(obj: &mut Value) {
    if let Some(role_ref) = child(obj, "roleRef") {
        if role_ref
            .get("apiGroup")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            role_ref.insert("apiGroup".into(), json!(RBAC_GROUP));
        }
    }
    for subject in each(obj, "subjects") {
        if sz(subject, "apiGroup").is_empty() {
            match sz(subject, "kind") {
                "ServiceAccount" => set(subject, "apiGroup", json!("")),
                "User" | "Group" => set(subject, "apiGroup", json!(RBAC_GROUP)),
                _ => {}
            }
        }
    }
}

fn set(v: &mut Value, key: &str, val: Value) {
    if let Some(m) = v.as_object_mut() {
        m.insert(key.to_string(), val);
    }
}

pub(crate) fn validate_role(obj: &Value, namespaced: bool) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (i, rule) in arr(obj, "rules").iter().enumerate() {
        let p = format!("rules[{i}]");
        if arr(rule, "verbs").is_empty() {
            errs.push(required(
                format!("{p}.verbs"),
                "verbs must contain at least one value",
            ));
        }
        let urls = arr(rule, "nonResourceURLs");
        if !urls.is_empty() {
            let go = go_strings(rule.get("nonResourceURLs"));
            if namespaced {
                errs.push(invalid(
                    format!("{p}.nonResourceURLs"),
                    &go,
                    "namespaced rules cannot apply to non-resource URLs",
                ));
            }
            if !arr(rule, "apiGroups").is_empty()
                || !arr(rule, "resources").is_empty()
                || !arr(rule, "resourceNames").is_empty()
            {
                errs.push(invalid(
                    format!("{p}.nonResourceURLs"),
                    &go,
                    "rules cannot apply to both regular resources and non-resource URLs",
                ));
            }
            continue;
        }
        if arr(rule, "apiGroups").is_empty() {
            errs.push(required(
                format!("{p}.apiGroups"),
                "resource rules must supply at least one api group",
            ));
        }
        if arr(rule, "resources").is_empty() {
            errs.push(required(
                format!("{p}.resources"),
                "resource rules must supply at least one resource",
            ));
        }
    }
    if let Some(agg) = get(obj, "aggregationRule") {
        for (i, sel) in arr(agg, "clusterRoleSelectors").iter().enumerate() {
            validate_selector(
                &mut errs,
                Some(sel),
                &format!("aggregationRule.clusterRoleSelectors[{i}]"),
            );
        }
    }
    errs
}

fn go_role_ref(r: Option<&Value>) -> String {
    let r = r.unwrap_or(&Value::Null);
    format!(
        "rbac.RoleRef{{APIGroup:{}, Kind:{}, Name:{}}}",
        q(sz(r, "apiGroup")),
        q(sz(r, "kind")),
        q(sz(r, "name"))
    )
}

pub(crate) fn validate_binding(
    obj: &Value,
    old: Option<&Value>,
    namespaced: bool,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let role_ref = obj.get("roleRef").unwrap_or(&Value::Null);
    let group = sz(role_ref, "apiGroup");
    if group != RBAC_GROUP {
        errs.push(not_supported("roleRef.apiGroup", q(group), &[RBAC_GROUP]));
    }
    let kinds: &[&str] = if namespaced {
        &["Role", "ClusterRole"]
    } else {
        &["ClusterRole"]
    };
    let kind = sz(role_ref, "kind");
    if !kinds.contains(&kind) {
        errs.push(not_supported("roleRef.kind", q(kind), kinds));
    }
    let name = sz(role_ref, "name");
    if name.is_empty() {
        errs.push(required("roleRef.name", ""));
    } else {
        path_segment(&mut errs, name, "roleRef.name");
    }
    for (i, subject) in arr(obj, "subjects").iter().enumerate() {
        let p = format!("subjects[{i}]");
        let sname = sz(subject, "name");
        if sname.is_empty() {
            errs.push(required(format!("{p}.name"), ""));
        }
        let group = sz(subject, "apiGroup");
        match sz(subject, "kind") {
            "ServiceAccount" => {
                if !sname.is_empty() {
                    subdomain(&mut errs, sname, &format!("{p}.name"));
                }
                if !group.is_empty() {
                    errs.push(not_supported(format!("{p}.apiGroup"), q(group), &[""]));
                }
                if !namespaced && sz(subject, "namespace").is_empty() {
                    errs.push(required(format!("{p}.namespace"), ""));
                }
            }
            "User" | "Group" => {
                if group != RBAC_GROUP {
                    errs.push(not_supported(
                        format!("{p}.apiGroup"),
                        q(group),
                        &[RBAC_GROUP],
                    ));
                }
            }
            other => errs.push(not_supported(
                format!("{p}.kind"),
                q(other),
                &["ServiceAccount", "User", "Group"],
            )),
        }
    }
    if let Some(old) = old {
        if !sem_eq(obj.get("roleRef"), old.get("roleRef")) {
            errs.push(invalid(
                "roleRef",
                go_role_ref(obj.get("roleRef")),
                "cannot change roleRef",
            ));
        }
    }
    errs
}

// ---- coordination and discovery ------------------------------------------------------------

pub(crate) fn validate_lease(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    if let Some(d) = int(spec, "leaseDurationSeconds") {
        if d <= 0 {
            errs.push(invalid_int(
                "spec.leaseDurationSeconds",
                d,
                "must be greater than 0",
            ));
        }
    }
    non_negative(&mut errs, spec, "leaseTransitions", "spec.leaseTransitions");
    errs
}

pub(crate) fn prepare_endpoint_slice(obj: &mut Value) {
    for port in each(obj, "ports") {
        default(port, "name", json!(""));
        default(port, "protocol", json!("TCP"));
    }
    for ep in each(obj, "endpoints") {
        default(ep, "conditions", json!({}));
    }
}

pub(crate) fn validate_endpoint_slice(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let address_type = sz(obj, "addressType");
    match address_type {
        "" => errs.push(required("addressType", "")),
        "IPv4" | "IPv6" | "FQDN" => {}
        other => errs.push(not_supported(
            "addressType",
            q(other),
            &["IPv4", "IPv6", "FQDN"],
        )),
    }
    for (i, ep) in arr(obj, "endpoints").iter().enumerate() {
        let p = format!("endpoints[{i}]");
        let addresses = arr(ep, "addresses");
        if addresses.is_empty() {
            errs.push(required(
                format!("{p}.addresses"),
                "must contain at least 1 address",
            ));
        } else if addresses.len() > 100 {
            errs.push(too_many(format!("{p}.addresses"), addresses.len(), 100));
        }
        for (j, a) in addresses.iter().enumerate() {
            let a = a.as_str().unwrap_or("");
            let ap = format!("{p}.addresses[{j}]");
            match address_type {
                "IPv4" if a.parse::<std::net::Ipv4Addr>().is_err() => {
                    errs.push(invalid_str(&ap, a, "must be a valid IPv4 address"));
                }
                "IPv6" if a.parse::<std::net::Ipv6Addr>().is_err() => {
                    errs.push(invalid_str(&ap, a, "must be a valid IPv6 address"));
                }
                "FQDN" => subdomain(&mut errs, a, &ap),
                _ => {}
            }
        }
        if let Some(host) = s(ep, "hostname") {
            dns_label(&mut errs, host, &format!("{p}.hostname"));
        }
        if let Some(node) = s(ep, "nodeName") {
            subdomain(&mut errs, node, &format!("{p}.nodeName"));
        }
    }
    let mut names = BTreeSet::new();
    for (i, port) in arr(obj, "ports").iter().enumerate() {
        let p = format!("ports[{i}]");
        let name = sz(port, "name");
        if !name.is_empty() {
            dns_label(&mut errs, name, &format!("{p}.name"));
        }
        if !names.insert(name) {
            errs.push(duplicate(format!("{p}.name"), q(name)));
        }
        if let Some(n) = int(port, "port") {
            if !(1..=65535).contains(&n) {
                errs.push(invalid_int(
                    format!("{p}.port"),
                    n,
                    &inclusive_range(1, 65535),
                ));
            }
        }
        protocol(&mut errs, port, &p);
        if let Some(ap) = s(port, "appProtocol") {
            qualified_name(&mut errs, ap, &format!("{p}.appProtocol"));
        }
    }
    errs
}
