//! API errors as Kubernetes `Status` objects, with upstream's codes, reasons and messages.

use axum::body::Body;
use axum::http::{header, Response, StatusCode};
use rudder_api::validation::FieldError;
use serde_json::{json, Value};

/// Most field causes one Invalid `Status` lists.
pub const MAX_CAUSES: usize = 100;

/// An error answered as a `Status`.
#[derive(Clone, Debug)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
    /// The Status's list metadata (an expired continue token's replacement).
    pub list_meta: Option<Value>,
}

/// Which object an error is about: the group and resource (`deployments.apps`) or kind.
pub struct Target<'a> {
    pub group: &'a str,
    /// Resource plural for NotFound/AlreadyExists/Conflict, kind for Invalid.
    pub name_of_type: &'a str,
    pub name: &'a str,
}

impl Target<'_> {
    fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.name_of_type.to_string()
        } else {
            format!("{}.{}", self.name_of_type, self.group)
        }
    }

    fn details(&self) -> Value {
        let mut d = json!({ "name": self.name, "kind": self.name_of_type });
        if !self.group.is_empty() {
            rudder_api::value::set(&mut d, &["group"], json!(self.group));
        }
        d
    }
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
            list_meta: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "BadRequest", message)
    }

    /// A body upstream's decoder refuses: `Deployment in version "v1" cannot be handled as a
    /// Deployment: json: cannot unmarshal …`.
    pub fn cannot_handle(kind: &str, version: &str, why: &str) -> ApiError {
        ApiError::bad_request(format!(
            "{kind} in version \"{version}\" cannot be handled as a {kind}: {why}"
        ))
    }

    pub fn unauthorized() -> ApiError {
        ApiError::new(401, "Unauthorized", "Unauthorized")
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(403, "Forbidden", message)
    }

    pub fn not_found(t: Target) -> ApiError {
        ApiError {
            details: Some(t.details()),
            ..ApiError::new(
                404,
                "NotFound",
                format!("{} {} not found", t.qualified(), json!(t.name)),
            )
        }
    }

    /// A path that names nothing this server serves.
    pub fn no_route() -> ApiError {
        ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    }

    pub fn method_not_allowed(method: &str) -> ApiError {
        ApiError::new(
            405,
            "MethodNotAllowed",
            format!("the server does not allow this method on the requested resource ({method})"),
        )
    }

    pub fn already_exists(t: Target) -> ApiError {
        ApiError {
            details: Some(t.details()),
            ..ApiError::new(
                409,
                "AlreadyExists",
                format!("{} {} already exists", t.qualified(), json!(t.name)),
            )
        }
    }

    pub fn conflict(t: Target, why: &str) -> ApiError {
        ApiError {
            details: Some(t.details()),
            ..ApiError::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} {}: {why}",
                    t.qualified(),
                    json!(t.name)
                ),
            )
        }
    }

    /// The optimistic-concurrency conflict every client retries on.
    pub fn modified(t: Target) -> ApiError {
        ApiError::conflict(
            t,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// 410 Gone with reason Expired: a resourceVersion or continue token below compaction.
    pub fn expired(message: impl Into<String>) -> ApiError {
        ApiError::new(410, "Expired", message)
    }

    pub fn too_large(message: impl Into<String>) -> ApiError {
        ApiError::new(413, "RequestEntityTooLarge", message)
    }

    pub fn unsupported_media_type(content_type: &str) -> ApiError {
        ApiError::new(
            415,
            "UnsupportedMediaType",
            format!("the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf (got {content_type:?})"),
        )
    }

    pub fn not_acceptable(message: impl Into<String>) -> ApiError {
        ApiError::new(406, "NotAcceptable", message)
    }

    /// 422: `Kind "name" is invalid: field: message, field: message`.
    ///
    /// At most [`MAX_CAUSES`] causes are listed (in the message and in `details.causes`), and
    /// the message says how many more there were: upstream lists every one, but an object of
    /// a million empty containers would make that a response of hundreds of megabytes.
    pub fn invalid(kind: &str, group: &str, name: &str, mut causes: Vec<FieldError>) -> ApiError {
        let more = causes.len().saturating_sub(MAX_CAUSES);
        causes.truncate(MAX_CAUSES);
        let mut text: Vec<String> = causes
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect();
        if more > 0 {
            text.push(format!("and {more} more errors"));
        }
        let message = match text.len() {
            1 => format!("{kind} {} is invalid: {}", json!(name), text[0]),
            _ => format!("{kind} {} is invalid: [{}]", json!(name), text.join(", ")),
        };
        let mut details = Target {
            group,
            name_of_type: kind,
            name,
        }
        .details();
        let causes: Value = causes
            .iter()
            .map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field}))
            .collect();
        rudder_api::value::set(&mut details, &["causes"], causes);
        ApiError {
            details: Some(details),
            ..ApiError::new(422, "Invalid", message)
        }
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(500, "InternalError", message)
    }

    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(503, "ServiceUnavailable", message)
    }

    /// 429: an in-flight limit is reached; the client should retry after a second.
    pub fn too_many_requests() -> ApiError {
        ApiError {
            details: Some(json!({"retryAfterSeconds": 1})),
            ..ApiError::new(
                429,
                "TooManyRequests",
                "Too many requests, please try again later.",
            )
        }
    }

    /// 504: the request did not complete in the time it was allowed (upstream's
    /// request-timeout filter).
    pub fn timeout() -> ApiError {
        ApiError::new(
            504,
            "Timeout",
            "Timeout: request did not complete within requested timeout - context deadline exceeded",
        )
    }

    /// The `Status` object.
    pub fn status(&self) -> Value {
        serde_json::to_value(self.status_struct()).unwrap_or(Value::Null)
    }

    /// The `Status` in Go's field order (see [`GoStatus`]).
    fn status_struct(&self) -> GoStatus {
        GoStatus {
            metadata: self
                .list_meta
                .as_ref()
                .map(go_list_meta)
                .unwrap_or_default(),
            details: self.details.as_ref().map(go_details),
            ..GoStatus::new("Failure", self.message.clone(), self.reason, self.code)
        }
    }

    /// The response body: the `Status` as upstream's JSON serializer writes it, byte for byte.
    pub fn status_bytes(&self) -> Vec<u8> {
        go_json(&self.status_struct())
    }
}

/// `metav1.Status` with its fields in the Go struct's order and Go's `omitempty` rules, so the
/// bytes are upstream's (serde_json's `Value` sorts keys; clients and tests compare bodies).
#[derive(serde::Serialize, Default)]
pub struct GoStatus {
    kind: &'static str,
    #[serde(rename = "apiVersion")]
    api_version: &'static str,
    /// ListMeta is a struct, so Go writes `{}` even when it is empty.
    metadata: GoListMeta,
    #[serde(skip_serializing_if = "str::is_empty")]
    status: &'static str,
    #[serde(skip_serializing_if = "String::is_empty")]
    message: String,
    #[serde(skip_serializing_if = "str::is_empty")]
    reason: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<GoDetails>,
    #[serde(skip_serializing_if = "is_zero")]
    code: u16,
}

impl GoStatus {
    fn new(status: &'static str, message: String, reason: &'static str, code: u16) -> GoStatus {
        GoStatus {
            kind: "Status",
            api_version: "v1",
            status,
            message,
            reason,
            code,
            ..GoStatus::default()
        }
    }

    /// The `Status` a delete answers with when the object is gone (`status: Success` with the
    /// object's name, group, resource and uid).
    pub fn deleted(name: &str, group: &str, resource: &str, uid: &str) -> GoStatus {
        GoStatus {
            details: Some(GoDetails {
                name: name.to_string(),
                group: group.to_string(),
                kind: resource.to_string(),
                uid: uid.to_string(),
                ..GoDetails::default()
            }),
            ..GoStatus::new("Success", String::new(), "", 0)
        }
    }

    /// A success Status answered with `code` (binding and eviction: 201).
    pub fn success(code: u16) -> GoStatus {
        GoStatus::new("Success", String::new(), "", code)
    }

    /// The response carrying this Status as upstream writes it, with its code (200 if none).
    pub fn into_response(self) -> axum::response::Response {
        let code = match self.code {
            0 => StatusCode::OK,
            c => StatusCode::from_u16(c).unwrap_or(StatusCode::OK),
        };
        Response::builder()
            .status(code)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(go_json(&self)))
            .unwrap_or_default()
    }
}

fn is_zero(n: &u16) -> bool {
    *n == 0
}

fn is_zero_i64(n: &i64) -> bool {
    *n == 0
}

/// `metav1.ListMeta` (field order and omitempty as Go's).
#[derive(serde::Serialize, Default)]
struct GoListMeta {
    #[serde(rename = "selfLink", skip_serializing_if = "String::is_empty")]
    self_link: String,
    #[serde(rename = "resourceVersion", skip_serializing_if = "String::is_empty")]
    resource_version: String,
    #[serde(rename = "continue", skip_serializing_if = "String::is_empty")]
    continue_: String,
    #[serde(rename = "remainingItemCount", skip_serializing_if = "Option::is_none")]
    remaining_item_count: Option<i64>,
}

/// `metav1.StatusDetails`.
#[derive(serde::Serialize, Default)]
struct GoDetails {
    #[serde(skip_serializing_if = "String::is_empty")]
    name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    group: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    kind: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    uid: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    causes: Vec<GoCause>,
    #[serde(rename = "retryAfterSeconds", skip_serializing_if = "is_zero_i64")]
    retry_after_seconds: i64,
}

/// `metav1.StatusCause` (its `Type` is written as `reason`).
#[derive(serde::Serialize, Default)]
struct GoCause {
    #[serde(skip_serializing_if = "String::is_empty")]
    reason: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    message: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    field: String,
}

fn text(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn go_list_meta(v: &Value) -> GoListMeta {
    GoListMeta {
        self_link: text(v, "selfLink"),
        resource_version: text(v, "resourceVersion"),
        continue_: text(v, "continue"),
        remaining_item_count: v.get("remainingItemCount").and_then(Value::as_i64),
    }
}

fn go_details(v: &Value) -> GoDetails {
    GoDetails {
        name: text(v, "name"),
        group: text(v, "group"),
        kind: text(v, "kind"),
        uid: text(v, "uid"),
        causes: v
            .get("causes")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|c| GoCause {
                reason: text(c, "reason"),
                message: text(c, "message"),
                field: text(c, "field"),
            })
            .collect(),
        retry_after_seconds: v
            .get("retryAfterSeconds")
            .and_then(Value::as_i64)
            .unwrap_or(0),
    }
}

/// JSON as Go's `json.Encoder` writes it: `<`, `>`, `&`, U+2028 and U+2029 escaped (Go's
/// default HTML-safe escaping) and a trailing newline. Outside strings JSON never contains
/// those characters, so escaping them in the whole text only touches strings.
pub fn go_json<T: serde::Serialize + ?Sized>(v: &T) -> Vec<u8> {
    let raw = serde_json::to_vec(v).unwrap_or_default();
    go_escape(raw)
}

/// Go's HTML-safe escaping of serialized JSON, plus the encoder's trailing newline.
pub fn go_escape(raw: Vec<u8>) -> Vec<u8> {
    let needs =
        raw.windows(3).any(is_line_sep) || raw.iter().any(|b| matches!(b, b'<' | b'>' | b'&'));
    let mut out = if needs {
        let mut out = Vec::with_capacity(raw.len() + 16);
        let mut i = 0;
        while i < raw.len() {
            match raw[i] {
                b'<' => out.extend_from_slice(b"\\u003c"),
                b'>' => out.extend_from_slice(b"\\u003e"),
                b'&' => out.extend_from_slice(b"\\u0026"),
                0xE2 if raw.get(i..i + 3).is_some_and(is_line_sep) => {
                    let last = raw[i + 2];
                    out.extend_from_slice(if last == 0xA8 { b"\\u2028" } else { b"\\u2029" });
                    i += 2;
                }
                b => out.push(b),
            }
            i += 1;
        }
        out
    } else {
        raw
    };
    out.push(b'\n');
    out
}

/// U+2028 or U+2029 in UTF-8.
fn is_line_sep(w: &[u8]) -> bool {
    matches!(w, [0xE2, 0x80, 0xA8] | [0xE2, 0x80, 0xA9])
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.reason, self.message)
    }
}

impl From<rudder_store::StoreError> for ApiError {
    fn from(e: rudder_store::StoreError) -> ApiError {
        use rudder_store::StoreError as E;
        match e {
            E::Compacted {
                requested,
                compacted,
            } => ApiError::expired(format!(
                "too old resource version: {requested} ({compacted})"
            )),
            E::FutureRevision { .. } => ApiError::new(
                504,
                "Timeout",
                "Too large resource version: the store has not reached it yet",
            ),
            E::TooLarge { size, limit } => ApiError::too_large(format!(
                "the object is {size} bytes, more than the {limit} bytes the store accepts"
            )),
            E::Invalid(m) => ApiError::bad_request(m),
            other => ApiError::internal(other.to_string()),
        }
    }
}

impl axum::response::IntoResponse for ApiError {
    fn into_response(self) -> axum::response::Response {
        let body = self.status_bytes();
        let mut r = Response::builder()
            .status(StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
            .header(header::CONTENT_TYPE, "application/json");
        // As upstream: a Status that says when to retry says it in the header too.
        let retry = self
            .details
            .as_ref()
            .and_then(|d| d.get("retryAfterSeconds"))
            .and_then(Value::as_u64)
            .filter(|s| *s > 0);
        if let Some(s) = retry {
            r = r.header(header::RETRY_AFTER, s.to_string());
        }
        r.body(Body::from(body)).unwrap_or_default()
    }
}

/// One watch event line as upstream writes it: `{"type":…,"object":…}` in `metav1.WatchEvent`'s
/// field order, Go's escaping, and the newline that frames it.
pub fn watch_line(kind: &str, object: &Value) -> Vec<u8> {
    #[derive(serde::Serialize)]
    struct GoWatchEvent<'a> {
        #[serde(rename = "type")]
        kind: &'a str,
        object: &'a Value,
    }
    go_json(&GoWatchEvent { kind, object })
}
