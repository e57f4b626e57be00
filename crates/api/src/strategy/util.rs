//! Helpers every strategy shares: JSON access that never panics, upstream's field-error
//! constructors, Go-style printing of bad values, label selectors, semantic equality and a
//! small diff for "may not change" messages.

use base64::{DecodeError, Engine as _};
use serde_json::{Map, Value};

use crate::validation::{self, FieldError, Quantity};

pub(crate) type Obj = Map<String, Value>;

// ---- reading -------------------------------------------------------------------------------

pub(crate) fn get<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.get(key).filter(|x| !x.is_null())
}

pub(crate) fn s<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// A string field as Go sees it: missing and null are "".
pub(crate) fn sz<'a>(v: &'a Value, key: &str) -> &'a str {
    s(v, key).unwrap_or("")
}

pub(crate) fn int(v: &Value, key: &str) -> Option<i64> {
    v.get(key).and_then(Value::as_i64)
}

pub(crate) fn boolean(v: &Value, key: &str) -> bool {
    v.get(key).and_then(Value::as_bool).unwrap_or(false)
}

pub(crate) fn arr<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

pub(crate) fn omap<'a>(v: &'a Value, key: &str) -> Option<&'a Obj> {
    v.get(key).and_then(Value::as_object)
}

pub(crate) fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    let mut cur = v;
    for p in path {
        cur = cur.get(*p)?;
    }
    if cur.is_null() {
        None
    } else {
        Some(cur)
    }
}

/// Sorted keys of an object field (Go iterates maps in random order; sorting keeps the
/// errors stable).
pub(crate) fn sorted_entries(m: Option<&Obj>) -> Vec<(&String, &Value)> {
    let mut v: Vec<_> = m.map(|m| m.iter().collect()).unwrap_or_default();
    v.sort_by(|a, b| a.0.cmp(b.0));
    v
}

// ---- writing -------------------------------------------------------------------------------

/// `parent[key]` as an object, created when missing or null; `None` when it holds something
/// else (the validation reports that).
pub(crate) fn child<'a>(parent: &'a mut Value, key: &str) -> Option<&'a mut Obj> {
    let m = parent.as_object_mut()?;
    let slot = m.entry(key.to_string()).or_insert(Value::Null);
    if slot.is_null() {
        *slot = Value::Object(Map::new());
    }
    slot.as_object_mut()
}

/// The object at `parent[key]` if it is one (nothing is created).
pub(crate) fn child_if<'a>(parent: &'a mut Value, key: &str) -> Option<&'a mut Value> {
    parent.get_mut(key).filter(|v| v.is_object())
}

/// Every object element of the array at `parent[key]`.
pub(crate) fn each<'a>(parent: &'a mut Value, key: &str) -> impl Iterator<Item = &'a mut Value> {
    parent
        .get_mut(key)
        .and_then(Value::as_array_mut)
        .into_iter()
        .flat_map(|a| a.iter_mut())
        .filter(|v| v.is_object())
}

/// Sets a pointer-like field when it is missing or null.
pub(crate) fn default(v: &mut Value, key: &str, val: Value) {
    if let Some(m) = v.as_object_mut() {
        if m.get(key).is_none_or(Value::is_null) {
            m.insert(key.to_string(), val);
        }
    }
}

/// Sets a plain Go string field when it is missing, null or empty.
pub(crate) fn default_str(v: &mut Value, key: &str, val: &str) {
    if let Some(m) = v.as_object_mut() {
        let unset = match m.get(key) {
            None | Some(Value::Null) => true,
            Some(Value::String(s)) => s.is_empty(),
            _ => false,
        };
        if unset {
            m.insert(key.to_string(), Value::String(val.to_string()));
        }
    }
}

/// Sets a plain Go integer field when it is missing, null or zero.
pub(crate) fn default_int(v: &mut Value, key: &str, val: i64) {
    if let Some(m) = v.as_object_mut() {
        let unset = match m.get(key) {
            None | Some(Value::Null) => true,
            Some(Value::Number(n)) => n.as_f64() == Some(0.0),
            _ => false,
        };
        if unset {
            m.insert(key.to_string(), Value::from(val));
        }
    }
}

/// Rewrites every quantity of a resource list in upstream's canonical form, rounded up to
/// milli-units when `round` (what `SetDefaults_ResourceList` does). Values that are not
/// quantities are left for the validation to report.
pub(crate) fn canonical_resources(v: &mut Value, key: &str, round: bool) {
    let Some(m) = v.get_mut(key).and_then(Value::as_object_mut) else {
        return;
    };
    for q in m.values_mut() {
        if let Some(mut parsed) = Quantity::from_json(q) {
            if round {
                parsed.round_up_to_milli();
            }
            *q = Value::String(parsed.canonical());
        }
    }
}

/// A single quantity field in canonical form.
pub(crate) fn canonical_quantity(v: &mut Value, key: &str) {
    if let Some(q) = v.get_mut(key) {
        if let Some(parsed) = Quantity::from_json(q) {
            *q = Value::String(parsed.canonical());
        }
    }
}

/// Embedded object metadata (pod templates, claim templates) carries `creationTimestamp:
/// null` on the wire because upstream prints a zero time that way.
pub(crate) fn template_metadata(template: &mut Value) {
    if let Some(meta) = child(template, "metadata") {
        meta.entry("creationTimestamp").or_insert(Value::Null);
    }
}

/// Replaces `status` on create (upstream's `PrepareForCreate` clears it).
pub(crate) fn reset_status(obj: &mut Value, status: Value) {
    if let Some(m) = obj.as_object_mut() {
        m.insert("status".into(), status);
    }
}

// ---- errors --------------------------------------------------------------------------------

fn err(field: String, reason: &'static str, message: String) -> FieldError {
    FieldError {
        field,
        reason,
        message,
    }
}

/// `Invalid value: <value>: <detail>`; `value` is already printed (see [`q`], [`gv`]).
pub(crate) fn invalid(
    field: impl Into<String>,
    value: impl AsRef<str>,
    detail: &str,
) -> FieldError {
    let message = if detail.is_empty() {
        format!("Invalid value: {}", value.as_ref())
    } else {
        format!("Invalid value: {}: {detail}", value.as_ref())
    };
    err(field.into(), "FieldValueInvalid", message)
}

pub(crate) fn invalid_str(field: impl Into<String>, value: &str, detail: &str) -> FieldError {
    invalid(field, q(value), detail)
}

pub(crate) fn invalid_int(field: impl Into<String>, value: i64, detail: &str) -> FieldError {
    invalid(field, value.to_string(), detail)
}

pub(crate) fn required(field: impl Into<String>, detail: &str) -> FieldError {
    FieldError::required(field, detail)
}

pub(crate) fn forbidden(field: impl Into<String>, detail: &str) -> FieldError {
    FieldError::forbidden(field, detail)
}

pub(crate) fn duplicate(field: impl Into<String>, value: impl AsRef<str>) -> FieldError {
    err(
        field.into(),
        "FieldValueDuplicate",
        format!("Duplicate value: {}", value.as_ref()),
    )
}

pub(crate) fn not_found(field: impl Into<String>, value: impl AsRef<str>) -> FieldError {
    err(
        field.into(),
        "FieldValueNotFound",
        format!("Not found: {}", value.as_ref()),
    )
}

/// `Unsupported value: <value>: supported values: "a", "b"`.
pub(crate) fn not_supported(
    field: impl Into<String>,
    value: impl AsRef<str>,
    valid: &[&str],
) -> FieldError {
    let mut message = format!("Unsupported value: {}", value.as_ref());
    if !valid.is_empty() {
        let list: Vec<String> = valid.iter().map(|v| q(v)).collect();
        message.push_str(": supported values: ");
        message.push_str(&list.join(", "));
    }
    err(field.into(), "FieldValueNotSupported", message)
}

pub(crate) fn too_long(field: impl Into<String>, max: usize) -> FieldError {
    FieldError::too_long(field, max)
}

pub(crate) fn too_many(field: impl Into<String>, n: usize, max: usize) -> FieldError {
    err(
        field.into(),
        "FieldValueTooMany",
        format!("Too many: {n}: must have at most {max} items"),
    )
}

pub(crate) const IMMUTABLE: &str = "field is immutable";
pub(crate) const NON_NEGATIVE: &str = "must be greater than or equal to 0";

/// `ValidateNonnegativeField`.
pub(crate) fn non_negative(errs: &mut Vec<FieldError>, v: &Value, key: &str, path: &str) {
    if let Some(n) = int(v, key) {
        if n < 0 {
            errs.push(invalid_int(path, n, NON_NEGATIVE));
        }
    }
}

pub(crate) fn inclusive_range(lo: i64, hi: i64) -> String {
    format!("must be between {lo} and {hi}, inclusive")
}

// ---- printing values as Go does ------------------------------------------------------------

/// A string as Go's `%q` prints it.
pub(crate) fn q(s: &str) -> String {
    crate::fields::go_quote(s)
}

/// A JSON value as upstream prints the Go value behind it: strings quoted, numbers and
/// booleans bare, null as `null`, anything else as compact JSON.
pub(crate) fn gv(v: &Value) -> String {
    match v {
        Value::String(s) => q(s),
        Value::Null => "null".into(),
        Value::Number(_) | Value::Bool(_) => v.to_string(),
        _ => v.to_string(),
    }
}

/// An optional JSON value (`null` when missing).
pub(crate) fn gvo(v: Option<&Value>) -> String {
    v.map_or_else(|| "null".to_string(), gv)
}

/// `map[string]string{"a":"b"}` (keys sorted, as Go prints maps).
pub(crate) fn go_map(v: Option<&Value>) -> String {
    match v.and_then(Value::as_object) {
        None => "map[string]string(nil)".into(),
        Some(m) => {
            let parts: Vec<String> = sorted_entries(Some(m))
                .into_iter()
                .map(|(k, v)| format!("{}:{}", q(k), q(v.as_str().unwrap_or(""))))
                .collect();
            format!("map[string]string{{{}}}", parts.join(", "))
        }
    }
}

/// `[]string{"a", "b"}`.
pub(crate) fn go_strings(v: Option<&Value>) -> String {
    match v.and_then(Value::as_array) {
        None => "[]string(nil)".into(),
        Some(a) => {
            let parts: Vec<String> = a.iter().map(|x| q(x.as_str().unwrap_or(""))).collect();
            format!("[]string{{{}}}", parts.join(", "))
        }
    }
}

/// A `metav1.LabelSelector` as upstream's `%#v` prints it.
pub(crate) fn go_selector(sel: Option<&Value>) -> String {
    let Some(sel) = sel.filter(|s| !s.is_null()) else {
        return "null".into();
    };
    let exprs = match sel.get("matchExpressions").and_then(Value::as_array) {
        None => "[]v1.LabelSelectorRequirement(nil)".to_string(),
        Some(a) => {
            let parts: Vec<String> = a
                .iter()
                .map(|e| {
                    format!(
                        "v1.LabelSelectorRequirement{{Key:{}, Operator:{}, Values:{}}}",
                        q(sz(e, "key")),
                        q(sz(e, "operator")),
                        go_strings(e.get("values"))
                    )
                })
                .collect();
            format!("[]v1.LabelSelectorRequirement{{{}}}", parts.join(", "))
        }
    };
    format!(
        "v1.LabelSelector{{MatchLabels:{}, MatchExpressions:{}}}",
        go_map(sel.get("matchLabels")),
        exprs
    )
}

/// An int-or-string as `intstr.IntOrString.String()` prints it.
pub(crate) fn int_or_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

// ---- names ---------------------------------------------------------------------------------

/// `IsValidPortName`.
pub(crate) fn port_name_errors(name: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if name.len() > 15 {
        errs.push("must be no more than 15 characters".to_string());
    }
    if name.is_empty()
        || !name
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
    {
        errs.push("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".into());
    }
    if !name.bytes().any(|c| c.is_ascii_lowercase()) {
        errs.push("must contain at least one letter (a-z)".into());
    }
    if name.contains("--") {
        errs.push("must not contain consecutive hyphens".into());
    }
    if name.starts_with('-') || name.ends_with('-') {
        errs.push("must not begin or end with a hyphen".into());
    }
    errs
}

/// `ValidatePortNumOrName` for an int-or-string port.
pub(crate) fn port_num_or_name(errs: &mut Vec<FieldError>, port: Option<&Value>, path: &str) {
    match port {
        Some(Value::String(name)) => {
            for m in port_name_errors(name) {
                errs.push(invalid_str(path, name, &m));
            }
        }
        Some(Value::Number(n)) => {
            let n = n.as_i64().unwrap_or(0);
            if !(1..=65535).contains(&n) {
                errs.push(invalid_int(path, n, &inclusive_range(1, 65535)));
            }
        }
        // A missing int-or-string is the integer 0.
        _ => errs.push(invalid_int(path, 0, &inclusive_range(1, 65535))),
    }
}

/// `IsConfigMapKey`.
pub(crate) fn config_map_key_errors(key: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if key.len() > 253 {
        errs.push("must be no more than 253 characters".to_string());
    }
    if key.is_empty()
        || !key
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c == b'.')
    {
        errs.push("a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key_name', regex used for validation is '[-._a-zA-Z0-9]+')".into());
    }
    match key {
        "." => errs.push("must not be '.'".into()),
        ".." => errs.push("must not be '..'".into()),
        k if k.starts_with("..") => errs.push("must not start with '..'".into()),
        _ => {}
    }
    errs
}

/// Subdomain-name checks as field errors.
pub(crate) fn subdomain(errs: &mut Vec<FieldError>, value: &str, path: &str) {
    for m in validation::dns1123_subdomain(value) {
        errs.push(invalid_str(path, value, &m));
    }
}

/// Label-name (DNS-1123 label) checks as field errors.
pub(crate) fn dns_label(errs: &mut Vec<FieldError>, value: &str, path: &str) {
    for m in validation::dns1123_label(value) {
        errs.push(invalid_str(path, value, &m));
    }
}

/// `ValidateLabelName`: a qualified name.
pub(crate) fn label_name(errs: &mut Vec<FieldError>, value: &str, path: &str) {
    for m in validation::qualified_name(value) {
        errs.push(invalid_str(path, value, &m));
    }
}

pub(crate) fn qualified_name(errs: &mut Vec<FieldError>, value: &str, path: &str) {
    label_name(errs, value, path)
}

// ---- label selectors -----------------------------------------------------------------------

const OPERATORS: [&str; 4] = ["In", "NotIn", "Exists", "DoesNotExist"];

/// The values a set-based operator (`In`, `NotIn`, `Exists`, `DoesNotExist`) of the
/// requirement at `p` needs; false for any other operator (the caller's to judge).
pub(crate) fn set_operator_values(
    errs: &mut Vec<FieldError>,
    operator: &str,
    values: &[Value],
    p: &str,
) -> bool {
    match operator {
        "In" | "NotIn" if values.is_empty() => errs.push(required(
            format!("{p}.values"),
            "must be specified when `operator` is 'In' or 'NotIn'",
        )),
        "Exists" | "DoesNotExist" if !values.is_empty() => errs.push(forbidden(
            format!("{p}.values"),
            "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
        )),
        "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
        _ => return false,
    }
    true
}

/// `ValidateLabelSelector`.
pub(crate) fn validate_selector(errs: &mut Vec<FieldError>, sel: Option<&Value>, path: &str) {
    let Some(sel) = sel.filter(|s| !s.is_null()) else {
        return;
    };
    if let Some(ml) = sel.get("matchLabels") {
        validation::labels(ml, &format!("{path}.matchLabels"), errs);
    }
    for (i, e) in arr(sel, "matchExpressions").iter().enumerate() {
        let p = format!("{path}.matchExpressions[{i}]");
        let values = arr(e, "values");
        if !set_operator_values(errs, sz(e, "operator"), values, &p) {
            errs.push(invalid_str(
                format!("{p}.operator"),
                sz(e, "operator"),
                "not a valid selector operator",
            ));
        }
        label_name(errs, sz(e, "key"), &format!("{p}.key"));
        for (j, v) in values.iter().enumerate() {
            let v = v.as_str().unwrap_or("");
            for m in validation::label_value(v) {
                errs.push(invalid_str(format!("{p}.values[{j}]"), v, &m));
            }
        }
    }
}

/// How a label selector selects (upstream's `LabelSelectorAsSelector`).
pub(crate) enum Selection {
    /// A missing selector selects nothing.
    Nothing,
    /// An empty selector selects everything.
    Everything,
    Some,
    /// The selector cannot be built (an unknown operator).
    Broken,
}

pub(crate) fn selection(sel: Option<&Value>) -> Selection {
    let Some(sel) = sel.filter(|s| !s.is_null()) else {
        return Selection::Nothing;
    };
    let labels = omap(sel, "matchLabels").map_or(0, Obj::len);
    let exprs = arr(sel, "matchExpressions");
    if exprs
        .iter()
        .any(|e| !OPERATORS.contains(&sz(e, "operator")))
    {
        return Selection::Broken;
    }
    if labels + exprs.len() == 0 {
        Selection::Everything
    } else {
        Selection::Some
    }
}

pub(crate) use crate::selector::label_selector_matches as selector_matches;

// ---- comparing -----------------------------------------------------------------------------

/// Drops what Go cannot tell from absent: nulls, empty strings, empty lists and maps.
pub(crate) fn normalize(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, x) in m {
                let n = normalize(x);
                if !is_empty(&n) {
                    out.insert(k.clone(), n);
                }
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(normalize).collect()),
        other => other.clone(),
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.is_empty(),
        _ => false,
    }
}

/// Upstream's semantic equality: nil and empty collections are equal.
pub(crate) fn sem_eq(a: Option<&Value>, b: Option<&Value>) -> bool {
    let a = a.map(normalize).unwrap_or(Value::Null);
    let b = b.map(normalize).unwrap_or(Value::Null);
    let a = if is_empty(&a) { Value::Null } else { a };
    let b = if is_empty(&b) { Value::Null } else { b };
    a == b
}

/// A short diff of two values, one changed leaf a line (`- path: old` / `+ path: new`), for
/// the "may not change" messages that upstream follows with a diff.
pub(crate) fn diff(old: &Value, new: &Value) -> String {
    let mut lines = Vec::new();
    diff_into(&normalize(old), &normalize(new), "", &mut lines);
    lines.join("\n")
}

fn diff_into(old: &Value, new: &Value, path: &str, out: &mut Vec<String>) {
    if old == new {
        return;
    }
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                diff_into(
                    a.get(k).unwrap_or(&Value::Null),
                    b.get(k).unwrap_or(&Value::Null),
                    &p,
                    out,
                );
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                diff_into(x, y, &format!("{path}[{i}]"), out);
            }
        }
        _ => {
            if !old.is_null() {
                out.push(format!("- {path}: {old}"));
            }
            if !new.is_null() {
                out.push(format!("+ {path}: {new}"));
            }
        }
    }
}

// ---- base64 (Secret data) ------------------------------------------------------------------

/// Go's `base64.StdEncoding`: padded, standard alphabet, trailing bits not checked.
const GO_STD: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::RequireCanonical),
);

pub(crate) fn base64_encode(data: &[u8]) -> String {
    GO_STD.encode(data)
}

/// Decodes standard padded base64 as Go's `encoding/json` does for `[]byte` (line breaks are
/// ignored); the error is Go's message, with the offset in `s`.
pub(crate) fn base64_decode(s: &str) -> Result<Vec<u8>, String> {
    // Offsets in `s` of the bytes left once line breaks are dropped.
    let kept: Vec<usize> = s
        .bytes()
        .enumerate()
        .filter(|(_, c)| *c != b'\n' && *c != b'\r')
        .map(|(i, _)| i)
        .collect();
    let text: Vec<u8> = kept.iter().map(|&i| s.as_bytes()[i]).collect();
    let at = |i: usize| kept.get(i).copied().unwrap_or(s.len());
    GO_STD.decode(&text).map_err(|e| {
        let offset = match e {
            DecodeError::InvalidByte(i, _) | DecodeError::InvalidLastSymbol(i, _) => at(i),
            DecodeError::InvalidLength(_) => kept.last().map_or(0, |p| p + 1),
            DecodeError::InvalidPadding => at(text.iter().position(|c| *c == b'=').unwrap_or(0)),
        };
        format!("illegal base64 data at input byte {offset}")
    })
}
