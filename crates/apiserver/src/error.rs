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
            d["group"] = json!(self.group);
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
        details["causes"] = causes
            .iter()
            .map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field}))
            .collect();
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
        let mut s = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            s["details"] = d.clone();
        }
        if let Some(m) = &self.list_meta {
            s["metadata"] = m.clone();
        }
        s
    }
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
        let body = serde_json::to_vec(&self.status()).unwrap_or_default();
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
