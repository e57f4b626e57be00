//! Writes `crates/api/src/protobuf/table.rs`, the message table the protobuf decoder
//! (`rudder_api::protobuf`) walks. Run by hand when the Kubernetes API version moves:
//!
//! ```text
//! cargo fetch   # makes sure k8s-pb (a dev-dependency) and k8s-openapi are unpacked
//! cargo run --release -p rudder-api --example gen_protobuf_table [-- K8S_PB_DIR K8S_OPENAPI_DIR]
//! ```
//!
//! Sources, both read as text from the cargo registry (no build of either crate is needed):
//! - **k8s-pb** (prost structs generated from upstream `generated.proto`): message names,
//!   field numbers, wire kinds (`string`, `int32`, `message`, `btree_map = "string, …"`, …),
//!   repeated or not, and message types of fields.
//! - **k8s-openapi** (every `v1_*` module it ships; serde names from upstream OpenAPI): the JSON
//!   name of every field, Kubernetes' spelling of type names (`CSIDriver`, not `CsiDriver`) and
//!   the kinds with their `apiVersion`. A protobuf field with no JSON counterpart in k8s-openapi
//!   whose message's fields all appear in the parent's JSON is an inline (`json:",inline"`)
//!   embedded struct; the generator prints every inline and every name it had to guess.
//!
//! The table is plain data: no dependency of the normal build on either crate.

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
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (pb_dir, oa_dir) = match args.as_slice() {
        [a, b] => (PathBuf::from(a), PathBuf::from(b)),
        [] => (
            find_crate_src("k8s-pb-0.9."),
            find_crate_src("k8s-openapi-0.29."),
        ),
        _ => fail("usage: gen_protobuf_table [K8S_PB_DIR K8S_OPENAPI_DIR]"),
    };
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/protobuf/table.rs");

    let pb = parse_k8s_pb(&pb_dir.join("src"));
    let oa = parse_k8s_openapi(&oa_dir.join("src"));
    let source = generate(&pb, &oa);
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

fn generate(pb: &[PbStruct], oa: &OaIndex) -> String {
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
            let _ = writeln!(body, "        {label}({}, \"{json}\", {ty}),", f.tag);
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
    for m in &mismatches {
        eprintln!("MISMATCH: {m}");
    }
    eprintln!(
        "{} messages, {field_count} fields, {} kinds, {} inline, {} named from other types, {} guessed, {} mismatches",
        pb.len(),
        kinds.len(),
        inlines.len(),
        from_global.len(),
        guessed.len(),
        mismatches.len()
    );

    if !mismatches.is_empty() {
        fail("k8s-pb and k8s-openapi disagree (see MISMATCH lines); fix the generator");
    }

    let mut src = String::new();
    src.push_str(
        "// @generated by `cargo run --release -p rudder-api --example gen_protobuf_table` from\n\
         // k8s-pb (field numbers and wire kinds) and k8s-openapi (JSON names, kinds). Do not edit.\n\
         //\n\
         // One entry per protobuf message: proto name, special conversion, fields sorted by tag.\n\
         // Field constructors: o = singular, r = repeated, m = map<string, _>, i = inline embedded.\n\
         // Types: S string, B bytes, Z bool, I int32, L int64, D double, M(n) message n.\n\n\
         use super::schema::{i, m, msg, o, r, Message, Special::*, Ty::*};\n\n",
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
