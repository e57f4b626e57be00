//! Reaching node agents for what only a node can answer (`pods/log`, and the upgrades of
//! `pods/exec|attach|portforward`, joined to the agent's): the pod's node is looked up, its
//! address and port taken from the Node's status (`InternalIP`, then `ExternalIP`, then `Hostname`; `daemonEndpoints.kubeletEndpoint`),
//! and the request made over HTTPS with the API server's own client certificate
//! (`kube-apiserver-kubelet-client`, from the cluster CA), which is all the agent accepts. The
//! agent's serving certificate is not checked, as upstream does not check it unless
//! `--kubelet-certificate-authority` is given.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rudder_api::validation::FieldError;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::Value;
use tokio::sync::Semaphore;

use crate::error::ApiError;
use crate::handlers::{param, Query};
use crate::pki::Pki;

/// The user the API server is to agents.
pub const CLIENT_USER: &str = "kube-apiserver-kubelet-client";
/// How long connecting to an agent may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// What an agent's stats may hold (a few hundred bytes a pod).
const MAX_STATS_BODY: usize = 8 << 20;
/// How long an agent's stats may take (it measures for a second when asked for the first time
/// in a minute).
const STATS_TIMEOUT: Duration = Duration::from_secs(10);
/// What an agent's error answer may hold.
const MAX_ERROR_BODY: usize = 64 * 1024;

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// The API server's client for agents.
pub struct Kubelets {
    client: HttpsClient,
    /// Places for exec, attach and port-forward sessions, at most [`MAX_SESSIONS`].
    sessions: Arc<Semaphore>,
}

/// Streaming sessions (exec, attach, port-forward) the API server carries at once.
pub const MAX_SESSIONS: usize = 1024;

/// An exec, attach or port-forward to make of a pod's agent.
pub struct Stream<'a> {
    pub pod: &'a Value,
    pub container: &'a str,
    pub node: &'a Value,
    /// `exec`, `attach` or `portforward`.
    pub sub: &'a str,
    pub query: &'a Query,
    pub headers: &'a HeaderMap,
    pub method: Method,
}

impl Kubelets {
    /// A client with a certificate newly issued from `pki` (held in memory only), which
    /// trusts agents whose serving certificate the cluster CA signed for the address it is
    /// reached at (upstream's `--kubelet-certificate-authority`).
    pub fn new(pki: &Pki) -> anyhow::Result<Kubelets> {
        use anyhow::Context as _;
        use rustls::pki_types::pem::PemObject as _;
        let (cert_pem, key_pem) = pki.issue_client_cert(CLIENT_USER, &[])?;
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(cert_pem.as_bytes())
                .collect::<Result<_, _>>()
                .context("the kubelet client certificate")?;
        let key =
            PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).context("the kubelet client key")?;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from(pki.ca_der().to_vec()))?;
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        // Streams (exec keystrokes, port-forward) go on as they come, not held for an ACK.
        http.set_nodelay(true);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_only()
            .enable_http1()
            .wrap_connector(http);
        Ok(Kubelets {
            client: Client::builder(TokioExecutor::new()).build(https),
            sessions: Arc::new(Semaphore::new(MAX_SESSIONS)),
        })
    }

    /// `GET path?query` on the agent of `node`, the answer streamed back: a 200 as it comes,
    /// an error as the `Status` the agent gave (or its text as a BadRequest).
    async fn get(&self, node: &Value, path: &str, query: &str) -> Result<Response, ApiError> {
        let resp = self
            .send(node, Method::GET, path, query, HeaderMap::new())
            .await?;
        let (parts, body) = resp.into_parts();
        let content_type = parts
            .headers
            .get(header::CONTENT_TYPE)
            .cloned()
            .unwrap_or(header::HeaderValue::from_static("text/plain"));
        Ok(Response::builder()
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::new(body))
            .unwrap_or_default())
    }

    /// The agent's resource use summary (`GET /stats/resource`, see `rudder_agent::stats`):
    /// at most [`MAX_STATS_BODY`] bytes, within [`STATS_TIMEOUT`].
    pub async fn stats(&self, node: &Value) -> Result<Value, ApiError> {
        let ask = async {
            let resp = self
                .send(node, Method::GET, "/stats/resource", "", HeaderMap::new())
                .await?;
            let body = Limited::new(resp.into_body(), MAX_STATS_BODY)
                .collect()
                .await
                .map_err(|e| ApiError::internal(format!("reading a node's stats: {e}")))?
                .to_bytes();
            serde_json::from_slice(&body)
                .map_err(|e| ApiError::internal(format!("a node's stats: {e}")))
        };
        tokio::time::timeout(STATS_TIMEOUT, ask)
            .await
            .map_err(|_| ApiError::internal("the node agent's stats took too long"))?
    }

    /// `method path?query` with `headers` on the agent of `node`: its answer when it is a
    /// success (2xx or 101), else the error it says.
    async fn send(
        &self,
        node: &Value,
        method: Method,
        path: &str,
        query: &str,
        headers: HeaderMap,
    ) -> Result<axum::http::Response<Incoming>, ApiError> {
        let name = node["metadata"]["name"].as_str().unwrap_or_default();
        let (host, port) = endpoint(node)?;
        let uri = format!("https://{host}:{port}{path}?{query}");
        let mut req = axum::http::Request::builder()
            .method(method)
            .uri(&uri)
            .body(Empty::new())
            .map_err(|e| ApiError::internal(e.to_string()))?;
        *req.headers_mut() = headers;
        let resp = self.client.request(req).await.map_err(|e| {
            let mut why = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                why = format!("{why}: {s}");
                source = s.source();
            }
            ApiError::internal(format!(
                "error trying to reach the node agent of {name} at {host}:{port}: {why}"
            ))
        })?;
        if resp.status().is_success() || resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            return Ok(resp);
        }
        let (parts, body) = resp.into_parts();
        let text = match Limited::new(body, MAX_ERROR_BODY).collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => Bytes::new(),
        };
        let status: Value = serde_json::from_slice(&text).unwrap_or(Value::Null);
        match (status["kind"].as_str(), status["message"].as_str()) {
            (Some("Status"), Some(message)) => Err(ApiError::new(
                parts.status.as_u16(),
                reason_of(parts.status),
                message,
            )),
            _ => Err(ApiError::bad_request(
                String::from_utf8_lossy(&text).trim().to_string(),
            )),
        }
    }

    /// `pods/exec|attach|portforward`: the client's upgrade is made of the agent with the
    /// same protocol headers, then the two connections are joined. The agent answers in
    /// whichever protocol the client asked for (`rudder_agent::streaming`).
    pub async fn stream(&self, s: Stream<'_>, upgrade: OnUpgrade) -> Result<Response, ApiError> {
        let permit = self
            .sessions
            .clone()
            .try_acquire_owned()
            .map_err(|_| ApiError::too_many_requests())?;
        let name = s.pod["metadata"]["name"].as_str().unwrap_or_default();
        let ns = s.pod["metadata"]["namespace"].as_str().unwrap_or_default();
        let query = agent_query(s.sub, s.query);
        let path = match s.sub {
            "portforward" => format!("/portForward/{ns}/{name}"),
            sub => format!("/{sub}/{ns}/{name}/{}", s.container),
        };
        let forwarded: HeaderMap = s
            .headers
            .iter()
            .filter(|(n, _)| rudder_api::upgrade::is_upgrade_header(n.as_str()))
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect();
        let resp = self
            .send(s.node, s.method, &path, &query, forwarded)
            .await?;
        if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            return Err(ApiError::internal(format!(
                "the node agent answered {} instead of switching protocols",
                resp.status()
            )));
        }
        let mut answer = Response::builder().status(StatusCode::SWITCHING_PROTOCOLS);
        for (n, v) in resp.headers() {
            if n != header::CONTENT_LENGTH {
                answer = answer.header(n, v);
            }
        }
        tokio::spawn(async move {
            let _permit = permit;
            let (agent, client) = match tokio::join!(hyper::upgrade::on(resp), upgrade) {
                (Ok(a), Ok(c)) => (a, c),
                _ => return,
            };
            let _ =
                tokio::io::copy_bidirectional(&mut TokioIo::new(client), &mut TokioIo::new(agent))
                    .await;
        });
        Ok(answer.body(Body::empty()).unwrap_or_default())
    }

    /// `pods/log` of `container` (see [`container_of`]): checks the options as upstream does,
    /// then reads the log from the pod's node.
    pub async fn logs(
        &self,
        pod: &Value,
        container: &str,
        node: &Value,
        q: &Query,
    ) -> Result<Response, ApiError> {
        let name = pod["metadata"]["name"].as_str().unwrap_or_default();
        let ns = pod["metadata"]["namespace"].as_str().unwrap_or_default();
        check_log_options(name, q)?;
        check_log_status(pod, container, crate::handlers::flag(q, "previous"))?;
        let query: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(q.iter().filter(|(k, _)| {
                matches!(
                    k.as_str(),
                    "follow"
                        | "previous"
                        | "timestamps"
                        | "tailLines"
                        | "limitBytes"
                        | "sinceSeconds"
                        | "sinceTime"
                )
            }))
            .finish();
        self.get(
            node,
            &format!("/containerLogs/{ns}/{name}/{container}"),
            &query,
        )
        .await
    }
}

/// An exec, attach or port-forward's parameters as the agent (and upstream's kubelet) reads
/// them: `input`, `output` and `error` for stdin, stdout and stderr; `port` for each port.
fn agent_query(sub: &str, q: &Query) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (k, v) in q.iter() {
        let renamed = match (sub, k.as_str()) {
            ("exec", "command") => "command",
            ("exec" | "attach", "stdin") => "input",
            ("exec" | "attach", "stdout") => "output",
            ("exec" | "attach", "stderr") => "error",
            ("exec" | "attach", "tty") => "tty",
            ("portforward", "ports") => "port",
            _ => continue,
        };
        match renamed {
            "command" | "port" => query.append_pair(renamed, v),
            _ if crate::handlers::flag(q, k) => query.append_pair(renamed, "1"),
            _ => continue,
        };
    }
    query.finish()
}

fn reason_of(code: StatusCode) -> &'static str {
    match code.as_u16() {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        _ => "InternalError",
    }
}

/// The agent's address and port from the Node.
fn endpoint(node: &Value) -> Result<(String, u16), ApiError> {
    let name = node["metadata"]["name"].as_str().unwrap_or_default();
    let port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p != 0)
        .ok_or_else(|| {
            ApiError::unavailable(format!(
                "node {name} has no agent endpoint (a simulated node, or its agent has not reported one)"
            ))
        })?;
    let addresses = node["status"]["addresses"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let host = ["InternalIP", "ExternalIP", "Hostname"]
        .iter()
        .find_map(|t| {
            addresses
                .iter()
                .find(|a| a["type"] == *t)
                .and_then(|a| a["address"].as_str())
        })
        .ok_or_else(|| ApiError::unavailable(format!("node {name} has no address")))?;
    let host = match host.parse::<std::net::Ipv6Addr>() {
        Ok(_) => format!("[{host}]"),
        Err(_) => host.to_string(),
    };
    Ok((host, port))
}

/// The container a request names, or the pod's only one; as upstream, a pod of several needs
/// the name.
pub fn container_of(pod: &Value, given: Option<&str>) -> Result<String, ApiError> {
    let name = pod["metadata"]["name"].as_str().unwrap_or_default();
    let names = |kind: &str| -> Vec<String> {
        pod["spec"][kind]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["name"].as_str().map(str::to_string))
            .collect()
    };
    let (containers, init, ephemeral) = (
        names("containers"),
        names("initContainers"),
        names("ephemeralContainers"),
    );
    if let Some(c) = given.filter(|c| !c.is_empty()) {
        if containers
            .iter()
            .chain(&init)
            .chain(&ephemeral)
            .any(|n| n == c)
        {
            return Ok(c.to_string());
        }
        return Err(ApiError::bad_request(format!(
            "container {c} is not valid for pod {name}"
        )));
    }
    if containers.len() == 1 {
        return Ok(containers[0].clone());
    }
    let mut message = format!(
        "a container name must be specified for pod {name}, choose one of: [{}]",
        containers.join(" ")
    );
    if !init.is_empty() {
        message.push_str(&format!(
            " or one of the init containers: [{}]",
            init.join(" ")
        ));
    }
    if !ephemeral.is_empty() {
        message.push_str(&format!(
            " or one of the ephemeral containers: [{}]",
            ephemeral.join(" ")
        ));
    }
    Err(ApiError::bad_request(message))
}

/// Whether the container has the log asked for, from the pod's status, as the kubelet decides
/// it: a container that never ran has none, and `previous` needs a terminated instance.
fn check_log_status(pod: &Value, container: &str, previous: bool) -> Result<(), ApiError> {
    let name = pod["metadata"]["name"].as_str().unwrap_or_default();
    let status = [
        "containerStatuses",
        "initContainerStatuses",
        "ephemeralContainerStatuses",
    ]
    .iter()
    .flat_map(|k| pod["status"][k].as_array().into_iter().flatten())
    .find(|s| s["name"] == container);
    let Some(status) = status else {
        return Err(ApiError::bad_request(format!(
            "container {container:?} in pod {name:?} is waiting to start: ContainerCreating"
        )));
    };
    let last_terminated = status["lastState"]["terminated"].is_object();
    if previous {
        if !last_terminated {
            return Err(ApiError::bad_request(format!(
                "previous terminated container {container:?} in pod {name:?} not found"
            )));
        }
        return Ok(());
    }
    if let Some(reason) = status["state"]["waiting"]["reason"].as_str() {
        if !last_terminated {
            return Err(ApiError::bad_request(format!(
                "container {container:?} in pod {name:?} is waiting to start: {reason}"
            )));
        }
    }
    Ok(())
}

/// PodLogOptions as upstream validates them: numbers that do not parse are a 400, numbers out
/// of range a 422.
fn check_log_options(name: &str, q: &Query) -> Result<(), ApiError> {
    let mut causes = Vec::new();
    let mut number = |field: &str, min: i64, detail: &str| -> Result<bool, ApiError> {
        let Some(v) = param(q, field) else {
            return Ok(false);
        };
        let n: i64 = v.parse().map_err(|_| {
            ApiError::bad_request(format!(
                "couldn't parse {field} {v:?}: strconv.ParseInt: parsing {v:?}: invalid syntax"
            ))
        })?;
        if n < min {
            causes.push(FieldError {
                field: field.into(),
                reason: "FieldValueInvalid",
                message: format!("Invalid value: {n}: {detail}"),
            });
        }
        Ok(true)
    };
    number("tailLines", 0, "must be greater than or equal to 0")?;
    number("limitBytes", 1, "must be greater than 0")?;
    let since_seconds = number("sinceSeconds", 1, "must be greater than 0")?;
    if let Some(t) = param(q, "sinceTime") {
        if t.parse::<k8s_openapi::jiff::Timestamp>().is_err() {
            return Err(ApiError::bad_request(format!(
                "parsing time {t:?} as \"2006-01-02T15:04:05Z07:00\": cannot parse {t:?}"
            )));
        }
        if since_seconds {
            causes.push(FieldError {
                field: String::new(),
                reason: "FieldValueForbidden",
                message: "Forbidden: at most one of sinceTime or sinceSeconds may be specified"
                    .into(),
            });
        }
    }
    if causes.is_empty() {
        Ok(())
    } else {
        // Upstream's field path for the pair has no name: it prints as `[]`.
        for c in &mut causes {
            if c.field.is_empty() {
                c.field = "[]".into();
            }
        }
        Err(ApiError::invalid("PodLogOptions", "", name, causes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn q(pairs: &[(&str, &str)]) -> Query {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn log_options_are_checked_as_upstream() {
        assert!(check_log_options("p", &q(&[("tailLines", "0"), ("follow", "true")])).is_ok());
        let e = check_log_options("p", &q(&[("tailLines", "-1")])).unwrap_err();
        assert_eq!(e.code, 422);
        assert_eq!(
            e.message,
            "PodLogOptions \"p\" is invalid: tailLines: Invalid value: -1: must be greater than or equal to 0"
        );
        let e = check_log_options("p", &q(&[("limitBytes", "x")])).unwrap_err();
        assert_eq!(e.code, 400);
        let e = check_log_options(
            "p",
            &q(&[("sinceSeconds", "5"), ("sinceTime", "2026-01-01T00:00:00Z")]),
        )
        .unwrap_err();
        assert_eq!(e.code, 422);
        assert!(
            e.message
                .contains("at most one of sinceTime or sinceSeconds"),
            "{}",
            e.message
        );
    }

    #[test]
    fn the_container_is_named_or_the_only_one() {
        let one = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}]}});
        assert_eq!(container_of(&one, None).unwrap(), "a");
        let two = json!({"metadata": {"name": "p"}, "spec": {
            "containers": [{"name": "a"}, {"name": "b"}], "initContainers": [{"name": "i"}]}});
        assert_eq!(
            container_of(&two, None).unwrap_err().message,
            "a container name must be specified for pod p, choose one of: [a b] or one of the init containers: [i]"
        );
        assert_eq!(container_of(&two, Some("i")).unwrap(), "i");
        assert_eq!(
            container_of(&two, Some("x")).unwrap_err().message,
            "container x is not valid for pod p"
        );
    }

    #[test]
    fn a_log_is_there_once_the_container_ran() {
        let pod = |status: Value| json!({"metadata": {"name": "p"}, "status": {"containerStatuses": [status]}});
        let creating = pod(
            json!({"name": "c", "state": {"waiting": {"reason": "ContainerCreating"}}, "lastState": {}}),
        );
        assert_eq!(
            check_log_status(&creating, "c", false).unwrap_err().message,
            "container \"c\" in pod \"p\" is waiting to start: ContainerCreating"
        );
        let crashing = pod(
            json!({"name": "c", "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                                  "lastState": {"terminated": {"exitCode": 1}}}),
        );
        assert!(check_log_status(&crashing, "c", false).is_ok());
        assert!(check_log_status(&crashing, "c", true).is_ok());
        let done =
            pod(json!({"name": "c", "state": {"terminated": {"exitCode": 0}}, "lastState": {}}));
        assert!(check_log_status(&done, "c", false).is_ok());
        assert_eq!(
            check_log_status(&done, "c", true).unwrap_err().message,
            "previous terminated container \"c\" in pod \"p\" not found"
        );
    }

    #[test]
    fn the_endpoint_comes_from_the_nodes_status() {
        let node = json!({"metadata": {"name": "n"}, "status": {
            "addresses": [{"type": "Hostname", "address": "n"}, {"type": "InternalIP", "address": "fd00::1"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}}}});
        assert_eq!(endpoint(&node).unwrap(), ("[fd00::1]".to_string(), 10250));
        let simulated = json!({"metadata": {"name": "n"}, "status": {
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}}}});
        assert_eq!(endpoint(&simulated).unwrap_err().code, 503);
    }
}
