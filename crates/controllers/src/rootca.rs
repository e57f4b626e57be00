//! The root CA publisher (upstream's root-ca-cert-publisher): every namespace that is not being
//! deleted has the ConfigMap `kube-root-ca.crt` whose `ca.crt` is the cluster CA, so that pods
//! can check the API server they reach through `kubernetes.default.svc`. A ConfigMap changed or
//! deleted by someone else is put back.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::{Future, StreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, ObjectMeta, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::ResourceExt;

use crate::informers::Informers;

pub const NAME: &str = "kube-root-ca.crt";
pub const KEY: &str = "ca.crt";
/// The publisher's own ConfigMaps, the only ones it caches: there may be many others.
const SELECTED: &str = "metadata.name=kube-root-ca.crt";
pub const DESCRIPTION_ANNOTATION: &str = "kubernetes.io/description";
pub const DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver \
    when using internal endpoints such as the internal service IP or kubernetes.default.svc. \
    No other usage is guaranteed across distributions of Kubernetes clusters.";

struct Ctx {
    client: kube::Client,
    maps: Store<ConfigMap>,
    ca: String,
}

/// Runs the publisher until the task is dropped; `ca_pem` is the cluster CA.
pub fn run(informers: &Informers, ca_pem: String) -> impl Future<Output = ()> + Send {
    let tracked = crate::metrics::Tracked::new("root_ca_cert_publisher");
    let client = informers.client().clone();
    let namespaces = informers.store::<Namespace>();
    let controller = Controller::for_shared_stream(
        tracked.trigger(informers.subscribe::<Namespace>()),
        namespaces,
    )
    .watches_shared_stream(
        informers.subscribe_selected::<ConfigMap>(SELECTED),
        tracked.mapper(|cm: Arc<ConfigMap>| {
            Some(ObjectRef::<Namespace>::new(
                &cm.namespace().unwrap_or_default(),
            ))
        }),
    );
    let ctx = Arc::new(Ctx {
        client,
        maps: informers.store_selected::<ConfigMap>(SELECTED),
        ca: ca_pem,
    });
    controller
        .run(
            tracked.reconcile(reconcile),
            tracked.error_policy(error_policy),
            ctx,
        )
        .for_each(tracked.results())
}

async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Ctx>) -> Result<Action, kube::Error> {
    if ctx.ca.is_empty() || crate::serviceaccount::terminating(&ns) {
        return Ok(Action::await_change());
    }
    if ctx.maps.wait_until_ready().await.is_err() {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    let name = ns.name_any();
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &name);
    let pp = PostParams {
        field_manager: Some(crate::MANAGER.into()),
        ..Default::default()
    };
    let data = BTreeMap::from([(KEY.to_string(), ctx.ca.clone())]);
    let result = match ctx.maps.get(&ObjectRef::new(NAME).within(&name)) {
        None => {
            let cm = ConfigMap {
                metadata: ObjectMeta {
                    name: Some(NAME.into()),
                    namespace: Some(name.clone()),
                    annotations: Some(BTreeMap::from([(
                        DESCRIPTION_ANNOTATION.to_string(),
                        DESCRIPTION.to_string(),
                    )])),
                    ..Default::default()
                },
                data: Some(data),
                ..Default::default()
            };
            api.create(&pp, &cm).await.map(|_| ())
        }
        Some(cm) => {
            let described = cm
                .annotations()
                .get(DESCRIPTION_ANNOTATION)
                .map(String::as_str)
                == Some(DESCRIPTION);
            if cm.data.as_ref() == Some(&data) && described {
                return Ok(Action::await_change());
            }
            // Only the data and the description are ours; the rest stays as it is. The
            // resourceVersion read makes it a compare-and-swap.
            let mut new = (*cm).clone();
            new.metadata.managed_fields = None;
            new.data = Some(data);
            new.binary_data = None;
            new.metadata
                .annotations
                .get_or_insert_with(Default::default)
                .insert(DESCRIPTION_ANNOTATION.into(), DESCRIPTION.into());
            api.replace(NAME, &pp, &new).await.map(|_| ())
        }
    };
    match result {
        Ok(()) => Ok(Action::await_change()),
        // Made meanwhile, or the namespace is going away: the next change looks again.
        Err(kube::Error::Api(e)) if e.code == 403 || e.code == 404 => Ok(Action::await_change()),
        Err(e) => Err(e),
    }
}

fn error_policy(ns: Arc<Namespace>, error: &kube::Error, _ctx: Arc<Ctx>) -> Action {
    tracing::debug!(namespace = %ns.name_any(), %error, "root CA publisher");
    Action::requeue(Duration::from_secs(1))
}
