//! HTTP answers for `/openapi/v2`, `/openapi/v3` and `/openapi/v3/<api|apis/group>/<version>`,
//! as kube-openapi's handlers give them. The documents themselves are built (once, lazily) by
//! [`rudder_api::openapi`].
//!
//! - `/openapi/v2`: Accept negotiation between JSON and the gnostic protobuf (kubectl 1.27/1.28
//!   ask for `application/com.github.proto-openapi.spec.v2@v1.0+protobuf` only and need the
//!   response typed `application/com.github.proto-openapi.spec.v2.v1.0+protobuf`, without the
//!   `@`, which Go's mime parser rejects); 406 when neither is acceptable.
//! - `/openapi/v3`: the index, JSON whatever the Accept header says.
//! - `/openapi/v3/<key>`: JSON (kubectl always asks for it); a `?hash=` that is not the current
//!   one redirects (301) to the current URL, a matching one makes the answer cacheable for a
//!   year (the URL changes with the content); 404 for a group-version not served.
//! - Every document has a strong ETag (its SHA-512) and answers `If-None-Match` with 304.
//! - Documents are kept gzip-compressed: a client that accepts gzip (kubectl: Go's transport
//!   asks for it) gets them so (`Content-Encoding: gzip`, as upstream's response compression
//!   sends large answers), any other the plain bytes.
//!
//! Must not touch: routing, authentication and authorization (the caller decides who may read
//! these; upstream's ClusterRole `system:discovery` grants them to every authenticated user).

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use rudder_api::openapi::{self, Document};

const JSON: &str = "application/json";

/// The answer for a GET (or HEAD) of `path`, or `None` when `path` is not an OpenAPI path.
/// `query` is the raw query string without the `?`. The first call builds the documents (about
/// 0.1 s of CPU each for v3 and v2); [`openapi::prebuild`] on a blocking thread at start-up
/// avoids doing that inside a request.
pub fn serve(path: &str, headers: &HeaderMap, query: Option<&str>) -> Option<Response> {
    let path = path.strip_suffix('/').unwrap_or(path);
    if path == "/openapi/v2" {
        return Some(serve_v2(headers));
    }
    if path == "/openapi/v3" {
        return Some(document(&openapi::v3().index, JSON, headers, false));
    }
    let key = path.strip_prefix("/openapi/v3/")?;
    let Some(doc) = openapi::v3_document(key) else {
        return Some(plain(StatusCode::NOT_FOUND, "404 page not found\n"));
    };
    if !accepts(headers, &[("application", "json")]) {
        return Some(plain(StatusCode::NOT_ACCEPTABLE, "406 not acceptable\n"));
    }
    match query_param(query, "hash") {
        Some(hash) if hash != doc.hash => {
            let location = format!("/openapi/v3/{key}?hash={}", doc.hash);
            Some(
                Response::builder()
                    .status(StatusCode::MOVED_PERMANENTLY)
                    .header(header::LOCATION, location)
                    .header(header::VARY, "Accept")
                    .body(Body::empty())
                    .unwrap_or_default(),
            )
        }
        Some(_) => Some(document(doc, JSON, headers, true)),
        None => Some(document(doc, JSON, headers, false)),
    }
}

fn serve_v2(headers: &HeaderMap) -> Response {
    const PROTOBUF_SUBTYPES: [&str; 2] = [
        "com.github.proto-openapi.spec.v2@v1.0+protobuf",
        "com.github.proto-openapi.spec.v2.v1.0+protobuf",
    ];
    for (ty, subtype) in accept_clauses(headers) {
        let matches = |t: &str, s: &str| (ty == t || ty == "*") && (subtype == s || subtype == "*");
        if matches("application", "json") {
            return document(&openapi::v2().json, JSON, headers, false);
        }
        if PROTOBUF_SUBTYPES.iter().any(|s| matches("application", s)) {
            return document(
                &openapi::v2().protobuf,
                openapi::V2_PROTOBUF_CONTENT_TYPE,
                headers,
                false,
            );
        }
    }
    plain(StatusCode::NOT_ACCEPTABLE, "406 not acceptable\n")
}

/// 200 with the document, or 304 when the client already has it.
fn document(
    doc: &'static Document,
    content_type: &'static str,
    headers: &HeaderMap,
    immutable: bool,
) -> Response {
    let etag = doc.etag();
    let fresh = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == "*" || t == etag);
    let mut builder = Response::builder()
        .header(header::ETAG, etag)
        .header(header::VARY, "Accept, Accept-Encoding");
    if immutable {
        builder = builder.header(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, immutable, max-age=31536000"),
        );
    }
    let response = if fresh {
        builder.status(StatusCode::NOT_MODIFIED).body(Body::empty())
    } else {
        let builder = builder
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, content_type);
        if accepts_gzip(headers) {
            builder
                .header(header::CONTENT_ENCODING, "gzip")
                .body(Body::from(doc.gzip()))
        } else {
            builder.body(Body::from(doc.body()))
        }
    };
    response.unwrap_or_default()
}

fn plain(status: StatusCode, text: &'static str) -> Response {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Body::from(text))
        .unwrap_or_default()
}

/// The media ranges of the Accept header as `(type, subtype)`, best first (by `q`, then in the
/// order given); ranges with `q=0` are left out. No header means `*/*`.
fn accept_clauses(headers: &HeaderMap) -> Vec<(String, String)> {
    let raw: Vec<&str> = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let raw = if raw.is_empty() {
        "*/*".to_string()
    } else {
        raw.join(",")
    };
    let mut clauses: Vec<(f32, usize, String, String)> = Vec::new();
    for (i, part) in raw.split(',').enumerate() {
        let (range, q) = weighed(part);
        let Some((ty, subtype)) = range.split_once('/') else {
            continue;
        };
        if q > 0.0 {
            clauses.push((q, i, ty.to_string(), subtype.to_string()));
        }
    }
    clauses.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    clauses.into_iter().map(|(_, _, t, s)| (t, s)).collect()
}

/// One clause of an Accept or Accept-Encoding header (`gzip;q=0.5`): its value, lower-case,
/// and its quality (1 when not given).
fn weighed(clause: &str) -> (String, f32) {
    let mut pieces = clause.split(';');
    let value = pieces
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let q = pieces
        .filter_map(|p| p.trim().strip_prefix("q="))
        .find_map(|q| q.trim().parse::<f32>().ok())
        .unwrap_or(1.0);
    (value, q)
}

fn accepts(headers: &HeaderMap, offered: &[(&str, &str)]) -> bool {
    accept_clauses(headers).iter().any(|(t, s)| {
        offered
            .iter()
            .any(|(ot, os)| (t == ot || t == "*") && (s == os || s == "*"))
    })
}

/// Whether `Accept-Encoding` allows gzip: a `gzip` (or `x-gzip`) or `*` coding whose `q` is
/// not 0, unless gzip itself is given `q=0`.
fn accepts_gzip(headers: &HeaderMap) -> bool {
    let mut star = false;
    for coding in headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
    {
        let (name, q) = weighed(coding);
        match name.as_str() {
            "gzip" | "x-gzip" => return q > 0.0,
            "*" => star = q > 0.0,
            _ => {}
        }
    }
    star
}

fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == name).then_some(v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(k.clone(), HeaderValue::from_static(v));
        }
        h
    }

    fn content_type(r: &Response) -> &str {
        r.headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    #[test]
    fn other_paths_are_not_ours() {
        assert!(serve("/api/v1", &HeaderMap::new(), None).is_none());
        assert!(serve("/openapi", &HeaderMap::new(), None).is_none());
    }

    #[test]
    fn v2_negotiates_json_and_protobuf() {
        let pb = serve(
            "/openapi/v2",
            &headers(&[(header::ACCEPT, openapi::V2_PROTOBUF_ACCEPT)]),
            Some("timeout=32s"),
        )
        .unwrap();
        assert_eq!(pb.status(), StatusCode::OK);
        assert_eq!(content_type(&pb), openapi::V2_PROTOBUF_CONTENT_TYPE);
        let json = serve(
            "/openapi/v2",
            &headers(&[(header::ACCEPT, "application/json, */*")]),
            None,
        )
        .unwrap();
        assert_eq!(content_type(&json), "application/json");
        let none = serve("/openapi/v2", &HeaderMap::new(), None).unwrap();
        assert_eq!(content_type(&none), "application/json");
        let bad = serve(
            "/openapi/v2",
            &headers(&[(header::ACCEPT, "text/html")]),
            None,
        )
        .unwrap();
        assert_eq!(bad.status(), StatusCode::NOT_ACCEPTABLE);
    }

    #[test]
    fn documents_go_compressed_to_clients_that_take_gzip() {
        let doc = openapi::v3_document("api/v1").unwrap();
        let body = |r: Response| {
            let bytes =
                futures::executor::block_on(axum::body::to_bytes(r.into_body(), usize::MAX));
            bytes.unwrap().to_vec()
        };
        let encoding = |r: &Response| r.headers().get(header::CONTENT_ENCODING).cloned();
        for (accept_encoding, gzip) in [
            ("gzip", true),
            ("deflate, gzip;q=0.5", true),
            ("*", true),
            ("gzip;q=0, *", false),
            ("identity", false),
            ("br", false),
        ] {
            let h = headers(&[(header::ACCEPT_ENCODING, accept_encoding)]);
            let r = serve("/openapi/v3/api/v1", &h, None).unwrap();
            assert_eq!(r.status(), StatusCode::OK, "{accept_encoding}");
            assert_eq!(encoding(&r).is_some(), gzip, "{accept_encoding}");
            let got = body(r);
            let plain = match gzip {
                true => {
                    use std::io::Read as _;
                    let mut out = Vec::new();
                    flate2::read::GzDecoder::new(got.as_slice())
                        .read_to_end(&mut out)
                        .unwrap();
                    out
                }
                false => got,
            };
            assert_eq!(plain, doc.body(), "{accept_encoding}");
        }
        let none = serve("/openapi/v3/api/v1", &HeaderMap::new(), None).unwrap();
        assert!(encoding(&none).is_none());
        let value: serde_json::Value = serde_json::from_slice(&body(none)).unwrap();
        assert!(value["paths"].is_object());
    }

    #[test]
    fn v3_hash_redirects_caches_and_revalidates() {
        let doc = openapi::v3_document("apis/apps/v1").unwrap();
        let accept = headers(&[(header::ACCEPT, "application/json")]);
        let q = format!("hash={}&timeout=32s", doc.hash);
        let ok = serve("/openapi/v3/apis/apps/v1", &accept, Some(&q)).unwrap();
        assert_eq!(ok.status(), StatusCode::OK);
        assert_eq!(
            ok.headers()[header::CACHE_CONTROL],
            "public, immutable, max-age=31536000"
        );
        assert_eq!(ok.headers()[header::ETAG], doc.etag().as_str());
        let old = serve("/openapi/v3/apis/apps/v1", &accept, Some("hash=0000")).unwrap();
        assert_eq!(old.status(), StatusCode::MOVED_PERMANENTLY);
        assert_eq!(
            old.headers()[header::LOCATION],
            format!("/openapi/v3/apis/apps/v1?hash={}", doc.hash).as_str()
        );
        let mut cond = accept.clone();
        cond.insert(header::IF_NONE_MATCH, doc.etag().parse().unwrap());
        let not_modified = serve("/openapi/v3/apis/apps/v1", &cond, None).unwrap();
        assert_eq!(not_modified.status(), StatusCode::NOT_MODIFIED);
        let missing = serve("/openapi/v3/apis/nope/v1", &accept, None).unwrap();
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
        let index = serve("/openapi/v3", &headers(&[(header::ACCEPT, "*/*")]), None).unwrap();
        assert_eq!(index.status(), StatusCode::OK);
        assert_eq!(content_type(&index), "application/json");
    }
}
