//! Output negotiation for resource reads: which representation the `Accept` header asks for
//! (the object itself, a meta.k8s.io `Table`, or `PartialObjectMetadata[List]`), chosen as
//! upstream's `negotiation.NegotiateMediaTypeOptions` chooses it: the first clause (by `q`) whose
//! media type is served and whose `as`/`g`/`v` conversion the endpoint allows; none → 406.

use axum::http::{header, HeaderMap};
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::registry::Res;

/// What a read answers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    Object,
    Table,
    /// `PartialObjectMetadata` in meta.k8s.io of this version (`v1` or `v1beta1`).
    Partial(&'static str),
    /// `PartialObjectMetadataList` in meta.k8s.io of this version.
    PartialList(&'static str),
}

/// Media types the server encodes (upstream's list, in its order; the 406 message names them).
const SERVED: [(&str, &str); 3] = [
    ("application", "json"),
    ("application", "yaml"),
    ("application", "vnd.kubernetes.protobuf"),
];

/// One clause of an Accept header.
struct Clause<'a> {
    kind: &'a str,
    sub: &'a str,
    q: f64,
    params: Vec<(&'a str, &'a str)>,
}

fn parse(accept: &str) -> Vec<Clause<'_>> {
    let mut clauses: Vec<Clause> = accept
        .split(',')
        .filter_map(|c| {
            let mut parts = c.split(';');
            let media = parts.next()?.trim();
            let (kind, sub) = media.split_once('/').unwrap_or((media, "*"));
            let mut q = 1.0;
            let mut params = Vec::new();
            for p in parts {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                let (k, v) = (k.trim(), v.trim());
                if k == "q" {
                    q = v.parse().unwrap_or(1.0);
                } else if !k.is_empty() {
                    params.push((k, v));
                }
            }
            (!kind.is_empty()).then_some(Clause {
                kind: kind.trim(),
                sub: sub.trim(),
                q,
                params,
            })
        })
        .collect();
    // Highest q first; equal q keeps the header's order.
    clauses.sort_by(|a, b| b.q.partial_cmp(&a.q).unwrap_or(std::cmp::Ordering::Equal));
    clauses
}

/// The conversion a clause asks for on one served media type, or `None` if the endpoint does
/// not allow it (upstream's `acceptMediaTypeOptions` with a resource endpoint's restrictions).
fn options(clause: &Clause, served: (&str, &str), table: bool) -> Option<Output> {
    let (mut kind, mut group, mut version, mut convert) = ("", "", "", false);
    for (k, v) in &clause.params {
        match *k {
            "as" => (kind, convert) = (v, true),
            "g" => (group, convert) = (v, true),
            "v" => (version, convert) = (v, true),
            // Watch framing: JSON and protobuf stream, YAML does not.
            "stream" if !v.is_empty() && (*v != "watch" || served.1 == "yaml") => return None,
            _ => {}
        }
    }
    if !convert {
        return Some(Output::Object);
    }
    let version = match (group, version) {
        ("meta.k8s.io", "v1") => "v1",
        ("meta.k8s.io", "v1beta1") => "v1beta1",
        _ => return None,
    };
    match kind {
        "Table" if table && matches!(served.1, "json" | "yaml") => Some(Output::Table),
        "PartialObjectMetadata" => Some(Output::Partial(version)),
        "PartialObjectMetadataList" => Some(Output::PartialList(version)),
        _ => None,
    }
}

/// What the request's Accept header asks a resource read to answer with.
pub fn output(headers: &HeaderMap) -> Result<Output, ApiError> {
    output_for(headers, true)
}

/// The same for a streaming list (a watch with `sendInitialEvents` and bookmarks), which
/// upstream does not convert to a Table: such a clause is skipped, as one not served.
pub fn output_streaming_list(headers: &HeaderMap) -> Result<Output, ApiError> {
    output_for(headers, false)
}

fn output_for(headers: &HeaderMap, table: bool) -> Result<Output, ApiError> {
    let accept = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(",");
    if accept.trim().is_empty() {
        return Ok(Output::Object);
    }
    for clause in parse(&accept) {
        for served in SERVED {
            let matches = (clause.kind == served.0
                && (clause.sub == served.1 || clause.sub == "*"))
                || (clause.kind == "*" && clause.sub == "*");
            if let Some(out) = matches.then(|| options(&clause, served, table)).flatten() {
                return Ok(out);
            }
        }
    }
    let served: Vec<String> = SERVED.iter().map(|(t, s)| format!("{t}/{s}")).collect();
    Err(ApiError::not_acceptable(format!(
        "only the following media types are accepted: {}",
        served.join(", ")
    )))
}

/// The Go type upstream's message names for an object of `res` as its registry holds it
/// (the internal version: `*core.ConfigMap`, `*apps.Deployment`).
fn go_type(res: &Res, list: bool) -> String {
    let package = match res.group {
        "" | "events.k8s.io" => "core",
        g => g.split('.').next().unwrap_or(g),
    };
    let suffix = if list { "List" } else { "" };
    format!("*{package}.{}{suffix}", res.kind)
}

/// 406 for `as=PartialObjectMetadataList` on a single object.
pub fn not_a_list(res: &Res) -> ApiError {
    ApiError::not_acceptable(format!(
        "you requested PartialObjectMetadataList, but the requested object is not a list ({})",
        go_type(res, false)
    ))
}

/// 406 for `as=PartialObjectMetadata` on a list.
pub fn is_a_list(res: &Res) -> ApiError {
    ApiError::not_acceptable(format!(
        "you requested PartialObjectMetadata, but the requested object is a list ({})",
        go_type(res, true)
    ))
}

/// An object's `PartialObjectMetadata`: only its kind, apiVersion and metadata.
pub fn partial(obj: &Value, version: &str) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": format!("meta.k8s.io/{version}"),
        "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}

/// A list's `PartialObjectMetadataList`: its list metadata and each item's partial metadata.
pub fn partial_list(mut list: Value, version: &str) -> Value {
    let items: Vec<Value> = match list.get_mut("items").map(Value::take) {
        Some(Value::Array(items)) => items.iter().map(|i| partial(i, version)).collect(),
        _ => Vec::new(),
    };
    json!({
        "kind": "PartialObjectMetadataList",
        "apiVersion": format!("meta.k8s.io/{version}"),
        "metadata": list.get_mut("metadata").map(Value::take).unwrap_or_else(|| json!({})),
        "items": items,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn out(accept: &str) -> Result<Output, u16> {
        let mut h = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(accept) {
            h.insert(header::ACCEPT, v);
        }
        output(&h).map_err(|e| e.code)
    }

    #[test]
    fn picks_the_first_acceptable_clause() {
        assert_eq!(out(""), Ok(Output::Object));
        assert_eq!(out("application/json"), Ok(Output::Object));
        assert_eq!(out("*/*"), Ok(Output::Object));
        assert_eq!(
            out("application/json;as=Table;v=v1;g=meta.k8s.io,application/json"),
            Ok(Output::Table)
        );
        assert_eq!(
            out("application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"),
            Ok(Output::PartialList("v1"))
        );
        assert_eq!(
            out("application/json;as=PartialObjectMetadata;v=v1alpha1;g=meta.k8s.io, application/json"),
            Ok(Output::Object)
        );
        assert_eq!(
            out("application/json;as=PartialObjectMetadata;v=v1beta1;g=meta.k8s.io, application/json;as=PartialObjectMetadata;v=v1;g=meta.k8s.io"),
            Ok(Output::Partial("v1beta1"))
        );
        assert_eq!(
            out("application/json;q=0.5,application/json;as=Table;v=v1;g=meta.k8s.io"),
            Ok(Output::Table)
        );
    }

    #[test]
    fn nothing_acceptable_is_406() {
        assert_eq!(out("application/json;as=Foo;g=meta.k8s.io;v=v1"), Err(406));
        assert_eq!(
            out("application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1beta2"),
            Err(406)
        );
        assert_eq!(out("text/html"), Err(406));
        assert_eq!(
            out("application/vnd.kubernetes.protobuf;as=Table;v=v1;g=meta.k8s.io"),
            Err(406)
        );
    }
}
