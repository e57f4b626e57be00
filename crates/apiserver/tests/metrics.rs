//! `/metrics`: the counters move by what was asked of the server, the label values stay
//! within the catalogue, and only masters may read it (401 without credentials, 403 for
//! others), as upstream's non-resource URL.

use futures::AsyncBufReadExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, PostParams};
use rudder_apiserver::pki::User;
use serde_json::json;

mod common;
use common::{admin, start};

fn get(uri: &str) -> hyper::Request<Vec<u8>> {
    hyper::Request::get(uri).body(Vec::new()).expect("request")
}

/// One scrape, as (series, value) pairs: `name{labels}` exactly as written.
async fn scrape(client: &kube::Client) -> Vec<(String, f64)> {
    let text = client.request_text(get("/metrics")).await.expect("scrape");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

/// The value of the one series of `name` with exactly these labels (0 when absent).
fn value(samples: &[(String, f64)], name: &str, labels: &[(&str, &str)]) -> f64 {
    // Sorted by name, as Go writes them; a histogram's `le` comes last.
    let mut sorted: Vec<_> = labels.iter().filter(|(k, _)| *k != "le").cloned().collect();
    sorted.sort();
    sorted.extend(labels.iter().filter(|(k, _)| *k == "le"));
    let want: Vec<String> = sorted.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    let series = format!("{name}{{{}}}", want.join(","));
    samples
        .iter()
        .find(|(s, _)| *s == series)
        .map(|(_, v)| *v)
        .unwrap_or(0.0)
}

fn request(
    verb: &'static str,
    code: &'static str,
    dry_run: &'static str,
) -> Vec<(&'static str, &'static str)> {
    let scope = match verb {
        "LIST" | "WATCH" => "namespace",
        _ => "resource",
    };
    let mut l = vec![
        ("component", "apiserver"),
        ("dry_run", dry_run),
        ("group", ""),
        ("resource", "configmaps"),
        ("scope", scope),
        ("subresource", ""),
        ("verb", verb),
        ("version", "v1"),
    ];
    if !code.is_empty() {
        l.push(("code", code));
    }
    l
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_move_by_what_was_asked() {
    let dir = tempfile::tempdir().expect("temp dir");
    let api = start(dir.path()).await;
    let client = api.client(admin(), "default");
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let before = scrape(&client).await;

    let cm = |name: &str| -> ConfigMap {
        serde_json::from_value(json!({"metadata": {"name": name}, "data": {"k": "v"}}))
            .expect("configmap")
    };
    for name in ["a", "b", "c"] {
        cms.create(&PostParams::default(), &cm(name))
            .await
            .expect("create");
    }
    assert!(cms.create(&PostParams::default(), &cm("a")).await.is_err());
    let dry = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    cms.create(&dry, &cm("d")).await.expect("dry run");
    cms.get("a").await.expect("get");
    assert!(cms.get("nope").await.is_err());
    cms.list(&ListParams::default()).await.expect("list");
    cms.list(&ListParams::default()).await.expect("list");
    // Paths the client makes up are answered but are no series of their own.
    let bogus = client
        .request_text(get("/api/v1/namespaces/default/made-up-things"))
        .await;
    assert!(bogus.is_err());

    let after = scrape(&client).await;
    let delta = |name: &str, labels: &[(&str, &str)]| {
        value(&after, name, labels) - value(&before, name, labels)
    };
    let total = "apiserver_request_total";
    assert_eq!(delta(total, &request("POST", "201", "")), 3.0);
    assert_eq!(delta(total, &request("POST", "409", "")), 1.0);
    assert_eq!(delta(total, &request("POST", "201", "All")), 1.0);
    assert_eq!(delta(total, &request("GET", "200", "")), 1.0);
    assert_eq!(delta(total, &request("GET", "404", "")), 1.0);
    assert_eq!(delta(total, &request("LIST", "200", "")), 2.0);
    let count = "apiserver_request_duration_seconds_count";
    assert_eq!(delta(count, &request("POST", "", "")), 4.0);
    assert_eq!(delta(count, &request("LIST", "", "")), 2.0);
    let mut inf = request("POST", "", "");
    inf.push(("le", "+Inf"));
    assert_eq!(
        delta("apiserver_request_duration_seconds_bucket", &inf),
        4.0
    );
    // The store saw four creates (one refused) and no more: the dry run never reached it.
    let creates = [("operation", "create"), ("type", "configmaps")];
    assert_eq!(delta("etcd_requests_total", &creates), 4.0);
    assert_eq!(delta("etcd_request_duration_seconds_count", &creates), 4.0);
    assert!(
        after.iter().all(|(s, _)| !s.contains("made-up-things")),
        "a made-up resource is no label value"
    );
    // The scrape itself is the one read in flight.
    assert_eq!(
        value(
            &after,
            "apiserver_current_inflight_requests",
            &[("request_kind", "readOnly")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &after,
            "apiserver_current_inflight_requests",
            &[("request_kind", "mutating")]
        ),
        0.0
    );
    let process = |name: &str| {
        after
            .iter()
            .find(|(s, _)| s == name)
            .map(|(_, v)| *v)
            .unwrap_or_else(|| panic!("{name} missing"))
    };
    assert!(process("process_resident_memory_bytes") > 1e6);
    assert!(process("process_open_fds") >= 1.0);
    assert!(process("process_cpu_seconds_total") > 0.0);
    assert!(process("process_start_time_seconds") > 1.6e9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_are_long_running_until_they_end() {
    let dir = tempfile::tempdir().expect("temp dir");
    let api = start(dir.path()).await;
    let client = api.client(admin(), "default");
    let watching = "apiserver_longrunning_requests";
    let mut open = request("WATCH", "", "");
    open.retain(|(k, _)| *k != "dry_run");
    let before = scrape(&client).await;
    assert_eq!(value(&before, watching, &open), 0.0);

    let body = client
        .request_stream(get(
            "/api/v1/namespaces/default/configmaps?watch=true&allowWatchBookmarks=true",
        ))
        .await
        .expect("watch");
    let mut lines = Box::pin(body).lines();
    use futures::StreamExt;
    // The initial-events-end bookmark: the watch is established.
    let first = lines.next().await.expect("line").expect("line");
    assert!(first.contains("BOOKMARK"), "{first}");
    let during = scrape(&client).await;
    assert_eq!(value(&during, watching, &open), 1.0);
    assert_eq!(
        value(
            &during,
            "apiserver_request_total",
            &request("WATCH", "200", "")
        ),
        0.0,
        "a watch is counted when it ends"
    );

    drop(lines);
    // The server sees the client go when it next writes or polls the body.
    let mut ended = false;
    for _ in 0..200 {
        let now = scrape(&client).await;
        if value(&now, watching, &open) == 0.0 {
            assert_eq!(
                value(
                    &now,
                    "apiserver_request_total",
                    &request("WATCH", "200", "")
                ),
                1.0
            );
            ended = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(
        ended,
        "the watch was still counted open after its client left"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_masters_read_metrics() {
    let dir = tempfile::tempdir().expect("temp dir");
    let api = start(dir.path()).await;
    let node = User {
        name: "system:node:n1".into(),
        groups: vec!["system:nodes".into(), "system:authenticated".into()],
        uid: None,
    };
    match api
        .client(node, "default")
        .request_text(get("/metrics"))
        .await
    {
        Err(kube::Error::Api(e)) => {
            assert_eq!((e.code, e.reason.as_str()), (403, "Forbidden"));
            assert_eq!(
                e.message,
                "forbidden: User \"system:node:n1\" cannot get path \"/metrics\""
            );
        }
        other => panic!("expected 403, got {other:?}"),
    }
    // Over HTTPS without a client certificate or token: 401.
    let kubeconfig = kube::config::Kubeconfig::read_from(&api.kubeconfig).expect("kubeconfig");
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("client config");
    config.auth_info = Default::default();
    let anonymous = kube::Client::try_from(config).expect("client");
    match anonymous.request_text(get("/metrics")).await {
        Err(kube::Error::Api(e)) => assert_eq!(e.code, 401),
        other => panic!("expected 401, got {other:?}"),
    }
    // The admin's certificate over HTTPS reads it.
    let kubeconfig = kube::config::Kubeconfig::read_from(&api.kubeconfig).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("client config");
    let admin = kube::Client::try_from(config).expect("client");
    let text = admin.request_text(get("/metrics")).await.expect("metrics");
    assert!(
        text.contains("# TYPE process_cpu_seconds_total counter"),
        "{text}"
    );
}
