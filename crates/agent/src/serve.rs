//! The agent's own HTTPS server (the kubelet's port, 10250 by default), which the API server
//! reaches for what only the node can answer: `GET /containerLogs/NS/POD/CONTAINER`, and
//! `/exec/NS/POD/CONTAINER`, `/attach/NS/POD/CONTAINER` and `/portForward/NS/POD` upgrades
//! (see [`crate::streaming`]), and `GET /stats/resource` (see [`crate::stats`]).
//!
//! Only clients with a certificate from the cluster CA whose user is the API server's kubelet
//! client (`kube-apiserver-kubelet-client`) or in `system:masters` get an answer; the TLS
//! handshake refuses anyone without such a certificate. The serving certificate is the one the
//! cluster CA signed for the node's name and address (see [`crate::identity`]), which the API
//! server checks.
//!
//! What one connection may cost is bounded: a handshake has 10 s, at most
//! [`MAX_CONNECTIONS`] are served at once, request heads are read with a timeout.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioIo, TokioTimer};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Semaphore};

use crate::logs::{self, LogOptions, StillRunning};
use crate::runtime::{
    Container, ContainerState, Runtime, Sandbox, SandboxState, POD_NAMESPACE_LABEL, POD_NAME_LABEL,
};
use crate::stats::Sampler;
use crate::streaming::{self, Kind};

/// The user the API server's client certificate for agents names.
pub const APISERVER_CLIENT: &str = "kube-apiserver-kubelet-client";
const MASTERS: &str = "system:masters";
/// Connections served at once; more wait in the listen queue.
pub const MAX_CONNECTIONS: usize = 256;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// The TLS configuration of a node's server: the serving certificate `serving` holds at each
/// handshake (signed by the cluster CA, see [`crate::identity`]), clients verified against the
/// cluster CA (`ca_pem`).
pub fn tls_config(
    ca_pem: &str,
    serving: Arc<dyn rustls::server::ResolvesServerCert>,
) -> anyhow::Result<ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.context("the cluster CA bundle")?)?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .context("the client certificate verifier")?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(serving);
    // HTTP/1.1 only: exec, attach and port-forward are upgrades of an HTTP/1.1 request.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Whether the client certificate names a user who may use the node's server.
fn allowed(der: &[u8]) -> bool {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return false;
    };
    let subject = cert.subject();
    let cn = subject
        .iter_common_name()
        .filter_map(|a| a.as_str().ok())
        .last();
    cn == Some(APISERVER_CLIENT)
        || subject
            .iter_organization()
            .filter_map(|a| a.as_str().ok())
            .any(|o| o == MASTERS)
}

/// Serves the node's API on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, tls: ServerConfig, runtime: Arc<dyn Runtime>) {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let sampler = Arc::new(Sampler::default());
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "accepting a connection on the node's port");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // Streams (exec keystrokes, log lines) go out as they come, not held for an ACK.
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let runtime = runtime.clone();
        let sampler = sampler.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(t)) => t,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake refused");
                    return;
                }
                Err(_) => return,
            };
            let ok = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .is_some_and(|c| allowed(c.as_ref()));
            let service = hyper::service::service_fn(move |req| {
                let runtime = runtime.clone();
                let sampler = sampler.clone();
                async move {
                    if !ok {
                        return Ok::<_, Infallible>(status(
                            StatusCode::FORBIDDEN,
                            "Forbidden",
                            "this client may not use the node's API".into(),
                        ));
                    }
                    Ok(route(runtime, &sampler, req).await)
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(tls), service)
                .with_upgrades();
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "node API connection");
            }
        });
    }
}

/// A Kubernetes `Status` answer.
pub(crate) fn status(code: StatusCode, reason: &str, message: String) -> Response<Body> {
    let body = serde_json::json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code.as_u16(),
    });
    Response::builder()
        .status(code)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body.to_string())).boxed())
        .unwrap_or_default()
}

pub(crate) fn internal(e: impl std::fmt::Display) -> Response<Body> {
    status(
        StatusCode::INTERNAL_SERVER_ERROR,
        "InternalError",
        e.to_string(),
    )
}

pub(crate) fn bad_request(message: String) -> Response<Body> {
    status(StatusCode::BAD_REQUEST, "BadRequest", message)
}

async fn route(
    runtime: Arc<dyn Runtime>,
    sampler: &Sampler,
    req: Request<Incoming>,
) -> Response<Body> {
    let path = req.uri().path().to_string();
    let query: Vec<(String, String)> = req
        .uri()
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (req.method(), parts.as_slice()) {
        (&Method::GET, ["healthz"]) => Response::new(Full::new(Bytes::from("ok")).boxed()),
        (&Method::GET, ["stats", "resource"]) => {
            let summary = sampler.summary(runtime.as_ref()).await;
            Response::builder()
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(Full::new(Bytes::from(summary.to_string())).boxed())
                .unwrap_or_default()
        }
        (&Method::GET, ["containerLogs", ns, pod, container]) => {
            container_logs(runtime, ns, pod, container, &query).await
        }
        (&Method::GET | &Method::POST, [kind @ ("exec" | "attach"), ns, pod, container]) => {
            let kind = if *kind == "exec" {
                Kind::Exec
            } else {
                Kind::Attach
            };
            let (ns, pod, container) = (ns.to_string(), pod.to_string(), container.to_string());
            streaming::serve(runtime, kind, &ns, &pod, Some(&container), &query, req).await
        }
        (&Method::GET | &Method::POST, ["portForward", ns, pod]) => {
            let (ns, pod) = (ns.to_string(), pod.to_string());
            streaming::serve(runtime, Kind::PortForward, &ns, &pod, None, &query, req).await
        }
        _ => status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("the node's API has no {} {path}", req.method()),
        ),
    }
}

fn param<'a>(q: &'a [(String, String)], name: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// A boolean parameter as the API decodes it: absent, `false` and `0` are false.
pub(crate) fn flag(q: &[(String, String)], name: &str) -> bool {
    param(q, name).is_some_and(|v| !(v.eq_ignore_ascii_case("false") || v == "0"))
}

/// An integer parameter of at least `min`.
fn number(q: &[(String, String)], name: &str, min: i64) -> Result<Option<i64>, String> {
    let Some(v) = param(q, name) else {
        return Ok(None);
    };
    match v.parse::<i64>() {
        Ok(n) if n >= min => Ok(Some(n)),
        _ => Err(format!(
            "{name}: Invalid value: {v:?}: must be an integer greater than or equal to {min}"
        )),
    }
}

/// The log options of a `containerLogs` request.
fn log_options(q: &[(String, String)]) -> Result<LogOptions, String> {
    let tail = number(q, "tailLines", 0)?;
    let limit = number(q, "limitBytes", 1)?;
    let since_seconds = number(q, "sinceSeconds", 1)?;
    let since_time = match param(q, "sinceTime") {
        None => None,
        Some(t) => Some(
            t.parse::<Timestamp>()
                .map_err(|_| format!("sinceTime: Invalid value: {t:?}: not an RFC 3339 time"))?,
        ),
    };
    if since_seconds.is_some() && since_time.is_some() {
        return Err("at most one of sinceTime or sinceSeconds may be specified".into());
    }
    let since = since_time.or_else(|| {
        since_seconds.and_then(|s| {
            Timestamp::now()
                .checked_sub(SignedDuration::from_secs(s))
                .ok()
        })
    });
    Ok(LogOptions {
        tail_lines: tail.map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
        limit_bytes: limit.map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
        timestamps: flag(q, "timestamps"),
        since,
    })
}

/// The sandbox of pod `ns/pod` on this node (the ready one, else the newest), or the answer
/// saying it has none.
pub(crate) async fn pod_sandbox(
    runtime: &Arc<dyn Runtime>,
    ns: &str,
    pod: &str,
) -> Result<Sandbox, Response<Body>> {
    let sandboxes = runtime.list_sandboxes(None).await.map_err(internal)?;
    sandboxes
        .into_iter()
        .filter(|sb| {
            sb.labels.get(POD_NAMESPACE_LABEL).map(String::as_str) == Some(ns)
                && sb.labels.get(POD_NAME_LABEL).map(String::as_str) == Some(pod)
        })
        .max_by_key(|sb| (sb.state == SandboxState::Ready, sb.created_at))
        .ok_or_else(|| {
            status(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("pod \"{pod}\" in namespace \"{ns}\" is not running on this node"),
            )
        })
}

/// `GET /containerLogs/NS/POD/CONTAINER`: the container's log, the newest instance's, or with
/// `previous` the one before (in a crash loop, the one that crashed last, as the kubelet's
/// lastState); with `follow`, streamed until the container stops.
async fn container_logs(
    runtime: Arc<dyn Runtime>,
    ns: &str,
    pod: &str,
    container: &str,
    q: &[(String, String)],
) -> Response<Body> {
    let options = match log_options(q) {
        Ok(o) => o,
        Err(why) => return bad_request(why),
    };
    let sandbox = match pod_sandbox(&runtime, ns, pod).await {
        Ok(s) => s,
        Err(answer) => return answer,
    };
    let mut instances: Vec<Container> = match runtime.list_containers(&sandbox.id).await {
        Ok(c) => c.into_iter().filter(|c| c.name == container).collect(),
        Err(e) => return internal(e),
    };
    instances.sort_by_key(|c| std::cmp::Reverse(c.attempt));
    let exited = |c: &&Container| matches!(c.state, ContainerState::Exited { .. });
    let target = if flag(q, "previous") {
        match instances
            .first()
            .filter(exited)
            .or(instances.get(1).filter(exited))
        {
            Some(c) => c,
            None => {
                return bad_request(format!(
                    "previous terminated container \"{container}\" in pod \"{pod}\" not found"
                ))
            }
        }
    } else {
        match instances.first() {
            Some(c) if !matches!(c.state, ContainerState::Created) => c,
            _ => {
                return bad_request(format!(
                "container \"{container}\" in pod \"{pod}\" is waiting to start: ContainerCreating"
            ))
            }
        }
    };
    let source = match runtime.log_source(&target.id).await {
        Ok(s) => s,
        Err(e) => return internal(e),
    };
    let follow = flag(q, "follow") && matches!(target.state, ContainerState::Running { .. });
    let running: Option<StillRunning> = follow.then(|| {
        let (runtime, sandbox, id) = (runtime.clone(), sandbox.id.clone(), target.id.clone());
        let check: StillRunning = Box::new(move || {
            let (runtime, sandbox, id) = (runtime.clone(), sandbox.clone(), id.clone());
            Box::pin(async move {
                runtime.list_containers(&sandbox).await.is_ok_and(|all| {
                    all.iter()
                        .any(|c| c.id == id && matches!(c.state, ContainerState::Running { .. }))
                })
            })
        });
        check
    });
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        if let Err(e) = logs::stream(source, options, running, tx).await {
            tracing::debug!(error = %e, "reading a container log");
        }
    });
    let body = StreamBody::new(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|chunk| (Ok::<_, Infallible>(Frame::data(Bytes::from(chunk))), rx))
    }));
    Response::builder()
        .header(http::header::CONTENT_TYPE, "text/plain")
        .body(BodyExt::boxed(body))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CA: its PEM and its issuer.
    fn ca() -> (String, rcgen::Issuer<'static, rcgen::KeyPair>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, "test-ca");
        let pem = ca.self_signed(&key).unwrap().pem();
        (pem, rcgen::Issuer::new(ca, key))
    }

    /// A client certificate and key for `cn` in `orgs`, as PEM.
    fn client(
        issuer: &rcgen::Issuer<'static, rcgen::KeyPair>,
        cn: &str,
        orgs: &[&str],
    ) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        for o in orgs {
            params
                .distinguished_name
                .push(rcgen::DnType::OrganizationName, *o);
        }
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// `GET /healthz` with the client certificate given (if any): the status, or the error.
    async fn healthz(port: u16, client: Option<(&str, &str)>) -> Result<u16, String> {
        use rustls::pki_types::pem::PemObject as _;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let identity = client.map(|(cert, key)| {
            (
                vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
        });
        let config = rudder_api::tls::client_without_verification(identity).unwrap();
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_only()
            .enable_http1()
            .build();
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build::<_, http_body_util::Empty<Bytes>>(https);
        let uri = format!("https://127.0.0.1:{port}/healthz");
        client
            .get(uri.parse().unwrap())
            .await
            .map(|r| r.status().as_u16())
            .map_err(|e| e.to_string())
    }

    #[tokio::test]
    async fn only_the_api_servers_certificate_is_served() {
        let (ca_pem, issuer) = ca();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let serving = rcgen::generate_simple_self_signed(vec!["n".to_string()]).unwrap();
        let serving = crate::identity::Slot::from_pem(
            &serving.cert.pem(),
            &serving.signing_key.serialize_pem(),
        )
        .unwrap();
        let tls = tls_config(&ca_pem, serving).unwrap();
        let server = tokio::spawn(serve(listener, tls, Arc::new(crate::fake::Fake::new())));
        let (cert, key) = client(&issuer, APISERVER_CLIENT, &[]);
        assert_eq!(healthz(port, Some((&cert, &key))).await, Ok(200));
        let (cert, key) = client(&issuer, "system:admin", &[MASTERS]);
        assert_eq!(healthz(port, Some((&cert, &key))).await, Ok(200));
        // From the cluster CA, but another user: forbidden.
        let (cert, key) = client(&issuer, "someone", &["developers"]);
        assert_eq!(healthz(port, Some((&cert, &key))).await, Ok(403));
        // From another CA, or none at all: the handshake fails.
        let (_, other) = ca();
        let (cert, key) = client(&other, APISERVER_CLIENT, &[]);
        assert!(healthz(port, Some((&cert, &key))).await.is_err());
        assert!(healthz(port, None).await.is_err());
        server.abort();
    }
}
