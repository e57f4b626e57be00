//! Managed fields and server-side apply: which manager owns which fields of an object, how an
//! applied configuration merges into the live object, and when it conflicts.
//!
//! The behaviour is upstream's (k8s.io/apimachinery `util/managedfields` over
//! sigs.k8s.io/structured-merge-diff), written from its documented semantics:
//! - A field set is a trie of path elements spelled as in `fieldsV1`: `f:<field>`,
//!   `k:{"key":value,…}` (an item of a keyed list, keys sorted), `v:<json>` (an item of a set
//!   list), `i:<index>`. A node is a *member* when the set holds the path itself (`.` in
//!   `fieldsV1` when it also has children, `{}` when it is a leaf).
//! - The fields of an applied configuration ([`field_set`]): every scalar, every atomic value,
//!   every map entry and list item, every struct field that is `null` or `{}`.
//! - An update (operation `Update`) makes its manager own what it added or changed, and takes
//!   those fields from every other manager; removed fields leave every manager.
//! - An apply (operation `Apply`) merges the configuration into the live object by the schema
//!   (keyed lists by their keys, sets by value, atomic values whole), makes the applier own
//!   exactly the configuration's fields, removes the fields it applied last time and no longer
//!   applies if no other manager owns them, and conflicts (409) where it changes a field another
//!   manager owns, unless forced (then the field changes owner).
//! - Entries are kept per manager, operation, API version (for updates) and subresource, sorted
//!   by operation, time, manager; times are in seconds.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::{Map, Value};

use crate::schema::{Shape, Type, TypeKind};

/// The annotation client-side `kubectl apply` keeps its last configuration in.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// A set of field paths.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Set {
    member: bool,
    children: BTreeMap<String, Set>,
}

impl Set {
    pub fn is_empty(&self) -> bool {
        !self.member && self.children.values().all(Set::is_empty)
    }

    fn tidy(&mut self) {
        self.children.retain(|_, c| {
            c.tidy();
            !c.is_empty()
        });
    }

    /// Adds a path.
    pub fn insert(&mut self, path: &[String]) {
        let mut node = self;
        for pe in path {
            node = node.children.entry(pe.clone()).or_default();
        }
        node.member = true;
    }

    /// Whether the set holds `path` as a member.
    pub fn has(&self, path: &[String]) -> bool {
        let mut node = self;
        for pe in path {
            match node.children.get(pe) {
                Some(c) => node = c,
                None => return false,
            }
        }
        node.member
    }

    pub fn union(&mut self, other: &Set) {
        self.member |= other.member;
        for (k, c) in &other.children {
            self.children.entry(k.clone()).or_default().union(c);
        }
    }

    /// Removes the members of `other` (their children stay unless `other` has them too).
    pub fn difference(&mut self, other: &Set) {
        if other.member {
            self.member = false;
        }
        for (k, c) in &other.children {
            if let Some(mine) = self.children.get_mut(k) {
                mine.difference(c);
            }
        }
        self.tidy();
    }

    pub fn intersection(&self, other: &Set) -> Set {
        let mut out = Set {
            member: self.member && other.member,
            children: BTreeMap::new(),
        };
        for (k, c) in &self.children {
            if let Some(o) = other.children.get(k) {
                let i = c.intersection(o);
                if !i.is_empty() {
                    out.children.insert(k.clone(), i);
                }
            }
        }
        out
    }

    /// Removes `path` and everything below it.
    pub fn remove_subtree(&mut self, path: &[String]) {
        match path {
            [] => *self = Set::default(),
            [first, rest @ ..] => {
                if let Some(c) = self.children.get_mut(first) {
                    if rest.is_empty() {
                        self.children.remove(first);
                    } else {
                        c.remove_subtree(rest);
                    }
                }
                self.tidy();
            }
        }
    }

    /// Every member path, in order.
    pub fn paths(&self) -> Vec<Vec<String>> {
        fn walk(s: &Set, path: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
            if s.member {
                out.push(path.clone());
            }
            for (k, c) in &s.children {
                path.push(k.clone());
                walk(c, path, out);
                path.pop();
            }
        }
        let mut out = Vec::new();
        walk(self, &mut Vec::new(), &mut out);
        out
    }

    /// The `fieldsV1` JSON of the set.
    pub fn to_fields_v1(&self) -> Value {
        fn node(s: &Set, top: bool) -> Value {
            let mut m = Map::new();
            if s.member && !top && !s.children.is_empty() {
                m.insert(".".into(), Value::Object(Map::new()));
            }
            for (k, c) in &s.children {
                if !c.is_empty() {
                    m.insert(k.clone(), node(c, false));
                }
            }
            Value::Object(m)
        }
        node(self, true)
    }

    /// Parses `fieldsV1`; path elements are checked and written canonically.
    pub fn from_fields_v1(v: &Value) -> Result<Set, String> {
        fn node(v: &Value, depth: usize) -> Result<Set, String> {
            if depth > 100 {
                return Err("fieldsV1 is nested too deeply".into());
            }
            let Value::Object(m) = v else {
                return Err(format!("expected an object in fieldsV1, got {v}"));
            };
            let mut s = Set::default();
            for (k, c) in m {
                if k == "." {
                    s.member = true;
                    continue;
                }
                let pe = canonical_element(k)?;
                let mut child = node(c, depth + 1)?;
                if c.as_object().is_some_and(|o| o.is_empty()) {
                    child.member = true;
                }
                s.children.entry(pe).or_default().union(&child);
            }
            Ok(s)
        }
        let mut s = node(v, 0)?;
        s.member = false;
        Ok(s)
    }
}

/// A path element of `fieldsV1` in its canonical spelling.
fn canonical_element(k: &str) -> Result<String, String> {
    let bad = || format!("invalid path element {k:?} in fieldsV1");
    if let Some(name) = k.strip_prefix("f:") {
        return Ok(format!("f:{name}"));
    }
    if let Some(json) = k.strip_prefix("k:") {
        let v: Value = serde_json::from_str(json).map_err(|_| bad())?;
        if !v.is_object() {
            return Err(bad());
        }
        return Ok(format!("k:{v}"));
    }
    if let Some(json) = k.strip_prefix("v:") {
        let v: Value = serde_json::from_str(json).map_err(|_| bad())?;
        return Ok(format!("v:{v}"));
    }
    if let Some(i) = k.strip_prefix("i:") {
        let i: u64 = i.parse().map_err(|_| bad())?;
        return Ok(format!("i:{i}"));
    }
    Err(bad())
}

/// A path as upstream prints it in conflicts: `.spec.containers[name="a"].image`.
pub fn path_string(path: &[String]) -> String {
    let mut out = String::new();
    for pe in path {
        if let Some(f) = pe.strip_prefix("f:") {
            out.push('.');
            out.push_str(f);
        } else if let Some(k) = pe.strip_prefix("k:") {
            let fields: Vec<String> = match serde_json::from_str::<Map<String, Value>>(k) {
                Ok(m) => m.iter().map(|(n, v)| format!("{n}={v}")).collect(),
                Err(_) => vec![k.to_string()],
            };
            out.push_str(&format!("[{}]", fields.join(",")));
        } else if let Some(v) = pe.strip_prefix("v:") {
            out.push_str(&format!("[={v}]"));
        } else if let Some(i) = pe.strip_prefix("i:") {
            out.push_str(&format!("[{i}]"));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Walking values by their type

/// How a value is walked, from its type and its JSON shape.
enum View {
    /// One value: scalars, atomic values, values whose JSON does not fit their type.
    Leaf,
    /// An object walked field by field: a struct (`fields` true, fields typed by name) or a map
    /// (entries of type `elem`; `None`: deduced).
    Object { ty: Option<Type>, is_struct: bool },
    /// A list of scalars, each its own member.
    SetList(Option<Type>),
    /// A list of objects identified by keys.
    Keyed(Option<Type>, &'static [String]),
}

fn view(ty: Option<Type>, v: &Value) -> View {
    let deduced = |v: &Value| match v {
        Value::Object(_) => View::Object {
            ty: None,
            is_struct: false,
        },
        _ => View::Leaf,
    };
    let Some(t) = ty else { return deduced(v) };
    match (t.kind(), v) {
        (TypeKind::Any, _) => deduced(v),
        (TypeKind::Struct(Shape::Granular), Value::Object(_)) => View::Object {
            ty: Some(t),
            is_struct: true,
        },
        (TypeKind::Map(item, Shape::Granular), Value::Object(_)) => View::Object {
            ty: Some(item),
            is_struct: false,
        },
        (TypeKind::List(item, Shape::Set), Value::Array(_)) => View::SetList(Some(item)),
        (TypeKind::List(item, Shape::Keyed(keys)), Value::Array(_)) => {
            View::Keyed(Some(item), keys.as_slice())
        }
        _ => View::Leaf,
    }
}

/// The type of entry `k` of an object viewed as `View::Object`.
fn entry_type(ty: Option<Type>, is_struct: bool, k: &str) -> Option<Type> {
    match (ty, is_struct) {
        (Some(t), true) => t.field(k),
        (t, false) => t,
        (None, true) => None,
    }
}

/// The key defaults upstream's schemas declare for list map keys (`protocol` of ports).
fn key_default(key: &str) -> Option<Value> {
    (key == "protocol").then(|| Value::String("TCP".into()))
}

/// The path element of a list item: `k:{…}` for keyed lists, `v:…` for sets.
fn item_element(keys: Option<&[String]>, item: &Value) -> Option<String> {
    match keys {
        None => match item {
            Value::Object(_) | Value::Array(_) => None,
            v => Some(format!("v:{v}")),
        },
        Some(keys) => {
            let obj = item.as_object()?;
            let mut k = Map::new();
            for name in keys {
                match obj.get(name).filter(|v| !v.is_null()) {
                    Some(v) => {
                        k.insert(name.clone(), v.clone());
                    }
                    None => {
                        if let Some(d) = key_default(name) {
                            k.insert(name.clone(), d);
                        }
                    }
                }
            }
            if k.is_empty() {
                return None;
            }
            Some(format!("k:{}", Value::Object(k)))
        }
    }
}

fn list_keys(v: &View) -> Option<Option<&'static [String]>> {
    match v {
        View::SetList(_) => Some(None),
        View::Keyed(_, keys) => Some(Some(keys)),
        _ => None,
    }
}

/// The fields of `v` (an applied configuration) as a set.
pub fn field_set(ty: Option<Type>, v: &Value) -> Set {
    let mut s = Set::default();
    fields_into(ty, v, &mut s);
    s.member = false;
    s.tidy();
    s
}

fn fields_into(ty: Option<Type>, v: &Value, node: &mut Set) {
    let vw = view(ty, v);
    match &vw {
        View::Leaf => node.member = true,
        View::Object { ty, is_struct } => {
            for (k, x) in v.as_object().into_iter().flatten() {
                let child_ty = entry_type(*ty, *is_struct, k);
                let child = node.children.entry(format!("f:{k}")).or_default();
                fields_into(child_ty, x, child);
                let known_field = *is_struct && child_ty.is_some();
                if !known_field || x.is_null() || x.as_object().is_some_and(|o| o.is_empty()) {
                    child.member = true;
                }
            }
        }
        View::SetList(item) | View::Keyed(item, _) => {
            let keys = list_keys(&vw).flatten();
            for x in v.as_array().into_iter().flatten() {
                let Some(pe) = item_element(keys, x) else {
                    continue;
                };
                let child = node.children.entry(pe).or_default();
                if keys.is_some() {
                    fields_into(*item, x, child);
                }
                child.member = true;
            }
        }
    }
}

/// What changed between two versions of an object.
#[derive(Debug, Default)]
pub struct Comparison {
    pub added: Set,
    pub modified: Set,
    pub removed: Set,
}

impl Comparison {
    pub fn is_same(&self) -> bool {
        self.added.is_empty() && self.modified.is_empty() && self.removed.is_empty()
    }
}

/// Compares two versions of an object of type `ty`.
pub fn compare(ty: Option<Type>, old: &Value, new: &Value) -> Comparison {
    let mut c = Comparison::default();
    compare_into(ty, Some(old), Some(new), &mut Vec::new(), &mut c);
    for s in [&mut c.added, &mut c.modified, &mut c.removed] {
        s.member = false;
        s.tidy();
    }
    c
}

fn index_items<'a>(
    keys: Option<&[String]>,
    items: &'a [Value],
) -> (Vec<Option<String>>, HashMap<String, &'a Value>) {
    let mut pes = Vec::with_capacity(items.len());
    let mut index = HashMap::with_capacity(items.len());
    for x in items {
        let pe = item_element(keys, x);
        if let Some(pe) = &pe {
            index.entry(pe.clone()).or_insert(x);
        }
        pes.push(pe);
    }
    (pes, index)
}

fn compare_into(
    ty: Option<Type>,
    old: Option<&Value>,
    new: Option<&Value>,
    path: &mut Vec<String>,
    c: &mut Comparison,
) {
    // `null` is an empty value of whatever shape the other side has (structured-merge-diff's
    // nil wildcard), but it is there: a field going from `null` to a value is not added.
    let shape_of = |v: Option<&Value>| v.filter(|v| !v.is_null()).map(|v| view(ty, v));
    let (vo, vn) = (shape_of(old), shape_of(new));
    let same_shape = match (&vo, &vn) {
        (Some(a), Some(b)) => std::mem::discriminant(a) == std::mem::discriminant(b),
        _ => true,
    };
    let shape = vn.as_ref().or(vo.as_ref());
    let empty = |v: Option<&Value>| match v {
        None | Some(Value::Null) => true,
        Some(Value::Object(m)) => m.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        Some(_) => false,
    };
    // Atomic values, and maps or lists empty on both sides, compare whole.
    let leaf =
        !same_shape || matches!(shape, Some(View::Leaf) | None) || (empty(old) && empty(new));
    if leaf {
        match (old, new) {
            (None, Some(_)) => c.added.insert(path),
            (Some(_), None) => c.removed.insert(path),
            (Some(a), Some(b)) if a != b => c.modified.insert(path),
            _ => {}
        }
        return;
    }
    match shape {
        Some(View::Object { ty: t, is_struct }) => {
            let empty = Map::new();
            let om = old.and_then(Value::as_object).unwrap_or(&empty);
            let nm = new.and_then(Value::as_object).unwrap_or(&empty);
            for k in om.keys().chain(nm.keys().filter(|k| !om.contains_key(*k))) {
                path.push(format!("f:{k}"));
                compare_into(entry_type(*t, *is_struct, k), om.get(k), nm.get(k), path, c);
                path.pop();
            }
        }
        Some(vw @ (View::SetList(item) | View::Keyed(item, _))) => {
            let keys = list_keys(vw).flatten();
            let none: Vec<Value> = Vec::new();
            let oi = old.and_then(Value::as_array).unwrap_or(&none);
            let ni = new.and_then(Value::as_array).unwrap_or(&none);
            let (ope, oidx) = index_items(keys, oi);
            let (npe, nidx) = index_items(keys, ni);
            let mut seen = HashSet::new();
            for pe in ope.iter().chain(npe.iter()).flatten() {
                if !seen.insert(pe.clone()) {
                    continue;
                }
                path.push(pe.clone());
                let (a, b) = (oidx.get(pe).copied(), nidx.get(pe).copied());
                if keys.is_some() {
                    compare_into(*item, a, b, path, c);
                } else {
                    match (a, b) {
                        (None, Some(_)) => c.added.insert(path),
                        (Some(_), None) => c.removed.insert(path),
                        _ => {}
                    }
                }
                path.pop();
            }
        }
        _ => {}
    }
    // A map, struct or list that appears or goes is itself added or removed (`.` in
    // fieldsV1). Objects are compared in their Go form (see [`update`]), where non-pointer
    // structs are always there.
    if !path.is_empty() {
        match (old, new) {
            (None, Some(_)) => c.added.insert(path),
            (Some(_), None) => c.removed.insert(path),
            _ => {}
        }
    }
}

/// Merges an applied configuration into the live object: fields of the configuration win,
/// keyed lists and sets merge item by item (the configuration's order for shared items, live
/// items not in the configuration kept in place), atomic values are replaced.
pub fn merge(ty: Option<Type>, live: Option<&Value>, config: &Value) -> Result<Value, String> {
    let vw = view(ty, config);
    match (&vw, live) {
        (View::Object { ty: t, is_struct }, Some(Value::Object(lm))) => {
            let mut out = lm.clone();
            for (k, x) in config.as_object().into_iter().flatten() {
                if x.is_null() {
                    out.remove(k);
                    continue;
                }
                let merged = merge(entry_type(*t, *is_struct, k), lm.get(k), x)?;
                out.insert(k.clone(), merged);
            }
            Ok(Value::Object(out))
        }
        (View::Object { ty: t, is_struct }, _) => {
            let mut out = Map::new();
            for (k, x) in config.as_object().into_iter().flatten() {
                if !x.is_null() {
                    out.insert(k.clone(), merge(entry_type(*t, *is_struct, k), None, x)?);
                }
            }
            Ok(Value::Object(out))
        }
        (View::SetList(item) | View::Keyed(item, _), live) => {
            let keys = list_keys(&vw).flatten();
            let none: Vec<Value> = Vec::new();
            let l = live.and_then(Value::as_array).unwrap_or(&none);
            let r = config.as_array().unwrap_or(&none);
            let (rpe, ridx) = index_items(keys, r);
            if ridx.len() != rpe.iter().flatten().count() {
                let mut seen = HashSet::new();
                let dup = rpe
                    .iter()
                    .flatten()
                    .find(|pe| !seen.insert(*pe))
                    .cloned()
                    .unwrap_or_default();
                return Err(format!(
                    "duplicate entries for key {}",
                    path_string(&[dup]).trim_start_matches('.')
                ));
            }
            if rpe.iter().any(Option::is_none) && keys.is_some() {
                return Err(
                    "associative list with keys has an element that omits all key fields"
                        .to_string(),
                );
            }
            let (lpe, lidx) = index_items(keys, l);
            merge_list(l, r, &lpe, &rpe, &lidx, &ridx, |a, b| match keys {
                Some(_) => merge(*item, a, b),
                None => Ok(b.clone()),
            })
            .map(Value::Array)
        }
        (View::Leaf, _) => Ok(config.clone()),
    }
}

#[allow(clippy::too_many_arguments)]
fn merge_list(
    l: &[Value],
    r: &[Value],
    lpe: &[Option<String>],
    rpe: &[Option<String>],
    lidx: &HashMap<String, &Value>,
    ridx: &HashMap<String, &Value>,
    item: impl Fn(Option<&Value>, &Value) -> Result<Value, String>,
) -> Result<Vec<Value>, String> {
    // The items both lists have, in the configuration's order.
    let mut shared = rpe
        .iter()
        .flatten()
        .filter(|pe| lidx.contains_key(*pe))
        .collect::<Vec<_>>()
        .into_iter();
    let mut next_shared = shared.next();
    let mut merged: HashSet<&String> = HashSet::new();
    let mut out = Vec::with_capacity(l.len().max(r.len()));
    let (mut i, mut j) = (0, 0);
    while i < l.len() || j < r.len() {
        if i < l.len() && j < r.len() {
            if let (Some(a), Some(b)) = (&lpe[i], &rpe[j]) {
                if a == b {
                    out.push(item(Some(&l[i]), &r[j])?);
                    merged.insert(b);
                    i += 1;
                    j += 1;
                    if next_shared == Some(b) {
                        next_shared = shared.next();
                    }
                    continue;
                }
                if ridx.contains_key(a) && next_shared.is_some_and(|n| n != a) {
                    i += 1;
                    continue;
                }
            }
        }
        if i < l.len() {
            match &lpe[i] {
                Some(a) if ridx.contains_key(a) => {
                    if merged.contains(a) || j >= r.len() {
                        i += 1;
                        continue;
                    }
                }
                _ => {
                    out.push(l[i].clone());
                    i += 1;
                    continue;
                }
            }
        }
        if j < r.len() {
            let b = rpe[j].as_ref();
            let live = b.and_then(|b| lidx.get(b).copied());
            out.push(item(live, &r[j])?);
            if let Some(b) = b {
                merged.insert(b);
                if next_shared == Some(b) {
                    next_shared = shared.next();
                }
            }
            j += 1;
        }
    }
    Ok(out)
}

/// Removes the members of `set` from `v`.
pub fn remove_items(ty: Option<Type>, v: &mut Value, set: &Set) {
    let vw = view(ty, v);
    match &vw {
        View::Object { ty: t, is_struct } => {
            let (t, is_struct) = (*t, *is_struct);
            let Some(m) = v.as_object_mut() else { return };
            for (pe, child) in &set.children {
                let Some(k) = pe.strip_prefix("f:") else {
                    continue;
                };
                if child.member {
                    m.remove(k);
                } else if let Some(x) = m.get_mut(k) {
                    remove_items(entry_type(t, is_struct, k), x, child);
                }
            }
        }
        View::SetList(item) | View::Keyed(item, _) => {
            let item = *item;
            let keys = list_keys(&vw).flatten().map(<[String]>::to_vec);
            let Some(items) = v.as_array_mut() else {
                return;
            };
            items.retain_mut(|x| {
                let Some(pe) = item_element(keys.as_deref(), x) else {
                    return true;
                };
                match set.children.get(&pe) {
                    Some(c) if c.member => false,
                    Some(c) => {
                        remove_items(item, x, c);
                        true
                    }
                    None => true,
                }
            });
        }
        View::Leaf => {}
    }
}

/// `set` with every struct field on the way to a member made a member itself (upstream's
/// `EnsureNamedFieldsAreMembers`): what pruning compares.
fn with_named_fields(ty: Option<Type>, set: &Set) -> Set {
    fn walk(ty: Option<Type>, s: &Set, out: &mut Set) {
        out.member |= s.member;
        let kind = ty.map(Type::kind);
        for (pe, c) in &s.children {
            let child_out = out.children.entry(pe.clone()).or_default();
            let child_ty = match (&kind, pe.strip_prefix("f:")) {
                (Some(TypeKind::Struct(_)), Some(f)) => {
                    let t = ty.and_then(|t| t.field(f));
                    if t.is_some() {
                        child_out.member = true;
                    }
                    t
                }
                (Some(TypeKind::Map(item, _) | TypeKind::List(item, _)), _) => Some(*item),
                _ => None,
            };
            walk(child_ty, c, child_out);
        }
    }
    let mut out = Set::default();
    walk(ty, set, &mut out);
    out.member = false;
    out
}

// ---------------------------------------------------------------------------------------------
// Managers

pub const APPLY: &str = "Apply";
pub const UPDATE: &str = "Update";

/// One `managedFields` entry.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub manager: String,
    pub operation: String,
    pub api_version: String,
    pub time: Option<String>,
    pub subresource: String,
    pub set: Set,
}

impl Entry {
    /// What identifies an entry: appliers are one entry whatever the version they apply.
    fn id(&self) -> (String, String, String, String) {
        let version = if self.operation == APPLY {
            String::new()
        } else {
            self.api_version.clone()
        };
        (
            self.manager.clone(),
            self.operation.clone(),
            version,
            self.subresource.clone(),
        )
    }

    /// How a conflict names the manager: `"kubectl-create" using apps/v1`.
    fn describe(&self) -> String {
        let mut s = format!("{:?}", self.manager);
        if !self.subresource.is_empty() {
            s = format!("{s} with subresource {:?}", self.subresource);
        }
        if self.operation == UPDATE {
            s = format!("{s} using {}", self.api_version);
        }
        s
    }
}

/// Decodes `metadata.managedFields`.
pub fn decode(v: Option<&Value>) -> Result<Vec<Entry>, String> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(Vec::new());
    };
    let items = v.as_array().ok_or("managedFields must be a list")?;
    let mut out: Vec<Entry> = Vec::with_capacity(items.len());
    for e in items {
        let s = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let fields_type = s("fieldsType");
        if fields_type != "FieldsV1" {
            return Err(format!("invalid fieldsType {fields_type:?}"));
        }
        let set = Set::from_fields_v1(e.get("fieldsV1").unwrap_or(&Value::Null))?;
        let entry = Entry {
            manager: s("manager"),
            operation: s("operation"),
            api_version: s("apiVersion"),
            time: e.get("time").and_then(Value::as_str).map(str::to_string),
            subresource: s("subresource"),
            set,
        };
        if out.iter().any(|o| o.id() == entry.id()) {
            return Err(format!("duplicate manager entry {:?}", entry.manager));
        }
        out.push(entry);
    }
    Ok(out)
}

/// Seconds of an RFC 3339 time, for sorting.
fn seconds(t: &Option<String>) -> String {
    t.as_deref().unwrap_or("").chars().take(19).collect()
}

/// Encodes entries as `metadata.managedFields`, sorted as upstream sorts them; empty sets
/// are dropped.
pub fn encode(entries: &[Entry]) -> Value {
    let mut sorted: Vec<&Entry> = entries.iter().filter(|e| !e.set.is_empty()).collect();
    sorted.sort_by(|a, b| {
        (
            &a.operation,
            seconds(&a.time),
            &a.manager,
            &a.api_version,
            &a.subresource,
        )
            .cmp(&(
                &b.operation,
                seconds(&b.time),
                &b.manager,
                &b.api_version,
                &b.subresource,
            ))
    });
    Value::Array(
        sorted
            .into_iter()
            .map(|e| {
                let mut m = Map::new();
                m.insert("manager".into(), Value::String(e.manager.clone()));
                m.insert("operation".into(), Value::String(e.operation.clone()));
                m.insert("apiVersion".into(), Value::String(e.api_version.clone()));
                if let Some(t) = &e.time {
                    m.insert("time".into(), Value::String(t.clone()));
                }
                m.insert("fieldsType".into(), Value::String("FieldsV1".into()));
                m.insert("fieldsV1".into(), e.set.to_fields_v1());
                if !e.subresource.is_empty() {
                    m.insert("subresource".into(), Value::String(e.subresource.clone()));
                }
                Value::Object(m)
            })
            .collect(),
    )
}

/// Which top-level fields a write may not own (upstream's reset fields): the status of a kind
/// with a status subresource, written through the main resource; everything but the status,
/// written through the status subresource.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reset {
    None,
    Status,
    AllButStatus,
}

/// Who writes, and how.
#[derive(Clone, Debug)]
pub struct Writer<'a> {
    pub manager: &'a str,
    pub api_version: &'a str,
    pub subresource: &'a str,
    /// Now, as RFC 3339 in seconds.
    pub now: &'a str,
    pub reset: Reset,
}

/// Fields no manager owns: the type's identity and the metadata the server keeps.
fn strip(set: &mut Set, reset: Reset) {
    let mut s = Set::default();
    s.insert(&["f:apiVersion".to_string()]);
    s.insert(&["f:kind".to_string()]);
    s.insert(&["f:metadata".to_string()]);
    for f in [
        "name",
        "namespace",
        "creationTimestamp",
        "selfLink",
        "uid",
        "clusterName",
        "generation",
        "managedFields",
        "resourceVersion",
    ] {
        s.insert(&["f:metadata".to_string(), format!("f:{f}")]);
    }
    set.difference(&s);
    match reset {
        Reset::None => {}
        Reset::Status => set.remove_subtree(&["f:status".to_string()]),
        Reset::AllButStatus => {
            set.member = false;
            set.children.retain(|k, _| k == "f:status");
        }
    }
}

fn without_managed_fields(obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("managedFields");
    }
    o
}

fn set_managed_fields(obj: &mut Value, entries: &[Entry]) {
    set_managed_fields_value(obj, encode(entries));
}

/// Sets encoded managed fields (`[]`: removes them).
pub fn set_managed_fields_value(obj: &mut Value, encoded: Value) {
    if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        if encoded.as_array().is_some_and(|a| a.is_empty()) {
            m.remove("managedFields");
        } else {
            m.insert("managedFields".into(), encoded);
        }
    }
}

/// Whether a body's managedFields asks to clear them: `[]` or `[{}]`.
fn is_reset(v: Option<&Value>) -> bool {
    match v.and_then(Value::as_array) {
        Some(a) if a.is_empty() => true,
        Some(a) if a.len() == 1 => a[0].as_object().is_some_and(|o| o.is_empty()),
        _ => false,
    }
}

/// The managed fields an update starts from: the new object's when it carries valid ones (a
/// client may write them), none when it asks to clear them, else the live object's. Writes to
/// a subresource always start from the live object's.
fn base_entries(old: Option<&Value>, new: &Value, subresource: bool) -> Vec<Entry> {
    fn of(o: Option<&Value>) -> Option<&Value> {
        o.and_then(|o| o.get("metadata")?.get("managedFields"))
    }
    let live = || decode(of(old)).unwrap_or_default();
    if subresource {
        return live();
    }
    let given = of(Some(new));
    if is_reset(given) {
        return Vec::new();
    }
    match decode(given) {
        Ok(e) if !e.is_empty() => e,
        _ => live(),
    }
}

/// Turns a write's objects, in place, into what an update compares: without their managed
/// fields, in the form a round trip through their Go type gives them (as upstream compares
/// them); on create, `old` becomes the Go zero object of the kind. In place because the objects
/// may be big: a copy would multiply what one request costs.
fn to_go_forms(old: &mut Option<Value>, new: &mut Value) {
    let s = |k: &str| new.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let (api_version, kind) = (s("apiVersion"), s("kind"));
    for v in old.iter_mut().chain(std::iter::once(&mut *new)) {
        if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("managedFields");
        }
        // Unknown kinds (and objects too deep) are compared as they are.
        crate::protobuf::go_fill_in_place(&api_version, &kind, v);
    }
    if old.is_none() {
        *old = Some(
            crate::protobuf::go_zero(&api_version, &kind).unwrap_or(Value::Object(Map::new())),
        );
    }
}

/// Records an update (create, update, patch) by `w` in `new.metadata.managedFields`: `old` is
/// the live object (`None` on create).
pub fn update(ty: Option<Type>, old: Option<&Value>, new: &mut Value, w: &Writer) {
    let form = Form {
        api_version: w.api_version,
        ty,
        old: old.cloned(),
        new: new.clone(),
    };
    if let Some(fields) = update_in(vec![form], w) {
        set_managed_fields_value(new, fields);
    }
}

/// An object before and after a write in the form of one API version, with that version's
/// type.
pub struct Form<'a> {
    pub api_version: &'a str,
    pub ty: Option<Type>,
    pub old: Option<Value>,
    pub new: Value,
}

/// [`update`] for a kind served in several versions: `forms` holds the write in the forms of
/// the versions managers may have written it in (the first one when no other fits). Each
/// entry's fields are paths of its own `apiVersion`, as upstream keeps them: the writer's
/// fields are compared in the writer's version, and what it takes from another entry in that
/// entry's version. Returns the new `managedFields` (`[]`: none). The forms are consumed
/// (turned into Go forms in place).
pub fn update_in(mut forms: Vec<Form>, w: &Writer) -> Option<Value> {
    let mine_at = forms
        .iter()
        .position(|f| f.api_version == w.api_version)
        .unwrap_or(0);
    let mine = forms.get(mine_at)?;
    let mut entries = base_entries(mine.old.as_ref(), &mine.new, !w.subresource.is_empty());
    // An object whose managed fields were cleared stays without them until someone applies.
    if entries.is_empty() && mine.old.is_some() {
        return Some(Value::Array(Vec::new()));
    }
    for f in forms.iter_mut() {
        to_go_forms(&mut f.old, &mut f.new);
    }
    let forms = forms;
    let first = &forms[0];
    let form_of = |v: &str| forms.iter().find(|f| f.api_version == v).unwrap_or(first);
    let mine = &forms[mine_at];
    let mut changes: HashMap<String, (Set, Set)> = HashMap::new();
    let mut change_in = |form: &Form| {
        changes
            .entry(form.api_version.to_string())
            .or_insert_with(|| {
                let before = form.old.as_ref().unwrap_or(&Value::Null);
                let c = compare(form.ty, before, &form.new);
                let mut taken = c.added;
                taken.union(&c.modified);
                strip(&mut taken, w.reset);
                let mut removed = c.removed;
                strip(&mut removed, w.reset);
                (taken, removed)
            })
            .clone()
    };
    let (taken, _) = change_in(mine);
    for e in &mut entries {
        let (t, removed) = change_in(form_of(&e.api_version));
        e.set.difference(&t);
        e.set.difference(&removed);
    }
    if !taken.is_empty() {
        let me = Entry {
            manager: w.manager.to_string(),
            operation: UPDATE.into(),
            api_version: w.api_version.to_string(),
            time: Some(w.now.to_string()),
            subresource: w.subresource.to_string(),
            set: Set::default(),
        };
        match entries.iter_mut().find(|e| e.id() == me.id()) {
            Some(e) => {
                e.set.union(&taken);
                e.time = me.time;
            }
            None => entries.push(Entry { set: taken, ..me }),
        }
    }
    entries.retain(|e| !e.set.is_empty());
    cap_updaters(&mut entries);
    Some(encode(&entries))
}

/// Most update entries kept; the oldest are merged into one `ancient-changes` entry (upstream's
/// cap).
const MAX_UPDATE_MANAGERS: usize = 10;

fn cap_updaters(entries: &mut Vec<Entry>) {
    let updaters = entries.iter().filter(|e| e.operation == UPDATE).count();
    if updaters <= MAX_UPDATE_MANAGERS {
        return;
    }
    let mut idx: Vec<usize> = (0..entries.len())
        .filter(|&i| entries[i].operation == UPDATE && entries[i].manager != "ancient-changes")
        .collect();
    idx.sort_by_key(|&i| seconds(&entries[i].time));
    let extra = updaters - MAX_UPDATE_MANAGERS + 1;
    let mut ancient = entries
        .iter()
        .position(|e| e.manager == "ancient-changes" && e.operation == UPDATE)
        .map(|i| entries[i].clone());
    let drop: HashSet<usize> = idx.into_iter().take(extra).collect();
    for &i in &drop {
        let e = &entries[i];
        match &mut ancient {
            Some(a) => {
                a.set.union(&e.set);
                a.time = e.time.clone().max(a.time.clone());
            }
            None => {
                ancient = Some(Entry {
                    manager: "ancient-changes".into(),
                    ..e.clone()
                })
            }
        }
    }
    let mut kept: Vec<Entry> = entries
        .drain(..)
        .enumerate()
        .filter(|(i, e)| !drop.contains(i) && e.manager != "ancient-changes")
        .map(|(_, e)| e)
        .collect();
    kept.extend(ancient);
    *entries = kept;
}

/// A conflict of an apply: the field and the manager that owns it.
#[derive(Clone, Debug, PartialEq)]
pub struct Conflict {
    pub field: String,
    /// `"kubectl-create" using apps/v1`.
    pub manager: String,
}

/// Upstream's message for conflicts.
pub fn conflict_message(conflicts: &[Conflict]) -> String {
    if let [c] = conflicts {
        return format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            c.manager, c.field
        );
    }
    let mut by: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for c in conflicts {
        by.entry(&c.manager).or_default().push(&c.field);
    }
    let mut lines = Vec::new();
    for (m, fields) in by {
        lines.push(format!("conflicts with {m}:"));
        lines.extend(fields.into_iter().map(|f| format!("- {f}")));
    }
    format!(
        "Apply failed with {} conflicts: {}",
        conflicts.len(),
        lines.join("\n")
    )
}

/// Why an apply failed.
#[derive(Debug)]
pub enum ApplyError {
    Conflicts(Vec<Conflict>),
    /// The configuration cannot be merged (duplicate keys…).
    Invalid(String),
}

/// Applies `config` for `w` to `live` (`None`: the object does not exist yet), returning the
/// new object with its managed fields.
pub fn apply(
    ty: Option<Type>,
    live: Option<&Value>,
    config: &Value,
    w: &Writer,
    force: bool,
) -> Result<Value, ApplyError> {
    let result = apply_once(ty, live, config, w, force);
    // `kubectl apply --server-side` after client-side applies: fields whose live value is still
    // what the last client-side apply set may change hands without force (upstream's
    // lastAppliedManager).
    match result {
        Err(ApplyError::Conflicts(conflicts)) if w.manager == "kubectl" && !force => {
            let allowed = live.and_then(|l| allowed_by_last_applied(ty, l));
            let Some(allowed) = allowed else {
                return Err(ApplyError::Conflicts(conflicts));
            };
            let left: Vec<Conflict> = conflicts
                .iter()
                .filter(|c| !allowed.contains(&c.field))
                .cloned()
                .collect();
            if left.is_empty() {
                apply_once(ty, live, config, w, true)
            } else {
                Err(ApplyError::Conflicts(left))
            }
        }
        other => other,
    }
}

/// The fields of the last client-side apply whose live values are still the applied ones, as
/// printed paths.
fn allowed_by_last_applied(ty: Option<Type>, live: &Value) -> Option<HashSet<String>> {
    let text = live
        .get("metadata")?
        .get("annotations")?
        .get(LAST_APPLIED)?
        .as_str()?;
    let last: Value = serde_json::from_str(text).ok()?;
    if last.get("apiVersion") != live.get("apiVersion") {
        return None;
    }
    let mut set = field_set(ty, &last);
    let c = compare(ty, &last, &without_managed_fields(live));
    set.difference(&c.modified);
    set.difference(&c.added);
    set.difference(&c.removed);
    Some(set.paths().iter().map(|p| path_string(p)).collect())
}

fn apply_once(
    ty: Option<Type>,
    live: Option<&Value>,
    config: &Value,
    w: &Writer,
    force: bool,
) -> Result<Value, ApplyError> {
    let mut entries = live
        .map(|l| decode(l.get("metadata").and_then(|m| m.get("managedFields"))).unwrap_or_default())
        .unwrap_or_default();
    let live_plain = live.map(without_managed_fields);
    let mut merged = merge(ty, live_plain.as_ref(), config).map_err(ApplyError::Invalid)?;
    let mut applied = field_set(ty, config);
    strip(&mut applied, w.reset);
    let me = Entry {
        manager: w.manager.to_string(),
        operation: APPLY.into(),
        api_version: w.api_version.to_string(),
        time: None,
        subresource: w.subresource.to_string(),
        set: Set::default(),
    };
    let mine = entries.iter().position(|e| e.id() == me.id());
    let (last, time) = match mine {
        Some(i) => {
            let e = entries.remove(i);
            (e.set, e.time)
        }
        None => (Set::default(), None),
    };
    // What this manager applied last time and no longer applies goes, unless someone else
    // (or this apply) owns it.
    if !last.is_empty() {
        let mut owned = applied.clone();
        for e in &entries {
            owned.union(&e.set);
        }
        let mut gone = with_named_fields(ty, &last);
        gone.difference(&with_named_fields(ty, &owned));
        remove_items(ty, &mut merged, &gone);
    }
    let before = live_plain.unwrap_or(Value::Object(Map::new()));
    let c = compare(ty, &before, &merged);
    let mut changed = c.added.clone();
    changed.union(&c.modified);
    strip(&mut changed, w.reset);
    let mut conflicts = Vec::new();
    for e in &entries {
        for p in e.set.intersection(&changed).paths() {
            conflicts.push(Conflict {
                field: path_string(&p),
                manager: e.describe(),
            });
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(ApplyError::Conflicts(conflicts));
    }
    let mut removed = c.removed.clone();
    strip(&mut removed, w.reset);
    for e in &mut entries {
        e.set.difference(&changed);
        e.set.difference(&removed);
    }
    let time = if c.is_same() {
        time.or_else(|| Some(w.now.to_string()))
    } else {
        Some(w.now.to_string())
    };
    entries.push(Entry {
        time,
        set: applied,
        ..me
    });
    entries.retain(|e| !e.set.is_empty());
    // Client-side apply's annotation follows what `kubectl` applies server-side.
    let has_last_applied = merged
        .get("metadata")
        .and_then(|m| m.get("annotations"))
        .and_then(|a| a.get(LAST_APPLIED))
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty());
    if w.manager == "kubectl" && has_last_applied {
        let mut cfg = config.clone();
        if let Some(a) = cfg
            .get_mut("metadata")
            .and_then(|m| m.get_mut("annotations"))
            .and_then(Value::as_object_mut)
        {
            a.remove(LAST_APPLIED);
        }
        let text = serde_json::to_string(&cfg).unwrap_or_default();
        if let Some(a) = merged
            .get_mut("metadata")
            .and_then(|m| m.get_mut("annotations"))
            .and_then(Value::as_object_mut)
        {
            a.insert(LAST_APPLIED.into(), Value::String(text));
        }
    }
    if !merged.get("metadata").is_some_and(Value::is_object) {
        crate::value::set(&mut merged, &["metadata"], Value::Object(Map::new()));
    }
    set_managed_fields(&mut merged, &entries);
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment() -> Option<Type> {
        Type::of_kind("apps", "v1", "Deployment")
    }

    fn writer(manager: &'static str) -> Writer<'static> {
        Writer {
            manager,
            api_version: "apps/v1",
            subresource: "",
            now: "2024-01-02T03:04:05Z",
            reset: Reset::Status,
        }
    }

    fn dep(replicas: i64, image: &str) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "d", "labels": {"app": "d"}},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": "d"}},
                "template": {
                    "metadata": {"labels": {"app": "d"}},
                    "spec": {"containers": [
                        {"name": "c", "image": image, "ports": [{"containerPort": 80}]}
                    ]}
                }
            }
        })
    }

    #[test]
    fn field_sets_are_upstreams_fields_v1() {
        let mut s = field_set(deployment(), &dep(2, "nginx"));
        strip(&mut s, Reset::Status);
        assert_eq!(
            s.to_fields_v1(),
            json!({
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {
                    "f:replicas": {},
                    "f:selector": {},
                    "f:template": {
                        "f:metadata": {"f:labels": {"f:app": {}}},
                        "f:spec": {"f:containers": {"k:{\"name\":\"c\"}": {
                            ".": {},
                            "f:image": {},
                            "f:name": {},
                            "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {
                                ".": {},
                                "f:containerPort": {}
                            }}
                        }}}
                    }
                }
            })
        );
        // fieldsV1 round-trips, and paths print as upstream's.
        let back = Set::from_fields_v1(&s.to_fields_v1()).unwrap();
        assert_eq!(back, s);
        assert!(back.has(&[
            "f:spec".into(),
            "f:template".into(),
            "f:spec".into(),
            "f:containers".into(),
            "k:{\"name\":\"c\"}".into()
        ]));
        assert_eq!(
            path_string(&[
                "f:spec".into(),
                "f:containers".into(),
                "k:{\"name\":\"c\"}".into(),
                "f:image".into()
            ]),
            ".spec.containers[name=\"c\"].image"
        );
        assert!(Set::from_fields_v1(&json!({"x:y": {}})).is_err());
        assert!(Set::from_fields_v1(&json!({"k:nope": {}})).is_err());
    }

    #[test]
    fn updates_own_what_they_change_and_take_it_from_others() {
        let mut created = dep(1, "nginx");
        update(deployment(), None, &mut created, &writer("kubectl-create"));
        let entries = decode(created["metadata"].get("managedFields")).unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].manager, "kubectl-create");
        assert_eq!(entries[0].operation, "Update");
        // A map that appears is a member itself, as upstream's comparison makes it.
        assert_eq!(
            entries[0].set.to_fields_v1()["f:metadata"],
            json!({"f:labels": {".": {}, "f:app": {}}})
        );
        let mut scaled = created.clone();
        crate::value::set(&mut scaled, &["spec", "replicas"], json!(3));
        update(
            deployment(),
            Some(&created),
            &mut scaled,
            &writer("kubectl-edit"),
        );
        let entries = decode(scaled["metadata"].get("managedFields")).unwrap();
        let edit = entries
            .iter()
            .find(|e| e.manager == "kubectl-edit")
            .unwrap();
        assert_eq!(
            edit.set.to_fields_v1(),
            json!({"f:spec": {"f:replicas": {}}})
        );
        let create = entries
            .iter()
            .find(|e| e.manager == "kubectl-create")
            .unwrap();
        assert!(!create.set.has(&["f:spec".into(), "f:replicas".into()]));
        // Clearing managed fields: they stay cleared on later updates.
        let mut cleared = scaled.clone();
        crate::value::set(&mut cleared, &["metadata", "managedFields"], json!([]));
        update(deployment(), Some(&scaled), &mut cleared, &writer("x"));
        assert!(cleared["metadata"].get("managedFields").is_none());
    }

    #[test]
    fn updates_compare_go_forms() {
        // On create the object is compared with the kind's Go zero object: value structs
        // (`strategy`, `template`) and non-omitempty lists (`containers`) are there already,
        // so only what appears below them is a member; pointers and maps that appear are.
        let mut created = dep(1, "nginx");
        crate::value::set(
            &mut created,
            &["spec", "strategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%"}}),
        );
        created
            .pointer_mut("/spec/template/spec/containers/0")
            .and_then(Value::as_object_mut)
            .unwrap()
            .insert("resources".into(), json!({}));
        crate::value::set(&mut created, &["spec", "minReadySeconds"], json!(0));
        update(deployment(), None, &mut created, &writer("kubectl-create"));
        let entries = decode(created["metadata"].get("managedFields")).unwrap();
        let spec = &entries[0].set.to_fields_v1()["f:spec"];
        assert_eq!(
            spec["f:strategy"],
            json!({"f:rollingUpdate": {".": {}, "f:maxSurge": {}}, "f:type": {}})
        );
        let containers = &spec["f:template"]["f:spec"]["f:containers"];
        assert!(containers.get(".").is_none(), "{containers}");
        assert_eq!(containers["k:{\"name\":\"c\"}"]["f:resources"], json!({}));
        // `minReadySeconds: 0` is dropped by omitempty: not a field anyone sets.
        assert!(spec.get("f:minReadySeconds").is_none(), "{spec}");
        // `null` to a value is a change of the value, not a new member.
        let c = compare(
            deployment(),
            &json!({"spec": {"template": {"spec": {"containers": null}}}}),
            &json!({"spec": {"template": {"spec": {"containers": [{"name": "a"}]}}}}),
        );
        assert_eq!(
            c.added.to_fields_v1(),
            json!({"f:spec": {"f:template": {"f:spec": {"f:containers": {
                "k:{\"name\":\"a\"}": {".": {}, "f:name": {}}
            }}}}})
        );
    }

    #[test]
    fn apply_merges_conflicts_and_prunes() {
        let mut created = dep(1, "nginx");
        update(deployment(), None, &mut created, &writer("kubectl-create"));
        // Changing a field another manager owns conflicts.
        let err = apply(
            deployment(),
            Some(&created),
            &dep(3, "nginx"),
            &writer("mgr"),
            false,
        )
        .unwrap_err();
        let ApplyError::Conflicts(c) = err else {
            panic!("{err:?}")
        };
        assert_eq!(
            conflict_message(&c),
            "Apply failed with 1 conflict: conflict with \"kubectl-create\" using apps/v1: .spec.replicas"
        );
        // The same values are shared, without conflict.
        let same = apply(
            deployment(),
            Some(&created),
            &dep(1, "nginx"),
            &writer("mgr"),
            false,
        )
        .unwrap();
        assert_eq!(
            without_managed_fields(&same),
            without_managed_fields(&created)
        );
        // Forced: the field changes hands.
        let forced = apply(
            deployment(),
            Some(&created),
            &dep(3, "nginx"),
            &writer("mgr"),
            true,
        )
        .unwrap();
        assert_eq!(forced["spec"]["replicas"], 3);
        let entries = decode(forced["metadata"].get("managedFields")).unwrap();
        assert_eq!(entries[0].operation, "Apply");
        assert!(entries[0].set.has(&["f:spec".into(), "f:replicas".into()]));
        assert!(!entries[1].set.has(&["f:spec".into(), "f:replicas".into()]));
        // An applier that stops applying a field it alone owns removes it; keyed lists merge.
        let mut a = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "labels": {"a": "1", "b": "2"}}, "data": {"x": "1", "y": "2"}});
        let cm = Type::of_kind("", "v1", "ConfigMap");
        let w = Writer {
            api_version: "v1",
            reset: Reset::None,
            ..writer("m")
        };
        let first = apply(cm, None, &a, &w, false).unwrap();
        a["data"].as_object_mut().unwrap().remove("y");
        a["metadata"]["labels"].as_object_mut().unwrap().remove("b");
        let second = apply(cm, Some(&first), &a, &w, false).unwrap();
        assert_eq!(second["data"], json!({"x": "1"}));
        assert_eq!(second["metadata"]["labels"], json!({"a": "1"}));
        // Another manager's fields stay.
        let other = Writer {
            api_version: "v1",
            reset: Reset::None,
            ..writer("other")
        };
        let third = apply(
            cm,
            Some(&second),
            &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"z": "3"}}),
            &other,
            false,
        )
        .unwrap();
        let fourth = apply(
            cm,
            Some(&third),
            &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}),
            &w,
            false,
        )
        .unwrap();
        assert_eq!(fourth["data"], json!({"z": "3"}));
    }

    #[test]
    fn keyed_lists_merge_in_order() {
        let live = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "a", "image": "1"}, {"name": "b", "image": "2"}
        ]}}}});
        let config = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "c", "image": "3"}, {"name": "a", "image": "9"}
        ]}}}});
        let m = merge(deployment(), Some(&live), &config).unwrap();
        let names: Vec<&str> = m["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["c", "a", "b"]);
        assert_eq!(m["spec"]["template"]["spec"]["containers"][1]["image"], "9");
        let dup = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "a"}, {"name": "a"}
        ]}}}});
        assert!(merge(deployment(), Some(&live), &dup).is_err());
    }

    #[test]
    fn conflict_messages_for_several() {
        let c = [
            Conflict {
                field: ".spec.replicas".into(),
                manager: "\"b\" using apps/v1".into(),
            },
            Conflict {
                field: ".spec.paused".into(),
                manager: "\"a\"".into(),
            },
        ];
        assert_eq!(
            conflict_message(&c),
            "Apply failed with 2 conflicts: conflicts with \"a\":\n- .spec.paused\nconflicts with \"b\" using apps/v1:\n- .spec.replicas"
        );
    }
}
