//! A lint over the API crates' sources: no `v["a"] = x` or `v[a][b] = x`. serde_json's
//! `IndexMut` panics when a value on the way is a string or a number, which a request or a
//! stored object could make it; `rudder_api::value::set` writes only through objects.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Whether a line assigns through a string index (`["…"] =`) or a chain of indexes
/// (`][…] =`).
fn index_assignment(line: &str) -> bool {
    let code = line.split("//").next().unwrap_or("");
    let Some(eq) = code.find(" = ") else {
        return false;
    };
    let lhs = code[..eq].trim_end();
    if !lhs.ends_with(']')
        || lhs.starts_with("let ")
        || lhs.contains("const ")
        || lhs.contains("static ")
    {
        return false;
    }
    lhs.ends_with("\"]") || lhs.contains("][")
}

#[test]
fn api_crates_do_not_assign_through_json_indexes() {
    let root = manifest_dir().join("..");
    let mut files = Vec::new();
    for krate in ["api/src", "apiserver/src"] {
        rust_files(&root.join(krate), &mut files);
    }
    let mut found = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).expect("read source");
        // Tests may index what they just built.
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        for (i, line) in code.lines().enumerate() {
            if index_assignment(line) {
                found.push(format!("{}:{}: {}", f.display(), i + 1, line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "use rudder_api::value::set instead of index assignment:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_lint_sees_what_it_should() {
    assert!(index_assignment(r#"    obj["spec"] = json!(1);"#));
    assert!(index_assignment(
        r#"    new["metadata"]["annotations"][k] = v.clone();"#
    ));
    assert!(!index_assignment(r#"    out[i] = Value::Object(m);"#));
    assert!(!index_assignment(r#"    let x = obj["spec"]["a"] == 1;"#));
    assert!(!index_assignment(r#"    // obj["a"] = 1;"#));
}

/// The package's directory, from the environment the test runs in (cargo and nextest set
/// it): a test binary that another checkout sharing the target directory built, and that
/// cargo takes for fresh here, still reads this checkout's files.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| env!("CARGO_MANIFEST_DIR").into(), Into::into)
}
