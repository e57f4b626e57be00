//! Field selectors through the real kubectl, per resource as upstream 1.33 defines them: which
//! labels each resource accepts, how their values are computed (Go zero values for absent
//! fields, `status.successful` from `status.succeeded`, an event's `source` falling back to its
//! reporting controller), and the error for any other label.

use std::path::Path;

use rudder_testkit::RudderServer;

fn server() -> RudderServer {
    RudderServer::api_only(Path::new(env!("CARGO_BIN_EXE_rudder")), &[])
        .expect("start rudder server")
}

/// `kubectl get <what> --field-selector <sel> -o name`, one name a line, sorted.
fn names(s: &RudderServer, what: &str, sel: &str) -> Vec<String> {
    let out = s
        .kubectl(&["get", what, "--field-selector", sel, "-o", "name"])
        .ok();
    let mut names: Vec<String> = out.lines().map(str::to_string).collect();
    names.sort();
    names
}

/// What kubectl prints when the server refuses the selector.
fn refused(s: &RudderServer, what: &str, sel: &str) -> String {
    s.kubectl(&["get", what, "--field-selector", sel])
        .fails()
        .trim()
        .to_string()
}

fn create(s: &RudderServer, doc: &str) {
    s.kubectl_stdin(&["create", "-f", "-"], doc).ok();
}

#[test]
fn events_by_source_and_reporting_controller() {
    let s = server();
    // The kubelet's way: core/v1 with a source.
    create(
        &s,
        "apiVersion: v1
kind: Event
metadata: {name: p.1}
involvedObject: {kind: Pod, name: p, namespace: default}
reason: Pulled
message: pulled
type: Normal
source: {component: kubelet, host: node-1}
",
    );
    // The events.k8s.io way: no source, only a reporting controller.
    create(
        &s,
        "apiVersion: events.k8s.io/v1
kind: Event
metadata: {name: p.2}
eventTime: 2024-05-01T10:00:00.000000Z
reportingController: example.com/ctl
reportingInstance: ctl-1
action: Check
reason: Checked
type: Warning
note: all good
regarding: {kind: Pod, name: p, namespace: default}
",
    );
    assert_eq!(names(&s, "events", "source=kubelet"), ["event/p.1"]);
    assert_eq!(
        names(&s, "events", "source=example.com/ctl"),
        ["event/p.2"],
        "source falls back to the reporting controller"
    );
    assert_eq!(
        names(&s, "events", "reportingComponent=example.com/ctl"),
        ["event/p.2"]
    );
    assert_eq!(
        names(&s, "events", "involvedObject.name=p,type=Warning"),
        ["event/p.2"]
    );
    assert_eq!(
        names(&s, "events", "involvedObject.kind=Pod,source!=kubelet"),
        ["event/p.2"]
    );

    // events.k8s.io names the same fields its own way.
    let ev = "events.v1.events.k8s.io";
    assert_eq!(
        names(&s, ev, "reportingController=example.com/ctl"),
        ["event.events.k8s.io/p.2"]
    );
    assert_eq!(names(&s, ev, "source=kubelet"), ["event.events.k8s.io/p.1"]);
    assert_eq!(
        names(&s, ev, "regarding.name=p,regarding.kind=Pod"),
        ["event.events.k8s.io/p.1", "event.events.k8s.io/p.2"]
    );
    let err = refused(&s, ev, "involvedObject.name=p");
    assert!(
        err.ends_with(": field label not supported: involvedObject.name"),
        "{err}"
    );
    let err = refused(&s, "events", "regarding.name=p");
    assert!(
        err.ends_with(": field label not supported: regarding.name"),
        "{err}"
    );
}

const NODES: &str = "apiVersion: v1
kind: Node
metadata: {name: n1}
---
apiVersion: v1
kind: Node
metadata: {name: n2}
spec: {unschedulable: true}
";

#[test]
fn nodes_by_unschedulable() {
    let s = server();
    create(&s, NODES);
    assert_eq!(
        names(&s, "nodes", "spec.unschedulable=false"),
        ["node/n1"],
        "an absent spec.unschedulable is false"
    );
    assert_eq!(names(&s, "nodes", "spec.unschedulable=true"), ["node/n2"]);
    // One name is one key, read as such: not a prefix of others.
    assert_eq!(names(&s, "nodes", "metadata.name=n2"), ["node/n2"]);
    assert!(names(&s, "nodes", "metadata.name=n").is_empty());
    assert_eq!(
        names(&s, "nodes", "spec.unschedulable!=true,metadata.name=n1"),
        ["node/n1"]
    );
    // Nodes have no namespace to select on.
    let err = refused(&s, "nodes", "metadata.namespace=");
    assert_eq!(
        err,
        r#"Error from server (BadRequest): Unable to find "/v1, Resource=nodes" that match label selector "", field selector "metadata.namespace=": field label not supported: metadata.namespace"#
    );
}

#[test]
fn pods_by_node_ip_and_defaults() {
    let s = server();
    create(
        &s,
        "apiVersion: v1
kind: Pod
metadata: {name: pending}
spec:
  containers: [{name: main, image: nginx}]
---
apiVersion: v1
kind: Pod
metadata: {name: placed}
spec:
  nodeName: n1
  restartPolicy: Never
  containers: [{name: main, image: nginx}]
",
    );
    s.kubectl(&[
        "patch",
        "pod",
        "placed",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"phase":"Running","podIP":"10.1.0.7","podIPs":[{"ip":"10.1.0.7"}]}}"#,
    ])
    .ok();
    // kubectl's own selector for unscheduled pods.
    assert_eq!(names(&s, "pods", "spec.nodeName="), ["pod/pending"]);
    assert_eq!(names(&s, "pods", "spec.nodeName=n1"), ["pod/placed"]);
    // The server reads only the node name of a stored pod before it decodes it: the other
    // requirements and operators still hold.
    assert_eq!(names(&s, "pods", "spec.nodeName==n1"), ["pod/placed"]);
    assert!(names(&s, "pods", "spec.nodeName=n2").is_empty());
    assert_eq!(names(&s, "pods", "spec.nodeName!=n1"), ["pod/pending"]);
    assert_eq!(
        names(&s, "pods", "spec.nodeName=n1,status.phase=Running"),
        ["pod/placed"]
    );
    assert!(names(&s, "pods", "spec.nodeName=n1,status.phase=Pending").is_empty());
    assert_eq!(
        names(&s, "pods", "spec.host=n1"),
        ["pod/placed"],
        "the old v1 name"
    );
    assert_eq!(names(&s, "pods", "status.podIP=10.1.0.7"), ["pod/placed"]);
    assert_eq!(names(&s, "pods", "status.podIP="), ["pod/pending"]);
    assert_eq!(
        names(&s, "pods", "spec.hostNetwork=false"),
        ["pod/pending", "pod/placed"],
        "an absent hostNetwork is false"
    );
    assert_eq!(names(&s, "pods", "status.phase=Pending"), ["pod/pending"]);
    assert_eq!(
        names(&s, "pods", "spec.restartPolicy=Always"),
        ["pod/pending"]
    );
    assert_eq!(
        names(
            &s,
            "pods",
            "spec.schedulerName=default-scheduler,spec.serviceAccountName=default"
        ),
        ["pod/pending", "pod/placed"]
    );
    assert_eq!(
        names(&s, "pods", "status.nominatedNodeName="),
        ["pod/pending", "pod/placed"]
    );
    // status.podIPs is accepted but never part of a pod's fields: it is always "".
    assert!(names(&s, "pods", "status.podIPs=10.1.0.7").is_empty());
    assert_eq!(
        names(&s, "pods", "status.podIPs="),
        ["pod/pending", "pod/placed"]
    );

    let err = refused(&s, "pods", "spec.containers=x");
    assert_eq!(
        err,
        r#"Error from server (BadRequest): Unable to find "/v1, Resource=pods" that match label selector "", field selector "spec.containers=x": field label not supported: spec.containers"#
    );
    let err = refused(&s, "pods", "spec.nodeName");
    assert!(
        err.ends_with(": invalid selector: 'spec.nodeName'; can't understand 'spec.nodeName'"),
        "{err}"
    );
}

/// The names and resourceVersion of a raw pod list.
fn raw_pods(s: &RudderServer, path: &str) -> (Vec<String>, String, Option<String>) {
    let out = s.kubectl(&["get", "--raw", path]).ok();
    let list: serde_json::Value = serde_json::from_str(&out).expect("a list");
    let names = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    let rv = list["metadata"]["resourceVersion"].as_str().unwrap();
    let next = list["metadata"]["continue"].as_str().map(str::to_string);
    (names, rv.to_string(), next)
}

fn pod_doc(ns: &str, name: &str, node: Option<&str>) -> String {
    let node = node
        .map(|n| format!("\n  nodeName: {n}"))
        .unwrap_or_default();
    format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: {ns}}}
spec:{node}
  containers: [{{name: main, image: nginx}}]
---
"
    )
}

/// One node's pods are read from the watch cache's index, not by a scan of every pod: at the
/// store's latest revision (a pod bound or deleted just before is seen so), per namespace,
/// paged, and the same as a scan of the store at that revision.
#[test]
fn node_pod_lists_from_the_watch_cache_match_the_store() {
    let s = server();
    s.kubectl(&["create", "namespace", "other"]).ok();
    let docs = [
        pod_doc("default", "a", Some("n1")),
        pod_doc("default", "b", None),
        pod_doc("other", "c", Some("n1")),
        pod_doc("default", "d", Some("n2")),
        pod_doc("other", "e", Some("n1")),
    ];
    create(&s, &docs.concat());
    let n1 = "/api/v1/pods?fieldSelector=spec.nodeName%3Dn1";
    assert_eq!(raw_pods(&s, n1).0, ["a", "c", "e"]);
    // The store is read once, when the cache starts; not again for each list.
    let pod_lists = || {
        let metrics = s.kubectl(&["get", "--raw", "/metrics"]).ok();
        let line = r#"etcd_requests_total{operation="list",type="pods"} "#;
        let count = metrics.lines().find_map(|l| l.strip_prefix(line));
        count.map(str::to_string)
    };
    let before = pod_lists();
    assert!(before.is_some(), "the cache's first read counts");
    for _ in 0..3 {
        raw_pods(&s, n1);
    }
    assert_eq!(pod_lists(), before);
    // Bound, then listed at once: the list is as fresh as the store.
    s.kubectl_stdin(
        &[
            "create",
            "--raw",
            "/api/v1/namespaces/default/pods/b/binding",
            "-f",
            "-",
        ],
        r#"{"apiVersion":"v1","kind":"Binding","metadata":{"name":"b"},"target":{"kind":"Node","name":"n1"}}"#,
    )
    .ok();
    assert_eq!(raw_pods(&s, n1).0, ["a", "b", "c", "e"]);
    s.kubectl(&["delete", "pod", "a", "--grace-period=0", "--force"])
        .ok();
    let (names, rv, _) = raw_pods(&s, n1);
    assert_eq!(names, ["b", "c", "e"]);
    assert!(raw_pods(&s, &format!("{n1}&resourceVersion=0")).0.len() <= 4);
    // The store's answer at the same revision (an exact resourceVersion is not the cache's).
    let exact = format!("{n1}&resourceVersion={rv}&resourceVersionMatch=Exact");
    assert_eq!(raw_pods(&s, &exact).0, names);
    assert_eq!(
        raw_pods(
            &s,
            "/api/v1/namespaces/other/pods?fieldSelector=spec.nodeName%3Dn1"
        )
        .0,
        ["c", "e"]
    );
    assert_eq!(
        raw_pods(&s, "/api/v1/pods?fieldSelector=spec.nodeName%3D").0,
        Vec::<String>::new()
    );
    // One name: in a namespace one key, across them all the keys that end in it.
    let one = |ns: &str| {
        let path = format!("{ns}/pods?fieldSelector=metadata.name%3Dc");
        raw_pods(&s, &format!("/api/v1{path}")).0
    };
    assert_eq!(one("/namespaces/other"), ["c"]);
    assert_eq!(one(""), ["c"]);
    assert!(one("/namespaces/default").is_empty());
    // A streaming list's initial events come from the same place.
    let watch = s
        .kubectl(&[
            "get",
            "--raw",
            &format!(
                "{n1}&watch=1&sendInitialEvents=true&allowWatchBookmarks=true\
                 &resourceVersionMatch=NotOlderThan&timeoutSeconds=1"
            ),
        ])
        .ok();
    let events: Vec<(String, String)> = watch
        .lines()
        .map(|l| {
            let e: serde_json::Value = serde_json::from_str(l).expect("a watch event");
            let name = e["object"]["metadata"]["name"].as_str().unwrap_or("");
            (e["type"].as_str().unwrap().to_string(), name.to_string())
        })
        .collect();
    let added: Vec<&str> = events
        .iter()
        .filter(|(t, _)| t == "ADDED")
        .map(|(_, n)| n.as_str())
        .collect();
    assert_eq!(added, ["b", "c", "e"]);
    assert!(events.iter().any(|(t, _)| t == "BOOKMARK"), "{events:?}");
    // Paged: the first page from the cache, the rest from the store at its revision.
    let (first, rv1, next) = raw_pods(&s, &format!("{n1}&limit=2"));
    assert_eq!(first, ["b", "c"]);
    let next = next.expect("a continue token");
    let (rest, rv2, more) = raw_pods(&s, &format!("{n1}&limit=2&continue={next}"));
    assert_eq!((rest, rv2, more), (vec!["e".to_string()], rv1, None));
}

#[test]
fn jobs_by_successful() {
    let s = server();
    create(
        &s,
        "apiVersion: batch/v1
kind: Job
metadata: {name: j}
spec:
  suspend: true
  template:
    spec:
      restartPolicy: Never
      containers: [{name: main, image: busybox}]
",
    );
    assert_eq!(
        names(&s, "jobs", "status.successful=0"),
        ["job.batch/j"],
        "no status.succeeded is 0"
    );
    assert!(names(&s, "jobs", "status.successful=1").is_empty());
    s.kubectl(&[
        "patch",
        "job",
        "j",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"succeeded":1}}"#,
    ])
    .ok();
    assert_eq!(names(&s, "jobs", "status.successful=1"), ["job.batch/j"]);
    assert!(names(&s, "jobs", "status.successful=0").is_empty());
    let err = refused(&s, "jobs", "status.succeeded=1");
    assert!(
        err.ends_with(r#": field label "status.succeeded" not supported for Job"#),
        "{err}"
    );
}

#[test]
fn services_by_type_and_cluster_ip() {
    let s = server();
    create(
        &s,
        "apiVersion: v1
kind: Service
metadata: {name: plain}
spec:
  ports: [{port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: np}
spec:
  type: NodePort
  ports: [{port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: headless}
spec:
  clusterIP: None
  ports: [{port: 80}]
",
    );
    assert_eq!(names(&s, "svc", "spec.type=NodePort"), ["service/np"]);
    assert_eq!(
        names(&s, "svc", "spec.type=ClusterIP,metadata.namespace=default"),
        ["service/headless", "service/kubernetes", "service/plain"]
    );
    assert_eq!(
        names(&s, "svc", "spec.clusterIP=None"),
        ["service/headless"]
    );
    let ip = s
        .kubectl(&["get", "svc", "plain", "-o", "jsonpath={.spec.clusterIP}"])
        .ok();
    assert_eq!(
        names(&s, "svc", &format!("spec.clusterIP={ip}")),
        ["service/plain"]
    );
    let err = refused(&s, "svc", "spec.ports=80");
    assert!(
        err.ends_with(": field label not supported: spec.ports"),
        "{err}"
    );
}

#[test]
fn other_core_kinds_and_kinds_without_field_labels() {
    let s = server();
    create(
        &s,
        "apiVersion: v1
kind: Secret
metadata: {name: plain}
stringData: {a: b}
---
apiVersion: v1
kind: Secret
metadata: {name: tls}
type: kubernetes.io/tls
stringData: {tls.crt: x, tls.key: z}
---
apiVersion: v1
kind: ReplicationController
metadata: {name: rc}
spec:
  replicas: 0
  selector: {app: rc}
  template:
    metadata: {labels: {app: rc}}
    spec:
      containers: [{name: main, image: nginx}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: cm}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: reader}
rules: []
",
    );
    assert_eq!(names(&s, "secrets", "type=Opaque"), ["secret/plain"]);
    assert_eq!(
        names(&s, "secrets", "type=kubernetes.io/tls"),
        ["secret/tls"]
    );
    assert_eq!(
        names(&s, "rc", "status.replicas=0"),
        ["replicationcontroller/rc"],
        "no status.replicas is 0"
    );
    assert_eq!(
        names(&s, "ns", "status.phase=Active,metadata.name=default"),
        ["namespace/default"]
    );
    let err = refused(&s, "ns", "metadata.namespace=");
    assert!(
        err.ends_with(": field label not supported: metadata.namespace"),
        "{err}"
    );
    assert_eq!(names(&s, "cm", "metadata.name=cm"), ["configmap/cm"]);

    // Kinds with no field label conversion take only metadata.name and metadata.namespace,
    // with the generic message: apps/v1 ReplicaSets included.
    let err = refused(&s, "rs", "status.replicas=0");
    assert_eq!(
        err,
        r#"Error from server (BadRequest): Unable to find "apps/v1, Resource=replicasets" that match label selector "", field selector "status.replicas=0": "status.replicas" is not a known field selector: only "metadata.name", "metadata.namespace""#
    );
    let err = refused(&s, "cm", "data.a=b");
    assert!(
        err.ends_with(
            r#": "data.a" is not a known field selector: only "metadata.name", "metadata.namespace""#
        ),
        "{err}"
    );
    // A cluster-scoped kind has an empty namespace.
    assert!(names(&s, "clusterroles", "metadata.namespace=")
        .contains(&"clusterrole.rbac.authorization.k8s.io/reader".to_string()));
    assert!(names(&s, "clusterroles", "metadata.namespace=default").is_empty());
}
