//! A container's environment as the kubelet makes it: the service variables of the pod's
//! namespace (`REDIS_SERVICE_HOST`, `REDIS_PORT_6379_TCP`, …; with `enableServiceLinks:
//! false` only the `kubernetes` service's), then `envFrom` ConfigMaps and Secrets, then `env`
//! in order, where `valueFrom` reads a ConfigMap or Secret key, a field of the pod (downward
//! API) or a resource of the container, and `$(VAR)` refers to a variable defined before it.
//! The same references are expanded in the container's command and args.
//!
//! A reference that cannot be resolved (a missing ConfigMap, Secret or key that is not
//! `optional`) is the container's `CreateContainerConfigError`, with the kubelet's message.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret, Service};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{Api, ListParams};

/// Reads the objects a pod's environment refers to, once per start.
pub struct Sources<'a> {
    pub client: &'a kube::Client,
    /// The node's allocatable resources (a container's limit when it sets none).
    pub allocatable: &'a BTreeMap<String, Quantity>,
    read: HashMap<(Kind, String), Option<BTreeMap<String, String>>>,
}

impl<'a> Sources<'a> {
    pub fn new(client: &'a kube::Client, allocatable: &'a BTreeMap<String, Quantity>) -> Self {
        Sources {
            client,
            allocatable,
            read: HashMap::new(),
        }
    }

    /// A ConfigMap's data (binary data is not for variables) or a Secret's (as text); `None`
    /// if it does not exist.
    async fn data(
        &mut self,
        kind: Kind,
        ns: &str,
        name: &str,
    ) -> Result<Option<BTreeMap<String, String>>, String> {
        let key = (kind, name.to_string());
        if let Some(found) = self.read.get(&key) {
            return Ok(found.clone());
        }
        let failed = |e: kube::Error| format!("reading {} {name:?}: {e}", kind.lower());
        let found = match kind {
            Kind::ConfigMap => Api::<ConfigMap>::namespaced(self.client.clone(), ns)
                .get_opt(name)
                .await
                .map_err(failed)?
                .map(|c| c.data.unwrap_or_default()),
            Kind::Secret => Api::<Secret>::namespaced(self.client.clone(), ns)
                .get_opt(name)
                .await
                .map_err(failed)?
                .map(|s| {
                    let mut data: BTreeMap<String, String> = s
                        .data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
                        .collect();
                    data.extend(s.string_data.unwrap_or_default());
                    data
                }),
        };
        self.read.insert(key, found.clone());
        Ok(found)
    }

    /// The object's data, or `None` when it is absent and `optional`.
    async fn required(
        &mut self,
        kind: Kind,
        ns: &str,
        name: &str,
        optional: Option<bool>,
    ) -> Result<Option<BTreeMap<String, String>>, String> {
        match self.data(kind, ns, name).await? {
            Some(d) => Ok(Some(d)),
            None if optional == Some(true) => Ok(None),
            None => Err(format!("{} {name:?} not found", kind.lower())),
        }
    }

    /// One key of the object, or `None` when it (or the object) is absent and `optional`.
    async fn key(
        &mut self,
        kind: Kind,
        ns: &str,
        name: &str,
        key: &str,
        optional: Option<bool>,
    ) -> Result<Option<String>, String> {
        let Some(data) = self.required(kind, ns, name, optional).await? else {
            return Ok(None);
        };
        match data.get(key) {
            Some(v) => Ok(Some(v.clone())),
            None if optional == Some(true) => Ok(None),
            None => Err(format!(
                "couldn't find key {key} in {} {ns}/{name}",
                kind.title()
            )),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    ConfigMap,
    Secret,
}

impl Kind {
    fn lower(self) -> &'static str {
        match self {
            Kind::ConfigMap => "configmap",
            Kind::Secret => "secret",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Kind::ConfigMap => "ConfigMap",
            Kind::Secret => "Secret",
        }
    }
}

/// The environment of container `c` of `pod`, in order; the error is the
/// CreateContainerConfigError message.
pub async fn environment(
    sources: &mut Sources<'_>,
    pod: &Pod,
    c: &Container,
) -> Result<Vec<(String, String)>, String> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    let mut out: Vec<(String, String)> = Vec::new();
    let set = |out: &mut Vec<(String, String)>, k: String, v: String| match out
        .iter_mut()
        .find(|(n, _)| *n == k)
    {
        Some(e) => e.1 = v,
        None => out.push((k, v)),
    };
    for (k, v) in service_variables(
        sources.client,
        &ns,
        spec.enable_service_links != Some(false),
    )
    .await?
    {
        set(&mut out, k, v);
    }
    for from in c.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        let refs = [
            from.config_map_ref
                .as_ref()
                .map(|r| (Kind::ConfigMap, &r.name, r.optional)),
            from.secret_ref
                .as_ref()
                .map(|r| (Kind::Secret, &r.name, r.optional)),
        ];
        for (kind, name, optional) in refs.into_iter().flatten() {
            if let Some(data) = sources.required(kind, &ns, name, optional).await? {
                for (k, v) in data {
                    set(&mut out, format!("{prefix}{k}"), v);
                }
            }
        }
    }
    for e in c.env.iter().flatten() {
        let value = if let Some(v) = &e.value {
            let known: HashMap<&str, &str> =
                out.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            expand(v, &known)
        } else if let Some(from) = &e.value_from {
            let key_ref = from
                .config_map_key_ref
                .as_ref()
                .map(|r| (Kind::ConfigMap, &r.name, &r.key, r.optional))
                .or(from
                    .secret_key_ref
                    .as_ref()
                    .map(|r| (Kind::Secret, &r.name, &r.key, r.optional)));
            if let Some((kind, name, key, optional)) = key_ref {
                match sources.key(kind, &ns, name, key, optional).await? {
                    Some(v) => v,
                    None => continue,
                }
            } else if let Some(f) = &from.field_ref {
                field(pod, &f.field_path)?
            } else if let Some(r) = &from.resource_field_ref {
                let container = match r.container_name.as_deref() {
                    Some(name) if !name.is_empty() => spec
                        .containers
                        .iter()
                        .chain(spec.init_containers.iter().flatten())
                        .find(|x| x.name == name)
                        .ok_or_else(|| format!("container {name:?} not found in the pod"))?,
                    _ => c,
                };
                resource(
                    container,
                    &r.resource,
                    r.divisor.as_ref(),
                    sources.allocatable,
                )?
            } else {
                String::new()
            }
        } else {
            String::new()
        };
        set(&mut out, e.name.clone(), value);
    }
    Ok(out)
}

/// The `$(VAR)` references of `s` replaced from `known` (`$$` is a `$`; unknown references
/// stay as they are), as the kubelet expands variables.
pub fn expand(s: &str, known: &HashMap<&str, &str>) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    let mut plain = 0;
    while i < b.len() {
        if b[i] == b'$' && i + 1 < b.len() {
            match b[i + 1] {
                b'$' => {
                    out.push_str(&s[plain..i]);
                    out.push('$');
                    i += 2;
                    plain = i;
                    continue;
                }
                b'(' => {
                    if let Some(end) = s[i + 2..].find(')') {
                        let name = &s[i + 2..i + 2 + end];
                        if let Some(v) = known.get(name) {
                            out.push_str(&s[plain..i]);
                            out.push_str(v);
                            i += end + 3;
                            plain = i;
                            continue;
                        }
                    }
                }
                _ => {}
            }
        }
        i += 1;
    }
    out.push_str(&s[plain..]);
    out
}

/// A downward-API field of the pod.
pub(crate) fn field(pod: &Pod, path: &str) -> Result<String, String> {
    let m = &pod.metadata;
    let spec = pod.spec.clone().unwrap_or_default();
    let status = pod.status.clone().unwrap_or_default();
    let keyed = |prefix: &str, map: &Option<BTreeMap<String, String>>| -> Option<String> {
        let key = path.strip_prefix(prefix)?.strip_suffix("']")?;
        Some(
            map.as_ref()
                .and_then(|m| m.get(key))
                .cloned()
                .unwrap_or_default(),
        )
    };
    if let Some(v) = keyed("metadata.labels['", &m.labels) {
        return Ok(v);
    }
    if let Some(v) = keyed("metadata.annotations['", &m.annotations) {
        return Ok(v);
    }
    let ips = |list: Option<Vec<String>>| list.unwrap_or_default().join(",");
    Ok(match path {
        "metadata.name" => m.name.clone().unwrap_or_default(),
        "metadata.namespace" => m.namespace.clone().unwrap_or_default(),
        "metadata.uid" => m.uid.clone().unwrap_or_default(),
        "spec.nodeName" => spec.node_name.unwrap_or_default(),
        "spec.serviceAccountName" => spec.service_account_name.unwrap_or_default(),
        "status.hostIP" => status.host_ip.unwrap_or_default(),
        "status.hostIPs" => ips(status
            .host_ips
            .map(|v| v.into_iter().map(|h| h.ip).collect())),
        "status.podIP" => status.pod_ip.unwrap_or_default(),
        "status.podIPs" => ips(status
            .pod_ips
            .map(|v| v.into_iter().map(|p| p.ip).collect())),
        other => return Err(format!("unsupported fieldPath: {other}")),
    })
}

/// A container's resource for `resourceFieldRef`, in units of `divisor` rounded up; without a
/// limit, the node's allocatable.
pub(crate) fn resource(
    c: &Container,
    name: &str,
    divisor: Option<&Quantity>,
    allocatable: &BTreeMap<String, Quantity>,
) -> Result<String, String> {
    let res = c.resources.clone().unwrap_or_default();
    let (kind, key) = name
        .split_once('.')
        .ok_or_else(|| format!("unsupported container resource: {name}"))?;
    let quantity = match kind {
        "limits" => res
            .limits
            .as_ref()
            .and_then(|l| l.get(key))
            .or(allocatable.get(key)),
        "requests" => res.requests.as_ref().and_then(|l| l.get(key)),
        _ => return Err(format!("unsupported container resource: {name}")),
    };
    let nanos = |q: &Quantity| rudder_api::validation::Quantity::parse(&q.0).map(|q| q.nanos());
    let value = quantity.and_then(nanos).unwrap_or(0).max(0);
    let divisor = divisor
        .and_then(nanos)
        .filter(|d| *d > 0)
        .unwrap_or(1_000_000_000);
    Ok(((value + divisor - 1) / divisor).to_string())
}

/// The service variables for a pod in `ns`: its namespace's services when `links`, and always
/// the `kubernetes` service of `default`.
async fn service_variables(
    client: &kube::Client,
    ns: &str,
    links: bool,
) -> Result<Vec<(String, String)>, String> {
    let mut services: BTreeMap<String, Service> = BTreeMap::new();
    if links {
        let api: Api<Service> = Api::namespaced(client.clone(), ns);
        for s in api
            .list(&ListParams::default())
            .await
            .map_err(|e| format!("listing services: {e}"))?
        {
            services.insert(s.metadata.name.clone().unwrap_or_default(), s);
        }
    }
    if ns != "default" || !links {
        let api: Api<Service> = Api::namespaced(client.clone(), "default");
        if let Some(s) = api
            .get_opt("kubernetes")
            .await
            .map_err(|e| format!("reading service \"kubernetes\": {e}"))?
        {
            services.insert("kubernetes".into(), s);
        }
    }
    let mut out = Vec::new();
    for (name, s) in services {
        let spec = s.spec.unwrap_or_default();
        let Some(ip) = spec.cluster_ip.filter(|ip| !ip.is_empty() && ip != "None") else {
            continue;
        };
        let prefix = name.to_ascii_uppercase().replace('-', "_");
        let ports = spec.ports.unwrap_or_default();
        let Some(first) = ports.first() else {
            continue;
        };
        out.push((format!("{prefix}_SERVICE_HOST"), ip.clone()));
        out.push((format!("{prefix}_SERVICE_PORT"), first.port.to_string()));
        for p in &ports {
            if let Some(n) = p.name.as_deref().filter(|n| !n.is_empty()) {
                out.push((
                    format!(
                        "{prefix}_SERVICE_PORT_{}",
                        n.to_ascii_uppercase().replace('-', "_")
                    ),
                    p.port.to_string(),
                ));
            }
        }
        let url = |p: &k8s_openapi::api::core::v1::ServicePort| {
            let proto = p.protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase();
            let host = if ip.contains(':') {
                format!("[{ip}]")
            } else {
                ip.clone()
            };
            (proto.clone(), format!("{proto}://{host}:{}", p.port))
        };
        out.push((format!("{prefix}_PORT"), url(first).1));
        for p in &ports {
            let (proto, u) = url(p);
            let base = format!("{prefix}_PORT_{}_{}", p.port, proto.to_ascii_uppercase());
            out.push((base.clone(), u));
            out.push((format!("{base}_PROTO"), proto));
            out.push((format!("{base}_PORT"), p.port.to_string()));
            out.push((format!("{base}_ADDR"), ip.clone()));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_expand_as_the_kubelet_expands_them() {
        let known = HashMap::from([("A", "1"), ("B", "two")]);
        assert_eq!(expand("$(A)-$(B)", &known), "1-two");
        assert_eq!(expand("$$(A) $(C) $", &known), "$(A) $(C) $");
        assert_eq!(expand("x$(A", &known), "x$(A");
    }

    #[test]
    fn downward_api_fields_and_resources() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "n", "labels": {"app": "web"}},
            "spec": {"nodeName": "node1", "containers": [{"name": "c"}]},
            "status": {"podIP": "10.42.0.5", "podIPs": [{"ip": "10.42.0.5"}]}
        }))
        .unwrap();
        assert_eq!(field(&pod, "metadata.labels['app']").unwrap(), "web");
        assert_eq!(field(&pod, "metadata.annotations['x']").unwrap(), "");
        assert_eq!(field(&pod, "spec.nodeName").unwrap(), "node1");
        assert_eq!(field(&pod, "status.podIPs").unwrap(), "10.42.0.5");
        assert!(field(&pod, "spec.bogus").is_err());
        let c: Container = serde_json::from_value(serde_json::json!({
            "name": "c", "resources": {"limits": {"memory": "64Mi"}, "requests": {"cpu": "250m"}}
        }))
        .unwrap();
        let node = BTreeMap::from([("cpu".to_string(), Quantity("4".into()))]);
        let mi = Quantity("1Mi".into());
        assert_eq!(
            resource(&c, "limits.memory", Some(&mi), &node).unwrap(),
            "64"
        );
        assert_eq!(resource(&c, "requests.cpu", None, &node).unwrap(), "1");
        assert_eq!(resource(&c, "limits.cpu", None, &node).unwrap(), "4");
    }
}
