//! A bounded, seeded fuzz of the patch paths: random JSON patches, merge patches, strategic
//! merge patches and server-side apply configurations against random but valid objects of
//! every kind with a schema. For every case:
//! - nothing panics;
//! - the work stays within its budgets, asserted on sizes (never on wall clock): a patched
//!   document is no larger than the original plus the patch (plus the copy budget for JSON
//!   patches), and an applied object's fields no larger than the live object's plus the
//!   configuration's;
//! - the result, after the registry's type check, decodes as the kind's k8s-openapi type, or
//!   the request is refused with a 4xx status (the one exception is upstream's: an apply
//!   configuration that cannot be merged, duplicate list keys, is a 500 there as here).
//!
//! The cases are fixed by the seed and the counts below, so a failure reproduces; the
//! message names the kind, the case and the patch.

use std::panic::{catch_unwind, AssertUnwindSafe};

use rudder_api::managed;
use rudder_api::schema::sample::{kinds, wild, Rng, Sampler};
use rudder_api::schema::{self, Type};
use serde_json::{json, Map, Value};

use super::*;

/// Cases of each patch type for each kind, and the seed: fixed, so that CI runs the same
/// cases every time. RUDDER_FUZZ_ROUNDS and RUDDER_FUZZ_SEED change them for a longer hunt
/// by hand.
const ROUNDS: usize = 16;
const SEED: u64 = 0x005e_ed0f_9a7c_11e5;

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
/// Strings of the generated objects: few, so list keys and names meet.
const STRINGS: &[&str] = &["a", "b", "s"];

fn sampler(rng: &mut Rng, rate: u64) -> Sampler<'_> {
    Sampler {
        rng,
        rate,
        strings: STRINGS,
        max_len: 4,
    }
}

/// Every JSON pointer in `v` (at most `cap`), the root included.
fn pointers(v: &Value, cap: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![(String::new(), v)];
    while let Some((p, v)) = stack.pop() {
        if out.len() >= cap {
            break;
        }
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    let k = k.replace('~', "~0").replace('/', "~1");
                    stack.push((format!("{p}/{k}"), x));
                }
            }
            Value::Array(a) => {
                for (i, x) in a.iter().enumerate() {
                    stack.push((format!("{p}/{i}"), x));
                }
            }
            _ => {}
        }
        out.push(p);
    }
    out
}

/// A path for a JSON patch operation: mostly one that exists, sometimes a new key or an
/// array's end under one that exists, sometimes nonsense.
fn op_path(rng: &mut Rng, paths: &[String]) -> String {
    let p = rng.pick(paths).clone();
    match rng.below(10) {
        0..=5 => p,
        6 => format!("{p}/-"),
        7 => format!("{p}/new"),
        8 => format!("{p}/{}", rng.below(4)),
        _ => rng
            .pick(&["", "/", "/~2", "/a/b/c", "/metadata/-", "/0", "metadata"])
            .to_string(),
    }
}

/// A value for an operation at `path`: what the donor object has there (well typed), or any
/// value.
fn op_value(rng: &mut Rng, donor: &Value, path: &str) -> Value {
    match donor.pointer(path) {
        Some(v) if rng.below(3) != 0 => v.clone(),
        _ => wild(rng),
    }
}

fn json_patch_body(rng: &mut Rng, original: &Value, donor: &Value) -> Value {
    let paths = pointers(original, 400);
    let n = 1 + rng.below(8);
    let mut ops = Vec::new();
    // Sometimes a copy bomb: the same subtree copied into itself again and again.
    if rng.below(8) == 0 {
        let from = rng.pick(&paths).clone();
        for i in 0..(20 + rng.below(20)) {
            ops.push(json!({"op": "copy", "from": from, "path": format!("{from}/c{i}")}));
        }
    }
    for _ in 0..n {
        let path = op_path(rng, &paths);
        let op = match rng.below(7) {
            0 | 1 => json!({"op": "add", "path": path, "value": op_value(rng, donor, &path)}),
            2 => json!({"op": "remove", "path": path}),
            3 => json!({"op": "replace", "path": path, "value": op_value(rng, donor, &path)}),
            4 => json!({"op": "move", "from": rng.pick(&paths).clone(), "path": path}),
            5 => json!({"op": "copy", "from": rng.pick(&paths).clone(), "path": path}),
            _ => json!({"op": "test", "path": path, "value": op_value(rng, original, &path)}),
        };
        ops.push(op);
    }
    Value::Array(ops)
}

/// The donor with some of the original's fields set to null (deleted by the merge).
fn merge_patch_body(rng: &mut Rng, original: &Value, donor: &Value) -> Value {
    let mut patch = donor.clone();
    for p in pointers(original, 400) {
        if p.is_empty() || rng.below(6) != 0 {
            continue;
        }
        // Only where the patch has objects down to the parent (a merge patch cannot reach
        // into lists).
        let (parent, key) = p.rsplit_once('/').unwrap_or(("", &p));
        if let Some(Value::Object(m)) = patch.pointer_mut(parent) {
            let key = key.replace("~1", "/").replace("~0", "~");
            m.insert(key, Value::Null);
        }
    }
    patch
}

/// A strategic merge patch: a merge patch with the directives sprinkled in, at random.
fn strategic_patch_body(rng: &mut Rng, original: &Value, donor: &Value) -> Value {
    let mut patch = merge_patch_body(rng, original, donor);
    for p in pointers(&patch.clone(), 400) {
        if rng.below(4) != 0 {
            continue;
        }
        let Some(target) = patch.pointer_mut(&p) else {
            continue;
        };
        match target {
            Value::Object(m) => {
                let keys: Vec<String> = m.keys().cloned().collect();
                let lists: Vec<String> = m
                    .iter()
                    .filter(|(_, v)| v.is_array())
                    .map(|(k, _)| k.clone())
                    .collect();
                match rng.below(6) {
                    0 => {
                        let d = rng.pick(&["delete", "replace", "merge", "bogus"]);
                        m.insert("$patch".into(), json!(d));
                    }
                    1 => {
                        let retained: Vec<&String> =
                            keys.iter().filter(|_| rng.below(2) == 0).collect();
                        m.insert("$retainKeys".into(), json!(retained));
                    }
                    2 if !lists.is_empty() => {
                        let l = rng.pick(&lists).clone();
                        let order = m.get(&l).cloned().unwrap_or(Value::Null);
                        m.insert(format!("$setElementOrder/{l}"), order);
                    }
                    3 if !lists.is_empty() => {
                        let l = rng.pick(&lists).clone();
                        m.insert(
                            format!("$deleteFromPrimitiveList/{l}"),
                            json!([rng.pick(STRINGS)]),
                        );
                    }
                    4 => {
                        m.insert("$setElementOrder/x".into(), wild(rng));
                    }
                    _ => {}
                }
            }
            Value::Array(items) => match rng.below(3) {
                0 => items.push(json!({"$patch": "delete", "name": rng.pick(STRINGS)})),
                1 => items.push(json!({"$patch": "replace"})),
                _ => items.push(wild(rng)),
            },
            _ => {}
        }
    }
    patch
}

/// `v` without `metadata.managedFields`.
fn plain(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("managedFields");
    }
    v
}

fn size(v: &Value) -> usize {
    json_size(v, usize::MAX)
}

/// What the registry does with a patched document before it stores it: the type check (a
/// refusal is a 400), then the typed decoding the store requires.
fn check_result(g: &str, v: &str, k: &str, mut doc: Value) -> Result<Outcome, String> {
    let Some(m) = doc.as_object_mut() else {
        // `{"$patch": "delete"}` at the top, a JSON patch replacing the root: the registry
        // refuses what is not an object (400).
        return Ok(Outcome::Refused);
    };
    m.insert(
        "apiVersion".into(),
        json!(rudder_api::catalogue::api_version(g, v)),
    );
    m.insert("kind".into(), json!(k));
    if schema::check_types(g, v, k, &mut doc).is_err() {
        return Ok(Outcome::Refused); // 400
    }
    match schema::decodes_as_type(g, v, k, &doc) {
        None | Some(Ok(())) => Ok(Outcome::Stored),
        // k8s-openapi requires the few fields Go's decoder zero-fills (times in conditions),
        // which upstream's validation refuses; the registry refuses them at encoding (400).
        Some(Err(e))
            if e.starts_with("missing field")
                || e.starts_with("invalid type: null, expected a timestamp") =>
        {
            Ok(Outcome::Refused)
        }
        Some(Err(e)) => Err(format!(
            "passed the type check but does not decode as {k}: {e}\n{doc}"
        )),
    }
}

/// One case of a PATCH (JSON, merge, strategic): the body parsed as the handler parses it,
/// applied as the registry applies it.
fn patch_case(
    (g, v, k): (&str, &str, &str),
    ty: Option<Type>,
    content_type: &str,
    original: &Value,
    body: &Value,
) -> Result<Outcome, String> {
    let bytes = serde_json::to_vec(body).expect("encode");
    let patch = match Patch::parse(content_type, &bytes) {
        Ok(p) => p,
        Err(e) if (400..500).contains(&e.code) => return Ok(Outcome::Refused),
        Err(e) => return Err(format!("parse answered {}: {}", e.code, e.message)),
    };
    match patch.apply_to_typed(ty, original) {
        Ok(doc) => {
            let budget = size(original)
                + size(body)
                + if content_type == "application/json-patch+json" {
                    MAX_COPY_BYTES
                } else {
                    0
                };
            let got = size(&doc);
            if got > budget || got > MAX_PATCHED_BYTES {
                return Err(format!(
                    "patched document of {got} bytes from {} + a patch of {}",
                    size(original),
                    size(body)
                ));
            }
            check_result(g, v, k, doc)
        }
        Err(e) if (400..500).contains(&e.code) => Ok(Outcome::Refused),
        Err(e) => Err(format!("answered {}: {}", e.code, e.message)),
    }
}

/// How a case ended, counted so that the run shows it reached every path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    /// Patched or applied, typed, and within budget: what the registry would store.
    Stored,
    /// Refused with a 4xx status (parse, patch, type check).
    Refused,
    /// An apply that conflicts with the first manager's fields (409).
    Conflict,
    /// An apply configuration with duplicate list keys (500, as upstream).
    Upstream500,
}

fn writer<'a>(manager: &'a str, api_version: &'a str) -> managed::Writer<'a> {
    managed::Writer {
        manager,
        api_version,
        subresource: "",
        now: "2026-01-02T03:04:05Z",
        reset: managed::Reset::None,
    }
}

/// One case of server-side apply: `original` applied by one manager, then `config` by
/// another (forced or not), as the registry does after its type check of the configuration.
fn apply_case(
    (g, v, k): (&str, &str, &str),
    ty: Option<Type>,
    original: &Value,
    config: &Value,
    force: bool,
) -> Result<Outcome, String> {
    let api_version = rudder_api::catalogue::api_version(g, v);
    let mut config = config.clone();
    if schema::check_types(g, v, k, &mut config).is_err() {
        return Ok(Outcome::Refused); // 400
    }
    // Upstream answers 500 for these (structured-merge-diff's "failed to create typed patch
    // object"), and so does the registry.
    let upstream_500 = |why: &str| {
        why.starts_with("duplicate entries for key")
            || why.starts_with("associative list with keys has an element that omits")
    };
    let live = match managed::apply(ty, None, original, &writer("first", &api_version), false) {
        Ok(live) => live,
        Err(managed::ApplyError::Invalid(why)) if upstream_500(&why) => original.clone(),
        Err(e) => return Err(format!("first apply: {e:?}")),
    };
    match managed::apply(
        ty,
        Some(&live),
        &config,
        &writer("second", &api_version),
        force,
    ) {
        Ok(obj) => {
            let (fields, whole) = (size(&plain(&obj)), size(&obj));
            let budget = size(&plain(&live)) + size(&config);
            if fields > budget {
                return Err(format!(
                    "applied object of {fields} bytes from {} + {}",
                    size(&plain(&live)),
                    size(&config)
                ));
            }
            // managedFields: a few entries, each a field set no larger than a small multiple
            // of the fields it names.
            let managed = whole - fields;
            if managed > 8 * budget + 4096 {
                return Err(format!("managedFields of {managed} bytes for {budget}"));
            }
            check_result(g, v, k, obj)
        }
        Err(managed::ApplyError::Conflicts(_)) => Ok(Outcome::Conflict), // 409
        Err(managed::ApplyError::Invalid(why)) if upstream_500(&why) => Ok(Outcome::Upstream500),
        Err(managed::ApplyError::Invalid(why)) => Err(format!("apply refused: {why}")),
    }
}

#[test]
fn patches_of_every_kind_stay_typed_and_bounded() {
    let mut rng = Rng(setting("RUDDER_FUZZ_SEED", SEED).max(1));
    let rounds = setting("RUDDER_FUZZ_ROUNDS", ROUNDS as u64) as usize;
    let mut failures = Vec::new();
    let mut outcomes = std::collections::BTreeMap::<(bool, Outcome), usize>::new();
    let (mut cases, mut applied) = (0usize, 0usize);
    for (g, v, k) in kinds() {
        let Some(ty) = Type::of_kind(&g, &v, &k) else {
            continue;
        };
        let gvk = (g.as_str(), v.as_str(), k.as_str());
        for round in 0..rounds {
            let mut original = sampler(&mut rng, 1_000_000)
                .object(&g, &v, &k)
                .expect("a kind with a schema");
            // A valid object, as stored: the type check passes and the name is set.
            if schema::check_types(&g, &v, &k, &mut original).is_err() {
                continue;
            }
            if let Some(m) = original.as_object_mut() {
                let meta = m.entry("metadata").or_insert_with(|| json!({}));
                if let Some(meta) = meta.as_object_mut() {
                    meta.insert("name".into(), json!("fuzz"));
                    meta.remove("managedFields");
                }
            }
            // Donors: well typed on even rounds, with mutations on odd ones.
            let rate = if round % 2 == 0 { 1_000_000 } else { 8 };
            let donor = sampler(&mut rng, rate)
                .object(&g, &v, &k)
                .unwrap_or_else(|| Value::Object(Map::new()));
            let bodies = [
                (
                    "application/json-patch+json",
                    json_patch_body(&mut rng, &original, &donor),
                ),
                (
                    "application/merge-patch+json",
                    merge_patch_body(&mut rng, &original, &donor),
                ),
                (
                    "application/strategic-merge-patch+json",
                    strategic_patch_body(&mut rng, &original, &donor),
                ),
            ];
            for (content_type, body) in &bodies {
                cases += 1;
                let r = catch_unwind(AssertUnwindSafe(|| {
                    patch_case(gvk, Some(ty), content_type, &original, body)
                }))
                .unwrap_or_else(|_| Err("panicked".into()));
                match r {
                    Ok(o) => *outcomes.entry((false, o)).or_default() += 1,
                    Err(e) => failures.push(format!(
                        "{g}/{v} {k} round {round} {content_type}: {e}\noriginal: {original}\npatch: {body}"
                    )),
                }
            }
            let mut config = donor.clone();
            if let Some(meta) = config
                .as_object_mut()
                .map(|m| m.entry("metadata").or_insert_with(|| json!({})))
                .and_then(Value::as_object_mut)
            {
                meta.insert("name".into(), json!("fuzz"));
                meta.remove("managedFields");
            }
            let force = rng.below(2) == 0;
            cases += 1;
            applied += 1;
            let r = catch_unwind(AssertUnwindSafe(|| {
                apply_case(gvk, Some(ty), &original, &config, force)
            }))
            .unwrap_or_else(|_| Err("panicked".into()));
            match r {
                Ok(o) => *outcomes.entry((true, o)).or_default() += 1,
                Err(e) => failures.push(format!(
                    "{g}/{v} {k} round {round} apply (force {force}): {e}\nlive: {original}\nconfig: {config}"
                )),
            }
        }
    }
    eprintln!("{cases} cases ({applied} applies): {outcomes:?}");
    assert!(
        rounds < ROUNDS || (cases > 3000 && applied > 750),
        "too few cases: {cases}"
    );
    // Every path was reached: patches and applies that would be stored, refusals, conflicts.
    for want in [
        (false, Outcome::Stored),
        (false, Outcome::Refused),
        (true, Outcome::Stored),
        (true, Outcome::Refused),
        (true, Outcome::Conflict),
    ] {
        assert!(
            outcomes.get(&want).is_some_and(|&n| n * 20 > applied),
            "too few {want:?} (apply?, outcome): {outcomes:?}"
        );
    }
    assert!(
        failures.is_empty(),
        "{} of {cases} cases failed; the first:\n{}",
        failures.len(),
        failures
            .iter()
            .take(5)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n\n")
    );
}
