//! Strategic merge patch (`application/strategic-merge-patch+json`), the patch kubectl sends for
//! `apply`, `edit`, `label`, `annotate`, `scale` and `set` on built-in kinds.
//!
//! Maps merge recursively (`null` deletes a key). Lists with a merge key merge element by
//! element (`$patch: delete` in an element removes it); lists with strategy "merge" and no key
//! (finalizers) take the union; other lists are replaced. Directives: `$patch: replace|delete`
//! on maps, `$retainKeys`, `$setElementOrder/<list>`, `$deleteFromPrimitiveList/<list>`.
//! The merge keys are upstream's `patchMergeKey` tags for the kinds served; a test in
//! [`crate::openapi`] checks them against the patch metadata the OpenAPI documents publish.

use serde_json::{Map, Value};

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

fn directive_key(k: &str) -> bool {
    k.starts_with('$')
}

/// Applies `patch` to `original`; errors name what was malformed.
pub fn strategic_merge(original: &Value, patch: &Value) -> Result<Value, String> {
    match (original, patch) {
        (Value::Object(o), Value::Object(p)) => {
            merge_map(o, p, "").map(|m| m.map_or(Value::Null, Value::Object))
        }
        (_, Value::Object(p)) => {
            merge_map(&Map::new(), p, "").map(|m| m.map_or(Value::Null, Value::Object))
        }
        _ => Err("a strategic merge patch must be a JSON object".into()),
    }
}

/// Returns `None` when the patch deletes the whole map (`$patch: delete`).
fn merge_map(
    orig: &Map<String, Value>,
    patch: &Map<String, Value>,
    parent: &str,
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
        let merged = match (out.get(k), pv) {
            (Some(Value::Object(o)), Value::Object(p)) => match merge_map(o, p, k)? {
                Some(m) => Value::Object(m),
                None => {
                    out.remove(k);
                    continue;
                }
            },
            (None, Value::Object(p)) => match merge_map(&Map::new(), p, k)? {
                Some(m) => Value::Object(m),
                None => continue,
            },
            (Some(Value::Array(o)), Value::Array(p)) => Value::Array(merge_list(o, p, parent, k)?),
            (None, Value::Array(p)) => Value::Array(merge_list(&[], p, parent, k)?),
            _ => pv.clone(),
        };
        out.insert(k.clone(), merged);
    }
    // $deleteFromPrimitiveList/<field>: remove the values from that primitive list.
    for (k, v) in patch {
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            let gone = v.as_array().ok_or_else(|| format!("{k} must be a list"))?;
            if let Some(Value::Array(list)) = out.get_mut(field) {
                list.retain(|x| !gone.contains(x));
            }
        }
    }
    // $setElementOrder/<field>: the order of the patched list.
    for (k, v) in patch {
        if let Some(field) = k.strip_prefix("$setElementOrder/") {
            let order = v.as_array().ok_or_else(|| format!("{k} must be a list"))?;
            if let Some(Value::Array(list)) = out.get_mut(field) {
                reorder(list, order, list_rule(parent, field));
            }
        }
    }
    if let Some(keep) = patch.get("$retainKeys") {
        let keep: Vec<&str> = keep
            .as_array()
            .ok_or("$retainKeys must be a list")?
            .iter()
            .filter_map(Value::as_str)
            .collect();
        out.retain(|k, _| keep.contains(&k.as_str()));
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
) -> Result<Vec<Value>, String> {
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
    match list_rule(parent, field) {
        ListRule::Replace => Ok(patch.to_vec()),
        ListRule::Union => {
            let mut out = orig.to_vec();
            for p in patch {
                if !out.contains(p) {
                    out.push(p.clone());
                }
            }
            Ok(out)
        }
        ListRule::Key(key) => {
            if patch.iter().any(|e| !e.is_object()) || orig.iter().any(|e| !e.is_object()) {
                return Ok(patch.to_vec());
            }
            let mut out: Vec<Value> = orig.to_vec();
            for p in patch {
                let pm = p.as_object().expect("checked: objects");
                let Some(k) = key_of(p, key) else {
                    return Err(format!(
                        "map: {p} does not contain declared merge key: {key}"
                    ));
                };
                let pos = out.iter().position(|e| key_of(e, key) == Some(k));
                let deleting = pm.get("$patch").and_then(Value::as_str) == Some("delete");
                match (pos, deleting) {
                    (Some(i), true) => {
                        out.remove(i);
                    }
                    (None, true) => {}
                    (Some(i), false) => {
                        let om = out[i].as_object().cloned().unwrap_or_default();
                        match merge_map(&om, pm, field)? {
                            Some(m) => out[i] = Value::Object(m),
                            None => {
                                out.remove(i);
                            }
                        }
                    }
                    (None, false) => {
                        if let Some(m) = merge_map(&Map::new(), pm, field)? {
                            out.push(Value::Object(m));
                        }
                    }
                }
            }
            Ok(out)
        }
    }
}

/// Orders `list` as `order` says (elements it does not name keep their place after those it does).
fn reorder(list: &mut Vec<Value>, order: &[Value], rule: ListRule) {
    let rank = |e: &Value| -> usize {
        let pos = match rule {
            ListRule::Key(k) => order
                .iter()
                .position(|o| o.get(k).is_some() && o.get(k) == e.get(k)),
            _ => order.iter().position(|o| o == e),
        };
        pos.unwrap_or(usize::MAX)
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
    fn other_lists_replace() {
        let o = json!({"spec": {"args": ["a", "b"]}});
        let p = json!({"spec": {"args": ["c"]}});
        assert_eq!(
            strategic_merge(&o, &p).unwrap(),
            json!({"spec": {"args": ["c"]}})
        );
    }
}
