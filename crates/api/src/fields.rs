//! Selectable fields per resource: which `fieldSelector` labels a resource accepts, how each
//! label's value is computed from an object, and the error for any other label.
//!
//! Upstream splits this in two. The field label conversion (`AddFieldLabelConversionFunc` in
//! `pkg/apis/<group>/<version>/conversion.go`, or `runtime.DefaultMetaV1FieldSelectorConversion`
//! when a kind registers none) decides which labels a request may use and words the error; the
//! registry's `ToSelectableFields` builds the `fields.Set` an object is matched against, from
//! the internal object (so with Go's zero values for absent fields). A label that the conversion
//! accepts but the field set lacks matches as `""` (pods' `status.podIPs`).
//!
//! Here both halves are one table ([`for_resource`]); values are computed from the object as
//! served (the version the request names), which is what the selectors see.

use serde_json::Value;

/// How a selectable field's value is computed from an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// A string at a dotted path; `""` when absent.
    Str(&'static str),
    /// A bool at a dotted path, as Go's `strconv.FormatBool`; `"false"` when absent.
    Bool(&'static str),
    /// An integer at a dotted path, as Go's `strconv.Itoa`; `"0"` when absent.
    Int(&'static str),
    /// The first non-empty string among dotted paths (numeric segments index arrays); `""`.
    FirstOf(&'static [&'static str]),
    /// Accepted by the conversion but not in the field set: always `""`.
    Unset,
}

impl Source {
    /// The field's value for `obj`, as upstream's field set holds it.
    pub fn value(&self, obj: &Value) -> String {
        match *self {
            Source::Str(path) => lookup(obj, path).map(scalar).unwrap_or_default(),
            Source::Bool(path) => lookup(obj, path)
                .and_then(Value::as_bool)
                .unwrap_or(false)
                .to_string(),
            Source::Int(path) => match lookup(obj, path) {
                Some(Value::Number(n)) => n.to_string(),
                Some(v) if !v.is_null() => scalar(v),
                _ => "0".into(),
            },
            Source::FirstOf(paths) => paths
                .iter()
                .filter_map(|p| lookup(obj, p).map(scalar))
                .find(|s| !s.is_empty())
                .unwrap_or_default(),
            Source::Unset => String::new(),
        }
    }
}

/// Walks a dotted path; a numeric segment indexes an array.
fn lookup<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(obj, |cur, part| match cur {
        Value::Array(items) => part.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => cur.get(part),
    })
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// One selectable field label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    /// The label as a request spells it (`spec.nodeName`).
    pub name: &'static str,
    pub source: Source,
}

/// How a resource words the rejection of a label it does not support.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unsupported {
    /// A kind-specific conversion: `field label not supported: <label>`.
    NotSupported,
    /// batch/v1 Job's conversion: `field label "<label>" not supported for <kind>`.
    NotSupportedFor(&'static str),
    /// No conversion registered (`runtime.DefaultMetaV1FieldSelectorConversion`):
    /// `"<label>" is not a known field selector: only "metadata.name", "metadata.namespace"`.
    NotKnown,
}

/// The selectable fields of one resource.
#[derive(Debug, PartialEq, Eq)]
pub struct FieldSet {
    /// Every label the resource accepts, `metadata.*` included, in upstream's order.
    pub fields: &'static [Field],
    /// Labels accepted as another name (pods' `spec.host` for `spec.nodeName`).
    pub aliases: &'static [(&'static str, &'static str)],
    pub unsupported: Unsupported,
}

impl FieldSet {
    /// The field a label selects, if the resource supports it.
    pub fn get(&self, label: &str) -> Option<Field> {
        let label = self
            .aliases
            .iter()
            .find(|(alias, _)| *alias == label)
            .map_or(label, |(_, to)| *to);
        self.fields.iter().copied().find(|f| f.name == label)
    }

    /// The labels this resource accepts (aliases excluded).
    pub fn names(&self) -> impl Iterator<Item = &'static str> {
        self.fields.iter().map(|f| f.name)
    }

    /// Upstream's error message for a label this resource does not support.
    pub fn unsupported_message(&self, label: &str) -> String {
        match self.unsupported {
            Unsupported::NotSupported => format!("field label not supported: {label}"),
            Unsupported::NotSupportedFor(kind) => {
                format!("field label {} not supported for {kind}", go_quote(label))
            }
            Unsupported::NotKnown => format!(
                "{} is not a known field selector: only \"metadata.name\", \"metadata.namespace\"",
                go_quote(label)
            ),
        }
    }
}

/// Go's `%q` of a string (`strconv.Quote`).
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x80 && (c.is_ascii_control()) => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if c.is_control() => match c as u32 {
                n if n < 0x10000 => out.push_str(&format!("\\u{n:04x}")),
                n => out.push_str(&format!("\\U{n:08x}")),
            },
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

const fn f(name: &'static str, source: Source) -> Field {
    Field { name, source }
}

const NAME: Field = f("metadata.name", Source::Str("metadata.name"));
const NAMESPACE: Field = f("metadata.namespace", Source::Str("metadata.namespace"));

/// Kinds without a field label conversion: `metadata.name` and `metadata.namespace` (the
/// latter empty on cluster-scoped objects, so `metadata.namespace=` matches them all).
pub static DEFAULT: FieldSet = FieldSet {
    fields: &[NAME, NAMESPACE],
    aliases: &[],
    unsupported: Unsupported::NotKnown,
};

/// core/v1 Pod: `pkg/apis/core/v1/conversion.go` and `pkg/registry/core/pod` `ToSelectableFields`.
pub static PODS: FieldSet = FieldSet {
    fields: &[
        NAME,
        NAMESPACE,
        f("spec.nodeName", Source::Str("spec.nodeName")),
        f("spec.restartPolicy", Source::Str("spec.restartPolicy")),
        f("spec.schedulerName", Source::Str("spec.schedulerName")),
        // v1 → internal: the deprecated `serviceAccount` stands in for an empty name.
        f(
            "spec.serviceAccountName",
            Source::FirstOf(&["spec.serviceAccountName", "spec.serviceAccount"]),
        ),
        f("spec.hostNetwork", Source::Bool("spec.hostNetwork")),
        f("status.phase", Source::Str("status.phase")),
        // v1 → internal: a non-empty `podIP` wins over `podIPs[0]` (older clients' patches).
        f(
            "status.podIP",
            Source::FirstOf(&["status.podIP", "status.podIPs.0.ip"]),
        ),
        // Accepted by the conversion, absent from the field set.
        f("status.podIPs", Source::Unset),
        f(
            "status.nominatedNodeName",
            Source::Str("status.nominatedNodeName"),
        ),
    ],
    // Old v1 clients send `spec.host`.
    aliases: &[("spec.host", "spec.nodeName")],
    unsupported: Unsupported::NotSupported,
};

/// core/v1 Node: cluster-scoped, so no `metadata.namespace`.
pub static NODES: FieldSet = FieldSet {
    fields: &[
        NAME,
        f("spec.unschedulable", Source::Bool("spec.unschedulable")),
    ],
    aliases: &[],
    unsupported: Unsupported::NotSupported,
};

/// core/v1 ReplicationController.
pub static REPLICATION_CONTROLLERS: FieldSet = FieldSet {
    fields: &[
        NAME,
        NAMESPACE,
        f("status.replicas", Source::Int("status.replicas")),
    ],
    aliases: &[],
    unsupported: Unsupported::NotSupported,
};

/// core/v1 Event. `source` is `source.component`, or `reportingComponent` (the core/v1 name
/// of `reportingController`) when that is empty, as events written through events.k8s.io
/// carry no source.
pub static EVENTS: FieldSet = FieldSet {
    fields: &[
        f("involvedObject.kind", Source::Str("involvedObject.kind")),
        f(
            "involvedObject.namespace",
            Source::Str("involvedObject.namespace"),
        ),
        f("involvedObject.name", Source::Str("involvedObject.name")),
        f("involvedObject.uid", Source::Str("involvedObject.uid")),
        f(
            "involvedObject.apiVersion",
            Source::Str("involvedObject.apiVersion"),
        ),
        f(
            "involvedObject.resourceVersion",
            Source::Str("involvedObject.resourceVersion"),
        ),
        f(
            "involvedObject.fieldPath",
            Source::Str("involvedObject.fieldPath"),
        ),
        f("reason", Source::Str("reason")),
        f("reportingComponent", Source::Str("reportingComponent")),
        f(
            "source",
            Source::FirstOf(&["source.component", "reportingComponent"]),
        ),
        f("type", Source::Str("type")),
        NAMESPACE,
        NAME,
    ],
    aliases: &[],
    unsupported: Unsupported::NotSupported,
};

/// events.k8s.io/v1 Event: its labels map onto core's field set (`pkg/apis/events/v1`
/// `AddFieldLabelConversionsForEvent`); values are read from the events.k8s.io form.
pub static EVENTS_K8S_IO: FieldSet = FieldSet {
    fields: &[
        f("reason", Source::Str("reason")),
        f("regarding.kind", Source::Str("regarding.kind")),
        f("regarding.namespace", Source::Str("regarding.namespace")),
        f("regarding.name", Source::Str("regarding.name")),
        f("regarding.uid", Source::Str("regarding.uid")),
        f("regarding.apiVersion", Source::Str("regarding.apiVersion")),
        f(
            "regarding.resourceVersion",
            Source::Str("regarding.resourceVersion"),
        ),
        f("regarding.fieldPath", Source::Str("regarding.fieldPath")),
        f("reportingController", Source::Str("reportingController")),
        f(
            "source",
            Source::FirstOf(&["deprecatedSource.component", "reportingController"]),
        ),
        f("type", Source::Str("type")),
        NAMESPACE,
        NAME,
    ],
    aliases: &[],
    unsupported: Unsupported::NotSupported,
};

/// core/v1 Namespace: cluster-scoped.
pub static NAMESPACES: FieldSet = FieldSet {
    fields: &[f("status.phase", Source::Str("status.phase")), NAME],
    aliases: &[],
    unsupported: Unsupported::NotSupported,
};

/// core/v1 Secret.
pub static SECRETS: FieldSet = FieldSet {
    fields: &[f("type", Source::Str("type")), NAMESPACE, NAME],
    aliases: &[],
    unsupported: Unsupported::NotSupported,
};

/// core/v1 Service (`spec.clusterIP` since 1.30, `spec.type` since 1.31).
pub static SERVICES: FieldSet = FieldSet {
    fields: &[
        NAMESPACE,
        NAME,
        f("spec.clusterIP", Source::Str("spec.clusterIP")),
        f("spec.type", Source::Str("spec.type")),
    ],
    aliases: &[],
    unsupported: Unsupported::NotSupported,
};

/// batch/v1 Job: `status.successful` is the count in `status.succeeded`.
pub static JOBS: FieldSet = FieldSet {
    fields: &[
        NAME,
        NAMESPACE,
        f("status.successful", Source::Int("status.succeeded")),
    ],
    aliases: &[],
    unsupported: Unsupported::NotSupportedFor("Job"),
};

/// The selectable fields of a served resource. Kinds upstream registers no field label
/// conversion for (apps/v1 ReplicaSet and StatefulSet included: their registries list
/// `status.replicas` / `status.successful`, but apps/v1 never wired the conversion, so 1.33
/// rejects them) get [`DEFAULT`].
pub fn for_resource(group: &str, plural: &str) -> &'static FieldSet {
    match (group, plural) {
        ("", "pods") => &PODS,
        ("", "nodes") => &NODES,
        ("", "replicationcontrollers") => &REPLICATION_CONTROLLERS,
        ("", "events") => &EVENTS,
        ("events.k8s.io", "events") => &EVENTS_K8S_IO,
        ("", "namespaces") => &NAMESPACES,
        ("", "secrets") => &SECRETS,
        ("", "services") => &SERVICES,
        ("batch", "jobs") => &JOBS,
        _ => &DEFAULT,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn value(set: &FieldSet, label: &str, obj: &Value) -> String {
        set.get(label)
            .unwrap_or_else(|| panic!("{label} is selectable"))
            .source
            .value(obj)
    }

    #[test]
    fn pods() {
        let bare = json!({"metadata": {"name": "p", "namespace": "ns"}, "spec": {}});
        let v = |l: &str| value(&PODS, l, &bare);
        assert_eq!(v("metadata.name"), "p");
        assert_eq!(v("metadata.namespace"), "ns");
        assert_eq!(v("spec.nodeName"), "", "unscheduled: spec.nodeName=");
        assert_eq!(v("spec.host"), "", "spec.host is spec.nodeName");
        assert_eq!(v("spec.hostNetwork"), "false", "Go's zero bool");
        assert_eq!(v("status.podIP"), "");
        assert_eq!(v("status.podIPs"), "");
        assert_eq!(v("status.phase"), "");
        assert_eq!(v("status.nominatedNodeName"), "");
        assert_eq!(v("spec.serviceAccountName"), "");

        let full = json!({
            "metadata": {"name": "p", "namespace": "ns"},
            "spec": {"nodeName": "n1", "hostNetwork": true, "restartPolicy": "Never",
                     "schedulerName": "s", "serviceAccount": "old"},
            "status": {"phase": "Running", "podIPs": [{"ip": "10.0.0.5"}, {"ip": "fd00::5"}],
                       "nominatedNodeName": "n2"},
        });
        let v = |l: &str| value(&PODS, l, &full);
        assert_eq!(v("spec.nodeName"), "n1");
        assert_eq!(v("spec.host"), "n1");
        assert_eq!(v("spec.hostNetwork"), "true");
        assert_eq!(v("spec.restartPolicy"), "Never");
        assert_eq!(v("spec.schedulerName"), "s");
        assert_eq!(v("spec.serviceAccountName"), "old", "deprecated alias");
        assert_eq!(v("status.phase"), "Running");
        assert_eq!(v("status.podIP"), "10.0.0.5", "podIPs[0] without podIP");
        assert_eq!(v("status.podIPs"), "", "never in the field set");
        assert_eq!(v("status.nominatedNodeName"), "n2");

        let mismatched = json!({"status": {"podIP": "10.0.0.9", "podIPs": [{"ip": "10.0.0.5"}]}});
        assert_eq!(value(&PODS, "status.podIP", &mismatched), "10.0.0.9");
        let named = json!({"spec": {"serviceAccountName": "new", "serviceAccount": "old"}});
        assert_eq!(value(&PODS, "spec.serviceAccountName", &named), "new");

        assert!(PODS.get("spec.containers").is_none());
        assert_eq!(
            PODS.unsupported_message("spec.containers"),
            "field label not supported: spec.containers"
        );
    }

    #[test]
    fn nodes_and_namespaces_are_cluster_scoped() {
        let node = json!({"metadata": {"name": "n"}, "spec": {}});
        assert_eq!(value(&NODES, "spec.unschedulable", &node), "false");
        let cordoned = json!({"spec": {"unschedulable": true}});
        assert_eq!(value(&NODES, "spec.unschedulable", &cordoned), "true");
        assert!(NODES.get("metadata.namespace").is_none());
        assert_eq!(
            NODES.unsupported_message("metadata.namespace"),
            "field label not supported: metadata.namespace"
        );
        let ns = json!({"metadata": {"name": "a"}, "status": {"phase": "Terminating"}});
        assert_eq!(value(&NAMESPACES, "status.phase", &ns), "Terminating");
        assert!(NAMESPACES.get("metadata.namespace").is_none());
    }

    #[test]
    fn counts_are_integers_with_zero_for_absent() {
        let job = json!({"status": {"succeeded": 3, "active": 1}});
        assert_eq!(value(&JOBS, "status.successful", &job), "3");
        assert_eq!(value(&JOBS, "status.successful", &json!({})), "0");
        assert_eq!(
            JOBS.unsupported_message("status.active"),
            "field label \"status.active\" not supported for Job"
        );
        let rc = json!({"status": {"replicas": 2}});
        assert_eq!(value(&REPLICATION_CONTROLLERS, "status.replicas", &rc), "2");
        assert_eq!(
            value(&REPLICATION_CONTROLLERS, "status.replicas", &json!({})),
            "0"
        );
    }

    #[test]
    fn events() {
        let kubelet = json!({"source": {"component": "kubelet"}, "reportingComponent": "x"});
        assert_eq!(value(&EVENTS, "source", &kubelet), "kubelet");
        let new_api = json!({"source": {}, "reportingComponent": "ctl"});
        assert_eq!(value(&EVENTS, "source", &new_api), "ctl", "falls back");
        assert_eq!(value(&EVENTS, "reportingComponent", &new_api), "ctl");
        assert_eq!(value(&EVENTS, "source", &json!({})), "");
        let ev = json!({"regarding": {"name": "p", "kind": "Pod"}, "reportingController": "ctl",
                        "deprecatedSource": {"component": "kubelet"}});
        assert_eq!(value(&EVENTS_K8S_IO, "regarding.name", &ev), "p");
        assert_eq!(value(&EVENTS_K8S_IO, "reportingController", &ev), "ctl");
        assert_eq!(value(&EVENTS_K8S_IO, "source", &ev), "kubelet");
        let ev = json!({"reportingController": "ctl"});
        assert_eq!(value(&EVENTS_K8S_IO, "source", &ev), "ctl");
        // Each API group speaks its own field names.
        assert!(EVENTS_K8S_IO.get("involvedObject.name").is_none());
        assert!(EVENTS.get("regarding.name").is_none());
        assert!(EVENTS_K8S_IO.get("reportingInstance").is_none());
    }

    #[test]
    fn services_and_secrets() {
        let svc = json!({"spec": {"type": "NodePort", "clusterIP": "10.96.0.10"}});
        assert_eq!(value(&SERVICES, "spec.type", &svc), "NodePort");
        assert_eq!(value(&SERVICES, "spec.clusterIP", &svc), "10.96.0.10");
        let secret = json!({"type": "kubernetes.io/tls"});
        assert_eq!(value(&SECRETS, "type", &secret), "kubernetes.io/tls");
    }

    #[test]
    fn kinds_without_a_conversion_take_only_metadata() {
        for (group, plural) in [
            ("", "configmaps"),
            ("", "persistentvolumes"),
            ("apps", "replicasets"),
            ("apps", "statefulsets"),
            ("apps", "deployments"),
            ("batch", "cronjobs"),
        ] {
            let set = for_resource(group, plural);
            assert_eq!(
                set.names().collect::<Vec<_>>(),
                ["metadata.name", "metadata.namespace"],
                "{group}/{plural}"
            );
        }
        assert_eq!(
            DEFAULT.unsupported_message("status.replicas"),
            r#""status.replicas" is not a known field selector: only "metadata.name", "metadata.namespace""#
        );
        let pv = json!({"metadata": {"name": "pv1"}});
        assert_eq!(value(&DEFAULT, "metadata.namespace", &pv), "");
    }

    #[test]
    fn table_lookup() {
        assert_eq!(for_resource("", "pods"), &PODS);
        assert_eq!(for_resource("events.k8s.io", "events"), &EVENTS_K8S_IO);
        assert_eq!(for_resource("", "events"), &EVENTS);
        assert_eq!(for_resource("batch", "jobs"), &JOBS);
        assert_eq!(
            for_resource("", "replicationcontrollers"),
            &REPLICATION_CONTROLLERS
        );
    }

    #[test]
    fn go_quoting() {
        assert_eq!(go_quote("a.b"), "\"a.b\"");
        assert_eq!(go_quote("a\"b\\c\n\u{1}"), r#""a\"b\\c\n\x01""#);
        assert_eq!(go_quote("é"), "\"é\"");
    }
}
