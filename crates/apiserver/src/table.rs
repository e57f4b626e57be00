//! `meta.k8s.io/v1` Table output (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`), the
//! form `kubectl get` prints from, with upstream's printer columns (`rudder_api::printers`).

use rudder_api::printers;
use serde_json::{json, Value};

/// What `includeObject` asked for in each row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IncludeObject {
    None,
    Metadata,
    Object,
}

impl IncludeObject {
    pub fn parse(v: Option<&str>) -> IncludeObject {
        match v {
            Some("None") => IncludeObject::None,
            Some("Object") => IncludeObject::Object,
            _ => IncludeObject::Metadata,
        }
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn row(group: &str, kind: &str, mut obj: Value, include: IncludeObject, now: i64) -> Value {
    let mut r = json!({ "cells": printers::cells(group, kind, &obj, now) });
    if let Some(c) = printers::row_conditions(group, kind, &obj) {
        rudder_api::value::set(&mut r, &["conditions"], c);
    }
    // The object is moved into the row, not copied: a large list is thousands of them.
    match include {
        IncludeObject::None => {}
        IncludeObject::Metadata => {
            let partial = json!({
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": obj["metadata"].take(),
            });
            rudder_api::value::set(&mut r, &["object"], partial);
        }
        IncludeObject::Object => rudder_api::value::set(&mut r, &["object"], obj),
    }
    r
}

/// A Table of `objects` of `group`/`kind`; `list_meta` is the list's metadata
/// (resourceVersion, continue). `with_definitions` is false for watch events after the first,
/// as upstream.
pub fn table(
    group: &str,
    kind: &str,
    objects: Vec<Value>,
    list_meta: Value,
    include: IncludeObject,
    with_definitions: bool,
) -> Value {
    let defs: Vec<Value> = if with_definitions {
        printers::columns(group, kind)
            .iter()
            .map(|c| {
                json!({
                    "name": c.name,
                    "type": c.type_,
                    "format": c.format,
                    "description": c.description,
                    "priority": c.priority,
                })
            })
            .collect()
    } else {
        Vec::new()
    };
    let now = now();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": defs,
        "rows": objects
            .into_iter()
            .map(|o| row(group, kind, o, include, now))
            .collect::<Vec<_>>(),
    })
}
