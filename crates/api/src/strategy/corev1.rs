//! The core group (`v1`) apart from pods: services, namespaces, secrets, config maps,
//! volumes and claims, endpoints, events, limit ranges, quotas, replication controllers,
//! pod templates, nodes.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use super::pod::{self, protocol, quantity_value, resource_name, validate_template};
use super::util::*;
use crate::validation::{self, FieldError, Quantity};

// ---- services ------------------------------------------------------------------------------

fn needs_cluster_ip(svc: &Value) -> bool {
    at(svc, &["spec", "type"]).and_then(Value::as_str) != Some("ExternalName")
}

fn svc_type(svc: &Value) -> &str {
    at(svc, &["spec", "type"])
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn needs_node_port(svc: &Value) -> bool {
    matches!(svc_type(svc), "NodePort" | "LoadBalancer")
}

fn needs_hc_node_port(svc: &Value) -> bool {
    svc_type(svc) == "LoadBalancer"
        && at(svc, &["spec", "externalTrafficPolicy"]).and_then(Value::as_str) == Some("Local")
}

fn externally_accessible(spec: &Value) -> bool {
    match sz(spec, "type") {
        "LoadBalancer" | "NodePort" => true,
        "ClusterIP" => !arr(spec, "externalIPs").is_empty(),
        _ => false,
    }
}

fn cluster_ips(spec: &Value) -> Vec<String> {
    arr(spec, "clusterIPs")
        .iter()
        .map(|v| v.as_str().unwrap_or("").to_string())
        .collect()
}

fn is_headless(spec: &Value) -> bool {
    let ips = cluster_ips(spec);
    ips.len() == 1 && ips[0] == "None"
}

fn set_or_remove(spec: &mut Value, key: &str, v: Option<Value>) {
    if let Some(m) = spec.as_object_mut() {
        match v {
            Some(v) => m.insert(key.to_string(), v),
            None => m.remove(key),
        };
    }
}

/// `SetDefaults_Service`.
fn default_service_spec(spec: &mut Value) {
    default_str(spec, "sessionAffinity", "None");
    match sz(spec, "sessionAffinity") {
        "None" => set_or_remove(spec, "sessionAffinityConfig", None),
        "ClientIP"
            if at(
                spec,
                &["sessionAffinityConfig", "clientIP", "timeoutSeconds"],
            )
            .is_none() =>
        {
            set_or_remove(
                spec,
                "sessionAffinityConfig",
                Some(json!({"clientIP": {"timeoutSeconds": 10800}})),
            );
        }
        _ => {}
    }
    default_str(spec, "type", "ClusterIP");
    for p in each(spec, "ports") {
        default_str(p, "protocol", "TCP");
        let unset = match p.get("targetPort") {
            None | Some(Value::Null) => true,
            Some(Value::String(s)) => s.is_empty(),
            Some(Value::Number(n)) => n.as_i64() == Some(0),
            _ => false,
        };
        if unset {
            let port = p.get("port").cloned().unwrap_or(json!(0));
            set_or_remove(p, "targetPort", Some(port));
        }
    }
    if externally_accessible(spec) {
        default_str(spec, "externalTrafficPolicy", "Cluster");
    }
    if matches!(sz(spec, "type"), "NodePort" | "LoadBalancer" | "ClusterIP") {
        default(spec, "internalTrafficPolicy", json!("Cluster"));
    }
    if sz(spec, "type") == "LoadBalancer" {
        default(spec, "allocateLoadBalancerNodePorts", json!(true));
    }
}

/// Keeps `clusterIP` and `clusterIPs` in step (upstream's `normalizeClusterIPs`).
fn normalize_cluster_ips(spec: &mut Value, old: Option<&Value>) {
    let ip = sz(spec, "clusterIP").to_string();
    let ips = cluster_ips(spec);
    let Some(old) = old else {
        if !ip.is_empty() && ips.is_empty() {
            set_or_remove(spec, "clusterIPs", Some(json!([ip])));
        }
        return;
    };
    let old_ip = sz(old, "clusterIP").to_string();
    let old_ips = cluster_ips(old);
    if !old_ips.is_empty() && ips.is_empty() && old_ip == ip {
        set_or_remove(spec, "clusterIPs", Some(json!(old_ips)));
    }
    let ips = cluster_ips(spec);
    if old_ip != ip {
        let same_plural = ips == old_ips;
        if !old_ip.is_empty() && ip.is_empty() {
            if same_plural {
                set_or_remove(spec, "clusterIPs", None);
            }
        } else if same_plural {
            set_or_remove(spec, "clusterIPs", Some(json!([ip])));
        }
    }
}

/// Values the server allocated and a resubmitted manifest leaves out (`patchAllocatedValues`).
fn patch_allocated(new: &mut Value, old: &Value) {
    let needs_ip = needs_cluster_ip(new) && needs_cluster_ip(old);
    let needs_np = needs_node_port(new) && needs_node_port(old);
    let needs_hc = needs_hc_node_port(new) && needs_hc_node_port(old);
    let old_spec = old.get("spec").cloned().unwrap_or(Value::Null);
    let Some(spec) = child_if(new, "spec") else {
        return;
    };
    if needs_ip {
        if sz(spec, "clusterIP").is_empty() {
            if let Some(ip) = s(&old_spec, "clusterIP") {
                set_or_remove(spec, "clusterIP", Some(json!(ip)));
            }
        }
        if cluster_ips(spec).is_empty() && !cluster_ips(&old_spec).is_empty() {
            set_or_remove(spec, "clusterIPs", old_spec.get("clusterIPs").cloned());
        }
    }
    if needs_np {
        let used = |s: &Value| -> BTreeSet<i64> {
            arr(s, "ports")
                .iter()
                .filter_map(|p| int(p, "nodePort"))
                .filter(|n| *n != 0)
                .collect()
        };
        let both: BTreeSet<i64> = used(&old_spec).intersection(&used(spec)).copied().collect();
        let by_name: Vec<(String, i64)> = arr(&old_spec, "ports")
            .iter()
            .map(|p| (sz(p, "name").to_string(), int(p, "nodePort").unwrap_or(0)))
            .collect();
        for p in each(spec, "ports") {
            if int(p, "nodePort").unwrap_or(0) == 0 {
                let name = sz(p, "name").to_string();
                let old_val = by_name
                    .iter()
                    .rev()
                    .find(|(n, _)| *n == name)
                    .map_or(0, |(_, v)| *v);
                if old_val != 0 && !both.contains(&old_val) {
                    set_or_remove(p, "nodePort", Some(json!(old_val)));
                }
            }
        }
    }
    if needs_hc && int(spec, "healthCheckNodePort").unwrap_or(0) == 0 {
        if let Some(hc) = old_spec.get("healthCheckNodePort") {
            set_or_remove(spec, "healthCheckNodePort", Some(hc.clone()));
        }
    }
}

/// Clears what a type change leaves behind, when the client did not change it
/// (`dropTypeDependentFields`).
fn drop_type_dependent(new: &mut Value, old: &Value) {
    let old_spec = old.get("spec").cloned().unwrap_or(Value::Null);
    let was_ip = needs_cluster_ip(old);
    let is_ip = needs_cluster_ip(new);
    let was_np = needs_node_port(old);
    let is_np = needs_node_port(new);
    let was_hc = needs_hc_node_port(old);
    let is_hc = needs_hc_node_port(new);
    let Some(spec) = child_if(new, "spec") else {
        return;
    };
    let same = |key: &str, spec: &Value| sem_eq(spec.get(key), old_spec.get(key));
    if was_ip && !is_ip {
        if same("clusterIP", spec) && same("clusterIPs", spec) {
            set_or_remove(spec, "clusterIP", None);
            set_or_remove(spec, "clusterIPs", None);
        }
        if same("ipFamilies", spec) {
            set_or_remove(spec, "ipFamilies", None);
        }
        if same("ipFamilyPolicy", spec) {
            set_or_remove(spec, "ipFamilyPolicy", None);
        }
    }
    let node_ports = |s: &Value| -> BTreeSet<i64> {
        arr(s, "ports")
            .iter()
            .filter_map(|p| int(p, "nodePort"))
            .filter(|n| *n != 0)
            .collect()
    };
    if was_np && !is_np && node_ports(spec).is_subset(&node_ports(&old_spec)) {
        for p in each(spec, "ports") {
            set_or_remove(p, "nodePort", None);
        }
    }
    if was_hc && !is_hc && same("healthCheckNodePort", spec) {
        set_or_remove(spec, "healthCheckNodePort", None);
    }
    let old_lb = sz(&old_spec, "type") == "LoadBalancer";
    let new_lb = sz(spec, "type") == "LoadBalancer";
    if old_lb && !new_lb {
        if spec.get("allocateLoadBalancerNodePorts").is_some()
            && old_spec.get("allocateLoadBalancerNodePorts").is_some()
            && same("allocateLoadBalancerNodePorts", spec)
        {
            set_or_remove(spec, "allocateLoadBalancerNodePorts", None);
        }
        if same("loadBalancerClass", spec) {
            set_or_remove(spec, "loadBalancerClass", None);
        }
    }
    if externally_needs_policy(&old_spec)
        && !externally_needs_policy(spec)
        && same("externalTrafficPolicy", spec)
    {
        set_or_remove(spec, "externalTrafficPolicy", None);
    }
    if !new_lb {
        if let Some(status) = child_if(new, "status") {
            set_or_remove(status, "loadBalancer", Some(json!({})));
        }
    }
}

fn externally_needs_policy(spec: &Value) -> bool {
    matches!(sz(spec, "type"), "NodePort" | "LoadBalancer")
}

/// IP families and their policy, as the allocator of a single-stack IPv4 cluster sets them.
fn default_ip_families(spec: &mut Value, old: Option<&Value>) {
    if sz(spec, "type") == "ExternalName" {
        return;
    }
    if let Some(old_spec) = old.and_then(|o| o.get("spec")) {
        if sz(old_spec, "type") != "ExternalName" {
            if arr(spec, "ipFamilies").is_empty() {
                if let Some(f) = get(old_spec, "ipFamilies") {
                    set_or_remove(spec, "ipFamilies", Some(f.clone()));
                }
            }
            if get(spec, "ipFamilyPolicy").is_none() {
                if let Some(p) = get(old_spec, "ipFamilyPolicy") {
                    set_or_remove(spec, "ipFamilyPolicy", Some(p.clone()));
                }
            }
        }
    }
    let ips = cluster_ips(spec);
    let headless = is_headless(spec) || sz(spec, "clusterIP") == "None";
    if get(spec, "ipFamilyPolicy").is_none() {
        let dual = arr(spec, "ipFamilies").len() == 2 || ips.len() == 2;
        let selectorless = omap(spec, "selector").is_none_or(|m| m.is_empty());
        let policy = if dual || (headless && selectorless) {
            "RequireDualStack"
        } else {
            "SingleStack"
        };
        set_or_remove(spec, "ipFamilyPolicy", Some(json!(policy)));
    }
    if arr(spec, "ipFamilies").is_empty() {
        let families: Vec<&str> = if !headless && !ips.is_empty() {
            ips.iter()
                .map(|ip| if ip.contains(':') { "IPv6" } else { "IPv4" })
                .collect()
        } else {
            vec!["IPv4"]
        };
        set_or_remove(spec, "ipFamilies", Some(json!(families)));
    }
}

pub(crate) fn prepare_service(obj: &mut Value, old: Option<&Value>) {
    if let Some(old) = old {
        patch_allocated(obj, old);
    }
    if let Some(spec) = child_if(obj, "spec") {
        normalize_cluster_ips(spec, old.and_then(|o| o.get("spec")));
    }
    if let Some(old) = old {
        drop_type_dependent(obj, old);
    }
    let Some(spec) = child_if(obj, "spec") else {
        return;
    };
    default_service_spec(spec);
    default_ip_families(spec, old);
    if old.is_none() {
        reset_status(obj, json!({"loadBalancer": {}}));
    }
}

fn valid_ip(ip: &str) -> bool {
    ip.parse::<std::net::IpAddr>().is_ok()
}

const IP_MSG: &str = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)";

fn ip_field(errs: &mut Vec<FieldError>, ip: &str, path: &str) -> bool {
    if valid_ip(ip) {
        true
    } else {
        errs.push(invalid_str(path, ip, IP_MSG));
        false
    }
}

/// `ValidateNonSpecialIP`.
fn non_special_ip(errs: &mut Vec<FieldError>, ip: &str, path: &str) {
    let Ok(addr) = ip.parse::<std::net::IpAddr>() else {
        errs.push(invalid_str(path, ip, "must be a valid IP address"));
        return;
    };
    if addr.is_unspecified() {
        errs.push(invalid_str(
            path,
            ip,
            &format!("may not be unspecified ({ip})"),
        ));
    }
    if addr.is_loopback() {
        errs.push(invalid_str(
            path,
            ip,
            "may not be in the loopback range (127.0.0.0/8, ::1/128)",
        ));
    }
    let link_local = match addr {
        std::net::IpAddr::V4(a) => a.is_link_local(),
        std::net::IpAddr::V6(a) => (a.segments()[0] & 0xffc0) == 0xfe80,
    };
    if link_local {
        errs.push(invalid_str(
            path,
            ip,
            "may not be in the link-local range (169.254.0.0/16, fe80::/10)",
        ));
    }
    let ll_multicast = match addr {
        std::net::IpAddr::V4(a) => a.octets()[..3] == [224, 0, 0],
        std::net::IpAddr::V6(a) => (a.segments()[0] & 0xff0f) == 0xff02,
    };
    if ll_multicast {
        errs.push(invalid_str(
            path,
            ip,
            "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)",
        ));
    }
}

fn valid_cidr(cidr: &str) -> bool {
    let Some((ip, bits)) = cidr.split_once('/') else {
        return false;
    };
    let Ok(addr) = ip.parse::<std::net::IpAddr>() else {
        return false;
    };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    bits.parse::<u32>().is_ok_and(|b| b <= max) && !bits.starts_with('+')
}

pub(crate) fn cidr_field(errs: &mut Vec<FieldError>, cidr: &str, path: &str) {
    if !valid_cidr(cidr) {
        errs.push(invalid_str(
            path,
            cidr,
            "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
        ));
    }
}

fn go_service_port(protocol: &str, port: i64) -> String {
    format!(
        "core.ServicePort{{Name:\"\", Protocol:{}, AppProtocol:(*string)(nil), Port:{port}, TargetPort:intstr.IntOrString{{Type:0, IntVal:0, StrVal:\"\"}}, NodePort:0}}",
        q(protocol)
    )
}

pub(crate) fn validate_service(obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    if let Some(old) = old {
        let old_spec = old.get("spec").unwrap_or(&Value::Null);
        update_cluster_ips(&mut errs, spec, old_spec);
        update_ip_families(&mut errs, spec, old_spec);
        if sz(old_spec, "type") == "LoadBalancer"
            && sz(spec, "type") == "LoadBalancer"
            && !sem_eq(
                spec.get("loadBalancerClass"),
                old_spec.get("loadBalancerClass"),
            )
        {
            errs.push(invalid(
                "spec.loadBalancerClass",
                gvo(get(spec, "loadBalancerClass")),
                "may not change once set",
            ));
        }
        if needs_hc_node_port(old)
            && needs_hc_node_port(obj)
            && int(spec, "healthCheckNodePort") != int(old_spec, "healthCheckNodePort")
        {
            errs.push(forbidden("spec.healthCheckNodePort", IMMUTABLE));
        }
    }
    let meta = obj.get("metadata").unwrap_or(&Value::Null);
    let annotations = meta.get("annotations");
    let hints = annotations.and_then(|a| s(a, "service.kubernetes.io/topology-aware-hints"));
    let mode = annotations.and_then(|a| s(a, "service.kubernetes.io/topology-mode"));
    if let (Some(h), Some(m)) = (hints, mode) {
        if h != m {
            errs.push(invalid_str(
                "metadata.annotations[service.kubernetes.io/topology-mode]",
                m,
                "must match annotations[service.kubernetes.io/topology-aware-hints] when both are specified",
            ));
        }
    }
    let ty = sz(spec, "type");
    let headless = is_headless(spec);
    let ports = arr(spec, "ports");
    if ports.is_empty() && !headless && ty != "ExternalName" {
        errs.push(required("spec.ports", ""));
    }
    let ips = cluster_ips(spec);
    match ty {
        "LoadBalancer" | "NodePort" if headless => errs.push(invalid_str(
            "spec.clusterIPs[0]",
            &ips[0],
            &format!("may not be set to 'None' for {ty} services"),
        )),
        "ExternalName" => {
            if !ips.is_empty() {
                errs.push(forbidden(
                    "spec.clusterIPs",
                    "may not be set for ExternalName services",
                ));
            }
            if !arr(spec, "ipFamilies").is_empty() {
                errs.push(forbidden(
                    "spec.ipFamilies",
                    "may not be set for ExternalName services",
                ));
            }
            if get(spec, "ipFamilyPolicy").is_some() {
                errs.push(forbidden(
                    "spec.ipFamilyPolicy",
                    "may not be set for ExternalName services",
                ));
            }
            let name = sz(spec, "externalName");
            let cname = name.strip_suffix('.').unwrap_or(name);
            if cname.is_empty() {
                errs.push(required("spec.externalName", ""));
            } else {
                subdomain(&mut errs, cname, "spec.externalName");
            }
        }
        _ => {}
    }
    let mut names = BTreeSet::new();
    for (i, p) in ports.iter().enumerate() {
        let pp = format!("spec.ports[{i}]");
        let name = sz(p, "name");
        if ports.len() > 1 && name.is_empty() {
            errs.push(required(format!("{pp}.name"), ""));
        } else if !name.is_empty() {
            dns_label(&mut errs, name, &format!("{pp}.name"));
            if !names.insert(name) {
                errs.push(duplicate(format!("{pp}.name"), q(name)));
            }
        }
        let port = int(p, "port").unwrap_or(0);
        if !(1..=65535).contains(&port) {
            errs.push(invalid_int(
                format!("{pp}.port"),
                port,
                &inclusive_range(1, 65535),
            ));
        }
        protocol(&mut errs, p, &pp);
        port_num_or_name(&mut errs, get(p, "targetPort"), &format!("{pp}.targetPort"));
        if let Some(ap) = s(p, "appProtocol") {
            qualified_name(&mut errs, ap, &format!("{pp}.appProtocol"));
        }
    }
    if let Some(sel) = spec.get("selector") {
        validation::labels(sel, "spec.selector", &mut errs);
    }
    match sz(spec, "sessionAffinity") {
        "" => errs.push(required("spec.sessionAffinity", "")),
        "ClientIP" => match get(spec, "sessionAffinityConfig") {
            None => errs.push(required(
                "spec.sessionAffinityConfig",
                "when session affinity type is ClientIP",
            )),
            Some(c) => match get(c, "clientIP") {
                None => errs.push(required(
                    "spec.sessionAffinityConfig.clientIP",
                    "when session affinity type is ClientIP",
                )),
                Some(ci) => match int(ci, "timeoutSeconds") {
                    None => errs.push(required(
                        "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
                        "when session affinity type is ClientIP",
                    )),
                    Some(t) if t <= 0 || t > 86400 => errs.push(invalid_int(
                        "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
                        t,
                        "must be greater than 0 and less than 86400",
                    )),
                    _ => {}
                },
            },
        },
        "None" => {
            if get(spec, "sessionAffinityConfig").is_some() {
                errs.push(forbidden(
                    "spec.sessionAffinityConfig",
                    "must not be set when session affinity is None",
                ));
            }
        }
        other => errs.push(not_supported(
            "spec.sessionAffinity",
            q(other),
            &["ClientIP", "None"],
        )),
    }
    cluster_ip_fields(&mut errs, spec);
    for (i, ip) in arr(spec, "externalIPs").iter().enumerate() {
        let ip = ip.as_str().unwrap_or("");
        let path = format!("spec.externalIPs[{i}]");
        if ip_field(&mut errs, ip, &path) {
            non_special_ip(&mut errs, ip, &path);
        }
    }
    match ty {
        "" => errs.push(required("spec.type", "")),
        "ClusterIP" | "NodePort" | "LoadBalancer" | "ExternalName" => {}
        other => errs.push(not_supported(
            "spec.type",
            q(other),
            &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
        )),
    }
    if ty == "ClusterIP" {
        for (i, p) in ports.iter().enumerate() {
            if int(p, "nodePort").unwrap_or(0) != 0 {
                errs.push(forbidden(
                    format!("spec.ports[{i}].nodePort"),
                    "may not be used when `type` is 'ClusterIP'",
                ));
            }
        }
    }
    let mut node_ports = BTreeSet::new();
    for (i, p) in ports.iter().enumerate() {
        let np = int(p, "nodePort").unwrap_or(0);
        if np == 0 {
            continue;
        }
        if !node_ports.insert((sz(p, "protocol").to_string(), np)) {
            errs.push(duplicate(
                format!("spec.ports[{i}].nodePort"),
                np.to_string(),
            ));
        }
    }
    let mut seen = BTreeSet::new();
    for (i, p) in ports.iter().enumerate() {
        let key = (sz(p, "protocol").to_string(), int(p, "port").unwrap_or(0));
        if !seen.insert(key.clone()) {
            errs.push(duplicate(
                format!("spec.ports[{i}]"),
                go_service_port(&key.0, key.1),
            ));
        }
    }
    let ranges = arr(spec, "loadBalancerSourceRanges");
    if !ranges.is_empty() {
        if ty != "LoadBalancer" {
            errs.push(forbidden(
                "spec.LoadBalancerSourceRanges",
                "may only be used when `type` is 'LoadBalancer'",
            ));
        }
        for (i, r) in ranges.iter().enumerate() {
            cidr_field(
                &mut errs,
                r.as_str().unwrap_or("").trim(),
                &format!("spec.LoadBalancerSourceRanges[{i}]"),
            );
        }
    }
    if get(spec, "allocateLoadBalancerNodePorts").is_some() && ty != "LoadBalancer" {
        errs.push(forbidden(
            "spec.allocateLoadBalancerNodePorts",
            "may only be used when `type` is 'LoadBalancer'",
        ));
    }
    if ty == "LoadBalancer" && get(spec, "allocateLoadBalancerNodePorts").is_none() {
        errs.push(required("allocateLoadBalancerNodePorts", ""));
    }
    if let Some(class) = s(spec, "loadBalancerClass") {
        if ty == "LoadBalancer" {
            qualified_name(&mut errs, class, "spec.loadBalancerClass");
        } else {
            errs.push(forbidden(
                "spec.loadBalancerClass",
                "may only be used when `type` is 'LoadBalancer'",
            ));
        }
    }
    let etp = sz(spec, "externalTrafficPolicy");
    if !externally_accessible(spec) {
        if !etp.is_empty() {
            errs.push(invalid_str(
                "spec.externalTrafficPolicy",
                etp,
                "may only be set for externally-accessible services",
            ));
        }
    } else if etp.is_empty() {
        errs.push(required("spec.externalTrafficPolicy", ""));
    } else if etp != "Cluster" && etp != "Local" {
        errs.push(not_supported(
            "spec.externalTrafficPolicy",
            q(etp),
            &["Cluster", "Local"],
        ));
    }
    let hc = int(spec, "healthCheckNodePort").unwrap_or(0);
    if !(ty == "LoadBalancer" && etp == "Local") {
        if hc != 0 {
            errs.push(invalid_int(
                "spec.healthCheckNodePort",
                hc,
                "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'",
            ));
        }
    } else if hc != 0 && !(1..=65535).contains(&hc) {
        errs.push(invalid_int(
            "spec.healthCheckNodePort",
            hc,
            &inclusive_range(1, 65535),
        ));
    }
    match get(spec, "internalTrafficPolicy") {
        None => {
            if matches!(ty, "NodePort" | "LoadBalancer" | "ClusterIP") {
                errs.push(required("spec.internalTrafficPolicy", ""));
            }
        }
        Some(p) => {
            let p = p.as_str().unwrap_or("");
            if p != "Cluster" && p != "Local" {
                errs.push(not_supported(
                    "spec.internalTrafficPolicy",
                    q(p),
                    &["Cluster", "Local"],
                ));
            }
        }
    }
    if let Some(td) = s(spec, "trafficDistribution") {
        if td != "PreferClose" {
            errs.push(not_supported(
                "spec.trafficDistribution",
                q(td),
                &["PreferClose"],
            ));
        }
    }
    errs
}

/// `ValidateServiceClusterIPsRelatedFields`.
fn cluster_ip_fields(errs: &mut Vec<FieldError>, spec: &Value) {
    if sz(spec, "type") == "ExternalName" {
        return;
    }
    let ip = sz(spec, "clusterIP");
    let ips = cluster_ips(spec);
    let ips_go = go_strings(spec.get("clusterIPs").filter(|v| !v.is_null()));
    if !ip.is_empty() {
        if ips.is_empty() {
            errs.push(required("spec.clusterIPs", ""));
        } else if ips[0] != ip {
            errs.push(invalid(
                "spec.clusterIPs",
                &ips_go,
                "first value must match `clusterIP`",
            ));
        }
    } else if !ips.is_empty() {
        errs.push(invalid(
            "spec.clusterIPs",
            &ips_go,
            "must be empty when `clusterIP` is not specified",
        ));
    }
    let mut families = BTreeSet::new();
    for (i, f) in arr(spec, "ipFamilies").iter().enumerate() {
        let f = f.as_str().unwrap_or("");
        if f != "IPv4" && f != "IPv6" {
            errs.push(not_supported(
                format!("spec.ipFamilies[{i}]"),
                q(f),
                &["IPv4", "IPv6"],
            ));
        }
        if !families.insert(f) {
            errs.push(duplicate(format!("spec.ipFamilies[{i}]"), q(f)));
        }
    }
    if let Some(p) = get(spec, "ipFamilyPolicy") {
        let p = p.as_str().unwrap_or("");
        if !["PreferDualStack", "RequireDualStack", "SingleStack"].contains(&p) {
            errs.push(not_supported(
                "spec.ipFamilyPolicy",
                q(p),
                &["PreferDualStack", "RequireDualStack", "SingleStack"],
            ));
        }
    }
    let mut bad = false;
    for (i, cip) in ips.iter().enumerate() {
        if i == 0 && cip == "None" {
            if ips.len() > 1 {
                bad = true;
                errs.push(invalid(
                    "spec.clusterIPs",
                    &ips_go,
                    "'None' must be the first and only value",
                ));
            }
            continue;
        }
        if !ip_field(errs, cip, &format!("spec.clusterIPs[{i}]")) {
            bad = true;
        }
    }
    if ips.len() > 2 {
        errs.push(invalid(
            "spec.clusterIPs",
            &ips_go,
            "may only hold up to 2 values",
        ));
    }
    if bad {
        return;
    }
    if ips.len() > 1 {
        let v6: Vec<bool> = ips.iter().map(|i| i.contains(':')).collect();
        if v6.len() != 2 || v6[0] == v6[1] {
            errs.push(invalid(
                "spec.clusterIPs",
                &ips_go,
                "may specify no more than one IP for each IP family",
            ));
        }
    }
    let fams = arr(spec, "ipFamilies");
    if !is_headless(spec) && !ips.is_empty() && !fams.is_empty() {
        for (i, cip) in ips.iter().enumerate() {
            let Some(f) = fams.get(i).and_then(Value::as_str) else {
                break;
            };
            let v6 = cip.contains(':');
            if f == "IPv4" && v6 {
                errs.push(invalid_str(
                    format!("spec.clusterIPs[{i}]"),
                    cip,
                    &format!("expected an IPv4 value as indicated by `ipFamilies[{i}]`"),
                ));
            }
            if f == "IPv6" && !v6 {
                errs.push(invalid_str(
                    format!("spec.clusterIPs[{i}]"),
                    cip,
                    &format!("expected an IPv6 value as indicated by `ipFamilies[{i}]`"),
                ));
            }
        }
    }
}

/// `validateUpgradeDowngradeClusterIPs`.
fn update_cluster_ips(errs: &mut Vec<FieldError>, spec: &Value, old: &Value) {
    if sz(spec, "type") == "ExternalName" || sz(old, "type") == "ExternalName" {
        return;
    }
    if is_headless(spec) && is_headless(old) {
        return;
    }
    let new_ips = cluster_ips(spec);
    let old_ips = cluster_ips(old);
    let go = go_strings(spec.get("clusterIPs").filter(|v| !v.is_null()));
    if new_ips.len() == old_ips.len() {
        for (i, ip) in old_ips.iter().enumerate() {
            if *ip != new_ips[i] {
                errs.push(invalid(
                    format!("spec.clusterIPs[{i}]"),
                    &go,
                    "may not change once set",
                ));
            }
        }
    } else if old_ips.len() > new_ips.len() {
        if new_ips.is_empty() {
            errs.push(invalid(
                "spec.clusterIPs[0]",
                &go,
                "primary clusterIP can not be unset",
            ));
        }
        if !old_ips.is_empty() && !new_ips.is_empty() && new_ips[0] != old_ips[0] {
            errs.push(invalid(
                "spec.clusterIPs[0]",
                &go,
                "may not change once set",
            ));
        }
        if new_ips.len() == 1 && s(spec, "ipFamilyPolicy") != Some("SingleStack") {
            errs.push(invalid(
                "spec.ipFamilyPolicy",
                gvo(get(spec, "ipFamilyPolicy")),
                "must be set to 'SingleStack' when releasing the secondary clusterIP",
            ));
        }
    } else if !old_ips.is_empty() && new_ips[0] != old_ips[0] {
        errs.push(invalid(
            "spec.clusterIPs[0]",
            &go,
            "may not change once set",
        ));
    }
}

/// `validateUpgradeDowngradeIPFamilies`.
fn update_ip_families(errs: &mut Vec<FieldError>, spec: &Value, old: &Value) {
    if sz(spec, "type") == "ExternalName" || sz(old, "type") == "ExternalName" {
        return;
    }
    if is_headless(spec) != is_headless(old) || is_headless(spec) {
        return;
    }
    let fam = |s: &Value| -> Vec<String> {
        arr(s, "ipFamilies")
            .iter()
            .map(|v| v.as_str().unwrap_or("").to_string())
            .collect()
    };
    let (new_f, old_f) = (fam(spec), fam(old));
    let go = |key: &str| {
        format!(
            "[]core.IPFamily{{{}}}",
            arr(spec, key)
                .iter()
                .map(|v| q(v.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    if new_f.len() == old_f.len() {
        if new_f != old_f {
            errs.push(invalid(
                "spec.ipFamilies[0]",
                go("ipFamilies"),
                "may not change once set",
            ));
        }
    } else if old_f.len() > new_f.len() {
        if cluster_ips(spec).is_empty() {
            errs.push(invalid(
                "spec.ipFamilies[0]",
                go("ipFamilies"),
                "primary ipFamily can not be unset",
            ));
        }
        if !new_f.is_empty() && new_f[0] != old_f[0] {
            errs.push(invalid(
                "spec.ipFamilies[0]",
                go_strings(spec.get("clusterIPs")),
                "may not change once set",
            ));
        }
        if new_f.len() == 1 && s(spec, "ipFamilyPolicy") != Some("SingleStack") {
            errs.push(invalid(
                "spec.ipFamilyPolicy",
                gvo(get(spec, "ipFamilyPolicy")),
                "must be set to 'SingleStack' when releasing the secondary ipFamily",
            ));
        }
    } else if !old_f.is_empty() && !new_f.is_empty() && new_f[0] != old_f[0] {
        errs.push(invalid(
            "spec.ipFamilies[0]",
            go_strings(spec.get("clusterIPs")),
            "may not change once set",
        ));
    }
}

// ---- namespaces ----------------------------------------------------------------------------

pub(crate) fn prepare_namespace(obj: &mut Value, old: Option<&Value>) {
    if let Some(name) = at(obj, &["metadata", "name"])
        .and_then(Value::as_str)
        .map(String::from)
    {
        if !name.is_empty() {
            if let Some(labels) = child(obj, "metadata").and_then(|m| {
                let slot = m.entry("labels").or_insert(Value::Null);
                if slot.is_null() {
                    *slot = json!({});
                }
                slot.as_object_mut()
            }) {
                labels.insert("kubernetes.io/metadata.name".into(), json!(name));
            }
        }
    }
    match old {
        None => {
            let mut finalizers: Vec<Value> = at(obj, &["spec", "finalizers"])
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if !finalizers.iter().any(|f| f == "kubernetes") {
                finalizers.push(json!("kubernetes"));
            }
            if let Some(spec) = child(obj, "spec") {
                spec.insert("finalizers".into(), json!(finalizers));
            }
            reset_status(obj, json!({"phase": "Active"}));
        }
        Some(old) => {
            // Finalizers change only through the finalize subresource.
            let finalizers = at(old, &["spec", "finalizers"]).cloned();
            if let Some(spec) = child(obj, "spec") {
                match finalizers {
                    Some(f) => spec.insert("finalizers".into(), f),
                    None => spec.remove("finalizers"),
                };
            }
            if let Some(status) = child(obj, "status") {
                if status.get("phase").is_none_or(Value::is_null) {
                    status.insert("phase".into(), json!("Active"));
                }
            }
        }
    }
}

fn finalizer_name(errs: &mut Vec<FieldError>, name: &str, path: &str) {
    qualified_name(errs, name, path);
    if !name.contains('/') && !["kubernetes", "orphan", "foregroundDeletion"].contains(&name) {
        errs.push(invalid_str(
            path,
            name,
            "name is neither a standard finalizer name nor is it fully qualified",
        ));
    }
}

/// A namespace being deleted also waits for its `spec.finalizers`.
pub(crate) fn namespace_finalized(obj: &Value) -> bool {
    obj.pointer("/spec/finalizers")
        .and_then(Value::as_array)
        .is_none_or(|f| f.is_empty())
}

pub(crate) fn validate_namespace(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for f in arr(obj.get("spec").unwrap_or(&Value::Null), "finalizers") {
        finalizer_name(&mut errs, f.as_str().unwrap_or(""), "spec.finalizers");
    }
    errs
}

// ---- secrets and config maps ---------------------------------------------------------------

const MAX_SECRET_SIZE: usize = 1024 * 1024;
const REDACTED: &str = "<secret contents redacted>";

pub(crate) fn prepare_secret(obj: &mut Value) {
    default_str(obj, "type", "Opaque");
    // stringData is write-only: it is merged into data (as upstream's conversion does).
    let string_data = obj
        .as_object_mut()
        .and_then(|m| m.remove("stringData"))
        .and_then(|v| v.as_object().cloned());
    if let Some(sd) = string_data {
        if let Some(data) = child(obj, "data") {
            for (k, v) in sd {
                let text = v.as_str().unwrap_or("");
                data.insert(k, json!(base64_encode(text.as_bytes())));
            }
        }
    }
}

fn data_sizes(errs: &mut Vec<FieldError>, data: Option<&Obj>, field: &str) -> usize {
    let mut total = 0;
    for (key, value) in sorted_entries(data) {
        for m in config_map_key_errors(key) {
            errs.push(invalid_str(format!("{field}[{key}]"), key, &m));
        }
        match base64_decode(value.as_str().unwrap_or("")) {
            Ok(bytes) => total += bytes.len(),
            Err(e) => errs.push(invalid_str(format!("{field}[{key}]"), REDACTED, &e)),
        }
    }
    total
}

fn decoded(obj: &Value, key: &str) -> Option<Vec<u8>> {
    at(obj, &["data", key])
        .and_then(Value::as_str)
        .and_then(|s| base64_decode(s).ok())
}

pub(crate) fn validate_secret(obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Some(old) = old {
        if sz(obj, "type") != sz(old, "type") {
            errs.push(invalid_str("type", sz(obj, "type"), IMMUTABLE));
        }
        immutable_data(&mut errs, obj, old, &["data"]);
    }
    let total = data_sizes(&mut errs, omap(obj, "data"), "data");
    if total > MAX_SECRET_SIZE {
        errs.push(too_long("data", MAX_SECRET_SIZE));
    }
    let has = |k: &str| at(obj, &["data", k]).is_some();
    let json_check = |errs: &mut Vec<FieldError>, key: &str| match decoded(obj, key) {
        None if !has(key) => errs.push(required(format!("data[{key}]"), "")),
        None => {}
        Some(bytes) => {
            if let Err(e) = serde_json::from_slice::<serde_json::Map<String, Value>>(&bytes) {
                errs.push(invalid_str(
                    format!("data[{key}]"),
                    REDACTED,
                    &e.to_string(),
                ));
            }
        }
    };
    match sz(obj, "type") {
        "kubernetes.io/service-account-token" => {
            let name = at(
                obj,
                &[
                    "metadata",
                    "annotations",
                    "kubernetes.io/service-account.name",
                ],
            )
            .and_then(Value::as_str)
            .unwrap_or("");
            if name.is_empty() {
                errs.push(required(
                    "metadata.annotations[kubernetes.io/service-account.name]",
                    "",
                ));
            }
        }
        "kubernetes.io/dockercfg" => json_check(&mut errs, ".dockercfg"),
        "kubernetes.io/dockerconfigjson" => json_check(&mut errs, ".dockerconfigjson"),
        "kubernetes.io/basic-auth" if !has("username") && !has("password") => {
            errs.push(required("data[username]", ""));
            errs.push(required("data[password]", ""));
        }
        "kubernetes.io/ssh-auth" if decoded(obj, "ssh-privatekey").is_none_or(|b| b.is_empty()) => {
            errs.push(required("data[ssh-privatekey]", ""));
        }
        "kubernetes.io/tls" => {
            if !has("tls.crt") {
                errs.push(required("data[tls.crt]", ""));
            }
            if !has("tls.key") {
                errs.push(required("data[tls.key]", ""));
            }
        }
        _ => {}
    }
    errs
}

/// Objects with `immutable: true` keep their data (secrets and config maps).
fn immutable_data(errs: &mut Vec<FieldError>, new: &Value, old: &Value, fields: &[&str]) {
    if old.get("immutable").and_then(Value::as_bool) != Some(true) {
        return;
    }
    if new.get("immutable").and_then(Value::as_bool) != Some(true) {
        errs.push(forbidden(
            "immutable",
            "field is immutable when `immutable` is set",
        ));
    }
    for f in fields {
        if !sem_eq(new.get(*f), old.get(*f)) {
            errs.push(forbidden(*f, "field is immutable when `immutable` is set"));
        }
    }
}

pub(crate) fn validate_config_map(obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Some(old) = old {
        immutable_data(&mut errs, obj, old, &["data", "binaryData"]);
    }
    let binary = omap(obj, "binaryData");
    let mut total = 0;
    for (key, value) in sorted_entries(omap(obj, "data")) {
        for m in config_map_key_errors(key) {
            errs.push(invalid_str(format!("data[{key}]"), key, &m));
        }
        if binary.is_some_and(|b| b.contains_key(key)) {
            errs.push(invalid_str(
                format!("data[{key}]"),
                key,
                "duplicate of key present in binaryData",
            ));
        }
        total += value.as_str().map_or(0, str::len);
    }
    total += data_sizes(&mut errs, binary, "binaryData");
    if total > MAX_SECRET_SIZE {
        // Upstream reports this on the empty path, which it prints as `[]`.
        errs.push(too_long("[]", MAX_SECRET_SIZE));
    }
    errs
}

// ---- volumes and claims --------------------------------------------------------------------

const ACCESS_MODES: [&str; 4] = [
    "ReadOnlyMany",
    "ReadWriteMany",
    "ReadWriteOnce",
    "ReadWriteOncePod",
];

fn access_modes(errs: &mut Vec<FieldError>, spec: &Value, p: &str) {
    let (mut rwop, mut other) = (false, false);
    for m in arr(spec, "accessModes") {
        let m = m.as_str().unwrap_or("");
        if !ACCESS_MODES.contains(&m) {
            errs.push(not_supported(
                format!("{p}.accessModes"),
                q(m),
                &ACCESS_MODES,
            ));
        }
        if m == "ReadWriteOncePod" {
            rwop = true;
        } else if ACCESS_MODES.contains(&m) {
            other = true;
        }
    }
    if rwop && other {
        errs.push(forbidden(
            format!("{p}.accessModes"),
            "may not use ReadWriteOncePod with other access modes",
        ));
    }
}

fn data_source(errs: &mut Vec<FieldError>, ds: &Value, p: &str) {
    if sz(ds, "name").is_empty() {
        errs.push(required(format!("{p}.name"), ""));
    }
    let kind = sz(ds, "kind");
    if kind.is_empty() {
        errs.push(required(format!("{p}.kind"), ""));
    }
    let group = sz(ds, "apiGroup");
    if group.is_empty() && kind != "PersistentVolumeClaim" {
        errs.push(invalid_str(
            p,
            kind,
            "must be 'PersistentVolumeClaim' when referencing the default apiGroup",
        ));
    }
    if !group.is_empty() {
        subdomain(errs, group, &format!("{p}.apiGroup"));
    }
}

/// `ValidatePersistentVolumeClaimSpec`.
pub(crate) fn validate_claim_spec(errs: &mut Vec<FieldError>, spec: &Value, p: &str) {
    if arr(spec, "accessModes").is_empty() {
        errs.push(required(
            format!("{p}.accessModes"),
            "at least 1 access mode is required",
        ));
    }
    validate_selector(errs, spec.get("selector"), &format!("{p}.selector"));
    access_modes(errs, spec, p);
    let storage_path = format!("{p}.resources[storage]");
    match at(spec, &["resources", "requests", "storage"]) {
        None => errs.push(required(storage_path, "")),
        Some(v) => match Quantity::from_json(v) {
            None => errs.push(invalid(
                storage_path,
                gv(v),
                validation::QUANTITY_FORMAT_MSG,
            )),
            Some(qty) if qty.nanos() <= 0 => errs.push(invalid_str(
                storage_path,
                &qty.canonical(),
                "must be greater than zero",
            )),
            Some(_) => {}
        },
    }
    if let Some(class) = s(spec, "storageClassName").filter(|c| !c.is_empty()) {
        subdomain(errs, class, &format!("{p}.storageClassName"));
    }
    if let Some(mode) = s(spec, "volumeMode") {
        if mode != "Block" && mode != "Filesystem" {
            errs.push(not_supported(
                format!("{p}.volumeMode"),
                q(mode),
                &["Block", "Filesystem"],
            ));
        }
    }
    if let Some(ds) = get(spec, "dataSource") {
        data_source(errs, ds, &format!("{p}.dataSource"));
    }
    if let Some(ds) = get(spec, "dataSourceRef") {
        data_source(errs, ds, &format!("{p}.dataSourceRef"));
    }
}

pub(crate) fn prepare_claim(obj: &mut Value, old: Option<&Value>) {
    if let Some(spec) = child_if(obj, "spec") {
        pod::default_claim_spec(spec);
    }
    if old.is_none() {
        reset_status(obj, json!({}));
    }
    if let Some(status) = child(obj, "status") {
        if status
            .get("phase")
            .is_none_or(|p| p.as_str().unwrap_or("").is_empty())
        {
            status.insert("phase".into(), json!("Pending"));
        }
    }
    if let Some(status) = child_if(obj, "status") {
        canonical_resources(status, "capacity", true);
        canonical_resources(status, "allocatedResources", true);
    }
}

pub(crate) fn validate_claim(obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    validate_claim_spec(&mut errs, spec, "spec");
    let Some(old) = old else {
        return errs;
    };
    let old_spec = old.get("spec").unwrap_or(&Value::Null);
    let mut new_c = spec.clone();
    let mut old_c = old_spec.clone();
    if sz(old_spec, "volumeName").is_empty() {
        set_field(&mut old_c, "volumeName", spec.get("volumeName").cloned());
    }
    if get(old_spec, "storageClassName").is_none() && get(spec, "storageClassName").is_some() {
        let beta = at(
            old,
            &[
                "metadata",
                "annotations",
                "volume.beta.kubernetes.io/storage-class",
            ],
        )
        .and_then(Value::as_str);
        if beta.is_none_or(|b| Some(b) == s(spec, "storageClassName")) {
            set_field(&mut new_c, "storageClassName", None);
        }
    }
    let bound = at(old, &["status", "phase"]).and_then(Value::as_str) == Some("Bound");
    if bound {
        if let Some(req) = new_c
            .get_mut("resources")
            .and_then(|r| r.get_mut("requests"))
            .and_then(Value::as_object_mut)
        {
            match at(old_spec, &["resources", "requests", "storage"]) {
                Some(v) => req.insert("storage".into(), v.clone()),
                None => req.remove("storage"),
            };
        }
        set_field(
            &mut new_c,
            "volumeAttributesClassName",
            old_spec.get("volumeAttributesClassName").cloned(),
        );
    }
    if !sem_eq(Some(&new_c), Some(&old_c)) {
        errs.push(forbidden(
            "spec",
            &format!(
                "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims\n{}",
                diff(&old_c, &new_c)
            ),
        ));
    }
    let size = |v: &Value, path: &[&str]| at(v, path).and_then(Quantity::from_json);
    let new_size = size(spec, &["resources", "requests", "storage"]);
    let old_size = size(old_spec, &["resources", "requests", "storage"]);
    let status_size = size(old, &["status", "capacity", "storage"]);
    if let (Some(n), Some(o)) = (new_size, old_size) {
        if n < o && status_size.is_some_and(|st| n <= st) {
            errs.push(forbidden(
                "spec.resources.requests.storage",
                "field can not be less than status.capacity",
            ));
        }
    }
    if !sem_eq(spec.get("volumeMode"), old_spec.get("volumeMode")) {
        errs.push(invalid(
            "volumeMode",
            gvo(get(spec, "volumeMode")),
            IMMUTABLE,
        ));
    }
    errs
}

fn set_field(v: &mut Value, key: &str, val: Option<Value>) {
    if let Some(m) = v.as_object_mut() {
        match val {
            Some(x) => m.insert(key.to_string(), x),
            None => m.remove(key),
        };
    }
}

const PV_SOURCES: [&str; 22] = [
    "hostPath",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "glusterfs",
    "flocker",
    "nfs",
    "rbd",
    "quobyte",
    "cephfs",
    "iscsi",
    "cinder",
    "fc",
    "flexVolume",
    "azureFile",
    "vsphereVolume",
    "photonPersistentDisk",
    "portworxVolume",
    "azureDisk",
    "scaleIO",
    "local",
    "storageos",
    "csi",
];

pub(crate) fn prepare_volume(obj: &mut Value, old: Option<&Value>) {
    if let Some(spec) = child_if(obj, "spec") {
        default_str(spec, "persistentVolumeReclaimPolicy", "Retain");
        default(spec, "volumeMode", json!("Filesystem"));
        canonical_resources(spec, "capacity", true);
        if let Some(h) = child_if(spec, "hostPath") {
            default(h, "type", json!(""));
        }
    }
    if old.is_none() {
        reset_status(
            obj,
            json!({"phase": "Pending", "lastPhaseTransitionTime": now_rfc3339()}),
        );
    }
    if let Some(status) = child(obj, "status") {
        if status
            .get("phase")
            .is_none_or(|p| p.as_str().unwrap_or("").is_empty())
        {
            status.insert("phase".into(), json!("Pending"));
        }
    }
}

pub(crate) fn validate_volume(obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    if arr(spec, "accessModes").is_empty() {
        errs.push(required("spec.accessModes", ""));
    }
    access_modes(&mut errs, spec, "spec");
    let capacity = omap(spec, "capacity");
    if capacity.is_none_or(|c| c.is_empty()) {
        errs.push(required("spec.capacity", ""));
    }
    if capacity.is_none_or(|c| !c.contains_key("storage") || c.len() > 1) {
        errs.push(not_supported(
            "spec.capacity",
            gvo(spec.get("capacity")),
            &["storage"],
        ));
    }
    for (k, v) in sorted_entries(capacity) {
        let p = format!("spec.capacity[{k}]");
        match Quantity::from_json(v) {
            None => errs.push(invalid(&p, gv(v), validation::QUANTITY_FORMAT_MSG)),
            Some(qty) if qty.nanos() <= 0 => errs.push(invalid_str(
                &p,
                &qty.canonical(),
                "must be greater than zero",
            )),
            _ => {}
        }
    }
    if let Some(r) = s(spec, "persistentVolumeReclaimPolicy").filter(|r| !r.is_empty()) {
        if !["Delete", "Recycle", "Retain"].contains(&r) {
            errs.push(not_supported(
                "spec.persistentVolumeReclaimPolicy",
                q(r),
                &["Delete", "Recycle", "Retain"],
            ));
        }
    }
    let affinity = get(spec, "nodeAffinity");
    if let Some(a) = affinity {
        match get(a, "required") {
            Some(req) => pod::node_selector(&mut errs, req, "spec.nodeAffinity.required"),
            None => errs.push(required(
                "spec.nodeAffinity.required",
                "must specify required node constraints",
            )),
        }
    }
    let mut count = 0;
    for key in PV_SOURCES {
        let Some(src) = get(spec, key) else {
            continue;
        };
        if count > 0 && key != "flexVolume" {
            errs.push(forbidden(
                format!("spec.{key}"),
                "may not specify more than 1 volume type",
            ));
            continue;
        }
        count += 1;
        match key {
            "hostPath" | "local" => {
                let path = sz(src, "path");
                if path.is_empty() {
                    errs.push(required(format!("spec.{key}.path"), ""));
                } else if path.replace('\\', "/").split('/').any(|p| p == "..") {
                    errs.push(invalid_str(
                        format!("spec.{key}.path"),
                        path,
                        "must not contain '..'",
                    ));
                }
                if key == "local" && affinity.is_none() {
                    errs.push(required(
                        "spec.nodeAffinity",
                        "Local volume requires node affinity",
                    ));
                }
            }
            "nfs" => {
                if sz(src, "server").is_empty() {
                    errs.push(required("spec.nfs.server", ""));
                }
                let path = sz(src, "path");
                if path.is_empty() {
                    errs.push(required("spec.nfs.path", ""));
                }
                if !path.starts_with('/') {
                    errs.push(invalid_str(
                        "spec.nfs.path",
                        path,
                        "must be an absolute path",
                    ));
                }
            }
            "csi" => {
                let driver = sz(src, "driver");
                if driver.is_empty() {
                    errs.push(required("spec.csi.driver", ""));
                }
                if sz(src, "volumeHandle").is_empty() {
                    errs.push(required("spec.csi.volumeHandle", ""));
                }
            }
            _ => {}
        }
    }
    if count == 0 {
        errs.push(required("spec", "must specify a volume type"));
    }
    if let Some(class) = s(spec, "storageClassName").filter(|c| !c.is_empty()) {
        subdomain(&mut errs, class, "spec.storageClassName");
    }
    if let Some(mode) = s(spec, "volumeMode") {
        if mode != "Block" && mode != "Filesystem" {
            errs.push(not_supported(
                "spec.volumeMode",
                q(mode),
                &["Block", "Filesystem"],
            ));
        }
    }
    if let Some(old) = old {
        let old_spec = old.get("spec").unwrap_or(&Value::Null);
        let sources = |s: &Value| {
            let mut m = serde_json::Map::new();
            for k in PV_SOURCES {
                if let Some(v) = s.get(k) {
                    m.insert(k.to_string(), v.clone());
                }
            }
            Value::Object(m)
        };
        let (mut ns, os) = (sources(spec), sources(old_spec));
        // A controller expand secret may be added to a CSI volume.
        if at(&os, &["csi", "controllerExpandSecretRef"]).is_none() {
            if let Some(csi) = ns.get_mut("csi").and_then(Value::as_object_mut) {
                csi.remove("controllerExpandSecretRef");
            }
        }
        if !sem_eq(Some(&ns), Some(&os)) {
            errs.push(forbidden(
                "spec.persistentvolumesource",
                &format!(
                    "spec.persistentvolumesource is immutable after creation\n{}",
                    diff(&os, &ns)
                ),
            ));
        }
        if !sem_eq(spec.get("volumeMode"), old_spec.get("volumeMode")) {
            errs.push(invalid(
                "volumeMode",
                gvo(get(spec, "volumeMode")),
                IMMUTABLE,
            ));
        }
        if get(old_spec, "nodeAffinity").is_some()
            && !sem_eq(spec.get("nodeAffinity"), old_spec.get("nodeAffinity"))
        {
            errs.push(invalid(
                "nodeAffinity",
                gvo(get(spec, "nodeAffinity")),
                "field is immutable, except for updating from beta label to GA",
            ));
        }
    }
    errs
}

// ---- endpoints and events ------------------------------------------------------------------

pub(crate) fn prepare_endpoints(obj: &mut Value) {
    for subset in each(obj, "subsets") {
        for p in each(subset, "ports") {
            default_str(p, "protocol", "TCP");
        }
    }
}

fn endpoint_address(errs: &mut Vec<FieldError>, a: &Value, p: &str) {
    let ip = sz(a, "ip");
    if ip_field(errs, ip, &format!("{p}.ip")) {
        non_special_ip(errs, ip, &format!("{p}.ip"));
    }
    let host = sz(a, "hostname");
    if !host.is_empty() {
        dns_label(errs, host, &format!("{p}.hostname"));
    }
    if let Some(node) = s(a, "nodeName") {
        subdomain(errs, node, &format!("{p}.nodeName"));
    }
}

pub(crate) fn validate_endpoints(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (i, subset) in arr(obj, "subsets").iter().enumerate() {
        let sp = format!("subsets[{i}]");
        let addresses = arr(subset, "addresses");
        let not_ready = arr(subset, "notReadyAddresses");
        if addresses.is_empty() && not_ready.is_empty() {
            errs.push(required(
                &sp,
                "must specify `addresses` or `notReadyAddresses`",
            ));
        }
        for (j, a) in addresses.iter().enumerate() {
            endpoint_address(&mut errs, a, &format!("{sp}.addresses[{j}]"));
        }
        for (j, a) in not_ready.iter().enumerate() {
            endpoint_address(&mut errs, a, &format!("{sp}.notReadyAddresses[{j}]"));
        }
        let ports = arr(subset, "ports");
        for (j, port) in ports.iter().enumerate() {
            let pp = format!("{sp}.ports[{j}]");
            let name = sz(port, "name");
            if ports.len() > 1 && name.is_empty() {
                errs.push(required(format!("{pp}.name"), ""));
            } else if !name.is_empty() {
                dns_label(&mut errs, name, &format!("{pp}.name"));
            }
            let n = int(port, "port").unwrap_or(0);
            if !(1..=65535).contains(&n) {
                errs.push(invalid_int(
                    format!("{pp}.port"),
                    n,
                    &inclusive_range(1, 65535),
                ));
            }
            protocol(&mut errs, port, &pp);
            if let Some(ap) = s(port, "appProtocol") {
                qualified_name(&mut errs, ap, &format!("{pp}.appProtocol"));
            }
        }
    }
    errs
}

/// Core events: the fields upstream always prints.
pub(crate) fn prepare_event(obj: &mut Value) {
    default(obj, "involvedObject", json!({}));
    default(obj, "source", json!({}));
    for key in ["firstTimestamp", "lastTimestamp", "eventTime"] {
        if let Some(m) = obj.as_object_mut() {
            m.entry(key).or_insert(Value::Null);
        }
    }
    default(obj, "reportingComponent", json!(""));
    default(obj, "reportingInstance", json!(""));
}

// ---- limit ranges and quotas ---------------------------------------------------------------

pub(crate) fn prepare_limit_range(obj: &mut Value) {
    let Some(spec) = child_if(obj, "spec") else {
        return;
    };
    for item in each(spec, "limits") {
        for key in [
            "max",
            "min",
            "default",
            "defaultRequest",
            "maxLimitRequestRatio",
        ] {
            canonical_resources(item, key, true);
        }
        if sz(item, "type") != "Container" {
            continue;
        }
        let max = omap(item, "max").cloned().unwrap_or_default();
        let min = omap(item, "min").cloned().unwrap_or_default();
        let mut dflt = omap(item, "default").cloned().unwrap_or_default();
        for (k, v) in max {
            dflt.entry(k).or_insert(v);
        }
        let mut dreq = omap(item, "defaultRequest").cloned().unwrap_or_default();
        for (k, v) in dflt.iter() {
            dreq.entry(k.clone()).or_insert(v.clone());
        }
        for (k, v) in min {
            dreq.entry(k).or_insert(v);
        }
        if let Some(m) = item.as_object_mut() {
            if !dflt.is_empty() {
                m.insert("default".into(), Value::Object(dflt));
            }
            if !dreq.is_empty() {
                m.insert("defaultRequest".into(), Value::Object(dreq));
            }
        }
    }
}

fn limit_resource_name(errs: &mut Vec<FieldError>, ty: &str, name: &str, p: &str) {
    resource_name(errs, name, p);
    if (ty == "Pod" || ty == "Container")
        && !name.contains('/')
        && !["cpu", "memory", "ephemeral-storage"].contains(&name)
        && !name.starts_with("hugepages-")
    {
        errs.push(invalid_str(
            p,
            name,
            "must be a standard resource for containers",
        ));
    }
}

pub(crate) fn validate_limit_range(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut types = BTreeSet::new();
    for (i, item) in arr(obj.get("spec").unwrap_or(&Value::Null), "limits")
        .iter()
        .enumerate()
    {
        let p = format!("spec.limits[{i}]");
        let ty = sz(item, "type");
        let msgs = validation::qualified_name(ty);
        if !msgs.is_empty() {
            for m in msgs {
                errs.push(invalid_str(format!("{p}.type"), ty, &m));
            }
        } else if !ty.contains('/') && !["Pod", "Container", "PersistentVolumeClaim"].contains(&ty)
        {
            errs.push(invalid_str(
                format!("{p}.type"),
                ty,
                "must be a standard limit type or fully qualified",
            ));
        }
        if !types.insert(ty) {
            errs.push(duplicate(format!("{p}.type"), q(ty)));
        }
        let mut lists: Vec<(&str, Vec<(String, Quantity)>)> = Vec::new();
        let keys: &[&str] = if ty == "Pod" {
            if omap(item, "default").is_some_and(|m| !m.is_empty()) {
                errs.push(forbidden(
                    format!("{p}.default"),
                    "may not be specified when `type` is 'Pod'",
                ));
            }
            if omap(item, "defaultRequest").is_some_and(|m| !m.is_empty()) {
                errs.push(forbidden(
                    format!("{p}.defaultRequest"),
                    "may not be specified when `type` is 'Pod'",
                ));
            }
            &["max", "min", "maxLimitRequestRatio"]
        } else {
            &[
                "max",
                "min",
                "default",
                "defaultRequest",
                "maxLimitRequestRatio",
            ]
        };
        for key in keys {
            let mut list = Vec::new();
            for (name, v) in sorted_entries(omap(item, key)) {
                let np = format!("{p}.{key}[{name}]");
                limit_resource_name(&mut errs, ty, name, &np);
                if let Some(qty) = Quantity::from_json(v) {
                    list.push((name.clone(), qty));
                } else {
                    errs.push(invalid(&np, gv(v), validation::QUANTITY_FORMAT_MSG));
                }
            }
            lists.push((key, list));
        }
        if ty == "PersistentVolumeClaim"
            && at(item, &["min", "storage"]).is_none()
            && at(item, &["max", "storage"]).is_none()
        {
            errs.push(required(
                format!("{p}.limits"),
                "either minimum or maximum storage value is required, but neither was provided",
            ));
        }
        let find = |key: &str, name: &str| {
            lists
                .iter()
                .find(|(k, _)| *k == key)
                .and_then(|(_, l)| l.iter().find(|(n, _)| n == name).map(|(_, q)| *q))
        };
        let mut names: Vec<String> = lists
            .iter()
            .flat_map(|(_, l)| l.iter().map(|(n, _)| n.clone()))
            .collect();
        names.sort();
        names.dedup();
        for k in names {
            let min = find("min", &k);
            let max = find("max", &k);
            let dflt = find("default", &k);
            let dreq = find("defaultRequest", &k);
            let ratio = find("maxLimitRequestRatio", &k);
            let c = |q: Quantity| q.canonical();
            if let (Some(mn), Some(mx)) = (min, max) {
                if mn > mx {
                    errs.push(invalid(
                        format!("{p}.min[{k}]"),
                        c(mn),
                        &format!("min value {} is greater than max value {}", c(mn), c(mx)),
                    ));
                }
            }
            if let (Some(dr), Some(mn)) = (dreq, min) {
                if mn > dr {
                    errs.push(invalid(
                        format!("{p}.defaultRequest[{k}]"),
                        c(dr),
                        &format!(
                            "min value {} is greater than default request value {}",
                            c(mn),
                            c(dr)
                        ),
                    ));
                }
            }
            if let (Some(dr), Some(mx)) = (dreq, max) {
                if dr > mx {
                    errs.push(invalid(
                        format!("{p}.defaultRequest[{k}]"),
                        c(dr),
                        &format!(
                            "default request value {} is greater than max value {}",
                            c(dr),
                            c(mx)
                        ),
                    ));
                }
            }
            if let (Some(dr), Some(d)) = (dreq, dflt) {
                if dr > d {
                    errs.push(invalid(
                        format!("{p}.defaultRequest[{k}]"),
                        c(dr),
                        &format!(
                            "default request value {} is greater than default limit value {}",
                            c(dr),
                            c(d)
                        ),
                    ));
                }
            }
            if let (Some(d), Some(mn)) = (dflt, min) {
                if mn > d {
                    errs.push(invalid(
                        format!("{p}.default[{k}]"),
                        c(mn),
                        &format!("min value {} is greater than default value {}", c(mn), c(d)),
                    ));
                }
            }
            if let (Some(d), Some(mx)) = (dflt, max) {
                if d > mx {
                    errs.push(invalid(
                        format!("{p}.default[{k}]"),
                        c(mx),
                        &format!("default value {} is greater than max value {}", c(d), c(mx)),
                    ));
                }
            }
            if let Some(r) = ratio {
                if r < Quantity::from_units(1) {
                    errs.push(invalid(
                        format!("{p}.maxLimitRequestRatio[{k}]"),
                        c(r),
                        &format!("ratio {} is less than 1", c(r)),
                    ));
                }
            }
        }
    }
    errs
}

const QUOTA_RESOURCES: [&str; 19] = [
    "pods",
    "services",
    "replicationcontrollers",
    "resourcequotas",
    "secrets",
    "configmaps",
    "persistentvolumeclaims",
    "services.nodeports",
    "services.loadbalancers",
    "cpu",
    "memory",
    "ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.storage",
    "requests.ephemeral-storage",
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
];

pub(crate) fn prepare_quota(obj: &mut Value, old: Option<&Value>) {
    if let Some(spec) = child_if(obj, "spec") {
        canonical_resources(spec, "hard", true);
    }
    if old.is_none() {
        reset_status(obj, json!({}));
    }
    if let Some(status) = child_if(obj, "status") {
        canonical_resources(status, "hard", true);
        canonical_resources(status, "used", true);
    }
}

const SCOPES: [&str; 7] = [
    "Terminating",
    "NotTerminating",
    "BestEffort",
    "NotBestEffort",
    "PriorityClass",
    "CrossNamespacePodAffinity",
    "VolumeAttributesClass",
];

/// Whether a quota scope may limit a resource (upstream's `IsResourceQuotaScopeValidForResource`):
/// the pod scopes track only pods and their compute resources, BestEffort only pods.
fn scope_valid_for(scope: &str, resource: &str) -> bool {
    let pods = resource == "pods";
    let compute = matches!(
        resource,
        "cpu" | "memory" | "limits.cpu" | "limits.memory" | "requests.cpu" | "requests.memory"
    );
    match scope {
        "Terminating"
        | "NotTerminating"
        | "NotBestEffort"
        | "PriorityClass"
        | "CrossNamespacePodAffinity" => pods || compute,
        "BestEffort" => pods,
        _ => true,
    }
}

/// `spec.scopes` as Go's `%#v` prints it.
fn go_scopes(scopes: &[&str]) -> String {
    let parts: Vec<String> = scopes.iter().map(|s| q(s)).collect();
    format!("[]core.ResourceQuotaScope{{{}}}", parts.join(", "))
}

/// `spec.scopeSelector` as Go's `%#v` prints it.
fn go_scope_selector(selector: &Value) -> String {
    let exprs: Vec<String> = arr(selector, "matchExpressions")
        .iter()
        .map(|e| {
            let values = match e.get("values").and_then(Value::as_array) {
                None => "[]string(nil)".to_string(),
                Some(_) => go_strings(e.get("values")),
            };
            format!(
                "core.ScopedResourceSelectorRequirement{{ScopeName:{}, Operator:{}, Values:{values}}}",
                q(sz(e, "scopeName")),
                q(sz(e, "operator"))
            )
        })
        .collect();
    format!(
        "core.ScopeSelector{{MatchExpressions:[]core.ScopedResourceSelectorRequirement{{{}}}}}",
        exprs.join(", ")
    )
}

pub(crate) fn validate_quota(obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    for (k, v) in sorted_entries(omap(spec, "hard")) {
        let p = format!("spec.hard[{k}]");
        resource_name(&mut errs, k, &p);
        if !k.contains('/')
            && !QUOTA_RESOURCES.contains(&k.as_str())
            && !k.starts_with("hugepages-")
            && !k.starts_with("requests.hugepages-")
        {
            errs.push(invalid_str(&p, k, "must be a standard resource for quota"));
        }
        quantity_value(&mut errs, k, v, &p);
    }
    let scopes: Vec<&str> = arr(spec, "scopes")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let scopes_go = go_scopes(&scopes);
    let hard: Vec<&String> = sorted_entries(omap(spec, "hard"))
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    let standard = |k: &str| {
        QUOTA_RESOURCES.contains(&k)
            || k.starts_with("hugepages-")
            || k.starts_with("requests.hugepages-")
    };
    for s in &scopes {
        if !SCOPES.contains(s) {
            errs.push(invalid("spec.scopes", &scopes_go, "unsupported scope"));
        }
        for k in &hard {
            if standard(k) && !scope_valid_for(s, k) {
                errs.push(invalid(
                    "spec.scopes",
                    &scopes_go,
                    "unsupported scope applied to resource",
                ));
            }
        }
    }
    for pair in [
        ["BestEffort", "NotBestEffort"],
        ["Terminating", "NotTerminating"],
    ] {
        if pair.iter().all(|p| scopes.contains(p)) {
            errs.push(invalid("spec.scopes", &scopes_go, "conflicting scopes"));
        }
    }
    if let Some(selector) = spec.get("scopeSelector").filter(|v| v.is_object()) {
        let path = "spec.scopeSelector.matchExpressions";
        let selector_go = go_scope_selector(selector);
        let mut names = Vec::new();
        for e in arr(selector, "matchExpressions") {
            let name = sz(e, "scopeName");
            let op = sz(e, "operator");
            let values = arr(e, "values");
            if !SCOPES.contains(&name) {
                errs.push(invalid_str(
                    format!("{path}.scopeName"),
                    name,
                    "unsupported scope",
                ));
            }
            for k in &hard {
                if standard(k) && !scope_valid_for(name, k) {
                    errs.push(invalid(
                        path,
                        &selector_go,
                        "unsupported scope applied to resource",
                    ));
                }
            }
            if matches!(
                name,
                "BestEffort"
                    | "NotBestEffort"
                    | "Terminating"
                    | "NotTerminating"
                    | "CrossNamespacePodAffinity"
            ) && op != "Exists"
            {
                errs.push(invalid_str(
                    format!("{path}.operator"),
                    op,
                    "must be 'Exist' when scope is any of ResourceQuotaScopeTerminating, ResourceQuotaScopeNotTerminating, ResourceQuotaScopeBestEffort, ResourceQuotaScopeNotBestEffort or ResourceQuotaScopeCrossNamespacePodAffinity",
                ));
            }
            match op {
                "In" | "NotIn" if values.is_empty() => errs.push(required(
                    format!("{path}.values"),
                    "must be at least one value when `operator` is 'In' or 'NotIn' for scope selector",
                )),
                "In" | "NotIn" => {}
                "Exists" | "DoesNotExist" if !values.is_empty() => errs.push(invalid(
                    format!("{path}.values"),
                    go_strings(e.get("values")),
                    "must be no value when `operator` is 'Exist' or 'DoesNotExist' for scope selector",
                )),
                "Exists" | "DoesNotExist" => {}
                _ => errs.push(invalid_str(
                    format!("{path}.operator"),
                    op,
                    "not a valid selector operator",
                )),
            }
            names.push(name);
        }
        for pair in [
            ["BestEffort", "NotBestEffort"],
            ["Terminating", "NotTerminating"],
        ] {
            if pair.iter().all(|p| names.contains(p)) {
                errs.push(invalid(path, &scopes_go, "conflicting scopes"));
            }
        }
    }
    if let Some(old) = old {
        let set = |v: &Value| -> BTreeSet<String> {
            arr(v.get("spec").unwrap_or(&Value::Null), "scopes")
                .iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        };
        if set(obj) != set(old) {
            errs.push(invalid("spec.scopes", &scopes_go, IMMUTABLE));
        }
    }
    errs
}

// ---- replication controllers, pod templates, nodes -----------------------------------------

pub(crate) fn prepare_rc(obj: &mut Value, old: Option<&Value>) {
    let template_labels = at(obj, &["spec", "template", "metadata", "labels"]).cloned();
    if let Some(labels) = template_labels.filter(|l| l.is_object()) {
        if let Some(spec) = child_if(obj, "spec") {
            if obj_len(spec, "selector") == 0 {
                set_field(spec, "selector", Some(labels.clone()));
            }
        }
        if let Some(meta) = child(obj, "metadata") {
            if meta
                .get("labels")
                .and_then(Value::as_object)
                .is_none_or(|m| m.is_empty())
            {
                meta.insert("labels".into(), labels);
            }
        }
    }
    if let Some(spec) = child_if(obj, "spec") {
        default(spec, "replicas", json!(1));
        if let Some(t) = child_if(spec, "template") {
            pod::default_template(t);
        }
    }
    if old.is_none() {
        reset_status(obj, json!({"replicas": 0}));
    }
}

fn obj_len(v: &Value, key: &str) -> usize {
    omap(v, key).map_or(0, |m| m.len())
}

pub(crate) fn validate_rc(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    non_negative(&mut errs, spec, "minReadySeconds", "spec.minReadySeconds");
    if obj_len(spec, "selector") == 0 {
        errs.push(required("spec.selector", ""));
    }
    non_negative(&mut errs, spec, "replicas", "spec.replicas");
    match get(spec, "template") {
        None => errs.push(required("spec.template", "")),
        Some(t) => {
            let selector = omap(spec, "selector");
            if selector.is_some_and(|s| !s.is_empty()) {
                let labels = at(t, &["metadata", "labels"]);
                let ok = selector
                    .into_iter()
                    .flatten()
                    .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v));
                if !ok {
                    errs.push(invalid(
                        "spec.template.metadata.labels",
                        go_map(labels),
                        "`selector` does not match template `labels`",
                    ));
                }
            }
            validate_template(&mut errs, Some(t), "spec.template");
            let rp = at(t, &["spec", "restartPolicy"])
                .and_then(Value::as_str)
                .unwrap_or("");
            if rp != "Always" {
                errs.push(not_supported(
                    "spec.template.spec.restartPolicy",
                    q(rp),
                    &["Always"],
                ));
            }
            if at(t, &["spec", "activeDeadlineSeconds"]).is_some() {
                errs.push(forbidden(
                    "spec.template.spec.activeDeadlineSeconds",
                    "activeDeadlineSeconds in ReplicationController is not Supported",
                ));
            }
        }
    }
    errs
}

pub(crate) fn prepare_pod_template(obj: &mut Value) {
    if let Some(t) = child_if(obj, "template") {
        pod::default_template(t);
    }
}

pub(crate) fn validate_pod_template(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    validate_template(&mut errs, obj.get("template"), "template");
    errs
}

pub(crate) fn prepare_node(obj: &mut Value) {
    if let Some(status) = child_if(obj, "status") {
        canonical_resources(status, "capacity", true);
        canonical_resources(status, "allocatable", true);
        if get(status, "allocatable").is_none() {
            if let Some(cap) = get(status, "capacity").cloned() {
                set_field(status, "allocatable", Some(cap));
            }
        }
    }
}

pub(crate) fn validate_node(obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let mut unique = BTreeSet::new();
    for (i, t) in arr(spec, "taints").iter().enumerate() {
        let p = format!("metadata.taints[{i}]");
        label_name(&mut errs, sz(t, "key"), &format!("{p}.key"));
        let value = sz(t, "value");
        let msgs = validation::label_value(value);
        if !msgs.is_empty() {
            errs.push(invalid_str(format!("{p}.value"), value, &msgs.join(";")));
        }
        let effect = sz(t, "effect");
        if effect.is_empty() {
            errs.push(required(format!("{p}.effect"), ""));
        } else if !["NoSchedule", "PreferNoSchedule", "NoExecute"].contains(&effect) {
            errs.push(not_supported(
                format!("{p}.effect"),
                q(effect),
                &["NoSchedule", "PreferNoSchedule", "NoExecute"],
            ));
        }
        if !unique.insert((effect, sz(t, "key"))) {
            let mut e = duplicate(&p, t.to_string());
            e.message
                .push_str(": taints must be unique by key and effect pair");
            errs.push(e);
        }
    }
    for (i, c) in arr(spec, "podCIDRs").iter().enumerate() {
        cidr_field(
            &mut errs,
            c.as_str().unwrap_or(""),
            &format!("spec.podCIDRs[{i}]"),
        );
    }
    if let Some(old) = old {
        let old_spec = old.get("spec").unwrap_or(&Value::Null);
        let old_cidrs = arr(old_spec, "podCIDRs");
        if !old_cidrs.is_empty() && old_cidrs != arr(spec, "podCIDRs") {
            errs.push(forbidden(
                "spec.podCIDRs",
                "node updates may not change podCIDR except from \"\" to valid",
            ));
        }
        let old_provider = sz(old_spec, "providerID");
        if !old_provider.is_empty() && old_provider != sz(spec, "providerID") {
            errs.push(forbidden(
                "spec.providerID",
                "node updates may not change providerID except from \"\" to valid",
            ));
        }
    }
    errs
}

// ---- time ----------------------------------------------------------------------------------

/// The current time as `YYYY-MM-DDThh:mm:ssZ`.
pub(crate) fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Days since 1970-01-01 to a civil date (proleptic Gregorian calendar).
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
