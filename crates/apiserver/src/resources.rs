//! The runtime catalogue: every resource a server serves, as a catalogue row
//! (`rudder_api::catalogue`) with its kind's strategy and hooks, and the discovery documents.

use std::sync::{Arc, RwLock};

use axum::body::Body;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use rudder_api::catalogue::{self, ResourceType};
use rudder_api::conversion::Conversion;
use rudder_api::discovery::{self, Discovery, DiscoveryFormat};
use rudder_api::strategy::{self, Strategy};

use crate::error::ApiError;
use crate::hooks::Hooks;
use crate::registry::Res;

/// A served resource with everything the handlers need.
#[derive(Clone, Debug)]
pub struct Served {
    pub rt: &'static ResourceType,
    pub res: Res,
}

/// The row's served resource with the given strategy and hooks; `None` if it is not stored.
fn served(
    rt: &'static ResourceType,
    strategy: Arc<dyn Strategy>,
    hooks: Option<Arc<dyn Hooks>>,
) -> Option<Served> {
    let storage = rt.storage?;
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
            hooks,
        },
    })
}

/// Every resource one server serves, each with its kind's strategy and hooks. The built-in
/// kinds are there from the start; a kind may join (or leave) while serving, and is served
/// from the next request on: requests take a snapshot, writers swap in a new one.
pub struct Resources {
    now: RwLock<Arc<Snapshot>>,
}

/// What is served at one moment, and its discovery documents.
pub struct Snapshot {
    pub served: Vec<Served>,
    pub discovery: Discovery,
}

impl Snapshot {
    fn new(served: Vec<Served>) -> Snapshot {
        // Review rows are answered, never stored: they are served by every server.
        let rows = catalogue::RESOURCES
            .iter()
            .filter(|rt| rt.storage.is_none())
            .chain(served.iter().map(|s| s.rt))
            .collect();
        Snapshot {
            discovery: Discovery::new(rows),
            served,
        }
    }
}

impl Resources {
    /// The built-in catalogue, every stored row with its strategy; `hooks` gives a row's hooks.
    pub fn built_in(hooks: impl Fn(&ResourceType) -> Option<Arc<dyn Hooks>>) -> Resources {
        let served = catalogue::RESOURCES
            .iter()
            .filter_map(|rt| {
                let strategy = strategy::built_in(rt.group, rt.kind)?;
                served(rt, Arc::new(strategy), hooks(rt))
            })
            .collect();
        Resources {
            now: RwLock::new(Arc::new(Snapshot::new(served))),
        }
    }

    /// What is served now.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.now
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The served resource at `/api[s]/<group>/<version>/<plural>`, if it is stored.
    pub fn resolve(&self, group: &str, version: &str, plural: &str) -> Option<Served> {
        self.snapshot()
            .served
            .iter()
            .find(|s| s.rt.group == group && s.rt.version == version && s.rt.plural == plural)
            .cloned()
    }

    /// Serves `rt` from now on (in place of a row with the same group, version and resource).
    pub fn add(
        &self,
        rt: &'static ResourceType,
        strategy: Arc<dyn Strategy>,
        hooks: Option<Arc<dyn Hooks>>,
    ) -> Result<(), String> {
        let new = served(rt, strategy, hooks)
            .ok_or_else(|| format!("{}/{} has no storage", rt.api_version(), rt.plural))?;
        self.swap(|rows| {
            rows.retain(|s| !same_row(s.rt, rt.group, rt.version, rt.plural));
            rows.push(new);
        });
        Ok(())
    }

    /// Stops serving `/apis/<group>/<version>/<plural>`; whether it was served.
    pub fn remove(&self, group: &str, version: &str, plural: &str) -> bool {
        let mut found = false;
        self.swap(|rows| {
            let before = rows.len();
            rows.retain(|s| !same_row(s.rt, group, version, plural));
            found = rows.len() != before;
        });
        found
    }

    fn swap(&self, change: impl FnOnce(&mut Vec<Served>)) {
        let mut guard = self
            .now
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut rows = guard.served.clone();
        change(&mut rows);
        *guard = Arc::new(Snapshot::new(rows));
    }
}

fn same_row(rt: &ResourceType, group: &str, version: &str, plural: &str) -> bool {
    rt.group == group && rt.version == version && rt.plural == plural
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
    docs: &Discovery,
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
        (["api"], DiscoveryFormat::Aggregated(v)) => {
            Ok(discovery_response(format, &docs.aggregated_api(v), true))
        }
        (["apis"], DiscoveryFormat::Aggregated(v)) => {
            Ok(discovery_response(format, &docs.aggregated_apis(v), true))
        }
        (["api"], _) => Ok(discovery_response(
            legacy,
            &docs.api_versions(server_address),
            true,
        )),
        (["apis"], _) => Ok(discovery_response(legacy, &docs.api_group_list(), true)),
        (["api", v], _) => docs
            .api_resource_list("", v)
            .map(|d| discovery_response(legacy, &d, false))
            .ok_or_else(ApiError::no_route),
        (["apis", g], _) => docs
            .api_group(g)
            .map(|d| discovery_response(legacy, &d, false))
            .ok_or_else(ApiError::no_route),
        (["apis", g, v], _) => docs
            .api_resource_list(g, v)
            .map(|d| discovery_response(legacy, &d, false))
            .ok_or_else(ApiError::no_route),
        _ => Err(ApiError::no_route()),
    })
}
