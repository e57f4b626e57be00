//! `meta.k8s.io/v1` Table output (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`), the
//! form `kubectl get` prints from, with upstream's printer columns (`rudder_api::printers`).

use rudder_api::pruned::{self, Keep};
use rudder_api::strategy::Strategy;
use rudder_store::KeyValue;
use serde_json::value::RawValue;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::registry::Res;

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

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn row(printer: &dyn Strategy, mut obj: Value, include: IncludeObject, now: i64) -> Value {
    let mut r = json!({ "cells": printer.cells(&obj, now) });
    if let Some(c) = printer.row_conditions(&obj) {
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

/// One row of a Table straight from a stored object (a resource served in its stored
/// version): only what the printer reads is decoded (`keep`, from
/// [`printers::row_fields`]), the row object is copied from the stored bytes. The bytes are
/// those [`table`] writes for the same object: keys sorted, as a `Value` writes them.
pub fn encode_row(
    res: &Res,
    kv: &KeyValue,
    keep: Keep,
    include: IncludeObject,
    now: i64,
) -> Result<Vec<u8>, ApiError> {
    let bad = |e: serde_json::Error| {
        ApiError::internal(format!(
            "stored object {} is not valid JSON: {e}",
            String::from_utf8_lossy(&kv.key)
        ))
    };
    let obj = pruned::from_slice(&kv.value, keep).map_err(bad)?;
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(b"{\"cells\":");
    let cells = res.strategy.cells(&obj, now);
    serde_json::to_writer(&mut out, &cells).map_err(bad)?;
    if let Some(c) = res.strategy.row_conditions(&obj) {
        out.extend_from_slice(b",\"conditions\":");
        serde_json::to_writer(&mut out, &c).map_err(bad)?;
    }
    match include {
        IncludeObject::None => {}
        IncludeObject::Object => {
            out.extend_from_slice(b",\"object\":");
            out.extend_from_slice(&crate::registry::encode_item(res, kv)?);
        }
        IncludeObject::Metadata => {
            out.extend_from_slice(
                b",\"object\":{\"apiVersion\":\"meta.k8s.io/v1\",\"kind\":\"PartialObjectMetadata\",\"metadata\":",
            );
            // The stored metadata, field by field as stored, with the resourceVersion.
            #[derive(serde::Deserialize)]
            struct Top<'a> {
                #[serde(borrow)]
                metadata: Option<&'a RawValue>,
            }
            let top: Top = serde_json::from_slice(&kv.value).map_err(bad)?;
            let mut meta: std::collections::BTreeMap<String, &RawValue> = match top.metadata {
                Some(m) => serde_json::from_str(m.get()).map_err(bad)?,
                None => Default::default(),
            };
            let rv = RawValue::from_string(format!("\"{}\"", kv.mod_revision)).map_err(bad)?;
            meta.insert("resourceVersion".into(), &rv);
            serde_json::to_writer(&mut out, &meta).map_err(bad)?;
            out.push(b'}');
        }
    }
    out.push(b'}');
    Ok(out)
}

/// A Table of rows made by [`encode_row`], as [`table`] writes it (with column definitions).
pub fn assemble(printer: &dyn Strategy, rows: Vec<Vec<u8>>, list_meta: &Value) -> Vec<u8> {
    let defs = column_definitions(printer);
    let mut out = Vec::with_capacity(rows.iter().map(|r| r.len() + 1).sum::<usize>() + 4096);
    out.extend_from_slice(b"{\"apiVersion\":\"meta.k8s.io/v1\",\"columnDefinitions\":");
    // Writing JSON values to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut out, &defs);
    out.extend_from_slice(b",\"kind\":\"Table\",\"metadata\":");
    let _ = serde_json::to_writer(&mut out, list_meta);
    out.extend_from_slice(b",\"rows\":[");
    for (i, r) in rows.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(r);
    }
    out.extend_from_slice(b"]}");
    crate::error::go_escape(out)
}

fn column_definitions(printer: &dyn Strategy) -> Vec<Value> {
    printer
        .columns()
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
}

/// A Table of `objects` of `group`/`kind`; `list_meta` is the list's metadata
/// (resourceVersion, continue). `with_definitions` is false for watch events after the first,
/// as upstream.
pub fn table(
    printer: &dyn Strategy,
    objects: Vec<Value>,
    list_meta: Value,
    include: IncludeObject,
    with_definitions: bool,
) -> Value {
    let defs: Vec<Value> = if with_definitions {
        column_definitions(printer)
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
            .map(|o| row(printer, o, include, now))
            .collect::<Vec<_>>(),
    })
}
