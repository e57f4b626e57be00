//! Label and field selectors, parsed from the `labelSelector` / `fieldSelector` query
//! parameters and matched against JSON objects, with upstream's syntax:
//! labels `a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x)`, `a`, `!a`, `a>1`, `a<1`;
//! fields `path=value`, `path==value`, `path!=value`.

use serde_json::Value;

use crate::fields::{Field, FieldSet};

#[derive(Clone, Debug, PartialEq)]
enum LabelReq {
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
    Gt(String, i64),
    Lt(String, i64),
}

/// One field requirement: the selected field (its label resolved through the resource's
/// table), the value, and whether it is `!=`.
#[derive(Clone, Debug, PartialEq)]
struct FieldReq {
    field: Field,
    value: String,
    negated: bool,
}

/// Both selectors of a request. The empty selector matches everything.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Selectors {
    labels: Vec<LabelReq>,
    fields: Vec<FieldReq>,
}

/// Splits at commas that are not inside parentheses.
fn split_top(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn check_key(k: &str) -> Result<String, String> {
    let k = k.trim();
    if k.is_empty() {
        return Err("found '', expected: identifier".into());
    }
    let errs = crate::validation::qualified_name(k);
    if let Some(e) = errs.first() {
        return Err(format!("key: Invalid value: \"{k}\": {e}"));
    }
    Ok(k.to_string())
}

fn check_value(v: &str) -> Result<String, String> {
    let v = v.trim();
    if let Some(e) = crate::validation::label_value(v).first() {
        return Err(format!("values[0]: Invalid value: \"{v}\": {e}"));
    }
    Ok(v.to_string())
}

fn parse_set(s: &str) -> Result<Vec<String>, String> {
    let s = s.trim();
    let inner = s
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| format!("found '{s}', expected: '(' values ')'"))?;
    inner.split(',').map(check_value).collect()
}

fn parse_label_req(term: &str) -> Result<LabelReq, String> {
    let t = term.trim();
    if let Some(k) = t.strip_prefix('!') {
        return Ok(LabelReq::NotExists(check_key(k)?));
    }
    for (op, neg) in [(" notin ", true), (" in ", false)] {
        if let Some((k, set)) = t.split_once(op) {
            let (k, vals) = (check_key(k)?, parse_set(set)?);
            return Ok(if neg {
                LabelReq::NotIn(k, vals)
            } else {
                LabelReq::In(k, vals)
            });
        }
    }
    if let Some((k, v)) = t.split_once("!=") {
        return Ok(LabelReq::NotEq(check_key(k)?, check_value(v)?));
    }
    if let Some((k, v)) = t.split_once("==").or_else(|| t.split_once('=')) {
        return Ok(LabelReq::Eq(check_key(k)?, check_value(v)?));
    }
    for (op, gt) in [('>', true), ('<', false)] {
        if let Some((k, v)) = t.split_once(op) {
            let n: i64 = v.trim().parse().map_err(|_| {
                format!("for 'Gt', 'Lt' operators, the value must be an integer: {v}")
            })?;
            let k = check_key(k)?;
            return Ok(if gt {
                LabelReq::Gt(k, n)
            } else {
                LabelReq::Lt(k, n)
            });
        }
    }
    Ok(LabelReq::Exists(check_key(t)?))
}

/// Splits a field selector at commas that are not backslash-escaped (the backslash stays).
fn split_terms(selector: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut escaped) = (0, false);
    for (i, c) in selector.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            ',' => {
                out.push(&selector[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&selector[start..]);
    out
}

/// Splits a term at the first operator (`!=`, `==`, `=`, tried in that order at each position):
/// the field label, whether it negates, and the still-escaped value.
fn split_term(term: &str) -> Option<(&str, bool, &str)> {
    term.char_indices().find_map(|(i, _)| {
        let rest = &term[i..];
        [("!=", true), ("==", false), ("=", false)]
            .into_iter()
            .find(|(op, _)| rest.starts_with(op))
            .map(|(op, neg)| (&term[..i], neg, &rest[op.len()..]))
    })
}

/// Undoes `\\`, `\,` and `\=` in a value; any other escape, or a bare `,` or `=`, is an
/// error worded as upstream's (which prints the rune as its number).
fn unescape_value(v: &str) -> Result<String, String> {
    let mut out = String::with_capacity(v.len());
    let mut escaped = false;
    for c in v.chars() {
        if escaped {
            if !matches!(c, '\\' | ',' | '=') {
                return Err(format!(
                    "invalid field selector: invalid escape sequence: \\{c}"
                ));
            }
            out.push(c);
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            ',' | '=' => {
                return Err(format!(
                    "invalid field selector: unescaped character in value: {}",
                    c as u32
                ))
            }
            c => out.push(c),
        }
    }
    if escaped {
        return Err("invalid field selector: invalid escape sequence: \\".into());
    }
    Ok(out)
}

/// Parses a field selector as upstream's `fields.ParseSelector` and then converts each label
/// through the resource's table: terms sorted, empty ones skipped, no whitespace trimmed; every
/// term must parse before any label is checked.
fn parse_fields(selector: &str, fields: &FieldSet) -> Result<Vec<FieldReq>, String> {
    let mut terms = split_terms(selector);
    terms.sort_unstable();
    let mut parsed = Vec::new();
    for term in terms.into_iter().filter(|t| !t.is_empty()) {
        let (label, negated, value) = split_term(term)
            .ok_or_else(|| format!("invalid selector: '{selector}'; can't understand '{term}'"))?;
        parsed.push((label, negated, unescape_value(value)?));
    }
    parsed
        .into_iter()
        .map(|(label, negated, value)| {
            let field = fields
                .get(label)
                .ok_or_else(|| fields.unsupported_message(label))?;
            Ok(FieldReq {
                field,
                value,
                negated,
            })
        })
        .collect()
}

impl Selectors {
    /// Parses both parameters. `fields` is the resource's table of selectable fields
    /// ([`crate::fields::for_resource`]); a label outside it is an error worded as upstream's
    /// for that resource.
    pub fn parse(
        label_selector: Option<&str>,
        field_selector: Option<&str>,
        fields: &FieldSet,
    ) -> Result<Selectors, String> {
        let mut s = Selectors::default();
        if let Some(ls) = label_selector.map(str::trim).filter(|l| !l.is_empty()) {
            for term in split_top(ls) {
                s.labels.push(
                    parse_label_req(term)
                        .map_err(|e| format!("unable to parse requirement: {e}"))?,
                );
            }
        }
        if let Some(fs) = field_selector {
            s.fields = parse_fields(fs, fields)?;
        }
        Ok(s)
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.fields.is_empty()
    }

    /// The value the field selector requires `field` to equal, if it does (`field=value`):
    /// what an index on that field can answer.
    pub fn field_equals(&self, field: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|r| !r.negated && r.field.name == field)
            .map(|r| r.value.as_str())
    }

    pub fn matches(&self, obj: &Value) -> bool {
        let labels = obj.get("metadata").and_then(|m| m.get("labels"));
        let label = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        let labels_ok = self.labels.iter().all(|r| match r {
            LabelReq::Eq(k, v) => label(k) == Some(v.as_str()),
            LabelReq::NotEq(k, v) => label(k) != Some(v.as_str()),
            LabelReq::In(k, vs) => label(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            LabelReq::NotIn(k, vs) => !label(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            LabelReq::Exists(k) => label(k).is_some(),
            LabelReq::NotExists(k) => label(k).is_none(),
            LabelReq::Gt(k, n) => label(k)
                .and_then(|x| x.parse::<i64>().ok())
                .is_some_and(|x| x > *n),
            LabelReq::Lt(k, n) => label(k)
                .and_then(|x| x.parse::<i64>().ok())
                .is_some_and(|x| x < *n),
        });
        labels_ok
            && self
                .fields
                .iter()
                .all(|r| (r.field.source.value(obj) == r.value) != r.negated)
    }
}

/// Whether `labels` (a label map) satisfy a `metav1.LabelSelector`. A missing selector matches
/// nothing; an empty one (`{}`) everything.
pub fn label_selector_matches(sel: Option<&Value>, labels: Option<&Value>) -> bool {
    let Some(sel) = sel.filter(|s| !s.is_null()) else {
        return false;
    };
    let label = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
    if let Some(m) = sel.get("matchLabels").and_then(Value::as_object) {
        if m.iter().any(|(k, v)| label(k) != v.as_str()) {
            return false;
        }
    }
    let exprs = sel.get("matchExpressions").and_then(Value::as_array);
    exprs.into_iter().flatten().all(|e| {
        let key = e.get("key").and_then(Value::as_str).unwrap_or("");
        let values: Vec<&str> = e
            .get("values")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        match e.get("operator").and_then(Value::as_str).unwrap_or("") {
            "In" => label(key).is_some_and(|v| values.contains(&v)),
            "NotIn" => label(key).is_none_or(|v| !values.contains(&v)),
            "Exists" => label(key).is_some(),
            "DoesNotExist" => label(key).is_none(),
            _ => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fields::{for_resource, DEFAULT, PODS};
    use serde_json::json;

    fn obj() -> Value {
        json!({"metadata": {"name": "a", "namespace": "ns", "labels": {"app": "web", "tier": "1"}},
               "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}})
    }

    #[test]
    fn labels() {
        let m = |s: &str| {
            Selectors::parse(Some(s), None, &DEFAULT)
                .unwrap()
                .matches(&obj())
        };
        assert!(m("app=web"));
        assert!(m("app==web,tier"));
        assert!(!m("app!=web"));
        assert!(m("app in (web, db)"));
        assert!(!m("app notin (web)"));
        assert!(m("!missing"));
        assert!(!m("missing"));
        assert!(m("tier>0"));
        assert!(!m("tier<1"));
        assert!(Selectors::parse(Some("a=b c"), None, &DEFAULT).is_err());
        assert!(Selectors::parse(Some("x in y"), None, &DEFAULT).is_err());
    }

    #[test]
    fn fields() {
        let m = |s: &str| {
            Selectors::parse(None, Some(s), &PODS)
                .unwrap()
                .matches(&obj())
        };
        assert!(m("metadata.name=a"));
        assert!(m("metadata.name==a"));
        assert!(m("spec.nodeName=n1,status.phase!=Pending"));
        assert!(!m("metadata.namespace=other"));
        assert!(m("spec.nodeName!="));
        assert!(m("spec.host=n1"), "the old v1 name of spec.nodeName");
        assert!(m("spec.hostNetwork=false"), "absent bool is false");
        assert!(m("status.podIPs="), "accepted, never set");
        assert!(!m("status.podIPs=10.0.0.1"));
        assert!(m(""), "the empty selector");
        assert!(m("metadata.name=a,,"), "empty terms are skipped");
        let err = |s: &str| Selectors::parse(None, Some(s), &PODS).unwrap_err();
        assert_eq!(err("spec.bogus=1"), "field label not supported: spec.bogus");
        // Whitespace is part of the label, as upstream.
        assert_eq!(
            err("spec.nodeName = n1"),
            "field label not supported: spec.nodeName "
        );
        // Terms are sorted before conversion: the first unsupported label in order is named.
        assert_eq!(err("zeta=1,alpha=2"), "field label not supported: alpha");
        assert_eq!(
            err("metadata.name=a,bogus"),
            "invalid selector: 'metadata.name=a,bogus'; can't understand 'bogus'"
        );
        // Every term parses before any label is converted.
        assert_eq!(
            err("aaa=1,zzz"),
            "invalid selector: 'aaa=1,zzz'; can't understand 'zzz'"
        );
    }

    #[test]
    fn field_values_are_escaped() {
        let obj = json!({"metadata": {"name": "a,b=c\\d", "namespace": "ns"}});
        let m = |s: &str| {
            Selectors::parse(None, Some(s), &DEFAULT)
                .unwrap()
                .matches(&obj)
        };
        assert!(m(r"metadata.name=a\,b\=c\\d"));
        assert!(m(r"metadata.name!=a\,b,metadata.namespace=ns"));
        let err = |s: &str| Selectors::parse(None, Some(s), &DEFAULT).unwrap_err();
        assert_eq!(
            err("metadata.name=a=b"),
            "invalid field selector: unescaped character in value: 61"
        );
        assert_eq!(
            err(r"metadata.name=a\x"),
            r"invalid field selector: invalid escape sequence: \x"
        );
        assert_eq!(
            err(r"metadata.name=a\"),
            r"invalid field selector: invalid escape sequence: \"
        );
        // The first operator wins: `a=b!=c` is `a` = `b!=c`.
        assert_eq!(
            err("metadata.name=b!=c"),
            "invalid field selector: unescaped character in value: 61"
        );
    }

    #[test]
    fn per_resource_errors() {
        let err = |g: &str, r: &str, s: &str| {
            Selectors::parse(None, Some(s), for_resource(g, r)).unwrap_err()
        };
        assert_eq!(
            err("", "configmaps", "data.i=3"),
            r#""data.i" is not a known field selector: only "metadata.name", "metadata.namespace""#
        );
        assert_eq!(
            err("apps", "replicasets", "status.replicas=1"),
            r#""status.replicas" is not a known field selector: only "metadata.name", "metadata.namespace""#
        );
        assert_eq!(
            err("batch", "jobs", "status.active=1"),
            r#"field label "status.active" not supported for Job"#
        );
        assert_eq!(
            err("", "nodes", "metadata.namespace="),
            "field label not supported: metadata.namespace"
        );
        let job = json!({"metadata": {"name": "j"}, "status": {}});
        let sel = Selectors::parse(
            None,
            Some("status.successful=0"),
            for_resource("batch", "jobs"),
        );
        assert!(sel.unwrap().matches(&job));
    }
}
