//! The garbage collector, the namespace controller and pod GC, through the real binary and
//! kubectl: ownerReferences with each propagation policy (`kubectl delete
//! --cascade=background|foreground|orphan`), owners across namespaces and scopes, a namespace
//! with content deleted (Terminating, conditions, then gone), and a pod whose node is deleted.
//!
//! The servers run their controllers but no agent and no scheduler, so that nothing but the
//! loops under test changes the objects.

use std::path::Path;
use std::time::{Duration, Instant};

use rudder_testkit::RudderServer;
use serde_json::{json, Value};

fn server() -> RudderServer {
    RudderServer::start(
        Path::new(env!("CARGO_BIN_EXE_rudder")),
        &["--disable-agent", "--disable-scheduler"],
    )
    .expect("start rudder server")
}

/// Polls `what` until it holds (the deadline only bounds a broken run).
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while !check() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The object as JSON, or None when it does not exist.
fn get(s: &RudderServer, args: &[&str]) -> Option<Value> {
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", "json", "--ignore-not-found"]);
    let out = s.kubectl(&all).ok();
    if out.trim().is_empty() {
        None
    } else {
        Some(serde_json::from_str(&out).expect("kubectl get -o json"))
    }
}

fn exists(s: &RudderServer, args: &[&str]) -> bool {
    get(s, args).is_some()
}

fn apply(s: &RudderServer, obj: Value) {
    s.kubectl_stdin(&["apply", "-f", "-"], &obj.to_string())
        .ok();
}

fn uid(s: &RudderServer, args: &[&str]) -> String {
    get(s, args).expect("object exists")["metadata"]["uid"]
        .as_str()
        .expect("uid")
        .to_string()
}

fn owner_ref(kind: &str, api_version: &str, name: &str, uid: &str, block: bool) -> Value {
    json!({"apiVersion": api_version, "kind": kind, "name": name, "uid": uid,
           "blockOwnerDeletion": block})
}

/// A ConfigMap in `ns` owned by `owners`, with `finalizers`.
fn cm(ns: &str, name: &str, owners: Vec<Value>, finalizers: &[&str]) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": name, "namespace": ns, "ownerReferences": owners,
                        "finalizers": finalizers},
           "data": {"k": "v"}})
}

/// A ConfigMap owner and its uid.
fn owner(s: &RudderServer, ns: &str, name: &str) -> String {
    apply(s, cm(ns, name, vec![], &[]));
    uid(s, &["cm", name, "-n", ns])
}

#[test]
fn background_deletion_collects_dependents_whose_owners_are_gone() {
    let s = server();
    let p = owner(&s, "default", "parent");
    let other = owner(&s, "default", "other");
    apply(
        &s,
        cm(
            "default",
            "child",
            vec![owner_ref("ConfigMap", "v1", "parent", &p, false)],
            &[],
        ),
    );
    // A dependent with a second owner that stays is kept, without the gone owner's reference.
    apply(
        &s,
        cm(
            "default",
            "shared",
            vec![
                owner_ref("ConfigMap", "v1", "parent", &p, false),
                owner_ref("ConfigMap", "v1", "other", &other, false),
            ],
            &[],
        ),
    );
    // A dependent of a live owner stays.
    std::thread::sleep(Duration::from_secs(1));
    assert!(exists(&s, &["cm", "child"]));

    let out = s
        .kubectl(&["delete", "cm", "parent", "--cascade=background"])
        .ok();
    assert_eq!(out.trim(), r#"configmap "parent" deleted"#);
    eventually("the child is collected", || !exists(&s, &["cm", "child"]));
    eventually(
        "the shared dependent loses the reference to the gone owner",
        || {
            let shared = get(&s, &["cm", "shared"]).expect("shared stays");
            let refs = shared["metadata"]["ownerReferences"].clone();
            refs.as_array().map(Vec::len) == Some(1) && refs[0]["name"] == "other"
        },
    );

    // A dependent created with an owner that never existed goes too.
    apply(
        &s,
        cm(
            "default",
            "stray",
            vec![owner_ref(
                "ConfigMap",
                "v1",
                "ghost",
                "0b5e6a6e-0000-4000-8000-000000000000",
                false,
            )],
            &[],
        ),
    );
    eventually("the stray dependent is collected", || {
        !exists(&s, &["cm", "stray"])
    });
    assert!(exists(&s, &["cm", "other"]));
}

#[test]
fn foreground_deletion_waits_for_blocking_dependents() {
    let s = server();
    let p = owner(&s, "default", "parent");
    // parent <- child (blocking, held by a finalizer) <- grandchild (blocking).
    apply(
        &s,
        cm(
            "default",
            "child",
            vec![owner_ref("ConfigMap", "v1", "parent", &p, true)],
            &["example.com/hold"],
        ),
    );
    let c = uid(&s, &["cm", "child"]);
    apply(
        &s,
        cm(
            "default",
            "grandchild",
            vec![owner_ref("ConfigMap", "v1", "child", &c, true)],
            &[],
        ),
    );
    // A dependent that does not block goes too, but is not waited for.
    apply(
        &s,
        cm(
            "default",
            "loose",
            vec![owner_ref("ConfigMap", "v1", "parent", &p, false)],
            &[],
        ),
    );

    s.kubectl(&[
        "delete",
        "cm",
        "parent",
        "--cascade=foreground",
        "--wait=false",
    ])
    .ok();
    let parent = get(&s, &["cm", "parent"]).expect("the owner lingers");
    assert!(
        parent["metadata"]["deletionTimestamp"].is_string(),
        "{parent}"
    );
    assert_eq!(
        parent["metadata"]["finalizers"],
        json!(["foregroundDeletion"])
    );

    // The chain is deleted from the bottom: grandchild gone, child marked and held.
    eventually("the grandchild is deleted", || {
        !exists(&s, &["cm", "grandchild"])
    });
    eventually("the loose dependent is deleted", || {
        !exists(&s, &["cm", "loose"])
    });
    eventually(
        "the child is marked and left with its own finalizer",
        || {
            get(&s, &["cm", "child"]).is_some_and(|c| {
                c["metadata"]["deletionTimestamp"].is_string()
                    && c["metadata"]["finalizers"] == json!(["example.com/hold"])
            })
        },
    );
    let parent = get(&s, &["cm", "parent"]).expect("the owner still waits for the child");
    assert_eq!(
        parent["metadata"]["finalizers"],
        json!(["foregroundDeletion"])
    );

    // The child's own finalizer goes: then the child, then the owner.
    s.kubectl(&[
        "patch",
        "cm",
        "child",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ])
    .ok();
    eventually("the child is gone", || !exists(&s, &["cm", "child"]));
    eventually("the owner is gone", || !exists(&s, &["cm", "parent"]));
}

#[test]
fn kubectl_foreground_delete_returns_when_the_dependents_are_gone() {
    let s = server();
    let p = owner(&s, "default", "parent");
    for i in 0..3 {
        apply(
            &s,
            cm(
                "default",
                &format!("child-{i}"),
                vec![owner_ref("ConfigMap", "v1", "parent", &p, true)],
                &[],
            ),
        );
    }
    // kubectl waits for the owner to be gone, which it is once its dependents are.
    let out = s
        .kubectl(&[
            "delete",
            "cm",
            "parent",
            "--cascade=foreground",
            "--timeout=90s",
        ])
        .ok();
    assert_eq!(out.trim(), r#"configmap "parent" deleted"#);
    for i in 0..3 {
        assert!(!exists(&s, &["cm", &format!("child-{i}")]), "child-{i}");
    }
}

#[test]
fn orphan_deletion_leaves_dependents_without_the_reference() {
    let s = server();
    let p = owner(&s, "default", "parent");
    let keep = owner(&s, "default", "keeper");
    apply(
        &s,
        cm(
            "default",
            "child",
            vec![
                owner_ref("ConfigMap", "v1", "parent", &p, true),
                owner_ref("ConfigMap", "v1", "keeper", &keep, false),
            ],
            &[],
        ),
    );
    apply(
        &s,
        cm(
            "default",
            "only",
            vec![owner_ref("ConfigMap", "v1", "parent", &p, true)],
            &[],
        ),
    );
    let out = s
        .kubectl(&[
            "delete",
            "cm",
            "parent",
            "--cascade=orphan",
            "--timeout=90s",
        ])
        .ok();
    assert_eq!(out.trim(), r#"configmap "parent" deleted"#);
    assert!(!exists(&s, &["cm", "parent"]));
    let only = get(&s, &["cm", "only"]).expect("the orphan stays");
    assert!(only["metadata"]["ownerReferences"].is_null(), "{only}");
    let child = get(&s, &["cm", "child"]).expect("the other dependent stays");
    assert_eq!(child["metadata"]["ownerReferences"][0]["name"], "keeper");
    assert_eq!(
        child["metadata"]["ownerReferences"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    // Orphans are not collected later either.
    std::thread::sleep(Duration::from_secs(2));
    assert!(exists(&s, &["cm", "only"]));
}

#[test]
fn owners_across_namespaces_and_scopes() {
    let s = server();
    s.kubectl(&["create", "namespace", "a"]).ok();
    s.kubectl(&["create", "namespace", "b"]).ok();
    // A cluster-scoped owner may own namespaced dependents.
    s.kubectl(&[
        "create",
        "clusterrole",
        "owner-role",
        "--verb=get",
        "--resource=pods",
    ])
    .ok();
    let role = uid(&s, &["clusterrole", "owner-role"]);
    apply(
        &s,
        cm(
            "a",
            "of-role",
            vec![owner_ref(
                "ClusterRole",
                "rbac.authorization.k8s.io/v1",
                "owner-role",
                &role,
                false,
            )],
            &[],
        ),
    );
    // A namespaced owner in another namespace is no owner: the dependent is collected, with a
    // Warning event.
    let p = owner(&s, "a", "parent");
    apply(
        &s,
        cm(
            "b",
            "across",
            vec![owner_ref("ConfigMap", "v1", "parent", &p, false)],
            &[],
        ),
    );
    eventually("the cross-namespace dependent is collected", || {
        !exists(&s, &["cm", "across", "-n", "b"])
    });
    eventually("an OwnerRefInvalidNamespace event is recorded", || {
        let out = s
            .kubectl(&[
                "get",
                "events",
                "-n",
                "b",
                "--field-selector",
                "reason=OwnerRefInvalidNamespace",
                "-o",
                "json",
            ])
            .ok();
        let v: Value = serde_json::from_str(&out).expect("events json");
        v["items"].as_array().is_some_and(|items| {
            items.iter().any(|e| {
                e["type"] == "Warning"
                    && e["involvedObject"]["name"] == "across"
                    && e["message"]
                        == format!(
                            "ownerRef [v1/ConfigMap, namespace: b, name: parent, uid: {p}] does not exist in namespace \"b\""
                        )
            })
        })
    });
    assert!(exists(&s, &["cm", "parent", "-n", "a"]));
    assert!(exists(&s, &["cm", "of-role", "-n", "a"]));
    s.kubectl(&["delete", "clusterrole", "owner-role"]).ok();
    eventually("the cluster-scoped owner's dependent is collected", || {
        !exists(&s, &["cm", "of-role", "-n", "a"])
    });
}

#[test]
fn a_deleted_namespace_is_terminating_until_emptied_then_gone() {
    let s = server();
    s.kubectl(&["create", "namespace", "doomed"]).ok();
    for i in 0..3 {
        apply(&s, cm("doomed", &format!("cm-{i}"), vec![], &[]));
    }
    s.kubectl(&[
        "create",
        "secret",
        "generic",
        "s",
        "-n",
        "doomed",
        "--from-literal=a=b",
    ])
    .ok();
    s.kubectl(&[
        "create",
        "deployment",
        "web",
        "-n",
        "doomed",
        "--image=nginx",
    ])
    .ok();
    // A pod no node runs (no scheduler here).
    s.kubectl(&["run", "lonely", "-n", "doomed", "--image=nginx"])
        .ok();
    // Content held by a finalizer keeps the namespace Terminating.
    apply(&s, cm("doomed", "held", vec![], &["example.com/hold"]));

    let out = s
        .kubectl(&["delete", "namespace", "doomed", "--wait=false"])
        .ok();
    assert_eq!(out.trim(), r#"namespace "doomed" deleted"#);
    let table = s.kubectl(&["get", "ns", "doomed", "--no-headers"]).ok();
    assert!(table.contains("Terminating"), "{table}");
    let ns = get(&s, &["ns", "doomed"]).expect("the namespace stays meanwhile");
    assert_eq!(ns["spec"]["finalizers"], json!(["kubernetes"]));
    assert!(ns["metadata"]["deletionTimestamp"].is_string());

    let condition = |ns: &Value, t: &str| -> Option<Value> {
        ns["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == t)
            .cloned()
    };
    eventually(
        "the content but the held object is gone and conditions say so",
        || {
            let Some(ns) = get(&s, &["ns", "doomed"]) else {
                return false;
            };
            let remaining = condition(&ns, "NamespaceContentRemaining");
            let finalizers = condition(&ns, "NamespaceFinalizersRemaining");
            remaining.is_some_and(|c| {
            c["status"] == "True"
                && c["reason"] == "SomeResourcesRemain"
                && c["message"] == "Some resources are remaining: configmaps. has 1 resource instances"
        }) && finalizers.is_some_and(|c| {
            c["status"] == "True"
                && c["reason"] == "SomeFinalizersRemain"
                && c["message"]
                    == "Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances"
        })
        },
    );
    let ns = get(&s, &["ns", "doomed"]).expect("still there");
    let discovery = condition(&ns, "NamespaceDeletionDiscoveryFailure").expect("discovery");
    assert_eq!(discovery["status"], "False");
    assert_eq!(discovery["reason"], "ResourcesDiscovered");
    assert_eq!(
        s.kubectl(&["get", "cm,secret,deploy,pod", "-n", "doomed", "-o", "name"])
            .ok()
            .trim(),
        "configmap/held"
    );
    // `kubectl describe` shows the conditions.
    let described = s.kubectl(&["describe", "ns", "doomed"]).ok();
    assert!(described.contains("Terminating"), "{described}");
    assert!(described.contains("SomeFinalizersRemain"), "{described}");

    // Nothing new may be created meanwhile.
    let err = s
        .kubectl_stdin(
            &["apply", "-f", "-"],
            &cm("doomed", "late", vec![], &[]).to_string(),
        )
        .fails();
    assert!(err.contains("because it is being terminated"), "{err}");

    // The finalizer goes: so does the namespace.
    s.kubectl(&[
        "patch",
        "cm",
        "held",
        "-n",
        "doomed",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ])
    .ok();
    eventually("the namespace is gone", || !exists(&s, &["ns", "doomed"]));
    assert_eq!(
        s.kubectl(&["get", "cm", "-n", "doomed", "-o", "name"])
            .ok()
            .trim(),
        ""
    );
    // And a namespace of the same name can be made again.
    s.kubectl(&["create", "namespace", "doomed"]).ok();
    let again = get(&s, &["ns", "doomed"]).expect("recreated");
    assert_eq!(again["status"]["phase"], "Active");
}

#[test]
fn kubectl_delete_namespace_waits_until_it_is_gone() {
    let s = server();
    s.kubectl(&["create", "namespace", "brief"]).ok();
    apply(&s, cm("brief", "c", vec![], &[]));
    let out = s
        .kubectl(&["delete", "namespace", "brief", "--timeout=90s"])
        .ok();
    assert_eq!(out.trim(), r#"namespace "brief" deleted"#);
    assert!(!exists(&s, &["ns", "brief"]));
    // The system namespaces stay protected.
    let err = s.kubectl(&["delete", "namespace", "kube-system"]).fails();
    assert!(err.contains("this namespace may not be deleted"), "{err}");
}

fn node(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}})
}

fn pod_on(name: &str, node: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": "default"},
           // Tolerating every taint for ever: only pod GC may remove it.
           "spec": {"nodeName": node, "tolerations": [{"operator": "Exists"}],
                    "containers": [{"name": "c", "image": "nginx"}]}})
}

#[test]
fn pods_of_a_deleted_node_are_removed() {
    let s = server();
    apply(&s, node("doomed-node"));
    apply(&s, node("kept-node"));
    apply(&s, pod_on("on-doomed", "doomed-node"));
    apply(&s, pod_on("on-kept", "kept-node"));
    s.kubectl(&["delete", "node", "doomed-node"]).ok();
    eventually("the pod of the deleted node is removed", || {
        !exists(&s, &["pod", "on-doomed"])
    });
    assert!(exists(&s, &["pod", "on-kept"]));
    // A pod bound to a node that never existed goes too.
    apply(&s, pod_on("nowhere", "no-such-node"));
    eventually("the pod of a missing node is removed", || {
        !exists(&s, &["pod", "nowhere"])
    });
    assert!(exists(&s, &["pod", "on-kept"]));
}
