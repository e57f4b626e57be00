//! Typed objects: a value of the wrong JSON type anywhere in a body, a patch's result or a
//! subresource's body is refused with upstream's decoder message (400), nothing is written,
//! and whatever the server stores still decodes as its type for typed clients (kubectl
//! describe, k8s-openapi).

use std::path::Path;

use rudder_testkit::{Answer, RudderServer};
use serde_json::{json, Value};

const CMS: &str = "/api/v1/namespaces/default/configmaps";
const DEPLOYS: &str = "/apis/apps/v1/namespaces/default/deployments";
const PODS: &str = "/api/v1/namespaces/default/pods";

fn server() -> RudderServer {
    RudderServer::api_only(Path::new(env!("CARGO_BIN_EXE_rudder")), &[])
        .expect("start rudder server")
}

fn send(s: &RudderServer, method: &str, path: &str, ct: &str, body: &Value) -> Answer {
    s.request(method, path, ct, body.to_string().as_bytes())
}

fn assert_refused(a: &Answer, message: &str) {
    assert_eq!(a.code, 400, "{}", a.body);
    let st = a.json();
    assert_eq!(st["reason"], "BadRequest", "{st}");
    assert_eq!(st["message"], message, "{st}");
}

fn deployment(name: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]},
            },
        },
    })
}

/// `v` with the value at JSON pointer `at` (which must exist) replaced.
fn with(mut v: Value, at: &str, x: Value) -> Value {
    *v.pointer_mut(at)
        .expect("the path exists in the test's object") = x;
    v
}

fn pod(name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    })
}

#[test]
fn wrong_json_types_are_refused_on_every_write_path() {
    let s = server();
    let cm = |data: Value| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "bad"}, "data": data});
    let cm_handled =
        |m: &str| format!("ConfigMap in version \"v1\" cannot be handled as a ConfigMap: {m}");
    for (body, message) in [
        (cm(json!({"a": 5})), "json: cannot unmarshal number into Go struct field ConfigMap.data of type string"),
        (cm(json!([1])), "json: cannot unmarshal array into Go struct field ConfigMap.data of type map[string]string"),
        (
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "bad", "labels": [1]}}),
            "json: cannot unmarshal array into Go struct field ObjectMeta.metadata.labels of type map[string]string",
        ),
        (
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "bad", "annotations": {"a": {"b": 1}}}}),
            "json: cannot unmarshal object into Go struct field ObjectMeta.metadata.annotations of type string",
        ),
        (
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "bad", "ownerReferences": [5]}}),
            "json: cannot unmarshal number into Go struct field ObjectMeta.metadata.ownerReferences of type v1.OwnerReference",
        ),
        (
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "bad", "finalizers": [{"$patch": "delete"}]}}),
            "json: cannot unmarshal object into Go struct field ObjectMeta.metadata.finalizers of type string",
        ),
    ] {
        assert_refused(&send(&s, "POST", CMS, "application/json", &body), &cm_handled(message));
    }

    let dep_handled =
        |m: &str| format!("Deployment in version \"v1\" cannot be handled as a Deployment: {m}");
    for (replicas, what) in [
        (json!("three"), "string"),
        (json!(1.5), "number 1.5"),
        (json!(1u64 << 40), "number 1099511627776"),
    ] {
        let d = with(deployment("web"), "/spec/replicas", replicas);
        assert_refused(
            &send(&s, "POST", DEPLOYS, "application/json", &d),
            &dep_handled(&format!(
                "json: cannot unmarshal {what} into Go struct field DeploymentSpec.spec.replicas of type int32"
            )),
        );
    }
    let d = with(
        deployment("web"),
        "/spec/template/spec/containers/0",
        json!({"name": "c", "image": "busybox", "command": "ls"}),
    );
    assert_refused(
        &send(&s, "POST", DEPLOYS, "application/json", &d),
        &dep_handled("json: cannot unmarshal string into Go struct field Container.spec.template.spec.containers.command of type []string"),
    );
    let d = with(
        deployment("web"),
        "/spec/template/spec/containers/0",
        json!({"name": "c", "image": "busybox", "ports": "x"}),
    );
    assert_refused(
        &send(&s, "POST", DEPLOYS, "application/json", &d),
        &dep_handled("json: cannot unmarshal string into Go struct field Container.spec.template.spec.containers.ports of type []v1.ContainerPort"),
    );

    // The same through PUT, every patch type, and the status and scale subresources of a
    // deployment that exists.
    let a = send(&s, "POST", DEPLOYS, "application/json", &deployment("web"));
    assert_eq!(a.code, 201, "{}", a.body);
    let web = format!("{DEPLOYS}/web");
    let replicas_string = dep_handled(
        "json: cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas of type int32",
    );
    let put = with(deployment("web"), "/spec/replicas", json!("three"));
    assert_refused(
        &send(&s, "PUT", &web, "application/json", &put),
        &replicas_string,
    );
    for ct in [
        "application/merge-patch+json",
        "application/strategic-merge-patch+json",
    ] {
        let patch = json!({"spec": {"replicas": "three"}});
        assert_refused(&send(&s, "PATCH", &web, ct, &patch), &replicas_string);
    }
    let json_patch = json!([{"op": "replace", "path": "/spec/replicas", "value": "three"}]);
    assert_refused(
        &send(
            &s,
            "PATCH",
            &web,
            "application/json-patch+json",
            &json_patch,
        ),
        &replicas_string,
    );
    let status = json!({"status": {"replicas": "x"}});
    assert_refused(
        &send(&s, "PATCH", &format!("{web}/status"), "application/merge-patch+json", &status),
        &dep_handled("json: cannot unmarshal string into Go struct field DeploymentStatus.status.replicas of type int32"),
    );
    let scale = json!({"spec": {"replicas": "three"}});
    assert_refused(
        &send(&s, "PATCH", &format!("{web}/scale"), "application/merge-patch+json", &scale),
        "Scale in version \"v1\" cannot be handled as a Scale: json: cannot unmarshal string into Go struct field ScaleSpec.spec.replicas of type int32",
    );
    let got = s.request("GET", &web, "", b"").json();
    assert_eq!(got["spec"]["replicas"], 1, "nothing was written: {got}");
    assert_eq!(got["metadata"]["generation"], 1, "{got}");

    // A pod's status through the status subresource, and a binding of that pod.
    let a = send(&s, "POST", PODS, "application/json", &pod("p"));
    assert_eq!(a.code, 201, "{}", a.body);
    let bad_status = with(a.json(), "/status", json!("x"));
    assert_refused(
        &send(&s, "PUT", &format!("{PODS}/p/status"), "application/json", &bad_status),
        "Pod in version \"v1\" cannot be handled as a Pod: json: cannot unmarshal string into Go struct field Pod.status of type v1.PodStatus",
    );
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p"}, "target": {"name": ["n1"]}});
    assert_refused(
        &send(&s, "POST", &format!("{PODS}/p/binding"), "application/json", &binding),
        "Binding in version \"v1\" cannot be handled as a Binding: json: cannot unmarshal array into Go struct field ObjectReference.target.name of type string",
    );
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p"}, "target": {"name": "n1"}});
    let a = send(
        &s,
        "POST",
        &format!("{PODS}/p/binding"),
        "application/json",
        &binding,
    );
    assert_eq!(a.code, 201, "{}", a.body);

    // Nothing bad was stored: the typed readers of kubectl describe every object.
    let names = s.kubectl(&["get", "cm", "-o", "name"]).ok();
    assert!(!names.contains("configmap/bad"), "{names}");
    let described = s.kubectl(&["describe", "deploy,pods,ns"]).ok();
    assert!(described.contains("Name:"), "{described}");
}

#[test]
fn nulls_in_lists_and_maps_are_stored_as_go_zero_values() {
    let s = server();
    let body = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "zeros", "labels": {"a": null}},
        "data": {"k": null},
        "binaryData": {"b": "aGk=\n"},
    });
    let a = send(&s, "POST", CMS, "application/json", &body);
    assert_eq!(a.code, 201, "{}", a.body);
    let got = s.request("GET", &format!("{CMS}/zeros"), "", b"").json();
    assert_eq!(got["metadata"]["labels"]["a"], "", "{got}");
    assert_eq!(got["data"]["k"], "", "{got}");
    assert_eq!(got["binaryData"]["b"], "aGk=", "canonical base64: {got}");
    let a = send(
        &s,
        "POST",
        CMS,
        "application/json",
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b64"}, "binaryData": {"b": "a!"}}),
    );
    assert_refused(
        &a,
        "ConfigMap in version \"v1\" cannot be handled as a ConfigMap: illegal base64 data at input byte 1",
    );
}
