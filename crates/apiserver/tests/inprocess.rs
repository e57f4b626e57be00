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
use serde_json::json;

mod common;
use common::{admin, https_client, start};

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

/// A kind that is not built in, with rules of its own: `spec.size` may not be negative.
#[derive(Debug)]
struct Widgets;

impl rudder_api::strategy::Strategy for Widgets {
    fn validate(
        &self,
        obj: &serde_json::Value,
        _old: Option<&serde_json::Value>,
    ) -> Vec<rudder_api::validation::FieldError> {
        match obj
            .pointer("/spec/size")
            .and_then(serde_json::Value::as_i64)
        {
            Some(n) if n < 0 => vec![rudder_api::validation::FieldError::invalid(
                "spec.size",
                &n.to_string(),
                "must be greater than or equal to 0",
            )],
            _ => Vec::new(),
        }
    }

    fn has_generation(&self) -> bool {
        true
    }
}

static WIDGETS: rudder_api::catalogue::ResourceType = {
    use rudder_api::catalogue::{ResourceType, Scope, Storage, Verb::*};
    ResourceType {
        group: "example.rudder.dev",
        version: "v1alpha1",
        kind: "Widget",
        plural: "widgets",
        singular: "widget",
        scope: Scope::Namespaced,
        verbs: &[
            Create,
            Delete,
            DeleteCollection,
            Get,
            List,
            Patch,
            Update,
            Watch,
        ],
        short_names: &["wd"],
        categories: &[],
        subresources: &[],
        storage: Some(Storage {
            group: "example.rudder.dev",
            resource: "example.rudder.dev/widgets",
            version: "v1alpha1",
            kind: "Widget",
            version_hash: "",
        }),
    }
};

/// A kind joins the catalogue while the server serves: discovery lists it, its objects are
/// stored with its strategy's rules, and it can leave again — the path custom resources take.
#[tokio::test]
async fn kinds_join_and_leave_the_catalogue_while_serving() {
    use kube::api::{ApiResource, DynamicObject};
    use kube::discovery::{Discovery, Scope};
    let dir = tempfile::tempdir().expect("tempdir");
    let api = start(dir.path()).await;
    let client = api.client(admin(), "default");
    let ar = ApiResource {
        group: "example.rudder.dev".into(),
        version: "v1alpha1".into(),
        api_version: "example.rudder.dev/v1alpha1".into(),
        kind: "Widget".into(),
        plural: "widgets".into(),
    };
    let widgets: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &ar);
    let err = widgets.list(&ListParams::default()).await.unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 404),
        "{err:?}"
    );

    api.resources()
        .add(&WIDGETS, Arc::new(Widgets), None)
        .expect("add");
    let discovery = Discovery::new(client.clone())
        .run()
        .await
        .expect("discovery");
    let (found, caps) = discovery
        .resolve_gvk(&kube::api::GroupVersionKind::gvk(
            "example.rudder.dev",
            "v1alpha1",
            "Widget",
        ))
        .expect("Widget in discovery");
    assert_eq!(found.plural, "widgets");
    assert_eq!(caps.scope, Scope::Namespaced);

    let widget = |size: i64| -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "example.rudder.dev/v1alpha1",
            "kind": "Widget",
            "metadata": {"name": "w"},
            "spec": {"size": size},
        }))
        .expect("widget")
    };
    let created = widgets
        .create(&PostParams::default(), &widget(3))
        .await
        .expect("create");
    assert_eq!(created.metadata.generation, Some(1));
    assert!(created.metadata.uid.is_some());
    let err = widgets
        .replace("w", &PostParams::default(), &widget(-1))
        .await
        .unwrap_err();
    match err {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 422);
            assert!(s.message.contains("spec.size"), "{}", s.message);
        }
        other => panic!("{other:?}"),
    }
    let listed = widgets.list(&ListParams::default()).await.expect("list");
    assert_eq!(listed.items.len(), 1);

    assert!(api
        .resources()
        .remove("example.rudder.dev", "v1alpha1", "widgets"));
    let err = widgets.get("w").await.unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 404),
        "{err:?}"
    );
    let groups: Vec<String> = kube::discovery::Discovery::new(client)
        .run()
        .await
        .expect("discovery")
        .groups()
        .map(|g| g.name().to_string())
        .collect();
    assert!(
        !groups.contains(&"example.rudder.dev".to_string()),
        "{groups:?}"
    );
}

/// Server-side apply as a controller does it with kube-rs: `Patch::Apply` with a field manager
/// creates, re-applies, conflicts with another manager (409 naming the field), and wins with
/// `force`; managedFields name the appliers.
async fn applies(client: kube::Client) {
    use k8s_openapi::api::apps::v1::Deployment;
    let deploys: Api<Deployment> = Api::namespaced(client, "default");
    let config = |replicas: i32, image: &str| {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "applied"},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": "a"}},
                "template": {"metadata": {"labels": {"app": "a"}},
                    "spec": {"containers": [{"name": "c", "image": image}]}}
            }
        })
    };
    let ctl = PatchParams::apply("controller");
    let created = deploys
        .patch("applied", &ctl, &Patch::Apply(config(2, "app:1")))
        .await
        .expect("create by apply");
    assert_eq!(created.spec.as_ref().and_then(|s| s.replicas), Some(2));
    let fields = created.metadata.managed_fields.expect("managedFields");
    assert_eq!(fields.len(), 1);
    assert_eq!(fields[0].manager.as_deref(), Some("controller"));
    assert_eq!(fields[0].operation.as_deref(), Some("Apply"));
    assert_eq!(fields[0].fields_type.as_deref(), Some("FieldsV1"));
    let other = PatchParams::apply("other");
    match deploys
        .patch("applied", &other, &Patch::Apply(config(3, "app:1")))
        .await
    {
        Err(kube::Error::Api(e)) => {
            assert_eq!((e.code, e.reason.as_str()), (409, "Conflict"));
            assert_eq!(
                e.message,
                "Apply failed with 1 conflict: conflict with \"controller\": .spec.replicas"
            );
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    let forced = deploys
        .patch("applied", &other.force(), &Patch::Apply(config(3, "app:1")))
        .await
        .expect("forced apply");
    assert_eq!(forced.spec.as_ref().and_then(|s| s.replicas), Some(3));
    let managers: Vec<_> = forced
        .metadata
        .managed_fields
        .expect("managedFields")
        .into_iter()
        .filter_map(|f| f.manager)
        .collect();
    assert_eq!(managers, ["controller", "other"]);
    // The container image stays shared; the controller re-applying its config now conflicts
    // with `other` on the replicas it lost.
    match deploys
        .patch("applied", &ctl, &Patch::Apply(config(2, "app:1")))
        .await
    {
        Err(kube::Error::Api(e)) => assert_eq!(e.code, 409),
        other => panic!("expected a conflict, got {other:?}"),
    }
    deploys
        .delete("applied", &DeleteParams::default())
        .await
        .expect("delete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_apply_in_process_and_over_https() {
    let dir = tempfile::tempdir().expect("temp dir");
    let api = start(dir.path()).await;
    applies(api.client(admin(), "default")).await;
    applies(https_client(&api).await).await;
}
