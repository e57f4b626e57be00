//! ServiceAccounts (upstream's serviceaccounts controller): every namespace that is not being
//! deleted has a `default` ServiceAccount, made again when it is deleted.
//!
//! The API server also makes it when it creates a namespace (admission's namespace defaults),
//! so that a server run without controllers (`--disable-controller-manager`) still admits pods,
//! which need their ServiceAccount to exist; this controller is what brings it back after a
//! deletion, and what makes it in namespaces the server did not (a restore, a second server).

use std::sync::Arc;
use std::time::Duration;

use futures::{Future, StreamExt};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, ObjectMeta, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::ResourceExt;

use crate::informers::Informers;

/// The ServiceAccount every namespace has.
pub const DEFAULT: &str = "default";

struct Ctx {
    client: kube::Client,
    accounts: Store<ServiceAccount>,
}

/// Runs the controller until the task is dropped.
pub fn run(informers: &Informers) -> impl Future<Output = ()> + Send {
    let tracked = crate::metrics::Tracked::new("serviceaccount");
    let client = informers.client().clone();
    let namespaces = informers.store::<Namespace>();
    let controller = Controller::for_shared_stream(
        tracked.trigger(informers.subscribe::<Namespace>()),
        namespaces,
    )
    .watches_shared_stream(
        informers.subscribe::<ServiceAccount>(),
        tracked.mapper(|sa: Arc<ServiceAccount>| {
            (sa.name_any() == DEFAULT)
                .then(|| ObjectRef::<Namespace>::new(&sa.namespace().unwrap_or_default()))
        }),
    );
    let ctx = Arc::new(Ctx {
        client,
        accounts: informers.store::<ServiceAccount>(),
    });
    controller
        .run(
            tracked.reconcile(reconcile),
            tracked.error_policy(error_policy),
            ctx,
        )
        .for_each(tracked.results())
}

/// A namespace being deleted gets nothing new (upstream skips them too).
pub(crate) fn terminating(ns: &Namespace) -> bool {
    ns.metadata.deletion_timestamp.is_some()
        || ns.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Terminating")
}

async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Ctx>) -> Result<Action, kube::Error> {
    if terminating(&ns) {
        return Ok(Action::await_change());
    }
    if ctx.accounts.wait_until_ready().await.is_err() {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    let name = ns.name_any();
    if ctx
        .accounts
        .get(&ObjectRef::new(DEFAULT).within(&name))
        .is_some()
    {
        return Ok(Action::await_change());
    }
    let sa = ServiceAccount {
        metadata: ObjectMeta {
            name: Some(DEFAULT.into()),
            namespace: Some(name.clone()),
            ..Default::default()
        },
        ..Default::default()
    };
    let pp = PostParams {
        field_manager: Some(crate::MANAGER.into()),
        ..Default::default()
    };
    match Api::<ServiceAccount>::namespaced(ctx.client.clone(), &name)
        .create(&pp, &sa)
        .await
    {
        Ok(_) => {}
        // Made meanwhile (the cache is behind), or the namespace is going away.
        Err(kube::Error::Api(e)) if e.code == 409 || e.code == 403 || e.code == 404 => {}
        Err(e) => return Err(e),
    }
    Ok(Action::await_change())
}

fn error_policy(ns: Arc<Namespace>, error: &kube::Error, _ctx: Arc<Ctx>) -> Action {
    tracing::debug!(namespace = %ns.name_any(), %error, "service account");
    Action::requeue(Duration::from_secs(1))
}
