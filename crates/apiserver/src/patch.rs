//! PATCH bodies: JSON patch (RFC 6902), JSON merge patch (RFC 7386) and strategic merge
//! patch, parsed once and applied in the registry's read-change-CAS loop.
//!
//! What a patch may cost is bounded as upstream bounds it: at most [`MAX_JSON_PATCH_OPS`]
//! operations (413), and `copy` operations may add at most [`MAX_COPY_BYTES`] to the document,
//! checked before each copy is made (422, evanphx/json-patch's message), so 18 copies of a map
//! into itself stop at a few MiB instead of a gigabyte. Every patched document, whatever the
//! patch type, must stay under [`MAX_PATCHED_BYTES`] (413).

use rudder_api::patch::strategic_merge_typed;
use serde_json::Value;

use crate::error::ApiError;
use crate::handlers::MAX_BODY;

/// Most operations in one JSON patch (upstream's `maxJSONPatchOperations`).
pub const MAX_JSON_PATCH_OPS: usize = 10_000;

/// Most bytes of JSON the `copy` operations of one JSON patch may add (upstream's default
/// `JSONPatchMaxCopyBytes`, the body limit).
pub const MAX_COPY_BYTES: usize = MAX_BODY;

/// Largest patched document (as JSON bytes) any patch may produce.
pub const MAX_PATCHED_BYTES: usize = 4 * MAX_BODY;

/// The size of `v` encoded as JSON, counted until it exceeds `cap` (then some value above
/// `cap`), so that measuring costs at most what fits under the cap. Strings are counted
/// without escapes and numbers by their digits.
pub fn json_size(v: &Value, cap: usize) -> usize {
    let mut total = 0usize;
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        let own = match v {
            Value::Null => 4,
            Value::Bool(b) => 4 + usize::from(!b),
            Value::Number(n) => n.to_string().len(),
            Value::String(s) => s.len() + 2,
            Value::Array(a) => {
                stack.extend(a.iter());
                2 + a.len()
            }
            Value::Object(m) => {
                let mut keys = 2usize;
                for (k, v) in m {
                    keys = keys.saturating_add(k.len() + 4);
                    stack.push(v);
                }
                keys
            }
        };
        total = total.saturating_add(own);
        if total > cap {
            return total;
        }
    }
    total
}

fn check_patched(doc: &Value) -> Result<(), ApiError> {
    if json_size(doc, MAX_PATCHED_BYTES) > MAX_PATCHED_BYTES {
        return Err(ApiError::too_large(format!(
            "the patched object is larger than {MAX_PATCHED_BYTES} bytes"
        )));
    }
    Ok(())
}

/// Applies a JSON patch one operation at a time, charging what each `copy` adds before it is
/// made.
fn apply_json_patch(doc: &Value, ops: &json_patch::Patch) -> Result<Value, ApiError> {
    let mut doc = doc.clone();
    let mut copied = 0usize;
    for (i, op) in ops.0.iter().enumerate() {
        if let json_patch::PatchOperation::Copy(c) = op {
            if let Some(from) = doc.pointer(c.from.as_str()) {
                let left = MAX_COPY_BYTES - copied;
                copied = copied.saturating_add(json_size(from, left));
                if copied > MAX_COPY_BYTES {
                    return Err(ApiError::new(
                        422,
                        "Invalid",
                        format!(
                            "Unable to complete the copy, the accumulated size increase of copy is {copied}, exceeding the limit {MAX_COPY_BYTES}"
                        ),
                    ));
                }
            }
        }
        // The document is a copy thrown away on error, so no undo log is needed.
        json_patch::patch_unsafe(&mut doc, std::slice::from_ref(op)).map_err(|e| {
            ApiError::new(
                422,
                "Invalid",
                format!(
                    "the JSON patch could not be applied: operation '/{i}' failed at path '{}': {}",
                    e.path, e.kind
                ),
            )
        })?;
    }
    Ok(doc)
}

/// A parsed patch body.
pub enum Patch {
    Json(json_patch::Patch),
    Merge(Value),
    Strategic(Value),
    /// Server-side apply: the applied configuration (`application/apply-patch+yaml`, YAML or
    /// JSON), merged by the registry ([`crate::registry::Registry::apply`]).
    Apply(Value),
}

/// The content type of server-side apply.
pub const APPLY_PATCH: &str = "application/apply-patch+yaml";

impl Patch {
    /// Parses a body of the given content type.
    pub fn parse(content_type: &str, body: &[u8]) -> Result<Patch, ApiError> {
        Patch::parse_strict(content_type, body).map(|(p, _)| p)
    }

    /// Parses a body of the given content type, with the duplicate keys it has (the last one
    /// wins; upstream's strict decoding reports them).
    pub fn parse_strict(
        content_type: &str,
        body: &[u8],
    ) -> Result<(Patch, crate::decode::Duplicates), ApiError> {
        let mut dups = crate::decode::Duplicates::default();
        let mut parse = |what: &str| -> Result<Value, ApiError> {
            let (v, d) = crate::decode::json_strict(body).map_err(|e| {
                let text = format!("error decoding the {what} patch: {e}");
                if text.contains(crate::decode::TOO_LARGE) {
                    ApiError::too_large(text)
                } else {
                    ApiError::bad_request(text)
                }
            })?;
            dups = d;
            Ok(v)
        };
        let patch = match content_type {
            "application/json-patch+json" => {
                let ops: json_patch::Patch = serde_json::from_value(parse("JSON")?)
                    .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
                if ops.0.len() > MAX_JSON_PATCH_OPS {
                    return Err(ApiError::too_large(format!(
                        "The allowed maximum operations in a JSON patch is {MAX_JSON_PATCH_OPS}, got {}",
                        ops.0.len()
                    )));
                }
                Patch::Json(ops)
            }
            "application/merge-patch+json" => {
                let p = parse("merge")?;
                if !p.is_object() {
                    return Err(ApiError::bad_request("a merge patch must be a JSON object"));
                }
                Patch::Merge(p)
            }
            "application/strategic-merge-patch+json" => Patch::Strategic(parse("strategic merge")?),
            APPLY_PATCH => {
                let (v, d) = crate::decode::yaml_strict(body).map_err(|e| {
                    let text = format!("error decoding YAML: {e}");
                    if text.contains(crate::decode::TOO_LARGE) {
                        ApiError::too_large(text)
                    } else {
                        ApiError::bad_request(text)
                    }
                })?;
                dups = d;
                Patch::Apply(v)
            }
            other => return Err(ApiError::unsupported_media_type(other)),
        };
        Ok((patch, dups))
    }

    /// The patched copy of `doc`.
    pub fn apply_to(&self, doc: &Value) -> Result<Value, ApiError> {
        self.apply_to_typed(None, doc)
    }

    /// The patched copy of `doc`, an object of type `ty` (strategic merge patches then take
    /// their list rules from the schema).
    pub fn apply_to_typed(
        &self,
        ty: Option<rudder_api::schema::Type>,
        doc: &Value,
    ) -> Result<Value, ApiError> {
        let patched = match self {
            Patch::Json(ops) => apply_json_patch(doc, ops)?,
            Patch::Merge(p) => {
                let mut doc = doc.clone();
                json_patch::merge(&mut doc, p);
                doc
            }
            Patch::Strategic(p) => {
                strategic_merge_typed(ty, doc, p).map_err(ApiError::bad_request)?
            }
            // Applied by the registry where apply is served; elsewhere not a patch type.
            Patch::Apply(_) => return Err(ApiError::unsupported_media_type(APPLY_PATCH)),
        };
        check_patched(&patched)?;
        Ok(patched)
    }
}

#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn json_patch(ops: &Value) -> Patch {
        Patch::parse(
            "application/json-patch+json",
            &serde_json::to_vec(ops).unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn copies_that_grow_the_document_are_refused_before_they_are_made() {
        let doc = json!({"metadata": {"name": "x"}, "data": {"a": "x".repeat(1000)}});
        let ops: Vec<Value> = (0..18)
            .map(|i| json!({"op": "copy", "from": "/data", "path": format!("/data/b{i}")}))
            .collect();
        let e = json_patch(&Value::Array(ops)).apply_to(&doc).err().unwrap();
        assert_eq!(e.code, 422);
        assert!(
            e.message.contains("accumulated size increase of copy"),
            "{}",
            e.message
        );
        // Small copies still work, and errors name the failing operation.
        let ok = json_patch(&json!([
            {"op": "copy", "from": "/data/a", "path": "/data/c"},
            {"op": "test", "path": "/data/c", "value": "x".repeat(1000)},
        ]))
        .apply_to(&doc)
        .unwrap();
        assert_eq!(ok["data"]["c"], doc["data"]["a"]);
        let e = json_patch(&json!([
            {"op": "add", "path": "/data/d", "value": "1"},
            {"op": "remove", "path": "/nope"},
        ]))
        .apply_to(&doc)
        .err()
        .unwrap();
        assert!(e.message.contains("operation '/1'"), "{}", e.message);
    }

    #[test]
    fn too_many_operations_are_refused() {
        let ops: Vec<Value> = (0..=MAX_JSON_PATCH_OPS)
            .map(|_| json!({"op": "test", "path": "/a", "value": 1}))
            .collect();
        let body = serde_json::to_vec(&ops).unwrap();
        let e = Patch::parse("application/json-patch+json", &body)
            .err()
            .unwrap();
        assert_eq!(e.code, 413);
        assert_eq!(
            e.message,
            "The allowed maximum operations in a JSON patch is 10000, got 10001"
        );
    }

    #[test]
    fn patched_documents_are_bounded() {
        let big = json!({"data": {"a": "x".repeat(MAX_PATCHED_BYTES)}});
        let p = Patch::parse("application/merge-patch+json", br#"{"data":{"b":"1"}}"#).unwrap();
        assert_eq!(p.apply_to(&big).err().unwrap().code, 413);
        assert!(json_size(&big, 10) > 10);
        assert_eq!(json_size(&json!({"a": [1, "b", null]}), usize::MAX), 20);
    }
}
