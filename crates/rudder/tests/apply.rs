//! Server-side apply and managed fields through the real clients against the built `rudder
//! server`: `kubectl apply --server-side` (create, re-apply, a conflict without
//! `--force-conflicts` and with it, fields removed when the applier drops them), the managers
//! kubectl's commands record (`kubectl-create`, `kubectl-edit`, `kubectl-client-side-apply`,
//! `kubectl-label`) as `get --show-managed-fields` prints them, `kubectl diff` on every kubectl
//! 1.27–1.33, and the wire details clients see (201 on create, status subresource entries,
//! fieldManager validation, clearing managedFields).

use std::path::Path;

use rudder_testkit::{RudderServer, KUBECTL_DEFAULT_MINOR};
use serde_json::{json, Value};

fn server() -> RudderServer {
    RudderServer::api_only(Path::new(env!("CARGO_BIN_EXE_rudder")), &[])
        .expect("start rudder server")
}

fn deployment(replicas: u32, image: &str) -> String {
    deployment_named("web", replicas, image)
}

fn deployment_named(name: &str, replicas: u32, image: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  labels:
    app: web
spec:
  replicas: {replicas}
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: nginx
        image: {image}
"
    )
}

fn get(s: &RudderServer, what: &[&str]) -> Value {
    let mut args = vec!["get"];
    args.extend_from_slice(what);
    args.extend_from_slice(&["-o", "json", "--show-managed-fields"]);
    let out = s.kubectl(&args).ok();
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

/// The managedFields entry of `manager` with `operation`.
#[track_caller]
fn entry<'a>(obj: &'a Value, manager: &str, operation: &str) -> &'a Value {
    obj["metadata"]["managedFields"]
        .as_array()
        .and_then(|a| {
            a.iter()
                .find(|e| e["manager"] == manager && e["operation"] == operation)
        })
        .unwrap_or_else(|| {
            panic!(
                "no {manager}/{operation} entry in {:#}",
                obj["metadata"]["managedFields"]
            )
        })
}

#[test]
fn kubectl_server_side_apply_conflicts_and_managers() {
    let s = server();
    s.kubectl(&["create", "deployment", "web", "--image=nginx"])
        .ok();
    let d = get(&s, &["deployment", "web"]);
    let created = entry(&d, "kubectl-create", "Update");
    assert_eq!(created["apiVersion"], "apps/v1");
    assert_eq!(created["fieldsType"], "FieldsV1");
    let time = created["time"].as_str().expect("time");
    assert!(
        time.len() == 20 && time.ends_with('Z'),
        "time in seconds: {time}"
    );
    let fields = &created["fieldsV1"];
    assert_eq!(fields["f:spec"]["f:replicas"], json!({}), "{fields:#}");
    assert_eq!(
        fields["f:metadata"]["f:labels"],
        json!({".": {}, "f:app": {}}),
        "{fields:#}"
    );
    assert_eq!(
        fields["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"nginx\"}"]
            ["f:image"],
        json!({}),
        "{fields:#}"
    );
    // The default of `get -o yaml` hides them; `--show-managed-fields` shows them.
    let plain = s.kubectl(&["get", "deployment", "web", "-o", "yaml"]).ok();
    assert!(!plain.contains("managedFields"), "{plain}");
    let shown = s
        .kubectl(&[
            "get",
            "deployment",
            "web",
            "-o",
            "yaml",
            "--show-managed-fields",
        ])
        .ok();
    assert!(
        shown.contains("manager: kubectl-create") && shown.contains("f:replicas: {}"),
        "{shown}"
    );

    // Applying another replica count conflicts with kubectl-create's.
    let err = s
        .kubectl_stdin(
            &["apply", "--server-side", "-f", "-"],
            &deployment(3, "nginx"),
        )
        .fails();
    assert!(
        err.contains(
            "Apply failed with 1 conflict: conflict with \"kubectl-create\" using apps/v1: .spec.replicas"
        ),
        "{err}"
    );
    assert_eq!(get(&s, &["deployment", "web"])["spec"]["replicas"], 1);
    // Forced, the field changes hands.
    s.kubectl_stdin(
        &["apply", "--server-side", "--force-conflicts", "-f", "-"],
        &deployment(3, "nginx"),
    )
    .ok();
    let d = get(&s, &["deployment", "web"]);
    assert_eq!(d["spec"]["replicas"], 3);
    let applied = entry(&d, "kubectl", "Apply");
    assert_eq!(applied["fieldsV1"]["f:spec"]["f:replicas"], json!({}));
    assert!(entry(&d, "kubectl-create", "Update")["fieldsV1"]["f:spec"]
        .get("f:replicas")
        .is_none());
    // Re-applying the same configuration changes nothing.
    let rv = d["metadata"]["resourceVersion"].clone();
    let again = s
        .kubectl_stdin(
            &["apply", "--server-side", "-f", "-"],
            &deployment(3, "nginx"),
        )
        .ok();
    assert!(again.contains("serverside-applied"), "{again}");
    assert_eq!(
        get(&s, &["deployment", "web"])["metadata"]["resourceVersion"],
        rv
    );

    // kubectl edit records kubectl-edit.
    let out = s
        .kubectl_cmd(KUBECTL_DEFAULT_MINOR)
        .env("KUBE_EDITOR", "sed -i s/replicas:\\ 3/replicas:\\ 4/")
        .args(["edit", "deployment", "web"])
        .output()
        .expect("kubectl edit");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let d = get(&s, &["deployment", "web"]);
    assert_eq!(d["spec"]["replicas"], 4);
    assert_eq!(
        entry(&d, "kubectl-edit", "Update")["fieldsV1"],
        json!({"f:spec": {"f:replicas": {}}})
    );
    // And kubectl label, kubectl-label.
    s.kubectl(&["label", "deployment", "web", "tier=front"])
        .ok();
    let d = get(&s, &["deployment", "web"]);
    assert_eq!(
        entry(&d, "kubectl-label", "Update")["fieldsV1"],
        json!({"f:metadata": {"f:labels": {"f:tier": {}}}})
    );
}

#[test]
fn applied_fields_dropped_by_their_only_manager_are_removed() {
    let s = server();
    let cm = |data: &str| {
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  labels:\n    a: x\ndata:\n{data}")
    };
    let out = s
        .kubectl_stdin(
            &["apply", "--server-side", "-f", "-"],
            &cm("  one: '1'\n  two: '2'\n"),
        )
        .ok();
    assert!(out.contains("configmap/c serverside-applied"), "{out}");
    let c = get(&s, &["configmap", "c"]);
    assert_eq!(
        entry(&c, "kubectl", "Apply")["fieldsV1"],
        json!({"f:data": {"f:one": {}, "f:two": {}}, "f:metadata": {"f:labels": {"f:a": {}}}})
    );
    // Someone else sets `three`; the applier drops `two`.
    s.kubectl(&[
        "patch",
        "configmap",
        "c",
        "--type=merge",
        "-p",
        r#"{"data":{"three":"3"}}"#,
    ])
    .ok();
    s.kubectl_stdin(&["apply", "--server-side", "-f", "-"], &cm("  one: '1'\n"))
        .ok();
    let c = get(&s, &["configmap", "c"]);
    assert_eq!(c["data"], json!({"one": "1", "three": "3"}));
    assert_eq!(
        entry(&c, "kubectl-patch", "Update")["fieldsV1"],
        json!({"f:data": {"f:three": {}}})
    );
    // Server-side dry run: answered, not stored.
    let dry = s
        .kubectl_stdin(
            &[
                "apply",
                "--server-side",
                "--dry-run=server",
                "-o",
                "json",
                "-f",
                "-",
            ],
            &cm("  one: 'dry'\n"),
        )
        .ok();
    let dry: Value = serde_json::from_str(&dry).expect("JSON");
    assert_eq!(dry["data"]["one"], "dry");
    assert_eq!(get(&s, &["configmap", "c"])["data"]["one"], "1");
    // Clearing managedFields: they stay cleared through later updates.
    s.kubectl(&[
        "patch",
        "configmap",
        "c",
        "--type=merge",
        "-p",
        r#"{"metadata":{"managedFields":[]}}"#,
    ])
    .ok();
    s.kubectl(&["label", "configmap", "c", "b=y"]).ok();
    let c = get(&s, &["configmap", "c"]);
    assert!(c["metadata"].get("managedFields").is_none(), "{c:#}");
}

#[test]
fn client_side_apply_then_server_side_apply() {
    let s = server();
    s.kubectl_stdin(&["apply", "-f", "-"], &deployment(1, "nginx"))
        .ok();
    let d = get(&s, &["deployment", "web"]);
    entry(&d, "kubectl-client-side-apply", "Update");
    // Another manager changing what client-side apply set conflicts, naming it.
    let err = s
        .kubectl_stdin(
            &["apply", "--server-side", "--field-manager=other", "-f", "-"],
            &deployment(2, "nginx"),
        )
        .fails();
    assert!(
        err.contains("conflict with \"kubectl-client-side-apply\" using apps/v1: .spec.replicas"),
        "{err}"
    );
    // kubectl itself takes over from its client-side applies without a conflict.
    s.kubectl_stdin(
        &["apply", "--server-side", "-f", "-"],
        &deployment(2, "nginx:1.27"),
    )
    .ok();
    let d = get(&s, &["deployment", "web"]);
    assert_eq!(d["spec"]["replicas"], 2);
    entry(&d, "kubectl", "Apply");
}

/// `kubectl diff` (client-side against an object made by client-side apply, server-side
/// against one made by server-side apply) on every kubectl 1.27–1.33: exit status 1 and the
/// changed line when the file differs, 0 when it does not; and server-side apply itself.
#[test]
fn kubectl_diff_on_every_version() {
    let s = server();
    s.kubectl_stdin(&["apply", "-f", "-"], &deployment_named("csa", 1, "nginx"))
        .ok();
    s.kubectl_stdin(
        &["apply", "--server-side", "-f", "-"],
        &deployment_named("ssa", 1, "nginx"),
    )
    .ok();
    for minor in 27..=33 {
        for (name, extra) in [("csa", None), ("ssa", Some("--server-side"))] {
            let mut args = vec!["diff", "-f", "-"];
            args.extend(extra);
            let same = s.kubectl_version_stdin(minor, &args, &deployment_named(name, 1, "nginx"));
            assert_eq!(
                same.out.status.code(),
                Some(0),
                "1.{minor} {args:?}: {}{}",
                same.stdout(),
                same.stderr()
            );
            let changed =
                s.kubectl_version_stdin(minor, &args, &deployment_named(name, 5, "nginx"));
            assert_eq!(
                changed.out.status.code(),
                Some(1),
                "1.{minor} {args:?}: {}{}",
                changed.stdout(),
                changed.stderr()
            );
            let out = changed.stdout();
            assert!(
                out.contains("-  replicas: 1") && out.contains("+  replicas: 5"),
                "1.{minor} {args:?}: {out}"
            );
        }
        // Server-side apply itself on each version, re-applying what is there.
        let out = s
            .kubectl_version_stdin(
                minor,
                &["apply", "--server-side", "-f", "-"],
                &deployment_named("ssa", 1, "nginx"),
            )
            .ok();
        assert!(
            out.contains("deployment.apps/ssa serverside-applied"),
            "1.{minor}: {out}"
        );
    }
    for name in ["csa", "ssa"] {
        assert_eq!(get(&s, &["deployment", name])["spec"]["replicas"], 1);
    }
}

#[test]
fn apply_on_the_wire() {
    let s = server();
    let apply = "application/apply-patch+yaml";
    let cm = br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"w"},"data":{"a":"1"}}"#;
    let path = "/api/v1/namespaces/default/configmaps/w";
    // fieldManager is required, and at most 128 bytes.
    let a = s.request("PATCH", path, apply, cm);
    assert_eq!(a.code, 422, "{}", a.body);
    assert_eq!(
        a.json()["message"],
        "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch"
    );
    let long = format!("{path}?fieldManager={}", "m".repeat(129));
    let a = s.request("PATCH", &long, apply, cm);
    assert_eq!(a.code, 422, "{}", a.body);
    assert!(
        a.json()["message"]
            .as_str()
            .is_some_and(|m| m.contains("fieldManager: Too long: may not be more than 128 bytes")),
        "{}",
        a.body
    );
    // force only with apply.
    let a = s.request(
        "PATCH",
        &format!("{path}?force=true"),
        "application/merge-patch+json",
        b"{}",
    );
    assert_eq!(a.code, 422, "{}", a.body);
    // Create on apply: 201; again: 200.
    let a = s.request("PATCH", &format!("{path}?fieldManager=m"), apply, cm);
    assert_eq!(a.code, 201, "{}", a.body);
    let a = s.request("PATCH", &format!("{path}?fieldManager=m"), apply, cm);
    assert_eq!(a.code, 200, "{}", a.body);
    // YAML bodies; name, apiVersion and managedFields checked.
    let a = s.request(
        "PATCH",
        &format!("{path}?fieldManager=m"),
        apply,
        b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: other\n",
    );
    assert_eq!(a.code, 400, "{}", a.body);
    assert_eq!(
        a.json()["message"],
        "the name of the object (other) does not match the name on the URL (w)"
    );
    let a = s.request(
        "PATCH",
        &format!("{path}?fieldManager=m"),
        apply,
        b"apiVersion: v2\nkind: ConfigMap\nmetadata:\n  name: w\n",
    );
    assert_eq!(a.code, 400, "{}", a.body);
    assert_eq!(
        a.json()["message"],
        "Incorrect version specified in apply patch. Specified patch version: v2, expected: v1"
    );
    let a = s.request(
        "PATCH",
        &format!("{path}?fieldManager=m"),
        apply,
        b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: w\n  managedFields: []\n",
    );
    assert_eq!(a.code, 400, "{}", a.body);
    assert_eq!(a.json()["message"], "metadata.managedFields must be nil");
    // Without fieldManager, an update is recorded under the User-Agent's first part (curl).
    let a = s.request(
        "PATCH",
        path,
        "application/merge-patch+json",
        br#"{"data":{"b":"2"}}"#,
    );
    assert_eq!(a.code, 200, "{}", a.body);
    let managers: Vec<String> = a.json()["metadata"]["managedFields"]
        .as_array()
        .expect("managedFields")
        .iter()
        .map(|e| {
            format!(
                "{}/{}",
                e["manager"].as_str().unwrap_or(""),
                e["operation"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(managers, ["m/Apply", "curl/Update"]);

    // Apply to the status subresource: an entry with `subresource: status`; a missing object
    // is not created through it.
    s.kubectl_stdin(
        &["apply", "--server-side", "-f", "-"],
        &deployment(1, "nginx"),
    )
    .ok();
    let status_path = "/apis/apps/v1/namespaces/default/deployments/web/status?fieldManager=st";
    let a = s.request(
        "PATCH",
        status_path,
        apply,
        br#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web"},"status":{"replicas":1,"observedGeneration":1},"spec":{"replicas":9}}"#,
    );
    assert_eq!(a.code, 200, "{}", a.body);
    let d = a.json();
    assert_eq!(d["status"]["replicas"], 1);
    assert_eq!(
        d["spec"]["replicas"], 1,
        "spec is not written through status"
    );
    let st = entry(&d, "st", "Apply");
    assert_eq!(st["subresource"], "status");
    assert_eq!(
        st["fieldsV1"],
        json!({"f:status": {"f:observedGeneration": {}, "f:replicas": {}}})
    );
    let a = s.request(
        "PATCH",
        "/apis/apps/v1/namespaces/default/deployments/nope/status?fieldManager=st",
        apply,
        br#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"nope"}}"#,
    );
    assert_eq!(a.code, 404, "{}", a.body);

    // Apply to the scale subresource: the parent's replicas, which kubectl applied.
    let scale = br#"{"apiVersion":"autoscaling/v1","kind":"Scale","metadata":{"name":"web"},"spec":{"replicas":2}}"#;
    let scale_path = "/apis/apps/v1/namespaces/default/deployments/web/scale?fieldManager=sc";
    let a = s.request("PATCH", scale_path, apply, scale);
    assert_eq!(a.code, 409, "{}", a.body);
    assert_eq!(
        a.json()["message"],
        "Apply failed with 1 conflict: conflict with \"kubectl\": .spec.replicas"
    );
    let a = s.request("PATCH", &format!("{scale_path}&force=true"), apply, scale);
    assert_eq!(a.code, 200, "{}", a.body);
    assert_eq!(a.json()["kind"], "Scale");
    assert_eq!(a.json()["spec"]["replicas"], 2);
    let d = get(&s, &["deployment", "web"]);
    assert_eq!(d["spec"]["replicas"], 2);
    let sc = entry(&d, "sc", "Apply");
    assert_eq!(sc["subresource"], "scale");
    assert_eq!(sc["fieldsV1"], json!({"f:spec": {"f:replicas": {}}}));
}

/// Update entries as upstream records them: `.` where a map, struct or list item appears,
/// fields compared in their Go form (so defaults count, value structs are always there), and
/// nothing that admission or the registry set (allocated IPs, IP families).
#[test]
fn update_entries_have_upstreams_shape() {
    let s = server();
    s.kubectl(&["create", "deployment", "nginx", "--image=nginx"])
        .ok();
    s.kubectl(&["create", "service", "clusterip", "svc", "--tcp=80:8080"])
        .ok();
    s.kubectl(&["label", "deployment", "nginx", "x=y"]).ok();
    let d = get(&s, &["deployment", "nginx"]);
    assert_eq!(
        entry(&d, "kubectl-create", "Update")["fieldsV1"],
        json!({
            "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
            "f:spec": {
                "f:progressDeadlineSeconds": {},
                "f:replicas": {},
                "f:revisionHistoryLimit": {},
                "f:selector": {},
                "f:strategy": {
                    "f:rollingUpdate": {".": {}, "f:maxSurge": {}, "f:maxUnavailable": {}},
                    "f:type": {}
                },
                "f:template": {
                    "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
                    "f:spec": {
                        "f:containers": {"k:{\"name\":\"nginx\"}": {
                            ".": {},
                            "f:image": {},
                            "f:imagePullPolicy": {},
                            "f:name": {},
                            "f:resources": {},
                            "f:terminationMessagePath": {},
                            "f:terminationMessagePolicy": {}
                        }},
                        "f:dnsPolicy": {},
                        "f:restartPolicy": {},
                        "f:schedulerName": {},
                        "f:securityContext": {},
                        "f:terminationGracePeriodSeconds": {}
                    }
                }
            }
        })
    );
    assert_eq!(
        entry(&d, "kubectl-label", "Update")["fieldsV1"],
        json!({"f:metadata": {"f:labels": {"f:x": {}}}})
    );
    let svc = get(&s, &["service", "svc"]);
    assert_eq!(
        entry(&svc, "kubectl-create", "Update")["fieldsV1"],
        json!({
            "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
            "f:spec": {
                "f:internalTrafficPolicy": {},
                "f:ports": {".": {}, "k:{\"port\":80,\"protocol\":\"TCP\"}": {
                    ".": {}, "f:name": {}, "f:port": {}, "f:protocol": {}, "f:targetPort": {}
                }},
                "f:selector": {},
                "f:sessionAffinity": {},
                "f:type": {}
            }
        })
    );
    // Admission's changes are not the creator's: the ServiceAccount plugin's account and
    // token volume, DefaultTolerationSeconds' tolerations, Priority's priority.
    s.kubectl(&["run", "p", "--image=nginx"]).ok();
    let p = get(&s, &["pod", "p"]);
    let spec = &entry(&p, "kubectl-run", "Update")["fieldsV1"]["f:spec"];
    for f in [
        "f:serviceAccountName",
        "f:volumes",
        "f:tolerations",
        "f:priority",
    ] {
        assert!(spec.get(f).is_none(), "{f} in {spec:#}");
    }
    assert!(spec.get("f:containers").is_some(), "{spec:#}");

    // What the server makes itself, under upstream's managers.
    let ns = get(&s, &["namespace", "default"]);
    assert_eq!(
        entry(&ns, "kube-apiserver", "Update")["fieldsV1"],
        json!({"f:metadata": {"f:labels": {".": {}, "f:kubernetes.io/metadata.name": {}}}})
    );
    let pc = get(&s, &["priorityclass", "system-node-critical"]);
    assert_eq!(
        entry(&pc, "kube-apiserver", "Update")["fieldsV1"],
        json!({"f:description": {}, "f:preemptionPolicy": {}, "f:value": {}})
    );
    let k = get(&s, &["service", "kubernetes"]);
    let fields = &entry(&k, "kube-apiserver", "Update")["fieldsV1"]["f:spec"];
    assert!(fields.get("f:clusterIP").is_some(), "{fields:#}");
    assert!(fields.get("f:clusterIPs").is_none(), "{fields:#}");
    // The default ServiceAccount holds no field a manager owns (as upstream's controller
    // creates it: a name only).
    let sa = get(&s, &["serviceaccount", "default"]);
    assert!(sa["metadata"].get("managedFields").is_none(), "{sa:#}");
    // Quota admission writes the quota's status as kube-apiserver.
    s.kubectl(&["create", "quota", "q", "--hard=pods=10"]).ok();
    s.kubectl(&["run", "p2", "--image=nginx"]).ok();
    let q = get(&s, &["resourcequota", "q"]);
    let status = entry(&q, "kube-apiserver", "Update");
    assert_eq!(status["subresource"], "status");
    assert_eq!(
        status["fieldsV1"],
        json!({"f:status": {"f:hard": {".": {}, "f:pods": {}}, "f:used": {".": {}, "f:pods": {}}}})
    );
}

/// Entries name paths of the version they were written in: an autoscaling/v1 HPA's fields
/// are v1 fields (`targetCPUUtilizationPercentage`), an events.k8s.io/v1 Event's are
/// events.k8s.io fields (`note`), whichever version reads them; a write through another
/// version takes what it changes from them in their own version's terms.
#[test]
fn entries_keep_the_version_they_were_written_in() {
    let s = server();
    s.kubectl_stdin(
        &["create", "-f", "-"],
        "apiVersion: autoscaling/v1
kind: HorizontalPodAutoscaler
metadata: {name: web}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  minReplicas: 1
  maxReplicas: 5
  targetCPUUtilizationPercentage: 80
",
    )
    .ok();
    let v1_fields = json!({"f:spec": {
        "f:maxReplicas": {}, "f:minReplicas": {}, "f:scaleTargetRef": {},
        "f:targetCPUUtilizationPercentage": {}
    }});
    for version in ["hpa.v1.autoscaling", "hpa.v2.autoscaling"] {
        let h = get(&s, &[version, "web"]);
        let e = entry(&h, "kubectl-create", "Update");
        assert_eq!(e["apiVersion"], "autoscaling/v1", "{version}");
        assert_eq!(e["fieldsV1"], v1_fields, "{version}");
    }
    // Through v2: maxReplicas and the CPU target change; the v1 entry loses both.
    s.kubectl(&[
        "patch", "hpa.v2.autoscaling", "web", "--type=merge", "-p",
        r#"{"spec":{"maxReplicas":7,"metrics":[{"type":"Resource","resource":{"name":"cpu","target":{"type":"Utilization","averageUtilization":60}}}]}}"#,
    ])
    .ok();
    let h = get(&s, &["hpa.v2.autoscaling", "web"]);
    assert_eq!(
        entry(&h, "kubectl-create", "Update")["fieldsV1"],
        json!({"f:spec": {"f:minReplicas": {}, "f:scaleTargetRef": {}}})
    );
    let patch = entry(&h, "kubectl-patch", "Update");
    assert_eq!(patch["apiVersion"], "autoscaling/v2");
    assert_eq!(
        patch["fieldsV1"],
        json!({"f:spec": {"f:maxReplicas": {}, "f:metrics": {}}})
    );

    s.kubectl_stdin(
        &["create", "-f", "-"],
        "apiVersion: events.k8s.io/v1
kind: Event
metadata: {name: ev1}
eventTime: \"2024-01-01T00:00:00.000000Z\"
reportingController: me/ctl
reportingInstance: me-1
action: Doing
reason: Because
type: Normal
note: hello
regarding: {kind: Pod, name: p, namespace: default}
",
    )
    .ok();
    for version in ["events.v1.events.k8s.io", "events.v1."] {
        let ev = get(&s, &[version, "ev1"]);
        let e = entry(&ev, "kubectl-create", "Update");
        assert_eq!(e["apiVersion"], "events.k8s.io/v1", "{version}");
        assert_eq!(
            e["fieldsV1"],
            json!({"f:action": {}, "f:eventTime": {}, "f:note": {}, "f:reason": {},
                   "f:regarding": {}, "f:reportingController": {}, "f:reportingInstance": {},
                   "f:type": {}}),
            "{version}"
        );
    }
}
