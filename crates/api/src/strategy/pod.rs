//! Pods and pod templates: the defaults of `PodSpec`, containers, probes and volumes, the
//! pod-only defaults and the mutations of the admission plugins every cluster runs
//! (service account, priority), the QoS class, and the
//! validation of pod specs with upstream's paths and messages.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::{json, Value};

use super::util::*;
use crate::validation::{self, FieldError, Quantity, QUANTITY_FORMAT_MSG};

// ---- defaults ------------------------------------------------------------------------------

/// Defaults of a pod spec; `is_pod` adds those upstream applies to pods only (not to the
/// templates of workloads).
pub(crate) fn default_pod_spec(spec: &mut Value, is_pod: bool) {
    if !spec.is_object() {
        return;
    }
    if is_pod {
        for key in ["containers", "initContainers"] {
            for c in each(spec, key) {
                requests_from_limits(c);
            }
        }
        default(spec, "enableServiceLinks", Value::Bool(true));
        if boolean(spec, "hostNetwork") {
            for key in ["containers", "initContainers"] {
                for c in each(spec, key) {
                    for p in each(c, "ports") {
                        let container_port = int(p, "containerPort").unwrap_or(0);
                        default_int(p, "hostPort", container_port);
                    }
                }
            }
        }
    }
    default_str(spec, "dnsPolicy", "ClusterFirst");
    default_str(spec, "restartPolicy", "Always");
    default(spec, "securityContext", json!({}));
    default(spec, "terminationGracePeriodSeconds", json!(30));
    default_str(spec, "schedulerName", "default-scheduler");
    service_account_alias(spec);
    for v in each(spec, "volumes") {
        default_volume(v);
    }
    for key in ["initContainers", "containers", "ephemeralContainers"] {
        for c in each(spec, key) {
            default_container(c);
        }
    }
    canonical_resources(spec, "overhead", true);
    if let Some(r) = child_if(spec, "resources") {
        canonical_resources(r, "limits", true);
        canonical_resources(r, "requests", true);
    }
}

/// `serviceAccount` is the deprecated alias of `serviceAccountName`; upstream fills one from
/// the other.
fn service_account_alias(spec: &mut Value) {
    let name = sz(spec, "serviceAccountName").to_string();
    let alias = sz(spec, "serviceAccount").to_string();
    let name = if name.is_empty() { alias } else { name };
    if let Some(m) = spec.as_object_mut() {
        if name.is_empty() {
            m.remove("serviceAccount");
        } else {
            m.insert("serviceAccountName".into(), json!(name));
            m.insert("serviceAccount".into(), json!(name));
        }
    }
}

/// Limits without a matching request become the request (pods only).
fn requests_from_limits(c: &mut Value) {
    let Some(limits) = at(c, &["resources", "limits"])
        .and_then(Value::as_object)
        .cloned()
    else {
        return;
    };
    let Some(res) = child_if(c, "resources") else {
        return;
    };
    let Some(requests) = child(res, "requests") else {
        return;
    };
    for (k, v) in limits {
        requests.entry(k).or_insert(v);
    }
}

/// The tag upstream's image parser finds: `latest` when the reference has neither tag nor
/// digest, empty with a digest only, `None` when the reference does not parse.
fn image_tag(image: &str) -> Option<&str> {
    if image.is_empty() || image.trim() != image {
        return None;
    }
    let (name, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (image, None),
    };
    let last = name.rfind('/').map_or(0, |i| i + 1);
    let (repo, tag) = match name[last..].rfind(':') {
        Some(i) => (&name[..last + i], Some(&name[last + i + 1..])),
        None => (name, None),
    };
    // Everything after the registry host must be lower case.
    let path = match repo.split_once('/') {
        Some((host, rest)) if host.contains(['.', ':']) || host == "localhost" => rest,
        _ => repo,
    };
    if repo.is_empty() || path.bytes().any(|c| c.is_ascii_uppercase()) {
        return None;
    }
    match (tag, digest) {
        (Some(t), _) => Some(t),
        (None, Some(_)) => Some(""),
        (None, None) => Some("latest"),
    }
}

fn default_handler(h: &mut Value) {
    if let Some(get) = child_if(h, "httpGet") {
        default_str(get, "path", "/");
        default_str(get, "scheme", "HTTP");
    }
}

fn default_container(c: &mut Value) {
    let policy = if image_tag(sz(c, "image")) == Some("latest") {
        "Always"
    } else {
        "IfNotPresent"
    };
    default_str(c, "imagePullPolicy", policy);
    default_str(c, "terminationMessagePath", "/dev/termination-log");
    default_str(c, "terminationMessagePolicy", "File");
    for p in each(c, "ports") {
        default_str(p, "protocol", "TCP");
    }
    for e in each(c, "env") {
        if let Some(field_ref) = child_if(e, "valueFrom").and_then(|v| child_if(v, "fieldRef")) {
            default_str(field_ref, "apiVersion", "v1");
        }
    }
    default(c, "resources", json!({}));
    if let Some(r) = child_if(c, "resources") {
        canonical_resources(r, "limits", true);
        canonical_resources(r, "requests", true);
    }
    for key in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = child_if(c, key) {
            default_int(p, "timeoutSeconds", 1);
            default_int(p, "periodSeconds", 10);
            default_int(p, "successThreshold", 1);
            default_int(p, "failureThreshold", 3);
            default_handler(p);
        }
    }
    if let Some(l) = child_if(c, "lifecycle") {
        for key in ["postStart", "preStop"] {
            if let Some(h) = child_if(l, key) {
                default_handler(h);
            }
        }
    }
}

/// Volume sources in the order upstream checks them, with the name its "more than one"
/// error uses (two of them differ from the JSON name upstream).
const VOLUME_SOURCES: [(&str, &str); 30] = [
    ("emptyDir", "emptyDir"),
    ("hostPath", "hostPath"),
    ("gitRepo", "gitRepo"),
    ("gcePersistentDisk", "gcePersistentDisk"),
    ("awsElasticBlockStore", "awsElasticBlockStore"),
    ("secret", "secret"),
    ("nfs", "nfs"),
    ("iscsi", "iscsi"),
    ("glusterfs", "glusterfs"),
    ("flocker", "flocker"),
    ("persistentVolumeClaim", "persistentVolumeClaim"),
    ("rbd", "rbd"),
    ("cinder", "cinder"),
    ("cephfs", "cephFS"),
    ("quobyte", "quobyte"),
    ("downwardAPI", "downwarAPI"),
    ("fc", "fc"),
    ("flexVolume", "flexVolume"),
    ("configMap", "configMap"),
    ("azureFile", "azureFile"),
    ("vsphereVolume", "vsphereVolume"),
    ("photonPersistentDisk", "photonPersistentDisk"),
    ("portworxVolume", "portworxVolume"),
    ("azureDisk", "azureDisk"),
    ("storageos", "storageos"),
    ("projected", "projected"),
    ("scaleIO", "scaleIO"),
    ("csi", "csi"),
    ("ephemeral", "ephemeral"),
    ("image", "image"),
];

fn default_field_ref(item: &mut Value) {
    if let Some(f) = child_if(item, "fieldRef") {
        default_str(f, "apiVersion", "v1");
    }
}

fn default_volume(v: &mut Value) {
    if !VOLUME_SOURCES.iter().any(|(k, _)| get(v, k).is_some()) {
        default(v, "emptyDir", json!({}));
    }
    if let Some(e) = child_if(v, "emptyDir") {
        canonical_quantity(e, "sizeLimit");
    }
    if let Some(h) = child_if(v, "hostPath") {
        default(h, "type", json!(""));
    }
    for key in ["secret", "configMap"] {
        if let Some(src) = child_if(v, key) {
            default(src, "defaultMode", json!(420));
        }
    }
    if let Some(d) = child_if(v, "downwardAPI") {
        default(d, "defaultMode", json!(420));
        for item in each(d, "items") {
            default_field_ref(item);
        }
    }
    if let Some(p) = child_if(v, "projected") {
        default(p, "defaultMode", json!(420));
        for src in each(p, "sources") {
            if let Some(d) = child_if(src, "downwardAPI") {
                for item in each(d, "items") {
                    default_field_ref(item);
                }
            }
            if let Some(t) = child_if(src, "serviceAccountToken") {
                default(t, "expirationSeconds", json!(3600));
            }
        }
    }
    if let Some(i) = child_if(v, "iscsi") {
        default_str(i, "iscsiInterface", "default");
    }
    if let Some(r) = child_if(v, "rbd") {
        default_str(r, "pool", "rbd");
        default_str(r, "user", "admin");
        default_str(r, "keyring", "/etc/ceph/keyring");
    }
    if let Some(a) = child_if(v, "azureDisk") {
        default(a, "cachingMode", json!("ReadWrite"));
        default(a, "fsType", json!("ext4"));
        default(a, "readOnly", json!(false));
        default(a, "kind", json!("Shared"));
    }
    if let Some(s) = child_if(v, "scaleIO") {
        default_str(s, "storageMode", "ThinProvisioned");
        default_str(s, "fsType", "xfs");
    }
    if let Some(t) = child_if(v, "ephemeral").and_then(|e| child_if(e, "volumeClaimTemplate")) {
        template_metadata(t);
        if let Some(spec) = child_if(t, "spec") {
            default_claim_spec(spec);
        }
    }
}

/// `SetDefaults_PersistentVolumeClaimSpec` and its resource lists.
pub(crate) fn default_claim_spec(spec: &mut Value) {
    default(spec, "volumeMode", json!("Filesystem"));
    if let Some(r) = child_if(spec, "resources") {
        canonical_resources(r, "limits", true);
        canonical_resources(r, "requests", true);
    }
}

/// Defaults of an embedded pod template (workloads): `creationTimestamp: null` and the spec.
pub(crate) fn default_template(template: &mut Value) {
    if !template.is_object() {
        return;
    }
    template_metadata(template);
    if let Some(spec) = child_if(template, "spec") {
        default_pod_spec(spec, false);
    }
}

// ---- pods ----------------------------------------------------------------------------------

/// Pod defaults on create and update; on create also the admission mutations and the initial
/// status (phase `Pending`, the QoS class).
pub(crate) fn prepare_pod(obj: &mut Value, old: Option<&Value>) {
    let Some(spec) = child_if(obj, "spec") else {
        return;
    };
    default_pod_spec(spec, true);
    if old.is_some() {
        return;
    }
    let mirror = at(
        obj,
        &["metadata", "annotations", "kubernetes.io/config.mirror"],
    )
    .is_some();
    if let Some(spec) = child_if(obj, "spec") {
        admit(spec, mirror);
    }
    // Read in place: a copy of the spec would double what a big pod costs.
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let gated = !arr(spec, "schedulingGates").is_empty();
    let mut status = json!({"phase": "Pending", "qosClass": qos_class(spec)});
    if gated {
        crate::value::set(
            &mut status,
            &["conditions"],
            json!([{
                "type": "PodScheduled",
                "status": "False",
                "lastProbeTime": null,
                "lastTransitionTime": null,
                "reason": "SchedulingGated",
                "message": "Scheduling is blocked due to non-empty scheduling gates",
            }]),
        );
    }
    reset_status(obj, status);
}

/// What the ServiceAccount and Priority admission plugins add to a new pod when they need no
/// other object to decide (the API server's admission chain does it first, and the rest).
fn admit(spec: &mut Value, mirror: bool) {
    // Mirror pods of static pods get no service account.
    if !mirror {
        default_str(spec, "serviceAccountName", "default");
        service_account_alias(spec);
    }
    let priority = match sz(spec, "priorityClassName") {
        "" => Some(0),
        "system-node-critical" => Some(2_000_001_000),
        "system-cluster-critical" => Some(2_000_000_000),
        _ => None,
    };
    if let Some(p) = priority {
        default(spec, "priority", json!(p));
        default(spec, "preemptionPolicy", json!("PreemptLowerPriority"));
    }
}

/// Upstream's QoS class of a pod spec.
pub(crate) fn qos_class(spec: &Value) -> &'static str {
    let mut requests: BTreeMap<String, i128> = BTreeMap::new();
    let mut limits: BTreeMap<String, i128> = BTreeMap::new();
    let mut guaranteed = true;
    for c in arr(spec, "initContainers")
        .iter()
        .chain(arr(spec, "containers"))
    {
        let res = c.get("resources").unwrap_or(&Value::Null);
        for (name, q) in sorted_entries(omap(res, "requests")) {
            if name != "cpu" && name != "memory" {
                continue;
            }
            if let Some(q) = Quantity::from_json(q).filter(|q| q.nanos() > 0) {
                *requests.entry(name.clone()).or_default() += q.nanos();
            }
        }
        let mut found = BTreeSet::new();
        for (name, q) in sorted_entries(omap(res, "limits")) {
            if name != "cpu" && name != "memory" {
                continue;
            }
            if let Some(q) = Quantity::from_json(q).filter(|q| q.nanos() > 0) {
                found.insert(name.as_str());
                *limits.entry(name.clone()).or_default() += q.nanos();
            }
        }
        if !(found.contains("cpu") && found.contains("memory")) {
            guaranteed = false;
        }
    }
    if requests.is_empty() && limits.is_empty() {
        return "BestEffort";
    }
    if guaranteed
        && requests.iter().all(|(k, v)| limits.get(k) == Some(v))
        && requests.len() == limits.len()
    {
        return "Guaranteed";
    }
    "Burstable"
}

/// `ValidatePodCreate` / `ValidatePodUpdate` minus object metadata.
pub(crate) fn validate_pod(obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    validate_pod_spec(&mut errs, spec, "spec", true);
    if sz(spec, "serviceAccountName").is_empty() {
        for (vi, v) in arr(spec, "volumes").iter().enumerate() {
            for (si, src) in arr(v.get("projected").unwrap_or(&Value::Null), "sources")
                .iter()
                .enumerate()
            {
                if get(src, "serviceAccountToken").is_some() {
                    errs.push(forbidden(
                        format!("spec.volumes[{vi}].projected.sources[{si}].serviceAccountToken"),
                        "must not be specified when serviceAccountName is not set",
                    ));
                }
            }
        }
    }
    for key in ["containers", "initContainers"] {
        for (i, c) in arr(spec, key).iter().enumerate() {
            let image = sz(c, "image");
            if image.trim() != image {
                errs.push(invalid_str(
                    format!("spec.{key}[{i}].image"),
                    image,
                    "must not have leading or trailing whitespace",
                ));
            }
        }
    }
    match old {
        None => {
            if !arr(spec, "ephemeralContainers").is_empty() {
                errs.push(forbidden(
                    "spec.ephemeralContainers",
                    "cannot be set on create",
                ));
            }
            if !sz(spec, "nodeName").is_empty() && !arr(spec, "schedulingGates").is_empty() {
                errs.push(forbidden(
                    "spec.nodeName",
                    "cannot be set until all schedulingGates have been cleared",
                ));
            }
        }
        Some(old) => validate_pod_update(&mut errs, spec, old.get("spec").unwrap_or(&Value::Null)),
    }
    errs
}

/// `ValidatePodEphemeralContainersUpdate` minus object metadata: the pods/ephemeralcontainers
/// subresource may add ephemeral containers, never change or remove one.
pub(crate) fn validate_ephemeral_update(_sub: &str, obj: &Value, old: &Value) -> Vec<FieldError> {
    let annotations = omap(old.get("metadata").unwrap_or(&Value::Null), "annotations");
    if annotations.is_some_and(|a| a.contains_key("kubernetes.io/config.mirror")) {
        return vec![forbidden(
            "",
            "static pods do not support ephemeral containers",
        )];
    }
    let mut errs = Vec::new();
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    validate_pod_spec(&mut errs, spec, "spec", true);
    let now = arr(spec, "ephemeralContainers");
    for before in arr(
        old.get("spec").unwrap_or(&Value::Null),
        "ephemeralContainers",
    ) {
        let name = sz(before, "name");
        match now.iter().find(|c| sz(c, "name") == name) {
            None => errs.push(forbidden(
                "spec.ephemeralContainers",
                &format!("existing ephemeral containers {name:?} may not be removed\n"),
            )),
            Some(c) if !sem_eq(Some(c), Some(before)) => errs.push(forbidden(
                format!("spec.ephemeralContainers[{name}]"),
                &format!(
                    "existing ephemeral containers {name:?} may not be changed\n{}",
                    diff(before, c)
                ),
            )),
            Some(_) => {}
        }
    }
    errs
}

const UPDATABLE_POD_FIELDS: &str = "`spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

fn validate_pod_update(errs: &mut Vec<FieldError>, new: &Value, old: &Value) {
    for key in ["containers", "initContainers"] {
        let (n, o) = (arr(new, key), arr(old, key));
        if n.len() != o.len() {
            errs.push(forbidden(
                format!("spec.{key}"),
                "pod updates may not add or remove containers",
            ));
            return;
        }
        for (i, c) in n.iter().enumerate() {
            if sz(c, "image").is_empty() {
                errs.push(required(format!("spec.{key}[{i}].image"), ""));
            }
        }
    }
    let new_deadline = int(new, "activeDeadlineSeconds");
    let old_deadline = int(old, "activeDeadlineSeconds");
    match (new_deadline, old_deadline) {
        (Some(n), _) if !(0..=i64::from(i32::MAX)).contains(&n) => {
            errs.push(invalid_int(
                "spec.activeDeadlineSeconds",
                n,
                &inclusive_range(0, i64::from(i32::MAX)),
            ));
            return;
        }
        (Some(n), Some(o)) if o < n => {
            errs.push(invalid_int(
                "spec.activeDeadlineSeconds",
                n,
                "must be less than or equal to previous value",
            ));
            return;
        }
        (None, Some(_)) => errs.push(invalid(
            "spec.activeDeadlineSeconds",
            "null",
            "must not update from a positive integer to nil value",
        )),
        _ => {}
    }
    // Tolerations: only additions (tolerationSeconds of existing ones may change).
    let strip = |t: &Value| {
        let mut t = normalize(t);
        if let Some(m) = t.as_object_mut() {
            m.remove("tolerationSeconds");
        }
        t
    };
    let new_tols: Vec<Value> = arr(new, "tolerations").iter().map(strip).collect();
    if arr(old, "tolerations")
        .iter()
        .any(|t| !new_tols.contains(&strip(t)))
    {
        errs.push(forbidden(
            "spec.tolerations",
            "existing toleration can not be modified except its tolerationSeconds",
        ));
    } else {
        validate_tolerations(errs, arr(new, "tolerations"), "spec.tolerations");
    }
    // Scheduling gates: only deletions.
    let old_gates: Vec<&str> = arr(old, "schedulingGates")
        .iter()
        .map(|g| sz(g, "name"))
        .collect();
    for (i, g) in arr(new, "schedulingGates").iter().enumerate() {
        if !old_gates.contains(&sz(g, "name")) {
            errs.push(forbidden(
                format!("spec.schedulingGates[{i}].name"),
                &format!(
                    "only deletion is allowed, but found new scheduling gate '{}'",
                    sz(g, "name")
                ),
            ));
        }
    }
    if sem_eq(Some(new), Some(old)) {
        return;
    }
    let mut munged = new.clone();
    for key in ["containers", "initContainers"] {
        if let Some(list) = munged.get_mut(key).and_then(Value::as_array_mut) {
            for (i, c) in list.iter_mut().enumerate() {
                if let (Some(m), Some(img)) = (
                    c.as_object_mut(),
                    at(old, &[key])
                        .and_then(|o| o.get(i))
                        .and_then(|o| o.get("image")),
                ) {
                    m.insert("image".into(), img.clone());
                }
            }
        }
    }
    if let Some(m) = munged.as_object_mut() {
        for key in ["activeDeadlineSeconds", "schedulingGates", "tolerations"] {
            match old.get(key) {
                Some(v) => m.insert(key.into(), v.clone()),
                None => m.remove(key),
            };
        }
        let old_grace = int(old, "terminationGracePeriodSeconds");
        if old_grace.is_some_and(|g| g < 0) && int(new, "terminationGracePeriodSeconds") == Some(1)
        {
            m.insert("terminationGracePeriodSeconds".into(), json!(old_grace));
        }
        // Gated pods may gain node selector entries.
        if !arr(old, "schedulingGates").is_empty() {
            let old_sel = omap(old, "nodeSelector").cloned().unwrap_or_default();
            let new_sel = omap(new, "nodeSelector").cloned().unwrap_or_default();
            if old_sel.iter().all(|(k, v)| new_sel.get(k) == Some(v)) {
                match old.get("nodeSelector") {
                    Some(v) => m.insert("nodeSelector".into(), v.clone()),
                    None => m.remove("nodeSelector"),
                };
            } else {
                errs.push(invalid(
                    "spec.nodeSelector",
                    go_map(new.get("nodeSelector")),
                    "only additions to spec.nodeSelector are allowed (no mutations or deletions)",
                ));
            }
        }
    }
    if !sem_eq(Some(&munged), Some(old)) {
        errs.push(forbidden(
            "spec",
            &format!(
                "pod updates may not change fields other than {UPDATABLE_POD_FIELDS}\n{}",
                diff(old, &munged)
            ),
        ));
    }
}

// ---- pod templates -------------------------------------------------------------------------

/// `ValidatePodTemplateSpec` at `path` (`spec.template` for most workloads).
pub(crate) fn validate_template(errs: &mut Vec<FieldError>, template: Option<&Value>, path: &str) {
    let t = template.unwrap_or(&Value::Null);
    let meta = t.get("metadata").unwrap_or(&Value::Null);
    if let Some(l) = meta.get("labels") {
        validation::labels(l, &format!("{path}.labels"), errs);
    }
    if let Some(a) = meta.get("annotations") {
        validation::annotations(a, &format!("{path}.annotations"), errs);
    }
    let spec = t.get("spec").unwrap_or(&Value::Null);
    validate_pod_spec(errs, spec, &format!("{path}.spec"), false);
    if !arr(spec, "ephemeralContainers").is_empty() {
        errs.push(forbidden(
            format!("{path}.spec.ephemeralContainers"),
            "ephemeral containers not allowed in pod template",
        ));
    }
}

// ---- pod specs -----------------------------------------------------------------------------

/// `ValidatePodSpec`.
pub(crate) fn validate_pod_spec(
    errs: &mut Vec<FieldError>,
    spec: &Value,
    path: &str,
    is_pod: bool,
) {
    let grace = int(spec, "terminationGracePeriodSeconds");
    if get(spec, "terminationGracePeriodSeconds").is_none() {
        errs.push(required(
            format!("{path}.terminationGracePeriodSeconds"),
            "",
        ));
    }
    let volumes = validate_volumes(errs, arr(spec, "volumes"), &format!("{path}.volumes"));
    let restart = sz(spec, "restartPolicy");
    validate_containers(errs, spec, path, &volumes, grace);
    validate_init_containers(errs, spec, path, &volumes, grace);
    validate_ephemeral_containers(errs, spec, path, &volumes);
    if boolean(spec, "hostNetwork") {
        for (i, c) in arr(spec, "containers").iter().enumerate() {
            for (j, p) in arr(c, "ports").iter().enumerate() {
                let hp = int(p, "hostPort").unwrap_or(0);
                let cp = int(p, "containerPort").unwrap_or(0);
                if (is_pod || hp != 0) && hp != cp {
                    errs.push(invalid_int(
                        format!("{path}.containers[{i}].ports[{j}].hostPort"),
                        hp,
                        "must match `containerPort` when `hostNetwork` is true",
                    ));
                }
            }
        }
    }
    match restart {
        "Always" | "OnFailure" | "Never" => {}
        "" => errs.push(required(format!("{path}.restartPolicy"), "")),
        other => errs.push(not_supported(
            format!("{path}.restartPolicy"),
            q(other),
            &["Always", "OnFailure", "Never"],
        )),
    }
    let dns_policy = sz(spec, "dnsPolicy");
    match dns_policy {
        "ClusterFirstWithHostNet" | "ClusterFirst" | "Default" | "None" => {}
        "" => errs.push(required(format!("{path}.dnsPolicy"), "")),
        other => errs.push(not_supported(
            format!("{path}.dnsPolicy"),
            q(other),
            &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"],
        )),
    }
    if let Some(sel) = spec.get("nodeSelector") {
        validation::labels(sel, &format!("{path}.nodeSelector"), errs);
    }
    validate_pod_security_context(errs, spec, path);
    for (i, s) in arr(spec, "imagePullSecrets").iter().enumerate() {
        if s.as_object().is_some_and(|m| m.keys().any(|k| k != "name")) {
            errs.push(invalid(
                format!("{path}.imagePullSecrets[{i}]"),
                s.to_string(),
                "only name may be set",
            ));
        }
    }
    if let Some(a) = get(spec, "affinity") {
        validate_affinity(errs, a, &format!("{path}.affinity"));
    }
    validate_dns_config(errs, spec, dns_policy, path);
    for (i, g) in arr(spec, "readinessGates").iter().enumerate() {
        qualified_name(
            errs,
            sz(g, "conditionType"),
            &format!("{path}.readinessGates[{i}].conditionType"),
        );
    }
    let mut gates = BTreeSet::new();
    for (i, g) in arr(spec, "schedulingGates").iter().enumerate() {
        let name = sz(g, "name");
        qualified_name(errs, name, &format!("{path}.schedulingGates[{i}]"));
        if !gates.insert(name) {
            errs.push(duplicate(format!("{path}.schedulingGates[{i}]"), q(name)));
        }
    }
    validate_spread(errs, arr(spec, "topologySpreadConstraints"), path);
    for field in ["serviceAccountName", "nodeName", "priorityClassName"] {
        let v = sz(spec, field);
        if !v.is_empty() {
            subdomain(errs, v, &format!("{path}.{field}"));
        }
    }
    if let Some(d) = int(spec, "activeDeadlineSeconds") {
        if !(1..=i64::from(i32::MAX)).contains(&d) {
            errs.push(invalid_int(
                format!("{path}.activeDeadlineSeconds"),
                d,
                &inclusive_range(1, i64::from(i32::MAX)),
            ));
        }
    }
    for field in ["hostname", "subdomain"] {
        let v = sz(spec, field);
        if !v.is_empty() {
            dns_label(errs, v, &format!("{path}.{field}"));
        }
    }
    validate_tolerations(
        errs,
        arr(spec, "tolerations"),
        &format!("{path}.tolerations"),
    );
    for (i, h) in arr(spec, "hostAliases").iter().enumerate() {
        let ip = sz(h, "ip");
        if ip.parse::<std::net::IpAddr>().is_err() {
            errs.push(invalid_str(
                format!("{path}.hostAliases[{i}].ip"),
                ip,
                "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
            ));
        }
        for (j, name) in arr(h, "hostnames").iter().enumerate() {
            subdomain(
                errs,
                name.as_str().unwrap_or(""),
                &format!("{path}.hostAliases[{i}].hostnames[{j}]"),
            );
        }
    }
    if let Some(rc) = s(spec, "runtimeClassName") {
        subdomain(errs, rc, &format!("{path}.runtimeClassName"));
    }
    if let Some(p) = spec.get("preemptionPolicy").filter(|p| !p.is_null()) {
        match p.as_str().unwrap_or("") {
            "PreemptLowerPriority" | "Never" => {}
            "" => errs.push(required(format!("{path}.preemptionPolicy"), "")),
            other => errs.push(not_supported(
                format!("{path}.preemptionPolicy"),
                q(other),
                &["PreemptLowerPriority", "Never"],
            )),
        }
    }
    if let Some(o) = get(spec, "overhead") {
        let wrapped = json!({ "limits": o });
        validate_resources(errs, Some(&wrapped), &format!("{path}.overhead"), true);
    }
    if let Some(os) = get(spec, "os") {
        match sz(os, "name") {
            "" => errs.push(required(format!("{path}.os.name"), "cannot be empty")),
            "linux" | "windows" => {}
            other => errs.push(not_supported(
                format!("{path}.os"),
                q(other),
                &["linux", "windows"],
            )),
        }
    }
}

fn validate_containers(
    errs: &mut Vec<FieldError>,
    spec: &Value,
    path: &str,
    volumes: &HashMap<String, String>,
    grace: Option<i64>,
) {
    let containers = arr(spec, "containers");
    let base = format!("{path}.containers");
    if containers.is_empty() {
        errs.push(required(base, ""));
        return;
    }
    let mut names = BTreeSet::new();
    for (i, c) in containers.iter().enumerate() {
        if errs.len() >= crate::validation::MAX_ERRORS {
            break;
        }
        let p = format!("{base}[{i}]");
        validate_container_common(errs, c, &p, volumes);
        let name = sz(c, "name");
        if !names.insert(name) {
            errs.push(duplicate(format!("{p}.name"), q(name)));
        }
        if let Some(l) = get(c, "lifecycle") {
            validate_lifecycle(errs, l, grace, &format!("{p}.lifecycle"));
        }
        validate_probes(errs, c, grace, &p);
        if get(c, "restartPolicy").is_some() {
            errs.push(forbidden(
                format!("{p}.restartPolicy"),
                "may not be set for non-init containers",
            ));
        }
    }
    host_port_conflicts(errs, containers, &base);
}

fn validate_init_containers(
    errs: &mut Vec<FieldError>,
    spec: &Value,
    path: &str,
    volumes: &HashMap<String, String>,
    grace: Option<i64>,
) {
    let mut names: BTreeSet<&str> = arr(spec, "containers")
        .iter()
        .map(|c| sz(c, "name"))
        .collect();
    let base = format!("{path}.initContainers");
    for (i, c) in arr(spec, "initContainers").iter().enumerate() {
        if errs.len() >= crate::validation::MAX_ERRORS {
            break;
        }
        let p = format!("{base}[{i}]");
        validate_container_common(errs, c, &p, volumes);
        let mut always = false;
        if let Some(rp) = get(c, "restartPolicy") {
            let rp = rp.as_str().unwrap_or("");
            if rp == "Always" {
                always = true;
            } else {
                errs.push(not_supported(
                    format!("{p}.restartPolicy"),
                    q(rp),
                    &["Always"],
                ));
            }
        }
        let name = sz(c, "name");
        if names.contains(name) {
            errs.push(duplicate(format!("{p}.name"), q(name)));
        } else if !name.is_empty() {
            names.insert(name);
        }
        host_port_conflicts(errs, std::slice::from_ref(c), &base);
        if always {
            if let Some(l) = get(c, "lifecycle") {
                validate_lifecycle(errs, l, grace, &format!("{p}.lifecycle"));
            }
            validate_probes(errs, c, grace, &p);
        } else {
            for field in [
                "lifecycle",
                "livenessProbe",
                "readinessProbe",
                "startupProbe",
            ] {
                if get(c, field).is_some() {
                    errs.push(forbidden(
                        format!("{p}.{field}"),
                        "may not be set for init containers without restartPolicy=Always",
                    ));
                }
            }
        }
    }
}

fn validate_ephemeral_containers(
    errs: &mut Vec<FieldError>,
    spec: &Value,
    path: &str,
    volumes: &HashMap<String, String>,
) {
    let others: BTreeSet<&str> = arr(spec, "containers")
        .iter()
        .chain(arr(spec, "initContainers"))
        .map(|c| sz(c, "name"))
        .collect();
    let mut all = others.clone();
    for (i, c) in arr(spec, "ephemeralContainers").iter().enumerate() {
        if errs.len() >= crate::validation::MAX_ERRORS {
            break;
        }
        let p = format!("{path}.ephemeralContainers[{i}]");
        validate_container_common(errs, c, &p, volumes);
        let image = sz(c, "image");
        if image.trim() != image {
            errs.push(invalid_str(
                format!("{p}.image"),
                image,
                "must not have leading or trailing whitespace",
            ));
        }
        let name = sz(c, "name");
        if !all.insert(name) {
            errs.push(duplicate(format!("{p}.name"), q(name)));
        }
        let target = sz(c, "targetContainerName");
        if !target.is_empty() && !others.contains(target) {
            errs.push(not_found(format!("{p}.targetContainerName"), q(target)));
        }
        for field in [
            "ports",
            "resources",
            "livenessProbe",
            "readinessProbe",
            "startupProbe",
            "lifecycle",
            "resizePolicy",
            "restartPolicy",
        ] {
            if c.get(field).is_some_and(|v| !sem_eq(Some(v), None)) {
                errs.push(forbidden(
                    format!("{p}.{field}"),
                    "cannot be set for an Ephemeral Container",
                ));
            }
        }
        for (j, m) in arr(c, "volumeMounts").iter().enumerate() {
            for field in ["subPath", "subPathExpr"] {
                if !sz(m, field).is_empty() {
                    errs.push(forbidden(
                        format!("{p}.volumeMounts[{j}].{field}"),
                        "cannot be set for an Ephemeral Container",
                    ));
                }
            }
        }
    }
}

fn host_port_conflicts(errs: &mut Vec<FieldError>, containers: &[Value], base: &str) {
    let mut seen = BTreeSet::new();
    for (ci, c) in containers.iter().enumerate() {
        for (pi, p) in arr(c, "ports").iter().enumerate() {
            let port = int(p, "hostPort").unwrap_or(0);
            if port == 0 {
                continue;
            }
            let key = format!("{}/{}/{port}", sz(p, "protocol"), sz(p, "hostIP"));
            if !seen.insert(key.clone()) {
                errs.push(duplicate(
                    format!("{base}[{ci}].ports[{pi}].hostPort"),
                    q(&key),
                ));
            }
        }
    }
}

/// `validateContainerCommon`.
fn validate_container_common(
    errs: &mut Vec<FieldError>,
    c: &Value,
    p: &str,
    volumes: &HashMap<String, String>,
) {
    let name = sz(c, "name");
    if name.is_empty() {
        errs.push(required(format!("{p}.name"), ""));
    } else {
        dns_label(errs, name, &format!("{p}.name"));
    }
    if sz(c, "image").is_empty() {
        errs.push(required(format!("{p}.image"), ""));
    }
    match sz(c, "terminationMessagePolicy") {
        "File" | "FallbackToLogsOnError" => {}
        "" => errs.push(required(format!("{p}.terminationMessagePolicy"), "")),
        other => errs.push(not_supported(
            format!("{p}.terminationMessagePolicy"),
            q(other),
            &["File", "FallbackToLogsOnError"],
        )),
    }
    validate_ports(errs, arr(c, "ports"), &format!("{p}.ports"));
    validate_env(errs, arr(c, "env"), &format!("{p}.env"));
    validate_env_from(errs, arr(c, "envFrom"), &format!("{p}.envFrom"));
    validate_volume_mounts(errs, c, volumes, p);
    match sz(c, "imagePullPolicy") {
        "Always" | "IfNotPresent" | "Never" => {}
        "" => errs.push(required(format!("{p}.imagePullPolicy"), "")),
        other => errs.push(not_supported(
            format!("{p}.imagePullPolicy"),
            q(other),
            &["Always", "IfNotPresent", "Never"],
        )),
    }
    validate_resources(errs, c.get("resources"), &format!("{p}.resources"), true);
    if let Some(sc) = get(c, "securityContext") {
        validate_security_context(errs, sc, &format!("{p}.securityContext"));
    }
}

fn validate_ports(errs: &mut Vec<FieldError>, ports: &[Value], base: &str) {
    let mut names = BTreeSet::new();
    for (i, port) in ports.iter().enumerate() {
        let p = format!("{base}[{i}]");
        let name = sz(port, "name");
        if !name.is_empty() {
            let msgs = port_name_errors(name);
            if !msgs.is_empty() {
                for m in msgs {
                    errs.push(invalid_str(format!("{p}.name"), name, &m));
                }
            } else if !names.insert(name) {
                errs.push(duplicate(format!("{p}.name"), q(name)));
            }
        }
        let cp = int(port, "containerPort").unwrap_or(0);
        if cp == 0 {
            errs.push(required(format!("{p}.containerPort"), ""));
        } else if !(1..=65535).contains(&cp) {
            errs.push(invalid_int(
                format!("{p}.containerPort"),
                cp,
                &inclusive_range(1, 65535),
            ));
        }
        let hp = int(port, "hostPort").unwrap_or(0);
        if hp != 0 && !(1..=65535).contains(&hp) {
            errs.push(invalid_int(
                format!("{p}.hostPort"),
                hp,
                &inclusive_range(1, 65535),
            ));
        }
        protocol(errs, port, &p);
    }
}

/// The protocol of a container, service or endpoint port.
pub(crate) fn protocol(errs: &mut Vec<FieldError>, port: &Value, p: &str) {
    match sz(port, "protocol") {
        "TCP" | "UDP" | "SCTP" => {}
        "" => errs.push(required(format!("{p}.protocol"), "")),
        other => errs.push(not_supported(
            format!("{p}.protocol"),
            q(other),
            &["SCTP", "TCP", "UDP"],
        )),
    }
}

const RELAXED_ENV_MSG: &str =
    "a valid environment variable name must consist only of printable ASCII characters other than '='";

fn env_name_errors(name: &str) -> Vec<String> {
    if name.is_empty() {
        return vec!["environment variable name must be non-empty".into()];
    }
    if name.chars().any(|c| !(' '..='~').contains(&c) || c == '=') {
        return vec![RELAXED_ENV_MSG.into()];
    }
    Vec::new()
}

const ENV_FIELD_PATHS: [&str; 9] = [
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
];

const VOLUME_FIELD_PATHS: [&str; 5] = [
    "metadata.annotations",
    "metadata.labels",
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
];

const RESOURCE_FIELD_PATHS: [&str; 6] = [
    "limits.cpu",
    "limits.ephemeral-storage",
    "limits.memory",
    "requests.cpu",
    "requests.ephemeral-storage",
    "requests.memory",
];

fn validate_field_ref(errs: &mut Vec<FieldError>, f: &Value, allowed: &[&str], p: &str) {
    if sz(f, "apiVersion").is_empty() {
        errs.push(required(format!("{p}.apiVersion"), ""));
        return;
    }
    let path = sz(f, "fieldPath");
    if path.is_empty() {
        errs.push(required(format!("{p}.fieldPath"), ""));
        return;
    }
    if let Some((base, rest)) = path.split_once('[') {
        let sub = rest
            .strip_suffix(']')
            .map(|x| x.trim_matches('\''))
            .unwrap_or("");
        match base {
            "metadata.annotations" => qualified_name(errs, &sub.to_lowercase(), p),
            "metadata.labels" => qualified_name(errs, sub, p),
            _ => errs.push(invalid_str(p, base, "does not support subscript")),
        }
    } else if !allowed.contains(&path) {
        errs.push(not_supported(format!("{p}.fieldPath"), q(path), allowed));
    }
}

fn validate_resource_field_ref(errs: &mut Vec<FieldError>, r: &Value, volume: bool, p: &str) {
    let resource = sz(r, "resource");
    if volume && sz(r, "containerName").is_empty() {
        errs.push(required(format!("{p}.containerName"), ""));
    } else if resource.is_empty() {
        errs.push(required(format!("{p}.resource"), ""));
    } else if !RESOURCE_FIELD_PATHS.contains(&resource)
        && !resource.starts_with("requests.hugepages-")
        && !resource.starts_with("limits.hugepages-")
    {
        errs.push(not_supported(
            format!("{p}.resource"),
            q(resource),
            &RESOURCE_FIELD_PATHS,
        ));
    }
}

fn key_selector(errs: &mut Vec<FieldError>, sel: &Value, p: &str) {
    let name = sz(sel, "name");
    for m in validation::dns1123_subdomain(name) {
        errs.push(invalid_str(format!("{p}.name"), name, &m));
    }
    let key = sz(sel, "key");
    if key.is_empty() {
        errs.push(required(format!("{p}.key"), ""));
    } else {
        for m in config_map_key_errors(key) {
            errs.push(invalid_str(format!("{p}.key"), key, &m));
        }
    }
}

fn validate_env(errs: &mut Vec<FieldError>, env: &[Value], base: &str) {
    for (i, e) in env.iter().enumerate() {
        let p = format!("{base}[{i}]");
        let name = sz(e, "name");
        if name.is_empty() {
            errs.push(required(format!("{p}.name"), ""));
        } else {
            for m in env_name_errors(name) {
                errs.push(invalid_str(format!("{p}.name"), name, &m));
            }
        }
        let Some(vf) = get(e, "valueFrom") else {
            continue;
        };
        let vp = format!("{p}.valueFrom");
        let mut sources = 0;
        if let Some(f) = get(vf, "fieldRef") {
            sources += 1;
            validate_field_ref(errs, f, &ENV_FIELD_PATHS, &format!("{vp}.fieldRef"));
        }
        if let Some(r) = get(vf, "resourceFieldRef") {
            sources += 1;
            validate_resource_field_ref(errs, r, false, &format!("{vp}.resourceFieldRef"));
        }
        if let Some(c) = get(vf, "configMapKeyRef") {
            sources += 1;
            key_selector(errs, c, &format!("{vp}.configMapKeyRef"));
        }
        if let Some(s) = get(vf, "secretKeyRef") {
            sources += 1;
            key_selector(errs, s, &format!("{vp}.secretKeyRef"));
        }
        if sources == 0 {
            errs.push(invalid(
                vp,
                "\"\"",
                "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
            ));
        } else if !sz(e, "value").is_empty() {
            errs.push(invalid(
                vp,
                "\"\"",
                "may not be specified when `value` is not empty",
            ));
        } else if sources > 1 {
            errs.push(invalid(
                vp,
                "\"\"",
                "may not have more than one field specified at a time",
            ));
        }
    }
}

fn validate_env_from(errs: &mut Vec<FieldError>, env_from: &[Value], base: &str) {
    for (i, e) in env_from.iter().enumerate() {
        let p = format!("{base}[{i}]");
        let prefix = sz(e, "prefix");
        if !prefix.is_empty() {
            for m in env_name_errors(prefix) {
                errs.push(invalid_str(format!("{p}.prefix"), prefix, &m));
            }
        }
        let mut sources = 0;
        for key in ["configMapRef", "secretRef"] {
            if let Some(r) = get(e, key) {
                sources += 1;
                let name = sz(r, "name");
                if name.is_empty() {
                    errs.push(required(format!("{p}.{key}.name"), ""));
                } else {
                    // Names used as a prefix may end in a dash.
                    let masked = name
                        .strip_suffix('-')
                        .map_or(name.to_string(), |n| format!("{n}a"));
                    for m in validation::dns1123_subdomain(&masked) {
                        errs.push(invalid_str(format!("{p}.{key}.name"), name, &m));
                    }
                }
            }
        }
        if sources == 0 {
            errs.push(invalid(
                base,
                "\"\"",
                "must specify one of: `configMapRef` or `secretRef`",
            ));
        } else if sources > 1 {
            errs.push(invalid(
                base,
                "\"\"",
                "may not have more than one field specified at a time",
            ));
        }
    }
}

fn has_backsteps(path: &str) -> bool {
    path.replace('\\', "/").split('/').any(|part| part == "..")
}

/// `validateLocalDescendingPath`.
fn local_descending_path(errs: &mut Vec<FieldError>, path: &str, field: &str) {
    if path.starts_with('/') {
        errs.push(invalid_str(field, path, "must be a relative path"));
    }
    if has_backsteps(path) {
        errs.push(invalid_str(field, path, "must not contain '..'"));
    }
}

/// `ValidateLocalNonReservedPath`.
fn local_non_reserved_path(errs: &mut Vec<FieldError>, path: &str, field: &str) {
    local_descending_path(errs, path, field);
    if path.starts_with("..") && !path.starts_with("../") {
        errs.push(invalid_str(field, path, "must not start with '..'"));
    }
}

fn validate_volume_mounts(
    errs: &mut Vec<FieldError>,
    c: &Value,
    volumes: &HashMap<String, String>,
    p: &str,
) {
    let base = format!("{p}.volumeMounts");
    let devices: HashMap<&str, &str> = arr(c, "volumeDevices")
        .iter()
        .map(|d| (sz(d, "name"), sz(d, "devicePath")))
        .collect();
    let privileged = at(c, &["securityContext", "privileged"])
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let mut mount_points = BTreeSet::new();
    for (i, m) in arr(c, "volumeMounts").iter().enumerate() {
        let mp = format!("{base}[{i}]");
        let name = sz(m, "name");
        if name.is_empty() {
            errs.push(required(format!("{mp}.name"), ""));
        }
        if !volumes.contains_key(name) {
            errs.push(not_found(format!("{mp}.name"), q(name)));
        }
        let path = sz(m, "mountPath");
        if path.is_empty() {
            errs.push(required(format!("{mp}.mountPath"), ""));
        }
        if !mount_points.insert(path) {
            errs.push(invalid_str(
                format!("{mp}.mountPath"),
                path,
                "must be unique",
            ));
        }
        if devices.contains_key(name) {
            errs.push(invalid_str(
                format!("{mp}.name"),
                name,
                "must not already exist in volumeDevices",
            ));
        }
        if devices.values().any(|d| *d == path) {
            errs.push(invalid_str(
                format!("{mp}.mountPath"),
                path,
                "must not already exist as a path in volumeDevices",
            ));
        }
        let sub = sz(m, "subPath");
        if !sub.is_empty() {
            local_descending_path(errs, sub, &format!("{base}.subPath"));
        }
        let expr = sz(m, "subPathExpr");
        if !expr.is_empty() {
            if !sub.is_empty() {
                errs.push(invalid_str(
                    format!("{mp}.subPathExpr"),
                    expr,
                    "subPathExpr and subPath are mutually exclusive",
                ));
            }
            local_descending_path(errs, expr, &format!("{base}.subPathExpr"));
        }
        if let Some(prop) = s(m, "mountPropagation") {
            let field = format!("{base}.mountPropagation");
            if !["Bidirectional", "HostToContainer", "None"].contains(&prop) {
                errs.push(not_supported(
                    &field,
                    q(prop),
                    &["Bidirectional", "HostToContainer", "None"],
                ));
            }
            if prop == "Bidirectional" && !privileged {
                errs.push(forbidden(
                    field,
                    "Bidirectional mount propagation is available only to privileged containers",
                ));
            }
        }
        if let Some(rro) = s(m, "recursiveReadOnly") {
            let field = format!("{base}.recursiveReadOnly");
            match rro {
                "Disabled" => {}
                "Enabled" | "IfPossible" => {
                    if !boolean(m, "readOnly") {
                        errs.push(forbidden(
                            &field,
                            "may only be specified when readOnly is true",
                        ));
                    }
                    if s(m, "mountPropagation").is_some_and(|p| p != "None") {
                        errs.push(forbidden(
                            &field,
                            "may only be specified when mountPropagation is None or not specified",
                        ));
                    }
                }
                other => errs.push(not_supported(
                    &field,
                    q(other),
                    &["Disabled", "Enabled", "IfPossible"],
                )),
            }
        }
    }
    let mut device_paths = BTreeSet::new();
    let mut device_names = BTreeSet::new();
    for (i, d) in arr(c, "volumeDevices").iter().enumerate() {
        let dp = format!("{p}.volumeDevices[{i}]");
        let name = sz(d, "name");
        let path = sz(d, "devicePath");
        if name.is_empty() {
            errs.push(required(format!("{dp}.name"), ""));
        }
        if device_names.contains(name) {
            errs.push(invalid_str(format!("{dp}.name"), name, "must be unique"));
        }
        match volumes.get(name).map(String::as_str) {
            None => errs.push(not_found(format!("{dp}.name"), q(name))),
            Some("persistentVolumeClaim" | "ephemeral") => {}
            Some(_) => errs.push(invalid_str(
                format!("{dp}.name"),
                name,
                "can only use volume source type of PersistentVolumeClaim or Ephemeral for block mode",
            )),
        }
        if path.is_empty() {
            errs.push(required(format!("{dp}.devicePath"), ""));
        }
        if device_paths.contains(path) {
            errs.push(invalid_str(
                format!("{dp}.devicePath"),
                path,
                "must be unique",
            ));
        }
        if !path.is_empty() && has_backsteps(path) {
            errs.push(invalid_str(
                format!("{dp}.devicePath"),
                path,
                "can not contain backsteps ('..')",
            ));
        } else {
            device_paths.insert(path);
        }
        if !name.is_empty() {
            device_names.insert(name);
        }
    }
}

fn validate_probes(errs: &mut Vec<FieldError>, c: &Value, grace: Option<i64>, p: &str) {
    for key in ["livenessProbe", "readinessProbe", "startupProbe"] {
        let Some(probe) = get(c, key) else {
            continue;
        };
        let pp = format!("{p}.{key}");
        validate_handler(errs, probe, grace, &pp, false);
        for field in [
            "initialDelaySeconds",
            "timeoutSeconds",
            "periodSeconds",
            "successThreshold",
            "failureThreshold",
        ] {
            non_negative(errs, probe, field, &format!("{pp}.{field}"));
        }
        if let Some(t) = int(probe, "terminationGracePeriodSeconds") {
            if t <= 0 {
                errs.push(invalid_int(
                    format!("{pp}.terminationGracePeriodSeconds"),
                    t,
                    "must be greater than 0",
                ));
            }
        }
        match key {
            "readinessProbe" => {
                if let Some(t) = get(probe, "terminationGracePeriodSeconds") {
                    errs.push(invalid(
                        format!("{pp}.terminationGracePeriodSeconds"),
                        gv(t),
                        "must not be set for readinessProbes",
                    ));
                }
            }
            _ => {
                let st = int(probe, "successThreshold").unwrap_or(0);
                if st != 1 {
                    errs.push(invalid_int(
                        format!("{pp}.successThreshold"),
                        st,
                        "must be 1",
                    ));
                }
            }
        }
    }
}

fn validate_lifecycle(errs: &mut Vec<FieldError>, l: &Value, grace: Option<i64>, p: &str) {
    for key in ["postStart", "preStop"] {
        if let Some(h) = get(l, key) {
            validate_handler(errs, h, grace, &format!("{p}.{key}"), true);
        }
    }
}

/// `validateHandler`: exactly one action, each checked.
fn validate_handler(
    errs: &mut Vec<FieldError>,
    h: &Value,
    grace: Option<i64>,
    p: &str,
    lifecycle: bool,
) {
    let kinds: &[&str] = if lifecycle {
        &["exec", "httpGet", "tcpSocket", "sleep"]
    } else {
        &["exec", "httpGet", "tcpSocket", "grpc"]
    };
    let mut count = 0;
    for kind in kinds {
        let Some(action) = get(h, kind) else {
            continue;
        };
        let ap = format!("{p}.{kind}");
        if count > 0 {
            errs.push(forbidden(ap, "may not specify more than 1 handler type"));
            continue;
        }
        count += 1;
        match *kind {
            "exec" if arr(action, "command").is_empty() => {
                errs.push(required(format!("{ap}.command"), ""));
            }
            "httpGet" => {
                if sz(action, "path").is_empty() {
                    errs.push(required(format!("{ap}.path"), ""));
                }
                port_num_or_name(errs, get(action, "port"), &format!("{ap}.port"));
                let scheme = sz(action, "scheme");
                if scheme != "HTTP" && scheme != "HTTPS" {
                    errs.push(not_supported(
                        format!("{ap}.scheme"),
                        q(scheme),
                        &["HTTP", "HTTPS"],
                    ));
                }
                for header in arr(action, "httpHeaders") {
                    let name = sz(header, "name");
                    if name.is_empty()
                        || !name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
                    {
                        errs.push(invalid_str(
                            format!("{ap}.httpHeaders"),
                            name,
                            "a valid HTTP header must consist of alphanumeric characters or '-' (e.g. 'X-Header-Name', regex used for validation is '[-A-Za-z0-9]+')",
                        ));
                    }
                }
            }
            "tcpSocket" => port_num_or_name(errs, get(action, "port"), &format!("{ap}.port")),
            "grpc" => {
                let port = int(action, "port").unwrap_or(0);
                if !(1..=65535).contains(&port) {
                    errs.push(invalid_int(
                        format!("{ap}.port"),
                        port,
                        &inclusive_range(1, 65535),
                    ));
                }
            }
            "sleep" => {
                let secs = int(action, "seconds").unwrap_or(0);
                if let Some(g) = grace {
                    if secs < 0 || secs > g {
                        errs.push(invalid_int(
                            ap,
                            secs,
                            &format!(
                                "must be non-negative and less than terminationGracePeriodSeconds ({g})"
                            ),
                        ));
                    }
                }
            }
            _ => {}
        }
    }
    if count == 0 {
        errs.push(required(p, "must specify a handler type"));
    }
}

// ---- resources -----------------------------------------------------------------------------

const STANDARD_RESOURCES: [&str; 20] = [
    "cpu",
    "memory",
    "ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.ephemeral-storage",
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
    "pods",
    "services",
    "replicationcontrollers",
    "resourcequotas",
    "secrets",
    "configmaps",
    "persistentvolumeclaims",
    "storage",
    "requests.storage",
    "services.nodeports",
    "services.loadbalancers",
];

const INTEGER_RESOURCES: [&str; 9] = [
    "pods",
    "services",
    "replicationcontrollers",
    "resourcequotas",
    "secrets",
    "configmaps",
    "persistentvolumeclaims",
    "services.nodeports",
    "services.loadbalancers",
];

fn is_hugepages(name: &str) -> bool {
    name.starts_with("hugepages-")
}

fn is_native(name: &str) -> bool {
    !name.contains('/') || name.contains("kubernetes.io/")
}

fn is_extended(name: &str) -> bool {
    !is_native(name)
        && !name.starts_with("requests.")
        && validation::qualified_name(&format!("requests.{name}")).is_empty()
}

pub(crate) fn is_standard_resource(name: &str) -> bool {
    STANDARD_RESOURCES.contains(&name)
        || is_hugepages(name)
        || name.starts_with("requests.hugepages-")
}

fn overcommit_allowed(name: &str) -> bool {
    !is_extended(name) && !is_hugepages(name)
}

/// `validateResourceName`: a qualified name, standard unless prefixed. Returns whether the
/// name passed the qualified-name checks.
pub(crate) fn resource_name(errs: &mut Vec<FieldError>, name: &str, path: &str) {
    let msgs = validation::qualified_name(name);
    if !msgs.is_empty() {
        for m in msgs {
            errs.push(invalid_str(path, name, &m));
        }
        return;
    }
    if !name.contains('/') && !is_standard_resource(name) {
        errs.push(invalid_str(
            path,
            name,
            "must be a standard resource type or fully qualified",
        ));
    }
}

fn container_resource_name(errs: &mut Vec<FieldError>, name: &str, path: &str) {
    resource_name(errs, name, path);
    if !name.contains('/') {
        if !["cpu", "memory", "ephemeral-storage"].contains(&name) && !is_hugepages(name) {
            errs.push(invalid_str(
                path,
                name,
                "must be a standard resource for containers",
            ));
        }
    } else if !is_native(name) && !is_extended(name) {
        errs.push(invalid_str(
            path,
            name,
            "doesn't follow extended resource name standard",
        ));
    }
}

/// `ValidateResourceQuantityValue` for one entry; `None` when the value is not a quantity
/// (reported).
pub(crate) fn quantity_value(
    errs: &mut Vec<FieldError>,
    name: &str,
    v: &Value,
    path: &str,
) -> Option<Quantity> {
    let Some(qty) = Quantity::from_json(v) else {
        errs.push(invalid(path, gv(v), QUANTITY_FORMAT_MSG));
        return None;
    };
    if qty.is_negative() {
        errs.push(invalid_str(path, &qty.canonical(), NON_NEGATIVE));
    }
    let integer = INTEGER_RESOURCES.contains(&name) || is_extended(name);
    if integer && qty.milli() % 1000 != 0 {
        errs.push(invalid(path, qty.canonical(), "must be an integer"));
    }
    Some(qty)
}

/// `validateResourceRequirements` of a container (`container` names the resource rules).
pub(crate) fn validate_resources(
    errs: &mut Vec<FieldError>,
    res: Option<&Value>,
    path: &str,
    container: bool,
) {
    let Some(res) = res else {
        return;
    };
    let lim_path = format!("{path}.limits");
    let req_path = format!("{path}.requests");
    let check_name = |errs: &mut Vec<FieldError>, name: &str, p: &str| {
        if container {
            container_resource_name(errs, name, p);
        } else {
            resource_name(errs, name, p);
        }
    };
    let mut limits = BTreeMap::new();
    let (mut lim_cpu_mem, mut req_cpu_mem, mut lim_huge, mut req_huge) =
        (false, false, false, false);
    for (name, v) in sorted_entries(omap(res, "limits")) {
        let p = format!("{lim_path}[{name}]");
        check_name(errs, name, &p);
        if let Some(qty) = quantity_value(errs, name, v, &p) {
            limits.insert(name.as_str(), qty);
        }
        lim_huge |= is_hugepages(name);
        lim_cpu_mem |= name == "cpu" || name == "memory";
    }
    for (name, v) in sorted_entries(omap(res, "requests")) {
        let p = format!("{req_path}[{name}]");
        check_name(errs, name, &p);
        let qty = quantity_value(errs, name, v, &p);
        match (qty, limits.get(name.as_str())) {
            (Some(qty), Some(lim)) => {
                if qty != *lim && !overcommit_allowed(name) {
                    errs.push(invalid_str(
                        &req_path,
                        &qty.canonical(),
                        &format!("must be equal to {name} limit of {}", lim.canonical()),
                    ));
                } else if qty > *lim {
                    errs.push(invalid_str(
                        &req_path,
                        &qty.canonical(),
                        &format!(
                            "must be less than or equal to {name} limit of {}",
                            lim.canonical()
                        ),
                    ));
                }
            }
            (_, None) if !overcommit_allowed(name) => errs.push(required(
                &lim_path,
                "Limit must be set for non overcommitable resources",
            )),
            _ => {}
        }
        req_huge |= is_hugepages(name);
        req_cpu_mem |= name == "cpu" || name == "memory";
    }
    if !lim_cpu_mem && !req_cpu_mem && (req_huge || lim_huge) {
        errs.push(forbidden(path, "HugePages require cpu or memory"));
    }
}

// ---- security ------------------------------------------------------------------------------

fn id_range(errs: &mut Vec<FieldError>, v: &Value, key: &str, path: &str) {
    if let Some(id) = int(v, key) {
        if !(0..=i64::from(i32::MAX)).contains(&id) {
            errs.push(invalid_int(
                path,
                id,
                &inclusive_range(0, i64::from(i32::MAX)),
            ));
        }
    }
}

fn seccomp(errs: &mut Vec<FieldError>, sc: &Value, path: &str) {
    let Some(sp) = get(sc, "seccompProfile") else {
        return;
    };
    let p = format!("{path}.seccompProfile");
    match sz(sp, "type") {
        "Localhost" => match s(sp, "localhostProfile") {
            None => errs.push(required(
                format!("{p}.localhostProfile"),
                "must be set when seccomp type is Localhost",
            )),
            Some(l) => local_descending_path(errs, l, &format!("{p}.localhostProfile")),
        },
        "RuntimeDefault" | "Unconfined" => {
            if get(sp, "localhostProfile").is_some() {
                errs.push(invalid(
                    format!("{p}.localhostProfile"),
                    sp.to_string(),
                    "can only be set when seccomp type is Localhost",
                ));
            }
        }
        "" => errs.push(required(
            format!("{p}.type"),
            "type is required when seccompProfile is set",
        )),
        other => errs.push(not_supported(
            format!("{p}.type"),
            q(other),
            &["Localhost", "RuntimeDefault", "Unconfined"],
        )),
    }
}

fn validate_pod_security_context(errs: &mut Vec<FieldError>, spec: &Value, path: &str) {
    let Some(sc) = get(spec, "securityContext") else {
        return;
    };
    let p = format!("{path}.securityContext");
    id_range(errs, sc, "fsGroup", &format!("{p}.fsGroup"));
    id_range(errs, sc, "runAsUser", &format!("{p}.runAsUser"));
    id_range(errs, sc, "runAsGroup", &format!("{p}.runAsGroup"));
    for (i, g) in arr(sc, "supplementalGroups").iter().enumerate() {
        let g = g.as_i64().unwrap_or(0);
        if !(0..=i64::from(i32::MAX)).contains(&g) {
            errs.push(invalid_int(
                format!("{p}.supplementalGroups[{i}]"),
                g,
                &inclusive_range(0, i64::from(i32::MAX)),
            ));
        }
    }
    if boolean(spec, "shareProcessNamespace") && boolean(spec, "hostPID") {
        errs.push(invalid(
            format!("{p}.shareProcessNamespace"),
            "true",
            "ShareProcessNamespace and HostPID cannot both be enabled",
        ));
    }
    let mut sysctls = BTreeSet::new();
    for (i, s) in arr(sc, "sysctls").iter().enumerate() {
        let name = sz(s, "name");
        let np = format!("{p}.sysctls[{i}].name");
        if name.is_empty() {
            errs.push(required(np, ""));
        } else if !sysctl_name_ok(name) {
            errs.push(invalid_str(
                np,
                name,
                "must have at most 253 characters and match regex ^([a-z0-9]([-_a-z0-9]*[a-z0-9])?[\\./])*[a-z0-9]([-_a-z0-9]*[a-z0-9])?$",
            ));
        } else if !sysctls.insert(name) {
            errs.push(duplicate(np, q(name)));
        }
    }
    if let Some(policy) = s(sc, "fsGroupChangePolicy") {
        if policy != "Always" && policy != "OnRootMismatch" {
            errs.push(not_supported(
                format!("{p}.fsGroupChangePolicy"),
                q(policy),
                &["Always", "OnRootMismatch"],
            ));
        }
    }
    seccomp(errs, sc, &p);
    if let Some(policy) = s(sc, "supplementalGroupsPolicy") {
        if policy != "Merge" && policy != "Strict" {
            errs.push(not_supported(
                format!("{p}.supplementalGroupsPolicy"),
                q(policy),
                &["Merge", "Strict"],
            ));
        }
    }
    if let Some(policy) = s(sc, "seLinuxChangePolicy") {
        if policy != "MountOption" && policy != "Recursive" {
            errs.push(not_supported(
                format!("{p}.seLinuxChangePolicy"),
                q(policy),
                &["MountOption", "Recursive"],
            ));
        }
    }
}

fn sysctl_name_ok(name: &str) -> bool {
    if name.len() > 253 {
        return false;
    }
    let segment_ok = |seg: &str| {
        let b = seg.as_bytes();
        !b.is_empty()
            && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
            && (b[b.len() - 1].is_ascii_lowercase() || b[b.len() - 1].is_ascii_digit())
            && b.iter()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-' || *c == b'_')
    };
    name.split(['.', '/']).all(segment_ok)
}

fn validate_security_context(errs: &mut Vec<FieldError>, sc: &Value, p: &str) {
    id_range(errs, sc, "runAsUser", &format!("{p}.runAsUser"));
    id_range(errs, sc, "runAsGroup", &format!("{p}.runAsGroup"));
    if let Some(pm) = s(sc, "procMount") {
        if pm != "Default" && pm != "Unmasked" {
            errs.push(not_supported(
                format!("{p}.procMount"),
                q(pm),
                &["Default", "Unmasked"],
            ));
        }
    }
    seccomp(errs, sc, p);
    if sc.get("allowPrivilegeEscalation").and_then(Value::as_bool) == Some(false) {
        if boolean(sc, "privileged") {
            errs.push(invalid(
                p,
                sc.to_string(),
                "cannot set `allowPrivilegeEscalation` to false and `privileged` to true",
            ));
        }
        if arr(at(sc, &["capabilities"]).unwrap_or(&Value::Null), "add")
            .iter()
            .any(|c| c == "CAP_SYS_ADMIN")
        {
            errs.push(invalid(
                p,
                sc.to_string(),
                "cannot set `allowPrivilegeEscalation` to false and `capabilities.Add` CAP_SYS_ADMIN",
            ));
        }
    }
}

// ---- scheduling ----------------------------------------------------------------------------

/// `ValidateTolerations`.
pub(crate) fn validate_tolerations(errs: &mut Vec<FieldError>, tolerations: &[Value], base: &str) {
    for (i, t) in tolerations.iter().enumerate() {
        let p = format!("{base}[{i}]");
        let key = sz(t, "key");
        let op = sz(t, "operator");
        let effect = sz(t, "effect");
        if !key.is_empty() {
            label_name(errs, key, &format!("{p}.key"));
        }
        if key.is_empty() && op != "Exists" {
            errs.push(invalid_str(
                format!("{p}.operator"),
                op,
                "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
            ));
        }
        if get(t, "tolerationSeconds").is_some() && effect != "NoExecute" {
            errs.push(invalid_str(
                format!("{p}.effect"),
                effect,
                "effect must be 'NoExecute' when `tolerationSeconds` is set",
            ));
        }
        let value = sz(t, "value");
        match op {
            "Equal" | "" => {
                let msgs = validation::label_value(value);
                if !msgs.is_empty() {
                    errs.push(invalid_str(format!("{p}.operator"), value, &msgs.join(";")));
                }
            }
            "Exists" => {
                if !value.is_empty() {
                    errs.push(invalid_str(
                        format!("{p}.operator"),
                        value,
                        "value must be empty when `operator` is 'Exists'",
                    ));
                }
            }
            other => errs.push(not_supported(
                format!("{p}.operator"),
                q(other),
                &["Equal", "Exists"],
            )),
        }
        if !effect.is_empty() && !["NoSchedule", "PreferNoSchedule", "NoExecute"].contains(&effect)
        {
            errs.push(not_supported(
                format!("{p}.effect"),
                q(effect),
                &["NoSchedule", "PreferNoSchedule", "NoExecute"],
            ));
        }
    }
}

fn node_selector_requirement(errs: &mut Vec<FieldError>, rq: &Value, p: &str) {
    let values = arr(rq, "values");
    let operator = sz(rq, "operator");
    if !set_operator_values(errs, operator, values, p) {
        match operator {
            "Gt" | "Lt" if values.len() != 1 => errs.push(required(
                format!("{p}.values"),
                "must be specified single value when `operator` is 'Lt' or 'Gt'",
            )),
            "Gt" | "Lt" => {}
            other => errs.push(invalid_str(
                format!("{p}.operator"),
                other,
                "not a valid selector operator",
            )),
        }
    }
    label_name(errs, sz(rq, "key"), &format!("{p}.key"));
}

fn node_selector_term(errs: &mut Vec<FieldError>, term: &Value, p: &str) {
    for (j, rq) in arr(term, "matchExpressions").iter().enumerate() {
        node_selector_requirement(errs, rq, &format!("{p}.matchExpressions[{j}]"));
    }
}

/// `ValidateNodeSelector` (a required node affinity, a PV's node affinity).
pub(crate) fn node_selector(errs: &mut Vec<FieldError>, sel: &Value, p: &str) {
    let terms = arr(sel, "nodeSelectorTerms");
    if terms.is_empty() {
        errs.push(required(
            format!("{p}.nodeSelectorTerms"),
            "must have at least one node selector term",
        ));
        return;
    }
    for (i, term) in terms.iter().enumerate() {
        node_selector_term(errs, term, &format!("{p}.nodeSelectorTerms[{i}]"));
    }
}

fn pod_affinity_term(errs: &mut Vec<FieldError>, term: &Value, p: &str) {
    validate_selector(
        errs,
        term.get("labelSelector"),
        &format!("{p}.labelSelector"),
    );
    validate_selector(
        errs,
        term.get("namespaceSelector"),
        &format!("{p}.namespaceSelector"),
    );
    for ns in arr(term, "namespaces") {
        let ns = ns.as_str().unwrap_or("");
        for m in validation::dns1123_label(ns) {
            errs.push(invalid_str(format!("{p}.namespace"), ns, &m));
        }
    }
    let key = sz(term, "topologyKey");
    if key.is_empty() {
        errs.push(required(format!("{p}.topologyKey"), "can not be empty"));
    }
    label_name(errs, key, &format!("{p}.topologyKey"));
}

fn validate_affinity(errs: &mut Vec<FieldError>, a: &Value, p: &str) {
    if let Some(na) = get(a, "nodeAffinity") {
        let np = format!("{p}.nodeAffinity");
        if let Some(req) = get(na, "requiredDuringSchedulingIgnoredDuringExecution") {
            node_selector(
                errs,
                req,
                &format!("{np}.requiredDuringSchedulingIgnoredDuringExecution"),
            );
        }
        for (i, t) in arr(na, "preferredDuringSchedulingIgnoredDuringExecution")
            .iter()
            .enumerate()
        {
            let tp = format!("{np}.preferredDuringSchedulingIgnoredDuringExecution[{i}]");
            let w = int(t, "weight").unwrap_or(0);
            if !(1..=100).contains(&w) {
                errs.push(invalid_int(
                    format!("{tp}.weight"),
                    w,
                    "must be in the range 1-100",
                ));
            }
            if let Some(pref) = get(t, "preference") {
                node_selector_term(errs, pref, &format!("{tp}.preference"));
            }
        }
    }
    for kind in ["podAffinity", "podAntiAffinity"] {
        let Some(pa) = get(a, kind) else {
            continue;
        };
        let kp = format!("{p}.{kind}");
        for (i, t) in arr(pa, "requiredDuringSchedulingIgnoredDuringExecution")
            .iter()
            .enumerate()
        {
            pod_affinity_term(
                errs,
                t,
                &format!("{kp}.requiredDuringSchedulingIgnoredDuringExecution[{i}]"),
            );
        }
        for (i, t) in arr(pa, "preferredDuringSchedulingIgnoredDuringExecution")
            .iter()
            .enumerate()
        {
            let tp = format!("{kp}.preferredDuringSchedulingIgnoredDuringExecution[{i}]");
            let w = int(t, "weight").unwrap_or(0);
            if !(1..=100).contains(&w) {
                errs.push(invalid_int(
                    format!("{tp}.weight"),
                    w,
                    "must be in the range 1-100",
                ));
            }
            pod_affinity_term(
                errs,
                t.get("podAffinityTerm").unwrap_or(&Value::Null),
                &format!("{tp}.podAffinityTerm"),
            );
        }
    }
}

fn validate_dns_config(errs: &mut Vec<FieldError>, spec: &Value, policy: &str, path: &str) {
    let p = format!("{path}.dnsConfig");
    let config = get(spec, "dnsConfig");
    if policy == "None" {
        let Some(c) = config else {
            errs.push(required(
                p,
                "must provide `dnsConfig` when `dnsPolicy` is None",
            ));
            return;
        };
        if arr(c, "nameservers").is_empty() {
            errs.push(required(
                format!("{p}.nameservers"),
                "must provide at least one DNS nameserver when `dnsPolicy` is None",
            ));
            return;
        }
    }
    let Some(c) = config else {
        return;
    };
    let ns = arr(c, "nameservers");
    if ns.len() > 3 {
        errs.push(invalid(
            format!("{p}.nameservers"),
            go_strings(c.get("nameservers")),
            "must not have more than 3 nameservers",
        ));
    }
    for (i, n) in ns.iter().enumerate() {
        let n = n.as_str().unwrap_or("");
        if n.parse::<std::net::IpAddr>().is_err() {
            errs.push(invalid_str(
                format!("{p}.nameservers[{i}]"),
                n,
                "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
            ));
        }
    }
    let searches = arr(c, "searches");
    if searches.len() > 32 {
        errs.push(invalid(
            format!("{p}.searches"),
            go_strings(c.get("searches")),
            "must not have more than 32 search paths",
        ));
    }
    for (i, sv) in searches.iter().enumerate() {
        let sv = sv.as_str().unwrap_or("");
        if sv != "." {
            let trimmed = sv.strip_suffix('.').unwrap_or(sv);
            let ok = trimmed.split('.').all(|l| {
                let l = l.strip_prefix('_').unwrap_or(l);
                !l.is_empty()
                    && l.bytes().all(|c| {
                        c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'_'
                    })
                    && !l.starts_with(['-', '_'])
                    && !l.ends_with(['-', '_'])
            });
            if !ok || trimmed.len() > 253 {
                errs.push(invalid_str(
                    format!("{p}.searches[{i}]"),
                    trimmed,
                    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '_', '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '_?[a-z0-9]([-_a-z0-9]*[a-z0-9])?(\\._?[a-z0-9]([-_a-z0-9]*[a-z0-9])?)*')",
                ));
            }
        }
    }
    for (i, o) in arr(c, "options").iter().enumerate() {
        if sz(o, "name").is_empty() {
            errs.push(required(format!("{p}.options[{i}]"), "must not be empty"));
        }
    }
}

fn validate_spread(errs: &mut Vec<FieldError>, constraints: &[Value], path: &str) {
    for (i, c) in constraints.iter().enumerate() {
        let p = format!("{path}.topologySpreadConstraints[{i}]");
        let skew = int(c, "maxSkew").unwrap_or(0);
        if skew <= 0 {
            errs.push(invalid_int(
                format!("{p}.maxSkew"),
                skew,
                "must be greater than zero",
            ));
        }
        let key = sz(c, "topologyKey");
        if key.is_empty() {
            errs.push(required(format!("{p}.topologyKey"), "can not be empty"));
        }
        let when = sz(c, "whenUnsatisfiable");
        if when != "DoNotSchedule" && when != "ScheduleAnyway" {
            errs.push(not_supported(
                format!("{p}.whenUnsatisfiable"),
                q(when),
                &["DoNotSchedule", "ScheduleAnyway"],
            ));
        }
        if constraints[i + 1..]
            .iter()
            .any(|o| sz(o, "topologyKey") == key && sz(o, "whenUnsatisfiable") == when)
        {
            errs.push(duplicate(
                format!("{p}.{{topologyKey, whenUnsatisfiable}}"),
                q(&format!("{{{key}, {when}}}")),
            ));
        }
        if let Some(md) = int(c, "minDomains") {
            if md <= 0 {
                errs.push(invalid_int(
                    format!("{p}.minDomains"),
                    md,
                    "must be greater than zero",
                ));
            }
            if when != "DoNotSchedule" {
                errs.push(invalid_int(
                    format!("{p}.minDomains"),
                    md,
                    &format!(
                        "can only use minDomains if whenUnsatisfiable=DoNotSchedule, not {when}"
                    ),
                ));
            }
        }
        for field in ["nodeAffinityPolicy", "nodeTaintsPolicy"] {
            if let Some(v) = s(c, field) {
                if v != "Honor" && v != "Ignore" {
                    errs.push(not_supported(
                        format!("{p}.{field}"),
                        q(v),
                        &["Honor", "Ignore"],
                    ));
                }
            }
        }
        validate_selector(errs, c.get("labelSelector"), &format!("{p}.labelSelector"));
    }
}

// ---- volumes -------------------------------------------------------------------------------

const FILE_MODE_MSG: &str = "must be a number between 0 and 0777 (octal), both inclusive";

fn file_mode(errs: &mut Vec<FieldError>, v: &Value, key: &str, p: &str) {
    if let Some(m) = int(v, key) {
        if !(0..=0o777).contains(&m) {
            errs.push(invalid_int(format!("{p}.{key}"), m, FILE_MODE_MSG));
        }
    }
}

fn key_to_paths(errs: &mut Vec<FieldError>, items: &[Value], p: &str) {
    for (i, kp) in items.iter().enumerate() {
        let ip = format!("{p}.items[{i}]");
        if sz(kp, "key").is_empty() {
            errs.push(required(format!("{ip}.key"), ""));
        }
        let path = sz(kp, "path");
        if path.is_empty() {
            errs.push(required(format!("{ip}.path"), ""));
        }
        local_non_reserved_path(errs, path, &format!("{ip}.path"));
        file_mode(errs, kp, "mode", &ip);
    }
}

fn downward_api_file(errs: &mut Vec<FieldError>, file: &Value, p: &str) {
    let path = sz(file, "path");
    if path.is_empty() {
        errs.push(required(format!("{p}.path"), ""));
    }
    local_non_reserved_path(errs, path, &format!("{p}.path"));
    if let Some(f) = get(file, "fieldRef") {
        validate_field_ref(errs, f, &VOLUME_FIELD_PATHS, &format!("{p}.fieldRef"));
        if get(file, "resourceFieldRef").is_some() {
            errs.push(invalid(
                p,
                "\"resource\"",
                "fieldRef and resourceFieldRef can not be specified simultaneously",
            ));
        }
    } else if let Some(r) = get(file, "resourceFieldRef") {
        validate_resource_field_ref(errs, r, true, &format!("{p}.resourceFieldRef"));
    } else {
        errs.push(required(
            p,
            "one of fieldRef and resourceFieldRef is required",
        ));
    }
    file_mode(errs, file, "mode", p);
}

/// Fields a legacy volume source must set (upstream only checks they are non-empty).
const REQUIRED_SOURCE_FIELDS: [(&str, &[&str]); 14] = [
    ("gitRepo", &["repository"]),
    ("gcePersistentDisk", &["pdName"]),
    ("awsElasticBlockStore", &["volumeID"]),
    ("glusterfs", &["endpoints", "path"]),
    ("rbd", &["monitors", "image"]),
    ("cinder", &["volumeID"]),
    ("cephfs", &["monitors"]),
    ("flexVolume", &["driver"]),
    ("azureFile", &["secretName", "shareName"]),
    ("vsphereVolume", &["volumePath"]),
    ("photonPersistentDisk", &["pdID"]),
    ("portworxVolume", &["volumeID"]),
    ("azureDisk", &["diskName", "diskURI"]),
    ("scaleIO", &["gateway", "system", "volumeName"]),
];

fn validate_volume_source(errs: &mut Vec<FieldError>, v: &Value, p: &str) -> Option<String> {
    let mut found: Option<String> = None;
    for (key, forbidden_name) in VOLUME_SOURCES {
        let Some(src) = get(v, key) else {
            continue;
        };
        if found.is_some() {
            errs.push(forbidden(
                format!("{p}.{forbidden_name}"),
                "may not specify more than 1 volume type",
            ));
            continue;
        }
        found = Some(key.to_string());
        let sp = format!("{p}.{key}");
        match key {
            "emptyDir" => {
                if src
                    .get("sizeLimit")
                    .and_then(Quantity::from_json)
                    .is_some_and(|q| q.is_negative())
                {
                    errs.push(forbidden(
                        format!("{sp}.sizeLimit"),
                        "SizeLimit field must be a valid resource quantity",
                    ));
                }
            }
            "hostPath" => {
                let path = sz(src, "path");
                if path.is_empty() {
                    errs.push(required(format!("{sp}.path"), ""));
                } else {
                    if has_backsteps(path) {
                        errs.push(invalid_str(
                            format!("{sp}.path"),
                            path,
                            "must not contain '..'",
                        ));
                    }
                    if let Some(t) = s(src, "type") {
                        const TYPES: [&str; 8] = [
                            "",
                            "BlockDevice",
                            "CharDevice",
                            "Directory",
                            "DirectoryOrCreate",
                            "File",
                            "FileOrCreate",
                            "Socket",
                        ];
                        if !TYPES.contains(&t) {
                            errs.push(not_supported(format!("{sp}.type"), q(t), &TYPES));
                        }
                    }
                }
            }
            "secret" => {
                if sz(src, "secretName").is_empty() {
                    errs.push(required(format!("{sp}.secretName"), ""));
                }
                file_mode(errs, src, "defaultMode", &sp);
                key_to_paths(errs, arr(src, "items"), &sp);
            }
            "configMap" => {
                if sz(src, "name").is_empty() {
                    errs.push(required(format!("{sp}.name"), ""));
                }
                file_mode(errs, src, "defaultMode", &sp);
                key_to_paths(errs, arr(src, "items"), &sp);
            }
            "persistentVolumeClaim" => {
                if sz(src, "claimName").is_empty() {
                    errs.push(required(format!("{sp}.claimName"), ""));
                }
            }
            "nfs" => {
                if sz(src, "server").is_empty() {
                    errs.push(required(format!("{sp}.server"), ""));
                }
                let path = sz(src, "path");
                if path.is_empty() {
                    errs.push(required(format!("{sp}.path"), ""));
                }
                if !path.starts_with('/') {
                    errs.push(invalid_str(
                        format!("{sp}.path"),
                        path,
                        "must be an absolute path",
                    ));
                }
            }
            "iscsi" => {
                if sz(src, "targetPortal").is_empty() {
                    errs.push(required(format!("{sp}.targetPortal"), ""));
                }
                if sz(src, "iqn").is_empty() {
                    errs.push(required(format!("{sp}.iqn"), ""));
                }
            }
            "downwardAPI" => {
                file_mode(errs, src, "defaultMode", &sp);
                for file in arr(src, "items") {
                    downward_api_file(errs, file, &sp);
                }
            }
            "projected" => {
                file_mode(errs, src, "defaultMode", &sp);
                validate_projection(errs, src, &sp);
            }
            "csi" => {
                let driver = sz(src, "driver");
                if driver.is_empty() {
                    errs.push(required(format!("{sp}.driver"), ""));
                }
                if driver.len() > 63 {
                    errs.push(too_long(format!("{sp}.driver"), 63));
                }
                for m in validation::dns1123_subdomain(&driver.to_lowercase()) {
                    errs.push(invalid_str(format!("{sp}.driver"), driver, &m));
                }
            }
            "ephemeral" => match get(src, "volumeClaimTemplate") {
                None => errs.push(required(format!("{sp}.volumeClaimTemplate"), "")),
                Some(t) => {
                    let tp = format!("{sp}.volumeClaimTemplate");
                    let meta = t.get("metadata").unwrap_or(&Value::Null);
                    if let Some(a) = meta.get("annotations") {
                        validation::annotations(a, &format!("{tp}.metadata.annotations"), errs);
                    }
                    if let Some(l) = meta.get("labels") {
                        validation::labels(l, &format!("{tp}.metadata.labels"), errs);
                    }
                    super::corev1::validate_claim_spec(
                        errs,
                        t.get("spec").unwrap_or(&Value::Null),
                        &format!("{tp}.spec"),
                    );
                }
            },
            "fc" => {
                let wwns = arr(src, "targetWWNs");
                let wwids = arr(src, "wwids");
                if wwns.is_empty() && wwids.is_empty() {
                    errs.push(required(
                        format!("{sp}.targetWWNs"),
                        "must specify either targetWWNs or wwids, but not both",
                    ));
                }
                if !wwns.is_empty() && !wwids.is_empty() {
                    errs.push(invalid(
                        format!("{sp}.targetWWNs"),
                        go_strings(src.get("targetWWNs")),
                        "targetWWNs and wwids can not be specified simultaneously",
                    ));
                }
                if !wwns.is_empty() {
                    match int(src, "lun") {
                        None => errs.push(required(
                            format!("{sp}.lun"),
                            "lun is required if targetWWNs is specified",
                        )),
                        Some(l) if !(0..=255).contains(&l) => errs.push(invalid_int(
                            format!("{sp}.lun"),
                            l,
                            &inclusive_range(0, 255),
                        )),
                        _ => {}
                    }
                }
            }
            "quobyte" => {
                if sz(src, "registry").is_empty() {
                    errs.push(required(
                        format!("{sp}.registry"),
                        "must be a host:port pair or multiple pairs separated by commas",
                    ));
                }
                if sz(src, "volume").is_empty() {
                    errs.push(required(format!("{sp}.volume"), ""));
                }
            }
            "storageos" => {
                let name = sz(src, "volumeName");
                if name.is_empty() {
                    errs.push(required(format!("{sp}.volumeName"), ""));
                } else {
                    dns_label(errs, name, &format!("{sp}.volumeName"));
                }
            }
            "flocker" => {
                let name = sz(src, "datasetName");
                let uuid = sz(src, "datasetUUID");
                if name.is_empty() && uuid.is_empty() {
                    errs.push(required(
                        &sp,
                        "one of datasetName and datasetUUID is required",
                    ));
                }
                if !name.is_empty() && !uuid.is_empty() {
                    errs.push(invalid(
                        &sp,
                        "\"resource\"",
                        "datasetName and datasetUUID can not be specified simultaneously",
                    ));
                }
                if name.contains('/') {
                    errs.push(invalid_str(
                        format!("{sp}.datasetName"),
                        name,
                        "must not contain '/'",
                    ));
                }
            }
            "image" => {
                if let Some(pp) = s(src, "pullPolicy") {
                    if !["Always", "IfNotPresent", "Never"].contains(&pp) {
                        errs.push(not_supported(
                            format!("{sp}.pullPolicy"),
                            q(pp),
                            &["Always", "IfNotPresent", "Never"],
                        ));
                    }
                }
            }
            other => {
                if let Some((_, fields)) = REQUIRED_SOURCE_FIELDS.iter().find(|(k, _)| *k == other)
                {
                    // cephfs reports under its Go name.
                    let base = if other == "cephfs" {
                        format!("{p}.cephfs")
                    } else {
                        sp.clone()
                    };
                    for f in *fields {
                        if get(src, f).is_none_or(|x| sem_eq(Some(x), None)) {
                            errs.push(required(format!("{base}.{f}"), ""));
                        }
                    }
                }
            }
        }
    }
    if found.is_none() {
        errs.push(required(p, "must specify a volume type"));
    }
    found
}

fn validate_projection(errs: &mut Vec<FieldError>, proj: &Value, p: &str) {
    let mut paths = BTreeSet::new();
    for (i, src) in arr(proj, "sources").iter().enumerate() {
        let sp = format!("{p}.sources[{i}]");
        let mut count = 0;
        for key in ["secret", "configMap"] {
            if let Some(x) = get(src, key) {
                count += 1;
                let kp = format!("{sp}.{key}");
                if sz(x, "name").is_empty() {
                    errs.push(required(format!("{kp}.name"), ""));
                }
                key_to_paths(errs, arr(x, "items"), &kp);
                for item in arr(x, "items") {
                    let path = sz(item, "path");
                    if !path.is_empty() && !paths.insert(path.to_string()) {
                        errs.push(invalid_str(p, sz(x, "name"), "conflicting duplicate paths"));
                    }
                }
            }
        }
        if let Some(d) = get(src, "downwardAPI") {
            count += 1;
            let dp = format!("{sp}.downwardAPI");
            for file in arr(d, "items") {
                downward_api_file(errs, file, &dp);
                let path = sz(file, "path");
                if !path.is_empty() && !paths.insert(path.to_string()) {
                    errs.push(invalid_str(p, path, "conflicting duplicate paths"));
                }
            }
        }
        if let Some(t) = get(src, "serviceAccountToken") {
            count += 1;
            let tp = format!("{sp}.serviceAccountToken");
            let exp = int(t, "expirationSeconds").unwrap_or(0);
            if exp < 600 {
                errs.push(invalid_int(
                    format!("{tp}.expirationSeconds"),
                    exp,
                    "may not specify a duration less than 10 minutes",
                ));
            }
            if exp > 1 << 32 {
                errs.push(invalid_int(
                    format!("{tp}.expirationSeconds"),
                    exp,
                    "may not specify a duration larger than 2^32 seconds",
                ));
            }
            let path = sz(t, "path");
            if path.is_empty() {
                errs.push(required(format!("{p}.path"), ""));
            } else {
                local_non_reserved_path(errs, path, &format!("{p}.path"));
            }
        }
        if get(src, "clusterTrustBundle").is_some() {
            count += 1;
        }
        if count > 1 {
            errs.push(forbidden(
                sp,
                "may not specify more than 1 volume type per source",
            ));
        }
    }
}

/// `ValidateVolumes`: the valid volumes by name, with their source.
fn validate_volumes(
    errs: &mut Vec<FieldError>,
    volumes: &[Value],
    base: &str,
) -> HashMap<String, String> {
    let mut valid = HashMap::new();
    let mut names = BTreeSet::new();
    for (i, v) in volumes.iter().enumerate() {
        let p = format!("{base}[{i}]");
        let mut el = Vec::new();
        let source = validate_volume_source(&mut el, v, &p);
        let name = sz(v, "name");
        if name.is_empty() {
            el.push(required(format!("{p}.name"), ""));
        } else {
            dns_label(&mut el, name, &format!("{p}.name"));
        }
        if names.contains(name) {
            el.push(duplicate(format!("{p}.name"), q(name)));
        }
        if el.is_empty() {
            names.insert(name.to_string());
            valid.insert(name.to_string(), source.unwrap_or_default());
        } else {
            errs.extend(el);
        }
    }
    valid
}

/// See [`super::grace_period`].
pub(crate) fn grace_period(pod: &Value, requested: Option<i64>) -> i64 {
    let spec = &pod["spec"];
    let unscheduled = spec["nodeName"].as_str().is_none_or(str::is_empty);
    let finished = matches!(
        pod["status"]["phase"].as_str(),
        Some("Succeeded" | "Failed")
    );
    if unscheduled || finished {
        return 0;
    }
    requested
        .or_else(|| spec["terminationGracePeriodSeconds"].as_i64())
        .unwrap_or(30)
        .max(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_tags() {
        assert_eq!(image_tag("nginx"), Some("latest"));
        assert_eq!(image_tag("nginx:latest"), Some("latest"));
        assert_eq!(image_tag("nginx:1.25"), Some("1.25"));
        assert_eq!(image_tag("localhost:5000/app"), Some("latest"));
        assert_eq!(image_tag("localhost:5000/app:v1"), Some("v1"));
        assert_eq!(image_tag("busybox@sha256:abcd"), Some(""));
        assert_eq!(image_tag("Nginx"), None);
        assert_eq!(image_tag(""), None);
    }
}
