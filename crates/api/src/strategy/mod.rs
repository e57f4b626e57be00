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

use crate::validation::FieldError;

/// Defaults and normalisation applied before validation, on create (`old = None`) and on
/// update.
pub fn prepare(group: &str, kind: &str, obj: &mut Value, old: Option<&Value>) {
    if !obj.is_object() {
        return;
    }
    match (group, kind) {
        ("", "Pod") => pod::prepare_pod(obj, old),
        ("", "Service") => corev1::prepare_service(obj, old),
        ("", "Namespace") => corev1::prepare_namespace(obj, old),
        ("", "Secret") => corev1::prepare_secret(obj),
        ("", "PersistentVolume") => corev1::prepare_volume(obj, old),
        ("", "PersistentVolumeClaim") => corev1::prepare_claim(obj, old),
        ("", "Endpoints") => corev1::prepare_endpoints(obj),
        ("", "Event") => corev1::prepare_event(obj),
        ("", "LimitRange") => corev1::prepare_limit_range(obj),
        ("", "ResourceQuota") => corev1::prepare_quota(obj, old),
        ("", "ReplicationController") => corev1::prepare_rc(obj, old),
        ("", "PodTemplate") => corev1::prepare_pod_template(obj),
        ("", "Node") => corev1::prepare_node(obj),
        ("apps", "Deployment") => apps::prepare_deployment(obj, old),
        ("apps", "ReplicaSet") => apps::prepare_replica_set(obj, old),
        ("apps", "StatefulSet") => apps::prepare_stateful_set(obj, old),
        ("apps", "DaemonSet") => apps::prepare_daemon_set(obj, old),
        ("batch", "Job") => batch::prepare_job(obj, old),
        ("batch", "CronJob") => batch::prepare_cron_job(obj, old),
        ("networking.k8s.io", "Ingress") => other::prepare_ingress(obj, old),
        ("networking.k8s.io", "IngressClass") => other::prepare_ingress_class(obj),
        ("networking.k8s.io", "NetworkPolicy") => other::prepare_network_policy(obj),
        ("policy", "PodDisruptionBudget") => other::prepare_pdb(obj, old),
        ("autoscaling", "HorizontalPodAutoscaler") => other::prepare_hpa(obj, old),
        ("scheduling.k8s.io", "PriorityClass") => other::prepare_priority_class(obj),
        ("storage.k8s.io", "StorageClass") => other::prepare_storage_class(obj),
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => {
            other::prepare_binding(obj)
        }
        ("discovery.k8s.io", "EndpointSlice") => other::prepare_endpoint_slice(obj),
        _ => {}
    }
}

/// Kind-specific validation (metadata name, labels and annotations are checked by the
/// caller). On update `old` is the current object; the errors are in upstream's order.
pub fn validate(group: &str, kind: &str, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    // Upstream decodes the stored object with defaults too, so an object stored before a
    // default existed still compares equal where nothing changed.
    let old_defaulted = old.map(|o| {
        let mut copy = o.clone();
        prepare(group, kind, &mut copy, Some(o));
        copy
    });
    let old = old_defaulted.as_ref();
    match (group, kind) {
        ("", "Pod") => pod::validate_pod(obj, old),
        ("", "Service") => corev1::validate_service(obj, old),
        ("", "Namespace") => corev1::validate_namespace(obj),
        ("", "Secret") => corev1::validate_secret(obj, old),
        ("", "ConfigMap") => corev1::validate_config_map(obj, old),
        ("", "PersistentVolume") => corev1::validate_volume(obj, old),
        ("", "PersistentVolumeClaim") => corev1::validate_claim(obj, old),
        ("", "Endpoints") => corev1::validate_endpoints(obj),
        ("", "LimitRange") => corev1::validate_limit_range(obj),
        ("", "ResourceQuota") => corev1::validate_quota(obj, old),
        ("", "ReplicationController") => corev1::validate_rc(obj),
        ("", "PodTemplate") => corev1::validate_pod_template(obj),
        ("", "Node") => corev1::validate_node(obj, old),
        ("apps", "Deployment") => apps::validate_deployment(obj, old),
        ("apps", "ReplicaSet") => apps::validate_replica_set(obj, old),
        ("apps", "StatefulSet") => apps::validate_stateful_set(obj, old),
        ("apps", "DaemonSet") => apps::validate_daemon_set(obj, old),
        ("apps", "ControllerRevision") => apps::validate_controller_revision(obj, old),
        ("batch", "Job") => batch::validate_job(obj, old),
        ("batch", "CronJob") => batch::validate_cron_job(obj, old),
        ("networking.k8s.io", "Ingress") => other::validate_ingress(obj, old),
        ("networking.k8s.io", "IngressClass") => other::validate_ingress_class(obj, old),
        ("networking.k8s.io", "NetworkPolicy") => other::validate_network_policy(obj),
        ("policy", "PodDisruptionBudget") => other::validate_pdb(obj),
        ("autoscaling", "HorizontalPodAutoscaler") => other::validate_hpa(obj),
        ("scheduling.k8s.io", "PriorityClass") => other::validate_priority_class(obj, old),
        ("storage.k8s.io", "StorageClass") => other::validate_storage_class(obj, old),
        ("rbac.authorization.k8s.io", "Role") => other::validate_role(obj, true),
        ("rbac.authorization.k8s.io", "ClusterRole") => other::validate_role(obj, false),
        ("rbac.authorization.k8s.io", "RoleBinding") => other::validate_binding(obj, old, true),
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => {
            other::validate_binding(obj, old, false)
        }
        ("coordination.k8s.io", "Lease") => other::validate_lease(obj),
        ("discovery.k8s.io", "EndpointSlice") => other::validate_endpoint_slice(obj),
        _ => Vec::new(),
    }
}

/// Seconds a delete of this (stored) object waits before it is gone, upstream's
/// `CheckGracefulDelete`: a pod gets the requested period, else its
/// `spec.terminationGracePeriodSeconds`, unless it never ran on a node or has finished;
/// everything else goes at once.
pub fn grace_period(group: &str, kind: &str, obj: &Value, requested: Option<i64>) -> i64 {
    match (group, kind) {
        ("", "Pod") => pod::grace_period(obj, requested),
        _ => 0,
    }
}

/// Whether an object being deleted, with no finalizers and no grace period left, may go
/// (upstream's `ShouldDeleteDuringUpdate`): a namespace also waits for its `spec.finalizers`.
pub fn may_go_when_finalized(group: &str, kind: &str, obj: &Value) -> bool {
    match (group, kind) {
        ("", "Namespace") => obj["spec"]["finalizers"]
            .as_array()
            .is_none_or(|f| f.is_empty()),
        _ => true,
    }
}
