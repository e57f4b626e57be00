//! Writes `crates/api/src/protobuf/table.rs`, the message table the protobuf decoder
//! (`rudder_api::protobuf`) walks. Run by hand when the Kubernetes API version moves:
//!
//! ```text
//! cargo fetch   # makes sure k8s-pb (a dev-dependency) and k8s-openapi are unpacked
//! cargo run --release -p rudder-api --example gen_protobuf_table \
//!     [-- [--go-src GO_SRC_DIR] [K8S_PB_DIR K8S_OPENAPI_DIR]]
//! ```
//!
//! Sources, all read as text (no build of any of them is needed):
//! - **k8s-pb** (prost structs generated from upstream `generated.proto`): message names,
//!   field numbers, wire kinds (`string`, `int32`, `message`, `btree_map = "string, …"`, …),
//!   repeated or not, and message types of fields.
//! - **k8s-openapi** (every `v1_*` module it ships; serde names from upstream OpenAPI): the JSON
//!   name of every field, Kubernetes' spelling of type names (`CSIDriver`, not `CsiDriver`) and
//!   the kinds with their `apiVersion`. A protobuf field with no JSON counterpart in k8s-openapi
//!   whose message's fields all appear in the parent's JSON is an inline (`json:",inline"`)
//!   embedded struct; the generator prints every inline and every name it had to guess.
//! - **`src/protobuf/go_fields.txt`**: for every field of every message, what upstream's Go
//!   struct field is: pointer, slice, map or value, `omitempty` or not, inline or not, and its
//!   JSON name (which wins over the names above; the generator prints each it changes). The
//!   decoder needs these to turn the zero values Go writes into the JSON upstream stores.
//!   `--go-src GO_SRC_DIR` rewrites the file first from the Go sources of the Kubernetes
//!   release k8s-pb was generated from (its `justfile` names it): a directory holding the trees
//!   of kubernetes/api, apimachinery, apiextensions-apiserver, kube-aggregator and metrics at
//!   tag `kubernetes-1.X.Y` (e.g. `git archive kubernetes-1.35.0 | tar -x -C DIR/api`). Every
//!   package with a `generated.proto` is read: its `package` line names the messages, the
//!   `protobuf:"…,N,…"` struct tags give the field numbers, the `json:"…"` tags and Go types
//!   the rest.
//!
//! The generator fails if the sources disagree (a field without Go facts, a Go field whose
//! shape does not fit its protobuf field, an inline one side only). The table is plain data:
//! no dependency of the normal build on any of these crates or sources.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

/// A field parsed from k8s-pb.
#[derive(Clone, Debug)]
struct PbField {
    rust_name: String,
    tag: u32,
    /// `string`, `bytes`, `bool`, `int32`, `int64`, `double`, `message`.
    scalar: String,
    repeated: bool,
    /// Map with string keys; `scalar` is the value kind.
    map: bool,
    /// Fully qualified module path (`api::apps::v1::Deployment`) of a message-typed value.
    msg_path: Option<String>,
}

#[derive(Clone, Debug)]
struct PbStruct {
    module: Vec<String>,
    name: String,
    fields: Vec<PbField>,
    /// k8s-pb's own `Resource` impl: (apiVersion, kind).
    resource: Option<(String, String)>,
}

/// A struct parsed from k8s-openapi.
#[derive(Clone, Debug, Default)]
struct OaStruct {
    name: String,
    /// JSON name → Rust field type (text).
    json: BTreeMap<String, String>,
    /// normalized JSON name → JSON name.
    by_norm: HashMap<String, String>,
    resource: Option<(String, String)>,
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let go_src = match args.iter().position(|a| a == "--go-src") {
        Some(i) if i + 1 < args.len() => {
            let dir = PathBuf::from(args.remove(i + 1));
            args.remove(i);
            Some(dir)
        }
        Some(_) => fail("--go-src needs a directory"),
        None => None,
    };
    let (pb_dir, oa_dir) = match args.as_slice() {
        [a, b] => (PathBuf::from(a), PathBuf::from(b)),
        [] => (
            find_crate_src("k8s-pb-0.9."),
            find_crate_src("k8s-openapi-0.29."),
        ),
        _ => fail("usage: gen_protobuf_table [--go-src GO_SRC_DIR] [K8S_PB_DIR K8S_OPENAPI_DIR]"),
    };
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = manifest.join("src/protobuf/table.rs");
    let facts_path = manifest.join("src/protobuf/go_fields.txt");

    let pb = parse_k8s_pb(&pb_dir.join("src"));
    let oa = parse_k8s_openapi(&oa_dir.join("src"));
    if let Some(dir) = go_src {
        let text = go_facts_file(&parse_go_sources(&dir), &pb, &dir);
        if let Err(e) = fs::write(&facts_path, text.as_bytes()) {
            fail(&format!("writing {}: {e}", facts_path.display()));
        }
        eprintln!("wrote {}", facts_path.display());
    }
    let facts = read_go_facts(&facts_path);
    let source = generate(&pb, &oa, &facts);
    if let Err(e) = fs::write(&out, source.as_bytes()) {
        fail(&format!("writing {}: {e}", out.display()));
    }
    // Leave the file as `cargo fmt` would.
    match std::process::Command::new("rustfmt")
        .args(["--edition", "2021"])
        .arg(&out)
        .status()
    {
        Ok(s) if s.success() => {}
        other => eprintln!("warning: rustfmt on {} failed: {other:?}", out.display()),
    }
    let size = fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
    eprintln!("wrote {} ({size} bytes)", out.display());
}

fn fail(msg: &str) -> ! {
    eprintln!("gen_protobuf_table: {msg}");
    std::process::exit(1)
}

/// `$CARGO_HOME/registry/src/*/<prefix>*`, newest version last by name.
fn find_crate_src(prefix: &str) -> PathBuf {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_else(|| fail("neither CARGO_HOME nor HOME is set"));
    let mut found = Vec::new();
    for index in read_dir(&home.join("registry/src")) {
        for krate in read_dir(&index) {
            let name = krate.file_name().map(|n| n.to_string_lossy().into_owned());
            if name.is_some_and(|n| n.starts_with(prefix)) {
                found.push(krate);
            }
        }
    }
    found.sort();
    found.pop().unwrap_or_else(|| {
        fail(&format!(
            "{prefix}* not in the cargo registry; run cargo fetch"
        ))
    })
}

fn read_dir(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = match fs::read_dir(dir) {
        Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(e) => fail(&format!("reading {}: {e}", dir.display())),
    };
    v.sort();
    v
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| fail(&format!("reading {}: {e}", path.display())))
}

// ---------------------------------------------------------------------------------------------
// k8s-pb

fn parse_k8s_pb(src: &Path) -> Vec<PbStruct> {
    let mut out = Vec::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for p in read_dir(&dir) {
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n == "mod.rs") {
                let rel = p.parent().and_then(|d| d.strip_prefix(src).ok());
                let module: Vec<String> = rel
                    .map(|r| {
                        r.components()
                            .map(|c| c.as_os_str().to_string_lossy().into_owned())
                            .collect()
                    })
                    .unwrap_or_default();
                // Upstream's test-only API group.
                if !module.iter().any(|m| m == "testapigroup") {
                    parse_pb_file(&read(&p), &module, &mut out);
                }
            }
        }
    }
    out.sort_by(|a, b| (&a.module, &a.name).cmp(&(&b.module, &b.name)));
    out
}

fn parse_pb_file(text: &str, module: &[String], out: &mut Vec<PbStruct>) {
    let lines: Vec<&str> = text.lines().collect();
    let mut resources: HashMap<String, (String, String)> = HashMap::new();
    let mut i = 0;
    let mut current: Option<PbStruct> = None;
    let mut attr: Option<String> = None;
    while i < lines.len() {
        let line = lines[i];
        let t = line.trim();
        if let Some(rest) = line.strip_prefix("pub struct ") {
            let empty = rest.trim_end().ends_with("{}");
            let name = rest
                .trim_end_matches("{}")
                .trim_end_matches('{')
                .trim()
                .to_string();
            let s = PbStruct {
                module: module.to_vec(),
                name,
                fields: Vec::new(),
                resource: None,
            };
            if empty {
                out.push(s);
            } else {
                current = Some(s);
            }
        } else if line == "}" {
            if let Some(s) = current.take() {
                out.push(s);
            }
        } else if let Some(rest) = line.strip_prefix("impl crate::Resource for ") {
            let name = rest.trim_end_matches('{').trim().to_string();
            let mut api_version = String::new();
            let mut kind = String::new();
            for l in &lines[i + 1..] {
                if let Some(v) = const_str(l, "API_VERSION") {
                    api_version = v;
                } else if let Some(v) = const_str(l, "KIND") {
                    kind = v;
                } else if l.starts_with('}') {
                    break;
                }
            }
            resources.insert(name, (api_version, kind));
        } else if current.is_some() && t.starts_with("#[prost(") {
            let mut a = t.to_string();
            while !a.ends_with(")]") {
                i += 1;
                a.push(' ');
                a.push_str(lines.get(i).map(|l| l.trim()).unwrap_or(""));
            }
            attr = Some(a);
        } else if let (Some(s), Some(a)) = (current.as_mut(), attr.as_ref()) {
            if t.starts_with("pub ") {
                let mut decl = t.to_string();
                while !decl.ends_with(',') || decl.matches('<').count() != decl.matches('>').count()
                {
                    i += 1;
                    decl.push_str(lines.get(i).map(|l| l.trim()).unwrap_or(","));
                }
                s.fields.push(parse_pb_field(a, &decl, module));
                attr = None;
            }
        }
        i += 1;
    }
    let first = out.len() - out.iter().rev().take_while(|s| s.module == module).count();
    for s in &mut out[first..] {
        s.resource = resources.remove(&s.name);
    }
}

fn const_str(line: &str, name: &str) -> Option<String> {
    let rest = line
        .trim()
        .strip_prefix(&format!("const {name}: &'static str = \""))?;
    Some(rest.trim_end_matches("\";").to_string())
}

fn parse_pb_field(attr: &str, decl: &str, module: &[String]) -> PbField {
    let inner = attr
        .trim_start_matches("#[prost(")
        .trim_end_matches(")]")
        .to_string();
    let parts = split_attr(&inner);
    let mut scalar = String::new();
    let mut repeated = false;
    let mut map = false;
    let mut tag = 0;
    for p in &parts {
        let p = p.trim();
        if let Some(v) = p.strip_prefix("tag = ") {
            tag = v
                .trim_matches('"')
                .parse()
                .unwrap_or_else(|_| fail(&format!("bad tag in {attr}")));
        } else if let Some(v) = p.strip_prefix("btree_map = ") {
            map = true;
            let kv = v.trim_matches('"');
            let (k, val) = kv
                .split_once(", ")
                .unwrap_or_else(|| fail(&format!("bad map in {attr}")));
            if k != "string" {
                fail(&format!("map key {k} is not string in {attr}"));
            }
            scalar = val.to_string();
        } else if p.starts_with("bytes") {
            scalar = "bytes".into();
        } else if p == "repeated" {
            repeated = true;
        } else if p == "optional" || p == "boxed" || p.starts_with("packed") {
        } else if matches!(
            p,
            "string" | "bool" | "int32" | "int64" | "double" | "message"
        ) {
            scalar = p.to_string();
        } else {
            fail(&format!("unknown prost attribute part {p:?} in {attr}"));
        }
    }
    let decl = decl.trim_start_matches("pub ").trim_end_matches(',');
    let (name, ty) = decl
        .split_once(':')
        .unwrap_or_else(|| fail(&format!("bad field {decl}")));
    let rust_name = name.trim().trim_start_matches("r#").to_string();
    let ty: String = ty.chars().filter(|c| !c.is_whitespace()).collect();
    let msg_path = (scalar == "message").then(|| resolve_type(&ty, module));
    PbField {
        rust_name,
        tag,
        scalar,
        repeated,
        map,
        msg_path,
    }
}

fn split_attr(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in s.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur);
    }
    out
}

/// The message path (`api::core::v1::PodSpec`) of a field's Rust type.
fn resolve_type(ty: &str, module: &[String]) -> String {
    let mut t = ty;
    if let Some((_, v)) = t.split_once("BTreeMap<::prost::alloc::string::String,") {
        t = v;
    }
    for w in [
        "::core::option::Option<",
        "::prost::alloc::vec::Vec<",
        "::prost::alloc::boxed::Box<",
    ] {
        while let Some(rest) = t.strip_prefix(w) {
            t = rest;
        }
    }
    let t = t.trim_end_matches(['>', ',']);
    let mut path: Vec<String> = module.to_vec();
    let mut segs: Vec<&str> = t.split("::").collect();
    while segs.first() == Some(&"super") {
        segs.remove(0);
        path.pop();
    }
    path.extend(segs.iter().map(|s| s.to_string()));
    path.join("::")
}

// ---------------------------------------------------------------------------------------------
// k8s-openapi

/// Module path (`api::apps::v1`) → lower-cased struct name → struct, merged over every
/// `v1_*` version (newest wins).
type OaIndex = HashMap<String, HashMap<String, OaStruct>>;

fn parse_k8s_openapi(src: &Path) -> OaIndex {
    let mut versions: Vec<PathBuf> = read_dir(src)
        .into_iter()
        .filter(|p| {
            p.is_dir()
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("v1_"))
        })
        .collect();
    versions.sort_by_key(|p| {
        p.file_name()
            .and_then(|n| {
                n.to_string_lossy()
                    .trim_start_matches("v1_")
                    .parse::<u32>()
                    .ok()
            })
            .unwrap_or(0)
    });
    if versions.is_empty() {
        fail(&format!("no v1_* modules under {}", src.display()));
    }
    let mut index: OaIndex = HashMap::new();
    for vdir in versions {
        let mut stack = vec![vdir.clone()];
        while let Some(dir) = stack.pop() {
            for p in read_dir(&dir) {
                if p.is_dir() {
                    stack.push(p);
                    continue;
                }
                let is_rs = p.extension().is_some_and(|e| e == "rs");
                if !is_rs || p.file_name().is_some_and(|n| n == "mod.rs") {
                    continue;
                }
                let Some(s) = parse_oa_file(&read(&p)) else {
                    continue;
                };
                let module = p
                    .parent()
                    .and_then(|d| d.strip_prefix(&vdir).ok())
                    .map(|r| {
                        r.components()
                            .map(|c| c.as_os_str().to_string_lossy().into_owned())
                            .collect::<Vec<_>>()
                            .join("::")
                    })
                    .unwrap_or_default();
                let entry = index
                    .entry(module)
                    .or_default()
                    .entry(s.name.to_lowercase())
                    .or_default();
                // Newer versions come later: their names win, older-only fields stay.
                entry.name = s.name;
                entry.json.extend(s.json);
                entry.by_norm.extend(s.by_norm);
                if s.resource.is_some() {
                    entry.resource = s.resource;
                }
            }
        }
    }
    index
}

fn parse_oa_file(text: &str) -> Option<OaStruct> {
    let mut s = OaStruct::default();
    let mut rust_types: HashMap<String, String> = HashMap::new();
    let mut in_struct = false;
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if let Some(rest) = line.strip_prefix("pub struct ") {
            s.name = rest
                .split(|c: char| !c.is_alphanumeric() && c != '_')
                .next()
                .unwrap_or("")
                .to_string();
            in_struct = rest.trim_end().ends_with('{');
        } else if in_struct && *line == "}" {
            in_struct = false;
        } else if in_struct {
            if let Some(rest) = line.trim().strip_prefix("pub ") {
                if let Some((n, t)) = rest.split_once(':') {
                    rust_types.insert(
                        n.trim().trim_start_matches("r#").to_string(),
                        t.trim().trim_end_matches(',').to_string(),
                    );
                }
            }
        } else if line.starts_with("impl crate::Resource for ") {
            let mut av = String::new();
            let mut kind = String::new();
            for l in &lines[i + 1..] {
                if let Some(v) = const_str(l, "API_VERSION") {
                    av = v;
                } else if let Some(v) = const_str(l, "KIND") {
                    kind = v;
                } else if l.starts_with('}') {
                    break;
                }
            }
            s.resource = Some((av, kind));
        } else if let Some((json, rest)) = line.trim().split_once("\" => Field::Key_") {
            let json = json.trim_start_matches('"').to_string();
            let rust = rest.trim_end_matches(',').to_string();
            let ty = rust_types.get(&rust).cloned().unwrap_or_default();
            s.by_norm.insert(normalize(&json), json.clone());
            s.json.insert(json, ty);
        }
    }
    (!s.name.is_empty()).then_some(s)
}

/// Lower case without `_`, `-` and `$`: `podIPs`, `pod_i_ps` and `x-kubernetes-…` compare equal
/// to their Rust spellings.
fn normalize(name: &str) -> String {
    name.chars()
        .filter(|c| !matches!(c, '_' | '-' | '$'))
        .flat_map(char::to_lowercase)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Go sources: pointer or value, omitempty, inline (`--go-src`)

/// JSON name of a Go field, from its `json:"…"` struct tag.
#[derive(Clone, Debug, PartialEq, Eq)]
enum GoJson {
    Name(String),
    /// `json:",inline"`, or an embedded struct without a JSON name.
    Inline,
    /// `json:"-"`: not in JSON at all.
    Ignored,
    /// No `json` tag (only in hand-converted messages such as IntOrString).
    Untagged,
}

/// Shape of a Go field's type, which decides what Go's protobuf and JSON code make of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum GoShape {
    /// A non-pointer scalar or struct.
    Value,
    /// `*T`: nil unless on the wire.
    Ptr,
    /// `[]T` (also `[]byte` and named slice types): nil unless on the wire.
    Slice,
    /// `map[K]V` (also named map types): nil unless on the wire.
    Map,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct GoField {
    json: GoJson,
    shape: GoShape,
    omitempty: bool,
}

/// Proto package (`k8s.io.api.apps.v1`) → lower-cased Go type name → field number → field.
type GoFacts = HashMap<String, HashMap<String, BTreeMap<u32, GoField>>>;

/// One Go package with a `generated.proto`: its proto package and the protobuf-tagged fields of
/// its structs, with their Go type text still unresolved.
struct GoPackage {
    proto_package: String,
    /// (Go struct, field number, JSON name, omitempty, Go type).
    fields: Vec<(String, u32, GoJson, bool, String)>,
    /// Named non-struct types declared here: name → underlying type text.
    named: HashMap<String, String>,
    /// Types defined as another package's struct (`type List metav1.List`): name → (directory
    /// of that package relative to the source root, struct name).
    defined_as: Vec<(String, PathBuf, String)>,
    /// Directory relative to the source root.
    dir: PathBuf,
}

/// Every Go package under `dir` (the source trees of kubernetes/api, apimachinery,
/// apiextensions-apiserver, kube-aggregator and metrics at one release tag) that has a
/// `generated.proto`, with the protobuf-tagged fields of its structs resolved to shapes:
/// (proto package, Go struct, field number, field).
fn parse_go_sources(dir: &Path) -> Vec<(String, String, u32, GoField)> {
    let mut packages = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = read_dir(&d);
        for p in &entries {
            if p.is_dir() {
                stack.push(p.clone());
            }
        }
        let Some(proto) = entries
            .iter()
            .find(|p| p.file_name().is_some_and(|n| n == "generated.proto"))
        else {
            continue;
        };
        let proto_package = read(proto)
            .lines()
            .find_map(|l| l.strip_prefix("package "))
            .map(|l| l.trim().trim_end_matches(';').to_string())
            .unwrap_or_else(|| fail(&format!("no package line in {}", proto.display())));
        let mut pkg = GoPackage {
            proto_package,
            fields: Vec::new(),
            named: HashMap::new(),
            defined_as: Vec::new(),
            dir: d.strip_prefix(dir).unwrap_or(&d).to_path_buf(),
        };
        for p in &entries {
            let Some(name) = p.file_name().map(|n| n.to_string_lossy().into_owned()) else {
                continue;
            };
            let generated = name.starts_with("zz_generated") || name.starts_with("generated.");
            if name.ends_with(".go") && !name.ends_with("_test.go") && !generated {
                parse_go_file(&read(p), p, &mut pkg);
            }
        }
        packages.push(pkg);
    }
    if packages.is_empty() {
        fail(&format!(
            "no Go package with a generated.proto under {}",
            dir.display()
        ));
    }

    // Named slice and map types (`Verbs`, `ResourceList`, `ExtraValue`, …): a field of such a
    // type is nil unless on the wire, like `[]T` or `map[K]V`.
    let mut global: HashMap<String, BTreeSet<GoShape>> = HashMap::new();
    for pkg in &packages {
        for (name, under) in &pkg.named {
            global
                .entry(name.clone())
                .or_default()
                .insert(type_shape(under));
        }
    }
    let mut out = Vec::new();
    for pkg in &packages {
        for (st, tag, json, omitempty, ty) in &pkg.fields {
            let mut shape = type_shape(ty);
            if shape == GoShape::Value {
                let (qualified, bare) = match ty.rsplit_once('.') {
                    Some((_, b)) => (true, b),
                    None => (false, ty.as_str()),
                };
                let local = (!qualified)
                    .then(|| pkg.named.get(bare).map(|u| type_shape(u)))
                    .flatten();
                shape = match local {
                    Some(s) => s,
                    None => match global.get(bare) {
                        Some(set) if set.len() == 1 => set.iter().next().copied().unwrap_or(shape),
                        Some(set) => fail(&format!(
                            "{}.{st}: type {ty} is ambiguous ({set:?})",
                            pkg.proto_package
                        )),
                        None => GoShape::Value,
                    },
                };
            }
            out.push((
                pkg.proto_package.clone(),
                st.clone(),
                *tag,
                GoField {
                    json: json.clone(),
                    shape,
                    omitempty: *omitempty,
                },
            ));
        }
    }
    // `type X otherpkg.Y`: X has Y's fields.
    for pkg in &packages {
        for (name, target_dir, target) in &pkg.defined_as {
            let Some(tp) = packages.iter().find(|p| &p.dir == target_dir) else {
                continue;
            };
            let copied: Vec<_> = out
                .iter()
                .filter(|(pp, st, _, _)| *pp == tp.proto_package && st == target)
                .map(|(_, _, n, f)| (pkg.proto_package.clone(), name.clone(), *n, f.clone()))
                .collect();
            out.extend(copied);
        }
    }
    out.sort_by(|a, b| (&a.0, &a.1, a.2).cmp(&(&b.0, &b.1, b.2)));
    out
}

fn type_shape(ty: &str) -> GoShape {
    if ty.starts_with('*') {
        GoShape::Ptr
    } else if ty.starts_with("[]") {
        GoShape::Slice
    } else if ty.starts_with("map[") {
        GoShape::Map
    } else {
        GoShape::Value
    }
}

fn parse_go_file(text: &str, path: &Path, pkg: &mut GoPackage) {
    let imports = go_imports(text);
    let mut current: Option<String> = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("type ") {
            let mut words = rest.split_whitespace();
            let name = words.next().unwrap_or("").to_string();
            let under = words.next().unwrap_or("");
            if under == "struct" {
                current = rest.trim_end().ends_with('{').then_some(name);
            } else if !under.is_empty() && under != "interface" {
                // Another package's type: its import path below k8s.io/ is its directory.
                if let Some((q, target)) = under.split_once('.') {
                    if let Some(dir) = imports.get(q).and_then(|imp| imp.strip_prefix("k8s.io/")) {
                        pkg.defined_as
                            .push((name.clone(), PathBuf::from(dir), target.to_string()));
                    }
                }
                pkg.named.insert(name, under.to_string());
            }
            continue;
        }
        let Some(st) = current.as_ref() else { continue };
        if line == "}" {
            current = None;
            continue;
        }
        let t = line.trim();
        if t.starts_with("//") {
            continue;
        }
        let Some((decl, rest)) = t.split_once('`') else {
            continue;
        };
        let Some((tag_text, _)) = rest.split_once('`') else {
            continue;
        };
        let tags = struct_tags(tag_text);
        let Some(pb) = tags.get("protobuf") else {
            continue;
        };
        if pb == "-" {
            continue;
        }
        let where_ = || format!("{}: {st}: {t}", path.display());
        let number: u32 = pb
            .split(',')
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| fail(&format!("bad protobuf tag in {}", where_())));
        let words: Vec<&str> = decl.split_whitespace().collect();
        let (embedded, ty) = match words.as_slice() {
            [ty] => (true, *ty),
            [_, ty] => (false, *ty),
            _ => fail(&format!("cannot read field {}", where_())),
        };
        let (json, omitempty) = match tags.get("json") {
            None => (GoJson::Untagged, false),
            Some(j) => {
                let mut parts = j.split(',');
                let name = parts.next().unwrap_or("");
                let opts: Vec<&str> = parts.collect();
                let json = if name == "-" && opts.is_empty() {
                    GoJson::Ignored
                } else if opts.contains(&"inline") || (name.is_empty() && embedded) {
                    GoJson::Inline
                } else if name.is_empty() {
                    fail(&format!("field without a JSON name: {}", where_()))
                } else {
                    GoJson::Name(name.to_string())
                };
                (json, opts.contains(&"omitempty"))
            }
        };
        pkg.fields
            .push((st.clone(), number, json, omitempty, ty.to_string()));
    }
}

/// A Go file's imports: package name (alias, else the path's last element) → import path.
fn go_imports(text: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut in_block = false;
    for line in text.lines() {
        let t = line.trim();
        let spec = if in_block {
            if t == ")" {
                in_block = false;
                continue;
            }
            t
        } else if t == "import (" {
            in_block = true;
            continue;
        } else if let Some(rest) = t.strip_prefix("import ") {
            rest
        } else {
            continue;
        };
        let Some((alias, rest)) = spec.split_once('"') else {
            continue;
        };
        let Some((path, _)) = rest.split_once('"') else {
            continue;
        };
        let alias = alias.trim();
        let name = if alias.is_empty() {
            path.rsplit('/').next().unwrap_or(path)
        } else {
            alias
        };
        out.insert(name.to_string(), path.to_string());
    }
    out
}

/// `json:"a,omitempty" protobuf:"bytes,1,opt,name=a"` → {json: "a,omitempty", protobuf: …}.
fn struct_tags(text: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut rest = text.trim();
    while let Some((key, after)) = rest.split_once(":\"") {
        let Some((value, tail)) = after.split_once('"') else {
            break;
        };
        out.insert(key.trim().to_string(), value.to_string());
        rest = tail.trim_start();
    }
    out
}

const GO_FACTS_HEADER: &str = "\
# Go struct fields behind the protobuf messages of k8s-pb, one line per field:
#   message  number  json  shape  omitempty
# message: proto package and Go type name; number: protobuf field number; json: the field's
# JSON name, `,inline` for an inline embedded struct, `-` for json:\"-\", `?` for no json tag;
# shape: value (scalar or struct), ptr, slice or map (named slice/map types resolved);
# omitempty: whether the json tag says omitempty.
#
# Written by `cargo run --release -p rudder-api --example gen_protobuf_table -- --go-src DIR`
# from the Go sources of the Kubernetes release k8s-pb was built from; read by the same
# generator to write table.rs. Do not edit.
";

fn go_facts_file(fields: &[(String, String, u32, GoField)], pb: &[PbStruct], dir: &Path) -> String {
    let wanted: BTreeSet<(String, String)> = pb
        .iter()
        .map(|s| (proto_package(&s.module), s.name.to_lowercase()))
        .collect();
    let mut out = String::from(GO_FACTS_HEADER);
    let _ = writeln!(
        out,
        "# Go sources: {} (the --go-src directory)\n",
        dir.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    );
    let mut lines = 0;
    for (package, st, number, f) in fields {
        if !wanted.contains(&(package.clone(), st.to_lowercase())) {
            continue;
        }
        let json = match &f.json {
            GoJson::Name(n) => n.as_str(),
            GoJson::Inline => ",inline",
            GoJson::Ignored => "-",
            GoJson::Untagged => "?",
        };
        let shape = match f.shape {
            GoShape::Value => "value",
            GoShape::Ptr => "ptr",
            GoShape::Slice => "slice",
            GoShape::Map => "map",
        };
        let omit = if f.omitempty { "omitempty" } else { "-" };
        let _ = writeln!(out, "{package}.{st} {number} {json} {shape} {omit}");
        lines += 1;
    }
    eprintln!("{lines} Go fields");
    out
}

fn read_go_facts(path: &Path) -> GoFacts {
    let mut facts: GoFacts = HashMap::new();
    for (n, line) in read(path).lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = || -> ! {
            fail(&format!(
                "{}:{}: cannot read {line:?}",
                path.display(),
                n + 1
            ))
        };
        let cols: Vec<&str> = line.split_whitespace().collect();
        let [message, number, json, shape, omit] = cols.as_slice() else {
            bad()
        };
        let Some((package, st)) = message.rsplit_once('.') else {
            bad()
        };
        let number: u32 = number.parse().unwrap_or_else(|_| bad());
        let json = match *json {
            ",inline" => GoJson::Inline,
            "-" => GoJson::Ignored,
            "?" => GoJson::Untagged,
            name => GoJson::Name(name.to_string()),
        };
        let shape = match *shape {
            "value" => GoShape::Value,
            "ptr" => GoShape::Ptr,
            "slice" => GoShape::Slice,
            "map" => GoShape::Map,
            _ => bad(),
        };
        let omitempty = match *omit {
            "omitempty" => true,
            "-" => false,
            _ => bad(),
        };
        let prev = facts
            .entry(package.to_string())
            .or_default()
            .entry(st.to_lowercase())
            .or_default()
            .insert(
                number,
                GoField {
                    json,
                    shape,
                    omitempty,
                },
            );
        if prev.is_some() {
            bad();
        }
    }
    facts
}

// ---------------------------------------------------------------------------------------------
// Group names

/// API group of a k8s-pb module (`api::apps::v1` → `apps`), `None` for modules without kinds.
fn api_group(module: &[String]) -> Option<String> {
    let m: Vec<&str> = module.iter().map(String::as_str).collect();
    let g = match m.as_slice() {
        ["api", "core", _] => "",
        ["api", g @ ("apps" | "batch" | "autoscaling" | "policy" | "extensions"), _] => g,
        ["api", "rbac", _] => "rbac.authorization.k8s.io",
        ["api", "flowcontrol", _] => "flowcontrol.apiserver.k8s.io",
        ["api", "apiserverinternal", _] => "internal.apiserver.k8s.io",
        ["api", g, _] => return Some(format!("{g}.k8s.io")),
        ["apimachinery", "pkg", "apis", "meta", _] => "meta.k8s.io",
        ["apiextensions_apiserver", "pkg", "apis", "apiextensions", _] => "apiextensions.k8s.io",
        ["kube_aggregator", "pkg", "apis", "apiregistration", _] => "apiregistration.k8s.io",
        ["metrics", "pkg", "apis", "metrics", _] => "metrics.k8s.io",
        ["metrics", "pkg", "apis", "custom_metrics", _] => "custom.metrics.k8s.io",
        ["metrics", "pkg", "apis", "external_metrics", _] => "external.metrics.k8s.io",
        _ => return None,
    };
    Some(g.to_string())
}

fn api_version(module: &[String]) -> Option<String> {
    let g = api_group(module)?;
    let v = module.last()?;
    Some(if g.is_empty() {
        v.clone()
    } else {
        format!("{g}/{v}")
    })
}

/// Proto package of a k8s-pb module: `k8s.io.api.apps.v1`.
fn proto_package(module: &[String]) -> String {
    format!("k8s.io.{}", module.join("."))
}

// ---------------------------------------------------------------------------------------------
// Special messages (converted by hand in the decoder)

fn special(module: &str, name: &str) -> &'static str {
    match (module, name) {
        ("apimachinery::pkg::apis::meta::v1", "Time") => "Time",
        ("apimachinery::pkg::apis::meta::v1", "MicroTime") => "MicroTime",
        ("apimachinery::pkg::apis::meta::v1", "Duration") => "Duration",
        ("apimachinery::pkg::apis::meta::v1", "FieldsV1") => "RawJson",
        ("apimachinery::pkg::apis::meta::v1", "Verbs") => "StringArray",
        ("apimachinery::pkg::api::resource", "Quantity" | "QuantityValue") => "Quantity",
        ("apimachinery::pkg::util::intstr", "IntOrString") => "IntOrString",
        ("apimachinery::pkg::runtime", "RawExtension") => "RawExtension",
        (_, "ExtraValue") => "StringArray",
        (m, n) if m.starts_with("apiextensions_apiserver::") => match n {
            "Json" => "RawJson",
            "JsonSchemaPropsOrArray" => "SchemaOrArray",
            "JsonSchemaPropsOrBool" => "SchemaOrBool",
            "JsonSchemaPropsOrStringArray" => "SchemaOrStringArray",
            _ => "Plain",
        },
        _ => "Plain",
    }
}

/// Tags the decoder relies on for special messages: (message, [(rust field, tag)]).
const SPECIAL_TAGS: &[(&str, &[(&str, u32)])] = &[
    (
        "apimachinery::pkg::apis::meta::v1::Time",
        &[("seconds", 1), ("nanos", 2)],
    ),
    (
        "apimachinery::pkg::apis::meta::v1::MicroTime",
        &[("seconds", 1), ("nanos", 2)],
    ),
    (
        "apimachinery::pkg::apis::meta::v1::Duration",
        &[("duration", 1)],
    ),
    ("apimachinery::pkg::apis::meta::v1::FieldsV1", &[("raw", 1)]),
    ("apimachinery::pkg::apis::meta::v1::Verbs", &[("items", 1)]),
    (
        "apimachinery::pkg::api::resource::Quantity",
        &[("string", 1)],
    ),
    (
        "apimachinery::pkg::util::intstr::IntOrString",
        &[("type", 1), ("int_val", 2), ("str_val", 3)],
    ),
    ("apimachinery::pkg::runtime::RawExtension", &[("raw", 1)]),
    (
        "apimachinery::pkg::runtime::Unknown",
        &[
            ("type_meta", 1),
            ("raw", 2),
            ("content_encoding", 3),
            ("content_type", 4),
        ],
    ),
    (
        "apimachinery::pkg::runtime::TypeMeta",
        &[("api_version", 1), ("kind", 2)],
    ),
    ("api::authentication::v1::ExtraValue", &[("items", 1)]),
    (
        "apiextensions_apiserver::pkg::apis::apiextensions::v1::JsonSchemaPropsOrArray",
        &[("schema", 1), ("j_son_schemas", 2)],
    ),
    (
        "apiextensions_apiserver::pkg::apis::apiextensions::v1::JsonSchemaPropsOrBool",
        &[("allows", 1), ("schema", 2)],
    ),
    (
        "apiextensions_apiserver::pkg::apis::apiextensions::v1::JsonSchemaPropsOrStringArray",
        &[("schema", 1), ("property", 2)],
    ),
];

/// Plain messages the decoder reads by hand, never through the table's JSON names.
const HAND_DECODED: &[(&str, &str)] = &[("apimachinery::pkg::runtime", "Unknown")];

/// Kinds of `meta.k8s.io/v1` that upstream registers in every group version (a client may send
/// them with any `apiVersion`); they carry no ObjectMeta, so they are listed by name.
const META_KINDS: &[&str] = &[
    "CreateOptions",
    "DeleteOptions",
    "GetOptions",
    "ListOptions",
    "PatchOptions",
    "Status",
    "UpdateOptions",
    "WatchEvent",
];

/// Inline (`json:",inline"`) fields upstream declares, for parents k8s-openapi does not know
/// (versions it has no module for). Where k8s-openapi knows the parent, inlines are detected
/// and compared with this list.
const KNOWN_INLINE: &[&str] = &[
    "volume_source",
    "persistent_volume_source",
    "local_object_reference",
    "handler",
    "ephemeral_container_common",
    "ingress_rule_value",
    "rule",
    "rule_with_operations",
    "device_configuration",
];

/// Upstream JSON names with acronyms for fields no k8s-openapi type has (lowerCamel of the
/// prost name would lose the acronym).
const GUESS_FIXES: &[(&str, &str)] = &[
    (
        "insecure_skip_tls_verify_backend",
        "insecureSkipTLSVerifyBackend",
    ),
    ("desired_api_version", "desiredAPIVersion"),
];

// ---------------------------------------------------------------------------------------------
// Generation

fn lower_camel(snake: &str) -> String {
    let mut out = String::new();
    let mut up = false;
    for c in snake.chars() {
        if c == '_' {
            up = true;
        } else if up {
            out.extend(c.to_uppercase());
            up = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// The decoder's `Go` variant for a field (see `schema::Go` in `protobuf.rs`), and what is
/// wrong if the Go field does not fit the protobuf field.
fn go_kind(f: &PbField, label: &str, g: &GoField, message: bool) -> (&'static str, Option<String>) {
    let wire = if f.map {
        "map"
    } else if f.repeated {
        "repeated"
    } else {
        "singular"
    };
    let mut problem = None;
    if (label == "i") != (g.json == GoJson::Inline) {
        problem = Some(format!(
            "inline in table: {}, in Go: {:?}",
            label == "i",
            g.json
        ));
    }
    if matches!(g.json, GoJson::Ignored | GoJson::Untagged) {
        problem = Some(format!("Go field has no JSON name ({:?})", g.json));
    }
    let fits = match g.shape {
        GoShape::Value | GoShape::Ptr => wire == "singular",
        // `[]byte`, or a message that is a named slice in Go (`Verbs`).
        GoShape::Slice => {
            wire == "repeated" || (wire == "singular" && (f.scalar == "bytes" || message))
        }
        GoShape::Map => wire == "map",
    };
    if !fits {
        problem = Some(format!("protobuf {wire} {} vs Go {:?}", f.scalar, g.shape));
    }
    let kind = match (g.shape, g.omitempty) {
        (GoShape::Value, _) if message => "Struct",
        (GoShape::Value, true) => "Omit",
        (GoShape::Value, false) => "Val",
        (GoShape::Ptr, true) => "Ptr",
        (GoShape::Slice | GoShape::Map, true) => "Omit",
        (GoShape::Ptr | GoShape::Slice | GoShape::Map, false) => "Nil",
    };
    (kind, problem)
}

fn generate(pb: &[PbStruct], oa: &OaIndex, go: &GoFacts) -> String {
    let index: HashMap<String, usize> = pb
        .iter()
        .enumerate()
        .map(|(i, s)| (format!("{}::{}", s.module.join("::"), s.name), i))
        .collect();
    if pb.len() > u16::MAX as usize {
        fail("too many messages for u16 indices");
    }
    for (path, tags) in SPECIAL_TAGS {
        let Some(&i) = index.get(*path) else {
            fail(&format!("special message {path} missing from k8s-pb"));
        };
        for (name, tag) in *tags {
            let ok = pb[i]
                .fields
                .iter()
                .any(|f| f.rust_name == *name && f.tag == *tag);
            if !ok {
                fail(&format!("{path}.{name} is not tag {tag} in k8s-pb"));
            }
        }
    }

    // The k8s-openapi struct of a k8s-pb struct: same module, else the same name in another
    // version of the same group (newest module name wins by sort order).
    let oa_of = |s: &PbStruct| -> Option<&OaStruct> {
        let key = s.name.to_lowercase();
        let module = s.module.join("::");
        if let Some(o) = oa.get(&module).and_then(|m| m.get(&key)) {
            return Some(o);
        }
        let group_prefix = s.module[..s.module.len().saturating_sub(1)].join("::");
        let mut others: Vec<(&String, &OaStruct)> = oa
            .iter()
            .filter(|(m, _)| m.rsplit_once("::").is_some_and(|(g, _)| g == group_prefix))
            .filter_map(|(m, structs)| structs.get(&key).map(|o| (m, o)))
            .collect();
        others.sort_by(|a, b| b.0.cmp(a.0));
        others.first().map(|(_, o)| *o)
    };

    let display_name = |s: &PbStruct| -> String {
        oa_of(s)
            .map(|o| o.name.clone())
            .or_else(|| s.resource.as_ref().map(|r| r.1.clone()))
            .unwrap_or_else(|| s.name.clone())
    };

    // Global normalized name → JSON spellings, for fields of types k8s-openapi lacks.
    let mut global: HashMap<String, BTreeSet<String>> = HashMap::new();
    for structs in oa.values() {
        for o in structs.values() {
            for (n, j) in &o.by_norm {
                global.entry(n.clone()).or_default().insert(j.clone());
            }
        }
    }
    let child_of =
        |f: &PbField| -> Option<usize> { f.msg_path.as_ref().and_then(|p| index.get(p)).copied() };
    // Whether every field of message `c` has a JSON name in `o`, looking through fields that
    // are themselves inline by upstream's list.
    fn covered(
        pb: &[PbStruct],
        index: &HashMap<String, usize>,
        c: usize,
        o: &OaStruct,
        depth: u32,
    ) -> bool {
        depth < 4
            && !pb[c].fields.is_empty()
            && pb[c].fields.iter().all(|cf| {
                o.by_norm.contains_key(&normalize(&cf.rust_name))
                    || (KNOWN_INLINE.contains(&cf.rust_name.as_str())
                        && cf
                            .msg_path
                            .as_ref()
                            .and_then(|p| index.get(p))
                            .is_some_and(|&g| covered(pb, index, g, o, depth + 1)))
            })
    }

    // Pass 1: inline fields, and each inline message's parents.
    let mut inline: BTreeSet<(usize, u32)> = BTreeSet::new();
    let mut inline_parents: HashMap<usize, Vec<usize>> = HashMap::new();
    let mut inlines = BTreeSet::new();
    let mut mismatches = BTreeSet::new();
    for (idx, s) in pb.iter().enumerate() {
        let o = oa_of(s);
        let full = format!("{}.{}", proto_package(&s.module), display_name(s));
        for f in &s.fields {
            let Some(c) = child_of(f) else { continue };
            if f.repeated || f.map {
                continue;
            }
            if o.is_some_and(|o| o.by_norm.contains_key(&normalize(&f.rust_name))) {
                continue;
            }
            let known = KNOWN_INLINE.contains(&f.rust_name.as_str());
            let is_inline = match o {
                Some(o) => {
                    let detected = covered(pb, &index, c, o, 0);
                    if detected != known {
                        mismatches.insert(format!(
                            "{full}.{}: inline detected={detected} known={known}",
                            f.rust_name
                        ));
                    }
                    detected
                }
                None => known,
            };
            if is_inline {
                inline.insert((idx, f.tag));
                inline_parents.entry(c).or_default().push(idx);
                inlines.insert(format!("{full}.{}", f.rust_name));
            }
        }
    }
    // k8s-openapi structs whose JSON names apply to message `idx`: its own, then those of the
    // messages it is inlined into (transitively).
    let name_sources = |idx: usize| -> Vec<&OaStruct> {
        let mut out = Vec::new();
        let mut todo = vec![idx];
        let mut seen = BTreeSet::new();
        while let Some(i) = todo.pop() {
            if !seen.insert(i) {
                continue;
            }
            out.extend(oa_of(&pb[i]));
            if let Some(ps) = inline_parents.get(&i) {
                todo.extend(ps.iter().copied());
            }
        }
        out
    };

    // Pass 2: the table.
    let mut from_global = BTreeSet::new();
    let mut guessed = BTreeSet::new();
    let mut body = String::new();
    let mut field_count = 0;
    let mut go_used = 0;
    let mut go_missing = BTreeSet::new();
    let mut renamed = BTreeSet::new();
    for (idx, s) in pb.iter().enumerate() {
        let module = s.module.join("::");
        let sp = special(&module, &s.name);
        let full = format!("{}.{}", proto_package(&s.module), display_name(s));
        let sources = name_sources(idx);
        let mut fields = s.fields.clone();
        fields.sort_by_key(|f| f.tag);
        for w in fields.windows(2) {
            if w[0].tag == w[1].tag {
                fail(&format!("{full}: duplicate tag {}", w[0].tag));
            }
        }
        let go_fields = go
            .get(&proto_package(&s.module))
            .and_then(|m| m.get(&s.name.to_lowercase()));
        if sp == "Plain" && go_fields.is_none() && !s.fields.is_empty() {
            go_missing.insert(format!("{full} (whole message)"));
        }
        let _ = writeln!(body, "    // {idx}\n    msg(\"{full}\", {sp}, &[");
        for f in &fields {
            field_count += 1;
            let ty = match f.scalar.as_str() {
                "string" => "S".to_string(),
                "bytes" => "B".to_string(),
                "bool" => "Z".to_string(),
                "int32" => "I".to_string(),
                "int64" => "L".to_string(),
                "double" => "D".to_string(),
                "message" => match child_of(f) {
                    Some(i) => format!("M({i})"),
                    None => fail(&format!(
                        "{full}.{}: unknown message {:?}",
                        f.rust_name, f.msg_path
                    )),
                },
                other => fail(&format!("{full}.{}: unknown kind {other}", f.rust_name)),
            };
            let label = if inline.contains(&(idx, f.tag)) {
                "i"
            } else if f.map {
                "m"
            } else if f.repeated {
                "r"
            } else {
                "o"
            };
            let norm = normalize(&f.rust_name);
            let json = if label == "i" {
                lower_camel(&f.rust_name)
            } else if let Some((o, j)) = sources
                .iter()
                .find_map(|o| o.by_norm.get(&norm).map(|j| (o, j.clone())))
            {
                let rust_ty = o.json.get(&j).cloned().unwrap_or_default();
                let oa_map = rust_ty.contains("BTreeMap<");
                let oa_vec = !oa_map && rust_ty.contains("Vec<");
                let child_plain = child_of(f)
                    .map(|c| special(&pb[c].module.join("::"), &pb[c].name) == "Plain")
                    .unwrap_or(true);
                if sp == "Plain"
                    && child_plain
                    && !rust_ty.is_empty()
                    && (oa_map != f.map || oa_vec != f.repeated)
                {
                    mismatches.insert(format!(
                        "{full}.{j}: protobuf {label} {} vs k8s-openapi {rust_ty}",
                        f.scalar
                    ));
                }
                j
            } else if let Some(j) = global
                .get(&norm)
                .filter(|set| set.len() == 1)
                .and_then(|set| set.iter().next())
            {
                if sp == "Plain" {
                    from_global.insert(format!("{full}.{j}"));
                }
                j.clone()
            } else {
                let g = GUESS_FIXES
                    .iter()
                    .find(|(rust, _)| *rust == f.rust_name)
                    .map(|(_, json)| json.to_string())
                    .unwrap_or_else(|| lower_camel(&f.rust_name));
                if sp == "Plain" {
                    guessed.insert(format!("{full}.{g}"));
                }
                g
            };
            let go_field = go_fields.and_then(|g| g.get(&f.tag));
            // Go's JSON name is the authority; the ones found above only fill in.
            let mut json = json;
            if let Some(GoJson::Name(n)) = go_field.map(|g| &g.json) {
                let found = format!("{full}.{json}");
                from_global.remove(&found);
                guessed.remove(&found);
                if *n != json {
                    renamed.insert(format!("{found} -> {n}"));
                    json = n.clone();
                }
            }
            let go_kind =
                if sp != "Plain" || HAND_DECODED.contains(&(module.as_str(), s.name.as_str())) {
                    // Converted by hand: the fields never reach JSON one by one.
                    "Any"
                } else {
                    match go_field {
                        Some(g) => {
                            go_used += 1;
                            let (kind, problem) = go_kind(f, label, g, child_of(f).is_some());
                            if let Some(p) = problem {
                                mismatches.insert(format!("{full}.{json}: {p}"));
                            }
                            kind
                        }
                        None => {
                            go_missing.insert(format!("{full}.{json} ({})", f.tag));
                            "Any"
                        }
                    }
                };
            let _ = writeln!(
                body,
                "        {label}({}, \"{json}\", {ty}, {go_kind}),",
                f.tag
            );
        }
        body.push_str("    ]),\n");
    }

    // Kinds.
    let mut kinds: BTreeMap<(String, String), usize> = BTreeMap::new();
    for (idx, s) in pb.iter().enumerate() {
        let Some(av) = api_version(&s.module) else {
            continue;
        };
        let o = oa_of(s);
        let oa_resource = oa
            .get(&s.module.join("::"))
            .and_then(|m| m.get(&s.name.to_lowercase()))
            .and_then(|o| o.resource.clone());
        let has_meta = s.fields.iter().any(|f| {
            f.rust_name == "metadata"
                && f.msg_path.as_deref().is_some_and(|p| {
                    p.ends_with("meta::v1::ObjectMeta") || p.ends_with("meta::v1::ListMeta")
                })
        });
        let meta_kind = av == "meta.k8s.io/v1" && META_KINDS.contains(&s.name.as_str());
        if !(has_meta || meta_kind || oa_resource.is_some() || s.resource.is_some()) {
            continue;
        }
        let kind = o.map(|o| o.name.clone()).unwrap_or_else(|| s.name.clone());
        // k8s-openapi gives the meta kinds the apiVersion they are served with ("v1"); they
        // are looked up under meta.k8s.io/v1 (see META_KINDS).
        let checked: &[(&str, &Option<(String, String)>)] = if av.starts_with("meta.k8s.io/") {
            &[]
        } else {
            &[("k8s-openapi", &oa_resource), ("k8s-pb", &s.resource)]
        };
        for (what, r) in checked {
            if let Some((rav, rkind)) = r {
                if *rav != av || *rkind != kind {
                    mismatches.insert(format!("{av} {kind}: {what} says {rav} {rkind}"));
                }
            }
        }
        if let Some(prev) = kinds.insert((av.clone(), kind.clone()), idx) {
            fail(&format!("{av} {kind} twice ({prev}, {idx})"));
        }
    }

    for i in &inlines {
        eprintln!("inline: {i}");
    }
    for g in &from_global {
        eprintln!("JSON name from another type: {g}");
    }
    for g in &guessed {
        eprintln!("guessed JSON name: {g}");
    }
    for r in &renamed {
        eprintln!("JSON name from Go: {r}");
    }
    for m in &go_missing {
        eprintln!("NO GO FIELD: {m}");
    }
    for m in &mismatches {
        eprintln!("MISMATCH: {m}");
    }
    eprintln!(
        "{} messages, {field_count} fields, {} kinds, {} inline, {} JSON names from Go, {} named from other types, {} guessed, {} mismatches",
        pb.len(),
        kinds.len(),
        inlines.len(),
        renamed.len(),
        from_global.len(),
        guessed.len(),
        mismatches.len()
    );

    eprintln!(
        "{go_used} fields with Go facts, {} without",
        go_missing.len()
    );
    if !go_missing.is_empty() {
        fail("protobuf fields without Go facts (see NO GO FIELD lines); rerun with --go-src");
    }
    if !mismatches.is_empty() {
        fail("k8s-pb and k8s-openapi disagree (see MISMATCH lines); fix the generator");
    }

    let mut src = String::new();
    src.push_str(
        "// @generated by `cargo run --release -p rudder-api --example gen_protobuf_table` from\n\
         // k8s-pb (field numbers and wire kinds), k8s-openapi (JSON names, kinds) and go_fields.txt\n\
         // (the Go fields: pointer or not, omitempty). Do not edit.\n\
         //\n\
         // One entry per protobuf message: proto name, special conversion, fields sorted by tag.\n\
         // Field constructors: o = singular, r = repeated, m = map<string, _>, i = inline embedded.\n\
         // Types: S string, B bytes, Z bool, I int32, L int64, D double, M(n) message n.\n\
         // Go fields (zero values, see `schema::Go`): Ptr, Nil, Omit, Val, Struct, Any.\n\n\
         use super::schema::{i, m, msg, o, r, Go::*, Message, Special::*, Ty::*};\n\n",
    );
    let _ = writeln!(
        src,
        "pub(super) static MESSAGES: [Message; {}] = [",
        pb.len()
    );
    src.push_str(&body);
    src.push_str("];\n\n");
    src.push_str("/// (apiVersion, kind) → message, sorted for binary search.\n");
    let _ = writeln!(
        src,
        "pub(super) static KINDS: [(&str, &str, u16); {}] = [",
        kinds.len()
    );
    for ((av, kind), idx) in &kinds {
        let _ = writeln!(src, "    (\"{av}\", \"{kind}\", {idx}),");
    }
    src.push_str("];\n");
    src
}
