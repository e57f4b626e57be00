//! PATCH: JSON patch (RFC 6902), JSON merge patch (RFC 7386) and strategic merge patch, applied
//! through the registry's read-change-CAS loop.

use rudder_api::patch::strategic_merge;
use serde_json::Value;

use crate::error::ApiError;
use crate::registry::{Part, Registry, Res};

#[allow(clippy::too_many_arguments)]
pub async fn apply(
    registry: &Registry,
    res: &Res,
    ns: Option<&str>,
    name: &str,
    part: Part,
    dry_run: bool,
    content_type: &str,
    body: &[u8],
) -> Result<Value, ApiError> {
    let parse = |what: &str| -> Result<Value, ApiError> {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding the {what} patch: {e}")))
    };
    match content_type {
        "application/json-patch+json" => {
            let ops: json_patch::Patch = serde_json::from_value(parse("JSON")?)
                .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
            registry
                .patch(res, ns, name, part, dry_run, |old| {
                    let mut doc = old.clone();
                    json_patch::patch(&mut doc, &ops).map_err(|e| {
                        ApiError::new(
                            422,
                            "Invalid",
                            format!("the JSON patch could not be applied: {e}"),
                        )
                    })?;
                    Ok(doc)
                })
                .await
        }
        "application/merge-patch+json" => {
            let p = parse("merge")?;
            if !p.is_object() {
                return Err(ApiError::bad_request("a merge patch must be a JSON object"));
            }
            registry
                .patch(res, ns, name, part, dry_run, |old| {
                    let mut doc = old.clone();
                    json_patch::merge(&mut doc, &p);
                    Ok(doc)
                })
                .await
        }
        "application/strategic-merge-patch+json" => {
            let p = parse("strategic merge")?;
            registry
                .patch(res, ns, name, part, dry_run, |old| {
                    strategic_merge(old, &p).map_err(ApiError::bad_request)
                })
                .await
        }
        other => Err(ApiError::unsupported_media_type(other)),
    }
}
