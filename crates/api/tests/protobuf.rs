//! Protobuf request bodies → Kubernetes JSON (`rudder_api::protobuf`).
//!
//! - Real kubectl bodies (`tests/data/*.pb`, captured from kubectl 1.32/1.33 against a fake
//!   server) must decode to the JSON kubectl builds for the same command (`*.json`: kubectl
//!   1.33 `--dry-run=client -o json`, or the JSON body kubectl 1.31 sent).
//! - Objects built with k8s-pb's prost structs round-trip to exact JSON.
//! - Every kind the catalogue accepts has a decoding; garbage never panics.

use std::collections::BTreeMap;
use std::path::PathBuf;

use k8s_pb::api::core::v1 as core;
use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::{RawExtension, TypeMeta, Unknown};
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use prost::Message;
use rudder_api::catalogue::{self, Verb};
use rudder_api::protobuf::{self, ProtobufError};
use serde_json::{json, Value};

fn data_dir() -> PathBuf {
    manifest_dir().join("tests/data")
}

/// A `k8s\0` body around `raw`, as client-go writes it.
fn envelope(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
    let unknown = Unknown {
        type_meta: Some(TypeMeta {
            api_version: Some(api_version.into()),
            kind: Some(kind.into()),
        }),
        raw: Some(raw),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    let mut body = b"k8s\0".to_vec();
    body.extend(unknown.encode_to_vec());
    body
}

fn encode<M: Message>(api_version: &str, kind: &str, m: &M) -> Vec<u8> {
    envelope(api_version, kind, m.encode_to_vec())
}

/// Compares decoded protobuf with the JSON kubectl sends for the same command: Go's JSON of the
/// same Go object, so they must be equal, zero values, `null`s and all.
fn compare(path: &str, decoded: &Value, expected: &Value, diffs: &mut Vec<String>) {
    match (decoded, expected) {
        (Value::Object(d), Value::Object(e)) => {
            for (k, ev) in e {
                let p = format!("{path}/{k}");
                match d.get(k) {
                    Some(dv) => compare(&p, dv, ev, diffs),
                    None => diffs.push(format!("{p}: missing, expected {ev}")),
                }
            }
            for (k, dv) in d {
                if !e.contains_key(k) {
                    diffs.push(format!("{path}/{k}: unexpected {dv}"));
                }
            }
        }
        (Value::Array(d), Value::Array(e)) if d.len() == e.len() => {
            for (i, (dv, ev)) in d.iter().zip(e).enumerate() {
                compare(&format!("{path}/{i}"), dv, ev, diffs);
            }
        }
        _ if decoded == expected => {}
        _ => diffs.push(format!("{path}: decoded {decoded}, expected {expected}")),
    }
}

/// Captures whose expected JSON comes from another kubectl version or run: the JSON pointers
/// that legitimately differ.
const KNOWN_DIFFERENCES: &[(&str, &[&str])] = &[
    // The debug pod's name and the ephemeral container names are random per run.
    ("debug-node", &["/metadata/name", "/spec/containers/0/name"]),
    ("debug-copy-to", &["/spec/containers/1/name"]),
];

#[test]
fn captured_kubectl_bodies_decode_to_the_json_kubectl_sends() {
    let mut cases = 0;
    let mut failures = Vec::new();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(data_dir())
        .expect("tests/data")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "pb"))
        .collect();
    entries.sort();
    for pb in entries {
        let name = pb.file_stem().unwrap().to_string_lossy().into_owned();
        let body = std::fs::read(&pb).unwrap();
        let expected: Value =
            serde_json::from_slice(&std::fs::read(pb.with_extension("json")).unwrap())
                .unwrap_or_else(|e| panic!("{name}.json: {e}"));
        let decoded = match protobuf::decode(&body) {
            Ok(v) => v,
            Err(e) => {
                failures.push(format!("{name}: {e}"));
                continue;
            }
        };
        let mut diffs = Vec::new();
        compare("", &decoded, &expected, &mut diffs);
        let ignore = KNOWN_DIFFERENCES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, p)| *p)
            .unwrap_or(&[]);
        diffs.retain(|d| !ignore.iter().any(|p| d.starts_with(&format!("{p}:"))));
        failures.extend(diffs.into_iter().map(|d| format!("{name}: {d}")));
        cases += 1;
    }
    assert!(cases >= 30, "only {cases} captured bodies");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn decode_file(name: &str) -> Value {
    let body = std::fs::read(data_dir().join(format!("{name}.pb"))).unwrap();
    protobuf::decode(&body).unwrap()
}

#[test]
fn captured_bodies_keep_what_matters() {
    // The envelope's typeMeta becomes apiVersion/kind; the zero values Go puts on the wire
    // for omitempty fields go, as upstream's JSON drops them.
    let cm = decode_file("create-configmap");
    assert_eq!(cm["apiVersion"], "v1");
    assert_eq!(cm["kind"], "ConfigMap");
    assert_eq!(cm["metadata"]["name"], "x");
    assert_eq!(
        cm["metadata"],
        json!({"name": "x", "creationTimestamp": null})
    );
    assert_eq!(cm["data"], json!({"a": "b"}));

    // A pointer set to zero is on the wire and must survive (else defaulting makes it 1).
    let z = decode_file("create-deployment-replicas0");
    assert_eq!(z["spec"]["replicas"], 0);
    assert_eq!(decode_file("create-deployment")["spec"]["replicas"], 1);

    assert_eq!(decode_file("create-secret")["data"], json!({"k": "dg=="}));
    let bin = decode_file("create-secret-binary");
    assert_eq!(bin["data"]["bin.dat"], "AAH+/2JpbmFyeYA=");
    let cmb = decode_file("create-configmap-binary");
    assert_eq!(cmb["binaryData"]["bin.dat"], "AAH+/2JpbmFyeYA=");
    assert_eq!(cmb["data"]["x"], "y");

    let svc = decode_file("create-service-clusterip");
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], 8080);
    assert!(svc["spec"]["ports"][0].get("nodePort").is_none());

    let pdb = decode_file("create-pdb");
    assert_eq!(pdb["spec"]["minAvailable"], "50%");

    let job = decode_file("create-job-from-cronjob");
    let pod = &job["spec"]["template"]["spec"];
    assert_eq!(pod["volumes"][1]["configMap"]["name"], "cfg");
    assert_eq!(pod["volumes"][0]["emptyDir"]["sizeLimit"], "1Gi");
    assert_eq!(
        pod["containers"][0]["livenessProbe"]["httpGet"]["port"],
        8080
    );
    assert_eq!(
        pod["containers"][0]["readinessProbe"]["tcpSocket"]["port"],
        "http"
    );
    assert_eq!(
        pod["containers"][0]["env"][1]["valueFrom"]["configMapKeyRef"],
        json!({"name": "cfg", "key": "k", "optional": true})
    );
    assert_eq!(pod["tolerations"][0]["tolerationSeconds"], 3600);
    assert_eq!(job["metadata"]["ownerReferences"][0]["controller"], true);

    let delete = decode_file("drain-delete-options");
    assert_eq!(delete["kind"], "DeleteOptions");
    assert_eq!(delete["gracePeriodSeconds"], 10);
}

/// ObjectMeta as Go writes an unset one: every non-pointer field on the wire at its zero.
fn go_object_meta(name: &str, labels: &[(&str, &str)]) -> meta::ObjectMeta {
    meta::ObjectMeta {
        name: Some(name.into()),
        generate_name: Some(String::new()),
        namespace: Some(String::new()),
        self_link: Some(String::new()),
        uid: Some(String::new()),
        resource_version: Some(String::new()),
        generation: Some(0),
        creation_timestamp: Some(meta::Time::default()),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    }
}

/// `kubectl create deployment d0 --image=nginx --replicas=0` as Go's protobuf code writes it:
/// non-pointer fields always, zero or not; pointers only when set, zero or not.
#[test]
fn go_zero_values_come_out_as_upstream_stores_them() {
    use k8s_pb::api::apps::v1 as apps;
    let container = core::Container {
        name: Some("nginx".into()),
        image: Some("nginx".into()),
        working_dir: Some(String::new()),
        resources: Some(core::ResourceRequirements::default()),
        termination_message_path: Some(String::new()),
        termination_message_policy: Some(String::new()),
        image_pull_policy: Some(String::new()),
        stdin: Some(false),
        stdin_once: Some(false),
        tty: Some(false),
        ..Default::default()
    };
    let deployment = apps::Deployment {
        metadata: Some(go_object_meta("d0", &[("app", "d0")])),
        spec: Some(apps::DeploymentSpec {
            // *int32 set to 0: must stay (defaulting would make it 1).
            replicas: Some(0),
            selector: Some(meta::LabelSelector {
                match_labels: BTreeMap::from([("app".to_string(), "d0".to_string())]),
                match_expressions: vec![],
            }),
            template: Some(core::PodTemplateSpec {
                metadata: Some(go_object_meta("", &[("app", "d0")])),
                spec: Some(core::PodSpec {
                    containers: vec![container],
                    restart_policy: Some(String::new()),
                    dns_policy: Some(String::new()),
                    service_account_name: Some(String::new()),
                    service_account: Some(String::new()),
                    node_name: Some(String::new()),
                    host_network: Some(false),
                    host_pid: Some(false),
                    host_ipc: Some(false),
                    hostname: Some(String::new()),
                    subdomain: Some(String::new()),
                    scheduler_name: Some(String::new()),
                    priority_class_name: Some(String::new()),
                    // Pointers set to their zero.
                    automount_service_account_token: Some(false),
                    termination_grace_period_seconds: Some(0),
                    ..Default::default()
                }),
            }),
            strategy: Some(apps::DeploymentStrategy {
                r#type: Some(String::new()),
                rolling_update: None,
            }),
            min_ready_seconds: Some(0),
            paused: Some(false),
            ..Default::default()
        }),
        status: Some(apps::DeploymentStatus {
            observed_generation: Some(0),
            replicas: Some(0),
            updated_replicas: Some(0),
            ready_replicas: Some(0),
            available_replicas: Some(0),
            unavailable_replicas: Some(0),
            ..Default::default()
        }),
    };
    let decoded = protobuf::decode(&encode("apps/v1", "Deployment", &deployment)).unwrap();
    // What upstream stores (before defaulting) for the same object: kubectl 1.31's JSON body.
    assert_eq!(
        decoded,
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "d0", "creationTimestamp": null, "labels": {"app": "d0"}},
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": {"app": "d0"}},
                "template": {
                    "metadata": {"creationTimestamp": null, "labels": {"app": "d0"}},
                    "spec": {
                        "containers": [{"name": "nginx", "image": "nginx", "resources": {}}],
                        "automountServiceAccountToken": false,
                        "terminationGracePeriodSeconds": 0
                    }
                },
                "strategy": {}
            },
            "status": {}
        })
    );
}

#[test]
fn go_zero_values_of_services_and_jobs() {
    use k8s_pb::api::batch::v1 as batch;
    let service = core::Service {
        metadata: Some(go_object_meta("s1", &[])),
        spec: Some(core::ServiceSpec {
            ports: vec![
                core::ServicePort {
                    name: Some(String::new()),
                    protocol: Some("TCP".into()),
                    port: Some(80),
                    target_port: Some(int_port(8080)),
                    node_port: Some(0),
                    app_protocol: None,
                },
                // Not how Go writes it: `port` (no omitempty) and `targetPort` (a struct)
                // still come out, at their zero.
                core::ServicePort::default(),
            ],
            r#type: Some("ClusterIP".into()),
            cluster_ip: Some(String::new()),
            session_affinity: Some(String::new()),
            load_balancer_ip: Some(String::new()),
            external_name: Some(String::new()),
            external_traffic_policy: Some(String::new()),
            health_check_node_port: Some(0),
            publish_not_ready_addresses: Some(false),
            ..Default::default()
        }),
        status: Some(core::ServiceStatus {
            load_balancer: Some(core::LoadBalancerStatus::default()),
            conditions: vec![],
        }),
    };
    let decoded = protobuf::decode(&encode("v1", "Service", &service)).unwrap();
    assert_eq!(
        decoded,
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "s1", "creationTimestamp": null},
            "spec": {
                "ports": [
                    {"protocol": "TCP", "port": 80, "targetPort": 8080},
                    {"port": 0, "targetPort": 0}
                ],
                "type": "ClusterIP"
            },
            "status": {"loadBalancer": {}}
        })
    );

    let job = |manual_selector: Option<bool>| batch::Job {
        metadata: Some(go_object_meta("j", &[])),
        spec: Some(batch::JobSpec {
            manual_selector,
            template: Some(core::PodTemplateSpec {
                metadata: Some(go_object_meta("", &[])),
                spec: Some(core::PodSpec {
                    containers: vec![core::Container {
                        name: Some("j".into()),
                        image: Some("busybox".into()),
                        ..Default::default()
                    }],
                    restart_policy: Some("Never".into()),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }),
        status: Some(batch::JobStatus::default()),
    };
    // manualSelector is a *bool: absent unless sent, kept when sent, false or not.
    let decoded = protobuf::decode(&encode("batch/v1", "Job", &job(None))).unwrap();
    assert!(decoded["spec"].get("manualSelector").is_none(), "{decoded}");
    assert_eq!(
        decoded["spec"]["template"],
        json!({
            "metadata": {"creationTimestamp": null},
            "spec": {
                "containers": [{"name": "j", "image": "busybox", "resources": {}}],
                "restartPolicy": "Never"
            }
        })
    );
    assert_eq!(decoded["status"], json!({}));
    let decoded = protobuf::decode(&encode("batch/v1", "Job", &job(Some(false)))).unwrap();
    assert_eq!(decoded["spec"]["manualSelector"], false);
}

#[test]
fn go_nil_lists_without_omitempty_are_null_and_structs_always_there() {
    use k8s_pb::api::rbac::v1 as rbac;
    // Role.rules is `[]PolicyRule` without omitempty: upstream's JSON says null.
    let role = rbac::Role {
        metadata: Some(go_object_meta("r", &[])),
        rules: vec![],
    };
    let decoded = protobuf::decode(&encode("rbac.authorization.k8s.io/v1", "Role", &role)).unwrap();
    assert_eq!(
        decoded,
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "r", "creationTimestamp": null},
            "rules": null
        })
    );
    // A message without its metadata on the wire still has Go's zero ObjectMeta.
    let decoded =
        protobuf::decode(&encode("v1", "ConfigMap", &core::ConfigMap::default())).unwrap();
    assert_eq!(
        decoded,
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"creationTimestamp": null}})
    );
}

#[test]
fn go_zero_values_in_crd_schemas() {
    use k8s_pb::apiextensions_apiserver::pkg::apis::apiextensions::v1 as ext;
    let props = |ty: &str| ext::JsonSchemaProps {
        r#type: Some(ty.into()),
        id: Some(String::new()),
        schema: Some(String::new()),
        description: Some(String::new()),
        format: Some(String::new()),
        title: Some(String::new()),
        exclusive_maximum: Some(false),
        exclusive_minimum: Some(false),
        unique_items: Some(false),
        nullable: Some(false),
        x_kubernetes_embedded_resource: Some(false),
        x_kubernetes_int_or_string: Some(false),
        ..Default::default()
    };
    let crd = ext::CustomResourceDefinition {
        metadata: Some(go_object_meta("widgets.example.com", &[])),
        spec: Some(ext::CustomResourceDefinitionSpec {
            group: Some("example.com".into()),
            names: Some(ext::CustomResourceDefinitionNames {
                plural: Some("widgets".into()),
                singular: Some(String::new()),
                kind: Some("Widget".into()),
                list_kind: Some(String::new()),
                ..Default::default()
            }),
            scope: Some("Namespaced".into()),
            versions: vec![ext::CustomResourceDefinitionVersion {
                name: Some("v1".into()),
                served: Some(true),
                // bool without omitempty: false stays.
                storage: Some(false),
                deprecated: Some(false),
                schema: Some(ext::CustomResourceValidation {
                    open_apiv3_schema: Some(ext::JsonSchemaProps {
                        properties: BTreeMap::from([(
                            "n".to_string(),
                            ext::JsonSchemaProps {
                                maximum: Some(10.0),
                                minimum: Some(0.5),
                                x_kubernetes_preserve_unknown_fields: Some(false),
                                ..props("integer")
                            },
                        )]),
                        ..props("object")
                    }),
                }),
                ..Default::default()
            }],
            preserve_unknown_fields: Some(false),
            ..Default::default()
        }),
        status: None,
    };
    let decoded = protobuf::decode(&encode(
        "apiextensions.k8s.io/v1",
        "CustomResourceDefinition",
        &crd,
    ))
    .unwrap();
    assert_eq!(
        decoded["spec"],
        json!({
            "group": "example.com",
            "names": {"plural": "widgets", "kind": "Widget"},
            "scope": "Namespaced",
            "versions": [{
                "name": "v1",
                "served": true,
                "storage": false,
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {"n": {
                        "type": "integer",
                        "maximum": 10,
                        "minimum": 0.5,
                        "x-kubernetes-preserve-unknown-fields": false
                    }}
                }}
            }]
        })
    );
    // The status is a struct: there even when not on the wire, with Go's zero values
    // (`kubectl create -f crd.yaml --dry-run=client -o yaml` prints the same).
    assert_eq!(
        decoded["status"],
        json!({"conditions": null, "acceptedNames": {"plural": "", "kind": ""}, "storedVersions": null})
    );
}

#[test]
fn a_message_field_sent_twice_is_the_merge_of_both() {
    use k8s_pb::api::rbac::v1 as rbac;
    let first = rbac::RoleBinding {
        metadata: Some(go_object_meta("rb", &[])),
        subjects: vec![],
        role_ref: Some(rbac::RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: Some("Role".into()),
            name: Some("r1".into()),
        }),
    };
    let second = rbac::RoleBinding {
        metadata: Some(meta::ObjectMeta {
            labels: BTreeMap::from([("a".to_string(), "b".to_string())]),
            ..Default::default()
        }),
        subjects: vec![],
        role_ref: Some(rbac::RoleRef {
            name: Some("r2".into()),
            ..Default::default()
        }),
    };
    let mut raw = first.encode_to_vec();
    raw.extend(second.encode_to_vec());
    let decoded = protobuf::decode(&envelope(
        "rbac.authorization.k8s.io/v1",
        "RoleBinding",
        raw,
    ))
    .unwrap();
    // The second roleRef's absent fields do not reset the first one's.
    assert_eq!(
        decoded["roleRef"],
        json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r2"})
    );
    assert_eq!(
        decoded["metadata"],
        json!({"name": "rb", "creationTimestamp": null, "labels": {"a": "b"}})
    );
}

#[test]
fn every_kind_the_server_accepts_has_a_decoding() {
    let mut missing = Vec::new();
    for r in catalogue::RESOURCES {
        let av = r.api_version();
        if !protobuf::is_known_kind(&av, r.kind) {
            missing.push(format!("{av} {}", r.kind));
        }
        for s in r.subresources {
            // Streaming subresources take no body; log returns text.
            if matches!(s.name, "attach" | "exec" | "portforward" | "log") {
                continue;
            }
            if !s
                .verbs
                .iter()
                .any(|v| matches!(v, Verb::Create | Verb::Update))
            {
                continue;
            }
            let av = s
                .object_group_version
                .map(|gv| gv.api_version())
                .unwrap_or_else(|| r.api_version());
            if !protobuf::is_known_kind(&av, s.kind) {
                missing.push(format!("{av} {} ({}/{})", s.kind, r.plural, s.name));
            }
        }
    }
    for (av, kind) in [
        ("autoscaling/v1", "Scale"),
        ("policy/v1", "Eviction"),
        ("v1", "Binding"),
        ("authorization.k8s.io/v1", "SelfSubjectAccessReview"),
        ("authorization.k8s.io/v1", "SelfSubjectRulesReview"),
        ("authentication.k8s.io/v1", "SelfSubjectReview"),
        ("authentication.k8s.io/v1beta1", "SelfSubjectReview"),
        ("authentication.k8s.io/v1", "TokenRequest"),
        ("authentication.k8s.io/v1", "TokenReview"),
        ("meta.k8s.io/v1", "DeleteOptions"),
        ("v1", "DeleteOptions"),
        ("policy/v1", "DeleteOptions"),
        ("apps/v1", "DeleteOptions"),
    ] {
        if !protobuf::is_known_kind(av, kind) {
            missing.push(format!("{av} {kind}"));
        }
    }
    assert!(missing.is_empty(), "no decoding for: {missing:?}");
}

fn qty(s: &str) -> Quantity {
    Quantity {
        string: Some(s.into()),
    }
}

fn int_port(p: i32) -> IntOrString {
    IntOrString {
        r#type: Some(0),
        int_val: Some(p),
        str_val: None,
    }
}

fn str_port(p: &str) -> IntOrString {
    IntOrString {
        r#type: Some(1),
        int_val: None,
        str_val: Some(p.into()),
    }
}

fn object_meta(name: &str) -> meta::ObjectMeta {
    meta::ObjectMeta {
        name: Some(name.into()),
        namespace: Some("default".into()),
        labels: BTreeMap::from([("app".to_string(), name.to_string())]),
        creation_timestamp: Some(meta::Time::default()),
        ..Default::default()
    }
}

#[test]
fn deployment_round_trips() {
    use k8s_pb::api::apps::v1 as apps;
    let container = core::Container {
        name: Some("web".into()),
        image: Some("nginx:1.27".into()),
        command: vec!["nginx".into(), "-g".into()],
        ports: vec![
            core::ContainerPort {
                name: Some("http".into()),
                container_port: Some(80),
                protocol: Some("TCP".into()),
                ..Default::default()
            },
            core::ContainerPort {
                container_port: Some(9090),
                ..Default::default()
            },
        ],
        env: vec![core::EnvVar {
            name: Some("CFG".into()),
            value_from: Some(core::EnvVarSource {
                config_map_key_ref: Some(core::ConfigMapKeySelector {
                    local_object_reference: Some(core::LocalObjectReference {
                        name: Some("cfg".into()),
                    }),
                    key: Some("k".into()),
                    optional: Some(false),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }],
        resources: Some(core::ResourceRequirements {
            limits: BTreeMap::from([
                ("cpu".to_string(), qty("500m")),
                ("memory".to_string(), qty("128Mi")),
            ]),
            requests: BTreeMap::from([("cpu".to_string(), qty("250m"))]),
            ..Default::default()
        }),
        liveness_probe: Some(core::Probe {
            handler: Some(core::ProbeHandler {
                http_get: Some(core::HttpGetAction {
                    path: Some("/healthz".into()),
                    port: Some(str_port("http")),
                    http_headers: vec![core::HttpHeader {
                        name: Some("X-A".into()),
                        value: Some("b".into()),
                    }],
                    ..Default::default()
                }),
                ..Default::default()
            }),
            initial_delay_seconds: Some(5),
            period_seconds: Some(10),
            termination_grace_period_seconds: Some(30),
            ..Default::default()
        }),
        readiness_probe: Some(core::Probe {
            handler: Some(core::ProbeHandler {
                tcp_socket: Some(core::TcpSocketAction {
                    port: Some(int_port(80)),
                    host: None,
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        volume_mounts: vec![core::VolumeMount {
            name: Some("data".into()),
            mount_path: Some("/data".into()),
            read_only: Some(true),
            ..Default::default()
        }],
        ..Default::default()
    };
    let deployment = apps::Deployment {
        metadata: Some(object_meta("web")),
        spec: Some(apps::DeploymentSpec {
            replicas: Some(3),
            selector: Some(meta::LabelSelector {
                match_labels: BTreeMap::from([("app".to_string(), "web".to_string())]),
                match_expressions: vec![meta::LabelSelectorRequirement {
                    key: Some("tier".into()),
                    operator: Some("In".into()),
                    values: vec!["a".into(), "b".into()],
                }],
            }),
            template: Some(core::PodTemplateSpec {
                metadata: Some(meta::ObjectMeta {
                    labels: BTreeMap::from([("app".to_string(), "web".to_string())]),
                    ..Default::default()
                }),
                spec: Some(core::PodSpec {
                    containers: vec![container],
                    volumes: vec![
                        core::Volume {
                            name: Some("data".into()),
                            volume_source: Some(core::VolumeSource {
                                empty_dir: Some(core::EmptyDirVolumeSource {
                                    medium: Some("Memory".into()),
                                    size_limit: Some(qty("1Gi")),
                                }),
                                ..Default::default()
                            }),
                        },
                        core::Volume {
                            name: Some("cfg".into()),
                            volume_source: Some(core::VolumeSource {
                                config_map: Some(core::ConfigMapVolumeSource {
                                    local_object_reference: Some(core::LocalObjectReference {
                                        name: Some("cfg".into()),
                                    }),
                                    default_mode: Some(0o644),
                                    ..Default::default()
                                }),
                                ..Default::default()
                            }),
                        },
                    ],
                    security_context: Some(core::PodSecurityContext {
                        run_as_user: Some(1000),
                        supplemental_groups: vec![1, 2],
                        ..Default::default()
                    }),
                    termination_grace_period_seconds: Some(0),
                    ..Default::default()
                }),
            }),
            strategy: Some(apps::DeploymentStrategy {
                r#type: Some("RollingUpdate".into()),
                rolling_update: Some(apps::RollingUpdateDeployment {
                    max_unavailable: Some(str_port("25%")),
                    max_surge: Some(int_port(1)),
                }),
            }),
            min_ready_seconds: Some(0),
            ..Default::default()
        }),
        status: None,
    };
    let decoded = protobuf::decode(&encode("apps/v1", "Deployment", &deployment)).unwrap();
    let expected = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}, "creationTimestamp": null},
        "spec": {
            "replicas": 3,
            "selector": {
                "matchLabels": {"app": "web"},
                "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}]
            },
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": 1}},
            "template": {
                "metadata": {"labels": {"app": "web"}, "creationTimestamp": null},
                "spec": {
                    "terminationGracePeriodSeconds": 0,
                    "securityContext": {"runAsUser": 1000, "supplementalGroups": [1, 2]},
                    "volumes": [
                        {"name": "data", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}},
                        {"name": "cfg", "configMap": {"name": "cfg", "defaultMode": 420}}
                    ],
                    "containers": [{
                        "name": "web",
                        "image": "nginx:1.27",
                        "command": ["nginx", "-g"],
                        "ports": [
                            {"name": "http", "containerPort": 80, "protocol": "TCP"},
                            {"containerPort": 9090}
                        ],
                        "env": [{"name": "CFG", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "k", "optional": false}}}],
                        "resources": {
                            "limits": {"cpu": "500m", "memory": "128Mi"},
                            "requests": {"cpu": "250m"}
                        },
                        "livenessProbe": {
                            "httpGet": {"path": "/healthz", "port": "http", "httpHeaders": [{"name": "X-A", "value": "b"}]},
                            "initialDelaySeconds": 5,
                            "periodSeconds": 10,
                            "terminationGracePeriodSeconds": 30
                        },
                        "readinessProbe": {"tcpSocket": {"port": 80}},
                        "volumeMounts": [{"name": "data", "mountPath": "/data", "readOnly": true}]
                    }]
                }
            }
        },
        "status": {}
    });
    assert_eq!(decoded, expected);
}

#[test]
fn secret_with_binary_data_round_trips() {
    let secret = core::Secret {
        metadata: Some(object_meta("s")),
        immutable: Some(true),
        data: BTreeMap::from([
            ("bin".to_string(), vec![0u8, 1, 2, 0xfe, 0xff]),
            ("empty".to_string(), vec![]),
            ("text".to_string(), b"hello".to_vec()),
        ]),
        string_data: BTreeMap::from([("plain".to_string(), "v".to_string())]),
        r#type: Some("Opaque".into()),
    };
    let decoded = protobuf::decode(&encode("v1", "Secret", &secret)).unwrap();
    assert_eq!(
        decoded,
        json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "s", "namespace": "default", "labels": {"app": "s"}, "creationTimestamp": null},
            "immutable": true,
            "data": {"bin": "AAEC/v8=", "empty": "", "text": "aGVsbG8="},
            "stringData": {"plain": "v"},
            "type": "Opaque"
        })
    );
}

#[test]
fn service_target_ports_round_trip_as_number_and_string() {
    let service = core::Service {
        metadata: Some(object_meta("svc")),
        spec: Some(core::ServiceSpec {
            ports: vec![
                core::ServicePort {
                    name: Some("http".into()),
                    port: Some(80),
                    target_port: Some(str_port("web")),
                    protocol: Some("TCP".into()),
                    ..Default::default()
                },
                core::ServicePort {
                    name: Some("metrics".into()),
                    port: Some(9090),
                    target_port: Some(int_port(19090)),
                    node_port: Some(30090),
                    ..Default::default()
                },
            ],
            selector: BTreeMap::from([("app".to_string(), "svc".to_string())]),
            r#type: Some("NodePort".into()),
            cluster_ips: vec!["10.43.0.10".into()],
            ip_families: vec!["IPv4".into()],
            session_affinity_config: Some(core::SessionAffinityConfig {
                client_ip: Some(core::ClientIpConfig {
                    timeout_seconds: Some(600),
                }),
            }),
            ..Default::default()
        }),
        status: None,
    };
    let decoded = protobuf::decode(&encode("v1", "Service", &service)).unwrap();
    assert_eq!(
        decoded,
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "svc", "namespace": "default", "labels": {"app": "svc"}, "creationTimestamp": null},
            "spec": {
                "ports": [
                    {"name": "http", "port": 80, "targetPort": "web", "protocol": "TCP"},
                    {"name": "metrics", "port": 9090, "targetPort": 19090, "nodePort": 30090}
                ],
                "selector": {"app": "svc"},
                "type": "NodePort",
                "clusterIPs": ["10.43.0.10"],
                "ipFamilies": ["IPv4"],
                "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 600}}
            },
            "status": {"loadBalancer": {}}
        })
    );
}

#[test]
fn job_round_trips_with_times_and_int64() {
    use k8s_pb::api::batch::v1 as batch;
    let job = batch::Job {
        metadata: Some(meta::ObjectMeta {
            name: Some("pi".into()),
            generation: Some(1 << 40),
            creation_timestamp: Some(meta::Time {
                seconds: Some(1_735_689_600),
                nanos: Some(999),
            }),
            deletion_grace_period_seconds: Some(0),
            managed_fields: vec![meta::ManagedFieldsEntry {
                manager: Some("kubectl".into()),
                operation: Some("Update".into()),
                api_version: Some("batch/v1".into()),
                time: Some(meta::Time {
                    seconds: Some(0),
                    nanos: None,
                }),
                fields_type: Some("FieldsV1".into()),
                fields_v1: Some(meta::FieldsV1 {
                    raw: Some(br#"{"f:spec":{"f:parallelism":{}}}"#.to_vec()),
                }),
                subresource: None,
            }],
            ..Default::default()
        }),
        spec: Some(batch::JobSpec {
            parallelism: Some(2),
            completions: Some(4),
            backoff_limit: Some(6),
            active_deadline_seconds: Some(1 << 33),
            completion_mode: Some("Indexed".into()),
            suspend: Some(false),
            template: Some(core::PodTemplateSpec {
                metadata: None,
                spec: Some(core::PodSpec {
                    restart_policy: Some("Never".into()),
                    containers: vec![core::Container {
                        name: Some("pi".into()),
                        image: Some("perl".into()),
                        args: vec!["-Mbignum=bpi".into(), "-wle".into()],
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }),
        status: Some(batch::JobStatus {
            start_time: Some(meta::Time {
                seconds: Some(1_735_689_661),
                nanos: None,
            }),
            active: Some(1),
            ..Default::default()
        }),
    };
    let decoded = protobuf::decode(&encode("batch/v1", "Job", &job)).unwrap();
    assert_eq!(
        decoded,
        json!({
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {
                "name": "pi",
                "generation": 1_099_511_627_776_i64,
                "creationTimestamp": "2025-01-01T00:00:00Z",
                "deletionGracePeriodSeconds": 0,
                "managedFields": [{
                    "manager": "kubectl",
                    "operation": "Update",
                    "apiVersion": "batch/v1",
                    "time": "1970-01-01T00:00:00Z",
                    "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:spec": {"f:parallelism": {}}}
                }]
            },
            "spec": {
                "parallelism": 2,
                "completions": 4,
                "backoffLimit": 6,
                "activeDeadlineSeconds": 8_589_934_592_i64,
                "completionMode": "Indexed",
                "suspend": false,
                "template": {
                    "metadata": {"creationTimestamp": null},
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [{"name": "pi", "image": "perl", "args": ["-Mbignum=bpi", "-wle"], "resources": {}}]
                    }
                }
            },
            "status": {"startTime": "2025-01-01T00:01:01Z", "active": 1}
        })
    );
}

#[test]
fn pod_with_an_ephemeral_container_round_trips() {
    let pod = core::Pod {
        metadata: Some(object_meta("p")),
        spec: Some(core::PodSpec {
            containers: vec![core::Container {
                name: Some("app".into()),
                image: Some("nginx".into()),
                ..Default::default()
            }],
            ephemeral_containers: vec![core::EphemeralContainer {
                ephemeral_container_common: Some(core::EphemeralContainerCommon {
                    name: Some("debugger-abc".into()),
                    image: Some("busybox".into()),
                    stdin: Some(true),
                    tty: Some(true),
                    termination_message_policy: Some("File".into()),
                    security_context: Some(core::SecurityContext {
                        capabilities: Some(core::Capabilities {
                            add: vec!["SYS_PTRACE".into()],
                            drop: vec![],
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                target_container_name: Some("app".into()),
            }],
            host_aliases: vec![core::HostAlias {
                ip: Some("10.0.0.1".into()),
                hostnames: vec!["a".into()],
            }],
            ..Default::default()
        }),
        status: Some(core::PodStatus {
            phase: Some("Running".into()),
            pod_ip: Some("10.42.0.5".into()),
            pod_ips: vec![core::PodIp {
                ip: Some("10.42.0.5".into()),
            }],
            ..Default::default()
        }),
    };
    let decoded = protobuf::decode(&encode("v1", "Pod", &pod)).unwrap();
    assert_eq!(
        decoded,
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "p", "namespace": "default", "labels": {"app": "p"}, "creationTimestamp": null},
            "spec": {
                "containers": [{"name": "app", "image": "nginx", "resources": {}}],
                "ephemeralContainers": [{
                    "name": "debugger-abc",
                    "image": "busybox",
                    "resources": {},
                    "stdin": true,
                    "tty": true,
                    "terminationMessagePolicy": "File",
                    "securityContext": {"capabilities": {"add": ["SYS_PTRACE"]}},
                    "targetContainerName": "app"
                }],
                "hostAliases": [{"ip": "10.0.0.1", "hostnames": ["a"]}]
            },
            "status": {"phase": "Running", "podIP": "10.42.0.5", "podIPs": [{"ip": "10.42.0.5"}]}
        })
    );
}

#[test]
fn special_types_convert_like_upstream() {
    use k8s_pb::api::apps::v1 as apps;
    use k8s_pb::api::authentication::v1 as authn;
    use k8s_pb::api::events::v1 as events;

    // MicroTime: six fractional digits.
    let event = events::Event {
        metadata: Some(meta::ObjectMeta {
            name: Some("e".into()),
            ..Default::default()
        }),
        event_time: Some(meta::MicroTime {
            seconds: Some(1_735_689_600),
            nanos: Some(123_456_789),
        }),
        reason: Some("Started".into()),
        deprecated_count: Some(0),
        ..Default::default()
    };
    let decoded = protobuf::decode(&encode("events.k8s.io/v1", "Event", &event)).unwrap();
    assert_eq!(decoded["eventTime"], "2025-01-01T00:00:00.123456Z");
    // A non-pointer omitempty int32 at zero: left out, as upstream's JSON does.
    assert!(decoded.get("deprecatedCount").is_none());

    // RawExtension: embedded JSON, or an embedded k8s\0 body.
    let inner = encode(
        "v1",
        "ConfigMap",
        &core::ConfigMap {
            metadata: Some(meta::ObjectMeta {
                name: Some("inner".into()),
                ..Default::default()
            }),
            ..Default::default()
        },
    );
    for (raw, want) in [
        (
            br#"{"spec":{"template":{"x":1}}}"#.to_vec(),
            json!({"spec": {"template": {"x": 1}}}),
        ),
        (
            inner,
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "inner", "creationTimestamp": null}}),
        ),
    ] {
        let rev = apps::ControllerRevision {
            metadata: None,
            data: Some(RawExtension { raw: Some(raw) }),
            revision: Some(7),
        };
        let decoded = protobuf::decode(&encode("apps/v1", "ControllerRevision", &rev)).unwrap();
        assert_eq!(decoded["data"], want);
        assert_eq!(decoded["revision"], 7);
    }

    // ExtraValue is a plain array; BoundObjectReference.uID is "uid".
    let review = authn::TokenRequest {
        metadata: None,
        spec: Some(authn::TokenRequestSpec {
            audiences: vec!["api".into()],
            expiration_seconds: Some(3600),
            bound_object_ref: Some(authn::BoundObjectReference {
                kind: Some("Pod".into()),
                api_version: Some("v1".into()),
                name: Some("p".into()),
                u_id: Some("1234".into()),
            }),
        }),
        status: None,
    };
    let decoded =
        protobuf::decode(&encode("authentication.k8s.io/v1", "TokenRequest", &review)).unwrap();
    assert_eq!(
        decoded["spec"]["boundObjectRef"],
        json!({"kind": "Pod", "apiVersion": "v1", "name": "p", "uid": "1234"})
    );
    let ssr = authn::SelfSubjectReview {
        metadata: None,
        status: Some(authn::SelfSubjectReviewStatus {
            user_info: Some(authn::UserInfo {
                username: Some("admin".into()),
                uid: None,
                groups: vec!["system:masters".into()],
                extra: BTreeMap::from([(
                    "scopes".to_string(),
                    authn::ExtraValue {
                        items: vec!["a".into(), "b".into()],
                    },
                )]),
            }),
        }),
    };
    let decoded = protobuf::decode(&encode(
        "authentication.k8s.io/v1",
        "SelfSubjectReview",
        &ssr,
    ))
    .unwrap();
    assert_eq!(
        decoded["status"]["userInfo"],
        json!({"username": "admin", "groups": ["system:masters"], "extra": {"scopes": ["a", "b"]}})
    );
}

#[test]
fn eviction_round_trips() {
    use k8s_pb::api::policy::v1 as policy;
    let eviction = policy::Eviction {
        metadata: Some(meta::ObjectMeta {
            name: Some("p1".into()),
            namespace: Some("default".into()),
            ..Default::default()
        }),
        delete_options: Some(meta::DeleteOptions {
            grace_period_seconds: Some(30),
            ..Default::default()
        }),
    };
    let decoded = protobuf::decode(&encode("policy/v1", "Eviction", &eviction)).unwrap();
    assert_eq!(
        decoded,
        json!({
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": "p1", "namespace": "default", "creationTimestamp": null},
            "deleteOptions": {"gracePeriodSeconds": 30}
        })
    );
}

#[test]
fn meta_kinds_decode_under_any_group_version() {
    let opts = meta::DeleteOptions {
        grace_period_seconds: Some(0),
        propagation_policy: Some("Foreground".into()),
        preconditions: Some(meta::Preconditions {
            uid: Some("u".into()),
            resource_version: None,
        }),
        dry_run: vec!["All".into()],
        ..Default::default()
    };
    for av in ["v1", "meta.k8s.io/v1", "apps/v1"] {
        let decoded = protobuf::decode(&encode(av, "DeleteOptions", &opts)).unwrap();
        assert_eq!(
            decoded,
            json!({
                "apiVersion": av,
                "kind": "DeleteOptions",
                "gracePeriodSeconds": 0,
                "propagationPolicy": "Foreground",
                "preconditions": {"uid": "u"},
                "dryRun": ["All"]
            })
        );
    }
}

#[test]
fn unknown_fields_are_skipped_and_packed_repeated_accepted() {
    let mut raw = core::ConfigMap {
        metadata: Some(meta::ObjectMeta {
            name: Some("x".into()),
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec();
    // Field 999 (varint), field 1000 (length-delimited), field 1001 (fixed32), 1002 (fixed64).
    raw.extend([0xb8, 0x3e, 0x05]);
    raw.extend([0xc2, 0x3e, 0x02, b'h', b'i']);
    raw.extend([0xcd, 0x3e, 1, 2, 3, 4]);
    raw.extend([0xd1, 0x3e, 1, 2, 3, 4, 5, 6, 7, 8]);
    let decoded = protobuf::decode(&envelope("v1", "ConfigMap", raw)).unwrap();
    assert_eq!(
        decoded,
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "creationTimestamp": null}})
    );

    // PodSecurityContext.supplementalGroups (field 4) packed rather than proto2-unpacked.
    let ctx = [0x22, 0x03, 0x01, 0x02, 0x03];
    let spec = [&[0x72, ctx.len() as u8][..], &ctx].concat(); // PodSpec.securityContext = 14
    let pod = [&[0x12, spec.len() as u8][..], &spec].concat(); // Pod.spec = 2
    let decoded = protobuf::decode(&envelope("v1", "Pod", pod)).unwrap();
    assert_eq!(
        decoded["spec"]["securityContext"]["supplementalGroups"],
        json!([1, 2, 3])
    );
}

#[test]
fn errors_name_the_problem() {
    assert_eq!(
        protobuf::decode(b"{\"kind\":\"Pod\"}"),
        Err(ProtobufError::BadMagic)
    );
    let err = protobuf::decode(&envelope("v1", "Frobnicator", vec![])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "no protobuf decoding for kind Frobnicator of apiVersion v1"
    );

    // ConfigMap.metadata (field 1) sent as a varint.
    let err = protobuf::decode(&envelope("v1", "ConfigMap", vec![0x08, 0x01])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "wrong wire type 0 for field metadata (number 1) of k8s.io.api.core.v1.ConfigMap"
    );

    // metadata claims 16 bytes, has 2.
    let err =
        protobuf::decode(&envelope("v1", "ConfigMap", vec![0x0a, 0x10, 0x0a, 0x00])).unwrap_err();
    assert!(
        matches!(&err, ProtobufError::Truncated { message } if message == "k8s.io.api.core.v1.ConfigMap"),
        "{err}"
    );

    let mut gz = b"k8s\0".to_vec();
    gz.extend(
        Unknown {
            type_meta: Some(TypeMeta {
                api_version: Some("v1".into()),
                kind: Some("ConfigMap".into()),
            }),
            raw: Some(vec![]),
            content_encoding: Some("gzip".into()),
            content_type: None,
        }
        .encode_to_vec(),
    );
    let err = protobuf::decode(&gz).unwrap_err();
    assert!(err.is_unsupported_media_type(), "{err}");

    // IntOrString with an impossible type.
    let bad_port = [0x08, 0x07]; // type = 7
    let port = [&[0x22, bad_port.len() as u8][..], &bad_port].concat(); // ServicePort.targetPort = 4
    let spec = [&[0x0a, port.len() as u8][..], &port].concat(); // ServiceSpec.ports = 1
    let svc = [&[0x12, spec.len() as u8][..], &spec].concat(); // Service.spec = 2
    let err = protobuf::decode(&envelope("v1", "Service", svc)).unwrap_err();
    assert!(
        matches!(&err, ProtobufError::InvalidValue { field, .. } if field == "type"),
        "{err}"
    );

    // Nesting deeper than the limit fails cleanly (JSONSchemaProps.not, field 28).
    let mut props: Vec<u8> = Vec::new();
    for _ in 0..200 {
        let mut outer = vec![0xe2, 0x01];
        push_varint(&mut outer, props.len() as u64);
        outer.extend(&props);
        props = outer;
    }
    let err = protobuf::decode_as("apiextensions.k8s.io/v1", "CustomResourceDefinition", &{
        // spec(2).versions(7).schema(4).openAPIV3Schema(1) = props
        let mut v = wrap(1, &props);
        v = wrap(4, &v);
        v = wrap(7, &v);
        wrap(2, &v)
    })
    .unwrap_err();
    assert_eq!(err, ProtobufError::TooDeep);
}

fn push_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn wrap(tag: u32, inner: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    push_varint(&mut out, u64::from(tag << 3 | 2));
    push_varint(&mut out, inner.len() as u64);
    out.extend(inner);
    out
}

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[test]
fn garbage_never_panics() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut bodies: Vec<Vec<u8>> = std::fs::read_dir(data_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pb"))
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    bodies.sort();
    let mut runs = 0u32;
    for body in &bodies {
        // Every truncation.
        for n in 0..body.len() {
            let _ = protobuf::decode(&body[..n]);
            runs += 1;
        }
        // Random byte changes.
        for _ in 0..300 {
            let mut b = body.clone();
            for _ in 0..1 + rng.next() % 4 {
                let i = (rng.next() as usize) % b.len();
                b[i] = rng.next() as u8;
            }
            let _ = protobuf::decode(&b);
            runs += 1;
        }
    }
    // Random bytes after the magic, decoded as every kind.
    for _ in 0..2000 {
        let len = (rng.next() % 64) as usize;
        let raw: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        let mut b = b"k8s\0".to_vec();
        b.extend(&raw);
        let _ = protobuf::decode(&b);
        for (av, kind) in [
            ("v1", "Pod"),
            ("apps/v1", "Deployment"),
            ("v1", "Service"),
            ("apiextensions.k8s.io/v1", "CustomResourceDefinition"),
            ("authentication.k8s.io/v1", "SelfSubjectReview"),
        ] {
            let _ = protobuf::decode_as(av, kind, &raw);
        }
        runs += 1;
    }
    assert!(runs > 10_000);
}

/// The package's directory, from the environment the test runs in (cargo and nextest set
/// it): a test binary that another checkout sharing the target directory built, and that
/// cargo takes for fresh here, still reads this checkout's files.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| env!("CARGO_MANIFEST_DIR").into(), Into::into)
}
