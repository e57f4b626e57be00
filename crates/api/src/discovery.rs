//! Discovery documents built from the [`catalogue`](crate::catalogue): `/api`, `/api/v1`,
//! `/apis`, `/apis/<group>`, `/apis/<group>/<version>`, and aggregated discovery
//! (`apidiscovery.k8s.io/v2` and `v2beta1` `APIGroupDiscoveryList`) for `/api` and `/apis`.
//! Pure data: the HTTP layer picks the document with [`negotiate`] and writes the headers
//! described below.
//!
//! # Aggregated discovery content negotiation (facts the HTTP layer must honour)
//!
//! **What kubectl sends.** On `GET /api` and `GET /apis` (and only there) client-go's discovery
//! client sends one `Accept` header listing the formats it can read, most preferred first:
//!
//! - kubectl 1.27.x–1.29.x (client-go v0.27–v0.29):
//!   `application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json`
//! - kubectl 1.30.x–1.33.x (client-go v0.30–v0.33):
//!   `application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json`
//!
//! (Parameter order in the request is always `g`, `v`, `as`; no `q` weights, no spaces.)
//! Requests for group/version lists (`/api/v1`, `/apis/<g>/<v>`) and group documents carry no
//! `as=` parameter and always get the legacy (unaggregated) JSON. Later clients (1.34+) may put
//! `…;as=APIGroupDiscoveryList;profile=nopeer` first and eventually drop v2beta1; picking the
//! first clause the server can satisfy handles both.
//!
//! **What the server must answer.** Pick the first acceptable clause in the client's order
//! (v2 before v2beta1 before plain JSON) and answer with exactly
//! `Content-Type: application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList`
//! (or the same with `v=v2beta1`), body an `APIGroupDiscoveryList` whose `apiVersion` is
//! `apidiscovery.k8s.io/v2` (resp. `v2beta1`); the legacy answer is exactly
//! `Content-Type: application/json`. Spell them exactly like that — `application/json` then
//! `;g=`, `;v=`, `;as=`, no spaces, no `charset` — because kubectl 1.27.0 and 1.27.1 compare the
//! whole Content-Type string for equality and accept only those two strings (anything else is
//! the error "Unknown discovery response content-type"). From 1.27.2 on, client-go parses the
//! media type (`mime.ParseMediaType`) and checks base type `application/json` plus the `g`,
//! `v`, `as` parameters, so parameter order and extra parameters no longer matter. Upstream
//! builds the value by appending `;g=…;v=…;as=…` to `application/json`, which is the
//! spelling of [`CONTENT_TYPE_AGGREGATED_V2`] / [`CONTENT_TYPE_AGGREGATED_V2BETA1`].
//! A 1.27–1.29 client never asked for v2: answering it with v2 makes it decode the body as
//! legacy `APIVersions`/`APIGroupList` and see an empty cluster, so never answer a version the
//! client did not list. (Upstream 1.33 itself no longer serves v2beta1 by default, so 1.27–1.29
//! kubectl falls back to legacy discovery there; Rudder serves both.)
//!
//! **If the server answers plain legacy JSON** (`Content-Type: application/json`, body
//! `APIVersions` for `/api`, `APIGroupList` for `/apis`) kubectl works: client-go treats any
//! response that is not the aggregated content type as unaggregated discovery, reads the
//! group/version list from it, then fetches `/api/v1` and every `/apis/<group>/<version>`
//! separately (one request per group-version). It only uses aggregated resources when *both*
//! `/api` and `/apis` came back aggregated; if either is legacy it falls back to per
//! group-version requests. The failure mode to avoid is the mix-up: an aggregated body labelled
//! `application/json` is decoded as `APIVersions`/`APIGroupList`, finds no versions or groups,
//! and kubectl reports that the server has no resource types.
//!
//! **`Vary: Accept`.** Upstream sets `Vary: Accept`, `Cache-Control: public` and
//! `ETag: "<upper-case hex SHA-512 of the JSON document>"` on aggregated responses and answers
//! `304 Not Modified` (no body) when `If-None-Match` equals that quoted ETag. kubectl keeps an
//! HTTP cache on disk (`~/.kube/cache/http`, gregjones/httpcache) keyed by URL only; it honours
//! `Vary` by recording the request's `Accept` with the cached entry and reusing (or revalidating
//! with `If-None-Match`) only when the new request's `Accept` is identical. Because `/api` and
//! `/apis` serve two representations under one URL, send `Vary: Accept` on both the aggregated
//! and the legacy response of those two paths (upstream only sets it on the aggregated one;
//! setting it on both is harmless). Without it discovery still works on a cold cache, but a
//! cached legacy body can be replayed, with its old Content-Type, to a request that wanted the
//! aggregated one (or the reverse) when an ETag revalidation answers 304. An ETag is optional;
//! if one is sent it must differ between the legacy and aggregated representations or be
//! accompanied by `Vary: Accept`.
//!
//! # Documents
//!
//! The builders mirror upstream's output: resources sorted by name; subresources as
//! `"<resource>/<sub>"` entries (legacy) or `subresources[]` (aggregated) with empty
//! `singularName` in legacy lists; verbs sorted; `group`/`version` (legacy) or a non-empty
//! `responseKind.group`/`version` (aggregated) only for subresources whose object lives in another
//! group/version (`autoscaling/v1` Scale, `policy/v1` Eviction) — for everything else upstream
//! reports `responseKind` with empty group and version and the client reads them from the
//! enclosing group/version. `storageVersionHash` appears in legacy lists only. Every aggregated
//! version entry has `freshness: "Current"`; versions are listed preferred first; groups in
//! `/apis` order.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    APIGroup, APIGroupList, APIResource, APIResourceList, APIVersions, GroupVersionForDiscovery,
    ListMeta, ObjectMeta, ServerAddressByClientCIDR,
};
use serde::{Deserialize, Serialize};

use std::cmp::Reverse;

use crate::catalogue::{self, ResourceType, Scope, Subresource, API_GROUPS};

/// Content-Type of every legacy discovery document (exact spelling; see module docs).
pub const CONTENT_TYPE_JSON: &str = "application/json";
/// Content-Type of an `apidiscovery.k8s.io/v2` aggregated document (exact spelling).
pub const CONTENT_TYPE_AGGREGATED_V2: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";
/// Content-Type of an `apidiscovery.k8s.io/v2beta1` aggregated document (exact spelling).
pub const CONTENT_TYPE_AGGREGATED_V2BETA1: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList";

/// The group of the aggregated discovery types.
pub const AGGREGATED_GROUP: &str = "apidiscovery.k8s.io";
/// Kind of the aggregated discovery document.
pub const AGGREGATED_LIST_KIND: &str = "APIGroupDiscoveryList";

/// Version of the aggregated discovery format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AggregatedVersion {
    /// `apidiscovery.k8s.io/v2` (asked for first by kubectl 1.30+).
    V2,
    /// `apidiscovery.k8s.io/v2beta1` (the only one kubectl 1.27–1.29 ask for).
    V2Beta1,
}

impl AggregatedVersion {
    pub const fn version(self) -> &'static str {
        match self {
            AggregatedVersion::V2 => "v2",
            AggregatedVersion::V2Beta1 => "v2beta1",
        }
    }

    /// `apiVersion` of the document.
    pub const fn api_version(self) -> &'static str {
        match self {
            AggregatedVersion::V2 => "apidiscovery.k8s.io/v2",
            AggregatedVersion::V2Beta1 => "apidiscovery.k8s.io/v2beta1",
        }
    }

    /// The exact `Content-Type` to answer with.
    pub const fn content_type(self) -> &'static str {
        match self {
            AggregatedVersion::V2 => CONTENT_TYPE_AGGREGATED_V2,
            AggregatedVersion::V2Beta1 => CONTENT_TYPE_AGGREGATED_V2BETA1,
        }
    }

    fn from_version(v: &str) -> Option<Self> {
        match v {
            "v2" => Some(AggregatedVersion::V2),
            "v2beta1" => Some(AggregatedVersion::V2Beta1),
            _ => None,
        }
    }
}

/// Which representation of a discovery endpoint to serve.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DiscoveryFormat {
    /// `APIVersions` / `APIGroupList` / `APIGroup` / `APIResourceList` as `application/json`.
    Legacy,
    /// `APIGroupDiscoveryList` (only for `/api` and `/apis`).
    Aggregated(AggregatedVersion),
}

impl DiscoveryFormat {
    /// The exact `Content-Type` for the response.
    pub const fn content_type(self) -> &'static str {
        match self {
            DiscoveryFormat::Legacy => CONTENT_TYPE_JSON,
            DiscoveryFormat::Aggregated(v) => v.content_type(),
        }
    }
}

/// Chooses the representation for a discovery request from its `Accept` header.
///
/// `aggregated_allowed` is true for `/api` and `/apis` only. Clauses are considered by
/// descending `q` (default 1) and then in the client's order; the first one the server can
/// satisfy wins: `application/json`, `application/*` or `*/*` without `g`/`v`/`as` selects
/// [`DiscoveryFormat::Legacy`]; with `g=apidiscovery.k8s.io;v=v2|v2beta1;as=APIGroupDiscoveryList`
/// it selects the aggregated document (when allowed). Clauses with other media types, other
/// `g`/`v`/`as` values or unknown parameters are skipped, as upstream does. A missing or empty
/// header means legacy JSON. `None` means nothing acceptable: answer 406 Not Acceptable.
pub fn negotiate(accept: Option<&str>, aggregated_allowed: bool) -> Option<DiscoveryFormat> {
    let accept = accept.map(str::trim).unwrap_or("");
    if accept.is_empty() {
        return Some(DiscoveryFormat::Legacy);
    }
    let mut best: Option<(f32, DiscoveryFormat)> = None;
    for clause in accept.split(',') {
        let Some((q, format)) = clause_format(clause, aggregated_allowed) else {
            continue;
        };
        if best.is_none_or(|(best_q, _)| q > best_q) {
            best = Some((q, format));
        }
    }
    best.map(|(_, format)| format)
}

/// The format a single `Accept` clause selects and its weight, if the server can satisfy it.
fn clause_format(clause: &str, aggregated_allowed: bool) -> Option<(f32, DiscoveryFormat)> {
    let mut parts = clause.split(';');
    let media = parts.next()?.trim().to_ascii_lowercase();
    if !matches!(media.as_str(), "application/json" | "application/*" | "*/*") {
        return None;
    }
    let (mut group, mut version, mut kind) = (None, None, None);
    let mut q = 1.0_f32;
    for param in parts {
        let param = param.trim();
        if param.is_empty() {
            continue;
        }
        let (key, value) = param.split_once('=')?;
        let value = value.trim().trim_matches('"');
        match key.trim().to_ascii_lowercase().as_str() {
            "g" => group = Some(value),
            "v" => version = Some(value),
            "as" => kind = Some(value),
            "q" => q = value.parse().ok()?,
            "pretty" | "charset" => {}
            _ => return None,
        }
    }
    if q <= 0.0 {
        return None;
    }
    if group.is_none() && version.is_none() && kind.is_none() {
        return Some((q, DiscoveryFormat::Legacy));
    }
    if !aggregated_allowed || group != Some(AGGREGATED_GROUP) || kind != Some(AGGREGATED_LIST_KIND)
    {
        return None;
    }
    let version = AggregatedVersion::from_version(version?)?;
    Some((q, DiscoveryFormat::Aggregated(version)))
}

// ---------------------------------------------------------------------------------------------
// Legacy (unaggregated) documents.

/// A served group and its versions, preferred first.
#[derive(Clone, Debug)]
struct Group {
    name: &'static str,
    versions: Vec<&'static str>,
}

/// What discovery describes: the served rows (built-in ones and kinds added while serving) and
/// their groups: the built-in groups in upstream's `/apis` order, then any other by name, as
/// upstream orders groups of equal priority.
#[derive(Clone, Debug)]
pub struct Discovery {
    rows: Vec<&'static ResourceType>,
    core: Group,
    groups: Vec<Group>,
}

/// Sort key of Kubernetes' version order (`k8s.io/apimachinery/pkg/version`): GA before beta
/// before alpha, higher numbers first; anything else after them, by name.
fn version_order(v: &str) -> (u8, Reverse<u64>, Reverse<u64>, String) {
    let parse = |v: &str| -> Option<(u8, u64, u64)> {
        let rest = v.strip_prefix('v')?;
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let major: u64 = rest[..digits].parse().ok()?;
        match &rest[digits..] {
            "" => Some((0, major, 0)),
            tail => {
                let (level, n) = match tail.strip_prefix("beta") {
                    Some(n) => (1, n),
                    None => (2, tail.strip_prefix("alpha")?),
                };
                Some((level, major, n.parse().ok()?))
            }
        }
    };
    match parse(v) {
        Some((level, major, minor)) => (level, Reverse(major), Reverse(minor), String::new()),
        None => (3, Reverse(0), Reverse(0), v.to_string()),
    }
}

impl Discovery {
    /// Discovery of the built-in catalogue.
    pub fn built_in() -> Discovery {
        Discovery::new(catalogue::RESOURCES.iter().collect())
    }

    /// Discovery of `rows`.
    pub fn new(rows: Vec<&'static ResourceType>) -> Discovery {
        let group = |name: &'static str| {
            let mut versions: Vec<&'static str> = Vec::new();
            for r in rows.iter().filter(|r| r.group == name) {
                if !versions.contains(&r.version) {
                    versions.push(r.version);
                }
            }
            match catalogue::api_group(name) {
                // Built-in groups keep upstream's order; versions added to them go last.
                Some(g) => versions
                    .sort_by_key(|v| g.versions.iter().position(|x| x == v).unwrap_or(usize::MAX)),
                None => versions.sort_by_key(|v| version_order(v)),
            }
            Group { name, versions }
        };
        let mut others: Vec<&'static str> = rows
            .iter()
            .map(|r| r.group)
            .filter(|g| !g.is_empty() && catalogue::api_group(g).is_none())
            .collect();
        others.sort_unstable();
        others.dedup();
        let groups = API_GROUPS
            .iter()
            .map(|g| g.name)
            .chain(others)
            .map(group)
            .filter(|g| !g.versions.is_empty())
            .collect();
        Discovery {
            core: group(""),
            groups,
            rows,
        }
    }

    /// Rows served in `group`/`version`.
    fn resources_in<'a>(
        &'a self,
        group: &'a str,
        version: &'a str,
    ) -> impl Iterator<Item = &'static ResourceType> + 'a {
        self.rows
            .iter()
            .copied()
            .filter(move |r| r.group == group && r.version == version)
    }

    /// `GET /api`: the core versions and the address clients should use
    /// (`clientCIDR` `0.0.0.0/0` → `server_address`, e.g. `"10.0.0.5:6443"`).
    pub fn api_versions(&self, server_address: &str) -> APIVersions {
        APIVersions {
            server_address_by_client_cidrs: vec![ServerAddressByClientCIDR {
                client_cidr: "0.0.0.0/0".to_string(),
                server_address: server_address.to_string(),
            }],
            versions: self.core.versions.iter().map(|v| v.to_string()).collect(),
        }
    }

    /// `GET /apis`: every group in `/apis` order, versions preferred first.
    pub fn api_group_list(&self) -> APIGroupList {
        APIGroupList {
            groups: self.groups.iter().map(group_document).collect(),
        }
    }

    /// `GET /apis/<group>`; `None` for groups not served (answer 404). The core group has no
    /// such document.
    pub fn api_group(&self, name: &str) -> Option<APIGroup> {
        self.groups
            .iter()
            .find(|g| g.name == name)
            .map(group_document)
    }

    /// `GET /api/v1` (group `""`) or `GET /apis/<group>/<version>`; `None` if not served.
    pub fn api_resource_list(&self, group: &str, version: &str) -> Option<APIResourceList> {
        let mut resources = Vec::new();
        for row in self.resources_in(group, version) {
            resources.push(legacy_resource(row));
            for sub in row.subresources {
                resources.push(legacy_subresource(row, sub));
            }
        }
        if resources.is_empty() {
            return None;
        }
        // Upstream lists "pods", "pods/attach", …, "podtemplates" in plain string order.
        resources.sort_by(|a, b| a.name.cmp(&b.name));
        Some(APIResourceList {
            group_version: catalogue::api_version(group, version),
            resources,
        })
    }

    /// Aggregated `GET /api`: one item for the core group (no name).
    pub fn aggregated_api(&self, version: AggregatedVersion) -> APIGroupDiscoveryList {
        self.aggregated_list(version, std::slice::from_ref(&self.core))
    }

    /// Aggregated `GET /apis`: every group in `/apis` order.
    pub fn aggregated_apis(&self, version: AggregatedVersion) -> APIGroupDiscoveryList {
        self.aggregated_list(version, &self.groups)
    }

    fn aggregated_list(
        &self,
        version: AggregatedVersion,
        groups: &[Group],
    ) -> APIGroupDiscoveryList {
        APIGroupDiscoveryList {
            api_version: version.api_version().to_string(),
            kind: AGGREGATED_LIST_KIND.to_string(),
            metadata: ListMeta::default(),
            items: groups.iter().map(|g| self.aggregated_group(g)).collect(),
        }
    }

    fn aggregated_group(&self, group: &Group) -> APIGroupDiscovery {
        APIGroupDiscovery {
            metadata: ObjectMeta {
                name: (!group.name.is_empty()).then(|| group.name.to_string()),
                ..ObjectMeta::default()
            },
            versions: group
                .versions
                .iter()
                .map(|v| APIVersionDiscovery {
                    version: v.to_string(),
                    resources: aggregated_resources(self.resources_in(group.name, v)),
                    freshness: Some(Freshness::Current),
                })
                .collect(),
        }
    }
}

fn group_document(group: &Group) -> APIGroup {
    let version_entry = |v: &str| GroupVersionForDiscovery {
        group_version: catalogue::api_version(group.name, v),
        version: v.to_string(),
    };
    APIGroup {
        name: group.name.to_string(),
        preferred_version: group.versions.first().map(|v| version_entry(v)),
        server_address_by_client_cidrs: None,
        versions: group.versions.iter().map(|v| version_entry(v)).collect(),
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn non_empty(items: &[&str]) -> Option<Vec<String>> {
    (!items.is_empty()).then(|| strings(items))
}

fn verb_names(verbs: &[catalogue::Verb]) -> Vec<String> {
    verbs.iter().map(|v| v.as_str().to_string()).collect()
}

fn legacy_resource(row: &ResourceType) -> APIResource {
    APIResource {
        categories: non_empty(row.categories),
        group: None,
        kind: row.kind.to_string(),
        name: row.plural.to_string(),
        namespaced: row.namespaced(),
        short_names: non_empty(row.short_names),
        singular_name: row.singular.to_string(),
        storage_version_hash: row.storage.map(|s| s.version_hash.to_string()),
        verbs: verb_names(row.verbs),
        version: None,
    }
}

fn legacy_subresource(row: &ResourceType, sub: &Subresource) -> APIResource {
    APIResource {
        categories: None,
        group: sub.object_group_version.map(|gv| gv.group.to_string()),
        kind: sub.kind.to_string(),
        name: format!("{}/{}", row.plural, sub.name),
        namespaced: row.namespaced(),
        short_names: None,
        singular_name: String::new(),
        storage_version_hash: None,
        verbs: verb_names(sub.verbs),
        version: sub.object_group_version.map(|gv| gv.version.to_string()),
    }
}

// ---------------------------------------------------------------------------------------------
// Aggregated discovery (apidiscovery.k8s.io v2 / v2beta1; both versions have the same fields).
// k8s-openapi has no types for this group, so they are defined here.

/// `apidiscovery.k8s.io` `APIGroupDiscoveryList`: the body of aggregated `/api` and `/apis`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct APIGroupDiscoveryList {
    pub api_version: String,
    pub kind: String,
    #[serde(default)]
    pub metadata: ListMeta,
    /// Groups in priority order.
    pub items: Vec<APIGroupDiscovery>,
}

/// One API group; `metadata.name` is the group name (absent for the core group).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct APIGroupDiscovery {
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Preferred version first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub versions: Vec<APIVersionDiscovery>,
}

/// Whether a version's resource list is up to date.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Freshness {
    Current,
    Stale,
}

/// One version of a group and its resources.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct APIVersionDiscovery {
    pub version: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<APIResourceDiscovery>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freshness: Option<Freshness>,
}

/// Group, version and kind as aggregated discovery spells them (all three always present).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupVersionKind {
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub kind: String,
}

/// One resource of a group version.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct APIResourceDiscovery {
    /// Plural resource name.
    pub resource: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_kind: Option<GroupVersionKind>,
    pub scope: Scope,
    #[serde(default)]
    pub singular_resource: String,
    #[serde(default)]
    pub verbs: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub short_names: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub categories: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subresources: Vec<APISubresourceDiscovery>,
}

/// One subresource of a resource.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct APISubresourceDiscovery {
    /// The path segment after the object name (`status`, `scale`, …).
    pub subresource: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_kind: Option<GroupVersionKind>,
    /// Kinds the subresource accepts; upstream leaves it empty for built-in resources.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accepted_types: Vec<GroupVersionKind>,
    #[serde(default)]
    pub verbs: Vec<String>,
}

fn aggregated_resources(
    rows: impl Iterator<Item = &'static ResourceType>,
) -> Vec<APIResourceDiscovery> {
    let mut resources: Vec<_> = rows
        .map(|row| APIResourceDiscovery {
            resource: row.plural.to_string(),
            response_kind: Some(GroupVersionKind {
                group: String::new(),
                version: String::new(),
                kind: row.kind.to_string(),
            }),
            scope: row.scope,
            singular_resource: row.singular.to_string(),
            verbs: verb_names(row.verbs),
            short_names: strings(row.short_names),
            categories: strings(row.categories),
            subresources: row
                .subresources
                .iter()
                .map(aggregated_subresource)
                .collect(),
        })
        .collect();
    resources.sort_by(|a, b| a.resource.cmp(&b.resource));
    resources
}

fn aggregated_subresource(sub: &Subresource) -> APISubresourceDiscovery {
    let (group, version) = sub
        .object_group_version
        .map(|gv| (gv.group.to_string(), gv.version.to_string()))
        .unwrap_or_default();
    APISubresourceDiscovery {
        subresource: sub.name.to_string(),
        response_kind: Some(GroupVersionKind {
            group,
            version,
            kind: sub.kind.to_string(),
        }),
        accepted_types: Vec::new(),
        verbs: verb_names(sub.verbs),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::de::DeserializeOwned;
    use serde_json::{json, Value};

    /// Serializes, parses back into the same type, and checks nothing was lost.
    fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(doc: &T) -> Value {
        let value = serde_json::to_value(doc).expect("serialize");
        let back: T = serde_json::from_value(value.clone()).expect("deserialize");
        assert_eq!(&back, doc);
        value
    }

    fn find<'a>(list: &'a Value, field: &str, name: &str) -> &'a Value {
        list.as_array()
            .and_then(|items| items.iter().find(|r| r[field] == name))
            .unwrap_or_else(|| panic!("{name} not found"))
    }

    #[test]
    fn api_versions_document() {
        let doc = Discovery::built_in().api_versions("10.0.0.5:6443");
        let v = round_trip(&doc);
        assert_eq!(v["kind"], "APIVersions");
        assert_eq!(v["versions"], json!(["v1"]));
        assert_eq!(
            v["serverAddressByClientCIDRs"],
            json!([{"clientCIDR": "0.0.0.0/0", "serverAddress": "10.0.0.5:6443"}])
        );
    }

    #[test]
    fn core_v1_resource_list() {
        let doc = Discovery::built_in()
            .api_resource_list("", "v1")
            .expect("core v1");
        let v = round_trip(&doc);
        assert_eq!(v["kind"], "APIResourceList");
        assert_eq!(v["groupVersion"], "v1");
        let resources = &v["resources"];
        let pods = find(resources, "name", "pods");
        assert_eq!(pods["shortNames"], json!(["po"]));
        assert_eq!(pods["categories"], json!(["all"]));
        assert_eq!(pods["singularName"], "pod");
        assert_eq!(pods["namespaced"], true);
        assert_eq!(pods["kind"], "Pod");
        assert_eq!(pods["storageVersionHash"], "xPOwRZ+Yhw8=");
        assert!(pods["verbs"].as_array().unwrap().contains(&json!("watch")));
        assert!(pods.get("group").is_none());
        let status = find(resources, "name", "pods/status");
        assert_eq!(status["kind"], "Pod");
        assert_eq!(status["singularName"], "");
        assert_eq!(status["verbs"], json!(["get", "patch", "update"]));
        assert!(status.get("storageVersionHash").is_none());
        let eviction = find(resources, "name", "pods/eviction");
        assert_eq!(
            (&eviction["group"], &eviction["version"]),
            (&json!("policy"), &json!("v1"))
        );
        assert_eq!(eviction["kind"], "Eviction");
        let binding = find(resources, "name", "pods/binding");
        assert_eq!(binding["kind"], "Binding");
        assert!(binding.get("group").is_none());
        let rc_scale = find(resources, "name", "replicationcontrollers/scale");
        assert_eq!(rc_scale["group"], "autoscaling");
        assert_eq!(rc_scale["kind"], "Scale");
        let ns = find(resources, "name", "namespaces");
        assert_eq!(ns["namespaced"], false);
        assert!(!ns["verbs"]
            .as_array()
            .unwrap()
            .contains(&json!("deletecollection")));
        // Plain string order, as upstream: pods, pods/attach, …, pods/status, podtemplates.
        let names: Vec<&str> = resources
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
        let pods_at = names.iter().position(|n| *n == "pods").unwrap();
        assert_eq!(names[pods_at + 8], "pods/status");
        assert_eq!(names[pods_at + 9], "podtemplates");
    }

    #[test]
    fn group_resource_lists() {
        let apps = Discovery::built_in()
            .api_resource_list("apps", "v1")
            .expect("apps/v1");
        let v = round_trip(&apps);
        assert_eq!(v["groupVersion"], "apps/v1");
        assert_eq!(v["apiVersion"], "v1");
        let scale = find(&v["resources"], "name", "deployments/scale");
        assert_eq!(scale["group"], "autoscaling");
        assert_eq!(scale["version"], "v1");
        assert_eq!(scale["kind"], "Scale");
        assert!(Discovery::built_in()
            .api_resource_list("autoscaling", "v1")
            .is_some());
        assert!(Discovery::built_in()
            .api_resource_list("autoscaling", "v2")
            .is_some());
        assert!(Discovery::built_in()
            .api_resource_list("apps", "v1beta1")
            .is_none());
        assert!(Discovery::built_in()
            .api_resource_list("extensions", "v1beta1")
            .is_none());
        let ssar = Discovery::built_in()
            .api_resource_list("authorization.k8s.io", "v1")
            .unwrap();
        let v = round_trip(&ssar);
        let r = find(&v["resources"], "name", "selfsubjectaccessreviews");
        assert_eq!(r["verbs"], json!(["create"]));
        assert!(r.get("storageVersionHash").is_none());
    }

    #[test]
    fn group_list_and_groups() {
        let v = round_trip(&Discovery::built_in().api_group_list());
        assert_eq!(v["kind"], "APIGroupList");
        let groups = v["groups"].as_array().unwrap();
        // As upstream: the aggregator's own group first (priority 20001), then by priority.
        assert_eq!(groups[0]["name"], "apiregistration.k8s.io");
        assert_eq!(groups[1]["name"], "apps");
        assert_eq!(groups[2]["name"], "events.k8s.io");
        let autoscaling = find(&v["groups"], "name", "autoscaling");
        assert_eq!(
            autoscaling["versions"],
            json!([
                {"groupVersion": "autoscaling/v2", "version": "v2"},
                {"groupVersion": "autoscaling/v1", "version": "v1"}
            ])
        );
        assert_eq!(
            autoscaling["preferredVersion"],
            json!({"groupVersion": "autoscaling/v2", "version": "v2"})
        );
        assert!(autoscaling.get("serverAddressByClientCIDRs").is_none());
        let g = Discovery::built_in().api_group("batch").expect("batch");
        let v = round_trip(&g);
        assert_eq!(v["kind"], "APIGroup");
        assert_eq!(v["preferredVersion"]["groupVersion"], "batch/v1");
        assert!(Discovery::built_in().api_group("").is_none());
        assert!(Discovery::built_in().api_group("extensions").is_none());
    }

    #[test]
    fn aggregated_core() {
        for version in [AggregatedVersion::V2, AggregatedVersion::V2Beta1] {
            let doc = Discovery::built_in().aggregated_api(version);
            let v = round_trip(&doc);
            assert_eq!(v["apiVersion"], version.api_version());
            assert_eq!(v["kind"], "APIGroupDiscoveryList");
            let items = v["items"].as_array().unwrap();
            assert_eq!(items.len(), 1);
            assert!(
                items[0]["metadata"].get("name").is_none(),
                "core group has no name"
            );
            let versions = items[0]["versions"].as_array().unwrap();
            assert_eq!(versions.len(), 1);
            assert_eq!(versions[0]["version"], "v1");
            assert_eq!(versions[0]["freshness"], "Current");
            let pods = find(&versions[0]["resources"], "resource", "pods");
            assert_eq!(pods["scope"], "Namespaced");
            assert_eq!(pods["singularResource"], "pod");
            assert_eq!(pods["shortNames"], json!(["po"]));
            assert_eq!(pods["categories"], json!(["all"]));
            assert_eq!(
                pods["responseKind"],
                json!({"group": "", "version": "", "kind": "Pod"})
            );
            assert!(pods["verbs"].as_array().unwrap().contains(&json!("watch")));
            let subs = &pods["subresources"];
            let status = find(subs, "subresource", "status");
            assert_eq!(status["verbs"], json!(["get", "patch", "update"]));
            assert_eq!(status["responseKind"]["kind"], "Pod");
            let eviction = find(subs, "subresource", "eviction");
            assert_eq!(
                eviction["responseKind"],
                json!({"group": "policy", "version": "v1", "kind": "Eviction"})
            );
            assert!(eviction.get("acceptedTypes").is_none());
            let nodes = find(&versions[0]["resources"], "resource", "nodes");
            assert_eq!(nodes["scope"], "Cluster");
            let secrets = find(&versions[0]["resources"], "resource", "secrets");
            assert!(secrets.get("shortNames").is_none());
            assert!(secrets.get("subresources").is_none());
        }
    }

    #[test]
    fn aggregated_groups() {
        let v = round_trip(&Discovery::built_in().aggregated_apis(AggregatedVersion::V2));
        assert_eq!(v["apiVersion"], "apidiscovery.k8s.io/v2");
        let items = v["items"].as_array().unwrap();
        let names: Vec<&str> = items
            .iter()
            .map(|i| i["metadata"]["name"].as_str().unwrap())
            .collect();
        let expect: Vec<&str> = API_GROUPS.iter().map(|g| g.name).collect();
        assert_eq!(names, expect);
        assert!(!names.contains(&""));
        assert_eq!(names[0], "apiregistration.k8s.io");
        assert_eq!(names[1], "apps");
        assert!(names.contains(&"autoscaling"));
        // The same order as the legacy /apis document.
        let legacy: Vec<String> = Discovery::built_in()
            .api_group_list()
            .groups
            .into_iter()
            .map(|g| g.name)
            .collect();
        assert_eq!(names, legacy);
        for item in items {
            for ver in item["versions"].as_array().unwrap() {
                assert_eq!(ver["freshness"], "Current");
            }
        }
    }

    #[test]
    fn aggregated_versions_preferred_first() {
        let v = round_trip(&Discovery::built_in().aggregated_apis(AggregatedVersion::V2Beta1));
        assert_eq!(v["apiVersion"], "apidiscovery.k8s.io/v2beta1");
        let items = v["items"].as_array().unwrap();
        let group = |name: &str| {
            items
                .iter()
                .find(|i| i["metadata"]["name"] == name)
                .unwrap_or_else(|| panic!("{name}"))
        };
        let autoscaling = group("autoscaling");
        let versions: Vec<&str> = autoscaling["versions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["version"].as_str().unwrap())
            .collect();
        assert_eq!(versions, ["v2", "v1"]);
        for ver in autoscaling["versions"].as_array().unwrap() {
            assert_eq!(ver["freshness"], "Current");
            let hpa = find(&ver["resources"], "resource", "horizontalpodautoscalers");
            assert_eq!(hpa["shortNames"], json!(["hpa"]));
            assert_eq!(hpa["categories"], json!(["all"]));
        }
        let apps = group("apps");
        let deploy = find(&apps["versions"][0]["resources"], "resource", "deployments");
        assert_eq!(deploy["shortNames"], json!(["deploy"]));
        let scale = find(&deploy["subresources"], "subresource", "scale");
        assert_eq!(
            scale["responseKind"],
            json!({"group": "autoscaling", "version": "v1", "kind": "Scale"})
        );
        let status = find(&deploy["subresources"], "subresource", "status");
        assert_eq!(
            status["responseKind"],
            json!({"group": "", "version": "", "kind": "Deployment"})
        );
        let names: Vec<&str> = apps["versions"][0]["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["resource"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "controllerrevisions",
                "daemonsets",
                "deployments",
                "replicasets",
                "statefulsets"
            ]
        );
    }

    #[test]
    fn aggregated_and_legacy_agree() {
        // Every legacy entry appears in the aggregated documents with the same facts.
        let core = Discovery::built_in().aggregated_api(AggregatedVersion::V2);
        let apis = Discovery::built_in().aggregated_apis(AggregatedVersion::V2);
        for group in core.items.iter().chain(&apis.items) {
            let name = group.metadata.name.clone().unwrap_or_default();
            for ver in &group.versions {
                let legacy = Discovery::built_in()
                    .api_resource_list(&name, &ver.version)
                    .expect("served");
                let mut count = 0;
                for r in &ver.resources {
                    let l = legacy
                        .resources
                        .iter()
                        .find(|l| l.name == r.resource)
                        .expect("res");
                    assert_eq!(l.verbs, r.verbs);
                    assert_eq!(l.namespaced, r.scope == Scope::Namespaced);
                    assert_eq!(l.singular_name, r.singular_resource);
                    assert_eq!(l.short_names.clone().unwrap_or_default(), r.short_names);
                    assert_eq!(l.categories.clone().unwrap_or_default(), r.categories);
                    count += 1;
                    for s in &r.subresources {
                        let path = format!("{}/{}", r.resource, s.subresource);
                        let l = legacy
                            .resources
                            .iter()
                            .find(|l| l.name == path)
                            .expect("sub");
                        assert_eq!(l.verbs, s.verbs);
                        let kind = s.response_kind.as_ref().expect("responseKind");
                        assert_eq!(l.kind, kind.kind);
                        assert_eq!(l.group.clone().unwrap_or_default(), kind.group);
                        count += 1;
                    }
                }
                assert_eq!(count, legacy.resources.len());
            }
        }
    }

    #[test]
    fn negotiation() {
        use AggregatedVersion::{V2Beta1, V2};
        use DiscoveryFormat::{Aggregated, Legacy};
        let kubectl_127 =
            "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        let kubectl_130 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        assert_eq!(
            negotiate(Some(kubectl_127), true),
            Some(Aggregated(V2Beta1))
        );
        assert_eq!(negotiate(Some(kubectl_130), true), Some(Aggregated(V2)));
        assert_eq!(negotiate(Some(kubectl_130), false), Some(Legacy));
        assert_eq!(negotiate(None, true), Some(Legacy));
        assert_eq!(negotiate(Some(""), true), Some(Legacy));
        assert_eq!(negotiate(Some("application/json, */*"), true), Some(Legacy));
        assert_eq!(negotiate(Some("*/*"), true), Some(Legacy));
        // Order-insensitive parameters and spaces.
        assert_eq!(
            negotiate(
                Some("application/json; as=APIGroupDiscoveryList; v=v2; g=apidiscovery.k8s.io"),
                true
            ),
            Some(Aggregated(V2))
        );
        // Unknown versions, kinds or parameters are skipped.
        assert_eq!(
            negotiate(
                Some("application/json;g=apidiscovery.k8s.io;v=v3;as=APIGroupDiscoveryList"),
                true
            ),
            None
        );
        assert_eq!(
            negotiate(
                Some("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList;profile=nopeer,application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"),
                true
            ),
            Some(Aggregated(V2))
        );
        assert_eq!(
            negotiate(Some("application/json;as=Table;v=v1;g=meta.k8s.io"), true),
            None
        );
        assert_eq!(
            negotiate(Some("application/vnd.kubernetes.protobuf"), true),
            None
        );
        assert_eq!(
            negotiate(
                Some("application/vnd.kubernetes.protobuf, application/json"),
                true
            ),
            Some(Legacy)
        );
        // q weights are honoured.
        assert_eq!(
            negotiate(Some("application/json;q=0.5,application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"), true),
            Some(Aggregated(V2))
        );
        assert_eq!(negotiate(Some("application/json;q=0"), true), None);
        assert_eq!(Aggregated(V2).content_type(), CONTENT_TYPE_AGGREGATED_V2);
        assert_eq!(Legacy.content_type(), "application/json");
        assert_eq!(
            Aggregated(V2Beta1).content_type(),
            "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"
        );
    }
}
