//! The request pipeline's first stages after authentication: what a request is (its
//! [`RequestInfo`], parsed once from method, path and query, as upstream's
//! `RequestInfoFactory`), who it acts as (impersonation), and whether that user may do it (the
//! [`Authorizer`] chain).
//!
//! Authorizers, asked in order until one decides (upstream's union authorizer):
//! - [`Masters`]: `system:masters` may do anything.
//! - [`NodeAuthorizer`]: `system:node:NAME` in `system:nodes` may do what upstream's Node
//!   authorizer and `system:node` role let a kubelet do: read every Node, write Nodes (the
//!   NodeRestriction admission plugin keeps writes to its own), its own Lease,
//!   pods bound to it (list/watch only
//!   with the `spec.nodeName=NAME` field selector) and their status, the Secrets, ConfigMaps,
//!   PVCs and PVs those pods use, events, services, and the access reviews it needs.
//! - [`Everyone`]: what upstream's default roles give every authenticated user
//!   (`system:discovery`, `system:basic-user`, `system:public-info-viewer`): discovery and
//!   OpenAPI documents, version and health, and reviews of oneself.
//!
//! Anything else is 403 Forbidden with upstream's message. RBAC plugs into the same trait.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde_json::Value;

use crate::error::ApiError;
use crate::pki::User;
use crate::registry::Registry;

/// What a request does, as authorization sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestInfo {
    /// `/api[s]/…` naming a resource (not discovery and not another path).
    pub is_resource: bool,
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`;
    /// the lower-case HTTP method for other paths.
    pub verb: String,
    pub api_group: String,
    pub api_version: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
    pub path: String,
    /// `spec.nodeName` as a list or watch's field selector requires it (`=`/`==`).
    pub node_name_selector: Option<String>,
}

/// Upstream's reading of a boolean query parameter (watch, …): present and not `false`/`0`.
fn truthy(query: &[(String, String)], name: &str) -> bool {
    query
        .iter()
        .find(|(k, _)| k == name)
        .is_some_and(|(_, v)| !(v.eq_ignore_ascii_case("false") || v == "0"))
}

fn selector_value(selector: &str, field: &str) -> Option<String> {
    selector.split(',').find_map(|term| {
        let (k, v) = term.split_once("==").or_else(|| term.split_once('='))?;
        (k.trim() == field && !k.ends_with('!')).then(|| v.trim().to_string())
    })
}

impl RequestInfo {
    pub fn parse(method: &str, path: &str, query: &[(String, String)]) -> RequestInfo {
        let mut info = RequestInfo {
            verb: method.to_ascii_lowercase(),
            path: path.to_string(),
            ..RequestInfo::default()
        };
        let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
        let rest: &[&str] = match segs.as_slice() {
            ["api", v, rest @ ..] if !rest.is_empty() => {
                info.api_version = v.to_string();
                rest
            }
            ["apis", g, v, rest @ ..] if !rest.is_empty() => {
                info.api_group = g.to_string();
                info.api_version = v.to_string();
                rest
            }
            _ => return info,
        };
        info.is_resource = true;
        let (watch_path, rest) = match rest {
            ["watch", tail @ ..] => (true, tail),
            _ => (false, rest),
        };
        let parts: &[&str] = match rest {
            // `namespaces/NAME/RESOURCE…`; `namespaces/NAME[/SUB]` is the namespace itself.
            ["namespaces", ns, tail @ ..]
                if !tail.is_empty() && !matches!(tail, ["status" | "finalize"]) =>
            {
                info.namespace = ns.to_string();
                tail
            }
            ["namespaces", ns] => {
                info.namespace = ns.to_string();
                rest
            }
            _ => rest,
        };
        if let Some(r) = parts.first() {
            info.resource = r.to_string();
        }
        if let Some(n) = parts.get(1) {
            info.name = n.to_string();
        }
        if let Some(s) = parts.get(2) {
            info.subresource = s.to_string();
        }
        let collection = info.name.is_empty();
        info.verb = match method {
            "POST" => "create",
            "GET" | "HEAD" if watch_path || truthy(query, "watch") => "watch",
            "GET" | "HEAD" if collection => "list",
            "GET" | "HEAD" => "get",
            "PUT" => "update",
            "PATCH" => "patch",
            "DELETE" if collection => "deletecollection",
            "DELETE" => "delete",
            other => {
                return RequestInfo {
                    verb: other.to_ascii_lowercase(),
                    ..info
                }
            }
        }
        .to_string();
        let field_selector = query
            .iter()
            .find(|(k, _)| k == "fieldSelector")
            .map(|(_, v)| v.as_str());
        if let Some(sel) = field_selector {
            // A list or watch of one object by name is about that object (upstream).
            if matches!(info.verb.as_str(), "list" | "watch") && info.name.is_empty() {
                if let Some(name) = selector_value(sel, "metadata.name") {
                    info.name = name;
                }
            }
            info.node_name_selector = selector_value(sel, "spec.nodeName");
        }
        info
    }

    /// The 403 upstream answers when no authorizer allowed the request.
    pub fn forbidden(&self, user: &str, reason: &str) -> ApiError {
        let why = if !self.is_resource {
            format!("User {user:?} cannot {} path {:?}", self.verb, self.path)
        } else {
            let resource = if self.subresource.is_empty() {
                self.resource.clone()
            } else {
                format!("{}/{}", self.resource, self.subresource)
            };
            let scope = if self.namespace.is_empty() || self.resource == "namespaces" {
                "at the cluster scope".to_string()
            } else {
                format!("in the namespace {:?}", self.namespace)
            };
            format!(
                "User {user:?} cannot {} resource {resource:?} in API group {:?} {scope}",
                self.verb, self.api_group
            )
        };
        let why = if reason.is_empty() {
            why
        } else {
            format!("{why}: {reason}")
        };
        let qualified = match (self.is_resource, self.api_group.is_empty()) {
            (false, _) => String::new(),
            (true, true) => self.resource.clone(),
            (true, false) => format!("{}.{}", self.resource, self.api_group),
        };
        let message = match (qualified.is_empty(), self.name.is_empty()) {
            (true, _) => format!("forbidden: {why}"),
            (false, true) => format!("{qualified} is forbidden: {why}"),
            (false, false) => format!("{qualified} {:?} is forbidden: {why}", self.name),
        };
        let mut e = ApiError::forbidden(message);
        let mut details = serde_json::json!({"name": self.name, "kind": self.resource});
        if !self.api_group.is_empty() {
            rudder_api::value::set(
                &mut details,
                &["group"],
                Value::String(self.api_group.clone()),
            );
        }
        if self.is_resource {
            e.details = Some(details);
        }
        e
    }
}

/// An authorizer's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Refused outright: no later authorizer is asked.
    Deny(String),
    /// Not this authorizer's call; the reason is kept for the 403 if no one allows.
    NoOpinion(String),
}

pub type DecisionFuture<'a> = Pin<Box<dyn Future<Output = Decision> + Send + 'a>>;

/// Decides whether `user` may do what `req` asks.
pub trait Authorizer: Send + Sync {
    fn authorize<'a>(&'a self, user: &'a User, req: &'a RequestInfo) -> DecisionFuture<'a>;
}

/// Asks each authorizer in turn; the first Allow or Deny decides.
pub struct Union(pub Vec<Box<dyn Authorizer>>);

impl Union {
    /// Allowed, or the 403 with the last reason given.
    pub async fn check(&self, user: &User, req: &RequestInfo) -> Result<(), ApiError> {
        let mut reason = String::new();
        for a in &self.0 {
            match a.authorize(user, req).await {
                Decision::Allow => return Ok(()),
                Decision::Deny(r) => return Err(req.forbidden(&user.name, &r)),
                Decision::NoOpinion(r) => {
                    if !r.is_empty() {
                        reason = r;
                    }
                }
            }
        }
        Err(req.forbidden(&user.name, &reason))
    }

    /// The chain a server starts with: masters, nodes, and every user's defaults.
    pub fn standard(registry: Arc<Registry>) -> Union {
        Union(vec![
            Box::new(Masters),
            Box::new(NodeAuthorizer { registry }),
            Box::new(Everyone),
        ])
    }
}

pub const MASTERS: &str = "system:masters";
pub const NODES: &str = "system:nodes";

/// `system:masters` may do anything.
pub struct Masters;

impl Authorizer for Masters {
    fn authorize<'a>(&'a self, user: &'a User, _req: &'a RequestInfo) -> DecisionFuture<'a> {
        let d = if user.groups.iter().any(|g| g == MASTERS) {
            Decision::Allow
        } else {
            Decision::NoOpinion(String::new())
        };
        Box::pin(std::future::ready(d))
    }
}

/// Upstream's default roles for every authenticated user.
pub struct Everyone;

const DISCOVERY_PATHS: &[&str] = &[
    "/livez",
    "/readyz",
    "/healthz",
    "/version",
    "/version/",
    "/openapi",
    "/api",
    "/apis",
];

impl Authorizer for Everyone {
    fn authorize<'a>(&'a self, _user: &'a User, req: &'a RequestInfo) -> DecisionFuture<'a> {
        let allowed = if req.is_resource {
            req.verb == "create"
                && matches!(
                    (req.api_group.as_str(), req.resource.as_str()),
                    (
                        "authorization.k8s.io",
                        "selfsubjectaccessreviews" | "selfsubjectrulesreviews"
                    ) | ("authentication.k8s.io", "selfsubjectreviews")
                )
        } else {
            req.verb == "get"
                && (DISCOVERY_PATHS.contains(&req.path.as_str())
                    || [
                        "/openapi/",
                        "/api/",
                        "/apis/",
                        "/livez/",
                        "/readyz/",
                        "/healthz/",
                    ]
                    .iter()
                    .any(|p| req.path.starts_with(p)))
        };
        let d = if allowed {
            Decision::Allow
        } else {
            Decision::NoOpinion(String::new())
        };
        Box::pin(std::future::ready(d))
    }
}

/// The node a user is, if it is one: `system:node:NAME` in group `system:nodes`.
pub fn node_name(user: &User) -> Option<&str> {
    if !user.groups.iter().any(|g| g == NODES) {
        return None;
    }
    user.name
        .strip_prefix("system:node:")
        .filter(|n| !n.is_empty())
}

/// What upstream's Node authorizer lets a kubelet do.
pub struct NodeAuthorizer {
    pub registry: Arc<Registry>,
}

/// The static rules upstream gives every node (its `NodeRules`) for what the Node authorizer
/// does not decide object by object: (group, resource[/subresource], verbs).
const NODE_RULES: &[(&str, &str, &[&str])] = &[
    ("authentication.k8s.io", "tokenreviews", &["create"]),
    ("authorization.k8s.io", "subjectaccessreviews", &["create"]),
    (
        "authorization.k8s.io",
        "localsubjectaccessreviews",
        &["create"],
    ),
    ("", "services", &["get", "list", "watch"]),
    ("", "events", &["create", "update", "patch"]),
    ("events.k8s.io", "events", &["create", "update", "patch"]),
    (
        "certificates.k8s.io",
        "certificatesigningrequests",
        &["create", "get", "list", "watch"],
    ),
    ("storage.k8s.io", "volumeattachments", &["get"]),
    ("storage.k8s.io", "csidrivers", &["get", "list", "watch"]),
    ("node.k8s.io", "runtimeclasses", &["get", "list", "watch"]),
    // Beyond the kubelet's (which may only get endpoints): what upstream's
    // `system:node-proxier` role gives kube-proxy, since a Rudder node is its own service proxy
    // and cluster DNS (k3s's agents hold a kube-proxy identity beside the kubelet's for the
    // same reason).
    ("", "endpoints", &["get", "list", "watch"]),
    (
        "discovery.k8s.io",
        "endpointslices",
        &["get", "list", "watch"],
    ),
];

impl Authorizer for NodeAuthorizer {
    fn authorize<'a>(&'a self, user: &'a User, req: &'a RequestInfo) -> DecisionFuture<'a> {
        Box::pin(async move {
            let Some(node) = node_name(user) else {
                return Decision::NoOpinion(String::new());
            };
            if !req.is_resource {
                return Decision::NoOpinion(String::new());
            }
            self.decide(node, req).await
        })
    }
}

fn allow_if(ok: bool, reason: &str) -> Decision {
    if ok {
        Decision::Allow
    } else {
        Decision::NoOpinion(reason.to_string())
    }
}

impl NodeAuthorizer {
    async fn decide(&self, node: &str, req: &RequestInfo) -> Decision {
        let verb = req.verb.as_str();
        let sub = req.subresource.as_str();
        match (req.api_group.as_str(), req.resource.as_str()) {
            ("", "secrets" | "configmaps") => {
                if !matches!(verb, "get" | "list" | "watch") {
                    return Decision::NoOpinion("can only read resources of this type".into());
                }
                if !sub.is_empty() {
                    return Decision::NoOpinion("cannot read subresource".into());
                }
                if req.namespace.is_empty() {
                    return Decision::NoOpinion(
                        "can only read namespaced object of this type".into(),
                    );
                }
                self.related(node, req).await
            }
            ("", "persistentvolumeclaims") if sub == "status" => {
                if !matches!(verb, "update" | "patch") {
                    return Decision::NoOpinion("can only get/update/patch this type".into());
                }
                self.related(node, req).await
            }
            ("", "persistentvolumeclaims" | "persistentvolumes") => {
                if verb != "get" {
                    return Decision::NoOpinion(
                        "can only get individual resources of this type".into(),
                    );
                }
                if !sub.is_empty() {
                    return Decision::NoOpinion("cannot get subresource".into());
                }
                self.related(node, req).await
            }
            ("", "serviceaccounts") => {
                if verb != "create" || req.name.is_empty() {
                    return Decision::NoOpinion(
                        "can only create tokens for individual service accounts".into(),
                    );
                }
                if sub != "token" {
                    return Decision::NoOpinion(
                        "can only create token subresource of serviceaccount".into(),
                    );
                }
                self.related(node, req).await
            }
            ("coordination.k8s.io", "leases") => {
                if !matches!(verb, "get" | "create" | "update" | "patch" | "delete") {
                    return Decision::NoOpinion(
                        "can only get, create, update, patch, or delete a node lease".into(),
                    );
                }
                if req.namespace != "kube-node-lease" {
                    return Decision::NoOpinion(
                        "can only access leases in the \"kube-node-lease\" system namespace".into(),
                    );
                }
                allow_if(
                    verb == "create" || req.name == node,
                    "can only access node lease with the same name as the requesting node",
                )
            }
            ("storage.k8s.io", "csinodes") => {
                if !matches!(verb, "get" | "create" | "update" | "patch" | "delete") {
                    return Decision::NoOpinion(
                        "can only get, create, update, patch, or delete a CSINode".into(),
                    );
                }
                allow_if(
                    sub.is_empty() && (verb == "create" || req.name == node),
                    "can only access CSINode with the same name as the requesting node",
                )
            }
            // As upstream's `system:node` role: every Node may be read (the pod network needs
            // the other nodes' podCIDRs and addresses, as flannel reads them in k3s).
            ("", "nodes") => match (sub, verb) {
                ("", "create" | "update" | "patch" | "get" | "list" | "watch")
                | ("status", "update" | "patch") => Decision::Allow,
                _ => Decision::NoOpinion(String::new()),
            },
            ("", "pods") => match (sub, verb) {
                ("", "get") => self.related(node, req).await,
                ("", "list" | "watch") => {
                    if req.node_name_selector.as_deref() == Some(node) {
                        Decision::Allow
                    } else if !req.name.is_empty() {
                        self.related(node, req).await
                    } else {
                        Decision::NoOpinion(
                            "can only list/watch pods with spec.nodeName field selector".into(),
                        )
                    }
                }
                ("", "create" | "delete")
                | ("status", "update" | "patch")
                | ("eviction", "create") => Decision::Allow,
                _ => Decision::NoOpinion(String::new()),
            },
            (group, resource) => {
                let allowed = NODE_RULES.iter().any(|(g, r, verbs)| {
                    *g == group && *r == resource && sub.is_empty() && verbs.contains(&verb)
                });
                allow_if(allowed, "")
            }
        }
    }

    /// Whether the requested object is used by a pod bound to `node` (upstream's graph:
    /// node ← pod ← secret/configmap/pvc/serviceaccount, node ← pod ← pvc ← pv).
    async fn related(&self, node: &str, req: &RequestInfo) -> Decision {
        let no = || {
            Decision::NoOpinion(format!(
                "no relationship found between node '{node}' and this object"
            ))
        };
        if req.name.is_empty() {
            return Decision::NoOpinion("No Object name found".into());
        }
        let pods = match self.registry.pods_on_node(node).await {
            Ok(p) => p,
            Err(_) => return no(),
        };
        let kind = req.resource.as_str();
        let found = if kind == "persistentvolumes" {
            // node ← pod ← pvc ← pv: the claims this node's pods use, bound to this volume.
            let mut found = false;
            for pod in &pods {
                let ns = pod["metadata"]["namespace"].as_str().unwrap_or("");
                for claim in references(pod, "persistentvolumeclaims") {
                    if self
                        .registry
                        .claim_volume(ns, &claim)
                        .await
                        .is_some_and(|v| v == req.name)
                    {
                        found = true;
                    }
                }
            }
            found
        } else {
            pods.iter().any(|pod| {
                pod["metadata"]["namespace"].as_str() == Some(req.namespace.as_str())
                    && (if kind == "pods" {
                        pod["metadata"]["name"].as_str() == Some(req.name.as_str())
                    } else {
                        references(pod, kind).contains(&req.name)
                    })
            })
        };
        if found {
            Decision::Allow
        } else {
            no()
        }
    }
}

/// The names of the objects of `resource` a pod refers to (volumes, env, image pull secrets,
/// its service account).
pub fn references(pod: &Value, resource: &str) -> Vec<String> {
    let spec = &pod["spec"];
    let mut out = Vec::new();
    let mut push = |v: &Value| {
        if let Some(s) = v.as_str().filter(|s| !s.is_empty()) {
            out.push(s.to_string());
        }
    };
    let volumes = spec["volumes"].as_array().into_iter().flatten();
    let containers = ["containers", "initContainers", "ephemeralContainers"]
        .iter()
        .flat_map(|k| spec[*k].as_array().into_iter().flatten());
    match resource {
        "secrets" => {
            for s in spec["imagePullSecrets"].as_array().into_iter().flatten() {
                push(&s["name"]);
            }
            for v in volumes {
                push(&v["secret"]["secretName"]);
                for src in v["projected"]["sources"].as_array().into_iter().flatten() {
                    push(&src["secret"]["name"]);
                }
                for key in [
                    "azureFile",
                    "cephfs",
                    "cinder",
                    "flexVolume",
                    "iscsi",
                    "rbd",
                    "scaleIO",
                    "storageos",
                    "csi",
                ] {
                    push(&v[key]["secretRef"]["name"]);
                    push(&v[key]["nodePublishSecretRef"]["name"]);
                }
                push(&v["azureFile"]["secretName"]);
            }
            for c in containers {
                for e in c["env"].as_array().into_iter().flatten() {
                    push(&e["valueFrom"]["secretKeyRef"]["name"]);
                }
                for e in c["envFrom"].as_array().into_iter().flatten() {
                    push(&e["secretRef"]["name"]);
                }
            }
        }
        "configmaps" => {
            for v in volumes {
                push(&v["configMap"]["name"]);
                for src in v["projected"]["sources"].as_array().into_iter().flatten() {
                    push(&src["configMap"]["name"]);
                }
            }
            for c in containers {
                for e in c["env"].as_array().into_iter().flatten() {
                    push(&e["valueFrom"]["configMapKeyRef"]["name"]);
                }
                for e in c["envFrom"].as_array().into_iter().flatten() {
                    push(&e["configMapRef"]["name"]);
                }
            }
        }
        "persistentvolumeclaims" => {
            for v in volumes {
                push(&v["persistentVolumeClaim"]["claimName"]);
            }
        }
        "serviceaccounts" => {
            push(&spec["serviceAccountName"]);
        }
        _ => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn request_info_as_upstream_parses_it() {
        let i = RequestInfo::parse(
            "GET",
            "/api/v1/namespaces/default/pods",
            &q(&[("watch", "True")]),
        );
        assert_eq!(
            (i.verb.as_str(), i.resource.as_str(), i.namespace.as_str()),
            ("watch", "pods", "default")
        );
        let i = RequestInfo::parse(
            "GET",
            "/api/v1/namespaces/default/pods",
            &q(&[("watch", "false")]),
        );
        assert_eq!(i.verb, "list");
        let i = RequestInfo::parse("PUT", "/api/v1/namespaces/kube-system/finalize", &[]);
        assert_eq!(
            (i.resource.as_str(), i.name.as_str(), i.subresource.as_str()),
            ("namespaces", "kube-system", "finalize")
        );
        let i = RequestInfo::parse("DELETE", "/api/v1/namespaces/x", &[]);
        assert_eq!(
            (i.verb.as_str(), i.resource.as_str(), i.name.as_str()),
            ("delete", "namespaces", "x")
        );
        let i = RequestInfo::parse(
            "POST",
            "/apis/apps/v1/namespaces/d/deployments/web/scale",
            &[],
        );
        assert_eq!(
            (i.api_group.as_str(), i.subresource.as_str()),
            ("apps", "scale")
        );
        let i = RequestInfo::parse(
            "GET",
            "/api/v1/pods",
            &q(&[("fieldSelector", "spec.nodeName=n1,status.phase!=Failed")]),
        );
        assert_eq!(i.node_name_selector.as_deref(), Some("n1"));
        let i = RequestInfo::parse("GET", "/apis/apps/v1", &[]);
        assert!(!i.is_resource);
        assert_eq!(i.verb, "get");
    }

    #[test]
    fn forbidden_messages_as_upstream() {
        let i = RequestInfo::parse("GET", "/api/v1/namespaces/default/configmaps", &[]);
        assert_eq!(
            i.forbidden("system:node:n1", "").message,
            "configmaps is forbidden: User \"system:node:n1\" cannot list resource \"configmaps\" in API group \"\" in the namespace \"default\""
        );
        let i = RequestInfo::parse(
            "POST",
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
            &[],
        );
        assert_eq!(
            i.forbidden("u", "").message,
            "clusterrolebindings.rbac.authorization.k8s.io is forbidden: User \"u\" cannot create resource \"clusterrolebindings\" in API group \"rbac.authorization.k8s.io\" at the cluster scope"
        );
        let i = RequestInfo::parse("GET", "/api/v1/nodes/n2", &[]);
        assert_eq!(
            i.forbidden("system:node:n1", "node 'n1' cannot read 'n2', only its own Node object").message,
            "nodes \"n2\" is forbidden: User \"system:node:n1\" cannot get resource \"nodes\" in API group \"\" at the cluster scope: node 'n1' cannot read 'n2', only its own Node object"
        );
        let i = RequestInfo::parse("GET", "/metrics", &[]);
        assert_eq!(
            i.forbidden("u", "").message,
            "forbidden: User \"u\" cannot get path \"/metrics\""
        );
    }
}
