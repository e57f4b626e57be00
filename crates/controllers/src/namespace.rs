//! Namespace deletion (upstream's namespace controller): a namespace that the API server has
//! marked for deletion (deletionTimestamp, phase Terminating, `kubernetes` in spec.finalizers)
//! is emptied here, every namespaced resource the server serves (from discovery, so custom
//! resources too), and its status conditions say how that goes
//! (`NamespaceDeletionDiscoveryFailure`, `NamespaceDeletionGroupVersionParsingFailure`,
//! `NamespaceDeletionContentFailure`, `NamespaceContentRemaining`,
//! `NamespaceFinalizersRemaining`, with upstream's reasons and messages). Once nothing is left
//! the `kubernetes` finalizer is removed through `namespaces/NAME/finalize`, and the server
//! deletes the namespace.
//!
//! As upstream, work on a namespace starts a moment after it was marked (so that a client that
//! deletes a namespace and then, one by one, what was in it still finds its objects), and a
//! namespace whose content is not gone yet is looked at again shortly.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::{Future, StreamExt};
use k8s_openapi::api::core::v1::{Namespace, NamespaceCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PostParams};
use kube::discovery::{verbs, ApiResource, Scope};
use kube::runtime::controller::{Action, Controller};
use kube::ResourceExt;

use crate::informers::Informers;

/// The finalizer the API server puts on every namespace, removed here.
pub const FINALIZER: &str = "kubernetes";

/// How long after a namespace is marked its content starts going (upstream waits for its
/// HA API servers to see the deletion; here also for clients deleting content themselves).
const GRACE: Duration = Duration::from_secs(1);

/// How soon a namespace whose content is not all gone is looked at again.
const RECHECK: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Api(#[from] kube::Error),
}

struct Ctx {
    client: kube::Client,
}

/// Runs the controller until the task is dropped.
pub fn run(informers: &Informers) -> impl Future<Output = ()> + Send {
    let tracked = crate::metrics::Tracked::new("namespace");
    let client = informers.client().clone();
    let store = informers.store::<Namespace>();
    let stream = informers.subscribe::<Namespace>();
    async move {
        let ctx = Arc::new(Ctx { client });
        Controller::for_shared_stream(tracked.trigger(stream), store)
            .run(
                tracked.reconcile(reconcile),
                tracked.error_policy(error_policy),
                ctx,
            )
            .for_each(tracked.results())
            .await;
    }
}

fn error_policy(_ns: Arc<Namespace>, e: &Error, _ctx: Arc<Ctx>) -> Action {
    tracing::debug!(error = %e, "namespace deletion");
    Action::requeue(Duration::from_secs(2))
}

async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let Some(deleted_at) = ns.metadata.deletion_timestamp.as_ref() else {
        return Ok(Action::await_change());
    };
    let api: Api<Namespace> = Api::all(ctx.client.clone());
    let name = ns.name_any();
    let finalizers = spec_finalizers(&ns);
    if !finalizers.iter().any(|f| f == FINALIZER) {
        // Ours is done; if nothing else waits, the namespace goes (as upstream's deleter).
        if finalizers.is_empty() {
            match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
        return Ok(Action::await_change());
    }
    // Timestamps have whole seconds: wait until GRACE has surely passed.
    let elapsed = Timestamp::now().duration_since(deleted_at.0);
    let wait = (GRACE + Duration::from_secs(1)).as_secs_f64() - elapsed.as_secs_f64();
    if wait > 0.0 {
        return Ok(Action::requeue(Duration::from_secs_f64(wait)));
    }

    let mut report = Report::default();
    match crate::garbagecollector::discover(&ctx.client).await {
        Err(e) => report.discovery = Some(e.to_string()),
        Ok(found) => {
            for (ar, caps) in found {
                if caps.scope != Scope::Namespaced
                    || !caps.supports_operation(verbs::LIST)
                    || !caps.supports_operation(verbs::DELETE)
                {
                    continue;
                }
                empty(&ctx.client, &name, &ar, &mut report).await;
            }
        }
    }
    let conditions = report.conditions(ns.status.as_ref().and_then(|s| s.conditions.as_ref()));
    if let Some(conditions) = conditions {
        let patch = serde_json::json!({"status": {"conditions": conditions}});
        match api
            .patch_status(&name, &crate::patch_params(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => return Ok(Action::await_change()),
            Err(e) => return Err(e.into()),
        }
    }
    if !report.done() {
        return Ok(Action::requeue(RECHECK));
    }
    // Empty: remove our finalizer; the server deletes the namespace when none is left.
    let mut finalized = (*ns).clone();
    finalized.metadata.managed_fields = None;
    if let Some(spec) = finalized.spec.as_mut() {
        spec.finalizers = Some(finalizers.into_iter().filter(|f| f != FINALIZER).collect());
    }
    match api
        .replace_subresource("finalize", &name, &PostParams::default(), &finalized)
        .await
    {
        Ok(_) => {
            tracing::info!(namespace = %name, "namespace emptied and finalized");
            Ok(Action::await_change())
        }
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(Action::await_change()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(Action::requeue(RECHECK)),
        Err(e) => Err(e.into()),
    }
}

fn spec_finalizers(ns: &Namespace) -> Vec<String> {
    ns.spec
        .as_ref()
        .and_then(|s| s.finalizers.clone())
        .unwrap_or_default()
}

/// Deletes everything of one resource in the namespace and counts what is left.
async fn empty(client: &kube::Client, ns: &str, ar: &ApiResource, report: &mut Report) {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, ar);
    let gvr = gvr_name(ar);
    let list = match api.list_metadata(&ListParams::default()).await {
        Ok(l) => l,
        Err(e) => {
            report.errors.push(format!(
                "failed to list {gvr} in namespace {ns}: {}",
                message(&e)
            ));
            return;
        }
    };
    let mut left = 0;
    for item in &list.items {
        left += 1;
        if item.metadata.deletion_timestamp.is_some() {
            count_finalizers(item.metadata.finalizers.as_deref(), report);
            continue;
        }
        // Background: the garbage collector takes care of what each object owns.
        let dp = DeleteParams {
            propagation_policy: Some(kube::api::PropagationPolicy::Background),
            preconditions: item
                .metadata
                .uid
                .clone()
                .map(|uid| kube::api::Preconditions {
                    uid: Some(uid),
                    resource_version: None,
                }),
            ..DeleteParams::default()
        };
        match api.delete(&item.name_any(), &dp).await {
            Ok(either) => {
                if let Some(obj) = either.left() {
                    // Marked only (finalizers or a grace period): still there.
                    count_finalizers(obj.metadata.finalizers.as_deref(), report);
                } else {
                    left -= 1;
                }
            }
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => left -= 1,
            Err(e) => report.errors.push(format!(
                "failed to delete {gvr} {} in namespace {ns}: {}",
                item.name_any(),
                message(&e)
            )),
        }
    }
    if left > 0 {
        *report
            .remaining
            .entry(format!("{}.{}", ar.plural, ar.group))
            .or_default() += left;
    }
}

fn count_finalizers(finalizers: Option<&[String]>, report: &mut Report) {
    for f in finalizers.unwrap_or_default() {
        *report.finalizers.entry(f.clone()).or_default() += 1;
    }
}

fn gvr_name(ar: &ApiResource) -> String {
    format!("{}, Resource={}", ar.api_version, ar.plural)
}

fn message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        other => other.to_string(),
    }
}

/// What one pass over a namespace found, turned into its status conditions.
#[derive(Default, Debug)]
pub(crate) struct Report {
    pub discovery: Option<String>,
    pub errors: Vec<String>,
    /// `plural.group` → objects still there.
    pub remaining: BTreeMap<String, usize>,
    /// finalizer → objects that still carry it.
    pub finalizers: BTreeMap<String, usize>,
}

const TYPES: [(&str, &str, &str); 5] = [
    (
        "NamespaceDeletionDiscoveryFailure",
        "ResourcesDiscovered",
        "All resources successfully discovered",
    ),
    (
        "NamespaceDeletionGroupVersionParsingFailure",
        "ParsedGroupVersions",
        "All legacy kube types successfully parsed",
    ),
    (
        "NamespaceDeletionContentFailure",
        "ContentDeleted",
        "All content successfully deleted, may be waiting on finalization",
    ),
    (
        "NamespaceContentRemaining",
        "ContentRemoved",
        "All content successfully removed",
    ),
    (
        "NamespaceFinalizersRemaining",
        "ContentHasNoFinalizers",
        "All content-preserving finalizers finished",
    ),
];

impl Report {
    /// Nothing left and nothing failed: the namespace may be finalized.
    pub fn done(&self) -> bool {
        self.discovery.is_none() && self.errors.is_empty() && self.remaining.is_empty()
    }

    /// The failing conditions found: type → (reason, message).
    fn failures(&self) -> BTreeMap<&'static str, (&'static str, String)> {
        let mut out = BTreeMap::new();
        if let Some(e) = &self.discovery {
            out.insert(
                "NamespaceDeletionDiscoveryFailure",
                (
                    "DiscoveryFailed",
                    format!("Discovery failed for some groups, 1 failing: {e}"),
                ),
            );
        }
        if !self.errors.is_empty() {
            let mut msgs = self.errors.clone();
            msgs.sort();
            out.insert(
                "NamespaceDeletionContentFailure",
                (
                    "ContentDeletionFailed",
                    format!(
                        "Failed to delete all resource types, {} remaining: {}",
                        msgs.len(),
                        msgs.join(", ")
                    ),
                ),
            );
        }
        if !self.remaining.is_empty() {
            let parts: Vec<String> = self
                .remaining
                .iter()
                .map(|(r, n)| format!("{r} has {n} resource instances"))
                .collect();
            out.insert(
                "NamespaceContentRemaining",
                (
                    "SomeResourcesRemain",
                    format!("Some resources are remaining: {}", parts.join(", ")),
                ),
            );
        }
        if !self.finalizers.is_empty() {
            let parts: Vec<String> = self
                .finalizers
                .iter()
                .map(|(f, n)| format!("{f} in {n} resource instances"))
                .collect();
            out.insert(
                "NamespaceFinalizersRemaining",
                (
                    "SomeFinalizersRemain",
                    format!(
                        "Some content in the namespace has finalizers remaining: {}",
                        parts.join(", ")
                    ),
                ),
            );
        }
        out
    }

    /// The namespace's conditions after this pass, or `None` when they do not change
    /// (a condition's lastTransitionTime moves only when its status does).
    pub fn conditions(
        &self,
        old: Option<&Vec<NamespaceCondition>>,
    ) -> Option<Vec<NamespaceCondition>> {
        let failures = self.failures();
        let old = old.cloned().unwrap_or_default();
        let mut out: Vec<NamespaceCondition> = old
            .iter()
            .filter(|c| !TYPES.iter().any(|(t, _, _)| *t == c.type_))
            .cloned()
            .collect();
        let mut changed = false;
        for (type_, ok_reason, ok_message) in TYPES {
            let (status, reason, message) = match failures.get(type_) {
                Some((r, m)) => ("True", r.to_string(), m.clone()),
                None => ("False", ok_reason.to_string(), ok_message.to_string()),
            };
            let prior = old.iter().find(|c| c.type_ == type_);
            let time = match prior {
                Some(p) if p.status == status => p.last_transition_time.clone(),
                _ => Some(Time(Timestamp::now())),
            };
            if prior.is_none_or(|p| {
                p.status != status
                    || p.reason.as_deref() != Some(&reason)
                    || p.message.as_deref() != Some(&message)
            }) {
                changed = true;
            }
            out.push(NamespaceCondition {
                type_: type_.into(),
                status: status.into(),
                reason: Some(reason),
                message: Some(message),
                last_transition_time: time,
            });
        }
        changed.then_some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_namespace_has_every_condition_false_with_upstreams_words() {
        let r = Report::default();
        assert!(r.done());
        let c = r.conditions(None).expect("first conditions");
        let got: Vec<(&str, &str, &str)> = c
            .iter()
            .map(|c| {
                (
                    c.type_.as_str(),
                    c.status.as_str(),
                    c.reason.as_deref().unwrap_or(""),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "NamespaceDeletionDiscoveryFailure",
                    "False",
                    "ResourcesDiscovered"
                ),
                (
                    "NamespaceDeletionGroupVersionParsingFailure",
                    "False",
                    "ParsedGroupVersions"
                ),
                ("NamespaceDeletionContentFailure", "False", "ContentDeleted"),
                ("NamespaceContentRemaining", "False", "ContentRemoved"),
                (
                    "NamespaceFinalizersRemaining",
                    "False",
                    "ContentHasNoFinalizers"
                ),
            ]
        );
        // The same again changes nothing.
        assert!(r.conditions(Some(&c)).is_none());
    }

    #[test]
    fn remaining_content_and_finalizers_are_counted() {
        let mut r = Report::default();
        r.remaining.insert("pods.".into(), 2);
        r.remaining.insert("widgets.example.com".into(), 1);
        r.finalizers.insert("example.com/hold".into(), 1);
        assert!(!r.done());
        let c = r.conditions(None).unwrap();
        let remaining = c
            .iter()
            .find(|c| c.type_ == "NamespaceContentRemaining")
            .unwrap();
        assert_eq!(remaining.status, "True");
        assert_eq!(remaining.reason.as_deref(), Some("SomeResourcesRemain"));
        assert_eq!(
            remaining.message.as_deref(),
            Some("Some resources are remaining: pods. has 2 resource instances, widgets.example.com has 1 resource instances")
        );
        let fin = c
            .iter()
            .find(|c| c.type_ == "NamespaceFinalizersRemaining")
            .unwrap();
        assert_eq!(
            fin.message.as_deref(),
            Some("Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances")
        );
        // Status flips keep the other conditions' transition times.
        let later = Report::default().conditions(Some(&c)).unwrap();
        let discovery = |v: &[NamespaceCondition]| {
            v.iter()
                .find(|c| c.type_ == "NamespaceDeletionDiscoveryFailure")
                .and_then(|c| c.last_transition_time.clone())
        };
        assert_eq!(discovery(&later), discovery(&c));
    }

    #[test]
    fn failures_name_what_failed() {
        let r = Report {
            discovery: Some("boom".into()),
            errors: vec!["b failed".into(), "a failed".into()],
            ..Report::default()
        };
        assert!(!r.done());
        let f = r.failures();
        assert_eq!(
            f["NamespaceDeletionDiscoveryFailure"],
            (
                "DiscoveryFailed",
                "Discovery failed for some groups, 1 failing: boom".to_string()
            )
        );
        assert_eq!(
            f["NamespaceDeletionContentFailure"].1,
            "Failed to delete all resource types, 2 remaining: a failed, b failed"
        );
    }
}
