//! What kubectl never sends: YAML bodies, broken JSON/YAML/protobuf, unknown kinds, the wrong
//! apiVersion, oversized bodies, invalid names. Each gets the right `Status`, nothing is
//! written, and the server keeps serving.

use std::path::Path;

use rudder_testkit::RudderServer;

const CMS: &str = "/api/v1/namespaces/default/configmaps";

fn server() -> RudderServer {
    RudderServer::start(Path::new(env!("CARGO_BIN_EXE_rudder")), &[]).expect("start rudder server")
}

/// Asserts a Failure Status with this code, reason and message fragment.
fn assert_status(a: &rudder_testkit::Answer, code: u16, reason: &str, message: &str) {
    assert_eq!(a.code, code, "{}", a.body);
    let st = a.json();
    assert_eq!(st["kind"], "Status", "{st}");
    assert_eq!(st["status"], "Failure", "{st}");
    assert_eq!(st["code"], code, "{st}");
    assert_eq!(st["reason"], reason, "{st}");
    let m = st["message"].as_str().unwrap_or_default();
    assert!(m.contains(message), "{message:?} not in {m:?}");
}

fn configmap_names(s: &RudderServer) -> String {
    s.kubectl(&["get", "cm", "-o", "name"]).ok()
}

#[test]
fn yaml_bodies_are_accepted() {
    let s = server();
    let a = s.request(
        "POST",
        CMS,
        "application/yaml",
        b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-yaml\ndata:\n  k: v\n",
    );
    assert_eq!(a.code, 201, "{}", a.body);
    assert_eq!(a.json()["data"]["k"], "v");
    let a = s.request(
        "PUT",
        &format!("{CMS}/from-yaml"),
        "application/yaml",
        b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: from-yaml}\ndata: {k: w}\n",
    );
    assert_eq!(a.code, 200, "{}", a.body);
    let v = s
        .kubectl(&["get", "cm", "from-yaml", "-o", "jsonpath={.data.k}"])
        .ok();
    assert_eq!(v, "w");
}

#[test]
fn broken_and_wrong_bodies_are_refused_and_write_nothing() {
    let s = server();
    let cases: &[(&str, &[u8], u16, &str, &str)] = &[
        (
            "application/json",
            b"{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",",
            400,
            "BadRequest",
            "error decoding the request body as JSON",
        ),
        (
            "application/json",
            b"[1,2,3]",
            400,
            "BadRequest",
            "must be a JSON object",
        ),
        (
            "application/yaml",
            b"apiVersion: v1\nkind: [ConfigMap\n",
            400,
            "BadRequest",
            "error decoding the request body as YAML",
        ),
        (
            "application/vnd.kubernetes.protobuf",
            b"k8s\x00\x0a\xff\xff\xff",
            400,
            "BadRequest",
            "protobuf",
        ),
        (
            "application/vnd.kubernetes.protobuf",
            b"not protobuf at all",
            400,
            "BadRequest",
            "protobuf",
        ),
        (
            "application/json",
            br#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"x"}}"#,
            400,
            "BadRequest",
            "the kind in the data (Secret) does not match the expected kind (ConfigMap)",
        ),
        (
            "application/json",
            br#"{"apiVersion":"v1","kind":"NoSuchKind","metadata":{"name":"x"}}"#,
            400,
            "BadRequest",
            "NoSuchKind",
        ),
        (
            "application/json",
            br#"{"apiVersion":"apps/v1","kind":"ConfigMap","metadata":{"name":"x"}}"#,
            400,
            "BadRequest",
            "the API version in the data (apps/v1) does not match the expected API version (v1)",
        ),
        (
            "application/json",
            br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"Not_A_Name"}}"#,
            422,
            "Invalid",
            "ConfigMap \"Not_A_Name\" is invalid: metadata.name: Invalid value: \"Not_A_Name\"",
        ),
        (
            "application/json",
            br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x","labels":{"a b":"c"}}}"#,
            422,
            "Invalid",
            "metadata.labels: Invalid value: \"a b\"",
        ),
        (
            "text/plain",
            b"hello",
            415,
            "UnsupportedMediaType",
            "text/plain",
        ),
    ];
    for (ct, body, code, reason, message) in cases {
        let a = s.request("POST", CMS, ct, body);
        assert_status(&a, *code, reason, message);
    }
    // More than the 3 MiB a request may carry.
    let mut big =
        br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"big"},"data":{"k":""#
            .to_vec();
    big.extend(std::iter::repeat_n(b'a', 4 * 1024 * 1024));
    big.extend(br#""}}"#);
    let a = s.request("POST", CMS, "application/json", &big);
    assert_status(&a, 413, "RequestEntityTooLarge", "larger than");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.json");
    std::fs::write(&file, &big).unwrap();
    let err = s.kubectl(&["create", "-f", file.to_str().unwrap()]).fails();
    assert!(
        err.contains("Error from server (RequestEntityTooLarge)"),
        "{err}"
    );
    // Nothing was written, and the server still serves.
    assert_eq!(configmap_names(&s), "");
    s.kubectl(&["create", "configmap", "ok", "--from-literal=a=b"])
        .ok();
    assert_eq!(configmap_names(&s).trim(), "configmap/ok");
    // Updates and patches with broken bodies leave the object alone.
    let a = s.request("PUT", &format!("{CMS}/ok"), "application/json", b"{");
    assert_status(&a, 400, "BadRequest", "JSON");
    let a = s.request(
        "PATCH",
        &format!("{CMS}/ok"),
        "application/merge-patch+json",
        b"{\"data\":",
    );
    assert_status(&a, 400, "BadRequest", "merge patch");
    let a = s.request(
        "PATCH",
        &format!("{CMS}/ok"),
        "application/json-patch+json",
        br#"[{"op":"frobnicate","path":"/data/a"}]"#,
    );
    assert_status(&a, 400, "BadRequest", "invalid JSON patch");
    let v = s
        .kubectl(&["get", "cm", "ok", "-o", "jsonpath={.data.a}"])
        .ok();
    assert_eq!(v, "b");
    // Unknown resources and groups.
    let a = s.request(
        "POST",
        "/api/v1/namespaces/default/widgets",
        "application/json",
        b"{}",
    );
    assert_status(&a, 404, "NotFound", "");
    let a = s.request(
        "POST",
        "/apis/example.com/v1/namespaces/default/widgets",
        "application/json",
        b"{}",
    );
    assert_status(&a, 404, "NotFound", "");
}

#[test]
fn escaped_path_segments_are_decoded_as_go_decodes_them() {
    let s = server();
    s.kubectl(&["create", "configmap", "a-b", "--from-literal=k=v"])
        .ok();
    // `%2D` is `-`: the same object as kubectl's.
    let a = s.request("GET", &format!("{CMS}/a%2Db"), "application/json", b"");
    assert_eq!(a.code, 200, "{}", a.body);
    assert_eq!(a.json()["metadata"]["name"], "a-b");
    let a = s.request(
        "GET",
        "/api/v1/namespaces/de%66ault/configmaps/%61-b",
        "application/json",
        b"",
    );
    assert_eq!(a.code, 200, "{}", a.body);
    // An update through the escaped path matches the name in the body.
    let mut cm = a.json();
    cm["data"]["k"] = "w".into();
    let a = s.request(
        "PUT",
        &format!("{CMS}/a%2db"),
        "application/json",
        cm.to_string().as_bytes(),
    );
    assert_eq!(a.code, 200, "{}", a.body);
    let v = s
        .kubectl(&["get", "cm", "a-b", "-o", "jsonpath={.data.k}"])
        .ok();
    assert_eq!(v, "w");
    // A decoded name that no object has is named decoded in the NotFound.
    let a = s.request("GET", &format!("{CMS}/a%20b"), "application/json", b"");
    assert_status(&a, 404, "NotFound", r#"configmaps "a b" not found"#);
    assert_eq!(a.json()["details"]["name"], "a b");
    // kubectl escapes such a name itself; the server reads it back.
    let out = s.kubectl(&["get", "configmap", "a b"]);
    assert!(
        out.stderr().contains(r#"configmaps "a b" not found"#),
        "{}",
        out.stderr()
    );
    // `%2F` separates segments as `/` does (Go's URL.Path): no such route.
    let a = s.request("GET", &format!("{CMS}/a%2Fb"), "application/json", b"");
    assert_eq!(a.code, 404, "{}", a.body);
    // Escaped UTF-8 is decoded too.
    let a = s.request("GET", &format!("{CMS}/%E2%82%AC"), "application/json", b"");
    assert_status(&a, 404, "NotFound", "configmaps \"\u{20ac}\" not found");
    // A malformed escape: Go's server refuses the request line.
    for bad in ["a%zz", "a%2", "a%"] {
        let a = s.request("GET", &format!("{CMS}/{bad}"), "application/json", b"");
        assert_eq!(a.code, 400, "{bad}: {}", a.body);
        assert_eq!(a.body, "400 Bad Request", "{bad}");
    }
    assert_eq!(configmap_names(&s).trim(), "configmap/a-b");
}
