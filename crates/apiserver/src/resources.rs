//! The bridge from the catalogue (`rudder_api::catalogue`) to what the registry and handlers
//! need per resource: storage prefix, name rule, status and generation rules,
//! supported field selectors.

use axum::body::Body;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use rudder_api::catalogue::{self, ResourceType};
use rudder_api::conversion::Conversion;
use rudder_api::discovery::{self, DiscoveryFormat};
use rudder_api::strategy;
use std::sync::Arc;

use crate::error::ApiError;

use crate::registry::Res;

/// A served resource with everything the handlers need.
#[derive(Clone, Debug)]
pub struct Served {
    pub rt: &'static ResourceType,
    pub res: Res,
}

/// The served resource at `/api[s]/<group>/<version>/<plural>`, if it is stored.
pub fn resolve(group: &str, version: &str, plural: &str) -> Option<Served> {
    let rt = catalogue::lookup(group, version, plural)?;
    let storage = rt.storage?;
    let strategy = Arc::new(strategy::built_in(rt.group, rt.kind)?);
    Some(Served {
        rt,
        res: Res {
            group: rt.group,
            version: rt.version,
            kind: rt.kind,
            plural: rt.plural,
            namespaced: rt.namespaced(),
            prefix: format!("{}/", storage.key_prefix()),
            has_status: rt.subresource("status").is_some(),
            storage_group: storage.group,
            storage_version: storage.version,
            storage_kind: storage.kind,
            conversion: Conversion::for_served(rt.group, rt.version, rt.kind),
            strategy,
        },
    })
}

fn discovery_response<T: serde::Serialize>(
    format: DiscoveryFormat,
    doc: &T,
    vary: bool,
) -> Response {
    let body = serde_json::to_vec(doc).unwrap_or_default();
    let mut r = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, format.content_type());
    if vary {
        r = r.header(header::VARY, "Accept");
    }
    r.body(Body::from(body)).unwrap_or_default()
}

/// Discovery documents (`/api`, `/apis`, group and group-version lists), if `path` is one.
pub fn discovery(
    path: &str,
    headers: &HeaderMap,
    server_address: &str,
) -> Option<Result<Response, ApiError>> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let accept = headers.get(header::ACCEPT).and_then(|a| a.to_str().ok());
    let top = matches!(segs.as_slice(), ["api"] | ["apis"]);
    let matched = matches!(
        segs.as_slice(),
        ["api"] | ["apis"] | ["api", _] | ["apis", _] | ["apis", _, _]
    );
    if !matched {
        return None;
    }
    let Some(format) = discovery::negotiate(accept, top) else {
        return Some(Err(ApiError::not_acceptable(
            "only the following media types are accepted: application/json, application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList, application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList",
        )));
    };
    let legacy = DiscoveryFormat::Legacy;
    Some(match (segs.as_slice(), format) {
        (["api"], DiscoveryFormat::Aggregated(v)) => Ok(discovery_response(
            format,
            &discovery::aggregated_api(v),
            true,
        )),
        (["apis"], DiscoveryFormat::Aggregated(v)) => Ok(discovery_response(
            format,
            &discovery::aggregated_apis(v),
            true,
        )),
        (["api"], _) => Ok(discovery_response(
            legacy,
            &discovery::api_versions(server_address),
            true,
        )),
        (["apis"], _) => Ok(discovery_response(
            legacy,
            &discovery::api_group_list(),
            true,
        )),
        (["api", v], _) => discovery::api_resource_list("", v)
            .map(|d| discovery_response(legacy, &d, false))
            .ok_or_else(ApiError::no_route),
        (["apis", g], _) => discovery::api_group(g)
            .map(|d| discovery_response(legacy, &d, false))
            .ok_or_else(ApiError::no_route),
        (["apis", g, v], _) => discovery::api_resource_list(g, v)
            .map(|d| discovery_response(legacy, &d, false))
            .ok_or_else(ApiError::no_route),
        _ => Err(ApiError::no_route()),
    })
}
