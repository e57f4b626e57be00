//! The real kubectl against the built `rudder server`: discovery, everyday commands, output
//! formats, errors, watch and paging. Each test starts its own server on a free port.

use std::path::Path;

use rudder_testkit::RudderServer;

fn server() -> RudderServer {
    RudderServer::api_only(Path::new(env!("CARGO_BIN_EXE_rudder")), &[])
        .expect("start rudder server")
}

/// A server that also runs its controllers (no agent, no scheduler): for what the namespace
/// controller and the garbage collector finish (a deleted namespace goes once emptied).
fn server_with_controllers() -> RudderServer {
    RudderServer::start(
        Path::new(env!("CARGO_BIN_EXE_rudder")),
        &["--disable-agent", "--disable-scheduler"],
    )
    .expect("start rudder server")
}

#[test]
fn discovery_and_namespaces() {
    let s = server();
    let v = s.kubectl(&["version"]).ok();
    assert!(v.contains("Server Version: v1.33.0"), "{v}");
    let versions = s.kubectl(&["api-versions"]).ok();
    for gv in [
        "v1",
        "apps/v1",
        "batch/v1",
        "autoscaling/v2",
        "autoscaling/v1",
        "rbac.authorization.k8s.io/v1",
    ] {
        assert!(
            versions.lines().any(|l| l == gv),
            "api-versions lists {gv}: {versions}"
        );
    }
    let resources = s.kubectl(&["api-resources", "--no-headers"]).ok();
    let pods = resources
        .lines()
        .find(|l| l.starts_with("pods "))
        .expect("pods listed");
    assert_eq!(
        pods.split_whitespace().collect::<Vec<_>>(),
        ["pods", "po", "v1", "true", "Pod"]
    );
    let deploy = resources
        .lines()
        .find(|l| l.starts_with("deployments "))
        .expect("deployments");
    assert_eq!(
        deploy.split_whitespace().collect::<Vec<_>>(),
        ["deployments", "deploy", "apps/v1", "true", "Deployment"]
    );
    let ns = s.kubectl(&["get", "ns", "-o", "name"]).ok();
    assert_eq!(
        ns.lines().collect::<Vec<_>>(),
        [
            "namespace/default",
            "namespace/kube-node-lease",
            "namespace/kube-public",
            "namespace/kube-system"
        ]
    );
    // Namespaces are checked on create: content needs a namespace that exists.
    let err = s
        .kubectl_stdin(&["apply", "-n", "nowhere", "-f", "-"], CM)
        .fails();
    assert!(err.contains("namespaces \"nowhere\" not found"), "{err}");
    s.kubectl_stdin(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team-a\n",
    )
    .ok();
    let out = s
        .kubectl_stdin(&["apply", "-n", "team-a", "-f", "-"], CM)
        .ok();
    assert_eq!(out.trim(), "configmap/settings created");
}

const CM: &str = "apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  labels:
    app: web
data:
  color: blue
  size: large
";

#[test]
fn apply_create_update_noop_and_prune() {
    let s = server();
    let apply = |doc: &str| s.kubectl_stdin(&["apply", "-f", "-"], doc).ok();
    assert_eq!(apply(CM).trim(), "configmap/settings created");
    let rv1 = s
        .kubectl(&[
            "get",
            "cm",
            "settings",
            "-o",
            "jsonpath={.metadata.resourceVersion}",
        ])
        .ok();
    assert_eq!(apply(CM).trim(), "configmap/settings unchanged");
    let rv2 = s
        .kubectl(&[
            "get",
            "cm",
            "settings",
            "-o",
            "jsonpath={.metadata.resourceVersion}",
        ])
        .ok();
    assert_eq!(rv1, rv2, "a no-op apply does not write");
    // Changed value, removed key: the key is pruned through the last-applied annotation.
    let changed = CM
        .replace("color: blue", "color: green")
        .replace("  size: large\n", "");
    assert_eq!(apply(&changed).trim(), "configmap/settings configured");
    let data = s
        .kubectl(&["get", "cm", "settings", "-o", "jsonpath={.data}"])
        .ok();
    assert_eq!(data, r#"{"color":"green"}"#);
    // Output formats.
    let yaml = s.kubectl(&["get", "cm", "settings", "-o", "yaml"]).ok();
    assert!(
        yaml.contains("kind: ConfigMap") && yaml.contains("color: green"),
        "{yaml}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&s.kubectl(&["get", "cm", "settings", "-o", "json"]).ok()).unwrap();
    assert_eq!(json["metadata"]["labels"]["app"], "web");
    assert!(json["metadata"]["uid"]
        .as_str()
        .is_some_and(|u| u.len() == 36));
    let cols = s
        .kubectl(&[
            "get",
            "cm",
            "-o",
            "custom-columns=NAME:.metadata.name,APP:.metadata.labels.app",
        ])
        .ok();
    assert_eq!(
        cols.lines().collect::<Vec<_>>(),
        ["NAME       APP", "settings   web"]
    );
    let table = s.kubectl(&["get", "cm"]).ok();
    assert!(table.starts_with("NAME"), "{table}");
    // delete -f
    let out = s.kubectl_stdin(&["delete", "-f", "-"], CM).ok();
    assert_eq!(out.trim(), "configmap \"settings\" deleted");
    let err = s.kubectl(&["get", "cm", "settings"]).fails();
    assert!(
        err.contains(r#"Error from server (NotFound): configmaps "settings" not found"#),
        "{err}"
    );
}

#[test]
fn label_annotate_and_the_three_patches() {
    let s = server();
    s.kubectl_stdin(&["apply", "-f", "-"], CM).ok();
    assert_eq!(
        s.kubectl(&["label", "cm", "settings", "tier=front"])
            .ok()
            .trim(),
        "configmap/settings labeled"
    );
    assert_eq!(
        s.kubectl(&["annotate", "cm", "settings", "owner=me"])
            .ok()
            .trim(),
        "configmap/settings annotated"
    );
    let names = s
        .kubectl(&["get", "cm", "-l", "tier=front,app in (web)", "-o", "name"])
        .ok();
    assert_eq!(names.trim(), "configmap/settings");
    assert_eq!(
        s.kubectl(&["get", "cm", "-l", "tier!=front", "-o", "name"])
            .ok()
            .trim(),
        ""
    );
    s.kubectl(&["label", "cm", "settings", "tier-"]).ok();
    s.kubectl(&[
        "patch",
        "cm",
        "settings",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/data/color","value":"red"}]"#,
    ])
    .ok();
    s.kubectl(&[
        "patch",
        "cm",
        "settings",
        "--type=merge",
        "-p",
        r#"{"data":{"size":null,"shape":"round"}}"#,
    ])
    .ok();
    s.kubectl(&[
        "patch",
        "cm",
        "settings",
        "-p",
        r#"{"metadata":{"labels":{"extra":"1"}}}"#,
    ])
    .ok();
    let got: serde_json::Value =
        serde_json::from_str(&s.kubectl(&["get", "cm", "settings", "-o", "json"]).ok()).unwrap();
    assert_eq!(
        got["data"],
        serde_json::json!({"color": "red", "shape": "round"})
    );
    assert_eq!(
        got["metadata"]["labels"],
        serde_json::json!({"app": "web", "extra": "1"})
    );
    assert_eq!(got["metadata"]["annotations"]["owner"], "me");
    // A JSON patch that does not apply is refused, and nothing changes.
    let err = s
        .kubectl(&[
            "patch",
            "cm",
            "settings",
            "--type=json",
            "-p",
            r#"[{"op":"remove","path":"/data/nope"}]"#,
        ])
        .fails();
    assert!(err.contains("/data/nope"), "{err}");
}

#[test]
fn errors_are_statuses() {
    let s = server();
    let bad = CM.replace("name: settings", "name: Not_Valid");
    let err = s.kubectl_stdin(&["apply", "-f", "-"], &bad).fails();
    assert!(
        err.contains(r#"ConfigMap "Not_Valid" is invalid: metadata.name: Invalid value: "Not_Valid": a lowercase RFC 1123 subdomain"#),
        "{err}"
    );
    s.kubectl_stdin(&["create", "-f", "-"], CM).ok();
    let err = s.kubectl_stdin(&["create", "-f", "-"], CM).fails();
    assert!(
        err.contains(r#"configmaps "settings" already exists"#),
        "{err}"
    );
    // A stale resourceVersion is a conflict.
    let stale = CM.replace("metadata:\n", "metadata:\n  resourceVersion: \"1\"\n");
    let err = s.kubectl_stdin(&["replace", "-f", "-"], &stale).fails();
    assert!(err.contains("the object has been modified"), "{err}");
    // Credentials the server does not know: 401.
    let anon = s.data_dir().join("anon.yaml");
    std::fs::write(
        &anon,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {}\n    insecure-skip-tls-verify: true\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\nusers:\n- name: u\n  user:\n    token: not-the-token\n",
            s.url
        ),
    )
    .unwrap();
    let out = s
        .kubectl(&["--kubeconfig", anon.to_str().unwrap(), "get", "cm"])
        .fails();
    assert!(
        out.contains("error: You must be logged in to the server (Unauthorized)"),
        "{out}"
    );
}

#[test]
fn dry_run_server_writes_nothing() {
    let s = server();
    let out = s
        .kubectl_stdin(&["create", "--dry-run=server", "-f", "-", "-o", "name"], CM)
        .ok();
    assert_eq!(out.trim(), "configmap/settings");
    assert_eq!(s.kubectl(&["get", "cm", "-o", "name"]).ok().trim(), "");
}

#[test]
fn paging_and_watch() {
    let s = server();
    let mut docs = String::new();
    for i in 0..25 {
        docs.push_str(&format!("---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{i:02}\ndata:\n  i: \"{i}\"\n"));
    }
    s.kubectl_stdin(&["apply", "-f", "-"], &docs).ok();
    let names = s
        .kubectl(&["get", "cm", "--chunk-size=7", "-o", "name"])
        .ok();
    let want: Vec<String> = (0..25).map(|i| format!("configmap/cm-{i:02}")).collect();
    assert_eq!(names.lines().map(str::to_string).collect::<Vec<_>>(), want);

    // get -w: the existing objects, then a change made while watching.
    let mut watch = s
        .kubectl_cmd(rudder_testkit::KUBECTL_DEFAULT_MINOR)
        .args([
            "get",
            "cm",
            "cm-03",
            "-w",
            "-o",
            "jsonpath={.metadata.name}={.data.i}{\"\\n\"}",
            "--request-timeout=20s",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = watch.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let first = rx
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("initial event");
    assert_eq!(first, "cm-03=3");
    s.kubectl(&[
        "patch",
        "cm",
        "cm-03",
        "--type=merge",
        "-p",
        r#"{"data":{"i":"33"}}"#,
    ])
    .ok();
    let second = rx
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("modified event");
    assert_eq!(second, "cm-03=33");
    let _ = watch.kill();
    let _ = watch.wait();
}

#[test]
fn auth_can_i_and_whoami() {
    let s = server();
    // 1.31 sends JSON bodies; 1.32+ send protobuf, covered once protobuf decoding lands.
    let yes = s
        .kubectl_version(31, &["auth", "can-i", "create", "deployments"])
        .ok();
    assert_eq!(yes.trim(), "yes");
    let who = s
        .kubectl_version(31, &["auth", "whoami", "-o", "json"])
        .ok();
    let who: serde_json::Value = serde_json::from_str(&who).unwrap();
    assert_eq!(who["status"]["userInfo"]["username"], "system:admin");
    assert_eq!(
        who["status"]["userInfo"]["groups"],
        serde_json::json!(["system:masters", "system:authenticated"])
    );
    // kubectl 1.27 asks authentication.k8s.io/v1beta1.
    let who = s.kubectl_version(27, &["auth", "whoami"]).ok();
    assert!(who.contains("system:admin"), "{who}");
}

#[test]
fn deleting_a_namespace_empties_it() {
    let s = server_with_controllers();
    s.kubectl_stdin(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: doomed\n",
    )
    .ok();
    s.kubectl_stdin(&["apply", "-n", "doomed", "-f", "-"], CM)
        .ok();
    // kubectl waits until the namespace is gone.
    let out = s.kubectl(&["delete", "ns", "doomed", "--timeout=30s"]).ok();
    assert_eq!(out.trim(), "namespace \"doomed\" deleted");
    let err = s.kubectl(&["get", "ns", "doomed"]).fails();
    assert!(err.contains("not found"), "{err}");
    assert_eq!(
        s.kubectl(&["get", "cm", "-n", "doomed", "-o", "name"])
            .ok()
            .trim(),
        ""
    );
}

const SVC: &str = "apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  type: NodePort
  selector:
    app: web
  ports:
  - port: 80
    targetPort: 8080
    nodePort: 30080
";

#[test]
fn services_get_cluster_ips_and_node_ports() {
    let s = server();
    let k8s = s
        .kubectl(&[
            "get",
            "svc",
            "kubernetes",
            "-o",
            "jsonpath={.spec.clusterIP} {.spec.ports[0].port}",
        ])
        .ok();
    assert_eq!(k8s, "10.43.0.1 443");
    s.kubectl_stdin(&["apply", "-f", "-"], SVC).ok();
    let ip = s
        .kubectl(&["get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}"])
        .ok();
    let parsed: std::net::Ipv4Addr = ip.parse().expect("an IPv4 ClusterIP");
    assert_eq!(parsed.octets()[..2], [10, 43], "{ip} in the service CIDR");
    let table = s.kubectl(&["get", "svc", "web"]).ok();
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(
        row[..5],
        ["web", "NodePort", ip.as_str(), "<none>", "80:30080/TCP"]
    );
    // The same NodePort cannot be had twice; a ClusterIP outside the range is refused.
    let err = s
        .kubectl_stdin(
            &["apply", "-f", "-"],
            &SVC.replace("name: web", "name: web2"),
        )
        .fails();
    assert!(
        err.contains(
            "spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated"
        ),
        "{err}"
    );
    let err = s
        .kubectl_stdin(
            &["apply", "-f", "-"],
            &SVC.replace("name: web", "name: web3")
                .replace("  type: NodePort\n", "  clusterIP: 192.168.1.1\n")
                .replace("    nodePort: 30080\n", ""),
        )
        .fails();
    assert!(
        err.contains("is not in the valid range. The range of valid IPs is 10.43.0.0/16"),
        "{err}"
    );
    // Deleting gives both back.
    s.kubectl(&["delete", "svc", "web"]).ok();
    s.kubectl_stdin(
        &["apply", "-f", "-"],
        &SVC.replace("name: web", "name: web2"),
    )
    .ok();
    let port = s
        .kubectl(&[
            "get",
            "svc",
            "web2",
            "-o",
            "jsonpath={.spec.ports[0].nodePort}",
        ])
        .ok();
    assert_eq!(port, "30080");
}

#[test]
fn namespaces_print_status_and_age() {
    let s = server();
    let out = s.kubectl(&["get", "ns", "default"]).ok();
    let lines: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines[0], ["NAME", "STATUS", "AGE"]);
    assert_eq!(lines[1][..2], ["default", "Active"]);
}

#[test]
fn create_commands_with_protobuf_bodies() {
    let s = server();
    // kubectl 1.32+ send these as application/vnd.kubernetes.protobuf.
    for minor in [32, 33] {
        let ns = format!("proto-{minor}");
        let k = |args: &[&str]| s.kubectl_version(minor, args).ok();
        assert_eq!(
            k(&["create", "namespace", &ns]).trim(),
            format!("namespace/{ns} created")
        );
        let n = ns.as_str();
        assert_eq!(
            k(&["create", "configmap", "cfg", "-n", n, "--from-literal=a=b"]).trim(),
            "configmap/cfg created"
        );
        assert_eq!(
            k(&[
                "create",
                "secret",
                "generic",
                "pw",
                "-n",
                n,
                "--from-literal=password=s3cr3t"
            ])
            .trim(),
            "secret/pw created"
        );
        assert_eq!(
            k(&[
                "create",
                "deployment",
                "web",
                "-n",
                n,
                "--image=nginx:1.27",
                "--replicas=2"
            ])
            .trim(),
            "deployment.apps/web created"
        );
        assert_eq!(
            k(&[
                "create",
                "service",
                "clusterip",
                "web",
                "-n",
                n,
                "--tcp=80:8080"
            ])
            .trim(),
            "service/web created"
        );
        let data = k(&["get", "cm", "cfg", "-n", n, "-o", "jsonpath={.data.a}"]);
        assert_eq!(data, "b");
        let pw = k(&[
            "get",
            "secret",
            "pw",
            "-n",
            n,
            "-o",
            "jsonpath={.data.password}",
        ]);
        assert_eq!(pw, "czNjcjN0", "base64 of s3cr3t");
        let dep = k(&[
            "get",
            "deploy",
            "web",
            "-n",
            n,
            "-o",
            "jsonpath={.spec.replicas} {.spec.template.spec.containers[0].image}",
        ]);
        assert_eq!(dep, "2 nginx:1.27");
        let port = k(&[
            "get",
            "svc",
            "web",
            "-n",
            n,
            "-o",
            "jsonpath={.spec.ports[0].targetPort}",
        ]);
        assert_eq!(port, "8080");
        assert_eq!(k(&["auth", "can-i", "delete", "pods"]).trim(), "yes");
        let who = k(&[
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ]);
        assert_eq!(who, "system:admin");
    }
}

const DEPLOY: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: main
        image: nginx:1.27
        env:
        - {name: A, value: \"1\"}
        - {name: B, value: \"2\"}
      - name: side
        image: busybox:1.36
";

#[test]
fn openapi_serves_apply_and_explain_on_every_version() {
    let s = server();
    for minor in 27..=33 {
        let k = |args: &[&str]| s.kubectl_version(minor, args);
        let ns = format!("v{minor}");
        k(&["create", "namespace", &ns]).ok();
        let apply = |doc: &str| {
            let mut c = s.kubectl_cmd(minor);
            c.args(["apply", "-n", &ns, "-f", "-"])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            let mut child = c.spawn().unwrap();
            use std::io::Write as _;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(doc.as_bytes())
                .unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "kubectl 1.{minor} apply: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        assert_eq!(
            apply(DEPLOY).trim(),
            "deployment.apps/web created",
            "1.{minor}"
        );
        // Remove env B and the side container: the strategic merge patch deletes both.
        let smaller = DEPLOY
            .replace("        - {name: B, value: \"2\"}\n", "")
            .replace("      - name: side\n        image: busybox:1.36\n", "");
        assert_eq!(
            apply(&smaller).trim(),
            "deployment.apps/web configured",
            "1.{minor}"
        );
        let got = k(&["get", "deploy", "web", "-n", &ns, "-o", "jsonpath={.spec.template.spec.containers[*].name} {.spec.template.spec.containers[0].env[*].name}"]).ok();
        assert_eq!(got, "main A", "kubectl 1.{minor}");
        let explain = k(&["explain", "pods.spec.containers.image"]).ok();
        assert!(
            explain.contains("FIELD: image") || explain.contains("FIELD:    image"),
            "1.{minor}: {explain}"
        );
    }
}

#[test]
fn defaults_validation_and_immutable_fields() {
    let s = server();
    s.kubectl(&["create", "deployment", "web", "--image=nginx"])
        .ok();
    let got = s
        .kubectl(&["get", "deploy", "web", "-o", "jsonpath={.spec.strategy.rollingUpdate.maxSurge} {.spec.revisionHistoryLimit} {.spec.progressDeadlineSeconds} {.spec.template.spec.restartPolicy} {.spec.template.spec.containers[0].imagePullPolicy}"])
        .ok();
    assert_eq!(got, "25% 10 600 Always Always");
    let missing_image = DEPLOY.replace("        image: nginx:1.27\n", "");
    let err = s
        .kubectl_stdin(
            &["apply", "-f", "-"],
            &missing_image.replace("name: web", "name: web2"),
        )
        .fails();
    assert!(
        err.contains("spec.template.spec.containers[0].image: Required value"),
        "{err}"
    );
    s.kubectl_stdin(
        &["apply", "-f", "-"],
        &DEPLOY.replace("name: web\n", "name: web3\n"),
    )
    .ok();
    let err = s
        .kubectl(&["patch", "deploy", "web3", "--type=merge", "-p", r#"{"spec":{"selector":{"matchLabels":{"app":"other"}},"template":{"metadata":{"labels":{"app":"other"}}}}}"#])
        .fails();
    assert!(
        err.contains("spec.selector: Invalid value") && err.contains("field is immutable"),
        "{err}"
    );
}

#[test]
fn unknown_fields_follow_field_validation() {
    let s = server();
    let bad = DEPLOY.replace("  replicas: 1\n", "  replicas: 1\n  replicaz: 2\n");
    // kubectl asks for Strict by default: refused, nothing written.
    let err = s.kubectl_stdin(&["apply", "-f", "-"], &bad).fails();
    assert!(
        err.contains(r#"strict decoding error: unknown field "spec.replicaz""#),
        "{err}"
    );
    assert_eq!(s.kubectl(&["get", "deploy", "-o", "name"]).ok().trim(), "");
    // --validate=warn: written without the field, with a warning.
    let out = s.kubectl_stdin(&["apply", "--validate=warn", "-f", "-"], &bad);
    let stdout = out.ok();
    assert_eq!(stdout.trim(), "deployment.apps/web created");
    assert!(
        out.stderr().contains(r#"unknown field "spec.replicaz""#),
        "{}",
        out.stderr()
    );
    // The last-applied annotation keeps what the user sent, as upstream; the
    // stored spec does not.
    let spec = s
        .kubectl(&["get", "deploy", "web", "-o", "jsonpath={.spec}"])
        .ok();
    assert!(!spec.contains("replicaz"), "{spec}");
}

#[test]
fn scale_subresource() {
    let s = server();
    s.kubectl_stdin(&["apply", "-f", "-"], DEPLOY).ok();
    let out = s.kubectl(&["scale", "deploy", "web", "--replicas=3"]).ok();
    assert_eq!(out.trim(), "deployment.apps/web scaled");
    let deploy = s
        .kubectl(&[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.spec.replicas} {.metadata.generation}",
        ])
        .ok();
    assert_eq!(deploy, "3 2");
    let scale: serde_json::Value = serde_json::from_str(
        &s.kubectl(&[
            "get",
            "--raw",
            "/apis/apps/v1/namespaces/default/deployments/web/scale",
        ])
        .ok(),
    )
    .unwrap();
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(scale["apiVersion"], "autoscaling/v1");
    assert_eq!(scale["spec"]["replicas"], 3);
    assert_eq!(scale["status"]["selector"], "app=web");
    // The three patch types through the subresource, and its validation.
    s.kubectl(&[
        "patch",
        "deploy",
        "web",
        "--subresource=scale",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/replicas","value":4}]"#,
    ])
    .ok();
    let err = s
        .kubectl(&[
            "patch",
            "deploy",
            "web",
            "--subresource=scale",
            "--type=merge",
            "-p",
            r#"{"spec":{"replicas":-1}}"#,
        ])
        .fails();
    assert!(
        err.contains("spec.replicas: Invalid value: -1: must be greater than or equal to 0"),
        "{err}"
    );
    let replicas = s
        .kubectl(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"])
        .ok();
    assert_eq!(replicas, "4");
    // A stale resourceVersion in the Scale is a conflict.
    let dir = tempfile::tempdir().unwrap();
    let stale = dir.path().join("scale.json");
    let mut body = scale.clone();
    body["spec"]["replicas"] = 1.into();
    std::fs::write(&stale, body.to_string()).unwrap();
    let err = s
        .kubectl(&[
            "replace",
            "--raw",
            "/apis/apps/v1/namespaces/default/deployments/web/scale",
            "-f",
            stale.to_str().unwrap(),
        ])
        .fails();
    assert!(err.contains("the object has been modified"), "{err}");
    let err = s.kubectl(&["scale", "cm", "x", "--replicas=1"]).fails();
    assert!(err.contains("configmaps"), "{err}");
}

#[test]
fn hpa_and_events_share_storage_across_versions() {
    let s = server();
    let hpa_v1 = "apiVersion: autoscaling/v1
kind: HorizontalPodAutoscaler
metadata:
  name: web
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  minReplicas: 2
  maxReplicas: 5
  targetCPUUtilizationPercentage: 60
";
    s.kubectl_stdin(&["create", "-f", "-"], hpa_v1).ok();
    let v2: serde_json::Value = serde_json::from_str(
        &s.kubectl(&["get", "hpa.v2.autoscaling", "web", "-o", "json"])
            .ok(),
    )
    .unwrap();
    assert_eq!(v2["apiVersion"], "autoscaling/v2");
    assert_eq!(
        v2["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
        60
    );
    // A v2-only metric survives a round trip through v1.
    s.kubectl(&[
        "patch",
        "hpa.v2.autoscaling",
        "web",
        "--type=json",
        "-p",
        r#"[{"op":"add","path":"/spec/metrics/-","value":{"type":"Resource","resource":{"name":"memory","target":{"type":"AverageValue","averageValue":"100Mi"}}}}]"#,
    ])
    .ok();
    let v1 = s
        .kubectl(&["get", "hpa.v1.autoscaling", "web", "-o", "json"])
        .ok();
    s.kubectl_stdin(&["replace", "-f", "-"], &v1).ok();
    let metrics = s
        .kubectl(&[
            "get",
            "hpa.v2.autoscaling",
            "web",
            "-o",
            "jsonpath={.spec.metrics[*].resource.name}",
        ])
        .ok();
    assert_eq!(metrics, "cpu memory");
    let table = s.kubectl(&["get", "hpa"]).ok();
    assert!(table.contains("Deployment/web"), "{table}");

    let event = "apiVersion: events.k8s.io/v1
kind: Event
metadata:
  name: e1
eventTime: 2024-05-01T10:00:00.000000Z
reportingController: example.com/ctl
reportingInstance: ctl-1
action: Check
reason: Checked
type: Normal
note: all good
regarding: {kind: Pod, name: p, namespace: default}
";
    s.kubectl_stdin(&["create", "-f", "-"], event).ok();
    let core = s
        .kubectl(&[
            "get",
            "events",
            "e1",
            "-o",
            "jsonpath={.message}|{.involvedObject.name}|{.reportingComponent}",
        ])
        .ok();
    assert_eq!(core, "all good|p|example.com/ctl");
    let listed = s
        .kubectl(&[
            "get",
            "events.v1.events.k8s.io",
            "--field-selector=regarding.name=p",
            "-o",
            "name",
        ])
        .ok();
    assert_eq!(listed.trim(), "event.events.k8s.io/e1");
}

const POD: &str = "apiVersion: v1
kind: Pod
metadata:
  name: p
  labels: {app: p}
spec:
  containers:
  - name: main
    image: busybox:1.36
";

#[test]
fn pods_binding_eviction_streams_and_graceful_deletion() {
    let s = server();
    s.kubectl_stdin(&["create", "-f", "-"], POD).ok();
    let err = s.kubectl(&["logs", "p"]).fails();
    assert!(err.contains("pod p does not have a host assigned"), "{err}");
    let err = s.kubectl(&["logs", "p", "-c", "nope"]).fails();
    assert!(
        err.contains("container nope is not valid for pod p"),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    let binding = dir.path().join("binding.json");
    std::fs::write(
        &binding,
        r#"{"apiVersion":"v1","kind":"Binding","metadata":{"name":"p","annotations":{"example.com/by":"test"}},"target":{"apiVersion":"v1","kind":"Node","name":"node1"}}"#,
    )
    .unwrap();
    // The binding's annotations go onto the pod, so they are held to the pod's rules.
    for (annotations, why) in [
        (r#"{"not a key!":"x"}"#, "Invalid value: \"not a key!\""),
        (r#"{"n":5}"#, "cannot unmarshal number"),
    ] {
        let bad = dir.path().join("bad-binding.json");
        std::fs::write(
            &bad,
            format!(r#"{{"apiVersion":"v1","kind":"Binding","metadata":{{"name":"p","annotations":{annotations}}},"target":{{"name":"node1"}}}}"#),
        )
        .unwrap();
        let path = "/api/v1/namespaces/default/pods/p/binding";
        let err = s
            .kubectl(&["create", "--raw", path, "-f", bad.to_str().unwrap()])
            .fails();
        assert!(err.contains(why), "{annotations}: {err}");
    }
    let bind = |s: &RudderServer| {
        s.kubectl(&[
            "create",
            "--raw",
            "/api/v1/namespaces/default/pods/p/binding",
            "-f",
            binding.to_str().unwrap(),
        ])
    };
    bind(&s).ok();
    let pod = s
        .kubectl(&[
            "get",
            "pod",
            "p",
            "-o",
            "jsonpath={.spec.nodeName} {.status.conditions[?(@.type==\"PodScheduled\")].status} {.metadata.annotations.example\\.com/by}",
        ])
        .ok();
    assert_eq!(pod, "node1 True test");
    let err = bind(&s).fails();
    assert!(
        err.contains("pod p is already assigned to node \"node1\""),
        "{err}"
    );
    // No such node: nothing to ask for the log.
    let err = s.kubectl(&["logs", "p"]).fails();
    assert!(err.contains("nodes \"node1\" not found"), "{err}");

    // Running and Ready (an unready pod would not spend the budget), and covered by a budget
    // the disruption controller has not looked at yet.
    s.kubectl(&[
        "patch",
        "pod",
        "p",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"phase":"Running","conditions":[{"type":"Ready","status":"True"}]}}"#,
    ])
    .ok();
    s.kubectl(&[
        "create",
        "poddisruptionbudget",
        "pdb",
        "--selector=app=p",
        "--min-available=1",
    ])
    .ok();
    let eviction = dir.path().join("eviction.json");
    std::fs::write(
        &eviction,
        r#"{"apiVersion":"policy/v1","kind":"Eviction","metadata":{"name":"p"}}"#,
    )
    .unwrap();
    let evict = |s: &RudderServer| {
        s.kubectl(&[
            "create",
            "--raw",
            "/api/v1/namespaces/default/pods/p/eviction",
            "-f",
            eviction.to_str().unwrap(),
        ])
    };
    let err = evict(&s).fails();
    assert!(
        err.contains("Cannot evict pod as it would violate the pod's disruption budget"),
        "{err}"
    );
    s.kubectl(&[
        "patch",
        "pdb",
        "pdb",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"observedGeneration":1,"disruptionsAllowed":1,"currentHealthy":1,"desiredHealthy":1,"expectedPods":1}}"#,
    ])
    .ok();
    evict(&s).ok();
    // Spent, and the pod is terminating with its grace period (it ran on a node).
    let allowed = s
        .kubectl(&[
            "get",
            "pdb",
            "pdb",
            "-o",
            "jsonpath={.status.disruptionsAllowed}",
        ])
        .ok();
    assert_eq!(allowed, "0");
    let pod = s
        .kubectl(&[
            "get",
            "pod",
            "p",
            "-o",
            "jsonpath={.metadata.deletionGracePeriodSeconds}",
        ])
        .ok();
    assert_eq!(pod, "30");
    let table = s.kubectl(&["get", "pod", "p", "--no-headers"]).ok();
    assert!(table.contains("Terminating"), "{table}");
    // A shorter grace period replaces it; zero with --force removes the pod.
    s.kubectl(&["delete", "pod", "p", "--grace-period=5", "--wait=false"])
        .ok();
    let grace = s
        .kubectl(&[
            "get",
            "pod",
            "p",
            "-o",
            "jsonpath={.metadata.deletionGracePeriodSeconds}",
        ])
        .ok();
    assert_eq!(grace, "5");
    s.kubectl(&["delete", "pod", "p", "--grace-period=0", "--force"])
        .ok();
    let err = s.kubectl(&["get", "pod", "p"]).fails();
    assert!(err.contains("pods \"p\" not found"), "{err}");
    // An unscheduled pod goes at once.
    s.kubectl_stdin(&["create", "-f", "-"], POD).ok();
    s.kubectl(&["delete", "pod", "p", "--wait=false"]).ok();
    let err = s.kubectl(&["get", "pod", "p"]).fails();
    assert!(err.contains("not found"), "{err}");
}

#[test]
fn deletes_answer_as_upstream() {
    let s = server();
    // Services (among others) answer a DELETE with the deleted object.
    s.kubectl_stdin(&["create", "-f", "-"], SVC).ok();
    let a = s.request(
        "DELETE",
        "/api/v1/namespaces/default/services/web",
        "application/json",
        b"",
    );
    assert_eq!(a.code, 200, "{}", a.body);
    assert_eq!(a.json()["kind"], "Service", "{}", a.body);
    // ConfigMaps with a Status.
    s.kubectl(&["create", "configmap", "c", "--from-literal=a=b"])
        .ok();
    let a = s.request(
        "DELETE",
        "/api/v1/namespaces/default/configmaps/c",
        "application/json",
        b"",
    );
    assert_eq!(a.json()["kind"], "Status", "{}", a.body);
    // A collection DELETE answers with the list of what it deleted.
    for (name, group) in [("g1", "x"), ("g2", "x"), ("g3", "y")] {
        s.kubectl(&["create", "configmap", name]).ok();
        s.kubectl(&["label", "cm", name, &format!("g={group}")])
            .ok();
    }
    let a = s.request(
        "DELETE",
        "/api/v1/namespaces/default/configmaps?labelSelector=g%3Dx",
        "application/json",
        b"",
    );
    assert_eq!(a.code, 200, "{}", a.body);
    let list = a.json();
    assert_eq!(list["kind"], "ConfigMapList");
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["g1", "g2"]);
    let left = s.kubectl(&["get", "cm", "-l", "g", "-o", "name"]).ok();
    assert_eq!(left.trim(), "configmap/g3");
    let a = s.request("DELETE", "/api/v1/namespaces", "application/json", b"");
    assert_eq!(a.code, 405, "{}", a.body);
    // The last label removed leaves no empty map behind.
    s.kubectl(&["label", "cm", "g3", "g-"]).ok();
    let meta = s
        .kubectl(&["get", "cm", "g3", "-o", "jsonpath={.metadata}"])
        .ok();
    assert!(!meta.contains("labels"), "{meta}");
    // A namespace being deleted carries its deletionTimestamp and phase, and its content
    // stays a moment for clients deleting it one by one.
    s.kubectl(&["create", "namespace", "gone"]).ok();
    s.kubectl(&["create", "configmap", "-n", "gone", "inside"])
        .ok();
    s.kubectl(&["delete", "namespace", "gone", "--wait=false"])
        .ok();
    let ns = s
        .kubectl(&[
            "get",
            "ns",
            "gone",
            "-o",
            "jsonpath={.status.phase} {.metadata.deletionTimestamp}",
        ])
        .ok();
    assert!(ns.starts_with("Terminating 20"), "{ns}");
    let err = s
        .kubectl(&["create", "configmap", "-n", "gone", "late"])
        .fails();
    assert!(
        err.contains(
            "unable to create new content in namespace gone because it is being terminated"
        ),
        "{err}"
    );
    s.kubectl(&["delete", "configmap", "-n", "gone", "inside"])
        .ok();
}

#[test]
fn rules_and_subject_access_reviews() {
    let s = server();
    let list = s.kubectl(&["auth", "can-i", "--list"]).ok();
    let first = list.lines().nth(1).unwrap_or_default();
    assert_eq!(
        first.split_whitespace().collect::<Vec<_>>(),
        ["*.*", "[]", "[]", "[*]"],
        "{list}"
    );
    // Only system:masters may do anything until RBAC exists.
    let out = s.kubectl(&["auth", "can-i", "delete", "pods", "--as=someone"]);
    assert_eq!(out.stdout().trim(), "no");
    let out = s
        .kubectl(&[
            "auth",
            "can-i",
            "delete",
            "pods",
            "--as=someone",
            "--as-group=system:masters",
        ])
        .ok();
    assert_eq!(out.trim(), "yes");
    let a = s.request(
        "POST",
        "/apis/authorization.k8s.io/v1/namespaces/default/localsubjectaccessreviews",
        "application/json",
        br#"{"apiVersion":"authorization.k8s.io/v1","kind":"LocalSubjectAccessReview","spec":{"user":"u","resourceAttributes":{"namespace":"default","verb":"get","resource":"pods"}}}"#,
    );
    assert_eq!(a.code, 201, "{}", a.body);
    assert_eq!(a.json()["status"]["allowed"], false);
    let a = s.request(
        "POST",
        "/apis/authorization.k8s.io/v1/subjectaccessreviews",
        "application/json",
        br#"{"apiVersion":"authorization.k8s.io/v1","kind":"SubjectAccessReview","spec":{"user":"system:node:n1","groups":["system:nodes"],"resourceAttributes":{"verb":"get","resource":"nodes","name":"n1"}}}"#,
    );
    assert_eq!(a.code, 201, "{}", a.body);
    assert_eq!(a.json()["status"]["allowed"], true);
    let a = s.request(
        "POST",
        "/apis/authorization.k8s.io/v1/subjectaccessreviews",
        "application/json",
        br#"{"apiVersion":"authorization.k8s.io/v1","kind":"SubjectAccessReview","spec":{"resourceAttributes":{"verb":"get","resource":"pods"}}}"#,
    );
    assert_eq!(a.code, 422, "{}", a.body);
}

#[test]
fn watches_get_bookmarks_when_they_ask() {
    let s = server();
    s.kubectl(&["create", "configmap", "a"]).ok();
    let rv = s
        .kubectl(&[
            "get",
            "cm",
            "a",
            "-o",
            "jsonpath={.metadata.resourceVersion}",
        ])
        .ok();
    // The server ends each watch after timeoutSeconds; a feed asks for progress every 5 s.
    let path = format!(
        "/api/v1/namespaces/default/configmaps?watch=1&allowWatchBookmarks=true&resourceVersion={rv}&timeoutSeconds=8"
    );
    let (with, without) = std::thread::scope(|t| {
        let with = t.spawn(|| s.request("GET", &path, "application/json", b""));
        let plain = path.replace("allowWatchBookmarks=true", "allowWatchBookmarks=false");
        let without = s.request("GET", &plain, "application/json", b"");
        (with.join().unwrap(), without)
    });
    assert_eq!(with.code, 200, "{}", with.body);
    let events: Vec<serde_json::Value> = with
        .body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!events.is_empty(), "no bookmark in 8 s");
    for e in &events {
        assert_eq!(e["type"], "BOOKMARK", "{e}");
        assert_eq!(e["object"]["kind"], "ConfigMap");
        let at: i64 = e["object"]["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(at >= rv.parse::<i64>().unwrap(), "{e}");
    }
    assert_eq!(without.body.trim(), "", "bookmarks only when asked for");
}
