//! What kubectl never sends: YAML bodies, broken JSON/YAML/protobuf, unknown kinds, the wrong
//! apiVersion, oversized bodies, invalid names. Each gets the right `Status`, nothing is
//! written, and the server keeps serving.

use std::path::Path;

use rudder_testkit::RudderServer;

const CMS: &str = "/api/v1/namespaces/default/configmaps";

fn server() -> RudderServer {
    RudderServer::api_only(Path::new(env!("CARGO_BIN_EXE_rudder")), &[])
        .expect("start rudder server")
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

/// One request through curl with the admin certificate: (status, `Warning` header texts,
/// body).
fn request_with_warnings(
    s: &RudderServer,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> (u16, Vec<String>, serde_json::Value) {
    use std::io::Write as _;
    use std::process::{Command, Stdio};
    let tls = s.data_dir().join("server/tls");
    let mut child = Command::new("curl")
        .args([
            "-sS",
            "--http1.1",
            "-D",
            "-",
            "-X",
            method,
            "--data-binary",
            "@-",
        ])
        .arg("--cacert")
        .arg(tls.join("ca.crt"))
        .arg("--cert")
        .arg(tls.join("client-admin.crt"))
        .arg("--key")
        .arg(tls.join("client-admin.key"))
        .args(["-H", &format!("Content-Type: {content_type}")])
        .arg(format!("{}{path}", s.url))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run curl");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(body).expect("send body");
    drop(stdin);
    let out = child.wait_with_output().expect("curl output");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
    let mut lines = head.lines();
    let code = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {head}"));
    let warnings = lines
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| k.eq_ignore_ascii_case("warning"))
        .map(|(_, v)| {
            // `299 - "text"`, the text a JSON-quoted string.
            let quoted = v.trim().trim_start_matches("299 - ");
            serde_json::from_str::<String>(quoted).unwrap_or_else(|e| panic!("{v}: {e}"))
        })
        .collect();
    let body = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    (code, warnings, body)
}

#[test]
fn duplicate_keys_are_warned_of_or_refused_as_upstream_does() {
    let s = server();
    let json_dup = br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"dj","labels":{"l":"1","l":"2"}},"data":{"a":"1","a":"2"},"junk":{"x":1,"x":2},"junk":3}"#;
    // Strict: upstream's strict decoding error (unknown fields, then duplicates; a field both
    // unknown and duplicated is unknown only), nothing written.
    let (code, _, st) = request_with_warnings(
        &s,
        "POST",
        &format!("{CMS}?fieldValidation=Strict"),
        "application/json",
        json_dup,
    );
    assert_eq!(code, 400, "{st}");
    assert_eq!(st["reason"], "BadRequest");
    assert_eq!(
        st["message"],
        r#"ConfigMap in version "v1" cannot be handled as a ConfigMap: strict decoding error: unknown field "junk", duplicate field "metadata.labels.l", duplicate field "data.a""#
    );
    // Warn (the default): written, the last value winning, with a warning each.
    let (code, warnings, cm) = request_with_warnings(&s, "POST", CMS, "application/json", json_dup);
    assert_eq!(code, 201, "{cm}");
    assert_eq!(cm["data"]["a"], "2");
    assert_eq!(cm["metadata"]["labels"]["l"], "2");
    assert_eq!(
        warnings,
        [
            r#"unknown field "junk""#,
            r#"duplicate field "metadata.labels.l""#,
            r#"duplicate field "data.a""#,
        ]
    );
    // Ignore: no warnings.
    let body = String::from_utf8_lossy(json_dup).replace("\"dj\"", "\"dj2\"");
    let (code, warnings, _) = request_with_warnings(
        &s,
        "POST",
        &format!("{CMS}?fieldValidation=Ignore"),
        "application/json",
        body.as_bytes(),
    );
    assert_eq!((code, warnings.len()), (201, 0));

    // YAML: goyaml's lines.
    let yaml_dup =
        b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: dy\ndata:\n  a: \"1\"\n  a: \"2\"\n";
    let (code, _, st) = request_with_warnings(
        &s,
        "POST",
        &format!("{CMS}?fieldValidation=Strict"),
        "application/yaml",
        yaml_dup,
    );
    assert_eq!(code, 400, "{st}");
    assert_eq!(
        st["message"],
        "ConfigMap in version \"v1\" cannot be handled as a ConfigMap: strict decoding error: yaml: unmarshal errors:\n  line 7: key \"a\" already set in map"
    );
    let (code, warnings, cm) = request_with_warnings(&s, "POST", CMS, "application/yaml", yaml_dup);
    assert_eq!(code, 201, "{cm}");
    assert_eq!(cm["data"]["a"], "2");
    assert_eq!(warnings, [r#"line 7: key "a" already set in map"#]);

    // Server-side apply: decoded leniently, then strictly.
    let apply =
        b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: da\ndata:\n  a: \"1\"\n  a: \"2\"\n";
    let path = format!("{CMS}/da?fieldManager=m");
    let (code, _, st) = request_with_warnings(
        &s,
        "PATCH",
        &format!("{path}&fieldValidation=Strict"),
        "application/apply-patch+yaml",
        apply,
    );
    assert_eq!(code, 400, "{st}");
    assert_eq!(st["reason"], "BadRequest");
    assert_eq!(
        st["message"],
        "error strict decoding patch: error converting YAML to JSON: yaml: unmarshal errors:\n  line 7: key \"a\" already set in map"
    );
    let (code, warnings, cm) =
        request_with_warnings(&s, "PATCH", &path, "application/apply-patch+yaml", apply);
    assert_eq!(code, 201, "{cm}");
    assert_eq!(cm["data"]["a"], "2");
    assert_eq!(warnings, [r#"line 7: key "a" already set in map"#]);
    // A JSON apply body is YAML too.
    let (code, warnings, _) = request_with_warnings(
        &s,
        "PATCH",
        &path,
        "application/apply-patch+yaml",
        br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"da"},"data":{"b":"1","b":"2"}}"#,
    );
    assert_eq!(code, 200);
    assert_eq!(warnings, [r#"line 1: key "b" already set in map"#]);

    // Merge patches are JSON: fields by path.
    let (code, warnings, cm) = request_with_warnings(
        &s,
        "PATCH",
        &format!("{CMS}/dj"),
        "application/merge-patch+json",
        br#"{"data":{"c":"1","c":"2"}}"#,
    );
    assert_eq!(code, 200, "{cm}");
    assert_eq!(cm["data"]["c"], "2");
    assert_eq!(warnings, [r#"duplicate field "data.c""#]);

    let names = configmap_names(&s);
    assert_eq!(
        names.lines().collect::<Vec<_>>(),
        [
            "configmap/da",
            "configmap/dj",
            "configmap/dj2",
            "configmap/dy"
        ]
    );
}
