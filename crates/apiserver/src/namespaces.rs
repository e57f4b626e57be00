//! Namespace deletion: a deleted namespace turns `Terminating` at once and is removed when
//! everything in it is gone, as upstream's namespace controller does. This runs inside the API
//! server until the controllers crate exists.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::error::ApiError;
use crate::hooks::Hooks;
use crate::registry::{DeleteOptions, Deleted, ListOptions, Part, Registry, Write};
use crate::resources::Served;

fn namespaces(registry: &Registry) -> Result<Served, ApiError> {
    registry
        .resolve("", "v1", "namespaces")
        .ok_or_else(|| ApiError::internal("namespaces are not in the catalogue"))
}

/// Every stored namespaced resource served now, once per storage.
fn namespaced_storages(registry: &Registry) -> Vec<Served> {
    let mut seen = HashSet::new();
    registry
        .resources()
        .snapshot()
        .served
        .iter()
        .filter(|s| s.res.namespaced && seen.insert(s.res.prefix.clone()))
        .cloned()
        .collect()
}

/// A namespace's DELETE marks it Terminating and empties it before it goes.
pub struct Finalizer;

#[async_trait::async_trait]
impl Hooks for Finalizer {
    async fn delete(
        &self,
        registry: &Arc<Registry>,
        name: &str,
        opts: &DeleteOptions,
    ) -> Option<Result<Value, ApiError>> {
        Some(delete(registry, name, opts).await)
    }
}

/// How long after a namespace is marked for deletion its content starts going.
const EMPTYING_DELAY: Duration = Duration::from_secs(1);

/// DELETE of a namespace: admission (NamespaceLifecycle keeps the system namespaces), then
/// mark it Terminating and start emptying it.
async fn delete(
    registry: &Arc<Registry>,
    name: &str,
    opts: &DeleteOptions,
) -> Result<Value, ApiError> {
    let ns = namespaces(registry)?;
    let current = registry.get(&ns.res, None, name).await?;
    registry
        .admit_delete(&ns.res, None, name, &current, opts.dry_run)
        .await?;
    if opts.dry_run {
        return Ok(current);
    }
    let marked = registry
        .patch(&ns.res, None, name, Part::All, &Write::server(), |old| {
            let mut new = old.clone();
            if new["metadata"].get("deletionTimestamp").is_none() {
                rudder_api::value::set(
                    &mut new,
                    &["metadata", "deletionTimestamp"],
                    json!(crate::registry::now_rfc3339()),
                );
                rudder_api::value::set(
                    &mut new,
                    &["metadata", "deletionGracePeriodSeconds"],
                    json!(0),
                );
            }
            rudder_api::value::set(&mut new, &["status", "phase"], json!("Terminating"));
            Ok(new)
        })
        .await?;
    registry.forget_namespace(name);
    let registry = registry.clone();
    let name = name.to_string();
    tokio::spawn(async move {
        if let Err(e) = empty_and_remove(&registry, &name).await {
            tracing::warn!(namespace = %name, error = %e, "namespace deletion did not finish");
        }
    });
    Ok(marked)
}

async fn empty_and_remove(registry: &Registry, name: &str) -> Result<(), ApiError> {
    // Upstream's namespace controller starts a moment later; clients rely on that when they
    // delete a namespace and then, one by one, what was in it (`kubectl delete -f` of a
    // manifest that begins with its Namespace).
    tokio::time::sleep(EMPTYING_DELAY).await;
    let storages = namespaced_storages(registry);
    loop {
        let mut left = 0;
        for s in &storages {
            let list = registry
                .list(&s.res, Some(name), &ListOptions::default())
                .await?;
            for item in list["items"].as_array().into_iter().flatten() {
                left += 1;
                let Some(obj) = item["metadata"]["name"].as_str() else {
                    continue;
                };
                let opts = DeleteOptions {
                    propagation_policy: Some("Background".into()),
                    ..DeleteOptions::default()
                };
                match registry.delete(&s.res, Some(name), obj, &opts).await {
                    Ok(Deleted::Now(_)) | Ok(Deleted::Pending(_)) => {}
                    Err(e) if e.code == 404 => {}
                    Err(e) => return Err(e),
                }
            }
        }
        if left == 0 {
            break;
        }
        // Objects with finalizers go when their owners remove them.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let ns = namespaces(registry)?;
    match registry
        .delete(&ns.res, None, name, &DeleteOptions::default())
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if e.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}
