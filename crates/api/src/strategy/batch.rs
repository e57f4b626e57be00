//! The `batch` group: Jobs (with the generated selector) and CronJobs (with the schedule
//! parser upstream uses, standard five-field cron plus `@hourly`-style descriptors).

use serde_json::{json, Value};

use super::pod::{self, validate_template};
use super::util::*;
use crate::validation::{self, FieldError};

const CONTROLLER_UID: &str = "batch.kubernetes.io/controller-uid";
const JOB_NAME: &str = "batch.kubernetes.io/job-name";
const LEGACY_CONTROLLER_UID: &str = "controller-uid";
const LEGACY_JOB_NAME: &str = "job-name";

// ---- Jobs ----------------------------------------------------------------------------------

/// `SetDefaults_Job` and the template defaults.
fn default_job_spec(spec: &mut Value) {
    if get(spec, "completions").is_none() && get(spec, "parallelism").is_none() {
        default(spec, "completions", json!(1));
    }
    default(spec, "parallelism", json!(1));
    let backoff = if get(spec, "backoffLimitPerIndex").is_some() {
        i64::from(i32::MAX)
    } else {
        6
    };
    default(spec, "backoffLimit", json!(backoff));
    default(spec, "completionMode", json!("NonIndexed"));
    default(spec, "suspend", json!(false));
    let replacement = if get(spec, "podFailurePolicy").is_some() {
        "Failed"
    } else {
        "TerminatingOrFailed"
    };
    default(spec, "podReplacementPolicy", json!(replacement));
    default(spec, "manualSelector", json!(false));
    if let Some(pfp) = child_if(spec, "podFailurePolicy") {
        for rule in each(pfp, "rules") {
            for pattern in each(rule, "onPodConditions") {
                default_str(pattern, "status", "True");
            }
        }
    }
    if let Some(t) = child_if(spec, "template") {
        pod::default_template(t);
    }
}

/// Labels on the template and a selector that tie the Job's pods to it (`generateSelector`).
fn generate_selector(obj: &mut Value) {
    let name = at(obj, &["metadata", "name"])
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let uid = at(obj, &["metadata", "uid"])
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if uid.is_empty() {
        return;
    }
    let Some(spec) = child_if(obj, "spec") else {
        return;
    };
    if let Some(labels) = child(spec, "template")
        .and_then(|t| {
            let meta = t.entry("metadata").or_insert(Value::Null);
            if meta.is_null() {
                *meta = json!({});
            }
            meta.as_object_mut()
        })
        .and_then(|m| {
            let l = m.entry("labels").or_insert(Value::Null);
            if l.is_null() {
                *l = json!({});
            }
            l.as_object_mut()
        })
    {
        for (key, value) in [
            (LEGACY_JOB_NAME, &name),
            (JOB_NAME, &name),
            (LEGACY_CONTROLLER_UID, &uid),
            (CONTROLLER_UID, &uid),
        ] {
            labels.entry(key).or_insert_with(|| json!(value));
        }
    }
    if let Some(sel) = child(spec, "selector") {
        let ml = sel.entry("matchLabels").or_insert(Value::Null);
        if ml.is_null() {
            *ml = json!({});
        }
        if let Some(ml) = ml.as_object_mut() {
            ml.entry(CONTROLLER_UID).or_insert_with(|| json!(uid));
        }
    }
}

pub(crate) fn prepare_job(obj: &mut Value, old: Option<&Value>) {
    // A Job without labels takes its template's (upstream shares the map, so the labels the
    // selector generation adds show up on the Job too).
    let share_labels = at(obj, &["spec", "template", "metadata", "labels"])
        .is_some_and(Value::is_object)
        && at(obj, &["metadata", "labels"])
            .and_then(Value::as_object)
            .is_none_or(|m| m.is_empty());
    if let Some(spec) = child_if(obj, "spec") {
        default_job_spec(spec);
    }
    if old.is_none() {
        if at(obj, &["spec", "manualSelector"]).and_then(Value::as_bool) != Some(true) {
            generate_selector(obj);
        }
        reset_status(obj, json!({}));
    }
    if share_labels {
        if let Some(labels) = at(obj, &["spec", "template", "metadata", "labels"]).cloned() {
            if let Some(meta) = child(obj, "metadata") {
                meta.insert("labels".into(), labels);
            }
        }
    }
}

/// `ValidateHasLabel`.
fn has_label(errs: &mut Vec<FieldError>, template: &Value, key: &str, want: &str) {
    let labels = at(template, &["metadata", "labels"]);
    let path = format!("spec.template.metadata.labels[{key}]");
    match labels.and_then(|l| l.get(key)).and_then(Value::as_str) {
        None => errs.push(required(path, &format!("must be '{want}'"))),
        Some(v) if v != want => {
            errs.push(invalid(path, go_map(labels), &format!("must be '{want}'")))
        }
        _ => {}
    }
}

/// `validateGeneratedSelector`.
fn generated_selector(errs: &mut Vec<FieldError>, obj: &Value, prefixed: bool) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    if spec.get("manualSelector").and_then(Value::as_bool) == Some(true) {
        return;
    }
    let Some(sel) = get(spec, "selector") else {
        return;
    };
    let uid = at(obj, &["metadata", "uid"])
        .and_then(Value::as_str)
        .unwrap_or("");
    let name = at(obj, &["metadata", "name"])
        .and_then(Value::as_str)
        .unwrap_or("");
    if uid.is_empty() {
        errs.push(required("metadata.uid", ""));
    }
    let template = spec.get("template").unwrap_or(&Value::Null);
    has_label(errs, template, LEGACY_CONTROLLER_UID, uid);
    has_label(errs, template, LEGACY_JOB_NAME, name);
    let mut expected = json!({LEGACY_CONTROLLER_UID: uid, LEGACY_JOB_NAME: name});
    if prefixed {
        has_label(errs, template, CONTROLLER_UID, uid);
        has_label(errs, template, JOB_NAME, name);
        expected[CONTROLLER_UID] = json!(uid);
        expected[JOB_NAME] = json!(name);
    }
    if !matches!(selection(Some(sel)), Selection::Broken)
        && !selector_matches(Some(sel), Some(&expected))
    {
        errs.push(invalid(
            "spec.selector",
            go_selector(Some(sel)),
            "`selector` not auto-generated",
        ));
    }
}

/// `validateJobSpec` (everything but the selector), at `p` (`spec` or
/// `spec.jobTemplate.spec`).
fn job_spec(errs: &mut Vec<FieldError>, spec: &Value, p: &str) {
    for field in [
        "parallelism",
        "completions",
        "activeDeadlineSeconds",
        "backoffLimit",
        "ttlSecondsAfterFinished",
        "backoffLimitPerIndex",
    ] {
        non_negative(errs, spec, field, &format!("{p}.{field}"));
    }
    if get(spec, "maxFailedIndexes").is_some() {
        non_negative(
            errs,
            spec,
            "maxFailedIndexes",
            &format!("{p}.maxFailedIndexes"),
        );
        if get(spec, "backoffLimitPerIndex").is_none() {
            errs.push(required(
                format!("{p}.backoffLimitPerIndex"),
                "when maxFailedIndexes is specified",
            ));
        }
    }
    if let Some(mb) = s(spec, "managedBy") {
        let (ok, too_long_) = (
            mb.split_once('/').is_some_and(|(h, r)| {
                !h.is_empty() && !r.is_empty() && validation::dns1123_subdomain(h).is_empty()
            }),
            mb.len() > 63,
        );
        if !ok {
            errs.push(invalid_str(
                format!("{p}.managedBy"),
                mb,
                "must be a domain-prefixed path (such as \"acme.io/foo\")",
            ));
        }
        if too_long_ {
            errs.push(FieldError {
                field: format!("{p}.managedBy"),
                reason: "FieldValueTooLong",
                message: "Too long: may not be more than 63 bytes".into(),
            });
        }
    }
    let mode = s(spec, "completionMode");
    if let Some(m) = mode {
        if m != "NonIndexed" && m != "Indexed" {
            errs.push(not_supported(
                format!("{p}.completionMode"),
                q(m),
                &["NonIndexed", "Indexed"],
            ));
        }
        if m == "Indexed" {
            if get(spec, "completions").is_none() {
                errs.push(required(
                    format!("{p}.completions"),
                    "when completion mode is Indexed",
                ));
            }
            if let Some(par) = int(spec, "parallelism") {
                if par > 100_000 {
                    errs.push(invalid_int(
                        format!("{p}.parallelism"),
                        par,
                        "must be less than or equal to 100000 when completion mode is Indexed",
                    ));
                }
            }
            if let (Some(c), Some(mfi)) = (int(spec, "completions"), int(spec, "maxFailedIndexes"))
            {
                if mfi > c {
                    errs.push(invalid_int(
                        format!("{p}.maxFailedIndexes"),
                        mfi,
                        "must be less than or equal to completions",
                    ));
                }
            }
        }
    }
    if mode.is_none_or(|m| m == "NonIndexed") {
        for field in ["backoffLimitPerIndex", "maxFailedIndexes"] {
            if let Some(v) = int(spec, field) {
                errs.push(invalid_int(
                    format!("{p}.{field}"),
                    v,
                    "requires indexed completion mode",
                ));
            }
        }
    }
    let pfp = get(spec, "podFailurePolicy");
    if let Some(pfp) = pfp {
        let rules = arr(pfp, "rules");
        if rules.len() > 20 {
            errs.push(too_many(
                format!("{p}.podFailurePolicy.rules"),
                rules.len(),
                20,
            ));
        }
        for (i, rule) in rules.iter().enumerate() {
            let rp = format!("{p}.podFailurePolicy.rules[{i}]");
            const ACTIONS: [&str; 4] = ["Count", "FailIndex", "FailJob", "Ignore"];
            match sz(rule, "action") {
                "" => errs.push(required(
                    format!("{rp}.action"),
                    "valid values: [\"Count\" \"FailIndex\" \"FailJob\" \"Ignore\"]",
                )),
                "FailIndex" if get(spec, "backoffLimitPerIndex").is_none() => {
                    errs.push(invalid_str(
                        format!("{rp}.action"),
                        "FailIndex",
                        "requires the backoffLimitPerIndex to be set",
                    ))
                }
                a if !ACTIONS.contains(&a) => {
                    errs.push(not_supported(format!("{rp}.action"), q(a), &ACTIONS))
                }
                _ => {}
            }
            let exit = get(rule, "onExitCodes");
            let conds = arr(rule, "onPodConditions");
            if exit.is_some() && !conds.is_empty() {
                errs.push(invalid(
                    &rp,
                    "",
                    "specifying both OnExitCodes and OnPodConditions is not supported",
                ));
            }
            if exit.is_none() && conds.is_empty() {
                errs.push(invalid(
                    &rp,
                    "",
                    "specifying one of OnExitCodes and OnPodConditions is required",
                ));
            }
        }
    }
    if let Some(sp) = get(spec, "successPolicy") {
        if mode != Some("Indexed") {
            errs.push(invalid(
                format!("{p}.successPolicy"),
                sp.to_string(),
                "requires indexed completion mode",
            ));
        }
    }
    if let Some(rp) = s(spec, "podReplacementPolicy") {
        if pfp.is_some() {
            if rp != "Failed" {
                errs.push(not_supported(
                    format!("{p}.podReplacementPolicy"),
                    q(rp),
                    &["Failed"],
                ));
            }
        } else if rp != "Failed" && rp != "TerminatingOrFailed" {
            errs.push(not_supported(
                format!("{p}.podReplacementPolicy"),
                q(rp),
                &["Failed", "TerminatingOrFailed"],
            ));
        }
    }
    let template = get(spec, "template");
    validate_template(errs, template, &format!("{p}.template"));
    let restart = template
        .and_then(|t| at(t, &["spec", "restartPolicy"]))
        .and_then(Value::as_str)
        .unwrap_or("");
    let rp_path = format!("{p}.template.spec.restartPolicy");
    match restart {
        "Always" | "" => errs.push(required(rp_path, "valid values: \"OnFailure\", \"Never\"")),
        "OnFailure" | "Never" => {
            if pfp.is_some() && restart != "Never" {
                errs.push(invalid_str(
                    rp_path,
                    restart,
                    "only \"Never\" is supported when podFailurePolicy is specified",
                ));
            }
        }
        other => errs.push(not_supported(rp_path, q(other), &["OnFailure", "Never"])),
    }
}

pub(crate) fn validate_job(obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    // Jobs created before the prefixed labels existed keep validating without them.
    let prefixed = old.is_none_or(|o| {
        let labels = at(o, &["spec", "template", "metadata", "labels"]);
        labels.is_some_and(|l| l.get(CONTROLLER_UID).is_some() && l.get(JOB_NAME).is_some())
    });
    generated_selector(&mut errs, obj, prefixed);
    job_spec(&mut errs, spec, "spec");
    let sel = get(spec, "selector");
    match sel {
        None => errs.push(required("spec.selector", "")),
        Some(s) => validate_selector(&mut errs, Some(s), "spec.selector"),
    }
    if !matches!(selection(sel), Selection::Broken) {
        let labels = at(spec, &["template", "metadata", "labels"]);
        if !selector_matches(sel, labels) && !matches!(selection(sel), Selection::Everything) {
            errs.push(invalid(
                "spec.template.metadata.labels",
                go_map(labels),
                "`selector` does not match template `labels`",
            ));
        }
    }
    if s(spec, "completionMode") == Some("Indexed") {
        if let Some(c) = int(spec, "completions").filter(|c| *c > 0) {
            let name = at(obj, &["metadata", "name"])
                .and_then(Value::as_str)
                .unwrap_or("");
            let host = format!("{name}-{}", c - 1);
            if !validation::dns1123_label(&host).is_empty() {
                errs.push(invalid_str(
                    "metadata.name",
                    name,
                    &format!("will not able to create pod with invalid DNS label: {host}"),
                ));
            }
        }
    }
    if let Some(old) = old {
        job_update(&mut errs, obj, old);
    }
    errs
}

fn job_update(errs: &mut Vec<FieldError>, obj: &Value, old: &Value) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let old_spec = old.get("spec").unwrap_or(&Value::Null);
    let indexed = s(spec, "completionMode") == Some("Indexed");
    if !sem_eq(spec.get("completions"), old_spec.get("completions")) {
        if !indexed {
            errs.push(invalid(
                "spec.completions",
                gvo(get(spec, "completions")),
                IMMUTABLE,
            ));
        } else if let Some(c) = int(spec, "completions") {
            if Some(c) != int(spec, "parallelism") {
                errs.push(invalid_int(
                    "spec.completions",
                    c,
                    "can only be modified in tandem with spec.parallelism",
                ));
            }
        }
    }
    let new_sel = at(spec, &["selector"]);
    if !sem_eq(new_sel, old_spec.get("selector")) {
        errs.push(invalid("spec.selector", go_selector(new_sel), IMMUTABLE));
    }
    // A suspended Job that never started may change where its pods run.
    let mut old_template = old_spec.get("template").cloned().unwrap_or(Value::Null);
    let new_template = spec.get("template").cloned().unwrap_or(Value::Null);
    let suspended = old_spec.get("suspend").and_then(Value::as_bool) == Some(true);
    let never_started = at(old, &["status", "startTime"]).is_none();
    if suspended && never_started {
        if let (Some(ot), Some(nt)) = (old_template.as_object_mut(), new_template.as_object()) {
            let new_meta = nt.get("metadata").cloned().unwrap_or(Value::Null);
            let meta = ot.entry("metadata").or_insert(json!({}));
            if let Some(m) = meta.as_object_mut() {
                for key in ["labels", "annotations"] {
                    match new_meta.get(key) {
                        Some(v) => m.insert(key.into(), v.clone()),
                        None => m.remove(key),
                    };
                }
            }
            let new_pod = nt.get("spec").cloned().unwrap_or(Value::Null);
            if let Some(ps) = ot.get_mut("spec").and_then(Value::as_object_mut) {
                for key in ["nodeSelector", "tolerations", "schedulingGates"] {
                    match new_pod.get(key) {
                        Some(v) => ps.insert(key.into(), v.clone()),
                        None => ps.remove(key),
                    };
                }
                let new_na = at(&new_pod, &["affinity", "nodeAffinity"]).cloned();
                let aff = ps.entry("affinity").or_insert(json!({}));
                if let Some(a) = aff.as_object_mut() {
                    match new_na {
                        Some(v) => a.insert("nodeAffinity".into(), v),
                        None => a.remove("nodeAffinity"),
                    };
                }
            }
        }
    }
    if !sem_eq(Some(&new_template), Some(&old_template)) {
        errs.push(invalid(
            "spec.template",
            new_template.to_string(),
            IMMUTABLE,
        ));
    }
    for field in [
        "completionMode",
        "podFailurePolicy",
        "backoffLimitPerIndex",
        "managedBy",
        "successPolicy",
    ] {
        if !sem_eq(spec.get(field), old_spec.get(field)) {
            errs.push(invalid(
                format!("spec.{field}"),
                gvo(get(spec, field)),
                IMMUTABLE,
            ));
        }
    }
}

// ---- CronJobs ------------------------------------------------------------------------------

pub(crate) fn prepare_cron_job(obj: &mut Value, old: Option<&Value>) {
    if let Some(spec) = child_if(obj, "spec") {
        default_str(spec, "concurrencyPolicy", "Allow");
        default(spec, "suspend", json!(false));
        default(spec, "successfulJobsHistoryLimit", json!(3));
        default(spec, "failedJobsHistoryLimit", json!(1));
        if let Some(jt) = child_if(spec, "jobTemplate") {
            template_metadata(jt);
            if let Some(t) = child_if(jt, "spec").and_then(|s| child_if(s, "template")) {
                pod::default_template(t);
            }
        }
    }
    if old.is_none() {
        reset_status(obj, json!({}));
    }
}

pub(crate) fn validate_cron_job(obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let old_spec = old.and_then(|o| o.get("spec"));
    if old.is_none() {
        let name = at(obj, &["metadata", "name"])
            .and_then(Value::as_str)
            .unwrap_or("");
        if name.len() > 52 {
            errs.push(invalid_str(
                "metadata.name",
                name,
                "must be no more than 52 characters",
            ));
        }
    }
    let schedule = sz(spec, "schedule");
    if schedule.is_empty() {
        errs.push(required("spec.schedule", ""));
    } else {
        if let Err(e) = parse_schedule(schedule) {
            errs.push(invalid_str("spec.schedule", schedule, &e));
        }
        let allow_tz = old_spec.is_some_and(|o| sz(o, "schedule").contains("TZ"));
        if allow_tz && schedule.contains("TZ") && get(spec, "timeZone").is_some() {
            errs.push(invalid_str(
                "spec.schedule",
                schedule,
                "cannot use both timeZone field and TZ or CRON_TZ in schedule",
            ));
        } else if !allow_tz && schedule.contains("TZ") {
            errs.push(invalid_str(
                "spec.schedule",
                schedule,
                "cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
            ));
        }
    }
    non_negative(
        &mut errs,
        spec,
        "startingDeadlineSeconds",
        "spec.startingDeadlineSeconds",
    );
    if old_spec.is_none_or(|o| !sem_eq(o.get("timeZone"), spec.get("timeZone"))) {
        if let Some(tz) = spec.get("timeZone").filter(|v| !v.is_null()) {
            if let Some(msg) = time_zone_error(tz.as_str().unwrap_or("")) {
                errs.push(invalid("spec.timeZone", gv(tz), &msg));
            }
        }
    }
    match sz(spec, "concurrencyPolicy") {
        "Allow" | "Forbid" | "Replace" => {}
        "" => errs.push(required("spec.concurrencyPolicy", "")),
        other => errs.push(not_supported(
            "spec.concurrencyPolicy",
            q(other),
            &["Allow", "Forbid", "Replace"],
        )),
    }
    let jt_spec = at(spec, &["jobTemplate", "spec"]).unwrap_or(&Value::Null);
    job_spec(&mut errs, jt_spec, "spec.jobTemplate.spec");
    if let Some(sel) = get(jt_spec, "selector") {
        errs.push(invalid(
            "spec.jobTemplate.spec.selector",
            go_selector(Some(sel)),
            "`selector` will be auto-generated",
        ));
    }
    if jt_spec.get("manualSelector").and_then(Value::as_bool) == Some(true) {
        errs.push(not_supported(
            "spec.jobTemplate.spec.manualSelector",
            "true",
            &["nil", "false"],
        ));
    }
    for field in ["successfulJobsHistoryLimit", "failedJobsHistoryLimit"] {
        non_negative(&mut errs, spec, field, &format!("spec.{field}"));
    }
    errs
}

fn time_zone_error(tz: &str) -> Option<String> {
    if tz.is_empty() {
        return Some("timeZone must be nil or non-empty string".into());
    }
    for part in tz.split('/') {
        let ok = !part.is_empty()
            && part.len() <= 14
            && part != "."
            && part != ".."
            && !part.starts_with('-')
            && part
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'_' | b'+'));
        if !ok {
            return Some(format!("unknown time zone {tz}"));
        }
    }
    if tz.eq_ignore_ascii_case("local") {
        return Some(
            "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones"
                .into(),
        );
    }
    let zoneinfo = std::path::Path::new("/usr/share/zoneinfo");
    if tz != "UTC" && zoneinfo.is_dir() && !zoneinfo.join(tz).is_file() {
        return Some(format!("unknown time zone {tz}"));
    }
    None
}

// ---- the schedule parser -------------------------------------------------------------------

struct Bounds {
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MINUTES: Bounds = Bounds {
    min: 0,
    max: 59,
    names: &[],
};
const HOURS: Bounds = Bounds {
    min: 0,
    max: 23,
    names: &[],
};
const DOM: Bounds = Bounds {
    min: 1,
    max: 31,
    names: &[],
};
const MONTHS: Bounds = Bounds {
    min: 1,
    max: 12,
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
};
const DOW: Bounds = Bounds {
    min: 0,
    max: 6,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
};

/// Go's `strconv.Atoi` error text.
fn atoi(s: &str) -> Result<i64, String> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return Err(format!("strconv.Atoi: parsing {}: invalid syntax", q(s)));
    }
    s.parse::<i64>()
        .map_err(|_| format!("strconv.Atoi: parsing {}: value out of range", q(s)))
}

fn parse_uint(expr: &str) -> Result<u32, String> {
    let n = atoi(expr).map_err(|e| format!("failed to parse int from {expr}: {e}"))?;
    if n < 0 {
        return Err(format!("negative number ({n}) not allowed: {expr}"));
    }
    u32::try_from(n).map_err(|_| format!("end of range ({n}) above maximum: {expr}"))
}

fn parse_int_or_name(expr: &str, b: &Bounds) -> Result<u32, String> {
    let lower = expr.to_lowercase();
    if let Some(i) = b.names.iter().position(|n| *n == lower) {
        return Ok(i as u32 + if b.names.len() == 12 { 1 } else { 0 });
    }
    parse_uint(expr)
}

fn parse_range(expr: &str, b: &Bounds) -> Result<(), String> {
    let range_and_step: Vec<&str> = expr.split('/').collect();
    let low_high: Vec<&str> = range_and_step[0].split('-').collect();
    let single = low_high.len() == 1;
    let (start, mut end) = if low_high[0] == "*" || low_high[0] == "?" {
        (b.min, b.max)
    } else {
        let start = parse_int_or_name(low_high[0], b)?;
        let end = match low_high.len() {
            1 => start,
            2 => parse_int_or_name(low_high[1], b)?,
            _ => return Err(format!("too many hyphens: {expr}")),
        };
        (start, end)
    };
    let step = match range_and_step.len() {
        1 => 1,
        2 => {
            let step = parse_uint(range_and_step[1])?;
            if single {
                end = b.max;
            }
            step
        }
        _ => return Err(format!("too many slashes: {expr}")),
    };
    if start < b.min {
        return Err(format!(
            "beginning of range ({start}) below minimum ({}): {expr}",
            b.min
        ));
    }
    if end > b.max {
        return Err(format!(
            "end of range ({end}) above maximum ({}): {expr}",
            b.max
        ));
    }
    if start > end {
        return Err(format!(
            "beginning of range ({start}) beyond end of range ({end}): {expr}"
        ));
    }
    if step == 0 {
        return Err(format!("step of range should be a positive number: {expr}"));
    }
    Ok(())
}

/// Go's `time.ParseDuration`, for `@every`.
fn parse_go_duration(s: &str) -> Result<(), String> {
    let bad = || format!("time: invalid duration {}", q(s));
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    if body == "0" {
        return Ok(());
    }
    if body.is_empty() {
        return Err(bad());
    }
    let mut rest = body;
    while !rest.is_empty() {
        let num_len = rest
            .bytes()
            .take_while(|c| c.is_ascii_digit() || *c == b'.')
            .count();
        let num = &rest[..num_len];
        if num.is_empty() || num == "." || num.matches('.').count() > 1 {
            return Err(bad());
        }
        rest = &rest[num_len..];
        let unit_len = rest
            .char_indices()
            .find(|(_, c)| c.is_ascii_digit() || *c == '.')
            .map_or(rest.len(), |(i, _)| i);
        let unit = &rest[..unit_len];
        if unit.is_empty() {
            return Err(format!("time: missing unit in duration {}", q(s)));
        }
        if !["ns", "us", "µs", "μs", "ms", "s", "m", "h"].contains(&unit) {
            return Err(format!(
                "time: unknown unit {} in duration {}",
                q(unit),
                q(s)
            ));
        }
        rest = &rest[unit_len..];
    }
    Ok(())
}

/// Parses a CronJob schedule as upstream's cron library does (`ParseStandard`); the error
/// is its message.
pub fn parse_schedule(spec: &str) -> Result<(), String> {
    if spec.is_empty() {
        return Err("empty spec string".into());
    }
    let mut spec = spec;
    if spec.starts_with("TZ=") || spec.starts_with("CRON_TZ=") {
        let Some(i) = spec.find(' ') else {
            return Err(format!("invalid location descriptior: {spec}"));
        };
        spec = spec[i..].trim();
    }
    if let Some(descriptor) = spec.strip_prefix('@') {
        return match descriptor {
            "yearly" | "annually" | "monthly" | "weekly" | "daily" | "midnight" | "hourly" => {
                Ok(())
            }
            d => match d.strip_prefix("every ") {
                Some(dur) => parse_go_duration(dur)
                    .map_err(|e| format!("failed to parse duration {spec}: {e}")),
                None => Err(format!("unrecognized descriptor: {spec}")),
            },
        };
    }
    let fields: Vec<&str> = spec.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "expected exactly 5 fields, found {}: [{}]",
            fields.len(),
            fields.join(" ")
        ));
    }
    for (field, bounds) in fields.iter().zip([&MINUTES, &HOURS, &DOM, &MONTHS, &DOW]) {
        for expr in field.split(',').filter(|e| !e.is_empty()) {
            parse_range(expr, bounds)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules() {
        for ok in [
            "*/5 * * * *",
            "0 0 * * 0",
            "@hourly",
            "@every 1h30m",
            "0 9 1-15 jan-jun mon-fri",
            "30 2 * * ?",
        ] {
            assert_eq!(parse_schedule(ok), Ok(()), "{ok}");
        }
        assert_eq!(
            parse_schedule("* * * *"),
            Err("expected exactly 5 fields, found 4: [* * * *]".into())
        );
        assert_eq!(
            parse_schedule("60 * * * *"),
            Err("end of range (60) above maximum (59): 60".into())
        );
        assert_eq!(
            parse_schedule("@often"),
            Err("unrecognized descriptor: @often".into())
        );
        assert_eq!(
            parse_schedule("x * * * *"),
            Err("failed to parse int from x: strconv.Atoi: parsing \"x\": invalid syntax".into())
        );
    }
}
