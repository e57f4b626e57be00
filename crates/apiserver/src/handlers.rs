//! HTTP: authentication, routing of `/api` and `/apis` paths to the generic registry, request
//! decoding and response encoding (JSON, Table, watch streams).

use std::sync::Arc;
use std::time::Duration;

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use rudder_api::catalogue::{self, ResourceType, Verb};
use rudder_api::selector::Selectors;
use rudder_api::validation::FieldError;
use serde_json::{json, Value};

use crate::authz::RequestInfo;
use crate::decode::Duplicates;
use crate::error::ApiError;
use crate::limits::{self, ConnSlot, Inflight};
use crate::negotiate::Output;
use crate::patch::Patch;
use crate::pki::{NodeToken, User};
use crate::registry::{
    DeleteOptions, Deleted, ListOptions, Part, Registry, Res, WatchEvent, Write,
};
use crate::resources::{self, Served};
use crate::table::{self, IncludeObject};

/// Largest request body accepted (upstream's 3 MiB).
pub const MAX_BODY: usize = 3 * 1024 * 1024;

/// Who a connection's client certificate says the client is (set per TLS connection).
#[derive(Clone, Default)]
pub struct ConnUser(pub Option<User>);

pub struct AppState {
    pub registry: Arc<Registry>,
    pub authorizer: crate::authz::Union,
    pub token: NodeToken,
    /// Node passwords and certificates.
    pub join: Arc<crate::join::Join>,
    /// The cluster CA bundle, served at `/cacerts` for agents to check against their token.
    pub ca_pem: String,
    pub version: Value,
    pub server_address: String,
    /// Time a client has to send a request body.
    pub body_timeout: Duration,
    pub inflight: Inflight,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The client for node agents (logs, exec, port-forward).
    pub kubelets: crate::kubelet::Kubelets,
}

pub(crate) type Query = Vec<(String, String)>;

fn query(req: &Request) -> Query {
    req.uri()
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

pub(crate) fn param<'a>(q: &'a Query, name: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// A boolean query parameter as upstream decodes it (apimachinery's
/// `Convert_Slice_string_To_bool`): absent, `false` (any case) and `0` are false; every other
/// value, the empty one included, is true — so `watch=True` (Python's spelling) watches.
pub(crate) fn flag(q: &Query, name: &str) -> bool {
    match param(q, name) {
        None => false,
        Some(v) => !(v.eq_ignore_ascii_case("false") || v == "0"),
    }
}

/// A JSON body as upstream's serializer writes it (Go's escaping, trailing newline).
pub(crate) fn json_response(code: StatusCode, v: &Value) -> Response {
    let body = crate::error::go_json(v);
    (code, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Paths anyone may read: health, version, and the CA bundle (public, and what a joining agent
/// checks against the hash its token carries, as k3s's `/cacerts`).
fn is_public(path: &str) -> bool {
    matches!(
        path,
        "/healthz" | "/livez" | "/readyz" | "/version" | "/cacerts"
    ) || path.starts_with("/healthz/")
        || path.starts_with("/livez/")
        || path.starts_with("/readyz/")
}

/// Who the request is from: the connection's client certificate, the node token, or a node
/// password. The node token as a bearer token is a bootstrap identity (it may discover, review
/// itself and join nodes, see [`crate::join`]); HTTP basic authentication with a node's name
/// and the password it joined with is that node (`system:node:NAME`), held to what the Node
/// authorizer and NodeRestriction allow.
async fn authenticate(st: &AppState, conn: &ConnUser, headers: &HeaderMap) -> Option<User> {
    let authenticated = |mut u: User| {
        // Every authenticated user is also in system:authenticated, as upstream.
        if !u.groups.iter().any(|g| g == "system:authenticated") {
            u.groups.push("system:authenticated".into());
        }
        u
    };
    if let Some(u) = &conn.0 {
        return Some(authenticated(u.clone()));
    }
    let auth = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    if let Some(token) = auth.strip_prefix("Bearer ") {
        return st.token.matches_bearer(token.trim()).then(|| User {
            name: "system:bootstrap:node-token".into(),
            groups: vec![
                crate::join::BOOTSTRAPPERS.into(),
                "system:authenticated".into(),
            ],
            uid: None,
        });
    }
    let basic = auth.strip_prefix("Basic ")?;
    use base64::Engine as _;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(basic.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (name, password) = decoded.split_once(':')?;
    let node = Some(name)
        .filter(|n| !n.is_empty() && rudder_api::validation::dns1123_subdomain(n).is_empty())?;
    st.join
        .password_matches(&st.registry, node, password)
        .await
        .then(|| {
            authenticated(User {
                name: format!("system:node:{node}"),
                groups: vec![crate::authz::NODES.into()],
                uid: None,
            })
        })
}

/// `kubectl --as`: the `Impersonate-*` headers make the request act as another user; only
/// `system:masters` may, as nothing else grants the `impersonate` verb yet.
fn impersonate(user: User, headers: &HeaderMap) -> Result<User, ApiError> {
    let values = |name: &str| -> Vec<String> {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_string)
            .collect()
    };
    let as_user = values("impersonate-user");
    let groups = values("impersonate-group");
    let uid = values("impersonate-uid");
    if as_user.is_empty() {
        if !groups.is_empty() || !uid.is_empty() {
            return Err(ApiError::bad_request(
                "requested impersonation of groups or a uid without impersonating a user",
            ));
        }
        return Ok(user);
    }
    if !user.groups.iter().any(|g| g == crate::authz::MASTERS) {
        let name = as_user.first().cloned().unwrap_or_default();
        let info = crate::authz::RequestInfo {
            is_resource: true,
            verb: "impersonate".into(),
            resource: "users".into(),
            name,
            ..Default::default()
        };
        return Err(info.forbidden(&user.name, ""));
    }
    let name = as_user.into_iter().next().unwrap_or_default();
    let mut groups = groups;
    if name != "system:anonymous" && !groups.iter().any(|g| g == "system:authenticated") {
        groups.push("system:authenticated".into());
    }
    Ok(User {
        name,
        groups,
        uid: uid.into_iter().next(),
    })
}

/// The request path with its percent-escapes decoded, as Go's `net/http` gives handlers
/// `URL.Path` (so `a%2Db` names `a-b`, and `%2F` separates segments like `/`); None when an
/// escape is malformed (`%zz`, a lone `%`), which Go's server refuses before any handler.
/// Bytes that are not UTF-8 once decoded become U+FFFD, which no name accepts.
pub(crate) fn decode_path(raw: &str) -> Option<String> {
    if !raw.contains('%') {
        return Some(raw.to_string());
    }
    let b = raw.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            if !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
                return None;
            }
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// Go's answer to a request line it cannot parse (a malformed escape in the path).
fn malformed_request() -> Response {
    (
        StatusCode::BAD_REQUEST,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CONNECTION, "close"),
        ],
        "400 Bad Request",
    )
        .into_response()
}

pub async fn handle(State(st): State<Arc<AppState>>, req: Request) -> Response {
    let Some(path) = decode_path(req.uri().path()) else {
        return malformed_request();
    };
    if is_public(&path) {
        return public(&st, &path);
    }
    let conn = req
        .extensions()
        .get::<ConnUser>()
        .cloned()
        .unwrap_or_default();
    let Some(user) = authenticate(&st, &conn, req.headers()).await else {
        return ApiError::unauthorized().into_response();
    };
    let user = match impersonate(user, req.headers()) {
        Ok(u) => u,
        Err(e) => return e.into_response(),
    };
    // An authenticated connection is no longer one a flood of sockets may push out.
    if let Some(slot) = req.extensions().get::<ConnSlot>() {
        slot.authenticated();
    }
    let started = std::time::Instant::now();
    let q = query(&req);
    let kind = limits::classify(req.method(), &path, flag(&q, "watch"));
    let info = RequestInfo::parse(req.method().as_str(), &path, &q);
    let labels = crate::metrics::request_labels(&info, req.method(), req.headers(), &q);
    let permit = match st
        .inflight
        .admit(kind, limits::is_heartbeat(&info), &user.groups)
        .await
    {
        Ok(p) => p,
        Err(e) => {
            // Upstream counts the requests it drops.
            if let Some(l) = &labels {
                st.metrics.observe(l, e.code, started.elapsed());
            }
            return e.into_response();
        }
    };
    let inflight = st.metrics.inflight(kind);
    // Joining decides who may join itself (the bootstrap identity only).
    if path == crate::join::PATH {
        let response = st
            .join
            .handle(&st.registry, &user, st.body_timeout, req)
            .await;
        return response.unwrap_or_else(ApiError::into_response);
    }
    if let Err(e) = st.authorizer.check(&user, &info).await {
        return e.into_response();
    }
    if path == "/metrics" && matches!(*req.method(), Method::GET | Method::HEAD) {
        return st.metrics.response();
    }
    let response = match route(&st, &user, &path, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    let code = response.status().as_u16();
    match labels {
        // A watch or stream is counted when it ends, and open until then.
        Some(l) if kind == limits::RequestKind::LongRunning => {
            let open = st.metrics.long_running(l, code, started);
            return limits::guard_response(response, open);
        }
        Some(l) => st.metrics.observe(&l, code, started.elapsed()),
        None => {}
    }
    match (permit, inflight) {
        // In flight until the response is handed to the connection, as upstream's handler
        // holds its place while it writes.
        (None, None) => response,
        held => limits::guard_response(response, held),
    }
}

fn public(st: &AppState, path: &str) -> Response {
    if path == "/version" {
        return json_response(StatusCode::OK, &st.version);
    }
    if path == "/cacerts" {
        return (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            st.ca_pem.clone(),
        )
            .into_response();
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "ok",
    )
        .into_response()
}

/// What a path names.
enum Target<'a> {
    /// A resource that is answered, never stored: access and identity reviews (created),
    /// metrics (read).
    Unstored {
        rt: &'static ResourceType,
        ns: Option<&'a str>,
        name: Option<&'a str>,
    },
    Collection {
        served: Served,
        ns: Option<&'a str>,
    },
    Item {
        served: Served,
        ns: Option<&'a str>,
        name: &'a str,
        sub: Option<&'a str>,
    },
}

fn parse_target<'a>(registry: &Registry, path: &'a str) -> Result<Option<Target<'a>>, ApiError> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api", v, rest @ ..] if !rest.is_empty() => ("", *v, rest),
        ["apis", g, v, rest @ ..] if !rest.is_empty() => (*g, *v, rest),
        _ => return Ok(None),
    };
    let find = |plural: &str| registry.resolve(group, version, plural);
    let unstored = |plural: &str, ns: Option<&'a str>, tail: &[&'a str]| {
        let rt = catalogue::lookup(group, version, plural).filter(|rt| rt.storage.is_none())?;
        match tail {
            [] | [_] if rt.namespaced() == ns.is_some() => Some(Target::Unstored {
                rt,
                ns,
                name: tail.first().copied(),
            }),
            _ => None,
        }
    };
    let t = match rest {
        ["namespaces", ns, plural, tail @ ..] if find(plural).is_some() => {
            let served = find(plural).ok_or_else(ApiError::no_route)?;
            if !served.res.namespaced {
                return Err(ApiError::no_route());
            }
            match tail {
                [] => Target::Collection {
                    served,
                    ns: Some(ns),
                },
                [name] => Target::Item {
                    served,
                    ns: Some(ns),
                    name,
                    sub: None,
                },
                [name, sub] => Target::Item {
                    served,
                    ns: Some(ns),
                    name,
                    sub: Some(sub),
                },
                _ => return Err(ApiError::no_route()),
            }
        }
        // A namespace's own subresources (not a resource named `status` in namespace NAME).
        ["namespaces", name, sub @ ("status" | "finalize")] if find(sub).is_none() => {
            Target::Item {
                served: find("namespaces").ok_or_else(ApiError::no_route)?,
                ns: None,
                name,
                sub: Some(sub),
            }
        }
        ["namespaces", ns, plural, tail @ ..] if find(plural).is_none() => {
            unstored(plural, Some(ns), tail).ok_or_else(ApiError::no_route)?
        }
        [plural, tail @ ..] if find(plural).is_none() => {
            unstored(plural, None, tail).ok_or_else(ApiError::no_route)?
        }
        [plural, tail @ ..] => {
            let served = find(plural).ok_or_else(ApiError::no_route)?;
            match tail {
                [] => Target::Collection { served, ns: None },
                [name] if !served.res.namespaced => Target::Item {
                    served,
                    ns: None,
                    name,
                    sub: None,
                },
                [name, sub] if !served.res.namespaced => Target::Item {
                    served,
                    ns: None,
                    name,
                    sub: Some(sub),
                },
                _ => return Err(ApiError::no_route()),
            }
        }
        _ => return Err(ApiError::no_route()),
    };
    Ok(Some(t))
}

async fn read_body(st: &AppState, req: Request) -> Result<(HeaderMap, Bytes), ApiError> {
    read_bounded(req, MAX_BODY, st.body_timeout).await
}

/// A request's headers and body of at most `max` bytes, read within `timeout`.
pub(crate) async fn read_bounded(
    req: Request,
    max: usize,
    timeout: std::time::Duration,
) -> Result<(HeaderMap, Bytes), ApiError> {
    let too_large = || ApiError::too_large(format!("the request body is larger than {max} bytes"));
    // Refused before reading when the length is announced: the client (waiting for
    // `100 Continue`, or reading while it sends) gets the Status rather than a broken pipe.
    let announced = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    let (parts, body) = req.into_parts();
    // A client that stops sending gets upstream's request timeout, not a handler waiting forever.
    let bytes = tokio::time::timeout(timeout, to_bytes(body, max))
        .await
        .map_err(|_| ApiError::timeout())?
        .map_err(|_| too_large())?;
    Ok((parts.headers, bytes))
}

fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Decodes an object body: JSON, YAML, or protobuf (the `k8s\0` envelope kubectl 1.32+ sends).
fn decode_object(headers: &HeaderMap, body: &[u8]) -> Result<Value, ApiError> {
    decode_body(&content_type(headers), body)
}

/// Decodes the body of a create or update of `res`. A protobuf body whose envelope names
/// another kind or apiVersion is refused from the envelope, before its object is decoded (a
/// list of 200k items sent to `deployments` costs nothing), with the message the registry
/// gives JSON bodies.
fn decode_object_of(
    res: &Res,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(Value, Duplicates), ApiError> {
    let ct = content_type(headers);
    if ct == rudder_api::protobuf::CONTENT_TYPE {
        if let Ok(env) = rudder_api::protobuf::envelope(body) {
            if !env.api_version.is_empty() && env.api_version != res.api_version() {
                return Err(ApiError::bad_request(format!(
                    "the API version in the data ({}) does not match the expected API version ({})",
                    env.api_version,
                    res.api_version()
                )));
            }
            if !env.kind.is_empty() && env.kind != res.kind {
                return Err(ApiError::bad_request(format!(
                    "the kind in the data ({}) does not match the expected kind ({})",
                    env.kind, res.kind
                )));
            }
        }
    }
    decode_body_strict(&ct, body)
}

/// Decodes an object body of the given (lower-case, parameter-free) content type.
pub(crate) fn decode_body(content_type: &str, body: &[u8]) -> Result<Value, ApiError> {
    decode_body_strict(content_type, body).map(|(v, _)| v)
}

/// Decodes an object body as [`decode_body`] does, with the duplicate keys it has (duplicates
/// are not an error: the last one wins, and strict field validation reports them).
fn decode_body_strict(content_type: &str, body: &[u8]) -> Result<(Value, Duplicates), ApiError> {
    match content_type {
        "application/json" | "" | "*/*" => {
            crate::decode::json_strict(body).map_err(|e| crate::decode::refusal("JSON", e))
        }
        "application/yaml" => {
            // Every YAML refusal, aliases and nesting included, is a decoding error (400), as
            // upstream's YAML decoder reports excessive aliasing.
            crate::decode::yaml_strict(body).map_err(|e| {
                ApiError::bad_request(format!("error decoding the request body as YAML: {e}"))
            })
        }
        rudder_api::protobuf::CONTENT_TYPE => rudder_api::protobuf::decode(body)
            .map(|v| (v, Duplicates::default()))
            .map_err(|e| {
                if e.is_unsupported_media_type() {
                    ApiError::new(415, "UnsupportedMediaType", e.to_string())
                } else if e.is_too_large() {
                    ApiError::too_large(format!("error decoding the request body as protobuf: {e}"))
                } else {
                    ApiError::bad_request(format!(
                        "error decoding the request body as protobuf: {e}"
                    ))
                }
            }),
        other => Err(ApiError::unsupported_media_type(other)),
    }
}

pub(crate) fn list_options(served: &Served, q: &Query) -> Result<ListOptions, ApiError> {
    let selectors = Selectors::parse(
        param(q, "labelSelector"),
        param(q, "fieldSelector"),
        served.res.strategy.field_selectors(),
    )
    .map_err(ApiError::bad_request)?;
    let limit = match param(q, "limit").filter(|l| !l.is_empty()) {
        Some(l) => Some(
            l.parse::<i64>()
                .map_err(|_| ApiError::bad_request(format!("invalid limit {l:?}")))?,
        ),
        None => None,
    };
    let timeout = match param(q, "timeoutSeconds").filter(|t| !t.is_empty()) {
        Some(t) => Some(Duration::from_secs(t.parse::<u64>().map_err(|_| {
            ApiError::bad_request(format!("invalid timeoutSeconds {t:?}"))
        })?)),
        None => None,
    };
    Ok(ListOptions {
        selectors,
        limit,
        continue_token: param(q, "continue").map(str::to_string),
        resource_version: param(q, "resourceVersion").map(str::to_string),
        resource_version_match: param(q, "resourceVersionMatch").map(str::to_string),
        allow_bookmarks: flag(q, "allowWatchBookmarks"),
        timeout,
        // A pointer in upstream's ListOptions: absent is unset, any value decodes as `watch`.
        send_initial_events: param(q, "sendInitialEvents").map(|_| flag(q, "sendInitialEvents")),
    })
}

/// Upstream's `SetListOptionsDefaults` and `ValidateListOptions` with the WatchList feature on
/// (on by default in 1.32; served by Rudder always): a watch from no or `0` resourceVersion
/// without `sendInitialEvents` or `resourceVersionMatch` is a streaming list; a wrong
/// combination is 422 `ListOptions.meta.k8s.io "" is invalid`.
fn check_list_options(opts: &mut ListOptions, watch: bool) -> Result<(), ApiError> {
    let rv = opts.resource_version.clone().unwrap_or_default();
    let rvm = opts
        .resource_version_match
        .clone()
        .filter(|m| !m.is_empty());
    if watch && opts.send_initial_events.is_none() && rvm.is_none() && (rv.is_empty() || rv == "0")
    {
        opts.send_initial_events = Some(true);
        opts.resource_version_match = Some(NOT_OLDER_THAN.into());
        return Ok(());
    }
    let has_continue = opts
        .continue_token
        .as_deref()
        .is_some_and(|c| !c.is_empty());
    let forbidden = |field: &str, detail: &str| FieldError::forbidden(field, detail);
    let mut errs = Vec::new();
    if watch {
        if opts.send_initial_events.is_some() && rvm.as_deref() != Some(NOT_OLDER_THAN) {
            errs.push(forbidden(
                "resourceVersionMatch",
                "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
            ));
        }
        if let Some(m) = rvm.as_deref() {
            if opts.send_initial_events.is_none() {
                errs.push(forbidden(
                    "resourceVersionMatch",
                    "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
                ));
            }
            if m != NOT_OLDER_THAN {
                errs.push(not_supported("resourceVersionMatch", m, &[NOT_OLDER_THAN]));
            }
            if has_continue {
                errs.push(forbidden(
                    "resourceVersionMatch",
                    "resourceVersionMatch is forbidden when continue is provided",
                ));
            }
        }
    } else {
        if let Some(m) = rvm.as_deref() {
            if rv.is_empty() {
                errs.push(forbidden(
                    "resourceVersionMatch",
                    "resourceVersionMatch is forbidden unless resourceVersion is provided",
                ));
            }
            if has_continue {
                errs.push(forbidden(
                    "resourceVersionMatch",
                    "resourceVersionMatch is forbidden when continue is provided",
                ));
            }
            if m != "Exact" && m != NOT_OLDER_THAN {
                errs.push(not_supported(
                    "resourceVersionMatch",
                    m,
                    &["Exact", NOT_OLDER_THAN, ""],
                ));
            }
            if m == "Exact" && rv == "0" {
                errs.push(forbidden(
                    "resourceVersionMatch",
                    "resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"",
                ));
            }
        }
        if opts.send_initial_events.is_some() {
            errs.push(forbidden(
                "sendInitialEvents",
                "sendInitialEvents is forbidden for list",
            ));
        }
    }
    if errs.is_empty() {
        return Ok(());
    }
    // Upstream names the kind with its group (`ListOptions.meta.k8s.io`).
    let mut err = ApiError::invalid("ListOptions", "meta.k8s.io", "", errs);
    err.message = err
        .message
        .replacen("ListOptions", "ListOptions.meta.k8s.io", 1);
    Err(err)
}

const NOT_OLDER_THAN: &str = "NotOlderThan";

/// field.NotSupported: `Unsupported value: "X": supported values: "A", "B"`.
fn not_supported(field: &str, value: &str, supported: &[&str]) -> FieldError {
    let quoted: Vec<String> = supported.iter().map(|v| json!(v).to_string()).collect();
    FieldError {
        field: field.into(),
        reason: "FieldValueNotSupported",
        message: format!(
            "Unsupported value: {}: supported values: {}",
            json!(value),
            quoted.join(", ")
        ),
    }
}

fn dry_run(q: &Query) -> Result<bool, ApiError> {
    match param(q, "dryRun") {
        None => Ok(false),
        Some("All") => Ok(true),
        Some(other) => Err(ApiError::bad_request(format!(
            "Invalid dryRun value: {other:?}; the only supported value is \"All\""
        ))),
    }
}

/// What a write request says about itself besides its body. `options` names the request's
/// options kind in errors (`CreateOptions`, `UpdateOptions`, `PatchOptions`); `apply` says the
/// request is a server-side apply, which needs a `fieldManager` (and alone may `force`).
fn write(
    q: &Query,
    user: &User,
    headers: &HeaderMap,
    options: &str,
    apply: bool,
) -> Result<Write, ApiError> {
    let field_manager = param(q, "fieldManager").map(str::to_string);
    let force = param(q, "force");
    let mut errs = Vec::new();
    let fm = field_manager.as_deref().unwrap_or("");
    if options == "PatchOptions" {
        if !apply && force.is_some() {
            errs.push(FieldError {
                field: "force".into(),
                reason: "FieldValueForbidden",
                message: "Forbidden: may not be specified for non-apply patch".into(),
            });
        }
        if apply && fm.is_empty() {
            errs.push(FieldError {
                field: "fieldManager".into(),
                reason: "FieldValueRequired",
                message: "Required value: is required for apply patch".into(),
            });
        }
    }
    if fm.len() > 128 {
        errs.push(FieldError {
            field: "fieldManager".into(),
            reason: "FieldValueTooLong",
            message: "Too long: may not be more than 128 bytes".into(),
        });
    }
    if let Some((i, c)) = fm.char_indices().find(|(_, c)| c.is_control()) {
        errs.push(FieldError::invalid(
            "fieldManager",
            fm,
            format!("invalid character U+{:04X} (at position {i})", c as u32),
        ));
    }
    if !errs.is_empty() {
        let mut e = ApiError::invalid(options, "meta.k8s.io", "", errs);
        e.message = e
            .message
            .replacen(options, &format!("{options}.meta.k8s.io"), 1);
        return Err(e);
    }
    Ok(Write {
        dry_run: dry_run(q)?,
        user: Some(user.clone()),
        field_manager,
        force: flag(q, "force"),
        user_agent: headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        ..Write::default()
    })
}

async fn route(
    st: &Arc<AppState>,
    user: &User,
    path: &str,
    req: Request,
) -> Result<Response, ApiError> {
    let method = req.method().clone();
    let served = st.registry.resources().snapshot();
    if let Some(doc) =
        resources::discovery(&served.discovery, path, req.headers(), &st.server_address)
    {
        return doc;
    }
    if method == Method::GET || method == Method::HEAD {
        if let Some(doc) = crate::openapi_routes::serve(path, req.headers(), req.uri().query()) {
            return Ok(doc);
        }
    }
    let q = query(&req);
    let target = parse_target(&st.registry, path)?.ok_or_else(ApiError::no_route)?;
    // Refused (406) only where it is used: reads of a collection or an object.
    let output = crate::negotiate::output(req.headers());
    let table_wanted = matches!(output, Ok(Output::Table));
    let include = IncludeObject::parse(param(&q, "includeObject"));
    match target {
        Target::Unstored { rt, ns, name } if !rt.supports(Verb::Create) => {
            if method != Method::GET {
                return Err(ApiError::method_not_allowed(method.as_str()));
            }
            crate::resource_metrics::serve(st, rt, ns, name, &q).await
        }
        Target::Unstored { rt, name, .. } => {
            if method != Method::POST || name.is_some() {
                return Err(ApiError::method_not_allowed(method.as_str()));
            }
            let (headers, body) = read_body(st, req).await?;
            let obj = decode_object(&headers, &body)?;
            Ok(json_response(
                StatusCode::CREATED,
                &review(st, rt, user, obj).await?,
            ))
        }
        Target::Collection { served, ns } => {
            let res = &served.res;
            match method {
                Method::GET => {
                    let mut opts = list_options(&served, &q)?;
                    let watching = flag(&q, "watch");
                    check_list_options(&mut opts, watching)?;
                    if watching {
                        let output =
                            if opts.send_initial_events == Some(true) && opts.allow_bookmarks {
                                crate::negotiate::output_streaming_list(req.headers())?
                            } else {
                                output?
                            };
                        return watch(st, &served, ns, opts, output, include).await;
                    }
                    let output = output?;
                    match output {
                        Output::Partial(_) => return Err(crate::negotiate::is_a_list(res)),
                        Output::PartialList(v) => {
                            let list = st.registry.list(res, ns, &opts).await?;
                            let partial = crate::negotiate::partial_list(list, v);
                            return Ok(json_response(StatusCode::OK, &partial));
                        }
                        Output::Object | Output::Table => {}
                    }
                    // Written straight from the stored objects when the resource is served
                    // in its stored version and nothing is selected.
                    let fast = if table_wanted {
                        st.registry.list_table(res, ns, &opts, include).await?
                    } else {
                        st.registry.list_json(res, ns, &opts).await?
                    };
                    if let Some(body) = fast {
                        return Ok((
                            StatusCode::OK,
                            [(header::CONTENT_TYPE, "application/json")],
                            body,
                        )
                            .into_response());
                    }
                    let mut list = st.registry.list(res, ns, &opts).await?;
                    if table_wanted {
                        let items = match list["items"].take() {
                            Value::Array(items) => items,
                            _ => Vec::new(),
                        };
                        return Ok(json_response(
                            StatusCode::OK,
                            &table::table(
                                served.res.strategy.as_ref(),
                                items,
                                list["metadata"].take(),
                                include,
                                true,
                            ),
                        ));
                    }
                    Ok(json_response(StatusCode::OK, &list))
                }
                Method::POST => {
                    let w = write(&q, user, req.headers(), "CreateOptions", false)?;
                    let fv = field_validation(&q)?;
                    let (headers, body) = read_body(st, req).await?;
                    let (mut obj, dups) = decode_object_of(res, &headers, &body)?;
                    let warnings = check_fields(res, &mut obj, fv, &dups)?;
                    let created = st.registry.create(res, ns, obj, &w).await?;
                    Ok(with_warnings(
                        json_response(StatusCode::CREATED, &created),
                        &warnings,
                    ))
                }
                Method::DELETE if served.rt.verbs.contains(&Verb::DeleteCollection) => {
                    let mut opts = list_options(&served, &q)?;
                    check_list_options(&mut opts, false)?;
                    let (headers, body) = read_body(st, req).await?;
                    let delete = DeleteOptions {
                        user: Some(user.clone()),
                        ..delete_options(&q, &headers, &body)?
                    };
                    let list = st.registry.list(res, ns, &opts).await?;
                    for item in list["items"].as_array().into_iter().flatten() {
                        let name = item["metadata"]["name"].as_str().unwrap_or_default();
                        let item_ns = item["metadata"]["namespace"].as_str();
                        match st.registry.delete(res, item_ns, name, &delete).await {
                            Ok(_) => {}
                            Err(e) if e.code == 404 => {}
                            Err(e) => return Err(e),
                        }
                    }
                    Ok(json_response(StatusCode::OK, &list))
                }
                m => Err(ApiError::method_not_allowed(m.as_str())),
            }
        }
        Target::Item {
            served,
            ns,
            name,
            sub,
        } => {
            let res = &served.res;
            let field = sub
                .and_then(|s| served.rt.subresource(s))
                .filter(|s| s.writes.is_some());
            let part = match (sub, field) {
                (None, _) => Part::Main,
                (Some(_), Some(field)) => Part::Field(field),
                (Some("status"), None) if res.has_status => Part::Status,
                (Some(sub), None) if served.rt.subresource(sub).is_some() => {
                    let options = match method {
                        Method::PUT => "UpdateOptions",
                        Method::PATCH => "PatchOptions",
                        _ => "CreateOptions",
                    };
                    let apply = content_type(req.headers()) == crate::patch::APPLY_PATCH;
                    let mut write = write(&q, user, req.headers(), options, apply)?;
                    write.subresource = Some(sub.to_string());
                    let mut req = req;
                    let upgrade = req.extensions_mut().remove::<hyper::upgrade::OnUpgrade>();
                    let (headers, body) = read_body(st, req).await?;
                    let request = crate::subresources::SubRequest {
                        served: &served,
                        ns,
                        name,
                        sub,
                        method,
                        query: &q,
                        content_type: content_type(&headers),
                        headers: &headers,
                        body: &body,
                        write,
                    };
                    return crate::subresources::serve(st, request, upgrade).await;
                }
                (Some(_), None) => return Err(ApiError::no_route()),
            };
            match method {
                Method::GET => {
                    let output = output?;
                    if let Output::PartialList(_) = output {
                        return Err(crate::negotiate::not_a_list(res));
                    }
                    let obj = st.registry.get(res, ns, name).await?;
                    if let Output::Partial(v) = output {
                        let partial = crate::negotiate::partial(&obj, v);
                        return Ok(json_response(StatusCode::OK, &partial));
                    }
                    if table_wanted {
                        return Ok(json_response(
                            StatusCode::OK,
                            &table::table(
                                served.res.strategy.as_ref(),
                                vec![obj],
                                json!({}),
                                include,
                                true,
                            ),
                        ));
                    }
                    Ok(json_response(StatusCode::OK, &obj))
                }
                Method::PUT => {
                    let w = write(&q, user, req.headers(), "UpdateOptions", false)?;
                    let fv = field_validation(&q)?;
                    let (headers, body) = read_body(st, req).await?;
                    let (mut obj, dups) = decode_object_of(res, &headers, &body)?;
                    let warnings = check_fields(res, &mut obj, fv, &dups)?;
                    let updated = st.registry.update(res, ns, name, obj, part, &w).await?;
                    Ok(with_warnings(
                        json_response(StatusCode::OK, &updated),
                        &warnings,
                    ))
                }
                Method::PATCH => {
                    let apply = content_type(req.headers()) == crate::patch::APPLY_PATCH;
                    let w = write(&q, user, req.headers(), "PatchOptions", apply)?;
                    let fv = field_validation(&q)?;
                    let (headers, body) = read_body(st, req).await?;
                    let (mut patch, dups) = Patch::parse_strict(&content_type(&headers), &body)?;
                    if let Patch::Apply(config) = &mut patch {
                        let mut warnings = check_fields(res, config, fv, &Duplicates::default())?;
                        warnings.extend(apply_duplicates(fv, &dups)?);
                        let config = std::mem::take(config);
                        let (obj, created) =
                            st.registry.apply(res, ns, name, part, &w, config).await?;
                        let code = if created {
                            StatusCode::CREATED
                        } else {
                            StatusCode::OK
                        };
                        return Ok(with_warnings(json_response(code, &obj), &warnings));
                    }
                    // Merge and strategic merge patches are partial objects: their unknown
                    // fields are checked (and dropped) like a full object's.
                    let warnings = match &mut patch {
                        Patch::Merge(p) | Patch::Strategic(p) => check_fields(res, p, fv, &dups)?,
                        Patch::Json(_) | Patch::Apply(_) => Vec::new(),
                    };
                    let patched = st
                        .registry
                        .patch(res, ns, name, part, &w, |old| {
                            let ty =
                                rudder_api::schema::Type::of_kind(res.group, res.version, res.kind);
                            patch.apply_to_typed(ty, old)
                        })
                        .await?;
                    Ok(with_warnings(
                        json_response(StatusCode::OK, &patched),
                        &warnings,
                    ))
                }
                Method::DELETE => {
                    let (headers, body) = read_body(st, req).await?;
                    let opts = DeleteOptions {
                        user: Some(user.clone()),
                        ..delete_options(&q, &headers, &body)?
                    };
                    if let Some(h) = &res.hooks {
                        if let Some(obj) = h.delete(&st.registry, name, &opts).await {
                            return Ok(json_response(StatusCode::OK, &obj?));
                        }
                    }
                    match st.registry.delete(res, ns, name, &opts).await? {
                        Deleted::Now(obj) if res.strategy.returns_deleted() => {
                            Ok(json_response(StatusCode::OK, &obj))
                        }
                        Deleted::Now(obj) => Ok(crate::error::GoStatus::deleted(
                            name,
                            res.group,
                            res.plural,
                            obj["metadata"]["uid"].as_str().unwrap_or_default(),
                        )
                        .into_response()),
                        Deleted::Pending(obj) => Ok(json_response(StatusCode::OK, &obj)),
                    }
                }
                m => Err(ApiError::method_not_allowed(m.as_str())),
            }
        }
    }
}

fn delete_options(q: &Query, headers: &HeaderMap, body: &[u8]) -> Result<DeleteOptions, ApiError> {
    let mut opts = DeleteOptions {
        dry_run: dry_run(q)?,
        propagation_policy: param(q, "propagationPolicy").map(str::to_string),
        ..DeleteOptions::default()
    };
    if let Some(g) = param(q, "gracePeriodSeconds") {
        opts.grace_period_seconds = Some(
            g.parse()
                .map_err(|_| ApiError::bad_request(format!("invalid gracePeriodSeconds {g:?}")))?,
        );
    }
    if !body.is_empty() {
        apply_delete_body(&decode_object(headers, body)?, &mut opts);
    }
    Ok(opts)
}

/// Adds what a `DeleteOptions` object says to `opts`.
pub(crate) fn apply_delete_body(b: &Value, opts: &mut DeleteOptions) {
    if let Some(p) = b.get("propagationPolicy").and_then(Value::as_str) {
        opts.propagation_policy = Some(p.to_string());
    }
    if let Some(g) = b.get("gracePeriodSeconds").and_then(Value::as_i64) {
        opts.grace_period_seconds = Some(g);
    }
    if b.get("orphanDependents").and_then(Value::as_bool) == Some(true) {
        opts.propagation_policy
            .get_or_insert_with(|| "Orphan".into());
    }
    if let Some(pre) = b.get("preconditions") {
        opts.precondition_uid = pre.get("uid").and_then(Value::as_str).map(str::to_string);
        opts.precondition_resource_version = pre
            .get("resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_string);
    }
    if let Some(d) = b.get("dryRun").and_then(Value::as_array) {
        opts.dry_run |= d.iter().any(|x| x == "All");
    }
}

fn event_json(
    ev: &WatchEvent,
    served: &Served,
    output: Output,
    include: IncludeObject,
    first: bool,
) -> Value {
    let wrap = |obj: &Value| {
        if let Output::Partial(v) = output {
            // Upstream converts each event's object; a list kind cannot convert a single
            // object, so `as=PartialObjectMetadataList` events carry the objects unchanged.
            crate::negotiate::partial(obj, v)
        } else if output == Output::Table {
            table::table(
                served.res.strategy.as_ref(),
                vec![obj.clone()],
                json!({"resourceVersion": obj["metadata"]["resourceVersion"]}),
                include,
                first,
            )
        } else {
            obj.clone()
        }
    };
    match ev {
        WatchEvent::Added(o) => json!({"type": "ADDED", "object": wrap(o)}),
        WatchEvent::Modified(o) => json!({"type": "MODIFIED", "object": wrap(o)}),
        WatchEvent::Deleted(o) => json!({"type": "DELETED", "object": wrap(o)}),
        WatchEvent::Bookmark(rev) => {
            let object = json!({
                "kind": served.res.kind,
                "apiVersion": served.res.api_version(),
                "metadata": {"resourceVersion": rev.to_string()},
            });
            let object = match output {
                Output::Partial(v) => crate::negotiate::partial(&object, v),
                _ => object,
            };
            json!({"type": "BOOKMARK", "object": object})
        }
        WatchEvent::InitialEventsEnd(rev) => {
            // As 1.33 writes it: the end marker, and the empty list the initial events fill,
            // encoded as the response is, in base64.
            let (list_kind, list_version) = match output {
                Output::Partial(v) | Output::PartialList(v) => (
                    "PartialObjectMetadataList".to_string(),
                    format!("meta.k8s.io/{v}"),
                ),
                _ => (format!("{}List", served.res.kind), served.res.api_version()),
            };
            let blueprint = format!(
                "{{\"kind\":{},\"apiVersion\":{},\"metadata\":{{}},\"items\":null}}\n",
                json!(list_kind),
                json!(list_version)
            );
            use base64::Engine as _;
            let object = json!({
                "kind": served.res.kind,
                "apiVersion": served.res.api_version(),
                "metadata": {
                    "resourceVersion": rev.to_string(),
                    "annotations": {
                        "k8s.io/initial-events-end": "true",
                        "k8s.io/initial-events-list-blueprint":
                            base64::engine::general_purpose::STANDARD.encode(blueprint),
                    },
                },
            });
            let object = match output {
                Output::Partial(v) => crate::negotiate::partial(&object, v),
                _ => object,
            };
            json!({"type": "BOOKMARK", "object": object})
        }
        WatchEvent::Error(e) => json!({"type": "ERROR", "object": e.status()}),
        WatchEvent::Encoded(_) => unreachable!("encoded lines are written as they are"),
    }
}

async fn watch(
    st: &Arc<AppState>,
    served: &Served,
    ns: Option<&str>,
    opts: ListOptions,
    output: Output,
    include: IncludeObject,
) -> Result<Response, ApiError> {
    let table_wanted = output == Output::Table;
    let events = st
        .registry
        .watch(&served.res, ns, &opts, output == Output::Object)
        .await?;
    let served = served.clone();
    let bookmarks = opts.allow_bookmarks;
    let mut first = true;
    let lines = events
        .filter(move |e| {
            let keep = bookmarks || !matches!(e, WatchEvent::Bookmark(_));
            async move { keep }
        })
        .map(move |e| {
            if let WatchEvent::Encoded(line) = e {
                first = false;
                return Ok::<_, std::convert::Infallible>(line);
            }
            let ev = event_json(&e, &served, output, include, first);
            let line =
                crate::error::watch_line(ev["type"].as_str().unwrap_or_default(), &ev["object"]);
            if !matches!(e, WatchEvent::Bookmark(_) | WatchEvent::InitialEventsEnd(_)) {
                first = false;
            }
            Ok::<_, std::convert::Infallible>(Bytes::from(line))
        });
    let timeout = opts.timeout.unwrap_or(Duration::from_secs(1800));
    let lines = lines.take_until(tokio::time::sleep(timeout));
    let ct = if table_wanted {
        "application/json;as=Table;v=v1;g=meta.k8s.io"
    } else {
        "application/json"
    };
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, ct)
        .body(Body::from_stream(lines))
        .unwrap_or_default())
}

/// The request an access review asks about (`spec.resourceAttributes` or
/// `spec.nonResourceAttributes`), as the authorizer sees requests.
fn review_attributes(spec: &Value) -> RequestInfo {
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    match spec.get("resourceAttributes").filter(|v| v.is_object()) {
        Some(r) => RequestInfo {
            is_resource: true,
            verb: s(r, "verb"),
            api_group: s(r, "group"),
            api_version: s(r, "version"),
            resource: s(r, "resource"),
            subresource: s(r, "subresource"),
            namespace: s(r, "namespace"),
            name: s(r, "name"),
            ..RequestInfo::default()
        },
        None => {
            let n = spec.get("nonResourceAttributes").unwrap_or(&Value::Null);
            RequestInfo {
                verb: s(n, "verb"),
                path: s(n, "path"),
                ..RequestInfo::default()
            }
        }
    }
}

/// The review's status: whether the authorizers allow the subject the request.
async fn access_status(st: &AppState, subject: &User, info: &RequestInfo) -> Value {
    match st.authorizer.check(subject, info).await {
        Ok(()) => json!({"allowed": true}),
        Err(_) => json!({"allowed": false}),
    }
}

/// Answers an access or identity review: access reviews ask the same authorizers a request
/// would meet.
async fn review(
    st: &AppState,
    rt: &ResourceType,
    user: &User,
    mut obj: Value,
) -> Result<Value, ApiError> {
    let Some(m) = obj.as_object_mut() else {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    };
    m.insert("kind".into(), json!(rt.kind));
    m.insert("apiVersion".into(), json!(rt.api_version()));
    if !m.get("metadata").is_some_and(Value::is_object) {
        m.insert("metadata".into(), json!({}));
    }
    if let Some(meta) = m.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert(
            "creationTimestamp".into(),
            json!(crate::registry::now_rfc3339()),
        );
    }
    let spec = m.get("spec").cloned().unwrap_or(Value::Null);
    let attributes =
        spec.get("resourceAttributes").is_some() || spec.get("nonResourceAttributes").is_some();
    let required = |field: &str, why: &str| {
        ApiError::invalid(
            rt.kind,
            rt.group,
            "",
            vec![rudder_api::validation::FieldError::required(field, why)],
        )
    };
    let one_of = "exactly one of nonResourceAttributes or resourceAttributes must be specified";
    let status = match rt.kind {
        "SelfSubjectAccessReview" => {
            if !attributes {
                return Err(required("spec.resourceAttributes", one_of));
            }
            access_status(st, user, &review_attributes(&spec)).await
        }
        "SubjectAccessReview" | "LocalSubjectAccessReview" => {
            let subject_given = ["user", "groups", "uid"]
                .iter()
                .any(|k| spec.get(*k).is_some_and(|v| !v.is_null()));
            if !attributes {
                return Err(required("spec.resourceAttributes", one_of));
            }
            if !subject_given {
                return Err(required(
                    "spec.user",
                    "at least one of user or group must be specified",
                ));
            }
            let subject = User {
                name: spec["user"].as_str().unwrap_or("").to_string(),
                groups: spec["groups"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|g| g.as_str().map(str::to_string))
                    .collect(),
                uid: spec["uid"].as_str().map(str::to_string),
            };
            access_status(st, &subject, &review_attributes(&spec)).await
        }
        "SelfSubjectRulesReview" => {
            if user.groups.iter().any(|g| g == crate::authz::MASTERS) {
                json!({
                    "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
                    "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
                    "incomplete": false,
                })
            } else {
                let mut status = json!({
                    "resourceRules": [
                        {"verbs": ["create"], "apiGroups": ["authorization.k8s.io"],
                         "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"]},
                        {"verbs": ["create"], "apiGroups": ["authentication.k8s.io"],
                         "resources": ["selfsubjectreviews"]},
                    ],
                    "nonResourceRules": [{"verbs": ["get"], "nonResourceURLs": [
                        "/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi",
                        "/openapi/*", "/readyz", "/version", "/version/",
                    ]}],
                    "incomplete": false,
                });
                if crate::authz::node_name(user).is_some() {
                    rudder_api::value::set(&mut status, &["incomplete"], json!(true));
                    rudder_api::value::set(
                        &mut status,
                        &["evaluationError"],
                        json!("node authorizer does not support user rule resolution"),
                    );
                }
                status
            }
        }
        "SelfSubjectReview" => {
            let mut info = json!({"username": user.name, "groups": user.groups});
            if let Some(uid) = &user.uid {
                rudder_api::value::set(&mut info, &["uid"], json!(uid));
            }
            json!({"userInfo": info})
        }
        other => return Err(ApiError::internal(format!("no review handler for {other}"))),
    };
    m.insert("status".into(), status);
    Ok(obj)
}

/// What `fieldValidation` asks for unknown fields (default Warn, as upstream).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FieldValidation {
    Ignore,
    Warn,
    Strict,
}

fn field_validation(q: &Query) -> Result<FieldValidation, ApiError> {
    match param(q, "fieldValidation") {
        None | Some("") | Some("Warn") => Ok(FieldValidation::Warn),
        Some("Ignore") => Ok(FieldValidation::Ignore),
        Some("Strict") => Ok(FieldValidation::Strict),
        Some(other) => Err(ApiError::bad_request(format!(
            "fieldValidation parameter unsupported: {other}"
        ))),
    }
}

/// Drops the fields the kind's schema does not have; with the body's duplicate keys, they are
/// upstream's strict decoding errors: Strict refuses them, Warn returns the warnings to send
/// (one per duplicate YAML key, unknown field and duplicate JSON field, in that order).
fn check_fields(
    res: &Res,
    obj: &mut Value,
    fv: FieldValidation,
    dups: &Duplicates,
) -> Result<Vec<String>, ApiError> {
    let unknown = rudder_api::schema::prune_unknown_fields(res.group, res.version, res.kind, obj);
    if fv == FieldValidation::Ignore {
        return Ok(Vec::new());
    }
    // Go decodes no field it does not know, so a field both unknown and duplicated (or inside
    // an unknown one) is reported as unknown only.
    let under_unknown = |path: &str| {
        unknown.iter().any(|u| {
            path == u
                || path
                    .strip_prefix(u.as_str())
                    .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
        })
    };
    let mut warnings: Vec<String> = dups.yaml_lines.clone();
    let mut errors: Vec<String> = Vec::new();
    if !dups.yaml_lines.is_empty() {
        errors.push(yaml_unmarshal_errors(&dups.yaml_lines));
    }
    let json_strict = unknown
        .iter()
        .map(|u| format!("unknown field {}", json!(u)))
        .chain(
            dups.fields
                .iter()
                .filter(|d| !under_unknown(d))
                .map(|d| format!("duplicate field {}", json!(d))),
        );
    for e in json_strict {
        warnings.push(e.clone());
        errors.push(e);
    }
    if errors.is_empty() {
        return Ok(Vec::new());
    }
    match fv {
        FieldValidation::Strict => Err(ApiError::cannot_handle(
            res.kind,
            res.version,
            &format!("strict decoding error: {}", errors.join(", ")),
        )),
        _ => Ok(warnings),
    }
}

/// goyaml's strict error for these duplicate keys (`yaml: unmarshal errors:` and a line each).
fn yaml_unmarshal_errors(lines: &[String]) -> String {
    format!("yaml: unmarshal errors:\n  {}", lines.join("\n  "))
}

/// What upstream's apply says of duplicate keys in the applied configuration, which it decodes
/// leniently (the last one wins) and then strictly: Strict refuses them (400), Warn warns of
/// each.
fn apply_duplicates(fv: FieldValidation, dups: &Duplicates) -> Result<Vec<String>, ApiError> {
    if dups.yaml_lines.is_empty() {
        return Ok(Vec::new());
    }
    match fv {
        FieldValidation::Ignore => Ok(Vec::new()),
        FieldValidation::Warn => Ok(dups.yaml_lines.clone()),
        FieldValidation::Strict => Err(ApiError::bad_request(format!(
            "error strict decoding patch: error converting YAML to JSON: {}",
            yaml_unmarshal_errors(&dups.yaml_lines)
        ))),
    }
}

/// Adds one `Warning: 299 - "…"` header per warning (kubectl prints them as `Warning: …`).
fn with_warnings(mut r: Response, warnings: &[String]) -> Response {
    for w in warnings {
        let text = format!("299 - {}", Value::String(w.clone()));
        if let Ok(v) = axum::http::HeaderValue::from_str(&text) {
            r.headers_mut().append(header::WARNING, v);
        }
    }
    r
}
