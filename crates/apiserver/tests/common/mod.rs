//! What the API server's integration tests share: a real server on an embedded store in a
//! temporary directory, the admin identity, and an HTTPS client from its kubeconfig.

// Each test binary uses its own part of this module.
#![allow(dead_code)]

use std::sync::Arc;

use rudder_apiserver::pki::User;
use rudder_apiserver::server::{self, ApiServer, Config};
use rudder_store::embedded::{Embedded, EmbeddedOptions};

pub async fn start(dir: &std::path::Path) -> ApiServer {
    let store = Embedded::open(EmbeddedOptions::new(dir.join("db"))).expect("store");
    let cfg = Config {
        data_dir: dir.to_path_buf(),
        bind_address: "127.0.0.1".parse().expect("address"),
        port: 0,
        tls_sans: Vec::new(),
        token: None,
        kubeconfig: None,
        kubeconfig_mode: 0o600,
        service_cidr: "10.43.0.0/16".into(),
        cluster_dns: None,
        limits: Default::default(),
        admission: Default::default(),
        extra_metrics: Vec::new(),
        node_cert_lifetime: std::time::Duration::from_secs(365 * 24 * 3600),
    };
    server::start(cfg, Arc::new(store))
        .await
        .expect("api server")
}

/// A member of `system:masters`, as the controllers run.
pub fn admin() -> User {
    User {
        name: "system:kube-controller-manager".into(),
        groups: vec!["system:masters".into()],
        uid: None,
    }
}

pub async fn https_client(api: &ApiServer) -> kube::Client {
    let kubeconfig = kube::config::Kubeconfig::read_from(&api.kubeconfig).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("client config");
    kube::Client::try_from(config).expect("client")
}
