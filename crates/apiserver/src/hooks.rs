//! Hooks: what a kind does around the registry's generic writes when that needs the store or
//! the server's state (a Service's addresses, a Namespace's contents). A catalogue row carries
//! its kind's hooks beside its strategy; the registry calls them and knows no kind by name.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use crate::error::ApiError;
use crate::registry::{DeleteOptions, Registry};

#[async_trait]
pub trait Hooks: Send + Sync {
    /// Before `new` is written (`old`: the stored object on update): completes it with what
    /// the kind allocates. Under dry run nothing may be kept.
    async fn before_write(
        &self,
        _new: &mut Value,
        _old: Option<&Value>,
        _dry_run: bool,
    ) -> Result<(), ApiError> {
        Ok(())
    }

    /// After a write that `before_write` prepared was tried (never under dry run); `written`
    /// says whether the store took it.
    async fn after_write(&self, _old: Option<&Value>, _new: &Value, _written: bool) {}

    /// After `old` left the store.
    async fn after_delete(&self, _old: &Value) {}

    /// A DELETE of the kind's own instead of the registry's, answering the object as it is
    /// afterwards; `None` lets the registry delete.
    async fn delete(
        &self,
        _registry: &Arc<Registry>,
        _name: &str,
        _opts: &DeleteOptions,
    ) -> Option<Result<Value, ApiError>> {
        None
    }
}

impl std::fmt::Debug for dyn Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hooks")
    }
}
