//! Admission: the chain between authorization and the store, as upstream's kube-apiserver runs
//! it. Mutating plugins run on the decoded object before the kind's strategy (defaults,
//! validation); validating plugins run after the strategy's validation, just before the store
//! write. Both run under dry run too. Each plugin sees the operation, the resource and
//! subresource, the user, the object and the old object, and reads other objects through the
//! [`Registry`].
//!
//! The plugins, in upstream's order: NamespaceLifecycle, LimitRanger, ServiceAccount,
//! NodeRestriction, TaintNodesByCondition, Priority, DefaultTolerationSeconds, ResourceQuota.
//!
//! The chain's [`Admission::written`] step, after a write is stored, records quotas' usage
//! after deletes and quota writes (the resource quota controller in `rudder-controllers`
//! keeps it right from then on, counting with the same `rudder_api::quota` rules) and makes
//! the `default` ServiceAccount of a new namespace. (The root-CA
//! publisher's `kube-root-ca.crt` ConfigMap, which the token volume projects, comes with the
//! controllers.)
//!
//! Owns: the plugins' rules and messages. Must not touch: kind rules that need no other
//! object (strategies in `rudder-api`), the store.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::FutureExt;
use rudder_api::quota::{self, add_to, pod_resources, resources, GroupResource, Resources};
use rudder_api::validation::Quantity;
use rudder_api::value::set;
use rudder_store::{KeyRange, KeyValue, RangeRequest};
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::pki::User;
use crate::registry::{ListOptions, Part, Registry, Res, Write, NAMESPACES_PREFIX};
use crate::resources::Resources as Catalogue;
use crate::watchcache::FeedItem;

/// What the request does, as upstream names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
    Delete,
    Connect,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
            Operation::Connect => "CONNECT",
        }
    }
}

/// What a plugin knows about the request.
#[derive(Clone, Copy)]
pub struct Attributes<'a> {
    pub operation: Operation,
    pub res: &'a Res,
    /// `""` for the main resource, `status`, …
    pub subresource: &'a str,
    pub namespace: Option<&'a str>,
    pub name: &'a str,
    /// `None` for the server's own writes.
    pub user: Option<&'a User>,
    /// The current object, on update and delete (stored form).
    pub old: Option<&'a Value>,
    pub dry_run: bool,
}

impl<'a> Attributes<'a> {
    /// The attributes of a write through the registry.
    pub fn of_write(
        operation: Operation,
        res: &'a Res,
        part: Part,
        namespace: Option<&'a str>,
        name: &'a str,
        w: &'a Write,
        old: Option<&'a Value>,
    ) -> Attributes<'a> {
        Attributes {
            operation,
            res,
            subresource: match part {
                Part::Status => "status",
                Part::Field(sub) => sub.name,
                Part::Main | Part::All => "",
            },
            namespace: namespace.filter(|_| res.namespaced),
            name,
            user: w.user.as_ref(),
            old,
            dry_run: w.dry_run,
        }
    }

    /// The main resource (no subresource) of `group`/`plural`.
    fn is(&self, group: &str, plural: &str) -> bool {
        self.subresource.is_empty() && self.res.group == group && self.res.plural == plural
    }

    fn resource(&self) -> String {
        if self.res.group.is_empty() {
            self.res.plural.to_string()
        } else {
            format!("{}.{}", self.res.plural, self.res.group)
        }
    }

    /// Upstream's `admission.NewForbidden`: `<resource> "<name>" is forbidden: <why>`.
    pub fn forbidden(&self, why: impl std::fmt::Display) -> ApiError {
        forbidden(self.res.group, self.res.plural, self.name, why)
    }
}

/// `apierrors.NewForbidden(resource, name, err)`.
pub fn forbidden(group: &str, plural: &str, name: &str, why: impl std::fmt::Display) -> ApiError {
    let resource = if group.is_empty() {
        plural.to_string()
    } else {
        format!("{plural}.{group}")
    };
    let message = if name.is_empty() {
        format!("{resource} is forbidden: {why}")
    } else {
        format!("{resource} {name:?} is forbidden: {why}")
    };
    let mut details = json!({"name": name, "kind": plural});
    if !group.is_empty() {
        set(&mut details, &["group"], json!(group));
    }
    ApiError {
        details: Some(details),
        ..ApiError::forbidden(message)
    }
}

type Done<'a> = BoxFuture<'a, Result<(), ApiError>>;

fn ok<'a>() -> Done<'a> {
    futures::future::ready(Ok(())).boxed()
}

/// One admission plugin. Every step defaults to "nothing to do".
trait Plugin: Send + Sync {
    /// Mutating admission: may change `obj` (before the strategy).
    fn mutate<'a>(
        &'a self,
        _reg: &'a Registry,
        _a: &'a Attributes<'a>,
        _obj: &'a mut Value,
    ) -> Done<'a> {
        ok()
    }

    /// Validating admission: `obj` as it will be stored (for a delete, the object deleted).
    fn validate<'a>(
        &'a self,
        _reg: &'a Registry,
        _a: &'a Attributes<'a>,
        _obj: &'a Value,
    ) -> Done<'a> {
        ok()
    }

    /// After the write is stored (never under dry run): `obj` as stored, `None` when deleted.
    fn written<'a>(
        &'a self,
        _reg: &'a Registry,
        _a: &'a Attributes<'a>,
        _obj: Option<&'a Value>,
    ) -> Done<'a> {
        ok()
    }
}

/// Settings of the plugins (kube-apiserver flags).
#[derive(Clone, Debug)]
pub struct Config {
    /// `--default-not-ready-toleration-seconds`.
    pub not_ready_toleration_seconds: i64,
    /// `--default-unreachable-toleration-seconds`.
    pub unreachable_toleration_seconds: i64,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            not_ready_toleration_seconds: 300,
            unreachable_toleration_seconds: 300,
        }
    }
}

/// The chain.
pub struct Admission {
    plugins: Vec<Box<dyn Plugin>>,
    namespaces: Arc<KeyIndex>,
}

impl Admission {
    pub fn new(cfg: Config) -> Admission {
        let namespaces = Arc::new(KeyIndex::new(NAMESPACES_PREFIX, active_namespace));
        Admission {
            plugins: vec![
                Box::new(NamespaceLifecycle {
                    index: namespaces.clone(),
                }),
                Box::new(LimitRanger {
                    index: KeyIndex::new("/registry/limitranges/", anything),
                }),
                Box::new(ServiceAccount),
                Box::new(NodeRestriction),
                Box::new(TaintNodesByCondition),
                Box::new(Priority),
                Box::new(DefaultTolerationSeconds {
                    not_ready: cfg.not_ready_toleration_seconds,
                    unreachable: cfg.unreachable_toleration_seconds,
                }),
                Box::new(ResourceQuota {
                    index: KeyIndex::new("/registry/resourcequotas/", anything),
                }),
            ],
            namespaces,
        }
    }

    /// Mutating admission, every plugin in order.
    pub async fn mutate(
        &self,
        reg: &Registry,
        a: &Attributes<'_>,
        obj: &mut Value,
    ) -> Result<(), ApiError> {
        for p in &self.plugins {
            p.mutate(reg, a, obj).await?;
        }
        Ok(())
    }

    /// Validating admission, every plugin in order.
    pub async fn validate(
        &self,
        reg: &Registry,
        a: &Attributes<'_>,
        obj: &Value,
    ) -> Result<(), ApiError> {
        for p in &self.plugins {
            p.validate(reg, a, obj).await?;
        }
        Ok(())
    }

    /// After a stored write: what upstream's controllers would do about it. Failures are
    /// logged; the write stands.
    pub async fn written(&self, reg: &Registry, a: &Attributes<'_>, obj: Option<&Value>) {
        if a.dry_run {
            return;
        }
        for p in &self.plugins {
            if let Err(e) = p.written(reg, a, obj).await {
                tracing::warn!(resource = a.res.plural, name = a.name, error = %e, "after-write admission step failed");
            }
        }
    }

    /// Takes a namespace out of the active index at once (it is terminating).
    pub fn forget_namespace(&self, ns: &str) {
        self.namespaces.note(ns, false);
    }
}

fn served(reg: &Registry, group: &str, version: &str, plural: &str) -> Result<Res, ApiError> {
    reg.resolve(group, version, plural)
        .map(|s| s.res)
        .ok_or_else(|| ApiError::internal(format!("{plural} are not in the catalogue")))
}

async fn list_items(reg: &Registry, res: &Res, ns: Option<&str>) -> Result<Vec<Value>, ApiError> {
    let list = reg.list(res, ns, &ListOptions::default()).await?;
    Ok(match list.get("items") {
        Some(Value::Array(items)) => items.clone(),
        _ => Vec::new(),
    })
}

fn s<'v>(v: &'v Value, path: &[&str]) -> &'v str {
    at(v, path).and_then(Value::as_str).unwrap_or("")
}

fn at<'v>(v: &'v Value, path: &[&str]) -> Option<&'v Value> {
    path.iter().try_fold(v, |v, k| v.get(*k))
}

fn items<'v>(v: &'v Value, path: &[&str]) -> &'v [Value] {
    at(v, path)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// The array at `path` (made one if missing or null), to push into.
fn array_mut<'v>(v: &'v mut Value, path: &[&str]) -> Option<&'v mut Vec<Value>> {
    if !at(v, path).is_some_and(Value::is_array) {
        if at(v, path).is_some_and(|x| !x.is_null()) {
            return None;
        }
        set(v, path, json!([]));
    }
    let mut cur = v;
    for k in path {
        cur = cur.get_mut(*k)?;
    }
    cur.as_array_mut()
}

// ---- NamespaceLifecycle ---------------------------------------------------------------------

/// The namespaces every cluster has, which NamespaceLifecycle keeps from being deleted.
pub const SYSTEM_NAMESPACES: [&str; 4] =
    ["default", "kube-system", "kube-public", "kube-node-lease"];

/// The keys under a store prefix (below it: `name` or `namespace/name`) whose objects pass
/// `keep`, kept by a watch once the first request asks (`None` until then, or after that
/// watch ended), so admission need not read the store on every write: the active namespaces
/// (a create costs one store request, not two), the namespaces with ResourceQuotas or
/// LimitRanges (a write to any other namespace costs no look-up at all).
struct KeyIndex {
    prefix: &'static str,
    keep: fn(&Value) -> bool,
    keys: Arc<std::sync::RwLock<Option<BTreeSet<String>>>>,
    starting: tokio::sync::Mutex<()>,
}

impl KeyIndex {
    fn new(prefix: &'static str, keep: fn(&Value) -> bool) -> KeyIndex {
        KeyIndex {
            prefix,
            keep,
            keys: Arc::default(),
            starting: tokio::sync::Mutex::new(()),
        }
    }

    /// What `f` says of the keys, starting the index first if need be; `None` when it cannot
    /// be started (callers then read the store).
    async fn with<T>(&self, reg: &Registry, f: impl Fn(&BTreeSet<String>) -> T) -> Option<T> {
        let look = || self.keys.read().ok().and_then(|k| k.as_ref().map(&f));
        if let Some(found) = look() {
            return Some(found);
        }
        let _one_at_a_time = self.starting.lock().await;
        if let Some(found) = look() {
            return Some(found);
        }
        if let Err(e) = self.start(reg).await {
            tracing::warn!(prefix = self.prefix, error = %e, "admission index not started; the store is read instead");
            return None;
        }
        look()
    }

    /// Whether `key` is known.
    async fn contains(&self, reg: &Registry, key: &str) -> Option<bool> {
        self.with(reg, |k| k.contains(key)).await
    }

    /// Whether anything is known in namespace `ns`.
    async fn any_in(&self, reg: &Registry, ns: &str) -> Option<bool> {
        let from = format!("{ns}/");
        self.with(reg, |k| {
            k.range(from.clone()..)
                .next()
                .is_some_and(|x| x.starts_with(&from))
        })
        .await
    }

    async fn start(&self, reg: &Registry) -> Result<(), ApiError> {
        let prefix = Bytes::from_static(self.prefix.as_bytes());
        let feed = reg.watch_cache().feed(&prefix, None).await?;
        let listed = reg
            .store()
            .range(RangeRequest {
                range: KeyRange::prefix(prefix.clone()),
                revision: 0,
                limit: 0,
                count_only: false,
            })
            .await?;
        let Some(mut sub) = feed.subscribe(listed.revision) else {
            return Err(ApiError::internal(
                "the index's watch does not reach back to its list",
            ));
        };
        let name_of = move |key: &[u8]| String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
        let keep = self.keep;
        let kept =
            move |kv: &KeyValue| serde_json::from_slice::<Value>(&kv.value).is_ok_and(|o| keep(&o));
        let mut set: BTreeSet<String> = listed
            .kvs
            .iter()
            .filter(|kv| kept(kv))
            .map(|kv| name_of(&kv.key))
            .collect();
        let apply = move |set: &mut BTreeSet<String>, e: &rudder_store::Event| {
            let name = name_of(&e.kv.key);
            match e.kind {
                rudder_store::EventKind::Put if kept(&e.kv) => set.insert(name),
                _ => set.remove(&name),
            };
        };
        for e in &sub.replay {
            apply(&mut set, &e.event);
        }
        if let Ok(mut slot) = self.keys.write() {
            *slot = Some(set);
        }
        let index = self.keys.clone();
        tokio::spawn(async move {
            while let Ok(item) = sub.live.recv().await {
                if let FeedItem::Event(e) = item {
                    if let Ok(mut slot) = index.write() {
                        if let Some(set) = slot.as_mut() {
                            apply(set, &e.event);
                        }
                    }
                }
            }
            // Behind or ended: forget, and start again on the next request that asks.
            if let Ok(mut slot) = index.write() {
                *slot = None;
            }
        });
        Ok(())
    }

    /// Records at once what this server just wrote (`present`) or marked, not when its watch
    /// event arrives.
    fn note(&self, key: &str, present: bool) {
        if let Ok(mut slot) = self.keys.write() {
            if let Some(set) = slot.as_mut() {
                if present {
                    set.insert(key.to_string());
                } else {
                    set.remove(key);
                }
            }
        }
    }
}

fn active_namespace(ns: &Value) -> bool {
    at(ns, &["metadata", "deletionTimestamp"]).is_none()
}

fn anything(_: &Value) -> bool {
    true
}

/// No content in a namespace that does not exist, no new content in one being deleted, and
/// the system namespaces are never deleted. After a namespace is created: its `default`
/// ServiceAccount (upstream's serviceaccount controller makes it).
struct NamespaceLifecycle {
    index: Arc<KeyIndex>,
}

impl NamespaceLifecycle {
    async fn check(&self, reg: &Registry, a: &Attributes<'_>) -> Result<(), ApiError> {
        let Some(ns) = a.namespace else {
            return Ok(());
        };
        if matches!(a.operation, Operation::Delete)
            || (a.res.group == "authorization.k8s.io" && a.res.plural.ends_with("accessreviews"))
        {
            return Ok(());
        }
        if self.index.contains(reg, ns).await == Some(true) {
            return Ok(());
        }
        let key = Bytes::from(format!("{NAMESPACES_PREFIX}{ns}"));
        let Some(kv) = reg.store().get(key, 0).await? else {
            return Err(ApiError::not_found(crate::error::Target {
                group: "",
                name_of_type: "namespaces",
                name: ns,
            }));
        };
        let obj: Value = serde_json::from_slice(&kv.value).unwrap_or(Value::Null);
        let terminating = at(&obj, &["metadata", "deletionTimestamp"]).is_some()
            || s(&obj, &["status", "phase"]) == "Terminating";
        if terminating && a.operation == Operation::Create {
            let mut e = a.forbidden(format!(
                "unable to create new content in namespace {ns} because it is being terminated"
            ));
            if let Some(d) = e.details.as_mut() {
                set(
                    d,
                    &["causes"],
                    json!([{
                        "reason": "NamespaceTerminating",
                        "message": format!("namespace {ns} is being terminated"),
                        "field": "metadata.namespace",
                    }]),
                );
            }
            return Err(e);
        }
        Ok(())
    }
}

impl Plugin for NamespaceLifecycle {
    fn mutate<'a>(
        &'a self,
        reg: &'a Registry,
        a: &'a Attributes<'a>,
        _: &'a mut Value,
    ) -> Done<'a> {
        self.check(reg, a).boxed()
    }

    fn validate<'a>(&'a self, _: &'a Registry, a: &'a Attributes<'a>, _: &'a Value) -> Done<'a> {
        let immortal = a.operation == Operation::Delete
            && a.is("", "namespaces")
            && SYSTEM_NAMESPACES.contains(&a.name);
        futures::future::ready(if immortal {
            Err(a.forbidden("this namespace may not be deleted"))
        } else {
            Ok(())
        })
        .boxed()
    }

    fn written<'a>(
        &'a self,
        reg: &'a Registry,
        a: &'a Attributes<'a>,
        obj: Option<&'a Value>,
    ) -> Done<'a> {
        async move {
            if a.operation == Operation::Create && a.is("", "namespaces") && obj.is_some() {
                namespace_defaults(reg, a.name).await?;
            }
            Ok(())
        }
        .boxed()
    }
}

/// What every namespace holds: the `default` ServiceAccount (upstream's serviceaccount
/// controller). An existing one is left alone.
pub async fn namespace_defaults(reg: &Registry, ns: &str) -> Result<(), ApiError> {
    let sa = served(reg, "", "v1", "serviceaccounts")?;
    let default = json!({"metadata": {"name": "default", "namespace": ns}});
    let w = Write::server_as("kube-controller-manager");
    match reg.create(&sa, Some(ns), default, &w).await {
        Ok(_)
        | Err(ApiError {
            reason: "AlreadyExists",
            ..
        }) => Ok(()),
        Err(e) => Err(e),
    }
}

// ---- ServiceAccount -------------------------------------------------------------------------

const TOKEN_MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// New pods run as a ServiceAccount that exists (`default` unless named), get its image pull
/// secrets, and mount its token, the cluster CA and their namespace at
/// `/var/run/secrets/kubernetes.io/serviceaccount` unless automounting is turned off.
struct ServiceAccount;

impl ServiceAccount {
    async fn admit(reg: &Registry, a: &Attributes<'_>, pod: &mut Value) -> Result<(), ApiError> {
        if !(a.is("", "pods") && a.operation == Operation::Create) {
            return Ok(());
        }
        let ns = a.namespace.unwrap_or("default");
        if at(pod, &["metadata", "annotations", MIRROR_ANNOTATION]).is_some() {
            return mirror_pod_rules(a, pod);
        }
        let mut name = s(pod, &["spec", "serviceAccountName"]).to_string();
        if name.is_empty() {
            name = s(pod, &["spec", "serviceAccount"]).to_string();
        }
        if name.is_empty() {
            name = "default".into();
        }
        set(pod, &["spec", "serviceAccountName"], json!(name));
        let sa_res = served(reg, "", "v1", "serviceaccounts")?;
        let sa = match reg.get(&sa_res, Some(ns), &name).await {
            Ok(sa) => sa,
            Err(e) if e.code == 404 => {
                return Err(a.forbidden(format!(
                "error looking up service account {ns}/{name}: serviceaccount {name:?} not found"
            )))
            }
            Err(e) => {
                return Err(a.forbidden(format!(
                    "error looking up service account {ns}/{name}: {}",
                    e.message
                )))
            }
        };
        let automount = at(pod, &["spec", "automountServiceAccountToken"])
            .and_then(Value::as_bool)
            .or_else(|| {
                sa.get("automountServiceAccountToken")
                    .and_then(Value::as_bool)
            })
            .unwrap_or(true);
        if automount {
            mount_token(pod, &crate::registry::random_suffix());
        }
        if items(pod, &["spec", "imagePullSecrets"]).is_empty() {
            let secrets: Vec<Value> = items(&sa, &["imagePullSecrets"])
                .iter()
                .map(|r| json!({"name": s(r, &["name"])}))
                .collect();
            if !secrets.is_empty() {
                set(pod, &["spec", "imagePullSecrets"], Value::Array(secrets));
            }
        }
        Ok(())
    }
}

/// Mirror pods (of static pods) may not use service accounts or secrets.
fn mirror_pod_rules(a: &Attributes<'_>, pod: &Value) -> Result<(), ApiError> {
    if !s(pod, &["spec", "serviceAccountName"]).is_empty() {
        return Err(a.forbidden("a mirror pod may not reference service accounts"));
    }
    let volumes = items(pod, &["spec", "volumes"]);
    if volumes.iter().any(|v| v.get("secret").is_some()) {
        return Err(a.forbidden("a mirror pod may not reference secrets"));
    }
    if volumes.iter().any(|v| {
        items(v, &["projected", "sources"])
            .iter()
            .any(|p| p.get("serviceAccountToken").is_some())
    }) {
        return Err(a.forbidden("a mirror pod may not use ServiceAccountToken volume projections"));
    }
    Ok(())
}

/// Upstream's bound service account token volume and its mount in every (init) container
/// that has nothing at the mount path yet.
fn mount_token(pod: &mut Value, suffix: &str) {
    let existing = items(pod, &["spec", "volumes"])
        .iter()
        .map(|v| s(v, &["name"]))
        .find(|n| n.starts_with("kube-api-access-"))
        .map(str::to_string);
    let volume_name = existing
        .clone()
        .unwrap_or_else(|| format!("kube-api-access-{suffix}"));
    let mount = json!({"name": volume_name, "readOnly": true, "mountPath": TOKEN_MOUNT_PATH});
    let mut needs_volume = false;
    for list in ["initContainers", "containers"] {
        let n = items(pod, &["spec", list]).len();
        for i in 0..n {
            let Some(c) = pod
                .get_mut("spec")
                .and_then(|s| s.get_mut(list))
                .and_then(|l| l.get_mut(i))
            else {
                continue;
            };
            // A container without a name makes the pod invalid whatever is mounted: the
            // mount is not worth its memory on a body of many empty containers.
            if s(c, &["name"]).is_empty() {
                continue;
            }
            let mounted = items(c, &["volumeMounts"])
                .iter()
                .any(|m| s(m, &["mountPath"]) == TOKEN_MOUNT_PATH);
            if mounted {
                continue;
            }
            if let Some(mounts) = array_mut(c, &["volumeMounts"]) {
                mounts.push(mount.clone());
                needs_volume = true;
            }
        }
    }
    if existing.is_none() && needs_volume {
        if let Some(volumes) = array_mut(pod, &["spec", "volumes"]) {
            volumes.push(json!({
                "name": volume_name,
                "projected": {
                    "defaultMode": 420,
                    "sources": [
                        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                        {"configMap": {"name": "kube-root-ca.crt",
                                       "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                        {"downwardAPI": {"items": [{"path": "namespace",
                            "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
                    ],
                },
            }));
        }
    }
}

impl Plugin for ServiceAccount {
    fn mutate<'a>(
        &'a self,
        reg: &'a Registry,
        a: &'a Attributes<'a>,
        obj: &'a mut Value,
    ) -> Done<'a> {
        Self::admit(reg, a, obj).boxed()
    }
}

// ---- TaintNodesByCondition ------------------------------------------------------------------

// ---- NodeRestriction ------------------------------------------------------------------------

/// What upstream's NodeRestriction keeps a node (`system:node:NAME`) to, beyond what the Node
/// authorizer decides from the request alone: its own Node (not its taints, nor labels outside
/// the kubelet's set), only pods bound to it (status, deletion; creation of mirror pods only),
/// its own Lease.
struct NodeRestriction;

/// Labels a node may set on itself (upstream's `kubeletapis.IsKubeletLabel`).
fn is_kubelet_label(key: &str) -> bool {
    const LABELS: &[&str] = &[
        "kubernetes.io/hostname",
        "topology.kubernetes.io/zone",
        "topology.kubernetes.io/region",
        "failure-domain.beta.kubernetes.io/zone",
        "failure-domain.beta.kubernetes.io/region",
        "beta.kubernetes.io/instance-type",
        "node.kubernetes.io/instance-type",
        "kubernetes.io/os",
        "kubernetes.io/arch",
        "beta.kubernetes.io/os",
        "beta.kubernetes.io/arch",
    ];
    let ns = label_namespace(key);
    LABELS.contains(&key)
        || in_domain(ns, "kubelet.kubernetes.io")
        || in_domain(ns, "node.kubernetes.io")
}

fn label_namespace(key: &str) -> &str {
    key.split_once('/').map_or("", |(ns, _)| ns)
}

fn in_domain(ns: &str, domain: &str) -> bool {
    ns == domain || ns.strip_suffix(domain).is_some_and(|p| p.ends_with('.'))
}

/// Of the labels that differ between `new` and `old`, those a node may not set (upstream's
/// `getForbiddenLabels`), sorted.
pub fn forbidden_node_labels(new: &Value, old: Option<&Value>) -> Vec<String> {
    let labels = |o: Option<&Value>| -> BTreeMap<String, String> {
        o.and_then(|o| o["metadata"]["labels"].as_object())
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (a, b) = (labels(Some(new)), labels(old));
    let modified: BTreeSet<&String> = a
        .iter()
        .filter(|(k, v)| b.get(*k) != Some(v))
        .chain(b.iter().filter(|(k, v)| a.get(*k) != Some(v)))
        .map(|(k, _)| k)
        .collect();
    modified
        .into_iter()
        .filter(|k| {
            let ns = label_namespace(k);
            let kubernetes = in_domain(ns, "kubernetes.io") || in_domain(ns, "k8s.io");
            in_domain(ns, "node-restriction.kubernetes.io") || (kubernetes && !is_kubelet_label(k))
        })
        .cloned()
        .collect()
}

impl NodeRestriction {
    async fn check(
        reg: &Registry,
        a: &Attributes<'_>,
        node: &str,
        obj: &Value,
    ) -> Result<(), ApiError> {
        let bound = |pod: &Value| s(pod, &["spec", "nodeName"]) == node;
        match (a.res.group, a.res.plural, a.subresource) {
            ("", "pods", "") => match a.operation {
                Operation::Create => Self::mirror_pod(reg, a, node, obj).await,
                Operation::Delete => {
                    if a.old.is_some_and(bound) {
                        Ok(())
                    } else {
                        Err(a.forbidden(format!(
                            "node {node:?} can only delete pods with spec.nodeName set to itself"
                        )))
                    }
                }
                op => Err(a.forbidden(format!(
                    "unexpected operation {:?}, node {node:?} can only create and delete mirror pods",
                    op.as_str()
                ))),
            },
            ("", "pods", "status") => {
                if !a.old.is_some_and(bound) {
                    return Err(a.forbidden(format!(
                        "node {node:?} can only update pod status for pods with spec.nodeName set to itself"
                    )));
                }
                if a.old.map(|o| &o["metadata"]["labels"]) != Some(&obj["metadata"]["labels"]) {
                    return Err(a.forbidden(format!(
                        "node {node:?} cannot update labels through pod status"
                    )));
                }
                Ok(())
            }
            ("", "pods", sub) if sub != "eviction" => Err(a.forbidden(format!(
                "unexpected pod subresource {sub:?}, only 'status' and 'eviction' are allowed"
            ))),
            ("", "nodes", _) => {
                let name = s(obj, &["metadata", "name"]);
                if name != node {
                    return Err(a.forbidden(format!(
                        "node {node:?} is not allowed to modify node {name:?}"
                    )));
                }
                match a.operation {
                    Operation::Create => {
                        if !obj["spec"]["configSource"].is_null() {
                            return Err(a.forbidden(format!(
                                "node {node:?} is not allowed to create pods with a non-nil configSource"
                            )));
                        }
                        let forbidden = forbidden_node_labels(obj, None);
                        if !forbidden.is_empty() {
                            return Err(a.forbidden(format!(
                                "node {node:?} is not allowed to set the following labels: {}",
                                forbidden.join(", ")
                            )));
                        }
                    }
                    Operation::Update => {
                        let old = a.old.unwrap_or(&Value::Null);
                        let config = &obj["spec"]["configSource"];
                        if !config.is_null() && *config != old["spec"]["configSource"] {
                            return Err(a.forbidden(format!(
                                "node {node:?} is not allowed to update configSource to a new non-nil configSource"
                            )));
                        }
                        let taints = |o: &Value| o["spec"]["taints"].as_array().cloned().unwrap_or_default();
                        if taints(obj) != taints(old) {
                            return Err(a.forbidden(format!(
                                "node {node:?} is not allowed to modify taints"
                            )));
                        }
                        let forbidden = forbidden_node_labels(obj, Some(old));
                        if !forbidden.is_empty() {
                            return Err(a.forbidden(format!(
                                "is not allowed to modify labels: {}",
                                forbidden.join(", ")
                            )));
                        }
                    }
                    _ => {}
                }
                Ok(())
            }
            ("coordination.k8s.io", "leases", _) => {
                if a.namespace != Some("kube-node-lease") {
                    return Err(a.forbidden(
                        "can only access leases in the \"kube-node-lease\" system namespace",
                    ));
                }
                if s(obj, &["metadata", "name"]) != node {
                    return Err(a.forbidden(
                        "can only access node lease with the same name as the requesting node",
                    ));
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// A node creates only mirror pods of its static pods: bound to it, owned by its Node,
    /// referring to no other object.
    async fn mirror_pod(
        reg: &Registry,
        a: &Attributes<'_>,
        node: &str,
        pod: &Value,
    ) -> Result<(), ApiError> {
        let forbidden = |why: String| Err(a.forbidden(why));
        if pod["metadata"]["annotations"][MIRROR_ANNOTATION].is_null() {
            return forbidden(format!(
                "pod does not have \"{MIRROR_ANNOTATION}\" annotation, node {node:?} can only create mirror pods"
            ));
        }
        if s(pod, &["spec", "nodeName"]) != node {
            return forbidden(format!(
                "node {node:?} can only create pods with spec.nodeName set to itself"
            ));
        }
        let owners = items(pod, &["metadata", "ownerReferences"]);
        let [owner] = owners else {
            return forbidden(format!(
                "node {node:?} can only create pods with a single owner reference set to itself"
            ));
        };
        if s(owner, &["apiVersion"]) != "v1"
            || s(owner, &["kind"]) != "Node"
            || s(owner, &["name"]) != node
        {
            return forbidden(format!(
                "node {node:?} can only create pods with an owner reference set to itself"
            ));
        }
        if owner["controller"] != json!(true) {
            return forbidden(format!(
                "node {node:?} can only create pods with a controller owner reference set to itself"
            ));
        }
        if owner["blockOwnerDeletion"] == json!(true) {
            return forbidden(format!(
                "node {node:?} must not set blockOwnerDeletion on an owner reference"
            ));
        }
        let nodes = served(reg, "", "v1", "nodes")?;
        let current = reg.get(&nodes, None, node).await?;
        let uid = s(&current, &["metadata", "uid"]);
        if s(owner, &["uid"]) != uid {
            return forbidden(format!(
                "node {node} UID mismatch: expected {} got {uid}",
                s(owner, &["uid"])
            ));
        }
        if !s(pod, &["spec", "serviceAccountName"]).is_empty() {
            return forbidden(format!(
                "node {node:?} can not create pods that reference a service account"
            ));
        }
        for resource in ["secrets", "configmaps", "persistentvolumeclaims"] {
            if !crate::authz::references(pod, resource).is_empty() {
                return forbidden(format!(
                    "node {node:?} can not create pods that reference {resource}"
                ));
            }
        }
        Ok(())
    }
}

impl Plugin for NodeRestriction {
    fn validate<'a>(
        &'a self,
        reg: &'a Registry,
        a: &'a Attributes<'a>,
        obj: &'a Value,
    ) -> Done<'a> {
        let Some(node) = a.user.and_then(crate::authz::node_name) else {
            return ok();
        };
        Self::check(reg, a, node, obj).boxed()
    }
}

// ---- TaintNodesByCondition ------------------------------------------------------------------

/// New nodes start tainted `node.kubernetes.io/not-ready:NoSchedule`, until the node
/// lifecycle controller sees them ready.
struct TaintNodesByCondition;

fn add_not_ready_taint(node: &mut Value) {
    let has = items(node, &["spec", "taints"])
        .iter()
        .any(|t| s(t, &["key"]) == NOT_READY && s(t, &["effect"]) == "NoSchedule");
    if !has {
        if let Some(taints) = array_mut(node, &["spec", "taints"]) {
            taints.push(json!({"key": NOT_READY, "effect": "NoSchedule"}));
        }
    }
}

impl Plugin for TaintNodesByCondition {
    fn mutate<'a>(
        &'a self,
        _: &'a Registry,
        a: &'a Attributes<'a>,
        obj: &'a mut Value,
    ) -> Done<'a> {
        if a.is("", "nodes") && a.operation == Operation::Create {
            add_not_ready_taint(obj);
        }
        ok()
    }
}

// ---- Priority -------------------------------------------------------------------------------

/// The priority classes every cluster has (made at start), with their values.
pub const SYSTEM_PRIORITY_CLASSES: [(&str, i64, &str); 2] = [
    (
        "system-node-critical",
        2_000_001_000,
        "Used for system critical pods that must not be moved from their current node.",
    ),
    (
        "system-cluster-critical",
        2_000_000_000,
        "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary.",
    ),
];

/// A new pod's `priorityClassName` (or the global default class) decides its `priority` and
/// `preemptionPolicy`; only one PriorityClass may be the global default; the system classes
/// cannot be deleted.
struct Priority;

impl Priority {
    async fn default_class(reg: &Registry) -> Result<Option<Value>, ApiError> {
        let res = served(reg, "scheduling.k8s.io", "v1", "priorityclasses")?;
        Ok(list_items(reg, &res, None)
            .await?
            .into_iter()
            .filter(|pc| pc.get("globalDefault").and_then(Value::as_bool) == Some(true))
            .min_by_key(|pc| pc.get("value").and_then(Value::as_i64).unwrap_or(0)))
    }

    async fn admit_pod(
        reg: &Registry,
        a: &Attributes<'_>,
        pod: &mut Value,
    ) -> Result<(), ApiError> {
        if a.operation == Operation::Update {
            // Set on create; kept when an update leaves it out.
            for f in ["priority", "preemptionPolicy"] {
                let old = a.old.and_then(|o| at(o, &["spec", f]));
                if let (None, Some(v)) = (at(pod, &["spec", f]), old) {
                    set(pod, &["spec", f], v.clone());
                }
            }
            return Ok(());
        }
        let class = s(pod, &["spec", "priorityClassName"]).to_string();
        let (name, priority, policy) = if class.is_empty() {
            match Self::default_class(reg).await? {
                Some(pc) => (
                    s(&pc, &["metadata", "name"]).to_string(),
                    pc.get("value").and_then(Value::as_i64).unwrap_or(0),
                    pc.get("preemptionPolicy")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                ),
                None => (String::new(), 0, Some("PreemptLowerPriority".to_string())),
            }
        } else {
            let res = served(reg, "scheduling.k8s.io", "v1", "priorityclasses")?;
            match reg.get(&res, None, &class).await {
                Ok(pc) => (
                    class.clone(),
                    pc.get("value").and_then(Value::as_i64).unwrap_or(0),
                    pc.get("preemptionPolicy")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                ),
                Err(e) if e.code == 404 => {
                    return Err(a.forbidden(format!("no PriorityClass with name {class} was found")))
                }
                Err(e) => {
                    return Err(ApiError::internal(format!(
                        "failed to get PriorityClass with name {class}: {}",
                        e.message
                    )))
                }
            }
        };
        if !name.is_empty() {
            set(pod, &["spec", "priorityClassName"], json!(name));
        }
        if let Some(given) = at(pod, &["spec", "priority"]).and_then(Value::as_i64) {
            if given != priority {
                return Err(a.forbidden(format!(
                    "the integer value of priority ({given}) must not be provided in pod spec; priority admission controller computed {priority} from the given PriorityClass name"
                )));
            }
        }
        set(pod, &["spec", "priority"], json!(priority));
        if let Some(policy) = policy {
            let given = s(pod, &["spec", "preemptionPolicy"]);
            if !given.is_empty() && given != policy {
                return Err(a.forbidden(format!(
                    "the string value of PreemptionPolicy ({given}) must not be provided in pod spec; priority admission controller computed {policy} from the given PriorityClass name"
                )));
            }
            set(pod, &["spec", "preemptionPolicy"], json!(policy));
        }
        Ok(())
    }

    async fn check_class(reg: &Registry, a: &Attributes<'_>, pc: &Value) -> Result<(), ApiError> {
        if a.operation == Operation::Delete {
            if SYSTEM_PRIORITY_CLASSES.iter().any(|(n, _, _)| *n == a.name) {
                return Err(a.forbidden("this is a system priority class and cannot be deleted"));
            }
            return Ok(());
        }
        if pc.get("globalDefault").and_then(Value::as_bool) != Some(true) {
            return Ok(());
        }
        if let Some(current) = Self::default_class(reg).await? {
            let current = s(&current, &["metadata", "name"]);
            if a.operation == Operation::Create || current != a.name {
                return Err(a.forbidden(format!(
                    "PriorityClass {current} is already marked as default. Only one default can exist"
                )));
            }
        }
        Ok(())
    }
}

impl Plugin for Priority {
    fn mutate<'a>(
        &'a self,
        reg: &'a Registry,
        a: &'a Attributes<'a>,
        obj: &'a mut Value,
    ) -> Done<'a> {
        if a.is("", "pods") && matches!(a.operation, Operation::Create | Operation::Update) {
            return Self::admit_pod(reg, a, obj).boxed();
        }
        ok()
    }

    fn validate<'a>(
        &'a self,
        reg: &'a Registry,
        a: &'a Attributes<'a>,
        obj: &'a Value,
    ) -> Done<'a> {
        if a.is("scheduling.k8s.io", "priorityclasses") {
            return Self::check_class(reg, a, obj).boxed();
        }
        ok()
    }
}

// ---- DefaultTolerationSeconds ---------------------------------------------------------------

const NOT_READY: &str = "node.kubernetes.io/not-ready";
const UNREACHABLE: &str = "node.kubernetes.io/unreachable";

/// Pods tolerate a not-ready or unreachable node for a while (`tolerationSeconds`,
/// configurable) before they are evicted from it, unless they say otherwise.
struct DefaultTolerationSeconds {
    not_ready: i64,
    unreachable: i64,
}

fn add_default_tolerations(pod: &mut Value, not_ready: i64, unreachable: i64) {
    let tolerates = |pod: &Value, key: &str| {
        items(pod, &["spec", "tolerations"]).iter().any(|t| {
            (s(t, &["key"]) == key || s(t, &["key"]).is_empty())
                && matches!(s(t, &["effect"]), "NoExecute" | "")
        })
    };
    for (key, seconds) in [(NOT_READY, not_ready), (UNREACHABLE, unreachable)] {
        if tolerates(pod, key) {
            continue;
        }
        if let Some(list) = array_mut(pod, &["spec", "tolerations"]) {
            list.push(json!({
                "key": key,
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": seconds,
            }));
        }
    }
}

impl Plugin for DefaultTolerationSeconds {
    fn mutate<'a>(
        &'a self,
        _: &'a Registry,
        a: &'a Attributes<'a>,
        obj: &'a mut Value,
    ) -> Done<'a> {
        if a.is("", "pods")
            && matches!(a.operation, Operation::Create | Operation::Update)
            && obj.get("spec").is_some_and(Value::is_object)
        {
            add_default_tolerations(obj, self.not_ready, self.unreachable);
        }
        ok()
    }
}

// ---- resource lists -------------------------------------------------------------------------

fn units(n: i64) -> Quantity {
    Quantity::from_units(n)
}

/// `k=v,k=v` in key order (upstream's `prettyPrint`).
fn pretty(r: &Resources) -> String {
    r.iter()
        .map(|(k, v)| format!("{k}={}", v.canonical()))
        .collect::<Vec<_>>()
        .join(",")
}

// ---- LimitRanger ----------------------------------------------------------------------------

/// LimitRanges of the namespace: default requests and limits for containers of new pods, and
/// min / max / maxLimitRequestRatio for containers, pods and claims (403 with upstream's
/// messages).
struct LimitRanger {
    /// `namespace/name` of every LimitRange.
    index: KeyIndex,
}

const LIMIT_RANGER_ANNOTATION: &str = "kubernetes.io/limit-ranger";

fn merge_defaults(pod: &mut Value, range: &Value) {
    let (mut requests, mut limits) = (BTreeMap::new(), BTreeMap::new());
    for item in items(range, &["spec", "limits"]) {
        if s(item, &["type"]) != "Container" {
            continue;
        }
        for (k, v) in item
            .get("defaultRequest")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            requests.insert(k.clone(), v.clone());
        }
        for (k, v) in item
            .get("default")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            limits.insert(k.clone(), v.clone());
        }
    }
    if requests.is_empty() && limits.is_empty() {
        return;
    }
    let mut notes = Vec::new();
    for (list, what) in [
        ("containers", "container"),
        ("initContainers", "init container"),
    ] {
        let n = items(pod, &["spec", list]).len();
        for i in 0..n {
            let Some(c) = pod
                .get_mut("spec")
                .and_then(|s| s.get_mut(list))
                .and_then(|l| l.get_mut(i))
                .filter(|c| c.is_object())
            else {
                continue;
            };
            let name = s(c, &["name"]).to_string();
            let mut set_requests = Vec::new();
            let mut set_limits = Vec::new();
            for (defaults, field, done) in [
                (&limits, "limits", &mut set_limits),
                (&requests, "requests", &mut set_requests),
            ] {
                for (k, v) in defaults {
                    if at(c, &["resources", field, k]).is_none() {
                        set(c, &["resources", field, k], v.clone());
                        done.push(k.clone());
                    }
                }
            }
            if !set_requests.is_empty() {
                notes.push(format!(
                    "{} request for {what} {name}",
                    set_requests.join(", ")
                ));
            }
            if !set_limits.is_empty() {
                notes.push(format!("{} limit for {what} {name}", set_limits.join(", ")));
            }
        }
    }
    if !notes.is_empty() {
        set(
            pod,
            &["metadata", "annotations", LIMIT_RANGER_ANNOTATION],
            json!(format!("LimitRanger plugin set: {}", notes.join("; "))),
        );
    }
}

fn min_constraint(
    kind: &str,
    name: &str,
    enforced: &Quantity,
    req: &Resources,
    lim: &Resources,
) -> Option<String> {
    let e = enforced.canonical();
    let Some(r) = req.get(name) else {
        return Some(format!(
            "minimum {name} usage per {kind} is {e}.  No request is specified"
        ));
    };
    if r.milli() < enforced.milli() {
        return Some(format!(
            "minimum {name} usage per {kind} is {e}, but request is {}",
            r.canonical()
        ));
    }
    match lim.get(name) {
        Some(l) if l.milli() < enforced.milli() => Some(format!(
            "minimum {name} usage per {kind} is {e}, but limit is {}",
            l.canonical()
        )),
        _ => None,
    }
}

fn max_constraint(
    kind: &str,
    name: &str,
    enforced: &Quantity,
    req: &Resources,
    lim: &Resources,
) -> Option<String> {
    let e = enforced.canonical();
    let Some(l) = lim.get(name) else {
        return Some(format!(
            "maximum {name} usage per {kind} is {e}.  No limit is specified"
        ));
    };
    if l.milli() > enforced.milli() {
        return Some(format!(
            "maximum {name} usage per {kind} is {e}, but limit is {}",
            l.canonical()
        ));
    }
    match req.get(name) {
        Some(r) if r.milli() > enforced.milli() => Some(format!(
            "maximum {name} usage per {kind} is {e}, but request is {}",
            r.canonical()
        )),
        _ => None,
    }
}

fn max_request_constraint(
    kind: &str,
    name: &str,
    enforced: &Quantity,
    req: &Resources,
) -> Option<String> {
    let e = enforced.canonical();
    let Some(r) = req.get(name) else {
        return Some(format!(
            "maximum {name} usage per {kind} is {e}.  No request is specified"
        ));
    };
    (r.milli() > enforced.milli()).then(|| {
        format!(
            "maximum {name} usage per {kind} is {e}, but request is {}",
            r.canonical()
        )
    })
}

fn ratio_constraint(
    kind: &str,
    name: &str,
    enforced: &Quantity,
    req: &Resources,
    lim: &Resources,
) -> Option<String> {
    let e = enforced.canonical();
    let r = req.get(name).map(Quantity::milli).unwrap_or(0);
    let l = lim.get(name).map(Quantity::milli).unwrap_or(0);
    if r == 0 {
        return Some(format!(
            "{name} max limit to request ratio per {kind} is {e}, but no request is specified or request is 0"
        ));
    }
    if l == 0 {
        return Some(format!(
            "{name} max limit to request ratio per {kind} is {e}, but no limit is specified or limit is 0"
        ));
    }
    let observed = l as f64 / r as f64;
    (observed * 1000.0 > enforced.milli() as f64).then(|| {
        format!("{name} max limit to request ratio per {kind} is {e}, but provided ratio is {observed:.6}")
    })
}

/// The constraints of one LimitRange over a pod or claim; the messages in upstream's order
/// (resource names sorted where upstream iterates a map).
fn limit_violations(range: &Value, obj: &Value, pod: bool) -> Vec<String> {
    let mut errs = Vec::new();
    for item in items(range, &["spec", "limits"]) {
        let kind = s(item, &["type"]);
        let min = resources(item.get("min"));
        let max = resources(item.get("max"));
        let ratio = resources(item.get("maxLimitRequestRatio"));
        let mut check = |req: &Resources, lim: &Resources| {
            errs.extend(
                min.iter()
                    .filter_map(|(k, v)| min_constraint(kind, k, v, req, lim)),
            );
            errs.extend(
                max.iter()
                    .filter_map(|(k, v)| max_constraint(kind, k, v, req, lim)),
            );
            errs.extend(
                ratio
                    .iter()
                    .filter_map(|(k, v)| ratio_constraint(kind, k, v, req, lim)),
            );
        };
        match (pod, kind) {
            (true, "Container") => {
                for c in items(obj, &["spec", "containers"])
                    .iter()
                    .chain(items(obj, &["spec", "initContainers"]))
                {
                    let req = resources(at(c, &["resources", "requests"]));
                    let lim = resources(at(c, &["resources", "limits"]));
                    check(&req, &lim);
                }
            }
            (true, "Pod") => check(
                &pod_resources(obj, "requests"),
                &pod_resources(obj, "limits"),
            ),
            (false, "PersistentVolumeClaim") => {
                let req = resources(at(obj, &["spec", "resources", "requests"]));
                errs.extend(
                    min.iter()
                        .filter_map(|(k, v)| min_constraint(kind, k, v, &req, &Resources::new())),
                );
                errs.extend(
                    max.iter()
                        .filter_map(|(k, v)| max_request_constraint(kind, k, v, &req)),
                );
            }
            _ => {}
        }
    }
    errs
}

/// Upstream's aggregate error: one message as it is, several as `[a, b]`.
fn aggregate(errs: &[String]) -> String {
    match errs {
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    }
}

impl LimitRanger {
    fn applies(a: &Attributes<'_>) -> bool {
        let pod = a.is("", "pods") && a.operation == Operation::Create;
        let claim = a.is("", "persistentvolumeclaims")
            && matches!(a.operation, Operation::Create | Operation::Update);
        (pod || claim)
            && a.namespace.is_some()
            && a.old
                .is_none_or(|o| at(o, &["metadata", "deletionTimestamp"]).is_none())
    }

    async fn ranges(&self, reg: &Registry, a: &Attributes<'_>) -> Result<Vec<Value>, ApiError> {
        let ns = a.namespace.unwrap_or_default();
        if self.index.any_in(reg, ns).await == Some(false) {
            return Ok(Vec::new());
        }
        let res = served(reg, "", "v1", "limitranges")?;
        list_items(reg, &res, a.namespace).await
    }
}

impl Plugin for LimitRanger {
    fn mutate<'a>(
        &'a self,
        reg: &'a Registry,
        a: &'a Attributes<'a>,
        obj: &'a mut Value,
    ) -> Done<'a> {
        async move {
            if !(Self::applies(a) && a.res.plural == "pods") {
                return Ok(());
            }
            for range in self.ranges(reg, a).await? {
                merge_defaults(obj, &range);
            }
            Ok(())
        }
        .boxed()
    }

    fn validate<'a>(
        &'a self,
        reg: &'a Registry,
        a: &'a Attributes<'a>,
        obj: &'a Value,
    ) -> Done<'a> {
        async move {
            if !Self::applies(a) {
                return Ok(());
            }
            for range in self.ranges(reg, a).await? {
                let errs = limit_violations(&range, obj, a.res.plural == "pods");
                if !errs.is_empty() {
                    return Err(a.forbidden(aggregate(&errs)));
                }
            }
            Ok(())
        }
        .boxed()
    }

    fn written<'a>(
        &'a self,
        _: &'a Registry,
        a: &'a Attributes<'a>,
        obj: Option<&'a Value>,
    ) -> Done<'a> {
        if let (true, Some(ns)) = (a.is("", "limitranges"), a.namespace) {
            self.index.note(&format!("{ns}/{}", a.name), obj.is_some());
        }
        ok()
    }
}

// ---- ResourceQuota --------------------------------------------------------------------------

/// ResourceQuotas of the namespace: a create (or an update that grows usage) that would take
/// a quota's usage beyond its `hard` limits is refused (403 exceeded quota); otherwise the
/// quota's `status.used` records the new usage. Usage of the kind written is counted afresh
/// from the namespace's objects each time, and again after a delete or a quota write (the
/// resource quota controller recounts the rest: pods that finish, resyncs).
struct ResourceQuota {
    /// `namespace/name` of every ResourceQuota.
    index: KeyIndex,
}

/// The quota accounting resource of `res`.
fn gr(res: &Res) -> GroupResource<'static> {
    GroupResource::new(res.group, res.plural)
}

fn usage(res: &Res, obj: &Value) -> Resources {
    quota::usage(gr(res), obj)
}

fn owns(res: &Res, key: &str) -> bool {
    quota::owns(gr(res), key)
}

fn matches_scopes(q: &Value, res: &Res, obj: &Value) -> bool {
    quota::matches_scopes(q, gr(res), obj)
}

/// Upstream's pod constraint: a quota on cpu or memory requires every container to say how
/// much it requests or is limited to.
fn pod_constraints(hard: &Resources, pod: &Value) -> Option<String> {
    let required: Vec<&str> = hard
        .keys()
        .map(String::as_str)
        .filter(|k| {
            matches!(
                *k,
                "cpu"
                    | "memory"
                    | "requests.cpu"
                    | "requests.memory"
                    | "limits.cpu"
                    | "limits.memory"
            )
        })
        .collect();
    if required.is_empty() {
        return None;
    }
    let mut missing: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for c in items(pod, &["spec", "initContainers"])
        .iter()
        .chain(items(pod, &["spec", "containers"]))
    {
        for key in &required {
            let (field, name) = match key.split_once('.') {
                Some(("limits", n)) => ("limits", n),
                Some((_, n)) => ("requests", n),
                None => ("requests", *key),
            };
            if at(c, &["resources", field, name]).is_none() {
                missing
                    .entry(key)
                    .or_default()
                    .insert(s(c, &["name"]).to_string());
            }
        }
    }
    if missing.is_empty() {
        return None;
    }
    let parts: Vec<String> = missing
        .iter()
        .map(|(k, names)| {
            format!(
                "{k} for: {}",
                names.iter().cloned().collect::<Vec<_>>().join(",")
            )
        })
        .collect();
    Some(format!("must specify {}", parts.join("; ")))
}

impl ResourceQuota {
    /// The usage of `res`'s objects in `ns` that `quota` covers (its scopes), for the quota
    /// names that kind owns.
    async fn recount(
        reg: &Registry,
        res: &Res,
        ns: &str,
        quota: &Value,
    ) -> Result<Resources, ApiError> {
        let objs = list_items(reg, res, Some(ns)).await?;
        Ok(quota::total(quota, gr(res), &objs))
    }

    async fn write_status(reg: &Registry, quota: &Value, status: Value) -> Result<(), ApiError> {
        if quota.get("status") == Some(&status) {
            return Ok(());
        }
        let res = served(reg, "", "v1", "resourcequotas")?;
        let ns = s(quota, &["metadata", "namespace"]);
        let name = s(quota, &["metadata", "name"]);
        let mut obj = quota.clone();
        set(&mut obj, &["status"], status);
        let w = Write::server_as("kube-apiserver");
        reg.update(&res, Some(ns), name, obj, Part::Status, &w)
            .await
            .map(|_| ())
    }

    async fn check(&self, reg: &Registry, a: &Attributes<'_>, obj: &Value) -> Result<(), ApiError> {
        let (Some(ns), true) = (a.namespace, a.subresource.is_empty()) else {
            return Ok(());
        };
        let updatable = a.res.group.is_empty()
            && matches!(a.res.plural, "pods" | "services" | "persistentvolumeclaims");
        match a.operation {
            Operation::Create => {}
            Operation::Update if updatable => {}
            _ => return Ok(()),
        }
        if a.res.group.is_empty() && a.res.plural == "resourcequotas" {
            // Counting quotas by quotas would recurse; upstream charges them, rarely useful.
            return Ok(());
        }
        let mut delta = usage(a.res, obj);
        if let Some(old) = a.old {
            let before = usage(a.res, old);
            for (k, q) in delta.iter_mut() {
                let was = before.get(k).map_or(0, Quantity::nanos);
                *q = q.with_nanos((q.nanos() - was).max(0));
            }
        }
        if delta.values().all(Quantity::is_zero) || self.index.any_in(reg, ns).await == Some(false)
        {
            return Ok(());
        }
        let quota_res = served(reg, "", "v1", "resourcequotas")?;
        // Compare-and-swap on each quota's status: another write in between means counting
        // again.
        for _ in 0..5 {
            let quotas = list_items(reg, &quota_res, Some(ns)).await?;
            let mut counted: Option<Resources> = None;
            let mut updates = Vec::new();
            for quota in &quotas {
                let hard = resources(at(quota, &["spec", "hard"]));
                if !matches_scopes(quota, a.res, obj) {
                    continue;
                }
                if a.res.group.is_empty()
                    && a.res.plural == "pods"
                    && a.operation == Operation::Create
                {
                    if let Some(why) = pod_constraints(&hard, obj) {
                        return Err(a.forbidden(format!(
                            "failed quota: {}: {why}",
                            s(quota, &["metadata", "name"])
                        )));
                    }
                }
                let requested: Resources = delta
                    .iter()
                    .filter(|(k, _)| hard.contains_key(*k))
                    .map(|(k, q)| (k.clone(), *q))
                    .collect();
                if requested.is_empty() {
                    continue;
                }
                // Quotas without scopes count the same objects: counted once.
                let scoped = !quota::scope_selectors(quota).is_empty();
                let now = match &counted {
                    Some(c) if !scoped => c.clone(),
                    _ => {
                        let c = Self::recount(reg, a.res, ns, quota).await?;
                        if !scoped {
                            counted = Some(c.clone());
                        }
                        c
                    }
                };
                let used_of = |k: &str| now.get(k).copied().unwrap_or_else(|| units(0));
                let exceeded: Vec<&String> = requested
                    .iter()
                    .filter(|(k, q)| used_of(k).nanos() + q.nanos() > hard[*k].nanos())
                    .map(|(k, _)| k)
                    .collect();
                if !exceeded.is_empty() {
                    let pick = |f: &dyn Fn(&str) -> Quantity| -> Resources {
                        exceeded.iter().map(|k| ((*k).clone(), f(k))).collect()
                    };
                    return Err(a.forbidden(format!(
                        "exceeded quota: {}, requested: {}, used: {}, limited: {}",
                        s(quota, &["metadata", "name"]),
                        pretty(&pick(&|k| requested[k])),
                        pretty(&pick(&|k| used_of(k))),
                        pretty(&pick(&|k| hard[k])),
                    )));
                }
                let mut after = now.clone();
                for (k, q) in &requested {
                    add_to(&mut after, k, *q);
                }
                updates.push((quota.clone(), quota::status(quota, &[(gr(a.res), &after)])));
            }
            if a.dry_run {
                return Ok(());
            }
            let mut conflicted = false;
            for (quota, status) in updates {
                match Self::write_status(reg, &quota, status).await {
                    Ok(()) => {}
                    Err(e) if e.code == 409 => conflicted = true,
                    Err(e) if e.code == 404 => {}
                    Err(e) => return Err(e),
                }
            }
            if !conflicted {
                return Ok(());
            }
        }
        Err(a.forbidden(format!(
            "unable to {} {} at this time because there was an error enforcing quota",
            a.operation.as_str().to_lowercase(),
            a.resource()
        )))
    }

    /// After a quota is written (its limits may have changed) or a charged object deleted:
    /// the quotas' usage counted afresh.
    async fn recompute(
        &self,
        reg: &Registry,
        a: &Attributes<'_>,
        obj: Option<&Value>,
    ) -> Result<(), ApiError> {
        let Some(ns) = a.namespace else {
            return Ok(());
        };
        if !a.subresource.is_empty() {
            return Ok(());
        }
        let quota_res = served(reg, "", "v1", "resourcequotas")?;
        let is_quota = a.res.group.is_empty() && a.res.plural == "resourcequotas";
        if is_quota {
            self.index.note(&format!("{ns}/{}", a.name), obj.is_some());
            let Some(quota) = obj else {
                return Ok(());
            };
            let hard = resources(at(quota, &["spec", "hard"]));
            let mut counted: Vec<(Res, Resources)> = Vec::new();
            for key in hard.keys() {
                if counted.iter().any(|(r, _)| owns(r, key)) {
                    continue;
                }
                if let Some(res) = owner_of(reg.resources(), key) {
                    let u = Self::recount(reg, &res, ns, quota).await?;
                    counted.push((res, u));
                }
            }
            let refs: Vec<(GroupResource<'_>, &Resources)> =
                counted.iter().map(|(r, u)| (gr(r), u)).collect();
            let status = quota::status(quota, &refs);
            return match Self::write_status(reg, quota, status).await {
                Err(e) if e.code == 409 || e.code == 404 => Ok(()),
                other => other,
            };
        }
        if a.operation != Operation::Delete || self.index.any_in(reg, ns).await == Some(false) {
            return Ok(());
        }
        let quotas = list_items(reg, &quota_res, Some(ns)).await?;
        let relevant: Vec<&Value> = quotas
            .iter()
            .filter(|q| {
                resources(at(q, &["spec", "hard"]))
                    .keys()
                    .any(|k| owns(a.res, k))
            })
            .collect();
        if relevant.is_empty() {
            return Ok(());
        }
        for quota in relevant {
            let now = Self::recount(reg, a.res, ns, quota).await?;
            let status = quota::status(quota, &[(gr(a.res), &now)]);
            match Self::write_status(reg, quota, status).await {
                Err(e) if e.code == 409 || e.code == 404 => {}
                other => other?,
            }
        }
        Ok(())
    }
}

/// The served resource whose objects a quota name counts.
fn owner_of(resources: &Catalogue, key: &str) -> Option<Res> {
    let (group, plural) = quota::owner_of(key)?;
    rudder_api::catalogue::RESOURCES
        .iter()
        .find(|rt| rt.group == group && rt.plural == plural)
        .and_then(|rt| resources.resolve(rt.group, rt.version, rt.plural))
        .map(|s| s.res)
}

impl Plugin for ResourceQuota {
    fn validate<'a>(
        &'a self,
        reg: &'a Registry,
        a: &'a Attributes<'a>,
        obj: &'a Value,
    ) -> Done<'a> {
        self.check(reg, a, obj).boxed()
    }

    fn written<'a>(
        &'a self,
        reg: &'a Registry,
        a: &'a Attributes<'a>,
        obj: Option<&'a Value>,
    ) -> Done<'a> {
        self.recompute(reg, a, obj).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        Quantity::parse(s).unwrap()
    }

    fn catalogue() -> Catalogue {
        Catalogue::built_in(|_| None)
    }

    fn res(plural: &str) -> Res {
        catalogue().resolve("", "v1", plural).unwrap().res
    }

    #[test]
    fn tolerations_are_added_unless_tolerated() {
        let mut pod = json!({"spec": {"containers": []}});
        add_default_tolerations(&mut pod, 30, 60);
        assert_eq!(
            pod["spec"]["tolerations"],
            json!([
                {"key": NOT_READY, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 30},
                {"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60},
            ])
        );
        let mut all = json!({"spec": {"tolerations": [{"operator": "Exists"}]}});
        add_default_tolerations(&mut all, 30, 60);
        assert_eq!(all["spec"]["tolerations"], json!([{"operator": "Exists"}]));
        let mut one = json!({"spec": {"tolerations": [{"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute"}]}});
        add_default_tolerations(&mut one, 1, 2);
        assert_eq!(one["spec"]["tolerations"][1]["key"], NOT_READY);
        assert_eq!(one["spec"]["tolerations"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn not_ready_taint_once() {
        let mut node = json!({"metadata": {"name": "n"}});
        add_not_ready_taint(&mut node);
        add_not_ready_taint(&mut node);
        assert_eq!(
            node["spec"]["taints"],
            json!([{"key": NOT_READY, "effect": "NoSchedule"}])
        );
    }

    #[test]
    fn token_volume_and_mounts() {
        let mut pod = json!({"spec": {
            "initContainers": [{"name": "i"}],
            "containers": [{"name": "a"}, {"name": "b", "volumeMounts": [{"name": "x", "mountPath": TOKEN_MOUNT_PATH}]}],
        }});
        mount_token(&mut pod, "abcde");
        let volumes = pod["spec"]["volumes"].as_array().unwrap();
        assert_eq!(volumes.len(), 1);
        assert_eq!(volumes[0]["name"], "kube-api-access-abcde");
        assert_eq!(
            volumes[0]["projected"]["sources"][1]["configMap"]["name"],
            "kube-root-ca.crt"
        );
        assert_eq!(
            pod["spec"]["initContainers"][0]["volumeMounts"][0]["name"],
            "kube-api-access-abcde"
        );
        assert_eq!(
            pod["spec"]["containers"][0]["volumeMounts"][0]["readOnly"],
            true
        );
        assert_eq!(
            pod["spec"]["containers"][1]["volumeMounts"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        // Again: the volume is there, nothing more is added.
        mount_token(&mut pod, "zzzzz");
        assert_eq!(pod["spec"]["volumes"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn quota_names_and_owners() {
        assert!(owns(&res("pods"), "requests.cpu"));
        assert_eq!(
            owner_of(&catalogue(), "requests.storage").unwrap().plural,
            "persistentvolumeclaims"
        );
        assert_eq!(
            owner_of(&catalogue(), "count/deployments.apps")
                .unwrap()
                .plural,
            "deployments"
        );
        assert_eq!(owner_of(&catalogue(), "secrets").unwrap().plural, "secrets");
    }

    #[test]
    fn pods_must_name_what_a_quota_limits() {
        let hard: Resources = [
            ("limits.cpu".to_string(), q("2")),
            ("pods".to_string(), q("3")),
        ]
        .into();
        let pod = json!({"spec": {"containers": [{"name": "a"}, {"name": "b", "resources": {"limits": {"cpu": "1"}}}]}});
        assert_eq!(
            pod_constraints(&hard, &pod).unwrap(),
            "must specify limits.cpu for: a"
        );
    }

    #[test]
    fn limit_range_defaults_and_annotation() {
        let range = json!({"spec": {"limits": [{"type": "Container",
            "default": {"cpu": "500m", "memory": "256Mi"}, "defaultRequest": {"cpu": "100m"}}]}});
        let mut pod = json!({"metadata": {}, "spec": {"containers": [
            {"name": "a"}, {"name": "b", "resources": {"limits": {"cpu": "1"}}}]}});
        merge_defaults(&mut pod, &range);
        assert_eq!(
            pod["spec"]["containers"][0]["resources"],
            json!({
            "limits": {"cpu": "500m", "memory": "256Mi"}, "requests": {"cpu": "100m"}})
        );
        assert_eq!(
            pod["spec"]["containers"][1]["resources"]["limits"]["cpu"],
            "1"
        );
        assert_eq!(
            pod["metadata"]["annotations"][LIMIT_RANGER_ANNOTATION],
            "LimitRanger plugin set: cpu request for container a; cpu, memory limit for container a; cpu request for container b; memory limit for container b"
        );
    }

    #[test]
    fn limit_range_constraints() {
        let range = json!({"spec": {"limits": [{"type": "Container",
            "min": {"cpu": "100m"}, "max": {"cpu": "1"}, "maxLimitRequestRatio": {"cpu": "2"}}]}});
        let pod = |req: &str, lim: &str| {
            json!({"spec": {"containers": [{"name": "a",
            "resources": {"requests": {"cpu": req}, "limits": {"cpu": lim}}}]}})
        };
        assert!(limit_violations(&range, &pod("500m", "1"), true).is_empty());
        assert_eq!(
            limit_violations(&range, &pod("50m", "2"), true),
            vec![
                "minimum cpu usage per Container is 100m, but request is 50m",
                "maximum cpu usage per Container is 1, but limit is 2",
                "cpu max limit to request ratio per Container is 2, but provided ratio is 40.000000",
            ]
        );
        let claims = json!({"spec": {"limits": [{"type": "PersistentVolumeClaim", "max": {"storage": "1Gi"}}]}});
        let pvc = json!({"spec": {"resources": {"requests": {"storage": "2Gi"}}}});
        assert_eq!(
            aggregate(&limit_violations(&claims, &pvc, false)),
            "maximum storage usage per PersistentVolumeClaim is 1Gi, but request is 2Gi"
        );
        assert_eq!(aggregate(&["a".into(), "b".into()]), "[a, b]");
    }

    #[test]
    fn indexes_watch_where_the_objects_are() {
        assert_eq!(res("limitranges").prefix, "/registry/limitranges/");
        assert_eq!(res("resourcequotas").prefix, "/registry/resourcequotas/");
        assert_eq!(res("namespaces").prefix, NAMESPACES_PREFIX);
    }

    #[test]
    fn forbidden_messages_name_the_resource() {
        let e = forbidden("scheduling.k8s.io", "priorityclasses", "x", "no");
        assert_eq!(
            e.message,
            "priorityclasses.scheduling.k8s.io \"x\" is forbidden: no"
        );
        assert_eq!(e.code, 403);
        assert_eq!(
            forbidden("", "pods", "", "no").message,
            "pods is forbidden: no"
        );
    }
}
