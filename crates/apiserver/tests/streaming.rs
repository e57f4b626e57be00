//! Streaming lists (`watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan`) as
//! an API server with the WatchList feature serves them: every current object ADDED, then the
//! bookmark annotated `k8s.io/initial-events-end`, then the watch; the list options upstream
//! refuses are 422 with its messages. Checked with kube-runtime's streaming-list watcher (in
//! process and over HTTPS) and on the wire.

use base64::Engine as _;
use futures::{AsyncBufReadExt, StreamExt, TryStreamExt};
use http_body_util::BodyExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, PostParams};
use kube::runtime::watcher;
use serde_json::{json, Value};

mod common;
use common::{admin, https_client, start};

async fn namespace_with_configmaps(client: &kube::Client, ns: &str, names: &[&str]) {
    let nss: Api<Namespace> = Api::all(client.clone());
    let n: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}})).expect("ns");
    nss.create(&PostParams::default(), &n).await.expect("ns");
    for name in names {
        create_configmap(client, ns, name).await;
    }
}

async fn create_configmap(client: &kube::Client, ns: &str, name: &str) -> ConfigMap {
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": name}, "data": {"k": "v"}}))
            .expect("configmap");
    cms.create(&PostParams::default(), &cm)
        .await
        .expect("create")
}

/// kube-runtime's watcher in streaming-list mode: Init, one InitApply per object, InitDone
/// (which it sends only on the annotated bookmark), then live events.
async fn streaming_watcher(client: kube::Client, ns: &str) {
    let names = ["a", "b", "c"];
    namespace_with_configmaps(&client, ns, &names).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let mut events = watcher(cms, watcher::Config::default().streaming_lists()).boxed();
    let mut initial = Vec::new();
    loop {
        match events.try_next().await.expect("watch").expect("event") {
            watcher::Event::Init => {}
            watcher::Event::InitApply(cm) => initial.push(cm.metadata.name.unwrap_or_default()),
            watcher::Event::InitDone => break,
            other => panic!("before InitDone: {other:?}"),
        }
    }
    initial.sort();
    assert_eq!(initial, names, "every object once, before the end bookmark");
    create_configmap(&client, ns, "d").await;
    match events.try_next().await.expect("watch").expect("event") {
        watcher::Event::Apply(cm) => assert_eq!(cm.metadata.name.as_deref(), Some("d")),
        other => panic!("expected the new object, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_runtime_streaming_lists_in_process_and_over_https() {
    let dir = tempfile::tempdir().expect("temp dir");
    let api = start(dir.path()).await;
    streaming_watcher(api.client(admin(), "default"), "in-process").await;
    streaming_watcher(https_client(&api).await, "over-https").await;
}

fn get(uri: &str) -> hyper::Request<Vec<u8>> {
    hyper::Request::get(uri).body(Vec::new()).expect("request")
}

/// The first `n` lines of a watch, parsed.
async fn watch_lines(client: &kube::Client, uri: &str, n: usize) -> Vec<Value> {
    let body = client.request_stream(get(uri)).await.expect("watch");
    let lines = Box::pin(body).lines();
    lines
        .take(n)
        .map(|l| serde_json::from_str(&l.expect("line")).expect("json line"))
        .collect()
        .await
}

/// A status answer's code and bytes.
async fn raw(client: &kube::Client, uri: &str) -> (u16, String) {
    let resp = client
        .send(get(uri).map(kube::client::Body::from))
        .await
        .expect("send");
    let code = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (code, String::from_utf8(bytes.to_vec()).expect("utf-8"))
}

fn names_of(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e["object"]["metadata"]["name"].as_str().unwrap_or(""))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_list_on_the_wire() {
    let dir = tempfile::tempdir().expect("temp dir");
    let api = start(dir.path()).await;
    let client = api.client(admin(), "default");
    namespace_with_configmaps(&client, "w", &["a", "b"]).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "w");
    let listed = cms.list(&Default::default()).await.expect("list");
    let list_rv: i64 = listed
        .metadata
        .resource_version
        .as_deref()
        .and_then(|r| r.parse().ok())
        .expect("list rv");
    let base = "/api/v1/namespaces/w/configmaps?watch=true&sendInitialEvents=true\
                &resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true";

    // From no resourceVersion and from one: both objects ADDED, then the marked bookmark.
    for uri in [
        base.to_string(),
        format!("{base}&resourceVersion={list_rv}"),
    ] {
        let events = watch_lines(&client, &uri, 3).await;
        let types: Vec<_> = events.iter().map(|e| e["type"].as_str()).collect();
        assert_eq!(
            types,
            [Some("ADDED"), Some("ADDED"), Some("BOOKMARK")],
            "{uri}"
        );
        assert_eq!(&names_of(&events)[..2], ["a", "b"]);
        let bookmark = &events[2]["object"];
        assert_eq!(bookmark["kind"], "ConfigMap");
        assert_eq!(bookmark["apiVersion"], "v1");
        let meta = &bookmark["metadata"];
        assert_eq!(meta["annotations"]["k8s.io/initial-events-end"], "true");
        let rv: i64 = meta["resourceVersion"]
            .as_str()
            .and_then(|r| r.parse().ok())
            .expect("bookmark rv");
        assert!(rv >= list_rv, "bookmark at {rv}, list at {list_rv}");
        let blueprint = meta["annotations"]["k8s.io/initial-events-list-blueprint"]
            .as_str()
            .expect("blueprint");
        let blueprint = base64::engine::general_purpose::STANDARD
            .decode(blueprint)
            .expect("base64");
        assert_eq!(
            String::from_utf8(blueprint).expect("utf-8"),
            "{\"kind\":\"ConfigMapList\",\"apiVersion\":\"v1\",\"metadata\":{},\"items\":null}\n"
        );
    }

    // As PartialObjectMetadata, the blueprint is a PartialObjectMetadataList.
    let mut req = get(base);
    req.headers_mut().insert(
        "accept",
        "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
            .parse()
            .expect("header"),
    );
    let body = client.request_stream(req).await.expect("watch");
    let events: Vec<Value> = Box::pin(body)
        .lines()
        .take(3)
        .map(|l| serde_json::from_str(&l.expect("line")).expect("json"))
        .collect()
        .await;
    assert_eq!(events[0]["object"]["kind"], "PartialObjectMetadata");
    let bookmark = &events[2]["object"];
    assert_eq!(bookmark["kind"], "PartialObjectMetadata");
    let blueprint = base64::engine::general_purpose::STANDARD
        .decode(
            bookmark["metadata"]["annotations"]["k8s.io/initial-events-list-blueprint"]
                .as_str()
                .expect("blueprint"),
        )
        .expect("base64");
    assert!(
        String::from_utf8_lossy(&blueprint).starts_with(
            "{\"kind\":\"PartialObjectMetadataList\",\"apiVersion\":\"meta.k8s.io/v1\""
        ),
        "{}",
        String::from_utf8_lossy(&blueprint)
    );

    // A streaming list is not served as a Table: with nothing else acceptable, 406.
    let mut req = get(base).map(kube::client::Body::from);
    req.headers_mut().insert(
        "accept",
        "application/json;as=Table;g=meta.k8s.io;v=v1"
            .parse()
            .expect("header"),
    );
    let resp = client.send(req).await.expect("send");
    assert_eq!(resp.status().as_u16(), 406);

    // Without bookmarks: the objects, then straight on to the changes.
    let client2 = client.clone();
    let no_bookmarks = tokio::spawn(async move {
        watch_lines(
            &client2,
            "/api/v1/namespaces/w/configmaps?watch=true&sendInitialEvents=true\
             &resourceVersionMatch=NotOlderThan",
            3,
        )
        .await
    });
    // sendInitialEvents=false from no resourceVersion: only what happens from now on.
    let client3 = client.clone();
    let only_new = tokio::spawn(async move {
        watch_lines(
            &client3,
            "/api/v1/namespaces/w/configmaps?watch=true&sendInitialEvents=false\
             &resourceVersionMatch=NotOlderThan",
            1,
        )
        .await
    });
    // Both watches are established once a new object reaches them; make objects until then.
    let mut made = 0;
    while !(no_bookmarks.is_finished() && only_new.is_finished()) {
        create_configmap(&client, "w", &format!("new-{made}")).await;
        made += 1;
        assert!(made < 1000, "the watches never saw the new objects");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let events = no_bookmarks.await.expect("task");
    assert_eq!(names_of(&events), ["a", "b", "new-0"]);
    assert!(events.iter().all(|e| e["type"] == "ADDED"));
    let events = only_new.await.expect("task");
    assert_eq!(events[0]["type"], "ADDED");
    assert!(
        names_of(&events)[0].starts_with("new-"),
        "no initial events: {events:?}"
    );

    // A resourceVersion the store has not reached: the watch's only event is a 504.
    let far = list_rv + 1_000_000;
    let events = watch_lines(&client, &format!("{base}&resourceVersion={far}"), 2).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["type"], "ERROR");
    let status = &events[0]["object"];
    assert_eq!(status["code"], 504);
    assert_eq!(status["reason"], "Timeout");
    assert!(
        status["message"]
            .as_str()
            .unwrap_or("")
            .starts_with(&format!(
                "Timeout: Too large resource version: {far}, current: "
            )),
        "{status}"
    );
    assert_eq!(
        status["details"]["causes"][0]["reason"],
        "ResourceVersionTooLarge"
    );
    assert_eq!(status["details"]["retryAfterSeconds"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_options_upstream_refuses_are_422() {
    let dir = tempfile::tempdir().expect("temp dir");
    let api = start(dir.path()).await;
    let client = api.client(admin(), "default");
    let path = "/api/v1/namespaces/default/configmaps";
    let forbidden = |detail: &str| {
        json!({"reason": "FieldValueForbidden", "message": format!("Forbidden: {detail}"),
               "field": "resourceVersionMatch"})
    };
    let cases: Vec<(&str, Vec<Value>)> = vec![
        (
            "sendInitialEvents=true",
            vec![json!({"reason": "FieldValueForbidden",
                "message": "Forbidden: sendInitialEvents is forbidden for list",
                "field": "sendInitialEvents"})],
        ),
        (
            "watch=true&sendInitialEvents=true",
            vec![forbidden(
                "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
            )],
        ),
        (
            "watch=1&sendInitialEvents=false&resourceVersionMatch=Exact&resourceVersion=5",
            vec![
                forbidden(
                    "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
                ),
                json!({"reason": "FieldValueNotSupported",
                    "message": "Unsupported value: \"Exact\": supported values: \"NotOlderThan\"",
                    "field": "resourceVersionMatch"}),
            ],
        ),
        (
            "watch=true&resourceVersionMatch=NotOlderThan&resourceVersion=5",
            vec![forbidden(
                "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
            )],
        ),
        (
            "resourceVersionMatch=NotOlderThan",
            vec![forbidden(
                "resourceVersionMatch is forbidden unless resourceVersion is provided",
            )],
        ),
        (
            "resourceVersionMatch=Exact&resourceVersion=0",
            vec![forbidden(
                "resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"",
            )],
        ),
        (
            "resourceVersionMatch=Newest&resourceVersion=1",
            vec![json!({"reason": "FieldValueNotSupported",
                "message": "Unsupported value: \"Newest\": supported values: \"Exact\", \"NotOlderThan\", \"\"",
                "field": "resourceVersionMatch"})],
        ),
    ];
    for (query, causes) in cases {
        let (code, body) = raw(&client, &format!("{path}?{query}")).await;
        assert_eq!(code, 422, "{query}: {body}");
        let status: Value = serde_json::from_str(&body).expect("status");
        let texts: Vec<String> = causes
            .iter()
            .map(|c| {
                format!(
                    "{}: {}",
                    c["field"].as_str().unwrap_or(""),
                    c["message"].as_str().unwrap_or("")
                )
            })
            .collect();
        let message = match texts.len() {
            1 => format!("ListOptions.meta.k8s.io \"\" is invalid: {}", texts[0]),
            _ => format!(
                "ListOptions.meta.k8s.io \"\" is invalid: [{}]",
                texts.join(", ")
            ),
        };
        assert_eq!(
            status,
            json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": message, "reason": "Invalid",
                "details": {"group": "meta.k8s.io", "kind": "ListOptions", "causes": causes},
                "code": 422,
            }),
            "{query}"
        );
    }
    // What upstream accepts still works: a list at least as new as a revision, and a plain
    // watch from a revision.
    let (code, body) = raw(
        &client,
        &format!("{path}?resourceVersion=1&resourceVersionMatch=NotOlderThan"),
    )
    .await;
    assert_eq!(code, 200, "{body}");
}

/// A watch that resumes from a list's resourceVersion, after an unrelated write, and is the
/// first of its resource (so it starts the watch cache's feed) is served by the feed: the
/// store is watched once for the resource, not once more for this watcher.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_started_by_a_resuming_watch_reaches_back_to_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let api = start(dir.path()).await;
    let client = api.client(admin(), "default");
    namespace_with_configmaps(&client, "resume", &["a"]).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "resume");
    let listed = cms.list(&Default::default()).await.expect("list");
    let rv = listed.metadata.resource_version.expect("list revision");
    // Another resource moves the store's revision past the list's.
    let other: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client.clone(), "resume");
    let secret = serde_json::from_value(json!({"metadata": {"name": "s"}})).expect("secret");
    other
        .create(&PostParams::default(), &secret)
        .await
        .expect("secret");
    let uri = format!("/api/v1/namespaces/resume/configmaps?watch=true&resourceVersion={rv}");
    let body = client.request_stream(get(&uri)).await.expect("watch");
    let mut lines = Box::pin(body).lines();
    create_configmap(&client, "resume", "b").await;
    let line = lines.next().await.expect("an event").expect("line");
    let event: Value = serde_json::from_str(&line).expect("json");
    assert_eq!(event["type"], "ADDED");
    assert_eq!(event["object"]["metadata"]["name"], "b");
    let metrics = client.request_text(get("/metrics")).await.expect("scrape");
    let watches = metrics.lines().find_map(|l| {
        l.strip_prefix(r#"etcd_requests_total{operation="watch",type="configmaps"} "#)
    });
    assert_eq!(watches, Some("1"), "{metrics}");
}
