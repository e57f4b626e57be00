//! PATCH bodies: JSON patch (RFC 6902), JSON merge patch (RFC 7386) and strategic merge
//! patch, parsed once and applied in the registry's read-change-CAS loop.

use rudder_api::patch::strategic_merge;
use serde_json::Value;

use crate::error::ApiError;

/// A parsed patch body.
pub enum Patch {
    Json(json_patch::Patch),
    Merge(Value),
    Strategic(Value),
}

impl Patch {
    /// Parses a body of the given content type.
    pub fn parse(content_type: &str, body: &[u8]) -> Result<Patch, ApiError> {
        let parse = |what: &str| -> Result<Value, ApiError> {
            serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("error decoding the {what} patch: {e}")))
        };
        match content_type {
            "application/json-patch+json" => serde_json::from_value(parse("JSON")?)
                .map(Patch::Json)
                .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}"))),
            "application/merge-patch+json" => {
                let p = parse("merge")?;
                if !p.is_object() {
                    return Err(ApiError::bad_request("a merge patch must be a JSON object"));
                }
                Ok(Patch::Merge(p))
            }
            "application/strategic-merge-patch+json" => {
                Ok(Patch::Strategic(parse("strategic merge")?))
            }
            other => Err(ApiError::unsupported_media_type(other)),
        }
    }

    /// The patched copy of `doc`.
    pub fn apply_to(&self, doc: &Value) -> Result<Value, ApiError> {
        match self {
            Patch::Json(ops) => {
                let mut doc = doc.clone();
                json_patch::patch(&mut doc, ops).map_err(|e| {
                    ApiError::new(
                        422,
                        "Invalid",
                        format!("the JSON patch could not be applied: {e}"),
                    )
                })?;
                Ok(doc)
            }
            Patch::Merge(p) => {
                let mut doc = doc.clone();
                json_patch::merge(&mut doc, p);
                Ok(doc)
            }
            Patch::Strategic(p) => strategic_merge(doc, p).map_err(ApiError::bad_request),
        }
    }
}
