//! Strategic merge patch (`application/strategic-merge-patch+json`), the patch kubectl sends for
//! `apply`, `edit`, `label`, `annotate`, `scale` and `set` on built-in kinds.
//!
//! Maps merge recursively (`null` deletes a key). Lists with a merge key merge element by
//! element (`$patch: delete` in an element removes it); lists with strategy "merge" and no key
//! (finalizers) take the union; other lists are replaced. Directives: `$patch: replace|delete`
//! on maps, `$retainKeys`, `$setElementOrder/<list>`, `$deleteFromPrimitiveList/<list>`.
//! The merge keys are upstream's `patchMergeKey` tags for the kinds served; a test in
//! [`crate::openapi`] checks them against the patch metadata the OpenAPI documents publish.
//!
//! Every list operation is linear in the sizes of the list and the patch (hash maps and sets
//! keyed by an element's identity, never a scan of one list per element of the other): a patch
//! of 60,000 finalizers must not cost 60,000² comparisons.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

use crate::schema::Type;

/// What identifies a list element for set semantics and merge keys: the JSON text of the value
/// (scalars compare equal exactly when their texts do; for objects, whose key order may differ,
/// callers fall back to `==`).
fn identity(v: &Value) -> Option<String> {
    match v {
        Value::Object(_) | Value::Array(_) => None,
        _ => Some(v.to_string()),
    }
}

/// A set of list elements: scalars hashed, anything else compared one by one (such lists are
/// not what Kubernetes merges as sets).
#[derive(Default)]
struct ValueSet<'a> {
    scalars: HashSet<String>,
    others: Vec<&'a Value>,
}

impl<'a> ValueSet<'a> {
    fn of(values: impl IntoIterator<Item = &'a Value>) -> Self {
        let mut set = ValueSet::default();
        for v in values {
            set.insert(v);
        }
        set
    }

    /// Adds `v`; false when it was there.
    fn insert(&mut self, v: &'a Value) -> bool {
        match identity(v) {
            Some(k) => self.scalars.insert(k),
            None if self.others.contains(&v) => false,
            None => {
                self.others.push(v);
                true
            }
        }
    }

    fn contains(&self, v: &Value) -> bool {
        match identity(v) {
            Some(k) => self.scalars.contains(&k),
            None => self.others.contains(&v),
        }
    }
}

/// How a list field merges: by an element key, as a set of primitives, or not at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ListRule {
    Key(&'static str),
    Union,
    Replace,
}

/// The rule for list `field` inside an object reached through `parent` (the field holding
/// that object, or "" at the top).
pub(crate) fn list_rule(parent: &str, field: &str) -> ListRule {
    use ListRule::*;
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "resourceClaims"
        | "schedulingGates"
        | "allocatedResourcesStatus"
        | "resourceClaimStatuses" => Key("name"),
        // PodSpec's merge by name; ServiceAccount's (top level) are replaced.
        "imagePullSecrets" if parent == "spec" => Key("name"),
        // ServiceAccount.secrets.
        "secrets" if parent.is_empty() => Key("name"),
        // NodeStatus.addresses (EndpointSubset's and EndpointSlice's are replaced).
        "addresses" if parent == "status" => Key("type"),
        // PodStatus.podIPs and hostIPs.
        "podIPs" | "hostIPs" if parent == "status" => Key("ip"),
        // NodeSpec.podCIDRs: a set of strings.
        "podCIDRs" => Union,
        "ports"
            if matches!(
                parent,
                "containers" | "initContainers" | "ephemeralContainers"
            ) =>
        {
            Key("containerPort")
        }
        "ports" if parent == "spec" => Key("port"),
        "volumeMounts" => Key("mountPath"),
        "volumeDevices" => Key("devicePath"),
        "hostAliases" => Key("ip"),
        "topologySpreadConstraints" => Key("topologyKey"),
        "conditions" => Key("type"),
        "ownerReferences" => Key("uid"),
        // ObjectMeta's; NamespaceSpec.finalizers is replaced.
        "finalizers" if parent == "metadata" => Union,
        _ => Replace,
    }
}

/// The rule of a list of type `list` (from the schema's patch strategy and merge key), or
/// when the schema does not reach it, of list `field` under `parent` by name.
fn rule_of(list: Option<Type>, parent: &str, field: &str) -> ListRule {
    match list.filter(|t| t.item().is_some()) {
        Some(t) => match t.patch_meta() {
            Some((strategy, key)) if strategy.contains("merge") && !key.is_empty() => {
                ListRule::Key(key)
            }
            Some((strategy, _)) if strategy.contains("merge") => ListRule::Union,
            _ => ListRule::Replace,
        },
        None => list_rule(parent, field),
    }
}

fn directive_key(k: &str) -> bool {
    k.starts_with('$')
}

/// Applies `patch` to `original`; errors name what was malformed.
pub fn strategic_merge(original: &Value, patch: &Value) -> Result<Value, String> {
    strategic_merge_typed(None, original, patch)
}

/// Applies `patch` to `original`, an object of type `ty`: list rules come from the schema's
/// `x-kubernetes-patch-strategy`/`-merge-key` where the schema reaches, by field name elsewhere.
pub fn strategic_merge_typed(
    ty: Option<Type>,
    original: &Value,
    patch: &Value,
) -> Result<Value, String> {
    match (original, patch) {
        (Value::Object(o), Value::Object(p)) => {
            merge_map(o, p, "", ty).map(|m| m.map_or(Value::Null, Value::Object))
        }
        (_, Value::Object(p)) => {
            merge_map(&Map::new(), p, "", ty).map(|m| m.map_or(Value::Null, Value::Object))
        }
        _ => Err("a strategic merge patch must be a JSON object".into()),
    }
}

/// Returns `None` when the patch deletes the whole map (`$patch: delete`).
fn merge_map(
    orig: &Map<String, Value>,
    patch: &Map<String, Value>,
    parent: &str,
    ty: Option<Type>,
) -> Result<Option<Map<String, Value>>, String> {
    match patch.get("$patch").map(|v| v.as_str()) {
        Some(Some("delete")) => return Ok(None),
        Some(Some("replace")) => {
            let mut m = patch.clone();
            m.remove("$patch");
            return Ok(Some(m));
        }
        Some(Some("merge")) | None => {}
        Some(other) => return Err(format!("unknown patch type: {other:?}")),
    }
    let mut out = orig.clone();
    for (k, pv) in patch {
        if directive_key(k) {
            continue;
        }
        if pv.is_null() {
            out.remove(k);
            continue;
        }
        let child = ty.and_then(|t| t.entry(k));
        let merged = match (out.get(k), pv) {
            (Some(Value::Object(o)), Value::Object(p)) => match merge_map(o, p, k, child)? {
                Some(m) => Value::Object(m),
                None => {
                    out.remove(k);
                    continue;
                }
            },
            (None, Value::Object(p)) => match merge_map(&Map::new(), p, k, child)? {
                Some(m) => Value::Object(m),
                None => continue,
            },
            (Some(Value::Array(o)), Value::Array(p)) => {
                Value::Array(merge_list(o, p, parent, k, child)?)
            }
            (None, Value::Array(p)) => Value::Array(merge_list(&[], p, parent, k, child)?),
            _ => pv.clone(),
        };
        out.insert(k.clone(), merged);
    }
    // $deleteFromPrimitiveList/<field>: remove the values from that primitive list.
    for (k, v) in patch {
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            let gone = v.as_array().ok_or_else(|| format!("{k} must be a list"))?;
            if let Some(Value::Array(list)) = out.get_mut(field) {
                let gone = ValueSet::of(gone);
                list.retain(|x| !gone.contains(x));
            }
        }
    }
    // $setElementOrder/<field>: the order of the patched list.
    for (k, v) in patch {
        if let Some(field) = k.strip_prefix("$setElementOrder/") {
            let order = v.as_array().ok_or_else(|| format!("{k} must be a list"))?;
            if let Some(Value::Array(list)) = out.get_mut(field) {
                reorder(
                    list,
                    order,
                    rule_of(ty.and_then(|t| t.entry(field)), parent, field),
                );
            }
        }
    }
    if let Some(keep) = patch.get("$retainKeys") {
        let keep: HashSet<&str> = keep
            .as_array()
            .ok_or("$retainKeys must be a list")?
            .iter()
            .filter_map(Value::as_str)
            .collect();
        out.retain(|k, _| keep.contains(k.as_str()));
    }
    Ok(Some(out))
}

fn key_of<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.get(key)
}

fn merge_list(
    orig: &[Value],
    patch: &[Value],
    parent: &str,
    field: &str,
    ty: Option<Type>,
) -> Result<Vec<Value>, String> {
    let item = ty.and_then(Type::item);
    // `[{"$patch": "replace"}, …]`: replace the whole list with the rest.
    if patch
        .iter()
        .any(|e| e.get("$patch").and_then(Value::as_str) == Some("replace"))
    {
        return Ok(patch
            .iter()
            .filter(|e| e.get("$patch").is_none())
            .cloned()
            .collect());
    }
    match rule_of(ty, parent, field) {
        ListRule::Replace => Ok(patch.to_vec()),
        ListRule::Union => {
            let mut seen = ValueSet::of(orig);
            let mut out = orig.to_vec();
            for p in patch {
                if seen.insert(p) {
                    out.push(p.clone());
                }
            }
            Ok(out)
        }
        ListRule::Key(key) => {
            if patch.iter().any(|e| !e.is_object()) || orig.iter().any(|e| !e.is_object()) {
                return Ok(patch.to_vec());
            }
            // Slots in list order (a deleted element leaves `None`), and where each key is.
            let mut out: Vec<Option<Value>> = orig.iter().cloned().map(Some).collect();
            let mut index: HashMap<String, usize> = HashMap::with_capacity(orig.len());
            for (i, e) in orig.iter().enumerate() {
                if let Some(k) = key_of(e, key) {
                    // The first element with a key is the one a patch names, as upstream.
                    index.entry(k.to_string()).or_insert(i);
                }
            }
            for p in patch {
                let Value::Object(pm) = p else { continue };
                let Some(k) = key_of(p, key) else {
                    return Err(format!(
                        "map: {p} does not contain declared merge key: {key}"
                    ));
                };
                let k = k.to_string();
                let pos = index.get(&k).copied();
                let deleting = pm.get("$patch").and_then(Value::as_str) == Some("delete");
                match (pos, deleting) {
                    (Some(i), true) => {
                        if let Some(slot) = out.get_mut(i) {
                            *slot = None;
                        }
                        index.remove(&k);
                    }
                    (None, true) => {}
                    (Some(i), false) => {
                        let om = match out.get(i) {
                            Some(Some(Value::Object(om))) => om.clone(),
                            _ => Map::new(),
                        };
                        match merge_map(&om, pm, field, item)? {
                            Some(m) => {
                                if let Some(slot) = out.get_mut(i) {
                                    *slot = Some(Value::Object(m));
                                }
                            }
                            None => {
                                if let Some(slot) = out.get_mut(i) {
                                    *slot = None;
                                }
                                index.remove(&k);
                            }
                        }
                    }
                    (None, false) => {
                        if let Some(m) = merge_map(&Map::new(), pm, field, item)? {
                            index.insert(k, out.len());
                            out.push(Some(Value::Object(m)));
                        }
                    }
                }
            }
            Ok(out.into_iter().flatten().collect())
        }
    }
}

/// Orders `list` as `order` says (elements it does not name keep their place after those it does).
fn reorder(list: &mut Vec<Value>, order: &[Value], rule: ListRule) {
    // Where each element's identity (its merge key, or itself) first appears in `order`.
    let ident = |e: &Value| -> Option<String> {
        match rule {
            ListRule::Key(k) => e.get(k).map(Value::to_string),
            _ => Some(e.to_string()),
        }
    };
    let mut first: HashMap<String, usize> = HashMap::with_capacity(order.len());
    for (i, o) in order.iter().enumerate() {
        if let Some(id) = ident(o) {
            first.entry(id).or_insert(i);
        }
    }
    let rank = |e: &Value| -> usize {
        ident(e)
            .and_then(|id| first.get(&id).copied())
            .unwrap_or(usize::MAX)
    };
    let mut ranked: Vec<(usize, usize, Value)> = list
        .drain(..)
        .enumerate()
        .map(|(i, e)| (rank(&e), i, e))
        .collect();
    ranked.sort_by_key(|(r, i, _)| (*r, *i));
    list.extend(ranked.into_iter().map(|(_, _, e)| e));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn maps_merge_and_null_deletes() {
        let o = json!({"metadata": {"labels": {"a": "1", "b": "2"}}});
        let p = json!({"metadata": {"labels": {"a": null, "c": "3"}}});
        assert_eq!(
            strategic_merge(&o, &p).unwrap(),
            json!({"metadata": {"labels": {"b": "2", "c": "3"}}})
        );
    }

    #[test]
    fn containers_merge_by_name() {
        let o = json!({"spec": {"containers": [{"name": "a", "image": "x:1"}, {"name": "b", "image": "y"}]}});
        let p = json!({"spec": {
            "$setElementOrder/containers": [{"name": "b"}, {"name": "a"}],
            "containers": [{"name": "a", "image": "x:2"}]}});
        let r = strategic_merge(&o, &p).unwrap();
        assert_eq!(
            r,
            json!({"spec": {"containers": [{"name": "b", "image": "y"}, {"name": "a", "image": "x:2"}]}})
        );
        let del = json!({"spec": {"containers": [{"name": "b", "$patch": "delete"}]}});
        assert_eq!(
            strategic_merge(&o, &del).unwrap()["spec"]["containers"],
            json!([{"name": "a", "image": "x:1"}])
        );
    }

    #[test]
    fn ports_use_the_right_key() {
        let svc = json!({"spec": {"ports": [{"port": 80, "name": "http"}]}});
        let p = json!({"spec": {"ports": [{"port": 443, "name": "https"}]}});
        assert_eq!(
            strategic_merge(&svc, &p).unwrap()["spec"]["ports"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        let pod =
            json!({"spec": {"containers": [{"name": "a", "ports": [{"containerPort": 80}]}]}});
        let p = json!({"spec": {"containers": [{"name": "a", "ports": [{"containerPort": 80, "protocol": "TCP"}]}]}});
        assert_eq!(
            strategic_merge(&pod, &p).unwrap()["spec"]["containers"][0]["ports"],
            json!([{"containerPort": 80, "protocol": "TCP"}])
        );
    }

    #[test]
    fn directives() {
        let o = json!({"metadata": {"finalizers": ["a", "b"]}, "spec": {"x": {"k": 1}, "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}});
        let p = json!({
            "metadata": {"finalizers": ["c"], "$deleteFromPrimitiveList/finalizers": ["a"]},
            "spec": {"x": {"$patch": "replace", "j": 2},
                     "strategy": {"$retainKeys": ["type"], "type": "Recreate"}}});
        let r = strategic_merge(&o, &p).unwrap();
        assert_eq!(r["metadata"]["finalizers"], json!(["b", "c"]));
        assert_eq!(r["spec"]["x"], json!({"j": 2}));
        assert_eq!(r["spec"]["strategy"], json!({"type": "Recreate"}));
        assert!(strategic_merge(&o, &json!([1])).is_err());
    }

    #[test]
    fn huge_sets_and_keyed_lists_merge_in_linear_time() {
        let n = 60_000;
        let fins: Vec<Value> = (0..n).map(|i| json!(format!("f{i}"))).collect();
        let o = json!({"metadata": {"finalizers": fins[..n / 2]}});
        let p = json!({"metadata": {
            "finalizers": fins,
            "$deleteFromPrimitiveList/finalizers": fins[..10],
            "$setElementOrder/finalizers": fins.iter().rev().collect::<Vec<_>>(),
        }});
        let r = strategic_merge(&o, &p).unwrap();
        let got = r["metadata"]["finalizers"].as_array().unwrap();
        // Union then delete: the first ten are gone, in the order asked.
        assert_eq!(got.len(), n - 10);
        assert_eq!(got[0], json!(format!("f{}", n - 1)));
        let containers: Vec<Value> = (0..n)
            .map(|i| json!({"name": format!("c{i}"), "image": "x"}))
            .collect();
        let o = json!({"spec": {"containers": containers}});
        let patch: Vec<Value> = (0..n)
            .map(|i| {
                if i % 2 == 0 {
                    json!({"name": format!("c{i}"), "$patch": "delete"})
                } else {
                    json!({"name": format!("c{i}"), "image": "y"})
                }
            })
            .collect();
        let r = strategic_merge(&o, &json!({"spec": {"containers": patch}})).unwrap();
        let got = r["spec"]["containers"].as_array().unwrap();
        assert_eq!(got.len(), n / 2);
        assert_eq!(got[0], json!({"name": "c1", "image": "y"}));
    }

    #[test]
    fn keyed_lists_keep_their_semantics() {
        let o = json!({"spec": {"containers": [{"name": "a", "image": "1"}]}});
        // Added twice in one patch: the second merges into the first.
        let p = json!({"spec": {"containers": [
            {"name": "b", "image": "2"}, {"name": "b", "tty": true}, {"name": "a", "$patch": "delete"}]}});
        assert_eq!(
            strategic_merge(&o, &p).unwrap()["spec"]["containers"],
            json!([{"name": "b", "image": "2", "tty": true}])
        );
        let missing = json!({"spec": {"containers": [{"image": "2"}]}});
        assert!(strategic_merge(&o, &missing).is_err());
    }

    #[test]
    fn other_lists_replace() {
        let o = json!({"spec": {"args": ["a", "b"]}});
        let p = json!({"spec": {"args": ["c"]}});
        assert_eq!(
            strategic_merge(&o, &p).unwrap(),
            json!({"spec": {"args": ["c"]}})
        );
    }

    #[test]
    fn typed_rules_come_from_the_schema_and_agree_with_the_names() {
        let deploy = Type::of_kind("apps", "v1", "Deployment").expect("Deployment");
        let pod_spec = deploy
            .field("spec")
            .and_then(|t| t.field("template"))
            .and_then(|t| t.field("spec"))
            .expect("PodSpec");
        let containers = pod_spec.field("containers");
        assert_eq!(rule_of(containers, "", "x"), ListRule::Key("name"));
        let ports = containers
            .and_then(Type::item)
            .and_then(|c| c.field("ports"));
        assert_eq!(rule_of(ports, "", "x"), ListRule::Key("containerPort"));
        assert_eq!(
            rule_of(pod_spec.field("tolerations"), "", "x"),
            ListRule::Replace
        );
        let original = json!({"spec": {"template": {"spec": {
            "containers": [{"name": "a", "image": "1", "ports": [{"containerPort": 80}],
                            "env": [{"name": "X", "value": "1"}]}],
            "volumes": [{"name": "v", "emptyDir": {}}],
            "tolerations": [{"key": "k"}]
        }}}, "metadata": {"finalizers": ["f1"]}});
        let patch = json!({"spec": {"template": {"spec": {
            "containers": [{"name": "a", "ports": [{"containerPort": 81}],
                            "env": [{"name": "Y", "value": "2"}]},
                           {"name": "b", "image": "2"}],
            "volumes": [{"name": "w", "emptyDir": {}}],
            "tolerations": [{"key": "j"}]
        }}}, "metadata": {"finalizers": ["f2"]}});
        let typed = strategic_merge_typed(Some(deploy), &original, &patch).unwrap();
        assert_eq!(typed, strategic_merge(&original, &patch).unwrap());
        let spec = &typed["spec"]["template"]["spec"];
        assert_eq!(spec["containers"].as_array().unwrap().len(), 2);
        assert_eq!(spec["containers"][0]["ports"].as_array().unwrap().len(), 2);
        assert_eq!(spec["containers"][0]["env"].as_array().unwrap().len(), 2);
        assert_eq!(spec["volumes"].as_array().unwrap().len(), 2);
        assert_eq!(spec["tolerations"], json!([{"key": "j"}]));
        assert_eq!(typed["metadata"]["finalizers"], json!(["f1", "f2"]));
    }
}
