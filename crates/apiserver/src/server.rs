//! Starting the API server: PKI, node token, kubeconfig, the HTTPS listener and the built-in
//! objects every cluster has.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use rudder_store::Store;
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

use crate::error::ApiError;
use crate::handlers::{self, AppState, ConnUser};
use crate::limits::{self, Activity, Gate, Inflight, Limits, Slot};
use crate::pki::{self, Pki, User};
use crate::registry::{Part, Registry, Write};
use rudder_api::catalogue;

pub use rudder_api::KUBERNETES_VERSION;

#[derive(Clone, Debug)]
pub struct Config {
    pub data_dir: PathBuf,
    pub bind_address: IpAddr,
    pub port: u16,
    pub tls_sans: Vec<String>,
    pub token: Option<String>,
    /// Where the admin kubeconfig goes (default `<data-dir>/kubeconfig.yaml`).
    pub kubeconfig: Option<PathBuf>,
    pub kubeconfig_mode: u32,
    /// ClusterIPs come from here; its first address is the `kubernetes` service's.
    pub service_cidr: String,
    /// The cluster DNS address, given to the `kube-dns` service in kube-system (none: no such
    /// service is made).
    pub cluster_dns: Option<IpAddr>,
    /// Timeouts, connection caps and in-flight request limits.
    pub limits: Limits,
    /// Admission plugin settings.
    pub admission: crate::admission::Config,
    /// Metrics of the rest of the process (scheduler, controllers), served on `/metrics`
    /// after the server's own.
    pub extra_metrics: Vec<crate::metrics::Source>,
    /// How long the certificates agents get are valid (`--cluster-signing-duration`).
    pub node_cert_lifetime: Duration,
}

/// A running API server.
pub struct ApiServer {
    pub addr: SocketAddr,
    pub kubeconfig: PathBuf,
    accept: JoinHandle<()>,
    app: Router,
    registry: Arc<Registry>,
    ca_pem: String,
    heartbeats: limits::HeartbeatTrouble,
    join: Arc<crate::join::Join>,
}

impl ApiServer {
    /// When this server last kept nodes' heartbeats waiting or turned them away (for the node
    /// lifecycle controller in the same process).
    pub fn heartbeat_trouble(&self) -> limits::HeartbeatTrouble {
        self.heartbeats.clone()
    }

    /// The cluster CA certificate (PEM): what clients verify this server with, and what the
    /// root CA publisher puts into every namespace.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Joins the server's own node as `POST /v1-rudder/node-certificates` does, in process.
    pub fn joiner(&self) -> crate::join::Joiner {
        crate::join::Joiner {
            join: self.join.clone(),
            registry: self.registry.clone(),
        }
    }

    /// What this server serves: kinds may be added (and removed) while it serves.
    pub fn resources(&self) -> &crate::resources::Resources {
        self.registry.resources()
    }

    /// Stops accepting connections.
    pub fn stop(&self) {
        self.accept.abort();
    }

    /// A kube-rs client that calls this server in process, as `user`: the same request path
    /// (authorization, admission, registry, watch cache) as over HTTPS, without a socket, TLS
    /// or serialisation to a connection. The scheduler, controllers and the server's own agent
    /// use it.
    pub fn client(&self, user: User, default_namespace: &str) -> kube::Client {
        let app = self.app.clone();
        let conn = ConnUser(Some(user));
        let svc = tower::service_fn(move |req: Request<kube::client::Body>| {
            let mut req = req.map(axum::body::Body::new);
            req.extensions_mut().insert(conn.clone());
            app.clone().oneshot(req)
        });
        kube::Client::new(svc, default_namespace)
    }
}

fn version_doc() -> Value {
    let (ma, mi, pa) = KUBERNETES_VERSION;
    json!({
        "major": ma.to_string(),
        "minor": mi.to_string(),
        "gitVersion": format!("v{ma}.{mi}.{pa}+rudder-{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": "rust",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            other => other,
        }),
    })
}

/// The manager upstream's API server writes its own objects as.
const APISERVER: &str = "kube-apiserver";

/// Creates what a fresh cluster has: the four namespaces, the `kubernetes` service and the
/// `kube-dns` one.
async fn bootstrap(
    registry: &Registry,
    port: u16,
    cluster_dns: Option<IpAddr>,
) -> Result<(), ApiError> {
    let ns = registry
        .resolve("", "v1", "namespaces")
        .ok_or_else(|| ApiError::internal("namespaces are not in the catalogue"))?;
    for name in crate::admission::SYSTEM_NAMESPACES {
        let obj = json!({"metadata": {"name": name}, "spec": {}});
        create_if_missing(registry, &ns.res, None, obj).await?;
    }
    let svc = registry
        .resolve("", "v1", "services")
        .ok_or_else(|| ApiError::internal("services are not in the catalogue"))?;
    let ip = registry.services().cidr().first().to_string();
    let kubernetes = json!({
        "metadata": {"name": "kubernetes", "namespace": "default",
                     "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {"type": "ClusterIP", "clusterIP": ip,
                 "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}],
                 "sessionAffinity": "None", "ipFamilyPolicy": "SingleStack"},
    });
    create_if_missing(registry, &svc.res, Some("default"), kubernetes).await?;
    if let Some(ip) = cluster_dns {
        // The address pods are given as their nameserver, which every node's DNS answers
        // (crates/net). Labelled as the cluster's DNS is (`kubectl cluster-info` lists it).
        let dns = json!({
            "metadata": {"name": "kube-dns", "namespace": "kube-system",
                         "labels": {"k8s-app": "kube-dns",
                                    "kubernetes.io/cluster-service": "true"}},
            "spec": {"type": "ClusterIP", "clusterIP": ip.to_string(),
                     "ports": [{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                               {"name": "dns-tcp", "port": 53, "protocol": "TCP",
                                "targetPort": 53}]},
        });
        if let Err(e) = create_if_missing(registry, &svc.res, Some("kube-system"), dns).await {
            // Say why, but serve: a --cluster-dns outside --service-cidr, or taken.
            tracing::warn!(error = %e.message, %ip, "no kube-dns service");
        }
    }
    api_services(registry).await?;
    let pcs = registry
        .resolve("scheduling.k8s.io", "v1", "priorityclasses")
        .ok_or_else(|| ApiError::internal("priorityclasses are not in the catalogue"))?;
    for (name, value, description) in crate::admission::SYSTEM_PRIORITY_CLASSES {
        let pc = json!({"metadata": {"name": name}, "value": value, "description": description});
        create_if_missing(registry, &pcs.res, None, pc).await?;
    }
    // Every namespace has its default ServiceAccount (namespaces made from now on get it when
    // they are created).
    for item in registry.list(&ns.res, None, &Default::default()).await?["items"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if let Some(name) = item["metadata"]["name"].as_str() {
            crate::admission::namespace_defaults(registry, name).await?;
        }
    }
    // Give back what a crash between allocating and writing left taken: counted now, given
    // back when it has stayed so for a few runs (another server may be mid-create).
    repair_services(registry).await;
    Ok(())
}

/// Creates `obj` as the API server unless it exists already (a restart).
async fn create_if_missing(
    registry: &Registry,
    res: &crate::registry::Res,
    namespace: Option<&str>,
    obj: Value,
) -> Result<(), ApiError> {
    match registry
        .create(res, namespace, obj, &Write::server_as(APISERVER))
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if e.reason == "AlreadyExists" => Ok(()),
        Err(e) => Err(e),
    }
}

async fn repair_services(registry: &Registry) {
    match registry.services().repair().await {
        Ok(0) => {}
        Ok(freed) => tracing::info!(freed, "released service addresses no service holds"),
        Err(e) => tracing::warn!(error = %e, "service address repair"),
    }
}

/// The APIService of every group/version this server serves itself, as upstream's aggregator
/// registers them at start: `v1.` for core, `v1.apps`, ...; no service (served locally) and
/// Available with reason Local.
async fn api_services(registry: &Registry) -> Result<(), ApiError> {
    let Some(served) = registry.resolve("apiregistration.k8s.io", "v1", "apiservices") else {
        return Ok(());
    };
    let res = &served.res;
    let groups = std::iter::once(&catalogue::CORE_GROUP).chain(catalogue::API_GROUPS);
    for group in groups {
        for version in group.versions {
            let Some((group_priority, version_priority)) =
                catalogue::api_service_priority(group.name, version)
            else {
                continue;
            };
            let name = format!("{version}.{}", group.name);
            let mut spec = json!({
                "service": null,
                "version": version,
                "groupPriorityMinimum": group_priority,
                "versionPriority": version_priority,
            });
            if !group.name.is_empty() {
                rudder_api::value::set(&mut spec, &["group"], json!(group.name));
            }
            let obj = json!({
                "metadata": {"name": name,
                             "labels": {"kube-aggregator.kubernetes.io/automanaged": "onstart"}},
                "spec": spec,
            });
            let mut created = match registry
                .create(res, None, obj, &Write::server_as(APISERVER))
                .await
            {
                Ok(o) => o,
                Err(e) if e.reason == "AlreadyExists" => continue,
                Err(e) => return Err(e),
            };
            let available = json!({"conditions": [{
                "type": "Available",
                "status": "True",
                "lastTransitionTime": crate::registry::now_rfc3339(),
                "reason": "Local",
                "message": "Local APIServices are always available",
            }]});
            rudder_api::value::set(&mut created, &["status"], available);
            registry
                .update(
                    res,
                    None,
                    &name,
                    created,
                    Part::Status,
                    &Write::server_as(APISERVER),
                )
                .await?;
        }
    }
    Ok(())
}

/// Starts serving: returns once the listener is bound, the kubeconfig written and the
/// built-in objects exist, so the server is ready when this returns.
pub async fn start(cfg: Config, store: Arc<dyn Store>) -> anyhow::Result<ApiServer> {
    use anyhow::Context as _;
    cfg.limits.check()?;
    let server_dir = cfg.data_dir.join("server");
    let pki = Arc::new(
        Pki::load_or_create(&server_dir.join("tls"), &cfg.tls_sans)
            .context("cluster certificates")?,
    );
    let token = pki::load_or_create_token(
        &server_dir.join("node-token"),
        cfg.token.as_deref(),
        pki.ca_pem(),
    )
    .context("node token")?;
    let tls = TlsAcceptor::from(pki.server_config().context("TLS configuration")?);
    let listener = TcpListener::bind((cfg.bind_address, cfg.port))
        .await
        .with_context(|| format!("listen on {}:{}", cfg.bind_address, cfg.port))?;
    let addr = listener.local_addr()?;
    let cidr = crate::services::Cidr::parse(&cfg.service_cidr)
        .map_err(|e| anyhow::anyhow!("--service-cidr: {e}"))?;
    let metrics = Arc::new(crate::metrics::Metrics::with_sources(
        cfg.extra_metrics.clone(),
    ));
    let store: Arc<dyn Store> =
        Arc::new(crate::metrics::MeasuredStore::new(store, metrics.clone()));
    let registry = Arc::new(
        Registry::new(store.clone(), crate::services::Allocator::new(store, cidr))
            .with_admission(cfg.admission.clone()),
    );
    bootstrap(&registry, addr.port(), cfg.cluster_dns)
        .await
        .map_err(|e| anyhow::anyhow!("create the built-in objects: {e}"))?;
    // Every server repairs on its own schedule; the leak counts make that safe to share.
    let repairing = Arc::downgrade(&registry);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(crate::services::REPAIR_EVERY);
        tick.tick().await;
        loop {
            tick.tick().await;
            // The server is gone once nothing else holds its registry.
            let Some(registry) = repairing.upgrade() else {
                break;
            };
            repair_services(&registry).await;
        }
    });

    let host = match cfg.bind_address {
        a if a.is_unspecified() => "127.0.0.1".to_string(),
        IpAddr::V6(a) => format!("[{a}]"),
        a => a.to_string(),
    };
    let url = format!("https://{host}:{}", addr.port());
    let kubeconfig = cfg
        .kubeconfig
        .clone()
        .unwrap_or_else(|| cfg.data_dir.join("kubeconfig.yaml"));
    pki::write_kubeconfig(
        &kubeconfig,
        cfg.kubeconfig_mode,
        &url,
        pki.ca_pem(),
        pki.admin_cert_pem(),
        pki.admin_key_pem(),
    )
    .context("write the kubeconfig")?;

    // Idle sockets cost a file each: use all the process may have, and keep clear of it.
    let fds = limits::raise_fd_limit();
    let (max_connections, max_pending, max_pending_per_address) =
        limits::connection_caps(&cfg.limits, fds);
    tracing::info!(
        open_files = fds,
        max_connections,
        max_pending,
        max_pending_per_address,
        max_requests_inflight = cfg.limits.max_requests_inflight,
        max_mutating_requests_inflight = cfg.limits.max_mutating_requests_inflight,
        "connection limits"
    );
    let inflight = Inflight::new(&cfg.limits);
    let heartbeats = inflight.heartbeat_trouble();
    let join = Arc::new(crate::join::Join::new(
        pki.clone(),
        cfg.node_cert_lifetime,
        cidr,
    ));
    let state = Arc::new(AppState {
        join: join.clone(),
        authorizer: crate::authz::Union::standard(registry.clone()),
        registry: registry.clone(),
        token,
        ca_pem: pki.ca_pem().to_string(),
        version: version_doc(),
        server_address: format!("{host}:{}", addr.port()),
        body_timeout: cfg.limits.request_body_timeout,
        inflight,
        metrics,
        kubelets: crate::kubelet::Kubelets::new(&pki).context("the client for node agents")?,
    });
    // The OpenAPI documents, built off the request path, then freed memory given back.
    crate::memory::start_trimmer();
    let app = Router::new()
        .fallback(handlers::handle)
        .with_state(state)
        .layer(limits::RequestTimeoutLayer::new(cfg.limits.request_timeout));
    let serving = Arc::new(Serving {
        tls,
        app: app.clone(),
        http: http_builder(&cfg.limits),
        gate: Gate::new(max_connections, max_pending, max_pending_per_address),
        limits: cfg.limits.clone(),
    });
    let accept = tokio::spawn(accept_loop(listener, serving));
    Ok(ApiServer {
        addr,
        kubeconfig,
        accept,
        app,
        registry,
        ca_pem: pki.ca_pem().to_string(),
        heartbeats,
        join,
    })
}

/// What every connection is served with.
struct Serving {
    tls: TlsAcceptor,
    app: Router,
    http: auto::Builder<TokioExecutor>,
    gate: Arc<Gate>,
    limits: Limits,
}

fn http_builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.request_header_timeout);
    // Pings find peers that vanished without closing (a watch would otherwise wait forever).
    b.http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(20))
        .max_concurrent_streams(limits::HTTP2_MAX_STREAMS)
        .max_header_list_size(limits::MAX_HEADER_BYTES);
    b
}

async fn accept_loop(listener: TcpListener, serving: Arc<Serving>) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Waits only while every connection is an authenticated one.
        let slot = serving.gate.admit(peer.ip()).await;
        let _ = tcp.set_nodelay(true);
        let serving = serving.clone();
        tokio::spawn(async move {
            tokio::select! {
                // Not authenticated yet, and the oldest such: closed to make room.
                _ = slot.evicted() => {
                    tracing::debug!(%peer, "closed an unauthenticated connection to make room");
                }
                _ = serve_connection(&serving, tcp, peer, &slot) => {}
            }
        });
    }
}

async fn serve_connection(serving: &Serving, tcp: TcpStream, peer: SocketAddr, slot: &Slot) {
    let limits = &serving.limits;
    let stream =
        match tokio::time::timeout(limits.tls_handshake_timeout, serving.tls.accept(tcp)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "TLS handshake timed out");
                return;
            }
        };
    let user = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(|c| pki::user_from_client_cert(c));
    if user.is_some() {
        // A certificate the cluster CA signed: authenticated from the start.
        slot.authenticated();
    }
    let conn = ConnUser(user);
    let conn_slot = slot.handle();
    let activity = Activity::new();
    let app = serving.app.clone();
    let requests = activity.clone();
    let svc = hyper::service::service_fn(move |mut req: Request<hyper::body::Incoming>| {
        let in_flight = requests.request();
        req.extensions_mut().insert(conn.clone());
        req.extensions_mut().insert(conn_slot.clone());
        let answer = app.clone().oneshot(req.map(axum::body::Body::new));
        async move {
            let response = answer.await?;
            // The connection is busy until the response is handed to it.
            Ok::<_, std::convert::Infallible>(limits::guard_response(response, in_flight))
        }
    });
    let conn = serving
        .http
        .serve_connection_with_upgrades(TokioIo::new(stream), svc);
    tokio::pin!(conn);
    let idle = activity.idle_expired(
        limits.request_header_timeout,
        limits.idle_connection_timeout,
    );
    tokio::pin!(idle);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = &mut idle => {
            // Nothing in flight: HTTP/1 closes at once, HTTP/2 says GOAWAY first.
            conn.as_mut().graceful_shutdown();
            match tokio::time::timeout(CLOSE_GRACE, conn.as_mut()).await {
                Ok(r) => r,
                Err(_) => Ok(()),
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

/// How long an idle connection told to close may take to do it.
const CLOSE_GRACE: Duration = Duration::from_secs(5);
