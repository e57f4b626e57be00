//! The one generic registry: create, get, list, update, patch, delete and watch for every kind,
//! over the [`Store`], with objects stored as JSON under `/registry/<group>/<resource>/[<ns>/]<name>`.
//!
//! An object's `metadata.resourceVersion` is the store's `mod_revision` of its key; a list's is
//! the revision it was read at. Kind-specific rules come from the resource's strategy; this
//! module owns only what every kind shares (metadata, optimistic concurrency, deletion,
//! paging, watch).

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use rudder_api::catalogue::Subresource;
use rudder_api::conversion::Conversion;
use rudder_api::managed;
use rudder_api::schema::Type as SchemaType;
use rudder_api::strategy::Strategy;
use rudder_api::validation::{self, FieldError};
use rudder_store::{
    KeyRange, KeyValue, RangeRequest, Revision, Store, StoreError, WatchMessage, WatchRequest,
};
use serde_json::{json, Map, Value};

use crate::admission::{self, Admission, Attributes, Operation};
use crate::error::{ApiError, Target};
use crate::hooks::{Hooks, Taken};
use crate::pki::User;
use crate::resources::{Resources, Served};
use crate::services::Allocator;
use crate::watchcache::{FeedItem, WatchCache};
use rudder_api::selector::Selectors;

/// How a write is asked for, besides the object: what dry run, admission and managed fields
/// need to know about the request.
#[derive(Clone, Debug, Default)]
pub struct Write {
    /// `dryRun=All`: everything but the store write.
    pub dry_run: bool,
    /// Who asks; `None` for the server's own writes (objects made at start, namespace
    /// finalisation).
    pub user: Option<User>,
    /// The request's `fieldManager`.
    pub field_manager: Option<String>,
    /// The request's `force` (server-side apply).
    pub force: bool,
    /// The request's `User-Agent`: names the manager of an update without `fieldManager`.
    pub user_agent: Option<String>,
    /// The subresource written through, other than `status` (`scale`): named in managed fields.
    pub subresource: Option<String>,
    /// Set by [`Registry::apply`]: the object's managed fields are already the apply's.
    pub(crate) applying: bool,
}

impl Write {
    /// A write the server makes on its own behalf.
    pub fn server() -> Write {
        Write::default()
    }

    /// A write the server makes on its own behalf that upstream makes as a client of itself,
    /// recorded in the managed fields under `manager` (`kube-apiserver` for what the API
    /// server makes, `kube-controller-manager` for what upstream's controllers make).
    pub fn server_as(manager: &str) -> Write {
        Write {
            field_manager: Some(manager.to_string()),
            ..Write::default()
        }
    }

    /// Who the managed fields name for this write: `fieldManager`, else the User-Agent up to
    /// its first `/` (printable characters, at most 128 bytes), as upstream; `None` for the
    /// server's own writes.
    fn manager(&self) -> Option<String> {
        if let Some(m) = self.field_manager.as_deref().filter(|m| !m.is_empty()) {
            return Some(m.to_string());
        }
        let ua = self.user_agent.as_deref()?;
        let mut out = String::new();
        for c in ua.split('/').next().unwrap_or("").chars() {
            if c.is_control() {
                continue;
            }
            if out.len() + c.len_utf8() > 128 {
                break;
            }
            out.push(c);
        }
        Some(out)
    }
}

/// A JSON pointer to `path`.
fn pointer(path: &[&str]) -> String {
    path.iter()
        .map(|p| format!("/{}", p.replace('~', "~0").replace('/', "~1")))
        .collect()
}

/// Who writes, for the managed fields.
fn writer<'a>(
    res: &Res,
    part: Part,
    w: &'a Write,
    manager: &'a str,
    api_version: &'a str,
    now: &'a str,
) -> managed::Writer<'a> {
    let (subresource, reset) = match part {
        Part::Status => ("status", managed::Reset::AllButStatus),
        Part::Field(sub) => (sub.name, managed::Reset::Status),
        _ if res.has_status => (
            w.subresource.as_deref().unwrap_or(""),
            managed::Reset::Status,
        ),
        _ => (w.subresource.as_deref().unwrap_or(""), managed::Reset::None),
    };
    managed::Writer {
        manager,
        api_version,
        subresource,
        now,
        reset,
    }
}

/// Records a create, update or patch in `new`'s managed fields (an apply has recorded itself;
/// the server's own writes are not recorded).
/// (`managedFields: []` asks to clear them, so empty lists are dropped here, not before.)
fn track(res: &Res, part: Part, w: &Write, old: Option<&Value>, new: &mut Value) {
    if !w.applying && part != Part::All {
        if let Some(fields) = managed_fields(res, part, w, old, new.clone()) {
            managed::set_managed_fields_value(new, fields);
        }
    }
    drop_empty_managed_fields(new);
}

/// The managed fields a create, update or patch by `w` leaves on `new` (consumed: the
/// comparison works on it in place, so a big object is not copied again); `None` when the
/// write is not recorded.
fn managed_fields(
    res: &Res,
    part: Part,
    w: &Write,
    old: Option<&Value>,
    new: Value,
) -> Option<Value> {
    let manager = w.manager()?;
    let (api_version, now) = (res.api_version(), now_rfc3339());
    let who = writer(res, part, w, &manager, &api_version, &now);
    // Each entry's fields are paths of its own version: the writer's are compared in the form
    // of the version it writes, another entry's in the form of its version (upstream's version
    // converter), for the versions this kind is served in.
    let storage_version = catalogue_api_version(res.storage_group, res.storage_version);
    let mut versions: Vec<String> = Vec::new();
    for e in managed::decode(old.and_then(|o| meta(o).get("managedFields"))).unwrap_or_default() {
        if e.api_version != api_version && !versions.contains(&e.api_version) {
            versions.push(e.api_version);
        }
    }
    let mut others = Vec::new();
    for v in &versions {
        let (group, version) = match v.split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", v.as_str()),
        };
        let convert = |o: &Value| -> Option<Value> {
            if *v == storage_version {
                return Some(o.clone());
            }
            let c = Conversion::for_served(group, version, res.kind)?;
            Some(c.from_storage(o.clone()))
        };
        let Some(new_form) = convert(&new) else {
            continue;
        };
        others.push(managed::Form {
            api_version: v,
            ty: SchemaType::of_kind(group, version, res.kind),
            old: old.and_then(convert),
            new: new_form,
        });
    }
    let mut forms = vec![managed::Form {
        api_version: &api_version,
        ty: SchemaType::of_kind(res.group, res.version, res.kind),
        old: old.map(|o| res.present(o.clone())),
        new: res.present(new),
    }];
    forms.extend(others);
    managed::update_in(forms, &who)
}

/// `managedFields: []` (or null) left on an object: the field goes.
fn drop_empty_managed_fields(new: &mut Value) {
    if let Some(m) = new.get_mut("metadata").and_then(Value::as_object_mut) {
        if m.get("managedFields")
            .is_some_and(|f| f.is_null() || f.as_array().is_some_and(|a| a.is_empty()))
        {
            m.remove("managedFields");
        }
    }
}

fn catalogue_api_version(group: &str, version: &str) -> String {
    if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    }
}

/// What the registry needs to know about a resource.
#[derive(Clone, Debug)]
pub struct Res {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub namespaced: bool,
    /// Key prefix of the stored objects, ending in `/` (shared by every version served).
    pub prefix: String,
    /// The kind has a status subresource: the main resource ignores status changes and the
    /// status subresource ignores everything else.
    pub has_status: bool,
    /// The kind's rules (defaults, validation, names, deletion); they work on the stored form.
    pub strategy: Arc<dyn Strategy>,
    /// What the kind does around writes that needs the server's state, if anything.
    pub hooks: Option<Arc<dyn Hooks>>,
    /// Group, version and kind of the stored form.
    pub storage_group: &'static str,
    pub storage_version: &'static str,
    pub storage_kind: &'static str,
    /// How the served form differs from the stored form, if it does.
    pub conversion: Option<Conversion>,
}

impl Res {
    /// The served form of a stored object.
    fn present(&self, mut obj: Value) -> Value {
        if let Some(c) = self.conversion {
            obj = c.from_storage(obj);
        }
        set_type(self, &mut obj);
        obj
    }

    /// The stored form of an object sent in the served form.
    fn to_storage(&self, obj: Value) -> Value {
        match self.conversion {
            Some(c) => c.to_storage(obj),
            None => obj,
        }
    }

    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    fn key(&self, ns: Option<&str>, name: &str) -> Bytes {
        match (self.namespaced, ns) {
            (true, Some(ns)) => Bytes::from(format!("{}{ns}/{name}", self.prefix)),
            _ => Bytes::from(format!("{}{name}", self.prefix)),
        }
    }

    fn range(&self, ns: Option<&str>) -> KeyRange {
        match (self.namespaced, ns) {
            (true, Some(ns)) => KeyRange::prefix(Bytes::from(format!("{}{ns}/", self.prefix))),
            _ => KeyRange::prefix(Bytes::from(self.prefix.clone())),
        }
    }

    fn target<'a>(&'a self, name: &'a str) -> Target<'a> {
        Target {
            group: self.group,
            name_of_type: self.plural,
            name,
        }
    }
}

/// Which part of an object a write addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    Main,
    Status,
    /// Both at once, written by the server itself (a pod's binding, a namespace marked for
    /// deletion): the kind's rules for client updates are not checked.
    All,
    /// The one field a subresource writes ([`Subresource::writes`]; pods'
    /// `spec.ephemeralContainers`); the rest of the object stays as it is.
    Field(&'static Subresource),
}

/// Query options of a list or watch.
#[derive(Clone, Debug, Default)]
pub struct ListOptions {
    pub selectors: Selectors,
    pub limit: Option<i64>,
    pub continue_token: Option<String>,
    pub resource_version: Option<String>,
    pub resource_version_match: Option<String>,
    pub allow_bookmarks: bool,
    pub timeout: Option<std::time::Duration>,
    /// `sendInitialEvents` of a watch (a streaming list when true), `None` when absent.
    pub send_initial_events: Option<bool>,
}

/// Delete options (query or body).
#[derive(Clone, Debug, Default)]
pub struct DeleteOptions {
    pub grace_period_seconds: Option<i64>,
    pub propagation_policy: Option<String>,
    pub precondition_uid: Option<String>,
    pub precondition_resource_version: Option<String>,
    pub dry_run: bool,
    /// Who asks (admission sees it); `None` for the server's own deletes.
    pub user: Option<User>,
}

/// What a delete did.
pub enum Deleted {
    /// Gone from the store; the object as it was.
    Now(Value),
    /// Marked for deletion (finalizers or grace); the updated object.
    Pending(Value),
}

/// One watch event, ready to serialise.
#[derive(Clone, Debug)]
pub enum WatchEvent {
    Added(Value),
    Modified(Value),
    Deleted(Value),
    Bookmark(Revision),
    /// The bookmark that ends a streaming list's initial events (annotated
    /// `k8s.io/initial-events-end`): every object that existed at this revision was sent.
    InitialEventsEnd(Revision),
    Error(ApiError),
    /// A whole watch line (`{"object":…,"type":…}` and a newline), for watchers of the stored
    /// version without selectors, made once for all of them by the watch cache.
    Encoded(Bytes),
}

/// Where namespaces are stored (their existence gates namespaced writes).
pub const NAMESPACES_PREFIX: &str = "/registry/namespaces/";

pub struct Registry {
    store: Arc<dyn Store>,
    services: Arc<Allocator>,
    resources: Resources,
    cache: WatchCache,
    admission: Admission,
}

fn meta(obj: &Value) -> &Value {
    obj.get("metadata").unwrap_or(&Value::Null)
}

fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    meta(obj).get(field).and_then(Value::as_str)
}

/// `metadata.resourceVersion`: not stored, the revision of the write that made this version.
fn set_resource_version(obj: &mut Value, revision: Revision) {
    meta_mut(obj).insert(
        "resourceVersion".into(),
        Value::String(revision.to_string()),
    );
}

/// The object's metadata, made an object if it is not one (callers have checked that `obj`
/// is an object; anything else is made one).
fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.is_object() {
        *obj = json!({});
    }
    let meta = obj
        .as_object_mut()
        .expect("just made an object")
        .entry("metadata")
        .or_insert_with(|| json!({}));
    if !meta.is_object() {
        *meta = json!({});
    }
    meta.as_object_mut().expect("just made an object")
}

/// Empty label, annotation, finalizer and owner lists are not kept (upstream's `omitempty`):
/// `kubectl label x a-` of the last label leaves no `labels: {}` behind.
fn drop_empty_meta(obj: &mut Value) {
    if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        m.retain(|k, v| {
            let listy = matches!(
                k.as_str(),
                "labels" | "annotations" | "finalizers" | "ownerReferences"
            );
            !(listy
                && (v.is_null()
                    || v.as_object().is_some_and(|o| o.is_empty())
                    || v.as_array().is_some_and(|a| a.is_empty())))
        });
    }
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

pub fn now_rfc3339() -> String {
    rfc3339(now_unix())
}

/// An update that leaves an object being deleted with nothing to wait for (its last finalizer
/// removed, its grace period over) deletes it, if its kind agrees.
fn done_deleting(res: &Res, old: &Value, new: &Value) -> bool {
    meta(old).get("deletionTimestamp").is_some()
        && meta(new).get("deletionTimestamp").is_some()
        && meta(new)["finalizers"]
            .as_array()
            .is_none_or(|f| f.is_empty())
        && meta(new)["deletionGracePeriodSeconds"]
            .as_i64()
            .unwrap_or(0)
            == 0
        && res.strategy.may_go_when_finalized(new)
}

/// Tells the kind's hooks how a write they prepared ended (nothing was kept under dry run).
async fn after_write(
    res: &Res,
    old: Option<&Value>,
    new: &Value,
    taken: Taken,
    written: bool,
    dry_run: bool,
) {
    if let (Some(h), false) = (&res.hooks, dry_run) {
        h.after_write(old, new, taken, written).await;
    }
}

/// Asks the kind's hooks to complete `new` before it is written.
async fn before_write(
    res: &Res,
    new: &mut Value,
    old: Option<&Value>,
    dry_run: bool,
) -> Result<Taken, ApiError> {
    match &res.hooks {
        Some(h) => h.before_write(new, old, dry_run).await,
        None => Ok(None),
    }
}

/// Seconds since the epoch as `YYYY-MM-DDThh:mm:ssZ`.
pub fn rfc3339(secs: i64) -> String {
    rudder_api::printers::format_timestamp(secs, None).unwrap_or_default()
}

/// A random RFC 4122 version-4 UUID.
pub fn new_uid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The five characters upstream appends to `generateName` (no vowels, no confusables).
pub(crate) fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..5)
        .map(|_| ALPHABET[rand::random::<usize>() % ALPHABET.len()] as char)
        .collect()
}

/// Decodes a stored value in its served form.
fn decode(res: &Res, kv: &KeyValue) -> Result<Value, ApiError> {
    decode_stored(kv).map(|o| res.present(o))
}

/// Decodes a stored value, in its stored form, with its resourceVersion.
fn decode_stored(kv: &KeyValue) -> Result<Value, ApiError> {
    let mut obj: Value = serde_json::from_slice(&kv.value).map_err(|e| {
        ApiError::internal(format!(
            "stored object {} is not valid JSON: {e}",
            String::from_utf8_lossy(&kv.key)
        ))
    })?;
    set_resource_version(&mut obj, kv.mod_revision);
    Ok(obj)
}

/// A stored object of a resource served in its stored version, as JSON with its kind,
/// apiVersion and resourceVersion: only the top level and the metadata are parsed, the rest
/// is copied as stored. The keys come out sorted, as a `Value` writes them.
pub(crate) fn encode_item(res: &Res, kv: &KeyValue) -> Result<Vec<u8>, ApiError> {
    use serde_json::value::RawValue;
    let bad = |e: serde_json::Error| {
        ApiError::internal(format!(
            "stored object {} is not valid JSON: {e}",
            String::from_utf8_lossy(&kv.key)
        ))
    };
    let top: std::collections::BTreeMap<String, &RawValue> =
        serde_json::from_slice(&kv.value).map_err(bad)?;
    let mut metadata: Map<String, Value> = match top.get("metadata") {
        Some(m) => serde_json::from_str(m.get()).map_err(bad)?,
        None => Map::new(),
    };
    metadata.insert(
        "resourceVersion".into(),
        Value::String(kv.mod_revision.to_string()),
    );
    let mut out = Vec::with_capacity(kv.value.len() + 64);
    out.push(b'{');
    let fixed = [
        ("apiVersion", Value::String(res.api_version())),
        ("kind", Value::String(res.kind.into())),
        ("metadata", Value::Object(metadata)),
    ];
    let mut keys: Vec<&str> = top.keys().map(String::as_str).collect();
    for (k, _) in &fixed {
        if !top.contains_key(*k) {
            keys.push(k);
        }
    }
    keys.sort_unstable();
    for (i, k) in keys.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        serde_json::to_writer(&mut out, k).map_err(bad)?;
        out.push(b':');
        match fixed.iter().find(|(f, _)| *f == k) {
            Some((_, v)) => serde_json::to_writer(&mut out, v).map_err(bad)?,
            None => out.extend_from_slice(top[k].get().as_bytes()),
        }
    }
    out.push(b'}');
    Ok(out)
}

fn set_type(res: &Res, obj: &mut Value) {
    if let Some(m) = obj.as_object_mut() {
        m.insert("kind".into(), Value::String(res.kind.into()));
        m.insert("apiVersion".into(), Value::String(res.api_version()));
    }
}

/// The JSON types of a body (or a patch's result) in the served form, checked before the
/// strategy sees it: 400 with upstream's decoder message.
/// Also bounds the objects it holds, before defaults multiply what they cost.
fn check_types(res: &Res, obj: &mut Value) -> Result<(), ApiError> {
    crate::decode::check_objects(obj)?;
    rudder_api::schema::check_types(res.group, res.version, res.kind, obj)
        .map_err(|e| ApiError::cannot_handle(res.kind, res.version, &e))
}

/// What goes to the store: the object without its resourceVersion, which must decode as its
/// k8s-openapi type, so every typed client can read whatever the server stored.
fn encode(res: &Res, obj: &Value) -> Result<Bytes, ApiError> {
    let typed = rudder_api::schema::decodes_as_type(
        res.storage_group,
        res.storage_version,
        res.storage_kind,
        obj,
    );
    if let Some(Err(e)) = typed {
        return Err(ApiError::cannot_handle(res.kind, res.version, &e));
    }
    let mut stored = obj.clone();
    if let Some(m) = stored.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
        m.remove("selfLink");
    }
    serde_json::to_vec(&stored)
        .map(exact)
        .map_err(|e| ApiError::internal(format!("encode: {e}")))
}

/// Bytes that hold no more memory than their length. A serialised Vec grows by doubling, so
/// up to half of it is slack; stored values and watch lines are kept (in the store's index,
/// in the watch cache's history) for as long as the object lives, and the slack with them.
pub(crate) fn exact(mut v: Vec<u8>) -> Bytes {
    v.shrink_to_fit();
    Bytes::from(v)
}

fn parse_rv(rv: &str) -> Result<Revision, ApiError> {
    rv.parse::<Revision>()
        .ok()
        .filter(|r| *r >= 0)
        .ok_or_else(|| ApiError::bad_request(format!("invalid resource version \"{rv}\"")))
}

/// The continue token: base64 of `{"v":"meta.k8s.io/v1","rv":N,"start":"<key suffix>"}`, as
/// upstream's, so a client can carry it across servers.
const EXPIRED_CONTINUE: &str = "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.";

/// A continue token: the revision of the list's snapshot (0: the latest, for an inconsistent
/// continuation) and the key (below the resource's prefix) to go on from.
fn encode_continue(rev: Revision, start: &str) -> String {
    use base64::Engine as _;
    let t = json!({"v": "meta.k8s.io/v1", "rv": rev, "start": start});
    base64::engine::general_purpose::URL_SAFE.encode(t.to_string())
}

fn decode_continue(token: &str) -> Result<(Revision, String), ApiError> {
    use base64::Engine as _;
    let bad = || ApiError::bad_request("continue key is not valid: not a token this server issued");
    let raw = base64::engine::general_purpose::URL_SAFE
        .decode(token)
        .or_else(|_| base64::engine::general_purpose::STANDARD.decode(token))
        .map_err(|_| bad())?;
    let t: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let rev = t.get("rv").and_then(Value::as_i64).ok_or_else(bad)?;
    let start = t.get("start").and_then(Value::as_str).ok_or_else(bad)?;
    if start.contains("..") || start.starts_with('/') {
        return Err(bad());
    }
    Ok((rev, start.to_string()))
}

fn spec_like(obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
        m.remove("kind");
        m.remove("apiVersion");
    }
    o
}

/// Metadata validation, first (the name decides the key). When it fails, the kind's own
/// causes are reported with it, as upstream does in one Status.
fn check_meta(res: &Res, obj: &Value, old: Option<&Value>) -> Result<(), ApiError> {
    let mut errs: Vec<FieldError> = Vec::new();
    validation::object_meta(meta(obj), res.strategy.name_rule(), &mut errs);
    if !errs.is_empty() {
        errs.extend(
            res.strategy
                .validate(obj, old)
                .into_iter()
                .filter(|e| !e.field.starts_with("metadata.")),
        );
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(
            res.kind,
            res.group,
            meta_str(obj, "name").unwrap_or(""),
            errs,
        ))
    }
}

/// The kind's own validation (after defaults), as a 422.
fn check_kind(res: &Res, obj: &Value, old: Option<&Value>) -> Result<(), ApiError> {
    check_errors(res, obj, res.strategy.validate(obj, old))
}

fn check_errors(res: &Res, obj: &Value, errs: Vec<FieldError>) -> Result<(), ApiError> {
    if errs.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(
            res.kind,
            res.group,
            meta_str(obj, "name").unwrap_or(""),
            errs,
        ))
    }
}

/// A stored pod's `spec.nodeName`. Only the one field is read; the rest of the object is
/// skipped, not built.
fn node_name(stored: &[u8]) -> Result<Option<String>, serde_json::Error> {
    #[derive(serde::Deserialize)]
    struct Pod {
        spec: Option<Spec>,
    }
    #[derive(serde::Deserialize)]
    struct Spec {
        #[serde(rename = "nodeName")]
        node_name: Option<String>,
    }
    Ok(serde_json::from_slice::<Pod>(stored)?
        .spec
        .and_then(|s| s.node_name))
}

/// What a list or a watch's initial events keep of a stored object: the object, decoded, when
/// the selectors match it. A selector on one name, or on the field the watch cache indexes (a
/// pod's node), is checked first on what needs no decoding (the key; only that field).
#[derive(Clone)]
struct Selected {
    res: Res,
    selectors: Selectors,
    name: Option<String>,
    indexed: Option<(crate::watchcache::IndexFn, String)>,
}

impl Selected {
    fn new(reg: &Registry, res: &Res, opts: &ListOptions) -> Selected {
        let indexed = reg.cache.index(res.prefix.as_bytes()).and_then(|i| {
            let want = opts.selectors.field_equals(i.field)?;
            Some((i.value, want.to_string()))
        });
        Selected {
            res: res.clone(),
            name: opts
                .selectors
                .field_equals("metadata.name")
                .map(str::to_string),
            selectors: opts.selectors.clone(),
            indexed,
        }
    }

    fn keep(&self, kv: &KeyValue) -> Result<Option<Value>, ApiError> {
        if let Some(name) = &self.name {
            if crate::watchcache::name_of(&kv.key) != name.as_bytes() {
                return Ok(None);
            }
        }
        if let Some((value, want)) = &self.indexed {
            // What cannot be read this way is decoded, and the selectors decide.
            if value(&kv.value).is_ok_and(|has| has.as_deref().unwrap_or("") != want) {
                return Ok(None);
            }
        }
        let obj = decode(&self.res, kv)?;
        Ok(self.selectors.matches(&obj).then_some(obj))
    }
}

/// The range of the one key `prefix` + `name`: start and end.
fn one_key(prefix: &[u8], name: &str) -> (Bytes, Bytes) {
    let mut key = prefix.to_vec();
    key.extend_from_slice(name.as_bytes());
    let start = Bytes::from(key.clone());
    key.push(0);
    (start, Bytes::from(key))
}

/// The watch cache's indexes: pods (under `pods`) by node, for the node agents'
/// `spec.nodeName=NODE` watches.
fn watch_indexes(pods: Option<Bytes>) -> HashMap<Bytes, crate::watchcache::Index> {
    let index = crate::watchcache::Index {
        field: "spec.nodeName",
        value: node_name,
    };
    pods.into_iter().map(|p| (p, index)).collect()
}

impl Registry {
    pub fn new(store: Arc<dyn Store>, services: Allocator) -> Registry {
        let services = Arc::new(services);
        let service_hooks: Arc<dyn Hooks> = services.clone();
        let namespace_hooks: Arc<dyn Hooks> = Arc::new(crate::namespaces::Finalizer);
        let resources = Resources::built_in(|rt| match (rt.group, rt.plural) {
            ("", "services") => Some(service_hooks.clone()),
            ("", "namespaces") => Some(namespace_hooks.clone()),
            _ => None,
        });
        let pods = resources
            .snapshot()
            .served
            .iter()
            .find(|s| s.res.group.is_empty() && s.res.plural == "pods")
            .map(|s| Bytes::from(s.res.prefix.clone()));
        let cache = WatchCache::new(store.clone(), watch_indexes(pods));
        Registry {
            store,
            services,
            resources,
            cache,
            admission: Admission::new(admission::Config::default()),
        }
    }

    /// The registry with admission configured by `cfg`.
    pub fn with_admission(mut self, cfg: admission::Config) -> Registry {
        self.admission = Admission::new(cfg);
        self
    }

    pub fn admission(&self) -> &Admission {
        &self.admission
    }

    pub(crate) fn watch_cache(&self) -> &WatchCache {
        &self.cache
    }

    pub fn services(&self) -> &Allocator {
        &self.services
    }

    /// What this server serves; kinds may be added while serving.
    pub fn resources(&self) -> &Resources {
        &self.resources
    }

    /// The served resource at `/api[s]/<group>/<version>/<plural>`, if it is stored.
    pub fn resolve(&self, group: &str, version: &str, plural: &str) -> Option<Served> {
        self.resources.resolve(group, version, plural)
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    async fn read(
        &self,
        res: &Res,
        ns: Option<&str>,
        name: &str,
    ) -> Result<(Value, Revision), ApiError> {
        match self.store.get(res.key(ns, name), 0).await? {
            Some(kv) => Ok((decode_stored(&kv)?, kv.mod_revision)),
            None => Err(ApiError::not_found(res.target(name))),
        }
    }

    pub async fn get(&self, res: &Res, ns: Option<&str>, name: &str) -> Result<Value, ApiError> {
        self.read(res, ns, name).await.map(|(o, _)| res.present(o))
    }

    /// Checks and completes the envelope of a body: kind, apiVersion, namespace.
    fn check_envelope(&self, res: &Res, ns: Option<&str>, obj: &mut Value) -> Result<(), ApiError> {
        if !obj.is_object() {
            return Err(ApiError::bad_request(
                "the request body must be a JSON object",
            ));
        }
        if let Some(av) = obj.get("apiVersion").and_then(Value::as_str) {
            if av != res.api_version() {
                return Err(ApiError::bad_request(format!(
                    "the API version in the data ({av}) does not match the expected API version ({})",
                    res.api_version()
                )));
            }
        }
        if let Some(k) = obj.get("kind").and_then(Value::as_str) {
            if k != res.kind {
                return Err(ApiError::bad_request(format!(
                    "the kind in the data ({k}) does not match the expected kind ({})",
                    res.kind
                )));
            }
        }
        let m = meta_mut(obj);
        if res.namespaced {
            let ns = ns.unwrap_or("default");
            match m.get("namespace").and_then(Value::as_str) {
                Some(given) if !given.is_empty() && given != ns => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ))
                }
                _ => {
                    m.insert("namespace".into(), Value::String(ns.into()));
                }
            }
        } else {
            m.remove("namespace");
        }
        set_type(res, obj);
        Ok(())
    }

    /// Takes a namespace out of the index of active namespaces at once (it is terminating),
    /// not when its watch event arrives.
    pub fn forget_namespace(&self, ns: &str) {
        self.admission.forget_namespace(ns);
    }

    /// Admission of a delete the registry does not do itself (a namespace's).
    pub async fn admit_delete(
        &self,
        res: &Res,
        ns: Option<&str>,
        name: &str,
        current: &Value,
        dry_run: bool,
    ) -> Result<(), ApiError> {
        let w = Write {
            dry_run,
            ..Write::server()
        };
        let a = Attributes::of_write(
            Operation::Delete,
            res,
            Part::Main,
            ns,
            name,
            &w,
            Some(current),
        );
        self.admission.validate(self, &a, current).await
    }

    pub async fn create(
        &self,
        res: &Res,
        ns: Option<&str>,
        mut obj: Value,
        w: &Write,
    ) -> Result<Value, ApiError> {
        let dry_run = w.dry_run;
        self.check_envelope(res, ns, &mut obj)?;
        check_types(res, &mut obj)?;
        let m = meta_mut(&mut obj);
        let has_name = m
            .get("name")
            .and_then(Value::as_str)
            .is_some_and(|n| !n.is_empty());
        if !has_name {
            if let Some(g) = m.get("generateName").and_then(Value::as_str) {
                let name = format!("{g}{}", random_suffix());
                m.insert("name".into(), Value::String(name));
            }
        }
        for f in [
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
        ] {
            m.remove(f);
        }
        m.insert("uid".into(), Value::String(new_uid()));
        m.insert("creationTimestamp".into(), Value::String(now_rfc3339()));
        if res.strategy.has_generation() {
            m.insert("generation".into(), json!(1));
        } else {
            m.remove("generation");
        }
        let mut obj = res.to_storage(obj);
        let name = meta_str(&obj, "name").unwrap_or_default().to_string();
        let admit = |op, old| Attributes::of_write(op, res, Part::Main, ns, &name, w, old);
        // As upstream, the managed fields record the request with the kind's defaults, before
        // admission and the registry change it: neither admission plugins' changes nor what
        // the server sets for itself are the writer's.
        let recorded = (w.manager().is_some() && !w.applying).then(|| {
            let mut defaulted = obj.clone();
            res.strategy.prepare(&mut defaulted, None);
            for path in res.strategy.set_by_server() {
                if let (None, [parent @ .., last]) = (obj.pointer(&pointer(path)), *path) {
                    if let Some(m) = defaulted
                        .pointer_mut(&pointer(parent))
                        .and_then(Value::as_object_mut)
                    {
                        m.remove(*last);
                    }
                }
            }
            // `[]` (cleared) leaves the object without managed fields.
            managed_fields(res, Part::Main, w, None, defaulted)
                .filter(|f| !f.as_array().is_some_and(Vec::is_empty))
        });
        self.admission
            .mutate(self, &admit(Operation::Create, None), &mut obj)
            .await?;
        res.strategy.prepare(&mut obj, None);
        match recorded {
            Some(Some(fields)) => {
                meta_mut(&mut obj).insert("managedFields".into(), fields);
            }
            Some(None) => {
                meta_mut(&mut obj).remove("managedFields");
            }
            None => track(res, Part::Main, w, None, &mut obj),
        }
        drop_empty_meta(&mut obj);
        check_meta(res, &obj, None)?;
        if dry_run && self.store.get(res.key(ns, &name), 0).await?.is_some() {
            return Err(ApiError::already_exists(res.target(&name)));
        }
        let taken = before_write(res, &mut obj, None, dry_run).await?;
        let mut encoded = check_kind(res, &obj, None);
        if encoded.is_ok() {
            let a = admit(Operation::Create, None);
            encoded = self.admission.validate(self, &a, &obj).await;
        }
        let encoded = encoded.and_then(|()| encode(res, &obj));
        let encoded = match encoded {
            Ok(e) => e,
            Err(e) => {
                after_write(res, None, &obj, taken, false, dry_run).await;
                return Err(e);
            }
        };
        if dry_run {
            return Ok(res.present(obj));
        }
        let result = self.store.create(res.key(ns, &name), encoded).await;
        after_write(res, None, &obj, taken, result.is_ok(), dry_run).await;
        match result {
            Ok(kv) => {
                set_resource_version(&mut obj, kv.mod_revision);
                let a = admit(Operation::Create, None);
                self.admission.written(self, &a, Some(&obj)).await;
                Ok(res.present(obj))
            }
            Err(StoreError::AlreadyExists { .. }) => {
                Err(ApiError::already_exists(res.target(&name)))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Completes `new` from `old` for an update of `part`: the fields a client may not change,
    /// the part it may not change, generation.
    fn merge_for_update(res: &Res, part: Part, old: &Value, new: &mut Value) {
        match part {
            Part::Status => {
                // Only status changes: everything else is the old object.
                let status = new.get("status").cloned();
                *new = old.clone();
                match status {
                    Some(s) => rudder_api::value::set(new, &["status"], s),
                    None => {
                        new.as_object_mut().map(|m| m.remove("status"));
                    }
                }
            }
            Part::Field(sub) => {
                let path = sub.writes.unwrap_or_default();
                let field = new.pointer(&format!("/{}", path.join("/"))).cloned();
                *new = old.clone();
                match field {
                    Some(f) => rudder_api::value::set(new, path, f),
                    None => rudder_api::value::remove(new, path),
                }
            }
            Part::Main if res.has_status => match old.get("status") {
                Some(s) => rudder_api::value::set(new, &["status"], s.clone()),
                None => {
                    new.as_object_mut().map(|m| m.remove("status"));
                }
            },
            Part::Main | Part::All => {}
        }
        let om = meta(old).clone();
        let m = meta_mut(new);
        let protected: &[&str] = match part {
            // The server itself marks objects for deletion (namespaces).
            Part::All => &["uid", "creationTimestamp", "generation"],
            _ => &[
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
            ],
        };
        for &f in protected {
            match om.get(f) {
                Some(v) => m.insert(f.into(), v.clone()),
                None => m.remove(f),
            };
        }
    }

    /// The kind's defaults for an update (after mutating admission), and the generation.
    /// A namespace's `finalize` subresource is the one write that may change its
    /// `spec.finalizers`, which the kind's rules otherwise keep.
    fn prepare_update(res: &Res, part: Part, w: &Write, old: &Value, new: &mut Value) {
        let finalizers = (w.subresource.as_deref() == Some("finalize"))
            .then(|| new.pointer("/spec/finalizers").cloned());
        res.strategy.prepare(new, Some(old));
        if let Some(finalizers) = finalizers {
            match (
                finalizers,
                new.get_mut("spec").and_then(Value::as_object_mut),
            ) {
                (Some(f), Some(spec)) if f.as_array().is_none_or(|a| !a.is_empty()) => {
                    spec.insert("finalizers".into(), f);
                }
                (_, Some(spec)) => {
                    spec.remove("finalizers");
                }
                (_, None) => {}
            }
        }
        drop_empty_meta(new);
        if res.strategy.has_generation() && part != Part::Status && spec_like(old) != spec_like(new)
        {
            let g = meta(old)
                .get("generation")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            meta_mut(new).insert("generation".into(), json!(g + 1));
        }
    }

    /// Replaces an object (PUT). With `metadata.resourceVersion` in the body the write is a
    /// compare-and-swap on it; without, it applies to whatever is current.
    pub async fn update(
        &self,
        res: &Res,
        ns: Option<&str>,
        name: &str,
        mut obj: Value,
        part: Part,
        w: &Write,
    ) -> Result<Value, ApiError> {
        self.check_envelope(res, ns, &mut obj)?;
        check_types(res, &mut obj)?;
        match meta_str(&obj, "name") {
            Some(n) if n != name => {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({n}) does not match the name on the request ({name})"
                )))
            }
            Some(_) => {}
            None => {
                meta_mut(&mut obj).insert("name".into(), Value::String(name.into()));
            }
        }
        let expected = meta_str(&obj, "resourceVersion")
            .filter(|s| !s.is_empty())
            .map(parse_rv)
            .transpose()?;
        let obj = res.to_storage(obj);
        self.write_loop(res, ns, name, expected, part, w, |old| {
            let mut new = obj.clone();
            if let Some(uid) = meta_str(&new, "uid").filter(|u| !u.is_empty()) {
                if Some(uid) != meta_str(old, "uid") {
                    return Err(ApiError::conflict(
                        res.target(name),
                        &format!(
                            "Precondition failed: UID in precondition: {}, UID in object meta: {uid}",
                            meta_str(old, "uid").unwrap_or("")
                        ),
                    ));
                }
            }
            Self::merge_for_update(res, part, old, &mut new);
            Ok(new)
        })
        .await
        .map(|o| res.present(o))
    }

    /// Applies `change` to the current object (PATCH), retrying on concurrent writes unless
    /// the patch itself names a resourceVersion.
    pub async fn patch(
        &self,
        res: &Res,
        ns: Option<&str>,
        name: &str,
        part: Part,
        w: &Write,
        change: impl Fn(&Value) -> Result<Value, ApiError>,
    ) -> Result<Value, ApiError> {
        self.write_loop(res, ns, name, None, part, w, |old| {
            let mut new = change(&res.present(old.clone()))?;
            if !new.is_object() {
                return Err(ApiError::bad_request(
                    "the patched object is not a JSON object",
                ));
            }
            if let Some(rv) = meta_str(&new, "resourceVersion") {
                if Some(rv) != meta_str(old, "resourceVersion") {
                    return Err(ApiError::modified(res.target(name)));
                }
            }
            match meta_str(&new, "name") {
                Some(n) if n != name => {
                    return Err(ApiError::bad_request(format!(
                    "the name of the object ({n}) does not match the name on the request ({name})"
                )))
                }
                _ => {}
            }
            self.check_envelope(res, ns, &mut new)?;
            check_types(res, &mut new)?;
            let mut new = res.to_storage(new);
            Self::merge_for_update(res, part, old, &mut new);
            Ok(new)
        })
        .await
        .map(|o| res.present(o))
    }

    /// Changes the stored object in place, as upstream's storage-level `GuaranteedUpdate`
    /// does for `pods/binding`: a compare-and-swap on the revision it read, tried again on a
    /// conflict, with no admission, field manager or strategy of the object's own kind (the
    /// request was admitted as what it is, a Binding).
    pub async fn guaranteed_update(
        &self,
        res: &Res,
        ns: Option<&str>,
        name: &str,
        dry_run: bool,
        change: impl Fn(&mut Value) -> Result<(), ApiError>,
    ) -> Result<(), ApiError> {
        let key = res.key(ns, name);
        loop {
            let (mut obj, rev) = self.read(res, ns, name).await?;
            change(&mut obj)?;
            // What the change brought in (annotations) is held to the rules of metadata, and
            // the whole to its type.
            check_meta(res, &obj, None)?;
            let encoded = encode(res, &obj)?;
            if dry_run {
                return Ok(());
            }
            match self.store.update(key.clone(), encoded, rev).await {
                Ok(_) => return Ok(()),
                Err(StoreError::Conflict { current: None, .. }) => {
                    return Err(ApiError::not_found(res.target(name)))
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Server-side apply (PATCH `application/apply-patch+yaml`) of `config` by
    /// `w.field_manager`: merged into the live object by the schema, or creating the object
    /// when it does not exist (not through a subresource). Returns the object and whether it
    /// was created.
    #[allow(clippy::too_many_arguments)]
    pub async fn apply(
        &self,
        res: &Res,
        ns: Option<&str>,
        name: &str,
        part: Part,
        w: &Write,
        mut config: Value,
    ) -> Result<(Value, bool), ApiError> {
        if !config.is_object() {
            return Err(ApiError::bad_request(
                "the request body must be a JSON object",
            ));
        }
        let field = |k: &str| {
            config
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        let (api_version, kind) = (field("apiVersion"), field("kind"));
        if kind.is_empty() {
            return Err(ApiError::bad_request(format!(
                "Object 'Kind' is missing in '{config}'"
            )));
        }
        if api_version != res.api_version() {
            return Err(ApiError::bad_request(format!(
                "Incorrect version specified in apply patch. Specified patch version: {api_version}, expected: {}",
                res.api_version()
            )));
        }
        if meta(&config)
            .get("managedFields")
            .is_some_and(|m| !m.is_null())
        {
            return Err(ApiError::bad_request("metadata.managedFields must be nil"));
        }
        let given = meta_str(&config, "name").unwrap_or("");
        if given != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({given}) does not match the name on the URL ({name})"
            )));
        }
        self.check_envelope(res, ns, &mut config)?;
        check_types(res, &mut config)?;
        let manager = w.field_manager.clone().unwrap_or_default();
        let (version, now) = (res.api_version(), now_rfc3339());
        let who = writer(res, part, w, &manager, &version, &now);
        let ty = SchemaType::of_kind(res.group, res.version, res.kind);
        let failed = |e: managed::ApplyError| match e {
            managed::ApplyError::Conflicts(c) => {
                let causes: Vec<Value> = c
                    .iter()
                    .map(|c| {
                        json!({
                            "reason": "FieldManagerConflict",
                            "message": format!("conflict with {}", c.manager),
                            "field": c.field,
                        })
                    })
                    .collect();
                ApiError {
                    details: Some(json!({ "causes": causes })),
                    ..ApiError::new(409, "Conflict", managed::conflict_message(&c))
                }
            }
            managed::ApplyError::Invalid(why) => ApiError::new(
                500,
                "InternalError",
                format!(
                    "failed to create typed patch object ({}/{}; {}, Kind={}): {why}",
                    ns.unwrap_or(""),
                    name,
                    res.api_version(),
                    res.kind
                ),
            ),
        };
        let wa = Write {
            applying: true,
            ..w.clone()
        };
        loop {
            match self.read(res, ns, name).await {
                Err(e) if e.code == 404 && part == Part::Main && w.subresource.is_none() => {
                    let obj = managed::apply(ty, None, &config, &who, w.force).map_err(failed)?;
                    match self.create(res, ns, obj, &wa).await {
                        Ok(created) => return Ok((created, true)),
                        // Created meanwhile: apply to it.
                        Err(e) if e.code == 409 && e.reason == "AlreadyExists" => continue,
                        Err(e) => return Err(e),
                    }
                }
                Err(e) => return Err(e),
                Ok(_) => break,
            }
        }
        self.write_loop(res, ns, name, None, part, &wa, |old| {
            let live = res.present(old.clone());
            let mut new =
                managed::apply(ty, Some(&live), &config, &who, w.force).map_err(failed)?;
            self.check_envelope(res, ns, &mut new)?;
            check_types(res, &mut new)?;
            let mut new = res.to_storage(new);
            let fields = meta(&new).get("managedFields").cloned();
            Self::merge_for_update(res, part, old, &mut new);
            match fields {
                Some(f) => {
                    meta_mut(&mut new).insert("managedFields".into(), f);
                }
                None => {
                    meta_mut(&mut new).remove("managedFields");
                }
            }
            Ok(new)
        })
        .await
        .map(|o| (res.present(o), false))
    }

    /// Read, change, compare-and-swap; again on a concurrent write when `expected` is `None`.
    #[allow(clippy::too_many_arguments)]
    async fn write_loop(
        &self,
        res: &Res,
        ns: Option<&str>,
        name: &str,
        expected: Option<Revision>,
        part: Part,
        w: &Write,
        change: impl Fn(&Value) -> Result<Value, ApiError>,
    ) -> Result<Value, ApiError> {
        let dry_run = w.dry_run;
        let key = res.key(ns, name);
        loop {
            let (old, rev) = self.read(res, ns, name).await?;
            if expected.is_some_and(|e| e != rev) {
                return Err(ApiError::modified(res.target(name)));
            }
            let mut new = change(&old)?;
            let admit = |op| Attributes::of_write(op, res, part, ns, name, w, Some(&old));
            self.admission
                .mutate(self, &admit(Operation::Update), &mut new)
                .await?;
            Self::prepare_update(res, part, w, &old, &mut new);
            track(res, part, w, Some(&old), &mut new);
            check_meta(res, &new, Some(&old))?;
            if done_deleting(res, &old, &new) {
                if dry_run {
                    return Ok(new);
                }
                match self.store.delete(key.clone(), Some(rev)).await {
                    Ok(_) => {
                        if let Some(h) = &res.hooks {
                            h.after_delete(&old).await;
                        }
                        let a = admit(Operation::Delete);
                        self.admission.written(self, &a, None).await;
                        return Ok(new);
                    }
                    Err(StoreError::Conflict { .. }) if expected.is_none() => continue,
                    Err(StoreError::Conflict { .. }) => {
                        return Err(ApiError::modified(res.target(name)))
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            let taken = before_write(res, &mut new, Some(&old), dry_run).await?;
            let mut checked = match part {
                Part::All => Ok(()),
                Part::Field(sub) => check_errors(
                    res,
                    &new,
                    res.strategy.validate_field_update(sub.name, &new, &old),
                ),
                _ => check_kind(res, &new, Some(&old)),
            };
            if checked.is_ok() {
                let a = admit(Operation::Update);
                checked = self.admission.validate(self, &a, &new).await;
            }
            let encoded = match checked.and_then(|()| encode(res, &new)) {
                Ok(e) => e,
                Err(e) => {
                    after_write(res, Some(&old), &new, taken, false, dry_run).await;
                    return Err(e);
                }
            };
            if dry_run {
                return Ok(new);
            }
            if new == old {
                // A no-op write does not bump the resourceVersion (as upstream).
                return Ok(old);
            }
            let result = self.store.update(key.clone(), encoded, rev).await;
            after_write(res, Some(&old), &new, taken, result.is_ok(), dry_run).await;
            match result {
                Ok(kv) => {
                    set_resource_version(&mut new, kv.mod_revision);
                    let a = admit(Operation::Update);
                    self.admission.written(self, &a, Some(&new)).await;
                    return Ok(new);
                }
                Err(StoreError::Conflict { current: None, .. }) => {
                    return Err(ApiError::not_found(res.target(name)))
                }
                Err(StoreError::Conflict { .. }) if expected.is_none() => continue,
                Err(StoreError::Conflict { .. }) => {
                    return Err(ApiError::modified(res.target(name)))
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    pub async fn delete(
        &self,
        res: &Res,
        ns: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<Deleted, ApiError> {
        Ok(match self.delete_stored(res, ns, name, opts).await? {
            Deleted::Now(o) => Deleted::Now(res.present(o)),
            Deleted::Pending(o) => Deleted::Pending(res.present(o)),
        })
    }

    async fn delete_stored(
        &self,
        res: &Res,
        ns: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<Deleted, ApiError> {
        let key = res.key(ns, name);
        loop {
            let (mut obj, rev) = self.read(res, ns, name).await?;
            if let Some(uid) = &opts.precondition_uid {
                if Some(uid.as_str()) != meta_str(&obj, "uid") {
                    return Err(ApiError::conflict(
                        res.target(name),
                        &format!(
                            "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                            meta_str(&obj, "uid").unwrap_or("")
                        ),
                    ));
                }
            }
            if let Some(want) = &opts.precondition_resource_version {
                if want != &rev.to_string() {
                    return Err(ApiError::conflict(
                        res.target(name),
                        &format!(
                            "Precondition failed: ResourceVersion in precondition: {want}, ResourceVersion in object meta: {rev}"
                        ),
                    ));
                }
            }
            let w = Write {
                dry_run: opts.dry_run,
                user: opts.user.clone(),
                ..Write::server()
            };
            let a =
                Attributes::of_write(Operation::Delete, res, Part::Main, ns, name, &w, Some(&obj));
            self.admission.validate(self, &a, &obj).await?;
            let mut finalizers: Vec<Value> = meta(&obj)
                .get("finalizers")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let add = match opts.propagation_policy.as_deref() {
                Some("Foreground") => Some("foregroundDeletion"),
                Some("Orphan") => Some("orphan"),
                Some("Background") | None => None,
                Some(other) => {
                    return Err(ApiError::invalid(
                        "DeleteOptions",
                        "meta.k8s.io",
                        "",
                        vec![FieldError {
                            field: "propagationPolicy".into(),
                            reason: "FieldValueNotSupported",
                            message: format!(
                                "Unsupported value: \"{other}\": supported values: \"Foreground\", \"Background\", \"Orphan\", \"nil\""
                            ),
                        }],
                    ))
                }
            };
            if let Some(f) = add {
                if !finalizers.iter().any(|x| x == f)
                    && meta(&obj).get("deletionTimestamp").is_none()
                {
                    finalizers.push(Value::String(f.into()));
                }
            }
            let grace = res.strategy.grace_period(&obj, opts.grace_period_seconds);
            if finalizers.is_empty() && grace == 0 {
                if opts.dry_run {
                    return Ok(Deleted::Now(obj));
                }
                match self.store.delete(key.clone(), Some(rev)).await {
                    Ok(_) => {
                        if let Some(h) = &res.hooks {
                            h.after_delete(&obj).await;
                        }
                        self.admission.written(self, &a, None).await;
                        return Ok(Deleted::Now(obj));
                    }
                    Err(StoreError::Conflict { current: None, .. })
                    | Err(StoreError::NotFound { .. }) => {
                        return Err(ApiError::not_found(res.target(name)))
                    }
                    Err(StoreError::Conflict { .. }) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
            // Finalizers or a grace period: mark, and let whoever owns them finish. A second
            // delete may only shorten the grace period.
            let pending = meta(&obj).get("deletionTimestamp").is_some();
            let shorten = pending
                && meta(&obj)
                    .get("deletionGracePeriodSeconds")
                    .and_then(Value::as_i64)
                    .is_some_and(|current| grace < current);
            if pending && add.is_none() && !shorten {
                return Ok(Deleted::Pending(obj));
            }
            let m = meta_mut(&mut obj);
            if !pending || shorten {
                m.insert(
                    "deletionTimestamp".into(),
                    Value::String(rfc3339(now_unix() + grace)),
                );
                m.insert("deletionGracePeriodSeconds".into(), json!(grace));
            }
            if finalizers.is_empty() {
                m.remove("finalizers");
            } else {
                m.insert("finalizers".into(), Value::Array(finalizers));
            }
            let encoded = encode(res, &obj)?;
            if opts.dry_run {
                return Ok(Deleted::Pending(obj));
            }
            match self.store.update(key.clone(), encoded, rev).await {
                Ok(kv) => {
                    set_resource_version(&mut obj, kv.mod_revision);
                    return Ok(Deleted::Pending(obj));
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// A list: `{kind: <Kind>List, metadata: {resourceVersion, continue}, items}`.
    pub async fn list(
        &self,
        res: &Res,
        ns: Option<&str>,
        opts: &ListOptions,
    ) -> Result<Value, ApiError> {
        // A selector on the field the watch cache indexes (one node's pods: what an agent
        // lists after its watch is sent back with a 410) is answered from the cache's index.
        // Where the cache cannot answer, the store is scanned, reading only that field of each
        // stored object before it decodes the few that match (what it cannot read is decoded).
        let sel = Selected::new(self, res, opts);
        let cached = match &sel.indexed {
            Some((_, want)) => self.list_indexed(res, ns, opts, &sel, want).await?,
            None => None,
        };
        let (items, list_meta) = match cached {
            Some(list) => list,
            None => self.list_items(res, ns, opts, |kv| sel.keep(kv)).await?,
        };
        Ok(json!({
            "kind": format!("{}List", res.kind),
            "apiVersion": res.api_version(),
            "metadata": list_meta,
            "items": items,
        }))
    }

    /// The items and metadata of a list whose selector requires the watch cache's indexed field
    /// to be `value`, read from the cache's index, as upstream's watch cache serves lists: at
    /// a revision at least the store's current one (any revision for resourceVersion `0`),
    /// paged with `limit` (the pages after the first are read from the store at that
    /// revision). `None` when the cache cannot answer: a continuation, an exact or a given
    /// resourceVersion, a store whose progress reports may run ahead of its events, a feed
    /// that does not catch up in time.
    async fn list_indexed(
        &self,
        res: &Res,
        ns: Option<&str>,
        opts: &ListOptions,
        sel: &Selected,
        value: &str,
    ) -> Result<Option<(Vec<Value>, Value)>, ApiError> {
        let continued = opts
            .continue_token
            .as_deref()
            .is_some_and(|t| !t.is_empty());
        let exact = opts.resource_version_match.as_deref() == Some("Exact");
        let min = match opts.resource_version.as_deref().unwrap_or("") {
            _ if continued || exact => return Ok(None),
            "0" => 0,
            "" if self.store.ordered_progress() => self.store.current_revision().await?,
            _ => return Ok(None),
        };
        let range = res.range(ns);
        let feed = self
            .cache
            .feed(&Bytes::from(res.prefix.clone()), None)
            .await?;
        let Some((rev, kvs)) = feed.indexed_objects(value, &range.start, min).await else {
            return Ok(None);
        };
        let limit = opts.limit.filter(|l| *l > 0).map(|l| l as usize);
        let mut items = Vec::new();
        let mut list_meta = json!({ "resourceVersion": rev.to_string() });
        for (i, kv) in kvs.iter().enumerate() {
            items.extend(sel.keep(kv)?);
            if limit.is_some_and(|l| items.len() >= l) && i + 1 < kvs.len() {
                let mut after = kv.key[range.start.len()..].to_vec();
                after.push(0);
                let token = encode_continue(rev, &String::from_utf8_lossy(&after));
                rudder_api::value::set(&mut list_meta, &["continue"], Value::String(token));
                break;
            }
        }
        Ok(Some((items, list_meta)))
    }

    /// The stored objects of `res` (under `ns`) that `sel` may keep, as of the latest revision,
    /// and that revision: from the watch cache's index when the selector names its field, else
    /// one read of the store (of one key for one name in one namespace).
    async fn snapshot(
        &self,
        res: &Res,
        ns: Option<&str>,
        sel: &Selected,
    ) -> Result<(Revision, Vec<KeyValue>), ApiError> {
        let mut range = res.range(ns);
        if let (Some((_, want)), true) = (&sel.indexed, self.store.ordered_progress()) {
            let feed = self
                .cache
                .feed(&Bytes::from(res.prefix.clone()), None)
                .await?;
            let now = self.store.current_revision().await?;
            if let Some(cached) = feed.indexed_objects(want, &range.start, now).await {
                return Ok(cached);
            }
        }
        if let Some(name) = sel
            .name
            .as_deref()
            .filter(|_| !res.namespaced || ns.is_some())
        {
            let (start, end) = one_key(&range.start, name);
            range = KeyRange::between(start, end);
        }
        let resp = self
            .store
            .range(RangeRequest {
                range,
                revision: 0,
                limit: 0,
                count_only: false,
            })
            .await?;
        Ok((resp.revision, resp.kvs))
    }

    /// The pods bound to `node` (the Node authorizer's view of what a node runs).
    pub async fn pods_on_node(&self, node: &str) -> Result<Vec<Value>, ApiError> {
        let served = self
            .resolve("", "v1", "pods")
            .ok_or_else(|| ApiError::internal("pods are not in the catalogue"))?;
        let selectors = Selectors::parse(
            None,
            Some(&format!("spec.nodeName={node}")),
            served.res.strategy.field_selectors(),
        )
        .map_err(ApiError::internal)?;
        let opts = ListOptions {
            selectors,
            ..ListOptions::default()
        };
        let mut list = self.list(&served.res, None, &opts).await?;
        Ok(match list.get_mut("items").map(Value::take) {
            Some(Value::Array(items)) => items,
            _ => Vec::new(),
        })
    }

    /// The volume a claim is bound to, if the claim exists and is bound.
    pub async fn claim_volume(&self, ns: &str, claim: &str) -> Option<String> {
        let served = self.resolve("", "v1", "persistentvolumeclaims")?;
        let pvc = self.get(&served.res, Some(ns), claim).await.ok()?;
        pvc["spec"]["volumeName"].as_str().map(str::to_string)
    }

    /// The same list as [`Registry::list`], serialised, for a resource served in its stored
    /// version and a list without selectors: each item's spec and status are copied as
    /// stored, not parsed and written again (the bulk of a large list's cost).
    pub async fn list_json(
        &self,
        res: &Res,
        ns: Option<&str>,
        opts: &ListOptions,
    ) -> Result<Option<Vec<u8>>, ApiError> {
        if res.conversion.is_some() || !opts.selectors.is_empty() {
            return Ok(None);
        }
        let (items, list_meta) = self
            .list_items(res, ns, opts, |kv| encode_item(res, kv).map(Some))
            .await?;
        let internal = |e: serde_json::Error| ApiError::internal(format!("encode: {e}"));
        let mut out = Vec::with_capacity(items.iter().map(|i| i.len() + 1).sum::<usize>() + 256);
        out.extend_from_slice(b"{\"apiVersion\":");
        serde_json::to_writer(&mut out, &res.api_version()).map_err(internal)?;
        out.extend_from_slice(b",\"items\":[");
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(item);
        }
        out.extend_from_slice(b"],\"kind\":");
        serde_json::to_writer(&mut out, &format!("{}List", res.kind)).map_err(internal)?;
        out.extend_from_slice(b",\"metadata\":");
        serde_json::to_writer(&mut out, &list_meta).map_err(internal)?;
        out.push(b'}');
        Ok(Some(out))
    }

    /// The same list as a meta.k8s.io Table, serialised, for a resource served in its stored
    /// version and a list without selectors: each stored object is decoded only as far as its
    /// row's cells read it (a pod's row reads a dozen fields of it) and the row's object is
    /// copied from the stored bytes, so a Table costs about what the JSON list costs.
    pub async fn list_table(
        &self,
        res: &Res,
        ns: Option<&str>,
        opts: &ListOptions,
        include: crate::table::IncludeObject,
    ) -> Result<Option<Vec<u8>>, ApiError> {
        if res.conversion.is_some() || !opts.selectors.is_empty() {
            return Ok(None);
        }
        let now = crate::table::now();
        let keep = res.strategy.row_fields();
        let (rows, list_meta) = self
            .list_items(res, ns, opts, |kv| {
                crate::table::encode_row(res, kv, keep, include, now).map(Some)
            })
            .await?;
        Ok(Some(crate::table::assemble(
            res.strategy.as_ref(),
            rows,
            &list_meta,
        )))
    }

    /// The items of a list (what `keep` makes of each stored object it keeps) and the list's
    /// metadata: one consistent snapshot, paged with `limit`/`continue`.
    async fn list_items<T>(
        &self,
        res: &Res,
        ns: Option<&str>,
        opts: &ListOptions,
        keep: impl Fn(&KeyValue) -> Result<Option<T>, ApiError>,
    ) -> Result<(Vec<T>, Value), ApiError> {
        let range = res.range(ns);
        let prefix = range.start.clone();
        let (mut rev, mut start) = (0, range.start.clone());
        let mut end = range.end.clone().unwrap_or_default();
        // One name (what a watch of one object, say an agent's of its Node, lists first) in
        // one namespace or of a cluster-scoped kind is one key, not a scan of them all.
        if let Some(name) = opts
            .selectors
            .field_equals("metadata.name")
            .filter(|_| !res.namespaced || ns.is_some())
        {
            (start, end) = one_key(&prefix, name);
        }
        if let Some(token) = opts.continue_token.as_deref().filter(|t| !t.is_empty()) {
            let (r, s) = decode_continue(token)?;
            rev = r;
            let mut k = prefix.to_vec();
            k.extend_from_slice(s.as_bytes());
            start = start.max(Bytes::from(k));
        } else if let (Some(rv), Some("Exact")) = (
            opts.resource_version.as_deref(),
            opts.resource_version_match.as_deref(),
        ) {
            rev = parse_rv(rv)?;
        } else if let Some(rv) = opts.resource_version.as_deref().filter(|r| !r.is_empty()) {
            parse_rv(rv)?;
        }
        let limit = opts.limit.filter(|l| *l > 0).map(|l| l as usize);
        let mut items = Vec::new();
        let mut next: Option<String> = None;
        let mut remaining: Option<i64> = None;
        loop {
            let want = limit.map(|l| (l - items.len()).max(1));
            let resp = self
                .store
                .range(RangeRequest {
                    range: KeyRange::between(start.clone(), end.clone()),
                    revision: rev,
                    limit: want.unwrap_or(0),
                    count_only: false,
                })
                .await
                .map_err(|e| match e {
                    // Upstream offers a token that goes on from the same key at the latest
                    // revision: the rest of the list, no longer one snapshot.
                    StoreError::Compacted { .. } if opts.continue_token.is_some() => ApiError {
                        list_meta: Some(json!({
                            "continue": encode_continue(
                                0,
                                &String::from_utf8_lossy(&start[prefix.len()..]),
                            ),
                        })),
                        ..ApiError::expired(EXPIRED_CONTINUE)
                    },
                    StoreError::Compacted { .. } => {
                        ApiError::expired("The resourceVersion for the provided list is too old.")
                    }
                    other => other.into(),
                })?;
            rev = resp.revision;
            let last_key = resp.kvs.last().map(|kv| kv.key.clone());
            for kv in &resp.kvs {
                if let Some(item) = keep(kv)? {
                    items.push(item);
                }
            }
            let full = limit.is_some_and(|l| items.len() >= l);
            match (resp.more, last_key) {
                (true, Some(last)) if full => {
                    let mut after = last[prefix.len()..].to_vec();
                    after.push(0);
                    next = Some(encode_continue(rev, &String::from_utf8_lossy(&after)));
                    if opts.selectors.is_empty() {
                        remaining = Some(resp.count - resp.kvs.len() as i64);
                    }
                    break;
                }
                (true, Some(last)) => {
                    let mut k = last.to_vec();
                    k.push(0);
                    start = Bytes::from(k);
                }
                _ => break,
            }
        }
        let mut list_meta = json!({ "resourceVersion": rev.to_string() });
        if let Some(c) = next {
            rudder_api::value::set(&mut list_meta, &["continue"], Value::String(c));
        }
        if let Some(r) = remaining.filter(|r| *r > 0) {
            rudder_api::value::set(&mut list_meta, &["remainingItemCount"], json!(r));
        }
        Ok((items, list_meta))
    }

    /// A watch: the initial state as ADDED events when asked for (`sendInitialEvents=true`, or
    /// without it a watch from no or `0` resourceVersion), followed for a streaming list with
    /// bookmarks by the bookmark that ends the initial events; then every change, filtered by
    /// the selectors (an object leaving the selection is DELETED for this watcher, entering it
    /// ADDED).
    ///
    /// As upstream's watch cache serves it: with initial events, the state is read at the
    /// latest revision, which must not be older than a given resourceVersion (a newer one is
    /// `504 Timeout` "Too large resource version" as the watch's only event); without them a
    /// watch from no or `0` resourceVersion starts at the latest revision.
    pub async fn watch(
        &self,
        res: &Res,
        ns: Option<&str>,
        opts: &ListOptions,
        plain_json: bool,
    ) -> Result<impl Stream<Item = WatchEvent> + Send + 'static, ApiError> {
        let range = res.range(ns);
        let rv = opts.resource_version.as_deref().unwrap_or("");
        let no_rv = rv.is_empty() || rv == "0";
        let not_older_than = if no_rv { 0 } else { parse_rv(rv)? };
        let initial = opts.send_initial_events.unwrap_or(no_rv);
        // The feed starts before the initial list, so it reaches back to the list's revision;
        // a feed this watch starts reaches back to where it resumes.
        let resumes = (!initial && !no_rv).then_some(not_older_than);
        let feed = self
            .cache
            .feed(&Bytes::from(res.prefix.clone()), resumes)
            .await?;
        let (head, from) = match initial {
            true => {
                let sel = Selected::new(self, res, opts);
                let (rev, kvs) = self.snapshot(res, ns, &sel).await?;
                if not_older_than > rev {
                    let err = too_large_resource_version(not_older_than, rev);
                    return Ok(futures::stream::iter([WatchEvent::Error(err)]).boxed());
                }
                let end = (opts.send_initial_events == Some(true) && opts.allow_bookmarks)
                    .then_some(WatchEvent::InitialEventsEnd(rev));
                // Decoded as the watcher takes them, not all before the first is sent: the
                // initial events of 150,000 pods are neither held at once nor one long step.
                let items = futures::stream::iter(kvs).filter_map(move |kv| {
                    let event = match sel.keep(&kv) {
                        Ok(obj) => obj.map(WatchEvent::Added),
                        Err(e) => Some(WatchEvent::Error(e)),
                    };
                    std::future::ready(event)
                });
                (items.chain(futures::stream::iter(end)).boxed(), rev)
            }
            false if no_rv => (
                futures::stream::empty().boxed(),
                self.store.current_revision().await?,
            ),
            false => (futures::stream::empty().boxed(), not_older_than),
        };
        // A selector the feed's index answers takes the indexed subscription; the selectors
        // still apply to what it delivers.
        let indexed = ["spec.nodeName", "metadata.name"]
            .into_iter()
            .find_map(|field| {
                let value = opts.selectors.field_equals(field)?;
                feed.subscribe_indexed(from, field, value)
            });
        if let Some(sub) = indexed.or_else(|| feed.subscribe(from)) {
            let res = res.clone();
            let selectors = opts.selectors.clone();
            let fast = plain_json && selectors.is_empty() && res.conversion.is_none();
            let replay = futures::stream::iter(sub.replay.into_iter().map(FeedItem::Event));
            let live = futures::stream::unfold(sub.live, |mut rx| async move {
                // A watcher that fell too far behind, or a feed that ended, ends the watch.
                rx.recv().await.ok().map(|item| (item, rx))
            });
            let tail = replay.chain(live).flat_map(move |item| {
                let out: Vec<WatchEvent> = match item {
                    FeedItem::Event(e) if !e.event.kv.key.starts_with(&range.start) => Vec::new(),
                    FeedItem::Event(e) if fast => {
                        let line = e.line(|ev| plain_line(&res, ev));
                        if line.is_empty() {
                            Vec::new()
                        } else {
                            vec![WatchEvent::Encoded(line)]
                        }
                    }
                    FeedItem::Event(e) => convert_event(&res, &selectors, &e.event)
                        .into_iter()
                        .collect(),
                    FeedItem::Progress(r) if r >= from => vec![WatchEvent::Bookmark(r)],
                    FeedItem::Progress(_) => Vec::new(),
                };
                futures::stream::iter(out)
            });
            return Ok(head.chain(tail).boxed());
        }
        if feed.let_go(from) {
            let err = ApiError::expired(format!("too old resource version: {from}"));
            return Ok(head
                .chain(futures::stream::iter([WatchEvent::Error(err)]))
                .boxed());
        }
        tracing::debug!(prefix = %res.prefix, from, "watch served by the store, not the watch cache");
        let mut req = WatchRequest::new(range, from + 1);
        req.progress_notify = opts.allow_bookmarks;
        let watch = match self.store.watch(req).await {
            Ok(w) => Some(w),
            Err(StoreError::Compacted { .. }) => None,
            Err(e) => return Err(e.into()),
        };
        let res = res.clone();
        let selectors = opts.selectors.clone();
        let Some(watch) = watch else {
            let err = ApiError::expired(format!("too old resource version: {from}"));
            return Ok(head
                .chain(futures::stream::iter([WatchEvent::Error(err)]))
                .boxed());
        };
        let tail = watch.stream.flat_map(move |msg| {
            let out: Vec<WatchEvent> = match msg {
                Ok(WatchMessage::Events { events, .. }) => events
                    .iter()
                    .filter_map(|e| convert_event(&res, &selectors, e))
                    .collect(),
                Ok(WatchMessage::Progress { revision }) => vec![WatchEvent::Bookmark(revision)],
                Err(StoreError::Compacted { compacted, .. }) => {
                    vec![WatchEvent::Error(ApiError::expired(format!(
                        "too old resource version: {from} ({compacted})"
                    )))]
                }
                Err(e) => vec![WatchEvent::Error(ApiError::internal(e.to_string()))],
            };
            futures::stream::iter(out)
        });
        Ok(head.chain(tail).boxed())
    }
}

/// Upstream's answer to a streaming list from a resourceVersion the store has not reached:
/// `504 Timeout`, cause `ResourceVersionTooLarge`, retry after a second.
fn too_large_resource_version(wanted: Revision, current: Revision) -> ApiError {
    ApiError {
        details: Some(json!({
            "causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
            "retryAfterSeconds": 1,
        })),
        ..ApiError::new(
            504,
            "Timeout",
            format!("Timeout: Too large resource version: {wanted}, current: {current}"),
        )
    }
}

/// The watch line of a store event for a watcher without selectors (empty when there is
/// nothing to send).
fn plain_line(res: &Res, e: &rudder_store::Event) -> Bytes {
    let Some(ev) = convert_event(res, &Selectors::default(), e) else {
        return Bytes::new();
    };
    let (kind, obj) = match ev {
        WatchEvent::Added(o) => ("ADDED", o),
        WatchEvent::Modified(o) => ("MODIFIED", o),
        WatchEvent::Deleted(o) => ("DELETED", o),
        _ => return Bytes::new(),
    };
    exact(crate::error::watch_line(kind, &obj))
}

/// A store event as this watcher sees it. A put that creates the key is ADDED; an object
/// entering the selection is ADDED and one leaving it DELETED, carrying its last state that
/// matched with the event's resourceVersion, as upstream.
fn convert_event(res: &Res, sel: &Selectors, e: &rudder_store::Event) -> Option<WatchEvent> {
    use rudder_store::EventKind;
    let at_event = |mut obj: Value| {
        set_resource_version(&mut obj, e.kv.mod_revision);
        obj
    };
    let created = e.kv.create_revision == e.kv.mod_revision;
    if sel.is_empty() && e.kind == EventKind::Put {
        // Every state matches: the previous one need not be read.
        let obj = decode(res, &e.kv).ok()?;
        return Some(match created {
            true => WatchEvent::Added(obj),
            false => WatchEvent::Modified(obj),
        });
    }
    let prev = e.prev.as_ref().and_then(|p| decode(res, p).ok());
    let was = prev.as_ref().is_some_and(|p| sel.matches(p));
    match e.kind {
        EventKind::Put => {
            let obj = decode(res, &e.kv).ok()?;
            let is = sel.matches(&obj);
            match (was, is) {
                (_, true) if created => Some(WatchEvent::Added(obj)),
                (true, true) => Some(WatchEvent::Modified(obj)),
                // Without the previous state (compacted), an update is still a modification
                // to a watcher that may have seen the object.
                (false, true) if prev.is_none() && sel.is_empty() => {
                    Some(WatchEvent::Modified(obj))
                }
                (false, true) => Some(WatchEvent::Added(obj)),
                (true, false) => prev.map(|p| WatchEvent::Deleted(at_event(p))),
                (false, false) => None,
            }
        }
        EventKind::Delete => {
            let obj = prev.filter(|_| was)?;
            Some(WatchEvent::Deleted(at_event(obj)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn uids_are_v4() {
        let u = new_uid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
    }

    #[test]
    fn encoded_items_are_the_decoded_objects_written_out() {
        let res = Resources::built_in(|_| None)
            .resolve("", "v1", "pods")
            .unwrap()
            .res;
        for stored in [
            r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","namespace":"d","labels":{"a":"\u00e9"}},"spec":{"containers":[{"name":"c","image":"i"}]},"status":{"phase":"Pending"}}"#,
            r#"{"spec":{},"metadata":{"name":"q"},"kind":"Pod","apiVersion":"v1"}"#,
            r#"{"zzz":1,"aaa":{"b":[1,2.5,"x"]},"metadata":{}}"#,
        ] {
            // What the store holds is what `encode` wrote: keys sorted at every level.
            let kv = KeyValue {
                key: Bytes::from_static(b"/registry/pods/d/p"),
                value: encode(&res, &serde_json::from_str(stored).unwrap()).unwrap(),
                create_revision: 3,
                mod_revision: 7,
                version: 2,
            };
            let via_value = serde_json::to_vec(&decode(&res, &kv).unwrap()).unwrap();
            assert_eq!(
                String::from_utf8(encode_item(&res, &kv).unwrap()).unwrap(),
                String::from_utf8(via_value).unwrap()
            );
        }
    }

    #[test]
    fn continue_tokens_round_trip() {
        let t = encode_continue(42, "default/cm7\u{0}");
        assert_eq!(
            decode_continue(&t).unwrap(),
            (42, "default/cm7\u{0}".to_string())
        );
        assert!(decode_continue("garbage!").is_err());
    }
}
