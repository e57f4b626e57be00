//! Server-side printer columns: the `meta.k8s.io/v1` Table columns and cells that `kubectl get`
//! (and `kubectl get -o wide`) prints, for every kind in the catalogue.
//!
//! Owns: the column definitions of each kind (name, type, format, description, priority — a
//! priority of 1 means "only with `-o wide`") and the computation of each row's cells from the
//! object in its Kubernetes JSON form, with the rules of upstream Kubernetes 1.33's
//! `pkg/printers/internalversion` (pod STATUS with init containers, sidecars, waiting and
//! terminated reasons, "Terminating", restarts with "(5m ago)"; service EXTERNAL-IP with
//! `<none>`/`<pending>`; node roles from `node-role.kubernetes.io/*` labels; ...). Kinds upstream
//! has no printer for get upstream's default table (Name, Created At).
//!
//! Like upstream's API server, the cells are always computed for the wide form (kubectl drops
//! the priority-1 columns itself), ages are `duration.HumanDuration` of `now - timestamp`
//! (`5s`, `3m12s`, `2d3h`, `<unknown>` when unset), and an object read from storage is seen with
//! its version's defaults applied (a Service without `type` prints as `ClusterIP`, a
//! Deployment without `replicas` wants 1, ...), because upstream decodes stored objects with
//! defaulting before printing them. Where two API versions serve one stored object
//! (`events.k8s.io/v1` and core `v1` Events, `autoscaling/v1` and `v2`
//! HorizontalPodAutoscalers) either JSON form is accepted and prints the same row.
//!
//! Written by hand: there is no Rust port of upstream's printers; quantities are
//! canonicalised here too (`1024Mi` prints as `1Gi`, as upstream's `Quantity.String()`).
//!
//! Must not touch: HTTP, the store. Everything here is a pure function of its inputs; the
//! caller passes `now` so that ages are deterministic under test.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use crate::pruned::Keep;

/// One column of a kind's Table, as `columnDefinitions` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    /// `string`, `integer`, `number`, `boolean` or `date`.
    pub type_: &'static str,
    /// `name` for the column holding the object's name, otherwise empty.
    pub format: &'static str,
    pub description: &'static str,
    /// 0: always shown; 1: shown only with `-o wide`.
    pub priority: i32,
}

const fn col(name: &'static str, type_: &'static str, description: &'static str) -> Column {
    Column {
        name,
        type_,
        format: "",
        description,
        priority: 0,
    }
}

const fn wide(name: &'static str, type_: &'static str, description: &'static str) -> Column {
    Column {
        name,
        type_,
        format: "",
        description,
        priority: 1,
    }
}

const NAME: Column = Column {
    name: "Name",
    type_: "string",
    format: "name",
    description: doc::OBJECT_META_NAME,
    priority: 0,
};
const AGE: Column = col("Age", "string", doc::OBJECT_META_CREATION_TIMESTAMP);
const CONTAINERS: Column = wide(
    "Containers",
    "string",
    "Names of each container in the template.",
);
const IMAGES: Column = wide(
    "Images",
    "string",
    "Images referenced by each container in the template.",
);

/// Upstream's default table for kinds without a printer (`rest.NewDefaultTableConvertor`).
pub static DEFAULT_COLUMNS: &[Column] = &[
    NAME,
    col("Created At", "date", doc::OBJECT_META_CREATION_TIMESTAMP),
];

static POD: &[Column] = &[
    NAME,
    col(
        "Ready",
        "string",
        "The aggregate readiness state of this pod for accepting traffic.",
    ),
    col(
        "Status",
        "string",
        "The aggregate status of the containers in this pod.",
    ),
    col(
        "Restarts",
        "string",
        "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
    ),
    AGE,
    wide("IP", "string", doc::POD_STATUS_POD_IP),
    wide("Node", "string", doc::POD_SPEC_NODE_NAME),
    wide(
        "Nominated Node",
        "string",
        doc::POD_STATUS_NOMINATED_NODE_NAME,
    ),
    wide("Readiness Gates", "string", doc::POD_SPEC_READINESS_GATES),
];

static POD_TEMPLATE: &[Column] = &[
    NAME,
    col(
        "Containers",
        "string",
        "Names of each container in the template.",
    ),
    col(
        "Images",
        "string",
        "Images referenced by each container in the template.",
    ),
    col("Pod Labels", "string", "The labels for the pod template."),
];

static POD_DISRUPTION_BUDGET: &[Column] = &[
    NAME,
    col(
        "Min Available",
        "string",
        "The minimum number of pods that must be available.",
    ),
    col(
        "Max Unavailable",
        "string",
        "The maximum number of pods that may be unavailable.",
    ),
    col(
        "Allowed Disruptions",
        "integer",
        "Calculated number of pods that may be disrupted at this time.",
    ),
    AGE,
];

static REPLICATION_CONTROLLER: &[Column] = &[
    NAME,
    col(
        "Desired",
        "integer",
        doc::REPLICATION_CONTROLLER_SPEC_REPLICAS,
    ),
    col(
        "Current",
        "integer",
        doc::REPLICATION_CONTROLLER_STATUS_REPLICAS,
    ),
    col(
        "Ready",
        "integer",
        doc::REPLICATION_CONTROLLER_STATUS_READY_REPLICAS,
    ),
    AGE,
    CONTAINERS,
    IMAGES,
    wide(
        "Selector",
        "string",
        doc::REPLICATION_CONTROLLER_SPEC_SELECTOR,
    ),
];

static REPLICA_SET: &[Column] = &[
    NAME,
    col("Desired", "integer", doc::REPLICA_SET_SPEC_REPLICAS),
    col("Current", "integer", doc::REPLICA_SET_STATUS_REPLICAS),
    col("Ready", "integer", doc::REPLICA_SET_STATUS_READY_REPLICAS),
    AGE,
    CONTAINERS,
    IMAGES,
    wide("Selector", "string", doc::REPLICA_SET_SPEC_SELECTOR),
];

static DAEMON_SET: &[Column] = &[
    NAME,
    col(
        "Desired",
        "integer",
        doc::DAEMON_SET_STATUS_DESIRED_NUMBER_SCHEDULED,
    ),
    col(
        "Current",
        "integer",
        doc::DAEMON_SET_STATUS_CURRENT_NUMBER_SCHEDULED,
    ),
    col("Ready", "integer", doc::DAEMON_SET_STATUS_NUMBER_READY),
    col(
        "Up-to-date",
        "integer",
        doc::DAEMON_SET_STATUS_UPDATED_NUMBER_SCHEDULED,
    ),
    col(
        "Available",
        "integer",
        doc::DAEMON_SET_STATUS_NUMBER_AVAILABLE,
    ),
    col("Node Selector", "string", doc::POD_SPEC_NODE_SELECTOR),
    AGE,
    CONTAINERS,
    IMAGES,
    wide("Selector", "string", doc::DAEMON_SET_SPEC_SELECTOR),
];

static JOB: &[Column] = &[
    NAME,
    col("Status", "string", "Status of the job."),
    col("Completions", "string", doc::JOB_STATUS_SUCCEEDED),
    col("Duration", "string", "Time required to complete the job."),
    AGE,
    CONTAINERS,
    IMAGES,
    wide("Selector", "string", doc::JOB_SPEC_SELECTOR),
];

static CRON_JOB: &[Column] = &[
    NAME,
    col("Schedule", "string", doc::CRON_JOB_SPEC_SCHEDULE),
    col("Timezone", "string", doc::CRON_JOB_SPEC_TIME_ZONE),
    col("Suspend", "boolean", doc::CRON_JOB_SPEC_SUSPEND),
    col("Active", "integer", doc::CRON_JOB_STATUS_ACTIVE),
    col(
        "Last Schedule",
        "string",
        doc::CRON_JOB_STATUS_LAST_SCHEDULE_TIME,
    ),
    AGE,
    CONTAINERS,
    IMAGES,
    wide("Selector", "string", doc::JOB_SPEC_SELECTOR),
];

static SERVICE: &[Column] = &[
    NAME,
    col("Type", "string", doc::SERVICE_SPEC_TYPE),
    col("Cluster-IP", "string", doc::SERVICE_SPEC_CLUSTER_IP),
    col("External-IP", "string", doc::SERVICE_SPEC_EXTERNAL_IPS),
    col("Port(s)", "string", doc::SERVICE_SPEC_PORTS),
    AGE,
    wide("Selector", "string", doc::SERVICE_SPEC_SELECTOR),
];

static INGRESS: &[Column] = &[
    NAME,
    col(
        "Class",
        "string",
        "The name of the IngressClass resource that should be used for additional configuration",
    ),
    col(
        "Hosts",
        "string",
        "Hosts that incoming requests are matched against before the ingress rule",
    ),
    col(
        "Address",
        "string",
        "Address is a list containing ingress points for the load-balancer",
    ),
    col("Ports", "string", "Ports of TLS configurations that open"),
    AGE,
];

static INGRESS_CLASS: &[Column] = &[
    NAME,
    col(
        "Controller",
        "string",
        "Controller that is responsible for handling this class",
    ),
    col(
        "Parameters",
        "string",
        "A reference to a resource with additional parameters",
    ),
    AGE,
];

static STATEFUL_SET: &[Column] = &[
    NAME,
    col("Ready", "string", "Number of the pod with ready state"),
    AGE,
    CONTAINERS,
    IMAGES,
];

static ENDPOINTS: &[Column] = &[
    NAME,
    col("Endpoints", "string", doc::ENDPOINTS_SUBSETS),
    AGE,
];

static NODE: &[Column] = &[
    NAME,
    col("Status", "string", "The status of the node"),
    col("Roles", "string", "The roles of the node"),
    AGE,
    col("Version", "string", doc::NODE_SYSTEM_INFO_KUBELET_VERSION),
    wide("Internal-IP", "string", doc::NODE_STATUS_ADDRESSES),
    wide("External-IP", "string", doc::NODE_STATUS_ADDRESSES),
    wide("OS-Image", "string", doc::NODE_SYSTEM_INFO_OS_IMAGE),
    wide(
        "Kernel-Version",
        "string",
        doc::NODE_SYSTEM_INFO_KERNEL_VERSION,
    ),
    wide(
        "Container-Runtime",
        "string",
        doc::NODE_SYSTEM_INFO_CONTAINER_RUNTIME_VERSION,
    ),
];

static EVENT: &[Column] = &[
    col("Last Seen", "string", doc::EVENT_LAST_TIMESTAMP),
    col("Type", "string", doc::EVENT_TYPE),
    col("Reason", "string", doc::EVENT_REASON),
    col("Object", "string", doc::EVENT_INVOLVED_OBJECT),
    wide("Subobject", "string", doc::OBJECT_REFERENCE_FIELD_PATH),
    wide("Source", "string", doc::EVENT_SOURCE),
    col("Message", "string", doc::EVENT_MESSAGE),
    wide("First Seen", "string", doc::EVENT_FIRST_TIMESTAMP),
    wide("Count", "string", doc::EVENT_COUNT),
    Column {
        priority: 1,
        ..NAME
    },
];

static NAMESPACE: &[Column] = &[
    NAME,
    col("Status", "string", "The status of the namespace"),
    AGE,
];

static SECRET: &[Column] = &[
    NAME,
    col("Type", "string", doc::SECRET_TYPE),
    col("Data", "string", doc::SECRET_DATA),
    AGE,
];

static SERVICE_ACCOUNT: &[Column] = &[
    NAME,
    col("Secrets", "string", doc::SERVICE_ACCOUNT_SECRETS),
    AGE,
];

static PERSISTENT_VOLUME: &[Column] = &[
    NAME,
    col("Capacity", "string", doc::PERSISTENT_VOLUME_SPEC_CAPACITY),
    col(
        "Access Modes",
        "string",
        doc::PERSISTENT_VOLUME_SPEC_ACCESS_MODES,
    ),
    col(
        "Reclaim Policy",
        "string",
        doc::PERSISTENT_VOLUME_SPEC_PERSISTENT_VOLUME_RECLAIM_POLICY,
    ),
    col("Status", "string", doc::PERSISTENT_VOLUME_STATUS_PHASE),
    col("Claim", "string", doc::PERSISTENT_VOLUME_SPEC_CLAIM_REF),
    col("StorageClass", "string", "StorageClass of the pv"),
    col(
        "VolumeAttributesClass",
        "string",
        "VolumeAttributesClass of the pv",
    ),
    col("Reason", "string", doc::PERSISTENT_VOLUME_STATUS_REASON),
    AGE,
    wide(
        "VolumeMode",
        "string",
        doc::PERSISTENT_VOLUME_SPEC_VOLUME_MODE,
    ),
];

static PERSISTENT_VOLUME_CLAIM: &[Column] = &[
    NAME,
    col(
        "Status",
        "string",
        doc::PERSISTENT_VOLUME_CLAIM_STATUS_PHASE,
    ),
    col(
        "Volume",
        "string",
        doc::PERSISTENT_VOLUME_CLAIM_SPEC_VOLUME_NAME,
    ),
    col(
        "Capacity",
        "string",
        doc::PERSISTENT_VOLUME_CLAIM_STATUS_CAPACITY,
    ),
    col(
        "Access Modes",
        "string",
        doc::PERSISTENT_VOLUME_CLAIM_STATUS_ACCESS_MODES,
    ),
    col("StorageClass", "string", "StorageClass of the pvc"),
    col(
        "VolumeAttributesClass",
        "string",
        "VolumeAttributesClass of the pvc",
    ),
    AGE,
    wide(
        "VolumeMode",
        "string",
        doc::PERSISTENT_VOLUME_CLAIM_SPEC_VOLUME_MODE,
    ),
];

static DEPLOYMENT: &[Column] = &[
    NAME,
    col("Ready", "string", "Number of the pod with ready state"),
    col(
        "Up-to-date",
        "string",
        doc::DEPLOYMENT_STATUS_UPDATED_REPLICAS,
    ),
    col(
        "Available",
        "string",
        doc::DEPLOYMENT_STATUS_AVAILABLE_REPLICAS,
    ),
    AGE,
    CONTAINERS,
    IMAGES,
    wide("Selector", "string", doc::DEPLOYMENT_SPEC_SELECTOR),
];

static HORIZONTAL_POD_AUTOSCALER: &[Column] = &[
    NAME,
    col(
        "Reference",
        "string",
        doc::HORIZONTAL_POD_AUTOSCALER_SPEC_SCALE_TARGET_REF,
    ),
    col(
        "Targets",
        "string",
        doc::HORIZONTAL_POD_AUTOSCALER_SPEC_METRICS,
    ),
    col(
        "MinPods",
        "string",
        doc::HORIZONTAL_POD_AUTOSCALER_SPEC_MIN_REPLICAS,
    ),
    col(
        "MaxPods",
        "string",
        doc::HORIZONTAL_POD_AUTOSCALER_SPEC_MAX_REPLICAS,
    ),
    col(
        "Replicas",
        "string",
        doc::HORIZONTAL_POD_AUTOSCALER_STATUS_CURRENT_REPLICAS,
    ),
    AGE,
];

static CONFIG_MAP: &[Column] = &[NAME, col("Data", "string", doc::CONFIG_MAP_DATA), AGE];

static NETWORK_POLICY: &[Column] = &[
    NAME,
    col(
        "Pod-Selector",
        "string",
        doc::NETWORK_POLICY_SPEC_POD_SELECTOR,
    ),
    AGE,
];

static ROLE_BINDING: &[Column] = &[
    NAME,
    col("Role", "string", doc::ROLE_BINDING_ROLE_REF),
    AGE,
    wide("Users", "string", "Users in the roleBinding"),
    wide("Groups", "string", "Groups in the roleBinding"),
    wide(
        "ServiceAccounts",
        "string",
        "ServiceAccounts in the roleBinding",
    ),
];

static CLUSTER_ROLE_BINDING: &[Column] = &[
    NAME,
    col("Role", "string", doc::CLUSTER_ROLE_BINDING_ROLE_REF),
    AGE,
    wide("Users", "string", "Users in the clusterRoleBinding"),
    wide("Groups", "string", "Groups in the clusterRoleBinding"),
    wide(
        "ServiceAccounts",
        "string",
        "ServiceAccounts in the clusterRoleBinding",
    ),
];

/// kube-aggregator's APIService table.
static API_SERVICE: &[Column] = &[
    NAME,
    col(
        "Service",
        "string",
        "The reference to the service that hosts this API endpoint.",
    ),
    col("Available", "string", "Whether this service is available."),
    AGE,
];

static LEASE: &[Column] = &[
    NAME,
    col("Holder", "string", doc::LEASE_SPEC_HOLDER_IDENTITY),
    AGE,
];

static STORAGE_CLASS: &[Column] = &[
    NAME,
    col("Provisioner", "string", doc::STORAGE_CLASS_PROVISIONER),
    col("ReclaimPolicy", "string", doc::STORAGE_CLASS_RECLAIM_POLICY),
    col(
        "VolumeBindingMode",
        "string",
        doc::STORAGE_CLASS_VOLUME_BINDING_MODE,
    ),
    col(
        "AllowVolumeExpansion",
        "string",
        doc::STORAGE_CLASS_ALLOW_VOLUME_EXPANSION,
    ),
    AGE,
];

static CONTROLLER_REVISION: &[Column] = &[
    NAME,
    col("Controller", "string", "Controller of the object"),
    col("Revision", "string", doc::CONTROLLER_REVISION_REVISION),
    AGE,
];

static RESOURCE_QUOTA: &[Column] = &[
    NAME,
    col(
        "Request",
        "string",
        "Request represents a minimum amount of cpu/memory that a container may consume.",
    ),
    col(
        "Limit",
        "string",
        "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node.",
    ),
    AGE,
];

static PRIORITY_CLASS: &[Column] = &[
    NAME,
    col("Value", "integer", doc::PRIORITY_CLASS_VALUE),
    col(
        "Global-Default",
        "boolean",
        doc::PRIORITY_CLASS_GLOBAL_DEFAULT,
    ),
    AGE,
    col(
        "PreemptionPolicy",
        "string",
        doc::PRIORITY_CLASS_PREEMPTION_POLICY,
    ),
];

static ENDPOINT_SLICE: &[Column] = &[
    NAME,
    col("AddressType", "string", doc::ENDPOINT_SLICE_ADDRESS_TYPE),
    col("Ports", "string", doc::ENDPOINT_SLICE_PORTS),
    col("Endpoints", "string", doc::ENDPOINT_SLICE_ENDPOINTS),
    AGE,
];

/// The `autoscaling/v1` Scale of a `/scale` subresource (`kubectl get --subresource=scale`).
/// Upstream gives its Name column no `name` format.
static SCALE: &[Column] = &[
    Column { format: "", ..NAME },
    col("Desired", "integer", doc::SCALE_SPEC_REPLICAS),
    col("Available", "integer", doc::SCALE_STATUS_REPLICAS),
    AGE,
];

/// The printers upstream registers, by the group and kind of the object printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Printer {
    Pod,
    PodTemplate,
    PodDisruptionBudget,
    ReplicationController,
    ReplicaSet,
    DaemonSet,
    Job,
    CronJob,
    Service,
    Ingress,
    IngressClass,
    StatefulSet,
    Endpoints,
    Node,
    Event,
    Namespace,
    Secret,
    ServiceAccount,
    PersistentVolume,
    PersistentVolumeClaim,
    Deployment,
    HorizontalPodAutoscaler,
    ConfigMap,
    NetworkPolicy,
    RoleBinding,
    ClusterRoleBinding,
    Lease,
    ApiService,
    StorageClass,
    ControllerRevision,
    ResourceQuota,
    PriorityClass,
    EndpointSlice,
    Scale,
    Default,
}

fn printer(group: &str, kind: &str) -> Printer {
    use Printer as P;
    match (group, kind) {
        ("", "Pod") => P::Pod,
        ("", "PodTemplate") => P::PodTemplate,
        ("policy", "PodDisruptionBudget") => P::PodDisruptionBudget,
        ("", "ReplicationController") => P::ReplicationController,
        ("apps", "ReplicaSet") => P::ReplicaSet,
        ("apps", "DaemonSet") => P::DaemonSet,
        ("batch", "Job") => P::Job,
        ("batch", "CronJob") => P::CronJob,
        ("", "Service") => P::Service,
        ("networking.k8s.io", "Ingress") => P::Ingress,
        ("networking.k8s.io", "IngressClass") => P::IngressClass,
        ("apps", "StatefulSet") => P::StatefulSet,
        ("", "Endpoints") => P::Endpoints,
        ("", "Node") => P::Node,
        ("", "Event") | ("events.k8s.io", "Event") => P::Event,
        ("", "Namespace") => P::Namespace,
        ("", "Secret") => P::Secret,
        ("", "ServiceAccount") => P::ServiceAccount,
        ("", "PersistentVolume") => P::PersistentVolume,
        ("", "PersistentVolumeClaim") => P::PersistentVolumeClaim,
        ("apps", "Deployment") => P::Deployment,
        ("autoscaling", "HorizontalPodAutoscaler") => P::HorizontalPodAutoscaler,
        ("", "ConfigMap") => P::ConfigMap,
        ("networking.k8s.io", "NetworkPolicy") => P::NetworkPolicy,
        ("rbac.authorization.k8s.io", "RoleBinding") => P::RoleBinding,
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => P::ClusterRoleBinding,
        ("coordination.k8s.io", "Lease") => P::Lease,
        ("apiregistration.k8s.io", "APIService") => P::ApiService,
        ("storage.k8s.io", "StorageClass") => P::StorageClass,
        ("apps", "ControllerRevision") => P::ControllerRevision,
        ("", "ResourceQuota") => P::ResourceQuota,
        ("scheduling.k8s.io", "PriorityClass") => P::PriorityClass,
        ("discovery.k8s.io", "EndpointSlice") => P::EndpointSlice,
        ("autoscaling", "Scale") => P::Scale,
        _ => P::Default,
    }
}

/// Whether upstream has a printer of its own for `group`/`kind` (otherwise the default table,
/// Name and Created At, is used).
pub fn has_printer(group: &str, kind: &str) -> bool {
    printer(group, kind) != Printer::Default
}

/// The Table columns of `group`/`kind`, wide columns included (priority 1), in upstream's order.
pub fn columns(group: &str, kind: &str) -> &'static [Column] {
    use Printer as P;
    match printer(group, kind) {
        P::Pod => POD,
        P::PodTemplate => POD_TEMPLATE,
        P::PodDisruptionBudget => POD_DISRUPTION_BUDGET,
        P::ReplicationController => REPLICATION_CONTROLLER,
        P::ReplicaSet => REPLICA_SET,
        P::DaemonSet => DAEMON_SET,
        P::Job => JOB,
        P::CronJob => CRON_JOB,
        P::Service => SERVICE,
        P::Ingress => INGRESS,
        P::IngressClass => INGRESS_CLASS,
        P::StatefulSet => STATEFUL_SET,
        P::Endpoints => ENDPOINTS,
        P::Node => NODE,
        P::Event => EVENT,
        P::Namespace => NAMESPACE,
        P::Secret => SECRET,
        P::ServiceAccount => SERVICE_ACCOUNT,
        P::PersistentVolume => PERSISTENT_VOLUME,
        P::PersistentVolumeClaim => PERSISTENT_VOLUME_CLAIM,
        P::Deployment => DEPLOYMENT,
        P::HorizontalPodAutoscaler => HORIZONTAL_POD_AUTOSCALER,
        P::ConfigMap => CONFIG_MAP,
        P::NetworkPolicy => NETWORK_POLICY,
        P::RoleBinding => ROLE_BINDING,
        P::ClusterRoleBinding => CLUSTER_ROLE_BINDING,
        P::Lease => LEASE,
        P::ApiService => API_SERVICE,
        P::StorageClass => STORAGE_CLASS,
        P::ControllerRevision => CONTROLLER_REVISION,
        P::ResourceQuota => RESOURCE_QUOTA,
        P::PriorityClass => PRIORITY_CLASS,
        P::EndpointSlice => ENDPOINT_SLICE,
        P::Scale => SCALE,
        P::Default => DEFAULT_COLUMNS,
    }
}

/// The cells of `obj`'s row, one per column of [`columns`] (wide columns included), computed
/// as upstream computes them; `now_unix_secs` is the current time for ages.
pub fn cells(group: &str, kind: &str, obj: &Value, now_unix_secs: i64) -> Vec<Value> {
    use Printer as P;
    let now = now_unix_secs.saturating_mul(MICROS);
    match printer(group, kind) {
        P::Pod => pod_cells(obj, now),
        P::PodTemplate => pod_template_cells(obj),
        P::PodDisruptionBudget => pdb_cells(obj, now),
        P::ReplicationController => replication_controller_cells(obj, now),
        P::ReplicaSet => replica_set_cells(obj, now),
        P::DaemonSet => daemon_set_cells(obj, now),
        P::Job => job_cells(obj, now),
        P::CronJob => cron_job_cells(obj, now),
        P::Service => service_cells(obj, now),
        P::Ingress => ingress_cells(obj, now),
        P::IngressClass => ingress_class_cells(obj, now),
        P::StatefulSet => stateful_set_cells(obj, now),
        P::Endpoints => endpoints_cells(obj, now),
        P::Node => node_cells(obj, now),
        P::Event => event_cells(obj, now),
        P::Namespace => namespace_cells(obj, now),
        P::Secret => secret_cells(obj, now),
        P::ServiceAccount => service_account_cells(obj, now),
        P::PersistentVolume => persistent_volume_cells(obj, now),
        P::PersistentVolumeClaim => persistent_volume_claim_cells(obj, now),
        P::Deployment => deployment_cells(obj, now),
        P::HorizontalPodAutoscaler => hpa_cells(obj, now),
        P::ConfigMap => config_map_cells(obj, now),
        P::NetworkPolicy => network_policy_cells(obj, now),
        P::RoleBinding | P::ClusterRoleBinding => role_binding_cells(obj, now),
        P::Lease => lease_cells(obj, now),
        P::ApiService => api_service_cells(obj, now),
        P::StorageClass => storage_class_cells(obj, now),
        P::ControllerRevision => controller_revision_cells(obj, now),
        P::ResourceQuota => resource_quota_cells(obj, now),
        P::PriorityClass => priority_class_cells(obj, now),
        P::EndpointSlice => endpoint_slice_cells(obj, now),
        P::Scale => scale_cells(obj, now),
        P::Default => default_cells(obj),
    }
}

/// What of an object [`cells`] and [`row_conditions`] read, so that a list printed as a Table
/// decodes only that ([`crate::pruned`]): for pods a dozen fields of the spec and metadata and
/// the status; for every other kind all but the managed fields.
pub fn row_fields(group: &str, kind: &str) -> Keep {
    const ALL: Keep = Keep::All;
    const POD: Keep = Keep::Only(&[
        (
            "metadata",
            Keep::Only(&[
                ("name", ALL),
                ("creationTimestamp", ALL),
                ("deletionTimestamp", ALL),
            ]),
        ),
        (
            "spec",
            Keep::Only(&[
                // Counted only.
                ("containers", Keep::Only(&[])),
                (
                    "initContainers",
                    Keep::Only(&[("name", ALL), ("restartPolicy", ALL)]),
                ),
                ("readinessGates", ALL),
                ("nodeName", ALL),
            ]),
        ),
        ("status", ALL),
    ]);
    const OTHER: Keep = Keep::Each(&[(
        "metadata",
        Keep::Each(&[("managedFields", Keep::Only(&[]))]),
    )]);
    match printer(group, kind) {
        Printer::Pod => POD,
        _ => OTHER,
    }
}

/// The row `conditions` upstream attaches (pods that Succeeded or Failed are marked
/// `Completed`); `None` when the row has none.
pub fn row_conditions(group: &str, kind: &str, obj: &Value) -> Option<Value> {
    if printer(group, kind) != Printer::Pod {
        return None;
    }
    let (reason, message) = match s(&obj["status"]["phase"]) {
        "Succeeded" => ("Succeeded", "The pod has completed successfully."),
        "Failed" => ("Failed", "The pod failed."),
        _ => return None,
    };
    Some(json!([{
        "type": "Completed",
        "status": "True",
        "reason": reason,
        "message": message,
    }]))
}

/// Upstream's default table: the name and the creation timestamp as it is (`null` if unset).
fn default_cells(obj: &Value) -> Vec<Value> {
    vec![
        str_cell(s(&obj["metadata"]["name"])),
        obj["metadata"]["creationTimestamp"].clone(),
    ]
}

// ---- JSON access ------------------------------------------------------------------------------

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

fn int(v: &Value) -> i64 {
    v.as_i64()
        .or_else(|| v.as_u64().map(|u| i64::try_from(u).unwrap_or(i64::MAX)))
        .or_else(|| v.as_f64().map(|f| f as i64))
        .unwrap_or(0)
}

fn int_or(v: &Value, default: i64) -> i64 {
    if v.is_number() {
        int(v)
    } else {
        default
    }
}

fn arr(v: &Value) -> &[Value] {
    v.as_array().map_or(&[], Vec::as_slice)
}

fn len_of(v: &Value) -> usize {
    match v {
        Value::Object(m) => m.len(),
        Value::Array(a) => a.len(),
        _ => 0,
    }
}

fn is_true(v: &Value) -> bool {
    v.as_bool() == Some(true)
}

fn str_cell(v: &str) -> Value {
    Value::String(v.to_string())
}

fn or_none(v: &str) -> String {
    if v.is_empty() {
        "<none>".to_string()
    } else {
        v.to_string()
    }
}

fn name_cell(obj: &Value) -> Value {
    str_cell(s(&obj["metadata"]["name"]))
}

fn age_cell(obj: &Value, now: i64) -> Value {
    Value::String(since(&obj["metadata"]["creationTimestamp"], now))
}

fn deleting(obj: &Value) -> bool {
    !obj["metadata"]["deletionTimestamp"].is_null()
}

/// `names`, `images` of a pod spec's containers, comma-separated.
fn container_cells(pod_spec: &Value) -> [Value; 2] {
    let containers = arr(&pod_spec["containers"]);
    let names: Vec<&str> = containers.iter().map(|c| s(&c["name"])).collect();
    let images: Vec<&str> = containers.iter().map(|c| s(&c["image"])).collect();
    [
        Value::String(names.join(",")),
        Value::String(images.join(",")),
    ]
}

// ---- pods ---------------------------------------------------------------------------------------

/// `lastState.terminated.finishedAt` of a container status: `None` when there is no last
/// termination or it carries no time (upstream's zero time).
fn last_termination(status: &Value) -> Option<Option<i64>> {
    let t = &status["lastState"]["terminated"];
    if t.is_object() {
        Some(timestamp(&t["finishedAt"]))
    } else {
        None
    }
}

fn pod_condition_true(status: &Value, type_: &str) -> bool {
    // The first condition of the type decides.
    arr(&status["conditions"])
        .iter()
        .find(|c| s(&c["type"]) == type_)
        .is_some_and(|c| s(&c["status"]) == "True")
}

fn pod_cells(obj: &Value, now: i64) -> Vec<Value> {
    let spec = &obj["spec"];
    let status = &obj["status"];
    let init_specs = arr(&spec["initContainers"]);
    // A sidecar: an init container that restarts always. Later duplicates of a name win, as
    // upstream keys them in a map.
    let is_sidecar = |name: &str| {
        init_specs
            .iter()
            .rev()
            .find(|c| s(&c["name"]) == name)
            .is_some_and(|c| s(&c["restartPolicy"]) == "Always")
    };

    let mut restarts: i64 = 0;
    let mut sidecar_restarts: i64 = 0;
    let mut ready = 0usize;
    let total = arr(&spec["containers"]).len()
        + init_specs
            .iter()
            .filter(|c| s(&c["restartPolicy"]) == "Always")
            .count();
    let mut last_restart: Option<i64> = None;
    let mut last_sidecar_restart: Option<i64> = None;

    let phase = s(&status["phase"]);
    let mut reason = match s(&status["reason"]) {
        "" => phase.to_string(),
        r => r.to_string(),
    };
    for c in arr(&status["conditions"]) {
        if s(&c["type"]) == "PodScheduled" && s(&c["reason"]) == "SchedulingGated" {
            reason = "SchedulingGated".to_string();
        }
    }

    let mut initializing = false;
    for (i, cs) in arr(&status["initContainerStatuses"]).iter().enumerate() {
        let count = int(&cs["restartCount"]);
        restarts += count;
        if let Some(t) = last_termination(cs) {
            last_restart = last_restart.max(t);
        }
        let sidecar = is_sidecar(s(&cs["name"]));
        if sidecar {
            sidecar_restarts += count;
            if let Some(t) = last_termination(cs) {
                last_sidecar_restart = last_sidecar_restart.max(t);
            }
        }
        let terminated = &cs["state"]["terminated"];
        let waiting = &cs["state"]["waiting"];
        if terminated.is_object() && int(&terminated["exitCode"]) == 0 {
            continue;
        }
        if sidecar && is_true(&cs["started"]) {
            if is_true(&cs["ready"]) {
                ready += 1;
            }
            continue;
        }
        if terminated.is_object() {
            reason = match s(&terminated["reason"]) {
                "" if int(&terminated["signal"]) != 0 => {
                    format!("Init:Signal:{}", int(&terminated["signal"]))
                }
                "" => format!("Init:ExitCode:{}", int(&terminated["exitCode"])),
                r => format!("Init:{r}"),
            };
        } else if waiting.is_object()
            && !s(&waiting["reason"]).is_empty()
            && s(&waiting["reason"]) != "PodInitializing"
        {
            reason = format!("Init:{}", s(&waiting["reason"]));
        } else {
            reason = format!("Init:{i}/{}", init_specs.len());
        }
        initializing = true;
        break;
    }

    if !initializing || pod_condition_true(status, "Initialized") {
        restarts = sidecar_restarts;
        last_restart = last_sidecar_restart;
        let mut has_running = false;
        for cs in arr(&status["containerStatuses"]).iter().rev() {
            restarts += int(&cs["restartCount"]);
            if let Some(t) = last_termination(cs) {
                last_restart = last_restart.max(t);
            }
            let state = &cs["state"];
            let waiting_reason = s(&state["waiting"]["reason"]);
            let terminated = &state["terminated"];
            if state["waiting"].is_object() && !waiting_reason.is_empty() {
                reason = waiting_reason.to_string();
            } else if terminated.is_object() && !s(&terminated["reason"]).is_empty() {
                reason = s(&terminated["reason"]).to_string();
            } else if terminated.is_object() {
                reason = if int(&terminated["signal"]) != 0 {
                    format!("Signal:{}", int(&terminated["signal"]))
                } else {
                    format!("ExitCode:{}", int(&terminated["exitCode"]))
                };
            } else if is_true(&cs["ready"]) && state["running"].is_object() {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            reason = if arr(&status["conditions"])
                .iter()
                .any(|c| s(&c["type"]) == "Ready" && s(&c["status"]) == "True")
            {
                "Running".to_string()
            } else {
                "NotReady".to_string()
            };
        }
    }

    if deleting(obj) && s(&status["reason"]) == "NodeLost" {
        reason = "Unknown".to_string();
    } else if deleting(obj) && phase != "Succeeded" && phase != "Failed" {
        reason = "Terminating".to_string();
    }

    let restarts_cell = match last_restart {
        Some(t) if restarts != 0 => {
            format!("{restarts} ({} ago)", human_duration_micros(now - t))
        }
        _ => restarts.to_string(),
    };

    // Upstream reads `podIPs`; the v1 conversion fills it from `podIP` when only that is set.
    let mut pod_ip = s(&status["podIPs"][0]["ip"]);
    if arr(&status["podIPs"]).is_empty() {
        pod_ip = s(&status["podIP"]);
    }
    let gates = arr(&spec["readinessGates"]);
    let readiness_gates = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let passed = gates
            .iter()
            .filter(|g| pod_condition_true(status, s(&g["conditionType"])))
            .count();
        format!("{passed}/{}", gates.len())
    };

    vec![
        name_cell(obj),
        Value::String(format!("{ready}/{total}")),
        Value::String(reason),
        Value::String(restarts_cell),
        age_cell(obj, now),
        Value::String(or_none(pod_ip)),
        Value::String(or_none(s(&spec["nodeName"]))),
        Value::String(or_none(s(&status["nominatedNodeName"]))),
        Value::String(readiness_gates),
    ]
}

fn pod_template_cells(obj: &Value) -> Vec<Value> {
    let template = &obj["template"];
    let [names, images] = container_cells(&template["spec"]);
    vec![
        name_cell(obj),
        names,
        images,
        Value::String(format_labels(&template["metadata"]["labels"])),
    ]
}

// ---- workloads ----------------------------------------------------------------------------------

/// `spec.replicas`, defaulted to 1 as the apps/v1 and core/v1 defaulting does.
fn desired_replicas(obj: &Value) -> i64 {
    int_or(&obj["spec"]["replicas"], 1)
}

fn pdb_cells(obj: &Value, now: i64) -> Vec<Value> {
    let spec = &obj["spec"];
    let int_or_string = |v: &Value| match v {
        Value::Null => "N/A".to_string(),
        Value::String(x) => x.clone(),
        other => int(other).to_string(),
    };
    vec![
        name_cell(obj),
        Value::String(int_or_string(&spec["minAvailable"])),
        Value::String(int_or_string(&spec["maxUnavailable"])),
        json!(int(&obj["status"]["disruptionsAllowed"])),
        age_cell(obj, now),
    ]
}

fn replication_controller_cells(obj: &Value, now: i64) -> Vec<Value> {
    let [names, images] = container_cells(&obj["spec"]["template"]["spec"]);
    vec![
        name_cell(obj),
        json!(desired_replicas(obj)),
        json!(int(&obj["status"]["replicas"])),
        json!(int(&obj["status"]["readyReplicas"])),
        age_cell(obj, now),
        names,
        images,
        Value::String(format_labels(&obj["spec"]["selector"])),
    ]
}

fn replica_set_cells(obj: &Value, now: i64) -> Vec<Value> {
    let [names, images] = container_cells(&obj["spec"]["template"]["spec"]);
    vec![
        name_cell(obj),
        json!(desired_replicas(obj)),
        json!(int(&obj["status"]["replicas"])),
        json!(int(&obj["status"]["readyReplicas"])),
        age_cell(obj, now),
        names,
        images,
        Value::String(format_label_selector(&obj["spec"]["selector"])),
    ]
}

fn daemon_set_cells(obj: &Value, now: i64) -> Vec<Value> {
    let status = &obj["status"];
    let pod_spec = &obj["spec"]["template"]["spec"];
    let [names, images] = container_cells(pod_spec);
    vec![
        name_cell(obj),
        json!(int(&status["desiredNumberScheduled"])),
        json!(int(&status["currentNumberScheduled"])),
        json!(int(&status["numberReady"])),
        json!(int(&status["updatedNumberScheduled"])),
        json!(int(&status["numberAvailable"])),
        Value::String(format_labels(&pod_spec["nodeSelector"])),
        age_cell(obj, now),
        names,
        images,
        Value::String(format_label_selector(&obj["spec"]["selector"])),
    ]
}

fn stateful_set_cells(obj: &Value, now: i64) -> Vec<Value> {
    let [names, images] = container_cells(&obj["spec"]["template"]["spec"]);
    vec![
        name_cell(obj),
        Value::String(format!(
            "{}/{}",
            int(&obj["status"]["readyReplicas"]),
            desired_replicas(obj)
        )),
        age_cell(obj, now),
        names,
        images,
    ]
}

fn deployment_cells(obj: &Value, now: i64) -> Vec<Value> {
    let status = &obj["status"];
    let [names, images] = container_cells(&obj["spec"]["template"]["spec"]);
    // Upstream prints the selector itself here (not "<none>" when empty), "<invalid>" when it
    // does not parse.
    let selector = label_selector(&obj["spec"]["selector"]).unwrap_or_else(|| "<invalid>".into());
    vec![
        name_cell(obj),
        Value::String(format!(
            "{}/{}",
            int(&status["readyReplicas"]),
            desired_replicas(obj)
        )),
        json!(int(&status["updatedReplicas"])),
        json!(int(&status["availableReplicas"])),
        age_cell(obj, now),
        names,
        images,
        Value::String(selector),
    ]
}

/// Whether the first condition of `type_` in a Job's status is True.
fn job_condition(status: &Value, type_: &str) -> bool {
    pod_condition_true(status, type_)
}

fn job_cells(obj: &Value, now: i64) -> Vec<Value> {
    let spec = &obj["spec"];
    let status = &obj["status"];
    let succeeded = int(&status["succeeded"]);
    let completions = if spec["completions"].is_number() {
        format!("{succeeded}/{}", int(&spec["completions"]))
    } else {
        let parallelism = int(&spec["parallelism"]);
        if parallelism > 1 {
            format!("{succeeded}/1 of {parallelism}")
        } else {
            format!("{succeeded}/1")
        }
    };
    let duration = match (
        timestamp(&status["startTime"]),
        timestamp(&status["completionTime"]),
    ) {
        (None, _) => String::new(),
        (Some(start), None) => human_duration_micros(now - start),
        (Some(start), Some(end)) => human_duration_micros(end - start),
    };
    let state = if job_condition(status, "Complete") {
        "Complete"
    } else if job_condition(status, "Failed") {
        "Failed"
    } else if deleting(obj) {
        "Terminating"
    } else if job_condition(status, "Suspended") {
        "Suspended"
    } else if job_condition(status, "FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    };
    let [names, images] = container_cells(&spec["template"]["spec"]);
    vec![
        name_cell(obj),
        str_cell(state),
        Value::String(completions),
        Value::String(duration),
        age_cell(obj, now),
        names,
        images,
        Value::String(format_label_selector(&spec["selector"])),
    ]
}

fn cron_job_cells(obj: &Value, now: i64) -> Vec<Value> {
    let spec = &obj["spec"];
    let status = &obj["status"];
    let last_schedule = if status["lastScheduleTime"].is_null() {
        "<none>".to_string()
    } else {
        since(&status["lastScheduleTime"], now)
    };
    let time_zone = match &spec["timeZone"] {
        Value::String(z) => z.clone(),
        _ => "<none>".to_string(),
    };
    // batch/v1 defaults `suspend` to false.
    let suspend = match spec["suspend"].as_bool() {
        Some(true) => "True",
        _ => "False",
    };
    let job_spec = &spec["jobTemplate"]["spec"];
    let [names, images] = container_cells(&job_spec["template"]["spec"]);
    vec![
        name_cell(obj),
        str_cell(s(&spec["schedule"])),
        Value::String(time_zone),
        str_cell(suspend),
        json!(len_of(&status["active"])),
        Value::String(last_schedule),
        age_cell(obj, now),
        names,
        images,
        Value::String(format_label_selector(&job_spec["selector"])),
    ]
}

fn controller_revision_cells(obj: &Value, now: i64) -> Vec<Value> {
    let controller = arr(&obj["metadata"]["ownerReferences"])
        .iter()
        .find(|r| is_true(&r["controller"]));
    let controller_name = match controller {
        None => "<none>".to_string(),
        Some(r) => {
            // The group of `apiVersion` (empty for core `v1`).
            let api_version = s(&r["apiVersion"]);
            let group = match api_version.split_once('/') {
                Some((g, _)) => g,
                None => "",
            };
            let kind = s(&r["kind"]);
            let name = s(&r["name"]);
            match (kind, group) {
                ("", "") => name.to_string(),
                (k, "") => format!("{}/{name}", k.to_lowercase()),
                (k, g) => format!("{}/{name}", format!("{k}.{g}").to_lowercase()),
            }
        }
    };
    vec![
        name_cell(obj),
        Value::String(controller_name),
        json!(int(&obj["revision"])),
        age_cell(obj, now),
    ]
}

fn scale_cells(obj: &Value, now: i64) -> Vec<Value> {
    vec![
        name_cell(obj),
        json!(int(&obj["spec"]["replicas"])),
        json!(int(&obj["status"]["replicas"])),
        age_cell(obj, now),
    ]
}

// ---- services and networking -------------------------------------------------------------------

/// IPs (or host names) of load-balancer ingress points: sorted, unique, comma-separated.
fn load_balancer_ingress(status: &Value) -> String {
    let set: BTreeSet<&str> = arr(&status["loadBalancer"]["ingress"])
        .iter()
        .filter_map(|i| match (s(&i["ip"]), s(&i["hostname"])) {
            ("", "") => None,
            ("", h) => Some(h),
            (ip, _) => Some(ip),
        })
        .collect();
    set.into_iter().collect::<Vec<_>>().join(",")
}

fn service_cells(obj: &Value, now: i64) -> Vec<Value> {
    let spec = &obj["spec"];
    let svc_type = match s(&spec["type"]) {
        "" => "ClusterIP",
        t => t,
    };
    let cluster_ip = match s(&spec["clusterIPs"][0]) {
        "" => s(&spec["clusterIP"]),
        ip => ip,
    };
    let external_ips: Vec<&str> = arr(&spec["externalIPs"]).iter().map(s).collect();
    let external = match svc_type {
        "ClusterIP" | "NodePort" if !external_ips.is_empty() => external_ips.join(","),
        "ClusterIP" | "NodePort" => "<none>".to_string(),
        "LoadBalancer" => {
            let lb = load_balancer_ingress(&obj["status"]);
            if !external_ips.is_empty() {
                let mut all: Vec<&str> = if lb.is_empty() {
                    Vec::new()
                } else {
                    lb.split(',').collect()
                };
                all.extend(external_ips.iter().copied());
                all.join(",")
            } else if !lb.is_empty() {
                lb
            } else {
                "<pending>".to_string()
            }
        }
        "ExternalName" => s(&spec["externalName"]).to_string(),
        _ => "<unknown>".to_string(),
    };
    let ports: Vec<String> = arr(&spec["ports"])
        .iter()
        .map(|p| {
            let protocol = match s(&p["protocol"]) {
                "" => "TCP",
                x => x,
            };
            let port = int(&p["port"]);
            match int(&p["nodePort"]) {
                np if np > 0 => format!("{port}:{np}/{protocol}"),
                _ => format!("{port}/{protocol}"),
            }
        })
        .collect();
    vec![
        name_cell(obj),
        str_cell(svc_type),
        Value::String(or_none(cluster_ip)),
        Value::String(external),
        Value::String(or_none(&ports.join(","))),
        age_cell(obj, now),
        Value::String(format_labels(&spec["selector"])),
    ]
}

/// Up to three items, then ` + N more...`; `<unset>` when there are none.
fn list_with_more(items: Vec<String>, max: usize) -> String {
    let count = items.len();
    let shown = items[..count.min(max)].join(",");
    if count > max {
        format!("{shown} + {} more...", count - max)
    } else if shown.is_empty() {
        "<unset>".to_string()
    } else {
        shown
    }
}

fn join_host_port(host: &str, port: i64) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn endpoints_cells(obj: &Value, now: i64) -> Vec<Value> {
    let subsets = arr(&obj["subsets"]);
    let text = if subsets.is_empty() {
        "<none>".to_string()
    } else {
        const MAX: usize = 3;
        let mut list: Vec<String> = Vec::new();
        let mut count = 0usize;
        let mut more = false;
        for ss in subsets {
            let addresses = arr(&ss["addresses"]);
            let ports = arr(&ss["ports"]);
            if ports.is_empty() {
                // Headless services may have no ports.
                count += addresses.len();
                for a in addresses {
                    if list.len() == MAX {
                        more = true;
                        break;
                    }
                    list.push(s(&a["ip"]).to_string());
                }
                continue;
            }
            for p in ports {
                count += addresses.len();
                for a in addresses {
                    if list.len() == MAX {
                        more = true;
                        break;
                    }
                    list.push(join_host_port(s(&a["ip"]), int(&p["port"])));
                }
            }
        }
        let joined = list.join(",");
        if more {
            format!("{joined} + {} more...", count - MAX)
        } else {
            joined
        }
    };
    vec![name_cell(obj), Value::String(text), age_cell(obj, now)]
}

fn endpoint_slice_cells(obj: &Value, now: i64) -> Vec<Value> {
    let ports: Vec<String> = arr(&obj["ports"])
        .iter()
        .map(|p| {
            if p["port"].is_number() {
                int(&p["port"]).to_string()
            } else if let Some(name) = p["name"].as_str() {
                name.to_string()
            } else {
                "*".to_string()
            }
        })
        .collect();
    let addresses: Vec<String> = arr(&obj["endpoints"])
        .iter()
        .flat_map(|e| arr(&e["addresses"]).iter().map(|a| s(a).to_string()))
        .collect();
    vec![
        name_cell(obj),
        str_cell(s(&obj["addressType"])),
        Value::String(list_with_more(ports, 3)),
        Value::String(list_with_more(addresses, 3)),
        age_cell(obj, now),
    ]
}

fn ingress_cells(obj: &Value, now: i64) -> Vec<Value> {
    let spec = &obj["spec"];
    let class = match &spec["ingressClassName"] {
        Value::String(c) => c.clone(),
        _ => "<none>".to_string(),
    };
    let rules = arr(&spec["rules"]);
    const MAX: usize = 3;
    let mut hosts: Vec<&str> = Vec::new();
    let mut more = false;
    for rule in rules {
        if hosts.len() == MAX {
            more = true;
        }
        let host = s(&rule["host"]);
        if !more && !host.is_empty() {
            hosts.push(host);
        }
    }
    let hosts = if hosts.is_empty() {
        "*".to_string()
    } else if more {
        format!("{} + {} more...", hosts.join(","), rules.len() - MAX)
    } else {
        hosts.join(",")
    };
    let ports = if arr(&spec["tls"]).is_empty() {
        "80"
    } else {
        "80, 443"
    };
    vec![
        name_cell(obj),
        Value::String(class),
        Value::String(hosts),
        Value::String(load_balancer_ingress(&obj["status"])),
        str_cell(ports),
        age_cell(obj, now),
    ]
}

fn ingress_class_cells(obj: &Value, now: i64) -> Vec<Value> {
    let params = &obj["spec"]["parameters"];
    let parameters = if params.is_object() {
        let mut p = s(&params["kind"]).to_string();
        if let Some(group) = params["apiGroup"].as_str() {
            p.push('.');
            p.push_str(group);
        }
        p.push('/');
        p.push_str(s(&params["name"]));
        p
    } else {
        "<none>".to_string()
    };
    vec![
        name_cell(obj),
        str_cell(s(&obj["spec"]["controller"])),
        Value::String(parameters),
        age_cell(obj, now),
    ]
}

fn network_policy_cells(obj: &Value, now: i64) -> Vec<Value> {
    // `podSelector` is a struct, not a pointer, in upstream: absent means empty.
    let selector = match &obj["spec"]["podSelector"] {
        Value::Null => json!({}),
        v => v.clone(),
    };
    vec![
        name_cell(obj),
        Value::String(format_label_selector(&selector)),
        age_cell(obj, now),
    ]
}

// ---- cluster ------------------------------------------------------------------------------------

fn node_address(obj: &Value, type_: &str) -> String {
    arr(&obj["status"]["addresses"])
        .iter()
        .find(|a| s(&a["type"]) == type_)
        .map_or_else(|| "<none>".to_string(), |a| s(&a["address"]).to_string())
}

fn node_cells(obj: &Value, now: i64) -> Vec<Value> {
    // Only the Ready condition counts; the last one of that type wins, as in upstream's map.
    let ready = arr(&obj["status"]["conditions"])
        .iter()
        .rev()
        .find(|c| s(&c["type"]) == "Ready");
    let mut status = vec![match ready {
        Some(c) if s(&c["status"]) == "True" => "Ready",
        Some(_) => "NotReady",
        None => "Unknown",
    }];
    if is_true(&obj["spec"]["unschedulable"]) {
        status.push("SchedulingDisabled");
    }

    let mut roles = BTreeSet::new();
    if let Some(labels) = obj["metadata"]["labels"].as_object() {
        for (k, v) in labels {
            if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
                if !role.is_empty() {
                    roles.insert(role);
                }
            } else if k == "kubernetes.io/role" && !s(v).is_empty() {
                roles.insert(s(v));
            }
        }
    }
    let roles = roles.into_iter().collect::<Vec<_>>().join(",");

    let info = &obj["status"]["nodeInfo"];
    let unknown = |v: &str| {
        if v.is_empty() {
            "<unknown>".to_string()
        } else {
            v.to_string()
        }
    };
    vec![
        name_cell(obj),
        Value::String(status.join(",")),
        Value::String(or_none(&roles)),
        age_cell(obj, now),
        str_cell(s(&info["kubeletVersion"])),
        Value::String(node_address(obj, "InternalIP")),
        Value::String(node_address(obj, "ExternalIP")),
        Value::String(unknown(s(&info["osImage"]))),
        Value::String(unknown(s(&info["kernelVersion"]))),
        Value::String(unknown(s(&info["containerRuntimeVersion"]))),
    ]
}

fn namespace_cells(obj: &Value, now: i64) -> Vec<Value> {
    // core/v1 defaulting sets the phase to Active.
    let phase = match s(&obj["status"]["phase"]) {
        "" => "Active",
        p => p,
    };
    vec![name_cell(obj), str_cell(phase), age_cell(obj, now)]
}

/// Reads an Event in either form: core `v1` (`involvedObject`, `message`, `firstTimestamp`,
/// ...) or `events.k8s.io/v1` (`regarding`, `note`, `deprecatedFirstTimestamp`, ...), which
/// upstream converts to the same internal Event before printing.
fn either<'a>(obj: &'a Value, core: &str, events: &str) -> &'a Value {
    match &obj[core] {
        Value::Null => &obj[events],
        v => v,
    }
}

fn event_cells(obj: &Value, now: i64) -> Vec<Value> {
    let first_seen = match timestamp(either(obj, "firstTimestamp", "deprecatedFirstTimestamp")) {
        Some(t) => human_duration_micros(now - t),
        None => since(&obj["eventTime"], now),
    };
    let mut last_seen = match timestamp(either(obj, "lastTimestamp", "deprecatedLastTimestamp")) {
        Some(t) => human_duration_micros(now - t),
        None => first_seen.clone(),
    };
    let mut count = int(either(obj, "count", "deprecatedCount"));
    let series = &obj["series"];
    if series.is_object() {
        last_seen = since(&series["lastObservedTime"], now);
        count = int(&series["count"]);
    } else if count == 0 {
        // Singleton events of the new API carry no count.
        count = 1;
    }

    let involved = either(obj, "involvedObject", "regarding");
    let kind = s(&involved["kind"]).to_lowercase();
    let target = match s(&involved["name"]) {
        "" => kind,
        name => format!("{kind}/{name}"),
    };
    let source = either(obj, "source", "deprecatedSource");
    let first_non_empty = |a: &'static str, b: &'static str| -> String {
        match s(&source[a]) {
            "" => s(&obj[b]).to_string(),
            x => x.to_string(),
        }
    };
    let component = first_non_empty("component", "reportingController");
    let instance = first_non_empty("host", "reportingInstance");
    let source = if instance.is_empty() {
        component
    } else {
        format!("{component}, {instance}")
    };
    vec![
        Value::String(last_seen),
        str_cell(s(&obj["type"])),
        str_cell(s(&obj["reason"])),
        Value::String(target),
        str_cell(s(&involved["fieldPath"])),
        Value::String(source),
        str_cell(s(either(obj, "message", "note")).trim()),
        Value::String(first_seen),
        json!(count),
        name_cell(obj),
    ]
}

fn api_service_cells(obj: &Value, now: i64) -> Vec<Value> {
    // No service: the group/version is served by this server itself.
    let service = match &obj["spec"]["service"] {
        Value::Object(svc) => format!(
            "{}/{}",
            svc.get("namespace")
                .and_then(Value::as_str)
                .unwrap_or_default(),
            svc.get("name").and_then(Value::as_str).unwrap_or_default()
        ),
        _ => "Local".to_string(),
    };
    let available = obj["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Available")
        .map(|c| {
            let status = s(&c["status"]);
            match s(&c["reason"]) {
                r if status != "True" && !r.is_empty() => format!("{status} ({r})"),
                _ => status.to_string(),
            }
        })
        .unwrap_or_else(|| "Unknown".to_string());
    vec![
        name_cell(obj),
        str_cell(&service),
        str_cell(&available),
        age_cell(obj, now),
    ]
}

fn lease_cells(obj: &Value, now: i64) -> Vec<Value> {
    vec![
        name_cell(obj),
        str_cell(s(&obj["spec"]["holderIdentity"])),
        age_cell(obj, now),
    ]
}

fn priority_class_cells(obj: &Value, now: i64) -> Vec<Value> {
    // scheduling/v1 defaults preemptionPolicy to PreemptLowerPriority.
    let preemption = match &obj["preemptionPolicy"] {
        Value::String(p) => p.as_str(),
        _ => "PreemptLowerPriority",
    };
    vec![
        name_cell(obj),
        json!(int(&obj["value"])),
        json!(is_true(&obj["globalDefault"])),
        age_cell(obj, now),
        str_cell(preemption),
    ]
}

// ---- configuration ------------------------------------------------------------------------------

fn config_map_cells(obj: &Value, now: i64) -> Vec<Value> {
    vec![
        name_cell(obj),
        json!(len_of(&obj["data"]) + len_of(&obj["binaryData"])),
        age_cell(obj, now),
    ]
}

fn secret_cells(obj: &Value, now: i64) -> Vec<Value> {
    // The v1 conversion folds `stringData` into `data`; core/v1 defaulting makes the type Opaque.
    let mut keys: BTreeSet<&str> = BTreeSet::new();
    for field in ["data", "stringData"] {
        if let Some(m) = obj[field].as_object() {
            keys.extend(m.keys().map(String::as_str));
        }
    }
    let type_ = match s(&obj["type"]) {
        "" => "Opaque",
        t => t,
    };
    vec![
        name_cell(obj),
        str_cell(type_),
        json!(keys.len()),
        age_cell(obj, now),
    ]
}

fn service_account_cells(obj: &Value, now: i64) -> Vec<Value> {
    vec![
        name_cell(obj),
        json!(len_of(&obj["secrets"])),
        age_cell(obj, now),
    ]
}

fn resource_quota_cells(obj: &Value, now: i64) -> Vec<Value> {
    let status = &obj["status"];
    let mut requests: Vec<String> = Vec::new();
    let mut limits: Vec<String> = Vec::new();
    if let Some(hard) = status["hard"].as_object() {
        let mut names: Vec<&String> = hard.keys().collect();
        names.sort();
        for name in names {
            let text = format!(
                "{name}: {}/{}",
                quantity_string(&status["used"][name.as_str()]),
                quantity_string(&hard[name.as_str()]),
            );
            let mut pieces = name.split('.');
            if pieces.next() == Some("limits") && pieces.next().is_some() {
                limits.push(text);
            } else {
                requests.push(text);
            }
        }
    }
    vec![
        name_cell(obj),
        Value::String(requests.join(", ")),
        Value::String(limits.join(", ")),
        age_cell(obj, now),
    ]
}

fn role_binding_cells(obj: &Value, now: i64) -> Vec<Value> {
    let role_ref = &obj["roleRef"];
    let mut users = Vec::new();
    let mut groups = Vec::new();
    let mut service_accounts = Vec::new();
    for subject in arr(&obj["subjects"]) {
        match s(&subject["kind"]) {
            "ServiceAccount" => service_accounts.push(format!(
                "{}/{}",
                s(&subject["namespace"]),
                s(&subject["name"])
            )),
            "User" => users.push(s(&subject["name"]).to_string()),
            "Group" => groups.push(s(&subject["name"]).to_string()),
            _ => {}
        }
    }
    vec![
        name_cell(obj),
        Value::String(format!("{}/{}", s(&role_ref["kind"]), s(&role_ref["name"]))),
        age_cell(obj, now),
        Value::String(users.join(", ")),
        Value::String(groups.join(", ")),
        Value::String(service_accounts.join(", ")),
    ]
}

fn hpa_cells(obj: &Value, now: i64) -> Vec<Value> {
    let spec = &obj["spec"];
    let status = &obj["status"];
    let target = &spec["scaleTargetRef"];
    let (metrics, current) = hpa_metrics(obj);
    // autoscaling defaulting sets minReplicas to 1.
    let min_pods = int_or(&spec["minReplicas"], 1);
    vec![
        name_cell(obj),
        Value::String(format!("{}/{}", s(&target["kind"]), s(&target["name"]))),
        Value::String(format_hpa_metrics(&metrics, &current)),
        Value::String(min_pods.to_string()),
        json!(int(&spec["maxReplicas"])),
        json!(int(&status["currentReplicas"])),
        age_cell(obj, now),
    ]
}

/// The spec metrics and status metrics in `autoscaling/v2` form. An `autoscaling/v1` object's
/// CPU target becomes a Resource metric (as the conversion does); with no metric at all, the
/// `autoscaling/v2` default (80% average CPU utilisation) applies, as the object is stored in
/// `v2` and upstream decodes it with defaulting before printing.
fn hpa_metrics(obj: &Value) -> (Vec<Value>, Vec<Value>) {
    let spec = &obj["spec"];
    let status = &obj["status"];
    let v1 = spec.get("metrics").is_none()
        && (spec.get("targetCPUUtilizationPercentage").is_some()
            || s(&obj["apiVersion"]) == "autoscaling/v1");
    let mut metrics = arr(&spec["metrics"]).to_vec();
    let mut current = arr(&status["currentMetrics"]).to_vec();
    if v1 {
        let target = int_or(&spec["targetCPUUtilizationPercentage"], 80);
        metrics = vec![json!({
            "type": "Resource",
            "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": target}},
        })];
        current = match &status["currentCPUUtilizationPercentage"] {
            Value::Null => Vec::new(),
            v => vec![json!({
                "type": "Resource",
                "resource": {"name": "cpu", "current": {"averageUtilization": int(v)}},
            })],
        };
    } else if metrics.is_empty() {
        metrics = vec![json!({
            "type": "Resource",
            "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}},
        })];
    }
    (metrics, current)
}

/// A metric's quantity as upstream's `(*Quantity).String()`: `<nil>` when absent.
fn quantity_or_nil(v: &Value) -> String {
    if v.is_null() {
        "<nil>".to_string()
    } else {
        quantity_string(v)
    }
}

fn format_hpa_metrics(specs: &[Value], statuses: &[Value]) -> String {
    if specs.is_empty() {
        return "<none>".to_string();
    }
    const MAX: usize = 2;
    let mut list: Vec<String> = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let st = statuses.get(i).unwrap_or(&Value::Null);
        let item = match s(&spec["type"]) {
            kind @ ("External" | "Object") => {
                let field = if kind == "External" {
                    "external"
                } else {
                    "object"
                };
                let target = &spec[field]["target"];
                let cur = &st[field];
                if !target["averageValue"].is_null() {
                    let current = if cur.is_object() && !cur["current"]["averageValue"].is_null() {
                        quantity_string(&cur["current"]["averageValue"])
                    } else {
                        "<unknown>".to_string()
                    };
                    format!(
                        "{current}/{} (avg)",
                        quantity_string(&target["averageValue"])
                    )
                } else {
                    let current = if cur.is_object() {
                        quantity_or_nil(&cur["current"]["value"])
                    } else {
                        "<unknown>".to_string()
                    };
                    format!("{current}/{}", quantity_or_nil(&target["value"]))
                }
            }
            "Pods" => {
                let current = if st["pods"].is_object() {
                    quantity_or_nil(&st["pods"]["current"]["averageValue"])
                } else {
                    "<unknown>".to_string()
                };
                format!(
                    "{current}/{}",
                    quantity_or_nil(&spec["pods"]["target"]["averageValue"])
                )
            }
            kind @ ("Resource" | "ContainerResource") => {
                let field = if kind == "Resource" {
                    "resource"
                } else {
                    "containerResource"
                };
                let source = &spec[field];
                let target = &source["target"];
                let cur = &st[field];
                let name = s(&source["name"]);
                if !target["averageValue"].is_null() {
                    let current = if cur.is_object() {
                        quantity_or_nil(&cur["current"]["averageValue"])
                    } else {
                        "<unknown>".to_string()
                    };
                    format!(
                        "{name}: {current}/{}",
                        quantity_string(&target["averageValue"])
                    )
                } else {
                    let current =
                        if cur.is_object() && cur["current"]["averageUtilization"].is_number() {
                            format!("{}%", int(&cur["current"]["averageUtilization"]))
                        } else {
                            "<unknown>".to_string()
                        };
                    let target = if target["averageUtilization"].is_number() {
                        format!("{}%", int(&target["averageUtilization"]))
                    } else {
                        "<auto>".to_string()
                    };
                    format!("{name}: {current}/{target}")
                }
            }
            _ => "<unknown type>".to_string(),
        };
        list.push(item);
    }
    let count = list.len();
    if count > MAX {
        format!("{} + {} more...", list[..MAX].join(", "), count - MAX)
    } else {
        list.join(", ")
    }
}

// ---- storage ------------------------------------------------------------------------------------

fn access_modes(modes: &Value) -> String {
    let modes: Vec<&str> = arr(modes).iter().map(s).collect();
    [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ]
    .iter()
    .filter(|(mode, _)| modes.contains(mode))
    .map(|(_, short)| *short)
    .collect::<Vec<_>>()
    .join(",")
}

/// The class of a volume or claim: the beta annotation wins over `storageClassName`.
fn storage_class_name(obj: &Value) -> String {
    match obj["metadata"]["annotations"].get("volume.beta.kubernetes.io/storage-class") {
        Some(v) => s(v).to_string(),
        None => s(&obj["spec"]["storageClassName"]).to_string(),
    }
}

fn persistent_volume_cells(obj: &Value, now: i64) -> Vec<Value> {
    let spec = &obj["spec"];
    let claim = &spec["claimRef"];
    let claim = if claim.is_object() {
        format!("{}/{}", s(&claim["namespace"]), s(&claim["name"]))
    } else {
        String::new()
    };
    // core/v1 defaulting: reclaim policy Retain, phase Pending, volume mode Filesystem.
    let reclaim = match s(&spec["persistentVolumeReclaimPolicy"]) {
        "" => "Retain",
        r => r,
    };
    let phase = if deleting(obj) {
        "Terminating"
    } else {
        match s(&obj["status"]["phase"]) {
            "" => "Pending",
            p => p,
        }
    };
    let volume_mode = match s(&spec["volumeMode"]) {
        "" => "Filesystem",
        m => m,
    };
    let attributes_class = match &spec["volumeAttributesClassName"] {
        Value::String(c) => c.clone(),
        _ => "<unset>".to_string(),
    };
    vec![
        name_cell(obj),
        Value::String(quantity_string(&spec["capacity"]["storage"])),
        Value::String(access_modes(&spec["accessModes"])),
        str_cell(reclaim),
        str_cell(phase),
        Value::String(claim),
        Value::String(storage_class_name(obj)),
        Value::String(attributes_class),
        str_cell(s(&obj["status"]["reason"])),
        age_cell(obj, now),
        str_cell(volume_mode),
    ]
}

fn persistent_volume_claim_cells(obj: &Value, now: i64) -> Vec<Value> {
    let spec = &obj["spec"];
    let status = &obj["status"];
    let phase = if deleting(obj) {
        "Terminating"
    } else {
        match s(&status["phase"]) {
            "" => "Pending",
            p => p,
        }
    };
    let volume = s(&spec["volumeName"]);
    let (capacity, modes) = if volume.is_empty() {
        (String::new(), String::new())
    } else {
        (
            quantity_string(&status["capacity"]["storage"]),
            access_modes(&status["accessModes"]),
        )
    };
    let volume_mode = match s(&spec["volumeMode"]) {
        "" => "Filesystem",
        m => m,
    };
    let attributes_class = match &spec["volumeAttributesClassName"] {
        Value::String(c) => c.clone(),
        _ => "<unset>".to_string(),
    };
    vec![
        name_cell(obj),
        str_cell(phase),
        str_cell(volume),
        Value::String(capacity),
        Value::String(modes),
        Value::String(storage_class_name(obj)),
        Value::String(attributes_class),
        age_cell(obj, now),
        str_cell(volume_mode),
    ]
}

fn storage_class_cells(obj: &Value, now: i64) -> Vec<Value> {
    let annotations = &obj["metadata"]["annotations"];
    let is_default = s(&annotations["storageclass.kubernetes.io/is-default-class"]) == "true"
        || s(&annotations["storageclass.beta.kubernetes.io/is-default-class"]) == "true";
    let mut name = s(&obj["metadata"]["name"]).to_string();
    if is_default {
        name.push_str(" (default)");
    }
    let reclaim = match &obj["reclaimPolicy"] {
        Value::String(r) => r.as_str(),
        _ => "Delete",
    };
    let binding = match &obj["volumeBindingMode"] {
        Value::String(b) => b.as_str(),
        _ => "Immediate",
    };
    vec![
        Value::String(name),
        str_cell(s(&obj["provisioner"])),
        str_cell(reclaim),
        str_cell(binding),
        json!(is_true(&obj["allowVolumeExpansion"])),
        age_cell(obj, now),
    ]
}

// ---- labels and selectors -----------------------------------------------------------------------

/// A label map as upstream's `labels.FormatLabels`: `k=v` pairs sorted as strings, joined by
/// commas; `<none>` when empty.
pub fn format_labels(labels: &Value) -> String {
    let mut pairs: Vec<String> = match labels.as_object() {
        Some(m) => m.iter().map(|(k, v)| format!("{k}={}", s(v))).collect(),
        None => Vec::new(),
    };
    if pairs.is_empty() {
        return "<none>".to_string();
    }
    pairs.sort();
    pairs.join(",")
}

/// A `metav1.LabelSelector` as upstream's `FormatLabelSelector`: its selector string,
/// `<none>` when it selects nothing or everything, `<error>` when it is invalid.
pub fn format_label_selector(selector: &Value) -> String {
    match label_selector(selector) {
        None => "<error>".to_string(),
        Some(x) if x.is_empty() => "<none>".to_string(),
        Some(x) => x,
    }
}

/// The selector string of a `metav1.LabelSelector` (`LabelSelectorAsSelector(...).String()`):
/// requirements sorted by key, `a=b`, `a in (x,y)`, `a notin (x)`, `a`, `!a`; empty for a
/// missing or empty selector; `None` when the selector is invalid.
pub fn label_selector(selector: &Value) -> Option<String> {
    if selector.is_null() {
        return Some(String::new());
    }
    let labels = selector["matchLabels"].as_object();
    let expressions = arr(&selector["matchExpressions"]);
    let mut reqs: Vec<(String, String)> = Vec::new();
    let valid_key = |k: &str| crate::validation::qualified_name(k).is_empty();
    let valid_value = |v: &str| crate::validation::label_value(v).is_empty();
    if let Some(labels) = labels {
        for (k, v) in labels {
            let v = s(v);
            if !valid_key(k) || !valid_value(v) {
                return None;
            }
            reqs.push((k.clone(), format!("{k}={v}")));
        }
    }
    for e in expressions {
        let key = s(&e["key"]);
        if !valid_key(key) {
            return None;
        }
        let mut values: Vec<&str> = arr(&e["values"]).iter().map(s).collect();
        if !values.iter().all(|v| valid_value(v)) {
            return None;
        }
        values.sort_unstable();
        let text = match s(&e["operator"]) {
            "In" | "NotIn" if values.is_empty() => return None,
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" | "DoesNotExist" if !values.is_empty() => return None,
            "Exists" => key.to_string(),
            "DoesNotExist" => format!("!{key}"),
            _ => return None,
        };
        reqs.push((key.to_string(), text));
    }
    reqs.sort_by(|a, b| a.0.cmp(&b.0));
    Some(
        reqs.into_iter()
            .map(|(_, text)| text)
            .collect::<Vec<_>>()
            .join(","),
    )
}

// ---- time ---------------------------------------------------------------------------------------

const MICROS: i64 = 1_000_000;

/// Go's zero `time.Time` (0001-01-01T00:00:00Z), which upstream treats as unset.
const ZERO_TIME_MICROS: i64 = -62_135_596_800 * MICROS;

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM-DDTHH:MM:SSZ` (or with `.ffffff` microseconds) for Unix seconds in UTC; `None`
/// outside years 0–9999.
pub fn format_timestamp(secs: i64, micros: Option<i64>) -> Option<String> {
    // 0000-01-01T00:00:00Z and 9999-12-31T23:59:59Z.
    if !(-62_167_219_200..=253_402_300_799).contains(&secs) {
        return None;
    }
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Days since 1970-01-01 → civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    Some(match micros {
        None => format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}Z"),
        Some(us) => format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{us:06}Z"),
    })
}

/// Microseconds since the Unix epoch of an RFC 3339 timestamp (`2024-05-01T10:00:00Z`,
/// `2024-05-01T10:00:00.123456+02:00`); `None` if it does not parse.
pub fn parse_timestamp(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let digits = |from: usize, len: usize| -> Option<i64> {
        let part = b.get(from..from + len)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    let sep = |at: usize, c: &[u8]| b.get(at).is_some_and(|x| c.contains(x));
    if !(sep(4, b"-") && sep(7, b"-") && sep(10, b"Tt ") && sep(13, b":") && sep(16, b":")) {
        return None;
    }
    let (year, month, day) = (digits(0, 4)?, digits(5, 2)?, digits(8, 2)?);
    let (hour, minute, second) = (digits(11, 2)?, digits(14, 2)?, digits(17, 2)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    if second > 60 {
        return None;
    }
    let mut pos = 19;
    let mut micros = 0i64;
    if sep(pos, b".,") {
        pos += 1;
        let start = pos;
        while b.get(pos).is_some_and(u8::is_ascii_digit) {
            pos += 1;
        }
        if pos == start {
            return None;
        }
        let frac = &text[start..pos];
        let six: String = frac.chars().chain(std::iter::repeat('0')).take(6).collect();
        micros = six.parse().ok()?;
    }
    let offset = match b.get(pos) {
        Some(b'Z' | b'z') if pos + 1 == b.len() => 0,
        Some(sign @ (b'+' | b'-')) if pos + 6 == b.len() && sep(pos + 3, b":") => {
            let minutes = digits(pos + 1, 2)? * 60 + digits(pos + 4, 2)?;
            if *sign == b'-' {
                -minutes
            } else {
                minutes
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3_600 + minute * 60 + second - offset * 60;
    Some(secs * MICROS + micros)
}

/// A timestamp field: `None` when it is unset, not a valid time, or Go's zero time.
fn timestamp(v: &Value) -> Option<i64> {
    v.as_str()
        .and_then(parse_timestamp)
        .filter(|t| *t != ZERO_TIME_MICROS)
}

/// Upstream's `translateTimestampSince`: the age of a timestamp, `<unknown>` when unset.
fn since(v: &Value, now: i64) -> String {
    match timestamp(v) {
        Some(t) => human_duration_micros(now - t),
        None => "<unknown>".to_string(),
    }
}

/// The age of a timestamp field (`metadata.creationTimestamp`, ...) at `now_unix_secs`, as
/// `kubectl get` shows it: `5s`, `3m12s`, `2d3h`; `<unknown>` when unset.
pub fn age(timestamp: &Value, now_unix_secs: i64) -> String {
    since(timestamp, now_unix_secs.saturating_mul(MICROS))
}

/// Upstream's `duration.HumanDuration` of a number of seconds: `45s`, `3m12s`, `95m`, `5h3m`,
/// `20h`, `2d3h`, `30d`, `2y45d`, `9y`; `0s` just below zero, `<invalid>` further below.
pub fn human_duration(seconds: i64) -> String {
    human_duration_micros(seconds.saturating_mul(MICROS))
}

fn human_duration_micros(d: i64) -> String {
    let seconds = d / MICROS;
    if seconds < -1 {
        return "<invalid>".to_string();
    }
    if seconds < 0 {
        return "0s".to_string();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = d / (60 * MICROS);
    if minutes < 10 {
        return match seconds % 60 {
            0 => format!("{minutes}m"),
            s => format!("{minutes}m{s}s"),
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = d / (3_600 * MICROS);
    if hours < 8 {
        return match minutes % 60 {
            0 => format!("{hours}h"),
            m => format!("{hours}h{m}m"),
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        return match hours % 24 {
            0 => format!("{}d", hours / 24),
            h => format!("{}d{h}h", hours / 24),
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        return match (hours / 24) % 365 {
            0 => format!("{}y", hours / 24 / 365),
            dy => format!("{}y{dy}d", hours / 24 / 365),
        };
    }
    format!("{}y", hours / 24 / 365)
}

// ---- quantities ---------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum QuantityFormat {
    DecimalSI,
    BinarySI,
    DecimalExponent,
}

/// A `resource.Quantity` field as upstream's `Quantity.String()` prints it: canonical form
/// (`1024Mi` → `1Gi`, `0.5` → `500m`), `0` when absent, the text itself if it does not parse.
fn quantity_string(v: &Value) -> String {
    let text = match v {
        Value::Null => return "0".to_string(),
        Value::String(t) => t.trim().to_string(),
        Value::Number(n) => n.to_string(),
        other => return other.to_string(),
    };
    canonical_quantity(&text).unwrap_or(text)
}

/// The pieces of a quantity string: sign, integer digits (leading zeros stripped, `0` if
/// none), fraction digits, suffix.
fn split_quantity(text: &str) -> Option<(bool, &str, &str, &str)> {
    let b = text.as_bytes();
    let mut pos = 0;
    let mut positive = true;
    match b.first() {
        Some(b'-') => {
            positive = false;
            pos = 1;
        }
        Some(b'+') => pos = 1,
        _ => {}
    }
    while b.get(pos) == Some(&b'0') {
        pos += 1;
    }
    let start = pos;
    while b.get(pos).is_some_and(u8::is_ascii_digit) {
        pos += 1;
    }
    let mut num = &text[start..pos];
    if num.is_empty() {
        num = "0";
    }
    let mut denom = "";
    if b.get(pos) == Some(&b'.') {
        pos += 1;
        let start = pos;
        while b.get(pos).is_some_and(u8::is_ascii_digit) {
            pos += 1;
        }
        denom = &text[start..pos];
    }
    let suffix = &text[pos..];
    let digits_seen = text[..pos].bytes().any(|c| c.is_ascii_digit());
    if !digits_seen {
        return None;
    }
    Some((positive, num, denom, suffix))
}

/// (base, exponent, format) of a quantity suffix.
fn interpret_suffix(suffix: &str) -> Option<(u32, i32, QuantityFormat)> {
    use QuantityFormat::*;
    let decimal = |e| Some((10, e, DecimalSI));
    let binary = |e| Some((2, e, BinarySI));
    match suffix {
        "" => decimal(0),
        "n" => decimal(-9),
        "u" => decimal(-6),
        "m" => decimal(-3),
        "k" => decimal(3),
        "M" => decimal(6),
        "G" => decimal(9),
        "T" => decimal(12),
        "P" => decimal(15),
        "E" => decimal(18),
        "Ki" => binary(10),
        "Mi" => binary(20),
        "Gi" => binary(30),
        "Ti" => binary(40),
        "Pi" => binary(50),
        "Ei" => binary(60),
        _ => {
            let rest = suffix.strip_prefix(['e', 'E'])?;
            let digits = rest.strip_prefix(['+', '-']).unwrap_or(rest);
            if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            Some((10, rest.parse().ok()?, DecimalExponent))
        }
    }
}

fn pow10(e: u32) -> Option<i128> {
    10i128.checked_pow(e)
}

/// Upstream's canonical text of a quantity, or `None` if `text` is not a quantity (or is too
/// large for this implementation, in which case the caller prints it as given).
fn canonical_quantity(text: &str) -> Option<String> {
    let (positive, num, denom, suffix) = split_quantity(text)?;
    let (base, exponent, mut format) = interpret_suffix(suffix)?;

    // Upstream keeps the text as written when it is already canonical and fits its fast path.
    let shifted = format!("{num}{denom}");
    let denom_len = i32::try_from(denom.len()).ok()?;
    if format == QuantityFormat::BinarySI {
        let precision = 15 - num.len() as i64 - i64::from(exponent) * 3 / 10 - 1;
        if denom.is_empty() && precision >= 0 {
            if let Ok(value) = shifted.parse::<i64>() {
                if value.checked_mul(1i64 << exponent).is_some() && value & 0x07 != 0 {
                    return Some(text.to_string());
                }
            }
        }
    } else {
        let precision = 18 - (num.len() + denom.len()) as i64;
        let scale = exponent - denom_len;
        if precision >= 0
            && scale >= -9
            && scale % 3 == 0
            && !shifted.ends_with("000")
            && !shifted.starts_with('0')
            && shifted.parse::<i64>().is_ok()
        {
            return Some(text.to_string());
        }
    }

    // value = mantissa * 10^scale
    let mut mantissa: i128 = shifted.parse().ok()?;
    let mut scale: i32 = -denom_len;
    if base == 10 {
        scale = scale.checked_add(exponent)?;
    } else {
        mantissa = mantissa.checked_mul(1i128 << exponent)?;
    }
    // Round away from zero to nano precision.
    if scale < -9 && mantissa != 0 {
        let drop = u32::try_from(-9 - scale).ok()?;
        let div = pow10(drop)?;
        let rounded = mantissa / div + i128::from(mantissa % div != 0);
        mantissa = rounded;
        scale = -9;
    }
    // Normalise: move factors of ten into the scale.
    while mantissa != 0 && mantissa % 10 == 0 {
        mantissa /= 10;
        scale += 1;
    }
    if mantissa == 0 {
        return Some("0".to_string());
    }
    if format == QuantityFormat::BinarySI {
        // Upstream caps binary quantities at the largest int64.
        let max = i128::from(i64::MAX);
        let value = if scale >= 0 {
            mantissa.checked_mul(pow10(scale.unsigned_abs())?)
        } else {
            None
        };
        match value {
            Some(v) if v > max => {
                mantissa = max;
                scale = 0;
            }
            _ => {}
        }
        let integral = scale >= 0;
        let small = match value {
            Some(v) => v < 1024,
            None => !integral,
        };
        if small || !integral {
            format = QuantityFormat::DecimalSI;
        }
    }
    let sign = if positive { "" } else { "-" };
    match format {
        QuantityFormat::BinarySI => {
            let mut value = mantissa.checked_mul(pow10(u32::try_from(scale).ok()?)?)?;
            let mut times = 0;
            while value >= 1024 && value % 1024 == 0 {
                value /= 1024;
                times += 1;
            }
            let suffix = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"].get(times)?;
            Some(format!("{sign}{value}{suffix}"))
        }
        QuantityFormat::DecimalSI | QuantityFormat::DecimalExponent => {
            while scale.rem_euclid(3) != 0 {
                mantissa = mantissa.checked_mul(10)?;
                scale -= 1;
            }
            let suffix = if format == QuantityFormat::DecimalExponent {
                if scale == 0 {
                    String::new()
                } else {
                    format!("e{scale}")
                }
            } else {
                match scale {
                    -9 => "n".to_string(),
                    -6 => "u".to_string(),
                    -3 => "m".to_string(),
                    0 => String::new(),
                    3 => "k".to_string(),
                    6 => "M".to_string(),
                    9 => "G".to_string(),
                    12 => "T".to_string(),
                    15 => "P".to_string(),
                    18 => "E".to_string(),
                    e => format!("e{e}"),
                }
            };
            Some(format!("{sign}{mantissa}{suffix}"))
        }
    }
}

// ---- column descriptions ----------------------------------------------------------------------

/// Column descriptions: the API documentation (`SwaggerDoc`) of the fields upstream's columns
/// describe, as of k8s.io/api v0.33.
#[rustfmt::skip]
mod doc {
    pub const POD_STATUS_POD_IP: &str = "podIP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.";
    pub const POD_SPEC_NODE_NAME: &str = "NodeName indicates in which node this pod is scheduled. If empty, this pod is a candidate for scheduling by the scheduler defined in schedulerName. Once this field is set, the kubelet for this node becomes responsible for the lifecycle of this pod. This field should not be used to express a desire for the pod to be scheduled on a specific node. https://kubernetes.io/docs/concepts/scheduling-eviction/assign-pod-node/#nodename";
    pub const POD_STATUS_NOMINATED_NODE_NAME: &str = "nominatedNodeName is set only when this pod preempts other pods on the node, but it cannot be scheduled right away as preemption victims receive their graceful termination periods. This field does not guarantee that the pod will be scheduled on this node. Scheduler may decide to place the pod elsewhere if other nodes become available sooner. Scheduler may also decide to give the resources on this node to a higher priority pod that is created after preemption. As a result, this field may be different than PodSpec.nodeName when the pod is scheduled.";
    pub const POD_SPEC_READINESS_GATES: &str = "If specified, all readiness gates will be evaluated for pod readiness. A pod is ready when all its containers are ready AND all conditions specified in the readiness gates have status equal to \"True\" More info: https://git.k8s.io/enhancements/keps/sig-network/580-pod-readiness-gates";
    pub const REPLICATION_CONTROLLER_SPEC_REPLICAS: &str = "Replicas is the number of desired replicas. This is a pointer to distinguish between explicit zero and unspecified. Defaults to 1. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicationcontroller#what-is-a-replicationcontroller";
    pub const REPLICATION_CONTROLLER_STATUS_REPLICAS: &str = "Replicas is the most recently observed number of replicas. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicationcontroller#what-is-a-replicationcontroller";
    pub const REPLICATION_CONTROLLER_STATUS_READY_REPLICAS: &str = "The number of ready replicas for this replication controller.";
    pub const REPLICATION_CONTROLLER_SPEC_SELECTOR: &str = "Selector is a label query over pods that should match the Replicas count. If Selector is empty, it is defaulted to the labels present on the Pod template. Label keys and values that must match in order to be controlled by this replication controller, if empty defaulted to labels on Pod template. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors";
    pub const REPLICA_SET_SPEC_REPLICAS: &str = "Replicas is the number of desired pods. This is a pointer to distinguish between explicit zero and unspecified. Defaults to 1. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicaset";
    pub const REPLICA_SET_STATUS_REPLICAS: &str = "Replicas is the most recently observed number of non-terminating pods. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicaset";
    pub const REPLICA_SET_STATUS_READY_REPLICAS: &str = "The number of non-terminating pods targeted by this ReplicaSet with a Ready Condition.";
    pub const REPLICA_SET_SPEC_SELECTOR: &str = "Selector is a label query over pods that should match the replica count. If the selector is empty, it is defaulted to the labels present on the pod template. Label keys and values that must match in order to be controlled by this replica set. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors";
    pub const DAEMON_SET_STATUS_DESIRED_NUMBER_SCHEDULED: &str = "The total number of nodes that should be running the daemon pod (including nodes correctly running the daemon pod). More info: https://kubernetes.io/docs/concepts/workloads/controllers/daemonset/";
    pub const DAEMON_SET_STATUS_CURRENT_NUMBER_SCHEDULED: &str = "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod. More info: https://kubernetes.io/docs/concepts/workloads/controllers/daemonset/";
    pub const DAEMON_SET_STATUS_NUMBER_READY: &str = "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and ready.";
    pub const DAEMON_SET_STATUS_UPDATED_NUMBER_SCHEDULED: &str = "The total number of nodes that are running updated daemon pod";
    pub const DAEMON_SET_STATUS_NUMBER_AVAILABLE: &str = "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available (ready for at least spec.minReadySeconds)";
    pub const POD_SPEC_NODE_SELECTOR: &str = "NodeSelector is a selector which must be true for the pod to fit on a node. Selector which must match a node's labels for the pod to be scheduled on that node. More info: https://kubernetes.io/docs/concepts/configuration/assign-pod-node/";
    pub const DAEMON_SET_SPEC_SELECTOR: &str = "A label query over pods that are managed by the daemon set. Must match in order to be controlled. If empty, defaulted to labels on Pod template. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors";
    pub const JOB_STATUS_SUCCEEDED: &str = "The number of pods which reached phase Succeeded. The value increases monotonically for a given spec. However, it may decrease in reaction to scale down of elastic indexed jobs.";
    pub const JOB_SPEC_SELECTOR: &str = "A label query over pods that should match the pod count. Normally, the system sets this field for you. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors";
    pub const CRON_JOB_SPEC_SCHEDULE: &str = "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron.";
    pub const CRON_JOB_SPEC_TIME_ZONE: &str = "The time zone name for the given schedule, see https://en.wikipedia.org/wiki/List_of_tz_database_time_zones. If not specified, this will default to the time zone of the kube-controller-manager process. The set of valid time zone names and the time zone offset is loaded from the system-wide time zone database by the API server during CronJob validation and the controller manager during execution. If no system-wide time zone database can be found a bundled version of the database is used instead. If the time zone name becomes invalid during the lifetime of a CronJob or due to a change in host configuration, the controller will stop creating new new Jobs and will create a system event with the reason UnknownTimeZone. More information can be found in https://kubernetes.io/docs/concepts/workloads/controllers/cron-jobs/#time-zones";
    pub const CRON_JOB_SPEC_SUSPEND: &str = "This flag tells the controller to suspend subsequent executions, it does not apply to already started executions.  Defaults to false.";
    pub const CRON_JOB_STATUS_ACTIVE: &str = "A list of pointers to currently running jobs.";
    pub const CRON_JOB_STATUS_LAST_SCHEDULE_TIME: &str = "Information when was the last time the job was successfully scheduled.";
    pub const SERVICE_SPEC_TYPE: &str = "type determines how the Service is exposed. Defaults to ClusterIP. Valid options are ExternalName, ClusterIP, NodePort, and LoadBalancer. \"ClusterIP\" allocates a cluster-internal IP address for load-balancing to endpoints. Endpoints are determined by the selector or if that is not specified, by manual construction of an Endpoints object or EndpointSlice objects. If clusterIP is \"None\", no virtual IP is allocated and the endpoints are published as a set of endpoints rather than a virtual IP. \"NodePort\" builds on ClusterIP and allocates a port on every node which routes to the same endpoints as the clusterIP. \"LoadBalancer\" builds on NodePort and creates an external load-balancer (if supported in the current cloud) which routes to the same endpoints as the clusterIP. \"ExternalName\" aliases this service to the specified externalName. Several other fields do not apply to ExternalName services. More info: https://kubernetes.io/docs/concepts/services-networking/service/#publishing-services-service-types";
    pub const SERVICE_SPEC_CLUSTER_IP: &str = "clusterIP is the IP address of the service and is usually assigned randomly. If an address is specified manually, is in-range (as per system configuration), and is not in use, it will be allocated to the service; otherwise creation of the service will fail. This field may not be changed through updates unless the type field is also being changed to ExternalName (which requires this field to be blank) or the type field is being changed from ExternalName (in which case this field may optionally be specified, as describe above).  Valid values are \"None\", empty string (\"\"), or a valid IP address. Setting this to \"None\" makes a \"headless service\" (no virtual IP), which is useful when direct endpoint connections are preferred and proxying is not required.  Only applies to types ClusterIP, NodePort, and LoadBalancer. If this field is specified when creating a Service of type ExternalName, creation will fail. This field will be wiped when updating a Service to type ExternalName. More info: https://kubernetes.io/docs/concepts/services-networking/service/#virtual-ips-and-service-proxies";
    pub const SERVICE_SPEC_EXTERNAL_IPS: &str = "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service.  These IPs are not managed by Kubernetes.  The user is responsible for ensuring that traffic arrives at a node with this IP.  A common example is external load-balancers that are not part of the Kubernetes system.";
    pub const SERVICE_SPEC_PORTS: &str = "The list of ports that are exposed by this service. More info: https://kubernetes.io/docs/concepts/services-networking/service/#virtual-ips-and-service-proxies";
    pub const SERVICE_SPEC_SELECTOR: &str = "Route service traffic to pods with label keys and values matching this selector. If empty or not present, the service is assumed to have an external process managing its endpoints, which Kubernetes will not modify. Only applies to types ClusterIP, NodePort, and LoadBalancer. Ignored if type is ExternalName. More info: https://kubernetes.io/docs/concepts/services-networking/service/";
    pub const ENDPOINTS_SUBSETS: &str = "The set of all endpoints is the union of all subsets. Addresses are placed into subsets according to the IPs they share. A single address with multiple ports, some of which are ready and some of which are not (because they come from different containers) will result in the address being displayed in different subsets for the different ports. No address will appear in both Addresses and NotReadyAddresses in the same subset. Sets of addresses and ports that comprise a service.";
    pub const NODE_SYSTEM_INFO_KUBELET_VERSION: &str = "Kubelet Version reported by the node.";
    pub const NODE_STATUS_ADDRESSES: &str = "List of addresses reachable to the node. Queried from cloud provider, if available. More info: https://kubernetes.io/docs/reference/node/node-status/#addresses Note: This field is declared as mergeable, but the merge key is not sufficiently unique, which can cause data corruption when it is merged. Callers should instead use a full-replacement patch. See https://pr.k8s.io/79391 for an example. Consumers should assume that addresses can change during the lifetime of a Node. However, there are some exceptions where this may not be possible, such as Pods that inherit a Node's address in its own status or consumers of the downward API (status.hostIP).";
    pub const NODE_SYSTEM_INFO_OS_IMAGE: &str = "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).";
    pub const NODE_SYSTEM_INFO_KERNEL_VERSION: &str = "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).";
    pub const NODE_SYSTEM_INFO_CONTAINER_RUNTIME_VERSION: &str = "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).";
    pub const EVENT_LAST_TIMESTAMP: &str = "The time at which the most recent occurrence of this event was recorded.";
    pub const EVENT_TYPE: &str = "Type of this event (Normal, Warning), new types could be added in the future";
    pub const EVENT_REASON: &str = "This should be a short, machine understandable string that gives the reason for the transition into the object's current status.";
    pub const EVENT_INVOLVED_OBJECT: &str = "The object that this event is about.";
    pub const OBJECT_REFERENCE_FIELD_PATH: &str = "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement, such as desiredState.manifest.containers[2]. For example, if the object reference is to a container within a pod, this would take on a value like: \"spec.containers{name}\" (where \"name\" refers to the name of the container that triggered the event) or if no container name is specified \"spec.containers[2]\" (container with index 2 in this pod). This syntax is chosen only to have some well-defined way of referencing a part of an object.";
    pub const EVENT_SOURCE: &str = "The component reporting this event. Should be a short machine understandable string.";
    pub const EVENT_MESSAGE: &str = "A human-readable description of the status of this operation.";
    pub const EVENT_FIRST_TIMESTAMP: &str = "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)";
    pub const EVENT_COUNT: &str = "The number of times this event has occurred.";
    pub const SECRET_TYPE: &str = "Used to facilitate programmatic handling of secret data. More info: https://kubernetes.io/docs/concepts/configuration/secret/#secret-types";
    pub const SECRET_DATA: &str = "Data contains the secret data. Each key must consist of alphanumeric characters, '-', '_' or '.'. The serialized form of the secret data is a base64 encoded string, representing the arbitrary (possibly non-string) data value here. Described in https://tools.ietf.org/html/rfc4648#section-4";
    pub const SERVICE_ACCOUNT_SECRETS: &str = "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use. Pods are only limited to this list if this service account has a \"kubernetes.io/enforce-mountable-secrets\" annotation set to \"true\". The \"kubernetes.io/enforce-mountable-secrets\" annotation is deprecated since v1.32. Prefer separate namespaces to isolate access to mounted secrets. This field should not be used to find auto-generated service account token secrets for use outside of pods. Instead, tokens can be requested directly using the TokenRequest API, or service account token secrets can be manually created. More info: https://kubernetes.io/docs/concepts/configuration/secret";
    pub const PERSISTENT_VOLUME_SPEC_CAPACITY: &str = "capacity is the description of the persistent volume's resources and capacity. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#capacity";
    pub const PERSISTENT_VOLUME_SPEC_ACCESS_MODES: &str = "accessModes contains all ways the volume can be mounted. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#access-modes";
    pub const PERSISTENT_VOLUME_SPEC_PERSISTENT_VOLUME_RECLAIM_POLICY: &str = "persistentVolumeReclaimPolicy defines what happens to a persistent volume when released from its claim. Valid options are Retain (default for manually created PersistentVolumes), Delete (default for dynamically provisioned PersistentVolumes), and Recycle (deprecated). Recycle must be supported by the volume plugin underlying this PersistentVolume. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#reclaiming";
    pub const PERSISTENT_VOLUME_STATUS_PHASE: &str = "phase indicates if a volume is available, bound to a claim, or released by a claim. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#phase";
    pub const PERSISTENT_VOLUME_SPEC_CLAIM_REF: &str = "claimRef is part of a bi-directional binding between PersistentVolume and PersistentVolumeClaim. Expected to be non-nil when bound. claim.VolumeName is the authoritative bind between PV and PVC. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#binding";
    pub const PERSISTENT_VOLUME_STATUS_REASON: &str = "reason is a brief CamelCase string that describes any failure and is meant for machine parsing and tidy display in the CLI.";
    pub const PERSISTENT_VOLUME_SPEC_VOLUME_MODE: &str = "volumeMode defines if a volume is intended to be used with a formatted filesystem or to remain in raw block state. Value of Filesystem is implied when not included in spec.";
    pub const PERSISTENT_VOLUME_CLAIM_STATUS_PHASE: &str = "phase represents the current phase of PersistentVolumeClaim.";
    pub const PERSISTENT_VOLUME_CLAIM_SPEC_VOLUME_NAME: &str = "volumeName is the binding reference to the PersistentVolume backing this claim.";
    pub const PERSISTENT_VOLUME_CLAIM_STATUS_CAPACITY: &str = "capacity represents the actual resources of the underlying volume.";
    pub const PERSISTENT_VOLUME_CLAIM_STATUS_ACCESS_MODES: &str = "accessModes contains the actual access modes the volume backing the PVC has. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#access-modes-1";
    pub const PERSISTENT_VOLUME_CLAIM_SPEC_VOLUME_MODE: &str = "volumeMode defines what type of volume is required by the claim. Value of Filesystem is implied when not included in claim spec.";
    pub const DEPLOYMENT_STATUS_UPDATED_REPLICAS: &str = "Total number of non-terminating pods targeted by this deployment that have the desired template spec.";
    pub const DEPLOYMENT_STATUS_AVAILABLE_REPLICAS: &str = "Total number of available non-terminating pods (ready for at least minReadySeconds) targeted by this deployment.";
    pub const DEPLOYMENT_SPEC_SELECTOR: &str = "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment.";
    pub const HORIZONTAL_POD_AUTOSCALER_SPEC_SCALE_TARGET_REF: &str = "scaleTargetRef points to the target resource to scale, and is used to the pods for which metrics should be collected, as well as to actually change the replica count.";
    pub const HORIZONTAL_POD_AUTOSCALER_SPEC_METRICS: &str = "metrics contains the specifications for which to use to calculate the desired replica count (the maximum replica count across all metrics will be used).  The desired replica count is calculated multiplying the ratio between the target value and the current value by the current number of pods.  Ergo, metrics used must decrease as the pod count is increased, and vice-versa.  See the individual metric source types for more information about how each type of metric must respond.";
    pub const HORIZONTAL_POD_AUTOSCALER_SPEC_MIN_REPLICAS: &str = "minReplicas is the lower limit for the number of replicas to which the autoscaler can scale down.  It defaults to 1 pod.  minReplicas is allowed to be 0 if the alpha feature gate HPAScaleToZero is enabled and at least one Object or External metric is configured.  Scaling is active as long as at least one metric value is available.";
    pub const HORIZONTAL_POD_AUTOSCALER_SPEC_MAX_REPLICAS: &str = "maxReplicas is the upper limit for the number of replicas to which the autoscaler can scale up. It cannot be less that minReplicas.";
    pub const HORIZONTAL_POD_AUTOSCALER_STATUS_CURRENT_REPLICAS: &str = "currentReplicas is current number of replicas of pods managed by this autoscaler, as last seen by the autoscaler.";
    pub const CONFIG_MAP_DATA: &str = "Data contains the configuration data. Each key must consist of alphanumeric characters, '-', '_' or '.'. Values with non-UTF-8 byte sequences must use the BinaryData field. The keys stored in Data must not overlap with the keys in the BinaryData field, this is enforced during validation process.";
    pub const NETWORK_POLICY_SPEC_POD_SELECTOR: &str = "Selects the pods to which this NetworkPolicy object applies.  The array of ingress rules is applied to any pods selected by this field. Multiple network policies can select the same set of pods.  In this case, the ingress rules for each are combined additively. This field is NOT optional and follows standard label selector semantics. An empty podSelector matches all pods in this namespace.";
    pub const ROLE_BINDING_ROLE_REF: &str = "RoleRef can reference a Role in the current namespace or a ClusterRole in the global namespace. If the RoleRef cannot be resolved, the Authorizer must return an error.";
    pub const CLUSTER_ROLE_BINDING_ROLE_REF: &str = "RoleRef can only reference a ClusterRole in the global namespace. If the RoleRef cannot be resolved, the Authorizer must return an error.";
    pub const LEASE_SPEC_HOLDER_IDENTITY: &str = "holderIdentity contains the identity of the holder of a current lease. If Coordinated Leader Election is used, the holder identity must be equal to the elected LeaseCandidate.metadata.name field.";
    pub const STORAGE_CLASS_PROVISIONER: &str = "provisioner indicates the type of the provisioner.";
    pub const STORAGE_CLASS_RECLAIM_POLICY: &str = "reclaimPolicy controls the reclaimPolicy for dynamically provisioned PersistentVolumes of this storage class. Defaults to Delete.";
    pub const STORAGE_CLASS_VOLUME_BINDING_MODE: &str = "volumeBindingMode indicates how PersistentVolumeClaims should be provisioned and bound.  When unset, VolumeBindingImmediate is used. This field is only honored by servers that enable the VolumeScheduling feature.";
    pub const STORAGE_CLASS_ALLOW_VOLUME_EXPANSION: &str = "allowVolumeExpansion shows whether the storage class allow volume expand.";
    pub const CONTROLLER_REVISION_REVISION: &str = "revision indicates the revision of the state represented by Data.";
    pub const PRIORITY_CLASS_VALUE: &str = "value represents the integer value of this priority class. This is the actual priority that pods receive when they have the name of this class in their pod spec.";
    pub const PRIORITY_CLASS_GLOBAL_DEFAULT: &str = "globalDefault specifies whether this PriorityClass should be considered as the default priority for pods that do not have any priority class. Only one PriorityClass can be marked as `globalDefault`. However, if more than one PriorityClasses exists with their `globalDefault` field set to true, the smallest value of such global default PriorityClasses will be used as the default priority.";
    pub const PRIORITY_CLASS_PREEMPTION_POLICY: &str = "preemptionPolicy is the Policy for preempting pods with lower priority. One of Never, PreemptLowerPriority. Defaults to PreemptLowerPriority if unset.";
    pub const ENDPOINT_SLICE_ADDRESS_TYPE: &str = "addressType specifies the type of address carried by this EndpointSlice. All addresses in this slice must be the same type. This field is immutable after creation. The following address types are currently supported: * IPv4: Represents an IPv4 Address. * IPv6: Represents an IPv6 Address. * FQDN: Represents a Fully Qualified Domain Name.";
    pub const ENDPOINT_SLICE_PORTS: &str = "ports specifies the list of network ports exposed by each endpoint in this slice. Each port must have a unique name. When ports is empty, it indicates that there are no defined ports. When a port is defined with a nil port value, it indicates \"all ports\". Each slice may include a maximum of 100 ports.";
    pub const ENDPOINT_SLICE_ENDPOINTS: &str = "endpoints is a list of unique endpoints in this slice. Each slice may include a maximum of 1000 endpoints.";
    pub const SCALE_SPEC_REPLICAS: &str = "replicas is the desired number of instances for the scaled object.";
    pub const SCALE_STATUS_REPLICAS: &str = "replicas is the actual number of observed instances of the scaled object.";
    pub const OBJECT_META_NAME: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
    pub const OBJECT_META_CREATION_TIMESTAMP: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";
}
