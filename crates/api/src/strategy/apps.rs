//! The `apps` group: Deployments, ReplicaSets, StatefulSets, DaemonSets and
//! ControllerRevisions.

use serde_json::{json, Value};

use super::pod::{self, validate_template};
use super::util::*;
use crate::validation::{self, FieldError};

// ---- shared --------------------------------------------------------------------------------

fn percent(s: &str) -> Option<i64> {
    let digits = s.strip_suffix('%')?;
    if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The number an int-or-percent stands for (`getIntOrPercentValue`).
fn int_or_percent_value(v: Option<&Value>) -> i64 {
    match v {
        Some(Value::String(s)) => percent(s).unwrap_or_else(|| s.parse().unwrap_or(0)),
        Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
        _ => 0,
    }
}

/// `ValidatePositiveIntOrPercent` and `IsNotMoreThan100Percent`.
pub(crate) fn int_or_percent(
    errs: &mut Vec<FieldError>,
    v: Option<&Value>,
    path: &str,
    max100: bool,
) {
    match v {
        Some(Value::String(s)) => match percent(s) {
            None => errs.push(invalid(
                path,
                s,
                "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
            )),
            Some(p) if max100 && p > 100 => {
                errs.push(invalid(path, s, "must not be greater than 100%"))
            }
            Some(_) => {}
        },
        Some(Value::Number(n)) => {
            let n = n.as_i64().unwrap_or(0);
            if n < 0 {
                errs.push(invalid_int(path, n, NON_NEGATIVE));
            }
        }
        _ => {}
    }
}

/// The selector checks Deployments and ReplicaSets share, then the template.
fn selector_and_template(errs: &mut Vec<FieldError>, spec: &Value, kind: &str) {
    let sel = get(spec, "selector");
    match sel {
        None => errs.push(required("spec.selector", "")),
        Some(s) => {
            validate_selector(errs, Some(s), "spec.selector");
            if omap(s, "matchLabels").map_or(0, |m| m.len()) + arr(s, "matchExpressions").len() == 0
            {
                errs.push(invalid(
                    "spec.selector",
                    go_selector(Some(s)),
                    "empty selector is invalid for deployment",
                ));
            }
        }
    }
    let template = get(spec, "template");
    match selection(sel) {
        Selection::Broken => errs.push(invalid(
            "spec.selector",
            go_selector(sel),
            "invalid label selector",
        )),
        selected => {
            let labels = template.and_then(|t| at(t, &["metadata", "labels"]));
            if !matches!(selected, Selection::Everything) && !selector_matches(sel, labels) {
                errs.push(invalid(
                    "spec.template.metadata.labels",
                    go_map(labels),
                    "`selector` does not match template `labels`",
                ));
            }
            validate_template(errs, template, "spec.template");
            restart_always(errs, template, kind);
        }
    }
}

/// Workload templates must restart always and have no deadline.
fn restart_always(errs: &mut Vec<FieldError>, template: Option<&Value>, kind: &str) {
    let spec = template
        .and_then(|t| get(t, "spec"))
        .unwrap_or(&Value::Null);
    let rp = sz(spec, "restartPolicy");
    if rp != "Always" {
        errs.push(not_supported(
            "spec.template.spec.restartPolicy",
            q(rp),
            &["Always"],
        ));
    }
    if get(spec, "activeDeadlineSeconds").is_some() {
        errs.push(forbidden(
            "spec.template.spec.activeDeadlineSeconds",
            &format!("activeDeadlineSeconds in {kind} is not Supported"),
        ));
    }
}

fn immutable_selector(errs: &mut Vec<FieldError>, obj: &Value, old: Option<&Value>) {
    if let Some(old) = old {
        let new_sel = at(obj, &["spec", "selector"]);
        if !sem_eq(new_sel, at(old, &["spec", "selector"])) {
            errs.push(invalid("spec.selector", go_selector(new_sel), IMMUTABLE));
        }
    }
}

fn default_template_of(obj: &mut Value) {
    if let Some(t) = child_if(obj, "spec").and_then(|s| child_if(s, "template")) {
        pod::default_template(t);
    }
}

// ---- Deployments ---------------------------------------------------------------------------

pub(crate) fn prepare_deployment(obj: &mut Value, old: Option<&Value>) {
    if let Some(spec) = child_if(obj, "spec") {
        default(spec, "replicas", json!(1));
        if let Some(strategy) = child(spec, "strategy") {
            let ty = strategy.get("type").and_then(Value::as_str).unwrap_or("");
            if ty.is_empty() {
                strategy.insert("type".into(), json!("RollingUpdate"));
            }
        }
        if let Some(strategy) = child_if(spec, "strategy") {
            if sz(strategy, "type") == "RollingUpdate" {
                if let Some(ru) = child(strategy, "rollingUpdate") {
                    ru.entry("maxUnavailable").or_insert(json!("25%"));
                    ru.entry("maxSurge").or_insert(json!("25%"));
                    for key in ["maxUnavailable", "maxSurge"] {
                        if ru.get(key).is_some_and(Value::is_null) {
                            ru.insert(key.into(), json!("25%"));
                        }
                    }
                }
            }
        }
        default(spec, "revisionHistoryLimit", json!(10));
        default(spec, "progressDeadlineSeconds", json!(600));
    }
    default_template_of(obj);
    if old.is_none() {
        reset_status(obj, json!({}));
    }
}

pub(crate) fn validate_deployment(obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    non_negative(&mut errs, spec, "replicas", "spec.replicas");
    selector_and_template(&mut errs, spec, "ReplicaSet");
    let strategy = spec.get("strategy").unwrap_or(&Value::Null);
    match sz(strategy, "type") {
        "Recreate" => {
            if get(strategy, "rollingUpdate").is_some() {
                errs.push(forbidden(
                    "spec.strategy.rollingUpdate",
                    "may not be specified when strategy `type` is 'Recreate'",
                ));
            }
        }
        "RollingUpdate" => match get(strategy, "rollingUpdate") {
            None => errs.push(required(
                "spec.strategy.rollingUpdate",
                "this should be defaulted and never be nil",
            )),
            Some(ru) => {
                let p = "spec.strategy.rollingUpdate";
                int_or_percent(&mut errs, get(ru, "maxUnavailable"), &format!("{p}.maxUnavailable"), false);
                int_or_percent(&mut errs, get(ru, "maxSurge"), &format!("{p}.maxSurge"), false);
                if int_or_percent_value(get(ru, "maxUnavailable")) == 0
                    && int_or_percent_value(get(ru, "maxSurge")) == 0
                {
                    errs.push(invalid(
                        format!("{p}.maxUnavailable"),
                        int_or_string(get(ru, "maxUnavailable").unwrap_or(&json!(0))),
                        "may not be 0 when `maxSurge` is 0",
                    ));
                }
                if let Some(Value::String(s)) = get(ru, "maxUnavailable") {
                    if percent(s).is_some_and(|p| p > 100) {
                        errs.push(invalid(
                            format!("{p}.maxUnavailable"),
                            s,
                            "must not be greater than 100%",
                        ));
                    }
                }
            }
        },
        other => errs.push(not_supported(
            "spec.strategy",
            format!(
                "apps.DeploymentStrategy{{Type:{}, RollingUpdate:(*apps.RollingUpdateDeployment)(nil)}}",
                q(other)
            ),
            &["Recreate", "RollingUpdate"],
        )),
    }
    non_negative(&mut errs, spec, "minReadySeconds", "spec.minReadySeconds");
    non_negative(
        &mut errs,
        spec,
        "revisionHistoryLimit",
        "spec.revisionHistoryLimit",
    );
    if let Some(pds) = int(spec, "progressDeadlineSeconds") {
        if pds < 0 {
            errs.push(invalid_int(
                "spec.progressDeadlineSeconds",
                pds,
                NON_NEGATIVE,
            ));
        }
        if pds <= int(spec, "minReadySeconds").unwrap_or(0) {
            errs.push(invalid_int(
                "spec.progressDeadlineSeconds",
                pds,
                "must be greater than minReadySeconds",
            ));
        }
    }
    immutable_selector(&mut errs, obj, old);
    errs
}

// ---- ReplicaSets ---------------------------------------------------------------------------

pub(crate) fn prepare_replica_set(obj: &mut Value, old: Option<&Value>) {
    if let Some(spec) = child_if(obj, "spec") {
        default(spec, "replicas", json!(1));
    }
    default_template_of(obj);
    if old.is_none() {
        reset_status(obj, json!({"replicas": 0}));
    }
}

pub(crate) fn validate_replica_set(obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    non_negative(&mut errs, spec, "replicas", "spec.replicas");
    non_negative(&mut errs, spec, "minReadySeconds", "spec.minReadySeconds");
    selector_and_template(&mut errs, spec, "ReplicaSet");
    immutable_selector(&mut errs, obj, old);
    errs
}

// ---- StatefulSets --------------------------------------------------------------------------

pub(crate) fn prepare_stateful_set(obj: &mut Value, old: Option<&Value>) {
    if let Some(spec) = child_if(obj, "spec") {
        default_str(spec, "podManagementPolicy", "OrderedReady");
        if let Some(us) = child(spec, "updateStrategy") {
            let ty = us.get("type").and_then(Value::as_str).unwrap_or("");
            if ty.is_empty() {
                us.insert("type".into(), json!("RollingUpdate"));
                if us.get("rollingUpdate").is_none_or(Value::is_null) {
                    us.insert("rollingUpdate".into(), json!({}));
                }
            }
        }
        if let Some(us) = child_if(spec, "updateStrategy") {
            if sz(us, "type") == "RollingUpdate" {
                if let Some(ru) = child_if(us, "rollingUpdate") {
                    default(ru, "partition", json!(0));
                }
            }
        }
        if let Some(policy) = child(spec, "persistentVolumeClaimRetentionPolicy") {
            for key in ["whenDeleted", "whenScaled"] {
                if policy
                    .get(key)
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
                {
                    policy.insert(key.into(), json!("Retain"));
                }
            }
        }
        default(spec, "replicas", json!(1));
        default(spec, "revisionHistoryLimit", json!(10));
        for claim in each(spec, "volumeClaimTemplates") {
            template_metadata(claim);
            if let Some(cs) = child_if(claim, "spec") {
                pod::default_claim_spec(cs);
            }
            if let Some(status) = child(claim, "status") {
                if status
                    .get("phase")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
                {
                    status.insert("phase".into(), json!("Pending"));
                }
            }
        }
    }
    default_template_of(obj);
    if old.is_none() {
        reset_status(obj, json!({"replicas": 0, "availableReplicas": 0}));
    }
}

const STS_UPDATABLE: [&str; 7] = [
    "replicas",
    "ordinals",
    "template",
    "updateStrategy",
    "revisionHistoryLimit",
    "persistentVolumeClaimRetentionPolicy",
    "minReadySeconds",
];

pub(crate) fn validate_stateful_set(obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    match sz(spec, "podManagementPolicy") {
        "" => errs.push(required("spec.podManagementPolicy", "")),
        "OrderedReady" | "Parallel" => {}
        other => errs.push(invalid_str(
            "spec.podManagementPolicy",
            other,
            "must be 'OrderedReady' or 'Parallel'",
        )),
    }
    let us = spec.get("updateStrategy").unwrap_or(&Value::Null);
    match sz(us, "type") {
        "" => errs.push(required("spec.updateStrategy", "")),
        "OnDelete" => {
            if let Some(ru) = get(us, "rollingUpdate") {
                errs.push(invalid(
                    "spec.updateStrategy.rollingUpdate",
                    ru.to_string(),
                    "only allowed for updateStrategy 'RollingUpdate'",
                ));
            }
        }
        "RollingUpdate" => {
            if let Some(ru) = get(us, "rollingUpdate") {
                let p = "spec.updateStrategy.rollingUpdate";
                non_negative(&mut errs, ru, "partition", &format!("{p}.partition"));
                if let Some(mu) = get(ru, "maxUnavailable") {
                    let mp = format!("{p}.maxUnavailable");
                    int_or_percent(&mut errs, Some(mu), &mp, false);
                    if int_or_percent_value(Some(mu)) == 0 {
                        errs.push(invalid(&mp, int_or_string(mu), "cannot be 0"));
                    }
                    if let Value::String(s) = mu {
                        if percent(s).is_some_and(|p| p > 100) {
                            errs.push(invalid(&mp, s, "must not be greater than 100%"));
                        }
                    }
                }
            }
        }
        other => errs.push(invalid(
            "spec.updateStrategy",
            format!(
                "apps.StatefulSetUpdateStrategy{{Type:{}, RollingUpdate:(*apps.RollingUpdateStatefulSetStrategy)(nil)}}",
                q(other)
            ),
            "must be 'RollingUpdate' or 'OnDelete'",
        )),
    }
    if let Some(policy) = get(spec, "persistentVolumeClaimRetentionPolicy") {
        for key in ["whenDeleted", "whenScaled"] {
            let v = sz(policy, key);
            if v != "Retain" && v != "Delete" {
                errs.push(not_supported(
                    format!("spec.persistentVolumeClaimRetentionPolicy.{key}"),
                    q(v),
                    &["Retain", "Delete"],
                ));
            }
        }
    }
    non_negative(&mut errs, spec, "replicas", "spec.replicas");
    non_negative(&mut errs, spec, "minReadySeconds", "spec.minReadySeconds");
    if let Some(ord) = get(spec, "ordinals") {
        non_negative(&mut errs, ord, "start", "spec.ordinals.start");
    }
    let sel = get(spec, "selector");
    match sel {
        None => errs.push(required("spec.selector", "")),
        Some(s) => {
            validate_selector(&mut errs, Some(s), "spec.selector");
            if omap(s, "matchLabels").map_or(0, |m| m.len()) + arr(s, "matchExpressions").len() == 0
            {
                errs.push(invalid(
                    "spec.selector",
                    go_selector(Some(s)),
                    "empty selector is invalid for statefulset",
                ));
            }
        }
    }
    let template = get(spec, "template");
    match selection(sel) {
        Selection::Broken => errs.push(invalid("spec.selector", go_selector(sel), "")),
        selected => match template {
            None => errs.push(required("spec.template", "")),
            Some(t) => {
                let labels = at(t, &["metadata", "labels"]);
                if !matches!(selected, Selection::Everything) && !selector_matches(sel, labels) {
                    errs.push(invalid(
                        "spec.template.metadata.labels",
                        go_map(labels),
                        "`selector` does not match template `labels`",
                    ));
                }
                let meta = t.get("metadata").unwrap_or(&Value::Null);
                if let Some(l) = meta.get("labels") {
                    validation::labels(l, "spec.template.labels", &mut errs);
                }
                if let Some(a) = meta.get("annotations") {
                    validation::annotations(a, "spec.template.annotations", &mut errs);
                }
            }
        },
    }
    let tspec = template
        .and_then(|t| get(t, "spec"))
        .unwrap_or(&Value::Null);
    let rp = sz(tspec, "restartPolicy");
    if rp != "Always" {
        errs.push(not_supported(
            "spec.template.spec.restartPolicy",
            q(rp),
            &["Always"],
        ));
    }
    if get(tspec, "activeDeadlineSeconds").is_some() {
        errs.push(forbidden(
            "spec.template.spec.activeDeadlineSeconds",
            "activeDeadlineSeconds in StatefulSet is not Supported",
        ));
    }
    if let Some(old) = old {
        let strip = |v: &Value| {
            let mut s = v.get("spec").cloned().unwrap_or(json!({}));
            if let Some(m) = s.as_object_mut() {
                for k in STS_UPDATABLE {
                    m.remove(k);
                }
            }
            s
        };
        if !sem_eq(Some(&strip(obj)), Some(&strip(old))) {
            errs.push(forbidden(
                "spec",
                "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
            ));
        }
    }
    errs
}

// ---- DaemonSets ----------------------------------------------------------------------------

const TEMPLATE_GENERATION: &str = "deprecated.daemonset.template.generation";

pub(crate) fn prepare_daemon_set(obj: &mut Value, old: Option<&Value>) {
    if let Some(spec) = child_if(obj, "spec") {
        if let Some(us) = child(spec, "updateStrategy") {
            let ty = us.get("type").and_then(Value::as_str).unwrap_or("");
            if ty.is_empty() {
                us.insert("type".into(), json!("RollingUpdate"));
            }
        }
        if let Some(us) = child_if(spec, "updateStrategy") {
            if sz(us, "type") == "RollingUpdate" {
                if let Some(ru) = child(us, "rollingUpdate") {
                    for (key, val) in [("maxUnavailable", 1), ("maxSurge", 0)] {
                        if ru.get(key).is_none_or(Value::is_null) {
                            ru.insert(key.into(), json!(val));
                        }
                    }
                }
            }
        }
        default(spec, "revisionHistoryLimit", json!(10));
    }
    default_template_of(obj);
    // The template generation of apps/v1 lives in an annotation.
    let generation = match old {
        None => 1,
        Some(old) => {
            let prev = at(old, &["metadata", "annotations", TEMPLATE_GENERATION])
                .and_then(Value::as_str)
                .and_then(|g| g.parse::<i64>().ok())
                .unwrap_or(1);
            if sem_eq(
                at(obj, &["spec", "template"]),
                at(old, &["spec", "template"]),
            ) {
                prev
            } else {
                prev + 1
            }
        }
    };
    if let Some(meta) = child(obj, "metadata") {
        let slot = meta.entry("annotations").or_insert(Value::Null);
        if slot.is_null() {
            *slot = json!({});
        }
        if let Some(a) = slot.as_object_mut() {
            a.insert(TEMPLATE_GENERATION.into(), json!(generation.to_string()));
        }
    }
    if old.is_none() {
        reset_status(
            obj,
            json!({
                "currentNumberScheduled": 0,
                "numberMisscheduled": 0,
                "desiredNumberScheduled": 0,
                "numberReady": 0,
            }),
        );
    }
}

pub(crate) fn validate_daemon_set(obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let sel = get(spec, "selector");
    validate_selector(&mut errs, sel, "spec.selector");
    let template = get(spec, "template");
    let labels = template.and_then(|t| at(t, &["metadata", "labels"]));
    if !matches!(selection(sel), Selection::Broken | Selection::Everything)
        && !selector_matches(sel, labels)
    {
        errs.push(invalid(
            "spec.template.metadata.labels",
            go_map(labels),
            "`selector` does not match template `labels`",
        ));
    }
    if let Some(s) = sel {
        if omap(s, "matchLabels").map_or(0, |m| m.len()) + arr(s, "matchExpressions").len() == 0 {
            errs.push(invalid(
                "spec.selector",
                go_selector(Some(s)),
                "empty selector is invalid for daemonset",
            ));
        }
    }
    validate_template(&mut errs, template, "spec.template");
    restart_always(&mut errs, template, "DaemonSet");
    non_negative(&mut errs, spec, "minReadySeconds", "spec.minReadySeconds");
    let us = spec.get("updateStrategy").unwrap_or(&Value::Null);
    match sz(us, "type") {
        "OnDelete" => {}
        "RollingUpdate" => match get(us, "rollingUpdate") {
            None => errs.push(required("spec.updateStrategy.rollingUpdate", "")),
            Some(ru) => {
                let p = "spec.updateStrategy.rollingUpdate";
                let mu = get(ru, "maxUnavailable");
                let ms = get(ru, "maxSurge");
                int_or_percent(&mut errs, mu, &format!("{p}.maxUnavailable"), true);
                int_or_percent(&mut errs, ms, &format!("{p}.maxSurge"), true);
                let has_unavailable = int_or_percent_value(mu) != 0;
                let has_surge = int_or_percent_value(ms) != 0;
                if has_unavailable && has_surge {
                    errs.push(invalid(
                        format!("{p}.maxSurge"),
                        int_or_string(ms.unwrap_or(&json!(0))),
                        "may not be set when maxUnavailable is non-zero",
                    ));
                } else if !has_unavailable && !has_surge {
                    errs.push(required(
                        format!("{p}.maxUnavailable"),
                        "cannot be 0 when maxSurge is 0",
                    ));
                }
            }
        },
        other => errs.push(not_supported(
            "spec.updateStrategy",
            format!(
                "apps.DaemonSetUpdateStrategy{{Type:{}, RollingUpdate:(*apps.RollingUpdateDaemonSet)(nil)}}",
                q(other)
            ),
            &["RollingUpdate", "OnDelete"],
        )),
    }
    non_negative(
        &mut errs,
        spec,
        "revisionHistoryLimit",
        "spec.revisionHistoryLimit",
    );
    immutable_selector(&mut errs, obj, old);
    errs
}

// ---- ControllerRevisions -------------------------------------------------------------------

pub(crate) fn validate_controller_revision(obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if get(obj, "data").is_none() {
        errs.push(required("data", "data is mandatory"));
    }
    non_negative(&mut errs, obj, "revision", "revision");
    if let Some(old) = old {
        if !sem_eq(obj.get("data"), old.get("data")) {
            errs.push(invalid("data", gvo(get(obj, "data")), IMMUTABLE));
        }
    }
    errs
}
