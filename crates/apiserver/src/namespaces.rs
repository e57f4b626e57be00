//! Namespace deletion, the API server's part (upstream's namespace REST): a DELETE marks the
//! namespace (deletionTimestamp, phase `Terminating`) and answers it. The namespace controller
//! (crates/controllers, `namespace.rs`) then deletes its content and removes the `kubernetes`
//! finalizer through the `finalize` subresource, which deletes the namespace once its
//! `spec.finalizers` and `metadata.finalizers` are empty. A DELETE of a namespace already
//! marked with nothing left to wait for deletes it at once.

use std::sync::Arc;

use serde_json::{json, Value};

use crate::error::ApiError;
use crate::hooks::Hooks;
use crate::registry::{DeleteOptions, Part, Registry, Write};

/// A namespace's DELETE marks it Terminating; its controller empties it.
pub struct Finalizer;

#[async_trait::async_trait]
impl Hooks for Finalizer {
    async fn delete(
        &self,
        registry: &Arc<Registry>,
        name: &str,
        opts: &DeleteOptions,
    ) -> Option<Result<Value, ApiError>> {
        delete(registry, name, opts).await
    }
}

/// Whether a namespace still waits for finalizers in its spec.
fn spec_finalized(ns: &Value) -> bool {
    ns.pointer("/spec/finalizers")
        .and_then(Value::as_array)
        .is_none_or(|f| f.is_empty())
}

/// DELETE of a namespace: admission (NamespaceLifecycle keeps the system namespaces), then
/// mark it Terminating; `None` when it is marked already and finalized (the registry's
/// generic delete removes it, honouring metadata finalizers).
async fn delete(
    registry: &Arc<Registry>,
    name: &str,
    opts: &DeleteOptions,
) -> Option<Result<Value, ApiError>> {
    let ns = match registry.resolve("", "v1", "namespaces") {
        Some(ns) => ns,
        None => {
            return Some(Err(ApiError::internal(
                "namespaces are not in the catalogue",
            )))
        }
    };
    let current = match registry.get(&ns.res, None, name).await {
        Ok(c) => c,
        Err(e) => return Some(Err(e)),
    };
    if let Some(uid) = &opts.precondition_uid {
        if current["metadata"]["uid"].as_str() != Some(uid.as_str()) {
            // The registry answers the precondition failure as upstream words it.
            return None;
        }
    }
    let marked = current["metadata"].get("deletionTimestamp").is_some();
    if marked && spec_finalized(&current) {
        return None;
    }
    if let Err(e) = registry
        .admit_delete(&ns.res, None, name, &current, opts.dry_run)
        .await
    {
        return Some(Err(e));
    }
    if opts.dry_run || marked {
        return Some(Ok(current));
    }
    let result = registry
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
        .await;
    registry.forget_namespace(name);
    Some(result)
}
