//! Label and field selectors, parsed from the `labelSelector` / `fieldSelector` query
//! parameters and matched against JSON objects, with upstream's syntax:
//! labels `a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x)`, `a`, `!a`, `a>1`, `a<1`;
//! fields `path=value`, `path==value`, `path!=value`.

use serde_json::Value;

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

#[derive(Clone, Debug, PartialEq)]
enum FieldReq {
    Eq(String, String),
    NotEq(String, String),
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

/// Walks a dotted field path (`spec.nodeName`, `metadata.name`) to a string form of the value.
fn field_value(obj: &Value, path: &str) -> String {
    let mut cur = obj;
    for part in path.split('.') {
        match cur.get(part) {
            Some(v) => cur = v,
            None => return String::new(),
        }
    }
    match cur {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

impl Selectors {
    /// Parses both parameters. `allowed_fields` are the field paths the kind supports besides
    /// `metadata.name` and `metadata.namespace`; anything else is an error, as upstream's
    /// `field label not supported`.
    pub fn parse(
        label_selector: Option<&str>,
        field_selector: Option<&str>,
        allowed_fields: &[&str],
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
        if let Some(fs) = field_selector.map(str::trim).filter(|f| !f.is_empty()) {
            for term in fs.split(',') {
                let term = term.trim();
                let (path, value, neg) = if let Some((p, v)) = term.split_once("!=") {
                    (p, v, true)
                } else if let Some((p, v)) = term.split_once("==").or_else(|| term.split_once('='))
                {
                    (p, v, false)
                } else {
                    return Err(format!(
                        "invalid selector: '{term}'; can't understand '{term}'"
                    ));
                };
                let path = path.trim();
                if !(path == "metadata.name"
                    || path == "metadata.namespace"
                    || allowed_fields.contains(&path))
                {
                    return Err(format!("field label not supported: {path}"));
                }
                let (p, v) = (path.to_string(), value.trim().to_string());
                s.fields.push(if neg {
                    FieldReq::NotEq(p, v)
                } else {
                    FieldReq::Eq(p, v)
                });
            }
        }
        Ok(s)
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.fields.is_empty()
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
            && self.fields.iter().all(|r| match r {
                FieldReq::Eq(p, v) => field_value(obj, p) == *v,
                FieldReq::NotEq(p, v) => field_value(obj, p) != *v,
            })
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
    use serde_json::json;

    fn obj() -> Value {
        json!({"metadata": {"name": "a", "namespace": "ns", "labels": {"app": "web", "tier": "1"}},
               "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}})
    }

    #[test]
    fn labels() {
        let m = |s: &str| {
            Selectors::parse(Some(s), None, &[])
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
        assert!(Selectors::parse(Some("a=b c"), None, &[]).is_err());
        assert!(Selectors::parse(Some("x in y"), None, &[]).is_err());
    }

    #[test]
    fn fields() {
        let allowed = ["spec.nodeName", "status.phase"];
        let m = |s: &str| {
            Selectors::parse(None, Some(s), &allowed)
                .unwrap()
                .matches(&obj())
        };
        assert!(m("metadata.name=a"));
        assert!(m("spec.nodeName=n1,status.phase!=Pending"));
        assert!(!m("metadata.namespace=other"));
        assert!(m("spec.nodeName!="));
        let err = Selectors::parse(None, Some("spec.bogus=1"), &allowed).unwrap_err();
        assert_eq!(err, "field label not supported: spec.bogus");
    }
}
