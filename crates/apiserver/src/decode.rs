//! Request bodies (JSON and YAML) → `serde_json::Value`, with what decoding may cost bounded
//! before it is paid.
//!
//! A 3 MiB body is small, but what it decodes to need not be: YAML aliases repeat a node as
//! often as they are written (5,000 aliases of one 100 KB string are 500 MB), deep flow
//! collections cost the parser per level, and tiny JSON values (`{}`, `1`) turn into large
//! in-memory trees that every later stage walks once per element. So every body is decoded
//! through [`Bounded`], a `DeserializeSeed` that builds the `Value` while it charges each node
//! and each string byte against a [`Budget`] and stops at the first that does not fit.
//! serde_json keeps its own depth limit (128); YAML gets [`MAX_DEPTH`] and alias limits from
//! the parser (serde-saphyr, chosen because it enforces such budgets while it parses, in time
//! linear in the input; serde_yaml is unmaintained and expands aliases without a byte bound).
//!
//! Duplicate keys are accepted, the last one winning, as Go's decoders accept them; what
//! upstream's strict decoding reports about them is kept beside the value ([`Duplicates`]):
//! the path of each duplicate JSON field (sigs.k8s.io/json: `duplicate field "spec.paused"`),
//! or goyaml's line for each duplicate YAML key (`line 7: key "a" already set in map`).

use serde::de::{DeserializeSeed, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use crate::error::ApiError;
use crate::handlers::MAX_BODY;

/// Most values (objects, arrays, strings, numbers, …) one decoded body may hold. A 3 MiB JSON
/// body holds at most ~1.5M (`[1,1,…]`); real objects hold a few thousand.
pub const MAX_NODES: usize = 1_000_000;

/// Most JSON objects one object to be written may hold (checked after decoding and after a
/// patch, before defaults). An object is where defaults land (a pod's `{}` container gains four
/// fields) and a map with fields takes ~0.7 KB, where a scalar takes 32 bytes: 300k empty
/// containers cost ~250 MB once defaulted, a million would cost 900 MB. A third of
/// [`MAX_NODES`], far beyond any object that can be stored (1.5 MiB).
pub const MAX_OBJECTS: usize = MAX_NODES / 3;

/// 413 when `v` holds more than [`MAX_OBJECTS`] objects (counted without allocating, stopping
/// at the first one too many).
pub fn check_objects(v: &Value) -> Result<(), ApiError> {
    fn count(v: &Value, left: &mut usize) -> bool {
        match v {
            Value::Object(m) => match left.checked_sub(1) {
                Some(l) => {
                    *left = l;
                    m.values().all(|x| count(x, left))
                }
                None => false,
            },
            Value::Array(a) => a.iter().all(|x| count(x, left)),
            _ => true,
        }
    }
    let mut left = MAX_OBJECTS;
    if count(v, &mut left) {
        Ok(())
    } else {
        Err(ApiError::too_large(format!(
            "{TOO_LARGE} {MAX_OBJECTS} objects"
        )))
    }
}

/// Most string bytes (values and keys) one decoded body may hold: twice the body limit, so
/// that YAML aliases can repeat small things but not turn kilobytes into gigabytes.
pub const MAX_STRING_BYTES: usize = 2 * MAX_BODY;

/// Deepest YAML nesting accepted: below serde_json's 128, so every accepted body can be
/// stored and read back as JSON.
pub const MAX_DEPTH: usize = 100;

/// What a decoded body may still hold, and where the decoder is in it.
#[derive(Debug, Clone)]
pub struct Budget {
    pub nodes: usize,
    pub bytes: usize,
    /// The keys and indexes from the root to the value being decoded.
    path: Vec<Step>,
    /// Paths of the duplicate keys met so far (at most [`MAX_DUPLICATES`]).
    duplicates: Vec<String>,
}

#[derive(Debug, Clone)]
enum Step {
    Key(String),
    Index(usize),
}

/// Most duplicate keys reported for one body (upstream keeps 100 strict errors).
pub const MAX_DUPLICATES: usize = 100;

impl Default for Budget {
    fn default() -> Self {
        Budget {
            nodes: MAX_NODES,
            bytes: MAX_STRING_BYTES,
            path: Vec::new(),
            duplicates: Vec::new(),
        }
    }
}

/// What strict decoding finds about duplicate keys in a body.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Duplicates {
    /// Paths of duplicate fields in a JSON body (`spec.template.spec.containers[0].image`).
    pub fields: Vec<String>,
    /// goyaml's message for each duplicate key of a YAML body, in the order it reports them.
    pub yaml_lines: Vec<String>,
}

impl Duplicates {
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty() && self.yaml_lines.is_empty()
    }
}

/// The message of a refusal for size, which callers turn into 413.
pub const TOO_LARGE: &str = "the request body decodes to more than";

impl Budget {
    /// Records that `key` of the object at the current path is given again.
    fn duplicate(&mut self, key: &str) {
        if self.duplicates.len() >= MAX_DUPLICATES {
            return;
        }
        let mut p = String::new();
        for step in &self.path {
            match step {
                Step::Key(k) => {
                    if !p.is_empty() {
                        p.push('.');
                    }
                    p.push_str(k);
                }
                Step::Index(i) => p.push_str(&format!("[{i}]")),
            }
        }
        if !p.is_empty() {
            p.push('.');
        }
        p.push_str(key);
        if !self.duplicates.contains(&p) {
            self.duplicates.push(p);
        }
    }

    fn node<E: serde::de::Error>(&mut self) -> Result<(), E> {
        match self.nodes.checked_sub(1) {
            Some(n) => {
                self.nodes = n;
                Ok(())
            }
            None => Err(E::custom(format!("{TOO_LARGE} {MAX_NODES} values"))),
        }
    }

    fn bytes<E: serde::de::Error>(&mut self, n: usize) -> Result<(), E> {
        match self.bytes.checked_sub(n) {
            Some(left) => {
                self.bytes = left;
                Ok(())
            }
            None => Err(E::custom(format!(
                "{TOO_LARGE} {MAX_STRING_BYTES} bytes of strings"
            ))),
        }
    }
}

/// Deserializes one `Value`, charging it to the budget.
pub struct Bounded<'a>(pub &'a mut Budget);

impl<'de> DeserializeSeed<'de> for Bounded<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Bounded<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Value, E> {
        self.0.node()?;
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Value, E> {
        self.0.node()?;
        Ok(Value::from(v))
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Value, E> {
        self.0.node()?;
        Ok(Value::from(v))
    }

    fn visit_i128<E: serde::de::Error>(self, v: i128) -> Result<Value, E> {
        self.0.node()?;
        i64::try_from(v)
            .map(Value::from)
            .or_else(|_| u64::try_from(v).map(Value::from))
            .map_err(|_| E::custom(format!("number {v} out of range")))
    }

    fn visit_u128<E: serde::de::Error>(self, v: u128) -> Result<Value, E> {
        self.0.node()?;
        u64::try_from(v)
            .map(Value::from)
            .map_err(|_| E::custom(format!("number {v} out of range")))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
        self.0.node()?;
        // JSON has no NaN or infinities; YAML's .nan/.inf are refused like Go's encoder does.
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom(format!("{v} is not a JSON number")))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Value, E> {
        self.0.node()?;
        self.0.bytes(v.len())?;
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Value, E> {
        self.0.node()?;
        self.0.bytes(v.len())?;
        Ok(Value::String(v))
    }

    fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Value, E> {
        match std::str::from_utf8(v) {
            Ok(s) => self.visit_str(s),
            Err(_) => Err(E::custom("binary data where text was expected")),
        }
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Value, E> {
        self.0.node()?;
        Ok(Value::Null)
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Value, E> {
        self.0.node()?;
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        self.0.node()?;
        let mut items = Vec::new();
        loop {
            self.0.path.push(Step::Index(items.len()));
            let next = seq.next_element_seed(Bounded(&mut *self.0));
            self.0.path.pop();
            match next? {
                Some(v) => items.push(v),
                None => break,
            }
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        self.0.node()?;
        let mut out = Map::new();
        while let Some(key) = map.next_key_seed(Bounded(&mut *self.0))? {
            let key = match key {
                Value::String(s) => s,
                // YAML keys may be numbers or booleans; JSON's are their text, as
                // sigs.k8s.io/yaml converts them.
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                Value::Null => "null".to_string(),
                _ => return Err(A::Error::custom("a map key must be a scalar")),
            };
            self.0.path.push(Step::Key(key));
            let value = map.next_value_seed(Bounded(&mut *self.0));
            let key = match self.0.path.pop() {
                Some(Step::Key(k)) => k,
                _ => return Err(A::Error::custom("decoder path out of step")),
            };
            let value = value?;
            // As Go's decoders: the last one wins.
            if out.contains_key(&key) {
                self.0.duplicate(&key);
            }
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

/// Decodes a JSON body within the default budget.
pub fn json(body: &[u8]) -> Result<Value, serde_json::Error> {
    json_strict(body).map(|(v, _)| v)
}

/// Decodes a JSON body within the default budget, with the duplicate fields it has.
pub fn json_strict(body: &[u8]) -> Result<(Value, Duplicates), serde_json::Error> {
    let mut budget = Budget::default();
    let mut de = serde_json::Deserializer::from_slice(body);
    let v = Bounded(&mut budget).deserialize(&mut de)?;
    de.end()?;
    let dups = Duplicates {
        fields: budget.duplicates,
        ..Duplicates::default()
    };
    Ok((v, dups))
}

/// Decodes a YAML body (one document) within the default budget and the parser's limits.
pub fn yaml(body: &[u8]) -> Result<Value, serde_saphyr::Error> {
    yaml_strict(body).map(|(v, _)| v)
}

/// Decodes a YAML body as [`yaml`] does, with goyaml's messages for its duplicate keys.
pub fn yaml_strict(body: &[u8]) -> Result<(Value, Duplicates), serde_saphyr::Error> {
    let options = serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_depth: MAX_DEPTH,
            flow_nesting_limit: MAX_DEPTH,
            max_nodes: MAX_NODES,
            max_events: 4 * MAX_NODES,
            max_documents: 1,
            max_aliases: 10_000,
            max_anchors: 10_000,
        },
        alias_limits: serde_saphyr::alias_limits! {
            max_total_replayed_events: MAX_NODES,
        },
        // What serde_yaml did: YAML 1.2 booleans only, `0755` and `1_000` stay strings.
        strict_booleans: true,
        leading_zero_numbers_as_strings: true,
        underscored_numbers_as_strings: true,
        // The visitor sees every entry and keeps the last, as goyaml does outside strict mode.
        duplicate_keys: serde_saphyr::options::DuplicateKeyPolicy::PassThrough,
    };
    let mut budget = Budget::default();
    let v = serde_saphyr::with_deserializer_from_slice_with_options(body, options, |de| {
        Bounded(&mut budget).deserialize(de)
    })?;
    let mut dups = Duplicates::default();
    if !budget.duplicates.is_empty() {
        // Only a body that has them pays for their lines: the parse is linear in a body that
        // just parsed within the limits.
        dups.yaml_lines = yaml_duplicate_lines(body);
    }
    Ok((v, dups))
}

/// One open collection while [`yaml_duplicate_lines`] walks the events.
enum Open {
    Seq,
    Map {
        seen: std::collections::HashSet<String>,
        /// Whether the next node is a key (else a value).
        at_key: bool,
        /// The duplicate key whose value is being read, and that value's first line.
        pending: Option<(String, usize)>,
    },
}

/// goyaml's strict-mode message for each duplicate mapping key (`line N: key "a" already set
/// in map`, N the line where the key's value starts), in the order goyaml reports them: a
/// key's message follows those found inside its value.
fn yaml_duplicate_lines(body: &[u8]) -> Vec<String> {
    use serde_saphyr::granit_parser::{Event, Parser};
    let Ok(text) = std::str::from_utf8(body) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut stack: Vec<Open> = Vec::new();
    // A node is starting at `line`: a key of the innermost map is checked, a value noted.
    fn start(stack: &mut [Open], line: usize, key: Option<String>) {
        if let Some(Open::Map {
            seen,
            at_key,
            pending,
        }) = stack.last_mut()
        {
            if *at_key {
                if let Some(k) = key {
                    if !seen.insert(k.clone()) {
                        *pending = Some((k, 0));
                    }
                }
            } else if let Some((_, l)) = pending {
                *l = line;
            }
        }
    }
    // A node has ended: a map moves between key and value, and reports a duplicate whose
    // value this was.
    fn done(stack: &mut [Open], out: &mut Vec<String>) {
        if let Some(Open::Map {
            at_key, pending, ..
        }) = stack.last_mut()
        {
            if !*at_key {
                if let Some((k, line)) = pending.take() {
                    if out.len() < MAX_DUPLICATES {
                        out.push(format!("line {line}: key {k} already set in map"));
                    }
                }
            }
            *at_key = !*at_key;
        }
    }
    for ev in Parser::new_from_str(text) {
        let Ok((ev, span)) = ev else { break };
        let line = span.start.line();
        match ev {
            Event::Scalar(v, style, _, _) => {
                start(&mut stack, line, Some(go_key(&v, style)));
                done(&mut stack, &mut out);
            }
            Event::Alias(_) => {
                start(&mut stack, line, None);
                done(&mut stack, &mut out);
            }
            Event::SequenceStart(..) => {
                start(&mut stack, line, None);
                stack.push(Open::Seq);
            }
            Event::MappingStart(..) => {
                start(&mut stack, line, None);
                stack.push(Open::Map {
                    seen: Default::default(),
                    at_key: true,
                    pending: None,
                });
            }
            Event::SequenceEnd | Event::MappingEnd => {
                stack.pop();
                done(&mut stack, &mut out);
            }
            _ => {}
        }
    }
    out
}

/// A YAML key as goyaml's message prints it (Go's `%#v` of the decoded key): strings quoted,
/// plain scalars that resolve to a bool, number or null as Go prints those.
fn go_key(v: &str, style: serde_saphyr::granit_parser::ScalarStyle) -> String {
    use serde_saphyr::granit_parser::ScalarStyle;
    if style == ScalarStyle::Plain {
        match v {
            "y" | "Y" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" | "true" | "True" | "TRUE" => {
                return "true".into()
            }
            "n" | "N" | "no" | "No" | "NO" | "off" | "Off" | "OFF" | "false" | "False"
            | "FALSE" => return "false".into(),
            "" | "~" | "null" | "Null" | "NULL" => return "<nil>".into(),
            _ => {}
        }
        if let Ok(i) = v.parse::<i64>() {
            return i.to_string();
        }
    }
    let mut q = String::from("\"");
    for c in v.chars() {
        match c {
            '"' => q.push_str("\\\""),
            '\\' => q.push_str("\\\\"),
            '\n' => q.push_str("\\n"),
            '\t' => q.push_str("\\t"),
            '\r' => q.push_str("\\r"),
            c if (c as u32) < 0x80 && c.is_control() => q.push_str(&format!("\\x{:02x}", c as u32)),
            c if c.is_control() => q.push_str(&format!("\\u{:04x}", c as u32)),
            c => q.push(c),
        }
    }
    q.push('"');
    q
}

/// The error for a body that `what` (JSON, YAML) could not decode: 413 when it is too large
/// once decoded, 400 otherwise.
pub fn refusal(what: &str, e: impl std::fmt::Display) -> ApiError {
    let text = e.to_string();
    if text.contains(TOO_LARGE) {
        ApiError::too_large(format!("error decoding the request body as {what}: {text}"))
    } else {
        ApiError::bad_request(format!("error decoding the request body as {what}: {text}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_and_yaml_decode_as_before() {
        assert_eq!(
            json(br#"{"a":[1,"x",null,true,1.5]}"#).unwrap(),
            json!({"a": [1, "x", null, true, 1.5]})
        );
        let y = yaml(
            b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata:\n  a: yes\n  b: 0755\n  c: \"1\"\n  d: 1_000\nn: 3\nt: true\nf: 2.5\nz: ~\n",
        )
        .unwrap();
        assert_eq!(
            y,
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"},
                   "data": {"a": "yes", "b": "0755", "c": "1", "d": "1_000"},
                   "n": 3, "t": true, "f": 2.5, "z": null})
        );
        let anchors = yaml(b"a: &x {k: v}\nb: *x\n").unwrap();
        assert_eq!(anchors, json!({"a": {"k": "v"}, "b": {"k": "v"}}));
    }

    #[test]
    fn yaml_alias_bombs_are_refused() {
        let big = "x".repeat(100_000);
        let mut body = format!("a: &s {big}\nb: [");
        for _ in 0..5_000 {
            body.push_str("*s, ");
        }
        body.push_str("*s]\n");
        let e = yaml(body.as_bytes()).unwrap_err().to_string();
        assert!(e.contains(TOO_LARGE), "{e}");
        // The classic billion laughs.
        let mut lol = String::from("a: &a [\"lol\"]\n");
        let mut prev = 'a';
        for c in 'b'..='j' {
            lol.push_str(&format!("{c}: &{c} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]\n"));
            prev = c;
        }
        assert!(yaml(lol.as_bytes()).is_err());
    }

    #[test]
    fn objects_are_bounded() {
        let many = |n: usize| json!({"spec": {"containers": vec![json!({}); n]}});
        assert!(check_objects(&many(MAX_OBJECTS - 2)).is_ok());
        let e = check_objects(&many(MAX_OBJECTS - 1)).unwrap_err();
        assert_eq!(e.code, 413);
        assert!(e.message.contains(TOO_LARGE), "{}", e.message);
        // Scalars and arrays are the node budget's, not this one's.
        assert!(check_objects(&json!({"x": vec![json!([1, "a"]); MAX_OBJECTS]})).is_ok());
    }

    #[test]
    fn deep_yaml_is_refused() {
        let n = 30_000;
        let body = format!("{}1{}", "{a: ".repeat(n), "}".repeat(n));
        assert!(yaml(body.as_bytes()).is_err());
        let body = format!("{}1{}", "[".repeat(n), "]".repeat(n));
        assert!(yaml(body.as_bytes()).is_err());
        let ok = format!("{}1{}", "{a: ".repeat(50), "}".repeat(50));
        assert!(yaml(ok.as_bytes()).is_ok());
    }

    #[test]
    fn duplicate_json_fields_are_named_by_path_and_the_last_wins() {
        let body = br#"{"metadata":{"name":"a","labels":{"x":"1","x":"2"}},
            "spec":{"paused":true,"paused":false,"template":{"spec":{"containers":[
              {"name":"c","image":"i","image":"j"}]}}},"spec2":1,"spec2":2,"spec2":3}"#;
        let (v, dups) = json_strict(body).unwrap();
        assert_eq!(v["metadata"]["labels"]["x"], "2");
        assert_eq!(v["spec"]["paused"], false);
        assert_eq!(v["spec"]["template"]["spec"]["containers"][0]["image"], "j");
        assert_eq!(v["spec2"], 3);
        assert_eq!(
            dups.fields,
            [
                "metadata.labels.x",
                "spec.paused",
                "spec.template.spec.containers[0].image",
                "spec2"
            ]
        );
        assert!(dups.yaml_lines.is_empty());
        let (_, none) = json_strict(br#"{"a":{"b":1},"c":[{"b":1},{"b":2}]}"#).unwrap();
        assert!(none.is_empty());
    }

    #[test]
    fn duplicate_yaml_keys_are_reported_as_goyaml_does() {
        let body = b"apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d\nspec:\n  paused: true\n  paused: false\n  template:\n    spec:\n      containers:\n      - name: c\n        image: i\n        image: j\n  template:\n    metadata: {}\n'1': a\n1: b\ntrue: x\n\"true\": y\n";
        let (v, dups) = yaml_strict(body).unwrap();
        assert_eq!(v["spec"]["paused"], false);
        assert_eq!(v["spec"]["template"], json!({"metadata": {}}));
        assert_eq!(v["1"], "b");
        assert_eq!(
            dups.yaml_lines,
            [
                "line 7: key \"paused\" already set in map",
                "line 13: key \"image\" already set in map",
                "line 15: key \"template\" already set in map",
            ]
        );
        assert!(dups.fields.is_empty());
        // JSON is YAML: an apply body in JSON gets lines too.
        let (_, dups) =
            yaml_strict(b"{\"a\": 1,\n \"b\": {\"c\": 1, \"c\": 2}, \"a\": 3}").unwrap();
        assert_eq!(
            dups.yaml_lines,
            [
                "line 2: key \"c\" already set in map",
                "line 2: key \"a\" already set in map",
            ]
        );
        let (_, none) = yaml_strict(b"a: &x {k: v}\nb: *x\nc: [1, 1]\n").unwrap();
        assert!(none.is_empty());
    }

    #[test]
    fn too_many_nodes_are_refused() {
        let mut body = String::from("[");
        for _ in 0..MAX_NODES {
            body.push_str("{},");
        }
        body.push_str("{}]");
        let e = json(body.as_bytes()).unwrap_err().to_string();
        assert!(e.contains(TOO_LARGE), "{e}");
    }
}
