//! The resource table: every group/version/resource the API server serves, as static data.
//!
//! One row per served (group, version, resource). Rows that share a [`Storage`] are one stored
//! object served under several versions: `autoscaling/v1` and `autoscaling/v2`
//! HorizontalPodAutoscalers are one object stored as `autoscaling/v2`; core `v1` Events and
//! `events.k8s.io/v1` Events are one object stored as core `v1`. The registry converts between
//! the served version and the storage version; discovery reports the same storage version hash
//! for every row of one storage.
//!
//! The verbs, short names, categories, singular names and subresources are what an upstream
//! Kubernetes 1.33 API server reports in discovery for the same resources (kubectl relies on
//! them: `kubectl get po`, `kubectl get all`, `kubectl scale`, `kubectl drain`). Verbs are kept
//! in the order discovery prints them (sorted).
//!
//! Group order ([`API_GROUPS`]) is upstream's `/apis` order (by group priority), and each
//! group's versions are listed preferred first (`autoscaling` prefers `v2`).

use std::fmt;

use serde::{Deserialize, Serialize};

/// An API verb as discovery and authorization name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Verb {
    Create,
    Delete,
    DeleteCollection,
    Get,
    List,
    Patch,
    Update,
    Watch,
}

impl Verb {
    /// The lower-case name used in discovery documents and RBAC rules.
    pub const fn as_str(self) -> &'static str {
        match self {
            Verb::Create => "create",
            Verb::Delete => "delete",
            Verb::DeleteCollection => "deletecollection",
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Patch => "patch",
            Verb::Update => "update",
            Verb::Watch => "watch",
        }
    }
}

impl fmt::Display for Verb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether objects of a resource live in a namespace. Serializes as aggregated discovery's
/// `scope` (`"Namespaced"` / `"Cluster"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Scope {
    Namespaced,
    Cluster,
}

impl Scope {
    /// The spelling used by aggregated discovery (`scope`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Scope::Namespaced => "Namespaced",
            Scope::Cluster => "Cluster",
        }
    }
}

/// An API group and version; the core group is `""`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GroupVersion {
    pub group: &'static str,
    pub version: &'static str,
}

impl GroupVersion {
    /// `v1` for the core group, `apps/v1` otherwise (the `apiVersion` field of objects).
    pub fn api_version(&self) -> String {
        api_version(self.group, self.version)
    }
}

/// `apiVersion` spelling for a group and version: `v1` for core, `group/version` otherwise.
pub fn api_version(group: &str, version: &str) -> String {
    if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    }
}

/// A subresource of a resource (`pods/status`, `deployments/scale`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Subresource {
    /// The path segment after the object name: `status`, `scale`, `eviction`, ...
    pub name: &'static str,
    /// Kind of the object the subresource accepts or returns (`Scale`, `Eviction`, `Pod`, ...).
    pub kind: &'static str,
    /// Group/version of that object when it is not the parent's own group/version
    /// (`autoscaling/v1` for `Scale`, `policy/v1` for `Eviction`); `None` means the parent's.
    pub object_group_version: Option<GroupVersion>,
    pub verbs: &'static [Verb],
    /// For a subresource served as its parent object whose writes may change only one field
    /// of it (`pods/ephemeralcontainers`: `spec.ephemeralContainers`), that field's path.
    pub writes: Option<&'static [&'static str]>,
}

impl Subresource {
    pub fn supports(&self, verb: Verb) -> bool {
        self.verbs.contains(&verb)
    }
}

/// Where and how objects of a resource are kept. Rows with equal `group` and `resource` are
/// the same stored objects, whatever version they are served in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Storage {
    /// Group of the stored representation (`""` for core).
    pub group: &'static str,
    /// Resource name the objects are stored under (`/registry/<resource>/...`).
    pub resource: &'static str,
    /// Version the objects are encoded in at rest.
    pub version: &'static str,
    /// Kind of the stored representation.
    pub kind: &'static str,
    /// Legacy discovery's `storageVersionHash`: standard base64 of the first 8 bytes of
    /// SHA-256 over `"<group>/<version>/<kind>"` of the storage version (core group empty, so
    /// `"/v1/Pod"`). Changes whenever the storage version changes.
    pub version_hash: &'static str,
}

impl Storage {
    /// Key prefix in the store: `/registry/<resource>` (DESIGN.md: keys follow Kubernetes,
    /// `/registry/<resource>/<namespace>/<name>`). Shared by every row of this storage.
    pub fn key_prefix(&self) -> String {
        format!("/registry/{}", self.resource)
    }
}

/// One served (group, version, resource).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResourceType {
    /// API group, `""` for core.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    /// Resource name used in URLs (`pods`).
    pub plural: &'static str,
    /// Singular resource name (`pod`; `endpoints` for Endpoints).
    pub singular: &'static str,
    pub scope: Scope,
    pub verbs: &'static [Verb],
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    /// Sorted by name.
    pub subresources: &'static [Subresource],
    /// `None` for resources that are never stored (review requests answered in place).
    pub storage: Option<Storage>,
}

impl ResourceType {
    pub fn group_version(&self) -> GroupVersion {
        GroupVersion {
            group: self.group,
            version: self.version,
        }
    }

    /// `apiVersion` of objects served through this row (`v1`, `apps/v1`).
    pub fn api_version(&self) -> String {
        api_version(self.group, self.version)
    }

    /// Kind of the list type (`PodList`).
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    pub fn namespaced(&self) -> bool {
        self.scope == Scope::Namespaced
    }

    pub fn supports(&self, verb: Verb) -> bool {
        self.verbs.contains(&verb)
    }

    pub fn subresource(&self, name: &str) -> Option<&'static Subresource> {
        self.subresources.iter().find(|s| s.name == name)
    }

    /// Whether `other` is the same stored object served in another (or the same) version.
    pub fn shares_storage_with(&self, other: &ResourceType) -> bool {
        match (self.storage, other.storage) {
            (Some(a), Some(b)) => a.group == b.group && a.resource == b.resource,
            _ => false,
        }
    }
}

/// An API group under `/apis` with its served versions, preferred first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApiGroup {
    pub name: &'static str,
    pub versions: &'static [&'static str],
}

impl ApiGroup {
    pub fn preferred_version(&self) -> &'static str {
        // Every group in the tables has at least one version (checked by tests).
        self.versions.first().copied().unwrap_or("v1")
    }
}

/// The core ("legacy") group served under `/api`.
pub const CORE_GROUP: ApiGroup = ApiGroup {
    name: "",
    versions: &["v1"],
};

/// Groups served under `/apis`, in upstream's `/apis` order (descending group priority:
/// apiregistration.k8s.io first (the aggregator gives itself 20001), apps 17800, events.k8s.io 17750, authentication 17700, authorization 17600, autoscaling
/// 17500, batch 17400, networking 17200, policy 17100, rbac 17000, storage 16800, scheduling
/// 16600, coordination 16500, discovery 16200, metrics 100 as metrics-server registers it).
/// Versions are preferred first.
pub static API_GROUPS: &[ApiGroup] = &[
    ApiGroup {
        name: "apiregistration.k8s.io",
        versions: &["v1"],
    },
    ApiGroup {
        name: "apps",
        versions: &["v1"],
    },
    ApiGroup {
        name: "events.k8s.io",
        versions: &["v1"],
    },
    ApiGroup {
        name: "authentication.k8s.io",
        versions: &["v1", "v1beta1"],
    },
    ApiGroup {
        name: "authorization.k8s.io",
        versions: &["v1"],
    },
    ApiGroup {
        name: "autoscaling",
        versions: &["v2", "v1"],
    },
    ApiGroup {
        name: "batch",
        versions: &["v1"],
    },
    ApiGroup {
        name: "networking.k8s.io",
        versions: &["v1"],
    },
    ApiGroup {
        name: "policy",
        versions: &["v1"],
    },
    ApiGroup {
        name: "rbac.authorization.k8s.io",
        versions: &["v1"],
    },
    ApiGroup {
        name: "storage.k8s.io",
        versions: &["v1"],
    },
    ApiGroup {
        name: "scheduling.k8s.io",
        versions: &["v1"],
    },
    ApiGroup {
        name: "coordination.k8s.io",
        versions: &["v1"],
    },
    ApiGroup {
        name: "discovery.k8s.io",
        versions: &["v1"],
    },
    ApiGroup {
        name: "metrics.k8s.io",
        versions: &["v1beta1"],
    },
];

/// The `groupPriorityMinimum` and `versionPriority` of the APIService upstream's aggregator
/// registers for a built-in group/version (kube-apiserver's `apiVersionPriorities` merged over
/// the generic API server's defaults).
pub fn api_service_priority(group: &str, version: &str) -> Option<(i32, i32)> {
    Some(match (group, version) {
        ("", "v1") => (18000, 1),
        ("apiregistration.k8s.io", "v1") => (18000, 15),
        ("apps", "v1") => (17800, 15),
        ("events.k8s.io", "v1") => (17750, 15),
        ("authentication.k8s.io", "v1") => (17700, 15),
        ("authentication.k8s.io", "v1beta1") => (17700, 9),
        ("authorization.k8s.io", "v1") => (17600, 15),
        ("autoscaling", "v2") => (17500, 30),
        ("autoscaling", "v1") => (17500, 15),
        ("batch", "v1") => (17400, 15),
        ("networking.k8s.io", "v1") => (17200, 15),
        ("policy", "v1") => (17100, 15),
        ("rbac.authorization.k8s.io", "v1") => (17000, 15),
        ("storage.k8s.io", "v1") => (16800, 15),
        ("scheduling.k8s.io", "v1") => (16600, 15),
        ("coordination.k8s.io", "v1") => (16500, 15),
        ("discovery.k8s.io", "v1") => (16200, 15),
        // What metrics-server's APIService asks for.
        ("metrics.k8s.io", "v1beta1") => (100, 100),
        _ => return None,
    })
}

/// The group named `name`: [`CORE_GROUP`] for `""`, else one of [`API_GROUPS`].
pub fn api_group(name: &str) -> Option<&'static ApiGroup> {
    if name.is_empty() {
        return Some(&CORE_GROUP);
    }
    API_GROUPS.iter().find(|g| g.name == name)
}

/// Whether `group`/`version` is served.
pub fn serves_group_version(group: &str, version: &str) -> bool {
    api_group(group).is_some_and(|g| g.versions.contains(&version))
}

/// The row for `/api[s]/<group>/<version>/<plural>`.
pub fn lookup(group: &str, version: &str, plural: &str) -> Option<&'static ResourceType> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The row serving `kind` in exactly `group`/`version` (e.g. from an object's `apiVersion`).
pub fn lookup_kind(group: &str, version: &str, kind: &str) -> Option<&'static ResourceType> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.kind == kind)
}

/// The row serving `kind` of `group` in the group's preferred version (falling back to the
/// first served version that has the kind).
pub fn lookup_group_kind(group: &str, kind: &str) -> Option<&'static ResourceType> {
    let mut rows = RESOURCES
        .iter()
        .filter(|r| r.group == group && r.kind == kind);
    let first = rows.next()?;
    let preferred = api_group(group).map(ApiGroup::preferred_version);
    if Some(first.version) == preferred {
        return Some(first);
    }
    Some(rows.find(|r| Some(r.version) == preferred).unwrap_or(first))
}

/// Rows served in `group`/`version`, in table order.
pub fn resources_in<'a>(
    group: &'a str,
    version: &'a str,
) -> impl Iterator<Item = &'static ResourceType> + 'a {
    RESOURCES
        .iter()
        .filter(move |r| r.group == group && r.version == version)
}

/// Every row that serves the same stored objects as `row` (including `row`).
pub fn same_storage(row: &ResourceType) -> impl Iterator<Item = &'static ResourceType> + '_ {
    RESOURCES.iter().filter(move |r| r.shares_storage_with(row))
}

// ---------------------------------------------------------------------------------------------
// Table construction helpers (const, so the table is plain static data).

use Verb::{Create, Delete, DeleteCollection, Get, List, Patch, Update, Watch};

const ALL_VERBS: &[Verb] = &[
    Create,
    Delete,
    DeleteCollection,
    Get,
    List,
    Patch,
    Update,
    Watch,
];
/// Namespaces: no deletecollection.
const NO_DELETECOLLECTION: &[Verb] = &[Create, Delete, Get, List, Patch, Update, Watch];
const CREATE_ONLY: &[Verb] = &[Create];
const GET_LIST: &[Verb] = &[Get, List];
const UPDATE_ONLY: &[Verb] = &[Update];
const GET_PATCH_UPDATE: &[Verb] = &[Get, Patch, Update];
/// Streaming (connect) subresources: GET and POST upgrade.
const CREATE_GET: &[Verb] = &[Create, Get];
const GET_ONLY: &[Verb] = &[Get];

const AUTOSCALING_V1: GroupVersion = GroupVersion {
    group: "autoscaling",
    version: "v1",
};
const POLICY_V1: GroupVersion = GroupVersion {
    group: "policy",
    version: "v1",
};

const fn sub(name: &'static str, kind: &'static str, verbs: &'static [Verb]) -> Subresource {
    Subresource {
        name,
        kind,
        object_group_version: None,
        verbs,
        writes: None,
    }
}

const fn status(kind: &'static str) -> Subresource {
    sub("status", kind, GET_PATCH_UPDATE)
}

const SCALE: Subresource = Subresource {
    name: "scale",
    kind: "Scale",
    object_group_version: Some(AUTOSCALING_V1),
    verbs: GET_PATCH_UPDATE,
    writes: None,
};

const fn stored(
    group: &'static str,
    resource: &'static str,
    version: &'static str,
    kind: &'static str,
    version_hash: &'static str,
) -> Option<Storage> {
    Some(Storage {
        group,
        resource,
        version,
        kind,
        version_hash,
    })
}

/// A row with every verb, no short names, categories or subresources, stored in its own
/// group/version under its own plural; adjust with the builder methods below.
const fn row(
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    singular: &'static str,
    scope: Scope,
    version_hash: &'static str,
) -> ResourceType {
    ResourceType {
        group,
        version,
        kind,
        plural,
        singular,
        scope,
        verbs: ALL_VERBS,
        short_names: &[],
        categories: &[],
        subresources: &[],
        storage: stored(group, plural, version, kind, version_hash),
    }
}

impl ResourceType {
    const fn short(mut self, names: &'static [&'static str]) -> Self {
        self.short_names = names;
        self
    }
    const fn cats(mut self, categories: &'static [&'static str]) -> Self {
        self.categories = categories;
        self
    }
    const fn subs(mut self, subresources: &'static [Subresource]) -> Self {
        self.subresources = subresources;
        self
    }
    const fn with_verbs(mut self, verbs: &'static [Verb]) -> Self {
        self.verbs = verbs;
        self
    }
    const fn store(mut self, storage: Option<Storage>) -> Self {
        self.storage = storage;
        self
    }
}

const NS: Scope = Scope::Namespaced;
const CLUSTER: Scope = Scope::Cluster;
const ALL: &[&str] = &["all"];

/// Core v1 Events; also served as `events.k8s.io/v1`.
const EVENT_STORAGE: Option<Storage> = stored("", "events", "v1", "Event", "r2yiGXH7wu8=");
/// HorizontalPodAutoscalers are stored as `autoscaling/v2` and also served as `autoscaling/v1`.
const HPA_STORAGE: Option<Storage> = stored(
    "autoscaling",
    "horizontalpodautoscalers",
    "v2",
    "HorizontalPodAutoscaler",
    "qwQve8ut294=",
);

const HPA_V2: ResourceType = row(
    "autoscaling",
    "v2",
    "HorizontalPodAutoscaler",
    "horizontalpodautoscalers",
    "horizontalpodautoscaler",
    NS,
    "qwQve8ut294=",
)
.short(&["hpa"])
.cats(ALL)
.subs(&[status("HorizontalPodAutoscaler")])
.store(HPA_STORAGE);

/// Every served (group, version, resource). Within a group/version, rows are sorted by plural.
pub static RESOURCES: &[ResourceType] = &[
    // ---- core/v1 ----------------------------------------------------------------------------
    row(
        "",
        "v1",
        "ConfigMap",
        "configmaps",
        "configmap",
        NS,
        "qFsyl6wFWjQ=",
    )
    .short(&["cm"]),
    row(
        "",
        "v1",
        "Endpoints",
        "endpoints",
        "endpoints",
        NS,
        "fWeeMqaN/OA=",
    )
    .short(&["ep"]),
    row("", "v1", "Event", "events", "event", NS, "r2yiGXH7wu8=")
        .short(&["ev"])
        .store(EVENT_STORAGE),
    row(
        "",
        "v1",
        "LimitRange",
        "limitranges",
        "limitrange",
        NS,
        "EBKMFVe6cwo=",
    )
    .short(&["limits"]),
    row(
        "",
        "v1",
        "Namespace",
        "namespaces",
        "namespace",
        CLUSTER,
        "Q3oi5N2YM8M=",
    )
    .short(&["ns"])
    .with_verbs(NO_DELETECOLLECTION)
    .subs(&[
        sub("finalize", "Namespace", UPDATE_ONLY),
        status("Namespace"),
    ]),
    row("", "v1", "Node", "nodes", "node", CLUSTER, "XwShjMxG9Fs=")
        .short(&["no"])
        .subs(&[status("Node")]),
    row(
        "",
        "v1",
        "PersistentVolumeClaim",
        "persistentvolumeclaims",
        "persistentvolumeclaim",
        NS,
        "QWTyNDq0dC4=",
    )
    .short(&["pvc"])
    .subs(&[status("PersistentVolumeClaim")]),
    row(
        "",
        "v1",
        "PersistentVolume",
        "persistentvolumes",
        "persistentvolume",
        CLUSTER,
        "HN/zwEC+JgM=",
    )
    .short(&["pv"])
    .subs(&[status("PersistentVolume")]),
    row("", "v1", "Pod", "pods", "pod", NS, "xPOwRZ+Yhw8=")
        .short(&["po"])
        .cats(ALL)
        .subs(&[
            sub("attach", "PodAttachOptions", CREATE_GET),
            sub("binding", "Binding", CREATE_ONLY),
            Subresource {
                writes: Some(&["spec", "ephemeralContainers"]),
                ..sub("ephemeralcontainers", "Pod", GET_PATCH_UPDATE)
            },
            Subresource {
                object_group_version: Some(POLICY_V1),
                ..sub("eviction", "Eviction", CREATE_ONLY)
            },
            sub("exec", "PodExecOptions", CREATE_GET),
            sub("log", "Pod", GET_ONLY),
            sub("portforward", "PodPortForwardOptions", CREATE_GET),
            status("Pod"),
        ]),
    row(
        "",
        "v1",
        "PodTemplate",
        "podtemplates",
        "podtemplate",
        NS,
        "LIXB2x4IFpk=",
    ),
    row(
        "",
        "v1",
        "ReplicationController",
        "replicationcontrollers",
        "replicationcontroller",
        NS,
        "Jond2If31h0=",
    )
    .short(&["rc"])
    .cats(ALL)
    .subs(&[SCALE, status("ReplicationController")]),
    row(
        "",
        "v1",
        "ResourceQuota",
        "resourcequotas",
        "resourcequota",
        NS,
        "8uhSgffRX6w=",
    )
    .short(&["quota"])
    .subs(&[status("ResourceQuota")]),
    row("", "v1", "Secret", "secrets", "secret", NS, "S6u1pOWzb84="),
    row(
        "",
        "v1",
        "ServiceAccount",
        "serviceaccounts",
        "serviceaccount",
        NS,
        "pbx9ZvyFpBE=",
    )
    .short(&["sa"]),
    row(
        "",
        "v1",
        "Service",
        "services",
        "service",
        NS,
        "0/CO1lhkEBI=",
    )
    .short(&["svc"])
    .cats(ALL)
    .subs(&[status("Service")]),
    // ---- apiregistration.k8s.io/v1 ----------------------------------------------------------
    // APIServices: one per served group/version (`v1.apps`, ...), created at start; clients
    // (the Python client's e2e tests, `kubectl get apiservices`, metrics-server installs) list them.
    row(
        "apiregistration.k8s.io",
        "v1",
        "APIService",
        "apiservices",
        "apiservice",
        CLUSTER,
        "InPBPD7+PqM=",
    )
    .subs(&[status("APIService")]),
    // ---- apps/v1 ----------------------------------------------------------------------------
    row(
        "apps",
        "v1",
        "ControllerRevision",
        "controllerrevisions",
        "controllerrevision",
        NS,
        "85nkx63pcBU=",
    ),
    row(
        "apps",
        "v1",
        "DaemonSet",
        "daemonsets",
        "daemonset",
        NS,
        "dd7pWHUlMKQ=",
    )
    .short(&["ds"])
    .cats(ALL)
    .subs(&[status("DaemonSet")]),
    row(
        "apps",
        "v1",
        "Deployment",
        "deployments",
        "deployment",
        NS,
        "8aSe+NMegvE=",
    )
    .short(&["deploy"])
    .cats(ALL)
    .subs(&[SCALE, status("Deployment")]),
    row(
        "apps",
        "v1",
        "ReplicaSet",
        "replicasets",
        "replicaset",
        NS,
        "P1RzHs8/mWQ=",
    )
    .short(&["rs"])
    .cats(ALL)
    .subs(&[SCALE, status("ReplicaSet")]),
    row(
        "apps",
        "v1",
        "StatefulSet",
        "statefulsets",
        "statefulset",
        NS,
        "H+vl74LkKdo=",
    )
    .short(&["sts"])
    .cats(ALL)
    .subs(&[SCALE, status("StatefulSet")]),
    // ---- events.k8s.io/v1 (same objects as core v1 events) ------------------------------------
    row(
        "events.k8s.io",
        "v1",
        "Event",
        "events",
        "event",
        NS,
        "r2yiGXH7wu8=",
    )
    .short(&["ev"])
    .store(EVENT_STORAGE),
    // ---- authentication.k8s.io/v1 -----------------------------------------------------------
    row(
        "authentication.k8s.io",
        "v1",
        "SelfSubjectReview",
        "selfsubjectreviews",
        "selfsubjectreview",
        CLUSTER,
        "",
    )
    .with_verbs(CREATE_ONLY)
    .store(None),
    // kubectl 1.27 `auth whoami` asks v1beta1 only (v1 arrived in 1.28).
    row(
        "authentication.k8s.io",
        "v1beta1",
        "SelfSubjectReview",
        "selfsubjectreviews",
        "selfsubjectreview",
        CLUSTER,
        "",
    )
    .with_verbs(CREATE_ONLY)
    .store(None),
    // ---- authorization.k8s.io/v1 ------------------------------------------------------------
    row(
        "authorization.k8s.io",
        "v1",
        "LocalSubjectAccessReview",
        "localsubjectaccessreviews",
        "localsubjectaccessreview",
        NS,
        "",
    )
    .with_verbs(CREATE_ONLY)
    .store(None),
    row(
        "authorization.k8s.io",
        "v1",
        "SelfSubjectAccessReview",
        "selfsubjectaccessreviews",
        "selfsubjectaccessreview",
        CLUSTER,
        "",
    )
    .with_verbs(CREATE_ONLY)
    .store(None),
    // `kubectl auth can-i --list`.
    row(
        "authorization.k8s.io",
        "v1",
        "SelfSubjectRulesReview",
        "selfsubjectrulesreviews",
        "selfsubjectrulesreview",
        CLUSTER,
        "",
    )
    .with_verbs(CREATE_ONLY)
    .store(None),
    row(
        "authorization.k8s.io",
        "v1",
        "SubjectAccessReview",
        "subjectaccessreviews",
        "subjectaccessreview",
        CLUSTER,
        "",
    )
    .with_verbs(CREATE_ONLY)
    .store(None),
    // ---- autoscaling/v2 and v1 (one storage, stored as v2) ----------------------------------
    HPA_V2,
    ResourceType {
        version: "v1",
        ..HPA_V2
    },
    // ---- batch/v1 ---------------------------------------------------------------------------
    row(
        "batch",
        "v1",
        "CronJob",
        "cronjobs",
        "cronjob",
        NS,
        "sd5LIXh4Fjs=",
    )
    .short(&["cj"])
    .cats(ALL)
    .subs(&[status("CronJob")]),
    row("batch", "v1", "Job", "jobs", "job", NS, "mudhfqk/qZY=")
        .cats(ALL)
        .subs(&[status("Job")]),
    // ---- networking.k8s.io/v1 ---------------------------------------------------------------
    row(
        "networking.k8s.io",
        "v1",
        "IngressClass",
        "ingressclasses",
        "ingressclass",
        CLUSTER,
        "l/iqIbDgFyQ=",
    ),
    row(
        "networking.k8s.io",
        "v1",
        "Ingress",
        "ingresses",
        "ingress",
        NS,
        "39NQlfNR+bo=",
    )
    .short(&["ing"])
    .subs(&[status("Ingress")]),
    row(
        "networking.k8s.io",
        "v1",
        "NetworkPolicy",
        "networkpolicies",
        "networkpolicy",
        NS,
        "YpfwF18m1G8=",
    )
    .short(&["netpol"]),
    // ---- policy/v1 --------------------------------------------------------------------------
    row(
        "policy",
        "v1",
        "PodDisruptionBudget",
        "poddisruptionbudgets",
        "poddisruptionbudget",
        NS,
        "EVWiDmWqyJw=",
    )
    .short(&["pdb"])
    .subs(&[status("PodDisruptionBudget")]),
    // ---- rbac.authorization.k8s.io/v1 -------------------------------------------------------
    row(
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRoleBinding",
        "clusterrolebindings",
        "clusterrolebinding",
        CLUSTER,
        "48tpQ8gZHFc=",
    ),
    row(
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRole",
        "clusterroles",
        "clusterrole",
        CLUSTER,
        "bYE5ZWDrJ44=",
    ),
    row(
        "rbac.authorization.k8s.io",
        "v1",
        "RoleBinding",
        "rolebindings",
        "rolebinding",
        NS,
        "eGsCzGH6b1g=",
    ),
    row(
        "rbac.authorization.k8s.io",
        "v1",
        "Role",
        "roles",
        "role",
        NS,
        "7FuwZcIIItM=",
    ),
    // ---- storage.k8s.io/v1 ------------------------------------------------------------------
    row(
        "storage.k8s.io",
        "v1",
        "StorageClass",
        "storageclasses",
        "storageclass",
        CLUSTER,
        "K+m6uJwbjGY=",
    )
    .short(&["sc"]),
    // ---- scheduling.k8s.io/v1 ---------------------------------------------------------------
    row(
        "scheduling.k8s.io",
        "v1",
        "PriorityClass",
        "priorityclasses",
        "priorityclass",
        CLUSTER,
        "1QwjyaZjj3Y=",
    )
    .short(&["pc"]),
    // ---- coordination.k8s.io/v1 -------------------------------------------------------------
    row(
        "coordination.k8s.io",
        "v1",
        "Lease",
        "leases",
        "lease",
        NS,
        "gqkMMb/YqFM=",
    ),
    // ---- discovery.k8s.io/v1 ----------------------------------------------------------------
    row(
        "discovery.k8s.io",
        "v1",
        "EndpointSlice",
        "endpointslices",
        "endpointslice",
        NS,
        "qgS0xkrxYAI=",
    ),
    // ---- metrics.k8s.io/v1beta1 (as metrics-server serves it; answered from the agents) --
    row(
        "metrics.k8s.io",
        "v1beta1",
        "NodeMetrics",
        "nodes",
        "",
        CLUSTER,
        "",
    )
    .with_verbs(GET_LIST)
    .store(None),
    row(
        "metrics.k8s.io",
        "v1beta1",
        "PodMetrics",
        "pods",
        "",
        NS,
        "",
    )
    .with_verbs(GET_LIST)
    .store(None),
];

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeSet, HashMap, HashSet};

    #[test]
    fn group_version_plural_is_unique() {
        let mut seen = HashSet::new();
        for r in RESOURCES {
            assert!(
                seen.insert((r.group, r.version, r.plural)),
                "duplicate row {}/{}/{}",
                r.group,
                r.version,
                r.plural
            );
        }
    }

    #[test]
    fn group_version_kind_is_unique() {
        let mut seen = HashSet::new();
        for r in RESOURCES {
            assert!(
                seen.insert((r.group, r.version, r.kind)),
                "duplicate kind {}",
                r.kind
            );
        }
    }

    #[test]
    fn short_names_are_unique_per_storage() {
        // A short name may appear in several versions of the same stored objects (`hpa` in
        // autoscaling v1 and v2, `ev` in core and events.k8s.io), never on different objects.
        let mut owner: HashMap<&str, (&str, &str)> = HashMap::new();
        for r in RESOURCES {
            let storage = r
                .storage
                .map(|s| (s.group, s.resource))
                .unwrap_or((r.group, r.plural));
            for name in r.short_names {
                let prev = owner.insert(name, storage);
                assert!(
                    prev.is_none() || prev == Some(storage),
                    "short name {name} reused"
                );
            }
        }
        // No short name shadows another resource's plural or singular name.
        for r in RESOURCES {
            for other in RESOURCES {
                if r.shares_storage_with(other) {
                    continue;
                }
                for name in r.short_names {
                    assert_ne!(*name, other.plural);
                    assert_ne!(*name, other.singular);
                }
            }
        }
    }

    #[test]
    fn expected_short_names() {
        let expect = [
            ("", "pods", "po"),
            ("", "services", "svc"),
            ("apps", "deployments", "deploy"),
            ("apps", "replicasets", "rs"),
            ("apps", "statefulsets", "sts"),
            ("apps", "daemonsets", "ds"),
            ("", "configmaps", "cm"),
            ("", "namespaces", "ns"),
            ("", "nodes", "no"),
            ("", "events", "ev"),
            ("events.k8s.io", "events", "ev"),
            ("", "serviceaccounts", "sa"),
            ("", "persistentvolumes", "pv"),
            ("", "persistentvolumeclaims", "pvc"),
            ("", "resourcequotas", "quota"),
            ("", "limitranges", "limits"),
            ("", "replicationcontrollers", "rc"),
            ("", "endpoints", "ep"),
            ("autoscaling", "horizontalpodautoscalers", "hpa"),
            ("networking.k8s.io", "ingresses", "ing"),
            ("networking.k8s.io", "networkpolicies", "netpol"),
            ("policy", "poddisruptionbudgets", "pdb"),
            ("scheduling.k8s.io", "priorityclasses", "pc"),
            ("storage.k8s.io", "storageclasses", "sc"),
            ("batch", "cronjobs", "cj"),
        ];
        for (group, plural, short) in expect {
            let rows: Vec<_> = RESOURCES
                .iter()
                .filter(|r| r.group == group && r.plural == plural)
                .collect();
            assert!(!rows.is_empty(), "{group}/{plural} missing");
            for r in rows {
                assert_eq!(r.short_names, &[short], "{group}/{}/{plural}", r.version);
            }
        }
    }

    #[test]
    fn category_all_is_exactly_upstreams_set() {
        let all: BTreeSet<(&str, &str)> = RESOURCES
            .iter()
            .filter(|r| r.categories.contains(&"all"))
            .map(|r| (r.group, r.plural))
            .collect();
        let expect: BTreeSet<(&str, &str)> = [
            ("", "pods"),
            ("", "services"),
            ("", "replicationcontrollers"),
            ("apps", "deployments"),
            ("apps", "replicasets"),
            ("apps", "statefulsets"),
            ("apps", "daemonsets"),
            ("batch", "jobs"),
            ("batch", "cronjobs"),
            ("autoscaling", "horizontalpodautoscalers"),
        ]
        .into_iter()
        .collect();
        assert_eq!(all, expect);
        // No other category is served by these resources.
        for r in RESOURCES {
            for c in r.categories {
                assert_eq!(*c, "all", "{}", r.plural);
            }
        }
    }

    #[test]
    fn verbs_are_sorted_and_unique() {
        for r in RESOURCES {
            assert!(
                r.verbs.windows(2).all(|w| w[0].as_str() < w[1].as_str()),
                "{}",
                r.plural
            );
            for s in r.subresources {
                assert!(s.verbs.windows(2).all(|w| w[0].as_str() < w[1].as_str()));
            }
            assert!(
                r.subresources.windows(2).all(|w| w[0].name < w[1].name),
                "{} subresources unsorted",
                r.plural
            );
        }
    }

    #[test]
    fn rows_are_sorted_within_group_version_and_groups_are_known() {
        for r in RESOURCES {
            assert!(
                serves_group_version(r.group, r.version),
                "{}/{}",
                r.group,
                r.version
            );
        }
        for g in std::iter::once(&CORE_GROUP).chain(API_GROUPS) {
            assert!(!g.versions.is_empty());
            for v in g.versions {
                let plurals: Vec<_> = resources_in(g.name, v).map(|r| r.plural).collect();
                assert!(!plurals.is_empty(), "{}/{v} serves nothing", g.name);
                assert!(
                    plurals.windows(2).all(|w| w[0] < w[1]),
                    "{}/{v} unsorted",
                    g.name
                );
            }
        }
        let names: Vec<_> = API_GROUPS.iter().map(|g| g.name).collect();
        let unique: HashSet<_> = names.iter().collect();
        assert_eq!(unique.len(), names.len());
        assert_eq!(
            api_group("autoscaling").map(ApiGroup::preferred_version),
            Some("v2")
        );
    }

    #[test]
    fn shared_storage_is_consistent() {
        for r in RESOURCES {
            let Some(s) = r.storage else { continue };
            // The storage version is itself a served row of the same objects.
            let home = lookup(s.group, s.version, s.resource).expect("storage row served");
            assert_eq!(home.kind, s.kind);
            assert_eq!(home.storage, Some(s));
            for other in same_storage(r) {
                assert_eq!(other.storage, Some(s));
                assert_eq!(other.kind, r.kind);
                assert_eq!(other.scope, r.scope);
                assert_eq!(other.plural, r.plural);
            }
        }
        let hpa_v1 = lookup("autoscaling", "v1", "horizontalpodautoscalers").unwrap();
        let hpa_v2 = lookup("autoscaling", "v2", "horizontalpodautoscalers").unwrap();
        assert!(hpa_v1.shares_storage_with(hpa_v2));
        assert_eq!(hpa_v1.storage.map(|s| s.version), Some("v2"));
        let core_ev = lookup("", "v1", "events").unwrap();
        let ev = lookup("events.k8s.io", "v1", "events").unwrap();
        assert!(core_ev.shares_storage_with(ev));
        assert_eq!(
            ev.storage.map(|s| s.key_prefix()),
            Some("/registry/events".to_string())
        );
        assert_eq!(same_storage(core_ev).count(), 2);
        let pods = lookup("", "v1", "pods").unwrap();
        assert_eq!(same_storage(pods).count(), 1);
        // Distinct storages never share a key prefix.
        let mut prefixes: HashMap<String, (&str, &str)> = HashMap::new();
        for r in RESOURCES {
            if let Some(s) = r.storage {
                let prev = prefixes.insert(s.key_prefix(), (s.group, s.resource));
                assert!(prev.is_none() || prev == Some((s.group, s.resource)));
            }
        }
    }

    #[test]
    fn review_resources_are_create_only_and_unstored() {
        for (group, plural, scope) in [
            (
                "authorization.k8s.io",
                "localsubjectaccessreviews",
                Scope::Namespaced,
            ),
            (
                "authorization.k8s.io",
                "selfsubjectaccessreviews",
                Scope::Cluster,
            ),
            (
                "authorization.k8s.io",
                "selfsubjectrulesreviews",
                Scope::Cluster,
            ),
            (
                "authorization.k8s.io",
                "subjectaccessreviews",
                Scope::Cluster,
            ),
            (
                "authentication.k8s.io",
                "selfsubjectreviews",
                Scope::Cluster,
            ),
        ] {
            let r = lookup(group, "v1", plural).unwrap();
            assert_eq!(r.verbs, &[Verb::Create]);
            assert_eq!(r.scope, scope);
            assert!(r.storage.is_none());
        }
    }

    #[test]
    fn subresources_as_upstream() {
        let pods = lookup("", "v1", "pods").unwrap();
        let names: Vec<_> = pods.subresources.iter().map(|s| s.name).collect();
        assert_eq!(
            names,
            [
                "attach",
                "binding",
                "ephemeralcontainers",
                "eviction",
                "exec",
                "log",
                "portforward",
                "status"
            ]
        );
        let eviction = pods.subresource("eviction").unwrap();
        assert_eq!(eviction.kind, "Eviction");
        assert_eq!(eviction.object_group_version, Some(POLICY_V1));
        let binding = pods.subresource("binding").unwrap();
        assert_eq!(
            (binding.kind, binding.object_group_version),
            ("Binding", None)
        );
        assert_eq!(pods.subresource("log").unwrap().verbs, &[Verb::Get]);
        for (group, plural) in [
            ("apps", "deployments"),
            ("apps", "replicasets"),
            ("apps", "statefulsets"),
            ("", "replicationcontrollers"),
        ] {
            let r = lookup(group, "v1", plural).unwrap();
            let scale = r.subresource("scale").expect("scale");
            assert_eq!(scale.kind, "Scale");
            assert_eq!(scale.object_group_version, Some(AUTOSCALING_V1));
            assert!(r.subresource("status").is_some());
        }
        let with_status = [
            ("", "v1", "services"),
            ("", "v1", "nodes"),
            ("", "v1", "persistentvolumes"),
            ("", "v1", "persistentvolumeclaims"),
            ("", "v1", "resourcequotas"),
            ("apps", "v1", "daemonsets"),
            ("batch", "v1", "jobs"),
            ("batch", "v1", "cronjobs"),
            ("autoscaling", "v1", "horizontalpodautoscalers"),
            ("autoscaling", "v2", "horizontalpodautoscalers"),
            ("networking.k8s.io", "v1", "ingresses"),
            ("policy", "v1", "poddisruptionbudgets"),
        ];
        for (g, v, p) in with_status {
            let s = lookup(g, v, p).unwrap().subresource("status").expect(p);
            assert_eq!(s.verbs, GET_PATCH_UPDATE);
            assert_eq!(s.object_group_version, None);
        }
        assert!(!lookup("", "v1", "namespaces")
            .unwrap()
            .supports(Verb::DeleteCollection));
        assert!(lookup("", "v1", "services")
            .unwrap()
            .supports(Verb::DeleteCollection));
    }

    #[test]
    fn lookups() {
        assert_eq!(
            lookup("apps", "v1", "deployments").map(|r| r.kind),
            Some("Deployment")
        );
        assert!(lookup("apps", "v2", "deployments").is_none());
        assert!(lookup("", "v1", "po").is_none());
        assert_eq!(lookup_kind("", "v1", "Pod").map(|r| r.plural), Some("pods"));
        assert_eq!(
            lookup_group_kind("autoscaling", "HorizontalPodAutoscaler").map(|r| r.version),
            Some("v2")
        );
        assert_eq!(
            lookup_group_kind("apps", "Deployment").map(|r| r.plural),
            Some("deployments")
        );
        assert_eq!(
            lookup_group_kind("events.k8s.io", "Event").map(|r| r.group),
            Some("events.k8s.io")
        );
        assert!(lookup_group_kind("apps", "Pod").is_none());
        let pods = lookup("", "v1", "pods").unwrap();
        assert_eq!(pods.api_version(), "v1");
        assert_eq!(pods.list_kind(), "PodList");
        assert_eq!(
            lookup("apps", "v1", "deployments").unwrap().api_version(),
            "apps/v1"
        );
        assert!(serves_group_version("autoscaling", "v1"));
        assert!(!serves_group_version("autoscaling", "v2beta2"));
        assert!(api_group("").is_some());
        assert!(api_group("extensions").is_none());
        // Every served group/version has its APIService priorities.
        for g in std::iter::once(&CORE_GROUP).chain(API_GROUPS) {
            for v in g.versions {
                assert!(api_service_priority(g.name, v).is_some(), "{}/{v}", g.name);
            }
        }
    }

    #[test]
    fn covers_exactly_the_issue_resources() {
        let served: BTreeSet<String> = RESOURCES
            .iter()
            .map(|r| format!("{}/{}", r.api_version(), r.plural))
            .collect();
        let expect: BTreeSet<String> = [
            "v1/namespaces",
            "v1/pods",
            "v1/services",
            "v1/endpoints",
            "v1/configmaps",
            "v1/secrets",
            "v1/nodes",
            "v1/events",
            "v1/serviceaccounts",
            "v1/persistentvolumes",
            "v1/persistentvolumeclaims",
            "v1/resourcequotas",
            "v1/limitranges",
            "v1/podtemplates",
            "v1/replicationcontrollers",
            "apps/v1/deployments",
            "apps/v1/replicasets",
            "apps/v1/statefulsets",
            "apps/v1/daemonsets",
            "apps/v1/controllerrevisions",
            "batch/v1/jobs",
            "batch/v1/cronjobs",
            "autoscaling/v1/horizontalpodautoscalers",
            "autoscaling/v2/horizontalpodautoscalers",
            "networking.k8s.io/v1/ingresses",
            "networking.k8s.io/v1/ingressclasses",
            "networking.k8s.io/v1/networkpolicies",
            "discovery.k8s.io/v1/endpointslices",
            "coordination.k8s.io/v1/leases",
            "rbac.authorization.k8s.io/v1/roles",
            "rbac.authorization.k8s.io/v1/rolebindings",
            "rbac.authorization.k8s.io/v1/clusterroles",
            "rbac.authorization.k8s.io/v1/clusterrolebindings",
            "storage.k8s.io/v1/storageclasses",
            "events.k8s.io/v1/events",
            "policy/v1/poddisruptionbudgets",
            "scheduling.k8s.io/v1/priorityclasses",
            "authorization.k8s.io/v1/selfsubjectaccessreviews",
            // `kubectl auth can-i --list` and `--as`; the others for controllers and webhooks.
            "authorization.k8s.io/v1/selfsubjectrulesreviews",
            "authorization.k8s.io/v1/subjectaccessreviews",
            "authorization.k8s.io/v1/localsubjectaccessreviews",
            "authentication.k8s.io/v1/selfsubjectreviews",
            "authentication.k8s.io/v1beta1/selfsubjectreviews",
            "apiregistration.k8s.io/v1/apiservices",
            // `kubectl top`.
            "metrics.k8s.io/v1beta1/nodes",
            "metrics.k8s.io/v1beta1/pods",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        assert_eq!(served, expect);
    }
}
