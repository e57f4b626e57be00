//! Agents joining, as k3s's supervisor lets them: `POST /v1-rudder/node-certificates` with the
//! node token as a bearer token (the bootstrap identity) and a JSON body naming the node, its
//! node password, its addresses, and two PKCS#10 requests. The answer is the node's client
//! certificate (`system:node:NAME` in `system:nodes`) and its serving certificate, signed by
//! the cluster CA for the requests' keys (which never leave the node).
//!
//! The node password binds a name to one machine (k3s's `NAME.node-password.k3s` secrets): the
//! first machine to join as NAME records a hash of its password in the Secret
//! `kube-system/NAME.node-password.rudder`; later requests for NAME must present the same
//! password while the Node NAME exists. So holding the token lets a machine join as a new node,
//! never act as a node another machine holds. Once its Node is deleted, a name is free again.
//!
//! The same password is what simulated nodes (`rudder agent --fake-nodes`) authenticate with,
//! as HTTP basic authentication `NAME:PASSWORD`: thousands of them share a few HTTP/2
//! connections, where client certificates would need a TLS connection each.
//!
//! What one request may cost is bounded: the body is at most [`MAX_BODY`] bytes, a node has at
//! most [`MAX_ADDRESSES`] addresses, and verified passwords are remembered (per registered
//! node, for [`REMEMBER`]) so that authenticating a node costs a hash, not a store read.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::response::Response;
use serde_json::json;

use crate::error::ApiError;
use crate::pki::{Pki, User};
use crate::registry::{Part, Registry, Res, Write};
use crate::services::Cidr;

pub use rudder_api::join::{JoinRequest, JoinResponse, PATH};
/// The group of the bootstrap identity (the node token as a bearer token).
pub const BOOTSTRAPPERS: &str = "system:bootstrappers";
/// The largest request body.
pub const MAX_BODY: usize = 64 * 1024;
/// The most addresses a node's serving certificate names.
pub const MAX_ADDRESSES: usize = 16;
/// How long a verified node password is taken on trust before the store is read again.
const REMEMBER: Duration = Duration::from_secs(30);
const NAMESPACE: &str = "kube-system";
const SECRET_SUFFIX: &str = ".node-password.rudder";
/// The manager the server writes node passwords as.
const MANAGER: &str = "rudder-supervisor";

/// Node passwords and node certificates.
pub struct Join {
    pki: Arc<Pki>,
    /// How long node certificates are valid (`--cluster-signing-duration`).
    lifetime: Duration,
    /// No node may have a serving certificate for a cluster IP.
    service_cidr: Cidr,
    /// Node → (hash of its password, when it was read).
    verified: Mutex<HashMap<String, (String, Instant)>>,
}

fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn secret_name(node: &str) -> String {
    format!("{node}{SECRET_SUFFIX}")
}

fn served(reg: &Registry, plural: &str) -> Result<Res, ApiError> {
    reg.resolve("", "v1", plural)
        .map(|s| s.res)
        .ok_or_else(|| ApiError::internal(format!("{plural} are not in the catalogue")))
}

/// The password hash a node-password Secret holds.
fn stored_hash(secret: &serde_json::Value) -> Option<String> {
    use base64::Engine as _;
    let b64 = secret.pointer("/data/hash")?.as_str()?;
    let raw = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    String::from_utf8(raw).ok()
}

/// Whether `name` may be a joining node's name, and why not.
fn check_name(name: &str) -> Result<(), ApiError> {
    let errs = rudder_api::validation::dns1123_subdomain(name);
    if !errs.is_empty() {
        return Err(ApiError::bad_request(format!(
            "invalid node name {name:?}: {}",
            errs.join("; ")
        )));
    }
    if name.len() + SECRET_SUFFIX.len() > 253 {
        return Err(ApiError::bad_request(format!(
            "invalid node name {name:?}: at most {} characters",
            253 - SECRET_SUFFIX.len()
        )));
    }
    // A node's serving certificate names its node: never one the API server answers to.
    if crate::pki::DEFAULT_DNS_SANS.contains(&name) {
        return Err(ApiError::bad_request(format!(
            "invalid node name {name:?}: the API server's own name"
        )));
    }
    Ok(())
}

impl Join {
    pub fn new(pki: Arc<Pki>, lifetime: Duration, service_cidr: Cidr) -> Join {
        Join {
            pki,
            lifetime,
            service_cidr,
            verified: Mutex::new(HashMap::new()),
        }
    }

    fn remembered(&self, node: &str) -> Option<String> {
        let verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        verified
            .get(node)
            .filter(|(_, at)| at.elapsed() < REMEMBER)
            .map(|(h, _)| h.clone())
    }

    fn remember(&self, node: &str, hash: String) {
        let mut verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        verified.retain(|_, (_, at)| at.elapsed() < REMEMBER);
        verified.insert(node.to_string(), (hash, Instant::now()));
    }

    /// Whether `password` is the one node `node` registered (HTTP basic authentication of
    /// simulated nodes).
    pub async fn password_matches(&self, reg: &Registry, node: &str, password: &str) -> bool {
        let hash = rudder_api::tls::sha256_hex(password.as_bytes());
        if let Some(known) = self.remembered(node) {
            if same(&known, &hash) {
                return true;
            }
        }
        let Ok(secrets) = served(reg, "secrets") else {
            return false;
        };
        match reg.get(&secrets, Some(NAMESPACE), &secret_name(node)).await {
            Ok(secret) => match stored_hash(&secret) {
                Some(stored) if same(&stored, &hash) => {
                    self.remember(node, stored);
                    true
                }
                _ => false,
            },
            Err(_) => false,
        }
    }

    /// Binds `node` to `password`: records it if the name is free (no password yet, or its
    /// Node is gone) or `take_over` says so, else checks it.
    pub async fn register(
        &self,
        reg: &Registry,
        node: &str,
        password: &str,
        take_over: bool,
    ) -> Result<(), ApiError> {
        check_name(node)?;
        if !(16..=256).contains(&password.len()) {
            return Err(ApiError::bad_request(
                "the node password must be 16 to 256 characters",
            ));
        }
        let hash = rudder_api::tls::sha256_hex(password.as_bytes());
        let secrets = served(reg, "secrets")?;
        let name = secret_name(node);
        let w = Write::server_as(MANAGER);
        let secret = |rv: Option<&str>| {
            use base64::Engine as _;
            let mut s = json!({
                "metadata": {"name": name, "namespace": NAMESPACE,
                             "labels": {"rudder.io/node-password": "true"}},
                "type": "Opaque",
                "data": {"hash": base64::engine::general_purpose::STANDARD.encode(&hash)},
            });
            if let Some(rv) = rv {
                rudder_api::value::set(&mut s, &["metadata", "resourceVersion"], json!(rv));
            }
            s
        };
        // Twice at most: a race with another registration of the same name is decided by the
        // store, and the loser checks against the winner's password.
        for _ in 0..2 {
            let existing = match reg.get(&secrets, Some(NAMESPACE), &name).await {
                Ok(s) => s,
                Err(e) if e.reason == "NotFound" => {
                    match reg
                        .create(&secrets, Some(NAMESPACE), secret(None), &w)
                        .await
                    {
                        Ok(_) => {
                            self.remember(node, hash);
                            return Ok(());
                        }
                        Err(e) if e.reason == "AlreadyExists" => continue,
                        Err(e) => return Err(e),
                    }
                }
                Err(e) => return Err(e),
            };
            if stored_hash(&existing).is_some_and(|h| same(&h, &hash)) {
                self.remember(node, hash);
                return Ok(());
            }
            let nodes = served(reg, "nodes")?;
            match reg.get(&nodes, None, node).await {
                Ok(_) if take_over => {}
                Ok(_) => {
                    return Err(ApiError::forbidden(format!(
                        "node {node:?} is already registered by another machine (its node \
                         password differs): join with another --node-name, or delete the node \
                         (kubectl delete node {node}) if that machine is gone"
                    )))
                }
                Err(e) if e.reason == "NotFound" => {}
                Err(e) => return Err(e),
            }
            // The Node is gone (the name is free), or the server's own node takes its name
            // back (a server restored from a snapshot on a new disk): this machine takes it.
            let rv = existing
                .pointer("/metadata/resourceVersion")
                .and_then(|v| v.as_str());
            match reg
                .update(&secrets, Some(NAMESPACE), &name, secret(rv), Part::Main, &w)
                .await
            {
                Ok(_) => {
                    self.remember(node, hash);
                    return Ok(());
                }
                Err(e) if e.reason == "Conflict" => continue,
                Err(e) => return Err(e),
            }
        }
        Err(ApiError::new(
            409,
            "Conflict",
            format!("node {node:?} is being registered by another request; try again"),
        ))
    }

    /// Registers the password (taking the name over from another machine if `take_over`),
    /// then signs the certificates asked for.
    pub async fn join(
        &self,
        reg: &Registry,
        req: JoinRequest,
        take_over: bool,
    ) -> Result<JoinResponse, ApiError> {
        self.register(reg, &req.node_name, &req.node_password, take_over)
            .await?;
        let (client, serving) = match (req.client_request, req.serving_request) {
            (None, None) => return Ok(JoinResponse::default()),
            (Some(c), Some(s)) => (c, s),
            _ => {
                return Err(ApiError::bad_request(
                    "clientRequest and servingRequest go together",
                ))
            }
        };
        if req.addresses.len() > MAX_ADDRESSES {
            return Err(ApiError::bad_request(format!(
                "at most {MAX_ADDRESSES} addresses"
            )));
        }
        for ip in &req.addresses {
            let cluster_ip = match ip {
                IpAddr::V4(v4) => self.service_cidr.contains(*v4),
                IpAddr::V6(_) => false,
            };
            if ip.is_unspecified() || ip.is_multicast() || cluster_ip {
                return Err(ApiError::bad_request(format!(
                    "{ip} cannot be a node's address"
                )));
            }
        }
        let certs = self
            .pki
            .sign_node(
                &req.node_name,
                &req.addresses,
                &client,
                &serving,
                self.lifetime,
            )
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        tracing::info!(node = %req.node_name, "node certificates issued");
        Ok(JoinResponse {
            client_certificate: Some(certs.client),
            serving_certificate: Some(certs.serving),
        })
    }

    /// `POST /v1-rudder/node-certificates`, from the bootstrap identity only.
    pub async fn handle(
        &self,
        reg: &Registry,
        user: &User,
        body_timeout: Duration,
        req: Request<Body>,
    ) -> Result<Response, ApiError> {
        if req.method() != Method::POST {
            return Err(ApiError::method_not_allowed(req.method().as_str()));
        }
        if !user.groups.iter().any(|g| g == BOOTSTRAPPERS) {
            return Err(ApiError::forbidden(format!(
                "user {:?} cannot join nodes: only the node token may",
                user.name
            )));
        }
        let (_, body) = crate::handlers::read_bounded(req, MAX_BODY, body_timeout).await?;
        let req: JoinRequest = serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("invalid join request: {e}")))?;
        let answer = self.join(reg, req, false).await?;
        Ok(crate::handlers::json_response(
            StatusCode::OK,
            &serde_json::to_value(answer).map_err(|e| ApiError::internal(e.to_string()))?,
        ))
    }
}

/// [`Join::join`] on a server's registry for the server's own node, which is trusted with its
/// name: it takes it over from whichever password holds it.
#[derive(Clone)]
pub struct Joiner {
    pub(crate) join: Arc<Join>,
    pub(crate) registry: Arc<Registry>,
}

impl Joiner {
    pub async fn join(&self, req: JoinRequest) -> Result<JoinResponse, ApiError> {
        self.join.join(&self.registry, req, true).await
    }
}
