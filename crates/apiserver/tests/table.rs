//! Tables of lists: the fast path (rows written from the stored objects, decoding only what
//! the printer reads) answers exactly what the general path (whole objects decoded, used when
//! a selector filters the list) answers, for pods in several states and for other kinds, with
//! every `includeObject`.

use http_body_util::BodyExt;
use serde_json::{json, Value};

mod common;
use common::{admin, start};

async fn call(
    client: &kube::Client,
    method: &str,
    uri: &str,
    body: Option<Value>,
) -> (u16, Vec<u8>) {
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(uri)
        .header("accept", "application/json;as=Table;v=v1;g=meta.k8s.io");
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let body = body
        .map(|b| serde_json::to_vec(&b).expect("json"))
        .unwrap_or_default();
    let resp = client
        .send(req.body(kube::client::Body::from(body)).expect("request"))
        .await
        .expect("send");
    let code = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (code, bytes.to_vec())
}

/// The table with its Age cells blanked (the two reads may straddle a second).
fn without_ages(mut table: Value) -> Value {
    let ages: Vec<usize> = table["columnDefinitions"]
        .as_array()
        .expect("columns")
        .iter()
        .enumerate()
        .filter(|(_, c)| c["name"] == "Age")
        .map(|(i, _)| i)
        .collect();
    for row in table["rows"].as_array_mut().expect("rows") {
        for &i in &ages {
            row["cells"][i] = Value::Null;
        }
    }
    table
}

fn pod(name: &str, extra_spec: Value) -> Value {
    let mut spec = json!({"containers": [
        {"name": "app", "image": "busybox", "env": [{"name": "A", "value": "<&>"}]},
        {"name": "side", "image": "busybox"},
    ]});
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra_spec.as_object()) {
        s.extend(e.clone());
    }
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"all": "yes"},
                     "annotations": {"note": "a < b & c > d"}},
        "spec": spec,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fast_tables_are_the_general_tables() {
    let dir = tempfile::tempdir().expect("temp dir");
    let api = start(dir.path()).await;
    let c = api.client(admin(), "default");
    let pods = "/api/v1/namespaces/default/pods";
    let specs = [
        ("plain", json!({})),
        (
            "init",
            json!({"initContainers": [
                {"name": "setup", "image": "busybox"},
                {"name": "proxy", "image": "busybox", "restartPolicy": "Always"},
            ], "readinessGates": [{"conditionType": "example.com/ready"}]}),
        ),
        ("bound", json!({"nodeName": "n1"})),
    ];
    for (name, extra) in specs {
        let (code, body) = call(&c, "POST", pods, Some(pod(name, extra))).await;
        assert_eq!(code, 201, "{}", String::from_utf8_lossy(&body));
    }
    // Statuses that exercise the printer: restarts, waiting and terminated reasons, IPs.
    let now = "2026-01-01T00:00:00Z";
    let statuses = [
        (
            "bound",
            json!({"phase": "Running", "podIP": "10.42.0.5", "podIPs": [{"ip": "10.42.0.5"}],
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [
                {"name": "app", "ready": true, "restartCount": 3, "image": "busybox", "imageID": "",
                 "state": {"running": {"startedAt": now}},
                 "lastState": {"terminated": {"exitCode": 1, "finishedAt": now}}},
                {"name": "side", "ready": false, "restartCount": 0, "image": "busybox", "imageID": "",
                 "state": {"waiting": {"reason": "CrashLoopBackOff"}}},
            ]}),
        ),
        (
            "init",
            json!({"phase": "Pending",
            "initContainerStatuses": [
                {"name": "setup", "ready": false, "restartCount": 1, "image": "busybox", "imageID": "",
                 "state": {"terminated": {"exitCode": 2}}},
            ]}),
        ),
        ("plain", json!({"phase": "Succeeded"})),
    ];
    for (name, status) in statuses {
        let req = hyper::Request::builder()
            .method("PATCH")
            .uri(format!("{pods}/{name}/status"))
            .header("content-type", "application/merge-patch+json")
            .body(kube::client::Body::from(
                serde_json::to_vec(&json!({"status": status})).expect("json"),
            ))
            .expect("request");
        let resp = c.send(req).await.expect("send");
        assert_eq!(resp.status().as_u16(), 200, "status of {name}");
    }
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "cm", "labels": {"all": "yes"}}, "data": {"a": "1", "b": "2"}});
    let (code, _) = call(
        &c,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        Some(cm),
    )
    .await;
    assert_eq!(code, 201);
    let deploy = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "d", "labels": {"all": "yes"}},
        "spec": {"selector": {"matchLabels": {"a": "b"}},
                 "template": {"metadata": {"labels": {"a": "b"}},
                              "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}});
    let (code, _) = call(
        &c,
        "POST",
        "/apis/apps/v1/namespaces/default/deployments",
        Some(deploy),
    )
    .await;
    assert_eq!(code, 201);

    for collection in [
        pods,
        "/api/v1/pods",
        "/api/v1/namespaces/default/configmaps",
        "/apis/apps/v1/namespaces/default/deployments",
    ] {
        for include in [
            "",
            "&includeObject=None",
            "&includeObject=Metadata",
            "&includeObject=Object",
        ] {
            let (code, fast) =
                call(&c, "GET", &format!("{collection}?limit=500{include}"), None).await;
            assert_eq!(code, 200);
            let (code, general) = call(
                &c,
                "GET",
                &format!("{collection}?limit=500&labelSelector=all%3Dyes{include}"),
                None,
            )
            .await;
            assert_eq!(code, 200);
            let fast_v: Value = serde_json::from_slice(&fast).expect("fast json");
            let general_v: Value = serde_json::from_slice(&general).expect("general json");
            let rows = fast_v["rows"].as_array().map_or(0, Vec::len);
            assert!(rows >= 1, "{collection}: {fast_v}");
            assert_eq!(
                without_ages(fast_v),
                without_ages(general_v),
                "{collection}{include}"
            );
            // Go's escaping of <, > and & (`<none>` cells, the annotation).
            let text = String::from_utf8_lossy(&fast);
            assert!(!text.contains('<') && !text.contains('&'), "{text}");
            assert_eq!(fast.last(), Some(&b'\n'));
        }
    }
}
