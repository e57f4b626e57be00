//! The OpenAPI documents: `/openapi/v3` (an index plus one OpenAPI 3.0 document per served
//! group-version) and `/openapi/v2` (one Swagger 2.0 document, as JSON and as the gnostic
//! protobuf encoding), generated from the resource catalogue.
//!
//! What clients need from them (read from kubectl/client-go/cli-runtime 1.27–1.33):
//! - `create -f`, `apply -f`, `replace -f`, `edit`: cli-runtime looks for the PATCH operation
//!   whose single-map `x-kubernetes-group-version-kind` is the object's GVK and for an inline
//!   `fieldValidation` query parameter on it; found means "the server validates" and kubectl sends
//!   `?fieldValidation=Strict` instead of validating client side (1.29+: v3 only; 1.27/1.28 fetch
//!   `/openapi/v2` first and fail without a 200 protobuf answer).
//! - client-side `apply` (1.29+) computes its strategic merge patch from the v3 document when the
//!   PATCH operation accepts `application/strategic-merge-patch+json`: it takes the
//!   `components.schemas` entry whose `x-kubernetes-group-version-kind` list holds the GVK and
//!   follows `properties`/`items`/`allOf[0]`/`$ref`, reading `x-kubernetes-patch-strategy` and
//!   `x-kubernetes-patch-merge-key` on the way. A list without them is replaced wholesale, so
//!   they must be exactly upstream's and match what [`crate::patch`] does on the server (a unit
//!   test walks every served kind and compares). A PATCH operation whose GVK has no schema here
//!   leaves strategic merge patch out of its request types, which sends kubectl back to its
//!   compiled-in types instead of a wrong patch.
//! - `explain` (1.29+, and 1.27/1.28 after fetching v2): finds the GVK on an operation of the
//!   resource's collection or item path, then renders the schema with that GVK: `description`,
//!   `type`, `properties`, `required`, `items`, `additionalProperties`, `allOf`, `$ref`.
//!
//! Schemas come from k8s-openapi's `schemars` implementations (named as upstream, with upstream's
//! descriptions). k8s-openapi carries neither the patch extensions nor `x-kubernetes-list-type`/
//! `-map-type`, so `FIELD_EXTENSIONS` and `ATOMIC_STRUCTS` below hold them: they are the struct tags
//! and `+listType`/`+listMapKey`/`+mapType`/`+structType` markers of k8s.io/api and
//! k8s.io/apimachinery v0.33.0 for the group-versions served. The v3 documents use upstream's
//! shapes (`allOf: [{$ref}]` where a reference has siblings, IntOrString and Quantity as
//! `oneOf`); v2 keeps `$ref` with sibling descriptions, as upstream's swagger does.
//!
//! The protobuf `/openapi/v2` is the gnostic `openapi.v2.Document` encoding (the message subset
//! written below as prost structs, field numbers from gnostic-models' OpenAPIv2.proto), converted
//! from the JSON document. kubectl 1.27/1.28 parse it with `proto.NewOpenAPIData`, which rejects
//! some valid shapes (an array without exactly one `items`, a `$ref` with a type), so the v2
//! schemas are kept to what it accepts. An empty protobuf document would also do for kubectl
//! 1.27/1.28 (apply and edit then use compiled-in types, explain and the fieldValidation check
//! use v3), but the full one also serves `explain --output=plaintext-openapiv2` (all versions),
//! kubectl 1.27/1.28's OpenAPI-driven patches, and other clients that read v2 schemas; kubectl
//! 1.27–1.33 were run against it (explain, create -f, apply -f, edit).
//!
//! Every document is built once, on first use, and is deterministic: its hash (upper-case hex
//! SHA-512 of the bytes, as kube-openapi computes it) is the `?hash=` of the v3 index and the
//! ETag, and is stable across restarts of the same build.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use k8s_openapi::schemars::{generate::SchemaSettings, JsonSchema, SchemaGenerator};
use serde_json::{json, Map, Value};

use crate::catalogue::{self, ResourceType, Subresource, Verb};

// ---------------------------------------------------------------------------------------------
// Public API

/// A served document: its bytes, kept gzip-compressed, and their hash. The documents are
/// some 9 MB of JSON and protobuf held for the process's life; compressed they are a tenth of
/// that, and most clients (kubectl: Go's transport asks for gzip) take them as they are.
#[derive(Clone, PartialEq, Eq)]
pub struct Document {
    gzip: Vec<u8>,
    /// Upper-case hex SHA-512 of the bytes (what kube-openapi puts in `?hash=` and the ETag).
    pub hash: String,
}

impl std::fmt::Debug for Document {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Document")
            .field("gzip_len", &self.gzip.len())
            .field("hash", &self.hash)
            .finish()
    }
}

impl Document {
    fn new(body: Vec<u8>) -> Document {
        use std::io::Write as _;
        let hash = sha512_hex(&body);
        let mut gz = flate2::write::GzEncoder::new(
            Vec::with_capacity(body.len() / 8),
            flate2::Compression::default(),
        );
        // Writing to a Vec cannot fail.
        let _ = gz.write_all(&body);
        let gzip = gz.finish().unwrap_or_default();
        Document { gzip, hash }
    }

    /// The document's bytes.
    pub fn body(&self) -> Vec<u8> {
        use std::io::Read as _;
        let mut out = Vec::new();
        // Compressed by `new` from memory: reading it back cannot fail.
        let _ = flate2::read::GzDecoder::new(self.gzip.as_slice()).read_to_end(&mut out);
        out
    }

    /// The document's bytes as a gzip stream (`Content-Encoding: gzip`).
    pub fn gzip(&self) -> &[u8] {
        &self.gzip
    }

    /// The `ETag` header value: the hash in double quotes.
    pub fn etag(&self) -> String {
        format!("\"{}\"", self.hash)
    }
}

/// All v3 documents: the index and one document per served group-version.
#[derive(Clone, Debug)]
pub struct V3 {
    /// `/openapi/v3`: `{"paths": {"api/v1": {"serverRelativeURL": "/openapi/v3/api/v1?hash=…"}, …}}`.
    pub index: Document,
    /// Keyed by the index's path: `api/v1`, `apis/apps/v1`, ….
    pub group_versions: BTreeMap<String, Document>,
    pub build_time: Duration,
}

/// The v2 document in both encodings.
#[derive(Clone, Debug)]
pub struct V2 {
    pub json: Document,
    /// gnostic `openapi.v2.Document` protobuf.
    pub protobuf: Document,
    pub build_time: Duration,
}

/// Content type of the v2 protobuf document (kube-openapi answers this for both the `@` and the
/// `.` spelling of the Accept header; Go's mime parser rejects the `@` form in a response).
pub const V2_PROTOBUF_CONTENT_TYPE: &str =
    "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";
/// The Accept spelling kubectl 1.27/1.28 send.
pub const V2_PROTOBUF_ACCEPT: &str = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";

/// The v3 documents, built on first use.
pub fn v3() -> &'static V3 {
    static V3_DOCS: OnceLock<V3> = OnceLock::new();
    V3_DOCS.get_or_init(build_v3)
}

/// The v2 documents, built on first use.
pub fn v2() -> &'static V2 {
    static V2_DOCS: OnceLock<V2> = OnceLock::new();
    V2_DOCS.get_or_init(build_v2)
}

/// Builds both document sets now rather than on first use (call from a blocking thread).
pub fn prebuild() {
    let _ = v3();
    let _ = v2();
}

/// The v3 document for `key` (`api/v1`, `apis/apps/v1`), if that group-version is served.
pub fn v3_document(key: &str) -> Option<&'static Document> {
    v3().group_versions.get(key)
}

/// The index key of a group-version: `api/v1` for core, `apis/<group>/<version>` otherwise.
pub fn v3_key(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// Builds the v3 documents from scratch (what [`v3`] caches).
pub fn build_v3() -> V3 {
    let start = Instant::now();
    let model = Model::build();
    let mut group_versions = BTreeMap::new();
    let mut index = Map::new();
    for gv in served_group_versions() {
        let key = v3_key(gv.group, gv.version);
        let doc = Document::new(to_json(&model.v3_document(gv)));
        index.insert(
            key.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{key}?hash={}", doc.hash)}),
        );
        group_versions.insert(key, doc);
    }
    let index = Document::new(to_json(&json!({ "paths": index })));
    V3 {
        index,
        group_versions,
        build_time: start.elapsed(),
    }
}

/// Builds the v2 documents from scratch (what [`v2`] caches).
pub fn build_v2() -> V2 {
    let start = Instant::now();
    let model = Model::build();
    let doc = model.v2_document();
    let protobuf = gnostic::encode(&doc);
    V2 {
        json: Document::new(to_json(&doc)),
        protobuf: Document::new(protobuf),
        build_time: start.elapsed(),
    }
}

/// The strategic-merge-patch metadata upstream declares on `property` of schema `schema` (full
/// upstream name, `io.k8s.api.core.v1.PodSpec`): `(x-kubernetes-patch-strategy,
/// x-kubernetes-patch-merge-key)`, either possibly empty; `None` when it declares neither.
pub fn patch_meta(schema: &str, property: &str) -> Option<(&'static str, &'static str)> {
    FIELD_EXTENSIONS
        .iter()
        .find(|e| e.property == property && full_name(e.schema) == schema)
        .filter(|e| !e.strategy.is_empty() || !e.merge_key.is_empty())
        .map(|e| (e.strategy, e.merge_key))
}

/// How upstream merges property `property` of schema `schema` (full upstream name) in
/// server-side apply: `(x-kubernetes-list-type, x-kubernetes-list-map-keys,
/// x-kubernetes-map-type, x-kubernetes-patch-strategy, x-kubernetes-patch-merge-key)`, each
/// possibly empty; `None` when upstream declares none of them.
pub(crate) fn merge_meta(
    schema: &str,
    property: &str,
) -> Option<(
    &'static str,
    &'static [&'static str],
    &'static str,
    &'static str,
    &'static str,
)> {
    type Index = std::collections::HashMap<(String, &'static str), &'static FieldExt>;
    static INDEX: OnceLock<Index> = OnceLock::new();
    let index = INDEX.get_or_init(|| {
        FIELD_EXTENSIONS
            .iter()
            .map(|e| ((full_name(e.schema), e.property), e))
            .collect()
    });
    index
        .get(&(schema.to_string(), property))
        .map(|e| (e.list_type, e.map_keys, e.map_type, e.strategy, e.merge_key))
}

/// Whether upstream marks the struct of schema `schema` (full name) `+structType=atomic`.
pub(crate) fn is_atomic_struct(schema: &str) -> bool {
    ATOMIC_STRUCTS.iter().any(|s| full_name(s) == schema)
}

/// An API group, version and kind as `x-kubernetes-group-version-kind` spells it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Gvk {
    group: &'static str,
    version: &'static str,
    kind: String,
}

impl Gvk {
    fn new(group: &'static str, version: &'static str, kind: impl Into<String>) -> Gvk {
        Gvk {
            group,
            version,
            kind: kind.into(),
        }
    }

    fn to_value(&self) -> Value {
        json!({"group": self.group, "kind": self.kind, "version": self.version})
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers

fn to_json(v: &Value) -> Vec<u8> {
    // Serializing a `Value` cannot fail (string keys only).
    serde_json::to_vec(v).unwrap_or_default()
}

fn sha512_hex(data: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA512, data);
    let mut out = String::with_capacity(128);
    for b in digest.as_ref() {
        out.push_str(&format!("{b:02X}"));
    }
    out
}

/// Every served group-version, core first, then `/apis` order.
/// The group/versions described: all served but `metrics.k8s.io`, whose kinds are
/// metrics-server's own, not in Kubernetes' OpenAPI (kubectl top does not read it).
fn served_group_versions() -> Vec<catalogue::GroupVersion> {
    std::iter::once(&catalogue::CORE_GROUP)
        .chain(catalogue::API_GROUPS.iter())
        .filter(|g| g.name != METRICS_GROUP)
        .flat_map(|g| {
            g.versions.iter().map(move |v| catalogue::GroupVersion {
                group: g.name,
                version: v,
            })
        })
        .collect()
}

pub const METRICS_GROUP: &str = "metrics.k8s.io";
const SCHEMA_PREFIX_V3: &str = "#/components/schemas/";
const SCHEMA_PREFIX_V2: &str = "#/definitions/";
const META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.";
const INT_OR_STRING: &str = "io.k8s.apimachinery.pkg.util.intstr.IntOrString";
const QUANTITY: &str = "io.k8s.apimachinery.pkg.api.resource.Quantity";

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("{SCHEMA_PREFIX_V3}{name}") })
}

/// The names every `$ref` inside `v` points at.
fn collect_refs(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if k == "$ref" {
                    if let Some(name) = x.as_str().and_then(|s| s.strip_prefix(SCHEMA_PREFIX_V3)) {
                        out.insert(name.to_string());
                    }
                } else {
                    collect_refs(x, out);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| collect_refs(x, out)),
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------------
// Schemas

/// Registers `T` (a top-level kind) with the generator and notes its GVK.
fn register<T: JsonSchema + k8s_openapi::Resource>(
    gen: &mut SchemaGenerator,
    kinds: &mut BTreeMap<Gvk, String>,
) {
    gen.subschema_for::<T>();
    kinds.insert(
        Gvk::new(T::GROUP, T::VERSION, T::KIND),
        T::schema_name().into_owned(),
    );
}

/// Calls `$m!(types…)` with the k8s-openapi type of every kind in the served group-versions
/// (more than the catalogue serves, so a new catalogue row finds its schema and type here):
/// one list for the schemas and the typed decoders.
macro_rules! served_types {
    ($m:ident) => {{
        use k8s_openapi::api::{
            apps::v1 as apps, authentication::v1 as authn, authorization::v1 as authz,
            autoscaling::v1 as as1, autoscaling::v2 as as2, batch::v1 as batch,
            coordination::v1 as coordination, core::v1 as core, discovery::v1 as discovery,
            events::v1 as events, networking::v1 as networking, policy::v1 as policy,
            rbac::v1 as rbac, scheduling::v1 as scheduling, storage::v1 as storage,
        };
        $m!(
            core::Binding,
            core::ComponentStatus,
            core::ConfigMap,
            core::Endpoints,
            core::Event,
            core::LimitRange,
            core::Namespace,
            core::Node,
            core::PersistentVolume,
            core::PersistentVolumeClaim,
            core::Pod,
            core::PodTemplate,
            core::ReplicationController,
            core::ResourceQuota,
            core::Secret,
            core::Service,
            core::ServiceAccount,
            apps::ControllerRevision,
            apps::DaemonSet,
            apps::Deployment,
            apps::ReplicaSet,
            apps::StatefulSet,
            events::Event,
            authn::SelfSubjectReview,
            authn::TokenRequest,
            authn::TokenReview,
            authz::LocalSubjectAccessReview,
            authz::SelfSubjectAccessReview,
            authz::SelfSubjectRulesReview,
            authz::SubjectAccessReview,
            as1::HorizontalPodAutoscaler,
            as1::Scale,
            as2::HorizontalPodAutoscaler,
            batch::CronJob,
            batch::Job,
            networking::IPAddress,
            networking::Ingress,
            networking::IngressClass,
            networking::NetworkPolicy,
            networking::ServiceCIDR,
            policy::Eviction,
            policy::PodDisruptionBudget,
            rbac::ClusterRole,
            rbac::ClusterRoleBinding,
            rbac::Role,
            rbac::RoleBinding,
            storage::CSIDriver,
            storage::CSINode,
            storage::CSIStorageCapacity,
            storage::StorageClass,
            storage::VolumeAttachment,
            scheduling::PriorityClass,
            coordination::Lease,
            discovery::EndpointSlice,
            crate::apiregistration::APIService,
        )
    }};
}

/// The schemas of every served type ([`served_types`]), the meta types the operations use,
/// and what they reference.
fn generate() -> (Map<String, Value>, BTreeMap<Gvk, String>) {
    use k8s_openapi::api::core::v1 as core;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;

    let mut gen = SchemaSettings::draft07()
        .with(|s| {
            s.definitions_path = "/components/schemas".into();
            s.meta_schema = None;
            s.transforms = Vec::new();
        })
        .into_generator();
    let mut kinds = BTreeMap::new();
    macro_rules! register_all {
        ($($ty:ty),* $(,)?) => {{
            $( register::<$ty>(&mut gen, &mut kinds); )*
        }};
    }
    served_types!(register_all);
    gen.subschema_for::<meta::APIResourceList>();
    gen.subschema_for::<meta::DeleteOptions>();
    gen.subschema_for::<meta::ListMeta>();
    gen.subschema_for::<meta::Patch>();
    gen.subschema_for::<meta::Status>();
    gen.subschema_for::<meta::WatchEvent<core::Pod>>();
    (gen.take_definitions(false), kinds)
}

/// The package prefix of a schema name: `io.k8s.api.authentication.v1.` for
/// `io.k8s.api.authentication.v1.SelfSubjectReview`.
fn package_of(name: &str) -> &str {
    name.rfind('.').map_or("", |i| &name[..=i])
}

fn rename_refs(v: &mut Value, renames: &BTreeMap<String, String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                if k == "$ref" {
                    if let Some(to) = x
                        .as_str()
                        .and_then(|s| s.strip_prefix(SCHEMA_PREFIX_V3))
                        .and_then(|n| renames.get(n))
                    {
                        *x = Value::String(format!("{SCHEMA_PREFIX_V3}{to}"));
                    }
                } else {
                    rename_refs(x, renames);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| rename_refs(x, renames)),
        _ => {}
    }
}

/// The schemas and operations of everything served, in one format-neutral form (v3 schema
/// style with `#/components/schemas/` references and `$ref` siblings left as they are).
struct Model {
    definitions: Map<String, Value>,
    /// Schema name of each GVK that has one (kinds, list kinds, subresource kinds).
    schema_of: BTreeMap<Gvk, String>,
}

impl Model {
    fn build() -> Model {
        let (mut definitions, mut schema_of) = generate();

        // Served kinds k8s-openapi has only in another version of the group (authentication
        // v1beta1 SelfSubjectReview): the other version's schema under this version's name, with
        // the kind's own helper types (`SelfSubjectReviewStatus`) copied along.
        for row in catalogue::RESOURCES {
            let gvk = Gvk::new(row.group, row.version, row.kind);
            if schema_of.contains_key(&gvk) {
                continue;
            }
            let Some(source) = schema_of
                .iter()
                .find(|(g, _)| g.group == row.group && g.kind == row.kind)
                .map(|(_, s)| s.clone())
            else {
                continue;
            };
            let from_pkg = package_of(&source).to_string();
            let Some(to_pkg) = from_pkg
                .strip_suffix(&format!(".{}.", source_version(&from_pkg)))
                .map(|p| format!("{p}.{}.", row.version))
            else {
                continue;
            };
            let renames: BTreeMap<String, String> = definitions
                .keys()
                .filter(|n| {
                    n.strip_prefix(from_pkg.as_str())
                        .is_some_and(|short| short.starts_with(row.kind))
                })
                .map(|n| (n.clone(), format!("{to_pkg}{}", &n[from_pkg.len()..])))
                .collect();
            for (from, to) in &renames {
                if let Some(mut s) = definitions.get(from).cloned() {
                    rename_refs(&mut s, &renames);
                    definitions.insert(to.clone(), s);
                }
            }
            if let Some(to) = renames.get(&source) {
                schema_of.insert(gvk, to.clone());
            }
        }

        let mut gvks_of: BTreeMap<String, BTreeSet<Gvk>> = BTreeMap::new();
        for (gvk, name) in &schema_of {
            gvks_of.entry(name.clone()).or_default().insert(gvk.clone());
        }

        // List kinds (k8s-openapi's `List<T>` has no schema).
        for row in catalogue::RESOURCES {
            if !row.supports(Verb::List) {
                continue;
            }
            let Some(item) = schema_of.get(&Gvk::new(row.group, row.version, row.kind)) else {
                continue;
            };
            let name = format!("{item}List");
            let gvk = Gvk::new(row.group, row.version, row.list_kind());
            if !definitions.contains_key(&name) {
                let list = list_schema(&definitions, item, row);
                definitions.insert(name.clone(), list);
            }
            gvks_of.entry(name.clone()).or_default().insert(gvk.clone());
            schema_of.insert(gvk, name);
        }

        // Meta types: DeleteOptions and WatchEvent are served in every group-version.
        for gv in served_group_versions() {
            for kind in ["DeleteOptions", "WatchEvent"] {
                let gvk = Gvk::new(gv.group, gv.version, kind);
                gvks_of
                    .entry(format!("{META}{kind}"))
                    .or_default()
                    .insert(gvk);
            }
        }
        for kind in ["Status", "APIResourceList"] {
            gvks_of
                .entry(format!("{META}{kind}"))
                .or_default()
                .insert(Gvk::new("", "v1", kind));
        }

        // k8s-openapi lists `metadata` (non-optional in its Rust types) and a few fields that
        // upstream defaults to "" as required; upstream requires neither (`explain` would print
        // `-required-` and validating clients would reject objects upstream accepts).
        for (name, schema) in definitions.iter_mut() {
            let Some(required) = schema.get_mut("required").and_then(Value::as_array_mut) else {
                continue;
            };
            required.retain(|f| {
                f != "metadata"
                    && !DEFAULTED
                        .iter()
                        .any(|(s, p)| f == *p && full_name(s) == *name)
            });
            if required.is_empty() {
                if let Some(s) = schema.as_object_mut() {
                    s.remove("required");
                }
            }
        }

        // Upstream's extensions.
        for e in FIELD_EXTENSIONS {
            let Some(prop) = definitions
                .get_mut(&full_name(e.schema))
                .and_then(|s| s.get_mut("properties"))
                .and_then(|p| p.get_mut(e.property))
                .and_then(Value::as_object_mut)
            else {
                continue;
            };
            for (key, value) in e.extensions() {
                prop.insert(key.to_string(), value);
            }
        }
        for name in ATOMIC_STRUCTS {
            if let Some(s) = definitions
                .get_mut(&full_name(name))
                .and_then(Value::as_object_mut)
            {
                s.insert("x-kubernetes-map-type".into(), json!("atomic"));
            }
        }
        for (name, gvks) in &gvks_of {
            if let Some(s) = definitions.get_mut(name).and_then(Value::as_object_mut) {
                let list: Vec<Value> = gvks.iter().map(|g| g.to_value()).collect();
                s.insert("x-kubernetes-group-version-kind".into(), Value::Array(list));
            }
        }

        Model {
            definitions,
            schema_of,
        }
    }

    /// `name` and every schema it references, transitively.
    fn closure(&self, roots: BTreeSet<String>) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut todo: Vec<String> = roots.into_iter().collect();
        while let Some(name) = todo.pop() {
            if !seen.insert(name.clone()) {
                continue;
            }
            if let Some(s) = self.definitions.get(&name) {
                let mut refs = BTreeSet::new();
                collect_refs(s, &mut refs);
                todo.extend(refs.into_iter().filter(|r| !seen.contains(r)));
            }
        }
        seen
    }

    /// The operations of one group-version.
    fn path_items(&self, gv: catalogue::GroupVersion) -> Vec<PathItem> {
        let mut items = vec![discovery_path(gv)];
        for row in catalogue::resources_in(gv.group, gv.version) {
            items.extend(resource_paths(row, self));
        }
        items.sort_by(|a, b| a.path.cmp(&b.path));
        items
    }

    fn has_schema(&self, gvk: &Gvk) -> bool {
        self.schema_of.contains_key(gvk)
    }

    fn v3_document(&self, gv: catalogue::GroupVersion) -> Value {
        let items = self.path_items(gv);
        let mut roots = BTreeSet::new();
        let mut paths = Map::new();
        for item in &items {
            let v = item.to_v3();
            collect_refs(&v, &mut roots);
            paths.insert(item.path.clone(), v);
        }
        let mut schemas = Map::new();
        for name in self.closure(roots) {
            if let Some(s) = self.definitions.get(&name) {
                schemas.insert(name.clone(), v3_schema(&name, s));
            }
        }
        json!({
            "openapi": "3.0.0",
            "info": {"title": "Kubernetes", "version": "unversioned"},
            "paths": paths,
            "components": {
                "schemas": schemas,
                "securitySchemes": {"BearerToken": {
                    "type": "apiKey", "description": "Bearer Token authentication",
                    "name": "authorization", "in": "header"}},
            },
            "security": [{"BearerToken": []}],
        })
    }

    fn v2_document(&self) -> Value {
        let mut roots = BTreeSet::new();
        let mut paths = Map::new();
        for gv in served_group_versions() {
            for item in self.path_items(gv) {
                let v = item.to_v2();
                collect_refs(&item.to_v3(), &mut roots);
                paths.insert(item.path.clone(), v);
            }
        }
        let mut definitions = Map::new();
        for name in self.closure(roots) {
            if let Some(s) = self.definitions.get(&name) {
                definitions.insert(name.clone(), v2_schema(&name, s));
            }
        }
        json!({
            "swagger": "2.0",
            "info": {"title": "Kubernetes", "version": "unversioned"},
            "paths": paths,
            "definitions": definitions,
            "securityDefinitions": {"BearerToken": {
                "type": "apiKey", "description": "Bearer Token authentication",
                "name": "authorization", "in": "header"}},
            "security": [{"BearerToken": []}],
        })
    }
}

/// The version segment of a package prefix (`v1` of `io.k8s.api.authentication.v1.`).
fn source_version(pkg: &str) -> &str {
    pkg.trim_end_matches('.')
        .rsplit('.')
        .next()
        .unwrap_or_default()
}

/// `<Kind>List`, shaped as upstream's list types.
fn list_schema(definitions: &Map<String, Value>, item: &str, row: &ResourceType) -> Value {
    let item_props = definitions.get(item).and_then(|s| s.get("properties"));
    let standard = |field: &str| {
        item_props
            .and_then(|p| p.get(field))
            .cloned()
            .unwrap_or_else(|| json!({"type": "string"}))
    };
    let mut metadata = schema_ref(&format!("{META}ListMeta"));
    crate::value::set(
        &mut metadata,
        &["description"],
        json!("Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds"),
    );
    json!({
        "description": format!("{}List is a list of {} objects.", row.kind, row.kind),
        "type": "object",
        "properties": {
            "apiVersion": standard("apiVersion"),
            "items": {
                "description": format!("List of {}.", row.plural),
                "type": "array",
                "items": schema_ref(item),
            },
            "kind": standard("kind"),
            "metadata": metadata,
        },
        "required": ["items"],
    })
}

/// A schema in upstream's v3 shape.
fn v3_schema(name: &str, schema: &Value) -> Value {
    match name {
        INT_OR_STRING => json!({
            "description": schema.get("description").cloned().unwrap_or(Value::Null),
            "format": "int-or-string",
            "oneOf": [{"type": "integer"}, {"type": "string"}],
        }),
        QUANTITY => json!({
            "description": schema.get("description").cloned().unwrap_or(Value::Null),
            "oneOf": [{"type": "string"}, {"type": "number"}],
        }),
        _ => {
            let mut s = schema.clone();
            wrap_refs(&mut s, true);
            s
        }
    }
}

/// `{"$ref": X, "description": …}` becomes `{"allOf": [{"$ref": X}], "description": …}`: in
/// OpenAPI 3.0 a `$ref` ignores its siblings, so upstream wraps it.
fn wrap_refs(v: &mut Value, top: bool) {
    match v {
        Value::Object(m) => {
            if !top && m.len() > 1 {
                if let Some(r) = m.remove("$ref") {
                    m.insert("allOf".into(), json!([{ "$ref": r }]));
                }
            }
            for (k, x) in m.iter_mut() {
                if k.starts_with("x-kubernetes-") || k == "enum" || k == "default" {
                    continue;
                }
                wrap_refs(x, false);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| wrap_refs(x, false)),
        _ => {}
    }
}

/// A schema in upstream's swagger 2.0 shape.
fn v2_schema(name: &str, schema: &Value) -> Value {
    match name {
        INT_OR_STRING => json!({
            "description": schema.get("description").cloned().unwrap_or(Value::Null),
            "type": "string",
            "format": "int-or-string",
        }),
        QUANTITY => json!({
            "description": schema.get("description").cloned().unwrap_or(Value::Null),
            "type": "string",
        }),
        _ => {
            let mut s = schema.clone();
            v2_refs(&mut s);
            s
        }
    }
}

fn v2_refs(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                if k == "$ref" {
                    if let Some(name) = x.as_str().and_then(|s| s.strip_prefix(SCHEMA_PREFIX_V3)) {
                        *x = Value::String(format!("{SCHEMA_PREFIX_V2}{name}"));
                    }
                } else if !k.starts_with("x-kubernetes-") {
                    v2_refs(x);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(v2_refs),
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------------
// Operations

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum In {
    Path,
    Query,
}

impl In {
    fn as_str(self) -> &'static str {
        match self {
            In::Path => "path",
            In::Query => "query",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Param {
    name: &'static str,
    location: In,
    ty: &'static str,
    description: String,
}

enum Body {
    None,
    Object { schema: String, required: bool },
    Patch { strategic: bool },
}

enum Reply {
    Object(String),
    Text(&'static str),
}

struct Op {
    method: &'static str,
    id: String,
    description: String,
    action: &'static str,
    gvk: Option<Gvk>,
    params: Vec<Param>,
    body: Body,
    codes: &'static [(&'static str, &'static str)],
    reply: Reply,
    /// List and watch responses also stream (`;stream=watch`).
    streams: bool,
    tag: String,
}

struct PathItem {
    path: String,
    ops: Vec<Op>,
}

const OK: &[(&str, &str)] = &[("200", "OK")];
const CREATED: &[(&str, &str)] = &[("200", "OK"), ("201", "Created"), ("202", "Accepted")];
const UPDATED: &[(&str, &str)] = &[("200", "OK"), ("201", "Created")];
const DELETED: &[(&str, &str)] = &[("200", "OK"), ("202", "Accepted")];

const PATCH_TYPES: [&str; 4] = [
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
];
const STRATEGIC: &str = "application/strategic-merge-patch+json";
const JSON_TYPES: &[&str] = &["application/json", "application/yaml"];
const STREAM_TYPES: &[&str] = &[
    "application/json",
    "application/json;stream=watch",
    "application/yaml",
];

type QueryParam = (&'static str, &'static str, &'static str);

const P_ALLOW_BOOKMARKS: QueryParam = ("allowWatchBookmarks", "boolean", "allowWatchBookmarks requests watch events with type \"BOOKMARK\". Servers that do not implement bookmarks may ignore this flag and bookmarks are sent at the server's discretion. Clients should not assume bookmarks are returned at any specific interval, nor may they assume the server will send any BOOKMARK event during a session. If this is not a watch, this field is ignored.");
const P_CONTINUE: QueryParam = ("continue", "string", "The continue option should be set when retrieving more results from the server. Since this value is server defined, clients may only use the continue value from a previous query result with identical query parameters (except for the value of continue) and the server may reject a continue value it does not recognize. If the specified continue value is no longer valid whether due to expiration (generally five to fifteen minutes) or a configuration change on the server, the server will respond with a 410 ResourceExpired error together with a continue token.");
const P_FIELD_SELECTOR: QueryParam = (
    "fieldSelector",
    "string",
    "A selector to restrict the list of returned objects by their fields. Defaults to everything.",
);
const P_LABEL_SELECTOR: QueryParam = (
    "labelSelector",
    "string",
    "A selector to restrict the list of returned objects by their labels. Defaults to everything.",
);
const P_LIMIT: QueryParam = ("limit", "integer", "limit is a maximum number of responses to return for a list call. If more items exist, the server will set the `continue` field on the list metadata to a value that can be used with the same initial query to retrieve the next set of results.");
const P_RESOURCE_VERSION: QueryParam = ("resourceVersion", "string", "resourceVersion sets a constraint on what resource versions a request may be served from. See https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions for details.\n\nDefaults to unset");
const P_RESOURCE_VERSION_MATCH: QueryParam = ("resourceVersionMatch", "string", "resourceVersionMatch determines how resourceVersion is applied to list calls. It is highly recommended that resourceVersionMatch be set for list calls where resourceVersion is set See https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions for details.\n\nDefaults to unset");
const P_TIMEOUT: QueryParam = ("timeoutSeconds", "integer", "Timeout for the list/watch call. This limits the duration of the call, regardless of any activity or inactivity.");
const P_WATCH: QueryParam = ("watch", "boolean", "Watch for changes to the described resources and return them as a stream of add, update, and remove notifications. Specify resourceVersion.");
const P_DRY_RUN: QueryParam = ("dryRun", "string", "When present, indicates that modifications should not be persisted. An invalid or unrecognized dryRun directive will result in an error response and no further processing of the request. Valid values are: - All: all dry run stages will be processed");
const P_FIELD_MANAGER: QueryParam = ("fieldManager", "string", "fieldManager is a name associated with the actor or entity that is making these changes. The value must be less than or 128 characters long, and only contain printable characters, as defined by https://golang.org/pkg/unicode/#IsPrint.");
const P_FIELD_VALIDATION: QueryParam = ("fieldValidation", "string", "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: - Ignore: This will ignore any unknown fields that are silently dropped from the object, and will ignore all but the last duplicate field that the decoder encounters. - Warn: This will send a warning via the standard warning response header for each unknown field that is dropped from the object, and for each duplicate field that is encountered. The request will still succeed if there are no other errors, and will only persist the last of any duplicate fields. - Strict: This will fail the request with a BadRequest error if any unknown fields would be dropped from the object, or if any duplicate fields are present. The error returned from the server will contain all unknown and duplicate fields encountered.");
const P_FORCE: QueryParam = ("force", "boolean", "Force is going to \"force\" Apply requests. It means user will re-acquire conflicting fields owned by other people. Force flag must be unset for non-apply patch requests.");
const P_GRACE: QueryParam = ("gracePeriodSeconds", "integer", "The duration in seconds before the object should be deleted. Value must be non-negative integer. The value zero indicates delete immediately. If this value is nil, the default grace period for the specified type will be used.");
const P_ORPHAN: QueryParam = ("orphanDependents", "boolean", "Deprecated: please use the PropagationPolicy, this field will be deprecated in 1.7. Should the dependent objects be orphaned. If true/false, the \"orphan\" finalizer will be added to/removed from the object's finalizers list. Either this field or PropagationPolicy may be set, but not both.");
const P_PROPAGATION: QueryParam = ("propagationPolicy", "string", "Whether and how garbage collection will be performed. Either this field or OrphanDependents may be set, but not both. Acceptable values are: 'Orphan' - orphan the dependents; 'Background' - allow the garbage collector to delete the dependents in the background; 'Foreground' - a cascading policy that deletes all dependents in the foreground.");
const P_PRETTY: QueryParam = (
    "pretty",
    "string",
    "If 'true', then the output is pretty printed.",
);

const LIST_PARAMS: &[QueryParam] = &[
    P_ALLOW_BOOKMARKS,
    P_CONTINUE,
    P_FIELD_SELECTOR,
    P_LABEL_SELECTOR,
    P_LIMIT,
    P_RESOURCE_VERSION,
    P_RESOURCE_VERSION_MATCH,
    P_TIMEOUT,
    P_WATCH,
];
const WRITE_PARAMS: &[QueryParam] = &[P_DRY_RUN, P_FIELD_MANAGER, P_FIELD_VALIDATION];
const PATCH_PARAMS: &[QueryParam] = &[P_DRY_RUN, P_FIELD_MANAGER, P_FIELD_VALIDATION, P_FORCE];
const DELETE_PARAMS: &[QueryParam] = &[P_DRY_RUN, P_GRACE, P_ORPHAN, P_PROPAGATION];
const DELETE_COLLECTION_PARAMS: &[QueryParam] = &[
    P_CONTINUE,
    P_DRY_RUN,
    P_FIELD_SELECTOR,
    P_GRACE,
    P_LABEL_SELECTOR,
    P_LIMIT,
    P_ORPHAN,
    P_PROPAGATION,
    P_RESOURCE_VERSION,
    P_RESOURCE_VERSION_MATCH,
    P_TIMEOUT,
];
const LOG_PARAMS: &[QueryParam] = &[
    ("container", "string", "The container for which to stream logs. Defaults to only container if there is one container in the pod."),
    ("follow", "boolean", "Follow the log stream of the pod. Defaults to false."),
    ("insecureSkipTLSVerifyBackend", "boolean", "insecureSkipTLSVerifyBackend indicates that the apiserver should not confirm the validity of the serving certificate of the backend it is connecting to."),
    ("limitBytes", "integer", "If set, the number of bytes to read from the server before terminating the log output."),
    ("previous", "boolean", "Return previous terminated container logs. Defaults to false."),
    ("sinceSeconds", "integer", "A relative time in seconds before the current time from which to show logs."),
    ("tailLines", "integer", "If set, the number of lines from the end of the logs to show."),
    ("timestamps", "boolean", "If true, add an RFC3339 or RFC3339Nano timestamp at the beginning of every line of log output. Defaults to false."),
];
const P_CONTAINER: QueryParam = (
    "container",
    "string",
    "The container in which to execute the command. Defaults to only container if there is only one container in the pod.",
);
const P_STDERR: QueryParam = (
    "stderr",
    "boolean",
    "Redirect the standard error stream of the pod for this call.",
);
const P_STDIN: QueryParam = (
    "stdin",
    "boolean",
    "Redirect the standard input stream of the pod for this call. Defaults to false.",
);
const P_STDOUT: QueryParam = (
    "stdout",
    "boolean",
    "Redirect the standard output stream of the pod for this call.",
);
const P_TTY: QueryParam = (
    "tty",
    "boolean",
    "TTY if true indicates that a tty will be allocated for the exec call. Defaults to false.",
);
const EXEC_PARAMS: &[QueryParam] = &[
    (
        "command",
        "string",
        "Command is the remote command to execute. argv array. Not executed within a shell.",
    ),
    P_CONTAINER,
    P_STDERR,
    P_STDIN,
    P_STDOUT,
    P_TTY,
];
const ATTACH_PARAMS: &[QueryParam] = &[P_CONTAINER, P_STDERR, P_STDIN, P_STDOUT, P_TTY];
const PORTFORWARD_PARAMS: &[QueryParam] = &[(
    "ports",
    "integer",
    "List of ports to forward Required when using WebSockets",
)];

/// Resources whose DELETE answers with the object rather than a Status (upstream's registries
/// that return the deleted object).
const DELETE_RETURNS_OBJECT: &[(&str, &str)] = &[
    ("", "persistentvolumeclaims"),
    ("", "persistentvolumes"),
    ("", "pods"),
    ("", "podtemplates"),
    ("", "resourcequotas"),
    ("", "serviceaccounts"),
    ("", "services"),
    ("storage.k8s.io", "csidrivers"),
    ("storage.k8s.io", "csinodes"),
    ("storage.k8s.io", "storageclasses"),
    ("storage.k8s.io", "volumeattachments"),
];

fn query(params: &[QueryParam]) -> Vec<Param> {
    params
        .iter()
        .map(|(name, ty, description)| Param {
            name,
            location: In::Query,
            ty,
            description: (*description).to_string(),
        })
        .collect()
}

fn path_param(name: &'static str, description: String) -> Param {
    Param {
        name,
        location: In::Path,
        ty: "string",
        description,
    }
}

/// `Core`, `Apps`, `RbacAuthorization`, `Events` (operation ids).
fn group_id(group: &str) -> String {
    if group.is_empty() {
        return "Core".into();
    }
    group
        .trim_end_matches(".k8s.io")
        .split('.')
        .map(capitalize)
        .collect()
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// `core_v1`, `apps_v1`, `rbacAuthorization_v1` (operation tags).
fn tag(group: &str, version: &str) -> String {
    let id = group_id(group);
    let mut c = id.chars();
    let lower: String = match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    };
    format!("{lower}_{version}")
}

fn prefix(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("/api/{version}")
    } else {
        format!("/apis/{group}/{version}")
    }
}

/// `/api/v1/` and `/apis/<g>/<v>/`: the legacy discovery document.
fn discovery_path(gv: catalogue::GroupVersion) -> PathItem {
    PathItem {
        path: format!("{}/", prefix(gv.group, gv.version)),
        ops: vec![Op {
            method: "get",
            id: format!(
                "get{}{}APIResources",
                group_id(gv.group),
                capitalize(gv.version)
            ),
            description: "get available resources".into(),
            action: "",
            gvk: None,
            params: Vec::new(),
            body: Body::None,
            codes: OK,
            reply: Reply::Object(format!("{META}APIResourceList")),
            streams: false,
            tag: tag(gv.group, gv.version),
        }],
    }
}

/// Every path of one resource: collection, item, watch, all-namespaces and subresource paths.
fn resource_paths(row: &ResourceType, model: &Model) -> Vec<PathItem> {
    let gvk = Gvk::new(row.group, row.version, row.kind);
    let gv_id = format!("{}{}", group_id(row.group), capitalize(row.version));
    let ns_word = if row.namespaced() { "Namespaced" } else { "" };
    let base = prefix(row.group, row.version);
    let ns_seg = if row.namespaced() {
        "/namespaces/{namespace}"
    } else {
        ""
    };
    let collection = format!("{base}{ns_seg}/{}", row.plural);
    let item = format!("{collection}/{{name}}");
    let kind = row.kind;
    let object = model
        .schema_of
        .get(&gvk)
        .cloned()
        .unwrap_or_else(|| format!("{META}Status"));
    let list = model
        .schema_of
        .get(&Gvk::new(row.group, row.version, row.list_kind()))
        .cloned()
        .unwrap_or_else(|| format!("{META}Status"));
    let tag = tag(row.group, row.version);
    let pretty = query(&[P_PRETTY]);
    let ns_param = || {
        path_param(
            "namespace",
            "object name and auth scope, such as for teams and projects".into(),
        )
    };
    let name_param = |what: &str| path_param("name", format!("name of the {what}"));
    let scope = |mut params: Vec<Param>, named: Option<&str>| {
        if let Some(what) = named {
            params.push(name_param(what));
        }
        if row.namespaced() {
            params.push(ns_param());
        }
        params
    };
    let op = |method: &'static str,
              id: String,
              description: String,
              action: &'static str,
              params: Vec<Param>,
              body: Body,
              codes: &'static [(&'static str, &'static str)],
              reply: Reply,
              streams: bool| Op {
        method,
        id,
        description,
        action,
        gvk: Some(gvk.clone()),
        params,
        body,
        codes,
        reply,
        streams,
        tag: tag.clone(),
    };
    let smp = model.has_schema(&gvk);
    let deleted_reply = if DELETE_RETURNS_OBJECT.contains(&(row.group, row.plural)) {
        object.clone()
    } else {
        format!("{META}Status")
    };

    let mut out = Vec::new();

    // Collection: list, create, deletecollection.
    let mut ops = Vec::new();
    if row.supports(Verb::List) {
        ops.push(op(
            "get",
            format!("list{gv_id}{ns_word}{kind}"),
            format!("list or watch objects of kind {kind}"),
            "list",
            scope([pretty.clone(), query(LIST_PARAMS)].concat(), None),
            Body::None,
            OK,
            Reply::Object(list.clone()),
            true,
        ));
    }
    if row.supports(Verb::Create) {
        ops.push(op(
            "post",
            format!("create{gv_id}{ns_word}{kind}"),
            format!("create {} {kind}", article(kind)),
            "post",
            scope([pretty.clone(), query(WRITE_PARAMS)].concat(), None),
            Body::Object {
                schema: object.clone(),
                required: true,
            },
            CREATED,
            Reply::Object(object.clone()),
            false,
        ));
    }
    if row.supports(Verb::DeleteCollection) {
        ops.push(op(
            "delete",
            format!("delete{gv_id}Collection{ns_word}{kind}"),
            format!("delete collection of {kind}"),
            "deletecollection",
            scope(
                [pretty.clone(), query(DELETE_COLLECTION_PARAMS)].concat(),
                None,
            ),
            Body::Object {
                schema: format!("{META}DeleteOptions"),
                required: false,
            },
            OK,
            Reply::Object(format!("{META}Status")),
            false,
        ));
    }
    if !ops.is_empty() {
        out.push(PathItem {
            path: collection.clone(),
            ops,
        });
    }

    // Item: read, replace, patch, delete.
    let mut ops = Vec::new();
    if row.supports(Verb::Get) {
        ops.push(op(
            "get",
            format!("read{gv_id}{ns_word}{kind}"),
            format!("read the specified {kind}"),
            "get",
            scope(pretty.clone(), Some(kind)),
            Body::None,
            OK,
            Reply::Object(object.clone()),
            false,
        ));
    }
    if row.supports(Verb::Update) {
        ops.push(op(
            "put",
            format!("replace{gv_id}{ns_word}{kind}"),
            format!("replace the specified {kind}"),
            "put",
            scope([pretty.clone(), query(WRITE_PARAMS)].concat(), Some(kind)),
            Body::Object {
                schema: object.clone(),
                required: true,
            },
            UPDATED,
            Reply::Object(object.clone()),
            false,
        ));
    }
    if row.supports(Verb::Patch) {
        ops.push(op(
            "patch",
            format!("patch{gv_id}{ns_word}{kind}"),
            format!("partially update the specified {kind}"),
            "patch",
            scope([pretty.clone(), query(PATCH_PARAMS)].concat(), Some(kind)),
            Body::Patch { strategic: smp },
            UPDATED,
            Reply::Object(object.clone()),
            false,
        ));
    }
    if row.supports(Verb::Delete) {
        ops.push(op(
            "delete",
            format!("delete{gv_id}{ns_word}{kind}"),
            format!("delete {} {kind}", article(kind)),
            "delete",
            scope([pretty.clone(), query(DELETE_PARAMS)].concat(), Some(kind)),
            Body::Object {
                schema: format!("{META}DeleteOptions"),
                required: false,
            },
            DELETED,
            Reply::Object(deleted_reply),
            false,
        ));
    }
    if !ops.is_empty() {
        out.push(PathItem {
            path: item.clone(),
            ops,
        });
    }

    // Watch (deprecated paths, still published upstream).
    if row.supports(Verb::Watch) {
        let watch_params = [pretty.clone(), query(LIST_PARAMS)].concat();
        out.push(PathItem {
            path: format!("{base}/watch{ns_seg}/{}", row.plural),
            ops: vec![op(
                "get",
                format!("watch{gv_id}{ns_word}{kind}List"),
                format!("watch individual changes to a list of {kind}. deprecated: use the 'watch' parameter with a list operation instead."),
                "watchlist",
                scope(watch_params.clone(), None),
                Body::None,
                OK,
                Reply::Object(format!("{META}WatchEvent")),
                true,
            )],
        });
        out.push(PathItem {
            path: format!("{base}/watch{ns_seg}/{}/{{name}}", row.plural),
            ops: vec![op(
                "get",
                format!("watch{gv_id}{ns_word}{kind}"),
                format!("watch changes to an object of kind {kind}. deprecated: use the 'watch' parameter with a list operation instead, filtered to a single item with the 'fieldSelector' parameter."),
                "watch",
                scope(watch_params, Some(kind)),
                Body::None,
                OK,
                Reply::Object(format!("{META}WatchEvent")),
                true,
            )],
        });
    }

    // Across namespaces.
    if row.namespaced() && row.supports(Verb::List) {
        let params = [pretty.clone(), query(LIST_PARAMS)].concat();
        out.push(PathItem {
            path: format!("{base}/{}", row.plural),
            ops: vec![op(
                "get",
                format!("list{gv_id}{kind}ForAllNamespaces"),
                format!("list or watch objects of kind {kind}"),
                "list",
                params.clone(),
                Body::None,
                OK,
                Reply::Object(list.clone()),
                true,
            )],
        });
        if row.supports(Verb::Watch) {
            out.push(PathItem {
                path: format!("{base}/watch/{}", row.plural),
                ops: vec![op(
                    "get",
                    format!("watch{gv_id}{kind}ListForAllNamespaces"),
                    format!("watch individual changes to a list of {kind}. deprecated: use the 'watch' parameter with a list operation instead."),
                    "watchlist",
                    params,
                    Body::None,
                    OK,
                    Reply::Object(format!("{META}WatchEvent")),
                    true,
                )],
            });
        }
    }

    for sub in row.subresources {
        out.push(subresource_path(row, sub, model, &item, &gv_id, ns_word));
    }
    out
}

fn article(kind: &str) -> &'static str {
    match kind.chars().next() {
        Some('A' | 'E' | 'I' | 'O' | 'U') => "an",
        _ => "a",
    }
}

fn subresource_path(
    row: &ResourceType,
    sub: &Subresource,
    model: &Model,
    item: &str,
    gv_id: &str,
    ns_word: &str,
) -> PathItem {
    let sub_gv = sub.object_group_version.unwrap_or(row.group_version());
    let gvk = Gvk::new(sub_gv.group, sub_gv.version, sub.kind);
    let kind = row.kind;
    let sub_id = capitalize(sub.name);
    let schema = model.schema_of.get(&gvk).cloned();
    let tag = tag(row.group, row.version);
    let mut scope = vec![path_param(
        "name",
        format!("name of the {}", sub_object(sub, kind)),
    )];
    if row.namespaced() {
        scope.push(path_param(
            "namespace",
            "object name and auth scope, such as for teams and projects".into(),
        ));
    }
    let path = format!("{item}/{}", sub.name);
    let make = |method,
                id: String,
                description: String,
                action,
                params: Vec<Param>,
                body,
                codes,
                reply| Op {
        method,
        id,
        description,
        action,
        gvk: Some(gvk.clone()),
        params: [scope.clone(), params].concat(),
        body,
        codes,
        reply,
        streams: false,
        tag: tag.clone(),
    };

    // Streaming subresources (exec, attach, portforward, proxy): GET and POST upgrade.
    if sub.kind.ends_with("Options") {
        let params = match sub.name {
            "exec" => query(EXEC_PARAMS),
            "attach" => query(ATTACH_PARAMS),
            "portforward" => query(PORTFORWARD_PARAMS),
            _ => Vec::new(),
        };
        let mut ops = Vec::new();
        for (verb, method, word) in [(Verb::Get, "get", "Get"), (Verb::Create, "post", "Post")] {
            if sub.supports(verb) {
                ops.push(make(
                    method,
                    format!("connect{gv_id}{word}{ns_word}{kind}{sub_id}"),
                    format!(
                        "connect {} requests to {} of {kind}",
                        word.to_uppercase(),
                        sub.name
                    ),
                    "connect",
                    params.clone(),
                    Body::None,
                    OK,
                    Reply::Text("*/*"),
                ));
            }
        }
        return PathItem { path, ops };
    }

    let pretty = query(&[P_PRETTY]);
    let object = schema.clone().unwrap_or_else(|| format!("{META}Status"));
    let mut ops = Vec::new();
    if sub.supports(Verb::Get) {
        let (params, reply) = if sub.name == "log" {
            (
                [pretty.clone(), query(LOG_PARAMS)].concat(),
                Reply::Text("text/plain"),
            )
        } else {
            (pretty.clone(), Reply::Object(object.clone()))
        };
        ops.push(make(
            "get",
            format!("read{gv_id}{ns_word}{kind}{sub_id}"),
            format!("read {} of the specified {kind}", sub.name),
            "get",
            params,
            Body::None,
            OK,
            reply,
        ));
    }
    if sub.supports(Verb::Update) {
        ops.push(make(
            "put",
            format!("replace{gv_id}{ns_word}{kind}{sub_id}"),
            format!("replace {} of the specified {kind}", sub.name),
            "put",
            [pretty.clone(), query(WRITE_PARAMS)].concat(),
            Body::Object {
                schema: object.clone(),
                required: true,
            },
            UPDATED,
            Reply::Object(object.clone()),
        ));
    }
    if sub.supports(Verb::Patch) {
        ops.push(make(
            "patch",
            format!("patch{gv_id}{ns_word}{kind}{sub_id}"),
            format!("partially update {} of the specified {kind}", sub.name),
            "patch",
            [pretty.clone(), query(PATCH_PARAMS)].concat(),
            Body::Patch {
                strategic: schema.is_some(),
            },
            UPDATED,
            Reply::Object(object.clone()),
        ));
    }
    if sub.supports(Verb::Create) {
        ops.push(make(
            "post",
            format!("create{gv_id}{ns_word}{kind}{sub_id}"),
            format!("create {} of {} {kind}", sub.name, article(kind)),
            "post",
            [pretty.clone(), query(WRITE_PARAMS)].concat(),
            Body::Object {
                schema: object.clone(),
                required: true,
            },
            CREATED,
            Reply::Object(object.clone()),
        ));
    }
    PathItem { path, ops }
}

/// What a subresource's `{name}` names: the parent object (`name of the Binding` upstream says
/// the subresource kind for create-only subresources).
fn sub_object<'a>(sub: &'a Subresource, parent: &'a str) -> &'a str {
    if sub.verbs == [Verb::Create] {
        sub.kind
    } else {
        parent
    }
}

impl PathItem {
    /// Parameters every operation of the path shares; upstream lists them on the path.
    fn common_params(&self) -> Vec<Param> {
        let Some(first) = self.ops.first() else {
            return Vec::new();
        };
        let mut common: Vec<Param> = first
            .params
            .iter()
            .filter(|p| {
                self.ops.iter().all(|op| {
                    op.params
                        .iter()
                        .any(|q| q.name == p.name && q.location == p.location)
                })
            })
            .cloned()
            .collect();
        common.sort_by(|a, b| a.name.cmp(b.name));
        common
    }

    fn own_params<'a>(&self, op: &'a Op, common: &[Param]) -> Vec<&'a Param> {
        let mut own: Vec<&Param> = op
            .params
            .iter()
            .filter(|p| {
                !common
                    .iter()
                    .any(|c| c.name == p.name && c.location == p.location)
            })
            .collect();
        own.sort_by(|a, b| a.name.cmp(b.name));
        own
    }

    fn to_v3(&self) -> Value {
        let common = self.common_params();
        let mut item = Map::new();
        for op in &self.ops {
            let mut o = Map::new();
            o.insert("description".into(), json!(op.description));
            o.insert("operationId".into(), json!(op.id));
            let params: Vec<Value> = self
                .own_params(op, &common)
                .into_iter()
                .map(v3_param)
                .collect();
            if !params.is_empty() {
                o.insert("parameters".into(), Value::Array(params));
            }
            match &op.body {
                Body::None => {}
                Body::Object { schema, required } => {
                    let mut b = json!({"content": {"*/*": {"schema": schema_ref(schema)}}});
                    if *required {
                        crate::value::set(&mut b, &["required"], json!(true));
                    }
                    o.insert("requestBody".into(), b);
                }
                Body::Patch { strategic } => {
                    let mut content = Map::new();
                    for t in PATCH_TYPES {
                        if t != STRATEGIC || *strategic {
                            content.insert(
                                t.into(),
                                json!({"schema": schema_ref(&format!("{META}Patch"))}),
                            );
                        }
                    }
                    o.insert(
                        "requestBody".into(),
                        json!({"content": content, "required": true}),
                    );
                }
            }
            let mut responses = Map::new();
            for (code, description) in op.codes {
                let content = match &op.reply {
                    Reply::Object(schema) => {
                        let types = if op.streams { STREAM_TYPES } else { JSON_TYPES };
                        types
                            .iter()
                            .map(|t| (t.to_string(), json!({"schema": schema_ref(schema)})))
                            .collect::<Map<_, _>>()
                    }
                    Reply::Text(t) => {
                        std::iter::once((t.to_string(), json!({"schema": {"type": "string"}})))
                            .collect()
                    }
                };
                responses.insert(
                    code.to_string(),
                    json!({"description": description, "content": content}),
                );
            }
            responses.insert("401".into(), json!({"description": "Unauthorized"}));
            o.insert("responses".into(), Value::Object(responses));
            o.insert("tags".into(), json!([op.tag]));
            if !op.action.is_empty() {
                o.insert("x-kubernetes-action".into(), json!(op.action));
            }
            if let Some(gvk) = &op.gvk {
                o.insert("x-kubernetes-group-version-kind".into(), gvk.to_value());
            }
            item.insert(op.method.into(), Value::Object(o));
        }
        if !common.is_empty() {
            item.insert(
                "parameters".into(),
                Value::Array(common.iter().map(v3_param).collect()),
            );
        }
        Value::Object(item)
    }

    fn to_v2(&self) -> Value {
        let common = self.common_params();
        let mut item = Map::new();
        for op in &self.ops {
            let mut o = Map::new();
            o.insert("description".into(), json!(op.description));
            let consumes: Vec<&str> = match &op.body {
                Body::Patch { strategic } => PATCH_TYPES
                    .iter()
                    .copied()
                    .filter(|t| *t != STRATEGIC || *strategic)
                    .collect(),
                _ => vec!["*/*"],
            };
            o.insert("consumes".into(), json!(consumes));
            let produces: Vec<&str> = match &op.reply {
                Reply::Object(_) if op.streams => STREAM_TYPES.to_vec(),
                Reply::Object(_) => JSON_TYPES.to_vec(),
                Reply::Text(t) => vec![t],
            };
            o.insert("produces".into(), json!(produces));
            o.insert("schemes".into(), json!(["https"]));
            o.insert("tags".into(), json!([op.tag]));
            o.insert("operationId".into(), json!(op.id));
            let mut params = Vec::new();
            match &op.body {
                Body::None => {}
                Body::Object { schema, required } => {
                    let mut b = json!({"name": "body", "in": "body",
                        "schema": {"$ref": format!("{SCHEMA_PREFIX_V2}{schema}")}});
                    if *required {
                        crate::value::set(&mut b, &["required"], json!(true));
                    }
                    params.push(b);
                }
                Body::Patch { .. } => params.push(json!({"name": "body", "in": "body",
                    "required": true,
                    "schema": {"$ref": format!("{SCHEMA_PREFIX_V2}{META}Patch")}})),
            }
            params.extend(self.own_params(op, &common).into_iter().map(v2_param));
            if !params.is_empty() {
                o.insert("parameters".into(), Value::Array(params));
            }
            let mut responses = Map::new();
            for (code, description) in op.codes {
                let schema = match &op.reply {
                    Reply::Object(schema) => {
                        json!({"$ref": format!("{SCHEMA_PREFIX_V2}{schema}")})
                    }
                    Reply::Text(_) => json!({"type": "string"}),
                };
                responses.insert(
                    code.to_string(),
                    json!({"description": description, "schema": schema}),
                );
            }
            responses.insert("401".into(), json!({"description": "Unauthorized"}));
            o.insert("responses".into(), Value::Object(responses));
            if !op.action.is_empty() {
                o.insert("x-kubernetes-action".into(), json!(op.action));
            }
            if let Some(gvk) = &op.gvk {
                o.insert("x-kubernetes-group-version-kind".into(), gvk.to_value());
            }
            item.insert(op.method.into(), Value::Object(o));
        }
        if !common.is_empty() {
            item.insert(
                "parameters".into(),
                Value::Array(common.iter().map(v2_param).collect()),
            );
        }
        Value::Object(item)
    }
}

fn v3_param(p: &Param) -> Value {
    let mut v = json!({
        "name": p.name,
        "in": p.location.as_str(),
        "description": p.description,
        "schema": {"type": p.ty, "uniqueItems": true},
    });
    if p.location == In::Path {
        crate::value::set(&mut v, &["required"], json!(true));
    }
    v
}

fn v2_param(p: &Param) -> Value {
    let mut v = json!({
        "name": p.name,
        "in": p.location.as_str(),
        "description": p.description,
        "type": p.ty,
        "uniqueItems": true,
    });
    if p.location == In::Path {
        crate::value::set(&mut v, &["required"], json!(true));
    }
    v
}

// ---------------------------------------------------------------------------------------------
// Upstream's extensions

/// One property's extensions; `""`/`[]` where upstream has none.
struct FieldExt {
    /// Abbreviated schema name: `core.v1.PodSpec`, `meta.v1.ObjectMeta` (see [`full_name`]).
    schema: &'static str,
    property: &'static str,
    /// `x-kubernetes-patch-strategy`: `merge`, `retainKeys`, `merge,retainKeys`, `replace`.
    strategy: &'static str,
    /// `x-kubernetes-patch-merge-key`.
    merge_key: &'static str,
    /// `x-kubernetes-list-type`: `atomic`, `set`, `map`.
    list_type: &'static str,
    /// `x-kubernetes-list-map-keys`.
    map_keys: &'static [&'static str],
    /// `x-kubernetes-map-type`: `atomic`, `granular`.
    map_type: &'static str,
}

impl FieldExt {
    fn extensions(&self) -> Vec<(&'static str, Value)> {
        let mut out = Vec::new();
        if !self.list_type.is_empty() {
            out.push(("x-kubernetes-list-type", json!(self.list_type)));
        }
        if !self.map_keys.is_empty() {
            out.push(("x-kubernetes-list-map-keys", json!(self.map_keys)));
        }
        if !self.map_type.is_empty() {
            out.push(("x-kubernetes-map-type", json!(self.map_type)));
        }
        if !self.merge_key.is_empty() {
            out.push(("x-kubernetes-patch-merge-key", json!(self.merge_key)));
        }
        if !self.strategy.is_empty() {
            out.push(("x-kubernetes-patch-strategy", json!(self.strategy)));
        }
        out
    }
}

/// `core.v1.PodSpec` → `io.k8s.api.core.v1.PodSpec`; `meta.v1.X` → the apimachinery name.
fn full_name(short: &str) -> String {
    if let Some(rest) = short.strip_prefix("apiregistration.v1.") {
        return format!("io.k8s.kube-aggregator.pkg.apis.apiregistration.v1.{rest}");
    }
    match short.strip_prefix("meta.v1.") {
        Some(rest) => format!("{META}{rest}"),
        None => format!("io.k8s.api.{short}"),
    }
}

const fn f(
    schema: &'static str,
    property: &'static str,
    strategy: &'static str,
    merge_key: &'static str,
    list_type: &'static str,
    map_keys: &'static [&'static str],
    map_type: &'static str,
) -> FieldExt {
    FieldExt {
        schema,
        property,
        strategy,
        merge_key,
        list_type,
        map_keys,
        map_type,
    }
}

/// Fields k8s-openapi marks required because upstream gives them a default (`+default=""`)
/// instead; upstream's schemas do not require them.
const DEFAULTED: &[(&str, &str)] = &[
    ("core.v1.ConfigMapEnvSource", "name"),
    ("core.v1.ConfigMapKeySelector", "name"),
    ("core.v1.ConfigMapProjection", "name"),
    ("core.v1.ConfigMapVolumeSource", "name"),
    ("core.v1.LocalObjectReference", "name"),
    ("core.v1.SecretEnvSource", "name"),
    ("core.v1.SecretKeySelector", "name"),
    ("core.v1.SecretProjection", "name"),
];

/// Property extensions of the served group-versions: the `patchStrategy`/`patchMergeKey` struct
/// tags and the `+listType`, `+listMapKey` and `+mapType` markers of k8s.io/api and
/// k8s.io/apimachinery v0.33.0 (embedded structs flattened, as the OpenAPI generator does).
#[rustfmt::skip]
static FIELD_EXTENSIONS: &[FieldExt] = &[
    // k8s.io/kube-aggregator (crate::apiregistration).
    f("apiregistration.v1.APIServiceStatus", "conditions", "merge", "type", "map", &["type"], ""),
    f("apps.v1.DaemonSetStatus", "conditions", "merge", "type", "map", &["type"], ""),
    f("apps.v1.DeploymentSpec", "strategy", "retainKeys", "", "", &[], ""),
    f("apps.v1.DeploymentStatus", "conditions", "merge", "type", "map", &["type"], ""),
    f("apps.v1.ReplicaSetStatus", "conditions", "merge", "type", "map", &["type"], ""),
    f("apps.v1.StatefulSetSpec", "volumeClaimTemplates", "", "", "atomic", &[], ""),
    f("apps.v1.StatefulSetStatus", "conditions", "merge", "type", "map", &["type"], ""),
    f("authentication.v1.TokenRequestSpec", "audiences", "", "", "atomic", &[], ""),
    f("authentication.v1.TokenReviewSpec", "audiences", "", "", "atomic", &[], ""),
    f("authentication.v1.TokenReviewStatus", "audiences", "", "", "atomic", &[], ""),
    f("authentication.v1.UserInfo", "groups", "", "", "atomic", &[], ""),
    f("authorization.v1.FieldSelectorAttributes", "requirements", "", "", "atomic", &[], ""),
    f("authorization.v1.LabelSelectorAttributes", "requirements", "", "", "atomic", &[], ""),
    f("authorization.v1.NonResourceRule", "nonResourceURLs", "", "", "atomic", &[], ""),
    f("authorization.v1.NonResourceRule", "verbs", "", "", "atomic", &[], ""),
    f("authorization.v1.ResourceRule", "apiGroups", "", "", "atomic", &[], ""),
    f("authorization.v1.ResourceRule", "resourceNames", "", "", "atomic", &[], ""),
    f("authorization.v1.ResourceRule", "resources", "", "", "atomic", &[], ""),
    f("authorization.v1.ResourceRule", "verbs", "", "", "atomic", &[], ""),
    f("authorization.v1.SubjectAccessReviewSpec", "groups", "", "", "atomic", &[], ""),
    f("authorization.v1.SubjectRulesReviewStatus", "nonResourceRules", "", "", "atomic", &[], ""),
    f("authorization.v1.SubjectRulesReviewStatus", "resourceRules", "", "", "atomic", &[], ""),
    f("autoscaling.v2.HPAScalingRules", "policies", "", "", "atomic", &[], ""),
    f("autoscaling.v2.HorizontalPodAutoscalerSpec", "metrics", "", "", "atomic", &[], ""),
    f("autoscaling.v2.HorizontalPodAutoscalerStatus", "conditions", "merge", "type", "map", &["type"], ""),
    f("autoscaling.v2.HorizontalPodAutoscalerStatus", "currentMetrics", "", "", "atomic", &[], ""),
    f("batch.v1.CronJobStatus", "active", "", "", "atomic", &[], ""),
    f("batch.v1.JobStatus", "conditions", "merge", "type", "atomic", &[], ""),
    f("batch.v1.PodFailurePolicy", "rules", "", "", "atomic", &[], ""),
    f("batch.v1.PodFailurePolicyOnExitCodesRequirement", "values", "", "", "set", &[], ""),
    f("batch.v1.PodFailurePolicyRule", "onPodConditions", "", "", "atomic", &[], ""),
    f("batch.v1.SuccessPolicy", "rules", "", "", "atomic", &[], ""),
    f("batch.v1.UncountedTerminatedPods", "failed", "", "", "set", &[], ""),
    f("batch.v1.UncountedTerminatedPods", "succeeded", "", "", "set", &[], ""),
    f("core.v1.Capabilities", "add", "", "", "atomic", &[], ""),
    f("core.v1.Capabilities", "drop", "", "", "atomic", &[], ""),
    f("core.v1.CephFSPersistentVolumeSource", "monitors", "", "", "atomic", &[], ""),
    f("core.v1.CephFSVolumeSource", "monitors", "", "", "atomic", &[], ""),
    f("core.v1.ComponentStatus", "conditions", "merge", "type", "map", &["type"], ""),
    f("core.v1.ConfigMapProjection", "items", "", "", "atomic", &[], ""),
    f("core.v1.ConfigMapVolumeSource", "items", "", "", "atomic", &[], ""),
    f("core.v1.Container", "args", "", "", "atomic", &[], ""),
    f("core.v1.Container", "command", "", "", "atomic", &[], ""),
    f("core.v1.Container", "env", "merge", "name", "map", &["name"], ""),
    f("core.v1.Container", "envFrom", "", "", "atomic", &[], ""),
    f("core.v1.Container", "ports", "merge", "containerPort", "map", &["containerPort", "protocol"], ""),
    f("core.v1.Container", "resizePolicy", "", "", "atomic", &[], ""),
    f("core.v1.Container", "volumeDevices", "merge", "devicePath", "map", &["devicePath"], ""),
    f("core.v1.Container", "volumeMounts", "merge", "mountPath", "map", &["mountPath"], ""),
    f("core.v1.ContainerImage", "names", "", "", "atomic", &[], ""),
    f("core.v1.ContainerStatus", "allocatedResourcesStatus", "merge", "name", "map", &["name"], ""),
    f("core.v1.ContainerStatus", "volumeMounts", "merge", "mountPath", "map", &["mountPath"], ""),
    f("core.v1.DownwardAPIProjection", "items", "", "", "atomic", &[], ""),
    f("core.v1.DownwardAPIVolumeSource", "items", "", "", "atomic", &[], ""),
    f("core.v1.EndpointSubset", "addresses", "", "", "atomic", &[], ""),
    f("core.v1.EndpointSubset", "notReadyAddresses", "", "", "atomic", &[], ""),
    f("core.v1.EndpointSubset", "ports", "", "", "atomic", &[], ""),
    f("core.v1.Endpoints", "subsets", "", "", "atomic", &[], ""),
    f("core.v1.EphemeralContainer", "args", "", "", "atomic", &[], ""),
    f("core.v1.EphemeralContainer", "command", "", "", "atomic", &[], ""),
    f("core.v1.EphemeralContainer", "env", "merge", "name", "map", &["name"], ""),
    f("core.v1.EphemeralContainer", "envFrom", "", "", "atomic", &[], ""),
    f("core.v1.EphemeralContainer", "ports", "merge", "containerPort", "map", &["containerPort", "protocol"], ""),
    f("core.v1.EphemeralContainer", "resizePolicy", "", "", "atomic", &[], ""),
    f("core.v1.EphemeralContainer", "volumeDevices", "merge", "devicePath", "map", &["devicePath"], ""),
    f("core.v1.EphemeralContainer", "volumeMounts", "merge", "mountPath", "map", &["mountPath"], ""),
    f("core.v1.ExecAction", "command", "", "", "atomic", &[], ""),
    f("core.v1.FCVolumeSource", "targetWWNs", "", "", "atomic", &[], ""),
    f("core.v1.FCVolumeSource", "wwids", "", "", "atomic", &[], ""),
    f("core.v1.HTTPGetAction", "httpHeaders", "", "", "atomic", &[], ""),
    f("core.v1.HostAlias", "hostnames", "", "", "atomic", &[], ""),
    f("core.v1.ISCSIPersistentVolumeSource", "portals", "", "", "atomic", &[], ""),
    f("core.v1.ISCSIVolumeSource", "portals", "", "", "atomic", &[], ""),
    f("core.v1.LimitRangeSpec", "limits", "", "", "atomic", &[], ""),
    f("core.v1.LinuxContainerUser", "supplementalGroups", "", "", "atomic", &[], ""),
    f("core.v1.LoadBalancerIngress", "ports", "", "", "atomic", &[], ""),
    f("core.v1.LoadBalancerStatus", "ingress", "", "", "atomic", &[], ""),
    f("core.v1.NamespaceSpec", "finalizers", "", "", "atomic", &[], ""),
    f("core.v1.NamespaceStatus", "conditions", "merge", "type", "map", &["type"], ""),
    f("core.v1.NodeAffinity", "preferredDuringSchedulingIgnoredDuringExecution", "", "", "atomic", &[], ""),
    f("core.v1.NodeSelector", "nodeSelectorTerms", "", "", "atomic", &[], ""),
    f("core.v1.NodeSelectorRequirement", "values", "", "", "atomic", &[], ""),
    f("core.v1.NodeSelectorTerm", "matchExpressions", "", "", "atomic", &[], ""),
    f("core.v1.NodeSelectorTerm", "matchFields", "", "", "atomic", &[], ""),
    f("core.v1.NodeSpec", "podCIDRs", "merge", "", "set", &[], ""),
    f("core.v1.NodeSpec", "taints", "", "", "atomic", &[], ""),
    f("core.v1.NodeStatus", "addresses", "merge", "type", "map", &["type"], ""),
    f("core.v1.NodeStatus", "conditions", "merge", "type", "map", &["type"], ""),
    f("core.v1.NodeStatus", "images", "", "", "atomic", &[], ""),
    f("core.v1.NodeStatus", "runtimeHandlers", "", "", "atomic", &[], ""),
    f("core.v1.NodeStatus", "volumesAttached", "", "", "atomic", &[], ""),
    f("core.v1.NodeStatus", "volumesInUse", "", "", "atomic", &[], ""),
    f("core.v1.PersistentVolumeClaimSpec", "accessModes", "", "", "atomic", &[], ""),
    f("core.v1.PersistentVolumeClaimStatus", "accessModes", "", "", "atomic", &[], ""),
    f("core.v1.PersistentVolumeClaimStatus", "allocatedResourceStatuses", "", "", "", &[], "granular"),
    f("core.v1.PersistentVolumeClaimStatus", "conditions", "merge", "type", "map", &["type"], ""),
    f("core.v1.PersistentVolumeSpec", "accessModes", "", "", "atomic", &[], ""),
    f("core.v1.PersistentVolumeSpec", "mountOptions", "", "", "atomic", &[], ""),
    f("core.v1.PodAffinity", "preferredDuringSchedulingIgnoredDuringExecution", "", "", "atomic", &[], ""),
    f("core.v1.PodAffinity", "requiredDuringSchedulingIgnoredDuringExecution", "", "", "atomic", &[], ""),
    f("core.v1.PodAffinityTerm", "matchLabelKeys", "", "", "atomic", &[], ""),
    f("core.v1.PodAffinityTerm", "mismatchLabelKeys", "", "", "atomic", &[], ""),
    f("core.v1.PodAffinityTerm", "namespaces", "", "", "atomic", &[], ""),
    f("core.v1.PodAntiAffinity", "preferredDuringSchedulingIgnoredDuringExecution", "", "", "atomic", &[], ""),
    f("core.v1.PodAntiAffinity", "requiredDuringSchedulingIgnoredDuringExecution", "", "", "atomic", &[], ""),
    f("core.v1.PodDNSConfig", "nameservers", "", "", "atomic", &[], ""),
    f("core.v1.PodDNSConfig", "options", "", "", "atomic", &[], ""),
    f("core.v1.PodDNSConfig", "searches", "", "", "atomic", &[], ""),
    f("core.v1.PodSecurityContext", "supplementalGroups", "", "", "atomic", &[], ""),
    f("core.v1.PodSecurityContext", "sysctls", "", "", "atomic", &[], ""),
    f("core.v1.PodSpec", "containers", "merge", "name", "map", &["name"], ""),
    f("core.v1.PodSpec", "ephemeralContainers", "merge", "name", "map", &["name"], ""),
    f("core.v1.PodSpec", "hostAliases", "merge", "ip", "map", &["ip"], ""),
    f("core.v1.PodSpec", "imagePullSecrets", "merge", "name", "map", &["name"], ""),
    f("core.v1.PodSpec", "initContainers", "merge", "name", "map", &["name"], ""),
    f("core.v1.PodSpec", "nodeSelector", "", "", "", &[], "atomic"),
    f("core.v1.PodSpec", "readinessGates", "", "", "atomic", &[], ""),
    f("core.v1.PodSpec", "resourceClaims", "merge,retainKeys", "name", "map", &["name"], ""),
    f("core.v1.PodSpec", "schedulingGates", "merge", "name", "map", &["name"], ""),
    f("core.v1.PodSpec", "tolerations", "", "", "atomic", &[], ""),
    f("core.v1.PodSpec", "topologySpreadConstraints", "merge", "topologyKey", "map", &["topologyKey", "whenUnsatisfiable"], ""),
    f("core.v1.PodSpec", "volumes", "merge,retainKeys", "name", "map", &["name"], ""),
    f("core.v1.PodStatus", "conditions", "merge", "type", "map", &["type"], ""),
    f("core.v1.PodStatus", "containerStatuses", "", "", "atomic", &[], ""),
    f("core.v1.PodStatus", "ephemeralContainerStatuses", "", "", "atomic", &[], ""),
    f("core.v1.PodStatus", "hostIPs", "merge", "ip", "atomic", &[], ""),
    f("core.v1.PodStatus", "initContainerStatuses", "", "", "atomic", &[], ""),
    f("core.v1.PodStatus", "podIPs", "merge", "ip", "map", &["ip"], ""),
    f("core.v1.PodStatus", "resourceClaimStatuses", "merge,retainKeys", "name", "map", &["name"], ""),
    f("core.v1.ProjectedVolumeSource", "sources", "", "", "atomic", &[], ""),
    f("core.v1.RBDPersistentVolumeSource", "monitors", "", "", "atomic", &[], ""),
    f("core.v1.RBDVolumeSource", "monitors", "", "", "atomic", &[], ""),
    f("core.v1.ReplicationControllerSpec", "selector", "", "", "", &[], "atomic"),
    f("core.v1.ReplicationControllerStatus", "conditions", "merge", "type", "map", &["type"], ""),
    f("core.v1.ResourceQuotaSpec", "scopes", "", "", "atomic", &[], ""),
    f("core.v1.ResourceRequirements", "claims", "", "", "map", &["name"], ""),
    f("core.v1.ResourceStatus", "resources", "", "", "map", &["resourceID"], ""),
    f("core.v1.ScopeSelector", "matchExpressions", "", "", "atomic", &[], ""),
    f("core.v1.ScopedResourceSelectorRequirement", "values", "", "", "atomic", &[], ""),
    f("core.v1.SecretProjection", "items", "", "", "atomic", &[], ""),
    f("core.v1.SecretVolumeSource", "items", "", "", "atomic", &[], ""),
    f("core.v1.ServiceAccount", "imagePullSecrets", "", "", "atomic", &[], ""),
    f("core.v1.ServiceAccount", "secrets", "merge", "name", "map", &["name"], ""),
    f("core.v1.ServiceSpec", "clusterIPs", "", "", "atomic", &[], ""),
    f("core.v1.ServiceSpec", "externalIPs", "", "", "atomic", &[], ""),
    f("core.v1.ServiceSpec", "ipFamilies", "", "", "atomic", &[], ""),
    f("core.v1.ServiceSpec", "loadBalancerSourceRanges", "", "", "atomic", &[], ""),
    f("core.v1.ServiceSpec", "ports", "merge", "port", "map", &["port", "protocol"], ""),
    f("core.v1.ServiceSpec", "selector", "", "", "", &[], "atomic"),
    f("core.v1.ServiceStatus", "conditions", "merge", "type", "map", &["type"], ""),
    f("core.v1.TopologySelectorLabelRequirement", "values", "", "", "atomic", &[], ""),
    f("core.v1.TopologySelectorTerm", "matchLabelExpressions", "", "", "atomic", &[], ""),
    f("core.v1.TopologySpreadConstraint", "matchLabelKeys", "", "", "atomic", &[], ""),
    f("discovery.v1.Endpoint", "addresses", "", "", "set", &[], ""),
    f("discovery.v1.EndpointHints", "forNodes", "", "", "atomic", &[], ""),
    f("discovery.v1.EndpointHints", "forZones", "", "", "atomic", &[], ""),
    f("discovery.v1.EndpointSlice", "endpoints", "", "", "atomic", &[], ""),
    f("discovery.v1.EndpointSlice", "ports", "", "", "atomic", &[], ""),
    f("networking.v1.HTTPIngressRuleValue", "paths", "", "", "atomic", &[], ""),
    f("networking.v1.IPBlock", "except", "", "", "atomic", &[], ""),
    f("networking.v1.IngressLoadBalancerIngress", "ports", "", "", "atomic", &[], ""),
    f("networking.v1.IngressLoadBalancerStatus", "ingress", "", "", "atomic", &[], ""),
    f("networking.v1.IngressSpec", "rules", "", "", "atomic", &[], ""),
    f("networking.v1.IngressSpec", "tls", "", "", "atomic", &[], ""),
    f("networking.v1.IngressTLS", "hosts", "", "", "atomic", &[], ""),
    f("networking.v1.NetworkPolicyEgressRule", "ports", "", "", "atomic", &[], ""),
    f("networking.v1.NetworkPolicyEgressRule", "to", "", "", "atomic", &[], ""),
    f("networking.v1.NetworkPolicyIngressRule", "from", "", "", "atomic", &[], ""),
    f("networking.v1.NetworkPolicyIngressRule", "ports", "", "", "atomic", &[], ""),
    f("networking.v1.NetworkPolicySpec", "egress", "", "", "atomic", &[], ""),
    f("networking.v1.NetworkPolicySpec", "ingress", "", "", "atomic", &[], ""),
    f("networking.v1.NetworkPolicySpec", "policyTypes", "", "", "atomic", &[], ""),
    f("networking.v1.ServiceCIDRSpec", "cidrs", "", "", "atomic", &[], ""),
    f("networking.v1.ServiceCIDRStatus", "conditions", "merge", "type", "map", &["type"], ""),
    f("policy.v1.PodDisruptionBudgetSpec", "selector", "replace", "", "", &[], ""),
    f("policy.v1.PodDisruptionBudgetStatus", "conditions", "merge", "type", "map", &["type"], ""),
    f("rbac.v1.AggregationRule", "clusterRoleSelectors", "", "", "atomic", &[], ""),
    f("rbac.v1.ClusterRole", "rules", "", "", "atomic", &[], ""),
    f("rbac.v1.ClusterRoleBinding", "subjects", "", "", "atomic", &[], ""),
    f("rbac.v1.PolicyRule", "apiGroups", "", "", "atomic", &[], ""),
    f("rbac.v1.PolicyRule", "nonResourceURLs", "", "", "atomic", &[], ""),
    f("rbac.v1.PolicyRule", "resourceNames", "", "", "atomic", &[], ""),
    f("rbac.v1.PolicyRule", "resources", "", "", "atomic", &[], ""),
    f("rbac.v1.PolicyRule", "verbs", "", "", "atomic", &[], ""),
    f("rbac.v1.Role", "rules", "", "", "atomic", &[], ""),
    f("rbac.v1.RoleBinding", "subjects", "", "", "atomic", &[], ""),
    f("storage.v1.CSIDriverSpec", "tokenRequests", "", "", "atomic", &[], ""),
    f("storage.v1.CSIDriverSpec", "volumeLifecycleModes", "", "", "set", &[], ""),
    f("storage.v1.CSINodeDriver", "topologyKeys", "", "", "atomic", &[], ""),
    f("storage.v1.CSINodeSpec", "drivers", "merge", "name", "map", &["name"], ""),
    f("storage.v1.StorageClass", "allowedTopologies", "", "", "atomic", &[], ""),
    f("storage.v1.StorageClass", "mountOptions", "", "", "atomic", &[], ""),
    f("meta.v1.APIResource", "categories", "", "", "atomic", &[], ""),
    f("meta.v1.APIResource", "shortNames", "", "", "atomic", &[], ""),
    f("meta.v1.APIResourceList", "resources", "", "", "atomic", &[], ""),
    f("meta.v1.DeleteOptions", "dryRun", "", "", "atomic", &[], ""),
    f("meta.v1.FieldSelectorRequirement", "values", "", "", "atomic", &[], ""),
    f("meta.v1.LabelSelector", "matchExpressions", "", "", "atomic", &[], ""),
    f("meta.v1.LabelSelectorRequirement", "values", "", "", "atomic", &[], ""),
    f("meta.v1.ObjectMeta", "finalizers", "merge", "", "set", &[], ""),
    f("meta.v1.ObjectMeta", "managedFields", "", "", "atomic", &[], ""),
    f("meta.v1.ObjectMeta", "ownerReferences", "merge", "uid", "map", &["uid"], ""),
    f("meta.v1.Status", "details", "", "", "atomic", &[], ""),
    f("meta.v1.StatusDetails", "causes", "", "", "atomic", &[], ""),
];

/// Structs marked `+structType=atomic` upstream (`x-kubernetes-map-type: atomic` on the schema).
static ATOMIC_STRUCTS: &[&str] = &[
    "autoscaling.v1.CrossVersionObjectReference",
    "core.v1.ConfigMapKeySelector",
    "core.v1.EndpointAddress",
    "core.v1.EndpointPort",
    "core.v1.LocalObjectReference",
    "core.v1.NodeSelector",
    "core.v1.NodeSelectorTerm",
    "core.v1.ObjectFieldSelector",
    "core.v1.ObjectReference",
    "core.v1.ResourceFieldSelector",
    "core.v1.ScopeSelector",
    "core.v1.SecretKeySelector",
    "core.v1.SecretReference",
    "core.v1.TopologySelectorTerm",
    "core.v1.TypedLocalObjectReference",
    "discovery.v1.EndpointPort",
    "networking.v1.ServiceBackendPort",
    "rbac.v1.RoleRef",
    "rbac.v1.Subject",
    "meta.v1.LabelSelector",
    "meta.v1.OwnerReference",
];

// ---------------------------------------------------------------------------------------------
// gnostic protobuf

/// The gnostic `openapi.v2` protobuf messages kubectl reads (field numbers from gnostic-models'
/// `openapiv2/OpenAPIv2.proto`; fields Rudder never sets are left out, which protobuf allows), and
/// the conversion from the swagger JSON, done as gnostic's `ParseDocument` does it.
mod gnostic {
    use prost::Message;
    use serde_json::Value;

    #[derive(Clone, PartialEq, Message)]
    pub struct Document {
        #[prost(string, tag = "1")]
        pub swagger: String,
        #[prost(message, optional, tag = "2")]
        pub info: Option<Info>,
        #[prost(message, optional, tag = "8")]
        pub paths: Option<Paths>,
        #[prost(message, optional, tag = "9")]
        pub definitions: Option<Definitions>,
        #[prost(message, repeated, tag = "12")]
        pub security: Vec<SecurityRequirement>,
        #[prost(message, optional, tag = "13")]
        pub security_definitions: Option<SecurityDefinitions>,
    }

    #[derive(Clone, PartialEq, Message)]
    pub struct Info {
        #[prost(string, tag = "1")]
        pub title: String,
        #[prost(string, tag = "2")]
        pub version: String,
    }

    #[derive(Clone, PartialEq, Message)]
    pub struct Paths {
        #[prost(message, repeated, tag = "2")]
        pub path: Vec<NamedPathItem>,
    }

    #[derive(Clone, PartialEq, Message)]
    pub struct NamedPathItem {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(message, optional, tag = "2")]
        pub value: Option<PathItem>,
    }

    #[derive(Clone, PartialEq, Message)]
    pub struct PathItem {
        #[prost(message, optional, tag = "2")]
        pub get: Option<Operation>,
        #[prost(message, optional, tag = "3")]
        pub put: Option<Operation>,
        #[prost(message, optional, tag = "4")]
        pub post: Option<Operation>,
        #[prost(message, optional, tag = "5")]
        pub delete: Option<Operation>,
        #[prost(message, optional, tag = "8")]
        pub patch: Option<Operation>,
        #[prost(message, repeated, tag = "9")]
        pub parameters: Vec<ParametersItem>,
    }

    #[derive(Clone, PartialEq, Message)]
    pub struct Operation {
        #[prost(string, repeated, tag = "1")]
        pub tags: Vec<String>,
        #[prost(string, tag = "3")]
        pub description: String,
        #[prost(string, tag = "5")]
        pub operation_id: String,
        #[prost(string, repeated, tag = "6")]
        pub produces: Vec<String>,
        #[prost(string, repeated, tag = "7")]
        pub consumes: Vec<String>,
        #[prost(message, repeated, tag = "8")]
        pub parameters: Vec<ParametersItem>,
        #[prost(message, optional, tag = "9")]
        pub responses: Option<Responses>,
        #[prost(string, repeated, tag = "10")]
        pub schemes: Vec<String>,
        #[prost(message, repeated, tag = "13")]
        pub vendor_extension: Vec<NamedAny>,
    }

    /// `ParametersItem{oneof: Parameter parameter = 1}` collapsed with
    /// `Parameter{oneof: BodyParameter = 1; NonBodyParameter = 2}` one level down.
    #[derive(Clone, PartialEq, Message)]
    pub struct ParametersItem {
        #[prost(message, optional, tag = "1")]
        pub parameter: Option<Parameter>,
    }

    #[derive(Clone, PartialEq, Message)]
    pub struct Parameter {
        #[prost(message, optional, tag = "1")]
        pub body_parameter: Option<BodyParameter>,
        #[prost(message, optional, tag = "2")]
        pub non_body_parameter: Option<NonBodyParameter>,
    }

    #[derive(Clone, PartialEq, Message)]
    pub struct BodyParameter {
        #[prost(string, tag = "1")]
        pub description: String,
        #[prost(string, tag = "2")]
        pub name: String,
        #[prost(string, tag = "3")]
        pub r#in: String,
        #[prost(bool, tag = "4")]
        pub required: bool,
        #[prost(message, optional, tag = "5")]
        pub schema: Option<Schema>,
    }

    #[derive(Clone, PartialEq, Message)]
    pub struct NonBodyParameter {
        #[prost(message, optional, tag = "3")]
        pub query_parameter_sub_schema: Option<QueryParameterSubSchema>,
        #[prost(message, optional, tag = "4")]
        pub path_parameter_sub_schema: Option<PathParameterSubSchema>,
    }

    #[derive(Clone, PartialEq, Message)]
    pub struct QueryParameterSubSchema {
        #[prost(bool, tag = "1")]
        pub required: bool,
        #[prost(string, tag = "2")]
        pub r#in: String,
        #[prost(string, tag = "3")]
        pub description: String,
        #[prost(string, tag = "4")]
        pub name: String,
        #[prost(string, tag = "6")]
        pub r#type: String,
        #[prost(bool, tag = "20")]
        pub unique_items: bool,
    }

    #[derive(Clone, PartialEq, Message)]
    pub struct PathParameterSubSchema {
        #[prost(bool, tag = "1")]
        pub required: bool,
        #[prost(string, tag = "2")]
        pub r#in: String,
        #[prost(string, tag = "3")]
        pub description: String,
        #[prost(string, tag = "4")]
        pub name: String,
        #[prost(string, tag = "5")]
        pub r#type: String,
        #[prost(bool, tag = "19")]
        pub unique_items: bool,
    }

    #[derive(Clone, PartialEq, Message)]
    pub struct Responses {
        #[prost(message, repeated, tag = "1")]
        pub response_code: Vec<NamedResponseValue>,
    }

    #[derive(Clone, PartialEq, Message)]
    pub struct NamedResponseValue {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(message, optional, tag = "2")]
        pub value: Option<ResponseValue>,
    }

    /// `ResponseValue{oneof: Response response = 1; JsonReference json_reference = 2}`.
    #[derive(Clone, PartialEq, Message)]
    pub struct ResponseValue {
        #[prost(message, optional, tag = "1")]
        pub response: Option<Response>,
    }

    #[derive(Clone, PartialEq, Message)]
    pub struct Response {
        #[prost(string, tag = "1")]
        pub description: String,
        #[prost(message, optional, tag = "2")]
        pub schema: Option<SchemaItem>,
    }

    /// `SchemaItem{oneof: Schema schema = 1; FileSchema file_schema = 2}`.
    #[derive(Clone, PartialEq, Message)]
    pub struct SchemaItem {
        #[prost(message, optional, tag = "1")]
        pub schema: Option<Schema>,
    }

    #[derive(Clone, PartialEq, Message)]
    pub struct Schema {
        #[prost(string, tag = "1")]
        pub xref: String,
        #[prost(string, tag = "2")]
        pub format: String,
        #[prost(string, tag = "4")]
        pub description: String,
        #[prost(message, optional, tag = "5")]
        pub default: Option<Any>,
        #[prost(string, repeated, tag = "19")]
        pub required: Vec<String>,
        #[prost(message, repeated, tag = "20")]
        pub r#enum: Vec<Any>,
        #[prost(message, optional, boxed, tag = "21")]
        pub additional_properties: Option<Box<AdditionalPropertiesItem>>,
        #[prost(message, optional, tag = "22")]
        pub r#type: Option<TypeItem>,
        #[prost(message, optional, tag = "23")]
        pub items: Option<ItemsItem>,
        #[prost(message, repeated, tag = "24")]
        pub all_of: Vec<Schema>,
        #[prost(message, optional, tag = "25")]
        pub properties: Option<Properties>,
        #[prost(message, repeated, tag = "31")]
        pub vendor_extension: Vec<NamedAny>,
    }

    /// `AdditionalPropertiesItem{oneof: Schema schema = 1; bool boolean = 2}`.
    #[derive(Clone, PartialEq, Message)]
    pub struct AdditionalPropertiesItem {
        #[prost(oneof = "additional_properties_item::Oneof", tags = "1, 2")]
        pub oneof: Option<additional_properties_item::Oneof>,
    }

    pub mod additional_properties_item {
        #[derive(Clone, PartialEq, prost::Oneof)]
        pub enum Oneof {
            #[prost(message, boxed, tag = "1")]
            Schema(Box<super::Schema>),
            #[prost(bool, tag = "2")]
            Boolean(bool),
        }
    }

    #[derive(Clone, PartialEq, Message)]
    pub struct TypeItem {
        #[prost(string, repeated, tag = "1")]
        pub value: Vec<String>,
    }

    #[derive(Clone, PartialEq, Message)]
    pub struct ItemsItem {
        #[prost(message, repeated, tag = "1")]
        pub schema: Vec<Schema>,
    }

    #[derive(Clone, PartialEq, Message)]
    pub struct Properties {
        #[prost(message, repeated, tag = "1")]
        pub additional_properties: Vec<NamedSchema>,
    }

    #[derive(Clone, PartialEq, Message)]
    pub struct Definitions {
        #[prost(message, repeated, tag = "1")]
        pub additional_properties: Vec<NamedSchema>,
    }

    #[derive(Clone, PartialEq, Message)]
    pub struct NamedSchema {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(message, optional, tag = "2")]
        pub value: Option<Schema>,
    }

    #[derive(Clone, PartialEq, Message)]
    pub struct NamedAny {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(message, optional, tag = "2")]
        pub value: Option<Any>,
    }

    /// `Any{google.protobuf.Any value = 1; string yaml = 2}`: clients read `yaml` (JSON text is
    /// YAML).
    #[derive(Clone, PartialEq, Message)]
    pub struct Any {
        #[prost(string, tag = "2")]
        pub yaml: String,
    }

    #[derive(Clone, PartialEq, Message)]
    pub struct SecurityRequirement {
        #[prost(message, repeated, tag = "1")]
        pub additional_properties: Vec<NamedStringArray>,
    }

    #[derive(Clone, PartialEq, Message)]
    pub struct NamedStringArray {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(message, optional, tag = "2")]
        pub value: Option<StringArray>,
    }

    #[derive(Clone, PartialEq, Message)]
    pub struct StringArray {
        #[prost(string, repeated, tag = "1")]
        pub value: Vec<String>,
    }

    #[derive(Clone, PartialEq, Message)]
    pub struct SecurityDefinitions {
        #[prost(message, repeated, tag = "1")]
        pub additional_properties: Vec<NamedSecurityDefinitionsItem>,
    }

    #[derive(Clone, PartialEq, Message)]
    pub struct NamedSecurityDefinitionsItem {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(message, optional, tag = "2")]
        pub value: Option<SecurityDefinitionsItem>,
    }

    /// `SecurityDefinitionsItem{oneof: …; ApiKeySecurity api_key_security = 2; …}`.
    #[derive(Clone, PartialEq, Message)]
    pub struct SecurityDefinitionsItem {
        #[prost(message, optional, tag = "2")]
        pub api_key_security: Option<ApiKeySecurity>,
    }

    #[derive(Clone, PartialEq, Message)]
    pub struct ApiKeySecurity {
        #[prost(string, tag = "1")]
        pub r#type: String,
        #[prost(string, tag = "2")]
        pub name: String,
        #[prost(string, tag = "3")]
        pub r#in: String,
        #[prost(string, tag = "4")]
        pub description: String,
    }

    fn text(v: &Value, key: &str) -> String {
        v.get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    }

    fn strings(v: &Value, key: &str) -> Vec<String> {
        v.get(key)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    }

    fn entries(v: &Value, key: &str) -> Vec<(String, Value)> {
        v.get(key)
            .and_then(Value::as_object)
            .map(|m| m.iter().map(|(k, x)| (k.clone(), x.clone())).collect())
            .unwrap_or_default()
    }

    fn any(v: &Value) -> Any {
        Any {
            yaml: serde_json::to_string(v).unwrap_or_default(),
        }
    }

    /// Vendor extensions (`x-…` keys) as gnostic keeps them: name and YAML text.
    fn extensions(v: &Value) -> Vec<NamedAny> {
        v.as_object()
            .map(|m| {
                m.iter()
                    .filter(|(k, _)| k.starts_with("x-"))
                    .map(|(k, x)| NamedAny {
                        name: k.clone(),
                        value: Some(any(x)),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn schema(v: &Value) -> Schema {
        let mut s = Schema {
            xref: text(v, "$ref"),
            format: text(v, "format"),
            description: text(v, "description"),
            default: v.get("default").map(any),
            required: strings(v, "required"),
            r#enum: v
                .get("enum")
                .and_then(Value::as_array)
                .map(|a| a.iter().map(any).collect())
                .unwrap_or_default(),
            vendor_extension: extensions(v),
            ..Schema::default()
        };
        s.additional_properties = match v.get("additionalProperties") {
            Some(Value::Bool(b)) => Some(Box::new(AdditionalPropertiesItem {
                oneof: Some(additional_properties_item::Oneof::Boolean(*b)),
            })),
            Some(x @ Value::Object(_)) => Some(Box::new(AdditionalPropertiesItem {
                oneof: Some(additional_properties_item::Oneof::Schema(Box::new(schema(
                    x,
                )))),
            })),
            _ => None,
        };
        s.r#type = match v.get("type") {
            Some(Value::String(t)) => Some(TypeItem {
                value: vec![t.clone()],
            }),
            Some(Value::Array(_)) => Some(TypeItem {
                value: strings(v, "type"),
            }),
            _ => None,
        };
        s.items = match v.get("items") {
            Some(x @ Value::Object(_)) => Some(ItemsItem {
                schema: vec![schema(x)],
            }),
            Some(Value::Array(a)) => Some(ItemsItem {
                schema: a.iter().map(schema).collect(),
            }),
            _ => None,
        };
        s.all_of = v
            .get("allOf")
            .and_then(Value::as_array)
            .map(|a| a.iter().map(schema).collect())
            .unwrap_or_default();
        s.properties = v
            .get("properties")
            .and_then(Value::as_object)
            .map(|m| Properties {
                additional_properties: m
                    .iter()
                    .map(|(k, x)| NamedSchema {
                        name: k.clone(),
                        value: Some(schema(x)),
                    })
                    .collect(),
            });
        s
    }

    fn parameter(v: &Value) -> ParametersItem {
        let p = match text(v, "in").as_str() {
            "body" => Parameter {
                body_parameter: Some(BodyParameter {
                    description: text(v, "description"),
                    name: text(v, "name"),
                    r#in: "body".into(),
                    required: v.get("required").and_then(Value::as_bool) == Some(true),
                    schema: v.get("schema").map(schema),
                }),
                ..Parameter::default()
            },
            "path" => Parameter {
                non_body_parameter: Some(NonBodyParameter {
                    path_parameter_sub_schema: Some(PathParameterSubSchema {
                        required: true,
                        r#in: "path".into(),
                        description: text(v, "description"),
                        name: text(v, "name"),
                        r#type: text(v, "type"),
                        unique_items: v.get("uniqueItems").and_then(Value::as_bool) == Some(true),
                    }),
                    ..NonBodyParameter::default()
                }),
                ..Parameter::default()
            },
            _ => Parameter {
                non_body_parameter: Some(NonBodyParameter {
                    query_parameter_sub_schema: Some(QueryParameterSubSchema {
                        required: v.get("required").and_then(Value::as_bool) == Some(true),
                        r#in: "query".into(),
                        description: text(v, "description"),
                        name: text(v, "name"),
                        r#type: text(v, "type"),
                        unique_items: v.get("uniqueItems").and_then(Value::as_bool) == Some(true),
                    }),
                    ..NonBodyParameter::default()
                }),
                ..Parameter::default()
            },
        };
        ParametersItem { parameter: Some(p) }
    }

    fn parameters(v: &Value) -> Vec<ParametersItem> {
        v.get("parameters")
            .and_then(Value::as_array)
            .map(|a| a.iter().map(parameter).collect())
            .unwrap_or_default()
    }

    fn operation(v: &Value) -> Operation {
        Operation {
            tags: strings(v, "tags"),
            description: text(v, "description"),
            operation_id: text(v, "operationId"),
            produces: strings(v, "produces"),
            consumes: strings(v, "consumes"),
            parameters: parameters(v),
            responses: Some(Responses {
                response_code: entries(v, "responses")
                    .into_iter()
                    .map(|(code, r)| NamedResponseValue {
                        name: code,
                        value: Some(ResponseValue {
                            response: Some(Response {
                                description: text(&r, "description"),
                                schema: r.get("schema").map(|s| SchemaItem {
                                    schema: Some(schema(s)),
                                }),
                            }),
                        }),
                    })
                    .collect(),
            }),
            schemes: strings(v, "schemes"),
            vendor_extension: extensions(v),
        }
    }

    fn path_item(v: &Value) -> PathItem {
        let op = |m: &str| v.get(m).map(operation);
        PathItem {
            get: op("get"),
            put: op("put"),
            post: op("post"),
            delete: op("delete"),
            patch: op("patch"),
            parameters: parameters(v),
        }
    }

    /// The protobuf encoding of a swagger 2.0 JSON document.
    pub fn encode(doc: &Value) -> Vec<u8> {
        let d = Document {
            swagger: text(doc, "swagger"),
            info: doc.get("info").map(|i| Info {
                title: text(i, "title"),
                version: text(i, "version"),
            }),
            paths: Some(Paths {
                path: entries(doc, "paths")
                    .into_iter()
                    .map(|(name, p)| NamedPathItem {
                        name,
                        value: Some(path_item(&p)),
                    })
                    .collect(),
            }),
            definitions: Some(Definitions {
                additional_properties: entries(doc, "definitions")
                    .into_iter()
                    .map(|(name, s)| NamedSchema {
                        name,
                        value: Some(schema(&s)),
                    })
                    .collect(),
            }),
            security: doc
                .get("security")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .map(|req| SecurityRequirement {
                            additional_properties: req
                                .as_object()
                                .map(|m| {
                                    m.iter()
                                        .map(|(k, x)| NamedStringArray {
                                            name: k.clone(),
                                            value: Some(StringArray {
                                                value: x
                                                    .as_array()
                                                    .map(|a| {
                                                        a.iter()
                                                            .filter_map(Value::as_str)
                                                            .map(str::to_string)
                                                            .collect()
                                                    })
                                                    .unwrap_or_default(),
                                            }),
                                        })
                                        .collect()
                                })
                                .unwrap_or_default(),
                        })
                        .collect()
                })
                .unwrap_or_default(),
            security_definitions: Some(SecurityDefinitions {
                additional_properties: entries(doc, "securityDefinitions")
                    .into_iter()
                    .map(|(name, s)| NamedSecurityDefinitionsItem {
                        name,
                        value: Some(SecurityDefinitionsItem {
                            api_key_security: Some(ApiKeySecurity {
                                r#type: text(&s, "type"),
                                name: text(&s, "name"),
                                r#in: text(&s, "in"),
                                description: text(&s, "description"),
                            }),
                        }),
                    })
                    .collect(),
            }),
        };
        d.encode_to_vec()
    }
}

// ---------------------------------------------------------------------------------------------
// The schemas, for [`crate::schema`]'s typed-object checks.

/// The component schemas and which schema each kind uses, generated once.
fn schema_index() -> &'static (Map<String, Value>, BTreeMap<Gvk, String>) {
    static INDEX: OnceLock<(Map<String, Value>, BTreeMap<Gvk, String>)> = OnceLock::new();
    INDEX.get_or_init(generate)
}

/// Every component schema by name (`io.k8s.api.apps.v1.Deployment`), references as
/// `#/components/schemas/<name>`.
pub(crate) fn component_schemas() -> &'static Map<String, Value> {
    &schema_index().0
}

/// Each kind's (group, version, kind) and the name of its schema.
pub(crate) fn kind_schemas(
) -> impl Iterator<Item = ((&'static str, &'static str, &'static str), &'static str)> {
    schema_index()
        .1
        .iter()
        .map(|(gvk, name)| ((gvk.group, gvk.version, gvk.kind.as_str()), name.as_str()))
}

/// Deserialises a JSON object into a k8s-openapi type and drops it: `Err` is serde's message
/// with the path where it stopped.
pub(crate) type TypeDecoder = fn(&Value) -> Result<(), String>;

fn decode_as<T: serde::de::DeserializeOwned>(v: &Value) -> Result<(), String> {
    <T as serde::Deserialize>::deserialize(v)
        .map(drop)
        .map_err(|e| e.to_string())
}

/// The decoder of the k8s-openapi type of `group/version` `kind`.
pub(crate) fn type_decoder(group: &str, version: &str, kind: &str) -> Option<TypeDecoder> {
    static DECODERS: OnceLock<BTreeMap<(&'static str, &'static str, &'static str), TypeDecoder>> =
        OnceLock::new();
    DECODERS
        .get_or_init(|| {
            let mut m: BTreeMap<(&'static str, &'static str, &'static str), TypeDecoder> =
                BTreeMap::new();
            macro_rules! decoders {
                ($($ty:ty),* $(,)?) => {{
                    $( m.insert(
                        (<$ty as k8s_openapi::Resource>::GROUP, <$ty as k8s_openapi::Resource>::VERSION, <$ty as k8s_openapi::Resource>::KIND),
                        decode_as::<$ty>,
                    ); )*
                }};
            }
            served_types!(decoders);
            m
        })
        .get(&(group, version, kind))
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::patch::{list_rule, ListRule};

    #[test]
    fn every_extension_entry_lands_on_a_property() {
        let (definitions, _) = generate();
        let mut missing = Vec::new();
        for e in FIELD_EXTENSIONS {
            let name = full_name(e.schema);
            if definitions
                .get(&name)
                .and_then(|s| s.get("properties"))
                .and_then(|p| p.get(e.property))
                .is_none()
            {
                missing.push(format!("{}.{}", e.schema, e.property));
            }
        }
        for s in ATOMIC_STRUCTS {
            if !definitions.contains_key(&full_name(s)) {
                missing.push(s.to_string());
            }
        }
        assert!(
            missing.is_empty(),
            "no such schema or property: {missing:?}"
        );
    }

    /// The server's strategic merge patch (`patch::list_rule`, keyed by parent and field name)
    /// and the patch metadata the documents publish (upstream's, keyed by type) agree on every
    /// list reachable from a served kind; otherwise kubectl would compute patches the server
    /// applies differently.
    #[test]
    fn server_patch_rules_match_the_published_patch_metadata() {
        let model = Model::build();
        let mut mismatches = BTreeSet::new();
        let mut seen = BTreeSet::new();
        for row in catalogue::RESOURCES {
            let Some(name) = model
                .schema_of
                .get(&Gvk::new(row.group, row.version, row.kind))
            else {
                continue;
            };
            walk(&model, name, "", &mut seen, &mut mismatches);
        }
        assert!(
            mismatches.is_empty(),
            "server and OpenAPI disagree:\n{}",
            mismatches.into_iter().collect::<Vec<_>>().join("\n")
        );
    }

    fn target(s: &Value) -> Option<&str> {
        let s = s.get("allOf").and_then(|a| a.get(0)).unwrap_or(s);
        s.get("$ref")?.as_str()?.strip_prefix(SCHEMA_PREFIX_V3)
    }

    fn walk(
        model: &Model,
        name: &str,
        parent: &str,
        seen: &mut BTreeSet<(String, String)>,
        mismatches: &mut BTreeSet<String>,
    ) {
        if !seen.insert((name.to_string(), parent.to_string())) {
            return;
        }
        let Some(props) = model
            .definitions
            .get(name)
            .and_then(|s| s.get("properties"))
            .and_then(Value::as_object)
        else {
            return;
        };
        for (field, p) in props {
            if p.get("type").and_then(Value::as_str) == Some("array") {
                let published = match p.get("x-kubernetes-patch-strategy").and_then(Value::as_str) {
                    Some(s) if s.split(',').any(|x| x == "merge") => {
                        match p
                            .get("x-kubernetes-patch-merge-key")
                            .and_then(Value::as_str)
                        {
                            Some(k) => format!("Key({k:?})"),
                            None => format!("{:?}", ListRule::Union),
                        }
                    }
                    _ => format!("{:?}", ListRule::Replace),
                };
                let server = format!("{:?}", list_rule(parent, field));
                if published != server {
                    mismatches.insert(format!(
                        "{name}.{field} (parent {parent:?}): OpenAPI {published}, server {server}"
                    ));
                }
                if let Some(items) = p.get("items").and_then(target) {
                    walk(model, items, field, seen, mismatches);
                }
            } else if let Some(t) = target(p) {
                walk(model, t, field, seen, mismatches);
            }
        }
    }
}
