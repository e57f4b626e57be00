//! The in-process client: kube-rs's `Client` over the API router, with an identity and no
//! socket, against a real server on an embedded store; the same calls through HTTPS with the
//! admin kubeconfig give the same answers.

use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{reflector, watcher, WatchStreamExt};
use rudder_apiserver::pki::User;
use rudder_apiserver::server::{self, ApiServer, Config};
use rudder_store::embedded::{Embedded, EmbeddedOptions};
use serde_json::json;

async fn start(dir: &std::path::Path) -> ApiServer {
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
        limits: Default::default(),
        admission: Default::default(),
    };
    server::start(cfg, Arc::new(store))
        .await
        .expect("api server")
}

fn admin() -> User {
    User {
        name: "system:kube-controller-manager".into(),
        groups: vec!["system:masters".into()],
        uid: None,
    }
}

async fn https_client(api: &ApiServer) -> kube::Client {
    let kubeconfig = kube::config::Kubeconfig::read_from(&api.kubeconfig).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("client config");
    kube::Client::try_from(config).expect("client")
}

/// Typed CRUD, a merge patch, a 409 and a 404, as a controller would do them.
async fn crud(client: kube::Client) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "p", "labels": {"app": "a"}},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }))
    .expect("pod");
    let created = pods
        .create(&PostParams::default(), &pod)
        .await
        .expect("create");
    assert_eq!(created.metadata.name.as_deref(), Some("p"));
    let spec = created.spec.clone().expect("spec");
    assert_eq!(
        spec.restart_policy.as_deref(),
        Some("Always"),
        "defaults applied"
    );
    assert_eq!(
        created.status.and_then(|s| s.phase).as_deref(),
        Some("Pending")
    );
    match pods.create(&PostParams::default(), &pod).await {
        Err(kube::Error::Api(e)) => assert_eq!((e.code, e.reason.as_str()), (409, "AlreadyExists")),
        other => panic!("expected 409, got {other:?}"),
    }
    let patched = pods
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"b": "c"}}})),
        )
        .await
        .expect("patch");
    assert_eq!(patched.metadata.labels.expect("labels")["b"], "c");
    let list = pods
        .list(&ListParams::default().labels("app=a"))
        .await
        .expect("list");
    assert_eq!(list.items.len(), 1);
    pods.delete("p", &DeleteParams::default().grace_period(0))
        .await
        .expect("delete");
    match pods.get("p").await {
        Err(kube::Error::Api(e)) => assert_eq!(e.code, 404),
        other => panic!("expected 404, got {other:?}"),
    }
}

/// A kube-runtime reflector sees what is created after it starts.
async fn reflects(client: kube::Client, name: &str) {
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    let (reader, writer) = reflector::store();
    let stream = reflector(writer, watcher(cms.clone(), watcher::Config::default()))
        .applied_objects()
        .boxed();
    let watching = tokio::spawn(async move {
        let mut stream = stream;
        while let Ok(Some(_)) = stream.try_next().await {}
    });
    reader.wait_until_ready().await.expect("initial list");
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": name}, "data": {"k": "v"}}))
            .expect("configmap");
    cms.create(&PostParams::default(), &cm)
        .await
        .expect("create");
    let mut seen = false;
    for _ in 0..200 {
        if reader
            .state()
            .iter()
            .any(|c| c.metadata.name.as_deref() == Some(name))
        {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    watching.abort();
    assert!(seen, "the reflector saw {name}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_and_https_clients_see_the_same_api() {
    let dir = tempfile::tempdir().expect("temp dir");
    let api = start(dir.path()).await;
    crud(api.client(admin(), "default")).await;
    reflects(api.client(admin(), "default"), "in-process").await;
    crud(https_client(&api).await).await;
    reflects(https_client(&api).await, "over-https").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_identities_meet_the_authorizer() {
    let dir = tempfile::tempdir().expect("temp dir");
    let api = start(dir.path()).await;
    let node = User {
        name: "system:node:n1".into(),
        groups: vec!["system:nodes".into()],
        uid: None,
    };
    let cms: Api<ConfigMap> = Api::namespaced(api.client(node, "default"), "default");
    match cms.list(&ListParams::default()).await {
        Err(kube::Error::Api(e)) => {
            assert_eq!((e.code, e.reason.as_str()), (403, "Forbidden"));
            assert!(
                e.message
                    .contains("User \"system:node:n1\" cannot list resource \"configmaps\""),
                "{}",
                e.message
            );
        }
        other => panic!("expected 403, got {other:?}"),
    }
}
