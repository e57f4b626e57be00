//! Typed objects: what an object of a kind may hold, compiled once from the kind's OpenAPI
//! schema, and the walks the API server makes over every object it is given:
//!
//! - [`check_types`]: every value has its field's JSON type (strings where Go has `string`,
//!   integers that fit where Go has `int32`/`int64`, objects where Go has a struct or a map,
//!   arrays where Go has a slice). The first wrong value is reported as upstream's decoder
//!   (`encoding/json` in sigs.k8s.io/json) reports it:
//!   `json: cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas of type int32`
//!   (the struct that holds the field, the field's path from the root without list indices, the
//!   field's Go type). `null` is accepted anywhere: Go leaves the zero value.
//! - [`prune_unknown_fields`]: removes the fields the schema does not have (`fieldValidation`).
//! - [`decodes_as_type`]: an independent second check, the object deserialises into its
//!   k8s-openapi type, which is what every typed client (kube-rs, client-go) does with what the
//!   server stores. A unit test runs both checks over every kind and checks that they agree.
//!
//! The walks go over a compiled graph of [`Node`]s, so a custom resource's OpenAPI v3 schema
//! can be compiled into the same graph later. Go's named types (`v1.Protocol`,
//! `v1.ResourceList`) are not in the OpenAPI schemas, so a message names the underlying type
//! (`string`, `map[string]resource.Quantity`).

use std::collections::HashMap;
use std::sync::OnceLock;

use serde::Deserialize as _;
use serde_json::{Map, Value};

use crate::openapi;
use crate::validation::QUANTITY_FORMAT_MSG;

/// One compiled schema.
#[derive(Debug)]
enum Node {
    /// Anything (RawExtension, FieldsV1, `x-kubernetes-preserve-unknown-fields`).
    Any,
    Bool,
    Int32,
    Int64,
    Float,
    String,
    /// A base64 string (`[]byte`).
    Bytes,
    /// `metav1.Time` / `MicroTime`: an RFC 3339 string.
    Time,
    /// `resource.Quantity`: a string or a number; the text is checked by the strategies.
    Quantity,
    /// `intstr.IntOrString`: a string or an int32.
    IntOrString,
    Array(usize),
    Map(usize),
    Struct {
        /// Go's name of the struct type (`v1.DeploymentSpec`) and where the name starts.
        go_name: String,
        short_at: usize,
        fields: HashMap<String, usize>,
        /// The `apiVersion` and `kind` of a struct that is a kind (a StatefulSet's
        /// PersistentVolumeClaim templates): typed clients refuse any other.
        type_meta: Option<(String, String)>,
    },
}

/// How a list, map or struct merges in server-side apply and what its managed fields are
/// (structured-merge-diff's element relationship, from upstream's `x-kubernetes-list-type`,
/// `-list-map-keys`, `-map-type` and patch strategy).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Shape {
    /// Maps and structs by default: each field or key on its own.
    #[default]
    Granular,
    /// One value, replaced whole (lists without list type or merge strategy).
    Atomic,
    /// A list of scalars, each element on its own.
    Set,
    /// A list of objects identified by these keys.
    Keyed(Vec<String>),
}

/// Every schema the catalogue's kinds use, compiled.
struct Compiled {
    nodes: Vec<Node>,
    /// Each node's merge shape (parallel to `nodes`).
    shapes: Vec<Shape>,
    /// Each list node's strategic merge patch strategy and merge key, if upstream declares
    /// one (parallel to `nodes`).
    patch_meta: Vec<Option<(&'static str, &'static str)>>,
    /// Schema name → node.
    by_name: HashMap<String, usize>,
    /// (group, version, kind) → node.
    kinds: HashMap<(String, String, String), usize>,
    /// Schema name → its kind's `apiVersion` and `kind`.
    type_meta: HashMap<&'static str, (String, String)>,
}

const SCHEMA_PREFIX: &str = "#/components/schemas/";

/// The schema a `$ref` (or upstream's `allOf: [{$ref}]`) points at.
fn reference(s: &Value) -> Option<&str> {
    s.get("$ref")
        .or_else(|| s.get("allOf")?.get(0)?.get("$ref"))?
        .as_str()?
        .strip_prefix(SCHEMA_PREFIX)
}

impl Compiled {
    fn get() -> &'static Compiled {
        static COMPILED: OnceLock<Compiled> = OnceLock::new();
        COMPILED.get_or_init(Compiled::build)
    }

    fn build() -> Compiled {
        let schemas = openapi::component_schemas();
        let mut c = Compiled {
            nodes: Vec::new(),
            shapes: Vec::new(),
            patch_meta: Vec::new(),
            by_name: HashMap::new(),
            kinds: HashMap::new(),
            type_meta: openapi::kind_schemas()
                .map(|((g, v, k), name)| {
                    (name, (crate::catalogue::api_version(g, v), k.to_string()))
                })
                .collect(),
        };
        for ((group, version, kind), name) in openapi::kind_schemas() {
            let id = c.named(schemas, name);
            c.kinds
                .insert((group.into(), version.into(), kind.into()), id);
        }
        c
    }

    fn push(&mut self, n: Node) -> usize {
        self.nodes.push(n);
        self.shapes.push(Shape::default());
        self.patch_meta.push(None);
        self.nodes.len() - 1
    }

    /// The node of a named schema, compiled once (a placeholder first, so cycles end).
    fn named(&mut self, schemas: &Map<String, Value>, name: &str) -> usize {
        if let Some(&id) = self.by_name.get(name) {
            return id;
        }
        let id = self.push(Node::Any);
        self.by_name.insert(name.to_string(), id);
        let mut parts = name.rsplit('.');
        let short = parts.next().unwrap_or(name);
        let package = parts.next().unwrap_or("v1");
        let node = match (package, short) {
            ("resource", "Quantity") => Node::Quantity,
            ("intstr", "IntOrString") => Node::IntOrString,
            ("v1", "Time" | "MicroTime") => Node::Time,
            _ => match schemas.get(name) {
                Some(s) => {
                    if openapi::is_atomic_struct(name) {
                        self.shapes[id] = Shape::Atomic;
                    }
                    let mut node = self.node(schemas, s, &format!("{package}.{short}"), name);
                    if let Node::Struct { type_meta, .. } = &mut node {
                        *type_meta = self.type_meta.get(name).cloned();
                    }
                    node
                }
                None => Node::Any,
            },
        };
        self.nodes[id] = node;
        id
    }

    /// Compiles an inline schema into a node id; `go_name` names it if it is a struct.
    fn compile(&mut self, schemas: &Map<String, Value>, s: &Value) -> usize {
        match reference(s) {
            Some(target) => self.named(schemas, target),
            None => {
                let n = self.node(schemas, s, "", "");
                self.push(n)
            }
        }
    }

    fn node(
        &mut self,
        schemas: &Map<String, Value>,
        s: &Value,
        go_name: &str,
        full_name: &str,
    ) -> Node {
        if s.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) {
            return Node::Any;
        }
        if s.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
            return Node::IntOrString;
        }
        let format = s.get("format").and_then(Value::as_str);
        match s.get("type").and_then(Value::as_str) {
            Some("boolean") => Node::Bool,
            Some("integer") if format == Some("int32") => Node::Int32,
            Some("integer") => Node::Int64,
            Some("number") => Node::Float,
            Some("string") if format == Some("byte") => Node::Bytes,
            Some("string") if format == Some("date-time") => Node::Time,
            Some("string") => Node::String,
            Some("array") => match s.get("items") {
                Some(items) => Node::Array(self.compile(schemas, items)),
                None => Node::Any,
            },
            _ => {
                if let Some(props) = s.get("properties").and_then(Value::as_object) {
                    let fields = props
                        .iter()
                        .map(|(k, v)| {
                            let id = self.compile(schemas, v);
                            self.set_shape(full_name, k, id);
                            (k.clone(), id)
                        })
                        .collect();
                    Node::Struct {
                        go_name: go_name.to_string(),
                        short_at: go_name.find('.').map_or(0, |i| i + 1),
                        fields,
                        type_meta: None,
                    }
                } else if let Some(extra) = s.get("additionalProperties").filter(|a| a.is_object())
                {
                    Node::Map(self.compile(schemas, extra))
                } else {
                    Node::Any
                }
            }
        }
    }

    /// The shape of property `prop` (node `id`) of schema `schema`, as upstream's schema
    /// converter derives it: the list type and map type markers, else a merge patch strategy
    /// (with a key: keyed; without: a set), else atomic for lists.
    fn set_shape(&mut self, schema: &str, prop: &str, id: usize) {
        let ext = openapi::merge_meta(schema, prop);
        if let (Node::Array(_), Some((_, _, _, strategy, key))) = (&self.nodes[id], ext) {
            if !strategy.is_empty() || !key.is_empty() {
                self.patch_meta[id] = Some((strategy, key));
            }
        }
        let shape = match &self.nodes[id] {
            Node::Array(_) => match ext {
                Some(("atomic", ..)) => Shape::Atomic,
                Some(("set", ..)) => Shape::Set,
                Some(("map", keys, ..)) => {
                    Shape::Keyed(keys.iter().map(|k| k.to_string()).collect())
                }
                Some((_, _, _, strategy, key)) if strategy.contains("merge") && !key.is_empty() => {
                    Shape::Keyed(vec![key.to_string()])
                }
                Some((_, _, _, strategy, _)) if strategy.contains("merge") => Shape::Set,
                _ => Shape::Atomic,
            },
            Node::Map(_) => match ext {
                Some((_, _, "atomic", ..)) => Shape::Atomic,
                _ => Shape::Granular,
            },
            _ => return,
        };
        self.shapes[id] = shape;
    }

    /// Go's spelling of node `id`'s type (`int32`, `[]v1.Container`, `map[string]string`).
    fn go_type(&self, id: usize) -> String {
        match &self.nodes[id] {
            Node::Any => "interface {}".into(),
            Node::Bool => "bool".into(),
            Node::Int32 | Node::IntOrString => "int32".into(),
            Node::Int64 => "int64".into(),
            Node::Float => "float64".into(),
            Node::String | Node::Time => "string".into(),
            Node::Bytes => "[]uint8".into(),
            Node::Quantity => "resource.Quantity".into(),
            Node::Array(i) => format!("[]{}", self.go_type(*i)),
            Node::Map(i) => format!("map[string]{}", self.go_type(*i)),
            Node::Struct { go_name, .. } => go_name.clone(),
        }
    }
}

/// What Go's decoder calls a JSON value it could not store (`string`, `number 1.5`, …).
fn json_kind(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(_) => "bool".into(),
        Value::Number(n) => format!("number {n}"),
        Value::String(_) => "string".into(),
        Value::Array(_) => "array".into(),
        Value::Object(_) => "object".into(),
    }
}

/// Why a value was refused, filled in while the error travels back to the root.
struct Mismatch {
    /// A message of its own (quantities, times), not the decoder's type error.
    plain: Option<String>,
    /// A value of the right type that no typed client takes: reported with its path.
    invalid: Option<String>,
    what: String,
    ty: String,
    /// The struct that holds the field (the innermost one on the way down).
    owner: Option<&'static str>,
    /// The field path, innermost first.
    path: Vec<String>,
}

impl Mismatch {
    fn message(mut self) -> String {
        if let Some(p) = self.plain {
            return p;
        }
        if let Some(why) = self.invalid {
            self.path.reverse();
            return format!("{}: Invalid value: {why}", self.path.join("."));
        }
        match self.owner {
            None => format!(
                "json: cannot unmarshal {} into Go value of type {}",
                self.what, self.ty
            ),
            Some(owner) => {
                self.path.reverse();
                format!(
                    "json: cannot unmarshal {} into Go struct field {owner}.{} of type {}",
                    self.what,
                    self.path.join("."),
                    self.ty
                )
            }
        }
    }
}

impl Compiled {
    fn mismatch(&self, id: usize, v: &Value) -> Box<Mismatch> {
        // Go says `number` for a number where no number goes, and `number 1.5` for one that
        // does not fit the integer field it is in.
        let what = match (v, &self.nodes[id]) {
            (Value::Number(_), Node::Int32 | Node::Int64 | Node::IntOrString) => json_kind(v),
            (Value::Number(_), _) => "number".into(),
            _ => json_kind(v),
        };
        Box::new(Mismatch {
            plain: None,
            invalid: None,
            what,
            ty: self.go_type(id),
            owner: None,
            path: Vec::new(),
        })
    }

    fn plain(message: String) -> Box<Mismatch> {
        Box::new(Mismatch {
            plain: Some(message),
            invalid: None,
            what: String::new(),
            ty: String::new(),
            owner: None,
            path: Vec::new(),
        })
    }

    /// What Go stores for a `null` list item or map value of node `id`'s type, where
    /// k8s-openapi (and so every typed client) would refuse the `null`.
    fn zero(&self, id: usize) -> Option<Value> {
        Some(match &self.nodes[id] {
            Node::Bool => Value::Bool(false),
            Node::Int32 | Node::Int64 | Node::IntOrString => Value::from(0),
            Node::Float => Value::from(0.0),
            Node::String | Node::Bytes => Value::String(String::new()),
            Node::Quantity => Value::String("0".into()),
            Node::Struct { .. } | Node::Map(_) => Value::Object(Map::new()),
            Node::Array(_) => Value::Array(Vec::new()),
            Node::Any | Node::Time => return None,
        })
    }

    fn check(&'static self, id: usize, v: &mut Value) -> Result<(), Box<Mismatch>> {
        if v.is_null() {
            return Ok(());
        }
        let fits = |v: &Value, range: std::ops::RangeInclusive<i64>| match v {
            Value::Number(n) => n.as_i64().is_some_and(|i| range.contains(&i)),
            _ => false,
        };
        let int32 = i32::MIN as i64..=i32::MAX as i64;
        let ok = match &self.nodes[id] {
            Node::Any => true,
            Node::Bool => v.is_boolean(),
            Node::Int32 => fits(v, int32),
            Node::Int64 => fits(v, i64::MIN..=i64::MAX),
            Node::Float => v.is_number(),
            Node::String => v.is_string(),
            Node::Bytes => match v.as_str() {
                Some(s) => {
                    // Go decodes the base64 into bytes and writes them back in the canonical
                    // encoding (no line breaks, zero trailing bits), which typed clients read.
                    let bytes = crate::strategy::base64_decode(s).map_err(Self::plain)?;
                    let canonical = crate::strategy::base64_encode(&bytes);
                    if canonical != s {
                        *v = Value::String(canonical);
                    }
                    true
                }
                None => false,
            },
            Node::Time => match v.as_str() {
                Some(s) => {
                    if k8s_openapi::apimachinery::pkg::apis::meta::v1::Time::deserialize(&*v)
                        .is_err()
                    {
                        return Err(Self::plain(format!(
                            "parsing time {s:?} as \"2006-01-02T15:04:05Z07:00\": cannot parse {s:?} as an RFC 3339 time"
                        )));
                    }
                    true
                }
                None => false,
            },
            Node::Quantity => {
                if !(v.is_string() || v.is_number()) {
                    return Err(Self::plain(QUANTITY_FORMAT_MSG.to_string()));
                }
                true
            }
            Node::IntOrString => v.is_string() || fits(v, int32),
            Node::Array(item) => match v {
                Value::Array(items) => {
                    for x in items {
                        self.check_item(*item, x)?;
                    }
                    true
                }
                _ => false,
            },
            Node::Map(item) => match v {
                Value::Object(m) => {
                    for x in m.values_mut() {
                        self.check_item(*item, x)?;
                    }
                    true
                }
                _ => false,
            },
            Node::Struct {
                go_name,
                short_at,
                fields,
                type_meta,
            } => match v {
                Value::Object(m) => {
                    if let Some((api_version, kind)) = type_meta {
                        check_type_meta(m, "apiVersion", api_version)?;
                        check_type_meta(m, "kind", kind)?;
                    }
                    for (k, x) in m.iter_mut() {
                        if let Some(&f) = fields.get(k) {
                            if let Err(mut e) = self.check(f, x) {
                                e.path.push(k.clone());
                                e.owner.get_or_insert(&go_name[*short_at..]);
                                return Err(e);
                            }
                        }
                    }
                    true
                }
                _ => false,
            },
        };
        if ok {
            Ok(())
        } else {
            Err(self.mismatch(id, v))
        }
    }

    fn check_item(&'static self, id: usize, v: &mut Value) -> Result<(), Box<Mismatch>> {
        if v.is_null() {
            if let Some(z) = self.zero(id) {
                *v = z;
            }
            return Ok(());
        }
        self.check(id, v)
    }
}

/// An embedded object's `apiVersion` or `kind`: absent, empty (dropped, as Go's `omitempty`
/// writes it) or the one its type has.
fn check_type_meta(
    m: &mut Map<String, Value>,
    field: &str,
    expected: &str,
) -> Result<(), Box<Mismatch>> {
    match m.get(field) {
        None => Ok(()),
        Some(Value::Null) => {
            m.remove(field);
            Ok(())
        }
        Some(Value::String(s)) if s.is_empty() => {
            m.remove(field);
            Ok(())
        }
        Some(Value::String(s)) if s == expected => Ok(()),
        Some(other) => Err(Box::new(Mismatch {
            plain: None,
            invalid: Some(format!("{other}: must be {expected:?}")),
            what: String::new(),
            ty: String::new(),
            owner: None,
            path: vec![field.to_string()],
        })),
    }
}

/// A type of the compiled graph, for the walks of server-side apply ([`crate::managed`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Type(usize);

/// What a [`Type`] is, as far as merging goes.
pub enum TypeKind {
    /// A scalar, or anything whose structure the schema does not give.
    Scalar,
    /// Free-form (`x-kubernetes-preserve-unknown-fields`, RawExtension): structure deduced from
    /// the value (objects granular, lists atomic).
    Any,
    List(Type, &'static Shape),
    Map(Type, &'static Shape),
    Struct(&'static Shape),
}

impl Type {
    /// The type of objects of `group/version` `kind`, if the kind has a schema.
    pub fn of_kind(group: &str, version: &str, kind: &str) -> Option<Type> {
        Compiled::get()
            .kinds
            .get(&(group.to_string(), version.to_string(), kind.to_string()))
            .map(|&id| Type(id))
    }

    pub fn kind(self) -> TypeKind {
        let c = Compiled::get();
        let shape = &c.shapes[self.0];
        match &c.nodes[self.0] {
            Node::Any => TypeKind::Any,
            Node::Array(i) => TypeKind::List(Type(*i), shape),
            Node::Map(i) => TypeKind::Map(Type(*i), shape),
            Node::Struct { .. } => TypeKind::Struct(shape),
            _ => TypeKind::Scalar,
        }
    }

    /// The type of entry `name` of an object: a struct's field, a map's values.
    pub fn entry(self, name: &str) -> Option<Type> {
        match &Compiled::get().nodes[self.0] {
            Node::Map(i) => Some(Type(*i)),
            _ => self.field(name),
        }
    }

    /// The type of a list's items.
    pub fn item(self) -> Option<Type> {
        match &Compiled::get().nodes[self.0] {
            Node::Array(i) => Some(Type(*i)),
            _ => None,
        }
    }

    /// A list's `x-kubernetes-patch-strategy` and `x-kubernetes-patch-merge-key`, if any.
    pub fn patch_meta(self) -> Option<(&'static str, &'static str)> {
        Compiled::get().patch_meta[self.0]
    }

    /// The type of field `name` of a struct (`None` for other types and unknown fields).
    pub fn field(self, name: &str) -> Option<Type> {
        match &Compiled::get().nodes[self.0] {
            Node::Struct { fields, .. } => fields.get(name).map(|&id| Type(id)),
            _ => None,
        }
    }
}

/// Checks the JSON types of an object of `group/version` `kind` against its schema, and gives
/// `null` list items and map values the zero value Go would store; the error is upstream's
/// decoder message. Kinds without a schema pass.
pub fn check_types(group: &str, version: &str, kind: &str, obj: &mut Value) -> Result<(), String> {
    let c = Compiled::get();
    match c
        .kinds
        .get(&(group.to_string(), version.to_string(), kind.to_string()))
    {
        Some(&id) => c.check(id, obj).map_err(|m| m.message()),
        None => Ok(()),
    }
}

fn prune(c: &Compiled, id: usize, obj: &mut Value, path: &str, out: &mut Vec<String>) {
    match (&c.nodes[id], obj) {
        (Node::Struct { fields, .. }, Value::Object(map)) => {
            map.retain(|k, v| {
                // `$patch`, `$retainKeys`, …: strategic merge patch directives.
                if k.starts_with('$') {
                    return true;
                }
                let child = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match fields.get(k) {
                    Some(&f) => {
                        prune(c, f, v, &child, out);
                        true
                    }
                    None => {
                        out.push(child);
                        false
                    }
                }
            });
        }
        (Node::Map(item), Value::Object(map)) => {
            for (k, v) in map.iter_mut() {
                if !k.starts_with('$') {
                    prune(c, *item, v, &format!("{path}.{k}"), out);
                }
            }
        }
        (Node::Array(item), Value::Array(items)) => {
            for (i, v) in items.iter_mut().enumerate() {
                prune(c, *item, v, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// Removes the fields `obj` (an object of `group/version` `kind`, or a patch of one) has that
/// its schema does not, and returns their paths (`spec.template.spec.containers[0].foo`), as
/// upstream's strict decoding reports them. Unknown kinds are left alone.
pub fn prune_unknown_fields(
    group: &str,
    version: &str,
    kind: &str,
    obj: &mut Value,
) -> Vec<String> {
    let c = Compiled::get();
    let mut out = Vec::new();
    if let Some(&id) = c
        .kinds
        .get(&(group.to_string(), version.to_string(), kind.to_string()))
    {
        prune(c, id, obj, "", &mut out);
    }
    out
}

/// Whether `obj` deserialises into the k8s-openapi type of `group/version` `kind`: `None` when
/// no type is known, otherwise serde's error with the path it stopped at.
pub fn decodes_as_type(
    group: &str,
    version: &str,
    kind: &str,
    obj: &Value,
) -> Option<Result<(), String>> {
    let decode = openapi::type_decoder(group, version, kind)?;
    Some(decode(obj))
}

/// Random values of the kinds' schemas, for this crate's fuzz tests and the API server's (not
/// part of the API). Deterministic for a seed: struct fields are visited in name order.
#[doc(hidden)]
pub mod sample {
    use super::{Compiled, Node};
    use serde_json::{json, Map, Value};

    /// A small deterministic PRNG (xorshift64*), so failures reproduce.
    #[derive(Clone, Debug)]
    pub struct Rng(pub u64);

    impl Rng {
        pub fn next_u64(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        /// A number in `0..n` (`n` > 0).
        pub fn below(&mut self, n: u64) -> u64 {
            self.next_u64() % n
        }

        /// One of `items` (not empty).
        pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
            &items[self.below(items.len() as u64) as usize]
        }
    }

    /// Any JSON value, of any type.
    pub fn wild(rng: &mut Rng) -> Value {
        match rng.below(9) {
            0 => Value::Null,
            1 => json!(rng.below(2) == 0),
            2 => json!(rng.below(100)),
            3 => json!(-(rng.below(1 << 40) as i64)),
            4 => json!(1.5),
            5 => json!(u64::MAX - rng.below(10)),
            6 => json!("x"),
            7 => json!([1, "a"]),
            _ => json!({"k": "v"}),
        }
    }

    /// Makes values of a schema node: of the right type except where a mutation (one in
    /// `rate`) puts a [`wild`] value instead; strings from `strings`, so that list keys
    /// sometimes meet; arrays and maps of fewer than `max_len` entries.
    pub struct Sampler<'r> {
        pub rng: &'r mut Rng,
        pub rate: u64,
        pub strings: &'r [&'r str],
        pub max_len: u64,
    }

    impl Sampler<'_> {
        /// An object of the kind, `apiVersion` and `kind` set, or `None` for a kind without a
        /// schema.
        pub fn object(&mut self, group: &str, version: &str, kind: &str) -> Option<Value> {
            let c = Compiled::get();
            let id = *c
                .kinds
                .get(&(group.to_string(), version.to_string(), kind.to_string()))?;
            let mut obj = self.value(c, id, 0);
            if let Some(m) = obj.as_object_mut() {
                m.insert(
                    "apiVersion".into(),
                    json!(crate::catalogue::api_version(group, version)),
                );
                m.insert("kind".into(), json!(kind));
            }
            Some(obj)
        }

        pub(super) fn value(&mut self, c: &Compiled, id: usize, depth: usize) -> Value {
            if self.rng.below(self.rate) == 0 {
                return wild(self.rng);
            }
            let deeper = |s: &mut Self, item: usize| {
                if depth > 6 {
                    Value::Null
                } else {
                    s.value(c, item, depth + 1)
                }
            };
            let rng = &mut *self.rng;
            match &c.nodes[id] {
                Node::Any => json!({"free": [1, "form"]}),
                Node::Bool => json!(true),
                Node::Int32 => json!(rng.below(1 << 31) as i64 - (1 << 30)),
                Node::Int64 => json!(rng.next_u64() as i64),
                Node::Float => json!(0.25),
                Node::String => json!(rng.pick(self.strings)),
                Node::Bytes => json!("aGk="),
                Node::Time => json!("2024-05-06T07:08:09Z"),
                Node::Quantity => rng.pick(&[json!("100m"), json!(2), json!(0.5)]).clone(),
                Node::IntOrString => rng.pick(&[json!("http"), json!(8080)]).clone(),
                Node::Array(item) => {
                    let n = rng.below(self.max_len);
                    Value::Array((0..n).map(|_| deeper(self, *item)).collect())
                }
                Node::Map(item) => {
                    let n = rng.below(self.max_len);
                    Value::Object(
                        (0..n)
                            .map(|i| (format!("k{i}"), deeper(self, *item)))
                            .collect(),
                    )
                }
                Node::Struct { fields, .. } => {
                    let mut names: Vec<(&String, &usize)> = fields.iter().collect();
                    names.sort();
                    let mut m = Map::new();
                    for (k, f) in names {
                        if self.rng.below(3) != 0 {
                            m.insert(k.clone(), deeper(self, *f));
                        }
                    }
                    Value::Object(m)
                }
            }
        }
    }

    /// Every (group, version, kind) with a schema, in order.
    pub fn kinds() -> Vec<(String, String, String)> {
        let mut k: Vec<_> = Compiled::get().kinds.keys().cloned().collect();
        k.sort();
        k
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn err(group: &str, version: &str, kind: &str, mut obj: Value) -> String {
        check_types(group, version, kind, &mut obj).expect_err("a type error")
    }

    #[test]
    fn messages_as_upstreams_decoder() {
        assert_eq!(
            err("apps", "v1", "Deployment", json!({"spec": {"replicas": "three"}})),
            "json: cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas of type int32"
        );
        assert_eq!(
            err("apps", "v1", "Deployment", json!({"spec": {"replicas": 1.5}})),
            "json: cannot unmarshal number 1.5 into Go struct field DeploymentSpec.spec.replicas of type int32"
        );
        assert_eq!(
            err("apps", "v1", "Deployment", json!({"spec": {"replicas": 1u64 << 40}})),
            "json: cannot unmarshal number 1099511627776 into Go struct field DeploymentSpec.spec.replicas of type int32"
        );
        assert_eq!(
            err("", "v1", "ConfigMap", json!({"data": {"a": 5}})),
            "json: cannot unmarshal number into Go struct field ConfigMap.data of type string"
        );
        assert_eq!(
            err("", "v1", "ConfigMap", json!({"data": [1]})),
            "json: cannot unmarshal array into Go struct field ConfigMap.data of type map[string]string"
        );
        assert_eq!(
            err("", "v1", "ConfigMap", json!({"metadata": {"labels": [1]}})),
            "json: cannot unmarshal array into Go struct field ObjectMeta.metadata.labels of type map[string]string"
        );
        assert_eq!(
            err("", "v1", "ConfigMap", json!({"metadata": {"ownerReferences": [5]}})),
            "json: cannot unmarshal number into Go struct field ObjectMeta.metadata.ownerReferences of type v1.OwnerReference"
        );
        assert_eq!(
            err("", "v1", "Pod", json!({"spec": {"containers": [{"name": "a", "command": "ls"}]}})),
            "json: cannot unmarshal string into Go struct field Container.spec.containers.command of type []string"
        );
        assert_eq!(
            err("", "v1", "Pod", json!({"status": "x"})),
            "json: cannot unmarshal string into Go struct field Pod.status of type v1.PodStatus"
        );
        assert_eq!(
            err("", "v1", "Service", json!({"spec": {"ports": [{"port": 80, "targetPort": [1]}]}})),
            "json: cannot unmarshal array into Go struct field ServicePort.spec.ports.targetPort of type int32"
        );
        assert_eq!(
            err(
                "",
                "v1",
                "Pod",
                json!({"spec": {"containers": [{"resources": {"limits": {"cpu": true}}}]}})
            ),
            QUANTITY_FORMAT_MSG
        );
        assert_eq!(
            err("", "v1", "ConfigMap", json!([])),
            "json: cannot unmarshal array into Go value of type v1.ConfigMap"
        );
    }

    #[test]
    fn accepts_what_go_accepts() {
        for (g, v, k, obj) in [
            (
                "apps",
                "v1",
                "Deployment",
                json!({"spec": {"replicas": null, "template": null}}),
            ),
            (
                "",
                "v1",
                "Service",
                json!({"spec": {"ports": [{"port": 80, "targetPort": "http"}]}}),
            ),
            (
                "",
                "v1",
                "Pod",
                json!({"spec": {"containers": [{"resources": {"limits": {"cpu": 1, "memory": "1Gi"}}}]}}),
            ),
            ("", "v1", "Secret", json!({"data": {"a": "YQ=="}})),
            (
                "",
                "v1",
                "ConfigMap",
                json!({"metadata": {"creationTimestamp": "2024-01-02T03:04:05Z", "unknown": [1]}}),
            ),
            ("", "v1", "NoSuchKind", json!({"spec": 1})),
        ] {
            let mut checked = obj.clone();
            assert_eq!(check_types(g, v, k, &mut checked), Ok(()), "{k} {obj}");
        }
    }

    #[test]
    fn unknown_fields_are_pruned_with_their_paths() {
        let mut obj = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "x", "labels": {"any": "thing"}, "bogus": 1},
            "spec": {"replicaz": 2, "template": {"spec": {"containers": [
                {"name": "a", "image": "i", "foo": true, "resources": {"limits": {"cpu": "1"}}}
            ], "$setElementOrder/containers": [{"name": "a"}]}}}
        });
        let unknown = prune_unknown_fields("apps", "v1", "Deployment", &mut obj);
        assert_eq!(
            unknown,
            [
                "metadata.bogus",
                "spec.replicaz",
                "spec.template.spec.containers[0].foo"
            ]
        );
        assert_eq!(obj["metadata"]["labels"]["any"], "thing");
        assert_eq!(
            obj["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"],
            "1"
        );
        assert!(obj["spec"].get("replicaz").is_none());
        assert!(prune_unknown_fields("apps", "v1", "NoSuchKind", &mut json!({"a": 1})).is_empty());
    }

    use sample::{Rng, Sampler};

    fn sample(c: &Compiled, id: usize, rng: &mut Rng, depth: usize, rate: u64) -> Value {
        Sampler {
            rng,
            rate,
            strings: &["s"],
            max_len: 3,
        }
        .value(c, id, depth)
    }

    /// The schema check and the k8s-openapi types agree on every kind: what the schema check
    /// accepts decodes as the type (so the server never stores what a typed client cannot
    /// read), and what it refuses does not (so nothing is refused that a typed client reads).
    /// A bounded fuzz: random objects of every kind, mostly well typed, some values mutated.
    #[test]
    fn schema_check_and_typed_decoding_agree_on_every_kind() {
        let c = Compiled::get();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut disagreements = Vec::new();
        let mut refused = 0;
        for ((g, v, k), &id) in &c.kinds {
            assert!(
                decodes_as_type(g, v, k, &json!({})).is_some(),
                "{g}/{v} {k} has a schema but no typed decoder"
            );
            for round in 0..300 {
                let rate = [1_000_000, 40, 8][round % 3];
                let mut obj = sample(c, id, &mut rng, 0, rate);
                let Some(m) = obj.as_object_mut() else {
                    continue; // the registry refuses a body that is not an object first
                };
                // The registry sets both from the path before it checks.
                let api_version = crate::catalogue::api_version(g, v);
                m.insert("apiVersion".into(), json!(api_version));
                m.insert("kind".into(), json!(k));
                let schema = check_types(g, v, k, &mut obj);
                let typed = decodes_as_type(g, v, k, &obj).unwrap_or(Ok(()));
                if schema.is_err() {
                    refused += 1;
                }
                // k8s-openapi requires the few fields whose type has no default (times in
                // conditions, `lastObservedTime`), absent or null, where Go's decoder leaves a
                // zero value that
                // upstream's validation refuses: the registry's typed check after validation
                // refuses them with serde's "missing field" message.
                let required = typed.as_ref().is_err_and(|e| {
                    e.starts_with("missing field")
                        || e.starts_with("invalid type: null, expected a timestamp")
                });
                if schema.is_ok() != typed.is_ok() && !required {
                    disagreements.push(format!("{g}/{v} {k}: schema {schema:?}, type {typed:?}"));
                }
            }
        }
        assert!(refused > 100, "the mutations should produce type errors");
        assert!(
            disagreements.is_empty(),
            "{} disagreements:\n{}",
            disagreements.len(),
            disagreements
                .iter()
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .take(40)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
        );
    }

    /// Every stored kind of the catalogue has a schema and a typed decoder.
    #[test]
    fn every_catalogue_kind_is_typed() {
        for row in crate::catalogue::RESOURCES {
            let Some(storage) = row.storage else { continue };
            assert!(
                decodes_as_type(storage.group, storage.version, storage.kind, &json!({})).is_some(),
                "{} has no typed decoder",
                storage.kind
            );
            assert!(
                Compiled::get().kinds.contains_key(&(
                    row.group.into(),
                    row.version.into(),
                    row.kind.into()
                )),
                "{}/{} {} has no schema",
                row.group,
                row.version,
                row.kind
            );
        }
    }
}
