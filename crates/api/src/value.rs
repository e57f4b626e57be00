//! Writing into JSON objects without panicking: assigning through serde_json's `IndexMut`
//! panics when a value on the way is a string or a number, which posted or stored data could
//! make it.
//! [`set`] writes only where the path is made of objects (or nothing yet), and a test over
//! the sources (`tests/no_index_assignment.rs`) keeps index assignment out of the API crates.

use serde_json::{Map, Value};

/// Sets `v.path = x`, creating the objects missing along the way (a `null` is replaced by
/// one). Where something on the way is not an object, nothing is written.
pub fn set<K: AsRef<str>>(v: &mut Value, path: &[K], x: Value) {
    let Some((last, parents)) = path.split_last() else {
        *v = x;
        return;
    };
    let mut at = v;
    for key in parents {
        let Some(next) = object(at).map(|m| m.entry(key.as_ref()).or_insert(Value::Null)) else {
            return;
        };
        at = next;
    }
    if let Some(m) = object(at) {
        m.insert(last.as_ref().to_string(), x);
    }
}

/// Removes `v.path` where the path is made of objects; anything else is left as it is.
pub fn remove<K: AsRef<str>>(v: &mut Value, path: &[K]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut at = Some(v);
    for key in parents {
        at = at.and_then(|a| a.get_mut(key.as_ref()));
    }
    if let Some(m) = at.and_then(Value::as_object_mut) {
        m.remove(last.as_ref());
    }
}

/// The object `v` is, making one of a `null`; `None` for anything else.
fn object(v: &mut Value) -> Option<&mut Map<String, Value>> {
    if v.is_null() {
        *v = Value::Object(Map::new());
    }
    v.as_object_mut()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sets_through_objects_and_nulls_only() {
        let mut v = json!({"a": {"b": 1}, "s": "text", "n": null});
        set(&mut v, &["a", "c"], json!(2));
        set(&mut v, &["n", "x", "y"], json!(3));
        set(&mut v, &["new", "z"], json!(4));
        set(&mut v, &["s", "x"], json!(5));
        assert_eq!(
            v,
            json!({"a": {"b": 1, "c": 2}, "s": "text", "n": {"x": {"y": 3}}, "new": {"z": 4}})
        );
        remove(&mut v, &["a", "b"]);
        remove(&mut v, &["s", "x"]);
        remove(&mut v, &["missing", "x"]);
        assert_eq!(v["a"], json!({"c": 2}));
        assert_eq!(v["s"], json!("text"));
        let mut top = json!("scalar");
        set(&mut top, &["a"], json!(1));
        assert_eq!(top, json!("scalar"));
    }
}
