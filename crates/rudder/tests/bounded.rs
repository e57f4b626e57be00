//! What one request may cost is bounded before it is paid: YAML alias bombs and deep nesting,
//! JSON patches that copy a map into itself, protobuf lists and pods of a million empty
//! messages, JSON bodies of 300k empty containers and strategic merge patches of 60k
//! finalizers. Each gets its Status, writes nothing, keeps the server's peak memory bounded
//! and leaves it serving `/healthz`.

use std::path::Path;

use rudder_testkit::{Answer, RudderServer};

const CMS: &str = "/api/v1/namespaces/default/configmaps";
const PODS: &str = "/api/v1/namespaces/default/pods";
const PB: &str = "application/vnd.kubernetes.protobuf";

/// Peak memory a server may reach while it refuses an attack (it idles at well under 100 MiB;
/// the attacks cost 0.5–6.4 GB without the bounds).
const PEAK_LIMIT: u64 = 400 * 1024 * 1024;

/// The same for 300k empty containers in JSON: decoded they are small, but defaulting gives each
/// four fields before validation refuses them (~300 MiB measured; 1.8 GB before the bounds, 560
/// MiB while the pod's spec and the managed fields' view of it were copied).
const PEAK_LIMIT_DEFAULTED: u64 = 384 * 1024 * 1024;

fn server() -> RudderServer {
    RudderServer::api_only(Path::new(env!("CARGO_BIN_EXE_rudder")), &[])
        .expect("start rudder server")
}

fn assert_status(a: &Answer, code: u16, reason: &str, message: &str) {
    assert_eq!(a.code, code, "{}", &a.body[..a.body.len().min(2000)]);
    let st = a.json();
    assert_eq!(st["kind"], "Status", "{st}");
    assert_eq!(st["code"], code, "{st}");
    assert_eq!(st["reason"], reason, "{st}");
    let m = st["message"].as_str().unwrap_or_default();
    assert!(m.contains(message), "{message:?} not in {m:?}");
}

/// The server still answers, and its peak memory stayed bounded.
fn assert_healthy_and_bounded(s: &RudderServer, limit: u64) {
    let a = s.request("GET", "/healthz", "application/json", b"");
    assert_eq!((a.code, a.body.as_str()), (200, "ok"));
    let peak = s.peak_rss().expect("server VmHWM");
    assert!(peak < limit, "server peak RSS {} MiB", peak / 1024 / 1024);
}

fn get(s: &RudderServer, path: &str) -> Answer {
    s.request("GET", path, "application/json", b"")
}

#[test]
fn yaml_alias_bombs_and_deep_nesting_are_refused() {
    let s = server();
    // 5,000 aliases of one 100 KB string: 500 MB once expanded.
    let mut body = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: bomb}}\nx: &s {}\ndata:\n  k: [",
        "a".repeat(100_000)
    );
    body.push_str(&"*s, ".repeat(5_000));
    body.push_str("*s]\n");
    let a = s.request("POST", CMS, "application/yaml", body.as_bytes());
    assert_status(
        &a,
        400,
        "BadRequest",
        "error decoding the request body as YAML",
    );
    // 160 KB of nested flow maps.
    let n = 160_000 / 4;
    let deep = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: deep}}\ndata: {}1{}\n",
        "{a: ".repeat(n),
        "}".repeat(n)
    );
    let a = s.request("POST", CMS, "application/yaml", deep.as_bytes());
    assert_status(
        &a,
        400,
        "BadRequest",
        "error decoding the request body as YAML",
    );
    assert_eq!(get(&s, &format!("{CMS}/bomb")).code, 404);
    assert_eq!(get(&s, &format!("{CMS}/deep")).code, 404);
    // Ordinary YAML, anchors included, still works.
    let a = s.request(
        "POST",
        CMS,
        "application/yaml",
        b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ok}\ndata:\n  a: &v yes\n  b: *v\n  c: 0755\n",
    );
    assert_eq!(a.code, 201, "{}", a.body);
    assert_eq!(
        a.json()["data"],
        serde_json::json!({"a": "yes", "b": "yes", "c": "0755"})
    );
    assert_healthy_and_bounded(&s, PEAK_LIMIT);
}

#[test]
fn json_patches_are_bounded() {
    let s = server();
    let a = s.request(
        "POST",
        CMS,
        "application/json",
        format!(
            r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"p"}},"data":{{"a":"{}"}}}}"#,
            "x".repeat(2_000)
        )
        .as_bytes(),
    );
    assert_eq!(a.code, 201, "{}", a.body);
    let rv = a.json()["metadata"]["resourceVersion"].clone();
    // 18 copies of a map into itself: 2^18 times the map.
    let ops: Vec<String> = (0..18)
        .map(|i| {
            format!(r#"{{"op":"copy","from":"/metadata","path":"/metadata/annotations/c{i}"}}"#)
        })
        .collect();
    let mut patch = String::from(r#"[{"op":"add","path":"/metadata/annotations","value":{}},"#);
    patch.push_str(&ops.join(","));
    patch.push(']');
    for dry in ["", "?dryRun=All"] {
        let a = s.request(
            "PATCH",
            &format!("{CMS}/p{dry}"),
            "application/json-patch+json",
            patch.as_bytes(),
        );
        assert_status(&a, 422, "Invalid", "accumulated size increase of copy");
        assert!(a.body.len() < 10_000, "{} bytes", a.body.len());
    }
    // More operations than upstream allows.
    let many = format!(
        "[{}]",
        vec![r#"{"op":"test","path":"/kind","value":"ConfigMap"}"#; 10_001].join(",")
    );
    let a = s.request(
        "PATCH",
        &format!("{CMS}/p"),
        "application/json-patch+json",
        many.as_bytes(),
    );
    assert_status(
        &a,
        413,
        "RequestEntityTooLarge",
        "The allowed maximum operations in a JSON patch is 10000, got 10001",
    );
    // Nothing was written.
    let cm = get(&s, &format!("{CMS}/p")).json();
    assert!(cm["metadata"].get("annotations").is_none(), "{cm}");
    assert_eq!(cm["metadata"]["resourceVersion"], rv);
    assert_healthy_and_bounded(&s, PEAK_LIMIT);
}

#[test]
fn strategic_merge_patches_of_many_finalizers_are_linear() {
    let s = server();
    let a = s.request(
        "POST",
        CMS,
        "application/json",
        br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"f"}}"#,
    );
    assert_eq!(a.code, 201, "{}", a.body);
    let fins: Vec<String> = (0..60_000)
        .map(|i| format!("\"example.com/f{i}\""))
        .collect();
    let patch = format!(
        r#"{{"metadata":{{"finalizers":[{}],"$setElementOrder/finalizers":[{}]}}}}"#,
        fins.join(","),
        fins.join(",")
    );
    let a = s.request(
        "PATCH",
        &format!("{CMS}/f?dryRun=All"),
        "application/strategic-merge-patch+json",
        patch.as_bytes(),
    );
    assert_eq!(a.code, 200, "{}", &a.body[..a.body.len().min(2000)]);
    assert_eq!(
        a.json()["metadata"]["finalizers"].as_array().map(Vec::len),
        Some(60_000)
    );
    // Dry run: nothing was written.
    assert!(get(&s, &format!("{CMS}/f")).json()["metadata"]
        .get("finalizers")
        .is_none());
    assert_healthy_and_bounded(&s, PEAK_LIMIT);
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A length-delimited field.
fn field(out: &mut Vec<u8>, tag: u32, bytes: &[u8]) {
    varint(out, u64::from(tag) << 3 | 2);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// A `k8s\0` body of `raw` as `kind` of `api_version`.
fn envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
    let mut tm = Vec::new();
    field(&mut tm, 1, api_version.as_bytes());
    field(&mut tm, 2, kind.as_bytes());
    let mut body = b"k8s\0".to_vec();
    field(&mut body, 1, &tm);
    field(&mut body, 2, raw);
    body
}

#[test]
fn protobuf_bodies_are_bounded() {
    let s = server();
    // A DeploymentList of 200k empty items sent to deployments: refused from the envelope.
    let mut list = Vec::new();
    for _ in 0..200_000 {
        field(&mut list, 2, &[]);
    }
    let a = s.request(
        "POST",
        "/apis/apps/v1/namespaces/default/deployments",
        PB,
        &envelope("apps/v1", "DeploymentList", &list),
    );
    assert_status(
        &a,
        400,
        "BadRequest",
        "the kind in the data (DeploymentList) does not match the expected kind (Deployment)",
    );
    // A pod of a million empty containers (2 MB on the wire).
    let mut meta = Vec::new();
    field(&mut meta, 1, b"many");
    let mut spec = Vec::new();
    for _ in 0..1_000_000 {
        field(&mut spec, 2, &[]);
    }
    let mut pod = Vec::new();
    field(&mut pod, 1, &meta);
    field(&mut pod, 2, &spec);
    let a = s.request("POST", PODS, PB, &envelope("v1", "Pod", &pod));
    assert_status(&a, 413, "RequestEntityTooLarge", "decodes to more than");
    assert_eq!(get(&s, &format!("{PODS}/many")).code, 404);
    assert_healthy_and_bounded(&s, PEAK_LIMIT);
}

#[test]
fn json_bodies_of_many_empty_containers_get_a_bounded_answer() {
    let s = server();
    let containers = vec!["{}"; 300_000].join(",");
    let body = format!(
        r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"many"}},"spec":{{"containers":[{containers}]}}}}"#
    );
    let a = s.request("POST", PODS, "application/json", body.as_bytes());
    assert_status(&a, 422, "Invalid", "more errors");
    assert!(a.body.len() < 100_000, "{} bytes", a.body.len());
    assert!(
        a.json()["details"]["causes"].as_array().map(Vec::len) <= Some(100),
        "too many causes"
    );
    // A million empty containers (3 MB): more objects than defaults may be given to, refused
    // before any is (they would take ~900 MiB).
    let containers = vec!["{}"; 999_000].join(",");
    let body = format!(
        r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"many"}},"spec":{{"containers":[{containers}]}}}}"#
    );
    let a = s.request("POST", PODS, "application/json", body.as_bytes());
    assert_status(
        &a,
        413,
        "RequestEntityTooLarge",
        "decodes to more than 333333 objects",
    );
    // More values than any object needs: refused while decoding.
    let many = format!(
        r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"many"}},"x":[{}]}}"#,
        vec!["1"; 1_100_000].join(",")
    );
    let a = s.request("POST", CMS, "application/json", many.as_bytes());
    assert_status(&a, 413, "RequestEntityTooLarge", "decodes to more than");
    assert_eq!(get(&s, &format!("{PODS}/many")).code, 404);
    assert_eq!(get(&s, &format!("{CMS}/many")).code, 404);
    assert_healthy_and_bounded(&s, PEAK_LIMIT_DEFAULTED);
}
