//! Decoding only part of a JSON document into a `Value`: the fields a caller will read, the rest
//! skipped without being built (no allocation for it). A Table row of a pod reads a dozen
//! fields of a kilobyte of JSON; building the whole tree and dropping it costs more than all
//! the rest of the list.

use std::fmt;

use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};

/// What to keep of a JSON value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keep {
    /// All of it.
    All,
    /// Of an object, these fields, each with what to keep of it; of an array, that of each
    /// element; a scalar as it is.
    Only(&'static [(&'static str, Keep)]),
    /// The same, but every field that is not listed is kept whole.
    Each(&'static [(&'static str, Keep)]),
}

/// Decodes `bytes`, keeping what `keep` says. Errors are serde_json's, as for a full decode.
pub fn from_slice(bytes: &[u8], keep: Keep) -> serde_json::Result<Value> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let v = Pruned(keep).deserialize(&mut de)?;
    de.end()?;
    Ok(v)
}

struct Pruned(Keep);

impl<'de> DeserializeSeed<'de> for Pruned {
    type Value = Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        match self.0 {
            Keep::All => Value::deserialize(d),
            Keep::Only(fields) => d.deserialize_any(PrunedVisitor(fields, false)),
            Keep::Each(fields) => d.deserialize_any(PrunedVisitor(fields, true)),
        }
    }
}

/// The fields to prune, and whether the others are kept whole (or skipped).
struct PrunedVisitor(&'static [(&'static str, Keep)], bool);

/// A map key matched against the kept fields without allocating: the index of the field.
struct FieldSeed(&'static [(&'static str, Keep)]);

impl<'de> DeserializeSeed<'de> for FieldSeed {
    type Value = Option<usize>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Option<usize>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for FieldSeed {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Option<usize>, E> {
        Ok(self.0.iter().position(|(name, _)| *name == v))
    }
}

impl<'de> Visitor<'de> for PrunedVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        let each = if self.1 {
            Keep::Each(self.0)
        } else {
            Keep::Only(self.0)
        };
        while let Some(v) = seq.next_element_seed(Pruned(each))? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        if self.1 {
            // Every key is kept: read it as it is.
            while let Some(key) = map.next_key::<String>()? {
                let keep = self
                    .0
                    .iter()
                    .find(|(name, _)| *name == key)
                    .map_or(Keep::All, |(_, k)| *k);
                let v = map.next_value_seed(Pruned(keep))?;
                out.insert(key, v);
            }
            return Ok(Value::Object(out));
        }
        while let Some(found) = map.next_key_seed(FieldSeed(self.0))? {
            match found.and_then(|i| self.0.get(i)) {
                Some((name, keep)) => {
                    let v = map.next_value_seed(Pruned(*keep))?;
                    out.insert((*name).to_string(), v);
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const KEEP: Keep = Keep::Only(&[
        ("a", Keep::All),
        (
            "b",
            Keep::Only(&[("x", Keep::All), ("list", Keep::Only(&[("n", Keep::All)]))]),
        ),
    ]);

    #[test]
    fn keeps_only_what_it_is_told() {
        let doc = json!({
            "a": {"deep": [1, 2, {"z": null}]},
            "b": {"x": "s", "y": 5, "list": [{"n": 1, "m": 2}, {"m": 3}]},
            "c": [1, 2, 3],
        });
        let v = from_slice(&serde_json::to_vec(&doc).unwrap(), KEEP).unwrap();
        assert_eq!(
            v,
            json!({
                "a": {"deep": [1, 2, {"z": null}]},
                "b": {"x": "s", "list": [{"n": 1}, {}]},
            })
        );
    }

    #[test]
    fn each_keeps_the_fields_it_does_not_name() {
        const EACH: Keep = Keep::Each(&[("m", Keep::Only(&[("name", Keep::All)]))]);
        let doc = json!({"m": {"name": "n", "big": [1, 2]}, "data": {"k": "v"}});
        let v = from_slice(&serde_json::to_vec(&doc).unwrap(), EACH).unwrap();
        assert_eq!(v, json!({"m": {"name": "n"}, "data": {"k": "v"}}));
    }

    #[test]
    fn scalars_where_objects_are_expected_are_kept_and_bad_json_fails() {
        let v = from_slice(br#"{"b": 7, "a": "q\u00e9"}"#, KEEP).unwrap();
        assert_eq!(v, json!({"b": 7, "a": "qé"}));
        assert!(from_slice(br#"{"a": 1"#, KEEP).is_err());
        assert!(from_slice(br#"{"a": 1} x"#, KEEP).is_err());
        assert_eq!(from_slice(b"[1, 2]", Keep::All).unwrap(), json!([1, 2]));
    }
}
