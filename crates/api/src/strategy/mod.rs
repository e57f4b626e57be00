//! Strategies: what upstream's API server does to an object of a built-in kind between
//! decoding it and storing it — defaulting (the `SetDefaults_*` functions, the strategies'
//! `PrepareForCreate`/`PrepareForUpdate`, and for pods the mutations of the admission
//! plugins every cluster runs that need no other object) and validation (the kinds'
//! `Validate*` and `Validate*Update` rules), with upstream's field paths and messages,
//! because kubectl prints them to users as they are.
//!
//! Objects are Kubernetes JSON (`serde_json::Value`) in the storage version of their kind.
//! The registry calls [`prepare`] and then [`validate`], on create with `old = None` and on
//! update with the current object, after it has completed the metadata (uid; name from
//! `generateName`): a Job's selector is generated from `metadata.uid`. Both are idempotent
//! and neither touches `status` on update (the registry owns the status/main split).
//!
//! Owns: per-kind defaults, normalisation and validation. Must not touch: the metadata
//! rules every kind shares (the registry applies them), the allocation of cluster IPs and
//! node ports, anything that needs to read other objects (admission).
//!
//! Written by hand: upstream keeps these rules in Go types and hand-written Go validation;
//! no Rust crate carries them.
//!
//! Where upstream prints a Go value it cannot be matched byte for byte (a whole pod template
//! whose `field is immutable`, the `cmp.Diff` after "pod updates may not change fields"),
//! the value is printed as compact JSON and the diff as one changed field a line.

mod apps;
mod batch;
mod corev1;
mod other;
mod pod;
mod util;

pub use batch::parse_schedule;
pub(crate) use util::{base64_decode, base64_encode};

use serde_json::Value;

use crate::fields::{self, FieldSet};
use crate::printers::{self, Column};
use crate::pruned::Keep;
use crate::validation::{FieldError, NameRule};

/// What the API server does with objects of one kind beyond what every kind shares. The
/// registry holds one per served resource and calls it on every write; a kind added while
/// serving (a custom resource) brings its own.
pub trait Strategy: Send + Sync + std::fmt::Debug {
    /// Defaults and normalisation applied before validation, on create (`old = None`) and on
    /// update. Idempotent; never touches `status` on update.
    fn prepare(&self, _obj: &mut Value, _old: Option<&Value>) {}

    /// Fields [`Strategy::prepare`] sets on create as upstream's registry does, after its
    /// field manager has recorded the request (`PrepareForCreate`, allocation), as opposed
    /// to upstream's scheme defaults: a create's managed fields leave them out unless the
    /// request sets them.
    fn set_by_server(&self) -> &'static [&'static [&'static str]] {
        &[]
    }

    /// Kind-specific validation (metadata name, labels and annotations are checked by the
    /// registry). On update `old` is the current object; the errors are in upstream's order.
    fn validate(&self, _obj: &Value, _old: Option<&Value>) -> Vec<FieldError> {
        Vec::new()
    }

    /// Validation of an update through subresource `sub`, which writes one field of the
    /// object (`Subresource::writes`): `obj` is `old` with that field replaced.
    fn validate_field_update(&self, _sub: &str, _obj: &Value, _old: &Value) -> Vec<FieldError> {
        Vec::new()
    }

    /// Seconds a delete of this (stored) object waits before it is gone (upstream's
    /// `CheckGracefulDelete`); 0 goes at once.
    fn grace_period(&self, _obj: &Value, _requested: Option<i64>) -> i64 {
        0
    }

    /// Whether an object being deleted, with no finalizers and no grace period left, may go
    /// (upstream's `ShouldDeleteDuringUpdate`).
    fn may_go_when_finalized(&self, _obj: &Value) -> bool {
        true
    }

    /// The rule names of this kind follow.
    fn name_rule(&self) -> NameRule {
        NameRule::Subdomain
    }

    /// Whether the kind carries `metadata.generation`, bumped when anything but metadata and
    /// status changes.
    fn has_generation(&self) -> bool {
        false
    }

    /// Whether DELETE answers with the deleted object rather than a Status (upstream's
    /// `ReturnDeletedObject`).
    fn returns_deleted(&self) -> bool {
        false
    }

    /// The fields `fieldSelector` may name.
    fn field_selectors(&self) -> &FieldSet {
        &fields::DEFAULT
    }

    /// Table columns, wide ones included, in upstream's order.
    fn columns(&self) -> &[Column] {
        printers::DEFAULT_COLUMNS
    }

    /// One row's cells for [`Strategy::columns`]; `now` in Unix seconds for ages.
    fn cells(&self, obj: &Value, now: i64) -> Vec<Value> {
        printers::cells("", "", obj, now)
    }

    /// The row `conditions` upstream attaches, if any.
    fn row_conditions(&self, _obj: &Value) -> Option<Value> {
        None
    }

    /// What of an object [`Strategy::cells`] and [`Strategy::row_conditions`] read.
    fn row_fields(&self) -> Keep {
        Keep::All
    }
}

/// A built-in kind's strategy: its rules as plain functions and data, one entry of
/// [`BUILT_IN`] per kind.
#[derive(Clone, Copy)]
pub struct BuiltIn {
    group: &'static str,
    kind: &'static str,
    prepare: fn(&mut Value, Option<&Value>),
    validate: fn(&Value, Option<&Value>) -> Vec<FieldError>,
    validate_field: fn(&str, &Value, &Value) -> Vec<FieldError>,
    grace_period: fn(&Value, Option<i64>) -> i64,
    may_go: fn(&Value) -> bool,
    name_rule: NameRule,
    generation: bool,
    returns_deleted: bool,
    fields: &'static FieldSet,
    set_by_server: &'static [&'static [&'static str]],
}

impl std::fmt::Debug for BuiltIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BuiltIn({}/{})", self.group, self.kind)
    }
}

/// A kind with no rules of its own.
const fn kind(group: &'static str, kind: &'static str) -> BuiltIn {
    BuiltIn {
        group,
        kind,
        prepare: |_, _| {},
        validate: |_, _| Vec::new(),
        validate_field: |_, _, _| Vec::new(),
        grace_period: |_, _| 0,
        may_go: |_| true,
        name_rule: NameRule::Subdomain,
        generation: false,
        returns_deleted: false,
        fields: &fields::DEFAULT,
        set_by_server: &[],
    }
}

impl BuiltIn {
    /// The group and kind this strategy is for.
    pub fn group_kind(&self) -> (&'static str, &'static str) {
        (self.group, self.kind)
    }

    /// Objects carry `metadata.generation`.
    const fn generation(self) -> BuiltIn {
        BuiltIn {
            generation: true,
            ..self
        }
    }

    /// DELETE answers with the deleted object.
    const fn returns_deleted(self) -> BuiltIn {
        BuiltIn {
            returns_deleted: true,
            ..self
        }
    }

    const fn names(self, name_rule: NameRule) -> BuiltIn {
        BuiltIn { name_rule, ..self }
    }

    const fn fields(self, fields: &'static FieldSet) -> BuiltIn {
        BuiltIn { fields, ..self }
    }

    const fn set_by_server(self, set_by_server: &'static [&'static [&'static str]]) -> BuiltIn {
        BuiltIn {
            set_by_server,
            ..self
        }
    }

    const fn prepare(self, prepare: fn(&mut Value, Option<&Value>)) -> BuiltIn {
        BuiltIn { prepare, ..self }
    }

    const fn validate(self, validate: fn(&Value, Option<&Value>) -> Vec<FieldError>) -> BuiltIn {
        BuiltIn { validate, ..self }
    }

    const fn validate_field(
        self,
        validate_field: fn(&str, &Value, &Value) -> Vec<FieldError>,
    ) -> BuiltIn {
        BuiltIn {
            validate_field,
            ..self
        }
    }

    const fn grace(self, grace_period: fn(&Value, Option<i64>) -> i64) -> BuiltIn {
        BuiltIn {
            grace_period,
            ..self
        }
    }
}

impl Strategy for BuiltIn {
    fn prepare(&self, obj: &mut Value, old: Option<&Value>) {
        if obj.is_object() {
            (self.prepare)(obj, old)
        }
    }

    fn validate(&self, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
        // Upstream decodes the stored object with defaults too, so an object stored before a
        // default existed still compares equal where nothing changed.
        let old_defaulted = old.map(|o| {
            let mut copy = o.clone();
            Strategy::prepare(self, &mut copy, Some(o));
            copy
        });
        (self.validate)(obj, old_defaulted.as_ref())
    }

    fn validate_field_update(&self, sub: &str, obj: &Value, old: &Value) -> Vec<FieldError> {
        (self.validate_field)(sub, obj, old)
    }

    fn grace_period(&self, obj: &Value, requested: Option<i64>) -> i64 {
        (self.grace_period)(obj, requested)
    }

    fn may_go_when_finalized(&self, obj: &Value) -> bool {
        (self.may_go)(obj)
    }

    fn name_rule(&self) -> NameRule {
        self.name_rule
    }

    fn set_by_server(&self) -> &'static [&'static [&'static str]] {
        self.set_by_server
    }

    fn has_generation(&self) -> bool {
        self.generation
    }

    fn returns_deleted(&self) -> bool {
        self.returns_deleted
    }

    fn field_selectors(&self) -> &FieldSet {
        self.fields
    }

    fn columns(&self) -> &[Column] {
        printers::columns(self.group, self.kind)
    }

    fn cells(&self, obj: &Value, now: i64) -> Vec<Value> {
        printers::cells(self.group, self.kind, obj, now)
    }

    fn row_conditions(&self, obj: &Value) -> Option<Value> {
        printers::row_conditions(self.group, self.kind, obj)
    }

    fn row_fields(&self) -> Keep {
        printers::row_fields(self.group, self.kind)
    }
}

const CORE: &str = "";
const RBAC: &str = "rbac.authorization.k8s.io";
const NET: &str = "networking.k8s.io";

/// Core v1 Events; `events.k8s.io` Events are the same stored objects with other field labels.
const EVENT: BuiltIn = kind(CORE, "Event")
    .prepare(|o, _| corev1::prepare_event(o))
    .fields(&fields::EVENTS);

/// The strategy of every built-in kind, by the group and kind they are served as.
pub static BUILT_IN: &[BuiltIn] = &[
    kind(CORE, "Pod")
        .prepare(pod::prepare_pod)
        // The ServiceAccount and Priority admission plugins' part of `prepare`.
        .set_by_server(&[
            &["spec", "serviceAccountName"],
            &["spec", "serviceAccount"],
            &["spec", "priority"],
            &["spec", "preemptionPolicy"],
        ])
        .validate(pod::validate_pod)
        .validate_field(pod::validate_ephemeral_update)
        .fields(&fields::PODS)
        .returns_deleted()
        .grace(pod::grace_period),
    kind(CORE, "Service")
        .prepare(corev1::prepare_service)
        // The service REST's IP family allocation.
        .set_by_server(&[
            &["spec", "clusterIPs"],
            &["spec", "ipFamilies"],
            &["spec", "ipFamilyPolicy"],
        ])
        .validate(corev1::validate_service)
        .names(NameRule::Dns1035)
        .fields(&fields::SERVICES)
        .returns_deleted(),
    BuiltIn {
        may_go: corev1::namespace_finalized,
        ..kind(CORE, "Namespace")
            .prepare(corev1::prepare_namespace)
            // PrepareForCreate's finalizer.
            .set_by_server(&[&["spec", "finalizers"]])
            .validate(|o, _| corev1::validate_namespace(o))
            .names(NameRule::Label)
            .fields(&fields::NAMESPACES)
            .returns_deleted()
    },
    kind(CORE, "Secret")
        .prepare(|o, _| corev1::prepare_secret(o))
        .validate(corev1::validate_secret)
        .fields(&fields::SECRETS),
    kind(CORE, "ConfigMap").validate(corev1::validate_config_map),
    kind(CORE, "ServiceAccount").returns_deleted(),
    kind(CORE, "PersistentVolume")
        .prepare(corev1::prepare_volume)
        .validate(corev1::validate_volume)
        .returns_deleted(),
    kind(CORE, "PersistentVolumeClaim")
        .prepare(corev1::prepare_claim)
        .validate(corev1::validate_claim)
        .returns_deleted(),
    kind(CORE, "Endpoints")
        .prepare(|o, _| corev1::prepare_endpoints(o))
        .validate(|o, _| corev1::validate_endpoints(o)),
    EVENT,
    BuiltIn {
        group: "events.k8s.io",
        fields: &fields::EVENTS_K8S_IO,
        ..EVENT
    },
    kind(CORE, "LimitRange")
        .prepare(|o, _| corev1::prepare_limit_range(o))
        .validate(|o, _| corev1::validate_limit_range(o)),
    kind(CORE, "ResourceQuota")
        .prepare(corev1::prepare_quota)
        .validate(corev1::validate_quota)
        .returns_deleted(),
    kind(CORE, "ReplicationController")
        .prepare(corev1::prepare_rc)
        .validate(|o, _| corev1::validate_rc(o))
        .fields(&fields::REPLICATION_CONTROLLERS)
        .generation(),
    kind(CORE, "PodTemplate")
        .prepare(|o, _| corev1::prepare_pod_template(o))
        .validate(|o, _| corev1::validate_pod_template(o))
        .returns_deleted(),
    kind(CORE, "Node")
        .prepare(|o, _| corev1::prepare_node(o))
        .validate(corev1::validate_node)
        .fields(&fields::NODES),
    kind("apps", "Deployment")
        .prepare(apps::prepare_deployment)
        .validate(apps::validate_deployment)
        .generation(),
    kind("apps", "ReplicaSet")
        .prepare(apps::prepare_replica_set)
        .validate(apps::validate_replica_set)
        .generation(),
    kind("apps", "StatefulSet")
        .prepare(apps::prepare_stateful_set)
        .validate(apps::validate_stateful_set)
        .generation(),
    kind("apps", "DaemonSet")
        .prepare(apps::prepare_daemon_set)
        .validate(apps::validate_daemon_set)
        .generation(),
    kind("apps", "ControllerRevision").validate(apps::validate_controller_revision),
    kind("batch", "Job")
        .prepare(batch::prepare_job)
        .validate(batch::validate_job)
        .fields(&fields::JOBS)
        .generation(),
    kind("batch", "CronJob")
        .prepare(batch::prepare_cron_job)
        .validate(batch::validate_cron_job)
        .generation(),
    kind(NET, "Ingress")
        .prepare(other::prepare_ingress)
        .validate(other::validate_ingress)
        .generation(),
    kind(NET, "IngressClass")
        .prepare(|o, _| other::prepare_ingress_class(o))
        .validate(other::validate_ingress_class),
    kind(NET, "NetworkPolicy")
        .prepare(|o, _| other::prepare_network_policy(o))
        .validate(|o, _| other::validate_network_policy(o))
        .generation(),
    kind("policy", "PodDisruptionBudget")
        .prepare(other::prepare_pdb)
        .validate(|o, _| other::validate_pdb(o))
        .generation(),
    kind("autoscaling", "HorizontalPodAutoscaler")
        .prepare(other::prepare_hpa)
        .validate(|o, _| other::validate_hpa(o))
        .generation(),
    kind("scheduling.k8s.io", "PriorityClass")
        .prepare(|o, _| other::prepare_priority_class(o))
        .validate(other::validate_priority_class),
    kind("storage.k8s.io", "StorageClass")
        .prepare(|o, _| other::prepare_storage_class(o))
        .validate(other::validate_storage_class)
        .returns_deleted(),
    kind(RBAC, "Role")
        .validate(|o, _| other::validate_role(o, true))
        .names(NameRule::PathSegment),
    kind(RBAC, "ClusterRole")
        .validate(|o, _| other::validate_role(o, false))
        .names(NameRule::PathSegment),
    kind(RBAC, "RoleBinding")
        .prepare(|o, _| other::prepare_binding(o))
        .validate(|o, old| other::validate_binding(o, old, true))
        .names(NameRule::PathSegment),
    kind(RBAC, "ClusterRoleBinding")
        .prepare(|o, _| other::prepare_binding(o))
        .validate(|o, old| other::validate_binding(o, old, false))
        .names(NameRule::PathSegment),
    kind("coordination.k8s.io", "Lease").validate(|o, _| other::validate_lease(o)),
    kind("discovery.k8s.io", "EndpointSlice")
        .prepare(|o, _| other::prepare_endpoint_slice(o))
        .validate(|o, _| other::validate_endpoint_slice(o)),
    // `v1.` (core) is an APIService name: upstream checks only that it is a path segment.
    kind("apiregistration.k8s.io", "APIService").names(NameRule::PathSegment),
];

/// The strategy of the built-in kind served as `group`/`kind_name` (every stored row of the
/// catalogue has one: a test checks).
pub fn built_in(group: &str, kind_name: &str) -> Option<BuiltIn> {
    BUILT_IN
        .iter()
        .find(|b| b.group == group && b.kind == kind_name)
        .copied()
}
