//! Starting the API server: PKI, node token, kubeconfig, the HTTPS listener and the built-in
//! objects every cluster has.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::Request;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rudder_store::Store;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

use crate::error::ApiError;
use crate::handlers::{self, AppState, ConnUser};
use crate::pki::{self, Pki};
use crate::registry::{Registry, Res};

/// The Kubernetes version Rudder's API reports (the API it serves).
pub const KUBERNETES_VERSION: (u32, u32, u32) = (1, 33, 0);

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
}

/// A running API server.
pub struct ApiServer {
    pub addr: SocketAddr,
    pub kubeconfig: PathBuf,
    accept: JoinHandle<()>,
}

impl ApiServer {
    /// Stops accepting connections.
    pub fn stop(&self) {
        self.accept.abort();
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

/// Creates what a fresh cluster has: the four namespaces and the `kubernetes` service.
async fn bootstrap(registry: &Registry, port: u16) -> Result<(), ApiError> {
    let ns = crate::resources::resolve("", "v1", "namespaces")
        .ok_or_else(|| ApiError::internal("namespaces are not in the catalogue"))?;
    for name in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        let obj = json!({"metadata": {"name": name}, "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}});
        match registry.create(&ns.res, None, obj, false).await {
            Ok(_) => {}
            Err(e) if e.reason == "AlreadyExists" => {}
            Err(e) => return Err(e),
        }
    }
    let svc = crate::resources::resolve("", "v1", "services")
        .ok_or_else(|| ApiError::internal("services are not in the catalogue"))?;
    let ip = registry.services().cidr().first().to_string();
    let kubernetes = json!({
        "metadata": {"name": "kubernetes", "namespace": "default",
                     "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {"type": "ClusterIP", "clusterIP": ip,
                 "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}],
                 "sessionAffinity": "None"},
    });
    match registry
        .create(&svc.res, Some("default"), kubernetes, false)
        .await
    {
        Ok(_) => {}
        Err(e) if e.reason == "AlreadyExists" => {}
        Err(e) => return Err(e),
    }
    // Give back what a crash between allocating and writing may have left taken.
    let all = registry.list(&svc.res, None, &Default::default()).await?;
    let items = all["items"].as_array().cloned().unwrap_or_default();
    let freed = registry.services().repair(&items).await?;
    if freed > 0 {
        tracing::info!(freed, "released service addresses no service holds");
    }
    Ok(())
}

fn res_for_namespaces() -> Option<Res> {
    crate::resources::resolve("", "v1", "namespaces").map(|s| s.res)
}

/// Starts serving: returns once the listener is bound, the kubeconfig written and the
/// built-in objects exist, so the server is ready when this returns.
pub async fn start(cfg: Config, store: Arc<dyn Store>) -> anyhow::Result<ApiServer> {
    use anyhow::Context as _;
    let server_dir = cfg.data_dir.join("server");
    let pki = Pki::load_or_create(&server_dir.join("tls"), &cfg.tls_sans)
        .context("cluster certificates")?;
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
    let registry = Arc::new(Registry::new(
        store.clone(),
        crate::services::Allocator::new(store, cidr),
    ));
    res_for_namespaces().context("catalogue")?;
    bootstrap(&registry, addr.port())
        .await
        .map_err(|e| anyhow::anyhow!("create the built-in objects: {e}"))?;

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

    let state = Arc::new(AppState {
        registry,
        token,
        version: version_doc(),
        server_address: format!("{host}:{}", addr.port()),
    });
    // The OpenAPI documents take ~0.1 s of CPU each to build: off the request path and off
    // the way to ready.
    tokio::task::spawn_blocking(rudder_api::openapi::prebuild);
    let app = Router::new().fallback(handlers::handle).with_state(state);
    let accept = tokio::spawn(accept_loop(listener, tls, app));
    Ok(ApiServer {
        addr,
        kubeconfig,
        accept,
    })
}

async fn accept_loop(listener: TcpListener, tls: TlsAcceptor, app: Router) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let tls = tls.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let stream = match tls.accept(tcp).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
            };
            let user = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| pki::user_from_client_cert(c));
            let conn = ConnUser(user);
            let svc = hyper::service::service_fn(move |mut req: Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(conn.clone());
                app.clone().oneshot(req.map(axum::body::Body::new))
            });
            if let Err(e) = auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                .await
            {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}
