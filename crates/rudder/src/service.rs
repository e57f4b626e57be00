//! `rudder service NAME [-n NS]`: the URLs where a Service answers, as `minikube service
//! --url` prints them: its LoadBalancer ingress addresses at its ports, every Ready node's
//! address at its NodePorts, and its cluster IP at its ports (reached from the nodes and pods).

use k8s_openapi::api::core::v1::{Node, Service};

/// How a URL names a port: `http` unless the port says otherwise (`https`, 443; `udp://`,
/// `sctp://` for those protocols).
fn scheme(port: &k8s_openapi::api::core::v1::ServicePort) -> &'static str {
    match port.protocol.as_deref().unwrap_or("TCP") {
        "UDP" => "udp",
        "SCTP" => "sctp",
        _ if port.port == 443 || port.name.as_deref() == Some("https") => "https",
        _ => "http",
    }
}

fn host(ip: &str) -> String {
    if ip.contains(':') {
        format!("[{ip}]")
    } else {
        ip.to_string()
    }
}

/// The InternalIP of every Ready node.
fn node_addresses(nodes: &[Node]) -> Vec<String> {
    nodes
        .iter()
        .filter_map(|n| n.status.as_ref())
        .filter(|s| {
            s.conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        })
        .filter_map(|s| {
            s.addresses
                .iter()
                .flatten()
                .find(|a| a.type_ == "InternalIP")
                .map(|a| a.address.clone())
        })
        .collect()
}

/// The URLs of `svc`, or why it has none.
pub fn urls(svc: &Service, nodes: &[Node]) -> Result<Vec<String>, String> {
    let name = svc.metadata.name.as_deref().unwrap_or_default();
    let spec = svc.spec.as_ref().ok_or("the Service has no spec")?;
    if spec.type_.as_deref() == Some("ExternalName") {
        return Err(format!(
            "service {name} is an ExternalName for {}: it has no address of its own",
            spec.external_name.as_deref().unwrap_or("nothing")
        ));
    }
    let cluster_ip = spec.cluster_ip.as_deref().unwrap_or("None");
    if cluster_ip == "None" {
        return Err(format!(
            "service {name} is headless: reach its pods by name ({name}.NAMESPACE.svc.cluster.local)"
        ));
    }
    let ingress: Vec<String> = svc
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|i| i.ip.clone().or_else(|| i.hostname.clone()))
        .collect();
    let nodes = node_addresses(nodes);
    let mut out = Vec::new();
    for port in spec.ports.iter().flatten() {
        let scheme = scheme(port);
        for ip in &ingress {
            out.push(format!("{scheme}://{}:{}", host(ip), port.port));
        }
        if let Some(np) = port.node_port {
            for ip in &nodes {
                out.push(format!("{scheme}://{}:{np}", host(ip)));
            }
        }
        out.push(format!("{scheme}://{}:{}", host(cluster_ip), port.port));
    }
    if out.is_empty() {
        return Err(format!("service {name} has no ports"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(ip: &str, ready: &str) -> Node {
        serde_json::from_value(json!({"metadata": {"name": ip},
            "status": {"conditions": [{"type": "Ready", "status": ready}],
                       "addresses": [{"type": "InternalIP", "address": ip}]}}))
        .unwrap()
    }

    fn svc(v: serde_json::Value) -> Service {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn load_balancers_node_ports_then_the_cluster_ip() {
        let nodes = [node("10.0.0.1", "True"), node("10.0.0.2", "False")];
        let s = svc(json!({"metadata": {"name": "web"},
            "spec": {"type": "LoadBalancer", "clusterIP": "10.43.0.20",
                     "ports": [{"port": 80, "nodePort": 30080},
                               {"name": "dns", "port": 53, "protocol": "UDP", "nodePort": 30053}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "10.0.0.1"}]}}}));
        assert_eq!(
            urls(&s, &nodes).unwrap(),
            [
                "http://10.0.0.1:80",
                "http://10.0.0.1:30080",
                "http://10.43.0.20:80",
                "udp://10.0.0.1:53",
                "udp://10.0.0.1:30053",
                "udp://10.43.0.20:53",
            ]
        );
        let v6 = svc(json!({"metadata": {"name": "web"},
            "spec": {"clusterIP": "fd43::20", "ports": [{"port": 443}]}}));
        assert_eq!(urls(&v6, &nodes).unwrap(), ["https://[fd43::20]:443"]);
    }

    #[test]
    fn headless_and_external_names_say_why_there_is_no_url() {
        let headless = svc(json!({"metadata": {"name": "db"},
            "spec": {"clusterIP": "None", "ports": [{"port": 5432}]}}));
        assert!(urls(&headless, &[]).unwrap_err().contains("headless"));
        let ext = svc(json!({"metadata": {"name": "x"},
            "spec": {"type": "ExternalName", "externalName": "example.org"}}));
        assert!(urls(&ext, &[]).unwrap_err().contains("example.org"));
    }
}
